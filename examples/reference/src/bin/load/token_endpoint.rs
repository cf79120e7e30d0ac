//! `load token-endpoint`: the jwt-bearer grant in process and over HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use ema_examples::traffic::raw::{Outcome, RawConn};
use ema_examples::traffic::redis::RedisProcess;
use ema_examples::traffic::stack::{Stack, basic_auth, token_body};
use ema_examples::traffic::stats::{Counts, Latencies, Summary};
use ema_examples::{serve, servers};
use ema_grant::TokenRequest;
use ema_jose::{Clock, SystemClock};

use crate::{
    BoxError, ClientThreads, LOAD_THREADS, Options, Runtimes, SERVER_THREADS, check, cores, goal,
    memory_line, start_stack,
};
use ema_examples::traffic::stats::CpuSnapshot;

/// Pre-generated request bodies, each with a fresh ID-JAG, handed out once each.
struct Pool {
    bodies: Vec<Bytes>,
    next: AtomicUsize,
}

impl Pool {
    fn take(&self) -> Option<&Bytes> {
        self.bodies.get(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// Signs `n` ID-JAGs on `threads` blocking threads, each as a form body, or as a whole HTTP
/// request when `head` (the request line and headers but `content-length`) is given.
async fn generate(
    stack: &Arc<Stack>,
    n: usize,
    threads: usize,
    head: Option<Arc<str>>,
) -> Result<Pool, BoxError> {
    let started = Instant::now();
    let per = n.div_ceil(threads);
    let mut jobs = Vec::new();
    for _ in 0..threads {
        let stack = stack.clone();
        let head = head.clone();
        jobs.push(tokio::task::spawn_blocking(
            move || -> Result<Vec<Bytes>, ema_jose::SignError> {
                let now = stack.now();
                (0..per)
                    .map(|_| {
                        let body = token_body(&stack.id_jag(now)?);
                        Ok(Bytes::from(match &head {
                            None => body,
                            Some(head) => {
                                format!("{head}content-length: {}\r\n\r\n{body}", body.len())
                            }
                        }))
                    })
                    .collect()
            },
        ));
    }
    let mut bodies = Vec::with_capacity(per * threads);
    for job in jobs {
        bodies.extend(job.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  generated {} fresh ID-JAGs in {secs:.1} s ({:.0}/s)",
        bodies.len(),
        bodies.len() as f64 / secs.max(1e-9)
    );
    Ok(Pool {
        bodies,
        next: AtomicUsize::new(0),
    })
}

/// What one timed window (or a series of slices) measured.
#[derive(Default)]
struct Window {
    done: usize,
    /// CPU used by the server runtime (the grant in process, or the HTTP server).
    server_cpu: Duration,
    /// CPU used by the load runtime (the HTTP client).
    client_cpu: Duration,
    elapsed: Duration,
    latencies: Latencies,
    errors: Counts,
    exhausted: bool,
}

impl Window {
    /// Adds a slice's figures to this total.
    fn absorb(&mut self, slice: Window) {
        self.done += slice.done;
        self.server_cpu += slice.server_cpu;
        self.client_cpu += slice.client_cpu;
        self.elapsed += slice.elapsed;
        self.latencies.merge(slice.latencies);
        self.errors.merge(&slice.errors);
        self.exhausted |= slice.exhausted;
    }

    fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn server_us_per_request(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / (self.done.max(1) as f64)
    }

    fn client_us_per_request(&self) -> f64 {
        self.client_cpu.as_secs_f64() * 1e6 / (self.done.max(1) as f64)
    }

    fn error_count(&self) -> u64 {
        self.errors.total()
    }

    fn print(&self, label: &str) -> Summary {
        let s = self.latencies.summary();
        println!(
            "  {label}: {} requests in {:.1} s = {:.0} req/s; latency {s}; errors {}{}",
            self.done,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.error_count(),
            if self.errors.0.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.errors)
            }
        );
        println!(
            "  {label}: CPU per request: {:.0} us on the server threads, {:.0} us on the load threads",
            self.server_us_per_request(),
            self.client_us_per_request()
        );
        if self.exhausted {
            println!("  ({label}: the pre-generated ID-JAGs ran out before the window ended)");
        }
        s
    }
}

struct Worker {
    latencies: Latencies,
    errors: Counts,
    exhausted: bool,
    last: Instant,
}

/// One worker's loop: pool items until `deadline` or until the pool runs out, each call timed
/// and its error counted.
struct Run<'p> {
    pool: &'p Pool,
    deadline: Instant,
    worker: Worker,
}

impl<'p> Run<'p> {
    fn new(pool: &'p Pool, deadline: Instant) -> Self {
        Self {
            pool,
            deadline,
            worker: Worker {
                latencies: Latencies::default(),
                errors: Counts::default(),
                exhausted: false,
                last: Instant::now(),
            },
        }
    }

