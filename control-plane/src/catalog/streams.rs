//! `gateway.streams`: how many clients' GET streams the gateway holds open.
//! Each one holds a connection from Envoy to the control plane and the
//! upstreams' own streams, so one caller must not be able to open them
//! without end.

use serde::{Deserialize, Serialize};

/// The caps on clients' GET streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamLimits {
    /// Streams one caller (a principal; without authentication, a client
    /// address) may hold open at once, across its sessions.
    pub max_per_caller: u32,
    /// Streams one session may hold open at once (a client needs one; a
    /// second covers a reconnection before the first is seen to close).
    pub max_per_session: u32,
    /// Streams each Envoy sends the control plane at once, whoever holds them:
    /// the circuit breaker of their own cluster (`gateway_streams`), apart
    /// from the one the era bridge and the operator's pages use.
    pub max_open: u32,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits { max_per_caller: 16, max_per_session: 4, max_open: 1000 }
    }
}
