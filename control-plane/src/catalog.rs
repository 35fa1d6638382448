//! `catalog.yaml`: what operators write. Parsing, `${ENV_VAR}` and
//! `${file:PATH}` interpolation, and validation with messages that name the
//! server and the field.
//! It never reads a file or the network: the controller reads the catalog
//! and the files it names, and hands the text in.
//!
//! This module reads no file: callers hand it the text and a way to look up
//! environment variables and secret files, so that tests need neither.

use std::collections::BTreeMap;

use mcp_filter::config::{PolicyRule, ProtectedResource, RateLimit, Subset};
use serde::{Deserialize, Serialize};

/// The whole catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(default)]
    pub gateway: GatewaySettings,
    #[serde(default)]
    pub servers: Vec<Server>,
    /// Virtual servers: MCP endpoints exposing a subset of the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointSettings>,
}

/// Settings of the gateway itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// Address of the MCP endpoint (Envoy's listener). The seeds' port, 4444.
    pub listen: String,
    /// HTTP path of the MCP endpoint.
    pub mcp_path: String,
    /// Put between a server's name and its tool names.
    pub tool_separator: String,
    /// Request bodies over this size get 413.
    pub max_body_bytes: usize,
    /// Longest SSE event or line an upstream may send; past it, a JSON-RPC error naming it.
    pub max_upstream_event_bytes: usize,
    /// `serverInfo.name` in the gateway's `initialize` answer.
    pub server_name: String,
    /// Returned as `instructions` from `initialize`.
    pub instructions: Option<String>,
    /// How long a call to an upstream may go without a byte of its answer: the wait for the answer
    /// to start, then each silence between the events of a streamed (SSE) answer, which may last as
    /// long as events keep coming. A server's own `request_timeout_seconds` limits the whole call.
    pub request_timeout_seconds: u64,
    /// The seeds' connection pool limit: calls in flight Envoy allows to each server, each holding
    /// one connection (a server's own `max_connections` overrides it). Past it, calls get a
    /// JSON-RPC overload error at once instead of queueing.
    pub max_connections_per_server: u32,
    /// How many clients' GET streams may be open, per caller, per session and in all.
    pub streams: StreamLimits,
    /// How long an idle connection (a client's, or to a server) is kept open.
    pub idle_timeout_seconds: u64,
    /// Time a client has to send a whole request, headers and body; a
    /// slower one (slowloris) gets 408 and its connection is closed.
    pub request_read_timeout_seconds: u64,
    /// Key that seals session ids: 64 hex characters, usually `${MCP_GATEWAY_SESSION_KEY}`.
    /// Without it the control plane makes a random key at start, and
    /// sessions do not survive a restart of the control plane.
    pub session_key: Option<String>,
    /// How long a client session lives.
    pub session_ttl_seconds: u64,
    /// The longest session id the gateway hands a client. The upstream sessions that fit are sealed in
    /// it (any Envoy serves them); the others are opened on the client's first call to their server and
    /// kept by the Envoy that opened them. Clients refuse header blocks past 8 to 16 KiB.
    pub session_id_max_bytes: usize,
    /// CA certificates Envoy verifies `https://` upstreams against.
    pub upstream_ca_file: String,
    /// The most items one page of `tools/list` (and the other lists) holds;
    /// clients follow `nextCursor` for the rest. Unset: everything on one page.
    pub list_page_size: Option<usize>,
    /// Who may use the MCP endpoint. Unset: anyone who can reach it.
    pub auth: Option<AuthSettings>,
    /// Who may see and use which servers, tools, prompts and resources.
    /// Unset: every caller may use everything.
    pub authorization: Option<AuthorizationSettings>,
    /// The seeds' `RATE_LIMIT_PER_MINUTE`: requests each principal may send
    /// per minute (all methods), with a burst of as many.
    pub rate_limit_per_minute: Option<u32>,
    /// Token buckets by principal, server and tool (see docs/security.md).
    pub rate_limits: Vec<RateLimit>,
    /// Where global rate limits (`global: true`) are kept: the control plane's rate limit service, backed by Redis.
    pub global_rate_limits: Option<GlobalRateLimitSettings>,
    /// Browser origins allowed to call the gateway (`https://app.example`, or `*`). Requests carrying
    /// any other `Origin` get 403, on every path.
    pub allowed_origins: Vec<String>,
    /// HTTPS for the MCP endpoint: on `gateway.listen`, or on its own
    /// `tls.listen` next to the plain listener.
    pub tls: Option<TlsSettings>,
    /// Where Envoy writes the audit log (a JSON line per authorization decision) when authentication,
    /// authorization or rate limits are on: a file path, `/dev/stdout`, or `off`.
    pub audit_log: String,
    /// Where Envoy writes the access log (a JSON line per HTTP request, with
    /// the MCP method, server, tool, id, error code, principal of MCP ones):
    /// a file path, `/dev/stdout`, or `off`.
    pub access_log: String,
    /// The control plane's log level: `error`, `warn`, `info`, `debug` or
    /// `trace` (`RUST_LOG`, when set, wins).
    pub log_level: String,
    /// OpenTelemetry traces from Envoy, exported over OTLP/HTTP. Unset: none.
    pub tracing: Option<TracingSettings>,
    /// Which build of the filter Envoy runs: `wasm` (the proxy-wasm module, sent inline) or `native`
    /// (the dynamic module `libmcp_filter_native.so`, found through Envoy's
    /// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`; docs/design/native-module.md). Same decisions either way.
    /// Left out of the serialised catalog when `wasm`, so that it does not change existing versions.
    #[serde(skip_serializing_if = "is_wasm")]
    pub filter: String,
    /// The tool router: `POST /tools` and the search tools inside MCP.
    pub tool_router: ToolRouterSettings,
    /// What a change of a tool's definition since it was approved does:
    /// `off` (default), `warn` or `hold` (docs/design/tool-router.md).
    #[serde(skip_serializing_if = "PinMode::is_off")]
    pub pin: PinMode,
    /// Where approved definitions are kept (default: `<catalog>.pins.json`
    /// beside the catalog; relative paths from the catalog's directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<String>,
}

