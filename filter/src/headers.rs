//! HTTP header values, read and written: MCP's base64 wrapper for values
//! that are not plain ASCII, the media types of `Content-Type` and
//! `Accept`, the token of `Authorization: Bearer`, and text cut to a length
//! fit for a header.
//!
//! Pure string functions: this module decides nothing about a request (the
//! gateway does, with what these return) and depends on no other module.

use base64::Engine as _;

/// A header value as MCP encodes it: verbatim when it is printable ASCII
/// without edge spaces, else `=?base64?<standard base64 of UTF-8>?=`.
pub fn encode_header_value(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..0x7f).contains(&b)) && value.trim() == value && !is_b64_sentinel(value);
    if plain {
        value.to_string()
    } else {
        format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value))
    }
}

/// The inverse of [`encode_header_value`]; `None` for a malformed wrapper,
/// so that a corrupt header never matches a body by accident.
pub fn decode_header_value(value: &str) -> Option<String> {
    if !is_b64_sentinel(value) {
        return Some(value.to_string());
    }
    let inner = value.strip_prefix("=?base64?")?.strip_suffix("?=")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(inner).ok()?;
    String::from_utf8(bytes).ok()
}

fn is_b64_sentinel(value: &str) -> bool {
    value.starts_with("=?base64?") && value.ends_with("?=") && value.len() >= 11
}

/// The media type of a `Content-Type` (or of one `Accept` entry): what
/// comes before its parameters, trimmed.
pub fn media_type(value: &str) -> &str {
    // Cut by byte: a char pattern's search costs more than these few bytes.
    let end = value.bytes().position(|b| b == b';').unwrap_or(value.len());
    value.get(..end).unwrap_or_default().trim()
}

/// What an `Accept` header lets the gateway answer with, of the two media
/// types MCP uses. Quality values are not weighed: a listed type is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepts {
    /// `application/json` (or `application/*`, `*/*`).
    pub json: bool,
    /// `text/event-stream` (or `text/*`, `*/*`).
    pub sse: bool,
}

impl Accepts {
    pub fn of(accept: &str) -> Accepts {
        let mut out = Accepts::default();
        let mut rest = accept;
        while !rest.is_empty() {
            let end = rest.bytes().position(|b| b == b',').unwrap_or(rest.len());
            let media = media_type(rest.get(..end).unwrap_or_default());
            rest = rest.get(end + 1..).unwrap_or_default();
            let is = |name: &str| media.eq_ignore_ascii_case(name);
            if is("*/*") {
                out = Accepts { json: true, sse: true };
            } else if is("application/json") || is("application/*") {
                out.json = true;
            } else if is("text/event-stream") || is("text/*") {
                out.sse = true;
            }
        }
        out
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

/// Text from elsewhere (an upstream, a client, Envoy) cut to a length fit
/// for a header or an error message.
pub fn bounded(text: &str) -> String {
    const MAX: usize = 120;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_string(),
    }
}

/// The host of an address Envoy gives as `host:port` (`10.0.0.7:51234`,
/// `[::1]:51234`); an address without a port as it is.
pub fn address_host(address: &str) -> &str {
    match address.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && (!host.contains(':') || host.ends_with(']')) =>
        {
            host.trim_start_matches('[').trim_end_matches(']')
        }
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_use_mcps_base64_wrapper() {
        assert_eq!(encode_header_value("a__echo"), "a__echo");
        assert_eq!(encode_header_value("café"), "=?base64?Y2Fmw6k=?=");
        assert_eq!(encode_header_value(" x"), "=?base64?IHg=?=");
        for v in ["a__echo", "café", " x", "=?base64?abc?=", ""] {
            assert_eq!(decode_header_value(&encode_header_value(v)).as_deref(), Some(v));
        }
        assert_eq!(decode_header_value("=?base64?!!!?="), None);
    }

    #[test]
    fn accept_lists_are_read_by_media_type() {
        let check = |accept: &str, json: bool, sse: bool| assert_eq!(Accepts::of(accept), Accepts { json, sse }, "{accept}");
        check("application/json, text/event-stream", true, true);
        check("*/*", true, true);
        check("application/*, text/*;q=0.5", true, true);
        check("Application/JSON", true, false);
        check(" text/event-stream ; charset=utf-8", false, true);
        check("text/html", false, false);
        check("", false, false);
        assert_eq!(media_type("Application/JSON; charset=utf-8"), "Application/JSON");
    }

    #[test]
    fn addresses_lose_their_port() {
        assert_eq!(address_host("10.0.0.7:51234"), "10.0.0.7");
        assert_eq!(address_host("[::1]:51234"), "::1");
        assert_eq!(address_host("::1"), "::1");
        assert_eq!(address_host("10.0.0.7"), "10.0.0.7");
        assert_eq!(address_host("/run/envoy.sock"), "/run/envoy.sock");
    }

    #[test]
    fn bearer_tokens_and_bounded_text() {
        assert_eq!(bearer("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(bearer("  bearer   abc ").as_deref(), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
        assert_eq!(bounded("short"), "short");
        assert_eq!(bounded(&"é".repeat(200)).chars().count(), 121);
    }
}
