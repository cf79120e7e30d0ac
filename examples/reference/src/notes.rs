//! "notes": a mock downstream provider, the third-party system a tool acts on for the user. An
//! OAuth 2.0 authorization server (authorization code with PKCE S256 for a confidential
//! client, refresh tokens rotated at each use, RFC 7009 revocation, RFC 9207 `iss` on the
//! redirect) in front of a small per-user notes API. It auto-approves one configured test user,
//! so that the demo and the tests can play the browser.
//!
//! - `GET /authorize`: checks `client_id` and the exact `redirect_uri` (a mismatch gets a 400
//!   page, never a redirect), then `response_type=code`, `state` and an S256
//!   `code_challenge` (else the error is sent to the redirect URI); redirects with `code`,
//!   `state` and `iss`. Codes live 60 seconds and work once.
//! - `POST /token`: `authorization_code` (with `redirect_uri` and `code_verifier`) and
//!   `refresh_token`; the client authenticates with `client_secret_basic` or
//!   `client_secret_post`. A refresh rotates: the old refresh token stops working, and
//!   presenting it again revokes the whole grant (reuse detection).
//! - `POST /revoke` (RFC 7009): an access or refresh token; revoking a refresh token ends its
//!   grant's access tokens too. Unknown tokens answer 200 as the RFC says.
//! - `GET /api/notes`, `POST /api/notes` (`{"text": ...}`): the bearer's notes
//!   (`notes.read`, `notes.write`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ema_grant::form::{Form, encode_component};
use ema_jose::{Clock, UnixTime};
use serde_json::json;

/// How long an authorization code is valid.
pub const CODE_LIFETIME_SECS: u64 = 60;

/// The scopes the provider knows.
pub const SCOPES: [&str; 2] = ["notes.read", "notes.write"];

/// The provider's configuration.
#[derive(Debug, Clone)]
pub struct NotesConfig {
    /// Its issuer: the public URL it is served at.
    pub issuer: String,
    /// The one registered client (the MCP server).
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// Its registered redirect URIs, matched exactly.
    pub redirect_uris: Vec<String>,
    /// The user every authorization request is approved for.
    pub user: String,
    /// Access-token lifetime in seconds: short, so that a demo shows a refresh.
    pub access_token_lifetime_secs: u64,
}

struct CodeGrant {
    redirect_uri: String,
    challenge: String,
    user: String,
    scopes: Vec<String>,
    expires: UnixTime,
}

struct AccessGrant {
    user: String,
    scopes: Vec<String>,
    expires: UnixTime,
    family: u64,
}

struct RefreshGrant {
    user: String,
    scopes: Vec<String>,
    family: u64,
}

#[derive(Default)]
struct Inner {
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, AccessGrant>,
    refresh: HashMap<String, RefreshGrant>,
    /// Refresh tokens already rotated away, by grant family (reuse detection).
    spent: HashMap<String, u64>,
    next_family: u64,
    notes: HashMap<String, Vec<String>>,
    /// Every access and refresh token ever issued (for tests proving none leaks).
    issued: Vec<String>,
    refreshes: u64,
    revocations: u64,
}

/// The running provider's state, shared by its routes: for tests and the demo to look at.
#[derive(Clone)]
pub struct NotesProvider {
    cfg: Arc<NotesConfig>,
    clock: Arc<dyn Clock>,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for NotesProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotesProvider")
            .field("issuer", &self.cfg.issuer)
            .finish_non_exhaustive()
    }
}

