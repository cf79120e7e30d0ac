//! The reference MCP server's vault of downstream credentials (`[vault]`): the vault itself
//! (in memory, or an encrypted SQLite file opened with a master key from a file or an
//! environment variable), the providers' HTTP clients, the connect flow, the tool -> provider
//! map, and the offboarding admin route.
//!
//! Routes, beside the bearer layer:
//! - `GET /connect/{provider}/callback`: the connect flow's callback (see
//!   [`ema_server::vault::Connector`]).
//! - `POST /admin/offboard` with `Authorization: Bearer <admin token>` and
//!   `{"subject": "...", "tenant": "..."}` (`tenant` defaults to the authorization server's
//!   issuer, the tenant of principals whose token names none): deletes every credential of the
//!   subject, revokes each at its provider, audits `subject_offboarded` and answers the report
//!   `{"tenant", "subject", "providers": [{"provider", "outcome", "detail"?}]}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ema_grant::revocation::LedgerMirror;
use ema_jose::{Clock, SystemClock, UnixTime};
use ema_server::audit::AuditLog;
use ema_server::vault::MirrorSubjectStatus;
use ema_server::vault::{
    AuditVaultObserver, ClientAuth, ConnectProvider, Connector, HttpProviderClient, ToolCredentials,
};
use ema_vault::{
    ConnectStates, CredentialVault, MasterKey, MasterKeys, MemoryStore, Owner, ProviderId,
    RevokeOutcome, Secret, SqliteStore, Vault,
};
use serde_json::json;

use crate::config::{ConfigError, VaultConfig, secret_from};
use crate::tasks::{self, DownstreamApis};

/// Connect flows pending at once.
const CONNECT_CAPACITY: usize = 10_000;

/// The wall clock moved forward by a settable number of seconds: lets the demo and the tests
/// show a token expiring without waiting.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset: AtomicU64,
}

impl ShiftedClock {
    /// The wall clock, not yet moved.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock `secs` seconds forward.
    pub fn advance(&self, secs: u64) {
        self.offset.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> UnixTime {
        SystemClock.now().plus(self.offset.load(Ordering::SeqCst))
    }
}

/// The MCP server's vault, built from `[vault]`.
#[derive(Clone)]
pub struct McpVault {
    /// The vault.
    pub vault: Arc<dyn CredentialVault>,
    /// The connect flow.
    pub connector: Arc<Connector>,
    /// Which tool gets which provider's credential.
    pub credentials: ToolCredentials,
    /// The APIs the notes tools call.
    pub apis: DownstreamApis,
    /// The audit trail of the vault.
    pub observer: AuditVaultObserver,
    admin_token: Option<Secret>,
    default_tenant: String,
}

impl std::fmt::Debug for McpVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpVault")
            .field("connector", &self.connector)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

fn invalid(what: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("vault: {what}"))
}

/// Builds the vault of `[vault]` for the MCP server at `public_base`; `default_tenant` (the
/// authorization server's issuer) is the tenant of principals whose token names none, as in
/// [`ema_server::vault::owner_of`].
pub fn build(
    cfg: &VaultConfig,
    public_base: &str,
    default_tenant: &str,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
) -> Result<McpVault, ConfigError> {
    build_with_mirror(cfg, public_base, default_tenant, clock, audit, None)
}

