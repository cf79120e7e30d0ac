//! The authorization server's OpenID Shared Signals receiver: Security Event Tokens (RFC 8417)
//! pushed by trusted transmitters (RFC 8935), validated strictly with `ema-jose` and turned into
//! the one internal [`Revoke`] command (RV-4..RV-10, RV-13, D-37).
//!
//! Sans-I/O like the grants: [`SsfReceiver::handle`] takes an `http::Request` and the current
//! time and returns an `http::Response`. Each transmitter has a [`TransmitterTrust`]: its
//! issuer, its keys, the `Authorization` value it presents (compared in constant time), the
//! audience it must address (our receiver id), the IdP issuers and tenant whose subjects it may
//! affect (RV-7), and how subjects are matched (RV-9).
//!
//! The order of checks: transmitter authentication (401, nothing parsed, D-37); the media type;
//! the compact JWS; `iss` against the authenticated transmitter (`invalid_issuer`); the header
//! policy (`typ` `secevent+jwt`, alg allow-list without `none` or HMAC, RV-5); the key from the
//! transmitter's key set only (`invalid_key`); the signature (`authentication_failed`); `aud`
//! (`invalid_audience`); the claims (`sub`/`exp` absent, `iat`/`jti`/`events`/`sub_id` present,
//! exactly one event: `invalid_request`); the subject (`access_denied` outside the transmitter's
//! authority); the event; deduplication by (`iss`, `jti`) for seven days (RV-8); the ledger
//! write. `202` is answered only once the ledger holds the change (RV-4).

use std::collections::BTreeMap;
use std::sync::Arc;

use ema_jose::{
    AlgorithmSet, AudienceRule, Claims, DynKeySource, HeaderError, HeaderPolicy, JwkSet,
    KeyLookupError, KeySource, ParseError, ParseOptions, StaticKeySource, TypRule, UnixTime,
    UnverifiedJwt, VerifyError,
};
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use crate::replay::{DynReplayStore, ReplayError, ReplayKey, ReplayKind, ReplayStore, Seen};
use crate::revocation::{LedgerChange, RevocationKind, RevocationScope};
use crate::revoke::{Revoke, RevokeAction, RevokeError, Revoker};
use crate::ssf_health::{
    HealthChange, StreamHealth, StreamStatus, VerificationMatch, VerificationPolicy,
};

mod gtr_auth;

/// The `typ` of a Security Event Token (RFC 8417 §2.3), compared per D-8.
pub const SECEVENT_TYP: &str = "secevent+jwt";

/// The media type of a pushed SET (RFC 8935 §2).
pub const SECEVENT_CONTENT_TYPE: &str = "application/secevent+jwt";

/// How long a received (`iss`, `jti`) is remembered (RV-8): seven days.
pub const DEDUP_WINDOW_SECS: u64 = 7 * 24 * 3600;

/// The default path of the push endpoint below the AS issuer.
pub const DEFAULT_PUSH_PATH: &str = "/ssf/events";

/// The largest SET accepted, in bytes.
pub const MAX_SET_LEN: usize = 16 * 1024;

/// Event type URIs this receiver knows (CAEP 1.0, RISC 1.0, SSF 1.0).
pub mod event_type {
    /// CAEP `session-revoked`.
    pub const SESSION_REVOKED: &str =
        "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
    /// CAEP `credential-change`.
    pub const CREDENTIAL_CHANGE: &str =
        "https://schemas.openid.net/secevent/caep/event-type/credential-change";
    /// RISC `account-disabled`.
    pub const ACCOUNT_DISABLED: &str =
        "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
    /// RISC `account-enabled`.
    pub const ACCOUNT_ENABLED: &str =
        "https://schemas.openid.net/secevent/risc/event-type/account-enabled";
    /// RISC `account-purged`.
    pub const ACCOUNT_PURGED: &str =
        "https://schemas.openid.net/secevent/risc/event-type/account-purged";
    /// RISC `credential-compromise`.
    pub const CREDENTIAL_COMPROMISE: &str =
        "https://schemas.openid.net/secevent/risc/event-type/credential-compromise";
    /// RISC `account-credential-change-required`.
    pub const ACCOUNT_CREDENTIAL_CHANGE_REQUIRED: &str =
        "https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required";
    /// RISC `sessions-revoked` (deprecated; treated as CAEP `session-revoked`).
    pub const RISC_SESSIONS_REVOKED: &str =
        "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked";
    /// CAEP `token-claims-change`.
    pub const TOKEN_CLAIMS_CHANGE: &str =
        "https://schemas.openid.net/secevent/caep/event-type/token-claims-change";
    /// RISC `identifier-recycled`.
    pub const IDENTIFIER_RECYCLED: &str =
        "https://schemas.openid.net/secevent/risc/event-type/identifier-recycled";
    /// SSF `verification`.
    pub const VERIFICATION: &str =
        "https://schemas.openid.net/secevent/ssf/event-type/verification";
    /// SSF `stream-updated`.
    pub const STREAM_UPDATED: &str =
        "https://schemas.openid.net/secevent/ssf/event-type/stream-updated";
}

/// The RFC 8935 §2.4 error codes a receiver answers in `{"err": ...}` (RV-6, D-37).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SetErrorCode {
    /// The SET cannot be parsed, or its claims are wrong.
    InvalidRequest,
    /// The key is unknown or the algorithm not allowed.
    InvalidKey,
    /// The signature does not verify.
    AuthenticationFailed,
    /// The issuer is not the transmitter's.
    InvalidIssuer,
    /// The audience is not this receiver.
    InvalidAudience,
    /// The subject lies outside the transmitter's authority.
    AccessDenied,
}

impl SetErrorCode {
    /// The wire code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidKey => "invalid_key",
            Self::AuthenticationFailed => "authentication_failed",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::AccessDenied => "access_denied",
        }
    }
}

