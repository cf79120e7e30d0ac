//! DPoP proofs at a token endpoint (RFC 9449 §4.3; TX-13, AS-17, SEC-8, D-17).

use ema_jose::{
    AlgorithmSet, HeaderPolicy, ParseOptions, TokenKind, UnixTime, UnverifiedJwt, VerifyingKey,
};
use serde_json::Value;

use crate::replay::{ReplayKey, ReplayKind, ReplayStore, Seen};

/// A validated DPoP proof.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DpopProof {
    /// RFC 7638 thumbprint of the proof's key: the value for `cnf.jkt`.
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
}

/// Why a DPoP proof was refused (→ `invalid_dpop_proof`; a store failure →
/// `temporarily_unavailable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// Not a well-formed JWT, or its header breaks the DPoP policy (`typ`, `alg`, `jwk`).
    #[error("malformed DPoP proof")]
    Malformed,
    /// The `jwk` header is not an acceptable public key.
    #[error("DPoP proof key refused")]
    Key,
    /// The signature does not verify with the `jwk` header key.
    #[error("DPoP proof signature does not verify")]
    Signature,
    /// `jti`, `htm`, `htu` or `iat` is missing or mistyped.
    #[error("DPoP proof claim `{claim}` missing or malformed")]
    Claim {
        /// The claim name.
        claim: &'static str,
    },
    /// `ath` is not the hash of the access token presented with the proof (RFC 9449 §4.3
    /// item 12).
    #[error("DPoP proof `ath` does not match the access token")]
    TokenHash,
    /// `htm` is not the request method.
    #[error("DPoP proof `htm` does not match the request method")]
    Method,
    /// `htu` is not the endpoint URI.
    #[error("DPoP proof `htu` does not match the endpoint")]
    Uri,
    /// `iat` is outside the accepted window.
    #[error("DPoP proof is too old or from the future")]
    Stale,
    /// The proof's `jti` was seen before.
    #[error("DPoP proof replayed")]
    Replayed,
    /// The replay store could not be consulted.
    #[error("replay store unavailable")]
    StoreUnavailable,
}

impl ema_metadata::ToErrorCode for DpopError {
    /// RFC 9449 §5: `invalid_dpop_proof`; `temporarily_unavailable` when the replay store cannot
    /// be consulted (fail closed).
    fn error_code(&self) -> ema_metadata::ErrorCode {
        match self {
            Self::StoreUnavailable => ema_metadata::ErrorCode::TemporarilyUnavailable,
            Self::Malformed
            | Self::Key
            | Self::Signature
            | Self::Claim { .. }
            | Self::TokenHash
            | Self::Method
            | Self::Uri
            | Self::Stale
            | Self::Replayed => ema_metadata::ErrorCode::InvalidDpopProof,
        }
    }

    fn error_description(&self) -> &'static str {
        match self {
            Self::StoreUnavailable => "replay detection is unavailable; try again later",
            Self::Malformed
            | Self::Key
            | Self::Signature
            | Self::Claim { .. }
            | Self::TokenHash
            | Self::Method
            | Self::Uri
            | Self::Stale
            | Self::Replayed => "DPoP proof is invalid",
        }
    }
}

/// Validates DPoP proofs for one endpoint.
///
/// The accepted `iat` window depends on where proofs arrive (D-28): [`DpopValidator::new`]
/// is for token endpoints (`iat` ∈ [now − 120 s, now + 30 s]), [`DpopValidator::for_resource`]
/// for resource servers (`iat` ∈ [now − 300 s, now + 300 s], DP-32); [`DpopValidator::with_window`]
/// tightens either, up to ±300 s.
///
/// `htu` is compared after the normalization of D-27 ([`normalize_htu`]), so
/// `HTTPS://Auth.Example:443/%7Efoo/./token` matches `https://auth.example/~foo/token`, while
/// a proof `htu` with a query, a fragment or userinfo is refused.
///
/// ```
/// use ema_grant::DpopValidator;
///
/// let token_endpoint = DpopValidator::new("https://auth.example/token");
/// let resource = DpopValidator::for_resource("https://mcp.example/mcp").with_window(60, 60);
/// # let _ = (token_endpoint, resource);
/// ```
#[derive(Debug, Clone)]
pub struct DpopValidator {
    /// The endpoint as configured, normalized per D-27 (query and fragment dropped); when the
    /// configured endpoint cannot be normalized it is kept as given, and no proof matches it.
    endpoint: String,
    algorithms: AlgorithmSet,
    max_age: u64,
    leeway: u64,
}

