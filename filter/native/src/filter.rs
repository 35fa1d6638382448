//! One HTTP stream, as the native glue sees it: the same states and the
//! same calls of the core as the wasm glue (`filter/src/glue.rs`), with
//! Envoy's dynamic-module callbacks (`host.rs`) where that one has
//! proxy-wasm host calls. It gathers inputs and applies the core's
//! decisions; it decides nothing.
//!
//! Where the two differ, by what the hosts offer:
//! - filter state is set under the names the wasm host gives it
//!   (`wasm.<property>`), so the access log, the audit log, the tracer and
//!   the local-reply mapper read both filters alike;
//! - a header change does not clear the route cache by itself: `apply`
//!   clears it;
//! - the request body is Envoy's buffer plus the chunk at hand
//!   (`Stream::request_body`), not one buffer;
//! - shared data is the process's own map (`shared.rs`);
//! - stats are families with labels defined with the configuration
//!   (`stats.rs`), counted when the stream completes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcp_filter::decision::{
    Audit, BodyAction, Callout, CalloutResponse, Forward, HeaderEdits, InitPlan, Now, Page, Reply, RequestHead, TokenStep,
};
use mcp_filter::gateway::{scrape_reply, Gateway, ScrapeCache};
use mcp_filter::metrics::{self, Tally};
use mcp_filter::relay::SseRelay;

use crate::config::Config;
use crate::host::{self, Stream};

mod kept;
mod request;
mod response;

use kept::SharedOpened;
pub use response::Answer;

/// What a hook tells Envoy: go on, or hold the stream (buffering its body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

pub(crate) enum State {
    /// Not an MCP request, or already answered.
    Idle,
    /// Refused on its headers; the answer goes once the body is in.
    Refusing(Reply),
    ReadingBody,
    /// Waiting for the upstreams' answers to `initialize`.
    Initializing {
        plan: InitPlan,
        tokens: HashMap<u64, usize>,
        responses: Vec<Option<CalloutResponse>>,
    },
    /// Waiting for an upstream's answer to the `initialize` that opens the
    /// session a forwarded request needs (`Forward::open_first`).
    Opening {
        forward: Forward,
        audit: Audit,
        tokens: HashMap<u64, usize>,
        response: Option<CalloutResponse>,
    },
    /// Waiting for the control plane's exchange of the caller's token, for
    /// a server that takes each caller's own (`Gateway::upstream_token`).
    Exchanging {
        forward: Forward,
        audit: Audit,
        tokens: HashMap<u64, usize>,
        response: Option<CalloutResponse>,
    },
    /// That session opened: waiting for `notifications/initialized` (and the
    /// control plane's record), then the request goes on in it.
    Resuming {
        forward: Forward,
        audit: Audit,
        tokens: HashMap<u64, usize>,
    },
    /// Waiting for the upstreams to take `notifications/initialized` or
    /// DELETE, then sending `reply`.
    Confirming {
        reply: Reply,
        tokens: HashMap<u64, usize>,
    },
    /// `GET /metrics` or `/stats`: waiting for Envoy's stats and the control plane's.
    Scraping {
        page: Page,
        tokens: HashMap<u64, usize>,
        responses: Vec<Option<CalloutResponse>>,
    },
    /// Sent upstream; the answer must carry the client's session id back.
    Forwarded {
        client_session: Option<String>,
        server: Option<String>,
        request_id: Option<String>,
        relay: Option<SseRelay>,
    },
}

/// One stream's filter.
pub struct Filter {
    stream: Stream,
    config: Arc<Config>,
    gateway: Option<Rc<Gateway>>,
    /// Unique per stream in the process, mixed into `Now::entropy`.
    serial: u64,
    head: RequestHead,
    state: State,
    /// The names of the request headers the client sent.
    present: Vec<String>,
    /// What an MCP request adds to the metrics once it ends.
    tally: Option<Tally>,
    started: SystemTime,
    /// Its answer is JSON from upstream, not yet looked at for an error.
    peek: bool,
    /// Envoy's `x-request-id`, for the access log.
    request_id: Option<String>,
}

/// How long `GET /metrics` waits for Envoy's stats and the control plane's.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    /// This worker's operator pages of the current second (`ScrapeCache`),
    /// as the wasm filter keeps them per VM.
    static SCRAPES: RefCell<ScrapeCache> = RefCell::new(ScrapeCache::default());
}

impl Filter {
    pub fn new(stream: Stream, config: Arc<Config>) -> Filter {
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        let gateway = config.gateway();
        Filter {
            stream,
            config,
            gateway,
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            head: RequestHead::default(),
            state: State::Idle,
            present: Vec::new(),
            tally: None,
            started: UNIX_EPOCH,
            peek: false,
            request_id: None,
        }
    }

    /// Removes a request header, if the client sent it; whether it did.
    fn drop_header(&self, name: &str) -> bool {
        let sent = self.present.iter().any(|p| p == name);
        if sent {
            self.stream.set_header(crate::abi::consts::REQUEST_HEADERS, name, None);
        }
        sent
    }

    /// Applies a plan of the core's, before the request continues: filter
    /// state, then the drops, then the writes that change something; then,
    /// if a header changed, the route is chosen again (proxy-wasm's host
    /// does that on any header change).
    fn apply(&self, edits: &HeaderEdits) {
        self.set_properties(&edits.properties);
        let mut changed = false;
        for name in &edits.drop {
            changed |= self.drop_header(name);
        }
        for (name, value) in edits.changes(&self.head) {
            self.stream.set_header(crate::abi::consts::REQUEST_HEADERS, name, Some(value));
            changed = true;
        }
        if changed {
            self.stream.clear_route_cache();
        }
    }

