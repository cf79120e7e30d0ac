//! The most expensive assertion the validator accepts in size (the default 64 KiB cap), shared
//! by the `validate_worst` bench and the tests in `tests/saml.rs`.
//!
//! Everything that made parsing and exclusive C14N expensive is at its limit at once: the root
//! declares namespaces up to [`MAX_NAMESPACES`] in scope (counting the signature's own `ds`),
//! every namespace URI is long, a chain of elements nests to the depth cap, every element of
//! the body carries [`MAX_ATTRIBUTES`] attributes, nearly all of them prefixed so that each
//! sibling re-declares every namespace in canonical form, and both exclusive C14N steps carry
//! an `InclusiveNamespaces PrefixList` of [`MAX_INCLUSIVE_PREFIXES`] prefixes.
//!
//! [`WorstCase::signed`] is signed by the fixture's key and accepted; [`WorstCase::forged`] is
//! the same document with the prefix lists added to `SignedInfo` after signing (what an
//! attacker without the key can send), refused with [`SamlError::BadSignature`] after one
//! small canonicalization. [`WorstCase::forged_with`] builds variants for the limit tests.

#![allow(dead_code, reason = "the bench and the tests use different parts")]
#![allow(missing_docs, reason = "test support")]

use std::sync::Arc;

use ema_jose::{Algorithm, SigningKey, UnixTime};
use ema_saml::{
    AssertionTemplate, DEFAULT_MAX_DEPTH, DEFAULT_MAX_LEN, EXC_C14N, MAX_ATTRIBUTES,
    MAX_INCLUSIVE_PREFIXES, MAX_NAMESPACES, SAML_NS, SamlAssertionSigner, SamlAssertionValidator,
};

/// 2026-01-01T00:00:00Z.
pub(crate) const WORST_NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
pub(crate) const WORST_IDP: &str = "https://idp.acme.example/saml";
pub(crate) const WORST_SP: &str = "https://desk.acme.example/sp";
pub(crate) const WORST_CLIENT: &str = "desk-idp-01";
pub(crate) const WORST_RECIPIENT: &str = "https://idp.acme.example/token";
pub(crate) const WORST_USER: &str = "ana@acme.example";

/// Namespaces declared on the root besides `saml` and `ec`: with the signature's `ds`, the
/// scope inside the signature is exactly [`MAX_NAMESPACES`].
pub(crate) const BODY_PREFIXES: usize = MAX_NAMESPACES - 3;

pub(crate) struct WorstCase {
    pub(crate) key: Arc<SigningKey>,
    pub(crate) validator: SamlAssertionValidator,
    /// Signed by `key`, accepted.
    pub(crate) signed: String,
    /// `signed` with full prefix lists added to `SignedInfo`: refused, bad signature.
    pub(crate) forged: String,
}

fn uri(k: usize) -> String {
    // Long URIs make every re-declaration in canonical form expensive.
    format!("urn:x-worst:{k:02}:{}", "u".repeat(40))
}

/// `count` attributes: one per body prefix (`pK:a`), then unprefixed ones.
fn attributes(count: usize) -> String {
    (0..count)
        .map(|k| {
            if k < BODY_PREFIXES {
                format!(" p{k}:a=\"\"")
            } else {
                format!(" b{k}=\"\"")
            }
        })
        .collect()
}

/// Inserts `block` into the unsigned default assertion and the extra namespaces on its root.
fn unsigned_with(block: &str, declarations: usize) -> String {
    let key = Arc::new(SigningKey::generate(Algorithm::ES256, None).unwrap());
    let signed = SamlAssertionSigner::new(WORST_IDP, key)
        .sign(&template())
        .unwrap();
    let start = signed.find("<ds:Signature").unwrap();
    let end = signed.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let unsigned = format!("{}{}", &signed[..start], &signed[end..]);
    let decls: String = (0..declarations)
        .map(|k| format!(" xmlns:p{k}=\"{}\"", uri(k)))
        .collect();
    let root = format!("<saml:Assertion xmlns:saml=\"{SAML_NS}\"");
    let unsigned = unsigned.replacen(&root, &format!("{root} xmlns:ec=\"{EXC_C14N}\"{decls}"), 1);
    unsigned.replacen("</saml:Assertion>", &format!("{block}</saml:Assertion>"), 1)
}

fn template() -> AssertionTemplate {
    AssertionTemplate::new(WORST_USER, WORST_SP, WORST_NOW)
        .with_id("_worst")
        .with_recipient(WORST_RECIPIENT)
}

/// The body: a chain nesting to the depth cap, then siblings until the size budget is used.
fn block(budget: usize, attribute_count: usize, depth: usize) -> String {
    let attrs = attributes(attribute_count);
    // The root is level 1, so the chain adds `depth - 1` levels.
    let chain = depth - 1;
    let mut block = String::new();
    for _ in 0..chain {
        block.push_str(&format!("<p0:d{attrs}>"));
    }
    block.push_str(&"</p0:d>".repeat(chain));
    let sibling = format!("<p0:s{attrs}/>");
    while block.len() + sibling.len() <= budget {
        block.push_str(&sibling);
    }
    block
}

