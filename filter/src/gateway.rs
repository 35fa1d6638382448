//! The filter's decisions, as pure functions of a compiled configuration and
//! what the host handed over (headers, body, time).
//!
//! [`Gateway::new`] turns a [`FilterConfig`] into lookup tables and
//! pre-serialised answers once per configuration version. Per request,
//! [`Gateway::on_headers`] and [`Gateway::on_body`] say what to do: pass the
//! request through, reply locally, forward it to one upstream, or first open
//! the client's sessions with every upstream ([`InitPlan`]). This module makes
//! no host call and reads no clock: time arrives as [`Now`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::{FilterConfig, NamedRoute, ServedItem, UpstreamServer};
use crate::decision::{
    Audit, BodyAction, Callout, CalloutResponse, Decision, Forward, HeadAction, InitPlan, Now, Page, Reply, RequestHead,
};
use crate::error::McpError;
use crate::headers::{bounded, decode_header_value, encode_header_value, media_type, Accepts};
use crate::jsonrpc::{self, Message};
use crate::origin::{authority_host, is_loopback_name, same_origin};
use crate::policy::{Applicable, Caller, Kind, Ruling};
use crate::ratelimit::{self, Bucket, Subject};
use crate::relay;
use crate::revocation::Slot;
use crate::session::{Sealer, SessionError, SessionState, UpstreamSession};
use crate::sse;

/// Protocol revisions of the handshake era this gateway speaks, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// What the gateway answers when a client asks for a version it does not know.
pub const LATEST_VERSION: &str = "2025-11-25";
/// The stateless revision: no `initialize`, no session; served when the
/// configuration says every upstream is stateless.
pub const STATELESS_VERSION: &str = "2026-07-28";
/// The id of the filter's own `initialize` requests to upstreams.
const INIT_ID: &str = "0";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("tool {tool:?} names server index {server}, but there are {count} servers")]
    NoSuchServer { tool: String, server: usize, count: usize },
    #[error("tool name {0:?} is listed twice")]
    DuplicateTool(String),
    #[error("session keys: {0}")]
    Session(#[from] SessionError),
    #[error("api key {0}: sha256 must be 64 hex characters")]
    BadKeyHash(usize),
    #[error("rate limit {0:?}: requests_per_minute and burst must be greater than 0")]
    BadLimit(String),
}

struct Route {
    server: usize,
    upstream_name: String,
}

/// Which server serves a resource URI. URIs are relayed unchanged, so a read
/// is routed by what the servers listed: the exact URI, else the longest
/// matching literal prefix of a URI template, else the one server using the
/// URI's scheme (see docs/design/resources.md).
#[derive(Default)]
struct UriRouter {
    exact: HashMap<String, usize>,
    /// Literal prefixes of URI templates (up to the first `{`), longest first.
    prefixes: Vec<(String, usize)>,
    /// Scheme -> the one server using it, or `None` when several do.
    schemes: HashMap<String, Option<usize>>,
}

impl UriRouter {
    fn new(resources: &[ServedItem], templates: &[ServedItem]) -> Self {
        let mut r = UriRouter::default();
        let claim_scheme = |uri: &str, server: usize, schemes: &mut HashMap<String, Option<usize>>| {
            if let Some(scheme) = scheme_of(uri) {
                let entry = schemes.entry(scheme.to_string()).or_insert(Some(server));
                if *entry != Some(server) {
                    *entry = None;
                }
            }
        };
        for item in resources {
            if let Some(uri) = item.definition.get("uri").and_then(serde_json::Value::as_str) {
                // The first server (in catalog order) to list a URI keeps it.
                r.exact.entry(uri.to_string()).or_insert(item.server);
                claim_scheme(uri, item.server, &mut r.schemes);
            }
        }
        for item in templates {
            if let Some(t) = item.definition.get("uriTemplate").and_then(serde_json::Value::as_str) {
                let prefix = t.split('{').next().unwrap_or_default();
                if !prefix.is_empty() {
                    r.prefixes.push((prefix.to_string(), item.server));
                }
                claim_scheme(t, item.server, &mut r.schemes);
            }
        }
        r.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        r
    }

    fn route(&self, uri: &str) -> Option<usize> {
        if let Some(s) = self.exact.get(uri) {
            return Some(*s);
        }
        if let Some((_, s)) = self.prefixes.iter().find(|(p, _)| uri.starts_with(p.as_str())) {
            return Some(*s);
        }
        scheme_of(uri).and_then(|scheme| self.schemes.get(scheme).copied().flatten())
    }
}

fn scheme_of(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once(':')?;
    let valid = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    valid.then_some(scheme)
}

/// `{"tools":[...]}` and the other list answers, serialised once per
/// configuration and per set of authorization rules that apply to callers.
struct Lists {
    tools: ListAnswer,
    prompts: ListAnswer,
    resources: ListAnswer,
    templates: ListAnswer,
}

impl Lists {
    /// The lists of what `visible` lets through.
    fn new(config: &FilterConfig, visible: impl Fn(Kind, usize, &str) -> bool) -> Self {
        let size = config.list_page_size;
        let named = |items: &[NamedRoute], kind| {
            let shown = items.iter().filter(|t| visible(kind, t.server, &t.name)).map(|t| &t.definition);
            list_items(shown, "name")
        };
        let served = |items: &[ServedItem], key| {
            let shown = items.iter().filter(|i| {
                let uri = i.definition.get(key).and_then(serde_json::Value::as_str).unwrap_or_default();
                visible(Kind::Resource, i.server, uri)
            });
            list_items(shown.map(|i| &i.definition), key)
        };
        Lists {
            tools: ListAnswer::new("tools", named(&config.tools, Kind::Tool), size),
            prompts: ListAnswer::new("prompts", named(&config.prompts, Kind::Prompt), size),
            resources: ListAnswer::new("resources", served(&config.resources, "uri"), size),
            templates: ListAnswer::new("resourceTemplates", served(&config.resource_templates, "uriTemplate"), size),
        }
    }
}

/// How many filtered sets of lists are kept; past it the cache starts over.
const MAX_FILTERED_LISTS: usize = 256;
/// How many opened session ids a worker keeps (a few hundred bytes each);
/// past it the cache starts over.
const MAX_OPENED_SESSIONS: usize = 4096;

