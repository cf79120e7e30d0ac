//! The seed generator for `fuzz/corpus/`. Ignored by default; regenerate with
//!
//! ```text
//! cargo test -p ema-fuzz --test replay -- --ignored generate_seeds
//! ```
//!
//! The Wycheproof seeds are taken from the C2SP Wycheproof JOSE vectors vendored in
//! `crates/ema-jose/tests/data/wycheproof`; `WYCHEPROOF_DIR` (relative to the workspace root)
//! points at another copy of them instead. Seeds are written under fixed names and overwrite the previous ones; files of other
//! names (entries the fuzzer found, named by their SHA-1) are left alone. Signatures change on
//! every run (ECDSA is randomized, and keys other than the fixed one are generated afresh).

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ema_fuzz::{FIXED_AUDIENCE, FIXED_ISSUER, FIXED_NOW};
use ema_jose::{Algorithm, SigningKey, TokenKind, base64url, typ};
use serde_json::{Map, Value, json};

/// The private half of `ema_fuzz::FIXED_ES256_JWK` (PKCS#8, base64). A throwaway key that signs
/// fuzz seeds and nothing else.
const FIXED_ES256_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg44qMwQeFf7Br6235vh+uQ/thpmagaV5TG+bY/Sn0hZKhRANCAATwpfjbPd+LamPhsMqCe4TST6anla6JRV6EfTLMIQhTRsukVmt/Pt5kx/d2bHduvHVIvj5fozlJxuZBMO2MSZcv";

/// Seeds stay well under libFuzzer's default input length and the 16 KiB token cap.
const MAX_SEED_LEN: usize = 16 * 1024;

fn fixed_key() -> SigningKey {
    let der = base64::engine::general_purpose::STANDARD
        .decode(FIXED_ES256_PKCS8)
        .unwrap();
    SigningKey::from_pkcs8_der(Algorithm::ES256, Some("fuzz-es256".into()), &der).unwrap()
}

struct Corpus {
    dir: PathBuf,
    written: usize,
}

impl Corpus {
    fn open(target: &str) -> Self {
        let dir = super::fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        Self { dir, written: 0 }
    }

    fn put(&mut self, name: &str, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        assert!(
            bytes.len() < MAX_SEED_LEN,
            "seed {name} is {} bytes",
            bytes.len()
        );
        fs::write(self.dir.join(name), bytes).unwrap();
        self.written += 1;
    }
}

impl Drop for Corpus {
    fn drop(&mut self) {
        println!("{}: {} seeds", self.dir.display(), self.written);
    }
}

fn b64(bytes: &[u8]) -> String {
    base64url::encode(bytes)
}

/// A compact JWS over the exact header and payload texts given, signed by `key` whatever the
/// header says (so a policy, not the signature, is what must refuse it).
fn sign_raw(key: &SigningKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = key.sign_bytes(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&signature))
}

/// A compact JWS with a junk signature.
fn unsigned(header: &str, payload: &str) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        b64(b"not a signature")
    )
}

/// The ID-JAG of EMA §4 (hop 2): twelve claims, valid at `FIXED_NOW`.
fn id_jag_claims() -> Map<String, Value> {
    let now = FIXED_NOW.as_secs();
    let Value::Object(claims) = json!({
        "iss": FIXED_ISSUER,
        "sub": "00u8k2Lq91",
        "aud": FIXED_AUDIENCE,
        "client_id": "tc_5f2a91",
        "jti": "7c1e0b6a-3d0f-4e55-9a41-2b8f0e6d1c22",
        "iat": now - 10,
        "exp": now + 290,
        "resource": "https://mcp.tasks.example/mcp",
        "scope": "tasks.read",
        "auth_time": now - 600,
        "amr": ["pwd", "otp"],
        "email": "ana@acme.example"
    }) else {
        unreachable!()
    };
    claims
}

/// The ID-JAG claims with some members replaced (`null` removes one).
fn id_jag_with(changes: Value) -> String {
    let mut claims = id_jag_claims();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.remove(name);
        } else {
            claims.insert(name.clone(), value.clone());
        }
    }
    Value::Object(claims).to_string()
}

fn id_jag_header(key: &SigningKey) -> String {
    json!({"alg": key.algorithm().name(), "typ": typ::ID_JAG, "kid": key.kid()}).to_string()
}

#[test]
#[ignore = "writes fuzz/corpus; run explicitly to regenerate the seeds"]
fn generate_seeds() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wycheproof = std::env::var("WYCHEPROOF_DIR").map_or_else(
        |_| workspace.join("crates/ema-jose/tests/data/wycheproof"),
        |dir| workspace.join(dir),
    );
    jws_compact_seeds(&wycheproof);
    jws_verify_seeds();
    jwt_oracle_seeds();
    jwk_set_seeds(&wycheproof);
    saml_assertion_seeds();
}

/// Only the `saml_assertion` seeds (no Wycheproof needed):
/// `cargo test -p ema-fuzz --test replay -- --ignored generate_saml_seeds`.
#[test]
#[ignore = "writes fuzz/corpus; run explicitly to regenerate the seeds"]
fn generate_saml_seeds() {
    saml_assertion_seeds();
}

