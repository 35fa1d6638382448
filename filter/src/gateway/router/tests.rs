use serde_json::{json, Value};

use super::super::Gateway;
use crate::config::{AuthConfig, AuthorizationConfig, InMcp, NamedRoute, PolicyRule, Targets, ToolRouter};
use crate::decision::{BodyAction, HeadAction, Now, Reply, RequestHead};
use crate::fixtures::{api_key, config, stateless_server};
use crate::search::IndexBuilder;

const NOW: Now = Now { unix_secs: 1_000, entropy: 7 };

fn tool(name: &str, server: usize, upstream: &str, description: &str, arguments: &[&str]) -> NamedRoute {
    let properties: serde_json::Map<String, Value> = arguments.iter().map(|a| (a.to_string(), json!({"type": "string"}))).collect();
    let definition = json!({"name": name, "description": description, "inputSchema": {"type": "object", "properties": properties}});
    NamedRoute { name: name.into(), server, upstream_name: upstream.into(), definition: crate::config::Definition::new(&definition) }
}

/// Two stateless servers, `time` and `fs`, with four tools, and the router
/// at `/tools`, indexed as the control plane indexes.
fn gateway(in_mcp: InMcp, tweak: impl FnOnce(&mut crate::config::FilterConfig)) -> Gateway {
    let mut c = config();
    c.servers = vec![stateless_server("time", "2025-06-18"), stateless_server("fs", "2025-06-18")];
    c.max_body_bytes = 64 * 1024;
    c.tools = vec![
        tool("time__get_current_time", 0, "get_current_time", "Get the current time in a timezone.", &["timezone"]),
        tool("time__convert_time", 0, "convert_time", "Convert a time between timezones.", &["time", "source_timezone"]),
        tool("fs__read_file", 1, "read_file", "Read the contents of a file.", &["path"]),
        tool("fs__list_directory", 1, "list_directory", "List the files in a directory.", &["path"]),
    ];
    c.prompts = vec![];
    c.resources = vec![];
    c.resource_templates = vec![];
    let mut index = IndexBuilder::default();
    for t in &c.tools {
        index.push_definition(&t.name, &t.definition.value());
    }
    c.router = Some(ToolRouter { path: "/tools".into(), in_mcp, default_limit: 5, max_limit: 10, index: index.finish() });
    tweak(&mut c);
    Gateway::new(c).unwrap().loaded(1_796_400_000)
}

fn head(method: &str, path: &str) -> RequestHead {
    RequestHead {
        method: method.into(),
        path: path.into(),
        content_type: Some("application/json".into()),
        accept: Some("application/json, text/event-stream".into()),
        ..Default::default()
    }
}

/// `POST /tools` with `body`, as the glue runs it: headers, then body.
fn ask(gw: &Gateway, mut h: RequestHead, body: &str) -> Reply {
    match gw.on_headers(&mut h) {
        HeadAction::ReadBody => {}
        HeadAction::Reply(r) => return r,
        HeadAction::Refuse(r) => return r.reply,
        other => panic!("{other:?}"),
    }
    let decision = gw.decide(&h, body.as_bytes(), NOW);
    assert_eq!(decision.audit.method, super::SEARCH_METHOD);
    match decision.action {
        BodyAction::Reply(r) => r,
        other => panic!("{other:?}"),
    }
}

