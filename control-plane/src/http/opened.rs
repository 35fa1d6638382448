//! Upstream sessions the filter opened lazily: on a client's first call to a
//! server rather than at `initialize`. With many stateful servers a gateway
//! session id cannot seal every upstream session (it would pass header
//! limits), so the filter keeps those in Envoy's shared data, and tells the
//! control plane of each (`POST /mcp-events/opened`), which holds the clients'
//! GET streams (`streams.rs`) and must relay those upstreams' streams too.
//!
//! The filter sends, with its internal token:
//!
//! ```text
//! POST /mcp-events/opened
//! mcp-session-id: <the client's gateway session id>
//! content-type: application/json
//!
//! {"server": "<catalog name>", "id": "<the upstream's Mcp-Session-Id>", "version": "<agreed protocol version, optional>"}
//! ```
//!
//! and is answered 204 once it is recorded (again or not); refused, with a
//! JSON-RPC error as the other internal endpoints refuse, 404 when the
//! session id does not open (expired, forged) or the server is not served,
//! 400 without `mcp-session-id`, for a body that is not that JSON (fields
//! besides these three are ignored) or an id or version that is empty, over
//! [`MAX_UPSTREAM_ID_BYTES`] or [`MAX_VERSION_BYTES`] or not visible ASCII,
//! and 413 for a body over [`MAX_BODY_BYTES`].
//!
//! Records are kept in memory, by each control plane for the GET streams it
//! holds ([`Registry`]): under a digest of the client's session id, one
//! upstream session per server, until the client session expires (its issue
//! time plus the session TTL served), at most [`MAX_ENTRIES`] in all and
//! [`MAX_PER_SESSION`] per session; past them, the session's oldest record
//! goes, or the registry's whose session expires first. The GET streams open
//! for that session hear of a new record at once
//! ([`OpenedSessions::listen`]) and join that upstream's stream; a GET
//! stream opened later finds it here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::error::Refusal;
use super::StreamState;
use crate::state::Served;

/// The largest body taken: a server name, an id and a version.
pub const MAX_BODY_BYTES: usize = 4096;
/// The longest upstream session id recorded, as the filter's own bound on
/// those it seals.
pub const MAX_UPSTREAM_ID_BYTES: usize = 256;
/// The longest protocol version recorded (they look like `2025-11-25`).
pub const MAX_VERSION_BYTES: usize = 64;
/// Upstream sessions recorded at most, for all client sessions together: a
/// few hundred bytes each, some tens of MB in all.
pub const MAX_ENTRIES: usize = 65_536;
/// Upstream sessions recorded at most for one client session.
pub const MAX_PER_SESSION: usize = 1_024;

/// What names a client session here: 128 bits of a SHA-256 of its gateway
/// session id, short whatever the id, and so that no id is kept.
pub type SessionDigest = [u8; 16];

pub fn session_digest(token: &str) -> SessionDigest {
    let digest = Sha256::new().chain_update(b"mcp-gateway opened upstream sessions\0").chain_update(token.as_bytes()).finalize();
    let mut out = SessionDigest::default();
    out.iter_mut().zip(digest.iter()).for_each(|(o, d)| *o = *d);
    out
}

/// An upstream session the filter opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The upstream's `Mcp-Session-Id`.
    pub id: String,
    /// The protocol version the upstream agreed to.
    pub version: Option<String>,
}

/// How many records a [`Registry`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_entries: usize,
    pub max_per_session: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { max_entries: MAX_ENTRIES, max_per_session: MAX_PER_SESSION }
    }
}

struct Entry {
    opened: Opened,
    /// The last second the client session is valid (`issued_at + ttl`).
    expires_at: u64,
    /// When it was recorded, in the registry's order.
    seq: u64,
}

/// What recording did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A server the session had no record of.
    New,
    /// The server's record named another upstream session, which this one
    /// replaces (the filter opened it again).
    Replaced,
    /// The same upstream session again: nothing changed.
    Same,
    /// The client session had already expired: nothing recorded.
    Expired,
}

/// What recording did, and how many records it evicted to make room
/// (expired ones, dropped on the way, are not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub change: Change,
    pub evicted: usize,
}

