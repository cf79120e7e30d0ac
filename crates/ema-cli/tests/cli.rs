//! `ema` against the reference IdP, authorization server and MCP server, started in-process on
//! OS-chosen loopback ports: every subcommand, its positive run and its failure rows with their
//! exit codes (2 usage, 3 discovery, 4 refused, 5 network, 6 not verified).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use ema_examples::config::{AuthorizationServerConfig, IdpConfig, McpServerConfig, defaults};
use ema_examples::sso::SsoClient;
use ema_examples::{serve, servers};
use ema_jose::{Clock, SystemClock};

/// Runs `ema` with `args` (off the async workers: the servers run on them), `stdin` piped in.
async fn ema_with_stdin(args: Vec<String>, stdin: Option<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ema"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).unwrap();
        }
        drop(pipe);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

async fn ema(args: &[&str]) -> Output {
    ema_with_stdin(args.iter().map(|s| (*s).to_owned()).collect(), None).await
}

fn out(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn err(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        out(output),
        err(output)
    );
}

struct Servers {
    idp: String,
    auth_server: String,
    mcp: String,
    dir: PathBuf,
}

impl Drop for Servers {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn start() -> Servers {
    start_with(|_| {}).await
}

/// The reference servers, the MCP server's configuration changed by `mcp_config`, and a
/// scratch directory for config and token files.
async fn start_with(mcp_config: impl FnOnce(&mut McpServerConfig)) -> Servers {
    start_configured(|_| {}, |_| {}, mcp_config).await
}

/// The reference servers, each configuration changed by its closure.
async fn start_configured(
    idp_config: impl FnOnce(&mut IdpConfig),
    as_config: impl FnOnce(&mut AuthorizationServerConfig),
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
    for trusted in &mut as_cfg.trusted_issuers {
        trusted.jwks_url = Some(format!("{idp}{}", idp_cfg.endpoints.jwks));
    }
    as_config(&mut as_cfg);
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
    let dir = std::env::temp_dir().join(format!(
        "ema-cli-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Servers {
        idp,
        auth_server,
        mcp,
        dir,
    }
}

impl Servers {
    /// A config file with the development clients; `as_secret` at the authorization server.
    fn config(&self, name: &str, idp_secret: &str, as_secret: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(
            &path,
            format!(
                "[idp]\nissuer = \"{}\"\nclient_id = \"desk-idp-01\"\nsecret = \"{idp_secret}\"\n\n\
                 [authorization_server]\nissuer = \"{}\"\nclient_id = \"tc_5f2a91\"\n\
                 auth_method = \"client_secret_basic\"\nsecret = \"{as_secret}\"\n",
                self.idp, self.auth_server
            ),
        )
        .unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn good_config(&self) -> String {
        self.config("ema.toml", "desk-secret", "tc-secret")
    }

    /// ana's ID token from the IdP's login form, in a file.
    async fn id_token_file(&self) -> (String, String) {
        let sso = SsoClient {
            idp: self.idp.clone(),
            client_id: "desk-idp-01".into(),
            client_secret: "desk-secret".into(),
            redirect_uri: "http://127.0.0.1/callback".into(),
            client_secret_post: false,
        };
        let token = sso.sign_in("ana", "ana-password").await.unwrap();
        let path = self.dir.join("id_token.jwt");
        std::fs::write(&path, format!("{token}\n")).unwrap();
        (path.to_str().unwrap().to_owned(), token)
    }
}

#[tokio::test]
async fn help_usage_errors_and_version() {
    let output = ema(&["--help"]).await;
    assert_exit(&output, 0);
    for needle in [
        "discover MCP_URL",
        "token MCP_URL --id-token-file F",
        "tools MCP_URL",
        "call MCP_URL TOOL [JSON]",
        "decode JWT",
        "verify JWT --jwks FILE|URL",
        "--insecure-loopback",
        "2  usage",
        "3  discovery problem",
        "4  refused",
        "5  network",
        "6  verify",
    ] {
        assert!(out(&output).contains(needle), "`{needle}` missing");
    }
    assert!(out(&ema(&["--version"]).await).starts_with("ema 0."));

    for (args, says) in [
        (vec![], "no command given"),
        (vec!["frobnicate"], "unknown command `frobnicate`"),
        (vec!["discover"], "usage: ema discover MCP_URL"),
        (vec!["discover", "--bogus", "x"], "unknown flag `--bogus`"),
        (
            vec!["token", "https://mcp.example/mcp"],
            "needs `--id-token-file FILE`",
        ),
        (vec!["verify", "a.b.c"], "needs `--jwks FILE|URL`"),
        (
            vec!["verify", "a.b.c", "--jwks", "j", "--now", "soon"],
            "`--now` takes Unix seconds",
        ),
        (
            vec![
                "token",
                "https://mcp.example/mcp",
                "--id-token-file",
                "-",
                "--config",
                "/nonexistent/ema.toml",
            ],
            "cannot read the config file /nonexistent/ema.toml",
        ),
    ] {
        let output = ema(&args).await;
        assert_exit(&output, 2);
        assert!(err(&output).starts_with("ema: "), "{}", err(&output));
        assert!(err(&output).contains(says), "{args:?}: {}", err(&output));
    }
}

#[tokio::test]
async fn discover_reports_a_working_setup() {
    let servers = start().await;
    let output = ema(&["discover", &servers.mcp, "--insecure-loopback"]).await;
    assert_exit(&output, 0);
    let text = out(&output);
    assert!(!text.contains("problem:"), "{text}");
    assert!(
        text.contains("ok: the MCP server answers 401 with a Bearer challenge"),
        "{text}"
    );
    assert!(
        text.contains(&format!("resource `{}`", servers.mcp)),
        "{text}"
    );
    assert!(
        text.contains("urn:ietf:params:oauth:grant-profile:id-jag"),
        "{text}"
    );
    assert!(text.contains("EMA is set up"), "{text}");

    let output = ema(&["discover", &servers.mcp, "--insecure-loopback", "--json"]).await;
    assert_exit(&output, 0);
    let report: serde_json::Value = serde_json::from_str(&out(&output)).unwrap();
    assert_eq!(report["resource"], servers.mcp.as_str());
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(
        report["authorization_servers"][0]["issuer"],
        servers.auth_server.as_str()
    );

    // Without the loopback opt-in, `http` is refused (exit 2) with the hint.
    let output = ema(&["discover", &servers.mcp]).await;
    assert_exit(&output, 2);
    assert!(
        err(&output).contains("add --insecure-loopback"),
        "{}",
        err(&output)
    );

    // Nothing listens: exit 5.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/mcp", closed.local_addr().unwrap());
    drop(closed);
    let output = ema(&["discover", &dead, "--insecure-loopback"]).await;
    assert_exit(&output, 5);
    assert!(
        err(&output).contains(&format!("ema: cannot fetch {dead}")),
        "{}",
        err(&output)
    );
}

/// What a hand-written (non-EMA, or misconfigured) MCP deployment serves.
#[derive(Clone)]
struct Fake {
    base: String,
    /// The PRM's `resource`.
    resource: String,
    /// The issuer the AS metadata names.
    issuer: String,
    /// `authorization_grant_profiles_supported`.
    profiles: Vec<&'static str>,
    jwks: bool,
}

async fn fake(configure: impl FnOnce(&mut Fake)) -> String {
    let (listener, base) = serve::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let mut f = Fake {
        base: base.clone(),
        resource: format!("{base}/mcp"),
        issuer: base.clone(),
        profiles: vec!["urn:ietf:params:oauth:grant-profile:id-jag"],
        jwks: true,
    };
    configure(&mut f);
    let prm = serde_json::json!({
        "resource": f.resource,
        "authorization_servers": [f.base],
        "scopes_supported": ["tasks.read"],
    });
    let mut asm = serde_json::json!({
        "issuer": f.issuer,
        "token_endpoint": format!("{}/token", f.base),
        "grant_types_supported": ["authorization_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        "authorization_grant_profiles_supported": f.profiles,
    });
    if f.jwks {
        asm["jwks_uri"] = format!("{}/jwks", f.base).into();
    }
    let challenge = format!(
        "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        f.base
    );
    let app = Router::new()
        .route(
            "/mcp",
            post(move || async move {
                let mut headers = HeaderMap::new();
                headers.insert(header::WWW_AUTHENTICATE, challenge.parse().unwrap());
                (StatusCode::UNAUTHORIZED, headers).into_response()
            }),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(move || async move { axum::Json(prm) }),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move { axum::Json(asm) }),
        );
    tokio::spawn(serve::serve(listener, app, std::future::pending()));
    format!("{base}/mcp")
}

#[tokio::test]
async fn discover_names_each_problem_with_its_fix() {
    // Positive control: the hand-written deployment, done right.
    let mcp = fake(|_| {}).await;
    let output = ema(&["discover", &mcp, "--insecure-loopback"]).await;
    assert_exit(&output, 0);

    // A non-EMA authorization server: no ID-JAG profile.
    let mcp = fake(|f| f.profiles = vec!["urn:example:other-profile"]).await;
    let output = ema(&["discover", &mcp, "--insecure-loopback"]).await;
    assert_exit(&output, 3);
    let text = out(&output);
    assert!(
        text.contains("problem: no ID-JAG profile: `http://127.0.0.1:")
            && text.contains(
                "does not list `urn:ietf:params:oauth:grant-profile:id-jag` in \
                 `authorization_grant_profiles_supported`"
            ),
        "{text}"
    );
    assert!(
        text.contains("fix: enable Enterprise-Managed Authorization"),
        "{text}"
    );
    assert!(
        err(&output).contains("ema: 1 discovery problem found"),
        "{}",
        err(&output)
    );
    let output = ema(&["discover", &mcp, "--insecure-loopback", "--json"]).await;
    assert_exit(&output, 3);
    let report: serde_json::Value = serde_json::from_str(&out(&output)).unwrap();
    assert!(
        report["problems"][0]["problem"]
            .as_str()
            .unwrap()
            .starts_with("no ID-JAG profile")
    );
    assert!(
        report["problems"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("grant-profile:id-jag")
    );

    // Issuer mismatch.
    let mcp = fake(|f| f.issuer = "https://as.elsewhere.example".into()).await;
    let output = ema(&["discover", &mcp, "--insecure-loopback"]).await;
    assert_exit(&output, 3);
    let text = out(&output);
    assert!(
        text.contains("problem: issuer mismatch: the metadata at"),
        "{text}"
    );
    assert!(
        text.contains("names `https://as.elsewhere.example`"),
        "{text}"
    );
    assert!(text.contains("fix: make the two agree exactly"), "{text}");

    // Resource mismatch.
    let mcp = fake(|f| f.resource = "https://mcp.elsewhere.example/mcp".into()).await;
    let output = ema(&["discover", &mcp, "--insecure-loopback"]).await;
    assert_exit(&output, 3);
    let text = out(&output);
    assert!(
        text.contains(
            "problem: resource mismatch: the metadata's `resource` is \
             `https://mcp.elsewhere.example/mcp`"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "fix: set `resource` in the protected-resource metadata to `{mcp}`"
        )),
        "{text}"
    );

    // No keys, and no profile: both reported.
    let mcp = fake(|f| {
        f.jwks = false;
        f.profiles = vec![];
    })
    .await;
    let output = ema(&["discover", &mcp, "--insecure-loopback"]).await;
    assert_exit(&output, 3);
    let text = out(&output);
    assert!(text.contains("publishes no `jwks_uri`"), "{text}");
    assert!(text.contains("no ID-JAG profile"), "{text}");
    assert!(
        err(&output).contains("ema: 2 discovery problems found"),
        "{}",
        err(&output)
    );
}

#[tokio::test]
async fn token_runs_the_flow_and_refusals_exit_4() {
    let servers = start().await;
    let config = servers.good_config();
    let (id_token_file, id_token) = servers.id_token_file().await;

    let output = ema(&[
        "token",
        &servers.mcp,
        "--config",
        &config,
        "--id-token-file",
        &id_token_file,
        "--insecure-loopback",
    ])
    .await;
    assert_exit(&output, 0);
    let token = out(&output);
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
    let progress = err(&output);
    for hop in [
        "hop 0 (discovery)",
        "hop 2 (token exchange at the IdP)",
        "hop 3 (jwt-bearer at the authorization server)",
    ] {
        assert!(progress.contains(hop), "`{hop}` missing from:\n{progress}");
    }
    assert!(
        !progress.contains(token.trim()),
        "the token is not on stderr"
    );

    // The ID token from stdin, results as JSON.
    let output = ema_with_stdin(
        [
            "token",
            &servers.mcp,
            "--config",
            &config,
            "--id-token-file",
            "-",
            "--insecure-loopback",
            "--json",
        ]
        .map(String::from)
        .to_vec(),
        Some(id_token.clone()),
    )
    .await;
    assert_exit(&output, 0);
    let json: serde_json::Value = serde_json::from_str(&out(&output)).unwrap();
    assert_eq!(json["resource"], servers.mcp.as_str());
    assert_eq!(json["authorization_server"], servers.auth_server.as_str());
    assert_eq!(json["token_type"], "Bearer");
    assert!(json["access_token"].as_str().unwrap().split('.').count() == 3);

    // A wrong client secret at the authorization server: exit 4, a sentence.
    let wrong_as = servers.config("wrong-as.toml", "desk-secret", "not-it");
    let output = ema(&[
        "token",
        &servers.mcp,
        "--config",
        &wrong_as,
        "--id-token-file",
        &id_token_file,
        "--insecure-loopback",
    ])
    .await;
    assert_exit(&output, 4);
    assert!(
        err(&output).contains(
            "ema: the authorization server refused the client's credentials: client \
             authentication failed (invalid_client); check client_id, secret or key and \
             auth_method in [authorization_server]"
        ),
        "{}",
        err(&output)
    );
    assert!(out(&output).is_empty());

    // A wrong client secret at the IdP: exit 4.
    let wrong_idp = servers.config("wrong-idp.toml", "not-it", "tc-secret");
    let output = ema(&[
        "token",
        &servers.mcp,
        "--config",
        &wrong_idp,
        "--id-token-file",
        &id_token_file,
        "--insecure-loopback",
    ])
    .await;
    assert_exit(&output, 4);
    assert!(
        err(&output).contains("ema: the IdP refused the client's credentials"),
        "{}",
        err(&output)
    );

    // Not an ID token: the IdP refuses it (exit 4).
    let junk = servers.dir.join("junk.jwt");
    std::fs::write(&junk, "not-a-token").unwrap();
    let output = ema(&[
        "token",
        &servers.mcp,
        "--config",
        &config,
        "--id-token-file",
        junk.to_str().unwrap(),
        "--insecure-loopback",
    ])
    .await;
    assert_exit(&output, 4);
    assert!(
        err(&output).contains("ema: the IdP refused"),
        "{}",
        err(&output)
    );

    // A config naming another authorization server: a usage error (exit 2).
    let other = servers.dir.join("other-as.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace(&servers.auth_server, "https://as.other.example"),
    )
    .unwrap();
    let output = ema(&[
        "token",
        &servers.mcp,
        "--config",
        other.to_str().unwrap(),
        "--id-token-file",
        &id_token_file,
        "--insecure-loopback",
    ])
    .await;
    assert_exit(&output, 2);
    assert!(
        err(&output)
            .contains("but [authorization_server] in the config names `https://as.other.example`"),
        "{}",
        err(&output)
    );

    // The IdP is down: exit 5.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down = servers.dir.join("down.toml");
    std::fs::write(
        &down,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace(&servers.idp, &dead),
    )
    .unwrap();
    let output = ema(&[
        "token",
        &servers.mcp,
        "--config",
        down.to_str().unwrap(),
        "--id-token-file",
        &id_token_file,
        "--insecure-loopback",
    ])
    .await;
    assert_exit(&output, 5);
    assert!(
        err(&output).contains("ema: cannot reach the IdP's metadata"),
        "{}",
        err(&output)
    );
}

#[tokio::test]
async fn tools_and_call_with_step_up() {
    let servers = start().await;
    let config = servers.good_config();
    let (id_token_file, _) = servers.id_token_file().await;
    let base = |cmd: &str| -> Vec<String> {
        vec![
            cmd.into(),
            servers.mcp.clone(),
            "--config".into(),
            config.clone(),
            "--id-token-file".into(),
            id_token_file.clone(),
            "--insecure-loopback".into(),
        ]
    };

    let output = ema_with_stdin(base("tools"), None).await;
    assert_exit(&output, 0);
    assert!(out(&output).contains("add_task: "), "{}", out(&output));
    assert!(out(&output).contains("whoami: "), "{}", out(&output));

    let mut args = base("tools");
    args.push("--json".into());
    let output = ema_with_stdin(args, None).await;
    assert_exit(&output, 0);
    let tools: serde_json::Value = serde_json::from_str(&out(&output)).unwrap();
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "add_task")
    );

    // `add_task` needs `tasks.write`; a session starts with `tasks.read` (the challenge's;
    // `whoami` below shows it) and steps up (CL-10).
    let mut args = base("call");
    args.insert(2, "add_task".into());
    args.insert(3, r#"{"title":"from ema"}"#.into());
    let output = ema_with_stdin(args, None).await;
    assert_exit(&output, 0);
    assert!(out(&output).contains("from ema"), "{}", out(&output));

    let mut args = base("call");
    args.insert(2, "whoami".into());
    let output = ema_with_stdin(args, None).await;
    assert_exit(&output, 0);
    // Control for the step-up: a fresh session's token carries `tasks.read` alone, so the
    // `add_task` above succeeded only because the session stepped up.
    let whoami: serde_json::Value = serde_json::from_str(out(&output).trim()).unwrap();
    assert_eq!(whoami["scope"], "tasks.read", "{whoami}");
    assert_eq!(whoami["client_id"], "tc_5f2a91");

    // The tool reports an error: its text on stdout, exit 1.
    let mut args = base("call");
    args.insert(2, "complete_task".into());
    args.insert(3, r#"{"id":9999}"#.into());
    let output = ema_with_stdin(args, None).await;
    assert_exit(&output, 1);
    assert!(out(&output).contains("no task 9999"), "{}", out(&output));
    assert!(
        err(&output).contains("ema: the tool `complete_task` reported an error"),
        "{}",
        err(&output)
    );

    // A tool the server does not have: the server answers with an error result, exit 1.
    let mut args = base("call");
    args.insert(2, "no_such_tool".into());
    let output = ema_with_stdin(args, None).await;
    assert_exit(&output, 1);
    assert!(
        err(&output).contains("ema: the tool `no_such_tool` reported an error"),
        "{}",
        err(&output)
    );

    // Arguments that are not a JSON object: exit 2 before any request.
    let mut args = base("call");
    args.insert(2, "add_task".into());
    args.insert(3, "[1]".into());
    let output = ema_with_stdin(args, None).await;
    assert_exit(&output, 2);
    assert!(
        err(&output).contains("ema: the tool arguments must be a JSON object"),
        "{}",
        err(&output)
    );

    // A wrong secret at the authorization server: exit 4 from `tools` too.
    let wrong = servers.config("wrong.toml", "desk-secret", "not-it");
    let mut args = base("tools");
    args[3] = wrong;
    let output = ema_with_stdin(args, None).await;
    assert_exit(&output, 4);
    assert!(
        err(&output).contains("refused the client's credentials"),
        "{}",
        err(&output)
    );
}

/// A step-up the IdP will not grant: `whoami` needs `tasks.admin`, which ana's group may not
/// have. The refusal is exit 4 with the sentence; `tools` is the control.
#[tokio::test]
async fn call_a_refused_step_up_exits_4() {
    let servers = start_with(|mcp| {
        mcp.scopes
            .tools
            .insert("whoami".into(), vec!["tasks.admin".into()]);
    })
    .await;
    let config = servers.good_config();
    let (id_token_file, _) = servers.id_token_file().await;
    let flags = [
        "--config",
        &config,
        "--id-token-file",
        &id_token_file,
        "--insecure-loopback",
    ];
    let mut tools = vec!["tools", servers.mcp.as_str()];
    tools.extend(flags);
    assert_exit(&ema(&tools).await, 0);
    let mut call = vec!["call", servers.mcp.as_str(), "whoami"];
    call.extend(flags);
    let output = ema(&call).await;
    assert_exit(&output, 4);
    assert!(
        err(&output).contains("ema: the MCP server refused the token: it requires scope `"),
        "{}",
        err(&output)
    );
}

#[tokio::test]
async fn decode_and_verify() {
    let servers = start().await;
    let config = servers.good_config();
    let (id_token_file, _) = servers.id_token_file().await;
    let output = ema(&[
        "token",
        &servers.mcp,
        "--config",
        &config,
        "--id-token-file",
        &id_token_file,
        "--insecure-loopback",
    ])
    .await;
    assert_exit(&output, 0);
    let token = out(&output).trim().to_owned();

    // decode: marked unverified, header and claims.
    let output = ema(&["decode", &token]).await;
    assert_exit(&output, 0);
    assert!(out(&output).contains("UNVERIFIED header:"));
    assert!(out(&output).contains("\"at+jwt\""));
    assert!(out(&output).contains("UNVERIFIED claims:"));
    assert!(out(&output).contains(&format!("\"iss\": \"{}\"", servers.auth_server)));
    assert!(err(&output).contains("UNVERIFIED"));
    let output = ema_with_stdin(
        vec!["decode".into(), "-".into(), "--json".into()],
        Some(token.clone()),
    )
    .await;
    assert_exit(&output, 0);
    let json: serde_json::Value = serde_json::from_str(&out(&output)).unwrap();
    assert_eq!(json["verified"], false);
    assert_eq!(json["claims"]["aud"], servers.mcp.as_str());
    let output = ema(&["decode", "not.a-jwt"]).await;
    assert_exit(&output, 2);
    assert!(
        err(&output).contains("ema: this is not a well-formed JWT"),
        "{}",
        err(&output)
    );

    // verify against the authorization server's JWKS URL, with exact iss and aud.
    let jwks_url = format!("{}/jwks", servers.auth_server);
    let output = ema(&[
        "verify",
        &token,
        "--jwks",
        &jwks_url,
        "--iss",
        &servers.auth_server,
        "--aud",
        &servers.mcp,
        "--insecure-loopback",
    ])
    .await;
    assert_exit(&output, 0);
    assert!(
        err(&output).contains("VERIFIED: AccessToken signed with"),
        "{}",
        err(&output)
    );
    assert!(out(&output).contains("VERIFIED claims:"));

    // ... and against the same JWKS from a file.
    let jwks = reqwest::get(&jwks_url).await.unwrap().text().await.unwrap();
    let jwks_file = servers.dir.join("jwks.json");
    std::fs::write(&jwks_file, jwks).unwrap();
    let jwks_file = jwks_file.to_str().unwrap();
    let output = ema(&["verify", &token, "--jwks", jwks_file, "--json"]).await;
    assert_exit(&output, 0);
    let json: serde_json::Value = serde_json::from_str(&out(&output)).unwrap();
    assert_eq!(json["verified"], true);

    // Failures: exit 6, each with its sentence.
    let wrong_aud = ema(&[
        "verify",
        &token,
        "--jwks",
        jwks_file,
        "--aud",
        "https://other.example/mcp",
    ])
    .await;
    assert_exit(&wrong_aud, 6);
    assert!(
        err(&wrong_aud).contains("ema: the audience check fails"),
        "{}",
        err(&wrong_aud)
    );
    let wrong_iss = ema(&["verify", &token, "--jwks", jwks_file, "--iss", &servers.idp]).await;
    assert_exit(&wrong_iss, 6);
    assert!(
        err(&wrong_iss).contains("ema: the issuer check fails"),
        "{}",
        err(&wrong_iss)
    );
    let later = ema(&[
        "verify",
        &token,
        "--jwks",
        jwks_file,
        "--now",
        "32503680000",
    ])
    .await;
    assert_exit(&later, 6);
    assert!(
        err(&later).contains("ema: the token's validity window fails"),
        "{}",
        err(&later)
    );
    let as_id_jag = ema(&["verify", &token, "--jwks", jwks_file, "--kind", "id-jag"]).await;
    assert_exit(&as_id_jag, 6);
    assert!(
        err(&as_id_jag).contains("ema: the header is refused"),
        "{}",
        err(&as_id_jag)
    );
    // A signature from another key set: the IdP's keys do not verify the AS's token.
    let idp_jwks = format!("{}/jwks", servers.idp);
    let other_keys = ema(&["verify", &token, "--jwks", &idp_jwks, "--insecure-loopback"]).await;
    assert_exit(&other_keys, 6);
    assert!(
        err(&other_keys).contains("ema: no key in the JWKS verifies this token"),
        "{}",
        err(&other_keys)
    );
    // A tampered signature.
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{signing_input}.{flipped}{}", &signature[1..]);
    let output = ema(&["verify", &tampered, "--jwks", jwks_file]).await;
    assert_exit(&output, 6);
    assert!(
        err(&output).contains("ema: the token did not verify: signature does not verify"),
        "{}",
        err(&output)
    );
}

/// The other two client-authentication methods: `client_secret_post` at the IdP and
/// `private_key_jwt` (a PKCS#8 PEM key file, relative to the config file) at the authorization
/// server. Control row: the same config with a key the server does not know is refused (exit 4).
#[tokio::test]
async fn token_with_client_secret_post_and_private_key_jwt() {
    use base64::Engine as _;
    use ema_grant::AuthMethod;
    use ema_jose::{Algorithm, JwkSet, SigningKey};

    let key = SigningKey::generate(Algorithm::ES256, Some("tc-k1".into())).unwrap();
    let stranger = SigningKey::generate(Algorithm::ES256, Some("tc-k1".into())).unwrap();
    let jwks = JwkSet::from_keys([key.verifying_key().clone()]).to_public_json();
    let jwks_dir = std::env::temp_dir().join(format!("ema-cli-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&jwks_dir).unwrap();
    let jwks_file = jwks_dir.join("tc.jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();

    let servers = start_configured(
        |idp| {
            for client in &mut idp.clients {
                if client.id == "desk-idp-01" {
                    client.token_endpoint_auth_method = Some(AuthMethod::ClientSecretPost);
                }
            }
        },
        |auth| {
            for client in &mut auth.clients {
                if client.id == "tc_5f2a91" {
                    client.secret = None;
                    client.jwks_file = Some(jwks_file.clone());
                    client.token_endpoint_auth_method = Some(AuthMethod::PrivateKeyJwt);
                }
            }
        },
        |_| {},
    )
    .await;
    let sso = SsoClient {
        idp: servers.idp.clone(),
        client_id: "desk-idp-01".into(),
        client_secret: "desk-secret".into(),
        redirect_uri: "http://127.0.0.1/callback".into(),
        client_secret_post: true,
    };
    let id_token = sso.sign_in("ana", "ana-password").await.unwrap();
    let id_token_file = servers.dir.join("id_token.jwt");
    std::fs::write(&id_token_file, id_token).unwrap();
    let pem = |key: &SigningKey| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.to_pkcs8_der().unwrap());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    };
    let write_config = |name: &str, key: &SigningKey| {
        std::fs::write(servers.dir.join(format!("{name}.pem")), pem(key)).unwrap();
        let path = servers.dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[idp]\nissuer = \"{}\"\nclient_id = \"desk-idp-01\"\n\
                 auth_method = \"client_secret_post\"\nsecret = \"desk-secret\"\n\n\
                 [authorization_server]\nissuer = \"{}\"\nclient_id = \"tc_5f2a91\"\n\
                 auth_method = \"private_key_jwt\"\nkey_file = \"{name}.pem\"\n\
                 key_alg = \"ES256\"\nkey_id = \"tc-k1\"\n",
                servers.idp, servers.auth_server
            ),
        )
        .unwrap();
        path.to_str().unwrap().to_owned()
    };
    let id_token_file = id_token_file.to_str().unwrap();

    let good = write_config("good", &key);
    let output = ema(&[
        "token",
        &servers.mcp,
        "--config",
        &good,
        "--id-token-file",
        id_token_file,
        "--insecure-loopback",
    ])
    .await;
    assert_exit(&output, 0);
    assert_eq!(out(&output).trim().split('.').count(), 3);

    let bad = write_config("stranger", &stranger);
    let output = ema(&[
        "token",
        &servers.mcp,
        "--config",
        &bad,
        "--id-token-file",
        id_token_file,
        "--insecure-loopback",
    ])
    .await;
    assert_exit(&output, 4);
    assert!(
        err(&output).contains("ema: the authorization server refused the client's credentials"),
        "{}",
        err(&output)
    );

    // A key file that is not a key: exit 2 naming the section.
    std::fs::write(servers.dir.join("broken.pem"), "not a key").unwrap();
    let broken = std::fs::read_to_string(&good)
        .unwrap()
        .replace("good.pem", "broken.pem");
    let broken_path = servers.dir.join("broken.toml");
    std::fs::write(&broken_path, broken).unwrap();
    let output = ema(&[
        "token",
        &servers.mcp,
        "--config",
        broken_path.to_str().unwrap(),
        "--id-token-file",
        id_token_file,
        "--insecure-loopback",
    ])
    .await;
    assert_exit(&output, 2);
    assert!(
        err(&output).contains("ema: [authorization_server]: `key_file`"),
        "{}",
        err(&output)
    );
    std::fs::remove_dir_all(&jwks_dir).ok();
}

/// `ema` running in the background with stderr read line by line, so a test can act on what it
/// prints (the sign-in URL) while it waits.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ema"))
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("BROWSER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pipe = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let all = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                all.lock().unwrap().push_str(&format!("{line}\n"));
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            stderr,
            reader,
        }
    }

