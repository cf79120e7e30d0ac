#![doc = include_str!("../README.md")]

mod args;
mod config;
mod discover;
mod exit;
mod flow;
mod jwt;

use std::path::{Path, PathBuf};

pub use args::{Args, Command, IdTokenSource, USAGE};
pub use config::{ClientSection, Config, IdpSection};
pub use exit::{Exit, Failure};

use ema_client::{FetchPolicy, HttpFetcher};

/// Pretty JSON on stdout.
pub(crate) fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Runs a parsed command line: results on stdout, progress on stderr.
pub async fn run(args: &Args) -> Result<(), Failure> {
    let policy = if args.insecure_loopback {
        FetchPolicy::insecure_loopback_development()
    } else {
        FetchPolicy::new()
    };
    let fetcher = || {
        HttpFetcher::new(policy)
            .map_err(|e| Failure::usage(format!("cannot build the HTTP client: {e}")))
    };
    match &args.command {
        Command::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Command::Version => {
            println!("ema {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Discover { mcp } => discover::discover(mcp, &fetcher()?, args.json).await,
        Command::Decode { jwt } => jwt::decode(jwt, args.json),
        Command::Verify {
            jwt,
            jwks,
            iss,
            aud,
            kind,
            now,
        } => {
            let verify = jwt::VerifyArgs {
                jwt,
                jwks,
                iss: iss.as_deref(),
                aud: aud.as_deref(),
                kind: kind.as_deref(),
                now: *now,
            };
            jwt::verify(&verify, &fetcher()?, args.json).await
        }
        Command::Token { mcp, id_token }
        | Command::Tools { mcp, id_token }
        | Command::Call { mcp, id_token, .. } => {
            let config_path = args
                .config
                .clone()
                .unwrap_or_else(|| PathBuf::from("ema.toml"));
            let config = Config::load(&config_path)?;
            let config_dir = config_path.parent().unwrap_or(Path::new("."));
            let flow_args = flow::FlowArgs {
                config: &config,
                config_dir,
                id_token,
                mcp,
                policy,
            };
            match &args.command {
                Command::Tools { .. } => {
                    flow::mcp(&flow_args, flow::McpAction::Tools, args.json).await
                }
                Command::Call {
                    tool, arguments, ..
                } => {
                    let action = flow::McpAction::Call {
                        tool,
                        arguments: arguments.as_deref(),
                    };
                    flow::mcp(&flow_args, action, args.json).await
                }
                _ => flow::token(&flow_args, args.json).await,
            }
        }
    }
}
