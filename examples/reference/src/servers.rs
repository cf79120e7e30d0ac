//! Builds each reference server's router from its configuration.

use std::sync::Arc;

use axum::Router;
use ema_grant::{
    AccessTokenIssuer, AccessTokenValidator, ClientCredential, ClientRegistry, GroupPolicy,
    GroupRule, InMemoryReplayStore, JwtBearerGrant, RegisteredClient, SsoProvider, TargetServer,
    TokenExchangeGrant, User,
};
use ema_id_jag::{
    Directory, IdJagIssuer, IdJagValidator, Issuer, LocalSubject, Resource, ResourceConfig,
    ResourceRegistry, ScopeSet, TrustRegistry, TrustedIssuer, UnknownScopes,
};
use ema_jose::{Clock, KeyRing, StaticKeySource};
use ema_metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};
use ema_server::{
    BearerAuth, Limits, Principal, authorization_server_router, harden, idp_metadata, idp_router,
    protect, protected_resource_router,
};

use crate::config::{
    AuthorizationServerConfig, ClientConfig, ConfigError, IdpConfig, McpServerConfig,
};
use crate::keys::{IssuerKeys, fetcher, jwks_file, signing_key};
use crate::tasks::tasks_service;

fn clients(
    configs: &[ClientConfig],
    audiences: [String; 2],
) -> Result<ClientRegistry, ConfigError> {
    let mut registry = ClientRegistry::new(audiences);
    for c in configs {
        let credential = match (&c.secret, &c.jwks_file) {
            (Some(secret), None) => ClientCredential::secret(secret),
            (None, Some(path)) => ClientCredential::PrivateKeyJwt {
                keys: Arc::new(jwks_file(path)?),
            },
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "client `{}` needs exactly one of `secret` and `jwks_file`",
                    c.id
                )));
            }
        };
        let mut client = RegisteredClient::new(c.id.as_str(), credential)
            .with_redirect_uris(c.redirect_uris.clone());
        // D-24: one method per client; it must fit the credential.
        if let Some(method) = c.token_endpoint_auth_method {
            client = client.with_auth_method(method).map_err(|e| {
                ConfigError::Invalid(format!(
                    "{e}: a `secret` takes client_secret_basic or client_secret_post, a \
                     `jwks_file` takes private_key_jwt"
                ))
            })?;
        }
        registry = registry.with(client);
    }
    Ok(registry)
}

/// The `token_endpoint_auth_methods_supported` to advertise: the registered clients' methods
/// only (D-24).
fn auth_methods_supported(registry: &ClientRegistry) -> Vec<String> {
    registry
        .auth_methods_supported()
        .into_iter()
        .map(|m| m.as_str().to_owned())
        .collect()
}

fn scopes(s: &str) -> Result<ScopeSet, ConfigError> {
    ScopeSet::parse(s).map_err(|_| ConfigError::Invalid(format!("invalid scope list `{s}`")))
}

/// The enterprise IdP at `public_url`.
pub fn idp_app(
    cfg: &IdpConfig,
    public_url: &str,
    clock: Arc<dyn Clock>,
) -> Result<Router, ConfigError> {
    let issuer = public_url.trim_end_matches('/');
    let keys = Arc::new(KeyRing::new(signing_key(&cfg.signing_key)?));
    let metadata = idp_metadata(issuer);
    let token_endpoint = format!("{issuer}/token");
    let registry = clients(&cfg.clients, [issuer.to_owned(), token_endpoint.clone()])?;
    let mut metadata = metadata;
    metadata.token_endpoint_auth_methods_supported = Some(auth_methods_supported(&registry));
    let mut sso = SsoProvider::new(Issuer::new(issuer), keys.clone(), registry.clone())
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let mut policy = GroupPolicy::new();
    for u in &cfg.users {
        let mut user = User::new(u.subject.as_str(), u.username.as_str(), &u.password)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?
            .with_groups(u.groups.clone());
        if let Some(email) = &u.email {
            user = user.with_email(email.as_str());
        }
        sso = sso.with_user(user);
        policy = policy.with_member(u.subject.as_str(), u.groups.clone());
    }
    for r in &cfg.rules {
        policy = policy.with_rule(
            GroupRule::new(r.group.as_str(), r.audience.as_str(), scopes(&r.scopes)?)
                .with_resources(r.resources.clone()),
        );
    }
    let mut exchange = TokenExchangeGrant::new(
        IdJagIssuer::new(Issuer::new(issuer), keys.clone()),
        StaticKeySource::new().with_issuer(issuer, keys.jwks()),
        registry,
        Arc::new(InMemoryReplayStore::default()),
        policy,
        &token_endpoint,
    );
    for t in &cfg.targets {
        let mut target = TargetServer::new(t.issuer.as_str(), t.resources.clone());
        for alias in &t.aliases {
            target = target.with_alias(alias.as_str());
        }
        for (idp_client, here) in &t.clients {
            target = target.with_client(idp_client.as_str(), here.as_str());
        }
        exchange = exchange.with_target(target);
    }
    let router = idp_router(sso, exchange, keys, &metadata, clock);
    Ok(harden(router, &Limits::default()))
}

