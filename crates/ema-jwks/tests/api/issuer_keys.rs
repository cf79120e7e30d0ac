//! `IssuerKeys`: a remote, a file and an inline issuer behind one `KeySource` (AS-4, SEC-3,
//! MD-8, D-19, D-22), with `key_set_version` per kind of source.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use ema_jose::{Algorithm, JwkSet, KeyLookupError, KeySource, SigningKey, VerifyingKey};
use ema_jwks::{FetchError, FetchPolicy, HttpFetcher, IssuerKeys, IssuerKeysError, JwksSource};
use ema_metadata::UrlError;

use crate::support::{NOW, TestClock, serve, test_clock};

const REMOTE: &str = "https://idp.acme.example";
const FILE: &str = "https://partner.example";
const INLINE: &str = "https://legacy.example";

fn key(kid: &str) -> Arc<VerifyingKey> {
    SigningKey::generate(Algorithm::ES256, Some(kid.into()))
        .unwrap()
        .verifying_key()
        .clone()
}

fn set(keys: &[&Arc<VerifyingKey>]) -> JwkSet {
    JwkSet::from_keys(keys.iter().map(|k| (*k).clone()))
}

/// A JWKS endpoint serving whatever key set the test put there, counting fetches.
#[derive(Default)]
struct Endpoint {
    doc: Mutex<String>,
    fetches: AtomicUsize,
}

async fn jwks(State(ep): State<Arc<Endpoint>>) -> String {
    ep.fetches.fetch_add(1, Ordering::SeqCst);
    ep.doc.lock().unwrap().clone()
}

/// A file in this test binary's scratch directory.
fn scratch_file(name: &str, contents: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ema-jwks-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

fn dev_keys(clock: &Arc<TestClock>) -> IssuerKeys {
    IssuerKeys::new(
        HttpFetcher::new(FetchPolicy::insecure_loopback_development()).unwrap(),
        clock.clone(),
    )
}

#[tokio::test]
async fn as4_remote_file_and_inline_issuers_behind_one_key_source() {
    let ep = Arc::new(Endpoint::default());
    let base = serve(
        Router::new()
            .route("/jwks", get(jwks))
            .with_state(ep.clone()),
    )
    .await;
    let (r1, r2, f1, i1) = (key("r1"), key("r2"), key("f1"), key("i1"));
    *ep.doc.lock().unwrap() = set(&[&r1]).to_public_json().to_string();
    let file = scratch_file("partner.json", &set(&[&f1]).to_public_json().to_string());
    let clock = Arc::new(test_clock(NOW));
    let keys = dev_keys(&clock)
        .with_issuer(REMOTE, JwksSource::Url(format!("{base}/jwks")))
        .unwrap()
        .with_issuer(FILE, JwksSource::File(file))
        .unwrap()
        .with_issuer(INLINE, set(&[&i1]))
        .unwrap();
    assert!(keys.is_remote(REMOTE) && !keys.is_remote(FILE) && !keys.is_remote(INLINE));
    assert!(keys.contains(REMOTE) && keys.contains(FILE) && keys.contains(INLINE));

    // Each issuer answers with its own keys.
    for (issuer, kid) in [(REMOTE, "r1"), (FILE, "f1"), (INLINE, "i1")] {
        let found = keys.resolve(issuer, Some(kid), Algorithm::ES256).await;
        assert_eq!(found.unwrap().kid(), Some(kid), "{issuer}");
    }
    assert_eq!(ep.fetches.load(Ordering::SeqCst), 1);

    // SEC-3: a key of one issuer never verifies another's token, and static issuers never
    // reach the network for an unknown `kid`.
    for (issuer, foreign) in [(FILE, "r1"), (INLINE, "f1")] {
        assert!(matches!(
            keys.resolve(issuer, Some(foreign), Algorithm::ES256).await,
            Err(KeyLookupError::UnknownKid { .. })
        ));
    }
    assert_eq!(ep.fetches.load(Ordering::SeqCst), 1);
    assert!(matches!(
        keys.resolve(REMOTE, Some("f1"), Algorithm::ES256).await,
        Err(KeyLookupError::UnknownKid { .. })
    ));
    assert_eq!(
        keys.resolve("https://evil.example", Some("r1"), Algorithm::ES256)
            .await
            .unwrap_err(),
        KeyLookupError::UnknownIssuer {
            issuer: "https://evil.example".into()
        }
    );

    // key_set_version: the remote issuer's moves with its key set; static ones stay put.
    let (v_remote, v_file) = (keys.key_set_version(REMOTE), keys.key_set_version(FILE));
    assert_eq!(v_file, 0);
    assert_eq!(keys.key_set_version(INLINE), 0);
    *ep.doc.lock().unwrap() = set(&[&r1, &r2]).to_public_json().to_string();
    clock.advance(61);
    let found = keys.resolve(REMOTE, Some("r2"), Algorithm::ES256).await;
    assert_eq!(found.unwrap().kid(), Some("r2"));
    assert_ne!(keys.key_set_version(REMOTE), v_remote);
    assert_eq!(keys.key_set_version(FILE), v_file);
    assert_eq!(keys.key_set_version(INLINE), 0);
}

#[tokio::test]
async fn d22_kid_less_lookup_on_a_static_issuer_needs_one_key() {
    let clock = Arc::new(test_clock(NOW));
    let (a, b) = (key("a"), key("b"));
    let keys = dev_keys(&clock)
        .with_issuer(INLINE, set(&[&a]))
        .unwrap()
        .with_issuer(FILE, set(&[&a, &b]))
        .unwrap();
    // Control: one key answers a kid-less lookup.
    let one = keys.resolve(INLINE, None, Algorithm::ES256).await;
    assert_eq!(one.unwrap().kid(), Some("a"));
    assert_eq!(
        keys.resolve(FILE, None, Algorithm::ES256)
            .await
            .unwrap_err(),
        KeyLookupError::KidRequired { keys: 2 }
    );
}

#[tokio::test]
async fn md8_jwks_url_must_pass_the_fetch_policy_when_configured() {
    let strict = IssuerKeys::new(
        HttpFetcher::new(FetchPolicy::new()).unwrap(),
        Arc::new(test_clock(NOW)),
    );
    let refused = strict
        .clone()
        .with_issuer(
            REMOTE,
            JwksSource::Url("http://idp.acme.example/keys".into()),
        )
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            IssuerKeysError::Url { issuer, source: FetchError::Url(UrlError::NotHttps { .. }) }
                if issuer == REMOTE
        ),
        "{refused:?}"
    );
    assert!(refused.to_string().contains(REMOTE), "{refused}");
    let private = strict
        .clone()
        .with_issuer(
            REMOTE,
            JwksSource::Url("https://169.254.169.254/keys".into()),
        )
        .unwrap_err();
    assert!(matches!(
        private,
        IssuerKeysError::Url {
            source: FetchError::ForbiddenAddress { .. },
            ..
        }
    ));
    // Control: an https URL to a name is accepted (nothing is fetched until first use).
    let keys = strict
        .with_issuer(
            REMOTE,
            JwksSource::Url("https://idp.acme.example/keys".into()),
        )
        .unwrap();
    assert!(keys.is_remote(REMOTE));
}

