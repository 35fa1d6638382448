//! A whole request through a fixed gateway: headers (`on_headers`), then
//! the body (`decide`), then the rate-limit buckets, as the glue calls them.
//!
//! Input: 9 selector bytes, four NUL-terminated strings (a session id, a
//! credential, a JWT payload, a header value), then the body. Selectors pick
//! fixtures (a valid session id, a known API key, a good JWT, a client
//! certificate's name) that the
//! fuzzer could not forge, or the free-form strings.
#![no_main]

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use mcp_filter::config::CLUSTER_HEADER;
use mcp_filter::decision::{BodyAction, CalloutResponse, HeadAction, HeaderEdits, NoneOpened, Now, RequestHead};
use mcp_filter::gateway::{scrape_reply, Gateway};
use mcp_filter::metrics::{self, Tally};
use mcp_filter::ratelimit;
use mcp_filter::session::{principal_digest, Sealer, SessionState, UpstreamSession};
use mcp_filter_fuzz::{pick, stateful_config, stateless_config, Fields, API_KEYS};

const NOW: u64 = 1_000_000;

struct Fixture {
    gateways: [Gateway; 2],
    /// Session ids the gateways issued: fresh, with a failed upstream,
    /// expired, and of no caller.
    sessions: Vec<String>,
    /// A JWT payload with the required scope, and one without.
    jwts: [String; 2],
}

// Built once: a gateway's tables are compiled per configuration, not per
// request. Thread-local because a Gateway is not Sync (nor need it be).
thread_local! {
    static FIXTURE: Fixture = fixture();
}

