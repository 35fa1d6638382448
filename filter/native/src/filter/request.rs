//! The request's way in: its headers, its body, its trailers.

use mcp_filter::config::{JWT_FAILURE_HEADER, JWT_PAYLOAD_HEADER};
use mcp_filter::decision::{Audit, HeadAction, Reply, RequestHead};
use mcp_filter::error::McpError;
use mcp_filter::headers::{address_host, bearer};
use mcp_filter::metrics::{self, Tally};
use mcp_filter::revocation::Slot;

use super::kept::{self, SharedOpened};
use super::{Action, Filter, State, SCRAPES, SCRAPE_TIMEOUT};
use crate::abi::consts;

impl Filter {
    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(gw) = self.gateway.clone() else {
            self.reply(&Reply::error(None, &McpError::Internal("the MCP filter has no valid configuration".into())));
            return Action::Pause;
        };
        // One call for every header, rather than one per header read.
        let sent = self.stream.headers(consts::REQUEST_HEADERS);
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
            // Why jwt_authn refused a token: copied from its metadata into a
            // header by the filter chain (`JWT_FAILURE_HEADER`).
            jwt_failure: header(JWT_FAILURE_HEADER).filter(|m| !m.is_empty() && m != "-"),
            origin: header("origin"),
            host: header(":authority"),
            session_ended: false,
            peer_certificate: None,
            caller: None,
            // Read only for what keys on it (a limit on refused callers).
            source: if gw.needs_source() {
                self.stream.attribute(consts::ATTRIBUTE_SOURCE_ADDRESS).map(|a| address_host(&a).to_string())
            } else {
                None
            },
        };
        if let Some(slot) = self.head.session_id.as_deref().and_then(Slot::of) {
            self.head.session_ended = kept::ended(&slot, self.now().unix_secs);
        }
        if gw.config().auth.as_ref().is_some_and(|a| a.client_certificates) {
            let attribute = |id| self.stream.attribute(id).filter(|v| !v.is_empty());
            self.head.peer_certificate = attribute(consts::ATTRIBUTE_URI_SAN_PEER_CERTIFICATE)
                .or_else(|| attribute(consts::ATTRIBUTE_DNS_SAN_PEER_CERTIFICATE))
                .or_else(|| attribute(consts::ATTRIBUTE_SUBJECT_PEER_CERTIFICATE));
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
            self.started = std::time::SystemTime::now();
            let mut tally = self.tally_of(Tally { method, ..Tally::default() });
            if let HeadAction::Refuse(r) = &action {
                tally.refused(&r.cause);
            }
            self.tally = Some(tally);
        }
        // Requests decided on their headers take from the rate limits too.
        if let Some((audit, buckets, cost)) = gw.head_charge(&self.head, &action, self.now()) {
            if let Some((bucket, retry_ms)) = kept::take_tokens(&gw, &buckets, cost) {
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
                let now = self.now();
                let cached = SCRAPES.with(|s| s.try_borrow().ok().and_then(|c| c.fresh(page, now).cloned()));
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
            HeadAction::OpenStream => match gw.open_stream(&self.head, self.now()) {
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
                let now = self.now();
                let (reply, callouts, ended) = gw.end_session(&self.head, &SharedOpened { now: now.unix_secs }, now);
                if let Some((slot, until)) = ended {
                    kept::record_ended(&slot, until, now.unix_secs);
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

    pub fn on_request_body(&mut self, end_of_stream: bool) -> Action {
        match &self.state {
            State::Refusing(_) => {
                // Past the body limit, waiting for the rest is not worth it.
                let size = self.stream.request_body_size();
                let too_big = self.gateway.as_ref().is_some_and(|gw| size > gw.config().max_body_bytes);
                return self.refuse_at_end(end_of_stream || too_big);
            }
            State::ReadingBody => {}
            // This request waits on the filter's own callouts: hold the
            // body, never let it through.
            State::Initializing { .. }
            | State::Confirming { .. }
            | State::Scraping { .. }
            | State::Opening { .. }
            | State::Exchanging { .. }
            | State::Resuming { .. } => return Action::Pause,
            State::Idle | State::Forwarded { .. } => return Action::Continue,
        }
        let Some(gw) = self.gateway.clone() else { return Action::Continue };
        if let Some(r) = gw.check_size(self.stream.request_body_size()) {
            self.reply(&r);
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.stream.request_body();
        self.on_complete_body(&gw, &body)
    }

    /// A body followed by trailers never reports `end_of_stream`: decide here.
    pub fn on_request_trailers(&mut self) -> Action {
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
        let mut body = self.stream.request_body();
        body.truncate(gw.config().max_body_bytes.saturating_add(1));
        self.on_complete_body(&gw, &body)
    }
}
