//! [`SamlAssertionValidator`]: a signed SAML 2.0 assertion in, a [`SamlIdentity`] out (TX-3,
//! TX-4, D-12).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ema_jose::{Claims, UnixTime, VerifyingKey};
use roxmltree::{Document, Node, ParsingOptions};
use serde_json::{Map, Value};

use crate::dsig::{self, DSIG_NS};
use crate::error::{SamlConfigError, SamlError};
use crate::time;

/// The SAML 2.0 assertion namespace.
pub const SAML_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// `SubjectConfirmation Method` of a bearer assertion.
pub const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
/// The default size cap of a decoded assertion (64 KiB).
pub const DEFAULT_MAX_LEN: usize = 64 * 1024;
/// The largest size cap accepted (1 MiB); [`SamlAssertionValidator::with_max_len`] clamps to it.
pub const MAX_LEN: usize = 1024 * 1024;
/// The default element nesting cap.
pub const DEFAULT_MAX_DEPTH: usize = 32;
/// The largest nesting cap accepted; [`SamlAssertionValidator::with_max_depth`] clamps to it.
/// Every walk over the document is iterative, so this bounds memory and work, not stack.
pub const MAX_DEPTH: usize = 256;
/// The largest leeway accepted (D-7).
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// base64url, padding tolerated but not required, canonical trailing bits (RFC 8693 §3).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Where claims come from among the assertion's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttributeNames {
    /// The attribute whose first value becomes `email`.
    pub email: Option<String>,
    /// The attribute whose values become `groups`.
    pub groups: Option<String>,
    /// The attribute whose first value becomes `tenant`.
    pub tenant: Option<String>,
}

impl AttributeNames {
    /// No attribute mapped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `email` from the first value of `name`.
    #[must_use]
    pub fn with_email(mut self, name: impl Into<String>) -> Self {
        self.email = Some(name.into());
        self
    }

    /// Maps `groups` from the values of `name`.
    #[must_use]
    pub fn with_groups(mut self, name: impl Into<String>) -> Self {
        self.groups = Some(name.into());
        self
    }

    /// Maps `tenant` from the first value of `name`.
    #[must_use]
    pub fn with_tenant(mut self, name: impl Into<String>) -> Self {
        self.tenant = Some(name.into());
        self
    }
}

/// Validates signed SAML 2.0 assertions from one IdP (TX-3, TX-4).
///
/// Configuration: the IdP's entity id (the expected `Issuer`), its verification keys, which SP
/// entity ids (SAML `Audience` values) belong to which client, the bearer confirmation's
/// expected `Recipient` (the token endpoint; required, no assertion is accepted without one),
/// clock leeway (default 30 s, at most 60 s), the longest accepted
/// `NotOnOrAfter - IssueInstant` (default 3600 s), an optional maximum age of `AuthnInstant`,
/// a size cap (default 64 KiB, at most [`MAX_LEN`]) and a depth cap (default 32, at most
/// [`MAX_DEPTH`]). Every value of every knob is safe: extreme ones are clamped or make every
/// assertion fail its check, none overflows or panics.
#[derive(Debug, Clone)]
pub struct SamlAssertionValidator {
    issuer: String,
    keys: Vec<Arc<VerifyingKey>>,
    audiences: HashMap<String, String>,
    recipients: Vec<String>,
    leeway: Duration,
    max_lifetime: Duration,
    max_auth_age: Option<Duration>,
    max_len: usize,
    max_depth: usize,
    names: AttributeNames,
}

