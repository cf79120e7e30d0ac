//! The reference IdP's admin route: disabling and enabling users (RV-1), protected by a bearer
//! secret compared in constant time.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::servers::UserStatus;

/// `POST` `{"subject": "...", "action": "disable" | "enable"}` with `Authorization: Bearer
/// <secret>`.
pub const IDP_ADMIN_USERS_PATH: &str = "/admin/users";

#[derive(Clone)]
struct AdminState {
    status: UserStatus,
    secret: [u8; 32],
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The IdP admin router over `status`, for holders of `secret`.
pub fn idp_admin_router(status: UserStatus, secret: &str) -> Router {
    let state = AdminState {
        status,
        secret: sha256(secret.as_bytes()),
    };
    Router::new()
        .route(IDP_ADMIN_USERS_PATH, post(users))
        .with_state(state)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UserAction {
    subject: String,
    action: String,
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn users(State(state): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        &sha256(presented.as_bytes()),
        &state.secret,
    )
    .is_err()
    {
        let mut resp = answer(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "invalid_token", "error_description": "admin credentials required"}),
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"admin\""),
        );
        return resp;
    }
    let bad = |description: &str| {
        answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "invalid_request", "error_description": description}),
        )
    };
    let Ok(req) = serde_json::from_slice::<UserAction>(&body) else {
        return bad("the body must be {\"subject\": ..., \"action\": \"disable\" | \"enable\"}");
    };
    if req.subject.is_empty() {
        return bad("the subject is empty");
    }
    match req.action.as_str() {
        "disable" => state.status.disable(&req.subject),
        "enable" => state.status.enable(&req.subject),
        _ => return bad("action must be disable or enable"),
    }
    tracing::info!(target: "ema_examples::admin", action = %req.action, "user status changed");
    answer(
        StatusCode::OK,
        serde_json::json!({"subject": req.subject, "disabled": state.status.is_disabled(&req.subject)}),
    )
}
