//! Requests that upstreams send the client (sampling, elicitation, roots),
//! and the client's answers to them.
//!
//! Several upstreams share one client and each numbers its own requests, so
//! two of them may both send id 0. On the way to the client, the id of each
//! such request is rewritten to name the server that sent it
//! (`"mcpgw:<server>:<its id>"`); the client's answer carries that id back,
//! and the filter sends the answer to that server with its own id restored.
//! Nothing is stored: the id says where the answer goes. The filter rewrites
//! a call's own SSE stream with [`SseRelay`]; the control plane rewrites the
//! upstreams' GET streams with the same code.

use crate::error::McpError;
use crate::jsonrpc::{self, Message};
use crate::sse::{self, Lines};

const PREFIX: &str = "mcpgw:";

/// The id the client sees (raw JSON: a string) for the request `raw_id`
/// (raw JSON) that `server` sent.
pub fn client_id(server: &str, raw_id: &str) -> String {
    jsonrpc::json_string(&format!("{PREFIX}{server}:{raw_id}"))
}

/// The server a client's answer is for, and that server's own id of the
/// request (raw JSON), from the answer's id (raw JSON). `None` when the id
/// is not one the gateway made.
pub fn upstream_id(raw: &str) -> Option<(String, String)> {
    let text: String = serde_json::from_str(raw).ok()?;
    let (server, id) = text.strip_prefix(PREFIX)?.split_once(':')?;
    let parsed: &serde_json::value::RawValue = serde_json::from_str(id).ok()?;
    let valid = !server.is_empty() && parsed.get() == id && jsonrpc::is_valid_id(parsed);
    valid.then(|| (server.to_string(), id.to_string()))
}

/// One JSON-RPC message from `server`, as the client must see it: a request
/// gets a relayed id. `None` when it goes unchanged (notifications,
/// responses, anything unparsable).
pub fn outbound(server: &str, message: &str) -> Option<String> {
    let Ok(Message::Request { id, .. }) = jsonrpc::parse(message.as_bytes()) else { return None };
    let span = jsonrpc::span_in(message.as_bytes(), id.get())?;
    let (head, tail) = (message.get(..span.start)?, message.get(span.end..)?);
    Some(format!("{head}{}{tail}", client_id(server, id.get())))
}

/// A client's answer (`body`, whose id is `raw_id`, a slice of it) with the
/// upstream's own id put back: the server to send it to and the new body.
pub fn inbound(body: &[u8], raw_id: &str) -> Option<(String, Vec<u8>)> {
    let (server, id) = upstream_id(raw_id)?;
    let span = jsonrpc::span_in(body, raw_id)?;
    Some((server, jsonrpc::splice(body, span, id.as_bytes())))
}

/// Rewrites an SSE stream from one upstream as it passes, chunk by chunk:
/// requests get relayed ids. An event over the bound ends the answer with a
/// JSON-RPC error for the client's request, naming the server.
#[derive(Debug)]
pub struct SseRelay {
    server: String,
    events: SseEvents,
    /// The id of the client's request (raw JSON), which the error of an
    /// answer cut short answers.
    request_id: Option<String>,
    /// The code of the first JSON-RPC error the stream carried, for the
    /// metrics (an error is the call's answer: a stream ends with it).
    error: Option<i64>,
}

impl SseRelay {
    pub fn new(server: &str) -> Self {
        SseRelay { server: server.to_string(), events: SseEvents::tagging_ids(call_tag(server)), request_id: None, error: None }
    }

    /// The answer to the client's request `id` (raw JSON), with events of at
    /// most `max_event_bytes`.
    pub fn answering(server: &str, id: Option<&str>, max_event_bytes: usize) -> Self {
        let events = SseEvents::tagging_ids(call_tag(server)).max_event_bytes(max_event_bytes);
        SseRelay { server: server.to_string(), events, request_id: id.map(str::to_string), error: None }
    }

    /// The bytes to send on now that `chunk` arrived (see [`SseEvents::feed`]).
    pub fn feed(&mut self, chunk: &[u8], end: bool) -> Vec<u8> {
        if self.events.overflowed() {
            return Vec::new();
        }
        let server = &self.server;
        let mut out = self.events.feed(chunk, end, |message| match outbound(server, message) {
            Some(new) => Verdict::Replace(new),
            None => Verdict::Keep,
        });
        if self.events.overflowed() {
            out.extend_from_slice(self.too_long().as_bytes());
        }
        if self.error.is_none() {
            self.error = first_error(&out);
        }
        out
    }