impl SamlAssertionValidator {
    /// A validator for assertions issued by `issuer` (the IdP's entity id), with no keys and no
    /// audiences yet.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            keys: Vec::new(),
            audiences: HashMap::new(),
            recipients: Vec::new(),
            leeway: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(3600),
            max_auth_age: None,
            max_len: DEFAULT_MAX_LEN,
            max_depth: DEFAULT_MAX_DEPTH,
            names: AttributeNames::default(),
        }
    }

    /// Adds a verification key (RSA for `rsa-sha256`/`rsa-sha512`, EC P-256/P-384 for
    /// `ecdsa-sha256`/`ecdsa-sha384`).
    #[must_use]
    pub fn with_key(mut self, key: Arc<VerifyingKey>) -> Self {
        self.keys.push(key);
        self
    }

    /// Maps an SP entity id (an `Audience` value) to the client id it stands for.
    #[must_use]
    pub fn with_audience(
        mut self,
        sp_entity_id: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        self.audiences.insert(sp_entity_id.into(), client_id.into());
        self
    }

    /// Adds an accepted `Recipient` of the bearer `SubjectConfirmationData`: the URL of the
    /// token endpoint the assertion is presented at, or an alias of it (RFC 7522 §3; TX-4).
    /// Compared exactly. Without any, every assertion is refused
    /// ([`SamlError::RecipientMismatch`]).
    #[must_use]
    pub fn with_recipient(mut self, recipient: impl Into<String>) -> Self {
        self.recipients.push(recipient.into());
        self
    }

    /// Sets the clock leeway; values above [`MAX_LEEWAY`] are clamped to it (D-7).
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(MAX_LEEWAY);
        self
    }

    /// Sets the longest accepted `NotOnOrAfter - IssueInstant` (whole seconds; zero refuses
    /// every assertion, [`Duration::MAX`] lifts the cap).
    #[must_use]
    pub fn with_max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Refuses assertions whose `AuthnInstant` is older than `max` (no limit by default;
    /// [`Duration::MAX`] is as good as none).
    #[must_use]
    pub fn with_max_auth_age(mut self, max: Option<Duration>) -> Self {
        self.max_auth_age = max;
        self
    }

    /// Sets the size cap of the decoded assertion; values above [`MAX_LEN`] are clamped to it
    /// (zero refuses everything).
    #[must_use]
    pub fn with_max_len(mut self, max: usize) -> Self {
        self.max_len = max.min(MAX_LEN);
        self
    }

    /// Sets the element nesting cap (the root is level 1); values above [`MAX_DEPTH`] are
    /// clamped to it (zero refuses everything).
    #[must_use]
    pub fn with_max_depth(mut self, max: usize) -> Self {
        self.max_depth = max.min(MAX_DEPTH);
        self
    }

    /// Names the attributes that become `email`, `groups` and `tenant`.
    #[must_use]
    pub fn with_attribute_names(mut self, names: AttributeNames) -> Self {
        self.names = names;
        self
    }

    /// The expected issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Checks that this validator could accept an assertion at all: it has a verification
    /// key, an SP audience mapped to a client, and a `Recipient`. Without any of them every
    /// assertion would be refused, so a token endpoint checks this once at start-up (TX-3,
    /// TX-4) rather than failing every request.
    ///
    /// ```
    /// use ema_saml::{SamlAssertionValidator, SamlConfigError};
    ///
    /// let partial = SamlAssertionValidator::new("https://idp.example/saml")
    ///     .with_audience("https://desk.example/sp", "desk-01");
    /// assert_eq!(partial.check_config(), Err(SamlConfigError::NoKeys));
    /// ```
    pub fn check_config(&self) -> Result<(), SamlConfigError> {
        if self.keys.is_empty() {
            Err(SamlConfigError::NoKeys)
        } else if self.audiences.is_empty() {
            Err(SamlConfigError::NoAudiences)
        } else if self.recipients.is_empty() {
            Err(SamlConfigError::NoRecipient)
        } else {
            Ok(())
        }
    }

    /// Decodes a `subject_token` of type `urn:ietf:params:oauth:token-type:saml2` (base64url
    /// of the assertion, RFC 8693 §3) and validates it as [`validate`](Self::validate) does.
    ///
    /// The URL-safe alphabet only; `=` padding is tolerated but not required; whitespace,
    /// the standard alphabet's `+` and `/`, and non-canonical trailing bits are refused.
    pub fn validate_base64url(
        &self,
        token: &str,
        client_id: &str,
        now: UnixTime,
    ) -> Result<SamlIdentity, SamlError> {
        let cap = self.max_len.div_ceil(3).saturating_mul(4);
        if token.len() > cap {
            return Err(SamlError::TooLarge {
                len: token.len() / 4 * 3,
                max: self.max_len,
            });
        }
        let xml = B64URL
            .decode(token.as_bytes())
            .map_err(|_| SamlError::Base64)?;
        self.validate(&xml, client_id, now)
    }

    /// Validates one assertion for the authenticated `client_id` at `now`.
    ///
    /// Steps: (1) size cap, UTF-8, a linear pre-scan of the text (depth cap, at most
    /// [`MAX_ATTRIBUTES`](crate::MAX_ATTRIBUTES) attributes per element and
    /// [`MAX_NAMESPACES`](crate::MAX_NAMESPACES) namespace declarations in scope), XML without
    /// DTD, no comments or processing instructions, unique `ID`s, nothing encrypted, no nested
    /// assertion; (2) the root is a
    /// `saml:Assertion` with `Version="2.0"` and an `ID`; (3) exactly one `ds:Signature`, a
    /// direct child of the root, referencing the root, verified with a configured key; every
    /// later step reads only the root's own children; (4) `Issuer` is the configured entity id
    /// (D-12); (5) `IssueInstant`, `Conditions NotBefore`/`NotOnOrAfter` and the lifetime cap;
    /// (6) every `AudienceRestriction` names an SP entity id mapped to `client_id` (TX-4);
    /// (7) `Subject` with one `NameID` and a bearer `SubjectConfirmation` whose data is
    /// unexpired and names a configured `Recipient`; (8) `AuthnStatement` (`AuthnInstant`, `SessionNotOnOrAfter`, class ref);
    /// (9) attributes.
    pub fn validate(
        &self,
        xml: &[u8],
        client_id: &str,
        now: UnixTime,
    ) -> Result<SamlIdentity, SamlError> {
        // (1)
        if xml.len() > self.max_len {
            return Err(SamlError::TooLarge {
                len: xml.len(),
                max: self.max_len,
            });
        }
        let text = std::str::from_utf8(xml).map_err(|_| SamlError::NotUtf8)?;
        // Bounds what the parser and the canonicalizer do per element, before either runs.
        crate::prescan::prescan(text, self.max_depth.min(MAX_DEPTH))?;
        let options = ParsingOptions {
            allow_dtd: false,
            nodes_limit: u32::try_from(self.max_len).unwrap_or(u32::MAX),
            ..ParsingOptions::default()
        };
        let doc = Document::parse_with_options(text, options).map_err(|e| match e {
            roxmltree::Error::DtdDetected => SamlError::Dtd,
            other => SamlError::Xml {
                reason: other.to_string(),
            },
        })?;
        let root = doc.root_element();
        // roxmltree tolerates an empty `<!DOCTYPE x>`: refuse any before the root.
        if text
            .get(..root.range().start)
            .is_none_or(|prolog| prolog.contains("<!DOCTYPE"))
        {
            return Err(SamlError::Dtd);
        }
        // (2)
        if root.tag_name().namespace() == Some(SAML_NS)
            && root.tag_name().name() == "EncryptedAssertion"
        {
            return Err(SamlError::Encrypted {
                element: "EncryptedAssertion",
            });
        }
        if !is_saml(root, "Assertion") {
            return Err(SamlError::NotAnAssertion);
        }
        // (1), the whole-document part.
        let signature = scan(&doc, self.max_depth.min(MAX_DEPTH))?;
        if root.attribute("Version") != Some("2.0") {
            return Err(SamlError::WrongVersion);
        }
        let id = root
            .attribute("ID")
            .filter(|id| !id.is_empty())
            .ok_or(SamlError::Missing { element: "ID" })?;

        // (3)
        let signature = signature.ok_or(SamlError::Unsigned)?;
        if signature.parent() != Some(root) {
            return Err(SamlError::SignatureMisplaced);
        }
        dsig::verify_enveloped(root, signature, id, &self.keys)?;
        let signed = Signed { root };

        // (4) D-12: exact comparison.
        let issuer = signed
            .one("Issuer")?
            .ok_or(SamlError::Missing { element: "Issuer" })?;
        let issuer_value = text_of(issuer, "Issuer")?;
        if issuer_value != self.issuer {
            return Err(SamlError::IssuerMismatch {
                found: issuer_value,
                expected: self.issuer.clone(),
            });
        }

        // (5)
        let leeway = self.leeway.min(MAX_LEEWAY).as_secs();
        let issued = time_attr(root, "IssueInstant")?.ok_or(SamlError::Missing {
            element: "IssueInstant",
        })?;
        if issued > now.plus(leeway) {
            return Err(SamlError::IssuedInFuture { issued, now });
        }
        let conditions = signed.one("Conditions")?.ok_or(SamlError::Missing {
            element: "Conditions",
        })?;
        if let Some(not_before) = time_attr(conditions, "NotBefore")?
            && not_before > now.plus(leeway)
        {
            return Err(SamlError::NotYetValid {
                element: "Conditions",
                not_before,
                now,
            });
        }
        let not_on_or_after = time_attr(conditions, "NotOnOrAfter")?.ok_or(SamlError::Missing {
            element: "NotOnOrAfter",
        })?;
        if now >= not_on_or_after.plus(leeway) {
            return Err(SamlError::Expired {
                element: "Conditions",
                not_on_or_after,
                now,
            });
        }
        let lifetime = not_on_or_after.as_secs().saturating_sub(issued.as_secs());
        if lifetime == 0 || lifetime > self.max_lifetime.as_secs() {
            return Err(SamlError::BadLifetime {
                lifetime,
                max: self.max_lifetime.as_secs(),
            });
        }

        // (6) TX-4: each AudienceRestriction must name an SP mapped to the client.
        let restrictions: Vec<Node<'_, '_>> = conditions
            .children()
            .filter(|n| is_saml(*n, "AudienceRestriction"))
            .collect();
        let mismatch = || SamlError::AudienceMismatch {
            client_id: client_id.to_owned(),
        };
        if restrictions.is_empty() {
            return Err(mismatch());
        }
        let mut audience = None;
        for restriction in restrictions {
            let mut matched = None;
            for a in restriction.children().filter(|n| is_saml(*n, "Audience")) {
                let value = text_of(a, "Audience")?;
                if self.audiences.get(&value).is_some_and(|c| c == client_id) {
                    matched = Some(value);
                }
            }
            let value = matched.ok_or_else(mismatch)?;
            audience.get_or_insert(value);
        }
        let audience = audience.ok_or_else(mismatch)?;

        // (7)
        let subject = signed
            .one("Subject")?
            .ok_or(SamlError::Missing { element: "Subject" })?;
        let name_id = read_name_id(subject)?;
        // TX-4 (RFC 7522 §3, SAML Profiles §4.1.4.2): a bearer confirmation counts only when
        // its `Recipient` is this token endpoint; one for another endpoint (an SP's ACS, another
        // IdP) or none at all cannot be replayed here.
        let mut bearer_until = None;
        let mut other_recipient = false;
        let mut no_recipient = false;
        for confirmation in subject
            .children()
            .filter(|n| is_saml(*n, "SubjectConfirmation"))
        {
            if confirmation.attribute("Method") != Some(BEARER) {
                continue;
            }
            let Some(data) = one_child(confirmation, "SubjectConfirmationData")? else {
                continue;
            };
            if let Some(not_before) = time_attr(data, "NotBefore")?
                && not_before > now.plus(leeway)
            {
                return Err(SamlError::NotYetValid {
                    element: "SubjectConfirmationData",
                    not_before,
                    now,
                });
            }
            let Some(until) = time_attr(data, "NotOnOrAfter")? else {
                continue;
            };
            if now >= until.plus(leeway) {
                return Err(SamlError::Expired {
                    element: "SubjectConfirmationData",
                    not_on_or_after: until,
                    now,
                });
            }
            match data.attribute("Recipient") {
                None => no_recipient = true,
                Some(r) if !self.recipients.iter().any(|ok| ok == r) => other_recipient = true,
                Some(_) => {
                    bearer_until = Some(bearer_until.map_or(until, |u: UnixTime| u.max(until)));
                }
            }
        }
        let bearer_until = match bearer_until {
            Some(until) => until,
            None if other_recipient => return Err(SamlError::RecipientMismatch),
            None if no_recipient => {
                return Err(SamlError::Missing {
                    element: "Recipient",
                });
            }
            None => return Err(SamlError::NoBearerConfirmation),
        };

        // (8)
        let authn = signed.first("AuthnStatement");
        let mut auth_time = None;
        let mut acr = None;
        let mut session_index = None;
        if let Some(authn) = authn {
            let instant = time_attr(authn, "AuthnInstant")?.ok_or(SamlError::Missing {
                element: "AuthnInstant",
            })?;
            let too_old = self.max_auth_age.is_some_and(|max| {
                now.as_secs()
                    > instant
                        .as_secs()
                        .saturating_add(max.as_secs())
                        .saturating_add(leeway)
            });
            if instant > now.plus(leeway) || too_old {
                return Err(SamlError::AuthnInstant {
                    authn_instant: instant,
                    now,
                });
            }
            if let Some(until) = time_attr(authn, "SessionNotOnOrAfter")?
                && now >= until.plus(leeway)
            {
                return Err(SamlError::Expired {
                    element: "AuthnStatement",
                    not_on_or_after: until,
                    now,
                });
            }
            auth_time = Some(instant);
            session_index = authn.attribute("SessionIndex").map(str::to_owned);
            if let Some(context) = one_child(authn, "AuthnContext")?
                && let Some(class) = one_child(context, "AuthnContextClassRef")?
            {
                acr = Some(text_of(class, "AuthnContextClassRef")?);
            }
        } else if self.max_auth_age.is_some() {
            return Err(SamlError::Missing {
                element: "AuthnStatement",
            });
        }

        // (9)
        let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for statement in root
            .children()
            .filter(|n| is_saml(*n, "AttributeStatement"))
        {
            for attribute in statement.children().filter(|n| n.is_element()) {
                if !is_saml(attribute, "Attribute") {
                    continue;
                }
                let name = attribute
                    .attribute("Name")
                    .ok_or(SamlError::Missing { element: "Name" })?;
                let values = attributes.entry(name.to_owned()).or_default();
                for value in attribute
                    .children()
                    .filter(|n| is_saml(*n, "AttributeValue"))
                {
                    // Structured values (child elements) are not represented.
                    if value.children().all(|c| c.is_text()) {
                        values.push(text_of(value, "AttributeValue")?);
                    }
                }
            }
        }
        let first = |name: &Option<String>| {
            name.as_ref()
                .and_then(|n| attributes.get(n))
                .and_then(|v| v.first())
                .cloned()
        };
        let email = first(&self.names.email);
        let tenant = first(&self.names.tenant);
        let groups = self
            .names
            .groups
            .as_ref()
            .and_then(|n| attributes.get(n))
            .cloned();

        Ok(SamlIdentity {
            issuer: issuer_value,
            assertion_id: id.to_owned(),
            name_id,
            client_id: client_id.to_owned(),
            audience,
            issue_instant: issued,
            not_on_or_after: not_on_or_after.min(bearer_until),
            auth_time,
            acr,
            session_index,
            attributes,
            email,
            groups,
            tenant,
        })
    }
}

