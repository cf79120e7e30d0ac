//! Reopening a file: the chain continues after a verified tail, or the open is refused.

use ema_audit::{
    AuditError, AuditLog, FileOptions, JsonLinesFile, LinkProblem, Verifier, VerifyError,
};
use ema_jose::{Algorithm, JwkSet, SigningKey};

use crate::common::{KEY, TempDir, event, jwks, lines, ticking_clock};

fn write(path: &std::path::Path, events: std::ops::Range<usize>) {
    let log = AuditLog::builder(KEY.clone())
        .clock(ticking_clock())
        .build(JsonLinesFile::open(path, &jwks()).unwrap())
        .unwrap();
    for i in events {
        log.append(event(i)).unwrap();
    }
    log.close().unwrap();
}

#[test]
fn reopen_and_continue() {
    let dir = TempDir::new("reopen");
    let path = dir.path("audit.jsonl");
    write(&path, 0..3); // seq 0-2, final checkpoint 3
    let log = AuditLog::builder(KEY.clone())
        .clock(ticking_clock())
        .build(JsonLinesFile::open(&path, &jwks()).unwrap())
        .unwrap();
    let head = log.head().unwrap();
    assert_eq!((head.next_seq, head.events, head.unprotected), (4, 3, 0));
    assert_eq!(log.append(event(3)).unwrap().get(), 4);
    log.close().unwrap();
    let report = Verifier::new(jwks()).verify_file(&path).unwrap();
    assert_eq!(
        (report.events, report.checkpoints, report.last_seq),
        (4, 2, 5)
    );
    assert!(report.closed);
}

#[test]
fn reopening_a_broken_or_foreign_file_is_refused() {
    let dir = TempDir::new("reopen-broken");
    let path = dir.path("audit.jsonl");
    write(&path, 0..3);
    let good = std::fs::read(&path).unwrap();

    // An edited record.
    let edited = String::from_utf8(good.clone())
        .unwrap()
        .replacen("user-0", "user-9", 1);
    std::fs::write(&path, edited).unwrap();
    match JsonLinesFile::open(&path, &jwks()) {
        Err(AuditError::Resume { source, .. }) => {
            assert_eq!(
                source.broken_link().unwrap().problem,
                LinkProblem::Prev {
                    previous_line: 1,
                    previous_seq: 0
                }
            );
        }
        other => panic!("{other:?}"),
    }
    // The file was not touched by the refused open.
    assert_ne!(std::fs::read(&path).unwrap(), good);

    // The right file, the wrong keys.
    std::fs::write(&path, &good).unwrap();
    let other = SigningKey::generate(Algorithm::ES256, Some("audit-k1".into())).unwrap();
    let wrong = JwkSet::from_keys([other.verifying_key().clone()]);
    assert!(matches!(
        JsonLinesFile::open(&path, &wrong),
        Err(AuditError::Resume { .. })
    ));
    // Positive control.
    JsonLinesFile::open(&path, &jwks()).unwrap();

    // A torn last line (a crash mid-write) is refused even when adopting unclosed tails.
    let mut torn = good.clone();
    torn.truncate(good.len() - 10);
    std::fs::write(&path, &torn).unwrap();
    match FileOptions::new()
        .adopt_unclosed_tail(true)
        .open(&path, &jwks())
    {
        Err(AuditError::Resume { source, .. }) => {
            assert_eq!(
                source.broken_link().unwrap().problem,
                LinkProblem::Incomplete
            );
        }
        other => panic!("{other:?}"),
    }
    // `create_new` never continues anything.
    assert!(matches!(
        JsonLinesFile::create_new(&path),
        Err(AuditError::Io { .. })
    ));
}

#[test]
fn an_unclosed_file_is_continued_only_when_adopted() {
    let dir = TempDir::new("reopen-unclosed");
    let path = dir.path("audit.jsonl");
    write(&path, 0..3);
    // Simulate a crash: the final checkpoint never made it.
    let all = lines(&std::fs::read(&path).unwrap());
    std::fs::write(&path, all[..3].concat()).unwrap();

    let err = JsonLinesFile::open(&path, &jwks()).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::ResumeNotClosed {
                last_seq: 2,
                unprotected: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("not closed after seq 2"));

    let file = FileOptions::new()
        .adopt_unclosed_tail(true)
        .open(&path, &jwks())
        .unwrap();
    let log = AuditLog::builder(KEY.clone())
        .clock(ticking_clock())
        .build(file)
        .unwrap();
    assert_eq!(log.head().unwrap().unprotected, 3);
    assert_eq!(log.append(event(3)).unwrap().get(), 3);
    log.close().unwrap();
    let report = Verifier::new(jwks()).verify_file(&path).unwrap();
    assert_eq!((report.events, report.checkpoints), (4, 1));
}

#[test]
fn a_missing_file_reports_io() {
    let dir = TempDir::new("missing");
    match Verifier::new(jwks()).verify_file(dir.path("nope.jsonl")) {
        Err(VerifyError::Io { path, .. }) => assert!(path.ends_with("nope.jsonl")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        JsonLinesFile::open(dir.path("no-such-dir/a.jsonl"), &jwks()),
        Err(AuditError::Io { .. })
    ));
}

#[test]
fn flush_policy_decides_when_records_reach_the_file() {
    use ema_audit::FlushPolicy;
    let dir = TempDir::new("flush");
    for (policy, visible_at_once) in [
        (FlushPolicy::EachRecord, true),
        (FlushPolicy::Checkpoints, false),
    ] {
        let path = dir.path(&format!("{policy:?}.jsonl"));
        let file = FileOptions::new()
            .flush(policy)
            .sync_checkpoints(false)
            .create_new(&path)
            .unwrap();
        let log = AuditLog::builder(KEY.clone())
            .config(ema_audit::AuditConfig::new().checkpoint_every(2))
            .clock(ticking_clock())
            .build(file)
            .unwrap();
        log.append(event(0)).unwrap();
        let after_one = std::fs::read(&path).unwrap();
        assert_eq!(!after_one.is_empty(), visible_at_once, "{policy:?}");
        log.append(event(1)).unwrap(); // the checkpoint flushes whatever the policy
        assert_eq!(lines(&std::fs::read(&path).unwrap()).len(), 3, "{policy:?}");
        log.append(event(2)).unwrap();
        log.flush().unwrap();
        assert_eq!(lines(&std::fs::read(&path).unwrap()).len(), 4, "{policy:?}");
        log.close().unwrap();
        Verifier::new(jwks()).verify_file(&path).unwrap();
    }
}
