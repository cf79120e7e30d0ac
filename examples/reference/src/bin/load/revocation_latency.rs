//! `load revocation-latency`: how long a revocation accepted at the authorization server takes
//! to be enforced at two MCP server instances sharing one Redis (RV-25: p99 at most 2 s).
//!
//! A private `redis-server` on a loopback port; one authorization server with `redis_url` (its
//! ledger writes every change to the stream) and two MCP server instances from one
//! configuration on the same Redis, each tailing the stream into its own mirror. Per event: a
//! fresh IdP subject gets an access token at the authorization server (just-in-time
//! provisioning gives it a fresh local subject), opens a session at each instance and makes one
//! successful call there (the token is live and cached at both); then the IdP subject is
//! disabled by a RISC `account-disabled` SET pushed to the authorization server's SSF receiver
//! (RFC 8935; `--via admin`: the local subject revoked by `POST /admin/revoke`, the same
//! internal command), and both instances are polled with `tools/call` without pause until each
//! answers 401. The latency of an instance is the time from sending the revocation to the
//! first refusal: an upper bound of "accepted at the AS → refused at the instance", since the
//! AS commits the change before it answers (202 or 200).
//!
//! `--degraded` (RV-25: at most 60 s when fan-out breaks): the MCP instances connect as a
//! Redis user whose ACL denies `XREAD` (everything else allowed), so every stream read of
//! their tails fails (`NOPERM`) and only the snapshot resync of [`tail_mirror`] (every
//! [`DEFAULT_RESYNC`]) brings revocations in; the run reads `INFO commandstats` at the end and
//! fails unless no `XREAD` succeeded and some were refused.
//!
//! [`tail_mirror`]: ema_grant::redis_ledger::tail_mirror
//! [`DEFAULT_RESYNC`]: ema_grant::redis_ledger::DEFAULT_RESYNC

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use base64::Engine as _;
use ema_examples::config::{SsfTransmitterConfig, defaults};
use ema_examples::traffic::client::Connection;
use ema_examples::traffic::mcp::{McpError, McpSession};
use ema_examples::traffic::redis::RedisProcess;
use ema_examples::traffic::stack::{LOAD_IDP, Stack, basic_auth, token_body};
use ema_examples::traffic::stats::{Latencies, Summary, ms};
use ema_examples::{serve, servers};
use ema_jose::{SystemClock, random_id};

use crate::{BoxError, Options, Runtimes, Via, check, goal, start_stack};

/// The tool the pollers call.
const TOOL: &str = "whoami";
/// How long one instance may take to refuse before the run counts it as a failure.
const GIVE_UP: Duration = Duration::from_secs(30);
/// The goal of RV-25.
const GOAL: Duration = Duration::from_secs(2);
/// `--degraded`: how long an instance may take to refuse, and RV-25's degraded bound.
const DEGRADED_GIVE_UP: Duration = Duration::from_secs(90);
const DEGRADED_GOAL: Duration = Duration::from_secs(60);
/// `--degraded`: the Redis user of the MCP instances, denied `XREAD`.
const MIRROR_USER: &str = "ema-mirror";
const MIRROR_PASSWORD: &str = "load-mirror-secret";
/// The `Authorization` value the load IdP presents to the SSF receiver as a transmitter.
const SSF_AUTHORIZATION: &str = "Bearer load-ssf-secret";
/// The RISC event the load IdP pushes.
const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";

/// The servers of the run.
struct Servers {
    auth_server: SocketAddr,
    issuer: String,
    instances: [SocketAddr; 2],
}

