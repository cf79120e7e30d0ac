//! The authorization server as an OpenID Connect relying party of the enterprise IdP, sans-I/O:
//! how the [code flow](crate::code_flow) signs the user in without a password of its own.
//!
//! [`IdpSignIn::start`] seals a validated [`AuthorizationRequest`] into the `state` it sends to
//! the IdP and returns the IdP's authorization URL (authorization code + PKCE `S256` + `nonce` +
//! `state`); [`IdpSignIn::finish`] opens that `state` when the IdP redirects back (unexpired,
//! from the browser that started it, once), and gives the form body that redeems the IdP's
//! code; [`IdpSignIn::verify_id_token`] checks the IdP's ID token
//! with `ema-jose` against the IdP's keys (`typ`, algorithm, issuer, signature, time, `aud` =
//! this relying party, `nonce`; CL-12 as a relying party). [`IdpSignIn::subject_claims`] shapes the verified claims for
//! the jwt-bearer grant's [`SubjectResolver`](ema_id_jag::SubjectResolver), so both ways into
//! the authorization server map an IdP user to the same local subject.
//!
//! # No server state per pending sign-in
//!
//! Anyone can open the authorization endpoint, as often as they like, so a pending sign-in
//! keeps nothing at the server: everything the callback needs (the client's request, the PKCE
//! verifier and `nonce` for the IdP) travels in the `state` sent to the IdP, sealed
//! (AES-256-GCM, [`SealingKey`]) under a key only the server holds. No flood of authorization
//! requests can fill a table and lock real users out. The sealed state is
//!
//! - **short-lived**: it names its expiry, [`SIGN_IN_LIFETIME`] after the start;
//! - **bound to the browser** that started it: the server hands that browser a random value (a
//!   cookie) and the state carries its SHA-256; the callback must come with the same value, so
//!   a state lifted from one browser's IdP redirect is useless in another (login CSRF);
//! - **single use**: the callback records the state's id in the replay store (shared across
//!   instances on Redis) until it expires, so the IdP's answer is taken once.
//!
//! Instances behind one load balancer share the key ([`IdpSignIn::with_sealing_key`]); by
//! default each has a random key of its own.

use ema_id_jag::{ClientId, IdJagClaims, Issuer};
use ema_jose::{
    AlgorithmSet, AudienceRule, ClaimError, Claims, HeaderError, HeaderPolicy, KeyLookupError,
    KeySource, ParseError, ParseOptions, TimeOptions, TokenKind, UnixTime, UnverifiedJwt,
    VerifyError, random_id,
};
use serde_json::{Map, Value};

use crate::code_flow::{AuthorizationError, AuthorizationRequest, s256};
use crate::form::encode_component;
use crate::replay::{ReplayKey, ReplayKind, ReplayStore, Seen};
use crate::seal::SealingKey;

/// The authenticated data of a sealed sign-in state.
const STATE_PURPOSE: &[u8] = b"ema-grant sign-in state v1";

/// How long a sign-in at the IdP may take, in seconds.
pub const SIGN_IN_LIFETIME: u64 = 600;

