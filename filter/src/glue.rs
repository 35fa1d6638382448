//! proxy-wasm glue: the only code that talks to Envoy.
//!
//! Each callback gathers what the core needs (headers, body, time), asks
//! [`Gateway`] for a decision and applies it: a reply, callouts, or the
//! [`HeaderEdits`] of a request that goes on, applied by one function
//! (`Request::apply`). Decisions are made nowhere else: not which headers
//! go, not where a request goes, not what the audit log says. What the glue
//! keeps is Envoy's: shared data (`shared`: rate-limit buckets, ended
//! sessions, upstream sessions opened on first use), stats (`stats`), and
//! its own requests (`callouts`).
//! Request headers are read only in the headers callback and written only
//! before the request continues: touching a header map after its phase has
//! passed is a host error that the SDK turns into a panic.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::config::{FilterConfig, JWT_FAILURE_HEADER, JWT_PAYLOAD_HEADER, LOG_PROPERTY, OWN_REPLY_PROPERTY};
use crate::decision::{Audit, BodyAction, CalloutResponse, Forward, HeadAction, HeaderEdits, Now, Reply, RequestHead, TokenStep};
use crate::error::McpError;
use crate::gateway::{scrape_reply, Gateway, ScrapeCache};
use crate::headers::{address_host, bearer};
use crate::metrics::{self, Tally};
use crate::relay::SseRelay;

use crate::revocation::Slot;

mod callouts;
mod shared;
mod state;
mod stats;
use shared::SharedOpened;
use state::State;
use stats::apply;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { gateway: None, scrapes: Rc::default() }) });
}}

