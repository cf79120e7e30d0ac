//! Client authentication at both token endpoints over HTTP (D-24, D-11, AS-20, TX-2): each
//! client has one `token_endpoint_auth_method`; credentials presented any other way, and HTTP
//! Basic credentials that cannot be read, are 401 `invalid_client` with a `Basic` challenge.
//! Every refusal has a positive control that gets a token from the same fixture.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use ema_grant::form::encode_component;
use ema_grant::*;
use ema_id_jag::*;
use ema_jose::{Algorithm, JwkSet, KeyRing, SigningKey, StaticKeySource, random_id};
use ema_metadata::AuthorizationServerMetadata;
use ema_server::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AS, IDP, NOW, RESOURCE, clock};

const IDP_TOKEN: &str = "https://idp.acme.example/token";
const AS_TOKEN: &str = "https://auth.tasks.example/token";
const USER: &str = "00u8k2Lq91";

/// Registered for `client_secret_basic` (the default for a secret) at both servers.
const BASIC: &str = "c-basic";
const BASIC_SECRET: &str = "basic-s3cret-Qv7";
/// Registered for `client_secret_post` at both servers.
const POST: &str = "c-post";
const POST_SECRET: &str = "post-s3cret-Jm4";
/// Registered for `private_key_jwt` at both servers.
const PK: &str = "c-pk";

/// One of the two token endpoints.
#[derive(Clone, Copy, Debug)]
enum At {
    Idp,
    As,
}

struct Fixture {
    idp: Router,
    auth_server: Router,
    idp_keys: Arc<KeyRing>,
    client_key: SigningKey,
}

/// The same three clients, one per method, at the IdP and at the AS.
fn registry(audiences: [&str; 2], client_key: &SigningKey) -> ClientRegistry {
    ClientRegistry::new(audiences)
        .with(RegisteredClient::new(
            BASIC,
            ClientCredential::secret(BASIC_SECRET),
        ))
        .with(
            RegisteredClient::new(POST, ClientCredential::secret(POST_SECRET))
                .with_auth_method(AuthMethod::ClientSecretPost)
                .unwrap(),
        )
        .with(RegisteredClient::new(
            PK,
            ClientCredential::PrivateKeyJwt {
                keys: Arc::new(JwkSet::from_keys([client_key.verifying_key().clone()])),
            },
        ))
}

fn fixture() -> Fixture {
    let idp_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("idp-k1".into())).unwrap(),
    ));
    let as_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ));
    let client_key = SigningKey::generate(Algorithm::ES256, Some("client-k1".into())).unwrap();

    let idp_clients = registry([IDP, IDP_TOKEN], &client_key);
    let sso = SsoProvider::new(Issuer::new(IDP), idp_keys.clone(), idp_clients.clone()).unwrap();
    let policy = GroupPolicy::new()
        .with_member(USER, ["eng"])
        .with_rule(GroupRule::new(
            "eng",
            AS,
            ScopeSet::parse("tasks.read").unwrap(),
        ));
    let mut target = TargetServer::new(AS, [RESOURCE]);
    for client in [BASIC, POST, PK] {
        target = target.with_client(client, client);
    }
    let exchange = TokenExchangeGrant::builder(
        IdJagIssuer::new(Issuer::new(IDP), idp_keys.clone()),
        StaticKeySource::new().with_issuer(IDP, idp_keys.jwks()),
        policy,
    )
    .client_registry(idp_clients)
    .replay_store(Arc::new(InMemoryReplayStore::new(1000)))
    .token_endpoint(IDP_TOKEN)
    .target(target)
    .build()
    .unwrap();
    let idp = IdpRouter::builder(exchange, idp_keys.clone())
        .sso(sso)
        .metadata(idp_metadata(IDP))
        .clock(clock())
        .build()
        .unwrap();

    let grant = JwtBearerGrant::builder(
        AccessTokenIssuer::new(Issuer::new(AS), as_keys),
        StaticKeySource::new().with_issuer(IDP, idp_keys.jwks()),
        Directory::new().with_provisioning(|c| Some(LocalSubject::new(c.sub.as_str()))),
    )
    .trust(TrustedIssuer::new(IDP))
    .resource(
        ResourceConfig::new(RESOURCE, ["tasks.read"])
            .with_default_scopes(ScopeSet::parse("tasks.read").unwrap()),
    )
    .client_registry(registry([AS, AS_TOKEN], &client_key))
    .replay_store(InMemoryReplayStore::new(1000))
    .token_endpoint(AS_TOKEN)
    .build()
    .unwrap();
    let metadata = AuthorizationServerMetadata::new(AS, AS_TOKEN).with_id_jag_profile();
    let auth_server = authorization_server_router(grant, &metadata, clock());
    Fixture {
        idp: harden(idp, &Limits::default()),
        auth_server: harden(auth_server, &Limits::default()),
        idp_keys,
        client_key,
    }
}

