//! The whole EMA flow on one machine: starts the IdP, the MCP authorization server and the MCP
//! server on loopback ports chosen by the OS, then plays a script and prints every hop (decoded
//! headers and claims, signatures elided, timings). Exits non-zero if any step does not behave
//! as the script expects.
//!
//! Run: `cargo run -p ema-examples --bin demo`
//!
//! With `--serve`, it starts the three servers, prints their URLs as one JSON line
//! (`{"idp":…,"authorization_server":…,"mcp":…}`) and serves until interrupted, for tests that
//! drive the servers with other clients (`tests/interop/`). In that mode the IdP also registers
//! `desk-idp-post`, a client that authenticates with `client_secret_post`, for SDKs that can
//! send nothing else at the IdP (each client has one method, D-24).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ema_client::{
    ClientCredentials, EmaClient, EmaHttpClient, FetchPolicy, IdpConfig, Secret,
    declare_url_elicitation, ema_client_config,
};
use ema_examples::config::defaults;
use ema_examples::notes::{NotesConfig, NotesProvider};
use ema_examples::sso::SsoClient;
use ema_examples::trace::show;
use ema_examples::vault::ShiftedClock;
use ema_examples::{serve, servers};
use ema_grant::form::encode_component;
use ema_grant::{ID_JAG_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_BEARER, TOKEN_EXCHANGE};
use ema_jose::Clock;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::Value;

struct Script {
    http: reqwest::Client,
    idp: String,
    auth_server: String,
    mcp: String,
    notes: String,
    failures: Vec<String>,
    step: usize,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Script {
    fn step(&mut self, title: &str) {
        self.step += 1;
        println!("\n== {}. {title}", self.step);
    }

    fn expect(&mut self, what: &str, ok: bool) {
        if ok {
            println!("   ok: {what}");
        } else {
            println!("   UNEXPECTED: {what}");
            self.failures.push(format!("step {}: {what}", self.step));
        }
    }

    async fn post_form(
        &self,
        url: &str,
        body: String,
        basic: (&str, &str),
    ) -> Result<Reply, reqwest::Error> {
        let started = Instant::now();
        let resp = self
            .http
            .post(url)
            .basic_auth(basic.0, Some(basic.1))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json().await.unwrap_or(Value::Null);
        println!(
            "   POST {url} -> {status} ({} ms)",
            started.elapsed().as_millis()
        );
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    async fn exchange(
        &self,
        id_token: &str,
        resource: &str,
        scope: &str,
    ) -> Result<Reply, reqwest::Error> {
        let body = format!(
            "grant_type={}&requested_token_type={}&audience={}&resource={}&scope={}&subject_token={id_token}&subject_token_type={}",
            encode_component(TOKEN_EXCHANGE),
            encode_component(ID_JAG_TOKEN_TYPE),
            encode_component(&self.auth_server),
            encode_component(resource),
            encode_component(scope),
            encode_component(ID_TOKEN_TYPE),
        );
        self.post_form(
            &format!("{}/token", self.idp),
            body,
            ("desk-idp-01", "desk-secret"),
        )
        .await
    }

    async fn redeem(&self, id_jag: &str, resource: &str) -> Result<Reply, reqwest::Error> {
        let body = format!(
            "grant_type={}&assertion={id_jag}&resource={}",
            encode_component(JWT_BEARER),
            encode_component(resource)
        );
        self.post_form(
            &format!("{}/token", self.auth_server),
            body,
            ("tc_5f2a91", "tc-secret"),
        )
        .await
    }

    /// An MCP `initialize` request, with `token` as a bearer token if given.
    fn initialize(&self, token: Option<&str>) -> reqwest::RequestBuilder {
        let req = self
            .http
            .post(&self.mcp)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"demo","version":"1"}}}"#);
        match token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// The status of an `initialize` with `token`, printing nothing.
    async fn call_mcp_quiet(&self, token: Option<&str>) -> Result<u16, reqwest::Error> {
        Ok(self.initialize(token).send().await?.status().as_u16())
    }

