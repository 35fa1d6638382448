//! What the glue keeps in Envoy's shared data, which every worker of one
//! Envoy sees: rate-limit buckets, ended sessions, and upstream sessions
//! opened on first use. Each is read, decided on by the core, and written
//! back with compare-and-swap, read again when another worker wrote first.

use std::time::UNIX_EPOCH;

use proxy_wasm::traits::Context;
use proxy_wasm::types::Status;

use super::Request;
use crate::decision::{Opened, OpenedSessions};
use crate::gateway::Gateway;
use crate::opened;
use crate::ratelimit::{self, Bucket};
use crate::revocation::Slot;
use crate::session::UpstreamSession;

impl Request {
    /// Takes a token from each bucket, in Envoy's shared data (a ring of
    /// keys, each holding several buckets): read, decide,
    /// write back only if nobody wrote in between (compare-and-swap), else
    /// read again. Returns the first bucket found empty, with when to retry.
    pub(super) fn take_tokens<'b>(&self, gw: &Gateway, buckets: &'b [Bucket], cost: u32) -> Option<(&'b Bucket, u64)> {
        let now_ms = self.get_current_time().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        for bucket in buckets {
            let Some(limit) = gw.config().rate_limits.get(bucket.limit) else { continue };
            // The bucket's place in the ring of shared-data keys (`ratelimit::Slot`).
            let slot = ratelimit::Slot::of(bucket);
            for _attempt in 0..64 {
                let (stored, cas) = self.get_shared_data(&slot.key);
                let (next, outcome) = slot.take(limit, stored.as_deref(), now_ms, cost);
                if let Err(retry_ms) = outcome {
                    return Some((bucket, retry_ms));
                }
                match self.set_shared_data(&slot.key, Some(&next), cas) {
                    Ok(()) => break,
                    Err(Status::CasMismatch) => continue,
                    Err(status) => {
                        // Shared data unusable: let the request through rather
                        // than refuse everyone.
                        log::warn!("mcp filter: rate limit {} not enforced: {status:?}", bucket.key);
                        break;
                    }
                }
            }
        }
        None
    }

    /// Records a session as ended until `until`, in Envoy's shared data
    /// (`revocation.rs`), with compare-and-swap as for rate limits.
    pub(super) fn record_ended(&self, slot: &Slot, until: u64) {
        let now = self.now().unix_secs;
        for _attempt in 0..64 {
            let (stored, cas) = self.get_shared_data(&slot.key);
            let next = slot.with_ended(stored.as_deref(), until, now);
            match self.set_shared_data(&slot.key, Some(&next), cas) {
                Ok(()) => return,
                Err(Status::CasMismatch) => continue,
                Err(status) => {
                    log::warn!("mcp filter: an ended session could not be recorded ({status:?}); its id opens until it expires");
                    return;
                }
            }
        }
    }

    /// Records an upstream session opened outside the client's id, in
    /// Envoy's shared data (`opened.rs`), with compare-and-swap.
    pub(super) fn record_opened(&self, o: &Opened) {
        let now = self.now().unix_secs;
        for _attempt in 0..64 {
            let (stored, cas) = self.get_shared_data(&o.slot.key);
            let next = o.slot.with_opened(stored.as_deref(), &o.session, o.expires, now);
            match self.set_shared_data(&o.slot.key, Some(&next), cas) {
                Ok(()) => return,
                Err(Status::CasMismatch) => continue,
                Err(status) => {
                    log::warn!("mcp filter: an upstream session could not be kept ({status:?}); the next call opens another");
                    return;
                }
            }
        }
    }
}

/// Envoy's shared data, as the core reads the upstream sessions this Envoy
/// opened on first use (`opened.rs`).
pub(super) struct SharedOpened<'a> {
    pub request: &'a Request,
    pub now: u64,
}

impl OpenedSessions for SharedOpened<'_> {
    fn find(&self, token: &str, server: &str) -> Option<UpstreamSession> {
        let slot = opened::Slot::of(token, server)?;
        let stored = self.request.get_shared_data(&slot.key).0?;
        slot.find(&stored, self.now)
    }
}
