//! Bad traffic never gets a 5xx or a dropped connection, and valid traffic alongside keeps
//! getting 200: the three reference servers in process, every quick kind of bad request from
//! the `load abuse` catalog sent many times at once (the stalled clients, which take the
//! servers' 10 s timeouts, are left to `load abuse`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use ema_examples::traffic::bad::{self, BadRequest, Material};
use ema_examples::traffic::client::Connection;
use ema_examples::traffic::mcp::McpSession;
use ema_examples::traffic::raw::RawConn;
use ema_examples::traffic::stack::{Stack, basic_auth, token_body};
use tokio::sync::Semaphore;

/// Copies of each cheap kind in flight at once.
const COPIES: usize = 200;
/// Copies of the kinds that are expensive to send or to refuse (half-megabyte heads, bodies
/// past the limits, password checks).
const COPIES_HEAVY: usize = 10;
/// Connections open at once.
const CONCURRENCY: usize = 200;

fn heavy(req: &BadRequest) -> bool {
    [
        "huge",
        "oversized",
        "content-length-lie",
        "login-wrong-password",
    ]
    .iter()
    .any(|h| req.name.contains(h))
}

async fn send_bad(req: Arc<BadRequest>, m: Arc<Material>, gate: Arc<Semaphore>) -> Option<String> {
    let _permit = gate.acquire_owned().await.ok()?;
    let mut conn = RawConn::new(m.addr(req.target));
    match conn.exchange(&req.steps, req.limit()).await {
        Ok(ex) => req
            .judge(ex.outcome)
            .map(|why| format!("{}: {why} ({})", req.name, ex.outcome.label())),
        Err(e) => Some(format!("{}: connect failed: {e}", req.name)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_and_valid_traffic_200() {
    let started = Instant::now();
    let stack = Arc::new(Stack::start().await.expect("the servers start"));
    let m = Arc::new(bad::material(&stack).await.expect("material"));
    let catalog: Vec<Arc<BadRequest>> = bad::catalog(&m)
        .into_iter()
        .filter(|r| !r.is_slow())
        .map(Arc::new)
        .collect();
    assert!(catalog.len() > 90, "{} kinds", catalog.len());

    // Valid traffic for the whole run: fresh ID-JAGs at the token endpoint, tool calls.
    let token = stack.access_token(stack.now()).unwrap();
    let mut session = McpSession::open(stack.mcp.addr, Some(&token))
        .await
        .unwrap();
    let valid = {
        let stack = stack.clone();
        tokio::spawn(async move {
            let mut conn = Connection::new(stack.auth_server.addr);
            let basic = basic_auth();
            let mut ok = 0;
            for _ in 0..40 {
                let jag = stack.id_jag(stack.now()).unwrap();
                let reply = conn
                    .send(
                        "POST",
                        "/token",
                        &[
                            ("content-type", "application/x-www-form-urlencoded"),
                            ("authorization", &basic),
                        ],
                        Bytes::from(token_body(&jag)),
                    )
                    .await
                    .unwrap();
                assert_eq!(reply.status, 200, "{:?}", reply.body);
                session.call("whoami").await.unwrap();
                ok += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ok
        })
    };

    let gate = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for req in &catalog {
        let copies = if heavy(req) { COPIES_HEAVY } else { COPIES };
        for _ in 0..copies {
            tasks.push(tokio::spawn(send_bad(req.clone(), m.clone(), gate.clone())));
        }
    }
    let sent = tasks.len();
    let mut violations = Vec::new();
    for t in tasks {
        if let Some(v) = t.await.unwrap() {
            violations.push(v);
        }
    }
    violations.sort();
    violations.dedup();
    assert!(
        violations.is_empty(),
        "{sent} bad requests, violations:\n{}",
        violations.join("\n")
    );
    assert_eq!(valid.await.unwrap(), 40);

    // Still up for a new client.
    let mut fresh = McpSession::open(stack.mcp.addr, Some(&token))
        .await
        .unwrap();
    fresh.call("whoami").await.unwrap();
    eprintln!(
        "{sent} bad requests of {} kinds in {:.1} s",
        catalog.len(),
        started.elapsed().as_secs_f64()
    );
}
