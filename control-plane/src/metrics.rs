//! The control plane's Prometheus metrics (`GET /metrics` on the admin
//! port; the filter appends them to Envoy's on the gateway port). Rendered
//! at each scrape from the status the controller and the xDS registry
//! already keep: nothing here counts by itself. Names and labels are
//! listed in docs/design/observability.md.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::snapshot::{NodeStatus, CLUSTER_TYPE, EXTENSION_CONFIG_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE};
use crate::state::{ServerState, Status};
use crate::token::CredentialState;

/// What a scrape shows.
pub struct Inputs<'a> {
    pub status: &'a Status,
    /// The version being served to Envoys, if any.
    pub served: Option<&'a str>,
    pub nodes: &'a [NodeStatus],
    /// Each server the control plane runs or connects to, with its restarts.
    pub restarts: &'a [(String, u32)],
    /// Times Envoys fetched the filter module.
    pub module_fetches: u64,
    /// The control plane's use of memory and CPU, and its container's.
    pub usage: usage::Usage,
}

/// The short name of an xDS type, for the `type` label.
pub fn type_label(type_url: &str) -> &str {
    match type_url {
        CLUSTER_TYPE => "clusters",
        LISTENER_TYPE => "listeners",
        ROUTE_TYPE => "routes",
        EXTENSION_CONFIG_TYPE => "filter",
        SECRET_TYPE => "secrets",
        other => other.rsplit('.').next().unwrap_or(other),
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = write!(self.0, "{{{}}}", inner.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// The exposition, in the Prometheus text format (0.0.4).
pub fn render(i: &Inputs) -> String {
    let mut o = Out(String::with_capacity(4096));
    let s = i.status;

    o.family("mcp_gateway_control_plane_up", "gauge", "1: the control plane answered this scrape.");
    o.sample("mcp_gateway_control_plane_up", &[], 1);

    o.family("mcp_gateway_catalog_info", "gauge", "The configuration version compiled from the catalog and served to Envoy (1).");
    if let Some(v) = &s.version {
        o.sample("mcp_gateway_catalog_info", &[("version", v)], 1);
    }
    o.family("mcp_gateway_catalog_reloads_total", "counter", "Catalog reloads, by result.");
    o.sample("mcp_gateway_catalog_reloads_total", &[("result", "ok")], s.reloads_ok);
    o.sample("mcp_gateway_catalog_reloads_total", &[("result", "error")], s.reloads_failed);
    o.family(
        "mcp_gateway_catalog_last_reload_success",
        "gauge",
        "1 if the last reload published a configuration, 0 if it failed (the previous one stays).",
    );
    o.sample("mcp_gateway_catalog_last_reload_success", &[], u8::from(s.last_error.is_none()));
    o.family("mcp_gateway_catalog_last_reload_timestamp_seconds", "gauge", "When the last reload ran, in seconds since the epoch.");
    if let Some(t) = s.last_reload_at {
        o.sample("mcp_gateway_catalog_last_reload_timestamp_seconds", &[], seconds(t));
    }

    o.family("mcp_gateway_xds_connected_envoys", "gauge", "Envoy nodes with an open ADS stream.");
    o.sample("mcp_gateway_xds_connected_envoys", &[], i.nodes.iter().filter(|n| n.connected).count());
    o.family("mcp_gateway_xds_pushes_total", "counter", "xDS responses sent, by node and resource type.");
    for n in i.nodes {
        for t in &n.types {
            o.sample("mcp_gateway_xds_pushes_total", &[("node", &n.node_id), ("type", type_label(&t.type_url))], t.sent);
        }
    }
    o.family(
        "mcp_gateway_xds_pushed_bytes_total",
        "counter",
        "Bytes of the xDS responses sent (protobuf encoding), by node and resource type.",
    );
    for n in i.nodes {
        for t in &n.types {
            o.sample("mcp_gateway_xds_pushed_bytes_total", &[("node", &n.node_id), ("type", type_label(&t.type_url))], t.sent_bytes);
        }
    }
    o.family(
        "mcp_gateway_filter_module_fetches_total",
        "counter",
        "Times an Envoy fetched the filter module (once per Envoy process; a catalog change fetches nothing).",
    );
    o.sample("mcp_gateway_filter_module_fetches_total", &[], i.module_fetches);
    render_usage(&mut o, &i.usage);
    o.family("mcp_gateway_xds_acks_total", "counter", "xDS responses an Envoy accepted, by node and resource type.");
    for n in i.nodes {
        for t in &n.types {
            o.sample("mcp_gateway_xds_acks_total", &[("node", &n.node_id), ("type", type_label(&t.type_url))], t.acks);
        }
    }
    o.family("mcp_gateway_xds_nacks_total", "counter", "xDS responses an Envoy rejected, by node and resource type.");
    for n in i.nodes {
        for t in &n.types {
            o.sample("mcp_gateway_xds_nacks_total", &[("node", &n.node_id), ("type", type_label(&t.type_url))], t.nacks);
        }
    }
    o.family(
        "mcp_gateway_envoy_acked_current",
        "gauge",
        "1 if the connected Envoy accepted the version served for every type it asked for.",
    );
    for n in i.nodes.iter().filter(|n| n.connected) {
        let current = i.served.is_some() && !n.types.is_empty() && n.types.iter().all(|t| t.current);
        o.sample("mcp_gateway_envoy_acked_current", &[("node", &n.node_id)], u8::from(current));
    }

    o.family("mcp_gateway_upstream_up", "gauge", "1 if the server answered its last discovery or health check.");
    for server in &s.servers {
        o.sample("mcp_gateway_upstream_up", &[("server", &server.summary.name)], u8::from(server.summary.state == ServerState::Ready));
    }
    o.family("mcp_gateway_server_tools", "gauge", "Tools the server offered when last asked.");
    for server in &s.servers {
        o.sample("mcp_gateway_server_tools", &[("server", &server.summary.name)], server.summary.tools);
    }
    o.family(
        "mcp_gateway_server_dropped_items",
        "gauge",
        "Tools and prompts of the server left out of the lists (a name another server has, or none); /servers says which and why.",
    );
    for server in &s.servers {
        o.sample("mcp_gateway_server_dropped_items", &[("server", &server.summary.name)], server.dropped.len());
    }
    o.family(
        "mcp_gateway_server_changed_tools",
        "gauge",
        "Tools of the server whose definition changed since it was approved (gateway.pin), held or not; /servers shows the change.",
    );
    for server in &s.servers {
        o.sample("mcp_gateway_server_changed_tools", &[("server", &server.summary.name)], server.changed_tools.len());
    }
    o.family(
        "mcp_gateway_server_held_tools",
        "gauge",
        "Tools of the server held until an administrator approves their changed definition (pin: hold).",
    );
    for server in &s.servers {
        let held = server.changed_tools.iter().filter(|c| c.held).count();
        o.sample("mcp_gateway_server_held_tools", &[("server", &server.summary.name)], held);
    }
    let with_token = || s.servers.iter().filter_map(|server| Some((server.summary.name.as_str(), server.credential.as_ref()?)));
    o.family(
        "mcp_gateway_upstream_credential_valid",
        "gauge",
        "For servers with oauth: 1 if the gateway holds a valid token for it; 0 and its calls are refused if not (/servers says why).",
    );
    for (name, c) in with_token() {
        let valid = matches!(c.state, CredentialState::Valid | CredentialState::RefreshFailing);
        o.sample("mcp_gateway_upstream_credential_valid", &[("server", name)], u8::from(valid));
    }
    o.family(
        "mcp_gateway_upstream_credential_expiry_timestamp_seconds",
        "gauge",
        "When the gateway's current token for the server expires, in seconds since the epoch.",
    );
    for (name, c) in with_token() {
        if let Some(at) = c.expires_at {
            o.sample("mcp_gateway_upstream_credential_expiry_timestamp_seconds", &[("server", name)], at);
        }
    }
    o.family(
        "mcp_gateway_upstream_credential_refreshes_total",
        "counter",
        "Tries to get a token for the server from its token endpoint, by result.",
    );
    for (name, c) in with_token() {
        o.sample("mcp_gateway_upstream_credential_refreshes_total", &[("server", name), ("result", "ok")], c.refreshes);
        o.sample("mcp_gateway_upstream_credential_refreshes_total", &[("server", name), ("result", "error")], c.failures);
    }
    o.family(
        "mcp_gateway_upstream_token_exchanges_total",
        "counter",
        "For servers with oauth.grant token_exchange: callers' tokens exchanged, refused, or answered from the control plane's cache.",
    );
    for (name, c) in with_token() {
        if let Some(x) = c.exchanges {
            for (result, n) in [("ok", x.ok), ("error", x.error), ("cached", x.cached)] {
                o.sample("mcp_gateway_upstream_token_exchanges_total", &[("server", name), ("result", result)], n);
            }
        }
    }
    o.family(
        "mcp_gateway_server_restarts_total",
        "counter",
        "Times a server the control plane runs (stdio) or connects to (SSE) died and was restarted.",
    );
    for (name, restarts) in i.restarts {
        o.sample("mcp_gateway_server_restarts_total", &[("server", name)], restarts);
    }
    o.0
}

/// Why the gateway is not ready to serve (none: it is). Readiness and the
/// metrics read the same status, so that an alert and a probe agree.
pub fn not_ready(status: &Status, served: Option<&str>, nodes: &[NodeStatus]) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(e) = &status.last_error {
        reasons.push(format!("the catalog does not load: {e}"));
    }
    let Some(version) = served else {
        reasons.push("no configuration compiled yet".into());
        return reasons;
    };
    let connected: Vec<&NodeStatus> = nodes.iter().filter(|n| n.connected).collect();
    if connected.is_empty() {
        reasons.push("no Envoy is connected to the control plane".into());
    }
    for n in connected {
        let behind: Vec<&str> = n.types.iter().filter(|t| !t.current).map(|t| type_label(&t.type_url)).collect();
        if n.types.is_empty() || !behind.is_empty() {
            reasons.push(format!(
                "Envoy {} has not accepted version {version} ({})",
                n.node_id,
                if behind.is_empty() { "nothing asked yet".into() } else { behind.join(", ") }
            ));
        }
    }
    if !status.servers.iter().any(|s| s.summary.state == ServerState::Ready) {
        reasons.push(if status.servers.is_empty() { "the catalog has no servers".into() } else { "no upstream server is up".into() });
    }
    reasons
}

/// The standard process metrics, and the container's (cgroup) use and
/// limits, which the memory and CPU pressure alerts compare.
fn render_usage(o: &mut Out, u: &usage::Usage) {
    let figures: [(&str, &str, &str, Option<f64>); 6] = [
        ("process_resident_memory_bytes", "gauge", "Resident memory of the control plane's process.", u.resident_bytes.map(|b| b as f64)),
        ("process_cpu_seconds_total", "counter", "CPU time of the control plane's process (user and system).", u.cpu_seconds),
        (
            "mcp_gateway_container_memory_bytes",
            "gauge",
            "Working set of the control plane's cgroup (its container: it and the stdio servers it runs): memory in use less inactive page cache.",
            u.cgroup_memory_bytes.map(|b| b as f64),
        ),
        (
            "mcp_gateway_container_memory_limit_bytes",
            "gauge",
            "The memory limit of that cgroup, past which the kernel kills a process in it (absent: none).",
            u.cgroup_memory_limit_bytes.map(|b| b as f64),
        ),
        ("mcp_gateway_container_cpu_seconds_total", "counter", "CPU time used by that cgroup.", u.cgroup_cpu_seconds),
        (
            "mcp_gateway_container_cpu_limit_cores",
            "gauge",
            "The CPU limit of that cgroup, in cores (absent: none).",
            u.cgroup_cpu_limit_cores,
        ),
    ];
    for (name, kind, help, value) in figures {
        if let Some(v) = value {
            o.family(name, kind, help);
            o.sample(name, &[], v);
        }
    }
}

pub mod usage;

#[cfg(test)]
mod tests;
