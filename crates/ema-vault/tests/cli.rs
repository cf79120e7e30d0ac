//! The `ema-vault` admin command, run as a process.

#![cfg(feature = "sqlite")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("ema-vault-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ema-vault"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn gen_key(dir: &TempDir, name: &str) -> String {
    let path = dir.path(name);
    let out = run(&["gen-key", "--out", &path], None);
    assert!(out.status.success(), "{}", text(&out));
    path
}

#[test]
fn gen_key_writes_a_private_key_file_and_refuses_to_overwrite() {
    let dir = TempDir::new("genkey");
    let path = gen_key(&dir, "k");
    let key = ema_vault::MasterKey::from_file(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = run(&["gen-key", "--out", &path], None);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert_eq!(
        ema_vault::MasterKey::from_file(&path).unwrap().id(),
        key.id()
    );
}

#[test]
fn put_secret_list_revoke_all() {
    let dir = TempDir::new("put");
    let key = gen_key(&dir, "k");
    let db = dir.path("v.db");
    let owner = [
        "--db",
        &db,
        "--key-file",
        &key,
        "--tenant",
        "acme",
        "--subject",
        "alice",
    ];
    let mut put = owner.to_vec();
    put.extend(["--provider", "warehouse", "--label", "read-only role"]);
    let out = run(
        &[&["put-secret"], put.as_slice()].concat(),
        Some("hunter2-secret\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("hunter2"));

    let out = run(&[&["list"], owner.as_slice()].concat(), None);
    assert!(out.status.success(), "{}", text(&out));
    let listed = text(&out);
    assert!(
        listed.contains("warehouse\tkind=Static\tstatus=Active"),
        "{listed}"
    );
    assert!(listed.contains("label=read-only role"), "{listed}");
    assert!(listed.contains("1 credential(s)"), "{listed}");
    assert!(!listed.contains("hunter2"), "{listed}");

    // The secret was stored without its trailing newline.
    let store = ema_vault::SqliteStore::open(
        &db,
        ema_vault::MasterKeys::new(ema_vault::MasterKey::from_file(&key).unwrap()),
    )
    .unwrap();
    let id = ema_vault::CredentialKey::new("acme", "alice", "warehouse").unwrap();
    use ema_vault::CredentialStore as _;
    assert_eq!(
        store
            .get(&id)
            .unwrap()
            .unwrap()
            .credential
            .secret()
            .expose(),
        "hunter2-secret"
    );
    drop(store);

    let out = run(&[&["revoke-all"], owner.as_slice()].concat(), None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("warehouse\tdeleted"), "{}", text(&out));
    assert!(
        text(&out).contains("NOT revoked at the providers"),
        "{}",
        text(&out)
    );
    let out = run(&[&["list"], owner.as_slice()].concat(), None);
    assert!(text(&out).contains("0 credential(s)"), "{}", text(&out));
}

#[test]
fn an_empty_secret_and_usage_errors_exit_2() {
    let dir = TempDir::new("usage");
    let key = gen_key(&dir, "k");
    let db = dir.path("v.db");
    let base = [
        "put-secret",
        "--db",
        &db,
        "--key-file",
        &key,
        "--tenant",
        "acme",
        "--subject",
        "a",
        "--provider",
        "p",
    ];
    let out = run(&base, Some("\n"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("empty"), "{}", text(&out));
    let out = run(&base, Some("ok\n"));
    assert!(out.status.success(), "{}", text(&out));
    let out = run(
        &["list", "--db", &db, "--key-file", &key, "--tenant", "acme"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("missing `--subject`"), "{}", text(&out));
    let out = run(&["put-secret", "--secret", "x"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("unknown argument `--secret`"),
        "{}",
        text(&out)
    );
    let out = run(&["frobnicate"], None);
    assert_eq!(out.status.code(), Some(2));
    let short = dir.path("short.key");
    std::fs::write(&short, "abcd").unwrap();
    let out = run(
        &[
            "list",
            "--db",
            &db,
            "--key-file",
            &short,
            "--tenant",
            "acme",
            "--subject",
            "a",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("2 bytes long"), "{}", text(&out));
}

#[test]
fn rotate_moves_the_store_to_the_new_key() {
    let dir = TempDir::new("rotate");
    let old = gen_key(&dir, "old");
    let new = gen_key(&dir, "new");
    let db = dir.path("v.db");
    for subject in ["a", "b", "c"] {
        let out = run(
            &[
                "put-secret",
                "--db",
                &db,
                "--key-file",
                &old,
                "--tenant",
                "t",
                "--subject",
                subject,
                "--provider",
                "p",
            ],
            Some("s"),
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let list = |key: &str| {
        run(
            &[
                "list",
                "--db",
                &db,
                "--key-file",
                key,
                "--tenant",
                "t",
                "--subject",
                "b",
            ],
            None,
        )
    };
    // Before: the new key opens nothing.
    let out = list(&new);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("could not be decrypted"),
        "{}",
        text(&out)
    );
    let out = run(
        &[
            "rotate",
            "--db",
            &db,
            "--key-file",
            &old,
            "--new-key-file",
            &new,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("re-wrapped 3 record(s)"),
        "{}",
        text(&out)
    );
    assert!(list(&new).status.success());
    assert_eq!(list(&old).status.code(), Some(1));
    // Running it again has nothing left to do.
    let out = run(
        &[
            "rotate",
            "--db",
            &db,
            "--key-file",
            &old,
            "--new-key-file",
            &new,
        ],
        None,
    );
    assert!(
        text(&out).contains("re-wrapped 0 record(s)"),
        "{}",
        text(&out)
    );
}
