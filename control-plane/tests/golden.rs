//! Golden tests of the compiler: each catalog in `tests/fixtures/` is compiled
//! and every resource it gives Envoy is compared with a reviewed snapshot in
//! `tests/snapshots/<fixture>.snap`.
//!
//! A fixture is two files: `<name>.yaml`, a catalog as an operator writes it,
//! and `<name>.inputs.yaml`, everything else `compile` takes that the
//! controller would have read (the environment for `${VAR}`, the contents of
//! the files the catalog names, what discovery found on each server). What
//! the controller takes from its own settings is fixed here ([`MODULE_SHA256`],
//! [`FALLBACK_SESSION_KEY`], [`ADMIN`], [`GATEWAY_VERSION`],
//! [`INTERNAL_TOKEN`]); there is no previous configuration.
//!
//! A snapshot holds every resource of every type, each `Any` decoded into its
//! message by type URL (an unknown type URL fails the test) and shown as YAML
//! through the message's `Debug` output: fields at their protobuf default
//! (empty, zero, false, unset, an enum's zero value) are left out, as proto3
//! cannot tell them from unset; protobuf maps are sorted by key; wrappers
//! (`UInt32Value`, `BoolValue`, ...) show their value and durations read
//! `5s`. Inline bytes are elided, and the filter configuration is shown as
//! pretty-printed JSON. The version (a hash of every input) is replaced by
//! `<version>`: any change changes it, so it would only add noise to every
//! diff; the test checks instead that two compiles agree on it.
//!
//! # When a snapshot differs
//!
//! `cargo test -p mcp-control-plane --test golden` fails and prints the
//! difference; outside CI, insta also writes the new output next to the old
//! one as `tests/snapshots/<fixture>.snap.new` (with `CI` set it writes
//! nothing). A missing snapshot fails the same way. Never pass the test with
//! `INSTA_FORCE_PASS`.
//!
//! To accept a change after reading the difference:
//!
//! ```text
//! INSTA_UPDATE=always cargo test -p mcp-control-plane --test golden
//! git diff control-plane/tests/snapshots/     # review what changed, as a reviewer would
//! rm -f control-plane/tests/snapshots/*.snap.new
//! ```
//!
//! and commit the `.snap` files with the change that explains them. With
//! cargo-insta installed (`cargo install cargo-insta`), `cargo insta review`
//! shows each difference and accepts or rejects it instead.
//!
//! A new fixture: add `<name>.yaml` and `<name>.inputs.yaml`, add the name to
//! [`golden!`] below, create its snapshot with `INSTA_UPDATE=always` and read it
//! whole before committing it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::config::trace::v3::OpenTelemetryConfig;
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog;
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter;
use envoy_types::pb::envoy::extensions::access_loggers::grpc::v3::HttpGrpcAccessLogConfig;
use envoy_types::pb::envoy::extensions::filters::http::credential_injector::v3::CredentialInjector;
use envoy_types::pb::envoy::extensions::filters::http::dynamic_modules::v3::DynamicModuleFilter;
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::HeaderMutation;
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication;
use envoy_types::pb::envoy::extensions::filters::http::ratelimit::v3::RateLimit;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::http::upstream_codec::v3::UpstreamCodec;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::formatter::req_without_query::v3::ReqWithoutQuery;
use envoy_types::pb::envoy::extensions::http::injected_credentials::generic::v3::Generic;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{DownstreamTlsContext, Secret, UpstreamTlsContext};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::google::protobuf::StringValue;
use mcp_control_plane::catalog::{self, Catalog};
use mcp_control_plane::compile::{compile, Compiled, Credential, Inputs, TlsMaterial};
use mcp_control_plane::controller::session_config;
use mcp_control_plane::discovery::Discovered;
use mcp_control_plane::snapshot::{CLUSTER_TYPE, EXTENSION_CONFIG_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE};
use mcp_control_plane::upstream::UpstreamTls;
use mcp_filter::config::FilterConfig;
use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::{Mapping, Value as Yaml};

