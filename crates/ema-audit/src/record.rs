//! The record layout: one JSON object per line, and the claims a checkpoint signs.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::RecordHash;
use crate::event::AuditEvent;

/// The `typ` header of a checkpoint JWS.
pub const CHECKPOINT_TYP: &str = "audit-checkpoint+jwt";

/// The default and maximum length of one record line, in bytes (1 MiB), without the line feed.
pub const MAX_RECORD_LEN: usize = 1 << 20;

/// A record's sequence number: 0 for the first record of a trail, then one more per record
/// (events and checkpoints alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(u64);

impl Seq {
    /// The sequence number `n`.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The claims a checkpoint JWS signs (`typ` [`CHECKPOINT_TYP`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CheckpointClaims {
    /// The checkpoint record's own `seq`.
    pub seq: u64,
    /// The hash of the record before the checkpoint (equal to the checkpoint record's `prev`):
    /// through the chain it covers every earlier record.
    pub head: String,
    /// How many event records (not checkpoints) the trail holds before this checkpoint.
    pub count: u64,
    /// The checkpoint record's `time`.
    pub time: String,
    /// Whether the writer closed the trail here. A trail that ends without a final checkpoint
    /// was truncated or not closed.
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// What a record holds.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum RecordBody<'a> {
    /// An event.
    Event(&'a AuditEvent),
    /// A checkpoint: the compact JWS and the claims it signs.
    Checkpoint {
        /// The compact JWS as written.
        token: &'a str,
        /// Its claims.
        claims: &'a CheckpointClaims,
    },
}

/// One record as handed to an [`crate::AuditSink`]: its fields and the exact line bytes.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Record<'a> {
    /// The sequence number.
    pub seq: Seq,
    /// The RFC 3339 time as written.
    pub time: &'a str,
    /// The hash of the previous record.
    pub prev: RecordHash,
    /// This record's hash: [`RecordHash::of_line`] of [`Record::line`].
    pub hash: RecordHash,
    /// The exact line, without its line feed.
    pub line: &'a [u8],
    /// The event or checkpoint.
    pub body: RecordBody<'a>,
}

impl Record<'_> {
    /// Whether this record is a checkpoint.
    pub fn is_checkpoint(&self) -> bool {
        matches!(self.body, RecordBody::Checkpoint { .. })
    }
}

/// Where a trail ends, so that a log can continue it: the next `seq`, the last record's hash,
/// the number of events so far, and how many of them follow the last checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainHead {
    /// The `seq` the next record takes.
    pub next_seq: u64,
    /// The hash of the last record ([`RecordHash::GENESIS`] for an empty trail).
    pub prev: RecordHash,
    /// The number of event records so far.
    pub events: u64,
    /// The number of events after the last checkpoint.
    pub unprotected: u64,
}

impl ChainHead {
    /// The head of an empty trail.
    pub const EMPTY: Self = Self {
        next_seq: 0,
        prev: RecordHash::GENESIS,
        events: 0,
        unprotected: 0,
    };

    /// A head from its parts.
    pub const fn new(next_seq: u64, prev: RecordHash, events: u64, unprotected: u64) -> Self {
        Self {
            next_seq,
            prev,
            events,
            unprotected,
        }
    }
}

/// Writes `{"seq":N,"time":"T","prev":"H",` into `out`: the prefix every record shares. The time
/// and hash need no escaping (RFC 3339 and base64url characters only).
pub(crate) fn write_prefix(out: &mut Vec<u8>, seq: u64, time: &str, prev: &RecordHash) {
    out.extend_from_slice(b"{\"seq\":");
    push_decimal(out, seq);
    out.extend_from_slice(b",\"time\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\",\"prev\":\"");
    out.extend_from_slice(prev.to_base64url().as_bytes());
    out.extend_from_slice(b"\",");
}

/// Appends `n` in decimal without allocating.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        for n in [0, 7, 10, 99, 1000, 12_345_678_901, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
