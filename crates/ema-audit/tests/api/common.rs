use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use ema_audit::{
    AccessTokenAccepted, AccessTokenRefused, AuditConfig, AuditError, AuditEvent, AuditLog,
    AuditSink, Decision, DefinitionResponse, IdJagIssued, IdJagRedeemed, Record, ToolDecision,
    ToolDefinitionChanged,
};
use ema_jose::{Algorithm, JwkSet, SigningKey};
use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;

pub(crate) static KEY: LazyLock<Arc<SigningKey>> = LazyLock::new(|| {
    Arc::new(SigningKey::generate(Algorithm::ES256, Some("audit-k1".into())).unwrap())
});

pub(crate) fn jwks() -> JwkSet {
    JwkSet::from_keys([KEY.verifying_key().clone()])
}

/// A clock that moves one second per reading, from a fixed start.
pub(crate) fn ticking_clock() -> impl Fn() -> OffsetDateTime + Send + Sync + 'static {
    let ticks = AtomicU64::new(0);
    move || {
        let n = ticks.fetch_add(1, Ordering::Relaxed);
        datetime!(2026-12-07 10:00:00 UTC) + time::Duration::seconds(n as i64)
    }
}

/// An in-memory sink: the bytes a file would hold.
#[derive(Clone, Default)]
pub(crate) struct Memory(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Memory {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

impl AuditSink for Memory {
    fn write(&mut self, record: &Record<'_>) -> Result<(), AuditError> {
        let mut out = self.0.lock().unwrap();
        out.extend_from_slice(record.line);
        out.push(b'\n');
        Ok(())
    }
}

/// One event of each kind, cycling, with `i` in its fields.
pub(crate) fn event(i: usize) -> AuditEvent {
    let idp = "https://idp.acme.example";
    let mcp = "https://mcp.acme.example";
    match i % 6 {
        0 => IdJagIssued::new(
            idp,
            format!("user-{i}"),
            "agent",
            "https://as.example",
            &format!("idjag-{i}"),
        )
        .with_resource(mcp)
        .with_scopes(["files.read"])
        .into(),
        1 => IdJagRedeemed::new(
            idp,
            format!("user-{i}"),
            &format!("idjag-{i}"),
            "agent",
            format!("at-{i}"),
        )
        .with_resource(mcp)
        .into(),
        2 => AccessTokenAccepted::new(format!("at-{i}"), format!("user-{i}"), "agent", mcp).into(),
        3 => AccessTokenRefused::new(mcp, "invalid_token", "expired")
            .with_jti(format!("at-{i}"))
            .into(),
        4 => ToolDecision::new(
            format!("user-{i}"),
            "agent",
            mcp,
            "sql.query",
            &json!({"q": format!("select {i}")}),
            Decision::Allow,
        )
        .with_jti(format!("at-{i}"))
        .with_session("s-1")
        .with_policies(["p-read"])
        .into(),
        _ => ToolDefinitionChanged::new(
            mcp,
            format!("tool-{i}"),
            Some("old".into()),
            Some("new".into()),
            DefinitionResponse::Alerted,
        )
        .into(),
    }
}

/// A closed trail of `events` events with a checkpoint every `every`, in memory.
pub(crate) fn trail(events: usize, every: u64) -> Vec<u8> {
    let sink = Memory::default();
    let log = AuditLog::builder(KEY.clone())
        .config(AuditConfig::new().checkpoint_every(every))
        .clock(ticking_clock())
        .build(sink.clone())
        .unwrap();
    for i in 0..events {
        log.append(event(i)).unwrap();
    }
    log.close().unwrap();
    sink.bytes()
}

pub(crate) fn lines(trail: &[u8]) -> Vec<Vec<u8>> {
    trail
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ema-audit-test-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