/// [`build`] whose vault also asks the MCP server's revocation mirror whether each owner may
/// still use a credential (RV-19, [`MirrorSubjectStatus`]; the owner's subject at the
/// authorization server `default_tenant`).
pub fn build_with_mirror(
    cfg: &VaultConfig,
    public_base: &str,
    default_tenant: &str,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    mirror: Option<Arc<LedgerMirror>>,
) -> Result<McpVault, ConfigError> {
    let observer = AuditVaultObserver::new(audit);
    let mut builder = match cfg.store.as_str() {
        "memory" => {
            if cfg.master_key_file.is_some() || cfg.master_key_env.is_some() {
                return Err(invalid(
                    "a master key is for the SQLite store; store = \"memory\" keeps nothing on disk",
                ));
            }
            Vault::builder(MemoryStore::new())
        }
        path => {
            let key = match (&cfg.master_key_file, &cfg.master_key_env) {
                (Some(file), None) => MasterKey::from_file(file),
                (None, Some(var)) => MasterKey::from_env(var),
                _ => {
                    return Err(invalid(format!(
                        "store `{path}` needs exactly one of `master_key_file` and `master_key_env`"
                    )));
                }
            }
            .map_err(|e| invalid(format!("master key: {e}")))?;
            let store = SqliteStore::open(path, MasterKeys::new(key))
                .map_err(|e| invalid(format!("store `{path}`: {e}")))?;
            Vault::builder(store)
        }
    }
    .clock(clock.clone())
    .observer(Arc::new(observer.clone()));
    if let Some(skew) = cfg.refresh_skew_secs {
        builder = builder.refresh_skew(skew);
    }
    if let Some(mirror) = mirror {
        builder =
            builder.subject_status(Arc::new(MirrorSubjectStatus::new(mirror, default_tenant)));
    }
    let mut connect = Vec::new();
    let mut apis = HashMap::new();
    for (id, p) in &cfg.providers {
        let what = format!("provider `{id}`");
        let provider = ProviderId::new(id.as_str()).map_err(|e| invalid(format!("{what}: {e}")))?;
        let secret = secret_from(
            p.client_secret.as_deref(),
            p.client_secret_env.as_deref(),
            None,
            &format!("{what}: client secret"),
        )?;
        let auth = match p.token_endpoint_auth_method.as_deref() {
            None | Some("client_secret_basic") => ClientAuth::SecretBasic,
            Some("client_secret_post") => ClientAuth::SecretPost,
            Some(other) => {
                return Err(invalid(format!(
                    "{what}: token_endpoint_auth_method `{other}`: use client_secret_basic or \
                     client_secret_post"
                )));
            }
        };
        let mut client =
            HttpProviderClient::new(&p.token_url, p.client_id.as_str(), Secret::new(secret))
                .map_err(|e| invalid(format!("{what}: {e}")))?
                .with_client_auth(auth)
                .with_clock(clock.clone());
        if let Some(revoke) = &p.revoke_url {
            client = client
                .with_revocation_endpoint(revoke)
                .map_err(|e| invalid(format!("{what}: {e}")))?;
        }
        let client = Arc::new(client);
        builder = builder.provider(provider.clone(), client.clone());
        let mut entry = ConnectProvider::new(provider.clone(), &p.authorize_url, client)
            .map_err(|e| invalid(format!("{what}: {e}")))?
            .with_scopes(p.scopes.iter().cloned());
        if let Some(issuer) = &p.issuer {
            entry = entry.with_issuer(issuer.as_str());
        }
        connect.push(entry);
        if let Some(api) = &p.api_url {
            apis.insert(id.clone(), api.clone());
        }
    }
    let vault: Arc<dyn CredentialVault> = Arc::new(builder.build());
    let mut connector = Connector::new(
        vault.clone(),
        ConnectStates::new(cfg.connect_ttl_secs, CONNECT_CAPACITY),
        public_base,
    )
    .map_err(invalid)?
    .with_clock(clock);
    for entry in connect {
        connector = connector.with_provider(entry);
    }
    let connector = Arc::new(connector);
    let known_tools = tasks::tool_names();
    let mut credentials = ToolCredentials::new(connector.clone());
    for (tool, provider) in &cfg.tools {
        if !known_tools.contains(tool) {
            return Err(invalid(format!(
                "tools: `{tool}` is not a tool of this server"
            )));
        }
        if !cfg.providers.contains_key(provider) {
            return Err(invalid(format!(
                "tools: `{tool}` names provider `{provider}`, which is not configured"
            )));
        }
        let provider = ProviderId::new(provider.as_str()).map_err(invalid)?;
        credentials = credentials.tool(tool.as_str(), provider);
    }
    let admin_token = match (
        &cfg.admin_token,
        &cfg.admin_token_env,
        &cfg.admin_token_file,
    ) {
        (None, None, None) => None,
        (inline, env, file) => Some(Secret::new(secret_from(
            inline.as_deref(),
            env.as_deref(),
            file.as_deref(),
            "vault admin token",
        )?)),
    };
    Ok(McpVault {
        vault,
        connector,
        credentials,
        apis: DownstreamApis::new(apis),
        observer,
        admin_token,
        default_tenant: default_tenant.to_owned(),
    })
}

impl McpVault {
    /// The connect callback, and the offboarding admin route when an admin token is set.
    pub fn routes(&self) -> Router {
        let mut router = self.connector.router();
        if self.admin_token.is_some() {
            router = router.merge(
                Router::new()
                    .route("/admin/offboard", axum::routing::post(offboard))
                    .with_state(self.clone()),
            );
        }
        router
    }

    /// Offboards `owner`: every credential deleted and revoked at its provider, the report
    /// audited as `subject_offboarded`.
    pub async fn offboard(&self, owner: &Owner) -> Result<ema_vault::OffboardReport, String> {
        let report = self
            .vault
            .revoke_all(owner)
            .await
            .map_err(|e| e.to_string())?;
        self.observer
            .offboarded(owner, &report)
            .map_err(|e| format!("offboarded, but the audit trail refused the report: {e}"))?;
        Ok(report)
    }
}

/// Compares without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn admin_error(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "error": text }))).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OffboardRequest {
    subject: String,
    tenant: Option<String>,
}

async fn offboard(State(v): State<McpVault>, headers: HeaderMap, body: String) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    let authorized = match (&v.admin_token, presented) {
        (Some(token), Some(presented)) => same(token.expose().as_bytes(), presented.as_bytes()),
        _ => false,
    };
    if !authorized {
        return admin_error(
            StatusCode::UNAUTHORIZED,
            "the admin token is missing or wrong",
        );
    }
    let Ok(request) = serde_json::from_str::<OffboardRequest>(&body) else {
        return admin_error(
            StatusCode::BAD_REQUEST,
            "expected {\"subject\": \"...\", \"tenant\": \"...\" (optional)}",
        );
    };
    let tenant = request.tenant.unwrap_or_else(|| v.default_tenant.clone());
    let owner = match Owner::new(tenant, request.subject) {
        Ok(owner) => owner,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match v.offboard(&owner).await {
        Ok(report) => {
            let providers: Vec<serde_json::Value> = report
                .providers
                .iter()
                .map(|(provider, outcome)| match outcome {
                    RevokeOutcome::Revoked => {
                        json!({"provider": provider.as_str(), "outcome": "revoked"})
                    }
                    RevokeOutcome::NotSupported => {
                        json!({"provider": provider.as_str(), "outcome": "not_supported"})
                    }
                    RevokeOutcome::Failed(why) => {
                        json!({"provider": provider.as_str(), "outcome": "failed", "detail": why})
                    }
                    _ => json!({"provider": provider.as_str(), "outcome": "failed"}),
                })
                .collect();
            tracing::info!(target: "ema_examples::vault", tenant = %owner.tenant(), subject = %owner.subject(), providers = providers.len(), "subject offboarded");
            axum::Json(json!({
                "tenant": owner.tenant(),
                "subject": owner.subject(),
                "providers": providers,
            }))
            .into_response()
        }
        Err(e) => admin_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}
