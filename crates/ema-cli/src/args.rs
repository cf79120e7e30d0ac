//! The command line, parsed by hand.

use std::path::PathBuf;

use crate::exit::Failure;

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Args {
    /// The subcommand.
    pub command: Command,
    /// `--config FILE`: IdP and authorization-server client credentials (TOML).
    pub config: Option<PathBuf>,
    /// `--json`: results on stdout as JSON.
    pub json: bool,
    /// `--insecure-loopback`: allow `http` to loopback addresses (development servers).
    pub insecure_loopback: bool,
}

/// Where `token`, `tools` and `call` get the user's ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdTokenSource {
    /// `--id-token-file F`: a file, or stdin for `-`.
    File(PathBuf),
    /// `--login`: an interactive sign-in at the IdP in the browser (OpenID Connect code flow
    /// with PKCE on a loopback redirect).
    Login {
        /// `--no-browser`: only print the sign-in URL (do not start a browser).
        no_browser: bool,
        /// `--redirect-port N`: the loopback listener's port (0, the default: any free port).
        redirect_port: u16,
    },
}

/// The subcommands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `ema --help`.
    Help,
    /// `ema --version`.
    Version,
    /// `ema discover <mcp-url>`.
    Discover {
        /// The MCP server.
        mcp: String,
    },
    /// `ema token <mcp-url> (--id-token-file F | --login)`.
    Token {
        /// The MCP server.
        mcp: String,
        /// Where the ID token comes from.
        id_token: IdTokenSource,
    },
    /// `ema tools <mcp-url> --id-token-file F`.
    Tools {
        /// The MCP server.
        mcp: String,
        /// Where the ID token comes from.
        id_token: IdTokenSource,
    },
    /// `ema call <mcp-url> <tool> [json-args] --id-token-file F`.
    Call {
        /// The MCP server.
        mcp: String,
        /// The tool's name.
        tool: String,
        /// Its arguments, a JSON object.
        arguments: Option<String>,
        /// Where the ID token comes from.
        id_token: IdTokenSource,
    },
    /// `ema decode <jwt>` (`-` for stdin).
    Decode {
        /// The token, or `-`.
        jwt: String,
    },
    /// `ema verify <jwt> --jwks <file|url> [--iss I] [--aud A] [--kind K] [--now T]`.
    Verify {
        /// The token, or `-`.
        jwt: String,
        /// A JWKS file or URL.
        jwks: String,
        /// The expected `iss`.
        iss: Option<String>,
        /// An `aud` the token must name.
        aud: Option<String>,
        /// The token kind (`id-token`, `id-jag`, `access-token`, `client-assertion`); from
        /// the `typ` header when absent.
        kind: Option<String>,
        /// The time to check `exp`/`nbf`/`iat` at (Unix seconds); now when absent.
        now: Option<u64>,
    },
}

/// The text of `ema --help`.
pub const USAGE: &str = "\
usage: ema [FLAGS] COMMAND [ARGS]

Diagnoses and drives MCP Enterprise-Managed Authorization: an SSO ID token is exchanged at the
IdP for an ID-JAG, the ID-JAG at the MCP server's authorization server for an access token.
Progress goes to stderr, results to stdout.

Commands:
  discover MCP_URL                      walk PRM -> authorization-server metadata -> grant
                                        profiles; print what is there and what is wrong, with
                                        the fix
  token MCP_URL --id-token-file F       run the EMA flow (F, or - for stdin); each hop on
                                        stderr, the access token on stdout
  token MCP_URL --login                 the same, signing in at the IdP in the browser first
  tools MCP_URL --id-token-file F       list the MCP server's tools with that token (or --login)
  call MCP_URL TOOL [JSON] --id-token-file F
                                        call TOOL with a JSON object of arguments (or --login)
  decode JWT                            header and claims, UNVERIFIED (JWT, or - for stdin)
  verify JWT --jwks FILE|URL            strict verification: header policy, signature, time;
         [--iss ISS] [--aud AUD]        exact iss and aud checks
         [--kind KIND] [--now SECONDS]  id-token, id-jag, access-token, client-assertion
                                        (default: from the typ header); check time at SECONDS