/// Starts the authorization server on `redis_url` and the two MCP server instances on
/// `mirror_url` (the same server; under `--degraded`, as a user denied `XREAD`), on the server
/// runtime.
async fn start(
    rt: &Runtimes,
    stack: &Stack,
    redis_url: String,
    mirror_url: String,
) -> Result<Servers, BoxError> {
    let mut as_cfg = stack.as_config.clone();
    as_cfg.redis_url = Some(redis_url.clone());
    as_cfg.redis_prefix = Some("ema-load".into());
    // The load IdP as an SSF transmitter: its SETs may affect its own subjects (RV-7).
    as_cfg
        .ssf
        .get_or_insert_with(Default::default)
        .transmitters
        .push(SsfTransmitterConfig {
            issuer: LOAD_IDP.into(),
            jwks_url: None,
            jwks_file: None,
            jwks: Some(stack.load_idp_jwks()),
            authorization: SSF_AUTHORIZATION.into(),
            audience: None,
            subject_issuers: None,
            tenant: None,
            algorithms: None,
            emails: None,
            gtr_jwt: false,
            stream_id: None,
            receiver_authorization: None,
            verify_every_secs: None,
            configuration_url: None,
            poll_url: None,
        });
    let mcp_public = stack.mcp.url.clone();
    let guard = rt.guard;
    rt.server
        .spawn(async move {
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            let (as_listener, issuer) = serve::bind(loopback).await?;
            as_cfg.server.public_url = Some(issuer.clone());
            let clock = Arc::new(SystemClock);
            let as_app = servers::authorization_server_app(&as_cfg, &issuer, clock.clone())?;
            let auth_server = as_listener.local_addr()?;
            tokio::spawn(serve::serve(as_listener, as_app, std::future::pending()));
            // Two instances of one configuration: the same resource, the same Redis and prefix.
            let mut mcp_cfg = defaults::mcp_server(&issuer, &mcp_public);
            mcp_cfg.authz.enabled = guard;
            mcp_cfg.redis_url = Some(mirror_url);
            mcp_cfg.redis_prefix = as_cfg.redis_prefix.clone();
            let mut instances = [auth_server; 2];
            for slot in &mut instances {
                let app = servers::mcp_app(&mcp_cfg, &mcp_public, clock.clone())?;
                let (listener, _) = serve::bind(loopback).await?;
                *slot = listener.local_addr()?;
                tokio::spawn(serve::serve(listener, app, std::future::pending()));
            }
            Ok::<_, BoxError>(Servers {
                auth_server,
                issuer,
                instances,
            })
        })
        .await?
}

/// A fresh subject: its IdP `sub`, its local `sub` and an access token.
struct Fresh {
    idp_subject: String,
    local_subject: String,
    token: String,
}