/// `gateway.filter`'s values.
pub const FILTER_WASM: &str = "wasm";
pub const FILTER_NATIVE: &str = "native";

fn is_wasm(filter: &String) -> bool {
    filter == FILTER_WASM
}

/// Where and how Envoy exports spans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSettings {
    /// The collector's OTLP/HTTP base URL, `http://collector:4318` (spans are
    /// posted to `/v1/traces`).
    pub otlp_endpoint: String,
    /// `service.name` of the spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of requests traced when the client sent no sampling decision.
    #[serde(default = "default_sampling_percent")]
    pub sampling_percent: f64,
}

fn default_service_name() -> String {
    "mcp-gateway".into()
}
fn default_sampling_percent() -> f64 {
    100.0
}

/// The store of global rate limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalRateLimitSettings {
    /// `redis://host:port/db`, usually `${REDIS_URL}`.
    pub redis_url: String,
    /// Refuse requests while the service or Redis cannot answer (default:
    /// let them through, and log it).
    #[serde(default)]
    pub failure_mode_deny: bool,
    /// How long Envoy waits for the service.
    #[serde(default = "default_rls_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_rls_timeout_ms() -> u64 {
    500
}

/// TLS in Envoy. The files are read by the control plane (relative to the
/// catalog) and pushed to Envoy over SDS; when they change, Envoy gets the
/// new ones without a restart or a drain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// A separate HTTPS listener; unset: `gateway.listen` itself speaks TLS.
    #[serde(default)]
    pub listen: Option<String>,
    /// PEM certificate chain, and its private key.
    pub cert_file: String,
    pub key_file: String,
    /// PEM CAs that client certificates are verified against (mTLS).
    #[serde(default)]
    pub client_ca_file: Option<String>,
    /// Refuse the TLS handshake of clients without a valid certificate.
    #[serde(default)]
    pub require_client_certificate: bool,
}

/// Authorization rules, checked in the filter for every call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationSettings {
    /// What a caller may do that no rule speaks of. Default: deny.
    #[serde(default)]
    pub default: DefaultDecision,
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultDecision {
    Allow,
    #[default]
    Deny,
}

