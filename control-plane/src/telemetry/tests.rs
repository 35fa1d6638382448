use std::collections::HashMap;

use envoy_types::pb::envoy::data::accesslog::v3::{AccessLogCommon, HttpAccessLogEntry, HttpResponseProperties};
use envoy_types::pb::google::protobuf::{Any, BytesValue, StringValue, Timestamp, UInt32Value};
use envoy_types::pb::io::prometheus::client::{Bucket, Counter, Histogram, LabelPair, Metric, MetricFamily};
use prost::Message as _;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs.iter().map(|(n, v)| LabelPair { name: Some(n.to_string()), value: Some(v.to_string()) }).collect()
}

fn counter(pairs: &[(&str, &str)], value: f64) -> Metric {
    Metric { label: labels(pairs), counter: Some(Counter { value: Some(value), ..Default::default() }), ..Default::default() }
}

fn histogram(pairs: &[(&str, &str)], buckets: &[(f64, u64)], sum: f64) -> Metric {
    let h = Histogram {
        sample_count: buckets.last().map(|b| b.1),
        sample_sum: Some(sum),
        bucket: buckets.iter().map(|(b, n)| Bucket { upper_bound: Some(*b), cumulative_count: Some(*n), ..Default::default() }).collect(),
        ..Default::default()
    };
    Metric { label: labels(pairs), histogram: Some(h), ..Default::default() }
}

fn family(name: &str, metric: Vec<Metric>) -> MetricFamily {
    MetricFamily { name: Some(name.into()), metric, ..Default::default() }
}

fn push() -> Vec<MetricFamily> {
    vec![
        family(
            "wasmcustom.mcp_requests_total",
            vec![
                counter(&[("method", "tools/call"), ("server", "time"), ("tool", "time__now"), ("outcome", "ok")], 7.0),
                counter(&[("method", "tools/call"), ("server", "time"), ("tool", "time__now"), ("outcome", "error")], 2.0),
                counter(&[("method", "prompts/get"), ("server", "time"), ("tool", ""), ("outcome", "ok")], 1.0),
                // Refused before any server was named: no server's.
                counter(&[("method", "tools/call"), ("server", ""), ("tool", ""), ("outcome", "error")], 5.0),
            ],
        ),
        // Per server (all its requests), and per tool.
        family(
            "wasmcustom.mcp_request_duration_milliseconds",
            vec![histogram(&[("method", "tools/call"), ("server", "time")], &[(1.0, 4), (5.0, 9), (10.0, 10)], 31.0)],
        ),
        family(
            "wasmcustom.mcp_tool_duration_milliseconds",
            vec![histogram(&[("server", "time"), ("tool", "time__now")], &[(1.0, 3), (5.0, 8), (10.0, 9)], 30.0)],
        ),
        family("cluster.mcp_time.upstream_rq_total", vec![counter(&[], 100.0)]),
    ]
}

#[test]
fn a_push_gives_requests_errors_and_latency_per_server_and_tool() {
    let figures = tool_figures(&push());
    assert_eq!(figures.len(), 2, "{figures:?}");
    let now = &figures[&("time".to_string(), "time__now".to_string())];
    assert_eq!((now.requests, now.errors, now.latency_count), (9, 2, 9));
    assert_eq!(now.mean_ms(), Some(30.0 / 9.0));
    assert_eq!(now.quantile_ms(0.5), Some(5.0));
    assert_eq!(now.quantile_ms(0.95), Some(10.0));
    let server = &figures[&("time".to_string(), String::new())];
    assert_eq!((server.requests, server.errors, server.latency_count, server.mean_ms()), (1, 0, 10, Some(3.1)));
}

#[test]
fn nodes_are_summed_and_a_push_replaces_the_nodes_last() {
    let telemetry = Telemetry::default();
    let (a, b) = (telemetry.stream_opened(), telemetry.stream_opened());
    telemetry.record_figures("envoy-a", a, tool_figures(&push()));
    telemetry.record_figures("envoy-b", b, tool_figures(&push()));
    telemetry.record_figures("envoy-b", b, tool_figures(&push()));
    let (figures, nodes) = telemetry.figures();
    assert_eq!(nodes, ["envoy-a", "envoy-b"]);
    let now = &figures[&("time".to_string(), "time__now".to_string())];
    assert_eq!((now.requests, now.errors, now.latency_count), (18, 4, 18));
    assert_eq!(now.buckets, [(1.0, 6), (5.0, 16), (10.0, 18)]);
}

