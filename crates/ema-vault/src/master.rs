//! Master keys ([`MasterKey`], [`MasterKeys`]) and the two-layer envelope encryption of a
//! stored record.
//!
//! Each record is sealed with AES-256-GCM under a fresh random data key; the data key is
//! sealed with AES-256-GCM under a master key, whose id is stored beside the row. Both layers
//! take the row's identity (tenant, subject, provider, record id) as associated data, so a
//! ciphertext copied to another row does not open.

use std::fmt;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use zeroize::{Zeroize, Zeroizing};

/// The length of a master key and of a data key, in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// A master key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MasterKeyError {
    /// The key file could not be read.
    #[error("cannot read the master key file {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// The environment variable is not set (or not Unicode).
    #[error("the environment variable {0} is not set (or not valid Unicode)")]
    EnvMissing(String),
    /// The text is neither hex nor base64.
    #[error(
        "the master key is neither 64 hex digits nor base64 (standard or URL-safe): generate one with `ema-vault gen-key`"
    )]
    Format,
    /// The text decodes to the wrong number of bytes.
    #[error("the master key is {0} bytes long; it must be exactly 32 (AES-256)")]
    Length(usize),
    /// The key id is empty, too long or has characters other than `[A-Za-z0-9._-]`.
    #[error("bad master key id: 1 to 64 characters of A-Z a-z 0-9 . _ - expected")]
    BadId,
    /// The system's random number generator failed.
    #[error("the random number generator failed")]
    Random,
}

/// A master key: an id (stored beside each record it wraps) and 32 secret bytes.
///
/// `Debug` shows the id only; the bytes are zeroized on drop. Loaded from a file or an
/// environment variable holding 64 hex digits or the base64 of 32 bytes; its id is then
/// derived from the key (the first 8 bytes of SHA-256 over a label and the key, in hex), so a
/// key file holds nothing but the key.
///
/// ```
/// use ema_vault::MasterKey;
///
/// let key = MasterKey::parse(&"11".repeat(32))?;
/// assert_eq!(key.id().len(), 16);
/// assert!(!format!("{key:?}").contains("1111"));
/// assert!(MasterKey::parse("abcd").is_err());
/// # Ok::<(), ema_vault::MasterKeyError>(())
/// ```
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn decode_hex(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 2));
    for pair in text.as_bytes().chunks_exact(2) {
        let (hi, lo) = match pair {
            [hi, lo] => (hex_value(*hi)?, hex_value(*lo)?),
            _ => return None,
        };
        out.push(hi << 4 | lo);
    }
    Some(out)
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl MasterKey {
    /// A key with an explicit id (1 to 64 characters of `[A-Za-z0-9._-]`).
    pub fn new(id: impl Into<String>, bytes: [u8; KEY_LEN]) -> Result<Self, MasterKeyError> {
        let mut bytes = bytes;
        let key = Zeroizing::new(bytes);
        bytes.zeroize();
        let id = id.into();
        if !valid_id(&id) {
            return Err(MasterKeyError::BadId);
        }
        Ok(Self { id, bytes: key })
    }

    fn derived(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        context.update(b"ema-vault master key id\0");
        context.update(bytes.as_ref());
        let digest = context.finish();
        let id = encode_hex(digest.as_ref().get(..8).unwrap_or_default());
        Self { id, bytes }
    }

    /// A new random key (id derived from it).
    pub fn generate() -> Result<Self, MasterKeyError> {
        let mut bytes = Zeroizing::new([0_u8; KEY_LEN]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| MasterKeyError::Random)?;
        Ok(Self::derived(bytes))
    }

    /// Parses 64 hex digits or base64 (standard or URL-safe, padded or not) of 32 bytes;
    /// surrounding whitespace is ignored. The id is derived from the key.
    pub fn parse(text: &str) -> Result<Self, MasterKeyError> {
        let text = text.trim();
        // Text of hex digits only, of even length, is hex (the base64 of 32 bytes is 43 or 44
        // characters, so a real base64 key never looks like it).
        let decoded = if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            decode_hex(text).ok_or(MasterKeyError::Format)?
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .map(Zeroizing::new)
                .ok_or(MasterKeyError::Format)?
        };
        let bytes: [u8; KEY_LEN] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| MasterKeyError::Length(decoded.len()))?;
        Ok(Self::derived(Zeroizing::new(bytes)))
    }

    /// Reads a key file (see [`parse`](Self::parse)).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, MasterKeyError> {
        let path = path.as_ref();
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| MasterKeyError::Io {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?,
            );
        Self::parse(&text)
    }

    /// Reads the key from environment variable `var` (see [`parse`](Self::parse)).
    pub fn from_env(var: &str) -> Result<Self, MasterKeyError> {
        let text = Zeroizing::new(
            std::env::var(var).map_err(|_| MasterKeyError::EnvMissing(var.to_owned()))?,
        );
        Self::parse(&text)
    }

    /// The key as 64 hex digits (what [`parse`](Self::parse) reads back): for writing a new
    /// key file.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(encode_hex(self.bytes.as_ref()))
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn aead(&self) -> Result<LessSafeKey, String> {
        aead_key(self.bytes.as_ref())
    }
}

/// The master keys a store can open records with; the primary one seals new records.
///
/// During a rotation, open the store with the new key as primary and the old one added with
/// [`with`](Self::with): rows not yet re-wrapped still open with the old key.
#[derive(Clone, Debug)]
pub struct MasterKeys {
    primary: MasterKey,
    others: Vec<MasterKey>,
}

