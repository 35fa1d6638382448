//! The tool router (issue 20): which tools fit a task, answered from the
//! index the control plane compiled (`crate::search`), filtered by the
//! caller's authorization exactly as `tools/list` is.
//!
//! - `POST <path>` (`/tools`) with `{"task", "context"?, "limit"?,
//!   "servers"?}`: the ranked tools, each with its name, server,
//!   description, input schema and score.
//! - `GET <path>/status`: the index as the caller sees it.
//! - Inside MCP ([`InMcp`]): the gateway's own `search_tools`, and
//!   `call_tool`, which calls a tool found by name.
//!
//! Every refusal is a JSON-RPC error naming what to change.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::endpoint::View;
use super::{auth, Gateway};
use crate::config::{FilterConfig, InMcp, NamedRoute, CALL_TOOL, SEARCH_TOOL};
use crate::decision::{Audit, BodyAction, HeadAction, Reply, RequestHead};
use crate::error::McpError;
use crate::headers::media_type;
use crate::jsonrpc;
use crate::policy::Caller;
use crate::search::Query;

/// The most bytes of task and context a search reads: the ranking's cost
/// grows with the query's words times the tools.
pub const MAX_QUERY_BYTES: usize = 4096;

/// The audit's (and the metrics') method of a `POST /tools`.
pub const SEARCH_METHOD: &str = "router/search";

/// `search_tools` as `tools/list` shows it.
const SEARCH_DEFINITION: &str = r#"{"name":"search_tools","title":"Search the gateway's tools","description":"Find the tools that fit a task among every tool this gateway offers you. Describe the task in a sentence; the answer lists the best tools first, each with its name, server, description and input schema. Call a tool found by its name (or through call_tool when only these tools are listed).","inputSchema":{"type":"object","properties":{"task":{"type":"string","description":"What you want to do, in a sentence"},"context":{"type":"string","description":"Optional: more about the situation, weighing less than the task"},"limit":{"type":"integer","minimum":1,"description":"How many tools at most (default 5)"},"servers":{"type":"array","items":{"type":"string"},"description":"Optional: search only these servers' tools"}},"required":["task"]},"annotations":{"readOnlyHint":true,"openWorldHint":false}}"#;

/// `call_tool` as `tools/list` shows it ([`InMcp::Only`]).
const CALL_DEFINITION: &str = r#"{"name":"call_tool","title":"Call a tool found by search_tools","description":"Call one of the gateway's tools by the name search_tools gave, with its arguments as its input schema describes them.","inputSchema":{"type":"object","properties":{"name":{"type":"string","description":"The tool's name, as search_tools gave it"},"arguments":{"type":"object","description":"The tool's arguments"}},"required":["name"]}}"#;

/// The gateway's own tools `tools/list` shows, as (definition, name).
pub(super) fn own_tools(in_mcp: InMcp) -> Vec<(String, String)> {
    let search = (SEARCH_DEFINITION.to_string(), SEARCH_TOOL.to_string());
    match in_mcp {
        InMcp::Off => Vec::new(),
        InMcp::Alongside => vec![search],
        InMcp::Only => vec![search, (CALL_DEFINITION.to_string(), CALL_TOOL.to_string())],
    }
}

/// What `tools/list` offers of the tool router on the gateway's endpoint
/// (`view` `None`) or a virtual server's: the endpoint's own setting, else
/// the router's; nothing without a router.
pub(super) fn in_mcp(config: &FilterConfig, view: Option<&View>) -> InMcp {
    let Some(router) = &config.router else { return InMcp::Off };
    view.and_then(|v| v.endpoint(config)).and_then(|e| e.in_mcp).unwrap_or(router.in_mcp)
}

/// One of the gateway's own tools, called by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OwnTool {
    Search,
    Call,
}

/// What a search asks: the body of `POST /tools`, and the arguments of
/// `search_tools`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    task: String,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    servers: Option<Vec<String>>,
}

/// The arguments of `call_tool`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallArguments<'a> {
    name: String,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