/// The authorization server's jwt-bearer grant, as [`authorization_server_parts`] builds it.
pub type AuthorizationServerGrant = JwtBearerGrant<IssuerKeys, Directory, InMemoryReplayStore>;

/// The MCP authorization server at `public_url`.
pub fn authorization_server_app(
    cfg: &AuthorizationServerConfig,
    public_url: &str,
    clock: Arc<dyn Clock>,
) -> Result<Router, ConfigError> {
    let (grant, metadata) = authorization_server_parts(cfg, public_url, clock.clone())?;
    Ok(authorization_server_app_from(grant, &metadata, clock))
}

/// The hardened router of an authorization server built by [`authorization_server_parts`].
pub fn authorization_server_app_from(
    grant: AuthorizationServerGrant,
    metadata: &AuthorizationServerMetadata,
    clock: Arc<dyn Clock>,
) -> Router {
    harden(
        authorization_server_router(grant, metadata, clock),
        &Limits::default(),
    )
}

/// The authorization server's grant and RFC 8414 metadata, apart from any router: for callers
/// that drive the grant in process as well as over HTTP (the `load` tool).
pub fn authorization_server_parts(
    cfg: &AuthorizationServerConfig,
    public_url: &str,
    clock: Arc<dyn Clock>,
) -> Result<(AuthorizationServerGrant, AuthorizationServerMetadata), ConfigError> {
    let issuer = public_url.trim_end_matches('/');
    let token_endpoint = format!("{issuer}/token");
    let keys = Arc::new(KeyRing::new(signing_key(&cfg.signing_key)?));
    let mut trust = TrustRegistry::new();
    let mut issuer_keys = IssuerKeys::new(fetcher(cfg.insecure_allow_loopback_http)?, clock);
    for t in &cfg.trusted_issuers {
        let mut trusted = TrustedIssuer::new(t.issuer.as_str());
        if let Some(tenant) = &t.tenant {
            trusted = trusted.with_tenant(tenant.as_str());
        }
        trust = trust.with(trusted);
        issuer_keys = match (&t.jwks_url, &t.jwks_file) {
            (Some(url), None) => issuer_keys.with_url(&t.issuer, url)?,
            (None, Some(path)) => issuer_keys.with_set(&t.issuer, jwks_file(path)?),
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "trusted issuer `{}` needs exactly one of `jwks_url` and `jwks_file`",
                    t.issuer
                )));
            }
        };
    }
    let mut resources = ResourceRegistry::new();
    for r in &cfg.resources {
        let unknown = match r.unknown_scopes.as_deref() {
            None | Some("reject") => UnknownScopes::Reject,
            Some("drop") => UnknownScopes::Drop,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "unknown_scopes `{other}`: use reject or drop"
                )));
            }
        };
        resources = resources.with(
            ResourceConfig::new(r.id.as_str(), r.scopes.clone())
                .with_default_scopes(r.default_scopes.iter().map(String::as_str).collect())
                .with_unknown_scopes(unknown),
        );
    }
    let mut directory = Directory::new();
    for m in &cfg.subjects.map {
        directory = directory.with_subject(
            m.issuer.as_str(),
            None,
            m.sub.as_str(),
            LocalSubject::new(m.local.as_str()).with_groups(m.groups.clone()),
        );
    }
    if cfg.subjects.just_in_time {
        directory = directory.with_provisioning(|c| {
            Some(
                LocalSubject::new(c.sub.as_str()).with_groups(c.groups.clone().unwrap_or_default()),
            )
        });
    }
    let validator = IdJagValidator::new(
        Issuer::new(issuer),
        trust,
        issuer_keys,
        resources,
        directory,
    );
    let grant = JwtBearerGrant::new(
        validator,
        clients(&cfg.clients, [issuer.to_owned(), token_endpoint.clone()])?,
        InMemoryReplayStore::default(),
        AccessTokenIssuer::new(Issuer::new(issuer), keys).with_lifetime(cfg.token_lifetime_secs),
        &token_endpoint,
    );
    let mut metadata =
        AuthorizationServerMetadata::new(issuer, token_endpoint).with_id_jag_profile();
    metadata.jwks_uri = Some(format!("{issuer}/jwks"));
    metadata.token_endpoint_auth_methods_supported = Some(auth_methods_supported(grant.clients()));
    metadata.scopes_supported = Some(
        cfg.resources
            .iter()
            .flat_map(|r| r.scopes.iter().cloned())
            .collect(),
    );
    Ok((grant, metadata))
}