/// The filter module's SHA-256: that of an empty wasm module (its magic
/// number and version, `\0asm\x01\0\0\0`).
const MODULE_SHA256: &str = "93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476";
/// The controller's session key for catalogs without `gateway.session_key`.
const FALLBACK_SESSION_KEY: &str = "0000000000000000000000000000000000000000000000000000000000000001";
/// Where Envoy reaches the control plane's admin API.
const ADMIN: (&str, u16) = ("127.0.0.1", 18001);
const GATEWAY_VERSION: &str = "0.0.0-golden";
const INTERNAL_TOKEN: &str = "golden-internal-token";

/// One test per fixture, so that each fails (and is accepted) on its own.
macro_rules! golden {
    ($($test:ident => $fixture:literal,)*) => {
        $(#[test] fn $test() { check($fixture) })*
        const FIXTURES: &[&str] = &[$($fixture),*];
    };
}

golden! {
    defaults => "defaults",
    servers => "servers",
    offers => "offers",
    upstream_tls => "upstream-tls",
    upstream_oauth => "upstream-oauth",
    gateway_settings => "gateway-settings",
    auth => "auth",
    jwt_jwks_file => "jwt-jwks-file",
    jwt_jwks_uri => "jwt-jwks-uri",
    tls_listener_client_certificates => "tls-listener-client-certificates",
    tls_separate_listener => "tls-separate-listener",
    rate_limits => "rate-limits",
    observability => "observability",
    native_filter => "native-filter",
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture has a test and every snapshot a fixture: a fixture nobody
/// compiles, or a snapshot nobody compares, would look tested and not be.
/// (A fixture without its snapshot fails its own test.)
#[test]
fn every_fixture_is_tested_and_every_snapshot_has_its_fixture() {
    let names = |dir: &Path, suffix: &str| -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !n.ends_with(".inputs.yaml"))
            .filter_map(|n| n.strip_suffix(suffix).map(str::to_string))
            .collect();
        out.sort();
        out
    };
    let mut tested: Vec<String> = FIXTURES.iter().map(|f| f.to_string()).collect();
    tested.sort();
    assert_eq!(names(&fixtures_dir(), ".yaml"), tested, "each fixtures/<name>.yaml needs its name in golden! (and no other)");
    let snapshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let stale: Vec<String> = names(&snapshots, ".snap").into_iter().filter(|s| !tested.contains(s)).collect();
    assert!(stale.is_empty(), "snapshots without a fixture (delete a fixture's snapshot with it): {stale:?}");
}

/// What compile takes besides the catalog, as the controller reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureInputs {
    /// The environment `${VAR}` in the catalog is read from.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// The contents of the files the catalog names, by the name it gives
    /// them (gateway.tls.*, gateway.auth.jwt.jwks_file, servers' tls.*).
    #[serde(default)]
    files: BTreeMap<String, String>,
    /// What discovery found, by server; a server left out was not discovered.
    #[serde(default)]
    offers: BTreeMap<String, Offer>,
}

/// [`Discovered`], as a fixture writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Offer {
    #[serde(default)]
    capabilities: Json,
    #[serde(default)]
    instructions: Option<String>,
    stateful: bool,
    #[serde(default)]
    protocol_version: Option<String>,
    #[serde(default)]
    stateless_era: bool,
    #[serde(default)]
    modern_only: bool,
    #[serde(default)]
    tools: Vec<Json>,
    #[serde(default)]
    prompts: Vec<Json>,
    #[serde(default)]
    resources: Vec<Json>,
    #[serde(default)]
    resource_templates: Vec<Json>,
}

