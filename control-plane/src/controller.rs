//! The controller: read the catalog, discover tools, compile, publish.
//!
//! It runs on start, when the catalog file changes, on `POST /admin/reload`
//! and every `rediscover_every` (so that a server that was down comes back
//! and one that went down drops out). The last good configuration wins: a
//! catalog that fails to load or compile is reported in the log and in the
//! admin API, and the running configuration stays. The controller knows
//! nothing of gRPC: it only sets the snapshot cache.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use mcp_filter::config::{SessionConfig, SessionKey};
use notify::Watcher;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Mutex};

use crate::catalog::{self, Catalog};
use crate::compile::{compile, Inputs, TlsMaterial};
use crate::discovery::{self, Discovered};
use crate::runtime::Runtimes;
use crate::snapshot::SnapshotCache;
use crate::streams::Served;
use crate::upstream::{self, Clients, Reach, Upstream};
use mcp_filter::session::Sealer;

/// What the controller is started with.
pub struct Settings {
    pub catalog_path: PathBuf,
    /// The filter module published to Envoy.
    pub wasm: Vec<u8>,
    /// Session key used when the catalog names none (hex, 32 bytes).
    pub fallback_session_key: String,
    /// Where Envoy reaches the admin API.
    pub admin_advertise: (String, u16),
    pub rediscover_every: Duration,
    /// How often HTTP servers are pinged (`None`: never), and after how many
    /// failures in a row one is rediscovered.
    pub health_every: Option<Duration>,
    pub unhealthy_threshold: u32,
    pub gateway_version: String,
    /// The secret the filter presents to the internal endpoints
    /// (`mcp_filter::config::INTERNAL_HEADER`); random per process.
    pub internal_token: String,
    /// Applies the catalog's `gateway.log_level` (absent when `RUST_LOG`
    /// decides).
    pub set_log_level: Option<SetLogLevel>,
}

/// Sets the control plane's log level (`info`, `debug`, ...).
pub type SetLogLevel = Arc<dyn Fn(&str) + Send + Sync>;

/// What the admin API shows.
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

#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    pub name: String,
    /// `http`, `sse` or `stdio`.
    pub runtime: crate::catalog::Runtime,
    pub url: String,
    /// `ready` when its tools were listed on the last discovery, else `unreachable`.
    pub state: &'static str,
    pub tools: usize,
    pub prompts: usize,
    pub resources: usize,
    pub last_error: Option<String>,
    /// Its tools and prompts the gateway leaves out, and why (a name another
    /// server has, no name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<crate::compile::Dropped>,
    /// For servers the control plane runs or connects to: how that goes now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<crate::runtime::ProcessStatus>,
}

#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

/// Digests of what clients can list, per kind. A change of one is what the
/// gateway notifies clients of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists {
    pub tools: [u8; 32],
    pub prompts: [u8; 32],
    pub resources: [u8; 32],
}

impl Lists {
    fn of(config: &mcp_filter::config::FilterConfig) -> Self {
        let digest = |v: serde_json::Result<Vec<u8>>| Sha256::digest(v.unwrap_or_default()).into();
        Lists {
            tools: digest(serde_json::to_vec(&config.tools)),
            prompts: digest(serde_json::to_vec(&config.prompts)),
            resources: digest(serde_json::to_vec(&(&config.resources, &config.resource_templates))),
        }
    }

    /// The notification methods for what differs between `self` and `newer`.
    pub fn changes(&self, newer: &Lists) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.tools != newer.tools {
            out.push("notifications/tools/list_changed");
        }
        if self.prompts != newer.prompts {
            out.push("notifications/prompts/list_changed");
        }
        if self.resources != newer.resources {
            out.push("notifications/resources/list_changed");
        }
        out
    }
}

