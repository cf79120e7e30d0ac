//! Signed-JWT authentication at the Global Token Revocation endpoint (RV-21), the method Okta's
//! Universal Logout uses: the IdP sends `Authorization: Bearer <JWT>`, an RFC 7523-style
//! assertion it signs with the keys of its issuer, addressed to the endpoint.
//!
//! The assertion is accepted only from a transmitter configured with
//! [`TransmitterTrust::with_gtr_jwt`]: its `iss` is that transmitter's issuer, the key comes
//! from that transmitter's key set only (as for its SETs, RV-5), the header obeys the client
//! assertion policy (asymmetric algorithms of the transmitter, no embedded keys, D-18), `aud`
//! names the configured endpoint, `exp` is present and the lifetime bounded (D-7), and the
//! `jti` is single-use across instances through the receiver's replay store.

use ema_jose::{
    AudienceRule, HeaderPolicy, KeySource as _, TimeOptions, TokenKind, UnixTime, UnverifiedJwt,
};

use super::{SsfError, SsfReceiver, TransmitterTrust};
use crate::replay::{ReplayKey, ReplayKind, ReplayStore as _, Seen};

/// The `Authorization` value of a bearer JWT: `Bearer` (any case), one space, three
/// base64url segments.
fn bearer_jwt(presented: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(presented).ok()?;
    let (scheme, token) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Bearer") || token.split('.').count() != 3 {
        return None;
    }
    Some(token)
}

/// The issuer key under which GTR assertions' `jti`s are remembered, apart from client
/// assertions of a client whose id happened to be an issuer URL.
fn replay_issuer(issuer: &str) -> String {
    format!("global-token-revocation {issuer}")
}

impl SsfReceiver {
    /// Authenticates a Global Token Revocation caller (RV-21): the `Authorization` value of a
    /// configured transmitter (compared in constant time, D-37), else a bearer JWT signed by a
    /// transmitter that accepts them ([`TransmitterTrust::with_gtr_jwt`]). Nothing of the
    /// request body is needed, so callers answer `401` before reading it.
    ///
    /// # Errors
    ///
    /// [`SsfError::Unauthenticated`] for every defect of the credential;
    /// [`SsfError::KeysUnavailable`] and [`SsfError::Replay`] when the transmitter's keys or
    /// the replay store cannot be reached (answer `503`: the caller may retry).
    pub async fn authenticate_gtr(
        &self,
        presented: Option<&[u8]>,
        now: UnixTime,
    ) -> Result<&TransmitterTrust, SsfError> {
        if let Ok(caller) = self.authenticate(presented) {
            return Ok(caller);
        }
        let token = presented
            .and_then(bearer_jwt)
            .ok_or(SsfError::Unauthenticated)?;
        self.verify_gtr_assertion(token, now).await
    }

    async fn verify_gtr_assertion(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<&TransmitterTrust, SsfError> {
        let jwt =
            UnverifiedJwt::parse(token, &self.options).map_err(|_| SsfError::Unauthenticated)?;
        let iss = jwt
            .unverified_claims()
            .string("iss")
            .ok()
            .flatten()
            .ok_or(SsfError::Unauthenticated)?;
        // RV-21: only a transmitter that accepts signed JWTs, found by its exact issuer.
        let Some((caller, audience)) = self.transmitters.iter().find_map(|t| {
            (t.issuer == iss)
                .then_some(t.gtr_jwt_audience.as_deref())
                .flatten()
                .map(|aud| (t, aud))
        }) else {
            return Err(SsfError::Unauthenticated);
        };
        let policy =
            HeaderPolicy::for_kind(TokenKind::ClientAssertion).with_algorithms(caller.algorithms);
        let alg = policy
            .check(jwt.header())
            .map_err(|_| SsfError::Unauthenticated)?;
        let key = caller
            .keys
            .resolve(&caller.issuer, jwt.header().kid(), alg)
            .await
            .map_err(|e| {
                if e.is_unavailable() {
                    SsfError::KeysUnavailable(e)
                } else {
                    SsfError::Unauthenticated
                }
            })?;
        let verified = jwt
            .verify(&policy, &key)
            .map_err(|_| SsfError::Unauthenticated)?;
        let claims = verified.claims();
        claims
            .check_audience(audience, AudienceRule::AnyOf)
            .map_err(|_| SsfError::Unauthenticated)?;
        // D-7: `exp` required, lifetime bounded, leeway at most 60 s.
        let window = claims
            .check_validity(&TimeOptions::default(), now)
            .map_err(|_| SsfError::Unauthenticated)?;
        let jti = claims
            .non_empty_string("jti")
            .map_err(|_| SsfError::Unauthenticated)?;
        let issuer = replay_issuer(&caller.issuer);
        let key = ReplayKey {
            kind: ReplayKind::ClientAssertion,
            issuer: &issuer,
            jti,
        };
        let until = window.exp.plus(TimeOptions::default().leeway.as_secs());
        match self
            .replay
            .check_and_insert(key, until, now)
            .await
            .map_err(SsfError::Replay)?
        {
            Seen::First => Ok(caller),
            Seen::Again => Err(SsfError::Unauthenticated),
        }
    }
}

impl TransmitterTrust {
    /// Also accepts, at the Global Token Revocation endpoint, a bearer JWT this transmitter
    /// signs with the keys of its issuer and addresses to `audience` (the endpoint's URL, as
    /// the IdP is configured to call it): Okta's Universal Logout authentication (RV-21). The
    /// static `Authorization` value keeps working beside it.
    #[must_use]
    pub fn with_gtr_jwt(mut self, audience: impl Into<String>) -> Self {
        self.gtr_jwt_audience = Some(audience.into());
        self
    }

    /// The `aud` GTR assertions of this transmitter must name, when it may send them.
    pub fn gtr_jwt_audience(&self) -> Option<&str> {
        self.gtr_jwt_audience.as_deref()
    }
}
