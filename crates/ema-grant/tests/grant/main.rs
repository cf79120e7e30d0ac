//! Proof tests for the two EMA grants and the ID-JAG between them, as one test binary:
//!
//! - `jwt_bearer_matrix`: the authorization server's negative matrix (AS-*, SEC-*, D-*), each
//!   row with its positive control;
//! - `exchange_matrix`: the IdP's negative matrix (TX-*, D-1, D-2, D-3, D-10, D-18, ...);
//! - `access_token`: the jwt-bearer success path and the access token as the resource server
//!   sees it;
//! - `issuance`: the token-exchange success path, the ID-JAG's content (JAG-*), and the full
//!   chain ID token → ID-JAG → access token;
//! - `saml` (feature `saml`): SAML 2.0 subject assertions at the token exchange (TX-3, TX-4,
//!   D-1);
//! - `features`: what the token exchange does without the `saml` feature or a SAML validator;
//! - `builders`: the grant builders refuse configurations that could never issue a token;
//! - `concurrency`: ten threads redeeming one ID-JAG get exactly one token (SEC-1);
//! - `failing_store`: failing replay stores, key sources and directories fail closed (503);
//! - `guide`: the code of `docs/validating-access-tokens.md`, verbatim (`oracle` runs it);
//! - `oracle`: every token minted through `Fx::send` validates under `jsonwebtoken` as a
//!   downstream service would check it (the interoperability oracle);
//! - `redis` (feature `redis`): two grants sharing one private `redis-server` redeem each
//!   ID-JAG and DPoP proof once; Redis stopped or slow fails closed (503) and recovers by
//!   itself (`redis_server` starts the server; it must be on `PATH`);
//! - `redis_ledger` (feature `redis`): the revocation ledger on Redis and mirrors tailing its
//!   stream across killed connections, a trimmed stream and a Redis restart;
//! - `redis_cluster` (feature `redis`): the replay store, the fused redeemer and the ledger
//!   with a mirror's tail on a private three-master Redis Cluster (`redis_cluster_server`
//!   starts it; `redis-server` and `redis-cli` must be on `PATH`);
//! - `redemption`: an `IdJagRedeemer` set on the jwt-bearer grant replaces its ledger check
//!   and replay commit for the ID-JAG, with the same answers;
//! - `redis_redemption` (feature `redis`): the one-round-trip `RedisRedeemer` answers exactly
//!   as the two steps (ledger `MGET`, then `SET NX PX`) over a revocation matrix, does not burn
//!   a revoked ID-JAG's `jti`, fails closed with Redis down, and redeems once across instances;
//! - `ssf`: the SSF push receiver's matrix (RV-4..RV-10, RV-13, D-37), each refusal with its
//!   RFC 8935 code and its positive control;
//! - `ssf_health`: the SSF stream-health state machine at fixed times (RV-26, RV-24): matched
//!   and wrong states, unanswered requests, overdue, paused, disabled, re-enabled, and the
//!   transmitter's `min_verification_interval`;
//! - `coverage`: every rule id is proven somewhere, or listed as not implemented with why.
//!
//! Every test runs at the fixed time `support::NOW`; nothing reads the wall clock or sleeps.
//! Run with `cargo test -p ema-grant --test grant -- --nocapture` to see the summary lines; add
//! `--features saml` (or `--all-features`) for the SAML rows.

// `cfg(test)` marks these modules as test code for clippy's `allow-*-in-tests` settings (an
// integration test is always built with it), so helpers may `expect` and index like tests do.
#[cfg(test)]
mod access_token;
#[cfg(test)]
mod builders;
#[cfg(test)]
mod concurrency;
#[cfg(test)]
mod config_knobs;
#[cfg(test)]
mod coverage;
#[cfg(test)]
mod exchange_matrix;
#[cfg(test)]
mod failing_store;
#[cfg(test)]
mod features;
#[cfg(test)]
#[allow(
    unreachable_pub,
    dead_code,
    reason = "the code of docs/validating-access-tokens.md, kept verbatim: written for a service crate"
)]
mod guide;
#[cfg(test)]
mod issuance;
#[cfg(test)]
mod jwt_bearer_matrix;
#[cfg(test)]
mod oracle;
#[cfg(test)]
mod redemption;
#[cfg(test)]
#[cfg(feature = "redis")]
mod redis;
#[cfg(test)]
#[cfg(feature = "redis")]
mod redis_cluster;
#[cfg(test)]
#[cfg(feature = "redis")]
mod redis_cluster_server;
#[cfg(test)]
#[cfg(feature = "redis")]
mod redis_ledger;
#[cfg(test)]
#[cfg(feature = "redis")]
mod redis_redemption;
#[cfg(test)]
#[cfg(feature = "redis")]
mod redis_server;
#[cfg(test)]
mod revocation;
#[cfg(test)]
#[cfg(feature = "saml")]
mod saml;
#[cfg(test)]
mod ssf;
#[cfg(test)]
mod ssf_health;
#[cfg(test)]
mod support;