    /// The URL `ema --login` prints for the user to open (waits at most a minute).
    async fn sign_in_url(&self) -> String {
        loop {
            let line = tokio::task::block_in_place(|| {
                self.lines.recv_timeout(std::time::Duration::from_secs(60))
            });
            let line = line
                .map_err(|_| format!("no sign-in URL; stderr:\n{}", self.stderr.lock().unwrap()))
                .unwrap();
            if let Some(url) = line.strip_prefix("sign in at the IdP: ") {
                return url.to_owned();
            }
        }
    }

    async fn finish(self) -> (Option<i32>, String, String) {
        let Self {
            child,
            lines,
            stderr,
            reader,
        } = self;
        let output = tokio::task::spawn_blocking(move || {
            let output = child.wait_with_output().unwrap();
            // The reader ends with the pipe, after the last line; the receiver stays alive
            // until then so that it never stops early.
            reader.join().unwrap();
            drop(lines);
            output
        })
        .await
        .unwrap();
        let err = stderr.lock().unwrap().clone();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            err,
        )
    }
}

/// Plays the user in the browser: posts ana's credentials to the IdP's login form the sign-in
/// URL shows, and returns where the IdP redirects the browser (the CLI's loopback listener).
async fn log_in(url: &str, password: &str) -> reqwest::Response {
    let (endpoint, query) = url.split_once('?').unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    http.post(endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("{query}&username=ana&password={password}"))
        .send()
        .await
        .unwrap()
}

