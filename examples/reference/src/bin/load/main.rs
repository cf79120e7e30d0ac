//! Load and robustness runs against the reference servers, all started in this process on
//! loopback ports chosen by the OS (figures in `docs/benchmarks.md`, reproduction in
//! `scripts/load.sh`):
//!
//! - `load token-endpoint [--secs 30] [--conns 64]`: the authorization server's jwt-bearer
//!   grant in process (one worker task per core) and over HTTP (`--conns` keep-alive
//!   connections, `client_secret_basic`), each request a fresh ID-JAG with its own `jti`,
//!   written as prepared bytes by a minimal HTTP/1.1 client. Goal: HTTP at least 0.7x the
//!   in-process throughput. `--client shared` (default) runs the client tasks on the servers'
//!   two worker threads, `--client separate` on two threads of their own.
//! - `load mcp [--secs 30] [--conns 64]`: MCP `tools/call` through the bearer layer (token cache
//!   warm) against the same server with authentication off, in alternating slices of one run.
//!   Goal: at most 10% throughput loss. Reports the process's memory. `--client separate`
//!   (default) or `shared`, as above.
//!   `--revocation compare`: the bearer layer checking every request against a revocation
//!   mirror holding `--entries` revoked subjects and as many denied token ids (none of them the
//!   caller's) against the same bearer layer without the check (issue 13: at least 0.97x).
//! - `load revocation-latency [--events 100]`: one authorization server and two MCP server
//!   instances on a private `redis-server` (started on a loopback port, stopped after); per
//!   event a fresh subject with a live session at both instances is revoked at the
//!   authorization server (a RISC `account-disabled` SET pushed to its SSF receiver, or with
//!   `--via admin` its admin command), and both instances are polled until they refuse the
//!   token. Goal (RV-25): p99 at most 2 s at each instance. `--degraded` (default 20 events):
//!   the MCP servers connect as a Redis user denied `XREAD`, so their stream tail fails and
//!   only the periodic snapshot resync (15 s) delivers; goal p99 at most 60 s.
//! - `load token-endpoint --redis compare`: over HTTP, two authorization-server instances
//!   sharing a private `redis-server` (replay store and ledger) against the single in-memory
//!   instance, in alternating slices. Goal: the Redis instances at least 0.85x.
//! - `load abuse [--conns 1000] [--secs 10]`: bad traffic of every kind at all three servers
//!   over `--conns` connections while valid traffic runs alongside. Every bad request must get
//!   a 4xx (never a 5xx, never a dropped connection for well-formed HTTP), stalled clients must
//!   be answered or cut off, the servers must stay up and the valid traffic must succeed.
//!
//! Each run exits non-zero when a hard condition fails (errors, 5xx, dropped connections,
//! servers down). Speed goals are reported as PASS or MISS, never asserted.
//!
//! Run with `cargo run --release -p ema-examples --bin load -- <subcommand> [options]`.

/// The allocator the reference server binaries run on (see `mcp-server.rs`): the servers this
/// tool starts in its own process are measured as served.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod abuse;
mod mcp;
mod revocation_latency;
mod token_endpoint;

use std::process::ExitCode;
use std::time::Duration;

use ema_examples::traffic::stats;

