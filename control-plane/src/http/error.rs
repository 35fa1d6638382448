//! How the control plane's MCP-facing endpoints (the era bridge, the
//! clients' GET streams and the upstream sessions opened for them, the
//! pipes of the servers it runs) refuse: one enum, one mapping to an HTTP
//! status and a JSON-RPC error, as the filter's `McpError::code_and_status`
//! is for the filter.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// A refusal of one of the control plane's MCP-facing endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The body is not a JSON-RPC message.
    NotJson(String),
    /// The request did not come through the filter (no internal token).
    InternalOnly,
    /// The server named is not in the catalog served.
    UnknownServer(String),
    /// The bridge could not reach the server, or it refused the session.
    Upstream { server: String, reason: String },
    /// A server the control plane runs cannot take the call (not running,
    /// stopped, closed during the call): an answer to the call, with HTTP 200.
    Unavailable(String),
    /// A resumption names a stream this session has not.
    NothingToResume(String),
    /// A caller or a session holds as many GET streams as `gateway.streams`
    /// allows (`setting`).
    TooManyStreams { whose: String, max: u32, setting: &'static str },
    /// The gateway session id does not open (expired, forged, sealed under
    /// a key no longer served): why.
    UnknownSession(String),
    /// An internal request the filter got wrong: what is wrong.
    BadRequest(String),
    /// A body over `max` bytes.
    TooLarge { max: usize },
}

impl Refusal {
    /// The HTTP status and the JSON-RPC error code.
    pub fn status_and_code(&self) -> (StatusCode, i32) {
        match self {
            Refusal::NotJson(_) => (StatusCode::BAD_REQUEST, -32700),
            Refusal::InternalOnly => (StatusCode::FORBIDDEN, -32003),
            Refusal::UnknownServer(_) => (StatusCode::NOT_FOUND, -32603),
            Refusal::Upstream { .. } => (StatusCode::BAD_GATEWAY, -32603),
            Refusal::Unavailable(_) => (StatusCode::OK, -32603),
            Refusal::NothingToResume(_) => (StatusCode::NOT_FOUND, -32001),
            Refusal::TooManyStreams { .. } => (StatusCode::TOO_MANY_REQUESTS, -32029),
            Refusal::UnknownSession(_) => (StatusCode::NOT_FOUND, -32001),
            Refusal::BadRequest(_) => (StatusCode::BAD_REQUEST, -32600),
            Refusal::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, -32600),
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::NotJson(why) => format!("the body is not a JSON-RPC message: {why}"),
            Refusal::InternalOnly => "this endpoint is internal to the gateway: call the MCP endpoint instead".into(),
            Refusal::UnknownServer(name) => format!("server {name:?} is not in the catalog"),
            Refusal::Upstream { server, reason } => format!("server {server:?}: {reason}"),
            Refusal::Unavailable(why) => why.clone(),
            Refusal::NothingToResume(server) => format!("no stream of server {server:?} to resume in this session"),
            Refusal::TooManyStreams { whose, max, setting } => format!(
                "too many GET streams: {whose} already holds {max}, the most gateway.streams.{setting} allows; close one before opening another"
            ),
            Refusal::UnknownSession(why) => format!("the session id does not open ({why}): the client must initialize a new session"),
            Refusal::BadRequest(why) => why.clone(),
            Refusal::TooLarge { max } => format!("the body is longer than {max} bytes, the most this endpoint takes"),
        }
    }

    /// The whole HTTP answer, for the request with JSON-RPC id `id`.
    pub fn reply(&self, id: &Value) -> Response {
        let (status, code) = self.status_and_code();
        let body = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": self.message() } });
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

impl IntoResponse for Refusal {
    /// A refusal that answers no request in particular (`id: null`).
    fn into_response(self) -> Response {
        self.reply(&Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status_and_code() {
        let cases = [
            (Refusal::NotJson("x".into()), 400, -32700),
            (Refusal::InternalOnly, 403, -32003),
            (Refusal::UnknownServer("s".into()), 404, -32603),
            (Refusal::Upstream { server: "s".into(), reason: "down".into() }, 502, -32603),
            (Refusal::Unavailable("stopped".into()), 200, -32603),
            (Refusal::NothingToResume("s".into()), 404, -32001),
            (Refusal::TooManyStreams { whose: "caller \"a\"".into(), max: 2, setting: "max_per_caller" }, 429, -32029),
            (Refusal::UnknownSession("session expired".into()), 404, -32001),
            (Refusal::BadRequest("no id".into()), 400, -32600),
            (Refusal::TooLarge { max: 4096 }, 413, -32600),
        ];
        for (refusal, status, code) in cases {
            assert_eq!(refusal.status_and_code(), (StatusCode::from_u16(status).unwrap(), code), "{refusal:?}");
        }
        assert_eq!(Refusal::Upstream { server: "s".into(), reason: "down".into() }.message(), "server \"s\": down");
    }
}
