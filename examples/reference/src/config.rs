//! TOML configuration of the reference servers, with development defaults for every field.
//! `examples/README.md` documents a complete sample of each file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ema_grant::AuthMethod;
use ema_jose::{Algorithm, AlgorithmSet, TimeOptions};
use ema_server::EndpointPaths;
use serde::Deserialize;

/// Where a server listens and what URL it calls itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// The socket address to bind; port 0 lets the OS choose.
    pub listen: SocketAddr,
    /// The public base URL (issuer or resource origin). Defaults to `http://<bound address>`.
    pub public_url: Option<String>,
}

/// A signing key: a PKCS#8 PEM file, or generated at start when `pem_file` is absent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// The `kid` to publish.
    pub kid: String,
    /// `ES256` (default), `ES384`, `RS256`, `PS256` or `EdDSA`.
    #[serde(default = "default_alg")]
    pub alg: String,
    /// A PKCS#8 PEM private key file.
    pub pem_file: Option<PathBuf>,
}

fn default_alg() -> String {
    "ES256".into()
}

/// A server's audit trail (`[audit]`): tamper-evident JSON lines (`ema-audit`), hash-chained,
/// with checkpoints signed by the server's key. The IdP and the authorization server sign with
/// their `signing_key`; the MCP server, which has none, with a key generated at start. Each
/// public checkpoint key is added to `<file>.jwks.json` beside the trail, the JWKS for
/// `ema-audit verify <file> --key <file>.jwks.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFileConfig {
    /// The trail: created if absent, else verified and continued.
    pub file: PathBuf,
    /// A signed checkpoint after this many events (default 1000); one is also written when the
    /// server stops.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
}

fn default_checkpoint_every() -> u64 {
    1000
}

/// An admin bearer secret (`[admin]` at the IdP, `[revocation] admin_secret` at the AS),
/// compared in constant time. `Debug` never shows it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The bearer secret of the admin routes.
    pub secret: String,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("secret", &Redacted)
            .finish()
    }
}

/// The authorization server's `[code_flow]`: the MCP authorization code flow (PKCE `S256`,
/// `resource` required, exact redirect URIs), with users signing in at the IdP `idp` (one of
/// `[[trusted_issuers]]`) as its OpenID Connect client `client_id`. `Debug` never shows the
/// secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsCodeFlowConfig {
    /// The IdP users sign in at; must be a trusted issuer (its keys verify the ID tokens).
    pub idp: String,
    /// This server's client id at the IdP.
    pub client_id: String,
    /// Its secret (`client_secret_basic` at the IdP's token endpoint).
    pub client_secret: String,
    /// The IdP's authorization endpoint (default `<idp>/authorize`).
    #[serde(default)]
    pub idp_authorization_endpoint: Option<String>,
    /// The IdP's token endpoint (default `<idp>/token`).
    #[serde(default)]
    pub idp_token_endpoint: Option<String>,
    /// The path of this server's authorization endpoint (default `/authorize`).
    #[serde(default = "default_authorize_path")]
    pub authorize: String,
    /// The path the IdP redirects back to (default `/idp/callback`); register
    /// `<public_url><callback>` at the IdP.
    #[serde(default = "default_callback_path")]
    pub callback: String,
    /// Code lifetime in seconds (default 60; 1 to 600).
    #[serde(default = "default_code_lifetime")]
    pub code_lifetime_secs: u64,
    /// Accept unregistered clients whose `client_id` is a Client ID Metadata Document URL,
    /// fetched with the server's fetch policy (SSRF rules, size and time caps, no redirects)
    /// and cached; advertised as `client_id_metadata_document_supported` (default false).
    #[serde(default)]
    pub client_id_metadata_documents: bool,
}

fn default_authorize_path() -> String {
    "/authorize".into()
}

fn default_callback_path() -> String {
    "/idp/callback".into()
}

fn default_code_lifetime() -> u64 {
    ema_grant::code_flow::DEFAULT_CODE_LIFETIME
}

impl fmt::Debug for AsCodeFlowConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCodeFlowConfig")
            .field("idp", &self.idp)
            .field("client_id", &self.client_id)
            .field("client_secret", &Redacted)
            .field(
                "idp_authorization_endpoint",
                &self.idp_authorization_endpoint,
            )
            .field("idp_token_endpoint", &self.idp_token_endpoint)
            .field("authorize", &self.authorize)
            .field("callback", &self.callback)
            .field("code_lifetime_secs", &self.code_lifetime_secs)
            .field(
                "client_id_metadata_documents",
                &self.client_id_metadata_documents,
            )
            .finish()
    }
}

/// The authorization server's `[revocation]`: an in-memory ledger (the default for one
/// instance), with the admin revoke route `POST /admin/revoke` when `admin_secret` is set.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsRevocationConfig {
    /// The bearer secret of `POST /admin/revoke`; the route is off when absent.
    pub admin_secret: Option<String>,
}

impl fmt::Debug for AsRevocationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsRevocationConfig")
            .field(
                "admin_secret",
                &self.admin_secret.as_ref().map(|_| Redacted),
            )
            .finish()
    }
}

/// The authorization server's `[ssf]`: the SSF push receiver (RFC 8935, RV-4) and its
/// transmitters. Absent: no receiver.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsSsfConfig {
    /// The push endpoint's path below `public_url` (default `/ssf/events`).
    #[serde(default)]
    pub push_path: Option<String>,
    /// The Global Token Revocation endpoint's path (RV-21; default
    /// `/global-token-revocation`), for the same transmitters' credentials.
    #[serde(default)]
    pub gtr_path: Option<String>,
    /// The trusted transmitters (`[[ssf.transmitters]]`), at least one.
    #[serde(default)]
    pub transmitters: Vec<SsfTransmitterConfig>,
}

