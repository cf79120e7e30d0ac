//! Client credentials for the IdP and for each authorization server (CL-4, CL-6, CL-13), and the
//! token-endpoint request encoding.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use ema_jose::{SignError, SigningKey, UnixTime, random_id, typ};
use ema_jwks::Secret;
use ema_metadata::urn::CLIENT_ASSERTION_TYPE;
use serde_json::json;

/// Form-encodes one component (`application/x-www-form-urlencoded`, space as `+`).
fn encode_component(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// How the client authenticates at a token endpoint.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// No authentication: `client_id` in the body (a public client).
    None,
    /// `client_secret_basic` (RFC 6749 §2.3.1; id and secret form-encoded before base64).
    SecretBasic(Secret),
    /// `client_secret_post`.
    SecretPost(Secret),
    /// `private_key_jwt` (RFC 7523 §2.2): a fresh assertion per request, `typ`
    /// `client-authentication+jwt`, `aud` = the server's issuer, a fresh `jti`, a short `exp`.
    PrivateKeyJwt(Arc<SigningKey>),
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.method())
    }
}

impl ClientAuth {
    /// The RFC 8414 `token_endpoint_auth_methods_supported` name of the method.
    pub fn method(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::SecretBasic(_) => "client_secret_basic",
            Self::SecretPost(_) => "client_secret_post",
            Self::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }
}

/// A client registration at one server: its `client_id` there and how it authenticates.
///
/// ```
/// use ema_client::ClientCredentials;
///
/// let at_as = ClientCredentials::secret_basic("tc_5f2a91", "s3cr3t");
/// assert_eq!(at_as.client_id(), "tc_5f2a91");
/// assert_eq!(at_as.auth().method(), "client_secret_basic");
/// assert!(!format!("{at_as:?}").contains("s3cr3t"));
/// ```
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    client_id: String,
    auth: ClientAuth,
}

impl ClientCredentials {
    /// Credentials with an explicit method.
    pub fn new(client_id: impl Into<String>, auth: ClientAuth) -> Self {
        Self {
            client_id: client_id.into(),
            auth,
        }
    }

    /// A public client (no authentication; `client_id` in the body).
    pub fn public(client_id: impl Into<String>) -> Self {
        Self::new(client_id, ClientAuth::None)
    }

    /// `client_secret_basic`.
    pub fn secret_basic(client_id: impl Into<String>, secret: impl Into<Secret>) -> Self {
        Self::new(client_id, ClientAuth::SecretBasic(secret.into()))
    }

    /// `client_secret_post`.
    pub fn secret_post(client_id: impl Into<String>, secret: impl Into<Secret>) -> Self {
        Self::new(client_id, ClientAuth::SecretPost(secret.into()))
    }

    /// `private_key_jwt` with `key`.
    pub fn private_key_jwt(client_id: impl Into<String>, key: Arc<SigningKey>) -> Self {
        Self::new(client_id, ClientAuth::PrivateKeyJwt(key))
    }

    /// The client id at this server.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The authentication method.
    pub fn auth(&self) -> &ClientAuth {
        &self.auth
    }

    /// Adds the authentication to a token request: form parameters, and the `Authorization`
    /// value to send, if any. `audience` is the server's issuer (the assertion `aud`).
    pub(crate) fn authenticate(
        &self,
        audience: &str,
        now: UnixTime,
        assertion_lifetime: u64,
        form: &mut Form,
    ) -> Result<Option<Secret>, SignError> {
        match &self.auth {
            ClientAuth::None => {
                form.push("client_id", self.client_id.as_str());
                Ok(None)
            }
            ClientAuth::SecretBasic(secret) => {
                // RFC 6749 §2.3.1: form-encode id and secret, then base64 (D-11).
                let pair = format!(
                    "{}:{}",
                    encode_component(&self.client_id),
                    encode_component(secret.expose())
                );
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Ok(Some(Secret::new(format!("Basic {encoded}"))))
            }
            ClientAuth::SecretPost(secret) => {
                form.push("client_id", self.client_id.as_str());
                form.push_secret("client_secret", secret.clone());
                Ok(None)
            }
            ClientAuth::PrivateKeyJwt(key) => {
                let claims = json!({
                    "iss": self.client_id,
                    "sub": self.client_id,
                    "aud": audience,
                    "jti": random_id()?,
                    "iat": now.as_secs(),
                    "exp": now.plus(assertion_lifetime).as_secs(),
                });
                let assertion = key.sign_jwt(Some(typ::CLIENT_ASSERTION), &claims)?;
                form.push("client_assertion_type", CLIENT_ASSERTION_TYPE);
                form.push_secret("client_assertion", Secret::new(assertion));
                Ok(None)
            }
        }
    }
}

