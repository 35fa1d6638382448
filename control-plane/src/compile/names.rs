//! The names clients call tools and prompts by: each exposed name routes to
//! one server, what cannot be served is [`Dropped`] with a reason, and a
//! server's tools are sorted into served, filtered out and held.

use std::collections::BTreeMap;

use mcp_filter::config::{FilterConfig, InMcp, NamedRoute, CALL_TOOL, SEARCH_TOOL};
use mcp_filter::search::IndexBuilder;
use serde_json::Value;

use super::Dropped;
use crate::catalog::Server;

/// A server's tools as the catalog has them served: the rest, the names of
/// those its `tools` filter leaves out, and those held (`pin: hold`), with
/// their change. An unnamed tool is served, to be dropped with a reason.
pub(super) fn sort_tools<'v>(
    s: &Server,
    tools: &'v [Value],
    held: Option<&BTreeMap<String, String>>,
) -> (Vec<&'v Value>, Vec<String>, Vec<(String, String)>) {
    let (mut served, mut hidden, mut holding) = (Vec::new(), Vec::new(), Vec::new());
    for tool in tools {
        match tool.get("name").and_then(Value::as_str) {
            Some(name) if !mcp_filter::policy::in_subset(&s.tools, name) => hidden.push(name.to_string()),
            Some(name) => match held.and_then(|h| h.get(name)) {
                Some(change) => holding.push((name.to_string(), change.clone())),
                None => served.push(tool),
            },
            None => served.push(tool),
        }
    }
    (served, hidden, holding)
}

/// Exposed names of one kind (tools or prompts): each name routes to one
/// server; what cannot be served is [`Dropped`].
pub(super) struct Names<'a> {
    pub(super) kind: &'static str,
    pub(super) routes: Vec<NamedRoute>,
    /// Exposed name -> (index in `routes`, its server's name).
    pub(super) taken: BTreeMap<String, (usize, String)>,
    /// The running configuration and its routes of this kind.
    pub(super) previous: Option<(&'a FilterConfig, &'a [NamedRoute])>,
    /// Who held each name in the running configuration: made at the first
    /// name two servers expose (at 210,000 tools, making it for every
    /// compile cost a tenth of a second).
    pub(super) holders: Option<BTreeMap<&'a str, &'a str>>,
    pub(super) dropped: Vec<Dropped>,
    /// Each route's words for the tool router, when it is on (tools only).
    pub(super) index: Option<IndexBuilder>,
    /// Names the gateway keeps for its own tools: an upstream's is dropped.
    pub(super) reserved: &'static [&'static str],
    /// Names of held tools (`pin: hold`) and their servers: kept for them
    /// while held, so that no other server takes the name meanwhile.
    pub(super) held: BTreeMap<String, String>,
}

impl<'a> Names<'a> {
    pub(super) fn new(kind: &'static str, previous: Option<(&'a FilterConfig, &'a [NamedRoute])>) -> Self {
        Names {
            kind,
            routes: Vec::new(),
            taken: BTreeMap::new(),
            previous,
            holders: None,
            dropped: Vec::new(),
            index: None,
            reserved: &[],
            held: BTreeMap::new(),
        }
    }

    /// Also computes each item's words for the tool router, and keeps the
    /// names of the gateway's own tools that it offers inside MCP.
    pub(super) fn indexed(self, in_mcp: InMcp) -> Self {
        let reserved: &'static [&'static str] = match in_mcp {
            InMcp::Off => &[],
            InMcp::Alongside => &[SEARCH_TOOL],
            InMcp::Only => &[SEARCH_TOOL, CALL_TOOL],
        };
        Names { index: Some(IndexBuilder::default()), reserved, ..self }
    }

    /// The server that exposed `name` in the running configuration.
    fn holder(&mut self, name: &str) -> Option<&'a str> {
        let previous = self.previous;
        let holders = self.holders.get_or_insert_with(|| {
            let Some((config, routes)) = previous else { return BTreeMap::new() };
            routes.iter().filter_map(|r| Some((r.name.as_str(), config.servers.get(r.server)?.name.as_str()))).collect()
        });
        holders.get(name).copied()
    }

    /// Adds one server's items, renamed `<prefix><name>` (or kept, without a prefix).
    pub(super) fn add<'i>(&mut self, server: usize, server_name: &str, prefix: Option<&str>, items: impl IntoIterator<Item = &'i Value>) {
        let kind = self.kind;
        for item in items {
            let Some(upstream_name) = item.get("name").and_then(Value::as_str) else {
                let reason = format!("it listed a {kind} without a string name");
                self.dropped.push(Dropped { server: server_name.to_string(), kind, name: String::new(), reason });
                continue;
            };
            let name = format!("{}{upstream_name}", prefix.unwrap_or_default());
            // Serialised with its new name, without a copy of the item.
            let definition = match item.as_object() {
                Some(fields) => serde_json::value::to_raw_value(&Renamed { fields, name: &name })
                    .map(mcp_filter::config::Definition::from_raw)
                    .unwrap_or_else(|_| mcp_filter::config::Definition::new(item)),
                None => mcp_filter::config::Definition::new(item),
            };
            if let Some(owner) = self.held.get(&name).filter(|owner| *owner != server_name) {
                let reason = format!(
                    "{kind} name {name:?} is held for server {owner:?} until its changed definition is approved; set prefix: true on one of them"
                );
                self.dropped.push(Dropped { server: server_name.to_string(), kind, name, reason });
                continue;
            }
            if self.reserved.contains(&name.as_str()) {
                let reason =
                    format!("{kind} name {name:?} is the gateway's own (gateway.tool_router.in_mcp); set prefix: true on this server");
                self.dropped.push(Dropped { server: server_name.to_string(), kind, name, reason });
                continue;
            }
            let route = NamedRoute { name: name.clone(), server, upstream_name: upstream_name.to_string(), definition };
            let Some((at, holder)) = self.taken.get(&name).cloned() else {
                if let Some(index) = &mut self.index {
                    index.push_definition(&name, item);
                }
                self.taken.insert(name, (self.routes.len(), server_name.to_string()));
                self.routes.push(route);
                continue;
            };
            let (loser, reason) = if holder == server_name {
                (server_name.to_string(), format!("it listed {kind} {upstream_name:?} twice"))
            } else if self.holder(&name) == Some(server_name) {
                // The newcomer in catalog order held it before: it keeps it.
                if let Some(slot) = self.routes.get_mut(at) {
                    *slot = route;
                }
                if let Some(index) = &mut self.index {
                    index.replace_definition(at, &name, item);
                }
                self.taken.insert(name.clone(), (at, server_name.to_string()));
                (holder, format!("{kind} name {name:?} is also exposed by server {server_name:?}, which had it first; set prefix: true on one of them"))
            } else {
                (
                    server_name.to_string(),
                    format!(
                        "{kind} name {name:?} is also exposed by server {holder:?}, which had it first; set prefix: true on one of them"
                    ),
                )
            };
            self.dropped.push(Dropped { server: loser, kind, name, reason });
        }
    }
}

/// A listed item's fields with `name` set to the name the gateway exposes
/// (in its place if the item has one; an item without one is dropped before).
struct Renamed<'a> {
    fields: &'a serde_json::Map<String, Value>,
    name: &'a str,
}

impl serde::Serialize for Renamed<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (key, value) in self.fields {
            if key == "name" {
                map.serialize_entry(key, self.name)?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}
