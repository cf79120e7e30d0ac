//! API tests of ema-saml: third-party vectors (signxml), the round trip with our signer, and
//! one test per defence, each asserting the exact [`SamlError`] variant (TX-3, TX-4, D-12).
//!
//! Every check runs at a fixed time; nothing reads the wall clock.

// `cfg(test)` marks the helpers as test code for clippy's `allow-*-in-tests` settings.
#![cfg(test)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ema_jose::{Algorithm, SigningKey, UnixTime, VerifyingKey};
use ema_saml::{
    AssertionTemplate, AttributeNames, DEFAULT_MAX_DEPTH, MAX_ATTRIBUTES, MAX_DEPTH,
    MAX_INCLUSIVE_PREFIXES, MAX_LEN, MAX_NAMESPACES, SamlAssertionSigner, SamlAssertionValidator,
    SamlError,
};

#[path = "../benches/support/worst.rs"]
mod worst;

/// 2026-01-01T00:00:00Z.
const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
const IDP: &str = "https://idp.acme.example/saml";
const SP: &str = "https://desk.acme.example/sp";
const CLIENT: &str = "desk-idp-01";
const USER: &str = "ana@acme.example";
/// The token endpoint the assertions are presented at: the bearer confirmation's `Recipient`.
const TOKEN_ENDPOINT: &str = "https://idp.acme.example/token";
/// The `Recipient` the third-party vectors were signed with.
const VECTOR_RECIPIENT: &str = "https://desk.acme.example/acs";

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn vector(name: &str) -> String {
    fs::read_to_string(vectors().join(name)).unwrap()
}

fn jwk(name: &str) -> Arc<VerifyingKey> {
    Arc::new(VerifyingKey::from_jwk_json(vector(name).as_bytes()).unwrap())
}

struct Fx {
    key: Arc<SigningKey>,
    signer: SamlAssertionSigner,
    validator: SamlAssertionValidator,
}

impl Fx {
    fn new(alg: Algorithm) -> Self {
        let key = Arc::new(SigningKey::generate(alg, None).unwrap());
        let signer = SamlAssertionSigner::new(IDP, key.clone());
        let validator = SamlAssertionValidator::new(IDP)
            .with_key(key.verifying_key().clone())
            .with_audience(SP, CLIENT)
            .with_audience("https://other.example/sp", "other-client")
            .with_recipient(TOKEN_ENDPOINT);
        Self {
            key,
            signer,
            validator,
        }
    }

    fn es256() -> Self {
        Self::new(Algorithm::ES256)
    }

    fn template(&self) -> AssertionTemplate {
        AssertionTemplate::new(USER, SP, NOW)
            .with_id("_a1")
            .with_recipient(TOKEN_ENDPOINT)
            .with_attribute("groups", ["eng", "ops"])
    }

    fn sign(&self, t: &AssertionTemplate) -> String {
        self.signer.sign(t).unwrap()
    }

    /// The default assertion, unsigned, edited by `edit`, then signed properly: for checks that
    /// run after the signature.
    fn sign_edited(&self, edit: impl Fn(String) -> String) -> String {
        let unsigned = strip_signature(&self.sign(&self.template()));
        self.signer.sign_xml(&edit(unsigned)).unwrap()
    }

    fn check(&self, xml: &str) -> Result<ema_saml::SamlIdentity, SamlError> {
        self.validator.validate(xml.as_bytes(), CLIENT, NOW)
    }
}

fn strip_signature(xml: &str) -> String {
    let start = xml.find("<ds:Signature").unwrap();
    let end = xml.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    format!("{}{}", &xml[..start], &xml[end..])
}

fn signature_of(xml: &str) -> String {
    let start = xml.find("<ds:Signature").unwrap();
    let end = xml.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    xml[start..end].to_owned()
}

// ----- third-party vectors -----------------------------------------------------------------

fn vector_validator() -> SamlAssertionValidator {
    SamlAssertionValidator::new(IDP)
        .with_key(jwk("rsa.jwk.json"))
        .with_key(jwk("ec.jwk.json"))
        .with_audience(SP, CLIENT)
        .with_recipient(VECTOR_RECIPIENT)
        .with_attribute_names(
            AttributeNames::new()
                .with_email("email")
                .with_groups("groups"),
        )
}

const VECTORS: [&str; 4] = [
    "signxml-rsa-sha256.xml",
    "xmlsec1-rsa-sha256-inclusive-prefixes.xml",
    "signxml-rsa-sha512.xml",
    "signxml-ecdsa-sha256.xml",
];

/// TX-3 / TX-4: assertions signed by signxml (an independent XML-DSig implementation) verify.
#[test]
fn tx3_signxml_vectors_are_accepted() {
    let v = vector_validator();
    for name in VECTORS {
        let xml = vector(name);
        let id = v
            .validate(xml.as_bytes(), CLIENT, NOW.plus(60))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(id.issuer, IDP);
        assert_eq!(id.name_id.value, USER);
        assert_eq!(
            id.name_id.format.as_deref(),
            Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress")
        );
        assert_eq!(id.name_id.sp_name_qualifier.as_deref(), Some(SP));
        assert_eq!(id.client_id, CLIENT);
        assert_eq!(id.audience, SP);
        assert_eq!(id.auth_time, Some(NOW.minus(30)));
        assert_eq!(
            id.acr.as_deref(),
            Some("urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport")
        );
        assert_eq!(id.session_index.as_deref(), Some("_s-1"));
        assert_eq!(id.email.as_deref(), Some(USER));
        assert_eq!(
            id.groups.as_deref(),
            Some(&["eng".to_owned(), "R&D <west>".to_owned()][..])
        );
        assert_eq!(id.not_on_or_after, NOW.plus(300));
    }
}