impl std::fmt::Display for SetErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A claim or member of a SET that broke the rules of RV-5.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetClaimError {
    /// `sub` is present (SSF §4.1 forbids it; the subject is `sub_id`).
    #[error("`sub` must be absent")]
    SubPresent,
    /// `exp` is present (SSF §4.1 forbids it).
    #[error("`exp` must be absent")]
    ExpPresent,
    /// A required claim is missing or has the wrong type.
    #[error("`{claim}` is missing or malformed")]
    Missing {
        /// The claim.
        claim: &'static str,
    },
    /// `events` does not hold exactly one event.
    #[error("`events` holds {count} events; exactly one is allowed")]
    EventCount {
        /// How many it holds.
        count: usize,
    },
    /// The event's payload is not a JSON object.
    #[error("the event payload is not an object")]
    EventPayload,
    /// An event member is missing or malformed.
    #[error("event member `{member}` is missing or malformed")]
    EventMember {
        /// The member.
        member: &'static str,
    },
    /// `sub_id` is malformed.
    #[error("`sub_id` is malformed: {reason}")]
    Subject {
        /// What is wrong.
        reason: &'static str,
    },
}

/// Why a pushed SET was refused. [`code`](Self::code) gives the RFC 8935 wire code;
/// [`status`](Self::status) the HTTP status (401 for transmitter authentication, D-37; 503 when
/// the ledger or the deduplication store is unreachable, RV-14).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SsfError {
    /// The `Authorization` header matches no configured transmitter (401 before any parsing).
    #[error("transmitter authentication failed")]
    Unauthenticated,
    /// The request is not a `POST` of `application/secevent+jwt`.
    #[error("expected a POST of application/secevent+jwt")]
    MediaType,
    /// The body is not a well-formed compact JWS with JSON claims.
    #[error("the SET cannot be parsed: {0}")]
    Parse(#[source] ParseError),
    /// `iss` is missing or not the authenticated transmitter's issuer.
    #[error("`iss` is not this transmitter's issuer")]
    Issuer,
    /// The header breaks the policy other than by its algorithm (`typ`, `crit`, `jku`, ...).
    #[error("the SET header is refused: {0}")]
    Header(#[source] HeaderError),
    /// The algorithm is not on the allow-list (never `none` or HMAC).
    #[error("the algorithm is not allowed: {0}")]
    Algorithm(#[source] HeaderError),
    /// No key of the transmitter matches.
    #[error("no key of the transmitter matches: {0}")]
    Key(#[source] KeyLookupError),
    /// The transmitter's keys could not be obtained (answered 503 so it retries).
    #[error("the transmitter's keys are unavailable: {0}")]
    KeysUnavailable(#[source] KeyLookupError),
    /// The key cannot verify this algorithm.
    #[error("the key does not fit the SET: {0}")]
    KeyMismatch(#[source] VerifyError),
    /// The signature does not verify.
    #[error("the SET signature does not verify")]
    Signature,
    /// `aud` does not name this receiver.
    #[error("`aud` does not name this receiver")]
    Audience,
    /// The claims break RV-5.
    #[error(transparent)]
    Claims(#[from] SetClaimError),
    /// The subject lies outside the issuers and tenant this transmitter may affect (RV-7).
    #[error("the subject is outside this transmitter's authority")]
    OutsideAuthority,
    /// The event time lies more than 60 s ahead (RV-13).
    #[error("the event time lies in the future: {0}")]
    FutureEvent(#[source] RevokeError),
    /// The ledger could not be written (RV-14).
    #[error("the ledger is unavailable: {0}")]
    Ledger(#[source] RevokeError),
    /// The deduplication store is unreachable.
    #[error("deduplication is unavailable: {0}")]
    Replay(#[source] ReplayError),
}

impl SsfError {
    /// The RFC 8935 code, or `None` for a 401 or a 503.
    pub fn code(&self) -> Option<SetErrorCode> {
        match self {
            Self::Unauthenticated
            | Self::KeysUnavailable(_)
            | Self::Ledger(_)
            | Self::Replay(_) => None,
            Self::MediaType
            | Self::Parse(_)
            | Self::Header(_)
            | Self::Claims(_)
            | Self::FutureEvent(_) => Some(SetErrorCode::InvalidRequest),
            Self::Issuer => Some(SetErrorCode::InvalidIssuer),
            Self::Algorithm(_) | Self::Key(_) | Self::KeyMismatch(_) => {
                Some(SetErrorCode::InvalidKey)
            }
            Self::Signature => Some(SetErrorCode::AuthenticationFailed),
            Self::Audience => Some(SetErrorCode::InvalidAudience),
            Self::OutsideAuthority => Some(SetErrorCode::AccessDenied),
        }
    }

    /// The HTTP status: 401, 400 or 503.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::KeysUnavailable(_) | Self::Ledger(_) | Self::Replay(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A fixed description for the response body (never echoes the token).
    pub fn description(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "transmitter authentication failed",
            Self::MediaType => "expected a POST of application/secevent+jwt",
            Self::Parse(_) => "the SET cannot be parsed",
            Self::Issuer => "the issuer is not this transmitter's",
            Self::Header(_) => "the SET header is refused",
            Self::Algorithm(_) => "the algorithm is not allowed",
            Self::Key(_) | Self::KeyMismatch(_) => "no key of the transmitter verifies the SET",
            Self::KeysUnavailable(_) => "the transmitter's keys are unavailable; retry later",
            Self::Signature => "the SET signature does not verify",
            Self::Audience => "the audience is not this receiver",
            Self::Claims(_) => "the SET claims are invalid",
            Self::OutsideAuthority => "the subject is outside this transmitter's authority",
            Self::FutureEvent(_) => "the event time lies in the future",
            Self::Ledger(_) | Self::Replay(_) => "the receiver is unavailable; retry later",
        }
    }

    /// The response: `400 {"err", "description"}`, a bare 401 with `WWW-Authenticate`, or
    /// 503 with `Retry-After`.
    pub fn to_response(&self) -> Response<Vec<u8>> {
        let status = self.status();
        let body = match self.code() {
            Some(code) => {
                serde_json::json!({"err": code.as_str(), "description": self.description()})
            }
            None => serde_json::json!({"description": self.description()}),
        };
        let mut resp = Response::new(body.to_string().into_bytes());
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"ssf\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        resp
    }
}

/// A subject identifier (RFC 9493, SSF complex subjects), as far as this receiver reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectId {
    /// `iss_sub`, or a complex subject whose `user` is `iss_sub`, with its `tenant` if any.
    IssSub {
        /// The subject's issuer.
        iss: String,
        /// The subject.
        sub: String,
        /// The complex subject's tenant (`opaque` id).
        tenant: Option<String>,
    },
    /// `email`, or a complex subject whose `user` is `email`.
    Email {
        /// The address.
        email: String,
        /// The complex subject's tenant.
        tenant: Option<String>,
    },
    /// `opaque` (only used for stream verification, RV-9).
    Opaque {
        /// The identifier.
        id: String,
    },
    /// Any other format (not matched, RV-9).
    Other {
        /// The format name.
        format: String,
    },
}

impl SubjectId {
    /// Reads a `sub_id` member (RFC 9493 §3, SSF §3.2 complex subjects).
    ///
    /// # Errors
    ///
    /// [`SetClaimError::Subject`] when the value is not an object with a string `format`, or
    /// a known format lacks its members.
    pub fn from_json(value: &Value) -> Result<Self, SetClaimError> {
        Self::parse(value, true)
    }

    fn parse(value: &Value, complex_allowed: bool) -> Result<Self, SetClaimError> {
        let bad = |reason| SetClaimError::Subject { reason };
        let obj = value.as_object().ok_or(bad("not an object"))?;
        let format = obj
            .get("format")
            .and_then(Value::as_str)
            .ok_or(bad("`format` is missing"))?;
        let member = |name: &str, reason| {
            obj.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or(bad(reason))
        };
        Ok(match format {
            "iss_sub" => Self::IssSub {
                iss: member("iss", "`iss_sub` needs `iss`")?,
                sub: member("sub", "`iss_sub` needs `sub`")?,
                tenant: None,
            },
            "email" => Self::Email {
                email: member("email", "`email` needs `email`")?,
                tenant: None,
            },
            "opaque" => Self::Opaque {
                id: member("id", "`opaque` needs `id`")?,
            },
            "complex" if complex_allowed => {
                let tenant = match obj.get("tenant") {
                    None => None,
                    Some(t) => match Self::parse(t, false)? {
                        Self::Opaque { id } => Some(id),
                        _ => return Err(bad("`tenant` must be an `opaque` subject")),
                    },
                };
                // D-39: a session- or device-scoped subject revokes the whole user.
                match obj.get("user") {
                    None => Self::Other {
                        format: "complex".into(),
                    },
                    Some(user) => match Self::parse(user, false)? {
                        Self::IssSub { iss, sub, .. } => Self::IssSub { iss, sub, tenant },
                        Self::Email { email, .. } => Self::Email { email, tenant },
                        other => other,
                    },
                }
            }
            "complex" => return Err(bad("a complex subject cannot nest another")),
            other => Self::Other {
                format: other.to_owned(),
            },
        })
    }
}

/// How a transmitter's subjects are matched to IdP subjects (RV-9).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectMatching {
    /// `iss_sub` (alone or as a complex `user`) only: the default.
    #[default]
    IssSub,
    /// `iss_sub`, and `email` through this table of verified, unique addresses (compared
    /// case-insensitively) to the IdP `sub` under the transmitter's first subject issuer.
    IssSubOrEmail(BTreeMap<String, String>),
}

/// The trust entry of one SSF transmitter.
///
/// ```
/// use ema_grant::ssf::TransmitterTrust;
/// use ema_jose::{Algorithm, JwkSet, SigningKey};
///
/// let key = SigningKey::generate(Algorithm::ES256, Some("set-1".into()))?;
/// let trust = TransmitterTrust::new(
///     "https://idp.acme.example",
///     JwkSet::from_keys([key.verifying_key().clone()]),
///     "Bearer 2b9d6c5e",
///     "https://auth.tasks.example/ssf/events",
/// )
/// .with_tenant("acme");
/// assert_eq!(trust.issuer(), "https://idp.acme.example");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TransmitterTrust {
    issuer: String,
    keys: DynKeySource,
    algorithms: AlgorithmSet,
    authorization: [u8; 32],
    audience: String,
    subject_issuers: Vec<String>,
    tenant: Option<String>,
    matching: SubjectMatching,
    /// RV-21: the `aud` of the signed JWTs this transmitter may authenticate with at the GTR
    /// endpoint ([`TransmitterTrust::with_gtr_jwt`]); `None`: its static value only.
    gtr_jwt_audience: Option<String>,
    verification: Option<VerificationPolicy>,
}

impl std::fmt::Debug for TransmitterTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransmitterTrust")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("subject_issuers", &self.subject_issuers)
            .field("tenant", &self.tenant)
            .field("gtr_jwt_audience", &self.gtr_jwt_audience)
            .finish_non_exhaustive()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl TransmitterTrust {
    /// A transmitter with issuer `issuer` and key set `keys`, presenting the `Authorization`
    /// header value `authorization` (e.g. `Bearer ...`, compared whole), and addressing SETs
    /// to `audience` (our receiver id). Its subjects are those of `issuer` without a tenant;
    /// the algorithms RS256, PS256, ES256 and EdDSA (RV-5).
    pub fn new(
        issuer: impl Into<String>,
        keys: JwkSet,
        authorization: &str,
        audience: impl Into<String>,
    ) -> Self {
        let issuer = issuer.into();
        let source = StaticKeySource::new().with_issuer(issuer.clone(), keys);
        Self::with_key_source(issuer, source, authorization, audience)
    }

    /// Like [`new`](Self::new) with keys from a [`KeySource`] (e.g. `ema-jwks`'s remote key
    /// sets), resolved under `issuer`.
    pub fn with_key_source(
        issuer: impl Into<String>,
        keys: impl KeySource + 'static,
        authorization: &str,
        audience: impl Into<String>,
    ) -> Self {
        let issuer = issuer.into();
        Self {
            subject_issuers: vec![issuer.clone()],
            issuer,
            keys: DynKeySource::new(keys),
            algorithms: AlgorithmSet::DEFAULT,
            authorization: sha256(authorization.as_bytes()),
            audience: audience.into(),
            tenant: None,
            matching: SubjectMatching::IssSub,
            gtr_jwt_audience: None,
            verification: None,
        }
    }

    /// Asks this transmitter for stream verification on `policy`'s schedule (RV-26): only a
    /// verification event answering such a request marks its channel verified (RV-24).
    /// Without it, its verification events have no effect.
    #[must_use]
    pub fn with_verification(mut self, policy: VerificationPolicy) -> Self {
        self.verification = Some(policy);
        self
    }

    /// The verification schedule, if any.
    pub fn verification(&self) -> Option<VerificationPolicy> {
        self.verification
    }

    /// The IdP issuers whose subjects this transmitter may affect.
    pub fn subject_issuers(&self) -> &[String] {
        &self.subject_issuers
    }

    /// The IdP issuers whose subjects this transmitter may affect (default: its own issuer),
    /// RV-7.
    #[must_use]
    pub fn with_subject_issuers(mut self, issuers: impl IntoIterator<Item = String>) -> Self {
        self.subject_issuers = issuers.into_iter().collect();
        self
    }

    /// The tenant this transmitter speaks for (RV-7): complex subjects must carry it, and the
    /// watermarks are written under it (as the ID-JAGs of this tenant carry it, D-14).
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The accepted algorithms (default RS256, PS256, ES256, EdDSA; `none` and HMAC cannot be
    /// named).
    #[must_use]
    pub fn with_algorithms(mut self, algorithms: AlgorithmSet) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// How subjects are matched (RV-9).
    #[must_use]
    pub fn with_matching(mut self, matching: SubjectMatching) -> Self {
        self.matching = match matching {
            SubjectMatching::IssSubOrEmail(table) => SubjectMatching::IssSubOrEmail(
                table
                    .into_iter()
                    .map(|(email, sub)| (email.to_ascii_lowercase(), sub))
                    .collect(),
            ),
            other => other,
        };
        self
    }

    /// The transmitter's issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience its SETs must carry.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Whether `authorization` is this transmitter's value (constant time).
    fn authenticates(&self, presented: &[u8; 32]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(presented, &self.authorization).is_ok()
    }

    /// Maps a subject to the IdP subject it revokes: `Ok(None)` when nothing matches (RV-9),
    /// [`SsfError::OutsideAuthority`] outside the transmitter's issuers or tenant (RV-7).
    ///
    /// # Errors
    ///
    /// [`SsfError::OutsideAuthority`].
    pub fn resolve(
        &self,
        subject: &SubjectId,
    ) -> Result<Option<(RevocationScope, String)>, SsfError> {
        let (iss, sub, tenant) = match subject {
            SubjectId::IssSub { iss, sub, tenant } => (iss.clone(), sub.clone(), tenant),
            SubjectId::Email { email, tenant } => {
                let SubjectMatching::IssSubOrEmail(table) = &self.matching else {
                    return Ok(None);
                };
                let Some(iss) = self.subject_issuers.first() else {
                    return Ok(None);
                };
                // The tenant is checked before the lookup, so a foreign tenant is refused
                // whether or not the address is known.
                self.tenant_scope(tenant)?;
                match table.get(&email.to_ascii_lowercase()) {
                    Some(sub) => (iss.clone(), sub.clone(), tenant),
                    None => return Ok(None),
                }
            }
            SubjectId::Opaque { .. } | SubjectId::Other { .. } => return Ok(None),
        };
        if !self.subject_issuers.contains(&iss) {
            return Err(SsfError::OutsideAuthority);
        }
        let tenant = self.tenant_scope(tenant)?;
        Ok(Some((RevocationScope::idp(iss, tenant.as_deref()), sub)))
    }

    fn tenant_scope(&self, tenant: &Option<String>) -> Result<Option<String>, SsfError> {
        match (&self.tenant, tenant) {
            (None, None) => Ok(None),
            (Some(ours), None) => Ok(Some(ours.clone())),
            (Some(ours), Some(theirs)) if ours == theirs => Ok(Some(ours.clone())),
            _ => Err(SsfError::OutsideAuthority),
        }
    }
}

/// What the default event policy does with an event (RV-10).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventAction {
    /// Revoke, disable or enable the subject.
    Revoke(RevokeAction),
    /// An SSF verification event, echoing `state` (RV-26).
    Verification {
        /// The `state` member, if any.
        state: Option<String>,
    },
    /// An SSF `stream-updated` event: the stream's new status (RV-26).
    StreamUpdated {
        /// The `status` member.
        status: StreamStatus,
    },
    /// Accepted, logged, no action (unknown or unrequested types, RV-10).
    Ignore,
}

/// The default event policy of REVOCATION 2.5 for `event_type` with payload `payload` (RV-10).
///
/// # Errors
///
/// [`SetClaimError::EventMember`] for a CAEP `credential-change` without a known `change_type`.
pub fn event_action(kind: &str, payload: &Value) -> Result<EventAction, SetClaimError> {
    use crate::ssf::event_type as t;
    let revoke = |kind| Ok(EventAction::Revoke(RevokeAction::for_kind(kind)));
    match kind {
        t::SESSION_REVOKED | t::RISC_SESSIONS_REVOKED => revoke(RevocationKind::SessionRevoked),
        t::CREDENTIAL_CHANGE => {
            let member = |name| payload.get(name).and_then(Value::as_str);
            let change = member("change_type").ok_or(SetClaimError::EventMember {
                member: "change_type",
            })?;
            let credential = member("credential_type").unwrap_or_default();
            match change {
                "revoke" | "delete" => revoke(RevocationKind::CredentialChange),
                "update" if matches!(credential, "password" | "pin") => {
                    revoke(RevocationKind::CredentialChange)
                }
                "create" | "update" => Ok(EventAction::Ignore),
                _ => Err(SetClaimError::EventMember {
                    member: "change_type",
                }),
            }
        }
        t::ACCOUNT_DISABLED => revoke(RevocationKind::AccountDisabled),
        t::ACCOUNT_PURGED => revoke(RevocationKind::AccountPurged),
        t::ACCOUNT_ENABLED => Ok(EventAction::Revoke(RevokeAction::Enable)),
        t::CREDENTIAL_COMPROMISE | t::ACCOUNT_CREDENTIAL_CHANGE_REQUIRED => {
            revoke(RevocationKind::CredentialCompromise)
        }
        // REVOCATION 2.5: the policy inputs changed; tokens minted from them end.
        t::TOKEN_CLAIMS_CHANGE => revoke(RevocationKind::TokenClaimsChange),
        // REVOCATION 2.5: watermark, and the mapping to local subjects is dropped
        // (`Revoker::apply`), so the recycled identifier's next owner starts clean.
        t::IDENTIFIER_RECYCLED => revoke(RevocationKind::IdentifierRecycled),
        t::STREAM_UPDATED => payload
            .get("status")
            .and_then(Value::as_str)
            .and_then(StreamStatus::parse)
            .map(|status| EventAction::StreamUpdated { status })
            .ok_or(SetClaimError::EventMember { member: "status" }),
        t::VERIFICATION => Ok(EventAction::Verification {
            state: payload
                .get("state")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }),
        _ => Ok(EventAction::Ignore),
    }
}

/// What a SET that was accepted (202) did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetOutcome {
    /// The ledger holds these changes.
    Applied(Vec<LedgerChange>),
    /// The subject matched nothing (RV-9): no effect.
    NoMatch,
    /// The event type has no action (RV-10).
    Ignored,
    /// A verification event answering this receiver's request (RV-26): the channel is
    /// verified.
    Verified {
        /// Its `state`.
        state: Option<String>,
    },
    /// A verification event answering no outstanding request (RV-26): no effect.
    VerificationUnmatched {
        /// Its `state`.
        state: Option<String>,
    },
    /// A `stream-updated` event (RV-26): the stream's status, and the channel's health change
    /// (an alert when paused or disabled).
    StreamUpdated {
        /// The new status.
        status: StreamStatus,
        /// The health change, if the health changed.
        change: Option<HealthChange>,
    },
    /// The (`iss`, `jti`) was received before (RV-8): no second effect.
    Duplicate,
}

impl SetOutcome {
    /// A short name for the audit trail: `applied`, `no_match`, `ignored`, `verified`,
    /// `verification_unmatched`, `stream_<status>`, `duplicate`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Applied(_) => "applied",
            Self::NoMatch => "no_match",
            Self::Ignored => "ignored",
            Self::Verified { .. } => "verified",
            Self::VerificationUnmatched { .. } => "verification_unmatched",
            Self::StreamUpdated { status, .. } => match status {
                StreamStatus::Enabled => "stream_enabled",
                StreamStatus::Paused => "stream_paused",
                StreamStatus::Disabled => "stream_disabled",
            },
            Self::Duplicate => "duplicate",
        }
    }
}

/// What the receiver learned of a pushed SET, attached to every response after transmitter
/// authentication as an extension, for the audit trail (RV-29). Identifiers only.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetReceipt {
    /// The authenticated transmitter's issuer.
    pub transmitter: String,
    /// The SET's `jti`, once read.
    pub jti: Option<String>,
    /// The event type, once read.
    pub event_type: Option<String>,
    /// The IdP subject it names, once resolved.
    pub subject: Option<String>,
    /// The outcome: `Ok` for 202, else the refusal.
    pub outcome: Result<SetOutcome, SsfError>,
}

impl SetReceipt {
    /// `accepted:<outcome>` or `refused:<code>` (or `unavailable`), for the trail.
    pub fn outcome_name(&self) -> String {
        match &self.outcome {
            Ok(o) => format!("accepted:{}", o.as_str()),
            Err(e) => match e.code() {
                Some(code) => format!("refused:{code}"),
                None => "unavailable".into(),
            },
        }
    }
}

/// The SSF push receiver of an authorization server (RV-4..RV-10, RV-13).
///
/// ```
/// use ema_grant::revocation::{LedgerVerdict, MemoryLedger};
/// use ema_grant::ssf::{SsfReceiver, TransmitterTrust, SECEVENT_CONTENT_TYPE, SECEVENT_TYP};
/// use ema_grant::{InMemoryReplayStore, Revoker};
/// use ema_jose::{Algorithm, JwkSet, SigningKey, UnixTime};
///
/// let idp = "https://idp.acme.example";
/// let aud = "https://auth.tasks.example/ssf/events";
/// let key = SigningKey::generate(Algorithm::ES256, Some("set-1".into()))?;
/// let revoker = Revoker::new(MemoryLedger::new(), "https://auth.tasks.example");
/// let receiver = SsfReceiver::new(revoker.clone(), InMemoryReplayStore::new(1000)).transmitter(
///     TransmitterTrust::new(idp, JwkSet::from_keys([key.verifying_key().clone()]), "Bearer t0k", aud),
/// );
/// let now = UnixTime::from_secs(1_767_229_000);
/// let set = key.sign_jwt(Some(SECEVENT_TYP), &serde_json::json!({
///     "iss": idp, "aud": aud, "jti": "5c1d", "iat": now.as_secs(),
///     "sub_id": {"format": "iss_sub", "iss": idp, "sub": "00u8k2Lq91"},
///     "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked":
///         {"event_timestamp": now.as_secs() - 10}},
/// }))?;
/// let request = http::Request::post(aud)
///     .header("authorization", "Bearer t0k")
///     .header("content-type", SECEVENT_CONTENT_TYPE)
///     .body(set.into_bytes())?;
/// let response = pollster::block_on(receiver.handle(&request, now));
/// assert_eq!(response.status(), 202);
/// // ID-JAGs issued at or before the event are now refused (RV-11).
/// let verdict = pollster::block_on(revoker.check_id_jag(idp, None, "00u8k2Lq91", now.minus(10)))?;
/// assert!(matches!(verdict, LedgerVerdict::Revoked(_)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SsfReceiver {
    transmitters: Arc<[TransmitterTrust]>,
    revoker: Revoker,
    replay: DynReplayStore,
    options: ParseOptions,
    /// The stream health of every transmitter (RV-26).
    health: StreamHealth,
}

