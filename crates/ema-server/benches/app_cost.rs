//! What the HTTP application around the jwt-bearer grant costs, in instructions: a harness to
//! run under `valgrind --tool=callgrind`, which counts the same for the same inputs whatever
//! else the machine is doing. `app_cost MODE N` prepares N token requests, each with a fresh
//! ID-JAG, then serves them in MODE:
//!
//! - `prepare`: nothing more (subtract its count from the others);
//! - `grant`: `JwtBearerGrant::handle` on an `http::Request` (form parsing, client
//!   authentication, the grant, the response body);
//! - `router`: the same requests through `authorization_server_router` + `harden`, with
//!   `tower::ServiceExt::oneshot` on a current-thread runtime, response body collected.
//!
//! `(count(router) - count(grant)) / N` is the application's cost per request. Under plain
//! `cargo bench` (no arguments) it runs each mode once with N = 200 and prints wall times.
//! See docs/benchmarks.md ("where the HTTP cost goes").
#![allow(missing_docs, reason = "a measuring harness, not an API")]
#![allow(clippy::unwrap_used, reason = "harness setup fails loudly")]
#![allow(clippy::expect_used, reason = "harness setup fails loudly")]
#![allow(
    clippy::panic,
    reason = "an unknown mode is a usage error of the harness"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use base64::Engine as _;
use ema_grant::form::encode_component;
use ema_grant::*;
use ema_id_jag::*;
use ema_jose::{Algorithm, FixedClock, KeyRing, SigningKey, StaticKeySource, UnixTime};
use ema_metadata::AuthorizationServerMetadata;
use ema_server::{Limits, authorization_server_router, harden};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
const AS_ISSUER: &str = "https://auth.tasks.example";
const IDP: &str = "https://idp.acme.example";
const RESOURCE: &str = "https://mcp.tasks.example/mcp";

fn grant(idp_keys: &Arc<KeyRing>) -> JwtBearerGrant {
    let as_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ));
    JwtBearerGrant::builder(
        AccessTokenIssuer::new(Issuer::new(AS_ISSUER), as_keys),
        StaticKeySource::new().with_issuer(IDP, idp_keys.jwks()),
        Directory::new().with_subject(
            IDP,
            None,
            "00u8k2Lq91",
            LocalSubject::new("u-17").with_groups(["eng"]),
        ),
    )
    .trust(TrustedIssuer::new(IDP))
    .resource(ResourceConfig::new(RESOURCE, ["tasks.read", "tasks.write"]))
    .client(RegisteredClient::new(
        "tc_5f2a91",
        ClientCredential::secret("s3cr3t"),
    ))
    .token_endpoint("https://auth.tasks.example/token")
    .build()
    .unwrap()
}

fn bodies(idp_keys: &Arc<KeyRing>, n: usize) -> Vec<Vec<u8>> {
    let idp = IdJagIssuer::new(Issuer::new(IDP), idp_keys.clone());
    (0..n)
        .map(|_| {
            let mut g = IdJagGrant::new(
                Subject::new("00u8k2Lq91"),
                Issuer::new(AS_ISSUER),
                ClientId::new("tc_5f2a91"),
            );
            g.resources = vec![Resource::new(RESOURCE)];
            g.scope = Some(ScopeSet::parse("tasks.read tasks.write").unwrap());
            g.amr = Some(vec!["pwd".into(), "otp".into()]);
            g.auth_time = Some(NOW.minus(600));
            let jag = idp.issue(g, NOW.minus(10)).unwrap().token;
            format!(
                "grant_type={}&assertion={jag}&resource={}&scope=tasks.read",
                encode_component(JWT_BEARER),
                encode_component(RESOURCE)
            )
            .into_bytes()
        })
        .collect()
}

fn request<B>(body: B) -> http::Request<B> {
    let basic = base64::engine::general_purpose::STANDARD.encode("tc_5f2a91:s3cr3t");
    http::Request::post("/token")
        .header(http::header::HOST, "auth.tasks.example")
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
        .body(body)
        .unwrap()
}

fn run(mode: &str, n: usize) -> std::time::Duration {
    let idp_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("idp-k1".into())).unwrap(),
    ));
    let bodies = bodies(&idp_keys, n);
    let requests: Vec<http::Request<Vec<u8>>> = bodies.into_iter().map(request).collect();
    let grant = grant(&idp_keys);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    match mode {
        "prepare" => {}
        "grant" => rt.block_on(async {
            for req in &requests {
                let resp = grant.handle(req, NOW).await;
                assert_eq!(resp.status(), 200);
                black_box(resp);
            }
        }),
        "router" => {
            let mut metadata =
                AuthorizationServerMetadata::new(AS_ISSUER, "https://auth.tasks.example/token");
            metadata.jwks_uri = Some("https://auth.tasks.example/jwks".into());
            let app = harden(
                authorization_server_router(grant, &metadata, Arc::new(FixedClock(NOW))),
                &Limits::default(),
            );
            rt.block_on(async {
                for req in requests {
                    let req = req.map(Body::from);
                    let resp = app.clone().oneshot(req).await.unwrap();
                    assert_eq!(resp.status(), 200);
                    let body = resp.into_body().collect().await.unwrap().to_bytes();
                    black_box(body);
                }
            });
        }
        other => panic!("unknown mode {other}: prepare, grant or router"),
    }
    started.elapsed()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.as_slice() {
        [mode, n] => {
            run(mode, n.parse().expect("N"));
        }
        _ => {
            let n = 200;
            for mode in ["grant", "router"] {
                let t = run(mode, n);
                println!(
                    "{mode}: {:.1} us per request",
                    t.as_secs_f64() * 1e6 / n as f64
                );
            }
        }
    }
}
