//! The MCP gateway's control plane.
//!
//! - [`catalog`] parses and validates `catalog.yaml`;
//! - [`discovery`] lists each upstream's tools as an MCP client;
//! - [`compile`] turns both into Envoy resources (a pure function);
//! - [`snapshot`] holds the current resources; [`ads`] serves them to Envoy;
//! - [`controller`] ties them together: watch the catalog, discover,
//!   compile, publish, and keep the last good configuration on errors;
//! - [`admin`] is the operator's HTTP API;
//! - [`runtime`] runs stdio servers and holds legacy SSE connections,
//!   supervised, and serves them to Envoy as Streamable HTTP;
//! - [`bridge`] serves 2026-07-28 requests for servers that need a
//!   session or an older revision;
//! - [`streams`] holds clients' GET streams: the gateway's notifications
//!   merged with the upstreams' own streams;
//! - [`upstream`] is how the control plane itself reaches a server.

pub mod admin;
pub mod ads;
pub mod bridge;
pub mod catalog;
pub mod compile;
pub mod controller;
pub mod discovery;
pub mod metrics;
pub mod rls;
pub mod runtime;
pub mod snapshot;
pub mod streams;
pub mod upstream;