/// The widest window D-28 allows in either direction (MCP-DPOP: ±300 s).
const MAX_WINDOW: u64 = 300;

/// Normalizes an `htu` value, or the URI it is compared with, per D-27 (RFC 3986 §6.2.2 and
/// §6.2.3): lowercase scheme and host, the default port (`:443` for https, `:80` for http)
/// dropped, percent-escapes in upper case and unreserved ones decoded, dot segments removed,
/// an empty path made `/`. A trailing slash stays significant.
///
/// Returns `None` for what D-27 and DP-3 refuse: a scheme other than `http`/`https`, userinfo,
/// a query or fragment (the caller strips those from its own endpoint first), a malformed port
/// or percent-escape.
///
/// ```
/// use ema_grant::dpop::normalize_htu;
///
/// assert_eq!(
///     normalize_htu("HTTPS://MCP.Example:443/a/../%7euser/mcp").as_deref(),
///     Some("https://mcp.example/~user/mcp")
/// );
/// assert_eq!(normalize_htu("https://mcp.example/mcp?x=1"), None);
/// ```
pub fn normalize_htu(uri: &str) -> Option<String> {
    // D-27: a query or fragment in a proof `htu` is refused, not stripped.
    if uri.contains(['?', '#']) {
        return None;
    }
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, ""),
    };
    // DP-3: no userinfo.
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    // The port follows the last `:` outside an IPv6 literal.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority.get(i..)?.contains(']') => {
            (authority.get(..i)?, Some(authority.get(i + 1..)?))
        }
        _ => (authority, None),
    };
    if host.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(uri.len());
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&host.to_ascii_lowercase());
    match port {
        None | Some("") => {}
        Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => return None,
        Some(p) => {
            let p = p.trim_start_matches('0');
            let p = if p.is_empty() { "0" } else { p };
            if p != default_port {
                out.push(':');
                out.push_str(p);
            }
        }
    }
    let path = normalize_escapes(path)?;
    let path = remove_dot_segments(&path);
    if path.is_empty() {
        out.push('/');
    } else {
        out.push_str(&path);
    }
    Some(out)
}