/// Client authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Keys sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`.
    #[serde(default)]
    pub api_keys: Vec<ApiKeySettings>,
    /// JWTs, verified by Envoy (`jwt_authn`).
    #[serde(default)]
    pub jwt: Option<JwtSettings>,
    /// RFC 9728 metadata: where OAuth clients get a token for this gateway.
    #[serde(default)]
    pub protected_resource: Option<ProtectedResource>,
    /// Clients presenting a certificate verified against
    /// `gateway.tls.client_ca_file` are callers named by it (its first URI
    /// SAN, else DNS SAN, else subject), when they send no other credential.
    #[serde(default)]
    pub client_certificates: bool,
    /// API keys in one of these groups may use the admin endpoints that
    /// change state (start, stop, restart, reload).
    #[serde(default = "default_admin_groups")]
    pub admin_groups: Vec<String>,
}

fn default_admin_groups() -> Vec<String> {
    vec!["admin".into()]
}

impl AuthSettings {
    /// SHA-256 of each API key that may use the admin endpoints.
    pub fn admin_key_digests(&self) -> Vec<[u8; 32]> {
        use sha2::Digest as _;
        self.api_keys
            .iter()
            .filter(|k| k.groups.iter().any(|g| self.admin_groups.contains(g)))
            .map(|k| sha2::Sha256::digest(k.key.as_bytes()).into())
            .collect()
    }
}

/// How Envoy verifies JWTs: issuer, audiences, and one source of keys.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// Tokens must name one of these in `aud`. Empty: `aud` is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// HS256 shared secret (the seeds' `JWT_SECRET`), at least 32 characters.
    #[serde(default)]
    pub hs256_secret: Option<String>,
    /// A JWKS file (RS256, ES256, ...), read when the catalog is loaded.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// A JWKS URL Envoy fetches and caches.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The claim naming the caller.
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// The claim listing the caller's groups (array, or space-separated).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Scopes every token must carry; others get 403 with the scope challenge.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Refuse tokens without `exp` (default): such a token, once stolen,
    /// would be good forever. `false` only for an issuer that cannot set it.
    #[serde(default = "default_true")]
    pub require_expiration: bool,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("jwks_file", &self.jwks_file)
            .field("jwks_uri", &self.jwks_uri)
            .field("require_expiration", &self.require_expiration)
            .finish_non_exhaustive()
    }
}

fn default_principal_claim() -> String {
    "sub".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    /// The key, usually `${SOME_ENV_VAR}`; at least 16 characters.
    pub key: String,
    /// Who presents it (for policies and the audit log).
    pub principal: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl std::fmt::Debug for ApiKeySettings {
    // Keys must never reach a log line through a Debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeySettings").field("principal", &self.principal).field("groups", &self.groups).finish_non_exhaustive()
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            listen: "127.0.0.1:4444".into(),
            mcp_path: "/mcp".into(),
            tool_separator: "__".into(),
            max_body_bytes: 1024 * 1024,
            max_upstream_event_bytes: mcp_filter::relay::DEFAULT_MAX_EVENT_BYTES,
            server_name: "mcp-gateway".into(),
            instructions: None,
            request_timeout_seconds: 60,
            max_connections_per_server: 1024,
            streams: StreamLimits::default(),
            idle_timeout_seconds: 600,
            request_read_timeout_seconds: 30,
            session_key: None,
            session_ttl_seconds: 24 * 3600,
            session_id_max_bytes: 4096,
            upstream_ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
            list_page_size: None,
            auth: None,
            authorization: None,
            rate_limit_per_minute: None,
            rate_limits: Vec::new(),
            allowed_origins: Vec::new(),
            audit_log: "/dev/stdout".into(),
            access_log: "/dev/stdout".into(),
            log_level: "info".into(),
            tracing: None,
            tls: None,
            global_rate_limits: None,
            filter: FILTER_WASM.into(),
            tool_router: ToolRouterSettings::default(),
            pin: PinMode::Off,
            pin_file: None,
        }
    }
}

