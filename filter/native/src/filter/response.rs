//! The answer's way out, the filter's own callouts coming back, and the
//! stream's end (its metrics).

use mcp_filter::config::OWN_REPLY_PROPERTY;
use mcp_filter::decision::CalloutResponse;
use mcp_filter::metrics;
use mcp_filter::relay::SseRelay;

use super::{Action, Filter, State};
use crate::abi::consts;
use crate::stats::{self, Kind, FAMILIES};

/// A callout's answer as Envoy delivered it, copied out of the hook.
pub struct Answer {
    /// Whether Envoy got an answer at all (not a reset or timeout).
    pub success: bool,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body's size, and its bytes (empty when not copied).
    pub size: usize,
    pub body: Vec<u8>,
}

impl Filter {
    /// Whether a callout's body may be copied in: not past the limit.
    pub fn callout_limit(&self) -> usize {
        self.gateway.as_ref().map_or(0, |gw| gw.callout_limit(matches!(self.state, State::Scraping { .. })))
    }

    pub fn on_callout_done(&mut self, id: u64, answer: Answer) {
        let Some(gw) = self.gateway.clone() else { return };
        let oversized = answer.size > gw.callout_limit(matches!(self.state, State::Scraping { .. }));
        // A reset or timeout arrives with no headers.
        let response = (answer.success && !answer.headers.is_empty()).then(|| {
            let header = |name: &str| answer.headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
            CalloutResponse {
                status: header(":status").and_then(|s| s.parse().ok()).unwrap_or(0),
                session_id: header("mcp-session-id"),
                content_type: header("content-type"),
                body: if oversized { Vec::new() } else { answer.body },
                oversized,
            }
        });
        match &mut self.state {
            State::Initializing { tokens, responses, .. } | State::Scraping { tokens, responses, .. } => {
                if let Some(i) = tokens.remove(&id) {
                    if let Some(slot) = responses.get_mut(i) {
                        *slot = response;
                    }
                }
            }
            State::Opening { tokens, response: answer, .. } | State::Exchanging { tokens, response: answer, .. } => {
                if tokens.remove(&id).is_some() {
                    *answer = response;
                }
            }
            State::Confirming { tokens, .. } | State::Resuming { tokens, .. } => {
                tokens.remove(&id);
            }
            _ => return,
        }
        self.advance(&gw);
    }

    pub fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        let State::Forwarded { client_session, server, request_id, .. } = &self.state else { return Action::Continue };
        let (client_session, server, request_id) = (client_session.clone(), server.clone(), request_id.clone());
        let answer = self.stream.headers(consts::RESPONSE_HEADERS);
        let header = |name: &str| answer.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        let status: u16 = header(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        if let (Some(gw), Some(name)) = (self.gateway.clone(), server.as_deref()) {
            let challenge = header("www-authenticate").is_some();
            if let Some(reply) = gw.upstream_refusal(name, request_id.as_deref(), status, challenge) {
                self.set_property(OWN_REPLY_PROPERTY, b"1");
                self.reply(&reply);
                return Action::Pause;
            }
            if challenge {
                self.stream.set_header(consts::RESPONSE_HEADERS, "www-authenticate", None);
            }
        }
        // The upstream's session id must not reach the client, which would
        // adopt it in place of the gateway's.
        self.stream.set_header(consts::RESPONSE_HEADERS, "mcp-session-id", client_session.as_deref());
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
            self.stream.set_header(consts::RESPONSE_HEADERS, "content-length", None);
            let max = self.gateway.as_ref().map_or(mcp_filter::relay::DEFAULT_MAX_EVENT_BYTES, |gw| gw.config().max_upstream_event_bytes);
            if let State::Forwarded { relay, .. } = &mut self.state {
                *relay = Some(SseRelay::answering(&name, request_id.as_deref(), max));
            }
        }
        Action::Continue
    }

    pub fn on_response_body(&mut self, end_of_stream: bool) -> Action {
        let relaying = matches!(&self.state, State::Forwarded { relay: Some(_), .. });
        if !self.peek && !relaying {
            return Action::Continue;
        }
        let chunk = self.stream.body(consts::RECEIVED_RESPONSE_BODY);
        if self.peek && (!chunk.is_empty() || end_of_stream) {
            self.peek = false;
            let first = chunk.get(..chunk.len().min(mcp_filter::metrics::PEEK_BYTES)).unwrap_or_default();
            if let Some(t) = &mut self.tally {
                t.code = metrics::error_code(first);
            }
            self.publish();
        }
        let State::Forwarded { relay, .. } = &mut self.state else { return Action::Continue };
        let Some(mut active) = relay.take() else { return Action::Continue };
        let out = active.feed(&chunk, end_of_stream);
        if out != chunk {
            self.stream.replace_response_chunk(&out);
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

    /// The stream is over (answered, or reset): count it.
    pub fn on_complete(&mut self) {
        let Some(t) = self.tally.take() else { return };
        let took = std::time::SystemTime::now().duration_since(self.started).unwrap_or_default();
        for u in metrics::updates(&t, u64::try_from(took.as_millis()).unwrap_or(u64::MAX)) {
            // A metric Envoy refused, or a name no family has, is skipped:
            // metrics never fail a request.
            let Some(s) = stats::sample(&u) else { continue };
            let (Some(Some(id)), Some(family)) = (self.config.metrics.get(s.family), FAMILIES.get(s.family)) else { continue };
            self.stream.metric(family.kind == Kind::Histogram, *id, &s.values, s.value);
        }
    }
}