/// One trusted SSF transmitter (`[[ssf.transmitters]]`). `Debug` never shows the
/// `authorization` value.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsfTransmitterConfig {
    /// The transmitter's issuer: every SET's `iss` (RV-5).
    pub issuer: String,
    /// Where to fetch its JWKS.
    pub jwks_url: Option<String>,
    /// Or a local JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// Or the JWKS itself, as JSON text.
    pub jwks: Option<String>,
    /// The `Authorization` header value it presents (e.g. `Bearer ...`), compared whole. May
    /// be left out for a transmitter that is only polled (`poll_url`): then no push from it
    /// authenticates.
    #[serde(default)]
    pub authorization: String,
    /// The `aud` its SETs carry: our receiver id (default: `public_url` + `push_path`).
    #[serde(default)]
    pub audience: Option<String>,
    /// The IdP issuers whose subjects it may affect (RV-7; default: its own issuer).
    #[serde(default)]
    pub subject_issuers: Option<Vec<String>>,
    /// The tenant it speaks for (RV-7; default: none).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Accepted algorithms (RV-5; default RS256, PS256, ES256, EdDSA, which is also the most).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Verified, unique email addresses mapped to IdP subjects, for `email` subjects (RV-9;
    /// absent: `email` subjects match nothing).
    #[serde(default)]
    pub emails: Option<std::collections::BTreeMap<String, String>>,
    /// Also accept, at the Global Token Revocation endpoint, a bearer JWT signed with this
    /// transmitter's keys and addressed to the endpoint (Okta's Universal Logout, RV-21;
    /// default false: its `authorization` value only).
    #[serde(default)]
    pub gtr_jwt: bool,
    /// The stream's id at the transmitter: with `receiver_authorization`, the AS asks for
    /// stream verification on a schedule (RV-26), and only then may its users' access tokens
    /// live longer than 300 s (RV-24).
    #[serde(default)]
    pub stream_id: Option<String>,
    /// The `Authorization` value the AS presents at the transmitter's verification and stream
    /// configuration endpoints.
    #[serde(default)]
    pub receiver_authorization: Option<String>,
    /// Seconds between verifications (default 300; 1 to 900, RV-24's freshness bound). The
    /// transmitter's `min_verification_interval` is respected on top.
    #[serde(default)]
    pub verify_every_secs: Option<u64>,
    /// The transmitter's SSF discovery document (default: `/.well-known/ssf-configuration`
    /// inserted after the host of `issuer`), naming its verification endpoint.
    #[serde(default)]
    pub configuration_url: Option<String>,
    /// The transmitter's RFC 8936 poll endpoint, for a transmitter that cannot push (RV-27):
    /// the AS long-polls it with `receiver_authorization`. Absent: push only.
    #[serde(default)]
    pub poll_url: Option<String>,
}

impl fmt::Debug for SsfTransmitterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsfTransmitterConfig")
            .field("issuer", &self.issuer)
            .field("jwks_url", &self.jwks_url)
            .field("jwks_file", &self.jwks_file)
            .field("authorization", &Redacted)
            .field("audience", &self.audience)
            .field("subject_issuers", &self.subject_issuers)
            .field("tenant", &self.tenant)
            .field("algorithms", &self.algorithms)
            .field("gtr_jwt", &self.gtr_jwt)
            .field("stream_id", &self.stream_id)
            .field(
                "receiver_authorization",
                &self.receiver_authorization.as_ref().map(|_| Redacted),
            )
            .field("verify_every_secs", &self.verify_every_secs)
            .field("configuration_url", &self.configuration_url)
            .field("poll_url", &self.poll_url)
            .finish_non_exhaustive()
    }
}

/// A client registered at a server. `Debug` never shows the secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client id.
    pub id: String,
    /// A shared secret (`client_secret_basic` / `client_secret_post`).
    pub secret: Option<String>,
    /// A JWKS file with the client's public keys (`private_key_jwt`).
    pub jwks_file: Option<PathBuf>,
    /// The one way the client authenticates at the token endpoint, by its RFC 7591 name (D-24):
    /// `client_secret_basic` or `client_secret_post` with a `secret`, `private_key_jwt` with a
    /// `jwks_file`. Absent: `client_secret_basic` for a secret, `private_key_jwt` for keys.
    /// Credentials sent any other way are refused with 401 `invalid_client`.
    #[serde(default, deserialize_with = "auth_method")]
    pub token_endpoint_auth_method: Option<AuthMethod>,
    /// Redirect URIs (IdP only).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| Redacted))
            .field("jwks_file", &self.jwks_file)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .field("redirect_uris", &self.redirect_uris)
            .finish()
    }
}

/// Reads a `token_endpoint_auth_method` name; an unknown name is a configuration error that
/// lists the accepted ones.
fn auth_method<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<AuthMethod>, D::Error> {
    let name = String::deserialize(d)?;
    name.parse().map(Some).map_err(serde::de::Error::custom)
}

/// Stands for a secret or a password in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An IdP user. `Debug` never shows the password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The stable subject id.
    pub subject: String,
    /// The login name.
    pub username: String,
    /// The password (hashed at start; keep the file private).
    pub password: String,
    /// The email address.
    pub email: Option<String>,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("subject", &self.subject)
            .field("username", &self.username)
            .field("password", &Redacted)
            .field("email", &self.email)
            .field("groups", &self.groups)
            .finish()
    }
}

/// An authorization server the IdP issues ID-JAGs for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Its issuer identifier.
    pub issuer: String,
    /// Other names clients may use as `audience`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The resources it governs.
    pub resources: Vec<String>,
    /// IdP client id → the client's id at that server.
    #[serde(default)]
    pub clients: std::collections::BTreeMap<String, String>,
    /// The IdP client (a `[[clients]]` id) through which users sign in to this server in its
    /// MCP authorization code flow (the server is that client, an OpenID Connect relying
    /// party): such a sign-in passes the admin policy `[[rules]]` for this server, as a token
    /// exchange does. Absent: none.
    #[serde(default)]
    pub sign_in_client: Option<String>,
}

/// An admin policy rule: members of `group` may reach `audience` with at most `scopes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The group.
    pub group: String,
    /// The authorization server issuer.
    pub audience: String,
    /// Space-separated scopes allowed.
    pub scopes: String,
    /// Resources allowed (empty: all it governs).
    #[serde(default)]
    pub resources: Vec<String>,
}

