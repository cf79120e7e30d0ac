//! Appending to the trail: the hash chain with signed checkpoints, against a baseline that writes
//! the same serialized events as plain JSON lines, in the same run.
//!
//! Each iteration writes a fresh file of `BATCH` events (the file is removed afterwards, so the
//! disk holds one batch at a time): the chained log with its default file options (a flush to the
//! OS per record, an ES256-signed checkpoint every 1000 events, `fsync` at each checkpoint and on
//! close), and the baseline with the same durability work: a flush per record and an `fsync`
//! every 1000 records and at the end. Opening the file and building the log are outside the
//! timing; closing (the final checkpoint) is inside. The `_no_fsync` pair drops the `fsync`s on
//! both sides, which shows the chain's own cost (hashing, time stamps, signing) apart from the
//! disk's.
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![expect(
    clippy::unwrap_used,
    reason = "a benchmark whose setup fails must stop before measuring anything"
)]

use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ema_audit::{AuditEvent, AuditLog, Decision, FileOptions, ToolDecision};
use ema_jose::{Algorithm, SigningKey};
use serde_json::json;

const BATCH: u64 = 5000;

fn events() -> Vec<AuditEvent> {
    (0..BATCH)
        .map(|i| {
            let arguments = json!({
                "query": format!("select id, name from customers where region = 'eu' limit {i}"),
                "database": "crm",
                "timeout_ms": 5000,
            });
            ToolDecision::new(
                "alice@acme.example",
                "agent-7",
                "https://mcp.acme.example",
                "sql.query",
                &arguments,
                if i % 10 == 0 {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
            )
            .with_jti(format!("at-{i:08}"))
            .with_session("3f1c9a2e-6d0b-4c55-9f1e-7a4b2c8d9e01")
            .with_policies(["sql-read-only-for-analysts"])
            .with_reasons(["statement is read-only"])
            .with_labels(["untrusted_content"])
            .into()
        })
        .collect()
}

fn fresh(path: &Path) {
    let _ = std::fs::remove_file(path);
}

fn bench(c: &mut Criterion) {
    let dir: PathBuf = std::env::temp_dir().join(format!("ema-audit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trail.jsonl");
    let events = events();
    let key = Arc::new(SigningKey::generate(Algorithm::ES256, Some("bench".into())).unwrap());

    let mut group = c.benchmark_group("audit_append");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(15);
    group.measurement_time(Duration::from_secs(6));

    for sync in [true, false] {
        let suffix = if sync { "fsync" } else { "no_fsync" };
        group.bench_function(format!("baseline_plain_json_lines_{suffix}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    fresh(&path);
                    let file = OpenOptions::new()
                        .create_new(true)
                        .append(true)
                        .open(&path)
                        .unwrap();
                    let mut out = BufWriter::with_capacity(1 << 16, file);
                    let start = Instant::now();
                    let mut unsynced = false;
                    for (n, event) in events.iter().enumerate() {
                        let event = black_box(event.clone());
                        serde_json::to_writer(&mut out, &event).unwrap();
                        out.write_all(b"\n").unwrap();
                        out.flush().unwrap();
                        unsynced = true;
                        if sync && (n + 1) % 1000 == 0 {
                            out.get_ref().sync_data().unwrap();
                            unsynced = false;
                        }
                    }
                    if sync && unsynced {
                        out.get_ref().sync_data().unwrap();
                    }
                    total += start.elapsed();
                }
                total
            });
        });

        group.bench_function(format!("hash_chain_signed_checkpoints_{suffix}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    fresh(&path);
                    let file = FileOptions::new()
                        .sync_checkpoints(sync)
                        .create_new(&path)
                        .unwrap();
                    let log = AuditLog::builder(key.clone()).build(file).unwrap();
                    let start = Instant::now();
                    for event in &events {
                        black_box(log.append(black_box(event.clone())).unwrap());
                    }
                    log.close().unwrap();
                    total += start.elapsed();
                }
                total
            });
        });
    }
    group.finish();

    // Keep the benchmark honest: the chained file it wrote verifies.
    let report =
        ema_audit::Verifier::new(ema_jose::JwkSet::from_keys([key.verifying_key().clone()]))
            .verify_file(&path)
            .unwrap();
    assert_eq!(report.events, BATCH);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
