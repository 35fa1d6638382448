//! Global rate limits in Envoy: the `ratelimit` filter that asks the
//! control plane's rate limit service (`crate::rls`), the route's actions
//! that turn the MCP filter's bucket headers into descriptors, and the
//! local reply that makes a refusal a JSON-RPC error.
//!
//! A descriptor is `[("limit", <name>), ("bucket", <key>)]`: the MCP filter
//! decided which limits concern the request and which bucket (principal,
//! server, tool) it takes from, and wrote the key to
//! `x-mcp-rate-limit-<name>`. A limit that does not concern the request has
//! no header, so Envoy sends no descriptor for it.

use envoy_types::pb::envoy::config::accesslog::v3::{access_log_filter, AccessLogFilter, ResponseFlagFilter};
use envoy_types::pb::envoy::config::core::v3::{grpc_service, ApiVersion, GrpcService};
use envoy_types::pb::envoy::config::ratelimit::v3::RateLimitServiceConfig;
use envoy_types::pb::envoy::config::route::v3::{rate_limit, route, RateLimit as RouteRateLimit, Route};
use envoy_types::pb::envoy::extensions::filters::http::ratelimit::v3::RateLimit as RateLimitFilter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter, ResponseMapper};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use envoy_types::util::pack_any;
use mcp_filter::config::{RateLimit, RATE_LIMIT_HEADER_PREFIX, REQUEST_ID_PROPERTY};

use crate::catalog::GlobalRateLimitSettings;

/// The rate limit domain the control plane's service answers for.
pub const DOMAIN: &str = "mcp-gateway";
/// The bootstrap's cluster of the control plane's gRPC server
/// (`envoy/gateway.yaml`), which serves the rate limit service beside ADS.
pub const CONTROL_PLANE_GRPC_CLUSTER: &str = "xds";
/// The response header in which the service puts the JSON-RPC error.
pub const ERROR_HEADER: &str = "x-mcp-rate-limit-error";

/// The control plane's gRPC services, through the bootstrap's cluster.
pub fn control_plane_grpc() -> GrpcService {
    GrpcService {
        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(grpc_service::EnvoyGrpc {
            cluster_name: CONTROL_PLANE_GRPC_CLUSTER.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn ratelimit_filter(settings: &GlobalRateLimitSettings) -> HttpFilter {
    let timeout = PbDuration { seconds: (settings.timeout_ms / 1000) as i64, nanos: ((settings.timeout_ms % 1000) * 1_000_000) as i32 };
    let filter = RateLimitFilter {
        domain: DOMAIN.into(),
        timeout: Some(timeout),
        failure_mode_deny: settings.failure_mode_deny,
        rate_limit_service: Some(RateLimitServiceConfig {
            grpc_service: Some(control_plane_grpc()),
            transport_api_version: ApiVersion::V3 as i32,
        }),
        ..Default::default()
    };
    HttpFilter {
        name: "envoy.filters.http.ratelimit".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(filter))),
        ..Default::default()
    }
}

/// One descriptor per global limit on the route to upstreams, and the
/// bucket headers removed before the request leaves.
pub fn add_route_limits<'a>(route: &mut Route, limits: impl Iterator<Item = &'a RateLimit>) {
    for limit in limits {
        let header = format!("{RATE_LIMIT_HEADER_PREFIX}{}", limit.name);
        let generic =
            rate_limit::action::GenericKey { descriptor_value: limit.name.clone(), descriptor_key: "limit".into(), ..Default::default() };
        let bucket =
            rate_limit::action::RequestHeaders { header_name: header.clone(), descriptor_key: "bucket".into(), skip_if_absent: false };
        let Some(route::Action::Route(action)) = &mut route.action else { return };
        action.rate_limits.push(RouteRateLimit {
            actions: vec![
                rate_limit::Action { action_specifier: Some(rate_limit::action::ActionSpecifier::GenericKey(generic)) },
                rate_limit::Action { action_specifier: Some(rate_limit::action::ActionSpecifier::RequestHeaders(bucket)) },
            ],
            ..Default::default()
        });
        route.request_headers_to_remove.push(header);
    }
}

/// A request the service refused (response flag `RL`): the JSON-RPC error
/// the service wrote, with the request's id.
pub fn over_limit_mapper() -> ResponseMapper {
    let format = format!(r#"{{"jsonrpc":"2.0","id":%FILTER_STATE(wasm.{REQUEST_ID_PROPERTY}:PLAIN)%,"error":%RESP({ERROR_HEADER})%}}"#);
    ResponseMapper {
        filter: Some(AccessLogFilter {
            filter_specifier: Some(access_log_filter::FilterSpecifier::ResponseFlagFilter(ResponseFlagFilter { flags: vec!["RL".into()] })),
        }),
        body_format_override: Some(super::json_body(format)),
        ..Default::default()
    }
}
