//! The filter's configuration: the one schema both sides use.
//!
//! The control plane builds a [`FilterConfig`] from the catalog and the tools
//! it discovered, serialises it to JSON and pushes it to Envoy over ECDS; the
//! filter deserialises the same type in `on_configure`. Nothing else defines
//! this shape. Changing a field here changes it on both sides at once.

use serde::{Deserialize, Serialize};

mod tools;
pub use tools::{HeldTool, InMcp, Subset, ToolRouter, VirtualServer, CALL_TOOL, SEARCH_TOOL};

/// The request header the filter sets to the chosen upstream cluster; the
/// route table sends requests carrying it to that cluster.
pub const CLUSTER_HEADER: &str = "x-mcp-cluster";

/// Filter state (Envoy prefixes `wasm.`) that the filter sets on forwarded
/// requests: the JSON-RPC id and the server name. Envoy's local-reply
/// mapper reads them to turn its own errors (upstream down, timeout) into a
/// JSON-RPC error.
pub const REQUEST_ID_PROPERTY: &str = "mcp_request_id";
pub const SERVER_PROPERTY: &str = "mcp_server";
/// Filter state for the audit log (and the access log): who called, what,
/// and the authorization decision with its reason.
pub const PRINCIPAL_PROPERTY: &str = "mcp_principal";
pub const METHOD_PROPERTY: &str = "mcp_method";
pub const TARGET_PROPERTY: &str = "mcp_target";
pub const DECISION_PROPERTY: &str = "mcp_decision";
pub const REASON_PROPERTY: &str = "mcp_reason";
/// Filter state for the access log: the MCP members of an MCP request's line,
/// as the text of one JSON object (`metrics::log_record`), set once the
/// answer is known (before Envoy's access loggers run).
pub const LOG_PROPERTY: &str = "mcp_log";
/// Set on an answer the filter gives in place of an upstream's, once the
/// request was forwarded (an upstream's refusal of the gateway's
/// credentials): the connection manager's local-reply mapper, which words
/// Envoy's own failures to reach an upstream, leaves it as it is.
pub const OWN_REPLY_PROPERTY: &str = "mcp_own_reply";
/// Filter state naming the request's trace span (`metrics::span_name`):
/// `tools/call add`, `tools/list`, or `GET /health` for what is not MCP.
pub const SPAN_PROPERTY: &str = "mcp_span";
/// Filter state for the span: the `traceparent` of a request's `params._meta`.
pub const META_TRACEPARENT_PROPERTY: &str = "mcp_meta_traceparent";

/// Where the control plane's era bridge takes a 2026-07-28 request for a
/// server that needs a session or speaks an older revision: this prefix and
/// the server's name, on the [`FilterConfig::control_plane`]'s cluster.
pub const BRIDGE_PATH_PREFIX: &str = "/mcp-bridge/";
/// Where the filter asks the control plane to exchange a caller's token for
/// one of a server's (`<prefix><server>`, the caller's token as its bearer).
pub const EXCHANGE_PATH_PREFIX: &str = "/mcp-exchange/";

/// The header that proves a request to the control plane's internal
/// endpoints (GET streams, the era bridge, the runtimes' pipes) comes
/// through the filter: its value is a secret of the control plane, given to
/// the filter as a header of [`FilterConfig::control_plane`] and of piped
/// servers.
pub const INTERNAL_HEADER: &str = "x-mcp-gateway-internal";
/// The caller a GET stream is for (its principal, MCP-encoded), which the
/// filter tells the control plane so that it can cap each caller's
/// streams. Dropped from whatever a client sends.
pub const PRINCIPAL_HEADER: &str = "x-mcp-principal";
/// The virtual server a GET stream was opened on (its name), which the
/// filter tells the control plane so that it notifies the client only of
/// changes to that endpoint's lists. Dropped from whatever a client sends.
pub const ENDPOINT_HEADER: &str = "x-mcp-endpoint";

/// Marks the control plane's own discovery requests, so that its runtimes
/// do not count them as use of an on-demand server. Only the control plane
/// sends it: the filter drops a client-sent one on arrival.
pub const DISCOVERY_HEADER: &str = "x-mcp-gateway-discovery";

