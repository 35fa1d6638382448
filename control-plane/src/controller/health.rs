//! Health checks of the HTTP servers: a `ping` every `health_every` in a
//! session the control plane keeps with each (`server/discover` for a server
//! of the 2026-07-28 revision only). A server that fails `threshold` checks
//! in a row is reported on the [`Changes`](crate::state::Changes) channel,
//! which asks it again what it offers.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Controller;
use crate::catalog::Runtime;
use crate::discovery::Session;
use crate::state::ServerState;
use crate::upstream::Upstream;

impl Controller {
    /// Pings every HTTP server that is up, each in a session the control
    /// plane keeps with it. One that fails `threshold` checks in a row is
    /// asked again what it offers; if that fails too, it is marked
    /// unreachable and its tools, prompts and resources leave the lists
    /// (clients are told) until a retry finds it again. Servers the control
    /// plane runs (stdio) or connects to (SSE) are watched by their
    /// supervisor instead: a ping would keep an on-demand one awake.
    pub(super) async fn check_health(self, every: Duration, threshold: u32) {
        let mut sessions: BTreeMap<String, Session> = BTreeMap::new();
        let mut failures: BTreeMap<String, u32> = BTreeMap::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(published) = self.published() else { continue };
            let up: Vec<&Upstream> = published
                .servers
                .iter()
                .filter(|s| s.runtime == Runtime::Http && s.summary.state == ServerState::Ready)
                .filter_map(|s| published.served.server(&s.summary.name))
                .collect();
            // A session belongs to a server at one URL with one set of
            // credentials and one TLS setting.
            sessions.retain(|name, session| up.iter().any(|u| &u.name == name && session.serves(u)));
            failures.retain(|name, _| up.iter().any(|u| &u.name == name));
            let checks = up.iter().map(|u| {
                let mut session = sessions.remove(&u.name).unwrap_or_else(|| Session::for_upstream(u));
                let modern = published.offers.get(&u.name).is_some_and(|(_, d)| d.modern_only);
                async move {
                    let limit = every.min(Duration::from_secs(10));
                    let outcome = tokio::time::timeout(limit, session.check(modern)).await;
                    (u.name.clone(), session, outcome.unwrap_or(Err(crate::discovery::Error::Timeout(limit.as_secs()))))
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
                            let _ = self.inner.changes.send(name);
                        }
                    }
                }
            }
        }
    }
}