/// The verified root: the only element later steps read from.
struct Signed<'a, 'i> {
    root: Node<'a, 'i>,
}

impl<'a, 'i> Signed<'a, 'i> {
    /// The root's only child `saml:<local>`; two are refused.
    fn one(&self, local: &'static str) -> Result<Option<Node<'a, 'i>>, SamlError> {
        one_child(self.root, local)
    }

    fn first(&self, local: &'static str) -> Option<Node<'a, 'i>> {
        self.root.children().find(|n| is_saml(*n, local))
    }
}

fn is_saml(node: Node<'_, '_>, local: &str) -> bool {
    node.is_element()
        && node.tag_name().namespace() == Some(SAML_NS)
        && node.tag_name().name() == local
}

fn one_child<'a, 'i>(
    node: Node<'a, 'i>,
    local: &'static str,
) -> Result<Option<Node<'a, 'i>>, SamlError> {
    let mut found = node.children().filter(|n| is_saml(*n, local));
    let first = found.next();
    if found.next().is_some() {
        return Err(SamlError::Duplicate { element: local });
    }
    Ok(first)
}

/// The text of an element that may hold only text.
fn text_of(node: Node<'_, '_>, element: &'static str) -> Result<String, SamlError> {
    let mut out = String::new();
    for child in node.children() {
        if !child.is_text() {
            return Err(SamlError::UnexpectedContent { element });
        }
        out.push_str(child.text().unwrap_or(""));
    }
    Ok(out)
}

