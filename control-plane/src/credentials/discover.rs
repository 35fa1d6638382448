//! Upstream OAuth discovery: from a server's URL to its authorization
//! server's token endpoint, so that the catalog needs only the gateway's
//! registration with that authorization server (client id and secret).
//!
//! The path, as the MCP authorization spec (2025-11-25) lays it out:
//! 1. an `initialize` without credentials, which an OAuth-protected server
//!    answers 401 with a `WWW-Authenticate: Bearer` challenge
//!    ([`bearer_challenge`]) naming its `resource_metadata` (RFC 9728 §5.1);
//!    without one, the well-known URLs of RFC 9728 §3.1
//!    ([`protected_resource_metadata_urls`]);
//! 2. the protected resource metadata, whose `resource` must be the server's
//!    URL ([`check_resource`]) and whose `authorization_servers[0]` is used;
//! 3. that authorization server's metadata (RFC 8414, or OpenID Connect
//!    discovery: [`authorization_server_metadata_urls`]), whose `issuer`
//!    must be the one asked for ([`check_issuer`]), and its `token_endpoint`
//!    ([`check_token_endpoint`]).
//!
//! Every URL followed must be `https://`, or `http://` on loopback: what
//! these answers say decides where the client secret is sent, and a plain
//! HTTP answer from afar can be forged on the way.
//!
//! The decisions are pure functions; [`discover`] is the I/O between them.
//! It never sends a credential, and its errors name URLs without their
//! query or user info (where secrets could hide).

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde::Serialize;
use serde_json::{Map, Value};
use url::Url;

/// The longest each request of discovery is waited for.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest metadata document read; a longer one is refused.
pub const MAX_METADATA: usize = 64 * 1024;
/// The MCP version the `initialize` asks for.
const PROTOCOL_VERSION: &str = "2025-11-25";
const PROTECTED_RESOURCE: &str = "/.well-known/oauth-protected-resource";
const OAUTH_SERVER: &str = "/.well-known/oauth-authorization-server";
const OPENID: &str = "/.well-known/openid-configuration";

/// What discovery found for one server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Discovered {
    /// The protected resource metadata's `resource` (the server's resource
    /// identifier), for the token request's `resource` (RFC 8707).
    pub resource: String,
    /// `authorization_servers[0]` of that metadata: the issuer whose token
    /// endpoint this is.
    pub authorization_server: String,
    /// The rest of `authorization_servers`, in order. They are not
    /// consulted: the first is the server's own choice.
    pub other_authorization_servers: Vec<String>,
    pub token_endpoint: String,
    /// As the authorization server's metadata states them; empty when it
    /// does not (RFC 8414 then implies `authorization_code` and `implicit`
    /// for grants and `client_secret_basic` for authentication, which many
    /// servers do not mean: the caller decides).
    pub grant_types_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// The scopes the server asks for: the challenge's `scope`, else the
    /// protected resource metadata's `scopes_supported` (the MCP spec's
    /// scope selection); empty when it names none.
    pub resource_scopes: Vec<String>,
}

/// What a `Bearer` challenge says (RFC 6750 §3, RFC 9728 §5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    pub resource_metadata: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
}

/// The first `Bearer` challenge of a `WWW-Authenticate` value (several
/// fields are joined with `, `, as RFC 9110 §5.3 allows), or `None` when
/// it has none. The syntax is RFC 9110 §11.6.1: schemes match without case,
/// as do parameter names; values are tokens or quoted strings (with `\`
/// escapes); a challenge may carry a token68 instead; empty list elements
/// are skipped. A malformed value is an error rather than a guess.
pub fn bearer_challenge(header: &str) -> Result<Option<BearerChallenge>, String> {
    let found = challenges(header)?.into_iter().find(|c| c.scheme == "bearer");
    Ok(found.map(|c| {
        let get = |name: &str| c.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        BearerChallenge { resource_metadata: get("resource_metadata"), scope: get("scope"), error: get("error") }
    }))
}

/// One challenge: its scheme and parameters, both names lowercased.
struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

