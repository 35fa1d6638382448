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
use crate::compile::{compile, Inputs};
use crate::discovery::{self, Discovered};
use crate::snapshot::SnapshotCache;

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
    pub gateway_version: String,
}

/// What the admin API shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// The version Envoy is being served.
    pub version: Option<String>,
    /// Why the last reload failed; `None` after a good one.
    pub last_error: Option<String>,
    pub last_reload_at: Option<SystemTime>,
    pub servers: Vec<ServerStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    pub name: String,
    pub url: String,
    /// `ready` when its tools were listed on the last discovery, else `unreachable`.
    pub state: &'static str,
    pub tools: usize,
    pub prompts: usize,
    pub resources: usize,
    pub last_error: Option<String>,
}

#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    cache: SnapshotCache,
    status: RwLock<Status>,
    /// One reload at a time, so that publications stay in order.
    reloading: Mutex<()>,
}

impl Controller {
    pub fn new(settings: Settings, cache: SnapshotCache) -> Self {
        Controller { inner: Arc::new(Inner { settings, cache, status: RwLock::default(), reloading: Mutex::new(()) }) }
    }

    pub fn cache(&self) -> &SnapshotCache {
        &self.inner.cache
    }

    pub fn status(&self) -> Status {
        self.inner.status.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Reloads now. Returns the version being served, or why the reload failed.
    pub async fn reload(&self) -> Result<String, String> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        let outcome = self.try_reload().await;
        if let Ok(mut s) = self.inner.status.write() {
            s.last_reload_at = Some(SystemTime::now());
            match &outcome {
                Ok((version, servers)) => {
                    s.version = Some(version.clone());
                    s.last_error = None;
                    s.servers = servers.clone();
                }
                Err(e) => s.last_error = Some(e.clone()),
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

    async fn try_reload(&self) -> Result<(String, Vec<ServerStatus>), String> {
        let s = &self.inner.settings;
        let path = s.catalog_path.display();
        let text = tokio::fs::read_to_string(&s.catalog_path).await.map_err(|e| format!("cannot read catalog {path}: {e}"))?;
        let catalog = catalog::load(&text, |name| std::env::var(name).ok()).map_err(|e| format!("{path}: {e}"))?;
        let (tools, servers) = discover(&catalog).await;
        let session = session_config(&catalog, &s.fallback_session_key);
        let inputs = Inputs {
            catalog: &catalog,
            discovered: &tools,
            wasm: &s.wasm,
            session: &session,
            admin: (&s.admin_advertise.0, s.admin_advertise.1),
            gateway_version: &s.gateway_version,
        };
        let compiled = compile(&inputs).map_err(|e| format!("{path}: {e}"))?;
        let version = compiled.snapshot.version.clone();
        let current = self.inner.cache.current().map(|c| c.version.clone());
        if current.as_deref() != Some(version.as_str()) {
            tracing::info!(
                version = %version,
                servers = catalog.servers.len(),
                tools = compiled.filter_config.tools.len(),
                "publishing configuration"
            );
            self.inner.cache.set(compiled.snapshot);
        }
        Ok((version, servers))
    }

    /// Reloads on start, on every change of the catalog file, periodically,
    /// and sooner while a server is unreachable.
    pub async fn run(self) -> anyhow::Result<()> {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let path = std::path::absolute(&self.inner.settings.catalog_path)?;
        let dir = path.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        let file_name = path.file_name().map(|f| f.to_os_string());
        // Editors often replace the file rather than write it, so watch the
        // directory and pick out events that touch the catalog's name.
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                // Reading the catalog is an event too; only changes count.
                if matches!(event.kind, notify::EventKind::Access(_)) {
                    return;
                }
                if event.paths.iter().any(|p| p.file_name().map(|f| f.to_os_string()) == file_name) {
                    let _ = tx.send(());
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
        loop {
            let wait = if self.any_unreachable() { retry.min(every) } else { every };
            retry = if self.any_unreachable() { (retry * 2).min(every) } else { Duration::from_secs(1) };
            tokio::select! {
                event = rx.recv() => {
                    if event.is_none() {
                        return Ok(());
                    }
                    // Let a burst of writes settle, then take them as one change.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while rx.try_recv().is_ok() {}
                    tracing::info!(catalog = %path.display(), "catalog changed; reloading");
                    retry = Duration::from_secs(1);
                    let _ = self.reload().await;
                }
                _ = tokio::time::sleep(wait) => {
                    let _ = self.reload().await;
                }
            }
        }
    }

    fn any_unreachable(&self) -> bool {
        self.status().servers.iter().any(|s| s.state != "ready")
    }
}

/// Lists the tools of every server concurrently.
async fn discover(catalog: &Catalog) -> (BTreeMap<String, Discovered>, Vec<ServerStatus>) {
    let listings = futures::future::join_all(
        catalog
            .servers
            .iter()
            .map(|s| discovery::discover(&s.url, s.display_url(), Duration::from_secs(s.discovery_timeout_seconds))),
    )
    .await;
    let mut tools = BTreeMap::new();
    let mut statuses = Vec::with_capacity(catalog.servers.len());
    for (server, listing) in catalog.servers.iter().zip(listings) {
        let status = match listing {
            Ok(list) => {
                let status = ServerStatus {
                    name: server.name.clone(),
                    url: server.display_url(),
                    state: "ready",
                    tools: list.tools.len(),
                    prompts: list.prompts.len(),
                    resources: list.resources.len(),
                    last_error: None,
                };
                tools.insert(server.name.clone(), list);
                status
            }
            Err(e) => {
                tracing::warn!(server = %server.name, url = %server.display_url(), error = %e, "server unreachable; its tools are left out");
                ServerStatus {
                    name: server.name.clone(),
                    url: server.display_url(),
                    state: "unreachable",
                    tools: 0,
                    prompts: 0,
                    resources: 0,
                    last_error: Some(e),
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