/// A byte changed anywhere that is signed breaks the digest; in the signature value, the
/// signature.
#[test]
fn tx4_byte_modified_vectors_are_refused() {
    let v = vector_validator();
    for name in VECTORS {
        let xml = vector(name);
        let edits: [(&str, &str, SamlError); 5] = [
            (">ana@acme", ">anb@acme", SamlError::DigestMismatch),
            (">eng<", ">ops<", SamlError::DigestMismatch),
            (
                "SessionIndex=\"_s-1\"",
                "SessionIndex=\"_s-2\"",
                SamlError::DigestMismatch,
            ),
            (
                "<saml:Subject>",
                "<saml:Subject> ",
                SamlError::DigestMismatch,
            ),
            (
                "<ds:SignatureValue>",
                "<ds:SignatureValue>AAAA",
                SamlError::BadSignature,
            ),
        ];
        for (from, to, expected) in edits {
            assert!(xml.contains(from), "{name}: {from}");
            let bad = xml.replacen(from, to, 1);
            assert_eq!(
                v.validate(bad.as_bytes(), CLIENT, NOW.plus(60))
                    .unwrap_err(),
                expected,
                "{name}: {from} -> {to}"
            );
        }
        // A flipped bit inside the signature value itself.
        let start = xml.find("<ds:SignatureValue>").unwrap() + "<ds:SignatureValue>".len();
        let mut bytes = xml.clone().into_bytes();
        bytes[start + 10] = if bytes[start + 10] == b'A' {
            b'B'
        } else {
            b'A'
        };
        assert_eq!(
            v.validate(&bytes, CLIENT, NOW.plus(60)).unwrap_err(),
            SamlError::BadSignature,
            "{name}"
        );
    }
}

/// Keys come from configuration: a vector does not verify with another key.
#[test]
fn tx4_vectors_need_the_configured_key() {
    let other = Fx::es256();
    let v = SamlAssertionValidator::new(IDP)
        .with_key(other.key.verifying_key().clone())
        .with_audience(SP, CLIENT);
    for name in VECTORS {
        assert_eq!(
            v.validate(vector(name).as_bytes(), CLIENT, NOW.plus(60))
                .unwrap_err(),
            SamlError::BadSignature,
            "{name}"
        );
    }
}

// ----- our signer ----------------------------------------------------------------------------

#[test]
fn round_trip_with_our_signer_for_every_allowed_algorithm() {
    for alg in [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::RS512,
    ] {
        let fx = Fx::new(alg);
        let t = fx
            .template()
            .with_attribute("email", [USER])
            .with_attribute("odd", ["a&b<c>\"d'\te"]);
        let id = fx.check(&fx.sign(&t)).unwrap();
        assert_eq!(id.name_id.value, USER);
        assert_eq!(id.attributes["groups"], ["eng", "ops"]);
        assert_eq!(id.attributes["odd"], ["a&b<c>\"d'\te"]);
        assert_eq!(id.assertion_id, "_a1");
    }
    // Algorithms without an allowed XML-DSig form cannot sign.
    for alg in [Algorithm::PS256, Algorithm::EdDSA, Algorithm::ES512] {
        let fx = Fx::new(alg);
        assert_eq!(
            fx.signer.sign(&fx.template()).unwrap_err(),
            SamlError::Signing
        );
    }
}

#[test]
fn base64url_subject_tokens_padding_tolerated_standard_alphabet_refused() {
    let fx = Fx::es256();
    let token = fx.signer.sign_base64url(&fx.template()).unwrap();
    assert!(!token.contains('='));
    fx.validator
        .validate_base64url(&token, CLIENT, NOW)
        .unwrap();
    // Padding is tolerated.
    let xml = fx.sign(&fx.template());
    let padded = base64_url_padded(xml.as_bytes());
    fx.validator
        .validate_base64url(&padded, CLIENT, NOW)
        .unwrap();
    // The standard alphabet, whitespace and garbage are not base64url.
    for bad in [
        token.replace('-', "+").replace('_', "/"),
        format!("{} ", token),
        format!("{}\n{}", &token[..8], &token[8..]),
        "%%%".to_owned(),
    ] {
        if bad == token {
            continue;
        }
        assert_eq!(
            fx.validator
                .validate_base64url(&bad, CLIENT, NOW)
                .unwrap_err(),
            SamlError::Base64
        );
    }
}