/// The parts of a tool's definition an answer shows.
#[derive(Deserialize)]
struct Parts<'a> {
    #[serde(borrow, default)]
    title: Option<&'a RawValue>,
    #[serde(borrow, default)]
    description: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "inputSchema")]
    input_schema: Option<&'a RawValue>,
}

/// One tool of an answer.
#[derive(Serialize)]
struct Found<'a> {
    name: &'a str,
    server: &'a str,
    score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a RawValue>,
    #[serde(rename = "inputSchema", skip_serializing_if = "Option::is_none")]
    input_schema: Option<&'a RawValue>,
}

impl Gateway {
    /// The router's answer to a request for `path` (query removed), if it
    /// is the router's: a `POST` is read, `GET <path>/status` answered;
    /// the caller is authenticated as on the MCP endpoint.
    pub(super) fn router_head(&self, head: &mut RequestHead, path: &str) -> Option<HeadAction> {
        let router = self.config.router.as_ref()?;
        let status = path.strip_prefix(router.path.as_str()) == Some("/status");
        if path != router.path && !status {
            return None;
        }
        match self.authenticate(head) {
            Ok(caller) => head.caller = caller,
            Err(e) => return Some(HeadAction::Refuse(auth::refused(&self.config, head, &e))),
        }
        let refused = |allow| McpError::NotAllowedOn { method: head.method.clone(), path: path.to_string(), allow };
        Some(match (head.method.as_str(), status) {
            ("GET", true) => HeadAction::Reply(self.router_status(head.caller.as_ref())),
            ("POST", false) => {
                let ct = head.content_type.as_deref().unwrap_or_default();
                if media_type(ct).eq_ignore_ascii_case("application/json") {
                    HeadAction::ReadBody
                } else {
                    HeadAction::Reply(Reply::error(None, &McpError::UnsupportedMediaType(ct.to_string())))
                }
            }
            (_, true) => HeadAction::Reply(Reply::error(None, &refused("GET"))),
            (_, false) => HeadAction::Reply(Reply::error(None, &refused("POST"))),
        })
    }

    /// Whether a request with a body is the router's (`POST /tools`).
    pub(super) fn is_router_request(&self, head: &RequestHead) -> bool {
        self.config.router.as_ref().is_some_and(|r| head.path.split('?').next() == Some(r.path.as_str()))
    }

    /// `POST /tools`: the ranked tools, or a JSON-RPC error (HTTP 400) that
    /// says what to change.
    pub(super) fn router_search(&self, head: &RequestHead, body: &[u8], audit: &mut Audit) -> BodyAction {
        audit.method = SEARCH_METHOD.into();
        if let Some(reply) = self.check_size(body.len()) {
            return BodyAction::Reply(reply);
        }
        let ask: Ask = match serde_json::from_slice(body) {
            Ok(ask) => ask,
            Err(e) if e.is_syntax() || e.is_eof() => {
                return BodyAction::Reply(Reply::error(None, &McpError::Parse(format!("the body is not JSON ({e}); send {EXAMPLE}"))))
            }
            Err(e) => return BodyAction::Reply(Reply::error(None, &McpError::InvalidRequest(format!("{e}; send {EXAMPLE}")))),
        };
        match self.ranked(head.caller.as_ref(), None, &ask) {
            Ok(found) => {
                let answer = format!(
                    r#"{{"task":{},"tools":{},"version":{}}}"#,
                    jsonrpc::json_string(&ask.task),
                    found,
                    jsonrpc::json_string(&self.config.version)
                );
                BodyAction::Reply(Reply::json(200, answer.into_bytes()))
            }
            Err(why) => BodyAction::Reply(Reply::error(None, &McpError::InvalidRequest(why))),
        }
    }

    /// The gateway's own tool named `name`, if the router offers it in MCP.
    pub(super) fn own_tool(&self, name: &str, view: Option<&View>) -> Option<OwnTool> {
        match (in_mcp(&self.config, view), name) {
            (InMcp::Alongside | InMcp::Only, SEARCH_TOOL) => Some(OwnTool::Search),
            (InMcp::Only, CALL_TOOL) => Some(OwnTool::Call),
            _ => None,
        }
    }

