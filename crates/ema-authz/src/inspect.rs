//! The built-in result inspector: [`SecretDetector`] finds common secret shapes in tool results
//! before they leave the server, raises the `secret_read` label on the session, and optionally
//! redacts what it found.
//!
//! What it detects ([`SecretKind`]):
//! - PEM private keys (`-----BEGIN ... PRIVATE KEY-----`, any algorithm, OpenSSH and PGP
//!   blocks too), up to their `END` line (to the end of the text when it is missing);
//! - AWS access key ids (`AKIA` or `ASIA` followed by 16 upper-case letters or digits);
//! - GCP service-account keys (a `"private_key": "-----BEGIN ..."` member in JSON text, or a
//!   `private_key` string in a structured object whose `type` is `service_account`);
//! - GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` followed by at least 36 letters
//!   or digits, and `github_pat_` fine-grained tokens);
//! - Slack tokens (`xoxa-`, `xoxb-`, `xoxp-`, `xoxo-`, `xoxs-`, `xoxr-` followed by at least
//!   ten letters, digits or dashes, one of them a digit);
//! - `Bearer <token>` strings (a token of at least 16 token characters with a digit);
//! - JWT-shaped strings (three base64url segments whose first decodes to a JSON object with
//!   a string `alg`).
//!
//! Where it looks: the `text` of every `content[]` item (and the `resource.text` of embedded
//! resources), and every string leaf of `structuredContent` (object keys are not scanned).
//! Work is bounded: at most [`SecretDetector::max_scan_bytes`] bytes of strings are scanned per
//! result. A result with more fails closed: the excess is reported as a finding and raises
//! `secret_read` as if it held a secret, and in redaction mode the strings past the limit are
//! replaced by `[REDACTED]`.
//!
//! Findings name the kind of secret and where it was, never the matched text. Matching is
//! hand-written and linear in the text scanned.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

use crate::authorizer::{Inspection, ResultInspector};
use crate::model::ToolCall;

/// The label raised on a session whose tool result matched a secret detector.
pub const SECRET_READ: &str = "secret_read";

/// What a redacted secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The default cap on bytes of strings scanned per result: 1 MiB.
pub const DEFAULT_MAX_SCAN_BYTES: usize = 1 << 20;

/// A kind of secret the [`SecretDetector`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SecretKind {
    /// A GCP service-account key (its `private_key` member).
    GcpServiceAccountKey,
    /// A PEM private key block.
    PemPrivateKey,
    /// An AWS access key id.
    AwsAccessKeyId,
    /// A GitHub token.
    GitHubToken,
    /// A Slack token.
    SlackToken,
    /// A JWT-shaped string.
    Jwt,
    /// The token of a `Bearer <token>` string.
    BearerToken,
}

impl SecretKind {
    /// The kind in words, as findings name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GcpServiceAccountKey => "gcp service-account private key",
            Self::PemPrivateKey => "pem private key",
            Self::AwsAccessKeyId => "aws access key id",
            Self::GitHubToken => "github token",
            Self::SlackToken => "slack token",
            Self::Jwt => "jwt",
            Self::BearerToken => "bearer token",
        }
    }
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One secret found in a text: its kind and its byte range in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretMatch {
    /// What was found.
    pub kind: SecretKind,
    /// Where, in bytes (always on `char` boundaries).
    pub range: Range<usize>,
}

/// Detects secrets in tool results; see the [module docs](self).
///
/// ```
/// use ema_authz::{ResultInspector, ToolCall};
/// use ema_authz::inspect::{SecretDetector, SECRET_READ};
/// use serde_json::json;
///
/// let detector = SecretDetector::new().with_redaction(true);
/// let call = ToolCall::new("https://mcp.example.com", "read_file", Default::default());
/// let mut result = json!({
///     "content": [{ "type": "text", "text": "aws_access_key_id = AKIAIOSFODNN7EXAMPLE" }]
/// });
/// let inspection = detector.inspect(&call, &mut result);
/// assert!(inspection.labels.contains(SECRET_READ));
/// assert_eq!(inspection.findings, ["aws access key id in content[0].text"]);
/// assert_eq!(result["content"][0]["text"], "aws_access_key_id = [REDACTED]");
/// ```
#[derive(Debug, Clone)]
pub struct SecretDetector {
    redact: bool,
    max_scan_bytes: usize,
}

