//! Allow, deny, argument rules and session rules with the example policies. Every denial has
//! its positive control: the same call, changed in the one respect the rule is about, allowed.

use ema_authz::cedar::NO_PERMIT;
use ema_authz::{Decision, Effect, PolicyEngine, Principal, SessionContext};
use serde_json::json;

use crate::support::{call, engine, session, session_with_label, tool, user};

fn decide(p: &Principal, tool: &str, args: serde_json::Value, s: &SessionContext) -> Decision {
    engine().decide(p, &call(tool, args), s)
}

fn assert_allowed(d: &Decision, policy: &str) {
    assert_eq!(d.effect, Effect::Allow, "{d:?}");
    assert_eq!(d.policies, vec![policy.to_owned()], "{d:?}");
    assert_eq!(d.reasons.len(), 1, "{d:?}");
}

fn assert_default_deny(d: &Decision) {
    assert_eq!(d.effect, Effect::Deny, "{d:?}");
    assert!(d.policies.is_empty(), "{d:?}");
    assert_eq!(d.reasons, vec![NO_PERMIT.to_owned()]);
    assert_eq!(d.reason_text(), NO_PERMIT);
}

fn analyst() -> Principal {
    user("ann").with_groups(["analysts"])
}

#[test]
fn allow_gives_the_permitting_policy_and_its_reason() {
    let d = decide(
        &user("olga").with_groups(["ops"]),
        "read_secret",
        json!({"name": "db"}),
        &session(),
    );
    assert_allowed(&d, "secrets-ops");
    assert_eq!(
        d.reasons,
        vec!["the ops group may read team secrets".to_owned()]
    );
}

#[test]
fn nothing_permits_means_deny() {
    // Positive control above: the same call by a member of ops.
    let d = decide(
        &user("eve").with_groups(["sales"]),
        "read_secret",
        json!({"name": "db"}),
        &session(),
    );
    assert_default_deny(&d);
}

#[test]
fn scope_based_permit() {
    let web = user("wes").with_scopes(["tools.web"]);
    assert_allowed(
        &decide(
            &web,
            "http_fetch",
            json!({"url": "https://a.example"}),
            &session(),
        ),
        "web-fetch",
    );
    let no_web = user("wes").with_scopes(["tools.read"]);
    assert_default_deny(&decide(
        &no_web,
        "http_fetch",
        json!({"url": "https://a.example"}),
        &session(),
    ));
}

#[test]
fn sql_analysts_may_run_only_read_only_statements() {
    let s = session();
    let ok = decide(
        &analyst(),
        "sql_query",
        json!({"query": "SELECT id, name FROM customers"}),
        &s,
    );
    assert_allowed(&ok, "sql-analysts-read-only");
    assert_eq!(
        ok.reason_text(),
        "analysts may run single read-only SELECT statements"
    );
    // The optional argument may be present too.
    let ok_db = decide(
        &analyst(),
        "sql_query",
        json!({"query": "SELECT 1", "database": "crm"}),
        &s,
    );
    assert_allowed(&ok_db, "sql-analysts-read-only");

    for query in [
        "DROP TABLE customers",
        "DELETE FROM customers",
        "UPDATE customers SET vip = true",
        "SELECT 1; DROP TABLE customers",
        "SELECT 1 -- hidden",
        "SELECT 1 /* hidden */",
        "select id from customers",
        " SELECT 1",
    ] {
        let d = decide(&analyst(), "sql_query", json!({ "query": query }), &s);
        assert_default_deny(&d);
    }
}

#[test]
fn sql_read_only_rule_is_for_the_analysts_group() {
    let s = session();
    let sales = user("sam").with_groups(["sales"]);
    assert_default_deny(&decide(
        &sales,
        "sql_query",
        json!({"query": "SELECT 1"}),
        &s,
    ));
    let dba = user("dora").with_groups(["dba"]);
    assert_allowed(
        &decide(&dba, "sql_query", json!({"query": "DROP TABLE t"}), &s),
        "sql-dba-any",
    );
}