/// Options shared by the subcommands.
#[derive(Debug, Clone, Copy)]
struct Options {
    /// The measuring window in seconds (decimals allowed, for smoke runs).
    secs: f64,
    conns: usize,
    /// Where the HTTP load generators run: on the servers' worker threads (`shared`) or on a
    /// runtime of their own (`separate`, which tells apart the CPU each side uses, at the price
    /// of four busy threads preempting each other on the cores).
    client: ClientThreads,
    /// Worker threads of the servers' runtime (default: one per core); the in-process
    /// comparisons run one task per server thread.
    server_threads: usize,
    /// Worker threads of the load generators' runtime (default: one per core).
    load_threads: usize,
    /// The MCP server's tool-call guard (`--guard on|off|compare`, default off: the bearer
    /// layer alone against authentication off, as the bearer-overhead goal is defined).
    guard: Guard,
    /// `--revocation compare` (mcp): the bearer layer with a revocation mirror against the same
    /// layer without one.
    revocation: bool,
    /// Revoked subjects (and as many denied token ids) in the mirror of `--revocation compare`.
    entries: usize,
    /// `--redis compare` (token-endpoint): two instances on Redis against one in memory.
    redis: bool,
    /// Revocation events of `revocation-latency`.
    events: usize,
    /// How `revocation-latency` revokes: a pushed SET (`ssf`, default) or the admin command.
    via: Via,
    /// The tool `mcp` calls (`--tool whoami|read_file`, default `whoami`).
    tool: Tool,
    /// `--degraded` (revocation-latency): the MCP servers may not read the change stream, so
    /// only their periodic resync delivers revocations (RV-25's degraded bound, 60 s).
    degraded: bool,
}

/// See [`Options::via`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// A RISC `account-disabled` SET pushed to the AS's SSF receiver.
    Ssf,
    /// `POST /admin/revoke` at the AS.
    Admin,
}

/// See [`Options::guard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// The bearer layer alone, against authentication off.
    Off,
    /// The bearer layer and the tool-call guard, against authentication off.
    On,
    /// The bearer layer and the guard, against the bearer layer alone (issue 11's goal).
    Compare,
}

/// See [`Options::tool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    /// `whoami`: no arguments; in the reference policies an unconditional permit (the guard's
    /// fast path, no Cedar request).
    Whoami,
    /// `read_file` of the caller's project README: decided by Cedar (`files-projects`, a
    /// permit with conditions on the `path` argument) on every call.
    ReadFile,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Self::Whoami => "whoami",
            Self::ReadFile => "read_file",
        }
    }
}

/// See [`Options::client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientThreads {
    Shared,
    Separate,
}

impl Options {
    fn window(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }
}

