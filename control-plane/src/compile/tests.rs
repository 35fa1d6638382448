use super::listeners::{overloaded, own_reply};
use super::*;
use crate::catalog::load;
use crate::discovery::Discovered;
use envoy_types::pb::envoy::config::accesslog::v3::access_log_filter;
use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource, TypedExtensionConfig};
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::config::route::v3::{route, RouteConfiguration};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpConnectionManager};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, secret, CertificateValidationContext, Secret, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher;
use envoy_types::pb::google::protobuf::{BoolValue, StringValue};
use mcp_filter::config::SessionKey;
use serde_json::json;

fn session() -> SessionConfig {
    SessionConfig {
        active_key: "k".into(),
        keys: vec![SessionKey { id: "k".into(), secret_hex: "00".repeat(32) }],
        ttl_seconds: 60,
        max_id_bytes: 4096,
    }
}

fn tool(n: &str) -> Value {
    json!({"name": n, "description": format!("{n} tool"), "inputSchema": {"type": "object"}})
}

fn run_with(yaml: &str, discovered: BTreeMap<String, Discovered>) -> Result<Compiled, CompileError> {
    run_tls(yaml, discovered, &BTreeMap::new())
}

fn run_tls(
    yaml: &str,
    discovered: BTreeMap<String, Discovered>,
    upstream_tls: &BTreeMap<String, UpstreamTls>,
) -> Result<Compiled, CompileError> {
    run_after(yaml, discovered, upstream_tls, None)
}

/// Compiles `yaml` with `previous` as the configuration running.
fn run_after(
    yaml: &str,
    discovered: BTreeMap<String, Discovered>,
    upstream_tls: &BTreeMap<String, UpstreamTls>,
    previous: Option<&FilterConfig>,
) -> Result<Compiled, CompileError> {
    run_held(yaml, discovered, upstream_tls, previous, &BTreeMap::new())
}

/// Compiles `yaml` with `held` tools (`pin: hold`).
fn run_held(
    yaml: &str,
    discovered: BTreeMap<String, Discovered>,
    upstream_tls: &BTreeMap<String, UpstreamTls>,
    previous: Option<&FilterConfig>,
    held: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Compiled, CompileError> {
    run_full(yaml, discovered, upstream_tls, previous, held, &BTreeMap::new())
}

/// Compiles `yaml` with everything compile takes from outside the catalog.
pub(in crate::compile) fn run_full(
    yaml: &str,
    discovered: BTreeMap<String, Discovered>,
    upstream_tls: &BTreeMap<String, UpstreamTls>,
    previous: Option<&FilterConfig>,
    held: &BTreeMap<String, BTreeMap<String, String>>,
    credentials: &BTreeMap<String, Credential>,
) -> Result<Compiled, CompileError> {
    let catalog = load(yaml, |_| None).unwrap();
    compile(&Inputs {
        catalog: &catalog,
        discovered: &discovered,
        module_sha256: "00",
        session: &session(),
        admin: ("127.0.0.1", 18001),
        gateway_version: "0.1.0",
        jwks: None,
        internal_token: "t0k",
        tls: None,
        upstream_tls,
        previous,
        held,
        credentials,
    })
}

fn run(yaml: &str, tools: &[(&str, &[&str])]) -> Result<Compiled, CompileError> {
    let discovered = tools
        .iter()
        .map(|(s, names)| {
            (s.to_string(), Discovered { tools: names.iter().map(|n| tool(n)).collect(), stateful: true, ..Default::default() })
        })
        .collect();
    run_with(yaml, discovered)
}

const TWO: &str = "servers:\n  - name: time\n    url: http://127.0.0.1:8000/mcp\n  - name: docs\n    url: https://docs.example.com/api/mcp\n    prefix: false\n";

#[test]
fn names_tools_and_routes_them() {
    let c = run(TWO, &[("time", &["now", "zone"]), ("docs", &["search"])]).unwrap();
    let f = &c.filter_config;
    let names: Vec<_> = f.tools.iter().map(|t| (t.name.as_str(), t.server, t.upstream_name.as_str())).collect();
    assert_eq!(names, vec![("time__now", 0, "now"), ("time__zone", 0, "zone"), ("search", 1, "search")]);
    assert_eq!(f.tools[0].definition.value(), json!({"name": "time__now", "description": "now tool", "inputSchema": {"type": "object"}}));
    assert_eq!(
        f.servers[1],
        UpstreamServer {
            name: "docs".into(),
            cluster: "mcp_docs".into(),
            authority: "docs.example.com:443".into(),
            path: "/api/mcp".into(),
            timeout_ms: None,
            logging: false,
            stateful: true,
            protocol_version: None,
            era: mcp_filter::config::ServerEra::HandshakeOnly,
            headers: vec![],
            forward_authorization: false,
            credential_error: None,
            token_exchange: false
        }
    );
    assert_eq!(f.version, c.snapshot.version);
}

#[test]
fn builds_envoy_resources() {
    let c = run(TWO, &[("time", &["now"])]).unwrap();
    let clusters: Vec<Cluster> = c.snapshot.resources_of(CLUSTER_TYPE).iter().map(|(_, a)| decode(a).unwrap()).collect();
    let names: Vec<_> = clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["mcp_time", "mcp_docs", ADMIN_CLUSTER, STREAMS_CLUSTER]);
    let kind = |c: &Cluster| match c.cluster_discovery_type {
        Some(cluster::ClusterDiscoveryType::Type(t)) => t,
        _ => -1,
    };
    assert_eq!(kind(&clusters[0]), cluster::DiscoveryType::Static as i32);
    assert_eq!(kind(&clusters[1]), cluster::DiscoveryType::StrictDns as i32);
    assert!(clusters[0].transport_socket.is_none());
    assert!(clusters[1].transport_socket.is_some(), "https upstreams get TLS");

    let ext: TypedExtensionConfig = decode(&c.snapshot.resources_of(EXTENSION_CONFIG_TYPE)[0].1).unwrap();
    assert_eq!(ext.name, FILTER_NAME);
    let wasm: Wasm = decode(ext.typed_config.as_ref().unwrap()).unwrap();
    let plugin = wasm.config.unwrap();
    assert_eq!(plugin.allow_on_headers_stop_iteration, Some(BoolValue { value: true }));
    let json: StringValue = decode(plugin.configuration.as_ref().unwrap()).unwrap();
    let parsed: FilterConfig = serde_json::from_str(&json.value).unwrap();
    assert_eq!(parsed, c.filter_config, "the filter reads back exactly what was compiled");
    assert_eq!(
        json.value,
        serde_json::to_string(&c.filter_config).unwrap(),
        "the version put into the serialised text, as serde would write it"
    );
    assert!(!c.filter_config.version.is_empty());

    let listener: Listener = decode(&c.snapshot.resources_of(LISTENER_TYPE)[0].1).unwrap();
    assert_eq!(listener.address, Some(socket("127.0.0.1", 4444)));
    let routes: RouteConfiguration = decode(&c.snapshot.resources_of(ROUTE_TYPE)[0].1).unwrap();
    let route_names: Vec<_> = routes.virtual_hosts[0].routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(route_names, vec!["mcp_upstream", "admin_health", "admin_ready", "admin_servers", "admin_console"]);
}

