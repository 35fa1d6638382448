//! The MCP gateway's Envoy filter.
//!
//! Everything that decides lives in plain Rust modules that compile natively
//! and are tested with `cargo test`: [`jsonrpc`] parses messages, [`gateway`]
//! decides what to do with a request (its parts: routes, authentication and
//! authorization, lists, the handshake and sessions, the protocol eras, the
//! operator's pages, the header edits of what goes on), in the terms of
//! [`decision`]; [`headers`] reads and writes header values, [`uri`] puts
//! resource URIs in normal form, [`session`]
//! seals session ids, [`search`] ranks tools for a task, [`revocation`] and [`opened`] keep what Envoy's shared
//! data holds of sessions (ended ones, upstream sessions opened on first use), [`policy`] and [`ratelimit`] rule on callers,
//! [`relay`] and [`sse`] rewrite streams, [`error`] maps refusals to
//! JSON-RPC codes, [`metrics`] names what a finished request adds to the
//! stats. The proxy-wasm glue (`glue`) is compiled only for wasm32; it
//! gathers headers, body and time from Envoy, calls the core, and applies
//! the decision. It is the only code that makes host calls. [`config`] is
//! the configuration schema the control plane serialises and the filter
//! reads; [`status`] the control plane's `/servers` page, likewise.
//!
//! The filter must never panic: under `panic = "abort"` a panic kills the VM
//! for every request on that worker. Hence the lints below.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod config;
pub mod decision;
pub mod error;
// The tests' configuration, shared with the fuzz targets and the cost
// example (feature `fixtures`); never part of the wasm module.
#[cfg(any(test, feature = "fixtures"))]
#[doc(hidden)]
pub mod fixtures;
pub mod gateway;
pub mod headers;
pub mod jsonrpc;
pub mod metrics;
pub mod opened;
pub mod origin;
pub mod policy;
pub mod ratelimit;
pub mod relay;
pub mod revocation;
pub mod search;
pub mod session;
pub mod sse;
pub mod status;
pub mod uri;

#[cfg(target_arch = "wasm32")]
mod glue;
