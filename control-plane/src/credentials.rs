//! Credentials the gateway holds for upstream servers (`servers[].oauth`).
//!
//! For each server with `oauth` a task gets a token from the token endpoint
//! with the client credentials grant (RFC 6749 §4.4), keeps it in the
//! server's [`TokenHandle`], and gets the next one before it expires. The
//! token endpoint is the catalog's `token_url`, or found from the server
//! itself ([`discover`]: RFC 9728, then RFC 8414). Whenever what a server
//! has changes (a new token, none left, a different reason for none), the
//! task names the server on the controller's [`Changes`] channel: the
//! reload that follows compiles the token into the server's SDS secret
//! (Envoy adds it to every request, `compile/credentials.rs`), or its
//! absence into the filter's configuration (calls are refused, naming the
//! reason). The control plane's own requests to the server (discovery,
//! health checks, GET streams) read the handle at each request.
//!
//! A refresh that fails keeps the token while it is valid, and is retried
//! 1 s, 2 s, 4 s ... up to a minute apart; `/servers`, the log and
//! `mcp_gateway_upstream_credential_*` say so. docs/security.md.

pub mod discover;
mod exchange;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;

use crate::catalog::{token_url_allowed, Catalog, ClientAuth, Grant, OAuthSettings, Server};
use crate::state::Changes;
pub use crate::token::{Credential, CredentialState, CredentialStatus};
use crate::token::{Token, TokenHandle};
use crate::upstream::{Http, Reach};

/// The longest a token endpoint is waited for.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two tries after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The lifetime taken for a token whose answer has no `expires_in`.
const UNSTATED_LIFETIME: Duration = Duration::from_secs(300);
/// The most of a token endpoint's answer that is read.
const MAX_ANSWER: usize = 64 * 1024;

struct Entry {
    /// The settings the task runs with; a change restarts it.
    key: String,
    /// What its tokens are for ([`target_of`]).
    target: String,
    handle: TokenHandle,
    task: tokio::task::AbortHandle,
    /// What a token exchange for the server takes (`grant: token_exchange`).
    exchange: Option<Arc<exchange::Exchanger>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The refresh tasks, one per server with `oauth` in the catalog served.
pub struct Credentials {
    entries: Mutex<BTreeMap<String, Entry>>,
    changes: Changes,
    /// Reaches token endpoints: the system's CAs, and no redirects (a
    /// redirected POST would carry the client secret, or a caller's JWT,
    /// wherever the redirect points). `None` if it could not be made: the
    /// catalog's plain client is used.
    token_client: Option<Http>,
}

impl Credentials {
    pub fn new(changes: Changes) -> Self {
        let token_client = crate::upstream::tls::client_config(None).ok().and_then(|config| {
            let client =
                reqwest::Client::builder().tls_backend_preconfigured(config).redirect(reqwest::redirect::Policy::none()).build().ok()?;
            Some(Http { setting: "token-endpoints".into(), holds: crate::upstream::tls::Setting::of(None), client })
        });
        Credentials { entries: Mutex::new(BTreeMap::new()), changes, token_client }
    }

