//! The Envoy side of authentication and the audit log: the `jwt_authn`
//! filter (and what keeps clients from forging its output), the cluster of a
//! remote JWKS, and the access log that writes one JSON line per decision.

use envoy_types::pb::envoy::config::accesslog::v3::{access_log, access_log_filter, AccessLog, AccessLogFilter, ExtensionFilter};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::common::mutation_rules::v3::{header_mutation, HeaderMutation};
use envoy_types::pb::envoy::config::core::v3::{
    data_source, header_value_option, http_uri, substitution_format_string, DataSource, HeaderValue, HeaderValueOption, HttpUri,
    SubstitutionFormatString,
};
use envoy_types::pb::envoy::config::route::v3::{route_match, RouteMatch};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{file_access_log, FileAccessLog};
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter;
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::{HeaderMutation as HeaderMutationFilter, Mutations};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_provider, jwt_requirement, requirement_rule, JwtAuthentication, JwtHeader, JwtProvider, JwtRequirement, JwtRequirementOrList,
    RemoteJwks, RequirementRule,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::google::protobuf::{value, Duration as PbDuration, Empty, Struct, Value as PbValue};
use envoy_types::util::pack_any;
use mcp_filter::config::{
    DECISION_PROPERTY, JWT_FAILURE_HEADER, JWT_FAILURE_METADATA, JWT_PAYLOAD_HEADER, METHOD_PROPERTY, PRINCIPAL_PROPERTY, REASON_PROPERTY,
    REQUEST_ID_PROPERTY, SERVER_PROPERTY, TARGET_PROPERTY,
};

use crate::catalog::{Endpoint, JwtSettings};

/// The cluster Envoy fetches a remote JWKS from.
pub const JWKS_CLUSTER: &str = "gateway_jwks";
const PROVIDER: &str = "gateway";

/// The JWKS of an HS256 shared secret: one symmetric (`oct`) key.
fn hs256_jwks(secret: &str) -> String {
    use base64::Engine as _;
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_bytes());
    serde_json::json!({ "keys": [{ "kty": "oct", "alg": "HS256", "k": k }] }).to_string()
}

