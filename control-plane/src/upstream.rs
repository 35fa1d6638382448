//! How the control plane itself reaches a server: discovery, health checks,
//! the era bridge and the clients' GET streams all start from an
//! [`Upstream`], made in one place ([`Upstream::of`]), so that none of them
//! can forget what reaching a server takes.
//!
//! A server Envoy calls directly (`runtime: http`) is reached at its own URL
//! with its catalog headers (its credentials), over TLS for `https://` with
//! the client of its `tls` setting. A server the control plane runs or
//! connects to (`stdio`, `sse`) is reached at the control plane's own pipe
//! endpoint, which admits only holders of the internal token: the filter
//! carries it, and so must every internal caller. (The legacy SSE link
//! itself reaches the server's URL with [`Reach::own`].)
//!
//! HTTP clients are made per TLS setting, not per server or request: one
//! for the system's CAs, one for each distinct set of `tls` files
//! ([`Clients`]), so that connections are pooled and a thousand servers
//! behind one private CA share one client.
//!
//! Nothing here sends a request: it only says how one is to be sent.

pub mod tls;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crate::catalog::{Catalog, Server};
use crate::token::TokenHandle;
pub use tls::UpstreamTls;

/// Where the control plane reaches a server, and what it may show of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    pub url: String,
    /// The URL as logs and `/servers` may show it (no secrets).
    pub shown: String,
    /// Sent with every request: the server's credentials from the catalog,
    /// or the internal token for the control plane's own pipe.
    pub headers: Vec<(String, String)>,
    /// The gateway's OAuth token for it (`oauth`), read at each request:
    /// it is renewed while the `Upstream` lives.
    pub token: Option<TokenHandle>,
    /// The client that reaches `url`.
    pub http: Http,
}

impl Upstream {
    /// How the control plane reaches `server` of a catalog read with `reach`.
    pub fn of(server: &Server, reach: &Reach) -> Upstream {
        let (headers, http) = if server.piped() {
            (vec![(mcp_filter::config::INTERNAL_HEADER.to_string(), reach.internal_token.clone())], reach.plain.clone())
        } else {
            (server.headers.0.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(), reach.own(&server.name))
        };
        let token = reach.tokens.get(&server.name).filter(|_| !server.piped()).cloned();
        Upstream { name: server.name.clone(), url: server.reach_url(&reach.bridge_base), shown: server.display_url(), headers, token, http }
    }

    /// Every header its requests carry: the catalog's, and the gateway's
    /// token while it has a valid one.
    pub fn auth_headers(&self) -> Vec<(String, String)> {
        let mut headers = self.headers.clone();
        if let Some(bearer) = self.token.as_ref().and_then(TokenHandle::bearer) {
            headers.push(("authorization".into(), bearer));
        }
        headers
    }
}

/// An HTTP client for one TLS setting. Two are equal when their settings
/// are: the client is only the means.
#[derive(Debug, Clone)]
pub struct Http {
    /// Names the setting: empty for the system's CAs and no client
    /// certificate, else [`UpstreamTls::digest`].
    pub setting: String,
    /// What the setting holds, for advice in errors.
    pub holds: tls::Setting,
    pub client: reqwest::Client,
}

impl PartialEq for Http {
    fn eq(&self, other: &Self) -> bool {
        self.setting == other.setting
    }
}

impl Http {
    /// Why a request to `shown` failed, without the URL reqwest puts in its
    /// message (it may hold a secret): a TLS failure said precisely, else
    /// the kind of failure.
    pub fn failure(&self, error: &reqwest::Error, shown: &str) -> String {
        if let Some(f) = tls::failure(error) {
            return tls::explain(&f, shown, self.holds);
        }
        let why = if error.is_connect() {
            "connection refused or unreachable"
        } else if error.is_timeout() {
            "timed out"
        } else if error.is_request() {
            "request failed"
        } else {
            "transport error"
        };
        format!("cannot reach {shown}: {why}")
    }
}

/// The clients made so far, by setting; a catalog's are taken from here
/// ([`Clients::reach`]), so that a reload reuses them and their connections.
#[derive(Clone, Default)]
pub struct Clients {
    made: Arc<Mutex<HashMap<String, Http>>>,
}

impl Clients {
    /// The client of `tls` (`None`: the system's CAs), made at first use.
    pub fn get(&self, tls: Option<&UpstreamTls>) -> Result<Http, String> {
        let setting = tls.map(UpstreamTls::digest).unwrap_or_default();
        if let Some(http) = self.made.lock().ok().and_then(|m| m.get(&setting).cloned()) {
            return Ok(http);
        }
        let config = tls::client_config(tls)?;
        let client =
            reqwest::Client::builder().tls_backend_preconfigured(config).build().map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let http = Http { setting: setting.clone(), holds: tls::Setting::of(tls), client };
        if let Ok(mut made) = self.made.lock() {
            made.insert(setting, http.clone());
        }
        Ok(http)
    }

    /// What reaching `catalog`'s servers takes: the control plane's own
    /// address and token for the servers it runs, and a client for each
    /// server's `tls` files, whose contents `files` holds by server name.
    /// Errors name the server and the file at fault.
    pub fn reach(
        &self,
        catalog: &Catalog,
        bridge_base: &str,
        internal_token: &str,
        files: BTreeMap<String, UpstreamTls>,
    ) -> Result<Reach, String> {
        let plain = self.get(None)?;
        let mut own = BTreeMap::new();
        for s in &catalog.servers {
            if let Some(t) = files.get(&s.name) {
                own.insert(s.name.clone(), self.get(Some(t)).map_err(|e| format!("server {:?}: {e}", s.name))?);
            }
        }
        Ok(Reach {
            bridge_base: bridge_base.to_string(),
            internal_token: internal_token.to_string(),
            plain,
            own,
            files,
            tokens: BTreeMap::new(),
        })
    }

