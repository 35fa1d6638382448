//! The wasm filter as an ECDS resource: its configuration, and the module
//! named by its SHA-256, which Envoy fetches once from the control plane's
//! admin API and keeps (docs/design/module-delivery.md). Pure, as all of
//! `compile`: the digest is an input, the bytes never pass through here.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{
    async_data_source, http_uri, AsyncDataSource, BackoffStrategy, HttpUri, RemoteDataSource, RetryPolicy, TypedExtensionConfig,
};
use envoy_types::pb::envoy::extensions::dynamic_modules::v3::DynamicModuleConfig;
use envoy_types::pb::envoy::extensions::filters::http::dynamic_modules::v3::DynamicModuleFilter;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::wasm::v3::{plugin_config, FailurePolicy, PluginConfig, VmConfig};
use envoy_types::pb::google::protobuf::{BoolValue, StringValue, UInt32Value};
use envoy_types::util::pack_any;

use super::{duration, ADMIN_CLUSTER, FILTER_NAME};

/// Where the control plane's admin API serves the filter module:
/// `/filter/<sha256>.wasm` ([`module_path`]).
pub const MODULE_PATH_PREFIX: &str = "/filter/";

/// The path of the module whose SHA-256 is `sha256` (lowercase hex).
pub fn module_path(sha256: &str) -> String {
    format!("{MODULE_PATH_PREFIX}{sha256}.wasm")
}

/// How long one fetch of the module may take (it is under a megabyte, from
/// the control plane next to Envoy).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Fetches after the first one that failed, 0.5 s apart at first, then
/// doubling up to 5 s: a control plane restarting while Envoy starts is
/// waited for about half a minute.
const FETCH_RETRIES: u32 = 8;

/// The ECDS resource: the filter, its configuration (`json`, the
/// serialised `FilterConfig`), and its module, fetched over the cluster
/// [`ADMIN_CLUSTER`] from `admin` (host, port) and checked against `sha256`.
pub(super) fn filter_extension(json: String, admin: (&str, u16), sha256: &str) -> TypedExtensionConfig {
    let (host, port) = admin;
    // An IPv6 address is bracketed in a URL.
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    let remote = RemoteDataSource {
        http_uri: Some(HttpUri {
            uri: format!("http://{host}:{port}{}", module_path(sha256)),
            timeout: Some(duration(FETCH_TIMEOUT)),
            http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(ADMIN_CLUSTER.into())),
        }),
        sha256: sha256.to_string(),
        retry_policy: Some(RetryPolicy {
            retry_back_off: Some(BackoffStrategy {
                base_interval: Some(duration(Duration::from_millis(500))),
                max_interval: Some(duration(Duration::from_secs(5))),
            }),
            num_retries: Some(UInt32Value { value: FETCH_RETRIES }),
            ..Default::default()
        }),
    };
    let plugin = PluginConfig {
        name: "mcp".into(),
        root_id: "mcp".into(),
        configuration: Some(pack_any(StringValue { value: json })),
        // Let the filter hold the request headers while it reads the body,
        // so that it can route on the body (Envoy >= 1.35).
        allow_on_headers_stop_iteration: Some(BoolValue { value: true }),
        // A VM that traps is rebuilt instead of leaving the worker failing.
        failure_policy: FailurePolicy::FailReload as i32,
        vm: Some(plugin_config::Vm::VmConfig(VmConfig {
            vm_id: "mcp".into(),
            runtime: "envoy.wasm.runtime.v8".into(),
            code: Some(AsyncDataSource { specifier: Some(async_data_source::Specifier::Remote(remote)) }),
            nack_on_code_cache_miss: true,
            ..Default::default()
        })),
        ..Default::default()
    };
    TypedExtensionConfig { name: FILTER_NAME.into(), typed_config: Some(pack_any(Wasm { config: Some(plugin) })) }
}

/// The name Envoy loads the native filter by: `lib<name>.so` in
/// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` (else the working directory, else
/// the dynamic linker's paths). A name rather than a path, so that the
/// catalog holds nothing about where Envoy's files are.
pub const NATIVE_MODULE: &str = "mcp_filter_native";

/// Where a dynamic module's stats live. The wasm filter's are under
/// `wasmcustom.`, which the bootstrap's histogram buckets and Envoy's
/// Prometheus output (no `envoy_` prefix for a custom namespace) expect: the
/// native filter's are put there too, so both expose the same series.
pub const NATIVE_METRICS_NAMESPACE: &str = "wasmcustom";

