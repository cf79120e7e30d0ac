//! The trail end to end: writing, reading back, checkpoints, secrets, forged checkpoints,
//! truncation, the log's own guarantees, and the tracing sink.

use std::sync::{Arc, Mutex};

use ema_audit::{
    AuditConfig, AuditError, AuditEvent, AuditLog, AuditSink, CheckpointProblem, Decision, FanOut,
    IdJagIssued, JsonLinesFile, LinkProblem, RawArguments, Record, RecordHash, ToolDecision,
    TracingSink, Verifier, VerifyError,
};
use ema_jose::{Algorithm, JwkSet, SigningKey};
use serde_json::{Value, json};

use crate::common::{KEY, Memory, TempDir, event, jwks, lines, ticking_clock, trail};

fn verify(bytes: &[u8]) -> Result<ema_audit::VerifyReport, VerifyError> {
    Verifier::new(jwks()).verify_bytes(bytes)
}

fn broken(bytes: &[u8]) -> ema_audit::BrokenLink {
    match verify(bytes) {
        Err(VerifyError::Broken(link)) => link,
        other => panic!("expected a broken link, got {other:?}"),
    }
}

#[test]
fn round_trip_through_a_file() {
    let dir = TempDir::new("round-trip");
    let path = dir.path("audit.jsonl");
    let log = AuditLog::builder(KEY.clone())
        .config(AuditConfig::new().checkpoint_every(4))
        .clock(ticking_clock())
        .build(JsonLinesFile::open(&path, &jwks()).unwrap())
        .unwrap();
    let appended: Vec<AuditEvent> = (0..10).map(event).collect();
    let mut seqs = Vec::new();
    for e in &appended {
        seqs.push(log.append(e.clone()).unwrap().get());
    }
    // Checkpoints after events 4 and 8 take seqs 4 and 9.
    assert_eq!(seqs, [0, 1, 2, 3, 5, 6, 7, 8, 10, 11]);
    log.close().unwrap();

    let report = Verifier::new(jwks()).verify_file(&path).unwrap();
    assert_eq!(report.records, 13);
    assert_eq!(report.events, 10);
    assert_eq!(report.checkpoints, 3);
    assert_eq!(report.last_seq, 12);
    assert!(report.closed);
    assert_eq!(report.unprotected, 0);
    assert_eq!(report.kids.iter().collect::<Vec<_>>(), ["audit-k1"]);
    assert!(
        report
            .to_string()
            .contains("closed by a signed final checkpoint")
    );

    // Every line reads back: the events as appended (raw arguments dropped), the chain intact.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut prev = RecordHash::GENESIS;
    let mut read_back = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["seq"], n as u64);
        assert_eq!(record["prev"], prev.to_base64url());
        assert!(
            record["time"]
                .as_str()
                .unwrap()
                .starts_with("2026-12-07T10:00:")
        );
        if let Some(e) = record.get("event") {
            read_back.push(serde_json::from_value::<AuditEvent>(e.clone()).unwrap());
        }
        prev = RecordHash::of_line(line.as_bytes());
    }
    let expected: Vec<AuditEvent> = appended
        .into_iter()
        .map(|mut e| {
            if let AuditEvent::ToolDecision(d) = &mut e {
                d.arguments = None;
            }
            e
        })
        .collect();
    assert_eq!(read_back, expected);
    assert_eq!(report.head, prev);
}

#[test]
fn checkpoints_sign_seq_head_count_time_and_final() {
    let bytes = trail(3, 2);
    let text = String::from_utf8(bytes).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let checkpoints: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("checkpoint").is_some())
        .collect();
    assert_eq!(checkpoints.len(), 2);
    for (cp, (count, is_final)) in checkpoints.iter().zip([(2, false), (3, true)]) {
        let token = cp["checkpoint"].as_str().unwrap();
        let jwt = ema_jose::UnverifiedJwt::parse(token, &ema_jose::ParseOptions::new()).unwrap();
        assert_eq!(jwt.header().typ(), Some("audit-checkpoint+jwt"));
        assert_eq!(jwt.header().kid(), Some("audit-k1"));
        let claims = jwt.unverified_claims();
        assert_eq!(claims.get("seq"), Some(&cp["seq"]));
        assert_eq!(claims.get("head"), Some(&cp["prev"]));
        assert_eq!(claims.get("time"), Some(&cp["time"]));
        assert_eq!(claims.get("count"), Some(&json!(count)));
        assert_eq!(claims.get("final"), Some(&json!(is_final)));
    }
}