impl SsfReceiver {
    /// A receiver applying commands through `revoker` and deduplicating through `replay`
    /// (share the server's replay store: on Redis, redeliveries to other instances are
    /// deduplicated too). No transmitter yet.
    pub fn new(revoker: Revoker, replay: impl ReplayStore + 'static) -> Self {
        Self::with_dyn_replay(revoker, DynReplayStore::new(replay))
    }

    /// [`new`](Self::new) with a replay store already erased (shared with the grant).
    pub fn with_dyn_replay(revoker: Revoker, replay: DynReplayStore) -> Self {
        Self {
            transmitters: Arc::from(Vec::new()),
            health: StreamHealth::new(revoker.clone()),
            revoker,
            replay,
            options: ParseOptions::new().with_max_len(MAX_SET_LEN),
        }
    }

    /// Adds a transmitter, tracked by the [`health`](Self::health) tracker (asked for
    /// verification when it has a [`VerificationPolicy`]).
    #[must_use]
    pub fn transmitter(self, trust: TransmitterTrust) -> Self {
        self.health.track(
            &trust.issuer,
            trust.subject_issuers.iter().cloned(),
            trust.verification,
        );
        let mut all: Vec<TransmitterTrust> = self.transmitters.iter().cloned().collect();
        all.push(trust);
        Self {
            transmitters: Arc::from(all),
            ..self
        }
    }

