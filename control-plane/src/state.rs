//! What the control plane serves, as one value swapped whole.
//!
//! A reload builds a [`Published`] (the catalog, its compiled filter
//! configuration, what each server offered, the servers as the control plane
//! reaches them, the global limits and admin keys it enforces, each server's
//! status) and the controller swaps it in at once, after the build
//! succeeded, together with the snapshot Envoy is served. Every reader (the
//! HTTP handlers, the rate limit service, the health checks) takes the value
//! current when it starts, so none sees half of one catalog and half of the
//! next.
//!
//! This module only describes state; it does no I/O, and it knows nothing of
//! the HTTP surface or of the controller that builds it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use mcp_filter::config::{FilterConfig, RateLimit};
use mcp_filter::session::Sealer;
pub use mcp_filter::status::{ServerState, ServerSummary};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, Runtime};
use crate::compile::Dropped;
use crate::discovery::Discovered;
use crate::runtime::ProcessStatus;
use crate::upstream::{Reach, Upstream};

/// Per server name, its identity when it was asked ([`Reach::identity`]) and
/// what it offered. Shared, not copied, from one reload to the next: at a
/// thousand servers a copy of every tool definition costs tens of
/// milliseconds.
pub type Offers = BTreeMap<String, (String, Arc<Discovered>)>;

/// The configuration being served, swapped whole by each good reload.
pub struct Published {
    /// The version Envoy is served (the snapshot's).
    pub version: String,
    pub catalog: Arc<Catalog>,
    /// How its servers are reached (their HTTP clients, their TLS files).
    pub reach: Arc<Reach>,
    /// The filter's configuration, as compiled into the snapshot.
    pub filter_config: Arc<FilterConfig>,
    /// What each server offered when last asked, with the identity it had
    /// then ([`Reach::identity`]): a server whose identity changed is asked
    /// again.
    pub offers: Offers,
    /// The session keys and servers, for the clients' GET streams, the era
    /// bridge and the health checks.
    pub served: Arc<Served>,
    /// The limits the rate limit service enforces.
    pub global_limits: Arc<GlobalLimits>,
    /// Digests of the API keys that may change state through the admin API;
    /// `None` while the catalog turns authentication off.
    pub admin_keys: Option<Vec<[u8; 32]>>,
    /// Each server as the last reload found it.
    pub servers: Vec<ServerStatus>,
    /// Every TLS file the catalog names (the listener's, then the servers'),
    /// and a digest of what they held: when it changes, a reload pushes them.
    pub tls_files: Vec<PathBuf>,
    pub tls_digest: [u8; 32],
    /// Every secret file the catalog names (`${file:...}`), with a digest of
    /// what it held (or of its absence): when one changes, a reload reads
    /// them again.
    pub secret_files: Vec<(PathBuf, [u8; 32])>,
}

impl Published {
    /// Whether `credential` (an API key) may change state through the admin
    /// API: any caller while authentication is off, else an admin key.
    pub fn admits_admin(&self, credential: Option<&str>) -> bool {
        match (self.admin_keys.as_ref(), credential) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(keys), Some(c)) => keys.contains(&Sha256::digest(c.as_bytes()).into()),
        }
    }
}

/// The servers as the control plane reaches them, and the keys that open
/// the session ids naming their sessions.
pub struct Served {
    pub sealer: Sealer,
    pub servers: Vec<Upstream>,
}

impl Served {
    pub fn server(&self, name: &str) -> Option<&Upstream> {
        self.servers.iter().find(|u| u.name == name)
    }
}

/// What the rate limit service needs of the configuration being served.
#[derive(Debug, Clone, Default)]
pub struct GlobalLimits {
    pub redis_url: Option<String>,
    /// Global limits by name.
    pub limits: BTreeMap<String, RateLimit>,
}

/// The filter module the control plane publishes, read once at start: its
/// bytes, their SHA-256 (what each configuration names it by), and how often
/// Envoys fetched it (`GET /filter/<sha256>.wasm`, once per Envoy process:
/// Envoy keeps it by its digest, so a catalog change does not fetch it).
#[derive(Debug)]
pub struct FilterModule {
    bytes: Arc<[u8]>,
    sha256: String,
    fetches: std::sync::atomic::AtomicU64,
}

