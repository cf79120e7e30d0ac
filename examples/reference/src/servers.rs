//! Builds each reference server's router from its configuration.

use std::sync::Arc;

use axum::Router;
use ema_grant::redis_ledger::{DEFAULT_RESYNC, tail_mirror};
use ema_grant::revocation::{DynRevocationLedger, LedgerMirror, MemoryLedger, MirrorListener};
use ema_grant::ssf::{SsfReceiver, SubjectMatching, TransmitterTrust};
use ema_grant::ssf_health::VerificationPolicy;
use ema_grant::{
    AccessTokenIssuer, AdminPolicy, AuthMethod, ClientCredential, ClientRegistry, DynReplayStore,
    GroupPolicy, GroupRule, IdJagRedeemer, JwtBearerGrant, PolicyDecision, PolicyRequest,
    RedisLedger, RedisRedeemer, RedisReplayStore, RegisteredClient, Revoker, SsoProvider,
    TargetServer, TokenExchangeGrant, User,
};
use ema_id_jag::{
    Directory, IdJagIssuer, Issuer, LocalSubject, ResourceConfig, ResourceRegistry, ScopeSet,
    TrustRegistry, TrustedIssuer, UnknownScopes,
};
use ema_jose::{AlgorithmSet, Clock, KeyRing, StaticKeySource};
use ema_jwks::{IssuerKeys, JwksSource};
use ema_metadata::AuthorizationServerMetadata;
use ema_server::vault::PurgeOnRevocation;
use ema_server::{
    AuthorizationServerRouter, BearerAuth, CodeFlowConfig, IdpRouter, Limits, Principal,
    advertise_code_flow, authorization_server_router, harden, idp_metadata_with_paths, protect,
};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use ema_server::audit::{AuditLog, DefinitionResponse, ToolDefinitionChanged};
use ema_server::authz::cedar::{CedarEngine, CedarPolicies, CedarSchema, PrincipalMapping};
use ema_server::authz::{Authorizer, PinResponse, SecretDetector, ToolCallAuthorizer};

use crate::config::{
    self, AuthorizationServerConfig, ClientConfig, ConfigError, IdpConfig, McpAuthzConfig,
    McpServerConfig, PinResponseConfig,
};
use crate::keys::{fetcher, issuer_keys_error, jwks_file, signing_key};
use crate::tasks::{self, guarded_tasks_service_in, tasks_service, tasks_service_in};

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
            // A public client (the code flow's, bound by PKCE): `none`, said explicitly.
            (None, None) if c.token_endpoint_auth_method == Some(AuthMethod::None) => {
                ClientCredential::Public
            }
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "client `{}` needs exactly one of `secret` and `jwks_file` (or neither with \
                     token_endpoint_auth_method = \"none\")",
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

/// A scope list written as one TOML string per scope.
fn scope_list(list: &[String], what: &str) -> Result<ScopeSet, ConfigError> {
    list.iter()
        .map(|s| match ScopeSet::parse(s) {
            Ok(one) if one.len() == 1 => Ok(s.as_str()),
            _ => Err(ConfigError::Invalid(format!(
                "{what}: `{s}` is not a single scope (one scope per string, no spaces)"
            ))),
        })
        .collect()
}

/// Exactly one of a JWKS URL, a JWKS file and inline JWKS JSON (`default_url` when none is
/// given and there is one).
fn keys_from(
    url: Option<&str>,
    file: Option<&std::path::Path>,
    inline: Option<&str>,
    default_url: Option<&str>,
    what: &str,
) -> Result<JwksSource, ConfigError> {
    match (url, file, inline) {
        (Some(url), None, None) => Ok(JwksSource::Url(url.to_owned())),
        (None, Some(path), None) => Ok(JwksSource::File(path.to_owned())),
        (None, None, Some(json)) => JwksSource::inline_json(json)
            .map_err(|e| ConfigError::Invalid(format!("{what}: inline `jwks`: {e}"))),
        (None, None, None) => default_url
            .map(|url| JwksSource::Url(url.to_owned()))
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "{what} needs one of `jwks_url`, `jwks_file` and `jwks`"
                ))
            }),
        _ => Err(ConfigError::Invalid(format!(
            "{what} needs exactly one of `jwks_url`, `jwks_file` and `jwks`"
        ))),
    }
}

/// The enterprise IdP at `public_url`.
pub fn idp_app(
    cfg: &IdpConfig,
    public_url: &str,
    clock: Arc<dyn Clock>,
) -> Result<Router, ConfigError> {
    let issuer = public_url.trim_end_matches('/');
    let keys = Arc::new(KeyRing::new(signing_key(&cfg.signing_key)?));
    let paths = cfg.endpoints.paths()?;
    let metadata = idp_metadata_with_paths(issuer, &paths);
    let token_endpoint = paths.url(issuer, paths.token());
    let leeway = config::leeway(cfg.leeway_secs, "leeway_secs")?;
    let id_jag_lifetime = config::lifetime(
        cfg.id_jag_lifetime_secs,
        ema_id_jag::MAX_LIFETIME_SECS,
        "id_jag_lifetime_secs",
    )?;
    let id_token_algorithms =
        config::algorithms(cfg.id_token_algorithms.as_deref(), "id_token_algorithms")?;
    // D-26: the IdP verifies its own ID tokens; refusing its own algorithm would fail every
    // exchange, so it is a configuration error.
    let own = keys.active().algorithm();
    if !id_token_algorithms.contains(own) {
        return Err(ConfigError::Invalid(format!(
            "id_token_algorithms does not include {own}, the algorithm of signing_key; \
             the IdP could not verify its own ID tokens"
        )));
    }
    let registry =
        clients(&cfg.clients, [issuer.to_owned(), token_endpoint.clone()])?.with_leeway(leeway);
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
    // RV-1: the user's current status is checked at every exchange.
    let status = UserStatus::default();
    let policy = StatusPolicy {
        groups: policy,
        status: status.clone(),
    };
    let mut exchange = TokenExchangeGrant::builder(
        IdJagIssuer::new(Issuer::new(issuer), keys.clone()).with_lifetime(id_jag_lifetime),
        StaticKeySource::new().with_issuer(issuer, keys.jwks()),
        policy,
    )
    .client_registry(registry)
    .token_endpoint(&token_endpoint)
    .id_token_algorithms(id_token_algorithms)
    .id_token_leeway(leeway);
    for t in &cfg.targets {
        let mut target = TargetServer::new(t.issuer.as_str(), t.resources.clone());
        for alias in &t.aliases {
            target = target.with_alias(alias.as_str());
        }
        for (idp_client, here) in &t.clients {
            target = target.with_client(idp_client.as_str(), here.as_str());
        }
        if let Some(client) = &t.sign_in_client {
            if !cfg.clients.iter().any(|c| c.id == *client) {
                return Err(ConfigError::Invalid(format!(
                    "target `{}`: sign_in_client `{client}` is not one of [[clients]]",
                    t.issuer
                )));
            }
            sso = sso.with_relying_party(client.as_str(), t.issuer.as_str());
        }
        exchange = exchange.target(target);
    }
    let exchange = exchange
        .build()
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let audit = crate::audit::open(cfg.audit.as_ref(), keys.active())?;
    let router = IdpRouter::builder(exchange, keys.clone())
        .sso(sso)
        .metadata(metadata)
        .clock(clock.clone())
        .audit(audit)
        .build()
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    // RV-3: the IdP pushes account events to the configured receivers.
    let transmitter = match &cfg.ssf {
        Some(ssf) => Some(ssf_transmitter(ssf, issuer, keys.clone(), clock)?),
        None => None,
    };
    let router = match &transmitter {
        Some(t) => router.merge(t.router(&paths.url(issuer, paths.jwks()))),
        None => router,
    };
    let router = match &cfg.admin {
        Some(admin) => router.merge(crate::admin::idp_admin_router(
            status,
            &admin.secret,
            transmitter,
        )),
        None => router,
    };
    Ok(harden(router, &Limits::default()))
}

