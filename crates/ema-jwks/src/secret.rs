//! Secrets that never show up in `Debug`, `Display` or logs (CL-7, SEC-10).

use std::fmt;

/// A secret string: a client secret, an ID token, an ID-JAG or an access token.
///
/// `Debug` prints `Secret(..)` and there is no `Display`; the value comes out only through
/// [`Secret::expose`], so it cannot end up in a log line or an error message by accident.
///
/// ```
/// use ema_jwks::Secret;
///
/// let s = Secret::new("s3cr3t");
/// assert_eq!(format!("{s:?}"), "Secret(..)");
/// assert_eq!(s.expose(), "s3cr3t");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().into_boxed_str())
    }

    /// The secret value. Send it only where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sec10_debug_is_redacted() {
        let s = Secret::new("eyJhbGciOi.secret.value");
        assert!(!format!("{s:?}").contains("eyJ"));
        assert!(!format!("{:?}", Some(&s)).contains("secret"));
    }
}
