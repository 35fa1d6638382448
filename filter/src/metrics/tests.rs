use super::*;
use crate::decision::{Audit, AuthFailure};
use crate::policy::Ruling;

#[test]
fn the_peek_holds_the_code_of_the_errors_clients_and_servers_write() {
    // The Python and TypeScript SDKs write `code` first; a 36-character
    // UUID id and a long message leave it well inside the peek.
    let long = "x".repeat(10_000);
    for answer in [
        format!(r#"{{"jsonrpc":"2.0","id":"0f8fad5b-d9cb-469f-a165-70867728950e","error":{{"code":-32602,"message":"{long}"}}}}"#),
        format!(r#"{{"id":123456789,"jsonrpc":"2.0","error":{{"code":-32603,"message":"{long}","data":null}}}}"#),
    ] {
        let peek = &answer.as_bytes()[..PEEK_BYTES];
        assert!(error_code(peek).is_some(), "{}", &answer[..80]);
    }
}

#[test]
fn error_codes_are_read_from_the_first_bytes() {
    assert_eq!(error_code(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool: x"}}"#), Some(-32602));
    // Cut anywhere after the code.
    assert_eq!(error_code(br#"{"jsonrpc":"2.0","id":"a","error":{"code":-32000,"message":"Server 'ev"#), Some(-32000));
    assert_eq!(error_code(br#"{"error":{"message":"first","code":7},"id":null,"jsonrpc":"2.0"}"#), Some(7));
    // A result, even one cut short or one that mentions errors.
    assert_eq!(error_code(br#"{"jsonrpc":"2.0","id":"error","result":{"content":[{"type":"text","text":"\"error\":{\"code\":1"#), None);
    assert_eq!(error_code(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#), None);
    // Not an answer the gateway can read: no code, not a guess.
    for bad in [&b""[..], b"[]", b"{\"error\":{\"code\":\"x\"}}", b"{\"error\":{\"co", b"not json", b"{\"error\":{\"code\":1.5}}"] {
        assert_eq!(error_code(bad), None, "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn methods_are_bounded() {
    assert_eq!(method_label("tools/call"), "tools/call");
    assert_eq!(method_label("tools/cal"), "other");
    assert_eq!(method_label("a.b;c"), "other");
    assert_eq!(method_label(""), "unknown");
}

fn call(tool: &str, allowed: bool) -> Audit {
    Audit {
        method: "tools/call".into(),
        id: Some("1".into()),
        server: Some("echo".into()),
        target: Some(tool.into()),
        ruling: Some(Ruling { allowed, reason: String::new() }),
        traceparent: None,
    }
}

#[test]
fn a_call_counts_once_with_its_labels_and_its_time() {
    let t = Tally { status: 200, ..Tally::from_audit(&call("echo.v2", true)) };
    assert_eq!(
        updates(&t, 12),
        vec![
            Update::Count("mcp_requests_total.method=.=tools/call;.;.server=.=echo;.;.tool=.=echo.v2;.;.outcome=.=ok;.;".into()),
            Update::Record("mcp_request_duration_milliseconds.method=.=tools/call;.;.server=.=echo;.;".into(), 12),
            Update::Record("mcp_tool_duration_milliseconds.server=.=echo;.;.tool=.=echo.v2;.;".into(), 12),
        ]
    );
    // A request naming no tool has no per-tool time.
    let list = Tally { method: "tools/list", server: "echo".into(), status: 200, ..Tally::default() };
    assert!(!updates(&list, 3).iter().any(|u| matches!(u, Update::Record(n, _) if n.starts_with("mcp_tool_duration"))));
}

#[test]
fn only_calls_and_prompts_name_a_tool() {
    let read = Audit {
        method: "resources/read".into(),
        server: Some("files".into()),
        target: Some("file:///etc/passwd".into()),
        ..Audit::default()
    };
    let t = Tally::from_audit(&read);
    assert_eq!((t.method, t.server.as_str(), t.tool.as_str()), ("resources/read", "files", ""));
}

#[test]
fn refusals_are_counted_by_kind() {
    let counters = |t: &Tally| -> Vec<String> {
        updates(t, 0).into_iter().filter_map(|u| if let Update::Count(n) = u { Some(n) } else { None }).collect()
    };
    let denied = Tally { status: 200, code: Some(-32602), ..Tally::from_audit(&call("secret", false)) };
    assert_eq!(denied.outcome(), Outcome::Denied);
    assert_eq!(
        counters(&denied),
        vec![
            "mcp_requests_total.method=.=tools/call;.;.server=.=echo;.;.tool=.=secret;.;.outcome=.=denied;.;",
            "mcp_jsonrpc_errors_total.method=.=tools/call;.;.code=.=-32602;.;",
            "mcp_errors_total",
            "mcp_authorization_denials_total.server=.=echo;.;.tool=.=secret;.;",
        ]
    );
    let missing =
        Tally { method: "unknown", status: 401, code: Some(-32001), auth_failure: Some(AuthFailure::Missing), ..Tally::default() };
    assert_eq!(counters(&missing)[3], "mcp_auth_failures_total.reason=.=missing;.;");
    let limited = Tally { status: 429, code: Some(-32029), rate_limit: Some("per;user".into()), ..Tally::from_audit(&call("echo", true)) };
    assert_eq!(limited.outcome(), Outcome::RateLimited);
    assert_eq!(counters(&limited)[3], "mcp_rate_limited_total.limit=.=per_user;.;");
    let failed = Tally { status: 503, ..Tally::from_audit(&call("echo", true)) };
    assert_eq!(failed.outcome(), Outcome::Error);
    let opened = Tally { method: "initialize", status: 200, session_opened: true, ..Tally::default() };
    assert_eq!(
        counters(&opened),
        vec!["mcp_requests_total.method=.=initialize;.;.server=.=;.;.tool=.=;.;.outcome=.=ok;.;", "mcp_sessions_opened_total"]
    );
}

#[test]
fn the_access_log_record_is_one_json_object() {
    let t = Tally {
        status: 200,
        principal: Some("al\"ice".into()),
        era: Some("2025-11-25".into()),
        ..Tally::from_audit(&call("echo.v2", true))
    };
    let v: serde_json::Value = serde_json::from_str(&log_record(&t)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"method": "tools/call", "server": "echo", "tool": "echo.v2", "id": 1, "code": null, "outcome": "ok", "principal": "al\"ice", "era": "2025-11-25", "request_id": null, "http_method": null})
    );
    let refused = Tally {
        method: "unknown",
        status: 401,
        code: Some(-32001),
        id: Some("not json".into()),
        request_id: Some("r-1".into()),
        http_method: Some("G\"ET".into()),
        ..Tally::default()
    };
    let v: serde_json::Value = serde_json::from_str(&log_record(&refused)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"method": "unknown", "server": null, "tool": null, "id": null, "code": -32001, "outcome": "unauthenticated", "principal": null, "era": null, "request_id": "r-1", "http_method": "G\"ET"})
    );
}

#[test]
fn labels_are_read_back_from_stat_names() {
    let name = "wasmcustom.mcp_requests_total.method=.=tools/call;.;.server=.=echo;.;.tool=.=get.sum;.;.outcome=.=ok;.;";
    assert_eq!(label_of(name, "tool"), Some("get.sum"));
    assert_eq!(label_of(name, "server"), Some("echo"));
    assert_eq!(label_of(name, "code"), None);
    assert_eq!(label_of("wasmcustom.mcp_x.server=.=cut", "server"), None);
}

#[test]
fn labels_are_read_back_from_the_native_modules_tagged_names() {
    // Envoy joins a labelled family's tags to its name: `.<label>.<value>`.
    let name = "wasmcustom.mcp_requests_total.method.tools/call.server.echo.tool.echo__get.sum.outcome.ok";
    assert_eq!(label_of(name, "method"), Some("tools/call"));
    assert_eq!(label_of(name, "server"), Some("echo"));
    assert_eq!(label_of(name, "tool"), Some("echo__get.sum"));
    assert_eq!(label_of(name, "outcome"), Some("ok"));
    assert_eq!(label_of(name, "code"), None);
    let blank = "wasmcustom.mcp_requests_total.method.initialize.server..tool..outcome.ok";
    assert_eq!((label_of(blank, "server"), label_of(blank, "tool")), (Some(""), Some("")));
    let histogram = "wasmcustom.mcp_request_duration_milliseconds.method.tools/call.server.echo";
    assert_eq!(label_of(histogram, "server"), Some("echo"));
}

#[test]
fn the_stats_summary_joins_envoys_counts_and_the_servers_states() {
    // Envoy's /stats?format=json, as Envoy 1.40 prints it (abridged).
    let q = |v: f64| format!(r#"{{"cumulative":{v},"interval":{v}}}"#);
    let values = |vs: [f64; 10]| vs.iter().map(|v| q(*v)).collect::<Vec<_>>().join(",");
    let envoy = format!(
        r#"{{"stats":[
        {{"name":"wasmcustom.mcp_requests_total.method=.=initialize;.;.server=.=;.;.tool=.=;.;.outcome=.=ok;.;","value":2}},
        {{"name":"wasmcustom.mcp_requests_total.method=.=tools/call;.;.server=.=echo;.;.tool=.=echo__add;.;.outcome=.=ok;.;","value":3}},
        {{"name":"wasmcustom.mcp_requests_total.method=.=tools/call;.;.server=.=echo;.;.tool=.=echo__add;.;.outcome=.=error;.;","value":1}},
        {{"name":"wasmcustom.mcp_requests_total.method=.=tools/call;.;.server=.=;.;.tool=.=;.;.outcome=.=error;.;","value":4}},
        {{"histograms":{{"supported_quantiles":[0,25,50,75,90,95,99,99.5,99.9,100],"computed_quantiles":[
          {{"name":"wasmcustom.mcp_request_duration_milliseconds.method=.=tools/call;.;.server=.=echo;.;","values":[{}]}},
          {{"name":"wasmcustom.mcp_request_duration_milliseconds.method=.=tools/list;.;.server=.=echo;.;","values":[{}]}}]}}}}]}}"#,
        values([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 9.5, 9.7, 9.9, 10.5]),
        values([7.0; 10]),
    );
    let servers = br#"{"version":"v7","last_error":null,"servers":[{"name":"echo","state":"ready","tools":3},{"name":"idle","state":"unreachable","tools":0}]}"#;
    let got: serde_json::Value = serde_json::from_str(&stats_summary(envoy.as_bytes(), Some(servers)).unwrap()).unwrap();
    assert_eq!(
        got,
        serde_json::json!({
            "version": "v7", "control_plane": "up", "requests": 10, "errors": 5,
            "servers": {
                "echo": {"state": "ready", "tools": 3, "requests": 4, "errors": 1, "latency_ms": {"p50": 2.5, "p95": 5.5, "p99": 9.5}},
                "idle": {"state": "unreachable", "tools": 0, "requests": 0, "errors": 0, "latency_ms": null},
            }
        })
    );
    let alone: serde_json::Value = serde_json::from_str(&stats_summary(envoy.as_bytes(), None).unwrap()).unwrap();
    assert_eq!((alone["control_plane"].as_str(), alone["servers"]["echo"]["state"].is_null()), (Some("unreachable"), true));
    assert_eq!(stats_summary(b"<html>", Some(servers)), None);
}

#[test]
fn span_names_follow_the_mcp_conventions_and_drop_queries() {
    assert_eq!(span_name("tools/call", Some("echo__add")), "tools/call echo__add");
    assert_eq!(span_name("tools/list", None), "tools/list");
    assert_eq!(span_name("tools/list", Some("")), "tools/list");
    assert_eq!(http_span_name("GET", "/health?token=secret"), "GET /health");
    assert_eq!(http_span_name("POST", "/mcp"), "POST /mcp");
}