const USAGE: &str =
    "usage: load <token-endpoint|mcp|revocation-latency|abuse> [--secs N] [--conns N]
                 [--client shared|separate] [--server-threads N] [--load-threads N]
                 [--guard on|off|compare] [--revocation compare] [--entries N]
                 [--redis compare] [--events N] [--via ssf|admin] [--degraded]
                 [--tool whoami|read_file]
  token-endpoint   default --secs 30 --conns 64 --client shared
  mcp              default --secs 30 --conns 64 --client separate
  revocation-latency  default --events 100 --via ssf (needs redis-server on PATH); --via admin:
    the AS's admin revoke command instead of a SET pushed to its SSF receiver; --degraded
    (default --events 20): the MCP servers' Redis user may not run XREAD, so their stream tail
    fails and only the periodic resync (every 15 s) delivers; goal p99 <= 60 s (RV-25)
  abuse            default --secs 10 --conns 1000
  --secs takes decimals (0.2) for smoke runs
  --server-threads, --load-threads: worker threads of each runtime (default: one per core);
  `--client separate --server-threads 1 --load-threads 1` gives server and client a core each
  --guard on: the MCP server runs its tool-call guard (Cedar policies) behind the bearer layer;
  --guard compare (mcp): the guarded server against the same server without the guard
  --revocation compare (mcp): the bearer layer with a revocation mirror of --entries revoked
    subjects (default 10000) against the same layer without it
  --tool read_file (mcp): call read_file (a Cedar policy with argument conditions decides
    each call) instead of whoami (an unconditional permit: the guard's fast path)
  --redis compare (token-endpoint): two instances sharing a private redis-server against the
    single in-memory instance, over HTTP";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn parse(args: &[String]) -> Result<(String, Options), String> {
    let mut it = args.iter();
    let command = it.next().cloned().ok_or_else(|| USAGE.to_owned())?;
    let mut opts = match command.as_str() {
        // The token endpoint's goal compares HTTP with no client at all (the grant in process),
        // so the client should disturb the server as little as possible: shared threads. The
        // MCP goal compares two servers under the same client; separate threads let the CPU of
        // each side be told apart.
        "token-endpoint" => Options {
            secs: 30.0,
            conns: 64,
            client: ClientThreads::Shared,
            server_threads: cores(),
            load_threads: cores(),
            guard: Guard::Off,
            revocation: false,
            entries: 10_000,
            redis: false,
            events: 100,
            via: Via::Ssf,
            degraded: false,
            tool: Tool::Whoami,
        },
        "mcp" | "revocation-latency" => Options {
            secs: 30.0,
            conns: 64,
            client: ClientThreads::Separate,
            server_threads: cores(),
            load_threads: cores(),
            guard: Guard::Off,
            revocation: false,
            entries: 10_000,
            redis: false,
            events: 100,
            via: Via::Ssf,
            degraded: false,
            tool: Tool::Whoami,
        },
        "abuse" => Options {
            secs: 10.0,
            conns: 1000,
            client: ClientThreads::Separate,
            server_threads: cores(),
            load_threads: cores(),
            guard: Guard::Off,
            revocation: false,
            entries: 10_000,
            redis: false,
            events: 100,
            via: Via::Ssf,
            degraded: false,
            tool: Tool::Whoami,
        },
        "-h" | "--help" | "help" => return Err(USAGE.to_owned()),
        other => return Err(format!("unknown subcommand `{other}`\n{USAGE}")),
    };
    let mut events_given = false;
    while let Some(flag) = it.next() {
        if flag == "--degraded" {
            opts.degraded = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("`{flag}` needs a value\n{USAGE}"))?;
        if flag == "--guard" {
            opts.guard = match value.as_str() {
                "on" => Guard::On,
                "off" => Guard::Off,
                "compare" => Guard::Compare,
                other => return Err(format!("`--guard {other}`: on, off or compare\n{USAGE}")),
            };
            continue;
        }
        if flag == "--revocation" || flag == "--redis" {
            if value != "compare" {
                return Err(format!("`{flag} {value}`: only `compare`\n{USAGE}"));
            }
            if flag == "--revocation" {
                opts.revocation = true;
            } else {
                opts.redis = true;
            }
            continue;
        }
        if flag == "--tool" {
            opts.tool = match value.as_str() {
                "whoami" => Tool::Whoami,
                "read_file" => Tool::ReadFile,
                other => return Err(format!("`--tool {other}`: whoami or read_file\n{USAGE}")),
            };
            continue;
        }
        if flag == "--via" {
            opts.via = match value.as_str() {
                "ssf" => Via::Ssf,
                "admin" => Via::Admin,
                other => return Err(format!("`--via {other}`: ssf or admin\n{USAGE}")),
            };
            continue;
        }
        if flag == "--secs" {
            opts.secs = value
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.05 && *s <= 86_400.0)
                .ok_or_else(|| format!("`--secs {value}`: 0.05 to 86400\n{USAGE}"))?;
            continue;
        }
        if flag == "--client" {
            opts.client = match value.as_str() {
                "shared" => ClientThreads::Shared,
                "separate" => ClientThreads::Separate,
                other => return Err(format!("`--client {other}`: shared or separate\n{USAGE}")),
            };
            continue;
        }
        let number: u64 = value
            .parse()
            .map_err(|_| format!("`{flag} {value}`: not a number\n{USAGE}"))?;
        if number == 0 {
            return Err(format!("`{flag}` must be at least 1"));
        }
        match flag.as_str() {
            "--entries" | "--events" => {
                let n = usize::try_from(number)
                    .ok()
                    .filter(|n| *n <= 10_000_000)
                    .ok_or_else(|| format!("`{flag}`: at most 10000000"))?;
                if flag == "--entries" {
                    opts.entries = n;
                } else {
                    opts.events = n;
                    events_given = true;
                }
            }
            "--server-threads" | "--load-threads" => {
                let n = usize::try_from(number)
                    .ok()
                    .filter(|n| *n <= 64)
                    .ok_or_else(|| format!("`{flag}`: at most 64"))?;
                if flag == "--server-threads" {
                    opts.server_threads = n;
                } else {
                    opts.load_threads = n;
                }
            }
            "--conns" => {
                opts.conns = usize::try_from(number).map_err(|_| format!("`{flag}`: too large"))?;
            }
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
    let misplaced = match command.as_str() {
        "mcp" => opts.redis,
        "token-endpoint" => opts.revocation,
        _ => opts.revocation || opts.redis,
    };
    if opts.tool != Tool::Whoami && command != "mcp" {
        return Err(format!("`--tool` is for mcp\n{USAGE}"));
    }
    if opts.degraded && command != "revocation-latency" {
        return Err(format!("`--degraded` is for revocation-latency\n{USAGE}"));
    }
    if opts.degraded && !events_given {
        // Each degraded event waits for a resync (up to 15 s): 20 events by default.
        opts.events = 20;
    }
    if misplaced || (opts.revocation && opts.guard == Guard::Compare) {
        return Err(format!(
            "`--revocation compare` is for mcp (without `--guard compare`), `--redis compare` for token-endpoint\n{USAGE}"
        ));
    }
    Ok((command, opts))
}

/// Prints a goal line and returns whether it passed.
fn goal(what: &str, pass: bool) -> bool {
    println!("  [{}] {what}", if pass { "PASS" } else { "MISS" });
    pass
}

/// Prints a hard condition line and returns whether it held.
fn check(what: &str, ok: bool) -> bool {
    println!("  [{}] {what}", if ok { "OK" } else { "FAIL" });
    ok
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn machine_line() -> String {
    format!(
        "machine: {} cores, load average {} (1/5/15 min)",
        cores(),
        stats::load_average().unwrap_or_else(|| "unknown".into())
    )
}

fn memory_line(label: &str) -> String {
    match stats::memory_kib() {
        Some((rss, hwm)) => format!(
            "memory {label}: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        ),
        None => format!("memory {label}: unavailable (no /proc/self/status)"),
    }
}

/// The two runtimes: servers on one, load generators on the other, so the CPU each side uses
/// can be told apart (threads named `ema-server` and `ema-load`).
#[derive(Debug, Clone)]
struct Runtimes {
    server: tokio::runtime::Handle,
    /// Whether the MCP server runs its tool-call guard (`--guard on` or `compare`).
    guard: bool,
}

/// Thread name prefix of the server runtime.
const SERVER_THREADS: &str = "ema-server";
/// Thread name prefix of the load runtime.
const LOAD_THREADS: &str = "ema-load";

/// Starts the reference servers on the server runtime.
async fn start_stack(rt: &Runtimes) -> Result<ema_examples::traffic::stack::Stack, BoxError> {
    Ok(rt
        .server
        .spawn(ema_examples::traffic::stack::Stack::start_with(rt.guard))
        .await??)
}

fn runtime(name: &'static str, threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    ema_examples::serve::init_logging("error");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, opts) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let (server, load) = match (
        runtime(SERVER_THREADS, opts.server_threads),
        runtime(LOAD_THREADS, opts.load_threads),
    ) {
        (Ok(server), Ok(load)) => (server, load),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("load: cannot start the runtimes: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = Runtimes {
        server: server.handle().clone(),
        guard: opts.guard != Guard::Off,
    };
    println!("{}", machine_line());
    let result = load.block_on(async {
        match command.as_str() {
            "token-endpoint" => token_endpoint::run(opts, &rt).await,
            "mcp" => mcp::run(opts, &rt).await,
            "revocation-latency" => revocation_latency::run(opts, &rt).await,
            _ => abuse::run(opts, &rt).await,
        }
    });
    println!("{}", machine_line());
    // Servers and leftover connections go down with the runtimes.
    load.shutdown_background();
    server.shutdown_background();
    match result {
        Ok(true) => {
            println!("result: every hard condition held");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("result: a hard condition failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("load {command}: {e}");
            ExitCode::FAILURE
        }
    }
}
