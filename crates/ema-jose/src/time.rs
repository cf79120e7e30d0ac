//! Time: NumericDate values and the `exp`/`nbf`/`iat` checks (SEC-2, D-7).
//!
//! Nothing here reads the wall clock. Checks take the current time as an argument; servers get
//! it from a [`Clock`] they were given.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (a JWT NumericDate, RFC 7519 §2, whole seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixTime(u64);

impl UnixTime {
    /// The largest NumericDate this crate accepts: 9999-12-31T23:59:59Z. Anything later is
    /// refused as out of range rather than treated as "never".
    pub const MAX: Self = Self(253_402_300_799);

    /// A time from whole seconds since the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }

    /// Whole seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// `self + secs`, saturating.
    #[must_use]
    pub const fn plus(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// `self - secs`, saturating at the epoch.
    #[must_use]
    pub const fn minus(self, secs: u64) -> Self {
        Self(self.0.saturating_sub(secs))
    }

    /// The current wall-clock time. Only [`SystemClock`] calls this; checks never do.
    pub fn now() -> Self {
        Self(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A source of the current time, injected into everything that checks validity windows.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> UnixTime;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::now()
    }
}

/// A clock stuck at one instant, for tests and replays.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub UnixTime);

impl Clock for FixedClock {
    fn now(&self) -> UnixTime {
        self.0
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> UnixTime {
        (**self).now()
    }
}

/// Why a NumericDate claim was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NumericDateError {
    /// The value is not a JSON number (a string such as `"1767225600"` is refused, D-7).
    #[error("`{claim}` is not a JSON number")]
    NotANumber {
        /// The claim name.
        claim: &'static str,
    },
    /// Negative, not finite, or after [`UnixTime::MAX`].
    #[error("`{claim}` is out of range")]
    OutOfRange {
        /// The claim name.
        claim: &'static str,
    },
}

/// Reads a NumericDate: a JSON number, non-negative, at most [`UnixTime::MAX`]; a fractional
/// part is truncated (RFC 7519 allows non-integer values).
pub fn numeric_date(
    claim: &'static str,
    value: &serde_json::Value,
) -> Result<UnixTime, NumericDateError> {
    let serde_json::Value::Number(n) = value else {
        return Err(NumericDateError::NotANumber { claim });
    };
    numeric_date_of(claim, n)
}

/// [`numeric_date`] of a number.
pub(crate) fn numeric_date_of(
    claim: &'static str,
    n: &serde_json::Number,
) -> Result<UnixTime, NumericDateError> {
    let secs = if let Some(u) = n.as_u64() {
        u
    } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && *f >= 0.0) {
        if f > UnixTime::MAX.0 as f64 {
            return Err(NumericDateError::OutOfRange { claim });
        }
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "finite, non-negative and below UnixTime::MAX, checked above"
        )]
        let secs = f as u64;
        secs
    } else {
        return Err(NumericDateError::OutOfRange { claim });
    };
    if secs > UnixTime::MAX.0 {
        return Err(NumericDateError::OutOfRange { claim });
    }
    Ok(UnixTime(secs))
}

/// Limits for the validity window of a token (SEC-2, D-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeOptions {
    /// Clock skew tolerated in each direction (default 30 s, at most 60 s: D-7).
    pub leeway: Duration,
    /// The longest accepted `exp - iat`; `None` for no limit (default 3600 s: D-7).
    pub max_lifetime: Option<Duration>,
    /// Whether `iat` must be present (true for ID-JAGs and access tokens).
    pub require_iat: bool,
}

impl TimeOptions {
    /// The largest leeway [`TimeOptions::with_leeway`] accepts (D-7).
    pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

    /// The D-7 defaults: 30 s leeway, 3600 s maximum lifetime, `iat` required.
    pub const fn new() -> Self {
        Self {
            leeway: Duration::from_secs(30),
            max_lifetime: Some(Duration::from_secs(3600)),
            require_iat: true,
        }
    }