/// Everything the filter needs to answer and route MCP requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Version of the catalog this configuration was compiled from.
    pub version: String,
    /// The HTTP path of the MCP endpoint; other paths pass through untouched.
    #[serde(default = "default_mcp_path")]
    pub mcp_path: String,
    /// Request bodies larger than this are refused with 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The longest SSE event of an upstream's answer the filter relays, and
    /// the largest answer its own calls to upstreams (`initialize`, DELETE,
    /// `/metrics`) take: past it, the client gets a JSON-RPC error naming
    /// the server, and nothing more of that answer is held.
    #[serde(default = "default_max_upstream_event_bytes")]
    pub max_upstream_event_bytes: usize,
    /// What `initialize` reports as the gateway's `serverInfo`.
    pub server_info: ServerInfo,
    /// Optional `instructions` returned from `initialize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The upstream MCP servers, in catalog order.
    pub servers: Vec<UpstreamServer>,
    /// Every tool the gateway exposes, already renamed.
    pub tools: Vec<NamedRoute>,
    /// Every prompt the gateway exposes, renamed like the tools.
    #[serde(default)]
    pub prompts: Vec<NamedRoute>,
    /// Every resource the servers listed, URIs unchanged.
    #[serde(default)]
    pub resources: Vec<ServedItem>,
    /// Every resource template the servers listed, URI templates unchanged.
    #[serde(default)]
    pub resource_templates: Vec<ServedItem>,
    /// The `capabilities` the gateway announces in `initialize`: what the
    /// servers behind it offer, merged.
    #[serde(default = "default_capabilities")]
    pub capabilities: serde_json::Value,
    /// Keys that seal and open the gateway's session ids.
    pub session: SessionConfig,
    /// Whether the gateway serves the stateless 2026-07-28 revision
    /// (`server/discover`, requests without a session): every server is
    /// reachable in it, as it is or through the era bridge.
    #[serde(default)]
    pub stateless_era: bool,
    /// The control plane, behind Envoy: where a client's GET stream goes,
    /// and where 2026-07-28 requests are bridged to servers that cannot take
    /// them as they are. Without it, GET is refused with 405 and such
    /// requests with an error; `/metrics` has no control-plane part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<ControlPlane>,
    /// The most items one page of `tools/list` (and the other lists) holds;
    /// a longer list ends its page with a `nextCursor`. `None`: one page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_page_size: Option<usize>,
    /// Who may use the MCP endpoint. `None`: anyone who reaches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Who may see and use which servers, tools, prompts and resources.
    /// `None`: every caller may use everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationConfig>,
    /// Token buckets a request must find a token in, checked in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimit>,
    /// Browser origins allowed to call the MCP endpoint (`scheme://host[:port]`,
    /// or `*`). A request with any other `Origin` is refused with 403: the
    /// DNS-rebinding defence MCP requires. Requests without `Origin`
    /// (non-browser clients) are not concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Whether every listener of the gateway is on a loopback address: a
    /// request must then name a loopback host (`localhost`, `127.0.0.1`,
    /// `[::1]`), else 421. Against DNS rebinding, which `allowed_origins`
    /// alone cannot stop for clients that send no `Origin`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loopback_only: bool,
    /// Whether each authorization decision is recorded for the audit log
    /// (filter state the access log reads).
    #[serde(default)]
    pub audit: bool,
    /// Whether requests are traced: the method, server and tool are then
    /// set as filter state for the span's name and tags.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trace: bool,
    /// Whether an access log reads each MCP request's record (filter state
    /// [`LOG_PROPERTY`]): without one, the filter does not write it.
    #[serde(default = "default_true")]
    pub access_log: bool,
    /// Timeout of the filter's own calls to upstreams (the `initialize` fan-out).
    #[serde(default = "default_upstream_timeout_ms")]
    pub upstream_timeout_ms: u64,
    /// The tool router: which tools fit a task (`POST /tools`, and the
    /// search tool inside MCP). `None`: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<ToolRouter>,
    /// Tools left out because their server changed their definition since
    /// it was approved (`pin: hold`): a call gets an error naming the change
    /// instead of "unknown tool".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_tools: Vec<HeldTool>,
    /// Virtual servers: named MCP endpoints under [`FilterConfig::mcp_path`]
    /// (`/mcp/<name>`), each exposing a subset of the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<VirtualServer>,
}

/// The `serverInfo` block of the gateway's `initialize` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
}

