//! `load mcp`: `tools/call` through the bearer layer against the same server with
//! authentication off.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use ema_examples::config::defaults;
use ema_examples::traffic::mcp::{self, McpSession};
use ema_examples::traffic::stack::{MCP_PATH, MCP_PROTOCOL_VERSION, Stack};
use ema_examples::traffic::stats::{self, Counts, Latencies};
use ema_examples::{serve, servers};
use ema_grant::revocation::{DynRevocationLedger, MemoryLedger, RevocationKind, RevocationScope};
use ema_jose::{SystemClock, UnixTime};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::{
    BoxError, ClientThreads, Guard, LOAD_THREADS, Options, Runtimes, SERVER_THREADS, Tool, check,
    goal, memory_line, start_stack,
};

/// The tool every call runs (`--tool`): `whoami` by default (cheap, and it reads the principal
/// like every tool does); `read_file` is decided by a Cedar policy with conditions on its
/// argument (`files-projects`).
static CALL: OnceLock<ToolCall> = OnceLock::new();

/// The tool call every session makes, and the JSON-RPC `arguments` it sends.
struct ToolCall {
    name: &'static str,
    arguments: Value,
}

/// The call every session makes (`whoami` until [`choose_tool`] ran).
fn tool_call() -> &'static ToolCall {
    CALL.get_or_init(|| ToolCall {
        name: "whoami",
        arguments: Value::Object(serde_json::Map::new()),
    })
}

/// Sets the call of this run: `tool` for the tokens of `subject` (whose project `read_file`
/// reads: `/projects/<subject>/README.md`, a Cedar-permitted path whose content carries no
/// secret, so the session rules never start refusing).
fn choose_tool(tool: Tool, subject: &str) {
    let call = match tool {
        Tool::Whoami => ToolCall {
            name: "whoami",
            arguments: Value::Object(serde_json::Map::new()),
        },
        Tool::ReadFile => ToolCall {
            name: "read_file",
            arguments: serde_json::json!({ "path": format!("/projects/{subject}/README.md") }),
        },
    };
    // One run, one tool: a second choice (never made) would keep the first.
    let _ = CALL.set(call);
}
/// The longest slice of one mode before switching to the other.
const SLICE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Mode {
    latencies: Latencies,
    errors: Counts,
    elapsed: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
}

impl Mode {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn us_per_call(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / (self.latencies.len().max(1) as f64)
    }
}

/// Something that calls a tool.
trait Caller: Send + 'static {
    fn call_tool(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

impl Caller for McpSession {
    async fn call_tool(&mut self) -> Result<(), String> {
        let call = tool_call();
        self.call_with(call.name, call.arguments.clone())
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// An MCP session driven through the served router in process (`tower::ServiceExt::oneshot`):
/// the same server, without sockets, HTTP parsing or a client.
struct LocalSession {
    router: Router,
    authorization: Option<String>,
    session_id: String,
    next_id: u64,
}

impl LocalSession {
    async fn post(
        &self,
        body: String,
        session: bool,
    ) -> Result<(u16, http::HeaderMap, Bytes), String> {
        let mut req = http::Request::post(MCP_PATH)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(auth) = &self.authorization {
            req = req.header("authorization", auth);
        }
        if session {
            req = req
                .header("mcp-session-id", &self.session_id)
                .header("mcp-protocol-version", MCP_PROTOCOL_VERSION);
        }
        let req = req.body(Body::from(body)).map_err(|e| e.to_string())?;
        let Ok(resp) = self.router.clone().oneshot(req).await;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((parts.status.as_u16(), parts.headers, body))
    }

    async fn open(router: Router, token: Option<&str>) -> Result<Self, String> {
        let mut s = Self {
            router,
            authorization: token.map(|t| format!("Bearer {t}")),
            session_id: String::new(),
            next_id: 1,
        };
        let init = serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": MCP_PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "ema-load", "version": "1"}
            }
        });
        let (status, headers, body) = s.post(init.to_string(), false).await?;
        if status != 200 || !mcp::is_result(&body, 0) {
            return Err(format!("initialize: HTTP {status}"));
        }
        s.session_id = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .ok_or("no Mcp-Session-Id")?
            .to_owned();
        let (status, _, _) = s
            .post(
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into(),
                true,
            )
            .await?;
        if status != 202 {
            return Err(format!("notifications/initialized: HTTP {status}"));
        }
        Ok(s)
    }
}

