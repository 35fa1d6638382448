//! Resource URIs: `uri::normalize` on any text, the form authorization
//! rules judge and servers are sent.
//!
//! Input: the URI, as UTF-8 (other bytes are skipped: a URI the gateway
//! reads comes out of a JSON string).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_filter::uri::{normalize, path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(normal) = normalize(text) else { return };
    // Idempotent: the normal form is its own normal form, so judging it
    // again (or a server normalising it) changes nothing.
    assert_eq!(normalize(&normal).as_deref(), Ok(normal.as_str()), "{text:?}");
    // No dot segment is left to climb with.
    assert!(path(&normal).split('/').all(|s| s != ".." && s != "."), "{text:?} -> {normal:?}");
});
