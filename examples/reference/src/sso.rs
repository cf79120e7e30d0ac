//! The agent side of single sign-on: an OpenID Connect authorization-code flow with PKCE,
//! answering the IdP's login form with a username and password (for demos and tests; a real
//! agent opens a browser instead).

use ema_grant::form::encode_component;
use ema_grant::pkce_challenge;
use reqwest::redirect::Policy;

/// Why sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// HTTP failed.
    #[error("request to the IdP failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The IdP refused the login.
    #[error("the IdP refused the sign-in (HTTP {0})")]
    Refused(u16),
    /// The redirect lacked the code or the state did not match (CL-12).
    #[error("the IdP's redirect is missing the code or has the wrong state")]
    BadRedirect,
    /// The token response lacked an ID token.
    #[error("the IdP returned no ID token: {0}")]
    NoIdToken(String),
    /// The IdP's OpenID configuration could not be read or does not fit the IdP (CL-14).
    #[error("the IdP's OpenID configuration is unusable: {0}")]
    Discovery(String),
}

/// The IdP endpoints an agent needs, read from the IdP's OpenID configuration so that an
/// operator may serve them at any path (`[endpoints]` in the IdP's configuration; CL-14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpEndpoints {
    /// Where the login form (authorization code + PKCE) is posted.
    pub authorization_endpoint: String,
    /// Where codes are redeemed and token exchanges are sent.
    pub token_endpoint: String,
}

/// Reads `<issuer>/.well-known/openid-configuration` and returns the IdP's endpoints. The
/// document's `issuer` must be `issuer` exactly (D-12, as RFC 8414 §3.3 asks of clients).
pub async fn discover_idp(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<IdpEndpoints, SignInError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let response = http.get(&url).send().await?;
    if !response.status().is_success() {
        return Err(SignInError::Discovery(format!(
            "{url} answered HTTP {}",
            response.status().as_u16()
        )));
    }
    let doc: serde_json::Value = response
        .json()
        .await
        .map_err(|e| SignInError::Discovery(format!("{url} is not JSON: {e}")))?;
    let member = |name: &str| {
        doc.get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| SignInError::Discovery(format!("{url} has no `{name}`")))
    };
    let found = member("issuer")?;
    if found != issuer {
        return Err(SignInError::Discovery(format!(
            "{url} names the issuer `{found}`, not `{issuer}`"
        )));
    }
    Ok(IdpEndpoints {
        authorization_endpoint: member("authorization_endpoint")?,
        token_endpoint: member("token_endpoint")?,
    })
}

/// A client registered at the IdP for SSO. `Debug` never shows the secret.
#[derive(Clone)]
pub struct SsoClient {
    /// The IdP's base URL.
    pub idp: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// A registered redirect URI (never contacted: the agent reads the redirect itself).
    pub redirect_uri: String,
    /// Sends the secret in the form (`client_secret_post`) instead of HTTP Basic (D-24: the
    /// method the IdP registered for the client).
    pub client_secret_post: bool,
}

impl std::fmt::Debug for SsoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoClient")
            .field("idp", &self.idp)
            .field("client_id", &self.client_id)
            .field("client_secret", &format_args!("<redacted>"))
            .field("redirect_uri", &self.redirect_uri)
            .field("client_secret_post", &self.client_secret_post)
            .finish()
    }
}

fn random_token() -> String {
    ema_jose::random_id().unwrap_or_else(|_| "fallback-nonce-value".into())
}

impl SsoClient {
    /// Signs `username` in and returns the ID token.
    pub async fn sign_in(&self, username: &str, password: &str) -> Result<String, SignInError> {
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()?;
        let endpoints = discover_idp(&http, &self.idp).await?;
        // CL-12: PKCE S256, state and nonce.
        let verifier = format!("{}{}", random_token(), random_token());
        let state = random_token();
        let nonce = random_token();
        let params = format!(
            "response_type=code&client_id={}&redirect_uri={}&scope=openid%20email&state={state}&nonce={nonce}&code_challenge={}&code_challenge_method=S256",
            encode_component(&self.client_id),
            encode_component(&self.redirect_uri),
            pkce_challenge(&verifier)
        );
        let login = http
            .post(&endpoints.authorization_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "{params}&username={}&password={}",
                encode_component(username),
                encode_component(password)
            ))
            .send()
            .await?;
        if login.status().as_u16() != 303 {
            return Err(SignInError::Refused(login.status().as_u16()));
        }
        let location = login
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or(SignInError::BadRedirect)?;
        let query = url::Url::parse(location).map_err(|_| SignInError::BadRedirect)?;
        let get = |name: &str| {
            query
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if get("state").as_deref() != Some(state.as_str()) {
            return Err(SignInError::BadRedirect);
        }
        let code = get("code").ok_or(SignInError::BadRedirect)?;
        let mut body = format!(
            "grant_type=authorization_code&code={}&code_verifier={verifier}&redirect_uri={}",
            encode_component(&code),
            encode_component(&self.redirect_uri)
        );
        let mut request = http.post(&endpoints.token_endpoint);
        if self.client_secret_post {
            body.push_str(&format!(
                "&client_id={}&client_secret={}",
                encode_component(&self.client_id),
                encode_component(&self.client_secret)
            ));
        } else {
            request = request.basic_auth(
                encode_component(&self.client_id),
                Some(encode_component(&self.client_secret)),
            );
        }
        let token = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        let status = token.status().as_u16();
        let body: serde_json::Value = token.json().await.unwrap_or_default();
        match body.get("id_token").and_then(|t| t.as_str()) {
            Some(id_token) if status == 200 => Ok(id_token.to_owned()),
            _ => Err(SignInError::NoIdToken(
                body.get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or("no error code")
                    .to_owned(),
            )),
        }
    }
}