fn challenges(header: &str) -> Result<Vec<Challenge>, String> {
    let mut c = Cursor { s: header.as_bytes(), at: 0 };
    let mut found = Vec::new();
    loop {
        c.skip_separators();
        if c.done() {
            return Ok(found);
        }
        let scheme = c.token().ok_or_else(|| c.expected("an auth scheme"))?;
        let mut challenge = Challenge { scheme: scheme.to_ascii_lowercase(), params: Vec::new() };
        let spaced = c.skip_ows();
        if c.done() || c.peek() == Some(b',') {
            found.push(challenge);
            continue;
        }
        if !spaced {
            return Err(c.expected("a space after the auth scheme"));
        }
        if c.token68() {
            found.push(challenge);
            continue;
        }
        loop {
            let mark = c.at;
            let name = c.token().ok_or_else(|| c.expected("a parameter name"))?.to_ascii_lowercase();
            c.skip_ows();
            if c.peek() != Some(b'=') {
                if challenge.params.is_empty() {
                    return Err(c.expected(&format!("'=' after {name}")));
                }
                // After a comma, a name without '=' starts the next challenge.
                c.at = mark;
                break;
            }
            c.at += 1;
            c.skip_ows();
            let value = match c.peek() {
                Some(b'"') => c.quoted()?,
                _ => c.token().ok_or_else(|| c.expected(&format!("a value for {name}")))?.to_string(),
            };
            // RFC 9110 allows each name once; two values would be a guess.
            if challenge.params.iter().any(|(n, _)| *n == name) {
                return Err(format!("parameter {name} appears twice in one challenge"));
            }
            challenge.params.push((name, value));
            c.skip_ows();
            if c.done() {
                break;
            }
            if c.peek() != Some(b',') {
                return Err(c.expected("',' between parameters"));
            }
            c.skip_separators();
            if c.done() {
                break;
            }
        }
        found.push(challenge);
    }
}

/// A reader of a header value, byte by byte: its syntax is ASCII.
struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn done(&self) -> bool {
        self.at >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn expected(&self, what: &str) -> String {
        format!("expected {what} at character {}", self.at + 1)
    }

    /// Spaces and tabs; whether there were any.
    fn skip_ows(&mut self) -> bool {
        let start = self.at;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
        self.at > start
    }

    /// Commas and the spaces around them (empty list elements included).
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.at += 1;
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            self.at += 1;
        }
        // Token characters are ASCII, so this slice is whole characters.
        (self.at > start).then(|| std::str::from_utf8(&self.s[start..self.at]).unwrap_or_default())
    }

    /// Skips a token68 if one is here: its characters, `=` padding, then
    /// the end of the challenge. `realm=x` is a parameter, not one.
    fn token68(&mut self) -> bool {
        let mut end = self.at;
        while self.s.get(end).is_some_and(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b)) {
            end += 1;
        }
        if end == self.at {
            return false;
        }
        while self.s.get(end) == Some(&b'=') {
            end += 1;
        }
        let mut next = end;
        while matches!(self.s.get(next), Some(b' ' | b'\t')) {
            next += 1;
        }
        let whole = matches!(self.s.get(next), None | Some(b','));
        if whole {
            self.at = end;
        }
        whole
    }

    /// A quoted string, the cursor at its opening quote.
    fn quoted(&mut self) -> Result<String, String> {
        let open = self.at;
        self.at += 1;
        let mut value = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                self.at = open;
                return Err(self.expected("a closing quote for the string that starts"));
            };
            self.at += 1;
            match b {
                b'"' => return Ok(String::from_utf8_lossy(&value).into_owned()),
                b'\\' => match self.peek() {
                    Some(e @ (b'\t' | 0x20..=0x7e | 0x80..=0xff)) => {
                        value.push(e);
                        self.at += 1;
                    }
                    _ => return Err(self.expected("an escaped character")),
                },
                b'\t' | 0x20..=0x7e | 0x80..=0xff => value.push(b),
                _ => {
                    self.at -= 1;
                    return Err(self.expected("no control character in a quoted string"));
                }
            }
        }
    }
}

/// The URLs where a resource's protected resource metadata may be, in the
/// order tried (RFC 9728 §3.1, and the MCP spec's fallback): the well-known
/// path inserted between host and path (`https://h/mcp` →
/// `https://h/.well-known/oauth-protected-resource/mcp`, the query kept),
/// then at the root (`https://h/.well-known/oauth-protected-resource`).
pub fn protected_resource_metadata_urls(resource: &str) -> Result<Vec<String>, String> {
    let url = identifier(resource)?;
    let origin = origin(&url);
    // A lone "/" after the host goes before inserting (RFC 9728 §3.1).
    let path = if url.path() == "/" { "" } else { url.path() };
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    let inserted = format!("{origin}{PROTECTED_RESOURCE}{path}{query}");
    let root = format!("{origin}{PROTECTED_RESOURCE}");
    Ok(if inserted == root { vec![root] } else { vec![inserted, root] })
}