struct Inner {
    settings: Settings,
    lists: tokio::sync::watch::Sender<Lists>,
    cache: SnapshotCache,
    status: RwLock<Status>,
    /// One reload at a time, so that publications stay in order.
    reloading: Mutex<()>,
    /// What each server listed last time it answered, by name: (url, offer).
    /// A retry of the unreachable servers reuses it for the others.
    known: std::sync::Mutex<BTreeMap<String, (String, Discovered)>>,
    /// The session keys and servers of the configuration last published,
    /// for the clients' GET streams.
    served: RwLock<Option<Arc<Served>>>,
    /// The HTTP clients of upstreams, one per TLS setting. None has an
    /// overall timeout: GET streams and streamed answers last long.
    clients: Clients,
    /// Tells `run` to retry unreachable servers soon (from 1 s), after a
    /// reload of its own found one down.
    retry_soon: tokio::sync::Notify,
    /// Servers that reported a list change, waiting for their rediscovery.
    changed: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The servers the control plane runs (stdio) or connects to (sse).
    runtimes: Runtimes,
    /// Their reports of possible changes, taken by `run`.
    runtime_changes: std::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// The global rate limits of the catalog last loaded.
    global_limits: RwLock<Arc<crate::rls::GlobalLimits>>,
    /// Digests of the API keys that may change state through the admin
    /// API; `None` while the catalog turns authentication off.
    admin_keys: RwLock<Option<Vec<[u8; 32]>>>,
    /// The TLS files of the catalog last loaded (the listener's and the
    /// servers'), and a digest of what they held then: when it changes, the
    /// certificates are pushed again and the servers concerned asked again.
    tls_files: std::sync::Mutex<(Vec<PathBuf>, Option<[u8; 32]>)>,
    /// The last catalog that compiled, and its filter configuration.
    last_good: RwLock<Option<LastGood>>,
}

/// The configuration running: what a failed reload goes back to.
struct LastGood {
    catalog: Arc<Catalog>,
    reach: Arc<Reach>,
    filter_config: Arc<mcp_filter::config::FilterConfig>,
}

/// A catalog read and checked, with the files it names.
struct Loaded {
    catalog: Catalog,
    jwks: Option<String>,
    /// The listener's certificate, key and client CAs, as they are named.
    tls: Vec<String>,
    /// Every TLS file (the listener's, then the servers'), and a digest of
    /// what they hold.
    tls_files: Vec<PathBuf>,
    tls_digest: [u8; 32],
    /// The servers' clients, made for their TLS files.
    reach: Reach,
}

impl Controller {
    pub fn new(settings: Settings, cache: SnapshotCache) -> Self {
        let (lists, _) = tokio::sync::watch::channel(Lists::default());
        let (changes, runtime_changes) = mpsc::unbounded_channel();
        let catalog_dir = std::path::absolute(&settings.catalog_path)
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        let runtimes = Runtimes::new(catalog_dir, changes);
        Controller {
            inner: Arc::new(Inner {
                settings,
                lists,
                cache,
                status: RwLock::default(),
                reloading: Mutex::new(()),
                known: Default::default(),
                served: RwLock::default(),
                admin_keys: RwLock::default(),
                global_limits: RwLock::default(),
                tls_files: std::sync::Mutex::default(),
                last_good: RwLock::default(),
                clients: Clients::default(),
                changed: Default::default(),
                runtimes,
                runtime_changes: std::sync::Mutex::new(Some(runtime_changes)),
                retry_soon: tokio::sync::Notify::new(),
            }),
        }
    }

    pub fn cache(&self) -> &SnapshotCache {
        &self.inner.cache
    }

    /// What clients can list, as last acknowledged by the Envoys.
    pub fn lists(&self) -> tokio::sync::watch::Receiver<Lists> {
        self.inner.lists.subscribe()
    }

    /// The servers the control plane runs or connects to.
    pub fn runtimes(&self) -> &Runtimes {
        &self.inner.runtimes
    }

    /// `http://host:port` of the admin API, where the control plane serves
    /// the servers it runs or connects to (`catalog::PIPE_PATH_PREFIX`).
    pub fn bridge_base(&self) -> String {
        let (host, port) = &self.inner.settings.admin_advertise;
        format!("http://{host}:{port}")
    }

