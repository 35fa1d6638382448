//! The list answers (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`): serialised once per configuration and per
//! set of authorization rules that apply to callers, in pages for each era,
//! and the cursors that say where a page starts.
//!
//! It never decides who may see what: it is handed the rules that apply,
//! and asks the configuration's rules about each item. It never forwards.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::endpoint::View;
use super::router;
use crate::config::{FilterConfig, InMcp, NamedRoute, ServedItem};
use crate::error::McpError;
use crate::policy::{Applicable, Caller, Kind, Offer};
use crate::uri;

/// How many filtered sets of lists are kept; past it the cache starts over.
const MAX_FILTERED_LISTS: usize = 256;

/// The rules that apply to a caller: the gateway's, and a virtual
/// server's own.
type RuleSets = (Option<Applicable>, Option<Applicable>);

/// Every list of the gateway or of one virtual server (a [`View`]) without
/// rules, and the lists filtered for each set of applicable rules met so far.
pub struct ListCache {
    all: Rc<Lists>,
    filtered: RefCell<HashMap<RuleSets, Rc<Lists>>>,
}

impl ListCache {
    pub fn new(config: &FilterConfig, view: Option<&View>) -> ListCache {
        let offered = |kind, _, name: &str| view.is_none_or(|v| v.offers(config, kind, name));
        // On a virtual server, a server is reached when something of it is
        // offered there, or it has templates (reads through them are judged
        // by URI, like the gateway's).
        let reaches = |_, offer: Offer| view.is_none() || offer.visible || offer.templates;
        ListCache { all: Rc::new(Lists::new(config, view, offered, reaches)), filtered: RefCell::new(HashMap::new()) }
    }

    /// A cache with no lists, for a view being built.
    pub fn empty() -> ListCache {
        let none = Lists {
            tools: ListAnswer::new("tools", Vec::new(), None),
            prompts: ListAnswer::new("prompts", Vec::new(), None),
            resources: ListAnswer::new("resources", Vec::new(), None),
            templates: ListAnswer::new("resourceTemplates", Vec::new(), None),
            reachable: Vec::new(),
            tools_shown: Vec::new(),
        };
        ListCache { all: Rc::new(none), filtered: RefCell::new(HashMap::new()) }
    }

    /// The lists as `caller` may see them, on the gateway's endpoint or on
    /// `view`'s: what the gateway's rules and the view's own allow.
    pub fn seen_with(&self, config: &FilterConfig, view: Option<&View>, caller: Option<&Caller>) -> Rc<Lists> {
        let own_rules = view.and_then(|v| v.rules(config));
        let sets: RuleSets = (config.authorization.as_ref().map(|a| a.applicable(caller)), own_rules.map(|a| a.applicable(caller)));
        if sets == (None, None) {
            return self.all.clone();
        }
        if let Some(found) = self.filtered.borrow().get(&sets) {
            return found.clone();
        }
        let names: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
        let (global, own) = (config.authorization.as_ref().zip(sets.0.as_ref()), own_rules.zip(sets.1.as_ref()));
        let lists = Rc::new(Lists::new(
            config,
            view,
            |kind, server, name| {
                names.get(server).is_some_and(|s| {
                    global.is_none_or(|(a, set)| a.decide(set, kind, s, name).allowed)
                        && view.is_none_or(|v| v.offers(config, kind, name))
                        && own.is_none_or(|(a, set)| a.decide(set, kind, s, name).allowed)
                })
            },
            |server, offer| {
                names.get(server).is_some_and(|s| global.is_none_or(|(a, set)| a.reaches(set, s, offer)))
                    && (view.is_none() || offer.visible || offer.templates)
            },
        ));
        let mut cache = self.filtered.borrow_mut();
        if cache.len() >= MAX_FILTERED_LISTS {
            cache.clear();
        }
        cache.insert(sets, lists.clone());
        lists
    }
}

