//! Resource URIs in one canonical form, so that authorization rules (globs
//! over URIs) judge what a server will read, not how a client spelled it.
//!
//! [`normalize`] applies RFC 3986's syntax-based normalisation (section
//! 6.2.2: the case of the scheme, of a DNS host and of percent-encodings; unreserved
//! characters decoded; dot segments removed) and two equivalences that hold
//! for the paths servers read: runs of `/` are one `/`, and a `file` URI
//! names the local host whether it says `file:/p`, `file://localhost/p` or
//! `file:///p` (RFC 8089). It refuses what has no safe canonical form: a
//! `..` that climbs above the root, a separator or NUL hidden in a path
//! segment as `%2F`, `%5C` or `%00`, control characters, malformed
//! percent-encodings, and references without a scheme.
//!
//! Pure string functions: it decides nothing about a request (the gateway
//! does, with what this returns) and depends on no other module.

use thiserror::Error;

/// Why a URI has no canonical form the gateway will judge.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UriError {
    #[error("it is not an absolute URI (scheme:...)")]
    NoScheme,
    #[error("its path climbs above the root with \"..\"")]
    ClimbsAboveRoot,
    #[error("its path encodes a separator or NUL ({0}) inside a segment")]
    EncodedSeparator(&'static str),
    #[error("it has a malformed percent-encoding (% must be followed by two hex digits)")]
    BadPercent,
    #[error("it contains a control character")]
    Control,
}

/// Schemes whose authority is a DNS host (or `localhost`), in which case
/// does not matter. Other schemes' authorities are the server's own names
/// (`github://Owner/repo`), compared as they are written.
const DNS_HOSTS: [&str; 7] = ["http", "https", "ws", "wss", "ftp", "file", "git"];

/// The parts of a URI, borrowed: `scheme:` `//authority` `path` `?query` `#fragment`.
struct Parts<'a> {
    scheme: &'a str,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

fn split(uri: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = uri.split_once(':')?;
    let valid = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !valid {
        return None;
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            (after.get(..end), after.get(end..).unwrap_or_default())
        }
        None => (None, rest),
    };
    Some(Parts { scheme, authority, path, query, fragment })
}

/// The path of `uri` (what lies between its authority and its query), or
/// the empty string when it has no scheme. The fuzz target checks with it
/// that a normalised path has no dot segment.
pub fn path(uri: &str) -> &str {
    split(uri).map(|p| p.path).unwrap_or_default()
}

/// `uri` in canonical form, or why it has none. Idempotent: a canonical
/// URI is its own canonical form.
pub fn normalize(uri: &str) -> Result<String, UriError> {
    if uri.chars().any(char::is_control) {
        return Err(UriError::Control);
    }
    let parts = split(uri).ok_or(UriError::NoScheme)?;
    let scheme = parts.scheme.to_ascii_lowercase();
    let mut authority = match parts.authority {
        Some(a) if DNS_HOSTS.contains(&scheme.as_str()) => Some(lowercase_outside_escapes(&percent(a, false)?)),
        Some(a) => Some(percent(a, false)?),
        None => None,
    };
    let path = remove_dot_segments(&percent(parts.path, true)?)?;
    if scheme == "file" {
        // RFC 8089: no authority, or `localhost`, is the local host; the
        // canonical spelling is `file:///path`.
        match authority.as_deref() {
            Some("localhost") => authority = Some(String::new()),
            None if path.starts_with('/') => authority = Some(String::new()),
            _ => {}
        }
    }
    let mut out = String::with_capacity(uri.len());
    out.push_str(&scheme);
    out.push(':');
    if let Some(a) = &authority {
        out.push_str("//");
        out.push_str(a);
    }
    out.push_str(&path);
    if let Some(q) = parts.query {
        out.push('?');
        out.push_str(&percent(q, false)?);
    }
    if let Some(f) = parts.fragment {
        out.push('#');
        out.push_str(&percent(f, false)?);
    }
    Ok(out)
}

/// Percent-encodings normalised: unreserved characters decoded, the others
/// in upper-case hex. In a path, an encoded `/`, `\` or NUL is refused: a
/// server that decodes it would see a separator (or the end of a C string)
/// that the rules did not.
fn percent(text: &str, in_path: bool) -> Result<String, UriError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hex = |at: usize| bytes.get(at).and_then(|h| (*h as char).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else { return Err(UriError::BadPercent) };
        let decoded = (hi * 16 + lo) as u8;
        if in_path {
            match decoded {
                b'/' => return Err(UriError::EncodedSeparator("%2F")),
                b'\\' => return Err(UriError::EncodedSeparator("%5C")),
                0 => return Err(UriError::EncodedSeparator("%00")),
                _ => {}
            }
        }
        if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
            out.push(decoded);
        } else {
            out.extend_from_slice(format!("%{decoded:02X}").as_bytes());
        }
        i += 3;
    }
    // Only ASCII was rewritten, so what was UTF-8 still is.
    String::from_utf8(out).map_err(|_| UriError::BadPercent)
}