#[test]
fn a_node_whose_stream_ends_stops_counting_unless_it_reconnected() {
    let telemetry = Telemetry::default();
    let (a, b) = (telemetry.stream_opened(), telemetry.stream_opened());
    telemetry.record_figures("envoy-a", a, tool_figures(&push()));
    telemetry.record_figures("envoy-b", b, tool_figures(&push()));
    telemetry.stream_ended("envoy-a", a);
    assert_eq!(telemetry.figures().1, ["envoy-b"]);

    // envoy-b reconnects before its old stream is seen to end.
    let again = telemetry.stream_opened();
    telemetry.record_figures("envoy-b", again, tool_figures(&push()));
    telemetry.stream_ended("envoy-b", b);
    assert_eq!(telemetry.figures().1, ["envoy-b"]);
    telemetry.stream_ended("envoy-b", again);
    assert!(telemetry.figures().0.is_empty());
}

#[test]
fn cumulative_buckets_of_different_bounds_add_up_without_overcounting() {
    let mut a = Figures { latency_count: 4, buckets: vec![(1.0, 1), (10.0, 4)], ..Figures::default() };
    let b = Figures { latency_count: 2, buckets: vec![(5.0, 1), (10.0, 2)], ..Figures::default() };
    a.add(&b);
    assert_eq!(a.buckets, [(1.0, 1), (5.0, 2), (10.0, 6)]);
    assert_eq!(a.latency_count, 6);
}

#[test]
fn a_quantile_beyond_the_last_bound_is_unbounded() {
    let f = Figures { latency_count: 4, latency_sum_ms: 1.0, buckets: vec![(1.0, 2)], ..Figures::default() };
    assert_eq!(f.quantile_ms(0.95), Some(f64::INFINITY));
    assert_eq!(Figures::default().quantile_ms(0.5), None);
}

fn state(objects: &[(&str, Any)]) -> HttpAccessLogEntry {
    let common = AccessLogCommon {
        filter_state_objects: objects.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<HashMap<_, _>>(),
        start_time: Some(Timestamp { seconds: 1_700_000_000, nanos: 250_000_000 }),
        ..Default::default()
    };
    HttpAccessLogEntry {
        common_properties: Some(common),
        response: Some(HttpResponseProperties { response_code: Some(UInt32Value { value: 403 }), ..Default::default() }),
        ..Default::default()
    }
}

fn bytes(text: &str) -> Any {
    Any { type_url: "type.googleapis.com/google.protobuf.BytesValue".into(), value: BytesValue { value: text.into() }.encode_to_vec() }
}

fn string(text: &str) -> Any {
    Any { type_url: "type.googleapis.com/google.protobuf.StringValue".into(), value: StringValue { value: text.into() }.encode_to_vec() }
}

#[test]
fn a_decision_is_read_from_either_filters_state() {
    for make in [bytes, string] {
        let entry = state(&[
            ("wasm.mcp_decision", make("deny")),
            ("wasm.mcp_principal", make("bob")),
            ("wasm.mcp_method", make("tools/call")),
            ("wasm.mcp_server", make("echo")),
            ("wasm.mcp_target", make("echo__whoami")),
            ("wasm.mcp_reason", make("no rule allows it")),
        ]);
        let got = audit_entry("gateway-1", &entry).expect("a decision");
        assert_eq!(
            got,
            AuditEntry {
                time_ms: 1_700_000_000_250,
                node: "gateway-1".into(),
                principal: "bob".into(),
                method: "tools/call".into(),
                server: "echo".into(),
                target: "echo__whoami".into(),
                decision: "deny".into(),
                reason: "no rule allows it".into(),
                status: 403,
            }
        );
    }
    // No decision: not an audit line. An unknown encoding reads as absent.
    assert_eq!(audit_entry("n", &state(&[("wasm.mcp_method", bytes("tools/call"))])), None);
    let odd = Any { type_url: "type.googleapis.com/foo.Bar".into(), value: vec![1, 2] };
    assert_eq!(audit_entry("n", &state(&[("wasm.mcp_decision", odd)])), None);
}

#[test]
fn the_audit_ring_keeps_the_latest_newest_first() {
    let telemetry = Telemetry::default();
    let entry = |i: i64| AuditEntry {
        time_ms: i,
        node: String::new(),
        principal: String::new(),
        method: String::new(),
        server: String::new(),
        target: String::new(),
        decision: "allow".into(),
        reason: String::new(),
        status: 200,
    };
    for i in 0..(AUDIT_KEPT as i64 + 5) {
        telemetry.record_decision(entry(i));
    }
    let kept = telemetry.decisions();
    assert_eq!(kept.len(), AUDIT_KEPT);
    assert_eq!(kept.first().map(|e| e.time_ms), Some(AUDIT_KEPT as i64 + 4));
    assert_eq!(kept.last().map(|e| e.time_ms), Some(5));
}