/// The IdP's SSF transmitter of `[ssf]` (RV-3).
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming the setting: no stream, an endpoint that is not an
/// `http(s)` URL, an empty `authorization`.
pub fn ssf_transmitter(
    ssf: &crate::config::IdpSsfConfig,
    issuer: &str,
    keys: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
) -> Result<crate::ssf::SsfTransmitter, ConfigError> {
    if ssf.streams.is_empty() {
        return Err(ConfigError::Invalid(
            "ssf.streams: name at least one stream, or leave out [ssf]".into(),
        ));
    }
    let mut streams = Vec::with_capacity(ssf.streams.len());
    let mut ids = std::collections::HashSet::new();
    let mut credentials = std::collections::HashSet::new();
    for (i, st) in ssf.streams.iter().enumerate() {
        let what = format!("ssf.streams[{i}]");
        let stream_id = st
            .stream_id
            .clone()
            .unwrap_or_else(|| format!("stream-{}", i + 1));
        if stream_id.is_empty() || !ids.insert(stream_id.clone()) {
            return Err(ConfigError::Invalid(format!(
                "{what}.stream_id `{stream_id}`: give each stream its own non-empty id"
            )));
        }
        if let Some(credential) = &st.receiver_authorization
            && (credential.trim().is_empty()
                || *credential == st.authorization
                || !credentials.insert(credential.clone()))
        {
            return Err(ConfigError::Invalid(format!(
                "{what}.receiver_authorization: give each stream its own non-empty value, \
                 not its push authorization"
            )));
        }
        let delivery = match st.delivery.as_deref() {
            None | Some("push") => {
                if st.poll_wait_secs.is_some() {
                    return Err(ConfigError::Invalid(format!(
                        "{what}.poll_wait_secs is for delivery = \"poll\""
                    )));
                }
                crate::ssf::StreamDelivery::Push
            }
            Some("poll") => {
                let wait = st
                    .poll_wait_secs
                    .unwrap_or(crate::ssf::DEFAULT_POLL_WAIT.as_secs());
                if wait > 60 {
                    return Err(ConfigError::Invalid(format!(
                        "{what}.poll_wait_secs must be at most 60"
                    )));
                }
                if st.receiver_authorization.is_none() || st.audience.is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "{what}: a poll stream needs receiver_authorization (the poller's \
                         credential) and audience"
                    )));
                }
                if !st.endpoint_url.is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "{what}.endpoint_url: a poll stream has none (the receiver polls {})",
                        crate::ssf::SSF_POLL_PATH
                    )));
                }
                crate::ssf::StreamDelivery::Poll(std::time::Duration::from_secs(wait))
            }
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "{what}.delivery `{other}`: use push or poll"
                )));
            }
        };
        if delivery == crate::ssf::StreamDelivery::Push {
            let url = url::Url::parse(&st.endpoint_url).map_err(|e| {
                ConfigError::Invalid(format!("{what}.endpoint_url `{}`: {e}", st.endpoint_url))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::Invalid(format!(
                    "{what}.endpoint_url `{}`: use an http or https URL",
                    st.endpoint_url
                )));
            }
        }
        if delivery == crate::ssf::StreamDelivery::Push && st.authorization.trim().is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{what}.authorization is empty; give the value the receiver expects"
            )));
        }
        if st.audience.as_deref() == Some("") {
            return Err(ConfigError::Invalid(format!("{what}.audience is empty")));
        }
        let endpoint = match delivery {
            crate::ssf::StreamDelivery::Push => st.endpoint_url.clone(),
            crate::ssf::StreamDelivery::Poll(_) => {
                format!(
                    "{}{}",
                    issuer.trim_end_matches('/'),
                    crate::ssf::SSF_POLL_PATH
                )
            }
        };
        streams.push(crate::ssf::PushStream {
            endpoint,
            delivery,
            authorization: st.authorization.clone(),
            audience: st
                .audience
                .clone()
                .unwrap_or_else(|| st.endpoint_url.clone()),
            stream_id,
            receiver_authorization: st.receiver_authorization.clone(),
            min_verification_interval: st
                .min_verification_interval_secs
                .unwrap_or(crate::ssf::DEFAULT_MIN_VERIFICATION_INTERVAL),
        });
    }
    crate::ssf::SsfTransmitter::new(issuer, keys, streams, clock)
}

/// The users the reference IdP has disabled (RV-1): shared by the token exchange's policy and
/// the admin route. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct UserStatus(Arc<std::sync::RwLock<std::collections::HashSet<String>>>);

impl UserStatus {
    /// Disables the user `subject`: their next token exchange gets `invalid_grant`.
    pub fn disable(&self, subject: &str) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(subject.to_owned());
    }

    /// Enables the user `subject` again.
    pub fn enable(&self, subject: &str) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(subject);
    }

    /// Whether `subject` is disabled.
    pub fn is_disabled(&self, subject: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(subject)
    }
}

/// The IdP's admin policy: the group rules, after the user's current status (RV-1).
#[derive(Debug)]
struct StatusPolicy {
    groups: GroupPolicy,
    status: UserStatus,
}

impl AdminPolicy for StatusPolicy {
    fn decide(
        &self,
        request: &PolicyRequest<'_>,
    ) -> impl std::future::Future<Output = PolicyDecision> + Send {
        let decision = if self.status.is_disabled(request.subject) {
            PolicyDecision::InactiveSubject {
                reason: "the user is disabled",
            }
        } else {
            self.groups.decide_now(request)
        };
        std::future::ready(decision)
    }
}

/// The authorization server's jwt-bearer grant, as [`authorization_server_parts`] builds it.
pub type AuthorizationServerGrant = JwtBearerGrant;

/// The MCP authorization server at `public_url`.
pub fn authorization_server_app(
    cfg: &AuthorizationServerConfig,
    public_url: &str,
    clock: Arc<dyn Clock>,
) -> Result<Router, ConfigError> {
    authorization_server_app_and_ledger(cfg, public_url, clock).map(|(router, _)| router)
}

