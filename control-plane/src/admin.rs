//! The operator's HTTP API (axum), on the control plane's admin port.
//! `/health` and `/servers` are also routed through the gateway port by
//! Envoy, as the seeds' users expect; `/admin/reload` changes state and is
//! served on the admin port only until the admin principal of the auth
//! issue guards it. `/mcp-events` is where the filter sends clients' GET
//! streams, after checking their session.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::controller::Controller;

/// A JSON-RPC error as the whole HTTP answer: the one way the control
/// plane's MCP-facing endpoints (streams, bridge, runtimes) refuse.
pub fn jsonrpc_error(status: StatusCode, id: &serde_json::Value, code: i32, message: &str) -> axum::response::Response {
    let body = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } });
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

pub fn router(controller: Controller) -> Router {
    // Reached only through the filter, which has checked the client: the
    // filter proves it with the internal token.
    let internal = Router::new()
        .route(crate::compile::EVENTS_PATH, get(crate::streams::events))
        .route(&format!("{}{{server}}", mcp_filter::config::BRIDGE_PATH_PREFIX), post(crate::bridge::bridge))
        .route(&format!("{}{{server}}/mcp", crate::catalog::PIPE_PATH_PREFIX), post(crate::runtime::endpoint))
        .route_layer(middleware::from_fn_with_state(controller.clone(), internal_only));
    // What changes state needs an admin key once authentication is on.
    let operator = Router::new()
        .route("/servers/{server}/{action}", post(server_action))
        .route("/admin/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(controller.clone(), admin_only));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/servers", get(servers))
        .route("/metrics", get(metrics))
        .merge(internal)
        .merge(operator)
        .with_state(controller)
}

async fn internal_only(State(c): State<Controller>, request: Request, next: Next) -> axum::response::Response {
    if !c.admits_internal(request.headers().get(mcp_filter::config::INTERNAL_HEADER).map(|v| v.as_bytes())) {
        let message = "this endpoint is internal to the gateway: call the MCP endpoint instead";
        return jsonrpc_error(StatusCode::FORBIDDEN, &serde_json::Value::Null, -32003, message);
    }
    next.run(request).await
}

async fn admin_only(State(c): State<Controller>, request: Request, next: Next) -> axum::response::Response {
    let admitted = {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        let credential = header("authorization")
            .and_then(|a| a.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim()))
            .or_else(|| header("x-api-key"));
        c.admits_admin(credential)
    };
    if !admitted {
        let error = "this admin endpoint needs an API key of a group in gateway.auth.admin_groups (Authorization: Bearer <key>)";
        return (StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer")], Json(json!({ "status": "error", "error": error })))
            .into_response();
    }
    next.run(request).await
}

/// Liveness, plus what an operator checks first: the version served, the
/// last reload error, and each Envoy's ACK or NACK of it.
async fn health(State(c): State<Controller>) -> impl IntoResponse {
    let s = c.status();
    Json(json!({
        "status": "ok",
        "version": s.version,
        "last_error": s.last_error,
        "log_level": s.log_level,
        "envoys": c.cache().status(),
    }))
}

/// Readiness: 200 when the catalog is valid (the last reload published it),
/// every connected Envoy runs the version served, and at least one upstream
/// is up; else 503 with the reasons, so that a load balancer or Kubernetes
/// sends no traffic to a gateway that cannot serve it.
async fn ready(State(c): State<Controller>) -> impl IntoResponse {
    let s = c.status();
    let served = c.cache().current().map(|s| s.version.clone());
    let reasons = crate::metrics::not_ready(&s, served.as_deref(), &c.cache().status());
    let status = if reasons.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ready": reasons.is_empty(), "version": served, "reasons": reasons })))
}

async fn servers(State(c): State<Controller>) -> impl IntoResponse {
    let mut s = c.status();
    for server in &mut s.servers {
        server.process = c.runtimes().status(&server.name);
    }
    Json(json!({ "version": s.version, "last_error": s.last_error, "servers": s.servers }))
}

/// `POST /servers/{name}/start|stop|restart`, for servers the gateway runs
/// or connects to.
/// The control plane's metrics (Prometheus text format). On the gateway's
/// port, `GET /metrics` gives these after Envoy's and the filter's.
async fn metrics(State(c): State<Controller>) -> impl IntoResponse {
    let status = c.status();
    let restarts: Vec<(String, u32)> =
        status.servers.iter().filter_map(|s| c.runtimes().status(&s.name).map(|p| (s.name.clone(), p.restarts))).collect();
    let served = c.cache().current().map(|s| s.version.clone());
    let nodes = c.cache().status();
    let text =
        crate::metrics::render(&crate::metrics::Inputs { status: &status, served: served.as_deref(), nodes: &nodes, restarts: &restarts });
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

async fn server_action(State(c): State<Controller>, Path((server, action)): Path<(String, String)>) -> impl IntoResponse {
    if !matches!(action.as_str(), "start" | "stop" | "restart") {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "status": "error", "error": format!("unknown action {action:?}: start, stop or restart") })),
        );
    }
    match c.runtimes().command(&server, &action) {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({ "status": "ok", "server": server, "action": action }))),
        Err(e) => (StatusCode::NOT_FOUND, Json(json!({ "status": "error", "error": e }))),
    }
}

async fn reload(State(c): State<Controller>) -> impl IntoResponse {
    match c.reload().await {
        Ok(version) => (StatusCode::OK, Json(json!({ "status": "ok", "version": version }))),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "status": "error", "error": e }))),
    }
}
