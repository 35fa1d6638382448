//! Virtual servers: named MCP endpoints (`<mcp_path>/<name>`), each a view
//! of the gateway that offers a subset of its tools, prompts and resources,
//! some under names and descriptions of their own, to the callers its own
//! rules admit on top of the gateway's.
//!
//! A view only says what it offers and under which name; the dispatcher
//! asks it before the lists, the calls and the searches, and routes with
//! the gateway's names as always.

use std::borrow::Cow;
use std::collections::HashMap;

use super::lists::ListCache;
use crate::config::{AuthorizationConfig, FilterConfig, NamedRoute, VirtualServer};
use crate::decision::ConfigError;
use crate::policy::{in_subset, Caller, Kind, Ruling};

/// One virtual server, compiled.
pub struct View {
    /// Its index in the configuration's endpoints.
    index: usize,
    /// The gateway's name of a renamed tool or prompt -> its name here.
    shown_as: HashMap<String, String>,
    /// Its name here -> the gateway's name.
    called_as: HashMap<String, String>,
    descriptions: HashMap<String, String>,
    /// Its lists, per set of rules met.
    pub lists: ListCache,
}

impl View {
    pub fn new(config: &FilterConfig, index: usize) -> Result<View, ConfigError> {
        let endpoint = config.endpoints.get(index).ok_or_else(|| ConfigError::Endpoint(format!("no endpoint {index}")))?;
        let mut view = View {
            index,
            shown_as: HashMap::new(),
            called_as: HashMap::new(),
            descriptions: endpoint.descriptions.iter().cloned().collect(),
            lists: ListCache::empty(),
        };
        for (gateway, here) in &endpoint.renames {
            if view.called_as.insert(here.clone(), gateway.clone()).is_some()
                || view.shown_as.insert(gateway.clone(), here.clone()).is_some()
            {
                return Err(ConfigError::Endpoint(format!("endpoint {:?} renames two names to {here:?} or one name twice", endpoint.name)));
            }
        }
        view.lists = ListCache::new(config, Some(&view));
        Ok(view)
    }

    pub fn endpoint<'a>(&self, config: &'a FilterConfig) -> Option<&'a VirtualServer> {
        config.endpoints.get(self.index)
    }

    /// The gateway's name of what a client calls `name` here; `None` for a
    /// gateway name this endpoint shows under another name.
    pub fn gateway_name<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        match self.called_as.get(name) {
            Some(gateway) => Some(gateway),
            None if self.shown_as.contains_key(name) => None,
            None => Some(name),
        }
    }

    /// The name a tool or prompt (by the gateway's name) has here.
    pub fn shown_name<'a>(&'a self, gateway: &'a str) -> &'a str {
        self.shown_as.get(gateway).map_or(gateway, String::as_str)
    }

    /// Its own description of a tool or prompt, if it gives one.
    pub fn description(&self, gateway: &str) -> Option<&str> {
        self.descriptions.get(gateway).map(String::as_str)
    }

    /// Whether it offers the item `name` (a gateway name, or a resource URI
    /// in normal form, or a URI template) of this kind.
    pub fn offers(&self, config: &FilterConfig, kind: Kind, name: &str) -> bool {
        self.endpoint(config).is_some_and(|e| match kind {
            Kind::Tool => in_subset(&e.tools, name),
            Kind::Prompt => in_subset(&e.prompts, name),
            Kind::Resource | Kind::Template => in_subset(&e.resources, name),
        })
    }

    /// Its own rules, if it has any.
    pub fn rules<'a>(&self, config: &'a FilterConfig) -> Option<&'a AuthorizationConfig> {
        self.endpoint(config).and_then(|e| e.authorization.as_ref())
    }

    /// May the caller use `name` of `server` here, given that the gateway's
    /// rules allow it? Only if this endpoint offers it and its rules allow.
    pub fn authorize(&self, config: &FilterConfig, caller: Option<&Caller>, kind: Kind, server: &str, name: &str) -> Ruling {
        let endpoint = self.endpoint(config).map_or("", |e| e.name.as_str());
        if !self.offers(config, kind, name) {
            return Ruling { allowed: false, reason: format!("endpoint {endpoint:?} does not offer it") };
        }
        match self.rules(config) {
            Some(rules) => {
                let ruling = rules.decide(&rules.applicable(caller), kind, server, name);
                Ruling { allowed: ruling.allowed, reason: format!("endpoint {endpoint:?}: {}", ruling.reason) }
            }
            None => Ruling { allowed: true, reason: format!("endpoint {endpoint:?} offers it") },
        }
    }

    /// A tool or prompt's definition as listed here: its name and
    /// description replaced where this endpoint gives its own.
    pub fn definition<'a>(&self, route: &'a NamedRoute) -> Cow<'a, str> {
        let (name, description) = (self.shown_as.get(&route.name), self.descriptions.get(&route.name));
        if name.is_none() && description.is_none() {
            return Cow::Borrowed(route.definition.text());
        }
        let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(route.definition.text()) else {
            return Cow::Borrowed(route.definition.text());
        };
        if let Some(name) = name {
            fields.insert("name".into(), serde_json::Value::String(name.clone()));
        }
        if let Some(description) = description {
            fields.insert("description".into(), serde_json::Value::String(description.clone()));
        }
        Cow::Owned(serde_json::Value::Object(fields).to_string())
    }
}

/// The endpoint a request path names, if any: `<mcp_path>/<name>`.
pub fn of_path(config: &FilterConfig, path: &str) -> Option<usize> {
    if config.endpoints.is_empty() {
        return None;
    }
    config.endpoints.iter().position(|e| e.path == path)
}
