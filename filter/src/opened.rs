//! Upstream sessions this Envoy opened on a client's first call to their
//! server, because the client's session id had no room for them.
//!
//! A session id carries the upstream sessions opened at `initialize` while it
//! stays under `session.max_id_bytes` (`handshake.rs`); a client of a
//! catalog with hundreds of stateful servers would otherwise get an id past
//! every header limit. The others are opened when the client first calls
//! their server, and kept here: in Envoy's shared data, seen by every worker
//! of this Envoy, until the client's session would expire. Another Envoy
//! behind the same load balancer does not see them and opens its own.
//!
//! Shared data offers no listing, expiry or deletion, so, as for ended
//! sessions (`revocation.rs`), the records are spread over a fixed ring of
//! [`SLOTS`] keys, by a hash of the client's session and the server, each key
//! holding at most [`PER_SLOT`] records, pruned of expired ones at every
//! write. A lookup reads one small value. Should a key fill with live
//! records, the one nearest its expiry makes room, and the next call of
//! that client to that server opens a new upstream session. The glue writes
//! with compare-and-swap.

use serde::{Deserialize, Serialize};

use crate::revocation::{fnv1a, nonce};
use crate::session::UpstreamSession;

/// Keys of the ring.
pub const SLOTS: u32 = 4096;
/// Records one key holds.
pub const PER_SLOT: usize = 16;

/// Where the record of one client session's upstream session with one
/// server would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The shared-data key.
    pub key: String,
    /// The client's session: its nonce (`revocation::nonce`).
    session: String,
    server: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The client's session.
    #[serde(rename = "s")]
    session: String,
    /// The server's name.
    #[serde(rename = "n")]
    server: String,
    /// When the client's session expires, seconds since the Unix epoch.
    #[serde(rename = "x")]
    expires: u64,
    #[serde(rename = "u")]
    upstream: UpstreamSession,
}

impl Slot {
    /// The slot of the upstream session that client session `token` holds
    /// with `server`; `None` for what cannot be a session id.
    pub fn of(token: &str, server: &str) -> Option<Slot> {
        let id = nonce(token)?;
        let hash = fnv1a(server.as_bytes(), fnv1a(&id, 0x811c_9dc5));
        Some(Slot { key: format!("mcp-us/{}", hash % SLOTS), session: String::from_utf8_lossy(&id).into_owned(), server: server.into() })
    }

    /// The upstream session the slot's value (`stored`) holds, if it does
    /// and the client's session has not expired.
    pub fn find(&self, stored: &[u8], now_secs: u64) -> Option<UpstreamSession> {
        records(stored).into_iter().find(|r| self.names(r) && r.expires > now_secs).map(|r| r.upstream)
    }

    /// The slot's value with `upstream` recorded until `expires_secs` (in
    /// place of any earlier one of the same client session and server),
    /// expired records dropped, and at most [`PER_SLOT`].
    pub fn with_opened(&self, stored: Option<&[u8]>, upstream: &UpstreamSession, expires_secs: u64, now_secs: u64) -> Vec<u8> {
        let mut kept: Vec<Record> =
            stored.map(records).unwrap_or_default().into_iter().filter(|r| !self.names(r) && r.expires > now_secs).collect();
        // Full of live records: those nearest their expiry make room.
        kept.sort_by_key(|r| std::cmp::Reverse(r.expires));
        kept.truncate(PER_SLOT.saturating_sub(1));
        kept.push(Record { session: self.session.clone(), server: self.server.clone(), expires: expires_secs, upstream: upstream.clone() });
        serde_json::to_vec(&kept).unwrap_or_default()
    }

    fn names(&self, r: &Record) -> bool {
        r.session == self.session && r.server == self.server
    }
}

/// The records of a slot's value; a value that does not parse holds none
/// (the next write starts it over).
fn records(stored: &[u8]) -> Vec<Record> {
    serde_json::from_slice(stored).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: usize) -> String {
        format!("k1.{:0>32}rest-of-the-sealed-state", n)
    }

    fn upstream(id: &str) -> UpstreamSession {
        UpstreamSession { id: Some(id.into()), version: Some("2025-06-18".into()), error: None }
    }

    #[test]
    fn an_opened_session_is_found_until_the_clients_expires() {
        let s = Slot::of(&token(7), "echo").unwrap();
        assert!(s.key.starts_with("mcp-us/"));
        let stored = s.with_opened(None, &upstream("u1"), 1_000, 10);
        assert_eq!(s.find(&stored, 999), Some(upstream("u1")));
        assert_eq!(s.find(&stored, 1_000), None, "expired with the client's session");
        assert_eq!(Slot::of(&token(7), "other").unwrap().find(&stored, 10), None, "another server");
        assert_eq!(Slot::of(&token(8), "echo").unwrap().find(&stored, 10), None, "another session");
        assert_eq!(s.find(b"", 10), None);
        assert_eq!(s.find(b"torn[{", 10), None);
        assert_eq!(Slot::of("no-key-id", "echo"), None);
    }

    #[test]
    fn opening_again_replaces_the_record() {
        let s = Slot::of(&token(3), "echo").unwrap();
        let once = s.with_opened(None, &upstream("u1"), 50, 1);
        let twice = s.with_opened(Some(&once), &upstream("u2"), 50, 2);
        assert_eq!(s.find(&twice, 3), Some(upstream("u2")));
        assert_eq!(records(&twice).len(), 1);
    }

    #[test]
    fn a_slot_stays_bounded_and_drops_the_expired_first() {
        let slots: Vec<Slot> = (0..40).map(|n| Slot { key: "k".into(), ..Slot::of(&token(n), "echo").unwrap() }).collect();
        let mut stored = Vec::new();
        for (n, s) in slots.iter().enumerate() {
            let expires = if n == 0 { 5 } else { 100 + n as u64 };
            stored = s.with_opened(Some(&stored), &upstream(&format!("u{n}")), expires, 1);
        }
        assert_eq!(records(&stored).len(), PER_SLOT);
        assert_eq!(slots[39].find(&stored, 2), Some(upstream("u39")), "the newest is kept");
        assert_eq!(slots[1].find(&stored, 2), None, "the nearest to expiry made room");
        let later = slots[39].with_opened(Some(&stored), &upstream("u39"), 500, 200);
        assert_eq!(records(&later).len(), 1, "a write drops what expired");
    }

    #[test]
    fn the_records_spread_over_the_ring() {
        let keys: std::collections::HashSet<String> = (0..200).map(|n| Slot::of(&token(0), &format!("s{n}")).unwrap().key).collect();
        assert!(keys.len() > 150, "one session's servers land on many keys: {}", keys.len());
    }
}
