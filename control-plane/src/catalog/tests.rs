use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "HOST" => Some("10.0.0.1".into()),
        "KEY" => Some("ab".repeat(32)),
        _ => None,
    }
}

#[test]
fn loads_and_interpolates() {
    let c = load(
        "gateway:\n  session_key: ${KEY}\nservers:\n  - name: time\n    url: http://${HOST}:8000/mcp\n  - name: docs\n    url: https://docs.example.com/mcp?x=1\n    prefix: false\n",
        env,
    )
    .unwrap();
    assert_eq!(c.gateway.listen, "127.0.0.1:4444");
    assert_eq!(c.gateway.session_key.as_deref(), Some("ab".repeat(32).as_str()));
    assert_eq!(c.servers[0].endpoint().unwrap(), Endpoint { tls: false, host: "10.0.0.1".into(), port: 8000, path: "/mcp".into() });
    assert_eq!(
        c.servers[1].endpoint().unwrap(),
        Endpoint { tls: true, host: "docs.example.com".into(), port: 443, path: "/mcp?x=1".into() }
    );
    assert!(!c.servers[1].prefix);
}

#[test]
fn comments_are_not_interpolated_and_values_add_no_structure() {
    let env = |n: &str| (n == "EVIL").then(|| "http://a/\n  - name: injected\n    url: http://b/".to_string());
    let c = load("# uses ${UNDEFINED} in a comment\nservers:\n  - name: a\n    url: \"${EVIL}\"\n", env);
    match c {
        Err(CatalogError::Invalid(p)) => assert!(p.iter().any(|m| m.contains("server \"a\": url")), "{p:?}"),
        other => panic!("{other:?}"),
    }
    let c = load("# ${UNDEFINED}\nservers: []\n", |_| None).unwrap();
    assert!(c.servers.is_empty());
}

