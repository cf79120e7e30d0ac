//! Decision latency of the Cedar engine: one `decide` with 100 policies in force and a
//! realistic argument object, and one `may_call` (what `tools/list` filtering costs per tool).
//!
//! `cargo bench -p ema-authz --bench decide`. Criterion reports means and medians; the p50,
//! p99 and p99.9 printed first come from 20,000 individually timed decisions (after a warm-up),
//! since criterion does not report tail percentiles.
//!
//! `decide count MODE N` (the bench binary with those arguments) runs MODE N times and nothing
//! else, to be counted under `valgrind --tool=callgrind` (instruction counts do not depend on
//! what else the machine is doing): `setup` (the engine, principal, call and session only;
//! subtract its count), `decide`, `decide_uncached` (a principal whose entity is not cached),
//! `decide_unoptimized` (the plain way: every policy, the schema generator's request), `build`
//! (the request building alone) or `may_call`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ema_authz::cedar::{
    AttributeType, CedarEngine, CedarPolicies, ClaimAttribute, PrincipalMapping,
};
use ema_authz::{CedarSchema, PolicyEngine, Principal, SessionContext, ToolCall, ToolDefinition};
use serde_json::{Value, json};

fn policies_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/config/policies")
}

fn tools() -> Vec<ToolDefinition> {
    let text = std::fs::read_to_string(policies_dir().join("tools.json")).unwrap_or_default();
    let listing: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    listing
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| ToolDefinition::from_mcp_json(t).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The 11 example policies plus 89 generated ones of the same shapes (group and role permits
/// with argument conditions, label forbids), 100 in all.
fn sources() -> Vec<(String, String)> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(policies_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "cedar") {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            sources.push((name, std::fs::read_to_string(&path).unwrap_or_default()));
        }
    }
    let mut generated = String::new();
    for i in 0..89 {
        let policy = match i % 4 {
            0 => format!(
                "@id(\"gen-sql-{i}\") @reason(\"team {i} reads its schema\")\n\
                 permit (principal, action == Ema::Action::\"sql_query\", resource)\n\
                 when {{ principal.groups.contains(\"team-{i}\") && context.input.query like \"SELECT * FROM team{i}_*\" \
                 && !(context.input.query like \"*;*\") }};\n"
            ),
            1 => format!(
                "@id(\"gen-pay-{i}\") @reason(\"budget holders of cost centre {i}\")\n\
                 permit (principal, action == Ema::Action::\"pay_invoice\", resource)\n\
                 when {{ principal.roles.contains(\"budget-{i}\") && context.input.amount_cents <= {} \
                 && context.input.currency == Ema::pay_invoice::Input::currency::\"EUR\" }};\n",
                1000 * (i + 1)
            ),
            2 => format!(
                "@id(\"gen-label-{i}\") @reason(\"label {i} blocks destructive tools\")\n\
                 forbid (principal, action, resource)\n\
                 when {{ context.tool.destructive && context.session.labels.contains(\"label-{i}\") }};\n"
            ),
            _ => format!(
                "@id(\"gen-files-{i}\") @reason(\"project p{i}\")\n\
                 permit (principal, action == Ema::Action::\"write_file\", resource)\n\
                 when {{ principal has project && principal.project == \"p{i}\" \
                 && context.input.path like \"/projects/p{i}/*\" }};\n"
            ),
        };
        generated.push_str(&policy);
    }
    sources.push(("generated.cedar".to_owned(), generated));
    sources
}

fn engine() -> CedarEngine {
    let mapping = PrincipalMapping::new().with_attribute(ClaimAttribute::new(
        "project",
        "project",
        AttributeType::String,
    ));
    let schema = CedarSchema::new(&tools(), &mapping).unwrap_or_else(|e| {
        eprintln!("schema: {e}");
        std::process::exit(1)
    });
    let policies = CedarPolicies::from_sources(&schema, sources()).unwrap_or_else(|e| {
        eprintln!("policies: {e}");
        std::process::exit(1)
    });
    assert_eq!(policies.len(), 100);
    CedarEngine::new(schema, policies).unwrap_or_else(|e| {
        eprintln!("engine: {e}");
        std::process::exit(1)
    })
}

fn principal() -> Principal {
    Principal::new("https://as.example", "ann@example.com", "agent-7")
        .with_tenant("acme")
        .with_scopes(["tools.read", "tools.call", "tasks.read"])
        .with_groups(["analysts", "employees", "eu", "team-4", "team-8"])
        .with_roles(["employee", "budget-5"])
        .with_attribute("project", json!("apollo"))
}

fn session() -> SessionContext {
    let mut s = SessionContext::default();
    s.calls.insert("sql_query".to_owned(), 4);
    s.calls.insert("read_secret".to_owned(), 1);
    s.total_calls = 5;
    s.labels.insert("untrusted_content".to_owned());
    s
}