    /// The configured transmitters.
    pub fn transmitters(&self) -> &[TransmitterTrust] {
        &self.transmitters
    }

    /// The revoker.
    pub fn revoker(&self) -> &Revoker {
        &self.revoker
    }

    /// When this receiver last accepted an SSF verification event answering its request from
    /// the transmitter `issuer` (RV-26); `None` before the first, and again once the stream
    /// is paused or disabled. Clones share the record.
    pub fn last_verification(&self, issuer: &str) -> Option<UnixTime> {
        self.health.last_verified(issuer)
    }

    /// The stream-health tracker (RV-26): the server ticks it and sends the verification
    /// requests it asks for. Clones share the state.
    pub fn health(&self) -> &StreamHealth {
        &self.health
    }

    /// The transmitter whose `Authorization` value is `presented` (every entry compared in
    /// constant time), D-37.
    ///
    /// # Errors
    ///
    /// [`SsfError::Unauthenticated`].
    pub fn authenticate(&self, presented: Option<&[u8]>) -> Result<&TransmitterTrust, SsfError> {
        let digest = sha256(presented.unwrap_or_default());
        let mut found = None;
        for t in self.transmitters.iter() {
            if t.authenticates(&digest) && found.is_none() {
                found = Some(t);
            }
        }
        found.ok_or(SsfError::Unauthenticated)
    }