/// The `InclusiveNamespaces` element listing `prefixes`.
fn inclusive(prefixes: &[String]) -> String {
    format!(
        "<ec:InclusiveNamespaces PrefixList=\"{}\"/>",
        prefixes.join(" ")
    )
}

/// Adds `prefixes` as the `PrefixList` of both exclusive C14N steps of `SignedInfo`.
pub(crate) fn with_prefix_lists(signed: &str, prefixes: &[String]) -> String {
    let exc = format!("Algorithm=\"{EXC_C14N}\"/>");
    let full = format!("Algorithm=\"{EXC_C14N}\">{}", inclusive(prefixes));
    signed
        .replacen(
            &format!("<ds:CanonicalizationMethod {exc}"),
            &format!("<ds:CanonicalizationMethod {full}</ds:CanonicalizationMethod>"),
            1,
        )
        .replacen(
            &format!("<ds:Transform {exc}"),
            &format!("<ds:Transform {full}</ds:Transform>"),
            1,
        )
}

/// The full prefix list: `#default`, `saml`, `ec` and body prefixes, [`MAX_INCLUSIVE_PREFIXES`]
/// in all, every one in scope.
pub(crate) fn full_prefix_list() -> Vec<String> {
    let list: Vec<String> = ["#default", "saml", "ec"]
        .into_iter()
        .map(str::to_owned)
        .chain((0..BODY_PREFIXES).map(|k| format!("p{k}")))
        .take(MAX_INCLUSIVE_PREFIXES)
        .collect();
    assert_eq!(list.len(), MAX_INCLUSIVE_PREFIXES);
    list
}

impl WorstCase {
    pub(crate) fn new() -> Self {
        let key = Arc::new(SigningKey::generate(Algorithm::ES256, None).unwrap());
        let signer = SamlAssertionSigner::new(WORST_IDP, key.clone());
        let validator = SamlAssertionValidator::new(WORST_IDP)
            .with_key(key.verifying_key().clone())
            .with_audience(WORST_SP, WORST_CLIENT)
            .with_recipient(WORST_RECIPIENT);
        // Room for the signature and the prefix lists added to the forged copy.
        let probe = unsigned_with("", BODY_PREFIXES);
        let budget = DEFAULT_MAX_LEN - probe.len() - 1400;
        let unsigned = unsigned_with(
            &block(budget, MAX_ATTRIBUTES, DEFAULT_MAX_DEPTH),
            BODY_PREFIXES,
        );
        let signed = signer.sign_xml(&unsigned).unwrap();
        let forged = with_prefix_lists(&signed, &full_prefix_list());
        assert!(forged.len() <= DEFAULT_MAX_LEN, "{}", forged.len());
        assert!(forged.len() > DEFAULT_MAX_LEN - 1024, "{}", forged.len());
        Self {
            key,
            validator,
            signed,
            forged,
        }
    }

    /// The other extreme of the same budget: as many elements as fit (empty, unprefixed, one
    /// unprefixed attribute each), signed and forged as above.
    pub(crate) fn many_elements(&self) -> (String, String) {
        let probe = unsigned_with("", BODY_PREFIXES);
        let budget = DEFAULT_MAX_LEN - probe.len() - 1400;
        let unit = "<e a=\"\"/>";
        let block = unit.repeat(budget / unit.len());
        let unsigned = unsigned_with(&block, BODY_PREFIXES);
        let signer = SamlAssertionSigner::new(WORST_IDP, self.key.clone());
        let signed = signer.sign_xml(&unsigned).unwrap();
        let forged = with_prefix_lists(&signed, &full_prefix_list());
        assert!(forged.len() <= DEFAULT_MAX_LEN, "{}", forged.len());
        (signed, forged)
    }

    /// As [`WorstCase::many_elements`], each element declaring one more namespace (so every
    /// element has its own full scope to resolve prefixes in).
    pub(crate) fn declaring_elements(&self) -> (String, String) {
        let probe = unsigned_with("", BODY_PREFIXES);
        let budget = DEFAULT_MAX_LEN - probe.len() - 1400;
        let unit = "<e xmlns:q=\"u\"/>";
        let block = unit.repeat(budget / unit.len());
        let unsigned = unsigned_with(&block, BODY_PREFIXES);
        let signer = SamlAssertionSigner::new(WORST_IDP, self.key.clone());
        let signed = signer.sign_xml(&unsigned).unwrap();
        let forged = with_prefix_lists(&signed, &full_prefix_list());
        assert!(forged.len() <= DEFAULT_MAX_LEN, "{}", forged.len());
        (signed, forged)
    }

    /// A forged variant: `attribute_count` attributes per body element, `declarations` body
    /// namespaces on the root, the chain nesting to `depth`, prefix lists `prefixes`.
    pub(crate) fn forged_with(
        &self,
        attribute_count: usize,
        declarations: usize,
        depth: usize,
        prefixes: &[String],
    ) -> String {
        let unsigned = unsigned_with(&block(4096, attribute_count, depth), declarations);
        let signer = SamlAssertionSigner::new(WORST_IDP, self.key.clone());
        with_prefix_lists(&signer.sign_xml(&unsigned).unwrap(), prefixes)
    }
}