#[test]
fn a_collision_drops_the_newcomers_item_and_compiles_the_rest() {
    let yaml =
        "servers:\n  - {name: a, url: 'http://127.0.0.1:1/', prefix: false}\n  - {name: b, url: 'http://127.0.0.1:2/', prefix: false}\n";
    let first = run(yaml, &[("a", &["x", "y"]), ("b", &["x", "z"])]).unwrap();
    let served: Vec<(&str, usize)> = first.filter_config.tools.iter().map(|t| (t.name.as_str(), t.server)).collect();
    assert_eq!(served, vec![("x", 0), ("y", 0), ("z", 1)], "the earlier server in the catalog keeps the name");
    assert_eq!(first.dropped.len(), 1);
    assert_eq!((first.dropped[0].server.as_str(), first.dropped[0].kind, first.dropped[0].name.as_str()), ("b", "tool", "x"));
    assert!(first.dropped[0].reason.contains("server \"a\", which had it first"), "{}", first.dropped[0].reason);
    assert!(run(yaml, &[("a", &["x"]), ("b", &["y"])]).unwrap().dropped.is_empty());
}

#[test]
fn the_server_that_had_a_name_keeps_it_when_another_takes_it_up() {
    // b had `x`; then a (earlier in the catalog) renames a tool of its to `x`.
    let yaml =
        "servers:\n  - {name: a, url: 'http://127.0.0.1:1/', prefix: false}\n  - {name: b, url: 'http://127.0.0.1:2/', prefix: false}\n";
    let before = run(yaml, &[("a", &["w"]), ("b", &["x"])]).unwrap();
    let discovered: BTreeMap<String, Discovered> = [("a", ["x"]), ("b", ["x"])]
        .iter()
        .map(|(s, names)| {
            (s.to_string(), Discovered { tools: names.iter().map(|n| tool(n)).collect(), stateful: true, ..Default::default() })
        })
        .collect();
    let after = run_after(yaml, discovered, &BTreeMap::new(), Some(&before.filter_config)).unwrap();
    let served: Vec<(&str, usize)> = after.filter_config.tools.iter().map(|t| (t.name.as_str(), t.server)).collect();
    assert_eq!(served, vec![("x", 1)], "b keeps x; a's rename is what is left out");
    assert_eq!(after.dropped.iter().map(|d| d.server.as_str()).collect::<Vec<_>>(), vec!["a"]);
}