/// The MCP server (task list tools over Streamable HTTP) at `public_url`.
pub fn mcp_app(
    cfg: &McpServerConfig,
    public_url: &str,
    clock: Arc<dyn Clock>,
) -> Result<Router, ConfigError> {
    let base = public_url.trim_end_matches('/');
    let resource = format!("{base}{}", cfg.path);
    let resource_url = url::Url::parse(&resource)
        .map_err(|e| ConfigError::Invalid(format!("resource URL: {e}")))?;
    let prm_url = ema_metadata::protected_resource_metadata_url(&resource_url);
    let jwks_url = cfg
        .jwks_url
        .clone()
        .unwrap_or_else(|| format!("{}/jwks", cfg.authorization_server.trim_end_matches('/')));
    let keys = IssuerKeys::new(fetcher(cfg.insecure_allow_loopback_http)?, clock.clone())
        .with_url(&cfg.authorization_server, &jwks_url)?;
    let validator = AccessTokenValidator::new(
        Issuer::new(cfg.authorization_server.as_str()),
        Resource::new(resource.as_str()),
        keys,
    );
    // Every call needs tasks.read; changing tools also need tasks.write (RS-6), so an agent
    // holding a read-only token is told to step up (CL-10).
    let auth = BearerAuth::new(validator, prm_url.as_str(), clock)
        .require_scopes(scopes("tasks.read")?)
        .require_tool_scopes("add_task", scopes("tasks.write")?)
        .require_tool_scopes("complete_task", scopes("tasks.write")?);
    let mcp = Router::new().nest_service(&cfg.path, tasks_service());
    let prm =
        ProtectedResourceMetadata::new(resource.as_str(), [cfg.authorization_server.as_str()])
            .with_scopes(["tasks.read", "tasks.write"]);
    let app = protect(mcp, Arc::new(auth)).merge(protected_resource_router(&prm));
    Ok(harden(app, &Limits::default()))
}

/// The MCP server of [`mcp_app`] with authentication switched off: every request carries the
/// fixed `principal` instead of one verified from a token. The tools, the Streamable HTTP
/// service and the hardening are the same, so comparing the two measures the bearer layer alone
/// (the `load` tool). Never serve this outside a measurement.
pub fn mcp_app_without_auth(cfg: &McpServerConfig, principal: Principal) -> Router {
    let mcp = Router::new()
        .nest_service(&cfg.path, tasks_service())
        .layer(axum::Extension(principal));
    harden(mcp, &Limits::default())
}
