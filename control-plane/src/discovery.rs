//! Tool discovery: the control plane connects to each upstream as an MCP
//! client (rmcp, the official Rust SDK), lists its tools and closes the
//! session. The result feeds `compile`, so that `tools/list` is answered
//! inside Envoy with no upstream call on the request path.

use std::time::Duration;

use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::Value;

/// The handshake-era revision discovery asks for. rmcp 3.9 defaults to
/// 2026-07-28, which servers of the handshake era do not speak.
const DISCOVERY_VERSION: &str = "2025-11-25";

fn client_config() -> ClientConfig {
    // rmcp builds a ProtocolVersion from a string only through serde.
    let version: ProtocolVersion =
        serde_json::from_value(Value::String(DISCOVERY_VERSION.into())).unwrap_or(ProtocolVersion::V_2025_06_18);
    ClientConfig::new(ClientCapabilities::default(), Implementation::new("mcp-gateway-discovery", env!("CARGO_PKG_VERSION")))
        .with_protocol_version(version)
}

/// Lists every tool of the server at `url` (all pages), as MCP `Tool`
/// objects. Errors are sentences fit for `/servers` and the log.
pub async fn list_tools(url: &str, timeout: Duration) -> Result<Vec<Value>, String> {
    let session = async {
        let transport = StreamableHttpClientTransport::from_uri(url.to_string());
        let client = client_config().serve(transport).await.map_err(|e| format!("initialize failed: {e}"))?;
        let tools = client.list_all_tools().await.map_err(|e| format!("tools/list failed: {e}"));
        // Ends the upstream session (DELETE) whatever the listing gave.
        let _ = client.cancel().await;
        tools
    };
    let tools = tokio::time::timeout(timeout, session)
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs()))??;
    tools
        .into_iter()
        .map(|t| serde_json::to_value(t).map_err(|e| format!("tool could not be encoded: {e}")))
        .collect()
}