#[test]
fn an_unnamed_or_repeated_item_is_dropped_not_fatal() {
    let yaml = "servers:\n  - {name: a, url: 'http://127.0.0.1:1/'}\n";
    let discovered = BTreeMap::from([(
        "a".to_string(),
        Discovered { tools: vec![serde_json::json!({"title": "no name"}), tool("t"), tool("t")], ..Default::default() },
    )]);
    let c = run_with(yaml, discovered).unwrap();
    assert_eq!(c.filter_config.tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["a__t"]);
    let reasons: Vec<&str> = c.dropped.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons, vec!["it listed a tool without a string name", "it listed tool \"t\" twice"]);
}

#[test]
fn a_servers_tool_filter_leaves_out_what_it_does_not_include_or_excludes() {
    let yaml = "servers:\n  - name: a\n    url: 'http://127.0.0.1:1/'\n    tools: {include: ['read_*', 'list_?'], exclude: ['*_secret']}\n  - {name: b, url: 'http://127.0.0.1:2/', tools: {exclude: [drop]}}\n";
    let c = run(yaml, &[("a", &["read_file", "read_secret", "list_x", "list_xy", "write_file"]), ("b", &["keep", "drop"])]).unwrap();
    let served: Vec<&str> = c.filter_config.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(served, vec!["a__read_file", "a__list_x", "b__keep"]);
    assert_eq!(c.hidden_tools.get("a").unwrap(), &vec!["read_secret", "list_xy", "write_file"]);
    assert_eq!(c.hidden_tools.get("b").unwrap(), &vec!["drop"]);
    assert!(c.dropped.is_empty(), "a filtered tool is not a dropped one");
    let index = &c.filter_config.router.as_ref().unwrap().index;
    assert_eq!(index.tools.len(), 3, "the router indexes only what is served");
}

#[test]
fn a_held_tool_is_not_served_and_its_change_goes_to_the_filter() {
    let yaml = "servers:\n  - {name: a, url: 'http://127.0.0.1:1/', tools: {exclude: [gone]}}\n";
    let discovered = BTreeMap::from([(
        "a".to_string(),
        Discovered { tools: vec![tool("keep"), tool("changed"), tool("gone")], stateful: true, ..Default::default() },
    )]);
    let held = BTreeMap::from([(
        "a".to_string(),
        BTreeMap::from([("changed".to_string(), "its description changed".to_string()), ("gone".to_string(), "x".to_string())]),
    )]);
    let c = run_held(yaml, discovered, &BTreeMap::new(), None, &held).unwrap();
    let served: Vec<&str> = c.filter_config.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(served, vec!["a__keep"]);
    let held: Vec<(&str, &str, &str)> =
        c.filter_config.held_tools.iter().map(|h| (h.name.as_str(), h.upstream_name.as_str(), h.change.as_str())).collect();
    assert_eq!(held, vec![("a__changed", "changed", "its description changed")], "a tool the filter hides is not held");
    assert_eq!(c.filter_config.router.as_ref().unwrap().index.tools.len(), 1, "a held tool is not searched");
}

#[test]
fn a_held_name_is_not_taken_by_another_server_meanwhile() {
    let yaml =
        "servers:\n  - {name: a, url: 'http://127.0.0.1:1/', prefix: false}\n  - {name: b, url: 'http://127.0.0.1:2/', prefix: false}\n";
    let discovered: BTreeMap<String, Discovered> = [("a", ["search"]), ("b", ["search"])]
        .iter()
        .map(|(s, names)| {
            (s.to_string(), Discovered { tools: names.iter().map(|n| tool(n)).collect(), stateful: true, ..Default::default() })
        })
        .collect();
    let held = BTreeMap::from([("a".to_string(), BTreeMap::from([("search".to_string(), "its description changed".to_string())]))]);
    let c = run_held(yaml, discovered, &BTreeMap::new(), None, &held).unwrap();
    assert!(c.filter_config.tools.is_empty(), "b does not take a's held name");
    assert_eq!(c.filter_config.held_tools[0].name, "search");
    assert!(c.dropped.iter().any(|d| d.server == "b" && d.reason.contains("held for server \"a\"")), "{:?}", c.dropped);
}

