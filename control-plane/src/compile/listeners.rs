//! The listeners Envoy serves the MCP endpoint on, their HTTP connection
//! manager (the filters in order, timeouts, the local replies rewritten as
//! JSON-RPC errors) and the route table. Pure, as all of `compile`.

use std::time::Duration;

use envoy_types::pb::envoy::config::accesslog::v3::{
    access_log_filter, comparison_filter, AccessLogFilter, ComparisonFilter, HeaderFilter, ResponseFlagFilter, StatusCodeFilter,
};
use envoy_types::pb::envoy::config::core::v3::http_protocol_options::HeadersWithUnderscoresAction;
use envoy_types::pb::envoy::config::core::v3::Http2ProtocolOptions;
use envoy_types::pb::envoy::config::core::v3::HttpProtocolOptions as HttpProtocolOptionsCommon;
use envoy_types::pb::envoy::config::core::v3::RuntimeUInt32;
use envoy_types::pb::envoy::config::core::v3::{substitution_format_string, SubstitutionFormatString};
use envoy_types::pb::envoy::config::core::v3::{DataSource, ExtensionConfigSource};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, route, route_action, route_match, HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::dynamic_modules::v3::DynamicModuleFilter;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing as HcmTracing;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, LocalReplyConfig, Rds, ResponseMapper,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::{BoolValue, Duration as PbDuration, UInt32Value};
use envoy_types::util::pack_any;
use mcp_filter::config::{RateLimit, CLUSTER_HEADER, OWN_REPLY_PROPERTY, REQUEST_ID_PROPERTY, SERVER_PROPERTY};

use super::{
    access_log, ads, audited, duration, rls, security, socket, tls, ADMIN_CLUSTER, ADMIN_PATHS, FILTER_NAME, LISTENER_NAME, ROUTE_NAME,
    TLS_LISTENER_NAME,
};
use crate::catalog::GatewaySettings;

/// Requests one client's HTTP/2 connection may have in flight at once.
const MAX_CONCURRENT_STREAMS: u32 = 100;

/// The MCP listener, and the TLS one: `gateway.listen` speaks TLS itself
/// unless `gateway.tls.listen` names a listener of its own.
pub(super) fn listeners(g: &GatewaySettings, jwks: Option<&str>, tls: bool, traced: Option<HcmTracing>) -> Vec<Listener> {
    let hcm = HttpConnectionManager { tracing: traced, ..connection_manager(g, jwks) };
    match (g.tls.as_ref().filter(|_| tls), g.tls.as_ref().and_then(|t| t.listen.as_deref())) {
        (Some(t), Some(tls_listen)) if tls => vec![
            listener(LISTENER_NAME, &g.listen, g.max_body_bytes, hcm.clone(), None),
            listener(TLS_LISTENER_NAME, tls_listen, g.max_body_bytes, hcm, Some(t)),
        ],
        (t, _) => vec![listener(LISTENER_NAME, &g.listen, g.max_body_bytes, hcm, t)],
    }
}

