//! Remote JWKS (SEC-3, AS-4, EMA §7.4.1, D-22): cache lifetime, single-flight refetch on unknown
//! `kid`, last good set on failure, no rollback, kid-less lookups only against one key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use ema_jose::{Algorithm, JwkSet, KeyLookupError, KeySource, SigningKey, VerifyingKey};
use ema_jwks::{FetchError, FetchPolicy, HttpFetcher, JwksCachePolicy, RemoteJwks};
use ema_metadata::UrlError;

use crate::support::{NOW, TestClock, serve, test_clock};

const ISSUER: &str = "https://idp.acme.example";

/// A JWKS endpoint whose document, status and `Cache-Control` the test sets, counting fetches.
#[derive(Default)]
struct Endpoint {
    doc: Mutex<(u16, String, Option<String>)>,
    fetches: AtomicUsize,
}

impl Endpoint {
    fn set(&self, status: u16, keys: &[&Arc<VerifyingKey>], cache_control: Option<&str>) {
        let set = JwkSet::from_keys(keys.iter().map(|k| (*k).clone()));
        *self.doc.lock().unwrap() = (
            status,
            set.to_public_json().to_string(),
            cache_control.map(str::to_owned),
        );
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn jwks(State(ep): State<Arc<Endpoint>>) -> Response {
    ep.fetches.fetch_add(1, Ordering::SeqCst);
    let (status, body, cache) = ep.doc.lock().unwrap().clone();
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(c) = cache {
        response = response.header("cache-control", c);
    }
    response.body(Body::from(body)).unwrap()
}

fn key(kid: &str) -> Arc<VerifyingKey> {
    SigningKey::generate(Algorithm::ES256, Some(kid.into()))
        .unwrap()
        .verifying_key()
        .clone()
}

async fn setup(policy: JwksCachePolicy) -> (Arc<Endpoint>, Arc<TestClock>, RemoteJwks) {
    let ep = Arc::new(Endpoint::default());
    let base = serve(
        Router::new()
            .route("/jwks", get(jwks))
            .with_state(ep.clone()),
    )
    .await;
    let clock = Arc::new(test_clock(NOW));
    let source = RemoteJwks::new(
        HttpFetcher::new(FetchPolicy::insecure_loopback_development()).unwrap(),
        clock.clone(),
    )
    .with_policy(policy)
    .with_issuer(ISSUER, &format!("{base}/jwks"))
    .unwrap();
    (ep, clock, source)
}

async fn kid(source: &RemoteJwks, kid: &str) -> Result<Arc<VerifyingKey>, KeyLookupError> {
    source.resolve(ISSUER, Some(kid), Algorithm::ES256).await
}

#[tokio::test]
async fn jwks_uri_must_pass_the_fetch_policy() {
    // MD-8: JWKS over https only, unless loopback is explicitly allowed.
    let strict = RemoteJwks::new(
        HttpFetcher::new(FetchPolicy::new()).unwrap(),
        Arc::new(test_clock(NOW)),
    );
    assert!(matches!(
        strict
            .with_issuer(ISSUER, "http://127.0.0.1:1/jwks")
            .unwrap_err(),
        FetchError::Url(UrlError::NotHttps { .. })
    ));
}

#[tokio::test]
async fn cache_honours_max_age_within_bounds() {
    let (ep, clock, source) = setup(JwksCachePolicy::new()).await;
    let a = key("a");
    ep.set(200, &[&a], Some("public, max-age=120"));
    assert_eq!(
        kid(&source, "a").await.unwrap().thumbprint(),
        a.thumbprint()
    );
    assert_eq!(ep.fetches(), 1);
    clock.advance(119);
    kid(&source, "a").await.unwrap();
    assert_eq!(ep.fetches(), 1, "still fresh");
    clock.advance(1);
    kid(&source, "a").await.unwrap();
    assert_eq!(ep.fetches(), 2, "stale after max-age");

    // A max-age above the upper bound is clamped to it.
    ep.set(200, &[&a], Some("max-age=31536000"));
    clock.advance(120);
    kid(&source, "a").await.unwrap();
    assert_eq!(ep.fetches(), 3);
    clock.advance(24 * 3600 - 1);
    kid(&source, "a").await.unwrap();
    assert_eq!(ep.fetches(), 3);
    clock.advance(1);
    kid(&source, "a").await.unwrap();
    assert_eq!(ep.fetches(), 4, "clamped to 24 h");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec3_unknown_kid_storm_causes_exactly_one_fetch() {
    let (ep, clock, source) = setup(JwksCachePolicy::new()).await;
    let (a, b) = (key("a"), key("b"));
    ep.set(200, &[&a], Some("max-age=3600"));
    kid(&source, "a").await.unwrap();
    assert_eq!(ep.fetches(), 1);

    // The IdP rotates in `b`; past the minimum interval, 1000 concurrent lookups of the new
    // `kid` share one fetch (single flight).
    ep.set(200, &[&a, &b], Some("max-age=3600"));
    clock.advance(61);
    let lookups: Vec<_> = (0..1000)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move { kid(&source, "b").await })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(lookup.await.unwrap().unwrap().kid(), Some("b"));
    }
    assert_eq!(ep.fetches(), 2, "one refetch for 1000 unknown-kid lookups");

    // SEC-3: a `kid` nobody publishes: at most one refetch per interval, so within it, none.
    let lookups: Vec<_> = (0..1000)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move { kid(&source, "forged").await })
        })
        .collect();
    for lookup in lookups {
        assert!(matches!(
            lookup.await.unwrap(),
            Err(KeyLookupError::UnknownKid { .. })
        ));
    }
    assert_eq!(
        ep.fetches(),
        2,
        "rate-limited: no refetch inside the interval"
    );

    // After the interval, one more refetch for the whole storm.
    clock.advance(60);
    let lookups: Vec<_> = (0..1000)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move { kid(&source, "forged").await })
        })
        .collect();
    for lookup in lookups {
        assert!(lookup.await.unwrap().is_err());
    }
    assert_eq!(ep.fetches(), 3);
}

