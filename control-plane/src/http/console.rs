//! The operator's console: a page, its script and its style (written here,
//! compiled into the binary: nothing is fetched from elsewhere), and the one
//! JSON document it polls, `GET /console/state`. Its buttons use the admin
//! API's own actions (`/servers/{name}/start|stop|restart`,
//! `/admin/reload`), with the admin key the operator types in when
//! authentication is on.
//!
//! Served on the admin port, and on the gateway's port through Envoy: the
//! page and its assets to anyone (they hold no data), the state to an admin
//! caller once `gateway.auth` is on (the filter checks, as for `/servers`).
//!
//! [`state`] is a pure function of what the control plane knows; the
//! handlers only gather it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::controller::Controller;
use crate::runtime::{ProcessStatus, Runtimes};
use crate::snapshot::{NodeStatus, SnapshotCache};
use crate::state::{Current, Status};
use crate::telemetry::{AuditEntry, Figures, ToolKey};

const PAGE: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/app.css");

/// Nothing but this origin's own script and style, no framing (its buttons
/// change state), no referrer.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[derive(serde::Deserialize)]
pub struct Open {
    /// The servers whose tools, prompts and resources the page shows
    /// (comma-separated names): only those are listed, so that a page on
    /// a catalog of a thousand servers stays small.
    #[serde(default)]
    open: String,
}

pub async fn state_page(
    State(c): State<Controller>,
    State(cache): State<SnapshotCache>,
    State(runtimes): State<Arc<Runtimes>>,
    State(current): State<Current>,
    Query(open): Query<Open>,
) -> Response {
    let status = c.status();
    let processes: BTreeMap<String, ProcessStatus> =
        status.servers.iter().filter_map(|s| runtimes.status(&s.summary.name).map(|p| (s.summary.name.clone(), p))).collect();
    let telemetry = c.telemetry();
    let (figures, reporting) = telemetry.figures();
    let published = current.get();
    let inputs = Inputs {
        status: &status,
        served: cache.current().map(|s| s.version.clone()),
        nodes: &cache.status(),
        processes: &processes,
        config: published.as_ref().map(|p| p.filter_config.as_ref()),
        needs_key: published.as_ref().is_some_and(|p| p.admin_keys.is_some()),
        figures: &figures,
        reporting: &reporting,
        audit: &telemetry.decisions(),
        open: &open.open.split(',').filter(|s| !s.is_empty()).collect(),
    };
    ([(header::CACHE_CONTROL, "no-store")], Json(state(&inputs))).into_response()
}

/// What the state page is made of.
pub struct Inputs<'a> {
    pub status: &'a Status,
    pub served: Option<String>,
    pub nodes: &'a [NodeStatus],
    pub processes: &'a BTreeMap<String, ProcessStatus>,
    pub config: Option<&'a mcp_filter::config::FilterConfig>,
    /// Whether the actions need an admin key (authentication is on).
    pub needs_key: bool,
    pub figures: &'a BTreeMap<ToolKey, Figures>,
    /// The Envoys whose stats arrived.
    pub reporting: &'a [String],
    pub audit: &'a [AuditEntry],
    pub open: &'a BTreeSet<&'a str>,
}

fn figures_json(f: Option<&Figures>) -> Value {
    let f = f.cloned().unwrap_or_default();
    let ms = |v: Option<f64>| v.filter(|v| v.is_finite()).map(|v| (v * 100.0).round() / 100.0);
    json!({
        "requests": f.requests,
        "errors": f.errors,
        "mean_ms": ms(f.mean_ms()),
        "p95_ms": ms(f.quantile_ms(0.95)),
        // Beyond the histogram's last bound.
        "p95_over_ms": f.quantile_ms(0.95).filter(|v| v.is_infinite()).and(f.buckets.last().map(|b| b.0)),
    })
}

/// The console's whole view, as JSON.
pub fn state(i: &Inputs) -> Value {
    let envoys: Vec<Value> = i
        .nodes
        .iter()
        .map(|n| {
            let nack = n.types.iter().filter_map(|t| t.last_nack.as_ref().map(|k| (t, k))).max_by_key(|(_, k)| k.at);
            let behind: Vec<&str> = n.types.iter().filter(|t| !t.current).map(|t| crate::metrics::type_label(&t.type_url)).collect();
            let acked = n.types.iter().filter_map(|t| t.last_acked_version.as_deref()).min();
            json!({
                "node": n.node_id,
                "connected": n.connected,
                "acked": acked,
                "current": n.connected && !n.types.is_empty() && behind.is_empty(),
                "behind": behind,
                "nack": nack.map(|(t, k)| json!({ "type": crate::metrics::type_label(&t.type_url), "version": k.version, "error": k.error })),
                "reporting": i.reporting.contains(&n.node_id),
            })
        })
        .collect();
    let servers: Vec<Value> = i
        .status
        .servers
        .iter()
        .map(|s| {
            let name = s.summary.name.as_str();
            let mut totals = Figures::default();
            for ((server, tool), f) in i.figures.range((name.to_string(), String::new())..) {
                if server != name {
                    break;
                }
                totals.add(&if tool.is_empty() { f.clone() } else { f.traffic() });
            }
            let mut entry = json!({
                "name": name,
                "state": s.summary.state,
                "runtime": s.runtime,
                "url": s.url,
                "tools": s.summary.tools,
                "prompts": s.prompts,
                "resources": s.resources,
                "last_error": s.last_error,
                "process": i.processes.get(name),
                "changed_tools": s.changed_tools.len(),
                "figures": figures_json(Some(&totals)),
            });
            if i.open.contains(name) {
                entry["items"] = items(i, name);
            }
            entry
        })
        .collect();
    json!({
        "version": i.status.version,
        "served": i.served,
        "last_error": i.status.last_error,
        "needs_key": i.needs_key,
        "envoys": envoys,
        "servers": servers,
        "audit": i.audit,
    })
}

/// A server's tools (with their figures), prompts and resources, as served.
fn items(i: &Inputs, server: &str) -> Value {
    let Some(config) = i.config else { return json!({ "tools": [], "prompts": [], "resources": [] }) };
    let Some(index) = config.servers.iter().position(|s| s.name == server) else {
        return json!({ "tools": [], "prompts": [], "resources": [] });
    };
    let described = |definition: &mcp_filter::config::Definition| {
        definition.value().get("description").and_then(Value::as_str).map(|d| d.chars().take(200).collect::<String>())
    };
    let tools: Vec<Value> = config
        .tools
        .iter()
        .filter(|t| t.server == index)
        .map(|t| {
            json!({
                "name": t.name,
                "upstream_name": t.upstream_name,
                "description": described(&t.definition),
                "figures": figures_json(i.figures.get(&(server.to_string(), t.name.clone()))),
            })
        })
        .collect();
    let prompts: Vec<Value> = config
        .prompts
        .iter()
        .filter(|p| p.server == index)
        .map(|p| json!({ "name": p.name, "description": described(&p.definition) }))
        .collect();
    let resources: Vec<Value> = config
        .resources
        .iter()
        .chain(&config.resource_templates)
        .filter(|r| r.server == index)
        .map(|r| {
            let d = &r.definition;
            json!({ "uri": d.get("uri").or_else(|| d.get("uriTemplate")), "name": d.get("name") })
        })
        .collect();
    json!({ "tools": tools, "prompts": prompts, "resources": resources })
}

#[cfg(test)]
mod tests;