#[test]
fn no_token_secret_or_argument_value_is_written_by_default() {
    let secret_args = json!({"password": "hunter2-Zq9", "nested": {"key": "AKIAZQ9SECRETVALUE"}});
    let write = |config: AuditConfig| {
        let sink = Memory::default();
        let log = AuditLog::builder(KEY.clone())
            .config(config)
            .clock(ticking_clock())
            .build(sink.clone())
            .unwrap();
        log.append(IdJagIssued::new(
            "https://idp",
            "u",
            "c",
            "https://as",
            "raw-idjag-jti-Q7",
        ))
        .unwrap();
        for tool in ["login", "other"] {
            log.append(
                ToolDecision::new("u", "c", "mcp", tool, &secret_args, Decision::Allow)
                    .with_jti("at-1"),
            )
            .unwrap();
        }
        log.close().unwrap();
        String::from_utf8(sink.bytes()).unwrap()
    };
    let default = write(AuditConfig::new());
    for needle in [
        "hunter2-Zq9",
        "AKIAZQ9SECRETVALUE",
        "password",
        "raw-idjag-jti-Q7",
    ] {
        assert!(!default.contains(needle), "{needle} written by default");
    }
    // The digest is there instead, and the trail verifies.
    let digest = ema_audit::ArgumentsDigest::of(&secret_args);
    assert_eq!(default.matches(digest.as_str()).count(), 2);
    assert!(default.contains(ema_audit::JtiDigest::of("https://idp", "raw-idjag-jti-Q7").as_str()));
    verify(default.as_bytes()).unwrap();

    // Positive control: opting one tool in writes its arguments, and only its.
    let opted = write(AuditConfig::new().raw_arguments(RawArguments::for_tools(["login"])));
    assert_eq!(opted.matches("hunter2-Zq9").count(), 1);
    let login_line = opted
        .lines()
        .find(|l| l.contains("\"tool\":\"login\""))
        .unwrap();
    assert!(login_line.contains("hunter2-Zq9"));
    let other_line = opted
        .lines()
        .find(|l| l.contains("\"tool\":\"other\""))
        .unwrap();
    assert!(!other_line.contains("hunter2-Zq9"));
    verify(opted.as_bytes()).unwrap();
}