    /// An upstream said (on a GET stream) that a list of its changed: ask
    /// it again soon. Reports arriving together (every client's stream
    /// carries them) make one rediscovery.
    pub fn upstream_changed(&self, server: &str) {
        let first = match self.inner.changed.lock() {
            Ok(mut pending) => {
                let first = pending.is_empty();
                pending.insert(server.to_string());
                first
            }
            Err(_) => return,
        };
        if first {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let servers = this.inner.changed.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
                tracing::info!(?servers, "discovering these servers again (their lists changed, or they failed health checks)");
                let _ = this.reload_with(Discovery::Servers(servers)).await;
                if this.any_unreachable() {
                    this.inner.retry_soon.notify_one();
                }
            });
        }
    }

    /// The session keys and servers of the configuration being served.
    /// Whether `credential` (an API key) may change state through the admin
    /// API: any caller while authentication is off, else an admin key.
    pub fn admits_admin(&self, credential: Option<&str>) -> bool {
        use sha2::Digest as _;
        let Ok(keys) = self.inner.admin_keys.read() else { return false };
        match (keys.as_ref(), credential) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(keys), Some(c)) => {
                let digest: [u8; 32] = sha2::Sha256::digest(c.as_bytes()).into();
                keys.contains(&digest)
            }
        }
    }

    /// The global rate limits the rate limit service enforces.
    pub fn global_limits(&self) -> Arc<crate::rls::GlobalLimits> {
        self.inner.global_limits.read().map(|g| Arc::clone(&g)).unwrap_or_default()
    }

    /// Whether a request to an internal endpoint came through the filter.
    pub fn admits_internal(&self, token: Option<&[u8]>) -> bool {
        use sha2::Digest as _;
        // Compared as digests, so the comparison's timing says nothing of the token.
        let digest = |b: &[u8]| -> [u8; 32] { sha2::Sha256::digest(b).into() };
        token.is_some_and(|t| digest(t) == digest(self.inner.settings.internal_token.as_bytes()))
    }

    pub fn served(&self) -> Option<Arc<Served>> {
        self.inner.served.read().ok().and_then(|s| s.clone())
    }

    pub fn status(&self) -> Status {
        self.inner.status.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Reloads now, asking every server again. Returns the version being
    /// served, or why the reload failed.
    pub async fn reload(&self) -> Result<String, String> {
        self.reload_with(Discovery::All).await
    }

    async fn reload_with(&self, which: Discovery) -> Result<String, String> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        let outcome = self.try_reload(which).await;
        if let Ok(mut s) = self.inner.status.write() {
            s.last_reload_at = Some(SystemTime::now());
            match &outcome {
                Ok((version, servers)) => {
                    s.version = Some(version.clone());
                    s.last_error = None;
                    s.servers = servers.clone();
                    s.reloads_ok += 1;
                }
                Err(e) => {
                    s.last_error = Some(e.clone());
                    s.reloads_failed += 1;
                }
            }
        }
        match outcome {
            Ok((version, _)) => Ok(version),
            Err(e) => {
                tracing::error!(error = %e, "catalog reload failed; the last good configuration stays");
                Err(e)
            }
        }
    }

    /// One reload, in three steps, so that a catalog that fails leaves
    /// everything as it was: read and check what the catalog names (no state
    /// is touched); start and stop the servers it runs, ask the servers what
    /// they offer and compile (on failure the processes go back to the last
    /// good catalog); then, and only then, apply it all.
    async fn try_reload(&self, which: Discovery) -> Result<(String, Vec<ServerStatus>), String> {
        let s = &self.inner.settings;
        let path = s.catalog_path.display();
        let loaded = self.read_catalog().await?;
        let catalog = &loaded.catalog;
        let session = session_config(catalog, &s.fallback_session_key);
        let sealer = Sealer::new(&session).map_err(|e| format!("{path}: gateway.session_key: {e}"))?;
        let reach = &loaded.reach;
        // Start what the catalog adds, restart what it changes, stop what it
        // drops, before asking them what they offer.
        self.inner.runtimes.sync(catalog, reach);
        let known = self.inner.known.lock().map(|k| k.clone()).unwrap_or_default();
        // An on-demand server that is not running keeps what it offered last
        // time: asking again would start it.
        let asleep: Vec<String> = catalog
            .servers
            .iter()
            .filter(|s| self.inner.runtimes.status(&s.name).is_some_and(|p| p.state == "idle"))
            .map(|s| s.name.clone())
            .collect();
        let which = match which {
            Discovery::All if !asleep.is_empty() => {
                let awake = catalog.servers.iter().map(|s| s.name.clone()).filter(|n| !asleep.contains(n)).collect();
                Discovery::Servers(awake)
            }
            Discovery::Servers(mut changed) => {
                changed.retain(|n| !asleep.contains(n));
                Discovery::Servers(changed)
            }
            other => other,
        };
        let (tools, mut servers) = discover(catalog, &known, which, reach).await;
        let previous = self.inner.last_good.read().ok().and_then(|g| g.as_ref().map(|g| Arc::clone(&g.filter_config)));
        let inputs = Inputs {
            catalog,
            discovered: &tools,
            wasm: &s.wasm,
            session: &session,
            admin: (&s.admin_advertise.0, s.admin_advertise.1),
            gateway_version: &s.gateway_version,
            jwks: loaded.jwks.as_deref(),
            internal_token: &s.internal_token,
            tls: match loaded.tls.as_slice() {
                [cert, key] => Some(TlsMaterial { cert, key, client_ca: None }),
                [cert, key, ca] => Some(TlsMaterial { cert, key, client_ca: Some(ca) }),
                _ => None,
            },
            upstream_tls: &reach.files,
            previous: previous.as_deref(),
        };
        let compiled = match compile(&inputs) {
            Ok(c) => c,
            Err(e) => {
                // The processes go back to what the running configuration names.
                let good =
                    self.inner.last_good.read().ok().and_then(|g| g.as_ref().map(|g| (Arc::clone(&g.catalog), Arc::clone(&g.reach))));
                match good {
                    Some((catalog, reach)) => self.inner.runtimes.sync(&catalog, &reach),
                    None => self.inner.runtimes.sync(&Catalog::default(), reach),
                }
                return Err(format!("{path}: {e}"));
            }
        };
        for d in &compiled.dropped {
            tracing::warn!(server = %d.server, kind = d.kind, name = %d.name, reason = %d.reason, "left out of the lists");
        }
        for status in &mut servers {
            status.dropped = compiled.dropped.iter().filter(|d| d.server == status.name).cloned().collect();
        }

        // Everything checked: apply it.
        if let Ok(mut k) = self.inner.known.lock() {
            *k = catalog
                .servers
                .iter()
                .filter_map(|s| tools.get(&s.name).map(|d| (s.name.clone(), (reach.identity(s), d.clone()))))
                .collect();
        }
        self.apply_settings(&loaded);
        if let Ok(mut slot) = self.inner.served.write() {
            let servers = catalog.servers.iter().map(|server| Upstream::of(server, reach)).collect();
            *slot = Some(Arc::new(Served { sealer, servers }));
        }
        let version = compiled.snapshot.version.clone();
        let lists = Lists::of(&compiled.filter_config);
        let tool_count = compiled.filter_config.tools.len();
        if let Ok(mut good) = self.inner.last_good.write() {
            *good = Some(LastGood {
                catalog: Arc::new(loaded.catalog.clone()),
                reach: Arc::new(loaded.reach.clone()),
                filter_config: Arc::new(compiled.filter_config),
            });
        }
        let current = self.inner.cache.current().map(|c| c.version.clone());
        if current.as_deref() != Some(version.as_str()) {
            tracing::info!(version = %version, servers = loaded.catalog.servers.len(), tools = tool_count, "publishing configuration");
            self.inner.cache.set(compiled.snapshot);
            // Tell clients only once the Envoys run the new configuration,
            // so that a client re-listing on the notification sees it.
            let this = self.clone();
            let published = version.clone();
            tokio::spawn(async move {
                this.until_acked(&published, Duration::from_secs(10)).await;
                this.inner.lists.send_if_modified(|current| {
                    let changed = *current != lists;
                    *current = lists;
                    changed
                });
            });
        }
        Ok((version, servers))
    }

    /// Reads the catalog and the files it names, and checks them. Touches
    /// no state: a failure here changes nothing.
    async fn read_catalog(&self) -> Result<Loaded, String> {
        let s = &self.inner.settings;
        let path = s.catalog_path.display();
        let text = tokio::fs::read_to_string(&s.catalog_path).await.map_err(|e| format!("cannot read catalog {path}: {e}"))?;
        let catalog = catalog::load(&text, |name| std::env::var(name).ok()).map_err(|e| format!("{path}: {e}"))?;
        let base_dir = s.catalog_path.parent().unwrap_or(std::path::Path::new(".")).to_path_buf();
        // A JWKS file is read with the catalog (relative to it), and sent to
        // Envoy inline: Envoy may not share the control plane's disk.
        let jwks = match catalog.gateway.auth.as_ref().and_then(|a| a.jwt.as_ref()).and_then(|j| j.jwks_file.as_deref()) {
            Some(file) => {
                let full = base_dir.join(file);
                let text = tokio::fs::read_to_string(&full)
                    .await
                    .map_err(|e| format!("{path}: gateway.auth.jwt.jwks_file {}: {e}", full.display()))?;
                serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .filter(|v| v.get("keys").is_some_and(serde_json::Value::is_array))
                    .ok_or_else(|| {
                        format!("{path}: gateway.auth.jwt.jwks_file {} is not a JWKS (a JSON object with \"keys\")", full.display())
                    })?;
                Some(text)
            }
            None => None,
        };
        let mut tls_files = tls_paths(&catalog, &base_dir);
        let tls = read_all(&tls_files).await.map_err(|e| format!("{path}: gateway.tls: {e}"))?;
        // Each server's TLS files, relative to the catalog, read now so that
        // a missing or bad one fails the reload (the last good configuration
        // stays) rather than the server's connections later.
        let mut contents = tls.clone();
        let mut files = BTreeMap::new();
        for server in &catalog.servers {
            let Some(settings) = &server.tls else { continue };
            let mut texts: [Option<String>; 3] = Default::default();
            for (slot, (field, file)) in texts.iter_mut().zip(settings.fields()) {
                let Some(file) = file else { continue };
                let full = base_dir.join(file);
                let text = read_pem(&full).await.map_err(|e| format!("{path}: server {:?}: tls.{field}: {e}", server.name))?;
                tls_files.push(full);
                contents.push(text.clone());
                *slot = Some(text);
            }
            let [ca, client_cert, client_key] = texts;
            files.insert(server.name.clone(), upstream::UpstreamTls { ca, client_cert, client_key });
        }
        let reach =
            self.inner.clients.reach(&catalog, &self.bridge_base(), &s.internal_token, files).map_err(|e| format!("{path}: {e}"))?;
        Ok(Loaded { catalog, jwks, tls, tls_files, tls_digest: digest_of(&contents), reach })
    }

    /// Applies what the control plane itself takes from a catalog that has
    /// compiled: its log level, the TLS files it watches, the global limits
    /// it enforces, the keys its admin API admits.
    fn apply_settings(&self, loaded: &Loaded) {
        let g = &loaded.catalog.gateway;
        if let Some(set) = &self.inner.settings.set_log_level {
            set(g.log_level.as_str());
            if let Ok(mut s) = self.inner.status.write() {
                s.log_level = Some(g.log_level.clone());
            }
        }
        if let Ok(mut files) = self.inner.tls_files.lock() {
            *files = (loaded.tls_files.clone(), Some(loaded.tls_digest));
        }
        self.inner.clients.keep_only(&[&loaded.reach]);
        if let Ok(mut global) = self.inner.global_limits.write() {
            *global = Arc::new(crate::rls::GlobalLimits {
                redis_url: g.global_rate_limits.as_ref().map(|r| r.redis_url.clone()),
                limits: g.rate_limits.iter().filter(|l| l.global).map(|l| (l.name.clone(), l.clone())).collect(),
            });
        }
        if let Ok(mut admin) = self.inner.admin_keys.write() {
            *admin = g.auth.as_ref().map(|a| a.admin_key_digests());
        }
    }

    /// Waits until every connected Envoy has acknowledged `version` of the
    /// filter configuration, or `limit` has passed.
    async fn until_acked(&self, version: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            let all = self.inner.cache.status().iter().filter(|n| n.connected).all(|n| {
                n.types
                    .iter()
                    .any(|t| t.type_url == crate::snapshot::EXTENSION_CONFIG_TYPE && t.last_acked_version.as_deref() == Some(version))
            });
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reloads on start, on every change of the catalog file, periodically,
    /// and sooner while a server is unreachable.
    pub async fn run(self) -> anyhow::Result<()> {
        if let Some(mut changes) = self.inner.runtime_changes.lock().ok().and_then(|mut c| c.take()) {
            let this = self.clone();
            tokio::spawn(async move {
                while let Some(server) = changes.recv().await {
                    this.upstream_changed(&server);
                }
            });
        }
        // Each event says whether the catalog was renamed into place (whole
        // at once) or written (maybe in several pieces).
        if let Some(every) = self.inner.settings.health_every {
            tokio::spawn(self.clone().check_health(every, self.inner.settings.unhealthy_threshold));
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<bool>();
        let path = std::path::absolute(&self.inner.settings.catalog_path)?;
        let dir = path.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        let file_name = path.file_name().map(|f| f.to_os_string());
        // Editors often replace the file rather than write it, so watch the
        // directory and pick out events that touch the catalog's name, or
        // Kubernetes' `..data`: a mounted ConfigMap's files are symlinks
        // through it, and an update swaps it, never touching the file's name.
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                // Reading the catalog is an event too; only changes count.
                if matches!(event.kind, notify::EventKind::Access(_)) {
                    return;
                }
                let ours = |p: &PathBuf| {
                    let name = p.file_name().map(|f| f.to_os_string());
                    name == file_name || name.as_deref() == Some(std::ffi::OsStr::new(CONFIGMAP_DATA))
                };
                if event.paths.iter().any(ours) {
                    let _ = tx.send(matches!(event.kind, notify::EventKind::Modify(notify::event::ModifyKind::Name(_))));
                }
            }
        })?;
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;

        let _ = self.reload().await;
        // A server that is unreachable is retried soon and then less often
        // (1 s, 2 s, 4 s, ... up to the rediscovery period), so that one that
        // starts after the gateway shows up within seconds.
        let every = self.inner.settings.rediscover_every;
        let mut retry = Duration::from_secs(1);
        let mut last_full = tokio::time::Instant::now();
        let mut tls_poll = tokio::time::interval(TLS_POLL);
        tls_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut deadline = None;
        loop {
            // When to ask the servers again, kept across the TLS polls.
            let next = *deadline.get_or_insert_with(|| {
                let wait = if self.any_unreachable() { retry.min(every) } else { every };
                retry = if self.any_unreachable() { (retry * 2).min(every) } else { Duration::from_secs(1) };
                tokio::time::Instant::now() + wait
            });
            tokio::select! {
                event = rx.recv() => {
                    let Some(renamed) = event else { return Ok(()) };
                    // A file renamed into place is whole; one written in place
                    // may come in pieces: let a burst of writes settle, then
                    // take them as one change.
                    if !renamed {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    while rx.try_recv().is_ok() {}
                    tracing::info!(catalog = %path.display(), "catalog changed; reloading");
                    retry = Duration::from_secs(1);
                    deadline = None;
                    // Only what the edit adds or changes is asked what it
                    // offers; the others keep their last answer until the
                    // period (or `POST /admin/reload`) asks everyone again.
                    let _ = self.reload_with(Discovery::Unreachable).await;
                }
                _ = self.inner.retry_soon.notified() => {
                    retry = Duration::from_secs(1);
                    deadline = None;
                }
                _ = tls_poll.tick() => {
                    if self.tls_files_changed().await {
                        tracing::info!("TLS files changed; pushing the new certificates");
                        let _ = self.reload_with(Discovery::Unreachable).await;
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    deadline = None;
                    // Every period, everyone is asked again (tools change);
                    // in between, only the servers that did not answer.
                    if last_full.elapsed() >= every {
                        last_full = tokio::time::Instant::now();
                        let _ = self.reload().await;
                    } else {
                        let _ = self.reload_with(Discovery::Unreachable).await;
                    }
                }
            }
        }
    }

    /// Pings every HTTP server that is up, each in a session the control
    /// plane keeps with it. One that fails `threshold` checks in a row is
    /// asked again what it offers; if that fails too, it is marked
    /// unreachable and its tools, prompts and resources leave the lists
    /// (clients are told) until a retry finds it again. Servers the control
    /// plane runs (stdio) or connects to (SSE) are watched by their
    /// supervisor instead: a ping would keep an on-demand one awake.
    async fn check_health(self, every: Duration, threshold: u32) {
        let mut sessions: BTreeMap<String, crate::discovery::Session> = BTreeMap::new();
        let mut failures: BTreeMap<String, u32> = BTreeMap::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(served) = self.served() else { continue };
            let status = self.status();
            let modern_only: BTreeMap<String, bool> =
                self.inner.known.lock().map(|k| k.iter().map(|(name, (_, d))| (name.clone(), d.modern_only)).collect()).unwrap_or_default();
            let up: Vec<&Upstream> = status
                .servers
                .iter()
                .filter(|s| s.runtime == crate::catalog::Runtime::Http && s.state == "ready")
                .filter_map(|s| served.servers.iter().find(|u| u.name == s.name))
                .collect();
            // A session belongs to a server at one URL with one set of
            // credentials and one TLS setting.
            sessions.retain(|name, session| up.iter().any(|u| &u.name == name && session.serves(u)));
            failures.retain(|name, _| up.iter().any(|u| &u.name == name));
            let checks = up.iter().map(|u| {
                let mut session = sessions.remove(&u.name).unwrap_or_else(|| crate::discovery::Session::for_upstream(u));
                let modern = modern_only.get(&u.name).copied().unwrap_or(false);
                async move {
                    let outcome = tokio::time::timeout(every.min(Duration::from_secs(10)), session.check(modern)).await;
                    (u.name.clone(), session, outcome.unwrap_or_else(|_| Err("no answer in time".into())))
                }
            });
            for (name, session, outcome) in futures::future::join_all(checks).await {
                match outcome {
                    Ok(()) => {
                        failures.remove(&name);
                        sessions.insert(name, session);
                    }
                    Err(e) => {
                        let count = failures.entry(name.clone()).or_insert(0);
                        *count += 1;
                        tracing::warn!(server = %name, error = %e, failures = *count, "health check failed");
                        if *count >= threshold {
                            failures.remove(&name);
                            self.upstream_changed(&name);
                        }
                    }
                }
            }
        }
    }

    /// Whether the TLS files hold something else than at the last reload.
    async fn tls_files_changed(&self) -> bool {
        let Ok((paths, seen)) = self.inner.tls_files.lock().map(|f| f.clone()) else { return false };
        if paths.is_empty() {
            return false;
        }
        // A file caught mid-rotation (missing, half written) is read again
        // at the next poll; the reload then reports it if it stays broken.
        match read_all(&paths).await {
            Ok(now) => Some(digest_of(&now)) != seen,
            Err(_) => false,
        }
    }

    fn any_unreachable(&self) -> bool {
        self.status().servers.iter().any(|s| s.state != "ready")
    }
}

