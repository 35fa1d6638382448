//! The controller: read the catalog, discover, compile, publish.
//!
//! A reload has three stages. **Read** (`read_catalog`): the
//! catalog and every file it names, checked; no state is touched. **Build**
//! (`build`): ask the servers what they offer and compile; still
//! no state is touched. **Swap** (`swap`): one [`Published`]
//! value replaces the last, with the snapshot Envoy is served, and only then
//! do the processes the control plane runs follow the published catalog. A
//! catalog that fails at any stage changes nothing (the last good
//! configuration wins), and is reported in the log and the admin API.
//!
//! Reloads run on start, when the catalog file changes, on `POST
//! /admin/reload`, every `rediscover_every`, sooner while a server is not
//! ready, and when a server's offer may have changed ([`Changes`]):
//! `watch.rs`. The health checks of HTTP servers are `health.rs`. The
//! controller knows nothing of gRPC or HTTP handlers: it sets the snapshot
//! cache and the published value, which they read.

mod health;
mod pins;
mod secrets;
mod watch;

pub use pins::{ApproveError, Approved};
pub use secrets::{SecretFile, SecretFiles};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use mcp_filter::config::{SessionConfig, SessionKey};
use mcp_filter::session::Sealer;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Mutex};

use crate::catalog::{self, Catalog, Start};
use crate::compile::{compile, Compiled, Credential, Inputs, TlsMaterial};
use crate::credentials::Credentials;
use crate::discovery;
use crate::runtime::Runtimes;
use crate::snapshot::SnapshotCache;
use crate::state::{
    Changes, Current, FilterModule, GlobalLimits, Internal, Lists, Offers, Published, Reloads, Served, ServerState, ServerStatus, Status,
};
use crate::upstream::{self, Clients, Reach, Upstream};

/// What the controller is started with.
pub struct Settings {
    pub catalog_path: PathBuf,
    /// The filter module published to Envoy (by its digest; Envoy fetches
    /// it from the admin API).
    pub module: Arc<FilterModule>,
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

#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    cache: SnapshotCache,
    /// The configuration served, swapped whole by each good reload.
    published: tokio::sync::watch::Sender<Option<Arc<Published>>>,
    reloads: RwLock<Reloads>,
    /// One reload at a time, so that publications stay in order.
    reloading: Mutex<()>,
    /// What clients can list, as last acknowledged by the Envoys.
    lists: tokio::sync::watch::Sender<Lists>,
    /// The HTTP clients of upstreams, one per TLS setting. None has an
    /// overall timeout: GET streams and streamed answers last long.
    clients: Clients,
    /// The servers the control plane runs (stdio) or connects to (sse).
    runtimes: Arc<Runtimes>,
    /// Servers whose offer may have changed, by name, from anywhere; taken
    /// by `run`.
    changes: Changes,
    changed: std::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Tells `run` to retry servers that are not ready soon (from 1 s), after
    /// a reload of its own found one so.
    retry_soon: tokio::sync::Notify,
    internal: Internal,
    /// The gateway's OAuth tokens for servers with `oauth`, kept current by
    /// tasks of their own that name a server on `changes` when its token
    /// changes.
    credentials: Credentials,
    /// What the Envoys push about their traffic (figures, decisions).
    telemetry: crate::telemetry::Telemetry,
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
    /// The secret files its `${file:...}` name, and a digest of what each
    /// held (never the content).
    secret_files: Vec<SecretFile>,
    /// The servers' clients, made for their TLS files.
    reach: Reach,
    sealer: Sealer,
}

/// What a build made of a loaded catalog, ready to be swapped in.
struct Built {
    loaded: Loaded,
    offers: Offers,
    servers: Vec<ServerStatus>,
    compiled: Compiled,
    /// Servers the control plane runs that the catalog adds or changes: they
    /// start once published, and are asked what they offer then.
    pending: BTreeSet<String>,
    timings: Timings,
    /// The pins file, to be written before the build is served: it gained
    /// a pin.
    pins: pins::ToSave,
}

