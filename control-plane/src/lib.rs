//! The MCP gateway's control plane.
//!
//! The modules, each depending only on those above it:
//! - [`catalog`] parses and validates `catalog.yaml`; [`snapshot`] holds
//!   the resources served to Envoy and what each Envoy accepted;
//! - [`upstream`] is how the control plane itself reaches a server;
//!   [`discovery`] lists each server's offer as an MCP client;
//! - [`compile`] turns the catalog and the offers into Envoy resources (a
//!   pure function);
//! - [`runtime`] runs stdio servers and holds legacy SSE connections,
//!   supervised;
//! - [`state`] describes what is served, as one value swapped whole;
//! - [`controller`] reads the catalog, discovers, compiles and swaps that
//!   value in, keeping the last good configuration on errors;
//! - [`ads`] serves the snapshot to Envoy; [`rls`] enforces global rate
//!   limits; [`metrics`] renders the control plane's Prometheus text;
//! - [`http`] is the HTTP surface: the operator's API, and the endpoints
//!   Envoy reaches for the filter (clients' GET streams, the era bridge, the
//!   pipes of the servers the control plane runs).

pub mod ads;
pub mod catalog;
pub mod compile;
pub mod controller;
pub mod credentials;
pub mod discovery;
pub mod http;
pub mod metrics;
pub mod pins;
pub mod rls;
pub mod runtime;
pub mod snapshot;
pub mod state;
pub mod telemetry;
pub mod token;
pub mod upstream;
