//! The MCP gateway's filter as a native Envoy dynamic module.
//!
//! A second glue beside the proxy-wasm one (`filter/src/glue.rs`): the same
//! core (`mcp-filter`: `Gateway` decides, as data), applied through Envoy's
//! dynamic-module C ABI instead of proxy-wasm. Envoy loads
//! `libmcp_filter_native.so` when the catalog says `gateway.filter: native`
//! (`docs/design/native-module.md`).
//!
//! - [`abi`] — the part of Envoy's C ABI the module uses, declared by hand.
//! - [`version`] — the ABI version reported to Envoy, and the check that
//!   Envoy has every callback the module calls.
//! - [`shared`] — the process-wide map that stands in for proxy-wasm's
//!   shared data (rate-limit buckets, ended sessions, upstream sessions
//!   opened on first use).
//! - [`stats`] — the core's metric names as labelled families.
//! - [`config`] — a filter configuration, and each worker's `Gateway`.
//! - `host` — safe wrappers of Envoy's callbacks; `filter` — one stream,
//!   the same states as the wasm glue; `hooks` — the exported event hooks,
//!   none of which lets a panic out. These three call into Envoy and are
//!   left out of `cargo test` (which has no Envoy to link against).
//!
//! The module must never panic into Envoy: a panic in a native module
//! would take the whole process down. Hence the lints below (as in the
//! core) and the guard around every hook (`hooks.rs`).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod abi;
pub mod config;
pub mod shared;
pub mod stats;
pub mod version;

#[cfg(not(test))]
mod filter;
#[cfg(not(test))]
mod hooks;
#[cfg(not(test))]
mod host;
