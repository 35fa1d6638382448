//! What the catalog says of a server's tools beyond reaching them: what a
//! change of one's definition does (`gateway.pin`, `servers[].pin`;
//! docs/design/tool-router.md). Which are served (`servers[].tools`) is a
//! `mcp_filter::config::Subset` of the server's own names.

use serde::{Deserialize, Serialize};

/// What the gateway does when a server changes a tool's definition (its
/// name, title, description, input or output schema, annotations) from the
/// one approved: the first definition seen is approved (trust on first use),
/// later ones are compared with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinMode {
    /// Nothing is recorded or compared.
    #[default]
    Off,
    /// The changed tool is served; `/servers`, the log and a metric say so
    /// until an administrator approves the change.
    Warn,
    /// The changed tool leaves the lists and its calls are refused with an
    /// error naming the change, until an administrator approves it.
    Hold,
}

impl PinMode {
    pub fn is_off(&self) -> bool {
        *self == PinMode::Off
    }
}
