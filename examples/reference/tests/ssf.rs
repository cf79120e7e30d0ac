//! The reference IdP as SSF transmitter and the AS as receiver, on loopback (RV-3, RV-4,
//! RV-10, RV-28): disabling, purging and enabling a user at the IdP's admin route pushes the
//! matching RISC SET, which the AS applies before the admin call answers; the discovery
//! document; a receiver that refuses or is down is reported without blocking the admin call
//! beyond its bound; `[ssf]` at the IdP is checked at startup. Stream health (RV-26, RV-24):
//! verification requested by the AS and answered by the IdP lengthens access tokens until the
//! IdP stops answering or pauses the stream. RFC 8936 poll delivery (RV-27). Each refusal has
//! its positive control.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use ema_examples::config::{self, ConfigError, defaults};
use ema_examples::{admin, serve, servers, ssf};
use ema_grant::revocation::{
    DynRevocationLedger, LedgerVerdict, RevocationLedger, RevocationReason,
};
use ema_grant::ssf_health::ChannelHealth;
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
        serde_json::json!(["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"])
    );
    // RV-26: the verification and stream configuration endpoints.
    assert_eq!(
        doc["verification_endpoint"],
        format!("{}{}", w.idp, ssf::SSF_VERIFICATION_PATH)
    );
    assert_eq!(
        doc["configuration_endpoint"],
        format!("{}{}", w.idp, ssf::SSF_STREAM_PATH)
    );
    // The stream configuration, for the receiver's credential only.
    let stream_url = format!(
        "{}{}?stream_id={}",
        w.idp,
        ssf::SSF_STREAM_PATH,
        defaults::DEV_SSF_STREAM
    );
    let r = w.http.get(&stream_url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let stream: serde_json::Value = w
        .http
        .get(&stream_url)
        .header("authorization", defaults::DEV_SSF_RECEIVER_AUTHORIZATION)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stream["stream_id"], defaults::DEV_SSF_STREAM);
    assert_eq!(
        stream["min_verification_interval"],
        ssf::DEFAULT_MIN_VERIFICATION_INTERVAL
    );
    assert_eq!(stream["delivery"]["method"], "urn:ietf:rfc:8935");
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
        let stream = &mut c.ssf.as_mut().unwrap().streams[0];
        stream.endpoint_url = format!("{down}/ssf/events");
        // No stream verification: its SETs would reach the counting receiver too.
        stream.receiver_authorization = None;
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
        // RV-26: stream ids and receiver credentials.
        (
            |s| s.streams[0].stream_id = Some(String::new()),
            "ssf.streams[0].stream_id ``: give each stream its own",
        ),
        (
            |s| s.streams[0].receiver_authorization = Some(s.streams[0].authorization.clone()),
            "ssf.streams[0].receiver_authorization: give each stream its own",
        ),
        // RV-27: poll delivery.
        (
            |s| s.streams[0].delivery = Some("pigeon".into()),
            "ssf.streams[0].delivery `pigeon`: use push or poll",
        ),
        (
            |s| s.streams[0].poll_wait_secs = Some(5),
            "ssf.streams[0].poll_wait_secs is for delivery",
        ),
        (
            |s| s.streams[0].delivery = Some("poll".into()),
            "ssf.streams[0]: a poll stream needs receiver_authorization",
        ),
        (
            |s| {
                s.streams[0].delivery = Some("poll".into());
                s.streams[0].audience = Some("http://127.0.0.1:9401/ssf/events".into());
            },
            "ssf.streams[0].endpoint_url: a poll stream has none",
        ),
        (
            |s| {
                s.streams[0].delivery = Some("poll".into());
                s.streams[0].audience = Some("http://127.0.0.1:9401/ssf/events".into());
                s.streams[0].endpoint_url.clear();
                s.streams[0].poll_wait_secs = Some(61);
            },
            "ssf.streams[0].poll_wait_secs must be at most 60",
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

/// A clock the test moves by hand (RV-26 runs on fixed times).
#[derive(Debug)]
struct HandClock(std::sync::atomic::AtomicU64);

impl Clock for HandClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(self.0.load(Ordering::SeqCst))
    }
}

impl HandClock {
    fn set(&self, t: UnixTime) {
        self.0.store(t.as_secs(), Ordering::SeqCst);
    }
}

/// The IdP and the AS on one hand clock, the AS's verification driver not started; the IdP's
/// SSF endpoints answer 503 while `ssf_down` is set.
struct Health {
    idp: String,
    auth_server: String,
    mcp: String,
    clock: Arc<HandClock>,
    t0: UnixTime,
    driver: ema_examples::stream_health::VerificationDriver,
    ssf_down: Arc<std::sync::atomic::AtomicBool>,
    http: reqwest::Client,
}

