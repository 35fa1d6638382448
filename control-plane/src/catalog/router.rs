//! `gateway.tool_router`: which tools fit a task, answered by the filter
//! from an index the control plane compiles (`POST /tools`,
//! `GET /tools/status`, and inside MCP the gateway's own `search_tools` and
//! `call_tool`). docs/design/tool-router.md.

use mcp_filter::config::InMcp;
use serde::{Deserialize, Serialize};

/// The tool router's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolRouterSettings {
    /// Whether `POST <path>` and `GET <path>/status` answer (default on).
    pub enabled: bool,
    /// Where they answer, on the gateway's port.
    pub path: String,
    /// What `tools/list` offers of it: `off` (default), `alongside`
    /// (`search_tools` beside every tool) or `only` (`search_tools` and
    /// `call_tool` instead of the tools, for clients with huge catalogs).
    pub in_mcp: InMcp,
    /// How many tools an answer holds when the request does not say.
    pub default_limit: usize,
    /// The most a request may ask for.
    pub max_limit: usize,
}

/// The most `max_limit` may be: an answer carries each tool's schema.
pub const MAX_LIMIT: usize = 200;

impl Default for ToolRouterSettings {
    fn default() -> Self {
        ToolRouterSettings { enabled: true, path: "/tools".into(), in_mcp: InMcp::Off, default_limit: 5, max_limit: 50 }
    }
}

impl ToolRouterSettings {
    /// Every problem with these settings, for `validate`.
    pub fn problems(&self, mcp_path: &str, reserved: &[&str]) -> Vec<String> {
        let mut p = Vec::new();
        let at = "gateway.tool_router";
        if !self.enabled && self.in_mcp != InMcp::Off {
            p.push(format!("{at}.in_mcp: the search tools need the router: set enabled: true, or in_mcp: off"));
        }
        if !self.path.starts_with('/') || self.path.len() < 2 || self.path.contains(['?', '#', ' ']) {
            p.push(format!("{at}.path: {:?} must be a path like /tools", self.path));
        }
        let clash = |other: &str| {
            self.path == other || other.starts_with(&format!("{}/", self.path)) || self.path.starts_with(&format!("{other}/"))
        };
        if clash(mcp_path) {
            p.push(format!("{at}.path: {:?} overlaps the MCP endpoint {mcp_path:?}: choose another path", self.path));
        }
        // The gateway's pages match by prefix (`/health` takes `/healthz/status`).
        if let Some(r) = reserved.iter().find(|r| clash(r) || self.path.starts_with(**r)) {
            p.push(format!("{at}.path: {:?} overlaps the gateway's own page {r:?}: choose another path", self.path));
        }
        if self.max_limit == 0 || self.max_limit > MAX_LIMIT {
            p.push(format!("{at}.max_limit: {} must be between 1 and {MAX_LIMIT}", self.max_limit));
        }
        if self.default_limit == 0 || self.default_limit > self.max_limit {
            p.push(format!("{at}.default_limit: {} must be between 1 and max_limit ({})", self.default_limit, self.max_limit));
        }
        p
    }
}
