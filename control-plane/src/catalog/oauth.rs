//! `servers[].oauth`: the gateway's own OAuth client registration at a
//! server's authorization server. The control plane gets tokens with it
//! (the client credentials grant, RFC 6749 §4.4), refreshes them before
//! they expire, and Envoy adds the current one to every request to the
//! server; docs/security.md.

use serde::{Deserialize, Serialize};

/// How the gateway gets tokens for a server.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSettings {
    /// The authorization server's token endpoint. Unset: discovered from the
    /// server (its 401's RFC 9728 resource metadata, then its authorization
    /// server's RFC 8414 metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// The authorization server the token endpoint must be found at, when
    /// `token_url` is left out: without it, the server is trusted to name
    /// its authorization server (which then receives the client secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    pub client_id: String,
    /// Usually `${SOME_SECRET}` or `${file:/run/secrets/x}`.
    pub client_secret: String,
    /// Whose identity the server sees (default `client_credentials`: the
    /// gateway's own).
    #[serde(default, skip_serializing_if = "Grant::is_default")]
    pub grant: Grant,
    /// How the client authenticates at the token endpoint (default `basic`).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Scopes asked for, sent space-separated as `scope`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// `audience` sent to the token endpoint, for authorization servers
    /// that name the target that way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// `resource` (RFC 8707) sent to the token endpoint: the server's URL,
    /// as the MCP authorization spec asks clients to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// Whose token the server gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// The gateway's own (RFC 6749 §4.4), the same for every caller.
    #[default]
    ClientCredentials,
    /// Each caller's own: the caller's JWT exchanged for a token of the
    /// server's (RFC 8693), per caller. The gateway's own token (client
    /// credentials, same registration) serves its own requests: listing
    /// tools, health checks.
    TokenExchange,
}

impl Grant {
    pub fn is_default(&self) -> bool {
        *self == Grant::ClientCredentials
    }
}

/// Client authentication at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (`client_secret_basic`).
    #[default]
    Basic,
    /// The id and secret in the form body (`client_secret_post`).
    Post,
}

impl std::fmt::Debug for OAuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthSettings")
            .field("token_url", &self.token_url)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("grant", &self.grant)
            .field("client_auth", &self.client_auth)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("resource", &self.resource)
            .finish()
    }
}

impl OAuthSettings {
    /// What the catalog says wrong of it, each a sentence starting with `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.client_id.trim().is_empty() {
            p.push(format!("{at}: oauth.client_id is empty"));
        }
        if self.client_secret.is_empty() {
            p.push(format!("{at}: oauth.client_secret is empty (give it as ${{VAR}} or ${{file:/path}})"));
        }
        if let Some(url) = &self.token_url {
            if let Err(e) = token_url_allowed(url) {
                p.push(format!("{at}: oauth.token_url {url:?}: {e}"));
            }
        }
        if self.grant == Grant::TokenExchange && self.token_url.is_none() && self.issuer.is_none() {
            p.push(format!(
                "{at}: oauth.grant token_exchange needs token_url (or issuer): callers' JWTs go to it, and the server must not choose where"
            ));
        }
        for scope in &self.scopes {
            if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\') {
                p.push(format!("{at}: oauth.scopes: {scope:?} is not a scope (RFC 6749 §3.3: no spaces or quotes)"));
            }
        }
        p
    }
}

/// Whether a token endpoint may receive the client's secret: `https://`,
/// or `http://` on a loopback address only (a secret sent in the clear
/// over a network can be read by anyone on the path).
pub fn token_url_allowed(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => match parsed.host() {
            Some(url::Host::Domain("localhost")) => Ok(()),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            _ => Err("an http:// token endpoint must be on loopback; use https:// (the client secret is sent to it)".into()),
        },
        other => Err(format!("scheme {other}:// is not http(s)")),
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::load;

    fn problems(server: &str) -> String {
        match load(&format!("servers:\n{server}"), |_| None) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const GOOD: &str = "  - name: crm\n    url: https://crm.example/mcp\n    oauth: {token_url: https://as.example/token, client_id: gw, client_secret: s}\n";

    #[test]
    fn a_registration_is_checked_with_the_server_it_is_for() {
        assert_eq!(problems(GOOD), "");
        assert_eq!(
            problems("  - {name: crm, url: http://10.0.0.1/mcp, oauth: {client_id: gw, client_secret: s}}\n"),
            "",
            "found by discovery"
        );
        let cases = [
            ("  - {name: t, runtime: stdio, command: x, oauth: {client_id: gw, client_secret: s}}\n", "oauth is for runtime http"),
            ("  - {name: t, url: http://h/mcp, forward_authorization: true, oauth: {client_id: gw, client_secret: s}}\n", "keep one"),
            (
                "  - {name: t, url: http://h/mcp, headers: {authorization: x}, oauth: {client_id: gw, client_secret: s}}\n",
                "headers.Authorization",
            ),
            ("  - {name: t, url: http://h/mcp, oauth: {client_id: ' ', client_secret: s}}\n", "client_id is empty"),
            ("  - {name: t, url: http://h/mcp, oauth: {client_id: gw, client_secret: ''}}\n", "client_secret is empty"),
            (
                "  - {name: t, url: http://h/mcp, oauth: {token_url: 'http://as.example/token', client_id: gw, client_secret: s}}\n",
                "must be on loopback",
            ),
            ("  - {name: t, url: http://h/mcp, oauth: {token_url: 'ftp://as/token', client_id: gw, client_secret: s}}\n", "is not http(s)"),
            ("  - {name: t, url: http://h/mcp, oauth: {client_id: gw, client_secret: s, scopes: ['a b']}}\n", "is not a scope"),
            ("  - {name: t, url: http://h/mcp, oauth: {client_id: gw, client_secret: s, grant: password}}\n", "unknown variant `password`"),
            (
                "  - {name: t, url: http://h/mcp, oauth: {client_id: gw, client_secret: s, grant: token_exchange}}\n",
                "needs gateway.auth.jwt",
            ),
            (
                "  - {name: t, url: http://h/mcp, oauth: {client_id: gw, client_secret: s, grant: token_exchange}}\n",
                "needs token_url (or issuer)",
            ),
        ];
        for (server, said) in cases {
            let got = problems(server);
            assert!(got.contains(said), "{server}: {got}");
            assert!(!got.contains("client_secret: s"), "{got}");
        }
    }

    #[test]
    fn the_secret_is_never_printed() {
        let catalog = load(&format!("servers:\n{GOOD}").replace("client_secret: s", "client_secret: hunter2-secret"), |_| None).unwrap();
        let shown = format!("{:?}", catalog.servers[0]);
        assert!(shown.contains("client_id: \"gw\"") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn loopback_token_endpoints_may_be_plain_http() {
        for ok in ["https://as.example/t", "http://127.0.0.1:9/t", "http://localhost/t", "http://[::1]:9/t"] {
            assert_eq!(super::token_url_allowed(ok), Ok(()), "{ok}");
        }
        assert!(super::token_url_allowed("http://10.0.0.1/t").is_err());
    }
}
