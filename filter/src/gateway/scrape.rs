//! The operator's pages on the gateway's own port: `GET /metrics`
//! (Envoy's Prometheus text, the filter's stats among it, then the control
//! plane's) and `GET /stats` (a JSON summary per server), assembled here;
//! `/health`, `/ready` and `/servers`, which Envoy routes to the control
//! plane; the probes' up/down answers for callers without an admin
//! credential; and the per-worker cache that keeps scrapes from costing
//! more than one assembly a second. Owns the calls behind them and the
//! joining of their answers.
//!
//! It never touches an MCP request, and a part that does not answer is
//! said so in the page rather than failing it (but for Envoy's own, without
//! which there is nothing to show).

use super::{auth, edits};
use crate::config::FilterConfig;
use crate::decision::{Callout, CalloutResponse, HeadAction, HeaderEdits, Now, Page, Reply, RequestHead};
use crate::error::McpError;
use crate::metrics;

/// Where the gateway's port serves Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// Where it serves the seeds' JSON summary.
pub const STATS_PATH: &str = "/stats";
/// The bootstrap's cluster to Envoy's own admin address (envoy/gateway.yaml).
pub const ENVOY_ADMIN_CLUSTER: &str = "envoy_admin";

/// The operator's console, which the control plane serves.
pub const CONSOLE_PAGE: &str = "/console";

/// The paths Envoy routes to the control plane's admin API (GET only, by
/// prefix: the route table is compiled from this list).
pub const ROUTED_PATHS: &[&str] = &["/health", "/ready", "/servers", CONSOLE_PAGE];

/// The console's page, script and style: they hold no data, so anyone gets
/// them (a browser cannot send a bearer token when it opens a page); the
/// state they show (`/console/state`) is an operator's page like the rest.
pub fn is_console_asset(path: &str) -> bool {
    matches!(path.strip_prefix(CONSOLE_PAGE), Some("" | "/" | "/app.js" | "/app.css"))
}

/// An operator's page a `GET` asks for: the one the filter assembles
/// (`page`, else Envoy routes it to the control plane) and, for the
/// probes, the up/down answer a caller without an admin credential gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operator {
    pub page: Option<Page>,
    pub probe: Option<Page>,
    /// A page the control plane guards itself (the console's state, which
    /// holds the audit log's recent decisions): an admin's read goes with
    /// the filter's internal token, as an operator's action does.
    pub guarded: bool,
}

/// The operator's page a `GET` of `path` (without its query) asks for, if
/// any: every path the route table sends to the control plane is one.
pub fn operator(path: &str) -> Option<Operator> {
    let probe = match path {
        METRICS_PATH => return Some(Operator { page: Some(Page::Metrics), probe: None, guarded: false }),
        STATS_PATH => return Some(Operator { page: Some(Page::Stats), probe: None, guarded: false }),
        "/health" => Some(Page::Liveness),
        "/ready" => Some(Page::Readiness),
        _ if is_console_asset(path) => return None,
        _ => None,
    };
    let guarded = path.strip_prefix(CONSOLE_PAGE) == Some("/state");
    ROUTED_PATHS.iter().any(|p| path.starts_with(p)).then_some(Operator { page: None, probe, guarded })
}

/// Whether a `POST` to `path` is one of the operator's actions the control
/// plane serves: `/admin/reload`, `/servers/<name>/start|stop|restart`,
/// `/servers/<name>/tools/approve-all`, `/servers/<name>/tools/<tool>/approve`.
pub fn is_admin_action(path: &str) -> bool {
    // The path goes on as `:path`: visible ASCII only, as Envoy lets through.
    if !path.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return false;
    }
    if path == "/admin/reload" {
        return true;
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "servers", name, action] => !name.is_empty() && matches!(*action, "start" | "stop" | "restart"),
        ["", "servers", name, "tools", "approve-all"] => !name.is_empty(),
        ["", "servers", name, "tools", tool, "approve"] => !name.is_empty() && !tool.is_empty(),
        _ => false,
    }
}

