//! Servers that take each caller's own identity (`oauth.grant:
//! token_exchange` in the catalog): a request to one carries a token the
//! caller's JWT was exchanged for (RFC 8693), never the JWT itself. The
//! control plane does the exchange (it holds the gateway's client secret);
//! the filter asks it once per caller token and server, and keeps the answer
//! in a bounded per-worker cache until shortly before it expires, or the
//! caller's token does (docs/design/upstream-credentials.md). A cache entry
//! is found only by the digest of the very token presented: two callers
//! never share one.

use std::cell::RefCell;
use std::collections::HashMap;

use super::Gateway;
use crate::config::{FilterConfig, UpstreamServer, EXCHANGE_PATH_PREFIX, INTERNAL_HEADER};
use crate::decision::{Callout, CalloutResponse, Forward, Now, Reply, RequestHead, TokenStep};
use crate::error::McpError;

/// Entries a worker keeps. A full cache drops what expired, then what
/// expires first.
const CAPACITY: usize = 1024;
/// A token is not sent in its last seconds: a request on its way must not
/// arrive with an expired one.
const MARGIN_SECS: u64 = 5;

/// Exchanged tokens, by (digest of the caller's token, server index).
#[derive(Default)]
pub(super) struct ExchangeCache(RefCell<HashMap<([u8; 32], usize), Entry>>);

struct Entry {
    bearer: String,
    valid_until: u64,
}

impl ExchangeCache {
    fn get(&self, key: &([u8; 32], usize), now: u64) -> Option<String> {
        let cache = self.0.try_borrow().ok()?;
        cache.get(key).filter(|e| e.valid_until > now).map(|e| e.bearer.clone())
    }

    fn put(&self, key: ([u8; 32], usize), bearer: String, valid_until: u64, now: u64) {
        let Ok(mut cache) = self.0.try_borrow_mut() else { return };
        if cache.len() >= CAPACITY && !cache.contains_key(&key) {
            cache.retain(|_, e| e.valid_until > now);
            if cache.len() >= CAPACITY {
                if let Some(first) = cache.iter().min_by_key(|(_, e)| e.valid_until).map(|(k, _)| *k) {
                    cache.remove(&first);
                }
            }
        }
        cache.insert(key, Entry { bearer, valid_until });
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

/// The caller's token, when it is a JWT Envoy verified: the only kind
/// that can be exchanged (an API key names nobody the authorization server
/// knows).
fn verified_jwt(head: &RequestHead) -> Option<&str> {
    let token = head.credential.as_deref()?;
    let payload = head.jwt_payload.as_deref()?;
    super::auth::is_payload_of(token, payload).then_some(token)
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// The caller's token's own `exp`, from the payload Envoy verified.
fn caller_expiry(head: &RequestHead) -> Option<u64> {
    use base64::Engine as _;
    let payload = head.jwt_payload.as_deref()?.trim().trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?.get("exp")?.as_u64()
}

/// The control plane's request: exchange this caller's token for `server`.
fn exchange_callout(config: &FilterConfig, server: &UpstreamServer, token: &str) -> Result<Callout, McpError> {
    let cp = config.control_plane.as_ref().ok_or_else(|| McpError::Internal("no control plane to exchange the caller's token".into()))?;
    let mut headers = vec![
        (":method", "POST".to_string()),
        (":path", format!("{EXCHANGE_PATH_PREFIX}{}", server.name)),
        (":authority", cp.authority.clone()),
        ("authorization", format!("Bearer {token}")),
    ];
    headers.extend(cp.headers.iter().filter(|h| h.name == INTERNAL_HEADER).map(|h| (INTERNAL_HEADER, h.value.clone())));
    // Not a server's callout (`usize::MAX`): none of a server's headers go to the control plane.
    Ok(Callout { server: usize::MAX, cluster: cp.cluster.clone(), headers, body: Vec::new() })
}

impl Gateway {
    /// A forward on its way to a server that takes the caller's own
    /// identity gets the caller's exchanged token: from the cache, or
    /// after the control plane's exchange (the callout). Other forwards go
    /// on as they are.
    pub fn upstream_token(&self, head: &RequestHead, f: Forward, now: Now) -> Result<TokenStep, Reply> {
        let Some(server) = self.server(f.server).filter(|s| s.token_exchange) else { return Ok(TokenStep::Ready(f)) };
        let refuse = |e: McpError| Reply::error(Some(&f.request_id), &e);
        if f.bridge {
            return Err(refuse(McpError::CallerToken {
                server: server.name.clone(),
                reason: "the gateway does not yet bridge 2026-07-28 requests to such a server; call it with a handshake-era client".into(),
            }));
        }
        let Some(token) = verified_jwt(head) else {
            return Err(refuse(McpError::CallerToken {
                server: server.name.clone(),
                reason: "it is exchanged from the caller's JWT, and this request carries no verified JWT (an API key cannot be \
                         exchanged)"
                    .into(),
            }));
        };
        if let Some(bearer) = self.exchanged.get(&(digest(token), f.server), now.unix_secs) {
            return Ok(TokenStep::Ready(Forward { upstream_authorization: Some(bearer), ..f }));
        }
        match exchange_callout(&self.config, server, token) {
            Ok(callout) => Ok(TokenStep::Exchange(f, callout)),
            Err(e) => Err(refuse(e)),
        }
    }

    /// The control plane's answer to the exchange: the forward with the
    /// token (now cached), or the client's error naming the server.
    pub fn upstream_token_exchanged(
        &self,
        head: &RequestHead,
        f: Forward,
        response: Option<&CalloutResponse>,
        now: Now,
    ) -> Result<Forward, Reply> {
        let name = self.server(f.server).map(|s| s.name.clone()).unwrap_or_default();
        let refuse = |reason: String| Reply::error(Some(&f.request_id), &McpError::CallerToken { server: name.clone(), reason });
        let Some(r) = response else {
            return Err(refuse("the gateway's control plane did not answer the token exchange".into()));
        };
        #[derive(serde::Deserialize)]
        struct Answer {
            access_token: Option<String>,
            expires_in: Option<u64>,
            error: Option<String>,
        }
        let answer: Option<Answer> = serde_json::from_slice(&r.body).ok();
        let (token, expires_in) = match answer {
            Some(Answer { access_token: Some(t), expires_in: Some(e), .. }) if r.status == 200 => (t, e),
            Some(Answer { error: Some(e), .. }) => return Err(refuse(bounded(&e))),
            _ => return Err(refuse(format!("the token exchange answered HTTP {}", r.status))),
        };
        // It goes into a header: visible ASCII only.
        if token.is_empty() || !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(refuse("the token exchange gave a token a header cannot carry".into()));
        }
        let Some(caller) = verified_jwt(head) else {
            return Err(refuse("the caller's token is no longer the one exchanged".into()));
        };
        let bearer = format!("Bearer {token}");
        let mut valid_until = now.unix_secs.saturating_add(expires_in.saturating_sub(MARGIN_SECS));
        if let Some(exp) = caller_expiry(head) {
            valid_until = valid_until.min(exp);
        }
        self.exchanged.put((digest(caller), f.server), bearer.clone(), valid_until, now.unix_secs);
        Ok(Forward { upstream_authorization: Some(bearer), ..f })
    }
}

/// Text from elsewhere, fit for a client's error: no control characters,
/// at most 300 characters.
fn bounded(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

#[cfg(test)]
mod tests;
