//! The fast path of `decide` (policies skipped by their guards, plain arguments converted by
//! the engine) against the plain one (`decide_unoptimized`: the schema generator's request,
//! every policy evaluated by Cedar): for generated principals, sessions and arguments, the
//! same effect, the same deciding policies and the same reasons, errors included.

use std::cell::Cell;

use ema_authz::cedar::{
    AttributeType, CedarEngine, CedarPolicies, CedarSchema, ClaimAttribute, PrincipalMapping,
};
use ema_authz::{Decision, PolicyEngine, Principal, SessionContext, ToolCall, ToolDefinition};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::property::{TOOLS, any_json, arguments, subset};
use crate::support::{SERVER, call, policies_dir, schema, user};

/// Policies beyond the examples whose guards use every form: a tenant behind `has`, a mapped
/// attribute, labels, counters, tools already called, the tool's name and annotations, a
/// negation, an `unless`, and a condition that fails at run time (overflow) behind a guard.
const EXTRA: &str = r#"
@id("x-tenant") @reason("sales of acme read secrets")
permit (principal, action == Ema::Action::"read_secret", resource)
when { principal has tenant && principal.tenant == "acme" && principal.groups.contains("sales") };

@id("x-project") @reason("hermes reads secrets")
permit (principal, action == Ema::Action::"read_secret", resource)
when { principal has project && principal.project == "hermes" && context.input.name like "h*" };

@id("x-intern-untrusted") @reason("interns stop destructive calls on untrusted content")
forbid (principal, action, resource)
when { context.tool.destructive && context.session.labels.contains("untrusted_content") &&
       principal.roles.contains("intern") };

@id("x-busy") @reason("a busy session of a non-ops user fetches no more")
forbid (principal, action == Ema::Action::"http_fetch", resource)
when { context.session.total_calls > 3 && !principal.groups.contains("ops") };

@id("x-after-secret") @reason("controllers delete temporary records after reading a secret")
permit (principal, action == Ema::Action::"delete_record", resource)
when { context.session.tools_called.contains("read_secret") &&
       principal.roles.contains("controller") && context.input.id like "t*" };

@id("x-pay-intern") @reason("interns pay nothing")
forbid (principal, action, resource)
when { context.tool.name == "pay_invoice" && principal.roles.contains("intern") };

@id("x-overflow") @reason("clerk amounts scaled (overflows for large ones)")
forbid (principal, action == Ema::Action::"pay_invoice", resource)
when { principal.roles.contains("ap_clerk") && context.input.amount_cents * 100000000000000 < 0 };

@id("x-unless") @reason("writing needs tools.read")
forbid (principal, action == Ema::Action::"write_file", resource)
unless { principal.scopes.contains("tools.read") };

@id("x-trust") @reason("trusted tokens fetch")
permit (principal, action == Ema::Action::"http_fetch", resource)
when { principal has trust_level && principal.trust_level >= 2 && principal.client_id == "agent-1" };
"#;

