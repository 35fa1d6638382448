//! The two eras of the protocol: the handshake era (`initialize`, then a
//! session; revisions up to 2025-11-25) and the stateless revision
//! 2026-07-28 (no handshake, no session, the client's `_meta` in every
//! request). Owns which revisions the gateway speaks, which era a request
//! is of, which way a stateless request reaches its server (as it is, or
//! through the control plane's era bridge), and the translation of a
//! handshake-era request for a server of 2026-07-28 only.
//!
//! It never routes by name and never opens a session: it is handed a
//! request already routed, and the session it runs in. It depends on no
//! other part of the gateway.

use crate::config::{FilterConfig, ServerEra, UpstreamServer};
use crate::decision::{Forward, RequestHead};
use crate::error::McpError;
use crate::headers::encode_header_value;

/// Protocol revisions of the handshake era this gateway speaks, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// What the gateway answers when a client asks for a version it does not know.
pub const LATEST_VERSION: &str = "2025-11-25";
/// The stateless revision: no `initialize`, no session; served when the
/// configuration says every upstream is reachable in it.
pub const STATELESS_VERSION: &str = "2026-07-28";

/// Whether the request is of the stateless revision (which the gateway
/// speaks only when the configuration says so).
pub fn is_stateless(config: &FilterConfig, head: &RequestHead) -> bool {
    config.stateless_era && head.protocol_version.as_deref() == Some(STATELESS_VERSION)
}

/// Whether a request of a session at `session_version` goes to `server`
/// through the era bridge: a 2026-07-28 request for a server that does not
/// speak that revision. A server that does takes it as it is, whether or
/// not it also keeps sessions for handshake-era clients. Refused when the
/// bridge is needed and there is none.
pub fn bridged(config: &FilterConfig, session_version: &str, server: &UpstreamServer) -> Result<bool, McpError> {
    if session_version != STATELESS_VERSION || server.era.speaks_2026() {
        return Ok(false);
    }
    if config.control_plane.is_none() {
        return Err(McpError::UpstreamUnavailable {
            server: server.name.clone(),
            reason: "it needs a session or an older protocol revision, and no era bridge is configured".into(),
        });
    }
    Ok(true)
}

/// A handshake-era request forwarded to a server that speaks only
/// 2026-07-28, as that revision wants it: its `_meta` (version, client info
/// and capabilities) in the params, and `Mcp-Method`/`Mcp-Name`, no
/// session. `client_info` is the gateway's own `{name, version}`. Anything
/// else goes as it is.
pub fn translated(
    config: &FilterConfig,
    head: &RequestHead,
    mut f: Forward,
    original: &[u8],
    client_info: &serde_json::Value,
) -> Result<Forward, McpError> {
    if f.bridge || is_stateless(config, head) || !config.servers.get(f.server).is_some_and(|s| s.era == ServerEra::ModernOnly) {
        return Ok(f);
    }
    let source = f.body.as_deref().unwrap_or(original);
    let mut message: serde_json::Value =
        serde_json::from_slice(source).map_err(|e| McpError::Internal(format!("re-reading a request to translate it: {e}")))?;
    let Some(method) = message.get("method").and_then(serde_json::Value::as_str).map(str::to_string) else {
        return Ok(f);
    };
    let name = ["/params/name", "/params/uri"].iter().find_map(|p| message.pointer(p)?.as_str().map(str::to_string));
    if let Some(obj) = message.as_object_mut() {
        let params = obj.entry("params").or_insert_with(|| serde_json::json!({}));
        if let Some(params) = params.as_object_mut() {
            let meta = params.entry("_meta").or_insert_with(|| serde_json::json!({}));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert("io.modelcontextprotocol/protocolVersion".into(), STATELESS_VERSION.into());
                meta.insert("io.modelcontextprotocol/clientInfo".into(), client_info.clone());
                meta.entry("io.modelcontextprotocol/clientCapabilities").or_insert_with(|| serde_json::json!({}));
            }
        }
    }
    f.body = Some(serde_json::to_vec(&message).map_err(|e| McpError::Internal(e.to_string()))?);
    f.upstream_session = None;
    f.upstream_version = Some(STATELESS_VERSION.to_string());
    f.mcp_name = name.as_deref().map(encode_header_value);
    f.mcp_method = Some(method);
    Ok(f)
}