fn fixture() -> Fixture {
    let stateful = stateful_config();
    let sealer = Sealer::new(&stateful.session).expect("fixture session keys");
    let upstream = |id: Option<&str>, error: Option<&str>| UpstreamSession {
        id: id.map(str::to_string),
        version: Some("2025-06-18".into()),
        error: error.map(str::to_string),
    };
    let state = |issued_at, upstreams: &[(&str, UpstreamSession)], principal: Option<&str>| SessionState {
        issued_at,
        entropy: 7,
        version: "2025-06-18".into(),
        upstreams: upstreams.iter().cloned().map(|(n, u)| (n.to_string(), u)).collect::<BTreeMap<_, _>>(),
        principal: principal.map(principal_digest),
        capabilities: Some(r#"{"roots":{}}"#.into()),
    };
    let good = [("a", upstream(Some("sid-a"), None)), ("b", upstream(None, None)), ("m", upstream(Some("sid-m"), None))];
    // Alice's (an API key), carol's (a JWT), and one of no caller.
    let sessions = vec![
        sealer.seal(&state(NOW, &good, Some("alice"))),
        sealer.seal(&state(NOW, &[("a", upstream(None, Some("connect failed"))), ("b", upstream(Some("sid-b"), None))], Some("carol"))),
        sealer.seal(&state(1, &good, Some("alice"))),
        sealer.seal(&state(NOW, &good, None)),
    ];
    let jwt = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    Fixture {
        gateways: [Gateway::new(stateful).expect("stateful fixture"), Gateway::new(stateless_config()).expect("stateless fixture")],
        sessions,
        jwts: [
            jwt(serde_json::json!({"sub": "carol", "roles": ["dev"], "scope": "mcp other"})),
            jwt(serde_json::json!({"sub": "dave", "roles": "ops dev", "scp": ["x"]})),
        ],
    }
}

fuzz_target!(|data: &[u8]| FIXTURE.with(|f| run(f, data)));

fn run(f: &Fixture, data: &[u8]) {
    let mut input = Fields::new(data);
    let sel: [u8; 9] = std::array::from_fn(|_| input.byte());
    let (session, credential, jwt, header) = (input.string(), input.string(), input.string(), input.string());
    let body = input.rest();

    let gw = &f.gateways[usize::from(sel[0] & 1)];
    let s = |i: usize| f.sessions.get(i).map(String::as_str);
    let mut head = RequestHead {
        method: ["POST", "POST", "POST", "GET", "DELETE", "PUT"][usize::from(sel[0] >> 1) % 6].into(),
        path: pick(
            sel[0] >> 4,
            &[
                Some("/mcp"),
                Some("/mcp"),
                Some("/mcp?x=1"),
                Some("/.well-known/oauth-protected-resource/mcp"),
                Some("/health"),
                Some("/stats"),
            ],
            &header,
        )
        .unwrap_or_default(),
        content_type: pick(sel[1] & 3, &[Some("application/json"), Some("application/json; charset=utf-8"), None], &header),
        accept: pick(sel[1] >> 2 & 3, &[Some("application/json, text/event-stream"), Some("*/*"), None], &header),
        session_id: pick(sel[2], &[None, s(0), s(0), s(1), s(2), s(3)], &session),
        protocol_version: pick(sel[3], &[None, Some("2025-06-18"), Some("2026-07-28"), Some("2025-11-25"), Some("1999-01-01")], &header),
        mcp_method: pick(sel[4] & 15, &[None, None, Some("tools/call"), Some("resources/read")], &header),
        mcp_name: pick(sel[4] >> 4, &[None, None, Some("plain"), Some("=?base64?cGxhaW4=?=")], &header),
        credential: pick(sel[5], &[Some(API_KEYS[0]), Some(API_KEYS[1]), Some("aaa.bbb.ccc"), None], &credential),
        jwt_payload: match sel[6] {
            0 | 1 => Some(f.jwts[usize::from(sel[6])].clone()),
            2 => None,
            // Free-form JSON, encoded as Envoy would, so that it reaches the claims.
            3 => Some(URL_SAFE_NO_PAD.encode(&jwt)),
            _ => Some(jwt),
        },
        jwt_failure: (sel[7] & 1 == 1).then(|| header.clone()),
        origin: pick(sel[7] >> 1, &[None, Some("https://app.example"), Some("https://app.example/")], &header),
        peer_certificate: pick(sel[8], &[None, Some("spiffe://example.org/ns/dev/sa/carol"), Some("alice")], &header),
        host: pick(sel[8] >> 2, &[Some("localhost:4444"), Some("127.0.0.1:4444"), None, Some("[::1]:4444")], &header),
        session_ended: sel[8] & 0x40 != 0,
        caller: None,
        source: pick(sel[3] >> 4, &[Some("10.0.0.7"), None], &header),
    };
    let now = Now { unix_secs: NOW, entropy: u64::from(sel[7]) };
    let arrival = gw.arrival(&head);
    assert!(arrival.drops(CLUSTER_HEADER) && arrival.writes().next().is_none(), "{arrival:?}");
    let action = gw.on_headers(&mut head);
    if let Some((audit, buckets, cost)) = gw.head_charge(&head, &action, now) {
        assert!(cost >= 1);
        for bucket in &buckets {
            let _ = gw.rate_limited(&audit, bucket, 1);
        }
    }
    match action {
        HeadAction::ReadBody => {}
        HeadAction::EndSession => return drop(gw.end_session(&head, &NoneOpened, now)),
        HeadAction::OpenStream => {
            if let Ok(edits) = gw.open_stream(&head, now) {
                check_edits(&edits);
            }
            return;
        }
        HeadAction::Admin => {
            if let Ok(edits) = gw.admin_edits(&head) {
                check_edits(&edits);
            }
            return;
        }
        HeadAction::Refuse(r) => return drop(gw.audit_record(&head, &Default::default(), Some(&r.reason))),
        HeadAction::PassThrough | HeadAction::Reply(_) => return,
        // The operator's pages, assembled from whatever Envoy and the
        // control plane answered: here, the body.
        HeadAction::Scrape(page, calls) => {
            let answers: Vec<_> =
                calls.iter().map(|_| Some(CalloutResponse { status: 200, body: body.to_vec(), ..Default::default() })).collect();
            return drop(scrape_reply(page, &answers));
        }
    }
    if gw.check_size(body.len()).is_some() {
        return;
    }
    let decision = gw.decide(&head, body, now);
    // What the request adds to the metrics, and its access-log record,
    // which must stay one JSON object whatever the request held.
    let _ = metrics::error_code(body);
    let tally = Tally { principal: Some(header.clone()), era: Some(header.clone()), ..Tally::from_audit(&decision.audit) };
    let _ = metrics::updates(&tally, 0);
    let record = metrics::log_record(&tally);
    assert!(serde_json::from_str::<serde_json::Value>(&record).is_ok_and(|v| v.is_object()), "{record}");
    for bucket in gw.buckets(&head, &decision.audit) {
        let limit = gw.config().rate_limits.get(bucket.limit).expect("a bucket names a configured limit");
        let (_, taken) = ratelimit::take(limit, None, NOW * 1000);
        let refusal = gw.rate_limited(&decision.audit, &bucket, taken.err().unwrap_or(u64::MAX));
        let _ = gw.audit_record(&head, &decision.audit, Some(&refusal.reason));
    }
    let _ = gw.audit_record(&head, &decision.audit, None);
    // What a forwarded request carries: its target the one way to name a
    // cluster, and every value fit for a header.
    if let BodyAction::Forward(f) = &decision.action {
        let edits = gw.forward_edits(&head, f, &decision.audit).expect("a forward names a configured server");
        check_edits(&edits);
    }
    // A call whose server's session is opened first: the upstream answers
    // with the body, then the request goes on in whatever session it gave.
    if let BodyAction::Forward(f) = decision.action {
        if f.open_first {
            let init = gw.open_upstream(&head, &f, now).expect("the session that asked for it opens");
            assert_eq!(init.server, f.server);
            let answer =
                CalloutResponse { status: 200, session_id: Some(session.clone()), body: body.to_vec(), ..CalloutResponse::default() };
            if let Ok((f, opened, callouts)) = gw.upstream_opened(&head, f, Some(&answer), now) {
                assert!(!f.open_first && !callouts.is_empty());
                assert_eq!(f.upstream_session, opened.session.id);
                let edits = gw.forward_edits(&head, &f, &decision.audit).expect("a forward names a configured server");
                check_edits(&edits);
            }
        }
        return;
    }
    // An initialize goes on with the upstreams' answers: the body again,
    // now as what an upstream answered (JSON or SSE).
    if let BodyAction::Initialize(plan) = decision.action {
        let answer = |content_type: &str| {
            Some(CalloutResponse {
                status: 200,
                session_id: Some(session.clone()),
                content_type: Some(content_type.into()),
                body: body.to_vec(),
                oversized: false,
            })
        };
        let (reply, _, _) = gw.initialized(&plan, &[answer("application/json"), answer("text/event-stream"), None], now);
        let Some((_, sid)) = reply.headers.iter().find(|(k, _)| *k == "mcp-session-id") else { return };
        // The session id it issued opens.
        let tools = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        // A fresh id was never ended, whatever the request that made it said of its own.
        let next = RequestHead {
            session_id: Some(sid.clone()),
            session_ended: false,
            protocol_version: None,
            mcp_method: None,
            mcp_name: None,
            ..head
        };
        if let BodyAction::Reply(r) = gw.decide(&next, tools, now).action {
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
    }
}

/// The invariants of every plan of header edits: the cluster is written
/// by the target alone, and every value written is one Envoy takes.
fn check_edits(edits: &HeaderEdits) {
    assert!(edits.target.is_some(), "{edits:?}");
    assert!(edits.set.iter().all(|(name, _)| name != CLUSTER_HEADER), "{edits:?}");
    for (name, value) in edits.writes() {
        assert!(!name.is_empty() && value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80), "{name}: {value:?}");
    }
}