/// The upstream sessions opened lazily, per client session: pure
/// bookkeeping, the time passed in.
#[derive(Default)]
pub struct Registry {
    bounds: Bounds,
    sessions: HashMap<SessionDigest, BTreeMap<String, Entry>>,
    /// Every record by when its session expires, then by when it was
    /// recorded: the first is the next to expire, and the one evicted when
    /// the registry is full.
    order: BTreeMap<(u64, u64), (SessionDigest, String)>,
    seq: u64,
}

impl Registry {
    /// A registry keeping at most `bounds` (at least one record in all and
    /// per session).
    pub fn new(bounds: Bounds) -> Self {
        let bounds = Bounds { max_entries: bounds.max_entries.max(1), max_per_session: bounds.max_per_session.max(1) };
        Registry { bounds, ..Registry::default() }
    }

    /// Records in all.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Records that `session`, valid until `expires_at`, holds `opened` with
    /// `server`. Expired records go first; then, if the session or the
    /// registry is full, the session's oldest record or the registry's
    /// nearest to expiry.
    pub fn record(&mut self, session: SessionDigest, server: &str, opened: Opened, expires_at: u64, now: u64) -> Recorded {
        self.purge(now);
        if expires_at < now {
            return Recorded { change: Change::Expired, evicted: 0 };
        }
        self.seq += 1;
        let seq = self.seq;
        let former = self.sessions.get(&session).and_then(|s| s.get(server)).map(|e| (e.opened == opened, (e.expires_at, e.seq)));
        let change = match former {
            Some((true, _)) => return Recorded { change: Change::Same, evicted: 0 },
            Some((false, at)) => {
                self.remove(at);
                Change::Replaced
            }
            None => Change::New,
        };
        let mut evicted = 0;
        let servers = self.sessions.get(&session);
        if servers.is_some_and(|s| s.len() >= self.bounds.max_per_session) {
            if let Some((seq, expires_at)) = servers.and_then(|s| s.values().map(|e| (e.seq, e.expires_at)).min()) {
                self.remove((expires_at, seq));
                evicted += 1;
            }
        }
        while self.order.len() >= self.bounds.max_entries {
            let Some((&at, _)) = self.order.first_key_value() else { break };
            self.remove(at);
            evicted += 1;
        }
        self.sessions.entry(session).or_default().insert(server.to_string(), Entry { opened, expires_at, seq });
        self.order.insert((expires_at, seq), (session, server.to_string()));
        Recorded { change, evicted }
    }

    /// The upstream sessions recorded for `session`, by server, unless it
    /// has expired.
    pub fn of(&self, session: &SessionDigest, now: u64) -> BTreeMap<String, Opened> {
        let Some(servers) = self.sessions.get(session) else { return BTreeMap::new() };
        servers.iter().filter(|(_, e)| e.expires_at >= now).map(|(server, e)| (server.clone(), e.opened.clone())).collect()
    }

    /// Drops the records of sessions expired by `now`.
    fn purge(&mut self, now: u64) {
        while let Some((&at, _)) = self.order.first_key_value().filter(|((expires_at, _), _)| *expires_at < now) {
            self.remove(at);
        }
    }

    /// Drops one record, and its session once it holds none.
    fn remove(&mut self, at: (u64, u64)) {
        let Some((session, server)) = self.order.remove(&at) else { return };
        if let Some(servers) = self.sessions.get_mut(&session) {
            servers.remove(&server);
            if servers.is_empty() {
                self.sessions.remove(&session);
            }
        }
    }
}

/// The registry, shared by the handlers, and the GET streams listening for
/// new records of their session.
#[derive(Clone, Default)]
pub struct OpenedSessions(Arc<Mutex<Shared>>);

#[derive(Default)]
struct Shared {
    registry: Registry,
    /// Per session with GET streams open: the channel that says a record
    /// changed, and how many streams listen to it.
    listeners: HashMap<SessionDigest, (watch::Sender<()>, usize)>,
}