/// A configuration compiled for answering requests.
pub struct Gateway {
    config: FilterConfig,
    tools: HashMap<String, Route>,
    prompts: HashMap<String, Route>,
    uris: UriRouter,
    /// Every list unfiltered: what callers see without authorization rules.
    lists: Rc<Lists>,
    /// Lists filtered for each set of applicable rules met so far.
    filtered: RefCell<HashMap<Applicable, Rc<Lists>>>,
    /// Session ids opened lately, and what they hold.
    sessions: RefCell<HashMap<String, Rc<SessionState>>>,
    sealer: Sealer,
    /// SHA-256 of each API key -> its index in the configuration; `None`
    /// when authentication is off.
    api_keys: Option<HashMap<[u8; 32], usize>>,
}

/// A list answered from the configuration: its pages, serialised once per
/// configuration for each era (the 2026-07-28 one carries the caching
/// fields and result type it requires).
///
/// A cursor names where the next page starts: its position and the key
/// (name or URI) of the item found there, base64url. A cursor from an older
/// configuration still works: the page starts at that item wherever it now
/// is, or at the same position if it is gone (the client has been told the
/// list changed).
struct ListAnswer {
    /// Each item's definition as JSON text, and its key.
    items: Vec<(String, String)>,
    /// Which field of the result holds the items.
    field: &'static str,
    page_size: usize,
    /// `(handshake, stateless)` result of each page at a multiple of `page_size`.
    pages: Vec<(String, String)>,
}

impl ListAnswer {
    fn new(field: &'static str, items: Vec<(String, String)>, page_size: Option<usize>) -> Self {
        let page_size = page_size.filter(|n| *n > 0).unwrap_or(usize::MAX).min(items.len().max(1));
        let mut answer = ListAnswer { items, field, page_size, pages: Vec::new() };
        let mut start = 0;
        loop {
            answer.pages.push(answer.page(start));
            start = start.saturating_add(page_size);
            if start >= answer.items.len() {
                break;
            }
        }
        answer
    }

    /// The results of the page starting at item `start`.
    fn page(&self, start: usize) -> (String, String) {
        let end = start.saturating_add(self.page_size).min(self.items.len());
        let chosen = self.items.get(start..end).unwrap_or_default();
        let mut body = format!("\"{}\":[", self.field);
        for (i, (definition, _)) in chosen.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(definition);
        }
        body.push(']');
        if let Some((_, key)) = self.items.get(end) {
            use base64::Engine as _;
            let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{end}:{key}"));
            body.push_str(&format!(",\"nextCursor\":\"{cursor}\""));
        }
        let handshake = format!("{{{body}}}");
        let stateless = format!(r#"{{"ttlMs":0,"cacheScope":"private","resultType":"complete",{body}}}"#);
        (handshake, stateless)
    }

    /// The item a cursor says the page starts at.
    fn start_of(&self, cursor: &str) -> Option<usize> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (position, key) = text.split_once(':')?;
        let position: usize = position.parse().ok()?;
        if self.items.get(position).is_some_and(|(_, k)| k == key) {
            return Some(position);
        }
        let moved = self.items.iter().position(|(_, k)| k == key);
        Some(moved.unwrap_or(position).min(self.items.len()))
    }

    /// The result for `cursor` (none: the first page), in the era asked.
    fn answer(&self, cursor: Option<&str>, stateless: bool) -> Result<std::borrow::Cow<'_, str>, McpError> {
        let start = match cursor {
            None => 0,
            Some(c) => self.start_of(c).ok_or_else(|| McpError::InvalidParams(format!("invalid cursor {c:?}: list again without one")))?,
        };
        // Pages at the usual boundaries are ready; one after a list change
        // may start anywhere.
        Ok(match (start % self.page_size == 0).then(|| self.pages.get(start / self.page_size)).flatten() {
            Some((handshake, modern)) => std::borrow::Cow::Borrowed(if stateless { modern } else { handshake }),
            None => {
                let (handshake, modern) = self.page(start);
                std::borrow::Cow::Owned(if stateless { modern } else { handshake })
            }
        })
    }
}

/// The lookup table of tools or prompts.
fn named_table(items: &[NamedRoute], servers: usize) -> Result<HashMap<String, Route>, ConfigError> {
    let mut table = HashMap::with_capacity(items.len());
    for t in items {
        if t.server >= servers {
            return Err(ConfigError::NoSuchServer { tool: t.name.clone(), server: t.server, count: servers });
        }
        if table.insert(t.name.clone(), Route { server: t.server, upstream_name: t.upstream_name.clone() }).is_some() {
            return Err(ConfigError::DuplicateTool(t.name.clone()));
        }
    }
    Ok(table)
}

/// Each definition as JSON text with its key (the value of `key_field`).
fn list_items<'a>(definitions: impl Iterator<Item = &'a serde_json::Value>, key_field: &str) -> Vec<(String, String)> {
    definitions.map(|d| (d.to_string(), d.get(key_field).and_then(serde_json::Value::as_str).unwrap_or_default().to_string())).collect()
}

fn check_servers(items: &[ServedItem], servers: usize, what: &str) -> Result<(), ConfigError> {
    match items.iter().find(|i| i.server >= servers) {
        Some(bad) => Err(ConfigError::NoSuchServer { tool: what.to_string(), server: bad.server, count: servers }),
        None => Ok(()),
    }
}

impl Gateway {
    pub fn new(config: FilterConfig) -> Result<Self, ConfigError> {
        let n = config.servers.len();
        let tools = named_table(&config.tools, n)?;
        let prompts = named_table(&config.prompts, n)?;
        check_servers(&config.resources, n, "resources")?;
        check_servers(&config.resource_templates, n, "resourceTemplates")?;
        let lists = Rc::new(Lists::new(&config, |_, _, _| true));
        if let Some(bad) = config.rate_limits.iter().find(|l| l.requests_per_minute == 0 || l.burst == 0) {
            return Err(ConfigError::BadLimit(bad.name.clone()));
        }
        let uris = UriRouter::new(&config.resources, &config.resource_templates);
        let sealer = Sealer::new(&config.session)?;
        let api_keys = match &config.auth {
            None => None,
            Some(auth) => {
                let mut table = HashMap::with_capacity(auth.api_keys.len());
                for (i, key) in auth.api_keys.iter().enumerate() {
                    table.insert(parse_sha256(&key.sha256).ok_or(ConfigError::BadKeyHash(i))?, i);
                }
                Some(table)
            }
        };
        Ok(Gateway {
            config,
            tools,
            prompts,
            uris,
            lists,
            filtered: RefCell::new(HashMap::new()),
            sessions: RefCell::new(HashMap::new()),
            sealer,
            api_keys,
        })
    }

    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    pub fn server(&self, index: usize) -> Option<&UpstreamServer> {
        self.config.servers.get(index)
    }