    /// Follows a catalog just published: a task for each server with
    /// `oauth` (started again if its settings, URL or TLS changed), none
    /// for the others.
    pub fn sync(&self, catalog: &Catalog, reach: &Reach) {
        let Ok(mut entries) = self.entries.lock() else { return };
        let wanted: BTreeMap<&str, (&Server, &OAuthSettings)> =
            catalog.servers.iter().filter_map(|s| Some((s.name.as_str(), (s, s.oauth.as_ref()?)))).collect();
        entries.retain(|name, _| wanted.contains_key(name.as_str()));
        for (name, (server, oauth)) in wanted {
            let key = format!("{} {} {}", serde_json::to_string(oauth).unwrap_or_default(), server.url, reach.identity(server));
            if entries.get(name).is_some_and(|e| e.key == key) {
                continue;
            }
            // What the token is for: unchanged, a token in hand (got with a
            // secret since rotated, say) stays usable until it expires.
            let target = target_of(oauth, &server.url);
            let handle = TokenHandle::default();
            if let Some(old) = entries.get(name).filter(|e| e.target == target) {
                let kept = old.handle.0.read().ok().map(|s| (s.token.clone(), s.token_url.clone(), s.resource.clone()));
                if let Some((token, token_url, resource)) = kept {
                    handle.update(|slot| {
                        slot.token = token;
                        slot.token_url = token_url;
                        slot.resource = resource;
                    });
                }
            }
            let token_client = self.token_client.clone().unwrap_or_else(|| reach.plain());
            let job = Refresh {
                server: name.to_string(),
                url: server.url.clone(),
                oauth: oauth.clone(),
                token_client: token_client.clone(),
                server_client: reach.own(name),
                handle: handle.clone(),
                changes: self.changes.clone(),
            };
            let exchange = (oauth.grant == Grant::TokenExchange).then(|| {
                // A cache of its own: a changed server never gets tokens
                // exchanged for what it was before.
                Arc::new(exchange::Exchanger {
                    oauth: oauth.clone(),
                    token_client,
                    handle: handle.clone(),
                    cache: exchange::Cache::default(),
                    counts: exchange::Counts::default(),
                })
            });
            let task = tokio::spawn(job.run()).abort_handle();
            entries.insert(name.to_string(), Entry { key, target, handle, task, exchange });
        }
    }

    /// The handle of each server with a task.
    pub fn handles(&self) -> BTreeMap<String, TokenHandle> {
        let Ok(entries) = self.entries.lock() else { return BTreeMap::new() };
        entries.iter().map(|(name, e)| (name.clone(), e.handle.clone())).collect()
    }

    /// What compile takes: each server's token, or why it has none.
    pub fn current(&self) -> BTreeMap<String, Credential> {
        self.handles().into_iter().map(|(name, h)| (name, h.credential())).collect()
    }

    /// What `/servers` shows of a server's token, if it has `oauth`.
    pub fn status(&self, server: &str) -> Option<CredentialStatus> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(server)
            .map(|e| CredentialStatus { exchanges: e.exchange.as_ref().map(|x| x.counts.read()), ..e.handle.status(e.exchange.is_some()) })
    }

    /// A caller's JWT exchanged for a token of `server` (RFC 8693): from
    /// the cache, or from the token endpoint. The token and how many
    /// seconds it may be used; or why not, in words for the caller.
    pub async fn exchange(&self, server: &str, subject: &str) -> Result<(String, u64), String> {
        let exchanger = {
            let entries = self.entries.lock().map_err(|_| "the gateway's token store failed".to_string())?;
            entries.get(server).and_then(|e| e.exchange.clone())
        };
        let exchanger = exchanger.ok_or_else(|| format!("server {server:?} takes no exchanged tokens (oauth.grant: token_exchange)"))?;
        exchanger.get_or_exchange(subject).await
    }
}

/// One server's refresh task.
struct Refresh {
    server: String,
    url: String,
    oauth: OAuthSettings,
    /// Reaches the token endpoint (the system's CAs).
    token_client: Http,
    /// Reaches the server, to discover its token endpoint.
    server_client: Http,
    handle: TokenHandle,
    changes: Changes,
}

