//! Everything that cannot be decided is denied, with its reason: evaluation errors, unknown
//! tools, arguments that do not match the tool's schema, principals that cannot be expressed.

use ema_authz::cedar::{CedarEngine, CedarPolicies};
use ema_authz::{Effect, PolicyEngine};
use serde_json::json;

use crate::support::{call, engine, schema, session, user};

const PAY_ALL: &str = r#"
@id("clerks-pay")
permit (principal, action == Ema::Action::"pay_invoice", resource)
when { principal.roles.contains("ap_clerk") };
"#;

/// Validates, but overflows at run time for large amounts.
const OVERFLOWING_FORBID: &str = r#"
@id("overflowing-forbid")
@reason("scaled amount too large")
forbid (principal, action == Ema::Action::"pay_invoice", resource)
when { context.input.amount_cents * 1000000000000 > 9000000000000000000 };
"#;

#[test]
fn an_evaluation_error_denies_with_its_message() {
    let schema = schema();
    let policies = CedarPolicies::from_sources(
        &schema,
        [("pay.cedar", PAY_ALL), ("bad.cedar", OVERFLOWING_FORBID)],
    )
    .unwrap();
    let engine = CedarEngine::new(schema, policies).unwrap();
    let clerk = user("cleo").with_roles(["ap_clerk"]);
    let pay = |cents: i64| {
        call(
            "pay_invoice",
            json!({"invoice_id": "I", "amount_cents": cents, "currency": "EUR"}),
        )
    };
    // Positive control: a small amount evaluates without error and is allowed.
    let ok = engine.decide(&clerk, &pay(5), &session());
    assert_eq!(ok.effect, Effect::Allow, "{ok:?}");
    assert_eq!(ok.policies, vec!["clerks-pay".to_owned()]);
    // 10^8 * 10^12 overflows: Cedar would skip the erroring forbid and allow; the engine denies.
    let d = engine.decide(&clerk, &pay(100_000_000), &session());
    assert_eq!(d.effect, Effect::Deny, "{d:?}");
    assert_eq!(d.policies, vec!["overflowing-forbid".to_owned()]);
    assert!(
        d.reason_text().contains("policy evaluation failed"),
        "{}",
        d.reason_text()
    );
    assert!(d.reason_text().contains("overflow"), "{}", d.reason_text());
}

#[test]
fn unknown_tool_denies() {
    let d = engine().decide(
        &user("olga").with_groups(["ops"]),
        &call("format_disk", json!({})),
        &session(),
    );
    assert_eq!(d.effect, Effect::Deny);
    assert!(
        d.reason_text().contains("unknown tool `format_disk`"),
        "{}",
        d.reason_text()
    );
}

#[test]
fn malformed_arguments_deny_with_the_reason() {
    let e = engine();
    let clerk = user("cleo").with_roles(["ap_clerk"]);
    // Positive control.
    let ok = e.decide(
        &clerk,
        &call(
            "pay_invoice",
            json!({"invoice_id": "I", "amount_cents": 10, "currency": "EUR"}),
        ),
        &session(),
    );
    assert_eq!(ok.effect, Effect::Allow, "{ok:?}");
    for (args, what) in [
        (
            json!({"invoice_id": "I", "amount_cents": "10", "currency": "EUR"}),
            "a string for an integer",
        ),
        (
            json!({"invoice_id": "I", "amount_cents": 10.5, "currency": "EUR"}),
            "a fraction for an integer",
        ),
        (
            json!({"invoice_id": "I", "amount_cents": 1e30, "currency": "EUR"}),
            "a huge number",
        ),
        (
            json!({"invoice_id": "I", "amount_cents": 10}),
            "a missing required argument",
        ),
        (
            json!({"invoice_id": "I", "amount_cents": 10, "currency": "EUR", "memo": "x"}),
            "an undeclared argument",
        ),
        (
            json!({"invoice_id": "I", "amount_cents": 10, "currency": "GBP"}),
            "a value outside the enum",
        ),
        (
            json!({"invoice_id": null, "amount_cents": 10, "currency": "EUR"}),
            "null for a string",
        ),
    ] {
        let d = e.decide(&clerk, &call("pay_invoice", args), &session());
        assert_eq!(d.effect, Effect::Deny, "{what}: {d:?}");
        assert!(d.policies.is_empty(), "{what}: {d:?}");
        assert!(
            d.reason_text().contains("pay_invoice"),
            "{what}: {}",
            d.reason_text()
        );
    }
}

#[test]
fn an_undeclared_or_mistyped_principal_attribute_denies() {
    let e = engine();
    let args = json!({"path": "/projects/apollo/x", "content": ""});
    let ok = user("ada").with_attribute("project", json!("apollo"));
    assert_eq!(
        e.decide(&ok, &call("write_file", args.clone()), &session())
            .effect,
        Effect::Allow
    );
    let mistyped = user("ada").with_attribute("project", json!(7));
    let d = e.decide(&mistyped, &call("write_file", args.clone()), &session());
    assert_eq!(d.effect, Effect::Deny);
    assert!(
        d.reason_text().contains("`project` is not a String"),
        "{}",
        d.reason_text()
    );
    let undeclared = ok.with_attribute("clearance", json!("top"));
    let d = e.decide(&undeclared, &call("write_file", args), &session());
    assert_eq!(d.effect, Effect::Deny);
    assert!(
        d.reason_text().contains("`clearance` is not declared"),
        "{}",
        d.reason_text()
    );
}