#[test]
fn files_only_under_the_users_project() {
    let s = session();
    let apollo = user("ada").with_attribute("project", json!("apollo"));
    let write = |p: &Principal, path: &str| {
        decide(p, "write_file", json!({"path": path, "content": "x"}), &s)
    };
    assert_allowed(
        &write(&apollo, "/projects/apollo/src/main.rs"),
        "files-apollo",
    );
    assert_default_deny(&write(&apollo, "/projects/zephyr/src/main.rs"));
    assert_default_deny(&write(&apollo, "/projects/apollo/../zephyr/secrets"));
    assert_default_deny(&write(&apollo, "/etc/passwd"));
    assert_default_deny(&write(&apollo, "/projects/apollo"));

    let zephyr = user("zed").with_attribute("project", json!("zephyr"));
    assert_allowed(
        &write(&zephyr, "/projects/zephyr/README.md"),
        "files-zephyr",
    );
    assert_default_deny(&write(&zephyr, "/projects/apollo/README.md"));

    // No project claim: no file access at all.
    assert_default_deny(&write(&user("nobody"), "/projects/apollo/x"));
}

#[test]
fn payment_amount_capped_by_role() {
    let s = session();
    let pay = |p: &Principal, cents: i64| {
        decide(
            p,
            "pay_invoice",
            json!({"invoice_id": "INV-1", "amount_cents": cents, "currency": "EUR"}),
            &s,
        )
    };
    let clerk = user("cleo").with_roles(["ap_clerk"]);
    assert_allowed(&pay(&clerk, 100_000), "payments-clerk");
    assert_default_deny(&pay(&clerk, 100_001));
    assert_default_deny(&pay(&clerk, 0));
    assert_default_deny(&pay(&clerk, -5));

    let controller = user("carl").with_roles(["controller"]);
    assert_allowed(&pay(&controller, 100_001), "payments-controller");
    assert_allowed(&pay(&controller, 5_000_000), "payments-controller");
    assert_default_deny(&pay(&controller, 5_000_001));

    assert_default_deny(&pay(&user("ivy"), 1));
}

#[test]
fn outbound_tools_forbidden_after_a_secret_was_read() {
    let web = user("wes").with_scopes(["tools.web"]).with_groups(["ops"]);
    let fetch = json!({"url": "https://paste.example/upload"});
    // Positive control: before any secret, the fetch is allowed.
    assert_allowed(
        &decide(&web, "http_fetch", fetch.clone(), &session()),
        "web-fetch",
    );

    let tainted = session_with_label("secret_read");
    let d = decide(&web, "http_fetch", fetch, &tainted);
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.policies, vec!["no-outbound-after-secret".to_owned()]);
    assert_eq!(
        d.reason_text(),
        "a secret was read in this session: tools that reach outside the server are blocked"
    );
    assert!(d.labels.contains("secret_read"));

    // Payments are open-world too; a closed-world tool is still allowed.
    let both = user("cleo").with_roles(["ap_clerk"]).with_groups(["ops"]);
    let pay = json!({"invoice_id": "INV-1", "amount_cents": 10, "currency": "USD"});
    assert_eq!(
        decide(&both, "pay_invoice", pay, &tainted).policies,
        vec!["no-outbound-after-secret".to_owned()]
    );
    assert_allowed(
        &decide(&both, "read_secret", json!({"name": "db"}), &tainted),
        "secrets-ops",
    );
    // Another label does not trigger the rule.
    let other = session_with_label("untrusted_content");
    assert_allowed(
        &decide(
            &web,
            "http_fetch",
            json!({"url": "https://a.example"}),
            &other,
        ),
        "web-fetch",
    );
}

#[test]
fn destructive_calls_capped_per_session() {
    let ops = user("olga").with_groups(["ops"]);
    let mut s = SessionContext::default();
    s.destructive_calls = 2;
    s.total_calls = 5;
    s.calls.insert("delete_record".to_owned(), 2);
    assert_allowed(
        &decide(&ops, "delete_record", json!({"id": "r1"}), &s),
        "crm-delete",
    );

    s.destructive_calls = 3;
    let d = decide(&ops, "delete_record", json!({"id": "r1"}), &s);
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.policies, vec!["destructive-cap".to_owned()]);
    assert_eq!(
        d.reason_text(),
        "this session already made 3 destructive calls, the most allowed"
    );

    // The cap is on destructive tools only: a read-only tool stays allowed.
    assert_allowed(
        &decide(&ops, "read_secret", json!({"name": "db"}), &s),
        "secrets-ops",
    );
}