/// Issue 14: `ema token --login` signs the user in at the IdP in the browser (OpenID Connect
/// code flow with PKCE on a loopback redirect whose port the IdP accepts per RFC 8252 §7.3),
/// then runs the EMA flow with the ID token it got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_with_login_signs_in_through_the_browser() {
    let servers = start().await;
    let config = servers.good_config();
    let run = Running::start(&[
        "token",
        &servers.mcp,
        "--config",
        &config,
        "--login",
        "--no-browser",
        "--insecure-loopback",
        "--json",
    ]);
    let url = run.sign_in_url().await;
    assert!(url.starts_with(&servers.idp), "{url}");
    for needed in [
        "code_challenge_method=S256",
        "client_id=desk-idp-01",
        "scope=openid",
        "nonce=",
        "state=",
        "redirect_uri=http%3A%2F%2F127.0.0.1%3A",
    ] {
        assert!(url.contains(needed), "{needed} missing in {url}");
    }
    let login = log_in(&url, "ana-password").await;
    assert_eq!(login.status().as_u16(), 303);
    let callback = login.headers()["location"].to_str().unwrap().to_owned();
    assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
    let page = reqwest::get(&callback).await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let (code, stdout, stderr) = run.finish().await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let reply: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(reply["resource"], servers.mcp.as_str());
    assert_eq!(
        reply["access_token"].as_str().unwrap().split('.').count(),
        3
    );
    assert!(
        stderr.contains("hop 1 (sign-in at the IdP): ID token received"),
        "{stderr}"
    );
    assert!(stderr.contains("hop 3 (jwt-bearer"), "{stderr}");
}