    /// Whether the answer was cut short: what the upstream still sends is dropped.
    pub fn cut_short(&self) -> bool {
        self.events.overflowed()
    }

    /// The event that ends an answer cut short.
    fn too_long(&self) -> String {
        let e = McpError::UpstreamEventTooLarge { server: self.server.clone(), limit: self.events.max() };
        let id = self.request_id.as_deref().unwrap_or("null");
        let (code, _) = e.code_and_status();
        let error = String::from_utf8_lossy(&jsonrpc::error_body(Some(id), code, &e.to_string())).into_owned();
        format!("event: message\ndata: {error}\n\n")
    }

    /// The code of the stream's JSON-RPC error, once one went by.
    pub fn error_code(&self) -> Option<i64> {
        self.error
    }
}

/// How much of a `data:` line is read for an error code: the top-level
/// members before `error` are `jsonrpc` and `id`, a few dozen bytes.
const ERROR_PREFIX: usize = 512;

/// The code of the first JSON-RPC error among `events`' messages, read from
/// the start of each `data:` line only: answers pass here unparsed (a tool's
/// result may be megabytes), and [`crate::metrics::error_code`] needs no more
/// than a message's first bytes.
fn first_error(events: &[u8]) -> Option<i64> {
    Lines::new(events).find_map(|line| {
        let value = line.content.strip_prefix(b"data:")?;
        let value = value.strip_prefix(b" ").unwrap_or(value);
        crate::metrics::error_code(value.get(..ERROR_PREFIX.min(value.len()))?)
    })
}

/// What becomes of one message in a stream.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Keep,
    Replace(String),
    Drop,
}

pub use crate::config::DEFAULT_MAX_EVENT_BYTES;

/// An SSE stream cut into whole events as it passes. Complete events go out
/// at once, each message (an event's data) judged on the way; a partial
/// event waits for the rest, so a chunk may go out shorter or longer than it
/// came. By default only messages with a `"method"` (requests and
/// notifications) are judged, and others pass unexamined;
/// [`SseEvents::judging_all`] judges responses too.
///
/// An event longer than the bound ([`SseEvents::max_event_bytes`]) is never
/// held whole: the stream is over for the relay ([`SseEvents::overflowed`]),
/// which from then on drops what the upstream sends, and its owner tells
/// the client.
#[derive(Debug)]
pub struct SseEvents {
    pending: Vec<u8>,
    scan: sse::Scan,
    max: usize,
    overflowed: bool,
    all: bool,
    /// Put before every event id, so that a client's `Last-Event-ID` says
    /// which stream of which server it resumes (see [`resumption`]).
    id_prefix: Option<String>,
}

impl Default for SseEvents {
    fn default() -> Self {
        SseEvents {
            pending: Vec::new(),
            scan: sse::Scan::default(),
            max: DEFAULT_MAX_EVENT_BYTES,
            overflowed: false,
            all: false,
            id_prefix: None,
        }
    }
}

impl SseEvents {
    pub fn judging_all() -> Self {
        SseEvents { all: true, ..SseEvents::default() }
    }

    /// Event ids are tagged: `id: <prefix><the server's id>`.
    pub fn tagging_ids(prefix: String) -> Self {
        SseEvents { id_prefix: Some(prefix), ..SseEvents::default() }
    }

    /// Events longer than `max` bytes end the stream (see [`SseEvents::overflowed`]).
    pub fn max_event_bytes(self, max: usize) -> Self {
        SseEvents { max, ..self }
    }

    /// Whether an event went over the bound: what came before it went out,
    /// it and everything after are dropped.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The bound on an event's length.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The bytes to send on now that `chunk` arrived. At `end`, whatever is
    /// held goes out, complete or not, unjudged if incomplete.
    pub fn feed(&mut self, chunk: &[u8], end: bool, mut judge: impl FnMut(&str) -> Verdict) -> Vec<u8> {
        if self.overflowed {
            return Vec::new();
        }
        self.pending.extend_from_slice(chunk);
        let (complete, over) = self.scan.advance(&self.pending, self.max);
        if let Some(start) = over {
            // The events before the long one still go out, judged.
            self.overflowed = true;
            self.pending.truncate(start);
            let done = std::mem::take(&mut self.pending);
            self.scan = sse::Scan::default();
            return self.judge(done, &mut judge);
        }
        let cut = if end { self.pending.len() } else { complete.unwrap_or(0) };
        let tail = self.pending.split_off(cut.min(self.pending.len()));
        let done = std::mem::replace(&mut self.pending, tail);
        self.scan.consumed(cut);
        if end {
            self.scan = sse::Scan::default();
        }
        self.judge(done, &mut judge)
    }