impl From<Offer> for Discovered {
    fn from(o: Offer) -> Self {
        Discovered {
            capabilities: o.capabilities,
            instructions: o.instructions,
            stateful: o.stateful,
            protocol_version: o.protocol_version,
            stateless_era: o.stateless_era,
            modern_only: o.modern_only,
            tools: o.tools,
            prompts: o.prompts,
            resources: o.resources,
            resource_templates: o.resource_templates,
        }
    }
}

/// Serves the catalog's files from the fixture, and notes which were read.
struct Files {
    fixture: String,
    contents: BTreeMap<String, String>,
    read: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Files {
    fn get(&self, name: &str) -> String {
        self.read.borrow_mut().insert(name.to_string());
        self.contents.get(name).cloned().unwrap_or_else(|| panic!("{}: the catalog names {name:?}: add it under files:", self.fixture))
    }
}

fn check(fixture: &str) {
    let dir = fixtures_dir();
    let read = |file: String| std::fs::read_to_string(dir.join(&file)).unwrap_or_else(|e| panic!("fixtures/{file}: {e}"));
    let inputs: FixtureInputs =
        serde_yaml::from_str(&read(format!("{fixture}.inputs.yaml"))).unwrap_or_else(|e| panic!("fixtures/{fixture}.inputs.yaml: {e}"));
    let catalog = catalog::load(&read(format!("{fixture}.yaml")), |name| inputs.env.get(name).cloned())
        .unwrap_or_else(|e| panic!("fixtures/{fixture}.yaml: {e}"));
    let files = Files { fixture: format!("fixtures/{fixture}.inputs.yaml"), contents: inputs.files, read: Default::default() };
    let discovered: BTreeMap<String, Discovered> = inputs.offers.into_iter().map(|(server, o)| (server, o.into())).collect();
    for server in discovered.keys() {
        assert!(
            catalog.servers.iter().any(|s| &s.name == server),
            "fixtures/{fixture}.inputs.yaml: offers of {server:?}, not in the catalog"
        );
    }

    let compiled = run(&catalog, &discovered, &files);
    assert_eq!(compiled.snapshot.version, run(&catalog, &discovered, &files).snapshot.version, "the same inputs, the same version");
    let unread: Vec<&String> = files.contents.keys().filter(|f| !files.read.borrow().contains(*f)).collect();
    assert!(unread.is_empty(), "fixtures/{fixture}.inputs.yaml: files the catalog does not name: {unread:?}");

    let text = render(&compiled);
    assert_eq!(text, render(&run(&catalog, &discovered, &files)), "the rendering is stable");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(format!("compile(fixtures/{fixture}.yaml, fixtures/{fixture}.inputs.yaml)"));
    settings.bind(|| insta::assert_snapshot!(fixture, text));
}

/// Pretty-printed JSON whose definitions kept as text (`Definition`, written
/// on one line) are pretty-printed like the rest, at their indentation.
fn pretty_definitions(text: &str) -> String {
    let mut lines = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let Some(rest) = line.trim_start().strip_prefix("\"definition\": ").filter(|r| *r != "{" && *r != "[") else {
            lines.push(line.to_string());
            continue;
        };
        let (json, comma) = rest.strip_suffix(',').map_or((rest, ""), |j| (j, ","));
        let value: Json = serde_json::from_str(json).expect("a definition is JSON");
        let pretty = serde_json::to_string_pretty(&value).unwrap().replace('\n', &format!("\n{}", " ".repeat(indent)));
        lines.push(format!("{}\"definition\": {pretty}{comma}", " ".repeat(indent)));
    }
    lines.join("\n")
}