    /// Handles one push (RFC 8935): `202` with no body once the ledger holds the change,
    /// `400 {"err", "description"}`, `401` for a transmitter that does not authenticate (before
    /// the body is looked at, D-37), `503` while the ledger, the deduplication store or the
    /// transmitter's keys are unreachable (the transmitter retries). Every response after
    /// authentication carries a [`SetReceipt`] extension.
    pub async fn handle<B: AsRef<[u8]>>(
        &self,
        req: &http::Request<B>,
        now: UnixTime,
    ) -> Response<Vec<u8>> {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        let transmitter = match self.authenticate(presented) {
            Ok(t) => t,
            Err(e) => return e.to_response(),
        };
        let mut receipt = SetReceipt {
            transmitter: transmitter.issuer.clone(),
            jti: None,
            event_type: None,
            subject: None,
            outcome: Err(SsfError::MediaType),
        };
        let result = if is_secevent(req) {
            match std::str::from_utf8(req.body().as_ref()) {
                Ok(set) => {
                    self.receive(transmitter, set.trim(), now, &mut receipt)
                        .await
                }
                Err(_) => Err(SsfError::Claims(SetClaimError::Missing { claim: "body" })),
            }
        } else {
            Err(SsfError::MediaType)
        };
        let mut response = match &result {
            Ok(_) => {
                let mut resp = Response::new(Vec::new());
                *resp.status_mut() = StatusCode::ACCEPTED;
                resp
            }
            Err(e) => e.to_response(),
        };
        receipt.outcome = result;
        response.extensions_mut().insert(receipt);
        response
    }