#[test]
fn an_endpoint_compiles_to_its_path_and_a_clashing_rename_is_left_out() {
    let yaml = "gateway: {mcp_path: /mcp/}\nservers:\n  - {name: a, url: 'http://127.0.0.1:1/'}\nendpoints:\n  - name: ops\n    tools: {include: ['a__*']}\n    rename: {a__x: sum, a__y: a__z}\n    describe: {a__x: Adds}\n    authorization: {default: allow, rules: []}\n";
    let c = run(yaml, &[("a", &["x", "y", "z"])]).unwrap();
    let e = &c.filter_config.endpoints[0];
    assert_eq!((e.name.as_str(), e.path.as_str()), ("ops", "/mcp/ops"));
    assert_eq!(e.renames, vec![("a__x".to_string(), "sum".to_string())]);
    assert_eq!(e.descriptions, vec![("a__x".to_string(), "Adds".to_string())]);
    assert!(e.authorization.as_ref().is_some_and(|a| a.default_allow));
    let clash = c.dropped.iter().find(|d| d.kind == "rename").unwrap();
    assert!(clash.reason.contains("renames \"a__y\" to \"a__z\", a name it already offers"), "{}", clash.reason);
}

#[test]
fn version_put_into_serialised_configuration() {
    assert_eq!(with_version(r#"{"version":"","a":1}"#, "0f").as_deref(), Some(r#"{"version":"0f","a":1}"#));
    assert_eq!(with_version(r#"{"a":1,"version":""}"#, "0f"), None, "not first: serialised again instead");
}

#[test]
fn version_follows_content() {
    let a = run(TWO, &[("time", &["now"])]).unwrap().snapshot.version;
    assert_eq!(a, run(TWO, &[("time", &["now"])]).unwrap().snapshot.version, "same input, same version");
    assert_ne!(a, run(TWO, &[("time", &["now", "zone"])]).unwrap().snapshot.version);
    assert_ne!(a, run(TWO, &[]).unwrap().snapshot.version);
}

#[test]
fn prompts_resources_capabilities_and_instructions() {
    let time = Discovered {
        capabilities: json!({"tools": {}, "prompts": {"listChanged": true}, "completions": {}}),
        instructions: Some("Ask me the time.".into()),
        tools: vec![tool("now")],
        prompts: vec![json!({"name": "greet", "arguments": [{"name": "who"}]})],
        ..Default::default()
    };
    let docs = Discovered {
        capabilities: json!({"resources": {"subscribe": true}}),
        resources: vec![json!({"uri": "docs://index", "name": "index"})],
        resource_templates: vec![json!({"uriTemplate": "docs://page/{n}", "name": "page"})],
        ..Default::default()
    };
    let discovered_docs = docs.clone();
    let discovered = BTreeMap::from([("time".to_string(), time), ("docs".to_string(), docs)]);
    let f = run_with(TWO, discovered).unwrap().filter_config;
    assert_eq!(f.prompts[0].name, "time__greet");
    assert_eq!(f.prompts[0].definition.value(), json!({"name": "time__greet", "arguments": [{"name": "who"}]}));
    assert_eq!((f.resources[0].server, f.resource_templates[0].server), (1, 1));
    assert_eq!(f.resources[0].definition["uri"], "docs://index", "URIs are relayed unchanged");
    assert_eq!(
        f.capabilities,
        json!({"tools": {"listChanged": true}, "prompts": {"listChanged": true}, "resources": {"subscribe": false, "listChanged": true}, "completions": {}})
    );
    let mut stateful_docs = discovered_docs.clone();
    stateful_docs.stateful = true;
    let f2 = run_with(TWO, BTreeMap::from([("docs".to_string(), stateful_docs)])).unwrap().filter_config;
    assert_eq!(f2.capabilities["resources"], json!({"subscribe": true, "listChanged": true}), "updates flow from servers with sessions");
    assert_eq!(f.instructions.as_deref(), Some("## Server time (its tools and prompts are named time__<name>)\nAsk me the time."));
    assert_eq!(run(TWO, &[]).unwrap().filter_config.capabilities, json!({"tools": {"listChanged": true}}));
    assert!(!f.servers[0].stateful, "discovered without a session id");
    assert!(run(TWO, &[]).unwrap().filter_config.servers.iter().all(|s| s.stateful), "undiscovered servers are assumed stateful");
}

#[test]
fn no_server_name_can_take_the_admin_cluster() {
    let yaml = "servers:\n  - {name: gateway_admin, url: 'http://127.0.0.1:1/'}\n  - {name: admin, url: 'http://127.0.0.1:2/'}\n";
    let c = run(yaml, &[]).unwrap();
    let names: Vec<_> = c.snapshot.resources_of(CLUSTER_TYPE).iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["mcp_gateway_admin", "mcp_admin", ADMIN_CLUSTER, STREAMS_CLUSTER]);
}

/// The TLS context of a cluster, if it speaks TLS.
fn upstream_tls_of(c: &Compiled, cluster: &str) -> Option<UpstreamTlsContext> {
    let (_, any) = c.snapshot.resources_of(CLUSTER_TYPE).iter().find(|(n, _)| n == cluster)?;
    let socket = decode::<Cluster>(any)?.transport_socket?;
    let Some(envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(any)) = socket.config_type else {
        return None;
    };
    decode(&any)
}

fn san_of(v: &CertificateValidationContext) -> (i32, Option<string_matcher::MatchPattern>) {
    let m = &v.match_typed_subject_alt_names[0];
    (m.san_type, m.matcher.as_ref().and_then(|m| m.match_pattern.clone()))
}

fn secret_of(c: &Compiled, name: &str) -> Option<secret::Type> {
    let (_, any) = c.snapshot.resources_of(SECRET_TYPE).iter().find(|(n, _)| n == name)?;
    decode::<Secret>(any)?.r#type
}

#[test]
fn https_upstreams_verify_the_certificate() {
    let c = run(TWO, &[]).unwrap();
    let tls = upstream_tls_of(&c, "mcp_docs").unwrap();
    assert_eq!(tls.sni, "docs.example.com");
    let Some(common_tls_context::ValidationContextType::ValidationContext(v)) = tls.common_tls_context.unwrap().validation_context_type
    else {
        panic!()
    };
    assert_eq!(san_of(&v), (SanType::Dns as i32, Some(string_matcher::MatchPattern::Exact("docs.example.com".into()))));
    let by_file = Some(DataSource {
        specifier: Some(data_source::Specifier::Filename("/etc/ssl/certs/ca-certificates.crt".into())),
        ..Default::default()
    });
    assert_eq!(v.trusted_ca, by_file, "without a CA of its own: the system's, on Envoy's disk");
    assert!(c.snapshot.resources_of(SECRET_TYPE).is_empty());
}

#[test]
fn a_servers_own_ca_and_client_certificate_reach_envoy_inline() {
    let yaml = "servers:\n  - {name: private, url: 'https://127.0.0.1:8443/mcp', tls: {ca_file: ca.crt, client_cert_file: c.crt, client_key_file: c.key}}\n  - {name: ca-only, url: 'https://mcp.internal/mcp', tls: {ca_file: ca.crt}}\n  - {name: legacy, runtime: sse, url: 'https://old.internal/sse', tls: {ca_file: ca.crt}}\n";
    let files = |cert: Option<&str>| UpstreamTls {
        ca: Some("CA PEM".into()),
        client_cert: cert.map(Into::into),
        client_key: cert.map(|_| "KEY PEM".into()),
    };
    let upstream_tls = BTreeMap::from([
        ("private".to_string(), files(Some("CERT PEM"))),
        ("ca-only".to_string(), files(None)),
        ("legacy".to_string(), files(None)),
    ]);
    let c = run_tls(yaml, BTreeMap::new(), &upstream_tls).unwrap();

    let tls = upstream_tls_of(&c, "mcp_private").unwrap();
    assert_eq!(tls.sni, "", "no SNI for an IP address (RFC 6066)");
    let common = tls.common_tls_context.unwrap();
    let Some(common_tls_context::ValidationContextType::CombinedValidationContext(v)) = common.validation_context_type else { panic!() };
    assert_eq!(
        san_of(v.default_validation_context.as_ref().unwrap()),
        (SanType::IpAddress as i32, Some(string_matcher::MatchPattern::Exact("127.0.0.1".into())))
    );
    assert_eq!(v.validation_context_sds_secret_config.unwrap().name, "mcp_private/ca");
    assert_eq!(
        common.tls_certificate_sds_secret_configs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        vec!["mcp_private/client_cert"]
    );
    let inline = |text: &str| Some(DataSource { specifier: Some(data_source::Specifier::InlineString(text.into())), ..Default::default() });
    let Some(secret::Type::ValidationContext(ca)) = secret_of(&c, "mcp_private/ca") else { panic!() };
    assert_eq!(ca.trusted_ca, inline("CA PEM"), "the CA's content, not its path: Envoy may not share the control plane's disk");
    let Some(secret::Type::TlsCertificate(pair)) = secret_of(&c, "mcp_private/client_cert") else { panic!() };
    assert_eq!((pair.certificate_chain, pair.private_key), (inline("CERT PEM"), inline("KEY PEM")));

    let tls = upstream_tls_of(&c, "mcp_ca-only").unwrap();
    assert_eq!(tls.sni, "mcp.internal");
    assert!(tls.common_tls_context.unwrap().tls_certificate_sds_secret_configs.is_empty());
    assert!(secret_of(&c, "mcp_ca-only/client_cert").is_none());
    // Envoy reaches an SSE server through the control plane, which holds its TLS.
    assert!(upstream_tls_of(&c, "mcp_legacy").is_none() && secret_of(&c, "mcp_legacy/ca").is_none());

    let rotated = BTreeMap::from([
        ("private".to_string(), files(Some("NEW CERT PEM"))),
        ("ca-only".to_string(), files(None)),
        ("legacy".to_string(), files(None)),
    ]);
    assert_ne!(run_tls(yaml, BTreeMap::new(), &rotated).unwrap().snapshot.version, c.snapshot.version, "a rotated file is a new version");
}

#[test]
fn security_settings_reach_the_filter_and_envoy() {
    use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{jwt_provider, JwtAuthentication};
    let yaml = r#"
gateway:
  auth:
    jwt: {issuer: "https://idp.example", audiences: [mcp], hs256_secret: "0123456789abcdef0123456789abcdef", groups_claim: roles}
  authorization:
    rules: [{name: devs, groups: [dev], allow: {servers: [time]}}]
  rate_limit_per_minute: 120
  rate_limits: [{name: slow, per: [principal, tool], tools: ["time__*"], requests_per_minute: 6, burst: 2}]
  allowed_origins: ["https://app.example"]
  audit_log: /tmp/audit.log
servers:
  - name: time
    url: http://127.0.0.1:8000/mcp
    headers: {Authorization: "Bearer upstream-token"}
    forward_authorization: false
"#;
    let c = run(yaml, &[("time", &["now"])]).unwrap();
    let f = &c.filter_config;
    assert_eq!(f.servers[0].headers, vec![UpstreamHeader { name: "authorization".into(), value: "Bearer upstream-token".into() }]);
    assert_eq!(f.authorization.as_ref().map(|a| (a.default_allow, a.rules.len())), Some((false, 1)));
    assert_eq!(
        f.rate_limits.iter().map(|l| (l.name.as_str(), l.requests_per_minute, l.burst)).collect::<Vec<_>>(),
        [("default", 120, 120), ("slow", 6, 2)]
    );
    assert_eq!(f.allowed_origins, ["https://app.example"]);
    assert!(f.audit);
    assert_eq!(f.auth.as_ref().and_then(|a| a.jwt.as_ref()).map(|j| j.groups_claim.as_str()), Some("roles"));
    // The secret never reaches the filter's configuration.
    assert!(!serde_json::to_string(f).unwrap().contains("0123456789abcdef0123456789abcdef"));

    let listeners = &c.snapshot.resources[LISTENER_TYPE];
    let listener: Listener = decode(&listeners[0].1).unwrap();
    let Some(filter::ConfigType::TypedConfig(any)) = &listener.filter_chains[0].filters[0].config_type else { panic!() };
    let hcm: HttpConnectionManager = decode(any).unwrap();
    let names: Vec<_> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.header_mutation",
            "envoy.filters.http.jwt_authn",
            "envoy.filters.http.header_mutation",
            FILTER_NAME,
            "envoy.filters.http.router"
        ]
    );
    let Some(http_filter::ConfigType::TypedConfig(any)) = &hcm.http_filters[1].config_type else { panic!() };
    let authn: JwtAuthentication = decode(any).unwrap();
    let provider = &authn.providers["gateway"];
    assert_eq!((provider.issuer.as_str(), provider.audiences.clone()), ("https://idp.example", vec!["mcp".to_string()]));
    let Some(jwt_provider::JwksSourceSpecifier::LocalJwks(jwks)) = &provider.jwks_source_specifier else { panic!() };
    let Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(text)) = &jwks.specifier else { panic!() };
    let keys: Value = serde_json::from_str(text).unwrap();
    assert_eq!(keys["keys"][0]["kty"], "oct");
    let loggers: Vec<&str> = hcm.access_log.iter().map(|l| l.name.as_str()).collect();
    // The audit log to its file, and to the control plane for the console.
    assert_eq!(loggers, ["mcp_audit", "mcp_audit_console", "mcp_access", "http_access"]);

    // Without any of it, no extra filter and no audit log; the access log stays.
    let plain = run(TWO, &[]).unwrap();
    let listener: Listener = decode(&plain.snapshot.resources[LISTENER_TYPE][0].1).unwrap();
    let Some(filter::ConfigType::TypedConfig(any)) = &listener.filter_chains[0].filters[0].config_type else { panic!() };
    let hcm: HttpConnectionManager = decode(any).unwrap();
    assert_eq!(hcm.http_filters.len(), 2);
    let loggers: Vec<&str> = hcm.access_log.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(loggers, ["mcp_access", "http_access"]);
    assert!(!plain.filter_config.audit);
    assert!(plain.filter_config.access_log, "the filter writes the MCP record the access log reads");
    let quiet = run(&format!("gateway:\n  access_log: \"off\"\n{TWO}"), &[]).unwrap();
    let listener: Listener = decode(&quiet.snapshot.resources[LISTENER_TYPE][0].1).unwrap();
    let Some(filter::ConfigType::TypedConfig(any)) = &listener.filter_chains[0].filters[0].config_type else { panic!() };
    assert!(decode::<HttpConnectionManager>(any).unwrap().access_log.is_empty(), "access_log: off");
    assert!(!quiet.filter_config.access_log, "no access log: the filter writes no record for one");
}