fn engine() -> CedarEngine {
    let schema = schema();
    let mut sources: Vec<(String, String)> = std::fs::read_dir(policies_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cedar"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    sources.push(("extra.cedar".to_owned(), EXTRA.to_owned()));
    let policies = CedarPolicies::from_sources(&schema, sources).unwrap();
    CedarEngine::new(schema, policies).unwrap()
}

fn principal() -> impl Strategy<Value = Principal> {
    (
        subset(&["analysts", "dba", "ops", "sales"]),
        subset(&["ap_clerk", "controller", "intern"]),
        subset(&["tools.web", "tools.read"]),
        proptest::option::of(proptest::sample::select(
            &["apollo", "zephyr", "hermes"][..],
        )),
        proptest::option::of(proptest::sample::select(&["acme", "globex"][..])),
        proptest::option::of(0i64..4),
    )
        .prop_map(|(groups, roles, scopes, project, tenant, trust)| {
            let mut p = user("p")
                .with_groups(groups)
                .with_roles(roles)
                .with_scopes(scopes);
            if let Some(project) = project {
                p = p.with_attribute("project", json!(project));
            }
            if let Some(tenant) = tenant {
                p = p.with_tenant(tenant);
            }
            p.trust_level = trust;
            p
        })
}

fn session() -> impl Strategy<Value = SessionContext> {
    (
        subset(&["secret_read", "untrusted_content"]),
        subset(&TOOLS),
        0u64..6,
        0u64..6,
    )
        .prop_map(|(labels, called, destructive, more)| {
            let mut s = SessionContext::default();
            s.labels = labels.into_iter().collect();
            for tool in called {
                s.calls.insert(tool, 1);
            }
            s.destructive_calls = destructive;
            s.total_calls = destructive + more;
            s
        })
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

fn same(fast: &Decision, plain: &Decision) -> bool {
    fast.effect == plain.effect
        && sorted(fast.policies.clone()) == sorted(plain.policies.clone())
        && sorted(fast.reasons.clone()) == sorted(plain.reasons.clone())
        && fast.labels == plain.labels
}

/// Counts of what the generated cases hit, so that no branch of the comparison is vacuous.
#[derive(Default)]
struct Seen {
    allowed: Cell<u32>,
    forbidden: Cell<u32>,
    errors: Cell<u32>,
    refused: Cell<u32>,
}

impl Seen {
    fn note(&self, d: &Decision) {
        let bump = |c: &Cell<u32>| c.set(c.get() + 1);
        let text = d.reasons.join(" ");
        if d.is_allowed() {
            bump(&self.allowed);
        } else if text.contains("policy evaluation failed") {
            bump(&self.errors);
        } else if text.contains("refused") {
            bump(&self.refused);
        } else if !d.policies.is_empty() {
            bump(&self.forbidden);
        }
    }

    fn assert_each_above(&self, n: u32) {
        for (what, c) in [
            ("allowed", &self.allowed),
            ("forbidden", &self.forbidden),
            ("evaluation errors", &self.errors),
            ("refused arguments", &self.refused),
        ] {
            assert!(c.get() > n, "only {} {what}", c.get());
        }
    }
}

#[test]
fn decide_equals_the_plain_evaluation_over_the_examples_and_more() {
    let engine = engine();
    let seen = Seen::default();
    let strategy = (principal(), session(), proptest::sample::select(&TOOLS[..]))
        .prop_flat_map(|(p, s, t)| (Just(p), Just(s), Just(t), arguments(t)));
    let mut runner = TestRunner::new(Config {
        cases: 3000,
        ..Config::default()
    });
    runner
        .run(&strategy, |(principal, session, tool, args)| {
            let c = call(tool, args);
            let fast = engine.decide(&principal, &c, &session);
            let plain = engine.decide_unoptimized(&principal, &c, &session);
            prop_assert!(
                same(&fast, &plain),
                "{principal:?} {session:?} {c:?}\nfast: {fast:?}\nplain: {plain:?}"
            );
            seen.note(&plain);
            Ok(())
        })
        .unwrap();
    seen.assert_each_above(20);
}

/// A tool with one argument of each plain kind (converted by the engine) and policies reading
/// them; arguments of any JSON value, including floats, integers beyond `i64`, nulls, arrays,
/// escapes and non-ASCII text, missing and extra members.
#[test]
fn plain_arguments_convert_as_the_schema_generator_does() {
    let tool = ToolDefinition::from_mcp_json(&json!({
        "name": "plain",
        "inputSchema": {
            "type": "object",
            "description": "one of each",
            "properties": {
                "s": {"type": "string", "description": "text"},
                "n": {"type": "integer"},
                "b": {"type": "boolean"}
            },
            "required": ["s", "n"]
        },
        "annotations": {"readOnlyHint": true}
    }))
    .unwrap();
    let mapping = PrincipalMapping::new().with_attribute(ClaimAttribute::new(
        "project",
        "project",
        AttributeType::String,
    ));
    let schema = CedarSchema::new(&[tool], &mapping).unwrap();
    let policies = CedarPolicies::from_sources(
        &schema,
        [(
            "plain.cedar",
            r#"
            @id("p-text") permit (principal, action, resource)
            when { context.input.s like "a*" };
            @id("p-number") permit (principal, action, resource)
            when { context.input.n > -5 && context.input.n < 5 };
            @id("p-unicode") permit (principal, action, resource)
            when { context.input.s == "é\"\\\n☃" };
            @id("f-flag") forbid (principal, action, resource)
            when { context.input has b && context.input.b };
            "#,
        )],
    )
    .unwrap();
    let engine = CedarEngine::new(schema, policies).unwrap();
    let p = Principal::new("https://as.example", "u", "agent-1");
    let s = SessionContext::default();
    let decide = |args: Value| {
        let c = ToolCall::new(SERVER, "plain", args.as_object().unwrap().clone());
        (
            engine.decide(&p, &c, &s),
            engine.decide_unoptimized(&p, &c, &s),
        )
    };
    // Fixed rows first: each path of the conversion, with its positive control.
    for (args, allowed) in [
        (json!({"s": "abc", "n": 30}), true),
        (json!({"s": "xyz", "n": 3}), true),
        (json!({"s": "xyz", "n": 5}), false),
        (json!({"s": "xyz", "n": -5}), false),
        (json!({"s": "abc", "n": 3, "b": false}), true),
        (json!({"s": "abc", "n": 3, "b": true}), false),
        (json!({"s": "é\"\\\n☃", "n": 9999}), true),
        (json!({"s": "abc", "n": 3.0}), false),
        (json!({"s": "abc", "n": u64::MAX}), false),
        (json!({"s": "abc"}), false),
        (json!({"s": "abc", "n": 3, "x": 1}), false),
        (json!({"s": null, "n": 3}), false),
    ] {
        let (fast, plain) = decide(args.clone());
        assert!(same(&fast, &plain), "{args}\n{fast:?}\n{plain:?}");
        assert_eq!(fast.is_allowed(), allowed, "{args}: {fast:?}");
    }
    // Each member mostly of its declared type, sometimes of any other.
    let other = || {
        prop_oneof![
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            any_json(),
            Just(json!([1, "a"])),
            Just(json!({"s": "a"})),
        ]
    };
    let text = prop_oneof![
        8 => "(a|b|é|\"|\\\\|\n|\u{0}|☃|😀){0,6}".prop_map(Value::String),
        1 => Just(Value::String("é\"\\\n☃".to_owned())),
        1 => other(),
    ];
    let number = prop_oneof![
        8 => (-8i64..8).prop_map(|n| json!(n)),
        2 => other(),
    ];
    let flag = prop_oneof![
        8 => any::<bool>().prop_map(Value::Bool),
        2 => other(),
    ];
    let strategy = (
        proptest::option::weighted(0.95, text),
        proptest::option::weighted(0.95, number),
        proptest::option::weighted(0.5, flag),
        proptest::option::weighted(0.05, any_json()),
    );
    let seen = Seen::default();
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        ..Config::default()
    });
    runner
        .run(&strategy, |(s_arg, n_arg, b_arg, extra)| {
            let mut args = serde_json::Map::new();
            for (name, v) in [("s", s_arg), ("n", n_arg), ("b", b_arg), ("extra", extra)] {
                if let Some(v) = v {
                    args.insert(name.to_owned(), v);
                }
            }
            let (fast, plain) = decide(Value::Object(args.clone()));
            prop_assert!(
                same(&fast, &plain),
                "{args:?}\nfast: {fast:?}\nplain: {plain:?}"
            );
            seen.note(&plain);
            Ok(())
        })
        .unwrap();
    for (what, c) in [
        ("allowed", &seen.allowed),
        ("forbidden", &seen.forbidden),
        ("refused", &seen.refused),
    ] {
        assert!(c.get() > 20, "only {} {what}", c.get());
    }
}