/// The enterprise IdP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpConfig {
    /// Listening and public URL.
    #[serde(flatten)]
    pub server: Listen,
    /// The signing key for ID tokens and ID-JAGs.
    pub signing_key: SigningKeyConfig,
    /// Registered clients.
    pub clients: Vec<ClientConfig>,
    /// Users.
    pub users: Vec<UserConfig>,
    /// Authorization servers it issues ID-JAGs for.
    pub targets: Vec<TargetConfig>,
    /// Admin policy rules.
    pub rules: Vec<RuleConfig>,
    /// ID-JAG lifetime in seconds (D-16: 300; 1 to 3600, the D-7 maximum).
    #[serde(default = "default_id_jag_lifetime")]
    pub id_jag_lifetime_secs: u64,
    /// Clock leeway in seconds for the ID tokens and client assertions it verifies (D-7: 30;
    /// at most 60).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Algorithms accepted for the ID tokens presented as subject tokens (D-26); absent: the
    /// default allow-list (ES256, RS256, PS256, EdDSA). Must include `signing_key.alg`.
    #[serde(default)]
    pub id_token_algorithms: Option<Vec<String>>,
    /// Endpoint paths below `public_url`, published in the metadata.
    #[serde(default)]
    pub endpoints: IdpEndpointsConfig,
    /// The audit trail (`[audit]`): off when absent.
    #[serde(default)]
    pub audit: Option<AuditFileConfig>,
    /// The admin routes (`[admin]`): disabling users (RV-1); off when absent.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The IdP as SSF transmitter (`[ssf]`, RV-3): push streams to receivers. Absent: the
    /// discovery document is not served and nothing is pushed.
    #[serde(default)]
    pub ssf: Option<IdpSsfConfig>,
}

/// The IdP's `[ssf]`: its push streams (`[[ssf.streams]]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpSsfConfig {
    /// The push streams.
    #[serde(default)]
    pub streams: Vec<SsfStreamConfig>,
}

/// One push stream of the IdP (RFC 8935). `Debug` never shows the `authorization` value.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsfStreamConfig {
    /// The receiver's push endpoint URL (push streams; leave out for a poll stream).
    #[serde(default)]
    pub endpoint_url: String,
    /// `push` (RFC 8935, the default) or `poll` (RFC 8936, RV-27: the receiver polls
    /// `/ssf/poll` with `receiver_authorization`; give `audience`).
    #[serde(default)]
    pub delivery: Option<String>,
    /// How long a long poll of a poll stream waits for a SET, in seconds (default 20, at most
    /// 60).
    #[serde(default)]
    pub poll_wait_secs: Option<u64>,
    /// The `Authorization` header value the receiver expects (push streams).
    #[serde(default)]
    pub authorization: String,
    /// The receiver id, each SET's `aud` (default: `endpoint_url`).
    #[serde(default)]
    pub audience: Option<String>,
    /// The stream's id (default `stream-<n>`, n counting from 1).
    #[serde(default)]
    pub stream_id: Option<String>,
    /// The `Authorization` value the receiver presents at the verification and stream
    /// configuration endpoints (RV-26). Absent: the receiver cannot ask for verification.
    #[serde(default)]
    pub receiver_authorization: Option<String>,
    /// The least seconds between two verification requests (SSF `min_verification_interval`,
    /// default 60); sooner ones are answered 429.
    #[serde(default)]
    pub min_verification_interval_secs: Option<u64>,
}

impl fmt::Debug for SsfStreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsfStreamConfig")
            .field("endpoint_url", &self.endpoint_url)
            .field("delivery", &self.delivery)
            .field("poll_wait_secs", &self.poll_wait_secs)
            .field("authorization", &Redacted)
            .field("audience", &self.audience)
            .field("stream_id", &self.stream_id)
            .field(
                "receiver_authorization",
                &self.receiver_authorization.as_ref().map(|_| Redacted),
            )
            .field(
                "min_verification_interval_secs",
                &self.min_verification_interval_secs,
            )
            .finish()
    }
}

/// The IdP's endpoint paths (the metadata stays at its well-known paths).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdpEndpointsConfig {
    /// The token endpoint (token exchange and authorization code).
    pub token: String,
    /// The JWKS.
    pub jwks: String,
    /// The authorization endpoint (sign-in page).
    pub authorize: String,
}

impl Default for IdpEndpointsConfig {
    fn default() -> Self {
        Self {
            token: "/token".into(),
            jwks: "/jwks".into(),
            authorize: "/authorize".into(),
        }
    }
}

impl IdpEndpointsConfig {
    /// The checked paths.
    pub fn paths(&self) -> Result<EndpointPaths, ConfigError> {
        EndpointPaths::new(
            self.token.as_str(),
            self.jwks.as_str(),
            self.authorize.as_str(),
        )
        .map_err(|e| ConfigError::Invalid(format!("[endpoints]: {e}")))
    }
}

/// The authorization server's endpoint paths (the metadata stays at its well-known path).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsEndpointsConfig {
    /// The token endpoint (jwt-bearer).
    pub token: String,
    /// The JWKS of the access-token keys.
    pub jwks: String,
}

impl Default for AsEndpointsConfig {
    fn default() -> Self {
        Self {
            token: "/token".into(),
            jwks: "/jwks".into(),
        }
    }
}

impl AsEndpointsConfig {
    /// The checked paths.
    pub fn paths(&self) -> Result<EndpointPaths, ConfigError> {
        EndpointPaths::without_authorize(self.token.as_str(), self.jwks.as_str())
            .map_err(|e| ConfigError::Invalid(format!("[endpoints]: {e}")))
    }
}

/// An IdP trusted by the authorization server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerConfig {
    /// The issuer identifier (exact).
    pub issuer: String,
    /// Where to fetch its JWKS.
    pub jwks_url: Option<String>,
    /// Or a local JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// Or the JWKS itself, as JSON text.
    pub jwks: Option<String>,
    /// A required tenant (D-14).
    pub tenant: Option<String>,
    /// Algorithms accepted from this issuer (D-26); absent: ES256, RS256, PS256, EdDSA.
    pub algorithms: Option<Vec<String>>,
}

/// A resource (MCP server) the authorization server issues tokens for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfigToml {
    /// The resource identifier.
    pub id: String,
    /// The scopes it defines.
    pub scopes: Vec<String>,
    /// Scopes granted when neither the ID-JAG nor the request names any (D-20).
    #[serde(default)]
    pub default_scopes: Vec<String>,
    /// `reject` (default) or `drop` undefined scopes in ID-JAGs (D-21).
    #[serde(default)]
    pub unknown_scopes: Option<String>,
}

