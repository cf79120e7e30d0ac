//! Identifier newtypes and scope sets.

use std::collections::BTreeSet;
use std::fmt;

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Compared exactly, case-sensitively, with no normalisation (D-12).
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The value.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Takes the value.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

identifier!(
    /// An issuer identifier (RFC 8414 §2): the IdP's or the authorization server's.
    Issuer
);
identifier!(
    /// A subject identifier, unique per issuer (and tenant).
    Subject
);
identifier!(
    /// A client identifier at one authorization server (JAG-4): a registered id or a CIMD URL.
    ClientId
);
identifier!(
    /// An RFC 8707 resource identifier: for EMA, the MCP server's RFC 9728 `resource`.
    Resource
);
identifier!(
    /// A JWT ID (`jti`).
    JwtId
);

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// Empty tokens (leading, trailing or doubled spaces) or characters outside RFC 6749
    /// §3.3 `NQCHAR`.
    #[error("scope is not a space-delimited list of RFC 6749 scope tokens")]
    Malformed,
}

/// A set of scope tokens, parsed from and written as an RFC 6749 §3.3 space-delimited string.
/// Written in sorted order; duplicates collapse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ScopeSet(BTreeSet<String>);

impl ScopeSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `scope-token *( SP scope-token )`, each token `1*( %x21 / %x23-5B / %x5D-7E )`.
    /// The empty string is the empty set.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        if s.is_empty() {
            return Ok(Self::new());
        }
        s.split(' ')
            .map(|token| {
                let valid = !token.is_empty()
                    && token.bytes().all(|b| {
                        b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
                    });
                valid.then(|| token.to_owned()).ok_or(ScopeError::Malformed)
            })
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self)
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// Whether every scope of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Adds a scope (not validated; use [`ScopeSet::parse`] for untrusted input).
    pub fn insert(&mut self, scope: impl Into<String>) {
        self.0.insert(scope.into());
    }

    /// Keeps only the scopes for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|s| keep(s));
    }

    /// The union of two sets.
    #[must_use]
    pub fn union(&self, other: &Self) -> Self {
        Self(self.0.union(&other.0).cloned().collect())
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
        }
        Ok(())
    }
}

impl<S: Into<String>> FromIterator<S> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self(iter.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parsing_is_strict() {
        let s = ScopeSet::parse("tasks.write tasks.read tasks.read").unwrap();
        assert_eq!(s.to_string(), "tasks.read tasks.write");
        assert_eq!(ScopeSet::parse("").unwrap(), ScopeSet::new());
        for bad in [" a", "a ", "a  b", "a\tb", "a\"b", "a\\b", "é", "a\nb"] {
            assert_eq!(ScopeSet::parse(bad), Err(ScopeError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn identifiers_compare_exactly() {
        assert_eq!(Issuer::new("https://a.example"), "https://a.example");
        assert_ne!(Issuer::new("https://a.example"), "https://a.example/");
        assert_ne!(Issuer::new("https://a.example"), "HTTPS://a.example");
    }
}