/// The filter as a native dynamic module (`gateway.filter: native`), with
/// the same configuration JSON as the wasm filter's.
pub(super) fn native_filter_extension(json: String) -> TypedExtensionConfig {
    let filter = DynamicModuleFilter {
        dynamic_module_config: Some(DynamicModuleConfig {
            name: NATIVE_MODULE.into(),
            metrics_namespace: NATIVE_METRICS_NAMESPACE.into(),
            ..Default::default()
        }),
        filter_name: "mcp".into(),
        filter_config: Some(pack_any(StringValue { value: json })),
        ..Default::default()
    };
    TypedExtensionConfig { name: FILTER_NAME.into(), typed_config: Some(pack_any(filter)) }
}

/// The environment variable that marks a filter configuration sent again
/// ([`sent_again`]); the module never reads it.
pub const SENT_AGAIN_VARIABLE: &str = "MCP_GATEWAY_SENT_AGAIN";

/// The filter resource `resource` (an ECDS `TypedExtensionConfig`) marked as
/// sent again for the `attempt`th time, or `None` if it is not the wasm filter.
///
/// Envoy remembers the digest of a filter configuration it failed to apply
/// (it sets it before it makes the VM), and takes the same one again as
/// already applied, without applying it: a configuration rejected while its
/// module was being fetched must come back different. The mark is a VM
/// environment variable, which changes nothing the filter sees: the module
/// (wasm32-unknown-unknown) imports no WASI call to read it, and it is not
/// part of the key Envoy shares VMs by.
pub fn sent_again(resource: &envoy_types::pb::google::protobuf::Any, attempt: u32) -> Option<envoy_types::pb::google::protobuf::Any> {
    let mut ext: TypedExtensionConfig = super::decode(resource)?;
    let mut wasm: Wasm = super::decode(ext.typed_config.as_ref()?)?;
    let Some(plugin_config::Vm::VmConfig(vm)) = wasm.config.as_mut()?.vm.as_mut() else { return None };
    let env = vm.environment_variables.get_or_insert_with(Default::default);
    env.key_values.insert(SENT_AGAIN_VARIABLE.into(), attempt.to_string());
    ext.typed_config = Some(pack_any(wasm));
    Some(pack_any(ext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::decode;

    fn remote(ext: &TypedExtensionConfig) -> RemoteDataSource {
        let wasm: Wasm = decode(ext.typed_config.as_ref().unwrap()).unwrap();
        let Some(plugin_config::Vm::VmConfig(vm)) = wasm.config.unwrap().vm else { panic!("no vm_config") };
        match vm.code.unwrap().specifier.unwrap() {
            async_data_source::Specifier::Remote(r) => r,
            other => panic!("the module is not remote: {other:?}"),
        }
    }

    #[test]
    fn the_module_is_named_by_its_digest_on_the_admin_cluster() {
        let sha = "ab".repeat(32);
        let r = remote(&filter_extension("{}".into(), ("127.0.0.1", 18001), &sha));
        assert_eq!(r.sha256, sha);
        let uri = r.http_uri.unwrap();
        assert_eq!(uri.uri, format!("http://127.0.0.1:18001/filter/{sha}.wasm"));
        assert_eq!(uri.http_upstream_type, Some(http_uri::HttpUpstreamType::Cluster(ADMIN_CLUSTER.into())));
        assert_eq!(r.retry_policy.unwrap().num_retries, Some(UInt32Value { value: FETCH_RETRIES }));
    }

    #[test]
    fn an_ipv6_admin_address_is_bracketed() {
        let r = remote(&filter_extension("{}".into(), ("::1", 18001), "00"));
        assert_eq!(r.http_uri.unwrap().uri, "http://[::1]:18001/filter/00.wasm");
    }

    #[test]
    fn a_filter_sent_again_differs_only_by_its_mark() {
        let first = filter_extension("{}".into(), ("127.0.0.1", 18001), "00");
        let again = sent_again(&pack_any(first.clone()), 2).unwrap();
        assert_ne!(again, pack_any(first.clone()), "Envoy would take it as already applied");
        let mut ext: TypedExtensionConfig = decode(&again).unwrap();
        let mut wasm: Wasm = decode(ext.typed_config.as_ref().unwrap()).unwrap();
        let Some(plugin_config::Vm::VmConfig(vm)) = wasm.config.as_mut().unwrap().vm.as_mut() else { panic!() };
        let env = vm.environment_variables.take().unwrap();
        assert_eq!(env.key_values.get(SENT_AGAIN_VARIABLE).map(String::as_str), Some("2"));
        ext.typed_config = Some(pack_any(wasm));
        assert_eq!(ext, first, "nothing else changed");
        assert_eq!(sent_again(&pack_any(StringValue { value: "x".into() }), 1), None, "not a filter");
    }

    #[test]
    fn the_module_path_is_the_digest() {
        assert_eq!(module_path("0f"), "/filter/0f.wasm");
    }
}
