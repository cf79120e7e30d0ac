//! `load abuse`: bad traffic at all three servers while valid traffic runs alongside.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use ema_examples::traffic::bad::{self, BadRequest, Material, Target};
use ema_examples::traffic::client::Connection;
use ema_examples::traffic::mcp::McpSession;
use ema_examples::traffic::raw::{Outcome, RawConn};
use ema_examples::traffic::stack::{Stack, basic_auth, idp_basic_auth, token_body};
use ema_examples::traffic::stats::{self, Counts, Latencies};
use ema_grant::form::encode_component;
use ema_grant::{ID_JAG_TOKEN_TYPE, ID_TOKEN_TYPE, TOKEN_EXCHANGE};

use crate::{BoxError, Options, Runtimes, check, memory_line, start_stack};

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Outcomes by bad-request name, and the violations seen.
#[derive(Default)]
struct BadTally {
    by_kind: BTreeMap<String, Counts>,
    violations: Counts,
    statuses: Counts,
}

impl BadTally {
    fn record(&mut self, req: &BadRequest, outcome: Outcome) {
        self.by_kind
            .entry(req.name.clone())
            .or_default()
            .add(outcome.label());
        if let Outcome::Status(s) = outcome {
            self.statuses.add(s.to_string());
        } else {
            self.statuses.add(outcome.label());
        }
        if let Some(why) = req.judge(outcome) {
            self.violations
                .add(format!("{}: {why} ({})", req.name, outcome.label()));
        }
    }

    fn merge(&mut self, other: BadTally) {
        for (k, v) in other.by_kind {
            self.by_kind.entry(k).or_default().merge(&v);
        }
        self.violations.merge(&other.violations);
        self.statuses.merge(&other.statuses);
    }

    fn total(&self) -> u64 {
        self.statuses.total()
    }
}

/// Valid traffic of one kind.
#[derive(Default)]
struct Valid {
    latencies: Latencies,
    failures: Counts,
}

impl Valid {
    fn ok(&mut self, t: Instant) {
        self.latencies.record(t.elapsed());
    }

    fn fail(&mut self, what: String) {
        self.failures.add(what);
    }
}

/// One pass over the catalog, every request on its own connection, all at once.
async fn sweep(catalog: &[BadRequest], m: &Material) -> BadTally {
    let mut handles = Vec::new();
    for req in catalog.iter().cloned() {
        let addr = m.addr(req.target);
        handles.push(tokio::spawn(async move {
            let mut conn = RawConn::new(addr);
            let outcome = match conn.exchange(&req.steps, req.limit()).await {
                Ok(ex) => Some(ex.outcome),
                Err(_) => None,
            };
            (req, outcome)
        }));
    }
    let mut tally = BadTally::default();
    for h in handles {
        match h.await {
            Ok((req, Some(outcome))) => tally.record(&req, outcome),
            Ok((req, None)) => tally
                .violations
                .add(format!("{}: connect failed", req.name)),
            Err(e) => tally.violations.add(format!("sweep task failed: {e}")),
        }
    }
    tally
}

