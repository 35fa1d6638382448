//! Authorization and rate limits: `glob` against a plain reference matcher,
//! rules with fuzzed patterns deciding for a fuzzed caller, and a token
//! bucket taken from fuzzed stored state.
//!
//! Input: 1 selector byte, NUL-terminated pattern, text, principal, group,
//! then 16 bytes of bucket state and 8 of time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_filter::config::{PolicyRule, Targets};
use mcp_filter::policy::{glob, Caller, Kind};
use mcp_filter::ratelimit::{self, State, Subject};
use mcp_filter_fuzz::{authorization, rate_limits, Fields};

fuzz_target!(|data: &[u8]| {
    let mut input = Fields::new(data);
    let sel = input.byte();
    let (pattern, text, principal, group) = (input.string(), input.string(), input.string(), input.string());
    let rest = input.rest();

    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // The reference is quadratic in memory: keep it to small inputs.
    if p.len() * t.len() <= 1 << 16 {
        assert_eq!(glob(&pattern, &text), reference_glob(&p, &t), "{pattern:?} {text:?}");
    }

    // The fixture's rules and one more with the fuzzed pattern on every kind.
    let mut authz = authorization();
    authz.default_allow = sel & 1 == 1;
    let targets = Targets {
        servers: vec![pattern.clone()],
        tools: vec![pattern.clone()],
        prompts: vec![pattern.clone()],
        resources: vec![pattern.clone()],
    };
    let (allow, deny) = if sel & 2 == 0 { (targets, Targets::default()) } else { (Targets::default(), targets) };
    authz.rules.push(PolicyRule { name: "fuzzed".into(), principals: vec![principal.clone()], groups: vec![group.clone()], allow, deny });
    let caller = Caller { principal, groups: vec![group], scopes: vec![] };
    let caller = (sel & 4 == 0).then_some(&caller);
    let set = authz.applicable(caller);
    let kind = [Kind::Tool, Kind::Prompt, Kind::Resource][usize::from(sel >> 3) % 3];
    let ruling = authz.decide(&set, kind, &text, &text);
    // A deny in a rule that applies always wins.
    if sel & 2 != 0 && caller.is_some() && glob(&pattern, &text) {
        assert!(!ruling.allowed, "{ruling:?}");
    }

    let limits = rate_limits();
    let limit = &limits[usize::from(sel >> 5) % limits.len()];
    let _ = ratelimit::buckets(&limits, Subject { caller, server: Some(&text), tool: Some(&text), endpoint: Some(&text) });
    let state = State::decode(rest);
    let now = rest.get(16..24).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    let (after, taken) = ratelimit::take(limit, state, now);
    // Never more than a full bucket, even from a corrupt stored state; a
    // refusal only when less than one token is left, with a wait to retry.
    assert!(after.micro_tokens <= u64::from(limit.burst) * 1_000_000, "{after:?}");
    assert_eq!(after.at_ms, state.map_or(now, |s| s.at_ms.max(now)));
    if let Err(retry_ms) = taken {
        assert!(after.micro_tokens < 1_000_000 && retry_ms > 0, "{after:?} {retry_ms}");
    }
    assert_eq!(State::decode(&after.encode()), Some(after));
});

/// Whether `t` matches `p` (`*` any run, `?` one character), by dynamic
/// programming: slow, and plainly right.
fn reference_glob(p: &[char], t: &[char]) -> bool {
    // row[j]: p[..i] matches t[..j].
    let mut row = vec![false; t.len() + 1];
    row[0] = true;
    for pc in p {
        let mut next = vec![false; t.len() + 1];
        next[0] = row[0] && *pc == '*';
        for j in 1..=t.len() {
            next[j] = match pc {
                '*' => row[j] || next[j - 1],
                '?' => row[j - 1],
                c => row[j - 1] && *c == t[j - 1],
            };
        }
        row = next;
    }
    row[t.len()]
}
