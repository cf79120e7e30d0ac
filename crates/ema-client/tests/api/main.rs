//! API tests of ema-client against loopback servers (OS-chosen ports on 127.0.0.1, a test clock,
//! no sleeps standing in for synchronisation). One binary, one module per area:
//!
//! - `code_flow`: the authorization code flow as a client (issue 14) against in-process
//!   authorization server and IdP routers from `ema-server`;
//! - `discovery`: CL-1, D-9, CL-2, MD-5, CL-3;
//! - `flow`: CL-4..CL-10, CL-13, D-1, D-2, D-10, the token cache, typed errors, redaction;
//! - `mcp`: rmcp over Streamable HTTP with an EMA session; CL-7, CL-9, CL-10 end to end.
//!
//! The fetcher and the remote key sets are tested in `ema-jwks`, where they live.

// `cfg(test)` marks these modules as test code for clippy's `allow-*-in-tests` settings (an
// integration test is always built with it), so helpers may unwrap like tests do.
#[cfg(test)]
mod code_flow;
#[cfg(test)]
mod discovery;
#[cfg(test)]
mod flow;
#[cfg(test)]
#[cfg(feature = "rmcp")]
mod mcp;
#[cfg(test)]
mod support;