fn base64_url_padded(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

#[test]
fn claims_carry_sub_id_in_saml_nameid_format() {
    let fx = Fx::es256();
    let v = fx.validator.clone().with_attribute_names(
        AttributeNames::new()
            .with_email("mail")
            .with_groups("groups")
            .with_tenant("tenant"),
    );
    let t = fx
        .template()
        .with_attribute("mail", [USER, "second@acme.example"])
        .with_attribute("tenant", ["acme"])
        .with_authn_instant(NOW.minus(100))
        .with_authn_context_class_ref("urn:acme:acr:mfa");
    let id = v.validate(fx.sign(&t).as_bytes(), CLIENT, NOW).unwrap();
    let claims = id.to_claims();
    let expected = serde_json::json!({
        "iss": IDP,
        "sub": USER,
        "aud": CLIENT,
        "iat": NOW.as_secs(),
        "exp": NOW.as_secs() + 300,
        "auth_time": NOW.as_secs() - 100,
        "acr": "urn:acme:acr:mfa",
        "email": USER,
        "groups": ["eng", "ops"],
        "tenant": "acme",
        "sub_id": {
            "format": "saml-nameid",
            "issuer": IDP,
            "nameid": USER,
            "nameid_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
        },
    });
    assert_eq!(serde_json::Value::Object(claims.into_object()), expected);
}

#[test]
fn debug_redacts_subject_and_attributes() {
    let fx = Fx::es256();
    let t = fx.template().with_attribute("secret", ["s3cr3t-value"]);
    let id = fx.check(&fx.sign(&t)).unwrap();
    let debug = format!("{id:?} {:?}", id.name_id);
    assert!(!debug.contains(USER), "{debug}");
    assert!(!debug.contains("s3cr3t-value"), "{debug}");
    assert!(!debug.contains("eng"), "{debug}");
}

// ----- document-level defences -----------------------------------------------------------------

#[test]
fn dtd_xxe_and_billion_laughs_are_refused() {
    let fx = Fx::es256();
    let signed = fx.sign(&fx.template());
    let xxe = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE saml:Assertion [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>{}",
        signed.replace(USER, "&xxe;")
    );
    let laughs = format!(
        "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\
         <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>{}",
        signed.replace(USER, "&lol3;")
    );
    let empty = format!("<!DOCTYPE saml:Assertion>{signed}");
    for bad in [xxe, laughs, empty] {
        assert_eq!(
            fx.check(&bad).unwrap_err(),
            SamlError::Dtd,
            "{}",
            &bad[..60]
        );
    }
    // Without a DTD, an undefined entity is plain malformed XML.
    assert!(matches!(
        fx.check(&signed.replace(USER, "&xxe;")).unwrap_err(),
        SamlError::Xml { .. }
    ));
}

/// The comment-truncation attack: `ana@acme.example<!---->.evil.test` canonicalizes (without
/// comments) to the signed `ana@acme.example.evil.test`, and a naive reader of the first text
/// node would see `ana@acme.example`. Comments are refused outright.
#[test]
fn comment_in_name_id_is_refused() {
    let fx = Fx::es256();
    let evil = "ana@acme.example.evil.test";
    let signed = fx.sign(&AssertionTemplate::new(evil, SP, NOW).with_recipient(TOKEN_ENDPOINT));
    assert_eq!(fx.check(&signed).unwrap().name_id.value, evil);
    let truncated = signed.replace(
        "ana@acme.example.evil.test",
        "ana@acme.example<!---->.evil.test",
    );
    assert_eq!(
        fx.check(&truncated).unwrap_err(),
        SamlError::CommentOrProcessingInstruction
    );
    for bad in [
        format!("<!-- before -->{signed}"),
        format!("{signed}<!-- after -->"),
        signed.replace("<saml:Subject>", "<saml:Subject><?pi data?>"),
        format!("<?xml-stylesheet href=\"x\"?>{signed}"),
    ] {
        assert_eq!(
            fx.check(&bad).unwrap_err(),
            SamlError::CommentOrProcessingInstruction
        );
    }
    // The XML declaration is not a processing instruction.
    fx.check(&format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{signed}"
    ))
    .unwrap();
}

#[test]
fn size_and_depth_caps() {
    let fx = Fx::es256();
    let signed = fx.sign(&fx.template());
    let small = fx.validator.clone().with_max_len(signed.len() - 1);
    assert_eq!(
        small.validate(signed.as_bytes(), CLIENT, NOW).unwrap_err(),
        SamlError::TooLarge {
            len: signed.len(),
            max: signed.len() - 1
        }
    );
    let deep = signed.replace(
        "<saml:Subject>",
        &format!("<saml:Subject>{}{}", "<x>".repeat(40), "</x>".repeat(40)),
    );
    assert_eq!(fx.check(&deep).unwrap_err(), SamlError::TooDeep { max: 32 });
    let shallow = fx.validator.clone().with_max_depth(3);
    assert_eq!(
        shallow
            .validate(signed.as_bytes(), CLIENT, NOW)
            .unwrap_err(),
        SamlError::TooDeep { max: 3 }
    );
    assert_eq!(
        fx.validator
            .validate(&[0xff, 0xfe, b'<'], CLIENT, NOW)
            .unwrap_err(),
        SamlError::NotUtf8
    );
}

#[test]
fn root_must_be_a_saml_2_assertion() {
    let fx = Fx::es256();
    let signed = fx.sign(&fx.template());
    let response = format!(
        "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" ID=\"_r\" Version=\"2.0\">{signed}</samlp:Response>"
    );
    assert_eq!(fx.check(&response).unwrap_err(), SamlError::NotAnAssertion);
    let saml1 = signed.replace(
        "urn:oasis:names:tc:SAML:2.0:assertion",
        "urn:oasis:names:tc:SAML:1.0:assertion",
    );
    assert_eq!(fx.check(&saml1).unwrap_err(), SamlError::NotAnAssertion);
    let v11 = signed.replace("Version=\"2.0\"", "Version=\"1.1\"");
    assert_eq!(fx.check(&v11).unwrap_err(), SamlError::WrongVersion);
    let no_id = signed.replace(" ID=\"_a1\"", "");
    assert_eq!(
        fx.check(&no_id).unwrap_err(),
        SamlError::Missing { element: "ID" }
    );
}

