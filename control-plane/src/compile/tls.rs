//! TLS in Envoy, both ways. On the listener: the certificate and the
//! client CAs as SDS secrets (so that a rotation is a secret update, not a
//! listener change), and the transport socket that refers to them by name.
//! To an `https://` server: its certificate verified (its own CAs by SDS,
//! else the system's from a file on Envoy's disk), its names matched
//! against the URL's host, SNI, and the client certificate it asks for.

use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::{data_source, transport_socket, DataSource, TransportSocket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, secret, CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use envoy_types::util::pack_any;

use super::{ads, TlsMaterial};
use crate::catalog::{Endpoint, TlsSettings};
use crate::upstream::UpstreamTls;

pub const CERT_SECRET: &str = "gateway_cert";
pub const CLIENT_CA_SECRET: &str = "gateway_client_ca";

fn inline(text: &str) -> Option<DataSource> {
    Some(DataSource { specifier: Some(data_source::Specifier::InlineString(text.to_string())), ..Default::default() })
}

fn by_name(name: &str) -> SdsSecretConfig {
    SdsSecretConfig { name: name.into(), sds_config: Some(ads()) }
}

/// The SDS resources: the certificate, and the client CAs if any.
pub fn secrets(material: &TlsMaterial<'_>, settings: &TlsSettings) -> Vec<(String, Any)> {
    let cert = Secret {
        name: CERT_SECRET.into(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(material.cert),
            private_key: inline(material.key),
            ..Default::default()
        })),
    };
    let mut out = vec![(CERT_SECRET.to_string(), pack_any(cert))];
    if let (Some(ca), Some(_)) = (material.client_ca, &settings.client_ca_file) {
        let validation = Secret {
            name: CLIENT_CA_SECRET.into(),
            r#type: Some(secret::Type::ValidationContext(CertificateValidationContext { trusted_ca: inline(ca), ..Default::default() })),
        };
        out.push((CLIENT_CA_SECRET.to_string(), pack_any(validation)));
    }
    out
}

/// The listener's TLS: the certificate by SDS, HTTP/2 or HTTP/1.1 by ALPN,
/// and client certificates verified (and required, if so configured).
pub fn downstream(settings: &TlsSettings) -> TransportSocket {
    let validation = settings
        .client_ca_file
        .as_ref()
        .map(|_| common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(by_name(CLIENT_CA_SECRET)));
    let context = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![by_name(CERT_SECRET)],
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            validation_context_type: validation,
            ..Default::default()
        }),
        require_client_certificate: Some(BoolValue { value: settings.require_client_certificate }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
    }
}

/// The SDS name of a server's CAs. A `/` is in no server name, so no two
/// servers' secrets, nor the listener's, can share a name.
pub fn upstream_ca_secret(server: &str) -> String {
    format!("{}/ca", super::cluster_name(server))
}

/// The SDS name of a server's client certificate and key.
pub fn upstream_cert_secret(server: &str) -> String {
    format!("{}/client_cert", super::cluster_name(server))
}

/// The SDS resources of a server's `tls` files: its CAs, its client
/// certificate and key. By SDS rather than in the cluster, so that a
/// rotation updates the secret and leaves the cluster (and its
/// connections) alone.
pub fn upstream_secrets(server: &str, files: &UpstreamTls) -> Vec<(String, Any)> {
    let mut out = Vec::new();
    if let Some(ca) = &files.ca {
        let name = upstream_ca_secret(server);
        let validation = CertificateValidationContext { trusted_ca: inline(ca), ..Default::default() };
        out.push((name.clone(), pack_any(Secret { name, r#type: Some(secret::Type::ValidationContext(validation)) })));
    }
    if let (Some(cert), Some(key)) = (&files.client_cert, &files.client_key) {
        let name = upstream_cert_secret(server);
        let pair = TlsCertificate { certificate_chain: inline(cert), private_key: inline(key), ..Default::default() };
        out.push((name.clone(), pack_any(Secret { name, r#type: Some(secret::Type::TlsCertificate(pair)) })));
    }
    out
}

/// The transport socket to an `https://` upstream, verifying as the control
/// plane does (`upstream::tls`): its certificate must chain to its own CAs
/// (`own`: the server's name and `tls` files), else to those in `ca_file`
/// on Envoy's disk, and name the URL's host (a DNS or IP SAN, exactly); SNI
/// carries a host name (never an IP address, RFC 6066); the client
/// certificate, if the server has one, is presented when asked for.
pub fn upstream(ep: &Endpoint, ca_file: &str, own: Option<(&str, &UpstreamTls)>) -> TransportSocket {
    let is_ip = ep.host.parse::<IpAddr>().is_ok();
    let san = SubjectAltNameMatcher {
        san_type: if is_ip { SanType::IpAddress } else { SanType::Dns } as i32,
        matcher: Some(StringMatcher { match_pattern: Some(string_matcher::MatchPattern::Exact(ep.host.clone())), ..Default::default() }),
        ..Default::default()
    };
    let own_ca = own.filter(|(_, files)| files.ca.is_some()).map(|(server, _)| server);
    let validation = match own_ca {
        // The CAs by SDS, the name to match in the cluster: Envoy combines them.
        Some(server) => {
            common_tls_context::ValidationContextType::CombinedValidationContext(common_tls_context::CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: vec![san],
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(by_name(&upstream_ca_secret(server))),
                ..Default::default()
            })
        }
        None => common_tls_context::ValidationContextType::ValidationContext(CertificateValidationContext {
            trusted_ca: Some(DataSource { specifier: Some(data_source::Specifier::Filename(ca_file.to_string())), ..Default::default() }),
            match_typed_subject_alt_names: vec![san],
            ..Default::default()
        }),
    };
    let client_cert = own.filter(|(_, files)| files.client_cert.is_some()).map(|(server, _)| by_name(&upstream_cert_secret(server)));
    let context = UpstreamTlsContext {
        sni: if is_ip { String::new() } else { ep.host.clone() },
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(validation),
            tls_certificate_sds_secret_configs: client_cert.into_iter().collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
    }
}
