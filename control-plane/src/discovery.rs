//! Discovery: the control plane connects to each upstream as an MCP client,
//! opens a session (`initialize`), lists its tools, prompts, resources and
//! resource templates (every page of each it offers) and ends the session
//! (DELETE). The result feeds `compile`, so that
//! `tools/list` is answered inside Envoy with no upstream call on the
//! request path.
//!
//! Why not rmcp's client here: the gateway must relay tool definitions
//! verbatim, and rmcp 3.9's typed `Tool` drops every field it does not model
//! (for example `execution`, added in MCP 2025-11-25). So discovery speaks
//! JSON-RPC over Streamable HTTP itself and keeps each tool as raw JSON. The
//! end-to-end tests still use rmcp as a client of the gateway.
//!
//! It never changes what is served: it only answers what a server offers,
//! and the controller decides what to do with that.

use std::time::Duration;

use serde_json::{json, Value};

use crate::upstream::{Http, Upstream};

/// The handshake-era revision discovery asks for.
const DISCOVERY_VERSION: &str = "2025-11-25";
/// The stateless revision, probed with `server/discover`.
const STATELESS_VERSION: &str = "2026-07-28";
/// What discovery tells servers it can do: what the gateway relays.
fn client_capabilities() -> Value {
    json!({ "sampling": {}, "elicitation": { "form": {}, "url": {} }, "roots": { "listChanged": true } })
}
/// A server that pages forever is cut off here.
const MAX_PAGES: usize = 1000;

/// Why asking a server failed. Its text is what `/servers` and the log
/// show, a sentence an operator can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// No HTTP answer: the connection, TLS or the transport failed (the
    /// sentence names the URL as it may be shown, and why).
    #[error("{0}")]
    Unreachable(String),
    #[error("no answer within {0} s")]
    Timeout(u64),
    #[error("HTTP {status}: {snippet}")]
    Http { status: reqwest::StatusCode, snippet: String },
    #[error("reading the answer: {0}")]
    Reading(String),
    #[error("JSON-RPC error {code}: {message}")]
    JsonRpc { code: i64, message: String },
    #[error("the answer held no JSON-RPC response")]
    NoResponse,
    #[error("response without result")]
    NoResult,
    #[error("{method} answered without a {key} array")]
    NotAList { method: String, key: String },
    #[error("{0} repeated its cursor")]
    RepeatedCursor(String),
    #[error("{0} has more than {MAX_PAGES} pages")]
    TooManyPages(String),
    /// A step of the exchange failed (`initialize`, a list): it is named.
    #[error("{step} failed: {source}")]
    Step { step: String, source: Box<Error> },
}

impl Error {
    fn at(step: &str) -> impl FnOnce(Error) -> Error + '_ {
        move |source| Error::Step { step: step.to_string(), source: Box::new(source) }
    }

    /// The JSON-RPC error code the server answered with, if that is what
    /// failed.
    pub fn jsonrpc_code(&self) -> Option<i64> {
        match self {
            Error::JsonRpc { code, .. } => Some(*code),
            Error::Step { source, .. } => source.jsonrpc_code(),
            _ => None,
        }
    }
}

/// What one server offers, as it sent it (raw JSON objects).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discovered {
    /// The `capabilities` of its `initialize` answer.
    pub capabilities: Value,
    pub instructions: Option<String>,
    /// Whether it issued a session id: only then do client sessions open one.
    pub stateful: bool,
    /// The protocol version it agreed to.
    pub protocol_version: Option<String>,
    /// Whether it answers `server/discover` with 2026-07-28 among its
    /// versions, so that a stateless request can be relayed to it as it is.
    pub stateless_era: bool,
    /// Whether it speaks 2026-07-28 only (it refused `initialize`): the
    /// gateway translates handshake-era requests for it.
    pub modern_only: bool,
    pub tools: Vec<Value>,
    pub prompts: Vec<Value>,
    pub resources: Vec<Value>,
    pub resource_templates: Vec<Value>,
}