/// Compiles as the controller does (`Controller::try_reload`), with the
/// files read from the fixture instead of the disk.
fn run(catalog: &Catalog, discovered: &BTreeMap<String, Discovered>, files: &Files) -> Compiled {
    let g = &catalog.gateway;
    let session = session_config(catalog, FALLBACK_SESSION_KEY);
    let jwks = g.auth.as_ref().and_then(|a| a.jwt.as_ref()).and_then(|j| j.jwks_file.as_deref()).map(|f| files.get(f));
    let tls_files =
        g.tls.as_ref().map(|t| (files.get(&t.cert_file), files.get(&t.key_file), t.client_ca_file.as_deref().map(|f| files.get(f))));
    let upstream_tls: BTreeMap<String, UpstreamTls> = catalog
        .servers
        .iter()
        .filter_map(|s| {
            let t = s.tls.as_ref()?;
            let get = |f: &Option<String>| f.as_deref().map(|f| files.get(f));
            Some((
                s.name.clone(),
                UpstreamTls { ca: get(&t.ca_file), client_cert: get(&t.client_cert_file), client_key: get(&t.client_key_file) },
            ))
        })
        .collect();
    // A server with `oauth` holds a token, as the control plane would.
    let credentials = catalog
        .servers
        .iter()
        .filter(|s| s.oauth.is_some())
        .map(|s| (s.name.clone(), Credential::Token(format!("golden-token-of-{}", s.name))))
        .collect();
    let inputs = Inputs {
        catalog,
        discovered,
        module_sha256: MODULE_SHA256,
        session: &session,
        admin: ADMIN,
        gateway_version: GATEWAY_VERSION,
        jwks: jwks.as_deref(),
        internal_token: INTERNAL_TOKEN,
        tls: tls_files.as_ref().map(|(cert, key, client_ca)| TlsMaterial { cert, key, client_ca: client_ca.as_deref() }),
        upstream_tls: &upstream_tls,
        previous: None,
        held: &Default::default(),
        credentials: &credentials,
    };
    compile(&inputs).unwrap_or_else(|e| panic!("compile: {e}"))
}

/// The snapshot's text: the version, what was left out of the lists, then
/// the resources of each type in the order they are pushed.
fn render(c: &Compiled) -> String {
    let version = &c.snapshot.version;
    assert!(version.len() == 16 && version.bytes().all(|b| b.is_ascii_hexdigit()), "version {version:?}");
    // The filter configuration carries the snapshot's version, but for
    // servers' OAuth tokens: they change the snapshot (an SDS secret) and
    // leave the filter's configuration as it was.
    let tokens = c.snapshot.resources_of(SECRET_TYPE).iter().any(|(name, _)| name.starts_with("mcp_token/"));
    assert!(tokens || &c.filter_config.version == version, "the filter configuration carries the snapshot's version");
    let mut doc = Mapping::new();
    doc.insert("version".into(), "<version>".into());
    doc.insert("dropped".into(), serde_yaml::to_value(&c.dropped).unwrap());
    let renderer = Renderer { compiled: c };
    for (key, type_url) in [
        ("clusters", CLUSTER_TYPE),
        ("secrets", SECRET_TYPE),
        ("extension_configs", EXTENSION_CONFIG_TYPE),
        ("listeners", LISTENER_TYPE),
        ("routes", ROUTE_TYPE),
    ] {
        let items = c
            .snapshot
            .resources_of(type_url)
            .iter()
            .map(|(name, any)| {
                assert_eq!(any.type_url, type_url, "resource {name:?}");
                let item = renderer.any(&any.type_url, &any.value);
                assert_eq!(item.get("name").and_then(Yaml::as_str), Some(name.as_str()), "a resource is published under its own name");
                item
            })
            .collect();
        doc.insert(key.into(), Yaml::Sequence(items));
    }
    let others: Vec<&String> = c
        .snapshot
        .resources
        .keys()
        .filter(|t| ![CLUSTER_TYPE, SECRET_TYPE, EXTENSION_CONFIG_TYPE, LISTENER_TYPE, ROUTE_TYPE].contains(&t.as_str()))
        .collect();
    assert!(others.is_empty(), "resources of a type this test does not show: {others:?}");
    serde_yaml::to_string(&doc).unwrap()
}

struct Renderer<'a> {
    compiled: &'a Compiled,
}