/// D-22 through the remote cache: a kid-less lookup is answered only while the issuer publishes
/// exactly one usable key (that fits the algorithm); with two, of any type, `kid` is required.
#[tokio::test]
async fn d22_kid_less_lookup_needs_a_one_key_remote_set() {
    let (ep, clock, source) = setup(JwksCachePolicy::new()).await;
    let ec = key("ec");
    let rsa = SigningKey::generate(Algorithm::RS256, Some("rsa".into()))
        .unwrap()
        .verifying_key()
        .clone();
    let kid_less = || source.resolve(ISSUER, None, Algorithm::ES256);
    // Control: one key answers a kid-less ES256 lookup.
    ep.set(200, &[&ec], Some("max-age=3600"));
    assert_eq!(kid_less().await.unwrap().kid(), Some("ec"));
    // The issuer adds an RSA key: only the EC key fits ES256, but two keys are two keys.
    ep.set(200, &[&ec, &rsa], Some("max-age=3600"));
    clock.advance(3600);
    let err = kid_less().await.unwrap_err();
    assert_eq!(err, KeyLookupError::KidRequired { keys: 2 });
    assert!(err.to_string().contains("2 usable keys"), "{err}");
    // Control: the same set answers a lookup with `kid`.
    assert_eq!(kid(&source, "ec").await.unwrap().kid(), Some("ec"));
    // The issuer retires the RSA key; past the refetch interval a kid-less lookup refetches
    // (rate-limited like an unknown `kid`) and is answered again.
    ep.set(200, &[&ec], Some("max-age=3600"));
    clock.advance(61);
    assert_eq!(kid_less().await.unwrap().kid(), Some("ec"));
    assert_eq!(ep.fetches(), 3);
}

