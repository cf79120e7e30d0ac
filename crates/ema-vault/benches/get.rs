//! `get` of a fresh credential: from SQLite with 100,000 stored records (decryption included),
//! from memory, and 64 concurrent tasks against SQLite. Besides criterion's means, prints a
//! p50/p99 line from its own timed loop.
//!
//! `cargo bench -p ema-vault --bench get`

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ema_jose::{FixedClock, UnixTime};
use ema_vault::{
    Credential, CredentialKey, CredentialStore, CredentialVault, MasterKey, MasterKeys,
    MemoryStore, Secret, SqliteStore, StoredCredential, TokenSet, Vault,
};

const RECORDS: usize = 100_000;
const SAMPLES: usize = 20_000;
const TASKS: usize = 64;
const GETS_PER_TASK: usize = 2_000;

fn key(i: usize) -> CredentialKey {
    CredentialKey::new("acme", format!("user-{i:06}@acme.example"), "notes").unwrap()
}

fn record(i: usize) -> StoredCredential {
    let tokens = TokenSet::bearer(Secret::new(format!("gho_{i:040}")))
        .with_expires_at(UnixTime::from_secs(2_000_000_000))
        .with_scopes(["notes:read", "notes:write"])
        .with_refresh_token(Secret::new(format!("ghr_{i:060}")));
    StoredCredential::new(
        Credential::OAuth(tokens),
        UnixTime::from_secs(1_700_000_000),
    )
}

/// A small xorshift: the keys read are spread over the whole table.
struct Picker(u64);

impl Picker {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % RECORDS as u64).unwrap()
    }
}

fn fill(store: &dyn CredentialStore) {
    for i in 0..RECORDS {
        store.put(&key(i), &record(i)).unwrap();
    }
}

fn vault(store: Arc<dyn CredentialStore>) -> Arc<Vault> {
    Arc::new(
        Vault::builder_arc(store)
            .clock(Arc::new(FixedClock(UnixTime::from_secs(1_800_000_000))))
            .build(),
    )
}

fn percentiles(label: &str, vault: &Vault) {
    let keys: Vec<CredentialKey> = {
        let mut picker = Picker(0x9e37_79b9_7f4a_7c15);
        (0..SAMPLES).map(|_| key(picker.next())).collect()
    };
    let mut times = Vec::with_capacity(SAMPLES);
    for k in &keys {
        let start = Instant::now();
        black_box(pollster::block_on(vault.get(k)).unwrap());
        times.push(start.elapsed());
    }
    times.sort_unstable();
    let at = |q: f64| times[((SAMPLES as f64 * q) as usize).min(SAMPLES - 1)];
    println!(
        "{label}: {SAMPLES} gets over {RECORDS} records: p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?}",
        at(0.50),
        at(0.99),
        at(0.999),
        times[SAMPLES - 1]
    );
}

fn concurrent(vault: &Arc<Vault>, runtime: &tokio::runtime::Runtime) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let vault = vault.clone();
                tokio::spawn(async move {
                    let mut picker = Picker(0x2545_f491_4f6c_dd1d ^ (t as u64 + 1));
                    for _ in 0..GETS_PER_TASK {
                        black_box(vault.get(&key(picker.next())).await.unwrap());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let dir: PathBuf = std::env::temp_dir().join(format!("ema-vault-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let master = MasterKey::generate().unwrap();
    let sqlite =
        Arc::new(SqliteStore::open(dir.join("vault.db"), MasterKeys::new(master)).unwrap());
    let started = Instant::now();
    fill(sqlite.as_ref());
    println!(
        "filled SQLite with {RECORDS} records in {:?}",
        started.elapsed()
    );
    let memory = Arc::new(MemoryStore::new());
    fill(memory.as_ref());

    let sqlite_vault = vault(sqlite.clone());
    let memory_vault = vault(memory);
    percentiles("sqlite get (fresh, decrypted)", &sqlite_vault);
    percentiles("memory get (fresh)", &memory_vault);

    let mut group = c.benchmark_group("get");
    let mut picker = Picker(1);
    group.bench_function("sqlite_100k", |b| {
        b.iter(|| pollster::block_on(sqlite_vault.get(&key(picker.next()))).unwrap());
    });
    group.bench_function("memory_100k", |b| {
        b.iter(|| pollster::block_on(memory_vault.get(&key(picker.next()))).unwrap());
    });
    group.finish();

    let runtime = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    let elapsed = concurrent(&sqlite_vault, &runtime);
    let total = TASKS * GETS_PER_TASK;
    println!(
        "sqlite concurrent: {TASKS} tasks x {GETS_PER_TASK} gets = {total} in {elapsed:?}: {:.0} gets/s ({} worker threads)",
        total as f64 / elapsed.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let mut group = c.benchmark_group("concurrent");
    group.sample_size(10);
    group.bench_function("sqlite_64_tasks_x_2000_gets", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| concurrent(&sqlite_vault, &runtime))
                .sum()
        });
    });
    group.finish();

    drop(sqlite_vault);
    drop(sqlite);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