/// Upper-cases percent-escapes and decodes those of unreserved characters (RFC 3986 §6.2.2.1,
/// §6.2.2.2); `None` for a `%` not followed by two hex digits.
fn normalize_escapes(path: &str) -> Option<String> {
    // A path with raw non-ASCII characters is not a URI (RFC 3986 §2).
    if !path.is_ascii() {
        return None;
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hex = |at: usize| bytes.get(at).and_then(|h| char::from(*h).to_digit(16));
        let value = hex(i + 1)? * 16 + hex(i + 2)?;
        let decoded = u8::try_from(value).ok()?;
        if decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(decoded));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            for nibble in [decoded >> 4, decoded & 0x0f] {
                out.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
        i += 3;
    }
    Some(out)
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = path.split('/').skip(1).peekable();
    let mut trailing_slash = false;
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            "." => trailing_slash = last,
            ".." => {
                segments.pop();
                trailing_slash = last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash {
        out.push('/');
    }
    out
}

/// The endpoint a validator compares with: its query and fragment dropped (RFC 9449 §4.3
/// item 9), then normalized (D-27).
fn expected_endpoint(endpoint: &str) -> String {
    let end = endpoint.find(['?', '#']).unwrap_or(endpoint.len());
    let base = endpoint.get(..end).unwrap_or(endpoint);
    normalize_htu(base).unwrap_or_else(|| base.to_owned())
}

impl DpopValidator {
    /// Proofs at the token endpoint `endpoint` (its URL as clients address it): `iat` at most
    /// 120 s old and at most 30 s ahead (D-28, token endpoints).
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: expected_endpoint(&endpoint.into()),
            algorithms: AlgorithmSet::DEFAULT,
            max_age: 120,
            leeway: 30,
        }
    }

    /// Proofs sent with DPoP-bound access tokens to the resource `resource` (its URL as
    /// clients address it): `iat` within ±300 s of the server's clock (DP-32, D-28).
    pub fn for_resource(resource: impl Into<String>) -> Self {
        Self {
            endpoint: expected_endpoint(&resource.into()),
            algorithms: AlgorithmSet::DEFAULT,
            max_age: MAX_WINDOW,
            leeway: MAX_WINDOW,
        }
    }

    /// Accepts proofs whose `iat` is at most `past` seconds old and at most `future` seconds
    /// ahead; each is capped at 300 s (D-28: configurable tighter, never wider than ±300 s).
    #[must_use]
    pub fn with_window(mut self, past: u64, future: u64) -> Self {
        self.max_age = past.min(MAX_WINDOW);
        self.leeway = future.min(MAX_WINDOW);
        self
    }

    /// The proof algorithms accepted (what a resource server names in its `DPoP` challenge's
    /// `algs`, RFC 9449 §7.1).
    pub fn algorithms(&self) -> AlgorithmSet {
        self.algorithms
    }

    /// Validates `proof` for a request with `method` at `now`, recording its `jti`.
    pub async fn validate<R: ReplayStore>(
        &self,
        proof: &str,
        method: &str,
        replay: &R,
        now: UnixTime,
    ) -> Result<DpopProof, DpopError> {
        self.validate_inner(proof, method, None, replay, now).await
    }

    /// Validates a proof sent with a DPoP-bound access token to a resource (RFC 9449 §7.1):
    /// as [`DpopValidator::validate`], plus `ath` = base64url(SHA-256(`access_token`)).
    pub async fn validate_for_token<R: ReplayStore>(
        &self,
        proof: &str,
        method: &str,
        access_token: &str,
        replay: &R,
        now: UnixTime,
    ) -> Result<DpopProof, DpopError> {
        self.validate_inner(proof, method, Some(access_token), replay, now)
            .await
    }

    async fn validate_inner<R: ReplayStore>(
        &self,
        proof: &str,
        method: &str,
        access_token: Option<&str>,
        replay: &R,
        now: UnixTime,
    ) -> Result<DpopProof, DpopError> {
        let jwt = UnverifiedJwt::parse(proof, &ParseOptions::new().with_max_len(8 * 1024))
            .map_err(|_| DpopError::Malformed)?;
        // DP-12, DP-16, DP-31 (RFC 9449 §4.3) through the strict reader of DP-40: at most 8 KiB,
        // typ `dpop+jwt`, asymmetric alg, a `jwk` header, no other key references (D-18).
        let policy = HeaderPolicy::for_kind(TokenKind::DpopProof).with_algorithms(self.algorithms);
        policy
            .check(jwt.header())
            .map_err(|_| DpopError::Malformed)?;
        let Some(Value::Object(jwk)) = jwt.header().raw().get("jwk") else {
            return Err(DpopError::Malformed);
        };
        // The key policy refuses private members and symmetric keys (RFC 9449 §4.3 item 7).
        let key = VerifyingKey::from_jwk(jwk).map_err(|_| DpopError::Key)?;
        let verified = jwt
            .verify(&policy, &key)
            .map_err(|_| DpopError::Signature)?;
        let claims = verified.claims();
        let string = |claim| {
            claims
                .string(claim)
                .ok()
                .flatten()
                .ok_or(DpopError::Claim { claim })
        };
        let jti = string("jti")?;
        if let Some(token) = access_token {
            let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
            if string("ath")? != ema_jose::base64url::encode(hash.as_ref()) {
                return Err(DpopError::TokenHash);
            }
        }
        if string("htm")? != method {
            return Err(DpopError::Method);
        }
        // DP-3, D-27: both sides normalized; a query, fragment or userinfo in `htu` refuses.
        match normalize_htu(string("htu")?) {
            Some(htu) if htu == self.endpoint => {}
            _ => return Err(DpopError::Uri),
        }
        // D-28: `iat`, and `exp`/`nbf` when present, are JSON integers.
        for claim in ["exp", "nbf"] {
            if claims.get(claim).is_some_and(|v| v.as_u64().is_none()) {
                return Err(DpopError::Claim { claim });
            }
        }
        let iat = claims
            .get("iat")
            .and_then(Value::as_u64)
            .map(UnixTime::from_secs)
            .ok_or(DpopError::Claim { claim: "iat" })?;
        // DP-32, D-28: the window of this endpoint kind.
        if iat > now.plus(self.leeway) || iat.plus(self.max_age) < now {
            return Err(DpopError::Stale);
        }
        // DP-13, DP-41: the RFC 7638 thumbprint the ID-JAG or access token is bound to.
        let jkt = key.thumbprint().to_owned();
        // D-30: the key is (jkt ‖ normalized htu ‖ jti), so one store can serve several
        // endpoints. The thumbprint is fixed-length base64url, so the concatenation is
        // unambiguous; `ReplayKey::digest` hashes it with the `jti`.
        let scope = format!("{jkt}{}", self.endpoint);
        let replay_key = ReplayKey {
            kind: ReplayKind::DpopProof,
            issuer: &scope,
            jti,
        };
        match replay
            .check_and_insert(replay_key, iat.plus(self.max_age + self.leeway), now)
            .await
        {
            Ok(Seen::First) => Ok(DpopProof {
                jti: jti.to_owned(),
                jkt,
            }),
            Ok(Seen::Again) => Err(DpopError::Replayed),
            Err(_) => Err(DpopError::StoreUnavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::InMemoryReplayStore;
    use ema_jose::{Algorithm, SigningKey};
    use serde_json::{Map, json};

    const EP: &str = "https://auth.tasks.example/token";

    fn proof(key: &SigningKey, claims: Value) -> String {
        let mut header = Map::new();
        header.insert("typ".into(), "dpop+jwt".into());
        header.insert(
            "jwk".into(),
            Value::Object(key.verifying_key().public_jwk().clone()),
        );
        key.sign_with_header(header, claims.to_string().as_bytes())
            .unwrap()
    }

    #[test]
    fn rfc9449_checks() {
        let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let v = DpopValidator::new(EP);
        let store = InMemoryReplayStore::new(100);
        let now = UnixTime::from_secs(1_000_000);
        let run = |c: Value| pollster::block_on(v.validate(&proof(&key, c), "POST", &store, now));
        let ok = run(json!({"jti": "1", "htm": "POST", "htu": EP, "iat": now.as_secs()})).unwrap();
        assert_eq!(ok.jkt, key.verifying_key().thumbprint());
        assert_eq!(
            run(json!({"jti": "1", "htm": "POST", "htu": EP, "iat": now.as_secs()})),
            Err(DpopError::Replayed)
        );
        assert_eq!(
            run(json!({"jti": "2", "htm": "GET", "htu": EP, "iat": now.as_secs()})),
            Err(DpopError::Method)
        );
        assert_eq!(
            run(
                json!({"jti": "3", "htm": "POST", "htu": "https://other.example/token", "iat": now.as_secs()})
            ),
            Err(DpopError::Uri)
        );
        // D-27: a query in the proof's `htu` is refused, not stripped.
        assert_eq!(
            run(
                json!({"jti": "4", "htm": "POST", "htu": format!("{EP}?x=1"), "iat": now.as_secs()})
            ),
            Err(DpopError::Uri)
        );
        // D-28: at a token endpoint, at most 120 s old.
        assert_eq!(
            run(json!({"jti": "5", "htm": "POST", "htu": EP, "iat": now.as_secs() - 121})),
            Err(DpopError::Stale)
        );
        assert!(
            run(json!({"jti": "5b", "htm": "POST", "htu": EP, "iat": now.as_secs() - 120})).is_ok()
        );
        assert!(
            run(json!({"jti": "5c", "htm": "POST", "htu": EP, "iat": now.as_secs() + 30})).is_ok()
        );
        assert_eq!(
            run(json!({"jti": "6", "htm": "POST", "htu": EP, "iat": now.as_secs() + 31})),
            Err(DpopError::Stale)
        );
        assert_eq!(
            run(json!({"htm": "POST", "htu": EP, "iat": now.as_secs()})),
            Err(DpopError::Claim { claim: "jti" })
        );
        // A proof without `jwk`, or with the wrong typ, is malformed.
        let plain = key
            .sign_jwt(
                Some("dpop+jwt"),
                &json!({"jti": "7", "htm": "POST", "htu": EP, "iat": now.as_secs()}),
            )
            .unwrap();
        assert_eq!(
            pollster::block_on(v.validate(&plain, "POST", &store, now)),
            Err(DpopError::Malformed)
        );
        // Signed by another key than the one in `jwk`.
        let other = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let mut header = Map::new();
        header.insert("typ".into(), "dpop+jwt".into());
        header.insert(
            "jwk".into(),
            Value::Object(key.verifying_key().public_jwk().clone()),
        );
        let forged = other
            .sign_with_header(
                header,
                json!({"jti": "8", "htm": "POST", "htu": EP, "iat": now.as_secs()})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
        assert_eq!(
            pollster::block_on(v.validate(&forged, "POST", &store, now)),
            Err(DpopError::Signature)
        );
    }

    /// DP-41: the two vectors of RFC 9449. The example EC key's RFC 7638 thumbprint (the
    /// `cnf.jkt` a proof by it binds to), and the example access token's `ath`: a proof whose
    /// `ath` is the published hash is accepted with that token and refused with any other.
    #[test]
    fn dp41_rfc9449_thumbprint_and_ath_vectors() {
        let example = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
        });
        let Value::Object(jwk) = example else {
            unreachable!()
        };
        assert_eq!(
            VerifyingKey::from_jwk(&jwk).unwrap().thumbprint(),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );

        const TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
        const ATH: &str = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo";
        let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let v = DpopValidator::new(EP);
        let store = InMemoryReplayStore::new(100);
        let now = UnixTime::from_secs(1_000_000);
        let run = |jti: &str, token: &str| {
            let p = proof(
                &key,
                json!({"jti": jti, "htm": "POST", "htu": EP, "iat": now.as_secs(), "ath": ATH}),
            );
            pollster::block_on(v.validate_for_token(&p, "POST", token, &store, now))
        };
        assert!(run("a", TOKEN).is_ok());
        assert_eq!(run("b", "another-token"), Err(DpopError::TokenHash));
    }

    /// D-30, DP-33: one store serves several endpoints. The key is (jkt, htu, jti): a proof is
    /// single-use at its endpoint (the second validator for the same endpoint refuses it), and
    /// a `jti` reused by the same key for another endpoint is not a replay there.
    #[test]
    fn shared_store_keys_by_thumbprint_htu_and_jti() {
        let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let other_ep = "https://mcp.tasks.example/mcp";
        let store = InMemoryReplayStore::new(100);
        let now = UnixTime::from_secs(1_000_000);
        let check = |ep: &str| {
            let p = proof(
                &key,
                json!({"jti": "same", "htm": "POST", "htu": ep, "iat": now.as_secs()}),
            );
            pollster::block_on(DpopValidator::new(ep).validate(&p, "POST", &store, now))
        };
        assert!(check(EP).is_ok());
        assert_eq!(check(EP), Err(DpopError::Replayed));
        assert!(check(other_ep).is_ok());
        assert_eq!(check(other_ep), Err(DpopError::Replayed));
    }

    /// D-27, DP-3: the normalization both sides of the `htu` comparison go through.
    #[test]
    fn htu_normalization() {
        let n = |u: &str| normalize_htu(u);
        for (given, expected) in [
            ("https://a.example/mcp", "https://a.example/mcp"),
            ("HTTPS://A.Example/mcp", "https://a.example/mcp"),
            ("https://a.example:443/mcp", "https://a.example/mcp"),
            ("http://a.example:80/mcp", "http://a.example/mcp"),
            ("http://a.example:443/mcp", "http://a.example:443/mcp"),
            ("https://a.example:0443/mcp", "https://a.example/mcp"),
            ("https://a.example:/mcp", "https://a.example/mcp"),
            ("https://a.example", "https://a.example/"),
            (
                "https://a.example/%7euser/%2f",
                "https://a.example/~user/%2F",
            ),
            ("https://a.example/%41%2D", "https://a.example/A-"),
            ("https://a.example/a/./b/../c", "https://a.example/a/c"),
            ("https://a.example/a/b/..", "https://a.example/a/"),
            ("https://a.example/..", "https://a.example/"),
            ("https://[::1]:8443/mcp", "https://[::1]:8443/mcp"),
            ("https://[::1]/mcp", "https://[::1]/mcp"),
        ] {
            assert_eq!(n(given).as_deref(), Some(expected), "{given}");
        }
        // The path keeps its case and its trailing slash (D-27: `/mcp` ≠ `/mcp/`).
        assert_ne!(n("https://a.example/mcp"), n("https://a.example/mcp/"));
        assert_ne!(n("https://a.example/MCP"), n("https://a.example/mcp"));
        for refused in [
            "https://a.example/mcp?x=1",
            "https://a.example/mcp#f",
            "https://user@a.example/mcp",
            "ftp://a.example/mcp",
            "a.example/mcp",
            "https:///mcp",
            "https://a.example:x1/mcp",
            "https://a.example/%zz",
            "https://a.example/%4",
            "https://a.example/caf\u{e9}",
        ] {
            assert_eq!(n(refused), None, "{refused}");
        }
    }

    /// D-27 at validation: an equivalent spelling of the endpoint is accepted; the configured
    /// endpoint's own query is ignored.
    #[test]
    fn equivalent_htu_spellings_match() {
        let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let v = DpopValidator::new("https://auth.tasks.example:443/token?tenant=1");
        let store = InMemoryReplayStore::new(100);
        let now = UnixTime::from_secs(1_000_000);
        let run = |c: Value| pollster::block_on(v.validate(&proof(&key, c), "POST", &store, now));
        for (jti, htu) in [
            ("1", "https://auth.tasks.example/token"),
            ("2", "HTTPS://AUTH.tasks.example/./token"),
            ("3", "https://auth.tasks.example/%74oken"),
        ] {
            assert!(
                run(json!({"jti": jti, "htm": "POST", "htu": htu, "iat": now.as_secs()})).is_ok(),
                "{htu}"
            );
        }
        for (jti, htu) in [
            ("4", "https://auth.tasks.example/token/"),
            ("5", "https://auth.tasks.example:8443/token"),
            ("6", "https://x@auth.tasks.example/token"),
        ] {
            assert_eq!(
                run(json!({"jti": jti, "htm": "POST", "htu": htu, "iat": now.as_secs()})),
                Err(DpopError::Uri),
                "{htu}"
            );
        }
    }

    /// DP-32, D-28: resource servers accept ±300 s, never wider; `with_window` tightens.
    #[test]
    fn resource_window_and_integer_times() {
        let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let store = InMemoryReplayStore::new(100);
        let now = UnixTime::from_secs(1_000_000);
        let v = DpopValidator::for_resource(EP);
        let run = |v: &DpopValidator, c: Value| {
            pollster::block_on(v.validate(&proof(&key, c), "POST", &store, now))
        };
        let at = |jti: &str, iat: u64| json!({"jti": jti, "htm": "POST", "htu": EP, "iat": iat});
        assert!(run(&v, at("1", now.as_secs() - 300)).is_ok());
        assert!(run(&v, at("2", now.as_secs() + 300)).is_ok());
        assert_eq!(run(&v, at("3", now.as_secs() - 301)), Err(DpopError::Stale));
        assert_eq!(run(&v, at("4", now.as_secs() + 301)), Err(DpopError::Stale));
        let wide = DpopValidator::for_resource(EP).with_window(900, 900);
        assert_eq!(
            run(&wide, at("5", now.as_secs() - 301)),
            Err(DpopError::Stale)
        );
        let tight = DpopValidator::for_resource(EP).with_window(10, 5);
        assert_eq!(
            run(&tight, at("6", now.as_secs() - 11)),
            Err(DpopError::Stale)
        );
        assert_eq!(
            run(&tight, at("7", now.as_secs() + 6)),
            Err(DpopError::Stale)
        );
        assert!(run(&tight, at("8", now.as_secs() - 10)).is_ok());
        // D-28: `iat` (and `exp`/`nbf` when present) must be JSON integers.
        let float =
            json!({"jti": "9", "htm": "POST", "htu": EP, "iat": now.as_secs() as f64 + 0.5});
        assert_eq!(run(&v, float), Err(DpopError::Claim { claim: "iat" }));
        let exp =
            json!({"jti": "10", "htm": "POST", "htu": EP, "iat": now.as_secs(), "exp": "soon"});
        assert_eq!(run(&v, exp), Err(DpopError::Claim { claim: "exp" }));
        let exp = json!({"jti": "11", "htm": "POST", "htu": EP, "iat": now.as_secs(), "exp": now.as_secs() + 60});
        assert!(run(&v, exp).is_ok());
    }
}
