//! What a request carries on its way on, as [`HeaderEdits`] the glue
//! applies: which client headers are dropped (its credentials, unless the
//! catalog forwards its `Authorization`; the JWT payload Envoy added; the
//! headers that name global rate-limit buckets; a client-sent
//! `x-mcp-cluster`), where it goes (the server, or the control plane's era
//! bridge or GET-stream endpoint), what the upstream is told (its session,
//! version, names, credentials, time limit), and the filter state the
//! local-reply mapper and the audit log read.
//!
//! Two rules live here and are tested here. Client credentials never reach
//! an upstream but where the catalog says so (MCP forbids token
//! passthrough). Only the filter picks an upstream: a client-sent
//! [`CLUSTER_HEADER`] is dropped on arrival, whatever becomes of the
//! request, and the header is written only through a forward's or a
//! stream's [`Target`].
//!
//! It decides nothing about the request itself (that is done by the time
//! it plans), and makes no host call.

use std::borrow::Cow;

use crate::config::{
    ControlPlane, FilterConfig, UpstreamServer, BRIDGE_PATH_PREFIX, CLUSTER_HEADER, DECISION_PROPERTY, DISCOVERY_HEADER, ENDPOINT_HEADER,
    JWT_FAILURE_HEADER, JWT_PAYLOAD_HEADER, META_TRACEPARENT_PROPERTY, METHOD_PROPERTY, PRINCIPAL_HEADER, PRINCIPAL_PROPERTY,
    RATE_LIMIT_HEADER_PREFIX, REASON_PROPERTY, REQUEST_ID_PROPERTY, SERVER_PROPERTY, SPAN_PROPERTY, TARGET_PROPERTY,
};
use crate::decision::{Audit, Forward, HeaderEdits, RequestHead, Target};
use crate::metrics;

/// What every request loses, or gains, as it arrives, whatever becomes of
/// it: a client-sent [`CLUSTER_HEADER`] (the route to upstreams and the
/// local-reply mapper key on it) and [`DISCOVERY_HEADER`] (with which a
/// client could use an on-demand server without keeping it awake), and,
/// when tracing, the name of its span.
pub fn arrival<'a>(config: &FilterConfig, head: &RequestHead) -> HeaderEdits<'a> {
    let mut edits = HeaderEdits {
        drop: vec![CLUSTER_HEADER.into(), DISCOVERY_HEADER.into(), PRINCIPAL_HEADER.into(), ENDPOINT_HEADER.into()],
        ..HeaderEdits::default()
    };
    if config.trace {
        edits.properties.push((SPAN_PROPERTY, metrics::http_span_name(&head.method, &head.path).into()));
    }
    edits
}

/// A request forwarded to `server` (the decision `f`), or to the control
/// plane's era bridge for it. `global` names the global rate-limit buckets
/// it takes from (header, key), for Envoy's `ratelimit` filter.
pub fn forward<'a>(config: &'a FilterConfig, server: &'a UpstreamServer, f: &'a Forward, global: Vec<(String, String)>) -> HeaderEdits<'a> {
    let bridge = f.bridge.then_some(config.control_plane.as_ref()).flatten();
    let (target, credentials) = match bridge {
        // The bridge holds the server's credentials itself.
        Some(cp) => {
            let path = format!("{BRIDGE_PATH_PREFIX}{}", server.name).into();
            (Target { cluster: &cp.cluster, path, authority: &cp.authority }, &cp.headers)
        }
        None => (Target { cluster: &server.cluster, path: server.path.as_str().into(), authority: &server.authority }, &server.headers),
    };
    let mut edits = HeaderEdits {
        properties: vec![(REQUEST_ID_PROPERTY, f.request_id.as_str().into()), (SERVER_PROPERTY, server.name.as_str().into())],
        drop: client_headers(config, server.forward_authorization),
        target: Some(target),
        // Sized once: the credentials and buckets, then at most six more.
        set: Vec::with_capacity(credentials.len() + global.len() + 6),
    };
    let credentials = credentials.iter().map(|h| (h.name.as_str().into(), h.value.as_str().into()));
    let global = global.into_iter().map(|(name, key)| (name.into(), key.into()));
    if bridge.is_some() {
        edits.set.extend(credentials);
        edits.set.extend(global);
    } else {
        edits.set.extend(global);
        edits.set.extend(credentials);
        // The caller's exchanged token, for a server that takes one (the
        // client's own Authorization is in `drop`).
        if let Some(bearer) = &f.upstream_authorization {
            edits.set.push(("authorization".into(), bearer.as_str().into()));
        }
    }
    // The gateway's session id means nothing upstream: the upstream's own,
    // or none.
    put(&mut edits, "mcp-session-id", f.upstream_session.as_deref().map(Cow::Borrowed));
    // The server's own time limit, or the route's; never the client's.
    put(&mut edits, "x-envoy-upstream-rq-timeout-ms", server.timeout_ms.map(|ms| ms.to_string().into()));
    if let Some(v) = &f.upstream_version {
        edits.set.push(("mcp-protocol-version".into(), v.as_str().into()));
    }
    // What a server routes on is what the filter checked against the body
    // (or wrote from it), never the client's own copy: none when unset.
    put(&mut edits, "mcp-name", f.mcp_name.as_deref().map(Cow::Borrowed));
    put(&mut edits, "mcp-method", f.mcp_method.as_deref().map(Cow::Borrowed));
    if let Some(body) = &f.body {
        edits.set.push(("content-length".into(), body.len().to_string().into()));
    }
    edits
}

