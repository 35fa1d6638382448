//! Where a server lives and how it is reached: its URL read into an
//! [`Endpoint`], and what the control plane derives from a [`Server`] entry
//! (the URL Envoy and discovery use, its idle timeout, its identity).

use url::Url;

use super::{Runtime, Server, PIPE_PATH_PREFIX};

/// Where an upstream lives, read from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Endpoint {
    /// `host:port` as sent in `:authority`.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How long an on-demand process may sit idle by default.
const DEFAULT_PROCESS_IDLE_SECONDS: u64 = 300;

impl Server {
    /// How long an on-demand process may go without calls before it is stopped.
    pub fn process_idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.idle_timeout_seconds.unwrap_or(DEFAULT_PROCESS_IDLE_SECONDS))
    }

    /// Whether the control plane stands between Envoy and it.
    pub fn piped(&self) -> bool {
        self.runtime != Runtime::Http
    }

    /// Where Envoy and discovery reach it: its own URL (`http`), or the
    /// control plane's Streamable HTTP endpoint for it, under `bridge_base`
    /// (`http://host:port` of the control plane's admin API).
    pub fn reach_url(&self, bridge_base: &str) -> String {
        match self.runtime {
            Runtime::Http => self.url.clone(),
            Runtime::Sse | Runtime::Stdio => format!("{bridge_base}{PIPE_PATH_PREFIX}{}/mcp", self.name),
        }
    }

    /// What, if it changed, means the server must be asked again what it
    /// offers (and, when the control plane runs it, restarted).
    pub fn identity(&self) -> String {
        match self.runtime {
            // Other credentials may be offered other tools; another client
            // certificate is another credential. (What the TLS files hold
            // counts too, but this reads no file: see `upstream::Reach`.)
            Runtime::Http => serde_json::to_string(&(&self.url, &self.headers, &self.tls)).unwrap_or_default(),
            Runtime::Sse | Runtime::Stdio => {
                let launch = (
                    (&self.runtime, &self.url, &self.command, &self.args, &self.env, &self.cwd, &self.tls),
                    (&self.start, self.idle_timeout_seconds, self.discovery_timeout_seconds),
                );
                serde_json::to_string(&launch).unwrap_or_default()
            }
        }
    }

    /// [`Self::reach_url`], parsed.
    pub fn reach_endpoint(&self, bridge_base: &str) -> Result<Endpoint, String> {
        parse_endpoint(&self.reach_url(bridge_base))
    }

    /// What it is, without what may hold secrets (user info, query,
    /// arguments), for status pages and logs.
    pub fn display_url(&self) -> String {
        if self.runtime == Runtime::Stdio {
            return format!("stdio: {}", self.command.as_deref().unwrap_or_default());
        }
        match self.endpoint() {
            Ok(ep) => {
                let scheme = if ep.tls { "https" } else { "http" };
                let path = ep.path.split('?').next().unwrap_or_default();
                format!("{scheme}://{}{path}", ep.authority())
            }
            Err(_) => "(invalid url)".into(),
        }
    }

    /// Its `url`, parsed; only valid on a validated catalog.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        parse_endpoint(&self.url)
    }
}

pub fn parse_endpoint(url: &str) -> Result<Endpoint, String> {
    // The URL parser drops tabs and newlines silently; a URL holding
    // them is a mistake (or an injection) to report, not to mend.
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains whitespace or control characters".into());
    }
    let url = Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(format!("scheme {other:?} is not http or https")),
    };
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(h) => h.to_string(),
        None => return Err("has no host".into()),
    };
    let port = url.port_or_known_default().ok_or("has no port")?;
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path = format!("{path}?{q}");
    }
    Ok(Endpoint { tls, host, port, path })
}