#[test]
fn encrypted_assertions_and_ids_are_refused() {
    let fx = Fx::es256();
    let encrypted = "<saml:EncryptedAssertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\">\
        <xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"/></saml:EncryptedAssertion>";
    assert_eq!(
        fx.check(encrypted).unwrap_err(),
        SamlError::Encrypted {
            element: "EncryptedAssertion"
        }
    );
    let encrypted_id = fx.sign_edited(|x| {
        x.replace(
            "<saml:Subject>",
            "<saml:Subject><saml:EncryptedID><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"/></saml:EncryptedID>",
        )
    });
    assert_eq!(
        fx.check(&encrypted_id).unwrap_err(),
        SamlError::Encrypted {
            element: "EncryptedID"
        }
    );
    let encrypted_attr = fx.sign_edited(|x| {
        x.replace(
            "<saml:AttributeStatement>",
            "<saml:AttributeStatement><saml:EncryptedAttribute/>",
        )
    });
    assert_eq!(
        fx.check(&encrypted_attr).unwrap_err(),
        SamlError::Encrypted {
            element: "EncryptedAttribute"
        }
    );
}

// ----- signature and wrapping ------------------------------------------------------------------

#[test]
fn unsigned_assertion_is_refused() {
    let fx = Fx::es256();
    let unsigned = strip_signature(&fx.sign(&fx.template()));
    assert_eq!(fx.check(&unsigned).unwrap_err(), SamlError::Unsigned);
}

/// Signature-wrapping (XSW) variants: the signed assertion moved inside an unsigned one, the
/// signature moved or duplicated, the reference pointed elsewhere, IDs duplicated, unsigned
/// content hidden in the signature. Each is refused, or (content in `KeyInfo`) ignored.
#[test]
fn signature_wrapping_variants_are_refused() {
    let fx = Fx::es256();
    let signed = fx.sign(&fx.template());
    let sig = signature_of(&signed);
    let evil = |body: &str| {
        format!(
            "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_evil\" IssueInstant=\"2026-01-01T00:00:00Z\" Version=\"2.0\"><saml:Issuer>{IDP}</saml:Issuer>{body}<saml:Subject><saml:NameID>admin@acme.example</saml:NameID></saml:Subject></saml:Assertion>"
        )
    };
    let bare = signed.replacen("<?xml version=\"1.0\"?>", "", 1);

    // XSW: the original signed assertion wrapped in an evil one (Advice, Extensions-like
    // element, inside the signature's Object).
    let in_advice = evil(&format!("<saml:Advice>{bare}</saml:Advice>"));
    assert_eq!(
        fx.check(&in_advice).unwrap_err(),
        SamlError::NestedAssertion
    );
    let in_object = evil(&sig.replace(
        "</ds:Signature>",
        &format!("<ds:Object>{bare}</ds:Object></ds:Signature>"),
    ));
    assert_eq!(
        fx.check(&in_object).unwrap_err(),
        SamlError::NestedAssertion
    );

    // The original signature lifted onto the evil assertion: its reference names `_a1`.
    let lifted = evil(&sig);
    assert_eq!(fx.check(&lifted).unwrap_err(), SamlError::ReferenceMismatch);
    // ... and with the evil root taking the signed ID, the digest no longer matches.
    let same_id = lifted.replace("ID=\"_evil\"", "ID=\"_a1\"");
    assert_eq!(fx.check(&same_id).unwrap_err(), SamlError::DigestMismatch);

    // Two signatures; a signature below the root.
    let twice = signed.replacen(&sig, &format!("{sig}{sig}"), 1);
    assert_eq!(fx.check(&twice).unwrap_err(), SamlError::MultipleSignatures);
    let moved = strip_signature(&signed).replace("<saml:Subject>", &format!("<saml:Subject>{sig}"));
    assert_eq!(fx.check(&moved).unwrap_err(), SamlError::SignatureMisplaced);

    // Duplicate IDs, anywhere.
    let dup = signed.replace(
        "<saml:AttributeStatement>",
        "<saml:AttributeStatement><saml:Attribute Name=\"x\" ID=\"_a1\"/>",
    );
    assert_eq!(fx.check(&dup).unwrap_err(), SamlError::DuplicateId);

    // Unsigned content inside the signature: `ds:Object` is refused...
    let object = signed.replace(
        "</ds:SignatureValue>",
        "</ds:SignatureValue><ds:Object><saml:Subject><saml:NameID>admin</saml:NameID></saml:Subject></ds:Object>",
    );
    assert!(matches!(
        fx.check(&object).unwrap_err(),
        SamlError::MalformedSignature { .. }
    ));
    // ... and anything in `KeyInfo` is never read: the identity is the signed one.
    let key_info = signed.replace(
        "</ds:SignatureValue>",
        "</ds:SignatureValue><ds:KeyInfo><saml:Subject><saml:NameID>admin</saml:NameID></saml:Subject></ds:KeyInfo>",
    );
    assert_eq!(fx.check(&key_info).unwrap().name_id.value, USER);

    // Two references (the second one naming the same element).
    let reference = {
        let start = sig.find("<ds:Reference").unwrap();
        let end = sig.find("</ds:Reference>").unwrap() + "</ds:Reference>".len();
        sig[start..end].to_owned()
    };
    let two_refs = signed.replacen(&reference, &format!("{reference}{reference}"), 1);
    assert_eq!(
        fx.check(&two_refs).unwrap_err(),
        SamlError::ReferenceCount { count: 2 }
    );
    // An empty URI (the whole document) is not `#ID`.
    let whole = signed.replace("URI=\"#_a1\"", "URI=\"\"");
    assert_eq!(fx.check(&whole).unwrap_err(), SamlError::ReferenceMismatch);
}

