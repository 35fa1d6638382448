//! Which server serves a name or a URI: the lookup tables of tools and
//! prompts (exposed name -> server and the upstream's own name), and the
//! router of resource URIs, built once per configuration.
//!
//! It only finds; it never authorizes (the dispatcher asks `auth` about
//! what was found), never opens a session, and never builds an answer.

use std::collections::HashMap;

use crate::config::{FilterConfig, NamedRoute, ServedItem};
use crate::decision::ConfigError;
use crate::jsonrpc;
use crate::uri;

/// Where an exposed tool or prompt goes.
pub struct Route {
    /// Index into the configuration's servers.
    pub server: usize,
    /// The name its server knows it by.
    pub upstream_name: String,
}

impl Route {
    /// `body` with the exposed name at `span` replaced by the upstream's own,
    /// or `None` when they are the same.
    pub fn renamed(&self, body: &[u8], span: std::ops::Range<usize>, exposed: &str) -> Option<Vec<u8>> {
        (exposed != self.upstream_name).then(|| jsonrpc::splice(body, span, jsonrpc::json_string(&self.upstream_name).as_bytes()))
    }
}

/// The routes of one configuration.
pub struct Routes {
    tools: HashMap<String, Route>,
    prompts: HashMap<String, Route>,
    uris: UriRouter,
}

impl Routes {
    /// The tables of `config`; refuses a name listed twice and an item
    /// naming a server that is not there.
    pub fn new(config: &FilterConfig) -> Result<Routes, ConfigError> {
        let n = config.servers.len();
        let tools = named_table(&config.tools, n)?;
        let prompts = named_table(&config.prompts, n)?;
        check_servers(&config.resources, n, "resources")?;
        check_servers(&config.resource_templates, n, "resourceTemplates")?;
        if let Some(bad) = config.held_tools.iter().find(|h| h.server >= n) {
            return Err(ConfigError::NoSuchServer { tool: bad.name.clone(), server: bad.server, count: n });
        }
        Ok(Routes { tools, prompts, uris: UriRouter::new(&config.resources, &config.resource_templates) })
    }

    pub fn tool(&self, name: &str) -> Option<&Route> {
        self.tools.get(name)
    }

    pub fn prompt(&self, name: &str) -> Option<&Route> {
        self.prompts.get(name)
    }

    /// The server that serves resource `uri` (normalised, `uri::normalize`),
    /// and the URI as that server listed it when it did.
    pub fn resource(&self, uri: &str) -> Option<(usize, Option<&str>)> {
        self.uris.route(uri)
    }
}

/// The lookup table of tools or prompts.
fn named_table(items: &[NamedRoute], servers: usize) -> Result<HashMap<String, Route>, ConfigError> {
    let mut table = HashMap::with_capacity(items.len());
    for t in items {
        if t.server >= servers {
            return Err(ConfigError::NoSuchServer { tool: t.name.clone(), server: t.server, count: servers });
        }
        if table.insert(t.name.clone(), Route { server: t.server, upstream_name: t.upstream_name.clone() }).is_some() {
            return Err(ConfigError::DuplicateTool(t.name.clone()));
        }
    }
    Ok(table)
}

fn check_servers(items: &[ServedItem], servers: usize, what: &str) -> Result<(), ConfigError> {
    match items.iter().find(|i| i.server >= servers) {
        Some(bad) => Err(ConfigError::NoSuchServer { tool: what.to_string(), server: bad.server, count: servers }),
        None => Ok(()),
    }
}

/// Which server serves a resource URI. A read is routed by what the servers
/// listed: the exact URI, else the longest matching literal prefix of a URI
/// template, else the one server using the URI's scheme (see
/// docs/design/resources.md). Everything is compared in normal form
/// (`uri::normalize`), what servers listed as well as what clients ask.
#[derive(Default)]
struct UriRouter {
    /// Normalised URI -> its server and the URI as the server listed it.
    exact: HashMap<String, (usize, String)>,
    /// Literal prefixes of URI templates (up to the first `{`), longest first.
    prefixes: Vec<(String, usize)>,
    /// Scheme -> the one server using it, or `None` when several do.
    schemes: HashMap<String, Option<usize>>,
}

impl UriRouter {
    fn new(resources: &[ServedItem], templates: &[ServedItem]) -> Self {
        let mut r = UriRouter::default();
        let claim_scheme = |uri: &str, server: usize, schemes: &mut HashMap<String, Option<usize>>| {
            if let Some(scheme) = scheme_of(uri) {
                let entry = schemes.entry(scheme.to_ascii_lowercase()).or_insert(Some(server));
                if *entry != Some(server) {
                    *entry = None;
                }
            }
        };
        for item in resources {
            if let Some(uri) = item.definition.get("uri").and_then(serde_json::Value::as_str) {
                // The first server (in catalog order) to list a URI keeps it.
                // One without a canonical form cannot be asked for.
                if let Ok(normal) = uri::normalize(uri) {
                    r.exact.entry(normal).or_insert((item.server, uri.to_string()));
                }
                claim_scheme(uri, item.server, &mut r.schemes);
            }
        }
        for item in templates {
            if let Some(t) = item.definition.get("uriTemplate").and_then(serde_json::Value::as_str) {
                let prefix = t.split('{').next().unwrap_or_default();
                if !prefix.is_empty() {
                    r.prefixes.push((uri::normalize(prefix).unwrap_or_else(|_| prefix.to_string()), item.server));
                }
                claim_scheme(t, item.server, &mut r.schemes);
            }
        }
        r.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        r
    }

    fn route(&self, uri: &str) -> Option<(usize, Option<&str>)> {
        if let Some((s, listed)) = self.exact.get(uri) {
            return Some((*s, Some(listed.as_str())));
        }
        if let Some((_, s)) = self.prefixes.iter().find(|(p, _)| uri.starts_with(p.as_str())) {
            return Some((*s, None));
        }
        scheme_of(uri).and_then(|scheme| self.schemes.get(&scheme.to_ascii_lowercase()).copied().flatten()).map(|s| (s, None))
    }
}

fn scheme_of(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once(':')?;
    let valid = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    valid.then_some(scheme)
}