fn random() -> String {
    ema_jose::random_id().unwrap_or_else(|_| "notes-fallback-value".into())
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

impl NotesProvider {
    /// A provider with no grants and no notes.
    pub fn new(cfg: NotesConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            cfg: Arc::new(cfg),
            clock,
            inner: Arc::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NotesConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refresh-token grants served so far.
    pub fn refreshes(&self) -> u64 {
        self.lock().refreshes
    }

    /// Tokens revoked at `/revoke` so far.
    pub fn revocations(&self) -> u64 {
        self.lock().revocations
    }

    /// Every access and refresh token issued so far: for tests that prove none reaches the
    /// agent, a page or a log.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().issued.clone()
    }

    /// Live (unexpired, unrevoked) access tokens plus refresh tokens of `user`.
    pub fn live_tokens(&self, user: &str) -> usize {
        let now = self.clock.now();
        let inner = self.lock();
        inner
            .access
            .values()
            .filter(|a| a.user == user && a.expires > now)
            .count()
            + inner.refresh.values().filter(|r| r.user == user).count()
    }

    /// The router: `/authorize`, `/token`, `/revoke`, `/api/notes`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .route("/api/notes", get(list_notes).post(add_note))
            .with_state(self.clone())
    }

    /// Checks the client's credentials (exactly one of Basic and the body).
    fn client_ok(&self, headers: &HeaderMap, form: &Form) -> bool {
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(b).ok()
            })
            .and_then(|raw| String::from_utf8(raw).ok());
        let from_body = (form.get("client_id"), form.get("client_secret"));
        let (id, secret) = match (basic, from_body) {
            (Some(pair), (None, None)) => {
                let Some((id, secret)) = pair.split_once(':') else {
                    return false;
                };
                let decode = |s: &str| {
                    Form::parse(format!("v={s}").as_bytes(), 4096)
                        .ok()
                        .and_then(|f| f.get("v").map(str::to_owned))
                };
                match (decode(id), decode(secret)) {
                    (Some(id), Some(secret)) => (id, secret),
                    _ => return false,
                }
            }
            (None, (Some(id), Some(secret))) => (id.to_owned(), secret.to_owned()),
            _ => return false,
        };
        id == self.cfg.client_id && secret == self.cfg.client_secret
    }

    /// Issues an access token (and a rotated refresh token) for a grant family.
    fn issue(&self, inner: &mut Inner, user: &str, scopes: Vec<String>, family: u64) -> Response {
        let access = random();
        let refresh = random();
        inner.issued.extend([access.clone(), refresh.clone()]);
        let lifetime = self.cfg.access_token_lifetime_secs;
        inner.access.insert(
            access.clone(),
            AccessGrant {
                user: user.to_owned(),
                scopes: scopes.clone(),
                expires: self.clock.now().plus(lifetime),
                family,
            },
        );
        inner.refresh.insert(
            refresh.clone(),
            RefreshGrant {
                user: user.to_owned(),
                scopes: scopes.clone(),
                family,
            },
        );
        (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": lifetime,
                "refresh_token": refresh,
                "scope": scopes.join(" "),
            })),
        )
            .into_response()
    }

    /// Ends every token of grant `family`.
    fn end_family(inner: &mut Inner, family: u64) {
        inner.access.retain(|_, a| a.family != family);
        inner.refresh.retain(|_, r| r.family != family);
    }

    /// The user and scopes of a live bearer token.
    fn bearer(&self, headers: &HeaderMap) -> Option<(String, Vec<String>)> {
        let token = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        let now = self.clock.now();
        let inner = self.lock();
        let grant = inner.access.get(token)?;
        (grant.expires > now).then(|| (grant.user.clone(), grant.scopes.clone()))
    }
}

fn page(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_owned(),
    )
        .into_response()
}

fn redirect(to: &str, params: &[(&str, &str)]) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_component(v)))
        .collect();
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("{to}{sep}{}", query.join("&")))],
    )
        .into_response()
}

async fn authorize(State(p): State<NotesProvider>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let Ok(form) = Form::parse(query.as_bytes(), 8 * 1024) else {
        return page(StatusCode::BAD_REQUEST, "malformed authorization request");
    };
    if form.get("client_id") != Some(p.cfg.client_id.as_str()) {
        return page(StatusCode::BAD_REQUEST, "unknown client");
    }
    let Some(redirect_uri) = form
        .get("redirect_uri")
        .filter(|r| p.cfg.redirect_uris.iter().any(|known| known == r))
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "the redirect URI is not registered",
        );
    };
    let state = form.get("state").unwrap_or_default();
    let iss = p.cfg.issuer.as_str();
    let fail = |code: &str| {
        redirect(
            redirect_uri,
            &[("error", code), ("state", state), ("iss", iss)],
        )
    };
    if form.get("response_type") != Some("code") {
        return fail("unsupported_response_type");
    }
    if state.is_empty() || form.get("code_challenge_method") != Some("S256") {
        return fail("invalid_request");
    }
    let Some(challenge) = form.get("code_challenge").filter(|c| c.len() == 43) else {
        return fail("invalid_request");
    };
    let scopes: Vec<String> = match form.get("scope") {
        None => SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        Some(s) => s.split(' ').map(str::to_owned).collect(),
    };
    if scopes.iter().any(|s| !SCOPES.contains(&s.as_str())) {
        return fail("invalid_scope");
    }
    let code = random();
    p.lock().codes.insert(
        code.clone(),
        CodeGrant {
            redirect_uri: redirect_uri.to_owned(),
            challenge: challenge.to_owned(),
            user: p.cfg.user.clone(),
            scopes,
            expires: p.clock.now().plus(CODE_LIFETIME_SECS),
        },
    );
    redirect(
        redirect_uri,
        &[("code", &code), ("state", state), ("iss", iss)],
    )
}

