//! Who may call from where: the `Host` a request names and the browser
//! `Origin` it comes from, read as RFC 3986 and RFC 6454 write them, for the
//! DNS-rebinding defence (`Gateway::check_host`, `Gateway::check_origin`).

/// The host part of an authority (`host`, `host:port`, `[v6]:port`),
/// without brackets.
pub fn authority_host(authority: &str) -> &str {
    split_authority(authority).0
}

/// Whether `host` is this machine by name or address: `localhost` and its
/// subdomains (RFC 6761), 127.0.0.0/8, `::1`.
pub fn is_loopback_name(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost")
        || host.len() > 10 && host.get(host.len() - 10..).is_some_and(|t| t.eq_ignore_ascii_case(".localhost"))
    {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

/// Whether the browser origin `origin` (`scheme://host[:port]`) is the one
/// the request names as its host (`host[:port]`): the gateway's own page. A
/// missing port is the scheme's default on the origin's side, and matches
/// that default on the host's side.
pub fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let (origin_host, origin_port) = split_authority(rest.trim_end_matches('/'));
    let (host_host, host_port) = split_authority(host);
    origin_host.eq_ignore_ascii_case(host_host) && origin_port.unwrap_or(default) == host_port.unwrap_or(default)
}

/// `(host, port)` of an authority.
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if let Some(v6) = authority.strip_prefix('[') {
        return match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':').filter(|p| !p.is_empty())),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        Some((host, _)) if host.contains(':') => (authority, None),
        Some((host, port)) => (host, Some(port).filter(|p| !p.is_empty())),
        None => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses() {
        for host in ["localhost", "LOCALHOST", "localhost.", "app.localhost", "127.0.0.1", "127.1.2.3", "::1"] {
            assert!(is_loopback_name(host), "{host}");
        }
        for host in ["evil.example.com", "localhost.evil.com", "mylocalhost", "10.0.0.1", "0.0.0.0", "::", ""] {
            assert!(!is_loopback_name(host), "{host}");
        }
        assert_eq!(authority_host("localhost:4444"), "localhost");
        assert_eq!(authority_host("[::1]:4444"), "::1");
        assert_eq!(authority_host("[::1]"), "::1");
        assert_eq!(authority_host("::1"), "::1");
        assert_eq!(authority_host("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn the_gateways_own_origin_is_the_host_it_is_called_by() {
        assert!(same_origin("http://localhost:4444", "localhost:4444"));
        assert!(same_origin("http://LocalHost:4444/", "localhost:4444"));
        assert!(same_origin("https://gw.example", "gw.example"));
        assert!(same_origin("https://gw.example", "gw.example:443"));
        assert!(same_origin("http://[::1]:4444", "[::1]:4444"));
        assert!(!same_origin("http://localhost:3000", "localhost:4444"), "another port is another origin");
        assert!(!same_origin("http://evil.example.com:4444", "localhost:4444"));
        assert!(!same_origin("https://gw.example", "gw.example:80"));
        assert!(!same_origin("null", "localhost:4444"));
        assert!(!same_origin("file://x", "x"));
    }
}