    async fn call_mcp(&self, token: Option<&str>) -> Result<Reply, reqwest::Error> {
        let req = self.initialize(token);
        let started = Instant::now();
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        println!(
            "   POST {} -> {status} ({} ms)",
            self.mcp,
            started.elapsed().as_millis()
        );
        Ok(Reply {
            status,
            headers,
            body: Value::Null,
        })
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    serve::init_logging("warn");
    match run().await {
        Ok(failures) if failures.is_empty() => {
            println!("\nAll steps behaved as expected.");
            std::process::ExitCode::SUCCESS
        }
        Ok(failures) => {
            eprintln!("\n{} step(s) did not behave as expected:", failures.len());
            for f in failures {
                eprintln!("  - {f}");
            }
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// For `--serve`: a second IdP registration, `desk-idp-post`, that authenticates with
/// `client_secret_post` (the TypeScript SDK's token exchange sends its secret only in the body)
/// and stands for the same agent at the authorization server (`tc_5f2a91`).
fn add_post_client(idp: &mut ema_examples::config::IdpConfig) {
    idp.clients.push(ema_examples::config::ClientConfig {
        id: "desk-idp-post".into(),
        secret: Some("desk-post-secret".into()),
        jwks_file: None,
        token_endpoint_auth_method: Some(ema_grant::AuthMethod::ClientSecretPost),
        redirect_uris: vec!["http://127.0.0.1/callback".into()],
    });
    for target in &mut idp.targets {
        if let Some(here) = target.clients.get("desk-idp-01").cloned() {
            target.clients.insert("desk-idp-post".into(), here);
        }
    }
}

/// The notes provider's access-token lifetime in the demo, and how far the demo moves the clock
/// to bring the token within the vault's refresh skew (60 s) without waiting.
const NOTES_TOKEN_LIFETIME: u64 = 120;
const NOTES_CLOCK_STEP: u64 = 100;

/// The user the notes provider approves (the demo's browser is signed in there as ana).
const NOTES_USER: &str = "ana@notes.example";

async fn run() -> Result<Vec<String>, Box<dyn std::error::Error>> {
    // The wall clock, moved forward by the demo to expire a downstream token without waiting.
    let shifted = Arc::new(ShiftedClock::new());
    let clock: Arc<dyn Clock> = shifted.clone();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (idp_listener, idp) = serve::bind(loopback).await?;
    let (as_listener, auth_server) = serve::bind(loopback).await?;
    let (mcp_listener, mcp_base) = serve::bind(loopback).await?;
    let (notes_listener, notes_provider_url) = serve::bind(loopback).await?;
    let notes_provider = NotesProvider::new(
        NotesConfig {
            issuer: notes_provider_url.clone(),
            client_id: defaults::NOTES_CLIENT_ID.into(),
            client_secret: defaults::NOTES_CLIENT_SECRET.into(),
            redirect_uris: vec![format!("{mcp_base}/connect/notes/callback")],
            user: NOTES_USER.into(),
            access_token_lifetime_secs: NOTES_TOKEN_LIFETIME,
        },
        clock.clone(),
    );
    let mcp = format!("{mcp_base}/mcp");
    let notes = format!("{mcp_base}/notes");

    let serve_only = std::env::args().nth(1).as_deref() == Some("--serve");
    let mut idp_config = defaults::idp(&idp, &auth_server, &mcp, &notes);
    if serve_only {
        add_post_client(&mut idp_config);
    }
    let idp_app = servers::idp_app(&idp_config, &idp, clock.clone())?;
    // The MCP server follows the authorization server's revocation ledger (in process here;
    // RV-15): a subject revoked at the authorization server is refused on the next request.
    let (as_app, ledger) = servers::authorization_server_app_and_ledger(
        &defaults::authorization_server(&idp, &auth_server, &mcp, &notes),
        &auth_server,
        clock.clone(),
    )?;
    let mut mcp_config = defaults::mcp_server(&auth_server, &mcp_base);
    mcp_config.vault = Some(defaults::vault(&notes_provider_url));
    let mcp_app = servers::mcp_app_with_ledger(&mcp_config, &mcp_base, clock.clone(), ledger)?;
    for (listener, app) in [
        (idp_listener, idp_app),
        (as_listener, as_app),
        (mcp_listener, mcp_app),
        (notes_listener, notes_provider.router()),
    ] {
        tokio::spawn(serve::serve(listener, app, std::future::pending()));
    }
    if serve_only {
        println!(
            "{}",
            serde_json::json!({"idp": idp, "authorization_server": auth_server, "mcp": mcp})
        );
        serve::ctrl_c().await;
        return Ok(Vec::new());
    }
    println!("IdP:                  {idp}");
    println!("authorization server: {auth_server}");
    println!("MCP server:           {mcp}");
    println!("notes (downstream):   {notes_provider_url}");

    let mut s = Script {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        idp: idp.clone(),
        auth_server: auth_server.clone(),
        mcp: mcp.clone(),
        notes,
        failures: Vec::new(),
        step: 0,
    };
    let sso = SsoClient {
        idp: idp.clone(),
        client_id: "desk-idp-01".into(),
        client_secret: "desk-secret".into(),
        redirect_uri: "http://127.0.0.1/callback".into(),
        client_secret_post: false,
    };

    s.step("The agent calls the MCP server without a token (discovery, RS-1)");
    let r = s.call_mcp(None).await?;
    let challenge = r
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    println!("   WWW-Authenticate: {challenge}");
    s.expect(
        "401 with resource_metadata",
        r.status == 401 && challenge.contains("resource_metadata="),
    );

    s.step("ana signs in at the IdP (OIDC authorization code + PKCE)");
    let started = Instant::now();
    let ana_id_token = sso.sign_in("ana", "ana-password").await?;
    println!("   signed in ({} ms)", started.elapsed().as_millis());
    println!("{}", show("ID token", &ana_id_token));

    s.step("Token exchange at the IdP: ID token -> ID-JAG (RFC 8693)");
    let r = s.exchange(&ana_id_token, &mcp, "tasks.read").await?;
    let id_jag = text(&r.body, "access_token");
    println!(
        "   issued_token_type: {}, token_type: {}, expires_in: {}",
        text(&r.body, "issued_token_type"),
        text(&r.body, "token_type"),
        r.body.get("expires_in").cloned().unwrap_or_default()
    );
    println!("{}", show("ID-JAG", &id_jag));
    s.expect("200 with an ID-JAG", r.status == 200 && !id_jag.is_empty());

    s.step("jwt-bearer at the authorization server: ID-JAG -> access token (RFC 7523)");
    let r = s.redeem(&id_jag, &mcp).await?;
    let access_token = text(&r.body, "access_token");
    println!(
        "   token_type: {}, scope: {}, resource: {}",
        text(&r.body, "token_type"),
        text(&r.body, "scope"),
        text(&r.body, "resource")
    );
    println!("{}", show("access token", &access_token));
    s.expect(
        "200 with an access token for the MCP server",
        r.status == 200 && text(&r.body, "resource") == mcp,
    );

    s.step("The MCP server accepts the access token");
    let r = s.call_mcp(Some(&access_token)).await?;
    s.expect("200 on initialize", r.status == 200);

    s.step("Replaying the same ID-JAG is refused (SEC-1, D-6)");
    let r = s.redeem(&id_jag, &mcp).await?;
    println!(
        "   error: {} ({})",
        text(&r.body, "error"),
        text(&r.body, "error_description")
    );
    s.expect(
        "400 invalid_grant",
        r.status == 400 && text(&r.body, "error") == "invalid_grant",
    );

    s.step("bob (group `sales`, not assigned to this server) is refused at the IdP (TX-8)");
    let bob_id_token = sso.sign_in("bob", "bob-password").await?;
    let r = s.exchange(&bob_id_token, &mcp, "tasks.read").await?;
    println!(
        "   error: {} ({})",
        text(&r.body, "error"),
        text(&r.body, "error_description")
    );
    s.expect(
        "400 access_denied",
        r.status == 400 && text(&r.body, "error") == "access_denied",
    );

    s.step("A token for another resource is refused by the MCP server (RS-4)");
    let notes = s.notes.clone();
    let r = s.exchange(&ana_id_token, &notes, "notes.read").await?;
    let r = s.redeem(&text(&r.body, "access_token"), &notes).await?;
    let notes_token = text(&r.body, "access_token");
    println!(
        "   token for {} (scope {})",
        text(&r.body, "resource"),
        text(&r.body, "scope")
    );
    let r = s.call_mcp(Some(&notes_token)).await?;
    let challenge = r
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    println!("   WWW-Authenticate: {challenge}");
    s.expect(
        "401 invalid_token",
        r.status == 401
            && ema_metadata::find_challenge(&challenge, "Bearer")
                .ok()
                .flatten()
                .and_then(|c| c.error_code())
                == Some(ema_metadata::ErrorCode::InvalidToken),
    );

    s.step("The agent library does it all: ema-client + rmcp, with a step-up for a write (CL-10)");
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
    .build()?;
    let started = Instant::now();
    let session = Arc::new(
        client
            .session(&url::Url::parse(&mcp)?, Secret::new(ana_id_token.clone()))
            .await?,
    );
    // The agent declares the EMA extension in its MCP capabilities (CL-15).
    let agent = ema_client_config()
        .serve(EmaHttpClient::new(session.clone())?.into_transport())
        .await?;
    let tools = agent.list_all_tools().await?;
    println!(
        "   tools: {}",
        tools
            .iter()
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let scope_before = session.scope();
    println!("   scope before: {scope_before}");
    let added = agent
        .call_tool(
            CallToolRequestParams::new("add_task").with_arguments(
                serde_json::json!({"title": "review the EMA rollout"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await?;
    println!(
        "   add_task -> {}",
        added
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<String>()
    );
    println!("   scope after:  {}", session.scope());
    let who = agent
        .call_tool(CallToolRequestParams::new("whoami"))
        .await?;
    let who_text: String = who
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    println!("   whoami -> {who_text}");
    println!(
        "   ({} ms for discovery, two token acquisitions and four MCP requests)",
        started.elapsed().as_millis()
    );

    s.expect(
        "the write succeeded after stepping up to tasks.write",
        added.is_error != Some(true)
            && !scope_before.contains("tasks.write")
            && session.scope().contains("tasks.write"),
    );
    s.expect(
        "the audit link reaches back to the IdP",
        who_text.contains("\"idp_issuer\"") && who_text.contains("\"id_jag_jti\""),
    );

    s.step("Every tool call is authorized with its arguments (Cedar policies, ema-authz)");
    let call = |name: &'static str, args: serde_json::Value| {
        let agent = &agent;
        async move {
            let result = agent
                .call_tool(
                    CallToolRequestParams::new(name)
                        .with_arguments(args.as_object().cloned().unwrap_or_default()),
                )
                .await?;
            let text: String = result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect();
            let ok = result.is_error != Some(true);
            println!(
                "   {name} {args} -> {} {}",
                if ok { "allowed:" } else { "DENIED:" },
                text.replace('\n', "\\n")
            );
            Ok::<_, rmcp::ServiceError>((ok, text))
        }
    };
    let (select_ok, _) = call(
        "run_query",
        serde_json::json!({"query": "SELECT * FROM tasks"}),
    )
    .await?;
    let (delete_ok, delete_reason) = call(
        "run_query",
        serde_json::json!({"query": "DELETE FROM tasks"}),
    )
    .await?;
    s.expect(
        "a SELECT runs and a DELETE is refused by the argument rule, with its reason",
        select_ok && !delete_ok && delete_reason.contains("read-only"),
    );

    s.step("Session rules: after a secret is read, nothing leaves the server");
    let (sent_before, _) = call(
        "send_message",
        serde_json::json!({"to": "partner@example.com", "text": "status: on track"}),
    )
    .await?;
    let (read_ok, file) = call(
        "read_file",
        serde_json::json!({"path": "/projects/u-17/.env"}),
    )
    .await?;
    let (sent_after, refusal) = call(
        "send_message",
        serde_json::json!({"to": "partner@example.com", "text": "the keys"}),
    )
    .await?;
    s.expect(
        "the secret in the result is redacted and raises secret_read",
        read_ok && file.contains("[REDACTED]") && !file.contains("AKIAIOSFODNN7EXAMPLE"),
    );
    s.expect(
        "a message sent before is allowed, the same message after the secret is refused",
        sent_before && !sent_after && refusal.contains("secret was read"),
    );
    agent.cancel().await?;

    notes_steps(
        &mut s,
        &session,
        &notes_provider,
        &shifted,
        &mcp_base,
        &access_token,
    )
    .await?;
    revocation_steps(&mut s, &ana_id_token, &access_token).await?;
    Ok(s.failures)
}

/// What a tool call came to: its result, or the URL a URL-mode elicitation asks the user to
/// open (the MCP URL-elicitation-required error, -32042).
enum Outcome {
    Result { ok: bool, text: String },
    Connect { url: String, message: String },
}

async fn call_notes_tool(
    agent: &rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::InitializeRequestParams>,
    name: &'static str,
    args: Value,
) -> Result<Outcome, rmcp::ServiceError> {
    let request = CallToolRequestParams::new(name)
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    match agent.call_tool(request).await {
        Ok(result) => {
            let text: String = result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect();
            let ok = result.is_error != Some(true);
            println!(
                "   {name} {args} -> {} {text}",
                if ok { "ok:" } else { "ERROR:" }
            );
            Ok(Outcome::Result { ok, text })
        }
        Err(rmcp::ServiceError::McpError(e)) if e.code.0 == -32042 => {
            let first = e
                .data
                .as_ref()
                .and_then(|d| d.get("elicitations"))
                .and_then(|l| l.get(0))
                .cloned()
                .unwrap_or_default();
            let url = first.get("url").and_then(Value::as_str).unwrap_or_default();
            println!(
                "   {name} -> error {} (URL elicitation): {}",
                e.code.0, e.message
            );
            println!(
                "   elicitation: mode={}, url={url}",
                first
                    .get("mode")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            );
            Ok(Outcome::Connect {
                url: url.to_owned(),
                message: e.message.to_string(),
            })
        }
        Err(e) => Err(e),
    }
}

/// The downstream-credential steps: connect on first use (the demo plays the browser), the tool
/// working, a refresh, and offboarding.
async fn notes_steps(
    s: &mut Script,
    session: &Arc<ema_client::EmaSession>,
    provider: &NotesProvider,
    clock: &ShiftedClock,
    mcp_base: &str,
    access_token: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    // The demo shows the user the link of a URL elicitation, so the agent declares URL mode
    // (a client that does not gets the link in a tool error instead of -32042).
    let mut config = ema_client_config();
    declare_url_elicitation(&mut config.capabilities);
    let agent = config
        .serve(EmaHttpClient::new(session.clone())?.into_transport())
        .await?;

    s.step("A tool acting at another system: the first list_notes asks ana to connect (URL-mode elicitation)");
    let url = match call_notes_tool(&agent, "list_notes", serde_json::json!({})).await? {
        Outcome::Connect { url, message } => {
            let parsed = url::Url::parse(&url)?;
            let query: std::collections::HashMap<String, String> =
                parsed.query_pairs().into_owned().collect();
            s.expect(
                "-32042 with the provider's authorize URL: state, S256 challenge, our callback",
                query.contains_key("state")
                    && query.get("code_challenge_method").map(String::as_str) == Some("S256")
                    && query.get("redirect_uri").map(String::as_str)
                        == Some(format!("{mcp_base}/connect/notes/callback").as_str())
                    && message.contains("notes"),
            );
            url
        }
        Outcome::Result { .. } => {
            s.expect("the first call asks to connect", false);
            return Ok(());
        }
    };

    s.step("The demo is ana's browser: the provider approves, the callback stores the token (the agent never sees it)");
    let r = s.http.get(&url).send().await?;
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    println!(
        "   GET {}/authorize -> {} (redirect to the MCP server's callback)",
        provider.config().issuer,
        r.status().as_u16()
    );
    let r = s.http.get(&location).send().await?;
    let status = r.status().as_u16();
    let page = r.text().await?;
    println!("   GET {mcp_base}/connect/notes/callback -> {status}");
    s.expect(
        "the callback says connected; neither the redirect nor the page carries a token",
        status == 200
            && page.contains("connected")
            && !location.contains("access_token")
            && provider.live_tokens(NOTES_USER) == 2,
    );
    let r = s.http.get(&location).send().await?;
    println!("   the same callback again -> {}", r.status().as_u16());
    s.expect(
        "a replayed callback is refused (single-use state)",
        r.status().as_u16() == 400,
    );

    s.step("The tool works now: add_note and list_notes act as ana at the notes service");
    let added = call_notes_tool(
        &agent,
        "add_note",
        serde_json::json!({"text": "ship the vault"}),
    )
    .await?;
    let listed = call_notes_tool(&agent, "list_notes", serde_json::json!({})).await?;
    s.expect(
        "the note is stored and listed for ana@notes.example",
        matches!(added, Outcome::Result { ok: true, .. })
            && matches!(&listed, Outcome::Result { ok: true, text } if text.contains("ship the vault") && text.contains(NOTES_USER)),
    );

    s.step("The access token nears expiry: the next call refreshes it first (the old refresh token is rotated away)");
    clock.advance(NOTES_CLOCK_STEP);
    println!(
        "   (the clock moves {NOTES_CLOCK_STEP} s: the {NOTES_TOKEN_LIFETIME} s token is within the vault's 60 s refresh skew)"
    );
    // The MCP server's copy of the revocation ledger is dated by the same clock: after the jump
    // it looks 100 s old, past its 60 s staleness bound, and the server answers 503 (RV-16,
    // fail closed) until its next sync, at most a second later. Wait for that, bounded.
    let started = Instant::now();
    while s.call_mcp_quiet(Some(access_token)).await? == 503
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "   (the MCP server's revocation mirror caught up with the clock in {} ms)",
        started.elapsed().as_millis()
    );
    let before = provider.refreshes();
    let listed = call_notes_tool(&agent, "list_notes", serde_json::json!({})).await?;
    println!(
        "   refreshes at the provider: {before} -> {}",
        provider.refreshes()
    );
    s.expect(
        "one refresh, and the call works",
        provider.refreshes() == before + 1 && matches!(listed, Outcome::Result { ok: true, .. }),
    );

    s.step("ana is offboarded: every downstream credential is deleted and revoked at its provider");
    let r = s
        .http
        .post(format!("{mcp_base}/admin/offboard"))
        .bearer_auth(defaults::ADMIN_TOKEN)
        .json(&serde_json::json!({"subject": "u-17"}))
        .send()
        .await?;
    let status = r.status().as_u16();
    let report: Value = r.json().await.unwrap_or(Value::Null);
    println!("   POST {mcp_base}/admin/offboard -> {status} {report}");
    s.expect(
        "the report says notes: revoked, and the provider holds no token of ana",
        status == 200
            && report.get("providers")
                == Some(&serde_json::json!([{"provider": "notes", "outcome": "revoked"}]))
            && provider.live_tokens(NOTES_USER) == 0,
    );
    let again = call_notes_tool(&agent, "list_notes", serde_json::json!({})).await?;
    s.expect(
        "the next call asks to connect again",
        matches!(again, Outcome::Connect { .. }),
    );
    agent.cancel().await?;
    Ok(())
}

/// Offboarding at the IdP (issue 13): the admin disables ana at the IdP, which then refuses
/// her token exchanges (RV-1) and pushes a RISC `account-disabled` SET to the authorization
/// server's SSF receiver (RV-3, RV-4); the AS revokes her (RV-12) and the MCP server's mirror
/// of the ledger refuses her still-unexpired access token (RV-15). No call to the AS.
/// ana's subject at the reference IdP (the development defaults).
const ANA_IDP_SUBJECT: &str = "00u8k2Lq91";

async fn revocation_steps(
    s: &mut Script,
    ana_id_token: &str,
    access_token: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let before = s.call_mcp_quiet(Some(access_token)).await?;
    s.step("ana is disabled at the IdP: her next token exchange is refused (RV-1)");
    let r = s
        .http
        .post(format!(
            "{}{}",
            s.idp,
            ema_examples::admin::IDP_ADMIN_USERS_PATH
        ))
        .bearer_auth(defaults::DEV_IDP_ADMIN_SECRET)
        .json(&serde_json::json!({"subject": ANA_IDP_SUBJECT, "action": "disable"}))
        .send()
        .await?;
    let status = r.status().as_u16();
    let answer: serde_json::Value = r.json().await.unwrap_or_default();
    println!(
        "   POST {}{} -> {status} {answer}",
        s.idp,
        ema_examples::admin::IDP_ADMIN_USERS_PATH,
    );
    let disabled = status == 200;
    let delivered = answer
        .get("ssf")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|streams| {
            !streams.is_empty()
                && streams.iter().all(|s| {
                    s.get("outcome").and_then(serde_json::Value::as_str) == Some("delivered")
                })
        });
    let mcp = s.mcp.clone();
    let r = s.exchange(ana_id_token, &mcp, "tasks.read").await?;
    println!(
        "   error: {} ({})",
        text(&r.body, "error"),
        text(&r.body, "error_description")
    );
    s.expect(
        "the IdP takes the change and answers 400 invalid_grant",
        disabled && r.status == 400 && text(&r.body, "error") == "invalid_grant",
    );

    s.step("...the IdP's account-disabled SET reached the authorization server: her unexpired access token dies at the MCP server (RV-3, RV-15)");
    s.expect(
        "the SET was accepted (202) by the authorization server's SSF receiver",
        delivered,
    );
    // The MCP server's mirror follows the ledger every second; wait for it, bounded.
    let started = Instant::now();
    while s.call_mcp_quiet(Some(access_token)).await? == 200
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = s.call_mcp(Some(access_token)).await?;
    let challenge = after
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    println!(
        "   refused {} ms after the IdP's answer: {} {challenge}",
        started.elapsed().as_millis(),
        after.status
    );
    s.expect(
        "accepted before, 401 invalid_token (token revoked) after",
        before == 200
            && delivered
            && after.status == 401
            && challenge.contains("invalid_token")
            && challenge.contains("token revoked"),
    );
    Ok(())
}
