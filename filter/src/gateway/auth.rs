//! Who may call, and what they may use: the `Host` and `Origin` checks
//! against DNS rebinding, the caller named by an API key (by its digest),
//! the JWT payload Envoy verified or a client certificate, the challenge
//! (RFC 9728) that tells an OAuth client where to get a token, and the
//! authorization rulings on a caller's use of a server's tool, prompt or
//! resource.
//!
//! It never routes, never reads a body and never forwards; a denied name is
//! the dispatcher's to refuse as an unknown one. Everything it knows comes
//! from the configuration and the request's headers.

use std::collections::HashMap;

use crate::config::{FilterConfig, JwtClaims};
use crate::decision::{AuthFailure, Cause, ConfigError, Refusal, Reply, RequestHead};
use crate::error::McpError;
use crate::headers::bounded;
use crate::jsonrpc;
use crate::origin::{authority_host, is_loopback_name, same_origin};
use crate::policy::{Applicable, Caller, Kind, Ruling};

/// The API keys of a configuration, by the SHA-256 of each: its index in
/// the configuration. `None` when authentication is off.
pub struct ApiKeys(Option<HashMap<[u8; 32], usize>>);

impl ApiKeys {
    pub fn new(config: &FilterConfig) -> Result<ApiKeys, ConfigError> {
        let Some(auth) = &config.auth else { return Ok(ApiKeys(None)) };
        let mut table = HashMap::with_capacity(auth.api_keys.len());
        for (i, key) in auth.api_keys.iter().enumerate() {
            table.insert(parse_sha256(&key.sha256).ok_or(ConfigError::BadKeyHash(i))?, i);
        }
        Ok(ApiKeys(Some(table)))
    }

    /// Who the client is: by its API key, else by the JWT Envoy verified,
    /// else by its client certificate; `Ok(None)` when authentication is
    /// off. An API key is looked up by its SHA-256: the lookup's timing can
    /// only tell an attacker about digests, never about keys.
    pub fn authenticate(&self, config: &FilterConfig, head: &RequestHead) -> Result<Option<Caller>, McpError> {
        let (Some(table), Some(auth)) = (&self.0, &config.auth) else { return Ok(None) };
        if let (true, None, Some(peer)) = (auth.client_certificates, head.credential.as_deref(), head.peer_certificate.as_deref()) {
            return Ok(Some(Caller { principal: peer.to_string(), groups: Vec::new(), scopes: Vec::new() }));
        }
        let presented = head.credential.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| {
            let how = if auth.jwt.is_some() { "a bearer token" } else { "an API key" };
            McpError::Unauthorized(format!("send {how} as Authorization: Bearer <token> (or an API key as X-API-Key: <key>)"))
        })?;
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        if let Some(index) = table.get(&digest) {
            let key = auth.api_keys.get(*index).ok_or_else(|| McpError::Internal("api key table out of step".into()))?;
            return Ok(Some(Caller { principal: key.principal.clone(), groups: key.groups.clone(), scopes: Vec::new() }));
        }
        // Envoy verifies the token after the scheme word of `Authorization`,
        // whatever that word (so that `bearer` counts as `Bearer`): its payload
        // names the caller only if it is the bearer token presented.
        let verified = head.jwt_payload.as_deref().filter(|payload| is_payload_of(presented, payload));
        if let (Some(claims), Some(payload)) = (&auth.jwt, verified) {
            let caller = caller_from_jwt(claims, payload)?;
            if !claims.required_scopes.iter().all(|s| caller.scopes.contains(s)) {
                return Err(McpError::InsufficientScope(claims.required_scopes.join(" ")));
            }
            return Ok(Some(caller));
        }
        Err(McpError::Unauthorized(match (&auth.jwt, head.jwt_failure.as_deref()) {
            (Some(_), Some(why)) => format!("the bearer token was refused: {}", bounded(why)),
            (Some(_), None) => "the bearer token is neither a valid JWT nor a known API key".into(),
            (None, _) => "the API key is not valid".into(),
        }))
    }
}

/// Whether the caller may read the operator's pages: one of its groups is
/// in `gateway.auth.admin_groups`.
pub fn is_admin(config: &FilterConfig, caller: &Caller) -> bool {
    config.auth.as_ref().is_some_and(|a| caller.groups.iter().any(|g| a.admin_groups.contains(g)))
}

/// A gateway that listens on loopback only is for this machine's clients,
/// which name it `localhost` or by a loopback address. A request naming
/// another host came through a name that resolves to loopback without being
/// it: a web page that rebound its DNS name to the gateway's address, using
/// the browser as its proxy (DNS rebinding).
pub fn check_host(config: &FilterConfig, head: &RequestHead) -> Result<(), McpError> {
    let Some(host) = head.host.as_deref().filter(|h| !h.is_empty()) else { return Ok(()) };
    if !config.loopback_only || is_loopback_name(authority_host(host)) {
        return Ok(());
    }
    Err(McpError::MisdirectedHost(bounded(host)))
}

/// Browsers send `Origin`; the gateway's own origin (the one the request
/// names as its host) and the listed ones may call. This is what keeps a
/// web page from calling tools with the browser as its proxy.
pub fn check_origin(config: &FilterConfig, head: &RequestHead) -> Result<(), McpError> {
    let Some(origin) = head.origin.as_deref() else { return Ok(()) };
    let allowed = &config.allowed_origins;
    if allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(origin.trim_end_matches('/'))) {
        return Ok(());
    }
    if head.host.as_deref().is_some_and(|host| same_origin(origin, host)) {
        return Ok(());
    }
    Err(McpError::Forbidden(format!(
        "Origin {:?} is not allowed to call this endpoint; an operator can list it in gateway.allowed_origins",
        bounded(origin)
    )))
}