/// [`authorization_server_app`] and its revocation ledger, for an MCP server in the same
/// process ([`mcp_app_with_ledger`]). With SSF stream verification configured (RV-26) and a
/// Tokio runtime current, the [`VerificationDriver`](crate::stream_health::VerificationDriver)
/// runs in the background until the router is dropped.
pub fn authorization_server_app_and_ledger(
    cfg: &AuthorizationServerConfig,
    public_url: &str,
    clock: Arc<dyn Clock>,
) -> Result<(Router, DynRevocationLedger), ConfigError> {
    let app = authorization_server_app_unstarted(cfg, public_url, clock)?;
    let mut router = app.router;
    let runtime = tokio::runtime::Handle::try_current().is_ok();
    if let Some(driver) = app.verification {
        if runtime {
            let task = driver.spawn();
            router = router.layer(axum::Extension(Arc::new(AbortOnDrop(task))));
        } else {
            tracing::warn!(target: "ema_server::ssf_health", "no Tokio runtime: SSF streams are not verified, access tokens live 300 s");
        }
    }
    if !app.pollers.is_empty() {
        if !runtime {
            return Err(ConfigError::Invalid(
                "ssf.transmitters: poll_url needs a Tokio runtime".into(),
            ));
        }
        let tasks: Vec<AbortOnDrop> = app
            .pollers
            .into_iter()
            .map(|p| AbortOnDrop(p.spawn()))
            .collect();
        router = router.layer(axum::Extension(Arc::new(tasks)));
    }
    Ok((router, app.ledger))
}

/// The reference authorization server's pieces, nothing started.
#[derive(Debug)]
#[non_exhaustive]
pub struct AuthorizationServerApp {
    /// The router.
    pub router: Router,
    /// The revocation ledger.
    pub ledger: DynRevocationLedger,
    /// The SSF stream verification driver (RV-26), when a transmitter has `stream_id` and
    /// `receiver_authorization`: run it with
    /// [`spawn`](crate::stream_health::VerificationDriver::spawn) or step it with
    /// [`run_once`](crate::stream_health::VerificationDriver::run_once).
    pub verification: Option<crate::stream_health::VerificationDriver>,
    /// The RFC 8936 poll drivers (RV-27), one per transmitter with `poll_url`: run each with
    /// [`spawn`](crate::ssf_poll::PollDriver::spawn) or step it with
    /// [`run_once`](crate::ssf_poll::PollDriver::run_once).
    pub pollers: Vec<crate::ssf_poll::PollDriver>,
}

/// [`authorization_server_app_and_ledger`] without starting the verification driver.
///
/// # Errors
///
/// [`ConfigError::Invalid`] for a bad configuration.
pub fn authorization_server_app_unstarted(
    cfg: &AuthorizationServerConfig,
    public_url: &str,
    clock: Arc<dyn Clock>,
) -> Result<AuthorizationServerApp, ConfigError> {
    let (grant, mut metadata) = authorization_server_parts(cfg, public_url, clock.clone())?;
    let revoker = grant
        .revoker()
        .cloned()
        .ok_or_else(|| ConfigError::Invalid("the authorization server has no ledger".into()))?;
    let ledger = revoker.ledger().clone();
    let ssf = ssf_receiver(cfg, public_url, revoker, clock.clone())?;
    if let Some((_, _, gtr)) = &ssf {
        // RV-21: the GTR endpoint, advertised in the metadata.
        metadata.extra.insert(
            "global_token_revocation_endpoint".into(),
            format!("{}{gtr}", public_url.trim_end_matches('/')).into(),
        );
    }
    // Checkpoints are signed with the access-token key (the `typ` tells them apart).
    let audit = crate::audit::open(cfg.audit.as_ref(), grant.tokens().keys().active())?;
    let code = match &cfg.code_flow {
        Some(code) => Some(code_flow(cfg, code, &grant)?),
        None => None,
    };
    let pollers = match &ssf {
        Some((receiver, _, _)) => poll_drivers(cfg, receiver, &clock, &audit)?,
        None => Vec::new(),
    };
    let verification = match &ssf {
        Some((receiver, _, _)) => {
            let endpoints = verification_endpoints(cfg)?;
            if endpoints.is_empty() {
                None
            } else {
                Some(crate::stream_health::VerificationDriver::new(
                    receiver.health().clone(),
                    endpoints,
                    clock.clone(),
                    audit.clone(),
                )?)
            }
        }
        None => None,
    };
    let mut router = AuthorizationServerRouter::builder(grant, &metadata)
        .clock(clock)
        .audit(audit);
    if let Some(secret) = &cfg.revocation.admin_secret {
        router = router.admin_secret(secret);
    }
    if let Some((receiver, path, gtr)) = ssf {
        router = router.ssf(receiver, &path).global_token_revocation(&gtr);
    }
    if let Some(code) = code {
        router = router.code_flow(code);
    }
    Ok(AuthorizationServerApp {
        router: harden(router.build(), &Limits::default()),
        ledger,
        verification,
        pollers,
    })
}

/// The RFC 8936 poll drivers of `[ssf]` (RV-27): one per transmitter with `poll_url`, polling
/// with its `receiver_authorization`.
fn poll_drivers(
    cfg: &AuthorizationServerConfig,
    receiver: &SsfReceiver,
    clock: &Arc<dyn Clock>,
    audit: &ema_server::audit::AuditLog,
) -> Result<Vec<crate::ssf_poll::PollDriver>, ConfigError> {
    let Some(ssf) = &cfg.ssf else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, t) in ssf.transmitters.iter().enumerate() {
        let Some(url) = &t.poll_url else {
            continue;
        };
        let what = format!("ssf.transmitters[{i}]");
        let parsed = url::Url::parse(url)
            .map_err(|e| ConfigError::Invalid(format!("{what}.poll_url `{url}`: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ConfigError::Invalid(format!(
                "{what}.poll_url `{url}`: use an http or https URL"
            )));
        }
        let Some(authorization) = t
            .receiver_authorization
            .as_deref()
            .filter(|a| !a.trim().is_empty())
        else {
            return Err(ConfigError::Invalid(format!(
                "{what}.poll_url needs receiver_authorization, the credential the AS polls with"
            )));
        };
        let poller = ema_grant::ssf_poll::SsfPoller::new(receiver.clone(), t.issuer.as_str());
        out.push(crate::ssf_poll::PollDriver::new(
            poller,
            url,
            authorization,
            clock.clone(),
            audit.clone(),
        )?);
    }
    Ok(out)
}

