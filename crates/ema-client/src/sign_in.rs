//! Signing the user in at the IdP in a browser: the OpenID Connect authorization code flow with
//! PKCE `S256`, `state` and `nonce`, on the loopback redirect listener of the client's
//! [`CodeFlowOptions`](crate::CodeFlowOptions). Its result is the ID token the EMA flow starts
//! from ([`EmaClient::session`], [`EmaClient::exchange`]).

use ema_jose::{AudienceRule, ParseOptions, UnverifiedJwt, random_id};
use ema_jwks::Secret;
use serde_json::Value;
use url::Url;

use crate::code_flow::{callback_code, open_and_wait, pkce_verifier, s256};
use crate::credentials::Form;
use crate::error::CodeFlowError;
use crate::flow::{EmaClient, TokenPost};

/// `grant_type` of the code redemption (RFC 6749 §4.1.3).
const AUTHORIZATION_CODE_GRANT: &str = "authorization_code";

/// The two endpoints of the IdP's OpenID configuration the sign-in uses.
struct IdpEndpoints {
    authorization: Url,
    token: Url,
}

impl EmaClient {
    /// Signs the user in at the IdP this client is configured with, in a browser, and returns
    /// the ID token: the OpenID Connect authorization code flow with PKCE `S256`, `state` and
    /// `nonce` (CL-12), as the client registered at the IdP ([`crate::IdpConfig::credentials`];
    /// the IdP must know the listener's `http://127.0.0.1/<path>` redirect URI, any port, as
    /// RFC 8252 §7.3 provides). The URL is shown through the [`OpenUrl`](crate::OpenUrl) hook
    /// and the redirect is taken on the [`LoopbackRedirect`](crate::LoopbackRedirect) of the
    /// client's [`CodeFlowOptions`](crate::CodeFlowOptions).
    ///
    /// The IdP's endpoints come from `<issuer>/.well-known/openid-configuration` (its `issuer`
    /// must be the configured one exactly). The ID token is received straight from the IdP's
    /// token endpoint over the fetch policy's transport, and its `iss`, `aud`, `nonce` and `exp`
    /// are checked before it is returned (OpenID Connect Core §3.1.3.7); its signature is
    /// verified by the IdP itself when the token is exchanged.
    ///
    /// ```no_run
    /// # async fn demo(client: ema_client::EmaClient, url: url::Url) -> Result<(), Box<dyn std::error::Error>> {
    /// let id_token = client.sign_in().await?;
    /// let session = client.session(&url, id_token).await?;
    /// # let _ = session;
    /// # Ok(()) }
    /// ```
    pub async fn sign_in(&self) -> Result<Secret, CodeFlowError> {
        let options = self
            .code_flow_options()
            .ok_or(CodeFlowError::NotConfigured)?;
        let idp = self.idp();
        let issuer = idp.issuer();
        let endpoints = self.idp_endpoints(issuer).await?;
        let credentials = idp.credentials();
        let verifier = pkce_verifier()?;
        let state = random_id().map_err(CodeFlowError::Sign)?;
        let nonce = random_id().map_err(CodeFlowError::Sign)?;
        let redirect_uri = options.redirect().redirect_uri();
        let mut authorize_url = endpoints.authorization.clone();
        authorize_url
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", credentials.client_id())
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", "openid")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &s256(&verifier))
            .append_pair("code_challenge_method", "S256");
        let params = {
            let _turn = options.redirect().runs.lock().await;
            open_and_wait(
                options.opener().open(&authorize_url),
                options.redirect().receive(&state),
            )
            .await?
        };
        let code = callback_code(&params, issuer, false)?;
        let now = self.now();
        let mut form = Form::default();
        form.push("grant_type", AUTHORIZATION_CODE_GRANT);
        form.push_secret("code", Secret::new(code));
        form.push_secret("code_verifier", Secret::new(verifier));
        form.push("redirect_uri", &redirect_uri);
        let authorization = credentials
            .authenticate(issuer, now, 60, &mut form)
            .map_err(CodeFlowError::Sign)?;
        let body = match self
            .post_token_request(&endpoints.token, &form, authorization)
            .await
        {
            Ok(body) => body,
            Err(TokenPost::Fetch(e)) => return Err(CodeFlowError::Token(e)),
            Err(TokenPost::Rejected(e)) => return Err(CodeFlowError::TokenRejected(e)),
            Err(TokenPost::NotJson) => {
                return Err(CodeFlowError::MalformedResponse {
                    reason: "body is not a JSON object",
                });
            }
        };
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or(CodeFlowError::MalformedResponse {
                reason: "`id_token` is missing",
            })?;
        check_id_token(id_token, issuer, credentials.client_id(), &nonce, now)?;
        Ok(Secret::new(id_token))
    }

