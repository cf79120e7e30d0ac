//! Why appending to the trail failed.

use std::io;
use std::path::PathBuf;

use crate::verify::VerifyError;

/// Why a record could not be appended, or a trail could not be opened or continued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Reading or writing the trail failed.
    #[error("audit trail `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The clock's time cannot be written as RFC 3339 (a year outside 0000-9999).
    #[error("time cannot be written as RFC 3339: {0}")]
    Time(#[source] time::error::Format),
    /// An event did not serialize.
    #[error("event does not serialize: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The record would be longer than the configured maximum; nothing was written.
    #[error("record of {len} bytes exceeds the maximum of {max}")]
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// Signing a checkpoint failed.
    #[error("checkpoint signing failed: {0}")]
    Sign(#[source] ema_jose::SignError),
    /// The checkpoint signer has no `kid`; verifiers find checkpoint keys by `kid`.
    #[error("the checkpoint signing key has no `kid`")]
    SignerWithoutKid,
    /// The configuration is unusable.
    #[error("invalid audit configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: &'static str,
    },
    /// The log was closed; nothing more can be appended.
    #[error("the audit log is closed")]
    Closed,
    /// An earlier write failed part-way; the log refuses further records rather than write
    /// after a torn record.
    #[error("an earlier write to the audit trail failed; the log accepts no more records")]
    Failed,
    /// The existing file does not verify, so it cannot be continued.
    #[error("cannot continue `{}`: {source}", path.display())]
    Resume {
        /// The file.
        path: PathBuf,
        /// The first broken link, or why it could not be read.
        #[source]
        source: Box<VerifyError>,
    },
    /// The existing file verifies but was not closed (its tail has no final checkpoint):
    /// continuing would sign events nobody signed. Check the file, then allow it with
    /// [`crate::FileOptions::adopt_unclosed_tail`].
    #[error(
        "cannot continue `{}`: not closed after seq {last_seq}, {unprotected} events after the last signed checkpoint",
        path.display()
    )]
    ResumeNotClosed {
        /// The file.
        path: PathBuf,
        /// The last record's `seq`.
        last_seq: u64,
        /// Events after the last checkpoint.
        unprotected: u64,
    },
    /// Two sinks of a fan-out hold different trails.
    #[error("the sinks hold different trails (next seq {first} and {second})")]
    ConflictingSinks {
        /// One sink's next `seq`.
        first: u64,
        /// Another's.
        second: u64,
    },
    /// The sequence number would overflow.
    #[error("sequence number overflow")]
    SeqOverflow,
}
