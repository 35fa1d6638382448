//! JSON-RPC 2.0 envelopes: borrowed parsing of what a client sent, and the
//! bytes of what the gateway answers.
//!
//! Parsing borrows from the request body: `id` and `params` stay raw JSON
//! text, so routing a `tools/call` reads `method` and `params.name` without
//! building a JSON tree, and the tool name can be replaced in place by its
//! byte span. This module never allocates a `serde_json::Value`.

use std::borrow::Cow;
use std::ops::Range;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::error::McpError;

/// One message a client POSTed.
#[derive(Debug)]
pub enum Message<'a> {
    /// A request: carries an id (raw JSON: a string or a number).
    Request { id: &'a RawValue, method: Cow<'a, str>, params: Option<&'a RawValue> },
    /// A notification: no id, no answer expected.
    Notification { method: Cow<'a, str> },
    /// A response to a request a server sent (sampling, elicitation,
    /// roots): its id, raw JSON, or `None` for `"id": null`.
    Response { id: Option<&'a RawValue> },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Cow<'a, str>>,
    // `Some(None)` is an explicit `"id": null`, which MCP forbids; `None` is
    // an absent id, which makes a notification.
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<Option<&'a RawValue>>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Parses one JSON-RPC message. Never panics, whatever the bytes.
pub fn parse(body: &[u8]) -> Result<Message<'_>, McpError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(McpError::Parse("empty request body".into())),
        Some(b'[') => return Err(McpError::InvalidRequest("JSON-RPC batches are not supported: send one message per POST".into())),
        Some(b'{') => {
            if nesting_exceeds(body, MAX_DEPTH) {
                return Err(McpError::InvalidRequest(format!("JSON nested deeper than {MAX_DEPTH} levels")));
            }
        }
        Some(_) => {
            // Distinguish valid JSON that is not an object from garbage.
            return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => McpError::InvalidRequest("the body must be a JSON-RPC object".into()),
                Err(e) => McpError::Parse(e.to_string()),
            });
        }
    }
    let env: Envelope<'_> = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => McpError::InvalidRequest(e.to_string()),
        _ => McpError::Parse(e.to_string()),
    })?;
    if env.jsonrpc.as_deref() != Some("2.0") {
        return Err(McpError::InvalidRequest(r#"missing "jsonrpc": "2.0""#.into()));
    }
    match (env.method, env.id) {
        (Some(method), Some(Some(id))) => {
            if !is_valid_id(id) {
                return Err(McpError::InvalidRequest("the request id must be a string or an integer".into()));
            }
            Ok(Message::Request { id, method, params: env.params })
        }
        (Some(_), Some(None)) => Err(McpError::InvalidRequest("the request id must not be null".into())),
        (Some(method), None) => Ok(Message::Notification { method }),
        (None, Some(id)) if env.result.is_some() || env.error.is_some() => Ok(Message::Response { id }),
        (None, _) => Err(McpError::InvalidRequest(r#"missing "method""#.into())),
    }
}

/// How deep a message may nest. serde_json's own recursion limit does not
/// apply inside a `RawValue`, and upstreams deserve the same protection.
pub const MAX_DEPTH: usize = 64;

/// Whether arrays and objects in `body` nest deeper than `limit`. One pass
/// over the bytes, skipping string contents; the JSON need not be valid.
fn nesting_exceeds(body: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The id of a message that is not a valid request, when one can still be
/// read (JSON-RPC: echo it in the error; `null` only when it cannot be).
pub fn readable_id(body: &[u8]) -> Option<&str> {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: &'a RawValue,
    }
    // serde also reads a struct from an array; only an object has an id.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') || nesting_exceeds(body, MAX_DEPTH) {
        return None;
    }
    let id = serde_json::from_slice::<IdOnly<'_>>(body).ok()?.id;
    is_valid_id(id).then(|| id.get())
}

pub fn is_valid_id(id: &RawValue) -> bool {
    let s = id.get();
    // serde_json validated the token; only its kind matters here.
    s.starts_with('"') || (s.bytes().all(|b| b.is_ascii_digit() || b == b'-') && !s.is_empty())
}

/// The span of `params.name` (the raw JSON string token, quotes included)
/// inside `body`, and its decoded value. `params` must borrow from `body`.
pub fn tool_name<'a>(body: &'a [u8], params: Option<&'a RawValue>) -> Result<(Cow<'a, str>, Range<usize>), McpError> {
    #[derive(Deserialize)]
    struct Named<'a> {
        #[serde(borrow)]
        name: &'a RawValue,
    }
    let params = params.ok_or_else(|| McpError::InvalidParams("missing params".into()))?;
    let named: Named<'_> = serde_json::from_str(params.get())
        .map_err(|e| McpError::InvalidParams(format!("params must be an object with a string \"name\": {e}")))?;
    string_token(body, named.name, "params.name")
}

/// A W3C `traceparent` a client put in `params._meta` (the MCP way to pass
/// a trace context), if it is well formed: `00-<32 hex>-<16 hex>-<2 hex>`.
/// Anything else, or none, is `None`; it never fails the request.
pub fn meta_traceparent(params: Option<&RawValue>) -> Option<String> {
    #[derive(Deserialize)]
    struct WithMeta<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<Meta<'a>>,
    }
    #[derive(Deserialize)]
    struct Meta<'a> {
        #[serde(borrow)]
        traceparent: Option<Cow<'a, str>>,
    }
    let p: WithMeta<'_> = serde_json::from_str(params?.get()).ok()?;
    let t = p.meta?.traceparent?;
    let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let lengths: Vec<usize> = t.split('-').map(|part| if hex(part) { part.len() } else { 0 }).collect();
    let well_formed = lengths == [2, 32, 16, 2];
    well_formed.then(|| t.into_owned())
}