    /// Complete events (or the last bytes of a stream) as they go out.
    fn judge(&self, done: Vec<u8>, judge: &mut impl FnMut(&str) -> Verdict) -> Vec<u8> {
        let tags = self.id_prefix.is_some() && contains(&done, b"id:");
        if !self.all && !tags && !may_have_method(&done) {
            return done;
        }
        let mut out = Vec::with_capacity(done.len() + 64);
        let mut start = 0;
        for end in Lines::new(&done).filter(|l| l.is_blank()).map(|l| l.next).chain([done.len()]) {
            let Some(event) = done.get(start..end) else { continue };
            match rewrite_event(event, self.id_prefix.as_deref(), judge) {
                Some(new) => out.extend_from_slice(&new),
                None => out.extend_from_slice(event),
            }
            start = end;
        }
        out
    }
}

/// One event (its lines and the blank line that ends it) as judged: `None`
/// when it goes unchanged, empty when dropped.
fn rewrite_event(event: &[u8], id_prefix: Option<&str>, judge: &mut impl FnMut(&str) -> Verdict) -> Option<Vec<u8>> {
    let mut data: Option<String> = None;
    let mut others: Vec<std::borrow::Cow<'_, str>> = Vec::new();
    let mut retagged = false;
    let mut covered = 0;
    for line in Lines::new(event) {
        covered = line.next;
        if line.is_blank() {
            continue;
        }
        let text = std::str::from_utf8(line.content).ok()?;
        if let ("data", value) = sse::field(text) {
            sse::push_data(&mut data, value);
        } else if let (Some(prefix), Some(id)) = (id_prefix, text.strip_prefix("id:")) {
            others.push(format!("id: {prefix}{}", id.strip_prefix(' ').unwrap_or(id)).into());
            retagged = true;
        } else {
            others.push(text.into());
        }
    }
    // An event cut short (the stream ended mid-way) goes on as it came.
    if covered != event.len() {
        return None;
    }
    let verdict = match &data {
        Some(d) => judge(d),
        None => Verdict::Keep,
    };
    let new = match (verdict, data) {
        (Verdict::Drop, _) => return Some(Vec::new()),
        (Verdict::Replace(new), _) => Some(new),
        (Verdict::Keep, _) if !retagged => return None,
        (Verdict::Keep, data) => data,
    };
    let mut out = String::with_capacity(new.as_ref().map_or(0, String::len) + 64);
    for line in others {
        out.push_str(&line);
        out.push('\n');
    }
    for line in new.iter().flat_map(|n| n.split('\n')) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Some(out.into_bytes())
}

/// Which stream a client resumes, from its `Last-Event-ID`: a call's stream
/// (tagged by the filter, `p~<server>~<id>`) or its GET stream (tagged by
/// the control plane, `g~<server>~<id>`), the server, and that server's
/// own event id.
#[derive(Debug, PartialEq)]
pub enum Resumption {
    Call { server: String, last_event_id: String },
    Stream { server: String, last_event_id: String },
}

/// The tag the filter puts before the event ids of `server`'s answer to a call.
pub fn call_tag(server: &str) -> String {
    format!("p~{server}~")
}

/// The tag the control plane puts before the event ids of `server`'s GET stream.
pub fn stream_tag(server: &str) -> String {
    format!("g~{server}~")
}

pub fn resumption(last_event_id: &str) -> Option<Resumption> {
    let (kind, rest) = last_event_id.split_once('~')?;
    let (server, id) = rest.split_once('~')?;
    if server.is_empty() || id.is_empty() {
        return None;
    }
    let (server, last_event_id) = (server.to_string(), id.to_string());
    match kind {
        "p" => Some(Resumption::Call { server, last_event_id }),
        "g" => Some(Resumption::Stream { server, last_event_id }),
        _ => None,
    }
}

/// Whether some message in `events` may be a request or a notification:
/// it has a `"method"` key, or an escape (`"metho\u0064"` is the same key),
/// so only events that surely have none pass unparsed. Without the escape
/// check such a request was rewritten or not depending on how the stream
/// happened to be cut into chunks (found by the `sse` fuzz target).
fn may_have_method(events: &[u8]) -> bool {
    contains(events, b"\"method\"") || contains(events, b"\\u")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests;
