//! The reference servers on loopback ports chosen by the OS, built from the development
//! defaults, plus what a traffic generator needs: the signing key of an IdP the authorization
//! server trusts (so it can mint fresh ID-JAGs), the authorization server's own access-token
//! signer, and an SSO client for the reference IdP.
//!
//! Started: the IdP, the authorization server (trusting the reference IdP by JWKS URL and the
//! generator's IdP, [`LOAD_IDP`], by a JWKS file), the MCP server behind the bearer layer, and
//! the same MCP server with authentication switched off ([`crate::servers::mcp_app_without_auth`]),
//! and the same MCP server behind the bearer layer with its tool-call guard off.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use ema_grant::{AccessTokenClaims, AccessTokenIssuer, AccessTokenValidator, JWT_BEARER};
use ema_grant::{TokenRequest, form::encode_component};
use ema_id_jag::{ClientId, IdJagGrant, IdJagIssuer, Issuer, Resource, ScopeSet, Subject};
use ema_jose::{
    Algorithm, Clock, KeyRing, SignError, SigningKey, StaticKeySource, SystemClock, UnixTime,
    random_id,
};
use ema_server::Principal;

use crate::config::{AuthorizationServerConfig, ConfigError, TrustedIssuerConfig, defaults};
use crate::servers::{self, AuthorizationServerGrant};
use crate::{serve, sso::SsoClient};

/// The issuer of the generator's IdP (its key never leaves this process).
pub const LOAD_IDP: &str = "https://idp.load.example";
/// The client registered at the authorization server by the development defaults.
pub const CLIENT_ID: &str = "tc_5f2a91";
/// Its secret.
pub const CLIENT_SECRET: &str = "tc-secret";
/// The subject of every generated ID-JAG (provisioned just in time by the defaults).
pub const LOAD_USER: &str = "load-user";
/// The protocol version the MCP clients negotiate.
pub const MCP_PROTOCOL_VERSION: &str = "2025-06-18";

/// Why the stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// Binding or file I/O.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A server configuration was refused.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Signing.
    #[error("signing: {0}")]
    Sign(#[from] SignError),
    /// The authorization server refused the bootstrap token request.
    #[error("bootstrap token request refused: {0}")]
    Bootstrap(String),
}

/// One started server.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The socket address it listens on.
    pub addr: SocketAddr,
    /// Its base URL (`http://127.0.0.1:port`).
    pub url: String,
}

/// The running servers and the generator's keys.
#[derive(Debug)]
pub struct Stack {
    /// The reference IdP.
    pub idp: Endpoint,
    /// The MCP authorization server.
    pub auth_server: Endpoint,
    /// The MCP server behind the bearer layer.
    pub mcp: Endpoint,
    /// The same MCP server with authentication off (every request carries [`Stack::principal`]).
    pub mcp_open: Endpoint,
    /// The same MCP server behind the bearer layer with its tool-call guard off (the same
    /// configuration as [`Stack::mcp`] when the stack starts with the guard off): the baseline
    /// of the guard's cost. It accepts the same access tokens as [`Stack::mcp`].
    pub mcp_unguarded: Endpoint,
    /// The MCP resource identifier (`<mcp>/mcp`).
    pub resource: String,
    /// A second authorization-server grant built from the same configuration as the served one
    /// (its own replay store and access-token key), for in-process measurements.
    pub grant: AuthorizationServerGrant,
    /// The principal the open MCP server hands to its tools: the verified claims of an access
    /// token the served authorization server issued.
    pub principal: Principal,
    /// The routers being served as [`Stack::mcp`] and [`Stack::mcp_open`], for driving them in
    /// process (`tower::ServiceExt::oneshot`) without sockets.
    pub mcp_routers: (axum::Router, axum::Router),
    /// The router being served as [`Stack::mcp_unguarded`], for driving it in process.
    pub mcp_unguarded_router: axum::Router,
    /// The authorization server's app (hardening included) around a third grant built from the
    /// same configuration, for driving the token endpoint in process without sockets.
    pub auth_router: axum::Router,
    /// The configuration the authorization server was built from (the development defaults
    /// plus [`LOAD_IDP`] as a trusted issuer), for more instances of it (on Redis, say).
    pub as_config: AuthorizationServerConfig,
    id_jags: IdJagIssuer,
    idp_keys: Arc<KeyRing>,
    tokens: AccessTokenIssuer,
}

/// The path of the MCP endpoint.
pub const MCP_PATH: &str = "/mcp";

impl Stack {
    /// Binds five loopback ports and starts the servers on the current Tokio runtime.
    pub async fn start() -> Result<Self, StackError> {
        Self::start_with(true).await
    }