    /// The next item, with the time its call starts; `None` when the window is over.
    fn next(&mut self) -> Option<(&'p Bytes, Instant)> {
        if Instant::now() >= self.deadline {
            return None;
        }
        let item = self.pool.take();
        self.worker.exhausted |= item.is_none();
        item.map(|item| (item, Instant::now()))
    }

    /// Records one call started at `started`.
    fn record(&mut self, started: Instant, result: Result<(), String>) {
        self.worker.latencies.record(started.elapsed());
        if let Err(e) = result {
            self.worker.errors.add(e);
        }
    }

    fn finish(mut self) -> Worker {
        self.worker.last = Instant::now();
        self.worker
    }
}

async fn collect(
    handles: Vec<tokio::task::JoinHandle<Worker>>,
    started: Instant,
    cpu_before: CpuSnapshot,
) -> Result<Window, BoxError> {
    let mut workers = Vec::with_capacity(handles.len());
    for h in handles {
        workers.push(h.await?);
    }
    Ok(tally(workers, started, cpu_before))
}

/// Sums what the workers of one window recorded.
fn tally(workers: Vec<Worker>, started: Instant, cpu_before: CpuSnapshot) -> Window {
    let mut latencies = Latencies::default();
    let mut errors = Counts::default();
    let mut exhausted = false;
    let mut last = started;
    for w in workers {
        latencies.merge(w.latencies);
        errors.merge(&w.errors);
        exhausted |= w.exhausted;
        last = last.max(w.last);
    }
    // The window ends when the last worker stops: just past the deadline, or earlier when the
    // pool ran out.
    let elapsed = last - started;
    let cpu_after = CpuSnapshot::take();
    Window {
        done: latencies.len(),
        server_cpu: cpu_after.since(&cpu_before, SERVER_THREADS),
        client_cpu: cpu_after.since(&cpu_before, LOAD_THREADS),
        elapsed,
        latencies,
        errors,
        exhausted,
    }
}

/// What the in-process windows drive.
#[derive(Debug, Clone, Copy)]
enum InProcess {
    /// `JwtBearerGrant::token`, called directly.
    Grant,
    /// The served app (routing, hardening layers, handler, response) through
    /// `tower::ServiceExt::oneshot`, without sockets: the HTTP cost above the grant that is not
    /// hyper's or the kernel's.
    App,
}

/// `workers` tasks driving `target` in process for `window`.
async fn in_process(
    rt: &Runtimes,
    stack: &Arc<Stack>,
    pool: Arc<Pool>,
    workers: usize,
    window: Duration,
    target: InProcess,
) -> Result<Window, BoxError> {
    let cpu_before = CpuSnapshot::take();
    let started = Instant::now();
    let deadline = started + window;
    let basic: Arc<str> = basic_auth().into();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (stack, pool, basic) = (stack.clone(), pool.clone(), basic.clone());
        handles.push(rt.server.spawn(async move {
            let mut run = Run::new(&pool, deadline);
            while let Some((body, started)) = run.next() {
                let result = match target {
                    InProcess::Grant => call_grant(&stack, &basic, body).await,
                    InProcess::App => call_app(&stack.auth_router, &basic, body).await,
                };
                run.record(started, result);
            }
            run.finish()
        }));
    }
    collect(handles, started, cpu_before).await
}