/// The URLs where an issuer's metadata may be, in the order the MCP spec
/// (2025-11-25) tries them. For `https://as/tenant`: RFC 8414 §3.1 path
/// insertion (`https://as/.well-known/oauth-authorization-server/tenant`),
/// OpenID Connect discovery inserted
/// (`https://as/.well-known/openid-configuration/tenant`), then appended
/// (`https://as/tenant/.well-known/openid-configuration`). Without a path,
/// the first two only.
pub fn authorization_server_metadata_urls(issuer: &str) -> Result<Vec<String>, String> {
    let url = http_url(issuer)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("issuer {} has a query or fragment, which an issuer cannot have (RFC 8414 §2)", shown(&url)));
    }
    let origin = origin(&url);
    // One terminating "/" goes before inserting (RFC 8414 §3.1).
    let path = url.path().strip_suffix('/').unwrap_or(url.path());
    Ok(if path.is_empty() {
        vec![format!("{origin}{OAUTH_SERVER}"), format!("{origin}{OPENID}")]
    } else {
        vec![format!("{origin}{OAUTH_SERVER}{path}"), format!("{origin}{OPENID}{path}"), format!("{origin}{path}{OPENID}")]
    })
}

/// Where protected resource metadata was found, which decides what its
/// `resource` may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataFrom {
    /// The challenge's `resource_metadata`.
    Challenge,
    /// The well-known URL with the server's path inserted.
    WellKnown,
    /// The well-known URL at the root of the server's host.
    WellKnownRoot,
}

/// Whether protected resource metadata with `resource` may be used for the
/// server at `server_url` (RFC 9728 §3.3). From the challenge, `resource`
/// must be the URL the request went to; from a well-known URL, the
/// identifier the well-known path was inserted into: the server's URL, or
/// at the root its origin, or the server's URL still (MCP servers name
/// themselves with their path wherever the document is served).
///
/// "Identical" is compared after RFC 3986 §6.2.2-6.2.3 normalization (the
/// case of scheme and host, a default port, an empty path as `/`), which
/// names the same resource the same; a trailing slash or a query still
/// differs. Errors start with "its", for the caller to name the document.
pub fn check_resource(resource: &str, server_url: &str, from: MetadataFrom) -> Result<(), String> {
    let server = identifier(server_url)?;
    let named = Url::parse(resource).map_err(|e| format!("its resource {} is not a URL ({e})", printable(resource)))?;
    if named.fragment().is_some() {
        return Err(format!("its resource {} has a fragment, which a resource identifier cannot have (RFC 9728 §1.2)", shown(&named)));
    }
    let origin = Url::parse(&origin(&server)).map_err(|e| e.to_string())?;
    let allowed = match from {
        MetadataFrom::Challenge | MetadataFrom::WellKnown => named == server,
        MetadataFrom::WellKnownRoot => named == server || named == origin,
    };
    if allowed {
        return Ok(());
    }
    Err(format!(
        "its resource {} is not this server's URL {} (RFC 9728 §3.3 requires them to be identical): is the catalog's url the one the server names itself by?",
        shown(&named),
        shown(&server)
    ))
}

/// Whether authorization server metadata naming `issuer` may be used for
/// the issuer `expected` it was fetched for (RFC 8414 §3.3, OpenID Connect
/// Discovery §4.3: identical), compared as [`check_resource`] compares. A
/// different issuer could be a mix-up attack's.
pub fn check_issuer(issuer: &str, expected: &str) -> Result<(), String> {
    let same = matches!((Url::parse(issuer), Url::parse(expected)), (Ok(a), Ok(b)) if a == b);
    if same {
        return Ok(());
    }
    Err(format!("its issuer {} is not {} (RFC 8414 §3.3 requires them to be identical)", printable(issuer), printable(expected)))
}

