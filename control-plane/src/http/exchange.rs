//! The token exchange the filter asks for: a caller's JWT exchanged for a
//! token of a server that takes each caller's own identity
//! (`oauth.grant: token_exchange`; `crate::credentials`).
//!
//! The filter sends, with its internal token:
//!
//! ```text
//! POST /mcp-exchange/<server>
//! authorization: Bearer <the caller's JWT, as Envoy verified it>
//! ```
//!
//! and is answered `200 {"access_token", "expires_in"}`, or an error
//! status with `{"error": "<why, in words for the caller>"}`: 400 without a
//! bearer token, 502 when the exchange failed. Neither token is logged.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::controller::Controller;

pub async fn exchange(State(c): State<Controller>, Path(server): Path<String>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
        .map(|(_, token)| token.trim().to_string());
    let Some(subject) = bearer else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "no caller token to exchange"}))).into_response();
    };
    match c.exchange(&server, &subject).await {
        Ok((access_token, expires_in)) => Json(json!({"access_token": access_token, "expires_in": expires_in})).into_response(),
        Err(error) => {
            tracing::warn!(server = %server, error = %error, "could not exchange a caller's token for the server");
            (StatusCode::BAD_GATEWAY, Json(json!({"error": error}))).into_response()
        }
    }
}
