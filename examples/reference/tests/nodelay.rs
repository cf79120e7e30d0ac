//! MCP tool calls are answered as SSE streams written in several pieces; the reference servers
//! set `TCP_NODELAY` so those pieces are not held back by Nagle's algorithm until the client's
//! delayed ACK (about 40 ms per call on Linux).

use std::time::{Duration, Instant};

use ema_examples::traffic::mcp::McpSession;
use ema_examples::traffic::stack::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_tool_calls_are_not_held_back_by_nagle() {
    let stack = Stack::start().await.expect("the servers start");
    let token = stack.access_token(stack.now()).expect("a token");
    let mut session = McpSession::open(stack.mcp.addr, Some(&token))
        .await
        .expect("a session");
    session.call("whoami").await.expect("a first call");
    let calls = 20;
    let started = Instant::now();
    for _ in 0..calls {
        session.call("whoami").await.expect("a call");
    }
    let elapsed = started.elapsed();
    // With Nagle on, every call waits for a delayed ACK: 20 calls take at least 800 ms.
    assert!(
        elapsed < Duration::from_millis(500),
        "{calls} sequential tool calls on one connection took {elapsed:?}"
    );
}
