//! Verifying a trail: every link, every checkpoint signature, and a closed tail.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use ema_jose::{
    Algorithm, AlgorithmSet, HeaderPolicy, JwkSet, KeyLookupError, ParseError, ParseOptions,
    TypRule, UnverifiedJwt,
};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::digest::RecordHash;
use crate::record::{CHECKPOINT_TYP, ChainHead, MAX_RECORD_LEN, write_prefix};

/// How deep the JSON of one record may nest (raw tool arguments live inside it).
const MAX_DEPTH: usize = 128;

/// What the verifier found wrong with one record. The record is named by [`BrokenLink`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkProblem {
    /// The last line has no line feed: the file was cut inside a record.
    #[error("the line is incomplete (no line feed): the file was cut inside a record")]
    Incomplete,
    /// The line is longer than the maximum.
    #[error("the line is longer than {max} bytes")]
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// The line is not one strict JSON object.
    #[error("not a JSON object: {reason}")]
    Malformed {
        /// The parser's message.
        reason: String,
    },
    /// A member is missing, has the wrong type, or is not allowed.
    #[error("member `{name}`: {reason}")]
    Member {
        /// The member.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The line parses but is not written in the canonical layout (member order, spacing,
    /// escapes), so its bytes are not the bytes the writer hashed.
    #[error("the record is not in the canonical layout")]
    Layout,
    /// The sequence number is not the next one: a record before it was deleted, or records were
    /// duplicated or reordered.
    #[error(
        "seq {found} where {expected} was expected (a record was deleted, duplicated or moved)"
    )]
    Seq {
        /// The `seq` this position must hold.
        expected: u64,
        /// The `seq` it holds.
        found: u64,
    },
    /// `prev` is not the hash of the previous line: that record was altered (or this link was).
    #[error(
        "`prev` is not the hash of line {previous_line} (seq {previous_seq}): that record was altered, or this link was"
    )]
    Prev {
        /// The previous line.
        previous_line: u64,
        /// The previous record's `seq`.
        previous_seq: u64,
    },
    /// The checkpoint does not verify.
    #[error("checkpoint: {0}")]
    Checkpoint(CheckpointProblem),
}

/// Why a checkpoint does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointProblem {
    /// The token is not a well-formed compact JWS with a JSON claims object.
    #[error("not a well-formed JWS: {0}")]
    Token(ParseError),
    /// The header names no `kid`.
    #[error("the header has no `kid`")]
    NoKid,
    /// The header's `alg` is not one this crate verifies.
    #[error("unsupported algorithm `{alg}`")]
    Algorithm {
        /// The header's `alg`.
        alg: String,
    },
    /// No usable key in the key set has this `kid` (a forged or foreign checkpoint, or a key
    /// missing from the set).
    #[error("key `{kid}`: {reason}")]
    UnknownKey {
        /// The header's `kid`.
        kid: String,
        /// Why no key was found.
        reason: KeyLookupError,
    },
    /// The header's `typ` or the signature does not verify.
    #[error("{0}")]
    Signature(ema_jose::VerifyError),
    /// A signed claim does not match the record, or is missing.
    #[error("signed claim `{name}` does not match the record")]
    Claim {
        /// The claim.
        name: &'static str,
    },
}

/// The first broken link of a trail: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {problem}", seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
#[non_exhaustive]
pub struct BrokenLink {
    /// The 1-based line number.
    pub line: u64,
    /// The record's `seq`, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: LinkProblem,
}

/// Why a trail does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The trail could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file (empty for a reader).
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The trail holds no record at all.
    #[error("the trail is empty")]
    Empty,
    /// A link is broken.
    #[error("broken at {0}")]
    Broken(BrokenLink),
    /// Every link holds but the trail does not end with a final checkpoint.
    #[error(
        "truncated or not closed after seq {last_seq} (line {last_line}): {}",
        match last_checkpoint {
            Some(seq) => format!("the last signed checkpoint is seq {seq}; {unprotected} events after it are unprotected"),
            None => format!("no signed checkpoint; all {unprotected} events are unprotected"),
        }
    )]
    NotClosed {
        /// The last record's `seq`.
        last_seq: u64,
        /// The last line.
        last_line: u64,
        /// The last checkpoint's `seq`, if any.
        last_checkpoint: Option<u64>,
        /// The events after it, which no signature covers.
        unprotected: u64,
    },
}

