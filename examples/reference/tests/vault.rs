//! The reference MCP server's `[vault]` end to end, on OS-chosen loopback ports: the notes tools
//! ask an unconnected user to connect (URL-mode elicitation), the test plays the browser at the
//! mock notes provider, the callback stores the token, the tools work, a token near expiry is
//! refreshed (the clock is moved, not waited for), offboarding revokes everything at the
//! provider and the next call asks to connect again. No provider token ever reaches the agent,
//! a page or the audit trail. Configuration mistakes are startup errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests may unwrap"
)]

use std::path::PathBuf;
use std::sync::Arc;

use ema_client::{ClientCredentials, EmaClient, EmaHttpClient, FetchPolicy, IdpConfig, Secret};
use ema_client::{declare_url_elicitation, ema_client_config};
use ema_examples::config::{AuditFileConfig, McpServerConfig, defaults};
use ema_examples::notes::{NotesConfig, NotesProvider};
use ema_examples::sso::SsoClient;
use ema_examples::vault::ShiftedClock;
use ema_examples::{serve, servers};
use ema_jose::Clock;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

const NOTES_USER: &str = "ana@notes.example";
const LIFETIME: u64 = 120;

struct World {
    auth_server: String,
    mcp_base: String,
    provider: NotesProvider,
    clock: Arc<ShiftedClock>,
    agent: rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::InitializeRequestParams>,
    http: reqwest::Client,
    trail: PathBuf,
}

/// The IdP, the authorization server, the MCP server with `[vault]` (and its audit trail at
/// `trail`) and the notes provider; ana signed in and her agent connected.
async fn world(trail: PathBuf) -> World {
    world_with(trail, false).await
}

/// [`world`]; with `ledger`, the authorization server keeps a revocation ledger that the MCP
/// server mirrors (RV-15..RV-19).
async fn world_with(trail: PathBuf, ledger: bool) -> World {
    let shifted = Arc::new(ShiftedClock::new());
    let clock: Arc<dyn Clock> = shifted.clone();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (idp_listener, idp) = serve::bind(loopback).await.unwrap();
    let (as_listener, auth_server) = serve::bind(loopback).await.unwrap();
    let (mcp_listener, mcp_base) = serve::bind(loopback).await.unwrap();
    let (notes_listener, notes) = serve::bind(loopback).await.unwrap();
    let mcp = format!("{mcp_base}/mcp");
    let other = format!("{mcp_base}/other");
    let idp_cfg = defaults::idp(&idp, &auth_server, &mcp, &other);
    let mut as_cfg = defaults::authorization_server(&idp, &auth_server, &mcp, &other);
    for trusted in &mut as_cfg.trusted_issuers {
        trusted.jwks_url = Some(format!("{idp}{}", idp_cfg.endpoints.jwks));
    }
    let mut mcp_cfg = defaults::mcp_server(&auth_server, &mcp_base);
    mcp_cfg.vault = Some(defaults::vault(&notes));
    mcp_cfg.audit = Some(AuditFileConfig {
        file: trail.clone(),
        checkpoint_every: 1000,
    });
    let provider = NotesProvider::new(
        NotesConfig {
            issuer: notes.clone(),
            client_id: defaults::NOTES_CLIENT_ID.into(),
            client_secret: defaults::NOTES_CLIENT_SECRET.into(),
            redirect_uris: vec![format!("{mcp_base}/connect/notes/callback")],
            user: NOTES_USER.into(),
            access_token_lifetime_secs: LIFETIME,
        },
        clock.clone(),
    );
    let (as_app, mcp_app) = if ledger {
        let (as_app, ledger) =
            servers::authorization_server_app_and_ledger(&as_cfg, &auth_server, clock.clone())
                .unwrap();
        let mcp_app =
            servers::mcp_app_with_ledger(&mcp_cfg, &mcp_base, clock.clone(), ledger).unwrap();
        (as_app, mcp_app)
    } else {
        (
            servers::authorization_server_app(&as_cfg, &auth_server, clock.clone()).unwrap(),
            servers::mcp_app(&mcp_cfg, &mcp_base, clock.clone()).unwrap(),
        )
    };
    let apps = [
        (
            idp_listener,
            servers::idp_app(&idp_cfg, &idp, clock.clone()).unwrap(),
        ),
        (as_listener, as_app),
        (mcp_listener, mcp_app),
        (notes_listener, provider.router()),
    ];
    for (listener, app) in apps {
        tokio::spawn(serve::serve(listener, app, std::future::pending()));
    }
    let id_token = SsoClient {
        idp: idp.clone(),
        client_id: "desk-idp-01".into(),
        client_secret: "desk-secret".into(),
        redirect_uri: "http://127.0.0.1/callback".into(),
        client_secret_post: false,
    }
    .sign_in("ana", "ana-password")
    .await
    .unwrap();
    let client = EmaClient::builder(IdpConfig::new(
        idp.as_str(),
        format!("{idp}/token"),
        ClientCredentials::secret_basic("desk-idp-01", "desk-secret"),
    ))
    .authorization_server(
        auth_server.as_str(),
        ClientCredentials::secret_basic("tc_5f2a91", "tc-secret"),
    )
    .fetch_policy(FetchPolicy::insecure_loopback_development())
    .build()
    .unwrap();
    let session = Arc::new(
        client
            .session(&url::Url::parse(&mcp).unwrap(), Secret::new(id_token))
            .await
            .unwrap(),
    );
    // The test shows (follows) the link of a URL elicitation: the agent declares URL mode.
    let mut config = ema_client_config();
    declare_url_elicitation(&mut config.capabilities);
    let agent = config
        .serve(EmaHttpClient::new(session).unwrap().into_transport())
        .await
        .unwrap();
    World {
        auth_server,
        mcp_base,
        provider,
        clock: shifted,
        agent,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        trail,
    }
}