/// The transmitters of `[ssf]` the AS asks for stream verification (RV-26): those with both
/// `stream_id` and `receiver_authorization`.
///
/// # Errors
///
/// [`ConfigError::Invalid`] for one of the two without the other, an empty one, or a bad
/// `configuration_url`.
pub fn verification_endpoints(
    cfg: &AuthorizationServerConfig,
) -> Result<Vec<crate::stream_health::TransmitterEndpoint>, ConfigError> {
    let Some(ssf) = &cfg.ssf else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, t) in ssf.transmitters.iter().enumerate() {
        let what = format!("ssf.transmitters[{i}]");
        match (&t.stream_id, &t.receiver_authorization) {
            (None, None) => {
                if t.verify_every_secs.is_some() || t.configuration_url.is_some() {
                    return Err(ConfigError::Invalid(format!(
                        "{what}: verify_every_secs and configuration_url need stream_id and \
                         receiver_authorization"
                    )));
                }
            }
            (Some(id), Some(auth)) if !id.is_empty() && !auth.trim().is_empty() => {
                let configuration_url = match &t.configuration_url {
                    Some(url) => {
                        let parsed = url::Url::parse(url).map_err(|e| {
                            ConfigError::Invalid(format!("{what}.configuration_url `{url}`: {e}"))
                        })?;
                        if !matches!(parsed.scheme(), "http" | "https") {
                            return Err(ConfigError::Invalid(format!(
                                "{what}.configuration_url `{url}`: use an http or https URL"
                            )));
                        }
                        url.clone()
                    }
                    None => crate::stream_health::discovery_url(&t.issuer)?,
                };
                out.push(crate::stream_health::TransmitterEndpoint {
                    issuer: t.issuer.clone(),
                    configuration_url,
                    stream_id: id.clone(),
                    authorization: auth.clone(),
                });
            }
            // Polled without stream verification (RV-27).
            (None, Some(auth)) if t.poll_url.is_some() && !auth.trim().is_empty() => {}
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "{what}: stream_id and receiver_authorization go together, neither empty \
                     (RV-26 stream verification)"
                )));
            }
        }
    }
    Ok(out)
}

/// Seconds between two verifications of a transmitter's stream by default (RV-26).
pub const DEFAULT_VERIFY_EVERY: u64 = 300;

/// The SETs' algorithms a transmitter may be allowed (RV-5): never more than these.
const SSF_ALGORITHMS: [ema_jose::Algorithm; 4] = [
    ema_jose::Algorithm::RS256,
    ema_jose::Algorithm::PS256,
    ema_jose::Algorithm::ES256,
    ema_jose::Algorithm::EdDSA,
];

/// The SSF push receiver of `[ssf]` (RV-4), its path and the GTR path (RV-21), over the grant's `revoker` (so the
/// IdP→local subject mapping the grant records reaches the local watermarks, RV-12) and the
/// server's replay store (on Redis, redeliveries to any instance are duplicates, RV-8).
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming the setting: a bad path, no transmitter, an empty or
/// shared `authorization`, an algorithm outside RV-5's list, keys that cannot be set up.
pub fn ssf_receiver(
    cfg: &AuthorizationServerConfig,
    public_url: &str,
    revoker: Revoker,
    clock: Arc<dyn Clock>,
) -> Result<Option<(SsfReceiver, String, String)>, ConfigError> {
    let Some(ssf) = &cfg.ssf else {
        return Ok(None);
    };
    let issuer = public_url.trim_end_matches('/');
    let path = ssf
        .push_path
        .clone()
        .unwrap_or_else(|| ema_grant::ssf::DEFAULT_PUSH_PATH.to_owned());
    let gtr = ssf
        .gtr_path
        .clone()
        .unwrap_or_else(|| ema_grant::ssf::DEFAULT_GTR_PATH.to_owned());
    let paths = cfg.endpoints.paths()?;
    let mut taken = vec![
        paths.token().to_owned(),
        paths.jwks().to_owned(),
        REVOCATION_PATH.to_owned(),
        "/admin/revoke".to_owned(),
    ];
    for (setting, path) in [("ssf.push_path", &path), ("ssf.gtr_path", &gtr)] {
        let plain = path.starts_with('/')
            && !path.starts_with("//")
            && !path.contains(['?', '#', ' ', '{', '}', '*'])
            && path.len() > 1;
        if !plain {
            return Err(ConfigError::Invalid(format!(
                "{setting} `{path}`: use a plain absolute path such as /ssf/events"
            )));
        }
        if taken.contains(path) || path.starts_with("/.well-known/") {
            return Err(ConfigError::Invalid(format!(
                "{setting} `{path}` is already another endpoint's path"
            )));
        }
        taken.push(path.clone());
    }
    if ssf.transmitters.is_empty() {
        return Err(ConfigError::Invalid(
            "ssf.transmitters: name at least one transmitter, or leave out [ssf]".into(),
        ));
    }
    let mut receiver = SsfReceiver::with_dyn_replay(
        revoker,
        replay_store_on(
            RedisTarget::from_config(cfg.redis_url.as_deref(), cfg.redis_cluster.as_deref())?,
            cfg.redis_prefix.as_deref(),
        )?,
    );
    let mut seen = std::collections::HashSet::new();
    for (i, t) in ssf.transmitters.iter().enumerate() {
        let what = format!("ssf.transmitters[{i}]");
        if t.issuer.is_empty() {
            return Err(ConfigError::Invalid(format!("{what}.issuer is empty")));
        }
        // A transmitter that is only polled (RV-27) pushes nothing: an unguessable value.
        let poll_only = t.poll_url.is_some() && t.authorization.is_empty();
        let authorization = if poll_only {
            format!(
                "Bearer {}",
                ema_jose::random_id()
                    .map_err(|e| ConfigError::Invalid(format!("{what}: randomness: {e}")))?
            )
        } else {
            t.authorization.clone()
        };
        if authorization.trim().is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{what}.authorization is empty; give the Authorization value the transmitter presents"
            )));
        }
        if !poll_only && !seen.insert(t.authorization.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "{what}.authorization is another transmitter's; give each its own"
            )));
        }
        let algorithms =
            config::algorithms(t.algorithms.as_deref(), &format!("{what}.algorithms"))?;
        if let Some(alg) = algorithms.iter().find(|a| !SSF_ALGORITHMS.contains(a)) {
            return Err(ConfigError::Invalid(format!(
                "{what}.algorithms: {alg} is not allowed for SETs; use RS256, PS256, ES256 or EdDSA (RV-5)"
            )));
        }
        let source = keys_from(
            t.jwks_url.as_deref(),
            t.jwks_file.as_deref(),
            t.jwks.as_deref(),
            None,
            &what,
        )?;
        let keys = IssuerKeys::new(fetcher(cfg.insecure_allow_loopback_http)?, clock.clone())
            .with_issuer(t.issuer.as_str(), source)
            .map_err(issuer_keys_error)?;
        let audience = t
            .audience
            .clone()
            .unwrap_or_else(|| format!("{issuer}{path}"));
        let mut trust =
            TransmitterTrust::with_key_source(t.issuer.as_str(), keys, &authorization, audience)
                .with_algorithms(algorithms);
        if t.gtr_jwt {
            // RV-21: signed-JWT authentication at GTR, addressed to the endpoint's public URL.
            trust = trust.with_gtr_jwt(format!("{issuer}{gtr}"));
        }
        if let Some(issuers) = &t.subject_issuers {
            if issuers.is_empty() || issuers.iter().any(String::is_empty) {
                return Err(ConfigError::Invalid(format!(
                    "{what}.subject_issuers: name at least one issuer, none empty"
                )));
            }
            trust = trust.with_subject_issuers(issuers.iter().cloned());
        }
        if let Some(tenant) = &t.tenant {
            if tenant.is_empty() {
                return Err(ConfigError::Invalid(format!("{what}.tenant is empty")));
            }
            trust = trust.with_tenant(tenant.as_str());
        }
        if let Some(emails) = &t.emails {
            if let Some((email, _)) = emails
                .iter()
                .find(|(email, sub)| !email.contains('@') || sub.is_empty())
            {
                return Err(ConfigError::Invalid(format!(
                    "{what}.emails: `{email}` needs an address and a non-empty subject"
                )));
            }
            trust = trust.with_matching(SubjectMatching::IssSubOrEmail(emails.clone()));
        }
        if t.stream_id.is_some() && t.receiver_authorization.is_some() {
            let every = t.verify_every_secs.unwrap_or(DEFAULT_VERIFY_EVERY);
            if !(1..=ema_grant::revoke::CHANNEL_FRESHNESS).contains(&every) {
                return Err(ConfigError::Invalid(format!(
                    "{what}.verify_every_secs must be 1 to {} (RV-24's freshness bound)",
                    ema_grant::revoke::CHANNEL_FRESHNESS
                )));
            }
            trust = trust.with_verification(VerificationPolicy::every(every));
        }
        receiver = receiver.transmitter(trust);
    }
    Ok(Some((receiver, path, gtr)))
}