/// How long each stage of a reload took, for the log (`bench/push.py` reads it).
#[derive(Debug, Default, Clone, Copy)]
struct Timings {
    read: Duration,
    discover: Duration,
    compile: Duration,
}

impl Controller {
    pub fn new(settings: Settings, cache: SnapshotCache) -> Self {
        let (lists, _) = tokio::sync::watch::channel(Lists::default());
        let (published, _) = tokio::sync::watch::channel(None);
        let (changes, changed) = mpsc::unbounded_channel();
        let catalog_dir = std::path::absolute(&settings.catalog_path)
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        let runtimes = Arc::new(Runtimes::new(catalog_dir, changes.clone()));
        let internal = Internal::new(&settings.internal_token);
        let credentials = Credentials::new(changes.clone());
        Controller {
            inner: Arc::new(Inner {
                settings,
                cache,
                published,
                reloads: RwLock::default(),
                reloading: Mutex::new(()),
                lists,
                clients: Clients::default(),
                runtimes,
                changes,
                changed: std::sync::Mutex::new(Some(changed)),
                retry_soon: tokio::sync::Notify::new(),
                internal,
                credentials,
                telemetry: crate::telemetry::Telemetry::default(),
            }),
        }
    }

    /// What the Envoys pushed about their traffic.
    pub fn telemetry(&self) -> crate::telemetry::Telemetry {
        self.inner.telemetry.clone()
    }

    pub fn cache(&self) -> &SnapshotCache {
        &self.inner.cache
    }

    /// The configuration served now, as readers hold it.
    pub fn current(&self) -> Current {
        Current::new(self.inner.published.subscribe())
    }

    /// What clients can list, as last acknowledged by the Envoys.
    pub fn lists(&self) -> tokio::sync::watch::Receiver<Lists> {
        self.inner.lists.subscribe()
    }

    /// Where to say that a server's offer may have changed.
    pub fn changes(&self) -> Changes {
        self.inner.changes.clone()
    }

    /// The servers the control plane runs or connects to.
    pub fn runtimes(&self) -> Arc<Runtimes> {
        Arc::clone(&self.inner.runtimes)
    }

    /// The filter module, as the admin API serves it.
    pub fn module(&self) -> Arc<FilterModule> {
        Arc::clone(&self.inner.settings.module)
    }

    /// A caller's JWT exchanged for a token of `server` (RFC 8693): the token
    /// and the seconds it may be used, or why not.
    pub async fn exchange(&self, server: &str, subject: &str) -> Result<(String, u64), String> {
        self.inner.credentials.exchange(server, subject).await
    }

    /// What opens the internal endpoints.
    pub fn internal(&self) -> Internal {
        self.inner.internal.clone()
    }

    /// `http://host:port` of the admin API, where the control plane serves
    /// the servers it runs or connects to (`catalog::PIPE_PATH_PREFIX`).
    fn bridge_base(&self) -> String {
        let (host, port) = &self.inner.settings.admin_advertise;
        format!("http://{host}:{port}")
    }

    fn published(&self) -> Option<Arc<Published>> {
        self.inner.published.borrow().clone()
    }

    pub fn status(&self) -> Status {
        let reloads = self.inner.reloads.read().map(|r| r.clone()).unwrap_or_default();
        let mut status = Status::of(self.published().as_deref(), &reloads);
        for server in &mut status.servers {
            server.credential = self.inner.credentials.status(&server.summary.name);
        }
        status
    }

    /// Reloads now, asking every server again. Returns the version being
    /// served, or why the reload failed.
    pub async fn reload(&self) -> Result<String, String> {
        self.reload_with(Discovery::All).await
    }

