//! [`Secret`]: a string that never prints and is wiped from memory when dropped.

use std::fmt;

use zeroize::Zeroizing;

/// A secret value (an access token, a refresh token, an API key).
///
/// `Debug` prints `Secret(<redacted>)`, never the value, and the bytes are overwritten with
/// zeros when the value is dropped. There is deliberately no `Display`, `Serialize` or
/// `PartialEq`: the only way to the value is [`Secret::expose`], which reads as what it is at
/// the call site.
///
/// ```
/// use ema_vault::Secret;
///
/// let token = Secret::new("gho_abc123".to_owned());
/// assert_eq!(format!("{token:?}"), "Secret(<redacted>)");
/// assert_eq!(token.expose(), "gho_abc123");
/// ```
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Takes ownership of `value`; the string's buffer is wiped when the `Secret` is dropped.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret itself. Call it only where the value leaves for the provider it belongs to.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The length in bytes (for validation messages that must not show the value).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}