/// `params.uri` of a resource request, and the span of its JSON string
/// token in `body` (where a normalised URI replaces it).
pub fn resource_uri<'a>(body: &'a [u8], params: Option<&'a RawValue>) -> Result<(Cow<'a, str>, Range<usize>), McpError> {
    #[derive(Deserialize)]
    struct WithUri<'a> {
        #[serde(borrow)]
        uri: &'a RawValue,
    }
    let params = params.ok_or_else(|| McpError::InvalidParams("missing params".into()))?;
    let p: WithUri<'_> = serde_json::from_str(params.get())
        .map_err(|e| McpError::InvalidParams(format!("params must be an object with a string \"uri\": {e}")))?;
    string_token(body, p.uri, "params.uri")
}

/// What `completion/complete` completes: `params.ref`.
#[derive(Debug, PartialEq)]
pub enum CompletionRef<'a> {
    /// A prompt's argument: its name and the span of the name in the body.
    Prompt(Cow<'a, str>, Range<usize>),
    /// A resource template's argument: its URI template and the span of it.
    Resource(Cow<'a, str>, Range<usize>),
}

pub fn completion_ref<'a>(body: &'a [u8], params: Option<&'a RawValue>) -> Result<CompletionRef<'a>, McpError> {
    #[derive(Deserialize)]
    struct WithRef<'a> {
        #[serde(borrow, rename = "ref")]
        reference: &'a RawValue,
    }
    #[derive(Deserialize)]
    struct Ref<'a> {
        #[serde(borrow, rename = "type")]
        kind: Cow<'a, str>,
        #[serde(borrow, default)]
        name: Option<&'a RawValue>,
        #[serde(borrow, default)]
        uri: Option<&'a RawValue>,
    }
    let params = params.ok_or_else(|| McpError::InvalidParams("missing params".into()))?;
    let with: WithRef<'_> =
        serde_json::from_str(params.get()).map_err(|e| McpError::InvalidParams(format!("params must be an object with a \"ref\": {e}")))?;
    let r: Ref<'_> = serde_json::from_str(with.reference.get())
        .map_err(|e| McpError::InvalidParams(format!("params.ref must be an object with a \"type\": {e}")))?;
    match (r.kind.as_ref(), r.name, r.uri) {
        ("ref/prompt", Some(name), _) => {
            let (name, span) = string_token(body, name, "params.ref.name")?;
            Ok(CompletionRef::Prompt(name, span))
        }
        ("ref/resource", _, Some(uri)) => {
            let (uri, span) = string_token(body, uri, "params.ref.uri")?;
            Ok(CompletionRef::Resource(uri, span))
        }
        (kind, _, _) => Err(McpError::InvalidParams(format!(
            "params.ref must be a ref/prompt with a name or a ref/resource with a uri (got type {kind:?})"
        ))),
    }
}

/// Decodes a raw JSON string token and finds it in `body`.
fn string_token<'a>(body: &'a [u8], raw: &'a RawValue, what: &str) -> Result<(Cow<'a, str>, Range<usize>), McpError> {
    let token = raw.get();
    let value: Cow<'_, str> = serde_json::from_str(token).map_err(|_| McpError::InvalidParams(format!("{what} must be a string")))?;
    let span = span_in(body, token).ok_or_else(|| McpError::Internal(format!("{what} outside the body")))?;
    Ok((value, span))
}

/// Where `part` (a slice of `whole`) lies inside `whole`.
pub fn span_in(whole: &[u8], part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// `body` with the bytes in `span` replaced by `with`.
pub fn splice(body: &[u8], span: Range<usize>, with: &[u8]) -> Vec<u8> {
    let (head, rest) = body.split_at(span.start.min(body.len()));
    let tail = rest.get(span.len()..).unwrap_or_default();
    let mut out = Vec::with_capacity(head.len() + with.len() + tail.len());
    out.extend_from_slice(head);
    out.extend_from_slice(with);
    out.extend_from_slice(tail);
    out
}

/// A JSON string literal for `s`, escaped as JSON requires.
pub fn json_string(s: &str) -> String {
    // Serialising a &str cannot fail; the fallback only keeps this total.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// The bytes of a successful response. `id` and `result` are raw JSON.
pub fn result_body(id: &str, result: &str) -> Vec<u8> {
    // Sized once: a list answer is tens of kilobytes, and `format!` would
    // copy it again each time its buffer doubled.
    const HEAD: &[u8] = br#"{"jsonrpc":"2.0","id":"#;
    const MIDDLE: &[u8] = br#","result":"#;
    let mut out = Vec::with_capacity(HEAD.len() + id.len() + MIDDLE.len() + result.len() + 1);
    out.extend_from_slice(HEAD);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(MIDDLE);
    out.extend_from_slice(result.as_bytes());
    out.push(b'}');
    out
}

/// The bytes of an error response; `id` is raw JSON, `None` when unknown.
pub fn error_body(id: Option<&str>, code: i32, message: &str) -> Vec<u8> {
    let id = id.unwrap_or("null");
    let message = json_string(message);
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}}}}}"#).into_bytes()
}

#[cfg(test)]
mod tests;
