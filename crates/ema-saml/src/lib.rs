#![doc = include_str!("../README.md")]
//!
//! # What is refused
//!
//! Untrusted bytes become a [`SamlIdentity`] in one call, [`SamlAssertionValidator::validate`]
//! (or [`SamlAssertionValidator::validate_base64url`] for a `subject_token`), which numbers its
//! steps in its docs. What is refused, each with its own [`SamlError`] variant:
//!
//! - anything over the size cap (64 KiB by default) or nested deeper than the depth cap;
//! - document type declarations (so no entities: XXE and billion laughs cannot start), comments
//!   and processing instructions anywhere (the `NameID` comment-truncation attack);
//! - a root other than `saml:Assertion` with `Version="2.0"`; `EncryptedAssertion`,
//!   `EncryptedID` and `EncryptedAttribute` (decryption is not supported); nested assertions;
//!   duplicate `ID`s;
//! - an unsigned assertion, several signatures, a signature that is not a direct child of the
//!   root, a reference other than `"#" + ID` of the root, more than one reference, transforms
//!   other than enveloped-signature then exclusive C14N, `ds:Object` content;
//! - algorithms outside the allow-list: canonicalization exclusive C14N 1.0 without comments
//!   only, digest SHA-256 only, signature `rsa-sha256`, `rsa-sha512`, `ecdsa-sha256`,
//!   `ecdsa-sha384` only (SHA-1, HMAC, DSA, inclusive C14N are refused);
//! - an `Issuer` other than the configured entity id (exact, D-12); an `IssueInstant`,
//!   `NotBefore`, `NotOnOrAfter`, bearer `SubjectConfirmationData NotOnOrAfter` or
//!   `AuthnInstant` outside the window at the time passed in (with leeway), or a lifetime above
//!   the cap; an `AudienceRestriction` without an SP entity id mapped to the authenticated
//!   client (TX-4); a bearer `SubjectConfirmationData` without the configured `Recipient` (the
//!   token endpoint, RFC 7522 §3).
//!
//! Work is bounded before any signature is checked: a linear pre-scan refuses nesting beyond
//! the depth cap, more than [`MAX_ATTRIBUTES`] attributes on an element and more than
//! [`MAX_NAMESPACES`] namespace declarations in scope; the signature over the small
//! `SignedInfo` is verified before the assertion body is canonicalized and digested; an
//! `InclusiveNamespaces PrefixList` may list at most [`MAX_INCLUSIVE_PREFIXES`] prefixes, each
//! in scope; canonicalization is iterative, resolves prefixes through a per-element map and
//! stops at a multiple of the element's size. Every configuration value is safe (caps are
//! clamped to [`MAX_LEN`] and [`MAX_DEPTH`], time arithmetic saturates).
//!
//! Verification keys come from configuration only (`KeyInfo` is never read), and every value
//! returned is read from the element whose digest was checked, so signature-wrapping attacks
//! find nothing to wrap. [`SamlIdentity::to_claims`] presents the identity as a claim set with
//! `sub_id` in the `saml-nameid` format, so code written against ID tokens can use it.
//!
//! [`SamlAssertionSigner`] produces assertions the validator accepts, for a reference IdP and
//! for tests.

mod c14n;
mod dsig;
mod error;
mod prescan;
mod signer;
mod time;
mod validator;

pub use c14n::MAX_INCLUSIVE_PREFIXES;
pub use dsig::{
    DSIG_NS, ECDSA_SHA256, ECDSA_SHA384, ENVELOPED_SIGNATURE, EXC_C14N, RSA_SHA256, RSA_SHA512,
    SHA256,
};
pub use error::{SamlConfigError, SamlError};
pub use prescan::{MAX_ATTRIBUTES, MAX_NAMESPACES};
pub use signer::{AssertionTemplate, SamlAssertionSigner};
pub use validator::{
    AttributeNames, BEARER, DEFAULT_MAX_DEPTH, DEFAULT_MAX_LEN, MAX_DEPTH, MAX_LEEWAY, MAX_LEN,
    NameId, SAML_NS, SamlAssertionValidator, SamlIdentity,
};

/// `subject_token_type` of a SAML 2.0 assertion (RFC 8693 §3), defined in `ema_metadata::urn`.
pub use ema_metadata::urn::SAML2 as SAML2_TOKEN_TYPE;
