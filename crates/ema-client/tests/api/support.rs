//! A loopback world: an enterprise IdP and an MCP authorization server running the real
//! `ema-grant` processors, and a mock MCP server, each on its own OS-chosen port on 127.0.0.1.
//! Every request is logged; behaviour is switched with [`Knobs`]. Time is a [`TestClock`]
//! shared by the servers and the client: tests move it, nothing sleeps.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use ema_client::{ClientCredentials, EmaClient, FetchPolicy, IdpConfig, Secret};
use ema_grant::{
    AccessTokenIssuer, AccessTokenValidator, ClientCredential, Form, GroupPolicy, GroupRule,
    InMemoryReplayStore, JwtBearerGrant, RegisteredClient, TargetServer, TokenExchangeGrant,
};
use ema_id_jag::{
    Directory, IdJagIssuer, Issuer, LocalSubject, Resource, ResourceConfig, ScopeSet, TrustedIssuer,
};
use ema_jose::{Algorithm, Clock, JwkSet, KeyRing, SigningKey, StaticKeySource, UnixTime};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// 2026-01-01T00:00:00Z.
pub(crate) const NOW: u64 = 1_767_225_600;

pub(crate) const IDP_CLIENT: &str = "desk-idp-01";
pub(crate) const IDP_SECRET: &str = "idp-s3cr3t";
pub(crate) const CLIENT: &str = "tc_5f2a91";
pub(crate) const SECRET: &str = "s3cr3t";
pub(crate) const PK_CLIENT: &str = "tc_pkjwt_77";
pub(crate) const USER: &str = "00u8k2Lq91";
/// Known to the IdP, in no group: the admin policy denies (D-2 `access_denied`).
pub(crate) const NO_GROUP: &str = "00uN0Gr0up";
/// In group `readers`, allowed `tasks.read` only: the IdP narrows a wider request (TX-9).
pub(crate) const READER: &str = "00uR3ad3r1";

/// A clock the test moves by hand.
#[derive(Debug)]
pub(crate) struct TestClock(AtomicU64);

impl TestClock {
    pub(crate) fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(self.0.load(Ordering::SeqCst))
    }
}

/// What the IdP does instead of its real token exchange.
#[derive(Debug, Clone)]
pub(crate) enum IdpOverride {
    /// Answer this status and JSON body.
    Fixed(u16, Value),
    /// Run the real exchange, then replace `issued_token_type`.
    IssuedType(&'static str),
    /// Answer 200 with an ID-JAG signed by the IdP key with these header and claim overrides
    /// (merged over a correct one; `null` removes).
    Mint { header: Value, claims: Value },
    /// Never answer.
    Hang,
}

/// Switches for the servers.
#[derive(Debug, Clone)]
pub(crate) struct Knobs {
    /// Replaces the AS metadata document.
    pub(crate) as_metadata: Option<Value>,
    /// The well-known paths where the AS serves its metadata.
    pub(crate) as_metadata_paths: Vec<String>,
    /// Pads the AS metadata to this many bytes.
    pub(crate) as_metadata_padding: usize,
    /// Replaces the PRM document.
    pub(crate) prm: Option<Value>,
    /// Where the MCP server serves its PRM.
    pub(crate) prm_path: String,
    /// Whether the `401` challenge names the PRM (`resource_metadata`).
    pub(crate) challenge_names_prm: bool,
    /// `scope` in the `401` challenge.
    pub(crate) challenge_scope: Option<String>,
    /// IdP behaviour.
    pub(crate) idp: Option<IdpOverride>,
    /// Access tokens the MCP server answers with `401 invalid_token`.
    pub(crate) revoked: HashSet<String>,
    /// Revoke the first access token the MCP server sees.
    pub(crate) revoke_first: bool,
    /// Refuse every access token with `401 invalid_token`.
    pub(crate) revoke_all: bool,
    /// Scope `tools/call` requires (`403 insufficient_scope` otherwise).
    pub(crate) tools_call_scope: Option<String>,
}

/// One request the MCP server received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) uri: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Recorded {
    pub(crate) fn contains(&self, needle: &str) -> bool {
        self.uri.contains(needle)
            || self.body.contains(needle)
            || self
                .headers
                .iter()
                .any(|(n, v)| n.contains(needle) || v.contains(needle))
    }

