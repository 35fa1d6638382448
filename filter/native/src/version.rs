//! Which ABI this module speaks, and the check that the Envoy loading it
//! has what it calls.
//!
//! `envoy_dynamic_module_on_program_init` returns [`ABI_VERSION`]; Envoy
//! compares it with its own `ENVOY_DYNAMIC_MODULES_ABI_VERSION` and, on a
//! mismatch, only logs a warning ("... is deprecated. Please recompile ...")
//! and loads the module anyway. A module built for another ABI would then
//! fail at its first call of a callback Envoy lacks (the module is opened
//! with `RTLD_LAZY`: a missing symbol kills the process when first called).
//! So the module checks for itself, before it agrees to load: every
//! callback it imports ([`crate::abi::IMPORTED`]) must resolve in the
//! process. If one does not, `on_program_init` returns null and Envoy
//! refuses the module with an error, which is the failure we want: loud, at
//! configuration time, not on some later request.

use std::ffi::CStr;

/// The ABI version of Envoy 1.40: "v0.2.0".
///
/// Where it comes from: Envoy's `abi.h` defines
/// `ENVOY_DYNAMIC_MODULES_ABI_VERSION`; 1.38 and 1.39 say "v0.1.0", and
/// the 1.40.0 release says "v0.2.0". The latter was read from the 1.40.0
/// binary itself: its statically linked Rust module (`hickory_dns_static`)
/// returns that string from its own `on_program_init`, built with the
/// 1.40 SDK, and Envoy logs "Dynamic module ABI version v0.2.0 matched."
/// when it loads this module (the e2e suite's Envoy log shows it).
/// Bump it, and check `abi.rs` against the new header, with Envoy.
pub const ABI_VERSION: &CStr = c"v0.2.0";

/// The imports that `resolves` does not find, in order.
pub fn missing<'a>(imports: &[&'a str], resolves: impl Fn(&str) -> bool) -> Vec<&'a str> {
    imports.iter().copied().filter(|name| !resolves(name)).collect()
}

/// Whether a symbol resolves in the running process (the Envoy binary
/// exports its callbacks to modules). Not under test: it needs Envoy.
#[cfg(not(test))]
pub fn in_process(name: &str) -> bool {
    use std::ffi::{c_char, c_void, CString};
    extern "C" {
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }
    // glibc's RTLD_DEFAULT: the global scope, the executable first.
    const RTLD_DEFAULT: *mut c_void = std::ptr::null_mut();
    let Ok(symbol) = CString::new(name) else { return false };
    // SAFETY: dlsym reads a NUL-terminated string and returns an address or null.
    !unsafe { dlsym(RTLD_DEFAULT, symbol.as_ptr()) }.is_null()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_envoy_1_40s() {
        assert_eq!(ABI_VERSION.to_str(), Ok("v0.2.0"));
    }

    #[test]
    fn every_import_must_resolve() {
        let imports =
            ["envoy_dynamic_module_callback_log", "envoy_dynamic_module_callback_http_set_header", "envoy_dynamic_module_callback_new_one"];
        assert!(missing(&imports, |_| true).is_empty());
        assert_eq!(missing(&imports, |n| !n.ends_with("new_one")), ["envoy_dynamic_module_callback_new_one"]);
        assert_eq!(missing(&imports, |_| false), imports);
    }
}
