//! Token exchange with a SAML subject assertion (feature `saml`) through both IdP routers
//! (TX-3, TX-4, SEC-1): the exchange-only router, and with the `sso` feature the full one.
//! Answered from the blocking pool, while ID-token exchanges stay on the async path; the bearer
//! `Recipient` and single use hold end to end.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use axum::Router;
use axum::body::Body;
use ema_grant::form::encode_component;
use ema_grant::*;
use ema_id_jag::*;
use ema_jose::{Algorithm, Clock, FixedClock, KeyRing, SigningKey, StaticKeySource, UnixTime};
use ema_saml::{AssertionTemplate, SamlAssertionSigner, SamlAssertionValidator};
use ema_server::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const IDP: &str = "https://idp.acme.example";
const TOKEN_ENDPOINT: &str = "https://idp.acme.example/token";
const ENTITY: &str = "https://idp.acme.example/saml";
const SP: &str = "https://desk.acme.example/sp";
const AS: &str = "https://auth.tasks.example";
const RESOURCE: &str = "https://mcp.tasks.example/mcp";
const USER: &str = "00u8k2Lq91";
const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

/// The group policy, remembering the thread each decision ran on.
struct ThreadPolicy {
    inner: GroupPolicy,
    threads: Arc<Mutex<Vec<ThreadId>>>,
}

impl AdminPolicy for ThreadPolicy {
    fn decide(&self, request: &PolicyRequest<'_>) -> impl Future<Output = PolicyDecision> + Send {
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        std::future::ready(self.inner.decide_now(request))
    }
}

struct Idp {
    router: Router,
    keys: Arc<KeyRing>,
    saml_key: Arc<SigningKey>,
    threads: Arc<Mutex<Vec<ThreadId>>>,
}

/// Which IdP router serves the token endpoint.
#[derive(Debug, Clone, Copy)]
enum Kind {
    ExchangeOnly,
    #[cfg(feature = "sso")]
    WithSso,
}

const KINDS: &[Kind] = &[
    Kind::ExchangeOnly,
    #[cfg(feature = "sso")]
    Kind::WithSso,
];

fn idp(kind: Kind) -> Idp {
    let keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("idp-k1".into())).unwrap(),
    ));
    let saml_key = Arc::new(SigningKey::generate(Algorithm::ES256, None).unwrap());
    let clients = ClientRegistry::new([IDP, TOKEN_ENDPOINT]).with(RegisteredClient::new(
        "desk-idp-01",
        ClientCredential::secret("idp-secret"),
    ));
    let threads = Arc::new(Mutex::new(Vec::new()));
    let policy = ThreadPolicy {
        inner: GroupPolicy::new()
            .with_member(USER, ["eng"])
            .with_rule(GroupRule::new(
                "eng",
                AS,
                ScopeSet::parse("tasks.read").unwrap(),
            )),
        threads: threads.clone(),
    };
    let validator = SamlAssertionValidator::new(ENTITY)
        .with_key(saml_key.verifying_key().clone())
        .with_audience(SP, "desk-idp-01")
        .with_recipient(TOKEN_ENDPOINT);
    #[cfg(feature = "sso")]
    let sso = SsoProvider::new(Issuer::new(IDP), keys.clone(), clients.clone()).unwrap();
    let exchange = TokenExchangeGrant::builder(
        IdJagIssuer::new(Issuer::new(IDP), keys.clone()),
        StaticKeySource::new().with_issuer(IDP, keys.jwks()),
        policy,
    )
    .client_registry(clients)
    .replay_store(Arc::new(InMemoryReplayStore::new(1000)))
    .token_endpoint(TOKEN_ENDPOINT)
    .target(TargetServer::new(AS, [RESOURCE]).with_client("desk-idp-01", "tc_5f2a91"))
    .saml_assertions(validator)
    .build()
    .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(FixedClock(NOW));
    let router = match kind {
        Kind::ExchangeOnly => {
            token_exchange_router(exchange, keys.clone(), &token_exchange_metadata(IDP), clock)
        }
        #[cfg(feature = "sso")]
        Kind::WithSso => IdpRouter::builder(exchange, keys.clone())
            .sso(sso)
            .clock(clock)
            .build()
            .unwrap(),
    };
    Idp {
        router,
        keys,
        saml_key,
        threads,
    }
}