#[test]
fn global_limits_become_descriptors_on_the_upstream_route() {
    use envoy_types::pb::envoy::config::route::v3::rate_limit::action::ActionSpecifier;
    let yaml = r#"
gateway:
  global_rate_limits: {redis_url: "redis://127.0.0.1:6379"}
  rate_limits:
    - {name: shared, per: [principal], requests_per_minute: 60, burst: 5, global: true}
    - {name: local-only, requests_per_minute: 60, burst: 5}
servers:
  - name: time
    url: http://127.0.0.1:8000/mcp
"#;
    let c = run(yaml, &[("time", &["now"])]).unwrap();
    let routes: RouteConfiguration = decode(&c.snapshot.resources[ROUTE_TYPE][0].1).unwrap();
    let upstream = &routes.virtual_hosts[0].routes[0];
    let Some(route::Action::Route(action)) = &upstream.action else { panic!() };
    assert_eq!(action.rate_limits.len(), 1, "only the global limit asks the service");
    let specifiers: Vec<_> = action.rate_limits[0].actions.iter().map(|a| a.action_specifier.clone().unwrap()).collect();
    assert!(matches!(&specifiers[0], ActionSpecifier::GenericKey(g) if g.descriptor_key == "limit" && g.descriptor_value == "shared"));
    assert!(
        matches!(&specifiers[1], ActionSpecifier::RequestHeaders(h) if h.header_name == "x-mcp-rate-limit-shared" && h.descriptor_key == "bucket")
    );
    assert_eq!(upstream.request_headers_to_remove, ["x-mcp-rate-limit-shared"]);
    let listener: Listener = decode(&c.snapshot.resources[LISTENER_TYPE][0].1).unwrap();
    let Some(filter::ConfigType::TypedConfig(any)) = &listener.filter_chains[0].filters[0].config_type else { panic!() };
    let hcm: HttpConnectionManager = decode(any).unwrap();
    let names: Vec<_> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, [FILTER_NAME, "envoy.filters.http.ratelimit", "envoy.filters.http.router"]);
    let mappers = hcm.local_reply_config.unwrap().mappers;
    assert_eq!(mappers.len(), 5, "the filter's own, over-limit, overloaded, upstream failure, too slow");
    assert_eq!(mappers[0], own_reply(), "the filter's own answers are left alone");
    assert_eq!(mappers[1], rls::over_limit_mapper(), "the over-limit mapper before the upstream one");
    assert_eq!(mappers[2], overloaded());
}

