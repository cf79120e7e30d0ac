//! The IdP router that serves token exchange alone (`token_exchange_router`), for a company
//! whose users sign in at an IdP of its own: built without any feature, it exchanges an ID
//! token of that login system for an ID-JAG the authorization server redeems (TX-1, MD-4),
//! publishes metadata without an authorization endpoint, and serves no sign-in pages and no
//! authorization-code grant. Everything goes through the hardened routers in process.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use ema_grant::form::encode_component;
use ema_grant::*;
use ema_id_jag::*;
use ema_jose::{
    Algorithm, Clock, FixedClock, JwkSet, KeyRing, SigningKey, StaticKeySource, UnixTime,
};
use ema_metadata::AuthorizationServerMetadata;
use ema_server::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const IDP: &str = "https://idp.acme.example";
const IDP_TOKEN: &str = "https://idp.acme.example/oauth2/v1/token";
const AS: &str = "https://auth.tasks.example";
const AS_TOKEN: &str = "https://auth.tasks.example/token";
const RESOURCE: &str = "https://mcp.tasks.example/mcp";
const USER: &str = "00u8k2Lq91";
const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

/// The IdP's endpoint paths: custom ones, so that the router provably mounts what the
/// metadata publishes (the authorize path is given but must not be served).
fn paths() -> EndpointPaths {
    EndpointPaths::new(
        "/oauth2/v1/token",
        "/oauth2/v1/keys",
        "/oauth2/v1/authorize",
    )
    .unwrap()
}

struct World {
    idp: Router,
    /// The company's login system, which signs the ID tokens (its own key, not the ID-JAGs').
    login_key: SigningKey,
    idp_keys: Arc<KeyRing>,
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(FixedClock(NOW))
}

fn exchange_grant(login_key: &SigningKey, idp_keys: &Arc<KeyRing>) -> TokenExchangeGrant {
    let clients = ClientRegistry::new([IDP, IDP_TOKEN]).with(RegisteredClient::new(
        "desk-idp-01",
        ClientCredential::secret("idp-secret"),
    ));
    let policy = GroupPolicy::new()
        .with_member(USER, ["eng"])
        .with_rule(GroupRule::new(
            "eng",
            AS,
            ScopeSet::parse("tasks.read").unwrap(),
        ));
    TokenExchangeGrant::builder(
        IdJagIssuer::new(Issuer::new(IDP), idp_keys.clone()),
        StaticKeySource::new()
            .with_issuer(IDP, JwkSet::from_keys([login_key.verifying_key().clone()])),
        policy,
    )
    .client_registry(clients)
    .replay_store(Arc::new(InMemoryReplayStore::new(1000)))
    .token_endpoint(IDP_TOKEN)
    .target(TargetServer::new(AS, [RESOURCE]).with_client("desk-idp-01", "tc_5f2a91"))
    .build()
    .unwrap()
}

fn world() -> World {
    let login_key = SigningKey::generate(Algorithm::ES256, Some("login-k1".into())).unwrap();
    let idp_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("idp-k1".into())).unwrap(),
    ));
    let metadata = token_exchange_metadata_with_paths(IDP, &paths());
    let idp = token_exchange_router(
        exchange_grant(&login_key, &idp_keys),
        idp_keys.clone(),
        &metadata,
        clock(),
    );
    World {
        idp: harden(idp, &Limits::default()),
        login_key,
        idp_keys,
    }
}

/// The MCP authorization server, trusting the IdP's ID-JAG keys as published in `jwks`.
fn authorization_server(jwks: JwkSet) -> Router {
    let mut meta = AuthorizationServerMetadata::new(AS, AS_TOKEN).with_id_jag_profile();
    meta.jwks_uri = Some("https://auth.tasks.example/jwks".into());
    let as_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ));
    let grant = JwtBearerGrant::builder(
        AccessTokenIssuer::new(Issuer::new(AS), as_keys),
        StaticKeySource::new().with_issuer(IDP, jwks),
        Directory::new().with_provisioning(|c| Some(LocalSubject::new(format!("local-{}", c.sub)))),
    )
    .trust(TrustedIssuer::new(IDP))
    .resource(ResourceConfig::new(RESOURCE, ["tasks.read"]))
    .client(RegisteredClient::new(
        "tc_5f2a91",
        ClientCredential::secret("as-secret"),
    ))
    .replay_store(InMemoryReplayStore::new(1000))
    .token_endpoint(AS_TOKEN)
    .build()
    .unwrap();
    harden(
        authorization_server_router(grant, &meta, clock()),
        &Limits::default(),
    )
}

