//! Proof tests for `ema-jose`, as one test binary:
//!
//! - `wycheproof_jose`: every JWS vector of the Wycheproof JOSE files in `tests/data/wycheproof`,
//!   through the JWS layer, with the README errata and the project overrides (SEC-4) encoded;
//! - `wycheproof_primitives`: the Wycheproof ECDSA (P1363, and DER converted to `r || s`),
//!   Ed25519, RSA PKCS#1 v1.5 and RSA-PSS vectors through `VerifyingKey::verify`;
//! - `attacks`: a table of hand-built hostile tokens, each with the exact error it must produce;
//! - `properties`: sign/verify round trips and single-byte tampering, with proptest;
//! - `oracle`: `jsonwebtoken` as the interoperability oracle (ema-jose stricter, never looser),
//!   used by the three suites above for every token they accept.
//!
//! Run with `cargo test -p ema-jose --test jose -- --nocapture` to see the summary lines.

// `cfg(test)` marks these modules as test code for clippy's `allow-*-in-tests` settings (an
// integration test is always built with it), so helpers may `expect` and index like tests do.
#[cfg(test)]
mod attacks;
#[cfg(test)]
mod oracle;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod wycheproof_jose;
#[cfg(test)]
mod wycheproof_primitives;

#[cfg(test)]
use serde_json::{Map, Value};

/// The fixed "now" of every time-dependent test (2026-01-01T00:00:00Z); never the wall clock.
#[cfg(test)]
pub(crate) const NOW: ema_jose::UnixTime = ema_jose::UnixTime::from_secs(1_767_225_600);

/// Unpadded base64url, as the parser expects it.
#[cfg(test)]
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    ema_jose::base64url::encode(bytes.as_ref())
}

/// The object inside a `json!({...})` literal.
#[cfg(test)]
pub(crate) fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not a JSON object: {other}"),
    }
}