    /// Forgets the clients of settings no catalog in use names (rotated or
    /// removed files), so that they do not pile up.
    pub fn keep_only(&self, in_use: &[&Reach]) {
        let wanted: BTreeSet<&str> = in_use.iter().flat_map(|r| r.settings()).collect();
        if let Ok(mut made) = self.made.lock() {
            made.retain(|setting, _| wanted.contains(setting.as_str()));
        }
    }
}

/// What reaching the servers of one catalog takes besides the catalog.
#[derive(Debug, Clone)]
pub struct Reach {
    /// `http://host:port` of the control plane's admin API, where it serves
    /// the servers it runs or connects to.
    pub bridge_base: String,
    /// Opens that endpoint.
    pub internal_token: String,
    /// The system's CAs, no client certificate.
    plain: Http,
    /// The clients of servers with `tls` settings, by name.
    own: BTreeMap<String, Http>,
    /// What their `tls` files hold, by server name (Envoy gets it too).
    pub files: BTreeMap<String, UpstreamTls>,
    /// The gateway's OAuth tokens, by server name (`crate::credentials`).
    pub tokens: BTreeMap<String, TokenHandle>,
}

impl Reach {
    /// The client with the system's CAs and no client certificate.
    pub fn plain(&self) -> Http {
        self.plain.clone()
    }

    /// The client that reaches the server's own URL.
    pub fn own(&self, server: &str) -> Http {
        self.own.get(server).unwrap_or(&self.plain).clone()
    }

    /// What, if it changed, means the server must be asked again what it
    /// offers (and a connection the control plane holds to it opened
    /// again): its catalog entry, and what its TLS files hold.
    pub fn identity(&self, server: &Server) -> String {
        match self.own.get(&server.name) {
            Some(http) => format!("{} tls:{}", server.identity(), http.setting),
            None => server.identity(),
        }
    }

    fn settings(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.plain.setting.as_str()).chain(self.own.values().map(|h| h.setting.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = include_str!("upstream/testdata/ca.crt");

    #[test]
    fn piped_servers_are_reached_with_the_internal_token_and_others_with_their_credentials() {
        let catalog = crate::catalog::load(
            "servers:\n  - {name: t, runtime: stdio, command: uvx}\n  - {name: o, runtime: sse, url: 'https://h:9/sse', tls: {ca_file: ca.crt}}\n  - {name: h, url: 'http://h:1/mcp', headers: {X-Api-Key: k}}\n  - {name: s, url: 'https://s/mcp', tls: {ca_file: ca.crt}}\n",
            |_| None,
        )
        .unwrap();
        let private = UpstreamTls { ca: Some(CA.into()), ..Default::default() };
        let files = BTreeMap::from([("o".to_string(), private.clone()), ("s".to_string(), private.clone())]);
        let reach = Clients::default().reach(&catalog, "http://127.0.0.1:18001", "secret", files).unwrap();
        let of = |i: usize| Upstream::of(&catalog.servers[i], &reach);
        let token = vec![(mcp_filter::config::INTERNAL_HEADER.to_string(), "secret".to_string())];
        assert_eq!((of(0).url.as_str(), &of(0).headers), ("http://127.0.0.1:18001/upstream/t/mcp", &token));
        assert_eq!((of(1).url.as_str(), &of(1).headers), ("http://127.0.0.1:18001/upstream/o/mcp", &token));
        assert_eq!(of(2).url, "http://h:1/mcp");
        assert_eq!(of(2).headers, vec![("x-api-key".to_string(), "k".to_string())]);
        assert_eq!(of(0).shown, "stdio: uvx", "arguments may hold secrets");
        // The control plane's own pipe is plain HTTP; the SSE link behind it
        // and an https server use the client of their CA, one for both.
        assert_eq!(of(1).http.setting, "");
        assert_eq!(reach.own("o").setting, private.digest());
        assert_eq!(of(3).http, reach.own("o"));
        assert!(of(3).http.holds.own_ca && !of(3).http.holds.client_cert);
        assert_eq!(of(2).http.setting, "");
    }

    #[test]
    fn what_the_tls_files_hold_is_part_of_a_servers_identity() {
        let catalog = crate::catalog::load("servers:\n  - {name: s, url: 'https://s/mcp', tls: {ca_file: ca.crt}}\n", |_| None).unwrap();
        let clients = Clients::default();
        let with = |ca: &str| {
            let files = BTreeMap::from([("s".to_string(), UpstreamTls { ca: Some(ca.into()), ..Default::default() })]);
            clients.reach(&catalog, "http://127.0.0.1:1", "t", files).unwrap()
        };
        let (before, rotated) = (with(CA), with(&format!("{CA}\n")));
        assert_ne!(before.identity(&catalog.servers[0]), rotated.identity(&catalog.servers[0]));
        assert_eq!(clients.made.lock().unwrap().len(), 3, "the system's client and one per setting");
        clients.keep_only(&[&rotated]);
        assert_eq!(clients.made.lock().unwrap().len(), 2, "the rotated-out setting's client is forgotten");
    }

    #[test]
    fn a_bad_file_names_its_server() {
        let catalog = crate::catalog::load("servers:\n  - {name: s, url: 'https://s/mcp', tls: {ca_file: ca.crt}}\n", |_| None).unwrap();
        let files = BTreeMap::from([("s".to_string(), UpstreamTls { ca: Some("nothing".into()), ..Default::default() })]);
        let e = Clients::default().reach(&catalog, "http://127.0.0.1:1", "t", files).unwrap_err();
        assert_eq!(e, "server \"s\": tls.ca_file holds no PEM certificate");
    }
}