    /// The IdP's authorization and token endpoints from its OpenID configuration (CL-14).
    async fn idp_endpoints(&self, issuer: &str) -> Result<IdpEndpoints, CodeFlowError> {
        let fail = |reason: String| CodeFlowError::IdpDiscovery {
            issuer: issuer.to_owned(),
            reason,
        };
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let url = self
            .fetcher()
            .check_url("issuer", &url)
            .map_err(|e| fail(e.to_string()))?;
        let response = self
            .fetcher()
            .get(&url)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if response.status != 200 {
            return Err(fail(format!("{url} answered HTTP {}", response.status)));
        }
        let doc = ema_jose::parse_json_object(&response.body, 8)
            .map_err(|_| fail(format!("{url} is not a JSON object")))?;
        let member = |name: &str| {
            doc.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| fail(format!("{url} has no `{name}`")))
        };
        // D-12: the document is for exactly this issuer.
        let found = member("issuer")?;
        if found != issuer {
            return Err(fail(format!(
                "{url} names the issuer `{}`",
                found.chars().take(256).collect::<String>()
            )));
        }
        let endpoint = |name: &'static str| {
            let value = member(name)?;
            self.fetcher()
                .check_url(name, value)
                .map_err(|e| fail(format!("`{name}`: {e}")))
        };
        Ok(IdpEndpoints {
            authorization: endpoint("authorization_endpoint")?,
            token: endpoint("token_endpoint")?,
        })
    }
}

/// OpenID Connect Core §3.1.3.7 items 2, 3, 9 and 11 for an ID token received directly from
/// the token endpoint: `iss`, `aud`, `exp` and `nonce`.
fn check_id_token(
    token: &str,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: ema_jose::UnixTime,
) -> Result<(), CodeFlowError> {
    let refused = |reason| CodeFlowError::IdTokenRefused { reason };
    let jwt = UnverifiedJwt::parse(token, &ParseOptions::new())
        .map_err(|_| refused("it is not a well-formed JWT"))?;
    let claims = jwt.unverified_claims();
    if claims.string("iss").ok().flatten() != Some(issuer) {
        return Err(refused("its `iss` is not the IdP's issuer"));
    }
    claims
        .check_audience(client_id, AudienceRule::AnyOf)
        .map_err(|_| refused("its `aud` does not name this client"))?;
    match claims.numeric_date("exp") {
        Ok(Some(exp)) if exp > now => {}
        _ => return Err(refused("it is expired or has no valid `exp`")),
    }
    if claims.string("nonce").ok().flatten() != Some(nonce) {
        return Err(refused(
            "its `nonce` is not the one of this sign-in (replayed or mixed up)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ema_jose::{Algorithm, SigningKey, UnixTime};
    use serde_json::json;

    #[test]
    fn id_token_checks() {
        let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let now = UnixTime::from_secs(1_000_000);
        let good = json!({"iss": "https://idp", "aud": "desk", "exp": 1_000_100, "nonce": "n1", "sub": "u"});
        let token = |patch: Value| {
            let mut claims = good.clone();
            for (k, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    claims.as_object_mut().unwrap().remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            key.sign_jwt(None, &claims).unwrap()
        };
        let check = |t: &str| check_id_token(t, "https://idp", "desk", "n1", now);
        assert_eq!(check(&token(json!({}))), Ok(()));
        assert_eq!(check(&token(json!({"aud": ["other", "desk"]}))), Ok(()));
        for (patch, why) in [
            (json!({"iss": "https://other"}), "iss"),
            (json!({"iss": null}), "iss"),
            (json!({"aud": "other"}), "aud"),
            (json!({"aud": ["other"]}), "aud"),
            (json!({"aud": null}), "aud"),
            (json!({"exp": 1_000_000}), "exp"),
            (json!({"exp": null}), "exp"),
            (json!({"nonce": "n2"}), "nonce"),
            (json!({"nonce": null}), "nonce"),
        ] {
            let result = check(&token(patch.clone()));
            assert!(
                matches!(&result, Err(CodeFlowError::IdTokenRefused { reason }) if reason.contains(why)),
                "{patch}: {result:?}"
            );
        }
        assert!(matches!(
            check("not-a-jwt"),
            Err(CodeFlowError::IdTokenRefused { .. })
        ));
    }
}