fn json_of(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn names(answer: &Value) -> Vec<&str> {
    answer["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect()
}

#[test]
fn post_tools_ranks_the_tools_that_fit_with_their_schemas() {
    let gw = gateway(InMcp::Off, |_| {});
    let r = ask(&gw, head("POST", "/tools"), r#"{"task": "what time is it in Tokyo", "context": "timezone Asia/Tokyo"}"#);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let answer = json_of(&r);
    assert_eq!(names(&answer)[..2], ["time__get_current_time", "time__convert_time"]);
    let first = &answer["tools"][0];
    assert_eq!(first["server"], "time");
    assert_eq!(first["description"], "Get the current time in a timezone.");
    assert_eq!(first["inputSchema"]["properties"]["timezone"]["type"], "string");
    assert!(first["score"].as_f64().unwrap() > answer["tools"][1]["score"].as_f64().unwrap());
    assert_eq!(answer["task"], "what time is it in Tokyo");
    assert_eq!(answer["version"], "1");

    // The seed's own example: a task that fits nothing gets no tools.
    let none = json_of(&ask(&gw, head("POST", "/tools"), r#"{"task": "test query", "context": "testing"}"#));
    assert_eq!(none["tools"], json!([]));
    // limit, servers, and a query string on the path.
    let one = json_of(&ask(&gw, head("POST", "/tools?x=1"), r#"{"task": "read the file list of a directory", "limit": 1}"#));
    assert_eq!(names(&one), ["fs__list_directory"]);
    let fs_only = json_of(&ask(&gw, head("POST", "/tools"), r#"{"task": "time of the file", "servers": ["fs"]}"#));
    assert!(names(&fs_only).iter().all(|n| n.starts_with("fs__")) && !names(&fs_only).is_empty());
}

#[test]
fn post_tools_refuses_what_it_cannot_answer_with_an_error_that_says_why() {
    let gw = gateway(InMcp::Off, |_| {});
    let refused = |body: &str, status: u16, code: i64, says: &str| {
        let r = ask(&gw, head("POST", "/tools"), body);
        let e = json_of(&r);
        assert_eq!((r.status, e["error"]["code"].as_i64()), (status, Some(code)), "{body}: {e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    };
    refused("{not json", 400, -32700, "not JSON");
    refused(r#"{"task": "  "}"#, 400, -32600, "task is empty");
    refused(r#"{"context": "x"}"#, 400, -32600, "missing field `task`");
    refused(r#"{"task": "x", "taks": 1}"#, 400, -32600, "unknown field `taks`");
    refused(r#"{"task": "x", "limit": 0}"#, 400, -32600, "ask for 1 to 10 tools");
    refused(r#"{"task": "x", "limit": 11}"#, 400, -32600, "ask for 1 to 10 tools");
    refused(r#"{"task": "x", "servers": ["nope"]}"#, 400, -32600, "yours: time, fs");
    refused(&format!(r#"{{"task": "{}"}}"#, "a".repeat(5000)), 400, -32600, "at most 4096");
    refused(&format!(r#"{{"task": "{}"}}"#, "a".repeat(70_000)), 413, -32600, "too large");

    let mut text = head("POST", "/tools");
    text.content_type = Some("text/plain".into());
    assert_eq!(ask(&gw, text, "{}").status, 415);
    let r = ask(&gw, head("GET", "/tools"), "");
    assert_eq!(r.status, 405);
    assert!(r.headers.contains(&("allow", "POST".to_string())));
    assert_eq!(ask(&gw, head("DELETE", "/tools/status"), "").headers.last(), Some(&("allow", "GET".to_string())));
    // Other paths are not the router's.
    assert!(matches!(gw.on_headers(&mut head("POST", "/toolsx")), HeadAction::PassThrough));
    assert!(matches!(gw.on_headers(&mut head("GET", "/tools/other")), HeadAction::PassThrough));
}

#[test]
fn the_caller_finds_only_what_it_may_use() {
    let guarded = |c: &mut crate::config::FilterConfig| {
        c.auth = Some(AuthConfig {
            api_keys: vec![api_key("k-alice-0123456789", "alice", &["dev"])],
            jwt: None,
            protected_resource: None,
            client_certificates: false,
            admin_groups: vec![],
        });
        c.authorization = Some(AuthorizationConfig {
            default_allow: true,
            rules: vec![PolicyRule {
                name: "no-fs-reads".into(),
                principals: vec![],
                groups: vec![],
                allow: Targets::default(),
                deny: Targets { tools: vec!["fs__read_*".into()], ..Default::default() },
            }],
        });
    };
    let gw = gateway(InMcp::Off, guarded);
    assert_eq!(ask(&gw, head("POST", "/tools"), r#"{"task": "read a file"}"#).status, 401, "no credential");
    let alice = RequestHead { credential: Some("k-alice-0123456789".into()), ..head("POST", "/tools") };
    let answer = json_of(&ask(&gw, alice.clone(), r#"{"task": "read the contents of a file"}"#));
    assert!(!names(&answer).contains(&"fs__read_file"), "{answer}");
    assert!(names(&answer).contains(&"fs__list_directory"));

    let status = json_of(&ask(&gw, RequestHead { method: "GET".into(), path: "/tools/status".into(), ..alice }, ""));
    assert_eq!((status["tools"].as_u64(), status["servers"].as_u64()), (Some(3), Some(2)), "{status}");
    assert_eq!(status["version"], "1");
    assert_eq!(status["loaded_at"], "2026-12-04T16:00:00Z");
    assert_eq!(status["in_mcp"], "off");
}

/// A session of the handshake era (the servers keep none, so `initialize`
/// is answered at once).
fn session(gw: &Gateway) -> String {
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;
    match gw.on_body(&head("POST", "/mcp"), init.as_bytes(), NOW) {
        BodyAction::Reply(r) => r.headers.iter().find(|(k, _)| *k == "mcp-session-id").unwrap().1.clone(),
        other => panic!("{other:?}"),
    }
}

fn mcp(gw: &Gateway, body: Value) -> BodyAction {
    let h = RequestHead { session_id: Some(session(gw)), ..head("POST", "/mcp") };
    gw.on_body(&h, body.to_string().as_bytes(), NOW)
}

fn listed(gw: &Gateway) -> Vec<String> {
    let BodyAction::Reply(r) = mcp(gw, json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})) else { panic!() };
    json_of(&r)["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn inside_mcp_the_search_tool_sits_beside_the_tools_or_in_their_place() {
    assert_eq!(listed(&gateway(InMcp::Off, |_| {})).len(), 4);
    let beside = listed(&gateway(InMcp::Alongside, |_| {}));
    assert_eq!(beside.len(), 5);
    assert_eq!(beside.last().map(String::as_str), Some("search_tools"));
    assert_eq!(listed(&gateway(InMcp::Only, |_| {})), ["search_tools", "call_tool"]);
    // Without the mode, the names are nobody's.
    let BodyAction::Reply(r) = mcp(
        &gateway(InMcp::Alongside, |_| {}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "call_tool"}}),
    ) else {
        panic!()
    };
    assert!(json_of(&r)["error"]["message"].as_str().unwrap().contains("Unknown tool: call_tool"));
}

#[test]
fn search_tools_answers_in_mcp_and_call_tool_calls_what_it_found() {
    let gw = gateway(InMcp::Only, |_| {});
    let search = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "search_tools", "arguments": {"task": "list the files of a directory", "limit": 2}}});
    let BodyAction::Reply(r) = mcp(&gw, search) else { panic!() };
    let result = &json_of(&r)["result"];
    assert_eq!(result["structuredContent"]["tools"][0]["name"], "fs__list_directory", "{result}");
    let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text, result["structuredContent"]["tools"]);
    let BodyAction::Reply(bad) =
        mcp(&gw, json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "search_tools", "arguments": {}}}))
    else {
        panic!()
    };
    assert_eq!(json_of(&bad)["error"]["code"], -32602);

    let call = json!({"jsonrpc": "2.0", "id": "c-9", "method": "tools/call", "params": {
        "name": "call_tool", "arguments": {"name": "fs__list_directory", "arguments": {"path": "/tmp"}}, "_meta": {"progressToken": 5}}});
    let BodyAction::Forward(f) = mcp(&gw, call) else { panic!() };
    assert_eq!(f.server, 1);
    let sent: Value = serde_json::from_slice(f.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        sent,
        json!({"jsonrpc": "2.0", "id": "c-9", "method": "tools/call", "params": {"name": "list_directory", "arguments": {"path": "/tmp"}, "_meta": {"progressToken": 5}}})
    );
    let refused = |arguments: Value, says: &str| {
        let BodyAction::Reply(r) =
            mcp(&gw, json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {"name": "call_tool", "arguments": arguments}}))
        else {
            panic!()
        };
        let message = json_of(&r)["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(says), "{message}");
    };
    refused(json!({"name": "fs__nope"}), "Unknown tool: fs__nope");
    refused(json!({"name": "call_tool"}), "call call_tool directly");
    refused(json!({"tool": "x"}), "call_tool takes");
    // The tools themselves are still called by name.
    let direct = json!({"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {"name": "time__get_current_time", "arguments": {}}});
    assert!(matches!(mcp(&gw, direct), BodyAction::Forward(f) if f.server == 0));
}

#[test]
fn a_virtual_server_has_its_own_in_mcp_and_searches_and_calls_only_its_subset() {
    use crate::config::{Subset, VirtualServer};
    let gw = gateway(InMcp::Off, |c| {
        c.endpoints = vec![VirtualServer {
            name: "files".into(),
            path: "/mcp/files".into(),
            tools: Subset { include: Some(vec!["fs__*".into()]), exclude: vec![] },
            prompts: Subset::default(),
            resources: Subset::default(),
            renames: vec![("fs__read_file".into(), "read".into())],
            descriptions: vec![],
            authorization: None,
            in_mcp: Some(InMcp::Only),
        }];
    });
    assert_eq!(listed(&gw).len(), 4, "the gateway's endpoint keeps its setting");
    let on_files = |body: Value| {
        let h = RequestHead { session_id: Some(session(&gw)), ..head("POST", "/mcp/files") };
        gw.on_body(&h, body.to_string().as_bytes(), NOW)
    };
    let BodyAction::Reply(r) = on_files(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})) else { panic!() };
    let names: Vec<Value> = json_of(&r)["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].clone()).collect();
    assert_eq!(names, [json!("search_tools"), json!("call_tool")]);
    let search = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "search_tools", "arguments": {"task": "read a file and get the current time", "limit": 10}}});
    let BodyAction::Reply(r) = on_files(search) else { panic!() };
    let found: Vec<Value> =
        json_of(&r)["result"]["structuredContent"]["tools"].as_array().unwrap().iter().map(|t| t["name"].clone()).collect();
    assert!(found.contains(&json!("read")) && !found.contains(&json!("time__get_current_time")), "{found:?}");
    // call_tool by the name here reaches the server by its own name; a tool outside is unknown.
    let call = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "call_tool", "arguments": {"name": "read", "arguments": {"path": "/a"}}}});
    let BodyAction::Forward(f) = on_files(call) else { panic!() };
    let sent: Value = serde_json::from_slice(f.body.as_deref().unwrap()).unwrap();
    assert_eq!((f.server, sent["params"]["name"].clone()), (1, json!("read_file")));
    let outside = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "call_tool", "arguments": {"name": "time__get_current_time"}}});
    let BodyAction::Reply(r) = on_files(outside) else { panic!() };
    assert_eq!(json_of(&r)["error"]["message"], "Unknown tool: time__get_current_time");
}
