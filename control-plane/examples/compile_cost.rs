//! What turning a large catalog into Envoy resources costs, in process:
//! `compile_cost [SERVERS] [ITERATIONS]` (default 1000 servers, 9 iterations)
//! builds a catalog of SERVERS servers as `catalog.yaml` text, each with the
//! 21 tools a bench server (`bench/server`, `--tools 20`) lists, and times
//! `catalog::load` and `compile` over ITERATIONS runs, printing the medians.
//! The filter module travels by its digest only (Envoy fetches it once), so
//! its bytes do not count here.
//!
//!     cargo run --release -p mcp-control-plane --example compile_cost -- 1000
//!
//! `bench/push.py` runs it for the results file.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mcp_control_plane::catalog;
use mcp_control_plane::compile::{compile, Inputs};
use mcp_control_plane::discovery::Discovered;
use mcp_filter::config::{SessionConfig, SessionKey};
use prost::Message;
use serde_json::json;

const TOOLS: usize = 20;

fn main() {
    let mut args = std::env::args().skip(1);
    let servers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let iterations: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(9).max(1);

    let mut yaml = String::from("gateway:\n  listen: 127.0.0.1:4444\nservers:\n");
    for i in 0..servers {
        yaml.push_str(&format!("  - {{name: b{i}, url: 'http://127.0.0.1:{}/mcp'}}\n", 20000 + i));
    }
    // What a bench server answers to discovery (bench/server/src/main.rs).
    let discovered: BTreeMap<String, Discovered> = (0..servers)
        .map(|i| {
            let schema = json!({ "type": "object", "properties": { "text": { "type": "string" } } });
            let mut tools: Vec<_> = (0..TOOLS)
                .map(|t| json!({ "name": format!("tool_{t}"), "description": format!("Echo tool {t} of bench{i}"), "inputSchema": schema }))
                .collect();
            tools.push(json!({ "name": "big", "description": "Answers a large text", "inputSchema": { "type": "object" } }));
            let d = Discovered {
                capabilities: json!({ "tools": {} }),
                protocol_version: Some("2025-06-18".into()),
                stateless_era: true,
                tools,
                ..Default::default()
            };
            (format!("b{i}"), d)
        })
        .collect();
    let module_sha256 = "0".repeat(64);
    let session = SessionConfig {
        active_key: "k".into(),
        keys: vec![SessionKey { id: "k".into(), secret_hex: "11".repeat(32) }],
        ttl_seconds: 86_400,
        max_id_bytes: 4096,
    };

    let (mut load_times, mut compile_times) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..iterations {
        let start = Instant::now();
        let catalog = catalog::load(&yaml, |_| None).expect("the generated catalog is valid");
        load_times.push(start.elapsed());
        let inputs = Inputs {
            catalog: &catalog,
            discovered: &discovered,
            module_sha256: &module_sha256,
            session: &session,
            admin: ("127.0.0.1", 18001),
            gateway_version: "0.0.0",
            jwks: None,
            internal_token: "token",
            tls: None,
            upstream_tls: &Default::default(),
            previous: None,
            held: &Default::default(),
            credentials: &Default::default(),
        };
        let start = Instant::now();
        let compiled = compile(&inputs).expect("the generated catalog compiles");
        compile_times.push(start.elapsed());
        last = Some(compiled);
    }
    let compiled = last.expect("at least one iteration");
    // compile() serialises the filter configuration twice: for the version's
    // digest, and as the ECDS resource's payload. One of those, alone:
    let mut json_times = Vec::new();
    for _ in 0..iterations {
        let start = Instant::now();
        let json = serde_json::to_vec(&compiled.filter_config).unwrap_or_default();
        json_times.push(start.elapsed());
        std::hint::black_box(json);
    }
    let bytes: BTreeMap<&str, (usize, usize)> = compiled
        .snapshot
        .resources
        .iter()
        .map(|(type_url, items)| {
            let short = type_url.rsplit('.').next().unwrap_or(type_url);
            (short, (items.len(), items.iter().map(|(_, any)| any.encoded_len()).sum()))
        })
        .collect();
    println!("servers={servers} tools={} iterations={iterations} catalog_yaml_bytes={}", compiled.filter_config.tools.len(), yaml.len());
    println!("load_median_ms={:.3}", median_ms(&mut load_times));
    println!("compile_median_ms={:.3}", median_ms(&mut compile_times));
    println!("filter_config_json_median_ms={:.3}", median_ms(&mut json_times));
    for (kind, (count, size)) in bytes {
        println!("resources {kind}: {count} ({size} bytes)");
    }
}

fn median_ms(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1000.0
}
