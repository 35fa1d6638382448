//! Clients' GET streams, which the filter hands over after checking the
//! session: a proxy-wasm filter cannot hold a connection of its own open
//! (its callouts are buffered whole), so the control plane holds them.
//!
//! One client stream merges:
//! - the gateway's own notifications: `list_changed` once the Envoys run a
//!   configuration whose lists differ;
//! - each stateful upstream's GET stream, opened with the client's upstream
//!   session: requests for the client (roots), logging, resource updates.
//!   Requests are rewritten by the filter's relay, so the client's answers,
//!   POSTed to the gateway, find the server that asked. An upstream's
//!   `list_changed` is not passed on: it makes the control plane discover
//!   that server again, and the gateway's own notification follows if what
//!   clients can list changed;
//! - a comment every 15 s, which keeps idle connections open through proxies.
//!
//! The upstream sessions come from two places: those opened at `initialize`
//! are sealed in the client's session id; those the filter opened lazily,
//! on the client's first call to a server, are not, and the filter tells
//! the control plane of each (`POST /mcp-events/opened`, `opened.rs`). A
//! stream joins both: those recorded when it opens, and those recorded while
//! it is open, at once. Each upstream session is relayed once per stream; a
//! server's session opened again replaces the former one.
//!
//! Events are interleaved whole, their ids tagged with their server
//! (`g~<server>~<id>`). A client that reconnects with `Last-Event-ID` gets its
//! stream back with that server's part resumed from there; one that resumes a
//! call's answer (ids tagged `p~<server>~<id>` by the filter) gets that
//! server's replay alone, whether its session was sealed or opened lazily.
//! When the client goes, the stream is dropped, and with it the upstream
//! connections.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::AbortHandle;
use futures::{Stream, StreamExt as _};
use mcp_filter::config::PRINCIPAL_HEADER;
use mcp_filter::relay::{self, outbound, Resumption, SseEvents, Verdict};

use super::error::Refusal;
use super::opened::{session_digest, unix_now, Listening, Opened};
use super::StreamState;
use crate::catalog::StreamLimits;
use crate::state::{Changes, Lists, Served};
use crate::upstream::Upstream;

type Events = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// One upstream GET stream to open for a client.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamStream {
    pub server: Upstream,
    pub session_id: String,
    pub version: Option<String>,
}

/// The upstream streams a client session holds: one per server served that
/// issued it a session id, sealed in the token or opened lazily (`lazily`,
/// the newer where both name a server: the filter opens one only when the
/// session has none it can use). A token that does not open (the filter
/// checked it, but a key may have rotated since) gets only the gateway's
/// own events.
pub fn upstream_streams(served: &Served, token: &str, lazily: &BTreeMap<String, Opened>, now_unix_secs: u64) -> Vec<UpstreamStream> {
    let Ok(state) = served.sealer.open(token, now_unix_secs) else { return Vec::new() };
    served
        .servers
        .iter()
        .filter_map(|server| {
            if let Some(opened) = lazily.get(&server.name) {
                return Some(UpstreamStream { server: server.clone(), session_id: opened.id.clone(), version: opened.version.clone() });
            }
            let session = state.upstreams.get(&server.name)?;
            Some(UpstreamStream { server: server.clone(), session_id: session.id.clone()?, version: session.version.clone() })
        })
        .collect()
}

/// The upstream sessions one client stream relays, by server. Each is
/// opened once, whichever way it came; a server's session opened again
/// (another id) replaces the former, whose stream is ended.
#[derive(Default)]
struct Joined(HashMap<String, (String, AbortHandle)>);

impl Joined {
    /// The stream to add for `u`, or `None` if this client stream relays
    /// that upstream session already.
    fn join(&mut self, changes: &Changes, u: UpstreamStream, from: Resume) -> Option<Events> {
        if self.0.get(&u.server.name).is_some_and(|(id, _)| *id == u.session_id) {
            return None;
        }
        let (server, id) = (u.server.name.clone(), u.session_id.clone());
        let (events, handle) = futures::stream::abortable(upstream_events(changes.clone(), u, from));
        if let Some((_, former)) = self.0.insert(server, (id, handle)) {
            former.abort();
        }
        Some(Box::pin(events))
    }
}