    pub(crate) fn authorization(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v.as_str())
    }
}

/// Everything the servers saw.
#[derive(Debug, Default)]
pub(crate) struct Log {
    /// `"<server> <METHOD> <path>"` per request, in order.
    pub(crate) hits: Vec<String>,
    /// Every request to the MCP server.
    pub(crate) mcp: Vec<Recorded>,
    /// Form bodies of token exchanges at the IdP.
    pub(crate) exchanges: Vec<String>,
    /// ID-JAGs the IdP handed out.
    pub(crate) id_jags: Vec<String>,
    /// Every `assertion` presented at the AS.
    pub(crate) assertions: Vec<String>,
    /// Access tokens the AS issued.
    pub(crate) access_tokens: Vec<String>,
}

type TxGrant = TokenExchangeGrant<StaticKeySource, GroupPolicy, InMemoryReplayStore>;
type AsGrant = JwtBearerGrant<StaticKeySource, Directory, InMemoryReplayStore>;

pub(crate) struct World {
    pub(crate) clock: Arc<TestClock>,
    /// Base URLs, `http://127.0.0.1:<port>`.
    pub(crate) idp: String,
    pub(crate) issuer: String,
    pub(crate) mcp: String,
    /// The MCP server's resource id and URL.
    pub(crate) resource: String,
    pub(crate) idp_keys: Arc<KeyRing>,
    pub(crate) client_key: Arc<SigningKey>,
    tx: TxGrant,
    grant: AsGrant,
    validator: AccessTokenValidator<StaticKeySource>,
    pub(crate) knobs: Mutex<Knobs>,
    pub(crate) log: Mutex<Log>,
}

fn key(kid: &str) -> SigningKey {
    SigningKey::generate(Algorithm::ES256, Some(kid.to_owned())).unwrap()
}

