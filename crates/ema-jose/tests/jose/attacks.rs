//! A table-driven attack suite. Each row is a name (citing the rule it defends), a token built
//! here with a real `SigningKey` and hand-crafted headers, payloads and base64, and the exact
//! error variant it must produce. Every token goes through the same verifier: strict parse,
//! header policy + signature, then the claim checks (validity window at the fixed `NOW`, issuer,
//! single audience). Positive controls show that the valid token passes each policy.

use std::fmt::Write as _;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use ema_jose::{
    Algorithm, AlgorithmSet, AudienceRule, ClaimError, HeaderError, HeaderPolicy, JsonError,
    JwkError, JwkSet, KeyLookupError, NumericDateError, ParseError, ParseOptions, Part, SigningKey,
    TimeError, TimeOptions, TokenKind, TypRule, UnverifiedJwt, VerifiedJwt, VerifyError,
    VerifyingKey,
};
use serde_json::{Map, Value, json};

use crate::oracle::{self, Oracle};
use crate::{NOW, b64, obj};

const ISS: &str = "https://idp.example";
const AUD: &str = "https://as.example";
const ID_JAG: &str = "oauth-id-jag+jwt";

/// Where a token was refused.
#[derive(Debug)]
enum Failure {
    Parse(ParseError),
    /// The issuer's key set gave no key for the token (rows with a key set only).
    Lookup(KeyLookupError),
    Verify(VerifyError),
    Claims(ClaimError),
}

type Check = Box<dyn Fn(&Failure) -> bool>;

enum Expect {
    Pass,
    Fail(&'static str, Check),
}

/// `fails!(pattern)` / `fails!(pattern if guard)`: the row must fail with exactly this variant.
macro_rules! fails {
    ($($pat:tt)+) => {
        Expect::Fail(
            stringify!($($pat)+),
            Box::new(move |f: &Failure| matches!(f, $($pat)+)),
        )
    };
}

/// Where a row's verification key comes from.
enum KeyFrom {
    /// Handed over directly.
    Direct(Arc<VerifyingKey>),
    /// Looked up in this issuer key set by the token's `kid` and `alg`, as the validators do.
    Set(JwkSet),
}

struct Row {
    name: String,
    token: String,
    policy: HeaderPolicy,
    key: KeyFrom,
    options: ParseOptions,
    expect: Expect,
}

impl Row {
    /// A row checked with the ID-JAG policy and default parse limits.
    fn new(
        name: impl Into<String>,
        token: String,
        key: &Arc<VerifyingKey>,
        expect: Expect,
    ) -> Self {
        Self {
            name: name.into(),
            token,
            policy: HeaderPolicy::for_kind(TokenKind::IdJag),
            key: KeyFrom::Direct(Arc::clone(key)),
            options: ParseOptions::new(),
            expect,
        }
    }

    /// A row whose key comes from an issuer key set, found by the token's `kid` and `alg`.
    fn new_with_set(name: impl Into<String>, token: String, set: JwkSet, expect: Expect) -> Self {
        Self {
            name: name.into(),
            token,
            policy: HeaderPolicy::for_kind(TokenKind::IdJag),
            key: KeyFrom::Set(set),
            options: ParseOptions::new(),
            expect,
        }
    }

    fn policy(mut self, policy: HeaderPolicy) -> Self {
        self.policy = policy;
        self
    }

    fn options(mut self, options: ParseOptions) -> Self {
        self.options = options;
        self
    }

    /// The relying party: parse, header policy and signature, then claims (SEC-2, D-12, D-13).
    fn run(&self) -> Result<(), Failure> {
        self.run_keyed().map(|_| ())
    }

