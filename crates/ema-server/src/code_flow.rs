//! The authorization server's MCP authorization code flow: the authorization endpoint, the
//! callback from the enterprise IdP (the AS is an OpenID Connect relying party of the IdP), and
//! the `authorization_code` grant at the token endpoint. Mounted by
//! [`AuthorizationServerRouterBuilder::code_flow`](crate::AuthorizationServerRouterBuilder::code_flow).
//!
//! The server keeps nothing per pending sign-in or per code: both are sealed and carried by the
//! browser ([`ema_grant::sign_in`], [`ema_grant::code_flow`]). The authorization endpoint gives
//! the browser a short-lived cookie, [`SIGN_IN_COOKIE`] (`HttpOnly`, `SameSite=Lax`, scoped to
//! the callback path, `Secure` on `https`), whose value the sealed `state` is bound to; the
//! callback refuses an answer without it, and takes each `state` once through the replay store
//! of the jwt-bearer grant (shared across instances on Redis). An open authorization endpoint
//! can be flooded, but no flood fills a table that locks real users out.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use ema_grant::code_flow::{AuthorizationError, CodeFlow, SignedInUser};
use ema_grant::sign_in::{IdpSignIn, PendingSignIn, SignInError};
use ema_grant::{ErrorCode, Form, OAuthError, RegisteredClient, ReplayStore};
use ema_id_jag::SubjectResolver;
use ema_jose::{KeySource, UnixTime};
use ema_jwks::{HttpFetcher, Secret};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Mutex, PoisonError};
use url::Url;

/// The cookie binding a pending sign-in to the browser that started it (set by the
/// authorization endpoint, required at the IdP callback).
pub const SIGN_IN_COOKIE: &str = "ema_sign_in";

/// The code flow of an authorization server: the [`CodeFlow`] protocol core, the relying party
/// registration at the IdP ([`IdpSignIn`]), and how to reach the IdP's token endpoint.
///
/// The IdP's ID tokens are verified with the jwt-bearer grant's key source (the keys of the
/// trusted IdP, which sign its ID-JAGs too), and the IdP's subject is mapped with the grant's
/// subject resolver: one local subject per IdP user on both paths.
pub struct CodeFlowConfig {
    pub(crate) flow: CodeFlow,
    pub(crate) sign_in: IdpSignIn,
    pub(crate) idp_token_endpoint: Url,
    pub(crate) authorization: Secret,
    pub(crate) fetcher: HttpFetcher,
    documents: Option<MetadataDocuments>,
}

/// Client ID Metadata Documents fetched through the policy-checked fetcher, cached.
struct MetadataDocuments {
    fetcher: HttpFetcher,
    cache: Mutex<DocumentCache>,
}

/// The accepted documents, each until it expires; the expiries in a min-heap, so that expired
/// entries leave a few at a time (no sweep of the whole cache on the request path).
#[derive(Default)]
struct DocumentCache {
    entries: HashMap<String, (RegisteredClient, UnixTime)>,
    expiries: BinaryHeap<Reverse<(UnixTime, String)>>,
}

impl DocumentCache {
    fn get(&mut self, client_id: &str, now: UnixTime) -> Option<RegisteredClient> {
        self.expire(now);
        self.entries
            .get(client_id)
            .filter(|(_, until)| *until > now)
            .map(|(client, _)| client.clone())
    }

    fn insert(&mut self, client: RegisteredClient, until: UnixTime, now: UnixTime) {
        self.expire(now);
        let id = client.id.as_str().to_owned();
        if self.entries.len() < DOCUMENT_CACHE_ENTRIES || self.entries.contains_key(&id) {
            self.expiries.push(Reverse((until, id.clone())));
            self.entries.insert(id, (client, until));
        }
    }

    /// Drops the entries whose time is up (each heap entry once; a stale heap entry of a
    /// refreshed document leaves the newer one in place).
    fn expire(&mut self, now: UnixTime) {
        while let Some(Reverse((until, _))) = self.expiries.peek() {
            if *until > now {
                break;
            }
            let Some(Reverse((until, id))) = self.expiries.pop() else {
                break;
            };
            if self.entries.get(&id).is_some_and(|(_, u)| *u == until) {
                self.entries.remove(&id);
            }
        }
    }
}

