//! Validation of a parsed catalog: every problem found, each naming the
//! server and field at fault, so that one edit can fix them all.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use url::Url;

use super::{parse_endpoint, Catalog, JwtSettings, Runtime, Server, Start, UpstreamTlsSettings, DEFAULT_LIMIT};

fn validate_jwt(j: &JwtSettings, p: &mut Vec<String>) {
    let sources = [j.hs256_secret.is_some(), j.jwks_file.is_some(), j.jwks_uri.is_some()].iter().filter(|s| **s).count();
    if sources != 1 {
        p.push("gateway.auth.jwt: set exactly one of hs256_secret, jwks_file, jwks_uri".into());
    }
    if j.issuer.trim().is_empty() {
        p.push("gateway.auth.jwt.issuer: must not be empty".into());
    }
    if j.hs256_secret.as_ref().is_some_and(|k| k.len() < 32) {
        p.push("gateway.auth.jwt.hs256_secret: must be at least 32 characters (256 bits)".into());
    }
    if let Some(uri) = &j.jwks_uri {
        match parse_endpoint(uri) {
            Err(_) => p.push(format!("gateway.auth.jwt.jwks_uri: {uri:?} is not an http(s) URL")),
            // Keys fetched in the clear can be replaced on the way, and then
            // any token verifies: only a server on this machine may skip TLS.
            Ok(ep) if !ep.tls && !is_loopback_host(&ep.host) => p.push(format!(
                "gateway.auth.jwt.jwks_uri: {uri:?} is plain http, so anyone on the path could swap the keys \
                 and forge tokens: use https:// (plain http is accepted only for a loopback host, 127.0.0.1, [::1] or localhost)"
            )),
            Ok(_) => {}
        }
    }
}

/// A host on this machine: `localhost` (and `*.localhost`, RFC 6761) or a
/// loopback address.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn validate_upstream_tls(s: &Server, t: &UpstreamTlsSettings, at: &str, p: &mut Vec<String>) {
    if s.runtime == Runtime::Stdio {
        p.push(format!("{at}: tls is for servers reached at an https:// url (runtime http or sse)"));
    } else if s.endpoint().is_ok_and(|ep| !ep.tls) {
        p.push(format!("{at}: tls applies to https:// urls only, and this url is http://"));
    }
    if t.files().next().is_none() {
        p.push(format!("{at}: tls: name ca_file, or client_cert_file and client_key_file (or leave tls out)"));
    }
    if t.client_cert_file.is_some() != t.client_key_file.is_some() {
        p.push(format!("{at}: tls: set both client_cert_file and client_key_file, or neither"));
    }
    for (field, file) in t.files() {
        if file.trim().is_empty() {
            p.push(format!("{at}: tls.{field} must name a PEM file"));
        }
    }
}

/// Longest timeout accepted: a day. Longer ones are mistakes, and Envoy
/// rejects durations past its own bound.
pub const MAX_TIMEOUT_SECONDS: u64 = 24 * 3600;

