//! What the fuzz targets share: how an input is cut into fields, and the
//! fixed configuration the gateway targets decide under (built on the
//! filter's own fixtures, `mcp_filter::fixtures`).
//!
//! An input is a few selector bytes, then NUL-terminated strings, then the
//! rest (a body or a stream). Plain bytes rather than `arbitrary` so that a
//! seed is a valid MCP request with a short prefix, easy to write by hand
//! (see corpus/*/seed-*) and easy for libFuzzer to splice.

use mcp_filter::config::{
    AuthConfig, AuthorizationConfig, FilterConfig, JwtClaims, LimitKey, PolicyRule, ProtectedResource, RateLimit, ServedItem, ServerEra,
    SessionKey, Targets, UpstreamServer,
};
use mcp_filter::fixtures::{self, api_key, resource, route};
pub use mcp_filter::fixtures::{SESSION_KEY_ID, SESSION_SECRET};
use serde_json::json;

/// An input, read field by field; a short input reads as zeros and empty strings.
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Fields { rest: data }
    }

    pub fn byte(&mut self) -> u8 {
        let (first, rest) = self.rest.split_first().unwrap_or((&0, &[]));
        self.rest = rest;
        *first
    }

    /// Up to the next NUL (not included), as text: invalid UTF-8 is
    /// replaced, as the host hands the filter only strings.
    pub fn string(&mut self) -> String {
        let end = self.rest.iter().position(|b| *b == 0).unwrap_or(self.rest.len());
        let (s, rest) = self.rest.split_at(end);
        self.rest = rest.get(1..).unwrap_or_default();
        String::from_utf8_lossy(s).into_owned()
    }

    pub fn rest(self) -> &'a [u8] {
        self.rest
    }
}

/// One of `choices` by `selector`, or `raw` when the selector is past them:
/// fixtures the fuzzer could never guess, beside free-form text.
pub fn pick(selector: u8, choices: &[Option<&str>], raw: &str) -> Option<String> {
    match choices.get(usize::from(selector)) {
        Some(choice) => choice.map(str::to_string),
        None => Some(raw.to_string()),
    }
}

/// The API keys the fixture knows, in clear.
pub const API_KEYS: [&str; 2] = ["k-alice-0123456789", "k-bob-0123456789"];

fn server(name: &str, stateful: bool, era: ServerEra) -> UpstreamServer {
    UpstreamServer {
        stateful,
        protocol_version: (!stateful).then(|| "2025-03-26".to_string()),
        logging: name == "a",
        era,
        ..fixtures::server(name)
    }
}

fn globs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Rules of every shape: by principal and group, allow and deny, on each kind.
pub fn authorization() -> AuthorizationConfig {
    AuthorizationConfig {
        default_allow: false,
        rules: vec![
            PolicyRule {
                name: "devs".into(),
                principals: vec![],
                groups: globs(&["dev*"]),
                allow: Targets {
                    servers: globs(&["a"]),
                    tools: globs(&["plain", "s__*"]),
                    resources: globs(&["file:///etc/*"]),
                    ..Default::default()
                },
                deny: Targets { prompts: globs(&["*greet"]), ..Default::default() },
            },
            PolicyRule {
                name: "alice".into(),
                principals: globs(&["alice", "carol"]),
                groups: vec![],
                allow: Targets { servers: globs(&["*"]), ..Default::default() },
                deny: Targets { tools: globs(&["*__delete_?"]), resources: globs(&["notes://*/secret"]), ..Default::default() },
            },
            PolicyRule {
                name: "everyone".into(),
                principals: vec![],
                groups: vec![],
                allow: Targets { tools: globs(&["b__echo"]), prompts: globs(&["b__*"]), ..Default::default() },
                deny: Targets::default(),
            },
        ],
    }
}