/// One upstream MCP server as the filter sees it: where to send its requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamServer {
    /// The catalog name; also the key of its session inside a gateway session id.
    pub name: String,
    /// The Envoy cluster that reaches it.
    pub cluster: String,
    /// The `:authority` to send (the upstream's `host[:port]`).
    pub authority: String,
    /// The HTTP path of its MCP endpoint.
    pub path: String,
    /// Its own time limit for a request, overriding the route's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Whether it issues session ids. Only such servers are sent the filter's
    /// `initialize` when a client session starts; stateless ones are called
    /// without a session. Unknown means stateful, the safe assumption.
    #[serde(default = "default_true")]
    pub stateful: bool,
    /// The protocol version it agreed to at discovery, sent to a stateless
    /// server as `MCP-Protocol-Version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// Whether it offers `logging` (so `logging/setLevel` is sent to it).
    #[serde(default)]
    pub logging: bool,
    /// Which eras of the protocol it speaks, as discovery found.
    #[serde(default)]
    pub era: ServerEra,
    /// Headers added to every request sent to it (its credentials, from the
    /// catalog). Values are secrets: never printed by `Debug`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<UpstreamHeader>,
    /// Whether the client's own `Authorization` header goes to it. Off
    /// unless the catalog says so for this server: MCP forbids passing a
    /// client's token through by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_authorization: bool,
    /// Set when the server needs the gateway's OAuth token (`oauth` in the
    /// catalog) and the control plane has none that is valid: why, in
    /// words. Calls to it are refused with that reason rather than sent
    /// without a token. (The token itself reaches Envoy over SDS, never
    /// in this configuration.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_error: Option<String>,
    /// It takes each caller's own identity: requests to it carry the
    /// caller's JWT exchanged for a token of its (RFC 8693, by the control
    /// plane; `gateway/exchange.rs`), and callers without a JWT are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub token_exchange: bool,
}

/// Which eras of the protocol a server speaks: the handshake era
/// (`initialize`, revisions up to 2025-11-25), the stateless revision
/// 2026-07-28 (`server/discover`, no session), or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerEra {
    /// The handshake era only: a 2026-07-28 request for it goes through the
    /// control plane's era bridge. What a server not yet discovered is
    /// taken to speak.
    #[default]
    HandshakeOnly,
    /// Both: a 2026-07-28 request goes to it as it is, whether or not it
    /// keeps sessions for handshake-era clients.
    Both,
    /// 2026-07-28 only (it refused `initialize`): a handshake-era client's
    /// request is translated for it (the revision's headers and `_meta`),
    /// and it gets no session notifications.
    ModernOnly,
}

impl ServerEra {
    /// From what discovery found: whether `server/discover` listed
    /// 2026-07-28, and whether `initialize` was refused (which leaves only
    /// that revision).
    pub fn of(speaks_2026: bool, refuses_initialize: bool) -> ServerEra {
        match (speaks_2026, refuses_initialize) {
            (_, true) => ServerEra::ModernOnly,
            (true, false) => ServerEra::Both,
            (false, false) => ServerEra::HandshakeOnly,
        }
    }

    /// Whether it takes a 2026-07-28 request as it is.
    pub fn speaks_2026(self) -> bool {
        self != ServerEra::HandshakeOnly
    }
}

/// The control plane, behind Envoy (its admin listener): where a client's
/// GET stream goes, and where 2026-07-28 requests are bridged to servers
/// that cannot take them as they are ([`BRIDGE_PATH_PREFIX`]`<server>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlane {
    /// The Envoy cluster that reaches it.
    pub cluster: String,
    /// The `:authority` to send.
    pub authority: String,
    /// The path of its GET-stream endpoint: the gateway's notifications
    /// merged with the upstreams' streams.
    pub events_path: String,
    /// The cluster GET streams take, with circuit breakers of its own, so
    /// that held streams cannot use up `cluster` (the era bridge, the
    /// operator's pages). Unset: `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams_cluster: Option<String>,
    /// Headers every request to it carries ([`INTERNAL_HEADER`]). Values are
    /// secrets: never printed by `Debug`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<UpstreamHeader>,
}

/// One header sent to an upstream.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamHeader {
    /// Lower-case header name.
    pub name: String,
    pub value: String,
}

