//! The handshake and the session it opens: what the gateway says of itself
//! (`initialize`'s result, and `server/discover`, the 2026-07-28
//! revision's greeting), the client's `initialize` fanned out to every
//! upstream that keeps sessions and answered with a sealed gateway session
//! id, the opening of that id on later requests, and its end (DELETE).
//!
//! A session is its caller's: the id seals a digest of the principal that
//! opened it, and a request from anyone else naming it is answered as one
//! naming an unknown session. Which servers a caller may reach is the
//! dispatcher's to say. It never routes a request past the handshake.
//! Which revisions exist is `era`'s.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::era::{self, LATEST_VERSION, STATELESS_VERSION, SUPPORTED_VERSIONS};
use crate::config::FilterConfig;
use crate::config::INTERNAL_HEADER;
use crate::decision::{
    BodyAction, Callout, CalloutResponse, ConfigError, Forward, InitPlan, Now, Opened, OpenedSessions, Reply, RequestHead,
};
use crate::error::McpError;
use crate::headers::bounded;
use crate::jsonrpc;
use crate::opened;
use crate::revocation::Slot;
use crate::session::{principal_digest, Sealer, SessionError, SessionState, UpstreamSession};
use crate::sse;

/// The id of the filter's own `initialize` requests to upstreams.
const INIT_ID: &str = "0";
/// How many opened session ids a worker keeps (a few hundred bytes each);
/// past it the cache starts over.
const MAX_OPENED_SESSIONS: usize = 4096;
/// The longest upstream session id carried in a gateway session id.
const MAX_UPSTREAM_SESSION_ID: usize = 256;
/// What one upstream session is reckoned to add to the sealed state when
/// choosing the servers `initialize` opens (`"i"` a UUID, `"v"` a version);
/// the reply then counts what each really adds.
const RECKONED_UPSTREAM_BYTES: usize = 64;
/// The longest client `capabilities` sealed as sent; a larger object is
/// sealed as its top-level members with empty values.
const MAX_SEALED_CAPABILITIES: usize = 512;
/// The body of `notifications/initialized`.
const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// What the gateway says of itself, serialised once per configuration: its
/// `serverInfo` (also its `clientInfo` towards upstreams), capabilities and
/// instructions, as `initialize` and `server/discover` give them.
pub struct Identity {
    /// `{"name": .., "version": ..}`.
    info: serde_json::Value,
    info_json: String,
    capabilities: String,
    /// `"instructions":"…",` or nothing, ready to splice.
    instructions: String,
    /// The whole answer to `server/discover`.
    discover: String,
}

