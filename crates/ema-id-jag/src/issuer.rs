//! The IdP side: minting ID-JAGs (JAG-1..JAG-8, D-16).

use std::sync::Arc;

use ema_jose::{KeyRing, SignError, TokenKind, UnixTime, random_id};
use serde_json::{Map, Value};

use crate::claims::IdJagClaims;
use crate::ids::{ClientId, Issuer, JwtId, Resource, ScopeSet, Subject};

/// The default ID-JAG lifetime: 300 seconds (D-16, JAG-7).
pub const DEFAULT_LIFETIME_SECS: u64 = 300;

/// The longest ID-JAG lifetime [`IdJagIssuer::with_lifetime`] sets: 3600 seconds, the longest
/// `exp - iat` an authorization server accepts (D-7).
pub const MAX_LIFETIME_SECS: u64 = 3600;

/// What the IdP decided to grant, before it becomes an ID-JAG.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IdJagGrant {
    /// The subject as the IdP would assert it to the authorization server (JAG-5).
    pub subject: Subject,
    /// The authorization server's issuer identifier, resolved from any alias (JAG-3, TX-6).
    pub audience: Issuer,
    /// The client's id at that authorization server (JAG-4).
    pub client_id: ClientId,
    /// Granted resources (JAG-6); empty for none.
    pub resources: Vec<Resource>,
    /// Granted scopes (TX-9); `None` to omit the claim.
    pub scope: Option<ScopeSet>,
    /// `tenant` (JAG-5).
    pub tenant: Option<String>,
    /// `auth_time` from the SSO session.
    pub auth_time: Option<UnixTime>,
    /// `acr` from the SSO session.
    pub acr: Option<String>,
    /// `amr` from the SSO session.
    pub amr: Option<Vec<String>>,
    /// `email`, only when the relationship needs it (JAG-8).
    pub email: Option<String>,
    /// `cnf.jkt` when the token exchange carried a DPoP proof (TX-13).
    pub cnf_jkt: Option<String>,
    /// Groups of the user, for the authorization server's principal.
    pub groups: Option<Vec<String>>,
    /// Any further claims.
    pub extra: Map<String, Value>,
}

impl IdJagGrant {
    /// A grant with the three identities and nothing else.
    pub fn new(subject: Subject, audience: Issuer, client_id: ClientId) -> Self {
        Self {
            subject,
            audience,
            client_id,
            resources: Vec::new(),
            scope: None,
            tenant: None,
            auth_time: None,
            acr: None,
            amr: None,
            email: None,
            cnf_jkt: None,
            groups: None,
            extra: Map::new(),
        }
    }
}

/// A freshly signed ID-JAG. `Debug` shows the token's length, never the token (SEC-10); the
/// claims are shown.
#[derive(Clone)]
#[non_exhaustive]
pub struct IssuedIdJag {
    /// The compact JWS.
    pub token: String,
    /// The claims it carries.
    pub claims: IdJagClaims,
    /// Seconds until `exp` (for `expires_in`, TX-10).
    pub expires_in: u64,
}

impl std::fmt::Debug for IssuedIdJag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Redacted(usize);
        impl std::fmt::Debug for Redacted {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "<redacted, {} bytes>", self.0)
            }
        }
        f.debug_struct("IssuedIdJag")
            .field("token", &Redacted(self.token.len()))
            .field("claims", &self.claims)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Mints ID-JAGs signed by the active key of a [`KeyRing`].
///
/// ```
/// use std::sync::Arc;
/// use ema_id_jag::{ClientId, IdJagGrant, IdJagIssuer, Issuer, Subject};
/// use ema_jose::{Algorithm, KeyRing, SigningKey, UnixTime};
///
/// let keys = Arc::new(KeyRing::new(SigningKey::generate(Algorithm::ES256, Some("idp-k1".into()))?));
/// let idp = IdJagIssuer::new(Issuer::new("https://idp.acme.example"), keys);
/// let grant = IdJagGrant::new(
///     Subject::new("00u8k2Lq91"),
///     Issuer::new("https://auth.tasks.example"),
///     ClientId::new("tc_5f2a91"),
/// );
/// let issued = idp.issue(grant, UnixTime::from_secs(1_767_225_590))?;
/// assert_eq!(issued.expires_in, 300);
/// assert_eq!(issued.claims.exp.as_secs() - issued.claims.iat.as_secs(), 300);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct IdJagIssuer {
    issuer: Issuer,
    keys: Arc<KeyRing>,
    lifetime: u64,
}