/// The directory entry Kubernetes swaps to update a mounted ConfigMap.
const CONFIGMAP_DATA: &str = "..data";

/// How often the TLS files are checked for a rotation. Polling, not file
/// events: certificate managers and Kubernetes replace files through
/// symlink swaps that directory watches see inconsistently.
const TLS_POLL: Duration = Duration::from_secs(2);

/// The catalog's TLS files, relative to its directory: cert, key, client CAs.
fn tls_paths(catalog: &Catalog, base_dir: &std::path::Path) -> Vec<PathBuf> {
    let Some(t) = &catalog.gateway.tls else { return Vec::new() };
    [Some(&t.cert_file), Some(&t.key_file), t.client_ca_file.as_ref()].into_iter().flatten().map(|f| base_dir.join(f)).collect()
}

async fn read_all(paths: &[PathBuf]) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        out.push(read_pem(p).await?);
    }
    Ok(out)
}

async fn read_pem(path: &std::path::Path) -> Result<String, String> {
    let text = tokio::fs::read_to_string(path).await.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !text.contains("-----BEGIN ") {
        return Err(format!("{} is not PEM", path.display()));
    }
    Ok(text)
}

fn digest_of(parts: &[String]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(sha2::Sha256::digest(p.as_bytes()));
    }
    h.finalize().into()
}