impl OpenedSessions {
    pub fn new(bounds: Bounds) -> Self {
        OpenedSessions(Arc::new(Mutex::new(Shared { registry: Registry::new(bounds), listeners: HashMap::new() })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an upstream session (see [`Registry::record`]); the GET
    /// streams open for that session hear of it if it is new.
    pub fn record(&self, session: SessionDigest, server: &str, opened: Opened, expires_at: u64, now: u64) -> Recorded {
        let mut shared = self.lock();
        let recorded = shared.registry.record(session, server, opened, expires_at, now);
        if matches!(recorded.change, Change::New | Change::Replaced) {
            if let Some((changed, _)) = shared.listeners.get(&session) {
                changed.send_replace(());
            }
        }
        recorded
    }

    /// The upstream sessions recorded for `session`, by server.
    pub fn of(&self, session: &SessionDigest, now: u64) -> BTreeMap<String, Opened> {
        self.lock().registry.of(session, now)
    }

    /// The upstream sessions recorded for `session` now, and a listener that
    /// hears of every record after them, until it is dropped (taken at once:
    /// no record falls between).
    pub fn listen(&self, session: SessionDigest, now: u64) -> (BTreeMap<String, Opened>, Listening) {
        let mut shared = self.lock();
        let recorded = shared.registry.of(&session, now);
        let (changed, count) = shared.listeners.entry(session).or_insert_with(|| (watch::channel(()).0, 0));
        *count += 1;
        let rx = changed.subscribe();
        (recorded, Listening { sessions: self.clone(), session, rx })
    }

    #[cfg(test)]
    fn listening(&self) -> usize {
        self.lock().listeners.values().map(|(_, n)| n).sum()
    }
}

/// A GET stream listening for new records of its session.
pub struct Listening {
    sessions: OpenedSessions,
    session: SessionDigest,
    rx: watch::Receiver<()>,
}

impl Listening {
    /// Waits until a record of the session is new or replaced; `false` if
    /// none can come any more.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }

    /// The upstream sessions recorded for the session now.
    pub fn recorded(&self, now: u64) -> BTreeMap<String, Opened> {
        self.sessions.of(&self.session, now)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let mut shared = self.sessions.lock();
        if let Some((_, count)) = shared.listeners.get_mut(&self.session) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                shared.listeners.remove(&self.session);
            }
        }
    }
}

/// What the filter asks to record.
#[derive(serde::Deserialize)]
struct Report {
    server: String,
    id: String,
    #[serde(default)]
    version: Option<String>,
}

/// A record to make, as [`judge`] decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToRecord {
    pub session: SessionDigest,
    pub server: String,
    pub opened: Opened,
    pub expires_at: u64,
}

/// Decides what a report asks to record: `served` is what is served now and
/// the session TTL (`None` before the first good reload), `token` the
/// client's gateway session id, `body` the report.
pub fn judge(served: Option<(&Served, u64)>, token: Option<&str>, body: &[u8], now: u64) -> Result<ToRecord, Refusal> {
    let Some(token) = token else {
        return Err(Refusal::BadRequest(
            "no mcp-session-id header: name the client's gateway session the upstream session belongs to".into(),
        ));
    };
    let report: Report = serde_json::from_slice(body)
        .map_err(|e| Refusal::BadRequest(format!("the body is not {{\"server\": .., \"id\": .., \"version\": ..}} as JSON: {e}")))?;
    check_header_value("id", &report.id, MAX_UPSTREAM_ID_BYTES)?;
    if let Some(version) = &report.version {
        check_header_value("version", version, MAX_VERSION_BYTES)?;
    }
    let Some((served, ttl_seconds)) = served else { return Err(Refusal::UnknownServer(report.server)) };
    let state = served.sealer.open(token, now).map_err(|e| Refusal::UnknownSession(e.to_string()))?;
    if served.server(&report.server).is_none() {
        return Err(Refusal::UnknownServer(report.server));
    }
    Ok(ToRecord {
        session: session_digest(token),
        server: report.server,
        opened: Opened { id: report.id, version: report.version },
        expires_at: state.issued_at.saturating_add(ttl_seconds),
    })
}

