use super::*;

#[test]
fn ids_round_trip_through_the_client() {
    for raw in ["0", "42", "-7", r#""abc""#, r#""with \"quotes\" and :colons:""#] {
        let relayed = client_id("everything", raw);
        assert_eq!(upstream_id(&relayed), Some(("everything".to_string(), raw.to_string())), "{raw}");
    }
}

#[test]
fn foreign_ids_are_not_relayed_ids() {
    for raw in [
        "1",
        r#""1""#,
        r#""mcpgw:""#,
        r#""mcpgw::1""#,
        r#""mcpgw:x:""#,
        r#""mcpgw:x:1.5""#,
        r#""mcpgw:x:{}""#,
        r#""mcpgw:x: 1""#,
        r#""mcpgw:x:null""#,
    ] {
        assert_eq!(upstream_id(raw), None, "{raw}");
    }
}

#[test]
fn only_requests_change_on_the_way_out() {
    let req = r#"{"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{"id":3}}"#;
    assert_eq!(
        outbound("a", req).as_deref(),
        Some(r#"{"jsonrpc":"2.0","id":"mcpgw:a:3","method":"sampling/createMessage","params":{"id":3}}"#)
    );
    assert_eq!(outbound("a", r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#), None);
    assert_eq!(outbound("a", r#"{"jsonrpc":"2.0","id":3,"result":{}}"#), None);
    assert_eq!(outbound("a", "not json"), None);
}

#[test]
fn answers_go_back_with_the_upstream_id() {
    let text = r#"{"jsonrpc":"2.0","id":"mcpgw:everything:\"s-1\"","result":{"roots":[]}}"#;
    let Ok(jsonrpc::Message::Response { id: Some(id) }) = jsonrpc::parse(text.as_bytes()) else { panic!("not a response") };
    let (server, back) = inbound(text.as_bytes(), id.get()).unwrap_or_default();
    assert_eq!(server, "everything");
    assert_eq!(String::from_utf8_lossy(&back), r#"{"jsonrpc":"2.0","id":"s-1","result":{"roots":[]}}"#);
}

const REQ: &str = r#"{"jsonrpc":"2.0","id":0,"method":"roots/list"}"#;
const OUT: &str = r#"{"jsonrpc":"2.0","id":"mcpgw:s:0","method":"roots/list"}"#;

#[test]
fn a_stream_is_rewritten_event_by_event() {
    let mut relay = SseRelay::new("s");
    let progress = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
    assert_eq!(relay.feed(progress.as_bytes(), false), progress.as_bytes());
    let request = format!("id: 7\r\nevent: message\r\ndata: {REQ}\r\n\r\n");
    let out = String::from_utf8(relay.feed(request.as_bytes(), false)).unwrap_or_default();
    assert_eq!(out, format!("id: p~s~7\nevent: message\ndata: {OUT}\n\n"));
    let answer = "id: 8\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
    assert_eq!(String::from_utf8_lossy(&relay.feed(answer.as_bytes(), false)), answer.replace("id: 8", "id: p~s~8"), "every id is tagged");
    assert_eq!(relay.feed(b"", true), b"");
}

#[test]
fn a_split_event_waits_for_its_end() {
    let whole = format!(": keepalive\n\ndata: {REQ}\n\ndata: {{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{}}}}\n\n");
    let expected = whole.replace(REQ, OUT);
    // Every way of cutting the stream in two gives the same output.
    for cut in 0..=whole.len() {
        let mut relay = SseRelay::new("s");
        let mut out = relay.feed(&whole.as_bytes()[..cut], false);
        out.extend(relay.feed(&whole.as_bytes()[cut..], false));
        out.extend(relay.feed(b"", true));
        assert_eq!(String::from_utf8_lossy(&out), expected, "cut at {cut}");
    }
}

#[test]
fn a_request_with_an_escaped_method_key_is_relayed_however_it_is_cut() {
    // `"metho\u0064"` is `"method"`. Fed alone, the event was let through
    // unexamined, but rewritten when a chunk also held an `id:` line.
    let escaped = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"metho\\u0064\":\"roots/list\"}\n\n";
    let expected = "data: {\"jsonrpc\":\"2.0\",\"id\":\"mcpgw:s:1\",\"metho\\u0064\":\"roots/list\"}\n\n";
    let tagged = "id: 5\ndata: {}\n\n";
    let mut whole = SseRelay::new("s");
    assert_eq!(
        String::from_utf8_lossy(&whole.feed(format!("{escaped}{tagged}").as_bytes(), true)),
        format!("{expected}id: p~s~5\ndata: {{}}\n\n")
    );
    let mut cut = SseRelay::new("s");
    assert_eq!(String::from_utf8_lossy(&cut.feed(escaped.as_bytes(), false)), expected);
}

#[test]
fn a_crlf_split_between_chunks_does_not_end_an_event_early() {
    let mut relay = SseRelay::new("s");
    let a = relay.feed(b"data: {\"jsonrpc\":\"2.0\",\"id\":0,\r", false);
    assert!(a.is_empty());
    let b = relay.feed(b"\ndata: \"method\":\"ping\"}\r\n\r\n", false);
    assert_eq!(String::from_utf8_lossy(&b), "data: {\"jsonrpc\":\"2.0\",\"id\":\"mcpgw:s:0\",\ndata: \"method\":\"ping\"}\n\n");
}

#[test]
fn a_stream_cut_short_goes_on_as_it_came() {
    let mut relay = SseRelay::new("s");
    let partial = format!("data: {REQ}");
    assert!(relay.feed(partial.as_bytes(), false).is_empty());
    assert_eq!(relay.feed(b"", true), partial.as_bytes());
}

#[test]
fn judged_messages_can_be_dropped() {
    let mut events = SseEvents::default();
    let stream = format!("data: {REQ}\n\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}}\n\n");
    let mut seen = Vec::new();
    let out = events.feed(stream.as_bytes(), false, |m| {
        seen.push(m.to_string());
        if m.contains("roots/list") {
            Verdict::Drop
        } else {
            Verdict::Keep
        }
    });
    assert_eq!(seen.len(), 2);
    assert_eq!(String::from_utf8_lossy(&out), "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n");
}

#[test]
fn last_event_ids_say_what_to_resume() {
    assert_eq!(resumption("p~everything~abc-1"), Some(Resumption::Call { server: "everything".into(), last_event_id: "abc-1".into() }));
    assert_eq!(resumption("g~a~x~y"), Some(Resumption::Stream { server: "a".into(), last_event_id: "x~y".into() }));
    for bad in ["", "abc", "p~x", "p~~1", "p~x~", "q~x~1"] {
        assert_eq!(resumption(bad), None, "{bad}");
    }
}

#[test]
fn a_streamed_answer_says_whether_it_is_an_error() {
    let progress = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n";
    let error = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32602,\"message\":\"bad\"}}\n\n";
    let result = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n";
    let mut relay = SseRelay::new("s");
    relay.feed(progress.as_bytes(), false);
    assert_eq!(relay.error_code(), None, "no answer yet");
    // Cut anywhere: the answer counts once its event is whole.
    let (a, b) = error.split_at(30);
    relay.feed(a.as_bytes(), false);
    assert_eq!(relay.error_code(), None);
    relay.feed(b.as_bytes(), true);
    assert_eq!(relay.error_code(), Some(-32602));

    let mut ok = SseRelay::new("s");
    ok.feed(format!("{progress}{result}").as_bytes(), true);
    assert_eq!(ok.error_code(), None);
    // A result holding an error object is not an error.
    let mut nested = SseRelay::new("s");
    nested.feed(b"data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"error\":{\"code\":1}}}\n\n", true);
    assert_eq!(nested.error_code(), None);
}

#[test]
fn an_event_over_the_bound_ends_the_answer_with_an_error_for_the_request() {
    let progress = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
    // However the stream is cut, the events before the long one go out,
    // then the error for request 7, then nothing.
    let long = format!("data: {}", "x".repeat(200));
    let stream = format!("{progress}{long}\n\n{progress}");
    for chunk in [1, 7, 64, stream.len()] {
        let mut relay = SseRelay::answering("s", Some("7"), 100);
        let mut out = Vec::new();
        for piece in stream.as_bytes().chunks(chunk) {
            out.extend(relay.feed(piece, false));
        }
        out.extend(relay.feed(b"more from the upstream\n\n", true));
        let text = String::from_utf8_lossy(&out);
        let (before, error) = text.split_once("event: message\ndata: ").unwrap_or_default();
        assert_eq!(before, progress, "chunks of {chunk}");
        assert!(error.starts_with(r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"Upstream server 's' sent an SSE event longer than the gateway's limit of 100 bytes"#), "{error}");
        assert!(error.ends_with("}}\n\n") && relay.cut_short() && relay.error_code() == Some(-32603));
    }
    // An event as long as the bound passes.
    let fits = format!("data: {}\n\n", "y".repeat(92));
    assert_eq!(fits.len(), 100);
    let mut relay = SseRelay::answering("s", None, 100);
    assert_eq!(relay.feed(fits.as_bytes(), false), fits.as_bytes());
    assert!(!relay.cut_short());
}

#[test]
fn an_event_that_never_ends_is_read_once_not_at_every_chunk() {
    // Each byte is looked at once: the scan resumes where it stopped.
    let mut scan = crate::sse::Scan::default();
    let mut buf = Vec::new();
    for _ in 0..1000 {
        buf.extend_from_slice(b"data: xxxxxxxx");
        assert_eq!(scan.advance(&buf, usize::MAX), (None, None));
    }
    buf.extend_from_slice(b"\r");
    assert_eq!(scan.advance(&buf, usize::MAX), (None, None), "a CR may be half of a CRLF");
    buf.extend_from_slice(b"\n\r\n");
    assert_eq!(scan.advance(&buf, usize::MAX), (Some(buf.len()), None));
    scan.consumed(buf.len());
    assert_eq!(scan.advance(b"\n", 0), (Some(1), Some(0)), "a blank line is an event of one byte");
}