    /// Validates and applies one SET from an authenticated `transmitter`, filling `receipt`
    /// as it learns.
    ///
    /// # Errors
    ///
    /// [`SsfError`] per RV-6.
    pub async fn receive(
        &self,
        transmitter: &TransmitterTrust,
        set: &str,
        now: UnixTime,
        receipt: &mut SetReceipt,
    ) -> Result<SetOutcome, SsfError> {
        let jwt = UnverifiedJwt::parse(set, &self.options).map_err(SsfError::Parse)?;
        // RV-5: the key comes only from the configured transmitter whose issuer this is.
        match jwt.unverified_claims().string("iss") {
            Ok(Some(iss)) if iss == transmitter.issuer => {}
            _ => return Err(SsfError::Issuer),
        }
        let policy = HeaderPolicy::custom(TypRule::Required(SECEVENT_TYP), transmitter.algorithms);
        let alg = policy.check(jwt.header()).map_err(|e| match e {
            HeaderError::UnsupportedAlgorithm { .. } | HeaderError::AlgorithmNotAllowed { .. } => {
                SsfError::Algorithm(e)
            }
            other => SsfError::Header(other),
        })?;
        let key = transmitter
            .keys
            .resolve(&transmitter.issuer, jwt.header().kid(), alg)
            .await
            .map_err(|e| {
                if e.is_unavailable() {
                    SsfError::KeysUnavailable(e)
                } else {
                    SsfError::Key(e)
                }
            })?;
        let verified = jwt.verify(&policy, &key).map_err(|e| match e {
            VerifyError::BadSignature => SsfError::Signature,
            VerifyError::Header(h) => SsfError::Header(h),
            other => SsfError::KeyMismatch(other),
        })?;
        let claims = verified.claims();
        claims
            .check_audience(&transmitter.audience, AudienceRule::AnyOf)
            .map_err(|_| SsfError::Audience)?;
        let set_claims = SetClaims::read(claims)?;
        let set = &set_claims;
        receipt.jti = Some(set.jti.to_owned());
        receipt.event_type = Some(set.event_type.to_owned());
        let subject = SubjectId::from_json(set.sub_id)?;
        let resolved = transmitter.resolve(&subject)?;
        if let Some((_, sub)) = &resolved {
            receipt.subject = Some(sub.clone());
        }
        let action = event_action(set.event_type, set.payload)?;
        let event_time = match set.payload.get("event_timestamp") {
            None => set.iat,
            Some(v) => ema_jose::numeric_date("event_timestamp", v).map_err(|_| {
                SetClaimError::EventMember {
                    member: "event_timestamp",
                }
            })?,
        };
        // RV-13 also for SETs that change nothing: a future event is a malformed SET.
        if event_time > now.plus(crate::revoke::MAX_FUTURE_SKEW) {
            return Err(SsfError::FutureEvent(RevokeError::FutureEvent {
                at: event_time.as_secs(),
                now: now.as_secs(),
            }));
        }
        // RV-8: every valid SET is remembered for seven days, across instances on Redis.
        let key = ReplayKey {
            kind: ReplayKind::SecurityEvent,
            issuer: &transmitter.issuer,
            jti: set.jti,
        };
        match self
            .replay
            .check_and_insert(key, now.plus(DEDUP_WINDOW_SECS), now)
            .await
            .map_err(SsfError::Replay)?
        {
            Seen::Again => return Ok(SetOutcome::Duplicate),
            Seen::First => {}
        }
        let outcome = match (action, resolved) {
            (EventAction::Ignore, _) => SetOutcome::Ignored,
            (EventAction::Verification { state }, _) => {
                // RV-26: only the answer to our own request verifies the stream; then the
                // IdPs this transmitter speaks for have a verified channel (RV-24).
                match self
                    .health
                    .verification(&transmitter.issuer, state.as_deref(), now)
                {
                    VerificationMatch::Matched => SetOutcome::Verified { state },
                    VerificationMatch::Unmatched => SetOutcome::VerificationUnmatched { state },
                }
            }
            (EventAction::StreamUpdated { status }, _) => {
                // RV-26: paused or disabled drops the channel to RV-24's 300 s at once.
                let change = self.health.stream_updated(&transmitter.issuer, status, now);
                SetOutcome::StreamUpdated { status, change }
            }
            (EventAction::Revoke(_), None) => SetOutcome::NoMatch,
            (EventAction::Revoke(action), Some((scope, subject))) => {
                let cmd = Revoke {
                    scope,
                    subject,
                    at: event_time,
                    action,
                };
                match self.revoker.apply(&cmd, now).await {
                    Ok(changes) => SetOutcome::Applied(changes),
                    Err(e) => {
                        // The transmitter retries: the redelivery must not look like a
                        // duplicate.
                        // A failure to forget leaves the SET marked as received; the error
                        // answered is the ledger's all the same.
                        let _ = self.forget(&transmitter.issuer, set.jti).await;
                        return Err(match e {
                            RevokeError::Ledger(_) => SsfError::Ledger(e),
                            other => SsfError::FutureEvent(other),
                        });
                    }
                }
            }
        };
        Ok(outcome)
    }

