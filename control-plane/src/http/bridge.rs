//! The era bridge: a 2026-07-28 request (no session) for a server that
//! needs a session or does not speak that revision.
//!
//! The filter sends such a request here (`/mcp-bridge/<server>`, through
//! Envoy like any upstream) because it takes several exchanges a filter
//! cannot hold: `initialize` with the client's capabilities from the
//! request's `_meta`, `notifications/initialized`, the request itself (its
//! answer streamed back as it comes), and DELETE once the answer is over or
//! the client has gone. One upstream session per request: nothing is shared
//! between clients, and any control plane can serve any request.
//!
//! A 2026-07-28 client cannot answer a server's own requests (that revision
//! asks for input with `InputRequiredResult` instead), so the upstream is not
//! told the client can be sampled, elicited or asked for roots, and a request
//! it sends anyway is answered here with an error.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt as _;
use mcp_filter::relay::{SseEvents, Verdict};
use serde_json::{json, Value};

use super::error::Refusal;
use crate::discovery::Session;
use crate::state::Current;

/// What the bridge tells an upstream about the client: its capabilities
/// from `_meta`, without those that need server-to-client requests.
pub fn upstream_capabilities(request: &Value) -> Value {
    let mut caps = request
        .pointer("/params/_meta/io.modelcontextprotocol~1clientCapabilities")
        .filter(|c| c.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(obj) = caps.as_object_mut() {
        for asks_the_client in ["sampling", "elicitation", "roots"] {
            obj.remove(asks_the_client);
        }
    }
    caps
}

fn client_info(request: &Value) -> Value {
    request
        .pointer("/params/_meta/io.modelcontextprotocol~1clientInfo")
        .filter(|c| c.get("name").is_some_and(Value::is_string) && c.get("version").is_some_and(Value::is_string))
        .cloned()
        .unwrap_or_else(|| json!({ "name": "mcp-gateway-bridge", "version": env!("CARGO_PKG_VERSION") }))
}

pub async fn bridge(State(current): State<Current>, Path(name): Path<String>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Refusal::NotJson(e.to_string()).reply(&Value::Null),
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let published = current.get();
    let Some(server) = published.as_ref().and_then(|p| p.served.server(&name).cloned()) else {
        return Refusal::UnknownServer(name).reply(&id);
    };
    let max = published.map_or(mcp_filter::relay::DEFAULT_MAX_EVENT_BYTES, |p| p.filter_config.max_upstream_event_bytes);
    // The client's request: it counts as use of an on-demand server.
    let mut session = Session::for_upstream(&server).for_client();
    let init = match session.handshake(upstream_capabilities(&request), client_info(&request)).await {
        Ok(init) => init,
        Err(reason) => {
            session.close().await;
            return Refusal::Upstream { server: name, reason: reason.to_string() }.reply(&id);
        }
    };
    let method = request.get("method").and_then(Value::as_str).unwrap_or_default().to_string();
    let (downgraded, log_level) = handshake_era(request);
    // The revision asks for log messages per request; a session asks once.
    let logs = log_level.is_some() && init.pointer("/capabilities/logging").is_some_and(|l| !l.is_null());
    if let (true, Some(level)) = (logs, &log_level) {
        if let Err(e) = session.call("logging/setLevel", json!({ "level": level })).await {
            tracing::debug!(server = %name, error = %e, "the bridge could not set the log level");
        }
    }
    let answer = match session.send_raw(downgraded.to_string().into_bytes()).await {
        Ok(a) => a,
        Err(reason) => {
            session.close().await;
            return Refusal::Upstream { server: name, reason: reason.to_string() }.reply(&id);
        }
    };
    let status = answer.status();
    // The upstream refused the gateway's credentials: its challenge must not
    // reach the client, whose own credentials were accepted.
    if status == StatusCode::UNAUTHORIZED || (status == StatusCode::FORBIDDEN && answer.headers().contains_key(header::WWW_AUTHENTICATE)) {
        session.close().await;
        let reason = format!("refused the gateway's credentials (HTTP {}); fix servers[].headers for it in the catalog", status.as_u16());
        return Refusal::Upstream { server: name, reason }.reply(&id);
    }
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned().unwrap_or(HeaderValue::from_static("application/json"));
    let is_sse = content_type.to_str().is_ok_and(|c| c.starts_with("text/event-stream"));
    // The session ends when the answer has been relayed, or when the client
    // goes (the stream is dropped): either way `Closer` runs.
    let closer = Closer(Some(session));
    let body = if is_sse {
        let events = SseEvents::judging_all().max_event_bytes(max);
        // An event over the bound ends the answer with an error for the
        // request, and the stream with it.
        let stream = answer.bytes_stream().scan((events, false), move |(events, over), chunk| {
            if *over {
                return std::future::ready(None);
            }
            let Ok(chunk) = chunk else { return std::future::ready(Some(Bytes::new())) };
            let mut out = events.feed(&chunk, false, |message| modernize(message, &method, &closer, logs));
            if events.overflowed() {
                *over = true;
                let error = Refusal::Upstream { server: name.clone(), reason: too_long(max) };
                let (_, code) = error.status_and_code();
                let message = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": error.message() } });
                out.extend_from_slice(format!("event: message\ndata: {message}\n\n").as_bytes());
            }
            std::future::ready(Some(Bytes::from(out)))
        });
        Body::from_stream(stream.map(Ok::<_, Infallible>))
    } else {
        let whole = match read_bounded(answer, max).await {
            Ok(whole) => whole,
            Err(reason) => {
                drop(closer);
                return Refusal::Upstream { server: name, reason }.reply(&id);
            }
        };
        let text = String::from_utf8_lossy(&whole);
        let out = match modernize(&text, &method, &closer, logs) {
            Verdict::Replace(new) => Bytes::from(new),
            Verdict::Keep | Verdict::Drop => whole,
        };
        drop(closer);
        Body::from(out)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    response
}

fn too_long(max: usize) -> String {
    format!("sent an SSE event longer than the gateway's limit of {max} bytes (gateway.max_upstream_event_bytes); the rest of its answer was dropped")
}

/// An answer's body, read whole only up to `max` bytes: a larger one is an
/// error naming the bound, not memory held.
pub async fn read_bounded(answer: reqwest::Response, max: usize) -> Result<Bytes, String> {
    let mut chunks = answer.bytes_stream();
    let mut whole = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| format!("its answer broke: {e}"))?;
        if whole.len() + chunk.len() > max {
            return Err(format!("sent an answer larger than the gateway's limit of {max} bytes (gateway.max_upstream_event_bytes)"));
        }
        whole.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(whole))
}

