//! The pipes: a stateless Streamable HTTP endpoint, `POST
//! /upstream/<name>/mcp`, for each server the control plane runs (stdio) or
//! connects to (legacy SSE). Envoy reaches it like any upstream, through the
//! server's own cluster; the runtime (`crate::runtime`) holds the one shared
//! connection the requests go through.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::error::Refusal;
use crate::runtime::Runtimes;

/// `POST /upstream/<name>/mcp`: a stateless Streamable HTTP endpoint for a
/// server the control plane runs or connects to.
pub async fn endpoint(State(runtimes): State<Arc<Runtimes>>, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let message: Value = match serde_json::from_slice(&body) {
        Ok(m @ Value::Object(_)) => m,
        Ok(_) => return Refusal::NotJson("not a JSON object".into()).into_response(),
        Err(e) => return Refusal::NotJson(e.to_string()).into_response(),
    };
    let id = message.get("id").cloned();
    let method = message.get("method").and_then(Value::as_str).map(str::to_string);
    let (Some(id), Some(method)) = (id, method) else {
        // Notifications and answers have nowhere to go on a shared
        // connection: the gateway initialised it itself, and it relays no
        // server requests.
        return StatusCode::ACCEPTED.into_response();
    };
    let use_counts = !headers.contains_key(crate::discovery::DISCOVERY_HEADER);
    let (pipe, init) = match runtimes.connection(&name, use_counts).await {
        Ok(c) => c,
        Err(e) => return Refusal::Unavailable(e.to_string()).reply(&id),
    };
    match method.as_str() {
        "initialize" => {
            let body = json!({ "jsonrpc": "2.0", "id": id, "result": *init });
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        }
        "ping" => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                json!({"jsonrpc": "2.0", "id": id, "result": {}}).to_string(),
            )
                .into_response()
        }
        _ => {}
    }
    let mut call = match pipe.call(message).await {
        Ok(call) => call,
        Err(e) => return Refusal::Unavailable(e.to_string()).reply(&id),
    };
    let first = match call.messages.recv().await {
        Some(m) => m,
        None => return Refusal::Unavailable(format!("server {name:?} closed during the call")).reply(&id),
    };
    let is_final = |m: &Value| m.get("method").is_none();
    if is_final(&first) {
        return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], first.to_string()).into_response();
    }
    // Progress before the answer: stream, event by event.
    let events = futures::stream::unfold((Some(first), call, false), move |(next, mut call, done)| async move {
        if done {
            return None;
        }
        let message = match next {
            Some(m) => m,
            None => call.messages.recv().await?,
        };
        let last = is_final(&message);
        let event = Bytes::from(format!("event: message\ndata: {message}\n\n"));
        Some((Ok::<_, Infallible>(event), (None, call, last)))
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(events))
        .into_response()
}
