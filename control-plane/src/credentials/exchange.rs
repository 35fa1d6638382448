//! RFC 8693 token exchange for servers that take each caller's own
//! identity (`oauth.grant: token_exchange`). The filter asks for it
//! (`POST /mcp-exchange/<server>`, the caller's JWT as bearer, the internal
//! token as proof it is the filter) when its own per-worker cache has no
//! token for that caller and server. The control plane keeps the answers
//! too, bounded (per server, emptied when the server's settings change),
//! so that the workers and Envoys behind one control plane seldom exchange
//! a caller's token twice. An entry is found only by the digest of the very
//! token presented: two callers never share one, and a token is never kept
//! past its own `exp` or the caller's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::form;
use crate::catalog::OAuthSettings;
use crate::token::{ExchangeCounts, TokenHandle};
use crate::upstream::Http;

/// Entries kept. A full cache drops what expired, then what expires first.
const CAPACITY: usize = 10_000;

/// What exchanging for one server takes.
pub(super) struct Exchanger {
    pub oauth: OAuthSettings,
    pub token_client: Http,
    /// The server's refresh task's handle: the token endpoint it found, and
    /// the resource sent with it.
    pub handle: TokenHandle,
    /// Exchanged tokens for this server, by caller token.
    pub cache: Cache,
    /// Exchanges done, refused, and answered from the cache.
    pub counts: Counts,
}

#[derive(Default)]
pub(super) struct Counts {
    ok: AtomicU64,
    error: AtomicU64,
    cached: AtomicU64,
}

impl Counts {
    pub fn read(&self) -> ExchangeCounts {
        ExchangeCounts { ok: self.ok.load(Relaxed), error: self.error.load(Relaxed), cached: self.cached.load(Relaxed) }
    }
}

/// The digest of the caller's token the exchange was for.
type Key = [u8; 32];

/// Exchanged tokens and until when each may be sent.
#[derive(Default)]
pub(super) struct Cache(Mutex<HashMap<Key, (String, SystemTime)>>);

impl Exchanger {
    pub async fn get_or_exchange(&self, subject: &str) -> Result<(String, u64), String> {
        let outcome = self.exchange(subject).await;
        match &outcome {
            Ok((_, _, true)) => self.counts.cached.fetch_add(1, Relaxed),
            Ok(_) => self.counts.ok.fetch_add(1, Relaxed),
            Err(_) => self.counts.error.fetch_add(1, Relaxed),
        };
        outcome.map(|(token, seconds, _)| (token, seconds))
    }

    /// The token, the seconds it may be used, and whether it came from the cache.
    async fn exchange(&self, subject: &str) -> Result<(String, u64, bool), String> {
        let key: Key = Sha256::digest(subject.as_bytes()).into();
        let now = SystemTime::now();
        if let Some((token, until)) = self.cache.0.lock().ok().and_then(|c| c.get(&key).cloned()).filter(|(_, until)| *until > now) {
            return Ok((token, until.duration_since(now).unwrap_or_default().as_secs(), true));
        }
        let (found, resource) = self.handle.0.read().ok().map(|s| (s.token_url.clone(), s.resource.clone())).unwrap_or_default();
        let token_url = self.oauth.token_url.clone().or(found).ok_or("the gateway has not found the server's token endpoint yet")?;
        let resource = self.oauth.resource.clone().or(resource);
        let body = form(&self.oauth, resource.as_deref(), Some(subject));
        let token = super::post_form(&self.token_client, &token_url, &self.oauth, body)
            .await
            .map_err(|e| e.replacen("refused the gateway's client", "refused to exchange the caller's token", 1))?;
        let mut until = token.valid_until;
        if let Some(exp) = subject_expiry(subject) {
            until = until.min(exp);
        }
        if until <= now {
            return Err("the exchanged token would expire at once (the caller's token is about to)".into());
        }
        if let Ok(mut cache) = self.cache.0.lock() {
            if cache.len() >= CAPACITY && !cache.contains_key(&key) {
                cache.retain(|_, (_, u)| *u > now);
                if cache.len() >= CAPACITY {
                    if let Some(first) = cache.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| *k) {
                        cache.remove(&first);
                    }
                }
            }
            cache.insert(key, (token.access_token.clone(), until));
        }
        Ok((token.access_token, until.duration_since(now).unwrap_or_default().as_secs(), false))
    }
}

/// The `exp` of a compact JWT, read without verifying it: only ever used to
/// keep its exchange for less time (the authorization server verified it).
fn subject_expiry(token: &str) -> Option<SystemTime> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let exp = serde_json::from_slice::<serde_json::Value>(&bytes).ok()?.get("exp")?.as_u64()?;
    Some(UNIX_EPOCH + Duration::from_secs(exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_of_a_jwt_is_read_and_nonsense_is_not() {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"sub":"a","exp":1700000000}"#);
        assert_eq!(subject_expiry(&format!("h.{payload}.s")), Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        assert_eq!(subject_expiry("opaque-token"), None);
        assert_eq!(subject_expiry("h.!!!.s"), None);
    }

    #[test]
    fn the_exchange_form_carries_the_callers_token() {
        let oauth: OAuthSettings =
            serde_yaml::from_str("{client_id: gw, client_secret: s, client_auth: post, audience: crm, scopes: [crm.read]}").unwrap();
        let body = form(&oauth, None, Some("the.caller.jwt"));
        let pairs: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        assert_eq!(pairs["grant_type"], "urn:ietf:params:oauth:grant-type:token-exchange");
        assert_eq!(pairs["subject_token"], "the.caller.jwt");
        assert_eq!(pairs["subject_token_type"], "urn:ietf:params:oauth:token-type:jwt");
        assert_eq!((pairs["audience"].as_str(), pairs["scope"].as_str(), pairs["client_id"].as_str()), ("crm", "crm.read", "gw"));
    }
}