async fn token(State(p): State<NotesProvider>, headers: HeaderMap, body: String) -> Response {
    let Ok(form) = Form::parse(body.as_bytes(), 16 * 1024) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "malformed form");
    };
    if !p.client_ok(&headers, &form) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let now = p.clock.now();
    let mut inner = p.lock();
    match form.get("grant_type") {
        Some("authorization_code") => {
            // One use: the code is gone whatever the outcome.
            let Some(grant) = form.get("code").and_then(|c| inner.codes.remove(c)) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown or used code",
                );
            };
            if grant.expires <= now {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "the code expired");
            }
            if form.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri mismatch",
                );
            }
            let verified = form
                .get("code_verifier")
                .is_some_and(|v| ema_grant::pkce_challenge(v) == grant.challenge);
            if !verified {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verification failed",
                );
            }
            inner.next_family += 1;
            let family = inner.next_family;
            p.issue(&mut inner, &grant.user, grant.scopes, family)
        }
        Some("refresh_token") => {
            let Some(presented) = form.get("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "no refresh_token",
                );
            };
            match inner.refresh.remove(presented) {
                Some(grant) => {
                    inner.spent.insert(presented.to_owned(), grant.family);
                    inner.refreshes += 1;
                    p.issue(&mut inner, &grant.user, grant.scopes, grant.family)
                }
                None => {
                    // A rotated-away token presented again: the grant is ended.
                    if let Some(family) = inner.spent.get(presented).copied() {
                        NotesProvider::end_family(&mut inner, family);
                    }
                    oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "unknown, rotated or revoked refresh token",
                    )
                }
            }
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "authorization_code or refresh_token",
        ),
    }
}

async fn revoke(State(p): State<NotesProvider>, headers: HeaderMap, body: String) -> Response {
    let Ok(form) = Form::parse(body.as_bytes(), 16 * 1024) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "malformed form");
    };
    if !p.client_ok(&headers, &form) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let Some(token) = form.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "no token");
    };
    let mut inner = p.lock();
    if let Some(grant) = inner.refresh.remove(token) {
        NotesProvider::end_family(&mut inner, grant.family);
        inner.revocations += 1;
    } else if inner.access.remove(token).is_some() {
        inner.revocations += 1;
    }
    StatusCode::OK.into_response()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        axum::Json(json!({"error": "invalid_token"})),
    )
        .into_response()
}

fn insufficient(scope: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        [(
            header::WWW_AUTHENTICATE,
            format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
        )],
        axum::Json(json!({"error": "insufficient_scope"})),
    )
        .into_response()
}

async fn list_notes(State(p): State<NotesProvider>, headers: HeaderMap) -> Response {
    let Some((user, scopes)) = p.bearer(&headers) else {
        return unauthorized();
    };
    if !scopes.iter().any(|s| s == "notes.read") {
        return insufficient("notes.read");
    }
    let notes = p.lock().notes.get(&user).cloned().unwrap_or_default();
    axum::Json(json!({"user": user, "notes": notes})).into_response()
}

#[derive(serde::Deserialize)]
struct NewNote {
    text: String,
}

async fn add_note(State(p): State<NotesProvider>, headers: HeaderMap, body: String) -> Response {
    let Some((user, scopes)) = p.bearer(&headers) else {
        return unauthorized();
    };
    if !scopes.iter().any(|s| s == "notes.write") {
        return insufficient("notes.write");
    }
    let Ok(NewNote { text }) = serde_json::from_str::<NewNote>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "expected {\"text\": ...}"})),
        )
            .into_response();
    };
    let text: String = text.chars().take(500).collect();
    let mut inner = p.lock();
    let notes = inner.notes.entry(user).or_default();
    notes.push(text);
    let id = notes.len();
    (StatusCode::CREATED, axum::Json(json!({"id": id}))).into_response()
}