/// A client's GET stream, to the control plane `cp`, which relays the
/// upstreams' streams itself, and counts each caller's (`caller`, its
/// principal, MCP-encoded; `None` without authentication).
pub fn stream<'a>(config: &'a FilterConfig, cp: &'a ControlPlane, caller: Option<String>, endpoint: Option<&'a str>) -> HeaderEdits<'a> {
    let cluster = cp.streams_cluster.as_deref().unwrap_or(&cp.cluster);
    let mut edits = HeaderEdits {
        // Envoy's own error, should the control plane be down, names the
        // gateway; a stream has no request id.
        properties: vec![(REQUEST_ID_PROPERTY, "null".into()), (SERVER_PROPERTY, "gateway events".into())],
        drop: client_headers(config, false),
        target: Some(Target { cluster, path: cp.events_path.as_str().into(), authority: &cp.authority }),
        set: cp.headers.iter().map(|h| (h.name.as_str().into(), h.value.as_str().into())).collect(),
    };
    // A notification stream lives as long as the client keeps it.
    edits.set.push(("x-envoy-upstream-rq-timeout-ms".into(), "0".into()));
    if let Some(principal) = caller {
        edits.set.push((PRINCIPAL_HEADER.into(), principal.into()));
    }
    if let Some(endpoint) = endpoint {
        edits.set.push((ENDPOINT_HEADER.into(), endpoint.into()));
    }
    edits
}

/// What a client sends for the gateway alone, dropped before a request
/// leaves: its credentials (MCP forbids token passthrough, unless the
/// catalog says the server takes the client's `Authorization`), the JWT
/// payload Envoy added, and global limits' bucket headers, which only the
/// filter may name.
fn client_headers(config: &FilterConfig, keep_authorization: bool) -> Vec<Cow<'static, str>> {
    // Room for a forward's own two drops (session, time limit).
    let mut drop: Vec<Cow<'static, str>> = Vec::with_capacity(5 + config.rate_limits.len());
    if !keep_authorization {
        drop.push("authorization".into());
    }
    drop.push("x-api-key".into());
    drop.push(JWT_PAYLOAD_HEADER.into());
    drop.push(JWT_FAILURE_HEADER.into());
    drop.extend(config.rate_limits.iter().filter(|l| l.global).map(|l| format!("{RATE_LIMIT_HEADER_PREFIX}{}", l.name).into()));
    drop
}

/// An operator's action, to the control plane at the same `path`: the
/// caller's credentials dropped (the filter checked them) and the internal
/// token set; its `Origin` too, which the filter checked and which the
/// control plane would take for a foreign page's.
pub fn admin<'a>(config: &'a FilterConfig, cp: &'a ControlPlane, path: String) -> HeaderEdits<'a> {
    let mut drop = client_headers(config, false);
    drop.push("origin".into());
    HeaderEdits {
        properties: vec![(REQUEST_ID_PROPERTY, "null".into()), (SERVER_PROPERTY, "gateway admin".into())],
        drop,
        target: Some(Target { cluster: &cp.cluster, path: path.into(), authority: &cp.authority }),
        set: cp.headers.iter().map(|h| (h.name.as_str().into(), h.value.as_str().into())).collect(),
    }
}

/// Sets `name` to `value`, or drops the client's for `None`.
fn put<'a>(edits: &mut HeaderEdits<'a>, name: &'static str, value: Option<Cow<'a, str>>) {
    match value {
        Some(v) => edits.set.push((name.into(), v)),
        None => edits.drop.push(name.into()),
    }
}

