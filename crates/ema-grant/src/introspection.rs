//! RFC 7662 token introspection for the authorization server's own access tokens (RS-8,
//! RV-22), sans-I/O: for resource servers that cannot validate the JWTs themselves.

use ema_jose::UnixTime;
use http::Response;
use serde_json::Value;

use crate::client_auth::AuthMethod;
use crate::error::{OAuthError, json_bytes_response};
use crate::form::{Form, TokenRequest};
use crate::jwt_bearer::{JwtBearerGrant, client_auth_error, form_error, request_error};
use crate::replay::ReplayStore;
use crate::revocation::{LedgerVerdict, RevocationLedger as _};

/// What the introspection endpoint answered, attached to its response as an extension for the
/// server's log. Identifiers only, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenIntrospection {
    /// A live access token of this AS.
    Active {
        /// The token's `jti`.
        jti: String,
        /// The calling client.
        client_id: String,
    },
    /// `{"active":false}`: unknown, malformed, expired, revoked, or another issuer's.
    Inactive {
        /// The calling client.
        client_id: String,
    },
}

impl<K, S, R> JwtBearerGrant<K, S, R>
where
    K: ema_jose::KeySource,
    S: ema_id_jag::SubjectResolver,
    R: ReplayStore,
{
    /// The RFC 7662 introspection endpoint for this AS's access tokens (RS-8, RV-22).
    ///
    /// `POST` form with `token` (a `token_type_hint` is only a hint); the caller authenticates
    /// as a confidential client of this AS (a public client gets 401 `invalid_client`). A live
    /// access token of this AS, not revoked in the ledger (denied `jti`, disabled subject, or
    /// `iat` at or before the subject's watermark), is answered with `active: true` and its
    /// claims (`token_type` `DPoP` and `cnf` for a bound token, DP-27); anything else (unknown,
    /// malformed, expired, revoked, another AS's) is exactly `{"active":false}`. With a revoker
    /// whose ledger cannot be read: 503 `temporarily_unavailable` (RV-14). The ledger is asked
    /// with point lookups ([`RevocationLedger::check_access_token`](crate::revocation::RevocationLedger::check_access_token)).
    pub async fn handle_introspection<B: AsRef<[u8]>>(
        &self,
        req: &http::Request<B>,
        now: UnixTime,
    ) -> Response<Vec<u8>> {
        match self.introspection(req, now).await {
            Ok((body, outcome)) => {
                let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| INACTIVE.to_vec());
                let mut response = json_bytes_response(http::StatusCode::OK, bytes);
                response.extensions_mut().insert(outcome);
                response
            }
            Err(e) => e.to_response(),
        }
    }

    async fn introspection<B: AsRef<[u8]>>(
        &self,
        req: &http::Request<B>,
        now: UnixTime,
    ) -> Result<(Value, TokenIntrospection), OAuthError> {
        let parts = TokenRequest::from_http(req).map_err(|e| request_error(&e))?;
        parts.check_shape()?;
        let form = Form::parse(parts.body, self.max_body).map_err(|e| form_error(&e))?;
        let client = self
            .clients
            .authenticate(&parts, &form, &self.replay, now)
            .await
            .map_err(|e| client_auth_error(&e, &self.realm))?;
        if client.client.auth_method() == AuthMethod::None {
            return Err(OAuthError::invalid_client(
                "introspection requires client authentication",
                &self.realm,
            ));
        }
        let token = form
            .get("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        let client_id = client.client.id.as_str().to_owned();
        let inactive = || {
            (
                serde_json::json!({"active": false}),
                TokenIntrospection::Inactive {
                    client_id: client_id.clone(),
                },
            )
        };
        // The AS judges its own tokens by its own clock: no leeway past `exp` here.
        let Ok(claims) = self.tokens.verify_own(token, now) else {
            return Ok(inactive());
        };
        if claims.exp <= now {
            return Ok(inactive());
        }
        // RV-22: a revoked token is exactly `{"active": false}`; the ledger answers with point
        // lookups (its denial of this `jti`, the local subject's flag and watermark).
        if let Some(revoker) = &self.revoker {
            let verdict = revoker
                .ledger()
                .check_access_token(
                    claims.iss.as_str(),
                    &claims.sub,
                    claims.iat,
                    claims.jti.as_str(),
                    now,
                )
                .await
                .map_err(OAuthError::from_error)?;
            if let LedgerVerdict::Revoked(_) = verdict {
                return Ok(inactive());
            }
        }
        let mut body = claims.to_object();
        body.insert("active".into(), Value::Bool(true));
        let token_type = if claims.cnf_jkt.is_some() {
            "DPoP"
        } else {
            "Bearer"
        };
        body.insert("token_type".into(), Value::from(token_type));
        Ok((
            Value::Object(body),
            TokenIntrospection::Active {
                jti: claims.jti.as_str().to_owned(),
                client_id,
            },
        ))
    }
}

const INACTIVE: &[u8] = br#"{"active":false}"#;
