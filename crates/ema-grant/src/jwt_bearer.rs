//! The MCP authorization server's jwt-bearer grant: ID-JAG in, RFC 9068 access token out
//! (the validation order of `docs/requirements.md`; AS-1..AS-20).

use ema_id_jag::{IdJagError, IdJagValidator, ScopeSet, SubjectResolver, ValidationContext};
use ema_jose::{KeySource, UnixTime};
use http::Response;
use serde_json::Value;

use crate::access_token::{AccessTokenIssuer, IdJagOrigin};
use crate::client_auth::{ClientAuthError, ClientRegistry};
use crate::dpop::{DpopError, DpopValidator};
use crate::error::{ErrorCode, OAuthError, json_bytes_response, json_response};
use crate::form::{Form, FormError, Redacted, RequestError, TokenRequest};
use crate::issuance::IdJagRedemption;
use crate::redemption::{IdJagRedeemer, Redeemed, RedemptionCheck};
use crate::replay::{ReplayKey, ReplayKind, ReplayStore, Seen};
use crate::revocation::{LedgerVerdict, RevocationScope, Revoked};
use crate::scope_log::ScopeLog;

pub use ema_metadata::urn::JWT_BEARER;

/// A successful token response (RFC 6749 §5.1, AS-14, AS-15). `Debug` shows the access token's
/// length only (SEC-10).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessTokenResponse {
    /// The access token.
    pub access_token: String,
    /// `Bearer`, or `DPoP` for a key-bound token (D-17).
    pub token_type: &'static str,
    /// Seconds until expiry.
    pub expires_in: u64,
    /// The granted scopes, whenever the token carries any (D-5).
    pub scope: Option<ScopeSet>,
    /// The resource the token is for (AS-14).
    pub resource: String,
    /// `authorization_details` granted, when the ID-JAG carried any (AS-14).
    pub authorization_details: Option<Vec<Value>>,
    /// The access token's `jti`, for the audit trail (not sent to the client).
    pub jti: String,
    /// The ID-JAG redeemed and the token issued, for the audit trail (not sent; attached to
    /// [`AccessTokenResponse::to_response`] as an extension).
    pub redemption: IdJagRedemption,
}

impl std::fmt::Debug for AccessTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenResponse")
            .field("access_token", &Redacted(self.access_token.len()))
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("resource", &self.resource)
            .field("authorization_details", &self.authorization_details)
            .field("jti", &self.jti)
            .field("redemption", &self.redemption)
            .finish()
    }
}

/// The members of a jwt-bearer token response (RFC 6749 §5.1, AS-14, AS-15), as sent.
#[derive(serde::Serialize)]
struct AccessTokenBody<'a> {
    access_token: &'a str,
    token_type: &'a str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    resource: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_details: Option<&'a [Value]>,
}

impl AccessTokenResponse {
    fn body(&self) -> AccessTokenBody<'_> {
        AccessTokenBody {
            access_token: &self.access_token,
            token_type: self.token_type,
            expires_in: self.expires_in,
            scope: self.scope.as_ref().map(ToString::to_string),
            resource: &self.resource,
            authorization_details: self.authorization_details.as_deref(),
        }
    }

    /// The JSON body. No `refresh_token` (AS-15).
    pub fn to_json(&self) -> Value {
        // Strings, a number and JSON values only: serialising cannot fail.
        serde_json::to_value(self.body()).unwrap_or_default()
    }

    /// The HTTP response (200, `Cache-Control: no-store`): the members of
    /// [`AccessTokenResponse::to_json`], serialized straight from this struct (no copy of the
    /// token into an intermediate map). It carries the [`IdJagRedemption`] as an extension for
    /// the server's audit trail (never sent).
    pub fn to_response(&self) -> Response<Vec<u8>> {
        let mut response = match serde_json::to_vec(&self.body()) {
            Ok(bytes) => json_bytes_response(http::StatusCode::OK, bytes),
            Err(_) => json_response(http::StatusCode::OK, &self.to_json()),
        };
        response.extensions_mut().insert(self.redemption.clone());
        response
    }
}

