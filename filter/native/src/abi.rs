//! The part of Envoy's dynamic-module C ABI this module uses, written by
//! hand (no bindgen, no SDK): the types, the enumerations as the integers C
//! gives them, and the callbacks Envoy exports to modules.
//!
//! Source: `source/extensions/dynamic_modules/abi/abi.h` of Envoy's
//! repository, the header whose `ENVOY_DYNAMIC_MODULES_ABI_VERSION` is
//! "v0.1.0" (1.38, 1.39), which Envoy 1.40 ("v0.2.0") keeps compatible: the
//! header promises that v0.1.y modules work with v0.2.x. Every signature
//! below was also checked against the Envoy 1.40.0 binary the project runs
//! (`nm -D` for the names, the argument registers and stack slots of
//! `send_response`, `http_callout`, `get_header` and `get_body_chunks_size`
//! in its disassembly); `docs/design/native-module.md` says how.
//!
//! Only what the glue calls is declared. Each callback's name is also
//! listed in [`IMPORTED`], which `version::missing` checks against the
//! running Envoy before the module agrees to load.

use std::ffi::{c_char, c_void};

/// Envoy's object for one filter configuration
/// (`envoy_dynamic_module_type_http_filter_config_envoy_ptr`).
pub type ConfigEnvoyPtr = *mut c_void;
/// Envoy's object for one HTTP stream's filter
/// (`envoy_dynamic_module_type_http_filter_envoy_ptr`).
pub type FilterEnvoyPtr = *mut c_void;

/// Bytes Envoy owns, valid until the hook returns (or a setter is called).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl EnvoyBuffer {
    pub const EMPTY: EnvoyBuffer = EnvoyBuffer { ptr: std::ptr::null(), length: 0 };
}

/// Bytes the module owns, lent to Envoy for one call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl ModuleBuffer {
    /// The null buffer: "no value" (a header to remove).
    pub const NULL: ModuleBuffer = ModuleBuffer { ptr: std::ptr::null(), length: 0 };

    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer { ptr: bytes.as_ptr().cast(), length: bytes.len() }
    }
}

/// A header as Envoy lends it (`envoy_dynamic_module_type_envoy_http_header`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

impl EnvoyHeader {
    pub const EMPTY: EnvoyHeader = EnvoyHeader { key_ptr: std::ptr::null(), key_length: 0, value_ptr: std::ptr::null(), value_length: 0 };
}

/// A header the module lends Envoy (`envoy_dynamic_module_type_module_http_header`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

impl ModuleHeader {
    pub fn of(name: &str, value: &str) -> ModuleHeader {
        ModuleHeader { key_ptr: name.as_ptr().cast(), key_length: name.len(), value_ptr: value.as_ptr().cast(), value_length: value.len() }
    }
}

/// The C enumerations, as the integers they are (C gives each member its
/// position; an enum is passed as an `int`).
pub mod consts {
    /// `envoy_dynamic_module_type_http_header_type`.
    pub const REQUEST_HEADERS: u32 = 0;
    pub const RESPONSE_HEADERS: u32 = 2;

    /// `envoy_dynamic_module_type_http_body_type`.
    pub const RECEIVED_REQUEST_BODY: u32 = 0;
    pub const BUFFERED_REQUEST_BODY: u32 = 1;
    pub const RECEIVED_RESPONSE_BODY: u32 = 2;

    /// `..._on_http_filter_request_headers_status` (and response headers).
    pub const HEADERS_CONTINUE: u32 = 0;
    pub const HEADERS_STOP_ITERATION: u32 = 1;
    /// `..._on_http_filter_request_body_status` (and response body).
    pub const BODY_CONTINUE: u32 = 0;
    pub const BODY_STOP_ITERATION_AND_BUFFER: u32 = 1;
    /// `..._on_http_filter_request_trailers_status` (and response trailers).
    pub const TRAILERS_CONTINUE: u32 = 0;
    pub const TRAILERS_STOP_ITERATION: u32 = 1;
    /// `..._on_http_filter_local_reply_status`.
    pub const LOCAL_REPLY_CONTINUE: u32 = 0;

    /// `envoy_dynamic_module_type_http_callout_init_result`.
    pub const CALLOUT_INIT_SUCCESS: u32 = 0;
    /// `envoy_dynamic_module_type_http_callout_result`.
    pub const CALLOUT_SUCCESS: u32 = 0;

    /// `envoy_dynamic_module_type_metrics_result`.
    pub const METRICS_SUCCESS: u32 = 0;

    /// `envoy_dynamic_module_type_log_level`.
    pub const LOG_INFO: u32 = 2;
    pub const LOG_WARN: u32 = 3;
    pub const LOG_ERROR: u32 = 4;

