//! A command-line agent: signs a user in at the IdP, gets an access token for the MCP server
//! through EMA (token exchange, then jwt-bearer), lists the tools and calls one.
//!
//! Run against the default servers (`idp`, `authorization-server`, `mcp-server`):
//! `cargo run -p ema-examples --bin agent -- [--config agent.toml] [--user ana --password ana-password] [tools | whoami | call <tool> [<json arguments>]]`
//! (`--help` lists every flag with its default, and the exit codes). A refusal is printed as one
//! sentence naming the server that refused and why.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ema_client::{
    DiscoveryError, EmaClient, EmaError, EmaHttpClient, EmaSession, ErrorCode, FetchPolicy,
    IdpConfig, JwtBearerError, McpAuthError, OAuthErrorResponse, Secret, TokenExchangeError,
    declare_url_elicitation, ema_client_config,
};
use ema_examples::config::{self, AgentConfig, defaults};
use ema_examples::sso::{SignInError, SsoClient, discover_idp};
use ema_grant::AuthMethod;
use rmcp::model::CallToolRequestParams;
use rmcp::service::ClientInitializeError;
use rmcp::{ServiceError, ServiceExt};

/// Exit code of a bad flag, an unreadable or invalid `--config`, or unusable credentials.
const EXIT_CONFIG: u8 = 2;
/// Exit code of a refusal: the IdP, the authorization server or the MCP server said no.
const EXIT_REFUSED: u8 = 3;
/// Exit code of a transport failure: a server could not be reached or did not answer.
const EXIT_TRANSPORT: u8 = 4;
/// Exit code of anything else (a tool error, a protocol error from the MCP server).
const EXIT_OTHER: u8 = 1;

fn usage() -> String {
    let d = defaults::agent();
    format!(
        "\
usage: agent [FLAGS] [COMMAND]

Signs a user in at the IdP, swaps the ID token for an ID-JAG (token exchange at the IdP), the
ID-JAG for an access token (jwt-bearer at the MCP authorization server), and calls the MCP
server with it.

Flags (a flag wins over the same setting in --config):
  --config FILE      TOML file: server URLs, the user, the client id, secret or key and the
                     token-endpoint auth method at the IdP and at the authorization server
                     (sample: examples/config/agent.toml). Default: built-in development values
  --idp URL          the IdP's issuer (endpoints from its metadata)    default: {idp}
  --as URL           the MCP authorization server's issuer             default: {auth}
  --mcp URL          the MCP server                                    default: {mcp}
  --user NAME        the user to sign in                               default: {user}
  --password PASS    that user's password                              default: {user}'s development password
  -h, --help         print this text

Commands:
  tools                           list the MCP server's tools (default)
  whoami                          call the `whoami` tool
  call TOOL [JSON]                call TOOL with a JSON object of arguments

The built-in clients (also in examples/config/agent.toml): at the IdP `{idp_client}`
({idp_method}), at the authorization server `{as_client}` ({as_method}).

Exit codes:
  0  success
  {other}  the tool reported an error, or the MCP server answered with a protocol error
  {config}  configuration error: a bad flag, an unreadable or invalid --config, unusable credentials
  {refused}  refused: the IdP, the authorization server or the MCP server said no (the sentence says which and why)
  {transport}  transport failure: a server could not be reached or did not answer
",
        idp = d.idp,
        auth = d.authorization_server,
        mcp = d.mcp,
        user = d.user.username,
        idp_client = d.idp_client.id,
        idp_method = d.idp_client.method(),
        as_client = d.as_client.id,
        as_method = d.as_client.method(),
        other = EXIT_OTHER,
        config = EXIT_CONFIG,
        refused = EXIT_REFUSED,
        transport = EXIT_TRANSPORT,
    )
}

/// Why the agent stopped: a sentence and its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn config(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_CONFIG,
            message: message.into(),
        }
    }

    fn refused(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_REFUSED,
            message: message.into(),
        }
    }

    fn transport(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_TRANSPORT,
            message: message.into(),
        }
    }

    fn other(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_OTHER,
            message: message.into(),
        }
    }
}