/// A fresh access token for a new IdP subject.
async fn fresh_token(
    stack: &Stack,
    servers: &Servers,
    conn: &mut Connection,
) -> Result<Fresh, BoxError> {
    let idp_subject = format!("rv-{}", random_id()?);
    let jag = stack.id_jag_for(&idp_subject, &servers.issuer, stack.now())?;
    let basic = basic_auth();
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
        .await?;
    if reply.status != 200 {
        return Err(format!(
            "token request: HTTP {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        )
        .into());
    }
    let body: serde_json::Value = serde_json::from_slice(&reply.body)?;
    let token = body
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .ok_or("token response without access_token")?
        .to_owned();
    let payload = token.split('.').nth(1).ok_or("access token is not a JWS")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    let local_subject = claims
        .get("sub")
        .and_then(serde_json::Value::as_str)
        .ok_or("access token without sub")?
        .to_owned();
    Ok(Fresh {
        idp_subject,
        local_subject,
        token,
    })
}

/// A revocation request to the authorization server.
struct Revocation {
    path: &'static str,
    /// `content-type` and `authorization`.
    headers: [(&'static str, String); 2],
    body: String,
    /// The status of success.
    accepted: u16,
}

/// The revocation request for `fresh`.
fn revocation(
    via: Via,
    stack: &Stack,
    servers: &Servers,
    fresh: &Fresh,
) -> Result<Revocation, BoxError> {
    Ok(match via {
        Via::Admin => Revocation {
            path: ema_server::ADMIN_REVOKE_PATH,
            headers: [
                ("content-type", "application/json".to_owned()),
                (
                    "authorization",
                    format!("Bearer {}", defaults::DEV_AS_ADMIN_SECRET),
                ),
            ],
            body: serde_json::json!({"subject": fresh.local_subject, "action": "revoke"})
                .to_string(),
            accepted: 200,
        },
        Via::Ssf => {
            let set = stack.sign_set(&serde_json::json!({
                "iss": LOAD_IDP,
                "jti": random_id()?,
                "iat": stack.now().as_secs(),
                "aud": format!("{}{}", servers.issuer, ema_grant::ssf::DEFAULT_PUSH_PATH),
                "sub_id": {"format": "iss_sub", "iss": LOAD_IDP, "sub": fresh.idp_subject},
                "events": {ACCOUNT_DISABLED: {"initiating_entity": "admin"}},
            }))?;
            Revocation {
                path: ema_grant::ssf::DEFAULT_PUSH_PATH,
                headers: [
                    (
                        "content-type",
                        ema_grant::ssf::SECEVENT_CONTENT_TYPE.to_owned(),
                    ),
                    ("authorization", SSF_AUTHORIZATION.to_owned()),
                ],
                body: set,
                accepted: 202,
            }
        }
    })
}

/// A session at `addr` with `token` that has made one successful call. While the instance's
/// mirror has not had its first snapshot it answers 503 (RV-16): retried for up to 15 s.
async fn live_session(addr: SocketAddr, token: &str) -> Result<McpSession, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match McpSession::open(addr, Some(token)).await {
            Ok(mut session) => {
                session.call(TOOL).await?;
                return Ok(session);
            }
            Err(McpError::Status(503)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Calls the tool without pause until the instance refuses the token (401); returns the time
/// of the refusal and how many calls still succeeded.
///
/// A call in flight when the instance learns of the revocation has its response stream ended
/// without a result (RV-18); the loop goes on, and the next call's 401 is the time recorded
/// (the later, conservative reading).
async fn until_refused(
    mut session: McpSession,
    deadline: Instant,
) -> Result<(Instant, u64), BoxError> {
    let mut served = 0u64;
    loop {
        match session.call(TOOL).await {
            Ok(()) => served += 1,
            Err(McpError::Status(401)) => return Ok((Instant::now(), served)),
            Err(McpError::Protocol(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Err("not refused before the run's deadline".into());
        }
    }
}

/// The `WWW-Authenticate` challenge an instance answers `initialize` with `token` with.
async fn challenge(addr: SocketAddr, token: &str) -> Result<(u16, String), BoxError> {
    let auth = format!("Bearer {token}");
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"ema-load","version":"1"}}}"#;
    let reply = Connection::new(addr)
        .send(
            "POST",
            "/mcp",
            &[
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("authorization", &auth),
            ],
            Bytes::from_static(init.as_bytes()),
        )
        .await?;
    let value = reply
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((reply.status, value))
}

/// One command on the load's own connection to `url`.
async fn redis_command<T: redis::FromRedisValue>(
    url: &str,
    cmd: &redis::Cmd,
) -> Result<T, BoxError> {
    let mut conn = ema_grant::redis_store::connect_lazy(url, Duration::from_secs(2))?;
    Ok(cmd.query_async(&mut conn).await?)
}

/// `--degraded`: creates the MCP instances' Redis user, allowed every command but `XREAD`, and
/// returns their URL.
async fn deny_stream_reads(redis_url: &str, addr: SocketAddr) -> Result<String, BoxError> {
    let mut acl = redis::cmd("ACL");
    acl.arg("SETUSER")
        .arg(MIRROR_USER)
        .arg("reset")
        .arg("on")
        .arg(format!(">{MIRROR_PASSWORD}"))
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-xread");
    let _: String = redis_command(redis_url, &acl).await?;
    Ok(format!("redis://{MIRROR_USER}:{MIRROR_PASSWORD}@{addr}"))
}

/// `XREAD` calls that succeeded and that were refused so far, from `INFO commandstats`.
async fn xread_calls(redis_url: &str) -> Result<(u64, u64), BoxError> {
    let mut info = redis::cmd("INFO");
    info.arg("commandstats");
    let text: String = redis_command(redis_url, &info).await?;
    let Some(line) = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("cmdstat_xread:"))
    else {
        return Ok((0, 0));
    };
    let field = |name: &str| -> u64 {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("calls"), field("rejected_calls")))
}

/// p50, p90, p99 and max of `l`.
fn line(l: &Latencies) -> (Summary, Duration) {
    (l.summary(), l.percentile(0.90))
}

pub(crate) async fn run(opts: Options, rt: &Runtimes) -> Result<bool, BoxError> {
    println!(
        "== revocation latency{}: {} events, one authorization server and two MCP server instances on one redis-server",
        if opts.degraded {
            " (degraded: no stream tail, resync only)"
        } else {
            ""
        },
        opts.events
    );
    let (give_up, bound) = if opts.degraded {
        (DEGRADED_GIVE_UP, DEGRADED_GOAL)
    } else {
        (GIVE_UP, GOAL)
    };
    let redis = tokio::task::spawn_blocking(RedisProcess::start).await??;
    println!("  redis-server: {} (private, no persistence)", redis.url());
    let mirror_url = if opts.degraded {
        let url = deny_stream_reads(&redis.url(), redis.addr()).await?;
        println!(
            "  MCP instances connect as Redis user {MIRROR_USER}: every command but XREAD (stream tail broken; snapshot resync every {} s)",
            ema_grant::redis_ledger::DEFAULT_RESYNC.as_secs()
        );
        url
    } else {
        redis.url()
    };
    let stack = start_stack(rt).await?;
    let servers = start(rt, &stack, redis.url(), mirror_url).await?;
    println!(
        "  authorization server {} ({}); MCP server instances {} and {}",
        servers.issuer,
        match opts.via {
            Via::Ssf => "RISC account-disabled SETs pushed to its SSF receiver",
            Via::Admin => "its admin revoke command",
        },
        servers.instances[0],
        servers.instances[1]
    );
    let mut as_conn = Connection::new(servers.auth_server);
    let mut per_instance = [Latencies::default(), Latencies::default()];
    let mut slowest = Latencies::default();
    let mut acks = Latencies::default();
    let mut served_after = 0u64;
    let started = Instant::now();
    for event in 0..opts.events {
        let fresh = fresh_token(&stack, &servers, &mut as_conn).await?;
        let token = fresh.token.clone();
        let (a, b) = tokio::try_join!(
            live_session(servers.instances[0], &token),
            live_session(servers.instances[1], &token)
        )?;
        // Signed before the clock starts.
        let Revocation {
            path,
            headers: [h1, h2],
            body,
            accepted,
        } = revocation(opts.via, &stack, &servers, &fresh)?;
        let sent = Instant::now();
        let reply = as_conn
            .send(
                "POST",
                path,
                &[(h1.0, h1.1.as_str()), (h2.0, h2.1.as_str())],
                Bytes::from(body),
            )
            .await?;
        let acked = Instant::now();
        if reply.status != accepted {
            return Err(format!(
                "event {event}: {path}: HTTP {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            )
            .into());
        }
        acks.record(acked - sent);
        let deadline = acked + give_up;
        let ((at_a, served_a), (at_b, served_b)) =
            tokio::try_join!(until_refused(a, deadline), until_refused(b, deadline))?;
        served_after += served_a + served_b;
        per_instance[0].record(at_a - sent);
        per_instance[1].record(at_b - sent);
        slowest.record(at_a.max(at_b) - sent);
        if event == 0 {
            // The refusal is the revocation's, not another failure.
            for addr in servers.instances {
                let (status, value) = challenge(addr, &token).await?;
                println!("  first event, afterwards at {addr}: HTTP {status}, {value}");
                if status != 401 || !value.contains("revoked") {
                    return Err(format!("{addr} refused for another reason: {value}").into());
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let xread = xread_calls(&redis.url()).await?;
    drop(redis);

    println!(
        "summary ({} events in {:.1} s):",
        opts.events,
        elapsed.as_secs_f64()
    );
    let (ack, ack90) = line(&acks);
    println!(
        "  revocation request round trip (until the AS's answer): p50 {}, p90 {}, p99 {}, max {}",
        ms(ack.p50),
        ms(ack90),
        ms(ack.p99),
        ms(ack.max)
    );
    let mut worst = Duration::ZERO;
    for (label, l) in [
        ("instance 1", &per_instance[0]),
        ("instance 2", &per_instance[1]),
        ("both (the later of the two)", &slowest),
    ] {
        let (s, p90) = line(l);
        println!(
            "  revoke sent -> refused, {label}: p50 {}, p90 {}, p99 {}, max {}",
            ms(s.p50),
            ms(p90),
            ms(s.p99),
            ms(s.max)
        );
        worst = worst.max(s.p99);
    }
    println!(
        "  calls still served after the AS's answer (both instances, all events): {served_after}"
    );
    println!(
        "  XREAD at the redis-server: {} served, {} refused",
        xread.0, xread.1
    );
    let mut ok = check(
        &format!(
            "every event refused at both instances ({} of {})",
            slowest.len(),
            opts.events
        ),
        slowest.len() == opts.events,
    );
    if opts.degraded {
        ok &= check(
            "the stream tail was broken throughout (no XREAD served, some refused)",
            xread.0 == 0 && xread.1 > 0,
        );
    }
    goal(
        &format!(
            "p99 revoke -> refusal at each instance = {} (goal <= {} s, RV-25{})",
            ms(worst),
            bound.as_secs(),
            if opts.degraded { ", degraded" } else { "" }
        ),
        worst <= bound,
    );
    Ok(ok)
}