    /// `envoy_dynamic_module_type_attribute_id`: `source.address` and the
    /// peer certificate's names (`connection.*_peer_certificate`).
    pub const ATTRIBUTE_SOURCE_ADDRESS: u32 = 24;
    pub const ATTRIBUTE_SUBJECT_PEER_CERTIFICATE: u32 = 33;
    pub const ATTRIBUTE_DNS_SAN_PEER_CERTIFICATE: u32 = 35;
    pub const ATTRIBUTE_URI_SAN_PEER_CERTIFICATE: u32 = 37;
}

/// Declares Envoy's callbacks and lists their names in [`IMPORTED`].
macro_rules! imports {
    ($( $(#[$doc:meta])* fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)? ; )*) => {
        extern "C" {
            $( $(#[$doc])* pub fn $name($($arg: $ty),*) $(-> $ret)?; )*
        }
        /// Every callback this module calls, by its symbol name.
        pub const IMPORTED: &[&str] = &[$(stringify!($name)),*];
    };
}

imports! {
    /// Writes a message to Envoy's log (the `dynamic_modules` logger).
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);

    /// How many headers a map has, then all of them.
    fn envoy_dynamic_module_callback_http_get_headers_size(filter: FilterEnvoyPtr, kind: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(filter: FilterEnvoyPtr, kind: u32, out: *mut EnvoyHeader) -> bool;
    /// Sets a header (every former value replaced); a null value removes it.
    fn envoy_dynamic_module_callback_http_set_header(filter: FilterEnvoyPtr, kind: u32, key: ModuleBuffer, value: ModuleBuffer) -> bool;

    /// Envoy's local reply (`sendLocalReply`): the local-reply mapper sees it.
    fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status: u32,
        headers: *mut ModuleHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    /// A body (received chunk or what is buffered), its size and slices.
    fn envoy_dynamic_module_callback_http_get_body_size(filter: FilterEnvoyPtr, kind: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(filter: FilterEnvoyPtr, kind: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(filter: FilterEnvoyPtr, kind: u32, out: *mut EnvoyBuffer) -> bool;
    fn envoy_dynamic_module_callback_http_append_body(filter: FilterEnvoyPtr, kind: u32, data: ModuleBuffer) -> bool;
    fn envoy_dynamic_module_callback_http_drain_body(filter: FilterEnvoyPtr, kind: u32, bytes: usize) -> bool;
    /// Whether the received request chunk is the buffered body itself.
    fn envoy_dynamic_module_callback_http_received_buffered_request_body(filter: FilterEnvoyPtr) -> bool;

    /// Filter state as a string (`%FILTER_STATE(key:PLAIN)%`, CEL `filter_state[key]`).
    fn envoy_dynamic_module_callback_http_set_filter_state_bytes(filter: FilterEnvoyPtr, key: ModuleBuffer, value: ModuleBuffer) -> bool;
    /// An attribute of the stream (`source.address`, `connection.*`).
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(filter: FilterEnvoyPtr, id: u32, out: *mut EnvoyBuffer) -> bool;
    /// The route is chosen again (after the filter named the cluster).
    fn envoy_dynamic_module_callback_http_clear_route_cache(filter: FilterEnvoyPtr);

    /// The filter's own request to a cluster; the answer comes to
    /// `envoy_dynamic_module_on_http_filter_http_callout_done`.
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: FilterEnvoyPtr,
        id_out: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
    /// Lets a request that waited on the filter go on.
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);

    /// Metrics: defined with their label names while the configuration is
    /// made (Envoy refuses new definitions afterwards), then incremented or
    /// recorded with the label values of one request.
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        labels: *mut ModuleBuffer,
        labels_size: usize,
        id_out: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        labels: *mut ModuleBuffer,
        labels_size: usize,
        id_out: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        values: *mut ModuleBuffer,
        values_size: usize,
        by: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: FilterEnvoyPtr,
        id: usize,
        values: *mut ModuleBuffer,
        values_size: usize,
        value: u64,
    ) -> u32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_import_is_an_envoy_callback_named_once() {
        let mut seen = std::collections::HashSet::new();
        for name in IMPORTED {
            assert!(name.starts_with("envoy_dynamic_module_callback_"), "{name}");
            assert!(seen.insert(*name), "{name} listed twice");
        }
    }

    #[test]
    fn the_c_structs_have_the_c_layout() {
        // Two pointers' worth, and four: what abi.h's structs take on a 64-bit target.
        assert_eq!(std::mem::size_of::<EnvoyBuffer>(), 2 * std::mem::size_of::<usize>());
        assert_eq!(std::mem::size_of::<ModuleBuffer>(), 2 * std::mem::size_of::<usize>());
        assert_eq!(std::mem::size_of::<EnvoyHeader>(), 4 * std::mem::size_of::<usize>());
        assert_eq!(std::mem::size_of::<ModuleHeader>(), 4 * std::mem::size_of::<usize>());
    }
}
