//! The control plane's `GET /servers` page, one type for both sides: the
//! control plane writes it (with more about each server, flattened in), and
//! the filter's `/stats` summary reads each server's state and tool count
//! from it. Data only: no I/O, no decision.

use serde::{Deserialize, Serialize};

/// The page: the configuration version served, the last reload error, and
/// each server. `S` is what the writer says of a server; a reader takes
/// [`ServerSummary`], the part every writer includes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServersPage<S = ServerSummary> {
    pub version: Option<String>,
    pub last_error: Option<String>,
    pub servers: Vec<S>,
}

/// What every entry of the page says of its server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSummary {
    pub name: String,
    pub state: ServerState,
    /// The tools it offered when last asked.
    pub tools: usize,
}

/// Where a server stands, as the control plane's last reload found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// It answered: its tools, prompts and resources are served.
    Ready,
    /// It did not answer: it offers nothing until it does.
    Unreachable,
    /// A server the control plane runs that the catalog just added or
    /// changed: it is being started, and asked what it offers once running.
    Starting,
}