/// What the command line asks for.
enum Parsed {
    Help,
    Run(Box<AgentConfig>, Vec<String>),
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, Failure> {
    let mut it = args.into_iter();
    let mut config_file: Option<PathBuf> = None;
    let mut overrides: Vec<(String, String)> = Vec::new();
    let mut command = Vec::new();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--config" | "--idp" | "--as" | "--mcp" | "--user" | "--password" => {
                let value = it.next().ok_or_else(|| {
                    Failure::config(format!("`{arg}` needs a value (see --help)"))
                })?;
                if arg == "--config" {
                    config_file = Some(value.into());
                } else {
                    overrides.push((arg, value));
                }
            }
            flag if flag.starts_with("--") => {
                return Err(Failure::config(format!(
                    "unknown flag `{flag}` (see --help)"
                )));
            }
            _ => {
                command.push(arg);
                command.extend(it.by_ref());
            }
        }
    }
    let mut cfg = match &config_file {
        Some(path) => {
            config::load::<AgentConfig>(path).map_err(|e| Failure::config(e.to_string()))?
        }
        None => defaults::agent(),
    };
    for (flag, value) in overrides {
        match flag.as_str() {
            "--idp" => cfg.idp = value,
            "--as" => cfg.authorization_server = value,
            "--mcp" => cfg.mcp = value,
            "--user" => cfg.user.username = value,
            _ => cfg.user.password = value,
        }
    }
    Ok(Parsed::Run(Box::new(cfg), command))
}

#[tokio::main]
async fn main() -> ExitCode {
    // rmcp logs its transport's failures itself; the agent says what went wrong in one
    // sentence instead (RUST_LOG still shows everything).
    ema_examples::serve::init_logging("warn,rmcp=off");
    let parsed = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(failure) => return fail(&failure),
    };
    let (cfg, command) = match parsed {
        Parsed::Help => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Parsed::Run(cfg, command) => (cfg, command),
    };
    match run(&cfg, &command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(&failure),
    }
}

fn fail(failure: &Failure) -> ExitCode {
    eprintln!("agent: {}", failure.message);
    ExitCode::from(failure.code)
}

async fn run(cfg: &AgentConfig, command: &[String]) -> Result<(), Failure> {
    let idp_credentials = cfg
        .idp_client
        .credentials("idp_client")
        .map_err(|e| Failure::config(e.to_string()))?;
    let as_credentials = cfg
        .as_client
        .credentials("as_client")
        .map_err(|e| Failure::config(e.to_string()))?;
    let server_url = url::Url::parse(&cfg.mcp)
        .map_err(|e| Failure::config(format!("--mcp `{}` is not a URL: {e}", cfg.mcp)))?;
    // SSO (hop 1): the IdP's login form, answered for the user, with the IdP-side client.
    let client_secret_post = match cfg.idp_client.method() {
        AuthMethod::ClientSecretBasic => false,
        AuthMethod::ClientSecretPost => true,
        other => {
            return Err(Failure::config(format!(
                "[idp_client]: the sign-in at the reference IdP needs `client_secret_basic` or \
                 `client_secret_post`, not `{other}`"
            )));
        }
    };
    let sso = SsoClient {
        idp: cfg.idp.clone(),
        client_id: cfg.idp_client.id.clone(),
        client_secret: cfg.idp_client.secret.clone().unwrap_or_default(),
        redirect_uri: cfg.redirect_uri.clone(),
        client_secret_post,
    };
    let id_token = sso
        .sign_in(&cfg.user.username, &cfg.user.password)
        .await
        .map_err(|e| sign_in_failure(&e, cfg))?;
    eprintln!("signed in as {}", cfg.user.username);

    // EMA (hops 0, 2, 3): discovery, token exchange, jwt-bearer; loopback http is a named
    // development opt-in.
    // The token endpoint is the one the IdP publishes (CL-14), wherever the operator put it.
    let endpoints = discover_idp(&reqwest::Client::new(), &cfg.idp)
        .await
        .map_err(|e| sign_in_failure(&e, cfg))?;
    let client = EmaClient::builder(IdpConfig::new(
        cfg.idp.as_str(),
        endpoints.token_endpoint,
        idp_credentials,
    ))
    .authorization_server(cfg.authorization_server.as_str(), as_credentials)
    .fetch_policy(FetchPolicy::insecure_loopback_development())
    .build()
    .map_err(|e| Failure::config(format!("cannot build the HTTP client: {e}")))?;
    let session = Arc::new(
        client
            .session(&server_url, Secret::new(id_token))
            .await
            .map_err(|e| ema_failure(&e))?,
    );

    // The MCP call (hop 4), through rmcp; only the access token reaches the server (CL-7). The
    // client declares the EMA extension in its MCP capabilities (CL-15), and URL-mode
    // elicitation: the agent prints the link of a URL-elicitation-required error.
    let transport = EmaHttpClient::new(session.clone())
        .map_err(|e| Failure::config(format!("cannot build the HTTP client: {e}")))?
        .into_transport();
    let mut config = ema_client_config();
    declare_url_elicitation(&mut config.capabilities);
    let mcp = config
        .serve(transport)
        .await
        .map_err(|e| mcp_failure(&session, &McpError::Initialize(&e)))?;
    let result = call(&mcp, command).await.map_err(|e| match e {
        CallError::Usage(message) => Failure::config(message),
        CallError::Service(e) => mcp_failure(&session, &McpError::Service(&e)),
        CallError::Tool => Failure::other("the tool reported an error"),
    });
    let _ = mcp.cancel().await;
    result
}

