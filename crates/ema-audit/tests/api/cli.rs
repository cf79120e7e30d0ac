//! The `ema-audit` command on good and broken files.

use std::process::Command;

use crate::common::{TempDir, jwks, lines, trail};

fn run(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ema-audit"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn verify_good_broken_truncated_and_bad_usage() {
    let dir = TempDir::new("cli");
    let key = dir.path("jwks.json");
    std::fs::write(&key, jwks().to_public_json().to_string()).unwrap();
    let bytes = trail(5, 2);
    let good = dir.path("good.jsonl");
    std::fs::write(&good, &bytes).unwrap();

    let (code, out, _) = run(&[
        "verify".as_ref(),
        good.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("OK: 8 records (5 events, 3 checkpoints)"),
        "{out}"
    );
    assert!(out.contains("audit-k1"), "{out}");
    let last = lines(&bytes).pop().unwrap();
    let head = ema_audit::RecordHash::of_line(last.trim_ascii_end());
    assert!(out.trim_end().ends_with(&format!("; head {head}")), "{out}");

    let mut all = lines(&bytes);
    let text = String::from_utf8(all[1].clone()).unwrap();
    all[1] = text.replacen("user-1", "user-Z", 1).into_bytes();
    let bad = dir.path("bad.jsonl");
    std::fs::write(&bad, all.concat()).unwrap();
    let (code, out, _) = run(&[
        "verify".as_ref(),
        bad.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("BROKEN: line 3 (seq 2): `prev` is not the hash of line 2 (seq 1)"),
        "{out}"
    );

    let all = lines(&bytes);
    let cut = dir.path("cut.jsonl");
    std::fs::write(&cut, all[..all.len() - 1].concat()).unwrap();
    let (code, out, _) = run(&[
        "verify".as_ref(),
        cut.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("truncated or not closed after seq 6"), "{out}");
    let (code, out, _) = run(&[
        "verify".as_ref(),
        cut.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
        "--allow-unclosed".as_ref(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("NOT closed"), "{out}");

    let (code, _, err) = run(&[
        "verify".as_ref(),
        dir.path("missing.jsonl").as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");
    let (code, _, err) = run(&[
        "verify".as_ref(),
        good.as_os_str(),
        "--key".as_ref(),
        good.as_os_str(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not a usable JWKS"), "{err}");
    let (code, _, err) = run(&["verify".as_ref(), good.as_os_str()]);
    assert_eq!(code, 2);
    assert!(err.contains("missing `--key"), "{err}");
    let (code, out, _) = run(&["--help".as_ref()]);
    assert_eq!(code, 0);
    assert!(out.contains("ema-audit verify FILE --key JWKS_FILE"));
}
