//! The handle servers append through.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ema_jose::SigningKey;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::digest::RecordHash;
use crate::error::AuditError;
use crate::event::AuditEvent;
use crate::record::{
    CHECKPOINT_TYP, ChainHead, CheckpointClaims, MAX_RECORD_LEN, Record, RecordBody, Seq,
    write_prefix,
};
use crate::sink::AuditSink;

/// The source of record times. Implemented for closures, so a test can pass
/// `|| datetime!(2026-01-01 0:00 UTC)`.
pub trait AuditClock: Send + Sync {
    /// The current time; written in UTC.
    fn now(&self) -> OffsetDateTime;
}

impl<F: Fn() -> OffsetDateTime + Send + Sync> AuditClock for F {
    fn now(&self) -> OffsetDateTime {
        self()
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct UtcClock;

impl AuditClock for UtcClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The tools whose raw arguments the operator chose to keep in the trail. Empty by default:
/// tool decisions then carry only the arguments' digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawArguments {
    tools: BTreeSet<String>,
}

impl RawArguments {
    /// No tool: the default.
    pub fn none() -> Self {
        Self::default()
    }

    /// Keeps the raw arguments of exactly these tools (names compared exactly).
    pub fn for_tools<S: Into<String>>(tools: impl IntoIterator<Item = S>) -> Self {
        Self {
            tools: tools.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether `tool`'s raw arguments are kept.
    pub fn allows(&self, tool: &str) -> bool {
        self.tools.contains(tool)
    }
}

/// How the log writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditConfig {
    checkpoint_every: u64,
    checkpoint_interval: Option<Duration>,
    raw_arguments: RawArguments,
    max_record_len: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditConfig {
    /// A checkpoint every 1000 events, no time-based checkpoint, no raw arguments, records up
    /// to [`MAX_RECORD_LEN`].
    pub fn new() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval: None,
            raw_arguments: RawArguments::none(),
            max_record_len: MAX_RECORD_LEN,
        }
    }

    /// A checkpoint after every `n` events (at least 1).
    #[must_use]
    pub fn checkpoint_every(mut self, n: u64) -> Self {
        self.checkpoint_every = n;
        self
    }

    /// Also a checkpoint after the first event appended once `interval` has passed since the
    /// last checkpoint, so a quiet trail is not left unsigned for long. (Nothing runs in the
    /// background: a server that wants a checkpoint on a timer calls
    /// [`AuditLog::checkpoint`].)
    #[must_use]
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = Some(interval);
        self
    }

    /// The tools whose raw arguments are written.
    #[must_use]
    pub fn raw_arguments(mut self, raw: RawArguments) -> Self {
        self.raw_arguments = raw;
        self
    }

    /// The longest record written, at most [`MAX_RECORD_LEN`]; a longer one is refused with
    /// [`AuditError::RecordTooLarge`].
    #[must_use]
    pub fn max_record_len(mut self, max: usize) -> Self {
        self.max_record_len = max;
        self
    }
}

/// Builds an [`AuditLog`].
#[must_use]
pub struct AuditLogBuilder {
    signer: Arc<SigningKey>,
    config: AuditConfig,
    clock: Arc<dyn AuditClock>,
}

