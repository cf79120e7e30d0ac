//! The connect flow: [`Connector`] starts an OAuth authorization-code + PKCE request to a
//! downstream provider for a principal and MCP session, and its router serves the callback
//! that stores the token set in the vault.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use ema_grant::form::{Form, encode_component};
use ema_jose::{Clock, SystemClock};
use ema_vault::{
    ConnectError, ConnectStates, Credential, CredentialVault, Owner, ProviderId, StoreSource,
};
use http::StatusCode;

use super::provider::{HttpProviderClient, ProviderConfigError, endpoint};

/// The longest callback query read, in bytes.
const MAX_CALLBACK_QUERY: usize = 8 * 1024;

/// One provider a user can connect: its authorization endpoint, the scopes asked for, the
/// client that exchanges the code, and (RFC 9207) the issuer its callback's `iss` must name.
#[derive(Clone, Debug)]
pub struct ConnectProvider {
    id: ProviderId,
    authorization_endpoint: url::Url,
    scopes: Vec<String>,
    issuer: Option<String>,
    client: Arc<HttpProviderClient>,
}

impl ConnectProvider {
    /// Provider `id`, whose users approve at `authorization_endpoint`; `client` exchanges the
    /// code (its client id goes into the authorization request).
    pub fn new(
        id: ProviderId,
        authorization_endpoint: &str,
        client: Arc<HttpProviderClient>,
    ) -> Result<Self, ProviderConfigError> {
        Ok(Self {
            id,
            authorization_endpoint: endpoint("authorization endpoint", authorization_endpoint)?,
            scopes: Vec::new(),
            issuer: None,
            client,
        })
    }

    /// The scopes asked for.
    #[must_use]
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The provider's issuer: a callback whose `iss` names another is refused (RFC 9207, mix-up
    /// defence); a callback without `iss` is refused too once this is set.
    #[must_use]
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The provider id.
    pub fn id(&self) -> &ProviderId {
        &self.id
    }
}

/// Why a connect flow could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectBeginError {
    /// No [`ConnectProvider`] is configured under this id.
    #[error("provider `{0}` cannot be connected: it is not configured")]
    UnknownProvider(ProviderId),
    /// Too many connect flows are pending.
    #[error("too many connections are pending; try again in a few minutes")]
    Busy,
    /// The state store refused for another reason.
    #[error("the connection could not be started: {0}")]
    State(String),
}

/// The MCP server's side of the connect flow.
///
/// [`begin`](Self::begin) binds a fresh `state` (single use, short-lived) to the principal, the
/// MCP session and the provider, and returns the provider's authorization URL with the state
/// and an S256 PKCE challenge: what the guard sends the agent as a URL-mode elicitation. The
/// user opens it in a browser; the provider redirects to
/// `<public base>/connect/{provider}/callback`, served by [`router`](Self::router), which
/// finishes the state, exchanges the code with the PKCE verifier, stores the token set for the
/// bound principal ([`StoreSource::Connect`]) and shows a plain "connected, return to your
/// agent" page. A replayed, expired, unknown or other provider's `state` gets a 400 page and
/// stores nothing. The credential appears in no response, URL or log line.
///
/// The callback route must not sit behind the bearer layer (the browser has no access token):
/// merge [`router`](Self::router) beside the protected MCP endpoint.
pub struct Connector {
    vault: Arc<dyn CredentialVault>,
    states: ConnectStates,
    base: String,
    providers: HashMap<ProviderId, ConnectProvider>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut providers: Vec<&str> = self.providers.keys().map(ProviderId::as_str).collect();
        providers.sort_unstable();
        f.debug_struct("Connector")
            .field("base", &self.base)
            .field("providers", &providers)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Connects into `vault`, with `states` holding the pending flows; `public_base` is the MCP
    /// server's public URL (scheme, host, port, any path prefix) under which the callback is
    /// served.
    pub fn new(
        vault: Arc<dyn CredentialVault>,
        states: ConnectStates,
        public_base: &str,
    ) -> Result<Self, ProviderConfigError> {
        let base = endpoint("public base URL", public_base)?;
        Ok(Self {
            vault,
            states,
            base: base.as_str().trim_end_matches('/').to_owned(),
            providers: HashMap::new(),
            clock: Arc::new(SystemClock),
        })
    }

    /// Adds a provider users can connect.
    #[must_use]
    pub fn with_provider(mut self, provider: ConnectProvider) -> Self {
        self.providers.insert(provider.id.clone(), provider);
        self
    }

    /// The clock of the states' lifetimes (the system clock by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The vault the callback stores into.
    pub fn vault(&self) -> &Arc<dyn CredentialVault> {
        &self.vault
    }

    /// The callback URL registered at `provider`: `<public base>/connect/{provider}/callback`.
    pub fn redirect_uri(&self, provider: &ProviderId) -> String {
        format!(
            "{}/connect/{}/callback",
            self.base,
            encode_component(provider.as_str())
        )
    }