/// Discovers what the server at `url` offers. Errors are sentences fit for
/// `/servers` and logs.
pub async fn discover(upstream: &Upstream, timeout: Duration) -> Result<Discovered, Error> {
    let mut session = Session::for_upstream(upstream);
    let listing = tokio::time::timeout(timeout, session.discover()).await;
    // The session is ended whatever the listing gave, so servers do not
    // keep state for the gateway's probes.
    let _ = tokio::time::timeout(Duration::from_secs(2), session.close()).await;
    listing.map_err(|_| Error::Timeout(timeout.as_secs()))?
}

/// A client session with one upstream, as discovery and the era bridge
/// (`bridge.rs`) hold it.
#[derive(Clone)]
pub struct Session {
    /// The client of the server's TLS setting, shared with every other
    /// server of that setting.
    http: Http,
    url: String,
    shown: String,
    id: Option<String>,
    version: Option<String>,
    next_id: u64,
    /// Requests carry the 2026-07-28 `_meta` (no session, no handshake).
    modern: bool,
    /// The server's own headers from the catalog (its credentials).
    headers: Vec<(String, String)>,
    /// The gateway's OAuth token for the server, read at each request.
    token: Option<crate::token::TokenHandle>,
    /// Whether the requests are a client's (the era bridge), not the
    /// gateway's own probes: only a client's keep an on-demand server awake.
    for_client: bool,
}

/// Marks discovery's own requests, so that the control plane's runtimes do
/// not count them as use of an on-demand server (the filter drops a
/// client-sent one).
pub use mcp_filter::config::DISCOVERY_HEADER;

/// What a 2026-07-28 request says of its client, in `params._meta`.
fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
        "io.modelcontextprotocol/clientInfo": { "name": "mcp-gateway-discovery", "version": env!("CARGO_PKG_VERSION") },
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

impl Session {
    /// A session with `upstream`, sending its headers with every request.
    pub fn for_upstream(upstream: &Upstream) -> Self {
        Session {
            http: upstream.http.clone(),
            url: upstream.url.clone(),
            shown: upstream.shown.clone(),
            id: None,
            version: None,
            next_id: 0,
            modern: false,
            headers: upstream.headers.clone(),
            token: upstream.token.clone(),
            for_client: false,
        }
    }

    /// Marks the session's requests as a client's, which count as use of an
    /// on-demand server (discovery's and health checks' do not).
    pub fn for_client(mut self) -> Self {
        self.for_client = true;
        self
    }

    /// `initialize` then `notifications/initialized`; returns the result of
    /// `initialize`.
    pub async fn handshake(&mut self, capabilities: Value, client_info: Value) -> Result<Value, Error> {
        let params = json!({ "protocolVersion": DISCOVERY_VERSION, "capabilities": capabilities, "clientInfo": client_info });
        let init = self.request("initialize", params).await.map_err(Error::at("initialize"))?;
        self.version = init.get("protocolVersion").and_then(Value::as_str).map(str::to_string);
        self.post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await
            .map_err(Error::at("notifications/initialized"))?;
        Ok(init)
    }

    /// Sends `body` in the session and returns the answer unread, to be
    /// streamed.
    pub async fn send_raw(&self, body: Vec<u8>) -> Result<reqwest::Response, Error> {
        self.send(body, None).await
    }

    async fn send(&self, body: Vec<u8>, method: Option<&str>) -> Result<reqwest::Response, Error> {
        let mut req = self
            .http
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if !self.for_client {
            req = req.header(DISCOVERY_HEADER, "1");
        }
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        if let Some(bearer) = self.token.as_ref().and_then(|t| t.bearer()) {
            req = req.header("authorization", bearer);
        }
        if let Some(id) = &self.id {
            req = req.header("mcp-session-id", id);
        }
        if let Some(v) = &self.version {
            req = req.header("mcp-protocol-version", v);
        }
        // Required at 2026-07-28, ignored before.
        if let Some(method) = method {
            req = req.header("mcp-method", method);
        }
        req.send().await.map_err(|e| Error::Unreachable(self.http.failure(&e, &self.shown)))
    }