/// Whether a discovered token endpoint may be used: an absolute `https://`
/// URL, or `http://` on loopback only. The token endpoint receives the
/// client secret with every token request; over plain HTTP off the machine
/// anyone on the way could read it.
pub fn check_token_endpoint(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("token endpoint {} is not a URL ({e})", printable(url)))?;
    if parsed.fragment().is_some() {
        return Err(format!("token endpoint {} has a fragment (RFC 6749 §3.2 forbids one)", shown(&parsed)));
    }
    if !secure(&parsed) {
        return Err(format!(
            "token endpoint {} is not https:// (http:// is allowed on loopback only): the client secret is sent to it; set oauth.token_url to an https:// one",
            shown(&parsed)
        ));
    }
    Ok(())
}

/// A metadata document: at most [`MAX_METADATA`] bytes of a JSON object.
pub fn metadata_document(body: &[u8]) -> Result<Map<String, Value>, String> {
    if body.len() > MAX_METADATA {
        return Err(format!("answered more than {MAX_METADATA} bytes, more than any metadata document needs"));
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(doc)) => Ok(doc),
        Ok(_) => Err("answered JSON that is not an object".into()),
        Err(e) => Err(format!("answered something that is not JSON ({e})")),
    }
}

/// The fields of protected resource metadata that discovery reads.
#[derive(Debug, PartialEq)]
struct ProtectedResource {
    resource: String,
    /// `authorization_servers[0]`, and the rest.
    authorization_server: String,
    other_authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
}

fn protected_resource(doc: &Map<String, Value>) -> Result<ProtectedResource, String> {
    let resource = string(doc, "resource")?.ok_or("it has no resource (RFC 9728 §2 requires one)")?;
    let mut servers = strings(doc, "authorization_servers")?.into_iter();
    let authorization_server = servers.next().ok_or("it names no authorization_servers: set oauth.token_url")?;
    Ok(ProtectedResource {
        resource,
        authorization_server,
        other_authorization_servers: servers.collect(),
        scopes_supported: strings(doc, "scopes_supported")?,
    })
}

/// The fields of authorization server metadata that discovery reads.
#[derive(Debug, PartialEq)]
struct AuthorizationServer {
    issuer: String,
    token_endpoint: String,
    grant_types_supported: Vec<String>,
    scopes_supported: Vec<String>,
    token_endpoint_auth_methods_supported: Vec<String>,
}

fn authorization_server(doc: &Map<String, Value>) -> Result<AuthorizationServer, String> {
    Ok(AuthorizationServer {
        issuer: string(doc, "issuer")?.ok_or("it has no issuer (RFC 8414 §2 requires one)")?,
        token_endpoint: string(doc, "token_endpoint")?.ok_or("it has no token_endpoint")?,
        grant_types_supported: strings(doc, "grant_types_supported")?,
        scopes_supported: strings(doc, "scopes_supported")?,
        token_endpoint_auth_methods_supported: strings(doc, "token_endpoint_auth_methods_supported")?,
    })
}

fn string(doc: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("its {name} is not a string")),
    }
}

fn strings(doc: &Map<String, Value>, name: &str) -> Result<Vec<String>, String> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("its {name} is not a list of strings")),
        Some(_) => Err(format!("its {name} is not a list of strings")),
    }
}

/// An http(s) URL with a host.
fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{} is not a URL ({e})", printable(text)))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(format!("{} is not an http(s) URL", shown(&url)));
    }
    Ok(url)
}

/// A resource's identifier: its URL without user info or fragment, which
/// are neither sent nor part of the resource.
fn identifier(text: &str) -> Result<Url, String> {
    let mut url = http_url(text)?;
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(None);
    Ok(url)
}

/// `scheme://host[:port]`, without user info.
fn origin(url: &Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{}{port}", url.scheme(), url.host_str().unwrap_or_default())
}

