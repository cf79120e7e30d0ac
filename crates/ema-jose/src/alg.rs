//! JWS algorithms this crate implements, and allow-lists of them.

use std::fmt;

/// An asymmetric JWS signature algorithm (RFC 7518 §3, RFC 8037).
///
/// There is deliberately no `none` and no HMAC variant: a token naming them can never reach a
/// verification key (SEC-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384 (not in the default allow-list, D-26).
    ES384,
    /// ECDSA P-521 with SHA-512 (implemented, not in the default allow-list, D-26).
    ES512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384 (not in the default allow-list).
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512 (not in the default allow-list).
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384 (not in the default allow-list).
    PS384,
    /// RSASSA-PSS with SHA-512 (not in the default allow-list).
    PS512,
    /// EdDSA; this crate implements the Ed25519 curve only.
    EdDSA,
}

impl Algorithm {
    /// Every implemented algorithm.
    pub const ALL: [Self; 10] = [
        Self::ES256,
        Self::ES384,
        Self::ES512,
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::EdDSA,
    ];

    /// The `alg` header value.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::ES512 => "ES512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::EdDSA => "EdDSA",
        }
    }

    /// Looks up an `alg` header value; exact, case-sensitive (RFC 7515 §4.1.1).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether this algorithm uses an RSA key.
    pub const fn is_rsa(self) -> bool {
        matches!(
            self,
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512
        )
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An explicit allow-list of algorithms (SEC-4).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlgorithmSet(u16);

impl AlgorithmSet {
    /// The empty set.
    pub const EMPTY: Self = Self(0);

    /// The project default at every verifier: ES256, RS256, PS256, EdDSA (D-26). ES384, ES512,
    /// RS384, RS512, PS384 and PS512 are implemented and opt-in: add them with
    /// [`AlgorithmSet::with`] (signing with any implemented algorithm is unaffected).
    pub const DEFAULT: Self = Self::EMPTY
        .with(Algorithm::ES256)
        .with(Algorithm::RS256)
        .with(Algorithm::PS256)
        .with(Algorithm::EdDSA);

    /// Every implemented algorithm.
    pub const ALL: Self = {
        let mut set = Self::EMPTY;
        let mut i = 0;
        while i < Algorithm::ALL.len() {
            #[expect(clippy::indexing_slicing, reason = "bounded by the loop condition")]
            let alg = Algorithm::ALL[i];
            set = set.with(alg);
            i += 1;
        }
        set
    };

    /// A set holding exactly the given algorithms.
    pub fn of(algs: &[Algorithm]) -> Self {
        algs.iter().fold(Self::EMPTY, |s, a| s.with(*a))
    }

    /// This set plus `alg`.
    #[must_use]
    pub const fn with(self, alg: Algorithm) -> Self {
        Self(self.0 | alg.bit())
    }

    /// This set without `alg`.
    #[must_use]
    pub const fn without(self, alg: Algorithm) -> Self {
        Self(self.0 & !alg.bit())
    }

    /// Whether `alg` is allowed.
    pub const fn contains(self, alg: Algorithm) -> bool {
        self.0 & alg.bit() != 0
    }

    /// The allowed algorithms, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }
}

impl Default for AlgorithmSet {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Debug for AlgorithmSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
        for bad in [
            "none", "None", "NONE", "HS256", "es256", "ES256 ", "", "RSA1_5",
        ] {
            assert_eq!(Algorithm::from_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn d26_default_set() {
        let d = AlgorithmSet::DEFAULT;
        assert_eq!(
            d.iter().collect::<Vec<_>>(),
            [
                Algorithm::ES256,
                Algorithm::RS256,
                Algorithm::PS256,
                Algorithm::EdDSA
            ]
        );
        assert_eq!(AlgorithmSet::default(), d);
        // D-26: the stronger-hash variants are opt-in.
        for opt_in in [
            Algorithm::ES384,
            Algorithm::ES512,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            assert!(!d.contains(opt_in), "{opt_in}");
            assert!(d.with(opt_in).contains(opt_in), "{opt_in}");
        }
        assert!(AlgorithmSet::ALL.contains(Algorithm::PS512));
        assert!(!d.without(Algorithm::RS256).contains(Algorithm::RS256));
    }
}