async fn start_health() -> Health {
    let t0 = UnixTime::now();
    let clock = Arc::new(HandClock(t0.as_secs().into()));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (idp_listener, idp) = serve::bind(loopback).await.unwrap();
    let (as_listener, auth_server) = serve::bind(loopback).await.unwrap();
    let mcp = "http://127.0.0.1:9/mcp".to_owned();
    let notes = "http://127.0.0.1:9/notes";
    let idp_cfg = defaults::idp(&idp, &auth_server, &mcp, notes);
    let ssf_down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let down = ssf_down.clone();
    let idp_app = servers::idp_app(&idp_cfg, &idp, dyn_clock.clone())
        .unwrap()
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let down = down.load(Ordering::SeqCst) && req.uri().path().starts_with("/ssf/");
                async move {
                    if down {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
                    } else {
                        next.run(req).await
                    }
                }
            },
        ));
    let mut as_cfg = defaults::authorization_server(&idp, &auth_server, &mcp, notes);
    as_cfg.token_lifetime_secs = 3600;
    let app =
        servers::authorization_server_app_unstarted(&as_cfg, &auth_server, dyn_clock).unwrap();
    let driver = app.verification.unwrap();
    tokio::spawn(serve::serve(idp_listener, idp_app, std::future::pending()));
    tokio::spawn(serve::serve(
        as_listener,
        app.router,
        std::future::pending(),
    ));
    Health {
        idp,
        auth_server,
        mcp,
        clock,
        t0,
        driver,
        ssf_down,
        http: reqwest::Client::new(),
    }
}

impl Health {
    fn at(&self, secs: u64) -> UnixTime {
        let t = self.t0.plus(secs);
        self.clock.set(t);
        t
    }