/// `https://`, or `http://` to a loopback address.
fn secure(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// A URL as errors show it: without user info, and with `?…` for a query.
fn shown(url: &Url) -> String {
    let query = if url.query().is_some() { "?…" } else { "" };
    format!("{}{}{query}", origin(url), url.path())
}

/// Text from a server, fit for an error: a URL as [`shown`], else at most
/// 200 characters without control characters.
fn printable(text: &str) -> String {
    match Url::parse(text) {
        Ok(url) if url.has_host() => shown(&url),
        _ => text.chars().filter(|c| !c.is_control()).take(200).collect(),
    }
}

/// A URL discovery follows: an http(s) URL that is [`secure`].
fn followed(text: &str, what: &str) -> Result<Url, String> {
    let url = http_url(text).map_err(|e| format!("{what}: {e}"))?;
    if !secure(&url) {
        return Err(format!(
            "{what} {} is http:// off loopback: OAuth discovery follows https:// only, because what it learns decides where the client secret is sent and a plain HTTP answer can be forged on the way; use https://, or set oauth.token_url",
            shown(&url)
        ));
    }
    Ok(url)
}

/// Finds the token endpoint of the OAuth-protected MCP server at
/// `server_url` (Streamable HTTP), as module docs describe: an `initialize`
/// without credentials (with `headers`, less any `Authorization`: the point
/// is to see what the server asks of a client without a token), its 401's
/// challenge or the well-known URLs, the protected resource metadata, then
/// the metadata of its **first** authorization server
/// (`authorization_servers[0]`; the others are listed in
/// [`Discovered::other_authorization_servers`], not tried).
///
/// Each request waits 10 s at most. Errors are sentences naming the
/// URL that failed and why; a server that does not answer 401 is one that
/// does not ask for OAuth, so `oauth.token_url` must be given.
pub async fn discover(client: &reqwest::Client, server_url: &str, headers: &[(String, String)]) -> Result<Discovered, String> {
    let server = identifier(server_url).map_err(|e| format!("the server's URL: {e}"))?;
    let server = followed(server.as_str(), "the server's URL")?;
    let at = shown(&server);
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "mcp-gateway-oauth-discovery", "version": env!("CARGO_PKG_VERSION") },
        },
    });
    let mut request = client
        .post(server.as_str())
        .timeout(TIMEOUT)
        .header(ACCEPT, "application/json, text/event-stream")
        .header(CONTENT_TYPE, "application/json");
    for (name, value) in headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("authorization")) {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.body(body.to_string()).send().await.map_err(|e| failure(&e, &at))?;
    followed(response.url().as_str(), &format!("{at} redirected to"))?;
    let status = response.status().as_u16();
    if status != 401 {
        return Err(format!(
            "{at} answered an initialize without credentials with HTTP {status}, not 401: it does not ask for OAuth, so its token endpoint cannot be discovered; set oauth.token_url"
        ));
    }
    // Several fields are one list (RFC 9110 §5.3); values outside ASCII
    // can only be inside quoted strings.
    let values: Vec<String> =
        response.headers().get_all(WWW_AUTHENTICATE).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
    drop(response);
    let challenge = bearer_challenge(&values.join(", "));
    let (candidates, why, named) = match challenge.as_ref().map(|c| c.as_ref().and_then(|c| c.resource_metadata.as_deref())) {
        Ok(Some(named)) => {
            let url =
                server.join(named).map_err(|e| format!("{at} names resource_metadata {} that is not a URL ({e})", printable(named)))?;
            let url = followed(url.as_str(), &format!("the resource_metadata that {at} names"))?;
            (vec![url.to_string()], "its 401 names resource_metadata, but".to_string(), true)
        }
        Ok(None) => (protected_resource_metadata_urls(server.as_str())?, "its 401 names no resource_metadata, and".into(), false),
        Err(e) => (protected_resource_metadata_urls(server.as_str())?, format!("its WWW-Authenticate could not be read ({e}), and"), false),
    };
    let mut tried = Vec::new();
    let Some((i, prm_at, doc)) = first_document(client, &candidates, "protected resource metadata", &mut tried).await? else {
        return Err(format!(
            "no protected resource metadata for {at}: {why} {}; have the server publish RFC 9728 metadata, or set oauth.token_url",
            tried.join(", ")
        ));
    };
    let from = match i {
        _ if named => MetadataFrom::Challenge,
        0 => MetadataFrom::WellKnown,
        _ => MetadataFrom::WellKnownRoot,
    };
    let fail = |e: String| format!("the protected resource metadata at {}: {e}", shown(&prm_at));
    let prm = protected_resource(&doc).map_err(fail)?;
    check_resource(&prm.resource, server.as_str(), from).map_err(fail)?;
    let issuer = followed(&prm.authorization_server, &format!("the authorization server that {} names", shown(&prm_at)))?;
    let (as_at, meta) = authorization_server_metadata(client, &prm.authorization_server, &issuer).await?;
    check_token_endpoint(&meta.token_endpoint).map_err(|e| format!("the authorization server metadata at {}: {e}", shown(&as_at)))?;
    let resource_scopes = match challenge.ok().flatten().and_then(|c| c.scope) {
        Some(scope) => scope.split_whitespace().map(str::to_string).collect(),
        None => prm.scopes_supported,
    };
    Ok(Discovered {
        resource: prm.resource,
        authorization_server: prm.authorization_server,
        other_authorization_servers: prm.other_authorization_servers,
        token_endpoint: meta.token_endpoint,
        grant_types_supported: meta.grant_types_supported,
        scopes_supported: meta.scopes_supported,
        token_endpoint_auth_methods_supported: meta.token_endpoint_auth_methods_supported,
        resource_scopes,
    })
}