impl MasterKeys {
    /// A ring of one key.
    pub fn new(primary: MasterKey) -> Self {
        Self {
            primary,
            others: Vec::new(),
        }
    }

    /// Adds a key that opens records but does not seal new ones (ignored if its id is already
    /// in the ring).
    #[must_use]
    pub fn with(mut self, key: MasterKey) -> Self {
        if self.get(key.id()).is_none() {
            self.others.push(key);
        }
        self
    }

    /// The key that seals new records.
    pub fn primary(&self) -> &MasterKey {
        &self.primary
    }

    /// The key with id `id`.
    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.primary)
            .chain(&self.others)
            .find(|k| k.id == id)
    }

    /// The ids in the ring, primary first.
    pub fn ids(&self) -> Vec<&str> {
        std::iter::once(&self.primary)
            .chain(&self.others)
            .map(|k| k.id.as_str())
            .collect()
    }
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey, String> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| "bad AES-256 key".to_owned())
}

/// Seals `plaintext` under `key`: `nonce || ciphertext || tag`.
fn seal(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let mut nonce = [0_u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "the random number generator failed")?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
    out.extend_from_slice(&nonce);
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut body,
    )
    .map_err(|_| "encryption failed".to_owned())?;
    out.extend_from_slice(&body);
    body.zeroize();
    Ok(out)
}

/// Opens what [`seal`] made, or `None`.
fn open(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (nonce, body) = sealed.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut body = Zeroizing::new(body.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(aad), body.as_mut_slice())
        .ok()?
        .len();
    body.truncate(len);
    Some(body)
}

/// A row's identity, bound as associated data on both layers.
pub(crate) struct RowId<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) provider: &'a str,
    pub(crate) record_id: &'a [u8],
}

impl RowId<'_> {
    fn aad(&self, layer: &str, key_id: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(96);
        for part in [
            b"ema-vault v1".as_slice(),
            layer.as_bytes(),
            key_id.as_bytes(),
            self.tenant.as_bytes(),
            self.subject.as_bytes(),
            self.provider.as_bytes(),
            self.record_id,
        ] {
            aad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad
    }

    fn label(&self) -> String {
        format!("{}/{}/{}", self.tenant, self.subject, self.provider)
    }
}

/// A sealed record: the wrapped data key and the sealed payload.
pub(crate) struct Sealed {
    pub(crate) key_id: String,
    pub(crate) wrapped_key: Vec<u8>,
    pub(crate) ciphertext: Vec<u8>,
}

/// Seals `plaintext` for `row` under a fresh data key wrapped by `master`.
pub(crate) fn seal_record(
    master: &MasterKey,
    row: &RowId<'_>,
    plaintext: &[u8],
) -> Result<Sealed, String> {
    let mut data_key = Zeroizing::new([0_u8; KEY_LEN]);
    aws_lc_rs::rand::fill(data_key.as_mut()).map_err(|_| "the random number generator failed")?;
    let ciphertext = seal(
        &aead_key(data_key.as_ref())?,
        &row.aad("data", ""),
        plaintext,
    )?;
    let wrapped_key = seal(
        &master.aead()?,
        &row.aad("wrap", master.id()),
        data_key.as_ref(),
    )?;
    Ok(Sealed {
        key_id: master.id().to_owned(),
        wrapped_key,
        ciphertext,
    })
}

/// Unwraps `row`'s data key with the ring's key `key_id`.
pub(crate) fn unwrap_key(
    keys: &MasterKeys,
    row: &RowId<'_>,
    key_id: &str,
    wrapped_key: &[u8],
) -> Result<Zeroizing<Vec<u8>>, String> {
    let master = keys.get(key_id).ok_or_else(|| {
        format!(
            "record {}: it is sealed under master key `{key_id}`, which is not among the keys given ({})",
            row.label(),
            keys.ids().join(", ")
        )
    })?;
    let data_key = open(&master.aead()?, &row.aad("wrap", key_id), wrapped_key).ok_or_else(|| {
        format!(
            "record {}: its data key does not open under master key `{key_id}` (a wrong key with that id, or the row was tampered with or moved)",
            row.label()
        )
    })?;
    if data_key.len() != KEY_LEN {
        return Err(format!(
            "record {}: the data key has the wrong length",
            row.label()
        ));
    }
    Ok(data_key)
}

/// Opens `row`'s payload.
pub(crate) fn open_record(
    keys: &MasterKeys,
    row: &RowId<'_>,
    key_id: &str,
    wrapped_key: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, String> {
    let data_key = unwrap_key(keys, row, key_id, wrapped_key)?;
    open(&aead_key(&data_key)?, &row.aad("data", ""), ciphertext).ok_or_else(|| {
        format!(
            "record {}: the ciphertext does not open under its data key (tampered with or moved)",
            row.label()
        )
    })
}

/// Re-wraps `row`'s data key from `key_id` (in `keys`) to `new`.
pub(crate) fn rewrap(
    keys: &MasterKeys,
    new: &MasterKey,
    row: &RowId<'_>,
    key_id: &str,
    wrapped_key: &[u8],
) -> Result<Vec<u8>, String> {
    let data_key = unwrap_key(keys, row, key_id, wrapped_key)?;
    seal(&new.aead()?, &row.aad("wrap", new.id()), &data_key)
}
