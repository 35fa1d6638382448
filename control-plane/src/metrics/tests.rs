use super::*;
use crate::catalog::Runtime;
use crate::snapshot::{Nack, TypeStatus};
use crate::state::{ServerState, ServerStatus};
use std::time::Duration;

fn server(name: &str, state: ServerState, tools: usize) -> ServerStatus {
    let mut s = ServerStatus::new(name, state, Runtime::Http, String::new());
    s.summary.tools = tools;
    s
}

fn typed(type_url: &str, acked: Option<&str>, sent: u64, acks: u64, nacks: u64) -> TypeStatus {
    TypeStatus {
        type_url: type_url.into(),
        requested_names: vec![],
        last_sent_version: Some("v2".into()),
        last_acked_version: acked.map(str::to_string),
        last_acked_at: None,
        last_nack: (nacks > 0).then(|| Nack { version: "v2".into(), error: "bad".into(), at: UNIX_EPOCH }),
        sent,
        sent_bytes: sent * 10,
        last_sent_bytes: 10,
        acks,
        nacks,
        current: acked == Some("v2"),
    }
}

fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn a_scrape_shows_the_catalog_the_envoys_and_the_servers() {
    let status = Status {
        version: Some("v2".into()),
        last_error: None,
        last_reload_at: Some(UNIX_EPOCH + Duration::from_millis(1_500)),
        servers: vec![
            ServerStatus {
                dropped: vec![crate::compile::Dropped { server: "echo".into(), kind: "tool", name: "x".into(), reason: "taken".into() }],
                credential: Some(crate::token::CredentialStatus {
                    grant: "client_credentials",
                    state: CredentialState::RefreshFailing,
                    token_url: None,
                    expires_at: Some(2_000),
                    refreshed_at: None,
                    last_error: Some("refused".into()),
                    refreshes: 3,
                    failures: 1,
                    exchanges: Some(crate::token::ExchangeCounts { ok: 4, error: 1, cached: 9 }),
                }),
                ..server("echo", ServerState::Ready, 3)
            },
            server("we\"ird", ServerState::Unreachable, 0),
        ],
        reloads_ok: 4,
        reloads_failed: 1,
        log_level: Some("info".into()),
    };
    let nodes = vec![
        NodeStatus {
            node_id: "gw-1".into(),
            connected: true,
            streams: 1,
            types: vec![typed(CLUSTER_TYPE, Some("v2"), 3, 3, 0), typed(ROUTE_TYPE, Some("v1"), 3, 2, 1)],
        },
        NodeStatus { node_id: "gw-2".into(), connected: false, streams: 0, types: vec![typed(EXTENSION_CONFIG_TYPE, Some("v2"), 1, 1, 0)] },
    ];
    let usage = usage::Usage {
        resident_bytes: Some(1 << 20),
        cpu_seconds: Some(1.5),
        cgroup_memory_bytes: Some(3 << 20),
        cgroup_memory_limit_bytes: Some(1 << 30),
        cgroup_cpu_seconds: Some(2.0),
        cgroup_cpu_limit_cores: None,
    };
    let text =
        render(&Inputs { status: &status, served: Some("v2"), nodes: &nodes, restarts: &[("files".into(), 2)], module_fetches: 2, usage });
    assert_eq!(
        samples(&text),
        vec![
            "mcp_gateway_control_plane_up 1",
            "mcp_gateway_catalog_info{version=\"v2\"} 1",
            "mcp_gateway_catalog_reloads_total{result=\"ok\"} 4",
            "mcp_gateway_catalog_reloads_total{result=\"error\"} 1",
            "mcp_gateway_catalog_last_reload_success 1",
            "mcp_gateway_catalog_last_reload_timestamp_seconds 1.5",
            "mcp_gateway_xds_connected_envoys 1",
            "mcp_gateway_xds_pushes_total{node=\"gw-1\",type=\"clusters\"} 3",
            "mcp_gateway_xds_pushes_total{node=\"gw-1\",type=\"routes\"} 3",
            "mcp_gateway_xds_pushes_total{node=\"gw-2\",type=\"filter\"} 1",
            "mcp_gateway_xds_pushed_bytes_total{node=\"gw-1\",type=\"clusters\"} 30",
            "mcp_gateway_xds_pushed_bytes_total{node=\"gw-1\",type=\"routes\"} 30",
            "mcp_gateway_xds_pushed_bytes_total{node=\"gw-2\",type=\"filter\"} 10",
            "mcp_gateway_filter_module_fetches_total 2",
            "process_resident_memory_bytes 1048576",
            "process_cpu_seconds_total 1.5",
            "mcp_gateway_container_memory_bytes 3145728",
            "mcp_gateway_container_memory_limit_bytes 1073741824",
            "mcp_gateway_container_cpu_seconds_total 2",
            "mcp_gateway_xds_acks_total{node=\"gw-1\",type=\"clusters\"} 3",
            "mcp_gateway_xds_acks_total{node=\"gw-1\",type=\"routes\"} 2",
            "mcp_gateway_xds_acks_total{node=\"gw-2\",type=\"filter\"} 1",
            "mcp_gateway_xds_nacks_total{node=\"gw-1\",type=\"clusters\"} 0",
            "mcp_gateway_xds_nacks_total{node=\"gw-1\",type=\"routes\"} 1",
            "mcp_gateway_xds_nacks_total{node=\"gw-2\",type=\"filter\"} 0",
            // gw-1 still runs v1 routes: the served version is not all in.
            "mcp_gateway_envoy_acked_current{node=\"gw-1\"} 0",
            "mcp_gateway_upstream_up{server=\"echo\"} 1",
            "mcp_gateway_upstream_up{server=\"we\\\"ird\"} 0",
            "mcp_gateway_server_tools{server=\"echo\"} 3",
            "mcp_gateway_server_tools{server=\"we\\\"ird\"} 0",
            "mcp_gateway_server_dropped_items{server=\"echo\"} 1",
            "mcp_gateway_server_dropped_items{server=\"we\\\"ird\"} 0",
            "mcp_gateway_server_changed_tools{server=\"echo\"} 0",
            "mcp_gateway_server_changed_tools{server=\"we\\\"ird\"} 0",
            "mcp_gateway_server_held_tools{server=\"echo\"} 0",
            "mcp_gateway_server_held_tools{server=\"we\\\"ird\"} 0",
            "mcp_gateway_upstream_credential_valid{server=\"echo\"} 1",
            "mcp_gateway_upstream_credential_expiry_timestamp_seconds{server=\"echo\"} 2000",
            "mcp_gateway_upstream_credential_refreshes_total{server=\"echo\",result=\"ok\"} 3",
            "mcp_gateway_upstream_credential_refreshes_total{server=\"echo\",result=\"error\"} 1",
            "mcp_gateway_upstream_token_exchanges_total{server=\"echo\",result=\"ok\"} 4",
            "mcp_gateway_upstream_token_exchanges_total{server=\"echo\",result=\"error\"} 1",
            "mcp_gateway_upstream_token_exchanges_total{server=\"echo\",result=\"cached\"} 9",
            "mcp_gateway_server_restarts_total{server=\"files\"} 2",
        ]
    );
    // Every family is introduced once, before its samples.
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    assert_eq!(types.len(), 27, "the 22 of the gateway, and 5 of the machine's use given here");
    assert!(types.contains(&"# TYPE mcp_gateway_xds_nacks_total counter"));
}