/// The jwt-bearer grant processor of an MCP authorization server.
///
/// Built with [`JwtBearerGrant::builder`]. The type parameters (key source, subject resolver,
/// replay store) default to their erased forms ([`DynKeySource`](ema_jose::DynKeySource),
/// [`DynSubjectResolver`](ema_id_jag::DynSubjectResolver), [`DynReplayStore`](crate::DynReplayStore)),
/// which is what [`build`](crate::JwtBearerGrantBuilder::build) returns: an application names
/// it `JwtBearerGrant`. [`build_typed`](crate::JwtBearerGrantBuilder::build_typed) keeps the
/// concrete types for code that wants no boxed futures.
#[derive(Debug)]
pub struct JwtBearerGrant<
    K = ema_jose::DynKeySource,
    S = ema_id_jag::DynSubjectResolver,
    R = crate::replay::DynReplayStore,
> {
    pub(crate) validator: IdJagValidator<K, S>,
    pub(crate) clients: ClientRegistry,
    pub(crate) replay: R,
    pub(crate) revoker: Option<crate::revoke::Revoker>,
    pub(crate) redeemer: Option<std::sync::Arc<dyn IdJagRedeemer>>,
    pub(crate) tokens: AccessTokenIssuer,
    pub(crate) dpop: DpopValidator,
    pub(crate) realm: String,
    pub(crate) max_body: usize,
}

/// Maps a form error ([`FormError`]'s [`ToErrorCode`](crate::ToErrorCode): `invalid_request`).
pub(crate) fn form_error(e: &FormError) -> OAuthError {
    OAuthError::from_error(e.clone())
}

/// Maps a client authentication failure by [`ClientAuthError`]'s [`ToErrorCode`](crate::ToErrorCode) (AS-20, D-11,
/// D-24), adding the `Basic` challenge for `realm` to `invalid_client`. The error itself is the
/// [`OAuthError::cause`], for the log.
pub(crate) fn client_auth_error(e: &ClientAuthError, realm: &str) -> OAuthError {
    let error = OAuthError::from_error(e.clone());
    if error.code == ErrorCode::InvalidClient {
        let challenge = OAuthError::invalid_client(error.description.clone(), realm);
        return challenge.with_cause(e.clone());
    }
    error
}

/// Maps a request whose headers cannot be read. A repeated or unreadable `DPoP` header is an
/// invalid proof (RFC 9449 §4.3 check 1, §5: `invalid_dpop_proof`; AS-17, TX-13).
pub fn request_error(e: &RequestError) -> OAuthError {
    OAuthError::from_error(e.clone())
}

/// Maps a DPoP failure (RFC 9449 §5).
pub(crate) fn dpop_error(e: &DpopError) -> OAuthError {
    OAuthError::from_error(e.clone())
}

/// Maps an ID-JAG validation failure by [`IdJagError`]'s [`ToErrorCode`](crate::ToErrorCode) (the one place its
/// codes are chosen, beside the enum in `ema-id-jag`); the error is kept as the cause.
pub fn id_jag_error(e: &IdJagError) -> OAuthError {
    let mut error = OAuthError::from_error(e.clone());
    // Scope names are not secrets: an `invalid_scope` description names them so the client can
    // tell which hop narrowed its request (fixed format, scope tokens only, never a token).
    if let IdJagError::Scope(scope) = e
        && let Some(description) = scope_description(scope)
    {
        error.description = description.into();
    }
    error
}

/// The `error_description` of a refused scope request that names the scopes (D-5, D-20): the
/// requested scopes the ID-JAG does not carry and the ones it does, or the requested scope the
/// resource does not define. `None` where the fixed description says it all.
fn scope_description(e: &ema_id_jag::GrantScopeError) -> Option<String> {
    use ema_id_jag::GrantScopeError as G;
    match e {
        G::NotInIdJag { scope, carried } => Some(format!(
            "requested scope not carried by the ID-JAG: {scope}; the ID-JAG carries: {}",
            if carried.is_empty() {
                "no scope of this resource".to_owned()
            } else {
                carried.to_string()
            }
        )),
        G::UndefinedRequested { scope } => Some(format!(
            "requested scope not defined by this resource: {scope}"
        )),
        _ => None,
    }
}

impl<K: KeySource, S: SubjectResolver, R: ReplayStore> JwtBearerGrant<K, S, R> {
    /// The ID-JAG validator.
    pub fn validator(&self) -> &IdJagValidator<K, S> {
        &self.validator
    }