    /// `search_tools`'s answer to a `tools/call` with `params`: the tools
    /// as text (for models) and as structured content; in the stateless
    /// revision (`stateless`), with the result type it requires.
    pub(super) fn search_tool(
        &self,
        caller: Option<&Caller>,
        view: Option<&View>,
        id: &str,
        params: Option<&RawValue>,
        stateless: bool,
    ) -> Result<BodyAction, McpError> {
        let ask: Ask = serde_json::from_str(arguments(params)?.get()).map_err(|e| {
            McpError::InvalidParams(format!("search_tools takes {{\"task\": \"...\"}} and optionally context, limit, servers: {e}"))
        })?;
        let found = self.ranked(caller, view, &ask).map_err(McpError::InvalidParams)?;
        let kind = if stateless { r#""resultType":"complete","# } else { "" };
        let result = format!(
            r#"{{{kind}"content":[{{"type":"text","text":{}}}],"structuredContent":{{"tools":{found}}}}}"#,
            jsonrpc::json_string(&found)
        );
        Ok(BodyAction::Reply(Reply::json(200, jsonrpc::result_body(id, &result))))
    }

    /// `call_tool`'s request as the `tools/call` of the tool it names: the
    /// new body (the client's id and `_meta` kept), the name, and the span
    /// of the name in it.
    pub(super) fn called_through(
        &self,
        view: Option<&View>,
        id: &str,
        params: Option<&RawValue>,
    ) -> Result<(Vec<u8>, String, std::ops::Range<usize>), McpError> {
        #[derive(Deserialize)]
        struct Meta<'a> {
            #[serde(borrow, default, rename = "_meta")]
            meta: Option<&'a RawValue>,
        }
        let raw = arguments(params)?;
        let call: CallArguments = serde_json::from_str(raw.get()).map_err(|e| {
            McpError::InvalidParams(format!("call_tool takes {{\"name\": \"<a tool search_tools found>\", \"arguments\": {{...}}}}: {e}"))
        })?;
        if self.own_tool(&call.name, view).is_some() {
            return Err(McpError::InvalidParams(format!("call_tool calls the servers' tools; call {} directly", call.name)));
        }
        let meta = params.and_then(|p| serde_json::from_str::<Meta>(p.get()).ok()).and_then(|m| m.meta);
        let head = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"#);
        let name = jsonrpc::json_string(&call.name);
        let span = head.len()..head.len() + name.len();
        let mut body = head + &name;
        body.push_str(r#","arguments":"#);
        body.push_str(call.arguments.map_or("{}", RawValue::get));
        if let Some(meta) = meta {
            body.push_str(r#","_meta":"#);
            body.push_str(meta.get());
        }
        body.push_str("}}");
        Ok((body.into_bytes(), call.name, span))
    }

    /// The tools that fit `ask` among those the caller may see, as a JSON
    /// array; or why the request cannot be answered.
    fn ranked(&self, caller: Option<&Caller>, view: Option<&View>, ask: &Ask) -> Result<String, String> {
        let router = self.config.router.as_ref().ok_or("the tool router is off (gateway.tool_router.enabled)")?;
        if ask.task.trim().is_empty() {
            return Err(format!("task is empty: say in words what you want to do, for example {EXAMPLE}"));
        }
        let context = ask.context.as_deref().unwrap_or_default();
        let size = ask.task.len() + context.len();
        if size > MAX_QUERY_BYTES {
            return Err(format!("task and context hold {size} bytes; the router reads at most {MAX_QUERY_BYTES}: shorten them"));
        }
        let limit = match ask.limit {
            None => router.default_limit,
            Some(n) if n >= 1 && n <= router.max_limit as u64 => n as usize,
            Some(n) => return Err(format!("limit {n} is out of range: ask for 1 to {} tools", router.max_limit)),
        };
        let lists = self.seen_by(caller, view);
        if ask.servers.as_ref().is_some_and(|names| names.len() > self.config.servers.len()) {
            return Err(format!("servers names more servers than the gateway has ({}): name each at most once", self.config.servers.len()));
        }
        let only: Option<Vec<usize>> = match &ask.servers {
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .map(|name| {
                        let at = self.config.servers.iter().position(|s| s.name == *name).filter(|i| lists.reaches(*i));
                        at.ok_or_else(|| {
                            let known: Vec<&str> = self.reachable_servers(&lists).collect();
                            format!("servers names {name:?}, which is not a server you may use (yours: {})", known.join(", "))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        let tools = &self.config.tools;
        // Which servers the search may take tools from, by index.
        let only: Option<Vec<bool>> = only.map(|chosen| {
            let mut picked = vec![false; self.config.servers.len()];
            for i in chosen {
                if let Some(slot) = picked.get_mut(i) {
                    *slot = true;
                }
            }
            picked
        });
        let visible = |i: usize| {
            lists.shows_tool(i)
                && tools.get(i).is_some_and(|t: &NamedRoute| only.as_ref().is_none_or(|o| o.get(t.server).copied().unwrap_or(false)))
        };
        let query = Query::new(&ask.task, context);
        let found = router.index.search(&query, limit, visible);
        let mut out = String::from("[");
        for (n, (i, score)) in found.into_iter().enumerate() {
            let Some(route) = tools.get(i) else { continue };
            let parts: Parts =
                serde_json::from_str(route.definition.text()).unwrap_or(Parts { title: None, description: None, input_schema: None });
            // On a virtual server, under its names and descriptions.
            let described = view.and_then(|v| v.description(&route.name)).and_then(|d| RawValue::from_string(jsonrpc::json_string(d)).ok());
            let item = Found {
                name: view.map_or(route.name.as_str(), |v| v.shown_name(&route.name)),
                server: self.server(route.server).map_or("", |s| s.name.as_str()),
                score: (f64::from(score) * 1000.0).round() / 1000.0,
                title: parts.title,
                description: described.as_deref().or(parts.description),
                input_schema: parts.input_schema,
            };
            if n > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(&item).unwrap_or_else(|_| "null".into()));
        }
        out.push(']');
        Ok(out)
    }

    /// The servers a caller seeing `lists` may use, by name.
    fn reachable_servers<'a>(&'a self, lists: &'a super::lists::Lists) -> impl Iterator<Item = &'a str> + 'a {
        self.config.servers.iter().enumerate().filter(|(i, _)| lists.reaches(*i)).map(|(_, s)| s.name.as_str())
    }

    /// `GET /tools/status`: the index as the caller sees it.
    fn router_status(&self, caller: Option<&Caller>) -> Reply {
        let Some(router) = &self.config.router else { return Reply::error(None, &McpError::Internal("no tool router".into())) };
        let lists = self.seen_by(caller, None);
        let tools = (0..self.config.tools.len()).filter(|i| lists.shows_tool(*i)).count();
        let mut servers: Vec<&str> = self.reachable_servers(&lists).collect();
        servers.retain(|name| {
            self.config.tools.iter().enumerate().any(|(i, t)| lists.shows_tool(i) && self.server(t.server).is_some_and(|s| s.name == *name))
        });
        let status = serde_json::json!({
            "status": "ready",
            "path": router.path,
            "tools": tools,
            "servers": servers.len(),
            "words": router.index.frequency.len(),
            "ranking": "bm25",
            "in_mcp": router.in_mcp,
            "version": self.config.version,
            "loaded_at": self.loaded_at.map(rfc3339),
        });
        Reply::json(200, status.to_string().into_bytes())
    }
}

/// The body `POST /tools` takes, for error messages.
const EXAMPLE: &str = r#"{"task": "what time is it in Tokyo", "limit": 5}"#;

/// A tool call's `arguments` (an object; none is an empty one).
fn arguments(params: Option<&RawValue>) -> Result<Box<RawValue>, McpError> {
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, default)]
        arguments: Option<&'a RawValue>,
    }
    let args = params
        .map(|p| serde_json::from_str::<Params>(p.get()))
        .transpose()
        .map_err(|e| McpError::InvalidParams(format!("params must be an object: {e}")))?
        .and_then(|p| p.arguments)
        .map_or_else(|| "{}".to_string(), |a| a.get().to_string());
    RawValue::from_string(args).map_err(|e| McpError::InvalidParams(e.to_string()))
}

/// A Unix time as RFC 3339 (UTC), without a date library.
fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests;