#[test]
fn algorithms_outside_the_allow_list_are_refused() {
    let fx = Fx::es256();
    let signed = fx.sign(&fx.template());
    let cases = [
        (
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            "signature",
        ),
        (
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
            "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
            "signature",
        ),
        (
            "http://www.w3.org/2001/04/xmlenc#sha256",
            "http://www.w3.org/2000/09/xmldsig#sha1",
            "digest",
        ),
        (
            "http://www.w3.org/2001/04/xmlenc#sha256",
            "http://www.w3.org/2001/04/xmlenc#sha512",
            "digest",
        ),
    ];
    for (from, to, kind) in cases {
        let bad = signed.replace(from, to);
        assert_eq!(
            fx.check(&bad).unwrap_err(),
            SamlError::UnsupportedAlgorithm {
                kind,
                uri: to.to_owned()
            }
        );
    }
    let c14n = "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>";
    for to in [
        "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
        "http://www.w3.org/2006/12/xml-c14n11",
    ] {
        let bad = signed.replace(
            c14n,
            &format!("<ds:CanonicalizationMethod Algorithm=\"{to}\"/>"),
        );
        assert_eq!(
            fx.check(&bad).unwrap_err(),
            SamlError::UnsupportedAlgorithm {
                kind: "canonicalization",
                uri: to.to_owned()
            }
        );
    }
    let xpath = signed.replace(
        "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
        "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xpath-19991116\"/>",
    );
    assert_eq!(
        fx.check(&xpath).unwrap_err(),
        SamlError::UnsupportedAlgorithm {
            kind: "transform",
            uri: "http://www.w3.org/TR/1999/REC-xpath-19991116".into()
        }
    );
    // Only enveloped-signature, without exclusive C14N after it, is not enough.
    let only_enveloped = signed.replace(
        "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
        "",
    );
    assert!(matches!(
        fx.check(&only_enveloped).unwrap_err(),
        SamlError::MalformedSignature { .. }
    ));
}

// ----- content checks (after the signature) -------------------------------------------------------

/// D-12: the issuer is compared exactly.
#[test]
fn d12_issuer_exact_match() {
    let fx = Fx::es256();
    let signed = fx.sign(&fx.template());
    for other in [
        "https://idp.acme.example/saml/",
        "https://IDP.acme.example/saml",
        "https://idp.acme.example",
    ] {
        let v = SamlAssertionValidator::new(other)
            .with_key(fx.key.verifying_key().clone())
            .with_audience(SP, CLIENT)
            .with_recipient(TOKEN_ENDPOINT);
        assert_eq!(
            v.validate(signed.as_bytes(), CLIENT, NOW).unwrap_err(),
            SamlError::IssuerMismatch {
                found: IDP.into(),
                expected: other.into()
            }
        );
    }
    let no_issuer = fx.sign_edited(|x| x.replace(&format!("<saml:Issuer>{IDP}</saml:Issuer>"), ""));
    assert_eq!(
        fx.check(&no_issuer).unwrap_err(),
        SamlError::Missing { element: "Issuer" }
    );
}

/// TX-4: every validity bound at the injected time, with the 30 s leeway.
#[test]
fn tx4_validity_window() {
    let fx = Fx::es256();
    let signed = fx.sign(&fx.template());
    let at = |now: UnixTime| fx.validator.validate(signed.as_bytes(), CLIENT, now);
    at(NOW).unwrap();
    at(NOW.plus(300 + 29)).unwrap();
    assert_eq!(
        at(NOW.plus(330)).unwrap_err(),
        SamlError::Expired {
            element: "Conditions",
            not_on_or_after: NOW.plus(300),
            now: NOW.plus(330)
        }
    );
    at(NOW.minus(30)).unwrap();
    assert_eq!(
        at(NOW.minus(31)).unwrap_err(),
        SamlError::IssuedInFuture {
            issued: NOW,
            now: NOW.minus(31)
        }
    );
    // Conditions NotBefore in the future.
    let later = fx.sign(&fx.template().with_not_before(NOW.plus(120)));
    assert_eq!(
        fx.check(&later).unwrap_err(),
        SamlError::NotYetValid {
            element: "Conditions",
            not_before: NOW.plus(120),
            now: NOW
        }
    );
    // The bearer confirmation expires before the conditions.
    let short = fx.sign(&fx.template().with_confirmation_lifetime(60));
    assert_eq!(
        fx.validator
            .validate(short.as_bytes(), CLIENT, NOW.plus(100))
            .unwrap_err(),
        SamlError::Expired {
            element: "SubjectConfirmationData",
            not_on_or_after: NOW.plus(60),
            now: NOW.plus(100)
        }
    );
    assert_eq!(fx.check(&short).unwrap().not_on_or_after, NOW.plus(60));
    // Lifetime cap (default 3600 s).
    let long = fx.sign(&fx.template().with_lifetime(7200));
    assert_eq!(
        fx.check(&long).unwrap_err(),
        SamlError::BadLifetime {
            lifetime: 7200,
            max: 3600
        }
    );
    // AuthnInstant in the future, or older than the configured maximum age.
    let future = fx.sign(&fx.template().with_authn_instant(NOW.plus(120)));
    assert_eq!(
        fx.check(&future).unwrap_err(),
        SamlError::AuthnInstant {
            authn_instant: NOW.plus(120),
            now: NOW
        }
    );
    let old = fx.sign(&fx.template().with_authn_instant(NOW.minus(7200)));
    fx.check(&old).unwrap();
    let strict = fx
        .validator
        .clone()
        .with_max_auth_age(Some(Duration::from_secs(3600)));
    assert_eq!(
        strict.validate(old.as_bytes(), CLIENT, NOW).unwrap_err(),
        SamlError::AuthnInstant {
            authn_instant: NOW.minus(7200),
            now: NOW
        }
    );
    // A malformed date.
    let bad_date = fx.sign_edited(|x| {
        x.replace(
            "IssueInstant=\"2026-01-01T00:00:00Z\"",
            "IssueInstant=\"2026-01-01 00:00:00\"",
        )
    });
    assert_eq!(
        fx.check(&bad_date).unwrap_err(),
        SamlError::BadDateTime {
            attribute: "IssueInstant"
        }
    );
}

