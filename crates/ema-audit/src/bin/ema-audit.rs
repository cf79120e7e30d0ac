//! `ema-audit verify FILE --key JWKS_FILE`: checks an audit trail and reports the first broken
//! link. Exit codes: 0 the trail verifies, 1 it does not, 2 usage or I/O error.

use std::path::PathBuf;
use std::process::ExitCode;

use ema_audit::{Verifier, VerifyError};
use ema_jose::JwkSet;

const USAGE: &str = "\
ema-audit: verify a tamper-evident ema-rs audit trail

USAGE:
    ema-audit verify FILE --key JWKS_FILE [--allow-unclosed]
    ema-audit --help | --version

Checks every record of FILE (JSON lines): its seq is the next one, its prev is the SHA-256 of
the line before, every checkpoint is a JWS signed by a key of JWKS_FILE (found by kid) over
claims matching the record, and the trail ends with a final checkpoint.

OPTIONS:
    --key JWKS_FILE     the public keys that signed the checkpoints (a JWKS document)
    --allow-unclosed    accept a trail still being written (no final checkpoint yet), and
                        report how many events no checkpoint covers
    -h, --help          print this help
    -V, --version       print the version

EXIT CODES:
    0  the trail verifies
    1  the trail is broken, forged, truncated or not closed (the first broken link is printed)
    2  usage error, or a file cannot be read
";

struct Args {
    file: PathBuf,
    key: PathBuf,
    allow_unclosed: bool,
}

enum Command {
    Help,
    Version,
    Verify(Args),
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        None => Err("missing command".into()),
        Some("-h" | "--help" | "help") => Ok(Command::Help),
        Some("-V" | "--version") => Ok(Command::Version),
        Some("verify") => {
            let mut file = None;
            let mut key = None;
            let mut allow_unclosed = false;
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "-h" | "--help" => return Ok(Command::Help),
                    "--key" => {
                        let value = args.next().ok_or("`--key` needs a JWKS file")?;
                        if key.replace(PathBuf::from(value)).is_some() {
                            return Err("`--key` given twice".into());
                        }
                    }
                    "--allow-unclosed" => allow_unclosed = true,
                    other if other.starts_with("--key=") => {
                        let value = other.get(6..).unwrap_or_default();
                        if key.replace(PathBuf::from(value)).is_some() {
                            return Err("`--key` given twice".into());
                        }
                    }
                    other if other.starts_with('-') && other != "-" => {
                        return Err(format!("unknown option `{other}`"));
                    }
                    other => {
                        if file.replace(PathBuf::from(other)).is_some() {
                            return Err("more than one FILE".into());
                        }
                    }
                }
            }
            Ok(Command::Verify(Args {
                file: file.ok_or("missing FILE")?,
                key: key.ok_or("missing `--key JWKS_FILE`")?,
                allow_unclosed,
            }))
        }
        Some(other) => Err(format!("unknown command `{other}`")),
    }
}

fn verify(args: &Args) -> ExitCode {
    let jwks = match std::fs::read(&args.key) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("ema-audit: cannot read `{}`: {e}", args.key.display());
            return ExitCode::from(2);
        }
    };
    let keys = match JwkSet::parse(&jwks) {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!(
                "ema-audit: `{}` is not a usable JWKS: {e}",
                args.key.display()
            );
            return ExitCode::from(2);
        }
    };
    for rejected in keys.rejected() {
        eprintln!(
            "ema-audit: warning: key {} of `{}` set aside: {}",
            rejected.kid.as_deref().unwrap_or("(no kid)"),
            args.key.display(),
            rejected.reason
        );
    }
    let verifier = Verifier::new(keys).allow_unclosed(args.allow_unclosed);
    match verifier.verify_file(&args.file) {
        Ok(report) => {
            println!("OK: {report}");
            ExitCode::SUCCESS
        }
        Err(VerifyError::Io { path, source }) => {
            eprintln!("ema-audit: cannot read `{}`: {source}", path.display());
            ExitCode::from(2)
        }
        Err(VerifyError::Broken(link)) => {
            println!("BROKEN: {link}");
            ExitCode::from(1)
        }
        Err(other) => {
            println!("BROKEN: {other}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("ema-audit {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Verify(args)) => verify(&args),
        Err(message) => {
            eprintln!("ema-audit: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_verify_in_any_order() {
        for args in [
            &["verify", "t.jsonl", "--key", "k.json"][..],
            &["verify", "--key", "k.json", "t.jsonl"],
            &["verify", "--key=k.json", "t.jsonl", "--allow-unclosed"],
        ] {
            let Ok(Command::Verify(a)) = run(args) else {
                panic!("{args:?}")
            };
            assert_eq!(a.file, PathBuf::from("t.jsonl"));
            assert_eq!(a.key, PathBuf::from("k.json"));
            assert_eq!(a.allow_unclosed, args.contains(&"--allow-unclosed"));
        }
    }

    #[test]
    fn refuses_bad_usage() {
        for (args, needle) in [
            (&[][..], "missing command"),
            (&["check"], "unknown command"),
            (&["verify", "t"], "missing `--key"),
            (&["verify", "--key", "k"], "missing FILE"),
            (&["verify", "t", "--key"], "needs a JWKS"),
            (&["verify", "t", "u", "--key", "k"], "more than one"),
            (&["verify", "t", "--key", "k", "--key", "j"], "twice"),
            (&["verify", "t", "--key", "k", "--fast"], "unknown option"),
        ] {
            match run(args) {
                Err(message) => assert!(message.contains(needle), "{args:?}: {message}"),
                Ok(_) => panic!("{args:?} accepted"),
            }
        }
        assert!(matches!(run(&["--help"]), Ok(Command::Help)));
        assert!(matches!(run(&["verify", "--help"]), Ok(Command::Help)));
        assert!(matches!(run(&["-V"]), Ok(Command::Version)));
    }
}