impl Caller for LocalSession {
    async fn call_tool(&mut self) -> Result<(), String> {
        let id = self.next_id;
        self.next_id += 1;
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool_call().name, "arguments": tool_call().arguments}
        });
        let (status, _, body) = self.post(body.to_string(), true).await?;
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        if !mcp::is_result(&body, id) {
            return Err("tools/call returned no result".into());
        }
        Ok(())
    }
}

/// Runs every session's call loop for `slice` on `rt`, returning the sessions for the next
/// slice.
async fn slice<S: Caller>(
    rt: &tokio::runtime::Handle,
    sessions: Vec<S>,
    slice: Duration,
    mode: &mut Mode,
) -> Result<Vec<S>, BoxError> {
    let cpu_before = stats::CpuSnapshot::take();
    let started = Instant::now();
    let deadline = started + slice;
    let mut handles = Vec::new();
    for mut session in sessions {
        handles.push(rt.spawn(async move {
            let mut latencies = Latencies::default();
            let mut errors = Counts::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                let result = session.call_tool().await;
                latencies.record(t.elapsed());
                if let Err(e) = result {
                    errors.add(e);
                }
            }
            (session, latencies, errors, Instant::now())
        }));
    }
    let mut back = Vec::new();
    let mut last = started;
    for h in handles {
        let (session, latencies, errors, end) = h.await?;
        back.push(session);
        mode.latencies.merge(latencies);
        mode.errors.merge(&errors);
        last = last.max(end);
    }
    mode.elapsed += last - started;
    let cpu_after = stats::CpuSnapshot::take();
    mode.server_cpu += cpu_after.since(&cpu_before, SERVER_THREADS);
    mode.client_cpu += cpu_after.since(&cpu_before, LOAD_THREADS);
    Ok(back)
}

/// Runs the two modes in alternating slices (on, off, off, on, ...) for `total` each, after a
/// short warm-up, so machine noise hits both alike.
async fn alternate<S: Caller>(
    rt: &tokio::runtime::Handle,
    mut protected: Vec<S>,
    mut open: Vec<S>,
    total: Duration,
) -> Result<(Mode, Mode), BoxError> {
    let warm = Duration::from_millis(300).min(total);
    protected = slice(rt, protected, warm, &mut Mode::default()).await?;
    open = slice(rt, open, warm, &mut Mode::default()).await?;
    let (mut on, mut off) = (Mode::default(), Mode::default());
    let mut remaining = total;
    let mut round = 0u32;
    while !remaining.is_zero() {
        let d = remaining.min(SLICE);
        remaining -= d;
        if round.is_multiple_of(2) {
            protected = slice(rt, protected, d, &mut on).await?;
            open = slice(rt, open, d, &mut off).await?;
        } else {
            open = slice(rt, open, d, &mut off).await?;
            protected = slice(rt, protected, d, &mut on).await?;
        }
        round += 1;
    }
    Ok((on, off))
}

/// The same comparison without sockets: `tasks` sessions per mode driven through the served
/// routers on the server runtime.
async fn in_process(
    stack: &Stack,
    rt: &Runtimes,
    tasks: usize,
    total: Duration,
) -> Result<(Mode, Mode), BoxError> {
    let now = stack.now();
    let (mut protected, mut open) = (Vec::new(), Vec::new());
    for _ in 0..tasks {
        let token = stack.access_token(now)?;
        protected.push(LocalSession::open(stack.mcp_routers.0.clone(), Some(&token)).await?);
        open.push(LocalSession::open(stack.mcp_routers.1.clone(), None).await?);
    }
    alternate(&rt.server, protected, open, total).await
}