impl fmt::Debug for AuditLogBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLogBuilder")
            .field("signer", &self.signer)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AuditLogBuilder {
    /// Sets the configuration.
    pub fn config(mut self, config: AuditConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the clock ([`UtcClock`] by default).
    pub fn clock(mut self, clock: impl AuditClock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The log, writing to `sink` and continuing the trail the sink already holds, if any.
    pub fn build(self, sink: impl AuditSink + 'static) -> Result<AuditLog, AuditError> {
        if self.signer.kid().is_none() {
            return Err(AuditError::SignerWithoutKid);
        }
        if self.config.checkpoint_every == 0 {
            return Err(AuditError::Config {
                reason: "checkpoint_every must be at least 1",
            });
        }
        if self.config.max_record_len > MAX_RECORD_LEN {
            return Err(AuditError::Config {
                reason: "max_record_len exceeds MAX_RECORD_LEN",
            });
        }
        let head = sink.resume_point()?.unwrap_or(ChainHead::EMPTY);
        let now = self.clock.now();
        Ok(AuditLog {
            kind: Kind::Enabled(Arc::new(Inner {
                state: Mutex::new(State {
                    sink: Box::new(sink),
                    head,
                    last_checkpoint_at: now,
                    closed: false,
                    failed: false,
                    buf: Vec::with_capacity(1024),
                }),
                signer: self.signer,
                config: self.config,
                clock: self.clock,
            })),
        })
    }
}

/// The audit trail of one server: append events, and the log chains, checkpoints and writes
/// them.
///
/// Cheap to clone (an `Arc` inside); every clone appends to the same trail, in one order. When
/// the last clone is dropped the trail is closed with a final checkpoint, as by
/// [`AuditLog::close`] (whose errors only `close` can report).
///
/// ```
/// use std::sync::Arc;
/// use ema_audit::{AccessTokenRefused, AuditLog, TracingSink};
/// use ema_jose::{Algorithm, SigningKey};
///
/// let key = Arc::new(SigningKey::generate(Algorithm::EdDSA, Some("audit-1".into()))?);
/// let log = AuditLog::builder(key).build(TracingSink::new())?;
/// let seq = log.append(AccessTokenRefused::new("https://mcp.example", "invalid_token", "expired"))?;
/// assert_eq!(seq.get(), 0);
/// log.close()?;
///
/// // Where auditing is off, the same calls do nothing.
/// let off = AuditLog::disabled();
/// off.append(AccessTokenRefused::new("https://mcp.example", "invalid_token", "expired"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AuditLog {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Disabled(Arc<AtomicU64>),
    Enabled(Arc<Inner>),
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Disabled(_) => f.write_str("AuditLog(disabled)"),
            Kind::Enabled(inner) => f
                .debug_struct("AuditLog")
                .field("signer", &inner.signer)
                .field("config", &inner.config)
                .finish_non_exhaustive(),
        }
    }
}

struct Inner {
    state: Mutex<State>,
    signer: Arc<SigningKey>,
    config: AuditConfig,
    clock: Arc<dyn AuditClock>,
}

struct State {
    sink: Box<dyn AuditSink>,
    head: ChainHead,
    last_checkpoint_at: OffsetDateTime,
    closed: bool,
    failed: bool,
    buf: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Body<'a> {
    Event(&'a AuditEvent),
    Checkpoint(bool),
}

impl AuditLog {
    /// A builder for a log whose checkpoints `signer` signs. The signer needs a `kid`; publish
    /// its public key (and keep retired ones) in the JWKS that verifies the trail.
    pub fn builder(signer: Arc<SigningKey>) -> AuditLogBuilder {
        AuditLogBuilder {
            signer,
            config: AuditConfig::new(),
            clock: Arc::new(UtcClock),
        }
    }

    /// A log that writes nothing: `append` only counts.
    pub fn disabled() -> Self {
        Self {
            kind: Kind::Disabled(Arc::new(AtomicU64::new(0))),
        }
    }

    /// Whether this log writes anything.
    pub fn is_enabled(&self) -> bool {
        matches!(self.kind, Kind::Enabled(_))
    }

    /// Appends `event` and returns its `seq`, after writing a checkpoint if one is due.
    ///
    /// A tool decision's raw arguments are dropped here unless the configuration's
    /// [`RawArguments`] lists the tool.
    pub fn append(&self, event: impl Into<AuditEvent>) -> Result<Seq, AuditError> {
        let inner = match &self.kind {
            Kind::Disabled(count) => return Ok(Seq::new(count.fetch_add(1, Ordering::Relaxed))),
            Kind::Enabled(inner) => inner,
        };
        let mut event = event.into();
        if let AuditEvent::ToolDecision(d) = &mut event
            && !inner.config.raw_arguments.allows(&d.tool)
        {
            d.arguments = None;
        }
        let mut state = inner.lock()?;
        state.usable()?;
        let now = inner.clock.now();
        let seq = state.write(inner, Body::Event(&event), now)?;
        let due_by_count = state.head.unprotected >= inner.config.checkpoint_every;
        let due_by_time = inner
            .config
            .checkpoint_interval
            .is_some_and(|d| now - state.last_checkpoint_at >= d);
        if due_by_count || due_by_time {
            state.write(inner, Body::Checkpoint(false), now)?;
        }
        Ok(seq)
    }

    /// Writes a checkpoint now (if any event follows the last one) and flushes.
    pub fn checkpoint(&self) -> Result<(), AuditError> {
        let Kind::Enabled(inner) = &self.kind else {
            return Ok(());
        };
        let mut state = inner.lock()?;
        state.usable()?;
        if state.head.unprotected > 0 {
            let now = inner.clock.now();
            state.write(inner, Body::Checkpoint(false), now)?;
        }
        state.flush()
    }

    /// Flushes the sink.
    pub fn flush(&self) -> Result<(), AuditError> {
        let Kind::Enabled(inner) = &self.kind else {
            return Ok(());
        };
        let mut state = inner.lock()?;
        state.usable()?;
        state.flush()
    }

