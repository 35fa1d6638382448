use super::*;
use proptest::prelude::*;

/// What `parse` made of `body`, in a form easy to compare.
fn kind(body: &str) -> String {
    match parse(body.as_bytes()) {
        Ok(Message::Request { id, method, params }) => {
            format!("request id={} method={} params={}", id.get(), method, params.map(|p| p.get()).unwrap_or("-"))
        }
        Ok(Message::Notification { method }) => format!("notification {method}"),
        Ok(Message::Response { .. }) => "response".into(),
        Err(e) => format!("error {}", e.code_and_status().0),
    }
}

#[test]
fn classifies_messages() {
    let cases = [
        (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, "request id=1 method=ping params=-"),
        (r#"{"jsonrpc":"2.0","id":"a","method":"tools/list","params":{}}"#, r#"request id="a" method=tools/list params={}"#),
        (r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, "notification notifications/initialized"),
        (r#"{"jsonrpc":"2.0","id":3,"result":{}}"#, "response"),
        (r#"{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"x"}}"#, "response"),
        (r#"{"jsonrpc":"2.0","method":"tools\/list","id":7}"#, "request id=7 method=tools/list params=-"),
        ("", "error -32700"),
        ("   ", "error -32700"),
        ("{", "error -32700"),
        ("nonsense", "error -32700"),
        ("42", "error -32600"),
        (r#""str""#, "error -32600"),
        (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, "error -32600"),
        (r#"{"id":1,"method":"ping"}"#, "error -32600"),
        (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, "error -32600"),
        (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, "error -32600"),
        (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, "error -32600"),
        (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, "error -32600"),
        (r#"{"jsonrpc":"2.0","id":1}"#, "error -32600"),
        (r#"{"jsonrpc":"2.0","id":1,"method":5}"#, "error -32600"),
        (r#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#, "error -32600"),
    ];
    for (body, want) in cases {
        assert_eq!(kind(body), want, "body: {body}");
    }
    let invalid_utf8 = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xff\"}";
    assert!(matches!(parse(invalid_utf8), Err(McpError::Parse(_))));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(kind(&body), "error -32600");
    let nested =
        |n: usize| format!(r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"a":"[[[{{","b":{}{}}}}}"#, "[".repeat(n), "]".repeat(n));
    assert_eq!(kind(&nested(MAX_DEPTH - 2)).split(' ').next(), Some("request"));
    assert_eq!(kind(&nested(MAX_DEPTH - 1)), "error -32600");
}

fn name_of(body: &str) -> Result<(String, String), i32> {
    let b = body.as_bytes();
    match parse(b) {
        Ok(Message::Request { params, .. }) => {
            tool_name(b, params).map(|(n, span)| (n.into_owned(), body[span].to_string())).map_err(|e| e.code_and_status().0)
        }
        other => panic!("not a request: {other:?}"),
    }
}

#[test]
fn finds_the_tool_name_and_its_span() {
    let ok = |body: &str, name: &str, raw: &str| assert_eq!(name_of(body), Ok((name.into(), raw.into())), "{body}");
    ok(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","arguments":{}}}"#, "a__b", r#""a__b""#);
    ok(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"name":"x"}, "name" : "t"}}"#, "t", r#""t""#);
    ok(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\u005fb"}}"#, "a_b", r#""a\u005fb""#);
    let err = |body: &str| assert_eq!(name_of(body), Err(-32602), "{body}");
    err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#);
    err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}"#);
    err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":3}}"#);
    err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#);
}

#[test]
fn splices_and_builds_bodies() {
    assert_eq!(splice(b"0123456789", 2..5, b"xy"), b"01xy56789");
    assert_eq!(splice(b"abc", 3..3, b"d"), b"abcd");
    assert_eq!(
        error_body(Some("7"), -32601, "Method not found: \"x\""),
        br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"Method not found: \"x\""}}"#
    );
    assert_eq!(result_body(r#""a""#, "{}"), br#"{"jsonrpc":"2.0","id":"a","result":{}}"#);
    let v: serde_json::Value = serde_json::from_slice(&error_body(None, -32700, "bad\n\u{0}")).unwrap();
    assert_eq!(v["id"], serde_json::Value::Null);
}

proptest! {
    #[test]
    fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&body);
    }

    #[test]
    fn tool_name_never_panics(name in ".{0,40}", args in "[ -~]{0,64}") {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":{},"arguments":{}}}}}"#, json_string(&name), args);
        if let Ok(Message::Request { params, .. }) = parse(body.as_bytes()) {
            if let Ok((n, span)) = tool_name(body.as_bytes(), params) {
                prop_assert_eq!(n.as_ref(), name.as_str());
                let replaced = splice(body.as_bytes(), span, json_string("other").as_bytes());
                let v: serde_json::Value = serde_json::from_slice(&replaced).unwrap();
                prop_assert_eq!(&v["params"]["name"], "other");
            }
        }
    }

    #[test]
    fn structured_fuzz_never_panics(id in prop_oneof![Just("1".to_string()), Just("null".to_string()), "\"[a-z]{0,5}\"", "-?[0-9]{1,20}"],
                                    method in prop_oneof![Just("tools/call".to_string()), "[a-z/]{0,12}"],
                                    params in prop_oneof![Just("{}".to_string()), Just("[]".to_string()), "\\{\"name\":\"[a-z_]{0,8}\"\\}", "[ -~]{0,30}"]) {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#);
        if let Ok(Message::Request { params, .. }) = parse(body.as_bytes()) {
            let _ = tool_name(body.as_bytes(), params);
        }
    }
}

#[test]
fn reads_uris_and_completion_refs() {
    let req = |params: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{params}}}"#);
    let uri = |params: &str| {
        let body = req(params);
        match parse(body.as_bytes()) {
            Ok(Message::Request { params, .. }) => {
                resource_uri(body.as_bytes(), params).map(|(u, span)| format!("{u} {}", &body[span])).map_err(|e| e.code_and_status().0)
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(uri(r#"{"uri":"demo://a/1"}"#), Ok(r#"demo://a/1 "demo://a/1""#.into()));
    assert_eq!(uri(r#"{"uri":"demo://\u0061"}"#), Ok(r#"demo://a "demo://\u0061""#.into()));
    assert_eq!(uri(r#"{"uri":5}"#), Err(-32602));
    assert_eq!(uri(r#"{}"#), Err(-32602));

    let reference = |params: &str| {
        let body = req(params);
        let b = body.as_bytes();
        match parse(b) {
            Ok(Message::Request { params, .. }) => match completion_ref(b, params) {
                Ok(CompletionRef::Prompt(n, span)) => Ok(format!("prompt {n} {}", &body[span])),
                Ok(CompletionRef::Resource(u, span)) => Ok(format!("resource {u} {}", &body[span])),
                Err(e) => Err(e.code_and_status().0),
            },
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        reference(r#"{"ref":{"type":"ref/prompt","name":"a__p"},"argument":{"name":"x","value":"y"}}"#),
        Ok(r#"prompt a__p "a__p""#.into())
    );
    assert_eq!(reference(r#"{"ref":{"type":"ref/resource","uri":"demo://{id}"}}"#), Ok(r#"resource demo://{id} "demo://{id}""#.into()));
    assert_eq!(reference(r#"{"ref":{"type":"ref/tool","name":"x"}}"#), Err(-32602));
    assert_eq!(reference(r#"{"ref":{"type":"ref/prompt"}}"#), Err(-32602));
    assert_eq!(reference(r#"{"argument":{}}"#), Err(-32602));
}

#[test]
fn errors_echo_a_readable_id() {
    assert_eq!(readable_id(br#"{"id":5,"method":"x"}"#), Some("5"));
    assert_eq!(readable_id(br#"{"id":"a","jsonrpc":"1.0"}"#), Some(r#""a""#));
    assert_eq!(readable_id(br#"{"id":{"x":1}}"#), None);
    assert_eq!(readable_id(b"{bad"), None);
    assert_eq!(readable_id(b"[1]"), None);
}

#[test]
fn a_traceparent_in_meta_is_read_only_when_well_formed() {
    let params = |json: &str| serde_json::from_str::<Box<RawValue>>(json).unwrap();
    let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let p = params(&format!(r#"{{"name":"add","_meta":{{"traceparent":"{good}","progressToken":1}}}}"#));
    assert_eq!(meta_traceparent(Some(&p)).as_deref(), Some(good));
    for bad in [
        r#"{"name":"add"}"#,
        r#"{"_meta":null}"#,
        r#"{"_meta":{"traceparent":7}}"#,
        r#"{"_meta":{"traceparent":"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}}"#,
        r#"{"_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n"}}"#,
        r#"[1,2]"#,
    ] {
        assert_eq!(meta_traceparent(Some(&params(bad))), None, "{bad}");
    }
    assert_eq!(meta_traceparent(None), None);
}
