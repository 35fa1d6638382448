use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::*;

// ---- WWW-Authenticate ----

fn challenge(rm: Option<&str>, scope: Option<&str>, error: Option<&str>) -> Option<BearerChallenge> {
    Some(BearerChallenge { resource_metadata: rm.map(Into::into), scope: scope.map(Into::into), error: error.map(Into::into) })
}

#[test]
fn bearer_challenges_are_read_as_rfc_9110_writes_them() {
    let check = |header: &str, expected: Option<BearerChallenge>| {
        assert_eq!(bearer_challenge(header), Ok(expected), "{header}");
    };
    check(
        r#"Bearer resource_metadata="https://h/.well-known/oauth-protected-resource/mcp""#,
        challenge(Some("https://h/.well-known/oauth-protected-resource/mcp"), None, None),
    );
    check(
        r#"Bearer realm="x", scope="files:read files:write", error="invalid_token""#,
        challenge(None, Some("files:read files:write"), Some("invalid_token")),
    );
    // Scheme and parameter names without case; token values; spaces around '='.
    check("BEARER Error=invalid_token , SCOPE = \"a\"", challenge(None, Some("a"), Some("invalid_token")));
    // Several challenges in one value; the Bearer one is found after others.
    check(r#"Basic realm="simple", Bearer resource_metadata="https://h/p", scope="a""#, challenge(Some("https://h/p"), Some("a"), None));
    check(r#"Negotiate abc123==, Bearer error="x""#, challenge(None, None, Some("x")));
    check("Negotiate abc+/._~-, Bearer", challenge(None, None, None));
    // RFC 9110's own example: no Bearer in it.
    check(r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#, None);
    // Escapes inside quoted strings, and text beyond ASCII.
    check(r#"Bearer scope="a\"b\\c\d", error="é""#, challenge(None, Some(r#"a"b\cd"#), Some("é")));
    // Empty list elements are skipped.
    check(" , ,Bearer error=x ,, ", challenge(None, None, Some("x")));
    check("Bearer", challenge(None, None, None));
    check(r#"Bearer, Basic realm="x""#, challenge(None, None, None));
    check("Bearer abc.def=", challenge(None, None, None));
    // A token68 by the grammar, though it looks like a parameter without a value.
    check("Bearer scope=", challenge(None, None, None));
    check("", None);
    check(r#"Basic realm="x""#, None);
    // The first Bearer challenge is the one read.
    check(r#"Bearer scope="a", Bearer scope="b""#, challenge(None, Some("a"), None));
}

#[test]
fn malformed_challenges_are_errors() {
    for header in [
        r#"Bearer scope="unterminated"#,
        r#"Bearer scope "x""#,
        r#"Bearer scope="a" error="b""#,
        r#"Bearer scope="a", scope="b""#,
        r#"Bearer="x""#,
        r#"Bearer scope="a\"#,
        "Bearer scope=\"\"x",
        r#""Bearer""#,
        "Bearer scope=\"a\u{1}b\"",
        "Bearer scope=a;b",
    ] {
        assert!(bearer_challenge(header).is_err(), "{header} was read as {:?}", bearer_challenge(header));
    }
    assert_eq!(bearer_challenge(r#"Bearer scope="a", scope="b""#), Err("parameter scope appears twice in one challenge".into()));
    assert_eq!(bearer_challenge(r#"Bearer scope="a" error="b""#), Err("expected ',' between parameters at character 18".into()));
}

// ---- Well-known URLs ----

#[test]
fn protected_resource_metadata_is_looked_for_path_inserted_then_at_the_root() {
    let check = |resource: &str, expected: &[&str]| {
        assert_eq!(protected_resource_metadata_urls(resource), Ok(expected.iter().map(|s| s.to_string()).collect()), "{resource}");
    };
    let root = "https://h/.well-known/oauth-protected-resource";
    check("https://h/mcp", &["https://h/.well-known/oauth-protected-resource/mcp", root]);
    check("https://h", &[root]);
    check("https://h/", &[root]);
    check(
        "https://H.example:443/mcp",
        &["https://h.example/.well-known/oauth-protected-resource/mcp", "https://h.example/.well-known/oauth-protected-resource"],
    );
    // The query stays (RFC 9728 §3.1); a fragment and user info do not.
    check(
        "https://u:p@h:8443/a/b/?x=1#frag",
        &["https://h:8443/.well-known/oauth-protected-resource/a/b/?x=1", "https://h:8443/.well-known/oauth-protected-resource"],
    );
    check("https://h/?x=1", &["https://h/.well-known/oauth-protected-resource?x=1", root]);
    check(
        "http://[::1]:8080/mcp",
        &["http://[::1]:8080/.well-known/oauth-protected-resource/mcp", "http://[::1]:8080/.well-known/oauth-protected-resource"],
    );
    for bad in ["not a url", "ftp://h/x", "/mcp", "mailto:a@b"] {
        assert!(protected_resource_metadata_urls(bad).is_err(), "{bad}");
    }
}

#[test]
fn authorization_server_metadata_is_looked_for_as_the_mcp_spec_lists() {
    let check = |issuer: &str, expected: &[&str]| {
        assert_eq!(authorization_server_metadata_urls(issuer), Ok(expected.iter().map(|s| s.to_string()).collect()), "{issuer}");
    };
    let root = ["https://as/.well-known/oauth-authorization-server", "https://as/.well-known/openid-configuration"];
    check("https://as", &root);
    check("https://as/", &root);
    let tenant = [
        "https://as/.well-known/oauth-authorization-server/tenant",
        "https://as/.well-known/openid-configuration/tenant",
        "https://as/tenant/.well-known/openid-configuration",
    ];
    check("https://as/tenant", &tenant);
    check("https://as/tenant/", &tenant);
    check(
        "http://127.0.0.1:9000/a/b",
        &[
            "http://127.0.0.1:9000/.well-known/oauth-authorization-server/a/b",
            "http://127.0.0.1:9000/.well-known/openid-configuration/a/b",
            "http://127.0.0.1:9000/a/b/.well-known/openid-configuration",
        ],
    );
    for bad in ["https://as?x=1", "https://as/t#f", "mailto:a@b", "as.example"] {
        assert!(authorization_server_metadata_urls(bad).is_err(), "{bad}");
    }
}

// ---- Validation ----

#[test]
fn the_resource_must_be_the_servers_url() {
    use MetadataFrom::*;
    let check = |resource: &str, server: &str, from: MetadataFrom, ok: bool| {
        let got = check_resource(resource, server, from);
        assert_eq!(got.is_ok(), ok, "{resource} for {server} from {from:?}: {got:?}");
    };
    for from in [Challenge, WellKnown, WellKnownRoot] {
        check("https://h/mcp", "https://h/mcp", from, true);
        // The same URL written otherwise (RFC 3986 normalization).
        check("HTTPS://H:443/mcp", "https://h/mcp", from, true);
        check("https://h/mcp", "https://h/mcp#frag", from, true);
        check("https://h/mcp?t=1", "https://h/mcp?t=1", from, true);
        check("https://h/mcp/", "https://h/mcp", from, false);
        check("http://h/mcp", "https://h/mcp", from, false);
        check("https://h:8443/mcp", "https://h/mcp", from, false);
        check("https://h/mcp?t=2", "https://h/mcp?t=1", from, false);
        check("https://h/other", "https://h/mcp", from, false);
        check("https://other/mcp", "https://h/mcp", from, false);
        check("https://h/mcp#x", "https://h/mcp", from, false);
        check("mcp", "https://h/mcp", from, false);
    }
    // Only metadata at the root may name the origin.
    check("https://h", "https://h/mcp", Challenge, false);
    check("https://h/", "https://h/mcp", WellKnown, false);
    check("https://h", "https://h/mcp", WellKnownRoot, true);
    check("https://h/", "https://h/mcp", WellKnownRoot, true);
    let e = check_resource("https://h/other?k=secret", "https://h/mcp", Challenge).unwrap_err();
    assert!(e.contains("https://h/other?…") && e.contains("https://h/mcp") && e.contains("RFC 9728 §3.3") && !e.contains("secret"), "{e}");
}

#[test]
fn the_issuer_must_be_the_one_asked_for() {
    let check = |issuer: &str, expected: &str, ok: bool| {
        assert_eq!(check_issuer(issuer, expected).is_ok(), ok, "{issuer} for {expected}");
    };
    check("https://as/tenant", "https://as/tenant", true);
    check("https://as", "https://as/", true);
    check("https://AS:443/tenant", "https://as/tenant", true);
    check("https://as/tenant/", "https://as/tenant", false);
    check("https://as/other", "https://as/tenant", false);
    check("https://evil", "https://as", false);
    check("http://as", "https://as", false);
    check("", "https://as", false);
    let e = check_issuer("https://evil/", "https://as/tenant").unwrap_err();
    assert_eq!(e, "its issuer https://evil/ is not https://as/tenant (RFC 8414 §3.3 requires them to be identical)");
}

#[test]
fn the_token_endpoint_is_https_or_on_loopback() {
    for ok in [
        "https://as/token",
        "https://as:8443/oauth/token?tenant=a",
        "http://127.0.0.1:9/token",
        "http://127.0.0.2/t",
        "http://localhost/token",
        "http://[::1]/t",
    ] {
        assert_eq!(check_token_endpoint(ok), Ok(()), "{ok}");
    }
    for bad in ["http://as.example/token", "http://10.0.0.1/token", "ftp://as/token", "/token", "https://as/token#x", "token"] {
        assert!(check_token_endpoint(bad).is_err(), "{bad}");
    }
    let e = check_token_endpoint("http://as.example/token").unwrap_err();
    assert!(e.contains("http://as.example/token") && e.contains("client secret"), "{e}");
}

#[test]
fn metadata_documents_are_json_objects_of_64_kib_at_most() {
    assert_eq!(metadata_document(br#"{"a":1}"#), Ok(json!({"a": 1}).as_object().unwrap().clone()));
    for bad in [&b"[]"[..], b"\"x\"", b"nope", b"", b"{"] {
        assert!(metadata_document(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    let padded = |len: usize| {
        let doc = format!(r#"{{"p":"{}"}}"#, "x".repeat(len - 8));
        assert_eq!(doc.len(), len);
        doc.into_bytes()
    };
    assert!(metadata_document(&padded(MAX_METADATA)).is_ok());
    assert!(metadata_document(&padded(MAX_METADATA + 1)).unwrap_err().contains("65536"));
}

#[test]
fn metadata_fields_are_read_with_their_types() {
    let doc = |v: Value| v.as_object().unwrap().clone();
    let prm = protected_resource(&doc(
        json!({"resource": "https://h/mcp", "authorization_servers": ["https://a", "https://b"], "scopes_supported": ["s"]}),
    ));
    let expected = ProtectedResource {
        resource: "https://h/mcp".into(),
        authorization_server: "https://a".into(),
        other_authorization_servers: vec!["https://b".into()],
        scopes_supported: vec!["s".into()],
    };
    assert_eq!(prm, Ok(expected));
    for (bad, says) in [
        (json!({"authorization_servers": ["https://a"]}), "no resource"),
        (json!({"resource": "https://h/mcp"}), "no authorization_servers"),
        (json!({"resource": "https://h/mcp", "authorization_servers": []}), "no authorization_servers"),
        (json!({"resource": "https://h/mcp", "authorization_servers": "https://a"}), "authorization_servers is not a list of strings"),
        (json!({"resource": "https://h/mcp", "authorization_servers": [1]}), "authorization_servers is not a list of strings"),
        (json!({"resource": 1, "authorization_servers": ["https://a"]}), "resource is not a string"),
    ] {
        let e = protected_resource(&doc(bad.clone())).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
    let meta = authorization_server(&doc(
        json!({"issuer": "https://a", "token_endpoint": "https://a/t", "grant_types_supported": ["client_credentials"]}),
    ));
    assert_eq!(
        meta,
        Ok(AuthorizationServer {
            issuer: "https://a".into(),
            token_endpoint: "https://a/t".into(),
            grant_types_supported: vec!["client_credentials".into()],
            scopes_supported: vec![],
            token_endpoint_auth_methods_supported: vec![],
        })
    );
    for (bad, says) in [
        (json!({"token_endpoint": "https://a/t"}), "no issuer"),
        (json!({"issuer": "https://a"}), "no token_endpoint"),
        (json!({"issuer": "https://a", "token_endpoint": "https://a/t", "scopes_supported": [null]}), "scopes_supported is not a list"),
    ] {
        let e = authorization_server(&doc(bad.clone())).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

// ---- discover, against a server in this process ----

/// What the test server answers to one method and path.
struct Route {
    method: &'static str,
    path: String,
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

/// A request the test server saw.
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: String,
}

struct Served {
    routes: Vec<Route>,
    seen: Mutex<Vec<Seen>>,
}

async fn answer(State(served): State<Arc<Served>>, method: Method, uri: Uri, headers: HeaderMap, body: String) -> Response {
    served.seen.lock().unwrap().push(Seen { method: method.to_string(), path: uri.path().to_string(), headers, body });
    let Some(route) = served.routes.iter().find(|r| r.method == method.as_str() && r.path == uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = (StatusCode::from_u16(route.status).unwrap(), route.body.clone()).into_response();
    for (name, value) in &route.headers {
        response.headers_mut().append(HeaderName::from_static(name), HeaderValue::from_str(value).unwrap());
    }
    response
}

/// Serves the routes `routes` makes of the server's base URL
/// (`http://127.0.0.1:port`); the requests it sees are kept.
async fn serve(routes: impl FnOnce(&str) -> Vec<Route>) -> (String, Arc<Served>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(Served { routes: routes(&base), seen: Mutex::default() });
    let app = axum::Router::new().fallback(answer).with_state(Arc::clone(&served));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, served)
}

/// The MCP endpoint's 401, with these `WWW-Authenticate` fields.
fn unauthorized(challenges: &[&str]) -> Route {
    let headers = challenges.iter().map(|c| ("www-authenticate", c.to_string())).collect();
    Route { method: "POST", path: "/mcp".into(), status: 401, headers, body: String::new() }
}

fn document(path: &str, doc: Value) -> Route {
    Route {
        method: "GET",
        path: path.into(),
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        body: doc.to_string(),
    }
}

fn prm(resource: &str, servers: &[&str]) -> Value {
    json!({ "resource": resource, "authorization_servers": servers, "scopes_supported": ["crm.read"] })
}

fn as_metadata(issuer: &str, token_endpoint: &str) -> Value {
    json!({
        "issuer": issuer,
        "token_endpoint": token_endpoint,
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["crm.read", "crm.write"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    })
}

fn client() -> reqwest::Client {
    crate::upstream::Clients::default().get(None).unwrap().client
}

fn paths(served: &Served) -> Vec<String> {
    served.seen.lock().unwrap().iter().map(|s| format!("{} {}", s.method, s.path)).collect()
}

#[tokio::test]
async fn the_challenge_leads_to_the_token_endpoint() {
    let (base, served) = serve(|base| {
        vec![
            // Two fields: one list (RFC 9110 §5.3).
            unauthorized(&[r#"Basic realm="x""#, &format!(r#"Bearer resource_metadata="{base}/prm", scope="crm.read crm.write""#)]),
            document("/prm", prm(&format!("{base}/mcp"), &[&format!("{base}/tenant"), "https://second.example"])),
            document("/.well-known/oauth-authorization-server/tenant", as_metadata(&format!("{base}/tenant"), &format!("{base}/token"))),
        ]
    })
    .await;
    let headers = [("x-tenant".to_string(), "acme".to_string()), ("Authorization".to_string(), "Bearer not-for-discovery".to_string())];
    let found = discover(&client(), &format!("{base}/mcp"), &headers).await.unwrap();
    assert_eq!(
        found,
        Discovered {
            resource: format!("{base}/mcp"),
            authorization_server: format!("{base}/tenant"),
            other_authorization_servers: vec!["https://second.example".into()],
            token_endpoint: format!("{base}/token"),
            grant_types_supported: vec!["client_credentials".into()],
            scopes_supported: vec!["crm.read".into(), "crm.write".into()],
            token_endpoint_auth_methods_supported: vec!["client_secret_basic".into(), "client_secret_post".into()],
            resource_scopes: vec!["crm.read".into(), "crm.write".into()],
        }
    );
    assert_eq!(paths(&served), ["POST /mcp", "GET /prm", "GET /.well-known/oauth-authorization-server/tenant"]);
    // The initialize is a client's, without credentials.
    let seen = served.seen.lock().unwrap();
    let init = &seen[0];
    assert_eq!(init.headers["accept"], "application/json, text/event-stream");
    assert_eq!(init.headers["content-type"], "application/json");
    assert_eq!(init.headers["x-tenant"], "acme");
    assert!(!init.headers.contains_key("authorization"));
    let body: Value = serde_json::from_str(&init.body).unwrap();
    assert_eq!((body["jsonrpc"].as_str(), body["method"].as_str()), (Some("2.0"), Some("initialize")));
    assert_eq!(body["params"]["protocolVersion"], PROTOCOL_VERSION);
}

#[tokio::test]
async fn without_a_challenge_the_well_known_urls_are_tried_in_order() {
    // No challenge at all; the metadata path-inserted; OpenID discovery only.
    let (base, served) = serve(|base| {
        vec![
            unauthorized(&[]),
            document("/.well-known/oauth-protected-resource/mcp", prm(&format!("{base}/mcp"), &[base])),
            document("/.well-known/openid-configuration", as_metadata(base, &format!("{base}/token"))),
        ]
    })
    .await;
    let found = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap();
    assert_eq!((found.token_endpoint, found.authorization_server), (format!("{base}/token"), base.clone()));
    assert_eq!(found.resource_scopes, ["crm.read"], "the metadata's scopes_supported, without a challenge's scope");
    assert_eq!(
        paths(&served),
        [
            "POST /mcp",
            "GET /.well-known/oauth-protected-resource/mcp",
            "GET /.well-known/oauth-authorization-server",
            "GET /.well-known/openid-configuration"
        ]
    );
}

#[tokio::test]
async fn metadata_at_the_root_may_name_the_server_or_its_origin() {
    for named in ["/mcp", "", "/"] {
        // A Basic challenge only, and an issuer found by OpenID discovery appended.
        let (base, served) = serve(|base| {
            vec![
                unauthorized(&[r#"Basic realm="x""#]),
                document("/.well-known/oauth-protected-resource", prm(&format!("{base}{named}"), &[&format!("{base}/tenant")])),
                document("/tenant/.well-known/openid-configuration", as_metadata(&format!("{base}/tenant"), &format!("{base}/token"))),
            ]
        })
        .await;
        let found = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap();
        assert_eq!(found.resource, format!("{base}{named}"));
        assert_eq!(found.token_endpoint, format!("{base}/token"));
        assert_eq!(paths(&served).len(), 6, "{:?}", paths(&served));
    }
}

#[tokio::test]
async fn an_issuer_that_differs_is_refused() {
    let (base, _) = serve(|base| {
        vec![
            unauthorized(&[&format!(r#"Bearer resource_metadata="{base}/prm""#)]),
            document("/prm", prm(&format!("{base}/mcp"), &[base])),
            document("/.well-known/oauth-authorization-server", as_metadata("https://evil.example", "https://evil.example/token")),
        ]
    })
    .await;
    let e = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap_err();
    assert_eq!(
        e,
        format!(
            "the authorization server metadata at {base}/.well-known/oauth-authorization-server: its issuer https://evil.example/ is not {base}/ (RFC 8414 §3.3 requires them to be identical)"
        )
    );
}

#[tokio::test]
async fn a_resource_that_differs_is_refused() {
    let (base, _) = serve(|base| {
        vec![
            unauthorized(&[&format!(r#"Bearer resource_metadata="{base}/prm""#)]),
            document("/prm", prm(&format!("{base}/other"), &[base])),
            document("/.well-known/oauth-authorization-server", as_metadata(base, &format!("{base}/token"))),
        ]
    })
    .await;
    let e = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap_err();
    assert!(
        e.starts_with(&format!(
            "the protected resource metadata at {base}/prm: its resource {base}/other is not this server's URL {base}/mcp"
        )),
        "{e}"
    );
}

#[tokio::test]
async fn a_server_that_does_not_answer_401_does_not_ask_for_oauth() {
    let (base, _) = serve(|_| vec![Route { method: "POST", path: "/mcp".into(), status: 200, headers: vec![], body: "{}".into() }]).await;
    let e = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap_err();
    assert_eq!(
        e,
        format!("{base}/mcp answered an initialize without credentials with HTTP 200, not 401: it does not ask for OAuth, so its token endpoint cannot be discovered; set oauth.token_url")
    );
    // Nor does a server that refuses otherwise.
    let (base, _) = serve(|_| vec![]).await;
    let e = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap_err();
    assert!(e.contains("HTTP 404, not 401"), "{e}");
}

#[tokio::test]
async fn errors_show_no_user_info_or_query() {
    let (base, _) = serve(|_| vec![]).await;
    let url = base.replace("http://", "http://user:hunter2@") + "/mcp?key=s3cret";
    let e = discover(&client(), &url, &[]).await.unwrap_err();
    assert!(e.starts_with(&format!("{base}/mcp?… answered")), "{e}");
    assert!(!e.contains("hunter2") && !e.contains("s3cret"), "{e}");
}

#[tokio::test]
async fn a_token_endpoint_over_plain_http_off_loopback_is_refused() {
    let (base, _) = serve(|base| {
        vec![
            unauthorized(&[&format!(r#"Bearer resource_metadata="{base}/prm""#)]),
            document("/prm", prm(&format!("{base}/mcp"), &[base])),
            document("/.well-known/oauth-authorization-server", as_metadata(base, "http://as.example/token")),
        ]
    })
    .await;
    let e = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap_err();
    assert!(e.starts_with(&format!("the authorization server metadata at {base}/.well-known/oauth-authorization-server: token endpoint http://as.example/token is not https://")), "{e}");
    assert!(e.contains("client secret"), "{e}");
}

#[tokio::test]
async fn what_discovery_follows_must_be_https_or_on_loopback() {
    // The server itself: refused before any request.
    let e = discover(&client(), "http://mcp.example/mcp", &[]).await.unwrap_err();
    assert!(e.starts_with("the server's URL http://mcp.example/mcp is http:// off loopback"), "{e}");
    // An authorization server its metadata names.
    let (base, served) = serve(|base| {
        vec![
            unauthorized(&[&format!(r#"Bearer resource_metadata="{base}/prm""#)]),
            document("/prm", prm(&format!("{base}/mcp"), &["http://as.example"])),
        ]
    })
    .await;
    let e = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap_err();
    assert!(e.starts_with(&format!("the authorization server that {base}/prm names http://as.example/ is http:// off loopback")), "{e}");
    assert_eq!(paths(&served).len(), 2);
    // The metadata its challenge names.
    let (base, _) = serve(|_| vec![unauthorized(&[r#"Bearer resource_metadata="http://prm.example/x""#])]).await;
    let e = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap_err();
    assert!(e.starts_with(&format!("the resource_metadata that {base}/mcp names http://prm.example/x is http:// off loopback")), "{e}");
}

#[tokio::test]
async fn metadata_over_64_kib_is_refused() {
    let (base, _) = serve(|base| {
        let mut doc = prm(&format!("{base}/mcp"), &[base]);
        doc["padding"] = Value::String("x".repeat(MAX_METADATA));
        vec![unauthorized(&[&format!(r#"Bearer resource_metadata="{base}/prm""#)]), document("/prm", doc)]
    })
    .await;
    let e = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap_err();
    assert_eq!(e, format!("{base}/prm answered more than 65536 bytes: metadata longer than 64 KiB is refused"));
}

#[tokio::test]
async fn without_metadata_every_url_tried_is_named() {
    let (base, _) = serve(|_| vec![unauthorized(&[])]).await;
    let e = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap_err();
    assert_eq!(
        e,
        format!(
            "no protected resource metadata for {base}/mcp: its 401 names no resource_metadata, and {base}/.well-known/oauth-protected-resource/mcp answered HTTP 404, {base}/.well-known/oauth-protected-resource answered HTTP 404; have the server publish RFC 9728 metadata, or set oauth.token_url"
        )
    );
    // A challenge that cannot be read is said to be so.
    let (base, _) = serve(|_| vec![unauthorized(&[r#"Bearer resource_metadata="unterminated"#])]).await;
    let e = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap_err();
    assert!(e.contains("its WWW-Authenticate could not be read (expected a closing quote"), "{e}");
    // Metadata the challenge names must be there.
    let (base, _) = serve(|base| vec![unauthorized(&[&format!(r#"Bearer resource_metadata="{base}/prm""#)])]).await;
    let e = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap_err();
    assert_eq!(
        e,
        format!("no protected resource metadata for {base}/mcp: its 401 names resource_metadata, but {base}/prm answered HTTP 404; have the server publish RFC 9728 metadata, or set oauth.token_url")
    );
    // And the authorization server's somewhere.
    let (base, _) = serve(|base| {
        vec![
            unauthorized(&[&format!(r#"Bearer resource_metadata="{base}/prm""#)]),
            document("/prm", prm(&format!("{base}/mcp"), &[&format!("{base}/t")])),
        ]
    })
    .await;
    let e = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap_err();
    assert!(
        e.starts_with(&format!(
            "no metadata for the authorization server {base}/t: {base}/.well-known/oauth-authorization-server/t answered HTTP 404, "
        )),
        "{e}"
    );
    assert!(e.contains(&format!("{base}/t/.well-known/openid-configuration answered HTTP 404")), "{e}");
}

#[tokio::test]
async fn an_unreachable_server_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let e = discover(&client(), &format!("{base}/mcp"), &[]).await.unwrap_err();
    assert_eq!(e, format!("cannot reach {base}/mcp: connection refused or unreachable"));
}