#[test]
fn interpolation_reports_every_missing_variable_and_escapes() {
    match interpolate("a: ${NOPE}\nb: ${ALSO_NOPE}\nc: ${HOST}", env) {
        Err(CatalogError::MissingEnv(v)) => assert_eq!(v, vec!["NOPE", "ALSO_NOPE"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(interpolate("x: $${HOST} ${HOST} ${", env).unwrap(), "x: ${HOST} 10.0.0.1 ${");
    assert_eq!(interpolate("${NOPE:-0.0.0.0:4444} ${HOST:-x} ${NOPE:-}", env).unwrap(), "0.0.0.0:4444 10.0.0.1 ");
}

/// A directory of its own for a test's secret files.
fn secrets_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-catalog-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    dir
}

#[test]
fn file_secrets_are_read_without_their_trailing_newlines() {
    let dir = secrets_dir("files");
    std::fs::write(dir.join("sub/echoed"), "s3cret-from-echo\n").unwrap();
    std::fs::write(dir.join("crlf"), "from-windows\r\n\r\n").unwrap();
    std::fs::write(dir.join("inner"), "two\nlines\n").unwrap();
    std::fs::write(dir.join("bare"), "no-newline").unwrap();
    let abs = dir.join("bare");
    let secrets = crate::controller::SecretFiles::new(&dir);
    let lookup = |n: &str| secrets.lookup(n);
    // Relative paths are from the catalog's directory; absolute ones are themselves.
    let text = format!("${{file:sub/echoed}} ${{file:crlf}} [${{file:inner}}] ${{file:{}}}", abs.display());
    assert_eq!(interpolate_with(&text, lookup).unwrap(), "s3cret-from-echo from-windows [two\nlines] no-newline");
    // In a catalog, beside variables, in any string value.
    let c = load_with(
        "gateway:\n  auth:\n    api_keys:\n      - {key: '${file:sub/echoed}', principal: a}\nservers:\n  - {name: t, url: 'http://127.0.0.1:9/mcp', headers: {authorization: 'Bearer ${file:bare}'}}\n",
        lookup,
    )
    .unwrap();
    assert_eq!(c.gateway.auth.unwrap().api_keys[0].key, "s3cret-from-echo");
    assert_eq!(c.servers[0].headers.0["authorization"], "Bearer no-newline");
    let read: Vec<_> = secrets.into_read().into_iter().map(|(p, _)| p).collect();
    assert_eq!(read, vec![abs, dir.join("crlf"), dir.join("inner"), dir.join("sub/echoed")], "every file read is remembered");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreadable_files_are_reported_all_at_once_by_name_and_never_by_content() {
    let dir = secrets_dir("missing");
    std::fs::write(dir.join("present"), "the-value-itself\n").unwrap();
    let secrets = crate::controller::SecretFiles::new(&dir);
    let text = "a: ${file:gone} b: ${NOPE} c: ${file:sub} d: ${file:present} e: ${file:gone}";
    let err = interpolate_with(text, |n| secrets.lookup(n)).unwrap_err();
    let CatalogError::Unresolved(problems) = &err else { panic!("{err:?}") };
    let gone = dir.join("gone").display().to_string();
    assert_eq!(problems.len(), 3, "once each: {problems:?}");
    assert_eq!(problems[0], "undefined environment variable NOPE");
    assert!(problems[1].contains(&gone) && problems[1].contains("No such file or directory"), "{problems:?}");
    assert!(problems[2].contains(&dir.join("sub").display().to_string()), "a directory: {problems:?}");
    assert!(!err.to_string().contains("the-value-itself"), "{err}");
    // A catalog naming a missing file fails to load, naming it.
    let loaded = load_with("servers: []\ngateway:\n  session_key: ${file:gone}\n", |n| secrets.lookup(n));
    assert!(matches!(&loaded, Err(CatalogError::Unresolved(p)) if p.len() == 1 && p[0].contains(&gone)), "{loaded:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn file_defaults_escapes_and_lookups_without_files() {
    // A lookup as the controller's, without a disk: `gone` does not exist,
    // `empty` is empty (once its newline is trimmed), `locked` cannot be read.
    let lookup = |name: &str| match name {
        "file:k" => Ok(Some("v\n".to_string())),
        "file:empty" => Ok(Some("\n".to_string())),
        "file:gone" => Err(Unreadable { reason: "cannot read secret file /c/gone: not found".into(), absent: true }),
        "file:locked" => Err(Unreadable { reason: "cannot read secret file /c/locked: denied".into(), absent: false }),
        other => Ok(env(other)),
    };
    assert_eq!(interpolate_with("${file:gone:-dflt} ${file:empty:-e} ${file:k:-x} ${file:empty}|", lookup).unwrap(), "dflt e v |");
    assert_eq!(interpolate_with("${file:gone:-}${HOST}", lookup).unwrap(), "10.0.0.1");
    // A file there but unreadable is an error even with a default.
    match interpolate_with("${file:locked:-x}", lookup) {
        Err(CatalogError::Unresolved(p)) => assert_eq!(p, vec!["cannot read secret file /c/locked: denied"]),
        other => panic!("{other:?}"),
    }
    // `$${file:` stays literal, and is not looked up.
    assert_eq!(interpolate_with("$${file:gone} $${file:k}", lookup).unwrap(), "${file:gone} ${file:k}");
    // Variables only: a file name is an unset variable; missing variables
    // alone are reported as before.
    match interpolate("${file:k}", env) {
        Err(CatalogError::MissingEnv(v)) => assert_eq!(v, vec!["file:k"]),
        other => panic!("{other:?}"),
    }
    match interpolate_with("${NOPE} ${NOPE}", lookup) {
        Err(CatalogError::MissingEnv(v)) => assert_eq!(v, vec!["NOPE"]),
        other => panic!("{other:?}"),
    }
}

/// The problems reported for a catalog text.
fn problems(text: &str) -> Vec<String> {
    match load(text, env) {
        Ok(_) => vec![],
        Err(CatalogError::Invalid(p)) => p,
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn validation_names_server_and_field() {
    let cases: &[(&str, &str)] = &[
        ("gateway: {listen: nowhere}", "gateway.listen"),
        ("gateway: {mcp_path: mcp}", "gateway.mcp_path"),
        ("gateway: {tool_separator: ''}", "gateway.tool_separator"),
        ("gateway: {tool_separator: '/'}", "gateway.tool_separator"),
        ("gateway: {session_key: short}", "gateway.session_key"),
        ("gateway: {request_timeout_seconds: 999999999999}", "gateway.request_timeout_seconds"),
        ("gateway: {session_id_max_bytes: 100}", "gateway.session_id_max_bytes: 100 is out of range"),
        ("servers: [{name: a, url: 'http://a/', discovery_timeout_seconds: 0}]", "server \"a\": discovery_timeout_seconds"),
        ("servers: [{name: Bad Name, url: 'http://a/mcp'}]", "server \"Bad Name\": name"),
        ("servers: [{name: a, url: 'http://a/mcp'}, {name: a, url: 'http://b/mcp'}]", "server \"a\": name is used"),
        ("servers: [{name: a, url: 'ftp://a/mcp'}]", "server \"a\": url \"ftp://a/mcp\" scheme"),
        ("servers: [{name: a, url: 'not a url'}]", "server \"a\": url"),
        ("servers: [{name: a, runtime: stdio, url: 'http://a/'}]", "server \"a\": runtime stdio needs a command"),
        ("servers: [{name: a, runtime: stdio, command: x, url: 'http://a/'}]", "server \"a\": runtime stdio takes a command, not a url"),
        ("servers: [{name: a, runtime: stdio, command: x, env: {'A-B': 1}}]", "server \"a\": env \"A-B\""),
        ("servers: [{name: a, runtime: grpc, url: 'http://a/'}]", "unknown variant `grpc`"),
        ("servers: [{name: a, url: 'http://a/', command: x}]", "server \"a\": command, args, env and cwd are for runtime: stdio"),
        ("servers: [{name: a, url: 'http://a/', start: on-demand}]", "server \"a\": start: on-demand"),
        ("servers: [{name: a, runtime: sse, url: 'nowhere'}]", "server \"a\": url"),
        ("servers: [{name: '', url: 'http://a/'}]", "servers[0]: name"),
        ("servers: [{name: a, urll: 'http://a/'}]", "unknown field `urll`"),
        ("gateway: {auth: {api_keys: []}}", "gateway.auth: list api_keys, configure jwt or client_certificates"),
        ("gateway: {tls: {cert_file: a, key_file: b, require_client_certificate: true}}", "gateway.tls.require_client_certificate: needs client_ca_file"),
        ("gateway: {tls: {listen: '127.0.0.1:4444', cert_file: a, key_file: b}}", "gateway.tls.listen: must differ"),
        ("gateway: {auth: {client_certificates: true}}", "gateway.auth.client_certificates: needs gateway.tls.client_ca_file"),
        ("gateway: {auth: {api_keys: [{key: short, principal: a}]}}", "gateway.auth.api_keys[0] (a): key must be at least 16 characters"),
        ("gateway: {auth: {api_keys: [{key: '0123456789abcdef', principal: a}, {key: '0123456789abcdef', principal: b}]}}", "gateway.auth.api_keys[1] (b): key is used by another entry"),
        ("gateway: {auth: {api_keys: [{key: '0123456789abcdef', principal: ' '}]}}", "gateway.auth.api_keys[0]: principal must not be empty"),
        ("servers: [{name: a}]", "server \"a\": url \"\" not a URL"),
        ("gateway: {auth: {jwt: {issuer: me}}}", "gateway.auth.jwt: set exactly one of hs256_secret, jwks_file, jwks_uri"),
        ("gateway: {auth: {jwt: {issuer: me, hs256_secret: short}}}", "gateway.auth.jwt.hs256_secret: must be at least 32"),
        ("gateway: {auth: {jwt: {issuer: me, jwks_uri: 'nope'}}}", "gateway.auth.jwt.jwks_uri"),
        ("gateway: {auth: {jwt: {issuer: me, jwks_uri: 'http://idp.example/jwks.json'}}}", "gateway.auth.jwt.jwks_uri: \"http://idp.example/jwks.json\" is plain http, so anyone on the path could swap the keys"),
        ("gateway: {auth: {api_keys: [{key: '0123456789abcdef', principal: a}], protected_resource: {resource: 'x', authorization_servers: []}}}", "gateway.auth.protected_resource.resource"),
        ("gateway: {authorization: {rules: [{name: r, allow: {servers: [nosuch]}}]}}", "gateway.authorization.rules[0] (r): server \"nosuch\" is not in the catalog"),
        ("gateway: {authorization: {rules: [{name: r}, {name: r}]}}", "gateway.authorization.rules[1] (r): name is used"),
        ("gateway: {authorization: {rules: [{name: r, allow: {tool: [x]}}]}}", "unknown field `tool`"),
        ("gateway: {rate_limits: [{name: x, requests_per_minute: 0, burst: 1}]}", "gateway.rate_limits[0] (x): requests_per_minute and burst"),
        ("gateway: {rate_limits: [{name: default, requests_per_minute: 1, burst: 1}]}", "gateway.rate_limits[0]: name must be a-z 0-9 - _"),
        ("gateway: {rate_limits: [{name: x, per: [client], requests_per_minute: 1, burst: 1}]}", "unknown variant `client`"),
        ("gateway: {allowed_origins: ['https://app.example/']}", "gateway.allowed_origins"),
        ("gateway: {rate_limits: [{name: x, global: true, requests_per_minute: 1, burst: 1}]}", "gateway.rate_limits[0] (x): global: true needs gateway.global_rate_limits"),
        ("gateway: {rate_limits: [{name: 'Bad Name', requests_per_minute: 1, burst: 1}]}", "gateway.rate_limits[0]: name must be a-z"),
        ("gateway: {global_rate_limits: {redis_url: 'http://x'}}", "gateway.global_rate_limits.redis_url"),
        ("servers: [{name: a, url: 'http://a/', headers: {'bad header': x}}]", "server \"a\": headers: \"bad header\""),
        ("servers: [{name: a, url: 'http://a/', headers: {Host: x}}]", "server \"a\": headers: \"Host\""),
        ("servers: [{name: a, url: 'http://a/', headers: {X-Token: \"a\\nb\"}}]", "server \"a\": headers: the value of \"X-Token\" holds a control character"),
        ("servers: [{name: a, runtime: stdio, command: x, headers: {X-Token: y}}]", "server \"a\": headers and forward_authorization are for runtime http or sse"),
        ("servers: [{name: a, url: '${NOPE}'}]", "NOPE"),
        ("servers: [{name: a, url: 'http://a/', tools: {include: []}}]", "server \"a\": tools.include: [] would serve none of its tools"),
        ("servers: [{name: a, url: 'http://a/', tools: {exclude: ['']}}]", "server \"a\": tools: \"\" is not a pattern"),
        ("servers: [{name: a, url: 'http://a/', tools: {only: [x]}}]", "unknown field `only`"),
        ("gateway: {pin_file: ''}", "gateway.pin_file: must name a file"),
        ("endpoints: [{name: Ops}]", "endpoint \"Ops\": name must be 1-64 of a-z 0-9 - _"),
        ("endpoints: [{name: ops}, {name: ops}]", "endpoint \"ops\": name is used by another endpoint"),
        ("endpoints: [{name: ops, tools: {include: []}}]", "endpoint \"ops\": tools.include: [] offers none"),
        ("endpoints: [{name: ops, rename: {a: x, b: x}}]", "endpoint \"ops\": rename: two names are renamed \"x\""),
        ("endpoints: [{name: ops, rename: {a: 'x y'}}]", "the new name must be 1-128 characters, no spaces"),
        ("endpoints: [{name: ops, servers: [a]}]", "unknown field `servers`"),
        ("endpoints: [{name: ops, rename: {a: search_tools}}]", "\"search_tools\" is the name of one of the gateway's own tools"),
        ("gateway: {mcp_path: /}\nendpoints: [{name: tools}]", "endpoint \"tools\": its path \"/tools\" is the tool router's"),
        ("gateway: {tool_router: {path: /healthz}}", "gateway.tool_router.path: \"/healthz\" overlaps the gateway's own page \"/health\""),
        ("gateway: {rate_limits: [{name: x, endpoints: [nope], requests_per_minute: 1, burst: 1}]}", "gateway.rate_limits[0] (x): endpoint \"nope\" is not in the catalog's endpoints"),
        ("gateway: {pin: always}", "unknown variant `always`"),
        ("servers: [{name: a, url: 'http://a/', pin: sometimes}]", "unknown variant `sometimes`"),
        ("servers: [{name: a, url: 'http://a/', tls: {ca_file: ca.pem}}]", "server \"a\": tls applies to https:// urls only"),
        ("servers: [{name: a, runtime: stdio, command: x, tls: {ca_file: ca.pem}}]", "server \"a\": tls is for servers reached at an https:// url"),
        ("servers: [{name: a, url: 'https://a/', tls: {client_cert_file: c.pem}}]", "server \"a\": tls: set both client_cert_file and client_key_file"),
        ("servers: [{name: a, url: 'https://a/', tls: {client_key_file: k.pem}}]", "server \"a\": tls: set both client_cert_file and client_key_file"),
        ("servers: [{name: a, url: 'https://a/', tls: {}}]", "server \"a\": tls: name ca_file, or client_cert_file and client_key_file"),
        ("servers: [{name: a, url: 'https://a/', tls: {ca_file: ' '}}]", "server \"a\": tls.ca_file must name a PEM file"),
        ("servers: [{name: a, url: 'https://a/', tls: {cafile: ca.pem}}]", "unknown field `cafile`"),
    ];
    for (text, want) in cases {
        let p = problems(text);
        assert!(p.iter().any(|m| m.contains(want)), "{text}: wanted {want:?} in {p:?}");
    }
    assert!(problems("servers: [{name: ok-1_a, url: 'http://[::1]:9/mcp'}]").is_empty());
    assert!(problems("servers: [{name: t, runtime: stdio, command: uvx, args: [mcp-server-time], env: {TZ: UTC}, start: on-demand}]")
        .is_empty());
    assert!(problems("servers: [{name: l, runtime: sse, url: 'http://127.0.0.1:9/sse'}]").is_empty());
    // A JWKS over plain http only from this machine.
    for host in ["127.0.0.1:9", "[::1]:9", "localhost", "idp.localhost"] {
        assert!(problems(&format!("gateway: {{auth: {{jwt: {{issuer: me, jwks_uri: 'http://{host}/jwks.json'}}}}}}")).is_empty(), "{host}");
    }
    assert!(problems(
        "servers: [{name: p, url: 'https://10.0.0.1/mcp', tls: {ca_file: ca.pem, client_cert_file: c.pem, client_key_file: k.pem}}]"
    )
    .is_empty());
    assert!(problems("servers: [{name: l, runtime: sse, url: 'https://h/sse', tls: {client_cert_file: c.pem, client_key_file: k.pem}}]")
        .is_empty());
}

#[test]
fn other_tls_files_make_another_server() {
    let server = |tls: &str| load(&format!("servers:\n  - {{name: a, url: 'https://a/mcp'{tls}}}\n"), env).unwrap().servers[0].identity();
    assert_ne!(server(""), server(", tls: {ca_file: ca.pem}"));
    assert_ne!(server(", tls: {ca_file: ca.pem}"), server(", tls: {ca_file: other.pem}"));
}

#[test]
fn servers_the_control_plane_runs_are_reached_through_it() {
    let c = load(
        "servers:\n  - {name: t, runtime: stdio, command: uvx, args: ['--token=${KEY}']}\n  - {name: h, url: 'http://h:1/mcp'}\n",
        env,
    )
    .unwrap();
    assert_eq!(c.servers[0].reach_url("http://127.0.0.1:18001"), "http://127.0.0.1:18001/upstream/t/mcp");
    assert_eq!(c.servers[1].reach_url("http://127.0.0.1:18001"), "http://h:1/mcp");
    assert_eq!(c.servers[0].display_url(), "stdio: uvx", "arguments may hold secrets");
    assert_ne!(
        c.servers[0].identity(),
        load("servers:\n  - {name: t, runtime: stdio, command: uvx}\n", env).unwrap().servers[0].identity()
    );
}

#[test]
fn urls_are_shown_without_secrets() {
    let c = load("servers:\n  - name: a\n    url: 'https://user:pw@h.example:8443/mcp?api_key=${KEY}'\n", env).unwrap();
    assert_eq!(c.servers[0].display_url(), "https://h.example:8443/mcp");
}

#[test]
fn the_filter_is_wasm_or_native() {
    assert_eq!(load("servers: []\n", |_| None).unwrap().gateway.filter, "wasm");
    let native = load("gateway: {filter: native}\nservers: []\n", |_| None).unwrap();
    assert_eq!(native.gateway.filter, "native");
    // The default is left out of the serialised catalog (the version's input),
    // so that catalogs that never name it keep their versions.
    assert!(!serde_json::to_string(&load("servers: []\n", |_| None).unwrap()).unwrap().contains("\"filter\""));
    assert!(serde_json::to_string(&native).unwrap().contains(r#""filter":"native""#));
    let e = load("gateway: {filter: lua}\nservers: []\n", |_| None).unwrap_err().to_string();
    assert!(e.contains("gateway.filter: \"lua\" is not one of wasm, native"), "{e}");
}

#[test]
fn the_log_level_is_a_known_one() {
    assert_eq!(load("gateway: {log_level: debug}\nservers: []\n", |_| None).unwrap().gateway.log_level, "debug");
    assert_eq!(load("servers: []\n", |_| None).unwrap().gateway.log_level, "info");
    let e = load("gateway: {log_level: loud}\nservers: []\n", |_| None).unwrap_err().to_string();
    assert!(e.contains("gateway.log_level: \"loud\" is not one of error, warn, info, debug, trace"), "{e}");
}
