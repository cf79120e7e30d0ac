//! The reference IdP as SSF transmitter and the AS as receiver, on loopback (RV-3, RV-4,
//! RV-10, RV-28): disabling, purging and enabling a user at the IdP's admin route pushes the
//! matching RISC SET, which the AS applies before the admin call answers; the discovery
//! document; a receiver that refuses or is down is reported without blocking the admin call
//! beyond its bound; `[ssf]` at the IdP is checked at startup. Each refusal has its positive
//! control.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ema_examples::config::{self, ConfigError, defaults};
use ema_examples::{admin, serve, servers, ssf};
use ema_grant::revocation::{
    DynRevocationLedger, LedgerVerdict, RevocationLedger, RevocationReason,
};
use ema_jose::{Clock, SystemClock, UnixTime};

const ANA: &str = "00u8k2Lq91";

struct World {
    idp: String,
    ledger: DynRevocationLedger,
    http: reqwest::Client,
}

async fn start(edit: impl FnOnce(&mut config::IdpConfig)) -> World {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (idp_listener, idp) = serve::bind(loopback).await.unwrap();
    let (as_listener, auth_server) = serve::bind(loopback).await.unwrap();
    let mcp = "http://127.0.0.1:9/mcp";
    let notes = "http://127.0.0.1:9/notes";
    let mut idp_cfg = defaults::idp(&idp, &auth_server, mcp, notes);
    edit(&mut idp_cfg);
    let idp_app = servers::idp_app(&idp_cfg, &idp, clock.clone()).unwrap();
    let as_cfg = defaults::authorization_server(&idp, &auth_server, mcp, notes);
    let (as_app, ledger) =
        servers::authorization_server_app_and_ledger(&as_cfg, &auth_server, clock).unwrap();
    tokio::spawn(serve::serve(idp_listener, idp_app, std::future::pending()));
    tokio::spawn(serve::serve(as_listener, as_app, std::future::pending()));
    World {
        idp,
        ledger,
        http: reqwest::Client::new(),
    }
}

