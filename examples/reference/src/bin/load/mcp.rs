//! `load mcp`: `tools/call` through the bearer layer against the same server with
//! authentication off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ema_examples::traffic::mcp::McpSession;
use ema_examples::traffic::stack::Stack;
use ema_examples::traffic::stats::{self, Counts, Latencies};

use crate::{
    BoxError, LOAD_THREADS, Options, Runtimes, SERVER_THREADS, check, goal, memory_line,
    start_stack,
};

/// The tool every call runs: cheap, and it reads the principal like every tool does.
const TOOL: &str = "whoami";
/// The longest slice of one mode before switching to the other.
const SLICE: Duration = Duration::from_secs(5);

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

/// Runs every session's call loop for `slice`, returning the sessions for the next slice.
async fn slice(
    sessions: Vec<McpSession>,
    slice: Duration,
    mode: &mut Mode,
) -> Result<Vec<McpSession>, BoxError> {
    let cpu_before = (stats::cpu_of(SERVER_THREADS), stats::cpu_of(LOAD_THREADS));
    let started = Instant::now();
    let deadline = started + slice;
    let mut handles = Vec::new();
    for mut session in sessions {
        handles.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let mut errors = Counts::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                let result = session.call(TOOL).await;
                latencies.record(t.elapsed());
                if let Err(e) = result {
                    errors.add(e.to_string());
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
    mode.server_cpu += stats::cpu_of(SERVER_THREADS).saturating_sub(cpu_before.0);
    mode.client_cpu += stats::cpu_of(LOAD_THREADS).saturating_sub(cpu_before.1);
    Ok(back)
}

pub(crate) async fn run(opts: Options, rt: &Runtimes) -> Result<bool, BoxError> {
    println!(
        "== MCP server: bearer layer overhead: tools/call `{TOOL}`, {} s per mode in slices of at most {} s, {} connections per mode",
        opts.secs,
        SLICE.as_secs(),
        opts.conns
    );
    let stack: Stack = start_stack(rt).await?;
    println!(
        "  MCP server (bearer layer): {}/mcp; same server, auth off: {}/mcp",
        stack.mcp.url, stack.mcp_open.url
    );
    println!("  {}", memory_line("at start"));

    // One session per connection; each bearer connection has its own access token, validated
    // once at `initialize` and then served from the token cache.
    let now = stack.now();
    let mut protected = Vec::new();
    let mut open = Vec::new();
    for _ in 0..opts.conns {
        let token = stack.access_token(now)?;
        protected.push(McpSession::open(stack.mcp.addr, Some(&token)).await?);
        open.push(McpSession::open(stack.mcp_open.addr, None).await?);
    }
    // Warm-up: one call per session.
    let mut on = Mode::default();
    let mut off = Mode::default();
    protected = slice(protected, Duration::from_millis(300), &mut Mode::default()).await?;
    open = slice(open, Duration::from_millis(300), &mut Mode::default()).await?;
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

    // Alternate the modes (on, off, off, on, ...) so machine noise hits both alike.
    let total = opts.window();
    let mut remaining = total;
    let mut round = 0u32;
    while !remaining.is_zero() {
        let d = remaining.min(SLICE);
        remaining -= d;
        if round.is_multiple_of(2) {
            protected = slice(protected, d, &mut on).await?;
            open = slice(open, d, &mut off).await?;
        } else {
            open = slice(open, d, &mut off).await?;
            protected = slice(protected, d, &mut on).await?;
        }
        round += 1;
    }
    sampler.abort();
    let peak_mib = peak.load(Ordering::Relaxed) as f64 / 1024.0;
    drop((protected, open));

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
    for (label, mode) in [("on", &on), ("off", &off)] {
        if !mode.errors.0.is_empty() {
            println!("  errors ({label}): {}", mode.errors);
        }
    }
    println!("  peak VmRSS sampled during the calls: {peak_mib:.1} MiB");
    println!("  {}", memory_line("after the run"));
    let loss = 1.0 - on.rate() / off.rate().max(1e-9);
    let mut ok = check(
        &format!(
            "errors: {} with the bearer layer, {} without",
            on.errors.total(),
            off.errors.total()
        ),
        on.errors.total() == 0 && off.errors.total() == 0,
    );
    ok &= check(
        "calls completed in both modes",
        !on.latencies.is_empty() && !off.latencies.is_empty(),
    );
    goal(
        &format!(
            "throughput loss with the bearer layer = {:.1}% (goal <= 10%)",
            loss * 100.0
        ),
        loss <= 0.10,
    );
    Ok(ok)
}