impl World {
    /// An ID token of the company's login system for `USER`, issued to the desk client.
    fn id_token(&self) -> String {
        let claims = json!({
            "iss": IDP, "sub": USER, "aud": "desk-idp-01",
            "iat": NOW.as_secs() - 60, "exp": NOW.as_secs() + 600,
        });
        let header = json!({"typ": "JWT", "kid": "login-k1"});
        self.login_key
            .sign_with_header(
                header.as_object().unwrap().clone(),
                claims.to_string().as_bytes(),
            )
            .unwrap()
    }
}

async fn call(router: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

async fn get(router: &Router, uri: &str) -> (StatusCode, Vec<u8>) {
    let (status, _, body) = call(router, Request::get(uri).body(Body::empty()).unwrap()).await;
    (status, body)
}

fn form_post(uri: &str, body: String, basic: &str) -> Request<Body> {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(basic);
    Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {basic}"))
        .body(Body::from(body))
        .unwrap()
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

/// A token-exchange request body for `subject_token` of `subject_token_type`.
fn exchange_body(subject_token: &str, subject_token_type: &str) -> String {
    format!(
        "grant_type={}&requested_token_type={}&audience={}&resource={}&scope=tasks.read&subject_token={subject_token}&subject_token_type={}",
        encode_component(TOKEN_EXCHANGE),
        encode_component(ID_JAG_TOKEN_TYPE),
        encode_component(AS),
        encode_component(RESOURCE),
        encode_component(subject_token_type),
    )
}

async fn exchange(
    router: &Router,
    subject_token: &str,
    subject_token_type: &str,
) -> (StatusCode, Value) {
    let (status, headers, body) = call(
        router,
        form_post(
            "/oauth2/v1/token",
            exchange_body(subject_token, subject_token_type),
            "desk-idp-01:idp-secret",
        ),
    )
    .await;
    assert_eq!(headers["cache-control"], "no-store", "TX-15");
    (status, json_of(&body))
}

/// TX-1 / MD-4 end to end: the agent's ID token (from the company's login system) becomes an
/// ID-JAG at the exchange-only IdP, verified by the authorization server with the keys the IdP
/// publishes at its `jwks_uri`, and redeemed for an access token for the resource. A SAML 2.0
/// subject token is refused like any unsupported type (no SAML validator here).
#[tokio::test]
async fn tx1_md4_exchange_only_router_serves_token_exchange_end_to_end() {
    let w = world();
    // Discovery: the metadata names the token endpoint and the JWKS.
    let (status, body) = get(&w.idp, "/.well-known/oauth-authorization-server").await;
    assert_eq!(status, StatusCode::OK);
    let meta = AuthorizationServerMetadata::from_json(&body).unwrap();
    assert_eq!(meta.token_endpoint.as_deref(), Some(IDP_TOKEN));
    let jwks_path = meta.jwks_uri.unwrap().strip_prefix(IDP).unwrap().to_owned();
    let (status, jwks) = get(&w.idp, &jwks_path).await;
    assert_eq!(status, StatusCode::OK);
    let jwks = JwkSet::parse(&jwks).unwrap();
    assert_eq!(jwks.keys().len(), 1);
    assert_eq!(
        jwks.keys()[0].kid(),
        Some("idp-k1"),
        "the ID-JAG key, not the login system's"
    );

    let (status, body) = exchange(&w.idp, &w.id_token(), ID_TOKEN_TYPE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["issued_token_type"], ID_JAG_TOKEN_TYPE);
    assert_eq!(body["token_type"], "N_A");
    let id_jag = body["access_token"].as_str().unwrap().to_owned();

    // The authorization server redeems it with the published keys.
    let auth_server = authorization_server(jwks);
    let redeem = format!(
        "grant_type={}&assertion={id_jag}&resource={}",
        encode_component(JWT_BEARER),
        encode_component(RESOURCE)
    );
    let (status, _, body) = call(
        &auth_server,
        form_post("/token", redeem.clone(), "tc_5f2a91:as-secret"),
    )
    .await;
    let body = json_of(&body);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "tasks.read");

    // An ID-JAG signed with a key the IdP does not publish is refused there (control for the
    // JWKS being what verifies it).
    let stranger = authorization_server(JwkSet::from_keys([w.login_key.verifying_key().clone()]));
    let (status, _, body) = call(
        &stranger,
        form_post("/token", redeem, "tc_5f2a91:as-secret"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&body)["error"], "invalid_grant");

    // An ID token the IdP's own ID-JAG key signed is not from the login system: refused.
    let forged = {
        let claims = json!({
            "iss": IDP, "sub": USER, "aud": "desk-idp-01",
            "iat": NOW.as_secs() - 60, "exp": NOW.as_secs() + 600,
        });
        let header = json!({"typ": "JWT", "kid": "idp-k1"});
        w.idp_keys
            .active()
            .sign_with_header(
                header.as_object().unwrap().clone(),
                claims.to_string().as_bytes(),
            )
            .unwrap()
    };
    let (status, body) = exchange(&w.idp, &forged, ID_TOKEN_TYPE).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");

    // TX-3: the SAML 2.0 type without a SAML validator, like any unsupported type.
    let (status, body) = exchange(&w.idp, &w.id_token(), SAML2_TOKEN_TYPE).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["error_description"],
        "subject_token_type is not supported"
    );
}