enum CallError {
    Usage(String),
    Service(rmcp::ServiceError),
    Tool,
}

impl From<rmcp::ServiceError> for CallError {
    fn from(e: rmcp::ServiceError) -> Self {
        Self::Service(e)
    }
}

async fn call(
    mcp: &rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::InitializeRequestParams>,
    command: &[String],
) -> Result<(), CallError> {
    match command.first().map(String::as_str) {
        None | Some("tools") => {
            for tool in mcp.list_all_tools().await? {
                println!(
                    "{}: {}",
                    tool.name,
                    tool.description.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
        Some("whoami") => print_result(mcp.call_tool(CallToolRequestParams::new("whoami")).await?),
        Some("call") => {
            let name = command
                .get(1)
                .ok_or_else(|| CallError::Usage("usage: call <tool> [<json arguments>]".into()))?
                .clone();
            let mut params = CallToolRequestParams::new(name);
            if let Some(json) = command.get(2) {
                let value: serde_json::Value = serde_json::from_str(json)
                    .map_err(|e| CallError::Usage(format!("tool arguments are not JSON: {e}")))?;
                let serde_json::Value::Object(map) = value else {
                    return Err(CallError::Usage(
                        "tool arguments must be a JSON object".into(),
                    ));
                };
                params = params.with_arguments(map);
            }
            print_result(mcp.call_tool(params).await?)
        }
        Some(other) => Err(CallError::Usage(format!(
            "unknown command `{other}` (tools, whoami, call; see --help)"
        ))),
    }
}

fn print_result(result: rmcp::model::CallToolResult) -> Result<(), CallError> {
    for block in result.content {
        if let Some(text) = block.as_text() {
            println!("{}", text.text);
        }
    }
    if result.is_error == Some(true) {
        return Err(CallError::Tool);
    }
    Ok(())
}

/// The sign-in (hop 1) as a sentence.
fn sign_in_failure(e: &SignInError, cfg: &AgentConfig) -> Failure {
    match e {
        SignInError::Http(e) => Failure::transport(format!(
            "cannot reach the IdP at {}: {}",
            cfg.idp,
            error_chain(e)
        )),
        SignInError::Refused(status) => Failure::refused(format!(
            "the IdP refused the sign-in of `{}` (HTTP {status}): wrong user name or password, \
             or the client `{}` is not registered for this redirect URI",
            cfg.user.username, cfg.idp_client.id
        )),
        SignInError::BadRedirect => {
            Failure::refused("the IdP's sign-in redirect has no code or the wrong state (CL-12)")
        }
        SignInError::NoIdToken(code) => Failure::refused(format!(
            "the IdP issued no ID token for the sign-in ({code}); check the client id, secret \
             and token_endpoint_auth_method of [idp_client]"
        )),
        SignInError::Discovery(why) => Failure::config(format!(
            "cannot use the IdP at {} (is `idp` its issuer?): {why}",
            cfg.idp
        )),
    }
}

/// An OAuth error response as "description (code)", or the HTTP status alone.
fn answer(e: &OAuthErrorResponse) -> String {
    match (&e.error_description, &e.error) {
        (Some(description), Some(code)) => format!("{description} ({code})"),
        (None, Some(code)) => code.to_string(),
        (Some(description), None) => format!("{description} (HTTP {})", e.status),
        (None, None) => format!("HTTP {}", e.status),
    }
}

/// An EMA flow failure as a sentence naming the server that refused.
fn ema_failure(e: &EmaError) -> Failure {
    match e {
        EmaError::Discovery(d) => match d {
            DiscoveryError::Probe(_) | DiscoveryError::Fetch { .. } => {
                Failure::transport(format!("cannot reach the MCP server or its metadata: {d}"))
            }
            DiscoveryError::ServerUrl(_) | DiscoveryError::MetadataUrl { .. } => {
                Failure::config(format!("discovery: {d}"))
            }
            _ => Failure::refused(format!("discovery failed: {d}")),
        },
        EmaError::TokenExchange(t) => match t {
            TokenExchangeError::Rejected(r) if r.is(&ErrorCode::AccessDenied) => {
                Failure::refused(format!(
                    "access denied by the IdP: {}",
                    r.error_description.as_deref().unwrap_or("no reason given")
                ))
            }
            TokenExchangeError::Rejected(r) if r.is(&ErrorCode::InsufficientUserAuthentication) => {
                Failure::refused(format!(
                    "the IdP wants the user to sign in again{}{}: {}",
                    r.max_age
                        .map(|a| format!(" (within {a} s)"))
                        .unwrap_or_default(),
                    r.acr_values
                        .as_deref()
                        .map(|a| format!(" (acr_values `{a}`)"))
                        .unwrap_or_default(),
                    answer(r)
                ))
            }
            TokenExchangeError::Rejected(r) if r.is(&ErrorCode::InvalidClient) => {
                Failure::refused(format!(
                    "the IdP refused the client's credentials: {}; check the id, secret or key and \
                 token_endpoint_auth_method of [idp_client]",
                    answer(r)
                ))
            }
            TokenExchangeError::Rejected(r) => {
                Failure::refused(format!("the IdP refused the token exchange: {}", answer(r)))
            }
            TokenExchangeError::Fetch(f) => {
                Failure::transport(format!("cannot reach the IdP's token endpoint: {f}"))
            }
            TokenExchangeError::Sign(_) => Failure::config(format!("[idp_client]: {t}")),
            other => Failure::refused(format!("the IdP's answer is unusable: {other}")),
        },
        EmaError::JwtBearer(j) => match j {
            JwtBearerError::ScopeRefused { response, scopes } => Failure::refused(format!(
                "the authorization server refused the requested scope: {scopes}; it said: {}",
                answer(response)
            )),
            JwtBearerError::Rejected(r) if r.is(&ErrorCode::InvalidClient) => {
                Failure::refused(format!(
                    "the authorization server refused the client's credentials: {}; check the id, \
                 secret or key and token_endpoint_auth_method of [as_client]",
                    answer(r)
                ))
            }
            JwtBearerError::Rejected(r) => Failure::refused(format!(
                "the authorization server refused the ID-JAG: {}",
                answer(r)
            )),
            JwtBearerError::Fetch(f) => Failure::transport(format!(
                "cannot reach the authorization server's token endpoint: {f}"
            )),
            JwtBearerError::NoCredentials { .. }
            | JwtBearerError::AuthMethodNotSupported { .. }
            | JwtBearerError::Sign(_) => Failure::config(format!("[as_client]: {j}")),
            other => Failure::refused(format!(
                "the authorization server's answer is unusable: {other}"
            )),
        },
        EmaError::Mcp(m) => match m {
            McpAuthError::InsufficientScope { required, scopes } => Failure::refused(format!(
                "the MCP server refused the token: it requires scope `{required}`{}",
                scopes
                    .as_ref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            )),
            other => Failure::refused(format!("the MCP server refused the token: {other}")),
        },
        other => Failure::other(other.to_string()),
    }
}

/// An rmcp failure: the session's own refusal when there is one (rmcp reports only that its
/// transport failed), else a transport failure or the MCP server's protocol error.
fn mcp_failure(session: &EmaSession, e: &McpError) -> Failure {
    if let Some(failure) = session.last_failure() {
        return ema_failure(&failure);
    }
    let transport = matches!(
        e,
        McpError::Initialize(
            ClientInitializeError::TransportError { .. }
                | ClientInitializeError::ConnectionClosed(_),
        ) | McpError::Service(ServiceError::TransportSend(_) | ServiceError::TransportClosed)
    );
    // MCP's URL-elicitation-required error: the tool needs the user to open a link (to connect
    // a downstream account); the agent shows it.
    if let McpError::Service(ServiceError::McpError(data)) = e
        && data.code.0 == -32042
    {
        let urls: Vec<&str> = data
            .data
            .as_ref()
            .and_then(|d| d.get("elicitations"))
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("url").and_then(serde_json::Value::as_str))
            .collect();
        return Failure::other(format!(
            "{} Open in a browser: {}",
            data.message,
            urls.join(" ")
        ));
    }
    let text = match e {
        McpError::Initialize(e) => error_chain(*e),
        McpError::Service(e) => error_chain(*e),
    };
    if transport {
        Failure::transport(format!("cannot talk to the MCP server: {text}"))
    } else {
        Failure::other(format!("the MCP server answered with an error: {text}"))
    }
}

/// What rmcp returned: an initialization or a request failure.
enum McpError<'a> {
    Initialize(&'a ClientInitializeError),
    Service(&'a ServiceError),
}

/// An error and its sources, `: `-separated, without repeating a source already in the text.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