/// The RFC 9728 metadata document, at its well-known path (and at that
/// path followed by the MCP endpoint's, as the RFC derives it from the
/// resource URL).
pub fn resource_metadata(config: &FilterConfig, method: &str, path: &str) -> Option<Reply> {
    const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";
    let pr = config.auth.as_ref()?.protected_resource.as_ref()?;
    let rest = path.strip_prefix(WELL_KNOWN)?;
    if !(rest.is_empty() || rest == config.mcp_path || config.endpoints.iter().any(|e| e.path == rest)) {
        return None;
    }
    if method != "GET" && method != "HEAD" {
        let mut r = Reply::error(None, &McpError::MethodNotAllowed(method.to_string()));
        if let Some(allow) = r.headers.iter_mut().find(|(k, _)| *k == "allow") {
            allow.1 = "GET, HEAD".into();
        }
        return Some(r);
    }
    let mut doc = serde_json::json!({
        "resource": pr.resource,
        "authorization_servers": pr.authorization_servers,
        "bearer_methods_supported": ["header"],
    });
    if let (false, Some(obj)) = (pr.scopes_supported.is_empty(), doc.as_object_mut()) {
        obj.insert("scopes_supported".into(), pr.scopes_supported.clone().into());
    }
    Some(Reply::json(200, doc.to_string().into_bytes()))
}

/// Where the metadata document is, for `WWW-Authenticate`.
fn resource_metadata_url(config: &FilterConfig) -> Option<String> {
    let pr = config.auth.as_ref()?.protected_resource.as_ref()?;
    // `https://host/mcp` -> `https://host/.well-known/oauth-protected-resource/mcp`.
    let (scheme, rest) = pr.resource.split_once("://")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Some(format!("{scheme}://{host}/.well-known/oauth-protected-resource{path}"))
}

/// A refusal, with the challenge an OAuth client needs to find a token.
pub fn refusal(config: &FilterConfig, id: Option<&str>, e: &McpError) -> Reply {
    let mut reply = Reply::error(id, e);
    let challenge = match e {
        McpError::Unauthorized(_) => r#"Bearer realm="mcp-gateway""#.to_string(),
        McpError::InsufficientScope(scope) => {
            format!(r#"Bearer realm="mcp-gateway", error="insufficient_scope", scope={}"#, jsonrpc::json_string(scope))
        }
        _ => return reply,
    };
    let challenge = match resource_metadata_url(config) {
        Some(url) => format!("{challenge}, resource_metadata={}", jsonrpc::json_string(&url)),
        None => challenge,
    };
    reply.headers.push(("www-authenticate", challenge));
    reply
}

/// A request refused by [`check_origin`] or authentication: the answer
/// (with its challenge), and why, for the audit log and the metrics. A
/// caller that presented no credential is `missing` one; one that did, an
/// `invalid` one.
pub fn refused(config: &FilterConfig, head: &RequestHead, e: &McpError) -> Refusal {
    let cause = match e {
        McpError::Unauthorized(_) if head.credential.is_none() => Cause::Unauthenticated(AuthFailure::Missing),
        McpError::Unauthorized(_) => Cause::Unauthenticated(AuthFailure::Invalid),
        _ => Cause::Forbidden,
    };
    Refusal { reply: refusal(config, None, e), reason: e.to_string(), cause }
}

/// The rules that apply to the caller, or `None` without authorization.
pub fn applicable(config: &FilterConfig, caller: Option<&Caller>) -> Option<Applicable> {
    config.authorization.as_ref().map(|a| a.applicable(caller))
}

/// May the caller use `name` on server `server`? Always, without rules.
pub fn authorize(config: &FilterConfig, caller: Option<&Caller>, kind: Kind, server: usize, name: &str) -> Ruling {
    let (Some(authz), Some(set), Some(s)) = (&config.authorization, applicable(config, caller), config.servers.get(server)) else {
        return Ruling { allowed: true, reason: "no authorization rules".into() };
    };
    authz.decide(&set, kind, &s.name, name)
}

/// The caller a verified JWT payload (base64url JSON, as Envoy forwards it)
/// names. Envoy checked the signature, issuer, audience and expiry; this
/// reads only who it is for.
fn caller_from_jwt(claims: &JwtClaims, payload: &str) -> Result<Caller, McpError> {
    use base64::Engine as _;
    let bad = |why: &str| McpError::Unauthorized(format!("the bearer token's payload {why}"));
    let trimmed = payload.trim().trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed).map_err(|_| bad("is not base64url"))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad("is not JSON"))?;
    let principal = json
        .get(&claims.principal_claim)
        .and_then(serde_json::Value::as_str)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad(&format!("has no {:?} claim naming the caller", claims.principal_claim)))?;
    let names = |v: Option<&serde_json::Value>| -> Vec<String> {
        match v {
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(serde_json::Value::Array(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        }
    };
    let mut scopes = names(json.get("scope"));
    scopes.extend(names(json.get("scp")));
    Ok(Caller { principal: principal.to_string(), groups: names(json.get(&claims.groups_claim)), scopes })
}

/// Whether `payload` (base64url, as Envoy forwards it) is the payload of
/// the compact JWT `token`.
pub(super) fn is_payload_of(token: &str, payload: &str) -> bool {
    let unpadded = |s: &str| s.trim().trim_end_matches('=').to_string();
    token.split('.').nth(1).is_some_and(|p| unpadded(p) == unpadded(payload))
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