fn call() -> ToolCall {
    let args = json!({
        "query": "SELECT c.id, c.name, c.email, o.total FROM customers c JOIN orders o ON o.customer_id = c.id \
                  WHERE c.region = 'eu' AND o.created_at > '2026-01-01' ORDER BY o.total DESC LIMIT 100",
        "database": "analytics"
    });
    ToolCall::new(
        "https://mcp.example/mcp",
        "sql_query",
        args.as_object().cloned().unwrap_or_default(),
    )
}

fn sample(mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..2_000 {
        f();
    }
    let mut times: Vec<Duration> = (0..20_000)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn report(what: &str, times: &[Duration]) {
    // The sample at the given per-mille rank.
    let at = |per_mille: usize| {
        let index = (times.len().saturating_sub(1)) * per_mille / 1000;
        times.get(index).copied().unwrap_or_default()
    };
    println!(
        "{what}: n={} p50={:.1?} p90={:.1?} p99={:.1?} p99.9={:.1?} max={:.1?}",
        times.len(),
        at(500),
        at(900),
        at(990),
        at(999),
        at(1000)
    );
}

/// Principals equal to [`principal`] but for the access token's `jti`: each call of one of them
/// after another misses the engine's cache of principal entities.
fn fresh_principals() -> Vec<Principal> {
    (0..64)
        .map(|i| {
            let mut p = principal();
            p.token_jti = Some(format!("jti-{i}"));
            p
        })
        .collect()
}

fn percentiles(engine: &CedarEngine) {
    let (p, c, s) = (principal(), call(), session());
    report(
        "decide, 100 policies, sql_query",
        &sample(|| {
            black_box(engine.decide(black_box(&p), black_box(&c), black_box(&s)));
        }),
    );
    let fresh = fresh_principals();
    let mut cycle = fresh.iter().cycle();
    report(
        "  the same, principal entity not cached",
        &sample(|| {
            if let Some(p) = cycle.next() {
                black_box(engine.decide(black_box(p), black_box(&c), black_box(&s)));
            }
        }),
    );
    report(
        "  the same, decided the plain way (decide_unoptimized)",
        &sample(|| {
            black_box(engine.decide_unoptimized(black_box(&p), black_box(&c), black_box(&s)));
        }),
    );
    // The part of a decision before Cedar evaluates policies: arguments checked and converted
    // by the schema generator's request generator, entities built, request validated.
    report(
        "  of which building the request and entities",
        &sample(|| {
            black_box(
                engine
                    .build_request(black_box(&p), black_box(&c), black_box(&s))
                    .ok(),
            );
        }),
    );
    let tool = tools().into_iter().find(|t| t.name == "sql_query");
    if let Some(tool) = tool {
        report(
            "may_call, 100 policies, sql_query",
            &sample(|| {
                black_box(engine.may_call(black_box(&p), black_box(&tool), black_box(&s)));
            }),
        );
    }
}

/// `count MODE N`: MODE N times, for callgrind.
fn count(mode: &str, n: usize) {
    let engine = engine();
    let (p, c, s) = (principal(), call(), session());
    let tool = tools().into_iter().find(|t| t.name == "sql_query");
    let fresh = fresh_principals();
    let mut cycle = fresh.iter().cycle();
    for _ in 0..n {
        match (mode, &tool, cycle.next()) {
            ("setup", _, _) => {}
            ("decide", _, _) => {
                black_box(engine.decide(black_box(&p), black_box(&c), black_box(&s)));
            }
            ("decide_uncached", _, Some(p)) => {
                black_box(engine.decide(black_box(p), black_box(&c), black_box(&s)));
            }
            ("decide_unoptimized", _, _) => {
                black_box(engine.decide_unoptimized(black_box(&p), black_box(&c), black_box(&s)));
            }
            ("build", _, _) => {
                black_box(
                    engine
                        .build_request(black_box(&p), black_box(&c), black_box(&s))
                        .ok(),
                );
            }
            ("may_call", Some(tool), _) => {
                black_box(engine.may_call(black_box(&p), black_box(tool), black_box(&s)));
            }
            _ => {
                eprintln!(
                    "usage: decide count \
                     setup|decide|decide_uncached|decide_unoptimized|build|may_call N"
                );
                std::process::exit(2)
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, first, mode, n, ..] = args.as_slice()
        && first == "count"
    {
        count(mode, n.parse().unwrap_or(1));
        return;
    }
    let engine = engine();
    let decision = engine.decide(&principal(), &call(), &session());
    assert!(decision.is_allowed(), "{decision:?}");
    percentiles(&engine);

    let mut criterion = Criterion::default().configure_from_args();
    let (p, c, s) = (principal(), call(), session());
    criterion.bench_function("decide/100 policies/sql_query", |b| {
        b.iter(|| engine.decide(black_box(&p), black_box(&c), black_box(&s)))
    });
    let tool = tools().into_iter().find(|t| t.name == "sql_query");
    if let Some(tool) = tool {
        criterion.bench_function("may_call/100 policies/sql_query", |b| {
            b.iter(|| engine.may_call(black_box(&p), black_box(&tool), black_box(&s)))
        });
    }
    criterion.final_summary();
}
