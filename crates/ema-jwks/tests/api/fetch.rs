//! The fetch layer: URL rule (MD-8), address filter, timeouts, size cap, no redirects.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::response::Response;
use axum::routing::get;
use ema_jwks::{FetchError, FetchPolicy, HttpFetcher};
use ema_metadata::{UrlError, UrlPolicy};

use crate::support::{Chunks, Stall, serve, streamed};

fn ok_router() -> Router {
    Router::new().route("/doc", get(|| async { "{\"ok\":true}" }))
}

#[tokio::test]
async fn md8_https_only_unless_loopback_explicitly_allowed() {
    let base = serve(ok_router()).await;
    let port = base.rsplit(':').next().unwrap().to_owned();
    let url = url::Url::parse(&format!("{base}/doc")).unwrap();

    // MD-8: the default refuses http outright.
    let strict = HttpFetcher::new(FetchPolicy::new()).unwrap();
    assert!(matches!(
        strict.get(&url).await.unwrap_err(),
        FetchError::Url(UrlError::NotHttps { .. })
    ));
    // http to loopback allowed by the URL rule, but loopback addresses still refused: the
    // literal address is checked before any request...
    let half = HttpFetcher::new(
        FetchPolicy::new().with_url_policy(UrlPolicy::insecure_allow_loopback_http()),
    )
    .unwrap();
    assert_eq!(
        half.get(&url).await.unwrap_err(),
        FetchError::ForbiddenAddress {
            host: "127.0.0.1".into()
        }
    );
    // ...and a name resolving to loopback is filtered by the resolver.
    let named = url::Url::parse(&format!("http://localhost:{port}/doc")).unwrap();
    assert_eq!(
        half.get(&named).await.unwrap_err(),
        FetchError::ForbiddenAddress {
            host: "localhost".into()
        }
    );
    // The explicit development opt-in allows both.
    let dev = HttpFetcher::new(FetchPolicy::insecure_loopback_development()).unwrap();
    let response = dev.get(&url).await.unwrap();
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"{\"ok\":true}"[..])
    );
    assert_eq!(dev.get(&named).await.unwrap().status, 200);
}

#[tokio::test]
async fn private_and_link_local_addresses_are_refused_before_connecting() {
    let dev = HttpFetcher::new(FetchPolicy::insecure_loopback_development()).unwrap();
    for target in [
        "https://10.0.0.1/jwks",
        "https://169.254.169.254/latest/meta-data",
        "https://192.168.1.10/.well-known/oauth-authorization-server",
        "https://[fe80::1]/jwks",
        "https://[fd00::1]/jwks",
        "https://[::ffff:10.0.0.1]/jwks",
    ] {
        let url = url::Url::parse(target).unwrap();
        assert!(
            matches!(
                dev.get(&url).await.unwrap_err(),
                FetchError::ForbiddenAddress { .. }
            ),
            "{target}"
        );
    }
}

#[tokio::test]
async fn slow_responses_time_out() {
    let base = serve(
        Router::new()
            // Never answers.
            .route("/silent", get(std::future::pending::<&'static str>))
            // Answers, sends a little, then stalls.
            .route(
                "/trickle",
                get(|| async {
                    streamed(Stall {
                        first: Some(Bytes::from_static(b"{\"keys\":[")),
                    })
                }),
            ),
    )
    .await;
    let timeout = Duration::from_millis(300);
    let fetcher =
        HttpFetcher::new(FetchPolicy::insecure_loopback_development().with_timeout(timeout))
            .unwrap();
    for path in ["/silent", "/trickle"] {
        let url = url::Url::parse(&format!("{base}{path}")).unwrap();
        assert_eq!(
            fetcher.get(&url).await.unwrap_err(),
            FetchError::Timeout { after: timeout },
            "{path}"
        );
    }
}

#[tokio::test]
async fn oversized_responses_are_capped() {
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let base = serve(
        Router::new()
            // Declares its length up front.
            .route("/declared", get(|| async { "x".repeat(4096) }))
            // Streams without a length: 1600 chunks of 64 KiB (100 MiB).
            .route(
                "/streamed",
                get(move || {
                    let sent = counter.clone();
                    async move {
                        streamed(Chunks {
                            left: 1600,
                            size: 64 * 1024,
                            sent,
                        })
                    }
                }),
            )
            .route("/fits", get(|| async { "x".repeat(1024) })),
    )
    .await;
    let fetcher =
        HttpFetcher::new(FetchPolicy::insecure_loopback_development().with_max_body(2048)).unwrap();
    let get = |path: &str| url::Url::parse(&format!("{base}{path}")).unwrap();
    assert_eq!(
        fetcher.get(&get("/declared")).await.unwrap_err(),
        FetchError::TooLarge { max: 2048 }
    );
    assert_eq!(
        fetcher.get(&get("/streamed")).await.unwrap_err(),
        FetchError::TooLarge { max: 2048 }
    );
    // Reading stopped at the cap: the transfer was aborted long before its 100 MiB.
    assert!(sent.load(Ordering::SeqCst) < 50 * 1024 * 1024);
    assert_eq!(fetcher.get(&get("/fits")).await.unwrap().body.len(), 1024);
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let elsewhere = serve(Router::new().route(
        "/doc",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { "{}" }
        }),
    ))
    .await;
    let target = format!("{elsewhere}/doc");
    let base = serve(Router::new().route(
        "/moved",
        get(move || {
            let target = target.clone();
            async move {
                Response::builder()
                    .status(302)
                    .header("location", target)
                    .body(axum::body::Body::empty())
                    .unwrap()
            }
        }),
    ))
    .await;
    let fetcher = HttpFetcher::new(FetchPolicy::insecure_loopback_development()).unwrap();
    let url = url::Url::parse(&format!("{base}/moved")).unwrap();
    assert_eq!(
        fetcher.get(&url).await.unwrap_err(),
        FetchError::Redirect { status: 302 }
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn connection_failures_are_typed() {
    // A port nothing listens on: bind, note the port, close.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let fetcher = HttpFetcher::new(FetchPolicy::insecure_loopback_development()).unwrap();
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
    assert!(matches!(
        fetcher.get(&url).await.unwrap_err(),
        FetchError::Connect { .. }
    ));
}