async fn call_grant(stack: &Stack, basic: &str, body: &Bytes) -> Result<(), String> {
    let request = TokenRequest::form(body).with_authorization(basic);
    let result = stack.grant.token(&request, SystemClock.now()).await;
    result.map(drop).map_err(|e| e.to_string())
}

async fn call_app(router: &axum::Router, basic: &str, body: &Bytes) -> Result<(), String> {
    use tower::ServiceExt as _;
    let request = http::Request::post("/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", basic)
        .body(axum::body::Body::from(body.clone()))
        .map_err(|e| e.to_string())?;
    let Ok(response) = router.clone().oneshot(request).await;
    let status = response.status().as_u16();
    let _ = axum::body::to_bytes(response.into_body(), 1 << 20).await;
    if status == 200 {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// The keep-alive connections posting to the token endpoint for `window`, one task each;
/// the connections are handed back for the next slice.
async fn over_http(
    spawner: &tokio::runtime::Handle,
    conns: Vec<RawConn>,
    pool: Arc<Pool>,
    window: Duration,
) -> Result<(Window, Vec<RawConn>), BoxError> {
    let cpu_before = CpuSnapshot::take();
    let started = Instant::now();
    let deadline = started + window;
    let mut handles = Vec::new();
    for mut conn in conns {
        let pool = pool.clone();
        handles.push(spawner.spawn(async move {
            let mut run = Run::new(&pool, deadline);
            while let Some((request, started)) = run.next() {
                let result = match conn.request(request).await {
                    Ok(Outcome::Status(200)) => Ok(()),
                    Ok(outcome) => Err(format!("HTTP {}", outcome.label())),
                    Err(e) => Err(e.to_string()),
                };
                run.record(started, result);
            }
            (run.finish(), conn)
        }));
    }
    let (mut workers, mut conns) = (Vec::new(), Vec::new());
    for h in handles {
        let (w, conn) = h.await?;
        workers.push(w);
        conns.push(conn);
    }
    Ok((tally(workers, started, cpu_before), conns))
}

/// The length of one slice of the alternating comparison.
const SLICE: Duration = Duration::from_secs(1);

/// The grant in process and over HTTP in alternating slices (in process, HTTP, HTTP, in
/// process, ...) of at most [`SLICE`] until each has run for `total`, so that drift in the
/// machine's speed falls on both alike.
async fn alternate(
    rt: &Runtimes,
    spawner: &tokio::runtime::Handle,
    stack: &Arc<Stack>,
    pools: (Arc<Pool>, Arc<Pool>),
    conns: usize,
    total: Duration,
    workers: usize,
) -> Result<(Window, Window), BoxError> {
    let (bodies, requests) = pools;
    let mut conns: Vec<RawConn> = (0..conns)
        .map(|_| RawConn::new(stack.auth_server.addr))
        .collect();
    // Warm-up, not counted: connections opened, caches and allocator settled.
    let warm = Duration::from_millis(300);
    in_process(rt, stack, bodies.clone(), workers, warm, InProcess::Grant).await?;
    conns = over_http(spawner, conns, requests.clone(), warm).await?.1;
    let (mut inproc, mut http) = (Window::default(), Window::default());
    let mut remaining = total;
    let mut round = 0u32;
    while !remaining.is_zero() {
        let d = remaining.min(SLICE);
        remaining -= d;
        let in_first = round.is_multiple_of(2);
        if in_first {
            inproc
                .absorb(in_process(rt, stack, bodies.clone(), workers, d, InProcess::Grant).await?);
        }
        let (slice, back) = over_http(spawner, conns, requests.clone(), d).await?;
        http.absorb(slice);
        conns = back;
        if !in_first {
            inproc
                .absorb(in_process(rt, stack, bodies.clone(), workers, d, InProcess::Grant).await?);
        }
        round += 1;
    }
    Ok((inproc, http))
}

fn sized(rate: f64, window: Duration, margin: f64) -> usize {
    (rate * window.as_secs_f64() * margin) as usize + 2_000
}

/// Starts `n` authorization-server instances built from the stack's configuration on the Redis
/// at `url` (replay store and revocation ledger shared; the same public URL, so the same
/// ID-JAGs are valid at each), on the server runtime, and returns their addresses.
async fn redis_instances(
    rt: &Runtimes,
    stack: &Stack,
    url: String,
    n: usize,
) -> Result<Vec<SocketAddr>, BoxError> {
    let mut cfg = stack.as_config.clone();
    cfg.redis_url = Some(url);
    cfg.redis_prefix = Some("ema-load".into());
    let public = stack.auth_server.url.clone();
    let addrs = rt
        .server
        .spawn(async move {
            let mut addrs = Vec::new();
            for _ in 0..n {
                let app = servers::authorization_server_app(&cfg, &public, Arc::new(SystemClock))?;
                let (listener, _) = serve::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
                addrs.push(listener.local_addr()?);
                tokio::spawn(serve::serve(listener, app, std::future::pending()));
            }
            Ok::<_, BoxError>(addrs)
        })
        .await??;
    Ok(addrs)
}

/// `--redis compare`: the token endpoint over HTTP at two authorization-server instances
/// sharing a private `redis-server` (replay store and revocation ledger; half the connections
/// at each) against the single in-memory instance of the stack, in alternating slices of one
/// run (issue 13: the Redis round trip costs at most 15 %).
async fn compare_redis(opts: Options, rt: &Runtimes) -> Result<bool, BoxError> {
    let window = opts.window();
    println!(
        "== token endpoint: two instances on Redis against one in memory, over HTTP: {} s per mode in slices of at most {} s, {} connections per mode",
        opts.secs,
        SLICE.as_secs(),
        opts.conns
    );
    let redis = tokio::task::spawn_blocking(RedisProcess::start).await??;
    println!("  redis-server: {} (private, no persistence)", redis.url());
    let stack = Arc::new(start_stack(rt).await?);
    let instances = redis_instances(rt, &stack, redis.url(), 2).await?;
    println!(
        "  in memory: {}; on Redis: {}",
        stack.auth_server.addr,
        instances
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("calibration (1 s, in process):");
    let pool = Arc::new(generate(&stack, 20_000, cores(), None).await?);
    let calibration = in_process(
        rt,
        &stack,
        pool,
        opts.server_threads,
        Duration::from_secs(1),
        InProcess::Grant,
    )
    .await?;
    calibration.print("calibration");
    let head: Arc<str> = format!(
        "POST /token HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-www-form-urlencoded\r\nauthorization: {}\r\n",
        stack.auth_server.addr,
        basic_auth()
    )
    .into();
    let size = sized(calibration.rate(), window + Duration::from_millis(300), 1.0);
    let memory_pool = Arc::new(generate(&stack, size, cores(), Some(head.clone())).await?);
    let redis_pool = Arc::new(generate(&stack, size, cores(), Some(head)).await?);
    let spawner = match opts.client {
        ClientThreads::Shared => rt.server.clone(),
        ClientThreads::Separate => tokio::runtime::Handle::current(),
    };
    let mut memory_conns: Vec<RawConn> = (0..opts.conns)
        .map(|_| RawConn::new(stack.auth_server.addr))
        .collect();
    let mut redis_conns: Vec<RawConn> = instances
        .iter()
        .cycle()
        .take(opts.conns)
        .map(|addr| RawConn::new(*addr))
        .collect();
    // Warm-up, not counted: connections opened, Redis connections established.
    let warm = Duration::from_millis(300).min(window);
    memory_conns = over_http(&spawner, memory_conns, memory_pool.clone(), warm)
        .await?
        .1;
    redis_conns = over_http(&spawner, redis_conns, redis_pool.clone(), warm)
        .await?
        .1;
    let (mut memory, mut shared) = (Window::default(), Window::default());
    let mut redis_cpu = Duration::ZERO;
    let mut remaining = window;
    let mut round = 0u32;
    while !remaining.is_zero() {
        let d = remaining.min(SLICE);
        remaining -= d;
        for first in [true, false] {
            if first == round.is_multiple_of(2) {
                let (w, back) = over_http(&spawner, memory_conns, memory_pool.clone(), d).await?;
                memory.absorb(w);
                memory_conns = back;
            } else {
                let before = redis.cpu();
                let (w, back) = over_http(&spawner, redis_conns, redis_pool.clone(), d).await?;
                if let (Some(before), Some(after)) = (before, redis.cpu()) {
                    redis_cpu += after.saturating_sub(before);
                }
                shared.absorb(w);
                redis_conns = back;
            }
        }
        round += 1;
    }
    let s_memory = memory.print("one instance, in memory");
    let s_shared = shared.print("two instances, Redis");
    println!(
        "  two instances, Redis: redis-server used {:.0} us of CPU per request on the same cores",
        redis_cpu.as_secs_f64() * 1e6 / (shared.done.max(1) as f64)
    );
    drop(redis);
    println!("summary:");
    println!(
        "  one instance in memory:   {:.0} req/s, p50 {}, p99 {}, max {}",
        memory.rate(),
        crate::stats::ms(s_memory.p50),
        crate::stats::ms(s_memory.p99),
        crate::stats::ms(s_memory.max)
    );
    println!(
        "  two instances on Redis:   {:.0} req/s, p50 {}, p99 {}, max {}",
        shared.rate(),
        crate::stats::ms(s_shared.p50),
        crate::stats::ms(s_shared.p99),
        crate::stats::ms(s_shared.max)
    );
    let mut ok = check(
        &format!(
            "errors (every response must be 200): {} in memory, {} on Redis",
            memory.error_count(),
            shared.error_count()
        ),
        memory.error_count() == 0 && shared.error_count() == 0 && calibration.error_count() == 0,
    );
    ok &= check(
        "requests completed in both modes",
        memory.done > 0 && shared.done > 0,
    );
    if memory.exhausted || shared.exhausted {
        println!("  (a pool of pre-signed ID-JAGs ran out: the rates above are too low)");
    }
    let ratio = shared.rate() / memory.rate().max(1e-9);
    goal(
        &format!(
            "Redis / in-memory throughput = {ratio:.3}x (goal >= 0.85x: Redis costs at most 15 %)"
        ),
        ratio >= 0.85,
    );
    Ok(ok)
}

pub(crate) async fn run(opts: Options, rt: &Runtimes) -> Result<bool, BoxError> {
    if opts.redis {
        return compare_redis(opts, rt).await;
    }
    let workers = opts.server_threads;
    let window = opts.window();
    println!(
        "== token endpoint under load: {} s per window, {} in-process workers, {} HTTP connections",
        opts.secs, workers, opts.conns
    );
    let stack = Arc::new(start_stack(rt).await?);
    println!("  authorization server: {}", stack.auth_server.url);

    // Calibration: a short in-process run sizes the pools so they outlast the windows.
    println!("calibration (1 s, in process):");
    let pool = Arc::new(generate(&stack, 40_000, cores(), None).await?);
    let calibration = in_process(
        rt,
        &stack,
        pool,
        workers,
        Duration::from_secs(1),
        InProcess::Grant,
    )
    .await?;
    calibration.print("calibration");

    // The served app without sockets (routing, hardening layers, handler, response): where the
    // HTTP cost above the grant goes that is not hyper's, the kernel's or the client's.
    let app_window = window.min(Duration::from_secs(10));
    println!(
        "through the served app in process, no sockets ({} s):",
        app_window.as_secs()
    );
    let pool = Arc::new(
        generate(
            &stack,
            sized(calibration.rate(), app_window, 1.3),
            cores(),
            None,
        )
        .await?,
    );
    let routed = in_process(rt, &stack, pool, workers, app_window, InProcess::App).await?;
    routed.print("through the app");

    println!(
        "in process and over HTTP, {} s each in alternating slices of at most {} s ({} connections, load generators on {} threads):",
        opts.secs,
        SLICE.as_secs(),
        opts.conns,
        match opts.client {
            ClientThreads::Shared => "the servers'",
            ClientThreads::Separate => "their own",
        }
    );
    let bodies = Arc::new(
        generate(
            &stack,
            sized(calibration.rate(), window, 1.3),
            cores(),
            None,
        )
        .await?,
    );
    // Whole requests, written as they are: the client formats nothing inside the window.
    let head: Arc<str> = format!(
        "POST /token HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-www-form-urlencoded\r\nauthorization: {}\r\n",
        stack.auth_server.addr,
        basic_auth()
    )
    .into();
    let requests = Arc::new(
        generate(
            &stack,
            sized(calibration.rate(), window, 1.1),
            cores(),
            Some(head),
        )
        .await?,
    );
    let spawner = match opts.client {
        ClientThreads::Shared => rt.server.clone(),
        ClientThreads::Separate => tokio::runtime::Handle::current(),
    };
    let (inproc, http) = alternate(
        rt,
        &spawner,
        &stack,
        (bodies, requests),
        opts.conns,
        window,
        workers,
    )
    .await?;
    let inproc_summary = inproc.print("in process");
    let http_summary = http.print("over HTTP");
    println!("  {}", memory_line("after the windows"));

    let ratio = http.rate() / inproc.rate().max(1e-9);
    println!("summary:");
    println!(
        "  in process: {:.0} req/s (p50 {}, p99 {}, max {})",
        inproc.rate(),
        crate::stats::ms(inproc_summary.p50),
        crate::stats::ms(inproc_summary.p99),
        crate::stats::ms(inproc_summary.max)
    );
    println!(
        "  over HTTP:  {:.0} req/s (p50 {}, p99 {}, max {}), {} connections",
        http.rate(),
        crate::stats::ms(http_summary.p50),
        crate::stats::ms(http_summary.p99),
        crate::stats::ms(http_summary.max),
        opts.conns
    );
    println!(
        "  through the app, no sockets: {:.0} req/s = {:.2}x in process",
        routed.rate(),
        routed.rate() / inproc.rate().max(1e-9)
    );
    let mut ok = check(
        &format!(
            "in-process errors: {}",
            inproc.error_count() + routed.error_count()
        ),
        inproc.error_count() == 0 && calibration.error_count() == 0 && routed.error_count() == 0,
    );
    ok &= check(
        &format!(
            "HTTP errors (every response must be 200): {}",
            http.error_count()
        ),
        http.error_count() == 0,
    );
    // Issue 10's goals: the app around the grant and the HTTP stack cost little.
    let app_ratio = routed.rate() / inproc.rate().max(1e-9);
    goal(
        &format!("through the app / in-process throughput = {app_ratio:.2}x (goal >= 0.90x)"),
        app_ratio >= 0.9,
    );
    goal(
        &format!("HTTP / in-process throughput = {ratio:.2}x (goal >= 0.85x)"),
        ratio >= 0.85,
    );
    match opts.client {
        // Client and server tasks share the worker threads: the CPU per HTTP request is both
        // sides', so the server alone costs less than this.
        ClientThreads::Shared => println!(
            "  (CPU per request: {:.0} us in process; {:.0} us over HTTP for server and client together, on the same two threads)",
            inproc.server_us_per_request(),
            http.server_us_per_request() + http.client_us_per_request(),
        ),
        // The load threads share the cores with the server; on separate machines the
        // throughput ratio would approach the ratio of server CPU per request.
        ClientThreads::Separate => println!(
            "  (server CPU per request: {:.0} us in process, {:.0} us over HTTP = {:.2}x; the HTTP client used {:.0} us per request on the same cores)",
            inproc.server_us_per_request(),
            http.server_us_per_request(),
            inproc.server_us_per_request() / http.server_us_per_request().max(1e-9),
            http.client_us_per_request()
        ),
    }
    Ok(ok)
}