impl Default for SecretDetector {
    fn default() -> Self {
        Self::new()
    }
}

/// Lenient base64url for JWT-shaped headers: padding optional, trailing bits tolerated (a
/// detector errs towards finding).
const LENIENT_B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn is_alnum(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
}

fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn is_b64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

fn is_token68(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

/// The byte before `at`, if any.
fn before(bytes: &[u8], at: usize) -> Option<u8> {
    at.checked_sub(1).and_then(|i| bytes.get(i).copied())
}

/// The length of the run of bytes satisfying `pred` starting at `from`.
fn run(bytes: &[u8], from: usize, pred: impl Fn(u8) -> bool) -> usize {
    bytes
        .get(from..)
        .map_or(0, |rest| rest.iter().take_while(|b| pred(**b)).count())
}

/// Positions of `needle` in `text`, ASCII case-insensitively.
fn find_ascii_ci<'a>(text: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    text.windows(needle.len().max(1))
        .enumerate()
        .filter(move |(_, window)| window.eq_ignore_ascii_case(needle))
        .map(|(at, _)| at)
}

/// The end of the JSON string whose contents start at `from` (just past its closing quote),
/// or the end of the text when it is not closed.
fn json_string_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(byte) = bytes.get(i) {
        match byte {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// When a PEM private-key header (`-----BEGIN ... PRIVATE KEY-----`) starts at `at`: its
/// label and the end of the header.
fn private_key_header(text: &str, at: usize) -> Option<(&str, usize)> {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    if !text.get(at..)?.starts_with(BEGIN) {
        return None;
    }
    let label_start = at + BEGIN.len();
    let label_len = run(text.as_bytes(), label_start, |b| {
        b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' '
    });
    let label = text.get(label_start..label_start + label_len)?;
    let header_end = label_start + label_len + DASHES.len();
    let closed = text.get(label_start + label_len..header_end)? == DASHES;
    let private = label.ends_with("PRIVATE KEY") || label.ends_with("PRIVATE KEY BLOCK");
    (closed && private).then_some((label, header_end))
}

fn pem_private_keys(text: &str, found: &mut Vec<SecretMatch>) {
    // Headers inside a block already found are skipped, so that the search for `END` lines
    // stays linear in the text (a block without one extends to the end of the text).
    let mut covered = 0;
    for (at, _) in text.match_indices("-----BEGIN ") {
        if at < covered {
            continue;
        }
        let Some((label, header_end)) = private_key_header(text, at) else {
            continue;
        };
        let end_line = format!("-----END {label}-----");
        let end = text
            .get(header_end..)
            .and_then(|rest| rest.find(&end_line))
            .map_or(text.len(), |offset| header_end + offset + end_line.len());
        covered = end;
        found.push(SecretMatch {
            kind: SecretKind::PemPrivateKey,
            range: at..end,
        });
    }
}

fn gcp_service_account_keys(text: &str, found: &mut Vec<SecretMatch>) {
    const MEMBER: &str = "\"private_key\"";
    let bytes = text.as_bytes();
    let mut covered = 0;
    for (at, _) in text.match_indices(MEMBER) {
        if at < covered {
            continue;
        }
        let mut i = at + MEMBER.len();
        i += run(bytes, i, |b| b.is_ascii_whitespace());
        if bytes.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        i += run(bytes, i, |b| b.is_ascii_whitespace());
        if bytes.get(i) != Some(&b'"') {
            continue;
        }
        let value = i + 1;
        if private_key_header(text, value).is_none() {
            continue;
        }
        covered = json_string_end(bytes, value);
        found.push(SecretMatch {
            kind: SecretKind::GcpServiceAccountKey,
            range: at..covered,
        });
    }
}

fn aws_access_key_ids(text: &str, found: &mut Vec<SecretMatch>) {
    let bytes = text.as_bytes();
    for prefix in ["AKIA", "ASIA"] {
        for (at, _) in text.match_indices(prefix) {
            if before(bytes, at).is_some_and(is_alnum) {
                continue;
            }
            let body = at + prefix.len();
            let len = run(bytes, body, |b| {
                b.is_ascii_uppercase() || b.is_ascii_digit()
            });
            if len == 16 && !bytes.get(body + len).copied().is_some_and(is_alnum) {
                found.push(SecretMatch {
                    kind: SecretKind::AwsAccessKeyId,
                    range: at..body + len,
                });
            }
        }
    }
}

fn github_tokens(text: &str, found: &mut Vec<SecretMatch>) {
    let bytes = text.as_bytes();
    for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
        for (at, _) in text.match_indices(prefix) {
            if before(bytes, at).is_some_and(is_word) {
                continue;
            }
            let body = at + prefix.len();
            let len = run(bytes, body, is_alnum);
            if len >= 36 {
                found.push(SecretMatch {
                    kind: SecretKind::GitHubToken,
                    range: at..body + len,
                });
            }
        }
    }
    const PAT: &str = "github_pat_";
    for (at, _) in text.match_indices(PAT) {
        if before(bytes, at).is_some_and(is_word) {
            continue;
        }
        let body = at + PAT.len();
        let len = run(bytes, body, is_word);
        if len >= 22 {
            found.push(SecretMatch {
                kind: SecretKind::GitHubToken,
                range: at..body + len,
            });
        }
    }
}

fn slack_tokens(text: &str, found: &mut Vec<SecretMatch>) {
    let bytes = text.as_bytes();
    // A candidate inside an earlier candidate's run is a suffix of it, shorter and with no
    // more digits: skipping it keeps the scan linear.
    let mut scanned = 0;
    for (at, _) in text.match_indices("xox") {
        if at < scanned || before(bytes, at).is_some_and(is_word) {
            continue;
        }
        let kind_ok = bytes
            .get(at + 3)
            .is_some_and(|b| matches!(b, b'a' | b'b' | b'p' | b'o' | b's' | b'r'));
        if !kind_ok || bytes.get(at + 4) != Some(&b'-') {
            continue;
        }
        let body = at + 5;
        let len = run(bytes, body, |b| is_alnum(b) || b == b'-');
        scanned = body + len;
        let has_digit = bytes
            .get(body..body + len)
            .is_some_and(|token| token.iter().any(u8::is_ascii_digit));
        if len >= 10 && has_digit {
            found.push(SecretMatch {
                kind: SecretKind::SlackToken,
                range: at..body + len,
            });
        }
    }
}

fn bearer_tokens(text: &str, found: &mut Vec<SecretMatch>) {
    const BEARER: &[u8] = b"bearer";
    let bytes = text.as_bytes();
    for at in find_ascii_ci(bytes, BEARER) {
        if before(bytes, at).is_some_and(is_word) {
            continue;
        }
        let gap = run(bytes, at + BEARER.len(), |b| b == b' ' || b == b'\t');
        if gap == 0 {
            continue;
        }
        let start = at + BEARER.len() + gap;
        let len = run(bytes, start, is_token68);
        let token = bytes.get(start..start + len).unwrap_or_default();
        if len >= 16 && token.iter().any(u8::is_ascii_digit) {
            let padding = run(bytes, start + len, |b| b == b'=');
            found.push(SecretMatch {
                kind: SecretKind::BearerToken,
                range: start..start + len + padding,
            });
        }
    }
}

/// Whether `segment` is base64url of a JSON object with a string `alg`.
fn is_jose_header(segment: &[u8]) -> bool {
    LENIENT_B64URL
        .decode(segment)
        .ok()
        .and_then(|json| serde_json::from_slice::<Map<String, Value>>(&json).ok())
        .is_some_and(|header| header.get("alg").is_some_and(Value::is_string))
}

fn jwts(text: &str, found: &mut Vec<SecretMatch>) {
    let bytes = text.as_bytes();
    for (at, _) in text.match_indices("ey") {
        if before(bytes, at).is_some_and(|b| is_b64url(b) || b == b'.') {
            continue;
        }
        let header_len = run(bytes, at, is_b64url);
        let dot1 = at + header_len;
        if header_len < 10 || bytes.get(dot1) != Some(&b'.') {
            continue;
        }
        let payload_len = run(bytes, dot1 + 1, is_b64url);
        let dot2 = dot1 + 1 + payload_len;
        if bytes.get(dot2) != Some(&b'.') {
            continue;
        }
        let signature_len = run(bytes, dot2 + 1, is_b64url);
        let header = bytes.get(at..dot1).unwrap_or_default();
        if is_jose_header(header) {
            found.push(SecretMatch {
                kind: SecretKind::Jwt,
                range: at..dot2 + 1 + signature_len,
            });
        }
    }
}

/// Replaces `matches` (sorted by start) in `text` by [`REDACTED`], merging overlaps; returns
/// how many replacements were made.
fn redact(text: &mut String, matches: &[SecretMatch]) -> usize {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut replaced = 0;
    for found in matches {
        if found.range.end <= copied {
            continue;
        }
        if found.range.start >= copied {
            out.push_str(text.get(copied..found.range.start).unwrap_or_default());
            out.push_str(REDACTED);
            replaced += 1;
        }
        copied = found.range.end;
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    *text = out;
    replaced
}

/// Paths in findings stop growing past this length (a deep result would otherwise cost
/// quadratic time and memory in path text alone).
const MAX_PATH_LEN: usize = 200;

/// `path` followed by `step`, or `path` with an ellipsis once it is long.
fn child_path(path: &str, step: fmt::Arguments<'_>) -> String {
    if path.len() >= MAX_PATH_LEN {
        if path.ends_with('\u{2026}') {
            path.to_owned()
        } else {
            format!("{path}\u{2026}")
        }
    } else {
        format!("{path}{step}")
    }
}

/// The state of one result's scan.
#[derive(Debug)]
struct Scan {
    budget: usize,
    over: bool,
    inspection: Inspection,
}

impl SecretDetector {
    /// A detector that reports and labels but does not redact, scanning at most
    /// [`DEFAULT_MAX_SCAN_BYTES`] per result.
    pub fn new() -> Self {
        Self {
            redact: false,
            max_scan_bytes: DEFAULT_MAX_SCAN_BYTES,
        }
    }

    /// Whether matches are replaced by [`REDACTED`] in the result.
    #[must_use]
    pub fn with_redaction(mut self, redact: bool) -> Self {
        self.redact = redact;
        self
    }

    /// Sets the cap on bytes of strings scanned per result.
    #[must_use]
    pub fn with_max_scan_bytes(mut self, max: usize) -> Self {
        self.max_scan_bytes = max;
        self
    }

    /// Whether this detector redacts.
    pub fn redacts(&self) -> bool {
        self.redact
    }

    /// The cap on bytes of strings scanned per result.
    pub fn max_scan_bytes(&self) -> usize {
        self.max_scan_bytes
    }

    /// The secrets in `text`, sorted by position; a match lying inside another (a JWT that is
    /// a bearer token, the PEM key inside a service-account key) is reported once, as the
    /// outer or first kind. Scans the whole text: the cap applies to [`ResultInspector::inspect`].
    pub fn find(&self, text: &str) -> Vec<SecretMatch> {
        let mut found = Vec::new();
        gcp_service_account_keys(text, &mut found);
        pem_private_keys(text, &mut found);
        aws_access_key_ids(text, &mut found);
        github_tokens(text, &mut found);
        slack_tokens(text, &mut found);
        jwts(text, &mut found);
        bearer_tokens(text, &mut found);
        found.sort_by(|a, b| {
            (a.range.start, b.range.end, a.kind).cmp(&(b.range.start, a.range.end, b.kind))
        });
        let mut kept: Vec<SecretMatch> = Vec::with_capacity(found.len());
        let mut covered = 0;
        for candidate in found {
            if candidate.range.end <= covered && !kept.is_empty() {
                continue;
            }
            covered = covered.max(candidate.range.end);
            kept.push(candidate);
        }
        kept
    }

    /// Scans one string of the result at `path`; `as_kind` renames PEM matches (a
    /// service-account object's `private_key`).
    fn scan_string(
        &self,
        text: &mut String,
        path: &str,
        as_kind: Option<SecretKind>,
        scan: &mut Scan,
    ) {
        if !scan.over && text.len() > scan.budget {
            scan.over = true;
            scan.inspection.labels.insert(SECRET_READ.to_owned());
            scan.inspection.findings.push(format!(
                "result exceeds the scan limit of {} bytes at {path}; treated as holding a secret",
                self.max_scan_bytes
            ));
        }
        if scan.over {
            if self.redact && !text.is_empty() {
                *text = REDACTED.to_owned();
                scan.inspection.redactions += 1;
            }
            return;
        }
        scan.budget -= text.len();
        let mut matches = self.find(text);
        if matches.is_empty() {
            return;
        }
        if let Some(kind) = as_kind {
            for found in &mut matches {
                if found.kind == SecretKind::PemPrivateKey {
                    found.kind = kind;
                }
            }
        }
        scan.inspection.labels.insert(SECRET_READ.to_owned());
        let kinds: BTreeSet<SecretKind> = matches.iter().map(|found| found.kind).collect();
        for kind in kinds {
            scan.inspection.findings.push(format!("{kind} in {path}"));
        }
        if self.redact {
            scan.inspection.redactions += redact(text, &matches);
        }
    }

    /// Scans every string leaf under `structured_content`, without recursion.
    fn scan_structured(&self, structured_content: &mut Value, scan: &mut Scan) {
        let mut stack: Vec<(&mut Value, String, Option<SecretKind>)> =
            vec![(structured_content, "structuredContent".to_owned(), None)];
        while let Some((value, path, as_kind)) = stack.pop() {
            match value {
                Value::String(text) => self.scan_string(text, &path, as_kind, scan),
                Value::Array(items) => {
                    for (i, item) in items.iter_mut().enumerate().rev() {
                        stack.push((item, child_path(&path, format_args!("[{i}]")), None));
                    }
                }
                Value::Object(members) => {
                    let service_account = members
                        .get("type")
                        .is_some_and(|kind| kind == "service_account");
                    let mut children: Vec<_> = members.iter_mut().collect();
                    children.reverse();
                    for (name, item) in children {
                        let as_kind = (service_account && name == "private_key")
                            .then_some(SecretKind::GcpServiceAccountKey);
                        stack.push((item, child_path(&path, format_args!(".{name}")), as_kind));
                    }
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
    }
}

impl ResultInspector for SecretDetector {
    fn inspect(&self, _call: &ToolCall, result: &mut Value) -> Inspection {
        let mut scan = Scan {
            budget: self.max_scan_bytes,
            over: false,
            inspection: Inspection::default(),
        };
        if let Some(content) = result.get_mut("content").and_then(Value::as_array_mut) {
            for (i, item) in content.iter_mut().enumerate() {
                if let Some(Value::String(text)) = item.get_mut("text") {
                    self.scan_string(text, &format!("content[{i}].text"), None, &mut scan);
                }
                if let Some(Value::String(text)) = item
                    .get_mut("resource")
                    .and_then(|resource| resource.get_mut("text"))
                {
                    let path = format!("content[{i}].resource.text");
                    self.scan_string(text, &path, None, &mut scan);
                }
            }
        }
        if let Some(structured) = result.get_mut("structuredContent") {
            self.scan_structured(structured, &mut scan);
        }
        scan.inspection
    }
}