/// TX-4: the audience (an SP entity id) must map to the authenticated client.
#[test]
fn tx4_audience_maps_to_the_authenticated_client() {
    let fx = Fx::es256();
    let signed = fx.sign(&fx.template());
    let mismatch = |client: &str| SamlError::AudienceMismatch {
        client_id: client.into(),
    };
    // Another registered client.
    assert_eq!(
        fx.validator
            .validate(signed.as_bytes(), "other-client", NOW)
            .unwrap_err(),
        mismatch("other-client")
    );
    // An SP entity id nobody is mapped to.
    let unknown = fx.sign(&fx.template().with_audiences(["https://unknown.example/sp"]));
    assert_eq!(fx.check(&unknown).unwrap_err(), mismatch(CLIENT));
    // The client's SP among others in one restriction is fine.
    let several = fx.sign(
        &fx.template()
            .with_audiences(["https://unknown.example/sp", SP]),
    );
    assert_eq!(fx.check(&several).unwrap().audience, SP);
    // Every AudienceRestriction must be satisfied.
    let two = fx.sign_edited(|x| {
        x.replace(
            "</saml:Conditions>",
            "<saml:AudienceRestriction><saml:Audience>https://unknown.example/sp</saml:Audience></saml:AudienceRestriction></saml:Conditions>",
        )
    });
    assert_eq!(fx.check(&two).unwrap_err(), mismatch(CLIENT));
    // No restriction at all.
    let none = fx.sign_edited(|x| {
        let start = x.find("<saml:AudienceRestriction>").unwrap();
        let end =
            x.find("</saml:AudienceRestriction>").unwrap() + "</saml:AudienceRestriction>".len();
        format!("{}{}", &x[..start], &x[end..])
    });
    assert_eq!(fx.check(&none).unwrap_err(), mismatch(CLIENT));
}

#[test]
fn subject_requires_one_name_id_and_a_bearer_confirmation() {
    let fx = Fx::es256();
    let hok = fx.sign_edited(|x| x.replace(":cm:bearer", ":cm:holder-of-key"));
    assert_eq!(fx.check(&hok).unwrap_err(), SamlError::NoBearerConfirmation);
    let two_names = fx.sign_edited(|x| {
        x.replace(
            "<saml:SubjectConfirmation ",
            "<saml:NameID>admin@acme.example</saml:NameID><saml:SubjectConfirmation ",
        )
    });
    assert_eq!(
        fx.check(&two_names).unwrap_err(),
        SamlError::Duplicate { element: "NameID" }
    );
    let two_subjects = fx.sign_edited(|x| {
        x.replace(
            "<saml:Conditions ",
            "<saml:Subject><saml:NameID>admin@acme.example</saml:NameID></saml:Subject><saml:Conditions ",
        )
    });
    assert_eq!(
        fx.check(&two_subjects).unwrap_err(),
        SamlError::Duplicate { element: "Subject" }
    );
    let nested = fx.sign_edited(|x| x.replace(&format!(">{USER}<"), &format!("><b>{USER}</b><")));
    assert_eq!(
        fx.check(&nested).unwrap_err(),
        SamlError::UnexpectedContent { element: "NameID" }
    );
}

// ----- bearer confirmation: Recipient (TX-4) ------------------------------------------------

/// TX-4 (RFC 7522 §3): the bearer confirmation must name this token endpoint as `Recipient`;
/// another recipient or none is refused, with the positive control beside each.
#[test]
fn tx4_bearer_recipient_must_be_the_token_endpoint() {
    let fx = Fx::es256();
    // Positive control.
    assert_eq!(
        fx.check(&fx.sign(&fx.template())).unwrap().name_id.value,
        USER
    );
    // Another endpoint (an SP's assertion consumer service), or a near miss.
    for other in [
        "https://desk.acme.example/acs",
        "https://idp.acme.example/token/",
        "https://IDP.acme.example/token",
    ] {
        let xml = fx.sign(&fx.template().with_recipient(other));
        assert_eq!(
            fx.check(&xml).unwrap_err(),
            SamlError::RecipientMismatch,
            "{other}"
        );
        // ... accepted by a validator configured with that recipient as an alias.
        let alias = fx.validator.clone().with_recipient(other);
        alias.validate(xml.as_bytes(), CLIENT, NOW).unwrap();
    }
    // No Recipient at all.
    let mut none = fx.template();
    none.recipient = None;
    assert_eq!(
        fx.check(&fx.sign(&none)).unwrap_err(),
        SamlError::Missing {
            element: "Recipient"
        }
    );
    // A validator with no recipient configured accepts nothing.
    let unconfigured = SamlAssertionValidator::new(IDP)
        .with_key(fx.key.verifying_key().clone())
        .with_audience(SP, CLIENT);
    assert_eq!(
        unconfigured
            .validate(fx.sign(&fx.template()).as_bytes(), CLIENT, NOW)
            .unwrap_err(),
        SamlError::RecipientMismatch
    );
    // One bearer confirmation for this endpoint among others is enough.
    let two = fx.sign_edited(|x| {
        x.replace(
            "<saml:SubjectConfirmation ",
            "<saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\"><saml:SubjectConfirmationData NotOnOrAfter=\"2026-01-01T00:05:00Z\" Recipient=\"https://elsewhere.example/acs\"/></saml:SubjectConfirmation><saml:SubjectConfirmation ",
        )
    });
    fx.check(&two).unwrap();
}

