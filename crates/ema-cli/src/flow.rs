//! `ema token`, `ema tools`, `ema call`: the EMA flow through `ema-client`.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use ema_client::{
    AccessToken, CodeFlowError, CodeFlowOptions, DiscoveredServer, DiscoveryError, EmaClient,
    EmaError, EmaHttpClient, EmaSession, ErrorCode, FetchPolicy, HttpFetcher, IdpConfig,
    JwtBearerError, LoopbackRedirect, McpAuthError, OAuthErrorResponse, Secret, TokenExchangeError,
    ema_client_config,
};
use ema_metadata::{AuthorizationServerMetadata, authorization_server_metadata_urls};
use rmcp::model::CallToolRequestParams;
use rmcp::service::ClientInitializeError;
use rmcp::{ServiceError, ServiceExt};
use serde_json::{Value, json};
use url::Url;

use crate::args::IdTokenSource;
use crate::config::Config;
use crate::exit::{Exit, Failure, error_chain};
use crate::jwt::hint;
use crate::print_json;

/// What `token`, `tools` and `call` share: the config, the ID token, the MCP server.
pub(crate) struct FlowArgs<'a> {
    pub(crate) config: &'a Config,
    pub(crate) config_dir: &'a Path,
    pub(crate) id_token: &'a IdTokenSource,
    pub(crate) mcp: &'a str,
    pub(crate) policy: FetchPolicy,
}

/// The ID token: read from its file, or from an interactive sign-in at the IdP (`--login`).
async fn id_token(args: &FlowArgs<'_>, client: &EmaClient) -> Result<Secret, Failure> {
    match args.id_token {
        IdTokenSource::File(path) => read_id_token(path),
        IdTokenSource::Login { .. } => {
            eprintln!(
                "hop 1 (sign-in at the IdP `{}`): waiting for the browser",
                client.idp().issuer()
            );
            let token = client.sign_in().await.map_err(|e| sign_in_failure(&e))?;
            eprintln!("hop 1 (sign-in at the IdP): ID token received");
            Ok(token)
        }
    }
}

/// The exit code and sentence of a failed sign-in.
fn sign_in_failure(e: &CodeFlowError) -> Failure {
    let exit = match e {
        CodeFlowError::Token(_) => Exit::Network,
        CodeFlowError::IdpDiscovery { .. } => Exit::Discovery,
        CodeFlowError::AccessDenied { .. }
        | CodeFlowError::Refused(_)
        | CodeFlowError::TokenRejected(_)
        | CodeFlowError::IdTokenRefused { .. }
        | CodeFlowError::StateMismatch
        | CodeFlowError::IssuerMismatch { .. }
        | CodeFlowError::MissingCode
        | CodeFlowError::MalformedResponse { .. } => Exit::Refused,
        _ => Exit::Failed,
    };
    Failure::new(
        exit,
        format!("sign-in at the IdP failed: {}", error_chain(e)),
    )
}

/// The `--login` code-flow options: the loopback listener, and the URL printed on stderr and
/// (unless `--no-browser`) opened in the browser.
fn login_options(source: &IdTokenSource) -> Result<Option<CodeFlowOptions>, Failure> {
    let IdTokenSource::Login {
        no_browser,
        redirect_port,
    } = *source
    else {
        return Ok(None);
    };
    let redirect = LoopbackRedirect::bind(redirect_port).map_err(|e| {
        Failure::usage(format!(
            "cannot listen on 127.0.0.1:{redirect_port} for the sign-in redirect: {e}"
        ))
    })?;
    let options = CodeFlowOptions::new(redirect).open_url(move |url: Url| async move {
        eprintln!("sign in at the IdP: {url}");
        if !no_browser && let Err(e) = open_browser(url.as_str()) {
            eprintln!("(could not start a browser: {e}; open the URL above yourself)");
        }
        Ok(())
    });
    Ok(Some(options))
}

/// Starts the user's browser on `url`: `$BROWSER`, else the platform's opener.
fn open_browser(url: &str) -> std::io::Result<()> {
    let mut command = if let Some(browser) = std::env::var_os("BROWSER") {
        std::process::Command::new(browser)
    } else if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else if cfg!(windows) {
        let mut start = std::process::Command::new("cmd");
        start.args(["/C", "start", ""]);
        start
    } else {
        std::process::Command::new("xdg-open")
    };
    let mut child = command
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Reaped in the background: the browser may outlive the command.
    std::thread::spawn(move || child.wait());
    Ok(())
}

