#![doc = include_str!("../README.md")]

mod digest;
mod error;
mod event;
mod log;
mod record;
mod sink;
mod verify;

pub use digest::{ArgumentsDigest, JtiDigest, RecordHash, canonical_json};
pub use error::AuditError;
pub use event::{
    AccessTokenAccepted, AccessTokenRefused, AuditEvent, CredentialKind, CredentialRef,
    CredentialRefreshed, CredentialRefused, CredentialRevoked, CredentialSource, CredentialStored,
    CredentialUsed, Decision, DefinitionResponse, IdJagIssued, IdJagRedeemed, ProviderRevocation,
    RevocationApplied, RevocationOutcome, SecurityEventReceived, StreamHealthChanged,
    SubjectOffboarded, ToolDecision, ToolDefinitionChanged,
};
pub use log::{AuditClock, AuditConfig, AuditLog, AuditLogBuilder, RawArguments, UtcClock};
pub use record::{
    CHECKPOINT_TYP, ChainHead, CheckpointClaims, MAX_RECORD_LEN, Record, RecordBody, Seq,
};
pub use sink::{AuditSink, FanOut, FileOptions, FlushPolicy, JsonLinesFile, TracingSink};
pub use verify::{BrokenLink, CheckpointProblem, LinkProblem, Verifier, VerifyError, VerifyReport};