#[test]
fn d19_jwks_files_are_read_and_judged_when_configured() {
    let clock = Arc::new(test_clock(NOW));
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ema-jwks-no-such-file.json");
    assert!(matches!(
        dev_keys(&clock)
            .with_issuer(FILE, JwksSource::File(missing))
            .unwrap_err(),
        IssuerKeysError::Read { .. }
    ));
    let not_jwks = scratch_file("not-jwks.json", r#"{"not":"a jwks"}"#);
    let err = dev_keys(&clock)
        .with_issuer(FILE, JwksSource::File(not_jwks.clone()))
        .unwrap_err();
    assert!(
        matches!(&err, IssuerKeysError::Document { path, .. } if *path == not_jwks),
        "{err:?}"
    );
    // Inline JSON is judged the same way.
    assert!(JwksSource::inline_json(r#"{"not":"a jwks"}"#).is_err());
    // Control: a valid document loads.
    let a = key("a");
    let good = scratch_file("good.json", &set(&[&a]).to_public_json().to_string());
    let keys = dev_keys(&clock)
        .with_issuer(FILE, JwksSource::File(good))
        .unwrap();
    assert!(keys.contains(FILE) && !keys.is_remote(FILE));
}

#[tokio::test]
async fn the_last_source_given_for_an_issuer_wins() {
    let ep = Arc::new(Endpoint::default());
    let base = serve(
        Router::new()
            .route("/jwks", get(jwks))
            .with_state(ep.clone()),
    )
    .await;
    let (remote_key, inline_key) = (key("remote"), key("inline"));
    *ep.doc.lock().unwrap() = set(&[&remote_key]).to_public_json().to_string();
    let clock = Arc::new(test_clock(NOW));
    let url = JwksSource::Url(format!("{base}/jwks"));

    // URL, then inline: the inline set answers and nothing is fetched.
    let keys = dev_keys(&clock)
        .with_issuer(REMOTE, url.clone())
        .unwrap()
        .with_issuer(REMOTE, set(&[&inline_key]))
        .unwrap();
    assert!(!keys.is_remote(REMOTE));
    let found = keys.resolve(REMOTE, Some("inline"), Algorithm::ES256).await;
    assert_eq!(found.unwrap().kid(), Some("inline"));
    assert!(
        keys.resolve(REMOTE, Some("remote"), Algorithm::ES256)
            .await
            .is_err()
    );
    assert_eq!(ep.fetches.load(Ordering::SeqCst), 0);

    // Inline, then URL: the remote set answers and the inline key is gone.
    let keys = dev_keys(&clock)
        .with_issuer(REMOTE, set(&[&inline_key]))
        .unwrap()
        .with_issuer(REMOTE, url)
        .unwrap();
    assert!(keys.is_remote(REMOTE));
    let found = keys.resolve(REMOTE, Some("remote"), Algorithm::ES256).await;
    assert_eq!(found.unwrap().kid(), Some("remote"));
    assert!(
        keys.resolve(REMOTE, Some("inline"), Algorithm::ES256)
            .await
            .is_err()
    );
    assert_eq!(ep.fetches.load(Ordering::SeqCst), 1);
}