#[test]
fn connections_are_limited_per_server_and_streams_by_silence() {
    let yaml = "gateway:\n  max_connections_per_server: 50\n  idle_timeout_seconds: 600\n  request_timeout_seconds: 45\nservers:\n  - {name: a, url: 'http://127.0.0.1:1/mcp'}\n  - {name: b, url: 'http://127.0.0.1:2/mcp', max_connections: 2, idle_timeout_seconds: 30}\n  - {name: c, runtime: stdio, command: x}\n";
    let c = run(yaml, &[]).unwrap();
    let clusters: Vec<Cluster> = c.snapshot.resources[CLUSTER_TYPE].iter().map(|(_, any)| decode(any).unwrap()).collect();
    let limits = |name: &str| {
        let cluster = clusters.iter().find(|c| c.name == name).unwrap();
        cluster.circuit_breakers.as_ref().map(|b| {
            let t = &b.thresholds[0];
            assert_eq!(t.max_connections, None, "connections follow calls; a cap would let one worker's idle ones starve another");
            (t.max_requests.unwrap().value, t.max_pending_requests.unwrap().value)
        })
    };
    assert_eq!(limits("mcp_a"), Some((50, 50)));
    assert_eq!(limits("mcp_b"), Some((2, 2)), "a server's own limit wins");
    assert_eq!(limits("mcp_c"), None, "a stdio server is one connection of the control plane's");
    let a = clusters.iter().find(|c| c.name == "mcp_a").unwrap();
    let options: HttpProtocolOptions =
        decode(&a.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]).unwrap();
    assert_eq!(options.common_http_protocol_options.unwrap().idle_timeout.unwrap().seconds, 600);
    let b = clusters.iter().find(|c| c.name == "mcp_b").unwrap();
    let options: HttpProtocolOptions =
        decode(&b.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]).unwrap();
    assert_eq!(options.common_http_protocol_options.unwrap().idle_timeout.unwrap().seconds, 30, "a server's own idle timeout wins");

    let routes: RouteConfiguration = decode(&c.snapshot.resources[ROUTE_TYPE][0].1).unwrap();
    let Some(route::Action::Route(upstream)) = &routes.virtual_hosts[0].routes[0].action else { panic!() };
    assert_eq!((upstream.timeout.unwrap().seconds, upstream.idle_timeout.unwrap().seconds), (0, 45), "silence is limited, not the stream");

    let listener: Listener = decode(&c.snapshot.resources[LISTENER_TYPE][0].1).unwrap();
    let Some(filter::ConfigType::TypedConfig(any)) = &listener.filter_chains[0].filters[0].config_type else { panic!() };
    let hcm: HttpConnectionManager = decode(any).unwrap();
    assert_eq!(hcm.common_http_protocol_options.unwrap().idle_timeout.unwrap().seconds, 600);
    let mappers = hcm.local_reply_config.unwrap().mappers;
    assert_eq!(mappers[0], own_reply());
    let Some(access_log_filter::FilterSpecifier::ResponseFlagFilter(flags)) = &mappers[1].filter.as_ref().unwrap().filter_specifier else {
        panic!()
    };
    assert_eq!(flags.flags, ["UO"]);

    for (bad, problem) in [
        ("gateway: {max_connections_per_server: 0}\nservers: []\n", "gateway.max_connections_per_server: must be at least 1"),
        ("servers:\n  - {name: a, url: 'http://h/mcp', max_connections: 0}\n", "max_connections must be at least 1"),
        ("servers:\n  - {name: a, runtime: stdio, command: x, max_connections: 3}\n", "max_connections applies to http servers"),
    ] {
        let e = load(bad, |_| None).unwrap_err().to_string();
        assert!(e.contains(problem), "{e}");
    }
}

