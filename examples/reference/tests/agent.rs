//! The `agent` binary as an adopter meets it: `--help` documents every flag with its default and
//! the exit codes; refusals are sentences naming the server that refused, each with its exit
//! code (2 configuration, 3 refusal, 4 transport), against the reference servers on OS-chosen
//! loopback ports, with a successful run as the positive control.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::process::Output;
use std::sync::Arc;

use ema_examples::config::{IdpConfig, McpServerConfig, defaults};
use ema_examples::{serve, servers};
use ema_jose::{Clock, SystemClock};

/// Runs the agent with `args` (off the async workers: the servers run on them).
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
    /// `--idp`, `--as`, `--mcp` for these servers, then `rest`.
    fn args(&self, rest: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--idp".into(),
            self.idp.clone(),
            "--as".into(),
            self.auth_server.clone(),
            "--mcp".into(),
            self.mcp.clone(),
        ];
        args.extend(rest.iter().map(|s| (*s).to_owned()));
        args
    }
}

async fn start() -> Servers {
    start_with(|_| {}).await
}

/// The reference servers, the MCP server's configuration changed by `mcp_config`.
async fn start_with(mcp_config: impl FnOnce(&mut McpServerConfig)) -> Servers {
    start_configured(|_| {}, mcp_config).await
}

/// The reference servers, the IdP's and the MCP server's configurations changed.
async fn start_configured(
    idp_config: impl FnOnce(&mut IdpConfig),
    mcp_config: impl FnOnce(&mut McpServerConfig),
) -> Servers {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (idp_listener, idp) = serve::bind(loopback).await.unwrap();
    let (as_listener, auth_server) = serve::bind(loopback).await.unwrap();
    let (mcp_listener, mcp_base) = serve::bind(loopback).await.unwrap();
    let mcp = format!("{mcp_base}/mcp");
    let notes = format!("{mcp_base}/notes");
    let mut idp_cfg = defaults::idp(&idp, &auth_server, &mcp, &notes);
    idp_config(&mut idp_cfg);
    let idp_app = servers::idp_app(&idp_cfg, &idp, clock.clone()).unwrap();
    let mut as_cfg = defaults::authorization_server(&idp, &auth_server, &mcp, &notes);
    // The AS fetches the IdP's keys where the IdP publishes them.
    for trusted in &mut as_cfg.trusted_issuers {
        trusted.jwks_url = Some(format!("{idp}{}", idp_cfg.endpoints.jwks));
    }
    let as_app = servers::authorization_server_app(&as_cfg, &auth_server, clock.clone()).unwrap();
    let mut mcp_cfg = defaults::mcp_server(&auth_server, &mcp_base);
    mcp_config(&mut mcp_cfg);
    let mcp_app = servers::mcp_app(&mcp_cfg, &mcp_base, clock).unwrap();
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

#[tokio::test]
async fn help_lists_every_flag_with_its_default_and_the_exit_codes() {
    let output = agent(vec!["--help".into()]).await;
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    let d = defaults::agent();
    for needle in [
        "--config FILE",
        "--idp URL",
        "--as URL",
        "--mcp URL",
        "--user NAME",
        "--password PASS",
        "--help",
        d.idp.as_str(),
        d.authorization_server.as_str(),
        d.mcp.as_str(),
        "default: ana",
        "desk-idp-01",
        "tc_5f2a91",
        "examples/config/agent.toml",
        "2  configuration error",
        "3  refused",
        "4  transport failure",
    ] {
        assert!(help.contains(needle), "`{needle}` missing from:\n{help}");
    }
    // Secrets are not printed.
    assert!(!help.contains("desk-secret") && !help.contains("tc-secret"));
}

#[tokio::test]
async fn configuration_errors_exit_2() {
    for args in [
        vec!["--bogus".to_owned()],
        vec!["--idp".to_owned()],
        vec!["--config".to_owned(), "/nonexistent/agent.toml".to_owned()],
    ] {
        let output = agent(args.clone()).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).starts_with("agent: "),
            "{}",
            stderr(&output)
        );
    }
}