fn time_attr(node: Node<'_, '_>, name: &'static str) -> Result<Option<UnixTime>, SamlError> {
    node.attribute(name)
        .map(|v| time::parse(v, name))
        .transpose()
}

fn read_name_id(subject: Node<'_, '_>) -> Result<NameId, SamlError> {
    if subject.children().any(|n| is_saml(n, "EncryptedID")) {
        return Err(SamlError::Encrypted {
            element: "EncryptedID",
        });
    }
    let node = one_child(subject, "NameID")?.ok_or(SamlError::Missing { element: "NameID" })?;
    let value = text_of(node, "NameID")?;
    if value.is_empty() {
        return Err(SamlError::Missing { element: "NameID" });
    }
    let attr = |name: &str| node.attribute(name).map(str::to_owned);
    Ok(NameId {
        value,
        format: attr("Format"),
        name_qualifier: attr("NameQualifier"),
        sp_name_qualifier: attr("SPNameQualifier"),
        sp_provided_id: attr("SPProvidedID"),
    })
}

/// Whole-document checks; returns the one `ds:Signature` if there is exactly one.
fn scan<'a, 'i>(
    doc: &'a Document<'i>,
    max_depth: usize,
) -> Result<Option<Node<'a, 'i>>, SamlError> {
    let root = doc.root_element();
    let mut ids = HashSet::new();
    let mut signature = None;
    // Depth-first with an explicit stack: no recursion on hostile nesting.
    let mut stack = vec![(doc.root(), 0usize)];
    while let Some((node, depth)) = stack.pop() {
        if node.is_comment() || node.is_pi() {
            return Err(SamlError::CommentOrProcessingInstruction);
        }
        if !node.is_element() {
            for child in node.children() {
                stack.push((child, depth));
            }
            continue;
        }
        if depth >= max_depth {
            return Err(SamlError::TooDeep { max: max_depth });
        }
        let name = node.tag_name();
        if name.namespace() == Some(SAML_NS) {
            match name.name() {
                "EncryptedAssertion" => {
                    return Err(SamlError::Encrypted {
                        element: "EncryptedAssertion",
                    });
                }
                "EncryptedID" => {
                    return Err(SamlError::Encrypted {
                        element: "EncryptedID",
                    });
                }
                "EncryptedAttribute" => {
                    return Err(SamlError::Encrypted {
                        element: "EncryptedAttribute",
                    });
                }
                "Assertion" if node != root => return Err(SamlError::NestedAssertion),
                _ => {}
            }
        }
        if name.namespace() == Some(DSIG_NS) && name.name() == "Signature" {
            if signature.is_some() {
                return Err(SamlError::MultipleSignatures);
            }
            signature = Some(node);
        }
        for attr in node.attributes() {
            let is_id = match attr.namespace() {
                None => matches!(attr.name(), "ID" | "Id" | "id"),
                Some(ns) => ns == crate::c14n::XML_NS && attr.name() == "id",
            };
            if is_id && !ids.insert(attr.value()) {
                return Err(SamlError::DuplicateId);
            }
        }
        for child in node.children() {
            stack.push((child, depth + 1));
        }
    }
    Ok(signature)
}