impl std::fmt::Debug for UpstreamHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamHeader").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A tool or prompt as exposed by the gateway and where it is routed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedRoute {
    /// The name clients see (for example `time__get_current_time`).
    pub name: String,
    /// Index into [`FilterConfig::servers`].
    pub server: usize,
    /// The name the upstream knows it by.
    pub upstream_name: String,
    /// The definition as listed to clients (its `name` is [`Self::name`]).
    pub definition: Definition,
}

/// A tool's or prompt's definition as listed to clients, kept as the JSON
/// text it arrives as: the filter only copies it into list answers, and a
/// tree of values per definition took the VM about ten times the text's
/// size (a 10,000-server catalog, 210,000 tools, ran it out of memory).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Definition(Box<serde_json::value::RawValue>);

impl Definition {
    /// The definition of `value` (`null` for a value JSON cannot hold,
    /// which a `serde_json::Value` never is).
    pub fn new(value: &serde_json::Value) -> Self {
        Definition(serde_json::value::to_raw_value(value).unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned()))
    }

    /// A definition already serialised.
    pub fn from_raw(raw: Box<serde_json::value::RawValue>) -> Self {
        Definition(raw)
    }

    /// The JSON text.
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The definition parsed (`Null` if it were not JSON, which it always is).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }
}

impl PartialEq for Definition {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

/// A resource or resource template, relayed as its server listed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServedItem {
    /// Index into [`FilterConfig::servers`].
    pub server: usize,
    /// The definition (with `uri` or `uriTemplate`) as listed to clients.
    pub definition: serde_json::Value,
}

/// Authentication of clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// API keys, sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`.
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// JWTs, verified by Envoy's `jwt_authn` filter before this one; the
    /// filter reads the verified payload from [`JWT_PAYLOAD_HEADER`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtClaims>,
    /// The RFC 9728 metadata served at `/.well-known/oauth-protected-resource`
    /// and named in `WWW-Authenticate`, so that OAuth clients find where to
    /// get a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_resource: Option<ProtectedResource>,
    /// Whether a client certificate Envoy verified names the caller (mTLS),
    /// when the request carries no other credential.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_certificates: bool,
    /// The groups whose callers may read the operator's pages (`/metrics`,
    /// `/stats`, `/servers`, and `/health` and `/ready` in full) on the
    /// gateway's port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_groups: Vec<String>,
}

/// The header Envoy's `jwt_authn` filter writes the verified JWT payload to
/// (base64url JSON). Envoy removes whatever a client sent under this name
/// before `jwt_authn` runs, and the filter removes it before forwarding.
pub const JWT_PAYLOAD_HEADER: &str = "x-mcp-jwt-payload";
/// Where `jwt_authn` records why a token failed (dynamic metadata).
pub const JWT_FAILURE_METADATA: &str = "jwt_failure";
/// Why `jwt_authn` refused a token, copied by a `header_mutation` filter
/// from its dynamic metadata (`<JWT_FAILURE_METADATA>.message`) into this
/// request header, where both builds of the filter read it (a native
/// module cannot read into a metadata struct). Dropped before a request
/// leaves, like the payload header; a client-sent copy is dropped first.
pub const JWT_FAILURE_HEADER: &str = "x-mcp-jwt-failure";

/// How a verified JWT names its caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtClaims {
    /// The claim holding the principal.
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// The claim holding the groups: an array of strings, or one string of
    /// space-separated names.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Scopes every token must carry (in `scope` or `scp`); a token without
    /// them gets 403 with the scope challenge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_scopes: Vec<String>,
}

/// RFC 9728 protected resource metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedResource {
    /// The gateway's MCP endpoint URL as clients name it (the token audience).
    pub resource: String,
    pub authorization_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
}

/// Authorization: rules that allow or deny servers, tools, prompts and
/// resources to callers. A deny from any rule that applies wins; else an
/// allow from any; else [`Self::default_allow`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// What a caller may do that no rule speaks of.
    #[serde(default)]
    pub default_allow: bool,
    pub rules: Vec<PolicyRule>,
}

/// One rule. It applies to a caller whose principal matches one of
/// `principals` or who is in a group matching one of `groups`; with neither
/// listed, to every caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default)]
    pub allow: Targets,
    #[serde(default)]
    pub deny: Targets,
}

/// What a rule speaks of, as glob patterns (`*` any run of characters, `?`
/// one): servers by catalog name (all they offer), tools and prompts by the
/// names clients see, resources by URI (templates by their URI template).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
}