/// MD-4: the exchange-only metadata publishes the issuer, the token endpoint, the JWKS, the
/// token-exchange grant alone and the ID-JAG token type, and nothing of sign-in: no
/// `authorization_endpoint`, no authorization-code members, no ID-token algorithms. There is no
/// OpenID Connect discovery document.
#[tokio::test]
async fn md4_exchange_only_metadata() {
    let w = world();
    let (status, body) = get(&w.idp, "/.well-known/oauth-authorization-server").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json_of(&body),
        json!({
            "issuer": IDP,
            "token_endpoint": IDP_TOKEN,
            "jwks_uri": "https://idp.acme.example/oauth2/v1/keys",
            "grant_types_supported": [TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "identity_chaining_requested_token_types_supported": [ID_JAG_TOKEN_TYPE],
        })
    );
    let (status, _) = get(&w.idp, "/.well-known/openid-configuration").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The default paths.
    let m = token_exchange_metadata(IDP);
    assert_eq!(
        m.token_endpoint.as_deref(),
        Some("https://idp.acme.example/token")
    );
    assert_eq!(m.jwks_uri.as_deref(), Some("https://idp.acme.example/jwks"));
    assert_eq!(m.authorization_endpoint, None);
}

/// The full IdP's metadata, by contrast, publishes sign-in (positive control for what the
/// exchange-only metadata leaves out).
#[cfg(feature = "sso")]
#[test]
fn md4_full_idp_metadata_publishes_sign_in() {
    let m = idp_metadata_with_paths(IDP, &paths());
    assert_eq!(
        m.authorization_endpoint.as_deref(),
        Some("https://idp.acme.example/oauth2/v1/authorize")
    );
    assert_eq!(
        m.grant_types_supported,
        Some(vec![
            AUTHORIZATION_CODE.to_owned(),
            TOKEN_EXCHANGE.to_owned()
        ])
    );
    assert_eq!(
        m.identity_chaining_requested_token_types_supported,
        Some(vec![ID_JAG_TOKEN_TYPE.to_owned()])
    );
}