/// How a request presents client credentials.
enum Cred<'a> {
    /// `Authorization: Basic` of `id:secret`, each form-urlencoded (D-11).
    Basic(&'a str, &'a str),
    /// An `Authorization` header exactly as given.
    Header(String),
    /// `client_id` and `client_secret` in the body.
    Post(&'a str, &'a str),
    /// A `private_key_jwt` assertion of [`PK`] (plus `client_id`).
    Assertion,
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl Fixture {
    /// An ID token of [`USER`] issued to `client` (the subject of a token exchange).
    fn id_token(&self, client: &str) -> String {
        let claims = json!({
            "iss": IDP, "sub": USER, "aud": client, "iat": NOW.as_secs() - 60,
            "exp": NOW.as_secs() + 540, "auth_time": NOW.as_secs() - 60,
        });
        self.idp_keys
            .active()
            .sign_jwt(Some("JWT"), &claims)
            .unwrap()
    }

    /// An ID-JAG from the IdP for `client` at the AS.
    fn id_jag(&self, client: &str) -> String {
        let issuer = IdJagIssuer::new(Issuer::new(IDP), self.idp_keys.clone());
        let mut grant = IdJagGrant::new(Subject::new(USER), Issuer::new(AS), ClientId::new(client));
        grant.scope = Some(ScopeSet::parse("tasks.read").unwrap());
        issuer.issue(grant, NOW).unwrap().token
    }

    /// A fresh `private_key_jwt` assertion of [`PK`] for the token endpoint `audience`.
    fn assertion(&self, audience: &str) -> String {
        let claims = json!({
            "iss": PK, "sub": PK, "aud": audience, "jti": random_id().unwrap(),
            "iat": NOW.as_secs(), "exp": NOW.as_secs() + 60,
        });
        self.client_key
            .sign_jwt(Some("client-authentication+jwt"), &claims)
            .unwrap()
    }

    /// A good token request of `client` at `at`, authenticated by `cred`.
    fn request(&self, at: At, client: &str, cred: &Cred<'_>) -> Request<Body> {
        let (mut body, endpoint) = match at {
            At::Idp => (
                format!(
                    "grant_type={}&requested_token_type={}&audience={}&resource={}&scope=tasks.read&subject_token={}&subject_token_type={}",
                    encode_component(TOKEN_EXCHANGE),
                    encode_component(ID_JAG_TOKEN_TYPE),
                    encode_component(AS),
                    encode_component(RESOURCE),
                    self.id_token(client),
                    encode_component(ID_TOKEN_TYPE),
                ),
                IDP_TOKEN,
            ),
            At::As => (
                format!(
                    "grant_type={}&assertion={}&resource={}",
                    encode_component(JWT_BEARER),
                    self.id_jag(client),
                    encode_component(RESOURCE)
                ),
                AS_TOKEN,
            ),
        };
        let mut req =
            Request::post("/token").header("content-type", "application/x-www-form-urlencoded");
        match cred {
            Cred::Basic(id, secret) => {
                let pair = format!("{}:{}", encode_component(id), encode_component(secret));
                req = req.header("authorization", format!("Basic {}", b64(&pair)));
            }
            Cred::Header(value) => req = req.header("authorization", value.as_str()),
            Cred::Post(id, secret) => {
                body.push_str(&format!(
                    "&client_id={}&client_secret={}",
                    encode_component(id),
                    encode_component(secret)
                ));
            }
            Cred::Assertion => {
                body.push_str(&format!(
                    "&client_id={PK}&client_assertion_type={}&client_assertion={}",
                    encode_component(CLIENT_ASSERTION_TYPE),
                    self.assertion(endpoint)
                ));
            }
        }
        req.body(Body::from(body)).unwrap()
    }

    fn router(&self, at: At) -> &Router {
        match at {
            At::Idp => &self.idp,
            At::As => &self.auth_server,
        }
    }
}