pub(super) fn listener(
    name: &str,
    listen: &str,
    max_body_bytes: usize,
    hcm: HttpConnectionManager,
    tls: Option<&crate::catalog::TlsSettings>,
) -> Listener {
    let (host, port) = listen.rsplit_once(':').unwrap_or((listen, "4444"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Listener {
        name: name.into(),
        address: Some(socket(host, port.parse().unwrap_or(4444))),
        // Room for the largest body the filter accepts, so that the filter,
        // not Envoy's buffer limit, answers an oversized one with JSON-RPC.
        per_connection_buffer_limit_bytes: Some(UInt32Value {
            value: u32::try_from(max_body_bytes.saturating_add(64 * 1024)).unwrap_or(u32::MAX),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
            }],
            transport_socket: tls.map(tls::downstream),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The HTTP filters, in order: JWT verification (if JWTs are accepted), the
/// MCP filter, Envoy's rate limit filter (if limits are global; after the
/// MCP filter, which names the buckets), the router.
pub(super) fn mcp_filters(g: &GatewaySettings, jwks: Option<&str>) -> Vec<HttpFilter> {
    let mut filters = g.auth.as_ref().and_then(|a| a.jwt.as_ref()).map(|j| security::jwt_filters(j, jwks)).unwrap_or_default();
    filters.push(HttpFilter {
        name: FILTER_NAME.into(),
        config_type: Some(http_filter::ConfigType::ConfigDiscovery(ExtensionConfigSource {
            config_source: Some(ads()),
            // Either build of the filter (`gateway.filter`), so that a reload
            // that switches between them needs no new listener first.
            type_urls: vec![<Wasm as prost::Name>::type_url(), <DynamicModuleFilter as prost::Name>::type_url()],
            ..Default::default()
        })),
        ..Default::default()
    });
    filters.extend(g.global_rate_limits.as_ref().map(rls::ratelimit_filter));
    filters.push(HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(Router::default()))),
        ..Default::default()
    });
    filters
}

pub(super) fn connection_manager(g: &GatewaySettings, jwks: Option<&str>) -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: "mcp_gateway".into(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: ROUTE_NAME.into(),
        })),
        http_filters: mcp_filters(g, jwks),
        access_log: audited(g)
            .then(|| [security::audit_log(&g.audit_log), security::audit_to_control_plane()])
            .into_iter()
            .flatten()
            .chain(if g.access_log == "off" { Vec::new() } else { access_log::access_logs(&g.access_log, &g.mcp_path) })
            .collect(),
        local_reply_config: Some(upstream_error_as_jsonrpc(g.request_read_timeout_seconds, global_limits(g).next().is_some())),
        // Slow clients (slowloris) hold a connection only so long: the
        // headers within 10 s, the whole request within the read timeout.
        request_headers_timeout: Some(PbDuration { seconds: 10.min(g.request_read_timeout_seconds as i64), nanos: 0 }),
        request_timeout: Some(PbDuration { seconds: g.request_read_timeout_seconds as i64, nanos: 0 }),
        common_http_protocol_options: Some(HttpProtocolOptionsCommon {
            idle_timeout: Some(duration(Duration::from_secs(g.idle_timeout_seconds))),
            // `x_mcp_cluster` could otherwise reach a server that folds `_`
            // into `-`, past the filter's removal of `x-mcp-cluster`: a name
            // with an underscore is refused (Envoy's codec answers 400 itself,
            // before any filter or the local-reply mapper runs).
            headers_with_underscores_action: HeadersWithUnderscoresAction::RejectRequest as i32,
            ..Default::default()
        }),
        // One HTTP/2 connection carries at most this many requests at once.
        http2_protocol_options: Some(Http2ProtocolOptions {
            max_concurrent_streams: Some(UInt32Value { value: MAX_CONCURRENT_STREAMS }),
            ..Default::default()
        }),
        // Paths are compared after `.`/`..` and `//` are resolved, so
        // `/mcp/../servers` is `/servers` to the routes and to the filter.
        normalize_path: Some(BoolValue { value: true }),
        merge_slashes: true,
        // An edge proxy: the client's address is the peer's, and Envoy drops
        // x-envoy-* headers (timeouts, retries) sent by external clients.
        use_remote_address: Some(BoolValue { value: true }),
        ..Default::default()
    }
}

/// When Envoy itself answers a request the filter forwarded (upstream
/// unreachable, reset, timed out), the answer is a JSON-RPC error naming the
/// server, with the client's request id, instead of Envoy's plain text.
/// Only requests carrying the filter's cluster header match, so the filter
/// state the format reads is always there.
pub(super) fn upstream_error_as_jsonrpc(read_timeout_seconds: u64, global_limits: bool) -> LocalReplyConfig {
    let format = format!(
        r#"{{"jsonrpc":"2.0","id":%FILTER_STATE(wasm.{REQUEST_ID_PROPERTY}:PLAIN)%,"error":{{"code":-32603,"message":"Upstream server '%FILTER_STATE(wasm.{SERVER_PROPERTY}:PLAIN)%' did not answer: %RESPONSE_CODE_DETAILS% (HTTP %RESPONSE_CODE%)"}}}}"#
    );
    let mut mappers = vec![
        ResponseMapper {
            filter: Some(AccessLogFilter {
                filter_specifier: Some(access_log_filter::FilterSpecifier::HeaderFilter(HeaderFilter {
                    header: Some(HeaderMatcher {
                        name: CLUSTER_HEADER.into(),
                        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true)),
                        ..Default::default()
                    }),
                })),
            }),
            body_format_override: Some(json_body(format)),
            ..Default::default()
        },
        too_slow(read_timeout_seconds),
    ];
    // A server's connections and requests at their limit: before the
    // generic mapper, which would call it a failure to answer.
    mappers.insert(0, overloaded());
    // Envoy's ratelimit filter refuses before the upstream mapper would
    // call its 429 an upstream failure: this one comes first.
    if global_limits {
        mappers.insert(0, rls::over_limit_mapper());
    }
    // The filter's own answer in place of an upstream's (a refusal of the
    // gateway's credentials) already says what happened: left as it is.
    mappers.insert(0, own_reply());
    LocalReplyConfig { mappers, ..Default::default() }
}

/// Leaves alone a reply the filter gave in place of an upstream's answer
/// (filter state `wasm.mcp_own_reply`): no body override.
pub(super) fn own_reply() -> ResponseMapper {
    ResponseMapper { filter: Some(access_log::cel_filter(format!("'wasm.{OWN_REPLY_PROPERTY}' in filter_state"))), ..Default::default() }
}

