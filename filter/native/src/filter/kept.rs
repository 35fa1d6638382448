//! What the filter keeps across workers (`shared.rs`, the process's map):
//! rate-limit buckets, ended sessions, upstream sessions opened on first
//! use. Each is read, decided on by the core, and written back with
//! compare-and-swap, as the wasm glue does with Envoy's shared data
//! (`filter/src/glue/shared.rs`), and with the same bound on retries.

use std::time::{SystemTime, UNIX_EPOCH};

use mcp_filter::decision::{Opened, OpenedSessions};
use mcp_filter::gateway::Gateway;
use mcp_filter::opened;
use mcp_filter::ratelimit::{self, Bucket};
use mcp_filter::revocation::Slot;
use mcp_filter::session::UpstreamSession;

use crate::host;
use crate::shared::{process, update};

/// Compare-and-swap attempts before giving up, as in the wasm glue.
const ATTEMPTS: usize = 64;

/// Takes a token from each bucket; returns the first bucket found empty,
/// with when to retry.
pub(super) fn take_tokens<'b>(gw: &Gateway, buckets: &'b [Bucket], cost: u32) -> Option<(&'b Bucket, u64)> {
    let now_ms = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX);
    for bucket in buckets {
        let Some(limit) = gw.config().rate_limits.get(bucket.limit) else { continue };
        let slot = ratelimit::Slot::of(bucket);
        let mut refused = None;
        update(process(), &slot.key, ATTEMPTS, |stored| {
            let (next, outcome) = slot.take(limit, stored, now_ms, cost);
            match outcome {
                Ok(_) => Some(next),
                Err(retry_ms) => {
                    refused = Some(retry_ms);
                    None
                }
            }
        });
        if let Some(retry_ms) = refused {
            return Some((bucket, retry_ms));
        }
    }
    None
}

/// Records a session as ended until `until` (`revocation.rs`).
pub(super) fn record_ended(slot: &Slot, until: u64, now: u64) {
    if !update(process(), &slot.key, ATTEMPTS, |stored| Some(slot.with_ended(stored, until, now))) {
        host::warn("mcp filter: an ended session could not be recorded; its id opens until it expires");
    }
}

/// Records an upstream session opened outside the client's id (`opened.rs`).
pub(super) fn record_opened(o: &Opened, now: u64) {
    if !update(process(), &o.slot.key, ATTEMPTS, |stored| Some(o.slot.with_opened(stored, &o.session, o.expires, now))) {
        host::warn("mcp filter: an upstream session could not be kept; the next call opens another");
    }
}

/// The process's map, as the core reads the upstream sessions opened on first use.
pub(super) struct SharedOpened {
    pub now: u64,
}

impl OpenedSessions for SharedOpened {
    fn find(&self, token: &str, server: &str) -> Option<UpstreamSession> {
        let slot = opened::Slot::of(token, server)?;
        let (stored, _) = process().get(&slot.key)?;
        slot.find(&stored, self.now)
    }
}

/// Whether a session id was ended by a DELETE (`revocation.rs`).
pub(super) fn ended(slot: &Slot, now: u64) -> bool {
    process().get(&slot.key).is_some_and(|(stored, _)| slot.ended(&stored, now))
}