/// The `[code_flow]` of an authorization server whose jwt-bearer grant is `grant`: the same
/// issuer, clients, resources and ledger; users sign in at the IdP `code.idp`.
fn code_flow(
    cfg: &AuthorizationServerConfig,
    code: &config::AsCodeFlowConfig,
    grant: &AuthorizationServerGrant,
) -> Result<CodeFlowConfig, ConfigError> {
    let idp = code.idp.trim_end_matches('/');
    if grant.validator().trust().get(&code.idp).is_none() {
        return Err(ConfigError::Invalid(format!(
            "[code_flow]: idp `{}` is not one of [[trusted_issuers]] (its keys verify the ID tokens)",
            code.idp
        )));
    }
    if !(1..=600).contains(&code.code_lifetime_secs) {
        return Err(ConfigError::Invalid(
            "[code_flow]: code_lifetime_secs must be 1 to 600".into(),
        ));
    }
    let issuer = grant.tokens().issuer().as_str().trim_end_matches('/');
    // D-24: `none` only where enabled: a client registered with `none`, said explicitly, or
    // metadata documents (public by definition) enable public clients at the code flow; the
    // jwt-bearer grant still takes none.
    let public = code.client_id_metadata_documents
        || cfg
            .clients
            .iter()
            .any(|c| c.token_endpoint_auth_method == Some(AuthMethod::None));
    let flow = ema_grant::CodeFlow::for_grant(grant)
        .with_code_lifetime(code.code_lifetime_secs)
        .with_public_clients(public);
    let sign_in = ema_grant::IdpSignIn::new(
        code.idp.as_str(),
        code.idp_authorization_endpoint
            .clone()
            .unwrap_or_else(|| format!("{idp}/authorize")),
        code.client_id.as_str(),
        format!("{issuer}{}", code.callback),
    )
    .with_leeway(config::leeway(cfg.leeway_secs, "leeway_secs")?);
    let token_endpoint = code
        .idp_token_endpoint
        .clone()
        .unwrap_or_else(|| format!("{idp}/token"));
    let config = CodeFlowConfig::new(
        flow,
        sign_in,
        &token_endpoint,
        &code.client_secret,
        fetcher(cfg.insecure_allow_loopback_http)?,
    )
    .map_err(|e| ConfigError::Invalid(format!("[code_flow]: idp_token_endpoint: {e}")))?;
    Ok(if code.client_id_metadata_documents {
        config.with_client_metadata_documents(fetcher(cfg.insecure_allow_loopback_http)?)
    } else {
        config
    })
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
    let paths = cfg.endpoints.paths()?;
    let token_endpoint = paths.url(issuer, paths.token());
    let leeway = config::leeway(cfg.leeway_secs, "leeway_secs")?;
    let lifetime = config::lifetime(
        cfg.token_lifetime_secs,
        ema_grant::revoke::MAX_LIFETIME_WITH_CHANNEL,
        "token_lifetime_secs",
    )?;
    let keys = Arc::new(KeyRing::new(signing_key(&cfg.signing_key)?));
    let mut trust = TrustRegistry::new();
    let mut issuer_keys = IssuerKeys::new(fetcher(cfg.insecure_allow_loopback_http)?, clock);
    // The header check admits the union; each issuer is then held to its own list (D-26).
    let mut all_algorithms = AlgorithmSet::EMPTY;
    for t in &cfg.trusted_issuers {
        let what = format!("trusted issuer `{}`", t.issuer);
        let algorithms =
            config::algorithms(t.algorithms.as_deref(), &format!("{what}: algorithms"))?;
        all_algorithms = algorithms.iter().fold(all_algorithms, AlgorithmSet::with);
        let mut trusted = TrustedIssuer::new(t.issuer.as_str()).with_algorithms(algorithms);
        if let Some(tenant) = &t.tenant {
            trusted = trusted.with_tenant(tenant.as_str());
        }
        trust = trust.with(trusted);
        let from = keys_from(
            t.jwks_url.as_deref(),
            t.jwks_file.as_deref(),
            t.jwks.as_deref(),
            None,
            &what,
        )?;
        issuer_keys = issuer_keys
            .with_issuer(t.issuer.as_str(), from)
            .map_err(issuer_keys_error)?;
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
    // RV-11, RV-14: the in-memory ledger of one instance, or the ledger on Redis shared by
    // every instance with the same `redis_url` and `redis_prefix`; on Redis, each ID-JAG's
    // ledger check and replay commit are one script call (one round trip).
    let (ledger, replay, redeemer) = as_shared_state(
        RedisTarget::from_config(cfg.redis_url.as_deref(), cfg.redis_cluster.as_deref())?,
        cfg.redis_prefix.as_deref(),
    )?;
    let mut grant = JwtBearerGrant::builder(
        AccessTokenIssuer::new(Issuer::new(issuer), keys).with_lifetime(lifetime),
        issuer_keys,
        directory,
    )
    .trust_registry(trust)
    .resource_registry(resources)
    .algorithms(all_algorithms)
    .leeway(leeway)
    .client_registry(
        clients(&cfg.clients, [issuer.to_owned(), token_endpoint.clone()])?.with_leeway(leeway),
    )
    .token_endpoint(&token_endpoint)
    .revoker(Revoker::from_dyn(ledger, issuer))
    .replay_store(replay);
    if let Some(redeemer) = redeemer {
        grant = grant.redeemer(redeemer);
    }
    let grant = grant
        .build()
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let mut metadata =
        AuthorizationServerMetadata::new(issuer, token_endpoint).with_id_jag_profile();
    metadata.jwks_uri = Some(paths.url(issuer, paths.jwks()));
    metadata.token_endpoint_auth_methods_supported = Some(auth_methods_supported(grant.clients()));
    // RV-20: RFC 7009 for the AS's own access tokens, same client authentication.
    metadata.extra.insert(
        "revocation_endpoint".into(),
        format!("{issuer}{REVOCATION_PATH}").into(),
    );
    metadata.extra.insert(
        "revocation_endpoint_auth_methods_supported".into(),
        auth_methods_supported(grant.clients()).into(),
    );
    // RS-8, RV-22: RFC 7662 for resource servers that cannot validate the JWTs; confidential
    // clients only.
    metadata.extra.insert(
        "introspection_endpoint".into(),
        format!("{issuer}{INTROSPECTION_PATH}").into(),
    );
    metadata.extra.insert(
        "introspection_endpoint_auth_methods_supported".into(),
        auth_methods_supported(grant.clients())
            .into_iter()
            .filter(|m| m != "none")
            .collect::<Vec<_>>()
            .into(),
    );
    if let Some(code) = &cfg.code_flow {
        if !code.authorize.starts_with('/') || !code.callback.starts_with('/') {
            return Err(ConfigError::Invalid(
                "[code_flow]: authorize and callback are paths starting with /".into(),
            ));
        }
        metadata.authorization_endpoint = Some(format!("{issuer}{}", code.authorize));
        advertise_code_flow(&mut metadata);
        if code.client_id_metadata_documents {
            metadata.client_id_metadata_document_supported = Some(true);
        }
        // The code flow's public clients (registered with `none`, or metadata documents)
        // redeem their codes without a secret (D-24: advertise what is accepted).
        let public = code.client_id_metadata_documents
            || cfg
                .clients
                .iter()
                .any(|c| c.token_endpoint_auth_method == Some(AuthMethod::None));
        if let Some(methods) = metadata.token_endpoint_auth_methods_supported.as_mut()
            && public
            && !methods.iter().any(|m| m == "none")
        {
            methods.push("none".to_owned());
        }
    }
    metadata.scopes_supported = Some(
        cfg.resources
            .iter()
            .flat_map(|r| r.scopes.iter().cloned())
            .collect(),
    );
    Ok((grant, metadata))
}

/// Where the authorization server's RFC 7662 introspection endpoint is mounted.
pub const INTROSPECTION_PATH: &str = "/introspect";

/// Where the authorization server's RFC 7009 revocation endpoint is mounted.
pub const REVOCATION_PATH: &str = "/revoke";

/// How often [`mcp_app_with_ledger`] brings its revocation mirror up to date.
pub const MIRROR_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a server's shared state lives: one Redis server (`redis_url`) or a Redis Cluster
/// (`redis_cluster`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisTarget<'a> {
    /// One Redis server's URL.
    Url(&'a str),
    /// Some nodes of a Redis Cluster.
    Cluster(&'a [String]),
}

impl<'a> RedisTarget<'a> {
    /// The target of a configuration's `redis_url` and `redis_cluster`: `None` without either.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when both are set, or `redis_cluster` is empty.
    pub fn from_config(
        redis_url: Option<&'a str>,
        redis_cluster: Option<&'a [String]>,
    ) -> Result<Option<Self>, ConfigError> {
        match (redis_url, redis_cluster) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid(
                "set redis_url or redis_cluster, not both".into(),
            )),
            (None, Some([])) => Err(ConfigError::Invalid(
                "redis_cluster: name at least one node".into(),
            )),
            (Some(url), None) => Ok(Some(Self::Url(url))),
            (None, Some(nodes)) => Ok(Some(Self::Cluster(nodes))),
            (None, None) => Ok(None),
        }
    }

    /// A replay store on this target (lazily connected), under `prefix` when given.
    fn store(self, prefix: Option<&str>) -> Result<RedisReplayStore, ConfigError> {
        let mut store = match self {
            Self::Url(url) => RedisReplayStore::open(url),
            Self::Cluster(nodes) => RedisReplayStore::open_cluster(nodes),
        }
        .map_err(invalid_redis)?;
        if let Some(prefix) = prefix {
            store = store.with_prefix(prefix).map_err(invalid_redis)?;
        }
        Ok(store)
    }

    /// A revocation ledger on this target (lazily connected), under `prefix` when given.
    fn ledger(self, prefix: Option<&str>) -> Result<RedisLedger, ConfigError> {
        let mut ledger = match self {
            Self::Url(url) => RedisLedger::open(url),
            Self::Cluster(nodes) => RedisLedger::open_cluster(nodes),
        }
        .map_err(invalid_redis)?;
        if let Some(prefix) = prefix {
            ledger = ledger.with_prefix(prefix).map_err(invalid_redis)?;
        }
        Ok(ledger)
    }
}

