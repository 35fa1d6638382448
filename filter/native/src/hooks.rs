//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`): the module's
//! exported symbols. Each turns Envoy's pointers into the glue's values and
//! calls `Filter`; none lets a panic out.
//!
//! Panics: a panic must not unwind into Envoy's C++ (since Rust 1.81 it
//! would abort the process at the `extern "C"` boundary, taking every
//! connection of every worker with it). The core is written not to panic
//! (its clippy lints), but the module is built with unwinding on
//! (`[profile.native-release]`) and every hook runs inside [`guard`]: a
//! panic becomes the hook's safe answer (for a request still being read, a
//! 500 JSON-RPC error and the request held, never let through unchecked),
//! it is logged, and Envoy goes on. The filter of that stream is marked
//! failed and does nothing more.
//!
//! Re-entry: Envoy may call a hook of a stream while another of its hooks
//! runs (a local reply sent from the request path goes through the
//! response hooks, and may complete and destroy the stream at once). The
//! filter sits in a `RefCell`; a hook that finds it busy gives the answer
//! the wasm glue gives in that state (`Continue`: the filter is idle once
//! it has replied); completion (the metrics) and destruction are put off
//! until the hook that holds the filter ends.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use mcp_filter::decision::Reply;
use mcp_filter::error::McpError;

use crate::abi::{self, consts, EnvoyBuffer, EnvoyHeader};
use crate::config::{self, Config};
use crate::filter::{Action, Filter};
use crate::host::{self, lent_body, lent_headers, Stream};
use crate::stats::{Kind, FAMILIES};
use crate::version;

/// A stream's filter, as the module hands it to Envoy.
struct Slot {
    filter: RefCell<Filter>,
    stream: Stream,
    /// A hook of this stream panicked: the filter is left alone.
    failed: Cell<bool>,
    /// Hooks of this stream under way (one, or more when Envoy re-enters).
    depth: Cell<u32>,
    /// Envoy completed the stream while a hook held the filter: the
    /// metrics are counted when that hook ends.
    complete_pending: Cell<bool>,
    /// Envoy destroyed the stream while a hook ran: the slot is freed when
    /// that hook ends, not under its feet.
    destroyed: Cell<bool>,
}

/// Runs `f`, turning a panic into `fallback` (and a log line).
fn guard<T>(fallback: impl FnOnce() -> T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            let _ = catch_unwind(|| host::log(consts::LOG_ERROR, "mcp filter: a hook panicked; the stream was failed, Envoy goes on"));
            fallback()
        }
    }
}

/// Runs `f` on a stream's filter; `busy` when the filter is in use (a
/// re-entered hook) or failed. A panic fails the stream: `on_panic` runs.
/// What Envoy did to the stream meanwhile (completed it, destroyed it) is
/// done once the filter is free again.
///
/// SAFETY: `ptr` is a `Slot` from `on_http_filter_new`, not yet freed.
unsafe fn with_filter<T>(ptr: *const c_void, busy: T, on_panic: impl FnOnce(Stream) -> T, f: impl FnOnce(&mut Filter) -> T) -> T {
    let Some(slot) = ptr.cast::<Slot>().as_ref() else { return busy };
    let out = match slot.filter.try_borrow_mut() {
        Ok(_) if slot.failed.get() => busy,
        Err(_) => busy,
        Ok(mut filter) => {
            slot.depth.set(slot.depth.get() + 1);
            let stream = slot.stream;
            let out = guard(
                || {
                    slot.failed.set(true);
                    on_panic(stream)
                },
                || f(&mut filter),
            );
            if slot.complete_pending.replace(false) && !slot.failed.get() {
                guard(|| slot.failed.set(true), || filter.on_complete());
            }
            slot.depth.set(slot.depth.get() - 1);
            out
        }
    };
    if slot.destroyed.get() && slot.depth.get() == 0 {
        // SAFETY: the slot came from `Box::into_raw`; no hook holds it now
        // (`slot` and the filter's borrow end above).
        drop(Box::from_raw(ptr.cast::<Slot>().cast_mut()));
    }
    out
}