    /// [`Stack::start`] with the MCP server's tool-call guard on or off (`[authz] enabled`):
    /// off, the bearer layer alone stands between the clients and the tools, which is what
    /// the bearer-overhead comparison of the `load` tool measures.
    pub async fn start_with(guard: bool) -> Result<Self, StackError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let (idp_l, idp) = serve::bind(loopback).await?;
        let (as_l, auth_server) = serve::bind(loopback).await?;
        let (mcp_l, mcp_base) = serve::bind(loopback).await?;
        let (open_l, open_base) = serve::bind(loopback).await?;
        let (unguarded_l, _) = serve::bind(loopback).await?;
        let endpoint = |l: &tokio::net::TcpListener, url: &str| -> std::io::Result<Endpoint> {
            Ok(Endpoint {
                addr: l.local_addr()?,
                url: url.to_owned(),
            })
        };
        let (idp_e, as_e, mcp_e, open_e) = (
            endpoint(&idp_l, &idp)?,
            endpoint(&as_l, &auth_server)?,
            endpoint(&mcp_l, &mcp_base)?,
            endpoint(&open_l, &open_base)?,
        );
        // Served under the guarded server's public URL, so that its resource (and the audience
        // of the tokens it accepts) is the same.
        let unguarded_e = Endpoint {
            addr: unguarded_l.local_addr()?,
            url: mcp_base.clone(),
        };
        let resource = format!("{mcp_base}{MCP_PATH}");
        let notes = format!("{mcp_base}/notes");

        // The generator's IdP: its public keys go to the authorization server as inline JWKS.
        let idp_keys = Arc::new(KeyRing::new(SigningKey::generate(
            Algorithm::ES256,
            Some("load-idp-k1".into()),
        )?));
        let mut as_cfg = defaults::authorization_server(&idp, &auth_server, &resource, &notes);
        as_cfg.trusted_issuers.push(TrustedIssuerConfig {
            issuer: LOAD_IDP.into(),
            jwks_url: None,
            jwks_file: None,
            jwks: Some(idp_keys.jwks().to_public_json().to_string()),
            tenant: None,
            algorithms: None,
        });
        let built = servers::authorization_server_parts(&as_cfg, &auth_server, clock.clone())
            .and_then(|served| {
                let twin =
                    servers::authorization_server_parts(&as_cfg, &auth_server, clock.clone())?;
                let routed =
                    servers::authorization_server_parts(&as_cfg, &auth_server, clock.clone())?;
                Ok((served, twin.0, routed.0))
            });
        let ((served, metadata), grant, routed) = built?;
        let auth_router = servers::authorization_server_app_from(routed, &metadata, clock.clone());

        let id_jags = IdJagIssuer::new(Issuer::new(LOAD_IDP), idp_keys.clone());
        let tokens = served.tokens().clone();
        // One real token from the served grant, verified like the MCP server would: the
        // principal of the open server, and the template of every access token minted later.
        let now = clock.now();
        let jag = mint_id_jag(&id_jags, LOAD_USER, &auth_server, &resource, now)?;
        let body = token_body(&jag);
        let basic = basic_auth();
        let issued = served
            .token(
                &TokenRequest::form(body.as_bytes()).with_authorization(&basic),
                now,
            )
            .await
            .map_err(|e| StackError::Bootstrap(e.to_string()))?;
        let validator = AccessTokenValidator::new(
            Issuer::new(auth_server.as_str()),
            Resource::new(resource.as_str()),
            StaticKeySource::new().with_issuer(auth_server.as_str(), tokens.keys().jwks()),
        );
        let principal = Principal::new(
            validator
                .validate(&issued.access_token, now)
                .await
                .map_err(|e| StackError::Bootstrap(e.to_string()))?,
        );

