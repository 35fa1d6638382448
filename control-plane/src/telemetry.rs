//! What the Envoys tell the control plane about the traffic they carry, for
//! the operator's console: each Envoy's MCP request counters and latency
//! histograms (pushed every few seconds by its `metrics_service` stats sink,
//! `envoy/gateway.yaml`) and the audit log's decisions (streamed by the
//! listener's gRPC access log when the audit log is on, `compile`).
//!
//! Reading those messages into figures is pure ([`tool_figures`],
//! [`audit_entry`], [`merge`]); the gRPC services that receive them are in
//! `telemetry/sinks.rs`. What is kept is bounded: the latest figures per
//! Envoy node (replaced by each push, not accumulated) and the last
//! [`AUDIT_KEPT`] decisions.

pub mod sinks;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::data::accesslog::v3::HttpAccessLogEntry;
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::io::prometheus::client::{Metric, MetricFamily};
use mcp_filter::config::{DECISION_PROPERTY, METHOD_PROPERTY, PRINCIPAL_PROPERTY, REASON_PROPERTY, SERVER_PROPERTY, TARGET_PROPERTY};
use serde::Serialize;

/// How many audit decisions the console can show.
pub const AUDIT_KEPT: usize = 200;

/// The filter's request counter and latency histograms (per server, per
/// tool), as the metrics service names them (`emit_tags_as_labels`: the
/// name without its tags).
const REQUESTS: &str = "mcp_requests_total";
const DURATION: &str = "mcp_request_duration_milliseconds";
const TOOL_DURATION: &str = "mcp_tool_duration_milliseconds";

/// One server's and tool's traffic through one Envoy, or summed over all.
/// Under a tool, its calls and their latency; under an empty tool, the
/// requests to the server that name none (resources, lists, its share of
/// fan-outs) and the latency of all the server's requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub requests: u64,
    pub errors: u64,
    /// Latency samples (requests that ended) and their sum, in ms.
    pub latency_count: u64,
    pub latency_sum_ms: f64,
    /// Cumulative counts per upper bound (ms), in ascending order.
    #[serde(skip)]
    pub buckets: Vec<(f64, u64)>,
}

impl Figures {
    pub fn mean_ms(&self) -> Option<f64> {
        (self.latency_count > 0).then(|| self.latency_sum_ms / self.latency_count as f64)
    }

    /// Its requests and errors, without latency: a tool's share of its
    /// server's totals, whose latency is the server's own histogram.
    pub fn traffic(&self) -> Figures {
        Figures { requests: self.requests, errors: self.errors, ..Figures::default() }
    }

    /// The bucket bound under which at least `q` of the samples fall: an
    /// upper estimate, as a histogram gives.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let want = (self.latency_count as f64 * q).ceil() as u64;
        (self.latency_count > 0).then(|| self.buckets.iter().find(|(_, n)| *n >= want.max(1)).map_or(f64::INFINITY, |(b, _)| *b))
    }

    /// Adds another's counts and buckets. The buckets are cumulative: on
    /// bounds that differ, each side counts at a bound what it counted at
    /// its own largest bound not past it (a floor: never more than true).
    pub fn add(&mut self, other: &Figures) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency_count += other.latency_count;
        self.latency_sum_ms += other.latency_sum_ms;
        let at = |buckets: &[(f64, u64)], bound: f64| buckets.iter().take_while(|(b, _)| *b <= bound).last().map_or(0, |(_, n)| *n);
        let mut bounds: Vec<f64> = self.buckets.iter().chain(&other.buckets).map(|(b, _)| *b).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        self.buckets = bounds.into_iter().map(|b| (b, at(&self.buckets, b) + at(&other.buckets, b))).collect();
    }
}

/// (server, tool) as the filter's labels name them.
pub type ToolKey = (String, String);

fn label<'a>(metric: &'a Metric, name: &str) -> &'a str {
    metric.label.iter().find(|l| l.name.as_deref() == Some(name)).and_then(|l| l.value.as_deref()).unwrap_or_default()
}

/// The per-server, per-tool figures in one push of Envoy's stats. Series
/// without a server (refused before routing, the gateway's own answers) are
/// left out: they belong to no server.
pub fn tool_figures(families: &[MetricFamily]) -> BTreeMap<ToolKey, Figures> {
    let mut out: BTreeMap<ToolKey, Figures> = BTreeMap::new();
    for family in families {
        let name = family.name.as_deref().unwrap_or_default();
        let Some(kind) = [REQUESTS, DURATION, TOOL_DURATION].into_iter().find(|kind| name.ends_with(kind)) else { continue };
        for metric in &family.metric {
            let server = label(metric, "server");
            if server.is_empty() {
                continue;
            }
            // The per-server histogram has no tool label: it goes under "".
            let entry = out.entry((server.to_string(), label(metric, "tool").to_string())).or_default();
            if kind == REQUESTS {
                let n = metric.counter.as_ref().and_then(|c| c.value).unwrap_or(0.0) as u64;
                entry.requests += n;
                if label(metric, "outcome") != "ok" {
                    entry.errors += n;
                }
            } else if let Some(h) = &metric.histogram {
                let mut one = Figures {
                    latency_count: h.sample_count.unwrap_or(0),
                    latency_sum_ms: h.sample_sum.unwrap_or(0.0),
                    buckets: h.bucket.iter().map(|b| (b.upper_bound.unwrap_or(f64::INFINITY), b.cumulative_count.unwrap_or(0))).collect(),
                    ..Figures::default()
                };
                one.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                entry.add(&one);
            }
        }
    }
    out
}

