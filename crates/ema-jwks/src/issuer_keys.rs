//! Verification keys per issuer, each from its own source: a JWKS URL fetched and cached through
//! [`RemoteJwks`], a JWKS file read once, or a key set in hand (SEC-3, AS-4).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ema_jose::{Algorithm, Clock, JwkSet, JwksError, KeyLookupError, KeySource, VerifyingKey};

use crate::fetch::{FetchError, HttpFetcher};
use crate::remote::{JwksCachePolicy, RemoteJwks};

/// Where one issuer's verification keys come from.
///
/// ```
/// use ema_jwks::JwksSource;
///
/// let remote = JwksSource::Url("https://idp.acme.example/oauth2/keys".into());
/// let on_disk = JwksSource::File("config/idp-jwks.json".into());
/// let inline = JwksSource::inline_json(r#"{"keys":[]}"#)?;
/// assert!(remote.is_remote() && !on_disk.is_remote() && !inline.is_remote());
/// # Ok::<(), ema_jose::JwksError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JwksSource {
    /// A `jwks_uri`: checked against the fetch policy when added (MD-8), fetched on first use,
    /// cached and refreshed as [`RemoteJwks`] does.
    Url(String),
    /// A JWKS document on disk, read and parsed once when added (entries judged one by one,
    /// D-19). The keys never change afterwards.
    File(PathBuf),
    /// A key set in hand. The keys never change.
    Inline(JwkSet),
}

impl JwksSource {
    /// An inline source from JWKS JSON text (D-19: entries judged one by one).
    pub fn inline_json(json: &str) -> Result<Self, JwksError> {
        JwkSet::parse(json.as_bytes()).map(Self::Inline)
    }

    /// Whether the keys are fetched over the network.
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Url(_))
    }
}

impl From<JwkSet> for JwksSource {
    fn from(set: JwkSet) -> Self {
        Self::Inline(set)
    }
}

/// Why an issuer's key source could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerKeysError {
    /// The JWKS URL breaks the fetch policy (MD-8: `https` only unless loopback is allowed;
    /// no private or link-local literal addresses).
    #[error("JWKS URL of `{issuer}`: {source}")]
    Url {
        /// The issuer.
        issuer: String,
        /// The refusal.
        #[source]
        source: FetchError,
    },
    /// The JWKS file could not be read.
    #[error("JWKS file `{}` of `{issuer}`: {source}", path.display())]
    Read {
        /// The issuer.
        issuer: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The JWKS file is not a key set.
    #[error("JWKS file `{}` of `{issuer}`: {source}", path.display())]
    Document {
        /// The issuer.
        issuer: String,
        /// The file.
        path: PathBuf,
        /// Why the document was refused.
        #[source]
        source: JwksError,
    },
}

