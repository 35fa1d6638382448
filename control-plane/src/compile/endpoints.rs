//! The virtual servers of the filter's configuration (`endpoints`), with
//! the renames that would make two items share a name left out.

use mcp_filter::config::{AuthorizationConfig, NamedRoute, VirtualServer};
use mcp_filter::policy::in_subset;

use super::Dropped;
use crate::catalog::{path_of, Catalog, DefaultDecision};

/// Each endpoint of the catalog as the filter takes it. A rename onto a name
/// the endpoint already offers (a tool or prompt it does not rename) is left
/// out, and said so in `dropped`.
pub fn virtual_servers(catalog: &Catalog, tools: &[NamedRoute], prompts: &[NamedRoute], dropped: &mut Vec<Dropped>) -> Vec<VirtualServer> {
    catalog
        .endpoints
        .iter()
        .map(|e| {
            let offered = |name: &str| {
                (in_subset(&e.tools, name) && tools.iter().any(|t| t.name == name))
                    || (in_subset(&e.prompts, name) && prompts.iter().any(|p| p.name == name))
            };
            let renames = e
                .rename
                .iter()
                .filter(|(from, to)| {
                    let clash = offered(to) && !e.rename.contains_key(to.as_str()) && from != to;
                    if clash {
                        dropped.push(Dropped {
                            server: format!("endpoint {}", e.name),
                            kind: "rename",
                            name: to.to_string(),
                            reason: format!(
                                "endpoint {:?} renames {from:?} to {to:?}, a name it already offers; rename one of them",
                                e.name
                            ),
                        });
                    }
                    !clash
                })
                .map(|(from, to)| (from.clone(), to.clone()))
                .collect();
            VirtualServer {
                name: e.name.clone(),
                path: path_of(&catalog.gateway.mcp_path, &e.name),
                tools: e.tools.clone(),
                prompts: e.prompts.clone(),
                resources: e.resources.clone(),
                renames,
                descriptions: e.describe.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                authorization: e
                    .authorization
                    .as_ref()
                    .map(|a| AuthorizationConfig { default_allow: a.default == DefaultDecision::Allow, rules: a.rules.clone() }),
                in_mcp: e.in_mcp,
            }
        })
        .collect()
}