    /// Closes the trail: a final checkpoint, then a flush. Later appends fail with
    /// [`AuditError::Closed`]; closing again does nothing.
    pub fn close(&self) -> Result<(), AuditError> {
        let Kind::Enabled(inner) = &self.kind else {
            return Ok(());
        };
        inner.close()
    }

    /// Where the trail ends now (`None` for a disabled log).
    pub fn head(&self) -> Option<ChainHead> {
        match &self.kind {
            Kind::Disabled(_) => None,
            Kind::Enabled(inner) => inner.lock().ok().map(|s| s.head),
        }
    }
}

impl Inner {
    fn lock(&self) -> Result<MutexGuard<'_, State>, AuditError> {
        // A sink that panicked mid-write may have left a torn record: refuse to go on.
        self.state.lock().map_err(|poisoned| {
            poisoned.into_inner().failed = true;
            AuditError::Failed
        })
    }

    fn close(&self) -> Result<(), AuditError> {
        let mut state = self.lock()?;
        if state.closed {
            return Ok(());
        }
        state.usable()?;
        let now = self.clock.now();
        state.write(self, Body::Checkpoint(true), now)?;
        state.flush()?;
        state.closed = true;
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(target: "ema_audit", %error, "closing the audit trail failed");
        }
    }
}

impl State {
    fn usable(&self) -> Result<(), AuditError> {
        if self.failed {
            Err(AuditError::Failed)
        } else if self.closed {
            Err(AuditError::Closed)
        } else {
            Ok(())
        }
    }

    fn flush(&mut self) -> Result<(), AuditError> {
        self.sink.flush().inspect_err(|_| self.failed = true)
    }

    /// Builds, hashes and writes one record; advances the head only once the sink took it.
    fn write(
        &mut self,
        inner: &Inner,
        body: Body<'_>,
        now: OffsetDateTime,
    ) -> Result<Seq, AuditError> {
        let seq = self.head.next_seq;
        let next_seq = seq.checked_add(1).ok_or(AuditError::SeqOverflow)?;
        let time = now
            .to_offset(UtcOffset::UTC)
            .format(&Rfc3339)
            .map_err(AuditError::Time)?;
        let prev = self.head.prev;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        write_prefix(&mut buf, seq, &time, &prev);
        let claims;
        let token;
        let record_body = match body {
            Body::Event(event) => {
                buf.extend_from_slice(b"\"event\":");
                serde_json::to_writer(&mut buf, event).map_err(AuditError::Serialize)?;
                RecordBody::Event(event)
            }
            Body::Checkpoint(is_final) => {
                claims = CheckpointClaims {
                    seq,
                    head: prev.to_base64url(),
                    count: self.head.events,
                    time: time.clone(),
                    is_final,
                };
                token = inner
                    .signer
                    .sign_jwt(Some(CHECKPOINT_TYP), &claims)
                    .map_err(AuditError::Sign)?;
                buf.extend_from_slice(b"\"checkpoint\":\"");
                buf.extend_from_slice(token.as_bytes());
                buf.push(b'"');
                RecordBody::Checkpoint {
                    token: &token,
                    claims: &claims,
                }
            }
        };
        buf.push(b'}');
        if buf.len() > inner.config.max_record_len {
            let len = buf.len();
            self.buf = buf;
            return Err(AuditError::RecordTooLarge {
                len,
                max: inner.config.max_record_len,
            });
        }
        let hash = RecordHash::of_line(&buf);
        let record = Record {
            seq: Seq::new(seq),
            time: &time,
            prev,
            hash,
            line: &buf,
            body: record_body,
        };
        let written = self.sink.write(&record);
        self.buf = buf;
        if let Err(e) = written {
            self.failed = true;
            return Err(e);
        }
        self.head.next_seq = next_seq;
        self.head.prev = hash;
        match body {
            Body::Event(_) => {
                self.head.events += 1;
                self.head.unprotected += 1;
            }
            Body::Checkpoint(_) => {
                self.head.unprotected = 0;
                self.last_checkpoint_at = now;
            }
        }
        Ok(Seq::new(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_shareable_across_threads() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<AuditLog>();
        let key =
            Arc::new(SigningKey::generate(ema_jose::Algorithm::EdDSA, Some("k".into())).unwrap());
        let log = AuditLog::builder(key)
            .build(crate::TracingSink::new())
            .unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        log.append(crate::AccessTokenRefused::new("r", "invalid_token", "x"))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let head = log.head().unwrap();
        assert_eq!(head.events, 200);
        assert_eq!(head.next_seq, 200);
    }
}