/// What the client and the server's log see of one response.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Value,
    raw: String,
    /// The log-only cause of the [`OAuthError`] the response carries, never sent.
    detail: Option<String>,
}

async fn send(fx: &Fixture, at: At, req: Request<Body>) -> Answer {
    let resp = fx.router(at).clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let detail = resp
        .extensions()
        .get::<OAuthError>()
        .and_then(|e| e.cause())
        .map(ToString::to_string);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        raw,
        detail,
    }
}

/// The request succeeds: a token comes back (the positive control).
async fn assert_token(fx: &Fixture, at: At, client: &str, cred: &Cred<'_>) {
    let a = send(fx, at, fx.request(at, client, cred)).await;
    assert_eq!(a.status, StatusCode::OK, "{at:?} {client}: {}", a.raw);
    assert!(a.body["access_token"].is_string(), "{at:?}: {}", a.raw);
}

/// The request is refused with 401 `invalid_client`, a `Basic` challenge and no echo of the
/// credentials (AS-20, TX-2, D-11, SEC-10). Returns the log-only reason.
async fn assert_invalid_client(
    fx: &Fixture,
    at: At,
    client: &str,
    cred: &Cred<'_>,
    case: &str,
) -> String {
    let a = send(fx, at, fx.request(at, client, cred)).await;
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{at:?} {case}: {}",
        a.raw
    );
    let challenge = a.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Basic realm="),
        "{at:?} {case}: {challenge}"
    );
    assert_eq!(a.headers["cache-control"], "no-store");
    for secret in [BASIC_SECRET, POST_SECRET] {
        assert!(!a.raw.contains(secret), "{at:?} {case}: secret echoed");
    }
    let detail = a.detail.unwrap_or_default();
    assert!(!detail.is_empty(), "{at:?} {case}: no log reason");
    assert!(!a.raw.contains(&detail), "{at:?} {case}: log reason sent");
    detail
}

const BOTH: [At; 2] = [At::Idp, At::As];

#[tokio::test]
async fn d24_malformed_basic_credentials_are_401_invalid_client() {
    let fx = fixture();
    let malformed = [
        ("not base64", "Basic !!not*base64!!".to_owned()),
        (
            "no colon",
            format!("Basic {}", b64(&format!("{BASIC}{BASIC_SECRET}"))),
        ),
        (
            "not form-urldecodable",
            format!("Basic {}", b64(&format!("{BASIC}%zz:{BASIC_SECRET}"))),
        ),
        (
            "secret not form-urldecodable",
            format!("Basic {}", b64(&format!("{BASIC}:{BASIC_SECRET}%G"))),
        ),
        (
            "empty id",
            format!("Basic {}", b64(&format!(":{BASIC_SECRET}"))),
        ),
        ("no credentials", "Basic".to_owned()),
        (
            "not UTF-8",
            format!("Basic {}", {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode([0xff, b':', b'x'])
            }),
        ),
    ];
    for at in BOTH {
        // Positive control: the same request with readable credentials.
        assert_token(&fx, at, BASIC, &Cred::Basic(BASIC, BASIC_SECRET)).await;
        for (case, header) in &malformed {
            let detail =
                assert_invalid_client(&fx, at, BASIC, &Cred::Header(header.clone()), case).await;
            assert!(detail.contains("malformed HTTP Basic"), "{case}: {detail}");
        }
    }
}

#[tokio::test]
async fn d11_basic_credentials_are_form_urldecoded_before_checking() {
    // Positive control for the percent-decoding rows: `%2D` is `-`, and a decoded id and
    // secret authenticate the same client.
    let fx = fixture();
    for at in BOTH {
        let encoded = format!(
            "Basic {}",
            b64(&format!("c%2Dbasic:{}", BASIC_SECRET.replace('-', "%2D")))
        );
        let a = send(&fx, at, fx.request(at, BASIC, &Cred::Header(encoded))).await;
        assert_eq!(a.status, StatusCode::OK, "{at:?}: {}", a.raw);
    }
}

