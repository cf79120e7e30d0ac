//! API tests of ema-jwks against loopback servers (OS-chosen ports on 127.0.0.1, a test clock,
//! no sleeps standing in for synchronisation). One binary, one module per area:
//!
//! - `fetch`: the URL rule (MD-8), the address filter, timeouts, the size cap, no redirects;
//! - `remote`: remote key sets (SEC-3, AS-4, D-19, D-22, EMA §7.4.1);
//! - `issuer_keys`: remote and static sources per issuer behind one `KeySource`.

// `cfg(test)` marks these modules as test code for clippy's `allow-*-in-tests` settings (an
// integration test is always built with it), so helpers may unwrap like tests do.
#[cfg(test)]
mod fetch;
#[cfg(test)]
mod issuer_keys;
#[cfg(test)]
mod remote;
#[cfg(test)]
mod support;
