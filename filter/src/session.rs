//! Gateway session ids: the upstream sessions of one client, sealed.
//!
//! A session id is `<key id>.<base64url(nonce ‖ ciphertext)>`, the
//! ciphertext being XChaCha20-Poly1305 over a small JSON [`SessionState`].
//! Any Envoy that holds the key can open it, so no replica keeps session
//! state and no store is shared. Ciphers are built once per configuration;
//! nothing here derives a key per request.
//!
//! Nonces are derived, not drawn: `SHA-256(nonce key ‖ plaintext)`. The
//! plaintext carries the issue time, caller-supplied entropy and the
//! upstreams' own (random) session ids, so two different sessions never share
//! a nonce, and wasm32-unknown-unknown needs no random source.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::SessionConfig;

/// What a gateway session id carries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionState {
    /// Issue time, seconds since the Unix epoch.
    #[serde(rename = "t")]
    pub issued_at: u64,
    /// Entropy that keeps two sessions issued in the same second apart.
    #[serde(rename = "n")]
    pub entropy: u64,
    /// The protocol version negotiated with the client.
    #[serde(rename = "v")]
    pub version: String,
    /// Per upstream server name: its session.
    #[serde(rename = "u", default)]
    pub upstreams: BTreeMap<String, UpstreamSession>,
    /// Whose session it is: [`principal_digest`] of the caller that opened
    /// it, `None` when authentication is off. Only that caller may use it.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// What the client said at `initialize` it can do (its `capabilities`,
    /// compact JSON, `None` for none): what the upstream sessions opened
    /// after `initialize` (`opened.rs`) are told, as the first ones were.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<String>,
}

impl SessionState {
    /// Whether `principal` (the caller of a request naming this session, or
    /// `None` without authentication) is the one that opened it.
    pub fn belongs_to(&self, principal: Option<&str>) -> bool {
        self.principal.as_deref() == principal.map(principal_digest).as_deref()
    }
}

/// What a session id seals of its caller: 96 bits of a SHA-256 of the
/// principal, base64url. Short whatever the principal (a JWT's subject may
/// be long), and never the principal itself, though the id is encrypted.
pub fn principal_digest(principal: &str) -> String {
    let digest = Sha256::new().chain_update(b"mcp-gateway session principal\0").chain_update(principal.as_bytes()).finalize();
    URL_SAFE_NO_PAD.encode(digest.get(..12).unwrap_or_default())
}

/// The client's session with one upstream, as opened at `initialize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamSession {
    /// The upstream's `Mcp-Session-Id`, if it issued one.
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The protocol version the upstream agreed to.
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why initialising this upstream failed, if it did.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session key {0:?} is not 32 bytes of hex")]
    BadKey(String),
    #[error("the active session key {0:?} is not among the keys")]
    NoActiveKey(String),
    #[error("malformed session id")]
    Malformed,
    #[error("session id sealed under an unknown key")]
    UnknownKey,
    #[error("session id failed authentication")]
    Tampered,
    #[error("session expired")]
    Expired,
}

/// Seals and opens session ids with the configured keys.
pub struct Sealer {
    active: usize,
    keys: Vec<(String, XChaCha20Poly1305)>,
    nonce_key: [u8; 32],
    ttl_seconds: u64,
}

impl Sealer {
    pub fn new(cfg: &SessionConfig) -> Result<Self, SessionError> {
        let mut keys = Vec::with_capacity(cfg.keys.len());
        let mut nonce_key = [0u8; 32];
        for k in &cfg.keys {
            let secret = decode_hex32(&k.secret_hex).ok_or_else(|| SessionError::BadKey(k.id.clone()))?;
            if k.id == cfg.active_key {
                nonce_key = Sha256::new().chain_update(b"mcp-gateway nonce key").chain_update(secret).finalize().into();
            }
            keys.push((k.id.clone(), XChaCha20Poly1305::new((&secret).into())));
        }
        let active =
            keys.iter().position(|(id, _)| *id == cfg.active_key).ok_or_else(|| SessionError::NoActiveKey(cfg.active_key.clone()))?;
        Ok(Sealer { active, keys, nonce_key, ttl_seconds: cfg.ttl_seconds })
    }

    pub fn seal(&self, state: &SessionState) -> String {
        let plaintext = serde_json::to_vec(state).unwrap_or_default();
        let digest = Sha256::new().chain_update(self.nonce_key).chain_update(&plaintext).finalize();
        let mut nonce = XNonce::default();
        nonce.iter_mut().zip(digest.iter()).for_each(|(n, d)| *n = *d);
        let Some((kid, cipher)) = self.keys.get(self.active) else {
            return String::new();
        };
        // Encryption only fails for plaintexts beyond the cipher's limit (GiBs).
        let ciphertext = cipher.encrypt(&nonce, plaintext.as_slice()).unwrap_or_default();
        let mut blob = Vec::with_capacity(24 + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        format!("{kid}.{}", URL_SAFE_NO_PAD.encode(blob))
    }

    /// How long the id sealing `plaintext_len` bytes of state is: the key
    /// id, a dot, and the nonce, ciphertext and tag in unpadded base64url.
    pub fn sealed_len(&self, plaintext_len: usize) -> usize {
        let kid = self.keys.get(self.active).map_or(0, |(kid, _)| kid.len());
        kid + 1 + (4 * (24 + plaintext_len + 16)).div_ceil(3)
    }

    pub fn open(&self, token: &str, now_unix_secs: u64) -> Result<SessionState, SessionError> {
        let (kid, blob) = token.split_once('.').ok_or(SessionError::Malformed)?;
        let (_, cipher) = self.keys.iter().find(|(id, _)| id == kid).ok_or(SessionError::UnknownKey)?;
        let blob = URL_SAFE_NO_PAD.decode(blob).map_err(|_| SessionError::Malformed)?;
        if blob.len() < 24 + 16 {
            return Err(SessionError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(24);
        let plaintext = cipher.decrypt(XNonce::from_slice(nonce), ciphertext).map_err(|_| SessionError::Tampered)?;
        let state: SessionState = serde_json::from_slice(&plaintext).map_err(|_| SessionError::Malformed)?;
        if now_unix_secs.saturating_sub(state.issued_at) > self.ttl_seconds {
            return Err(SessionError::Expired);
        }
        Ok(state)
    }
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let hi = (*pair.first()? as char).to_digit(16)?;
        let lo = (*pair.get(1)? as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
