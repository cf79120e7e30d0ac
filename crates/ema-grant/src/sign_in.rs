//! The authorization server as an OpenID Connect relying party of the enterprise IdP, sans-I/O:
//! how the [code flow](crate::code_flow) signs the user in without a password of its own.
//!
//! [`IdpSignIn::start`] parks a validated [`AuthorizationRequest`] and returns the IdP's
//! authorization URL (authorization code + PKCE `S256` + `nonce` + `state`);
//! [`IdpSignIn::finish`] takes the parked request back by `state` (once), and gives the form
//! body that redeems the IdP's code; [`IdpSignIn::verify_id_token`] checks the IdP's ID token
//! with `ema-jose` against the IdP's keys (`typ`, algorithm, issuer, signature, time, `aud` =
//! this relying party, `nonce`; CL-12 as a relying party). [`IdpSignIn::subject_claims`] shapes the verified claims for
//! the jwt-bearer grant's [`SubjectResolver`](ema_id_jag::SubjectResolver), so both ways into
//! the authorization server map an IdP user to the same local subject.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use ema_id_jag::{ClientId, IdJagClaims, Issuer};
use ema_jose::{
    AlgorithmSet, AudienceRule, ClaimError, Claims, HeaderError, HeaderPolicy, KeyLookupError,
    KeySource, ParseError, ParseOptions, TimeOptions, TokenKind, UnixTime, UnverifiedJwt,
    VerifyError, random_id,
};
use serde_json::{Map, Value};

use crate::code_flow::{AuthorizationError, AuthorizationRequest, s256};
use crate::form::encode_component;

/// How long a sign-in at the IdP may take, in seconds.
pub const SIGN_IN_LIFETIME: u64 = 600;

/// Why the IdP's answer was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignInError {
    /// No pending sign-in has this `state` (unknown, used, or expired).
    #[error("no pending sign-in has this state")]
    UnknownState,
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

/// A sign-in under way at the IdP.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PendingSignIn {
    /// The client's authorization request, to resume once the user is known.
    pub request: AuthorizationRequest,
    /// The PKCE verifier for the IdP's code.
    verifier: String,
    /// The `nonce` sent to the IdP.
    pub nonce: String,
    expires: UnixTime,
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
    max_pending: usize,
    pending: Mutex<HashMap<String, PendingSignIn>>,
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
            max_pending: 10_000,
            pending: Mutex::new(HashMap::new()),
        }
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

    /// Parks `request` and returns the IdP authorization URL the browser goes to.
    pub fn start(
        &self,
        request: AuthorizationRequest,
        now: UnixTime,
    ) -> Result<String, AuthorizationError> {
        let fresh = || random_id().map_err(|_| AuthorizationError::Busy);
        let (state, nonce) = (fresh()?, fresh()?);
        let verifier = format!("{}{}", fresh()?, fresh()?);
        let challenge = s256(&verifier);
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.retain(|_, p| p.expires > now);
            if pending.len() >= self.max_pending {
                return Err(AuthorizationError::Busy);
            }
            pending.insert(
                state.clone(),
                PendingSignIn {
                    request,
                    verifier,
                    nonce: nonce.clone(),
                    expires: now.plus(SIGN_IN_LIFETIME),
                },
            );
        }
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

    /// Takes the sign-in parked under `state` (once). `iss`, when the IdP's redirect carries
    /// it, must be the IdP (RFC 9207).
    pub fn finish(
        &self,
        state: &str,
        iss: Option<&str>,
        now: UnixTime,
    ) -> Result<PendingSignIn, SignInError> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(state)
            .filter(|p| p.expires > now)
            .ok_or(SignInError::UnknownState)?;
        if iss.is_some_and(|i| i != self.idp.as_str()) {
            return Err(SignInError::WrongIdp);
        }
        Ok(pending)
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