/// Decodes `bytes` as the message the type URL names, as its `Debug` text.
macro_rules! debug_of {
    ($type_url:expr, $bytes:expr, [$($message:ty),* $(,)?]) => {{
        $(
            if $type_url == <$message as prost::Name>::type_url() {
                let m = <$message as prost::Message>::decode($bytes).unwrap_or_else(|e| panic!("{}: {e}", $type_url));
                Some(format!("{m:#?}"))
            } else
        )* { None }
    }};
}

impl Renderer<'_> {
    /// A packed message, decoded and shown with its type URL first.
    fn any(&self, type_url: &str, bytes: &[u8]) -> Yaml {
        if type_url == <StringValue as prost::Name>::type_url() {
            return self.string_value(type_url, bytes);
        }
        let debug = debug_of!(
            type_url,
            bytes,
            [
                Cluster,
                Listener,
                RouteConfiguration,
                TypedExtensionConfig,
                Secret,
                Wasm,
                DynamicModuleFilter,
                HttpConnectionManager,
                Router,
                JwtAuthentication,
                HeaderMutation,
                RateLimit,
                FileAccessLog,
                HttpGrpcAccessLogConfig,
                ExpressionFilter,
                ReqWithoutQuery,
                HttpProtocolOptions,
                UpstreamTlsContext,
                DownstreamTlsContext,
                OpenTelemetryConfig,
                CredentialInjector,
                Generic,
                UpstreamCodec,
            ]
        )
        .unwrap_or_else(|| panic!("compile packs a {type_url}: add its message to Renderer::any"));
        let mut out = Mapping::new();
        out.insert("@type".into(), type_url.into());
        // A message with no field set is its name alone: nothing to add.
        if let Yaml::Mapping(fields) = self.node(&parse_debug(&debug)) {
            out.extend(fields);
        }
        Yaml::Mapping(out)
    }

    /// The only `StringValue` compile packs is the filter's configuration:
    /// shown as pretty-printed JSON, after checking that it is exactly the
    /// compiled [`FilterConfig`].
    fn string_value(&self, type_url: &str, bytes: &[u8]) -> Yaml {
        let text = <StringValue as prost::Message>::decode(bytes).expect("a StringValue").value;
        let mut config: FilterConfig = serde_json::from_str(&text).expect("the plugin configuration is a FilterConfig");
        assert_eq!(config, self.compiled.filter_config, "the filter reads back what was compiled");
        assert_eq!(text, serde_json::to_string(&config).unwrap(), "the JSON is serde's, so the pretty print below shows it faithfully");
        config.version = "<version>".into();
        let mut out = Mapping::new();
        out.insert("@type".into(), type_url.into());
        out.insert("value".into(), format!("{}\n", pretty_definitions(&serde_json::to_string_pretty(&config).unwrap())).into());
        Yaml::Mapping(out)
    }

    fn node(&self, node: &Node) -> Yaml {
        match node {
            Node::Struct(name, fields) => self.structure(name, fields),
            Node::Map(entries) => {
                let mut sorted: Vec<&(String, Node)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                Yaml::Mapping(sorted.into_iter().map(|(k, v)| (Yaml::String(k.clone()), self.node(v))).collect())
            }
            Node::List(items) => Yaml::Sequence(items.iter().map(|i| self.node(i)).collect()),
            Node::Tuple(name, items) => match (name.as_str(), items.as_slice()) {
                ("Some", [inner]) => self.node(inner),
                ("InlineBytes", [Node::List(bytes)]) => {
                    let bytes = bytes_of(bytes);
                    single(name, Yaml::String(format!("<bytes: {} bytes, elided>", bytes.len())))
                }
                (_, [inner]) => single(name, self.node(inner)),
                (_, items) => single(name, Yaml::Sequence(items.iter().map(|i| self.node(i)).collect())),
            },
            Node::Scalar(s) => scalar(s),
        }
    }

    fn structure(&self, name: &str, fields: &[(String, Node)]) -> Yaml {
        let field = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        match (name, fields.len()) {
            ("Any", 2) => {
                let (Some(Node::Scalar(url)), Some(Node::List(bytes))) = (field("type_url"), field("value")) else {
                    panic!("an Any without type_url and value: {fields:?}")
                };
                return self.any(&unquote(url), &bytes_of(bytes));
            }
            ("Duration", 2) => {
                let (Some(Node::Scalar(s)), Some(Node::Scalar(n))) = (field("seconds"), field("nanos")) else { panic!("{fields:?}") };
                let nanos: u32 = n.parse().unwrap();
                let fraction = if nanos == 0 { String::new() } else { format!(".{nanos:09}").trim_end_matches('0').to_string() };
                return Yaml::String(format!("{s}{fraction}s"));
            }
            ("BoolValue" | "UInt32Value" | "UInt64Value" | "Int32Value" | "Int64Value" | "DoubleValue" | "FloatValue", 1) => {
                if let Some(v) = field("value") {
                    return self.node(v);
                }
            }
            // google.protobuf.Struct and Value, as JSON would show them.
            ("Struct", 1) => {
                if let Some(map) = field("fields") {
                    return self.node(map);
                }
            }
            ("Value", 1) => {
                if let Some(Node::Tuple(some, kind)) = field("kind") {
                    if let (true, [Node::Tuple(_, value)]) = (some == "Some", kind.as_slice()) {
                        if let [value] = value.as_slice() {
                            return self.node(value);
                        }
                    }
                }
            }
            _ => {}
        }
        let shown = fields.iter().filter(|(k, v)| !is_default(v) && !is_zero_enum(k, v));
        Yaml::Mapping(shown.map(|(k, v)| (Yaml::String(k.clone()), self.node(v))).collect())
    }
}