impl Identity {
    fn new(config: &FilterConfig) -> Identity {
        let info = serde_json::json!({ "name": config.server_info.name, "version": config.server_info.version });
        let mut versions = vec![STATELESS_VERSION];
        versions.extend_from_slice(SUPPORTED_VERSIONS);
        let mut discover = serde_json::json!({
            "supportedVersions": versions,
            "capabilities": config.capabilities,
            "ttlMs": 0,
            "cacheScope": "private",
            "resultType": "complete",
            "_meta": { "io.modelcontextprotocol/serverInfo": info },
        });
        if let (Some(text), Some(obj)) = (&config.instructions, discover.as_object_mut()) {
            obj.insert("instructions".into(), text.clone().into());
        }
        Identity {
            info_json: info.to_string(),
            info,
            capabilities: config.capabilities.to_string(),
            instructions: config
                .instructions
                .as_deref()
                .map(|t| format!(r#""instructions":{},"#, jsonrpc::json_string(t)))
                .unwrap_or_default(),
            discover: discover.to_string(),
        }
    }

    /// `initialize`'s result at `version`.
    fn initialize_result(&self, version: &str) -> String {
        format!(
            r#"{{"capabilities":{},{}"protocolVersion":{},"serverInfo":{}}}"#,
            self.capabilities,
            self.instructions,
            jsonrpc::json_string(version),
            self.info_json
        )
    }
}

/// The handshake of one configuration: the gateway's identity, the keys
/// that seal session ids, and the ids this worker opened lately.
pub struct Handshake {
    identity: Identity,
    pub(super) sealer: Sealer,
    /// Session ids opened lately, and what they hold.
    opened: RefCell<HashMap<String, Rc<SessionState>>>,
}

impl Handshake {
    pub fn new(config: &FilterConfig) -> Result<Handshake, ConfigError> {
        Ok(Handshake { identity: Identity::new(config), sealer: Sealer::new(&config.session)?, opened: RefCell::new(HashMap::new()) })
    }

    /// The gateway's `{name, version}`, as it names itself to upstreams.
    pub fn client_info(&self) -> &serde_json::Value {
        &self.identity.info
    }

    /// The answer to `server/discover` (2026-07-28).
    pub fn discover_result(&self) -> &str {
        &self.identity.discover
    }

    /// The session a request runs in: the one its id seals, or, for a
    /// 2026-07-28 request, none (an empty one of that revision).
    pub fn open(&self, config: &FilterConfig, head: &RequestHead, now: Now) -> Result<Rc<SessionState>, McpError> {
        // A 2026-07-28 request carries no session: it needs none, since every
        // upstream is reachable statelessly when the gateway serves that revision.
        if era::is_stateless(config, head) {
            let state = SessionState { issued_at: now.unix_secs, version: STATELESS_VERSION.into(), ..SessionState::default() };
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
        let principal = head.caller.as_ref().map(|c| c.principal.as_str());
        // Another caller's session is answered as a forged one: whoever
        // learnt an id learns nothing more by presenting it.
        let owned = |state: Rc<SessionState>| {
            if state.belongs_to(principal) {
                Ok(state)
            } else {
                Err(McpError::SessionNotFound(SessionError::Tampered.to_string()))
            }
        };
        // A session id is immutable: once opened, what it holds is kept for
        // its next requests (decrypting is most of a call's cost), and only
        // its age and owner are checked again.
        if let Some(state) = self.opened.borrow().get(token) {
            if now.unix_secs.saturating_sub(state.issued_at) <= config.session.ttl_seconds {
                return owned(Rc::clone(state));
            }
        }
        let state = Rc::new(self.sealer.open(token, now.unix_secs).map_err(|e| McpError::SessionNotFound(e.to_string()))?);
        let mut cache = self.opened.borrow_mut();
        if cache.len() >= MAX_OPENED_SESSIONS {
            cache.clear();
        }
        cache.insert(token.to_string(), Rc::clone(&state));
        owned(state)
    }

    /// A client's `initialize`: the plan that opens a session with the
    /// upstreams that keep sessions and that the caller (`principal`) may
    /// reach (`reaches`, by server index), as many as its session id has
    /// room for (`session.max_id_bytes`), in catalog order; or the answer at
    /// once when there is none. The others are opened on the client's first
    /// call to them ([`Handshake::open_upstream`]).
    pub fn initialize(
        &self,
        config: &FilterConfig,
        id: &str,
        params: Option<&RawValue>,
        principal: Option<&str>,
        reaches: impl Fn(usize) -> bool,
        now: Now,
    ) -> BodyAction {
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
        let capabilities = sealed_capabilities(capabilities.map(RawValue::get));
        let principal = principal.map(principal_digest);
        let mut plan = InitPlan { id: id.to_string(), version, principal, capabilities, callouts: Vec::new() };
        // What the id holds before any upstream session, then what each is
        // reckoned to add while there is room.
        let mut used = serde_json::to_vec(&self.state(&plan, now)).map_or(0, |v| v.len());
        let room = config.session.max_id_bytes;
        // A server without a valid token is left to the client's first call
        // to it, which is refused saying why; one that takes the caller's own
        // token, to the first call, which brings the exchanged token.
        let opened = config
            .servers
            .iter()
            .enumerate()
            .filter(|(i, s)| s.stateful && s.credential_error.is_none() && !s.token_exchange && reaches(*i))
            .take_while(|(_, s)| {
                used += jsonrpc::json_string(&s.name).len() + 2 + RECKONED_UPSTREAM_BYTES;
                self.sealer.sealed_len(used) <= room
            });
        let init_body = self.init_body(&plan.version, plan.capabilities.as_deref());
        // Stateless servers need no session: they are called as they are.
        plan.callouts = opened.map(|(i, s)| Callout::to(i, s, None, None, init_body.clone())).collect();
        if plan.callouts.is_empty() {
            return BodyAction::Reply(self.initialize_reply(config, &plan, &[], now).0);
        }
        BodyAction::Initialize(plan)
    }

    /// The session a plan opens, before any upstream session is in it.
    fn state(&self, plan: &InitPlan, now: Now) -> SessionState {
        SessionState {
            issued_at: now.unix_secs,
            entropy: now.entropy,
            version: plan.version.clone(),
            principal: plan.principal.clone(),
            capabilities: plan.capabilities.clone(),
            ..SessionState::default()
        }
    }

    /// The filter's own `initialize`, as each upstream gets it.
    fn init_body(&self, version: &str, capabilities: Option<&str>) -> Vec<u8> {
        format!(
            r#"{{"jsonrpc":"2.0","id":{INIT_ID},"method":"initialize","params":{{"protocolVersion":{},"capabilities":{},"clientInfo":{}}}}}"#,
            jsonrpc::json_string(version),
            capabilities.unwrap_or("{}"),
            self.identity.info_json,
        )
        .into_bytes()
    }

    /// Answers the client's `initialize` once every upstream has answered
    /// (or failed). Also returns the `notifications/initialized` callouts to
    /// send to the upstreams that accepted, before the reply goes out, and
    /// the upstream sessions the id had no room for after all (longer ids
    /// than reckoned), for the glue to keep as if opened on first use.
    pub fn initialized(
        &self,
        config: &FilterConfig,
        plan: &InitPlan,
        responses: &[Option<CalloutResponse>],
        now: Now,
    ) -> (Reply, Vec<Callout>, Vec<Opened>) {
        let upstreams: Vec<(usize, UpstreamSession)> = plan
            .callouts
            .iter()
            .zip(responses.iter().chain(std::iter::repeat(&None)))
            .map(|(c, r)| (c.server, upstream_session(r.as_ref())))
            .collect();
        self.initialize_reply(config, plan, &upstreams, now)
    }

    fn initialize_reply(
        &self,
        config: &FilterConfig,
        plan: &InitPlan,
        upstreams: &[(usize, UpstreamSession)],
        now: Now,
    ) -> (Reply, Vec<Callout>, Vec<Opened>) {
        let mut state = self.state(plan, now);
        let mut used = serde_json::to_vec(&state).map_or(0, |v| v.len());
        let mut followups = Vec::new();
        let mut outside = Vec::new();
        for (index, session) in upstreams {
            let Some(server) = config.servers.get(*index) else { continue };
            let adds = jsonrpc::json_string(&server.name).len() + 2 + serde_json::to_vec(session).map_or(0, |v| v.len());
            let fits = self.sealer.sealed_len(used + adds) <= config.session.max_id_bytes;
            if session.error.is_none() {
                followups.push(Callout::to(*index, server, session.id.as_deref(), session.version.as_deref(), INITIALIZED.to_vec()));
            }
            if fits {
                used += adds;
                state.upstreams.insert(server.name.clone(), session.clone());
            } else if session.error.is_none() {
                outside.push((server.name.as_str(), session));
            }
            // A failure with no room is left out: the first call tries again.
        }
        let token = self.sealer.seal(&state);
        let expires = state.issued_at.saturating_add(config.session.ttl_seconds);
        let mut opened = Vec::with_capacity(outside.len());
        for (name, session) in outside {
            let Some(slot) = opened::Slot::of(&token, name) else { continue };
            followups.extend(opened_notice(config, &token, name, session));
            opened.push(Opened { slot, session: session.clone(), expires });
        }
        let mut reply = Reply::json(200, jsonrpc::result_body(&plan.id, &self.identity.initialize_result(&plan.version)));
        reply.headers.push(("mcp-session-id", token));
        (reply, followups, opened)
    }

    /// The `initialize` that opens the session a request for `server` needs
    /// (see [`crate::decision::Forward::open_first`]), as the client's own
    /// opened the first ones: at its version, with its capabilities.
    pub fn open_upstream(&self, config: &FilterConfig, head: &RequestHead, server: usize, now: Now) -> Result<Callout, McpError> {
        let state = self.open(config, head, now)?;
        let upstream = config.servers.get(server).ok_or_else(|| McpError::Internal("route to a missing server".into()))?;
        Ok(Callout::to(server, upstream, None, None, self.init_body(&state.version, state.capabilities.as_deref())))
    }

    /// The upstream's answer to [`Handshake::open_upstream`]'s `initialize`:
    /// the session to keep and send the request in, with the callouts to make
    /// first (`notifications/initialized`, and the control plane told, for
    /// the client's GET stream); or why the server cannot be used.
    pub fn upstream_opened(
        &self,
        config: &FilterConfig,
        head: &RequestHead,
        server: usize,
        response: Option<&CalloutResponse>,
        now: Now,
    ) -> Result<(Opened, Vec<Callout>), McpError> {
        let upstream = config.servers.get(server).ok_or_else(|| McpError::Internal("route to a missing server".into()))?;
        let session = upstream_session(response);
        if let Some(reason) = session.error {
            return Err(McpError::UpstreamUnavailable { server: upstream.name.clone(), reason });
        }
        let state = self.open(config, head, now)?;
        let token = head.session_id.as_deref().unwrap_or_default();
        let slot = opened::Slot::of(token, &upstream.name).ok_or(McpError::MissingSession)?;
        let mut callouts = vec![Callout::to(server, upstream, session.id.as_deref(), session.version.as_deref(), INITIALIZED.to_vec())];
        callouts.extend(opened_notice(config, token, &upstream.name, &session));
        let expires = state.issued_at.saturating_add(config.session.ttl_seconds);
        Ok((Opened { slot, session, expires }, callouts))
    }

    /// Ends a client session: the reply to send once the DELETE callouts that
    /// end its upstream sessions (sealed in its id, or opened by this Envoy
    /// since, as `opened` finds them) have come back (or failed; the client's
    /// session ends either way).
    ///
    /// The id itself would open until it expires (nothing is stored with
    /// it), so the session is also returned as ended until then, for the glue
    /// to record (`revocation.rs`): its later requests get 404.
    pub fn end_session(
        &self,
        config: &FilterConfig,
        head: &RequestHead,
        opened: &dyn OpenedSessions,
        now: Now,
    ) -> (Reply, Vec<Callout>, Option<(Slot, u64)>) {
        let state = match self.open(config, head, now) {
            Ok(s) => s,
            Err(e) => return (Reply::error(None, &e), Vec::new(), None),
        };
        let token = head.session_id.as_deref().unwrap_or_default();
        let ended = Slot::of(token).map(|slot| (slot, state.issued_at.saturating_add(config.session.ttl_seconds)));
        let callouts = config
            .servers
            .iter()
            .enumerate()
            .filter(|(_, server)| server.stateful)
            .filter_map(|(i, server)| {
                let upstream = state.upstreams.get(&server.name).cloned().or_else(|| opened.find(token, &server.name))?;
                let id = upstream.id.as_deref()?;
                let mut c = Callout::to(i, server, Some(id), upstream.version.as_deref(), Vec::new());
                if let Some(method) = c.headers.iter_mut().find(|(k, _)| *k == ":method") {
                    method.1 = "DELETE".into();
                }
                c.headers.retain(|(k, _)| *k != "content-type");
                Some(c)
            })
            .collect();
        (Reply { status: 204, headers: Vec::new(), body: Vec::new() }, callouts, ended)
    }
}

/// A client's session as a request finds it: what its id seals, and the
/// upstream sessions this Envoy opened for it on first use (`opened.rs`).
pub struct InSession<'a> {
    sealed: Rc<SessionState>,
    token: &'a str,
    opened: &'a dyn OpenedSessions,
}

impl<'a> InSession<'a> {
    pub fn new(sealed: Rc<SessionState>, head: &'a RequestHead, opened: &'a dyn OpenedSessions) -> InSession<'a> {
        InSession { sealed, token: head.session_id.as_deref().unwrap_or_default(), opened }
    }

    /// The client's session with `server`: sealed in its id, else opened on
    /// first use by this Envoy, else none yet.
    pub fn upstream(&self, server: &str) -> Option<UpstreamSession> {
        self.sealed.upstreams.get(server).cloned().or_else(|| self.opened.find(self.token, server))
    }
}

impl std::ops::Deref for InSession<'_> {
    type Target = SessionState;

