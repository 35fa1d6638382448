//! The vocabulary the filter's core and its glue share: what the glue hands
//! over ([`RequestHead`], [`Now`], [`CalloutResponse`]) and what the core
//! decides ([`HeadAction`], [`BodyAction`], [`Reply`], [`Refusal`],
//! [`Forward`], [`HeaderEdits`], [`Callout`], [`Audit`]).
//!
//! Plain data and the constructors of local answers. This module decides
//! nothing and depends on no other part of the core but the error type and
//! the JSON-RPC bytes: the gateway, the metrics and the relay all import it,
//! and it imports none of them.

use std::borrow::Cow;

use crate::config::{UpstreamServer, CLUSTER_HEADER};
use crate::error::McpError;
use crate::jsonrpc;
use crate::policy::{Caller, Ruling};
use crate::session::{SessionError, UpstreamSession};

/// The request's headers, as the glue read them.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub session_id: Option<String>,
    pub protocol_version: Option<String>,
    /// `Mcp-Method` and `Mcp-Name`: what the request says it is, for
    /// intermediaries that route on headers. They must agree with the body.
    pub mcp_method: Option<String>,
    pub mcp_name: Option<String>,
    /// The API key or token the client presented (`Authorization: Bearer`,
    /// else `X-API-Key`).
    pub credential: Option<String>,
    /// The JWT payload Envoy's `jwt_authn` verified (base64url JSON), and
    /// why it refused a token, if it did.
    pub jwt_payload: Option<String>,
    pub jwt_failure: Option<String>,
    /// The browser origin the request came from.
    pub origin: Option<String>,
    /// The host the request names (`:authority`, the `Host` header).
    pub host: Option<String>,
    /// Whether its session was ended by a DELETE (`revocation.rs`): the
    /// glue looks it up in Envoy's shared data.
    pub session_ended: bool,
    /// Who the client certificate Envoy verified names (its first URI SAN,
    /// else DNS SAN, else subject), on a TLS connection with one.
    pub peer_certificate: Option<String>,
    /// Who the caller is: set by `Gateway::on_headers` once authenticated.
    pub caller: Option<Caller>,
    /// The client's address (without its port), as Envoy saw the
    /// connection: what a request refused for its credentials is limited by.
    pub source: Option<String>,
}

/// What the audit log records of a request's authorization, and what rate
/// limits key on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Audit {
    /// The JSON-RPC method.
    pub method: String,
    /// The request id, raw JSON.
    pub id: Option<String>,
    pub server: Option<String>,
    /// The tool or prompt name, or the resource URI.
    pub target: Option<String>,
    /// The authorization decision, when one was taken.
    pub ruling: Option<Ruling>,
    /// The `traceparent` the client put in `params._meta`, when tracing.
    pub traceparent: Option<String>,
}

/// A decision on a complete body, and what it decided about whom.
#[derive(Debug)]
pub struct Decision {
    pub action: BodyAction,
    pub audit: Audit,
}

/// The time and a little entropy, from the host.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub unix_secs: u64,
    pub entropy: u64,
}

/// What to do once the request headers are known.
#[derive(Debug, PartialEq)]
pub enum HeadAction {
    /// Not an MCP request: let Envoy route it as it is.
    PassThrough,
    /// Answer now.
    Reply(Reply),
    /// Answer now: the caller is not who may call (no or bad credentials,
    /// a missing scope, a foreign origin). The audit log and the metrics
    /// record why.
    Refuse(Refusal),
    /// Wait for the whole body, then call `Gateway::on_body`.
    ReadBody,
    /// A DELETE of the session: call `Gateway::end_session`.
    EndSession,
    /// A GET stream: call `Gateway::open_stream`.
    OpenStream,
    /// An operator's action (`POST /admin/reload`, `/servers/<name>/start`,
    /// ...), admitted: send it to the control plane as
    /// `Gateway::admin_edits` says.
    Admin,
    /// `GET /metrics` or `GET /stats`: make these calls (Envoy's stats,
    /// then the control plane's), then answer with `gateway::scrape_reply`
    /// (or from the worker's `ScrapeCache`). A probe's page makes only the
    /// control plane's call.
    Scrape(Page, Vec<Callout>),
}

/// The operator's pages the filter assembles from Envoy's stats and the
/// control plane's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `/metrics`: Prometheus text.
    Metrics,
    /// `/stats`: the seeds' JSON summary per server.
    Stats,
    /// `/health` for a caller without an admin credential: up or down.
    Liveness,
    /// `/ready` for a caller without an admin credential: up or down.
    Readiness,
}

