//! The vocabulary the filter's core and its glue share: what the glue hands
//! over ([`RequestHead`], [`Now`], [`CalloutResponse`]) and what the core
//! decides ([`HeadAction`], [`BodyAction`], [`Reply`], [`Forward`],
//! [`Callout`], [`Audit`]).
//!
//! Plain data and the constructors of local answers. This module decides
//! nothing and depends on no other part of the core but the error type and
//! the JSON-RPC bytes: the gateway, the metrics and the relay all import it,
//! and it imports none of them.

use crate::config::UpstreamServer;
use crate::error::McpError;
use crate::jsonrpc;
use crate::policy::{Caller, Ruling};
use crate::session::SessionError;

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
    /// Who the caller is: set by [`Gateway::on_headers`] once authenticated.
    pub caller: Option<Caller>,
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
    /// Wait for the whole body, then call [`Gateway::on_body`].
    ReadBody,
    /// A DELETE of the session: call [`Gateway::end_session`].
    EndSession,
    /// A GET stream: call [`Gateway::open_stream`].
    OpenStream,
    /// `GET /metrics` or `GET /stats`: make these calls (Envoy's stats,
    /// then the control plane's), then answer with [`scrape_reply`].
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
#[derive(Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
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
}

/// A client's `initialize`: open a session with every upstream, then answer.
#[derive(Debug, PartialEq)]
pub struct InitPlan {
    /// The client's request id, raw JSON.
    pub id: String,
    /// The version negotiated with the client.
    pub version: String,
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
        if matches!(e, McpError::MethodNotAllowed(_)) {
            reply.headers.push(("allow", "POST".to_string()));
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
}