fn invalid_redis(e: ema_grant::RedisSetupError) -> ConfigError {
    ConfigError::Invalid(format!("redis: {e}"))
}

/// The replay store of a server: on Redis when `redis_url` is set (shared by every instance
/// with the same URL and prefix; connects lazily and fails closed with 503 while Redis is
/// unreachable), else in memory. [`replay_store_on`] takes a Redis Cluster too.
///
/// # Errors
///
/// [`ConfigError::Invalid`] for a URL or prefix the Redis client refuses.
pub fn replay_store(
    redis_url: Option<&str>,
    redis_prefix: Option<&str>,
) -> Result<DynReplayStore, ConfigError> {
    replay_store_on(redis_url.map(RedisTarget::Url), redis_prefix)
}

/// [`replay_store`] on a [`RedisTarget`]: one Redis server or a Redis Cluster.
///
/// # Errors
///
/// [`ConfigError::Invalid`] for a URL or prefix the Redis client refuses, or a prefix without
/// a target.
pub fn replay_store_on(
    target: Option<RedisTarget<'_>>,
    redis_prefix: Option<&str>,
) -> Result<DynReplayStore, ConfigError> {
    let Some(target) = target else {
        if redis_prefix.is_some() {
            return Err(ConfigError::Invalid(
                "redis_prefix is set without redis_url or redis_cluster".into(),
            ));
        }
        return Ok(DynReplayStore::default());
    };
    Ok(DynReplayStore::new(target.store(redis_prefix)?))
}

/// What [`as_shared_state`] gives the authorization server's jwt-bearer grant.
type AsSharedState = (
    DynRevocationLedger,
    DynReplayStore,
    Option<Arc<dyn IdJagRedeemer>>,
);

/// The authorization server's revocation ledger, replay store and, on Redis, the redeemer
/// that does an ID-JAG's ledger check and replay commit in one round trip. With a Redis
/// target: the [`RedisLedger`] and a [`RedisReplayStore`] on its connection, under the same
/// prefix (shared by every instance with the same target and prefix; on a cluster, the
/// prefix's hash tag keeps the redeemer's keys in one slot). Without: an in-memory ledger and
/// store, and no redeemer (the grant's two in-process steps).
fn as_shared_state(
    target: Option<RedisTarget<'_>>,
    redis_prefix: Option<&str>,
) -> Result<AsSharedState, ConfigError> {
    let Some(target) = target else {
        let replay = replay_store_on(None, redis_prefix)?;
        return Ok((DynRevocationLedger::new(MemoryLedger::new()), replay, None));
    };
    let ledger = target.ledger(redis_prefix)?;
    let mut store = RedisReplayStore::new(ledger.connection().clone());
    if let Some(prefix) = redis_prefix {
        store = store.with_prefix(prefix).map_err(invalid_redis)?;
    }
    let redeemer: Arc<dyn IdJagRedeemer> =
        Arc::new(RedisRedeemer::new(ledger.clone(), store.clone()));
    Ok((
        DynRevocationLedger::new(ledger),
        DynReplayStore::new(store),
        Some(redeemer),
    ))
}

