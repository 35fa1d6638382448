use base64::Engine as _;
use serde_json::{json, Value};

use super::*;
use crate::config::UpstreamHeader;
use crate::config::{ControlPlane, ServerEra};
use crate::decision::Audit;
use crate::fixtures::{config, control_plane};

const NOW: Now = Now { unix_secs: 1_000, entropy: 7 };

/// A caller's JWT as Envoy hands it on: the token, and its verified payload.
fn caller(sub: &str, exp: u64) -> RequestHead {
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!({"sub": sub, "exp": exp}).to_string());
    RequestHead {
        method: "POST".into(),
        path: "/mcp".into(),
        credential: Some(format!("eyJhbGciOiJIUzI1NiJ9.{payload}.c2ln")),
        jwt_payload: Some(payload),
        ..Default::default()
    }
}

fn gateway() -> Gateway {
    let mut c = config();
    c.servers[0].token_exchange = true;
    c.servers[0].era = ServerEra::Both;
    let headers = vec![UpstreamHeader { name: INTERNAL_HEADER.into(), value: "internal-secret".into() }];
    c.control_plane = Some(ControlPlane { headers, ..control_plane() });
    Gateway::new(c).unwrap()
}

fn forward(server: usize) -> Forward {
    Forward {
        request_id: "9".into(),
        server,
        upstream_session: None,
        upstream_version: None,
        body: None,
        mcp_name: None,
        bridge: false,
        mcp_method: None,
        open_first: false,
        upstream_authorization: None,
    }
}

fn answer(status: u16, body: Value) -> CalloutResponse {
    CalloutResponse {
        status,
        session_id: None,
        content_type: Some("application/json".into()),
        body: body.to_string().into_bytes(),
        oversized: false,
    }
}

fn error_message(r: &Reply) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["code"], -32603, "{v}");
    v["error"]["message"].as_str().unwrap().to_string()
}

#[test]
fn a_server_that_takes_no_caller_token_is_left_alone() {
    let gw = gateway();
    assert_eq!(gw.upstream_token(&caller("alice", 5_000), forward(1), NOW), Ok(TokenStep::Ready(forward(1))));
}

#[test]
fn the_caller_jwt_is_exchanged_once_then_its_token_is_kept() {
    let gw = gateway();
    let alice = caller("alice", 5_000);
    let TokenStep::Exchange(f, callout) = gw.upstream_token(&alice, forward(0), NOW).unwrap() else { panic!("no exchange") };
    assert_eq!(callout.cluster, "gateway_admin");
    let header = |name: &str| callout.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
    assert_eq!(header(":path"), Some("/mcp-exchange/a"));
    assert_eq!(header("authorization"), Some(format!("Bearer {}", alice.credential.as_deref().unwrap())).as_deref());
    assert!(header(INTERNAL_HEADER).is_some(), "the control plane admits only the filter");

    let sent =
        gw.upstream_token_exchanged(&alice, f, Some(&answer(200, json!({"access_token": "up-alice", "expires_in": 300}))), NOW).unwrap();
    assert_eq!(sent.upstream_authorization.as_deref(), Some("Bearer up-alice"));
    // The next request of the same token needs no exchange.
    let again = gw.upstream_token(&alice, forward(0), Now { unix_secs: 1_100, ..NOW }).unwrap();
    assert_eq!(again, TokenStep::Ready(Forward { upstream_authorization: Some("Bearer up-alice".into()), ..forward(0) }));
    // Another caller's token never finds alice's.
    assert!(matches!(gw.upstream_token(&caller("bob", 5_000), forward(0), NOW).unwrap(), TokenStep::Exchange(..)));
    // Nor does alice's after its time (300 s less the margin).
    assert!(matches!(gw.upstream_token(&alice, forward(0), Now { unix_secs: 1_296, ..NOW }).unwrap(), TokenStep::Exchange(..)));
}

#[test]
fn a_kept_token_does_not_outlive_the_callers_own() {
    let gw = gateway();
    let short = caller("alice", 1_010);
    let TokenStep::Exchange(f, _) = gw.upstream_token(&short, forward(0), NOW).unwrap() else { panic!() };
    gw.upstream_token_exchanged(&short, f, Some(&answer(200, json!({"access_token": "t", "expires_in": 3600}))), NOW).unwrap();
    assert!(matches!(gw.upstream_token(&short, forward(0), Now { unix_secs: 1_009, ..NOW }).unwrap(), TokenStep::Ready(_)));
    assert!(matches!(gw.upstream_token(&short, forward(0), Now { unix_secs: 1_010, ..NOW }).unwrap(), TokenStep::Exchange(..)));
}

#[test]
fn callers_without_a_jwt_and_failed_exchanges_get_errors_naming_the_server() {
    let gw = gateway();
    let key = RequestHead { credential: Some("an-api-key-0123456789".into()), ..Default::default() };
    let refused = gw.upstream_token(&key, forward(0), NOW).unwrap_err();
    let message = error_message(&refused);
    assert!(message.contains("'a'") && message.contains("no verified JWT"), "{message}");

    let bridged = gw.upstream_token(&caller("alice", 5_000), Forward { bridge: true, ..forward(0) }, NOW).unwrap_err();
    assert!(error_message(&bridged).contains("does not yet bridge"));

    let alice = caller("alice", 5_000);
    let said = json!({"error": "token endpoint https://as/token refused the exchange (HTTP 400): invalid_grant: subject_token expired"});
    for (response, expected) in [
        (Some(answer(502, said)), "invalid_grant"),
        (None, "did not answer"),
        (Some(answer(200, json!({"access_token": "bad token", "expires_in": 60}))), "header cannot carry"),
        (Some(answer(500, json!("oops"))), "HTTP 500"),
    ] {
        let TokenStep::Exchange(f, _) = gw.upstream_token(&alice, forward(0), NOW).unwrap() else { panic!() };
        let reply = gw.upstream_token_exchanged(&alice, f, response.as_ref(), NOW).unwrap_err();
        assert!(error_message(&reply).contains(expected), "{expected}: {}", error_message(&reply));
    }
}

#[test]
fn the_exchanged_token_replaces_the_callers_on_the_request_and_the_filters_own_calls() {
    let gw = gateway();
    let alice = caller("alice", 5_000);
    let f = Forward { upstream_authorization: Some("Bearer up-alice".into()), ..forward(0) };
    let edits = gw.forward_edits(&alice, &f, &Audit::default()).unwrap();
    assert!(edits.drop.iter().any(|h| h == "authorization"), "the caller's token is dropped");
    assert!(edits.set.iter().any(|(n, v)| n == "authorization" && v == "Bearer up-alice"));
    assert!(!edits.set.iter().any(|(_, v)| v.contains(alice.credential.as_deref().unwrap())));
}

#[test]
fn the_cache_is_bounded() {
    let cache = ExchangeCache::default();
    for i in 0..(CAPACITY + 50) {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        cache.put((key, 0), format!("Bearer {i}"), 2_000 + i as u64, 1_000);
    }
    assert_eq!(cache.len(), CAPACITY);
    let mut newest = [0u8; 32];
    newest[..8].copy_from_slice(&((CAPACITY + 49) as u64).to_le_bytes());
    assert!(cache.get(&(newest, 0), 1_000).is_some(), "what expires first goes first");
}
