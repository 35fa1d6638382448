//! What a finished request adds to the gateway's metrics: pure, so that the
//! names and labels are unit-tested natively; the glue only defines the
//! stats (once per name) and increments them.
//!
//! Every name is an Envoy stat under `wasmcustom.`; labels are encoded in it
//! as `.label=.=value;.;` and taken out again by the `stats_tags` of
//! `envoy/gateway.yaml`, so a value may hold dots (tool names do). Label
//! values come only from the configuration or from fixed lists: nothing a
//! client sends can add a series. See docs/design/observability.md.

use crate::decision::{Audit, AuthFailure, Cause};

/// How a request ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A JSON-RPC error, or an upstream that failed.
    Error,
    Unauthenticated,
    /// Refused by the authorization rules.
    Denied,
    RateLimited,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Denied => "denied",
            Outcome::RateLimited => "rate_limited",
        }
    }
}

/// One MCP request, as its metrics see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tally {
    /// The JSON-RPC method, bounded by [`method_label`].
    pub method: &'static str,
    /// A server of the configuration, or empty.
    pub server: String,
    /// The tool (or prompt) of the configuration it named, or empty.
    pub tool: String,
    /// The JSON-RPC error code of its answer, when it was an error.
    pub code: Option<i64>,
    /// Its answer's HTTP status, once known.
    pub status: u16,
    /// Why its credentials were refused.
    pub auth_failure: Option<AuthFailure>,
    pub denied: bool,
    /// The rate limit that refused it (its name in the catalog).
    pub rate_limit: Option<String>,
    /// Whether its answer opened a gateway session (`initialize`).
    pub session_opened: bool,
    /// For the access log, not the metrics: the request's JSON-RPC id (raw
    /// JSON), the caller's principal, the protocol revision it spoke.
    pub id: Option<String>,
    pub principal: Option<String>,
    pub era: Option<String>,
    /// Envoy's `x-request-id`, and the HTTP method.
    pub request_id: Option<String>,
    pub http_method: Option<String>,
}

/// The methods a label may name; anything else is `other`.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "DELETE",
    "GET",
];

/// `method` if the gateway knows it, else `other`; `unknown` when the
/// request was refused before its method was read.
pub fn method_label(method: &str) -> &'static str {
    if method.is_empty() {
        return "unknown";
    }
    METHODS.iter().find(|m| **m == method).copied().unwrap_or("other")
}

impl Tally {
    /// A request whose body was decided on: its method, and the server and
    /// tool only when the configuration has them (the core names a tool in
    /// the audit only once it found its route).
    pub fn from_audit(audit: &Audit) -> Tally {
        let method = method_label(&audit.method);
        let named = matches!(method, "tools/call" | "prompts/get");
        Tally {
            method,
            server: audit.server.clone().unwrap_or_default(),
            tool: if named { audit.target.clone().unwrap_or_default() } else { String::new() },
            denied: audit.ruling.as_ref().is_some_and(|v| !v.allowed),
            id: audit.id.clone(),
            ..Tally::default()
        }
    }

    /// The request was refused for who sent it or how often.
    pub fn refused(&mut self, cause: &Cause) {
        match cause {
            Cause::Unauthenticated(why) => self.auth_failure = Some(*why),
            Cause::RateLimited(limit) => self.rate_limit = Some(limit.clone()),
            // Its 403 says it.
            Cause::Forbidden => {}
        }
    }

    pub fn outcome(&self) -> Outcome {
        if self.auth_failure.is_some() || self.status == 401 {
            Outcome::Unauthenticated
        } else if self.rate_limit.is_some() || self.status == 429 {
            Outcome::RateLimited
        } else if self.denied || self.status == 403 {
            Outcome::Denied
        } else if self.code.is_some() || self.status >= 400 || self.status == 0 {
            // 0: it ended with no answer (a reset).
            Outcome::Error
        } else {
            Outcome::Ok
        }
    }
}

/// A stat to update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Add one to this counter.
    Count(String),
    /// Record this value in this histogram.
    Record(String, u64),
}

fn label(out: &mut String, name: &str, value: &str) {
    out.push('.');
    out.push_str(name);
    out.push_str("=.=");
    // `;` would end the value early; nothing else is special.
    out.extend(value.chars().map(|c| if c == ';' { '_' } else { c }));
    out.push_str(";.;");
}

fn name(metric: &str, labels: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(64);
    out.push_str(metric);
    for (k, v) in labels {
        label(&mut out, k, v);
    }
    out
}