#[test]
fn tracing_exports_spans_named_by_the_filter_to_the_collector() {
    use envoy_types::pb::envoy::config::trace::v3::{tracing, OpenTelemetryConfig};
    let yaml = format!("gateway:\n  tracing: {{otlp_endpoint: 'http://otel:4318', sampling_percent: 25}}\n{TWO}");
    let c = run(&yaml, &[]).unwrap();
    assert!(c.filter_config.trace, "the filter names the span");
    let clusters: Vec<Cluster> = c.snapshot.resources[CLUSTER_TYPE].iter().map(|(_, any)| decode(any).unwrap()).collect();
    assert!(clusters.iter().any(|c| c.name == super::tracing::COLLECTOR_CLUSTER), "the collector has a cluster");
    let listener: Listener = decode(&c.snapshot.resources[LISTENER_TYPE][0].1).unwrap();
    let Some(filter::ConfigType::TypedConfig(any)) = &listener.filter_chains[0].filters[0].config_type else { panic!() };
    let t = decode::<HttpConnectionManager>(any).unwrap().tracing.expect("a listener with tracing");
    assert_eq!(t.random_sampling.unwrap().value, 25.0);
    assert_eq!(t.operation, "%FILTER_STATE(wasm.mcp_span:PLAIN)%");
    let tags: Vec<&str> = t.custom_tags.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(tags, ["mcp.method", "mcp.server", "mcp.tool", "mcp.meta_traceparent"]);
    let Some(tracing::http::ConfigType::TypedConfig(any)) = &t.provider.unwrap().config_type else { panic!() };
    let otel: OpenTelemetryConfig = decode(any).unwrap();
    let uri = otel.http_service.unwrap().http_uri.unwrap();
    assert_eq!((uri.uri.as_str(), otel.service_name.as_str()), ("http://otel:4318/v1/traces", "mcp-gateway"));

    let plain = run(TWO, &[]).unwrap();
    assert!(!plain.filter_config.trace);
    let listener: Listener = decode(&plain.snapshot.resources[LISTENER_TYPE][0].1).unwrap();
    let Some(filter::ConfigType::TypedConfig(any)) = &listener.filter_chains[0].filters[0].config_type else { panic!() };
    assert!(decode::<HttpConnectionManager>(any).unwrap().tracing.is_none());

    for (bad, problem) in [
        ("gateway:\n  tracing: {otlp_endpoint: 'otel:4318'}\nservers: []\n", "gateway.tracing.otlp_endpoint"),
        ("gateway:\n  tracing: {otlp_endpoint: 'http://otel:4318', sampling_percent: 101}\nservers: []\n", "between 0 and 100"),
    ] {
        let e = load(bad, |_| None).unwrap_err().to_string();
        assert!(e.contains(problem), "{e}");
    }
}