/// Global limits, in catalog order.
pub(super) fn global_limits(g: &GatewaySettings) -> impl Iterator<Item = &RateLimit> {
    g.rate_limits.iter().filter(|l| l.global)
}

/// A local reply's body: `format` (Envoy's substitution format) as JSON.
pub(super) fn json_body(format: String) -> SubstitutionFormatString {
    SubstitutionFormatString {
        content_type: "application/json".into(),
        format: Some(substitution_format_string::Format::TextFormatSource(DataSource {
            specifier: Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(format)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Envoy's refusal of a call past a server's connection limit (flag `UO`),
/// as a JSON-RPC error that says what to do.
pub(super) fn overloaded() -> ResponseMapper {
    let format = format!(
        r#"{{"jsonrpc":"2.0","id":%FILTER_STATE(wasm.{REQUEST_ID_PROPERTY}:PLAIN)%,"error":{{"code":-32000,"message":"Server '%FILTER_STATE(wasm.{SERVER_PROPERTY}:PLAIN)%' is overloaded: it has as many calls in flight as the gateway allows (max_connections_per_server); retry later"}}}}"#
    );
    ResponseMapper {
        filter: Some(AccessLogFilter {
            filter_specifier: Some(access_log_filter::FilterSpecifier::ResponseFlagFilter(ResponseFlagFilter { flags: vec!["UO".into()] })),
        }),
        body_format_override: Some(json_body(format)),
        ..Default::default()
    }
}

/// Envoy's 408 for a client too slow to send its request, as JSON-RPC.
pub(super) fn too_slow(seconds: u64) -> ResponseMapper {
    let format = format!(
        r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":-32600,"message":"Request timeout: the request was not received within {seconds} s (gateway.request_read_timeout_seconds)"}}}}"#
    );
    ResponseMapper {
        filter: Some(AccessLogFilter {
            filter_specifier: Some(access_log_filter::FilterSpecifier::StatusCodeFilter(StatusCodeFilter {
                comparison: Some(ComparisonFilter {
                    op: comparison_filter::Op::Eq as i32,
                    value: Some(RuntimeUInt32 { default_value: 408, runtime_key: "mcp_gateway.read_timeout_status".into() }),
                }),
            })),
        }),
        body_format_override: Some(json_body(format)),
        ..Default::default()
    }
}

pub(super) fn route_table(timeout_seconds: u64) -> RouteConfiguration {
    let to_cluster = |specifier: route_action::ClusterSpecifier, timeout: Option<PbDuration>| {
        Some(route::Action::Route(RouteAction { cluster_specifier: Some(specifier), timeout, ..Default::default() }))
    };
    // The filter sets the header (and drops any the client sent), after
    // which Envoy re-matches the route: every MCP request it forwards lands
    // here, whatever path the upstream uses. This route comes first, so an
    // upstream whose path starts like an admin path is still reached.
    let mut routes = vec![Route {
        name: "mcp_upstream".into(),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            headers: vec![HeaderMatcher {
                name: CLUSTER_HEADER.into(),
                header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true)),
                ..Default::default()
            }],
            ..Default::default()
        }),
        // No limit on the whole answer (a streamed one lasts as long as its
        // events keep coming), but one on each silence; a server's own
        // limit, when the catalog sets one, comes with the request (the
        // filter's `x-envoy-upstream-rq-timeout-ms`).
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::ClusterHeader(CLUSTER_HEADER.into())),
            timeout: Some(duration(Duration::ZERO)),
            idle_timeout: Some(duration(Duration::from_secs(timeout_seconds))),
            ..Default::default()
        })),
        ..Default::default()
    }];
    // Reading only: what changes state (start, stop, restart, reload) is
    // served on the admin listener alone, until the auth issue's admin
    // principal guards it.
    let get_only = HeaderMatcher {
        name: ":method".into(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact("GET".into())),
            ..Default::default()
        })),
        ..Default::default()
    };
    routes.extend(ADMIN_PATHS.iter().map(|p| Route {
        name: format!("admin{}", p.replace('/', "_")),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix((*p).into())),
            headers: vec![get_only.clone()],
            ..Default::default()
        }),
        action: to_cluster(route_action::ClusterSpecifier::Cluster(ADMIN_CLUSTER.into()), None),
        ..Default::default()
    }));
    RouteConfiguration {
        name: ROUTE_NAME.into(),
        virtual_hosts: vec![VirtualHost { name: "mcp_gateway".into(), domains: vec!["*".into()], routes, ..Default::default() }],
        ..Default::default()
    }
}
