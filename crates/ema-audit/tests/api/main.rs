//! Integration tests of ema-audit, one binary, one module per area:
//!
//! - `trail`: writing and reading back, checkpoints, no secrets by default, forged checkpoints,
//!   a truncated tail, the log's own guarantees, the tracing sink;
//! - `tamper`: property tests (altering, deleting, duplicating, reordering, cutting);
//! - `resume`: reopening a file and continuing its chain, or refusing to;
//! - `cli`: the `ema-audit` command on good and broken files.

// `cfg(test)` marks these modules as test code for clippy's `allow-*-in-tests` settings (an
// integration test is always built with it), so helpers may unwrap like tests do.
#[cfg(test)]
mod cli;
#[cfg(test)]
mod common;
#[cfg(test)]
mod resume;
#[cfg(test)]
mod tamper;
#[cfg(test)]
mod trail;