/// What the request adds to the metrics, given how long it took.
pub fn updates(t: &Tally, duration_ms: u64) -> Vec<Update> {
    let outcome = t.outcome();
    let mut out = vec![
        Update::Count(name(
            "mcp_requests_total",
            &[("method", t.method), ("server", &t.server), ("tool", &t.tool), ("outcome", outcome.as_str())],
        )),
        Update::Record(name("mcp_request_duration_milliseconds", &[("method", t.method), ("server", &t.server)]), duration_ms),
    ];
    // Per tool (or prompt) too, for the console and per-tool alerts: a
    // second histogram, so the one per server keeps its quantiles (which
    // Envoy computes per stat, and which do not add up).
    if !t.tool.is_empty() {
        out.push(Update::Record(name("mcp_tool_duration_milliseconds", &[("server", &t.server), ("tool", &t.tool)]), duration_ms));
    }
    if let Some(code) = t.code {
        out.push(Update::Count(name("mcp_jsonrpc_errors_total", &[("method", t.method), ("code", &code.to_string())])));
        // The Open guide's alert rule reads this one: every error, unlabelled.
        out.push(Update::Count("mcp_errors_total".to_string()));
    }
    match outcome {
        Outcome::Unauthenticated => {
            out.push(Update::Count(name(
                "mcp_auth_failures_total",
                &[("reason", t.auth_failure.unwrap_or(AuthFailure::Invalid).as_str())],
            )));
        }
        Outcome::Denied => out.push(Update::Count(name("mcp_authorization_denials_total", &[("server", &t.server), ("tool", &t.tool)]))),
        Outcome::RateLimited => {
            out.push(Update::Count(name("mcp_rate_limited_total", &[("limit", t.rate_limit.as_deref().unwrap_or(""))])));
        }
        Outcome::Ok | Outcome::Error => {}
    }
    if t.session_opened {
        out.push(Update::Count("mcp_sessions_opened_total".to_string()));
    }
    out
}

/// The MCP members of the request's access-log line (filter state
/// `wasm.mcp_log`, embedded raw by the access log's format): a JSON object.
pub fn log_record(t: &Tally) -> String {
    let text = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    let optional = |v: Option<&str>| v.map_or_else(|| "null".to_string(), text);
    // The id was parsed from the body as JSON; anything else is not written raw.
    let id = t.id.as_deref().filter(|id| serde_json::from_str::<serde::de::IgnoredAny>(id).is_ok()).unwrap_or("null");
    format!(
        r#"{{"method":{},"server":{},"tool":{},"id":{id},"code":{},"outcome":"{}","principal":{},"era":{},"request_id":{},"http_method":{}}}"#,
        text(t.method),
        optional(Some(t.server.as_str()).filter(|s| !s.is_empty())),
        optional(Some(t.tool.as_str()).filter(|s| !s.is_empty())),
        t.code.map_or_else(|| "null".to_string(), |c| c.to_string()),
        t.outcome().as_str(),
        optional(t.principal.as_deref()),
        optional(t.era.as_deref()),
        optional(t.request_id.as_deref()),
        optional(t.http_method.as_deref()),
    )
}

/// The name of an MCP request's trace span, after OpenTelemetry's MCP
/// conventions: the method, then what it acts on if anything
/// (`tools/call add`, `resources/read file:///a`, `tools/list`).
pub fn span_name(method: &str, target: Option<&str>) -> String {
    match target.filter(|t| !t.is_empty()) {
        Some(t) => format!("{method} {t}"),
        None => method.to_string(),
    }
}

/// The span name of a request before (or without) an MCP method: the HTTP
/// method and the path, without its query (which may carry secrets).
pub fn http_span_name(method: &str, path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    format!("{method} {path}")
}

/// How much of a JSON answer the filter reads to find its error code
/// ([`error_code`]): `jsonrpc`, an id of up to a few hundred bytes and the
/// start of `error` or `result`. An error whose `code` comes after a longer
/// `message` (no SDK writes it so) is counted as an answer without one.
pub const PEEK_BYTES: usize = 512;

/// The `error.code` of a JSON-RPC answer, from its first bytes (an answer
/// may be cut anywhere): the top-level members are read in order and
/// skipped, up to `error` (its code) or `result` (none).
pub fn error_code(prefix: &[u8]) -> Option<i64> {
    use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
    /// Walks an object's members in order up to `want`, whose value `take`
    /// reads; `stop` ends the walk with nothing. What follows is never read
    /// (it may not be there), so the walk always ends in an error.
    struct Walk<'a> {
        found: &'a mut Option<i64>,
        /// Inside `error`, looking for `code`; else at the top, for `error`.
        inner: bool,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match (self.inner, key.as_ref()) {
                    (true, "code") => {
                        *self.found = Some(map.next_value::<i64>()?);
                        break;
                    }
                    (false, "error") => return map.next_value_seed(Walk { found: self.found, inner: true }),
                    (false, "result") => break,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Err(A::Error::custom("seen enough"))
        }
    }
    let mut found = None;
    let _ = serde_json::Deserializer::from_slice(prefix).deserialize_map(Walk { found: &mut found, inner: false });
    found
}