#[test]
fn forged_checkpoints_are_refused() {
    let bytes = trail(4, 100);
    let all = lines(&bytes);
    let last = all.len();
    let final_line: Value = serde_json::from_slice(all[last - 1].trim_ascii_end()).unwrap();
    let claims = ema_jose::UnverifiedJwt::parse(
        final_line["checkpoint"].as_str().unwrap(),
        &ema_jose::ParseOptions::new(),
    )
    .unwrap()
    .unverified_claims()
    .clone();
    let claims = Value::Object(
        claims
            .iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect(),
    );
    let original = String::from_utf8(all[last - 1].clone()).unwrap();
    let with_token = |token: String| {
        let line = original.replacen(final_line["checkpoint"].as_str().unwrap(), &token, 1);
        let mut out: Vec<u8> = all[..last - 1].concat();
        out.extend_from_slice(line.as_bytes());
        out
    };

    // Positive control: re-signing the same claims with the real key verifies.
    verify(&with_token(
        KEY.sign_jwt(Some("audit-checkpoint+jwt"), &claims).unwrap(),
    ))
    .unwrap();

    // Another key under the same kid: the signature fails.
    let impostor = SigningKey::generate(Algorithm::ES256, Some("audit-k1".into())).unwrap();
    let link = broken(&with_token(
        impostor
            .sign_jwt(Some("audit-checkpoint+jwt"), &claims)
            .unwrap(),
    ));
    assert_eq!(link.line, last as u64);
    assert!(
        matches!(
            link.problem,
            LinkProblem::Checkpoint(CheckpointProblem::Signature(_))
        ),
        "{link}"
    );

    // A kid the key set does not hold.
    let stranger = SigningKey::generate(Algorithm::EdDSA, Some("k-unknown".into())).unwrap();
    let link = broken(&with_token(
        stranger
            .sign_jwt(Some("audit-checkpoint+jwt"), &claims)
            .unwrap(),
    ));
    assert!(
        matches!(&link.problem, LinkProblem::Checkpoint(CheckpointProblem::UnknownKey { kid, .. }) if kid == "k-unknown"),
        "{link}"
    );

    // The real key, but another typ (a token of another kind cannot pass for a checkpoint).
    let link = broken(&with_token(KEY.sign_jwt(Some("at+jwt"), &claims).unwrap()));
    assert!(
        matches!(
            link.problem,
            LinkProblem::Checkpoint(CheckpointProblem::Signature(_))
        ),
        "{link}"
    );

    // The real key over claims that do not match the record.
    for (name, value) in [
        ("seq", json!(99)),
        ("head", json!(RecordHash::GENESIS.to_base64url())),
        ("count", json!(3)),
        ("time", json!("2030-01-01T00:00:00Z")),
        ("final", json!("yes")),
    ] {
        let mut changed = claims.clone();
        changed[name] = value;
        let link = broken(&with_token(
            KEY.sign_jwt(Some("audit-checkpoint+jwt"), &changed)
                .unwrap(),
        ));
        assert_eq!(
            link.problem,
            LinkProblem::Checkpoint(CheckpointProblem::Claim { name }),
            "{name}"
        );
    }

    // Not a JWS at all, and a JWS without kid.
    let link = broken(&with_token("not-a-jws".into()));
    assert!(matches!(
        link.problem,
        LinkProblem::Checkpoint(CheckpointProblem::Token(_))
    ));
    let no_kid = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let link = broken(&with_token(
        no_kid
            .sign_jwt(Some("audit-checkpoint+jwt"), &claims)
            .unwrap(),
    ));
    assert_eq!(
        link.problem,
        LinkProblem::Checkpoint(CheckpointProblem::NoKid)
    );
}

#[test]
fn a_truncated_tail_is_reported_with_what_is_unprotected() {
    let bytes = trail(7, 3); // events 0-2, cp 3, events 4-6, cp 7, event 8, final cp 9
    let all = lines(&bytes);
    assert_eq!(all.len(), 10);
    verify(&bytes).unwrap();

    // Without the final checkpoint.
    let cut: Vec<u8> = all[..9].concat();
    match verify(&cut) {
        Err(VerifyError::NotClosed {
            last_seq,
            last_line,
            last_checkpoint,
            unprotected,
        }) => {
            assert_eq!(
                (last_seq, last_line, last_checkpoint, unprotected),
                (8, 9, Some(7), 1)
            );
        }
        other => panic!("{other:?}"),
    }
    let message = verify(&cut).unwrap_err().to_string();
    assert!(
        message.contains("truncated or not closed after seq 8"),
        "{message}"
    );
    assert!(
        message.contains("1 events after it are unprotected"),
        "{message}"
    );

    // Ending on a non-final checkpoint is still not closed.
    let cut: Vec<u8> = all[..8].concat();
    assert!(matches!(
        verify(&cut),
        Err(VerifyError::NotClosed {
            last_seq: 7,
            unprotected: 0,
            ..
        })
    ));

    // Before any checkpoint.
    let cut: Vec<u8> = all[..2].concat();
    let err = verify(&cut).unwrap_err();
    assert!(matches!(
        err,
        VerifyError::NotClosed {
            last_checkpoint: None,
            unprotected: 2,
            ..
        }
    ));
    assert!(err.to_string().contains("no signed checkpoint"));

    // Cut inside a line.
    let mut cut: Vec<u8> = all[..5].concat();
    cut.extend_from_slice(&all[5][..20]);
    assert_eq!(broken(&cut).problem, LinkProblem::Incomplete);
    assert_eq!(broken(&cut).line, 6);

    // A live trail may be checked as such: the report says what no checkpoint covers yet.
    let cut: Vec<u8> = all[..9].concat();
    let report = Verifier::new(jwks())
        .allow_unclosed(true)
        .verify_bytes(&cut)
        .unwrap();
    assert!(!report.closed);
    assert_eq!((report.unprotected, report.last_checkpoint), (1, Some(7)));
    assert!(report.to_string().contains("NOT closed"));

    assert!(matches!(verify(b""), Err(VerifyError::Empty)));
}