/// The keys of a 2026-07-28 request's `_meta` that make its envelope: a
/// handshake-era session has them from `initialize` (or `logging/setLevel`),
/// and a server of that era may refuse a request that carries them.
const ENVELOPE: [&str; 4] = [
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/logLevel",
];

/// The request as a handshake-era session carries it: without the
/// envelope's keys (others, such as `progressToken`, stay), and the log
/// level the client asked for, if any.
fn handshake_era(mut request: Value) -> (Value, Option<String>) {
    let mut log_level = None;
    if let Some(params) = request.get_mut("params").and_then(Value::as_object_mut) {
        if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
            log_level = meta.get(ENVELOPE[3]).and_then(Value::as_str).map(str::to_string);
            for key in ENVELOPE {
                meta.remove(key);
            }
            if meta.is_empty() {
                params.remove("_meta");
            }
        }
    }
    (request, log_level)
}

/// Results that 2026-07-28 requires to say how long they may be cached.
const CACHEABLE: [&str; 6] =
    ["resources/read", "tools/list", "prompts/list", "resources/list", "resources/templates/list", "server/discover"];

/// One message of the upstream's answer to `method`, as a 2026-07-28 client
/// must get it: a result says it is complete (`resultType`, which that
/// revision requires) and, for what may be cached, that it may not be
/// (`ttlMs: 0`, `cacheScope: private`: the server said nothing of it); a
/// request for the client is answered here and dropped; log messages pass
/// only when the client asked for them (`logs`).
fn modernize(message: &str, method: &str, closer: &Closer, logs: bool) -> Verdict {
    let Ok(mut m) = serde_json::from_str::<Value>(message) else { return Verdict::Keep };
    if let (Some(id), Some(method)) = (m.get("id"), m.get("method").and_then(Value::as_str)) {
        closer.decline(id.clone(), method.to_string());
        return Verdict::Drop;
    }
    if !logs && m.get("method").and_then(Value::as_str) == Some("notifications/message") {
        return Verdict::Drop;
    }
    let Some(result) = m.get_mut("result").and_then(Value::as_object_mut) else { return Verdict::Keep };
    let mut missing: Vec<(&str, Value)> = vec![("resultType", "complete".into())];
    if CACHEABLE.contains(&method) {
        missing.extend([("ttlMs", 0.into()), ("cacheScope", "private".into())]);
    }
    missing.retain(|(key, _)| !result.contains_key(*key));
    if missing.is_empty() {
        return Verdict::Keep;
    }
    for (key, value) in missing {
        result.insert(key.into(), value);
    }
    Verdict::Replace(m.to_string())
}