    /// [`Row::run`], returning the key that verified the token and what it verified.
    fn run_keyed(&self) -> Result<(Arc<VerifyingKey>, VerifiedJwt), Failure> {
        let jwt = UnverifiedJwt::parse(&self.token, &self.options).map_err(Failure::Parse)?;
        let key = match &self.key {
            KeyFrom::Direct(key) => Arc::clone(key),
            // As the validators do: header policy first, then the key for (`kid`, `alg`).
            KeyFrom::Set(set) => {
                let alg = self
                    .policy
                    .check(jwt.header())
                    .map_err(|e| Failure::Verify(VerifyError::Header(e)))?;
                Arc::clone(set.find(jwt.header().kid(), alg).map_err(Failure::Lookup)?)
            }
        };
        let verified = jwt.verify(&self.policy, &key).map_err(Failure::Verify)?;
        let claims = verified.claims();
        claims
            .check_validity(&TimeOptions::new(), NOW)
            .map_err(Failure::Claims)?;
        claims.check_issuer(ISS).map_err(Failure::Claims)?;
        claims
            .check_audience(AUD, AudienceRule::Single)
            .map_err(Failure::Claims)?;
        Ok((key, verified))
    }
}

struct Keys {
    /// ES256, kid `es-1`: the issuer's key in most rows.
    es: SigningKey,
    /// Another ES256 key, kid `es-2`.
    es_other: SigningKey,
    es384: SigningKey,
    es512: SigningKey,
    /// RS256, kid `rs-1`.
    rs: SigningKey,
    /// The same RSA key loaded for PS256, kid `ps-1`.
    ps: SigningKey,
    ed: SigningKey,
}

impl Keys {
    fn new() -> Self {
        let rs = SigningKey::generate(Algorithm::RS256, Some("rs-1".into())).expect("rsa");
        let rs_der = rs.to_pkcs8_der().expect("pkcs8");
        Self {
            es: SigningKey::generate(Algorithm::ES256, Some("es-1".into())).expect("es256"),
            es_other: SigningKey::generate(Algorithm::ES256, Some("es-2".into())).expect("es256"),
            es384: SigningKey::generate(Algorithm::ES384, Some("es384-1".into())).expect("es384"),
            es512: SigningKey::generate(Algorithm::ES512, Some("es512-1".into())).expect("es512"),
            ps: SigningKey::from_pkcs8_der(Algorithm::PS256, Some("ps-1".into()), &rs_der)
                .expect("ps256"),
            rs,
            ed: SigningKey::generate(Algorithm::EdDSA, Some("ed-1".into())).expect("ed25519"),
        }
    }
}

/// The public key of `key` without its `alg`, so that only the key type binds the algorithm
/// (D-19 inference).
fn unbound(key: &SigningKey) -> Arc<VerifyingKey> {
    let mut jwk = key.verifying_key().public_jwk().clone();
    jwk.remove("alg");
    Arc::new(VerifyingKey::from_jwk(&jwk).expect("public JWK"))
}

fn claims() -> Map<String, Value> {
    obj(json!({
        "iss": ISS, "sub": "u1", "aud": AUD, "client_id": "c1", "jti": "j-1",
        "iat": NOW.as_secs() - 10, "exp": NOW.as_secs() + 290,
    }))
}

/// The standard claims with members replaced or added.
fn claims_with(changes: Value) -> Map<String, Value> {
    let mut c = claims();
    c.extend(obj(changes));
    c
}

fn claims_without(names: &[&str]) -> Map<String, Value> {
    let mut c = claims();
    for name in names {
        c.remove(*name);
    }
    c
}

fn header(typ: Option<&str>) -> Map<String, Value> {
    let mut h = Map::new();
    if let Some(typ) = typ {
        h.insert("typ".into(), typ.into());
    }
    h
}

fn header_with(typ: Option<&str>, extra: Value) -> Map<String, Value> {
    let mut h = header(typ);
    h.extend(obj(extra));
    h
}

/// A token signed by `key` (which sets `alg` and `kid`) over these header members and claims.
fn jwt(key: &SigningKey, header: Map<String, Value>, claims: &Map<String, Value>) -> String {
    let payload = serde_json::to_vec(claims).expect("claims");
    key.sign_with_header(header, &payload).expect("sign")
}

fn id_jag(key: &SigningKey) -> String {
    jwt(key, header(Some(ID_JAG)), &claims())
}

/// A token with a hand-written header and payload, really signed by `key` over exactly these
/// bytes, so that only the crafted part is wrong.
fn raw(key: &SigningKey, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = key.sign_bytes(input.as_bytes()).expect("sign");
    format!("{input}.{}", b64(signature))
}

/// A token with a hand-written header and payload and an arbitrary signature.
fn unsigned(header: &[u8], payload: &[u8], signature: &[u8]) -> String {
    format!("{}.{}.{}", b64(header), b64(payload), b64(signature))
}

fn payload() -> Vec<u8> {
    serde_json::to_vec(&claims()).expect("claims")
}

/// The standard claims as JSON text with `extra` (starting with `,`) spliced in before the `}`.
fn payload_plus(extra: &str) -> Vec<u8> {
    let text = serde_json::to_string(&claims()).expect("claims");
    format!("{}{extra}}}", &text[..text.len() - 1]).into_bytes()
}

/// An ES256 ID-JAG header as JSON text with `extra` (starting with `,`) spliced in.
fn header_plus(extra: &str) -> Vec<u8> {
    format!(r#"{{"alg":"ES256","typ":"{ID_JAG}"{extra}}}"#).into_bytes()
}

fn part_index(part: Part) -> usize {
    match part {
        Part::Header => 0,
        Part::Payload => 1,
        Part::Signature => 2,
    }
}

/// Rewrites one segment of a compact token.
fn mutate(token: &str, part: Part, f: impl Fn(&str) -> String) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let i = part_index(part);
    parts[i] = f(&parts[i]);
    parts.join(".")
}

fn segment(token: &str, part: Part) -> String {
    token
        .split('.')
        .nth(part_index(part))
        .expect("segment")
        .to_owned()
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Sets an unused low bit of the last character: the same bytes, a non-canonical encoding.
fn set_trailing_bit(segment: &str) -> String {
    assert!(segment.len() % 4 >= 2, "segment has unused bits");
    let last = *segment.as_bytes().last().expect("non-empty");
    let value = ALPHABET.iter().position(|c| *c == last).expect("base64url");
    assert_eq!(value & 1, 0, "canonical encodings leave unused bits zero");
    let mut out = segment[..segment.len() - 1].to_owned();
    out.push(char::from(ALPHABET[value | 1]));
    out
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n").into_bytes()
}

fn hmac_token(alg: &str, kid: &str, secret: &[u8], hash: hmac::Algorithm) -> String {
    let header = format!(r#"{{"alg":"{alg}","typ":"{ID_JAG}","kid":"{kid}"}}"#);
    let input = format!("{}.{}", b64(header), b64(payload()));
    let tag = hmac::sign(&hmac::Key::new(hash, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

const KINDS: [TokenKind; 5] = [
    TokenKind::IdJag,
    TokenKind::AccessToken,
    TokenKind::IdToken,
    TokenKind::ClientAssertion,
    TokenKind::DpopProof,
];

/// SEC-5: the one cross-kind acceptance. ID tokens and RFC 7523 client assertions share the
/// generic `JWT` typ (or none); a client-assertion slot therefore takes an ID token's `typ`.
/// These two kinds are told apart by their audience/issuer rules (OIDC Core 3.1.3.7 vs RFC 7523
/// §3), not by `typ`; every explicit `typ` (ID-JAG, AT, DPoP, client-authentication+jwt) is
/// exclusive to its kind.
fn cross_kind_accepted(offered: TokenKind, policy: TokenKind) -> bool {
    offered == policy || (offered == TokenKind::IdToken && policy == TokenKind::ClientAssertion)
}

fn rows(k: &Keys) -> Vec<Row> {
    let es = Arc::clone(k.es.verifying_key());
    let es384 = Arc::clone(k.es384.verifying_key());
    let rs = Arc::clone(k.rs.verifying_key());
    let ed = Arc::clone(k.ed.verifying_key());
    let es_unbound = unbound(&k.es);
    let rs_unbound = unbound(&k.rs);
    let all_algs = HeaderPolicy::for_kind(TokenKind::IdJag).with_algorithms(AlgorithmSet::ALL);
    // D-26: ES384 is opt-in.
    let with_es384 = HeaderPolicy::for_kind(TokenKind::IdJag)
        .with_algorithms(AlgorithmSet::DEFAULT.with(Algorithm::ES384));
    let es_jwk = Value::Object(k.es.verifying_key().public_jwk().clone());
    let valid = id_jag(&k.es);
    let mut rows = Vec::new();

    // ---- Positive controls: the valid token passes with each policy and algorithm.
    rows.push(Row::new(
        "control: ID-JAG, ES256",
        valid.clone(),
        &es,
        Expect::Pass,
    ));
    rows.push(
        Row::new(
            "control: access token (RFC 9068 at+jwt)",
            jwt(&k.es, header(Some("at+jwt")), &claims()),
            &es,
            Expect::Pass,
        )
        .policy(HeaderPolicy::for_kind(TokenKind::AccessToken)),
    );
    for typ in [Some("JWT"), None] {
        rows.push(
            Row::new(
                format!("control: ID token, typ {typ:?}"),
                jwt(&k.es, header(typ), &claims()),
                &es,
                Expect::Pass,
            )
            .policy(HeaderPolicy::for_kind(TokenKind::IdToken)),
        );
    }
    for typ in [Some("client-authentication+jwt"), Some("JWT"), None] {
        rows.push(
            Row::new(
                format!("control: client assertion, typ {typ:?}"),
                jwt(&k.es, header(typ), &claims()),
                &es,
                Expect::Pass,
            )
            .policy(HeaderPolicy::for_kind(TokenKind::ClientAssertion)),
        );
    }
    rows.push(
        Row::new(
            "control: DPoP proof with its jwk (RFC 9449, D-18 exception)",
            jwt(
                &k.es,
                header_with(Some("dpop+jwt"), json!({"jwk": es_jwk})),
                &claims(),
            ),
            &es,
            Expect::Pass,
        )
        .policy(HeaderPolicy::for_kind(TokenKind::DpopProof)),
    );
    for (signer, key) in [(&k.rs, &rs), (&k.ed, &ed)] {
        rows.push(Row::new(
            format!("control: ID-JAG, {}", signer.algorithm()),
            id_jag(signer),
            key,
            Expect::Pass,
        ));
    }
    rows.push(
        Row::new(
            "control: D-26 ES384 when the allow-list opts in to it",
            id_jag(&k.es384),
            &es384,
            Expect::Pass,
        )
        .policy(with_es384),
    );
    rows.push(Row::new(
        "control: PS256 with an RSA key without alg (D-19 inference)",
        id_jag(&k.ps),
        &rs_unbound,
        Expect::Pass,
    ));
    rows.push(
        Row::new(
            "control: ES512 when the allow-list includes it (SEC-4)",
            id_jag(&k.es512),
            k.es512.verifying_key(),
            Expect::Pass,
        )
        .policy(all_algs),
    );
    rows.push(Row::new(
        "control: D-18 x5t and x5t#S256 are allowed and ignored",
        jwt(
            &k.es,
            header_with(
                Some(ID_JAG),
                json!({"x5t": "dGh1bWI", "x5t#S256": "dGh1bWJwcmludA"}),
            ),
            &claims(),
        ),
        &es,
        Expect::Pass,
    ));
    // SEC-3: registered string members must be strings even where they are ignored (found by
    // the `jwt_oracle` fuzz target: `jsonwebtoken` refuses these tokens, ema-jose accepted them).
    for (name, value) in [
        ("x5t", json!(5)),
        ("x5t#S256", json!(["a"])),
        ("url", json!({"u": 1})),
        ("nonce", json!(5)),
    ] {
        rows.push(Row::new(
            format!("SEC-3 header `{name}` that is not a string"),
            jwt(
                &k.es,
                header_with(Some(ID_JAG), json!({ name: value })),
                &claims(),
            ),
            &es,
            fails!(Failure::Parse(ParseError::HeaderMember { name: found }) if *found == name),
        ));
    }
    rows.push(Row::new(
        "control: SEC-3 `url` and `nonce` strings are allowed and ignored",
        jwt(
            &k.es,
            header_with(
                Some(ID_JAG),
                json!({"url": "https://as.example/token", "nonce": "n-1"}),
            ),
            &claims(),
        ),
        &es,
        Expect::Pass,
    ));
    rows.push(Row::new(
        "control: unknown non-critical header members are ignored",
        jwt(
            &k.es,
            header_with(Some(ID_JAG), json!({"x-vendor": {"a": [1]}})),
            &claims(),
        ),
        &es,
        Expect::Pass,
    ));
    rows.push(Row::new(
        "control: D-13 aud as an array of exactly one",
        jwt(
            &k.es,
            header(Some(ID_JAG)),
            &claims_with(json!({"aud": [AUD]})),
        ),
        &es,
        Expect::Pass,
    ));
    rows.push(Row::new(
        "control: SEC-2 expired 29 s ago, inside the 30 s leeway (D-7)",
        jwt(
            &k.es,
            header(Some(ID_JAG)),
            &claims_with(json!({"iat": NOW.as_secs() - 329, "exp": NOW.as_secs() - 29})),
        ),
        &es,
        Expect::Pass,
    ));
    rows.push(Row::new(
        "control: SEC-2 iat and nbf 30 s ahead, inside the leeway",
        jwt(
            &k.es,
            header(Some(ID_JAG)),
            &claims_with(json!({
                "iat": NOW.as_secs() + 30, "nbf": NOW.as_secs() + 30, "exp": NOW.as_secs() + 330
            })),
        ),
        &es,
        Expect::Pass,
    ));
    rows.push(Row::new(
        "control: D-7 lifetime of exactly 3600 s",
        jwt(
            &k.es,
            header(Some(ID_JAG)),
            &claims_with(json!({"iat": NOW.as_secs() - 1, "exp": NOW.as_secs() + 3599})),
        ),
        &es,
        Expect::Pass,
    ));
    rows.push(Row::new(
        "control: D-7 fractional NumericDates are numbers",
        jwt(
            &k.es,
            header(Some(ID_JAG)),
            &claims_with(json!({"iat": (NOW.as_secs() - 10) as f64 + 0.5, "exp": (NOW.as_secs() + 290) as f64 + 0.25})),
        ),
        &es,
        Expect::Pass,
    ));
    rows.push(
        Row::new(
            "control: a token exactly at a custom max_len",
            valid.clone(),
            &es,
            Expect::Pass,
        )
        .options(ParseOptions::new().with_max_len(valid.len())),
    );
    rows.push(Row::new(
        "control: header nested exactly to max_depth 16",
        raw(
            &k.es,
            &header_plus(&format!(
                r#","x-nest":{}{}"#,
                "[".repeat(15),
                "]".repeat(15)
            )),
            &payload(),
        ),
        &es,
        Expect::Pass,
    ));
    rows.push(Row::new(
        "control: whitespace inside the JSON is fine",
        raw(
            &k.es,
            format!("{{ \"alg\" : \"ES256\",\n\t\"typ\" : \"{ID_JAG}\" }}").as_bytes(),
            &payload(),
        ),
        &es,
        Expect::Pass,
    ));

    // ---- SEC-4: `alg: none` in every spelling, with and without a signature.
    for spelling in ["none", "None", "NONE", "nOnE"] {
        let h = format!(r#"{{"alg":"{spelling}","typ":"{ID_JAG}"}}"#);
        rows.push(Row::new(
            format!("SEC-4 alg {spelling}, empty signature (unsecured JWS)"),
            format!("{}.{}.", b64(&h), b64(payload())),
            &es,
            fails!(Failure::Parse(ParseError::EmptySignature)),
        ));
        rows.push(Row::new(
            format!("SEC-4 alg {spelling}, with a real ES256 signature"),
            raw(&k.es, h.as_bytes(), &payload()),
            &es,
            fails!(Failure::Verify(VerifyError::Header(HeaderError::UnsupportedAlgorithm { alg })) if alg == spelling),
        ));
        rows.push(
            Row::new(
                format!("SEC-4 alg {spelling}, junk signature, every algorithm allowed"),
                unsigned(h.as_bytes(), &payload(), b"\0"),
                &es,
                fails!(Failure::Verify(VerifyError::Header(HeaderError::UnsupportedAlgorithm { alg })) if alg == spelling),
            )
            .policy(HeaderPolicy::custom(TypRule::Ignored, AlgorithmSet::ALL)),
        );
    }

    // ---- SEC-4: HS256 keyed with the public key (RS/HS key confusion).
    let rsa_pair = RsaKeyPair::from_pkcs8(&k.rs.to_pkcs8_der().expect("der")).expect("rsa pair");
    let rsa_spki = rsa_pair.public_key().as_der().expect("spki");
    let ec_pair = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &k.es.to_pkcs8_der().expect("der"),
    )
    .expect("ec pair");
    let ec_spki = ec_pair.public_key().as_der().expect("spki");
    let secrets: [(&str, Vec<u8>, &Arc<VerifyingKey>, &str); 6] = [
        (
            "RSA public key PEM",
            pem("PUBLIC KEY", rsa_spki.as_ref()),
            &rs,
            "rs-1",
        ),
        (
            "RSA public JWK JSON",
            serde_json::to_vec(k.rs.verifying_key().public_jwk()).expect("jwk"),
            &rs,
            "rs-1",
        ),
        ("RSA SPKI DER", rsa_spki.as_ref().to_vec(), &rs, "rs-1"),
        (
            "EC public key PEM",
            pem("PUBLIC KEY", ec_spki.as_ref()),
            &es,
            "es-1",
        ),
        (
            "EC public JWK JSON",
            serde_json::to_vec(k.es.verifying_key().public_jwk()).expect("jwk"),
            &es,
            "es-1",
        ),
        (
            "EC point bytes",
            ec_pair.public_key().as_ref().to_vec(),
            &es,
            "es-1",
        ),
    ];
    for (what, secret, key, kid) in &secrets {
        for (alg, hash) in [
            ("HS256", hmac::HMAC_SHA256),
            ("HS384", hmac::HMAC_SHA384),
            ("HS512", hmac::HMAC_SHA512),
        ] {
            rows.push(Row::new(
                format!("SEC-4 {alg} with the {what} as HMAC secret"),
                hmac_token(alg, kid, secret, hash),
                key,
                fails!(Failure::Verify(VerifyError::Header(HeaderError::UnsupportedAlgorithm { alg: found })) if found == alg),
            ));
        }
        rows.push(
            Row::new(
                format!("SEC-4 HS256 with the {what}, even with every algorithm allowed"),
                hmac_token("HS256", kid, secret, hmac::HMAC_SHA256),
                key,
                fails!(Failure::Verify(VerifyError::Header(
                    HeaderError::UnsupportedAlgorithm { .. }
                ))),
            )
            .policy(HeaderPolicy::custom(TypRule::Ignored, AlgorithmSet::ALL)),
        );
    }

    // ---- Degenerate signatures (EMA §4 step 6: the signature is verified with the issuer's key).
    let es_header = header_plus("");
    for (what, sig) in [
        ("r = s = 0 (64 zero bytes)", vec![0u8; 64]),
        ("all 0xff", vec![0xff; 64]),
        ("r = 0, s = 1", [vec![0u8; 63], vec![1]].concat()),
        ("a single zero byte", vec![0]),
        ("DER-encoded r = s = 0", vec![0x30, 6, 2, 1, 0, 2, 1, 0]),
    ] {
        rows.push(Row::new(
            format!("ES256 signature {what}"),
            unsigned(&es_header, &payload(), &sig),
            &es,
            fails!(Failure::Verify(VerifyError::BadSignature)),
        ));
    }
    rows.push(
        Row::new(
            "ES384 signature of 96 zero bytes",
            unsigned(
                br#"{"alg":"ES384","typ":"oauth-id-jag+jwt"}"#,
                &payload(),
                &[0; 96],
            ),
            &es384,
            fails!(Failure::Verify(VerifyError::BadSignature)),
        )
        .policy(with_es384),
    );
    rows.push(Row::new(
        "EdDSA signature of 64 zero bytes",
        unsigned(
            br#"{"alg":"EdDSA","typ":"oauth-id-jag+jwt"}"#,
            &payload(),
            &[0; 64],
        ),
        &ed,
        fails!(Failure::Verify(VerifyError::BadSignature)),
    ));
    rows.push(Row::new(
        "RS256 signature of 256 zero bytes",
        unsigned(
            br#"{"alg":"RS256","typ":"oauth-id-jag+jwt"}"#,
            &payload(),
            &[0; 256],
        ),
        &rs,
        fails!(Failure::Verify(VerifyError::BadSignature)),
    ));
    let der_signer = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &k.es.to_pkcs8_der().expect("der"),
    )
    .expect("asn1 signer");
    let input = format!("{}.{}", b64(&es_header), b64(payload()));
    let der_sig = der_signer
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign");
    rows.push(Row::new(
        "ES256 signature in ASN.1 DER instead of r || s (RFC 7518 §3.4)",
        format!("{input}.{}", b64(der_sig.as_ref())),
        &es,
        fails!(Failure::Verify(VerifyError::BadSignature)),
    ));
    rows.push(Row::new(
        "ES256 signature truncated to 63 bytes",
        mutate(&valid, Part::Signature, |s| {
            let bytes = ema_jose::base64url::decode(s.as_bytes()).expect("sig");
            b64(&bytes[..63])
        }),
        &es,
        fails!(Failure::Verify(VerifyError::BadSignature)),
    ));
    rows.push(Row::new(
        "ES256 signature with a 65th byte",
        mutate(&valid, Part::Signature, |s| {
            let mut bytes = ema_jose::base64url::decode(s.as_bytes()).expect("sig");
            bytes.push(0);
            b64(bytes)
        }),
        &es,
        fails!(Failure::Verify(VerifyError::BadSignature)),
    ));

    // ---- SEC-5 / D-8: typ confusion across the five kinds.
    for offered in KINDS {
        let typ = offered.typ().expect("every kind writes a typ");
        for policy in KINDS {
            if policy == offered {
                continue;
            }
            // A DPoP policy needs `jwk` before it looks at `typ`; other kinds refuse `jwk`.
            let h = if policy == TokenKind::DpopProof {
                header_with(Some(typ), json!({"jwk": es_jwk}))
            } else {
                header(Some(typ))
            };
            let token = jwt(&k.es, h, &claims());
            let name = format!("SEC-5 {offered:?} typ `{typ}` offered to the {policy:?} policy");
            let expect = if cross_kind_accepted(offered, policy) {
                Expect::Pass
            } else {
                fails!(Failure::Verify(VerifyError::Header(HeaderError::WrongType { found })) if found == typ)
            };
            rows.push(Row::new(name, token, &es, expect).policy(HeaderPolicy::for_kind(policy)));
        }
    }
    for (typ, kind) in [
        ("OAUTH-ID-JAG+JWT", TokenKind::IdJag),
        ("application/oauth-id-jag+jwt", TokenKind::IdJag),
        ("Application/OAuth-ID-JAG+JWT", TokenKind::IdJag),
        ("application/at+jwt", TokenKind::AccessToken),
        ("AT+JWT", TokenKind::AccessToken),
        ("jwt", TokenKind::IdToken),
        ("application/jwt", TokenKind::ClientAssertion),
        ("Client-Authentication+JWT", TokenKind::ClientAssertion),
    ] {
        rows.push(
            Row::new(
                format!("control: D-8 typ `{typ}` matches {kind:?} (case, application/ prefix)"),
                jwt(&k.es, header(Some(typ)), &claims()),
                &es,
                Expect::Pass,
            )
            .policy(HeaderPolicy::for_kind(kind)),
        );
    }
    for (typ, kind) in [
        ("application/application/oauth-id-jag+jwt", TokenKind::IdJag),
        ("oauth-id-jag+jwt ", TokenKind::IdJag),
        (" oauth-id-jag+jwt", TokenKind::IdJag),
        ("oauth-id-jag", TokenKind::IdJag),
        ("application/at+jwt", TokenKind::IdJag),
        ("AT+JWT", TokenKind::IdJag),
        ("JWT", TokenKind::IdJag),
        ("", TokenKind::IdJag),
        ("application/", TokenKind::AccessToken),
        ("application/dpop+jwt", TokenKind::AccessToken),
        ("at+jwt", TokenKind::IdToken),
        ("oauth-id-jag+jwt", TokenKind::ClientAssertion),
        // §8 / D-10: pre-draft typ values are never accepted.
        ("authorization-grant+jwt", TokenKind::IdJag),
        ("oauth-mtag+jwt", TokenKind::IdJag),
        ("oauth-itag+jwt", TokenKind::IdJag),
    ] {
        rows.push(
            Row::new(
                format!("D-8 typ `{typ}` refused by {kind:?}"),
                jwt(&k.es, header(Some(typ)), &claims()),
                &es,
                fails!(Failure::Verify(VerifyError::Header(HeaderError::WrongType { found })) if found == typ),
            )
            .policy(HeaderPolicy::for_kind(kind)),
        );
    }
    for (kind, expected) in [
        (TokenKind::IdJag, "oauth-id-jag+jwt"),
        (TokenKind::AccessToken, "at+jwt"),
        (TokenKind::DpopProof, "dpop+jwt"),
    ] {
        let h = if kind == TokenKind::DpopProof {
            header_with(None, json!({"jwk": es_jwk}))
        } else {
            header(None)
        };
        rows.push(
            Row::new(
                format!("D-8 missing typ where {kind:?} requires it"),
                jwt(&k.es, h, &claims()),
                &es,
                fails!(Failure::Verify(VerifyError::Header(HeaderError::MissingType { expected: e })) if *e == expected),
            )
            .policy(HeaderPolicy::for_kind(kind)),
        );
    }
    rows.push(Row::new(
        "typ that is not a string",
        jwt(&k.es, header_with(None, json!({"typ": 1})), &claims()),
        &es,
        fails!(Failure::Parse(ParseError::HeaderMember { name: "typ" })),
    ));

    // ---- EMA §4 header rule: `crit` with unknown names is refused (RFC 7515 §4.1.11; we know
    // none, so any `crit`), and RFC 7797 b64, zip and JWE members are never processed.
    for (what, extra, expect) in [
        (
            "crit naming a claim",
            json!({"crit": ["exp"], "exp": 1}),
            fails!(Failure::Verify(VerifyError::Header(HeaderError::Critical))),
        ),
        (
            "crit as an empty array",
            json!({"crit": []}),
            fails!(Failure::Verify(VerifyError::Header(HeaderError::Critical))),
        ),
        (
            "crit naming b64",
            json!({"crit": ["b64"], "b64": false}),
            fails!(Failure::Verify(VerifyError::Header(HeaderError::Critical))),
        ),
        (
            "b64: false without crit",
            json!({"b64": false}),
            fails!(Failure::Verify(VerifyError::Header(
                HeaderError::Unsupported { name: "b64" }
            ))),
        ),
        (
            "b64: true",
            json!({"b64": true}),
            fails!(Failure::Verify(VerifyError::Header(
                HeaderError::Unsupported { name: "b64" }
            ))),
        ),
        (
            "zip: DEF",
            json!({"zip": "DEF"}),
            fails!(Failure::Verify(VerifyError::Header(
                HeaderError::Unsupported { name: "zip" }
            ))),
        ),
        (
            "enc (a JWE member)",
            json!({"enc": "A256GCM"}),
            fails!(Failure::Verify(VerifyError::Header(
                HeaderError::Unsupported { name: "enc" }
            ))),
        ),
    ] {
        rows.push(Row::new(
            format!("header {what}"),
            jwt(&k.es, header_with(Some(ID_JAG), extra), &claims()),
            &es,
            expect,
        ));
    }

    // ---- D-18: key sources in the header make the token invalid even though the signature
    // verifies with the trusted key.
    let x5c = json!(["MIIBszCCAVmgAwIBAgIUb3RoZXI="]);
    for (name, value) in [
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", x5c.clone()),
        ("jwk", es_jwk.clone()),
    ] {
        for kind in [
            TokenKind::IdJag,
            TokenKind::AccessToken,
            TokenKind::IdToken,
            TokenKind::ClientAssertion,
        ] {
            let mut h = header(kind.typ());
            h.insert(name.into(), value.clone());
            rows.push(
                Row::new(
                    format!("D-18 {name} in a {kind:?} header"),
                    jwt(&k.es, h, &claims()),
                    &es,
                    fails!(Failure::Verify(VerifyError::Header(HeaderError::KeyReference { name: n })) if *n == name),
                )
                .policy(HeaderPolicy::for_kind(kind)),
            );
        }
    }
    let dpop = HeaderPolicy::for_kind(TokenKind::DpopProof);
    for (what, extra, expect) in [
        (
            "without jwk",
            json!({}),
            fails!(Failure::Verify(VerifyError::Header(
                HeaderError::MissingJwk
            ))),
        ),
        (
            "with jwk as a string",
            json!({"jwk": "eyJrdHkiOiJFQyJ9"}),
            fails!(Failure::Verify(VerifyError::Header(
                HeaderError::MissingJwk
            ))),
        ),
        (
            "with jwk null",
            json!({"jwk": null}),
            fails!(Failure::Verify(VerifyError::Header(
                HeaderError::MissingJwk
            ))),
        ),
        (
            "with jwk and jku",
            json!({"jwk": es_jwk, "jku": "https://attacker.example/"}),
            fails!(Failure::Verify(VerifyError::Header(
                HeaderError::KeyReference { name: "jku" }
            ))),
        ),
        (
            "with jwk and x5c",
            json!({"jwk": es_jwk, "x5c": x5c}),
            fails!(Failure::Verify(VerifyError::Header(
                HeaderError::KeyReference { name: "x5c" }
            ))),
        ),
    ] {
        rows.push(
            Row::new(
                format!("DPoP policy: proof {what}"),
                jwt(&k.es, header_with(Some("dpop+jwt"), extra), &claims()),
                &es,
                expect,
            )
            .policy(dpop),
        );
    }

    // ---- EMA §4 step 3 (parse JWS), RFC 7515 §2 / §7.1: canonical unpadded base64url in every
    // segment.
    // Header and payload lengths chosen so every segment has unused bits.
    let crafted = (0..3)
        .map(|pad| {
            let h = header_with(Some(ID_JAG), json!({"x-pad": "x".repeat(pad)}));
            jwt(&k.es, h, &claims_with(json!({"pad": "y".repeat(pad)})))
        })
        .find(|t| t.split('.').all(|s| s.len() % 4 >= 2))
        .expect("a token whose every segment has unused bits");
    for part in [Part::Header, Part::Payload, Part::Signature] {
        let seg = segment(&crafted, part);
        rows.push(Row::new(
            format!("RFC 7515 padding `=` in the {part:?} segment"),
            mutate(&crafted, part, |s| {
                format!("{s}{}", "=".repeat(4 - s.len() % 4))
            }),
            &es,
            fails!(Failure::Parse(ParseError::Base64 { part: p }) if *p == part),
        ));
        rows.push(Row::new(
            format!("RFC 7515 non-canonical trailing bits in the {part:?} segment"),
            mutate(&crafted, part, set_trailing_bit),
            &es,
            fails!(Failure::Parse(ParseError::Base64 { part: p }) if *p == part),
        ));
        let mid = seg.len() / 2;
        for stray in [" ", "\n", "?", "\r", "\t"] {
            rows.push(Row::new(
                format!("stray {stray:?} inside the {part:?} segment"),
                mutate(&crafted, part, |s| {
                    format!("{}{stray}{}", &s[..mid], &s[mid..])
                }),
                &es,
                fails!(Failure::Parse(ParseError::Base64 { part: p }) if *p == part),
            ));
        }
        for alphabet in ["+", "/"] {
            rows.push(Row::new(
                format!("standard-alphabet {alphabet:?} in the {part:?} segment"),
                mutate(&crafted, part, |s| {
                    format!("{}{alphabet}{}", &s[..mid], &s[mid + 1..])
                }),
                &es,
                fails!(Failure::Parse(ParseError::Base64 { part: p }) if *p == part),
            ));
        }
        rows.push(Row::new(
            format!("trailing space after the {part:?} segment"),
            mutate(&crafted, part, |s| format!("{s} ")),
            &es,
            fails!(Failure::Parse(ParseError::Base64 { part: p }) if *p == part),
        ));
    }

    // ---- EMA §4 step 3: exactly three segments (a JWE has five, JSON serialization one).
    let [h, p, s] =
        [Part::Header, Part::Payload, Part::Signature].map(|part| segment(&valid, part));
    for (what, token, count) in [
        ("2 segments", format!("{h}.{p}"), 2),
        ("4 segments", format!("{h}.{p}.{s}.{s}"), 4),
        ("4 segments, trailing dot", format!("{valid}."), 4),
        ("5 segments (JWE shape)", format!("{h}.{p}.{p}.{p}.{s}"), 5),
        ("1 segment", h.clone(), 1),
        ("the empty string", String::new(), 1),
    ] {
        rows.push(Row::new(
            format!("compact form with {what}"),
            token,
            &es,
            fails!(Failure::Parse(ParseError::Segments { segments }) if *segments == count),
        ));
    }
    for (what, token, expect) in [
        (
            "empty header",
            format!(".{p}.{s}"),
            fails!(Failure::Parse(ParseError::HeaderJson(
                JsonError::Syntax { .. }
            ))),
        ),
        (
            "empty payload",
            format!("{h}..{s}"),
            fails!(Failure::Parse(ParseError::ClaimsJson(
                JsonError::Syntax { .. }
            ))),
        ),
        (
            "empty signature",
            format!("{h}.{p}."),
            fails!(Failure::Parse(ParseError::EmptySignature)),
        ),
        (
            "all segments empty",
            "..".to_owned(),
            fails!(Failure::Parse(ParseError::EmptySignature)),
        ),
    ] {
        rows.push(Row::new(
            format!("compact form with {what}"),
            token,
            &es,
            expect,
        ));
    }

    // ---- EMA §4 step 3: size and depth limits (ParseOptions), checked before any key is touched.
    let big = jwt(
        &k.es,
        header(Some(ID_JAG)),
        &claims_with(json!({"pad": "x".repeat(13_000)})),
    );
    assert!(big.len() > 16 * 1024);
    rows.push(Row::new(
        "oversize token (> 16 KiB default)",
        big,
        &es,
        fails!(Failure::Parse(ParseError::TooLarge { max: 16384, .. })),
    ));
    rows.push(Row::new(
        "oversize garbage is refused by size before anything else",
        "!".repeat(16 * 1024 + 1),
        &es,
        fails!(Failure::Parse(ParseError::TooLarge {
            len: 16385,
            max: 16384
        })),
    ));
    let n = valid.len();
    rows.push(
        Row::new(
            "one byte over a custom max_len",
            valid.clone(),
            &es,
            fails!(Failure::Parse(ParseError::TooLarge { len, max }) if *len == n && *max == n - 1),
        )
        .options(ParseOptions::new().with_max_len(n - 1)),
    );
    rows.push(Row::new(
        "header nested 17 deep (max_depth 16)",
        raw(
            &k.es,
            &header_plus(&format!(
                r#","x-nest":{}{}"#,
                "[".repeat(16),
                "]".repeat(16)
            )),
            &payload(),
        ),
        &es,
        fails!(Failure::Parse(ParseError::HeaderJson(JsonError::TooDeep {
            max: 16
        }))),
    ));
    rows.push(Row::new(
        "claims nested 17 deep (max_depth 16)",
        raw(
            &k.es,
            &header_plus(""),
            &payload_plus(&format!(
                r#","act":{}1{}"#,
                r#"{"act":"#.repeat(16),
                "}".repeat(16)
            )),
        ),
        &es,
        fails!(Failure::Parse(ParseError::ClaimsJson(JsonError::TooDeep {
            max: 16
        }))),
    ));
    rows.push(
        Row::new(
            "claims nested 5 deep with a custom max_depth 4",
            raw(
                &k.es,
                &header_plus(""),
                &payload_plus(r#","act":{"act":{"act":{"act":{"sub":"x"}}}}"#),
            ),
            &es,
            fails!(Failure::Parse(ParseError::ClaimsJson(JsonError::TooDeep {
                max: 4
            }))),
        )
        .options(ParseOptions::new().with_max_depth(4)),
    );
    rows.push(
        Row::new(
            "a 50 000-deep array bomb is refused without recursion",
            raw(
                &k.es,
                &header_plus(""),
                &payload_plus(&format!(
                    r#","x":{}{}"#,
                    "[".repeat(50_000),
                    "]".repeat(50_000)
                )),
            ),
            &es,
            fails!(Failure::Parse(ParseError::ClaimsJson(JsonError::TooDeep {
                max: 16
            }))),
        )
        .options(ParseOptions::new().with_max_len(1 << 20)),
    );

    // ---- EMA §4 step 3 / RFC 7515 §5.2, RFC 8259: strict JSON: duplicates (at any depth, also
    // through escapes), UTF-8, surrogates; the header's registered members typed (EMA §4 step 4).
    for (what, header_json, name) in [
        ("alg twice", header_plus(r#","alg":"ES256""#), "alg"),
        (
            "typ twice, with different values",
            header_plus(r#","typ":"at+jwt""#),
            "typ",
        ),
        (
            "alg again as \\u0061lg",
            header_plus(r#","\u0061lg":"ES256""#),
            "alg",
        ),
        (
            "a nested duplicate",
            header_plus(r#","x-ext":{"a":1,"a":2}"#),
            "a",
        ),
    ] {
        rows.push(Row::new(
            format!("header with {what}"),
            raw(&k.es, &header_json, &payload()),
            &es,
            fails!(Failure::Parse(ParseError::HeaderJson(JsonError::DuplicateMember { name: found })) if found == name),
        ));
    }
    for (what, extra, name) in [
        ("sub twice", r#","sub":"admin""#, "sub"),
        ("aud twice", r#","aud":"https://other.example""#, "aud"),
        (
            "iss again as \\u0069ss",
            r#","\u0069ss":"https://evil.example""#,
            "iss",
        ),
        (
            "exp again as \\u0065\\u0078\\u0070",
            r#","\u0065\u0078\u0070":9999999999"#,
            "exp",
        ),
        (
            "a duplicate inside act",
            r#","act":{"sub":"a","sub":"b"}"#,
            "sub",
        ),
        (
            "a duplicate inside an array element",
            r#","authorization_details":[{"type":"t","type":"u"}]"#,
            "type",
        ),
    ] {
        rows.push(Row::new(
            format!("claims with {what}"),
            raw(&k.es, &header_plus(""), &payload_plus(extra)),
            &es,
            fails!(Failure::Parse(ParseError::ClaimsJson(JsonError::DuplicateMember { name: found })) if found == name),
        ));
    }
    let mut bad_header = header_plus(r#","x":"?""#);
    let q = bad_header.iter().rposition(|b| *b == b'?').expect("marker");
    bad_header[q] = 0xff;
    rows.push(Row::new(
        "header with a non-UTF-8 byte",
        raw(&k.es, &bad_header, &payload()),
        &es,
        fails!(Failure::Parse(ParseError::HeaderJson(JsonError::NotUtf8))),
    ));
    for (what, bytes) in [
        ("0xff", vec![0xff]),
        ("a truncated sequence", vec![0xc3, 0x28]),
        ("an overlong '/'", vec![0xc0, 0xaf]),
    ] {
        let marked = payload_plus(r#","x":"?""#);
        let q = marked.iter().rposition(|b| *b == b'?').expect("marker");
        let claims_bytes = [&marked[..q], &bytes[..], &marked[q + 1..]].concat();
        rows.push(Row::new(
            format!("claims with {what} (not UTF-8)"),
            raw(&k.es, &header_plus(""), &claims_bytes),
            &es,
            fails!(Failure::Parse(ParseError::ClaimsJson(JsonError::NotUtf8))),
        ));
    }
    rows.push(Row::new(
        "header with a lone surrogate escape",
        raw(&k.es, &header_plus(r#","x":"\ud800""#), &payload()),
        &es,
        fails!(Failure::Parse(ParseError::HeaderJson(
            JsonError::Syntax { .. }
        ))),
    ));
    for (what, extra) in [
        ("a lone high surrogate", r#","x":"\ud800""#),
        ("a lone low surrogate", r#","x":"\udc00""#),
        ("a reversed surrogate pair", r#","x":"\udc00\ud800""#),
        ("a lone surrogate in a member name", r#","\ud83d":1"#),
    ] {
        rows.push(Row::new(
            format!("claims with {what}"),
            raw(&k.es, &header_plus(""), &payload_plus(extra)),
            &es,
            fails!(Failure::Parse(ParseError::ClaimsJson(
                JsonError::Syntax { .. }
            ))),
        ));
    }
    for (what, claims_json) in [
        ("an array", r#"["iss","sub"]"#),
        ("a string", r#""{\"iss\":\"https://idp.example\"}""#),
        ("a number", "1767225600"),
        ("null", "null"),
    ] {
        rows.push(Row::new(
            format!("claims that are {what}"),
            raw(&k.es, &header_plus(""), claims_json.as_bytes()),
            &es,
            fails!(Failure::Parse(ParseError::ClaimsJson(
                JsonError::NotAnObject
            ))),
        ));
    }
    rows.push(Row::new(
        "header that is an array",
        raw(&k.es, br#"["ES256"]"#, &payload()),
        &es,
        fails!(Failure::Parse(ParseError::HeaderJson(
            JsonError::NotAnObject
        ))),
    ));
    rows.push(Row::new(
        "claims with trailing data after the object",
        raw(
            &k.es,
            &header_plus(""),
            &[payload(), b" {}".to_vec()].concat(),
        ),
        &es,
        fails!(Failure::Parse(ParseError::ClaimsJson(
            JsonError::Syntax { .. }
        ))),
    ));
    for (what, header_json, name) in [
        ("no alg", format!(r#"{{"typ":"{ID_JAG}"}}"#), "alg"),
        (
            "alg as a number",
            format!(r#"{{"alg":256,"typ":"{ID_JAG}"}}"#),
            "alg",
        ),
        (
            "alg as an array",
            format!(r#"{{"alg":["ES256"],"typ":"{ID_JAG}"}}"#),
            "alg",
        ),
        (
            "kid as a number",
            format!(r#"{{"alg":"ES256","typ":"{ID_JAG}","kid":1}}"#),
            "kid",
        ),
        (
            "cty as an object",
            format!(r#"{{"alg":"ES256","typ":"{ID_JAG}","cty":{{}}}}"#),
            "cty",
        ),
    ] {
        rows.push(Row::new(
            format!("header with {what}"),
            raw(&k.es, header_json.as_bytes(), &payload()),
            &es,
            fails!(Failure::Parse(ParseError::HeaderMember { name: n }) if *n == name),
        ));
    }

    // ---- D-7: NumericDates are JSON numbers in range.
    for (claim, value) in [
        ("exp", json!((NOW.as_secs() + 290).to_string())),
        ("iat", json!((NOW.as_secs() - 10).to_string())),
        ("nbf", json!((NOW.as_secs() - 10).to_string())),
        ("exp", json!(null)),
        ("exp", json!(true)),
        ("exp", json!([NOW.as_secs() + 290])),
        ("exp", json!({"$date": NOW.as_secs() + 290})),
    ] {
        rows.push(Row::new(
            format!("D-7 {claim} = {value} is not a number"),
            jwt(&k.es, header(Some(ID_JAG)), &claims_with(json!({ claim: value }))),
            &es,
            fails!(Failure::Claims(ClaimError::Date(NumericDateError::NotANumber { claim: c })) if *c == claim),
        ));
    }
    for (claim, value) in [
        ("exp", json!(u64::MAX)),
        ("exp", json!(1e300)),
        ("exp", json!(-1)),
        ("exp", json!(-(NOW.as_secs() as i64))),
        ("exp", json!(-0.5)),
        ("exp", json!(253_402_300_800_u64)),
        ("iat", json!(1e300)),
        ("nbf", json!(u64::MAX)),
    ] {
        rows.push(Row::new(
            format!("D-7 {claim} = {value} is out of range"),
            jwt(&k.es, header(Some(ID_JAG)), &claims_with(json!({ claim: value }))),
            &es,
            fails!(Failure::Claims(ClaimError::Date(NumericDateError::OutOfRange { claim: c })) if *c == claim),
        ));
    }
    rows.push(Row::new(
        "D-7 exp missing",
        jwt(&k.es, header(Some(ID_JAG)), &claims_without(&["exp"])),
        &es,
        fails!(Failure::Claims(ClaimError::Missing { claim: "exp" })),
    ));

    // ---- SEC-2 / D-7: the validity window at the fixed NOW (leeway 30 s, max lifetime 3600 s).
    let t = NOW.as_secs();
    for (what, window, expect) in [
        (
            "expired (exp + leeway reached)",
            json!({"iat": t - 330, "exp": t - 30}),
            fails!(Failure::Claims(ClaimError::Time(TimeError::Expired { .. }))),
        ),
        (
            "expired long ago",
            json!({"iat": 1_000_000, "exp": 1_000_300}),
            fails!(Failure::Claims(ClaimError::Time(TimeError::Expired { .. }))),
        ),
        (
            "iat 31 s in the future",
            json!({"iat": t + 31, "exp": t + 331}),
            fails!(Failure::Claims(ClaimError::Time(
                TimeError::IssuedInFuture { .. }
            ))),
        ),
        (
            "nbf 31 s in the future",
            json!({"nbf": t + 31}),
            fails!(Failure::Claims(ClaimError::Time(
                TimeError::NotYetValid { .. }
            ))),
        ),
        (
            "exp == iat",
            json!({"iat": t, "exp": t}),
            fails!(Failure::Claims(ClaimError::Time(
                TimeError::ExpiresBeforeIssued { .. }
            ))),
        ),
        (
            "exp < iat",
            json!({"iat": t + 20, "exp": t + 10}),
            fails!(Failure::Claims(ClaimError::Time(
                TimeError::ExpiresBeforeIssued { .. }
            ))),
        ),
        (
            "lifetime 3601 s",
            json!({"iat": t - 1, "exp": t + 3600}),
            fails!(Failure::Claims(ClaimError::Time(
                TimeError::LifetimeTooLong {
                    lifetime: 3601,
                    max: 3600
                }
            ))),
        ),
        (
            "lifetime of a year",
            json!({"iat": t - 10, "exp": t + 31_536_000}),
            fails!(Failure::Claims(ClaimError::Time(
                TimeError::LifetimeTooLong { .. }
            ))),
        ),
    ] {
        rows.push(Row::new(
            format!("SEC-2 {what}"),
            jwt(&k.es, header(Some(ID_JAG)), &claims_with(window)),
            &es,
            expect,
        ));
    }
    rows.push(Row::new(
        "SEC-2 iat missing (required for ID-JAGs)",
        jwt(&k.es, header(Some(ID_JAG)), &claims_without(&["iat"])),
        &es,
        fails!(Failure::Claims(ClaimError::Time(
            TimeError::MissingIssuedAt
        ))),
    ));

    // ---- D-12 issuer, D-12/D-13 audience.
    for (what, iss, expect) in [
        (
            "iss as an array",
            json!([ISS]),
            fails!(Failure::Claims(ClaimError::WrongType { claim: "iss", .. })),
        ),
        (
            "iss as a number",
            json!(1),
            fails!(Failure::Claims(ClaimError::WrongType { claim: "iss", .. })),
        ),
        (
            "iss with a trailing slash",
            json!(format!("{ISS}/")),
            fails!(Failure::Claims(ClaimError::IssuerMismatch { .. })),
        ),
        (
            "iss in another case",
            json!(ISS.to_uppercase()),
            fails!(Failure::Claims(ClaimError::IssuerMismatch { .. })),
        ),
    ] {
        rows.push(Row::new(
            format!("D-12 {what}"),
            jwt(
                &k.es,
                header(Some(ID_JAG)),
                &claims_with(json!({"iss": iss})),
            ),
            &es,
            expect,
        ));
    }
    rows.push(Row::new(
        "D-12 iss missing",
        jwt(&k.es, header(Some(ID_JAG)), &claims_without(&["iss"])),
        &es,
        fails!(Failure::Claims(ClaimError::Missing { claim: "iss" })),
    ));
    for (what, aud, expect) in [
        (
            "aud as a number",
            json!(42),
            fails!(Failure::Claims(ClaimError::WrongType { claim: "aud", .. })),
        ),
        (
            "aud as an object",
            json!({"aud": AUD}),
            fails!(Failure::Claims(ClaimError::WrongType { claim: "aud", .. })),
        ),
        (
            "aud array holding a number",
            json!([AUD, 1]),
            fails!(Failure::Claims(ClaimError::WrongType { claim: "aud", .. })),
        ),
        (
            "aud array holding null",
            json!([null]),
            fails!(Failure::Claims(ClaimError::WrongType { claim: "aud", .. })),
        ),
        (
            "aud as an empty array",
            json!([]),
            fails!(Failure::Claims(ClaimError::AudienceCount { len: 0 })),
        ),
        (
            "aud array of 2 under AudienceRule::Single",
            json!([AUD, "https://other.example"]),
            fails!(Failure::Claims(ClaimError::AudienceCount { len: 2 })),
        ),
        (
            "aud with a trailing slash",
            json!(format!("{AUD}/")),
            fails!(Failure::Claims(ClaimError::AudienceMismatch { .. })),
        ),
        (
            "aud = the token endpoint URL",
            json!(format!("{AUD}/token")),
            fails!(Failure::Claims(ClaimError::AudienceMismatch { .. })),
        ),
    ] {
        rows.push(Row::new(
            format!("D-13 {what}"),
            jwt(
                &k.es,
                header(Some(ID_JAG)),
                &claims_with(json!({"aud": aud})),
            ),
            &es,
            expect,
        ));
    }
    rows.push(Row::new(
        "D-13 aud missing",
        jwt(&k.es, header(Some(ID_JAG)), &claims_without(&["aud"])),
        &es,
        fails!(Failure::Claims(ClaimError::Missing { claim: "aud" })),
    ));

    // ---- D-19 / SEC-4: algorithm and key confusion.
    rows.push(Row::new(
        "RS256 token verified with an EC key (no alg on the key)",
        id_jag(&k.rs),
        &es_unbound,
        fails!(Failure::Verify(VerifyError::KeyTypeMismatch {
            alg: Algorithm::RS256
        })),
    ));
    rows.push(Row::new(
        "ES256 token verified with an RSA key (no alg on the key)",
        valid.clone(),
        &rs_unbound,
        fails!(Failure::Verify(VerifyError::KeyTypeMismatch {
            alg: Algorithm::ES256
        })),
    ));
    rows.push(Row::new(
        "EdDSA token verified with an RSA key (no alg on the key)",
        id_jag(&k.ed),
        &rs_unbound,
        fails!(Failure::Verify(VerifyError::KeyTypeMismatch {
            alg: Algorithm::EdDSA
        })),
    ));
    rows.push(
        Row::new(
            "ES384 token verified with a P-256 key (no alg on the key)",
            id_jag(&k.es384),
            &es_unbound,
            fails!(Failure::Verify(VerifyError::KeyTypeMismatch {
                alg: Algorithm::ES384
            })),
        )
        .policy(with_es384),
    );
    rows.push(
        Row::new(
            "ES384 token verified with a key whose alg is ES256",
            id_jag(&k.es384),
            &es,
            fails!(Failure::Verify(VerifyError::AlgorithmMismatch {
                key: Algorithm::ES256,
                token: Algorithm::ES384
            })),
        )
        .policy(with_es384),
    );
    // D-26: the default allow-list is ES256, RS256, PS256, EdDSA; every other implemented
    // algorithm is refused until a verifier opts in (the controls above opt in to ES384 and
    // ES512 with the same tokens).
    let rs_der = k.rs.to_pkcs8_der().expect("pkcs8");
    let es384_der = k.es384.to_pkcs8_der().expect("pkcs8");
    let mut opt_in =
        vec![SigningKey::from_pkcs8_der(Algorithm::ES384, None, &es384_der).expect("es384")];
    for alg in [
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        opt_in.push(SigningKey::from_pkcs8_der(alg, None, &rs_der).expect("rsa"));
    }
    for signer in &opt_in {
        let want = signer.algorithm();
        let key = Arc::clone(signer.verifying_key());
        rows.push(Row::new(
            format!("D-26 {want} is opt-in, not on the default allow-list"),
            id_jag(signer),
            &key,
            fails!(Failure::Verify(VerifyError::Header(HeaderError::AlgorithmNotAllowed { alg })) if *alg == want),
        ));
        rows.push(
            Row::new(
                format!("control: D-26 {want} once the verifier opts in"),
                id_jag(signer),
                &key,
                Expect::Pass,
            )
            .policy(
                HeaderPolicy::for_kind(TokenKind::IdJag)
                    .with_algorithms(AlgorithmSet::DEFAULT.with(want)),
            ),
        );
    }
    rows.push(Row::new(
        "PS256 token verified with the same RSA key bound to RS256",
        id_jag(&k.ps),
        &rs,
        fails!(Failure::Verify(VerifyError::AlgorithmMismatch {
            key: Algorithm::RS256,
            token: Algorithm::PS256
        })),
    ));
    rows.push(Row::new(
        "RS256 header over a PS256 signature (same key)",
        mutate(&id_jag(&k.ps), Part::Header, |_| {
            b64(format!(
                r#"{{"alg":"RS256","typ":"{ID_JAG}","kid":"ps-1"}}"#
            ))
        }),
        &rs_unbound,
        fails!(Failure::Verify(VerifyError::BadSignature)),
    ));
    rows.push(Row::new(
        "SEC-4 ES512 is implemented but not on the default allow-list",
        id_jag(&k.es512),
        k.es512.verifying_key(),
        fails!(Failure::Verify(VerifyError::Header(
            HeaderError::AlgorithmNotAllowed {
                alg: Algorithm::ES512
            }
        ))),
    ));
    rows.push(
        Row::new(
            "SEC-4 RS256 outside a policy that allows only ES256",
            id_jag(&k.rs),
            &rs,
            fails!(Failure::Verify(VerifyError::Header(
                HeaderError::AlgorithmNotAllowed {
                    alg: Algorithm::RS256
                }
            ))),
        )
        .policy(
            HeaderPolicy::for_kind(TokenKind::IdJag)
                .with_algorithms(AlgorithmSet::of(&[Algorithm::ES256])),
        ),
    );
    for alg in [
        "es256", "ES256 ", "ES-256", "RSA1_5", "ECDH-ES", "PS256K", "Ed25519", "",
    ] {
        rows.push(Row::new(
            format!("SEC-4 unknown or mis-cased alg {alg:?}"),
            raw(&k.es, format!(r#"{{"alg":"{alg}","typ":"{ID_JAG}"}}"#).as_bytes(), &payload()),
            &es,
            fails!(Failure::Verify(VerifyError::Header(HeaderError::UnsupportedAlgorithm { alg: found })) if found == alg),
        ));
    }

    // ---- SEC-3 / EMA §4 step 6: signatures that are real, but not for these bytes or not by
    // this key. The signature covers the exact bytes received.
    rows.push(Row::new(
        "signed by another ES256 key",
        id_jag(&k.es_other),
        &es,
        fails!(Failure::Verify(VerifyError::BadSignature)),
    ));
    rows.push(Row::new(
        "payload re-encoded (same claims, other JSON bytes)",
        mutate(&valid, Part::Payload, |s| {
            let bytes = ema_jose::base64url::decode(s.as_bytes()).expect("payload");
            let value: Value = serde_json::from_slice(&bytes).expect("json");
            b64(serde_json::to_vec_pretty(&value).expect("json"))
        }),
        &es,
        fails!(Failure::Verify(VerifyError::BadSignature)),
    ));
    rows.push(Row::new(
        "header re-encoded (same members, other JSON bytes)",
        mutate(&valid, Part::Header, |s| {
            let bytes = ema_jose::base64url::decode(s.as_bytes()).expect("header");
            let value: Value = serde_json::from_slice(&bytes).expect("json");
            b64(serde_json::to_vec_pretty(&value).expect("json"))
        }),
        &es,
        fails!(Failure::Verify(VerifyError::BadSignature)),
    ));
    let decoded_input = [es_header.as_slice(), b".", payload().as_slice()].concat();
    let sig_over_json = k.es.sign_bytes(&decoded_input).expect("sign");
    rows.push(Row::new(
        "signature over the decoded JSON instead of the base64url input",
        unsigned(&es_header, &payload(), &sig_over_json),
        &es,
        fails!(Failure::Verify(VerifyError::BadSignature)),
    ));
    let other = jwt(
        &k.es,
        header(Some(ID_JAG)),
        &claims_with(json!({"sub": "admin"})),
    );
    rows.push(Row::new(
        "payload cut from another token signed by the same key",
        format!("{h}.{}.{s}", segment(&other, Part::Payload)),
        &es,
        fails!(Failure::Verify(VerifyError::BadSignature)),
    ));
    rows.push(Row::new(
        "signature cut from another token signed by the same key",
        format!("{h}.{p}.{}", segment(&other, Part::Signature)),
        &es,
        fails!(Failure::Verify(VerifyError::BadSignature)),
    ));

    rows.extend(d23_cty_rows(k));
    rows.extend(d22_kid_less_rows(k));
    rows
}

/// D-23: a `cty` header member makes every token kind invalid, whatever its value (none of
/// them is a nested JWT). A `cty` that is not a string is already refused by the parser
/// (RFC 7515 §4.1.10). The controls are the same tokens without `cty`.
fn d23_cty_rows(k: &Keys) -> Vec<Row> {
    let es = Arc::clone(k.es.verifying_key());
    let es_jwk = Value::Object(k.es.verifying_key().public_jwk().clone());
    // The header each kind needs to pass without `cty` (a DPoP proof carries its `jwk`).
    let header_for = |kind: TokenKind| {
        if kind == TokenKind::DpopProof {
            header_with(kind.typ(), json!({"jwk": es_jwk}))
        } else {
            header(kind.typ())
        }
    };
    let mut rows = Vec::new();
    for kind in KINDS {
        rows.push(
            Row::new(
                format!("control: D-23 {kind:?} without cty"),
                jwt(&k.es, header_for(kind), &claims()),
                &es,
                Expect::Pass,
            )
            .policy(HeaderPolicy::for_kind(kind)),
        );
        for cty in [
            "JWT",
            "jwt",
            "application/jwt",
            "application/json",
            "text/plain",
            "",
        ] {
            let mut h = header_for(kind);
            h.insert("cty".into(), cty.into());
            rows.push(
                Row::new(
                    format!("D-23 cty {cty:?} in a {kind:?} header"),
                    jwt(&k.es, h, &claims()),
                    &es,
                    fails!(Failure::Verify(VerifyError::Header(HeaderError::ContentType { found })) if found == cty),
                )
                .policy(HeaderPolicy::for_kind(kind)),
            );
        }
        for (what, value) in [
            ("a number", "1"),
            ("null", "null"),
            ("true", "true"),
            ("an array", r#"["JWT"]"#),
            ("an object", r#"{"type":"JWT"}"#),
        ] {
            let typ = kind.typ().expect("every kind writes a typ");
            let jwk = if kind == TokenKind::DpopProof {
                format!(r#","jwk":{es_jwk}"#)
            } else {
                String::new()
            };
            let header_json = format!(r#"{{"alg":"ES256","typ":"{typ}"{jwk},"cty":{value}}}"#);
            rows.push(
                Row::new(
                    format!("D-23 cty as {what} in a {kind:?} header"),
                    raw(&k.es, header_json.as_bytes(), &payload()),
                    &es,
                    fails!(Failure::Parse(ParseError::HeaderMember { name: "cty" })),
                )
                .policy(HeaderPolicy::for_kind(kind)),
            );
        }
    }
    // A custom policy (JWS outside the EMA kinds) refuses `cty` too.
    rows.push(
        Row::new(
            "control: D-23 custom policy without cty",
            id_jag(&k.es),
            &es,
            Expect::Pass,
        )
        .policy(HeaderPolicy::custom(
            TypRule::Ignored,
            AlgorithmSet::DEFAULT,
        )),
    );
    rows.push(
        Row::new(
            "D-23 cty under a custom policy",
            jwt(&k.es, header_with(Some(ID_JAG), json!({"cty": "JWT"})), &claims()),
            &es,
            fails!(Failure::Verify(VerifyError::Header(HeaderError::ContentType { found })) if found == "JWT"),
        )
        .policy(HeaderPolicy::custom(TypRule::Ignored, AlgorithmSet::DEFAULT)),
    );
    rows
}

/// A token signed by `key` whose header has no `kid` (only `alg` and the ID-JAG `typ`).
fn kid_less(key: &SigningKey) -> String {
    let header = format!(r#"{{"alg":"{}","typ":"{ID_JAG}"}}"#, key.algorithm());
    raw(key, header.as_bytes(), &payload())
}

fn set_of(keys: &[&SigningKey]) -> JwkSet {
    JwkSet::from_keys(keys.iter().map(|k| Arc::clone(k.verifying_key())))
}

/// D-22: a token without `kid` is verified only when the issuer's key set holds exactly one
/// usable key that fits its `alg`. Two or more usable keys, of any type, refuse it, even when
/// only one of them could verify that `alg`. Each refusal has two controls: the same kid-less
/// token with the signer's key alone, and a token with `kid` against the same two keys.
fn d22_kid_less_rows(k: &Keys) -> Vec<Row> {
    let mut rows = Vec::new();
    for (what, signer, other) in [
        ("EC + RSA", &k.es, &k.rs),
        ("RSA + EC", &k.rs, &k.es),
        ("two EC", &k.es, &k.es_other),
        ("EC + OKP", &k.es, &k.ed),
        ("OKP + EC", &k.ed, &k.es),
    ] {
        let token = kid_less(signer);
        for (order, set) in [
            ("signer first", set_of(&[signer, other])),
            ("signer last", set_of(&[other, signer])),
        ] {
            rows.push(Row::new_with_set(
                format!(
                    "D-22 kid-less {} token, issuer keys {what} ({order})",
                    signer.algorithm()
                ),
                token.clone(),
                set,
                fails!(Failure::Lookup(KeyLookupError::KidRequired { keys: 2 })),
            ));
        }
        rows.push(Row::new_with_set(
            format!(
                "control: D-22 the same kid-less {} token, the signer's key alone",
                signer.algorithm()
            ),
            token,
            set_of(&[signer]),
            Expect::Pass,
        ));
        rows.push(Row::new_with_set(
            format!(
                "control: D-22 {} token with kid, issuer keys {what}",
                signer.algorithm()
            ),
            id_jag(signer),
            set_of(&[signer, other]),
            Expect::Pass,
        ));
    }
    rows.push(Row::new_with_set(
        "D-22 kid-less ES256 token, issuer keys EC + RSA + OKP",
        kid_less(&k.es),
        set_of(&[&k.es, &k.rs, &k.ed]),
        fails!(Failure::Lookup(KeyLookupError::KidRequired { keys: 3 })),
    ));
    rows.push(Row::new_with_set(
        "D-22 kid-less ES256 token, the issuer's single key is RSA",
        kid_less(&k.es),
        set_of(&[&k.rs]),
        fails!(Failure::Lookup(KeyLookupError::NoMatchingKey {
            alg: Algorithm::ES256,
            keys: 1
        })),
    ));
    rows.push(Row::new_with_set(
        "D-22 kid-less ES256 token, the issuer's single key is another P-256 key",
        kid_less(&k.es),
        set_of(&[&k.es_other]),
        fails!(Failure::Verify(VerifyError::BadSignature)),
    ));
    rows.push(Row::new_with_set(
        "D-22 kid-less ES256 token, an empty key set",
        kid_less(&k.es),
        JwkSet::default(),
        fails!(Failure::Lookup(KeyLookupError::NoMatchingKey {
            alg: Algorithm::ES256,
            keys: 0
        })),
    ));
    // D-19 + D-22: entries set aside as unusable do not count as keys.
    let mut enc = k.rs.verifying_key().public_jwk().clone();
    enc.insert("use".into(), "enc".into());
    enc.insert("kid".into(), "rs-enc".into());
    let doc = json!({"keys": [enc, k.es.verifying_key().public_jwk()]});
    rows.push(Row::new_with_set(
        "control: D-22 kid-less ES256 token, one usable key beside an encryption key",
        kid_less(&k.es),
        JwkSet::parse(doc.to_string().as_bytes()).expect("jwks"),
        Expect::Pass,
    ));
    rows
}

/// Runs `rows` and returns one line per row that did not behave, and the number of controls.
fn check(rows: &[Row]) -> (String, usize) {
    let mut failures = String::new();
    let mut controls = 0;
    for row in rows {
        let outcome = row.run();
        match (&row.expect, &outcome) {
            (Expect::Pass, Ok(())) => controls += 1,
            (Expect::Fail(_, check), Err(f)) if check(f) => {}
            (Expect::Pass, Err(f)) => {
                let _ = writeln!(failures, "  {}: expected to pass, got {f:?}", row.name);
            }
            (Expect::Fail(pattern, _), got) => {
                let _ = writeln!(failures, "  {}: expected {pattern}, got {got:?}", row.name);
            }
        }
    }
    (failures, controls)
}

#[test]
fn attack_table() {
    let keys = Keys::new();
    let rows = rows(&keys);
    let (failures, controls) = check(&rows);
    println!(
        "attacks: {} rows ({controls} positive controls, {} attacks refused with the exact error)",
        rows.len(),
        rows.len() - controls
    );
    assert!(
        failures.is_empty(),
        "attack rows that did not behave:\n{failures}"
    );
}

/// D-23 on its own (the rows are also part of the attack table).
#[test]
fn d23_cty_header_is_refused_for_every_token_kind() {
    let rows = d23_cty_rows(&Keys::new());
    let (failures, controls) = check(&rows);
    assert!(
        failures.is_empty(),
        "D-23 rows that did not behave:\n{failures}"
    );
    assert_eq!(
        controls,
        KINDS.len() + 1,
        "one control per kind, one for a custom policy"
    );
}

/// D-22 on its own (the rows are also part of the attack table).
#[test]
fn d22_kid_less_token_needs_a_single_key_issuer() {
    let rows = d22_kid_less_rows(&Keys::new());
    let (failures, controls) = check(&rows);
    assert!(
        failures.is_empty(),
        "D-22 rows that did not behave:\n{failures}"
    );
    assert!(controls >= 10, "every refusal has its controls");
}

/// SEC-4 / D-19: an HMAC secret is never a verification key, alone or inside a JWKS beside a
/// usable key, and a token naming it fails lookup with the key-policy reason.
#[test]
fn symmetric_keys_never_become_verification_keys() {
    let oct =
        obj(json!({"kty": "oct", "k": b64(b"the shared secret, 32 bytes long"), "kid": "hmac"}));
    assert_eq!(
        VerifyingKey::from_jwk(&oct).expect_err("oct"),
        JwkError::UnsupportedKeyType { kty: "oct".into() }
    );
    let mut with_alg = oct.clone();
    with_alg.insert("alg".into(), "HS256".into());
    assert_eq!(
        VerifyingKey::from_jwk(&with_alg).expect_err("oct"),
        JwkError::UnsupportedAlgorithm {
            alg: "HS256".into()
        }
    );
    let signer = SigningKey::generate(Algorithm::ES256, Some("es-1".into())).expect("es256");
    let doc = json!({"keys": [oct, signer.verifying_key().public_jwk()]});
    let set = JwkSet::parse(doc.to_string().as_bytes()).expect("jwks");
    assert_eq!(set.keys().len(), 1);
    assert!(matches!(
        set.find(Some("hmac"), Algorithm::ES256),
        Err(KeyLookupError::Unusable {
            reason: JwkError::UnsupportedKeyType { .. },
            ..
        })
    ));
    assert!(set.find(Some("es-1"), Algorithm::ES256).is_ok());
    assert!(set.find(None, Algorithm::ES256).is_ok());
}

/// SEC-3 / D-19: keys are found by exact `kid` in the configured set; an unknown `kid` or an
/// ambiguous `kid`-less lookup fails rather than trying keys.
#[test]
fn key_lookup_is_exact() {
    let a = SigningKey::generate(Algorithm::ES256, Some("k1".into())).expect("es256");
    let b = SigningKey::generate(Algorithm::ES256, Some("k2".into())).expect("es256");
    let set = JwkSet::from_keys([Arc::clone(a.verifying_key()), Arc::clone(b.verifying_key())]);
    assert!(set.find(Some("k1"), Algorithm::ES256).is_ok());
    for kid in ["K1", "k1 ", "k", ""] {
        assert!(
            matches!(
                set.find(Some(kid), Algorithm::ES256),
                Err(KeyLookupError::UnknownKid { .. })
            ),
            "{kid:?}"
        );
    }
    // D-22: without a `kid`, two keys are two keys, whichever algorithm is asked for.
    for alg in [Algorithm::ES256, Algorithm::RS256] {
        let err = set.find(None, alg).expect_err("ambiguous");
        assert_eq!(err, KeyLookupError::KidRequired { keys: 2 });
        assert_eq!(
            err.to_string(),
            "token has no `kid`, which is required because the issuer's key set holds 2 usable keys"
        );
    }
    let single = JwkSet::from_keys([Arc::clone(a.verifying_key())]);
    assert!(single.find(None, Algorithm::ES256).is_ok());
    assert_eq!(
        single
            .find(None, Algorithm::RS256)
            .expect_err("RSA alg, EC key"),
        KeyLookupError::NoMatchingKey {
            alg: Algorithm::RS256,
            keys: 1
        }
    );
}

/// The interoperability oracle over the attack table: every row ema-jose accepts (the positive
/// controls) also verifies under `jsonwebtoken`, with the key that verified it here, the same
/// issuer and audience, and yields the same claims. ema-jose may be stricter, never looser.
#[test]
fn oracle_jsonwebtoken_accepts_every_accepted_row() {
    let keys = Keys::new();
    let mut problems = String::new();
    let (mut agreed, mut unsupported) = (0, Vec::new());
    for row in rows(&keys) {
        let Ok((key, verified)) = row.run_keyed() else {
            continue;
        };
        match oracle::decode(
            &row.token,
            &key,
            verified.algorithm(),
            Some(ISS),
            Some(AUD),
            NOW,
        ) {
            Oracle::Accepted(data)
                if data.claims == Value::Object(verified.claims().as_object().clone()) =>
            {
                agreed += 1;
            }
            Oracle::Accepted(data) => {
                let _ = writeln!(problems, "  {}: claims differ: {}", row.name, data.claims);
            }
            Oracle::Refused(kind) => {
                let _ = writeln!(
                    problems,
                    "  {}: ema-jose accepts, jsonwebtoken refuses: {kind:?}",
                    row.name
                );
            }
            Oracle::Unsupported(alg) => unsupported.push(format!("{} ({alg})", row.name)),
        }
    }
    println!(
        "oracle: {agreed} accepted attack-table rows verified by jsonwebtoken; {} not implemented there: {unsupported:?}",
        unsupported.len()
    );
    assert!(
        problems.is_empty(),
        "ema-jose looser than jsonwebtoken:\n{problems}"
    );
    assert!(agreed >= 10, "the oracle compared only {agreed} rows");
}

/// The reverse direction is expected: tokens `jsonwebtoken` verifies and ema-jose refuses, each
/// for a rule `jsonwebtoken` does not implement. Each case is checked both ways, so that a
/// change on either side shows here.
#[test]
fn oracle_known_stricter_than_jsonwebtoken() {
    let k = Keys::new();
    let es = Arc::clone(k.es.verifying_key());
    let cases: Vec<(&str, String, Expect)> = vec![
        (
            "SEC-5 / D-12: `typ` of an access token where an ID-JAG is expected (jsonwebtoken never reads `typ`)",
            jwt(&k.es, header(Some("at+jwt")), &claims()),
            fails!(Failure::Verify(VerifyError::Header(
                HeaderError::WrongType { .. }
            ))),
        ),
        (
            "SEC-5: no `typ` at all",
            jwt(&k.es, header(None), &claims()),
            fails!(Failure::Verify(VerifyError::Header(
                HeaderError::MissingType { .. }
            ))),
        ),
        (
            "SEC-3: a duplicate claim member (serde_json keeps the last one)",
            raw(
                &k.es,
                &header_plus(r#","kid":"es-1""#),
                &payload_plus(r#","client_id":"c2""#),
            ),
            fails!(Failure::Parse(ParseError::ClaimsJson(
                JsonError::DuplicateMember { .. }
            ))),
        ),
        (
            "SEC-2: `iat` in the future (jsonwebtoken does not read `iat`)",
            jwt(
                &k.es,
                header(Some(ID_JAG)),
                &claims_with(json!({"iat": NOW.as_secs() + 120})),
            ),
            fails!(Failure::Claims(ClaimError::Time(
                TimeError::IssuedInFuture { .. }
            ))),
        ),
        (
            "D-7: a lifetime above an hour (jsonwebtoken has no maximum)",
            jwt(
                &k.es,
                header(Some(ID_JAG)),
                &claims_with(json!({"exp": NOW.as_secs() + 7200})),
            ),
            fails!(Failure::Claims(ClaimError::Time(
                TimeError::LifetimeTooLong { .. }
            ))),
        ),
        (
            "D-12: an `aud` array with two entries (jsonwebtoken accepts any overlap)",
            jwt(
                &k.es,
                header(Some(ID_JAG)),
                &claims_with(json!({"aud": [AUD, "https://other.example"]})),
            ),
            fails!(Failure::Claims(ClaimError::AudienceCount { len: 2 })),
        ),
    ];
    for (name, token, expect) in cases {
        let row = Row::new(name, token, &es, expect);
        let (failures, _) = check(std::slice::from_ref(&row));
        assert!(failures.is_empty(), "ema-jose side:\n{failures}");
        match oracle::decode(&row.token, &es, Algorithm::ES256, Some(ISS), Some(AUD), NOW) {
            Oracle::Accepted(_) => {}
            other => panic!("{name}: expected jsonwebtoken to accept it, got {other:?}"),
        }
    }
}