#[test]
fn a_record_must_be_in_the_writers_layout() {
    let bytes = trail(2, 10);
    let all = lines(&bytes);
    let with_line = |i: usize, line: String| {
        let mut out = all.clone();
        out[i] = format!("{line}\n").into_bytes();
        out.concat()
    };
    let first = String::from_utf8(all[0].trim_ascii_end().to_vec()).unwrap();
    // A space after a colon: same JSON, other bytes.
    let spaced = first.replacen("\"seq\":0", "\"seq\": 0", 1);
    assert_eq!(broken(&with_line(0, spaced)).problem, LinkProblem::Layout);
    // Members reordered.
    let value: Value = serde_json::from_str(&first).unwrap();
    let reordered = format!(
        "{{\"time\":{},\"seq\":0,\"prev\":{},\"event\":{}}}",
        value["time"], value["prev"], value["event"]
    );
    assert_eq!(
        broken(&with_line(0, reordered)).problem,
        LinkProblem::Layout
    );
    // An extra member.
    let extra = first.replacen("{\"seq\":0,", "{\"seq\":0,\"note\":1,", 1);
    assert!(
        matches!(broken(&with_line(0, extra)).problem, LinkProblem::Member { ref name, .. } if name == "note")
    );
    // A duplicate member.
    let dup = first.replacen("{\"seq\":0,", "{\"seq\":0,\"seq\":0,", 1);
    assert!(matches!(
        broken(&with_line(0, dup)).problem,
        LinkProblem::Malformed { .. }
    ));
    // The first record must start from the genesis hash.
    let relinked = first.replacen(
        &RecordHash::GENESIS.to_base64url(),
        &RecordHash::of_line(b"elsewhere").to_base64url(),
        1,
    );
    let link = broken(&with_line(0, relinked));
    assert_eq!((link.line, link.seq), (1, Some(0)));
    assert!(matches!(link.problem, LinkProblem::Member { ref name, .. } if name == "prev"));
    // A blank line.
    let link = broken(&with_line(1, String::new()));
    assert_eq!(link.line, 2);
    assert!(matches!(link.problem, LinkProblem::Malformed { .. }));
    // An over-long line.
    let link = Verifier::new(jwks())
        .with_max_record_len(64)
        .verify_bytes(&bytes)
        .unwrap_err();
    assert_eq!(
        link.broken_link().unwrap().problem,
        LinkProblem::TooLong { max: 64 }
    );
}

#[test]
fn the_log_refuses_after_close_and_after_a_failed_write() {
    let sink = Memory::default();
    let log = AuditLog::builder(KEY.clone())
        .clock(ticking_clock())
        .build(sink.clone())
        .unwrap();
    let clone = log.clone();
    clone.append(event(0)).unwrap();
    log.close().unwrap();
    log.close().unwrap(); // idempotent: no second final checkpoint
    assert!(matches!(clone.append(event(1)), Err(AuditError::Closed)));
    assert_eq!(verify(&sink.bytes()).unwrap().records, 2);

    struct FailsOnThird(u32);
    impl AuditSink for FailsOnThird {
        fn write(&mut self, _: &Record<'_>) -> Result<(), AuditError> {
            self.0 += 1;
            if self.0 == 3 {
                Err(AuditError::Io {
                    path: "x".into(),
                    source: std::io::Error::other("disk full"),
                })
            } else {
                Ok(())
            }
        }
    }
    let log = AuditLog::builder(KEY.clone())
        .build(FailsOnThird(0))
        .unwrap();
    log.append(event(0)).unwrap();
    log.append(event(1)).unwrap();
    assert!(matches!(log.append(event(2)), Err(AuditError::Io { .. })));
    assert!(matches!(log.append(event(3)), Err(AuditError::Failed)));
    assert!(matches!(log.close(), Err(AuditError::Failed)));
}

