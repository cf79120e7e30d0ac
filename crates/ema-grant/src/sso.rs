//! The enterprise IdP's single sign-on: an OpenID Connect authorization-code flow with PKCE
//! (CL-12) behind a username/password login, issuing the ID tokens that token exchange accepts.
//!
//! This is the reference IdP's SSO, kept small: users and groups come from configuration,
//! passwords are stored as PBKDF2-HMAC-SHA256 hashes, codes are single-use and short-lived.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::{digest, pbkdf2};
use ema_id_jag::{Issuer, ScopeSet};
use ema_jose::{KeyRing, SignError, TokenKind, UnixTime, random_id};
use serde_json::{Value, json};

use crate::client_auth::ClientRegistry;
use crate::error::{ErrorCode, OAuthError, json_response};
use crate::form::{Form, TokenRequest, encode_component};
use crate::jwt_bearer::client_auth_error;
use crate::replay::ReplayStore;

/// `grant_type` of the authorization-code grant.
pub const AUTHORIZATION_CODE: &str = "authorization_code";

const PBKDF2_ITERATIONS: u32 = 100_000;

/// A password hash (PBKDF2-HMAC-SHA256, 100 000 iterations, random salt).
#[derive(Clone)]
pub struct PasswordHash {
    salt: [u8; 16],
    hash: [u8; 32],
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

fn iterations() -> NonZeroU32 {
    NonZeroU32::new(PBKDF2_ITERATIONS).unwrap_or(NonZeroU32::MIN)
}

impl PasswordHash {
    /// Hashes `password` with a fresh salt.
    pub fn new(password: &str) -> Result<Self, SignError> {
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| SignError::Crypto)?;
        let mut hash = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations(),
            &salt,
            password.as_bytes(),
            &mut hash,
        );
        Ok(Self { salt, hash })
    }

    /// Checks `password` in constant time.
    pub fn verify(&self, password: &str) -> bool {
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations(),
            &self.salt,
            password.as_bytes(),
            &self.hash,
        )
        .is_ok()
    }
}

/// A user of the IdP.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct User {
    /// The stable subject identifier (`sub`).
    pub subject: String,
    /// The login name.
    pub username: String,
    /// The password hash.
    pub password: PasswordHash,
    /// `email`.
    pub email: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// Group memberships (carried as `groups` in the ID token).
    pub groups: Vec<String>,
}

impl User {
    /// A user with a password.
    pub fn new(
        subject: impl Into<String>,
        username: impl Into<String>,
        password: &str,
    ) -> Result<Self, SignError> {
        Ok(Self {
            subject: subject.into(),
            username: username.into(),
            password: PasswordHash::new(password)?,
            email: None,
            name: None,
            groups: Vec::new(),
        })
    }

    /// Sets the email.
    #[must_use]
    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Sets the groups.
    #[must_use]
    pub fn with_groups<S: Into<String>>(mut self, groups: impl IntoIterator<Item = S>) -> Self {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }
}

/// A validated authorization request (the query of `/authorize`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorizeRequest {
    /// `client_id`.
    pub client_id: String,
    /// `redirect_uri`: one of the client's registered URIs exactly, or a loopback one with
    /// another port (RFC 8252 §7.3, [`redirect_uri_matches`](crate::redirect::redirect_uri_matches)).
    pub redirect_uri: String,
    /// `state`, echoed back (CL-12).
    pub state: Option<String>,
    /// `nonce`, put into the ID token (CL-12).
    pub nonce: Option<String>,
    /// `code_challenge` (S256 only, CL-12).
    pub code_challenge: String,
    /// `scope`.
    pub scope: ScopeSet,
}

impl AuthorizeRequest {
    /// The request's parameters, for the hidden fields of a login form.
    pub fn to_params(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("response_type", "code".to_owned()),
            ("client_id", self.client_id.clone()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("code_challenge", self.code_challenge.clone()),
            ("code_challenge_method", "S256".to_owned()),
            ("scope", self.scope.to_string()),
        ];
        if let Some(s) = &self.state {
            p.push(("state", s.clone()));
        }
        if let Some(n) = &self.nonce {
            p.push(("nonce", n.clone()));
        }
        p
    }
}

