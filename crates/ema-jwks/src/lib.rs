//! Remote JSON Web Key Sets for ema-rs: where the keys that verify ID tokens, ID-JAGs and access
//! tokens come from when they are not in memory, and the HTTP rules for getting them.
//!
//! - [`HttpFetcher`] with a [`FetchPolicy`]: `https` only unless loopback is explicitly allowed
//!   (MD-8), private and link-local addresses refused (literal addresses before the request,
//!   names at DNS resolution), a streamed body cap, connect and total timeouts, no redirects,
//!   no proxy. `ema-client` sends all of its requests through it as well.
//! - [`RemoteJwks`]: remote key sets as an [`ema_jose::KeySource`], cached per `Cache-Control`
//!   within bounds ([`JwksCachePolicy`]), one rate-limited single-flight refetch on an unknown
//!   `kid` (SEC-3), last good set kept on failure, no rollback to removed keys (EMA §7.4.1),
//!   each entry judged on its own (D-19) and `kid`-less lookups only against one candidate key
//!   (D-22).
//! - [`IssuerKeys`]: many issuers, each with its own [`JwksSource`] (a URL, a file or a key set
//!   in hand), as one [`ema_jose::KeySource`]: what an authorization server needs for its
//!   trusted IdPs (AS-4) and a resource server for its authorization server.
//! - [`Secret`]: a string redacted in `Debug` (the fetcher's `Authorization` values, SEC-10).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use ema_jose::{Algorithm, JwkSet, KeySource, SigningKey, SystemClock};
//! use ema_jwks::{FetchPolicy, HttpFetcher, IssuerKeys, JwksCachePolicy, JwksSource};
//!
//! // https only by default; loopback http is a named, explicit opt-in (MD-8).
//! let fetcher = HttpFetcher::new(FetchPolicy::new())?;
//! assert!(fetcher.check_url("jwks_uri", "http://idp.example/keys").is_err());
//! assert!(fetcher.check_url("jwks_uri", "https://10.0.0.7/keys").is_err());
//!
//! // One key source for every trusted issuer, remote or not.
//! let partner = SigningKey::generate(Algorithm::ES256, Some("p1".into()))?;
//! let keys = IssuerKeys::new(fetcher, Arc::new(SystemClock))
//!     .with_cache_policy(JwksCachePolicy::new().with_min_refetch_interval(Duration::from_secs(30)))
//!     .with_issuer("https://idp.acme.example", JwksSource::Url("https://idp.acme.example/keys".into()))?
//!     .with_issuer("https://partner.example", JwkSet::from_keys([partner.verifying_key().clone()]))?;
//! let key = pollster::block_on(keys.resolve("https://partner.example", Some("p1"), Algorithm::ES256))?;
//! assert_eq!(key.kid(), Some("p1"));
//! // SEC-3: an issuer nobody configured has no keys.
//! assert!(pollster::block_on(keys.resolve("https://evil.example", None, Algorithm::ES256)).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! None: the crate always brings reqwest (rustls) and tokio (the resolver, timeouts and the
//! single-flight lock). Keys that never leave memory need only `ema_jose::StaticKeySource`.

mod fetch;
mod issuer_keys;
mod remote;
mod secret;

pub use fetch::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, FetchError, FetchPolicy,
    FetchResponse, HttpFetcher,
};
pub use issuer_keys::{IssuerKeys, IssuerKeysError, JwksSource};
pub use remote::{JwksCachePolicy, JwksFetchError, RemoteJwks};
pub use secret::Secret;