/// What a request still being read gets when its filter panicked: an error,
/// never the upstream.
fn refuse(stream: Stream) {
    let r = Reply::error(None, &McpError::Internal("the MCP filter failed on this request".into()));
    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _ = catch_unwind(|| stream.send_response(r.status, &headers, &r.body));
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guard(std::ptr::null, || {
        let missing = version::missing(abi::IMPORTED, version::in_process);
        if missing.is_empty() {
            version::ABI_VERSION.as_ptr()
        } else {
            // Envoy refuses a module whose init returns null; say why (the
            // log callback may be among the missing, so to stderr).
            eprintln!(
                "mcp_filter_native: this Envoy lacks {} callback(s) the module calls ({}); it was built for ABI {:?} (Envoy 1.40)",
                missing.len(),
                missing.join(", "),
                version::ABI_VERSION
            );
            std::ptr::null()
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy_ptr: abi::ConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guard(std::ptr::null, || {
        // SAFETY: Envoy lends the configuration's bytes for this call.
        let bytes = unsafe { host_bytes(config) };
        match config::parse(bytes) {
            Ok(filter) => {
                let metrics = FAMILIES
                    .iter()
                    .map(|f| host::define_metric(config_envoy_ptr, f.kind == Kind::Histogram, f.name, f.labels))
                    .collect::<Vec<_>>();
                if metrics.iter().any(Option::is_none) {
                    host::warn("mcp filter: Envoy refused a metric's definition; it will not be counted");
                }
                let c = Config::new(filter, metrics);
                host::log(
                    consts::LOG_INFO,
                    &format!(
                        "mcp filter: configuration {} loaded ({} servers, {} tools)",
                        c.filter.version,
                        c.filter.servers.len(),
                        c.filter.tools.len()
                    ),
                );
                Arc::into_raw(Arc::new(c)).cast()
            }
            // Null makes Envoy reject (NACK) this configuration and keep the previous one.
            Err(e) => {
                host::log(consts::LOG_ERROR, &format!("mcp filter: {e}"));
                std::ptr::null()
            }
        }
    })
}

/// SAFETY: `b` is lent by Envoy for the current hook.
unsafe fn host_bytes<'a>(b: EnvoyBuffer) -> &'a [u8] {
    if b.ptr.is_null() || b.length == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(b.ptr.cast::<u8>(), b.length)
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guard(
        || (),
        || {
            if !config.is_null() {
                // SAFETY: `config` came from `Arc::into_raw` in config_new; Envoy destroys it once.
                drop(unsafe { Arc::from_raw(config.cast::<Config>()) });
            }
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(config: *const c_void, filter_envoy_ptr: abi::FilterEnvoyPtr) -> *const c_void {
    guard(std::ptr::null, || {
        if config.is_null() {
            return std::ptr::null();
        }
        // SAFETY: `config` is a live `Arc<Config>` (Envoy keeps the
        // configuration while streams use it); one more owner for this stream.
        let config = unsafe {
            Arc::increment_strong_count(config.cast::<Config>());
            Arc::from_raw(config.cast::<Config>())
        };
        let stream = Stream(filter_envoy_ptr);
        let slot = Slot {
            filter: RefCell::new(Filter::new(stream, config)),
            stream,
            failed: Cell::new(false),
            depth: Cell::new(0),
            complete_pending: Cell::new(false),
            destroyed: Cell::new(false),
        };
        Box::into_raw(Box::new(slot)).cast_const().cast()
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: *const c_void) {
    guard(
        || (),
        || {
            // SAFETY: `filter` came from `Box::into_raw` in filter_new; Envoy destroys it once.
            let Some(slot) = (unsafe { filter.cast::<Slot>().as_ref() }) else { return };
            if slot.depth.get() > 0 {
                // Destroyed from inside one of its hooks: freed when that hook ends.
                slot.destroyed.set(true);
            } else {
                // SAFETY: as above; nothing holds the slot.
                drop(unsafe { Box::from_raw(filter.cast::<Slot>().cast_mut()) });
            }
        },
    )
}

fn headers_status(a: Action) -> u32 {
    match a {
        Action::Continue => consts::HEADERS_CONTINUE,
        Action::Pause => consts::HEADERS_STOP_ITERATION,
    }
}

fn body_status(a: Action) -> u32 {
    match a {
        Action::Continue => consts::BODY_CONTINUE,
        Action::Pause => consts::BODY_STOP_ITERATION_AND_BUFFER,
    }
}

fn trailers_status(a: Action) -> u32 {
    match a {
        Action::Continue => consts::TRAILERS_CONTINUE,
        Action::Pause => consts::TRAILERS_STOP_ITERATION,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _envoy: abi::FilterEnvoyPtr,
    filter: *const c_void,
    end_of_stream: bool,
) -> u32 {
    let on_panic = |s: Stream| {
        refuse(s);
        consts::HEADERS_STOP_ITERATION
    };
    // SAFETY: Envoy passes the filter it got from filter_new.
    unsafe { with_filter(filter, consts::HEADERS_CONTINUE, on_panic, |f| headers_status(f.on_request_headers(end_of_stream))) }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: abi::FilterEnvoyPtr,
    filter: *const c_void,
    end_of_stream: bool,
) -> u32 {
    let on_panic = |s: Stream| {
        refuse(s);
        consts::BODY_STOP_ITERATION_AND_BUFFER
    };
    // SAFETY: as above.
    unsafe { with_filter(filter, consts::BODY_CONTINUE, on_panic, |f| body_status(f.on_request_body(end_of_stream))) }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(_envoy: abi::FilterEnvoyPtr, filter: *const c_void) -> u32 {
    let on_panic = |s: Stream| {
        refuse(s);
        consts::TRAILERS_STOP_ITERATION
    };
    // SAFETY: as above.
    unsafe { with_filter(filter, consts::TRAILERS_CONTINUE, on_panic, |f| trailers_status(f.on_request_trailers())) }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _envoy: abi::FilterEnvoyPtr,
    filter: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: as above.
    unsafe {
        with_filter(
            filter,
            consts::HEADERS_CONTINUE,
            |_| consts::HEADERS_CONTINUE,
            |f| headers_status(f.on_response_headers(end_of_stream)),
        )
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: abi::FilterEnvoyPtr,
    filter: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: as above.
    unsafe { with_filter(filter, consts::BODY_CONTINUE, |_| consts::BODY_CONTINUE, |f| body_status(f.on_response_body(end_of_stream))) }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_envoy: abi::FilterEnvoyPtr, _filter: *const c_void) -> u32 {
    consts::TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_envoy: abi::FilterEnvoyPtr, filter: *const c_void) {
    // SAFETY: as above.
    let Some(slot) = (unsafe { filter.cast::<Slot>().as_ref() }) else { return };
    if slot.depth.get() > 0 {
        // Completed from inside one of its hooks (a local reply sent from a
        // callout's answer ends the stream at once): counted when it ends.
        slot.complete_pending.set(true);
        return;
    }
    // SAFETY: as above.
    unsafe { with_filter(filter, (), |_| (), Filter::on_complete) }
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: abi::FilterEnvoyPtr,
    filter: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHeader,
    headers_size: usize,
    body: *const EnvoyBuffer,
    body_size: usize,
) {
    // SAFETY: as above; the answer's headers and body are lent for this hook.
    unsafe {
        with_filter(
            filter,
            (),
            |_| (),
            |f| {
                let (size, _) = lent_body(body, body_size, false);
                let copy = size <= f.callout_limit();
                let answer = crate::filter::Answer {
                    success: result == consts::CALLOUT_SUCCESS,
                    headers: lent_headers(headers, headers_size),
                    size,
                    body: lent_body(body, body_size, copy).1,
                };
                f.on_callout_done(callout_id, answer)
            },
        )
    }
}

// Hooks Envoy 1.40 requires of every HTTP filter module, for features the
// gateway does not use (streamed callouts, scheduling, flow control of a
// terminal filter): nothing to do.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: abi::FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: abi::FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: abi::FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: abi::FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: abi::FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_envoy: abi::FilterEnvoyPtr, _filter: *const c_void, _event_id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: abi::FilterEnvoyPtr,
    _filter: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: abi::FilterEnvoyPtr,
    _filter: *const c_void,
) {
}