/// One upstream MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Unique; lower-case letters, digits, `-` and `_`. Prefixes its tools.
    pub name: String,
    /// How the gateway reaches it.
    #[serde(default)]
    pub runtime: Runtime,
    /// Its endpoint: Streamable HTTP (`http`) or the legacy SSE stream (`sse`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// `stdio`: the program to run (a path, or a name looked up in `PATH`;
    /// a relative path is taken from the catalog's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `stdio`: its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `stdio`: its environment, on top of a minimal base (`PATH`, `HOME`,
    /// `LANG`, `TMPDIR`). Nothing else of the gateway's environment reaches it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "scalar_values")]
    pub env: BTreeMap<String, String>,
    /// `stdio`: its working directory (default: the catalog's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// `stdio` and `sse`: started with the gateway (`eager`), or on first use
    /// (`on-demand`) and stopped after `idle_timeout_seconds` without calls.
    #[serde(default)]
    pub start: Start,
    /// How long the server may sit idle: an on-demand process is stopped
    /// after it (default 300 s); an `http` server's idle connections are
    /// closed after it (default `gateway.idle_timeout_seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<u64>,
    /// Whether its tools are renamed `<server><separator><tool>`. Turn it off
    /// only when its tool names collide with no other server's.
    #[serde(default = "default_true")]
    pub prefix: bool,
    /// Time allowed to list its tools.
    #[serde(default = "default_discovery_timeout")]
    pub discovery_timeout_seconds: u64,
    /// Time allowed for one whole request to it, streamed answers included
    /// (default: gateway.request_timeout_seconds, as a limit on silence).
    #[serde(default)]
    pub request_timeout_seconds: Option<u64>,
    /// `http`: calls in flight Envoy allows to it (default:
    /// gateway.max_connections_per_server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// `http` and `sse`: headers sent with every request to it, usually its
    /// credentials (`Authorization: Bearer ${TOKEN}`).
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// Whether the client's own `Authorization` header is passed to it.
    /// Off by default: MCP forbids passing a client's token through.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_authorization: bool,
    /// `https://` servers: the CAs its certificate must chain to, and the
    /// certificate the gateway presents to it (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTlsSettings>,
    /// Which of its tools the gateway serves, by the server's own names:
    /// those an include matches (all, without include) and no exclude
    /// does. The others are not listed, searched or callable; `/servers`
    /// names them (`hidden_tools`).
    #[serde(default, skip_serializing_if = "Subset::is_all")]
    pub tools: Subset,
    /// What a change of one of its tools' definitions does (default:
    /// `gateway.pin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<PinMode>,
    /// `http` and `sse`: the gateway's OAuth client registration at the
    /// server's authorization server; the control plane gets and refreshes
    /// tokens with it, and they go with every request to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthSettings>,
}

/// How the gateway verifies an `https://` server, and what it shows one that
/// asks for a client certificate. Paths are relative to the catalog's
/// directory; the control plane reads the files with the catalog, checks
/// them every few seconds for a rotation, and sends their contents to Envoy
/// (which may not share its disk). Envoy and the control plane verify the
/// same way: these CAs (else the system's), the URL's host in the
/// certificate's names, and SNI for a host name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSettings {
    /// PEM CA certificates its certificate must chain to, instead of the
    /// system's: a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM certificate chain presented to a server that requires one, and
    /// its private key. Both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<String>,
}

impl UpstreamTlsSettings {
    /// Its fields, each with its name: the CAs, the client certificate, its key.
    pub fn fields(&self) -> [(&'static str, Option<&str>); 3] {
        [
            ("ca_file", self.ca_file.as_deref()),
            ("client_cert_file", self.client_cert_file.as_deref()),
            ("client_key_file", self.client_key_file.as_deref()),
        ]
    }

    /// The files it names, each with the field that names it.
    pub fn files(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.fields().into_iter().filter_map(|(field, f)| Some((field, f?)))
    }
}

/// Headers sent to a server. The values are secrets: `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Headers(#[serde(deserialize_with = "scalar_values")] pub BTreeMap<String, String>);

impl Headers {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// How the gateway reaches a server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Streamable HTTP at `url`: Envoy calls it directly.
    #[default]
    Http,
    /// The 2024-11-05 HTTP+SSE transport at `url`: the control plane holds
    /// the connection and serves it to Envoy as Streamable HTTP.
    Sse,
    /// A local process speaking JSON-RPC on stdin/stdout: the control plane
    /// runs and supervises it and serves it to Envoy as Streamable HTTP.
    Stdio,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Start {
    #[default]
    Eager,
    OnDemand,
}

/// Where the control plane serves the servers it runs (`stdio`) or connects
/// to (`sse`): this prefix, the server's name, then `/mcp`.
pub const PIPE_PATH_PREFIX: &str = "/upstream/";

/// A map whose values may be written as numbers or booleans (`PORT: 8080`):
/// environment values are text either way.
fn scalar_values<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    use serde::de::Error as _;
    let raw = BTreeMap::<String, serde_yaml::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Bool(b) => b.to_string(),
                _ => return Err(D::Error::custom(format!("env {k:?}: a value must be text, a number or a boolean"))),
            };
            Ok((k, text))
        })
        .collect()
}