/// The filters that go before the MCP filter when JWTs are accepted, and
/// the cluster of a remote JWKS if one is used. `jwks_text` is the content
/// of `jwks_file`, read by the caller (compile reads no file).
///
/// A token that fails verification is not refused here: the MCP filter
/// refuses it, with a JSON-RPC error and the reason Envoy recorded, after
/// checking whether it is an API key instead.
pub fn jwt_filters(jwt: &JwtSettings, jwks_text: Option<&str>) -> Vec<HttpFilter> {
    let source = match (&jwt.hs256_secret, jwks_text, &jwt.jwks_uri) {
        (Some(secret), _, _) => jwt_provider::JwksSourceSpecifier::LocalJwks(inline(hs256_jwks(secret))),
        (None, Some(text), _) => jwt_provider::JwksSourceSpecifier::LocalJwks(inline(text.to_string())),
        (None, None, Some(uri)) => jwt_provider::JwksSourceSpecifier::RemoteJwks(RemoteJwks {
            http_uri: Some(HttpUri {
                uri: uri.clone(),
                timeout: Some(PbDuration { seconds: 5, nanos: 0 }),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(JWKS_CLUSTER.into())),
            }),
            cache_duration: Some(PbDuration { seconds: 300, nanos: 0 }),
            ..Default::default()
        }),
        // Validation requires one source; an empty key set refuses every token.
        (None, None, None) => jwt_provider::JwksSourceSpecifier::LocalJwks(inline(r#"{"keys":[]}"#.into())),
    };
    let provider = JwtProvider {
        issuer: jwt.issuer.clone(),
        audiences: jwt.audiences.clone(),
        // Only the Authorization header: never a token in the query string,
        // where logs would keep it. The token is what follows the scheme word,
        // in any case: RFC 9110 makes `bearer` and `Bearer` one scheme, and
        // jwt_authn matches a prefix exactly. The MCP filter uses the payload
        // only if the client's credential is that token under `Bearer`.
        from_headers: vec![JwtHeader { name: "authorization".into(), value_prefix: " ".into() }],
        forward: true,
        forward_payload_header: JWT_PAYLOAD_HEADER.into(),
        // A token without `exp` would be good forever once stolen.
        require_expiration: jwt.require_expiration,
        failed_status_in_metadata: JWT_FAILURE_METADATA.into(),
        jwks_source_specifier: Some(source),
        ..Default::default()
    };
    let requirement = JwtRequirement {
        requires_type: Some(jwt_requirement::RequiresType::RequiresAny(JwtRequirementOrList {
            requirements: vec![
                JwtRequirement { requires_type: Some(jwt_requirement::RequiresType::ProviderName(PROVIDER.into())) },
                JwtRequirement { requires_type: Some(jwt_requirement::RequiresType::AllowMissingOrFailed(Empty {})) },
            ],
        })),
    };
    let authn = JwtAuthentication {
        providers: [(PROVIDER.to_string(), provider)].into_iter().collect(),
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch { path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())), ..Default::default() }),
            requirement_type: Some(requirement_rule::RequirementType::Requires(requirement)),
        }],
        ..Default::default()
    };
    // What a client sends under the payload and failure headers is dropped
    // first: only jwt_authn (and the copy below) may write them.
    let strip = HeaderMutationFilter {
        mutations: Some(Mutations {
            request_mutations: [JWT_PAYLOAD_HEADER, JWT_FAILURE_HEADER]
                .map(|h| HeaderMutation { action: Some(header_mutation::Action::Remove(h.into())) })
                .to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Why jwt_authn refused a token, from its metadata into a header the
    // filter reads (Envoy writes nothing when there is no refusal).
    let failure = HeaderMutationFilter {
        mutations: Some(Mutations {
            request_mutations: vec![HeaderMutation {
                action: Some(header_mutation::Action::Append(HeaderValueOption {
                    header: Some(HeaderValue {
                        key: JWT_FAILURE_HEADER.into(),
                        value: format!("%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:{JWT_FAILURE_METADATA}:message)%"),
                        ..Default::default()
                    }),
                    append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                    ..Default::default()
                })),
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![
        HttpFilter {
            name: "envoy.filters.http.header_mutation".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(strip))),
            ..Default::default()
        },
        HttpFilter {
            name: "envoy.filters.http.jwt_authn".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(authn))),
            ..Default::default()
        },
        HttpFilter {
            name: "envoy.filters.http.header_mutation".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(failure))),
            ..Default::default()
        },
    ]
}

/// The cluster that reaches a remote JWKS.
pub fn jwks_cluster(ep: &Endpoint, ca_file: &str) -> Cluster {
    super::upstream_cluster(JWKS_CLUSTER, ep, ca_file, None)
}

fn inline(text: String) -> DataSource {
    DataSource { specifier: Some(data_source::Specifier::InlineString(text)), ..Default::default() }
}

/// The audit log: one JSON line per request on which the filter decided
/// (authorized, refused, rate limited), written by Envoy to `path`.
pub fn audit_log(path: &str) -> AccessLog {
    let state = |name: &str| format!("%FILTER_STATE(wasm.{name}:PLAIN)%");
    let fields = [
        ("time", "%START_TIME%".to_string()),
        ("principal", state(PRINCIPAL_PROPERTY)),
        ("method", state(METHOD_PROPERTY)),
        ("server", state(SERVER_PROPERTY)),
        ("target", state(TARGET_PROPERTY)),
        ("decision", state(DECISION_PROPERTY)),
        ("reason", state(REASON_PROPERTY)),
        ("request_id", state(REQUEST_ID_PROPERTY)),
        ("status", "%RESPONSE_CODE%".to_string()),
        ("client", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%".to_string()),
    ];
    let json =
        Struct { fields: fields.into_iter().map(|(k, v)| (k.to_string(), PbValue { kind: Some(value::Kind::StringValue(v)) })).collect() };
    let file = FileAccessLog {
        path: path.to_string(),
        access_log_format: Some(file_access_log::AccessLogFormat::LogFormat(SubstitutionFormatString {
            format: Some(substitution_format_string::Format::JsonFormat(json)),
            ..Default::default()
        })),
    };
    AccessLog {
        name: "mcp_audit".into(),
        filter: Some(only_decisions()),
        config_type: Some(access_log::ConfigType::TypedConfig(pack_any(file))),
    }
}

/// The same decisions, streamed to the control plane's access log service
/// (`telemetry`), which keeps the latest for the operator's console. Envoy
/// buffers them and sends a batch a second; the stream is lossy by design.
pub fn audit_to_control_plane() -> AccessLog {
    use envoy_types::pb::envoy::extensions::access_loggers::grpc::v3::{CommonGrpcAccessLogConfig, HttpGrpcAccessLogConfig};
    let state = [PRINCIPAL_PROPERTY, METHOD_PROPERTY, SERVER_PROPERTY, TARGET_PROPERTY, DECISION_PROPERTY, REASON_PROPERTY];
    let grpc = HttpGrpcAccessLogConfig {
        common_config: Some(CommonGrpcAccessLogConfig {
            log_name: "mcp_audit".into(),
            grpc_service: Some(super::rls::control_plane_grpc()),
            transport_api_version: envoy_types::pb::envoy::config::core::v3::ApiVersion::V3 as i32,
            filter_state_objects_to_log: state.iter().map(|name| format!("wasm.{name}")).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    AccessLog {
        name: "mcp_audit_console".into(),
        filter: Some(only_decisions()),
        config_type: Some(access_log::ConfigType::TypedConfig(pack_any(grpc))),
    }
}

/// Only the requests on which the filter decided.
fn only_decisions() -> AccessLogFilter {
    let cel = ExpressionFilter { expression: format!("'wasm.{DECISION_PROPERTY}' in filter_state"), ..Default::default() };
    AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::ExtensionFilter(ExtensionFilter {
            name: "envoy.access_loggers.extension_filters.cel".into(),
            config_type: Some(envoy_types::pb::envoy::config::accesslog::v3::extension_filter::ConfigType::TypedConfig(pack_any(cel))),
        })),
    }
}
