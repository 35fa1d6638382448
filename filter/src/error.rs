//! Every way the gateway refuses a request, and the one mapping from a refusal
//! to a JSON-RPC error code and an HTTP status. No other module picks codes.

use thiserror::Error;

/// A request the gateway answers itself with an error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum McpError {
    #[error("Parse error: {0}")]
    Parse(String),
    #[error("Invalid request: {0}")]
    InvalidRequest(String),
    #[error("Method not found: {0}")]
    MethodNotFound(String),
    #[error("Invalid params: {0}")]
    InvalidParams(String),
    #[error("Unknown tool: {0}")]
    UnknownTool(String),
    #[error(
        "Tool {name} is held by the gateway: server '{server}' changed it ({change}), and it cannot be called until a \
         gateway administrator approves the change (POST /servers/{server}/tools/{upstream_name}/approve)"
    )]
    ToolHeld { name: String, server: String, upstream_name: String, change: String },
    #[error("Unknown prompt: {0}")]
    UnknownPrompt(String),
    #[error("Resource not found: no server behind this gateway serves {0}")]
    UnknownResource(String),
    #[error("Request body too large: {size} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("Unsupported Content-Type {0:?}: send application/json")]
    UnsupportedMediaType(String),
    #[error("Not acceptable: the Accept header must allow application/json and text/event-stream (got {0:?})")]
    NotAcceptable(String),
    #[error("HTTP method {0} is not allowed on the MCP endpoint: use POST")]
    MethodNotAllowed(String),
    #[error("HTTP method {method} is not allowed on {path}: use {allow}")]
    NotAllowedOn { method: String, path: String, allow: &'static str },
    #[error("Header mismatch: {0}")]
    HeaderMismatch(String),
    #[error("Bad request: missing Mcp-Session-Id header; send initialize first")]
    MissingSession,
    #[error("Session not found: {0}; start a new session with initialize")]
    SessionNotFound(String),
    #[error("Upstream server '{server}' is unavailable in this session: {reason}")]
    UpstreamUnavailable { server: String, reason: String },
    #[error(
        "Upstream server '{server}' sent an SSE event longer than the gateway's limit of {limit} bytes \
         (gateway.max_upstream_event_bytes); the rest of its answer was dropped"
    )]
    UpstreamEventTooLarge { server: String, limit: usize },
    #[error(
        "Upstream server '{server}' refused the gateway's credentials (HTTP {status}); the gateway's operator must fix \
         servers[].headers or servers[].oauth for it in the catalog. Your own credentials were accepted"
    )]
    UpstreamRefusedCredentials { server: String, status: u16 },
    #[error(
        "Upstream server '{server}' cannot be called: the gateway has no valid OAuth token for it ({reason}); the gateway's \
         operator must fix servers[].oauth for it in the catalog (GET /servers shows the token's state). Your own \
         credentials were accepted"
    )]
    UpstreamCredential { server: String, reason: String },
    #[error(
        "Upstream server '{server}' takes each caller's own identity, and the gateway could not get a token of yours for it: {reason}"
    )]
    CallerToken { server: String, reason: String },
    #[error("Unauthorized: {0}")]
    Unauthorized(String),
    #[error("Forbidden: {0}")]
    Forbidden(String),
    #[error("Misdirected request: Host {0:?} is not this machine's, and the gateway listens on loopback only (DNS rebinding defence); call it as localhost or 127.0.0.1")]
    MisdirectedHost(String),
    #[error("Insufficient scope: this endpoint needs a token with scope {0:?}")]
    InsufficientScope(String),
    #[error(
        "Rate limit exceeded: limit {limit:?} allows {per_minute} requests per minute (burst {burst}); retry after {retry_after_secs} s"
    )]
    RateLimited { limit: String, per_minute: u32, burst: u32, retry_after_secs: u64 },
    #[error("Internal error: {0}")]
    Internal(String),
}

impl McpError {
    /// The JSON-RPC error code and the HTTP status of this refusal.
    ///
    /// Errors about a well-formed request travel with HTTP 200, as any other
    /// JSON-RPC response; errors about the HTTP exchange itself use the HTTP
    /// status the Streamable HTTP transport prescribes.
    pub fn code_and_status(&self) -> (i32, u16) {
        match self {
            McpError::Parse(_) => (-32700, 400),
            McpError::InvalidRequest(_) => (-32600, 400),
            McpError::MethodNotFound(_) => (-32601, 200),
            McpError::InvalidParams(_) | McpError::UnknownTool(_) | McpError::UnknownPrompt(_) | McpError::ToolHeld { .. } => (-32602, 200),
            McpError::UnknownResource(_) => (-32002, 200),
            McpError::BodyTooLarge { .. } => (-32600, 413),
            McpError::UnsupportedMediaType(_) => (-32600, 415),
            McpError::NotAcceptable(_) => (-32600, 406),
            McpError::MethodNotAllowed(_) | McpError::NotAllowedOn { .. } => (-32600, 405),
            McpError::HeaderMismatch(_) => (-32020, 400),
            McpError::MissingSession => (-32600, 400),
            McpError::SessionNotFound(_) => (-32001, 404),
            // Failures of an upstream, not of the client's request: the
            // client's credentials were fine, so never a 401 or 403 that
            // would send its OAuth flow elsewhere.
            McpError::UpstreamUnavailable { .. }
            | McpError::UpstreamEventTooLarge { .. }
            | McpError::UpstreamRefusedCredentials { .. }
            | McpError::UpstreamCredential { .. }
            | McpError::CallerToken { .. } => (-32603, 200),
            McpError::Unauthorized(_) => (-32001, 401),
            McpError::Forbidden(_) | McpError::InsufficientScope(_) => (-32003, 403),
            McpError::MisdirectedHost(_) => (-32600, 421),
            McpError::RateLimited { .. } => (-32029, 429),
            McpError::Internal(_) => (-32603, 500),
        }
    }
}