/// The revocation ledger on Redis when `redis_url` is set (RV-14: watermarks, disabled flags
/// and token denials shared by every instance, changes on a stream that MCP servers tail),
/// else `None`. [`ledger_on`] takes a Redis Cluster too.
///
/// # Errors
///
/// [`ConfigError::Invalid`] for a URL or prefix the Redis client refuses.
pub fn ledger(
    redis_url: Option<&str>,
    redis_prefix: Option<&str>,
) -> Result<Option<DynRevocationLedger>, ConfigError> {
    ledger_on(redis_url.map(RedisTarget::Url), redis_prefix)
}

/// [`ledger`] on a [`RedisTarget`]: one Redis server or a Redis Cluster.
///
/// # Errors
///
/// [`ConfigError::Invalid`] for a URL or prefix the Redis client refuses.
pub fn ledger_on(
    target: Option<RedisTarget<'_>>,
    redis_prefix: Option<&str>,
) -> Result<Option<DynRevocationLedger>, ConfigError> {
    let Some(target) = target else {
        return Ok(None);
    };
    Ok(Some(DynRevocationLedger::new(target.ledger(redis_prefix)?)))
}

/// The MCP server (task list tools over Streamable HTTP) at `public_url`. With `redis_url` (or
/// `redis_cluster`) set, every instance with the same Redis and prefix shares the authorization
/// server's state on Redis: DPoP proof `jti`s go to the [`RedisReplayStore`] (DP-33, D-30: a proof is accepted
/// once across instances; Redis unreachable is a 503), and every request is checked against a
/// mirror of the ledger kept by [`tail_mirror`] (the change stream as it happens, a full
/// snapshot every [`DEFAULT_RESYNC`]; RV-15, RV-16). The tailing task runs on the current
/// Tokio runtime and stops when the router is dropped. Without `redis_url`, one instance's
/// in-memory DPoP store and no revocation mirror.
///
/// # Errors
///
/// [`ConfigError::Invalid`] for a bad configuration, or a Redis URL without a Tokio runtime.
pub fn mcp_app(
    cfg: &McpServerConfig,
    public_url: &str,
    clock: Arc<dyn Clock>,
) -> Result<Router, ConfigError> {
    let target = RedisTarget::from_config(cfg.redis_url.as_deref(), cfg.redis_cluster.as_deref())?;
    let prefix = cfg.redis_prefix.as_deref();
    // Checks the prefix alone too (a config error without a URL).
    let dpop_replay = replay_store_on(target, prefix)?;
    let Some(target) = target else {
        return mcp_app_inner(cfg, public_url, clock, None, None);
    };
    let ledger = target.ledger(prefix)?;
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| ConfigError::Invalid("the revocation mirror needs a Tokio runtime".into()))?;
    let mirror = Arc::new(LedgerMirror::new());
    let tail_clock = clock.clone();
    let task = handle.spawn(tail_mirror(
        ledger,
        mirror.clone(),
        DEFAULT_RESYNC,
        move || tail_clock.now(),
    ));
    let app = mcp_app_inner(cfg, public_url, clock, Some(mirror), Some(dpop_replay))?;
    // The router owns the tailing task: dropping its last clone aborts it.
    Ok(app.layer(axum::Extension(Arc::new(AbortOnDrop(task)))))
}

/// Aborts a background task when the last owner is dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// [`mcp_app`] checking every request against `ledger` (RV-15..RV-17): a mirror of it, synced
/// every [`MIRROR_SYNC_INTERVAL`] by a task on the current Tokio runtime (the task stops when
/// the router is dropped), answering 503 once it is 60 s behind (RV-16). For an MCP server
/// sharing the authorization server's ledger (the same process, or a shared backend).
pub fn mcp_app_with_ledger(
    cfg: &McpServerConfig,
    public_url: &str,
    clock: Arc<dyn Clock>,
    ledger: DynRevocationLedger,
) -> Result<Router, ConfigError> {
    let mirror = Arc::new(LedgerMirror::new());
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| ConfigError::Invalid("the revocation mirror needs a Tokio runtime".into()))?;
    let weak = Arc::downgrade(&mirror);
    let sync_clock = clock.clone();
    handle.spawn(async move {
        let mut tick = tokio::time::interval(MIRROR_SYNC_INTERVAL);
        loop {
            tick.tick().await;
            let Some(mirror) = weak.upgrade() else { break };
            if let Err(e) = mirror.sync(&ledger, sync_clock.now()).await {
                tracing::warn!(target: "ema_examples::revocation", error = %e, "revocation mirror sync failed");
            }
        }
    });
    mcp_app_inner(cfg, public_url, clock, Some(mirror), None)
}