#[tokio::test]
async fn last_good_key_set_survives_failed_fetches() {
    let (ep, clock, source) = setup(JwksCachePolicy::new()).await;
    let a = key("a");
    ep.set(200, &[&a], Some("max-age=60"));
    kid(&source, "a").await.unwrap();
    // The endpoint breaks; the cache goes stale; the refetch fails; the last good set stays.
    *ep.doc.lock().unwrap() = (503, "down".into(), None);
    clock.advance(61);
    assert_eq!(kid(&source, "a").await.unwrap().kid(), Some("a"));
    assert_eq!(ep.fetches(), 2);
    // Malformed documents are failures too, not empty key sets.
    *ep.doc.lock().unwrap() = (200, "{\"not\":\"a jwks\"}".into(), None);
    clock.advance(61);
    assert_eq!(kid(&source, "a").await.unwrap().kid(), Some("a"));
    assert_eq!(ep.fetches(), 3);
    assert!(source.cached(ISSUER).is_some());
}

#[tokio::test]
async fn unavailable_only_when_nothing_good_was_ever_fetched() {
    let (ep, clock, source) = setup(JwksCachePolicy::new()).await;
    *ep.doc.lock().unwrap() = (500, "oops".into(), None);
    let err = kid(&source, "a").await.unwrap_err();
    assert!(
        matches!(&err, KeyLookupError::Unavailable { reason } if reason.contains("500")),
        "{err:?}"
    );
    // Rate-limited: the next lookup inside the interval does not fetch again.
    assert!(matches!(
        kid(&source, "a").await,
        Err(KeyLookupError::Unavailable { .. })
    ));
    assert_eq!(ep.fetches(), 1);
    // Recovery once the endpoint is back and the interval has passed.
    let a = key("a");
    ep.set(200, &[&a], None);
    clock.advance(60);
    assert!(kid(&source, "a").await.is_ok());
    assert_eq!(
        source
            .resolve("https://unknown.example", Some("a"), Algorithm::ES256)
            .await
            .unwrap_err(),
        KeyLookupError::UnknownIssuer {
            issuer: "https://unknown.example".into()
        }
    );
}

#[tokio::test]
async fn ema_7_4_1_removed_keys_are_never_reinstated() {
    let (ep, clock, source) = setup(
        JwksCachePolicy::new().with_ttl_bounds(Duration::from_secs(60), Duration::from_secs(60)),
    )
    .await;
    let (a, b) = (key("a"), key("b"));
    ep.set(200, &[&a, &b], None);
    kid(&source, "a").await.unwrap();
    let v1 = source.key_set_version(ISSUER);

    // A newer response drops `a` (rotated out, perhaps compromised).
    ep.set(200, &[&b], None);
    clock.advance(61);
    kid(&source, "b").await.unwrap();
    assert!(matches!(
        kid(&source, "a").await,
        Err(KeyLookupError::UnknownKid { .. })
    ));
    let v2 = source.key_set_version(ISSUER);
    assert_ne!(v1, v2, "the version moves when the key set changes");

    // A stale replica serves the old document again: `a` stays out.
    ep.set(200, &[&a, &b], None);
    clock.advance(61);
    kid(&source, "b").await.unwrap();
    assert_eq!(ep.fetches(), 3);
    assert!(matches!(
        kid(&source, "a").await,
        Err(KeyLookupError::UnknownKid { .. })
    ));
    let cached = source.cached(ISSUER).unwrap();
    let kids: Vec<_> = cached.keys().iter().filter_map(|k| k.kid()).collect();
    assert_eq!(kids, ["b"]);
    assert_eq!(
        source.key_set_version(ISSUER),
        v2,
        "no change, no new version"
    );

    // A genuinely new key is still taken.
    let c = key("c");
    ep.set(200, &[&b, &c], None);
    clock.advance(61);
    assert_eq!(kid(&source, "c").await.unwrap().kid(), Some("c"));
}
