//! Sealed values: state the authorization server hands out and takes back instead of keeping it
//! (the [code flow](crate::code_flow)'s pending sign-ins and its codes), encrypted and
//! authenticated with AES-256-GCM under a key only the server holds.
//!
//! A sealed value is `base64url(nonce ‖ ciphertext ‖ tag)`; the purpose of the value (e.g.
//! "sign-in state", "authorization code") is authenticated data, so a value sealed for one
//! purpose never opens as another. Instances that must open each other's values share the key
//! ([`SealingKey::from_bytes`]).

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};

/// A symmetric key sealing server state (AES-256-GCM, random nonces). `Debug` shows nothing of
/// the key.
///
/// ```
/// use ema_grant::seal::SealingKey;
///
/// let key = SealingKey::generate()?;
/// let sealed = key.seal(b"purpose", b"the state");
/// assert_eq!(key.open(b"purpose", &sealed.unwrap()).as_deref(), Some(&b"the state"[..]));
/// # Ok::<(), ema_grant::seal::SealError>(())
/// ```
pub struct SealingKey {
    key: RandomizedNonceKey,
}

/// A sealing key could not be made (the system random source failed, or the key bytes were
/// refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sealing key could not be created")]
pub struct SealError;

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    /// A fresh random key: values sealed with it open only in this process.
    pub fn generate() -> Result<Self, SealError> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SealError)?;
        Self::from_bytes(&bytes)
    }

    /// The key of these 32 bytes: give every instance of one authorization server the same
    /// secret bytes, so a value sealed by one opens at another.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, SealError> {
        RandomizedNonceKey::new(&AES_256_GCM, bytes)
            .map(|key| Self { key })
            .map_err(|_| SealError)
    }

    /// Seals `plaintext` for `purpose`: the base64url text, or `None` if the cipher failed.
    pub fn seal(&self, purpose: &[u8], plaintext: &[u8]) -> Option<String> {
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(purpose), &mut in_out)
            .ok()?;
        let mut out = Vec::with_capacity(NONCE_LEN + in_out.len());
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&in_out);
        Some(ema_jose::base64url::encode(&out))
    }

    /// Opens a value sealed for `purpose` with this key: the plaintext, or `None` for anything
    /// else (another key, another purpose, altered, truncated, not base64url).
    pub fn open(&self, purpose: &[u8], sealed: &str) -> Option<Vec<u8>> {
        let mut bytes = ema_jose::base64url::decode(sealed.as_bytes())?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let mut in_out = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).ok()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose), &mut in_out)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_key_and_purpose_they_were_sealed_for() {
        let key = SealingKey::from_bytes(&[7; 32]).unwrap();
        let sealed = key.seal(b"code", b"payload").unwrap();
        // Positive control.
        assert_eq!(key.open(b"code", &sealed).unwrap(), b"payload");
        // Same key, same bytes from another instance.
        let twin = SealingKey::from_bytes(&[7; 32]).unwrap();
        assert_eq!(twin.open(b"code", &sealed).unwrap(), b"payload");
        assert_eq!(key.open(b"state", &sealed), None, "another purpose");
        let other = SealingKey::from_bytes(&[8; 32]).unwrap();
        assert_eq!(other.open(b"code", &sealed), None, "another key");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            key.open(b"code", &String::from_utf8(altered).unwrap()),
            None
        );
        assert_eq!(key.open(b"code", &sealed[..10]), None, "truncated");
        assert_eq!(key.open(b"code", "not*base64"), None);
        assert_eq!(key.open(b"code", ""), None);
        // Two seals of one value differ (random nonces).
        assert_ne!(key.seal(b"code", b"payload").unwrap(), sealed);
        assert!(!format!("{key:?}").contains('7'));
    }
}
