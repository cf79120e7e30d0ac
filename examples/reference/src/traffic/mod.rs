//! Traffic for the `load` tool and the robustness tests: the reference servers started on
//! loopback with the keys a generator needs ([`stack`]), one keep-alive connection per worker
//! for valid traffic ([`client`], [`mcp`]), raw HTTP/1.1 for traffic no well-behaved client
//! would send ([`raw`]), a catalog of bad requests with the rule each is judged by ([`bad`]),
//! a private `redis-server` for the runs that share state between instances ([`redis`]), and
//! latency records ([`stats`]).

pub mod bad;
pub mod client;
pub mod mcp;
pub mod raw;
pub mod redis;
pub mod stack;
pub mod stats;
