//! TLS on the listener: the certificate and the client CAs as SDS secrets
//! (so that a rotation is a secret update, not a listener change), and the
//! transport socket that refers to them by name.

use envoy_types::pb::envoy::config::core::v3::{data_source, transport_socket, DataSource, TransportSocket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, secret, CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret, TlsCertificate,
};
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use envoy_types::util::pack_any;

use super::{ads, TlsMaterial};
use crate::catalog::TlsSettings;

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
    TransportSocket { name: "envoy.transport_sockets.tls".into(), config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))) }
}