/// Lists each mode's errors, then checks that neither had any.
fn no_errors(context: &str, (la, a): (&str, &Mode), (lb, b): (&str, &Mode)) -> bool {
    for (label, mode) in [(la, a), (lb, b)] {
        if !mode.errors.0.is_empty() {
            println!("  errors{context} ({label}): {}", mode.errors);
        }
    }
    check(
        &format!(
            "errors{context}: {} {la}, {} {lb}",
            a.errors.total(),
            b.errors.total()
        ),
        a.errors.total() == 0 && b.errors.total() == 0,
    )
}

/// `--guard compare`: the guarded MCP server against the same server behind the same bearer
/// layer without the guard, over HTTP, in alternating slices (issue 11: guarded `tools/call`
/// throughput at least 0.9x the unguarded server's in the same run).
async fn compare_guard(opts: Options, rt: &Runtimes) -> Result<bool, BoxError> {
    println!(
        "== MCP server: tool-call guard overhead: tools/call `{}`, {} s per mode in slices of at most {} s, {} connections per mode",
        opts.tool.name(),
        opts.secs,
        SLICE.as_secs(),
        opts.conns
    );
    let stack: Stack = start_stack(rt).await?;
    choose_tool(opts.tool, stack.principal.claims().sub.as_str());
    println!(
        "  guarded (bearer layer + Cedar guard): {}/mcp; unguarded (bearer layer alone): {}",
        stack.mcp.url, stack.mcp_unguarded.addr
    );
    let client = match opts.client {
        ClientThreads::Shared => rt.server.clone(),
        ClientThreads::Separate => tokio::runtime::Handle::current(),
    };
    let now = stack.now();
    // Each connection of either mode has its own access token (validated once, then cached).
    let tokens = (0..2 * opts.conns)
        .map(|_| stack.access_token(now))
        .collect::<Result<Vec<_>, _>>()?;
    let (guarded_addr, plain_addr) = (stack.mcp.addr, stack.mcp_unguarded.addr);
    let (guarded, plain) = client
        .spawn(async move {
            let (mut guarded, mut plain) = (Vec::new(), Vec::new());
            for pair in tokens.chunks(2) {
                if let [a, b] = pair {
                    guarded.push(McpSession::open(guarded_addr, Some(a)).await?);
                    plain.push(McpSession::open(plain_addr, Some(b)).await?);
                }
            }
            Ok::<_, BoxError>((guarded, plain))
        })
        .await??;
    let (on, off) = alternate(&client, guarded, plain, opts.window()).await?;
    let (s_on, s_off) = (on.latencies.summary(), off.latencies.summary());

    // The same comparison without sockets: the guard's own cost.
    let local_secs = opts.window().min(Duration::from_secs(10));
    let local_tasks = 16;
    let (mut local_on, mut local_off) = (Vec::new(), Vec::new());
    for _ in 0..local_tasks {
        local_on.push(
            LocalSession::open(stack.mcp_routers.0.clone(), Some(&stack.access_token(now)?))
                .await?,
        );
        local_off.push(
            LocalSession::open(
                stack.mcp_unguarded_router.clone(),
                Some(&stack.access_token(now)?),
            )
            .await?,
        );
    }
    let (l_on, l_off) = alternate(&rt.server, local_on, local_off, local_secs).await?;

    println!("summary:");
    println!(
        "  guarded:   {:.0} req/s ({} calls in {:.1} s), latency {s_on}, errors {}",
        on.rate(),
        s_on.count,
        on.elapsed.as_secs_f64(),
        on.errors.total()
    );
    println!(
        "  unguarded: {:.0} req/s ({} calls in {:.1} s), latency {s_off}, errors {}",
        off.rate(),
        s_off.count,
        off.elapsed.as_secs_f64(),
        off.errors.total()
    );
    println!(
        "  CPU per call on the server threads: {:.0} us guarded, {:.0} us unguarded",
        on.us_per_call(on.server_cpu),
        off.us_per_call(off.server_cpu)
    );
    println!(
        "  in process (no sockets, {local_tasks} sessions per mode, {:.1} s each): {:.0} calls/s guarded, {:.0} unguarded = {:.3}x; {:.1} / {:.1} us server CPU per call",
        local_secs.as_secs_f64(),
        l_on.rate(),
        l_off.rate(),
        l_on.rate() / l_off.rate().max(1e-9),
        l_on.us_per_call(l_on.server_cpu),
        l_off.us_per_call(l_off.server_cpu)
    );
    let mut ok = no_errors("", ("guarded", &on), ("unguarded", &off));
    ok &= no_errors(" in process", ("guarded", &l_on), ("unguarded", &l_off));
    ok &= check(
        "calls completed in both modes",
        !on.latencies.is_empty() && !off.latencies.is_empty(),
    );
    let ratio = on.rate() / off.rate().max(1e-9);
    goal(
        &format!("guarded / unguarded throughput over HTTP = {ratio:.2}x (goal >= 0.90x)"),
        ratio >= 0.90,
    );
    Ok(ok)
}