/// An upstream session id or version is sent back to the upstream as a
/// header: visible ASCII, as MCP requires of session ids, and short.
fn check_header_value(field: &str, value: &str, max: usize) -> Result<(), Refusal> {
    if value.is_empty() {
        return Err(Refusal::BadRequest(format!("\"{field}\" is empty")));
    }
    if value.len() > max {
        return Err(Refusal::BadRequest(format!("\"{field}\" is {} bytes long, more than the {max} bytes the gateway keeps", value.len())));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Refusal::BadRequest(format!("\"{field}\" has characters other than visible ASCII")));
    }
    Ok(())
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// `POST /mcp-events/opened`: the filter opened an upstream session lazily.
pub async fn opened(State(s): State<StreamState>, headers: HeaderMap, body: Body) -> Response {
    let published = s.current.get();
    let served = published.as_ref().map(|p| (&*p.served, p.filter_config.session.ttl_seconds));
    answer(served, &s.opened, &headers, body, unix_now()).await
}

/// The route's work, apart from reading the state served and the clock.
pub async fn answer(served: Option<(&Served, u64)>, sessions: &OpenedSessions, headers: &HeaderMap, body: Body, now: u64) -> Response {
    let token = headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
    let decided = match read_bounded(body, MAX_BODY_BYTES).await {
        Ok(body) => judge(served, token, &body, now),
        Err(refusal) => Err(refusal),
    };
    let to_record = match decided {
        Ok(to_record) => to_record,
        Err(refusal) => {
            tracing::info!("refused a lazily opened upstream session: {}", refusal.message());
            return refusal.into_response();
        }
    };
    let server = to_record.server.clone();
    let recorded = sessions.record(to_record.session, &to_record.server, to_record.opened, to_record.expires_at, now);
    if recorded.evicted > 0 {
        tracing::warn!(
            %server,
            evicted = recorded.evicted,
            "lazily opened upstream sessions are at their bound ({MAX_PER_SESSION} per session, {MAX_ENTRIES} in all): \
             the oldest were forgotten, and GET streams opened later miss those upstreams' events"
        );
    }
    tracing::debug!(%server, change = ?recorded.change, "recorded a lazily opened upstream session");
    StatusCode::NO_CONTENT.into_response()
}

