//! `ema`: see `ema --help` and the crate's README.

use std::process::ExitCode;

use ema_cli::{Args, Exit, Failure};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let result = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => ema_cli::run(&args).await,
        Err(failure) => Err(failure),
    };
    match result {
        Ok(()) => ExitCode::from(Exit::Ok.code()),
        Err(Failure { exit, message, .. }) => {
            eprintln!("ema: {message}");
            ExitCode::from(exit.code())
        }
    }
}
