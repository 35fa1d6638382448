//! A server's OAuth token as the rest of the control plane sees it: the
//! handle its refresh task (`crate::credentials`) writes and its readers
//! read at each request (discovery, health checks, streams), what compile
//! takes of it ([`Credential`]), and what `/servers` shows
//! ([`CredentialStatus`]). A leaf: it imports nothing of the crate.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// What the control plane holds for a server with `oauth`, as compile
/// takes it (the control plane's `credentials` module keeps it current).
#[derive(Clone, PartialEq)]
pub enum Credential {
    /// A token that has not expired.
    Token(String),
    /// No usable token, and why in words an operator can act on (the token
    /// endpoint's refusal, or that none was fetched yet). Calls to the
    /// server are answered with a JSON-RPC error saying so.
    Unavailable(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(<redacted>)"),
            Credential::Unavailable(why) => f.debug_tuple("Unavailable").field(why).finish(),
        }
    }
}

/// A token from the token endpoint.
#[derive(Clone)]
pub struct Token {
    pub access_token: String,
    /// When it stops being sent: a little before it expires, so that a
    /// request on its way does not arrive with an expired token.
    pub valid_until: SystemTime,
    pub expires_at: SystemTime,
}

/// What is known of one server's token.
#[derive(Default)]
pub struct Slot {
    pub token: Option<Token>,
    /// The token endpoint, as the catalog gives it or as it was found.
    pub token_url: Option<String>,
    /// The `resource` sent with token requests (RFC 8707): the catalog's,
    /// or the server's resource identifier when its endpoint was found.
    pub resource: Option<String>,
    pub last_error: Option<String>,
    pub refreshed_at: Option<SystemTime>,
    pub refreshes: u64,
    pub failures: u64,
}

impl Slot {
    pub fn valid(&self, now: SystemTime) -> Option<&Token> {
        self.token.as_ref().filter(|t| t.valid_until > now)
    }
}

/// One server's token, shared by its refresh task and whoever sends it
/// requests. Two handles are equal when they are the same one.
#[derive(Clone, Default)]
pub struct TokenHandle(pub(crate) Arc<RwLock<Slot>>);

impl PartialEq for TokenHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHandle(<redacted>)")
    }
}

impl TokenHandle {
    /// `Bearer <token>`, while the token is valid.
    pub fn bearer(&self) -> Option<String> {
        let slot = self.0.read().ok()?;
        slot.valid(SystemTime::now()).map(|t| format!("Bearer {}", t.access_token))
    }

    /// What compile makes of it.
    pub fn credential(&self) -> Credential {
        let Ok(slot) = self.0.read() else { return Credential::Unavailable("the gateway's token store failed".into()) };
        let now = SystemTime::now();
        match (slot.valid(now), &slot.last_error) {
            (Some(t), _) => Credential::Token(t.access_token.clone()),
            (None, Some(e)) => Credential::Unavailable(e.clone()),
            (None, None) if slot.token.is_some() => {
                Credential::Unavailable("its token expired and the gateway has not got a new one yet".into())
            }
            (None, None) => Credential::Unavailable("the gateway has not got a token for it yet".into()),
        }
    }

    /// What `/servers` shows of it; `exchange`: the server takes each
    /// caller's own token (this one serves the gateway's own requests).
    pub fn status(&self, exchange: bool) -> CredentialStatus {
        let slot = self.0.read().unwrap_or_else(|e| e.into_inner());
        let valid = slot.valid(SystemTime::now()).is_some();
        let state = match (valid, slot.last_error.is_some()) {
            (true, false) => CredentialState::Valid,
            (true, true) => CredentialState::RefreshFailing,
            (false, true) => CredentialState::Failed,
            (false, false) => CredentialState::Pending,
        };
        CredentialStatus {
            grant: if exchange { "token_exchange" } else { "client_credentials" },
            state,
            token_url: slot.token_url.clone(),
            expires_at: slot.token.as_ref().map(|t| unix(t.expires_at)),
            refreshed_at: slot.refreshed_at.map(unix),
            last_error: slot.last_error.clone(),
            refreshes: slot.refreshes,
            failures: slot.failures,
            exchanges: None,
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut Slot)) {
        if let Ok(mut slot) = self.0.write() {
            f(&mut slot);
        }
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How a server's token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialState {
    /// A valid token, and the last try got it.
    Valid,
    /// A valid token, but the last try to renew it failed (retried).
    RefreshFailing,
    /// No valid token: calls to the server are refused with `last_error`.
    Failed,
    /// None yet, and no failure yet.
    Pending,
}

/// What `/servers` shows of a server's token (never the token).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CredentialStatus {
    pub grant: &'static str,
    pub state: CredentialState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// When the current token expires (seconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// When the last token was got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<u64>,
    /// Why the last try failed; cleared by the next success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Tokens got, and tries that failed, since the control plane started.
    pub refreshes: u64,
    pub failures: u64,
    /// `grant: token_exchange`: callers' tokens exchanged, refused, and
    /// answered from the control plane's cache, since it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchanges: Option<ExchangeCounts>,
}

/// How a server's token exchanges went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExchangeCounts {
    pub ok: u64,
    pub error: u64,
    pub cached: u64,
}