fn mcp_app_inner(
    cfg: &McpServerConfig,
    public_url: &str,
    clock: Arc<dyn Clock>,
    mirror: Option<Arc<LedgerMirror>>,
    dpop_replay: Option<DynReplayStore>,
) -> Result<Router, ConfigError> {
    let base = public_url.trim_end_matches('/');
    let resource = format!("{base}{}", cfg.path);
    url::Url::parse(&resource).map_err(|e| ConfigError::Invalid(format!("resource URL: {e}")))?;
    let algorithms = config::algorithms(cfg.algorithms.as_deref(), "algorithms")?;
    let leeway = config::leeway(cfg.leeway_secs, "leeway_secs")?;
    let default_jwks_url = format!("{}/jwks", cfg.authorization_server.trim_end_matches('/'));
    let from = keys_from(
        cfg.jwks_url.as_deref(),
        cfg.jwks_file.as_deref(),
        cfg.jwks.as_deref(),
        Some(&default_jwks_url),
        "the authorization server",
    )?;
    let keys = IssuerKeys::new(fetcher(cfg.insecure_allow_loopback_http)?, clock.clone())
        .with_issuer(cfg.authorization_server.as_str(), from)
        .map_err(issuer_keys_error)?;
    // RS-6, D-20: by default `initialize` and `ping` need no scope, so that any valid token
    // starts a session; `tools/list` and other requests need tasks.read; changing tools also
    // need tasks.write, so an agent holding a read-only token is told to step up (CL-10).
    // Tool scopes are checked against the server's own tools (a typo is a startup error).
    let s = &cfg.scopes;
    let mut auth = BearerAuth::builder(resource.as_str(), cfg.authorization_server.as_str())
        .keys(keys)
        .clock(clock.clone())
        .algorithms(algorithms)
        .leeway(leeway)
        .require_scopes(scope_list(&s.every_request, "scopes.every_request")?.iter())
        .default_method_scopes(scope_list(&s.default, "scopes.default")?.iter())
        .tools(tasks::tool_names());
    for (method, list) in &s.methods {
        let set = scope_list(list, &format!("scopes.methods.\"{method}\""))?;
        auth = auth.method_scopes(method.as_str(), set.iter());
    }
    for (tool, list) in &s.tools {
        let set = scope_list(list, &format!("scopes.tools.{tool}"))?;
        auth = auth.tool_scopes(tool.as_str(), set.iter());
    }
    // RV-18: with the mirror, a revoked subject's live requests, streams and MCP sessions end.
    let sessions = Arc::new(LocalSessionManager::default());
    if let Some(mirror) = &mirror {
        auth = auth
            .revocation_mirror(mirror.clone())
            .session_closer(ema_server::rmcp::close_sessions(sessions.clone()));
    }
    if let Some(store) = dpop_replay {
        auth = auth.dpop_replay_store(store);
    }
    let auth = auth
        .audit(crate::audit::open_with_new_key(cfg.audit.as_ref())?)
        .build()
        .map_err(|e| ConfigError::Invalid(format!("MCP server: {e}")))?;
    // One trail: the bearer layer's token events, the guard's decisions and tool changes, and
    // the vault's credential events.
    let audit = auth.audit_log().clone();
    // RV-19: with the mirror too, a revoked subject's credentials are refused, and a purged
    // one's deleted and revoked at their providers.
    let vault = match &cfg.vault {
        Some(vault) => Some(crate::vault::build_with_mirror(
            vault,
            base,
            &cfg.authorization_server,
            clock.clone(),
            audit.clone(),
            mirror.clone(),
        )?),
        None => None,
    };
    let purge: Option<Arc<dyn MirrorListener>> = match (&vault, &mirror) {
        (Some(vault), Some(mirror)) => {
            let purge: Arc<dyn MirrorListener> =
                Arc::new(PurgeOnRevocation::new(vault.vault.clone()).audit(vault.observer.clone()));
            mirror.subscribe(&purge);
            Some(purge)
        }
        _ => None,
    };
    let mcp = match tool_authorizer(&cfg.authz, &resource, audit.clone())? {
        Some(authorizer) => Router::new().nest_service(
            &cfg.path,
            guarded_tasks_service_in(
                &resource,
                authorizer,
                audit,
                vault
                    .as_ref()
                    .map(|v| (v.credentials.clone(), v.apis.clone())),
                sessions,
            ),
        ),
        None if vault.is_some() => {
            return Err(ConfigError::Invalid(
                "[vault] hands credentials to tools through the tool-call guard: it needs \
                 [authz] enabled"
                    .into(),
            ));
        }
        None => Router::new().nest_service(&cfg.path, tasks_service_in(sessions)),
    };
    let mut app = protect(mcp, auth.clone()).merge(auth.resource_metadata_router());
    // The connect callback (the user's browser has no access token) and the admin route sit
    // beside the bearer layer.
    if let Some(vault) = &vault {
        app = app.merge(vault.routes());
    }
    // The mirror holds its listeners weakly: the app keeps the purge alive.
    if let Some(purge) = purge {
        app = app.layer(axum::Extension(KeepAlive(purge)));
    }
    Ok(harden(app, &Limits::default()))
}

/// Keeps a mirror listener alive as long as the app that needs it.
#[derive(Clone)]
struct KeepAlive(#[allow(dead_code, reason = "held, never read")] Arc<dyn MirrorListener>);

/// The reference policies, compiled in: used when `[authz] policies` names no directory.
const BUILTIN_POLICIES: [(&str, &str); 2] = [
    (
        "tools.cedar",
        include_str!("../../config/mcp-server-policies/tools.cedar"),
    ),
    (
        "session.cedar",
        include_str!("../../config/mcp-server-policies/session.cedar"),
    ),
];

/// How often a policy directory is checked for changes.
const POLICY_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// The MCP server's tool-call authorizer from `[authz]`: the Cedar engine over the schema of
/// the server's own tools, the policies validated against it (a policy that does not validate
/// is a startup error with Cedar's message), session rules, the secret detector on results, and
/// tool-definition pinning. `None` when the guard is off. With a policy directory, a task
/// (when a runtime is running) reloads it when its files change, keeping the last good set
/// when the new one does not validate and logging why.
pub fn tool_authorizer(
    cfg: &McpAuthzConfig,
    resource: &str,
    audit: AuditLog,
) -> Result<Option<Arc<dyn ToolCallAuthorizer>>, ConfigError> {
    if !cfg.enabled {
        return Ok(None);
    }
    let invalid =
        |what: &str, e: &dyn std::fmt::Display| ConfigError::Invalid(format!("authz: {what}: {e}"));
    let schema = CedarSchema::new(&tasks::tool_definitions(), &PrincipalMapping::new())
        .map_err(|e| invalid("schema of the tools", &e))?;
    let engine = match &cfg.policies {
        Some(dir) => CedarEngine::from_dir(schema, dir)
            .map_err(|e| invalid(&format!("policies in {}", dir.display()), &e))?,
        None => {
            let policies = CedarPolicies::from_sources(&schema, BUILTIN_POLICIES)
                .map_err(|e| invalid("built-in policies", &e))?;
            CedarEngine::new(schema, policies).map_err(|e| invalid("built-in policies", &e))?
        }
    };
    let engine = Arc::new(engine);
    if cfg.policies.is_some()
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        let engine = Arc::downgrade(&engine);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(POLICY_POLL);
            loop {
                tick.tick().await;
                let Some(engine) = engine.upgrade() else { break };
                match engine.reload_if_changed() {
                    None => {}
                    Some(Ok(summary)) => {
                        tracing::info!(target: "ema_examples::authz", ?summary, "policies reloaded");
                    }
                    Some(Err(e)) => tracing::error!(
                        target: "ema_examples::authz",
                        error = %e,
                        "policy change refused; the last good policies stay in force"
                    ),
                }
            }
        });
    }
    let pin_response = match cfg.pin_response {
        PinResponseConfig::Deny => PinResponse::DenyUntilApproved,
        PinResponseConfig::Alert => PinResponse::Alert,
    };
    let authorizer = Authorizer::builder(engine)
        .session_ttl(std::time::Duration::from_secs(cfg.session_ttl_secs))
        .max_sessions(cfg.max_sessions)
        .no_inspectors()
        .inspector(SecretDetector::new().with_redaction(cfg.redact_secrets))
        .pin_response(pin_response)
        .on_tool_change({
            let server = resource.to_owned();
            let response = match cfg.pin_response {
                PinResponseConfig::Deny => DefinitionResponse::DeniedUntilApproved,
                PinResponseConfig::Alert => DefinitionResponse::Alerted,
            };
            move |change| {
                tracing::warn!(target: "ema_examples::authz", tool = %change.tool, kind = ?change.kind, "tool definition changed");
                let event = ToolDefinitionChanged::new(
                    server.as_str(),
                    change.tool.as_str(),
                    change.old.map(|h| h.to_string()),
                    change.new.map(|h| h.to_string()),
                    response,
                );
                if let Err(e) = audit.append(event) {
                    tracing::error!(target: "ema_audit", error = %e, "tool definition change not recorded");
                }
            }
        })
        .build();
    Ok(Some(Arc::new(authorizer)))
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