    /// Decides on the request headers alone, and records who the caller is
    /// in `head.caller`.
    pub fn on_headers(&self, head: &mut RequestHead) -> HeadAction {
        if let Err(e) = self.check_host(head) {
            return HeadAction::Reply(Reply::error(None, &e));
        }
        let path = head.path.split('?').next().unwrap_or_default();
        if let Some(reply) = self.resource_metadata(&head.method, path) {
            return HeadAction::Reply(reply);
        }
        if head.method == "GET" && path != self.config.mcp_path {
            match path {
                METRICS_PATH => return HeadAction::Scrape(Page::Metrics, self.scrape_callouts(Page::Metrics)),
                STATS_PATH => return HeadAction::Scrape(Page::Stats, self.scrape_callouts(Page::Stats)),
                _ => {}
            }
        }
        if path != self.config.mcp_path {
            return HeadAction::PassThrough;
        }
        if let Err(e) = self.check_origin(head) {
            return HeadAction::Reply(self.refusal(None, &e));
        }
        match self.authenticate(head) {
            Ok(caller) => head.caller = caller,
            Err(e) => return HeadAction::Reply(self.refusal(None, &e)),
        }
        let checked = match head.method.as_str() {
            "POST" => check_post_headers(head),
            "DELETE" => return HeadAction::EndSession,
            "GET" if self.config.events.is_some() => return HeadAction::OpenStream,
            other => Err(McpError::MethodNotAllowed(other.to_string())),
        };
        match checked {
            Ok(()) => HeadAction::ReadBody,
            Err(e) => HeadAction::Reply(Reply::error(None, &e)),
        }
    }

    /// The calls behind `GET /metrics`: Envoy's own stats from its admin
    /// address, and the control plane's metrics when there is one.
    fn scrape_callouts(&self, page: Page) -> Vec<Callout> {
        let get = |path: &str, authority: &str| {
            vec![(":method", "GET".to_string()), (":path", path.to_string()), (":authority", authority.to_string())]
        };
        let (envoy, control_plane) = match page {
            Page::Metrics => ("/stats/prometheus", METRICS_PATH),
            Page::Stats => (crate::metrics::SUMMARY_STATS_PATH, "/servers"),
        };
        let mut calls =
            vec![Callout { server: usize::MAX, cluster: ENVOY_ADMIN_CLUSTER.into(), headers: get(envoy, "envoy-admin"), body: Vec::new() }];
        if let Some(cp) = &self.config.events {
            calls.push(Callout {
                server: usize::MAX,
                cluster: cp.cluster.clone(),
                headers: get(control_plane, &cp.authority),
                body: Vec::new(),
            });
        }
        calls
    }

    /// A gateway that listens on loopback only is for this machine's
    /// clients, which name it `localhost` or by a loopback address. A request
    /// naming another host came through a name that resolves to loopback
    /// without being it: a web page that rebound its DNS name to the
    /// gateway's address, using the browser as its proxy (DNS rebinding).
    fn check_host(&self, head: &RequestHead) -> Result<(), McpError> {
        let Some(host) = head.host.as_deref().filter(|h| !h.is_empty()) else { return Ok(()) };
        if !self.config.loopback_only || is_loopback_name(authority_host(host)) {
            return Ok(());
        }
        Err(McpError::MisdirectedHost(bounded(host).to_string()))
    }