/// A subject mapping entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectMapConfig {
    /// The IdP issuer.
    pub issuer: String,
    /// The IdP subject.
    pub sub: String,
    /// The local user id.
    pub local: String,
    /// Local groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Subject mapping at the authorization server (D-14).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectsConfig {
    /// Provision unknown subjects just in time under the IdP's subject id.
    #[serde(default)]
    pub just_in_time: bool,
    /// Explicit mappings (they win over provisioning).
    #[serde(default)]
    pub map: Vec<SubjectMapConfig>,
}

/// The MCP authorization server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationServerConfig {
    /// Listening and public URL.
    #[serde(flatten)]
    pub server: Listen,
    /// The access-token signing key.
    pub signing_key: SigningKeyConfig,
    /// Access-token lifetime in seconds (default 300, RV-24 and D-40; 1 to 3600). More than
    /// 300 applies only to users of an IdP whose revocation channel (the `[ssf]` stream) was
    /// verified within the last 15 minutes; otherwise tokens live 300 s (RV-24).
    #[serde(default = "default_lifetime")]
    pub token_lifetime_secs: u64,
    /// Clock leeway in seconds for ID-JAGs and client assertions (D-7: 30; at most 60).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Endpoint paths below `public_url`, published in the metadata.
    #[serde(default)]
    pub endpoints: AsEndpointsConfig,
    /// Trusted IdPs.
    pub trusted_issuers: Vec<TrustedIssuerConfig>,
    /// Registered clients.
    pub clients: Vec<ClientConfig>,
    /// Governed resources.
    pub resources: Vec<ResourceConfigToml>,
    /// Subject mapping.
    pub subjects: SubjectsConfig,
    /// Allow `http` on loopback for JWKS and issuer URLs (development only).
    #[serde(default)]
    pub insecure_allow_loopback_http: bool,
    /// The audit trail (`[audit]`): off when absent.
    #[serde(default)]
    pub audit: Option<AuditFileConfig>,
    /// Revocation (`[revocation]`): the ledger (in memory) behind the RFC 7009 endpoint
    /// `/revoke` and the ID-JAG check (RV-11), and the admin revoke route.
    #[serde(default)]
    pub revocation: AsRevocationConfig,
    /// The SSF push receiver (`[ssf]`, RV-4): SETs from the configured transmitters become
    /// revocations. Absent: no receiver.
    #[serde(default)]
    pub ssf: Option<AsSsfConfig>,
    /// The MCP authorization code flow (`[code_flow]`): users sign in at a trusted IdP over
    /// OpenID Connect. Absent: the jwt-bearer grant only.
    #[serde(default)]
    pub code_flow: Option<AsCodeFlowConfig>,
    /// Redis shared by several instances of this server (`redis://host:6379/`, `rediss://`,
    /// `redis+unix:///path/redis.sock`): the replay store of ID-JAG, client-assertion and DPoP
    /// `jti`s, so each is single-use across every instance. Absent: in-memory (one instance).
    #[serde(default)]
    pub redis_url: Option<String>,
    /// Instead of `redis_url`, a Redis Cluster: some of its nodes
    /// (`["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]`), from which the client learns the
    /// rest. Every key of one prefix hashes to one slot (the prefix is a hash tag), so the
    /// ledger's scripts and stream work there. At most one of `redis_url` and `redis_cluster`.
    #[serde(default)]
    pub redis_cluster: Option<Vec<String>>,
    /// The key prefix in Redis (default `ema`): instances share state when they share the URL
    /// and the prefix.
    #[serde(default)]
    pub redis_prefix: Option<String>,
}

fn default_lifetime() -> u64 {
    ema_grant::access_token::DEFAULT_ACCESS_TOKEN_LIFETIME
}

fn default_id_jag_lifetime() -> u64 {
    ema_id_jag::DEFAULT_LIFETIME_SECS
}

fn default_leeway() -> u64 {
    DEFAULT_LEEWAY_SECS
}

/// The default clock leeway (D-7).
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// The MCP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Listening and public URL.
    #[serde(flatten)]
    pub server: Listen,
    /// The path of the MCP endpoint (default `/mcp`).
    #[serde(default = "default_mcp_path")]
    pub path: String,
    /// The authorization server's issuer.
    pub authorization_server: String,
    /// Its JWKS URL (default `<issuer>/jwks` when neither `jwks_file` nor `jwks` is given).
    pub jwks_url: Option<String>,
    /// Or a local JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// Or the JWKS itself, as JSON text.
    pub jwks: Option<String>,
    /// Algorithms accepted for access tokens (D-26); absent: ES256, RS256, PS256, EdDSA.
    pub algorithms: Option<Vec<String>>,
    /// Clock leeway in seconds for access tokens (D-7: 30; at most 60).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Allow `http` on loopback for the JWKS URL (development only).
    #[serde(default)]
    pub insecure_allow_loopback_http: bool,
    /// The scopes each request needs (RS-6).
    #[serde(default)]
    pub scopes: McpScopesConfig,
    /// The audit trail (`[audit]`): off when absent.
    #[serde(default)]
    pub audit: Option<AuditFileConfig>,
    /// Tool-call authorization (Cedar policies, session rules, result inspection, pinning).
    #[serde(default)]
    pub authz: McpAuthzConfig,
    /// Downstream credentials (`[vault]`): off when absent.
    #[serde(default)]
    pub vault: Option<VaultConfig>,
    /// The authorization server's Redis (its `redis_url`): this server then checks every
    /// request against a mirror of the shared revocation ledger, tailing its change stream
    /// (RV-15, RV-16), and records DPoP proof `jti`s there, so that a proof is accepted once
    /// across instances (DP-33; Redis unreachable: 503). Absent: no revocation check (one
    /// process keeps its ledger in memory) and DPoP proofs recorded in memory.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// The authorization server's `redis_cluster`, instead of `redis_url`: nodes of the Redis
    /// Cluster it shares state on.
    #[serde(default)]
    pub redis_cluster: Option<Vec<String>>,
    /// The authorization server's `redis_prefix` (default `ema`).
    #[serde(default)]
    pub redis_prefix: Option<String>,
}

