//! Where a request stands in the filter, between Envoy's callbacks.

use std::collections::HashMap;

use crate::decision::{Audit, CalloutResponse, Forward, InitPlan, Page, Reply};
use crate::relay::SseRelay;

pub(super) enum State {
    /// Not an MCP request, or already answered.
    Idle,
    /// Refused on its headers; the answer goes once the body is in. An
    /// answer sent while a client is still uploading makes some HTTP/2
    /// clients (curl) report a stream error instead of the answer.
    Refusing(Reply),
    ReadingBody,
    /// Waiting for the upstreams' answers to `initialize`.
    Initializing {
        plan: InitPlan,
        tokens: HashMap<u32, usize>,
        responses: Vec<Option<CalloutResponse>>,
    },
    /// Waiting for an upstream's answer to the `initialize` that opens the
    /// session a forwarded request needs (`Forward::open_first`).
    Opening {
        forward: Forward,
        audit: Audit,
        tokens: HashMap<u32, usize>,
        response: Option<CalloutResponse>,
    },
    /// Waiting for the control plane's exchange of the caller's token, for
    /// a server that takes each caller's own (`Gateway::upstream_token`).
    Exchanging {
        forward: Forward,
        audit: Audit,
        tokens: HashMap<u32, usize>,
        response: Option<CalloutResponse>,
    },
    /// That session opened: waiting for the upstream to take
    /// `notifications/initialized` (and the control plane to hear of it),
    /// then the request goes on in it.
    Resuming {
        forward: Forward,
        audit: Audit,
        tokens: HashMap<u32, usize>,
    },
    /// Waiting for the upstreams to take `notifications/initialized` (after
    /// `initialize`) or DELETE (ending a session), then sending `reply`.
    Confirming {
        reply: Reply,
        tokens: HashMap<u32, usize>,
    },
    /// `GET /metrics` or `/stats`: waiting for Envoy's stats and the control plane's.
    Scraping {
        page: Page,
        tokens: HashMap<u32, usize>,
        responses: Vec<Option<CalloutResponse>>,
    },
    /// Sent upstream; the response must carry the client's session id back.
    /// `server` names the upstream, whose requests inside an SSE answer
    /// (sampling, elicitation, roots) `relay` rewrites on their way out.
    /// `request_id` (raw JSON) is what an error of the gateway's in place of
    /// the upstream's answer answers.
    Forwarded {
        client_session: Option<String>,
        server: Option<String>,
        request_id: Option<String>,
        relay: Option<SseRelay>,
    },
}