#[tokio::test]
async fn d24_basic_client_sending_its_secret_in_the_body_is_refused() {
    let fx = fixture();
    for at in BOTH {
        assert_token(&fx, at, BASIC, &Cred::Basic(BASIC, BASIC_SECRET)).await;
        let detail = assert_invalid_client(
            &fx,
            at,
            BASIC,
            &Cred::Post(BASIC, BASIC_SECRET),
            "client_secret_basic client, secret in the body",
        )
        .await;
        // The log says which method the client is registered for.
        assert_eq!(
            detail,
            "client is registered for client_secret_basic, not client_secret_post"
        );
    }
}

#[tokio::test]
async fn d24_post_client_using_basic_is_refused() {
    let fx = fixture();
    for at in BOTH {
        assert_token(&fx, at, POST, &Cred::Post(POST, POST_SECRET)).await;
        let detail = assert_invalid_client(
            &fx,
            at,
            POST,
            &Cred::Basic(POST, POST_SECRET),
            "client_secret_post client, HTTP Basic",
        )
        .await;
        assert_eq!(
            detail,
            "client is registered for client_secret_post, not client_secret_basic"
        );
    }
}

#[tokio::test]
async fn d24_private_key_jwt_client_sending_a_secret_is_refused() {
    let fx = fixture();
    for at in BOTH {
        assert_token(&fx, at, PK, &Cred::Assertion).await;
        // Any secret, the other clients' included: the method is wrong before the secret is.
        for (cred, used) in [
            (Cred::Basic(PK, BASIC_SECRET), "client_secret_basic"),
            (Cred::Post(PK, POST_SECRET), "client_secret_post"),
        ] {
            let detail = assert_invalid_client(&fx, at, PK, &cred, used).await;
            assert_eq!(
                detail,
                format!("client is registered for private_key_jwt, not {used}")
            );
        }
    }
}

#[tokio::test]
async fn as20_another_authorization_scheme_is_invalid_client() {
    // Decision: any `Authorization` header at a token endpoint is an attempt at client
    // authentication; a scheme other than Basic is an unsupported method, so RFC 6749 §5.2's
    // `invalid_client` (401, with the `Basic` challenge naming the scheme that works).
    let fx = fixture();
    for at in BOTH {
        assert_token(&fx, at, BASIC, &Cred::Basic(BASIC, BASIC_SECRET)).await;
        for header in [
            "Bearer some-access-token",
            "Digest username=\"c-basic\"",
            "DPoP x",
        ] {
            let detail =
                assert_invalid_client(&fx, at, BASIC, &Cred::Header(header.into()), header).await;
            assert!(
                detail.contains("unsupported Authorization scheme"),
                "{detail}"
            );
        }
    }
}

#[tokio::test]
async fn tx2_request_errors_stay_invalid_request() {
    // Two methods at once, or a wrong `client_assertion_type`, are malformed requests (400
    // `invalid_request`), not failed authentications.
    let fx = fixture();
    for at in BOTH {
        assert_token(&fx, at, BASIC, &Cred::Basic(BASIC, BASIC_SECRET)).await;
        assert_token(&fx, at, PK, &Cred::Assertion).await;
        let pair = format!("Basic {}", b64(&format!("{BASIC}:{BASIC_SECRET}")));
        let both = {
            let mut req = fx.request(at, BASIC, &Cred::Post(BASIC, BASIC_SECRET));
            req.headers_mut()
                .insert("authorization", pair.parse().unwrap());
            req
        };
        let wrong_type = {
            let req = fx.request(at, PK, &Cred::Assertion);
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let text = String::from_utf8(bytes.to_vec()).unwrap().replace(
                "client-assertion-type%3Ajwt-bearer",
                "client-assertion-type%3Asaml2-bearer",
            );
            Request::from_parts(parts, Body::from(text))
        };
        for (case, req) in [
            ("two methods", both),
            ("wrong client_assertion_type", wrong_type),
        ] {
            let a = send(&fx, at, req).await;
            assert_eq!(
                (a.status, a.body["error"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_request")),
                "{at:?} {case}: {}",
                a.raw
            );
        }
    }
}