    /// POSTs one message in the session, answer unread.
    pub async fn notify(&self, message: &Value) -> Result<(), Error> {
        let resp = self.send_raw(message.to_string().into_bytes()).await?;
        resp.status().is_success().then_some(()).ok_or_else(|| Error::Http { status: resp.status(), snippet: String::new() })
    }

    async fn discover(&mut self) -> Result<Discovered, Error> {
        let discovered = self.speaks_stateless_era().await;
        let stateless_era = discovered.is_some();
        // Everything the gateway relays to its clients, so that servers list
        // the tools they offer only to clients that can answer sampling,
        // elicitation or roots requests.
        let info = json!({ "name": "mcp-gateway-discovery", "version": env!("CARGO_PKG_VERSION") });
        let (init, modern_only) = match (self.handshake(client_capabilities(), info).await, discovered) {
            (Ok(init), _) => (init, false),
            // A server of the stateless revision only: list it in that revision.
            (Err(_), Some(discover)) => {
                self.id = None;
                self.version = Some(STATELESS_VERSION.to_string());
                self.modern = true;
                (discover, true)
            }
            (Err(e), None) => return Err(e),
        };
        let capabilities = init.get("capabilities").cloned().unwrap_or_else(|| json!({}));
        let offers = |what: &str| capabilities.get(what).is_some_and(|c| !c.is_null());
        let mut d = Discovered {
            instructions: init.get("instructions").and_then(Value::as_str).map(str::to_string),
            stateful: self.id.is_some(),
            stateless_era,
            modern_only,
            protocol_version: self.version.clone(),
            ..Default::default()
        };
        if offers("tools") {
            d.tools = self.list_all("tools/list", "tools").await?;
        }
        if offers("prompts") {
            d.prompts = self.list_all("prompts/list", "prompts").await?;
        }
        if offers("resources") {
            d.resources = self.list_all("resources/list", "resources").await?;
            // Templates are optional: a server without them may not know the method.
            d.resource_templates = match self.list_all("resources/templates/list", "resourceTemplates").await {
                Err(e) if e.jsonrpc_code() == Some(-32601) => Vec::new(),
                other => other?,
            };
        }
        d.capabilities = capabilities;
        Ok(d)
    }

    /// Probes `server/discover` at 2026-07-28, as clients of that revision
    /// do; its result when the server speaks that revision. Any failure
    /// means no: the server is then reached by handshake.
    async fn speaks_stateless_era(&mut self) -> Option<Value> {
        self.version = Some(STATELESS_VERSION.to_string());
        let answer = self.request("server/discover", json!({ "_meta": modern_meta() })).await;
        self.version = None;
        // A stateless probe must leave no session behind.
        self.id = None;
        let result = answer.ok()?;
        let versions = result.get("supportedVersions")?.as_array()?;
        versions.iter().any(|x| x.as_str() == Some(STATELESS_VERSION)).then_some(result)
    }