/// The MCP server's vault of downstream credentials (`[vault]`): where credentials are kept,
/// the providers users connect, which tool gets which provider's credential, and the
/// offboarding admin route's token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// `"memory"` (the default), or the path of an encrypted SQLite file.
    #[serde(default = "default_vault_store")]
    pub store: String,
    /// The SQLite store's master key: a file holding 32 bytes as 64 hex digits.
    pub master_key_file: Option<PathBuf>,
    /// Or the name of an environment variable holding them.
    pub master_key_env: Option<String>,
    /// A token expiring within this many seconds is refreshed before it is used (default: the
    /// vault's).
    pub refresh_skew_secs: Option<u64>,
    /// How long a connect link stays valid (default 600 seconds).
    #[serde(default = "default_connect_ttl")]
    pub connect_ttl_secs: u64,
    /// The bearer token of `POST /admin/offboard` (development only: prefer the next two).
    pub admin_token: Option<String>,
    /// Or the name of an environment variable holding it.
    pub admin_token_env: Option<String>,
    /// Or a file holding it.
    pub admin_token_file: Option<PathBuf>,
    /// The providers users can connect, by id.
    #[serde(default)]
    pub providers: BTreeMap<String, VaultProviderConfig>,
    /// Tool name -> provider id: the credential each tool is given.
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
}

impl fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultConfig")
            .field("store", &self.store)
            .field("master_key_file", &self.master_key_file)
            .field("master_key_env", &self.master_key_env)
            .field("refresh_skew_secs", &self.refresh_skew_secs)
            .field("connect_ttl_secs", &self.connect_ttl_secs)
            .field("admin_token", &self.admin_token.as_ref().map(|_| Redacted))
            .field("admin_token_env", &self.admin_token_env)
            .field("admin_token_file", &self.admin_token_file)
            .field("providers", &self.providers)
            .field("tools", &self.tools)
            .finish()
    }
}

/// One downstream provider (`[vault.providers.<id>]`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultProviderConfig {
    /// The MCP server's client id at the provider.
    pub client_id: String,
    /// Its client secret (development only: prefer `client_secret_env`).
    pub client_secret: Option<String>,
    /// Or the name of an environment variable holding it.
    pub client_secret_env: Option<String>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub token_endpoint_auth_method: Option<String>,
    /// The provider's authorization endpoint (the connect link).
    pub authorize_url: String,
    /// Its token endpoint (code exchange, refresh).
    pub token_url: String,
    /// Its RFC 7009 revocation endpoint, if it has one.
    pub revoke_url: Option<String>,
    /// Its issuer: the callback's `iss` must name it (RFC 9207) when set.
    pub issuer: Option<String>,
    /// The scopes asked for.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The API base the tools call (the notes tools call `<api_url>`).
    pub api_url: Option<String>,
}

impl fmt::Debug for VaultProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultProviderConfig")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| Redacted),
            )
            .field("client_secret_env", &self.client_secret_env)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("revoke_url", &self.revoke_url)
            .field("issuer", &self.issuer)
            .field("scopes", &self.scopes)
            .field("api_url", &self.api_url)
            .finish()
    }
}

fn default_vault_store() -> String {
    "memory".into()
}

fn default_connect_ttl() -> u64 {
    600
}

/// Exactly one of an inline value, an environment variable and a file, for `what`.
pub fn secret_from(
    inline: Option<&str>,
    env: Option<&str>,
    file: Option<&std::path::Path>,
    what: &str,
) -> Result<String, ConfigError> {
    let value = match (inline, env, file) {
        (Some(v), None, None) => v.to_owned(),
        (None, Some(var), None) => std::env::var(var).map_err(|_| {
            ConfigError::Invalid(format!("{what}: environment variable `{var}` is not set"))
        })?,
        (None, None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?
            .trim()
            .to_owned(),
        _ => {
            return Err(ConfigError::Invalid(format!(
                "{what}: give exactly one of the value, `..._env` and `..._file`"
            )));
        }
    };
    if value.is_empty() {
        return Err(ConfigError::Invalid(format!("{what} is empty")));
    }
    Ok(value)
}

/// What the MCP server's tool-call guard does (ema-authz).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpAuthzConfig {
    /// Guard every tool call (default `true`). Off, every admitted token may call every tool
    /// its scopes allow.
    pub enabled: bool,
    /// A directory of `*.cedar` policy files, validated at start against the schema generated
    /// from the server's tools. Absent: the built-in reference policies (the files of
    /// `examples/config/mcp-server-policies/`, compiled in).
    pub policies: Option<PathBuf>,
    /// What a changed tool definition gets: `deny` (until an operator re-approves it, the
    /// default) or `alert` (recorded, still callable).
    pub pin_response: PinResponseConfig,
    /// Redact secrets the detector finds in tool results (default `true`); found or not
    /// redacted, they raise the session label `secret_read`.
    pub redact_secrets: bool,
    /// Seconds an idle MCP session's context is kept (default 3600).
    pub session_ttl_secs: u64,
    /// Sessions tracked at once (default 10,000); a new session beyond it is denied.
    pub max_sessions: usize,
}

/// See [`McpAuthzConfig::pin_response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinResponseConfig {
    /// Deny a changed tool until it is approved again.
    Deny,
    /// Record the change and keep serving the tool.
    Alert,
}

impl Default for McpAuthzConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            policies: None,
            pin_response: PinResponseConfig::Deny,
            redact_secrets: true,
            session_ttl_secs: 3600,
            max_sessions: 10_000,
        }
    }
}

fn default_mcp_path() -> String {
    "/mcp".into()
}

/// The scopes MCP requests need at the MCP server (RS-6). A key left out keeps its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpScopesConfig {
    /// Needed by every request: GET and DELETE on the endpoint and `initialize` included
    /// (default none).
    pub every_request: Vec<String>,
    /// Needed by a JSON-RPC request whose method is not in `methods` (default `tasks.read`).
    pub default: Vec<String>,
    /// Per JSON-RPC method (default: `initialize` and `ping` none, `tools/list` `tasks.read`).
    pub methods: BTreeMap<String, Vec<String>>,
    /// Per tool, on top of what `tools/call` needs (default: `add_task` and `complete_task`
    /// `tasks.write`).
    pub tools: BTreeMap<String, Vec<String>>,
}