/// One abusive connection: cycles through `kinds` until `deadline`.
async fn abuser(
    kinds: Vec<BadRequest>,
    m: Arc<Material>,
    start: usize,
    deadline: Instant,
) -> BadTally {
    let mut tally = BadTally::default();
    let Some(first) = kinds.first() else {
        return tally;
    };
    let mut conn = RawConn::new(m.addr(first.target));
    let mut i = start;
    while Instant::now() < deadline {
        let Some(req) = kinds.get(i % kinds.len()) else {
            break;
        };
        i += 1;
        match conn.exchange(&req.steps, req.limit()).await {
            Ok(ex) => tally.record(req, ex.outcome),
            Err(e) => {
                tally.violations.add(format!(
                    "{}: connect failed ({})",
                    req.target.name(),
                    e.kind()
                ));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tally
}

async fn valid_token_endpoint(stack: Arc<Stack>, stop: Arc<AtomicBool>) -> Valid {
    let mut v = Valid::default();
    let mut conn = Connection::new(stack.auth_server.addr);
    let basic = basic_auth();
    while !stop.load(Ordering::Relaxed) {
        let jag = match stack.id_jag(stack.now()) {
            Ok(j) => j,
            Err(e) => {
                v.fail(format!("sign: {e}"));
                continue;
            }
        };
        let t = Instant::now();
        match conn
            .send(
                "POST",
                "/token",
                &[FORM, ("authorization", &basic)],
                Bytes::from(token_body(&jag)),
            )
            .await
        {
            Ok(r) if r.status == 200 => v.ok(t),
            Ok(r) => v.fail(format!("HTTP {}", r.status)),
            Err(e) => v.fail(e.to_string()),
        }
    }
    v
}

async fn valid_mcp(mut session: McpSession, stop: Arc<AtomicBool>) -> Valid {
    let mut v = Valid::default();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        match session.call("whoami").await {
            Ok(()) => v.ok(t),
            Err(e) => v.fail(e.to_string()),
        }
    }
    v
}

/// The whole flow's server side: token exchange at the IdP, then the ID-JAG redeemed at the
/// authorization server.
async fn valid_flow(stack: Arc<Stack>, id_token: String, stop: Arc<AtomicBool>) -> (Valid, Valid) {
    let (mut exchange, mut redeem) = (Valid::default(), Valid::default());
    let mut idp = Connection::new(stack.idp.addr);
    let mut auth_server = Connection::new(stack.auth_server.addr);
    let (idp_basic, as_basic) = (idp_basic_auth(), basic_auth());
    let body = format!(
        "grant_type={}&requested_token_type={}&audience={}&resource={}&scope=tasks.read&subject_token={id_token}&subject_token_type={}",
        encode_component(TOKEN_EXCHANGE),
        encode_component(ID_JAG_TOKEN_TYPE),
        encode_component(&stack.auth_server.url),
        encode_component(&stack.resource),
        encode_component(ID_TOKEN_TYPE),
    );
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let reply = idp
            .send(
                "POST",
                "/token",
                &[FORM, ("authorization", &idp_basic)],
                Bytes::from(body.clone()),
            )
            .await;
        let jag = match reply {
            Ok(r) if r.status == 200 => {
                exchange.ok(t);
                serde_json::from_slice::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("access_token")?.as_str().map(str::to_owned))
            }
            Ok(r) => {
                exchange.fail(format!("HTTP {}", r.status));
                continue;
            }
            Err(e) => {
                exchange.fail(e.to_string());
                continue;
            }
        };
        let Some(jag) = jag else {
            exchange.fail("no ID-JAG in the response".into());
            continue;
        };
        let t = Instant::now();
        match auth_server
            .send(
                "POST",
                "/token",
                &[FORM, ("authorization", &as_basic)],
                Bytes::from(token_body(&jag)),
            )
            .await
        {
            Ok(r) if r.status == 200 => redeem.ok(t),
            Ok(r) => redeem.fail(format!("HTTP {}", r.status)),
            Err(e) => redeem.fail(e.to_string()),
        }
    }
    (exchange, redeem)
}

/// After the storm: every server answers a fresh client.
async fn still_up(stack: &Stack) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for (name, addr, path) in [
        (
            "IdP metadata",
            stack.idp.addr,
            "/.well-known/openid-configuration",
        ),
        (
            "authorization server metadata",
            stack.auth_server.addr,
            "/.well-known/oauth-authorization-server",
        ),
        (
            "MCP resource metadata",
            stack.mcp.addr,
            "/.well-known/oauth-protected-resource/mcp",
        ),
    ] {
        let ok = matches!(Connection::new(addr).send("GET", path, &[], Bytes::new()).await, Ok(r) if r.status == 200);
        out.push((format!("{name} -> 200"), ok));
    }
    let call = async {
        let token = stack.access_token(stack.now())?;
        let mut s = McpSession::open(stack.mcp.addr, Some(&token)).await?;
        s.call("whoami").await?;
        Ok::<(), BoxError>(())
    };
    out.push(("new MCP session + tools/call".into(), call.await.is_ok()));
    out
}

fn print_valid(label: &str, v: &Valid) -> bool {
    let s = v.latencies.summary();
    println!(
        "  {label}: {} ok, {} failed; latency {s}{}",
        s.count,
        v.failures.total(),
        if v.failures.0.is_empty() {
            String::new()
        } else {
            format!(" ({})", v.failures)
        }
    );
    v.failures.total() == 0 && s.count > 0
}

