//! The filter's decisions, as pure functions of a compiled configuration and
//! what the host handed over (headers, body, time).
//!
//! [`Gateway`] is the dispatcher: [`Gateway::new`] compiles a
//! [`FilterConfig`] into the parts below once per configuration version,
//! and per request [`Gateway::on_headers`] and [`Gateway::decide`] say what
//! to do (pass the request through, reply locally, forward it to one
//! upstream, or first open the client's sessions with every upstream), by
//! asking each part in turn:
//!
//! - `route`: which server serves a name or a URI;
//! - `auth`: who the caller is and what it may use;
//! - `lists`: the list answers, their pages and cursors;
//! - `handshake`: `initialize`, `server/discover`, and opening sessions;
//! - `era`: the protocol revisions, the era bridge, the translation for a
//!   server of 2026-07-28 only;
//! - `router`: the tool router (`POST /tools`, `search_tools`, `call_tool`);
//! - `scrape`: the operator's pages (`/metrics`, `/stats`, the probes) and their cache;
//! - `edits`: what a request that goes on carries ([`HeaderEdits`]): the
//!   headers dropped and set, its target, the filter state.
//!
//! The parts do not know each other but through what the dispatcher hands
//! them. Nothing here makes a host call or reads a clock: time arrives as
//! [`Now`], and every answer is data ([`crate::decision`]).

mod auth;
mod edits;
mod endpoint;
mod era;
mod exchange;
mod handshake;
mod limits;
mod lists;
mod route;
mod router;
mod scrape;

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::config::{FilterConfig, ServerEra, UpstreamServer, RATE_LIMIT_HEADER_PREFIX};
use crate::decision::{
    Audit, BodyAction, Callout, CalloutResponse, ConfigError, Decision, Forward, HeadAction, HeaderEdits, InitPlan, NoneOpened, Now,
    Opened, OpenedSessions, Page, Reply, RequestHead,
};
use crate::error::McpError;
use crate::headers::{bounded, decode_header_value, encode_header_value, media_type, Accepts};
use crate::jsonrpc::{self, CompletionRef, Message};
use crate::policy::{Caller, Kind, Ruling};
use crate::relay;
use crate::revocation::Slot;
use crate::session::UpstreamSession;
use crate::uri;
use handshake::InSession;

pub use era::{LATEST_VERSION, STATELESS_VERSION, SUPPORTED_VERSIONS};
// The control plane's rate limit service answers with the same error, under
// this name.
pub use crate::ratelimit::rate_limit_error;
pub use scrape::{scrape_reply, Operator, ScrapeCache, CONSOLE_PAGE, ENVOY_ADMIN_CLUSTER, METRICS_PATH, ROUTED_PATHS, STATS_PATH};

/// The least room a scrape's answers get (see [`Gateway::callout_limit`]).
const SCRAPE_LIMIT: usize = 64 * 1024 * 1024;

/// A configuration compiled for answering requests.
pub struct Gateway {
    config: FilterConfig,
    routes: route::Routes,
    api_keys: auth::ApiKeys,
    lists: lists::ListCache,
    /// The virtual servers, in the configuration's order.
    views: Vec<endpoint::View>,
    handshake: handshake::Handshake,
    /// Callers' exchanged tokens, per server that takes them.
    exchanged: exchange::ExchangeCache,
    /// When the host loaded this configuration (Unix seconds), for the
    /// router's status.
    loaded_at: Option<u64>,
}

impl Gateway {
    pub fn new(config: FilterConfig) -> Result<Self, ConfigError> {
        if let Some(bad) = config.rate_limits.iter().find(|l| l.requests_per_minute == 0 || l.burst == 0) {
            return Err(ConfigError::BadLimit(bad.name.clone()));
        }
        Ok(Gateway {
            routes: route::Routes::new(&config)?,
            api_keys: auth::ApiKeys::new(&config)?,
            lists: lists::ListCache::new(&config, None),
            views: (0..config.endpoints.len()).map(|i| endpoint::View::new(&config, i)).collect::<Result<_, _>>()?,
            handshake: handshake::Handshake::new(&config)?,
            exchanged: exchange::ExchangeCache::default(),
            config,
            loaded_at: None,
        })
    }