/// The GET streams open now, per caller and per session: counted when one
/// opens and again when it ends (its body dropped, as the client goes), so
/// that `gateway.streams` caps hold however clients come and go. Per
/// control plane: every Envoy's streams for it are counted together.
#[derive(Clone, Default)]
pub struct OpenStreams(Arc<Mutex<Counts>>);

#[derive(Default)]
struct Counts {
    callers: HashMap<String, u32>,
    sessions: HashMap<String, u32>,
}

/// One open stream, counted until it is dropped.
pub struct Held {
    open: OpenStreams,
    caller: String,
    session: Option<String>,
}

impl OpenStreams {
    /// Counts a new stream of `caller` in `session`, or refuses it when
    /// either already holds as many as `limits` allow.
    pub fn admit(&self, caller: &str, session: Option<&str>, limits: &StreamLimits) -> Result<Held, Refusal> {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.callers.get(caller).copied().unwrap_or(0) >= limits.max_per_caller {
            return Err(Refusal::TooManyStreams {
                whose: format!("caller {caller:?}"),
                max: limits.max_per_caller,
                setting: "max_per_caller",
            });
        }
        if let Some(session) = session {
            if counts.sessions.get(session).copied().unwrap_or(0) >= limits.max_per_session {
                let max = limits.max_per_session;
                return Err(Refusal::TooManyStreams { whose: "this session".into(), max, setting: "max_per_session" });
            }
            *counts.sessions.entry(session.to_string()).or_default() += 1;
        }
        *counts.callers.entry(caller.to_string()).or_default() += 1;
        Ok(Held { open: self.clone(), caller: caller.to_string(), session: session.map(str::to_string) })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = self.open.0.lock().unwrap_or_else(PoisonError::into_inner);
        let release = |map: &mut HashMap<String, u32>, key: &str| {
            if let Some(n) = map.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(key);
                }
            }
        };
        release(&mut counts.callers, &self.caller);
        if let Some(session) = &self.session {
            release(&mut counts.sessions, session);
        }
    }
}

/// Who a stream is for: the principal the filter named, else (without
/// authentication) the client's address, the last `X-Forwarded-For` hop,
/// which Envoy appended itself.
pub fn caller_of(headers: &HeaderMap) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(principal) = header(PRINCIPAL_HEADER) {
        return principal.to_string();
    }
    match header("x-forwarded-for").and_then(|xff| xff.rsplit(',').next()).map(str::trim).filter(|a| !a.is_empty()) {
        Some(address) => format!("anonymous at {address}"),
        None => "anonymous".into(),
    }
}

