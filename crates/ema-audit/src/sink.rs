//! Where records go: a JSON-lines file, `tracing`, or several at once.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use ema_jose::JwkSet;

use crate::error::AuditError;
use crate::record::{ChainHead, Record, RecordBody};
use crate::verify::{Verifier, VerifyError};

/// A destination for records. [`crate::AuditLog`] calls it under its lock, one record at a
/// time and in `seq` order, so an implementation needs no locking of its own.
///
/// A sink that keeps records (a file, a database) reports where its trail ends through
/// [`AuditSink::resume_point`], and the log continues from there.
pub trait AuditSink: Send + Sync {
    /// Where the trail this sink already holds ends, if it holds one. The default: none.
    fn resume_point(&self) -> Result<Option<ChainHead>, AuditError> {
        Ok(None)
    }

    /// Writes one record. An error makes the log refuse further records
    /// ([`AuditError::Failed`]).
    fn write(&mut self, record: &Record<'_>) -> Result<(), AuditError>;

    /// Pushes buffered records to durable storage.
    fn flush(&mut self) -> Result<(), AuditError> {
        Ok(())
    }
}

impl<S: AuditSink + ?Sized> AuditSink for Box<S> {
    fn resume_point(&self) -> Result<Option<ChainHead>, AuditError> {
        (**self).resume_point()
    }

    fn write(&mut self, record: &Record<'_>) -> Result<(), AuditError> {
        (**self).write(record)
    }

    fn flush(&mut self) -> Result<(), AuditError> {
        (**self).flush()
    }
}

/// When [`JsonLinesFile`] hands buffered lines to the operating system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FlushPolicy {
    /// After every record: a crash of the process loses nothing written (the default).
    #[default]
    EachRecord,
    /// At each checkpoint, on [`crate::AuditLog::flush`] and on close: fewer system calls; a
    /// crash loses the records since the last checkpoint.
    Checkpoints,
}

/// How [`JsonLinesFile`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileOptions {
    flush: FlushPolicy,
    sync_checkpoints: bool,
    adopt_unclosed_tail: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl FileOptions {
    /// Flush after every record, `fsync` at each checkpoint and on close, refuse to continue a
    /// file that was not closed.
    pub const fn new() -> Self {
        Self {
            flush: FlushPolicy::EachRecord,
            sync_checkpoints: true,
            adopt_unclosed_tail: false,
        }
    }

    /// Sets the flush policy.
    #[must_use]
    pub const fn flush(mut self, policy: FlushPolicy) -> Self {
        self.flush = policy;
        self
    }

    /// Whether checkpoints and close also `fsync` the file's data (on by default).
    #[must_use]
    pub const fn sync_checkpoints(mut self, sync: bool) -> Self {
        self.sync_checkpoints = sync;
        self
    }

    /// Continues a file whose links all verify but which ends without a final checkpoint (the
    /// writer crashed). Its unprotected events are signed by the next checkpoint, so only turn
    /// this on once the file has been checked. Off by default.
    #[must_use]
    pub const fn adopt_unclosed_tail(mut self, adopt: bool) -> Self {
        self.adopt_unclosed_tail = adopt;
        self
    }

    /// Opens `path` for appending, creating it if absent. An existing, non-empty file is
    /// verified first with `keys` (the keys that signed its checkpoints): the log continues its
    /// chain, or the open fails with [`AuditError::Resume`] (a broken link) or
    /// [`AuditError::ResumeNotClosed`].
    pub fn open(self, path: impl AsRef<Path>, keys: &JwkSet) -> Result<JsonLinesFile, AuditError> {
        let path = path.as_ref().to_owned();
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let head = if len == 0 {
            None
        } else {
            let reader = File::open(&path).map_err(io)?;
            let verifier = Verifier::new(keys.clone()).allow_unclosed(true);
            match verifier.verify_reader(BufReader::with_capacity(1 << 16, reader)) {
                Ok(report) if report.closed || self.adopt_unclosed_tail => {
                    Some(report.chain_head())
                }
                Ok(report) => {
                    return Err(AuditError::ResumeNotClosed {
                        path,
                        last_seq: report.last_seq,
                        unprotected: report.unprotected,
                    });
                }
                Err(VerifyError::Io { source, .. }) => return Err(io(source)),
                Err(e) => {
                    return Err(AuditError::Resume {
                        path,
                        source: Box::new(e),
                    });
                }
            }
        };
        Ok(JsonLinesFile {
            out: BufWriter::with_capacity(1 << 16, file),
            path,
            options: self,
            head,
            unsynced: false,
        })
    }

    /// Creates a new file at `path`; fails if it exists.
    pub fn create_new(self, path: impl AsRef<Path>) -> Result<JsonLinesFile, AuditError> {
        let path = path.as_ref().to_owned();
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|source| AuditError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(JsonLinesFile {
            out: BufWriter::with_capacity(1 << 16, file),
            path,
            options: self,
            head: None,
            unsynced: false,
        })
    }
}

