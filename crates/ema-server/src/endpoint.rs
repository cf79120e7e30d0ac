//! Glue between axum and the sans-I/O grants: requests in, `http::Response<Vec<u8>>` out.

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use ema_grant::{ErrorCode, OAuthError};
use http::{HeaderValue, StatusCode, header};

/// Turns a grant's response into an axum response.
pub(crate) fn into_axum(resp: http::Response<Vec<u8>>) -> Response {
    resp.map(Body::from)
}

/// Rebuilds an `http::Request` around a collected body, for the grants.
pub(crate) fn with_body(parts: http::request::Parts, body: Bytes) -> http::Request<Bytes> {
    http::Request::from_parts(parts, body)
}

/// A JSON document response with a short public cache lifetime (metadata, JWKS).
pub(crate) fn public_json(value: &serde_json::Value, max_age: u32) -> Response {
    let mut resp = (StatusCode::OK, value.to_string()).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    resp
}

/// An OAuth error as an axum response.
pub(crate) fn oauth_error(code: ErrorCode, description: &'static str) -> Response {
    into_axum(OAuthError::new(code, description).to_response())
}