impl FilterModule {
    pub fn new(bytes: Vec<u8>) -> Self {
        let sha256 = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        FilterModule { bytes: bytes.into(), sha256, fetches: Default::default() }
    }

    /// Lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn bytes(&self) -> Arc<[u8]> {
        Arc::clone(&self.bytes)
    }

    /// The module for a request of `path` (`/filter/<sha256>.wasm`), counted
    /// as a fetch; `None` for any other path, such as an older module's.
    pub fn fetch(&self, path: &str) -> Option<Arc<[u8]>> {
        (path == crate::compile::module_path(&self.sha256)).then(|| {
            self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.bytes()
        })
    }

    /// Fetches served so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What the admin API shows: the configuration served, and how reloads went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// The version Envoy is being served.
    pub version: Option<String>,
    /// Why the last reload failed; `None` after a good one.
    pub last_error: Option<String>,
    pub last_reload_at: Option<SystemTime>,
    pub servers: Vec<ServerStatus>,
    /// Reloads so far that published a configuration, and that failed.
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// The log level the catalog set (`None` while `RUST_LOG` decides).
    pub log_level: Option<String>,
}

/// How reloads went, apart from what they published.
#[derive(Debug, Clone, Default)]
pub struct Reloads {
    pub last_error: Option<String>,
    pub last_reload_at: Option<SystemTime>,
    pub ok: u64,
    pub failed: u64,
    pub log_level: Option<String>,
}

impl Status {
    pub fn of(published: Option<&Published>, reloads: &Reloads) -> Status {
        Status {
            version: published.map(|p| p.version.clone()),
            last_error: reloads.last_error.clone(),
            last_reload_at: reloads.last_reload_at,
            servers: published.map(|p| p.servers.clone()).unwrap_or_default(),
            reloads_ok: reloads.ok,
            reloads_failed: reloads.failed,
            log_level: reloads.log_level.clone(),
        }
    }

    pub fn any_unready(&self) -> bool {
        self.servers.iter().any(|s| s.summary.state != ServerState::Ready)
    }
}

/// One server on the `/servers` page: what the filter reads of it
/// (`ServerSummary`: name, state, tools), and more for operators.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    #[serde(flatten)]
    pub summary: ServerSummary,
    /// `http`, `sse` or `stdio`.
    pub runtime: Runtime,
    pub url: String,
    pub prompts: usize,
    pub resources: usize,
    pub last_error: Option<String>,
    /// Its tools and prompts the gateway leaves out, and why (a name another
    /// server has, no name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<Dropped>,
    /// Its tools the catalog's `tools` filter leaves out (their own names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hidden_tools: Vec<String>,
    /// Its tools whose definition changed since it was approved (`pin`),
    /// with what changed; `held` ones are not served.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed_tools: Vec<crate::pins::Change>,
    /// For servers the control plane runs or connects to: how that goes now
    /// (filled in when shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessStatus>,
    /// For servers with `oauth`: the gateway's token for it (filled in
    /// when shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<crate::token::CredentialStatus>,
}

impl ServerStatus {
    /// A server as a reload first sees it: nothing known of it yet.
    pub fn new(name: &str, state: ServerState, runtime: Runtime, url: String) -> Self {
        ServerStatus {
            summary: ServerSummary { name: name.to_string(), state, tools: 0 },
            runtime,
            url,
            prompts: 0,
            resources: 0,
            last_error: None,
            dropped: Vec::new(),
            hidden_tools: Vec::new(),
            changed_tools: Vec::new(),
            process: None,
            credential: None,
        }
    }
}

/// Digests of what clients can list, per kind: on the gateway's endpoint,
/// and on each virtual server (what its subset, names and descriptions
/// make of the lists). A change of one is what the gateway notifies the
/// clients of that endpoint of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists {
    pub tools: [u8; 32],
    pub prompts: [u8; 32],
    pub resources: [u8; 32],
    /// Per virtual server, by name: its tools, prompts and resources.
    pub endpoints: BTreeMap<String, [[u8; 32]; 3]>,
}