/// A `MemoryLedger` holding `entries` revoked local subjects of `issuer` (watermarks) and
/// `entries` denied token ids, none of them the load client's.
fn filled_ledger(issuer: &str, entries: usize, now: UnixTime) -> MemoryLedger {
    let ledger = MemoryLedger::new().with_feed_capacity(2 * entries + 16);
    let scope = RevocationScope::local(issuer);
    for i in 0..entries {
        ledger.revoke_subject_now(
            &scope,
            &format!("revoked-{i}"),
            now,
            RevocationKind::AccountDisabled,
            now,
        );
        ledger.deny_token_now(issuer, &format!("denied-jti-{i}"), now.plus(3600), now);
    }
    ledger
}

/// `--revocation compare`: the MCP server behind the bearer layer checking every request, cache
/// hits included, against a revocation mirror of `--entries` revoked subjects and denied token
/// ids (RV-15), against the stack's MCP server (the same bearer layer without a mirror), over
/// HTTP and then in process, in alternating slices (issue 13: at least 0.97x).
async fn compare_revocation(opts: Options, rt: &Runtimes) -> Result<bool, BoxError> {
    println!(
        "== MCP server: revocation check overhead: tools/call `{}`, {} s per mode in slices of at most {} s, {} connections per mode, mirror of {} revoked subjects + {} denied jtis",
        opts.tool.name(),
        opts.secs,
        SLICE.as_secs(),
        opts.conns,
        opts.entries,
        opts.entries
    );
    let stack: Stack = start_stack(rt).await?;
    choose_tool(opts.tool, stack.principal.claims().sub.as_str());
    let now = stack.now();
    let ledger = filled_ledger(&stack.auth_server.url, opts.entries, now);
    // The same configuration as the stack's MCP server, served under its public URL (so the
    // same tokens are valid), with the mirror.
    let mut cfg = defaults::mcp_server(&stack.auth_server.url, &stack.mcp.url);
    cfg.authz.enabled = rt.guard;
    let base = stack.mcp.url.clone();
    let (checked_addr, checked_router) = rt
        .server
        .spawn(async move {
            let app = servers::mcp_app_with_ledger(
                &cfg,
                &base,
                Arc::new(SystemClock),
                DynRevocationLedger::new(ledger),
            )?;
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            let (listener, _) = serve::bind(loopback).await?;
            let addr = listener.local_addr()?;
            tokio::spawn(serve::serve(listener, app.clone(), std::future::pending()));
            Ok::<_, BoxError>((addr, app))
        })
        .await??;
    println!(
        "  with the revocation check: {checked_addr}; without (the same bearer layer): {}",
        stack.mcp.addr
    );
    let client = match opts.client {
        ClientThreads::Shared => rt.server.clone(),
        ClientThreads::Separate => tokio::runtime::Handle::current(),
    };
    let tokens = (0..2 * opts.conns)
        .map(|_| stack.access_token(now))
        .collect::<Result<Vec<_>, _>>()?;
    let plain_addr = stack.mcp.addr;
    let (checked, plain) = client
        .spawn(async move {
            // The mirror answers 503 until its first sync (RV-16): wait for it.
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut first = None;
            while first.is_none() {
                match McpSession::open(checked_addr, tokens.first().map(String::as_str)).await {
                    Ok(session) => first = Some(session),
                    Err(mcp::McpError::Status(503)) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => return Err(BoxError::from(e)),
                }
            }
            let (mut checked, mut plain) = (Vec::from_iter(first), Vec::new());
            for (i, pair) in tokens.chunks(2).enumerate() {
                if let [a, b] = pair {
                    if i > 0 {
                        checked.push(McpSession::open(checked_addr, Some(a)).await?);
                    }
                    plain.push(McpSession::open(plain_addr, Some(b)).await?);
                }
            }
            Ok::<_, BoxError>((checked, plain))
        })
        .await??;
    let (on, off) = alternate(&client, checked, plain, opts.window()).await?;
    let (s_on, s_off) = (on.latencies.summary(), off.latencies.summary());

    let local_secs = opts.window().min(Duration::from_secs(10));
    let local_tasks = 16;
    let (mut local_on, mut local_off) = (Vec::new(), Vec::new());
    for _ in 0..local_tasks {
        local_on.push(
            LocalSession::open(checked_router.clone(), Some(&stack.access_token(now)?)).await?,
        );
        local_off.push(
            LocalSession::open(stack.mcp_routers.0.clone(), Some(&stack.access_token(now)?))
                .await?,
        );
    }
    let (l_on, l_off) = alternate(&rt.server, local_on, local_off, local_secs).await?;

    println!("summary:");
    println!(
        "  revocation check on:  {:.0} req/s ({} calls in {:.1} s), latency {s_on}, errors {}",
        on.rate(),
        s_on.count,
        on.elapsed.as_secs_f64(),
        on.errors.total()
    );
    println!(
        "  revocation check off: {:.0} req/s ({} calls in {:.1} s), latency {s_off}, errors {}",
        off.rate(),
        s_off.count,
        off.elapsed.as_secs_f64(),
        off.errors.total()
    );
    println!(
        "  CPU per call on the server threads: {:.0} us with the check, {:.0} us without",
        on.us_per_call(on.server_cpu),
        off.us_per_call(off.server_cpu)
    );
    println!(
        "  in process (no sockets, {local_tasks} sessions per mode, {:.1} s each): {:.0} calls/s with the check, {:.0} without = {:.3}x; {:.1} / {:.1} us server CPU per call",
        local_secs.as_secs_f64(),
        l_on.rate(),
        l_off.rate(),
        l_on.rate() / l_off.rate().max(1e-9),
        l_on.us_per_call(l_on.server_cpu),
        l_off.us_per_call(l_off.server_cpu)
    );
    let mut ok = no_errors("", ("with the check", &on), ("without", &off));
    ok &= no_errors(
        " in process",
        ("with the check", &l_on),
        ("without", &l_off),
    );
    ok &= check(
        "calls completed in both modes",
        !on.latencies.is_empty() && !off.latencies.is_empty(),
    );
    let ratio = on.rate() / off.rate().max(1e-9);
    goal(
        &format!(
            "throughput with / without the revocation check over HTTP = {ratio:.3}x (goal >= 0.97x)"
        ),
        ratio >= 0.97,
    );
    Ok(ok)
}

