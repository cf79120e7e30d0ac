//! Client authentication at a token endpoint (RFC 6749 §2.3, RFC 7523 §2.2; AS-9, TX-2, D-11).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::{constant_time, digest};
use base64::Engine as _;
use ema_id_jag::ClientId;
use ema_jose::{
    AudienceRule, HeaderPolicy, JwkSet, ParseOptions, TimeOptions, TokenKind, UnixTime,
    UnverifiedJwt,
};

use crate::form::{Form, TokenRequest};
use crate::replay::{ReplayKey, ReplayKind, ReplayStore, Seen};

/// `client_assertion_type` for JWT client assertions (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How a client proves who it is.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientCredential {
    /// A shared secret (`client_secret_basic` or `client_secret_post`); only its SHA-256 is kept.
    Secret {
        /// SHA-256 of the secret.
        sha256: [u8; 32],
    },
    /// `private_key_jwt`: assertions signed by one of these keys.
    PrivateKeyJwt {
        /// The client's public keys.
        keys: Arc<JwkSet>,
    },
    /// A public client (no credential), e.g. one identified by a Client ID Metadata Document
    /// URL; accepted only where [`ClientRegistry::allow_public`] is on (D-11).
    Public,
}

impl ClientCredential {
    /// A secret credential; the secret itself is not stored.
    pub fn secret(secret: &str) -> Self {
        Self::Secret {
            sha256: sha256(secret.as_bytes()),
        }
    }
}

impl fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret { .. } => f.write_str("Secret(..)"),
            Self::PrivateKeyJwt { keys } => f
                .debug_struct("PrivateKeyJwt")
                .field("keys", &keys.keys().len())
                .finish(),
            Self::Public => f.write_str("Public"),
        }
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// A registered client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegisteredClient {
    /// The client id at this server.
    pub id: ClientId,
    /// Its credential.
    pub credential: ClientCredential,
    /// Grant types it may use; empty means any grant this endpoint serves.
    pub grant_types: Vec<String>,
    /// Registered redirect URIs (for the IdP's authorization-code flow), compared exactly.
    pub redirect_uris: Vec<String>,
}

impl RegisteredClient {
    /// A client with a credential, allowed every grant.
    pub fn new(id: impl Into<ClientId>, credential: ClientCredential) -> Self {
        Self {
            id: id.into(),
            credential,
            grant_types: Vec::new(),
            redirect_uris: Vec::new(),
        }
    }

    /// Sets the redirect URIs.
    #[must_use]
    pub fn with_redirect_uris<S: Into<String>>(
        mut self,
        uris: impl IntoIterator<Item = S>,
    ) -> Self {
        self.redirect_uris = uris.into_iter().map(Into::into).collect();
        self
    }

    /// Restricts the grant types.
    #[must_use]
    pub fn with_grant_types<S: Into<String>>(
        mut self,
        grant_types: impl IntoIterator<Item = S>,
    ) -> Self {
        self.grant_types = grant_types.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the client may use `grant_type`.
    pub fn allows(&self, grant_type: &str) -> bool {
        self.grant_types.is_empty() || self.grant_types.iter().any(|g| g == grant_type)
    }
}

/// The method a client authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// HTTP Basic.
    ClientSecretBasic,
    /// Secret in the body.
    ClientSecretPost,
    /// JWT assertion.
    PrivateKeyJwt,
    /// No authentication (public client, D-11).
    None,
}

/// A client the endpoint authenticated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthenticatedClient {
    /// Its registration.
    pub client: RegisteredClient,
    /// How it authenticated.
    pub method: AuthMethod,
}

/// Why client authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientAuthError {
    /// No credentials at all (→ `invalid_client`, 401).
    #[error("client authentication is required")]
    Missing,
    /// More than one method used (→ `invalid_request`).
    #[error("more than one client authentication method used")]
    MultipleMethods,
    /// A malformed `Authorization` header or `client_assertion_type` (→ `invalid_request`).
    #[error("malformed client credentials")]
    Malformed,
    /// `client_id` in the body differs from the authenticated one (→ `invalid_request`).
    #[error("`client_id` does not match the authenticated client")]
    ClientIdMismatch,
    /// Unknown client, wrong secret, wrong method, or an invalid assertion (→ `invalid_client`).
    #[error("client authentication failed: {reason}")]
    Failed {
        /// Why, for logs; not sent to the client.
        reason: &'static str,
    },
    /// A client assertion was used before (→ `invalid_client`).
    #[error("client assertion already used")]
    AssertionReplayed,
    /// The replay store could not be consulted (→ `temporarily_unavailable`, fail closed).
    #[error("replay store unavailable")]
    StoreUnavailable,
}