impl Idp {
    fn saml(&self, recipient: &str) -> String {
        SamlAssertionSigner::new(ENTITY, self.saml_key.clone())
            .sign_base64url(&AssertionTemplate::new(USER, SP, NOW).with_recipient(recipient))
            .unwrap()
    }

    fn id_token(&self) -> String {
        let claims = json!({
            "iss": IDP, "sub": USER, "aud": "desk-idp-01",
            "iat": NOW.as_secs() - 60, "exp": NOW.as_secs() + 600,
        });
        let header = json!({"typ": "JWT", "kid": "idp-k1"});
        self.keys
            .active()
            .sign_with_header(
                header.as_object().unwrap().clone(),
                claims.to_string().as_bytes(),
            )
            .unwrap()
    }

    async fn exchange(&self, token: &str, token_type: &str) -> (StatusCode, Value) {
        let body = format!(
            "grant_type={}&requested_token_type={}&audience={}&resource={}&subject_token={token}&subject_token_type={}",
            encode_component(TOKEN_EXCHANGE),
            encode_component(ID_JAG_TOKEN_TYPE),
            encode_component(AS),
            encode_component(RESOURCE),
            encode_component(token_type),
        );
        let basic = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode("desk-idp-01:idp-secret")
        };
        let req = Request::post("/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {basic}"))
            .body(Body::from(body))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn last_thread(&self) -> ThreadId {
        *self.threads.lock().unwrap().last().unwrap()
    }
}

/// TX-3: on a single-threaded runtime, an ID-token exchange is decided on the runtime's own
/// thread, a SAML one on another (the blocking pool); both get an ID-JAG.
#[tokio::test]
async fn tx3_saml_exchange_runs_on_the_blocking_pool() {
    for &kind in KINDS {
        let idp = idp(kind);
        let here = std::thread::current().id();
        let (status, body) = idp.exchange(&idp.id_token(), ID_TOKEN_TYPE).await;
        assert_eq!(status, StatusCode::OK, "{kind:?}: {body}");
        assert_eq!(
            idp.last_thread(),
            here,
            "{kind:?}: ID tokens stay on the async path"
        );

        let (status, body) = idp
            .exchange(&idp.saml(TOKEN_ENDPOINT), SAML2_TOKEN_TYPE)
            .await;
        assert_eq!(status, StatusCode::OK, "{kind:?}: {body}");
        assert_eq!(body["issued_token_type"], ID_JAG_TOKEN_TYPE);
        assert_ne!(
            idp.last_thread(),
            here,
            "{kind:?}: SAML runs on the blocking pool"
        );
    }
}

/// TX-4 / SEC-1 / D-1 through the router: another `Recipient` is `invalid_grant`, and an
/// assertion exchanged once is refused the second time.
#[tokio::test]
async fn tx4_sec1_saml_recipient_and_replay_through_the_router() {
    for &kind in KINDS {
        tx4_sec1_saml_recipient_and_replay(idp(kind)).await;
    }
}

async fn tx4_sec1_saml_recipient_and_replay(idp: Idp) {
    let (status, body) = idp
        .exchange(&idp.saml("https://desk.acme.example/acs"), SAML2_TOKEN_TYPE)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");

    let token = idp.saml(TOKEN_ENDPOINT);
    let (status, body) = idp.exchange(&token, SAML2_TOKEN_TYPE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = idp.exchange(&token, SAML2_TOKEN_TYPE).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "this SAML assertion was already used; obtain a new one from the IdP"
    );
}
