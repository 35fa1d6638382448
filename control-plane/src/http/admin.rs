//! The operator's API: `GET /health`, `/ready`, `/servers`, `/metrics`, and,
//! with an admin key once authentication is on, `POST /admin/reload` and
//! `POST /servers/{name}/start|stop|restart` and the approval of changed
//! tool definitions (`POST /servers/{name}/tools/{tool}/approve`,
//! `.../tools/approve-all`); none of these from another
//! browser origin. `/health`, `/ready` and
//! `/servers` are also routed through the gateway port by Envoy (GET only),
//! as the seeds' users expect.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::controller::Controller;
use crate::runtime::Runtimes;
use crate::snapshot::SnapshotCache;
use crate::state::FilterModule;

/// The answer to an operator's request without an admin key.
pub fn unauthorized() -> Response {
    let error = "this admin endpoint needs an API key of a group in gateway.auth.admin_groups (Authorization: Bearer <key>)";
    (StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer")], Json(json!({ "status": "error", "error": error }))).into_response()
}

/// The answer to a state change sent from another origin (a web page).
pub fn cross_site(origin: &str) -> Response {
    let origin: String = origin.chars().take(100).collect();
    let error = format!("Origin {origin:?} may not change the gateway's state: the admin API takes requests from non-browser clients and its own origin only");
    (StatusCode::FORBIDDEN, Json(json!({ "status": "error", "error": error }))).into_response()
}

/// The answer to a read of the console's state naming a host other than
/// the admin API's own address, without authentication on.
pub fn foreign_host(host: &str) -> Response {
    let host: String = host.chars().take(100).collect();
    let error = format!(
        "the console's state is served to the admin API's own address (localhost or an IP address), not to Host {host:?}: \
         open the console by address, or turn gateway.auth on and give an admin key"
    );
    (StatusCode::FORBIDDEN, Json(json!({ "status": "error", "error": error }))).into_response()
}

/// Liveness, plus what an operator checks first: the version served, the
/// last reload error, and each Envoy's ACK or NACK of it.
pub async fn health(State(c): State<Controller>, State(cache): State<SnapshotCache>) -> impl IntoResponse {
    let s = c.status();
    Json(json!({
        "status": "ok",
        "version": s.version,
        "last_error": s.last_error,
        "log_level": s.log_level,
        "module": module_status(&c.module()),
        "envoys": cache.status(),
    }))
}

fn module_status(m: &FilterModule) -> serde_json::Value {
    json!({ "sha256": m.sha256(), "path": crate::compile::module_path(m.sha256()), "bytes": m.bytes().len(), "fetches": m.fetches() })
}

/// `GET /filter/<sha256>.wasm`: the filter module, which Envoy fetches once
/// per process for the configuration naming it by that digest (and checks
/// against it). Not secret: the module holds no configuration. Any other
/// digest (an older module's) is 404: its Envoy NACKs the configuration
/// naming it, or keeps its last.
pub async fn module(State(c): State<Controller>, uri: axum::http::Uri) -> Response {
    let m = c.module();
    match m.fetch(uri.path()) {
        Some(bytes) => {
            tracing::info!(sha256 = m.sha256(), bytes = bytes.len(), fetches = m.fetches(), "an Envoy fetched the filter module");
            let body = axum::body::Body::from(axum::body::Bytes::from_owner(bytes));
            ([(axum::http::header::CONTENT_TYPE, "application/wasm")], body).into_response()
        }
        None => {
            tracing::warn!(path = uri.path(), serving = m.sha256(), "a filter module that is not this control plane's was asked for");
            let error =
                format!("no filter module at {}; this control plane serves {}", uri.path(), crate::compile::module_path(m.sha256()));
            (StatusCode::NOT_FOUND, Json(json!({ "status": "error", "error": error }))).into_response()
        }
    }
}

/// Readiness: 200 when the catalog is valid (the last reload published it),
/// every connected Envoy runs the version served, and at least one upstream
/// is up; else 503 with the reasons, so that a load balancer or Kubernetes
/// sends no traffic to a gateway that cannot serve it.
pub async fn ready(State(c): State<Controller>, State(cache): State<SnapshotCache>) -> impl IntoResponse {
    let s = c.status();
    let served = cache.current().map(|s| s.version.clone());
    let reasons = crate::metrics::not_ready(&s, served.as_deref(), &cache.status());
    let status = if reasons.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ready": reasons.is_empty(), "version": served, "reasons": reasons })))
}

pub async fn servers(State(c): State<Controller>, State(runtimes): State<Arc<Runtimes>>) -> impl IntoResponse {
    let mut s = c.status();
    for server in &mut s.servers {
        server.process = runtimes.status(&server.summary.name);
    }
    Json(mcp_filter::status::ServersPage { version: s.version, last_error: s.last_error, servers: s.servers })
}

/// The control plane's metrics (Prometheus text format). On the gateway's
/// port, `GET /metrics` gives these after Envoy's and the filter's.
pub async fn metrics(
    State(c): State<Controller>,
    State(cache): State<SnapshotCache>,
    State(runtimes): State<Arc<Runtimes>>,
) -> impl IntoResponse {
    let status = c.status();
    let restarts: Vec<(String, u32)> =
        status.servers.iter().filter_map(|s| runtimes.status(&s.summary.name).map(|p| (s.summary.name.clone(), p.restarts))).collect();
    let served = cache.current().map(|s| s.version.clone());
    let nodes = cache.status();
    let text = crate::metrics::render(&crate::metrics::Inputs {
        status: &status,
        served: served.as_deref(),
        nodes: &nodes,
        restarts: &restarts,
        module_fetches: c.module().fetches(),
        usage: crate::metrics::usage::read(),
    });
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

/// `POST /servers/{name}/start|stop|restart`, for servers the gateway runs
/// or connects to.
pub async fn server_action(State(runtimes): State<Arc<Runtimes>>, Path((server, action)): Path<(String, String)>) -> impl IntoResponse {
    let command = match action.as_str() {
        "start" => crate::runtime::Command::Start,
        "stop" => crate::runtime::Command::Stop,
        "restart" => crate::runtime::Command::Restart,
        _ => {
            let error = format!("unknown action {action:?}: start, stop or restart");
            return (StatusCode::NOT_FOUND, Json(json!({ "status": "error", "error": error })));
        }
    };
    match runtimes.command(&server, command) {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({ "status": "ok", "server": server, "action": action }))),
        Err(e) => (StatusCode::NOT_FOUND, Json(json!({ "status": "error", "error": e.to_string() }))),
    }
}

