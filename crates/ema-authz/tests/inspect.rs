//! The built-in secret detector: each kind with its near misses, where it looks in a result,
//! redaction, and the scan cap failing closed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ema_authz::inspect::{REDACTED, SECRET_READ};
use ema_authz::{ResultInspector, SecretDetector, SecretKind, ToolCall};
use serde_json::{Value, json};

fn kinds(text: &str) -> Vec<SecretKind> {
    SecretDetector::new()
        .find(text)
        .into_iter()
        .map(|found| found.kind)
        .collect()
}

fn call() -> ToolCall {
    ToolCall::new("https://mcp.example.com", "read", Default::default())
}

fn text_result(text: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": text }] })
}

fn pem(label: &str) -> String {
    format!("-----BEGIN {label}-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END {label}-----\n")
}

fn jwt(header: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"alice"}"#);
    format!("{header}.{payload}.c2lnbmF0dXJlLWJ5dGVz")
}

#[test]
fn pem_private_keys_of_every_label_and_not_public_keys_or_certificates() {
    for label in [
        "PRIVATE KEY",
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "PGP PRIVATE KEY BLOCK",
    ] {
        let text = format!("key file:\n{}trailer", pem(label));
        let found = SecretDetector::new().find(&text);
        assert_eq!(found.len(), 1, "{label}");
        assert_eq!(found[0].kind, SecretKind::PemPrivateKey);
        // The whole block, up to its END line, and nothing after.
        assert_eq!(&text[found[0].range.clone()], pem(label).trim_end());
    }
    // A truncated block still counts, to the end of the text.
    let truncated = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq";
    let found = SecretDetector::new().find(truncated);
    assert_eq!(found[0].range, 0..truncated.len());
    // Near misses.
    for label in [
        "PUBLIC KEY",
        "CERTIFICATE",
        "RSA PUBLIC KEY",
        "PRIVATE KEYS",
    ] {
        assert!(kinds(&pem(label)).is_empty(), "{label}");
    }
    assert!(kinds("-----BEGIN PRIVATE KEY---- missing a dash").is_empty());
    assert!(kinds("the private key is in the vault").is_empty());
}

#[test]
fn aws_access_key_ids_and_near_misses() {
    assert_eq!(kinds("AKIAIOSFODNN7EXAMPLE"), [SecretKind::AwsAccessKeyId]);
    assert_eq!(
        kinds("id=ASIAY34FZKBOKMUTVV7A;"),
        [SecretKind::AwsAccessKeyId]
    );
    // 15 and 17 characters, lower case, a longer word, another prefix.
    assert!(kinds("AKIAIOSFODNN7EXAMPL").is_empty());
    assert!(kinds("AKIAIOSFODNN7EXAMPLEX").is_empty());
    assert!(kinds("AKIAiosfodnn7example").is_empty());
    assert!(kinds("XAKIAIOSFODNN7EXAMPLE").is_empty());
    assert!(kinds("AIDAIOSFODNN7EXAMPLE").is_empty());
}