pub async fn events(State(s): State<StreamState>, headers: HeaderMap) -> Response {
    let now = unix_now();
    let token = headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
    let limits = s.current.get().map(|p| p.catalog.gateway.streams.clone()).unwrap_or_default();
    let held = match s.open.admit(&caller_of(&headers), token, &limits) {
        Ok(held) => held,
        Err(refusal) => {
            tracing::info!(caller = %caller_of(&headers), "{}", refusal.message());
            return refusal.into_response();
        }
    };
    // The upstream sessions opened lazily so far, and a listener for those
    // opened from now on, taken together.
    let (lazily, listening) = match token {
        Some(token) => {
            let (lazily, listening) = s.opened.listen(session_digest(token), now);
            (lazily, Some(listening))
        }
        None => (BTreeMap::new(), None),
    };
    let published = s.current.get();
    let upstreams = match (token, &published) {
        (Some(token), Some(published)) => upstream_streams(&published.served, token, &lazily, now),
        _ => Vec::new(),
    };
    let max = published.map_or(relay::DEFAULT_MAX_EVENT_BYTES, |p| p.filter_config.max_upstream_event_bytes);
    let resuming = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(relay::resumption);
    let mut streams: Vec<Events> = Vec::new();
    match plan(upstreams, resuming, max) {
        Err(refusal) => return refusal.into_response(),
        Ok(Plan::Call(u, from)) => {
            tracing::info!(server = %u.server.name, last_event_id = from.last_event_id.as_deref().unwrap_or_default(), "a client resumes a call's answer");
            streams.push(Box::pin(upstream_events(s.changes.clone(), *u, from)));
        }
        Ok(Plan::Stream(upstreams)) => {
            // The filter names the virtual server the stream was opened on.
            let endpoint = headers.get(mcp_filter::config::ENDPOINT_HEADER).and_then(|v| v.to_str().ok()).filter(|e| !e.is_empty());
            streams.push(Box::pin(gateway_events(s.lists.clone(), endpoint.map(str::to_string))));
            streams.push(Box::pin(keepalive()));
            let mut joined = Joined::default();
            for (u, from) in upstreams {
                streams.extend(joined.join(&s.changes, u, from));
            }
            if let (Some(token), Some(listening)) = (token, listening) {
                let current = s.current.clone();
                let served = move || current.get().map(|p| (Arc::clone(&p.served), p.filter_config.max_upstream_event_bytes));
                streams.push(Box::pin(opened_later(Arc::new(served), s.changes.clone(), token.to_string(), listening, joined)));
            }
        }
    }
    // The stream counts as open until its body is dropped.
    let body = Body::from_stream(futures::stream::select_all(streams).map(move |event| {
        let _counted = &held;
        Ok::<_, Infallible>(event)
    }));
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// What a client's stream relays of its upstream sessions (`upstreams`,
/// sealed or opened lazily alike), as the client resumes it
/// (`Last-Event-ID`).
#[derive(Debug, PartialEq)]
enum Plan {
    /// The rest of a call's answer, which the client lost: that server's
    /// replay alone, ending when the server ends it.
    Call(Box<UpstreamStream>, Resume),
    /// The client's GET stream (again): every upstream, the named server's
    /// part from where the client left it.
    Stream(Vec<(UpstreamStream, Resume)>),
}

fn plan(upstreams: Vec<UpstreamStream>, resuming: Option<Resumption>, max: usize) -> Result<Plan, Refusal> {
    match resuming {
        Some(Resumption::Call { server, last_event_id }) => {
            let Some(u) = upstreams.into_iter().find(|u| u.server.name == server) else {
                // Nothing to resume: the client must give up rather than retry.
                return Err(Refusal::NothingToResume(server));
            };
            Ok(Plan::Call(Box::new(u), Resume { last_event_id: Some(last_event_id), tag: relay::call_tag(&server), once: true, max }))
        }
        resumed => Ok(Plan::Stream(
            upstreams
                .into_iter()
                .map(|u| {
                    let last_event_id = match &resumed {
                        Some(Resumption::Stream { server, last_event_id }) if *server == u.server.name => Some(last_event_id.clone()),
                        _ => None,
                    };
                    let from = Resume { last_event_id, tag: relay::stream_tag(&u.server.name), once: false, max };
                    (u, from)
                })
                .collect(),
        )),
    }
}

/// The servers served now and `gateway.max_upstream_event_bytes`, read
/// each time a stream joins upstream sessions.
type ServedNow = Arc<dyn Fn() -> Option<(Arc<Served>, usize)> + Send + Sync>;

/// The streams of the upstream sessions the filter opens lazily while the
/// client's stream is open, each joined as soon as it is recorded (unless
/// the stream relays it already). Ends only with the client's stream.
fn opened_later(
    served: ServedNow,
    changes: Changes,
    token: String,
    listening: Listening,
    joined: Joined,
) -> impl Stream<Item = Bytes> + Send {
    futures::stream::unfold((listening, joined), move |(mut listening, mut joined)| {
        let (served, changes, token) = (Arc::clone(&served), changes.clone(), token.clone());
        async move {
            if !listening.changed().await {
                return None;
            }
            let now = unix_now();
            let mut new: Vec<Events> = Vec::new();
            if let Some((served, max)) = served() {
                for u in upstream_streams(&served, &token, &listening.recorded(now), now) {
                    let from = Resume { last_event_id: None, tag: relay::stream_tag(&u.server.name), once: false, max };
                    new.extend(joined.join(&changes, u, from));
                }
            }
            if !new.is_empty() {
                tracing::debug!(upstreams = new.len(), "a client's GET stream joins upstream sessions opened lazily");
            }
            Some((futures::stream::iter(new), (listening, joined)))
        }
    })
    .flatten()
    .flatten_unordered(None)
}

/// `list_changed` for each kind of list that changed, once the Envoys run it.
/// The gateway's own list changes, for a client of the gateway's endpoint
/// or of the virtual server `endpoint`.
fn gateway_events(rx: tokio::sync::watch::Receiver<Lists>, endpoint: Option<String>) -> impl Stream<Item = Bytes> + Send {
    let seen = rx.borrow().clone();
    futures::stream::unfold((rx, seen, endpoint), |(mut rx, mut seen, endpoint)| async move {
        loop {
            rx.changed().await.ok()?;
            let now = rx.borrow_and_update().clone();
            let methods = seen.changes(&now, endpoint.as_deref());
            seen = now;
            if !methods.is_empty() {
                let events: String =
                    methods.iter().map(|m| format!("event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"{m}\"}}\n\n")).collect();
                return Some((Bytes::from(events), (rx, seen, endpoint)));
            }
        }
    })
}

fn keepalive() -> impl Stream<Item = Bytes> + Send {
    futures::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_secs(15)).await;
        Some((Bytes::from_static(b": keepalive\n\n"), ()))
    })
}

