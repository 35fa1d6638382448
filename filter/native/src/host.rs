//! Safe wrappers of the callbacks (`abi.rs`): the only `unsafe` calls into
//! Envoy. Each copies what Envoy lends (headers, body slices, attributes)
//! into owned values before returning, so nothing borrowed from Envoy
//! outlives the hook it came from.

use std::ffi::{c_char, c_void};

use crate::abi::{self, consts, EnvoyBuffer, EnvoyHeader, ModuleBuffer, ModuleHeader};

/// Bytes Envoy lends, as a slice (empty for a null pointer).
///
/// SAFETY: `ptr` must point to `len` readable bytes for the returned
/// lifetime, which the caller ties to the current hook.
unsafe fn lent<'a>(ptr: *const c_char, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(ptr.cast::<u8>(), len)
    }
}

/// Writes to Envoy's log, under its `dynamic_modules` logger.
pub fn log(level: u32, message: &str) {
    // SAFETY: the buffer lives across the call; Envoy copies it.
    unsafe { abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

pub fn warn(message: &str) {
    log(consts::LOG_WARN, message);
}

/// Headers Envoy lends, copied: names and values.
///
/// SAFETY: `raw` holds headers Envoy just wrote, valid during this hook.
unsafe fn owned(raw: &[EnvoyHeader]) -> Vec<(String, Vec<u8>)> {
    raw.iter()
        .map(|h| (String::from_utf8_lossy(lent(h.key_ptr, h.key_length)).into_owned(), lent(h.value_ptr, h.value_length).to_vec()))
        .collect()
}

/// One HTTP stream's filter in Envoy (`filter_envoy_ptr`). Valid from
/// `on_http_filter_new` until `on_http_filter_destroy`; every call is made
/// on the stream's worker thread, inside one of its hooks.
#[derive(Clone, Copy)]
pub struct Stream(pub *mut c_void);

impl Stream {
    /// Every header of a map (`consts::REQUEST_HEADERS`, `RESPONSE_HEADERS`).
    pub fn headers(self, kind: u32) -> Vec<(String, Vec<u8>)> {
        // SAFETY: a live stream; `raw` has room for the count Envoy gave.
        unsafe {
            let n = abi::envoy_dynamic_module_callback_http_get_headers_size(self.0, kind);
            if n == 0 {
                return Vec::new();
            }
            let mut raw = vec![EnvoyHeader::EMPTY; n];
            if !abi::envoy_dynamic_module_callback_http_get_headers(self.0, kind, raw.as_mut_ptr()) {
                return Vec::new();
            }
            owned(&raw)
        }
    }

    /// Sets a header (all its former values replaced), or removes it.
    pub fn set_header(self, kind: u32, name: &str, value: Option<&str>) {
        let value = value.map_or(ModuleBuffer::NULL, |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: a live stream; the buffers live across the call.
        unsafe { abi::envoy_dynamic_module_callback_http_set_header(self.0, kind, ModuleBuffer::of(name.as_bytes()), value) };
    }

    pub fn body_size(self, kind: u32) -> usize {
        // SAFETY: a live stream.
        unsafe { abi::envoy_dynamic_module_callback_http_get_body_size(self.0, kind) }
    }

    /// A body, copied into one buffer.
    pub fn body(self, kind: u32) -> Vec<u8> {
        // SAFETY: a live stream; `chunks` has room for the count Envoy gave.
        unsafe {
            let n = abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, kind);
            if n == 0 {
                return Vec::new();
            }
            let mut chunks = vec![EnvoyBuffer::EMPTY; n];
            if !abi::envoy_dynamic_module_callback_http_get_body_chunks(self.0, kind, chunks.as_mut_ptr()) {
                return Vec::new();
            }
            let mut out = Vec::with_capacity(chunks.iter().map(|c| c.length).sum());
            for c in &chunks {
                out.extend_from_slice(lent(c.ptr, c.length));
            }
            out
        }
    }

    /// The request body so far: what was buffered, then the chunk of this
    /// hook (unless that chunk is the buffer itself, handed on by a filter
    /// before this one).
    pub fn request_body(self) -> Vec<u8> {
        // SAFETY: a live stream.
        let received_is_buffer = unsafe { abi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.0) };
        let mut body = self.body(consts::BUFFERED_REQUEST_BODY);
        if !received_is_buffer {
            body.extend_from_slice(&self.body(consts::RECEIVED_REQUEST_BODY));
        }
        body
    }

    /// The request body so far, in bytes.
    pub fn request_body_size(self) -> usize {
        // SAFETY: a live stream.
        let received_is_buffer = unsafe { abi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.0) };
        let buffered = self.body_size(consts::BUFFERED_REQUEST_BODY);
        if received_is_buffer {
            buffered
        } else {
            buffered + self.body_size(consts::RECEIVED_REQUEST_BODY)
        }
    }

    /// Replaces the whole request body: what is buffered and the chunk at
    /// hand are drained, and `body` is put in their place (in the chunk at
    /// hand, else, outside the body hooks, in the buffer).
    pub fn replace_request_body(self, body: &[u8]) {
        for kind in [consts::BUFFERED_REQUEST_BODY, consts::RECEIVED_REQUEST_BODY] {
            let size = self.body_size(kind);
            if size > 0 {
                // SAFETY: a live stream.
                unsafe { abi::envoy_dynamic_module_callback_http_drain_body(self.0, kind, size) };
            }
        }
        // SAFETY: a live stream; the buffer lives across the call (Envoy copies it).
        unsafe {
            if !abi::envoy_dynamic_module_callback_http_append_body(self.0, consts::RECEIVED_REQUEST_BODY, ModuleBuffer::of(body)) {
                abi::envoy_dynamic_module_callback_http_append_body(self.0, consts::BUFFERED_REQUEST_BODY, ModuleBuffer::of(body));
            }
        }
    }

    /// Replaces the response chunk at hand.
    pub fn replace_response_chunk(self, chunk: &[u8]) {
        let kind = consts::RECEIVED_RESPONSE_BODY;
        let size = self.body_size(kind);
        // SAFETY: a live stream; the buffer lives across the call.
        unsafe {
            if size > 0 {
                abi::envoy_dynamic_module_callback_http_drain_body(self.0, kind, size);
            }
            abi::envoy_dynamic_module_callback_http_append_body(self.0, kind, ModuleBuffer::of(chunk));
        }
    }

    /// Envoy's local reply with these headers and body.
    pub fn send_response(self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let mut raw: Vec<ModuleHeader> = headers.iter().map(|(k, v)| ModuleHeader::of(k, v)).collect();
        let details = ModuleBuffer::of(b"mcp_filter");
        // SAFETY: a live stream; headers, body and details live across the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(status),
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::of(body),
                details,
            )
        };
    }

    /// Sets a string in the stream's filter state.
    pub fn set_filter_state(self, key: &str, value: &[u8]) {
        // SAFETY: a live stream; the buffers live across the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.0,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value),
            )
        };
    }

    /// A string attribute (`consts::ATTRIBUTE_*`), if Envoy has it.
    pub fn attribute(self, id: u32) -> Option<String> {
        let mut out = EnvoyBuffer::EMPTY;
        // SAFETY: a live stream; Envoy writes `out`, lent for this hook.
        unsafe {
            if !abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(self.0, id, &mut out) {
                return None;
            }
            Some(String::from_utf8_lossy(lent(out.ptr, out.length)).into_owned())
        }
    }

    pub fn clear_route_cache(self) {
        // SAFETY: a live stream.
        unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cache(self.0) }
    }

    /// Sends the filter's own request; its id, or why it did not start.
    pub fn callout(self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Result<u64, u32> {
        let mut raw: Vec<ModuleHeader> = headers.iter().map(|(k, v)| ModuleHeader::of(k, v)).collect();
        let mut id = 0u64;
        // SAFETY: a live stream; everything lent lives across the call (Envoy copies it).
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_http_callout(
                self.0,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::of(body),
                timeout_ms,
            )
        };
        if result == consts::CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(result)
        }
    }

    /// Lets the request go on after the filter stopped it.
    pub fn continue_decoding(self) {
        // SAFETY: a live stream.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    /// Adds to a counter, or records in a histogram, defined by this
    /// stream's configuration, with these label values.
    pub fn metric(self, histogram: bool, id: usize, values: &[&str], value: u64) -> bool {
        let mut raw: Vec<ModuleBuffer> = values.iter().map(|v| ModuleBuffer::of(v.as_bytes())).collect();
        // SAFETY: a live stream; the values live across the call.
        let result = unsafe {
            if histogram {
                abi::envoy_dynamic_module_callback_http_filter_record_histogram_value(self.0, id, raw.as_mut_ptr(), raw.len(), value)
            } else {
                abi::envoy_dynamic_module_callback_http_filter_increment_counter(self.0, id, raw.as_mut_ptr(), raw.len(), value)
            }
        };
        result == consts::METRICS_SUCCESS
    }
}