    /// The same gateway, loaded by the host at `unix_secs`.
    pub fn loaded(self, unix_secs: u64) -> Self {
        Gateway { loaded_at: Some(unix_secs), ..self }
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
        if let Err(e) = auth::check_host(&self.config, head) {
            return HeadAction::Reply(Reply::error(None, &e));
        }
        // A foreign web page gets nothing from any path: not the operator's
        // pages, not what the route table sends elsewhere.
        if let Err(e) = auth::check_origin(&self.config, head) {
            return HeadAction::Refuse(auth::refused(&self.config, head, &e));
        }
        let path = head.path.split('?').next().unwrap_or_default();
        if let Some(reply) = auth::resource_metadata(&self.config, &head.method, path) {
            return HeadAction::Reply(reply);
        }
        if head.method == "POST" && scrape::is_admin_action(path) && self.config.control_plane.is_some() {
            return self.admin_action(head);
        }
        if head.method == "GET" && path != self.config.mcp_path {
            if let Some(op) = scrape::operator(path) {
                return self.operator(head, op);
            }
        }
        if path != self.config.mcp_path && endpoint::of_path(&self.config, path).is_none() {
            if self.config.router.is_none() {
                return HeadAction::PassThrough;
            }
            let path = path.to_string();
            return self.router_head(head, &path).unwrap_or(HeadAction::PassThrough);
        }
        match self.authenticate(head) {
            Ok(caller) => head.caller = caller,
            Err(e) => return HeadAction::Refuse(auth::refused(&self.config, head, &e)),
        }
        let checked = match head.method.as_str() {
            "POST" => check_post_headers(head),
            "DELETE" => return HeadAction::EndSession,
            "GET" if self.config.control_plane.is_some() => return HeadAction::OpenStream,
            other => Err(McpError::MethodNotAllowed(other.to_string())),
        };
        match checked {
            Ok(()) => HeadAction::ReadBody,
            Err(e) => HeadAction::Reply(Reply::error(None, &e)),
        }
    }

    /// An operator's page. With `gateway.auth`, only an admin caller (of a
    /// group in `admin_groups`) gets it; anyone else gets 401 or 403, but for
    /// the probes, which answer up or down to anyone. Without it, anyone
    /// gets every page.
    fn operator(&self, head: &mut RequestHead, mut op: Operator) -> HeadAction {
        // A Prometheus scrape of /stats (the Open guide's metrics_path) asks
        // for the text format: it gets /metrics. A person's curl gets JSON.
        if op.page == Some(Page::Stats) && scrape::wants_prometheus(head.accept.as_deref()) {
            op.page = Some(Page::Metrics);
        }
        let full = |page: Option<Page>| match page {
            Some(page) => HeadAction::Scrape(page, scrape::callouts(&self.config, page)),
            None => HeadAction::PassThrough,
        };
        if self.config.auth.is_none() {
            return full(op.page);
        }
        let refusal = match self.authenticate(head) {
            Ok(Some(caller)) if auth::is_admin(&self.config, &caller) => {
                head.caller = Some(caller);
                // With the filter's token: the admin's credential may be
                // one the control plane cannot check (a JWT).
                if op.guarded && self.config.control_plane.is_some() {
                    return HeadAction::Admin;
                }
                return full(op.page);
            }
            Ok(_) => McpError::Forbidden(
                "the operator's pages need an admin credential: an API key or token of a group in gateway.auth.admin_groups".into(),
            ),
            Err(e) => e,
        };
        match op.probe {
            Some(probe) => HeadAction::Scrape(probe, scrape::callouts(&self.config, probe)),
            None => HeadAction::Refuse(auth::refused(&self.config, head, &refusal)),
        }
    }

    /// Who the client is (see `auth`); `Ok(None)` when authentication is off.
    pub fn authenticate(&self, head: &RequestHead) -> Result<Option<Caller>, McpError> {
        self.api_keys.authenticate(&self.config, head)
    }

    /// A refusal, with the challenge an OAuth client needs to find a token.
    pub fn refusal(&self, id: Option<&str>, e: &McpError) -> Reply {
        auth::refusal(&self.config, id, e)
    }