impl IdJagIssuer {
    /// An issuer with the D-16 lifetime of 300 seconds.
    pub fn new(issuer: Issuer, keys: Arc<KeyRing>) -> Self {
        Self {
            issuer,
            keys,
            lifetime: DEFAULT_LIFETIME_SECS,
        }
    }

    /// Sets the lifetime (JAG-7: keep it short; clamped to `1..=`[`MAX_LIFETIME_SECS`], the
    /// D-7 maximum).
    #[must_use]
    pub fn with_lifetime(mut self, secs: u64) -> Self {
        self.lifetime = secs.clamp(1, MAX_LIFETIME_SECS);
        self
    }

    /// The lifetime in seconds (`exp - iat` and `expires_in` of every ID-JAG).
    pub fn lifetime(&self) -> u64 {
        self.lifetime
    }

    /// The issuer identifier written into `iss`.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The signing keys (publish their [`KeyRing::jwks`]).
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// Signs an ID-JAG for `grant` at `now`: `typ` `oauth-id-jag+jwt` (JAG-1), all required
    /// claims (JAG-2), `aud` a single string (JAG-3), a fresh random `jti` and a short `exp`
    /// (JAG-7).
    pub fn issue(&self, grant: IdJagGrant, now: UnixTime) -> Result<IssuedIdJag, SignError> {
        let claims = IdJagClaims {
            iss: self.issuer.clone(),
            sub: grant.subject,
            aud: grant.audience,
            client_id: grant.client_id,
            jti: JwtId::new(random_id()?),
            exp: now.plus(self.lifetime),
            iat: now,
            nbf: None,
            resource: (!grant.resources.is_empty()).then_some(grant.resources),
            scope: grant.scope,
            authorization_details: None,
            act: None,
            tenant: grant.tenant,
            auth_time: grant.auth_time,
            acr: grant.acr,
            amr: grant.amr,
            aud_tenant: None,
            aud_sub: None,
            email: grant.email,
            sub_id: None,
            cnf_jkt: grant.cnf_jkt,
            groups: grant.groups,
            roles: None,
            extra: grant.extra,
        };
        let token = self
            .keys
            .active()
            .sign_jwt(TokenKind::IdJag.typ(), &claims.to_object())?;
        Ok(IssuedIdJag {
            token,
            claims,
            expires_in: self.lifetime,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ema_jose::{Algorithm, SigningKey};

    #[test]
    fn sec10_issued_id_jag_debug_shows_no_token_bytes() {
        let keys = Arc::new(KeyRing::new(
            SigningKey::generate(Algorithm::ES256, Some("idp-k1".into())).unwrap(),
        ));
        let idp = IdJagIssuer::new(Issuer::new("https://idp.acme.example"), keys);
        let grant = IdJagGrant::new(
            Subject::new("00u8k2Lq91"),
            Issuer::new("https://auth.tasks.example"),
            ClientId::new("tc_5f2a91"),
        );
        let issued = idp
            .issue(grant, UnixTime::from_secs(1_767_225_590))
            .unwrap();
        let segments: Vec<&str> = issued.token.split('.').collect();
        assert_eq!(segments.len(), 3);
        for text in [format!("{issued:?}"), format!("{issued:#?}")] {
            for segment in &segments {
                assert!(!text.contains(segment), "token segment leaked into {text}");
            }
            // The claims and the lifetime stay visible.
            for kept in ["00u8k2Lq91", "tc_5f2a91", "300", "bytes"] {
                assert!(text.contains(kept), "{kept} missing from {text}");
            }
        }
    }
}
