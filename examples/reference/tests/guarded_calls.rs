//! The reference MCP server behind its tool-call guard (Cedar policies, session rules), called
//! over one session with the raw Streamable HTTP client: the task tools declare what they do,
//! so the session rules that count destructive calls and block open-world tools after a secret
//! leave them alone, and still stop the tools they are written for.

#![allow(clippy::expect_used, reason = "test helpers may expect")]

use ema_examples::traffic::mcp::{McpError, McpSession, text};
use ema_examples::traffic::stack::Stack;
use serde_json::json;

/// What `destructive-cap` in `session.cedar` allows per session.
const DESTRUCTIVE_CAP: usize = 20;

async fn session(stack: &Stack) -> McpSession {
    let token = stack.access_token(stack.now()).expect("a token");
    McpSession::open(stack.mcp.addr, Some(&token))
        .await
        .expect("a session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_tools_are_not_capped_as_destructive() {
    let stack = Stack::start().await.expect("the servers start");
    let mut s = session(&stack).await;
    // Three times the cap of each: a tool without annotations counts as destructive (MCP's
    // default), and the 21st call of the session would be refused.
    for round in 0..3 * DESTRUCTIVE_CAP {
        s.call("whoami")
            .await
            .unwrap_or_else(|e| panic!("whoami, round {round}: {e}"));
        s.call("list_tasks")
            .await
            .unwrap_or_else(|e| panic!("list_tasks, round {round}: {e}"));
        let added = s
            .call_with("add_task", json!({"title": format!("task {round}")}))
            .await
            .unwrap_or_else(|e| panic!("add_task, round {round}: {e}"));
        assert!(text(&added).starts_with("added task"), "{added}");
        s.call_with("complete_task", json!({"id": 1}))
            .await
            .unwrap_or_else(|e| panic!("complete_task, round {round}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destructive_cap_stops_a_destructive_tool() {
    let stack = Stack::start().await.expect("the servers start");
    let mut s = session(&stack).await;
    let select = json!({"query": "SELECT * FROM tasks"});
    for call in 0..DESTRUCTIVE_CAP {
        s.call_with("run_query", select.clone())
            .await
            .unwrap_or_else(|e| panic!("run_query, call {call}: {e}"));
    }
    match s.call_with("run_query", select).await {
        Err(McpError::Tool(reason)) => {
            assert!(reason.contains("20 destructive calls"), "{reason}");
        }
        other => panic!("the call past the cap: {other:?}"),
    }
    // Capped are the destructive tools only.
    s.call("whoami").await.expect("whoami after the cap");
    s.call_with("add_task", json!({"title": "after the cap"}))
        .await
        .expect("add_task after the cap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_secret_only_open_world_tools_are_refused() {
    let stack = Stack::start().await.expect("the servers start");
    let mut s = session(&stack).await;
    let message = json!({"to": "partner@example.com", "text": "status"});
    s.call_with("send_message", message.clone())
        .await
        .expect("a message before the secret");
    let path = format!("/projects/{}/.env", stack.principal.subject());
    let file = s
        .call_with("read_file", json!({ "path": path }))
        .await
        .expect("the secret file, redacted");
    assert!(text(&file).contains("[REDACTED]"), "{file}");
    match s.call_with("send_message", message).await {
        Err(McpError::Tool(reason)) => assert!(reason.contains("secret was read"), "{reason}"),
        other => panic!("a message after the secret: {other:?}"),
    }
    // The task tools stay inside the server: still allowed.
    s.call("whoami").await.expect("whoami after the secret");
    s.call("list_tasks")
        .await
        .expect("list_tasks after the secret");
    s.call_with("add_task", json!({"title": "after the secret"}))
        .await
        .expect("add_task after the secret");
    s.call_with("complete_task", json!({"id": 1}))
        .await
        .expect("complete_task after the secret");
}
