//! Reference servers and the end-to-end demo of MCP Enterprise-Managed Authorization.
//!
//! Binaries (`cargo run -p ema-examples --bin <name>`):
//! - `idp`: the enterprise IdP (SSO + token exchange), default `http://127.0.0.1:9400`;
//! - `authorization-server`: the MCP authorization server (jwt-bearer), default `:9401`;
//! - `mcp-server`: an rmcp task-list server behind the bearer layer, default `:9402`;
//! - `agent`: signs a user in, lists the MCP server's tools and calls one;
//! - `demo`: starts all three on OS-chosen loopback ports and plays the whole flow;
//! - `load`: load and robustness runs against the three (`load --help`; figures in
//!   `docs/benchmarks.md`).
//!
//! Each server takes `--config <file.toml>` (see `examples/README.md`) and otherwise starts
//! with development defaults. The first line a server prints on stdout is its bound URL.

pub mod admin;
pub mod audit;
pub mod config;
pub mod keys;
pub mod notes;
pub mod serve;
pub mod servers;
pub mod ssf;
pub mod ssf_poll;
pub mod sso;
pub mod stream_health;
pub mod tasks;
pub mod trace;
pub mod traffic;
pub mod vault;
