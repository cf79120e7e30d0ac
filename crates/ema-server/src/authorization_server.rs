//! The MCP authorization server's routes: RFC 8414 metadata advertising the ID-JAG grant
//! profile (MD-1, MD-2), the JWKS of its access-token keys, and the token endpoint running the
//! jwt-bearer grant.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use ema_grant::JwtBearerGrant;
use ema_grant::ReplayStore;
use ema_id_jag::SubjectResolver;
use ema_jose::{Clock, KeySource};
use ema_metadata::AuthorizationServerMetadata;

use crate::endpoint::{into_axum, public_json, read_request};
use crate::paths::path_of;

struct AsState<K, S, R> {
    grant: JwtBearerGrant<K, S, R>,
    metadata: serde_json::Value,
    clock: Arc<dyn Clock>,
}

/// Builds the authorization server's router.
///
/// `metadata` is served at the RFC 8414 well-known path of its `issuer`; its `token_endpoint`
/// and `jwks_uri` paths are where the token endpoint and the JWKS are mounted. The grant is
/// usually the bare [`JwtBearerGrant`] its builder returns; a grant built typed works alike.
///
/// Each token request is logged (`tracing`, level `info`, target
/// `ema_server::authorization_server`) with `grant="jwt_bearer"`, `status`, on refusal `error`
/// and the log-only `reason`, and the scopes `scope_requested` and `scope_granted`; never a
/// token.
pub fn authorization_server_router<K, S, R>(
    grant: JwtBearerGrant<K, S, R>,
    metadata: &AuthorizationServerMetadata,
    clock: Arc<dyn Clock>,
) -> Router
where
    K: KeySource + 'static,
    S: SubjectResolver + 'static,
    R: ReplayStore + 'static,
{
    let well_known = path_of(
        &metadata.issuer,
        ema_metadata::authorization_server_metadata_url,
    );
    let token = metadata
        .token_endpoint
        .as_deref()
        .map_or_else(|| "/token".to_owned(), crate::paths::url_path);
    let jwks = metadata
        .jwks_uri
        .as_deref()
        .map_or_else(|| "/jwks".to_owned(), crate::paths::url_path);
    let state = Arc::new(AsState {
        grant,
        metadata: metadata.to_json(),
        clock,
    });
    Router::new()
        .route(&well_known, get(AsState::metadata))
        .route(&jwks, get(AsState::jwks))
        .route(&token, post(AsState::token))
        .with_state(state)
}

impl<K, S, R> AsState<K, S, R>
where
    K: KeySource + 'static,
    S: SubjectResolver + 'static,
    R: ReplayStore + 'static,
{
    async fn metadata(State(state): State<Arc<Self>>) -> Response {
        public_json(&state.metadata, 300)
    }

    async fn jwks(State(state): State<Arc<Self>>) -> Response {
        public_json(&state.grant.tokens().keys().jwks().to_public_json(), 300)
    }

    async fn token(
        State(state): State<Arc<Self>>,
        request: http::Request<axum::body::Body>,
    ) -> Response {
        let request = match read_request(request).await {
            Ok(request) => request,
            Err(response) => return response,
        };
        let response = state.grant.handle(&request, state.clock.now()).await;
        log_outcome(LogTarget::AuthorizationServer, "jwt_bearer", &response);
        into_axum(response)
    }
}

/// The server a token-endpoint outcome is logged for: each logs under its own `tracing`
/// target, so an operator can tell the IdP's decisions from the authorization server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogTarget {
    /// `ema_server::authorization_server`.
    AuthorizationServer,
    /// `ema_server::idp`.
    Idp,
}

/// A scope set for a log field: the space-separated names, or nothing. Formatted only when the
/// event is recorded.
struct Scopes<'a>(Option<&'a ema_id_jag::ScopeSet>);

impl std::fmt::Display for Scopes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(scopes) => std::fmt::Display::fmt(scopes, f),
            None => Ok(()),
        }
    }
}

/// Logs a token endpoint outcome under the server's target: grant, status, the scopes
/// requested and granted (`scope_requested`, `scope_granted`, from the response's
/// [`ema_grant::ScopeLog`]; scope names only), and for a refusal the error code and the cause
/// the grant kept for the log (the [`ema_grant::OAuthError`] the response carries as an
/// extension, e.g. which `token_endpoint_auth_method` a client is registered for, D-24), never
/// the body's tokens and never by reading the body back.
pub(crate) fn log_outcome(
    server: LogTarget,
    grant: &'static str,
    response: &http::Response<Vec<u8>>,
) {
    // `tracing` needs the target as a constant, so one arm per server.
    macro_rules! info {
        ($($field:tt)*) => {
            match server {
                LogTarget::AuthorizationServer => {
                    tracing::info!(target: "ema_server::authorization_server", $($field)*)
                }
                LogTarget::Idp => tracing::info!(target: "ema_server::idp", $($field)*),
            }
        };
    }
    let status = response.status().as_u16();
    let scopes = response.extensions().get::<ema_grant::ScopeLog>();
    let scope_requested = Scopes(scopes.and_then(|s| s.requested.as_ref()));
    let scope_granted = Scopes(scopes.and_then(|s| s.granted.as_ref()));
    if response.status().is_success() {
        info!(
            grant,
            status,
            scope_requested = %scope_requested,
            scope_granted = %scope_granted,
            "token issued"
        );
    } else if let Some(error) = response.extensions().get::<ema_grant::OAuthError>() {
        let reason = error.cause_chain();
        info!(
            grant,
            status,
            error = %error.code,
            reason,
            scope_requested = %scope_requested,
            scope_granted = %scope_granted,
            "token request refused"
        );
    } else {
        info!(
            grant,
            status,
            scope_requested = %scope_requested,
            scope_granted = %scope_granted,
            "token request refused"
        );
    }
}