/// Whether an `Accept` asks for Prometheus' text formats, as Prometheus
/// sends it (`application/openmetrics-text;...,text/plain;version=0.0.4;...`):
/// a client that names neither (curl's `*/*`, a browser) gets JSON.
pub fn wants_prometheus(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let media = part.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            media == "application/openmetrics-text" || media == "text/plain"
        })
    })
}

/// The calls behind a page: Envoy's own stats from its admin address, and
/// the control plane's part when there is one.
pub fn callouts(config: &FilterConfig, page: Page) -> Vec<Callout> {
    let get = |path: &str, authority: &str| {
        vec![(":method", "GET".to_string()), (":path", path.to_string()), (":authority", authority.to_string())]
    };
    let (envoy, control_plane) = match page {
        Page::Metrics => (Some("/stats/prometheus"), METRICS_PATH),
        Page::Stats => (Some(metrics::SUMMARY_STATS_PATH), "/servers"),
        Page::Liveness => (None, "/health"),
        Page::Readiness => (None, "/ready"),
    };
    let mut calls: Vec<Callout> = envoy
        .map(|path| Callout {
            server: usize::MAX,
            cluster: ENVOY_ADMIN_CLUSTER.into(),
            headers: get(path, "envoy-admin"),
            body: Vec::new(),
        })
        .into_iter()
        .collect();
    if let Some(cp) = &config.control_plane {
        calls.push(Callout {
            server: usize::MAX,
            cluster: cp.cluster.clone(),
            headers: get(control_plane, &cp.authority),
            body: Vec::new(),
        });
    }
    calls
}