use rmcp::ServiceExt as _;

/// What a call came to: the result's text (and whether it is an error), or the elicited URL.
#[derive(Debug)]
enum Outcome {
    Result {
        ok: bool,
        text: String,
    },
    Connect {
        url: String,
        raw: String,
    },
    /// The call was under way when the token was revoked (RV-18): its stream answered it with
    /// the access-revoked error.
    Cancelled,
}

async fn call(w: &World, tool: &'static str, args: Value) -> Outcome {
    let request = CallToolRequestParams::new(tool)
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    // A call that gets no answer fails the test here instead of hanging it.
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        w.agent.call_tool(request),
    )
    .await
    .unwrap_or_else(|_| panic!("{tool}: no answer within 30 s"));
    match answer {
        Ok(result) => Outcome::Result {
            ok: result.is_error != Some(true),
            text: result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect(),
        },
        Err(rmcp::ServiceError::McpError(e)) if e.code.0 == -32042 => {
            let raw = serde_json::to_string(&e).unwrap();
            let data = e.data.unwrap();
            Outcome::Connect {
                url: data["elicitations"][0]["url"].as_str().unwrap().to_owned(),
                raw,
            }
        }
        Err(rmcp::ServiceError::McpError(e)) if e.code.0 == ema_server::ACCESS_REVOKED_CODE => {
            Outcome::Cancelled
        }
        Err(e) => panic!("{tool}: {e}"),
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ema-vault-{name}-{}-{}",
            std::process::id(),
            ema_jose::random_id().unwrap()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_use_refresh_offboard() {
    let dir = TempDir::new("flow");
    let w = world(dir.0.join("mcp-audit.jsonl")).await;
    let mut seen_by_agent = String::new();

    // 1. Not connected: a URL elicitation to the provider's authorize endpoint.
    let Outcome::Connect { url, raw } = call(&w, "list_notes", json!({})).await else {
        panic!("the first call must ask to connect");
    };
    seen_by_agent.push_str(&raw);
    assert!(url.starts_with(&format!("{}/authorize?", w.provider.config().issuer)));
    assert!(url.contains("code_challenge_method=S256") && url.contains("state="));

    // 2. The browser: the provider approves and redirects to the callback, which stores.
    let r = w.http.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/connect/notes/callback?", w.mcp_base)));
    let r = w.http.get(&location).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("connected"), "{page}");
    // The same callback again: the state is spent.
    let r = w.http.get(&location).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // 3. The tools act at the provider as ana.
    match call(&w, "add_note", json!({"text": "ship the vault"})).await {
        Outcome::Result { ok: true, text } => seen_by_agent.push_str(&text),
        other => panic!("add_note: {other:?}"),
    }
    match call(&w, "list_notes", json!({})).await {
        Outcome::Result { ok: true, text } => {
            assert!(
                text.contains("ship the vault") && text.contains(NOTES_USER),
                "{text}"
            );
            seen_by_agent.push_str(&text);
        }
        other => panic!("list_notes: {other:?}"),
    }
    assert_eq!(w.provider.refreshes(), 0);

    // 4. Near expiry (the clock moved into the vault's 60 s skew): one refresh, then the call.
    w.clock.advance(LIFETIME - 20);
    match call(&w, "list_notes", json!({})).await {
        Outcome::Result { ok: true, text } => seen_by_agent.push_str(&text),
        other => panic!("list_notes after the clock moved: {other:?}"),
    }
    assert_eq!(w.provider.refreshes(), 1);
    // The fresh token is not near expiry: no second refresh.
    call(&w, "list_notes", json!({})).await;
    assert_eq!(w.provider.refreshes(), 1);

    // 5. Offboarding: a wrong admin token is refused (nothing revoked), the right one revokes.
    let offboard = format!("{}/admin/offboard", w.mcp_base);
    let r = w
        .http
        .post(&offboard)
        .bearer_auth("not-the-admin-token")
        .json(&json!({"subject": "u-17"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The refreshed access and refresh tokens, and the old access token until it expires.
    assert_eq!(w.provider.live_tokens(NOTES_USER), 3);
    let r = w
        .http
        .post(&offboard)
        .bearer_auth(defaults::ADMIN_TOKEN)
        .json(&json!({"subject": "u-17"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(
        report["providers"],
        json!([{"provider": "notes", "outcome": "revoked"}])
    );
    assert_eq!(w.provider.live_tokens(NOTES_USER), 0);
    assert!(w.provider.revocations() >= 1);

    // 6. The next call asks to connect again.
    let Outcome::Connect { raw, .. } = call(&w, "list_notes", json!({})).await else {
        panic!("after offboarding the call must ask to connect");
    };
    seen_by_agent.push_str(&raw);

    // No provider token reached the agent, the redirect, the page or the audit trail.
    let trail = std::fs::read_to_string(&w.trail).unwrap();
    let issued = w.provider.issued_tokens();
    assert_eq!(issued.len(), 4, "two grants: connect and refresh");
    for token in &issued {
        for (what, text) in [
            ("agent", &seen_by_agent),
            ("redirect", &location),
            ("page", &page),
            ("trail", &trail),
        ] {
            assert!(
                !text.contains(token.as_str()),
                "a provider token in the {what}"
            );
        }
    }
    // The trail tells the story.
    for kind in [
        "credential_stored",
        "credential_used",
        "credential_refreshed",
        "credential_revoked",
        "subject_offboarded",
    ] {
        assert!(
            trail.contains(&format!("\"kind\":\"{kind}\"")),
            "{kind} missing"
        );
    }
}

fn vault(cfg: &mut McpServerConfig) -> &mut ema_examples::config::VaultConfig {
    cfg.vault.as_mut().unwrap()
}

fn configured(change: impl FnOnce(&mut McpServerConfig)) -> Result<(), String> {
    let mut cfg = defaults::mcp_server("http://127.0.0.1:9401", "http://127.0.0.1:9402");
    cfg.vault = Some(defaults::vault("http://127.0.0.1:9403"));
    change(&mut cfg);
    let clock: Arc<dyn Clock> = Arc::new(ema_jose::SystemClock);
    servers::mcp_app(&cfg, "http://127.0.0.1:9402", clock)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[test]
fn vault_configuration_mistakes_are_startup_errors() {
    configured(|_| {}).unwrap();
    let err = configured(|c| {
        vault(c).tools.insert("no_such_tool".into(), "notes".into());
    })
    .unwrap_err();
    assert!(err.contains("`no_such_tool` is not a tool"), "{err}");
    let err = configured(|c| {
        vault(c).tools.insert("list_notes".into(), "github".into());
    })
    .unwrap_err();
    assert!(
        err.contains("provider `github`, which is not configured"),
        "{err}"
    );
    let err = configured(|c| {
        vault(c).providers.get_mut("notes").unwrap().token_url =
            "http://notes.example/token".into();
    })
    .unwrap_err();
    assert!(err.contains("not an https URL"), "{err}");
    let err = configured(|c| {
        let p = vault(c).providers.get_mut("notes").unwrap();
        p.client_secret_env = Some("EMA_NOTES_SECRET_NOT_SET_ANYWHERE".into());
    })
    .unwrap_err();
    assert!(err.contains("exactly one"), "{err}");
    let err = configured(|c| c.authz.enabled = false).unwrap_err();
    assert!(err.contains("[authz] enabled"), "{err}");
}

/// The sample's `[vault]` section, uncommented, with the SQLite file and key in `dir`.
fn sample_vault(dir: &std::path::Path) -> McpServerConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/mcp-server.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut in_vault = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("# [vault") {
                in_vault = true;
            }
            if !in_vault || l.starts_with("# #") || l.trim() == "#" {
                return l.to_owned();
            }
            let l = l.trim_start_matches("# ");
            if l.starts_with("store = ") {
                format!(
                    "store = {:?}",
                    dir.join("vault.sqlite").display().to_string()
                )
            } else if l.starts_with("master_key_file = ") {
                format!(
                    "master_key_file = {:?}",
                    dir.join("vault.key").display().to_string()
                )
            } else if l.starts_with("admin_token_env") {
                "admin_token = \"test-admin\"".to_owned()
            } else if l.starts_with("client_secret_env") {
                "client_secret = \"notes-secret\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    let file = dir.join("mcp-server.toml");
    std::fs::write(&file, lines.join("\n")).unwrap();
    ema_examples::config::load(&file).unwrap()
}

#[tokio::test]
async fn the_sample_vault_keeps_credentials_encrypted_across_restarts() {
    use ema_vault::{Credential, MasterKey, Owner, ProviderId, StoreSource, TokenSet};
    let dir = TempDir::new("sqlite");
    std::fs::write(
        dir.0.join("vault.key"),
        MasterKey::generate().unwrap().to_hex().as_str(),
    )
    .unwrap();
    let cfg = sample_vault(&dir.0);
    let v = cfg.vault.as_ref().unwrap();
    assert_eq!(v.tools["list_notes"], "notes");
    let open = |cfg: &McpServerConfig| {
        ema_examples::vault::build(
            cfg.vault.as_ref().unwrap(),
            "http://127.0.0.1:9402",
            "http://127.0.0.1:9401",
            Arc::new(ema_jose::SystemClock),
            ema_server::audit::AuditLog::disabled(),
        )
        .unwrap()
    };
    let key = Owner::new("http://127.0.0.1:9401", "u-17")
        .unwrap()
        .at(ProviderId::new("notes").unwrap());
    let first = open(&cfg);
    first
        .vault
        .store(
            &key,
            Credential::OAuth(TokenSet::bearer(ema_vault::Secret::new(
                "at-on-disk-123".into(),
            ))),
            StoreSource::Connect,
        )
        .await
        .unwrap();
    drop(first);
    // The file holds no plaintext token; a restart reads it back.
    let bytes = std::fs::read(dir.0.join("vault.sqlite")).unwrap();
    assert!(!bytes.windows(14).any(|w| w == b"at-on-disk-123"));
    let again = open(&cfg);
    assert_eq!(
        again.vault.get(&key).await.unwrap().secret().expose(),
        "at-on-disk-123"
    );
    drop(again);
    // Another master key: the record does not open (never garbage).
    std::fs::write(
        dir.0.join("vault.key"),
        MasterKey::generate().unwrap().to_hex().as_str(),
    )
    .unwrap();
    let wrong = open(&cfg);
    assert!(matches!(
        wrong.vault.get(&key).await,
        Err(ema_vault::VaultError::Decrypt(_))
    ));
    // No key at all: a startup error naming it.
    let mut keyless = cfg.clone();
    keyless.vault.as_mut().unwrap().master_key_file = None;
    let err = ema_examples::vault::build(
        keyless.vault.as_ref().unwrap(),
        "http://127.0.0.1:9402",
        "http://127.0.0.1:9401",
        Arc::new(ema_jose::SystemClock),
        ema_server::audit::AuditLog::disabled(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("master_key_file"), "{err}");
}

#[test]
fn vault_config_debug_hides_the_client_secret_and_the_admin_token() {
    let mut cfg = defaults::mcp_server("http://127.0.0.1:9401", "http://127.0.0.1:9402");
    cfg.vault = Some(defaults::vault("http://127.0.0.1:9403"));
    for text in [format!("{cfg:?}"), format!("{cfg:#?}")] {
        for secret in [defaults::NOTES_CLIENT_SECRET, defaults::ADMIN_TOKEN] {
            assert!(!text.contains(secret), "{secret} leaked into {text}");
        }
        // The rest stays visible.
        assert!(text.contains("<redacted>") && text.contains(defaults::NOTES_CLIENT_ID));
    }
}

/// Plays the user's browser through a connect URL: the provider approves, the callback stores.
async fn connect(w: &World, url: &str) {
    let r = w.http.get(url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let r = w.http.get(&location).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

// RV-19 at the reference MCP server with its revocation mirror: after ana's sessions are
// revoked at the authorization server, her agent comes back with a fresh token (RV-15 lets it
// through: issued after the watermark) but the notes credential she connected before the
// revocation is refused (audited `credential_refused`) and she is asked to connect again; once
// she has, the tools work. Control: before the revocation the same call works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rv19_credentials_from_before_a_revocation_are_refused_until_reconnected() {
    let dir = TempDir::new("rv19");
    let w = world_with(dir.0.join("mcp-audit.jsonl"), true).await;
    let Outcome::Connect { url, .. } = call(&w, "list_notes", json!({})).await else {
        panic!("the first call must ask to connect");
    };
    connect(&w, &url).await;
    match call(&w, "list_notes", json!({})).await {
        Outcome::Result { ok: true, .. } => {}
        other => panic!("list_notes before the revocation: {other:?}"),
    }
    // The admin signs ana (u-17 at the AS) out everywhere; the clock moves past the watermark's
    // second so that her agent's next token is a fresh, post-revocation one.
    let revoke = format!("{}{}", w.auth_server, ema_server::ADMIN_REVOKE_PATH);
    let r = w
        .http
        .post(&revoke)
        .bearer_auth(defaults::DEV_AS_ADMIN_SECRET)
        .json(&json!({"subject": "u-17", "action": "revoke"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    w.clock.advance(2);
    // The MCP server's mirror syncs every second: until it has the change the old credential
    // still serves; then the call asks to connect again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let url = loop {
        match call(&w, "list_notes", json!({})).await {
            Outcome::Connect { url, raw } => {
                assert!(raw.contains("access revoked"), "{raw}");
                break url;
            }
            // Still served (the mirror has not synced yet), or, when the revocation lands while
            // the call runs, cut with an answer (RV-18): ask again.
            Outcome::Result { ok: true, .. } | Outcome::Cancelled
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => panic!("list_notes after the revocation: {other:?}"),
        }
    };
    let trail = std::fs::read_to_string(&w.trail).unwrap();
    assert!(
        trail.contains("\"kind\":\"credential_refused\""),
        "no credential_refused"
    );
    connect(&w, &url).await;
    match call(&w, "list_notes", json!({})).await {
        Outcome::Result { ok: true, text } => assert!(text.contains(NOTES_USER), "{text}"),
        other => panic!("list_notes after reconnecting: {other:?}"),
    }
}