/// Reconnections to one upstream in a row before the client's stream goes
/// on without it.
const MAX_FAILURES: u32 = 5;

type Chunks = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// What becomes of one message on an upstream's GET stream. A list change
/// is not passed on: the upstream is discovered again, and clients hear of
/// it from the gateway once the Envoys run the new lists (if they changed).
/// Requests get relayed ids.
fn judge(changes: &Changes, server: &str, message: &str) -> Verdict {
    #[derive(serde::Deserialize)]
    struct Method<'a> {
        #[serde(borrow)]
        method: Option<std::borrow::Cow<'a, str>>,
    }
    let method = serde_json::from_str::<Method<'_>>(message).ok().and_then(|m| m.method);
    if method.as_deref().is_some_and(|m| LIST_CHANGES.contains(&m)) {
        let _ = changes.send(server.to_string());
        return Verdict::Drop;
    }
    match outbound(server, message) {
        Some(new) => Verdict::Replace(new),
        None => Verdict::Keep,
    }
}

const LIST_CHANGES: [&str; 3] =
    ["notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed"];

/// Where an upstream stream starts, and how its events are tagged.
#[derive(Debug, Clone, PartialEq)]
struct Resume {
    /// Sent as `Last-Event-ID` on the first connection.
    last_event_id: Option<String>,
    /// Put before the server's event ids (`relay::call_tag`, `stream_tag`).
    tag: String,
    /// A replay of one call's answer: not reconnected when it ends.
    once: bool,
    /// The longest event relayed (`gateway.max_upstream_event_bytes`).
    max: usize,
}

/// What the client hears when an upstream's stream is ended for an event
/// over the bound: a log message (a GET stream answers no request), naming
/// the server. The other upstreams' events go on.
fn too_long(server: &str, max: usize) -> String {
    let message = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "notifications/message",
        "params": {
            "level": "error",
            "logger": "mcp-gateway",
            "data": format!(
                "Upstream server '{server}' sent an SSE event longer than the gateway's limit of {max} bytes \
                 (gateway.max_upstream_event_bytes); its stream was closed"
            ),
        },
    });
    format!("event: message\ndata: {message}\n\n")
}