#[test]
fn dropping_the_last_handle_closes_the_trail() {
    let sink = Memory::default();
    {
        let log = AuditLog::builder(KEY.clone())
            .clock(ticking_clock())
            .build(sink.clone())
            .unwrap();
        let other = log.clone();
        log.append(event(0)).unwrap();
        drop(log);
        other.append(event(1)).unwrap(); // still open: a clone is alive
    }
    let report = verify(&sink.bytes()).unwrap();
    assert!(report.closed);
    assert_eq!(report.events, 2);
}

#[test]
fn a_record_over_the_limit_is_refused_and_the_log_goes_on() {
    let sink = Memory::default();
    let log = AuditLog::builder(KEY.clone())
        .config(
            AuditConfig::new()
                .max_record_len(600)
                .raw_arguments(RawArguments::for_tools(["big"])),
        )
        .clock(ticking_clock())
        .build(sink.clone())
        .unwrap();
    let big = json!({"blob": "x".repeat(1000)});
    let err = log
        .append(ToolDecision::new(
            "u",
            "c",
            "s",
            "big",
            &big,
            Decision::Allow,
        ))
        .unwrap_err();
    assert!(
        matches!(err, AuditError::RecordTooLarge { max: 600, .. }),
        "{err}"
    );
    assert_eq!(log.append(event(2)).unwrap().get(), 0);
    log.close().unwrap();
    verify(&sink.bytes()).unwrap();
}

#[test]
fn configuration_errors() {
    let no_kid = Arc::new(SigningKey::generate(Algorithm::ES256, None).unwrap());
    assert!(matches!(
        AuditLog::builder(no_kid).build(Memory::default()),
        Err(AuditError::SignerWithoutKid)
    ));
    assert!(matches!(
        AuditLog::builder(KEY.clone())
            .config(AuditConfig::new().checkpoint_every(0))
            .build(Memory::default()),
        Err(AuditError::Config { .. })
    ));
    assert!(matches!(
        AuditLog::builder(KEY.clone())
            .config(AuditConfig::new().max_record_len(ema_audit::MAX_RECORD_LEN + 1))
            .build(Memory::default()),
        Err(AuditError::Config { .. })
    ));
    // A clock outside RFC 3339's years.
    let log = AuditLog::builder(KEY.clone())
        .clock(|| time::macros::datetime!(-0001-01-01 0:00 UTC))
        .build(Memory::default())
        .unwrap();
    assert!(matches!(log.append(event(0)), Err(AuditError::Time(_))));
}

#[test]
fn a_time_interval_also_triggers_checkpoints() {
    let sink = Memory::default();
    // The ticking clock advances a second per reading; an interval of 3 s checkpoints often.
    let log = AuditLog::builder(KEY.clone())
        .config(
            AuditConfig::new()
                .checkpoint_every(1000)
                .checkpoint_interval(std::time::Duration::from_secs(3)),
        )
        .clock(ticking_clock())
        .build(sink.clone())
        .unwrap();
    for i in 0..7 {
        log.append(event(i)).unwrap();
    }
    log.checkpoint().unwrap();
    log.checkpoint().unwrap(); // nothing new: no empty checkpoint
    log.close().unwrap();
    let report = verify(&sink.bytes()).unwrap();
    assert_eq!(report.events, 7);
    // After the events read at 3 s and 6 s, then the explicit one, then the final one.
    assert_eq!(report.checkpoints, 4);
}

#[test]
fn disabled_log_writes_nothing_and_counts() {
    let log = AuditLog::disabled();
    assert!(!log.is_enabled());
    assert_eq!(log.append(event(0)).unwrap().get(), 0);
    assert_eq!(log.clone().append(event(1)).unwrap().get(), 1);
    log.checkpoint().unwrap();
    log.flush().unwrap();
    log.close().unwrap();
    assert!(log.head().is_none());
}

