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
#[derive(Debug, Clone)]
pub struct DpopValidator {
    endpoint: String,
    algorithms: AlgorithmSet,
    max_age: u64,
    leeway: u64,
}

/// Strips the query and fragment of a URI (RFC 9449 §4.3 item 9).
fn without_query(uri: &str) -> &str {
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    uri.get(..end).unwrap_or(uri)
}

impl DpopValidator {
    /// Proofs for `endpoint` (the token endpoint URL as clients address it), at most 300 s old,
    /// 30 s leeway for clocks ahead.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            algorithms: AlgorithmSet::DEFAULT,
            max_age: 300,
            leeway: 30,
        }
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
        if without_query(string("htu")?) != without_query(&self.endpoint) {
            return Err(DpopError::Uri);
        }
        let iat = claims
            .numeric_date("iat")
            .ok()
            .flatten()
            .ok_or(DpopError::Claim { claim: "iat" })?;
        if iat > now.plus(self.leeway) || iat.plus(self.max_age) < now {
            return Err(DpopError::Stale);
        }
        // DP-13, DP-41: the RFC 7638 thumbprint the ID-JAG or access token is bound to.
        let jkt = key.thumbprint().to_owned();
        // D-30: the key is (jkt ‖ normalized htu ‖ jti), so one store can serve several
        // endpoints. The thumbprint is fixed-length base64url, so the concatenation is
        // unambiguous; `ReplayKey::digest` hashes it with the `jti`.
        let scope = format!("{jkt}{}", without_query(&self.endpoint));
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
        assert!(
            run(
                json!({"jti": "4", "htm": "POST", "htu": format!("{EP}?x=1"), "iat": now.as_secs()})
            )
            .is_ok()
        );
        assert_eq!(
            run(json!({"jti": "5", "htm": "POST", "htu": EP, "iat": now.as_secs() - 301})),
            Err(DpopError::Stale)
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
}
