//! Token buckets, as pure functions of a bucket's stored state and the time.
//!
//! The glue keeps the buckets in Envoy's shared data, which every worker
//! thread of the Envoy sees, and writes them back with compare-and-swap: a
//! worker that lost the race reads again and retakes. So the limit holds
//! across workers exactly, not per worker.
//!
//! A bucket's key holds what the client chose (a tool name, a resource URI,
//! a principal from a token), and shared data offers no deletion: a key per
//! bucket grew it without bound. So a value longer than [`MAX_PART`] bytes
//! is named by its SHA-256, and buckets live in a fixed ring of [`SLOTS`]
//! shared-data keys, found by a digest of their key, each holding at most
//! [`PER_SLOT`] buckets ([`Slot`]), as `revocation` does for ended sessions.
//! A bucket that has refilled is dropped at the next write to its slot (a
//! missing bucket is a full one: nothing changes); a slot full of buckets
//! still refilling drops the one nearest to full, which is then refilled
//! early. The memory is bounded (about 2.6 MB when every slot is full).
//!
//! Also the JSON-RPC error of a request over a limit ([`rate_limit_error`]),
//! the same whether this Envoy refused it or the control plane's rate limit
//! service did.

use crate::config::{LimitKey, RateLimit};
use crate::error::McpError;
use crate::policy::{any_matches, concerns, Caller};
use sha2::{Digest as _, Sha256};

/// One bucket a request must take a token from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// The shared-data key: the limit's name and the values of its `per`.
    pub key: String,
    /// Index of the limit in the configuration.
    pub limit: usize,
}

/// What a request is, as far as limits care.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub caller: Option<&'a Caller>,
    pub server: Option<&'a str>,
    /// The tool (or prompt, or resource URI) named.
    pub tool: Option<&'a str>,
    /// The virtual server the request came to, if any.
    pub endpoint: Option<&'a str>,
}

/// The buckets of every limit that concerns the request, in configuration order.
pub fn buckets(limits: &[RateLimit], subject: Subject<'_>) -> Vec<Bucket> {
    let principal = subject.caller.map_or("anonymous", |c| c.principal.as_str());
    limits
        .iter()
        .enumerate()
        .filter(|(_, l)| concerns(&l.principals, &l.groups, subject.caller))
        // A limit on servers or tools concerns only requests that name one.
        .filter(|(_, l)| l.servers.is_empty() || subject.server.is_some_and(|s| any_matches(&l.servers, s)))
        .filter(|(_, l)| l.tools.is_empty() || subject.tool.is_some_and(|t| any_matches(&l.tools, t)))
        // A limit on endpoints concerns only requests to one of them.
        .filter(|(_, l)| l.endpoints.is_empty() || subject.endpoint.is_some_and(|e| any_matches(&l.endpoints, e)))
        .filter(|(_, l)| !l.per.contains(&LimitKey::Server) || subject.server.is_some())
        .filter(|(_, l)| !l.per.contains(&LimitKey::Tool) || subject.tool.is_some())
        .map(|(i, l)| {
            // Parts are length-prefixed, so no value can forge another key;
            // a long one is named by its digest, marked `h` (not a length).
            let mut key = format!("mcp-rl/{}:{}", l.name.len(), l.name);
            for part in &l.per {
                let value = match part {
                    LimitKey::Principal => principal,
                    LimitKey::Server => subject.server.unwrap_or_default(),
                    LimitKey::Tool => subject.tool.unwrap_or_default(),
                };
                if value.len() > MAX_PART {
                    key.push_str(&format!("/h:{}", hex(&Sha256::digest(value.as_bytes()))));
                } else {
                    key.push_str(&format!("/{}:{value}", value.len()));
                }
            }
            Bucket { key, limit: i }
        })
        .collect()
}

/// The longest value of a bucket key's part kept as it is.
pub const MAX_PART: usize = 128;
/// Keys of the ring of buckets.
pub const SLOTS: u32 = 4096;
/// Buckets one key holds.
pub const PER_SLOT: usize = 16;
/// A bucket's record: the digest of its key, its [`State`], and when it
/// will be full again.
const ID_LEN: usize = 16;
const RECORD: usize = ID_LEN + 16 + 8;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a bucket is kept: a key of the ring, and the digest that names
/// the bucket among those sharing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub key: String,
    id: [u8; ID_LEN],
}

