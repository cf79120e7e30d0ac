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

pub use ema_metadata::urn::CLIENT_ASSERTION_TYPE;

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
///
/// Each client has exactly one `token_endpoint_auth_method` (D-24): by default
/// `client_secret_basic` for a secret, `private_key_jwt` for keys and `none` for a public
/// client; [`RegisteredClient::with_auth_method`] picks another one that fits the credential.
/// Credentials presented by any other method are refused with `invalid_client`.
///
/// ```
/// use ema_grant::{AuthMethod, ClientCredential, RegisteredClient};
///
/// let basic = RegisteredClient::new("tc_5f2a91", ClientCredential::secret("s3cr3t"));
/// assert_eq!(basic.auth_method(), AuthMethod::ClientSecretBasic);
/// let post = basic.clone().with_auth_method(AuthMethod::ClientSecretPost)?;
/// assert_eq!(post.auth_method().as_str(), "client_secret_post");
/// // A secret client cannot be registered for `private_key_jwt`.
/// assert!(basic.with_auth_method(AuthMethod::PrivateKeyJwt).is_err());
/// # Ok::<(), ema_grant::AuthMethodMismatch>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegisteredClient {
    /// The client id at this server.
    pub id: ClientId,
    /// Its credential.
    pub credential: ClientCredential,
    /// Its one `token_endpoint_auth_method` (D-24); see [`RegisteredClient::auth_method`].
    auth_method: AuthMethod,
    /// Grant types it may use; empty means any grant this endpoint serves.
    pub grant_types: Vec<String>,
    /// Registered redirect URIs (for the IdP's authorization-code flow), compared exactly.
    pub redirect_uris: Vec<String>,
}

impl RegisteredClient {
    /// A client with a credential, allowed every grant.
    /// Its `token_endpoint_auth_method` is the credential's default (D-24):
    /// `client_secret_basic` for a secret, `private_key_jwt` for keys, `none` for a public
    /// client.
    pub fn new(id: impl Into<ClientId>, credential: ClientCredential) -> Self {
        let auth_method = match credential {
            ClientCredential::Secret { .. } => AuthMethod::ClientSecretBasic,
            ClientCredential::PrivateKeyJwt { .. } => AuthMethod::PrivateKeyJwt,
            ClientCredential::Public => AuthMethod::None,
        };
        Self {
            id: id.into(),
            credential,
            auth_method,
            grant_types: Vec::new(),
            redirect_uris: Vec::new(),
        }
    }

    /// Registers the client for `method` (D-24). The method must fit the credential:
    /// `client_secret_basic` or `client_secret_post` for a secret, `private_key_jwt` for keys,
    /// `none` for a public client; anything else is an [`AuthMethodMismatch`].
    pub fn with_auth_method(mut self, method: AuthMethod) -> Result<Self, AuthMethodMismatch> {
        let fits = matches!(
            (&self.credential, method),
            (
                ClientCredential::Secret { .. },
                AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
            ) | (
                ClientCredential::PrivateKeyJwt { .. },
                AuthMethod::PrivateKeyJwt
            ) | (ClientCredential::Public, AuthMethod::None)
        );
        if !fits {
            return Err(AuthMethodMismatch {
                client_id: self.id.as_str().to_owned(),
                method,
            });
        }
        self.auth_method = method;
        Ok(self)
    }

    /// The one `token_endpoint_auth_method` this client may authenticate with (D-24).
    pub fn auth_method(&self) -> AuthMethod {
        self.auth_method
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

/// A token-endpoint client authentication method, by its RFC 7591 `token_endpoint_auth_method`
/// name ([`AuthMethod::as_str`], [`str::parse`]).
///
/// ```
/// use ema_grant::AuthMethod;
///
/// let method: AuthMethod = "client_secret_post".parse()?;
/// assert_eq!(method, AuthMethod::ClientSecretPost);
/// assert_eq!(AuthMethod::PrivateKeyJwt.as_str(), "private_key_jwt");
/// assert!("client_secret_jwt".parse::<AuthMethod>().is_err());
/// # Ok::<(), ema_grant::UnknownAuthMethod>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `client_secret_basic`: HTTP Basic.
    ClientSecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    ClientSecretPost,
    /// `private_key_jwt`: a JWT assertion (RFC 7523 §2.2).
    PrivateKeyJwt,
    /// `none`: no authentication (public client, D-11).
    None,
}

impl AuthMethod {
    /// Every method, in the order metadata lists them.
    pub const ALL: [Self; 4] = [
        Self::ClientSecretBasic,
        Self::ClientSecretPost,
        Self::PrivateKeyJwt,
        Self::None,
    ];