/// Why an authorization request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizeError {
    /// Unknown client or unregistered redirect URI: show an error page, never redirect.
    #[error("unknown client or redirect URI")]
    BadClient,
    /// A protocol error reported to the client through its redirect URI.
    #[error("{}", error.description)]
    Redirect {
        /// Where to send the user.
        redirect_uri: String,
        /// The error.
        error: Box<OAuthError>,
        /// The request's `state`.
        state: Option<String>,
    },
    /// The username or password is wrong (show the form again).
    #[error("wrong username or password")]
    BadCredentials,
    /// Too many pending codes (fail closed).
    #[error("too many pending sign-ins")]
    Busy,
}

impl AuthorizeError {
    /// For [`AuthorizeError::Redirect`], the URL to redirect to.
    pub fn redirect_url(&self) -> Option<String> {
        let Self::Redirect {
            redirect_uri,
            error,
            state,
        } = self
        else {
            return None;
        };
        let mut url = format!(
            "{redirect_uri}{}error={}&error_description={}",
            if redirect_uri.contains('?') { '&' } else { '?' },
            error.code.as_str(),
            encode_component(&error.description)
        );
        if let Some(state) = state {
            url.push_str("&state=");
            url.push_str(&encode_component(state));
        }
        Some(url)
    }
}

#[derive(Debug)]
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    subject: String,
    auth_time: UnixTime,
    expires: UnixTime,
}

/// A successful authorization-code token response. `Debug` shows the ID token's length only
/// (SEC-10).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SsoTokenResponse {
    /// The ID token.
    pub id_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The client the ID token was issued to (its `aud`), for the server's checks; not sent.
    pub client_id: String,
    /// The user's subject (its `sub`), for the server's checks; not sent.
    pub subject: String,
}

impl fmt::Debug for SsoTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsoTokenResponse")
            .field("id_token", &crate::form::Redacted(self.id_token.len()))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

impl SsoTokenResponse {
    /// The JSON body. The ID token is also returned as `access_token` with `token_type`
    /// `Bearer` for clients that require the member; it grants nothing at any resource (it is
    /// not an `at+jwt`).
    pub fn to_json(&self) -> Value {
        json!({
            "id_token": self.id_token,
            "access_token": self.id_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        })
    }

    /// The HTTP response.
    pub fn to_response(&self) -> http::Response<Vec<u8>> {
        json_response(http::StatusCode::OK, &self.to_json())
    }
}

/// The IdP's SSO: authorization requests, logins, and the authorization-code grant.
#[derive(Debug)]
pub struct SsoProvider {
    issuer: Issuer,
    keys: Arc<KeyRing>,
    clients: ClientRegistry,
    users: HashMap<String, User>,
    codes: Mutex<HashMap<[u8; 32], PendingCode>>,
    dummy: PasswordHash,
    id_token_lifetime: u64,
    code_lifetime: u64,
    max_pending: usize,
    /// SSO clients that are authorization servers' relying parties, with those servers.
    relying_parties: HashMap<String, Issuer>,
}

fn code_key(code: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, code.as_bytes()).as_ref());
    out
}

/// RFC 7636 §4.1: 43-128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

impl SsoProvider {
    /// An SSO provider for `issuer`, signing ID tokens with `keys`.
    pub fn new(
        issuer: Issuer,
        keys: Arc<KeyRing>,
        clients: ClientRegistry,
    ) -> Result<Self, SignError> {
        Ok(Self {
            issuer,
            keys,
            clients,
            users: HashMap::new(),
            codes: Mutex::new(HashMap::new()),
            dummy: PasswordHash::new("dummy password for timing")?,
            id_token_lifetime: 3600,
            code_lifetime: 60,
            max_pending: 10_000,
            relying_parties: HashMap::new(),
        })
    }

    /// Adds a user.
    #[must_use]
    pub fn with_user(mut self, user: User) -> Self {
        self.users.insert(user.username.clone(), user);
        self
    }