    /// Starts connecting `owner` (in MCP session `session`) to `provider`: the authorization
    /// URL to open in a browser (`response_type=code`, `client_id`, `redirect_uri`, `scope`,
    /// `state`, `code_challenge`, `code_challenge_method=S256`).
    pub fn begin(
        &self,
        owner: &Owner,
        session: &str,
        provider: &ProviderId,
    ) -> Result<String, ConnectBeginError> {
        let config = self
            .providers
            .get(provider)
            .ok_or_else(|| ConnectBeginError::UnknownProvider(provider.clone()))?;
        let start = self
            .states
            .begin(owner, session, provider, self.clock.now())
            .map_err(|e| match e {
                ConnectError::Full => ConnectBeginError::Busy,
                other => ConnectBeginError::State(format!("{other:?}")),
            })?;
        let mut url = config.authorization_endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", config.client.client_id())
                .append_pair("redirect_uri", &self.redirect_uri(provider));
            if !config.scopes.is_empty() {
                query.append_pair("scope", &config.scopes.join(" "));
            }
            query
                .append_pair("state", &start.state)
                .append_pair("code_challenge", &start.code_challenge)
                .append_pair("code_challenge_method", "S256");
        }
        Ok(url.into())
    }

    /// The callback route, `GET /connect/{provider}/callback`, to merge beside the protected
    /// MCP endpoint (not behind the bearer layer).
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/connect/{provider}/callback", axum::routing::get(callback))
            .with_state(self.clone())
    }
}

/// A small HTML page; `text` is escaped.
fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title></head>\
         <body><h1>{0}</h1><p>{1}</p></body></html>\n",
        escape(title),
        escape(text)
    );
    (
        status,
        [
            (http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (http::header::CACHE_CONTROL, "no-store"),
            (http::header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

fn refused(text: &str) -> Response {
    page(StatusCode::BAD_REQUEST, "The connection was not made", text)
}

async fn callback(
    State(connector): State<Arc<Connector>>,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    const TARGET: &str = "ema_server::vault";
    let Ok(provider) = ProviderId::new(provider) else {
        return refused("This connection link names no provider.");
    };
    let Some(config) = connector.providers.get(&provider) else {
        return refused("This provider is not configured here.");
    };
    let query = query.unwrap_or_default();
    let Ok(form) = Form::parse(query.as_bytes(), MAX_CALLBACK_QUERY) else {
        return refused("The provider's answer could not be read.");
    };
    let Some(state) = form.get("state") else {
        return refused("The provider's answer has no state: start again from your agent.");
    };
    // The state is spent whatever follows: a second try with it is refused.
    let pending = match connector
        .states
        .finish(state, &provider, connector.clock.now())
    {
        Ok(pending) => pending,
        Err(e) => {
            let why = match e {
                ConnectError::Expired => {
                    "This connection link has expired: call the tool again for a new one."
                }
                ConnectError::WrongProvider => {
                    "This connection link was issued for another provider."
                }
                _ => {
                    "This connection link is unknown or was already used: call the tool again for a new one."
                }
            };
            tracing::warn!(target: TARGET, provider = %provider, problem = ?e, "connect callback refused");
            return refused(why);
        }
    };
    let subject = pending.owner.subject().to_owned();
    if let Some(error) = form.get("error") {
        tracing::info!(target: TARGET, provider = %provider, subject = %subject, error = %error.chars().take(64).collect::<String>(), "the provider did not grant the connection");
        return refused("The provider did not grant access; nothing was stored.");
    }
    if let Some(expected) = &config.issuer
        && form.get("iss") != Some(expected.as_str())
    {
        tracing::warn!(target: TARGET, provider = %provider, subject = %subject, "connect callback from another issuer refused");
        return refused("The answer did not come from the expected provider; nothing was stored.");
    }
    let Some(code) = form.get("code") else {
        return refused("The provider's answer has no authorization code; nothing was stored.");
    };
    let tokens = match config
        .client
        .exchange_code(
            code,
            &pending.code_verifier,
            &connector.redirect_uri(&provider),
        )
        .await
    {
        Ok(tokens) => tokens,
        Err(e) => {
            tracing::warn!(target: TARGET, provider = %provider, subject = %subject, error = %e, "the code exchange failed");
            return page(
                StatusCode::BAD_GATEWAY,
                "The connection was not made",
                "The provider did not complete the connection; call the tool again to retry.",
            );
        }
    };
    let key = pending.owner.at(provider.clone());
    if let Err(e) = connector
        .vault
        .store(&key, Credential::OAuth(tokens), StoreSource::Connect)
        .await
    {
        tracing::error!(target: TARGET, provider = %provider, subject = %subject, error = %e, "the connected credential could not be stored");
        return page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The connection was not made",
            "The credential could not be stored; try again later.",
        );
    }
    tracing::info!(target: TARGET, provider = %provider, subject = %subject, session = %pending.session, "provider connected");
    page(
        StatusCode::OK,
        "Connected",
        &format!(
            "Your {provider} account is connected. You can close this page and return to your agent."
        ),
    )
}