impl Lists {
    pub fn of(config: &FilterConfig) -> Self {
        use mcp_filter::policy::in_subset;
        let digest = |v: serde_json::Result<Vec<u8>>| Sha256::digest(v.unwrap_or_default()).into();
        // What a caller sees of a list is decided by the rules too, and the
        // tools list holds the router's tools as in_mcp says.
        let rules = &config.authorization;
        let in_mcp = config.router.as_ref().map(|r| r.in_mcp);
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| {
                let rules = (rules, &e.authorization);
                // The items it offers, with the renames and descriptions of those.
                let named = |routes: &[mcp_filter::config::NamedRoute], subset| {
                    let kept: Vec<_> = routes.iter().filter(|r| in_subset(subset, &r.name)).collect();
                    let of_kept = |pairs: &[(String, String)]| -> Vec<(String, String)> {
                        pairs.iter().filter(|(name, _)| kept.iter().any(|r| &r.name == name)).cloned().collect()
                    };
                    digest(serde_json::to_vec(&(&kept, of_kept(&e.renames), of_kept(&e.descriptions), rules)))
                };
                let uri = |item: &serde_json::Value, key: &str| {
                    let raw = item.get(key).and_then(serde_json::Value::as_str).unwrap_or_default();
                    mcp_filter::uri::normalize(raw).is_ok_and(|n| in_subset(&e.resources, &n))
                };
                let resources: Vec<_> = config.resources.iter().filter(|r| uri(&r.definition, "uri")).collect();
                let templates: Vec<_> = config.resource_templates.iter().filter(|r| uri(&r.definition, "uriTemplate")).collect();
                let own_in_mcp = config.router.as_ref().map(|r| e.in_mcp.unwrap_or(r.in_mcp));
                let lists = [
                    digest(serde_json::to_vec(&(named(&config.tools, &e.tools), own_in_mcp))),
                    named(&config.prompts, &e.prompts),
                    digest(serde_json::to_vec(&(resources, templates, rules))),
                ];
                (e.name.clone(), lists)
            })
            .collect();
        Lists {
            tools: digest(serde_json::to_vec(&(&config.tools, rules, in_mcp))),
            prompts: digest(serde_json::to_vec(&(&config.prompts, rules))),
            resources: digest(serde_json::to_vec(&(&config.resources, &config.resource_templates, rules))),
            endpoints,
        }
    }

    /// The notification methods for what differs between `self` and `newer`,
    /// for a client of the gateway's endpoint (`None`) or of a virtual
    /// server. An endpoint that comes or goes changes every list.
    pub fn changes(&self, newer: &Lists, endpoint: Option<&str>) -> Vec<&'static str> {
        let (old, new) = match endpoint {
            None => ([self.tools, self.prompts, self.resources], [newer.tools, newer.prompts, newer.resources]),
            Some(name) => match (self.endpoints.get(name), newer.endpoints.get(name)) {
                (Some(old), Some(new)) => (*old, *new),
                (None, None) => return Vec::new(),
                _ => ([[0; 32]; 3], [[1; 32]; 3]),
            },
        };
        let methods = ["notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed"];
        methods.into_iter().zip(old.iter().zip(&new)).filter(|(_, (a, b))| a != b).map(|(m, _)| m).collect()
    }
}

/// The configuration being served now, as readers hold it: a cheap handle
/// on the value the controller swaps.
#[derive(Clone)]
pub struct Current(tokio::sync::watch::Receiver<Option<Arc<Published>>>);

impl Current {
    pub fn new(rx: tokio::sync::watch::Receiver<Option<Arc<Published>>>) -> Self {
        Current(rx)
    }

    /// The value served now; `None` before the first good reload.
    pub fn get(&self) -> Option<Arc<Published>> {
        self.0.borrow().clone()
    }
}

/// The secret the filter presents to the control plane's internal endpoints
/// (`mcp_filter::config::INTERNAL_HEADER`), kept as a digest.
#[derive(Clone)]
pub struct Internal {
    digest: [u8; 32],
}

impl Internal {
    pub fn new(token: &str) -> Self {
        Internal { digest: Sha256::digest(token.as_bytes()).into() }
    }

    /// Whether a request to an internal endpoint came through the filter.
    /// Compared as digests, so the comparison's timing says nothing of the
    /// token.
    pub fn admits(&self, token: Option<&[u8]>) -> bool {
        token.is_some_and(|t| <[u8; 32]>::from(Sha256::digest(t)) == self.digest)
    }
}

