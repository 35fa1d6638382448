//! The clusters: one per server (plain or TLS, with its connection limits)
//! and the control plane's. Pure, as all of `compile`.

use std::net::IpAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{circuit_breakers, cluster, CircuitBreakers, Cluster};
use envoy_types::pb::envoy::config::core::v3::HttpProtocolOptions as HttpProtocolOptionsCommon;
use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address, SocketAddress};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{http_protocol_options, HttpProtocolOptions};
use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};
use envoy_types::util::pack_any;

use super::{tls, ADMIN_CLUSTER, STREAMS_CLUSTER};
use crate::catalog::Endpoint as UrlEndpoint;
use crate::upstream::UpstreamTls;

/// The cluster name of a server. Catalog names are `[a-z0-9_-]`, which
/// Envoy accepts as they are.
pub fn cluster_name(server: &str) -> String {
    format!("mcp_{server}")
}

pub(super) fn duration(d: Duration) -> PbDuration {
    PbDuration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

pub(super) fn socket(host: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: host.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

pub(super) fn static_or_dns_cluster(name: &str, host: &str, port: u16) -> Cluster {
    // IP literals need no resolver; names are re-resolved as DNS changes.
    let kind = if host.parse::<IpAddr>().is_ok() { cluster::DiscoveryType::Static } else { cluster::DiscoveryType::StrictDns };
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(kind as i32)),
        connect_timeout: Some(duration(Duration::from_secs(5))),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket(host, port)),
                        hostname: host.to_string(),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The seeds' connection tuning on a server's cluster: at most `max` calls
/// in flight (Envoy's `max_requests` circuit breaker: the next call is
/// refused at once, flag `UO`, which `overloaded` turns into a JSON-RPC
/// error; `max_pending_requests` bounds calls waiting for a new connection
/// to open), and idle connections closed after `idle_seconds`. Connections themselves are not capped at `max`: each
/// Envoy worker has its own pool, and idle connections held by one worker
/// would keep another from opening any (its calls would wait for the idle
/// timeout). On HTTP/1.1 a call in flight holds one connection, so calls
/// bound connections anyway.
pub(super) fn limit_connections(c: &mut Cluster, max: u32, idle_seconds: u64, http_filters: Vec<HttpFilter>) {
    let max = Some(UInt32Value { value: max });
    c.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![circuit_breakers::Thresholds {
            max_requests: max,
            // At least 1, or even the first request of a new connection fails.
            max_pending_requests: max,
            ..Default::default()
        }],
        ..Default::default()
    });
    let options = HttpProtocolOptions {
        common_http_protocol_options: Some(HttpProtocolOptionsCommon {
            idle_timeout: Some(duration(Duration::from_secs(idle_seconds))),
            ..Default::default()
        }),
        upstream_protocol_options: Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            http_protocol_options::ExplicitHttpConfig {
                protocol_config: Some(http_protocol_options::explicit_http_config::ProtocolConfig::HttpProtocolOptions(Default::default())),
            },
        )),
        // Upstream filters (a server's token, `credentials.rs`), if any.
        http_filters,
        ..Default::default()
    };
    c.typed_extension_protocol_options.insert("envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(), pack_any(options));
}

/// A cluster for `ep`; over TLS for `https://`, verified against `ca_file`
/// on Envoy's disk, or against the server's own `tls` files (`own`: its
/// name and what they hold), sent over SDS.
pub(crate) fn upstream_cluster(name: &str, ep: &UrlEndpoint, ca_file: &str, own: Option<(&str, &UpstreamTls)>) -> Cluster {
    let mut c = static_or_dns_cluster(name, &ep.host, ep.port);
    if ep.tls {
        c.transport_socket = Some(tls::upstream(ep, ca_file, own));
    }
    c
}

/// The control plane's clusters: `gateway_admin` (the era bridge, the
/// operator's pages, the runtimes' pipes) and `gateway_streams` (clients'
/// GET streams, each holding a connection as long as the client keeps it).
/// Each has circuit breakers of its own, so that streams held open, up to
/// `max_streams`, cannot use up what the bridge and the pages need.
pub(super) fn admin_clusters(host: &str, port: u16, max_streams: u32) -> [Cluster; 2] {
    let breakers = |max: u32| {
        let max = Some(UInt32Value { value: max });
        Some(CircuitBreakers {
            thresholds: vec![circuit_breakers::Thresholds {
                max_connections: max,
                max_requests: max,
                max_pending_requests: max,
                ..Default::default()
            }],
            ..Default::default()
        })
    };
    let mut admin = static_or_dns_cluster(ADMIN_CLUSTER, host, port);
    admin.circuit_breakers = breakers(1024);
    let mut streams = static_or_dns_cluster(STREAMS_CLUSTER, host, port);
    streams.circuit_breakers = breakers(max_streams.max(1));
    [admin, streams]
}