    fn deref(&self) -> &SessionState {
        &self.sealed
    }
}

/// What a session id seals of the client's `capabilities`: the object as
/// sent, compact, while it is small; else its top-level members with empty
/// values (what can be done, without the detail); `None` for none.
fn sealed_capabilities(raw: Option<&str>) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(raw?).ok()?;
    let members = value.as_object().filter(|m| !m.is_empty())?;
    let compact = value.to_string();
    if compact.len() <= MAX_SEALED_CAPABILITIES {
        return Some(compact);
    }
    let names: serde_json::Map<String, serde_json::Value> =
        members.keys().take(16).filter(|k| k.len() <= 64).map(|k| (k.clone(), serde_json::json!({}))).collect();
    Some(serde_json::Value::Object(names).to_string())
}

/// What tells the control plane of an upstream session kept outside the
/// client's id, so that the client's GET stream carries that upstream's
/// stream too: `POST <events path>/opened`. None without a control plane,
/// or for an upstream that issued no session id (it has no stream).
fn opened_notice(config: &FilterConfig, token: &str, server: &str, session: &UpstreamSession) -> Option<Callout> {
    let cp = config.control_plane.as_ref()?;
    let id = session.id.as_deref()?;
    let mut headers = vec![
        (":method", "POST".to_string()),
        (":path", format!("{}/opened", cp.events_path)),
        (":authority", cp.authority.clone()),
        ("content-type", "application/json".to_string()),
        ("mcp-session-id", token.to_string()),
    ];
    headers.extend(cp.headers.iter().filter(|h| h.name == INTERNAL_HEADER).map(|h| (INTERNAL_HEADER, h.value.clone())));
    let body = serde_json::json!({ "server": server, "id": id, "version": session.version }).to_string().into_bytes();
    Some(Callout { server: usize::MAX, cluster: cp.cluster.clone(), headers, body })
}

