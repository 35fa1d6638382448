//! The gateway's tokens for upstream servers (`servers[].oauth`), as Envoy
//! gets them: each server's cluster runs Envoy's credential injector as an
//! upstream filter, which writes `Authorization: Bearer <token>` from an
//! SDS secret of that server's ([`token_secret`]). A refreshed token is one
//! secret pushed again; the filter configuration holds no token, only
//! whether the server has one ([`Credential::Unavailable`]). The same
//! upstream filter runs for the MCP filter's own requests (its
//! `initialize` to each server), which go through the cluster too.

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource, TypedExtensionConfig};
use envoy_types::pb::envoy::extensions::filters::http::credential_injector::v3::CredentialInjector;
use envoy_types::pb::envoy::extensions::filters::http::upstream_codec::v3::UpstreamCodec;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::envoy::extensions::http::injected_credentials::generic::v3::Generic;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, GenericSecret, SdsSecretConfig, Secret};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;

use super::ads;
pub use crate::token::Credential;

/// The SDS secret that holds a server's token.
pub fn token_secret(server: &str) -> String {
    format!("mcp_token/{server}")
}

/// The upstream filters of a server with `oauth`: the credential injector,
/// then the codec every upstream filter chain ends with.
pub fn upstream_filters(server: &str) -> Vec<HttpFilter> {
    let generic = Generic {
        credential: Some(SdsSecretConfig { name: token_secret(server), sds_config: Some(ads()) }),
        header: "authorization".into(),
        header_value_prefix: "Bearer ".into(),
    };
    let injector = CredentialInjector {
        // The gateway's token replaces whatever the request carries: the
        // client's own never reaches the server.
        overwrite: true,
        allow_request_without_credential: false,
        credential: Some(TypedExtensionConfig {
            name: "envoy.http.injected_credentials.generic".into(),
            typed_config: Some(pack_any(generic)),
        }),
    };
    vec![
        HttpFilter {
            name: "envoy.filters.http.credential_injector".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(injector))),
            ..Default::default()
        },
        HttpFilter {
            name: "envoy.filters.http.upstream_codec".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(UpstreamCodec::default()))),
            ..Default::default()
        },
    ]
}

/// The SDS resource of a server's token. A server without a usable token
/// still gets its secret (empty), so that its cluster never waits for one;
/// the MCP filter refuses its calls before they reach the injector.
pub fn secret_of(server: &str, credential: &Credential) -> (String, Any) {
    let token = match credential {
        Credential::Token(t) => t.clone(),
        Credential::Unavailable(_) => String::new(),
    };
    let name = token_secret(server);
    let generic = GenericSecret {
        secret: Some(DataSource { specifier: Some(data_source::Specifier::InlineString(token)), ..Default::default() }),
        ..Default::default()
    };
    (name.clone(), pack_any(Secret { name, r#type: Some(secret::Type::GenericSecret(generic)) }))
}

#[cfg(test)]
mod tests;