/// `{"tools":[...]}` and the other list answers of one set of visible
/// items, and which servers the callers who see them may reach at all.
pub struct Lists {
    tools: ListAnswer,
    prompts: ListAnswer,
    resources: ListAnswer,
    templates: ListAnswer,
    reachable: Vec<bool>,
    /// Which of the configuration's tools these callers see (the tool
    /// router ranks only those).
    tools_shown: Vec<bool>,
}

impl Lists {
    /// The lists of what `visible` lets through; `reaches` says whether a
    /// server (by index) may be reached, given what it offers them.
    fn new(
        config: &FilterConfig,
        view: Option<&View>,
        visible: impl Fn(Kind, usize, &str) -> bool,
        reaches: impl Fn(usize, Offer) -> bool,
    ) -> Self {
        let size = config.list_page_size;
        let mut offers = vec![Offer::default(); config.servers.len()];
        let mut note = |server: usize, shown: bool, template: bool| {
            if let Some(o) = offers.get_mut(server) {
                o.items = true;
                o.visible |= shown;
                o.templates |= template;
            }
        };
        let mut named = |items: &[NamedRoute], kind| {
            let shown: Vec<bool> = items
                .iter()
                .map(|t| {
                    let shown = visible(kind, t.server, &t.name);
                    note(t.server, shown, false);
                    shown
                })
                .collect();
            let listed: Vec<(String, String)> = items
                .iter()
                .zip(&shown)
                .filter(|(_, s)| **s)
                .map(|(t, _)| match view {
                    Some(v) => (v.definition(t).into_owned(), v.shown_name(&t.name).to_string()),
                    None => (t.definition.text().to_string(), t.name.clone()),
                })
                .collect();
            (listed, shown)
        };
        let (mut tools, tools_shown) = named(&config.tools, Kind::Tool);
        // The tool router's own tools, beside the tools or in their place.
        let in_mcp = router::in_mcp(config, view);
        let own = router::own_tools(in_mcp);
        if in_mcp == InMcp::Only {
            tools = own;
        } else {
            tools.extend(own);
        }
        let (prompts, _) = named(&config.prompts, Kind::Prompt);
        // A resource is judged by its normalised URI, as reads are; one
        // without a canonical form could not be read, and is not listed.
        let mut served = |items: &[ServedItem], key, kind| {
            let shown: Vec<_> = items
                .iter()
                .filter(|i| {
                    let uri = i.definition.get(key).and_then(serde_json::Value::as_str).unwrap_or_default();
                    let shown = uri::normalize(uri).is_ok_and(|normal| visible(kind, i.server, &normal));
                    note(i.server, shown, kind == Kind::Template);
                    shown
                })
                .map(|i| &i.definition)
                .collect();
            list_items(shown.into_iter(), key)
        };
        let resources = served(&config.resources, "uri", Kind::Resource);
        let templates = served(&config.resource_templates, "uriTemplate", Kind::Template);
        Lists {
            tools: ListAnswer::new("tools", tools, size),
            prompts: ListAnswer::new("prompts", prompts, size),
            resources: ListAnswer::new("resources", resources, size),
            templates: ListAnswer::new("resourceTemplates", templates, size),
            reachable: offers.into_iter().enumerate().map(|(i, offer)| reaches(i, offer)).collect(),
            tools_shown,
        }
    }

    /// Whether the callers these lists are for may reach server `index` at
    /// all: open a session with it, send it notifications, answer its
    /// requests, stream from it.
    pub fn reaches(&self, index: usize) -> bool {
        self.reachable.get(index).copied().unwrap_or(false)
    }

    /// Whether these callers see the configuration's tool `index`.
    pub fn shows_tool(&self, index: usize) -> bool {
        self.tools_shown.get(index).copied().unwrap_or(false)
    }

    /// The answer to list `method`, if it is one of the lists.
    pub fn of(&self, method: &str) -> Option<&ListAnswer> {
        match method {
            "tools/list" => Some(&self.tools),
            "prompts/list" => Some(&self.prompts),
            "resources/list" => Some(&self.resources),
            "resources/templates/list" => Some(&self.templates),
            _ => None,
        }
    }
}