Flags:
  --config FILE        TOML with the client's credentials at the IdP ([idp]) and at the
                       authorization server ([authorization_server]); default: ./ema.toml
  --json               results on stdout as JSON, for scripts
  --insecure-loopback  allow http:// to loopback addresses (development servers only)
  --login              sign in at the IdP in the browser ([idp] client; the IdP must allow its
                       redirect URI http://127.0.0.1/callback on any port, RFC 8252)
  --no-browser         with --login: print the sign-in URL, do not start a browser
  --redirect-port N    with --login: the loopback listener's port (default: any free port)
  -h, --help           print this text
  -V, --version        print the version

Exit codes:
  0  success
  1  the tool reported an error, or the MCP server answered with a protocol error
  2  usage: bad flag or argument, unreadable or invalid config, ID token or JWKS file
  3  discovery problem: metadata missing or wrong (see `ema discover`)
  4  refused: the IdP, the authorization server or the MCP server said no
  5  network: a server could not be reached or did not answer
  6  verify: the token did not verify
";

impl Args {
    /// Parses the arguments after the program name.
    ///
    /// Flags may come before or after the command; `--` ends the flags.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, Failure> {
        let mut it = args.into_iter();
        let mut positional: Vec<String> = Vec::new();
        let mut config = None;
        let mut json = false;
        let mut insecure_loopback = false;
        let mut id_token: Option<PathBuf> = None;
        let mut login = false;
        let mut no_browser = false;
        let mut redirect_port: Option<u16> = None;
        let mut jwks = None;
        let mut iss = None;
        let mut aud = None;
        let mut kind = None;
        let mut now = None;
        let mut help = false;
        let mut version = false;
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .ok_or_else(|| Failure::usage(format!("`{name}` needs a value (see --help)")))
            };
            match arg.as_str() {
                "-h" | "--help" => help = true,
                "-V" | "--version" => version = true,
                "--json" => json = true,
                "--insecure-loopback" => insecure_loopback = true,
                "--config" => config = Some(PathBuf::from(value(&arg)?)),
                "--id-token-file" => id_token = Some(PathBuf::from(value(&arg)?)),
                "--login" => login = true,
                "--no-browser" => no_browser = true,
                "--redirect-port" => {
                    let v = value(&arg)?;
                    redirect_port = Some(v.parse::<u16>().map_err(|_| {
                        Failure::usage(format!("`--redirect-port` takes a port number, not `{v}`"))
                    })?);
                }
                "--jwks" => jwks = Some(value(&arg)?),
                "--iss" => iss = Some(value(&arg)?),
                "--aud" => aud = Some(value(&arg)?),
                "--kind" => kind = Some(value(&arg)?),
                "--now" => {
                    let v = value(&arg)?;
                    now = Some(v.parse::<u64>().map_err(|_| {
                        Failure::usage(format!("`--now` takes Unix seconds, not `{v}`"))
                    })?);
                }
                "--" => positional.extend(it.by_ref()),
                flag if flag.starts_with('-') && flag != "-" => {
                    return Err(Failure::usage(format!(
                        "unknown flag `{flag}` (see --help)"
                    )));
                }
                _ => positional.push(arg),
            }
        }
        let command = if help {
            Command::Help
        } else if version {
            Command::Version
        } else {
            let source = id_token_source(id_token, login, no_browser, redirect_port)?;
            command(positional, source, jwks, iss, aud, kind, now)?
        };
        Ok(Self {
            command,
            config,
            json,
            insecure_loopback,
        })
    }
}

/// `--id-token-file` or `--login` (not both); `--no-browser` and `--redirect-port` only with
/// `--login`.
fn id_token_source(
    file: Option<PathBuf>,
    login: bool,
    no_browser: bool,
    redirect_port: Option<u16>,
) -> Result<Option<IdTokenSource>, Failure> {
    match (file, login) {
        (Some(_), true) => Err(Failure::usage(
            "`--id-token-file` and `--login` exclude each other: give one",
        )),
        (Some(file), false) if !no_browser && redirect_port.is_none() => {
            Ok(Some(IdTokenSource::File(file)))
        }
        (_, false) if no_browser || redirect_port.is_some() => Err(Failure::usage(
            "`--no-browser` and `--redirect-port` go with `--login`",
        )),
        (_, true) => Ok(Some(IdTokenSource::Login {
            no_browser,
            redirect_port: redirect_port.unwrap_or(0),
        })),
        (_, false) => Ok(None),
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one parameter per flag the commands take"
)]
fn command(
    positional: Vec<String>,
    id_token: Option<IdTokenSource>,
    jwks: Option<String>,
    iss: Option<String>,
    aud: Option<String>,
    kind: Option<String>,
    now: Option<u64>,
) -> Result<Command, Failure> {
    let mut words = positional.into_iter();
    let Some(name) = words.next() else {
        return Err(Failure::usage("no command given (see --help)"));
    };
    let rest: Vec<String> = words.collect();
    let count = rest.len();
    let arity = |min: usize, max: usize, shape: &str| {
        if count < min || count > max {
            Err(Failure::usage(format!("usage: ema {shape}")))
        } else {
            Ok(())
        }
    };
    let need_id_token = |id_token: Option<IdTokenSource>| {
        id_token.ok_or_else(|| {
            Failure::usage(format!(
                "`ema {name}` needs `--id-token-file FILE` (or `-` for stdin) or `--login`"
            ))
        })
    };
    let mut rest = rest.into_iter();
    let mut next = || rest.next().unwrap_or_default();
    match name.as_str() {
        "discover" => {
            arity(1, 1, "discover MCP_URL")?;
            Ok(Command::Discover { mcp: next() })
        }
        "token" => {
            arity(1, 1, "token MCP_URL --id-token-file FILE")?;
            Ok(Command::Token {
                mcp: next(),
                id_token: need_id_token(id_token)?,
            })
        }
        "tools" => {
            arity(1, 1, "tools MCP_URL --id-token-file FILE")?;
            Ok(Command::Tools {
                mcp: next(),
                id_token: need_id_token(id_token)?,
            })
        }
        "call" => {
            arity(2, 3, "call MCP_URL TOOL [JSON] --id-token-file FILE")?;
            let mcp = next();
            let tool = next();
            let arguments = Some(next()).filter(|a| !a.is_empty());
            Ok(Command::Call {
                mcp,
                tool,
                arguments,
                id_token: need_id_token(id_token)?,
            })
        }
        "decode" => {
            arity(1, 1, "decode JWT")?;
            Ok(Command::Decode { jwt: next() })
        }
        "verify" => {
            arity(1, 1, "verify JWT --jwks FILE|URL [--iss ISS] [--aud AUD]")?;
            let jwt = next();
            let jwks =
                jwks.ok_or_else(|| Failure::usage("`ema verify` needs `--jwks FILE|URL`"))?;
            Ok(Command::Verify {
                jwt,
                jwks,
                iss,
                aud,
                kind,
                now,
            })
        }
        other => Err(Failure::usage(format!(
            "unknown command `{other}` (discover, token, tools, call, decode, verify; see --help)"
        ))),
    }
}
