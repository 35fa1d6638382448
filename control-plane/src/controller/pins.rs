//! Pinned tool definitions in the reload (`crate::pins`): each build reads
//! the pins file and reviews what the servers offer against it; a reload
//! writes it back when a tool was pinned for the first time; an
//! administrator's approval pins a changed definition and reloads.

use std::path::PathBuf;

use serde_json::Value;

use super::{Controller, Discovery};
use crate::catalog::{Catalog, Server};
use crate::pins::{self, PinFile, Review};
use crate::state::{Offers, ServerStatus};

/// The pins file to write after a build, when it gained a pin.
pub(super) type ToSave = Option<(PathBuf, PinFile)>;

/// Why an approval was refused.
#[derive(Debug)]
pub enum ApproveError {
    /// No such server or tool: 404.
    NotFound(String),
    /// The server is not pinned, or has not answered: 409.
    Conflict(String),
    /// The pins file could not be read or written, or the reload failed: 500.
    Failed(String),
}

/// What an approval did.
#[derive(Debug)]
pub struct Approved {
    /// The tools whose pin changed (their server's own names).
    pub tools: Vec<String>,
    /// The version served after it.
    pub version: String,
}

fn name(tool: &Value) -> Option<&str> {
    tool.get("name").and_then(Value::as_str)
}

/// The tools of `server` the catalog serves (its `tools` filter).
fn served<'a>(server: &Server, offer: &'a [Value]) -> Vec<&'a Value> {
    offer.iter().filter(|t| name(t).is_some_and(|n| mcp_filter::policy::in_subset(&server.tools, n))).collect()
}

impl Controller {
    /// Reads the pins file and reviews every pinned server's tools against
    /// it; returns the file to write if a tool was pinned for the first time.
    pub(super) async fn review_pins(&self, catalog: &Catalog, offers: &Offers) -> Result<(Review, ToSave), String> {
        if !pins::any(catalog) {
            return Ok((Review::default(), None));
        }
        let path = pins::path(catalog, &self.inner.settings.catalog_path);
        let mut file = pins::read(&path).await?;
        let offered = catalog.servers.iter().filter_map(|s| {
            let (_, offer) = offers.get(&s.name)?;
            Some((s.name.as_str(), pins::mode(catalog, &s.name), served(s, &offer.tools)))
        });
        let review = pins::review(&mut file, offered);
        let save = (review.added > 0).then_some((path, file));
        Ok((review, save))
    }

    /// Approves `tool` of `server` (its own name) as it offers it now, or
    /// every tool of it (`None`), then reloads so that a held tool is served.
    /// With `expect`, only if what it offers now has that digest (the one
    /// `/servers` showed the administrator).
    pub async fn approve(&self, server: &str, tool: Option<&str>, expect: Option<&str>) -> Result<Approved, ApproveError> {
        let tools = {
            let _one_at_a_time = self.inner.reloading.lock().await;
            let published = self.published().ok_or_else(|| ApproveError::Conflict("the gateway has not loaded its catalog yet".into()))?;
            let catalog = &published.catalog;
            let s = catalog
                .servers
                .iter()
                .find(|s| s.name == server)
                .ok_or_else(|| ApproveError::NotFound(format!("no server {server:?} in the catalog")))?;
            if pins::mode(catalog, server).is_off() {
                let error = format!("server {server:?} is not pinned: set gateway.pin or servers[].pin to warn or hold");
                return Err(ApproveError::Conflict(error));
            }
            let (_, offer) = published.offers.get(server).ok_or_else(|| {
                ApproveError::Conflict(format!("server {server:?} has not answered yet: none of its tools is known to approve"))
            })?;
            let mut chosen = served(s, &offer.tools);
            if let Some(tool) = tool {
                chosen.retain(|t| name(t) == Some(tool));
                if chosen.is_empty() {
                    let hidden = offer.tools.iter().any(|t| name(t) == Some(tool));
                    let error = if hidden {
                        format!("server {server:?}'s tool {tool:?} is left out by its tools filter (servers[].tools): there is nothing to approve")
                    } else {
                        format!(
                            "server {server:?} offers no tool {tool:?} (name it by the server's own name, without the gateway's prefix)"
                        )
                    };
                    return Err(ApproveError::NotFound(error));
                }
                if let Some(expected) = expect {
                    let now = chosen.first().map(|t| pins::Pin::of(t).sha256).unwrap_or_default();
                    if now != expected {
                        let error = format!("server {server:?}'s tool {tool:?} changed again (sha256 {now}, not {expected}): review it in GET /servers, then approve what it offers now");
                        return Err(ApproveError::Conflict(error));
                    }
                }
            }
            let path = pins::path(catalog, &self.inner.settings.catalog_path);
            let mut file = pins::read(&path).await.map_err(ApproveError::Failed)?;
            let changed: Vec<String> =
                chosen.into_iter().filter(|t| pins::approve(&mut file, server, t)).filter_map(|t| name(t).map(str::to_string)).collect();
            pins::write(&path, &file).await.map_err(ApproveError::Failed)?;
            changed
        };
        for tool in &tools {
            tracing::info!(server, tool = %tool, "tool definition approved");
        }
        let version = self
            .reload_with(Discovery::Unreachable)
            .await
            .map_err(|e| ApproveError::Failed(format!("the approval is recorded, but the reload that serves it failed: {e}")))?;
        Ok(Approved { tools, version })
    }
}

/// Logs each change not seen at the last reload: once per change, not at
/// every rediscovery.
pub(super) fn log_new_changes(before: Option<&[ServerStatus]>, now: &[ServerStatus]) {
    for server in now {
        let known = before.and_then(|b| b.iter().find(|s| s.summary.name == server.summary.name));
        for change in &server.changed_tools {
            if known.is_some_and(|k| k.changed_tools.contains(change)) {
                continue;
            }
            let fields: Vec<&str> = change.fields.iter().map(|f| f.field).collect();
            let action = if change.held { "held until approved" } else { "still served (pin: warn)" };
            tracing::warn!(server = %server.summary.name, tool = %change.tool, changed = ?fields, "a tool's definition changed since it was approved; {action}");
        }
    }
}