    async fn reload_with(&self, which: Discovery) -> Result<String, String> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        let outcome = self.try_reload(which).await;
        if let Ok(mut r) = self.inner.reloads.write() {
            r.last_reload_at = Some(SystemTime::now());
            match &outcome {
                Ok(_) => {
                    r.last_error = None;
                    r.ok += 1;
                }
                Err(e) => {
                    r.last_error = Some(e.clone());
                    r.failed += 1;
                }
            }
        }
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "catalog reload failed; the last good configuration stays");
        }
        outcome
    }

    async fn try_reload(&self, which: Discovery) -> Result<String, String> {
        let started = std::time::Instant::now();
        let loaded = self.read_catalog().await?;
        let read = started.elapsed();
        let mut built = self.build(loaded, which).await?;
        built.timings.read = read;
        // Written before serving what it approved: a tool trusted on first
        // use stays trusted across restarts, or the reload fails.
        if let Some((path, file)) = built.pins.take() {
            crate::pins::write(&path, &file).await?;
        }
        Ok(self.swap(built))
    }

    /// Reads the catalog and the files it names, and checks them. Touches
    /// no state: a failure here changes nothing.
    async fn read_catalog(&self) -> Result<Loaded, String> {
        let s = &self.inner.settings;
        let path = s.catalog_path.display();
        let text = tokio::fs::read_to_string(&s.catalog_path).await.map_err(|e| format!("cannot read catalog {path}: {e}"))?;
        // `${file:...}` secrets are read now (relative to the catalog) and
        // remembered, so that a change to one reloads (`watch.rs`).
        let secrets = SecretFiles::new(s.catalog_path.parent().unwrap_or(std::path::Path::new(".")));
        let catalog = catalog::load_with(&text, |name| secrets.lookup(name)).map_err(|e| format!("{path}: {e}"))?;
        let secret_files = secrets.into_read();
        let sealer =
            Sealer::new(&session_config(&catalog, &s.fallback_session_key)).map_err(|e| format!("{path}: gateway.session_key: {e}"))?;
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
        let mut reach =
            self.inner.clients.reach(&catalog, &self.bridge_base(), &s.internal_token, files).map_err(|e| format!("{path}: {e}"))?;
        reach.tokens = self.inner.credentials.handles();
        Ok(Loaded { catalog, jwks, tls, tls_files, tls_digest: digest_of(&contents), secret_files, reach, sealer })
    }

    /// Asks the servers what they offer (those `which` names, and those
    /// without an answer for their current identity) and compiles. Touches
    /// no state. A server the control plane runs is asked only once it runs
    /// the catalog's version of it: one the catalog adds or changes is
    /// `starting`, and is asked once the catalog is published and it runs.
    async fn build(&self, loaded: Loaded, which: Discovery) -> Result<Built, String> {
        let s = &self.inner.settings;
        let path = s.catalog_path.display();
        let catalog = &loaded.catalog;
        let reach = &loaded.reach;
        let previous = self.published();
        let none = Offers::new();
        let known = previous.as_ref().map_or(&none, |p| &p.offers);
        let runtimes = &self.inner.runtimes;
        let pending: BTreeSet<String> =
            catalog.servers.iter().filter(|s| s.piped() && !runtimes.runs(&s.name, &reach.identity(s))).map(|s| s.name.clone()).collect();
        // An on-demand server that is not running keeps what it offered last
        // time: asking again would start it. (One that offered nothing yet is
        // asked, and so started.)
        let asleep: BTreeSet<String> = catalog
            .servers
            .iter()
            .filter(|s| runtimes.is_idle(&s.name))
            .filter(|s| known.get(&s.name).is_some_and(|(identity, _)| *identity == reach.identity(s)))
            .map(|s| s.name.clone())
            .collect();
        // A server the gateway has no token for would refuse discovery: it
        // keeps what it offered last, so that its tools stay listed and
        // their calls get the error that says why (not "unknown tool").
        let credentials = self.inner.credentials.current();
        let tokenless = catalog
            .servers
            .iter()
            .filter(|s| s.oauth.is_some() && !matches!(credentials.get(&s.name), Some(Credential::Token(_))))
            .filter(|s| known.get(&s.name).is_some_and(|(identity, _)| *identity == reach.identity(s)))
            .map(|s| s.name.clone());
        let asleep: BTreeSet<String> = asleep.into_iter().chain(tokenless).collect();
        let which = match which {
            Discovery::All if !asleep.is_empty() => {
                Discovery::Servers(catalog.servers.iter().map(|s| s.name.clone()).filter(|n| !asleep.contains(n)).collect())
            }
            Discovery::Servers(mut changed) => {
                changed.retain(|n| !asleep.contains(n));
                Discovery::Servers(changed)
            }
            other => other,
        };
        let started = std::time::Instant::now();
        let (offers, mut servers) = discover(catalog, known, which, reach, &pending).await;
        let discovered_in = started.elapsed();
        let (review, pins) = self.review_pins(catalog, &offers).await.map_err(|e| format!("{path}: {e}"))?;
        let held = review.held();
        let session = session_config(catalog, &s.fallback_session_key);
        let inputs = Inputs {
            catalog,
            discovered: &offers,
            module_sha256: s.module.sha256(),
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
            previous: previous.as_ref().map(|p| p.filter_config.as_ref()),
            held: &held,
            credentials: &credentials,
        };
        let started = std::time::Instant::now();
        let compiled = compile(&inputs).map_err(|e| format!("{path}: {e}"))?;
        let timings = Timings { read: Duration::ZERO, discover: discovered_in, compile: started.elapsed() };
        for d in &compiled.dropped {
            tracing::warn!(server = %d.server, kind = d.kind, name = %d.name, reason = %d.reason, "left out of the lists");
        }
        for status in &mut servers {
            status.dropped = compiled.dropped.iter().filter(|d| d.server == status.summary.name).cloned().collect();
            status.hidden_tools = compiled.hidden_tools.get(&status.summary.name).cloned().unwrap_or_default();
            status.changed_tools = review.changes.get(&status.summary.name).cloned().unwrap_or_default();
        }
        Ok(Built { loaded, offers, servers, compiled, pending, timings, pins })
    }

    /// Makes a build the configuration served: one value swapped, with the
    /// snapshot Envoy gets; then the processes follow it. Returns the
    /// version served.
    fn swap(&self, built: Built) -> String {
        let Built { loaded, offers, servers, compiled, pending, timings, .. } = built;
        pins::log_new_changes(self.published().as_deref().map(|p| p.servers.as_slice()), &servers);
        let Loaded { catalog, tls_files, tls_digest, secret_files, mut reach, sealer, .. } = loaded;
        // Tokens for the servers with `oauth` it names: a new one is got,
        // and a reload follows (through `changes`) that serves it.
        self.inner.credentials.sync(&catalog, &reach);
        reach.tokens = self.inner.credentials.handles();
        let g = &catalog.gateway;
        if let Some(set) = &self.inner.settings.set_log_level {
            set(g.log_level.as_str());
            if let Ok(mut r) = self.inner.reloads.write() {
                r.log_level = Some(g.log_level.clone());
            }
        }
        let version = compiled.snapshot.version.clone();
        let tool_count = compiled.filter_config.tools.len();
        let served = Served { sealer, servers: catalog.servers.iter().map(|server| Upstream::of(server, &reach)).collect() };
        let published = Arc::new(Published {
            version: version.clone(),
            global_limits: Arc::new(GlobalLimits {
                redis_url: g.global_rate_limits.as_ref().map(|r| r.redis_url.clone()),
                limits: g.rate_limits.iter().filter(|l| l.global).map(|l| (l.name.clone(), l.clone())).collect(),
            }),
            admin_keys: g.auth.as_ref().map(|a| a.admin_key_digests()),
            catalog: Arc::new(catalog),
            reach: Arc::new(reach),
            filter_config: Arc::new(compiled.filter_config),
            offers,
            served: Arc::new(served),
            servers,
            tls_files,
            tls_digest,
            secret_files,
        });
        let previous = self.inner.published.send_replace(Some(Arc::clone(&published)));
        // Dropping the last configuration (every tool definition, twice) takes
        // tens of milliseconds at a thousand servers: not on the way to Envoy.
        tokio::task::spawn_blocking(move || drop(previous));
        self.inner.clients.keep_only(&[&published.reach]);
        // The processes follow the catalog published: start what it adds,
        // restart what it changes, stop what it drops.
        self.inner.runtimes.sync(&published.catalog, &published.reach);
        // Those it adds or changes are asked what they offer once they run:
        // an eager one says when it does; an on-demand one is asked now,
        // which starts it.
        for server in published.catalog.servers.iter().filter(|s| pending.contains(&s.name) && s.start == Start::OnDemand) {
            let _ = self.inner.changes.send(server.name.clone());
        }
        if self.inner.cache.current().map(|c| c.version.clone()).as_deref() != Some(version.as_str()) {
            let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
            tracing::info!(
                version = %version,
                servers = published.catalog.servers.len(),
                tools = tool_count,
                read_ms = ms(timings.read),
                discover_ms = ms(timings.discover),
                compile_ms = ms(timings.compile),
                "publishing configuration"
            );
            self.inner.cache.set(compiled.snapshot);
            // Tell clients only once the Envoys run the new configuration,
            // so that a client re-listing on the notification sees it.
            let this = self.clone();
            let config = Arc::clone(&published.filter_config);
            let published = version.clone();
            tokio::spawn(async move {
                // What clients can list, digested while Envoy applies the
                // configuration rather than before it is sent.
                let lists = tokio::task::spawn_blocking(move || Lists::of(&config)).await.unwrap_or_default();
                this.until_acked(&published, Duration::from_secs(10)).await;
                this.inner.lists.send_if_modified(|current| {
                    let changed = *current != lists;
                    *current = lists;
                    changed
                });
            });
        }
        version
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

    fn any_unready(&self) -> bool {
        self.published().is_some_and(|p| p.servers.iter().any(|s| s.summary.state != ServerState::Ready))
    }
}

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
    let mut h = Sha256::new();
    for p in parts {
        h.update(Sha256::digest(p.as_bytes()));
    }
    h.finalize().into()
}