pub async fn reload(State(c): State<Controller>) -> impl IntoResponse {
    match c.reload().await {
        Ok(version) => (StatusCode::OK, Json(json!({ "status": "ok", "version": version }))),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "status": "error", "error": e }))),
    }
}

/// `POST /servers/{name}/tools/{tool}/approve`: approves the definition a
/// server offers now for its tool (its own name), when the catalog pins it.
/// An optional body `{"sha256": "..."}` (the `offered_sha256` `/servers`
/// showed) approves only that definition.
pub async fn approve_tool(State(c): State<Controller>, Path((server, tool)): Path<(String, String)>, body: axum::body::Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Expect {
        sha256: String,
    }
    let expect = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Expect>(&body) {
            Ok(e) => Some(e.sha256),
            Err(e) => {
                let error = format!("the body, if any, is {{\"sha256\": \"<offered_sha256 from GET /servers>\"}}: {e}");
                return (StatusCode::BAD_REQUEST, Json(json!({ "status": "error", "error": error }))).into_response();
            }
        }
    };
    approved(c.approve(&server, Some(&tool), expect.as_deref()).await, &server)
}

/// `POST /servers/{name}/tools/approve-all`: every tool of the server.
pub async fn approve_all(State(c): State<Controller>, Path(server): Path<String>) -> Response {
    approved(c.approve(&server, None, None).await, &server)
}

fn approved(outcome: Result<crate::controller::Approved, crate::controller::ApproveError>, server: &str) -> Response {
    use crate::controller::ApproveError;
    let (status, error) = match outcome {
        Ok(done) => {
            let body = json!({ "status": "ok", "server": server, "approved": done.tools, "version": done.version });
            return (StatusCode::OK, Json(body)).into_response();
        }
        Err(ApproveError::NotFound(e)) => (StatusCode::NOT_FOUND, e),
        Err(ApproveError::Conflict(e)) => (StatusCode::CONFLICT, e),
        Err(ApproveError::Failed(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    (status, Json(json!({ "status": "error", "error": error }))).into_response()
}