#[test]
fn tools_list_filtering_with_may_call() {
    let e = engine();
    let s = session();
    let ops = user("olga").with_groups(["ops"]);
    assert!(e.may_call(&ops, &tool("read_secret"), &s));
    assert!(e.may_call(&ops, &tool("delete_record"), &s));
    assert!(!e.may_call(&ops, &tool("sql_query"), &s));
    assert!(!e.may_call(&ops, &tool("pay_invoice"), &s));
    // An argument rule: shown, since some arguments are allowed.
    assert!(e.may_call(&analyst(), &tool("sql_query"), &s));
    assert!(e.may_call(
        &user("cleo").with_roles(["ap_clerk"]),
        &tool("pay_invoice"),
        &s
    ));
    // Session rules hide what the session may no longer call.
    let web = user("wes").with_scopes(["tools.web"]);
    assert!(e.may_call(&web, &tool("http_fetch"), &s));
    assert!(!e.may_call(
        &web,
        &tool("http_fetch"),
        &session_with_label("secret_read")
    ));
    let mut capped = SessionContext::default();
    capped.destructive_calls = 3;
    assert!(!e.may_call(&ops, &tool("delete_record"), &capped));
    // A tool the schema does not know is never shown.
    let unknown = ema_authz::ToolDefinition::new("format_disk", serde_json::Map::new());
    assert!(!e.may_call(&ops, &unknown, &s));
}

#[test]
fn the_generated_schema_declares_the_tools_and_the_context() {
    let schema = crate::support::schema();
    let text = schema.to_cedarschema();
    for name in [
        "sql_query",
        "write_file",
        "pay_invoice",
        "read_secret",
        "http_fetch",
        "delete_record",
    ] {
        assert!(text.contains(&format!("action \"{name}\"")), "{text}");
    }
    for field in [
        "labels: Set<String>",
        "destructive_calls: Long",
        "open_world: Bool",
        "project?: String",
        "groups: Set<String>",
    ] {
        assert!(text.contains(field), "{field} missing from\n{text}");
    }
    assert_eq!(schema.tool_names().count(), 6);
}

#[test]
fn action_lists_and_unconstrained_actions_apply_to_the_tools_they_name() {
    use ema_authz::cedar::{CedarEngine, CedarPolicies};
    let schema = crate::support::schema();
    let policies = CedarPolicies::from_sources(
        &schema,
        [(
            "list.cedar",
            r#"@id("two-tools") permit (principal, action in [Ema::Action::"read_secret", Ema::Action::"http_fetch"], resource);
               @id("no-deletes-for-interns") forbid (principal, action, resource) when { principal.roles.contains("intern") };"#,
        )],
    )
    .unwrap();
    let e = CedarEngine::new(schema, policies).unwrap();
    let s = session();
    let u = user("u");
    for (t, args) in [
        ("read_secret", json!({"name": "n"})),
        ("http_fetch", json!({"url": "u"})),
    ] {
        let d = e.decide(&u, &call(t, args), &s);
        assert!(d.is_allowed(), "{d:?}");
        assert_eq!(d.policies, vec!["two-tools".to_owned()]);
        // Without `@reason`, an allow gives no reason.
        assert!(d.reasons.is_empty());
    }
    assert_default_deny(&e.decide(&u, &call("delete_record", json!({"id": "1"})), &s));
    let intern = user("i").with_roles(["intern"]);
    let d = e.decide(&intern, &call("http_fetch", json!({"url": "u"})), &s);
    assert_eq!(d.policies, vec!["no-deletes-for-interns".to_owned()]);
    assert!(!e.may_call(&intern, &tool("read_secret"), &s));
    assert!(e.may_call(&u, &tool("read_secret"), &s));
    assert!(!e.may_call(&u, &tool("delete_record"), &s));
}