impl Default for McpScopesConfig {
    fn default() -> Self {
        let list = |s: &[&str]| s.iter().map(|&s| s.to_owned()).collect::<Vec<_>>();
        Self {
            every_request: Vec::new(),
            default: list(&["tasks.read"]),
            methods: [
                ("initialize".to_owned(), Vec::new()),
                ("ping".to_owned(), Vec::new()),
                ("tools/list".to_owned(), list(&["tasks.read"])),
            ]
            .into(),
            tools: [
                ("add_task".to_owned(), list(&["tasks.write"])),
                ("complete_task".to_owned(), list(&["tasks.write"])),
            ]
            .into(),
        }
    }
}

/// Development defaults: three servers on fixed loopback ports 9400 (IdP), 9401
/// (authorization server) and 9402 (MCP server), two users (ana in `eng`, allowed; bob in
/// `sales`, not assigned), one client at each server.
pub mod defaults {
    use super::*;

    /// The default IdP URL.
    pub const IDP: &str = "http://127.0.0.1:9400";
    /// The default authorization-server URL.
    pub const AS: &str = "http://127.0.0.1:9401";
    /// The default MCP server URL.
    pub const MCP: &str = "http://127.0.0.1:9402";
    /// The IdP's development admin secret (`[admin] secret`).
    pub const DEV_IDP_ADMIN_SECRET: &str = "idp-admin-dev-secret";
    /// The authorization server's development admin secret (`[revocation] admin_secret`).
    pub const DEV_AS_ADMIN_SECRET: &str = "as-admin-dev-secret";
    /// The `Authorization` value the development IdP presents to the AS's SSF receiver.
    pub const DEV_SSF_AUTHORIZATION: &str = "Bearer idp-ssf-dev-secret";
    /// The `Authorization` value the development AS presents at the IdP's SSF verification
    /// and stream configuration endpoints (RV-26).
    pub const DEV_SSF_RECEIVER_AUTHORIZATION: &str = "Bearer as-ssf-dev-secret";
    /// The development SSF stream from the IdP to the AS.
    pub const DEV_SSF_STREAM: &str = "tasks-as";
    /// The authorization server's client at the IdP for its code flow's sign-in.
    pub const DEV_SIGN_IN_CLIENT: &str = "tasks-as-rp";
    /// That client's development secret.
    pub const DEV_SIGN_IN_SECRET: &str = "tasks-as-rp-secret";
    /// The public MCP client registered for the code flow at the authorization server.
    pub const DEV_CODE_FLOW_CLIENT: &str = "mcp-client";
    /// Its redirect URI (matched exactly).
    pub const DEV_CODE_FLOW_REDIRECT: &str = "http://127.0.0.1:33418/callback";