    /// The RFC 7591 name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuthMethod {
    type Err = UnknownAuthMethod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownAuthMethod { name: s.to_owned() })
    }
}

/// A `token_endpoint_auth_method` name this crate does not support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown token_endpoint_auth_method `{name}`: use client_secret_basic, client_secret_post, private_key_jwt or none"
)]
#[non_exhaustive]
pub struct UnknownAuthMethod {
    /// The name given.
    pub name: String,
}

/// A `token_endpoint_auth_method` that does not fit the client's credential (D-24), e.g.
/// `private_key_jwt` for a client with a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client `{client_id}` cannot use {method} with its credential")]
#[non_exhaustive]
pub struct AuthMethodMismatch {
    /// The client.
    pub client_id: String,
    /// The method asked for.
    pub method: AuthMethod,
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
    /// A request error around client authentication: `client_secret` without `client_id`, or
    /// a wrong `client_assertion_type` (→ `invalid_request`).
    #[error("malformed client credentials")]
    Malformed,
    /// HTTP Basic credentials that cannot be read: not base64, no colon, not
    /// form-urldecodable, or an empty client id (→ `invalid_client`, 401, D-24).
    #[error("malformed HTTP Basic credentials: {reason}")]
    MalformedBasic {
        /// What is wrong, for logs.
        reason: &'static str,
    },
    /// `client_id` in the body differs from the authenticated one (→ `invalid_request`).
    #[error("`client_id` does not match the authenticated client")]
    ClientIdMismatch,
    /// Unknown client, wrong secret, an `Authorization` scheme other than Basic, a method other
    /// than the client's registered one (D-24), or an invalid assertion (→ `invalid_client`).
    #[error("client authentication failed: {reason}")]
    Failed {
        /// Why, for logs; not sent to the client.
        reason: &'static str,
    },
    /// The client used a method other than its registered one (→ `invalid_client`, D-24).
    #[error("client is registered for {expected}, not {used}")]
    WrongMethod {
        /// The client's registered `token_endpoint_auth_method`.
        expected: AuthMethod,
        /// The method the request used.
        used: AuthMethod,
    },
    /// A client assertion was used before (→ `invalid_client`).
    #[error("client assertion already used")]
    AssertionReplayed,
    /// The replay store could not be consulted (→ `temporarily_unavailable`, fail closed).
    #[error("replay store unavailable")]
    StoreUnavailable,
}

impl ema_metadata::ToErrorCode for ClientAuthError {
    /// AS-20, D-11, D-24: every failure to authenticate, malformed HTTP Basic credentials
    /// included, is `invalid_client` (401); only request errors (two methods, `client_secret`
    /// without `client_id`, a wrong `client_assertion_type`, a `client_id` that contradicts the
    /// credentials) are `invalid_request`; a replay store that cannot be consulted is
    /// `temporarily_unavailable` (fail closed).
    fn error_code(&self) -> ema_metadata::ErrorCode {
        use ema_metadata::ErrorCode;
        match self {
            Self::MultipleMethods | Self::Malformed | Self::ClientIdMismatch => {
                ErrorCode::InvalidRequest
            }
            Self::StoreUnavailable => ErrorCode::TemporarilyUnavailable,
            Self::Missing
            | Self::MalformedBasic { .. }
            | Self::Failed { .. }
            | Self::WrongMethod { .. }
            | Self::AssertionReplayed => ErrorCode::InvalidClient,
        }
    }

