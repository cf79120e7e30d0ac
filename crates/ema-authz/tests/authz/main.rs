//! The policy test matrix of the Cedar engine, as one test binary:
//!
//! - `matrix`: allow, deny, the three argument rules (SQL read-only for analysts, file paths
//!   under the user's project, payment amounts capped by role) and the session rules (no
//!   outbound tool after `secret_read`, a cap on destructive calls), each denial with its
//!   positive control, with the example policies of `examples/config/policies/`;
//! - `loading`: policies refused at load (unknown argument, unknown attribute, wrong type,
//!   parse errors, duplicate ids, templates, empty sets), each diagnostic naming its policy
//!   and file;
//! - `reload`: reloads from a temporary directory swap the set, keep the last good set when the
//!   new one is refused, and polling notices changes;
//! - `errors`: evaluation errors, unknown tools, malformed arguments and inexpressible
//!   principals deny;
//! - `claims`: `Principal::from_claims` and the principal mapping;
//! - `property`: `may_call` is never false for a tool some arguments would be allowed;
//! - `differential`: `decide` (policies skipped by their guards, plain arguments converted by
//!   the engine) gives the decisions of `decide_unoptimized` (every policy, the schema
//!   generator's request).

// `cfg(test)` marks these modules as test code for clippy's `allow-*-in-tests` settings.
#[cfg(test)]
mod claims;
#[cfg(test)]
mod differential;
#[cfg(test)]
mod errors;
#[cfg(test)]
mod loading;
#[cfg(test)]
mod matrix;
#[cfg(test)]
mod property;
#[cfg(test)]
mod reload;
#[cfg(test)]
mod support;
