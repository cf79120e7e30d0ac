//! Limits every route gets: body size, request time, JSON 404s, and request logging that never
//! records query strings, headers or bodies (SEC-10).

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Per-route limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest request body accepted (default 64 KiB); larger bodies get 413.
    pub max_body: usize,
    /// The longest a request may take (default 10 s); slower ones get 408.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 64 * 1024,
            timeout: Duration::from_secs(10),
        }
    }
}

async fn not_found() -> Response {
    let mut resp = (
        StatusCode::NOT_FOUND,
        r#"{"error":"not_found","error_description":"no such endpoint"}"#,
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Applies the limits, a JSON 404 fallback, and path-only request logging to `router`.
pub fn harden(router: Router, limits: &Limits) -> Router {
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits.max_body))
        .layer(RequestBodyLimitLayer::new(limits.max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.timeout,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &http::Request<_>| {
                // The path only: a query string could carry a token a client put there by mistake.
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
}