/// The one channel on which everything that learns a server's offer may
/// have changed says so, by the server's name: the processes the control
/// plane runs (restarted, failed, running, `list_changed`), the clients' GET
/// streams (an upstream's `list_changed`) and the health checks (a server
/// that stopped answering). The controller asks those servers again.
pub type Changes = tokio::sync::mpsc::UnboundedSender<String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_page_reads_back_as_the_filter_reads_it() {
        let mut status = ServerStatus::new("time", ServerState::Starting, Runtime::Stdio, "stdio: uvx".into());
        status.summary.tools = 2;
        status.prompts = 1;
        let page = mcp_filter::status::ServersPage { version: Some("v1".into()), last_error: None, servers: vec![status] };
        let text = serde_json::to_string(&page).unwrap();
        let read: mcp_filter::status::ServersPage = serde_json::from_str(&text).unwrap();
        assert_eq!(read.servers, vec![ServerSummary { name: "time".into(), state: ServerState::Starting, tools: 2 }]);
        assert_eq!(read.version.as_deref(), Some("v1"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["servers"][0]["state"], "starting", "the operators' page keeps its flat shape");
        assert_eq!(json["servers"][0]["runtime"], "stdio");
    }

    #[test]
    fn lists_name_what_changed() {
        let a = Lists::default();
        let b = Lists { tools: [1; 32], ..Lists::default() };
        let c = Lists { prompts: [1; 32], resources: [2; 32], ..b.clone() };
        assert_eq!(a.changes(&a, None), Vec::<&str>::new());
        assert_eq!(a.changes(&b, None), vec!["notifications/tools/list_changed"]);
        assert_eq!(b.changes(&c, None), vec!["notifications/prompts/list_changed", "notifications/resources/list_changed"]);
    }

    #[test]
    fn a_virtual_servers_clients_hear_only_of_its_lists() {
        use mcp_filter::config::{Subset, VirtualServer};
        let mut config = mcp_filter::fixtures::config();
        config.endpoints = vec![VirtualServer {
            name: "ops".into(),
            path: "/mcp/ops".into(),
            tools: Subset { include: Some(vec!["a__*".into()]), exclude: vec![] },
            prompts: Subset::default(),
            resources: Subset { include: Some(vec!["file:///etc/*".into()]), exclude: vec![] },
            renames: vec![],
            descriptions: vec![],
            authorization: None,
            in_mcp: None,
        }];
        let before = Lists::of(&config);
        // A tool outside the endpoint's subset changes: its clients hear nothing.
        config.tools.retain(|t| t.name != "b__echo");
        let after = Lists::of(&config);
        assert_eq!(before.changes(&after, None), vec!["notifications/tools/list_changed"]);
        assert!(before.changes(&after, Some("ops")).is_empty());
        // One inside it: they do.
        config.tools.retain(|t| t.name != "a__echo");
        assert_eq!(after.changes(&Lists::of(&config), Some("ops")), vec!["notifications/tools/list_changed"]);
        // A rename changes its list, not the gateway's.
        config.endpoints[0].renames = vec![("a__greet".into(), "hello".into())];
        config.endpoints[0].tools = Subset::default();
        let renamed = Lists::of(&config);
        config.endpoints[0].renames.clear();
        let plain = Lists::of(&config);
        assert_eq!(plain.changes(&renamed, Some("ops")), vec!["notifications/prompts/list_changed"], "a__greet is a prompt");
        assert!(plain.changes(&renamed, None).is_empty());
        // Rules decide what a caller sees: a change of them is a change of every list.
        config.endpoints[0].authorization = Some(mcp_filter::config::AuthorizationConfig { default_allow: true, rules: vec![] });
        assert_eq!(plain.changes(&Lists::of(&config), Some("ops")).len(), 3);
        assert!(plain.changes(&Lists::of(&config), None).is_empty(), "the endpoint's rules are its own");
    }

    #[test]
    fn the_module_is_served_at_its_digest_only_and_each_fetch_counted() {
        let m = FilterModule::new(b"\0asm\x01\0\0\0".to_vec());
        // sha256 of the empty wasm module's eight bytes.
        assert_eq!(m.sha256(), "93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476");
        assert_eq!(m.fetch("/filter/00.wasm"), None, "another module's path");
        assert_eq!(m.fetches(), 0);
        let path = format!("/filter/{}.wasm", m.sha256());
        assert_eq!(m.fetch(&path).as_deref(), Some(&b"\0asm\x01\0\0\0"[..]));
        assert_eq!(m.fetches(), 1);
    }
}