/// A SAML `NameID` (SAML Core §2.2.3).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NameId {
    /// The identifier.
    pub value: String,
    /// `Format`, when given.
    pub format: Option<String>,
    /// `NameQualifier`, when given.
    pub name_qualifier: Option<String>,
    /// `SPNameQualifier`, when given.
    pub sp_name_qualifier: Option<String>,
    /// `SPProvidedID`, when given.
    pub sp_provided_id: Option<String>,
}

impl fmt::Debug for NameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameId")
            .field("value", &"<redacted>")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// What a verified assertion says, read only from the signed element (TX-4).
///
/// Only [`SamlAssertionValidator`] makes one. `Debug` leaves out the subject and attributes.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SamlIdentity {
    /// The IdP's entity id (`Issuer`).
    pub issuer: String,
    /// The assertion's `ID`.
    pub assertion_id: String,
    /// The subject.
    pub name_id: NameId,
    /// The authenticated client the audience was matched to.
    pub client_id: String,
    /// The SP entity id that matched.
    pub audience: String,
    /// `IssueInstant`.
    pub issue_instant: UnixTime,
    /// The earlier of `Conditions NotOnOrAfter` and the bearer confirmation's `NotOnOrAfter`.
    pub not_on_or_after: UnixTime,
    /// `AuthnInstant`.
    pub auth_time: Option<UnixTime>,
    /// `AuthnContextClassRef`.
    pub acr: Option<String>,
    /// `SessionIndex`.
    pub session_index: Option<String>,
    /// Every attribute by `Name`, values in document order (text values only).
    pub attributes: BTreeMap<String, Vec<String>>,
    /// The configured email attribute's first value.
    pub email: Option<String>,
    /// The configured groups attribute's values.
    pub groups: Option<Vec<String>>,
    /// The configured tenant attribute's first value.
    pub tenant: Option<String>,
}