#[test]
fn gcp_service_account_keys_in_json_text() {
    let key = r#"{"type": "service_account", "private_key_id": "abc", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\n", "client_email": "x@p.iam.gserviceaccount.com"}"#;
    let found = SecretDetector::new().find(key);
    assert_eq!(
        found.len(),
        1,
        "the PEM inside is reported once, as the outer kind"
    );
    assert_eq!(found[0].kind, SecretKind::GcpServiceAccountKey);
    let matched = &key[found[0].range.clone()];
    assert!(matched.starts_with("\"private_key\": \"-----BEGIN"));
    assert!(matched.ends_with("-----\\n\""));
    // Near misses: the key id, private_key members that are not private keys.
    assert!(kinds(r#"{"private_key_id": "0123abcd", "type": "service_account"}"#).is_empty());
    assert!(kinds(r#"{"private_key": "-----BEGIN PUBLIC KEY-----\nMIIB"}"#).is_empty());
    assert!(kinds(r#"{"private_key": "stored in the vault"}"#).is_empty());
}

#[test]
fn gcp_service_account_keys_in_structured_content() {
    let mut result = json!({
        "structuredContent": {
            "credentials": {
                "type": "service_account",
                "private_key": pem("PRIVATE KEY"),
                "client_email": "x@p.iam.gserviceaccount.com"
            },
            "other": { "type": "note", "private_key": pem("PRIVATE KEY") }
        }
    });
    let inspection = SecretDetector::new().inspect(&call(), &mut result);
    assert_eq!(
        inspection.findings,
        [
            "gcp service-account private key in structuredContent.credentials.private_key",
            "pem private key in structuredContent.other.private_key",
        ]
    );
}

#[test]
fn github_tokens_and_near_misses() {
    let body = "A1b2C3d4".repeat(5); // 40 characters
    for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
        assert_eq!(
            kinds(&format!("token {prefix}{body}")),
            [SecretKind::GitHubToken],
            "{prefix}"
        );
    }
    let pat = format!("github_pat_11ABCDEFG0_{}", "x9Y8".repeat(14));
    assert_eq!(kinds(&pat), [SecretKind::GitHubToken]);
    // Too short, an unknown prefix, inside a word.
    assert!(kinds(&format!("ghp_{}", &body[..35])).is_empty());
    assert!(kinds(&format!("ghx_{body}")).is_empty());
    assert!(kinds(&format!("xghp_{body}")).is_empty());
    assert!(kinds("github_pat_short").is_empty());
}

#[test]
fn slack_tokens_and_near_misses() {
    for kind in ['a', 'b', 'p', 'o', 's', 'r'] {
        let token = format!("xox{kind}-1234567890-abcdefghij");
        assert_eq!(kinds(&token), [SecretKind::SlackToken], "{kind}");
    }
    assert!(kinds("xoxz-1234567890-abcdefghij").is_empty());
    assert!(kinds("xoxb-12345").is_empty());
    assert!(kinds("xoxb-abcdefghijklmnop").is_empty(), "no digit");
    assert!(kinds("xoxb_1234567890-abcdefghij").is_empty());
}

#[test]
fn bearer_tokens_and_prose_about_bearers() {
    let text = "curl -H 'Authorization: Bearer 2YotnFZFEjr1zCsicMWpAA' https://api";
    let found = SecretDetector::new().find(text);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, SecretKind::BearerToken);
    assert_eq!(&text[found[0].range.clone()], "2YotnFZFEjr1zCsicMWpAA");
    assert_eq!(
        kinds("BEARER   abcdef0123456789=="),
        [SecretKind::BearerToken]
    );
    // Near misses: prose, short tokens, tokens without a digit, a longer word.
    assert!(kinds("the bearer of this letter").is_empty());
    assert!(kinds("Bearer tokens are described in RFC 6750").is_empty());
    assert!(kinds("Bearer abc123").is_empty());
    assert!(kinds("Bearer authenticationschemes").is_empty());
    assert!(kinds("forbearer 2YotnFZFEjr1zCsicMWpAA").is_empty());
}

#[test]
fn jwts_by_their_header_and_near_misses() {
    let token = jwt(&json!({ "alg": "RS256", "typ": "JWT" }));
    assert_eq!(
        kinds(&format!("id_token={token}&state=x")),
        [SecretKind::Jwt]
    );
    // A bearer JWT is reported once, as a JWT.
    assert_eq!(kinds(&format!("Bearer {token}")), [SecretKind::Jwt]);
    // An unsecured JWT (empty signature) is still a token.
    let unsecured = token.rsplit_once('.').unwrap().0.to_owned() + ".";
    assert_eq!(kinds(&unsecured), [SecretKind::Jwt]);
    // Near misses: two segments, a header without `alg`, an `alg` that is not a string, a
    // header that is not JSON.
    let two = token.rsplit_once('.').unwrap().0;
    assert!(kinds(two).is_empty());
    assert!(kinds(&jwt(&json!({ "typ": "JWT" }))).is_empty());
    assert!(kinds(&jwt(&json!({ "alg": 256 }))).is_empty());
    let not_json = format!("{}.e30.sig", URL_SAFE_NO_PAD.encode("eyes only, not json"));
    assert!(kinds(&not_json).is_empty());
    assert!(kinds("eyJhbGciOi.not-base64!.x").is_empty());
}

#[test]
fn innocent_text_has_no_findings() {
    let text = "SELECT id, name FROM users WHERE created_at > '2024-01-01'; -- 42 rows\n\
                See https://example.com/docs?page=3 for the Bearer scheme.";
    assert!(kinds(text).is_empty());
    let mut result = text_result(text);
    let before = result.clone();
    let inspection = SecretDetector::new()
        .with_redaction(true)
        .inspect(&call(), &mut result);
    assert!(inspection.labels.is_empty());
    assert!(inspection.findings.is_empty());
    assert_eq!(inspection.redactions, 0);
    assert_eq!(result, before);
}

#[test]
fn looks_in_text_content_embedded_resources_and_structured_leaves() {
    let mut result = json!({
        "content": [
            { "type": "image", "data": "AKIAIOSFODNN7EXAMPLE", "mimeType": "image/png" },
            { "type": "text", "text": "nothing here" },
            { "type": "resource", "resource": { "uri": "file:///x", "text": "AKIAIOSFODNN7EXAMPLE" } }
        ],
        "structuredContent": { "rows": [ { "note": "ok" }, { "note": "xoxb-1234567890-abcdefghij" } ] },
        "isError": false
    });
    let inspection = SecretDetector::new().inspect(&call(), &mut result);
    assert!(inspection.labels.contains(SECRET_READ));
    assert_eq!(
        inspection.findings,
        [
            "aws access key id in content[2].resource.text",
            "slack token in structuredContent.rows[1].note",
        ]
    );
    assert_eq!(inspection.redactions, 0, "no redaction unless asked");
    assert_eq!(
        result["structuredContent"]["rows"][1]["note"],
        "xoxb-1234567890-abcdefghij"
    );
}

#[test]
fn findings_never_contain_the_secret() {
    let secret = "AKIAIOSFODNN7EXAMPLE";
    let mut result = text_result(&format!("{secret} {}", jwt(&json!({ "alg": "ES256" }))));
    let inspection = SecretDetector::new().inspect(&call(), &mut result);
    assert_eq!(inspection.findings.len(), 2);
    for finding in &inspection.findings {
        assert!(
            !finding.contains(secret) && !finding.contains("eyJ"),
            "{finding}"
        );
    }
}

#[test]
fn redaction_replaces_each_match_and_keeps_the_rest() {
    let token = jwt(&json!({ "alg": "RS256" }));
    let text = format!(
        "a={} b=AKIAIOSFODNN7EXAMPLE c=Bearer {token} d={}end",
        "xoxp-1234567890-abcdefghij",
        pem("RSA PRIVATE KEY")
    );
    let mut result = json!({
        "content": [{ "type": "text", "text": text }],
        "structuredContent": { "key": "AKIAIOSFODNN7EXAMPLE", "n": 3 }
    });
    let inspection = SecretDetector::new()
        .with_redaction(true)
        .inspect(&call(), &mut result);
    assert_eq!(inspection.redactions, 5);
    assert_eq!(
        result["content"][0]["text"],
        format!("a={REDACTED} b={REDACTED} c=Bearer {REDACTED} d={REDACTED}\nend")
    );
    assert_eq!(
        result["structuredContent"],
        json!({ "key": REDACTED, "n": 3 })
    );
}

#[test]
fn over_the_scan_cap_fails_closed() {
    let detector = SecretDetector::new().with_max_scan_bytes(64);
    // Under the cap: scanned, nothing found.
    let mut small = json!({ "content": [
        { "type": "text", "text": "a".repeat(30) },
        { "type": "text", "text": "b".repeat(34) }
    ]});
    let inspection = detector.inspect(&call(), &mut small);
    assert!(inspection.labels.is_empty(), "{inspection:?}");
    // One byte more: the excess is a finding and raises the label.
    let mut large = json!({ "content": [
        { "type": "text", "text": "a".repeat(30) },
        { "type": "text", "text": "b".repeat(35) }
    ]});
    let inspection = detector.inspect(&call(), &mut large);
    assert!(inspection.labels.contains(SECRET_READ));
    assert_eq!(
        inspection.findings,
        [
            "result exceeds the scan limit of 64 bytes at content[1].text; treated as holding a secret"
        ]
    );
    assert_eq!(inspection.redactions, 0);
    // In redaction mode nothing unscanned leaves.
    let redacting = detector.clone().with_redaction(true);
    let mut large = json!({
        "content": [{ "type": "text", "text": "a".repeat(30) }, { "type": "text", "text": "b".repeat(35) }],
        "structuredContent": { "more": "c" }
    });
    let inspection = redacting.inspect(&call(), &mut large);
    assert_eq!(inspection.redactions, 2);
    assert_eq!(large["content"][0]["text"], "a".repeat(30));
    assert_eq!(large["content"][1]["text"], REDACTED);
    assert_eq!(large["structuredContent"]["more"], REDACTED);
}

#[test]
fn deeply_nested_structured_content_does_not_overflow_the_stack() {
    let mut value = json!("AKIAIOSFODNN7EXAMPLE");
    for _ in 0..100_000 {
        value = Value::Array(vec![value]);
    }
    // Built by hand: `json!` would serialize `value` recursively.
    let mut result =
        Value::Object(std::iter::once(("structuredContent".to_owned(), value)).collect());
    let inspection = SecretDetector::new().inspect(&call(), &mut result);
    assert!(inspection.labels.contains(SECRET_READ));
    // Dropping a deep Value recurses in serde_json; leak it rather than test serde_json here.
    std::mem::forget(result);
}

#[test]
fn hostile_repetitions_are_scanned_in_linear_time() {
    // Each would cost quadratic time in a naive scan (an `END` search or a token run per
    // candidate); at 512 KiB that would not finish in any reasonable time.
    let detector = SecretDetector::new();
    let size = 512 * 1024;
    let repeat = |unit: &str| unit.repeat(size / unit.len());
    let headers = repeat("-----BEGIN PRIVATE KEY-----");
    let found = detector.find(&headers);
    assert_eq!(found.len(), 1, "one block, to the end of the text");
    assert_eq!(found[0].range, 0..headers.len());
    let members = repeat("\"private_key\": \"-----BEGIN PRIVATE KEY-----");
    assert!(!detector.find(&members).is_empty());
    assert_eq!(detector.find(&repeat("xoxb-")).len(), 0);
    assert_eq!(detector.find(&repeat("xoxb-1")).len(), 1);
    assert!(detector.find(&repeat("Bearer ")).is_empty());
    // `header.header.header` is JWT-shaped: found once; the later segments follow a dot.
    assert_eq!(detector.find(&repeat("eyJhbGciOiJub25lIn0.")).len(), 1);
    assert!(detector.find(&repeat("AKIA")).is_empty());
    assert!(detector.find(&repeat("ghp_")).is_empty());
}
