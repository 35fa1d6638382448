//! The operator's pages on the gateway's own port: `GET /metrics`
//! (Envoy's Prometheus text, the filter's stats among it, then the control
//! plane's) and `GET /stats` (a JSON summary per server). Owns the calls
//! behind them and the joining of their answers.
//!
//! It never touches an MCP request, and a part that does not answer is
//! said so in the page rather than failing it (but for Envoy's own, without
//! which there is nothing to show).

use crate::config::FilterConfig;
use crate::decision::{Callout, CalloutResponse, Page, Reply};
use crate::error::McpError;
use crate::metrics;

/// Where the gateway's port serves Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// Where it serves the seeds' JSON summary.
pub const STATS_PATH: &str = "/stats";
/// The bootstrap's cluster to Envoy's own admin address (envoy/gateway.yaml).
pub const ENVOY_ADMIN_CLUSTER: &str = "envoy_admin";

/// The page a `GET` of `path` asks for, if any.
pub fn page(path: &str) -> Option<Page> {
    match path {
        METRICS_PATH => Some(Page::Metrics),
        STATS_PATH => Some(Page::Stats),
        _ => None,
    }
}

/// The calls behind a page: Envoy's own stats from its admin address, and
/// the control plane's part when there is one.
pub fn callouts(config: &FilterConfig, page: Page) -> Vec<Callout> {
    let get = |path: &str, authority: &str| {
        vec![(":method", "GET".to_string()), (":path", path.to_string()), (":authority", authority.to_string())]
    };
    let (envoy, control_plane) = match page {
        Page::Metrics => ("/stats/prometheus", METRICS_PATH),
        Page::Stats => (metrics::SUMMARY_STATS_PATH, "/servers"),
    };
    let mut calls =
        vec![Callout { server: usize::MAX, cluster: ENVOY_ADMIN_CLUSTER.into(), headers: get(envoy, "envoy-admin"), body: Vec::new() }];
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
pub fn scrape_reply(page: Page, answers: &[Option<CalloutResponse>]) -> Reply {
    let ok = |i: usize| answers.get(i).and_then(Option::as_ref).filter(|a| a.status == 200 && !a.oversized).map(|a| a.body.as_slice());
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
    body.extend_from_slice(envoy);
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
