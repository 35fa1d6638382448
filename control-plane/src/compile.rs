//! `compile`: catalog + what the servers offer -> Envoy resources and the filter's
//! configuration. A pure function: it reads no clock, file or socket, so a
//! YAML string in and resources out is a complete test.
//!
//! What it builds (see ARCHITECTURE.md for why):
//! - one cluster per server (`mcp_<name>`) and one for the control plane's
//!   admin API;
//! - the filter as an ECDS resource ([`FILTER_NAME`]), with the
//!   [`FilterConfig`] as its configuration, so that catalog edits reach Envoy
//!   without draining the listener: the wasm filter with its module named by
//!   its SHA-256, which Envoy fetches from the control plane once and keeps,
//!   or, with `gateway.filter: native`, the native dynamic module
//!   `NATIVE_MODULE`, which Envoy loads from its disk (`compile/filter.rs`);
//! - one listener whose HTTP connection manager gets its routes over RDS and
//!   its filter over ECDS;
//! - one route table: admin paths to the control plane, and every request
//!   the filter marked with `x-mcp-cluster` to that cluster.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{config_source, AggregatedConfigSource, ApiVersion, ConfigSource};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;
use mcp_filter::config::{
    ApiKey, AuthConfig, AuthorizationConfig, ControlPlane, FilterConfig, HeldTool, InMcp, JwtClaims, LimitKey, RateLimit, ServedItem,
    ServerEra, ServerInfo, SessionConfig, ToolRouter, UpstreamHeader, UpstreamServer, INTERNAL_HEADER,
};
use prost::Message;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, DefaultDecision, GatewaySettings, Grant, Server, DEFAULT_LIMIT};
use crate::discovery::Discovered;
use crate::snapshot::{Snapshot, CLUSTER_TYPE, EXTENSION_CONFIG_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE};
use crate::upstream::UpstreamTls;

/// Name of the wasm filter in the HTTP connection manager and in ECDS.
pub const FILTER_NAME: &str = "mcp-gateway.filter";
pub const LISTENER_NAME: &str = "mcp_gateway";
/// The HTTPS listener, when `gateway.tls.listen` gives it an address of its own.
pub const TLS_LISTENER_NAME: &str = "mcp_gateway_tls";
pub const ROUTE_NAME: &str = "mcp_gateway";
/// The cluster of the control plane's admin API.
/// Outside the `mcp_` namespace of server clusters, so no server name can
/// collide with it.
pub const ADMIN_CLUSTER: &str = "gateway_admin";
/// The same, for clients' GET streams alone (`gateway.streams.max_open`).
pub const STREAMS_CLUSTER: &str = "gateway_streams";
/// Paths served by the control plane's admin API through the gateway port.
/// The filter guards them (an admin credential once authentication is on),
/// so the list is the filter's.
pub const ADMIN_PATHS: &[&str] = mcp_filter::gateway::ROUTED_PATHS;
/// The control plane's endpoint for clients' GET streams (reached only
/// through the filter, which checks the session first).
pub const EVENTS_PATH: &str = "/mcp-events";

/// Longest wait for an upstream's answer to the filter's own `initialize`.
pub const INIT_TIMEOUT_SECONDS: u64 = 10;

/// Everything `compile` needs besides the catalog.
pub struct Inputs<'a> {
    pub catalog: &'a Catalog,
    /// Per server name, what it offers. A server that could not be
    /// discovered is absent and contributes nothing.
    pub discovered: &'a dyn Offered,
    /// The SHA-256 of the filter module (lowercase hex). Envoy fetches the
    /// module by it from the admin API ([`module_path`]), once per process.
    pub module_sha256: &'a str,
    pub session: &'a SessionConfig,
    /// Where Envoy reaches the control plane's admin API.
    pub admin: (&'a str, u16),
    /// The gateway's version, reported in `serverInfo`.
    pub gateway_version: &'a str,
    /// The content of `gateway.auth.jwt.jwks_file`, read by the caller.
    pub jwks: Option<&'a str>,
    /// The control plane's secret that the filter sends to its internal
    /// endpoints ([`INTERNAL_HEADER`]).
    pub internal_token: &'a str,
    /// The content of the `gateway.tls` files, read by the caller.
    pub tls: Option<TlsMaterial<'a>>,
    /// The content of each server's `tls` files, by server name, read by
    /// the caller.
    pub upstream_tls: &'a BTreeMap<String, UpstreamTls>,
    /// The filter configuration running now, if any: a name two servers
    /// expose stays with the one that had it ([`Dropped`]).
    pub previous: Option<&'a FilterConfig>,
    /// Tools held because their definition changed since it was approved
    /// (`pin: hold`): server name -> its own tool name -> the change, in
    /// words (`pins::Review::held`). Not served; a call names the change.
    pub held: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// The token of each server with `oauth`, or why it has none; a server
    /// absent here has none yet.
    pub credentials: &'a BTreeMap<String, Credential>,
}