/// One upstream's GET stream, relayed: reconnected with backoff when it
/// breaks, given up when the server has none (405) or forgot the session,
/// or sent an event over the bound.
fn upstream_events(changes: Changes, u: UpstreamStream, from: Resume) -> impl Stream<Item = Bytes> + Send {
    let start: (Option<(Chunks, SseEvents)>, u32, Option<String>) = (None, 0, from.last_event_id.clone());
    futures::stream::unfold(start, move |(mut open, mut failures, mut last_event_id)| {
        let (changes, u, from) = (changes.clone(), u.clone(), from.clone());
        async move {
            loop {
                if let Some((chunks, events)) = open.as_mut() {
                    match chunks.next().await {
                        Some(Ok(chunk)) => {
                            failures = 0;
                            let mut out = events.feed(&chunk, false, |m| judge(&changes, &u.server.name, m));
                            if events.overflowed() {
                                tracing::warn!(server = %u.server.name, max = from.max, "an upstream GET stream sent an event over the bound; closed");
                                out.extend_from_slice(too_long(&u.server.name, from.max).as_bytes());
                                // Ended for good: the next turn stops.
                                return Some((Bytes::from(out), (None, MAX_FAILURES, None)));
                            }
                            if !out.is_empty() {
                                return Some((Bytes::from(out), (open, failures, last_event_id)));
                            }
                            continue;
                        }
                        Some(Err(e)) => tracing::warn!(server = %u.server.name, error = %e, "upstream GET stream broke"),
                        None => tracing::info!(server = %u.server.name, "upstream GET stream ended"),
                    }
                    // A partial event left in the relay is dropped, never
                    // spliced into another upstream's.
                    open = None;
                    failures += 1;
                    if from.once {
                        return None;
                    }
                }
                if failures >= MAX_FAILURES {
                    tracing::warn!(server = %u.server.name, "giving up the upstream GET stream after {failures} failures");
                    return None;
                }
                if failures > 0 {
                    tokio::time::sleep(Duration::from_millis(250 << failures.min(5))).await;
                }
                match connect(&u, last_event_id.take()).await {
                    Ok(Some(chunks)) => open = Some((chunks, SseEvents::tagging_ids(from.tag.clone()).max_event_bytes(from.max))),
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::warn!(server = %u.server.name, url = %u.server.shown, error = %e, "cannot open the upstream GET stream");
                        failures += 1;
                    }
                }
            }
        }
    })
}