fn merge(mut base: Value, overrides: Value) -> Value {
    if let (Value::Object(b), Value::Object(o)) = (&mut base, overrides) {
        for (k, v) in o {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
    base
}

async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

impl World {
    /// Starts the three servers with default knobs adjusted by `setup`.
    pub(crate) async fn start(setup: impl FnOnce(&mut Knobs)) -> Arc<Self> {
        let (idp_l, idp) = bind().await;
        let (as_l, issuer) = bind().await;
        let (mcp_l, mcp) = bind().await;
        let resource = format!("{mcp}/mcp");
        let other_resource = format!("{mcp}/other");
        let idp_keys = Arc::new(KeyRing::new(key("idp-k1")));
        let as_keys = Arc::new(KeyRing::new(key("as-k1")));
        let client_key = Arc::new(key("client-k1"));
        let scopes = |s: &str| ScopeSet::parse(s).unwrap();

        let tx = TokenExchangeGrant::builder(
            IdJagIssuer::new(Issuer::new(idp.as_str()), idp_keys.clone()),
            StaticKeySource::new().with_issuer(idp.as_str(), idp_keys.jwks()),
            GroupPolicy::new()
                .with_member(USER, ["eng"])
                .with_member(NO_GROUP, Vec::<String>::new())
                .with_member(READER, ["readers"])
                .with_rule(GroupRule::new(
                    "eng",
                    issuer.as_str(),
                    scopes("tasks.read tasks.write"),
                ))
                .with_rule(GroupRule::new(
                    "readers",
                    issuer.as_str(),
                    scopes("tasks.read"),
                )),
        )
        .client(RegisteredClient::new(
            IDP_CLIENT,
            ClientCredential::secret(IDP_SECRET),
        ))
        .replay_store(InMemoryReplayStore::new(10_000))
        // `other_resource` is deliberately not governed by the AS (TX-7 → invalid_target).
        .target(
            TargetServer::new(issuer.as_str(), [resource.clone()]).with_client(IDP_CLIENT, CLIENT),
        )
        .build_typed()
        .unwrap();

        let grant = JwtBearerGrant::builder(
            AccessTokenIssuer::new(Issuer::new(issuer.as_str()), as_keys.clone()),
            StaticKeySource::new().with_issuer(idp.as_str(), idp_keys.jwks()),
            Directory::new().with_provisioning(|c| Some(LocalSubject::new(c.sub.as_str()))),
        )
        .trust(TrustedIssuer::new(idp.as_str()))
        .resource(
            ResourceConfig::new(resource.as_str(), ["tasks.read", "tasks.write"])
                .with_default_scopes(scopes("tasks.read")),
        )
        .resource(ResourceConfig::new(other_resource.as_str(), ["other.read"]))
        .client(RegisteredClient::new(
            CLIENT,
            ClientCredential::secret(SECRET),
        ))
        .client(RegisteredClient::new(
            PK_CLIENT,
            ClientCredential::PrivateKeyJwt {
                keys: Arc::new(JwkSet::from_keys([client_key.verifying_key().clone()])),
            },
        ))
        .replay_store(InMemoryReplayStore::new(10_000))
        .build_typed()
        .unwrap();
        let validator = AccessTokenValidator::new(
            Issuer::new(issuer.as_str()),
            Resource::new(resource.as_str()),
            StaticKeySource::new().with_issuer(issuer.as_str(), as_keys.jwks()),
        );

        let mut knobs = Knobs {
            as_metadata: None,
            as_metadata_paths: vec!["/.well-known/oauth-authorization-server".into()],
            as_metadata_padding: 0,
            prm: None,
            prm_path: "/.well-known/oauth-protected-resource/mcp".into(),
            challenge_names_prm: true,
            challenge_scope: None,
            idp: None,
            revoked: HashSet::new(),
            revoke_first: false,
            revoke_all: false,
            tools_call_scope: None,
        };
        setup(&mut knobs);
        let world = Arc::new(Self {
            clock: Arc::new(TestClock(AtomicU64::new(NOW))),
            idp,
            issuer,
            mcp,
            resource,
            idp_keys,
            client_key,
            tx,
            grant,
            validator,
            knobs: Mutex::new(knobs),
            log: Mutex::new(Log::default()),
        });
        for (listener, router) in [
            (idp_l, Router::new().fallback(idp_handler)),
            (as_l, Router::new().fallback(as_handler)),
            (mcp_l, Router::new().fallback(mcp_handler)),
        ] {
            let router = router.with_state(world.clone());
            tokio::spawn(async move { axum::serve(listener, router).await });
        }
        world
    }

    pub(crate) fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// A good ID token for `sub`, issued to [`IDP_CLIENT`].
    pub(crate) fn id_token_for(&self, sub: &str) -> Secret {
        let now = self.now().as_secs();
        let claims = json!({
            "iss": self.idp, "sub": sub, "aud": IDP_CLIENT,
            "iat": now - 60, "exp": now + 3540, "auth_time": now - 60,
        });
        Secret::new(
            self.idp_keys
                .active()
                .sign_jwt(Some("JWT"), &claims)
                .unwrap(),
        )
    }

    pub(crate) fn id_token(&self) -> Secret {
        self.id_token_for(USER)
    }

    pub(crate) fn server_url(&self) -> url::Url {
        url::Url::parse(&self.resource).unwrap()
    }

    pub(crate) fn idp_config(&self) -> IdpConfig {
        IdpConfig::new(
            self.idp.as_str(),
            format!("{}/token", self.idp),
            ClientCredentials::secret_basic(IDP_CLIENT, IDP_SECRET),
        )
    }

    /// A client with the loopback opt-in, the test clock, and `client_secret_basic` at the AS.
    pub(crate) fn client(&self) -> EmaClient {
        self.client_with(ClientCredentials::secret_basic(CLIENT, SECRET))
    }

    pub(crate) fn client_with(&self, at_as: ClientCredentials) -> EmaClient {
        EmaClient::builder(self.idp_config())
            .fetch_policy(FetchPolicy::insecure_loopback_development())
            .clock(self.clock.clone())
            .authorization_server(self.issuer.as_str(), at_as)
            .build()
            .unwrap()
    }

    pub(crate) fn hits(&self, prefix: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .hits
            .iter()
            .filter(|h| h.starts_with(prefix))
            .count()
    }

    pub(crate) fn knobs(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.knobs.lock().unwrap());
    }

    fn as_metadata(&self) -> Value {
        let knobs = self.knobs.lock().unwrap();
        let mut doc = knobs.as_metadata.clone().unwrap_or_else(|| {
            json!({
                "issuer": self.issuer,
                "token_endpoint": format!("{}/token", self.issuer),
                "jwks_uri": format!("{}/jwks", self.issuer),
                "grant_types_supported": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
                "authorization_grant_profiles_supported": ["urn:ietf:params:oauth:grant-profile:id-jag"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
            })
        });
        if knobs.as_metadata_padding > 0 {
            doc["padding"] = json!("x".repeat(knobs.as_metadata_padding));
        }
        doc
    }

    fn prm(&self) -> Value {
        let knobs = self.knobs.lock().unwrap();
        knobs.prm.clone().unwrap_or_else(|| {
            json!({
                "resource": self.resource,
                "authorization_servers": [self.issuer],
                "scopes_supported": ["tasks.read", "tasks.write"],
                "bearer_methods_supported": ["header"],
            })
        })
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn status(status: u16) -> Response {
    Response::builder()
        .status(status)
        .body(Body::empty())
        .unwrap()
}

fn to_axum(response: http::Response<Vec<u8>>) -> Response {
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::from(body))
}

fn grant_request(method: &Method, headers: &HeaderMap, body: &Bytes) -> http::Request<Vec<u8>> {
    let mut request = http::Request::builder()
        .method(method.as_str())
        .uri("/token");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_bytes());
    }
    request.body(body.to_vec()).unwrap()
}

async fn idp_handler(
    State(world): State<Arc<World>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    world
        .log
        .lock()
        .unwrap()
        .hits
        .push(format!("idp {method} {}", uri.path()));
    if uri.path() != "/token" || method != Method::POST {
        return status(404);
    }
    world
        .log
        .lock()
        .unwrap()
        .exchanges
        .push(String::from_utf8_lossy(&body).into_owned());
    let over = world.knobs.lock().unwrap().idp.clone();
    let now = world.now();
    let response = match over {
        Some(IdpOverride::Fixed(code, body)) => return json_response(code, &body),
        Some(IdpOverride::Hang) => std::future::pending().await,
        Some(IdpOverride::Mint { header, claims }) => {
            let n = now.as_secs();
            let good = json!({
                "iss": world.idp, "sub": USER, "aud": world.issuer, "client_id": CLIENT,
                "jti": ema_jose::random_id().unwrap(), "iat": n, "exp": n + 300,
                "resource": world.resource, "scope": "tasks.read tasks.write",
            });
            let header = merge(json!({"typ": "oauth-id-jag+jwt"}), header);
            let Value::Object(header) = header else {
                unreachable!()
            };
            let token = world
                .idp_keys
                .active()
                .sign_with_header(header, merge(good, claims).to_string().as_bytes())
                .unwrap();
            world.log.lock().unwrap().id_jags.push(token.clone());
            return json_response(
                200,
                &json!({"issued_token_type": "urn:ietf:params:oauth:token-type:id-jag",
                        "access_token": token, "token_type": "N_A", "expires_in": 300}),
            );
        }
        Some(IdpOverride::IssuedType(_)) | None => {
            world
                .tx
                .handle(&grant_request(&method, &headers, &body), now)
                .await
        }
    };
    if response.status() == 200 {
        let mut doc: Value = serde_json::from_slice(response.body()).unwrap();
        if let Some(jag) = doc["access_token"].as_str() {
            world.log.lock().unwrap().id_jags.push(jag.to_owned());
        }
        if let Some(IdpOverride::IssuedType(t)) = over {
            doc["issued_token_type"] = json!(t);
            return json_response(200, &doc);
        }
    }
    to_axum(response)
}

async fn as_handler(
    State(world): State<Arc<World>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    world
        .log
        .lock()
        .unwrap()
        .hits
        .push(format!("as {method} {path}"));
    if method == Method::GET {
        let served = world
            .knobs
            .lock()
            .unwrap()
            .as_metadata_paths
            .contains(&path);
        return if served {
            json_response(200, &world.as_metadata())
        } else {
            status(404)
        };
    }
    if path != "/token" {
        return status(404);
    }
    if let Ok(form) = Form::parse(&body, 1 << 20)
        && let Some(assertion) = form.get("assertion")
    {
        world
            .log
            .lock()
            .unwrap()
            .assertions
            .push(assertion.to_owned());
    }
    let response = world
        .grant
        .handle(&grant_request(&method, &headers, &body), world.now())
        .await;
    if response.status() == 200 {
        let doc: Value = serde_json::from_slice(response.body()).unwrap();
        if let Some(at) = doc["access_token"].as_str() {
            world.log.lock().unwrap().access_tokens.push(at.to_owned());
        }
    }
    to_axum(response)
}

async fn mcp_handler(
    State(world): State<Arc<World>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let recorded = Recorded {
        uri: uri.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    {
        let mut log = world.log.lock().unwrap();
        log.hits.push(format!("mcp {method} {path}"));
        log.mcp.push(recorded);
    }
    let knobs = world.knobs.lock().unwrap().clone();
    if method == Method::GET {
        if path == knobs.prm_path {
            return json_response(200, &world.prm());
        }
        return status(if path == "/mcp" { 405 } else { 404 });
    }
    if method != Method::POST || (path != "/mcp" && path != "/other") {
        return status(405);
    }
    let prm_url = format!("{}{}", world.mcp, knobs.prm_path);
    let challenge = |error: Option<&str>, scope: Option<&str>| {
        let mut c = "Bearer".to_owned();
        let mut params = Vec::new();
        if let Some(e) = error {
            params.push(format!("error=\"{e}\""));
        }
        if let Some(s) = scope {
            params.push(format!("scope=\"{s}\""));
        }
        if knobs.challenge_names_prm {
            params.push(format!("resource_metadata=\"{prm_url}\""));
        }
        if !params.is_empty() {
            c.push(' ');
            c.push_str(&params.join(", "));
        }
        c
    };
    let deny = |code: u16, challenge: String| {
        Response::builder()
            .status(code)
            .header("www-authenticate", challenge)
            .body(Body::empty())
            .unwrap()
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let Some(token) = token else {
        return deny(401, challenge(None, knobs.challenge_scope.as_deref()));
    };
    if knobs.revoke_first {
        let mut k = world.knobs.lock().unwrap();
        k.revoke_first = false;
        k.revoked.insert(token.clone());
    }
    if knobs.revoke_all || world.knobs.lock().unwrap().revoked.contains(&token) {
        return deny(401, challenge(Some("invalid_token"), None));
    }
    let Ok(claims) = world.validator.validate(&token, world.now()).await else {
        return deny(401, challenge(Some("invalid_token"), None));
    };
    let rpc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = rpc.get("id").cloned();
    let rpc_method = rpc.get("method").and_then(Value::as_str).unwrap_or("");
    if rpc_method == "tools/call"
        && let Some(required) = &knobs.tools_call_scope
    {
        let required = ScopeSet::parse(required).unwrap();
        let granted = claims.scope.clone().unwrap_or_default();
        if !required.is_subset(&granted) {
            return deny(
                403,
                challenge(Some("insufficient_scope"), Some(&required.to_string())),
            );
        }
    }
    let Some(id) = id else {
        return status(202);
    };
    let result = match rpc_method {
        "initialize" => json!({
            "protocolVersion": rpc["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "mock-mcp", "version": "1.0.0"},
        }),
        "tools/list" => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
        "tools/call" => json!({"content": [{"type": "text", "text": "ok"}]}),
        _ => json!({}),
    };
    json_response(200, &json!({"jsonrpc": "2.0", "id": id, "result": result}))
}