// ----- bounded work (worst input of the accepted size) -------------------------------------

/// TX-4: the worst input of the accepted size (see `benches/support/worst.rs`) is refused as
/// a bad signature when forged, before its body is canonicalized; signed by the IdP, the same
/// body is accepted. The bench `validate_worst` times both.
#[test]
fn tx4_worst_case_input_is_refused_by_the_signature_check() {
    let w = worst::WorstCase::new();
    assert!(w.forged.len() > 63 * 1024, "{}", w.forged.len());
    assert_eq!(
        w.validator
            .validate(w.forged.as_bytes(), worst::WORST_CLIENT, worst::WORST_NOW)
            .unwrap_err(),
        SamlError::BadSignature
    );
    let id = w
        .validator
        .validate(w.signed.as_bytes(), worst::WORST_CLIENT, worst::WORST_NOW)
        .unwrap();
    assert_eq!(id.name_id.value, worst::WORST_USER);
}

/// TX-4: one step past each limit the worst input sits at is refused with its own error;
/// at the limit, the same shape only fails the (forged) signature.
#[test]
fn tx4_each_limit_of_the_worst_input_has_a_typed_error() {
    let w = worst::WorstCase::new();
    let body = worst::BODY_PREFIXES;
    let full = worst::full_prefix_list();
    let check = |xml: &str| {
        w.validator
            .validate(xml.as_bytes(), worst::WORST_CLIENT, worst::WORST_NOW)
    };
    let at_limit = w.forged_with(MAX_ATTRIBUTES, body, DEFAULT_MAX_DEPTH, &full);
    assert_eq!(check(&at_limit).unwrap_err(), SamlError::BadSignature);

    let attrs = w.forged_with(MAX_ATTRIBUTES + 1, body, DEFAULT_MAX_DEPTH, &full);
    assert_eq!(
        check(&attrs).unwrap_err(),
        SamlError::TooManyAttributes {
            max: MAX_ATTRIBUTES
        }
    );
    let namespaces = w.forged_with(MAX_ATTRIBUTES, body + 1, DEFAULT_MAX_DEPTH, &full);
    assert_eq!(
        check(&namespaces).unwrap_err(),
        SamlError::TooManyNamespaces {
            max: MAX_NAMESPACES
        }
    );
    let deep = w.forged_with(MAX_ATTRIBUTES, body, DEFAULT_MAX_DEPTH + 1, &full);
    assert_eq!(
        check(&deep).unwrap_err(),
        SamlError::TooDeep {
            max: DEFAULT_MAX_DEPTH
        }
    );
    let mut long = full.clone();
    long.push("p20".into());
    let long = w.forged_with(MAX_ATTRIBUTES, body, DEFAULT_MAX_DEPTH, &long);
    assert_eq!(
        check(&long).unwrap_err(),
        SamlError::PrefixListTooLong {
            count: MAX_INCLUSIVE_PREFIXES + 1,
            max: MAX_INCLUSIVE_PREFIXES
        }
    );
    // A prefix declared nowhere: refused while canonicalizing `SignedInfo`, before the
    // signature is checked.
    let mut stray = full.clone();
    stray.pop();
    stray.push("nowhere".into());
    let stray = w.forged_with(MAX_ATTRIBUTES, body, DEFAULT_MAX_DEPTH, &stray);
    assert_eq!(check(&stray).unwrap_err(), SamlError::PrefixNotInScope);
}

/// TX-4: a prefix list with in-scope prefixes (`#default`, `saml`) on a properly signed
/// assertion still verifies (the third-party xmlsec1 vector carries one too).
#[test]
fn tx4_in_scope_prefix_lists_verify() {
    let xml = vector("xmlsec1-rsa-sha256-inclusive-prefixes.xml");
    assert!(xml.contains("PrefixList"));
    vector_validator()
        .validate(xml.as_bytes(), CLIENT, NOW.plus(60))
        .unwrap();
}

// ----- configuration extremes: nothing panics -------------------------------------------