fn single(key: &str, value: Yaml) -> Yaml {
    Yaml::Mapping([(Yaml::String(key.to_string()), value)].into_iter().collect())
}

/// A field proto3 does not distinguish from an unset one (enums aside:
/// [`is_zero_enum`]).
fn is_default(node: &Node) -> bool {
    match node {
        Node::Scalar(s) => matches!(s.as_str(), "None" | "\"\"" | "0" | "0.0" | "false"),
        Node::List(items) => items.is_empty(),
        Node::Map(entries) => entries.is_empty(),
        Node::Struct(..) | Node::Tuple(..) => false,
    }
}

/// Whether `field` is an enum at its zero value, which proto3 does not
/// distinguish from unset either. `Debug` shows an enum by its variant's
/// name, so the zero variant of each enum field compile's resources hold is
/// named here, computed from its type: an enum missing from the list is
/// shown at zero, never hidden at another value.
fn is_zero_enum(field: &str, value: &Node) -> bool {
    use envoy_types::pb::envoy::config::accesslog::v3::comparison_filter;
    use envoy_types::pb::envoy::config::cluster::v3::cluster;
    use envoy_types::pb::envoy::config::core::v3::{
        http_protocol_options, socket_address, HealthStatus, RoutingPriority, TrafficDirection,
    };
    use envoy_types::pb::envoy::config::listener::v3::listener;
    use envoy_types::pb::envoy::config::route::v3::{rate_limit as route_rate_limit, route_action};
    use envoy_types::pb::envoy::extensions::filters::http::ratelimit::v3::rate_limit as ratelimit_filter;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager as hcm;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{certificate_validation_context, downstream_tls_context};
    use std::sync::LazyLock;
    macro_rules! zeros {
        ($($field:literal: $enum:ty,)*) => {
            vec![$(($field, format!("{:?}", <$enum>::try_from(0).expect("proto3 enums have a zero")))),*]
        };
    }
    static ZEROS: LazyLock<Vec<(&str, String)>> = LazyLock::new(|| {
        zeros! {
            "cluster_not_found_response_code": route_action::ClusterNotFoundResponseCode,
            "codec_type": hcm::CodecType,
            "dns_lookup_family": cluster::DnsLookupFamily,
            "drain_type": listener::DrainType,
            "enable_x_ratelimit_headers": ratelimit_filter::XRateLimitHeadersRfcVersion,
            "forward_client_cert_details": hcm::ForwardClientCertDetails,
            "headers_with_underscores_action": http_protocol_options::HeadersWithUnderscoresAction,
            "health_status": HealthStatus,
            "internal_redirect_action": route_action::InternalRedirectAction,
            "lb_policy": cluster::LbPolicy,
            "ocsp_staple_policy": downstream_tls_context::OcspStaplePolicy,
            "op": comparison_filter::Op,
            "path_with_escaped_slashes_action": hcm::PathWithEscapedSlashesAction,
            "priority": RoutingPriority,
            "protocol": socket_address::Protocol,
            "protocol_selection": cluster::ClusterProtocolSelection,
            "server_header_transformation": hcm::ServerHeaderTransformation,
            "traffic_direction": TrafficDirection,
            "trust_chain_verification": certificate_validation_context::TrustChainVerification,
            "x_ratelimit_option": route_rate_limit::XRateLimitOption,
        }
    });
    matches!(value, Node::Scalar(v) if ZEROS.iter().any(|(f, zero)| *f == field && zero == v))
}