    /// Browsers send `Origin`; the gateway's own origin (the one the request
    /// names as its host) and the listed ones may call. This is what keeps a
    /// web page from calling tools with the browser as its proxy.
    fn check_origin(&self, head: &RequestHead) -> Result<(), McpError> {
        let Some(origin) = head.origin.as_deref() else { return Ok(()) };
        let allowed = &self.config.allowed_origins;
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
    fn resource_metadata(&self, method: &str, path: &str) -> Option<Reply> {
        const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";
        let pr = self.config.auth.as_ref()?.protected_resource.as_ref()?;
        let rest = path.strip_prefix(WELL_KNOWN)?;
        if !(rest.is_empty() || rest == self.config.mcp_path) {
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
    fn resource_metadata_url(&self) -> Option<String> {
        let pr = self.config.auth.as_ref()?.protected_resource.as_ref()?;
        // `https://host/mcp` -> `https://host/.well-known/oauth-protected-resource/mcp`.
        let (scheme, rest) = pr.resource.split_once("://")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        Some(format!("{scheme}://{host}/.well-known/oauth-protected-resource{path}"))
    }

    /// A refusal, with the challenge an OAuth client needs to find a token.
    pub fn refusal(&self, id: Option<&str>, e: &McpError) -> Reply {
        let mut reply = Reply::error(id, e);
        let challenge = match e {
            McpError::Unauthorized(_) => r#"Bearer realm="mcp-gateway""#.to_string(),
            McpError::InsufficientScope(scope) => {
                format!(r#"Bearer realm="mcp-gateway", error="insufficient_scope", scope={}"#, jsonrpc::json_string(scope))
            }
            _ => return reply,
        };
        let challenge = match self.resource_metadata_url() {
            Some(url) => format!("{challenge}, resource_metadata={}", jsonrpc::json_string(&url)),
            None => challenge,
        };
        reply.headers.push(("www-authenticate", challenge));
        reply
    }

    /// Who the client is: by its API key, else by the JWT Envoy verified;
    /// `Ok(None)` when authentication is off. An API key is looked up by its
    /// SHA-256: the lookup's timing can only tell an attacker about digests,
    /// never about keys.
    pub fn authenticate(&self, head: &RequestHead) -> Result<Option<Caller>, McpError> {
        let (Some(table), Some(auth)) = (&self.api_keys, &self.config.auth) else { return Ok(None) };
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
        if let (Some(claims), Some(payload)) = (&auth.jwt, head.jwt_payload.as_deref()) {
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

    /// The rules that apply to the caller, or `None` without authorization.
    fn applicable(&self, caller: Option<&Caller>) -> Option<Applicable> {
        self.config.authorization.as_ref().map(|a| a.applicable(caller))
    }

    /// May the caller use `name` on server `server`? Always, without rules.
    fn authorize(&self, caller: Option<&Caller>, kind: Kind, server: usize, name: &str) -> Ruling {
        let (Some(authz), Some(set), Some(s)) = (&self.config.authorization, self.applicable(caller), self.server(server)) else {
            return Ruling { allowed: true, reason: "no authorization rules".into() };
        };
        authz.decide(&set, kind, &s.name, name)
    }

    /// The lists as the caller may see them.
    fn lists_for(&self, caller: Option<&Caller>) -> Rc<Lists> {
        let (Some(authz), Some(set)) = (&self.config.authorization, self.applicable(caller)) else { return self.lists.clone() };
        if let Some(found) = self.filtered.borrow().get(&set) {
            return found.clone();
        }
        let names: Vec<&str> = self.config.servers.iter().map(|s| s.name.as_str()).collect();
        let lists = Rc::new(Lists::new(&self.config, |kind, server, name| {
            names.get(server).is_some_and(|s| authz.decide(&set, kind, s, name).allowed)
        }));
        let mut cache = self.filtered.borrow_mut();
        if cache.len() >= MAX_FILTERED_LISTS {
            cache.clear();
        }
        cache.insert(set, lists.clone());
        lists
    }

    /// The token buckets this request must take from in this Envoy, and
    /// those of global limits, which Envoy's `ratelimit` filter asks the
    /// control plane about (as headers: name, bucket key).
    pub fn buckets(&self, head: &RequestHead, audit: &Audit) -> (Vec<Bucket>, Vec<(String, String)>) {
        if self.config.rate_limits.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let subject = Subject { caller: head.caller.as_ref(), server: audit.server.as_deref(), tool: audit.target.as_deref() };
        let (global, local) = ratelimit::buckets(&self.config.rate_limits, subject)
            .into_iter()
            .partition::<Vec<_>, _>(|b| self.config.rate_limits.get(b.limit).is_some_and(|l| l.global));
        // The key holds the principal, which a JWT or a certificate names:
        // whatever it holds must make a valid header value.
        let headers = global
            .into_iter()
            .filter_map(|b| {
                let name = &self.config.rate_limits.get(b.limit)?.name;
                Some((format!("{}{name}", crate::config::RATE_LIMIT_HEADER_PREFIX), encode_header_value(&b.key)))
            })
            .collect();
        (local, headers)
    }

    /// The answer to a request a bucket had no token for.
    pub fn rate_limited(&self, audit: &Audit, bucket: &Bucket, retry_after_ms: u64) -> Reply {
        let Some(limit) = self.config.rate_limits.get(bucket.limit) else {
            return Reply::error(None, &McpError::Internal("rate limit out of step".into()));
        };
        let retry_after_secs = retry_after_ms.div_ceil(1000).max(1);
        let error = rate_limit_error(limit, retry_after_secs);
        let id = audit.id.as_deref().unwrap_or("null");
        let mut reply = Reply::json(429, format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#).into_bytes());
        reply.headers.push(("retry-after", retry_after_secs.to_string()));
        reply
    }

    /// Where a client's GET stream goes, once its session and `Accept` check out.
    pub fn open_stream(&self, head: &RequestHead, now: Now) -> Result<&UpstreamServer, Reply> {
        let events = self.config.events.as_ref().ok_or_else(|| Reply::error(None, &McpError::MethodNotAllowed("GET".into())))?;
        let accept = head.accept.as_deref().unwrap_or_default();
        if !Accepts::of(accept).sse {
            return Err(Reply::error(None, &McpError::NotAcceptable(accept.to_string())));
        }
        self.open_session(head, now).map_err(|e| Reply::error(None, &e))?;
        Ok(events)
    }

    /// Ends a client session: the reply to send once the DELETE callouts that
    /// end its upstream sessions have come back (or failed; the client's
    /// session ends either way).
    ///
    /// The id itself would open until it expires (nothing is stored with
    /// it), so the session is also returned as ended until then, for the glue
    /// to record (`revocation.rs`): its later requests get 404.
    pub fn end_session(&self, head: &RequestHead, now: Now) -> (Reply, Vec<Callout>, Option<(Slot, u64)>) {
        let state = match self.open_session(head, now) {
            Ok(s) => s,
            Err(e) => return (Reply::error(None, &e), Vec::new(), None),
        };
        let ended = head
            .session_id
            .as_deref()
            .and_then(Slot::of)
            .map(|slot| (slot, state.issued_at.saturating_add(self.config.session.ttl_seconds)));
        let callouts = self
            .config
            .servers
            .iter()
            .enumerate()
            .filter_map(|(i, server)| {
                let upstream = state.upstreams.get(&server.name)?;
                let id = upstream.id.as_deref()?;
                let mut c = callout(i, server, Some(id), upstream.version.as_deref(), Vec::new());
                if let Some(method) = c.headers.iter_mut().find(|(k, _)| *k == ":method") {
                    method.1 = "DELETE".into();
                }
                c.headers.retain(|(k, _)| *k != "content-type");
                Some(c)
            })
            .collect();
        (Reply { status: 204, headers: Vec::new(), body: Vec::new() }, callouts, ended)
    }

    /// Refuses a body that has grown past the limit, before it is all read.
    pub fn check_size(&self, size: usize) -> Option<Reply> {
        let limit = self.config.max_body_bytes;
        (size > limit).then(|| Reply::error(None, &McpError::BodyTooLarge { size, limit }))
    }

    /// Decides on the complete body.
    pub fn on_body(&self, head: &RequestHead, body: &[u8], now: Now) -> BodyAction {
        self.decide(head, body, now).action
    }

    /// Decides on the complete body, and says what it decided about whom.
    pub fn decide(&self, head: &RequestHead, body: &[u8], now: Now) -> Decision {
        let mut audit = Audit::default();
        let action = self.decide_into(head, body, now, &mut audit);
        Decision { action, audit }
    }

    fn decide_into(&self, head: &RequestHead, body: &[u8], now: Now, audit: &mut Audit) -> BodyAction {
        if let Some(reply) = self.check_size(body.len()) {
            return BodyAction::Reply(reply);
        }
        let (id, method, params) = match jsonrpc::parse(body) {
            Err(e) => return BodyAction::Reply(Reply::error(jsonrpc::readable_id(body), &e)),
            Ok(Message::Notification { method }) => {
                audit.method = method.to_string();
                return self.notification(head, body, &method, now);
            }
            Ok(Message::Response { id }) => return self.answer(head, body, id, now),
            Ok(Message::Request { id, method, params }) => (id.get(), method, params),
        };
        audit.method = method.to_string();
        audit.id = Some(id.to_string());
        if self.config.trace {
            audit.traceparent = jsonrpc::meta_traceparent(params);
        }
        if let Some(h) = head.mcp_method.as_deref() {
            if h != method {
                let e = McpError::HeaderMismatch(format!("Mcp-Method {h:?} but the body's method is {method:?}"));
                return BodyAction::Reply(Reply::error(Some(id), &e));
            }
        }
        let caller = head.caller.as_ref();
        // Checks the caller may use `name` on `server`, noting it for the audit log.
        let mut check = |kind: Kind, server: usize, name: &str| -> bool {
            let ruling = self.authorize(caller, kind, server, name);
            let allowed = ruling.allowed;
            audit.server = self.server(server).map(|s| s.name.clone());
            audit.target = Some(name.to_string());
            audit.ruling = Some(ruling);
            allowed
        };
        let result = match method.as_ref() {
            "initialize" => return self.initialize(id, params, now),
            "ping" => Ok(BodyAction::Reply(Reply::json(200, jsonrpc::result_body(id, "{}")))),
            "server/discover" if self.config.stateless_era => {
                Ok(BodyAction::Reply(Reply::json(200, jsonrpc::result_body(id, &self.discover_result()))))
            }
            "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
                let lists = self.lists_for(caller);
                let answer = match method.as_ref() {
                    "tools/list" => &lists.tools,
                    "prompts/list" => &lists.prompts,
                    "resources/list" => &lists.resources,
                    _ => &lists.templates,
                };
                self.list(head, now, id, params, answer)
            }
            "tools/call" | "prompts/get" => self.open_session(head, now).and_then(|s| {
                let (name, span) = jsonrpc::tool_name(body, params)?;
                check_name_header(head, &name)?;
                let (table, unknown, kind): (_, fn(String) -> McpError, _) = match method.as_ref() {
                    "tools/call" => (&self.tools, McpError::UnknownTool, Kind::Tool),
                    _ => (&self.prompts, McpError::UnknownPrompt, Kind::Prompt),
                };
                // A denied name is refused exactly as an unknown one.
                let route = table.get(name.as_ref()).filter(|r| check(kind, r.server, &name)).ok_or_else(|| unknown(name.to_string()))?;
                let mut forward = self.forward(id, route.server, &s, rename(body, span, &name, &route.upstream_name))?;
                if let (BodyAction::Forward(f), Some(_)) = (&mut forward, &head.mcp_name) {
                    f.mcp_name = Some(encode_header_value(&route.upstream_name));
                }
                Ok(forward)
            }),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => self.open_session(head, now).and_then(|s| {
                let uri = jsonrpc::resource_uri(params)?;
                check_name_header(head, &uri)?;
                let server = self.uris.route(&uri).filter(|server| check(Kind::Resource, *server, &uri));
                self.forward(id, server.ok_or_else(|| McpError::UnknownResource(uri.to_string()))?, &s, None)
            }),
            "completion/complete" => self.open_session(head, now).and_then(|s| match jsonrpc::completion_ref(body, params)? {
                jsonrpc::CompletionRef::Prompt(name, span) => {
                    let route = self.prompts.get(name.as_ref()).filter(|r| check(Kind::Prompt, r.server, &name));
                    let route = route.ok_or_else(|| McpError::UnknownPrompt(name.to_string()))?;
                    self.forward(id, route.server, &s, rename(body, span, &name, &route.upstream_name))
                }
                jsonrpc::CompletionRef::Resource(uri) => {
                    let server = self.uris.route(&uri).filter(|server| check(Kind::Resource, *server, &uri));
                    self.forward(id, server.ok_or_else(|| McpError::UnknownResource(uri.to_string()))?, &s, None)
                }
            }),
            "logging/setLevel" => self.open_session(head, now).map(|s| {
                let callouts = self.fan_out(&s, body, |server| server.logging);
                BodyAction::FanOut(Reply::json(200, jsonrpc::result_body(id, "{}")), callouts)
            }),
            other => Err(McpError::MethodNotFound(other.to_string())),
        };
        result.and_then(|action| self.translated(head, action, body)).unwrap_or_else(|e| BodyAction::Reply(Reply::error(Some(id), &e)))
    }

    /// A handshake-era request forwarded to a server that speaks only
    /// 2026-07-28, as that revision wants it: its `_meta` (version, client
    /// info and capabilities) in the params, and `Mcp-Method`/`Mcp-Name`.
    /// Anything else goes as it is.
    fn translated(&self, head: &RequestHead, action: BodyAction, original: &[u8]) -> Result<BodyAction, McpError> {
        let BodyAction::Forward(mut f) = action else { return Ok(action) };
        let modern_client = self.config.stateless_era && head.protocol_version.as_deref() == Some(STATELESS_VERSION);
        if f.bridge || modern_client || !self.server(f.server).is_some_and(|s| s.modern_only) {
            return Ok(BodyAction::Forward(f));
        }
        let source = f.body.as_deref().unwrap_or(original);
        let mut message: serde_json::Value =
            serde_json::from_slice(source).map_err(|e| McpError::Internal(format!("re-reading a request to translate it: {e}")))?;
        let Some(method) = message.get("method").and_then(serde_json::Value::as_str).map(str::to_string) else {
            return Ok(BodyAction::Forward(f));
        };
        let name = ["/params/name", "/params/uri"].iter().find_map(|p| message.pointer(p)?.as_str().map(str::to_string));
        if let Some(obj) = message.as_object_mut() {
            let params = obj.entry("params").or_insert_with(|| serde_json::json!({}));
            if let Some(params) = params.as_object_mut() {
                let meta = params.entry("_meta").or_insert_with(|| serde_json::json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert("io.modelcontextprotocol/protocolVersion".into(), STATELESS_VERSION.into());
                    meta.insert(
                        "io.modelcontextprotocol/clientInfo".into(),
                        serde_json::json!({ "name": self.config.server_info.name, "version": self.config.server_info.version }),
                    );
                    meta.entry("io.modelcontextprotocol/clientCapabilities").or_insert_with(|| serde_json::json!({}));
                }
            }
        }
        f.body = Some(serde_json::to_vec(&message).map_err(|e| McpError::Internal(e.to_string()))?);
        f.upstream_session = None;
        f.upstream_version = Some(STATELESS_VERSION.to_string());
        f.mcp_name = name.as_deref().map(encode_header_value);
        f.mcp_method = Some(method);
        Ok(BodyAction::Forward(f))
    }

    fn open_session(&self, head: &RequestHead, now: Now) -> Result<Rc<SessionState>, McpError> {
        // A 2026-07-28 request carries no session: it needs none, since every
        // upstream is stateless when the gateway serves that revision.
        if self.config.stateless_era && head.protocol_version.as_deref() == Some(STATELESS_VERSION) {
            let state =
                SessionState { issued_at: now.unix_secs, entropy: 0, version: STATELESS_VERSION.into(), upstreams: Default::default() };
            return Ok(Rc::new(state));
        }
        if let Some(v) = head.protocol_version.as_deref() {
            if !SUPPORTED_VERSIONS.contains(&v) {
                return Err(McpError::InvalidRequest(format!(
                    "unsupported MCP-Protocol-Version {v:?}; supported: {}",
                    SUPPORTED_VERSIONS.join(", ")
                )));
            }
        }
        let token = head.session_id.as_deref().ok_or(McpError::MissingSession)?;
        if head.session_ended {
            return Err(McpError::SessionNotFound("it was ended by a DELETE".into()));
        }
        // A session id is immutable: once opened, what it holds is kept for
        // its next requests (decrypting is most of a call's cost), and only
        // its age is checked again.
        if let Some(state) = self.sessions.borrow().get(token) {
            if now.unix_secs.saturating_sub(state.issued_at) <= self.config.session.ttl_seconds {
                return Ok(Rc::clone(state));
            }
        }
        let state = Rc::new(self.sealer.open(token, now.unix_secs).map_err(|e| McpError::SessionNotFound(e.to_string()))?);
        let mut cache = self.sessions.borrow_mut();
        if cache.len() >= MAX_OPENED_SESSIONS {
            cache.clear();
        }
        cache.insert(token.to_string(), Rc::clone(&state));
        Ok(state)
    }

    /// Client notifications that concern the upstreams go to every server of
    /// the session: a `cancelled` names a request id that only the server
    /// handling it knows, and the others ignore it, as the spec asks.
    fn notification(&self, head: &RequestHead, body: &[u8], method: &str, now: Now) -> BodyAction {
        let relayed = matches!(method, "notifications/cancelled" | "notifications/progress" | "notifications/roots/list_changed");
        match self.open_session(head, now) {
            Ok(s) if relayed => BodyAction::FanOut(Reply::accepted(), self.fan_out(&s, body, |_| true)),
            // The gateway already sent `initialized` to each upstream; other
            // notifications have no upstream to go to.
            Ok(_) => BodyAction::Reply(Reply::accepted()),
            Err(e) if head.session_id.is_some() => BodyAction::Reply(Reply::error(None, &e)),
            Err(_) => BodyAction::Reply(Reply::accepted()),
        }
    }

    /// A client's answer to a request an upstream sent it (sampling,
    /// elicitation, roots): to that upstream, with its own id put back.
    fn answer(&self, head: &RequestHead, body: &[u8], id: Option<&RawValue>, now: Now) -> BodyAction {
        let result = match id.and_then(|id| relay::inbound(body, id.get())) {
            None => Err(McpError::InvalidRequest(format!(
                "the response's id {} answers no request the gateway relayed",
                id.map_or("null", |i| i.get())
            ))),
            Some((name, upstream_body)) => self.open_session(head, now).and_then(|s| {
                let server = self.config.servers.iter().position(|s| s.name == name).ok_or_else(|| {
                    McpError::InvalidRequest(format!("the response is for server {name:?}, which the gateway no longer serves"))
                })?;
                self.forward("null", server, &s, Some(upstream_body))
            }),
        };
        result.unwrap_or_else(|e| BodyAction::Reply(Reply::error(None, &e)))
    }

    /// `body` sent as it is to each chosen server the session can reach.
    fn fan_out(&self, session: &SessionState, body: &[u8], choose: impl Fn(&UpstreamServer) -> bool) -> Vec<Callout> {
        self.config
            .servers
            .iter()
            .enumerate()
            // The 2026-07-28 revision has no session notifications.
            .filter(|(_, server)| choose(server) && !server.modern_only)
            .filter_map(|(i, server)| {
                if !server.stateful {
                    return Some(callout(i, server, None, server.protocol_version.as_deref(), body.to_vec()));
                }
                let upstream = session.upstreams.get(&server.name);
                if upstream.is_some_and(|u| u.error.is_some()) {
                    return None;
                }
                let id = upstream.and_then(|u| u.id.as_deref());
                Some(callout(i, server, id, upstream.and_then(|u| u.version.as_deref()), body.to_vec()))
            })
            .collect()
    }

    /// The answer to `server/discover` (2026-07-28).
    fn discover_result(&self) -> String {
        let mut versions = vec![STATELESS_VERSION];
        versions.extend_from_slice(SUPPORTED_VERSIONS);
        let mut result = serde_json::json!({
            "supportedVersions": versions,
            "capabilities": self.config.capabilities,
            "ttlMs": 0,
            "cacheScope": "private",
            "resultType": "complete",
            "_meta": { "io.modelcontextprotocol/serverInfo": { "name": self.config.server_info.name, "version": self.config.server_info.version } },
        });
        if let (Some(text), Some(obj)) = (&self.config.instructions, result.as_object_mut()) {
            obj.insert("instructions".into(), text.clone().into());
        }
        result.to_string()
    }

    /// A list answered from the configuration, a page at a time.
    fn list(&self, head: &RequestHead, now: Now, id: &str, params: Option<&RawValue>, answer: &ListAnswer) -> Result<BodyAction, McpError> {
        let session = self.open_session(head, now)?;
        #[derive(Deserialize)]
        struct ListParams {
            cursor: Option<String>,
        }
        let cursor = match params {
            Some(p) => {
                serde_json::from_str::<ListParams>(p.get())
                    .map_err(|e| McpError::InvalidParams(format!("params.cursor must be a string: {e}")))?
                    .cursor
            }
            None => None,
        };
        let result = answer.answer(cursor.as_deref(), session.version == STATELESS_VERSION)?;
        Ok(BodyAction::Reply(Reply::json(200, jsonrpc::result_body(id, &result))))
    }

    /// Sends the request to `server`, in the client's session with it.
    fn forward(&self, id: &str, server: usize, session: &SessionState, body: Option<Vec<u8>>) -> Result<BodyAction, McpError> {
        let upstream_server = self.server(server).ok_or_else(|| McpError::Internal("route to a missing server".into()))?;
        let mut forward = Forward {
            request_id: id.to_string(),
            server,
            upstream_session: None,
            upstream_version: None,
            body,
            mcp_name: None,
            bridge: false,
            mcp_method: None,
        };
        // A server that speaks 2026-07-28 takes such requests as they are,
        // whether or not it also keeps sessions for handshake-era clients;
        // only one that does not speak it needs the bridge.
        if session.version == STATELESS_VERSION && !upstream_server.modern {
            if self.config.events.is_none() {
                return Err(McpError::UpstreamUnavailable {
                    server: upstream_server.name.clone(),
                    reason: "it needs a session or an older protocol revision, and no era bridge is configured".into(),
                });
            }
            forward.bridge = true;
            return Ok(BodyAction::Forward(forward));
        }
        let (upstream_session, upstream_version) = if upstream_server.stateful {
            // A server added to the catalog after this session began has no
            // entry: it is reached without a session (and says so if it needs one).
            match session.upstreams.get(&upstream_server.name) {
                Some(UpstreamSession { error: Some(reason), .. }) => {
                    return Err(McpError::UpstreamUnavailable { server: upstream_server.name.clone(), reason: reason.clone() })
                }
                Some(u) => (u.id.clone(), u.version.clone()),
                None => (None, None),
            }
        } else if session.version == STATELESS_VERSION {
            // Relayed as it is: the client's version header matches its `_meta`.
            (None, None)
        } else {
            (None, upstream_server.protocol_version.clone())
        };
        Ok(BodyAction::Forward(Forward { upstream_session, upstream_version, ..forward }))
    }

    fn initialize(&self, id: &str, params: Option<&RawValue>, now: Now) -> BodyAction {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct InitParams<'a> {
            protocol_version: Option<String>,
            #[serde(borrow)]
            capabilities: Option<&'a RawValue>,
        }
        let params = params.and_then(|p| serde_json::from_str::<InitParams<'_>>(p.get()).ok());
        let (asked, capabilities) = match params {
            Some(p) => (p.protocol_version, p.capabilities),
            None => (None, None),
        };
        let version = match asked {
            Some(v) if SUPPORTED_VERSIONS.contains(&v.as_str()) => v,
            _ => LATEST_VERSION.to_string(),
        };
        // The upstreams learn what the client can do (sampling, elicitation,
        // roots): the gateway relays their requests for it to the client.
        let capabilities = capabilities.map(RawValue::get).filter(|c| c.starts_with('{')).unwrap_or("{}");
        if !self.config.servers.iter().any(|s| s.stateful) {
            return BodyAction::Reply(self.initialize_reply(id, &version, &[], now).0);
        }
        let init_body = format!(
            r#"{{"jsonrpc":"2.0","id":{INIT_ID},"method":"initialize","params":{{"protocolVersion":{},"capabilities":{capabilities},"clientInfo":{{"name":{},"version":{}}}}}}}"#,
            jsonrpc::json_string(&version),
            jsonrpc::json_string(&self.config.server_info.name),
            jsonrpc::json_string(&self.config.server_info.version),
        );
        // Stateless servers need no session: they are called as they are.
        let callouts = self
            .config
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.stateful)
            .map(|(i, s)| callout(i, s, None, None, init_body.clone().into_bytes()))
            .collect();
        BodyAction::Initialize(InitPlan { id: id.to_string(), version, callouts })
    }

    /// Answers the client's `initialize` once every upstream has answered
    /// (or failed). Also returns the `notifications/initialized` callouts to
    /// send to the upstreams that accepted, before the reply goes out.
    pub fn initialized(&self, plan: &InitPlan, responses: &[Option<CalloutResponse>], now: Now) -> (Reply, Vec<Callout>) {
        let upstreams: Vec<(usize, UpstreamSession)> = plan
            .callouts
            .iter()
            .zip(responses.iter().chain(std::iter::repeat(&None)))
            .map(|(c, r)| (c.server, upstream_session(r.as_ref())))
            .collect();
        self.initialize_reply(&plan.id, &plan.version, &upstreams, now)
    }

    fn initialize_reply(&self, id: &str, version: &str, upstreams: &[(usize, UpstreamSession)], now: Now) -> (Reply, Vec<Callout>) {
        let mut state =
            SessionState { issued_at: now.unix_secs, entropy: now.entropy, version: version.to_string(), upstreams: Default::default() };
        let mut followups = Vec::new();
        for (index, session) in upstreams {
            let Some(server) = self.server(*index) else { continue };
            if session.error.is_none() {
                let body = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec();
                followups.push(callout(*index, server, session.id.as_deref(), session.version.as_deref(), body));
            }
            state.upstreams.insert(server.name.clone(), session.clone());
        }
        let mut result = serde_json::json!({
            "protocolVersion": version,
            "capabilities": self.config.capabilities,
            "serverInfo": { "name": self.config.server_info.name, "version": self.config.server_info.version },
        });
        if let (Some(text), Some(obj)) = (&self.config.instructions, result.as_object_mut()) {
            obj.insert("instructions".into(), text.clone().into());
        }
        let mut reply = Reply::json(200, jsonrpc::result_body(id, &result.to_string()));
        reply.headers.push(("mcp-session-id", self.sealer.seal(&state)));
        (reply, followups)
    }
}

/// A client must not name one tool in `Mcp-Name` and call another in the
/// body: an intermediary routing or authorising on the header would be fooled.
fn check_name_header(head: &RequestHead, in_body: &str) -> Result<(), McpError> {
    let Some(raw) = head.mcp_name.as_deref() else { return Ok(()) };
    match decode_header_value(raw) {
        Some(h) if h == in_body => Ok(()),
        _ => Err(McpError::HeaderMismatch(format!("Mcp-Name {raw:?} but the body names {in_body:?}"))),
    }
}

/// The caller a verified JWT payload (base64url JSON, as Envoy forwards it)
/// names. Envoy checked the signature, issuer, audience and expiry; this
/// reads only who it is for.
fn caller_from_jwt(claims: &crate::config::JwtClaims, payload: &str) -> Result<Caller, McpError> {
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

/// The body with the exposed name at `span` replaced by the upstream's own,
/// or `None` when they are the same.
fn rename(body: &[u8], span: std::ops::Range<usize>, exposed: &str, upstream: &str) -> Option<Vec<u8>> {
    (exposed != upstream).then(|| jsonrpc::splice(body, span, jsonrpc::json_string(upstream).as_bytes()))
}

fn check_post_headers(head: &RequestHead) -> Result<(), McpError> {
    let ct = head.content_type.as_deref().unwrap_or_default();
    if !media_type(ct).eq_ignore_ascii_case("application/json") {
        return Err(McpError::UnsupportedMediaType(ct.to_string()));
    }
    // The client must take both: the gateway answers JSON, upstreams may
    // stream their answer as SSE.
    let accept = head.accept.as_deref().unwrap_or_default();
    match Accepts::of(accept) {
        Accepts { json: true, sse: true } => Ok(()),
        _ => Err(McpError::NotAcceptable(accept.to_string())),
    }
}

fn callout(index: usize, server: &UpstreamServer, session: Option<&str>, version: Option<&str>, body: Vec<u8>) -> Callout {
    let mut headers = vec![
        (":method", "POST".to_string()),
        (":path", server.path.clone()),
        (":authority", server.authority.clone()),
        ("content-type", "application/json".to_string()),
        ("accept", "application/json, text/event-stream".to_string()),
    ];
    if let Some(s) = session {
        headers.push(("mcp-session-id", s.to_string()));
    }
    if let Some(v) = version {
        headers.push(("mcp-protocol-version", v.to_string()));
    }
    // `Callout` headers are static names; the server's own credentials are
    // added by the glue from the configuration (see `Callout::server`).
    Callout { server: index, cluster: server.cluster.clone(), headers, body }
}

/// Reads an upstream's answer to the filter's `initialize`.
fn upstream_session(response: Option<&CalloutResponse>) -> UpstreamSession {
    let failed = |reason: String| UpstreamSession { id: None, version: None, error: Some(reason) };
    let Some(r) = response else {
        return failed("no answer to initialize (connection failed or timed out)".into());
    };
    if r.status != 200 {
        return failed(format!("initialize answered HTTP {}", r.status));
    }
    let text = String::from_utf8_lossy(&r.body);
    let is_sse = r.content_type.as_deref().is_some_and(|c| c.starts_with("text/event-stream"));
    let candidates = if is_sse { sse::events(&text) } else { vec![text.into_owned()] };
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct InitResult {
        protocol_version: String,
    }
    #[derive(Deserialize)]
    struct Answer {
        id: Option<serde_json::Value>,
        result: Option<InitResult>,
        error: Option<ErrorObject>,
    }
    #[derive(Deserialize)]
    struct ErrorObject {
        message: String,
    }
    for c in candidates {
        let Ok(a) = serde_json::from_str::<Answer>(&c) else { continue };
        if a.id.as_ref().map(|v| v.to_string()).as_deref() != Some(INIT_ID) {
            continue;
        }
        // What an upstream sends lands in the client's session id (a header):
        // keep it small and well-formed.
        return match (a.result, a.error) {
            (Some(res), _) if !SUPPORTED_VERSIONS.contains(&res.protocol_version.as_str()) => {
                failed(format!("initialize answered an unsupported protocol version {:?}", bounded(&res.protocol_version)))
            }
            (Some(_), _) if r.session_id.as_ref().is_some_and(|id| id.len() > MAX_UPSTREAM_SESSION_ID) => {
                failed(format!("its session id is longer than {MAX_UPSTREAM_SESSION_ID} bytes"))
            }
            (Some(res), _) => UpstreamSession { id: r.session_id.clone(), version: Some(res.protocol_version), error: None },
            (None, Some(err)) => failed(format!("initialize failed: {}", bounded(&err.message))),
            (None, None) => failed("initialize answered neither result nor error".into()),
        };
    }
    failed("initialize answered no JSON-RPC response".into())
}

/// The longest upstream session id carried in a gateway session id.
const MAX_UPSTREAM_SESSION_ID: usize = 256;

/// Where the gateway's port serves Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// Where it serves the seeds' JSON summary.
pub const STATS_PATH: &str = "/stats";
/// The bootstrap's cluster to Envoy's own admin address (envoy/gateway.yaml).
pub const ENVOY_ADMIN_CLUSTER: &str = "envoy_admin";

/// The answer to `GET /metrics`, from the answers to [`HeadAction::Scrape`]'s
/// calls, in their order: Envoy's stats (with the filter's), then the
/// control plane's. Without Envoy's part the scrape fails (503), so that
/// Prometheus marks the target down; without the control plane's it carries
/// `mcp_gateway_control_plane_up 0`, which an alert watches.
pub fn scrape_reply(page: Page, answers: &[Option<CalloutResponse>]) -> Reply {
    let ok = |i: usize| answers.get(i).and_then(Option::as_ref).filter(|a| a.status == 200).map(|a| a.body.as_slice());
    if page == Page::Stats {
        return match ok(0).and_then(|envoy| crate::metrics::stats_summary(envoy, ok(1))) {
            Some(summary) => Reply::json(200, summary.into_bytes()),
            None => Reply::error(
                None,
                &McpError::Internal(format!("Envoy's stats could not be read through the cluster {ENVOY_ADMIN_CLUSTER:?}")),
            ),
        };
    }
    let text = |status: u16, body: Vec<u8>| Reply {
        status,
        headers: vec![("content-type", "text/plain; version=0.0.4; charset=utf-8".to_string())],
        body,
    };
    let Some(envoy) = ok(0) else {
        let why = format!("# Envoy's admin did not answer through the cluster {ENVOY_ADMIN_CLUSTER:?}: the bootstrap (envoy/gateway.yaml) must define it, pointing at the admin address\n");
        return text(503, why.into_bytes());
    };
    let mut body = Vec::with_capacity(envoy.len() + answers.get(1).and_then(Option::as_ref).map_or(256, |a| a.body.len()));
    body.extend_from_slice(envoy);
    if !body.ends_with(b"\n") && !body.is_empty() {
        body.push(b'\n');
    }
    match ok(1) {
        Some(cp) => body.extend_from_slice(cp),
        None => body.extend_from_slice(
            b"# HELP mcp_gateway_control_plane_up Whether this Envoy's filter reached the control plane's metrics.\n# TYPE mcp_gateway_control_plane_up gauge\nmcp_gateway_control_plane_up 0\n",
        ),
    }
    text(200, body)
}

/// The JSON-RPC error object of a request over `limit`: the same whether
/// this Envoy refused it or the control plane's rate limit service did.
pub fn rate_limit_error(limit: &crate::config::RateLimit, retry_after_secs: u64) -> String {
    let e =
        McpError::RateLimited { limit: limit.name.clone(), per_minute: limit.requests_per_minute, burst: limit.burst, retry_after_secs };
    let (code, _) = e.code_and_status();
    serde_json::json!({
        "code": code,
        "message": e.to_string(),
        "data": {
            "limit": limit.name,
            "requestsPerMinute": limit.requests_per_minute,
            "burst": limit.burst,
            "retryAfterSeconds": retry_after_secs,
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests;