#[test]
fn fan_out_feeds_every_sink_and_refuses_two_different_trails() {
    let (a, b) = (Memory::default(), Memory::default());
    let log = AuditLog::builder(KEY.clone())
        .clock(ticking_clock())
        .build(
            FanOut::new()
                .with(a.clone())
                .with(TracingSink::new())
                .with(b.clone()),
        )
        .unwrap();
    log.append(event(0)).unwrap();
    log.close().unwrap();
    assert_eq!(a.bytes(), b.bytes());
    verify(&a.bytes()).unwrap();

    let dir = TempDir::new("fan-out");
    let (p1, p2) = (dir.path("1.jsonl"), dir.path("2.jsonl"));
    for (path, n) in [(&p1, 1), (&p2, 2)] {
        let log = AuditLog::builder(KEY.clone())
            .build(JsonLinesFile::create_new(path).unwrap())
            .unwrap();
        for i in 0..n {
            log.append(event(i)).unwrap();
        }
        log.close().unwrap();
    }
    let fan = FanOut::new()
        .with(JsonLinesFile::open(&p1, &jwks()).unwrap())
        .with(JsonLinesFile::open(&p2, &jwks()).unwrap());
    assert!(matches!(
        AuditLog::builder(KEY.clone()).build(fan),
        Err(AuditError::ConflictingSinks {
            first: 2,
            second: 3
        })
    ));
}

#[test]
fn tracing_sink_emits_structured_events_under_ema_audit() {
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record as SpanRecord};
    use tracing::{Event, Metadata, Subscriber};

    /// Target, level and fields of each event.
    type Seen = (String, String, Vec<(String, String)>);
    #[derive(Default, Clone)]
    struct Capture(Arc<Mutex<Vec<Seen>>>);
    struct Fields(Vec<(String, String)>);
    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }
    }
    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &SpanRecord<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push((
                event.metadata().target().to_owned(),
                event.metadata().level().to_string(),
                fields.0,
            ));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), || {
        let log = AuditLog::builder(KEY.clone())
            .clock(ticking_clock())
            .build(TracingSink::new())
            .unwrap();
        log.append(event(2)).unwrap(); // accepted: INFO
        log.append(event(3)).unwrap(); // refused: WARN
        log.close().unwrap();
    });
    let seen = capture.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let field = |i: usize, name: &str| {
        seen[i]
            .2
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert!(seen.iter().all(|(target, _, _)| target == "ema_audit"));
    assert_eq!(
        (
            seen[0].1.as_str(),
            field(0, "kind").as_str(),
            field(0, "seq").as_str()
        ),
        ("INFO", "access_token_accepted", "0")
    );
    assert!(field(0, "event").contains("\"access_token_jti\":\"at-2\""));
    assert_eq!(
        (seen[1].1.as_str(), field(1, "kind").as_str()),
        ("WARN", "access_token_refused")
    );
    assert_eq!(
        (field(2, "kind").as_str(), field(2, "final").as_str()),
        ("checkpoint", "true")
    );
    assert!(field(2, "checkpoint").starts_with("eyJ"));
}

#[test]
fn keys_rotate_and_the_verifier_needs_every_signing_key() {
    let dir = TempDir::new("rotate");
    let path = dir.path("audit.jsonl");
    let k2 = Arc::new(SigningKey::generate(Algorithm::EdDSA, Some("audit-k2".into())).unwrap());
    let both = JwkSet::from_keys([KEY.verifying_key().clone(), k2.verifying_key().clone()]);
    let log = AuditLog::builder(KEY.clone())
        .build(JsonLinesFile::open(&path, &both).unwrap())
        .unwrap();
    log.append(event(0)).unwrap();
    log.close().unwrap();
    let log = AuditLog::builder(k2.clone())
        .build(JsonLinesFile::open(&path, &both).unwrap())
        .unwrap();
    log.append(event(1)).unwrap();
    log.close().unwrap();
    let report = Verifier::new(both).verify_file(&path).unwrap();
    assert_eq!(report.kids.len(), 2);
    // Without the retired key the first checkpoint cannot be checked.
    let link = Verifier::new(JwkSet::from_keys([k2.verifying_key().clone()]))
        .verify_file(&path)
        .unwrap_err();
    assert_eq!(link.broken_link().unwrap().line, 2);
}