/// Registered clients and the rules for authenticating them.
#[derive(Debug, Clone)]
pub struct ClientRegistry {
    clients: HashMap<String, RegisteredClient>,
    audiences: Vec<String>,
    allow_public: bool,
    time: TimeOptions,
}

impl ClientRegistry {
    /// An empty registry. `audiences` are the values a client assertion's `aud` may name: the
    /// server's issuer identifier and its token endpoint URL (RFC 7523 §3).
    pub fn new<S: Into<String>>(audiences: impl IntoIterator<Item = S>) -> Self {
        Self {
            clients: HashMap::new(),
            audiences: audiences.into_iter().map(Into::into).collect(),
            allow_public: false,
            time: TimeOptions::new()
                .with_require_iat(false)
                .with_max_lifetime(Some(Duration::from_secs(3600))),
        }
    }

    /// Adds or replaces a client.
    #[must_use]
    pub fn with(mut self, client: RegisteredClient) -> Self {
        self.clients.insert(client.id.as_str().to_owned(), client);
        self
    }

    /// Accepts public clients without authentication: those registered with
    /// [`ClientCredential::Public`], and unregistered ones whose id is an `https` URL (Client
    /// ID Metadata Documents) (D-11; off by default).
    #[must_use]
    pub fn allow_public(mut self, allow: bool) -> Self {
        self.allow_public = allow;
        self
    }

    /// Sets the clock leeway for client assertions (`private_key_jwt`; D-7: default 30 s);
    /// values above [`TimeOptions::MAX_LEEWAY`] (60 s) are clamped to it.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.time = self.time.with_leeway(leeway);
        self
    }

    /// A registered client.
    pub fn get(&self, id: &str) -> Option<&RegisteredClient> {
        self.clients.get(id)
    }

    /// Authenticates the client of a token request (AS-9, TX-2, D-11): exactly one of HTTP
    /// Basic, `client_secret` in the body, or a `private_key_jwt` assertion; or, where allowed,
    /// a public client identified by `client_id` alone.
    pub async fn authenticate<R: ReplayStore>(
        &self,
        req: &TokenRequest<'_>,
        form: &Form,
        replay: &R,
        now: UnixTime,
    ) -> Result<AuthenticatedClient, ClientAuthError> {
        let basic = req.authorization.map(parse_basic).transpose()?;
        let post_secret = form.get("client_secret");
        let assertion = form.get("client_assertion");
        let methods = usize::from(basic.is_some())
            + usize::from(post_secret.is_some())
            + usize::from(assertion.is_some());
        if methods > 1 {
            return Err(ClientAuthError::MultipleMethods);
        }
        let body_id = form.get("client_id");
        let failed = |reason| ClientAuthError::Failed { reason };

        let (client, method) = if let Some((id, secret)) = basic {
            let client = self.get(&id).ok_or(failed("unknown client"))?;
            check_secret(client, &secret)?;
            (client, AuthMethod::ClientSecretBasic)
        } else if let Some(secret) = post_secret {
            let id = body_id.ok_or(ClientAuthError::Malformed)?;
            let client = self.get(id).ok_or(failed("unknown client"))?;
            check_secret(client, secret)?;
            (client, AuthMethod::ClientSecretPost)
        } else if let Some(assertion) = assertion {
            if form.get("client_assertion_type") != Some(CLIENT_ASSERTION_TYPE) {
                return Err(ClientAuthError::Malformed);
            }
            let client = self
                .check_assertion(assertion, body_id, replay, now)
                .await?;
            (client, AuthMethod::PrivateKeyJwt)
        } else if let Some(id) = body_id {
            match self.get(id) {
                // D-11: client authentication is required unless public clients are enabled.
                Some(client)
                    if self.allow_public
                        && matches!(client.credential, ClientCredential::Public) =>
                {
                    (client, AuthMethod::None)
                }
                Some(_) => return Err(ClientAuthError::Missing),
                None if self.allow_public && id.starts_with("https://") => {
                    return Ok(AuthenticatedClient {
                        client: RegisteredClient::new(id, ClientCredential::Public),
                        method: AuthMethod::None,
                    });
                }
                None => return Err(failed("unknown client")),
            }
        } else {
            return Err(ClientAuthError::Missing);
        };
        if let Some(id) = body_id
            && id != client.id.as_str()
        {
            return Err(ClientAuthError::ClientIdMismatch);
        }
        Ok(AuthenticatedClient {
            client: client.clone(),
            method,
        })
    }

    async fn check_assertion<R: ReplayStore>(
        &self,
        assertion: &str,
        body_id: Option<&str>,
        replay: &R,
        now: UnixTime,
    ) -> Result<&RegisteredClient, ClientAuthError> {
        let failed = |reason| ClientAuthError::Failed { reason };
        let jwt = UnverifiedJwt::parse(assertion, &ParseOptions::new())
            .map_err(|_| failed("malformed assertion"))?;
        // RFC 7523 §3: `iss` and `sub` are both the client id.
        let claims = jwt.unverified_claims();
        let iss = claims
            .required_string("iss")
            .map_err(|_| failed("assertion `iss`"))?;
        if claims.string("sub").ok().flatten() != Some(iss) {
            return Err(failed("assertion `sub` is not its `iss`"));
        }
        if body_id.is_some_and(|id| id != iss) {
            return Err(ClientAuthError::ClientIdMismatch);
        }
        let client = self.get(iss).ok_or(failed("unknown client"))?;
        let ClientCredential::PrivateKeyJwt { keys } = &client.credential else {
            return Err(failed("client is not registered for private_key_jwt"));
        };
        // Its own `typ` slot (SEC-5) and D-18 apply to client assertions too.
        let policy = HeaderPolicy::for_kind(TokenKind::ClientAssertion);
        let alg = policy
            .check(jwt.header())
            .map_err(|_| failed("assertion header"))?;
        let key = keys
            .find(jwt.header().kid(), alg)
            .map_err(|_| failed("no client key fits the assertion"))?
            .clone();
        let verified = jwt
            .verify(&policy, &key)
            .map_err(|_| failed("assertion signature"))?;
        let claims = verified.claims();
        let audience_ok = claims
            .audience(AudienceRule::AnyOf)
            .map_err(|_| failed("assertion `aud`"))?
            .iter()
            .any(|a| self.audiences.iter().any(|ours| ours == a));
        if !audience_ok {
            return Err(failed("assertion `aud` is not this server"));
        }
        let window = claims
            .check_validity(&self.time, now)
            .map_err(|_| failed("assertion expired or not yet valid"))?;
        let jti = claims
            .required_string("jti")
            .map_err(|_| failed("assertion `jti`"))?;
        let key = ReplayKey {
            kind: ReplayKind::ClientAssertion,
            issuer: client.id.as_str(),
            jti,
        };
        let until = window.exp.plus(self.time.leeway.as_secs());
        match replay.check_and_insert(key, until, now).await {
            Ok(Seen::First) => Ok(client),
            Ok(Seen::Again) => Err(ClientAuthError::AssertionReplayed),
            Err(_) => Err(ClientAuthError::StoreUnavailable),
        }
    }
}