/// The body, read only up to `max` bytes.
async fn read_bounded(body: Body, max: usize) -> Result<Vec<u8>, Refusal> {
    let mut chunks = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| Refusal::BadRequest(format!("the body could not be read: {e}")))?;
        if out.len().saturating_add(chunk.len()) > max {
            return Err(Refusal::TooLarge { max });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::streams::tests::{sealer, server, token};
    use futures::FutureExt as _;

    fn opened(id: &str) -> Opened {
        Opened { id: id.into(), version: None }
    }

    fn servers(registry: &Registry, session: &SessionDigest, now: u64) -> Vec<String> {
        registry.of(session, now).into_keys().collect()
    }

    const A: SessionDigest = [1; 16];
    const B: SessionDigest = [2; 16];
    const C: SessionDigest = [3; 16];

    #[test]
    fn a_session_keeps_its_newest_upstream_sessions_up_to_its_bound() {
        let mut registry = Registry::new(Bounds { max_entries: 100, max_per_session: 2 });
        let new = Recorded { change: Change::New, evicted: 0 };
        assert_eq!(registry.record(A, "s1", opened("1"), 500, 10), new);
        assert_eq!(registry.record(A, "s2", opened("2"), 500, 10), new);
        assert_eq!(registry.record(B, "s1", opened("b1"), 500, 10), new);
        // A third server for A: A's oldest goes, B keeps its own.
        assert_eq!(registry.record(A, "s3", opened("3"), 500, 10), Recorded { change: Change::New, evicted: 1 });
        assert_eq!(servers(&registry, &A, 10), ["s2", "s3"]);
        assert_eq!(servers(&registry, &B, 10), ["s1"]);
        assert_eq!(registry.len(), 3);
        // A server opened again counts as the newest.
        assert_eq!(registry.record(A, "s2", opened("2b"), 500, 10), Recorded { change: Change::Replaced, evicted: 0 });
        assert_eq!(registry.record(A, "s4", opened("4"), 500, 10), Recorded { change: Change::New, evicted: 1 });
        assert_eq!(registry.of(&A, 10), BTreeMap::from([("s2".into(), opened("2b")), ("s4".into(), opened("4"))]));
    }

    #[test]
    fn a_full_registry_forgets_what_expires_first() {
        let mut registry = Registry::new(Bounds { max_entries: 3, max_per_session: 10 });
        registry.record(A, "s1", opened("a1"), 900, 10);
        registry.record(B, "s1", opened("b1"), 300, 10);
        registry.record(A, "s2", opened("a2"), 900, 10);
        // Full: B's session expires first, though recorded before A's second.
        assert_eq!(registry.record(C, "s1", opened("c1"), 600, 10), Recorded { change: Change::New, evicted: 1 });
        assert!(registry.of(&B, 10).is_empty());
        assert_eq!(servers(&registry, &A, 10), ["s1", "s2"]);
        // Then C's; among records expiring together, the oldest.
        registry.record(B, "s2", opened("b2"), 950, 10);
        assert!(registry.of(&C, 10).is_empty());
        registry.record(C, "s2", opened("c2"), 950, 10);
        assert_eq!(servers(&registry, &A, 10), ["s2"]);
        assert_eq!(registry.len(), 3);
    }

    #[test]
    fn records_go_when_their_session_expires() {
        let mut registry = Registry::new(Bounds::default());
        registry.record(A, "s1", opened("a1"), 100, 10);
        registry.record(B, "s1", opened("b1"), 200, 10);
        // Valid through its last second, as `Sealer::open` has it.
        assert_eq!(servers(&registry, &A, 100), ["s1"]);
        assert!(registry.of(&A, 101).is_empty());
        // Dropped from memory by the next record.
        assert_eq!(registry.len(), 2);
        registry.record(C, "s1", opened("c1"), 300, 150);
        assert_eq!(registry.len(), 2);
        // A session expired already is not recorded.
        assert_eq!(registry.record(A, "s2", opened("a2"), 140, 150), Recorded { change: Change::Expired, evicted: 0 });
        assert_eq!(registry.len(), 2);
        registry.record(C, "s2", opened("c2"), 300, 1000);
        assert!(registry.is_empty());
    }

    #[test]
    fn the_same_upstream_session_is_recorded_once() {
        let mut registry = Registry::new(Bounds::default());
        let with_version = Opened { id: "1".into(), version: Some("2025-06-18".into()) };
        assert_eq!(registry.record(A, "s", with_version.clone(), 100, 10).change, Change::New);
        assert_eq!(registry.record(A, "s", with_version.clone(), 100, 10).change, Change::Same);
        assert_eq!(registry.record(A, "s", opened("1"), 100, 10).change, Change::Replaced, "another version");
        assert_eq!(registry.record(A, "s", opened("2"), 100, 10).change, Change::Replaced);
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.of(&A, 10), BTreeMap::from([("s".into(), opened("2"))]));
    }

    #[test]
    fn streams_open_hear_of_new_records_of_their_session_only() {
        let sessions = OpenedSessions::default();
        sessions.record(A, "s1", opened("1"), 100, 10);
        let (recorded, mut first) = sessions.listen(A, 10);
        let (_, mut second) = sessions.listen(A, 10);
        let (_, mut other) = sessions.listen(B, 10);
        assert_eq!(recorded, BTreeMap::from([("s1".into(), opened("1"))]));
        assert_eq!(first.changed().now_or_never(), None);
        // The same record again says nothing; a new one tells A's streams.
        sessions.record(A, "s1", opened("1"), 100, 10);
        assert_eq!(first.changed().now_or_never(), None);
        sessions.record(A, "s2", opened("2"), 100, 10);
        assert_eq!(first.changed().now_or_never(), Some(true));
        assert_eq!(second.changed().now_or_never(), Some(true));
        assert_eq!(other.changed().now_or_never(), None);
        assert_eq!(first.recorded(10).len(), 2);
        assert_eq!(sessions.listening(), 3);
        drop((first, second, other));
        assert_eq!(sessions.listening(), 0);
        assert!(sessions.lock().listeners.is_empty());
        assert_ne!(session_digest("k.a"), session_digest("k.b"));
        assert_eq!(session_digest("k.a"), session_digest("k.a"));
    }

    fn served() -> Served {
        Served { sealer: sealer(), servers: vec![server("a"), server("b")] }
    }

    async fn post(served: Option<(&Served, u64)>, sessions: &OpenedSessions, token: Option<&str>, body: &str) -> (u16, String) {
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            headers.insert("mcp-session-id", token.parse().unwrap());
        }
        let response = answer(served, sessions, &headers, Body::from(body.to_string()), 110).await;
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_filter_records_a_lazily_opened_session() {
        let (served, sessions, token) = (served(), OpenedSessions::default(), token(&[("a", "sa")]));
        let ok = post(Some((&served, 60)), &sessions, Some(&token), r#"{"server": "b", "id": "sb", "version": "2025-06-18"}"#).await;
        assert_eq!(ok, (204, String::new()));
        let session = session_digest(&token);
        let recorded = BTreeMap::from([("b".into(), Opened { id: "sb".into(), version: Some("2025-06-18".into()) })]);
        // Kept while the session lives: issued at 100, for 60 s.
        assert_eq!(sessions.of(&session, 160), recorded);
        assert!(sessions.of(&session, 161).is_empty());
        // Again, and without a version.
        assert_eq!(post(Some((&served, 60)), &sessions, Some(&token), r#"{"server": "b", "id": "sb"}"#).await.0, 204);
        assert_eq!(post(Some((&served, 60)), &sessions, Some(&token), r#"{"server": "a", "id": "sa2", "version": null}"#).await.0, 204);
        assert_eq!(sessions.of(&session, 110).into_keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[tokio::test]
    async fn the_filter_is_refused_what_cannot_be_recorded() {
        let (served, sessions, token) = (served(), OpenedSessions::default(), token(&[]));
        let served = Some((&served, 60));
        let good = r#"{"server": "a", "id": "sa"}"#;
        let long_id = format!(r#"{{"server": "a", "id": "{}"}}"#, "x".repeat(257));
        let long_body = format!(r#"{{"server": "a", "id": "sa", "pad": "{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        let expired = sealer().seal(&mcp_filter::session::SessionState { issued_at: 10, ..mcp_filter::session::SessionState::default() });
        let cases: [(Option<&str>, &str, u16, &str); 10] = [
            (Some("k.forged"), good, 404, "the session id does not open (malformed session id)"),
            (Some(&expired), good, 404, "the session id does not open (session expired)"),
            (Some(&token), r#"{"server": "z", "id": "sz"}"#, 404, "server \"z\" is not in the catalog"),
            (None, good, 400, "no mcp-session-id header"),
            (Some(&token), "{\"server\": \"a\"", 400, "the body is not {\"server\": .., \"id\": .., \"version\": ..} as JSON"),
            (Some(&token), r#"{"server": "a"}"#, 400, "missing field `id`"),
            (Some(&token), &long_id, 400, "\"id\" is 257 bytes long, more than the 256 bytes"),
            (Some(&token), r#"{"server": "a", "id": "s a"}"#, 400, "\"id\" has characters other than visible ASCII"),
            (Some(&token), r#"{"server": "a", "id": "sa", "version": ""}"#, 400, "\"version\" is empty"),
            (Some(&token), &long_body, 413, "the body is longer than 4096 bytes"),
        ];
        for (token, body, status, message) in cases {
            let (got, answer) = post(served, &sessions, token, body).await;
            assert_eq!(got, status, "{body}: {answer}");
            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
            assert!(answer["error"]["message"].as_str().unwrap().contains(message), "{answer}");
        }
        // Before the first good reload, no server is served.
        assert_eq!(post(None, &sessions, Some(&token), good).await.0, 404);
        // An id of 256 bytes is kept.
        let longest = format!(r#"{{"server": "a", "id": "{}"}}"#, "x".repeat(256));
        assert_eq!(post(served, &sessions, Some(&token), &longest).await.0, 204);
        assert_eq!(sessions.of(&session_digest(&token), 110).len(), 1);
    }
}