    /// Sets the leeway; values above [`TimeOptions::MAX_LEEWAY`] are clamped to it (D-7).
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(Self::MAX_LEEWAY);
        self
    }

    /// Sets the maximum lifetime.
    #[must_use]
    pub const fn with_max_lifetime(mut self, max: Option<Duration>) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Sets whether `iat` is required.
    #[must_use]
    pub const fn with_require_iat(mut self, require: bool) -> Self {
        self.require_iat = require;
        self
    }

    /// Checks a validity window at `now` (SEC-2):
    /// expired beyond the leeway, `iat` or `nbf` in the future beyond the leeway,
    /// `exp <= iat`, and `exp - iat` above the maximum lifetime are refused.
    pub fn check(&self, window: &Validity, now: UnixTime) -> Result<(), TimeError> {
        let leeway = self.leeway.min(Self::MAX_LEEWAY).as_secs();
        let exp = window.exp;
        // SEC-2: expired beyond the leeway. `exp` is the first instant the token is invalid.
        if now >= exp.plus(leeway) {
            return Err(TimeError::Expired { exp, now });
        }
        if let Some(nbf) = window.nbf {
            // SEC-2: `nbf` in the future.
            if nbf > now.plus(leeway) {
                return Err(TimeError::NotYetValid { nbf, now });
            }
        }
        match window.iat {
            Some(iat) => {
                // SEC-2: `iat` in the future.
                if iat > now.plus(leeway) {
                    return Err(TimeError::IssuedInFuture { iat, now });
                }
                // SEC-2: `exp <= iat`.
                if exp <= iat {
                    return Err(TimeError::ExpiresBeforeIssued { exp, iat });
                }
                // D-7: maximum lifetime.
                if let Some(max) = self.max_lifetime {
                    let lifetime = exp.as_secs() - iat.as_secs();
                    if lifetime > max.as_secs() {
                        return Err(TimeError::LifetimeTooLong {
                            lifetime,
                            max: max.as_secs(),
                        });
                    }
                }
            }
            None if self.require_iat => return Err(TimeError::MissingIssuedAt),
            None => {
                // Without `iat`, bound the remaining lifetime instead so that an `exp` far in the
                // future still cannot make a token live forever.
                if let Some(max) = self.max_lifetime {
                    let remaining = exp.as_secs().saturating_sub(now.as_secs());
                    if remaining > max.as_secs().saturating_add(leeway) {
                        return Err(TimeError::LifetimeTooLong {
                            lifetime: remaining,
                            max: max.as_secs(),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

impl Default for TimeOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// The time claims of a token, already read as NumericDates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// `exp`.
    pub exp: UnixTime,
    /// `iat`, when present.
    pub iat: Option<UnixTime>,
    /// `nbf`, when present.
    pub nbf: Option<UnixTime>,
}

/// Why a validity window was refused (SEC-2, D-7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// `exp` has passed, beyond the leeway.
    #[error("expired at {exp}, checked at {now}")]
    Expired {
        /// The token's `exp`.
        exp: UnixTime,
        /// The time of the check.
        now: UnixTime,
    },
    /// `nbf` is still in the future, beyond the leeway.
    #[error("not valid before {nbf}, checked at {now}")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: UnixTime,
        /// The time of the check.
        now: UnixTime,
    },
    /// `iat` is in the future, beyond the leeway.
    #[error("issued in the future at {iat}, checked at {now}")]
    IssuedInFuture {
        /// The token's `iat`.
        iat: UnixTime,
        /// The time of the check.
        now: UnixTime,
    },
    /// `exp` is not after `iat`.
    #[error("expires at {exp}, not after its issue time {iat}")]
    ExpiresBeforeIssued {
        /// The token's `exp`.
        exp: UnixTime,
        /// The token's `iat`.
        iat: UnixTime,
    },
    /// `exp - iat` is above the configured maximum.
    #[error("lifetime of {lifetime} s exceeds the maximum of {max} s")]
    LifetimeTooLong {
        /// The token's lifetime in seconds.
        lifetime: u64,
        /// The configured maximum.
        max: u64,
    },
    /// `iat` is required and missing.
    #[error("`iat` is missing")]
    MissingIssuedAt,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

    fn window(exp: u64, iat: Option<u64>, nbf: Option<u64>) -> Validity {
        Validity {
            exp: UnixTime(exp),
            iat: iat.map(UnixTime),
            nbf: nbf.map(UnixTime),
        }
    }

    #[test]
    fn numeric_dates_must_be_numbers_in_range() {
        // D-7: NumericDate is a JSON number.
        assert_eq!(numeric_date("exp", &json!(5)), Ok(UnixTime(5)));
        assert_eq!(numeric_date("exp", &json!(5.9)), Ok(UnixTime(5)));
        assert_eq!(
            numeric_date("exp", &json!("5")),
            Err(NumericDateError::NotANumber { claim: "exp" })
        );
        assert_eq!(
            numeric_date("exp", &json!(null)),
            Err(NumericDateError::NotANumber { claim: "exp" })
        );
        assert_eq!(
            numeric_date("exp", &json!(-1)),
            Err(NumericDateError::OutOfRange { claim: "exp" })
        );
        assert_eq!(
            numeric_date("exp", &json!(u64::MAX)),
            Err(NumericDateError::OutOfRange { claim: "exp" })
        );
        assert_eq!(
            numeric_date("exp", &json!(1e300)),
            Err(NumericDateError::OutOfRange { claim: "exp" })
        );
    }

    #[test]
    fn sec2_window_rules() {
        let o = TimeOptions::new();
        let n = NOW.as_secs();
        assert_eq!(o.check(&window(n + 300, Some(n), None), NOW), Ok(()));
        // Within leeway either side.
        assert_eq!(o.check(&window(n - 29, Some(n - 329), None), NOW), Ok(()));
        assert_eq!(
            o.check(&window(n + 330, Some(n + 30), Some(n + 30)), NOW),
            Ok(())
        );
        // SEC-2 expired beyond leeway (exp + leeway is the first rejected instant).
        assert!(matches!(
            o.check(&window(n - 30, Some(n - 330), None), NOW),
            Err(TimeError::Expired { .. })
        ));
        // SEC-2 future iat / nbf.
        assert!(matches!(
            o.check(&window(n + 400, Some(n + 31), None), NOW),
            Err(TimeError::IssuedInFuture { .. })
        ));
        assert!(matches!(
            o.check(&window(n + 400, Some(n), Some(n + 31)), NOW),
            Err(TimeError::NotYetValid { .. })
        ));
        // SEC-2 exp <= iat.
        assert!(matches!(
            o.check(&window(n, Some(n), None), NOW),
            Err(TimeError::ExpiresBeforeIssued { .. })
        ));
        // D-7 max lifetime 3600.
        assert_eq!(o.check(&window(n + 3600, Some(n), None), NOW), Ok(()));
        assert_eq!(
            o.check(&window(n + 3601, Some(n), None), NOW),
            Err(TimeError::LifetimeTooLong {
                lifetime: 3601,
                max: 3600
            })
        );
        assert_eq!(
            o.check(&window(n + 300, None, None), NOW),
            Err(TimeError::MissingIssuedAt)
        );
        let lax = o.with_require_iat(false);
        assert_eq!(lax.check(&window(n + 300, None, None), NOW), Ok(()));
        assert!(matches!(
            lax.check(&window(UnixTime::MAX.0, None, None), NOW),
            Err(TimeError::LifetimeTooLong { .. })
        ));
    }

    #[test]
    fn leeway_is_capped_at_sixty_seconds() {
        let o = TimeOptions::new().with_leeway(Duration::from_secs(3600));
        assert_eq!(o.leeway, Duration::from_secs(60));
        let n = NOW.as_secs();
        assert!(o.check(&window(n - 61, Some(n - 300), None), NOW).is_err());
    }
}