    /// The IdP's development configuration, for servers at `idp`, `auth_server` and `mcp`.
    pub fn idp(
        idp: &str,
        auth_server: &str,
        mcp_resource: &str,
        other_resource: &str,
    ) -> IdpConfig {
        IdpConfig {
            server: Listen {
                listen: listen_of(idp),
                public_url: Some(idp.into()),
            },
            signing_key: SigningKeyConfig {
                kid: "idp-k1".into(),
                alg: default_alg(),
                pem_file: None,
            },
            clients: vec![
                ClientConfig {
                    id: "desk-idp-01".into(),
                    secret: Some("desk-secret".into()),
                    jwks_file: None,
                    token_endpoint_auth_method: Some(AuthMethod::ClientSecretBasic),
                    redirect_uris: vec!["http://127.0.0.1/callback".into()],
                },
                ClientConfig {
                    id: DEV_SIGN_IN_CLIENT.into(),
                    secret: Some(DEV_SIGN_IN_SECRET.into()),
                    jwks_file: None,
                    token_endpoint_auth_method: Some(AuthMethod::ClientSecretBasic),
                    redirect_uris: vec![format!("{auth_server}/idp/callback")],
                },
            ],
            users: vec![
                UserConfig {
                    subject: "00u8k2Lq91".into(),
                    username: "ana".into(),
                    password: "ana-password".into(),
                    email: Some("ana@acme.example".into()),
                    groups: vec!["eng".into()],
                },
                UserConfig {
                    subject: "00u9bobXX2".into(),
                    username: "bob".into(),
                    password: "bob-password".into(),
                    email: Some("bob@acme.example".into()),
                    groups: vec!["sales".into()],
                },
            ],
            targets: vec![TargetConfig {
                issuer: auth_server.into(),
                aliases: vec!["urn:acme:tasks".into()],
                resources: vec![mcp_resource.into(), other_resource.into()],
                clients: [("desk-idp-01".to_owned(), "tc_5f2a91".to_owned())].into(),
                sign_in_client: Some(DEV_SIGN_IN_CLIENT.into()),
            }],
            rules: vec![RuleConfig {
                group: "eng".into(),
                audience: auth_server.into(),
                scopes: "tasks.read tasks.write notes.read".into(),
                resources: Vec::new(),
            }],
            id_jag_lifetime_secs: default_id_jag_lifetime(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            id_token_algorithms: None,
            endpoints: IdpEndpointsConfig::default(),
            audit: None,
            admin: Some(AdminConfig {
                secret: DEV_IDP_ADMIN_SECRET.into(),
            }),
            ssf: Some(IdpSsfConfig {
                streams: vec![SsfStreamConfig {
                    endpoint_url: format!("{auth_server}{}", ema_grant::ssf::DEFAULT_PUSH_PATH),
                    delivery: None,
                    poll_wait_secs: None,
                    authorization: DEV_SSF_AUTHORIZATION.into(),
                    audience: None,
                    stream_id: Some(DEV_SSF_STREAM.into()),
                    receiver_authorization: Some(DEV_SSF_RECEIVER_AUTHORIZATION.into()),
                    min_verification_interval_secs: None,
                }],
            }),
        }
    }

    /// The authorization server's development configuration.
    pub fn authorization_server(
        idp: &str,
        auth_server: &str,
        mcp_resource: &str,
        other_resource: &str,
    ) -> AuthorizationServerConfig {
        AuthorizationServerConfig {
            server: Listen {
                listen: listen_of(auth_server),
                public_url: Some(auth_server.into()),
            },
            signing_key: SigningKeyConfig {
                kid: "as-k1".into(),
                alg: default_alg(),
                pem_file: None,
            },
            token_lifetime_secs: default_lifetime(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            endpoints: AsEndpointsConfig::default(),
            trusted_issuers: vec![TrustedIssuerConfig {
                issuer: idp.into(),
                jwks_url: Some(format!("{idp}/jwks")),
                jwks_file: None,
                jwks: None,
                tenant: None,
                algorithms: None,
            }],
            clients: vec![
                ClientConfig {
                    id: "tc_5f2a91".into(),
                    secret: Some("tc-secret".into()),
                    jwks_file: None,
                    token_endpoint_auth_method: Some(AuthMethod::ClientSecretBasic),
                    redirect_uris: Vec::new(),
                },
                ClientConfig {
                    id: DEV_CODE_FLOW_CLIENT.into(),
                    secret: None,
                    jwks_file: None,
                    token_endpoint_auth_method: Some(AuthMethod::None),
                    redirect_uris: vec![DEV_CODE_FLOW_REDIRECT.into()],
                },
            ],
            resources: vec![
                ResourceConfigToml {
                    id: mcp_resource.into(),
                    scopes: vec!["tasks.read".into(), "tasks.write".into()],
                    default_scopes: vec!["tasks.read".into()],
                    unknown_scopes: Some("drop".into()),
                },
                ResourceConfigToml {
                    id: other_resource.into(),
                    scopes: vec!["notes.read".into()],
                    default_scopes: vec!["notes.read".into()],
                    unknown_scopes: Some("drop".into()),
                },
            ],
            subjects: SubjectsConfig {
                just_in_time: true,
                map: vec![SubjectMapConfig {
                    issuer: idp.into(),
                    sub: "00u8k2Lq91".into(),
                    local: "u-17".into(),
                    groups: vec!["eng".into()],
                }],
            },
            insecure_allow_loopback_http: true,
            audit: None,
            revocation: AsRevocationConfig {
                admin_secret: Some(DEV_AS_ADMIN_SECRET.into()),
            },
            ssf: Some(AsSsfConfig {
                push_path: None,
                gtr_path: None,
                transmitters: vec![SsfTransmitterConfig {
                    issuer: idp.into(),
                    jwks_url: Some(format!("{idp}/jwks")),
                    jwks_file: None,
                    jwks: None,
                    authorization: DEV_SSF_AUTHORIZATION.into(),
                    audience: None,
                    subject_issuers: None,
                    tenant: None,
                    algorithms: None,
                    emails: None,
                    gtr_jwt: false,
                    stream_id: Some(DEV_SSF_STREAM.into()),
                    receiver_authorization: Some(DEV_SSF_RECEIVER_AUTHORIZATION.into()),
                    verify_every_secs: None,
                    configuration_url: None,
                    poll_url: None,
                }],
            }),
            code_flow: Some(AsCodeFlowConfig {
                idp: idp.into(),
                client_id: DEV_SIGN_IN_CLIENT.into(),
                client_secret: DEV_SIGN_IN_SECRET.into(),
                idp_authorization_endpoint: None,
                idp_token_endpoint: None,
                authorize: default_authorize_path(),
                callback: default_callback_path(),
                code_lifetime_secs: default_code_lifetime(),
                client_id_metadata_documents: true,
            }),
            redis_url: None,
            redis_cluster: None,
            redis_prefix: None,
        }
    }

    /// The MCP server's development configuration.
    pub fn mcp_server(auth_server: &str, mcp: &str) -> McpServerConfig {
        McpServerConfig {
            server: Listen {
                listen: listen_of(mcp),
                public_url: Some(mcp.into()),
            },
            path: default_mcp_path(),
            authorization_server: auth_server.into(),
            jwks_url: None,
            jwks_file: None,
            jwks: None,
            algorithms: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            insecure_allow_loopback_http: true,
            scopes: McpScopesConfig::default(),
            audit: None,
            authz: McpAuthzConfig::default(),
            vault: None,
            redis_url: None,
            redis_cluster: None,
            redis_prefix: None,
        }
    }

    /// The notes provider's client id at the development defaults.
    pub const NOTES_CLIENT_ID: &str = "mcp-notes";
    /// Its secret.
    pub const NOTES_CLIENT_SECRET: &str = "notes-secret";
    /// The offboarding admin token of the development defaults.
    pub const ADMIN_TOKEN: &str = "dev-admin-token";

    /// A memory vault with the notes provider at `notes` (its base URL) and the notes tools
    /// mapped to it: what the demo and the tests add to [`mcp_server`].
    pub fn vault(notes: &str) -> VaultConfig {
        let notes = notes.trim_end_matches('/');
        let provider = VaultProviderConfig {
            client_id: NOTES_CLIENT_ID.into(),
            client_secret: Some(NOTES_CLIENT_SECRET.into()),
            client_secret_env: None,
            token_endpoint_auth_method: None,
            authorize_url: format!("{notes}/authorize"),
            token_url: format!("{notes}/token"),
            revoke_url: Some(format!("{notes}/revoke")),
            issuer: Some(notes.to_owned()),
            scopes: vec!["notes.read".into(), "notes.write".into()],
            api_url: Some(format!("{notes}/api/notes")),
        };
        VaultConfig {
            store: default_vault_store(),
            master_key_file: None,
            master_key_env: None,
            refresh_skew_secs: None,
            connect_ttl_secs: default_connect_ttl(),
            admin_token: Some(ADMIN_TOKEN.into()),
            admin_token_env: None,
            admin_token_file: None,
            providers: [("notes".to_owned(), provider)].into_iter().collect(),
            tools: [
                ("list_notes".to_owned(), "notes".to_owned()),
                ("add_note".to_owned(), "notes".to_owned()),
            ]
            .into_iter()
            .collect(),
        }
    }

    /// The agent's development configuration: the default servers, user `ana`, and the
    /// clients the default IdP and authorization server register.
    pub fn agent() -> AgentConfig {
        AgentConfig {
            idp: IDP.into(),
            authorization_server: AS.into(),
            mcp: format!("{MCP}/mcp"),
            redirect_uri: "http://127.0.0.1/callback".into(),
            user: AgentUserConfig {
                username: "ana".into(),
                password: "ana-password".into(),
            },
            idp_client: AgentClientConfig {
                id: "desk-idp-01".into(),
                secret: Some("desk-secret".into()),
                signing_key: None,
                token_endpoint_auth_method: Some(AuthMethod::ClientSecretBasic),
            },
            as_client: AgentClientConfig {
                id: "tc_5f2a91".into(),
                secret: Some("tc-secret".into()),
                signing_key: None,
                token_endpoint_auth_method: Some(AuthMethod::ClientSecretBasic),
            },
        }
    }

    fn listen_of(url: &str) -> SocketAddr {
        url.strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

/// The agent's credentials at one server (CL-4 at the IdP, CL-6 and CL-13 at the authorization
/// server). `Debug` never shows the secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentClientConfig {
    /// The client id at that server.
    pub id: String,
    /// The shared secret (`client_secret_basic` / `client_secret_post`).
    pub secret: Option<String>,
    /// The client's signing key (`private_key_jwt`): a PKCS#8 PEM file, with the `kid` and
    /// `alg` of the public key registered at the server.
    pub signing_key: Option<SigningKeyConfig>,
    /// How the agent authenticates at that token endpoint, by its RFC 7591 name (D-24):
    /// `client_secret_basic` or `client_secret_post` with a `secret`, `private_key_jwt` with a
    /// `signing_key`, `none` for a public client. Absent: `client_secret_basic` for a secret,
    /// `private_key_jwt` for a key. It must be the one method the server registered.
    #[serde(default, deserialize_with = "auth_method")]
    pub token_endpoint_auth_method: Option<AuthMethod>,
}

impl fmt::Debug for AgentClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentClientConfig")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| Redacted))
            .field("signing_key", &self.signing_key)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .finish()
    }
}

impl AgentClientConfig {
    /// The method: the configured one, else `private_key_jwt` with a key, else
    /// `client_secret_basic`.
    pub fn method(&self) -> AuthMethod {
        self.token_endpoint_auth_method
            .unwrap_or(if self.signing_key.is_some() {
                AuthMethod::PrivateKeyJwt
            } else {
                AuthMethod::ClientSecretBasic
            })
    }