/// Which servers a reload asks again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Discovery {
    All,
    /// Only those without a known answer for their current identity (URL,
    /// credentials, launch command).
    Unreachable,
    /// These (which said their lists changed), and those without a known answer.
    Servers(std::collections::BTreeSet<String>),
}

impl Discovery {
    fn reuses(&self, server: &str) -> bool {
        match self {
            Discovery::All => false,
            Discovery::Unreachable => true,
            Discovery::Servers(changed) => !changed.contains(server),
        }
    }
}

/// Discovers the servers concurrently (all, or those not known).
async fn discover(
    catalog: &Catalog,
    known: &BTreeMap<String, (String, Discovered)>,
    which: Discovery,
    reach: &Reach,
) -> (BTreeMap<String, Discovered>, Vec<ServerStatus>) {
    let which = &which;
    let listings = futures::future::join_all(catalog.servers.iter().map(|s| async move {
        match known.get(&s.name) {
            Some((identity, d)) if which.reuses(&s.name) && *identity == reach.identity(s) => Ok(d.clone()),
            _ => discovery::discover(&Upstream::of(s, reach), Duration::from_secs(s.discovery_timeout_seconds)).await,
        }
    }))
    .await;
    let mut tools = BTreeMap::new();
    let mut statuses = Vec::with_capacity(catalog.servers.len());
    for (server, listing) in catalog.servers.iter().zip(listings) {
        let status = match listing {
            Ok(list) => {
                let status = ServerStatus {
                    name: server.name.clone(),
                    runtime: server.runtime,
                    process: None,
                    url: server.display_url(),
                    state: "ready",
                    tools: list.tools.len(),
                    prompts: list.prompts.len(),
                    resources: list.resources.len(),
                    last_error: None,
                    dropped: Vec::new(),
                };
                tools.insert(server.name.clone(), list);
                status
            }
            Err(e) => {
                tracing::warn!(server = %server.name, url = %server.display_url(), error = %e, "server unreachable; its tools are left out");
                ServerStatus {
                    name: server.name.clone(),
                    runtime: server.runtime,
                    process: None,
                    url: server.display_url(),
                    state: "unreachable",
                    tools: 0,
                    prompts: 0,
                    resources: 0,
                    last_error: Some(e),
                    dropped: Vec::new(),
                }
            }
        };
        statuses.push(status);
    }
    (tools, statuses)
}