/// The filter state the audit log (and the trace's span) reads of a
/// decided request: who called, what, and the authorization decision with
/// its reason; `denied` overrules the rules' ruling (a refusal by
/// authentication or by a rate limit). Nothing when neither auditing nor
/// tracing.
pub fn audit<'a>(
    config: &FilterConfig,
    head: &'a RequestHead,
    audit: &'a Audit,
    denied: Option<&'a str>,
) -> Vec<(&'static str, Cow<'a, str>)> {
    if !config.audit && !config.trace {
        return Vec::new();
    }
    let mut out: Vec<(&'static str, Cow<'a, str>)> = Vec::with_capacity(8);
    if let Some(c) = &head.caller {
        out.push((PRINCIPAL_PROPERTY, c.principal.as_str().into()));
    }
    out.push((METHOD_PROPERTY, audit.method.as_str().into()));
    for (name, value) in [(REQUEST_ID_PROPERTY, &audit.id), (SERVER_PROPERTY, &audit.server), (TARGET_PROPERTY, &audit.target)] {
        if let Some(v) = value {
            out.push((name, v.as_str().into()));
        }
    }
    if config.trace && !audit.method.is_empty() {
        out.push((SPAN_PROPERTY, metrics::span_name(&audit.method, audit.target.as_deref()).into()));
    }
    if let Some(t) = &audit.traceparent {
        out.push((META_TRACEPARENT_PROPERTY, t.as_str().into()));
    }
    match (denied, &audit.ruling) {
        (Some(reason), _) => {
            out.push((DECISION_PROPERTY, "deny".into()));
            out.push((REASON_PROPERTY, reason.into()));
        }
        (None, Some(r)) => {
            out.push((DECISION_PROPERTY, if r.allowed { "allow" } else { "deny" }.into()));
            out.push((REASON_PROPERTY, r.reason.as_str().into()));
        }
        (None, None) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LimitKey, RateLimit, ServerEra, UpstreamHeader};
    use crate::decision::{BodyAction, HeadAction, Now};
    use crate::fixtures::{config, control_plane};
    use crate::gateway::Gateway;
    use crate::policy::{Caller, Ruling};

    fn with_credentials() -> FilterConfig {
        let mut c = config();
        c.servers[0].headers = vec![UpstreamHeader { name: "authorization".into(), value: "Bearer a-catalog-token".into() }];
        c.servers[1].forward_authorization = true;
        c.control_plane = Some(ControlPlane {
            headers: vec![UpstreamHeader { name: "x-mcp-gateway-internal".into(), value: "t".into() }],
            ..control_plane()
        });
        c.rate_limits = vec![RateLimit {
            name: "shared".into(),
            per: vec![LimitKey::Principal],
            principals: vec![],
            groups: vec![],
            servers: vec![],
            tools: vec![],
            endpoints: vec![],
            requests_per_minute: 60,
            burst: 5,
            global: true,
        }];
        c
    }

    fn forward_to(server: usize) -> Forward {
        Forward {
            request_id: "7".into(),
            server,
            upstream_session: Some("sid".into()),
            upstream_version: Some("2025-06-18".into()),
            body: None,
            mcp_name: None,
            bridge: false,
            mcp_method: None,
            open_first: false,
            upstream_authorization: None,
        }
    }

    #[test]
    fn client_credentials_reach_no_upstream_unless_the_catalog_forwards_them() {
        let c = with_credentials();
        let plan = |f: &Forward| forward(&c, &c.servers[f.server], f, vec![]).drop.iter().map(|d| d.to_string()).collect::<Vec<_>>();
        // `a` has its own credential from the catalog: the client's goes, the catalog's is written after.
        let to_a = forward_to(0);
        let edits = forward(&c, &c.servers[0], &to_a, vec![]);
        assert!(edits.drop.iter().any(|d| d == "authorization"));
        assert_eq!(edits.value("authorization"), Some("Bearer a-catalog-token"));
        assert!(["x-api-key", JWT_PAYLOAD_HEADER, "x-mcp-rate-limit-shared"].iter().all(|h| edits.drops(h)), "{:?}", edits.drop);
        // `s` has none: the client's is simply gone.
        let to_s = forward_to(2);
        assert!(forward(&c, &c.servers[2], &to_s, vec![]).drops("authorization"));
        // `b` takes the client's Authorization, as the catalog says; an API key or a JWT payload never.
        let to_b = forward_to(1);
        assert!(!plan(&to_b).contains(&"authorization".to_string()));
        assert!(["x-api-key", JWT_PAYLOAD_HEADER].iter().all(|h| plan(&to_b).contains(&h.to_string())));
        // Through the era bridge, the bridge holds the server's credentials: the edits carry only the control plane's.
        let bridged = Forward { bridge: true, ..forward_to(0) };
        let edits = forward(&c, &c.servers[0], &bridged, vec![]);
        assert!(edits.drops("authorization"));
        assert_eq!(edits.value("x-mcp-gateway-internal"), Some("t"));
        // A GET stream, to the control plane: no client credential at all.
        let cp = c.control_plane.as_ref().unwrap();
        let stream = stream(&c, cp, Some("alice".into()), Some("ops"));
        assert_eq!(stream.value(PRINCIPAL_HEADER), Some("alice"), "the control plane counts the caller's streams");
        assert_eq!(stream.value(ENDPOINT_HEADER), Some("ops"), "the control plane notifies of that endpoint's lists");
        assert!(["authorization", "x-api-key", JWT_PAYLOAD_HEADER, "x-mcp-rate-limit-shared"].iter().all(|h| stream.drops(h)));
        assert_eq!(stream.value("x-mcp-gateway-internal"), Some("t"));
    }

    #[test]
    fn only_the_filter_picks_an_upstream() {
        let c = with_credentials();
        let gw = Gateway::new(c.clone()).unwrap();
        // Whatever becomes of a request, a client-sent x-mcp-cluster is gone before anything is decided.
        for (method, path) in
            [("POST", "/mcp"), ("GET", "/mcp"), ("GET", "/health"), ("GET", "/metrics"), ("DELETE", "/mcp"), ("PUT", "/x")]
        {
            let head = RequestHead { method: method.into(), path: path.into(), ..Default::default() };
            let edits = gw.arrival(&head);
            assert!(
                edits.drops(CLUSTER_HEADER)
                    && edits.drops(PRINCIPAL_HEADER)
                    && edits.drops(ENDPOINT_HEADER)
                    && edits.target.is_none()
                    && edits.set.is_empty(),
                "{method} {path}"
            );
            assert!(edits.drops(DISCOVERY_HEADER), "only the control plane marks its discovery: {method} {path}");
        }
        // It is written only through a forward's or a stream's target: to the server, or to the control plane.
        let cluster_writes =
            |e: &HeaderEdits| e.writes().filter(|(k, _)| *k == CLUSTER_HEADER).map(|(_, v)| v.to_string()).collect::<Vec<_>>();
        let to_b = forward_to(1);
        let edits = forward(&c, &c.servers[1], &to_b, vec![]);
        assert_eq!(cluster_writes(&edits), ["mcp_b"]);
        assert_eq!((edits.value(":path"), edits.value(":authority")), (Some("/mcp"), Some("b.local:80")));
        let bridged = Forward { bridge: true, ..forward_to(1) };
        let edits = forward(&c, &c.servers[1], &bridged, vec![]);
        assert_eq!(cluster_writes(&edits), ["gateway_admin"]);
        assert_eq!(edits.value(":path"), Some("/mcp-bridge/b"));
        assert_eq!(cluster_writes(&stream(&c, c.control_plane.as_ref().unwrap(), None, None)), ["gateway_admin"]);
        for (name, _) in edits.set.iter().chain(&stream(&c, c.control_plane.as_ref().unwrap(), None, None).set) {
            assert_ne!(name, CLUSTER_HEADER, "never by a plain write");
        }
    }

    #[test]
    fn a_target_path_or_authority_the_client_already_sent_is_not_written_again() {
        let c = config();
        let f = forward_to(0);
        let edits = forward(&c, &c.servers[0], &f, vec![]);
        let target = edits.target.clone().unwrap();
        let written = |head: &RequestHead| edits.changes(head).map(|(k, _)| k.to_string()).collect::<Vec<_>>();
        let same = RequestHead { path: target.path.to_string(), host: Some(target.authority.to_string()), ..RequestHead::default() };
        let names = written(&same);
        assert!(names.iter().all(|n| n != ":path" && n != ":authority"), "{names:?}");
        assert!(names.iter().any(|n| n == CLUSTER_HEADER) && names.len() + 2 == edits.writes().count());
        let other = RequestHead { path: "/other".into(), host: Some("gateway:4444".into()), ..RequestHead::default() };
        assert_eq!(written(&other).len(), edits.writes().count());
    }

    #[test]
    fn a_forward_tells_the_upstream_its_own_session_names_and_time_limit() {
        let mut c = config();
        c.servers[0].timeout_ms = Some(1500);
        let f = Forward { body: Some(b"{}".to_vec()), mcp_name: Some("echo".into()), ..forward_to(0) };
        let edits = forward(&c, &c.servers[0], &f, vec![]);
        assert_eq!(edits.properties, [(REQUEST_ID_PROPERTY, "7".into()), (SERVER_PROPERTY, "a".into())]);
        for (header, value) in [
            ("mcp-session-id", "sid"),
            ("mcp-protocol-version", "2025-06-18"),
            ("mcp-name", "echo"),
            ("x-envoy-upstream-rq-timeout-ms", "1500"),
            ("content-length", "2"),
        ] {
            assert_eq!(edits.value(header), Some(value), "{header}");
        }
        assert_eq!(edits.value("mcp-method"), None);
        // No upstream session, no limit of its own: the client's are dropped, never passed on.
        let bare = Forward { upstream_session: None, ..forward_to(1) };
        let edits = forward(&c, &c.servers[1], &bare, vec![]);
        assert!(edits.drops("mcp-session-id") && edits.drops("x-envoy-upstream-rq-timeout-ms"));
        assert_eq!(edits.value("content-length"), None, "the body is the client's, as it came");
    }

    #[test]
    fn a_decided_request_goes_where_the_decision_says() {
        // 2026-07-28, so that no session is needed: `s` speaks it, `a` goes through the bridge.
        let mut c = with_credentials();
        c.stateless_era = true;
        c.servers[2].era = ServerEra::Both;
        let gw = Gateway::new(c).unwrap();
        let now = Now { unix_secs: 1_000, entropy: 1 };
        let head = RequestHead { protocol_version: Some("2026-07-28".into()), ..Default::default() };
        let call = |name: &str| format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"{name}"}}}}"#);
        for (tool, cluster, path) in [("s__ping", "mcp_s", "/mcp"), ("a__echo", "gateway_admin", "/mcp-bridge/a")] {
            let d = gw.decide(&head, call(tool).as_bytes(), now);
            let BodyAction::Forward(f) = &d.action else { panic!("{tool}: {:?}", d.action) };
            let edits = gw.forward_edits(&head, f, &d.audit).unwrap();
            assert_eq!((edits.value(CLUSTER_HEADER), edits.value(":path")), (Some(cluster), Some(path)), "{tool}");
        }
        let mut get = RequestHead { method: "GET".into(), path: "/mcp".into(), ..head.clone() };
        assert_eq!(gw.on_headers(&mut get), HeadAction::OpenStream);
        get.accept = Some("text/event-stream".into());
        assert_eq!(gw.open_stream(&get, now).unwrap().value(CLUSTER_HEADER), Some("gateway_admin"));
    }

    #[test]
    fn the_audit_log_reads_who_called_what_and_the_ruling() {
        let head = RequestHead { caller: Some(Caller { principal: "bob".into(), ..Default::default() }), ..Default::default() };
        let call = Audit {
            method: "tools/call".into(),
            id: Some("5".into()),
            server: Some("b".into()),
            target: Some("b__echo".into()),
            ruling: Some(Ruling { allowed: false, reason: "no rule allows it".into() }),
            traceparent: None,
        };
        let off = config();
        assert!(audit(&off, &head, &call, None).is_empty(), "neither auditing nor tracing");
        let on = FilterConfig { audit: true, ..config() };
        let record = |denied| audit(&on, &head, &call, denied).into_iter().map(|(k, v)| (k, v.into_owned())).collect::<Vec<_>>();
        let expect = |decision: &str, reason: &str| {
            vec![
                (PRINCIPAL_PROPERTY, "bob".to_string()),
                (METHOD_PROPERTY, "tools/call".into()),
                (REQUEST_ID_PROPERTY, "5".into()),
                (SERVER_PROPERTY, "b".into()),
                (TARGET_PROPERTY, "b__echo".into()),
                (DECISION_PROPERTY, decision.into()),
                (REASON_PROPERTY, reason.into()),
            ]
        };
        assert_eq!(record(None), expect("deny", "no rule allows it"));
        assert_eq!(record(Some("rate limit \"x\"")), expect("deny", "rate limit \"x\""), "a refusal overrules the ruling");
        let traced = FilterConfig { trace: true, ..config() };
        let spans: Vec<_> = audit(&traced, &head, &call, None).into_iter().filter(|(k, _)| *k == SPAN_PROPERTY).collect();
        assert_eq!(spans, [(SPAN_PROPERTY, Cow::from("tools/call b__echo"))]);
    }
}