impl VerifyError {
    /// The broken link, when that is the reason.
    pub fn broken_link(&self) -> Option<&BrokenLink> {
        match self {
            Self::Broken(link) => Some(link),
            _ => None,
        }
    }
}

/// What a verified trail holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Records (events and checkpoints).
    pub records: u64,
    /// Event records.
    pub events: u64,
    /// Checkpoint records.
    pub checkpoints: u64,
    /// The last record's `seq`.
    pub last_seq: u64,
    /// The last record's hash.
    pub head: RecordHash,
    /// The last checkpoint's `seq`.
    pub last_checkpoint: Option<u64>,
    /// Events after the last checkpoint (0 for a closed trail).
    pub unprotected: u64,
    /// Whether the trail ends with a final checkpoint.
    pub closed: bool,
    /// The `kid`s that signed the checkpoints.
    pub kids: BTreeSet<String>,
}

impl VerifyReport {
    /// Where a writer continues this trail.
    pub fn chain_head(&self) -> ChainHead {
        ChainHead::new(
            self.last_seq.saturating_add(1),
            self.head,
            self.events,
            self.unprotected,
        )
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records ({} events, {} checkpoints), seq 0..={}, ",
            self.records, self.events, self.checkpoints, self.last_seq
        )?;
        if self.closed {
            f.write_str("closed by a signed final checkpoint")?;
        } else {
            match self.last_checkpoint {
                Some(seq) => write!(
                    f,
                    "NOT closed: {} events after the checkpoint at seq {seq} are unprotected",
                    self.unprotected
                )?,
                None => write!(
                    f,
                    "NOT closed: no checkpoint, {} events unprotected",
                    self.unprotected
                )?,
            }
        }
        if !self.kids.is_empty() {
            let kids: Vec<&str> = self.kids.iter().map(String::as_str).collect();
            write!(f, "; signed by {}", kids.join(", "))?;
        }
        write!(f, "; head {}", self.head)
    }
}

/// Verifies a trail against the key set that signed its checkpoints.
///
/// Reads line by line (memory bounded by the longest line) and stops at the first broken link.
/// A trail verifies when every record is in the canonical layout, its `seq` is the next one, its
/// `prev` is the hash of the line before, every checkpoint is signed by a key of the set (found
/// by `kid`, with `typ` `audit-checkpoint+jwt`) over claims that match the record, and the last
/// record is a final checkpoint.
///
/// ```
/// use ema_audit::{Verifier, VerifyError};
/// use ema_jose::JwkSet;
///
/// let verifier = Verifier::new(JwkSet::default());
/// assert!(matches!(verifier.verify_bytes(b""), Err(VerifyError::Empty)));
/// ```
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: JwkSet,
    policy: HeaderPolicy,
    allow_unclosed: bool,
    max_record_len: usize,
}

impl Verifier {
    /// A verifier trusting `keys` for checkpoints.
    pub fn new(keys: JwkSet) -> Self {
        Self {
            keys,
            policy: HeaderPolicy::custom(TypRule::Required(CHECKPOINT_TYP), AlgorithmSet::ALL),
            allow_unclosed: false,
            max_record_len: MAX_RECORD_LEN,
        }
    }

    /// Accepts a trail that does not end with a final checkpoint (a live trail, still being
    /// written): the report then says how many events are unprotected. Off by default.
    #[must_use]
    pub fn allow_unclosed(mut self, allow: bool) -> Self {
        self.allow_unclosed = allow;
        self
    }

    /// Restricts the checkpoint algorithms (all algorithms `ema-jose` verifies by default).
    #[must_use]
    pub fn with_algorithms(mut self, algorithms: AlgorithmSet) -> Self {
        self.policy = self.policy.with_algorithms(algorithms);
        self
    }

    /// Sets the longest line accepted ([`MAX_RECORD_LEN`] by default).
    #[must_use]
    pub fn with_max_record_len(mut self, max: usize) -> Self {
        self.max_record_len = max;
        self
    }