/// The figures of every node, summed.
pub fn merge<'a>(nodes: impl IntoIterator<Item = &'a BTreeMap<ToolKey, Figures>>) -> BTreeMap<ToolKey, Figures> {
    let mut out: BTreeMap<ToolKey, Figures> = BTreeMap::new();
    for node in nodes {
        for (key, figures) in node {
            out.entry(key.clone()).or_default().add(figures);
        }
    }
    out
}

/// One decision of the audit log, as the console shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// When the request started (Envoy's clock), in Unix milliseconds.
    pub time_ms: i64,
    pub node: String,
    pub principal: String,
    pub method: String,
    pub server: String,
    pub target: String,
    pub decision: String,
    pub reason: String,
    pub status: u32,
}

/// A filter state object as the access log service sends it: the wasm
/// filter's as `BytesValue`, the native module's as `StringValue`.
fn state_text(any: &Any) -> Option<String> {
    use prost::Message as _;
    let bytes = if any.type_url.ends_with("google.protobuf.BytesValue") {
        envoy_types::pb::google::protobuf::BytesValue::decode(any.value.as_slice()).ok()?.value
    } else if any.type_url.ends_with("google.protobuf.StringValue") {
        envoy_types::pb::google::protobuf::StringValue::decode(any.value.as_slice()).ok()?.value.into_bytes()
    } else {
        return None;
    };
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The decision an access log entry carries, if it carries one.
pub fn audit_entry(node: &str, entry: &HttpAccessLogEntry) -> Option<AuditEntry> {
    let common = entry.common_properties.as_ref()?;
    let state = |name: &str| common.filter_state_objects.get(&format!("wasm.{name}")).and_then(state_text).unwrap_or_default();
    let decision = state(DECISION_PROPERTY);
    if decision.is_empty() {
        return None;
    }
    let time_ms = common.start_time.as_ref().map_or(0, |t| t.seconds.saturating_mul(1000).saturating_add((t.nanos / 1_000_000).into()));
    Some(AuditEntry {
        time_ms,
        node: node.to_string(),
        principal: state(PRINCIPAL_PROPERTY),
        method: state(METHOD_PROPERTY),
        server: state(SERVER_PROPERTY),
        target: state(TARGET_PROPERTY),
        decision,
        reason: state(REASON_PROPERTY),
        status: entry.response.as_ref().and_then(|r| r.response_code.as_ref()).map_or(0, |c| c.value),
    })
}

#[derive(Default)]
struct Inner {
    /// Per Envoy node id, the stream that pushed last and its latest figures.
    nodes: BTreeMap<String, (u64, BTreeMap<ToolKey, Figures>)>,
    /// The last stream number handed out.
    streams: u64,
    /// The latest decisions, oldest first.
    audit: VecDeque<AuditEntry>,
}

/// What the sinks have received; cheap to clone.
#[derive(Clone, Default)]
pub struct Telemetry(Arc<Mutex<Inner>>);

impl Telemetry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A number for a metrics stream that opens, to name it in
    /// [`record_figures`](Self::record_figures) and [`stream_ended`](Self::stream_ended).
    pub fn stream_opened(&self) -> u64 {
        let mut inner = self.lock();
        inner.streams += 1;
        inner.streams
    }

    /// A node's push on `stream`: its figures replace those it pushed before.
    pub fn record_figures(&self, node: &str, stream: u64, figures: BTreeMap<ToolKey, Figures>) {
        self.lock().nodes.insert(node.to_string(), (stream, figures));
    }

    /// The stream ended (the Envoy went away, or reconnects): its node's
    /// figures go, unless a newer stream of that node has pushed since. A
    /// replica scaled down stops counting in the sums; one that reconnects
    /// is back at its next flush.
    pub fn stream_ended(&self, node: &str, stream: u64) {
        let mut inner = self.lock();
        if inner.nodes.get(node).is_some_and(|(last, _)| *last == stream) {
            inner.nodes.remove(node);
        }
    }

    pub fn record_decision(&self, entry: AuditEntry) {
        let mut inner = self.lock();
        if inner.audit.len() == AUDIT_KEPT {
            inner.audit.pop_front();
        }
        inner.audit.push_back(entry);
    }

    /// Every node's figures, summed, and the nodes that pushed.
    pub fn figures(&self) -> (BTreeMap<ToolKey, Figures>, Vec<String>) {
        let inner = self.lock();
        (merge(inner.nodes.values().map(|(_, figures)| figures)), inner.nodes.keys().cloned().collect())
    }

    /// The latest decisions, newest first.
    pub fn decisions(&self) -> Vec<AuditEntry> {
        self.lock().audit.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests;