/// The session keys: the catalog's, or the one made at start. The key id is
/// derived from the key, so that replicas sharing a key agree on its id.
pub fn session_config(catalog: &Catalog, fallback_key: &str) -> SessionConfig {
    let secret = catalog.gateway.session_key.clone().unwrap_or_else(|| fallback_key.to_string()).to_ascii_lowercase();
    let id: String = Sha256::digest(secret.as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect();
    SessionConfig {
        active_key: id.clone(),
        keys: vec![SessionKey { id, secret_hex: secret }],
        ttl_seconds: catalog.gateway.session_ttl_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::{discover, Discovery, Lists};
    use crate::catalog::load;
    use crate::discovery::Discovered;
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn retries_ask_only_the_servers_that_did_not_answer() {
        // Nothing listens on port 9: a server asked there is unreachable.
        let clients = crate::upstream::Clients::default();
        let reach = |c: &crate::catalog::Catalog| clients.reach(c, "http://127.0.0.1:9", "t", BTreeMap::new()).unwrap();
        let catalog =
            load("servers:\n  - {name: known, url: 'http://127.0.0.1:9/mcp'}\n  - {name: new, url: 'http://127.0.0.1:9/new'}\n", |_| None)
                .unwrap();
        let offer = Discovered { tools: vec![serde_json::json!({"name": "t"})], ..Default::default() };
        let known = BTreeMap::from([("known".to_string(), (catalog.servers[0].identity(), offer.clone()))]);
        let (found, status) = discover(&catalog, &known, Discovery::Unreachable, &reach(&catalog)).await;
        assert_eq!(found.get("known"), Some(&offer), "reused, not asked again");
        assert_eq!((status[0].state, status[1].state), ("ready", "unreachable"));
        let (found, _) = discover(&catalog, &known, Discovery::All, &reach(&catalog)).await;
        assert!(found.is_empty(), "a full reload asks everyone");
        let moved = load("servers:\n  - {name: known, url: 'http://127.0.0.1:9/moved'}\n", |_| None).unwrap();
        let (found, _) = discover(&moved, &known, Discovery::Unreachable, &reach(&moved)).await;
        assert!(found.is_empty(), "a server whose URL changed is asked again");
        let rekeyed = load("servers:\n  - {name: known, url: 'http://127.0.0.1:9/mcp', headers: {x-api-key: k2}}\n", |_| None).unwrap();
        let (found, _) = discover(&rekeyed, &known, Discovery::Unreachable, &reach(&rekeyed)).await;
        assert!(found.is_empty(), "a server given other credentials is asked again");
    }

    #[test]
    fn lists_name_what_changed() {
        let a = Lists::default();
        let b = Lists { tools: [1; 32], ..Lists::default() };
        let c = Lists { prompts: [1; 32], resources: [2; 32], ..b.clone() };
        assert_eq!(a.changes(&a), Vec::<&str>::new());
        assert_eq!(a.changes(&b), vec!["notifications/tools/list_changed"]);
        assert_eq!(b.changes(&c), vec!["notifications/prompts/list_changed", "notifications/resources/list_changed"]);
    }
}
