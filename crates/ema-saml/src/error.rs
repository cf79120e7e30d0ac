//! The one error type of this crate.

use ema_jose::UnixTime;

/// Why a SAML assertion was refused, or could not be signed.
///
/// Every variant means the assertion must not be trusted; at a token endpoint each one becomes
/// `invalid_grant` (D-1). No variant carries the assertion's subject or attribute values.
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