    /// Fixed texts: why exactly a client failed (e.g. which method it is registered for, D-24)
    /// stays in the error's `Display`, for the log.
    fn error_description(&self) -> &'static str {
        match self {
            Self::MultipleMethods => "more than one client authentication method used",
            Self::Malformed => "malformed client credentials",
            Self::ClientIdMismatch => "client_id does not match the authenticated client",
            Self::StoreUnavailable => "replay detection is unavailable; try again later",
            Self::Missing => "client authentication is required",
            Self::MalformedBasic { .. }
            | Self::Failed { .. }
            | Self::WrongMethod { .. }
            | Self::AssertionReplayed => "client authentication failed",
        }
    }
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
    /// [`ClientCredential::Public`], and unregistered ones whose id is a Client ID Metadata
    /// Document URL ([`crate::cimd::is_metadata_document_url`]: `https`, or `http` on loopback
    /// for development) (D-11, D-24; off by default).
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

    /// Whether no client is registered.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Whether public clients are accepted ([`ClientRegistry::allow_public`]).
    pub fn allows_public(&self) -> bool {
        self.allow_public
    }

    /// The values a client assertion's `aud` may name.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// Authenticates the client of a token request (AS-9, TX-2, D-11, D-24): exactly one of
    /// HTTP Basic, `client_secret` in the body, or a `private_key_jwt` assertion; or, where
    /// allowed, a public client identified by `client_id` alone. The method used must be the
    /// client's registered [`RegisteredClient::auth_method`].
    ///
    /// Any `Authorization` header is taken as an attempt at client authentication: unreadable
    /// Basic credentials are [`ClientAuthError::MalformedBasic`], and another scheme (e.g.
    /// `Bearer`) is an unsupported authentication method, [`ClientAuthError::Failed`] (RFC 6749
    /// §5.2); both become 401 `invalid_client` with a `Basic` challenge.
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
            expect_method(client, AuthMethod::ClientSecretBasic)?;
            check_secret(client, &secret)?;
            (client, AuthMethod::ClientSecretBasic)
        } else if let Some(secret) = post_secret {
            let id = body_id.ok_or(ClientAuthError::Malformed)?;
            let client = self.get(id).ok_or(failed("unknown client"))?;
            expect_method(client, AuthMethod::ClientSecretPost)?;
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
                        && client.auth_method == AuthMethod::None
                        && matches!(client.credential, ClientCredential::Public) =>
                {
                    (client, AuthMethod::None)
                }
                Some(_) => return Err(ClientAuthError::Missing),
                // The one rule for metadata-document client ids, as at the authorization
                // endpoint (an `https` URL, or `http` on loopback for development).
                None if self.allow_public && crate::cimd::is_metadata_document_url(id) => {
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

    /// The `token_endpoint_auth_methods_supported` this registry can accept: the registered
    /// clients' methods, plus `none` where public (CIMD) clients are accepted, in
    /// [`AuthMethod::ALL`] order. Advertise these, and only these, in server metadata (D-24).
    pub fn auth_methods_supported(&self) -> Vec<AuthMethod> {
        AuthMethod::ALL
            .into_iter()
            .filter(|m| match m {
                AuthMethod::None => self.allow_public,
                _ => self.clients.values().any(|c| c.auth_method == *m),
            })
            .collect()
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
        expect_method(client, AuthMethod::PrivateKeyJwt)?;
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

/// D-24: the client must use its one registered method; the log reason names it.
fn expect_method(client: &RegisteredClient, used: AuthMethod) -> Result<(), ClientAuthError> {
    if client.auth_method == used {
        Ok(())
    } else {
        Err(ClientAuthError::WrongMethod {
            expected: client.auth_method,
            used,
        })
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
/// (RFC 6749 §2.3.1, D-11). Unreadable credentials are `MalformedBasic` (401 `invalid_client`,
/// D-24); another scheme is an unsupported authentication method (`Failed`, RFC 6749 §5.2).
fn parse_basic(header: &str) -> Result<(String, String), ClientAuthError> {
    let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ClientAuthError::Failed {
            reason: "unsupported Authorization scheme",
        });
    }
    let bad = |reason| ClientAuthError::MalformedBasic { reason };
    let value = value.trim();
    if value.is_empty() {
        return Err(bad("no credentials after the scheme"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| bad("not base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| bad("not UTF-8"))?;
    let (id, secret) = text.split_once(':').ok_or(bad("no colon"))?;
    let id = crate::form::decode(id.as_bytes())
        .map_err(|_| bad("client id is not form-urldecodable"))?;
    let secret = crate::form::decode(secret.as_bytes())
        .map_err(|_| bad("secret is not form-urldecodable"))?;
    if id.is_empty() {
        return Err(bad("empty client id"));
    }
    Ok((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn d11_basic_is_form_urldecoded_after_base64() {
        assert_eq!(
            parse_basic(&format!("Basic {}", b64("my%3Aclient:p%40ss+word"))).unwrap(),
            ("my:client".to_owned(), "p@ss word".to_owned())
        );
        // `&` inside an encoded part must not split the inner form.
        assert_eq!(
            parse_basic(&format!("Basic {}", b64("a%26b:c"))).unwrap().0,
            "a&b"
        );
        // The scheme is case-insensitive (RFC 7235 §2.1).
        assert!(parse_basic(&format!("bAsIc {}", b64("a:b"))).is_ok());
    }

    #[test]
    fn d24_malformed_basic_is_malformed_basic_not_a_request_error() {
        let malformed =
            |h: &str| matches!(parse_basic(h), Err(ClientAuthError::MalformedBasic { .. }));
        assert!(malformed("Basic !!!"));
        assert!(malformed(&format!("Basic {}", b64("abc"))));
        assert!(malformed(&format!("Basic {}", b64("a%zz:b"))));
        assert!(malformed(&format!("Basic {}", b64("a:%G1"))));
        assert!(malformed(&format!("Basic {}", b64(":secret"))));
        assert!(malformed("Basic"));
        assert!(malformed("Basic   "));
        // Positive control: the same shapes, well-formed.
        assert!(parse_basic(&format!("Basic {}", b64("a:b"))).is_ok());
        // Another scheme is an unsupported method, not malformed Basic.
        assert!(matches!(
            parse_basic("Bearer abc"),
            Err(ClientAuthError::Failed { .. })
        ));
        assert!(matches!(
            parse_basic("Bearer"),
            Err(ClientAuthError::Failed { .. })
        ));
    }

    #[test]
    fn d24_auth_method_names_round_trip() {
        for m in AuthMethod::ALL {
            assert_eq!(m.as_str().parse::<AuthMethod>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        let err = "client_secret_jwt".parse::<AuthMethod>().unwrap_err();
        assert_eq!(err.name, "client_secret_jwt");
        assert!(err.to_string().contains("client_secret_basic"));
        assert!("Client_Secret_Basic".parse::<AuthMethod>().is_err());
    }

    #[test]
    fn d24_each_client_has_one_method_that_fits_its_credential() {
        let keys = Arc::new(JwkSet::default());
        let secret = RegisteredClient::new("s", ClientCredential::secret("pw"));
        let key = RegisteredClient::new("k", ClientCredential::PrivateKeyJwt { keys });
        let public = RegisteredClient::new("p", ClientCredential::Public);
        assert_eq!(secret.auth_method(), AuthMethod::ClientSecretBasic);
        assert_eq!(key.auth_method(), AuthMethod::PrivateKeyJwt);
        assert_eq!(public.auth_method(), AuthMethod::None);
        let fits = |c: &RegisteredClient, m| c.clone().with_auth_method(m).is_ok();
        assert!(fits(&secret, AuthMethod::ClientSecretPost));
        assert!(fits(&secret, AuthMethod::ClientSecretBasic));
        assert!(!fits(&secret, AuthMethod::PrivateKeyJwt));
        assert!(!fits(&secret, AuthMethod::None));
        assert!(fits(&key, AuthMethod::PrivateKeyJwt));
        assert!(!fits(&key, AuthMethod::ClientSecretBasic));
        assert!(!fits(&key, AuthMethod::ClientSecretPost));
        assert!(fits(&public, AuthMethod::None));
        assert!(!fits(&public, AuthMethod::ClientSecretPost));
        let err = key
            .with_auth_method(AuthMethod::ClientSecretBasic)
            .unwrap_err();
        assert_eq!(err.client_id, "k");
        assert_eq!(err.method, AuthMethod::ClientSecretBasic);
    }

    #[test]
    fn d24_metadata_lists_only_registered_methods() {
        let registry = ClientRegistry::new(["https://as.example"])
            .with(RegisteredClient::new("b", ClientCredential::secret("pw")));
        assert_eq!(
            registry.auth_methods_supported(),
            [AuthMethod::ClientSecretBasic]
        );
        let registry = registry
            .with(
                RegisteredClient::new("p", ClientCredential::secret("pw"))
                    .with_auth_method(AuthMethod::ClientSecretPost)
                    .unwrap(),
            )
            .with(RegisteredClient::new("pub", ClientCredential::Public));
        // A registered public client without `allow_public` is not accepted: no `none`.
        assert_eq!(
            registry.auth_methods_supported(),
            [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost]
        );
        assert_eq!(
            registry.allow_public(true).auth_methods_supported(),
            [
                AuthMethod::ClientSecretBasic,
                AuthMethod::ClientSecretPost,
                AuthMethod::None
            ]
        );
    }
}