/// Every problem in the catalog, each naming the server and field.
pub fn validate(c: &Catalog) -> Vec<String> {
    let mut p = Vec::new();
    let g = &c.gateway;
    if g.listen.parse::<SocketAddr>().is_err() {
        p.push(format!("gateway.listen: {:?} is not an address like 127.0.0.1:4444", g.listen));
    }
    if !g.mcp_path.starts_with('/') {
        p.push(format!("gateway.mcp_path: {:?} must start with /", g.mcp_path));
    }
    let mut reserved = vec![mcp_filter::gateway::METRICS_PATH, mcp_filter::gateway::STATS_PATH, "/.well-known", "/admin"];
    reserved.extend(mcp_filter::gateway::ROUTED_PATHS);
    p.extend(g.tool_router.problems(&g.mcp_path, &reserved));
    p.extend(super::endpoints::problems(&c.endpoints));
    for e in &c.endpoints {
        let path = super::path_of(&g.mcp_path, &e.name);
        let router = &g.tool_router.path;
        if g.tool_router.enabled && (&path == router || router.starts_with(&format!("{path}/"))) {
            p.push(format!("endpoint {:?}: its path {path:?} is the tool router's ({router:?}): rename one of them", e.name));
        }
    }
    if g.tool_separator.is_empty() || !g.tool_separator.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        p.push(format!("gateway.tool_separator: {:?} must be one or more of A-Z a-z 0-9 _ . -", g.tool_separator));
    }
    if g.max_body_bytes == 0 {
        p.push("gateway.max_body_bytes: must be greater than 0".into());
    }
    if g.max_upstream_event_bytes < 1024 {
        p.push("gateway.max_upstream_event_bytes: must be at least 1024".into());
    }
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&g.request_timeout_seconds) {
        p.push(format!("gateway.request_timeout_seconds: must be between 1 and {MAX_TIMEOUT_SECONDS}"));
    }
    if ![super::FILTER_WASM, super::FILTER_NATIVE].contains(&g.filter.as_str()) {
        p.push(format!("gateway.filter: {:?} is not one of wasm, native", g.filter));
    }
    if !["error", "warn", "info", "debug", "trace"].contains(&g.log_level.as_str()) {
        p.push(format!("gateway.log_level: {:?} is not one of error, warn, info, debug, trace", g.log_level));
    }
    if let Some(t) = &g.tracing {
        if let Err(e) = parse_endpoint(&t.otlp_endpoint) {
            p.push(format!("gateway.tracing.otlp_endpoint: {e}"));
        }
        if !(0.0..=100.0).contains(&t.sampling_percent) {
            p.push("gateway.tracing.sampling_percent: must be between 0 and 100".into());
        }
        if t.service_name.is_empty() {
            p.push("gateway.tracing.service_name: must not be empty".into());
        }
    }
    if g.pin_file.as_deref().is_some_and(|f| f.trim().is_empty()) {
        p.push("gateway.pin_file: must name a file (or be left out for <catalog>.pins.json beside the catalog)".into());
    }
    if g.max_connections_per_server == 0 {
        p.push("gateway.max_connections_per_server: must be at least 1".into());
    }
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&g.idle_timeout_seconds) {
        p.push(format!("gateway.idle_timeout_seconds: must be between 1 and {MAX_TIMEOUT_SECONDS}"));
    }
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&g.request_read_timeout_seconds) {
        p.push(format!("gateway.request_read_timeout_seconds: must be between 1 and {MAX_TIMEOUT_SECONDS}"));
    }
    if g.list_page_size == Some(0) {
        p.push("gateway.list_page_size: must be greater than 0 (or left out for one page)".into());
    }
    if g.session_ttl_seconds == 0 {
        p.push("gateway.session_ttl_seconds: must be greater than 0".into());
    }
    if !(1024..=65536).contains(&g.session_id_max_bytes) {
        p.push(format!("gateway.session_id_max_bytes: {} is out of range; give 1024 to 65536 (4096 by default)", g.session_id_max_bytes));
    }
    if let Some(k) = &g.session_key {
        if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
            p.push("gateway.session_key: must be 64 hex characters (32 bytes), e.g. from `openssl rand -hex 32`".into());
        }
    }
    if let Some(auth) = &g.auth {
        if auth.api_keys.is_empty() && auth.jwt.is_none() && !auth.client_certificates {
            p.push(
                "gateway.auth: list api_keys, configure jwt or client_certificates (or leave gateway.auth out to turn authentication off)"
                    .into(),
            );
        }
        if auth.client_certificates && g.tls.as_ref().is_none_or(|t| t.client_ca_file.is_none()) {
            p.push("gateway.auth.client_certificates: needs gateway.tls.client_ca_file to verify them against".into());
        }
        if let Some(j) = &auth.jwt {
            validate_jwt(j, &mut p);
        }
        if let Some(pr) = &auth.protected_resource {
            if Url::parse(&pr.resource).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                p.push(format!(
                    "gateway.auth.protected_resource.resource: {:?} must be the http(s) URL clients use for the MCP endpoint",
                    pr.resource
                ));
            }
            if pr.authorization_servers.is_empty() {
                p.push("gateway.auth.protected_resource.authorization_servers: name at least one issuer URL".into());
            }
        }
        let mut seen = BTreeSet::new();
        for (i, k) in auth.api_keys.iter().enumerate() {
            if k.key.chars().count() < 16 {
                p.push(format!("gateway.auth.api_keys[{i}] ({}): key must be at least 16 characters", k.principal));
            }
            if !seen.insert(k.key.as_str()) {
                p.push(format!("gateway.auth.api_keys[{i}] ({}): key is used by another entry", k.principal));
            }
            if k.principal.trim().is_empty() {
                p.push(format!("gateway.auth.api_keys[{i}]: principal must not be empty"));
            }
        }
    }
    if let Some(a) = &g.authorization {
        let mut seen = BTreeSet::new();
        for (i, r) in a.rules.iter().enumerate() {
            let at = format!("gateway.authorization.rules[{i}]");
            if r.name.trim().is_empty() {
                p.push(format!("{at}: name must not be empty (the audit log names the rule)"));
            } else if !seen.insert(r.name.as_str()) {
                p.push(format!("{at} ({}): name is used by another rule", r.name));
            }
            // A literal server name that is not in the catalog is a typo.
            for server in r.allow.servers.iter().chain(&r.deny.servers) {
                if !server.contains(['*', '?']) && !c.servers.iter().any(|s| &s.name == server) {
                    p.push(format!("{at} ({}): server {server:?} is not in the catalog", r.name));
                }
            }
        }
    }
    if let Some(t) = &g.tls {
        if let Some(listen) = &t.listen {
            if listen.parse::<SocketAddr>().is_err() {
                p.push(format!("gateway.tls.listen: {listen:?} is not an address like 127.0.0.1:4443"));
            } else if listen == &g.listen {
                p.push("gateway.tls.listen: must differ from gateway.listen (leave it out to serve TLS on gateway.listen)".into());
            }
        }
        if t.cert_file.trim().is_empty() || t.key_file.trim().is_empty() {
            p.push("gateway.tls: cert_file and key_file must name PEM files".into());
        }
        if t.require_client_certificate && t.client_ca_file.is_none() {
            p.push("gateway.tls.require_client_certificate: needs client_ca_file".into());
        }
    }
    if g.rate_limit_per_minute == Some(0) {
        p.push("gateway.rate_limit_per_minute: must be greater than 0 (or left out)".into());
    }
    let mut limit_names = BTreeSet::new();
    for (i, l) in g.rate_limits.iter().enumerate() {
        let at = format!("gateway.rate_limits[{i}] ({})", l.name);
        let valid = !l.name.is_empty() && l.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid || l.name == DEFAULT_LIMIT {
            p.push(format!("gateway.rate_limits[{i}]: name must be a-z 0-9 - _ (it names a header), and not {DEFAULT_LIMIT:?} (rate_limit_per_minute's)"));
        } else if !limit_names.insert(l.name.as_str()) {
            p.push(format!("{at}: name is used by another limit"));
        }
        if l.global && g.global_rate_limits.is_none() {
            p.push(format!("{at}: global: true needs gateway.global_rate_limits (its Redis)"));
        }
        if l.requests_per_minute == 0 || l.burst == 0 {
            p.push(format!("{at}: requests_per_minute and burst must be greater than 0"));
        }
        // A literal endpoint name that is not in the catalog is a typo.
        for e in l.endpoints.iter().filter(|e| !e.contains(['*', '?'])) {
            if !c.endpoints.iter().any(|x| &x.name == e) {
                p.push(format!("{at}: endpoint {e:?} is not in the catalog's endpoints"));
            }
        }
    }
    if let Some(gl) = &g.global_rate_limits {
        if Url::parse(&gl.redis_url).map_or(true, |u| !matches!(u.scheme(), "redis" | "rediss")) {
            p.push("gateway.global_rate_limits.redis_url: must be a redis:// URL".into());
        }
        if !(1..=60_000).contains(&gl.timeout_ms) {
            p.push("gateway.global_rate_limits.timeout_ms: must be between 1 and 60000".into());
        }
    }
    for o in &g.allowed_origins {
        let valid = o == "*" || Url::parse(o).is_ok_and(|u| u.path() == "/" && !o.ends_with('/') && u.query().is_none());
        if !valid {
            p.push(format!(
                "gateway.allowed_origins: {o:?} must be an origin like https://app.example (scheme, host, optional port), or *"
            ));
        }
    }
    let mut names = BTreeSet::new();
    for (i, s) in c.servers.iter().enumerate() {
        let at = if s.name.is_empty() { format!("servers[{i}]") } else { format!("server {:?}", s.name) };
        let valid_name = !s.name.is_empty()
            && s.name.len() <= 64
            && s.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && s.name.as_bytes().first().is_some_and(|b| b.is_ascii_alphanumeric());
        if !valid_name {
            p.push(format!("{at}: name must be 1-64 of a-z 0-9 - _, starting with a letter or digit"));
        }
        if !names.insert(s.name.as_str()) {
            p.push(format!("{at}: name is used by another server"));
        }
        match s.runtime {
            Runtime::Http | Runtime::Sse => {
                if let Err(e) = s.endpoint() {
                    // Shown without its query, which may hold a token.
                    let shown = s.url.split('?').next().unwrap_or_default();
                    p.push(format!("{at}: url {shown:?} {e}"));
                }
                if s.command.is_some() || !s.args.is_empty() || !s.env.is_empty() || s.cwd.is_some() {
                    p.push(format!("{at}: command, args, env and cwd are for runtime: stdio"));
                }
            }
            Runtime::Stdio => {
                if s.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
                    p.push(format!("{at}: runtime stdio needs a command"));
                }
                if !s.url.is_empty() {
                    p.push(format!("{at}: runtime stdio takes a command, not a url"));
                }
                for key in s.env.keys() {
                    let valid = key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !valid {
                        p.push(format!("{at}: env {key:?} is not a variable name (letters, digits, _)"));
                    }
                }
            }
        }
        if s.runtime == Runtime::Stdio && (!s.headers.is_empty() || s.forward_authorization) {
            p.push(format!("{at}: headers and forward_authorization are for runtime http or sse"));
        }
        if let Some(o) = &s.oauth {
            if s.runtime != Runtime::Http {
                p.push(format!("{at}: oauth is for runtime http (the gateway's tokens go with Envoy's requests to its url)"));
            }
            if s.forward_authorization {
                p.push(format!("{at}: oauth and forward_authorization both set the upstream's Authorization header; keep one"));
            }
            if s.headers.0.keys().any(|k| k.eq_ignore_ascii_case("authorization")) {
                p.push(format!("{at}: oauth and headers.Authorization both set the upstream's Authorization header; keep one"));
            }
            p.extend(o.problems(&at));
            if o.grant == super::Grant::TokenExchange && g.auth.as_ref().and_then(|a| a.jwt.as_ref()).is_none() {
                p.push(format!("{at}: oauth.grant token_exchange needs gateway.auth.jwt: the callers' JWTs are what is exchanged"));
            }
        }
        if let Some(t) = &s.tls {
            validate_upstream_tls(s, t, &at, &mut p);
        }
        if s.tools.include.as_ref().is_some_and(Vec::is_empty) {
            p.push(format!("{at}: tools.include: [] would serve none of its tools; leave include out to serve all"));
        }
        for pattern in s.tools.include.iter().flatten().chain(&s.tools.exclude) {
            if pattern.is_empty() || pattern.chars().any(char::is_control) {
                p.push(format!("{at}: tools: {pattern:?} is not a pattern (a tool name, with * and ? as wildcards)"));
            }
        }
        for name in s.headers.0.keys() {
            let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let reserved = [
                "host",
                "content-length",
                "content-type",
                "accept",
                "mcp-session-id",
                "mcp-protocol-version",
                "transfer-encoding",
                "connection",
            ];
            if !token || reserved.contains(&name.to_ascii_lowercase().as_str()) || name.starts_with(':') {
                p.push(format!("{at}: headers: {name:?} is not a header the gateway may set"));
            }
            // Shown by name only: the value is usually a secret.
            if s.headers.0.get(name).is_some_and(|v| v.chars().any(|c| c.is_control() && c != '\t')) {
                p.push(format!("{at}: headers: the value of {name:?} holds a control character (a newline?)"));
            }
        }
        if s.runtime == Runtime::Http && s.start == Start::OnDemand {
            p.push(format!("{at}: start: on-demand is for runtime stdio or sse"));
        }
        if s.idle_timeout_seconds.is_some_and(|t| !(1..=MAX_TIMEOUT_SECONDS).contains(&t)) {
            p.push(format!("{at}: idle_timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}"));
        }
        if let Some(t) = s.request_timeout_seconds {
            if !(1..=MAX_TIMEOUT_SECONDS).contains(&t) {
                p.push(format!("{at}: request_timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}"));
            }
        }
        match (s.max_connections, s.runtime) {
            (Some(0), _) => p.push(format!("{at}: max_connections must be at least 1")),
            (Some(_), Runtime::Stdio | Runtime::Sse) => p.push(format!(
                "{at}: max_connections applies to http servers (the control plane holds one connection to a stdio or sse server)"
            )),
            _ => {}
        }
        if !(1..=MAX_TIMEOUT_SECONDS).contains(&s.discovery_timeout_seconds) {
            p.push(format!("{at}: discovery_timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}"));
        }
    }
    p
}