        let idp_app = servers::idp_app(
            &defaults::idp(&idp, &auth_server, &resource, &notes),
            &idp,
            clock.clone(),
        )?;
        let as_app = servers::authorization_server_app_from(served, &metadata, clock.clone());
        let mut mcp_cfg = defaults::mcp_server(&auth_server, &mcp_base);
        mcp_cfg.authz.enabled = guard;
        let mcp_app = servers::mcp_app(&mcp_cfg, &mcp_base, clock.clone())?;
        let open_app = servers::mcp_app_without_auth(&mcp_cfg, principal.clone());
        mcp_cfg.authz.enabled = false;
        let unguarded_app = servers::mcp_app(&mcp_cfg, &mcp_base, clock.clone())?;
        for (listener, app) in [
            (idp_l, idp_app),
            (as_l, as_app),
            (mcp_l, mcp_app.clone()),
            (open_l, open_app.clone()),
            (unguarded_l, unguarded_app.clone()),
        ] {
            tokio::spawn(serve::serve(listener, app, std::future::pending()));
        }
        Ok(Self {
            idp: idp_e,
            auth_server: as_e,
            mcp: mcp_e,
            mcp_open: open_e,
            mcp_unguarded: unguarded_e,
            resource,
            grant,
            principal,
            mcp_routers: (mcp_app, open_app),
            mcp_unguarded_router: unguarded_app,
            auth_router,
            as_config: as_cfg,
            id_jags,
            idp_keys,
            tokens,
        })
    }

    /// The current time of the stack's clock.
    pub fn now(&self) -> UnixTime {
        SystemClock.now()
    }

    /// A fresh ID-JAG from [`LOAD_IDP`] for the MCP resource (scope `tasks.read`), with a new
    /// random `jti`.
    pub fn id_jag(&self, now: UnixTime) -> Result<String, SignError> {
        mint_id_jag(
            &self.id_jags,
            LOAD_USER,
            &self.auth_server.url,
            &self.resource,
            now,
        )
    }

    /// As [`Stack::id_jag`], for the IdP subject `subject` at the authorization server whose
    /// issuer is `auth_server` (another instance built from [`Stack::as_config`]).
    pub fn id_jag_for(
        &self,
        subject: &str,
        auth_server: &str,
        now: UnixTime,
    ) -> Result<String, SignError> {
        mint_id_jag(&self.id_jags, subject, auth_server, &self.resource, now)
    }

    /// The public keys of [`LOAD_IDP`] as JWKS text (for another trust entry of it, such as an
    /// SSF transmitter's).
    pub fn load_idp_jwks(&self) -> String {
        self.idp_keys.jwks().to_public_json().to_string()
    }

    /// `claims` signed by [`LOAD_IDP`]'s key as a Security Event Token (`typ`
    /// `secevent+jwt`), for the authorization server's SSF push receiver.
    pub fn sign_set(&self, claims: &serde_json::Value) -> Result<String, SignError> {
        self.idp_keys
            .active()
            .sign_jwt(Some(ema_grant::ssf::SECEVENT_TYP), claims)
    }

    /// A fresh access token for the MCP resource, signed by the served authorization server's
    /// key, with the claims of [`Stack::principal`] and a new `jti`.
    pub fn access_token(&self, now: UnixTime) -> Result<String, SignError> {
        self.access_token_for(now, &self.resource)
    }

    /// As [`Stack::access_token`], issued at `iat` for `resource` (for tokens the MCP server
    /// must refuse: expired, or for another resource).
    pub fn access_token_for(&self, iat: UnixTime, resource: &str) -> Result<String, SignError> {
        let mut claims: AccessTokenClaims = self.principal.claims().clone();
        claims.jti = ema_id_jag::JwtId::new(random_id()?);
        claims.iat = iat;
        claims.exp = iat.plus(self.tokens.lifetime());
        claims.aud = Resource::new(resource);
        self.tokens.sign(&claims)
    }

    /// An SSO client of the reference IdP (users `ana`/`ana-password`, `bob`/`bob-password`).
    pub fn sso(&self) -> SsoClient {
        SsoClient {
            idp: self.idp.url.clone(),
            client_id: "desk-idp-01".into(),
            client_secret: "desk-secret".into(),
            redirect_uri: "http://127.0.0.1/callback".into(),
            client_secret_post: false,
        }
    }
}

fn mint_id_jag(
    issuer: &IdJagIssuer,
    subject: &str,
    auth_server: &str,
    resource: &str,
    now: UnixTime,
) -> Result<String, SignError> {
    let mut grant = IdJagGrant::new(
        Subject::new(subject),
        Issuer::new(auth_server),
        ClientId::new(CLIENT_ID),
    );
    grant.resources = vec![Resource::new(resource)];
    grant.scope = ScopeSet::parse("tasks.read tasks.write").ok();
    grant.groups = Some(vec!["eng".into()]);
    Ok(issuer.issue(grant, now)?.token)
}

/// The form body of a jwt-bearer request for `id_jag`.
pub fn token_body(id_jag: &str) -> String {
    format!(
        "grant_type={}&assertion={id_jag}",
        encode_component(JWT_BEARER)
    )
}

/// The `Authorization` header value of [`CLIENT_ID`] (`client_secret_basic`).
pub fn basic_auth() -> String {
    let raw = format!("{CLIENT_ID}:{CLIENT_SECRET}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The `Authorization` header value of the IdP client `desk-idp-01`.
pub fn idp_basic_auth() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("desk-idp-01:desk-secret")
    )
}
