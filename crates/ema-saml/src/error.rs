//! The one error type of this crate.

use ema_jose::UnixTime;
use ema_metadata::{ErrorCode, ToErrorCode};

/// Why a SAML assertion was refused, or could not be signed.
///
/// Every variant means the assertion must not be trusted; at a token endpoint each refusal
/// becomes `invalid_grant` (D-1) by [`ToErrorCode`], and [`SamlError::Signing`] (our own
/// failure to sign) `server_error`. No variant carries the assertion's subject or attribute values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SamlError {
    /// The input is larger than the configured cap.
    #[error("assertion is {len} bytes, at most {max} are accepted")]
    TooLarge {
        /// The input length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The subject token is not base64url (RFC 8693 §3).
    #[error("subject token is not base64url")]
    Base64,
    /// The input is not UTF-8.
    #[error("assertion is not UTF-8")]
    NotUtf8,
    /// The input is not well-formed namespace-aware XML.
    #[error("assertion is not well-formed XML: {reason}")]
    Xml {
        /// The parser's message (positions, never content of the document).
        reason: String,
    },
    /// The document has a document type declaration (entities, XXE, billion laughs).
    #[error("document type declarations are refused")]
    Dtd,
    /// Elements are nested deeper than the configured cap.
    #[error("elements nest deeper than {max} levels")]
    TooDeep {
        /// The cap.
        max: usize,
    },
    /// An element carries more attributes than [`MAX_ATTRIBUTES`](crate::MAX_ATTRIBUTES)
    /// (the parser compares each attribute with the others of its element).
    #[error("an element has more than {max} attributes")]
    TooManyAttributes {
        /// The limit.
        max: usize,
    },
    /// More namespace declarations are in scope at some element than
    /// [`MAX_NAMESPACES`](crate::MAX_NAMESPACES).
    #[error("more than {max} namespace declarations are in scope")]
    TooManyNamespaces {
        /// The limit.
        max: usize,
    },
    /// A comment or processing instruction appears in the document (the comment-truncation
    /// attack on `NameID` relies on them).
    #[error("comments and processing instructions are refused")]
    CommentOrProcessingInstruction,
    /// The root element is not `saml:Assertion`.
    #[error("the root element is not a SAML 2.0 `Assertion`")]
    NotAnAssertion,
    /// The assertion, an identifier or an attribute is encrypted; decryption is not supported.
    #[error("encrypted `{element}` is not supported")]
    Encrypted {
        /// The encrypted element's local name.
        element: &'static str,
    },
    /// `Version` is not `2.0`.
    #[error("assertion `Version` is not `2.0`")]
    WrongVersion,
    /// An assertion nested inside the signed one (in `Advice` or elsewhere).
    #[error("nested assertions are refused")]
    NestedAssertion,
    /// Two elements carry the same `ID`.
    #[error("an `ID` value is used twice")]
    DuplicateId,
    /// The assertion has no `ds:Signature`.
    #[error("the assertion is not signed")]
    Unsigned,
    /// The document has more than one `ds:Signature`.
    #[error("the document has more than one signature")]
    MultipleSignatures,
    /// The signature is not a direct child of the root assertion.
    #[error("the signature is not a direct child of the assertion")]
    SignatureMisplaced,
    /// The `ds:Signature` element does not have the expected structure.
    #[error("the signature is malformed: {reason}")]
    MalformedSignature {
        /// What is wrong.
        reason: &'static str,
    },
    /// `SignedInfo` has other than exactly one `Reference`.
    #[error("the signature has {count} references, expected exactly one")]
    ReferenceCount {
        /// How many it has.
        count: usize,
    },
    /// The reference does not point at the root assertion (`"#" + ID`).
    #[error("the signature reference does not name the assertion")]
    ReferenceMismatch,
    /// An algorithm outside the allow-list (SHA-1, HMAC, inclusive C14N, with-comments, ...).
    #[error("{kind} algorithm `{uri}` is not allowed")]
    UnsupportedAlgorithm {
        /// Which slot: `canonicalization`, `signature`, `digest` or `transform`.
        kind: &'static str,
        /// The algorithm URI found.
        uri: String,
    },
    /// An exclusive C14N `InclusiveNamespaces PrefixList` lists more prefixes than
    /// [`MAX_INCLUSIVE_PREFIXES`](crate::MAX_INCLUSIVE_PREFIXES).
    #[error("the inclusive namespace prefix list has {count} entries, at most {max} are accepted")]
    PrefixListTooLong {
        /// How many it lists.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An `InclusiveNamespaces PrefixList` names a prefix declared nowhere in the
    /// canonicalized subtree or its ancestors (`#default` is always accepted).
    #[error("the inclusive namespace prefix list names a prefix that is not in scope")]
    PrefixNotInScope,
    /// The canonical form of a signed element would be larger than the cap (a multiple of
    /// the element's own size).
    #[error("the canonical form exceeds {max} bytes")]
    CanonicalTooLarge {
        /// The cap.
        max: usize,
    },
    /// The digest of the assertion does not match `DigestValue`.
    #[error("the assertion digest does not match")]
    DigestMismatch,
    /// No configured key verifies the signature.
    #[error("the signature does not verify with any configured key")]
    BadSignature,
    /// `Issuer` is not the configured IdP entity id (exact comparison, D-12).
    #[error("`Issuer` is `{found}`, expected `{expected}`")]
    IssuerMismatch {
        /// The assertion's issuer.
        found: String,
        /// The configured issuer.
        expected: String,
    },
    /// A required element is absent.
    #[error("`{element}` is missing")]
    Missing {
        /// The element or attribute name.
        element: &'static str,
    },
    /// An element that may occur once occurs more often.
    #[error("`{element}` occurs more than once")]
    Duplicate {
        /// The element name.
        element: &'static str,
    },
    /// An element holds child elements or other content where only text is allowed.
    #[error("`{element}` has unexpected content")]
    UnexpectedContent {
        /// The element name.
        element: &'static str,
    },
    /// A date-time attribute is not a UTC `xs:dateTime`.
    #[error("`{attribute}` is not a UTC xs:dateTime")]
    BadDateTime {
        /// The attribute name.
        attribute: &'static str,
    },
    /// A `NotBefore` is in the future beyond the leeway.
    #[error("`{element}` is not valid before {not_before}, checked at {now}")]
    NotYetValid {
        /// Where the bound was read.
        element: &'static str,
        /// The bound.
        not_before: UnixTime,
        /// The time of the check.
        now: UnixTime,
    },
    /// A `NotOnOrAfter` (or `SessionNotOnOrAfter`) has passed beyond the leeway.
    #[error("`{element}` expired at {not_on_or_after}, checked at {now}")]
    Expired {
        /// Where the bound was read.
        element: &'static str,
        /// The bound.
        not_on_or_after: UnixTime,
        /// The time of the check.
        now: UnixTime,
    },
    /// `IssueInstant` is in the future beyond the leeway.
    #[error("issued at {issued}, in the future of {now}")]
    IssuedInFuture {
        /// `IssueInstant`.
        issued: UnixTime,
        /// The time of the check.
        now: UnixTime,
    },
    /// `NotOnOrAfter` is not after `IssueInstant`, or lies further after it than allowed.
    #[error("validity of {lifetime} s is empty or longer than {max} s")]
    BadLifetime {
        /// `NotOnOrAfter - IssueInstant` in seconds (0 when not after).
        lifetime: u64,
        /// The configured maximum.
        max: u64,
    },
    /// `AuthnInstant` is in the future beyond the leeway, or older than the maximum age.
    #[error("`AuthnInstant` {authn_instant} is unacceptable at {now}")]
    AuthnInstant {
        /// `AuthnInstant`.
        authn_instant: UnixTime,
        /// The time of the check.
        now: UnixTime,
    },
    /// No `SubjectConfirmation` with method bearer and a usable `SubjectConfirmationData`.
    #[error("no bearer subject confirmation")]
    NoBearerConfirmation,
    /// No bearer `SubjectConfirmationData` has a `Recipient` among the configured ones (the
    /// token endpoint; RFC 7522 §3, TX-4); also when no recipient is configured.
    #[error("the bearer confirmation is for another recipient")]
    RecipientMismatch,
    /// No `AudienceRestriction` names an SP entity id mapped to the authenticated client.
    #[error("the assertion audience is not mapped to client `{client_id}`")]
    AudienceMismatch {
        /// The authenticated client.
        client_id: String,
    },
    /// Signing failed (the key's algorithm has no XML-DSig counterpart, or crypto failed).
    #[error("the assertion could not be signed")]
    Signing,
}

impl ToErrorCode for SamlError {
    /// D-1: every way a subject assertion can be bad is `invalid_grant`; only a failure to sign
    /// one ourselves is `server_error`.
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Signing => ErrorCode::ServerError,
            Self::TooLarge { .. }
            | Self::Base64
            | Self::NotUtf8
            | Self::Xml { .. }
            | Self::Dtd
            | Self::TooDeep { .. }
            | Self::TooManyAttributes { .. }
            | Self::TooManyNamespaces { .. }
            | Self::CommentOrProcessingInstruction
            | Self::NotAnAssertion
            | Self::Encrypted { .. }
            | Self::WrongVersion
            | Self::NestedAssertion
            | Self::DuplicateId
            | Self::Unsigned
            | Self::MultipleSignatures
            | Self::SignatureMisplaced
            | Self::MalformedSignature { .. }
            | Self::ReferenceCount { .. }
            | Self::ReferenceMismatch
            | Self::UnsupportedAlgorithm { .. }
            | Self::PrefixListTooLong { .. }
            | Self::PrefixNotInScope
            | Self::CanonicalTooLarge { .. }
            | Self::DigestMismatch
            | Self::BadSignature
            | Self::IssuerMismatch { .. }
            | Self::Missing { .. }
            | Self::Duplicate { .. }
            | Self::UnexpectedContent { .. }
            | Self::BadDateTime { .. }
            | Self::NotYetValid { .. }
            | Self::Expired { .. }
            | Self::IssuedInFuture { .. }
            | Self::BadLifetime { .. }
            | Self::AuthnInstant { .. }
            | Self::NoBearerConfirmation
            | Self::RecipientMismatch
            | Self::AudienceMismatch { .. } => ErrorCode::InvalidGrant,
        }
    }

    /// The text a token endpoint sends for a SAML subject token (TX-3, TX-4).
    fn error_description(&self) -> &'static str {
        match self {
            Self::Expired { .. } => "subject token expired",
            Self::NotYetValid { .. } | Self::IssuedInFuture { .. } => {
                "subject token is not yet valid"
            }
            Self::AudienceMismatch { .. } => "subject token was not issued to this client",
            Self::IssuerMismatch { .. } => "subject token was not issued by this IdP",
            Self::Unsigned | Self::DigestMismatch | Self::BadSignature => {
                "subject token signature is invalid"
            }
            // TX-4 (RFC 7522 §3): the bearer confirmation names another endpoint.
            Self::RecipientMismatch
            | Self::Missing {
                element: "Recipient",
            } => "subject token is not for this token endpoint",
            Self::Signing => "the assertion could not be signed",
            Self::TooLarge { .. }
            | Self::Base64
            | Self::NotUtf8
            | Self::Xml { .. }
            | Self::Dtd
            | Self::TooDeep { .. }
            | Self::TooManyAttributes { .. }
            | Self::TooManyNamespaces { .. }
            | Self::CommentOrProcessingInstruction
            | Self::NotAnAssertion
            | Self::Encrypted { .. }
            | Self::WrongVersion
            | Self::NestedAssertion
            | Self::DuplicateId
            | Self::MultipleSignatures
            | Self::SignatureMisplaced
            | Self::MalformedSignature { .. }
            | Self::ReferenceCount { .. }
            | Self::ReferenceMismatch
            | Self::UnsupportedAlgorithm { .. }
            | Self::PrefixListTooLong { .. }
            | Self::PrefixNotInScope
            | Self::CanonicalTooLarge { .. }
            | Self::Missing { .. }
            | Self::Duplicate { .. }
            | Self::UnexpectedContent { .. }
            | Self::BadDateTime { .. }
            | Self::BadLifetime { .. }
            | Self::AuthnInstant { .. }
            | Self::NoBearerConfirmation => "subject token is not an acceptable SAML assertion",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// D-1: a table of every variant, constructed, with its code and text.
    #[test]
    fn d1_every_saml_refusal_is_invalid_grant() {
        let t = UnixTime::from_secs(1);
        let refused = |s: &'static str| (ErrorCode::InvalidGrant, s);
        let generic = refused("subject token is not an acceptable SAML assertion");
        let table: Vec<(SamlError, (ErrorCode, &str))> = vec![
            (SamlError::TooLarge { len: 2, max: 1 }, generic.clone()),
            (SamlError::Base64, generic.clone()),
            (SamlError::NotUtf8, generic.clone()),
            (SamlError::Xml { reason: "x".into() }, generic.clone()),
            (SamlError::Dtd, generic.clone()),
            (SamlError::TooDeep { max: 1 }, generic.clone()),
            (SamlError::TooManyAttributes { max: 1 }, generic.clone()),
            (SamlError::TooManyNamespaces { max: 1 }, generic.clone()),
            (SamlError::CommentOrProcessingInstruction, generic.clone()),
            (SamlError::NotAnAssertion, generic.clone()),
            (
                SamlError::Encrypted {
                    element: "Assertion",
                },
                generic.clone(),
            ),
            (SamlError::WrongVersion, generic.clone()),
            (SamlError::NestedAssertion, generic.clone()),
            (SamlError::DuplicateId, generic.clone()),
            (
                SamlError::Unsigned,
                refused("subject token signature is invalid"),
            ),
            (SamlError::MultipleSignatures, generic.clone()),
            (SamlError::SignatureMisplaced, generic.clone()),
            (
                SamlError::MalformedSignature { reason: "x" },
                generic.clone(),
            ),
            (SamlError::ReferenceCount { count: 2 }, generic.clone()),
            (SamlError::ReferenceMismatch, generic.clone()),
            (
                SamlError::UnsupportedAlgorithm {
                    kind: "digest",
                    uri: "sha1".into(),
                },
                generic.clone(),
            ),
            (
                SamlError::PrefixListTooLong { count: 2, max: 1 },
                generic.clone(),
            ),
            (SamlError::PrefixNotInScope, generic.clone()),
            (SamlError::CanonicalTooLarge { max: 1 }, generic.clone()),
            (
                SamlError::DigestMismatch,
                refused("subject token signature is invalid"),
            ),
            (
                SamlError::BadSignature,
                refused("subject token signature is invalid"),
            ),
            (
                SamlError::IssuerMismatch {
                    found: "a".into(),
                    expected: "b".into(),
                },
                refused("subject token was not issued by this IdP"),
            ),
            (SamlError::Missing { element: "Issuer" }, generic.clone()),
            (
                SamlError::Missing {
                    element: "Recipient",
                },
                refused("subject token is not for this token endpoint"),
            ),
            (SamlError::Duplicate { element: "Issuer" }, generic.clone()),
            (
                SamlError::UnexpectedContent { element: "Issuer" },
                generic.clone(),
            ),
            (
                SamlError::BadDateTime {
                    attribute: "IssueInstant",
                },
                generic.clone(),
            ),
            (
                SamlError::NotYetValid {
                    element: "Conditions",
                    not_before: t,
                    now: t,
                },
                refused("subject token is not yet valid"),
            ),
            (
                SamlError::Expired {
                    element: "Conditions",
                    not_on_or_after: t,
                    now: t,
                },
                refused("subject token expired"),
            ),
            (
                SamlError::IssuedInFuture { issued: t, now: t },
                refused("subject token is not yet valid"),
            ),
            (
                SamlError::BadLifetime {
                    lifetime: 0,
                    max: 1,
                },
                generic.clone(),
            ),
            (
                SamlError::AuthnInstant {
                    authn_instant: t,
                    now: t,
                },
                generic.clone(),
            ),
            (SamlError::NoBearerConfirmation, generic.clone()),
            (
                SamlError::RecipientMismatch,
                refused("subject token is not for this token endpoint"),
            ),
            (
                SamlError::AudienceMismatch {
                    client_id: "c".into(),
                },
                refused("subject token was not issued to this client"),
            ),
            (
                SamlError::Signing,
                (ErrorCode::ServerError, "the assertion could not be signed"),
            ),
        ];
        assert_eq!(table.len(), 41, "each variant once, `Missing` twice");
        for (error, (code, description)) in table {
            assert_eq!(error.error_code(), code, "{error:?}");
            assert_eq!(error.error_description(), description, "{error:?}");
        }
    }
}

/// What a [`SamlAssertionValidator`](crate::SamlAssertionValidator) lacks to accept any
/// assertion at all ([`check_config`](crate::SamlAssertionValidator::check_config)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SamlConfigError {
    /// No verification key: no signature could verify.
    #[error("the SAML validator has no verification key")]
    NoKeys,
    /// No SP entity id is mapped to a client: no `AudienceRestriction` could match (TX-4).
    #[error("the SAML validator maps no SP audience to a client")]
    NoAudiences,
    /// No accepted `Recipient`: no bearer confirmation could match (RFC 7522 §3).
    #[error("the SAML validator has no Recipient (the token endpoint URL)")]
    NoRecipient,
}