/// What each server offers, by server name: a map of them, or the
/// controller's record (with each server's identity), read without a copy.
pub trait Offered {
    fn offer(&self, server: &str) -> Option<&Discovered>;
}

impl Offered for BTreeMap<String, Discovered> {
    fn offer(&self, server: &str) -> Option<&Discovered> {
        self.get(server)
    }
}

impl Offered for BTreeMap<String, (String, std::sync::Arc<Discovered>)> {
    fn offer(&self, server: &str) -> Option<&Discovered> {
        self.get(server).map(|(_, d)| d.as_ref())
    }
}

/// PEM text of the listener's certificate chain and key, and of the CAs
/// client certificates are checked against.
#[derive(Clone, Copy)]
pub struct TlsMaterial<'a> {
    pub cert: &'a str,
    pub key: &'a str,
    pub client_ca: Option<&'a str>,
}

/// The outcome: what to publish, the filter configuration inside it, and
/// what of the servers' offers was left out.
#[derive(Debug)]
pub struct Compiled {
    pub snapshot: Snapshot,
    pub filter_config: FilterConfig,
    pub dropped: Vec<Dropped>,
    /// The tools each server offers that its `tools` filter leaves out, by
    /// server name (their upstream names).
    pub hidden_tools: BTreeMap<String, Vec<String>>,
}

/// A tool or prompt of one server that the gateway does not serve, because
/// clients could not tell it from another (its exposed name is taken) or
/// could not call it (it has no name). One server's offer never stops the
/// catalog from compiling: the item leaves the lists, the rest is served,
/// and `/servers`, the log and a metric say so.
///
/// Of two servers exposing one name, the one that had it in the running
/// configuration keeps it (so that an upstream renaming a tool onto another's
/// name takes nothing from anyone); when neither had it, the one earlier in
/// the catalog does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    pub server: String,
    pub kind: &'static str,
    /// The exposed name (with its prefix); empty for an unnamed item.
    pub name: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CompileError {
    #[error("server {server:?}: {message}")]
    Server { server: String, message: String },
    #[error("two {type_url} resources are both named {name:?}")]
    DuplicateResource { type_url: String, name: String },
    #[error("gateway.tls is set but its files were not read")]
    NoTlsMaterial,
}