    /// Verifies the file at `path`.
    pub fn verify_file(&self, path: impl AsRef<Path>) -> Result<VerifyReport, VerifyError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| VerifyError::Io {
            path: path.to_owned(),
            source,
        })?;
        self.verify_reader(BufReader::with_capacity(1 << 16, file))
            .map_err(|e| match e {
                VerifyError::Io { source, .. } => VerifyError::Io {
                    path: path.to_owned(),
                    source,
                },
                other => other,
            })
    }

    /// Verifies a trail held in memory.
    pub fn verify_bytes(&self, trail: &[u8]) -> Result<VerifyReport, VerifyError> {
        self.verify_reader(trail)
    }

    /// Verifies a trail read from `reader`.
    pub fn verify_reader(&self, mut reader: impl BufRead) -> Result<VerifyReport, VerifyError> {
        let mut state = State::default();
        let mut buf = Vec::with_capacity(1024);
        let cap = u64::try_from(self.max_record_len)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        loop {
            buf.clear();
            let n = (&mut reader)
                .take(cap)
                .read_until(b'\n', &mut buf)
                .map_err(|source| VerifyError::Io {
                    path: PathBuf::new(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            state.line += 1;
            let broken = |problem| {
                VerifyError::Broken(BrokenLink {
                    line: state.line,
                    seq: None,
                    problem,
                })
            };
            if buf.last() == Some(&b'\n') {
                buf.pop();
            } else if buf.len() > self.max_record_len {
                return Err(broken(LinkProblem::TooLong {
                    max: self.max_record_len,
                }));
            } else {
                return Err(broken(LinkProblem::Incomplete));
            }
            self.check_line(&mut state, &buf)
                .map_err(|(seq, problem)| {
                    VerifyError::Broken(BrokenLink {
                        line: state.line,
                        seq,
                        problem,
                    })
                })?;
        }
        let Some(last_seq) = state.next_seq.checked_sub(1) else {
            return Err(VerifyError::Empty);
        };
        if !state.closed && !self.allow_unclosed {
            return Err(VerifyError::NotClosed {
                last_seq,
                last_line: state.line,
                last_checkpoint: state.last_checkpoint,
                unprotected: state.unprotected,
            });
        }
        Ok(VerifyReport {
            records: state.next_seq,
            events: state.events,
            checkpoints: state.checkpoints,
            last_seq,
            head: state.prev,
            last_checkpoint: state.last_checkpoint,
            unprotected: state.unprotected,
            closed: state.closed,
            kids: state.kids,
        })
    }

    /// Checks one line (without its line feed) and advances the state.
    fn check_line(&self, state: &mut State, line: &[u8]) -> Result<(), (Option<u64>, LinkProblem)> {
        let object = ema_jose::parse_json_object(line, MAX_DEPTH).map_err(|e| {
            (
                None,
                LinkProblem::Malformed {
                    reason: e.to_string(),
                },
            )
        })?;
        let seq = match object.get("seq") {
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        }
        .ok_or((None, member("seq", "must be a non-negative integer")))?;
        let fail = |problem| (Some(seq), problem);
        let time = string_member(&object, "time").map_err(fail)?;
        OffsetDateTime::parse(time, &Rfc3339)
            .map_err(|_| fail(member("time", "must be an RFC 3339 date-time")))?;
        let prev_text = string_member(&object, "prev").map_err(fail)?;
        let prev = RecordHash::from_base64url(prev_text)
            .ok_or_else(|| fail(member("prev", "must be a base64url SHA-256 hash")))?;
        let body = match (object.get("event"), object.get("checkpoint")) {
            (Some(Value::Object(event)), None) => {
                if !matches!(event.get("kind"), Some(Value::String(_))) {
                    return Err(fail(member("event", "must have a string `kind`")));
                }
                Body::Event
            }
            (None, Some(Value::String(token))) => Body::Checkpoint(token),
            (Some(_), None) => return Err(fail(member("event", "must be an object"))),
            (None, Some(_)) => return Err(fail(member("checkpoint", "must be a string"))),
            (Some(_), Some(_)) => {
                return Err(fail(member(
                    "checkpoint",
                    "a record is an event or a checkpoint, not both",
                )));
            }
            (None, None) => return Err(fail(member("event", "missing"))),
        };
        if let Some(extra) = object
            .keys()
            .find(|k| !matches!(k.as_str(), "seq" | "time" | "prev" | "event" | "checkpoint"))
        {
            return Err(fail(LinkProblem::Member {
                name: extra.clone(),
                reason: "not allowed",
            }));
        }
        // The bytes must be the writer's own layout: parsing alone would accept other spellings
        // of the same values, and the final checkpoint's bytes are covered by nothing else.
        let mut expected = Vec::with_capacity(line.len());
        write_prefix(&mut expected, seq, time, &prev);
        match body {
            Body::Event => {
                expected.extend_from_slice(b"\"event\":");
                let layout = line
                    .strip_prefix(expected.as_slice())
                    .and_then(|rest| rest.strip_suffix(b"}"))
                    .is_some_and(|event| event.first() == Some(&b'{'));
                if !layout {
                    return Err(fail(LinkProblem::Layout));
                }
            }
            Body::Checkpoint(token) => {
                expected.extend_from_slice(b"\"checkpoint\":\"");
                expected.extend_from_slice(token.as_bytes());
                expected.extend_from_slice(b"\"}");
                if line != expected.as_slice() {
                    return Err(fail(LinkProblem::Layout));
                }
            }
        }
        if seq != state.next_seq {
            return Err(fail(LinkProblem::Seq {
                expected: state.next_seq,
                found: seq,
            }));
        }
        if prev != state.prev && seq == 0 {
            return Err(fail(member(
                "prev",
                "the first record must link to the genesis hash (32 zero bytes)",
            )));
        }
        if prev != state.prev {
            return Err(fail(LinkProblem::Prev {
                previous_line: state.line.saturating_sub(1),
                previous_seq: seq.saturating_sub(1),
            }));
        }
        match body {
            Body::Event => {
                state.events += 1;
                state.unprotected += 1;
                state.closed = false;
            }
            Body::Checkpoint(token) => {
                let (kid, is_final) = self
                    .check_checkpoint(token, seq, time, prev_text, state.events)
                    .map_err(|p| fail(LinkProblem::Checkpoint(p)))?;
                state.kids.insert(kid);
                state.checkpoints += 1;
                state.last_checkpoint = Some(seq);
                state.unprotected = 0;
                state.closed = is_final;
            }
        }
        state.prev = RecordHash::of_line(line);
        state.next_seq = seq
            .checked_add(1)
            .ok_or_else(|| fail(member("seq", "overflows")))?;
        Ok(())
    }

    fn check_checkpoint(
        &self,
        token: &str,
        seq: u64,
        time: &str,
        head: &str,
        events: u64,
    ) -> Result<(String, bool), CheckpointProblem> {
        let jwt =
            UnverifiedJwt::parse(token, &ParseOptions::new()).map_err(CheckpointProblem::Token)?;
        let kid = jwt
            .header()
            .kid()
            .ok_or(CheckpointProblem::NoKid)?
            .to_owned();
        let alg = Algorithm::from_name(jwt.header().alg()).ok_or_else(|| {
            CheckpointProblem::Algorithm {
                alg: jwt.header().alg().to_owned(),
            }
        })?;
        let key =
            self.keys
                .find(Some(&kid), alg)
                .map_err(|reason| CheckpointProblem::UnknownKey {
                    kid: kid.clone(),
                    reason,
                })?;
        let verified = jwt
            .verify(&self.policy, key)
            .map_err(CheckpointProblem::Signature)?;
        let claims = verified.claims();
        let claim = |name| CheckpointProblem::Claim { name };
        if claims.get("seq").and_then(Value::as_u64) != Some(seq) {
            return Err(claim("seq"));
        }
        if claims.get("head").and_then(Value::as_str) != Some(head) {
            return Err(claim("head"));
        }
        if claims.get("count").and_then(Value::as_u64) != Some(events) {
            return Err(claim("count"));
        }
        if claims.get("time").and_then(Value::as_str) != Some(time) {
            return Err(claim("time"));
        }
        let is_final = claims
            .get("final")
            .and_then(Value::as_bool)
            .ok_or(claim("final"))?;
        Ok((kid, is_final))
    }
}

enum Body<'a> {
    Event,
    Checkpoint(&'a str),
}

struct State {
    line: u64,
    next_seq: u64,
    prev: RecordHash,
    events: u64,
    checkpoints: u64,
    unprotected: u64,
    last_checkpoint: Option<u64>,
    closed: bool,
    kids: BTreeSet<String>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            line: 0,
            next_seq: 0,
            prev: RecordHash::GENESIS,
            events: 0,
            checkpoints: 0,
            unprotected: 0,
            last_checkpoint: None,
            closed: false,
            kids: BTreeSet::new(),
        }
    }
}

fn member(name: &str, reason: &'static str) -> LinkProblem {
    LinkProblem::Member {
        name: name.to_owned(),
        reason,
    }
}

fn string_member<'a>(object: &'a Map<String, Value>, name: &str) -> Result<&'a str, LinkProblem> {
    match object.get(name) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(member(name, "must be a string")),
    }
}
