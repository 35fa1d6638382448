//! What a request takes from the rate limits, decided on its body or its
//! headers alone, and the answer when a bucket is empty. The buckets
//! themselves (shared across workers) are the glue's; `ratelimit` has the
//! arithmetic.

use super::Gateway;
use crate::decision::{Audit, BodyAction, Cause, HeadAction, Now, Refusal, Reply, RequestHead};
use crate::error::McpError;
use crate::policy::Caller;
use crate::ratelimit::{self, rate_limit_error, Bucket, Subject};

impl Gateway {
    /// The token buckets this request must take a token from in this Envoy.
    /// (Global limits' buckets are named to Envoy's `ratelimit` filter in
    /// the request's [`HeaderEdits`].)
    pub fn buckets(&self, head: &RequestHead, audit: &Audit) -> Vec<Bucket> {
        self.limit_buckets(head, audit, false).collect()
    }

    /// The buckets of the local (`global` false) or global limits that
    /// concern the request.
    pub(super) fn limit_buckets(&self, head: &RequestHead, audit: &Audit, global: bool) -> impl Iterator<Item = Bucket> + '_ {
        let limits = &self.config.rate_limits;
        let concerned = if limits.iter().any(|l| l.global == global) {
            let endpoint = self.view_name(head);
            let subject =
                Subject { caller: head.caller.as_ref(), server: audit.server.as_deref(), tool: audit.target.as_deref(), endpoint };
            ratelimit::buckets(limits, subject)
        } else {
            Vec::new()
        };
        concerned.into_iter().filter(move |b| limits.get(b.limit).is_some_and(|l| l.global == global))
    }

    /// How many tokens a decided request takes from each of its buckets:
    /// what it makes the gateway send upstream, and at least one (answers
    /// the filter gives itself cost one). An `initialize` sends each server
    /// it opens a session with two requests, as does a call that opens its
    /// server's session first; a call through the era bridge, four
    /// (initialize, initialized, the call, DELETE).
    pub fn cost(action: &BodyAction) -> u32 {
        let sent = match action {
            BodyAction::Reply(_) => 1,
            BodyAction::Forward(f) if f.bridge => 4,
            // initialize, initialized, then the request.
            BodyAction::Forward(f) if f.open_first => 3,
            BodyAction::Forward(_) => 1,
            BodyAction::FanOut(_, callouts) => callouts.len(),
            BodyAction::Initialize(plan) => 2 * plan.callouts.len(),
        };
        u32::try_from(sent).unwrap_or(u32::MAX).max(1)
    }

    /// What a request decided on its headers alone takes from the rate
    /// limits, if anything: its audit, buckets and cost. A GET stream costs
    /// the upstream streams it opens, a DELETE the upstream sessions it
    /// ends. A request refused for its credentials has no caller: it takes
    /// from the limits that concern every caller, in a bucket of its source
    /// address, so that guessing keys is limited like calling.
    pub fn head_charge(&self, head: &RequestHead, action: &HeadAction, now: Now) -> Option<(Audit, Vec<Bucket>, u32)> {
        if !self.needs_source() {
            return None;
        }
        let audit = Audit { method: head.method.clone(), ..Audit::default() };
        let upstreams = || {
            let s = self.handshake.open(&self.config, head, now).ok();
            s.map_or(0, |s| s.upstreams.values().filter(|u| u.id.is_some()).count())
        };
        let (caller, cost) = match action {
            HeadAction::OpenStream | HeadAction::EndSession => (head.caller.clone(), upstreams()),
            HeadAction::Refuse(Refusal { cause: Cause::Unauthenticated(_), .. }) => {
                let source = head.source.as_deref().unwrap_or("unknown");
                (Some(Caller { principal: format!("unauthenticated@{source}"), ..Caller::default() }), 1)
            }
            _ => return None,
        };
        let subject = Subject { caller: caller.as_ref(), server: None, tool: None, endpoint: self.view_name(head) };
        let limits = &self.config.rate_limits;
        let buckets = ratelimit::buckets(limits, subject).into_iter().filter(|b| limits.get(b.limit).is_some_and(|l| !l.global)).collect();
        Some((audit, buckets, u32::try_from(cost).unwrap_or(u32::MAX).max(1)))
    }

    /// Whether there is a local limit, and so a request's source address
    /// matters: it keys the local limits of callers refused for their
    /// credentials (`head_charge`). Without one the glue need not read it.
    pub fn needs_source(&self) -> bool {
        self.config.rate_limits.iter().any(|l| !l.global)
    }

    /// The answer to a request a bucket had no token for.
    pub fn rate_limited(&self, audit: &Audit, bucket: &Bucket, retry_after_ms: u64) -> Refusal {
        let Some(limit) = self.config.rate_limits.get(bucket.limit) else {
            let reply = Reply::error(None, &McpError::Internal("rate limit out of step".into()));
            return Refusal { reply, reason: "rate limit \"\"".into(), cause: Cause::RateLimited(String::new()) };
        };
        let retry_after_secs = retry_after_ms.div_ceil(1000).max(1);
        let error = rate_limit_error(limit, retry_after_secs);
        let id = audit.id.as_deref().unwrap_or("null");
        let mut reply = Reply::json(429, format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#).into_bytes());
        reply.headers.push(("retry-after", retry_after_secs.to_string()));
        Refusal { reply, reason: format!("rate limit {:?}", limit.name), cause: Cause::RateLimited(limit.name.clone()) }
    }
}
