//! A minimal MCP server for the benchmarks (`make bench`): Streamable HTTP,
//! JSON answers, everything it can say serialised at start. It parses only
//! the envelope of a request (`id`, `method`, the tool's name), so a load
//! generator measures the proxy in front of it, not it.
//!
//! One process serves several servers, one per port (`--ports 9001-9050`),
//! or several per port with `--per-port N` (`/0/mcp` ... `/N-1/mcp`: one
//! descriptor per port, not per server, for 10,000 servers),
//! each with `--tools` tools named `tool_0`, `tool_1`, ...; every tool echoes
//! `arguments.text`, except `big`, which answers `--big-bytes` of text.
//! `--stateful` issues session ids at `initialize` (handshake era); otherwise
//! the server is stateless and also answers 2026-07-28 requests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clap::Parser;
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Parser, Debug)]
struct Args {
    /// A port, or a range `first-last`: one server per port.
    #[arg(long, default_value = "9001")]
    ports: String,
    /// Tools per server.
    #[arg(long, default_value_t = 20)]
    tools: usize,
    /// Size of `big`'s answer.
    #[arg(long, default_value_t = 1 << 20)]
    big_bytes: usize,
    /// Issue session ids (handshake era), as most servers do.
    #[arg(long)]
    stateful: bool,
    #[arg(long, default_value = "/mcp")]
    path: String,
    /// Servers per port: with more than one, server `j` of a port answers at
    /// `/<j><path>`, and servers are numbered across ports.
    #[arg(long, default_value_t = 1)]
    per_port: usize,
}

/// What one server answers, serialised once.
struct Canned {
    name: String,
    tools_list: String,
    big: String,
    discover: String,
    stateful: bool,
    next_session: std::sync::atomic::AtomicU64,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(default)]
    arguments: Option<Arguments>,
}

#[derive(Deserialize, Default)]
struct Arguments {
    #[serde(default)]
    text: String,
}

fn canned(name: &str, tools: usize, big_bytes: usize, stateful: bool) -> Canned {
    let schema = serde_json::json!({ "type": "object", "properties": { "text": { "type": "string" } } });
    let mut list: Vec<serde_json::Value> = (0..tools)
        .map(|i| serde_json::json!({ "name": format!("tool_{i}"), "description": format!("Echo tool {i} of {name}"), "inputSchema": schema }))
        .collect();
    list.push(serde_json::json!({ "name": "big", "description": "Answers a large text", "inputSchema": { "type": "object" } }));
    let big_text = "x".repeat(big_bytes);
    Canned {
        name: name.to_string(),
        tools_list: serde_json::json!({ "tools": list }).to_string(),
        big: serde_json::json!({ "content": [{ "type": "text", "text": big_text }] }).to_string(),
        discover: serde_json::json!({
            "supportedVersions": ["2026-07-28", "2025-06-18"],
            "capabilities": { "tools": {} },
            "ttlMs": 0,
            "cacheScope": "private",
            "resultType": "complete",
            "_meta": { "io.modelcontextprotocol/serverInfo": { "name": name, "version": "1" } },
        })
        .to_string(),
        stateful,
        next_session: std::sync::atomic::AtomicU64::new(1),
    }
}

fn json(id: &str, result: &str) -> Response {
    let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
    ([("content-type", "application/json")], body).into_response()
}

async fn mcp(State(c): State<Arc<Canned>>, body: Bytes) -> Response {
    let Ok(env) = serde_json::from_slice::<Envelope<'_>>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON-RPC").into_response();
    };
    let (Some(id), Some(method)) = (env.id, env.method) else {
        // Notifications and answers: accepted.
        return StatusCode::ACCEPTED.into_response();
    };
    let id = id.get();
    match method.as_ref() {
        "initialize" => {
            let result = format!(
                r#"{{"protocolVersion":"2025-06-18","capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"{}","version":"1"}}}}"#,
                c.name
            );
            let mut response = json(id, &result);
            if c.stateful {
                let n = c.next_session.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Ok(v) = format!("{}-{n}", c.name).parse() {
                    response.headers_mut().insert("mcp-session-id", v);
                }
            }
            response
        }
        // A stateless server also speaks 2026-07-28: requests carry their
        // revision in `_meta`, and need no session.
        "server/discover" if !c.stateful => json(id, &c.discover),
        "ping" => json(id, "{}"),
        "tools/list" => json(id, &c.tools_list),
        "tools/call" => {
            let Some(params) = env.params.and_then(|p| serde_json::from_str::<CallParams<'_>>(p.get()).ok()) else {
                return json(id, r#"{"content":[],"isError":true}"#);
            };
            if params.name == "big" {
                return json(id, &c.big);
            }
            let text = params.arguments.unwrap_or_default().text;
            let result = serde_json::json!({ "content": [{ "type": "text", "text": text }] });
            json(id, &result.to_string())
        }
        other => {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"Method not found: {}"}}}}"#,
                other.escape_default()
            );
            ([("content-type", "application/json")], body).into_response()
        }
    }
}

fn ports(spec: &str) -> anyhow::Result<Vec<u16>> {
    match spec.split_once('-') {
        Some((a, b)) => {
            let (a, b): (u16, u16) = (a.parse()?, b.parse()?);
            anyhow::ensure!(a <= b, "--ports {spec}: first must not exceed last");
            Ok((a..=b).collect())
        }
        None => Ok(vec![spec.parse()?]),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut servers = Vec::new();
    for (i, port) in ports(&args.ports)?.into_iter().enumerate() {
        let app = if args.per_port <= 1 {
            let state = Arc::new(canned(&format!("bench{i}"), args.tools, args.big_bytes, args.stateful));
            axum::Router::new().route(&args.path, axum::routing::post(mcp)).with_state(state)
        } else {
            let mut app = axum::Router::new();
            for j in 0..args.per_port {
                let state = Arc::new(canned(&format!("bench{}", i * args.per_port + j), args.tools, args.big_bytes, args.stateful));
                app = app.route(&format!("/{j}{}", args.path), axum::routing::post(mcp).with_state(state));
            }
            app
        };
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        servers.push(tokio::spawn(async move { axum::serve(listener, app).await }));
    }
    println!("serving {} MCP servers", servers.len() * args.per_port.max(1));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { let mut t = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler"); t.recv().await } => {}
    }
    Ok(())
}