    /// The credentials for `ema-client`; `what` names the table in errors. A key without a
    /// `pem_file` is an error (the server could not know a generated key).
    pub fn credentials(&self, what: &str) -> Result<ema_client::ClientCredentials, ConfigError> {
        use ema_client::ClientCredentials as C;
        let secret = || {
            self.secret.clone().ok_or_else(|| {
                ConfigError::Invalid(format!("[{what}]: `{}` needs a `secret`", self.method()))
            })
        };
        Ok(match self.method() {
            AuthMethod::ClientSecretBasic => C::secret_basic(self.id.as_str(), secret()?),
            AuthMethod::ClientSecretPost => C::secret_post(self.id.as_str(), secret()?),
            AuthMethod::PrivateKeyJwt => {
                let key = self
                    .signing_key
                    .as_ref()
                    .filter(|k| k.pem_file.is_some())
                    .ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "[{what}]: `private_key_jwt` needs a `signing_key` with a `pem_file`"
                        ))
                    })?;
                C::private_key_jwt(
                    self.id.as_str(),
                    std::sync::Arc::new(crate::keys::signing_key(key)?),
                )
            }
            _ => C::public(self.id.as_str()),
        })
    }
}

/// The user the agent signs in (the reference IdP's login form). `Debug` never shows the
/// password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentUserConfig {
    /// The login name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for AgentUserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentUserConfig")
            .field("username", &self.username)
            .field("password", &Redacted)
            .finish()
    }
}

/// The `agent` example's configuration (`--config`); a field left out keeps its development
/// default ([`defaults::agent`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The IdP's issuer; its token endpoint is `<idp>/token`, its login form `<idp>/authorize`.
    pub idp: String,
    /// The MCP authorization server's issuer: the credentials of `[as_client]` are used there
    /// and nowhere else (CL-13).
    pub authorization_server: String,
    /// The MCP server's URL.
    pub mcp: String,
    /// A redirect URI registered for `[idp_client]` at the IdP (never contacted).
    pub redirect_uri: String,
    /// The user to sign in.
    pub user: AgentUserConfig,
    /// The agent's client at the IdP (sign-in and token exchange).
    pub idp_client: AgentClientConfig,
    /// The agent's client at the authorization server (jwt-bearer).
    pub as_client: AgentClientConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        defaults::agent()
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is invalid.
    #[error("invalid configuration in `{path}`: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value is invalid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Reads a TOML file into `T`.
pub fn load<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Toml {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The allow-list named by `names` (D-26), or [`AlgorithmSet::DEFAULT`] when absent. `what`
/// names the setting in errors. Unknown names and an empty list are errors.
pub fn algorithms(names: Option<&[String]>, what: &str) -> Result<AlgorithmSet, ConfigError> {
    let Some(names) = names else {
        return Ok(AlgorithmSet::DEFAULT);
    };
    if names.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{what}: the list is empty; name at least one algorithm, or leave it out for the default"
        )));
    }
    names.iter().try_fold(AlgorithmSet::EMPTY, |set, name| {
        Algorithm::from_name(name)
            .map(|a| set.with(a))
            .ok_or_else(|| {
                let known: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
                ConfigError::Invalid(format!(
                    "{what}: unknown algorithm `{name}`; use one of {}",
                    known.join(", ")
                ))
            })
    })
}

/// A clock leeway of `secs` seconds (D-7): at most [`TimeOptions::MAX_LEEWAY`] (60 s); more is
/// an error rather than silently clamped.
pub fn leeway(secs: u64, what: &str) -> Result<Duration, ConfigError> {
    let max = TimeOptions::MAX_LEEWAY.as_secs();
    if secs > max {
        return Err(ConfigError::Invalid(format!(
            "{what} = {secs}: the clock leeway is at most {max} seconds (D-7)"
        )));
    }
    Ok(Duration::from_secs(secs))
}

/// A lifetime of `secs` seconds within `1..=max`.
pub fn lifetime(secs: u64, max: u64, what: &str) -> Result<u64, ConfigError> {
    if secs == 0 || secs > max {
        return Err(ConfigError::Invalid(format!(
            "{what} = {secs}: use 1 to {max} seconds"
        )));
    }
    Ok(secs)
}