/// Holds the upstream session of one bridged request and ends it on drop.
struct Closer(Option<Session>);

impl Closer {
    /// Answers a request the upstream sent the client, which a 2026-07-28
    /// client cannot answer.
    fn decline(&self, id: Value, method: String) {
        let Some(session) = &self.0 else { return };
        let message = json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": { "code": -32601, "message": format!("{method}: the client speaks MCP 2026-07-28 through the gateway and cannot be asked") },
        });
        let session = session.clone();
        tokio::spawn(async move {
            if let Err(e) = session.notify(&message).await {
                tracing::debug!(error = %e, "declining a server request failed");
            }
        });
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        if let Some(mut session) = self.0.take() {
            tokio::spawn(async move { session.close().await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_learns_what_the_client_can_do_but_be_asked() {
        let request = json!({"params": {"_meta": {
            "io.modelcontextprotocol/clientCapabilities": {"sampling": {}, "roots": {}, "elicitation": {}, "experimental": {"x": {}}},
            "io.modelcontextprotocol/clientInfo": {"name": "py", "version": "2"},
        }}});
        assert_eq!(upstream_capabilities(&request), json!({"experimental": {"x": {}}}));
        assert_eq!(client_info(&request), json!({"name": "py", "version": "2"}));
        assert_eq!(upstream_capabilities(&json!({})), json!({}));
        assert_eq!(client_info(&json!({}))["name"], "mcp-gateway-bridge");
    }

    #[test]
    fn the_envelope_stays_out_of_a_handshake_era_session() {
        let request = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "t", "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "py", "version": "2"},
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/logLevel": "debug",
            "progressToken": 7,
        }}});
        let (down, level) = handshake_era(request);
        assert_eq!(
            down,
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "t", "_meta": {"progressToken": 7}}})
        );
        assert_eq!(level.as_deref(), Some("debug"));
        let bare = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
        assert_eq!(handshake_era(bare), (json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}), None));
        let no_params = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        assert_eq!(handshake_era(no_params.clone()), (no_params, None));
    }

    #[test]
    fn log_messages_pass_only_when_asked_for() {
        let none = Closer(None);
        let log = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#;
        assert_eq!(modernize(log, "tools/call", &none, false), Verdict::Drop);
        assert_eq!(modernize(log, "tools/call", &none, true), Verdict::Keep);
    }

    #[test]
    fn results_say_they_are_complete() {
        let none = Closer(None);
        assert_eq!(
            modernize(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#, "tools/call", &none, true),
            Verdict::Replace(r#"{"id":1,"jsonrpc":"2.0","result":{"content":[],"resultType":"complete"}}"#.into())
        );
        assert_eq!(modernize(r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete"}}"#, "tools/call", &none, true), Verdict::Keep);
        assert_eq!(modernize(r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#, "tools/call", &none, true), Verdict::Keep);
        assert_eq!(modernize(r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#, "tools/call", &none, true), Verdict::Keep);
        assert_eq!(modernize(r#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage"}"#, "tools/call", &none, true), Verdict::Drop);
        assert_eq!(
            modernize(r#"{"jsonrpc":"2.0","id":1,"result":{"contents":[]}}"#, "resources/read", &none, true),
            Verdict::Replace(
                r#"{"id":1,"jsonrpc":"2.0","result":{"cacheScope":"private","contents":[],"resultType":"complete","ttlMs":0}}"#.into()
            ),
            "a read may be cached: the result says for how long"
        );
    }
}
