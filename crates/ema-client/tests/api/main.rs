//! API tests of ema-client against loopback servers (OS-chosen ports on 127.0.0.1, a test clock,
//! no sleeps standing in for synchronisation). One binary, one module per area:
//!
//! - `fetch`: the URL rule (MD-8), the address filter, timeouts, the size cap, no redirects;
//! - `jwks`: remote key sets (SEC-3, AS-4, EMA §7.4.1);
//! - `discovery`: CL-1, D-9, CL-2, MD-5, CL-3;
//! - `flow`: CL-4..CL-10, CL-13, D-1, D-2, D-10, the token cache, typed errors, redaction;
//! - `mcp`: rmcp over Streamable HTTP with an EMA session; CL-7, CL-9, CL-10 end to end.

// `cfg(test)` marks these modules as test code for clippy's `allow-*-in-tests` settings (an
// integration test is always built with it), so helpers may unwrap like tests do.
#[cfg(test)]
mod discovery;
#[cfg(test)]
mod fetch;
#[cfg(test)]
mod flow;
#[cfg(test)]
mod jwks;
#[cfg(test)]
#[cfg(feature = "rmcp")]
mod mcp;
#[cfg(test)]
mod support;