/// Why the IdP's answer was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignInError {
    /// The `state` is not one this server sealed, or it expired.
    #[error("no pending sign-in has this state")]
    UnknownState,
    /// The `state` was already taken once (a replayed IdP answer).
    #[error("this sign-in was already finished")]
    Replayed,
    /// The callback did not come from the browser that started the sign-in (its binding
    /// cookie is missing or different).
    #[error("the sign-in was started in another browser")]
    OtherBrowser,
    /// The replay store could not be consulted (fail closed).
    #[error("the sign-in cannot be finished now: {0}")]
    Unavailable(#[source] crate::replay::ReplayError),
    /// The IdP's redirect named another issuer (RFC 9207 mix-up defence).
    #[error("the IdP's redirect names another issuer")]
    WrongIdp,
    /// The ID token is not a well-formed JWS.
    #[error("ID token malformed: {0}")]
    Malformed(#[source] ParseError),
    /// The ID token's header is refused (`typ`, algorithm).
    #[error("ID token header refused: {0}")]
    Header(#[source] HeaderError),
    /// The ID token's `iss` is not the IdP.
    #[error("ID token issued by another issuer")]
    WrongIssuer,
    /// No key of the IdP verifies it.
    #[error("ID token key: {0}")]
    Key(#[source] KeyLookupError),
    /// The signature does not verify.
    #[error("ID token signature: {0}")]
    Signature(#[source] VerifyError),
    /// Expired, not yet valid, or too long-lived.
    #[error("ID token time: {0}")]
    Time(#[source] ClaimError),
    /// `aud` is not this relying party.
    #[error("ID token audience is not this authorization server")]
    WrongAudience,
    /// `nonce` is missing or not the one sent.
    #[error("ID token nonce does not match")]
    Nonce,
    /// A required claim is missing or mistyped.
    #[error("ID token claims: {0}")]
    Claims(#[source] ClaimError),
    /// The claims do not map to a subject.
    #[error("ID token claims do not map to a subject: {0}")]
    Subject(#[source] ema_id_jag::IdJagClaimsError),
}

/// A sign-in under way at the IdP, as [`IdpSignIn::finish`] opened it from the `state`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PendingSignIn {
    /// The client's authorization request, to resume once the user is known.
    pub request: AuthorizationRequest,
    /// The PKCE verifier for the IdP's code.
    verifier: String,
    /// The `nonce` sent to the IdP.
    pub nonce: String,
}

/// What a sealed sign-in `state` carries.
#[derive(serde::Serialize, serde::Deserialize)]
struct SealedSignIn {
    /// The sign-in's id: its replay key.
    id: String,
    exp: u64,
    /// base64url SHA-256 of the browser's binding value.
    bind: String,
    client_id: String,
    redirect_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    code_challenge: String,
    resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    verifier: String,
    nonce: String,
}

/// The authorization server's registration at the enterprise IdP; see the [module](self) docs.
#[derive(Debug)]
pub struct IdpSignIn {
    idp: Issuer,
    authorization_endpoint: String,
    client_id: ClientId,
    redirect_uri: String,
    algorithms: AlgorithmSet,
    time: TimeOptions,
    seal: Option<SealingKey>,
}

impl IdpSignIn {
    /// The relying party `client_id` of the IdP `idp`, whose authorization endpoint is
    /// `authorization_endpoint`, with `redirect_uri` its callback (registered at the IdP).
    pub fn new(
        idp: impl Into<Issuer>,
        authorization_endpoint: impl Into<String>,
        client_id: impl Into<ClientId>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            idp: idp.into(),
            authorization_endpoint: authorization_endpoint.into(),
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            algorithms: AlgorithmSet::DEFAULT,
            time: TimeOptions::default(),
            seal: SealingKey::generate().ok(),
        }
    }

    /// Seals pending sign-ins with `key`: every instance of one authorization server needs the
    /// same key to finish the sign-ins the others started.
    #[must_use]
    pub fn with_sealing_key(mut self, key: SealingKey) -> Self {
        self.seal = Some(key);
        self
    }

    /// Sets the ID token algorithms accepted (default [`AlgorithmSet::DEFAULT`]).
    #[must_use]
    pub fn with_algorithms(mut self, algorithms: AlgorithmSet) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// Sets the clock leeway for the ID token.
    #[must_use]
    pub fn with_leeway(mut self, leeway: std::time::Duration) -> Self {
        self.time = self.time.with_leeway(leeway);
        self
    }

    /// The IdP.
    pub fn idp(&self) -> &Issuer {
        &self.idp
    }

    /// This relying party's client id at the IdP.
    pub fn client_id(&self) -> &ClientId {
        &self.client_id
    }

    /// The callback URL registered at the IdP.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Seals `request` into the `state` for the IdP, bound to `binding` (a random value the
    /// server gives the browser, e.g. as a cookie, and expects back at the callback), and returns
    /// the IdP authorization URL the browser goes to. Nothing is stored.
    pub fn start(
        &self,
        request: AuthorizationRequest,
        binding: &str,
        now: UnixTime,
    ) -> Result<String, AuthorizationError> {
        let seal = self.seal.as_ref().ok_or(AuthorizationError::Unavailable)?;
        let fresh = || random_id().map_err(|_| AuthorizationError::Unavailable);
        let nonce = fresh()?;
        let verifier = format!("{}{}", fresh()?, fresh()?);
        let challenge = s256(&verifier);
        let sealed = SealedSignIn {
            id: fresh()?,
            exp: now.plus(SIGN_IN_LIFETIME).as_secs(),
            bind: s256(binding),
            client_id: request.client_id.as_str().to_owned(),
            redirect_uri: request.redirect_uri,
            state: request.state,
            code_challenge: request.code_challenge,
            resource: request.resource.as_str().to_owned(),
            scope: request.scope.as_ref().map(ToString::to_string),
            verifier,
            nonce: nonce.clone(),
        };
        let state = serde_json::to_vec(&sealed)
            .ok()
            .and_then(|json| seal.seal(STATE_PURPOSE, &json))
            .ok_or(AuthorizationError::Unavailable)?;
        let sep = if self.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!(
            "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope=openid&state={state}&nonce={nonce}&code_challenge={challenge}&code_challenge_method=S256",
            self.authorization_endpoint,
            encode_component(self.client_id.as_str()),
            encode_component(&self.redirect_uri),
        ))
    }

    /// Opens the sign-in sealed in `state` when the IdP redirects back: unexpired, with the
    /// `binding` of the browser that started it, taken once (recorded in `replay` until it
    /// expires). `iss`, when the IdP's redirect carries it, must be the IdP (RFC 9207).
    pub async fn finish<R: ReplayStore>(
        &self,
        state: &str,
        binding: Option<&str>,
        iss: Option<&str>,
        replay: &R,
        now: UnixTime,
    ) -> Result<PendingSignIn, SignInError> {
        let sealed: SealedSignIn = self
            .seal
            .as_ref()
            .and_then(|seal| seal.open(STATE_PURPOSE, state))
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(SignInError::UnknownState)?;
        let expires = UnixTime::from_secs(sealed.exp);
        if expires <= now {
            return Err(SignInError::UnknownState);
        }
        let bound = binding.is_some_and(|b| {
            aws_lc_rs::constant_time::verify_slices_are_equal(
                s256(b).as_bytes(),
                sealed.bind.as_bytes(),
            )
            .is_ok()
        });
        if !bound {
            return Err(SignInError::OtherBrowser);
        }
        if iss.is_some_and(|i| i != self.idp.as_str()) {
            return Err(SignInError::WrongIdp);
        }
        let key = ReplayKey {
            kind: ReplayKind::SignInState,
            issuer: self.idp.as_str(),
            jti: &sealed.id,
        };
        match replay
            .check_and_insert(key, expires, now)
            .await
            .map_err(SignInError::Unavailable)?
        {
            Seen::First => {}
            Seen::Again => return Err(SignInError::Replayed),
        }
        let scope = sealed
            .scope
            .as_deref()
            .map(ema_id_jag::ScopeSet::parse)
            .transpose()
            .map_err(|_| SignInError::UnknownState)?;
        Ok(PendingSignIn {
            request: AuthorizationRequest {
                client_id: ClientId::new(sealed.client_id),
                redirect_uri: sealed.redirect_uri,
                state: sealed.state,
                code_challenge: sealed.code_challenge,
                resource: ema_id_jag::Resource::new(sealed.resource),
                scope,
            },
            verifier: sealed.verifier,
            nonce: sealed.nonce,
        })
    }

    /// The form body redeeming the IdP's `code` for `pending` at the IdP's token endpoint
    /// (client authentication is the caller's: `Authorization` header).
    pub fn token_request_body(&self, pending: &PendingSignIn, code: &str) -> String {
        format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
            encode_component(code),
            encode_component(&self.redirect_uri),
            pending.verifier
        )
    }

    /// Verifies the IdP's ID token for `pending` with the IdP's keys from `keys`.
    pub async fn verify_id_token<K: KeySource>(
        &self,
        keys: &K,
        token: &str,
        pending: &PendingSignIn,
        now: UnixTime,
    ) -> Result<Claims, SignInError> {
        let jwt =
            UnverifiedJwt::parse(token, &ParseOptions::new()).map_err(SignInError::Malformed)?;
        let policy = HeaderPolicy::for_kind(TokenKind::IdToken).with_algorithms(self.algorithms);
        let alg = policy.check(jwt.header()).map_err(SignInError::Header)?;
        let idp = self.idp.as_str();
        if jwt.unverified_claims().string("iss").ok().flatten() != Some(idp) {
            return Err(SignInError::WrongIssuer);
        }
        let key = keys
            .resolve(idp, jwt.header().kid(), alg)
            .await
            .map_err(SignInError::Key)?;
        let claims = jwt
            .verify(&policy, &key)
            .map_err(SignInError::Signature)?
            .into_claims();
        claims
            .check_validity(&self.time, now)
            .map_err(SignInError::Time)?;
        let aud = claims
            .audience(AudienceRule::AnyOf)
            .map_err(|_| SignInError::WrongAudience)?;
        let me = self.client_id.as_str();
        let aud_ok = match aud.as_slice() {
            [only] => *only == me,
            many => many.contains(&me) && claims.string("azp").ok().flatten() == Some(me),
        };
        if !aud_ok {
            return Err(SignInError::WrongAudience);
        }
        if claims.string("nonce").ok().flatten() != Some(pending.nonce.as_str()) {
            return Err(SignInError::Nonce);
        }
        claims.required_string("sub").map_err(SignInError::Claims)?;
        Ok(claims)
    }

    /// The verified ID token's claims shaped for the jwt-bearer grant's subject resolver, as if
    /// an ID-JAG for `request` had carried them: `iss`/`sub`/`email`/`groups`/`tenant` and the
    /// authentication facts from the ID token, `aud` = `issuer` (this authorization server),
    /// `client_id` and `resource` from the client's request.
    pub fn subject_claims(
        &self,
        id_token: &Claims,
        request: &AuthorizationRequest,
        issuer: &Issuer,
        now: UnixTime,
    ) -> Result<IdJagClaims, SignInError> {
        let mut map = Map::new();
        for name in [
            "iss",
            "sub",
            "email",
            "groups",
            "roles",
            "tenant",
            "auth_time",
            "acr",
            "amr",
        ] {
            if let Some(v) = id_token.get(name) {
                map.insert(name.to_owned(), v.clone());
            }
        }
        map.insert("aud".into(), Value::from(issuer.as_str()));
        map.insert("client_id".into(), Value::from(request.client_id.as_str()));
        map.insert(
            "jti".into(),
            Value::from(random_id().unwrap_or_else(|_| "sign-in".to_owned())),
        );
        map.insert("iat".into(), Value::from(now.as_secs()));
        map.insert("exp".into(), Value::from(now.plus(60).as_secs()));
        map.insert("resource".into(), Value::from(request.resource.as_str()));
        IdJagClaims::from_claims(&Claims::from_object(map)).map_err(SignInError::Subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code_flow::AuthorizationRequest;
    use crate::replay::InMemoryReplayStore;

    const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
    const IDP: &str = "https://idp.acme.example";

    fn sign_in() -> IdpSignIn {
        IdpSignIn::new(
            IDP,
            format!("{IDP}/authorize"),
            "tasks-as-rp",
            "https://auth.tasks.example/idp/callback",
        )
    }

    fn request() -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: ClientId::new("ide"),
            redirect_uri: "http://127.0.0.1:33418/callback".into(),
            state: Some("st-1".into()),
            code_challenge: s256("dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            resource: ema_id_jag::Resource::new("https://mcp.tasks.example/mcp"),
            scope: ema_id_jag::ScopeSet::parse("tasks.read").ok(),
        }
    }

    fn state_of(url: &str) -> String {
        url.split("&state=")
            .nth(1)
            .and_then(|r| r.split('&').next())
            .unwrap()
            .to_owned()
    }

    fn finish(
        s: &IdpSignIn,
        state: &str,
        binding: Option<&str>,
        iss: Option<&str>,
        store: &InMemoryReplayStore,
        now: UnixTime,
    ) -> Result<PendingSignIn, SignInError> {
        pollster::block_on(s.finish(state, binding, iss, store, now))
    }

    #[test]
    fn pending_sign_in_is_sealed_in_the_state_bound_to_the_browser_and_taken_once() {
        let s = sign_in();
        let store = InMemoryReplayStore::new(100);
        let url = s.start(request(), "browser-a", NOW).unwrap();
        assert!(url.starts_with(&format!(
            "{IDP}/authorize?response_type=code&client_id=tasks-as-rp"
        )));
        let state = state_of(&url);
        // Nothing readable in it: the client's state and the PKCE verifier are sealed.
        assert!(!state.contains("st-1") && !state.contains("ide"), "{state}");
        // Another browser (no cookie, or another one): refused, and the state is not burnt.
        assert_eq!(
            finish(&s, &state, None, None, &store, NOW).unwrap_err(),
            SignInError::OtherBrowser
        );
        assert_eq!(
            finish(&s, &state, Some("browser-b"), None, &store, NOW).unwrap_err(),
            SignInError::OtherBrowser
        );
        // The IdP's redirect naming another issuer (RFC 9207).
        assert_eq!(
            finish(
                &s,
                &state,
                Some("browser-a"),
                Some("https://evil.example"),
                &store,
                NOW
            )
            .unwrap_err(),
            SignInError::WrongIdp
        );
        // Positive control: the browser that started it, once.
        let pending = finish(
            &s,
            &state,
            Some("browser-a"),
            Some(IDP),
            &store,
            NOW.plus(5),
        )
        .unwrap();
        assert_eq!(pending.request, request());
        assert!(url.contains(&format!("&nonce={}&", pending.nonce)));
        let body = s.token_request_body(&pending, "idp-code");
        let verifier = body.rsplit("code_verifier=").next().unwrap();
        assert!(url.contains(&format!("code_challenge={}&", s256(verifier))));
        assert_eq!(
            finish(
                &s,
                &state,
                Some("browser-a"),
                Some(IDP),
                &store,
                NOW.plus(6)
            )
            .unwrap_err(),
            SignInError::Replayed
        );
    }

    #[test]
    fn sealed_state_expires_and_opens_only_with_the_servers_key() {
        let store = InMemoryReplayStore::new(100);
        let key = [5u8; 32];
        let a = sign_in().with_sealing_key(SealingKey::from_bytes(&key).unwrap());
        let b = sign_in().with_sealing_key(SealingKey::from_bytes(&key).unwrap());
        let state = state_of(&a.start(request(), "b1", NOW).unwrap());
        assert_eq!(
            finish(
                &a,
                &state,
                Some("b1"),
                None,
                &store,
                NOW.plus(SIGN_IN_LIFETIME)
            )
            .unwrap_err(),
            SignInError::UnknownState
        );
        assert_eq!(
            finish(&sign_in(), &state, Some("b1"), None, &store, NOW).unwrap_err(),
            SignInError::UnknownState,
            "another server's key"
        );
        assert_eq!(
            finish(&a, "forged", Some("b1"), None, &store, NOW).unwrap_err(),
            SignInError::UnknownState
        );
        // Positive control: another instance with the same key, just before expiry.
        assert!(
            finish(
                &b,
                &state,
                Some("b1"),
                None,
                &store,
                NOW.plus(SIGN_IN_LIFETIME - 1)
            )
            .is_ok()
        );
    }

    #[test]
    fn no_number_of_started_sign_ins_locks_anyone_out() {
        // The old design parked each start in a table capped at 10 000 and then refused every
        // user; a sealed state keeps nothing, so the next real user still starts and finishes.
        let s = sign_in();
        let store = InMemoryReplayStore::new(100);
        for _ in 0..20_000 {
            s.start(request(), "flood", NOW).unwrap();
        }
        let state = state_of(&s.start(request(), "real-user", NOW).unwrap());
        assert!(finish(&s, &state, Some("real-user"), None, &store, NOW).is_ok());
    }
}
