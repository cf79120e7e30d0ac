//! Revocation at the reference servers, driven by the `agent` binary: the IdP's admin route
//! disables a user and the next token exchange gets `invalid_grant` (RV-1); the AS advertises
//! its RFC 7009 endpoint (RV-20); the AS admin route disables the local subject and the MCP
//! server refuses the still-unexpired token with "token revoked" (RV-15), while enabling leaves
//! the old tokens dead and lets new ones through (RV-28). Each refusal has its positive control.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ema_examples::config::defaults;
use ema_examples::{admin, serve, servers};
use ema_jose::{Clock, SystemClock};

async fn agent(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

struct Servers {
    idp: String,
    auth_server: String,
    mcp: String,
}

impl Servers {
    async fn agent(&self) -> Output {
        agent(vec![
            "--idp".into(),
            self.idp.clone(),
            "--as".into(),
            self.auth_server.clone(),
            "--mcp".into(),
            self.mcp.clone(),
            "tools".into(),
        ])
        .await
    }

    /// Runs the agent until `done` holds for its output (the MCP server's mirror syncs every
    /// second), at most ten seconds.
    async fn agent_until(&self, done: impl Fn(&Output) -> bool) -> Output {
        let start = Instant::now();
        loop {
            let output = self.agent().await;
            if done(&output) || start.elapsed() > Duration::from_secs(10) {
                return output;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn start() -> Servers {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (idp_listener, idp) = serve::bind(loopback).await.unwrap();
    let (as_listener, auth_server) = serve::bind(loopback).await.unwrap();
    let (mcp_listener, mcp_base) = serve::bind(loopback).await.unwrap();
    let mcp = format!("{mcp_base}/mcp");
    let notes = format!("{mcp_base}/notes");
    let idp_cfg = defaults::idp(&idp, &auth_server, &mcp, &notes);
    let idp_app = servers::idp_app(&idp_cfg, &idp, clock.clone()).unwrap();
    let mut as_cfg = defaults::authorization_server(&idp, &auth_server, &mcp, &notes);
    for trusted in &mut as_cfg.trusted_issuers {
        trusted.jwks_url = Some(format!("{idp}{}", idp_cfg.endpoints.jwks));
    }
    let (as_app, ledger) =
        servers::authorization_server_app_and_ledger(&as_cfg, &auth_server, clock.clone()).unwrap();
    let mcp_cfg = defaults::mcp_server(&auth_server, &mcp_base);
    let mcp_app = servers::mcp_app_with_ledger(&mcp_cfg, &mcp_base, clock, ledger).unwrap();
    for (listener, app) in [
        (idp_listener, idp_app),
        (as_listener, as_app),
        (mcp_listener, mcp_app),
    ] {
        tokio::spawn(serve::serve(listener, app, std::future::pending()));
    }
    Servers {
        idp,
        auth_server,
        mcp,
    }
}

async fn post_json(url: &str, secret: &str, body: serde_json::Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(secret)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rv1_disabled_user_gets_no_id_jag_and_enabled_user_does() {
    let s = start().await;
    let users = format!("{}{}", s.idp, admin::IDP_ADMIN_USERS_PATH);
    let ok = s.agent().await;
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let disable = serde_json::json!({"subject": "00u8k2Lq91", "action": "disable"});
    let (status, _) = post_json(&users, "wrong", disable.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(s.agent().await.status.code(), Some(0), "nothing changed");
    let (status, body) = post_json(&users, defaults::DEV_IDP_ADMIN_SECRET, disable).await;
    assert_eq!(status, 200, "{body}");
    let refused = s.agent().await;
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("disabled"),
        "{}",
        stderr(&refused)
    );
    let enable = serde_json::json!({"subject": "00u8k2Lq91", "action": "enable"});
    let (status, _) = post_json(&users, defaults::DEV_IDP_ADMIN_SECRET, enable).await;
    assert_eq!(status, 200);
    // The IdP's SETs (RV-3) also revoked her at the AS up to the disable's second, inclusive
    // (D-38): a token of that same second stays dead, one of the next second passes.
    let back = s.agent_until(|o| o.status.code() == Some(0)).await;
    assert_eq!(back.status.code(), Some(0), "{}", stderr(&back));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rv15_disabled_local_subject_is_refused_at_the_mcp_server() {
    let s = start().await;
    // RV-20: the metadata advertises the RFC 7009 endpoint.
    let metadata: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        s.auth_server
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        metadata["revocation_endpoint"],
        format!("{}{}", s.auth_server, servers::REVOCATION_PATH)
    );
    let ok = s.agent().await;
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let revoke = format!("{}{}", s.auth_server, ema_server::ADMIN_REVOKE_PATH);
    // ana is u-17 at the AS.
    let disable = serde_json::json!({"subject": "u-17", "action": "disable"});
    let (status, _) = post_json(&revoke, "wrong", disable.clone()).await;
    assert_eq!(status, 401);
    let (status, body) = post_json(&revoke, defaults::DEV_AS_ADMIN_SECRET, disable).await;
    assert_eq!(status, 200, "{body}");
    let refused = s.agent_until(|o| o.status.code() != Some(0)).await;
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    // The agent reports the 401 (the body's "token revoked" is checked in ema-server's tests).
    assert!(
        stderr(&refused).contains("MCP server refused the token")
            && stderr(&refused).contains("401"),
        "{}",
        stderr(&refused)
    );
    let enable = serde_json::json!({"subject": "u-17", "action": "enable"});
    let (status, body) = post_json(&revoke, defaults::DEV_AS_ADMIN_SECRET, enable).await;
    assert_eq!(status, 200, "{body}");
    // New tokens (issued after the watermark) pass once the mirror has the change.
    let back = s.agent_until(|o| o.status.code() == Some(0)).await;
    assert_eq!(back.status.code(), Some(0), "{}", stderr(&back));
}