/// Only the signing-mode `jwt_oracle` seeds (deterministic: Ed25519):
/// `cargo test -p ema-fuzz --test replay -- --ignored generate_jwt_oracle_seeds`.
#[test]
#[ignore = "writes fuzz/corpus; run explicitly to regenerate the seeds"]
fn generate_jwt_oracle_seeds() {
    jwt_oracle_seeds();
}

/// Assertions signed by the fixed key for the fixed validator (valid at `FIXED_NOW`), one
/// variant per defence of ema-saml, and the third-party vectors of `crates/ema-saml/tests`.
fn saml_assertion_seeds() {
    use ema_fuzz::{FIXED_SAML_ISSUER, FIXED_SAML_RECIPIENT, FIXED_SAML_SP};
    use ema_saml::{AssertionTemplate, SamlAssertionSigner};
    let mut corpus = Corpus::open("saml_assertion");
    let signer = SamlAssertionSigner::new(FIXED_SAML_ISSUER, std::sync::Arc::new(fixed_key()));
    let template = AssertionTemplate::new("00u8k2Lq91", FIXED_SAML_SP, FIXED_NOW)
        .with_id("_fuzz1")
        .with_recipient(FIXED_SAML_RECIPIENT)
        .with_session_index("_s1")
        .with_attribute("email", ["ana@acme.example"])
        .with_attribute("groups", ["eng", "R&D <west>"]);
    let valid = signer.sign(&template).unwrap();
    corpus.put("valid-es256", &valid);
    corpus.put("valid-base64url", base64url::encode(valid.as_bytes()));
    let sig_start = valid.find("<ds:Signature").unwrap();
    let sig_end = valid.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let signature = &valid[sig_start..sig_end];
    let unsigned = format!("{}{}", &valid[..sig_start], &valid[sig_end..]);
    let variants: Vec<(&str, String)> = vec![
        ("unsigned", unsigned.clone()),
        ("comment-in-nameid", valid.replace("00u8k2Lq91", "00u8k2<!---->Lq91")),
        ("pi", valid.replace("<saml:Subject>", "<saml:Subject><?x y?>")),
        (
            "dtd-xxe",
            format!("<!DOCTYPE a [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}", valid.replace("00u8k2Lq91", "&e;")),
        ),
        ("doctype-empty", format!("<!DOCTYPE saml:Assertion>{valid}")),
        ("two-signatures", valid.replacen(signature, &format!("{signature}{signature}"), 1)),
        (
            "signature-in-subject",
            unsigned.replace("<saml:Subject>", &format!("<saml:Subject>{signature}")),
        ),
        (
            "wrapped-in-advice",
            format!(
                "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_evil\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\"><saml:Issuer>{FIXED_SAML_ISSUER}</saml:Issuer>{signature}<saml:Advice>{valid}</saml:Advice></saml:Assertion>"
            ),
        ),
        ("duplicate-id", valid.replace("<saml:AttributeStatement>", "<saml:AttributeStatement><saml:Attribute Name=\"x\" ID=\"_fuzz1\"/>")),
        ("object-in-signature", valid.replace("</ds:SignatureValue>", "</ds:SignatureValue><ds:Object>x</ds:Object>")),
        ("sha1-digest", valid.replace("http://www.w3.org/2001/04/xmlenc#sha256", "http://www.w3.org/2000/09/xmldsig#sha1")),
        ("rsa-sha1", valid.replace("http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256", "http://www.w3.org/2000/09/xmldsig#rsa-sha1")),
        ("tampered-nameid", valid.replace("00u8k2Lq91", "00uAdm1n00")),
        ("version-1-1", valid.replace("Version=\"2.0\"", "Version=\"1.1\"")),
        (
            "encrypted-assertion",
            "<saml:EncryptedAssertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\"><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"/></saml:EncryptedAssertion>".to_owned(),
        ),
        ("recipient-other", signer.sign(&template.clone().with_recipient("https://desk.acme.example/acs")).unwrap()),
        (
            "prefix-list-long",
            valid.replace(
                "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
                &format!(
                    "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"><ec:InclusiveNamespaces xmlns:ec=\"http://www.w3.org/2001/10/xml-exc-c14n#\" PrefixList=\"#default saml ds{}\"/></ds:CanonicalizationMethod>",
                    " saml".repeat(20)
                ),
            ),
        ),
        (
            "many-namespaces",
            valid.replacen(
                "<saml:Assertion ",
                &format!(
                    "<saml:Assertion{} ",
                    (0..40).map(|k| format!(" xmlns:n{k}=\"urn:n{k}\"")).collect::<String>()
                ),
                1,
            ),
        ),
        ("deep", valid.replace("<saml:Subject>", &format!("<saml:Subject>{}{}", "<x>".repeat(40), "</x>".repeat(40)))),
    ];
    for (name, xml) in variants {
        corpus.put(name, xml);
    }
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ema-saml/tests/vectors");
    for name in [
        "signxml-ecdsa-sha256.xml",
        "xmlsec1-rsa-sha256-inclusive-prefixes.xml",
    ] {
        let xml = fs::read(vectors.join(name)).unwrap();
        corpus.put(&format!("vector-{}", name.trim_end_matches(".xml")), xml);
    }
}