/// Which servers a reload asks again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Discovery {
    All,
    /// Only those without a known answer for their current identity (URL,
    /// credentials, launch command, TLS files).
    Unreachable,
    /// These (whose offer may have changed), and those without a known answer.
    Servers(BTreeSet<String>),
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

/// Servers asked at once. Past a few hundred, more in flight only wait for the
/// CPU and hold sockets on both sides: at 10,000 servers asked at once, the
/// bench server ran out of file descriptors and its last servers never
/// answered (docs/design/benchmarks.md).
const DISCOVERY_CONCURRENCY: usize = 256;

/// Discovers the servers concurrently (all, or those not known), but those
/// `pending` (being started for this catalog): their offer and status.
async fn discover(
    catalog: &Catalog,
    known: &Offers,
    which: Discovery,
    reach: &Reach,
    pending: &BTreeSet<String>,
) -> (Offers, Vec<ServerStatus>) {
    use futures::StreamExt as _;
    let which = &which;
    let asks: Vec<_> = catalog
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| async move {
            let identity = reach.identity(s);
            if pending.contains(&s.name) {
                return (i, identity, None);
            }
            let listing = match known.get(&s.name) {
                Some((known_as, d)) if which.reuses(&s.name) && *known_as == identity => Ok(Arc::clone(d)),
                _ => discovery::discover(&Upstream::of(s, reach), Duration::from_secs(s.discovery_timeout_seconds)).await.map(Arc::new),
            };
            (i, identity, Some(listing))
        })
        .collect();
    // Unordered, so that one server slow to answer holds one slot, not the
    // start of every server after it.
    let mut listings: Vec<_> = futures::stream::iter(asks).buffer_unordered(DISCOVERY_CONCURRENCY).collect().await;
    listings.sort_by_key(|(i, _, _)| *i);
    let listings = listings.into_iter().map(|(_, identity, listing)| (identity, listing));
    let mut offers = BTreeMap::new();
    let mut statuses = Vec::with_capacity(catalog.servers.len());
    for (server, (identity, listing)) in catalog.servers.iter().zip(listings) {
        let mut status = ServerStatus::new(&server.name, ServerState::Starting, server.runtime, server.display_url());
        match listing {
            None => {}
            Some(Ok(list)) => {
                status.summary.state = ServerState::Ready;
                (status.summary.tools, status.prompts, status.resources) = (list.tools.len(), list.prompts.len(), list.resources.len());
                offers.insert(server.name.clone(), (identity, list));
            }
            Some(Err(e)) => {
                tracing::warn!(server = %server.name, url = %server.display_url(), error = %e, "server unreachable; its tools are left out");
                status.summary.state = ServerState::Unreachable;
                status.last_error = Some(e.to_string());
            }
        }
        statuses.push(status);
    }
    (offers, statuses)
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
        max_id_bytes: catalog.gateway.session_id_max_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::{discover, Discovery};
    use crate::catalog::load;
    use crate::discovery::Discovered;
    use crate::state::ServerState;
    use std::collections::{BTreeMap, BTreeSet};

    #[tokio::test]
    async fn retries_ask_only_the_servers_that_did_not_answer() {
        // Nothing listens on port 9: a server asked there is unreachable.
        let clients = crate::upstream::Clients::default();
        let reach = |c: &crate::catalog::Catalog| clients.reach(c, "http://127.0.0.1:9", "t", BTreeMap::new()).unwrap();
        let catalog =
            load("servers:\n  - {name: known, url: 'http://127.0.0.1:9/mcp'}\n  - {name: new, url: 'http://127.0.0.1:9/new'}\n", |_| None)
                .unwrap();
        let offer = Discovered { tools: vec![serde_json::json!({"name": "t"})], ..Default::default() };
        let known = BTreeMap::from([("known".to_string(), (catalog.servers[0].identity(), std::sync::Arc::new(offer.clone())))]);
        let none = BTreeSet::new();
        let (found, status) = discover(&catalog, &known, Discovery::Unreachable, &reach(&catalog), &none).await;
        assert_eq!(found.get("known").map(|(_, d)| d.as_ref()), Some(&offer), "reused, not asked again");
        assert_eq!((status[0].summary.state, status[1].summary.state), (ServerState::Ready, ServerState::Unreachable));
        let (found, _) = discover(&catalog, &known, Discovery::All, &reach(&catalog), &none).await;
        assert!(found.is_empty(), "a full reload asks everyone");
        let moved = load("servers:\n  - {name: known, url: 'http://127.0.0.1:9/moved'}\n", |_| None).unwrap();
        let (found, _) = discover(&moved, &known, Discovery::Unreachable, &reach(&moved), &none).await;
        assert!(found.is_empty(), "a server whose URL changed is asked again");
        let rekeyed = load("servers:\n  - {name: known, url: 'http://127.0.0.1:9/mcp', headers: {x-api-key: k2}}\n", |_| None).unwrap();
        let (found, _) = discover(&rekeyed, &known, Discovery::Unreachable, &reach(&rekeyed), &none).await;
        assert!(found.is_empty(), "a server given other credentials is asked again");
    }

    #[tokio::test]
    async fn a_server_being_started_for_the_catalog_is_not_asked_yet() {
        let clients = crate::upstream::Clients::default();
        let catalog = load("servers:\n  - {name: t, runtime: stdio, command: uvx}\n", |_| None).unwrap();
        let reach = clients.reach(&catalog, "http://127.0.0.1:9", "t", BTreeMap::new()).unwrap();
        let pending = BTreeSet::from(["t".to_string()]);
        let (found, status) = discover(&catalog, &BTreeMap::new(), Discovery::All, &reach, &pending).await;
        assert!(found.is_empty());
        assert_eq!((status[0].summary.state, status[0].last_error.as_deref()), (ServerState::Starting, None));
    }
}