fn read_id_token(path: &Path) -> Result<Secret, Failure> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::usage(format!("cannot read the ID token from stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(path).map_err(|e| {
            Failure::usage(format!(
                "cannot read the ID token file {}: {e}",
                path.display()
            ))
        })?;
    }
    let token = text.trim();
    if token.is_empty() {
        return Err(Failure::usage("the ID token is empty"));
    }
    Ok(Secret::new(token))
}

/// The IdP's token endpoint: configured, else from its metadata (CL-14).
async fn idp_token_endpoint(args: &FlowArgs<'_>, fetcher: &HttpFetcher) -> Result<String, Failure> {
    if let Some(endpoint) = &args.config.idp.token_endpoint {
        return Ok(endpoint.clone());
    }
    let issuer = args.config.idp.client.issuer.as_str();
    let issuer_url = fetcher.check_url("[idp] issuer", issuer).map_err(|e| {
        Failure::usage(format!(
            "[idp]: the issuer `{issuer}` is refused: {e}{}",
            hint(issuer)
        ))
    })?;
    for url in authorization_server_metadata_urls(&issuer_url) {
        let response = fetcher.get(&url).await.map_err(|e| {
            Failure::new(
                Exit::Network,
                format!(
                    "cannot reach the IdP's metadata at {url}: {}",
                    error_chain(&e)
                ),
            )
        })?;
        if response.status != 200 {
            continue;
        }
        let metadata = AuthorizationServerMetadata::from_json(&response.body)
            .and_then(|m| {
                m.validate(issuer, fetcher.policy().url_policy())
                    .map(|()| m)
            })
            .map_err(|e| {
                Failure::new(
                    Exit::Discovery,
                    format!("the IdP's metadata at {url} is not usable: {e}"),
                )
            })?;
        if let Some(endpoint) = metadata.token_endpoint {
            eprintln!("IdP {issuer}: token endpoint {endpoint} (from {url})");
            return Ok(endpoint);
        }
    }
    Err(Failure::new(
        Exit::Discovery,
        format!(
            "the IdP `{issuer}` publishes no metadata with a token endpoint; set `token_endpoint` \
             in [idp]"
        ),
    ))
}

async fn client(args: &FlowArgs<'_>) -> Result<(EmaClient, Url), Failure> {
    let server_url = Url::parse(args.mcp)
        .map_err(|e| Failure::usage(format!("`{}` is not a URL: {e}", args.mcp)))?;
    let fetcher = HttpFetcher::new(args.policy)
        .map_err(|e| Failure::usage(format!("cannot build the HTTP client: {e}")))?;
    let idp = &args.config.idp.client;
    let idp_credentials = idp.credentials("idp", args.config_dir)?;
    let as_section = &args.config.authorization_server;
    let as_credentials = as_section.credentials("authorization_server", args.config_dir)?;
    let token_endpoint = idp_token_endpoint(args, &fetcher).await?;
    let mut builder = EmaClient::builder(IdpConfig::new(
        idp.issuer.as_str(),
        token_endpoint,
        idp_credentials,
    ));
    if let Some(options) = login_options(args.id_token)? {
        builder = builder.code_flow(options);
    }
    let client = builder
        .authorization_server(as_section.issuer.as_str(), as_credentials)
        .fetcher(fetcher)
        .build()
        .map_err(|e| Failure::usage(format!("cannot build the HTTP client: {e}")))?;
    Ok((client, server_url))
}

fn print_discovered(server: &DiscoveredServer) {
    eprintln!(
        "hop 0 (discovery): resource `{}` (metadata {}), authorization server `{}`, scopes [{}]",
        server.resource_id(),
        server.resource_metadata_url,
        server.issuer(),
        server.initial_scope()
    );
}