/// What to do once the body is known.
#[derive(Debug, PartialEq)]
pub enum BodyAction {
    Reply(Reply),
    Forward(Forward),
    Initialize(InitPlan),
    /// Send the callouts, wait for them, then send the reply.
    FanOut(Reply, Vec<Callout>),
}

/// A complete local answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// A request refused for who sent it or how often: the answer, and what
/// the audit log and the metrics record of it.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub reply: Reply,
    /// The audit log's reason (the error's message).
    pub reason: String,
    pub cause: Cause,
}

/// Why a [`Refusal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// No credential, or one that names nobody.
    Unauthenticated(AuthFailure),
    /// A caller without the scope asked, or a browser origin not allowed.
    Forbidden,
    /// Over a rate limit: its name in the catalog.
    RateLimited(String),
}

/// Why a caller is not authenticated, as the metrics' `reason` label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// It presented no credential.
    Missing,
    /// Its credential names nobody.
    Invalid,
}

impl AuthFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
        }
    }
}

/// What a request carries on its way on, planned by the core and applied
/// by the glue before the request continues, in this order: the filter
/// state, then the drops, then the writes ([`HeaderEdits::writes`]: the
/// target's headers, then `set`). A header both dropped and set ends up
/// set. Every value is valid for a header by construction: from the
/// configuration (the catalog validated it), MCP-encoded, or checked by the
/// core.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderEdits<'a> {
    /// Filter state (Envoy prefixes `wasm.`), for Envoy's local-reply
    /// mapper and the logs.
    pub properties: Vec<(&'static str, Cow<'a, str>)>,
    /// Request headers removed, when the client sent them.
    pub drop: Vec<Cow<'a, str>>,
    /// Where the request goes: the one way [`CLUSTER_HEADER`] is written.
    pub target: Option<Target<'a>>,
    /// Request headers written, after the drops.
    pub set: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

/// An Envoy cluster and what the request says to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub cluster: &'a str,
    pub path: Cow<'a, str>,
    pub authority: &'a str,
}

impl HeaderEdits<'_> {
    /// Every header written, in order: the target's ([`CLUSTER_HEADER`],
    /// `:path`, `:authority`), then `set`.
    pub fn writes(&self) -> impl Iterator<Item = (&str, &str)> {
        let target =
            self.target.iter().flat_map(|t| [(CLUSTER_HEADER, t.cluster), (":path", t.path.as_ref()), (":authority", t.authority)]);
        target.chain(self.set.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
    }

    /// The writes that change something in a request whose headers are
    /// `head`: a target's `:path` or `:authority` equal to the client's is
    /// not written again (each write is a host call).
    pub fn changes<'s>(&'s self, head: &'s RequestHead) -> impl Iterator<Item = (&'s str, &'s str)> {
        self.writes().filter(move |(name, value)| match *name {
            ":path" => head.path != *value,
            ":authority" => head.host.as_deref() != Some(*value),
            _ => true,
        })
    }

    /// The value `name` ends up with, if the edits write it.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.writes().filter(|(k, _)| *k == name).last().map(|(_, v)| v)
    }

    /// Whether a client-sent `name` is removed (and not written again).
    pub fn drops(&self, name: &str) -> bool {
        self.drop.iter().any(|d| d == name) && self.value(name).is_none()
    }
}

/// Send the request to one upstream.
#[derive(Debug, PartialEq)]
pub struct Forward {
    /// The client's request id (raw JSON), for an error Envoy may have to
    /// write if the upstream cannot be reached.
    pub request_id: String,
    /// Index into the configuration's servers.
    pub server: usize,
    /// The upstream's own session id, sent as `Mcp-Session-Id`.
    pub upstream_session: Option<String>,
    /// The protocol version agreed with the upstream, sent as `MCP-Protocol-Version`.
    pub upstream_version: Option<String>,
    /// The body to send instead of the client's, when it had to change.
    pub body: Option<Vec<u8>>,
    /// The `Mcp-Name` to send instead of the client's (the upstream's own name).
    pub mcp_name: Option<String>,
    /// Send it to the control plane's era bridge for this server, not to the
    /// server itself: a 2026-07-28 request for a server that needs a session
    /// or an older revision.
    pub bridge: bool,
    /// The `Mcp-Method` to send: set when a handshake-era request is
    /// translated for a server of the 2026-07-28 revision only.
    pub mcp_method: Option<String>,
    /// The server keeps sessions and the client's session holds none with
    /// it yet (neither sealed in its id nor opened by this Envoy): the glue
    /// opens one first (`Gateway::open_upstream`), then sends the request in it.
    pub open_first: bool,
    /// `Authorization` for the upstream: the caller's exchanged token, for a
    /// server that takes each caller's own identity
    /// (`Gateway::upstream_token`). A secret: never logged.
    pub upstream_authorization: Option<String>,
}

