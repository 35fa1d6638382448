//! What the catalog says of a server's tools beyond reaching them: which are
//! served (`servers[].tools`), and what a change of one's definition does
//! (`gateway.pin`, `servers[].pin`; docs/design/tool-router.md).

use serde::{Deserialize, Serialize};

/// Which of a server's tools the gateway serves: globs (`*`, `?`) over the
/// server's own tool names, before any prefix. A tool is served when it
/// matches an `include` pattern (or `include` is left out) and no `exclude`
/// pattern. The others are not listed, not searched and not callable, as if
/// the server did not offer them; `/servers` names them (`hidden_tools`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

impl ToolFilter {
    pub fn serves_all(&self) -> bool {
        self.include.is_none() && self.exclude.is_empty()
    }

    /// Whether the gateway serves the server's tool `name` (its own name).
    pub fn serves(&self, name: &str) -> bool {
        use mcp_filter::policy::any_matches;
        self.include.as_ref().is_none_or(|include| any_matches(include, name)) && !any_matches(&self.exclude, name)
    }
}

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
