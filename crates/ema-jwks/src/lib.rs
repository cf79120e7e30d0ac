#![doc = include_str!("../README.md")]
//!
//! # The pieces
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