    /// Every item of a paginated list.
    async fn list_all(&mut self, method: &str, key: &str) -> Result<Vec<Value>, Error> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let page = self.request(method, params).await.map_err(Error::at(method))?;
            match page.get(key) {
                Some(Value::Array(list)) => items.extend(list.iter().cloned()),
                _ => return Err(Error::NotAList { method: method.into(), key: key.into() }),
            }
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(next) if Some(next) != cursor.as_deref() => cursor = Some(next.to_string()),
                Some(_) => return Err(Error::RepeatedCursor(method.into())),
                None => return Ok(items),
            }
        }
        Err(Error::TooManyPages(method.into()))
    }

    /// Sends a request in the session and returns its `result`.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, Error> {
        self.request(method, params).await
    }

    /// Sends a request and returns its `result`.
    async fn request(&mut self, method: &str, mut params: Value) -> Result<Value, Error> {
        if let (true, Some(p)) = (self.modern, params.as_object_mut()) {
            p.insert("_meta".into(), modern_meta());
        }
        self.next_id += 1;
        let id = self.next_id;
        let body = self.post(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })).await?;
        let message = body.into_iter().find(|m| m.get("id").and_then(Value::as_u64) == Some(id)).ok_or(Error::NoResponse)?;
        if let Some(err) = message.get("error") {
            let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
            let text = err.get("message").and_then(Value::as_str).unwrap_or("");
            return Err(Error::JsonRpc { code, message: text.to_string() });
        }
        message.get("result").cloned().ok_or(Error::NoResult)
    }

    /// POSTs one message; returns the JSON-RPC messages of the answer.
    async fn post(&mut self, message: Value) -> Result<Vec<Value>, Error> {
        let method = message.get("method").and_then(Value::as_str).map(str::to_string);
        let resp = self.send(message.to_string().into_bytes(), method.as_deref()).await?;
        let status = resp.status();
        if let Some(id) = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            self.id = Some(id.to_string());
        }
        let is_sse = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("text/event-stream"));
        let text = resp.text().await.map_err(|e| Error::Reading(e.to_string()))?;
        if status == reqwest::StatusCode::ACCEPTED {
            return Ok(Vec::new());
        }
        if !status.is_success() {
            let snippet: String = text.chars().take(200).collect();
            return Err(Error::Http { status, snippet });
        }
        let payloads = if is_sse { mcp_filter::sse::events(&text) } else { vec![text] };
        Ok(payloads.iter().filter_map(|p| serde_json::from_str(p).ok()).collect())
    }

    /// A health check: `ping` in this session, opened first if need be, and
    /// opened again once if the server lost it (it restarted, say). A server
    /// of the stateless revision only is asked `server/discover`.
    pub async fn check(&mut self, modern_only: bool) -> Result<(), Error> {
        if modern_only {
            self.modern = true;
            self.id = None;
            self.version = Some(STATELESS_VERSION.to_string());
            return self.request("server/discover", json!({})).await.map(|_| ());
        }
        let info = || json!({ "name": "mcp-gateway-health", "version": env!("CARGO_PKG_VERSION") });
        if self.version.is_none() {
            self.handshake(json!({}), info()).await?;
        }
        if self.request("ping", json!({})).await.is_ok() {
            return Ok(());
        }
        self.id = None;
        self.version = None;
        self.handshake(json!({}), info()).await?;
        self.request("ping", json!({})).await.map(|_| ())
    }

    /// Whether this session is with `upstream` as it is reached now (its
    /// URL, credentials and TLS setting).
    pub fn serves(&self, upstream: &Upstream) -> bool {
        self.url == upstream.url && self.headers == upstream.headers && self.token == upstream.token && self.http == upstream.http
    }

    /// Ends the session (DELETE), if the server issued one.
    pub async fn close(&mut self) {
        if let Some(id) = &self.id {
            // With the server's credentials, as every request of the session:
            // a server that wants a token would refuse the DELETE and keep
            // the session.
            let mut req = self.http.client.delete(&self.url).header("mcp-session-id", id);
            for (name, value) in &self.headers {
                req = req.header(name, value);
            }
            if let Some(bearer) = self.token.as_ref().and_then(|t| t.bearer()) {
                req = req.header("authorization", bearer);
            }
            if let Some(v) = &self.version {
                req = req.header("mcp-protocol-version", v);
            }
            let _ = req.send().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn errors_read_as_sentences_and_keep_the_servers_code() {
        let missing = Error::at("resources/templates/list")(Error::JsonRpc { code: -32601, message: "Method not found".into() });
        assert_eq!(missing.to_string(), "resources/templates/list failed: JSON-RPC error -32601: Method not found");
        assert_eq!(missing.jsonrpc_code(), Some(-32601));
        let refused = Error::at("initialize")(Error::Http { status: reqwest::StatusCode::FORBIDDEN, snippet: "no".into() });
        assert_eq!(refused.to_string(), "initialize failed: HTTP 403 Forbidden: no");
        assert_eq!(refused.jsonrpc_code(), None);
        assert_eq!(Error::Timeout(10).to_string(), "no answer within 10 s");
    }
}