pub fn compile(inputs: &Inputs<'_>) -> Result<Compiled, CompileError> {
    let catalog = inputs.catalog;
    let g = &catalog.gateway;
    let mut servers = Vec::with_capacity(catalog.servers.len());
    let mut clusters = Vec::with_capacity(catalog.servers.len() + 1);
    let mut tools = Names::new("tool", inputs.previous.map(|p| (p, p.tools.as_slice())));
    let router = g.tool_router.enabled.then_some(&g.tool_router);
    if let Some(r) = router {
        // The names of the gateway's own tools are kept wherever they are offered.
        let widest = catalog.endpoints.iter().filter_map(|e| e.in_mcp).fold(r.in_mcp, |a, b| match (a, b) {
            (InMcp::Only, _) | (_, InMcp::Only) => InMcp::Only,
            (InMcp::Alongside, _) | (_, InMcp::Alongside) => InMcp::Alongside,
            _ => InMcp::Off,
        });
        tools = tools.indexed(widest);
    }
    // Held tools keep their names (with their server's prefix).
    tools.held = catalog
        .servers
        .iter()
        .flat_map(|s| {
            let prefix = if s.prefix { format!("{}{}", s.name, g.tool_separator) } else { String::new() };
            inputs.held.get(&s.name).into_iter().flatten().map(move |(tool, _)| (format!("{prefix}{tool}"), s.name.clone()))
        })
        .collect();
    let mut prompts = Names::new("prompt", inputs.previous.map(|p| (p, p.prompts.as_slice())));
    let mut hidden_tools: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut held_tools: Vec<HeldTool> = Vec::new();
    let (mut resources, mut resource_templates) = (Vec::new(), Vec::new());
    let none = Discovered::default();
    let mut offered: Vec<&Discovered> = Vec::new();
    for s in &catalog.servers {
        let bridge_base = format!("http://{}:{}", inputs.admin.0, inputs.admin.1);
        let ep = s.reach_endpoint(&bridge_base).map_err(|message| CompileError::Server { server: s.name.clone(), message })?;
        let cluster = cluster_name(&s.name);
        // A server the control plane stands in front of is reached over
        // plain HTTP on the control plane's address: its TLS is the
        // control plane's business.
        let own_tls = inputs.upstream_tls.get(&s.name).filter(|_| !s.piped()).map(|t| (s.name.as_str(), t));
        let mut upstream = upstream_cluster(&cluster, &ep, &g.upstream_ca_file, own_tls);
        if !s.piped() {
            limit_connections(
                &mut upstream,
                s.max_connections.unwrap_or(g.max_connections_per_server),
                s.idle_timeout_seconds.unwrap_or(g.idle_timeout_seconds),
                if gateway_token(s) { credentials::upstream_filters(&s.name) } else { Vec::new() },
            );
        }
        clusters.push(upstream);
        let index = servers.len();
        let found = inputs.discovered.offer(&s.name).unwrap_or(&none);
        let logging = found.capabilities.get("logging").is_some_and(|c| !c.is_null());
        servers.push(UpstreamServer {
            name: s.name.clone(),
            cluster,
            authority: ep.authority(),
            path: ep.path.clone(),
            timeout_ms: s.request_timeout_seconds.map(|t| t.saturating_mul(1000)),
            logging,
            // A server not discovered yet is assumed stateful: it then gets
            // an initialize per client session, which suits either kind.
            stateful: inputs.discovered.offer(&s.name).is_none_or(|d| d.stateful),
            // Sent as a header: an upstream's odd answer must not break it.
            protocol_version: found
                .protocol_version
                .clone()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')),
            era: ServerEra::of(found.stateless_era, found.modern_only),
            // A server the control plane runs or connects to gets its
            // credentials from the control plane, not from Envoy.
            headers: if s.piped() {
                vec![internal(inputs.internal_token)]
            } else {
                s.headers.0.iter().map(|(k, v)| UpstreamHeader { name: k.to_ascii_lowercase(), value: v.clone() }).collect()
            },
            forward_authorization: s.forward_authorization && !s.piped(),
            token_exchange: s.oauth.as_ref().is_some_and(|o| o.grant == Grant::TokenExchange),
            credential_error: gateway_token(s).then_some(()).and_then(|_| match inputs.credentials.get(&s.name) {
                Some(Credential::Token(_)) => None,
                Some(Credential::Unavailable(why)) => Some(why.clone()),
                None => Some("the gateway has not got a token for it yet".into()),
            }),
        });
        let prefix = s.prefix.then(|| format!("{}{}", s.name, g.tool_separator));
        let (served, hidden, held) = sort_tools(s, &found.tools, inputs.held.get(&s.name));
        if !hidden.is_empty() {
            hidden_tools.insert(s.name.clone(), hidden);
        }
        held_tools.extend(held.into_iter().map(|(upstream_name, change)| HeldTool {
            name: format!("{}{upstream_name}", prefix.as_deref().unwrap_or_default()),
            server: index,
            upstream_name,
            change,
        }));
        tools.add(index, &s.name, prefix.as_deref(), served);
        prompts.add(index, &s.name, prefix.as_deref(), &found.prompts);
        resources.extend(found.resources.iter().map(|d| ServedItem { server: index, definition: d.clone() }));
        resource_templates.extend(found.resource_templates.iter().map(|d| ServedItem { server: index, definition: d.clone() }));
        if inputs.discovered.offer(&s.name).is_some() {
            offered.push(found);
        }
    }
    clusters.extend(admin_clusters(inputs.admin.0, inputs.admin.1, g.streams.max_open));
    let mut dropped: Vec<Dropped> = tools.dropped.drain(..).chain(prompts.dropped.drain(..)).collect();
    let endpoints = endpoints::virtual_servers(catalog, &tools.routes, &prompts.routes, &mut dropped);
    let instructions = merged_instructions(
        g.instructions.as_deref(),
        catalog.servers.iter().filter_map(|s| {
            let text = inputs.discovered.offer(&s.name)?.instructions.as_deref()?;
            let heading = if s.prefix {
                format!("## Server {} (its tools and prompts are named {}{}<name>)", s.name, s.name, g.tool_separator)
            } else {
                format!("## Server {}", s.name)
            };
            Some((heading, text))
        }),
    );

    let mut filter_config = FilterConfig {
        version: String::new(),
        mcp_path: g.mcp_path.clone(),
        max_body_bytes: g.max_body_bytes,
        max_upstream_event_bytes: g.max_upstream_event_bytes,
        server_info: ServerInfo { name: g.server_name.clone(), version: inputs.gateway_version.to_string() },
        instructions,
        servers,
        tools: tools.routes,
        prompts: prompts.routes,
        resources,
        resource_templates,
        capabilities: merged_capabilities(&offered),
        // Every server is reachable in 2026-07-28: as it is when it speaks
        // it statelessly, through the control plane's era bridge otherwise.
        stateless_era: true,
        session: inputs.session.clone(),
        control_plane: Some(ControlPlane {
            cluster: ADMIN_CLUSTER.into(),
            authority: format!("{}:{}", inputs.admin.0, inputs.admin.1),
            events_path: EVENTS_PATH.into(),
            streams_cluster: Some(STREAMS_CLUSTER.into()),
            headers: vec![internal(inputs.internal_token)],
        }),
        // initialize waits for every upstream: one that does not answer must
        // not hold the client for the full request timeout.
        upstream_timeout_ms: g.request_timeout_seconds.min(INIT_TIMEOUT_SECONDS).saturating_mul(1000),
        list_page_size: g.list_page_size,
        // The filter gets digests, never keys.
        auth: g.auth.as_ref().map(|a| AuthConfig {
            api_keys: a
                .api_keys
                .iter()
                .map(|k| ApiKey {
                    sha256: Sha256::digest(k.key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
                    principal: k.principal.clone(),
                    groups: k.groups.clone(),
                })
                .collect(),
            jwt: a.jwt.as_ref().map(|j| JwtClaims {
                principal_claim: j.principal_claim.clone(),
                groups_claim: j.groups_claim.clone(),
                required_scopes: j.required_scopes.clone(),
            }),
            protected_resource: a.protected_resource.clone(),
            client_certificates: a.client_certificates,
            admin_groups: a.admin_groups.clone(),
        }),
        authorization: g
            .authorization
            .as_ref()
            .map(|a| AuthorizationConfig { default_allow: a.default == DefaultDecision::Allow, rules: a.rules.clone() }),
        rate_limits: rate_limits(g),
        allowed_origins: g.allowed_origins.clone(),
        loopback_only: listens_on_loopback_only(g),
        audit: audited(g),
        trace: g.tracing.is_some(),
        // The MCP record is written only for an access log that reads it.
        access_log: g.access_log != "off",
        router: router.map(|r| ToolRouter {
            path: r.path.clone(),
            in_mcp: r.in_mcp,
            default_limit: r.default_limit,
            max_limit: r.max_limit,
            index: tools.index.take().unwrap_or_default().finish(),
        }),
        held_tools,
        endpoints,
    };
    // The version names the content, so an unchanged catalog publishes the
    // same version and Envoy is not disturbed.
    let mut hash = Sha256::new();
    let unversioned = serde_json::to_string(&filter_config).unwrap_or_default();
    hash.update(unversioned.as_bytes());
    hash.update(serde_json::to_vec(catalog).unwrap_or_default());
    hash.update(inputs.module_sha256.as_bytes());
    // A rotated certificate is a new version, pushed over SDS.
    if let Some(t) = &inputs.tls {
        for part in [t.cert, t.key, t.client_ca.unwrap_or_default()] {
            hash.update(Sha256::digest(part.as_bytes()));
        }
    }
    for (server, files) in inputs.upstream_tls {
        hash.update(Sha256::digest(server.as_bytes()));
        hash.update(files.digest().as_bytes());
    }
    let config_version: String = hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    // A refreshed token is a new version of the snapshot, pushed over SDS;
    // the filter's configuration stays byte for byte what it was, so that
    // Envoy keeps its filter (and the workers their caches).
    let tokens: Vec<(&String, &String)> = inputs
        .credentials
        .iter()
        .filter_map(|(server, c)| match c {
            Credential::Token(token) => Some((server, token)),
            Credential::Unavailable(_) => None,
        })
        .collect();
    let version = if tokens.is_empty() {
        config_version.clone()
    } else {
        let mut hash = Sha256::new();
        hash.update(config_version.as_bytes());
        for (server, token) in tokens {
            hash.update(Sha256::digest(server.as_bytes()));
            hash.update(Sha256::digest(token.as_bytes()));
        }
        hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    };
    filter_config.version = config_version.clone();
    // Serialising a large configuration costs tens of milliseconds at a
    // thousand servers: the versioned text is the unversioned one with the
    // version put in.
    let json = with_version(&unversioned, &config_version).unwrap_or_else(|| serde_json::to_string(&filter_config).unwrap_or_default());
    let filter = if g.filter == crate::catalog::FILTER_NATIVE {
        filter::native_filter_extension(json)
    } else {
        filter::filter_extension(json, inputs.admin, inputs.module_sha256)
    };
    let jwks_endpoint = match g.auth.as_ref().and_then(|a| a.jwt.as_ref()).and_then(|j| j.jwks_uri.as_deref()) {
        Some(uri) => Some(
            crate::catalog::parse_endpoint(uri)
                .map_err(|message| CompileError::Server { server: "gateway.auth.jwt.jwks_uri".into(), message })?,
        ),
        None => None,
    };
    if let Some(ep) = &jwks_endpoint {
        clusters.push(security::jwks_cluster(ep, &g.upstream_ca_file));
    }
    if g.tls.is_some() && inputs.tls.is_none() {
        return Err(CompileError::NoTlsMaterial);
    }
    let traced = match &g.tracing {
        Some(t) => {
            let ep = crate::catalog::parse_endpoint(&t.otlp_endpoint)
                .map_err(|message| CompileError::Server { server: "gateway.tracing.otlp_endpoint".into(), message })?;
            clusters.push(tracing::collector_cluster(&ep, &g.upstream_ca_file));
            Some(tracing::config(t, &ep))
        }
        None => None,
    };
    let listeners = listeners(g, inputs.jwks, inputs.tls.is_some(), traced);
    let mut routes = route_table(g.request_timeout_seconds);
    if let Some(upstream) = routes.virtual_hosts.first_mut().and_then(|v| v.routes.first_mut()) {
        rls::add_route_limits(upstream, global_limits(g));
    }

    let mut resources = BTreeMap::new();
    resources.insert(CLUSTER_TYPE.to_string(), clusters.into_iter().map(|c| (c.name.clone(), pack_any(c))).collect());
    resources.insert(EXTENSION_CONFIG_TYPE.to_string(), vec![(FILTER_NAME.to_string(), pack_any(filter))]);
    resources.insert(LISTENER_TYPE.to_string(), listeners.into_iter().map(|l| (l.name.clone(), pack_any(l))).collect());
    let mut secrets = match (&inputs.tls, &g.tls) {
        (Some(material), Some(settings)) => tls::secrets(material, settings),
        _ => Vec::new(),
    };
    for s in catalog.servers.iter().filter(|s| !s.piped()) {
        if let Some(files) = inputs.upstream_tls.get(&s.name) {
            secrets.extend(tls::upstream_secrets(&s.name, files));
        }
        if gateway_token(s) {
            let none = Credential::Unavailable(String::new());
            secrets.push(credentials::secret_of(&s.name, inputs.credentials.get(&s.name).unwrap_or(&none)));
        }
    }
    if !secrets.is_empty() {
        resources.insert(SECRET_TYPE.to_string(), secrets);
    }
    resources.insert(ROUTE_TYPE.to_string(), vec![(ROUTE_NAME.to_string(), pack_any(routes))]);
    let snapshot = Snapshot { version, resources };
    consistent(&snapshot)?;
    Ok(Compiled { snapshot, filter_config, dropped, hidden_tools })
}

/// Whether Envoy adds the gateway's own token to every request to the
/// server (`oauth` with the client credentials grant); a server that takes
/// each caller's own gets it from the filter instead.
fn gateway_token(s: &Server) -> bool {
    s.oauth.as_ref().is_some_and(|o| o.grant == Grant::ClientCredentials)
}

/// What Envoy would reject whole must never be published: resource names
/// are unique within each type.
fn consistent(snapshot: &Snapshot) -> Result<(), CompileError> {
    for (type_url, items) in &snapshot.resources {
        let mut seen = std::collections::BTreeSet::new();
        for (name, _) in items {
            if !seen.insert(name) {
                return Err(CompileError::DuplicateResource { type_url: type_url.clone(), name: name.clone() });
            }
        }
    }
    Ok(())
}

/// What the gateway announces: tools always; prompts, resources, logging and
/// completions when a server behind it offers them. `listChanged` is
/// true: the gateway itself notifies clients holding a GET stream when what
/// they can list changes.
fn merged_capabilities(servers: &[&Discovered]) -> Value {
    let has = |what: &str| servers.iter().any(|d| d.capabilities.get(what).is_some_and(|c| !c.is_null()));
    let mut caps = serde_json::Map::new();
    caps.insert("tools".into(), serde_json::json!({ "listChanged": true }));
    if has("prompts") {
        caps.insert("prompts".into(), serde_json::json!({ "listChanged": true }));
    }
    if has("resources") {
        // Updates come on the upstreams' own GET streams within the client's
        // session, which the control plane relays (see streams.rs): only a
        // server with sessions can deliver them.
        let subscribe = servers.iter().any(|d| d.stateful && d.capabilities.pointer("/resources/subscribe") == Some(&Value::Bool(true)));
        caps.insert("resources".into(), serde_json::json!({ "subscribe": subscribe, "listChanged": true }));
    }
    if has("logging") {
        caps.insert("logging".into(), serde_json::json!({}));
    }
    if has("completions") {
        caps.insert("completions".into(), serde_json::json!({}));
    }
    Value::Object(caps)
}

/// The gateway's own instructions, then each server's under its name.
fn merged_instructions<'a>(own: Option<&str>, servers: impl Iterator<Item = (String, &'a str)>) -> Option<String> {
    let parts: Vec<String> =
        own.map(str::to_string).into_iter().chain(servers.map(|(heading, text)| format!("{heading}\n{text}"))).collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

pub(crate) fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

/// A filter configuration's JSON serialised with an empty `version` (its
/// first field), with `version` put in; `None` if it does not start so.
fn with_version(unversioned: &str, version: &str) -> Option<String> {
    let rest = unversioned.strip_prefix(r#"{"version":"""#)?;
    Some(format!(r#"{{"version":{}{rest}"#, serde_json::Value::from(version)))
}

fn internal(token: &str) -> UpstreamHeader {
    UpstreamHeader { name: INTERNAL_HEADER.into(), value: token.to_string() }
}

/// The limits the filter enforces: the seeds' per-minute default first.
fn rate_limits(g: &GatewaySettings) -> Vec<RateLimit> {
    let default = g.rate_limit_per_minute.map(|n| RateLimit {
        name: DEFAULT_LIMIT.into(),
        per: vec![LimitKey::Principal],
        principals: Vec::new(),
        groups: Vec::new(),
        servers: Vec::new(),
        tools: Vec::new(),
        endpoints: vec![],
        requests_per_minute: n,
        burst: n,
        global: false,
    });
    default.into_iter().chain(g.rate_limits.iter().cloned()).collect()
}

/// Whether decisions are written to the audit log: when there is something
/// to decide, unless turned off.
fn audited(g: &GatewaySettings) -> bool {
    let deciding = g.auth.is_some() || g.authorization.is_some() || g.rate_limit_per_minute.is_some() || !g.rate_limits.is_empty();
    deciding && g.audit_log != "off"
}

/// Whether every listener is on a loopback address (validated addresses).
fn listens_on_loopback_only(g: &GatewaySettings) -> bool {
    let loopback = |a: &str| a.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
    loopback(&g.listen) && g.tls.as_ref().and_then(|t| t.listen.as_deref()).is_none_or(loopback)
}

/// A filter resource as compile makes it, for the ADS server's tests.
#[cfg(test)]
pub(crate) fn filter_for_tests() -> Any {
    pack_any(filter::filter_extension("{}".into(), ("127.0.0.1", 18001), "00"))
}

/// Decodes a published resource back into its type, for tests and the admin API.
pub fn decode<M: Message + Default>(any: &Any) -> Option<M> {
    M::decode(any.value.as_slice()).ok()
}

mod access_log;
mod clusters;
mod credentials;
pub use credentials::{token_secret, Credential};
mod endpoints;
mod names;
use names::{sort_tools, Names};
mod filter;
mod listeners;
mod rls;
mod security;
mod tracing;

pub use clusters::cluster_name;
use clusters::{admin_clusters, duration, limit_connections, socket, upstream_cluster};
pub use filter::{module_path, sent_again, MODULE_PATH_PREFIX, SENT_AGAIN_VARIABLE};
use listeners::{global_limits, json_body, listeners, route_table};

/// The response header carrying a global limit's JSON-RPC error.
pub fn rls_error_header() -> &'static str {
    rls::ERROR_HEADER
}
mod tls;

#[cfg(test)]
mod tests;