#[tokio::test]
async fn refusals_are_sentences_with_exit_3_and_transport_failures_exit_4() {
    let servers = start().await;

    // Positive control: ana lists the tools.
    let output = agent(servers.args(&["tools"])).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("add_task"));

    // TX-8, D-2: bob is not assigned to the task server.
    let output = agent(servers.args(&["--user", "bob", "--password", "bob-password"])).await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "agent: access denied by the IdP: user or client is not assigned to this \
             authorization server\n"
        ),
        "{}",
        stderr(&output)
    );

    // A wrong password at the IdP's login form.
    let output = agent(servers.args(&["--password", "wrong"])).await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("agent: the IdP refused the sign-in of `ana`"),
        "{}",
        stderr(&output)
    );

    // AS-20, D-24: the agent's client secret at the authorization server is wrong (--config).
    let dir = std::env::temp_dir().join(format!("ema-agent-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wrong = dir.join("wrong-as-secret.toml");
    std::fs::write(
        &wrong,
        "[as_client]\nid = \"tc_5f2a91\"\nsecret = \"not-it\"\n",
    )
    .unwrap();
    let output = agent(servers.args(&["--config", wrong.to_str().unwrap()])).await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "agent: the authorization server refused the client's credentials: client \
             authentication failed (invalid_client)"
        ),
        "{}",
        stderr(&output)
    );
    std::fs::remove_dir_all(&dir).ok();

    // No sentence is a Debug dump, and rmcp's own ERROR lines stay out of the way.
    for args in [
        servers.args(&["--user", "bob", "--password", "bob-password"]),
        servers.args(&["--password", "wrong"]),
    ] {
        let text = stderr(&agent(args).await);
        assert!(!text.contains(" ERROR ") && !text.contains("{ "), "{text}");
    }

    // Transport: nothing listens at the IdP's address.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut args = servers.args(&[]);
    args[1] = dead.clone();
    let output = agent(args).await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("agent: cannot reach the IdP at {dead}")),
        "{}",
        stderr(&output)
    );
}

/// CL-10, TX-9 end to end: the MCP server wants `tasks.admin` for `whoami`; the agent asks the
/// IdP for it, the IdP narrows the request to what ana's group may have, the authorization
/// server grants what the ID-JAG carries, and the MCP server still refuses `whoami`. The
/// sentence names what was requested, what the IdP and the authorization server granted, what
/// the MCP server requires, and that the IdP narrowed it. Control: `tools` works with the same
/// (narrowed) token.
/// CL-14: an operator serves the IdP's endpoints at other paths (`[endpoints]`); the agent
/// reads them from the IdP's OpenID configuration instead of assuming `/authorize` and `/token`.
#[tokio::test]
async fn cl14_agent_follows_the_idps_published_endpoint_paths() {
    let servers = start_configured(
        |idp| {
            idp.endpoints.token = "/oauth2/v1/token".into();
            idp.endpoints.jwks = "/oauth2/v1/keys".into();
            idp.endpoints.authorize = "/oauth2/v1/authorize".into();
        },
        |_| {},
    )
    .await;
    let output = agent(servers.args(&["tools"])).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // Control: an `--idp` that is not the IdP's issuer is a configuration error (exit 2).
    let mut args = servers.args(&["tools"]);
    args[1] = format!("{}/elsewhere", servers.idp);
    let output = agent(args).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("/elsewhere/.well-known/openid-configuration answered HTTP 404"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn cl10_a_step_up_the_idp_narrows_is_explained() {
    let servers = start_with(|mcp| {
        mcp.scopes
            .tools
            .insert("whoami".into(), vec!["tasks.admin".into()]);
    })
    .await;
    let output = agent(servers.args(&["tools"])).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let output = agent(servers.args(&["whoami"])).await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let text = stderr(&output);
    for part in [
        "agent: the MCP server refused the token: it requires scope `",
        // The session started with the least it needed (`tasks.read`, from the challenge)
        // and stepped up for `whoami` only (CL-10).
        "requested `tasks.admin tasks.read`",
        "the IdP granted `tasks.read` in the ID-JAG",
        "the authorization server granted `tasks.read`",
        "the MCP server requires `tasks.admin",
        "the IdP narrowed the request (withheld `tasks.admin`)",
    ] {
        assert!(text.contains(part), "`{part}` missing from:\n{text}");
    }
}

/// A tool that needs a downstream account the user has not connected: the agent shows the
/// connect link of the URL elicitation (exit 1). Control: a tool without a provider runs.
#[tokio::test]
async fn a_url_elicitation_is_shown_as_the_link_to_open() {
    let notes = "http://127.0.0.1:9";
    let servers = start_with(|mcp| mcp.vault = Some(defaults::vault(notes))).await;
    let output = agent(servers.args(&["call", "whoami"])).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = agent(servers.args(&["call", "list_notes"])).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("needs your notes account"), "{text}");
    assert!(
        text.contains(&format!(
            "Open in a browser: {notes}/authorize?response_type=code"
        )),
        "{text}"
    );
}
