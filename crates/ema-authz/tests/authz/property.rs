//! `may_call` never hides a tool that some arguments would be allowed: for generated
//! principals, sessions and argument objects, whenever `decide` allows a call, `may_call` was
//! true for that principal, tool and session.

use std::cell::Cell;

use ema_authz::{PolicyEngine, Principal, SessionContext};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::support::{call, engine, tool, user};

pub(crate) const TOOLS: [&str; 6] = [
    "sql_query",
    "write_file",
    "pay_invoice",
    "read_secret",
    "http_fetch",
    "delete_record",
];

pub(crate) fn subset(items: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(proptest::sample::select(items), 0..=items.len())
        .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

fn principal() -> impl Strategy<Value = Principal> {
    (
        subset(&["analysts", "dba", "ops", "sales"]),
        subset(&["ap_clerk", "controller", "intern"]),
        subset(&["tools.web", "tools.read"]),
        proptest::option::of(proptest::sample::select(
            &["apollo", "zephyr", "hermes"][..],
        )),
    )
        .prop_map(|(groups, roles, scopes, project)| {
            let mut p = user("p")
                .with_groups(groups)
                .with_roles(roles)
                .with_scopes(scopes);
            if let Some(project) = project {
                p = p.with_attribute("project", json!(project));
            }
            p
        })
}

fn session() -> impl Strategy<Value = SessionContext> {
    (subset(&["secret_read", "untrusted_content"]), 0u64..6).prop_map(|(labels, destructive)| {
        let mut s = SessionContext::default();
        s.labels = labels.into_iter().collect();
        s.destructive_calls = destructive;
        s.total_calls = destructive;
        s
    })
}

/// Strings that hit the rules' edges (prefixes, separators) with random tails.
pub(crate) fn text(prefixes: &'static [&'static str]) -> impl Strategy<Value = String> {
    (proptest::sample::select(prefixes), "[ -~]{0,12}").prop_map(|(p, tail)| format!("{p}{tail}"))
}

pub(crate) fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[ -~]{0,8}".prop_map(Value::String),
    ]
}

/// Mostly well-formed arguments for `tool`, sometimes with a wrong or extra member.
pub(crate) fn arguments(tool: &'static str) -> BoxedStrategy<Value> {
    let well_formed: BoxedStrategy<Value> = match tool {
        "sql_query" => (text(&["SELECT ", "select ", "DROP ", "SELECT 1;", ""]), proptest::option::of("[a-z]{1,4}"))
            .prop_map(|(query, db)| match db {
                Some(db) => json!({"query": query, "database": db}),
                None => json!({ "query": query }),
            })
            .boxed(),
        "write_file" => text(&["/projects/apollo/", "/projects/zephyr/", "/projects/apollo/../", "/etc/", ""])
            .prop_map(|path| json!({"path": path, "content": "x"}))
            .boxed(),
        "pay_invoice" => (
            prop_oneof![-10i64..10, 99_990i64..100_010, 4_999_990i64..5_000_010, any::<i64>()],
            proptest::sample::select(&["EUR", "USD"][..]),
        )
            .prop_map(|(cents, currency)| json!({"invoice_id": "I", "amount_cents": cents, "currency": currency}))
            .boxed(),
        "read_secret" => "[a-z]{0,6}".prop_map(|name| json!({ "name": name })).boxed(),
        "http_fetch" => "[ -~]{0,16}".prop_map(|url| json!({ "url": url })).boxed(),
        _ => "[a-z0-9]{0,6}".prop_map(|id| json!({ "id": id })).boxed(),
    };
    prop_oneof![
        4 => well_formed.clone(),
        1 => (well_formed, "[a-z_]{1,12}", any_json()).prop_map(|(mut args, key, value)| {
            args.as_object_mut().unwrap().insert(key, value);
            args
        }),
    ]
    .boxed()
}

#[test]
fn may_call_is_never_false_for_a_call_decide_allows() {
    let engine = engine();
    let allowed = Cell::new(0u32);
    let hidden = Cell::new(0u32);
    let strategy = (principal(), session(), proptest::sample::select(&TOOLS[..]))
        .prop_flat_map(|(p, s, t)| (Just(p), Just(s), Just(t), arguments(t)));
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        ..Config::default()
    });
    runner
        .run(&strategy, |(principal, session, tool_name, args)| {
            let decision = engine.decide(&principal, &call(tool_name, args.clone()), &session);
            let may = engine.may_call(&principal, &tool(tool_name), &session);
            if decision.is_allowed() {
                allowed.set(allowed.get() + 1);
                prop_assert!(
                    may,
                    "hidden but allowed: {principal:?} {session:?} {tool_name} {args}"
                );
            }
            if !may {
                hidden.set(hidden.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    // The property is not vacuous: both sides occurred.
    assert!(
        allowed.get() > 50,
        "only {} allowed calls generated",
        allowed.get()
    );
    assert!(
        hidden.get() > 50,
        "only {} hidden tools generated",
        hidden.get()
    );
}
