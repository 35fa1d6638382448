//! When the controller reloads: on start; when the catalog file changes (an
//! editor's write or rename, a Kubernetes ConfigMap's swap); when the TLS
//! files or `${file:...}` secrets it names change (polled); every
//! `rediscover_every` (everyone asked again), and sooner while a server is
//! not ready (1 s, 2 s, 4 s, ...); and
//! when something says a server's offer may have changed (the one
//! [`Changes`](crate::state::Changes) channel).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;

use super::{digest_of, read_all, secrets, Controller, Discovery, SecretFile};

/// The directory entry Kubernetes swaps to update a mounted ConfigMap.
const CONFIGMAP_DATA: &str = "..data";

/// How often the TLS files and secret files are checked for a rotation.
/// Polling, not file events: certificate managers, Vault agents and
/// Kubernetes replace files through symlink swaps that directory watches see
/// inconsistently.
const TLS_POLL: Duration = Duration::from_secs(2);

/// Reports arriving this close together make one rediscovery (every
/// client's GET stream carries an upstream's `list_changed`).
const SETTLE: Duration = Duration::from_millis(200);

impl Controller {
    /// Reloads on start, on every change of the catalog file, periodically,
    /// and sooner while a server is not ready.
    pub async fn run(self) -> anyhow::Result<()> {
        if let Some(changed) = self.inner.changed.lock().ok().and_then(|mut c| c.take()) {
            tokio::spawn(self.clone().rediscover_changed(changed));
        }
        if let Some(every) = self.inner.settings.health_every {
            tokio::spawn(self.clone().check_health(every, self.inner.settings.unhealthy_threshold));
        }
        // Each event says whether the catalog was renamed into place (whole
        // at once) or written (maybe in several pieces).
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
        // The secret files as the last poll that reloaded for them found
        // them: a file that stays missing (the reload failed, the last good
        // configuration stays) is not reloaded for again at every poll.
        let mut secrets_seen = None;
        loop {
            // When to ask the servers again, kept across the TLS polls.
            let next = *deadline.get_or_insert_with(|| {
                let wait = if self.any_unready() { retry.min(every) } else { every };
                retry = if self.any_unready() { (retry * 2).min(every) } else { Duration::from_secs(1) };
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
                    } else if let Some(files) = self.secret_files_changed(&mut secrets_seen).await {
                        // The paths only: never what they hold.
                        tracing::info!(?files, "secret files changed; reloading");
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

    /// Asks again the servers whose offer may have changed, as the
    /// [`Changes`](crate::state::Changes) channel names them; reports that
    /// arrive together make one reload.
    async fn rediscover_changed(self, mut changed: mpsc::UnboundedReceiver<String>) {
        while let Some(first) = changed.recv().await {
            tokio::time::sleep(SETTLE).await;
            let mut servers = BTreeSet::from([first]);
            while let Ok(more) = changed.try_recv() {
                servers.insert(more);
            }
            tracing::info!(?servers, "discovering these servers again (their offer may have changed)");
            let _ = self.reload_with(Discovery::Servers(servers)).await;
            if self.any_unready() {
                self.inner.retry_soon.notify_one();
            }
        }
    }

    /// The secret files that hold something else (or are missing, or back)
    /// than at the last good reload, unless the last poll found them so
    /// already (`seen`).
    async fn secret_files_changed(&self, seen: &mut Option<Vec<SecretFile>>) -> Option<Vec<PathBuf>> {
        let published = self.published()?;
        if published.secret_files.is_empty() {
            return None;
        }
        let now = secrets::read_again(&published.secret_files).await;
        if now == published.secret_files {
            *seen = None;
            return None;
        }
        if seen.as_ref() == Some(&now) {
            return None;
        }
        let changed = now.iter().zip(&published.secret_files).filter(|(a, b)| a != b).map(|(a, _)| a.0.clone()).collect();
        *seen = Some(now);
        Some(changed)
    }

    /// Whether the TLS files hold something else than at the last reload.
    async fn tls_files_changed(&self) -> bool {
        let Some(published) = self.published() else { return false };
        let (paths, seen) = (&published.tls_files, published.tls_digest);
        if paths.is_empty() {
            return false;
        }
        // A file caught mid-rotation (missing, half written) is read again
        // at the next poll; the reload then reports it if it stays broken.
        match read_all(paths).await {
            Ok(now) => digest_of(&now) != seen,
            Err(_) => false,
        }
    }
}
