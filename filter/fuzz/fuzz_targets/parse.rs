//! A client's body: the JSON-RPC envelope and every extractor the gateway
//! runs on what parsed, plus the id relaying that reads the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_filter::headers::{decode_header_value, encode_header_value};
use mcp_filter::jsonrpc::{self, CompletionRef, Message};
use mcp_filter::relay;

fuzz_target!(|body: &[u8]| {
    let _ = jsonrpc::readable_id(body);
    match jsonrpc::parse(body) {
        Ok(Message::Request { id, params, .. }) => {
            assert!(jsonrpc::is_valid_id(id));
            if let Ok((name, span)) = jsonrpc::tool_name(body, params) {
                check_span(body, span, &name);
            }
            if let Ok((uri, span)) = jsonrpc::resource_uri(body, params) {
                check_span(body, span, &uri);
            }
            match jsonrpc::completion_ref(body, params) {
                Ok(CompletionRef::Prompt(name, span) | CompletionRef::Resource(name, span)) => check_span(body, span, &name),
                Err(_) => {}
            }
        }
        Ok(Message::Response { id: Some(id) }) => {
            if let Some((_, upstream_body)) = relay::inbound(body, id.get()) {
                assert!(jsonrpc::parse(&upstream_body).is_ok(), "a relayed answer must still parse");
            }
        }
        Ok(_) | Err(_) => {}
    }
    if let Ok(text) = std::str::from_utf8(body) {
        // What an upstream sends goes to the client with a relayed id, which
        // must lead back to the same server.
        if let Some(out) = relay::outbound("srv", text) {
            if let Ok(Message::Request { id, .. }) = jsonrpc::parse(out.as_bytes()) {
                assert_eq!(relay::upstream_id(id.get()).map(|(s, _)| s).as_deref(), Some("srv"));
            }
        }
        // Mcp-Name carries names in a header: the encoding must round-trip.
        assert_eq!(decode_header_value(&encode_header_value(text)).as_deref(), Some(text));
        let _ = decode_header_value(text);
    }
});

/// A name's span is its JSON string token, and replacing it keeps the body valid.
fn check_span(body: &[u8], span: std::ops::Range<usize>, name: &str) {
    let token = body.get(span.clone()).expect("span inside the body");
    assert_eq!(serde_json::from_slice::<String>(token).ok().as_deref(), Some(name));
    let renamed = jsonrpc::splice(body, span, jsonrpc::json_string("renamed").as_bytes());
    assert!(jsonrpc::parse(&renamed).is_ok(), "renaming must keep the message valid");
}
