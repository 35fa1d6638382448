use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use prost::Message;

use super::{token_secret, Credential};
use crate::compile::tests::run_full;
use crate::snapshot::{CLUSTER_TYPE, SECRET_TYPE};

const CATALOG: &str = r#"
servers:
  - name: crm
    url: https://crm.example/mcp
    oauth:
      token_url: https://as.example/token
      client_id: gateway
      client_secret: not-in-envoy
      scopes: [crm.read]
  - name: plain
    url: http://127.0.0.1:8000/mcp
"#;

fn compiled(credentials: &[(&str, Credential)]) -> crate::compile::Compiled {
    let credentials: BTreeMap<String, Credential> = credentials.iter().map(|(n, c)| (n.to_string(), c.clone())).collect();
    run_full(CATALOG, BTreeMap::new(), &BTreeMap::new(), None, &BTreeMap::new(), &credentials).unwrap()
}

fn token_of(c: &crate::compile::Compiled, server: &str) -> Option<String> {
    let name = token_secret(server);
    let (_, any) = c.snapshot.resources_of(SECRET_TYPE).iter().find(|(n, _)| *n == name)?;
    match Secret::decode(any.value.as_slice()).ok()?.r#type? {
        secret::Type::GenericSecret(g) => match g.secret?.specifier? {
            envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn upstream_filters(c: &crate::compile::Compiled, cluster: &str) -> Vec<String> {
    let (_, any) = c.snapshot.resources_of(CLUSTER_TYPE).iter().find(|(n, _)| n == cluster).unwrap();
    let cluster = Cluster::decode(any.value.as_slice()).unwrap();
    let options = &cluster.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    HttpProtocolOptions::decode(options.value.as_slice()).unwrap().http_filters.into_iter().map(|f| f.name).collect()
}

#[test]
fn a_token_goes_to_envoy_as_a_secret_its_cluster_injects() {
    let c = compiled(&[("crm", Credential::Token("tok-1".into()))]);
    assert_eq!(token_of(&c, "crm").as_deref(), Some("tok-1"));
    assert_eq!(token_of(&c, "plain"), None);
    assert_eq!(upstream_filters(&c, "mcp_crm"), ["envoy.filters.http.credential_injector", "envoy.filters.http.upstream_codec"]);
    assert!(upstream_filters(&c, "mcp_plain").is_empty());
    let f = &c.filter_config;
    assert_eq!(f.servers[0].credential_error, None);
    // Neither the token nor the client secret is in the filter's configuration.
    let text = serde_json::to_string(f).unwrap();
    assert!(!text.contains("tok-1") && !text.contains("not-in-envoy"));
}

#[test]
fn a_new_token_is_a_new_version() {
    let one = compiled(&[("crm", Credential::Token("tok-1".into()))]);
    let two = compiled(&[("crm", Credential::Token("tok-2".into()))]);
    assert_ne!(one.snapshot.version, two.snapshot.version);
    // The filter's configuration is the same: Envoy keeps its filter.
    assert_eq!(one.filter_config, two.filter_config);
    assert_eq!(
        one.snapshot.resources_of(crate::snapshot::EXTENSION_CONFIG_TYPE),
        two.snapshot.resources_of(crate::snapshot::EXTENSION_CONFIG_TYPE)
    );
    assert_eq!(one.snapshot.version, compiled(&[("crm", Credential::Token("tok-1".into()))]).snapshot.version);
}

#[test]
fn without_a_token_calls_are_refused_saying_why() {
    let c = compiled(&[("crm", Credential::Unavailable("token endpoint refused: invalid_client".into()))]);
    assert_eq!(c.filter_config.servers[0].credential_error.as_deref(), Some("token endpoint refused: invalid_client"));
    assert_eq!(token_of(&c, "crm").as_deref(), Some(""), "the secret stays, empty, so that the cluster never waits for it");
    let none = compiled(&[]);
    assert_eq!(none.filter_config.servers[0].credential_error.as_deref(), Some("the gateway has not got a token for it yet"));
    assert_eq!(none.filter_config.servers[1].credential_error, None);
}

#[test]
fn a_server_taking_each_callers_token_gets_no_injector_and_no_secret() {
    let yaml = r#"
gateway:
  auth: {jwt: {issuer: "https://idp.example", hs256_secret: "0123456789abcdef0123456789abcdef"}}
servers:
  - name: crm
    url: https://crm.example/mcp
    oauth: {token_url: "https://as.example/token", client_id: gateway, client_secret: s, grant: token_exchange}
"#;
    let credentials = [("crm".to_string(), Credential::Unavailable("refused".into()))].into_iter().collect();
    let c = run_full(yaml, BTreeMap::new(), &BTreeMap::new(), None, &BTreeMap::new(), &credentials).unwrap();
    let server = &c.filter_config.servers[0];
    assert!(server.token_exchange);
    assert_eq!(server.credential_error, None, "the gateway's own token is for its own requests only");
    assert!(upstream_filters(&c, "mcp_crm").is_empty(), "Envoy must not overwrite the caller's exchanged token");
    assert_eq!(token_of(&c, "crm"), None);
}
