//! `endpoints`: virtual servers, each a named MCP endpoint at
//! `<gateway.mcp_path>/<name>` exposing a subset of the gateway's tools,
//! prompts and resources, some renamed or described anew, to the callers
//! its own rules admit on top of the gateway's (docs/design/tool-router.md).

use std::collections::{BTreeMap, BTreeSet};

use mcp_filter::config::{InMcp, Subset};
use serde::{Deserialize, Serialize};

use super::AuthorizationSettings;

/// One virtual server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSettings {
    /// Unique; a-z 0-9 - _. Its path is `<gateway.mcp_path>/<name>`.
    pub name: String,
    /// Which tools it offers, by the gateway's names (`search__query`).
    #[serde(default, skip_serializing_if = "Subset::is_all")]
    pub tools: Subset,
    /// Which prompts, likewise.
    #[serde(default, skip_serializing_if = "Subset::is_all")]
    pub prompts: Subset,
    /// Which resources and templates, by URI.
    #[serde(default, skip_serializing_if = "Subset::is_all")]
    pub resources: Subset,
    /// Tools and prompts it offers under another name: the gateway's name ->
    /// the name here (the gateway's name is then unknown here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// Its own description of tools and prompts, by the gateway's name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub describe: BTreeMap<String, String>,
    /// Its own rules, applied after `gateway.authorization`'s: a caller
    /// uses here only what both allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationSettings>,
    /// What its `tools/list` offers of the tool router (`off`, `alongside`,
    /// `only`); default: `gateway.tool_router.in_mcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_mcp: Option<InMcp>,
}

/// The path of virtual server `name`.
pub fn path_of(mcp_path: &str, name: &str) -> String {
    format!("{}/{name}", mcp_path.trim_end_matches('/'))
}

/// Every problem with the catalog's endpoints, for `validate`.
pub fn problems(endpoints: &[EndpointSettings]) -> Vec<String> {
    let mut p = Vec::new();
    let mut names = BTreeSet::new();
    for (i, e) in endpoints.iter().enumerate() {
        let at = if e.name.is_empty() { format!("endpoints[{i}]") } else { format!("endpoint {:?}", e.name) };
        let valid = !e.name.is_empty()
            && e.name.len() <= 64
            && e.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            p.push(format!("{at}: name must be 1-64 of a-z 0-9 - _ (it names the path <mcp_path>/<name>)"));
        }
        if !names.insert(e.name.as_str()) {
            p.push(format!("{at}: name is used by another endpoint"));
        }
        for (field, subset) in [("tools", &e.tools), ("prompts", &e.prompts), ("resources", &e.resources)] {
            if subset.include.as_ref().is_some_and(Vec::is_empty) {
                p.push(format!("{at}: {field}.include: [] offers none; leave include out to offer all"));
            }
            for pattern in subset.include.iter().flatten().chain(&subset.exclude) {
                if pattern.is_empty() || pattern.chars().any(char::is_control) {
                    p.push(format!("{at}: {field}: {pattern:?} is not a pattern (a name, with * and ? as wildcards)"));
                }
            }
        }
        let mut targets = BTreeSet::new();
        for (from, to) in &e.rename {
            if to.is_empty() || to.len() > 128 || to.chars().any(|c| c.is_control() || c.is_whitespace()) {
                p.push(format!("{at}: rename: {from:?} -> {to:?}: the new name must be 1-128 characters, no spaces"));
            }
            if [mcp_filter::config::SEARCH_TOOL, mcp_filter::config::CALL_TOOL].contains(&to.as_str()) {
                p.push(format!("{at}: rename: {to:?} is the name of one of the gateway's own tools; choose another"));
            }
            if !targets.insert(to.as_str()) {
                p.push(format!("{at}: rename: two names are renamed {to:?}"));
            }
        }
        if let Some(a) = &e.authorization {
            let mut seen = BTreeSet::new();
            for (j, r) in a.rules.iter().enumerate() {
                if r.name.trim().is_empty() || !seen.insert(r.name.as_str()) {
                    p.push(format!("{at}: authorization.rules[{j}]: each rule needs a name of its own (the audit log names it)"));
                }
            }
        }
    }
    p
}
