use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::catalog::Runtime;
use crate::runtime::ProcessState;
use crate::snapshot::{Nack, TypeStatus};
use crate::state::{ServerState, ServerStatus};

fn server(name: &str, runtime: Runtime) -> ServerStatus {
    ServerStatus::new(name, ServerState::Ready, runtime, String::new())
}

fn typed(type_url: &str, acked: &str, nack: Option<&str>) -> TypeStatus {
    TypeStatus {
        type_url: type_url.into(),
        requested_names: vec![],
        last_sent_version: Some("v2".into()),
        last_acked_version: Some(acked.into()),
        last_acked_at: None,
        last_nack: nack.map(|e| Nack { version: "v2".into(), error: e.into(), at: std::time::UNIX_EPOCH }),
        sent: 1,
        sent_bytes: 1,
        last_sent_bytes: 1,
        acks: 1,
        nacks: u64::from(nack.is_some()),
        current: acked == "v2",
    }
}

#[test]
fn the_state_shows_servers_processes_figures_envoys_and_the_open_servers_items() {
    let status = Status {
        version: Some("v2".into()),
        last_error: None,
        last_reload_at: None,
        servers: vec![server("a", Runtime::Stdio), server("b", Runtime::Http)],
        reloads_ok: 1,
        reloads_failed: 0,
        log_level: None,
    };
    let nodes = vec![
        NodeStatus { node_id: "gw-1".into(), connected: true, streams: 1, types: vec![typed(crate::snapshot::CLUSTER_TYPE, "v2", None)] },
        NodeStatus {
            node_id: "gw-2".into(),
            connected: true,
            streams: 1,
            types: vec![typed(crate::snapshot::LISTENER_TYPE, "v1", Some("bad listener"))],
        },
    ];
    let processes = BTreeMap::from([(
        "a".to_string(),
        ProcessStatus { state: ProcessState::Running, pid: Some(42), restarts: 3, uptime_seconds: Some(5), last_error: None },
    )]);
    let figures = BTreeMap::from([
        (
            ("a".to_string(), "a__echo".to_string()),
            Figures { requests: 4, errors: 1, latency_count: 4, latency_sum_ms: 10.0, buckets: vec![(5.0, 4)] },
        ),
        // The server's own histogram (all its requests) under "".
        (
            ("a".to_string(), String::new()),
            Figures { requests: 2, latency_count: 6, latency_sum_ms: 60.0, buckets: vec![(5.0, 4), (25.0, 6)], ..Figures::default() },
        ),
    ]);
    let config = mcp_filter::fixtures::config();
    let open = BTreeSet::from(["a"]);
    let state = state(&Inputs {
        status: &status,
        served: Some("v2".into()),
        nodes: &nodes,
        processes: &processes,
        config: Some(&config),
        needs_key: true,
        figures: &figures,
        reporting: &["gw-1".to_string()],
        audit: &[],
        open: &open,
    });
    assert_eq!(state["version"], "v2");
    assert_eq!(state["needs_key"], true);
    let envoys = state["envoys"].as_array().unwrap();
    assert_eq!((envoys[0]["current"].as_bool(), envoys[0]["reporting"].as_bool()), (Some(true), Some(true)));
    assert_eq!(envoys[1]["current"], false);
    assert_eq!(envoys[1]["nack"]["error"], "bad listener");
    assert_eq!(envoys[1]["nack"]["type"], "listeners");

    let a = &state["servers"][0];
    assert_eq!((a["process"]["pid"].as_u64(), a["process"]["restarts"].as_u64()), (Some(42), Some(3)));
    // The server's totals: its tools' and the rest of its requests.
    assert_eq!((a["figures"]["requests"].as_u64(), a["figures"]["errors"].as_u64()), (Some(6), Some(1)));
    // Its latency is its own histogram's, not that plus its tools'.
    assert_eq!((a["figures"]["mean_ms"].as_f64(), a["figures"]["p95_ms"].as_f64()), (Some(10.0), Some(25.0)));
    let tools = a["items"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1, "{tools:?}");
    assert_eq!(tools[0]["name"], "a__echo");
    assert_eq!(tools[0]["upstream_name"], "echo");
    assert_eq!((tools[0]["figures"]["requests"].as_u64(), tools[0]["figures"]["mean_ms"].as_f64()), (Some(4), Some(2.5)));
    assert_eq!(tools[0]["figures"]["p95_ms"], 5.0);
    assert_eq!(a["items"]["prompts"][0]["name"], "a__greet");

    // A server not opened: counts, no items; no process for an http server.
    let b = &state["servers"][1];
    assert!(b.get("items").is_none());
    assert!(b["process"].is_null());
    assert_eq!(b["figures"]["requests"], 0);
}