/// No sign-in pages (the authorize path 404s whatever the metadata's paths say) and no
/// authorization-code grant at the token endpoint (`unsupported_grant_type`, naming what is
/// served); the token-exchange grant at the same endpoint is the positive control.
#[tokio::test]
async fn exchange_only_router_has_no_login_pages_and_no_code_grant() {
    let w = world();
    let query = format!(
        "/oauth2/v1/authorize?response_type=code&client_id=desk-idp-01&redirect_uri={}&code_challenge=abc&code_challenge_method=S256",
        encode_component("http://127.0.0.1:7777/callback")
    );
    for uri in ["/oauth2/v1/authorize", query.as_str(), "/authorize"] {
        let (status, _) = get(&w.idp, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {uri}");
    }
    let (status, _, _) = call(
        &w.idp,
        form_post(
            "/oauth2/v1/authorize",
            "username=ana&password=ana-password".into(),
            "desk-idp-01:idp-secret",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "POST authorize");

    let code = format!(
        "grant_type=authorization_code&code=abc&redirect_uri={}&code_verifier=dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk",
        encode_component("http://127.0.0.1:7777/callback")
    );
    let (status, _, body) = call(
        &w.idp,
        form_post("/oauth2/v1/token", code, "desk-idp-01:idp-secret"),
    )
    .await;
    let body = json_of(&body);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unsupported_grant_type");
    assert_eq!(
        body["error_description"],
        "this IdP supports token exchange only"
    );

    let (status, body) = exchange(&w.idp, &w.id_token(), ID_TOKEN_TYPE).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Positive control: with the `sso` feature, the full router over the same grant and paths
    // does serve the authorize path (a request without parameters gets its error page).
    #[cfg(feature = "sso")]
    {
        let exchange = exchange_grant(&w.login_key, &w.idp_keys);
        let clients = ClientRegistry::new([IDP, IDP_TOKEN]);
        let sso = SsoProvider::new(Issuer::new(IDP), w.idp_keys.clone(), clients).unwrap();
        let full = IdpRouter::builder(exchange, w.idp_keys.clone())
            .sso(sso)
            .metadata(idp_metadata_with_paths(IDP, &paths()))
            .clock(clock())
            .build()
            .unwrap();
        let (status, _) = get(&full, "/oauth2/v1/authorize").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}

/// MD-4, MD-5: the router builder serves the metadata of the ID-JAG issuer (by default, or as
/// given), and refuses metadata naming another issuer, which clients would reject (MD-5)
/// while the IdP went on signing ID-JAGs as `IDP`.
#[tokio::test]
async fn md5_idp_router_builder_checks_the_metadata_issuer() {
    let w = world();
    let wrong = IdpRouter::builder(
        exchange_grant(&w.login_key, &w.idp_keys),
        w.idp_keys.clone(),
    )
    .metadata(token_exchange_metadata("https://idp.other.example"))
    .build();
    assert_eq!(
        wrong.err(),
        Some(IdpRouterError::IssuerMismatch {
            metadata: "https://idp.other.example".into(),
            id_jag: IDP.into(),
        })
    );

    // Positive controls: the default metadata, and metadata with custom paths for the same
    // issuer, each mounted where it says.
    let default = IdpRouter::builder(
        exchange_grant(&w.login_key, &w.idp_keys),
        w.idp_keys.clone(),
    )
    .clock(clock())
    .build()
    .unwrap();
    let (status, body) = get(&default, "/.well-known/oauth-authorization-server").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body)["token_endpoint"], format!("{IDP}/token"));
    let (status, _) = get(&default, "/jwks").await;
    assert_eq!(status, StatusCode::OK);

    let custom = IdpRouter::builder(
        exchange_grant(&w.login_key, &w.idp_keys),
        w.idp_keys.clone(),
    )
    .metadata(token_exchange_metadata_with_paths(IDP, &paths()))
    .clock(clock())
    .build()
    .unwrap();
    let (status, _) = get(&custom, "/oauth2/v1/keys").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&custom, "/jwks").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The single sign-on provider signs ID tokens under the router's discovery document, so its
/// issuer must be the IdP's; the positive control is the full router of the test above.
#[cfg(feature = "sso")]
#[test]
fn md5_idp_router_builder_checks_the_sso_issuer() {
    let w = world();
    let clients = ClientRegistry::new(["https://login.other.example", IDP_TOKEN]);
    let sso = SsoProvider::new(
        Issuer::new("https://login.other.example"),
        w.idp_keys.clone(),
        clients,
    )
    .unwrap();
    let err = IdpRouter::builder(
        exchange_grant(&w.login_key, &w.idp_keys),
        w.idp_keys.clone(),
    )
    .sso(sso)
    .build()
    .err();
    assert_eq!(
        err,
        Some(IdpRouterError::SsoIssuerMismatch {
            sso: "https://login.other.example".into(),
            id_jag: IDP.into(),
        })
    );
}