#[test]
fn a_failed_reload_and_no_configuration_yet() {
    let status = Status { last_error: Some("bad yaml".into()), reloads_failed: 1, ..Status::default() };
    let text = render(&Inputs { status: &status, served: None, nodes: &[], restarts: &[], module_fetches: 0, usage: Default::default() });
    let got = samples(&text);
    assert!(got.contains(&"mcp_gateway_catalog_last_reload_success 0"), "{text}");
    assert!(!text.contains("mcp_gateway_catalog_info{"), "no version, no info sample: {text}");
    assert!(got.contains(&"mcp_gateway_xds_connected_envoys 0"));
}

#[test]
fn readiness_names_what_is_missing() {
    let good =
        Status { version: Some("v2".into()), servers: vec![server("echo", ServerState::Ready, 1)], reloads_ok: 1, ..Status::default() };
    let acked =
        vec![NodeStatus { node_id: "gw-1".into(), connected: true, streams: 1, types: vec![typed(CLUSTER_TYPE, Some("v2"), 1, 1, 0)] }];
    assert_eq!(not_ready(&good, Some("v2"), &acked), Vec::<String>::new());
    // A disconnected Envoy does not hold readiness back; none connected does.
    let gone = vec![NodeStatus { connected: false, ..acked[0].clone() }];
    assert_eq!(not_ready(&good, Some("v2"), &gone), vec!["no Envoy is connected to the control plane"]);
    let behind = vec![NodeStatus {
        types: vec![typed(CLUSTER_TYPE, Some("v2"), 2, 2, 0), typed(ROUTE_TYPE, Some("v1"), 2, 1, 1)],
        ..acked[0].clone()
    }];
    assert_eq!(not_ready(&good, Some("v2"), &behind), vec!["Envoy gw-1 has not accepted version v2 (routes)"]);
    let broken = Status { last_error: Some("catalog.yaml: bad".into()), ..good.clone() };
    assert_eq!(not_ready(&broken, Some("v2"), &acked), vec!["the catalog does not load: catalog.yaml: bad"]);
    let down = Status { servers: vec![server("echo", ServerState::Unreachable, 0)], ..good.clone() };
    assert_eq!(not_ready(&down, Some("v2"), &acked), vec!["no upstream server is up"]);
    assert_eq!(not_ready(&Status::default(), None, &[]), vec!["no configuration compiled yet"]);
}
