use super::*;
use crate::gateway::Audit;
use crate::policy::Verdict;

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
        verdict: Some(Verdict { allowed, reason: String::new() }),
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
        ]
    );
}

#[test]
fn only_calls_and_prompts_name_a_tool() {
    let read = Audit { method: "resources/read".into(), server: Some("files".into()), target: Some("file:///etc/passwd".into()), ..Audit::default() };
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
            "mcp_authorization_denials_total.server=.=echo;.;.tool=.=secret;.;",
        ]
    );
    let missing = Tally { method: "unknown", status: 401, code: Some(-32001), auth_failure: Some("missing"), ..Tally::default() };
    assert_eq!(counters(&missing)[2], "mcp_auth_failures_total.reason=.=missing;.;");
    let limited = Tally { status: 429, code: Some(-32029), rate_limit: Some("per;user".into()), ..Tally::from_audit(&call("echo", true)) };
    assert_eq!(limited.outcome(), Outcome::RateLimited);
    assert_eq!(counters(&limited)[2], "mcp_rate_limited_total.limit=.=per_user;.;");
    let failed = Tally { status: 503, ..Tally::from_audit(&call("echo", true)) };
    assert_eq!(failed.outcome(), Outcome::Error);
    let opened = Tally { method: "initialize", status: 200, session_opened: true, ..Tally::default() };
    assert_eq!(counters(&opened), vec!["mcp_requests_total.method=.=initialize;.;.server=.=;.;.tool=.=;.;.outcome=.=ok;.;", "mcp_sessions_opened_total"]);
}

#[test]
fn the_access_log_record_is_one_json_object() {
    let t = Tally { status: 200, principal: Some("al\"ice".into()), era: Some("2025-11-25".into()), ..Tally::from_audit(&call("echo.v2", true)) };
    let v: serde_json::Value = serde_json::from_str(&log_record(&t)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"method": "tools/call", "server": "echo", "tool": "echo.v2", "id": 1, "code": null, "outcome": "ok", "principal": "al\"ice", "era": "2025-11-25"})
    );
    let refused = Tally { method: "unknown", status: 401, code: Some(-32001), id: Some("not json".into()), ..Tally::default() };
    let v: serde_json::Value = serde_json::from_str(&log_record(&refused)).unwrap();
    assert_eq!(v, serde_json::json!({"method": "unknown", "server": null, "tool": null, "id": null, "code": -32001, "outcome": "unauthenticated", "principal": null, "era": null}));
}