/// ASCII letters in lower case, but for the hex digits of `%XX` (which
/// [`percent`] writes in upper case).
fn lowercase_outside_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut escape = 0;
    for c in text.chars() {
        if escape > 0 {
            escape -= 1;
            out.push(c);
        } else if c == '%' {
            escape = 2;
            out.push(c);
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// RFC 3986's `remove_dot_segments`, refusing a `..` with nothing left to
/// remove (above the root) instead of dropping it, and with empty segments
/// inside the path dropped (`a//b` is `a/b` to a file system). A trailing
/// `/` stays.
fn remove_dot_segments(path: &str) -> Result<String, UriError> {
    if path.is_empty() {
        return Ok(String::new());
    }
    let absolute = path.starts_with('/');
    let body = if absolute { path.get(1..).unwrap_or_default() } else { path };
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing = false;
    let mut segments = body.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "" | "." => trailing = last,
            ".." => {
                kept.pop().ok_or(UriError::ClimbsAboveRoot)?;
                trailing = last;
            }
            s => {
                kept.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    if absolute {
        out.push('/');
    }
    out.push_str(&kept.join("/"));
    if trailing && !kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uri: &str, expected: Result<&str, UriError>) {
        let got = normalize(uri);
        assert_eq!(got.as_deref().map_err(Clone::clone), expected, "{uri}");
        if let Ok(n) = got {
            assert_eq!(normalize(&n).as_deref(), Ok(n.as_str()), "not idempotent: {uri} -> {n}");
        }
    }

    #[test]
    fn escapes_of_a_deny_on_file_etc_all_become_file_etc() {
        for uri in [
            "file:///etc/passwd",
            "file:///tmp/../etc/passwd",
            "file:////etc/passwd",
            "file:///etc//passwd",
            "file:///./etc/./passwd",
            "file:///%65tc/passwd",
            "file:///tmp/%2e%2e/etc/passwd",
            "file:///tmp/%2E%2E/etc/passwd",
            "FILE:///etc/passwd",
            "file:/etc/passwd",
            "file://localhost/etc/passwd",
            "file://LocalHost/etc/passwd",
        ] {
            check(uri, Ok("file:///etc/passwd"));
        }
    }

    #[test]
    fn what_has_no_safe_form_is_refused() {
        check("file:///../etc/passwd", Err(UriError::ClimbsAboveRoot));
        check("file:///tmp/../../etc/passwd", Err(UriError::ClimbsAboveRoot));
        check("file:///%2e%2e/etc/passwd", Err(UriError::ClimbsAboveRoot));
        check("file:///etc%2Fpasswd", Err(UriError::EncodedSeparator("%2F")));
        check("file:///tmp/..%2fetc/passwd", Err(UriError::EncodedSeparator("%2F")));
        check("file:///tmp/..%5Cetc", Err(UriError::EncodedSeparator("%5C")));
        check("file:///etc/passwd%00.txt", Err(UriError::EncodedSeparator("%00")));
        check("file:///etc/%zz", Err(UriError::BadPercent));
        check("file:///etc/%4", Err(UriError::BadPercent));
        check("file:///etc/\npasswd", Err(UriError::Control));
        check("/etc/passwd", Err(UriError::NoScheme));
        check("../etc/passwd", Err(UriError::NoScheme));
    }

    #[test]
    fn other_uris_keep_their_meaning() {
        check("test://static/resource/1", Ok("test://static/resource/1"));
        check("HTTPS://Example.COM/A/b/../C?q=%7e&x=/../y#Frag", Ok("https://example.com/A/C?q=~&x=/../y#Frag"));
        check("https://example.com", Ok("https://example.com"));
        check("https://example.com/dir/", Ok("https://example.com/dir/"));
        check("https://example.com/dir/sub/..", Ok("https://example.com/dir/"));
        check("https://h/caf%c3%a9", Ok("https://h/caf%C3%A9"));
        check("https://h/café", Ok("https://h/café"));
        check("https://%4A%4a.example/", Ok("https://jj.example/"));
        check("https://h/%252F", Ok("https://h/%252F"));
        check("urn:isbn:0451450523", Ok("urn:isbn:0451450523"));
        check("notes://{id}/text", Ok("notes://{id}/text"));
        check("file:///{path}", Ok("file:///{path}"));
        // Not the local host: the authority stays.
        check("file://server/share/x", Ok("file://server/share/x"));
        // A scheme of the server's own: its authority is a name, case and all.
        check("github://Owner/Repo/../x", Ok("github://Owner/x"));
    }

    #[test]
    fn the_path_is_what_lies_between_authority_and_query() {
        assert_eq!(path("file:///etc/passwd?x#y"), "/etc/passwd");
        assert_eq!(path("https://h"), "");
        assert_eq!(path("urn:a:b"), "a:b");
        assert_eq!(path("no scheme"), "");
    }
}