impl Refresh {
    async fn run(self) {
        let mut backoff = Duration::from_secs(1);
        let mut told: Option<Credential> = None;
        loop {
            let wait = match self.fetch().await {
                Ok(token) => {
                    backoff = Duration::from_secs(1);
                    let now = SystemTime::now();
                    let lifetime = token.expires_at.duration_since(now).unwrap_or_default();
                    let usable = token.valid_until.duration_since(now).unwrap_or_default();
                    tracing::info!(server = %self.server, expires_in_s = lifetime.as_secs(), "got an OAuth token for the server");
                    self.handle.update(|slot| {
                        slot.token = Some(token);
                        slot.last_error = None;
                        slot.refreshed_at = Some(SystemTime::now());
                        slot.refreshes += 1;
                    });
                    renew_after(lifetime, usable)
                }
                Err(e) => {
                    tracing::error!(server = %self.server, error = %e, "could not get an OAuth token for the server");
                    let discovered = self.oauth.token_url.is_none();
                    self.handle.update(|slot| {
                        slot.last_error = Some(e);
                        slot.failures += 1;
                        // A token endpoint that was found is looked for again.
                        if discovered {
                            slot.token_url = None;
                            slot.resource = None;
                        }
                    });
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // Woken when the token in hand stops being valid, to say so.
                    let valid_for = self.handle.0.read().ok().and_then(|s| s.token.as_ref().map(|t| t.valid_until));
                    match valid_for.and_then(|until| until.duration_since(SystemTime::now()).ok()) {
                        Some(left) => wait.min(left + Duration::from_millis(50)),
                        None => wait,
                    }
                }
            };
            let now = self.handle.credential();
            if told.as_ref() != Some(&now) {
                told = Some(now);
                let _ = self.changes.send(self.server.clone());
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// One try: the token endpoint (found first if need be), then a token.
    async fn fetch(&self) -> Result<Token, String> {
        let known = self.handle.0.read().ok().and_then(|s| Some((s.token_url.clone()?, s.resource.clone())));
        let (token_url, resource) = match (&self.oauth.token_url, known) {
            (Some(url), _) => (url.clone(), self.oauth.resource.clone()),
            (None, Some((url, found))) => (url, self.oauth.resource.clone().or(found)),
            (None, None) => {
                let found = discover::discover(&self.server_client.client, &self.url, &[]).await?;
                if let Some(pinned) = &self.oauth.issuer {
                    if discover::check_issuer(&found.authorization_server, pinned).is_err() {
                        return Err(format!(
                            "the server names the authorization server {}, not oauth.issuer {pinned}",
                            found.authorization_server
                        ));
                    }
                }
                token_url_allowed(&found.token_endpoint)
                    .map_err(|e| format!("the token endpoint {} its authorization server names: {e}", found.token_endpoint))?;
                (found.token_endpoint, self.oauth.resource.clone().or(Some(found.resource)))
            }
        };
        self.handle.update(|slot| {
            slot.token_url = Some(token_url.clone());
            slot.resource = resource.clone();
        });
        post_form(&self.token_client, &token_url, &self.oauth, form(&self.oauth, resource.as_deref(), None)).await
    }
}

/// Sends a token request (the client authenticated as the catalog says)
/// and reads its answer.
async fn post_form(client: &Http, token_url: &str, oauth: &OAuthSettings, body: String) -> Result<Token, String> {
    let mut request = client
        .client
        .post(token_url)
        .timeout(TIMEOUT)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json");
    if oauth.client_auth == ClientAuth::Basic {
        request = request.header("authorization", basic(&oauth.client_id, &oauth.client_secret));
    }
    let shown = shown_url(token_url);
    let response = request.body(body).send().await.map_err(|e| format!("token endpoint {shown}: {}", client.failure(&e, &shown)))?;
    let status = response.status().as_u16();
    // Redirects are not followed: the body holds a secret.
    if (300..400).contains(&status) {
        return Err(format!("token endpoint {shown} answered a redirect (HTTP {status}); give the URL it redirects to as oauth.token_url"));
    }
    let text = read_limited(response).await.map_err(|e| format!("token endpoint {shown}: {e}"))?;
    token_of(status, &text, SystemTime::now()).map_err(|e| format!("token endpoint {shown} {e}"))
}

/// When to get the next token: three quarters through its lifetime, and
/// at least a second before it stops being sent (`usable`).
fn renew_after(lifetime: Duration, usable: Duration) -> Duration {
    (lifetime * 3 / 4).min(usable.saturating_sub(Duration::from_secs(1))).max(Duration::from_secs(1))
}

/// What a server's tokens are for: a change of anything else (a rotated
/// secret, another client authentication) keeps the token in hand.
fn target_of(oauth: &OAuthSettings, url: &str) -> String {
    let for_what = OAuthSettings { client_secret: String::new(), client_auth: ClientAuth::Basic, ..oauth.clone() };
    format!("{} {url}", serde_json::to_string(&for_what).unwrap_or_default())
}

/// The token request's form: the client credentials grant (RFC 6749
/// §4.4.2), or with a caller's JWT (`subject`) the token exchange grant
/// (RFC 8693 §2.1); RFC 8707 `resource`.
fn form(oauth: &OAuthSettings, resource: Option<&str>, subject: Option<&str>) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    match subject {
        None => form.append_pair("grant_type", "client_credentials"),
        Some(token) => form
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
            .append_pair("subject_token", token)
            .append_pair("subject_token_type", "urn:ietf:params:oauth:token-type:jwt")
            .append_pair("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
    };
    if !oauth.scopes.is_empty() {
        form.append_pair("scope", &oauth.scopes.join(" "));
    }
    if let Some(a) = &oauth.audience {
        form.append_pair("audience", a);
    }
    if let Some(r) = resource {
        form.append_pair("resource", r);
    }
    if oauth.client_auth == ClientAuth::Post {
        form.append_pair("client_id", &oauth.client_id);
        form.append_pair("client_secret", &oauth.client_secret);
    }
    form.finish()
}

/// HTTP Basic client authentication: id and secret form-encoded first
/// (RFC 6749 §2.3.1), which servers decode.
fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret))))
}