    /// What every request loses, or gains, as it arrives, before anything
    /// else (see `edits`): the glue applies it first.
    pub fn arrival(&self, head: &RequestHead) -> HeaderEdits<'static> {
        edits::arrival(&self.config, head)
    }

    /// The filter state the audit log reads of a decided request (see
    /// `edits::audit`); `denied` overrules the rules' ruling.
    pub fn audit_record<'a>(&self, head: &'a RequestHead, audit: &'a Audit, denied: Option<&'a str>) -> Vec<(&'static str, Cow<'a, str>)> {
        edits::audit(&self.config, head, audit, denied)
    }

    /// What a forwarded request carries on its way (see `edits`).
    pub fn forward_edits<'a>(&'a self, head: &RequestHead, f: &'a Forward, audit: &Audit) -> Result<HeaderEdits<'a>, Reply> {
        let server = self.server(f.server).ok_or_else(|| Reply::error(None, &McpError::Internal("route to a missing server".into())))?;
        // The key holds the principal, which a JWT or a certificate names:
        // whatever it holds must make a valid header value.
        let global = self
            .limit_buckets(head, audit, true)
            .filter_map(|b| {
                Some((format!("{RATE_LIMIT_HEADER_PREFIX}{}", self.config.rate_limits.get(b.limit)?.name), encode_header_value(&b.key)))
            })
            .collect();
        Ok(edits::forward(&self.config, server, f, global))
    }

    /// Where a client's GET stream goes, once its session and `Accept`
    /// check out: what it carries to the control plane.
    pub fn open_stream(&self, head: &RequestHead, now: Now) -> Result<HeaderEdits<'_>, Reply> {
        let cp = self.config.control_plane.as_ref().ok_or_else(|| Reply::error(None, &McpError::MethodNotAllowed("GET".into())))?;
        let accept = head.accept.as_deref().unwrap_or_default();
        if !Accepts::of(accept).sse {
            return Err(Reply::error(None, &McpError::NotAcceptable(accept.to_string())));
        }
        self.handshake.open(&self.config, head, now).map_err(|e| Reply::error(None, &e))?;
        let caller = head.caller.as_ref().map(|c| encode_header_value(&c.principal));
        Ok(edits::stream(&self.config, cp, caller, self.view_name(head)))
    }

    /// Ends a client session (see `handshake`): the reply, the DELETEs of
    /// its upstream sessions (`opened` finds those this Envoy opened on
    /// first use), and until when the glue records it as ended.
    pub fn end_session(&self, head: &RequestHead, opened: &dyn OpenedSessions, now: Now) -> (Reply, Vec<Callout>, Option<(Slot, u64)>) {
        self.handshake.end_session(&self.config, head, opened, now)
    }

    /// Answers the client's `initialize` once every upstream has answered
    /// (or failed), with the callouts to make first, and the upstream
    /// sessions the id had no room for, for the glue to record.
    pub fn initialized(&self, plan: &InitPlan, responses: &[Option<CalloutResponse>], now: Now) -> (Reply, Vec<Callout>, Vec<Opened>) {
        self.handshake.initialized(&self.config, plan, responses, now)
    }

    /// The largest answer the filter reads of one of its own calls: an
    /// upstream's (`initialize`, DELETE, notifications) is bounded like its
    /// events; a scrape's comes from Envoy's admin and the control plane,
    /// whose stats grow with the catalog, and gets more room. Past it the
    /// answer is not read ([`CalloutResponse::oversized`]).
    pub fn callout_limit(&self, scrape: bool) -> usize {
        if scrape {
            SCRAPE_LIMIT.max(self.config.max_upstream_event_bytes)
        } else {
            self.config.max_upstream_event_bytes
        }
    }

    /// What becomes of an upstream's answer, from its status and whether it
    /// carries a challenge (`WWW-Authenticate`): a refusal of the gateway's
    /// credentials (401, or 403 with a challenge) is the gateway's own error
    /// for the client's request `id`, never the upstream's challenge, which
    /// would send the client's OAuth flow to whatever authorization server
    /// the upstream names. `None`: the answer goes on (without any challenge).
    pub fn upstream_refusal(&self, server: &str, id: Option<&str>, status: u16, challenge: bool) -> Option<Reply> {
        if status != 401 && !(status == 403 && challenge) {
            return None;
        }
        Some(Reply::error(id, &McpError::UpstreamRefusedCredentials { server: server.to_string(), status }))
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

    /// Decides on the complete body, and says what it decided about whom,
    /// where no upstream session was opened on first use.
    pub fn decide(&self, head: &RequestHead, body: &[u8], now: Now) -> Decision {
        self.decide_with(head, body, now, &NoneOpened)
    }

    /// Decides on the complete body, and says what it decided about whom;
    /// `opened` finds the upstream sessions this Envoy opened on first use.
    pub fn decide_with(&self, head: &RequestHead, body: &[u8], now: Now, opened: &dyn OpenedSessions) -> Decision {
        let mut audit = Audit::default();
        let action = self.decide_into(head, body, now, opened, &mut audit);
        Decision { action, audit }
    }

    /// The session a request names, with what this Envoy opened for it since.
    fn in_session<'a>(&self, head: &'a RequestHead, now: Now, opened: &'a dyn OpenedSessions) -> Result<InSession<'a>, McpError> {
        let sealed = self.handshake.open(&self.config, head, now)?;
        Ok(InSession::new(sealed, head, opened))
    }

    fn decide_into(&self, head: &RequestHead, body: &[u8], now: Now, opened: &dyn OpenedSessions, audit: &mut Audit) -> BodyAction {
        if self.config.router.is_some() && self.is_router_request(head) {
            return self.router_search(head, body, audit);
        }
        if let Some(reply) = self.check_size(body.len()) {
            return BodyAction::Reply(reply);
        }
        let (id, method, params) = match jsonrpc::parse(body) {
            Err(e) => return BodyAction::Reply(Reply::error(jsonrpc::readable_id(body), &e)),
            Ok(Message::Notification { method }) => {
                audit.method = method.to_string();
                return self.notification(head, body, &method, now, opened);
            }
            Ok(Message::Response { id }) => {
                audit.method = "response".into();
                return self.answer(head, body, id, now, opened, audit);
            }
            Ok(Message::Request { id, method, params }) => (id.get(), method, params),
        };
        audit.method = method.to_string();
        audit.id = Some(id.to_string());
        if self.config.trace {
            audit.traceparent = jsonrpc::meta_traceparent(params);
        }
        if let Err(e) = check_method_header(head, &method) {
            return BodyAction::Reply(Reply::error(Some(id), &e));
        }
        let caller = head.caller.as_ref();
        let view = self.view(head);
        // Checks the caller may use `name` on `server` (here: on the virtual
        // server the path names, if it does), noting it for the audit log.
        let mut check = |kind: Kind, server: usize, name: &str| -> bool {
            let ruling = self.authorize(view, caller, kind, server, name);
            let allowed = ruling.allowed;
            audit.server = self.server(server).map(|s| s.name.clone());
            audit.target = Some(name.to_string());
            audit.ruling = Some(ruling);
            allowed
        };
        let session = || self.in_session(head, now, opened);
        let result = match method.as_ref() {
            "initialize" => {
                let reach = self.seen_by(caller, view);
                let principal = caller.map(|c| c.principal.as_str());
                return self.handshake.initialize(&self.config, id, params, principal, |i| reach.reaches(i), now);
            }
            "ping" => Ok(BodyAction::Reply(Reply::json(200, jsonrpc::result_body(id, "{}")))),
            "server/discover" if self.config.stateless_era => {
                Ok(BodyAction::Reply(Reply::json(200, jsonrpc::result_body(id, self.handshake.discover_result()))))
            }
            list @ ("tools/list" | "prompts/list" | "resources/list" | "resources/templates/list") => {
                let lists = self.seen_by(caller, view);
                session().and_then(|s| {
                    let answer = lists.of(list).ok_or_else(|| McpError::MethodNotFound(list.to_string()))?;
                    let result = answer.answer(params, s.version == STATELESS_VERSION)?;
                    Ok(BodyAction::Reply(Reply::json(200, jsonrpc::result_body(id, &result))))
                })
            }
            "tools/call" | "prompts/get" => session().and_then(|s| {
                let (name, span) = jsonrpc::tool_name(body, params)?;
                check_name_header(head, &name)?;
                let own = if method == "tools/call" { self.own_tool(&name, view) } else { None };
                // The gateway's own tools: a search answered here, or a call
                // of the tool it names, as if the client had called it.
                let called;
                let (body, name, span) = match own {
                    Some(router::OwnTool::Search) => return self.search_tool(caller, view, id, params, s.version == STATELESS_VERSION),
                    Some(router::OwnTool::Call) => {
                        called = self.called_through(view, id, params)?;
                        (called.0.as_slice(), Cow::Owned(called.1.clone()), called.2.clone())
                    }
                    None => (body, name, span),
                };
                // On a virtual server, the gateway's name of what it calls `name`.
                // (`None`: a gateway name it shows under another, unknown there.)
                let gateway_name = view.map_or(Some(name.as_ref()), |v| v.gateway_name(&name));
                let (found, unknown, kind): (_, fn(String) -> McpError, _) = match method.as_ref() {
                    "tools/call" => (gateway_name.and_then(|g| self.routes.tool(g)), McpError::UnknownTool, Kind::Tool),
                    _ => (gateway_name.and_then(|g| self.routes.prompt(g)), McpError::UnknownPrompt, Kind::Prompt),
                };
                let gateway_name = gateway_name.unwrap_or_default();
                // A denied name is refused exactly as an unknown one; a held
                // one the caller may call, with what changed (under the name
                // it was called by).
                let route = found.filter(|r| check(kind, r.server, gateway_name)).ok_or_else(|| {
                    let held =
                        self.config.held_tools.iter().find(|h| kind == Kind::Tool && !gateway_name.is_empty() && h.name == gateway_name);
                    match held.filter(|h| check(kind, h.server, gateway_name)) {
                        Some(h) => McpError::ToolHeld {
                            name: name.to_string(),
                            server: self.config.servers.get(h.server).map(|s| s.name.clone()).unwrap_or_default(),
                            upstream_name: h.upstream_name.clone(),
                            change: h.change.clone(),
                        },
                        None => unknown(name.to_string()),
                    }
                })?;
                let renamed = route.renamed(body, span, &name);
                let new_body = if own.is_some() { renamed.or_else(|| Some(body.to_vec())) } else { renamed };
                let mut forward = self.forward(id, route.server, &s, new_body)?;
                if head.mcp_name.is_some() {
                    forward.mcp_name = Some(encode_header_value(&route.upstream_name));
                }
                Ok(BodyAction::Forward(forward))
            }),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => session().and_then(|s| {
                let (uri, span) = jsonrpc::resource_uri(body, params)?;
                check_name_header(head, &uri)?;
                let normal = canonical_uri(&uri)?;
                // Judged in normal form; a denied URI is refused exactly as an unknown one.
                let found = self.routes.resource(&normal).filter(|(server, _)| check(Kind::Resource, *server, &normal));
                let (server, listed) = found.ok_or_else(|| McpError::UnknownResource(uri.to_string()))?;
                // The server reads what the rules judged: the URI as it listed
                // it, else the normal form.
                self.forward_uri(id, server, &s, head, body, (&uri, span), listed.unwrap_or(&normal)).map(BodyAction::Forward)
            }),
            "completion/complete" => session().and_then(|s| match jsonrpc::completion_ref(body, params)? {
                CompletionRef::Prompt(name, span) => {
                    check_name_header(head, &name)?;
                    let gateway_name = view.map_or(Some(name.as_ref()), |v| v.gateway_name(&name));
                    let found = gateway_name.and_then(|g| self.routes.prompt(g).map(|r| (g, r)));
                    let route = found.filter(|(g, r)| check(Kind::Prompt, r.server, g)).map(|(_, r)| r);
                    let route = route.ok_or_else(|| McpError::UnknownPrompt(name.to_string()))?;
                    let mut forward = self.forward(id, route.server, &s, route.renamed(body, span, &name))?;
                    if head.mcp_name.is_some() {
                        forward.mcp_name = Some(encode_header_value(&route.upstream_name));
                    }
                    Ok(BodyAction::Forward(forward))
                }
                CompletionRef::Resource(uri, span) => {
                    check_name_header(head, &uri)?;
                    let normal = canonical_uri(&uri)?;
                    // A URI template: refused when a deny covers all of it
                    // (`policy::covers_template`), as its listing is hidden.
                    let found = self.routes.resource(&normal).filter(|(server, _)| check(Kind::Template, *server, &normal));
                    let (server, _) = found.ok_or_else(|| McpError::UnknownResource(uri.to_string()))?;
                    self.forward_uri(id, server, &s, head, body, (&uri, span), &normal).map(BodyAction::Forward)
                }
            }),
            "logging/setLevel" => session().map(|s| {
                let callouts = self.fan_out(head, &s, body, |server| server.logging);
                BodyAction::FanOut(Reply::json(200, jsonrpc::result_body(id, "{}")), callouts)
            }),
            other => Err(McpError::MethodNotFound(other.to_string())),
        };
        result
            .and_then(|action| match action {
                BodyAction::Forward(mut f) => {
                    // Checked against the body above; the upstream gets no
                    // other `Mcp-Method` (see `edits::forward`).
                    f.mcp_method = f.mcp_method.or_else(|| head.mcp_method.clone());
                    era::translated(&self.config, head, f, body, self.handshake.client_info()).map(BodyAction::Forward)
                }
                other => Ok(other),
            })
            .unwrap_or_else(|e| BodyAction::Reply(Reply::error(Some(id), &e)))
    }

    /// Client notifications that concern the upstreams go to every server of
    /// the session: a `cancelled` names a request id that only the server
    /// handling it knows, and the others ignore it, as the spec asks.
    fn notification(&self, head: &RequestHead, body: &[u8], method: &str, now: Now, opened: &dyn OpenedSessions) -> BodyAction {
        if let Err(e) = check_method_header(head, method) {
            return BodyAction::Reply(Reply::error(None, &e));
        }
        let relayed = matches!(method, "notifications/cancelled" | "notifications/progress" | "notifications/roots/list_changed");
        match self.in_session(head, now, opened) {
            Ok(s) if relayed => BodyAction::FanOut(Reply::accepted(), self.fan_out(head, &s, body, |_| true)),
            // The gateway already sent `initialized` to each upstream; other
            // notifications have no upstream to go to.
            Ok(_) => BodyAction::Reply(Reply::accepted()),
            Err(e) if head.session_id.is_some() => BodyAction::Reply(Reply::error(None, &e)),
            Err(_) => BodyAction::Reply(Reply::accepted()),
        }
    }

    /// A client's answer to a request an upstream sent it (sampling,
    /// elicitation, roots): to that upstream, with its own id put back.
    fn answer(
        &self,
        head: &RequestHead,
        body: &[u8],
        id: Option<&RawValue>,
        now: Now,
        opened: &dyn OpenedSessions,
        audit: &mut Audit,
    ) -> BodyAction {
        let result = match id.and_then(|id| relay::inbound(body, id.get())) {
            None => Err(McpError::InvalidRequest(format!(
                "the response's id {} answers no request the gateway relayed",
                id.map_or("null", |i| i.get())
            ))),
            Some((name, upstream_body)) => self.in_session(head, now, opened).and_then(|s| {
                audit.server = Some(name.clone());
                let gone =
                    || McpError::InvalidRequest(format!("the response's id names server {name:?}, which sent this session no request"));
                let server = self.config.servers.iter().position(|s| s.name == name).ok_or_else(gone)?;
                // Only a server the caller may reach, in its session, can
                // have asked it anything: an answer naming another is refused
                // as one for a server that is not there.
                let in_session = !self.config.servers.get(server).is_some_and(|s| s.stateful) || s.upstream(&name).is_some();
                let reached = self.seen_by(head.caller.as_ref(), self.view(head)).reaches(server) && in_session;
                audit.ruling = Some(Ruling {
                    allowed: reached,
                    reason: if reached { "an answer to its request".into() } else { "the caller may not reach this server".into() },
                });
                if !reached {
                    return Err(gone());
                }
                self.forward("null", server, &s, Some(upstream_body))
            }),
        };
        result.map(BodyAction::Forward).unwrap_or_else(|e| BodyAction::Reply(Reply::error(None, &e)))
    }

    /// The lists a caller sees, on the gateway's endpoint or on a virtual
    /// server's, and the servers it may reach there.
    fn seen_by(&self, caller: Option<&Caller>, view: Option<&endpoint::View>) -> std::rc::Rc<lists::Lists> {
        view.map_or(&self.lists, |v| &v.lists).seen_with(&self.config, view, caller)
    }

    /// The name of the virtual server a request's path names, if any.
    fn view_name(&self, head: &RequestHead) -> Option<&str> {
        self.view(head).and_then(|v| v.endpoint(&self.config)).map(|e| e.name.as_str())
    }

    /// The virtual server a request's path names, if any.
    fn view(&self, head: &RequestHead) -> Option<&endpoint::View> {
        let path = head.path.split('?').next().unwrap_or_default();
        endpoint::of_path(&self.config, path).and_then(|i| self.views.get(i))
    }

    /// May the caller use `name` of `server`: the gateway's rules, then on a
    /// virtual server what it offers and its own rules.
    fn authorize(&self, view: Option<&endpoint::View>, caller: Option<&Caller>, kind: Kind, server: usize, name: &str) -> Ruling {
        let ruling = auth::authorize(&self.config, caller, kind, server, name);
        match view {
            Some(v) if ruling.allowed => v.authorize(&self.config, caller, kind, self.server(server).map_or("", |s| s.name.as_str()), name),
            _ => ruling,
        }
    }

    /// `body` sent as it is to each chosen server the session can reach and
    /// the caller may.
    fn fan_out(&self, head: &RequestHead, session: &InSession<'_>, body: &[u8], choose: impl Fn(&UpstreamServer) -> bool) -> Vec<Callout> {
        let reach = self.seen_by(head.caller.as_ref(), self.view(head));
        self.config
            .servers
            .iter()
            .enumerate()
            // The 2026-07-28 revision has no session notifications.
            .filter(|(i, server)| choose(server) && server.era != ServerEra::ModernOnly && reach.reaches(*i))
            .filter_map(|(i, server)| {
                if !server.stateful {
                    return Some(Callout::to(i, server, None, server.protocol_version.as_deref(), body.to_vec()));
                }
                // A server that never opened this session has nothing to hear.
                let upstream = session.upstream(&server.name).filter(|u| u.error.is_none())?;
                Some(Callout::to(i, server, upstream.id.as_deref(), upstream.version.as_deref(), body.to_vec()))
            })
            .collect()
    }

    /// A resource request (`uri`, at `span` in `body`) sent to `server` with
    /// `upstream_uri` in its place, in the body and in `Mcp-Name`.
    #[allow(clippy::too_many_arguments)]
    fn forward_uri(
        &self,
        id: &str,
        server: usize,
        session: &InSession<'_>,
        head: &RequestHead,
        body: &[u8],
        (uri, span): (&str, std::ops::Range<usize>),
        upstream_uri: &str,
    ) -> Result<Forward, McpError> {
        let body = (upstream_uri != uri).then(|| jsonrpc::splice(body, span, jsonrpc::json_string(upstream_uri).as_bytes()));
        let mut forward = self.forward(id, server, session, body)?;
        if head.mcp_name.is_some() {
            forward.mcp_name = Some(encode_header_value(upstream_uri));
        }
        Ok(forward)
    }

    /// Sends the request to `server`, in the client's session with it.
    fn forward(&self, id: &str, server: usize, session: &InSession<'_>, body: Option<Vec<u8>>) -> Result<Forward, McpError> {
        let upstream_server = self.server(server).ok_or_else(|| McpError::Internal("route to a missing server".into()))?;
        if let Some(reason) = &upstream_server.credential_error {
            return Err(McpError::UpstreamCredential { server: upstream_server.name.clone(), reason: reason.clone() });
        }
        let forward = Forward {
            request_id: id.to_string(),
            server,
            upstream_session: None,
            upstream_version: None,
            body,
            mcp_name: None,
            bridge: false,
            mcp_method: None,
            open_first: false,
            upstream_authorization: None,
        };
        if era::bridged(&self.config, &session.version, upstream_server)? {
            return Ok(Forward { bridge: true, ..forward });
        }
        let (upstream_session, upstream_version) = if session.version == STATELESS_VERSION {
            // Relayed as it is (to a server that speaks the revision, or it
            // would have been bridged): the client's version header matches
            // its `_meta`.
            (None, None)
        } else if upstream_server.stateful {
            // A server beyond the room of the session id, or added to the
            // catalog after this session began, has no session yet: the
            // glue opens one first.
            match session.upstream(&upstream_server.name) {
                Some(UpstreamSession { error: Some(reason), .. }) => {
                    return Err(McpError::UpstreamUnavailable { server: upstream_server.name.clone(), reason })
                }
                Some(u) => (u.id, u.version),
                None => return Ok(Forward { open_first: true, ..forward }),
            }
        } else {
            (None, upstream_server.protocol_version.clone())
        };
        Ok(Forward { upstream_session, upstream_version, ..forward })
    }
}

/// `Mcp-Method`, when sent, must be the body's method, for notifications as
/// for requests.
fn check_method_header(head: &RequestHead, method: &str) -> Result<(), McpError> {
    match head.mcp_method.as_deref() {
        Some(h) if h != method => Err(McpError::HeaderMismatch(format!("Mcp-Method {h:?} but the body's method is {method:?}"))),
        _ => Ok(()),
    }
}

/// A resource URI in normal form (`uri::normalize`), or the refusal that
/// says why it has none.
fn canonical_uri(uri: &str) -> Result<String, McpError> {
    uri::normalize(uri).map_err(|why| McpError::InvalidParams(format!("resource URI {:?} is refused: {why}", bounded(uri))))
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

#[cfg(test)]
mod tests;