    /// The issuer.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// A user by subject.
    pub fn user_by_subject(&self, subject: &str) -> Option<&User> {
        self.users.values().find(|u| u.subject == subject)
    }

    /// Validates the parameters of an authorization request (query string or login form).
    pub fn authorize_request(&self, params: &Form) -> Result<AuthorizeRequest, AuthorizeError> {
        let client_id = params.get("client_id").ok_or(AuthorizeError::BadClient)?;
        let client = self
            .clients
            .get(client_id)
            .ok_or(AuthorizeError::BadClient)?;
        let redirect_uri = params
            .get("redirect_uri")
            .ok_or(AuthorizeError::BadClient)?;
        // Exact matching, except the port of a loopback redirect (RFC 8252 §7.3), so a native
        // agent or `ema token --login` can use the port the OS gives its listener.
        if !client
            .redirect_uris
            .iter()
            .any(|u| crate::redirect::redirect_uri_matches(u, redirect_uri))
        {
            return Err(AuthorizeError::BadClient);
        }
        let state = params.get("state").map(str::to_owned);
        let fail = |code: ErrorCode, description: &'static str| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.to_owned(),
            error: Box::new(OAuthError::new(code, description)),
            state: state.clone(),
        };
        if params.get("response_type") != Some("code") {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "response_type must be code",
            ));
        }
        // CL-12: PKCE with S256 is mandatory.
        let code_challenge = params
            .get("code_challenge")
            .filter(|c| c.len() == 43)
            .ok_or_else(|| {
                fail(
                    ErrorCode::InvalidRequest,
                    "a PKCE S256 code_challenge is required",
                )
            })?;
        if params.get("code_challenge_method") != Some("S256") {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "code_challenge_method must be S256",
            ));
        }
        let scope = ScopeSet::parse(params.get("scope").unwrap_or("openid"))
            .map_err(|_| fail(ErrorCode::InvalidScope, "scope is malformed"))?;
        if !scope.contains("openid") {
            return Err(fail(
                ErrorCode::InvalidScope,
                "the openid scope is required",
            ));
        }
        Ok(AuthorizeRequest {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            state: state.clone(),
            nonce: params.get("nonce").map(str::to_owned),
            code_challenge: code_challenge.to_owned(),
            scope,
        })
    }

    /// Checks a login and, on success, returns the redirect URL carrying a fresh code and the
    /// request's `state`.
    pub fn login(
        &self,
        req: &AuthorizeRequest,
        username: &str,
        password: &str,
        now: UnixTime,
    ) -> Result<String, AuthorizeError> {
        // Hash even for unknown users so timing does not reveal which usernames exist.
        let user = self.users.get(username);
        let ok = match user {
            Some(u) => u.password.verify(password),
            None => {
                let _ = self.dummy.verify(password);
                false
            }
        };
        let user = user.filter(|_| ok).ok_or(AuthorizeError::BadCredentials)?;
        let code = random_id().map_err(|_| AuthorizeError::Busy)?;
        {
            let mut codes = self.codes.lock().unwrap_or_else(PoisonError::into_inner);
            codes.retain(|_, p| p.expires > now);
            if codes.len() >= self.max_pending {
                return Err(AuthorizeError::Busy);
            }
            codes.insert(
                code_key(&code),
                PendingCode {
                    client_id: req.client_id.clone(),
                    redirect_uri: req.redirect_uri.clone(),
                    code_challenge: req.code_challenge.clone(),
                    nonce: req.nonce.clone(),
                    subject: user.subject.clone(),
                    auth_time: now,
                    expires: now.plus(self.code_lifetime),
                },
            );
        }
        let sep = if req.redirect_uri.contains('?') {
            '&'
        } else {
            '?'
        };
        let mut url = format!(
            "{}{sep}code={code}&iss={}",
            req.redirect_uri,
            encode_component(self.issuer.as_str())
        );
        if let Some(state) = &req.state {
            url.push_str("&state=");
            url.push_str(&encode_component(state));
        }
        Ok(url)
    }

    /// The authorization-code grant (RFC 6749 §4.1.3, RFC 7636 §4.6): client authentication,
    /// a single-use unexpired code bound to this client and redirect URI, the PKCE verifier.
    pub async fn token_form<R: ReplayStore>(
        &self,
        req: &TokenRequest<'_>,
        form: &Form,
        replay: &R,
        now: UnixTime,
    ) -> Result<SsoTokenResponse, OAuthError> {
        let client = self
            .clients
            .authenticate(req, form, replay, now)
            .await
            .map_err(|e| client_auth_error(&e, self.issuer.as_str()))?;
        if !client.client.allows(AUTHORIZATION_CODE) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "client may not use the authorization-code grant",
            ));
        }
        let code = form
            .get("code")
            .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_request("code_verifier is missing"))?;
        // Single use: the code is removed whatever happens next.
        let pending = self
            .codes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&code_key(code))
            .ok_or_else(|| OAuthError::invalid_grant("code is invalid, expired or already used"))?;
        if pending.expires <= now {
            return Err(OAuthError::invalid_grant(
                "code is invalid, expired or already used",
            ));
        }
        if pending.client_id != client.client.id.as_str()
            || form.get("redirect_uri") != Some(pending.redirect_uri.as_str())
        {
            return Err(OAuthError::invalid_grant(
                "code was issued to another client or redirect URI",
            ));
        }
        let challenge = ema_jose::base64url::encode(
            digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref(),
        );
        if !valid_verifier(verifier) || challenge != pending.code_challenge {
            return Err(OAuthError::invalid_grant("PKCE verification failed"));
        }
        let user = self
            .user_by_subject(&pending.subject)
            .ok_or_else(|| OAuthError::invalid_grant("user no longer exists"))?;
        // A `jti` per ID token: a relying party (the authorization server's code flow) names
        // the sign-in by it on its audit trail.
        let jti = ema_jose::random_id()
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "ID token could not be issued"))?;
        let claims = IdTokenClaims {
            iss: self.issuer.as_str(),
            sub: &user.subject,
            jti: &jti,
            aud: &pending.client_id,
            iat: now.as_secs(),
            exp: now.plus(self.id_token_lifetime).as_secs(),
            auth_time: pending.auth_time.as_secs(),
            amr: &["pwd"],
            nonce: pending.nonce.as_deref(),
            email: user.email.as_deref(),
            name: user.name.as_deref(),
            groups: &user.groups,
        };
        let id_token = self
            .keys
            .active()
            .sign_jwt(TokenKind::IdToken.typ(), &claims)
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "ID token could not be issued"))?;
        Ok(SsoTokenResponse {
            id_token,
            expires_in: self.id_token_lifetime,
            client_id: pending.client_id.clone(),
            subject: user.subject.clone(),
        })
    }

    /// Marks the SSO client `client_id` as the relying party of the authorization server
    /// `audience`: users who sign in to that server through this IdP (its MCP authorization
    /// code flow) pass the same admin policy as a token exchange for it ([`Self::admit`]).
    #[must_use]
    pub fn with_relying_party(
        mut self,
        client_id: impl Into<String>,
        audience: impl Into<Issuer>,
    ) -> Self {
        self.relying_parties
            .insert(client_id.into(), audience.into());
        self
    }

    /// The authorization server whose relying party `client_id` is, if it is one.
    pub fn relying_party_audience(&self, client_id: &str) -> Option<&Issuer> {
        self.relying_parties.get(client_id)
    }

    /// The admin policy at sign-in: when `response` went to the relying party of an
    /// authorization server ([`Self::with_relying_party`]), `policy` decides the user × that
    /// server as it would a token exchange (no resource named: any resource it governs), and a
    /// user not assigned is refused with `access_denied`; a disabled one with `invalid_grant`.
    /// Other SSO clients pass.
    pub async fn admit<P: crate::exchange::AdminPolicy>(
        &self,
        policy: &P,
        response: &SsoTokenResponse,
    ) -> Result<(), OAuthError> {
        let Some(audience) = self.relying_party_audience(&response.client_id) else {
            return Ok(());
        };
        let jwt =
            ema_jose::UnverifiedJwt::parse(&response.id_token, &ema_jose::ParseOptions::new())
                .map_err(|_| {
                    OAuthError::new(ErrorCode::ServerError, "ID token could not be read")
                })?;
        let client_id = ema_id_jag::ClientId::new(response.client_id.as_str());
        let request = crate::exchange::PolicyRequest {
            subject: &response.subject,
            id_token: jwt.unverified_claims(),
            client_id: &client_id,
            audience,
            resources: &[],
            scope: None,
        };
        match policy.decide(&request).await {
            crate::exchange::PolicyDecision::Deny { reason } => {
                Err(OAuthError::new(ErrorCode::AccessDenied, reason))
            }
            crate::exchange::PolicyDecision::InactiveSubject { reason } => {
                Err(OAuthError::invalid_grant(reason))
            }
            _ => Ok(()),
        }
    }
}