/// Each definition as JSON text with its key (the value of `key_field`).
fn list_items<'a>(definitions: impl Iterator<Item = &'a serde_json::Value>, key_field: &str) -> Vec<(String, String)> {
    definitions.map(|d| (d.to_string(), d.get(key_field).and_then(serde_json::Value::as_str).unwrap_or_default().to_string())).collect()
}

/// A list answered from the configuration: its pages, serialised once per
/// configuration for each era (the 2026-07-28 one carries the caching
/// fields and result type it requires).
///
/// A cursor names where the next page starts: its position and the key
/// (name or URI) of the item found there, base64url. A cursor from an older
/// configuration still works: the page starts at that item wherever it now
/// is, or at the same position if it is gone (the client has been told the
/// list changed).
pub struct ListAnswer {
    /// Each item's definition as JSON text, and its key.
    items: Vec<(String, String)>,
    /// Which field of the result holds the items.
    field: &'static str,
    page_size: usize,
    /// `(handshake, stateless)` result of each page at a multiple of `page_size`.
    pages: Vec<(String, String)>,
}

impl ListAnswer {
    fn new(field: &'static str, items: Vec<(String, String)>, page_size: Option<usize>) -> Self {
        let page_size = page_size.filter(|n| *n > 0).unwrap_or(usize::MAX).min(items.len().max(1));
        let mut answer = ListAnswer { items, field, page_size, pages: Vec::new() };
        let mut start = 0;
        loop {
            answer.pages.push(answer.page(start));
            start = start.saturating_add(page_size);
            if start >= answer.items.len() {
                break;
            }
        }
        answer
    }

    /// The results of the page starting at item `start`.
    fn page(&self, start: usize) -> (String, String) {
        let end = start.saturating_add(self.page_size).min(self.items.len());
        let chosen = self.items.get(start..end).unwrap_or_default();
        let mut body = format!("\"{}\":[", self.field);
        for (i, (definition, _)) in chosen.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(definition);
        }
        body.push(']');
        if let Some((_, key)) = self.items.get(end) {
            let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{end}:{key}"));
            body.push_str(&format!(",\"nextCursor\":\"{cursor}\""));
        }
        let handshake = format!("{{{body}}}");
        let stateless = format!(r#"{{"ttlMs":0,"cacheScope":"private","resultType":"complete",{body}}}"#);
        (handshake, stateless)
    }

    /// The item a cursor says the page starts at.
    fn start_of(&self, cursor: &str) -> Option<usize> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (position, key) = text.split_once(':')?;
        let position: usize = position.parse().ok()?;
        if self.items.get(position).is_some_and(|(_, k)| k == key) {
            return Some(position);
        }
        let moved = self.items.iter().position(|(_, k)| k == key);
        Some(moved.unwrap_or(position).min(self.items.len()))
    }

    /// The result for the request's `params` (a `cursor`, or none: the
    /// first page), in the era asked.
    pub fn answer(&self, params: Option<&RawValue>, stateless: bool) -> Result<Cow<'_, str>, McpError> {
        #[derive(Deserialize)]
        struct ListParams {
            cursor: Option<String>,
        }
        let cursor = match params {
            Some(p) => {
                serde_json::from_str::<ListParams>(p.get())
                    .map_err(|e| McpError::InvalidParams(format!("params.cursor must be a string: {e}")))?
                    .cursor
            }
            None => None,
        };
        let start = match cursor.as_deref() {
            None => 0,
            Some(c) => self.start_of(c).ok_or_else(|| McpError::InvalidParams(format!("invalid cursor {c:?}: list again without one")))?,
        };
        // Pages at the usual boundaries are ready; one after a list change
        // may start anywhere.
        Ok(match (start % self.page_size == 0).then(|| self.pages.get(start / self.page_size)).flatten() {
            Some((handshake, modern)) => Cow::Borrowed(if stateless { modern } else { handshake }),
            None => {
                let (handshake, modern) = self.page(start);
                Cow::Owned(if stateless { modern } else { handshake })
            }
        })
    }
}