    /// Signs ana in, exchanges her ID token for an ID-JAG and that for an access token at the
    /// AS (configured for 3600 s): its `expires_in`.
    async fn token_lifetime(&self) -> u64 {
        let sso = ema_examples::sso::SsoClient {
            idp: self.idp.clone(),
            client_id: "desk-idp-01".into(),
            client_secret: "desk-secret".into(),
            redirect_uri: "http://127.0.0.1/callback".into(),
            client_secret_post: false,
        };
        let id_token = sso.sign_in("ana", "ana-password").await.unwrap();
        let r = self
            .http
            .post(format!("{}/token", self.idp))
            .basic_auth("desk-idp-01", Some("desk-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", id_token.as_str()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:id_token",
                ),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:id-jag",
                ),
                ("audience", self.auth_server.as_str()),
                ("resource", self.mcp.as_str()),
            ]))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["access_token"].is_string(), "{body}");
        let id_jag = body["access_token"].as_str().unwrap();
        let r = self
            .http
            .post(format!("{}/token", self.auth_server))
            .basic_auth("tc_5f2a91", Some("tc-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", id_jag),
            ]))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["expires_in"].is_u64(), "{body}");
        body["expires_in"].as_u64().unwrap()
    }

    async fn verify_directly(&self, authorization: &str) -> u16 {
        self.http
            .post(format!("{}{}", self.idp, ssf::SSF_VERIFICATION_PATH))
            .header("authorization", authorization)
            .json(&serde_json::json!({"stream_id": defaults::DEV_SSF_STREAM, "state": "s-1"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn health(&self) -> ChannelHealth {
        self.driver
            .health()
            .health(&self.idp, self.clock.now())
            .unwrap()
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn last_change(tick: &ema_grant::ssf_health::Tick) -> Option<ChannelHealth> {
    tick.changes.last().map(|c| c.to)
}

// RV-26, RV-24 end to end: the AS asks the reference IdP for verification (discovery, stream
// configuration, `POST /ssf/verify`), the IdP pushes the verification SET echoing the state,
// and the AS then issues 3600 s tokens instead of 300 s; the IdP enforces its
// min_verification_interval (429) and its receiver credential (401). Once the IdP stops
// answering, the channel stays verified for 900 s after the last answer and is overdue one
// second later: tokens fall back to 300 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rv26_verified_stream_lengthens_tokens_until_the_idp_stops_answering() {
    let w = start_health().await;
    assert_eq!(w.token_lifetime().await, 300, "no verification yet");
    let tick = w.driver.run_once().await;
    assert_eq!(tick.requests.len(), 1, "{tick:?}");
    assert_eq!(
        last_change(&tick),
        Some(ChannelHealth::Verified),
        "{tick:?}"
    );
    assert_eq!(w.token_lifetime().await, 3600);
    // The IdP's side: another request within 60 s is refused; a wrong credential is 401.
    w.at(10);
    assert_eq!(w.verify_directly("Bearer not-the-receiver").await, 401);
    assert_eq!(
        w.verify_directly(defaults::DEV_SSF_RECEIVER_AUTHORIZATION)
            .await,
        429
    );
    // Nothing is due before the 300 s schedule; then the driver verifies again.
    w.at(299);
    assert!(w.driver.run_once().await.requests.is_empty());
    w.at(300);
    let tick = w.driver.run_once().await;
    assert_eq!(tick.requests.len(), 1, "{tick:?}");
    assert_eq!(
        w.driver.health().last_verified(&w.idp),
        Some(w.t0.plus(300))
    );
    // The IdP stops answering.
    w.ssf_down.store(true, Ordering::SeqCst);
    for secs in [600, 900, 1200] {
        w.at(secs);
        let tick = w.driver.run_once().await;
        assert!(tick.changes.is_empty(), "at +{secs}: {tick:?}");
        assert_eq!(w.health(), ChannelHealth::Verified);
    }
    assert_eq!(w.token_lifetime().await, 3600);
    w.at(1201);
    let tick = w.driver.run_once().await;
    assert_eq!(last_change(&tick), Some(ChannelHealth::Overdue), "{tick:?}");
    assert_eq!(w.token_lifetime().await, 300);
    // Back: the next request verifies it again.
    w.ssf_down.store(false, Ordering::SeqCst);
    let mut secs = 1201;
    let tick = loop {
        secs += 30;
        w.at(secs);
        let tick = w.driver.run_once().await;
        if !tick.changes.is_empty() || secs > 1500 {
            break tick;
        }
    };
    assert_eq!(
        last_change(&tick),
        Some(ChannelHealth::Verified),
        "{tick:?}"
    );
    assert_eq!(w.token_lifetime().await, 3600);
}

// RV-26: the IdP admin pauses the stream: `stream-updated` reaches the AS, which drops the
// channel at once (300 s tokens) and asks nothing while paused; enabled again, the AS asks at
// once and the answer restores 3600 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rv26_paused_stream_falls_back_until_reenabled() {
    let w = start_health().await;
    w.driver.run_once().await;
    assert_eq!(w.token_lifetime().await, 3600);
    let set = |status: &'static str| {
        w.http
            .post(format!("{}{}", w.idp, admin::IDP_ADMIN_STREAMS_PATH))
            .bearer_auth(defaults::DEV_IDP_ADMIN_SECRET)
            .json(&serde_json::json!({"stream_id": defaults::DEV_SSF_STREAM, "status": status}))
            .send()
    };
    let r = set("paused").await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["ssf"], "delivered", "{body}");
    assert_eq!(w.health(), ChannelHealth::Paused);
    assert_eq!(w.token_lifetime().await, 300);
    // A paused stream gets no account events.
    let r = w
        .http
        .post(format!("{}{}", w.idp, admin::IDP_ADMIN_USERS_PATH))
        .bearer_auth(defaults::DEV_IDP_ADMIN_SECRET)
        .json(&serde_json::json!({"subject": "00u9bobXX2", "action": "disable"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(outcomes(&body), ["skipped:paused"]);
    w.at(400);
    assert!(w.driver.run_once().await.requests.is_empty());
    let r = set("enabled").await.unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["ssf"], "delivered", "{body}");
    assert_eq!(w.health(), ChannelHealth::Unverified);
    let tick = w.driver.run_once().await;
    assert_eq!(tick.requests.len(), 1, "{tick:?}");
    assert_eq!(
        last_change(&tick),
        Some(ChannelHealth::Verified),
        "{tick:?}"
    );
    assert_eq!(w.token_lifetime().await, 3600);
    // Unknown stream and bad status (controls above).
    let r = w
        .http
        .post(format!("{}{}", w.idp, admin::IDP_ADMIN_STREAMS_PATH))
        .bearer_auth(defaults::DEV_IDP_ADMIN_SECRET)
        .json(&serde_json::json!({"stream_id": "nope", "status": "paused"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = w
        .http
        .post(format!("{}{}", w.idp, admin::IDP_ADMIN_STREAMS_PATH))
        .bearer_auth(defaults::DEV_IDP_ADMIN_SECRET)
        .json(&serde_json::json!({"stream_id": defaults::DEV_SSF_STREAM, "status": "asleep"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

// RV-27 end to end: the IdP's stream to the AS is a poll stream. Disabling ana queues the
// SET; the AS's poll applies it (ledger: disabled). A long poll waiting on the empty queue
// returns with the next SET (enable). Unacknowledged SETs are handed out again (control);
// acknowledged ones are gone; a wrong credential is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rv27_the_authorization_server_polls_the_idp() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (idp_listener, idp) = serve::bind(loopback).await.unwrap();
    let (as_listener, auth_server) = serve::bind(loopback).await.unwrap();
    let (mcp, notes) = ("http://127.0.0.1:9/mcp", "http://127.0.0.1:9/notes");
    let mut idp_cfg = defaults::idp(&idp, &auth_server, mcp, notes);
    {
        let stream = &mut idp_cfg.ssf.as_mut().unwrap().streams[0];
        stream.audience = Some(stream.endpoint_url.clone());
        stream.endpoint_url = String::new();
        stream.delivery = Some("poll".into());
        stream.poll_wait_secs = Some(30);
    }
    let idp_app = servers::idp_app(&idp_cfg, &idp, clock.clone()).unwrap();
    let mut as_cfg = defaults::authorization_server(&idp, &auth_server, mcp, notes);
    as_cfg.ssf.as_mut().unwrap().transmitters[0].poll_url =
        Some(format!("{idp}{}", ssf::SSF_POLL_PATH));
    let app = servers::authorization_server_app_unstarted(&as_cfg, &auth_server, clock).unwrap();
    let poll = app.pollers[0].clone();
    let ledger = app.ledger.clone();
    tokio::spawn(serve::serve(idp_listener, idp_app, std::future::pending()));
    tokio::spawn(serve::serve(
        as_listener,
        app.router,
        std::future::pending(),
    ));
    let w = World {
        idp: idp.clone(),
        ledger,
        http: reqwest::Client::new(),
    };
    let (status, body) = w.admin("disable").await;
    assert_eq!((status, outcomes(&body)), (200, vec!["queued".to_owned()]));
    assert_eq!(w.verdict(UnixTime::now()).await, LedgerVerdict::Allowed);
    let polled = poll.run_once().await.unwrap();
    assert_eq!(polled.receipts.len(), 1, "{polled:?}");
    assert_eq!(polled.receipts[0].outcome_name(), "accepted:applied");
    assert!(matches!(
        w.verdict(UnixTime::now().plus(3600)).await,
        LedgerVerdict::Revoked(RevocationReason::Disabled { .. })
    ));
    // The long poll (carrying the acknowledgement) waits on the empty queue; enabling ana
    // queues the next SET and it returns with it.
    let waiting = tokio::spawn({
        let poll = poll.clone();
        async move { poll.run_once().await }
    });
    let (status, body) = w.admin("enable").await;
    assert_eq!((status, outcomes(&body)), (200, vec!["queued".to_owned()]));
    let polled = waiting.await.unwrap().unwrap();
    assert_eq!(polled.receipts.len(), 1, "{polled:?}");
    let receipt = &polled.receipts[0];
    assert_eq!(
        receipt.event_type.as_deref(),
        Some("https://schemas.openid.net/secevent/risc/event-type/account-enabled")
    );
    assert_eq!(
        w.verdict(UnixTime::now().plus(3600)).await,
        LedgerVerdict::Allowed
    );
    // Not acknowledged yet (the driver sends it with its next poll): handed out again.
    let direct = |authorization: &'static str, body: serde_json::Value| {
        w.http
            .post(format!("{idp}{}", ssf::SSF_POLL_PATH))
            .header("authorization", authorization)
            .json(&body)
            .send()
    };
    let r = direct(
        defaults::DEV_SSF_RECEIVER_AUTHORIZATION,
        serde_json::json!({"returnImmediately": true}),
    )
    .await
    .unwrap();
    let doc: serde_json::Value = r.json().await.unwrap();
    let jti = receipt.jti.clone().unwrap();
    assert!(doc["sets"].get(&jti).is_some(), "{doc}");
    let r = direct(
        defaults::DEV_SSF_RECEIVER_AUTHORIZATION,
        serde_json::json!({"returnImmediately": true, "ack": [jti]}),
    )
    .await
    .unwrap();
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc, serde_json::json!({"sets": {}, "moreAvailable": false}));
    let r = direct(
        "Bearer not-the-receiver",
        serde_json::json!({"returnImmediately": true}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
}