impl Slot {
    pub fn of(bucket: &Bucket) -> Slot {
        let digest = Sha256::digest(bucket.key.as_bytes());
        let mut id = [0u8; ID_LEN];
        for (slot, byte) in id.iter_mut().zip(digest.iter()) {
            *slot = *byte;
        }
        let ring = digest.iter().skip(ID_LEN).take(4).fold(0u32, |h, b| (h << 8) | u32::from(*b));
        Slot { key: format!("mcp-rl/{}", ring % SLOTS), id }
    }

    /// Takes `cost` tokens from this bucket in the slot's value `stored` at
    /// `now_ms`: the slot's new value, and the outcome (see [`take_n`]).
    pub fn take(&self, limit: &RateLimit, stored: Option<&[u8]>, now_ms: u64, cost: u32) -> (Vec<u8>, Result<(), u64>) {
        let mut state = None;
        let mut kept: Vec<([u8; ID_LEN], State, u64)> = Vec::new();
        for (id, s, full_at) in stored.map(records).into_iter().flatten() {
            if id == self.id {
                state = Some(s);
            } else if full_at > now_ms {
                kept.push((id, s, full_at));
            }
        }
        let (next, outcome) = take_n(limit, state, now_ms, cost);
        // Full of buckets still refilling: those nearest to full make room.
        kept.sort_by_key(|(_, _, full_at)| std::cmp::Reverse(*full_at));
        kept.truncate(PER_SLOT.saturating_sub(1));
        kept.push((self.id, next, full_at(limit, next)));
        let mut out = Vec::with_capacity(kept.len() * RECORD);
        for (id, s, full_at) in kept {
            out.extend_from_slice(&id);
            out.extend_from_slice(&s.encode());
            out.extend_from_slice(&full_at.to_le_bytes());
        }
        (out, outcome)
    }
}

/// The records of a slot's value; a torn or foreign tail is ignored.
fn records(stored: &[u8]) -> impl Iterator<Item = ([u8; ID_LEN], State, u64)> + '_ {
    stored.chunks_exact(RECORD).filter_map(|r| {
        let id: [u8; ID_LEN] = r.get(..ID_LEN)?.try_into().ok()?;
        let state = State::decode(r.get(ID_LEN..ID_LEN + 16)?)?;
        let full_at: [u8; 8] = r.get(ID_LEN + 16..)?.try_into().ok()?;
        Some((id, state, u64::from_le_bytes(full_at)))
    })
}

/// When a bucket in `state` is full again (forgetting it then changes nothing).
fn full_at(limit: &RateLimit, state: State) -> u64 {
    let capacity = u64::from(limit.burst.max(1)) * MICRO;
    let missing = capacity.saturating_sub(state.micro_tokens);
    let per_minute = u64::from(limit.requests_per_minute);
    if missing == 0 {
        return state.at_ms;
    }
    if per_minute == 0 {
        return u64::MAX;
    }
    state.at_ms.saturating_add(missing.saturating_mul(60_000).div_ceil(per_minute * MICRO))
}

/// A bucket's state: tokens in millionths, and when it was last refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub micro_tokens: u64,
    pub at_ms: u64,
}

