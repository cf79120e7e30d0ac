//! Canonical base64url (RFC 7515 §2): unpadded, URL-safe alphabet, no stray characters and no
//! non-zero trailing bits.

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The one engine used for every decode and encode in this crate.
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes canonical unpadded base64url; `None` for anything else (padding, `+`, `/`,
/// whitespace, non-zero trailing bits, impossible lengths).
pub(crate) fn decode(input: &[u8]) -> Option<Vec<u8>> {
    ENGINE.decode(input).ok()
}

/// Encodes as unpadded base64url.
pub(crate) fn encode(input: &[u8]) -> String {
    ENGINE.encode(input)
}

/// Appends the unpadded base64url encoding of `input` to `out`.
pub(crate) fn encode_into(input: &[u8], out: &mut String) {
    ENGINE.encode_string(input, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_canonical_forms() {
        assert_eq!(decode(b"QQ").as_deref(), Some(&b"A"[..]));
        assert!(decode(b"QR").is_none(), "non-zero trailing bits");
        assert!(decode(b"QQ==").is_none(), "padding");
        assert!(decode(b"Q").is_none(), "impossible length");
        assert!(decode(b"Q Q").is_none(), "whitespace");
        assert!(decode(b"+/").is_none(), "standard alphabet");
        assert!(decode(b"Q?").is_none(), "stray character");
    }

    #[test]
    fn round_trips() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).collect();
            assert_eq!(decode(encode(&data).as_bytes()), Some(data));
        }
    }
}