/// Opens the GET stream; `None` when the server answers that it has none
/// for this session, which is not worth retrying.
async fn connect(u: &UpstreamStream, last_event_id: Option<String>) -> Result<Option<Chunks>, String> {
    let mut request = u.server.http.client.get(&u.server.url).header("accept", "text/event-stream").header("mcp-session-id", &u.session_id);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    for (name, value) in u.server.auth_headers() {
        request = request.header(name, value);
    }
    if let Some(v) = &u.version {
        request = request.header("mcp-protocol-version", v);
    }
    let response = request.send().await.map_err(|e| u.server.http.failure(&e, &u.server.shown))?;
    let status = response.status();
    if matches!(status.as_u16(), 400 | 404 | 405) {
        tracing::debug!(server = %u.server.name, %status, "the upstream offers no GET stream for this session");
        return Ok(None);
    }
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    Ok(Some(Box::pin(response.bytes_stream())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::http::opened::OpenedSessions;
    use mcp_filter::config::{SessionConfig, SessionKey};
    use mcp_filter::session::{Sealer, SessionState, UpstreamSession};

    /// A sealer whose sessions live `ttl_seconds`.
    pub(crate) fn sealer_for(ttl_seconds: u64) -> Sealer {
        let cfg = SessionConfig {
            active_key: "k".into(),
            keys: vec![SessionKey { id: "k".into(), secret_hex: "22".repeat(32) }],
            ttl_seconds,
            max_id_bytes: 4096,
        };
        Sealer::new(&cfg).unwrap()
    }

    /// A sealer whose sessions live 60 s.
    pub(crate) fn sealer() -> Sealer {
        sealer_for(60)
    }

    /// Server `name`, reached at `url`.
    pub(crate) fn server_at(name: &str, url: &str) -> Upstream {
        let http = crate::upstream::Clients::default().get(None).unwrap();
        Upstream { name: name.into(), url: url.into(), shown: name.into(), headers: vec![], token: None, http }
    }

    pub(crate) fn server(name: &str) -> Upstream {
        server_at(name, &format!("http://{name}/mcp"))
    }

    /// A session id issued at 100 holding upstream sessions `sealed`
    /// (server, id).
    pub(crate) fn token(sealed: &[(&str, &str)]) -> String {
        let mut state = SessionState { issued_at: 100, entropy: 1, version: "2025-11-25".into(), ..SessionState::default() };
        for (server, id) in sealed {
            state.upstreams.insert(server.to_string(), UpstreamSession { id: Some(id.to_string()), version: None, error: None });
        }
        sealer().seal(&state)
    }

    fn stream(name: &str, id: &str) -> UpstreamStream {
        UpstreamStream { server: server(name), session_id: id.into(), version: None }
    }

    #[test]
    fn streams_are_capped_per_caller_and_session_until_they_end() {
        let limits = StreamLimits { max_per_caller: 3, max_per_session: 2, max_open: 10 };
        let open = OpenStreams::default();
        let a1 = open.admit("alice", Some("s1"), &limits).unwrap();
        let _a2 = open.admit("alice", Some("s1"), &limits).unwrap();
        let refused = |r: Result<Held, Refusal>| r.err().map(|e| e.message()).unwrap_or_default();
        assert!(refused(open.admit("alice", Some("s1"), &limits)).contains("this session already holds 2"));
        let _a3 = open.admit("alice", Some("s2"), &limits).unwrap();
        assert!(refused(open.admit("alice", Some("s3"), &limits)).contains("gateway.streams.max_per_caller"));
        // Another caller is not concerned; a stream that ends gives its place back.
        let _b = open.admit("bob", Some("s9"), &limits).unwrap();
        drop(a1);
        let _a4 = open.admit("alice", Some("s1"), &limits).unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(caller_of(&headers), "anonymous");
        headers.insert("x-forwarded-for", "6.6.6.6, 10.0.0.1".parse().unwrap());
        assert_eq!(caller_of(&headers), "anonymous at 10.0.0.1");
        headers.insert(PRINCIPAL_HEADER, "alice".parse().unwrap());
        assert_eq!(caller_of(&headers), "alice");
    }

    #[test]
    fn a_session_opens_the_streams_of_its_stateful_upstreams() {
        let mut state = SessionState { issued_at: 100, entropy: 1, version: "2025-11-25".into(), ..SessionState::default() };
        state.upstreams.insert("a".into(), UpstreamSession { id: Some("sa".into()), version: Some("2025-06-18".into()), error: None });
        state.upstreams.insert("b".into(), UpstreamSession { id: None, version: None, error: Some("down".into()) });
        state.upstreams.insert("gone".into(), UpstreamSession { id: Some("sg".into()), version: None, error: None });
        let token = sealer().seal(&state);
        let served = Served { sealer: sealer(), servers: vec![server("a"), server("b"), server("c")] };
        let none = BTreeMap::new();
        let streams = upstream_streams(&served, &token, &none, 110);
        assert_eq!(streams, vec![UpstreamStream { server: server("a"), session_id: "sa".into(), version: Some("2025-06-18".into()) }]);
        assert!(upstream_streams(&served, &token, &none, 1000).is_empty(), "expired");
        assert!(upstream_streams(&served, "k.garbage", &none, 110).is_empty());
    }

    #[test]
    fn upstream_sessions_opened_lazily_join_the_sealed_ones() {
        let token = token(&[("a", "sa"), ("b", "sb-old")]);
        let served = Served { sealer: sealer(), servers: vec![server("a"), server("b"), server("c"), server("d")] };
        let opened = |id: &str| Opened { id: id.into(), version: Some("2025-06-18".into()) };
        // `b` opened again (its sealed session was unusable), `c` opened
        // lazily, `gone` no longer served.
        let lazily: BTreeMap<String, Opened> =
            [("b", opened("sb")), ("c", opened("sc")), ("gone", opened("sg"))].into_iter().map(|(s, o)| (s.to_string(), o)).collect();
        let streams = upstream_streams(&served, &token, &lazily, 110);
        let named: Vec<(&str, &str, Option<&str>)> =
            streams.iter().map(|u| (u.server.name.as_str(), u.session_id.as_str(), u.version.as_deref())).collect();
        assert_eq!(named, [("a", "sa", None), ("b", "sb", Some("2025-06-18")), ("c", "sc", Some("2025-06-18"))]);
        // A session that does not open has no upstream streams, whatever was recorded.
        assert!(upstream_streams(&served, &token, &lazily, 1000).is_empty());
    }

    #[test]
    fn a_stream_resumes_a_lazily_opened_session_as_a_sealed_one() {
        let upstreams = || vec![stream("a", "sa"), stream("c", "sc")];
        // `c` was opened lazily: its call's answer is resumed alone.
        let call = Some(Resumption::Call { server: "c".into(), last_event_id: "3".into() });
        let from = Resume { last_event_id: Some("3".into()), tag: "p~c~".into(), once: true, max: 100 };
        assert_eq!(plan(upstreams(), call, 100), Ok(Plan::Call(Box::new(stream("c", "sc")), from)));
        // The GET stream again: `c`'s part from event 7, `a`'s from now.
        let again = Some(Resumption::Stream { server: "c".into(), last_event_id: "7".into() });
        let fresh = Resume { last_event_id: None, tag: "g~a~".into(), once: false, max: 100 };
        let resumed = Resume { last_event_id: Some("7".into()), tag: "g~c~".into(), once: false, max: 100 };
        assert_eq!(plan(upstreams(), again, 100), Ok(Plan::Stream(vec![(stream("a", "sa"), fresh), (stream("c", "sc"), resumed)])));
        // A server this session holds no stream of.
        let other = Some(Resumption::Call { server: "d".into(), last_event_id: "1".into() });
        assert_eq!(plan(upstreams(), other, 100), Err(Refusal::NothingToResume("d".into())));
    }

    #[test]
    fn a_stream_relays_each_upstream_session_once() {
        let (changes, _) = tokio::sync::mpsc::unbounded_channel();
        let from = |server: &str| Resume { last_event_id: None, tag: relay::stream_tag(server), once: false, max: 100 };
        let mut joined = Joined::default();
        assert!(joined.join(&changes, stream("a", "sa"), from("a")).is_some());
        assert!(joined.join(&changes, stream("b", "sb"), from("b")).is_some());
        // Sealed, then recorded, then recorded again: one stream.
        assert!(joined.join(&changes, stream("a", "sa"), from("a")).is_none());
        assert!(joined.join(&changes, stream("a", "sa"), from("a")).is_none());
        // Opened again: the new session's stream replaces the former one.
        let former = joined.0.get("a").map(|(_, handle)| handle.clone()).unwrap();
        assert!(joined.join(&changes, stream("a", "sa2"), from("a")).is_some());
        assert!(former.is_aborted());
        assert!(!joined.0.get("b").unwrap().1.is_aborted());
        assert!(joined.join(&changes, stream("a", "sa2"), from("a")).is_none());
    }

    /// An upstream whose GET stream sends one event naming the session it
    /// was opened with.
    async fn upstream() -> String {
        async fn get(headers: HeaderMap) -> Response {
            let session = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let event = format!(
                "id: 1\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"level\":\"info\",\"data\":\"{session}\"}}}}\n\n"
            );
            ([(header::CONTENT_TYPE, "text/event-stream")], event).into_response()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, axum::Router::new().route("/mcp", axum::routing::get(get))).await.unwrap() });
        url
    }

    #[tokio::test]
    async fn an_open_stream_joins_an_upstream_session_opened_after_it() {
        let url = upstream().await;
        let token = token(&[]);
        // The stream reads the real clock: a session that never expires.
        let served = Arc::new(Served { sealer: sealer_for(u64::MAX), servers: vec![server_at("lazy", &url), server("other")] });
        let sessions = OpenedSessions::default();
        let session = crate::http::opened::session_digest(&token);
        let now = unix_now();
        // The client's stream opens first.
        let (recorded, listening) = sessions.listen(session, now);
        assert!(recorded.is_empty());
        let (changes, _) = tokio::sync::mpsc::unbounded_channel();
        let getter: ServedNow = Arc::new(move || Some((Arc::clone(&served), 4096)));
        let mut later = Box::pin(opened_later(getter, changes, token.clone(), listening, Joined::default()));
        // Then the filter opens `lazy` and says so.
        let opened = Opened { id: "lazy-1".into(), version: Some("2025-06-18".into()) };
        sessions.record(session, "lazy", opened, u64::MAX, now);
        let event = String::from_utf8(later.next().await.unwrap().to_vec()).unwrap();
        assert!(event.contains("\"data\":\"lazy-1\""), "{event}");
        assert!(event.contains("id: g~lazy~1"), "{event}");
    }
}