async fn read_limited(mut response: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("its answer broke off ({e})"))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER {
            return Err(format!("its answer is longer than {MAX_ANSWER} bytes"));
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// What a token endpoint's answer says: a token (RFC 6749 §5.1), or the
/// refusal in words (§5.2). Errors start after the endpoint's URL.
fn token_of(status: u16, text: &str, now: SystemTime) -> Result<Token, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: Option<String>,
        token_type: Option<String>,
        expires_in: Option<serde_json::Value>,
        error: Option<String>,
        error_description: Option<String>,
    }
    let answer: Option<Answer> = serde_json::from_str(text).ok();
    if status != 200 {
        return Err(match answer.and_then(|a| Some((a.error?, a.error_description))) {
            Some((error, description)) => {
                let description = description.map(|d| format!(": {}", shown(&d))).unwrap_or_default();
                format!("refused the gateway's client (HTTP {status}): {}{description}", shown(&error))
            }
            None => format!("answered HTTP {status} without an OAuth error"),
        });
    }
    let answer = answer.ok_or("answered 200 with no JSON token response")?;
    let token = answer.access_token.filter(|t| !t.is_empty()).ok_or("answered 200 with no access_token")?;
    // It goes into a header: visible ASCII only (RFC 6750 b64token and more).
    if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("answered an access_token with characters a header cannot carry".into());
    }
    if !answer.token_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
        return Err(format!(
            "answered token_type {:?}; the gateway sends Bearer tokens only (RFC 6750)",
            answer.token_type.as_deref().map(shown).unwrap_or_default()
        ));
    }
    // A number, or (some servers) a string holding one.
    let expires_in = match answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let lifetime = expires_in.map_or(UNSTATED_LIFETIME, Duration::from_secs);
    if lifetime.is_zero() {
        return Err("answered a token that expires at once (expires_in 0)".into());
    }
    // Stop sending it a little before it expires: a tenth of its life, at
    // least 2 s (`exp` is in whole seconds, and the answer took time to
    // arrive), at most 30 s, and never more than half of it.
    let margin = (lifetime / 10).max(Duration::from_secs(2)).min(Duration::from_secs(30)).min(lifetime / 2);
    Ok(Token { access_token: token, valid_until: now + lifetime - margin, expires_at: now + lifetime })
}

/// A token endpoint's URL as errors show it: no user info, no query.
fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            if u.query().is_some() {
                u.set_query(None);
                format!("{u}?…")
            } else {
                u.to_string()
            }
        }
        Err(_) => shown(url),
    }
}

/// Text from a token endpoint, fit for a log line: no control characters,
/// at most 200 characters.
fn shown(text: &str) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    clean
}

#[cfg(test)]
mod tests;