impl fmt::Debug for SamlIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SamlIdentity")
            .field("issuer", &self.issuer)
            .field("assertion_id", &self.assertion_id)
            .field("name_id", &self.name_id)
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .field("issue_instant", &self.issue_instant)
            .field("not_on_or_after", &self.not_on_or_after)
            .field("auth_time", &self.auth_time)
            .field("acr", &self.acr)
            .finish_non_exhaustive()
    }
}

impl SamlIdentity {
    /// The identity as a claim set, for code written against ID tokens: `iss` (the IdP entity
    /// id), `sub` (the `NameID`), `aud` (the client id), `iat`, `exp`, `auth_time`, `acr`,
    /// `email`, `groups`, `tenant` when known, and `sub_id` in the `saml-nameid` format
    /// (`format`, `issuer`, `nameid`, and `nameid_format`, `name_qualifier`,
    /// `sp_name_qualifier`, `sp_provided_id` when present; see the claims table in `docs/requirements.md`).
    pub fn to_claims(&self) -> Claims {
        let claims = IdentityClaims {
            iss: &self.issuer,
            sub: &self.name_id.value,
            aud: &self.client_id,
            iat: self.issue_instant.as_secs(),
            exp: self.not_on_or_after.as_secs(),
            auth_time: self.auth_time.map(UnixTime::as_secs),
            acr: self.acr.as_deref(),
            email: self.email.as_deref(),
            groups: self.groups.as_deref(),
            tenant: self.tenant.as_deref(),
            sub_id: SubjectIdentifier {
                format: "saml-nameid",
                issuer: &self.issuer,
                nameid: &self.name_id.value,
                nameid_format: self.name_id.format.as_deref(),
                name_qualifier: self.name_id.name_qualifier.as_deref(),
                sp_name_qualifier: self.name_id.sp_name_qualifier.as_deref(),
                sp_provided_id: self.name_id.sp_provided_id.as_deref(),
            },
        };
        // Strings, numbers and string lists only: serialising cannot fail.
        match serde_json::to_value(claims) {
            Ok(Value::Object(m)) => Claims::from_object(m),
            _ => Claims::from_object(Map::new()),
        }
    }
}

/// The claim set of [`SamlIdentity::to_claims`].
#[derive(serde::Serialize)]
struct IdentityClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    sub_id: SubjectIdentifier<'a>,
}

/// `sub_id` in the `saml-nameid` format (see the claims table in `docs/requirements.md`).
#[derive(serde::Serialize)]
struct SubjectIdentifier<'a> {
    format: &'a str,
    issuer: &'a str,
    nameid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameid_format: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_qualifier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sp_name_qualifier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sp_provided_id: Option<&'a str>,
}