/// Every knob at its extreme values, each with a valid and an invalid assertion: no panic, no
/// overflow, a sensible result (clamped caps, saturating time arithmetic).
#[test]
fn knobs_at_extreme_values_never_panic() {
    let fx = Fx::es256();
    let good = fx.sign(&fx.template());
    let bad = good.replace(USER, "mallory@acme.example");
    let run = |v: &SamlAssertionValidator| {
        (
            v.validate(good.as_bytes(), CLIENT, NOW),
            v.validate(bad.as_bytes(), CLIENT, NOW),
            v.validate_base64url(&ema_jose::base64url::encode(good.as_bytes()), CLIENT, NOW),
        )
    };
    let base = fx.validator.clone();
    for leeway in [Duration::ZERO, Duration::MAX, Duration::from_secs(u64::MAX)] {
        let (g, b, t) = run(&base.clone().with_leeway(leeway));
        assert!(g.is_ok() && t.is_ok(), "leeway {leeway:?}");
        assert_eq!(b.unwrap_err(), SamlError::DigestMismatch);
    }
    for max in [Duration::MAX, Duration::from_secs(u64::MAX)] {
        let (g, b, _) = run(&base.clone().with_max_lifetime(max));
        assert!(g.is_ok());
        assert_eq!(b.unwrap_err(), SamlError::DigestMismatch);
        let (g, b, _) = run(&base.clone().with_max_auth_age(Some(max)));
        assert!(g.is_ok(), "max_auth_age {max:?}");
        assert_eq!(b.unwrap_err(), SamlError::DigestMismatch);
    }
    // Zero lifetime or auth age: every assertion is too long-lived or too old.
    let (g, b, _) = run(&base.clone().with_max_lifetime(Duration::ZERO));
    assert!(matches!(g.unwrap_err(), SamlError::BadLifetime { .. }));
    assert_eq!(b.unwrap_err(), SamlError::DigestMismatch);
    let late = base.clone().with_max_auth_age(Some(Duration::ZERO));
    let (g, b, _) = run(&late);
    assert!(g.is_ok(), "authenticated at NOW, within the leeway");
    assert_eq!(b.unwrap_err(), SamlError::DigestMismatch);
    assert!(matches!(
        late.validate(good.as_bytes(), CLIENT, NOW.plus(31)),
        Err(SamlError::AuthnInstant { .. })
    ));
    // Sizes: clamped to MAX_LEN; zero refuses everything.
    let (g, b, t) = run(&base.clone().with_max_len(usize::MAX));
    assert!(g.is_ok() && t.is_ok());
    assert_eq!(b.unwrap_err(), SamlError::DigestMismatch);
    let huge = format!("{}{}", " ".repeat(MAX_LEN), good);
    assert_eq!(
        base.clone()
            .with_max_len(usize::MAX)
            .validate(huge.as_bytes(), CLIENT, NOW)
            .unwrap_err(),
        SamlError::TooLarge {
            len: huge.len(),
            max: MAX_LEN
        }
    );
    let (g, b, t) = run(&base.clone().with_max_len(0));
    assert_eq!(
        g.unwrap_err(),
        SamlError::TooLarge {
            len: good.len(),
            max: 0
        }
    );
    assert!(matches!(b.unwrap_err(), SamlError::TooLarge { .. }));
    assert!(matches!(t.unwrap_err(), SamlError::TooLarge { .. }));
    // Depth: clamped to MAX_DEPTH; zero refuses everything.
    let (g, b, t) = run(&base.clone().with_max_depth(usize::MAX));
    assert!(g.is_ok() && t.is_ok());
    assert_eq!(b.unwrap_err(), SamlError::DigestMismatch);
    let (g, b, _) = run(&base.clone().with_max_depth(0));
    assert_eq!(g.unwrap_err(), SamlError::TooDeep { max: 0 });
    assert_eq!(b.unwrap_err(), SamlError::TooDeep { max: 0 });
    // Time itself at the extremes.
    for now in [
        UnixTime::from_secs(0),
        UnixTime::MAX,
        UnixTime::from_secs(u64::MAX),
    ] {
        let v = base.clone().with_max_auth_age(Some(Duration::MAX));
        assert!(v.validate(good.as_bytes(), CLIENT, now).is_err());
    }
}

/// The signer's time knobs at their extremes: a time past the year 9999 is refused as
/// `Signing` (no overflow, no endless date arithmetic); a zero lifetime signs and is refused
/// by the validator.
#[test]
fn signer_knobs_at_extreme_values_never_panic() {
    let fx = Fx::es256();
    for t in [
        fx.template().with_lifetime(u64::MAX),
        fx.template().with_confirmation_lifetime(u64::MAX),
        fx.template()
            .with_authn_instant(UnixTime::from_secs(u64::MAX)),
        fx.template().with_not_before(UnixTime::from_secs(u64::MAX)),
        AssertionTemplate::new(USER, SP, UnixTime::from_secs(u64::MAX)),
    ] {
        assert_eq!(fx.signer.sign(&t).unwrap_err(), SamlError::Signing);
    }
    let empty = fx.sign(&fx.template().with_lifetime(0));
    assert!(matches!(
        fx.check(&empty).unwrap_err(),
        SamlError::Expired { .. } | SamlError::BadLifetime { .. }
    ));
    // Positive control: the defaults sign and validate.
    fx.check(&fx.sign(&fx.template())).unwrap();
}

/// A document nested as deep as the raised depth knob allows (clamped to `MAX_DEPTH`), signed
/// so that every walk (scan, canonicalization, digest) runs over it, validates on an ordinary
/// test thread; one level more is refused cleanly. Far deeper input is refused by the
/// pre-scan before the parser runs.
#[test]
fn deep_nesting_at_the_cap_is_handled_on_a_normal_thread() {
    let fx = Fx::es256();
    let v = fx.validator.clone().with_max_depth(usize::MAX);
    // The root is level 1; the chain sits under `AttributeStatement` (level 2).
    let nest = |levels: usize| {
        fx.sign_edited(|x| {
            x.replace(
                "<saml:AttributeStatement>",
                &format!(
                    "<saml:AttributeStatement>{}{}",
                    "<x>".repeat(levels),
                    "</x>".repeat(levels)
                ),
            )
        })
    };
    let at_cap = nest(MAX_DEPTH - 2);
    assert_eq!(
        v.validate(at_cap.as_bytes(), CLIENT, NOW)
            .unwrap()
            .name_id
            .value,
        USER
    );
    let over = nest(MAX_DEPTH - 1);
    assert_eq!(
        v.validate(over.as_bytes(), CLIENT, NOW).unwrap_err(),
        SamlError::TooDeep { max: MAX_DEPTH }
    );
    let absurd = format!("{}{}", "<x>".repeat(100_000), "</x>".repeat(100_000));
    assert_eq!(
        v.clone()
            .with_max_len(usize::MAX)
            .validate(absurd.as_bytes(), CLIENT, NOW)
            .unwrap_err(),
        SamlError::TooDeep { max: MAX_DEPTH }
    );
}