    /// Filter state under the wasm host's names (`wasm.<name>`), which the
    /// control plane's access log, audit log, tracer and local-reply mapper read.
    fn set_properties(&self, properties: &[(&str, std::borrow::Cow<'_, str>)]) {
        for (name, value) in properties {
            self.set_property(name, value.as_bytes());
        }
    }

    fn set_property(&self, name: &str, value: &[u8]) {
        self.stream.set_filter_state(&format!("wasm.{name}"), value);
    }

    fn now(&self) -> Now {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Now { unix_secs: since.as_secs(), entropy: (since.as_nanos() as u64) ^ (self.serial << 40) }
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
        self.stream.send_response(r.status, &headers, &r.body);
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

    /// Hands the access log the request's MCP members, once its answer is known.
    /// Nothing when no access log reads them.
    fn publish(&self) {
        if !self.gateway.as_ref().is_some_and(|gw| gw.config().access_log) {
            return;
        }
        if let Some(t) = &self.tally {
            self.set_property(mcp_filter::config::LOG_PROPERTY, metrics::log_record(t).as_bytes());
        }
    }

    /// Sends a forwarded request on: the core's edits applied, the body
    /// replaced when it changed (`in_body_phase`: the client's body is at
    /// hand), and the state set for its answer. False when it was answered.
    fn send_on(&mut self, gw: &Gateway, f: &Forward, audit: &Audit, in_body_phase: bool) -> bool {
        let edits = match gw.forward_edits(&self.head, f, audit) {
            Ok(edits) => edits,
            Err(reply) => {
                self.reply(&reply);
                return false;
            }
        };
        self.apply(&edits);
        if let (Some(new_body), true) = (&f.body, in_body_phase) {
            self.stream.replace_request_body(new_body);
        }
        let server = gw.server(f.server).map(|s| s.name.clone());
        self.state = State::Forwarded { client_session: self.head.session_id.take(), server, request_id: audit.id.clone(), relay: None };
        true
    }

    /// Sends a forward on, or first opens the client's session with its
    /// server (the request waits, its body already in the form the server
    /// takes; `in_body_phase`: the client's body is at hand). True when the
    /// request goes on now.
    fn go_on(&mut self, gw: &Gateway, f: Forward, audit: Audit, in_body_phase: bool, now: Now) -> bool {
        if !f.open_first {
            return self.send_on(gw, &f, &audit, in_body_phase);
        }
        match gw.open_upstream(&self.head, &f, now) {
            Ok(callout) => {
                if let (Some(new_body), true) = (&f.body, in_body_phase) {
                    self.stream.replace_request_body(new_body);
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
        let decision = gw.decide_with(&self.head, body, now, &SharedOpened { now: now.unix_secs });
        self.tally = Some(self.tally_of(Tally::from_audit(&decision.audit)));
        let buckets = gw.buckets(&self.head, &decision.audit);
        if let Some((bucket, retry_ms)) = kept::take_tokens(gw, &buckets, Gateway::cost(&decision.action)) {
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
                    if self.go_on(gw, f, decision.audit, true, now) {
                        Action::Continue
                    } else {
                        Action::Pause
                    }
                }
                // The caller's token is exchanged first; the request waits,
                // its body already in the form the server takes.
                Ok(TokenStep::Exchange(f, callout)) => {
                    if let Some(new_body) = &f.body {
                        self.stream.replace_request_body(new_body);
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

    /// Moves a fan-out on once no callout is outstanding: the next round,
    /// or the reply, or the request itself.
    fn advance(&mut self, gw: &Gateway) {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Initializing { plan, tokens, responses } if tokens.is_empty() => {
                let (reply, followups, opened) = gw.initialized(&plan, &responses, self.now());
                for o in &opened {
                    kept::record_opened(o, self.now().unix_secs);
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
                        if self.go_on(gw, forward, audit, false, now) {
                            self.stream.continue_decoding();
                        }
                    }
                    Err(reply) => self.reply(&reply),
                }
            }
            State::Opening { forward, audit, tokens, response } if tokens.is_empty() => {
                match gw.upstream_opened(&self.head, forward, response.as_ref(), self.now()) {
                    Ok((forward, opened, callouts)) => {
                        kept::record_opened(&opened, self.now().unix_secs);
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
                if self.send_on(gw, &forward, &audit, false) {
                    self.stream.continue_decoding();
                }
            }
            State::Scraping { page, tokens, responses } if tokens.is_empty() => {
                let reply = scrape_reply(page, &responses);
                let now = self.now();
                SCRAPES.with(|s| {
                    if let Ok(mut cache) = s.try_borrow_mut() {
                        cache.keep(page, now, &reply);
                    }
                });
                self.reply(&reply);
            }
            other => self.state = other,
        }
    }

    /// Sends each callout; returns the ids of those that went out.
    fn dispatch(&self, gw: &Gateway, callouts: &[Callout], timeout: Duration) -> HashMap<u64, usize> {
        let mut tokens = HashMap::with_capacity(callouts.len());
        for (i, c) in callouts.iter().enumerate() {
            let mut headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if let Some(server) = gw.server(c.server) {
                headers.extend(server.headers.iter().map(|h| (h.name.as_str(), h.value.as_str())));
            }
            let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            match self.stream.callout(&c.cluster, &headers, &c.body, timeout_ms) {
                Ok(id) => {
                    tokens.insert(id, i);
                }
                Err(code) => host::warn(&format!("mcp filter: call to cluster {} failed to start ({code})", c.cluster)),
            }
        }
        tokens
    }

    fn timeout(gw: &Gateway) -> Duration {
        Duration::from_millis(gw.config().upstream_timeout_ms)
    }
}