/// The answer to `GET /metrics`, from the answers to `callouts`, in
/// their order: Envoy's stats (with the filter's), then the control
/// plane's. Without Envoy's part the scrape fails (503), so that Prometheus
/// marks the target down; without the control plane's it carries
/// `mcp_gateway_control_plane_up 0`, which an alert watches.
/// A probe's answer (`Liveness`, `Readiness`) is the control plane's
/// status alone: 200 `{"status":"up"}` or 503 `{"status":"down"}`.
pub fn scrape_reply(page: Page, answers: &[Option<CalloutResponse>]) -> Reply {
    let ok = |i: usize| answers.get(i).and_then(Option::as_ref).filter(|a| a.status == 200 && !a.oversized).map(|a| a.body.as_slice());
    if matches!(page, Page::Liveness | Page::Readiness) {
        return match ok(0) {
            Some(_) => Reply::json(200, br#"{"status":"up"}"#.to_vec()),
            None => Reply::json(503, br#"{"status":"down"}"#.to_vec()),
        };
    }
    if page == Page::Stats {
        return match ok(0).and_then(|envoy| metrics::stats_summary(envoy, ok(1))) {
            Some(summary) => Reply::json(200, summary.into_bytes()),
            None => Reply::error(
                None,
                &McpError::Internal(format!("Envoy's stats could not be read through the cluster {ENVOY_ADMIN_CLUSTER:?}")),
            ),
        };
    }
    let text = |status: u16, body: Vec<u8>| Reply {
        status,
        headers: vec![("content-type", "text/plain; version=0.0.4; charset=utf-8".to_string())],
        body,
    };
    let Some(envoy) = ok(0) else {
        let why = format!("# Envoy's admin did not answer through the cluster {ENVOY_ADMIN_CLUSTER:?}: the bootstrap (envoy/gateway.yaml) must define it, pointing at the admin address\n");
        return text(503, why.into_bytes());
    };
    let mut body = Vec::with_capacity(envoy.len() + answers.get(1).and_then(Option::as_ref).map_or(256, |a| a.body.len()));
    extend_unprefixed(&mut body, envoy);
    if !body.ends_with(b"\n") && !body.is_empty() {
        body.push(b'\n');
    }
    match ok(1) {
        Some(cp) => body.extend_from_slice(cp),
        None => body.extend_from_slice(
            b"# HELP mcp_gateway_control_plane_up Whether this Envoy's filter reached the control plane's metrics.\n# TYPE mcp_gateway_control_plane_up gauge\nmcp_gateway_control_plane_up 0\n",
        ),
    }
    text(200, body)
}

/// The prefix Envoy 1.40 gives the native module's stats in its Prometheus
/// exposition: their namespace (`wasmcustom`, as the wasm filter's) counts
/// as a custom one, whose prefix Envoy drops, only once a wasm filter has
/// registered it, which no dynamic module does.
const NATIVE_PREFIX: &[u8] = b"envoy_wasmcustom_";

/// Appends Envoy's exposition with the filter's series under the names the
/// wasm filter's have (`mcp_requests_total`, not
/// `envoy_wasmcustom_mcp_requests_total`), whichever filter runs. Nothing
/// else of Envoy's is named so; with the wasm filter nothing changes.
fn extend_unprefixed(body: &mut Vec<u8>, envoy: &[u8]) {
    if !envoy.windows(NATIVE_PREFIX.len()).any(|w| w == NATIVE_PREFIX) {
        body.extend_from_slice(envoy);
        return;
    }
    for line in envoy.split_inclusive(|b| *b == b'\n') {
        // `# TYPE <name> ...` and `# HELP <name> ...` name the series too.
        let comment = [&b"# TYPE "[..], b"# HELP "].into_iter().find(|c| line.starts_with(c)).unwrap_or_default();
        let name = line.get(comment.len()..).unwrap_or_default();
        match name.strip_prefix(NATIVE_PREFIX) {
            Some(rest) => {
                body.extend_from_slice(comment);
                body.extend_from_slice(rest);
            }
            None => body.extend_from_slice(line),
        }
    }
}

/// The pages this worker assembled lately, each with the second it was
/// assembled in: a page asked for again within that second is answered from
/// here, so that scrapes (each of which makes Envoy dump all its stats and
/// calls the control plane) cost at most one assembly per page, second and
/// worker. Only `/metrics` and `/stats` are kept; a probe's answer is cheap
/// and must be current.
#[derive(Debug, Default)]
pub struct ScrapeCache {
    pages: Vec<(Page, u64, Reply)>,
}

impl ScrapeCache {
    /// The page as assembled in this same second, if it was.
    pub fn fresh(&self, page: Page, now: Now) -> Option<&Reply> {
        self.pages.iter().find(|(p, at, _)| *p == page && *at == now.unix_secs).map(|(_, _, reply)| reply)
    }

    /// Keeps `reply`, the page just assembled.
    pub fn keep(&mut self, page: Page, now: Now, reply: &Reply) {
        if !matches!(page, Page::Metrics | Page::Stats) {
            return;
        }
        self.pages.retain(|(p, _, _)| *p != page);
        self.pages.push((page, now.unix_secs, reply.clone()));
    }
}

impl super::Gateway {
    /// An operator's action on the gateway port (the seeds' `curl -X POST
    /// http://localhost:4444/admin/reload`): with `gateway.auth`, for an
    /// admin caller only; without it, only on a gateway that listens on
    /// loopback (as the admin port does), never for anyone on the network.
    pub(super) fn admin_action(&self, head: &mut RequestHead) -> HeadAction {
        let refusal = match (&self.config.auth, self.config.loopback_only) {
            (None, true) => return HeadAction::Admin,
            (None, false) => McpError::Forbidden(
                "this gateway listens beyond loopback without gateway.auth, so its port takes no operator actions: set \
                 gateway.auth with a key of an admin group, or use the control plane's admin port"
                    .into(),
            ),
            (Some(_), _) => match self.authenticate(head) {
                Ok(Some(caller)) if auth::is_admin(&self.config, &caller) => {
                    head.caller = Some(caller);
                    return HeadAction::Admin;
                }
                Ok(_) => McpError::Forbidden(
                    "operator actions need an admin credential: an API key or token of a group in gateway.auth.admin_groups".into(),
                ),
                Err(e) => e,
            },
        };
        HeadAction::Refuse(auth::refused(&self.config, head, &refusal))
    }

    /// Where an admitted operator's action goes: the control plane, with the
    /// filter's internal token in place of the caller's credentials.
    pub fn admin_edits(&self, head: &RequestHead) -> Result<HeaderEdits<'_>, Reply> {
        let cp = self.config.control_plane.as_ref().ok_or_else(|| Reply::error(None, &McpError::MethodNotAllowed("POST".into())))?;
        Ok(edits::admin(&self.config, cp, head.path.clone()))
    }
}