/// Defines a metric family on a configuration being made; its id.
pub fn define_metric(config: abi::ConfigEnvoyPtr, histogram: bool, name: &str, labels: &[&str]) -> Option<usize> {
    let mut raw: Vec<ModuleBuffer> = labels.iter().map(|l| ModuleBuffer::of(l.as_bytes())).collect();
    let mut id = 0usize;
    let name = ModuleBuffer::of(name.as_bytes());
    // SAFETY: Envoy's configuration is alive during `on_http_filter_config_new`,
    // the only caller; the labels live across the call.
    let result = unsafe {
        if histogram {
            abi::envoy_dynamic_module_callback_http_filter_config_define_histogram(config, name, raw.as_mut_ptr(), raw.len(), &mut id)
        } else {
            abi::envoy_dynamic_module_callback_http_filter_config_define_counter(config, name, raw.as_mut_ptr(), raw.len(), &mut id)
        }
    };
    (result == consts::METRICS_SUCCESS).then_some(id)
}

/// Headers Envoy lends to a hook (a callout's answer), copied.
///
/// SAFETY: `ptr` must point to `n` headers valid during the current hook.
pub unsafe fn lent_headers(ptr: *const EnvoyHeader, n: usize) -> Vec<(String, Vec<u8>)> {
    if ptr.is_null() || n == 0 {
        return Vec::new();
    }
    owned(std::slice::from_raw_parts(ptr, n))
}

/// Body chunks Envoy lends to a hook, their total size, and (when `copy`)
/// their bytes.
///
/// SAFETY: `ptr` must point to `n` buffers valid during the current hook.
pub unsafe fn lent_body(ptr: *const EnvoyBuffer, n: usize, copy: bool) -> (usize, Vec<u8>) {
    if ptr.is_null() || n == 0 {
        return (0, Vec::new());
    }
    let chunks = std::slice::from_raw_parts(ptr, n);
    let size = chunks.iter().map(|c| c.length).sum();
    if !copy {
        return (size, Vec::new());
    }
    let mut out = Vec::with_capacity(size);
    for c in chunks {
        out.extend_from_slice(lent(c.ptr, c.length));
    }
    (size, out)
}