fn default_true() -> bool {
    true
}
fn default_discovery_timeout() -> u64 {
    10
}

/// A catalog that failed to load, with every problem found.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog is not valid YAML for the catalog schema: {0}")]
    Yaml(String),
    #[error("catalog refers to undefined environment variables: {}", .0.join(", "))]
    MissingEnv(Vec<String>),
    /// Secret files that could not be read (and any undefined variables
    /// beside them), each named with the reason; never a value.
    #[error("catalog refers to secrets it cannot get:\n  - {}", .0.join("\n  - "))]
    Unresolved(Vec<String>),
    #[error("invalid catalog:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Parses, interpolates and validates catalog text, looking `${NAME}` up in
/// `env` (a `${file:...}` is then an unset variable: see [`load_with`]).
pub fn load(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Catalog, CatalogError> {
    load_with(text, |name| Ok(env(name)))
}

/// Parses, interpolates and validates catalog text; `lookup` gives the value
/// of each `${NAME}` and `${file:PATH}` (the controller's reads the files,
/// relative to the catalog, and remembers which it read).
///
/// Interpolation happens in string values after parsing, not in the text:
/// comments are left alone, and a variable's value can never add YAML
/// structure (a value with `\n  - name: evil` stays one string).
pub fn load_with(text: &str, lookup: impl Fn(&str) -> Lookup) -> Result<Catalog, CatalogError> {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| CatalogError::Yaml(e.to_string()))?;
    let guide = guide_keys(&doc);
    if !guide.is_empty() {
        return Err(CatalogError::Invalid(guide));
    }
    interpolate::interpolate_doc(&mut doc, &lookup)?;
    let catalog: Catalog = serde_yaml::from_value(doc).map_err(|e| CatalogError::Yaml(e.to_string()))?;
    let problems = validate(&catalog);
    if problems.is_empty() {
        Ok(catalog)
    } else {
        Err(CatalogError::Invalid(problems))
    }
}

/// The Open guide's top-level `config.yaml` keys, each with where the
/// catalog keeps the same setting: a guide's file gets directions, not
/// "unknown field".
const GUIDE_KEYS: [(&str, &str); 6] = [
    ("listen_addr", "gateway.listen (\"127.0.0.1:4444\")"),
    ("api_key", "gateway.auth.api_keys: [{key: \"${MCP_GATEWAY_API_KEY}\", principal: <name>, groups: [admin]}]"),
    ("log_level", "gateway.log_level"),
    ("max_connections_per_server", "gateway.max_connections_per_server"),
    ("request_timeout_seconds", "gateway.request_timeout_seconds"),
    ("idle_timeout_seconds", "gateway.idle_timeout_seconds"),
];

fn guide_keys(doc: &serde_yaml::Value) -> Vec<String> {
    let Some(top) = doc.as_mapping() else { return Vec::new() };
    GUIDE_KEYS
        .iter()
        .filter(|(key, _)| top.contains_key(*key))
        .map(|(key, instead)| format!("{key}: a key of the Open guide's config.yaml; in the catalog it is {instead} (README, The catalog)"))
        .collect()
}

/// The name of the limit `gateway.rate_limit_per_minute` makes.
pub const DEFAULT_LIMIT: &str = "default";

mod endpoint;
mod endpoints;
mod interpolate;
mod oauth;
mod router;
mod streams;
mod tools;
mod validate;
pub use endpoint::{parse_endpoint, Endpoint};
pub use endpoints::{path_of, EndpointSettings};
pub use interpolate::{interpolate, interpolate_with, Lookup, Unreadable, FILE_PREFIX};
pub use oauth::{token_url_allowed, ClientAuth, Grant, OAuthSettings};
pub use router::ToolRouterSettings;
pub use streams::StreamLimits;
pub use tools::PinMode;
pub use validate::{validate, MAX_TIMEOUT_SECONDS};

#[cfg(test)]
mod tests;
