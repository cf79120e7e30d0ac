//! The reference IdP's admin route: disabling, enabling and purging users (RV-1), protected by
//! a bearer secret compared in constant time. With an SSF transmitter (RV-3) each change is
//! pushed to the receivers as the matching RISC event before the call answers (waiting at most
//! [`crate::ssf::PUSH_WAIT`]).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::servers::UserStatus;
use crate::ssf::{AccountEvent, SsfTransmitter};

/// `POST` `{"subject": "...", "action": "disable" | "enable" | "purge"}` with `Authorization:
/// Bearer <secret>`. Answers `{"subject", "disabled", "ssf": [{"endpoint", "outcome"}]}`, the
/// outcome per push stream `delivered`, `refused:<err>`, `failed` or `pending` (still
/// retrying after the wait).
pub const IDP_ADMIN_USERS_PATH: &str = "/admin/users";

/// `POST` `{"stream_id": "...", "status": "enabled" | "paused" | "disabled"}` with the same
/// credential: sets an SSF stream's status and pushes `stream-updated` to its receiver (RV-26).
/// Answers `{"stream_id", "status", "ssf": <outcome> | null}` (`null` when nothing changed),
/// 404 for an unknown stream or an IdP without SSF.
pub const IDP_ADMIN_STREAMS_PATH: &str = "/admin/streams";

#[derive(Clone)]
struct AdminState {
    status: UserStatus,
    secret: [u8; 32],
    transmitter: Option<SsfTransmitter>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The IdP admin router over `status`, for holders of `secret`; changes are pushed by
/// `transmitter` when there is one.
pub fn idp_admin_router(
    status: UserStatus,
    secret: &str,
    transmitter: Option<SsfTransmitter>,
) -> Router {
    let state = AdminState {
        status,
        secret: sha256(secret.as_bytes()),
        transmitter,
    };
    Router::new()
        .route(IDP_ADMIN_USERS_PATH, post(users))
        .route(IDP_ADMIN_STREAMS_PATH, post(streams))
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

/// The 401 answer when `headers` do not carry the admin secret.
fn unauthorized(state: &AdminState, headers: &HeaderMap) -> Option<Response> {
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
        return Some(resp);
    }
    None
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamAction {
    stream_id: String,
    status: String,
}

async fn streams(State(state): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = unauthorized(&state, &headers) {
        return refused;
    }
    let parsed = serde_json::from_slice::<StreamAction>(&body)
        .ok()
        .and_then(|a| Some((ema_grant::ssf_health::StreamStatus::parse(&a.status)?, a)));
    let Some((status, req)) = parsed else {
        return answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "invalid_request", "error_description":
                "the body must be {\"stream_id\": ..., \"status\": \"enabled\" | \"paused\" | \"disabled\"}"}),
        );
    };
    let not_found = || {
        answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not_found", "error_description": "no such stream"}),
        )
    };
    let Some(t) = state.transmitter.clone() else {
        return not_found();
    };
    let id = req.stream_id.clone();
    // The push runs to its end (bounded retries) even if the caller goes away.
    let task = tokio::spawn(async move { t.set_status(&id, status).await });
    match tokio::time::timeout(crate::ssf::PUSH_WAIT, task).await {
        Ok(Ok(None)) => not_found(),
        Ok(Ok(Some(delivery))) => {
            tracing::info!(target: "ema_examples::admin", status = status.as_str(), "stream status changed");
            answer(
                StatusCode::OK,
                serde_json::json!({
                    "stream_id": req.stream_id,
                    "status": status.as_str(),
                    "ssf": delivery.map(|d| d.name()),
                }),
            )
        }
        Ok(Err(_)) | Err(_) => answer(
            StatusCode::OK,
            serde_json::json!({
                "stream_id": req.stream_id,
                "status": status.as_str(),
                "ssf": "pending",
            }),
        ),
    }
}

async fn users(State(state): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = unauthorized(&state, &headers) {
        return refused;
    }
    let bad = |description: &str| {
        answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "invalid_request", "error_description": description}),
        )
    };
    let Ok(req) = serde_json::from_slice::<UserAction>(&body) else {
        return bad(
            "the body must be {\"subject\": ..., \"action\": \"disable\" | \"enable\" | \"purge\"}",
        );
    };
    if req.subject.is_empty() {
        return bad("the subject is empty");
    }
    let event = match req.action.as_str() {
        "disable" => {
            state.status.disable(&req.subject);
            AccountEvent::Disabled
        }
        "enable" => {
            state.status.enable(&req.subject);
            AccountEvent::Enabled
        }
        // A purged user stays unable to sign in or exchange tokens.
        "purge" => {
            state.status.disable(&req.subject);
            AccountEvent::Purged
        }
        _ => return bad("action must be disable, enable or purge"),
    };
    tracing::info!(target: "ema_examples::admin", action = %req.action, "user status changed");
    let ssf = match &state.transmitter {
        Some(t) => push(t.clone(), req.subject.clone(), event).await,
        None => Vec::new(),
    };
    answer(
        StatusCode::OK,
        serde_json::json!({
            "subject": req.subject,
            "disabled": state.status.is_disabled(&req.subject),
            "ssf": ssf,
        }),
    )
}

/// Pushes the change on every stream, waiting at most [`crate::ssf::PUSH_WAIT`]; past it the
/// push goes on in the background and the streams are reported `pending`.
async fn push(t: SsfTransmitter, subject: String, event: AccountEvent) -> Vec<serde_json::Value> {
    let endpoints: Vec<String> = t.streams().iter().map(|s| s.endpoint.clone()).collect();
    let task = tokio::spawn(async move { t.push(&subject, event).await });
    match tokio::time::timeout(crate::ssf::PUSH_WAIT, task).await {
        Ok(Ok(outcomes)) => outcomes
            .into_iter()
            .map(|(endpoint, d)| serde_json::json!({"endpoint": endpoint, "outcome": d.name()}))
            .collect(),
        Ok(Err(e)) => {
            tracing::error!(target: "ema_examples::ssf", error = %e, "the SSF push task failed");
            endpoints
                .into_iter()
                .map(|endpoint| serde_json::json!({"endpoint": endpoint, "outcome": "failed"}))
                .collect()
        }
        Err(_) => {
            tracing::warn!(target: "ema_examples::ssf", "SSF push still retrying after the wait");
            endpoints
                .into_iter()
                .map(|endpoint| serde_json::json!({"endpoint": endpoint, "outcome": "pending"}))
                .collect()
        }
    }
}
