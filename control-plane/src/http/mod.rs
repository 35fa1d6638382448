//! The control plane's HTTP surface, on its admin listener (axum): the
//! operator's API (`admin.rs`), and the endpoints Envoy reaches on the
//! filter's behalf, which admit only the filter (its internal token): the
//! clients' GET streams (`streams.rs`) and the upstream sessions the filter
//! opens lazily for them (`opened.rs`), the era bridge (`bridge.rs`) and the
//! pipes of the servers the control plane runs (`pipe.rs`). They refuse
//! through one mapping (`error.rs`).
//!
//! Handlers take only the part of the state they need ([`FromRef`]); none
//! holds the controller but those that ask it to reload. Nothing else in
//! the crate depends on this module.

pub mod admin;
pub mod bridge;
pub mod console;
pub mod error;
pub mod exchange;
pub mod opened;
pub mod pipe;
pub mod streams;

use std::sync::Arc;

use axum::extract::{FromRef, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::controller::Controller;
use crate::runtime::Runtimes;
use crate::snapshot::SnapshotCache;
use crate::state::{Changes, Current, Internal, Lists};
use error::Refusal;

/// Everything a handler may take a part of.
#[derive(Clone)]
pub struct AppState {
    controller: Controller,
    current: Current,
    runtimes: Arc<Runtimes>,
    cache: SnapshotCache,
    lists: tokio::sync::watch::Receiver<Lists>,
    changes: Changes,
    internal: Internal,
    open: streams::OpenStreams,
    opened: opened::OpenedSessions,
}

impl FromRef<AppState> for Controller {
    fn from_ref(s: &AppState) -> Self {
        s.controller.clone()
    }
}
impl FromRef<AppState> for Current {
    fn from_ref(s: &AppState) -> Self {
        s.current.clone()
    }
}
impl FromRef<AppState> for Arc<Runtimes> {
    fn from_ref(s: &AppState) -> Self {
        Arc::clone(&s.runtimes)
    }
}
impl FromRef<AppState> for SnapshotCache {
    fn from_ref(s: &AppState) -> Self {
        s.cache.clone()
    }
}
impl FromRef<AppState> for Internal {
    fn from_ref(s: &AppState) -> Self {
        s.internal.clone()
    }
}

/// What a client's GET stream needs: the servers served, the lists the
/// Envoys run, where to say an upstream's lists changed, and the upstream
/// sessions the filter opened lazily.
#[derive(Clone)]
pub struct StreamState {
    pub current: Current,
    pub lists: tokio::sync::watch::Receiver<Lists>,
    pub changes: Changes,
    /// The streams open now, per caller and session.
    pub open: streams::OpenStreams,
    /// The upstream sessions opened lazily, per client session.
    pub opened: opened::OpenedSessions,
}

impl FromRef<AppState> for StreamState {
    fn from_ref(s: &AppState) -> Self {
        StreamState {
            current: s.current.clone(),
            lists: s.lists.clone(),
            changes: s.changes.clone(),
            open: s.open.clone(),
            opened: s.opened.clone(),
        }
    }
}

use mcp_filter::gateway::CONSOLE_PAGE;

pub fn router(controller: &Controller) -> Router {
    let state = AppState {
        controller: controller.clone(),
        current: controller.current(),
        runtimes: controller.runtimes(),
        cache: controller.cache().clone(),
        lists: controller.lists(),
        changes: controller.changes(),
        internal: controller.internal(),
        open: streams::OpenStreams::default(),
        opened: opened::OpenedSessions::default(),
    };
    // Reached only through the filter, which has checked the client: the
    // filter proves it with the internal token.
    let internal = Router::new()
        .route(crate::compile::EVENTS_PATH, get(streams::events))
        .route(&format!("{}/opened", crate::compile::EVENTS_PATH), post(opened::opened))
        .route(&format!("{}{{server}}", mcp_filter::config::BRIDGE_PATH_PREFIX), post(bridge::bridge))
        .route(&format!("{}{{server}}", mcp_filter::config::EXCHANGE_PATH_PREFIX), post(exchange::exchange))
        .route(&format!("{}{{server}}/mcp", crate::catalog::PIPE_PATH_PREFIX), post(pipe::endpoint))
        .route_layer(middleware::from_fn_with_state(state.clone(), internal_only));
    // What changes state needs an admin key once authentication is on.
    let operator = Router::new()
        .route("/servers/{server}/{action}", post(admin::server_action))
        .route("/servers/{server}/tools/approve-all", post(admin::approve_all))
        .route("/servers/{server}/tools/{tool}/approve", post(admin::approve_tool))
        .route("/admin/reload", post(admin::reload))
        .route_layer(middleware::from_fn_with_state(state.clone(), admin_only));
    Router::new()
        .route("/health", get(admin::health))
        .route("/ready", get(admin::ready))
        .route("/servers", get(admin::servers))
        .route("/metrics", get(admin::metrics))
        .route(CONSOLE_PAGE, get(console::page))
        .route(&format!("{CONSOLE_PAGE}/"), get(console::page))
        .route(&format!("{CONSOLE_PAGE}/app.js"), get(console::script))
        .route(&format!("{CONSOLE_PAGE}/app.css"), get(console::style))
        .route(
            &format!("{CONSOLE_PAGE}/state"),
            get(console::state_page).route_layer(middleware::from_fn_with_state(state.clone(), console_reader)),
        )
        .route(&format!("{}{{file}}", crate::compile::MODULE_PATH_PREFIX), get(admin::module))
        .merge(internal)
        .merge(operator)
        .with_state(state)
}

async fn internal_only(State(internal): State<Internal>, request: Request, next: Next) -> Response {
    if !internal.admits(request.headers().get(mcp_filter::config::INTERNAL_HEADER).map(|v| v.as_bytes())) {
        return Refusal::InternalOnly.into_response();
    }
    next.run(request).await
}

/// The admin API's own address: a loopback name or an IP literal. A page
/// whose DNS name was rebound to this address names its own host instead.
fn own_address(host: &str) -> bool {
    let name = mcp_filter::origin::authority_host(host);
    mcp_filter::origin::is_loopback_name(name) || name.parse::<std::net::IpAddr>().is_ok()
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The key a caller presents: `Authorization: Bearer`, else `X-API-Key`.
fn credential(request: &Request) -> Option<&str> {
    header(request, "authorization")
        .and_then(|a| a.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim()))
        .or_else(|| header(request, "x-api-key"))
}

fn from_filter(internal: &Internal, request: &Request) -> bool {
    internal.admits(request.headers().get(mcp_filter::config::INTERNAL_HEADER).map(|v| v.as_bytes()))
}

async fn admin_only(State(current): State<Current>, State(internal): State<Internal>, request: Request, next: Next) -> Response {
    // The filter, for an operator's action on the gateway port it admitted
    // (an admin caller, or a loopback gateway without authentication).
    if from_filter(&internal, &request) {
        return next.run(request).await;
    }
    // A web page the operator visits must not change the gateway's state
    // through the browser (a cross-site POST needs no preflight), with or
    // without authentication: only the admin API's own origin may, named by
    // an address or a loopback name (a page whose DNS name was rebound to
    // this address has an origin of its own name).
    // (Each check in a block: a borrow of the request may not outlive it
    // across the await, as the body is not Sync.)
    let foreign = {
        let own =
            |origin: &str| header(&request, "host").is_some_and(|host| mcp_filter::origin::same_origin(origin, host) && own_address(host));
        header(&request, "origin").filter(|origin| !own(origin)).map(str::to_string)
    };
    if let Some(origin) = foreign {
        return admin::cross_site(&origin);
    }
    // Before the first good reload there are no keys to check against:
    // nothing is served yet, and a reload is what an operator needs.
    let admitted = current.get().is_none_or(|p| p.admits_admin(credential(&request)));
    if !admitted {
        return admin::unauthorized();
    }
    next.run(request).await
}

/// The console's state holds the audit log's recent decisions: an admin
/// key reads it once authentication is on (through Envoy, the filter checks
/// the admin's key or JWT and sends its internal token); without authentication, only a
/// request naming the admin API's own address does. A browser sends no
/// Origin on a same-origin GET, so a page whose DNS name was rebound to the
/// admin port is told apart by its Host alone.
async fn console_reader(State(current): State<Current>, State(internal): State<Internal>, request: Request, next: Next) -> Response {
    if from_filter(&internal, &request) {
        return next.run(request).await;
    }
    let refusal = match current.get().filter(|p| p.admin_keys.is_some()) {
        Some(p) => (!p.admits_admin(credential(&request))).then(admin::unauthorized),
        None => Some(header(&request, "host").unwrap_or_default()).filter(|host| !own_address(host)).map(admin::foreign_host),
    };
    match refusal {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}