fn bytes_of(items: &[Node]) -> Vec<u8> {
    items
        .iter()
        .map(|i| match i {
            Node::Scalar(b) => b.parse().unwrap_or_else(|_| panic!("not a byte: {b}")),
            other => panic!("not a byte: {other:?}"),
        })
        .collect()
}

fn scalar(s: &str) -> Yaml {
    if s.starts_with('"') {
        return Yaml::String(unquote(s));
    }
    match s {
        "true" => Yaml::Bool(true),
        "false" => Yaml::Bool(false),
        "None" => Yaml::Null,
        _ => {
            if let Ok(n) = s.parse::<i64>() {
                Yaml::Number(n.into())
            } else if let Ok(n) = s.parse::<u64>() {
                Yaml::Number(n.into())
            } else if let Ok(n) = s.parse::<f64>() {
                Yaml::Number(n.into())
            } else {
                // An enum variant, or a message with no field set.
                Yaml::String(s.to_string())
            }
        }
    }
}

/// A value in `{:#?}` output.
#[derive(Debug)]
enum Node {
    /// `Name { field: value, ... }`
    Struct(String, Vec<(String, Node)>),
    /// `{ "key": value, ... }`
    Map(Vec<(String, Node)>),
    /// `[ value, ... ]`
    List(Vec<Node>),
    /// `Name( value, ... )`: `Some`, a oneof's variant.
    Tuple(String, Vec<Node>),
    /// A number, `true`, a quoted string, `None`, an enum variant.
    Scalar(String),
}

/// Parses pretty `Debug` output (`{:#?}`): one item per line, each block
/// opened at the end of a line and closed on a line of its own, strings
/// quoted and escaped on one line.
fn parse_debug(text: &str) -> Node {
    let mut lines = text.lines().map(str::trim);
    let first = lines.next().expect("Debug output");
    let node = parse_value(first, &mut lines);
    assert!(lines.next().is_none(), "Debug output past its end");
    node
}

fn parse_value<'a>(v: &'a str, lines: &mut impl Iterator<Item = &'a str>) -> Node {
    if v.starts_with('"') {
        return Node::Scalar(v.to_string());
    }
    if let Some(name) = v.strip_suffix('{') {
        let (name, entries) = (name.trim(), parse_entries(lines));
        return if name.is_empty() { Node::Map(entries) } else { Node::Struct(name.to_string(), entries) };
    }
    if v.ends_with('[') {
        return Node::List(parse_items(lines, "]"));
    }
    if let Some(name) = v.strip_suffix('(') {
        return Node::Tuple(name.to_string(), parse_items(lines, ")"));
    }
    match v {
        "[]" => Node::List(Vec::new()),
        "{}" => Node::Map(Vec::new()),
        _ => Node::Scalar(v.to_string()),
    }
}