fn jws_compact_seeds(wycheproof: &Path) {
    let mut corpus = Corpus::open("jws_compact");
    let claims = Value::Object(id_jag_claims()).to_string();

    // Valid tokens: every algorithm, then every token kind's `typ`.
    for alg in Algorithm::ALL {
        let key = SigningKey::generate(alg, Some(format!("k-{alg}"))).unwrap();
        let token = sign_raw(&key, &id_jag_header(&key), &claims);
        corpus.put(&format!("valid-{alg}"), token);
    }
    let es256 = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
    let kinds = [
        ("id-jag", TokenKind::IdJag),
        ("access-token", TokenKind::AccessToken),
        ("id-token", TokenKind::IdToken),
        ("client-assertion", TokenKind::ClientAssertion),
        ("dpop", TokenKind::DpopProof),
    ];
    for (name, kind) in kinds {
        let token = es256.sign_jwt(kind.typ(), &id_jag_claims()).unwrap();
        corpus.put(&format!("typ-{name}"), token);
    }
    let dpop_header = json!({"alg": "ES256", "typ": typ::DPOP,
        "jwk": es256.verifying_key().public_jwk()});
    corpus.put(
        "typ-dpop-with-jwk",
        sign_raw(
            &es256,
            &dpop_header.to_string(),
            r#"{"htm":"POST","htu":"https://as.example/token","iat":1767225600,"jti":"x"}"#,
        ),
    );
    for (name, typ) in [
        ("typ-application-prefix", "application/oauth-id-jag+jwt"),
        ("typ-upper-case", "OAUTH-ID-JAG+JWT"),
        ("typ-legacy", "oauth-itag+jwt"),
    ] {
        let header = json!({"alg": "ES256", "typ": typ}).to_string();
        corpus.put(name, sign_raw(&es256, &header, &claims));
    }
    corpus.put(
        "typ-absent",
        sign_raw(&es256, r#"{"alg":"ES256"}"#, &claims),
    );

    let good = sign_raw(&es256, &id_jag_header(&es256), &claims);
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);

    // Base64url that is not canonical.
    corpus.put("b64-padding", format!("{h}=.{p}.{s}"));
    corpus.put("b64-std-alphabet", format!("{h}.{p}.+/{}", &s[2..]));
    corpus.put("b64-space", format!("{h}.{} {}.{s}", &p[..10], &p[10..]));
    corpus.put("b64-newline", format!("{h}\n.{p}.{s}"));
    corpus.put("b64-trailing-bits", format!("{h}.QR.{s}"));
    corpus.put("b64-impossible-length", format!("{h}.Q.{s}"));
    corpus.put("b64-question-mark", format!("{h}.{p}?.{s}"));

    // Segment counts and empty parts.
    corpus.put("segments-1", h);
    corpus.put("segments-2", format!("{h}.{p}"));
    corpus.put("segments-4", format!("{h}.{p}.{s}.{s}"));
    corpus.put("segments-5-jwe", format!("{h}..{p}.{p}.{s}"));
    corpus.put("empty-signature", format!("{h}.{p}."));
    corpus.put("empty-payload", format!("{h}..{s}"));
    corpus.put("empty-header", format!(".{p}.{s}"));
    corpus.put("dots-only", "..");

    // Header JSON.
    let header_cases = [
        ("dup-alg", r#"{"alg":"ES256","alg":"none"}"#),
        ("dup-escaped", r#"{"alg":"ES256","\u0061lg":"ES256"}"#),
        ("dup-nested", r#"{"alg":"ES256","x":{"a":1,"a":1}}"#),
        ("alg-none", r#"{"alg":"none","typ":"oauth-id-jag+jwt"}"#),
        ("alg-hs256", r#"{"alg":"HS256","typ":"oauth-id-jag+jwt"}"#),
        ("alg-lower-case", r#"{"alg":"es256"}"#),
        ("alg-number", r#"{"alg":256}"#),
        ("alg-missing", r#"{"typ":"JWT"}"#),
        ("typ-number", r#"{"alg":"ES256","typ":1}"#),
        ("kid-null", r#"{"alg":"ES256","kid":null}"#),
        ("cty-object", r#"{"alg":"ES256","cty":{}}"#),
        (
            "crit",
            r#"{"alg":"ES256","typ":"oauth-id-jag+jwt","crit":["exp"],"exp":1}"#,
        ),
        ("b64-false", r#"{"alg":"ES256","b64":false,"crit":["b64"]}"#),
        ("zip", r#"{"alg":"ES256","zip":"DEF"}"#),
        ("enc", r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#),
        (
            "jku",
            r#"{"alg":"ES256","typ":"oauth-id-jag+jwt","jku":"https://evil.example/jwks"}"#,
        ),
        (
            "x5u",
            r#"{"alg":"RS256","x5u":"https://evil.example/cert"}"#,
        ),
        ("x5c", r#"{"alg":"RS256","x5c":["MIIB"]}"#),
        (
            "x5t",
            r#"{"alg":"ES256","typ":"oauth-id-jag+jwt","x5t":"abc","x5t#S256":"def"}"#,
        ),
        (
            "jwk",
            r#"{"alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}}"#,
        ),
        ("array", r#"["alg","ES256"]"#),
        ("string", r#""ES256""#),
        ("trailing-garbage", r#"{"alg":"ES256"} x"#),
        ("trailing-comma", r#"{"alg":"ES256",}"#),
        ("lone-surrogate", r#"{"alg":"ES256","kid":"\ud800"}"#),
        ("surrogate-pair", r#"{"alg":"ES256","kid":"\ud83d\ude00"}"#),
        ("bom", "\u{feff}{\"alg\":\"ES256\"}"),
        (
            "whitespace",
            " {\n\t\"alg\" : \"ES256\" ,\r\n\"typ\":\"JWT\"}  ",
        ),
    ];
    for (name, header) in header_cases {
        corpus.put(&format!("header-{name}"), sign_raw(&es256, header, &claims));
    }
    let deep = |depth: usize| {
        format!(
            r#"{{"alg":"ES256","x":{}{}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    };
    corpus.put("header-depth-16", unsigned(&deep(16), &claims));
    corpus.put("header-depth-17", unsigned(&deep(17), &claims));
    corpus.put("header-depth-4000", unsigned(&deep(4000), &claims));
    let header_bytes: Vec<u8> = [&br#"{"alg":"ES256","kid":""#[..], b"\xff\xfe", b"\"}"].concat();
    corpus.put("header-not-utf8", format!("{}.{p}.{s}", b64(&header_bytes)));

    // Claims JSON.
    let es = r#"{"alg":"ES256","typ":"oauth-id-jag+jwt"}"#;
    let claims_cases = [
        (
            "dup-iss",
            r#"{"iss":"https://idp.acme.example","iss":"https://evil.example"}"#.to_owned(),
        ),
        ("dup-nested", r#"{"act":{"sub":"a","sub":"b"}}"#.to_owned()),
        ("array", "[1,2,3]".to_owned()),
        ("number", "1767225600".to_owned()),
        ("not-json", "hello".to_owned()),
        ("exp-string", id_jag_with(json!({"exp": "1767225890"}))),
        ("exp-float", id_jag_with(json!({"exp": 1_767_225_890.5}))),
        ("exp-negative", id_jag_with(json!({"exp": -1}))),
        ("exp-huge", id_jag_with(json!({"exp": 1e300}))),
        ("exp-u64-max", id_jag_with(json!({"exp": u64::MAX}))),
        ("iat-missing", id_jag_with(json!({"iat": null}))),
        (
            "lifetime-too-long",
            id_jag_with(json!({"exp": FIXED_NOW.as_secs() + 7200})),
        ),
        (
            "aud-array-one",
            id_jag_with(json!({"aud": [FIXED_AUDIENCE]})),
        ),
        (
            "aud-array-two",
            id_jag_with(json!({"aud": [FIXED_AUDIENCE, "https://other.example"]})),
        ),
        (
            "aud-nested",
            id_jag_with(json!({"aud": [[FIXED_AUDIENCE]]})),
        ),
        ("iss-array", id_jag_with(json!({"iss": [FIXED_ISSUER]}))),
        (
            "nbf-future",
            id_jag_with(json!({"nbf": FIXED_NOW.as_secs() + 3000})),
        ),
        (
            "sub-id-object",
            id_jag_with(
                json!({"sub_id": {"format": "saml-nameid", "issuer": "https://idp.acme.example/saml", "nameid": "ana"}, "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
            ),
        ),
    ];
    for (name, payload) in claims_cases {
        corpus.put(&format!("claims-{name}"), sign_raw(&es256, es, &payload));
    }
    let deep_claims = |depth: usize| {
        format!(
            r#"{{"act":{}1{}}}"#,
            r#"{"act":"#.repeat(depth - 1),
            "}".repeat(depth - 1)
        )
    };
    corpus.put("claims-depth-16", unsigned(es, &deep_claims(16)));
    corpus.put("claims-depth-17", unsigned(es, &deep_claims(17)));

    // A few Wycheproof JWS vectors whose encodings are the interesting part.
    let doc = read_json(&wycheproof.join("json_web_signature_test.json"));
    let wanted = [
        "InvalidCharacterInsertedInHeader",
        "InvalidCharacterInPayload",
        "ModifiedUnusedBitsInPayload",
        "ValidSpacesInJsonHeader",
        "ValidWhiteSpaceInJsonHeader",
        "algIsNone",
        "emptyPayload",
    ];
    let crypto = read_json(&wycheproof.join("json_web_crypto_test.json"));
    let wanted_crypto = [
        "rejectsAttackerProvidedEmbeddedJwk",
        "rejectsValidJsonSerialization",
        "rejectsExtraEmptyComponent",
        "rejectsNoneAlgorithmAndMissingSignature",
    ];
    for (doc, wanted) in [(&doc, &wanted[..]), (&crypto, &wanted_crypto[..])] {
        for comment in wanted {
            let test = tests(doc)
                .find(|t| t["comment"] == *comment)
                .unwrap_or_else(|| panic!("no Wycheproof test {comment}"));
            let jws = match &test["jws"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            corpus.put(&format!("wycheproof-tc{}", test["tcId"]), jws);
        }
    }
}

fn jws_verify_seeds() {
    let mut corpus = Corpus::open("jws_verify");
    let key = fixed_key();
    assert_eq!(
        key.verifying_key().thumbprint(),
        ema_fuzz::fixed_verifying_key().thumbprint(),
        "FIXED_ES256_PKCS8 is not the private half of FIXED_ES256_JWK"
    );
    let header = id_jag_header(&key);
    let claims = Value::Object(id_jag_claims()).to_string();
    let valid = sign_raw(&key, &header, &claims);
    corpus.put("id-jag-valid", &valid);
    corpus.put(
        "id-jag-valid-sign-jwt",
        key.sign_jwt(TokenKind::IdJag.typ(), &id_jag_claims())
            .unwrap(),
    );

    // Every `typ` the policy must compare (D-8) or refuse (SEC-5).
    for (name, typ) in [
        ("application-prefix", Some("application/oauth-id-jag+jwt")),
        ("mixed-case", Some("OAuth-ID-JAG+JWT")),
        ("access-token", Some(typ::ACCESS_TOKEN)),
        ("jwt", Some(typ::JWT)),
        ("dpop", Some(typ::DPOP)),
        ("client-assertion", Some(typ::CLIENT_ASSERTION)),
        ("absent", None),
    ] {
        let header = json!({"alg": "ES256", "typ": typ, "kid": "fuzz-es256"});
        let mut header = header.as_object().unwrap().clone();
        if typ.is_none() {
            header.remove("typ");
        }
        let token = sign_raw(&key, &Value::Object(header).to_string(), &claims);
        corpus.put(&format!("typ-{name}"), token);
    }

    // Headers the policy refuses although the fixed key signed them.
    for (name, header) in [
        ("alg-none", r#"{"alg":"none","typ":"oauth-id-jag+jwt"}"#),
        ("alg-hs256", r#"{"alg":"HS256","typ":"oauth-id-jag+jwt"}"#),
        (
            "crit",
            r#"{"alg":"ES256","typ":"oauth-id-jag+jwt","crit":["x"],"x":1}"#,
        ),
        (
            "jku",
            r#"{"alg":"ES256","typ":"oauth-id-jag+jwt","jku":"https://evil.example/jwks"}"#,
        ),
        (
            "x5u",
            r#"{"alg":"ES256","typ":"oauth-id-jag+jwt","x5u":"https://evil.example/c"}"#,
        ),
        (
            "x5c",
            r#"{"alg":"ES256","typ":"oauth-id-jag+jwt","x5c":["MIIB"]}"#,
        ),
        (
            "jwk",
            r#"{"alg":"ES256","typ":"oauth-id-jag+jwt","jwk":{"kty":"EC"}}"#,
        ),
        (
            "b64",
            r#"{"alg":"ES256","typ":"oauth-id-jag+jwt","b64":false}"#,
        ),
        (
            "x5t-allowed",
            r#"{"alg":"ES256","typ":"oauth-id-jag+jwt","x5t#S256":"abc"}"#,
        ),
        (
            "dup-typ",
            r#"{"alg":"ES256","typ":"oauth-id-jag+jwt","typ":"at+jwt"}"#,
        ),
    ] {
        corpus.put(&format!("header-{name}"), sign_raw(&key, header, &claims));
    }
    corpus.put(
        "alg-none-unsigned",
        format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"oauth-id-jag+jwt"}"#),
            b64(claims.as_bytes())
        ),
    );

    // The key binds the algorithm (D-19): other algorithms and other keys.
    for alg in [
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::EdDSA,
    ] {
        let other = SigningKey::generate(alg, Some("fuzz-es256".into())).unwrap();
        let token = sign_raw(&other, &id_jag_header(&other), &claims);
        corpus.put(&format!("other-alg-{alg}"), token);
    }
    let other = SigningKey::generate(Algorithm::ES256, Some("fuzz-es256".into())).unwrap();
    corpus.put("other-key-es256", sign_raw(&other, &header, &claims));

    // Signatures and encodings.
    let (input, signature) = valid.rsplit_once('.').unwrap();
    let mut flipped = base64url::decode(signature.as_bytes()).unwrap();
    flipped[10] ^= 1;
    corpus.put("sig-flipped-bit", format!("{input}.{}", b64(&flipped)));
    corpus.put("sig-truncated", format!("{input}.{}", b64(&flipped[..63])));
    corpus.put("sig-zero", format!("{input}.{}", b64(&[0; 64])));
    corpus.put(
        "sig-der",
        format!("{input}.{}", b64(&[0x30, 0x44, 0x02, 0x20])),
    );
    corpus.put("segments-4", format!("{valid}.{signature}"));
    corpus.put("payload-changed", {
        let claims = id_jag_with(json!({"sub": "admin"}));
        format!(
            "{}.{}.{signature}",
            b64(header.as_bytes()),
            b64(claims.as_bytes())
        )
    });

    // Claims that reach each check after a valid signature (EMA §4 steps 7-9, D-7, D-12, D-13).
    let now = FIXED_NOW.as_secs();
    let cases = [
        ("expired", json!({"iat": now - 400, "exp": now - 100})),
        (
            "expired-within-leeway",
            json!({"iat": now - 300, "exp": now - 10}),
        ),
        ("iat-future", json!({"iat": now + 100, "exp": now + 400})),
        ("nbf-future", json!({"nbf": now + 100})),
        ("exp-before-iat", json!({"exp": now - 20})),
        ("lifetime-too-long", json!({"exp": now + 3600})),
        ("exp-missing", json!({"exp": null})),
        ("iat-missing", json!({"iat": null})),
        ("exp-string", json!({"exp": (now + 290).to_string()})),
        (
            "exp-fractional",
            json!({"iat": now as f64 - 9.5, "exp": now as f64 + 290.25}),
        ),
        ("exp-out-of-range", json!({"exp": 253_402_300_800_u64})),
        ("aud-array-one", json!({"aud": [FIXED_AUDIENCE]})),
        (
            "aud-array-two",
            json!({"aud": [FIXED_AUDIENCE, "https://other.example"]}),
        ),
        (
            "aud-trailing-slash",
            json!({"aud": format!("{FIXED_AUDIENCE}/")}),
        ),
        (
            "aud-token-endpoint",
            json!({"aud": format!("{FIXED_AUDIENCE}/token")}),
        ),
        ("aud-missing", json!({"aud": null})),
        ("iss-other", json!({"iss": "https://evil.example"})),
        (
            "iss-upper-case",
            json!({"iss": FIXED_ISSUER.to_uppercase()}),
        ),
        ("iss-number", json!({"iss": 1})),
        ("sub-missing", json!({"sub": null})),
        ("client-id-number", json!({"client_id": 5})),
        ("jti-missing", json!({"jti": null})),
        ("scope-array", json!({"scope": ["tasks.read"]})),
    ];
    for (name, changes) in cases {
        corpus.put(
            &format!("claims-{name}"),
            sign_raw(&key, &header, &id_jag_with(changes)),
        );
    }
    corpus.put(
        "claims-dup-sub",
        sign_raw(
            &key,
            &header,
            &claims.replacen('{', r#"{"sub":"admin","#, 1),
        ),
    );
}

fn jwk_set_seeds(wycheproof: &Path) {
    let mut corpus = Corpus::open("jwk_set");
    let jwks = |keys: Vec<Value>| json!({ "keys": keys }).to_string();
    let public = |alg: Algorithm, kid: &str| {
        let key = SigningKey::generate(alg, Some(kid.into())).unwrap();
        key.verifying_key().public_jwk().clone()
    };

    // One key of each accepted type, alone and together.
    let mut all = Vec::new();
    for (alg, name) in [
        (Algorithm::RS256, "rsa-2048"),
        (Algorithm::PS256, "rsa-2048-ps256"),
        (Algorithm::ES256, "ec-p256"),
        (Algorithm::ES384, "ec-p384"),
        (Algorithm::ES512, "ec-p521"),
        (Algorithm::EdDSA, "okp-ed25519"),
    ] {
        let jwk = public(alg, name);
        corpus.put(
            &format!("jwk-{name}"),
            Value::Object(jwk.clone()).to_string(),
        );
        all.push(Value::Object(jwk));
    }
    corpus.put("jwks-all-types", jwks(all.clone()));

    let rsa = public(Algorithm::RS256, "rsa");
    let ec = public(Algorithm::ES256, "ec");
    let with = |base: &Map<String, Value>, changes: Value| {
        let mut jwk = base.clone();
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                jwk.remove(name);
            } else {
                jwk.insert(name.clone(), value.clone());
            }
        }
        Value::Object(jwk)
    };
    let n = base64url::decode(rsa["n"].as_str().unwrap().as_bytes()).unwrap();
    let x = base64url::decode(ec["x"].as_str().unwrap().as_bytes()).unwrap();

    // Single JWKs under the key policy (D-19).
    let singles = [
        ("no-alg", with(&rsa, json!({"alg": null, "use": null}))),
        ("use-enc", with(&rsa, json!({"use": "enc"}))),
        ("use-number", with(&rsa, json!({"use": 1}))),
        (
            "key-ops-encrypt",
            with(&ec, json!({"key_ops": ["encrypt", "wrapKey"]})),
        ),
        (
            "key-ops-verify",
            with(&ec, json!({"key_ops": ["sign", "verify"], "use": null})),
        ),
        (
            "key-ops-mixed",
            with(&ec, json!({"key_ops": ["verify", 1]})),
        ),
        ("private-d", with(&ec, json!({"d": "AQAB"}))),
        (
            "private-rsa",
            with(
                &rsa,
                json!({"d": "AQAB", "p": "AQAB", "q": "AQAB", "dp": "AQ", "dq": "AQ", "qi": "AQ"}),
            ),
        ),
        (
            "oct",
            json!({"kty": "oct", "k": "c2VjcmV0LWtleS1mb3ItaG1hYw", "alg": "HS256", "kid": "hmac"}),
        ),
        ("rsa-alg-es256", with(&rsa, json!({"alg": "ES256"}))),
        ("rsa-alg-hs256", with(&rsa, json!({"alg": "HS256"}))),
        (
            "rsa-alg-rsa-oaep",
            with(&rsa, json!({"alg": "RSA-OAEP", "use": "enc"})),
        ),
        ("ec-alg-es384", with(&ec, json!({"alg": "ES384"}))),
        (
            "rsa-leading-zero",
            with(&rsa, json!({"n": b64(&[&[0][..], &n].concat())})),
        ),
        (
            "rsa-two-leading-zeros",
            with(&rsa, json!({"n": b64(&[&[0, 0][..], &n].concat())})),
        ),
        ("rsa-1024", with(&rsa, json!({"n": b64(&n[..128])}))),
        ("rsa-8192", with(&rsa, json!({"n": b64(&[0xC7; 1024])}))),
        ("rsa-8200", with(&rsa, json!({"n": b64(&[0xC7; 1025])}))),
        ("rsa-e-1", with(&rsa, json!({"e": "AQ"}))),
        ("rsa-e-even", with(&rsa, json!({"e": "AQAA"}))),
        ("rsa-e-5-bytes", with(&rsa, json!({"e": "AQAAAAE"}))),
        ("rsa-e-leading-zero", with(&rsa, json!({"e": "AAEAAQ"}))),
        (
            "rsa-n-padded-b64",
            with(
                &rsa,
                json!({"n": format!("{}==", rsa["n"].as_str().unwrap())}),
            ),
        ),
        ("ec-off-curve", with(&ec, json!({"y": b64(&[1; 32])}))),
        ("ec-short-x", with(&ec, json!({"x": b64(&x[..31])}))),
        ("ec-missing-y", with(&ec, json!({"y": null}))),
        (
            "ec-secp256k1",
            with(&ec, json!({"crv": "secp256k1", "alg": null})),
        ),
        ("ec-crv-number", with(&ec, json!({"crv": 256}))),
        (
            "okp-x25519",
            json!({"kty": "OKP", "crv": "X25519", "x": b64(&x)}),
        ),
        (
            "okp-ed448",
            json!({"kty": "OKP", "crv": "Ed448", "x": b64(&[9; 57])}),
        ),
        ("kty-missing", with(&ec, json!({"kty": null}))),
        ("kty-lower-case", with(&ec, json!({"kty": "ec"}))),
        ("kid-number", with(&ec, json!({"kid": 7}))),
        (
            "extra-members",
            with(
                &ec,
                json!({"x5t": "abc", "ext": true, "nested": {"a": [1, {"b": null}]}}),
            ),
        ),
    ];
    let mut mixed = Vec::new();
    for (name, jwk) in singles {
        corpus.put(&format!("jwk-{name}"), jwk.to_string());
        mixed.push(jwk);
    }
    corpus.put("jwks-mixed-policy", jwks(mixed));

    // Whole documents.
    let dup = with(&ec, json!({"kid": "dup"}));
    corpus.put(
        "jwks-duplicate-kid",
        jwks(vec![
            dup.clone(),
            with(&rsa, json!({"kid": "dup"})),
            Value::Object(ec.clone()),
        ]),
    );
    corpus.put(
        "jwks-same-key-twice-no-kid",
        jwks(vec![
            with(&ec, json!({"kid": null})),
            with(&ec, json!({"kid": null})),
        ]),
    );
    corpus.put("jwks-empty", r#"{"keys":[]}"#);
    corpus.put("jwks-no-keys", r#"{"issuer":"https://idp.example"}"#);
    corpus.put("jwks-keys-object", r#"{"keys":{"kty":"EC"}}"#);
    corpus.put(
        "jwks-entries-not-objects",
        r#"{"keys":[1,"a",null,[],true]}"#,
    );
    corpus.put("jwks-dup-keys-member", r#"{"keys":[],"keys":[]}"#);
    corpus.put("jwks-top-level-array", r#"[{"keys":[]}]"#);
    corpus.put("jwks-too-many-keys", jwks(vec![json!({}); 101]));
    corpus.put(
        "jwks-depth-9",
        format!(
            r#"{{"keys":[{{"kty":"EC","x":{}1{}}}]}}"#,
            "[".repeat(6),
            "]".repeat(6)
        ),
    );

    // The keys of the Wycheproof JOSE vectors, as JWKS documents. Private members are
    // stripped (the key policy refuses them, which the own seeds above already cover) so that
    // the public key behind each group is what gets exercised. A group whose keys have the same
    // shape as an earlier group's of the same name (HS256 three times over) is dropped.
    let mut seen = std::collections::BTreeSet::new();
    for file in [
        "json_web_key_test.json",
        "json_web_signature_test.json",
        "json_web_crypto_test.json",
    ] {
        let doc = read_json(&wycheproof.join(file));
        for group in doc["testGroups"].as_array().unwrap() {
            for member in ["public", "private"] {
                let Some(key) = group.get(member) else {
                    continue;
                };
                let keys = match key.get("keys") {
                    Some(Value::Array(keys)) => keys.clone(),
                    _ => vec![key.clone()],
                };
                let keys: Vec<Value> = keys.iter().map(strip_private).collect();
                let comment = group["comment"].as_str().unwrap().to_owned();
                let name = format!("wycheproof-{:02}-{comment}", seen.len() + 1);
                if seen.insert((comment, keys.iter().map(shape).collect::<Vec<_>>())) {
                    corpus.put(&name, jwks(keys));
                }
            }
        }
    }
}

/// What sets one JWK apart for the key policy: its member names, `kty`, `crv`, `use`,
/// `key_ops` and algorithm family.
fn shape(jwk: &Value) -> String {
    let jwk = jwk.as_object().unwrap();
    let names: Vec<&str> = jwk.keys().map(String::as_str).collect();
    let alg = jwk.get("alg").and_then(Value::as_str).unwrap_or("");
    format!(
        "{names:?} {} {} {} {} {}",
        jwk["kty"],
        jwk.get("crv").unwrap_or(&Value::Null),
        jwk.get("use").unwrap_or(&Value::Null),
        jwk.get("key_ops").unwrap_or(&Value::Null),
        alg.get(..2).unwrap_or(alg)
    )
}

fn strip_private(jwk: &Value) -> Value {
    let mut jwk = jwk.as_object().unwrap().clone();
    for name in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
        jwk.remove(name);
    }
    Value::Object(jwk)
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn tests(doc: &Value) -> impl Iterator<Item = &Value> {
    doc["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tests"].as_array().unwrap())
}

/// `jwt_oracle` seeds in the signing mode (`ema_fuzz::ORACLE_SIGN_MODE`, header,
/// `ema_fuzz::ORACLE_SEPARATOR`, claims): the body signs them, so every mutation of the header
/// or the claims keeps a valid signature. The compact seeds of this target are the `jws_verify`
/// files, copied. Accepted ones cover the claim shapes both libraries must agree on; refused
/// ones start mutations next to a check.
fn jwt_oracle_seeds() {
    let mut corpus = Corpus::open("jwt_oracle");
    let header = json!({"alg": "EdDSA", "typ": typ::ID_JAG, "kid": "fuzz-ed25519"}).to_string();
    let now = FIXED_NOW.as_secs();
    let seed = |header: &str, claims: &str| {
        let mut bytes = vec![ema_fuzz::ORACLE_SIGN_MODE];
        bytes.extend_from_slice(header.as_bytes());
        bytes.push(ema_fuzz::ORACLE_SEPARATOR);
        bytes.extend_from_slice(claims.as_bytes());
        bytes
    };
    let claims = Value::Object(id_jag_claims()).to_string();
    corpus.put("sign-valid", seed(&header, &claims));
    for (name, changes) in [
        ("exp-fractional", json!({"exp": (now + 290) as f64 + 0.75})),
        ("exp-within-leeway", json!({"exp": now - 20})),
        ("nbf-past", json!({"nbf": now - 5})),
        ("aud-array-one", json!({"aud": [FIXED_AUDIENCE]})),
        ("sub-number", json!({"sub": 7})),
        ("sub-array", json!({"sub": ["pwd", "otp"]})),
        (
            "nested",
            json!({"cnf": {"jkt": "x", "a": [1, 2.5e3, {"b": null}]}}),
        ),
        ("unicode", json!({"name": "Ana \u{e9}\u{1f600}\"\\/"})),
        ("iss-array", json!({"iss": [FIXED_ISSUER]})),
        ("exp-missing", json!({"exp": null})),
    ] {
        corpus.put(
            &format!("sign-{name}"),
            seed(&header, &id_jag_with(changes)),
        );
    }
    corpus.put(
        "sign-numbers-as-text",
        seed(
            &header,
            &format!(
                r#"{{"iss":"{FIXED_ISSUER}","aud":"{FIXED_AUDIENCE}","sub":"u","client_id":"c","jti":"j","iat":{}e0,"exp":{}.0,"n":-0,"m":1E400}}"#,
                now - 10,
                now + 290
            ),
        ),
    );
    corpus.put(
        "sign-escaped-members",
        seed(
            r#"{"alg":"EdDSA","typ":"oauth-id-jag+jwt","kid":"fuzz-\u0065d25519","x":{"y":[]}}"#,
            &claims.replace("\"iss\"", "\"i\\u0073s\""),
        ),
    );
    for (name, extra) in [
        ("header-x5t", r#","x5t":"abc""#),
        ("header-x5t-number", r#","x5t":5"#),
        ("header-nonce-number", r#","nonce":5"#),
        ("header-url", r#","url":"https://x.example""#),
        ("header-enc", r#","enc":"A128GCM""#),
        ("header-zip", r#","zip":"DEF""#),
        ("header-crit-b64", r#","crit":["b64"],"b64":true"#),
        ("header-cty", r#","cty":"JWT""#),
        ("header-unknown", r#","ext":{"k":"v"}"#),
    ] {
        let header =
            format!(r#"{{"alg":"EdDSA","typ":"oauth-id-jag+jwt","kid":"fuzz-ed25519"{extra}}}"#);
        corpus.put(&format!("sign-{name}"), seed(&header, &claims));
    }
}
