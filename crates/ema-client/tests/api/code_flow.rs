//! The authorization code flow as a client (issue 14), against an in-process authorization
//! server and IdP built from `ema-server` as the reference servers are (the AS signs users in
//! at the IdP over OpenID Connect; the IdP's admission policy assigns ana and not bob), and a
//! small MCP server validating the AS's tokens. The "open this URL" hook plays the browser
//! with an HTTP client: the AS's authorize endpoint, the IdP login form, the AS callback, and
//! the redirect to the client's loopback listener. Servers run on a fixed clock; the client's
//! clock is moved by hand; nothing sleeps.

#[path = "../../../ema-server/tests/support/code_flow_servers.rs"]
mod code_flow_servers;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use code_flow_servers::{Browser, Options, Servers, bind, idp_login, serve};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use ema_client::{
    ClientCredentials, CodeFlowError, CodeFlowOptions, EmaClient, EmaError, FetchPolicy, Hop,
    HttpFetcher, IdpConfig, LoopbackRedirect, OpenUrl, Recovery, Secret,
};
use ema_grant::*;
use ema_id_jag::*;
use ema_jose::{Clock, StaticKeySource, UnixTime};
use url::Url;

/// 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

/// The client's clock, moved by hand.
#[derive(Debug)]
struct HandClock(AtomicU64);

impl Clock for HandClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(self.0.load(Ordering::SeqCst))
    }
}