fn check_secret(client: &RegisteredClient, presented: &str) -> Result<(), ClientAuthError> {
    let ClientCredential::Secret { sha256: expected } = &client.credential else {
        return Err(ClientAuthError::Failed {
            reason: "client is not registered for a secret",
        });
    };
    // Compare digests in constant time: neither content nor length of the secret leaks.
    constant_time::verify_slices_are_equal(&sha256(presented.as_bytes()), expected).map_err(|_| {
        ClientAuthError::Failed {
            reason: "wrong secret",
        }
    })
}

/// Reads `Authorization: Basic` (RFC 7617): base64 of `id:secret`, each form-urlencoded
/// (RFC 6749 §2.3.1, D-11).
fn parse_basic(header: &str) -> Result<(String, String), ClientAuthError> {
    let (scheme, value) = header.split_once(' ').ok_or(ClientAuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        // RFC 6749 §5.2: an unsupported authentication method is `invalid_client`.
        return Err(ClientAuthError::Failed {
            reason: "unsupported Authorization scheme",
        });
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| ClientAuthError::Malformed)?;
    let text = String::from_utf8(decoded).map_err(|_| ClientAuthError::Malformed)?;
    let (id, secret) = text.split_once(':').ok_or(ClientAuthError::Malformed)?;
    let id = crate::form::decode(id.as_bytes()).map_err(|_| ClientAuthError::Malformed)?;
    let secret = crate::form::decode(secret.as_bytes()).map_err(|_| ClientAuthError::Malformed)?;
    if id.is_empty() {
        return Err(ClientAuthError::Malformed);
    }
    Ok((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d11_basic_is_form_urldecoded_after_base64() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("my%3Aclient:p%40ss+word");
        assert_eq!(
            parse_basic(&format!("Basic {b64}")).unwrap(),
            ("my:client".to_owned(), "p@ss word".to_owned())
        );
        assert!(matches!(
            parse_basic("Bearer abc"),
            Err(ClientAuthError::Failed { .. })
        ));
        assert_eq!(parse_basic("Basic !!!"), Err(ClientAuthError::Malformed));
        let no_colon = base64::engine::general_purpose::STANDARD.encode("abc");
        assert_eq!(
            parse_basic(&format!("Basic {no_colon}")),
            Err(ClientAuthError::Malformed)
        );
        // `&` inside an encoded part must not split the inner form.
        let amp = base64::engine::general_purpose::STANDARD.encode("a%26b:c");
        assert_eq!(parse_basic(&format!("Basic {amp}")).unwrap().0, "a&b");
    }
}