/// A forward's upstream token ([`crate::gateway::Gateway::upstream_token`]).
#[derive(Debug, PartialEq)]
pub enum TokenStep {
    /// Send it (with the token, if its server takes one).
    Ready(Forward),
    /// Make the callout (the control plane's token exchange) first, then
    /// give its answer to `Gateway::upstream_token_exchanged`.
    Exchange(Forward, Callout),
}

/// The upstream sessions this Envoy opened on first use (`opened.rs`), as
/// the glue reads them from shared data: the one read the core may ask for
/// while deciding.
pub trait OpenedSessions {
    /// The upstream session client session `token` holds with `server`.
    fn find(&self, token: &str, server: &str) -> Option<UpstreamSession>;
}

/// No upstream session opened on first use: what the core sees where no
/// Envoy holds any (and in tests).
pub struct NoneOpened;

impl OpenedSessions for NoneOpened {
    fn find(&self, _token: &str, _server: &str) -> Option<UpstreamSession> {
        None
    }
}

/// An upstream session opened outside the client's id, for the glue to
/// record in shared data (`slot`, until `expires`).
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub slot: crate::opened::Slot,
    pub session: UpstreamSession,
    pub expires: u64,
}

/// A client's `initialize`: open a session with every upstream, then answer.
#[derive(Debug, PartialEq)]
pub struct InitPlan {
    /// The client's request id, raw JSON.
    pub id: String,
    /// The version negotiated with the client.
    pub version: String,
    /// The digest of the caller the session will be sealed to.
    pub principal: Option<String>,
    /// The client's capabilities, as the session seals them.
    pub capabilities: Option<String>,
    pub callouts: Vec<Callout>,
}

/// A request the filter itself sends to an upstream.
#[derive(Debug, PartialEq)]
pub struct Callout {
    pub server: usize,
    pub cluster: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Callout {
    /// A POST of `body` to `server` (index `index`), in the upstream
    /// session `session` at `version` when it has one. The server's own
    /// credentials are added by the glue from the configuration.
    pub fn to(index: usize, server: &UpstreamServer, session: Option<&str>, version: Option<&str>, body: Vec<u8>) -> Callout {
        let mut headers = vec![
            (":method", "POST".to_string()),
            (":path", server.path.clone()),
            (":authority", server.authority.clone()),
            ("content-type", "application/json".to_string()),
            ("accept", "application/json, text/event-stream".to_string()),
        ];
        if let Some(s) = session {
            headers.push(("mcp-session-id", s.to_string()));
        }
        if let Some(v) = version {
            headers.push(("mcp-protocol-version", v.to_string()));
        }
        Callout { server: index, cluster: server.cluster.clone(), headers, body }
    }
}

/// What came back from a [`Callout`]; `None` in its place means no answer.
#[derive(Debug, Clone, Default)]
pub struct CalloutResponse {
    pub status: u16,
    pub session_id: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// The answer was larger than the filter takes from its callouts
    /// ([`crate::gateway::Gateway::callout_limit`]): its body was not read
    /// and is empty.
    pub oversized: bool,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: Vec<u8>) -> Reply {
        Reply { status, headers: vec![("content-type", "application/json".to_string())], body }
    }

    /// `202 Accepted`, no body: the answer to a notification.
    pub fn accepted() -> Reply {
        Reply { status: 202, headers: Vec::new(), body: Vec::new() }
    }

    /// The one place a refusal becomes an HTTP answer.
    pub fn error(id: Option<&str>, e: &McpError) -> Reply {
        let (code, status) = e.code_and_status();
        let mut reply = Reply::json(status, jsonrpc::error_body(id, code, &e.to_string()));
        match e {
            McpError::MethodNotAllowed(_) => reply.headers.push(("allow", "POST".to_string())),
            McpError::NotAllowedOn { allow, .. } => reply.headers.push(("allow", allow.to_string())),
            _ => {}
        }
        reply
    }
}

/// Why the core cannot use a configuration (the glue refuses it, and Envoy
/// keeps the previous one).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("tool {tool:?} names server index {server}, but there are {count} servers")]
    NoSuchServer { tool: String, server: usize, count: usize },
    #[error("tool name {0:?} is listed twice")]
    DuplicateTool(String),
    #[error("session keys: {0}")]
    Session(#[from] SessionError),
    #[error("api key {0}: sha256 must be 64 hex characters")]
    BadKeyHash(usize),
    #[error("rate limit {0:?}: requests_per_minute and burst must be greater than 0")]
    BadLimit(String),
    #[error("endpoints: {0}")]
    Endpoint(String),
}