/// Verification keys for many issuers, each from its own [`JwksSource`], as one
/// [`KeySource`].
///
/// Remote issuers go through one shared [`RemoteJwks`] (policy-checked fetch, `Cache-Control`
/// within bounds, rate-limited single-flight refetch on an unknown `kid`, no rollback); file and
/// inline issuers answer from memory. Keys come only from the source configured for the issuer
/// the caller has already matched, never from the token (SEC-3); an issuer with no source is
/// [`KeyLookupError::UnknownIssuer`]. When an issuer is given a source twice, the last one wins.
///
/// [`KeySource::key_set_version`] moves with the remote cache for URL issuers and stays 0 for
/// the others, whose keys never change.
///
/// ```
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use ema_jose::{Algorithm, JwkSet, KeySource, SigningKey, SystemClock};
/// use ema_jwks::{FetchPolicy, HttpFetcher, IssuerKeys, JwksSource};
///
/// let partner = SigningKey::generate(Algorithm::ES256, Some("p1".into()))?;
/// let keys = IssuerKeys::new(HttpFetcher::new(FetchPolicy::new())?, Arc::new(SystemClock))
///     .with_issuer("https://idp.acme.example", JwksSource::Url("https://idp.acme.example/keys".into()))?
///     .with_issuer("https://partner.example", JwkSet::from_keys([partner.verifying_key().clone()]))?;
///
/// // Static keys answer at once; remote ones are fetched on first use.
/// let found = keys.resolve("https://partner.example", Some("p1"), Algorithm::ES256);
/// assert!(pollster::block_on(found).is_ok());
/// assert_eq!(keys.key_set_version("https://partner.example"), 0);
/// assert!(keys.is_remote("https://idp.acme.example"));
///
/// // MD-8: a plain-http key URL is refused when configured, not when first used.
/// let refused = IssuerKeys::new(HttpFetcher::new(FetchPolicy::new())?, Arc::new(SystemClock))
///     .with_issuer("https://idp.other.example", JwksSource::Url("http://idp.other.example/keys".into()));
/// assert!(refused.is_err());
/// # Ok(()) }
/// # demo().unwrap();
/// ```
#[derive(Clone)]
pub struct IssuerKeys {
    remote: RemoteJwks,
    fixed: Arc<HashMap<String, JwkSet>>,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("remote", &self.remote)
            .field("fixed", &self.fixed.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl IssuerKeys {
    /// No issuers yet; remote key sets are fetched with `fetcher` (its [`FetchPolicy`] applies
    /// to every URL) and cached by `clock`.
    ///
    /// [`FetchPolicy`]: crate::FetchPolicy
    pub fn new(fetcher: HttpFetcher, clock: Arc<dyn Clock>) -> Self {
        Self {
            remote: RemoteJwks::new(fetcher, clock),
            fixed: Arc::new(HashMap::new()),
        }
    }

    /// Replaces the cache policy of the remote key sets.
    #[must_use]
    pub fn with_cache_policy(mut self, policy: JwksCachePolicy) -> Self {
        self.remote = self.remote.with_policy(policy);
        self
    }

    /// Sets where `issuer`'s keys come from. A URL must pass the fetch policy (MD-8); a file is
    /// read and parsed now (D-19).
    pub fn with_issuer(
        mut self,
        issuer: impl Into<String>,
        source: impl Into<JwksSource>,
    ) -> Result<Self, IssuerKeysError> {
        let issuer = issuer.into();
        match source.into() {
            JwksSource::Url(url) => {
                self.remote = match self.remote.with_issuer(issuer.as_str(), &url) {
                    Ok(remote) => remote,
                    Err(source) => return Err(IssuerKeysError::Url { issuer, source }),
                };
                if self.fixed.contains_key(&issuer) {
                    Arc::make_mut(&mut self.fixed).remove(&issuer);
                }
            }
            JwksSource::File(path) => {
                let set = read_jwks_file(&issuer, &path)?;
                Arc::make_mut(&mut self.fixed).insert(issuer, set);
            }
            JwksSource::Inline(set) => {
                Arc::make_mut(&mut self.fixed).insert(issuer, set);
            }
        }
        Ok(self)
    }

    /// Whether `issuer` has a source.
    pub fn contains(&self, issuer: &str) -> bool {
        self.fixed.contains_key(issuer) || self.remote.has_issuer(issuer)
    }

    /// Whether `issuer`'s keys are fetched over the network.
    pub fn is_remote(&self, issuer: &str) -> bool {
        !self.fixed.contains_key(issuer) && self.remote.has_issuer(issuer)
    }

    /// The remote key sets, for [`RemoteJwks::refresh`] or [`RemoteJwks::cached`].
    pub fn remote(&self) -> &RemoteJwks {
        &self.remote
    }
}

/// Reads and parses a JWKS file.
fn read_jwks_file(issuer: &str, path: &Path) -> Result<JwkSet, IssuerKeysError> {
    let bytes = std::fs::read(path).map_err(|source| IssuerKeysError::Read {
        issuer: issuer.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    JwkSet::parse(&bytes).map_err(|source| IssuerKeysError::Document {
        issuer: issuer.to_owned(),
        path: path.to_owned(),
        source,
    })
}

impl KeySource for IssuerKeys {
    async fn resolve(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, KeyLookupError> {
        // SEC-3: the keys of the issuer the caller matched, from its own source only. D-22:
        // `JwkSet::find` decides kid-less lookups for both kinds of source.
        match self.fixed.get(issuer) {
            Some(set) => set.find(kid, alg).cloned(),
            None => self.remote.resolve(issuer, kid, alg).await,
        }
    }

    fn key_set_version(&self, issuer: &str) -> u64 {
        if self.fixed.contains_key(issuer) {
            0
        } else {
            self.remote.key_set_version(issuer)
        }
    }
}
