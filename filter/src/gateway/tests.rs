use super::*;
use crate::config::{ControlPlane, NamedRoute, ServerEra};
use crate::decision::{AuthFailure, Cause, Page, Refusal};
use crate::policy::Caller;
use serde_json::{json, Value};

use crate::fixtures::{config, control_plane};

const NOW: Now = Now { unix_secs: 1_000, entropy: 7 };

fn post(session: Option<&str>) -> RequestHead {
    RequestHead {
        method: "POST".into(),
        path: "/mcp".into(),
        content_type: Some("application/json".into()),
        accept: Some("application/json, text/event-stream".into()),
        session_id: session.map(str::to_string),
        protocol_version: None,
        mcp_method: None,
        mcp_name: None,
        credential: None,
        ..Default::default()
    }
}

fn reply_json(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// A session as the gateway would issue it after `a` and `b` answered.
fn session(gw: &Gateway, b_error: bool) -> String {
    session_as(gw, post(None), b_error)
}

/// A session opened by the caller of `head` (which opens one with each
/// server it may reach), after `a` and `b` answered.
fn session_as(gw: &Gateway, head: RequestHead, b_error: bool) -> String {
    let plan = match gw.on_body(&head, br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#, NOW)
    {
        BodyAction::Initialize(p) => p,
        BodyAction::Reply(r) => return r.headers.iter().find(|(k, _)| *k == "mcp-session-id").unwrap().1.clone(),
        other => panic!("{other:?}"),
    };
    let ok_a = CalloutResponse {
        status: 200,
        session_id: Some("sid-a".into()),
        content_type: Some("text/event-stream".into()),
        body: b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"protocolVersion\":\"2025-06-18\"}}\n\n".to_vec(),
        oversized: false,
    };
    let b = (!b_error).then(|| CalloutResponse {
        status: 200,
        session_id: None,
        content_type: Some("application/json".into()),
        body: br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-03-26"}}"#.to_vec(),
        oversized: false,
    });
    let responses: Vec<_> = plan
        .callouts
        .iter()
        .map(|c| match gw.server(c.server).unwrap().name.as_str() {
            "a" => Some(ok_a.clone()),
            _ => b.clone(),
        })
        .collect();
    let (reply, followups, _) = gw.initialized(&plan, &responses, NOW);
    assert_eq!(followups.len(), responses.iter().filter(|r| r.is_some()).count());
    reply.headers.iter().find(|(k, _)| *k == "mcp-session-id").unwrap().1.clone()
}

#[test]
fn headers_decide_what_is_ours() {
    let gw = Gateway::new(config()).unwrap();
    assert_eq!(
        gw.on_headers(&mut RequestHead { path: "/health".into(), method: "GET".into(), ..Default::default() }),
        HeadAction::PassThrough
    );
    assert_eq!(gw.on_headers(&mut post(None)), HeadAction::ReadBody);
    assert_eq!(gw.on_headers(&mut RequestHead { path: "/mcp?x=1".into(), ..post(None) }), HeadAction::ReadBody);
    let status = |mut head: RequestHead| match gw.on_headers(&mut head) {
        HeadAction::Reply(r) => r.status,
        other => panic!("{other:?}"),
    };
    assert_eq!(status(RequestHead { method: "GET".into(), ..post(None) }), 405);
    assert_eq!(gw.on_headers(&mut RequestHead { method: "DELETE".into(), ..post(None) }), HeadAction::EndSession);
    assert_eq!(status(RequestHead { content_type: Some("text/plain".into()), ..post(None) }), 415);
    assert_eq!(status(RequestHead { content_type: None, ..post(None) }), 415);
    assert_eq!(status(RequestHead { accept: Some("text/html".into()), ..post(None) }), 406);
    assert_eq!(status(RequestHead { accept: None, ..post(None) }), 406);
    assert_eq!(status(RequestHead { accept: Some("application/json".into()), ..post(None) }), 406);
    assert_eq!(status(RequestHead { accept: Some("text/event-stream".into()), ..post(None) }), 406);
    assert_eq!(
        gw.on_headers(&mut RequestHead {
            accept: Some("*/*".into()),
            content_type: Some("Application/JSON; charset=utf-8".into()),
            ..post(None)
        }),
        HeadAction::ReadBody
    );
    assert_eq!(gw.on_headers(&mut RequestHead { accept: Some("application/*, text/*;q=0.5".into()), ..post(None) }), HeadAction::ReadBody);
}

#[test]
fn initialize_opens_upstream_sessions_and_seals_them() {
    let gw = Gateway::new(config()).unwrap();
    let plan = match gw.on_body(
        &post(None),
        br#"{"jsonrpc":"2.0","id":"x","method":"initialize","params":{"protocolVersion":"1999-01-01"}}"#,
        NOW,
    ) {
        BodyAction::Initialize(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(plan.version, LATEST_VERSION);
    assert_eq!(plan.callouts.len(), 2);
    assert_eq!(plan.callouts[1].cluster, "mcp_b");
    assert!(plan.callouts[1].headers.contains(&(":authority", "b.local:80".into())));
    let (reply, followups, _) = gw.initialized(&plan, &[None, None], NOW);
    assert!(followups.is_empty());
    let v = reply_json(&reply);
    assert_eq!(v["id"], "x");
    assert_eq!(v["result"]["protocolVersion"], LATEST_VERSION);
    assert_eq!(v["result"]["serverInfo"]["name"], "gw");

    let caps = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{},"roots":{"listChanged":true}}}}"#;
    let BodyAction::Initialize(plan) = gw.on_body(&post(None), caps, NOW) else { panic!("no plan") };
    let sent: Value = serde_json::from_slice(&plan.callouts[0].body).unwrap();
    assert_eq!(
        sent["params"]["capabilities"],
        json!({"sampling": {}, "roots": {"listChanged": true}}),
        "the client's capabilities reach the upstreams"
    );
    assert_eq!(sent["params"]["protocolVersion"], "2025-11-25");

    let token = session(&gw, false);
    let state = gw.handshake.sealer.open(&token, NOW.unix_secs).unwrap();
    assert_eq!(state.upstreams["a"].id.as_deref(), Some("sid-a"));
    assert_eq!(state.upstreams["b"].version.as_deref(), Some("2025-03-26"));
}

#[test]
fn routes_tool_calls_with_the_upstream_name_and_session() {
    let gw = Gateway::new(config()).unwrap();
    let token = session(&gw, false);
    let body = br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"a__echo","arguments":{"text":"hi"}}}"#;
    match gw.on_body(&post(Some(&token)), body, NOW) {
        BodyAction::Forward(f) => {
            assert_eq!(f.server, 0);
            assert_eq!(f.upstream_session.as_deref(), Some("sid-a"));
            assert_eq!(f.upstream_version.as_deref(), Some("2025-06-18"));
            let sent: Value = serde_json::from_slice(&f.body.unwrap()).unwrap();
            assert_eq!(sent, json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}));
        }
        other => panic!("{other:?}"),
    }
    let body = br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"plain"}}"#;
    match gw.on_body(&post(Some(&token)), body, NOW) {
        BodyAction::Forward(f) => assert_eq!((f.request_id.as_str(), f.server, f.upstream_session, f.body), ("5", 1, None, None)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn answers_to_relayed_requests_reach_the_server_that_asked() {
    let gw = Gateway::new(config()).unwrap();
    let token = session(&gw, false);
    let body = br#"{"jsonrpc":"2.0","id":"mcpgw:a:\"r-1\"","result":{"roots":[]}}"#;
    match gw.on_body(&post(Some(&token)), body, NOW) {
        BodyAction::Forward(f) => {
            assert_eq!((f.server, f.upstream_session.as_deref(), f.request_id.as_str()), (0, Some("sid-a"), "null"));
            assert_eq!(f.body.as_deref(), Some(&br#"{"jsonrpc":"2.0","id":"r-1","result":{"roots":[]}}"#[..]));
        }
        other => panic!("{other:?}"),
    }
    let error = br#"{"jsonrpc":"2.0","id":"mcpgw:s:4","error":{"code":-1,"message":"declined"}}"#;
    match gw.on_body(&post(Some(&token)), error, NOW) {
        BodyAction::Forward(f) => assert_eq!(
            (f.server, f.body.as_deref()),
            (2, Some(&br#"{"jsonrpc":"2.0","id":4,"error":{"code":-1,"message":"declined"}}"#[..]))
        ),
        other => panic!("{other:?}"),
    }
}

/// (session?, body) -> (HTTP status, JSON-RPC error code or 0 for a result)
fn check(gw: &Gateway, session: Option<&str>, head: Option<RequestHead>, body: &str) -> (u16, i64) {
    let head = head.unwrap_or_else(|| post(session));
    match gw.on_body(&head, body.as_bytes(), NOW) {
        BodyAction::Reply(r) if r.body.is_empty() => (r.status, 0),
        BodyAction::Reply(r) => (r.status, reply_json(&r)["error"]["code"].as_i64().unwrap_or(0)),
        other => panic!("{body}: {other:?}"),
    }
}

#[test]
fn refusals_carry_the_right_code() {
    let gw = Gateway::new(config()).unwrap();
    let token = session(&gw, true);
    let s = Some(token.as_str());
    let call = |name: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}"}}}}"#);
    let (unknown, unprefixed, failed) = (call("nope"), call("echo"), call("b__echo"));
    let cases: Vec<(Option<&str>, &str, (u16, i64))> = vec![
        (s, "{", (400, -32700)),
        (s, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, (202, 0)),
        (None, r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#, (202, 0)),
        (Some("k.garbage"), r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#, (404, -32001)),
        (s, r#"{"jsonrpc":"2.0","id":9,"result":{}}"#, (400, -32600)),
        (s, r#"{"jsonrpc":"2.0","id":"mcpgw:gone:1","result":{}}"#, (400, -32600)),
        (Some("k.garbage"), r#"{"jsonrpc":"2.0","id":"mcpgw:a:1","result":{}}"#, (404, -32001)),
        (None, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, (200, 0)),
        (None, r#"{"jsonrpc":"2.0","id":1,"method":"server/discover"}"#, (200, -32601)),
        (s, r#"{"jsonrpc":"2.0","id":1,"method":"resources/frobnicate"}"#, (200, -32601)),
        (None, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, (400, -32600)),
        (Some("k.garbage"), r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, (404, -32001)),
        (s, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, (200, 0)),
        (s, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"x"}}"#, (200, -32602)),
        (s, &unknown, (200, -32602)),
        (s, &unprefixed, (200, -32602)),
        (s, &failed, (200, -32603)),
        (s, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#, (200, -32602)),
    ];
    for (session, body, want) in cases {
        assert_eq!(check(&gw, session, None, body), want, "{body}");
    }
    let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(300));
    assert_eq!(check(&gw, s, None, &big), (413, -32600));
    let bad_version = RequestHead { protocol_version: Some("2030-01-01".into()), ..post(s) };
    assert_eq!(check(&gw, s, Some(bad_version), r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#), (400, -32600));
    let expired = Now { unix_secs: NOW.unix_secs + 61, ..NOW };
    assert!(matches!(
        gw.on_body(&post(s), br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, expired),
        BodyAction::Reply(Reply { status: 404, .. })
    ));
}

#[test]
fn unknown_tool_errors_name_the_tool() {
    let gw = Gateway::new(config()).unwrap();
    let token = session(&gw, false);
    let r = match gw.on_body(&post(Some(&token)), br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"zz"}}"#, NOW) {
        BodyAction::Reply(r) => r,
        other => panic!("{other:?}"),
    };
    let v = reply_json(&r);
    assert_eq!(v["id"], 3);
    assert_eq!(v["error"]["message"], "Unknown tool: zz");
}

#[test]
fn a_held_tool_is_refused_with_its_change_to_a_caller_who_may_call_it() {
    use crate::config::{AuthorizationConfig, HeldTool, PolicyRule, Targets};
    let mut c = config();
    c.held_tools =
        vec![HeldTool { name: "a__add".into(), server: 0, upstream_name: "add".into(), change: "its description changed".into() }];
    let call = |gw: &Gateway| {
        let token = session(gw, false);
        match gw.on_body(&post(Some(&token)), br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"a__add"}}"#, NOW) {
            BodyAction::Reply(r) => reply_json(&r),
            other => panic!("{other:?}"),
        }
    };
    let v = call(&Gateway::new(c.clone()).unwrap());
    assert_eq!(v["error"]["code"], -32602);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("a__add is held") && message.contains("its description changed"), "{message}");
    assert!(message.contains("POST /servers/a/tools/add/approve"), "{message}");
    // A caller whose rules deny the tool learns nothing of it.
    c.authorization = Some(AuthorizationConfig {
        default_allow: true,
        rules: vec![PolicyRule {
            name: "no-add".into(),
            principals: vec![],
            groups: vec![],
            allow: Targets::default(),
            deny: Targets { tools: vec!["*add".into()], ..Default::default() },
        }],
    });
    assert_eq!(call(&Gateway::new(c).unwrap())["error"]["message"], "Unknown tool: a__add");
}

#[test]
fn tools_list_is_the_configured_definitions() {
    let gw = Gateway::new(config()).unwrap();
    let token = session(&gw, false);
    let r = match gw.on_body(&post(Some(&token)), br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#, NOW) {
        BodyAction::Reply(r) => r,
        other => panic!("{other:?}"),
    };
    let names: Vec<_> = reply_json(&r)["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].clone()).collect();
    assert_eq!(names, vec![json!("a__echo"), json!("b__echo"), json!("plain"), json!("s__ping")]);
}

#[test]
fn bad_configs_are_refused() {
    let mut c = config();
    c.tools[0].server = 9;
    assert!(matches!(Gateway::new(c), Err(ConfigError::NoSuchServer { .. })));
    let mut c = config();
    c.tools[1].name = "a__echo".into();
    assert!(matches!(Gateway::new(c), Err(ConfigError::DuplicateTool(_))));
}

#[test]
fn ending_a_session_ends_its_upstream_sessions() {
    let gw = Gateway::new(config()).unwrap();
    let token = session(&gw, false);
    let delete = RequestHead { method: "DELETE".into(), content_type: None, ..post(Some(&token)) };
    let (reply, callouts, ended) = gw.end_session(&delete, &NoneOpened, NOW);
    assert_eq!(reply.status, 204);
    // Recorded as ended until the id would expire (issued at NOW, TTL 60 s).
    let (slot, until) = ended.unwrap();
    assert_eq!((slot, until), (crate::revocation::Slot::of(&token).unwrap(), NOW.unix_secs + 60));
    // Only `a` issued a session id; `b` is stateless and has nothing to end.
    assert_eq!(callouts.len(), 1);
    let c = &callouts[0];
    assert_eq!(c.cluster, "mcp_a");
    assert!(c.headers.contains(&(":method", "DELETE".into())));
    assert!(c.headers.contains(&("mcp-session-id", "sid-a".into())));
    assert!(c.body.is_empty());

    let (reply, callouts, ended) = gw.end_session(&RequestHead { session_id: None, ..delete.clone() }, &NoneOpened, NOW);
    assert_eq!((reply.status, callouts.len(), ended), (400, 0, None));
    let (reply, callouts, ended) = gw.end_session(&RequestHead { session_id: Some("k.forged".into()), ..delete.clone() }, &NoneOpened, NOW);
    assert_eq!((reply.status, callouts.len(), ended), (404, 0, None));

    // Once recorded, the session's requests get 404, as an unknown one's.
    let after = RequestHead { session_ended: true, ..post(Some(&token)) };
    let body = br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    match gw.on_body(&after, body, NOW) {
        BodyAction::Reply(r) => {
            assert_eq!(r.status, 404);
            assert!(String::from_utf8_lossy(&r.body).contains("ended by a DELETE"));
        }
        other => panic!("expected 404, got {other:?}"),
    }
    let (reply, callouts, _) = gw.end_session(&RequestHead { session_ended: true, ..delete }, &NoneOpened, NOW);
    assert_eq!((reply.status, callouts.len()), (404, 0), "a second DELETE finds nothing to end");
}

#[test]
fn a_loopback_gateway_answers_only_to_loopback_names_and_its_own_origin() {
    let gw = Gateway::new(FilterConfig { loopback_only: true, ..config() }).unwrap();
    let head = |host: Option<&str>, origin: Option<&str>| RequestHead {
        host: host.map(str::to_string),
        origin: origin.map(str::to_string),
        ..post(None)
    };
    let status = |mut h: RequestHead| match gw.on_headers(&mut h) {
        HeadAction::Reply(r) | HeadAction::Refuse(Refusal { reply: r, .. }) => r.status,
        _ => 0,
    };
    // The conformance suite's dns-rebinding-protection scenario, both ways.
    assert_eq!(status(head(Some("localhost:4444"), Some("http://localhost:4444"))), 0, "the gateway's own origin passes");
    assert_eq!(status(head(Some("evil.example.com"), Some("http://evil.example.com"))), 421);
    assert_eq!(status(head(Some("evil.example.com:4444"), None)), 421, "no Origin: the Host alone gives the rebinding away");
    assert_eq!(status(head(Some("127.0.0.1:4444"), None)), 0);
    assert_eq!(status(head(Some("[::1]:4444"), None)), 0);
    assert_eq!(status(head(Some("localhost:4444"), Some("http://localhost:3000"))), 403, "another local origin is another origin");
    assert_eq!(status(head(None, None)), 0);
    // Not on loopback only: any Host (a load balancer's name); origins as before.
    let open = Gateway::new(config()).unwrap();
    let mut h = head(Some("gw.example.com"), Some("https://gw.example.com"));
    assert_eq!(open.on_headers(&mut h), HeadAction::ReadBody);
    let mut h = head(Some("gw.example.com"), Some("https://other.example"));
    assert!(matches!(open.on_headers(&mut h), HeadAction::Refuse(r) if r.reply.status == 403 && r.cause == Cause::Forbidden));
}

/// Where a request went: (server, the body sent if it changed), or the error code.
fn routed(gw: &Gateway, token: &str, method: &str, params: Value) -> Result<(usize, Option<Value>), i64> {
    let body = json!({"jsonrpc": "2.0", "id": 4, "method": method, "params": params}).to_string();
    match gw.on_body(&post(Some(token)), body.as_bytes(), NOW) {
        BodyAction::Forward(f) => Ok((f.server, f.body.map(|b| serde_json::from_slice(&b).unwrap()))),
        BodyAction::Reply(r) => Err(reply_json(&r)["error"]["code"].as_i64().unwrap_or(0)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn routes_prompts_resources_and_completions() {
    let gw = Gateway::new(config()).unwrap();
    let token = session(&gw, false);
    let t = token.as_str();
    let (server, body) = routed(&gw, t, "prompts/get", json!({"name": "a__greet", "arguments": {"who": "me"}})).unwrap();
    assert_eq!((server, body.unwrap()["params"]["name"].clone()), (0, json!("greet")));
    assert_eq!(routed(&gw, t, "prompts/get", json!({"name": "greet"})), Err(-32602));
    // Resources: exact URI, template prefix, sole user of a scheme; ambiguous schemes and strangers are unknown.
    assert_eq!(routed(&gw, t, "resources/read", json!({"uri": "file:///etc/motd"})), Ok((1, None)));
    assert_eq!(routed(&gw, t, "resources/read", json!({"uri": "notes://42/text"})), Ok((1, None)));
    assert_eq!(routed(&gw, t, "resources/subscribe", json!({"uri": "demo://resource/dynamic/9"})), Ok((0, None)));
    assert_eq!(routed(&gw, t, "resources/read", json!({"uri": "file:///elsewhere"})), Err(-32002));
    assert_eq!(routed(&gw, t, "resources/read", json!({"uri": "https://example.com/"})), Err(-32002));
    assert_eq!(routed(&gw, t, "resources/read", json!({})), Err(-32602));
    let (server, body) = routed(
        &gw,
        t,
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "a__greet"}, "argument": {"name": "who", "value": "m"}}),
    )
    .unwrap();
    assert_eq!((server, body.unwrap()["params"]["ref"]["name"].clone()), (0, json!("greet")));
    assert_eq!(
        routed(
            &gw,
            t,
            "completion/complete",
            json!({"ref": {"type": "ref/resource", "uri": "notes://{id}/text"}, "argument": {"name": "id", "value": "4"}})
        ),
        Ok((1, None))
    );
}

#[test]
fn lists_and_capabilities_come_from_the_configuration() {
    let gw = Gateway::new(config()).unwrap();
    let token = session(&gw, false);
    let list = |method: &str| match gw.on_body(
        &post(Some(&token)),
        json!({"jsonrpc": "2.0", "id": 1, "method": method}).to_string().as_bytes(),
        NOW,
    ) {
        BodyAction::Reply(r) => reply_json(&r)["result"].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(list("prompts/list")["prompts"][0]["name"], "a__greet");
    assert_eq!(list("resources/list")["resources"].as_array().unwrap().len(), 3);
    assert_eq!(list("resources/templates/list")["resourceTemplates"][0]["uriTemplate"], "notes://{id}/text");
    let plan = match gw.on_body(&post(None), br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#, NOW) {
        BodyAction::Initialize(p) => p,
        other => panic!("{other:?}"),
    };
    let (reply, _, _) = gw.initialized(&plan, &[None, None], NOW);
    assert_eq!(reply_json(&reply)["result"]["capabilities"], json!({"tools": {}, "prompts": {}, "resources": {"subscribe": true}}));
}

#[test]
fn fans_out_log_levels_and_notifications() {
    let gw = Gateway::new(config()).unwrap();
    let token = session(&gw, false);
    let fan = |body: &str| match gw.on_body(&post(Some(&token)), body.as_bytes(), NOW) {
        BodyAction::FanOut(reply, callouts) => (reply.status, callouts.iter().map(|c| c.cluster.clone()).collect::<Vec<_>>(), callouts),
        other => panic!("{other:?}"),
    };
    let (status, clusters, callouts) = fan(r#"{"jsonrpc":"2.0","id":3,"method":"logging/setLevel","params":{"level":"debug"}}"#);
    assert_eq!((status, clusters), (200, vec!["mcp_a".to_string()]), "only servers offering logging");
    assert!(callouts[0].headers.contains(&("mcp-session-id", "sid-a".into())));
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#;
    let (status, clusters, callouts) = fan(cancel);
    assert_eq!((status, clusters), (202, vec!["mcp_a".to_string(), "mcp_b".to_string(), "mcp_s".to_string()]));
    assert_eq!(callouts[1].body, cancel.as_bytes());
    assert!(!callouts[2].headers.iter().any(|(k, _)| *k == "mcp-session-id"), "a stateless server gets no session");
    assert!(callouts[2].headers.contains(&("mcp-protocol-version", "2025-03-26".into())));
}

#[test]
fn upstream_answers_are_bounded_before_they_enter_a_session() {
    let answer = |session_id: Option<String>, body: String| {
        handshake::upstream_session(Some(&CalloutResponse {
            status: 200,
            session_id,
            content_type: Some("application/json".into()),
            body: body.into_bytes(),
            oversized: false,
        }))
    };
    let ok = answer(Some("s".into()), r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#.into());
    assert_eq!((ok.id.as_deref(), ok.error), (Some("s"), None));
    let odd = answer(None, r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"9999-99-99"}}"#.into());
    assert!(odd.error.unwrap().contains("unsupported protocol version"));
    let long_id = answer(Some("x".repeat(300)), r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#.into());
    assert!(long_id.id.is_none() && long_id.error.is_some());
    let chatty = answer(None, format!(r#"{{"jsonrpc":"2.0","id":0,"error":{{"code":1,"message":"{}"}}}}"#, "é".repeat(100_000)));
    assert!(chatty.error.unwrap().chars().count() < 200);
}

#[test]
fn get_streams_go_to_the_events_endpoint() {
    let mut c = config();
    let gw = Gateway::new(c.clone()).unwrap();
    let get = |session: Option<&str>, accept: &str| RequestHead {
        method: "GET".into(),
        accept: Some(accept.into()),
        content_type: None,
        ..post(session)
    };
    match gw.on_headers(&mut get(None, "text/event-stream")) {
        HeadAction::Reply(r) => assert_eq!(r.status, 405, "no events endpoint, no GET"),
        other => panic!("{other:?}"),
    }
    c.control_plane = Some(control_plane());
    let gw = Gateway::new(c).unwrap();
    let token = session(&gw, false);
    assert_eq!(gw.on_headers(&mut get(Some(&token), "text/event-stream")), HeadAction::OpenStream);
    assert_eq!(gw.open_stream(&get(Some(&token), "text/event-stream"), NOW).unwrap().value(":path"), Some("/mcp-events"));
    assert_eq!(gw.open_stream(&get(Some(&token), "application/json"), NOW).unwrap_err().status, 406);
    assert_eq!(gw.open_stream(&get(None, "text/event-stream"), NOW).unwrap_err().status, 400);
    assert_eq!(gw.open_stream(&get(Some("k.x"), "text/event-stream"), NOW).unwrap_err().status, 404);
}

#[test]
fn mcp_method_and_name_headers_must_match_the_body() {
    let gw = Gateway::new(config()).unwrap();
    let token = session(&gw, false);
    let call = br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"a__echo","arguments":{}}}"#;
    let with = |method: Option<&str>, name: Option<&str>| RequestHead {
        mcp_method: method.map(Into::into),
        mcp_name: name.map(Into::into),
        ..post(Some(&token))
    };
    let code = |head: RequestHead| match gw.on_body(&head, call, NOW) {
        BodyAction::Reply(r) => (r.status, reply_json(&r)["error"]["code"].as_i64().unwrap(), reply_json(&r)["id"].clone()),
        other => panic!("{other:?}"),
    };
    assert_eq!(code(with(Some("tools/list"), None)), (400, -32020, json!(8)));
    assert_eq!(code(with(Some("tools/call"), Some("b__echo"))), (400, -32020, json!(8)));
    match gw.on_body(&with(Some("tools/call"), Some("a__echo")), call, NOW) {
        BodyAction::Forward(f) => assert_eq!(f.mcp_name.as_deref(), Some("echo"), "the upstream sees its own name"),
        other => panic!("{other:?}"),
    }
    match gw.on_body(&with(None, None), call, NOW) {
        BodyAction::Forward(f) => assert_eq!(f.mcp_name, None),
        other => panic!("{other:?}"),
    }
    let read = br#"{"jsonrpc":"2.0","id":9,"method":"resources/read","params":{"uri":"file:///etc/motd"}}"#;
    assert!(matches!(gw.on_body(&with(None, Some("file:///etc/passwd")), read, NOW), BodyAction::Reply(Reply { status: 400, .. })));
}

#[test]
fn mcp_name_may_come_in_mcps_base64_wrapper() {
    let gw = Gateway::new(config()).unwrap();
    let token = session(&gw, false);
    let head = RequestHead { mcp_name: Some(encode_header_value("a__echo")), ..post(Some(&token)) };
    let call = br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"a__echo"}}"#;
    assert!(matches!(gw.on_body(&head, call, NOW), BodyAction::Forward(_)));
    let wrapped = RequestHead { mcp_name: Some("=?base64?YV9fZWNobw==?=".into()), ..post(Some(&token)) };
    assert!(matches!(gw.on_body(&wrapped, call, NOW), BodyAction::Forward(_)), "a wrapped ASCII name is the same name");
}

#[test]
fn stateless_servers_need_no_session_and_survive_a_failed_initialize() {
    let gw = Gateway::new(config()).unwrap();
    let plan = match gw.on_body(&post(None), br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#, NOW) {
        BodyAction::Initialize(p) => p,
        other => panic!("{other:?}"),
    };
    let clusters: Vec<_> = plan.callouts.iter().map(|c| c.cluster.as_str()).collect();
    assert_eq!(clusters, vec!["mcp_a", "mcp_b"], "no initialize for the stateless server");
    // Every initialize failed; the stateless server is still reachable.
    let (reply, _, _) = gw.initialized(&plan, &[None, None], NOW);
    let token = reply.headers.iter().find(|(k, _)| *k == "mcp-session-id").unwrap().1.clone();
    match gw.on_body(&post(Some(&token)), br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"s__ping"}}"#, NOW) {
        BodyAction::Forward(f) => assert_eq!((f.server, f.upstream_session, f.upstream_version.as_deref()), (2, None, Some("2025-03-26"))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_stateless_revision_is_served_as_is_or_through_the_era_bridge() {
    let modern = |session: Option<&str>| RequestHead { protocol_version: Some(STATELESS_VERSION.into()), ..post(session) };
    let discover = br#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{}}}"#;
    let call = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"s__ping","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let gw = Gateway::new(config()).unwrap();
    let code = |a: BodyAction| match a {
        BodyAction::Reply(r) => (r.status, reply_json(&r)["error"]["code"].as_i64().unwrap_or(0)),
        other => panic!("{other:?}"),
    };
    assert_eq!(code(gw.on_body(&modern(None), discover, NOW)), (200, -32601), "clients fall back to initialize");
    assert_eq!(code(gw.on_body(&modern(None), call, NOW)), (400, -32600));

    let mut c = config();
    c.stateless_era = true;
    let gw = Gateway::new(c).unwrap();
    match gw.on_body(&modern(None), discover, NOW) {
        BodyAction::Reply(r) => {
            let v = reply_json(&r);
            assert_eq!(v["result"]["supportedVersions"][0], STATELESS_VERSION);
            assert_eq!(v["result"]["capabilities"]["tools"], json!({}));
        }
        other => panic!("{other:?}"),
    }
    // `s` is stateless but does not speak 2026-07-28; `a` needs a session.
    let bridged = |gw: &Gateway, body: &[u8]| match gw.on_body(&modern(None), body, NOW) {
        BodyAction::Forward(f) => (f.server, f.bridge, f.upstream_session),
        other => panic!("{other:?}"),
    };
    let call_a = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a__echo"}}"#;
    assert_eq!(code(gw.on_body(&modern(None), call, NOW)), (200, -32603), "no era bridge configured");
    let mut c = config();
    c.stateless_era = true;
    c.servers[2].era = ServerEra::Both;
    c.control_plane = Some(ControlPlane { cluster: "cp".into(), ..control_plane() });
    let gw = Gateway::new(c.clone()).unwrap();
    assert_eq!(bridged(&gw, call), (2, false, None), "a stateless server of the revision gets the request as it is");
    assert_eq!(bridged(&gw, call_a), (0, true, None), "a stateful server through the bridge");
    c.servers[0].era = ServerEra::Both;
    let both = Gateway::new(c.clone()).unwrap();
    match both.on_body(&modern(None), call_a, NOW) {
        BodyAction::Forward(f) => assert_eq!(
            (f.server, f.bridge, f.upstream_session, f.open_first),
            (0, false, None, false),
            "a stateful server that speaks the revision takes the request as it is, with no session to open"
        ),
        other => panic!("{other:?}"),
    }
    c.servers[0].era = ServerEra::HandshakeOnly;
    c.servers[2].era = ServerEra::HandshakeOnly;
    let gw = Gateway::new(c).unwrap();
    assert_eq!(bridged(&gw, call), (2, true, None), "an older revision through the bridge");
    match gw.on_body(&modern(None), br#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#, NOW) {
        BodyAction::Reply(r) => {
            let result = &reply_json(&r)["result"];
            assert_eq!(
                (result["ttlMs"].clone(), result["cacheScope"].clone(), result["resultType"].clone()),
                (json!(0), json!("private"), json!("complete"))
            );
            assert_eq!(result["tools"].as_array().unwrap().len(), 4);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(code(gw.on_body(&post(None), call, NOW)), (400, -32600), "handshake-era requests still need their session");
}

/// Every page of a list, following cursors: (items' keys, cursors seen).
fn all_pages(gw: &Gateway, token: &str, method: &str, field: &str, key: &str) -> (Vec<String>, usize) {
    let (mut keys, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let params = cursor.as_ref().map_or(json!({}), |c| json!({ "cursor": c }));
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let BodyAction::Reply(r) = gw.on_body(&post(Some(token)), body.as_bytes(), NOW) else { panic!("not answered") };
        let v = reply_json(&r);
        keys.extend(v["result"][field].as_array().unwrap().iter().map(|i| i[key].as_str().unwrap().to_string()));
        pages += 1;
        match v["result"]["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (keys, pages),
        }
    }
}

#[test]
fn lists_page_across_servers_with_cursors() {
    let gw = Gateway::new(FilterConfig { list_page_size: Some(3), ..config() }).unwrap();
    let token = session(&gw, false);
    assert_eq!(
        all_pages(&gw, &token, "tools/list", "tools", "name"),
        (vec!["a__echo".into(), "b__echo".into(), "plain".into(), "s__ping".into()], 2)
    );
    assert_eq!(all_pages(&gw, &token, "resources/list", "resources", "uri").1, 1);
    let one = Gateway::new(FilterConfig { list_page_size: Some(1), ..config() }).unwrap();
    let (uris, pages) = all_pages(&one, &session(&one, false), "resources/list", "resources", "uri");
    assert_eq!((uris.len(), pages), (3, 3));
    let unpaged = Gateway::new(config()).unwrap();
    assert_eq!(all_pages(&unpaged, &session(&unpaged, false), "tools/list", "tools", "name").1, 1);

    // A cursor from an older configuration resumes at the item it named.
    let first = |gw: &Gateway, token: &str| {
        let BodyAction::Reply(r) = gw.on_body(&post(Some(token)), br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, NOW) else {
            panic!()
        };
        reply_json(&r)["result"]["nextCursor"].as_str().unwrap().to_string()
    };
    let cursor = first(&gw, &token);
    let mut shorter = config();
    shorter.list_page_size = Some(3);
    shorter.tools.remove(0);
    let newer = Gateway::new(shorter).unwrap();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": cursor}}).to_string();
    let BodyAction::Reply(r) = newer.on_body(&post(Some(&token)), body.as_bytes(), NOW) else { panic!() };
    let names: Vec<_> = reply_json(&r)["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].clone()).collect();
    assert_eq!(names, vec![json!("s__ping")]);

    for bad in [json!("%%%"), json!("bm9wZQ"), json!(7)] {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": bad}}).to_string();
        assert_eq!(check(&gw, Some(&token), None, &body), (200, -32602), "{bad}");
    }
}

#[test]
fn handshake_requests_are_translated_for_a_server_of_the_stateless_revision_only() {
    let mut c = config();
    c.servers[2].era = ServerEra::ModernOnly;
    c.tools.push(NamedRoute {
        name: "s__add".into(),
        server: 2,
        upstream_name: "add".into(),
        definition: crate::config::Definition::new(&json!({"name": "s__add"})),
    });
    let gw = Gateway::new(c).unwrap();
    let token = session(&gw, false);
    let body =
        br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"s__add","arguments":{"a":1},"_meta":{"progressToken":7}}}"#;
    let BodyAction::Forward(f) = gw.on_body(&post(Some(&token)), body, NOW) else { panic!("not forwarded") };
    assert_eq!((f.server, f.upstream_session.as_deref(), f.upstream_version.as_deref()), (2, None, Some(STATELESS_VERSION)));
    assert_eq!((f.mcp_method.as_deref(), f.mcp_name.as_deref()), (Some("tools/call"), Some("add")));
    let sent: Value = serde_json::from_slice(&f.body.unwrap()).unwrap();
    assert_eq!(sent["params"]["name"], "add");
    assert_eq!(sent["params"]["_meta"]["progressToken"], 7, "the client's own _meta stays");
    assert_eq!(sent["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"], STATELESS_VERSION);
    assert_eq!(sent["params"]["_meta"]["io.modelcontextprotocol/clientInfo"]["name"], "gw");
    // No session notifications for it.
    let BodyAction::FanOut(_, callouts) =
        gw.on_body(&post(Some(&token)), br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#, NOW)
    else {
        panic!()
    };
    assert!(callouts.iter().all(|c| c.server != 2));
}

#[test]
fn api_keys_admit_their_principal_and_nothing_else() {
    let mut c = config();
    c.auth = Some(crate::config::AuthConfig {
        api_keys: vec![crate::fixtures::api_key("k-alice-0123456789", "alice", &["dev"])],
        jwt: None,
        protected_resource: None,
        client_certificates: false,
        admin_groups: vec![],
    });
    let gw = Gateway::new(c).unwrap();
    let with = |credential: Option<&str>| RequestHead { credential: credential.map(str::to_string), ..post(None) };
    assert_eq!(gw.on_headers(&mut with(Some("k-alice-0123456789"))), HeadAction::ReadBody);
    assert_eq!(gw.authenticate(&with(Some("k-alice-0123456789"))).unwrap().map(|k| k.principal), Some("alice".to_string()));
    for bad in [None, Some(""), Some("k-alice-012345678"), Some("nope")] {
        match gw.on_headers(&mut with(bad)) {
            HeadAction::Refuse(Refusal { reply: r, reason, cause }) => {
                assert_eq!((r.status, reply_json(&r)["error"]["code"].as_i64()), (401, Some(-32001)), "{bad:?}");
                assert!(r.headers.iter().any(|(k, v)| *k == "www-authenticate" && v.starts_with("Bearer")));
                assert_eq!(reply_json(&r)["error"]["message"], reason, "the audit log gives the client's message");
                // The metrics tell a caller that sent nothing from one that sent a bad key.
                let why = if bad.is_none() { AuthFailure::Missing } else { AuthFailure::Invalid };
                assert_eq!(cause, Cause::Unauthenticated(why), "{bad:?}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // Other paths are not the MCP endpoint's business; the probes answer up or down to anyone.
    assert_eq!(gw.on_headers(&mut RequestHead { path: "/elsewhere".into(), ..with(None) }), HeadAction::PassThrough);
    assert!(matches!(
        gw.on_headers(&mut RequestHead { method: "GET".into(), path: "/health".into(), ..with(None) }),
        HeadAction::Scrape(Page::Liveness, _)
    ));
    let mut broken = config();
    broken.auth = Some(crate::config::AuthConfig {
        api_keys: vec![crate::config::ApiKey { sha256: "xyz".into(), principal: "p".into(), groups: vec![] }],
        jwt: None,
        protected_resource: None,
        client_certificates: false,
        admin_groups: vec![],
    });
    assert!(Gateway::new(broken).is_err());
}

fn with_rules() -> Gateway {
    use crate::config::{AuthorizationConfig, PolicyRule, Targets};
    let mut c = config();
    let globs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    c.authorization = Some(AuthorizationConfig {
        default_allow: false,
        rules: vec![PolicyRule {
            name: "devs".into(),
            principals: vec![],
            groups: globs(&["dev"]),
            allow: Targets { servers: globs(&["a"]), tools: globs(&["plain"]), resources: globs(&["file:///etc/*"]), ..Default::default() },
            deny: Targets { prompts: globs(&["*greet"]), ..Default::default() },
        }],
    });
    Gateway::new(c).unwrap()
}

fn as_caller(head: RequestHead, principal: &str, groups: &[&str]) -> RequestHead {
    let caller = Caller { principal: principal.into(), groups: groups.iter().map(|g| g.to_string()).collect(), scopes: vec![] };
    RequestHead { caller: Some(caller), ..head }
}

/// A POST by `principal` in a session it opened.
fn in_session(gw: &Gateway, principal: &str, groups: &[&str]) -> RequestHead {
    let head = as_caller(post(None), principal, groups);
    let token = session_as(gw, head.clone(), false);
    RequestHead { session_id: Some(token), ..head }
}

#[test]
fn lists_show_only_what_the_caller_may_use() {
    let gw = with_rules();
    let list = |head: &RequestHead, method: &str, field: &str| -> Vec<String> {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}"}}"#);
        match gw.on_body(head, body.as_bytes(), NOW) {
            BodyAction::Reply(r) => reply_json(&r)["result"][field]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.get("name").unwrap().as_str().unwrap().to_string())
                .collect(),
            other => panic!("{other:?}"),
        }
    };
    let dev = in_session(&gw, "bob", &["dev"]);
    assert_eq!(list(&dev, "tools/list", "tools"), ["a__echo", "plain"]);
    // Server `a` is allowed, but its prompt is denied by name: deny wins.
    assert!(list(&dev, "prompts/list", "prompts").is_empty());
    assert_eq!(list(&dev, "resources/list", "resources"), ["one", "motd", "a"]);
    let stranger = in_session(&gw, "eve", &["guests"]);
    assert!(list(&stranger, "tools/list", "tools").is_empty());
    // Asked again, the same answer (now from the cache).
    assert_eq!(list(&dev, "tools/list", "tools"), ["a__echo", "plain"]);
}

#[test]
fn a_denied_call_looks_like_an_unknown_one_and_is_audited() {
    let gw = with_rules();
    let call = |head: &RequestHead, name: &str| {
        gw.decide(head, format!(r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"{name}"}}}}"#).as_bytes(), NOW)
    };
    let stranger = in_session(&gw, "eve", &[]);
    let denied = call(&stranger, "b__echo");
    let unknown = call(&stranger, "no_such_tool");
    match (&denied.action, &unknown.action) {
        (BodyAction::Reply(d), BodyAction::Reply(u)) => {
            let (d, u) = (reply_json(d), reply_json(u));
            assert_eq!(d["error"]["code"], u["error"]["code"]);
            assert_eq!(d["error"]["message"], "Unknown tool: b__echo");
        }
        other => panic!("{other:?}"),
    }
    let v = denied.audit.ruling.unwrap();
    assert_eq!((v.allowed, v.reason.as_str()), (false, "no rule allows it"));
    assert_eq!(
        (denied.audit.server.as_deref(), denied.audit.target.as_deref(), denied.audit.method.as_str()),
        (Some("b"), Some("b__echo"), "tools/call")
    );
    // An unknown tool has no server and no ruling.
    assert_eq!(unknown.audit.ruling, None);

    let dev = in_session(&gw, "bob", &["dev"]);
    let allowed = call(&dev, "plain");
    assert!(matches!(allowed.action, BodyAction::Forward(_)));
    assert_eq!(allowed.audit.ruling.unwrap().reason, "rule \"devs\" allows it");
    // Resources: by URI, refused as not found.
    let read = |uri: &str| {
        gw.decide(&dev, format!(r#"{{"jsonrpc":"2.0","id":6,"method":"resources/read","params":{{"uri":"{uri}"}}}}"#).as_bytes(), NOW)
    };
    assert!(matches!(read("file:///etc/motd").action, BodyAction::Forward(_)));
    match read("notes://1/text").action {
        BodyAction::Reply(r) => assert_eq!(reply_json(&r)["error"]["code"], -32002),
        other => panic!("{other:?}"),
    }
}

#[test]
fn jwt_callers_scopes_and_the_resource_metadata() {
    use base64::Engine as _;
    let mut c = config();
    c.auth = Some(crate::config::AuthConfig {
        api_keys: vec![],
        jwt: Some(crate::config::JwtClaims {
            principal_claim: "sub".into(),
            groups_claim: "roles".into(),
            required_scopes: vec!["mcp".into()],
        }),
        protected_resource: Some(crate::config::ProtectedResource {
            resource: "https://gw.example/mcp".into(),
            authorization_servers: vec!["https://idp.example".into()],
            scopes_supported: vec!["mcp".into()],
        }),
        client_certificates: true,
        admin_groups: vec![],
    });
    let gw = Gateway::new(c).unwrap();
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    // The credential is the token whose payload Envoy verified and forwarded.
    let jwt = |payload: Option<Value>| {
        let encoded = payload.map(b64);
        let credential = format!("hdr.{}.sig", encoded.as_deref().unwrap_or("e30"));
        RequestHead { credential: Some(credential), jwt_payload: encoded, ..post(None) }
    };
    let mut good = jwt(Some(json!({"sub": "carol", "roles": ["dev", "ops"], "scope": "mcp other"})));
    assert_eq!(gw.on_headers(&mut good), HeadAction::ReadBody);
    assert_eq!(
        good.caller,
        Some(Caller { principal: "carol".into(), groups: vec!["dev".into(), "ops".into()], scopes: vec!["mcp".into(), "other".into()] })
    );

    let refused = |head: &mut RequestHead| match gw.on_headers(head) {
        HeadAction::Refuse(Refusal { reply: r, .. }) => {
            (r.status, r.headers.iter().find(|(k, _)| *k == "www-authenticate").map(|h| h.1.clone()).unwrap_or_default(), reply_json(&r))
        }
        other => panic!("{other:?}"),
    };
    let (status, challenge, body) = refused(&mut jwt(Some(json!({"sub": "carol", "scope": "other"}))));
    assert_eq!((status, body["error"]["code"].as_i64()), (403, Some(-32003)));
    assert_eq!(
        challenge,
        r#"Bearer realm="mcp-gateway", error="insufficient_scope", scope="mcp", resource_metadata="https://gw.example/.well-known/oauth-protected-resource/mcp""#
    );
    // A verified client certificate names the caller when nothing else does.
    let mut by_cert = RequestHead { peer_certificate: Some("spiffe://e2e/agent".into()), ..post(None) };
    assert_eq!(gw.on_headers(&mut by_cert), HeadAction::ReadBody);
    assert_eq!(by_cert.caller.map(|c| c.principal), Some("spiffe://e2e/agent".to_string()));
    // A payload Envoy verified from another token (one under another scheme
    // word, beside an X-API-Key) names no one.
    let other = RequestHead { credential: Some("not-an-api-key-0000".into()), ..good.clone() };
    assert_eq!(refused(&mut other.clone()).0, 401);
    let (status, challenge, _) = refused(&mut jwt(None));
    assert_eq!(status, 401);
    assert!(challenge.ends_with(r#"resource_metadata="https://gw.example/.well-known/oauth-protected-resource/mcp""#));
    let (_, _, body) = refused(&mut RequestHead { jwt_failure: Some("Jwt is expired".into()), ..jwt(None) });
    assert_eq!(body["error"]["message"], "Unauthorized: the bearer token was refused: Jwt is expired");
    let (status, _, body) = refused(&mut jwt(Some(json!({"roles": ["dev"], "scope": "mcp"}))));
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("\"sub\""));

    for path in ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"] {
        match gw.on_headers(&mut RequestHead { method: "GET".into(), path: path.into(), ..Default::default() }) {
            HeadAction::Reply(r) => {
                assert_eq!(r.status, 200);
                let doc = reply_json(&r);
                assert_eq!(doc["resource"], "https://gw.example/mcp");
                assert_eq!(doc["authorization_servers"], json!(["https://idp.example"]));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        gw.on_headers(&mut RequestHead { method: "GET".into(), path: "/.well-known/other".into(), ..Default::default() }),
        HeadAction::PassThrough
    );
}

#[test]
fn origins_must_be_listed() {
    let mut c = config();
    c.allowed_origins = vec!["https://app.example".into()];
    let gw = Gateway::new(c).unwrap();
    let from = |origin: Option<&str>| RequestHead { origin: origin.map(str::to_string), ..post(None) };
    assert_eq!(gw.on_headers(&mut from(None)), HeadAction::ReadBody);
    assert_eq!(gw.on_headers(&mut from(Some("https://app.example"))), HeadAction::ReadBody);
    match gw.on_headers(&mut from(Some("http://evil.example:4444"))) {
        HeadAction::Refuse(Refusal { reply: r, cause, .. }) => {
            assert_eq!((r.status, cause), (403, Cause::Forbidden));
            assert!(reply_json(&r)["error"]["message"].as_str().unwrap().contains("gateway.allowed_origins"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn over_a_limit_the_answer_says_which_and_when_to_retry() {
    use crate::config::{LimitKey, RateLimit};
    let mut c = config();
    c.rate_limits = vec![RateLimit {
        name: "per-tool".into(),
        per: vec![LimitKey::Principal, LimitKey::Tool],
        principals: vec![],
        groups: vec![],
        servers: vec![],
        tools: vec!["plain".into()],
        endpoints: vec![],
        requests_per_minute: 30,
        burst: 2,
        global: false,
    }];
    let gw = Gateway::new(c).unwrap();
    let head = in_session(&gw, "bob", &[]);
    let d = gw.decide(&head, br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"plain"}}"#, NOW);
    let buckets = gw.buckets(&head, &d.audit);
    assert_eq!(buckets.len(), 1);
    assert_eq!(buckets[0].key, "mcp-rl/8:per-tool/3:bob/5:plain");
    let BodyAction::Forward(f) = &d.action else { panic!("not forwarded") };
    assert!(!gw.forward_edits(&head, f, &d.audit).unwrap().set.iter().any(|(k, _)| k.starts_with("x-mcp-rate-limit-")));
    let refusal = gw.rate_limited(&d.audit, &buckets[0], 1_500);
    assert_eq!((refusal.reason.as_str(), &refusal.cause), ("rate limit \"per-tool\"", &Cause::RateLimited("per-tool".into())));
    let r = refusal.reply;
    assert_eq!(r.status, 429);
    assert!(r.headers.contains(&("retry-after", "2".to_string())));
    let body = reply_json(&r);
    assert_eq!(body["id"], "x");
    assert_eq!(body["error"]["code"], -32029);
    assert_eq!(body["error"]["data"], json!({"limit": "per-tool", "requestsPerMinute": 30, "burst": 2, "retryAfterSeconds": 2}));
    // A global limit's bucket goes to Envoy's ratelimit filter as a header
    // of the forwarded request, which a client cannot send.
    let mut c = config();
    c.rate_limits = vec![RateLimit {
        global: true,
        name: "shared".into(),
        per: vec![LimitKey::Principal],
        principals: vec![],
        groups: vec![],
        servers: vec![],
        tools: vec![],
        endpoints: vec![],
        requests_per_minute: 60,
        burst: 1,
    }];
    let global_gw = Gateway::new(c).unwrap();
    let d = global_gw.decide(&head, br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"plain"}}"#, NOW);
    assert!(global_gw.buckets(&head, &d.audit).is_empty());
    let BodyAction::Forward(f) = &d.action else { panic!("not forwarded") };
    let edits = global_gw.forward_edits(&head, f, &d.audit).unwrap();
    assert_eq!(edits.value("x-mcp-rate-limit-shared"), Some("mcp-rl/6:shared/3:bob"));
    assert!(edits.drop.iter().any(|d| d == "x-mcp-rate-limit-shared"), "a client's own goes first");
    // A principal that no header could carry as it is travels encoded.
    let odd = in_session(&gw, "eve\r\nx-injected: 1", &[]);
    let edits = global_gw.forward_edits(&odd, f, &d.audit).unwrap();
    let key = edits.value("x-mcp-rate-limit-shared").unwrap();
    assert!(key.starts_with("=?base64?") && key.bytes().all(|b| (0x20..0x7f).contains(&b)), "{key:?}");
    // Another tool is not concerned.
    let other = gw.decide(&head, br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__echo"}}"#, NOW);
    assert!(gw.buckets(&head, &other.audit).is_empty());
}

#[test]
fn metrics_are_scraped_from_envoy_and_the_control_plane() {
    let mut c = config();
    let scrape =
        |gw: &Gateway| match gw.on_headers(&mut RequestHead { method: "GET".into(), path: "/metrics".into(), ..Default::default() }) {
            HeadAction::Scrape(Page::Metrics, calls) => calls.iter().map(|c| (c.cluster.clone(), c.headers.clone())).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
    let admin = |path: &str, authority: &str| {
        vec![(":method", "GET".to_string()), (":path", path.to_string()), (":authority", authority.to_string())]
    };
    assert_eq!(
        scrape(&Gateway::new(c.clone()).unwrap()),
        vec![(ENVOY_ADMIN_CLUSTER.to_string(), admin("/stats/prometheus", "envoy-admin"))]
    );
    c.control_plane = Some(control_plane());
    let gw = Gateway::new(c).unwrap();
    assert_eq!(scrape(&gw)[1], ("gateway_admin".to_string(), admin("/metrics", "127.0.0.1:1")));
    // Only GET of exactly /metrics; a POST there is not the gateway's.
    assert_eq!(
        gw.on_headers(&mut RequestHead { method: "POST".into(), path: "/metrics".into(), ..Default::default() }),
        HeadAction::PassThrough
    );
    assert_eq!(
        gw.on_headers(&mut RequestHead { method: "GET".into(), path: "/metricsx".into(), ..Default::default() }),
        HeadAction::PassThrough
    );

    let answer = |status: u16, body: &str| Some(CalloutResponse { status, body: body.as_bytes().to_vec(), ..Default::default() });
    let both = scrape_reply(Page::Metrics, &[answer(200, "envoy_a 1"), answer(200, "mcp_gateway_control_plane_up 1\n")]);
    assert_eq!((both.status, String::from_utf8(both.body).unwrap()), (200, "envoy_a 1\nmcp_gateway_control_plane_up 1\n".to_string()));
    for cp in [None, answer(503, "down")] {
        let r = scrape_reply(Page::Metrics, &[answer(200, "envoy_a 1\n"), cp]);
        let text = String::from_utf8(r.body).unwrap();
        assert_eq!(r.status, 200);
        assert!(text.starts_with("envoy_a 1\n") && text.ends_with("\nmcp_gateway_control_plane_up 0\n"), "{text}");
    }
    // The native module's series come out of Envoy prefixed: the page names them as the wasm filter's.
    let native = "# TYPE envoy_wasmcustom_mcp_requests_total counter\nenvoy_wasmcustom_mcp_requests_total{method=\"ping\"} 2\nenvoy_a 1\nenvoy_wasmcustom_mcp_sessions_opened_total{} 1";
    let r = scrape_reply(Page::Metrics, &[answer(200, native), answer(200, "mcp_gateway_control_plane_up 1\n")]);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "# TYPE mcp_requests_total counter\nmcp_requests_total{method=\"ping\"} 2\nenvoy_a 1\nmcp_sessions_opened_total{} 1\nmcp_gateway_control_plane_up 1\n"
    );
    let r = scrape_reply(Page::Metrics, &[None, answer(200, "mcp_gateway_control_plane_up 1\n")]);
    assert_eq!(r.status, 503, "without Envoy's stats the scrape fails");
    assert!(String::from_utf8(r.body).unwrap().contains("envoy_admin"));
}

#[test]
fn the_stats_page_reads_envoys_json_stats_and_the_servers() {
    let mut c = config();
    c.control_plane = Some(control_plane());
    let gw = Gateway::new(c).unwrap();
    let HeadAction::Scrape(Page::Stats, calls) =
        gw.on_headers(&mut RequestHead { method: "GET".into(), path: "/stats".into(), ..Default::default() })
    else {
        panic!()
    };
    let paths: Vec<&str> = calls.iter().map(|c| c.headers[1].1.as_str()).collect();
    assert_eq!(paths, [crate::metrics::SUMMARY_STATS_PATH, "/servers"]);
    let r = scrape_reply(Page::Stats, &[Some(CalloutResponse { status: 200, body: b"not json".to_vec(), ..Default::default() }), None]);
    assert_eq!((r.status, reply_json(&r)["error"]["code"].as_i64()), (500, Some(-32603)));
}

#[test]
fn a_session_is_its_callers_alone() {
    let gw = Gateway::new(FilterConfig { control_plane: Some(control_plane()), ..config() }).unwrap();
    let mut bob = in_session(&gw, "bob", &[]);
    let list = br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    assert!(matches!(gw.on_body(&bob, list, NOW), BodyAction::Reply(r) if r.status == 200));
    // Eve, with credentials of her own, presents bob's session id: it is
    // refused as a forged id would be, for every use of a session.
    let eve = as_caller(RequestHead { session_id: bob.session_id.clone(), ..post(None) }, "eve", &[]);
    let forged = as_caller(
        RequestHead { session_id: Some("k.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()), ..post(None) },
        "eve",
        &[],
    );
    let refused = |head: &RequestHead| match gw.on_body(head, list, NOW) {
        BodyAction::Reply(r) => (r.status, reply_json(&r)["error"]["message"].clone()),
        other => panic!("{other:?}"),
    };
    let (status, message) = refused(&eve);
    assert_eq!(status, 404);
    assert_eq!((status, message), refused(&forged), "another caller's session looks like a forged one");
    let call = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"a__echo"}}"#;
    assert!(matches!(gw.on_body(&eve, call, NOW), BodyAction::Reply(r) if r.status == 404));
    let (reply, callouts, ended) = gw.end_session(&RequestHead { method: "DELETE".into(), ..eve.clone() }, &NoneOpened, NOW);
    assert_eq!((reply.status, callouts.len(), ended.is_some()), (404, 0, false), "nor may she end it");
    let get = |head: &RequestHead| RequestHead { method: "GET".into(), accept: Some("text/event-stream".into()), ..head.clone() };
    assert_eq!(gw.open_stream(&get(&eve), NOW).err().map(|r| r.status), Some(404), "nor stream from it");
    assert!(gw.open_stream(&get(&bob), NOW).is_ok());
    // Bob's own session still works, also once its opening is cached.
    assert!(matches!(gw.on_body(&bob, call, NOW), BodyAction::Forward(_)));
    bob.caller = None;
    assert!(matches!(gw.on_body(&bob, list, NOW), BodyAction::Reply(r) if r.status == 404), "nor does it open without a caller");
}

#[test]
fn a_caller_reaches_only_the_servers_it_may_use() {
    use crate::config::{AuthorizationConfig, PolicyRule, Targets};
    let mut c = config();
    c.authorization = Some(AuthorizationConfig {
        default_allow: false,
        rules: vec![PolicyRule {
            name: "guests".into(),
            principals: vec![],
            groups: vec!["guests".into()],
            allow: Targets { tools: vec!["a__echo".into()], ..Default::default() },
            deny: Targets::default(),
        }],
    });
    let gw = Gateway::new(c).unwrap();
    let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;
    let servers_of = |callouts: &[Callout]| callouts.iter().map(|c| gw.server(c.server).unwrap().name.clone()).collect::<Vec<_>>();
    // Initialize opens a session with `a` only: the guest may use nothing on `b`.
    match gw.on_body(&as_caller(post(None), "gus", &["guests"]), init, NOW) {
        BodyAction::Initialize(plan) => assert_eq!(servers_of(&plan.callouts), ["a"]),
        other => panic!("{other:?}"),
    }
    // A caller who may use nothing opens no upstream session at all.
    assert!(matches!(gw.on_body(&as_caller(post(None), "nobody", &[]), init, NOW), BodyAction::Reply(r) if r.status == 200));
    let gus = in_session(&gw, "gus", &["guests"]);
    // Notifications and logging/setLevel reach only `a`, not `b` nor `s`.
    let cancelled = br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#;
    match gw.on_body(&gus, cancelled, NOW) {
        BodyAction::FanOut(_, callouts) => assert_eq!(servers_of(&callouts), ["a"]),
        other => panic!("{other:?}"),
    }
    // An answer to a request that `b` would have sent is refused, audited:
    // `b` is not the guest's to answer.
    let answer = br#"{"jsonrpc":"2.0","id":"mcpgw:b:7","result":{}}"#;
    let d = gw.decide(&gus, answer, NOW);
    assert!(matches!(&d.action, BodyAction::Reply(r) if r.status == 400), "{:?}", d.action);
    assert_eq!(d.audit.server.as_deref(), Some("b"));
    assert_eq!(d.audit.ruling.as_ref().map(|r| (r.allowed, r.reason.as_str())), Some((false, "the caller may not reach this server")));
    let answer = br#"{"jsonrpc":"2.0","id":"mcpgw:a:7","result":{}}"#;
    let d = gw.decide(&gus, answer, NOW);
    assert!(matches!(&d.action, BodyAction::Forward(f) if f.server == 0), "{:?}", d.action);
    assert_eq!(d.audit.ruling.map(|r| r.allowed), Some(true));
}

#[test]
fn requests_decided_on_their_headers_take_from_the_limits_too() {
    use crate::config::{LimitKey, RateLimit};
    let mut c = config();
    c.rate_limits = vec![RateLimit {
        name: "all".into(),
        per: vec![LimitKey::Principal],
        principals: vec![],
        groups: vec![],
        servers: vec![],
        tools: vec![],
        endpoints: vec![],
        requests_per_minute: 60,
        burst: 10,
        global: false,
    }];
    let gw = Gateway::new(c).unwrap();
    let bob = in_session(&gw, "bob", &[]);
    // A DELETE costs the upstream sessions it ends (`a` issued an id; `b` none).
    let delete = RequestHead { method: "DELETE".into(), ..bob.clone() };
    let (audit, buckets, cost) = gw.head_charge(&delete, &HeadAction::EndSession, NOW).unwrap();
    assert_eq!((audit.method.as_str(), buckets[0].key.as_str(), cost), ("DELETE", "mcp-rl/3:all/3:bob", 1));
    let (_, _, cost) = gw.head_charge(&RequestHead { method: "GET".into(), ..bob.clone() }, &HeadAction::OpenStream, NOW).unwrap();
    assert_eq!(cost, 1);
    // A refusal for credentials is charged to its source address.
    let refused = Refusal { reply: Reply::accepted(), reason: String::new(), cause: Cause::Unauthenticated(AuthFailure::Invalid) };
    let stranger = RequestHead { source: Some("10.0.0.7".into()), ..post(None) };
    let (_, buckets, _) = gw.head_charge(&stranger, &HeadAction::Refuse(refused), NOW).unwrap();
    assert_eq!(buckets[0].key, "mcp-rl/3:all/24:unauthenticated@10.0.0.7");
    assert_eq!(gw.head_charge(&bob, &HeadAction::ReadBody, NOW), None, "a POST is charged once its body is decided");
    // What a decided request costs: what it sends upstream.
    let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;
    assert_eq!(Gateway::cost(&gw.on_body(&post(None), init, NOW)), 4, "two servers keep sessions: two requests each");
    assert_eq!(Gateway::cost(&gw.on_body(&bob, br#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#, NOW)), 1);
}

/// The fixture's configuration with one rule for everyone: allow all but
/// the `denied` resources.
fn denying(denied: &[&str]) -> Gateway {
    use crate::config::{AuthorizationConfig, PolicyRule, Targets};
    let mut c = config();
    c.authorization = Some(AuthorizationConfig {
        default_allow: true,
        rules: vec![PolicyRule {
            name: "no-secrets".into(),
            principals: vec![],
            groups: vec![],
            allow: Targets::default(),
            deny: Targets { resources: denied.iter().map(|s| s.to_string()).collect(), ..Default::default() },
        }],
    });
    Gateway::new(c).unwrap()
}

#[test]
fn resource_uris_are_judged_and_forwarded_in_normal_form() {
    let gw = denying(&["file:///etc/*"]);
    let token = session(&gw, false);
    let t = token.as_str();
    let read = |uri: &str| routed(&gw, t, "resources/read", json!({ "uri": uri }));
    // Every spelling of a denied URI is refused as an unknown one...
    for uri in ["file:///etc/motd", "file:///srv/../etc/motd", "file:////etc/motd", "file:///%65tc/motd", "FILE://localhost/etc//motd"] {
        assert_eq!(read(uri), Err(-32002), "{uri}");
    }
    // ...and what has no canonical form is refused for what it is.
    for uri in ["file:///../etc/motd", "file:///srv/..%2Fetc/motd", "file:///etc/motd%00", "/etc/motd", "file:///%zz"] {
        assert_eq!(read(uri), Err(-32602), "{uri}");
    }
    // The server reads what the rules judged.
    assert_eq!(
        read("file:///srv/./a"),
        Ok((0, Some(json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": "file:///srv/a"}}))))
    );
    assert_eq!(read("file:///srv/a"), Ok((0, None)));
    let body = br#"{"jsonrpc":"2.0","id":9,"method":"resources/read","params":{"uri":"file:///srv//a"}}"#;
    let head = RequestHead { mcp_name: Some("file:///srv//a".into()), mcp_method: Some("resources/read".into()), ..post(Some(t)) };
    match gw.on_body(&head, body, NOW) {
        BodyAction::Forward(f) => {
            assert_eq!((f.mcp_name.as_deref(), f.mcp_method.as_deref()), (Some("file:///srv/a"), Some("resources/read")));
        }
        other => panic!("{other:?}"),
    }
    let refused = gw.on_body(&post(Some(t)), br#"{"jsonrpc":"2.0","id":9,"method":"resources/read","params":{"uri":"file:///../x"}}"#, NOW);
    match refused {
        BodyAction::Reply(r) => assert_eq!(
            reply_json(&r)["error"]["message"],
            r#"Invalid params: resource URI "file:///../x" is refused: its path climbs above the root with "..""#
        ),
        other => panic!("{other:?}"),
    }
}

/// The operator's pages: everyone's without authentication; with it, an
/// admin caller's, but for the probes' up/down answer.
#[test]
fn the_operators_pages_need_an_admin_once_authentication_is_on() {
    let get = |path: &str, credential: Option<&str>| RequestHead {
        method: "GET".into(),
        path: path.into(),
        credential: credential.map(str::to_string),
        ..RequestHead::default()
    };
    let mut open = config();
    open.control_plane = Some(control_plane());
    let gw = Gateway::new(open.clone()).unwrap();
    assert!(matches!(gw.on_headers(&mut get("/metrics", None)), HeadAction::Scrape(Page::Metrics, _)));
    assert!(matches!(gw.on_headers(&mut get("/stats", None)), HeadAction::Scrape(Page::Stats, _)));
    for path in ["/servers", "/health", "/ready?x=1"] {
        assert_eq!(gw.on_headers(&mut get(path, None)), HeadAction::PassThrough, "{path}");
    }

    let mut c = open;
    c.auth = Some(crate::config::AuthConfig {
        api_keys: vec![
            crate::fixtures::api_key("k-admin-0123456789", "ops", &["admin"]),
            crate::fixtures::api_key("k-alice-0123456789", "alice", &["dev"]),
        ],
        jwt: None,
        protected_resource: None,
        client_certificates: false,
        admin_groups: vec!["admin".into()],
    });
    let gw = Gateway::new(c).unwrap();
    let refused = |action: HeadAction| match action {
        HeadAction::Refuse(r) => (r.reply.status, reply_json(&r.reply)["error"]["code"].as_i64().unwrap_or_default()),
        other => panic!("{other:?}"),
    };
    // Every path the route table sends to the control plane, by prefix.
    for path in ["/metrics", "/stats", "/servers", "/servers/echo", "/healthz", "/ready/x", "/console/state", "/console/state?open=a"] {
        assert_eq!(refused(gw.on_headers(&mut get(path, None))), (401, -32001), "{path}");
        assert_eq!(refused(gw.on_headers(&mut get(path, Some("wrong-key-000000000")))), (401, -32001), "{path}");
        assert_eq!(refused(gw.on_headers(&mut get(path, Some("k-alice-0123456789")))), (403, -32003), "{path}");
    }
    let mut admin = get("/metrics", Some("k-admin-0123456789"));
    assert!(matches!(gw.on_headers(&mut admin), HeadAction::Scrape(Page::Metrics, _)));
    assert_eq!(admin.caller.map(|c| c.principal).as_deref(), Some("ops"));
    for path in ["/servers", "/health", "/ready"] {
        assert_eq!(gw.on_headers(&mut get(path, Some("k-admin-0123456789"))), HeadAction::PassThrough, "{path}");
    }
    // The console's state goes with the filter's token (the control plane guards it too).
    assert_eq!(gw.on_headers(&mut get("/console/state", Some("k-admin-0123456789"))), HeadAction::Admin);
    // The console's page and assets hold no data: anyone gets them (a
    // browser opening a page sends no bearer token); its state is above.
    for path in ["/console", "/console/", "/console/app.js", "/console/app.css?v=1"] {
        for credential in [None, Some("k-alice-0123456789")] {
            assert_eq!(gw.on_headers(&mut get(path, credential)), HeadAction::PassThrough, "{path}");
        }
    }
    // The probes answer anyone, up or down, from the control plane's status alone.
    for (path, page, cp_path) in [("/health", Page::Liveness, "/health"), ("/ready", Page::Readiness, "/ready")] {
        for credential in [None, Some("k-alice-0123456789")] {
            match gw.on_headers(&mut get(path, credential)) {
                HeadAction::Scrape(p, calls) => {
                    assert_eq!(p, page);
                    let paths: Vec<_> = calls.iter().flat_map(|c| c.headers.iter().filter(|(k, _)| *k == ":path")).collect();
                    assert_eq!(paths, vec![&(":path", cp_path.to_string())]);
                }
                other => panic!("{path}: {other:?}"),
            }
        }
    }
    // A foreign web page is refused on every path, before anything else.
    for path in ["/servers", "/metrics", "/health", "/anything"] {
        let mut head = RequestHead { origin: Some("http://evil.example".into()), host: Some("gw:4444".into()), ..get(path, None) };
        assert_eq!(refused(gw.on_headers(&mut head)), (403, -32003), "{path}");
    }
}

#[test]
fn denies_reach_templates_reads_through_them_and_completions() {
    let templates = |gw: &Gateway| {
        let token = session(gw, false);
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"resources/templates/list"}"#;
        match gw.on_body(&post(Some(&token)), body, NOW) {
            BodyAction::Reply(r) => reply_json(&r)["result"]["resourceTemplates"].as_array().unwrap().len(),
            other => panic!("{other:?}"),
        }
    };
    let complete = |uri: &str| json!({"ref": {"type": "ref/resource", "uri": uri}, "argument": {"name": "id", "value": "4"}});
    // A deny that covers all of a template hides it and refuses its completions and reads.
    let all = denying(&["notes://*"]);
    let token = session(&all, false);
    assert_eq!(templates(&all), 0);
    assert_eq!(routed(&all, &token, "completion/complete", complete("notes://{id}/text")), Err(-32002));
    assert_eq!(routed(&all, &token, "resources/read", json!({"uri": "notes://1/text"})), Err(-32002));
    // A deny on part of it leaves it listed; reads through it are judged URI by URI.
    let part = denying(&["notes://1/*"]);
    let token = session(&part, false);
    assert_eq!(templates(&part), 1);
    assert_eq!(routed(&part, &token, "completion/complete", complete("notes://{id}/text")), Ok((1, None)));
    assert_eq!(routed(&part, &token, "resources/read", json!({"uri": "notes://1/text"})), Err(-32002));
    assert_eq!(routed(&part, &token, "resources/read", json!({"uri": "notes://1/x/../text"})), Err(-32002));
    assert_eq!(routed(&part, &token, "resources/read", json!({"uri": "notes://2/text"})), Ok((1, None)));
}

#[test]
fn mcp_headers_are_checked_on_notifications_and_completions() {
    let gw = Gateway::new(config()).unwrap();
    let token = session(&gw, false);
    let with = |method: Option<&str>, name: Option<&str>| RequestHead {
        mcp_method: method.map(Into::into),
        mcp_name: name.map(Into::into),
        ..post(Some(&token))
    };
    let status = |head: RequestHead, body: &[u8]| match gw.on_body(&head, body, NOW) {
        BodyAction::Reply(r) => (r.status, reply_json(&r)["error"]["code"].as_i64()),
        BodyAction::FanOut(r, _) => (r.status, None),
        BodyAction::Forward(_) => (0, None),
        other => panic!("{other:?}"),
    };
    let cancelled = br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#;
    assert_eq!(status(with(Some("tools/call"), None), cancelled), (400, Some(-32020)));
    assert_eq!(status(with(Some("notifications/cancelled"), None), cancelled), (202, None));
    let complete = br#"{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a__greet"},"argument":{"name":"who","value":"m"}}}"#;
    assert_eq!(status(with(Some("completion/complete"), Some("b__other")), complete), (400, Some(-32020)));
    assert_eq!(status(with(Some("tools/call"), None), complete), (400, Some(-32020)));
    match gw.on_body(&with(Some("completion/complete"), Some("a__greet")), complete, NOW) {
        BodyAction::Forward(f) => assert_eq!(f.mcp_name.as_deref(), Some("greet"), "the upstream sees its own name"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_upstreams_challenge_becomes_the_gateways_own_error() {
    let gw = Gateway::new(config()).unwrap();
    let check = |status: u16, challenge: bool| gw.upstream_refusal("vault", Some("4"), status, challenge);
    for (status, challenge) in [(401, true), (401, false), (403, true)] {
        let reply = check(status, challenge).unwrap_or_else(|| panic!("{status} {challenge}"));
        assert_eq!(reply.status, 200, "never the upstream's 401 or 403: the client's credentials were fine");
        assert!(reply.headers.iter().all(|(k, _)| *k != "www-authenticate"));
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["id"], 4);
        assert_eq!(body["error"]["code"], -32603);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("'vault' refused the gateway's credentials") && message.contains(&format!("HTTP {status}")), "{message}");
    }
    assert!(check(403, false).is_none(), "a plain 403 is the upstream's answer");
    assert!(check(200, true).is_none() && check(500, false).is_none());
}

#[test]
fn callout_answers_are_bounded() {
    let gw = Gateway::new(config()).unwrap();
    assert_eq!(gw.callout_limit(false), gw.config().max_upstream_event_bytes);
    assert!(gw.callout_limit(true) >= 64 * 1024 * 1024, "Envoy's own stats grow with the catalog");
    let big = CalloutResponse { status: 200, oversized: true, ..Default::default() };
    let session = handshake::upstream_session(Some(&big));
    assert!(session.error.unwrap_or_default().contains("larger than the gateway takes"));
    assert_eq!(scrape_reply(Page::Metrics, &[Some(big), None]).status, 503);
}

#[test]
fn a_probes_answer_is_up_or_down_and_scrapes_are_kept_for_their_second() {
    let answer =
        |status: u16| Some(CalloutResponse { status, body: br#"{"status":"ok","version":"secret"}"#.to_vec(), ..Default::default() });
    for page in [Page::Liveness, Page::Readiness] {
        let up = scrape_reply(page, &[answer(200)]);
        assert_eq!((up.status, up.body.as_slice()), (200, br#"{"status":"up"}"#.as_slice()));
        for down in [answer(503), None] {
            let r = scrape_reply(page, &[down]);
            assert_eq!((r.status, r.body.as_slice()), (503, br#"{"status":"down"}"#.as_slice()));
        }
    }
    let at = |unix_secs| Now { unix_secs, entropy: 0 };
    let mut cache = ScrapeCache::default();
    let page = Reply::json(200, b"one".to_vec());
    assert_eq!(cache.fresh(Page::Metrics, at(10)), None);
    cache.keep(Page::Metrics, at(10), &page);
    assert_eq!(cache.fresh(Page::Metrics, at(10)), Some(&page));
    assert_eq!(cache.fresh(Page::Stats, at(10)), None, "each page is its own");
    assert_eq!(cache.fresh(Page::Metrics, at(11)), None, "the next second assembles it again");
    cache.keep(Page::Metrics, at(11), &Reply::json(200, b"two".to_vec()));
    assert_eq!(cache.fresh(Page::Metrics, at(11)).map(|r| r.body.as_slice()), Some(b"two".as_slice()));
    cache.keep(Page::Liveness, at(11), &page);
    assert_eq!(cache.fresh(Page::Liveness, at(11)), None, "a probe's answer must be current");
}

/// A gateway of `n` stateful servers `s00`, `s01`… (tool `sNN__echo` each)
/// whose session ids may hold `room` bytes, with a control plane.
fn many(n: usize, room: usize) -> Gateway {
    use crate::fixtures::{route, server};
    let names: Vec<String> = (0..n).map(|i| format!("s{i:02}")).collect();
    let mut cp = control_plane();
    cp.headers = vec![crate::config::UpstreamHeader { name: crate::config::INTERNAL_HEADER.into(), value: "tok".into() }];
    Gateway::new(FilterConfig {
        servers: names.iter().map(|n| server(n)).collect(),
        tools: names.iter().enumerate().map(|(i, n)| route(&format!("{n}__echo"), i, "echo")).collect(),
        prompts: vec![],
        resources: vec![],
        resource_templates: vec![],
        session: crate::config::SessionConfig { max_id_bytes: room, ..crate::fixtures::session(60) },
        control_plane: Some(cp),
        max_body_bytes: 4096,
        ..config()
    })
    .unwrap()
}

/// An upstream's answer to `initialize`, issuing session `sid`.
fn opened_answer(sid: &str) -> Option<CalloutResponse> {
    Some(CalloutResponse {
        status: 200,
        session_id: Some(sid.into()),
        content_type: Some("application/json".into()),
        body: br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#.to_vec(),
        oversized: false,
    })
}

/// Upstream sessions opened on first use, as a test keeps them.
#[derive(Default)]
struct Kept(std::cell::RefCell<Vec<Opened>>);

impl OpenedSessions for Kept {
    fn find(&self, token: &str, server: &str) -> Option<UpstreamSession> {
        let slot = crate::opened::Slot::of(token, server)?;
        let kept = self.0.borrow();
        kept.iter().rev().find(|o| o.slot == slot).map(|o| o.session.clone())
    }
}

fn call(gw: &Gateway, token: &str, tool: &str, opened: &dyn OpenedSessions) -> BodyAction {
    let body = format!(r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#);
    gw.decide_with(&post(Some(token)), body.as_bytes(), NOW, opened).action
}

#[test]
fn a_session_id_holds_the_upstream_sessions_it_has_room_for() {
    let gw = many(40, 1024);
    let caps = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"roots":{"listChanged":true}}}}"#;
    let BodyAction::Initialize(plan) = gw.on_body(&post(None), caps, NOW) else { panic!("no plan") };
    let eager = plan.callouts.len();
    assert!((3..40).contains(&eager), "only the first servers are opened at initialize: {eager}");
    assert!(plan.callouts.iter().enumerate().all(|(i, c)| c.server == i), "in catalog order");
    let answers: Vec<_> = (0..eager).map(|i| opened_answer(&format!("{i:036}"))).collect();
    let (reply, followups, outside) = gw.initialized(&plan, &answers, NOW);
    let token = reply.headers.iter().find(|(k, _)| *k == "mcp-session-id").unwrap().1.clone();
    assert!(token.len() <= 1024, "{}", token.len());
    assert!(outside.is_empty(), "UUID-sized ids fit as reckoned");
    assert_eq!(followups.len(), eager);

    // A server in the id is called in its session at once.
    let BodyAction::Forward(f) = call(&gw, &token, "s00__echo", &NoneOpened) else { panic!() };
    assert_eq!((f.upstream_session.as_deref(), f.open_first), (Some(format!("{:036}", 0).as_str()), false));
    // One beyond it is opened first, as the client's own initialize did.
    let kept = Kept::default();
    let BodyAction::Forward(f) = call(&gw, &token, "s39__echo", &kept) else { panic!() };
    assert!(f.open_first && f.upstream_session.is_none());
    assert_eq!(Gateway::cost(&BodyAction::Forward(Forward { ..f })), 3);
    let BodyAction::Forward(f) = call(&gw, &token, "s39__echo", &kept) else { panic!() };
    let init = gw.open_upstream(&post(Some(&token)), &f, NOW).unwrap();
    assert_eq!(init.cluster, "mcp_s39");
    let sent: Value = serde_json::from_slice(&init.body).unwrap();
    assert_eq!(sent["method"], "initialize");
    assert_eq!(sent["params"]["capabilities"], json!({"roots": {"listChanged": true}}), "the client's capabilities, from its id");
    assert_eq!(sent["params"]["protocolVersion"], "2025-06-18");

    let (f, opened, callouts) = gw.upstream_opened(&post(Some(&token)), f, opened_answer("lazy-39").as_ref(), NOW).unwrap();
    assert_eq!((f.upstream_session.as_deref(), f.upstream_version.as_deref(), f.open_first), (Some("lazy-39"), Some("2025-06-18"), false));
    assert_eq!(opened.expires, NOW.unix_secs + 60);
    assert_eq!(callouts[0].cluster, "mcp_s39");
    assert_eq!(String::from_utf8_lossy(&callouts[0].body), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert!(callouts[0].headers.contains(&("mcp-session-id", "lazy-39".into())));
    // The control plane hears of it, for the client's GET stream.
    let notice = &callouts[1];
    assert_eq!(notice.cluster, "gateway_admin");
    assert!(notice.headers.contains(&(":path", "/mcp-events/opened".into())));
    assert!(notice.headers.contains(&("mcp-session-id", token.clone())));
    assert!(notice.headers.contains(&(crate::config::INTERNAL_HEADER, "tok".into())));
    let said: Value = serde_json::from_slice(&notice.body).unwrap();
    assert_eq!(said, json!({"server": "s39", "id": "lazy-39", "version": "2025-06-18"}));
    kept.0.borrow_mut().push(opened);

    // Kept, the session serves the next calls, on this Envoy.
    let BodyAction::Forward(f) = call(&gw, &token, "s39__echo", &kept) else { panic!() };
    assert_eq!((f.upstream_session.as_deref(), f.open_first), (Some("lazy-39"), false));
    // Another client's session does not see it.
    let other = session(&many(40, 1024), false);
    let BodyAction::Forward(f) = call(&gw, &other, "s39__echo", &kept) else { panic!() };
    assert!(f.open_first);

    // Notifications reach the servers the session was opened with, on
    // either side of the id, and no other.
    let cancel = br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5}}"#;
    let BodyAction::FanOut(_, to) = gw.decide_with(&post(Some(&token)), cancel, NOW, &kept).action else { panic!() };
    let mut reached: Vec<usize> = to.iter().map(|c| c.server).collect();
    reached.sort();
    assert_eq!(reached, (0..eager).chain([39]).collect::<Vec<_>>());
    // An answer for the lazily opened server is taken; one for a server
    // never opened is not.
    let answer = |server: &str| format!(r#"{{"jsonrpc":"2.0","id":"mcpgw:{server}:1","result":{{}}}}"#);
    assert!(matches!(gw.decide_with(&post(Some(&token)), answer("s39").as_bytes(), NOW, &kept).action, BodyAction::Forward(_)));
    assert!(matches!(gw.decide_with(&post(Some(&token)), answer("s38").as_bytes(), NOW, &kept).action, BodyAction::Reply(_)));
    // A DELETE ends them all.
    let delete = RequestHead { method: "DELETE".into(), ..post(Some(&token)) };
    let (_, deletes, _) = gw.end_session(&delete, &kept, NOW);
    let mut ended: Vec<usize> = deletes.iter().map(|c| c.server).collect();
    ended.sort();
    assert_eq!(ended, (0..eager).chain([39]).collect::<Vec<_>>());
    assert!(deletes.iter().any(|c| c.headers.contains(&("mcp-session-id", "lazy-39".into()))));
}

#[test]
fn a_server_that_cannot_be_opened_is_named_and_tried_again() {
    let gw = many(40, 1024);
    let token = session(&gw, false);
    let BodyAction::Forward(f) = call(&gw, &token, "s39__echo", &NoneOpened) else { panic!() };
    let refused = CalloutResponse { status: 503, ..opened_answer("x").unwrap() };
    let reply = gw.upstream_opened(&post(Some(&token)), f, Some(&refused), NOW).unwrap_err();
    let v = reply_json(&reply);
    assert_eq!((reply.status, v["id"].clone(), v["error"]["code"].clone()), (200, json!(5), json!(-32603)));
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("'s39'") && message.contains("HTTP 503"), "{message}");
    let BodyAction::Forward(f) = call(&gw, &token, "s39__echo", &NoneOpened) else { panic!() };
    assert!(f.open_first, "nothing was kept: the next call tries again");
    assert!(gw.upstream_opened(&post(Some(&token)), f, None, NOW).is_err());
}

#[test]
fn ids_longer_than_reckoned_are_kept_outside_the_session_id() {
    let gw = many(40, 1024);
    let BodyAction::Initialize(plan) = gw.on_body(&post(None), br#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#, NOW) else { panic!() };
    let answers: Vec<_> = plan.callouts.iter().map(|c| opened_answer(&format!("{:0>200}", c.server))).collect();
    let (reply, followups, outside) = gw.initialized(&plan, &answers, NOW);
    let token = reply.headers.iter().find(|(k, _)| *k == "mcp-session-id").unwrap().1.clone();
    assert!(token.len() <= 1024, "{}", token.len());
    assert!(!outside.is_empty(), "some had no room");
    let initialized = followups.iter().filter(|c| c.cluster.starts_with("mcp_")).count();
    assert_eq!(initialized, plan.callouts.len(), "every upstream that accepted hears initialized");
    assert_eq!(followups.len() - initialized, outside.len(), "the control plane hears of each kept outside");
    let kept = Kept(std::cell::RefCell::new(outside));
    for c in &plan.callouts {
        let BodyAction::Forward(f) = call(&gw, &token, &format!("s{:02}__echo", c.server), &kept) else { panic!() };
        assert_eq!(f.upstream_session, Some(format!("{:0>200}", c.server)), "in or outside the id, each is found");
    }
}

#[test]
fn a_thousand_stateful_servers_leave_the_session_id_bounded() {
    let gw = many(1000, 4096);
    let BodyAction::Initialize(plan) =
        gw.on_body(&post(None), br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{}}}"#, NOW)
    else {
        panic!()
    };
    assert!(plan.callouts.len() < 100, "{}", plan.callouts.len());
    let answers: Vec<_> = plan.callouts.iter().map(|_| opened_answer("6f9619ff-8b86-d011-b42d-00cf4fc964ff")).collect();
    let (reply, _, _) = gw.initialized(&plan, &answers, NOW);
    let token = &reply.headers.iter().find(|(k, _)| *k == "mcp-session-id").unwrap().1;
    assert!(token.len() <= 4096, "{}", token.len());
    let BodyAction::Forward(f) = call(&gw, token, "s999__echo", &NoneOpened) else { panic!() };
    assert!(f.open_first);
}

/// The fixture with a virtual server `ops` at `/mcp/ops`: `a`'s tools and
/// `plain`, `a__echo` renamed `echo` and described anew, `a__greet` and no
/// other prompt, only `file:///etc/*` resources.
fn with_ops_endpoint() -> Gateway {
    use crate::config::{Subset, VirtualServer};
    let globs = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let mut c = config();
    c.endpoints = vec![VirtualServer {
        name: "ops".into(),
        path: "/mcp/ops".into(),
        tools: Subset { include: globs(&["a__*", "plain"]), exclude: vec![] },
        prompts: Subset { include: globs(&["a__greet"]), exclude: vec![] },
        resources: Subset { include: globs(&["file:///etc/*"]), exclude: vec![] },
        renames: vec![("a__echo".into(), "echo".into())],
        descriptions: vec![("plain".into(), "Plain, for ops".into())],
        authorization: None,
        in_mcp: None,
    }];
    Gateway::new(c).unwrap()
}

fn on_ops(token: Option<&str>) -> RequestHead {
    RequestHead { path: "/mcp/ops".into(), ..post(token) }
}

#[test]
fn a_virtual_server_lists_and_routes_only_its_subset_under_its_names() {
    let gw = with_ops_endpoint();
    let token = session_as(&gw, on_ops(None), false);
    let ask = |method: &str, params: Value| {
        let body = json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": params}).to_string();
        gw.on_body(&on_ops(Some(&token)), body.as_bytes(), NOW)
    };
    let listed = match ask("tools/list", json!({})) {
        BodyAction::Reply(r) => reply_json(&r)["result"]["tools"].clone(),
        other => panic!("{other:?}"),
    };
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["echo", "plain"]);
    assert_eq!(listed[1]["description"], "Plain, for ops");
    // Called by its name here, routed by the gateway's, sent by the server's.
    match ask("tools/call", json!({"name": "echo", "arguments": {}})) {
        BodyAction::Forward(f) => {
            assert_eq!(f.server, 0);
            assert!(f.body.is_none(), "sent as it came: `echo` is also the server's own name");
        }
        other => panic!("{other:?}"),
    }
    match ask("tools/call", json!({"name": "plain"})) {
        BodyAction::Forward(f) => assert_eq!(f.server, 1),
        other => panic!("{other:?}"),
    }
    // The gateway's name of a renamed tool, and a tool outside the subset, are unknown here.
    for name in ["a__echo", "b__echo"] {
        match ask("tools/call", json!({"name": name})) {
            BodyAction::Reply(r) => assert_eq!(reply_json(&r)["error"]["message"], format!("Unknown tool: {name}")),
            other => panic!("{other:?}"),
        }
    }
    // Resources: only what the subset names.
    assert!(matches!(ask("resources/read", json!({"uri": "file:///etc/motd"})), BodyAction::Forward(_)));
    match ask("resources/read", json!({"uri": "notes://1/text"})) {
        BodyAction::Reply(r) => assert_eq!(reply_json(&r)["error"]["code"], -32002),
        other => panic!("{other:?}"),
    }
    // The gateway's own endpoint is unchanged.
    let whole = session(&gw, false);
    assert!(matches!(routed(&gw, &whole, "tools/call", json!({"name": "b__echo"})), Ok((1, _))));
    // An endpoint's path that is not configured is not MCP.
    let mut other = RequestHead { path: "/mcp/nope".into(), ..post(None) };
    assert!(matches!(gw.on_headers(&mut other), HeadAction::PassThrough));
}

#[test]
fn a_virtual_servers_own_rules_narrow_the_gateways() {
    use crate::config::{AuthorizationConfig, PolicyRule, Targets, VirtualServer};
    let mut c = config();
    c.endpoints = vec![VirtualServer {
        name: "ops".into(),
        path: "/mcp/ops".into(),
        tools: Default::default(),
        prompts: Default::default(),
        resources: Default::default(),
        renames: vec![],
        descriptions: vec![],
        authorization: Some(AuthorizationConfig {
            default_allow: false,
            rules: vec![PolicyRule {
                name: "only-plain".into(),
                principals: vec![],
                groups: vec![],
                allow: Targets { tools: vec!["plain".into()], ..Default::default() },
                deny: Targets::default(),
            }],
        }),
        in_mcp: None,
    }];
    let gw = Gateway::new(c).unwrap();
    let token = session_as(&gw, on_ops(None), false);
    let listed = match gw.on_body(&on_ops(Some(&token)), br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#, NOW) {
        BodyAction::Reply(r) => reply_json(&r)["result"]["tools"].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "plain");
}

#[test]
fn a_server_without_a_valid_token_is_refused_by_name_and_left_out_of_initialize() {
    let mut c = config();
    c.servers[0].credential_error = Some("token endpoint https://as/token refused the gateway's client: invalid_client".into());
    let gw = Gateway::new(c).unwrap();
    let plan = match gw.on_body(&post(None), br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#, NOW) {
        BodyAction::Initialize(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(plan.callouts.iter().map(|c| c.cluster.as_str()).collect::<Vec<_>>(), ["mcp_b"], "no initialize for a");
    let (reply, _, _) = gw.initialized(&plan, &[None], NOW);
    let token = reply.headers.iter().find(|(k, _)| *k == "mcp-session-id").unwrap().1.clone();
    let body = br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"a__echo","arguments":{"text":"hi"}}}"#;
    match gw.on_body(&post(Some(&token)), body, NOW) {
        BodyAction::Reply(r) => {
            let v = reply_json(&r);
            assert_eq!((r.status, v["error"]["code"].as_i64()), (200, Some(-32603)));
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains("'a'") && message.contains("invalid_client") && message.contains("servers[].oauth"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Its other servers are served.
    let body = br#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"s__ping"}}"#;
    assert!(matches!(gw.on_body(&post(Some(&token)), body, NOW), BodyAction::Forward(f) if f.server == 2));
}

#[test]
fn a_prometheus_scrape_of_stats_gets_the_text_format_and_a_person_gets_json() {
    let mut c = config();
    c.control_plane = Some(control_plane());
    let gw = Gateway::new(c).unwrap();
    let page = |accept: Option<&str>| {
        let mut head =
            RequestHead { method: "GET".into(), path: "/stats".into(), accept: accept.map(str::to_string), ..Default::default() };
        match gw.on_headers(&mut head) {
            HeadAction::Scrape(page, _) => page,
            other => panic!("{other:?}"),
        }
    };
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(page(Some(prometheus)), Page::Metrics);
    assert_eq!(page(Some("text/plain;version=0.0.4;q=1,*/*;q=0.1")), Page::Metrics, "older Prometheus");
    assert_eq!(page(Some("*/*")), Page::Stats, "curl");
    assert_eq!(page(Some("application/json")), Page::Stats);
    assert_eq!(page(None), Page::Stats);
}

#[test]
fn operator_actions_on_the_gateway_port_go_to_the_control_plane_for_admins_only() {
    use crate::config::INTERNAL_HEADER;
    for (path, action) in [
        ("/admin/reload", true),
        ("/servers/time/restart", true),
        ("/servers/time/stop", true),
        ("/servers/time/tools/approve-all", true),
        ("/servers/time/tools/add/approve", true),
        ("/servers/time/explode", false),
        ("/servers//start", false),
        ("/admin/reload/again", false),
    ] {
        assert_eq!(scrape::is_admin_action(path), action, "{path}");
    }
    let cp = ControlPlane {
        headers: vec![crate::config::UpstreamHeader { name: INTERNAL_HEADER.into(), value: "internal".into() }],
        ..control_plane()
    };
    let post_to = |path: &str, credential: Option<&str>| RequestHead {
        method: "POST".into(),
        path: path.into(),
        credential: credential.map(str::to_string),
        origin: Some("http://localhost:4444".into()),
        host: Some("localhost:4444".into()),
        ..Default::default()
    };
    // Loopback, no authentication: as the admin port on loopback.
    let open = Gateway::new(FilterConfig { loopback_only: true, control_plane: Some(cp.clone()), ..config() }).unwrap();
    let mut head = post_to("/admin/reload", None);
    assert_eq!(open.on_headers(&mut head), HeadAction::Admin);
    let edits = open.admin_edits(&head).unwrap();
    let target = edits.target.as_ref().unwrap();
    assert_eq!((target.cluster, target.path.as_ref()), ("gateway_admin", "/admin/reload"));
    assert!(edits.set.iter().any(|(n, v)| n == INTERNAL_HEADER && v == "internal"));
    assert!(edits.drop.iter().any(|h| h == "origin") && edits.drop.iter().any(|h| h == "authorization"));
    // Beyond loopback without authentication: refused, saying what to do.
    let wide = Gateway::new(FilterConfig { control_plane: Some(cp.clone()), ..config() }).unwrap();
    let HeadAction::Refuse(r) = wide.on_headers(&mut post_to("/admin/reload", None)) else { panic!() };
    assert_eq!(r.reply.status, 403);
    assert!(r.reason.contains("gateway.auth") && r.reason.contains("admin port"), "{}", r.reason);
    // With authentication: an admin key only.
    let mut c = FilterConfig { control_plane: Some(cp), ..config() };
    c.auth = Some(crate::config::AuthConfig {
        api_keys: vec![
            crate::fixtures::api_key("k-admin-0123456789", "ops", &["admin"]),
            crate::fixtures::api_key("k-alice-0123456789", "alice", &["dev"]),
        ],
        jwt: None,
        protected_resource: None,
        client_certificates: false,
        admin_groups: vec!["admin".into()],
    });
    let keyed = Gateway::new(c).unwrap();
    assert_eq!(keyed.on_headers(&mut post_to("/servers/time/restart", Some("k-admin-0123456789"))), HeadAction::Admin);
    let status = |credential| match keyed.on_headers(&mut post_to("/servers/time/restart", credential)) {
        HeadAction::Refuse(r) => r.reply.status,
        other => panic!("{other:?}"),
    };
    assert_eq!((status(None), status(Some("k-alice-0123456789")), status(Some("wrong-key-000000000"))), (401, 403, 401));

    // The console's state goes the same way for an admin (whose credential
    // may be a JWT the control plane cannot check), with its query.
    let get = |path: &str, credential: Option<&str>| RequestHead { method: "GET".into(), ..post_to(path, credential) };
    let mut head = get("/console/state?open=time", Some("k-admin-0123456789"));
    assert_eq!(keyed.on_headers(&mut head), HeadAction::Admin);
    let edits = keyed.admin_edits(&head).unwrap();
    assert_eq!(edits.target.as_ref().unwrap().path.as_ref(), "/console/state?open=time");
    assert!(edits.set.iter().any(|(n, v)| n == INTERNAL_HEADER && v == "internal"));
    assert!(edits.drop.iter().any(|h| h == "authorization"));
    let HeadAction::Refuse(r) = keyed.on_headers(&mut get("/console/state", Some("k-alice-0123456789"))) else { panic!() };
    assert_eq!(r.reply.status, 403);
    // Other pages, and the console's own files, are not rerouted.
    assert_eq!(keyed.on_headers(&mut get("/servers", Some("k-admin-0123456789"))), HeadAction::PassThrough);
    assert_eq!(keyed.on_headers(&mut get("/console/app.js", None)), HeadAction::PassThrough);
    // Without authentication the control plane checks the Host itself.
    assert_eq!(open.on_headers(&mut get("/console/state", None)), HeadAction::PassThrough);
}