struct World {
    auth: String,
    mcp_url: Url,
    cimd: String,
    documents_fetched: Arc<AtomicUsize>,
    redirect: LoopbackRedirect,
    clock: Arc<HandClock>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tamper {
    /// A well-behaved browser.
    Nothing,
    /// The callback's `state` is replaced.
    State,
    /// The callback's `iss` is replaced.
    Iss,
    /// The callback's `iss` is dropped.
    DropIss,
    /// The browser never comes back to the loopback listener.
    NeverReturns,
}

/// The IdP, the AS (`id_jag`: whether it also offers the ID-JAG profile; it always offers the
/// code flow; `cimd`: whether it takes client metadata documents; `iss_advertised`: whether its
/// metadata says it sends `iss`, RFC 9207), shared with `ema-server`'s code-flow tests, and an
/// MCP server.
async fn world(id_jag: bool, cimd: bool, iss_advertised: bool) -> World {
    let redirect = LoopbackRedirect::bind(0).unwrap();
    let client_cb = redirect.redirect_uri();
    let (mcp_l, mcp) = bind().await;
    let resource = format!("{mcp}/mcp");
    let mut o = Options::new(UnixTime::from_secs(NOW), &resource, &client_cb);
    o.id_jag = id_jag;
    o.iss_advertised = iss_advertised;
    if cimd {
        o.documents = Some(HttpFetcher::new(FetchPolicy::insecure_loopback_development()).unwrap());
    }
    let Servers { auth, as_keys, .. } = code_flow_servers::start(o).await;

    // The MCP server: its PRM, a client metadata document, and `/mcp` answering 200 to a valid
    // token of the AS and a 401 challenge otherwise.
    let prm = serde_json::json!({"resource": resource, "authorization_servers": [auth]});
    let cimd_url = format!("{mcp}/client.json");
    let document = serde_json::json!({
        "client_id": cimd_url, "client_name": "Agent", "redirect_uris": [client_cb],
        "token_endpoint_auth_method": "none",
    });
    let challenge =
        format!(r#"Bearer resource_metadata="{mcp}/.well-known/oauth-protected-resource/mcp""#);
    let validator = Arc::new(AccessTokenValidator::new(
        Issuer::new(&auth),
        Resource::new(&resource),
        StaticKeySource::new().with_issuer(&auth, as_keys.jwks()),
    ));
    let documents_fetched = Arc::new(AtomicUsize::new(0));
    let fetched = documents_fetched.clone();
    let mcp_app = axum::Router::new()
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            axum::routing::get(move || async move { axum::Json(prm) }),
        )
        .route(
            "/client.json",
            axum::routing::get(move || {
                fetched.fetch_add(1, Ordering::SeqCst);
                let document = document.clone();
                async move { axum::Json(document) }
            }),
        )
        .route(
            "/mcp",
            axum::routing::post(move |headers: HeaderMap| {
                let validator = validator.clone();
                let challenge = challenge.clone();
                async move {
                    let token = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or_default()
                        .to_owned();
                    match validator.validate(&token, UnixTime::from_secs(NOW)).await {
                        Ok(claims) => (StatusCode::OK, claims.sub).into_response(),
                        Err(_) => (
                            StatusCode::UNAUTHORIZED,
                            [("www-authenticate", challenge)],
                            "",
                        )
                            .into_response(),
                    }
                }
            }),
        );
    serve(mcp_l, mcp_app);
    World {
        auth,
        mcp_url: Url::parse(&resource).unwrap(),
        cimd: cimd_url,
        documents_fetched,
        redirect,
        clock: Arc::new(HandClock(AtomicU64::new(NOW))),
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

fn location(r: &reqwest::Response) -> Result<String, String> {
    code_flow_servers::location(r)
}

fn replace_param(url: &str, name: &str, value: &str) -> String {
    let mut url = Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_owned()
            } else {
                v.into()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.into()
}

/// The hook playing `user`'s browser; counts how often it was asked to open a URL.
fn browser(user: &'static str, tamper: Tamper, opened: Arc<AtomicUsize>) -> impl OpenUrl {
    move |url: Url| {
        opened.fetch_add(1, Ordering::SeqCst);
        async move {
            // A browser that keeps the AS's sign-in cookie.
            let b = Browser::default();
            let e = |e: reqwest::Error| e.to_string();
            // The AS sends the user to the IdP's login.
            let r = b.get(url.as_str()).await.map_err(e)?;
            let to_idp = location(&r)?;
            let callback = idp_login(&b, &to_idp, user).await?;
            // The IdP back to the AS, the AS back to the client.
            let r = b.get(&callback).await.map_err(e)?;
            let mut back = location(&r)?;
            match tamper {
                Tamper::Nothing => {}
                Tamper::State => back = replace_param(&back, "state", "forged-state"),
                Tamper::Iss => back = replace_param(&back, "iss", "https://evil.example"),
                Tamper::DropIss => {
                    let mut url = Url::parse(&back).unwrap();
                    let kept: Vec<(String, String)> = url
                        .query_pairs()
                        .filter(|(k, _)| k != "iss")
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                    url.query_pairs_mut().clear().extend_pairs(kept);
                    back = url.into();
                }
                Tamper::NeverReturns => return Ok(()),
            }
            let r = b.get(&back).await.map_err(e)?;
            // The listener answers the browser with a short page.
            let status = r.status().as_u16();
            let page = r.text().await.map_err(e)?;
            if !page.contains("<h1>") {
                return Err(format!("no page from the listener: {status} {page}"));
            }
            Ok(())
        }
    }
}

fn client(w: &World, options: CodeFlowOptions) -> EmaClient {
    // No IdP for EMA is needed on the code-flow path; the configuration is a placeholder.
    EmaClient::builder(IdpConfig::new(
        "https://idp.unused.example",
        "https://idp.unused.example/token",
        ClientCredentials::public("unused"),
    ))
    .fetch_policy(FetchPolicy::insecure_loopback_development())
    .clock(w.clock.clone())
    .code_flow(options)
    .build()
    .unwrap()
}

fn options(
    w: &World,
    user: &'static str,
    tamper: Tamper,
    opened: &Arc<AtomicUsize>,
) -> CodeFlowOptions {
    CodeFlowOptions::new(w.redirect.clone())
        .registered_client(w.auth.as_str(), ClientCredentials::public("ide"))
        .open_url(browser(user, tamper, opened.clone()))
}

async fn call_mcp(url: &Url, authorization: &Secret) -> (u16, String) {
    let r = no_redirects()
        .post(url.as_str())
        .header("authorization", authorization.expose())
        .body("{}")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn code_flow_session_signs_in_calls_and_reacquires_when_expired() {
    let w = world(false, false, false).await;
    let opened = Arc::new(AtomicUsize::new(0));
    let client = client(&w, options(&w, "ana", Tamper::Nothing, &opened));
    // The AS offers no ID-JAG profile: `connect` picks the code flow, with or without an ID
    // token.
    let session = client
        .connect(&w.mcp_url, Some(Secret::new("an-id-token")))
        .await
        .unwrap();
    assert!(session.is_code_flow());
    assert!(!session.server().supports_id_jag());
    let token = session.access_token().await.unwrap();
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    assert_eq!(token.resource(), w.mcp_url.as_str());
    // The same MCP call path as EMA: the `Authorization` header.
    let (status, sub) = call_mcp(&w.mcp_url, &token.authorization()).await;
    assert_eq!((status, sub.as_str()), (200, "local-00u8k2Lq91"));
    // Cached while usable: no new sign-in.
    assert_eq!(session.access_token().await.unwrap(), token);
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    // Expired on the client's clock: the sign-in runs again.
    w.clock.0.fetch_add(3600, Ordering::SeqCst);
    let fresh = session.access_token().await.unwrap();
    assert_ne!(fresh, token);
    assert_eq!(opened.load(Ordering::SeqCst), 2);
    // A 401 from the MCP server: dropped, and acquired again.
    let challenge = r#"Bearer error="invalid_token""#;
    match session.recover(&fresh, 401, Some(challenge)).await.unwrap() {
        Recovery::Retry(again) => {
            assert_ne!(again, fresh);
            let (status, _) = call_mcp(&w.mcp_url, &again.authorization()).await;
            assert_eq!(status, 200);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(opened.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn confidential_and_metadata_document_clients() {
    let w = world(false, true, false).await;
    let opened = Arc::new(AtomicUsize::new(0));
    // A confidential pre-registered client (client_secret_basic at the token endpoint).
    let confidential = CodeFlowOptions::new(w.redirect.clone())
        .registered_client(
            w.auth.as_str(),
            ClientCredentials::secret_basic("ide-conf", "conf-secret"),
        )
        .open_url(browser("ana", Tamper::Nothing, opened.clone()));
    let session = client(&w, confidential)
        .code_flow_session(&w.mcp_url)
        .await
        .unwrap();
    let token = session.access_token().await.unwrap();
    assert_eq!(call_mcp(&w.mcp_url, &token.authorization()).await.0, 200);
    // Negative control: a wrong secret is refused at the token endpoint.
    let wrong = CodeFlowOptions::new(w.redirect.clone())
        .registered_client(
            w.auth.as_str(),
            ClientCredentials::secret_basic("ide-conf", "not-the-secret"),
        )
        .open_url(browser("ana", Tamper::Nothing, opened.clone()));
    let session = client(&w, wrong)
        .code_flow_session(&w.mcp_url)
        .await
        .unwrap();
    let err = session.access_token().await.unwrap_err();
    assert!(
        matches!(err, EmaError::CodeFlow(CodeFlowError::TokenRejected(_))),
        "{err:?}"
    );
    // Not registered: the Client ID Metadata Document URL is the client id.
    let cimd = CodeFlowOptions::new(w.redirect.clone())
        .client_id_metadata_document(w.cimd.as_str())
        .open_url(browser("ana", Tamper::Nothing, opened.clone()));
    let session = client(&w, cimd)
        .code_flow_session(&w.mcp_url)
        .await
        .unwrap();
    assert_eq!(w.documents_fetched.load(Ordering::SeqCst), 0);
    // The AS fetches the document, takes its redirect URI and signs the user in; at the token
    // endpoint the `http://127.0.0.1` document URL (development) is the same public client by
    // the same rule (`ema_grant::cimd::is_metadata_document_url`), so the code is redeemed.
    let token = session.access_token().await.unwrap();
    assert_eq!(w.documents_fetched.load(Ordering::SeqCst), 1);
    let (status, sub) = call_mcp(&w.mcp_url, &token.authorization()).await;
    assert_eq!((status, sub.as_str()), (200, "local-00u8k2Lq91"));
}

#[tokio::test]
async fn no_client_identity_and_no_code_flow_options_are_typed_errors() {
    // The AS takes no metadata documents and the client is not registered there.
    let w = world(false, false, false).await;
    let opened = Arc::new(AtomicUsize::new(0));
    let unregistered = CodeFlowOptions::new(w.redirect.clone())
        .client_id_metadata_document(w.cimd.as_str())
        .open_url(browser("ana", Tamper::Nothing, opened.clone()));
    let session = client(&w, unregistered)
        .code_flow_session(&w.mcp_url)
        .await
        .unwrap();
    let err = session.access_token().await.unwrap_err();
    assert!(
        matches!(
            err,
            EmaError::CodeFlow(CodeFlowError::NoClientIdentity {
                metadata_document_supported: false,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        opened.load(Ordering::SeqCst),
        0,
        "nothing shown to the user"
    );
    // An EMA-only client never redirects the user (CL-8): no code-flow options, no session.
    let ema_only = EmaClient::builder(IdpConfig::new(
        "https://idp.unused.example",
        "https://idp.unused.example/token",
        ClientCredentials::public("unused"),
    ))
    .fetch_policy(FetchPolicy::insecure_loopback_development())
    .build()
    .unwrap();
    let err = ema_only.connect(&w.mcp_url, None).await.unwrap_err();
    assert_eq!(err, EmaError::CodeFlow(CodeFlowError::NotConfigured));
    let err = ema_only
        .connect(&w.mcp_url, Some(Secret::new("id-token")))
        .await
        .unwrap_err();
    assert_eq!(err.hop(), Hop::Discovery, "{err}");
}

#[tokio::test]
async fn ema_is_chosen_where_the_as_offers_the_id_jag_profile() {
    let w = world(true, false, false).await;
    let opened = Arc::new(AtomicUsize::new(0));
    let client = client(&w, options(&w, "ana", Tamper::Nothing, &opened));
    let ema = client
        .connect(&w.mcp_url, Some(Secret::new("id-token")))
        .await
        .unwrap();
    assert!(!ema.is_code_flow());
    // Without an ID token, or when asked, the code flow.
    assert!(
        client
            .connect(&w.mcp_url, None)
            .await
            .unwrap()
            .is_code_flow()
    );
    let asked = client.code_flow_session(&w.mcp_url).await.unwrap();
    assert!(asked.is_code_flow());
    asked.access_token().await.unwrap();
    assert_eq!(opened.load(Ordering::SeqCst), 1);
}

/// One sign-in with `tamper` as `user`, listener timeout `timeout`.
async fn sign_in(
    w: &World,
    user: &'static str,
    tamper: Tamper,
    timeout: Duration,
) -> Result<(), EmaError> {
    let opened = Arc::new(AtomicUsize::new(0));
    let options = CodeFlowOptions::new(w.redirect.clone().with_timeout(timeout))
        .registered_client(w.auth.as_str(), ClientCredentials::public("ide"))
        .open_url(browser(user, tamper, opened));
    let session = client(w, options).code_flow_session(&w.mcp_url).await?;
    session.access_token().await.map(|_| ())
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn wrong_state_is_refused() {
    let w = world(false, false, false).await;
    assert_eq!(sign_in(&w, "ana", Tamper::Nothing, LONG).await, Ok(()));
    let err = sign_in(&w, "ana", Tamper::State, LONG).await.unwrap_err();
    assert_eq!(err, EmaError::CodeFlow(CodeFlowError::StateMismatch));
    assert_eq!(err.hop(), Hop::Authorization);
    assert!(err.to_string().contains("state"), "{err}");
}

#[tokio::test]
async fn wrong_iss_is_refused() {
    let w = world(false, false, false).await;
    assert_eq!(sign_in(&w, "ana", Tamper::Nothing, LONG).await, Ok(()));
    let err = sign_in(&w, "ana", Tamper::Iss, LONG).await.unwrap_err();
    assert_eq!(
        err,
        EmaError::CodeFlow(CodeFlowError::IssuerMismatch {
            expected: w.auth.clone(),
            found: Some("https://evil.example".into()),
        })
    );
}

#[tokio::test]
async fn user_not_assigned_is_a_readable_access_denied() {
    let w = world(false, false, false).await;
    assert_eq!(sign_in(&w, "ana", Tamper::Nothing, LONG).await, Ok(()));
    let err = sign_in(&w, "bob", Tamper::Nothing, LONG).await.unwrap_err();
    assert!(
        matches!(err, EmaError::CodeFlow(CodeFlowError::AccessDenied { .. })),
        "{err:?}"
    );
    assert_eq!(err.oauth_code().unwrap().as_str(), "access_denied");
    let text = err.to_string();
    assert!(text.contains("the user is not assigned"), "{text}");
    assert!(text.contains("did not assign this user"), "{text}");
}

#[tokio::test]
async fn listener_times_out_when_the_browser_never_returns() {
    let w = world(false, false, false).await;
    // Positive control: the same listener, a browser that returns.
    assert_eq!(sign_in(&w, "ana", Tamper::Nothing, LONG).await, Ok(()));
    let short = Duration::from_millis(300);
    let err = sign_in(&w, "ana", Tamper::NeverReturns, short)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        EmaError::CodeFlow(CodeFlowError::Timeout { after: short })
    );
    assert!(err.to_string().contains("did not complete"), "{err}");
}

#[tokio::test]
async fn missing_iss_is_refused_where_the_server_says_it_sends_it() {
    // Not advertised: an answer without `iss` is taken (RFC 9207 §2.4).
    let w = world(false, false, false).await;
    assert_eq!(sign_in(&w, "ana", Tamper::DropIss, LONG).await, Ok(()));
    // Advertised: the same answer is refused; with `iss` it passes.
    let w = world(false, false, true).await;
    assert_eq!(sign_in(&w, "ana", Tamper::Nothing, LONG).await, Ok(()));
    let err = sign_in(&w, "ana", Tamper::DropIss, LONG).await.unwrap_err();
    assert_eq!(
        err,
        EmaError::CodeFlow(CodeFlowError::IssuerMismatch {
            expected: w.auth.clone(),
            found: None,
        })
    );
    assert!(err.to_string().contains("iss is missing"), "{err}");
}