fn next_item<'a>(lines: &mut impl Iterator<Item = &'a str>) -> &'a str {
    let line = lines.next().expect("Debug output ends inside a block");
    line.strip_suffix(',').unwrap_or(line)
}

fn parse_items<'a>(lines: &mut impl Iterator<Item = &'a str>, close: &str) -> Vec<Node> {
    let mut out = Vec::new();
    loop {
        let line = next_item(lines);
        if line == close {
            return out;
        }
        out.push(parse_value(line, lines));
    }
}

fn parse_entries<'a>(lines: &mut impl Iterator<Item = &'a str>) -> Vec<(String, Node)> {
    let mut out = Vec::new();
    loop {
        let line = next_item(lines);
        if line == "}" {
            return out;
        }
        // A map's key is a quoted string; a struct's, a field name.
        let (key, rest) = if line.starts_with('"') {
            let end = quoted_len(line);
            (unquote(&line[..end]), line[end..].strip_prefix(": ").expect("a map entry"))
        } else {
            let (key, rest) = line.split_once(": ").unwrap_or_else(|| panic!("not a field: {line}"));
            (key.trim_start_matches("r#").to_string(), rest)
        };
        out.push((key, parse_value(rest, lines)));
    }
}

/// The length of the quoted string `s` starts with, quotes included.
fn quoted_len(s: &str) -> usize {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return i + 1,
            _ => {}
        }
    }
    panic!("an unterminated string: {s}")
}

/// The text of a string as `Debug` quotes it.
fn unquote(s: &str) -> String {
    let inner = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or_else(|| panic!("not a quoted string: {s}"));
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some('u') => {
                let hex: String = chars.by_ref().skip(1).take_while(|c| *c != '}').collect();
                out.push(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).expect("a \\u{..} escape"));
            }
            Some(other) => out.push(other),
            None => panic!("a trailing backslash: {s}"),
        }
    }
    out
}

#[test]
fn parses_debug_output() {
    #[derive(Debug)]
    #[allow(dead_code)]
    struct Inner {
        r#type: &'static str,
        n: Option<u32>,
        e: (),
    }
    #[derive(Debug)]
    #[allow(dead_code)]
    struct Outer {
        text: &'static str,
        map: BTreeMap<&'static str, Inner>,
        list: Vec<u8>,
        empty: Vec<u8>,
    }
    let outer = Outer {
        text: "a \"quoted\", {odd} [text]\nwith\ttabs \u{1}",
        map: BTreeMap::from([("k: ey", Inner { r#type: "t", n: Some(3), e: () })]),
        list: vec![1, 2],
        empty: vec![],
    };
    let Node::Struct(name, fields) = parse_debug(&format!("{outer:#?}")) else { panic!() };
    assert_eq!(name, "Outer");
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["text", "map", "list", "empty"]);
    let Node::Scalar(text) = &fields[0].1 else { panic!() };
    assert_eq!(unquote(text), outer.text);
    let Node::Map(map) = &fields[1].1 else { panic!() };
    assert_eq!(map[0].0, "k: ey");
    let Node::Struct(_, inner) = &map[0].1 else { panic!() };
    assert_eq!(inner[0].0, "type");
    assert!(matches!(&inner[1].1, Node::Tuple(s, v) if s == "Some" && matches!(v.as_slice(), [Node::Scalar(n)] if n == "3")));
    assert!(matches!(&fields[2].1, Node::List(v) if v.len() == 2));
    assert!(is_default(&fields[3].1));
}