/// `ema token`.
pub(crate) async fn token(args: &FlowArgs<'_>, json_out: bool) -> Result<(), Failure> {
    let (client, server_url) = client(args).await?;
    let id_token = id_token(args, &client).await?;
    let server = client
        .discover(&server_url)
        .await
        .map_err(|e| ema_failure(&EmaError::Discovery(e), args))?;
    print_discovered(&server);
    let scope = server.initial_scope();
    let id_jag = client
        .exchange(&server, &id_token, &scope)
        .await
        .map_err(|e| ema_failure(&e, args))?;
    eprintln!(
        "hop 2 (token exchange at the IdP): ID-JAG for `{}`, scope [{}], expires at {}",
        server.issuer(),
        id_jag
            .scope()
            .map(ToString::to_string)
            .unwrap_or_else(|| "not stated".into()),
        id_jag.expires_at().as_secs()
    );
    // As the library does (TX-9): ask the authorization server for what the ID-JAG carries.
    let mut granted = scope.clone();
    if let Some(carried) = id_jag.scope() {
        granted.retain(|s| carried.contains(s));
    }
    let token: AccessToken = client
        .redeem(&server, id_jag, &granted)
        .await
        .map_err(|e| ema_failure(&EmaError::JwtBearer(e), args))?;
    eprintln!(
        "hop 3 (jwt-bearer at the authorization server): access token for `{}`, scope [{}], \
         expires at {}",
        token.resource(),
        token.scope(),
        token.expires_at().as_secs()
    );
    if json_out {
        print_json(&json!({
            "access_token": token.secret().expose(),
            "token_type": "Bearer",
            "expires_at": token.expires_at().as_secs(),
            "scope": token.scope().to_string(),
            "resource": token.resource(),
            "authorization_server": server.issuer(),
        }));
    } else {
        println!("{}", token.secret().expose());
    }
    Ok(())
}

/// What `tools` and `call` do once connected.
pub(crate) enum McpAction<'a> {
    /// List the tools.
    Tools,
    /// Call one.
    Call {
        /// Its name.
        tool: &'a str,
        /// Its arguments.
        arguments: Option<&'a str>,
    },
}

/// `ema tools` and `ema call`: an rmcp client authorizing through an [`EmaSession`], which
/// handles step-up (403 `insufficient_scope`) and re-acquisition (401) itself.
pub(crate) async fn mcp(
    args: &FlowArgs<'_>,
    action: McpAction<'_>,
    json_out: bool,
) -> Result<(), Failure> {
    let arguments = match &action {
        McpAction::Call {
            arguments: Some(text),
            ..
        } => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Some(map),
            Ok(_) => return Err(Failure::usage("the tool arguments must be a JSON object")),
            Err(e) => {
                return Err(Failure::usage(format!(
                    "the tool arguments are not JSON: {e}"
                )));
            }
        },
        _ => None,
    };
    let (client, server_url) = client(args).await?;
    let id_token = id_token(args, &client).await?;
    let session = Arc::new(
        client
            .session(&server_url, id_token)
            .await
            .map_err(|e| ema_failure(&e, args))?,
    );
    print_discovered(session.server());
    let transport = EmaHttpClient::new(session.clone())
        .map_err(|e| Failure::usage(format!("cannot build the HTTP client: {e}")))?
        .into_transport();
    let service = ema_client_config()
        .serve(transport)
        .await
        .map_err(|e| mcp_failure(&session, &McpError::Initialize(&e), args))?;
    eprintln!("hop 4 (MCP): connected to {server_url}");
    let result = match action {
        McpAction::Tools => match service.list_all_tools().await {
            Ok(tools) => {
                if json_out {
                    print_json(&serde_json::to_value(&tools).unwrap_or(Value::Null));
                } else {
                    for tool in tools {
                        println!(
                            "{}: {}",
                            tool.name,
                            tool.description.as_deref().unwrap_or("")
                        );
                    }
                }
                Ok(())
            }
            Err(e) => Err(mcp_failure(&session, &McpError::Service(&e), args)),
        },
        McpAction::Call { tool, .. } => {
            let mut params = CallToolRequestParams::new(tool.to_owned());
            if let Some(map) = arguments {
                params = params.with_arguments(map);
            }
            match service.call_tool(params).await {
                Ok(result) => {
                    if json_out {
                        print_json(&serde_json::to_value(&result).unwrap_or(Value::Null));
                    } else {
                        for block in &result.content {
                            if let Some(text) = block.as_text() {
                                println!("{}", text.text);
                            }
                        }
                    }
                    if result.is_error == Some(true) {
                        Err(Failure::new(
                            Exit::Failed,
                            format!("the tool `{tool}` reported an error"),
                        ))
                    } else {
                        Ok(())
                    }
                }
                Err(e) => Err(mcp_failure(&session, &McpError::Service(&e), args)),
            }
        }
    };
    let _ = service.cancel().await;
    result
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