/// A token bucket per distinct value of `per` among the requests it
/// concerns: those of matching principals or groups, to matching servers
/// and tools (globs; empty: any).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub name: String,
    /// What a bucket is kept for: any of `principal`, `server`, `tool`.
    /// Empty: one bucket for all the requests concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per: Vec<LimitKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Virtual servers (`endpoints`, by name, globs) whose requests it
    /// concerns. Empty: requests on any endpoint, the gateway's included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Tokens added per minute.
    pub requests_per_minute: u32,
    /// The bucket's size: how many requests may come at once.
    pub burst: u32,
    /// Kept in the control plane's rate limit service (Redis), shared by
    /// every Envoy, instead of in this Envoy's memory. Applies to requests
    /// forwarded to servers; the filter names the bucket in
    /// [`RATE_LIMIT_HEADER_PREFIX`]`<name>` for Envoy's `ratelimit` filter.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub global: bool,
}

/// The request header that names a global limit's bucket for Envoy's
/// `ratelimit` filter (the limit's name follows). Only the filter sets it.
pub const RATE_LIMIT_HEADER_PREFIX: &str = "x-mcp-rate-limit-";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKey {
    Principal,
    Server,
    Tool,
}

/// One API key, as the filter knows it: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// SHA-256 of the key, hex.
    pub sha256: String,
    /// Who presents it.
    pub principal: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// Session sealing keys. Several keys may be listed so that ids sealed under
/// an older key still open while a new one becomes active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Id of the key new sessions are sealed with.
    pub active_key: String,
    pub keys: Vec<SessionKey>,
    /// Sessions older than this are refused with 404.
    #[serde(default = "default_session_ttl")]
    pub ttl_seconds: u64,
    /// The longest session id handed out. Upstream sessions are sealed in
    /// the id while it stays under this; those beyond it are opened on the
    /// client's first call and kept by the Envoy that opened them
    /// (`opened.rs`). Clients and proxies refuse header blocks past 8 to
    /// 16 KiB.
    #[serde(default = "default_max_session_id_bytes")]
    pub max_id_bytes: usize,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionKey {
    /// Short id, carried in clear in every session id.
    pub id: String,
    /// 32 bytes, hex encoded.
    pub secret_hex: String,
}

impl std::fmt::Debug for SessionKey {
    // Keys must never reach a log line through a Debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey").field("id", &self.id).finish_non_exhaustive()
    }
}

fn default_principal_claim() -> String {
    "sub".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_true() -> bool {
    true
}
pub fn default_capabilities() -> serde_json::Value {
    serde_json::json!({ "tools": { "listChanged": false } })
}
pub fn default_mcp_path() -> String {
    "/mcp".to_string()
}
pub fn default_max_body_bytes() -> usize {
    1024 * 1024
}
/// The longest SSE event relayed when the configuration names no other
/// bound (`gateway.max_upstream_event_bytes`).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

pub fn default_max_upstream_event_bytes() -> usize {
    DEFAULT_MAX_EVENT_BYTES
}
pub fn default_upstream_timeout_ms() -> u64 {
    10_000
}
pub fn default_session_ttl() -> u64 {
    24 * 3600
}
pub fn default_max_session_id_bytes() -> usize {
    4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_era_is_one_of_three() {
        assert_eq!(ServerEra::of(false, false), ServerEra::HandshakeOnly);
        assert_eq!(ServerEra::of(true, false), ServerEra::Both);
        assert_eq!(ServerEra::of(true, true), ServerEra::ModernOnly);
        assert!(!ServerEra::HandshakeOnly.speaks_2026() && ServerEra::Both.speaks_2026() && ServerEra::ModernOnly.speaks_2026());
        let names: Vec<String> = [ServerEra::HandshakeOnly, ServerEra::Both, ServerEra::ModernOnly]
            .iter()
            .map(|e| serde_json::to_string(e).unwrap_or_default())
            .collect();
        assert_eq!(names, [r#""handshake_only""#, r#""both""#, r#""modern_only""#]);
        // What the control plane leaves out is a server of the handshake era.
        let server: UpstreamServer = serde_json::from_str(r#"{"name":"a","cluster":"c","authority":"h","path":"/mcp"}"#).unwrap();
        assert_eq!(server.era, ServerEra::HandshakeOnly);
    }
}