pub(crate) async fn run(opts: Options, rt: &Runtimes) -> Result<bool, BoxError> {
    if opts.guard == Guard::Compare {
        return compare_guard(opts, rt).await;
    }
    if opts.revocation {
        return compare_revocation(opts, rt).await;
    }
    println!(
        "== MCP server: bearer layer overhead: tools/call `{}`, {} s per mode in slices of at most {} s, {} connections per mode",
        opts.tool.name(),
        opts.secs,
        SLICE.as_secs(),
        opts.conns
    );
    let stack: Stack = start_stack(rt).await?;
    choose_tool(opts.tool, stack.principal.claims().sub.as_str());
    println!(
        "  MCP server (bearer layer): {}/mcp; same server, auth off: {}/mcp",
        stack.mcp.url, stack.mcp_open.url
    );
    println!("  {}", memory_line("at start"));

    // One session per connection; each bearer connection has its own access token, validated
    // once at `initialize` and then served from the token cache.
    // The sessions are opened on the threads their calls will run on (their connection tasks
    // are spawned where they are opened).
    let client = match opts.client {
        ClientThreads::Shared => rt.server.clone(),
        ClientThreads::Separate => tokio::runtime::Handle::current(),
    };
    let now = stack.now();
    let tokens = (0..opts.conns)
        .map(|_| stack.access_token(now))
        .collect::<Result<Vec<_>, _>>()?;
    let (mcp, mcp_open) = (stack.mcp.addr, stack.mcp_open.addr);
    let (protected, open) = client
        .spawn(async move {
            let (mut protected, mut open) = (Vec::new(), Vec::new());
            for token in tokens {
                protected.push(McpSession::open(mcp, Some(&token)).await?);
                open.push(McpSession::open(mcp_open, None).await?);
            }
            Ok::<_, BoxError>((protected, open))
        })
        .await??;
    println!("  {}", memory_line("after opening the sessions"));

    // Peak resident memory while the calls run.
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some((rss, _)) = stats::memory_kib() {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let (on, off) = alternate(&client, protected, open, opts.window()).await?;
    sampler.abort();
    let peak_mib = peak.load(Ordering::Relaxed) as f64 / 1024.0;

    let s_on = on.latencies.summary();
    let s_off = off.latencies.summary();
    println!("summary:");
    println!(
        "  bearer layer on:  {:.0} req/s ({} calls in {:.1} s), latency {s_on}, errors {}",
        on.rate(),
        s_on.count,
        on.elapsed.as_secs_f64(),
        on.errors.total()
    );
    println!(
        "  auth off:         {:.0} req/s ({} calls in {:.1} s), latency {s_off}, errors {}",
        off.rate(),
        s_off.count,
        off.elapsed.as_secs_f64(),
        off.errors.total()
    );
    println!(
        "  CPU per call: server threads {:.0} us with the bearer layer, {:.0} us without ({:+.1}%); load threads {:.0} us / {:.0} us",
        on.us_per_call(on.server_cpu),
        off.us_per_call(off.server_cpu),
        (on.us_per_call(on.server_cpu) / off.us_per_call(off.server_cpu).max(1e-9) - 1.0) * 100.0,
        on.us_per_call(on.client_cpu),
        off.us_per_call(off.client_cpu)
    );
    println!("  peak VmRSS sampled during the calls: {peak_mib:.1} MiB");
    println!("  {}", memory_line("after the run"));
    let loss = 1.0 - on.rate() / off.rate().max(1e-9);

    // The bearer layer's own cost, without the sockets, the HTTP parsing and the client that
    // share the cores in the run above.
    let local_secs = opts.window().min(Duration::from_secs(10));
    let local_tasks = 16;
    println!(
        "in process (no sockets): {local_tasks} sessions per mode through the served routers, {} s per mode:",
        local_secs.as_secs()
    );
    let (l_on, l_off) = in_process(&stack, rt, local_tasks, local_secs).await?;
    let local_loss = 1.0 - l_on.rate() / l_off.rate().max(1e-9);
    println!(
        "  bearer layer on: {:.0} calls/s, {:.1} us CPU per call; auth off: {:.0} calls/s, {:.1} us CPU per call; throughput loss {:.1}%",
        l_on.rate(),
        l_on.us_per_call(l_on.server_cpu),
        l_off.rate(),
        l_off.us_per_call(l_off.server_cpu),
        local_loss * 100.0
    );
    let mut ok = no_errors(
        " in process",
        ("with the bearer layer", &l_on),
        ("without", &l_off),
    );
    ok &= no_errors("", ("with the bearer layer", &on), ("without", &off));
    ok &= check(
        "calls completed in both modes",
        !on.latencies.is_empty() && !off.latencies.is_empty(),
    );
    goal(
        &format!(
            "throughput loss with the bearer layer over HTTP = {:.1}% (goal <= 5%)",
            loss * 100.0
        ),
        loss <= 0.05,
    );
    println!(
        "  (in process, without sockets and client: {:.1}% loss)",
        local_loss * 100.0
    );
    Ok(ok)
}