/// Reads an upstream's answer to the filter's `initialize`.
pub fn upstream_session(response: Option<&CalloutResponse>) -> UpstreamSession {
    let failed = |reason: String| UpstreamSession { id: None, version: None, error: Some(reason) };
    let Some(r) = response else {
        return failed("no answer to initialize (connection failed or timed out)".into());
    };
    if r.oversized {
        return failed("its answer to initialize was larger than the gateway takes (gateway.max_upstream_event_bytes)".into());
    }
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

impl super::Gateway {
    /// The `initialize` that opens the upstream session a forward needs
    /// ([`Forward::open_first`]).
    pub fn open_upstream(&self, head: &RequestHead, f: &Forward, now: Now) -> Result<Callout, Reply> {
        let mut callout =
            self.handshake.open_upstream(&self.config, head, f.server, now).map_err(|e| Reply::error(Some(&f.request_id), &e))?;
        if let Some(bearer) = &f.upstream_authorization {
            callout.headers.push(("authorization", bearer.clone()));
        }
        Ok(callout)
    }

    /// The answer to [`Gateway::open_upstream`]: the forward, now in its
    /// upstream session, the session to record, and the callouts to make
    /// before the request goes on; or the client's error (naming the
    /// server) when it could not be opened.
    pub fn upstream_opened(
        &self,
        head: &RequestHead,
        f: Forward,
        response: Option<&CalloutResponse>,
        now: Now,
    ) -> Result<(Forward, Opened, Vec<Callout>), Reply> {
        let (opened, mut callouts) = self
            .handshake
            .upstream_opened(&self.config, head, f.server, response, now)
            .map_err(|e| Reply::error(Some(&f.request_id), &e))?;
        // The caller's token goes with everything sent to its server.
        if let Some(bearer) = &f.upstream_authorization {
            callouts.iter_mut().filter(|c| c.server == f.server).for_each(|c| c.headers.push(("authorization", bearer.clone())));
        }
        let f = Forward {
            upstream_session: opened.session.id.clone(),
            upstream_version: opened.session.version.clone(),
            open_first: false,
            ..f
        };
        Ok((f, opened, callouts))
    }
}