/// An EMA flow failure as a sentence naming the server that refused, with its exit code.
fn ema_failure(e: &EmaError, args: &FlowArgs<'_>) -> Failure {
    let refused = |m: String| Failure::new(Exit::Refused, m);
    let network = |m: String| Failure::new(Exit::Network, m);
    match e {
        EmaError::Discovery(d) => match d {
            DiscoveryError::Probe(_) | DiscoveryError::Fetch { .. } => {
                network(format!("cannot reach the MCP server or its metadata: {d}"))
            }
            DiscoveryError::ServerUrl(_) | DiscoveryError::MetadataUrl { .. } => {
                Failure::usage(format!("discovery: {d}{}", hint(args.mcp)))
            }
            _ => Failure::new(
                Exit::Discovery,
                format!(
                    "discovery failed: {d} (run `ema discover {}` for the fix)",
                    args.mcp
                ),
            ),
        },
        EmaError::TokenExchange(t) => match t {
            TokenExchangeError::Rejected(r) if r.is(&ErrorCode::InvalidClient) => refused(format!(
                "the IdP refused the client's credentials: {}; check client_id, secret or key \
                 and auth_method in [idp]",
                answer(r)
            )),
            TokenExchangeError::Rejected(r) if r.is(&ErrorCode::InvalidGrant) => refused(format!(
                "the IdP refused the ID token: {}; get a fresh ID token from a sign-in",
                answer(r)
            )),
            TokenExchangeError::Rejected(r) => {
                refused(format!("the IdP refused the token exchange: {}", answer(r)))
            }
            TokenExchangeError::Fetch(f) => {
                network(format!("cannot reach the IdP's token endpoint: {f}"))
            }
            TokenExchangeError::Sign(_) => Failure::usage(format!("[idp]: {t}")),
            other => refused(format!("the IdP's answer is unusable: {other}")),
        },
        EmaError::JwtBearer(j) => match j {
            JwtBearerError::ScopeRefused { response, scopes } => refused(format!(
                "the authorization server refused the requested scope {scopes}: {}",
                answer(response)
            )),
            JwtBearerError::Rejected(r) if r.is(&ErrorCode::InvalidClient) => refused(format!(
                "the authorization server refused the client's credentials: {}; check \
                 client_id, secret or key and auth_method in [authorization_server]",
                answer(r)
            )),
            JwtBearerError::Rejected(r) => refused(format!(
                "the authorization server refused the ID-JAG: {}",
                answer(r)
            )),
            JwtBearerError::Fetch(f) => network(format!(
                "cannot reach the authorization server's token endpoint: {f}"
            )),
            JwtBearerError::NoCredentials { issuer } => Failure::usage(format!(
                "the MCP server's authorization server is `{issuer}`, but \
                 [authorization_server] in the config names `{}`",
                args.config.authorization_server.issuer
            )),
            JwtBearerError::AuthMethodNotSupported { .. } | JwtBearerError::Sign(_) => {
                Failure::usage(format!("[authorization_server]: {j}"))
            }
            other => refused(format!(
                "the authorization server's answer is unusable: {other}"
            )),
        },
        EmaError::Mcp(m) => match m {
            McpAuthError::InsufficientScope { required, scopes } => refused(format!(
                "the MCP server refused the token: it requires scope `{required}`{}",
                scopes
                    .as_ref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            )),
            other => refused(format!("the MCP server refused the token: {other}")),
        },
        other => Failure::new(Exit::Failed, other.to_string()),
    }
}

/// What rmcp returned: an initialization or a request failure.
enum McpError<'a> {
    Initialize(&'a ClientInitializeError),
    Service(&'a ServiceError),
}

/// An rmcp failure: the session's own refusal when there is one (rmcp reports only that its
/// transport failed), else a network failure or the MCP server's protocol error.
fn mcp_failure(session: &EmaSession, e: &McpError<'_>, args: &FlowArgs<'_>) -> Failure {
    if let Some(failure) = session.last_failure() {
        return ema_failure(&failure, args);
    }
    let transport = matches!(
        e,
        McpError::Initialize(
            ClientInitializeError::TransportError { .. }
                | ClientInitializeError::ConnectionClosed(_),
        ) | McpError::Service(ServiceError::TransportSend(_) | ServiceError::TransportClosed)
    );
    let text = match e {
        McpError::Initialize(e) => error_chain(*e),
        McpError::Service(e) => error_chain(*e),
    };
    if transport {
        Failure::new(
            Exit::Network,
            format!("cannot talk to the MCP server: {text}"),
        )
    } else {
        Failure::new(
            Exit::Failed,
            format!("the MCP server answered with an error: {text}"),
        )
    }
}