    /// The registered clients (e.g. for `token_endpoint_auth_methods_supported`, D-24).
    pub fn clients(&self) -> &ClientRegistry {
        &self.clients
    }

    /// The access-token issuer.
    pub fn tokens(&self) -> &AccessTokenIssuer {
        &self.tokens
    }

    /// The replay store (ID-JAG, client-assertion and DPoP `jti`s), for the authorization
    /// server's other grants sharing it.
    pub fn replay(&self) -> &R {
        &self.replay
    }

    /// The revoker checked at every redemption, when one is configured (RV-11).
    pub fn revoker(&self) -> Option<&crate::revoke::Revoker> {
        self.revoker.as_ref()
    }

    /// The revoker's ledger check (when a revoker is set), then, only if not revoked, the
    /// replay store's check-and-insert: the redemption without a redeemer. Each failure is
    /// mapped by its own error type (503 `temporarily_unavailable`).
    async fn redeem_in_two_steps(
        &self,
        check: RedemptionCheck<'_>,
        now: UnixTime,
    ) -> Result<Redeemed, OAuthError> {
        if let Some(revoker) = &self.revoker {
            match revoker
                .check_id_jag(check.idp_issuer, check.tenant, check.idp_subject, check.iat)
                .await
            {
                Ok(LedgerVerdict::Allowed) => {}
                Ok(LedgerVerdict::Revoked(reason)) => return Ok(Redeemed::Revoked(reason)),
                Err(e) => return Err(OAuthError::from_error(e)),
            }
        }
        match self
            .replay
            .check_and_insert(check.replay, check.expires_at, now)
            .await
        {
            Ok(Seen::First) => Ok(Redeemed::First),
            Ok(Seen::Again) => Ok(Redeemed::Again),
            Err(e) => Err(OAuthError::from_error(e)),
        }
    }

    /// Handles an HTTP token request and always answers: a token or an OAuth error. The
    /// response carries a [`ScopeLog`] extension (the scopes requested and granted) for the
    /// server's log.
    pub async fn handle<B: AsRef<[u8]>>(
        &self,
        req: &http::Request<B>,
        now: UnixTime,
    ) -> Response<Vec<u8>> {
        let mut log = ScopeLog::default();
        let result = match TokenRequest::from_http(req) {
            Ok(parts) => {
                async {
                    parts.check_shape()?;
                    let form =
                        Form::parse(parts.body, self.max_body).map_err(|e| form_error(&e))?;
                    log.requested = form.get("scope").and_then(|s| ScopeSet::parse(s).ok());
                    self.token_form(&parts, &form, now).await
                }
                .await
            }
            Err(e) => Err(request_error(&e)),
        };
        let mut response = match result {
            Ok(ok) => {
                log.granted.clone_from(&ok.scope);
                ok.to_response()
            }
            Err(e) => e.to_response(),
        };
        // The scopes asked for and granted, for the server's log (never sent).
        response.extensions_mut().insert(log);
        response
    }

    /// Runs the validation order of `docs/requirements.md`: (1) request shape, (2) client authentication, DPoP proof,
    /// (3-14) the ID-JAG validator, (15) replay check-and-insert, (16) the access token.
    pub async fn token(
        &self,
        req: &TokenRequest<'_>,
        now: UnixTime,
    ) -> Result<AccessTokenResponse, OAuthError> {
        // (1) POST with a form body, no repeated parameters...
        req.check_shape()?;
        let form = Form::parse(req.body, self.max_body).map_err(|e| form_error(&e))?;
        self.token_form(req, &form, now).await
    }

