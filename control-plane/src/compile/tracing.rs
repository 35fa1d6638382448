//! OpenTelemetry tracing in Envoy (`gateway.tracing`): a span per request on
//! the listener, exported over OTLP/HTTP to the collector the catalog names.
//! A client's `traceparent` header is continued (Envoy reads it before any
//! filter runs); Envoy injects its own into the request it sends upstream.
//! The span is named by the filter (`tools/call add`, `tools/list`, after
//! OpenTelemetry's MCP conventions; `GET /health` for what is not MCP) and
//! carries `mcp.method`, `mcp.server` and `mcp.tool`, all read from the
//! filter's state when the span ends. A `traceparent` in `params._meta` cannot parent Envoy's span (the
//! span starts before the body is read): the filter forwards `_meta` as it
//! is, so a server that honours it continues the client's trace itself.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{http_uri, HttpService, HttpUri};
use envoy_types::pb::envoy::config::trace::v3::{tracing, OpenTelemetryConfig};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing;
use envoy_types::pb::envoy::r#type::tracing::v3::{custom_tag, CustomTag};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::util::pack_any;
use mcp_filter::config::{META_TRACEPARENT_PROPERTY, METHOD_PROPERTY, SERVER_PROPERTY, SPAN_PROPERTY, TARGET_PROPERTY};

use crate::catalog::{Endpoint, TracingSettings};

/// The cluster spans are exported to.
pub const COLLECTOR_CLUSTER: &str = "otel_collector";

/// The collector's cluster.
pub fn collector_cluster(ep: &Endpoint, ca_file: &str) -> Cluster {
    super::upstream_cluster(COLLECTOR_CLUSTER, ep, ca_file, None)
}

/// The connection manager's tracing, exporting to `ep` (OTLP/HTTP).
pub fn config(t: &TracingSettings, ep: &Endpoint) -> Tracing {
    let state = |name: &str| format!("%FILTER_STATE(wasm.{name}:PLAIN)%");
    let tag = |name: &str, property: &str| CustomTag { tag: name.into(), r#type: Some(custom_tag::Type::Value(state(property))) };
    let otel = OpenTelemetryConfig {
        http_service: Some(HttpService {
            http_uri: Some(HttpUri {
                uri: format!("{}://{}/v1/traces", if ep.tls { "https" } else { "http" }, ep.authority()),
                timeout: Some(super::duration(Duration::from_secs(5))),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(COLLECTOR_CLUSTER.into())),
            }),
            ..Default::default()
        }),
        service_name: t.service_name.clone(),
        ..Default::default()
    };
    Tracing {
        random_sampling: Some(Percent { value: t.sampling_percent }),
        custom_tags: vec![
            tag("mcp.method", METHOD_PROPERTY),
            tag("mcp.server", SERVER_PROPERTY),
            tag("mcp.tool", TARGET_PROPERTY),
            tag("mcp.meta_traceparent", META_TRACEPARENT_PROPERTY),
        ],
        operation: state(SPAN_PROPERTY),
        provider: Some(tracing::Http {
            name: "envoy.tracers.opentelemetry".into(),
            config_type: Some(tracing::http::ConfigType::TypedConfig(pack_any(otel))),
        }),
        ..Default::default()
    }
}