/// The value of `label` in one of the filter's stat names: as [`updates`]
/// encodes it (the wasm filter's stats), or as Envoy joins a stat's
/// explicit tags to its name, `.<label>.<value>` (the native module's,
/// which defines labelled families: `filter/native/src/stats.rs`).
pub fn label_of<'a>(stat: &'a str, label: &str) -> Option<&'a str> {
    let marker = format!(".{label}=.=");
    let Some(found) = stat.find(&marker) else { return tagged_label_of(stat, label) };
    let start = found + marker.len();
    let len = stat.get(start..)?.find(";.;")?;
    stat.get(start..start + len)
}

/// `label`'s value in Envoy's joining of explicit tags. Label values hold
/// no dot but a tool's name, which may: it runs to the `outcome` tag that
/// follows it, if one does.
fn tagged_label_of<'a>(stat: &'a str, label: &str) -> Option<&'a str> {
    let marker = format!(".{label}.");
    let rest = stat.get(stat.find(&marker)? + marker.len()..)?;
    let end = if label == "tool" { rest.rfind(".outcome.") } else { rest.find('.') };
    rest.get(..end.unwrap_or(rest.len()))
}

/// Where Envoy's admin gives the filter's request counters and latency
/// histograms as JSON (the `/stats` summary reads it).
pub const SUMMARY_STATS_PATH: &str =
    "/stats?format=json&usedonly&filter=%5Ewasmcustom%5C.mcp_(requests_total%7Crequest_duration_milliseconds)%5C.";

/// The seeds' `GET /stats`: per server, its state and tools (from the
/// control plane's `/servers`, when it answered) and this Envoy's requests,
/// errors and `tools/call` latency percentiles (from Envoy's JSON stats).
/// `None` if Envoy's stats are not JSON of the expected shape.
pub fn stats_summary(envoy: &[u8], servers: Option<&[u8]>) -> Option<String> {
    use serde_json::{json, Map, Value};
    let stats: Value = serde_json::from_slice(envoy).ok()?;
    let entries = stats.get("stats")?.as_array()?;
    let mut per_server: Map<String, Value> = Map::new();
    let blank = || json!({ "state": null, "tools": null, "requests": 0, "errors": 0, "latency_ms": null });
    // Sets a member of a server's entry (always an object: `blank`).
    let set = |entry: &mut Value, key: &str, value: Value| {
        if let Some(o) = entry.as_object_mut() {
            o.insert(key.to_string(), value);
        }
    };
    let (mut requests, mut errors) = (0u64, 0u64);
    for e in entries {
        let (Some(name), Some(value)) = (e.get("name").and_then(Value::as_str), e.get("value").and_then(Value::as_u64)) else { continue };
        if !name.starts_with("wasmcustom.mcp_requests_total.") {
            continue;
        }
        let failed = label_of(name, "outcome") != Some("ok");
        requests += value;
        errors += if failed { value } else { 0 };
        if let Some(server) = label_of(name, "server").filter(|s| !s.is_empty()) {
            let entry = per_server.entry(server.to_string()).or_insert_with(blank);
            for (key, add) in [("requests", value), ("errors", if failed { value } else { 0 })] {
                let sum = entry.get(key).and_then(Value::as_u64).unwrap_or(0) + add;
                set(entry, key, json!(sum));
            }
        }
    }
    // Quantiles come in the order Envoy lists as supported (0, 25, 50, ...).
    let histograms = entries.iter().find_map(|e| e.get("histograms"));
    let supported: Vec<f64> = histograms
        .and_then(|h| h.get("supported_quantiles"))
        .and_then(Value::as_array)
        .map(|q| q.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let at = |values: &[Value], q: f64| {
        supported.iter().position(|s| (s - q).abs() < 1e-9).and_then(|i| values.get(i)).and_then(|v| v.get("cumulative")).cloned()
    };
    for h in histograms.and_then(|h| h.get("computed_quantiles")).and_then(Value::as_array).into_iter().flatten() {
        let (Some(name), Some(values)) = (h.get("name").and_then(Value::as_str), h.get("values").and_then(Value::as_array)) else {
            continue;
        };
        let Some(server) = label_of(name, "server").filter(|s| !s.is_empty()) else { continue };
        if label_of(name, "method") != Some("tools/call") {
            continue;
        }
        let entry = per_server.entry(server.to_string()).or_insert_with(blank);
        set(entry, "latency_ms", json!({ "p50": at(values, 50.0), "p95": at(values, 95.0), "p99": at(values, 99.0) }));
    }
    let listed: Option<crate::status::ServersPage> = servers.and_then(|b| serde_json::from_slice(b).ok());
    for s in listed.iter().flat_map(|l| &l.servers) {
        let entry = per_server.entry(s.name.clone()).or_insert_with(blank);
        set(entry, "state", json!(s.state));
        set(entry, "tools", json!(s.tools));
    }
    let summary = json!({
        "version": listed.as_ref().and_then(|l| l.version.clone()),
        "control_plane": if listed.is_some() { "up" } else { "unreachable" },
        "requests": requests,
        "errors": errors,
        "servers": per_server,
    });
    Some(summary.to_string())
}

#[cfg(test)]
mod tests;