    /// Runs the grant on a request whose form the caller already parsed (for endpoints that
    /// dispatch on `grant_type`).
    pub async fn token_form(
        &self,
        req: &TokenRequest<'_>,
        form: &Form,
        now: UnixTime,
    ) -> Result<AccessTokenResponse, OAuthError> {
        // (1) ...a supported grant type, one assertion.
        form.require_grant_type(JWT_BEARER, "only the jwt-bearer grant is supported here")?;
        let assertion = form
            .get("assertion")
            .ok_or_else(|| OAuthError::invalid_request("assertion is missing"))?;
        // (2) client authentication (AS-9, AS-20, D-11) and grant permission.
        let client = self
            .clients
            .authenticate(req, form, &self.replay, now)
            .await
            .map_err(|e| client_auth_error(&e, &self.realm))?;
        if !client.client.allows(JWT_BEARER) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "client may not use the jwt-bearer grant",
            ));
        }
        // The DPoP proof, when sent, is validated before the assertion (RFC 9449 §5).
        let dpop = match req.dpop {
            Some(proof) => Some(
                self.dpop
                    .validate(proof, "POST", &self.replay, now)
                    .await
                    .map_err(|e| dpop_error(&e))?,
            ),
            None => None,
        };
        let scope = form
            .get("scope")
            .map(ScopeSet::parse)
            .transpose()
            .map_err(|_| OAuthError::new(ErrorCode::InvalidScope, "scope is malformed"))?;
        // (3-14) the ID-JAG itself.
        let ctx = ValidationContext::new(&client.client.id)
            .with_resource(form.get("resource"))
            .with_scope(scope.as_ref())
            .with_dpop_jkt(dpop.as_ref().map(|p| p.jkt.as_str()));
        let id_jag = self
            .validator
            .validate(assertion, &ctx, now)
            .await
            .map_err(|e| id_jag_error(&e))?;
        // RV-11: a revoked IdP subject gets `invalid_grant` after signature and claims, and
        // before the replay commit so its `jti` is not burnt; RV-14: no ledger answer, no token.
        // (15) consume the `jti` only now that a token will be issued (SEC-1, AS-7, D-6). Kept
        // until `exp` plus the leeway, after which the assertion is expired anyway.
        let claims = &id_jag.claims;
        let key = ReplayKey {
            kind: ReplayKind::IdJag,
            issuer: claims.iss.as_str(),
            jti: claims.jti.as_str(),
        };
        let until = claims.exp.plus(ema_jose::TimeOptions::MAX_LEEWAY.as_secs());
        let check = RedemptionCheck::new(
            claims.iss.as_str(),
            claims.tenant.as_deref(),
            claims.sub.as_str(),
            claims.iat,
            key,
            until,
        );
        let redeemed = match &self.redeemer {
            // Both in one call (one round trip on Redis), same answers.
            Some(redeemer) => redeemer
                .redeem(check, now)
                .await
                .map_err(OAuthError::from_error),
            None => self.redeem_in_two_steps(check, now).await,
        };
        match redeemed {
            Ok(Redeemed::First) => {}
            Ok(Redeemed::Again) => {
                return Err(OAuthError::invalid_grant(
                    "this ID-JAG was already used; obtain a new one from the IdP",
                ));
            }
            Ok(Redeemed::Revoked(reason)) => {
                return Err(OAuthError::invalid_grant(
                    "the user's access was revoked at the IdP; sign in again",
                )
                .with_cause(Revoked(reason)));
            }
            Err(e) => return Err(e),
        }
        // (16) the access token: audience = the selected resource (AS-11), the principal's
        // attributes for the tool-call layer, DPoP binding when proven (D-17).
        let mut at = self
            .tokens
            .claims(
                id_jag.subject.id.clone(),
                id_jag.resource.clone(),
                client.client.id.clone(),
                now,
            )
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "token could not be issued"))?;
        // RV-24: longer than five minutes only while the IdP's revocation channel is verified.
        let lifetime = crate::revoke::access_token_lifetime(
            self.revoker.as_ref(),
            claims.iss.as_str(),
            self.tokens.lifetime(),
            now,
        );
        at.exp = now.plus(lifetime);
        at.scope = id_jag.scope.clone();
        at.tenant = id_jag
            .subject
            .tenant
            .clone()
            .or_else(|| claims.tenant.clone());
        at.groups = if id_jag.subject.groups.is_empty() {
            claims.groups.clone().unwrap_or_default()
        } else {
            id_jag.subject.groups.clone()
        };
        at.roles = id_jag.subject.roles.clone();
        at.auth_time = claims.auth_time;
        at.acr = claims.acr.clone();
        at.amr = claims.amr.clone();
        at.cnf_jkt = dpop.as_ref().map(|p| p.jkt.clone());
        // AS-14: RAR details travel from the ID-JAG to the token and the response.
        at.authorization_details = claims.authorization_details.clone();
        let origin = IdJagOrigin {
            iss: claims.iss.clone(),
            jti: claims.jti.clone(),
            sub: claims.sub.as_str().to_owned(),
        };
        at.origin = Some(origin.clone());
        // RV-12: remember the mapping before the token exists, so a revoke command of the IdP
        // subject reaches it.
        if let Some(revoker) = &self.revoker {
            let scope = RevocationScope::idp(claims.iss.as_str(), claims.tenant.as_deref());
            revoker.record_mapping(&scope, claims.sub.as_str(), &at.sub);
        }
        let access_token = self
            .tokens
            .sign(&at)
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "token could not be issued"))?;
        Ok(AccessTokenResponse {
            access_token,
            token_type: if at.cnf_jkt.is_some() {
                "DPoP"
            } else {
                "Bearer"
            },
            expires_in: at.exp.as_secs().saturating_sub(now.as_secs()),
            scope: at.scope.clone(),
            resource: at.aud.as_str().to_owned(),
            authorization_details: at.authorization_details,
            jti: at.jti.as_str().to_owned(),
            redemption: IdJagRedemption {
                id_jag: origin,
                client_id: at.client_id,
                subject: at.sub,
                resource: at.aud,
                scope: at.scope,
                access_token_jti: at.jti,
                grant_type: JWT_BEARER,
            },
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// SEC-10: `{:?}` and `{:#?}` show no token bytes, and keep the other fields.
    pub(crate) fn assert_redacted(text: &str, secrets: &[&str], kept: &[&str]) {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} leaked into {text}");
        }
        for field in kept {
            assert!(text.contains(field), "{field} missing from {text}");
        }
    }

    fn redemption() -> IdJagRedemption {
        IdJagRedemption {
            id_jag: IdJagOrigin {
                iss: ema_id_jag::Issuer::new("https://idp.example"),
                jti: ema_id_jag::JwtId::new("idjag-1"),
                sub: "alice".into(),
            },
            client_id: ema_id_jag::ClientId::new("c1"),
            subject: "alice".into(),
            resource: ema_id_jag::Resource::new("https://mcp.tasks.example/mcp"),
            scope: None,
            access_token_jti: ema_id_jag::JwtId::new("jti-visible"),
            grant_type: JWT_BEARER,
        }
    }

    #[test]
    fn sec10_access_token_response_debug_is_redacted() {
        let response = AccessTokenResponse {
            access_token: "at.Zq9VtK3mWx7.sigXyZ".into(),
            token_type: "Bearer",
            expires_in: 3600,
            scope: Some(ScopeSet::parse("tasks.read").unwrap()),
            resource: "https://mcp.tasks.example/mcp".into(),
            authorization_details: None,
            jti: "jti-visible".into(),
            redemption: redemption(),
        };
        for text in [format!("{response:?}"), format!("{response:#?}")] {
            assert_redacted(
                &text,
                &["Zq9VtK3mWx7", "sigXyZ"],
                &[
                    "Bearer",
                    "3600",
                    "tasks.read",
                    "jti-visible",
                    "mcp.tasks.example",
                    "bytes",
                ],
            );
        }
    }

    #[test]
    fn the_response_body_is_the_json_document() {
        let mut response = AccessTokenResponse {
            access_token: "eyJhbGciOiJFUzI1NiJ9.e30.c2ln".into(),
            token_type: "Bearer",
            expires_in: 3600,
            scope: Some(ScopeSet::parse("tasks.write tasks.read").unwrap()),
            resource: "https://mcp.tasks.example/mcp".into(),
            authorization_details: None,
            jti: "not sent".into(),
            redemption: redemption(),
        };
        for details in [
            None,
            Some(vec![serde_json::json!({"type": "x", "q": "\"\\"})]),
        ] {
            response.authorization_details = details;
            for scope in [response.scope.clone(), None] {
                response.scope = scope;
                let http = response.to_response();
                assert_eq!(http.status(), 200);
                assert_eq!(http.headers()["cache-control"], "no-store");
                let body: Value = serde_json::from_slice(http.body()).unwrap();
                // AS-14 / AS-15: the same members as `to_json`, no refresh token, no `jti`.
                assert_eq!(body, response.to_json());
                assert!(body.get("refresh_token").is_none() && body.get("jti").is_none());
                // The audit facts travel beside the body, not in it.
                assert_eq!(http.extensions().get(), Some(&redemption()));
                assert!(!String::from_utf8_lossy(http.body()).contains("idjag-1"));
            }
        }
    }
}
