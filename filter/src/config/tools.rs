//! The parts of the filter's configuration that shape what the tools look
//! like to a caller beyond the servers' own lists: the tool router, held
//! tools (pinned definitions) and virtual servers.

use serde::{Deserialize, Serialize};

use super::AuthorizationConfig;

/// A named MCP endpoint exposing a subset of the gateway's tools, prompts
/// and resources, under names and descriptions of its own, to the callers
/// its own rules admit. It narrows what the gateway serves; it never widens
/// it: `authorization` applies on top of the gateway's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualServer {
    pub name: String,
    /// Its path: `<mcp_path>/<name>`.
    pub path: String,
    /// Which tools (by the gateway's names), prompts (likewise) and
    /// resources (by URI, normal form) it offers.
    #[serde(default)]
    pub tools: Subset,
    #[serde(default)]
    pub prompts: Subset,
    #[serde(default)]
    pub resources: Subset,
    /// Tools and prompts it offers under another name: (the gateway's
    /// name, its name here). The gateway's name is then unknown here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renames: Vec<(String, String)>,
    /// Tools and prompts it describes in its own words: (the gateway's
    /// name, the description).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub descriptions: Vec<(String, String)>,
    /// Its own rules, on top of the gateway's. `None`: the gateway's alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationConfig>,
    /// What its `tools/list` offers of the tool router. `None`: the
    /// gateway's setting ([`ToolRouter::in_mcp`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_mcp: Option<InMcp>,
}

/// Globs (`*`, `?`) saying which names are in: those an `include` pattern
/// matches (every name when `include` is absent) that no `exclude` pattern
/// matches (`policy::in_subset`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subset {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

impl Subset {
    pub fn is_all(&self) -> bool {
        self.include.is_none() && self.exclude.is_empty()
    }
}

/// A tool held until an administrator approves its new definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldTool {
    /// The name the gateway exposes it by.
    pub name: String,
    /// Index into [`super::FilterConfig::servers`].
    pub server: usize,
    /// The server's own name for it (for the approval's path).
    pub upstream_name: String,
    /// What changed, in words.
    pub change: String,
}

/// The name of the gateway's own tool that searches the tools
/// ([`InMcp::Alongside`], [`InMcp::Only`]).
pub const SEARCH_TOOL: &str = "search_tools";
/// The name of the gateway's own tool that calls a tool found by name
/// ([`InMcp::Only`]).
pub const CALL_TOOL: &str = "call_tool";

/// The tool router (issue 20): `POST <path>` answers which tools fit a task,
/// `GET <path>/status` describes the index; inside MCP, the search tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolRouter {
    /// Where it answers on the gateway's port (`/tools`).
    pub path: String,
    /// What `tools/list` offers of it.
    #[serde(default)]
    pub in_mcp: InMcp,
    /// How many tools an answer holds when the request does not say.
    pub default_limit: usize,
    /// The most tools a request may ask for.
    pub max_limit: usize,
    /// Every tool's words, in the order of [`super::FilterConfig::tools`].
    pub index: crate::search::ToolIndex,
}

/// What `tools/list` offers of the tool router.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InMcp {
    /// Nothing: the tools as the servers list them.
    #[default]
    Off,
    /// [`SEARCH_TOOL`] beside every tool.
    Alongside,
    /// [`SEARCH_TOOL`] and [`CALL_TOOL`] instead of the tools: a client loads
    /// two tools, finds the few that fit, and calls them through the second.
    /// The tools themselves can still be called by name.
    Only,
}
