//! How the control plane itself reaches a server: discovery, health checks,
//! the era bridge and the clients' GET streams all start from an
//! [`Upstream`], made in one place ([`Upstream::of`]), so that none of them
//! can forget what reaching a server takes.
//!
//! A server Envoy calls directly (`runtime: http`) is reached at its own URL
//! with its catalog headers (its credentials). A server the control plane
//! runs or connects to (`stdio`, `sse`) is reached at the control plane's own
//! pipe endpoint, which admits only holders of the internal token: the
//! filter carries it, and so must every internal caller.

use crate::catalog::Server;

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
}

impl Upstream {
    /// `bridge_base` is `http://host:port` of the control plane's admin API,
    /// where it serves the servers it runs; `internal_token` opens it.
    pub fn of(server: &Server, bridge_base: &str, internal_token: &str) -> Upstream {
        let headers = if server.piped() {
            vec![(mcp_filter::config::INTERNAL_HEADER.to_string(), internal_token.to_string())]
        } else {
            server.headers.0.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect()
        };
        Upstream { name: server.name.clone(), url: server.reach_url(bridge_base), shown: server.display_url(), headers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piped_servers_are_reached_with_the_internal_token_and_others_with_their_credentials() {
        let catalog = crate::catalog::load(
            "servers:\n  - {name: t, runtime: stdio, command: uvx}\n  - {name: o, runtime: sse, url: 'http://h:9/sse'}\n  - {name: h, url: 'http://h:1/mcp', headers: {X-Api-Key: k}}\n",
            |_| None,
        )
        .unwrap();
        let reach = |i: usize| Upstream::of(&catalog.servers[i], "http://127.0.0.1:18001", "secret");
        let token = vec![(mcp_filter::config::INTERNAL_HEADER.to_string(), "secret".to_string())];
        assert_eq!((reach(0).url.as_str(), &reach(0).headers), ("http://127.0.0.1:18001/upstream/t/mcp", &token));
        assert_eq!((reach(1).url.as_str(), &reach(1).headers), ("http://127.0.0.1:18001/upstream/o/mcp", &token));
        assert_eq!(reach(2).url, "http://h:1/mcp");
        assert_eq!(reach(2).headers, vec![("x-api-key".to_string(), "k".to_string())]);
        assert_eq!(reach(0).shown, "stdio: uvx", "arguments may hold secrets");
    }
}