/// The engine caches principal entities: a principal whose groups changed since its last call
/// (a new token, same subject) is decided with its new groups, on the same server and another.
#[test]
fn a_cached_principal_is_used_only_when_equal() {
    let engine = engine();
    let s = SessionContext::default();
    let query = json!({ "query": "SELECT 1" });
    let analyst = user("same").with_groups(["analysts"]);
    let other = user("same").with_groups(["sales"]);
    let on = |server: &str| ToolCall::new(server, "sql_query", query.as_object().unwrap().clone());
    for server in [SERVER, "https://other.example/mcp"] {
        assert!(engine.decide(&analyst, &on(server), &s).is_allowed());
        assert!(
            engine.decide(&analyst, &on(server), &s).is_allowed(),
            "cached"
        );
        assert!(
            !engine.decide(&other, &on(server), &s).is_allowed(),
            "groups changed"
        );
        assert!(
            engine.decide(&analyst, &on(server), &s).is_allowed(),
            "and back"
        );
    }
}

/// A tool whose applicable policies are all permits without conditions is decided without
/// Cedar: the same effect, deciding policies and reasons as the plain evaluation, for valid and
/// refused arguments and for a principal whose mapped attribute does not fit the schema; tools
/// with a conditional permit, a forbid, or no policy at all (the controls) go through Cedar.
#[test]
fn unconditional_permits_decide_as_cedar_does() {
    let tool = |name: &str| {
        ToolDefinition::from_mcp_json(&json!({
            "name": name,
            "inputSchema": {
                "type": "object",
                "properties": {"s": {"type": "string"}, "n": {"type": "integer"}},
                "required": ["s"]
            },
            "annotations": {"readOnlyHint": true}
        }))
        .unwrap()
    };
    let tools = ["open", "mixed", "denied", "unlisted"].map(tool);
    let mapping = PrincipalMapping::new().with_attribute(ClaimAttribute::new(
        "project",
        "project",
        AttributeType::String,
    ));
    let schema = CedarSchema::new(&tools, &mapping).unwrap();
    let policies = CedarPolicies::from_sources(
        &schema,
        [(
            "open.cedar",
            r#"
            @id("open-a") @reason("anyone may open")
            permit (principal, action == Ema::Action::"open", resource);
            @id("open-b")
            permit (principal, action in [Ema::Action::"open", Ema::Action::"mixed"], resource);
            @id("mixed-x") @reason("x members mix")
            permit (principal, action == Ema::Action::"mixed", resource)
            when { principal.groups.contains("x") };
            @id("denied-all") @reason("never")
            forbid (principal, action == Ema::Action::"denied", resource);
            @id("denied-s") permit (principal, action == Ema::Action::"denied", resource);
            "#,
        )],
    )
    .unwrap();
    let engine = CedarEngine::new(schema, policies).unwrap();
    let s = SessionContext::default();
    let fits = Principal::new("https://as.example", "u", "agent-1")
        .with_attribute("project", json!("apollo"));
    // Fixed rows: the shortcut's own answer, and its refusals.
    let open = |args: Value| ToolCall::new(SERVER, "open", args.as_object().unwrap().clone());
    let allowed = engine.decide(&fits, &open(json!({"s": "a", "n": 2})), &s);
    assert!(allowed.is_allowed());
    assert_eq!(sorted(allowed.policies.clone()), ["open-a", "open-b"]);
    assert_eq!(allowed.reasons, ["anyone may open"]);
    let refused = engine.decide(&fits, &open(json!({"n": 2})), &s);
    assert!(!refused.is_allowed(), "a missing required argument");
    let misfit =
        Principal::new("https://as.example", "u", "agent-1").with_attribute("project", json!(5));
    assert!(
        !engine
            .decide(&misfit, &open(json!({"s": "a"})), &s)
            .is_allowed(),
        "a mapped attribute of the wrong type"
    );
    let seen = Seen::default();
    let value = || {
        prop_oneof![
            6 => "[a-c]{0,3}".prop_map(Value::String),
            2 => (-3i64..3).prop_map(|n| json!(n)),
            1 => any_json(),
        ]
    };
    let strategy = (
        proptest::sample::select(&["open", "mixed", "denied", "unlisted"][..]),
        proptest::option::weighted(0.9, value()),
        proptest::option::weighted(0.5, value()),
        proptest::option::weighted(0.05, value()),
        any::<bool>(),
        proptest::option::weighted(0.9, prop_oneof![Just(json!("apollo")), Just(json!(7))]),
    );
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        ..Config::default()
    });
    runner
        .run(&strategy, |(tool, s_arg, n_arg, extra, in_x, project)| {
            let mut args = serde_json::Map::new();
            for (name, v) in [("s", s_arg), ("n", n_arg), ("extra", extra)] {
                if let Some(v) = v {
                    args.insert(name.to_owned(), v);
                }
            }
            let mut p = Principal::new("https://as.example", "u", "agent-1");
            if in_x {
                p = p.with_groups(["x"]);
            }
            if let Some(project) = project {
                p = p.with_attribute("project", project);
            }
            let c = ToolCall::new(SERVER, tool, args);
            let fast = engine.decide(&p, &c, &s);
            let plain = engine.decide_unoptimized(&p, &c, &s);
            prop_assert!(
                same(&fast, &plain),
                "{p:?} {c:?}\nfast: {fast:?}\nplain: {plain:?}"
            );
            seen.note(&plain);
            Ok(())
        })
        .unwrap();
    for (what, c) in [
        ("allowed", &seen.allowed),
        ("forbidden", &seen.forbidden),
        ("refused", &seen.refused),
    ] {
        assert!(c.get() > 20, "only {} {what}", c.get());
    }
}