    /// Forgets a received (`iss`, `jti`), so a redelivery is processed again: for a server
    /// that could not record the outcome (the audit trail, RV-29) and answers 503.
    ///
    /// # Errors
    ///
    /// The store's [`ReplayError`]: the SET stays marked as received.
    pub async fn forget(&self, issuer: &str, jti: &str) -> Result<(), ReplayError> {
        let key = ReplayKey {
            kind: ReplayKind::SecurityEvent,
            issuer,
            jti,
        };
        self.replay.forget(key).await
    }
}

/// The default path of the Global Token Revocation endpoint below the AS issuer.
pub const DEFAULT_GTR_PATH: &str = "/global-token-revocation";

/// A Global Token Revocation request body (draft-parecki-oauth-global-token-revocation).
#[derive(serde::Deserialize)]
struct GtrBody {
    sub_id: Value,
}

impl SsfReceiver {
    /// The Global Token Revocation endpoint (RV-21), sans-I/O: `POST` of JSON
    /// `{"sub_id": {...}}` with the `Authorization` value of a configured transmitter (one
    /// credential per trusted IdP, scoped like its SSF stream to its issuers and tenant, RV-7).
    ///
    /// Answers `204` once the subject's watermark (on this AS's clock: now) and its mapped
    /// local subjects' are written (the same [`Revoke`] as a CAEP `session-revoked`); `400`
    /// for a body that is not such JSON or a malformed subject; `401` for a caller that does
    /// not authenticate (before the body is read); `403` for a subject outside the caller's
    /// authority; `404` for an `email` subject naming no known user; `422` for a subject
    /// format this AS cannot map (`opaque`, unknown formats, `email` without a table); `503`
    /// while the ledger is unreachable. Every authenticated call carries a [`SetReceipt`].
    pub async fn handle_gtr<B: AsRef<[u8]>>(
        &self,
        req: &http::Request<B>,
        now: UnixTime,
    ) -> Response<Vec<u8>> {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        match self.authenticate_gtr(presented, now).await {
            Ok(caller) => self.handle_gtr_as(caller, req, now).await,
            Err(e) => gtr_unauthenticated(&e),
        }
    }

