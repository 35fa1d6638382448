//! What the filter core costs per request, natively: `core_cost WORKLOAD N`
//! runs the decision of one request N times against a gateway of 10 servers
//! x 20 tools (with API keys and authorization rules when WORKLOAD ends in
//! `-auth`). Under `valgrind --tool=callgrind`, the instruction count of a
//! run with N requests minus that of a run with none, divided by N, is the
//! core's cost per request: a number that, unlike time, does not move with
//! the machine's load (`make bench` reports it).
//!
//! Workloads: `call` (tools/call), `list` (tools/list), `call-auth`,
//! `list-auth`, `init` (initialize: the plan and the session id).

use mcp_filter::config::{
    AuthConfig, AuthorizationConfig, FilterConfig, NamedRoute, PolicyRule, ServerEra, ServerInfo, Targets, UpstreamServer,
};
use mcp_filter::decision::{BodyAction, CalloutResponse, HeadAction, Now, RequestHead};
use mcp_filter::fixtures;
use mcp_filter::gateway::Gateway;

const SERVERS: usize = 10;
const TOOLS: usize = 20;
const KEY: &str = "bench-api-key-0123456789";
const NOW: Now = Now { unix_secs: 1_000_000, entropy: 42 };

fn config(auth: bool) -> FilterConfig {
    let servers = (0..SERVERS)
        .map(|i| UpstreamServer {
            authority: format!("127.0.0.1:{}", 9001 + i),
            era: ServerEra::Both,
            ..fixtures::stateless_server(&format!("s{i}"), "2025-06-18")
        })
        .collect();
    let tools = (0..SERVERS)
        .flat_map(|s| (0..TOOLS).map(move |t| (s, t)))
        .map(|(s, t)| NamedRoute {
            definition: mcp_filter::config::Definition::new(&serde_json::json!({
                "name": format!("s{s}__tool_{t}"),
                "description": format!("Echo tool {t} of s{s}"),
                "inputSchema": { "type": "object", "properties": { "text": { "type": "string" } } },
            })),
            ..fixtures::route(&format!("s{s}__tool_{t}"), s, &format!("tool_{t}"))
        })
        .collect();
    FilterConfig {
        version: "bench".into(),
        max_body_bytes: 1 << 20,
        max_upstream_event_bytes: 1 << 22,
        server_info: ServerInfo { name: "gw".into(), version: "0".into() },
        servers,
        tools,
        prompts: vec![],
        resources: vec![],
        resource_templates: vec![],
        capabilities: serde_json::json!({ "tools": { "listChanged": true } }),
        session: fixtures::session(86_400),
        stateless_era: true,
        auth: auth.then(|| AuthConfig {
            api_keys: vec![fixtures::api_key(KEY, "bench", &["dev"])],
            jwt: None,
            protected_resource: None,
            client_certificates: false,
            admin_groups: vec![],
        }),
        authorization: auth.then(|| AuthorizationConfig {
            default_allow: false,
            rules: vec![PolicyRule {
                name: "devs".into(),
                principals: vec![],
                groups: vec!["dev".into()],
                allow: Targets { servers: vec!["*".into()], ..Default::default() },
                deny: Targets { tools: vec!["*__tool_19".into()], ..Default::default() },
            }],
        }),
        audit: auth,
        upstream_timeout_ms: 10_000,
        router: None,
        held_tools: Vec::new(),
        endpoints: Vec::new(),
        ..fixtures::config()
    }
}

fn head(auth: bool, session: Option<&str>) -> RequestHead {
    RequestHead {
        method: "POST".into(),
        path: "/mcp".into(),
        content_type: Some("application/json".into()),
        accept: Some("application/json, text/event-stream".into()),
        session_id: session.map(str::to_string),
        credential: auth.then(|| KEY.to_string()),
        ..Default::default()
    }
}

/// A session id, as a client would hold after `initialize`.
fn session(gw: &Gateway, auth: bool) -> Option<String> {
    let mut h = head(auth, None);
    if gw.on_headers(&mut h) != HeadAction::ReadBody {
        return None;
    }
    let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}"#;
    match gw.decide(&h, init, NOW).action {
        BodyAction::Initialize(plan) => {
            let answers: Vec<Option<CalloutResponse>> = vec![None; plan.callouts.len()];
            let (reply, _, _) = gw.initialized(&plan, &answers, NOW);
            reply.headers.iter().find(|(k, _)| *k == "mcp-session-id").map(|h| h.1.clone())
        }
        BodyAction::Reply(reply) => reply.headers.iter().find(|(k, _)| *k == "mcp-session-id").map(|h| h.1.clone()),
        _ => None,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let workload = args.next().unwrap_or_else(|| "call".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let auth = workload.ends_with("-auth");
    let gw = match Gateway::new(config(auth)) {
        Ok(gw) => gw,
        Err(e) => {
            eprintln!("core_cost: {e}");
            std::process::exit(2);
        }
    };
    let sid = session(&gw, auth);
    let body: &[u8] = match workload.trim_end_matches("-auth") {
        "call" => br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"s3__tool_4","arguments":{"text":"hello"}}}"#,
        "list" => br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#,
        "init" => br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}"#,
        other => {
            eprintln!("core_cost: unknown workload {other:?} (call, list, init, with -auth)");
            std::process::exit(2);
        }
    };
    let mut sink = 0usize;
    let started = std::time::Instant::now();
    for _ in 0..n {
        let mut h = head(auth, sid.as_deref());
        if gw.on_headers(&mut h) != HeadAction::ReadBody {
            eprintln!("core_cost: headers refused");
            std::process::exit(1);
        }
        let decision = gw.decide(&h, body, NOW);
        sink += gw.buckets(&h, &decision.audit).len();
        sink += match decision.action {
            // What the glue then applies is planned by the core too.
            BodyAction::Forward(f) => {
                let edits = gw.forward_edits(&h, &f, &decision.audit).map_or(0, |e| e.set.len() + e.drop.len());
                f.server + f.body.map_or(0, |b| b.len()) + edits
            }
            BodyAction::Reply(r) => r.body.len(),
            BodyAction::Initialize(p) => p.callouts.len(),
            BodyAction::FanOut(r, _) => r.body.len(),
        };
    }
    let per = started.elapsed().as_nanos() / (n.max(1) as u128);
    println!("{workload}: {n} requests, {per} ns each (native, informative only), checksum {sink}");
}