impl World {
    async fn admin(&self, action: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}{}", self.idp, admin::IDP_ADMIN_USERS_PATH))
            .bearer_auth(defaults::DEV_IDP_ADMIN_SECRET)
            .json(&serde_json::json!({"subject": ANA, "action": action}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn verdict(&self, iat: UnixTime) -> LedgerVerdict {
        self.ledger
            .check_id_jag(&self.idp, None, ANA, iat)
            .await
            .unwrap()
    }
}

fn outcomes(body: &serde_json::Value) -> Vec<String> {
    body["ssf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["outcome"].as_str().unwrap().to_owned())
        .collect()
}

// RV-3, RV-10, RV-28: each admin action pushes its RISC event; the AS holds the change when
// the admin call answers. Disable and purge set the flag; enable clears it and leaves tokens
// up to the watermark dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rv3_admin_changes_reach_the_authorization_server() {
    let w = start(|_| {}).await;
    let now = UnixTime::now();
    assert_eq!(w.verdict(now).await, LedgerVerdict::Allowed);
    let (status, body) = w.admin("disable").await;
    assert_eq!(
        (status, outcomes(&body)),
        (200, vec!["delivered".to_owned()])
    );
    assert!(matches!(
        w.verdict(UnixTime::now().plus(3600)).await,
        LedgerVerdict::Revoked(RevocationReason::Disabled { .. })
    ));
    let (status, body) = w.admin("enable").await;
    assert_eq!(
        (status, outcomes(&body)),
        (200, vec!["delivered".to_owned()])
    );
    assert_eq!(
        w.verdict(UnixTime::now().plus(3600)).await,
        LedgerVerdict::Allowed
    );
    assert!(matches!(w.verdict(now).await, LedgerVerdict::Revoked(_)));
    let (status, body) = w.admin("purge").await;
    assert_eq!(
        (status, outcomes(&body)),
        (200, vec!["delivered".to_owned()])
    );
    assert!(matches!(
        w.verdict(UnixTime::now().plus(3600)).await,
        LedgerVerdict::Revoked(RevocationReason::Disabled { .. })
    ));
    assert_eq!(body["disabled"], true);
}

// RV-3: the discovery document names the issuer, its keys and push delivery.
#[tokio::test]
async fn rv3_discovery_document() {
    let w = start(|_| {}).await;
    let doc: serde_json::Value = w
        .http
        .get(format!("{}{}", w.idp, ssf::SSF_CONFIGURATION_PATH))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], w.idp.as_str());
    assert_eq!(doc["jwks_uri"], format!("{}/jwks", w.idp));
    assert_eq!(
        doc["delivery_methods_supported"],
        serde_json::json!(["urn:ietf:rfc:8935"])
    );
    // Control: without [ssf] there is no document.
    let off = start(|c| c.ssf = None).await;
    let r = off
        .http
        .get(format!("{}{}", off.idp, ssf::SSF_CONFIGURATION_PATH))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

// RV-3: a receiver that refuses the SET (here: the wrong Authorization value, 401) is
// reported and not retried; the status change at the IdP happened all the same.
#[tokio::test]
async fn rv3_refused_push_is_reported() {
    let w = start(|c| {
        c.ssf.as_mut().unwrap().streams[0].authorization = "Bearer not-what-the-as-expects".into();
    })
    .await;
    let (status, body) = w.admin("disable").await;
    assert_eq!(
        (status, outcomes(&body)),
        (200, vec!["refused:HTTP 401".to_owned()])
    );
    assert_eq!(body["disabled"], true);
    assert_eq!(w.verdict(UnixTime::now()).await, LedgerVerdict::Allowed);
}

// RV-3: a receiver answering 503 gets PUSH_ATTEMPTS attempts, then the failure is reported;
// the admin call answers within PUSH_WAIT.
#[tokio::test]
async fn rv3_failing_receiver_is_retried_then_reported() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/ssf/events",
        axum::routing::post(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { axum::http::StatusCode::SERVICE_UNAVAILABLE }
        }),
    );
    let (listener, down) = serve::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    tokio::spawn(serve::serve(listener, app, std::future::pending()));
    let w = start(|c| {
        c.ssf.as_mut().unwrap().streams[0].endpoint_url = format!("{down}/ssf/events");
    })
    .await;
    let started = Instant::now();
    let (status, body) = w.admin("disable").await;
    assert!(started.elapsed() < ssf::PUSH_WAIT + Duration::from_secs(1));
    assert_eq!((status, outcomes(&body)), (200, vec!["failed".to_owned()]));
    assert_eq!(hits.load(Ordering::SeqCst), ssf::PUSH_ATTEMPTS as usize);
    assert_eq!(body["disabled"], true);
}

fn idp_error(cfg: &config::IdpConfig) -> String {
    match servers::idp_app(cfg, defaults::IDP, Arc::new(SystemClock)) {
        Err(ConfigError::Invalid(message)) => message,
        Err(other) => format!("not an invalid value: {other}"),
        Ok(_) => "not an error: the server was built".into(),
    }
}

// RV-3: `[ssf]` at the IdP is checked at startup; each bad value names its setting.
#[test]
fn rv3_idp_ssf_settings_are_checked() {
    let base = || {
        defaults::idp(
            defaults::IDP,
            defaults::AS,
            &format!("{}/mcp", defaults::MCP),
            &format!("{}/notes", defaults::MCP),
        )
    };
    type Edit = fn(&mut config::IdpSsfConfig);
    let rows: &[(Edit, &str)] = &[
        (
            |s| s.streams.clear(),
            "ssf.streams: name at least one stream",
        ),
        (
            |s| s.streams[0].endpoint_url = "not a url".into(),
            "ssf.streams[0].endpoint_url `not a url`",
        ),
        (
            |s| s.streams[0].endpoint_url = "ftp://127.0.0.1/x".into(),
            "ssf.streams[0].endpoint_url `ftp://127.0.0.1/x`: use an http or https URL",
        ),
        (
            |s| s.streams[0].authorization = String::new(),
            "ssf.streams[0].authorization is empty",
        ),
        (
            |s| s.streams[0].audience = Some(String::new()),
            "ssf.streams[0].audience is empty",
        ),
    ];
    for (edit, why) in rows {
        let mut cfg = base();
        edit(cfg.ssf.as_mut().unwrap());
        let message = idp_error(&cfg);
        assert!(message.contains(why), "{why}: {message}");
    }
    assert!(servers::idp_app(&base(), defaults::IDP, Arc::new(SystemClock)).is_ok());
}