/// The trail as a file of JSON lines, appended to and never rewritten.
///
/// One process writes one file: two writers would interleave two chains.
pub struct JsonLinesFile {
    out: BufWriter<File>,
    path: PathBuf,
    options: FileOptions,
    head: Option<ChainHead>,
    /// Whether anything was written since the last `fsync`.
    unsynced: bool,
}

impl fmt::Debug for JsonLinesFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesFile")
            .field("path", &self.path)
            .field("options", &self.options)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl JsonLinesFile {
    /// [`FileOptions::open`] with the default options.
    pub fn open(path: impl AsRef<Path>, keys: &JwkSet) -> Result<Self, AuditError> {
        FileOptions::new().open(path, keys)
    }

    /// [`FileOptions::create_new`] with the default options.
    pub fn create_new(path: impl AsRef<Path>) -> Result<Self, AuditError> {
        FileOptions::new().create_new(path)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

impl AuditSink for JsonLinesFile {
    fn resume_point(&self) -> Result<Option<ChainHead>, AuditError> {
        Ok(self.head)
    }

    fn write(&mut self, record: &Record<'_>) -> Result<(), AuditError> {
        let result = self
            .out
            .write_all(record.line)
            .and_then(|()| self.out.write_all(b"\n"));
        result.map_err(|e| self.io(e))?;
        self.unsynced = true;
        if record.is_checkpoint() {
            self.flush()
        } else if self.options.flush == FlushPolicy::EachRecord {
            self.out.flush().map_err(|e| self.io(e))
        } else {
            Ok(())
        }
    }

    fn flush(&mut self) -> Result<(), AuditError> {
        self.out.flush().map_err(|e| self.io(e))?;
        if self.options.sync_checkpoints && self.unsynced {
            self.out.get_ref().sync_data().map_err(|e| self.io(e))?;
            self.unsynced = false;
        }
        Ok(())
    }
}

/// Each record as a `tracing` event under target `ema_audit`: fields `seq`, `hash`, `kind` and
/// `event` (the event's JSON); checkpoints with `checkpoint` (the JWS) and `final`. Refused
/// tokens, denied calls and changed tool definitions are logged at `WARN`, the rest at `INFO`.
///
/// Shipping these off the host (through a `tracing` subscriber) keeps a copy of each checkpoint
/// out of reach of whoever can rewrite the file.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct TracingSink;

impl TracingSink {
    /// The sink.
    pub const fn new() -> Self {
        Self
    }
}

impl AuditSink for TracingSink {
    fn write(&mut self, record: &Record<'_>) -> Result<(), AuditError> {
        let seq = record.seq.get();
        let hash = record.hash.to_base64url();
        match record.body {
            RecordBody::Event(event) => {
                let json = serde_json::to_string(event).map_err(AuditError::Serialize)?;
                let kind = event.kind();
                if event.is_alert() {
                    tracing::warn!(target: "ema_audit", seq, time = record.time, hash, kind, event = %json, "audit event");
                } else {
                    tracing::info!(target: "ema_audit", seq, time = record.time, hash, kind, event = %json, "audit event");
                }
            }
            RecordBody::Checkpoint { token, claims } => {
                tracing::info!(
                    target: "ema_audit",
                    seq,
                    time = record.time,
                    hash,
                    kind = "checkpoint",
                    head = claims.head.as_str(),
                    count = claims.count,
                    "final" = claims.is_final,
                    checkpoint = token,
                    "audit checkpoint"
                );
            }
        }
        Ok(())
    }
}

/// Several sinks fed the same records, in order.
///
/// Every sink gets every record even when an earlier one fails; the first error is returned.
/// At most one sink may hold an existing trail ([`AuditSink::resume_point`]), or several that
/// agree.
#[derive(Default)]
pub struct FanOut {
    sinks: Vec<Box<dyn AuditSink>>,
}

impl fmt::Debug for FanOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOut")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl FanOut {
    /// No sinks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sink.
    #[must_use]
    pub fn with(mut self, sink: impl AuditSink + 'static) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }
}

impl AuditSink for FanOut {
    fn resume_point(&self) -> Result<Option<ChainHead>, AuditError> {
        let mut found: Option<ChainHead> = None;
        for sink in &self.sinks {
            match (found, sink.resume_point()?) {
                (Some(a), Some(b)) if a != b => {
                    return Err(AuditError::ConflictingSinks {
                        first: a.next_seq,
                        second: b.next_seq,
                    });
                }
                (None, Some(b)) => found = Some(b),
                _ => {}
            }
        }
        Ok(found)
    }

    fn write(&mut self, record: &Record<'_>) -> Result<(), AuditError> {
        let mut first = Ok(());
        for sink in &mut self.sinks {
            let result = sink.write(record);
            if first.is_ok() {
                first = result;
            }
        }
        first
    }

    fn flush(&mut self) -> Result<(), AuditError> {
        let mut first = Ok(());
        for sink in &mut self.sinks {
            let result = sink.flush();
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}