    /// [`handle_gtr`](Self::handle_gtr) for a caller already authenticated with
    /// [`authenticate_gtr`](Self::authenticate_gtr) (an HTTP adapter answers `401` before it
    /// reads the body, then hands the request over; a signed JWT's `jti` is consumed once).
    pub async fn handle_gtr_as<B: AsRef<[u8]>>(
        &self,
        caller: &TransmitterTrust,
        req: &http::Request<B>,
        now: UnixTime,
    ) -> Response<Vec<u8>> {
        let mut receipt = SetReceipt {
            transmitter: caller.issuer.clone(),
            jti: None,
            event_type: None,
            subject: None,
            outcome: Err(SsfError::MediaType),
        };
        let (status, result) = self.gtr(caller, req, now, &mut receipt).await;
        let mut response = match (&result, status) {
            (_, StatusCode::NO_CONTENT) => gtr_response(status, None),
            (Err(e), _) => gtr_response(status, Some((gtr_code(status), e.description()))),
            (Ok(_), StatusCode::NOT_FOUND) => {
                gtr_response(status, Some(("invalid_request", "no such user")))
            }
            (Ok(_), _) => gtr_response(
                status,
                Some((
                    "invalid_request",
                    "this subject identifier format cannot be mapped",
                )),
            ),
        };
        receipt.outcome = result;
        response.extensions_mut().insert(receipt);
        response
    }

    async fn gtr<B: AsRef<[u8]>>(
        &self,
        caller: &TransmitterTrust,
        req: &http::Request<B>,
        now: UnixTime,
        receipt: &mut SetReceipt,
    ) -> (StatusCode, Result<SetOutcome, SsfError>) {
        let json = req.method() == http::Method::POST
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return (StatusCode::BAD_REQUEST, Err(SsfError::MediaType));
        }
        let subject = match serde_json::from_slice::<GtrBody>(req.body().as_ref())
            .map_err(|_| SetClaimError::Missing { claim: "sub_id" })
            .and_then(|body| SubjectId::from_json(&body.sub_id))
        {
            Ok(subject) => subject,
            Err(e) => return (StatusCode::BAD_REQUEST, Err(SsfError::Claims(e))),
        };
        let resolved = match caller.resolve(&subject) {
            Ok(r) => r,
            Err(e) => return (StatusCode::FORBIDDEN, Err(e)),
        };
        let Some((scope, subject_id)) = resolved else {
            let mappable_email = matches!(subject, SubjectId::Email { .. })
                && matches!(caller.matching, SubjectMatching::IssSubOrEmail(_));
            let status = if mappable_email {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            return (status, Ok(SetOutcome::NoMatch));
        };
        receipt.subject = Some(subject_id.clone());
        let cmd = Revoke {
            scope,
            subject: subject_id,
            at: now,
            action: RevokeAction::Revoke(RevocationKind::SessionRevoked),
        };
        match self.revoker.apply(&cmd, now).await {
            Ok(changes) => (StatusCode::NO_CONTENT, Ok(SetOutcome::Applied(changes))),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Err(SsfError::Ledger(e))),
        }
    }
}

/// The answer to a GTR caller that did not authenticate: `401`, or `503` while the
/// transmitter's keys or the replay store are unreachable (RV-14: the caller retries).
pub fn gtr_unauthenticated(error: &SsfError) -> Response<Vec<u8>> {
    match error {
        SsfError::KeysUnavailable(_) | SsfError::Replay(_) => gtr_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(("temporarily_unavailable", error.description())),
        ),
        _ => gtr_response(
            StatusCode::UNAUTHORIZED,
            Some(("invalid_token", "authentication required")),
        ),
    }
}

fn gtr_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::FORBIDDEN => "access_denied",
        StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
        _ => "invalid_request",
    }
}

fn gtr_response(status: StatusCode, error: Option<(&str, &str)>) -> Response<Vec<u8>> {
    let body = error.map_or_else(Vec::new, |(code, description)| {
        serde_json::json!({"error": code, "error_description": description})
            .to_string()
            .into_bytes()
    });
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if error.is_some() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    match status {
        StatusCode::UNAUTHORIZED => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gtr\""),
            );
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        _ => {}
    }
    resp
}

fn is_secevent<B>(req: &http::Request<B>) -> bool {
    if req.method() != http::Method::POST {
        return false;
    }
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(SECEVENT_CONTENT_TYPE))
}

/// The claims of a SET after RV-5's presence rules.
struct SetClaims<'a> {
    jti: &'a str,
    iat: UnixTime,
    sub_id: &'a Value,
    event_type: &'a str,
    payload: &'a Value,
}

impl<'a> SetClaims<'a> {
    fn read(claims: &'a Claims) -> Result<Self, SetClaimError> {
        if claims.contains("sub") {
            return Err(SetClaimError::SubPresent);
        }
        if claims.contains("exp") {
            return Err(SetClaimError::ExpPresent);
        }
        let jti = claims
            .non_empty_string("jti")
            .map_err(|_| SetClaimError::Missing { claim: "jti" })?;
        let iat = claims
            .numeric_date("iat")
            .ok()
            .flatten()
            .ok_or(SetClaimError::Missing { claim: "iat" })?;
        let sub_id = claims
            .get("sub_id")
            .ok_or(SetClaimError::Missing { claim: "sub_id" })?;
        let events = claims
            .get("events")
            .and_then(Value::as_object)
            .ok_or(SetClaimError::Missing { claim: "events" })?;
        let mut iter = events.iter();
        let (Some((event_type, payload)), None) = (iter.next(), iter.next()) else {
            return Err(SetClaimError::EventCount {
                count: events.len(),
            });
        };
        if !payload.is_object() {
            return Err(SetClaimError::EventPayload);
        }
        Ok(Self {
            jti,
            iat,
            sub_id,
            event_type,
            payload,
        })
    }
}
