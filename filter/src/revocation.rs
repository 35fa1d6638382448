//! Sessions ended by a DELETE, remembered until they would have expired.
//!
//! A session id is sealed, not stored (`session.rs`): it opens on any Envoy
//! until its TTL runs out, so a DELETE cannot unmake it. What a DELETE does
//! is record the session here, and every request naming a recorded session
//! is answered 404, as the transport requires of an ended session.
//!
//! The record lives in Envoy's shared data, seen by every worker of one
//! Envoy, which offers no listing, no expiry and no deletion. So the records
//! are spread over a fixed ring of [`SLOTS`] keys by a hash of the session,
//! each key holding at most [`PER_SLOT`] records, pruned of expired ones at
//! every write: the memory is bounded (about 2.6 MB when every slot is full)
//! and a lookup reads one small value. Should a slot fill with live records
//! (tens of thousands of sessions ended within one TTL), the one nearest its
//! expiry makes room. The glue writes with compare-and-swap, as it does for
//! rate limits.
//!
//! A session is named by its nonce, the first [`ID_LEN`] characters after
//! the key id: a digest of the sealed state, unique per session, and public
//! in the id anyway.

/// Keys of the ring.
pub const SLOTS: u32 = 4096;
/// Records one key holds.
pub const PER_SLOT: usize = 16;
/// Characters of a session id that name the session: its nonce, 24 bytes
/// in base64url.
pub const ID_LEN: usize = 32;
const RECORD: usize = ID_LEN + 8;

/// Where a session's record would be, and what names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The shared-data key.
    pub key: String,
    id: [u8; ID_LEN],
}

impl Slot {
    /// The slot of the session `token` names; `None` for what cannot be a
    /// session id (it would not open either).
    pub fn of(token: &str) -> Option<Slot> {
        let id = nonce(token)?;
        Some(Slot { key: format!("mcp-rv/{}", fnv1a(&id, 0x811c_9dc5) % SLOTS), id })
    }

    /// Whether `stored` (the slot's value) records this session as ended.
    pub fn ended(&self, stored: &[u8], now_secs: u64) -> bool {
        records(stored).any(|(id, expires)| id == self.id && expires > now_secs)
    }

    /// The slot's value with this session recorded as ended until
    /// `expires_secs`, expired records dropped, and at most [`PER_SLOT`].
    pub fn with_ended(&self, stored: Option<&[u8]>, expires_secs: u64, now_secs: u64) -> Vec<u8> {
        let mut kept: Vec<([u8; ID_LEN], u64)> =
            stored.map(records).into_iter().flatten().filter(|(id, expires)| *id != self.id && *expires > now_secs).collect();
        // Full of live records: those nearest their expiry make room.
        kept.sort_by_key(|(_, expires)| std::cmp::Reverse(*expires));
        kept.truncate(PER_SLOT.saturating_sub(1));
        kept.push((self.id, expires_secs));
        let mut out = Vec::with_capacity(kept.len() * RECORD);
        for (id, expires) in kept {
            out.extend_from_slice(&id);
            out.extend_from_slice(&expires.to_le_bytes());
        }
        out
    }
}

/// What names the session `token` is the id of: its nonce, the first
/// [`ID_LEN`] characters after the key id. `None` for what cannot be a
/// session id (it would not open either).
pub fn nonce(token: &str) -> Option<[u8; ID_LEN]> {
    let (_, sealed) = token.split_once('.')?;
    sealed.as_bytes().get(..ID_LEN)?.try_into().ok()
}

/// FNV-1a of `bytes`, from `hash`: nonces are already digests, any spread
/// will do.
pub fn fnv1a(bytes: &[u8], hash: u32) -> u32 {
    bytes.iter().fold(hash, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// The records of a slot's value; a torn or foreign tail is ignored.
fn records(stored: &[u8]) -> impl Iterator<Item = ([u8; ID_LEN], u64)> + '_ {
    stored.chunks_exact(RECORD).filter_map(|r| {
        let id: [u8; ID_LEN] = r.get(..ID_LEN)?.try_into().ok()?;
        let expires: [u8; 8] = r.get(ID_LEN..)?.try_into().ok()?;
        Some((id, u64::from_le_bytes(expires)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: usize) -> String {
        format!("k1.{:0>32}rest-of-the-sealed-state", n)
    }

    #[test]
    fn an_ended_session_is_found_until_it_would_have_expired() {
        let s = Slot::of(&token(7)).unwrap();
        assert!(s.key.starts_with("mcp-rv/"));
        let stored = s.with_ended(None, 1_000, 10);
        assert!(s.ended(&stored, 999));
        assert!(!s.ended(&stored, 1_000), "expired: the session id would not open anyway");
        let other = Slot::of(&token(8)).unwrap();
        assert!(!other.ended(&stored, 10));
        assert!(!s.ended(&[], 10) && !s.ended(b"torn", 10));
    }

    #[test]
    fn what_is_not_a_session_id_has_no_slot() {
        assert_eq!(Slot::of("no-key-id"), None);
        assert_eq!(Slot::of("k1.short"), None);
        assert_eq!(Slot::of(&token(1)), Slot::of(&format!("{}-tail-differs", token(1))), "the nonce names the session");
    }

    #[test]
    fn a_slot_stays_bounded_and_drops_the_expired_first() {
        let slots: Vec<Slot> = (0..40).map(|n| Slot { key: "k".into(), id: Slot::of(&token(n)).unwrap().id }).collect();
        let mut stored = Vec::new();
        for (n, s) in slots.iter().enumerate() {
            // Session 0 expires at 5, the others later, in order.
            let expires = if n == 0 { 5 } else { 100 + n as u64 };
            stored = s.with_ended(Some(&stored), expires, 1);
        }
        assert_eq!(stored.len(), PER_SLOT * RECORD);
        assert!(slots[39].ended(&stored, 2), "the newest is kept");
        assert!(!slots[0].ended(&stored, 2) && !slots[1].ended(&stored, 2), "the nearest to expiry made room");
        assert!(slots[30].ended(&stored, 2));
        // Time passes: a write drops what expired.
        let later = slots[39].with_ended(Some(&stored), 500, 200);
        assert_eq!(later.len(), RECORD);
    }

    #[test]
    fn ending_a_session_twice_keeps_one_record() {
        let s = Slot::of(&token(3)).unwrap();
        let once = s.with_ended(None, 50, 1);
        assert_eq!(s.with_ended(Some(&once), 50, 2), once);
    }
}