pub(crate) async fn run(opts: Options, rt: &Runtimes) -> Result<bool, BoxError> {
    println!(
        "== bad traffic: {} abusive connections for {} s at the IdP, the authorization server and the MCP server, valid traffic alongside",
        opts.conns, opts.secs
    );
    let stack = Arc::new(start_stack(rt).await?);
    println!(
        "  IdP {}, authorization server {}, MCP server {}/mcp",
        stack.idp.url, stack.auth_server.url, stack.mcp.url
    );
    let m = Arc::new(bad::material(&stack).await?);
    let catalog = bad::catalog(&m);
    let id_token = stack.sso().sign_in("ana", "ana-password").await?;
    println!(
        "  {} kinds of bad request; {}",
        catalog.len(),
        memory_line("at start")
    );

    println!("sweep: every kind once, each on its own connection:");
    let started = Instant::now();
    let sweep_tally = sweep(&catalog, &m).await;
    for req in &catalog {
        let outcomes = sweep_tally
            .by_kind
            .get(&req.name)
            .map(ToString::to_string)
            .unwrap_or_default();
        println!(
            "  {:<40} {:<10} {outcomes}",
            req.name,
            format!("{:?}", req.expect)
        );
    }
    println!("  ({:.1} s)", started.elapsed().as_secs_f64());

    // Valid traffic first, so it is running when the storm starts.
    let stop = Arc::new(AtomicBool::new(false));
    let mut token_workers = Vec::new();
    for _ in 0..2 {
        token_workers.push(tokio::spawn(valid_token_endpoint(
            stack.clone(),
            stop.clone(),
        )));
    }
    let mut mcp_workers = Vec::new();
    for _ in 0..2 {
        let token = stack.access_token(stack.now())?;
        let session = McpSession::open(stack.mcp.addr, Some(&token)).await?;
        mcp_workers.push(tokio::spawn(valid_mcp(session, stop.clone())));
    }
    let flow = tokio::spawn(valid_flow(stack.clone(), id_token, stop.clone()));

    println!(
        "storm: {} connections for {} s (every 10th connection a slow client)",
        opts.conns, opts.secs
    );
    // Peak open file descriptors (both ends of every loopback connection live in this
    // process) and peak resident memory while the storm runs.
    let peaks = Arc::new((AtomicUsize::new(0), AtomicU64::new(0)));
    let sampler = {
        let peaks = peaks.clone();
        tokio::spawn(async move {
            loop {
                if let Some(n) = stats::open_fds() {
                    peaks.0.fetch_max(n, Ordering::Relaxed);
                }
                if let Some((rss, _)) = stats::memory_kib() {
                    peaks.1.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let started = Instant::now();
    let deadline = started + opts.window();
    let targets = [Target::AuthServer, Target::Idp, Target::Mcp];
    let mut abusers = Vec::new();
    for i in 0..opts.conns {
        let target = targets
            .get(i % targets.len())
            .copied()
            .unwrap_or(Target::AuthServer);
        let slow = i % 10 == 9;
        let kinds: Vec<BadRequest> = catalog
            .iter()
            .filter(|r| r.target == target && r.is_slow() == slow)
            .cloned()
            .collect();
        abusers.push(tokio::spawn(abuser(
            kinds,
            m.clone(),
            i / targets.len(),
            deadline,
        )));
    }
    let mut storm = BadTally::default();
    let mut task_failures = 0u64;
    for h in abusers {
        match h.await {
            Ok(t) => storm.merge(t),
            Err(_) => task_failures += 1,
        }
    }
    let storm_secs = started.elapsed().as_secs_f64();
    sampler.abort();
    println!(
        "  peak open file descriptors {} (client and server ends), peak VmRSS {:.1} MiB",
        peaks.0.load(Ordering::Relaxed),
        peaks.1.load(Ordering::Relaxed) as f64 / 1024.0
    );
    stop.store(true, Ordering::Relaxed);
    let mut token_valid = Valid::default();
    for h in token_workers {
        let v = h.await?;
        token_valid.latencies.merge(v.latencies);
        token_valid.failures.merge(&v.failures);
    }
    let mut mcp_valid = Valid::default();
    for h in mcp_workers {
        let v = h.await?;
        mcp_valid.latencies.merge(v.latencies);
        mcp_valid.failures.merge(&v.failures);
    }
    let (exchange_valid, redeem_valid) = flow.await?;
    println!("  {}", memory_line("after the storm"));

    println!("storm outcomes by kind:");
    for (kind, counts) in &storm.by_kind {
        println!("  {kind:<40} {counts}");
    }
    let up = still_up(&stack).await;

    println!("summary:");
    println!(
        "  bad requests: {} in the sweep, {} in the storm ({:.1} s, {:.0}/s); storm answers by status: {}",
        sweep_tally.total(),
        storm.total(),
        storm_secs,
        storm.total() as f64 / storm_secs.max(1e-9),
        storm.statuses
    );
    println!("  valid traffic during the storm ({storm_secs:.1} s):");
    let mut valid_ok = print_valid("token endpoint, fresh ID-JAG", &token_valid);
    valid_ok &= print_valid("MCP tools/call, warm token", &mcp_valid);
    valid_ok &= print_valid("IdP token exchange (ID token -> ID-JAG)", &exchange_valid);
    valid_ok &= print_valid(
        "authorization server redeeming the IdP's ID-JAG",
        &redeem_valid,
    );
    let mut violations = sweep_tally.violations.clone();
    violations.merge(&storm.violations);
    let mut ok = check(
        &format!(
            "every bad request answered by the rule (4xx; close only for non-HTTP or stalled clients): {} violation(s)",
            violations.total()
        ),
        violations.total() == 0,
    );
    for (what, n) in &violations.0 {
        println!("      {n} x {what}");
    }
    ok &= check(
        "valid traffic kept succeeding (no failure, every kind served)",
        valid_ok,
    );
    ok &= check(
        &format!("abuse tasks that failed: {task_failures}"),
        task_failures == 0,
    );
    for (what, up) in up {
        ok &= check(&format!("after the storm: {what}"), up);
    }
    Ok(ok)
}