/// The metadata of the authorization server `named` (parsed: `issuer`),
/// from the first of its well-known URLs that has it, and where.
async fn authorization_server_metadata(client: &reqwest::Client, named: &str, issuer: &Url) -> Result<(Url, AuthorizationServer), String> {
    let mut tried = Vec::new();
    let candidates = authorization_server_metadata_urls(issuer.as_str())?;
    let Some((_, url, doc)) = first_document(client, &candidates, "authorization server metadata", &mut tried).await? else {
        return Err(format!(
            "no metadata for the authorization server {}: {}; have it publish RFC 8414 metadata, or set oauth.token_url",
            shown(issuer),
            tried.join(", ")
        ));
    };
    let fail = |e: String| format!("the authorization server metadata at {}: {e}", shown(&url));
    let meta = authorization_server(&doc).map_err(fail)?;
    check_issuer(&meta.issuer, named).map_err(fail)?;
    Ok((url, meta))
}

/// The first of `candidates` that answers a document, with its index, or
/// `None` when each answered 4xx (not there, or not without a token: what
/// each answered goes into `tried`). A 5xx is an error: the server is not
/// well, and the next URL would not say more.
async fn first_document(
    client: &reqwest::Client,
    candidates: &[String],
    what: &str,
    tried: &mut Vec<String>,
) -> Result<Option<(usize, Url, Map<String, Value>)>, String> {
    for (i, candidate) in candidates.iter().enumerate() {
        let url = http_url(candidate)?;
        match fetch(client, candidate).await? {
            Fetched::Document(doc) => return Ok(Some((i, url, doc))),
            Fetched::Status(s) if (400..500).contains(&s) => tried.push(format!("{} answered HTTP {s}", shown(&url))),
            Fetched::Status(s) => return Err(format!("the {what} at {} answered HTTP {s}", shown(&url))),
        }
    }
    Ok(None)
}

/// What a metadata URL answered: a document (200), or another status.
enum Fetched {
    Document(Map<String, Value>),
    Status(u16),
}

/// GETs the metadata at `url` (secure, as [`followed`]), reading at most
/// [`MAX_METADATA`] bytes. Errors name the URL.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<Fetched, String> {
    let parsed = http_url(url)?;
    let at = shown(&parsed);
    let mut response = client.get(url).timeout(TIMEOUT).header(ACCEPT, "application/json").send().await.map_err(|e| failure(&e, &at))?;
    // A redirect must not lead where the URL itself could not.
    followed(response.url().as_str(), &format!("{at} redirected to"))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Ok(Fetched::Status(status));
    }
    let too_long = format!("{at} answered more than {MAX_METADATA} bytes: metadata longer than 64 KiB is refused");
    let stated = response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if stated.is_some_and(|n| n > MAX_METADATA) {
        return Err(too_long);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("{at}'s answer broke off ({})", reason(&e)))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_METADATA {
            return Err(too_long);
        }
    }
    metadata_document(&body).map(Fetched::Document).map_err(|e| format!("{at} {e}"))
}

/// Why a request to `at` failed, without reqwest's message (it holds the
/// whole URL): a TLS failure said precisely, else the kind of failure.
fn failure(error: &reqwest::Error, at: &str) -> String {
    use crate::upstream::tls;
    if let Some(f) = tls::failure(error) {
        return tls::explain(&f, at, tls::Setting::default());
    }
    format!("cannot reach {at}: {}", reason(error))
}

/// The kind of a failed request, in words.
fn reason(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "no answer within 10 s"
    } else if error.is_connect() {
        "connection refused or unreachable"
    } else if error.is_builder() {
        "the request could not be made (a header given is not valid)"
    } else {
        "transport error"
    }
}

#[cfg(test)]
mod tests;