struct Root {
    gateway: Option<Rc<Gateway>>,
    /// This worker's operator pages of the current second (`ScrapeCache`).
    scrapes: Rc<RefCell<ScrapeCache>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            log::error!("mcp filter: no plugin configuration");
            return false;
        };
        let parsed = serde_json::from_slice::<FilterConfig>(&bytes)
            .map_err(|e| format!("invalid configuration: {e}"))
            .and_then(|c| Gateway::new(c).map_err(|e| format!("invalid configuration: {e}")));
        let loaded_at = self.get_current_time().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let parsed = parsed.map(|gw| gw.loaded(loaded_at));
        match parsed {
            Ok(gw) => {
                let c = gw.config();
                log::info!("mcp filter: configuration {} loaded ({} servers, {} tools)", c.version, c.servers.len(), c.tools.len());
                self.gateway = Some(Rc::new(gw));
                true
            }
            // Returning false makes Envoy reject (NACK) this configuration
            // and keep the previous one.
            Err(e) => {
                log::error!("mcp filter: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            context_id,
            gateway: self.gateway.clone(),
            scrapes: Rc::clone(&self.scrapes),
            head: RequestHead::default(),
            state: State::Idle,
            present: Vec::new(),
            tally: None,
            started: UNIX_EPOCH,
            peek: false,
            request_id: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    context_id: u32,
    gateway: Option<Rc<Gateway>>,
    scrapes: Rc<RefCell<ScrapeCache>>,
    head: RequestHead,
    state: State,
    /// The names of the request headers the client sent: a header that is
    /// not there needs no host call to remove.
    present: Vec<String>,
    /// What an MCP request adds to the metrics once it ends (`on_log`).
    tally: Option<Tally>,
    /// When its headers arrived.
    started: std::time::SystemTime,
    /// Its answer is JSON from upstream, not yet looked at for an error.
    peek: bool,
    /// Envoy's `x-request-id`, for the access log.
    request_id: Option<String>,
}

/// How long `GET /metrics` waits for Envoy's stats and the control plane's:
/// well inside Prometheus's default scrape timeout (10 s).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

impl Request {
    /// Removes a request header, if the client sent it.
    fn drop_header(&self, name: &str) {
        if self.present.iter().any(|p| p == name) {
            self.set_http_request_header(name, None);
        }
    }

    /// Applies a plan of the core's, before the request continues: filter
    /// state, then the drops, then the writes that change something (see
    /// [`HeaderEdits`]).
    fn apply(&self, edits: &HeaderEdits) {
        self.set_properties(&edits.properties);
        for name in &edits.drop {
            self.drop_header(name);
        }
        for (name, value) in edits.changes(&self.head) {
            self.set_http_request_header(name, Some(value));
        }
    }

    fn set_properties(&self, properties: &[(&str, std::borrow::Cow<'_, str>)]) {
        for (name, value) in properties {
            self.set_property(vec![name], Some(value.as_bytes()));
        }
    }

    fn now(&self) -> Now {
        self.at(self.get_current_time())
    }

    /// The core's `Now` for a time already read.
    fn at(&self, time: std::time::SystemTime) -> Now {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        Now { unix_secs: since.as_secs(), entropy: (since.as_nanos() as u64) ^ (u64::from(self.context_id) << 40) }
    }

    fn reply(&mut self, r: &Reply) {
        self.state = State::Idle;
        if let Some(t) = &mut self.tally {
            t.status = r.status;
            t.code = metrics::error_code(&r.body);
            t.session_opened = t.method == "initialize" && r.status == 200 && r.headers.iter().any(|(k, _)| *k == "mcp-session-id");
        }
        self.publish();
        let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.send_http_response(u32::from(r.status), headers, Some(&r.body));
    }

    /// A tally for this request: `base`, with who called and in which revision.
    fn tally_of(&self, base: Tally) -> Tally {
        Tally {
            principal: self.head.caller.as_ref().map(|c| c.principal.clone()),
            era: self.head.protocol_version.clone(),
            request_id: self.request_id.clone(),
            http_method: Some(self.head.method.clone()),
            ..base
        }
    }

    /// Hands the access log the request's MCP members, once its answer is
    /// known: Envoy's access loggers run before `on_log`. Nothing when no
    /// access log reads them.
    fn publish(&self) {
        if !self.gateway.as_ref().is_some_and(|gw| gw.config().access_log) {
            return;
        }
        if let Some(t) = &self.tally {
            self.set_property(vec![LOG_PROPERTY], Some(metrics::log_record(t).as_bytes()));
        }
    }

    /// Sends a forwarded request on: the core's edits applied, the body
    /// replaced when it changed (`body_len`, the client's body's length,
    /// when not done already), and the state set for its answer. False when
    /// it was answered instead.
    fn send_on(&mut self, gw: &Gateway, f: &Forward, audit: &Audit, body_len: Option<usize>) -> bool {
        let edits = match gw.forward_edits(&self.head, f, audit) {
            Ok(edits) => edits,
            Err(reply) => {
                self.reply(&reply);
                return false;
            }
        };
        self.apply(&edits);
        if let (Some(new_body), Some(len)) = (&f.body, body_len) {
            self.set_http_request_body(0, len, new_body);
        }
        let server = gw.server(f.server).map(|s| s.name.clone());
        self.state = State::Forwarded { client_session: self.head.session_id.take(), server, request_id: audit.id.clone(), relay: None };
        true
    }

    /// Sends a forward on, or first opens the client's session with its
    /// server (the request waits, its body already in the form the server
    /// takes; `body_len`, the client's body's length, when not done
    /// already). True when the request goes on now.
    fn go_on(&mut self, gw: &Gateway, f: Forward, audit: Audit, body_len: Option<usize>, now: Now) -> bool {
        if !f.open_first {
            return self.send_on(gw, &f, &audit, body_len);
        }
        match gw.open_upstream(&self.head, &f, now) {
            Ok(callout) => {
                if let (Some(new_body), Some(len)) = (&f.body, body_len) {
                    self.set_http_request_body(0, len, new_body);
                }
                let tokens = self.dispatch(gw, &[callout], Self::timeout(gw));
                self.state = State::Opening { forward: f, audit, tokens, response: None };
                self.advance(gw);
            }
            Err(reply) => self.reply(&reply),
        }
        false
    }

    fn on_complete_body(&mut self, gw: &Gateway, body: &[u8]) -> Action {
        let now = self.now();
        let decision = gw.decide_with(&self.head, body, now, &SharedOpened { request: self, now: now.unix_secs });
        self.tally = Some(self.tally_of(Tally::from_audit(&decision.audit)));
        let buckets = gw.buckets(&self.head, &decision.audit);
        if let Some((bucket, retry_ms)) = self.take_tokens(gw, &buckets, Gateway::cost(&decision.action)) {
            let refusal = gw.rate_limited(&decision.audit, bucket, retry_ms);
            if let Some(t) = &mut self.tally {
                t.refused(&refusal.cause);
            }
            self.set_properties(&gw.audit_record(&self.head, &decision.audit, Some(&refusal.reason)));
            self.reply(&refusal.reply);
            return Action::Pause;
        }
        self.set_properties(&gw.audit_record(&self.head, &decision.audit, None));
        match decision.action {
            BodyAction::Reply(r) => {
                self.reply(&r);
                Action::Pause
            }
            BodyAction::Forward(f) => match gw.upstream_token(&self.head, f, now) {
                Ok(TokenStep::Ready(f)) => {
                    if self.go_on(gw, f, decision.audit, Some(body.len()), now) {
                        Action::Continue
                    } else {
                        Action::Pause
                    }
                }
                // The caller's token is exchanged first; the request waits,
                // its body already in the form the server takes.
                Ok(TokenStep::Exchange(f, callout)) => {
                    if let Some(new_body) = &f.body {
                        self.set_http_request_body(0, body.len(), new_body);
                    }
                    let tokens = self.dispatch(gw, &[callout], Self::timeout(gw));
                    self.state = State::Exchanging { forward: f, audit: decision.audit, tokens, response: None };
                    self.advance(gw);
                    Action::Pause
                }
                Err(reply) => {
                    self.reply(&reply);
                    Action::Pause
                }
            },
            BodyAction::FanOut(reply, callouts) => {
                let tokens = self.dispatch(gw, &callouts, Self::timeout(gw));
                self.state = State::Confirming { reply, tokens };
                self.advance(gw);
                Action::Pause
            }
            BodyAction::Initialize(plan) => {
                let tokens = self.dispatch(gw, &plan.callouts, Self::timeout(gw));
                let responses = vec![None; plan.callouts.len()];
                self.state = State::Initializing { plan, tokens, responses };
                self.advance(gw);
                Action::Pause
            }
        }
    }

    /// Answers on the headers alone: at once if there is no body, else once
    /// it has arrived.
    fn reply_once_read(&mut self, reply: Reply, end_of_stream: bool) -> Action {
        if end_of_stream {
            self.reply(&reply);
        } else {
            self.state = State::Refusing(reply);
        }
        Action::Pause
    }

    /// Sends a refusal decided on the headers, once the body has arrived.
    fn refuse_at_end(&mut self, now: bool) -> Action {
        if now {
            if let State::Refusing(r) = std::mem::replace(&mut self.state, State::Idle) {
                self.reply(&r);
            }
        }
        Action::Pause
    }

    /// Moves a fan-out on (initialize, DELETE, a notification) once no
    /// callout is outstanding: the next round, or the reply.
    fn advance(&mut self, gw: &Gateway) {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Initializing { plan, tokens, responses } if tokens.is_empty() => {
                let (reply, followups, opened) = gw.initialized(&plan, &responses, self.now());
                for o in &opened {
                    self.record_opened(o);
                }
                let tokens = self.dispatch(gw, &followups, Self::timeout(gw));
                self.state = State::Confirming { reply, tokens };
                self.advance(gw);
            }
            State::Confirming { reply, tokens } if tokens.is_empty() => self.reply(&reply),
            State::Exchanging { forward, audit, tokens, response } if tokens.is_empty() => {
                let now = self.now();
                match gw.upstream_token_exchanged(&self.head, forward, response.as_ref(), now) {
                    Ok(forward) => {
                        if self.go_on(gw, forward, audit, None, now) {
                            self.resume_http_request();
                        }
                    }
                    Err(reply) => self.reply(&reply),
                }
            }
            State::Opening { forward, audit, tokens, response } if tokens.is_empty() => {
                match gw.upstream_opened(&self.head, forward, response.as_ref(), self.now()) {
                    Ok((forward, opened, callouts)) => {
                        self.record_opened(&opened);
                        let tokens = self.dispatch(gw, &callouts, Self::timeout(gw));
                        self.state = State::Resuming { forward, audit, tokens };
                        self.advance(gw);
                    }
                    Err(reply) => self.reply(&reply),
                }
            }
            // The request has waited in its body phase: its headers can
            // still change, and it goes on from there.
            State::Resuming { forward, audit, tokens } if tokens.is_empty() => {
                if self.send_on(gw, &forward, &audit, None) {
                    self.resume_http_request();
                }
            }
            State::Scraping { page, tokens, responses } if tokens.is_empty() => {
                let reply = scrape_reply(page, &responses);
                if let Ok(mut cache) = self.scrapes.try_borrow_mut() {
                    cache.keep(page, self.now(), &reply);
                }
                self.reply(&reply);
            }
            other => self.state = other,
        }
    }
}

impl Context for Request {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _trailers: usize) {
        let Some(gw) = self.gateway.clone() else { return };
        // An answer past the limit is not copied into the VM.
        let oversized = body_size > gw.callout_limit(matches!(self.state, State::Scraping { .. }));
        // A reset or timeout arrives with no headers.
        let response = (num_headers > 0).then(|| {
            let header = |name| self.get_http_call_response_header_bytes(name).map(|b| String::from_utf8_lossy(&b).into_owned());
            CalloutResponse {
                status: header(":status").and_then(|s| s.parse().ok()).unwrap_or(0),
                session_id: header("mcp-session-id"),
                content_type: header("content-type"),
                body: if oversized { Vec::new() } else { self.get_http_call_response_body(0, body_size).unwrap_or_default() },
                oversized,
            }
        });
        match &mut self.state {
            State::Initializing { tokens, responses, .. } | State::Scraping { tokens, responses, .. } => {
                if let Some(i) = tokens.remove(&token) {
                    if let Some(slot) = responses.get_mut(i) {
                        *slot = response;
                    }
                }
            }
            State::Opening { tokens, response: answer, .. } | State::Exchanging { tokens, response: answer, .. } => {
                if tokens.remove(&token).is_some() {
                    *answer = response;
                }
            }
            State::Confirming { tokens, .. } | State::Resuming { tokens, .. } => {
                tokens.remove(&token);
            }
            _ => return,
        }
        self.advance(&gw);
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(gw) = self.gateway.clone() else {
            self.reply(&Reply::error(None, &McpError::Internal("the MCP filter has no valid configuration".into())));
            return Action::Pause;
        };
        // One clock read for the whole callback, and one host call for
        // every header, rather than one per header read.
        let arrived = self.get_current_time();
        let now = self.at(arrived);
        let sent = self.get_http_request_headers_bytes();
        self.present = sent.iter().map(|(name, _)| name.clone()).collect();
        let header = |name: &str| sent.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        self.request_id = header("x-request-id");
        self.head = RequestHead {
            method: header(":method").unwrap_or_default(),
            path: header(":path").unwrap_or_default(),
            content_type: header("content-type"),
            accept: header("accept"),
            session_id: header("mcp-session-id"),
            protocol_version: header("mcp-protocol-version"),
            mcp_method: header("mcp-method"),
            mcp_name: header("mcp-name"),
            credential: header("authorization").and_then(|a| bearer(&a)).or_else(|| header("x-api-key")),
            jwt_payload: header(JWT_PAYLOAD_HEADER),
            // Why jwt_authn refused a token, copied from its metadata by the
            // filter chain (`JWT_FAILURE_HEADER`).
            jwt_failure: header(JWT_FAILURE_HEADER).filter(|m| !m.is_empty() && m != "-"),
            origin: header("origin"),
            host: header(":authority"),
            session_ended: false,
            peer_certificate: None,
            caller: None,
            // Read only for what keys on it (a limit on refused callers).
            source: if gw.needs_source() {
                self.get_property(vec!["source", "address"]).map(|b| address_host(&String::from_utf8_lossy(&b)).to_string())
            } else {
                None
            },
        };
        if let Some(slot) = self.head.session_id.as_deref().and_then(Slot::of) {
            self.head.session_ended = self.get_shared_data(&slot.key).0.is_some_and(|stored| slot.ended(&stored, now.unix_secs));
        }
        if gw.config().auth.as_ref().is_some_and(|a| a.client_certificates) {
            let property = |name: &str| {
                self.get_property(vec!["connection", name]).map(|b| String::from_utf8_lossy(&b).into_owned()).filter(|v| !v.is_empty())
            };
            self.head.peer_certificate = property("uri_san_peer_certificate")
                .or_else(|| property("dns_san_peer_certificate"))
                .or_else(|| property("subject_peer_certificate"));
        }
        // Before any decision: a client-sent x-mcp-cluster must be gone even
        // from a request answered locally (the local-reply mapper keys on it).
        self.apply(&gw.arrival(&self.head));
        let mut head = std::mem::take(&mut self.head);
        let action = gw.on_headers(&mut head);
        self.head = head;
        // Every MCP request is counted when it ends; until its body is
        // read, by the method its Mcp-Method header names, if any.
        let method = match &action {
            HeadAction::PassThrough | HeadAction::Scrape(..) | HeadAction::Admin => None,
            HeadAction::OpenStream => Some("GET"),
            HeadAction::EndSession => Some("DELETE"),
            HeadAction::Reply(_) | HeadAction::Refuse(_) | HeadAction::ReadBody => {
                Some(metrics::method_label(self.head.mcp_method.as_deref().unwrap_or_default()))
            }
        };
        if let Some(method) = method {
            self.started = arrived;
            let mut tally = self.tally_of(Tally { method, ..Tally::default() });
            if let HeadAction::Refuse(r) = &action {
                tally.refused(&r.cause);
            }
            self.tally = Some(tally);
        }
        // Requests decided on their headers take from the rate limits too
        // (GET streams, DELETEs, refusals for credentials, by address).
        if let Some((audit, buckets, cost)) = gw.head_charge(&self.head, &action, now) {
            if let Some((bucket, retry_ms)) = self.take_tokens(&gw, &buckets, cost) {
                let refusal = gw.rate_limited(&audit, bucket, retry_ms);
                if let Some(t) = &mut self.tally {
                    t.refused(&refusal.cause);
                }
                self.set_properties(&gw.audit_record(&self.head, &audit, Some(&refusal.reason)));
                return self.reply_once_read(refusal.reply, end_of_stream);
            }
        }
        match action {
            HeadAction::PassThrough => Action::Continue,
            HeadAction::Scrape(page, callouts) => {
                let cached = self.scrapes.try_borrow().ok().and_then(|c| c.fresh(page, now).cloned());
                if let Some(reply) = cached {
                    self.reply(&reply);
                    return Action::Pause;
                }
                let responses = vec![None; callouts.len()];
                let tokens = self.dispatch(&gw, &callouts, SCRAPE_TIMEOUT);
                self.state = State::Scraping { page, tokens, responses };
                self.advance(&gw);
                Action::Pause
            }
            HeadAction::Reply(r) => self.reply_once_read(r, end_of_stream),
            HeadAction::Refuse(r) => {
                self.set_properties(&gw.audit_record(&self.head, &Audit::default(), Some(&r.reason)));
                self.reply_once_read(r.reply, end_of_stream)
            }
            // Not MCP: the control plane's answer goes back as it is.
            HeadAction::Admin => match gw.admin_edits(&self.head) {
                Ok(edits) => {
                    self.apply(&edits);
                    Action::Continue
                }
                Err(reply) => {
                    self.reply(&reply);
                    Action::Pause
                }
            },
            HeadAction::OpenStream => match gw.open_stream(&self.head, now) {
                Ok(edits) => {
                    self.apply(&edits);
                    // The control plane relays the upstreams' streams itself.
                    self.state =
                        State::Forwarded { client_session: self.head.session_id.take(), server: None, request_id: None, relay: None };
                    Action::Continue
                }
                Err(reply) => {
                    self.reply(&reply);
                    Action::Pause
                }
            },
            HeadAction::EndSession => {
                let (reply, callouts, ended) = gw.end_session(&self.head, &SharedOpened { request: self, now: now.unix_secs }, now);
                if let Some((slot, until)) = ended {
                    self.record_ended(&slot, until);
                }
                let tokens = self.dispatch(&gw, &callouts, Self::timeout(&gw));
                self.state = State::Confirming { reply, tokens };
                self.advance(&gw);
                Action::Pause
            }
            HeadAction::ReadBody if end_of_stream => self.on_complete_body(&gw, &[]),
            HeadAction::ReadBody => {
                self.state = State::ReadingBody;
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &self.state {
            State::Refusing(_) => {
                // Past the body limit, waiting for the rest is not worth it.
                let too_big = self.gateway.as_ref().is_some_and(|gw| body_size > gw.config().max_body_bytes);
                return self.refuse_at_end(end_of_stream || too_big);
            }
            State::ReadingBody => {}
            // This request waits on the filter's own callouts (a DELETE that
            // came with a body, say): hold the body, never let it through.
            State::Initializing { .. }
            | State::Confirming { .. }
            | State::Scraping { .. }
            | State::Opening { .. }
            | State::Exchanging { .. }
            | State::Resuming { .. } => return Action::Pause,
            State::Idle | State::Forwarded { .. } => return Action::Continue,
        }
        let Some(gw) = self.gateway.clone() else { return Action::Continue };
        if let Some(r) = gw.check_size(body_size) {
            self.reply(&r);
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.on_complete_body(&gw, &body)
    }

    /// A body followed by trailers never reports `end_of_stream`: decide here.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match &self.state {
            State::Refusing(_) => return self.refuse_at_end(true),
            State::ReadingBody => {}
            State::Initializing { .. }
            | State::Confirming { .. }
            | State::Scraping { .. }
            | State::Opening { .. }
            | State::Exchanging { .. }
            | State::Resuming { .. } => return Action::Pause,
            State::Idle | State::Forwarded { .. } => return Action::Continue,
        }
        let Some(gw) = self.gateway.clone() else { return Action::Continue };
        let limit = gw.config().max_body_bytes.saturating_add(1);
        let body = self.get_http_request_body(0, limit).unwrap_or_default();
        self.on_complete_body(&gw, &body)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let State::Forwarded { client_session, server, request_id, .. } = &self.state else { return Action::Continue };
        let (client_session, server, request_id) = (client_session.clone(), server.clone(), request_id.clone());
        // One host call for the status, the content type and a challenge.
        let answer = self.get_http_response_headers_bytes();
        let header = |name: &str| answer.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        let status: u16 = header(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        if let (Some(gw), Some(name)) = (self.gateway.clone(), server.as_deref()) {
            let challenge = header("www-authenticate").is_some();
            if let Some(reply) = gw.upstream_refusal(name, request_id.as_deref(), status, challenge) {
                self.set_property(vec![OWN_REPLY_PROPERTY], Some(b"1"));
                self.reply(&reply);
                return Action::Pause;
            }
            if challenge {
                self.set_http_response_header("www-authenticate", None);
            }
        }
        // The upstream's session id must not reach the client, which would
        // adopt it in place of the gateway's.
        self.set_http_response_header("mcp-session-id", client_session.as_deref());
        let content_type = header("content-type").unwrap_or_default();
        let is_sse = content_type.trim_start().starts_with("text/event-stream");
        if let Some(t) = &mut self.tally {
            t.status = status;
            // A JSON answer's first bytes say whether it is an error.
            self.peek = !end_of_stream && content_type.trim_start().starts_with("application/json");
        }
        if !self.peek {
            self.publish();
        }
        if let (true, false, Some(name)) = (is_sse, end_of_stream, server) {
            // Rewritten events change the stream's length.
            self.set_http_response_header("content-length", None);
            let max = self.gateway.as_ref().map_or(crate::relay::DEFAULT_MAX_EVENT_BYTES, |gw| gw.config().max_upstream_event_bytes);
            if let State::Forwarded { relay, .. } = &mut self.state {
                *relay = Some(SseRelay::answering(&name, request_id.as_deref(), max));
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.peek && (body_size > 0 || end_of_stream) {
            self.peek = false;
            let first = self.get_http_response_body(0, body_size.min(metrics::PEEK_BYTES)).unwrap_or_default();
            if let Some(t) = &mut self.tally {
                t.code = metrics::error_code(&first);
            }
            self.publish();
        }
        let State::Forwarded { relay, .. } = &mut self.state else { return Action::Continue };
        let Some(mut active) = relay.take() else { return Action::Continue };
        let chunk = self.get_http_response_body(0, body_size).unwrap_or_default();
        let out = active.feed(&chunk, end_of_stream);
        if out != chunk {
            self.set_http_response_body(0, body_size, &out);
        }
        // A streamed answer's JSON-RPC error counts as one, once it is seen.
        if let (Some(code), Some(t)) = (active.error_code(), &mut self.tally) {
            if t.code.is_none() {
                t.code = Some(code);
                self.publish();
            }
        }
        if let State::Forwarded { relay, .. } = &mut self.state {
            *relay = Some(active);
        }
        Action::Continue
    }

    /// The request is over (answered, or reset): count it.
    fn on_log(&mut self) {
        let Some(t) = self.tally.take() else { return };
        let took = self.get_current_time().duration_since(self.started).unwrap_or_default();
        apply(&metrics::updates(&t, u64::try_from(took.as_millis()).unwrap_or(u64::MAX)));
    }
}