/// Limits keyed on each part, some narrowed to servers or tools.
pub fn rate_limits() -> Vec<RateLimit> {
    let limit = |name: &str, per: Vec<LimitKey>| RateLimit {
        name: name.into(),
        per,
        principals: vec![],
        groups: vec![],
        servers: vec![],
        tools: vec![],
        endpoints: vec![],
        requests_per_minute: 60,
        burst: 5,
        global: false,
    };
    vec![
        limit("global", vec![]),
        RateLimit { global: true, ..limit("per-caller", vec![LimitKey::Principal]) },
        RateLimit {
            servers: globs(&["a", "b"]),
            tools: globs(&["*echo"]),
            endpoints: vec![],
            ..limit("echo", vec![LimitKey::Principal, LimitKey::Server, LimitKey::Tool])
        },
        RateLimit { groups: globs(&["ops"]), requests_per_minute: 1, burst: 1, ..limit("ops", vec![LimitKey::Tool]) },
    ]
}

/// The handshake-era gateway, with everything switched on: API keys, JWTs
/// and client certificates, authorization rules, local and global rate
/// limits, origins, pages of two.
pub fn stateful_config() -> FilterConfig {
    FilterConfig {
        version: "fuzz".into(),
        max_body_bytes: 4096,
        max_upstream_event_bytes: 4096,
        instructions: Some("fuzzing".into()),
        servers: vec![
            server("a", true, ServerEra::HandshakeOnly),
            server("b", true, ServerEra::HandshakeOnly),
            server("s", false, ServerEra::HandshakeOnly),
            server("m", true, ServerEra::ModernOnly),
        ],
        tools: vec![
            route("a__echo", 0, "echo"),
            route("b__echo", 1, "echo"),
            route("plain", 1, "plain"),
            route("s__ping", 2, "ping"),
            route("m__delete_x", 3, "delete_x"),
        ],
        prompts: vec![route("a__greet", 0, "greet"), route("b__ask", 1, "ask")],
        resources: vec![
            resource(0, "demo://resource/static/1", "one"),
            resource(1, "file:///etc/motd", "motd"),
            resource(3, "file:///srv/m", "m"),
        ],
        resource_templates: vec![ServedItem { server: 1, definition: json!({"uriTemplate": "notes://{id}/text", "name": "note"}) }],
        capabilities: json!({"tools": {}, "prompts": {}, "resources": {"subscribe": true}, "logging": {}}),
        session: {
            let mut s = fixtures::session(3600);
            s.keys.push(SessionKey { id: "old".into(), secret_hex: "22".repeat(32) });
            s
        },
        list_page_size: Some(2),
        auth: Some(AuthConfig {
            api_keys: vec![api_key(API_KEYS[0], "alice", &["dev", "ops"]), api_key(API_KEYS[1], "bob", &[])],
            jwt: Some(JwtClaims { principal_claim: "sub".into(), groups_claim: "roles".into(), required_scopes: globs(&["mcp"]) }),
            protected_resource: Some(ProtectedResource {
                resource: "https://gw.example/mcp".into(),
                authorization_servers: globs(&["https://idp.example"]),
                scopes_supported: globs(&["mcp"]),
            }),
            client_certificates: true,
            admin_groups: vec!["admin".into()],
        }),
        authorization: Some(authorization()),
        rate_limits: rate_limits(),
        allowed_origins: globs(&["https://app.example"]),
        loopback_only: true,
        audit: true,
        trace: true,
        ..fixtures::config()
    }
}

/// The 2026-07-28 gateway: stateless and modern servers, the era bridge and
/// the GET stream, no authentication.
pub fn stateless_config() -> FilterConfig {
    let mut c = stateful_config();
    c.stateless_era = true;
    c.servers = vec![
        server("a", false, ServerEra::Both),
        server("b", true, ServerEra::HandshakeOnly),
        server("s", false, ServerEra::HandshakeOnly),
        server("m", false, ServerEra::ModernOnly),
    ];
    c.control_plane = Some(fixtures::control_plane());
    c.auth = None;
    c.authorization = None;
    c.allowed_origins = globs(&["*"]);
    c.list_page_size = None;
    c
}
