//! [`SubjectStatus`]: whether a subject may still use its credentials (RV-19).

use ema_jose::UnixTime;

use crate::key::Owner;

/// Whether an owner may still use a credential: the vault's view of the revocation ledger
/// (RV-19). The vault asks it before handing a credential out and again before spending a
/// refresh token; a refusal is audited ([`VaultEvent::Refused`](crate::VaultEvent::Refused))
/// and answered with [`VaultError::Revoked`](crate::VaultError::Revoked).
///
/// Like the ledger's watermarks, the answer is by time: a credential stored at or before the
/// subject's revocation is dead, one the user connected again afterwards (through a fresh,
/// post-revocation login) is usable, and a disabled subject can use none. `ema-server`
/// implements it over its revocation mirror (`ema_server::vault::MirrorSubjectStatus`); this
/// crate does not depend on the ledger.
///
/// ```
/// use ema_jose::UnixTime;
/// use ema_vault::{Owner, SubjectStatus};
///
/// /// Everyone whose subject starts with `gone-` was revoked at 2 000.
/// struct Offboarded;
///
/// impl SubjectStatus for Offboarded {
///     fn check(&self, owner: &Owner, stored_at: UnixTime) -> Result<(), String> {
///         if owner.subject().starts_with("gone-") && stored_at <= UnixTime::from_secs(2_000) {
///             return Err("subject revoked".into());
///         }
///         Ok(())
///     }
/// }
/// let owner = Owner::new("acme", "gone-bob")?;
/// assert!(Offboarded.check(&owner, UnixTime::from_secs(1_500)).is_err());
/// assert!(Offboarded.check(&owner, UnixTime::from_secs(2_001)).is_ok());
/// # Ok::<(), ema_vault::KeyError>(())
/// ```
pub trait SubjectStatus: Send + Sync {
    /// `Ok(())` if `owner` may use a credential last written at `stored_at`; otherwise why
    /// not (for the audit trail and the error; no secret in it).
    fn check(&self, owner: &Owner, stored_at: UnixTime) -> Result<(), String>;
}
