//! The configuration the filter's unit tests, its fuzz targets
//! (`filter/fuzz`) and its cost example (`examples/core_cost.rs`) start
//! from: the one place that writes a whole [`FilterConfig`] and a whole
//! [`UpstreamServer`], so that a new field is added here once. Each user
//! changes what it needs with struct-update syntax.
//!
//! Compiled for `cargo test` and with the `fixtures` feature only: never
//! part of the wasm module, and never used by the filter itself.

use serde_json::json;

use crate::config::{
    ApiKey, ControlPlane, FilterConfig, NamedRoute, ServedItem, ServerEra, ServerInfo, SessionConfig, SessionKey, UpstreamServer,
};

/// The id of the session key every fixture seals with.
pub const SESSION_KEY_ID: &str = "k";
/// Its secret.
pub const SESSION_SECRET: [u8; 32] = [0x11; 32];

/// A server of the handshake era that keeps sessions: cluster `mcp_<name>`,
/// authority `<name>.local:80`, path `/mcp`.
pub fn server(name: &str) -> UpstreamServer {
    UpstreamServer {
        name: name.into(),
        cluster: format!("mcp_{name}"),
        authority: format!("{name}.local:80"),
        path: "/mcp".into(),
        timeout_ms: None,
        stateful: true,
        protocol_version: None,
        logging: false,
        era: ServerEra::HandshakeOnly,
        headers: vec![],
        forward_authorization: false,
        credential_error: None,
        token_exchange: false,
    }
}

/// A server that keeps no sessions, at the version it agreed at discovery.
pub fn stateless_server(name: &str, version: &str) -> UpstreamServer {
    UpstreamServer { stateful: false, protocol_version: Some(version.into()), ..server(name) }
}

/// The control plane behind Envoy: its GET-stream endpoint and era bridge,
/// on cluster `gateway_admin`.
pub fn control_plane() -> ControlPlane {
    ControlPlane {
        cluster: "gateway_admin".into(),
        authority: "127.0.0.1:1".into(),
        events_path: "/mcp-events".into(),
        headers: vec![],
        streams_cluster: None,
    }
}

/// A tool or prompt `name` of server `server`, which knows it as `upstream`.
pub fn route(name: &str, server: usize, upstream: &str) -> NamedRoute {
    NamedRoute {
        name: name.into(),
        server,
        upstream_name: upstream.into(),
        definition: crate::config::Definition::new(&json!({ "name": name, "inputSchema": { "type": "object" } })),
    }
}

/// A resource `uri` (named `name`) of server `server`.
pub fn resource(server: usize, uri: &str, name: &str) -> ServedItem {
    ServedItem { server, definition: json!({ "uri": uri, "name": name }) }
}

/// The session key [`SESSION_KEY_ID`], sessions living `ttl_seconds`.
pub fn session(ttl_seconds: u64) -> SessionConfig {
    let secret_hex = hex(&SESSION_SECRET);
    SessionConfig {
        active_key: SESSION_KEY_ID.into(),
        keys: vec![SessionKey { id: SESSION_KEY_ID.into(), secret_hex }],
        ttl_seconds,
        max_id_bytes: 4096,
    }
}

/// The API key `key` (the configuration holds its digest) of `principal`.
pub fn api_key(key: &str, principal: &str, groups: &[&str]) -> ApiKey {
    use sha2::Digest as _;
    ApiKey {
        sha256: hex(&sha2::Sha256::digest(key.as_bytes())),
        principal: principal.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// A gateway of three servers: `a` (which offers logging) and `b` keep
/// sessions, `s` keeps none (2025-03-26). Tools `a__echo`, `b__echo`,
/// `plain`, `s__ping`; prompt `a__greet`; three resources and a template.
/// No authentication, rules or limits; one page per list; bodies up to 200
/// bytes; sessions of 60 s; the handshake era only, no control plane.
pub fn config() -> FilterConfig {
    FilterConfig {
        version: "1".into(),
        mcp_path: "/mcp".into(),
        max_body_bytes: 200,
        max_upstream_event_bytes: 4096,
        server_info: ServerInfo { name: "gw".into(), version: "0.1".into() },
        instructions: None,
        servers: vec![UpstreamServer { logging: true, ..server("a") }, server("b"), stateless_server("s", "2025-03-26")],
        tools: vec![route("a__echo", 0, "echo"), route("b__echo", 1, "echo"), route("plain", 1, "plain"), route("s__ping", 2, "ping")],
        prompts: vec![route("a__greet", 0, "greet")],
        resources: vec![
            resource(0, "demo://resource/static/1", "one"),
            resource(1, "file:///etc/motd", "motd"),
            resource(0, "file:///srv/a", "a"),
        ],
        resource_templates: vec![ServedItem { server: 1, definition: json!({"uriTemplate": "notes://{id}/text", "name": "note"}) }],
        capabilities: json!({"tools": {}, "prompts": {}, "resources": {"subscribe": true}}),
        session: session(60),
        stateless_era: false,
        control_plane: None,
        list_page_size: None,
        auth: None,
        authorization: None,
        rate_limits: vec![],
        allowed_origins: vec![],
        loopback_only: false,
        audit: false,
        trace: false,
        access_log: true,
        upstream_timeout_ms: 1000,
        router: None,
        held_tools: Vec::new(),
        endpoints: Vec::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