impl State {
    pub fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (slot, byte) in out.iter_mut().zip(self.micro_tokens.to_le_bytes().into_iter().chain(self.at_ms.to_le_bytes())) {
            *slot = byte;
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<State> {
        let tokens: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        let at: [u8; 8] = bytes.get(8..16)?.try_into().ok()?;
        Some(State { micro_tokens: u64::from_le_bytes(tokens), at_ms: u64::from_le_bytes(at) })
    }
}

const MICRO: u64 = 1_000_000;

/// Takes one token at `now_ms` from a bucket in `state` (`None`: a new,
/// full bucket). Returns the state to store, and `Err(retry_after_ms)` when
/// the bucket is empty (the state then only records the refill).
pub fn take(limit: &RateLimit, state: Option<State>, now_ms: u64) -> (State, Result<(), u64>) {
    take_n(limit, state, now_ms, 1)
}

/// Takes `cost` tokens at once, as [`take`] takes one: a request that the
/// gateway turns into several upstream requests costs what it sends. A
/// cost beyond the burst takes the whole burst (it could never be paid
/// otherwise), so it waits for a full bucket.
pub fn take_n(limit: &RateLimit, state: Option<State>, now_ms: u64, cost: u32) -> (State, Result<(), u64>) {
    let capacity = u64::from(limit.burst.max(1)) * MICRO;
    let cost = u64::from(cost.clamp(1, limit.burst.max(1))) * MICRO;
    let per_minute = u64::from(limit.requests_per_minute);
    let State { micro_tokens, at_ms } = state.unwrap_or(State { micro_tokens: capacity, at_ms: now_ms });
    // A clock that went back refills nothing.
    let elapsed = now_ms.saturating_sub(at_ms);
    // Tokens per ms, in millionths: per_minute * MICRO / 60_000.
    let refill = elapsed.saturating_mul(per_minute).saturating_mul(MICRO) / 60_000;
    let tokens = micro_tokens.saturating_add(refill).min(capacity);
    let at = at_ms.max(now_ms);
    if tokens >= cost {
        return (State { micro_tokens: tokens - cost, at_ms: at }, Ok(()));
    }
    let retry_ms = if per_minute == 0 { u64::MAX } else { (cost - tokens).saturating_mul(60_000).div_ceil(per_minute * MICRO) };
    (State { micro_tokens: tokens, at_ms: at }, Err(retry_ms))
}

/// The JSON-RPC error object of a request over `limit`: the same whether
/// this Envoy refused it or the control plane's rate limit service did.
pub fn rate_limit_error(limit: &RateLimit, retry_after_secs: u64) -> String {
    let e =
        McpError::RateLimited { limit: limit.name.clone(), per_minute: limit.requests_per_minute, burst: limit.burst, retry_after_secs };
    let (code, _) = e.code_and_status();
    serde_json::json!({
        "code": code,
        "message": e.to_string(),
        "data": {
            "limit": limit.name,
            "requestsPerMinute": limit.requests_per_minute,
            "burst": limit.burst,
            "retryAfterSeconds": retry_after_secs,
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_minute: u32, burst: u32) -> RateLimit {
        RateLimit {
            name: "l".into(),
            per: vec![LimitKey::Principal],
            principals: vec![],
            groups: vec![],
            servers: vec![],
            tools: vec![],
            endpoints: vec![],
            requests_per_minute: per_minute,
            burst,
            global: false,
        }
    }

    #[test]
    fn a_fan_out_costs_what_it_sends_up_to_the_burst() {
        let l = limit(60, 5);
        let (s, r) = take_n(&l, None, 1_000, 3);
        assert_eq!((s.micro_tokens, r), (2 * MICRO, Ok(())));
        // Three more cannot be paid with two left: retry once one refilled (1 s at 60/min).
        let (s, r) = take_n(&l, Some(s), 1_000, 3);
        assert_eq!((s.micro_tokens, r), (2 * MICRO, Err(1_000)));
        // A cost past the burst takes the whole burst.
        let (s, r) = take_n(&l, None, 1_000, 50);
        assert_eq!((s.micro_tokens, r), (0, Ok(())));
        assert_eq!(take_n(&l, Some(s), 1_000, 0).1, Err(1_000), "a request costs at least one token");
    }

    #[test]
    fn burst_then_the_rate() {
        let l = limit(600, 5); // 10 per second
        let mut state = None;
        for _ in 0..5 {
            let (s, r) = take(&l, state, 1_000);
            assert_eq!(r, Ok(()));
            state = Some(s);
        }
        let (s, r) = take(&l, state, 1_000);
        assert_eq!(r, Err(100));
        state = Some(s);
        // 100 ms later, one token.
        let (s, r) = take(&l, state, 1_100);
        assert_eq!(r, Ok(()));
        let (_, r) = take(&l, Some(s), 1_150);
        assert_eq!(r, Err(50));
    }

    #[test]
    fn over_ten_seconds_the_count_is_the_rate_plus_the_burst() {
        let l = limit(600, 10);
        let (mut state, mut allowed) = (None, 0);
        // A request every ms for 10 s.
        for now in 0..10_000u64 {
            let (s, r) = take(&l, state, now);
            state = Some(s);
            allowed += u32::from(r.is_ok());
        }
        // 10 at once, then 10 per second for the 9.999 s that follow.
        assert_eq!(allowed, 10 + 99);
    }

    #[test]
    fn clock_going_back_and_bad_state() {
        let l = limit(60, 1);
        let (s, r) = take(&l, None, 5_000);
        assert!(r.is_ok());
        let (s2, r) = take(&l, Some(s), 1_000);
        assert_eq!(r, Err(1_000));
        assert_eq!(s2.at_ms, 5_000);
        assert_eq!(State::decode(&s2.encode()), Some(s2));
        assert_eq!(State::decode(b"short"), None);
        let (_, r) = take(&limit(0, 1), Some(s2), 9_000_000);
        assert_eq!(r, Err(u64::MAX));
    }

    #[test]
    fn buckets_by_subject() {
        let alice = Caller { principal: "alice".into(), groups: vec!["ops".into()], scopes: vec![] };
        let mut tool_limit = limit(60, 1);
        tool_limit.name = "slow".into();
        tool_limit.per = vec![LimitKey::Principal, LimitKey::Tool];
        tool_limit.tools = vec!["time__*".into()];
        let limits = vec![limit(600, 10), tool_limit];
        let call = Subject { caller: Some(&alice), server: Some("time"), tool: Some("time__now"), endpoint: None };
        let got = buckets(&limits, call);
        assert_eq!(got.iter().map(|b| b.key.as_str()).collect::<Vec<_>>(), ["mcp-rl/1:l/5:alice", "mcp-rl/4:slow/5:alice/9:time__now"]);
        let list = Subject { caller: Some(&alice), server: None, tool: None, endpoint: None };
        assert_eq!(buckets(&limits, list).len(), 1);
        let anon = Subject { caller: None, server: None, tool: None, endpoint: None };
        assert_eq!(buckets(&limits, anon)[0].key, "mcp-rl/1:l/9:anonymous");
    }

    #[test]
    fn long_values_are_named_by_their_digest() {
        let mut per_tool = limit(60, 1);
        per_tool.per = vec![LimitKey::Tool];
        let uri = format!("file:///{}", "a".repeat(60_000));
        let got = buckets(&[per_tool.clone()], Subject { caller: None, server: Some("s"), tool: Some(&uri), endpoint: None });
        assert_eq!(got[0].key.len(), "mcp-rl/1:l/h:".len() + 64, "{}", got[0].key);
        let other = format!("file:///{}", "b".repeat(60_000));
        let got2 = buckets(&[per_tool.clone()], Subject { caller: None, server: Some("s"), tool: Some(&other), endpoint: None });
        assert_ne!(got[0].key, got2[0].key);
        // A short value that looks like a digest is still its own key.
        let short = buckets(&[per_tool], Subject { caller: None, server: None, tool: Some("h:x"), endpoint: None });
        assert_eq!(short[0].key, "mcp-rl/1:l/3:h:x");
    }

    #[test]
    fn a_limit_on_endpoints_concerns_only_their_requests() {
        let mut on_support = limit(60, 5);
        on_support.endpoints = vec!["supp*".into()];
        let at = |endpoint| buckets(&[on_support.clone()], Subject { caller: None, server: None, tool: None, endpoint });
        assert_eq!(at(Some("support")).len(), 1);
        assert!(at(Some("ops")).is_empty());
        assert!(at(None).is_empty(), "the gateway's own endpoint is none of them");
    }

    fn bucket(n: usize) -> Bucket {
        Bucket { key: format!("mcp-rl/1:l/{n}"), limit: 0 }
    }

    #[test]
    fn a_slot_holds_several_buckets_and_stays_bounded() {
        let l = limit(60, 2); // one token a second
        let slot = |n: usize| Slot { key: "k".into(), id: Slot::of(&bucket(n)).id };
        // Bucket 0 is drained; forty others take one token each, later.
        let (mut stored, _) = slot(0).take(&l, None, 1_000, 1);
        let (s, r) = slot(0).take(&l, Some(&stored), 1_000, 1);
        assert!(r.is_ok());
        stored = s;
        for n in 1..=40 {
            let (s, r) = slot(n).take(&l, Some(&stored), 1_500, 1);
            assert!(r.is_ok());
            stored = s;
        }
        assert_eq!(stored.len(), PER_SLOT * RECORD, "bounded");
        // The drained bucket, furthest from full, was kept: still empty.
        assert_eq!(slot(0).take(&l, Some(&stored), 1_600, 1).1, Err(400));
        // The steady bucket's limit holds; a bucket evicted is a full one.
        let (_, r) = slot(1).take(&l, Some(&stored), 1_600, 1);
        assert!(r.is_ok());
        // Later, refilled buckets are dropped at the next write.
        let (later, _) = slot(0).take(&l, Some(&stored), 100_000, 1);
        assert_eq!(later.len(), RECORD);
        assert_eq!(records(b"torn").count(), 0);
    }

    #[test]
    fn the_ring_spreads_buckets_over_its_keys() {
        let keys: std::collections::BTreeSet<String> = (0..2000).map(|n| Slot::of(&bucket(n)).key).collect();
        assert!(keys.len() > 1000 && keys.iter().all(|k| k.starts_with("mcp-rl/")), "{}", keys.len());
        assert_eq!(Slot::of(&bucket(7)), Slot::of(&bucket(7)));
    }
}