/// `--login` failure rows: a redirect carrying another `state` (CL-12) and an IdP refusal
/// through the redirect both stop the command with exit 4, saying why; the flags are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refusals_and_flag_rules() {
    let servers = start().await;
    let config = servers.good_config();
    let args = [
        "token",
        servers.mcp.as_str(),
        "--config",
        config.as_str(),
        "--login",
        "--no-browser",
        "--insecure-loopback",
    ];
    // Another sign-in's response (wrong state) is refused, not used.
    let run = Running::start(&args);
    let url = run.sign_in_url().await;
    let login = log_in(&url, "ana-password").await;
    let callback = login.headers()["location"].to_str().unwrap().to_owned();
    let forged = callback.replace("state=", "state=x");
    assert_eq!(reqwest::get(&forged).await.unwrap().status().as_u16(), 400);
    let (code, _, stderr) = run.finish().await;
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("state does not match"), "{stderr}");

    // The IdP refusing through the redirect (`access_denied`): exit 4 with the reason.
    let run = Running::start(&args);
    let url = run.sign_in_url().await;
    let redirect_uri = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let state = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let refusal =
        format!("{redirect_uri}?error=access_denied&error_description=user+disabled&state={state}");
    assert_eq!(reqwest::get(&refusal).await.unwrap().status().as_u16(), 200);
    let (code, _, stderr) = run.finish().await;
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("user disabled"), "{stderr}");

    // Flag rules (exit 2, before any network).
    for bad in [
        vec![
            "token",
            "https://mcp.example/mcp",
            "--login",
            "--id-token-file",
            "f",
        ],
        vec![
            "token",
            "https://mcp.example/mcp",
            "--no-browser",
            "--id-token-file",
            "f",
        ],
        vec![
            "token",
            "https://mcp.example/mcp",
            "--login",
            "--redirect-port",
            "x",
        ],
        vec!["token", "https://mcp.example/mcp", "--redirect-port", "0"],
    ] {
        let output = ema(&bad).await;
        assert_exit(&output, 2);
    }
}