/// How long an accepted document is reused without `Cache-Control: max-age`, and at most.
const DOCUMENT_TTL: u64 = 300;
const DOCUMENT_MAX_TTL: u64 = 3600;
const DOCUMENT_CACHE_ENTRIES: usize = 1000;

impl MetadataDocuments {
    /// The client of the document at `client_id`: from the cache, or fetched (URL rules,
    /// address filter, size and time caps, no redirects) and validated.
    async fn resolve(&self, client_id: &str, now: UnixTime) -> Result<RegisteredClient, String> {
        if let Some(client) = self.cache().get(client_id, now) {
            return Ok(client);
        }
        let url = self
            .fetcher
            .check_url("client_id", client_id)
            .map_err(|e| e.to_string())?;
        let response = self.fetcher.get(&url).await.map_err(|e| e.to_string())?;
        if response.status != 200 {
            return Err(format!("the document answered HTTP {}", response.status));
        }
        let client = ema_grant::cimd::client_from_document(client_id, &response.body)
            .map_err(|e| e.to_string())?;
        let cache_control = response.header("cache-control").unwrap_or_default();
        let ttl = if cache_control.contains("no-store") || cache_control.contains("no-cache") {
            0
        } else {
            cache_control
                .split(',')
                .filter_map(|d| d.trim().strip_prefix("max-age="))
                .find_map(|v| v.parse::<u64>().ok())
                .unwrap_or(DOCUMENT_TTL)
                .min(DOCUMENT_MAX_TTL)
        };
        if ttl > 0 {
            self.cache().insert(client.clone(), now.plus(ttl), now);
        }
        Ok(client)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, DocumentCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for CodeFlowConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeFlowConfig")
            .field("issuer", self.flow.issuer())
            .field("idp", self.sign_in.idp())
            .field("idp_token_endpoint", &self.idp_token_endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl CodeFlowConfig {
    /// The code flow `flow`, signing users in at the IdP as `sign_in` describes; the IdP's code
    /// is redeemed at `idp_token_endpoint` with HTTP Basic client authentication
    /// (`client_secret_basic`: the relying party's client id and `client_secret`), through
    /// `fetcher` (its URL rules and address filter apply).
    pub fn new(
        flow: CodeFlow,
        sign_in: IdpSignIn,
        idp_token_endpoint: &str,
        client_secret: &str,
        fetcher: HttpFetcher,
    ) -> Result<Self, ema_jwks::FetchError> {
        let idp_token_endpoint = fetcher.check_url("token_endpoint", idp_token_endpoint)?;
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(
            format!(
                "{}:{}",
                ema_grant::form::encode_component(sign_in.client_id().as_str()),
                ema_grant::form::encode_component(client_secret)
            )
            .as_bytes(),
        );
        Ok(Self {
            flow,
            sign_in,
            idp_token_endpoint,
            authorization: Secret::new(format!("Basic {basic}")),
            fetcher,
            documents: None,
        })
    }

    /// Accepts clients that are not registered but name a Client ID Metadata Document URL as
    /// their `client_id`: the document is fetched through `fetcher` (its URL rules, address
    /// filter, size and time caps; redirects are refused), must name that URL as its
    /// `client_id`, and gives the redirect URIs; accepted documents are cached (their
    /// `Cache-Control: max-age`, else 5 minutes, at most an hour). Advertise
    /// `client_id_metadata_document_supported: true` with it.
    ///
    /// Metadata-document clients are public (`none`), so this enables public clients at the
    /// flow (D-24: `none` only where enabled; [`CodeFlow::with_public_clients`]).
    #[must_use]
    pub fn with_client_metadata_documents(mut self, fetcher: HttpFetcher) -> Self {
        self.documents = Some(MetadataDocuments {
            fetcher,
            cache: Mutex::new(DocumentCache::default()),
        });
        self.flow = self.flow.with_public_clients(true);
        self
    }

    /// The protocol core.
    pub fn flow(&self) -> &CodeFlow {
        &self.flow
    }
}

fn page(status: StatusCode, text: &str) -> Response {
    let body = format!(
        "<!doctype html><title>Sign-in</title><p>{}</p>",
        text.replace('&', "&amp;").replace('<', "&lt;")
    );
    let mut resp = (status, Html(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut resp = StatusCode::SEE_OTHER.into_response();
            resp.headers_mut().insert(header::LOCATION, v);
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(_) => page(StatusCode::BAD_REQUEST, "invalid redirect"),
    }
}

fn authorization_error(e: &AuthorizationError) -> Response {
    match (e, e.redirect_url()) {
        (_, Some(url)) => redirect(&url),
        (AuthorizationError::Unavailable, None) => {
            page(StatusCode::SERVICE_UNAVAILABLE, "Try again later.")
        }
        (e, None) => page(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// The browser's sign-in binding: the value of its [`SIGN_IN_COOKIE`], when well formed.
fn binding_of(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(SIGN_IN_COOKIE)?.strip_prefix('='))
        .find(|v| {
            (16..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
}

/// `GET authorization_endpoint`: validate, seal, send the browser to the IdP with its binding
/// cookie (the one it has, so two sign-ins in one browser both finish, or a new one).
pub(crate) async fn authorize(
    code: &CodeFlowConfig,
    headers: &http::HeaderMap,
    query: Option<&str>,
    now: UnixTime,
) -> Response {
    let Ok(params) = Form::parse(query.unwrap_or_default().as_bytes(), 8 * 1024) else {
        return page(StatusCode::BAD_REQUEST, "Malformed authorization request.");
    };
    let document = match (params.get("client_id"), &code.documents) {
        (Some(id), Some(documents))
            if code.flow.clients().get(id).is_none()
                && ema_grant::cimd::is_metadata_document_url(id) =>
        {
            match documents.resolve(id, now).await {
                Ok(client) => Some(client),
                Err(e) => {
                    tracing::info!(target: "ema_server::authorization_server", client_id = id, error = %e, "client metadata document refused");
                    return page(
                        StatusCode::BAD_REQUEST,
                        &format!("The client's metadata document cannot be used: {e}"),
                    );
                }
            }
        }
        _ => None,
    };
    let result = match &document {
        Some(client) => code.flow.authorize_for(&params, client),
        None => code.flow.authorize(&params),
    };
    let request = match result {
        Ok(request) => request,
        Err(e) => {
            tracing::info!(target: "ema_server::authorization_server", error = %e, "authorization request refused");
            return authorization_error(&e);
        }
    };
    let binding = match binding_of(headers) {
        Some(binding) => binding.to_owned(),
        None => match ema_jose::random_id() {
            Ok(fresh) => fresh,
            Err(_) => return authorization_error(&AuthorizationError::Unavailable),
        },
    };
    match code.sign_in.start(request, &binding, now) {
        Ok(url) => {
            let mut resp = redirect(&url);
            let callback = code.sign_in.redirect_uri();
            let path = Url::parse(callback)
                .map(|u| u.path().to_owned())
                .unwrap_or_else(|_| "/".to_owned());
            let secure = if callback.starts_with("https://") {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{SIGN_IN_COOKIE}={binding}; Path={path}; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
                ema_grant::sign_in::SIGN_IN_LIFETIME
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().append(header::SET_COOKIE, value);
            }
            resp
        }
        Err(e) => authorization_error(&e),
    }
}

/// `GET` the callback: the IdP's answer (its sealed `state` opened, from the browser that
/// started the sign-in, once), its code redeemed, the ID token verified, the user mapped, a
/// code issued to the client.
#[allow(
    clippy::too_many_arguments,
    reason = "the router state it is called from holds these separately"
)]
pub(crate) async fn callback<K: KeySource, S: SubjectResolver, R: ReplayStore>(
    code: &CodeFlowConfig,
    keys: &K,
    subjects: &S,
    trust: &ema_id_jag::TrustRegistry,
    replay: &R,
    headers: &http::HeaderMap,
    query: Option<&str>,
    now: UnixTime,
) -> Response {
    let Ok(params) = Form::parse(query.unwrap_or_default().as_bytes(), 8 * 1024) else {
        return page(StatusCode::BAD_REQUEST, "Malformed callback.");
    };
    let Some(state) = params.get("state") else {
        return page(StatusCode::BAD_REQUEST, "The IdP's answer has no state.");
    };
    let finished = code
        .sign_in
        .finish(state, binding_of(headers), params.get("iss"), replay, now)
        .await;
    let pending = match finished {
        Ok(pending) => pending,
        Err(e) => {
            tracing::info!(target: "ema_server::authorization_server", error = %e, "sign-in callback refused");
            return match e {
                SignInError::Unavailable(_) => {
                    page(StatusCode::SERVICE_UNAVAILABLE, "Try again later.")
                }
                SignInError::OtherBrowser => page(
                    StatusCode::BAD_REQUEST,
                    "This sign-in was started in another browser (or this browser did not keep \
                     its sign-in cookie); start again.",
                ),
                _ => page(
                    StatusCode::BAD_REQUEST,
                    "This sign-in is unknown, expired or already finished; start again.",
                ),
            };
        }
    };
    let request = &pending.request;
    let denied = |description: &'static str| {
        redirect(&code.flow.refuse(
            request,
            OAuthError::new(ErrorCode::AccessDenied, description),
        ))
    };
    if let Some(error) = params.get("error") {
        tracing::info!(target: "ema_server::authorization_server", idp_error = error, "the IdP refused the sign-in");
        return denied("the IdP refused the sign-in");
    }
    let Some(idp_code) = params.get("code") else {
        return denied("the IdP's answer has no code");
    };
    let body = code.sign_in.token_request_body(&pending, idp_code);
    let response = match code
        .fetcher
        .post_form(&code.idp_token_endpoint, body, Some(&code.authorization))
        .await
    {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(target: "ema_server::authorization_server", error = %e, "IdP token endpoint unreachable");
            return redirect(&code.flow.refuse(
                request,
                OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the IdP cannot be reached; try again",
                ),
            ));
        }
    };
    let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
    if response.status != 200 {
        let error = json
            .get("error")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        tracing::info!(target: "ema_server::authorization_server", status = response.status, idp_error = error, "the IdP refused the code");
        // The IdP's admission policy: a user not assigned to this server is refused.
        return denied(if error == "access_denied" {
            "the IdP did not assign this user to this server"
        } else {
            "the IdP refused the sign-in"
        });
    }
    let Some(id_token) = json.get("id_token").and_then(serde_json::Value::as_str) else {
        return denied("the IdP returned no ID token");
    };
    let claims = match code
        .sign_in
        .verify_id_token(keys, id_token, &pending, now)
        .await
    {
        Ok(claims) => claims,
        Err(e) => {
            tracing::warn!(target: "ema_server::authorization_server", error = %e, "IdP ID token refused");
            return denied("the IdP's ID token was not accepted");
        }
    };
    match signed_in(code, subjects, trust, &claims, &pending, now).await {
        Ok(user) => match code.flow.issue_code(request, user, now) {
            Ok(url) => {
                tracing::info!(target: "ema_server::authorization_server", client_id = %request.client_id, "sign-in succeeded");
                redirect(&url)
            }
            Err(e) => authorization_error(&e),
        },
        Err(description) => denied(description),
    }
}

async fn signed_in<S: SubjectResolver>(
    code: &CodeFlowConfig,
    subjects: &S,
    trust: &ema_id_jag::TrustRegistry,
    claims: &ema_jose::Claims,
    pending: &PendingSignIn,
    now: UnixTime,
) -> Result<SignedInUser, &'static str> {
    let request = &pending.request;
    let idp = code.sign_in.idp();
    let trusted = trust
        .get(idp.as_str())
        .ok_or("the IdP is not trusted by this server")?;
    let shaped = code
        .sign_in
        .subject_claims(claims, request, code.flow.issuer(), now)
        .map_err(|e| {
            tracing::warn!(target: "ema_server::authorization_server", error = %e, "ID token claims unusable");
            "the IdP's ID token was not accepted"
        })?;
    let subject = subjects.resolve(&shaped, trusted).await.map_err(|e| {
        tracing::info!(target: "ema_server::authorization_server", error = %e, "subject not mapped");
        "this user has no account at this server"
    })?;
    // The sign-in on the audit trail: the ID token's `jti`, else its `sid`, else our nonce.
    let sign_in = ["jti", "sid"]
        .into_iter()
        .find_map(|name| claims.string(name).ok().flatten())
        .unwrap_or(pending.nonce.as_str());
    Ok(SignedInUser::new(subject, idp.clone(), shaped.sub.as_str())
        .with_authentication(shaped.auth_time, shaped.acr.clone(), shaped.amr.clone())
        .with_sign_in(sign_in))
}
