//! The operator's HTTP API (axum), on the control plane's admin port.
//! `/health` and `/servers` are also routed through the gateway port by
//! Envoy, as the seeds' users expect; `/admin/reload` changes state and is
//! served on the admin port only until the admin principal of the auth
//! issue guards it. `/mcp-events` is where the filter sends clients' GET
//! streams, after checking their session.

use axum::extract::{Path, State};
use axum::http::StatusCode;
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
    Router::new()
        .route(crate::compile::EVENTS_PATH, get(crate::streams::events))
        .route(&format!("{}{{server}}", mcp_filter::config::BRIDGE_PATH_PREFIX), post(crate::bridge::bridge))
        .route("/health", get(health))
        .route("/servers", get(servers))
        .route("/servers/{server}/{action}", post(server_action))
        .route(&format!("{}{{server}}/mcp", crate::catalog::PIPE_PATH_PREFIX), post(crate::runtime::endpoint))
        .route("/admin/reload", post(reload))
        .with_state(controller)
}

/// Liveness, plus what an operator checks first: the version served, the
/// last reload error, and each Envoy's ACK or NACK of it.
async fn health(State(c): State<Controller>) -> impl IntoResponse {
    let s = c.status();
    Json(json!({
        "status": "ok",
        "version": s.version,
        "last_error": s.last_error,
        "envoys": c.cache().status(),
    }))
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
async fn server_action(State(c): State<Controller>, Path((server, action)): Path<(String, String)>) -> impl IntoResponse {
    if !matches!(action.as_str(), "start" | "stop" | "restart") {
        return (StatusCode::NOT_FOUND, Json(json!({ "status": "error", "error": format!("unknown action {action:?}: start, stop or restart") })));
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