/// The claims of the ID token the SSO endpoint issues (OIDC Core §2), as signed.
#[derive(serde::Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    jti: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    auth_time: u64,
    amr: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
}

/// The PKCE S256 challenge for a verifier (RFC 7636 §4.2), for clients.
pub fn pkce_challenge(verifier: &str) -> String {
    ema_jose::base64url::encode(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_auth::{AuthMethod, ClientCredential, RegisteredClient};
    use crate::replay::InMemoryReplayStore;
    use ema_jose::{Algorithm, SigningKey};

    const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
    const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn provider() -> SsoProvider {
        let keys = Arc::new(KeyRing::new(
            SigningKey::generate(Algorithm::ES256, Some("idp".into())).unwrap(),
        ));
        let clients = ClientRegistry::new(["https://idp.example"]).with(
            // These tests send the secret in the body (D-24: the client is registered for it).
            RegisteredClient::new("desk", ClientCredential::secret("pw"))
                .with_auth_method(AuthMethod::ClientSecretPost)
                .unwrap()
                .with_redirect_uris(["http://127.0.0.1:9/cb"]),
        );
        SsoProvider::new(Issuer::new("https://idp.example"), keys, clients)
            .unwrap()
            .with_user(
                User::new("u-1", "ana", "correct horse")
                    .unwrap()
                    .with_groups(["eng"]),
            )
    }

    fn authorize_form(extra: &str) -> Form {
        let q = format!(
            "response_type=code&client_id=desk&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&code_challenge={}&code_challenge_method=S256&scope=openid&state=s1&nonce=n1{extra}",
            pkce_challenge(VERIFIER)
        );
        Form::parse(q.as_bytes(), 4096).unwrap()
    }

    /// RFC 8252 §7.3: a registered loopback redirect URI matches on any port (a native agent
    /// binds what the OS gives it); anything else about it still matches exactly.
    #[test]
    fn loopback_redirect_any_port() {
        let p = provider();
        let with_redirect = |uri: &str| {
            let q = format!(
                "response_type=code&client_id=desk&redirect_uri={}&code_challenge={}&code_challenge_method=S256&scope=openid&state=s1&nonce=n1",
                crate::form::encode_component(uri),
                pkce_challenge(VERIFIER)
            );
            p.authorize_request(&Form::parse(q.as_bytes(), 4096).unwrap())
        };
        assert!(with_redirect("http://127.0.0.1:9/cb").is_ok());
        assert_eq!(
            with_redirect("http://127.0.0.1:51234/cb")
                .unwrap()
                .redirect_uri,
            "http://127.0.0.1:51234/cb"
        );
        for refused in [
            "http://127.0.0.1:51234/other",
            "http://localhost:9/cb",
            "https://127.0.0.1:9/cb",
            "http://127.0.0.1.evil.example:9/cb",
        ] {
            assert!(
                matches!(with_redirect(refused), Err(AuthorizeError::BadClient)),
                "{refused}"
            );
        }
    }

    #[test]
    fn sec10_sso_token_response_debug_is_redacted() {
        let response = SsoTokenResponse {
            id_token: "idt.Wm5cN2pRfV8.sigBnM".into(),
            expires_in: 600,
            client_id: "desk".into(),
            subject: "u-1".into(),
        };
        for text in [format!("{response:?}"), format!("{response:#?}")] {
            crate::jwt_bearer::tests::assert_redacted(
                &text,
                &["Wm5cN2pRfV8", "sigBnM"],
                &["600", "bytes"],
            );
        }
    }

    #[test]
    fn s256_known_answer() {
        // Computed independently: base64url(sha256(verifier)) with Python's hashlib.
        assert_eq!(
            pkce_challenge(VERIFIER),
            "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc"
        );
    }

    #[test]
    fn code_flow_with_pkce() {
        // CL-12: state echoed, nonce carried into the ID token, PKCE S256 verified, codes single-use.
        let p = provider();
        let req = p.authorize_request(&authorize_form("")).unwrap();
        assert_eq!(
            p.login(&req, "ana", "wrong", NOW),
            Err(AuthorizeError::BadCredentials)
        );
        assert_eq!(
            p.login(&req, "bob", "correct horse", NOW),
            Err(AuthorizeError::BadCredentials)
        );
        let redirect = p.login(&req, "ana", "correct horse", NOW).unwrap();
        assert!(redirect.contains("state=s1"));
        let code = redirect
            .split("code=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_owned();
        let store = InMemoryReplayStore::new(10);
        let token = |verifier: &str| {
            let body = format!(
                "grant_type=authorization_code&code={code}&code_verifier={verifier}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&client_id=desk&client_secret=pw"
            );
            let form = Form::parse(body.as_bytes(), 4096).unwrap();
            pollster::block_on(p.token_form(
                &TokenRequest::form(body.as_bytes()),
                &form,
                &store,
                NOW,
            ))
        };
        let ok = token(VERIFIER).unwrap();
        let jwt =
            ema_jose::UnverifiedJwt::parse(&ok.id_token, &ema_jose::ParseOptions::new()).unwrap();
        assert_eq!(jwt.unverified_claims().string("nonce").unwrap(), Some("n1"));
        assert_eq!(jwt.unverified_claims().string("aud").unwrap(), Some("desk"));
        // RV-2: the IdP issues no refresh token, so none can outlive a revoked session.
        assert!(ok.to_json().get("refresh_token").is_none());
        // Single use.
        assert_eq!(token(VERIFIER).unwrap_err().code, ErrorCode::InvalidGrant);
    }

    #[test]
    fn pkce_and_redirect_rules() {
        // CL-12: a wrong verifier, a missing challenge and a foreign redirect URI all fail.
        let p = provider();
        let req = p.authorize_request(&authorize_form("")).unwrap();
        let redirect = p.login(&req, "ana", "correct horse", NOW).unwrap();
        let code = redirect
            .split("code=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_owned();
        let body = format!(
            "grant_type=authorization_code&code={code}&code_verifier={}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&client_id=desk&client_secret=pw",
            "x".repeat(43)
        );
        let form = Form::parse(body.as_bytes(), 4096).unwrap();
        let store = InMemoryReplayStore::new(10);
        let err = pollster::block_on(p.token_form(
            &TokenRequest::form(body.as_bytes()),
            &form,
            &store,
            NOW,
        ))
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidGrant);
        // An unregistered redirect URI is never redirected to.
        let bad = Form::parse(
            b"response_type=code&client_id=desk&redirect_uri=https%3A%2F%2Fevil.example%2F",
            4096,
        )
        .unwrap();
        assert_eq!(p.authorize_request(&bad), Err(AuthorizeError::BadClient));
        // Missing PKCE is reported through the redirect.
        let no_pkce = Form::parse(b"response_type=code&client_id=desk&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&state=z", 4096).unwrap();
        let e = p.authorize_request(&no_pkce).unwrap_err();
        assert!(
            e.redirect_url()
                .unwrap()
                .starts_with("http://127.0.0.1:9/cb?error=invalid_request")
        );
        assert!(e.redirect_url().unwrap().ends_with("&state=z"));
    }
}
