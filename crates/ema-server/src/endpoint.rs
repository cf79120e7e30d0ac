//! Glue between axum and the sans-I/O grants: requests in, `http::Response<Vec<u8>>` out.

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use ema_grant::{ErrorCode, OAuthError};
use http::{HeaderValue, StatusCode, header};

/// Turns a grant's response into an axum response.
pub(crate) fn into_axum(resp: http::Response<Vec<u8>>) -> Response {
    resp.map(Body::from)
}

/// Collects a token request's body: 413 past the cap, 400 if it cannot be read.
pub(crate) async fn read_request(
    request: http::Request<Body>,
) -> Result<http::Request<Bytes>, Response> {
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, ema_grant::form::DEFAULT_MAX_BODY).await {
        Ok(bytes) => Ok(http::Request::from_parts(parts, bytes)),
        Err(e) => {
            // The limit error sits somewhere in the source chain (never matched by its text).
            let too_large =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|s| s.is::<http_body_util::LengthLimitError>());
            let mut resp = oauth_error(
                ErrorCode::InvalidRequest,
                "request body too large or unreadable",
            );
            if too_large {
                *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            }
            Err(resp)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn post(body: Body) -> http::Request<Body> {
        http::Request::post("/token").body(body).unwrap()
    }

    /// The length limit is found by its type in the error's source chain, never by its text:
    /// 413 past the cap, 400 for a body that fails otherwise, the body itself below the cap.
    #[tokio::test]
    async fn body_limit_is_413_by_type_other_failures_400() {
        let max = ema_grant::form::DEFAULT_MAX_BODY;
        let big = read_request(post(Body::from(vec![b'x'; max + 1]))).await;
        assert_eq!(
            big.err().map(|r| r.status()),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
        let broken = Body::from_stream(failing_stream());
        let failed = read_request(post(broken)).await;
        assert_eq!(
            failed.err().map(|r| r.status()),
            Some(StatusCode::BAD_REQUEST)
        );
        let ok = read_request(post(Body::from(vec![b'x'; max]))).await;
        assert_eq!(ok.ok().map(|r| r.body().len()), Some(max));
    }

    /// A body stream whose first chunk is an I/O error.
    fn failing_stream()
    -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        struct Failing;
        impl futures_core::Stream for Failing {
            type Item = Result<Bytes, std::io::Error>;
            fn poll_next(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Self::Item>> {
                std::task::Poll::Ready(Some(Err(std::io::Error::other("reset"))))
            }
        }
        Failing
    }
}