/// A token request body under construction. Secret values stay wrapped until encoding.
#[derive(Debug, Default)]
pub(crate) struct Form {
    params: Vec<(&'static str, Secret)>,
}

impl Form {
    pub(crate) fn push(&mut self, name: &'static str, value: impl Into<String>) {
        self.params.push((name, Secret::new(value.into())));
    }

    pub(crate) fn push_secret(&mut self, name: &'static str, value: Secret) {
        self.params.push((name, value));
    }

    /// `application/x-www-form-urlencoded`.
    pub(crate) fn encode(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.params {
            out.append_pair(name, value.expose());
        }
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ema_jose::{Algorithm, HeaderPolicy, ParseOptions, TokenKind, UnverifiedJwt};

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        let creds = ClientCredentials::secret_basic("id:1", "p@ss word");
        let mut form = Form::default();
        let header = creds
            .authenticate("https://as.example", UnixTime::from_secs(1), 60, &mut form)
            .unwrap()
            .unwrap();
        let b64 = header.expose().strip_prefix("Basic ").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(raw, b"id%3A1:p%40ss+word");
        assert_eq!(form.encode(), "");
        // D-11: the server form-decodes each half after base64; both round-trip.
        let (id, secret) = std::str::from_utf8(&raw).unwrap().split_once(':').unwrap();
        let decode = |s: &str| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned()
        };
        assert_eq!(
            (decode(id), decode(secret)),
            ("id:1".into(), "p@ss word".into())
        );
    }

    #[test]
    fn form_bodies_are_form_encoded() {
        let mut form = Form::default();
        form.push("scope", "tasks.read tasks.write");
        form.push_secret("client_secret", Secret::new("a&b=c+d"));
        assert_eq!(
            form.encode(),
            "scope=tasks.read+tasks.write&client_secret=a%26b%3Dc%2Bd"
        );
    }

    #[test]
    fn private_key_jwt_assertion_shape() {
        let key = Arc::new(SigningKey::generate(Algorithm::ES256, Some("ck".into())).unwrap());
        let creds = ClientCredentials::private_key_jwt("tc_1", key.clone());
        let now = UnixTime::from_secs(1_767_225_600);
        let mut form = Form::default();
        assert!(
            creds
                .authenticate("https://as.example", now, 60, &mut form)
                .unwrap()
                .is_none()
        );
        let body = form.encode();
        let assertion = body.split("client_assertion=").nth(1).unwrap();
        let jwt = UnverifiedJwt::parse(assertion, &ParseOptions::new()).unwrap();
        assert_eq!(jwt.header().typ(), Some("client-authentication+jwt"));
        let verified = jwt
            .verify(
                &HeaderPolicy::for_kind(TokenKind::ClientAssertion),
                key.verifying_key(),
            )
            .unwrap();
        let c = verified.claims();
        assert_eq!(c.required_string("iss").unwrap(), "tc_1");
        assert_eq!(c.required_string("sub").unwrap(), "tc_1");
        assert_eq!(c.required_string("aud").unwrap(), "https://as.example");
        assert_eq!(c.numeric_date("exp").unwrap(), Some(now.plus(60)));
        // A fresh `jti` each time.
        let mut again = Form::default();
        creds
            .authenticate("https://as.example", now, 60, &mut again)
            .unwrap();
        assert_ne!(again.encode(), body);
    }
}
