//! Policies that do not fit the schema are refused at load, with Cedar's message, the policy's
//! id and its file; never silently denying at run time.

use ema_authz::cedar::{CedarEngine, CedarPolicies, PolicyLoadError};

use crate::support::{TempDir, mapping, policies_dir, schema, tools};

fn refused(sources: &[(&str, &str)]) -> PolicyLoadError {
    CedarPolicies::from_sources(&schema(), sources.iter().copied()).unwrap_err()
}

const GOOD: &str = r#"
@id("good")
permit (principal, action == Ema::Action::"sql_query", resource)
when { context.input.query like "SELECT *" };
"#;

#[test]
fn the_example_policies_load() {
    let policies = CedarPolicies::load_dir(&schema(), policies_dir()).unwrap();
    assert_eq!(policies.len(), 11);
    assert_eq!(
        policies.file_of("sql-analysts-read-only"),
        Some("sql.cedar")
    );
    assert_eq!(
        policies.reason_of("destructive-cap"),
        Some("this session already made 3 destructive calls, the most allowed")
    );
    // Positive control for every refusal below.
    CedarPolicies::from_sources(&schema(), [("good.cedar", GOOD)]).unwrap();
}

#[test]
fn unknown_argument_is_refused() {
    let e = refused(&[(
        "typo.cedar",
        r#"@id("typo") permit (principal, action == Ema::Action::"sql_query", resource)
           when { context.input.querry like "SELECT *" };"#,
    )]);
    let d = e.diagnostics();
    assert_eq!(d.len(), 1, "{e}");
    assert_eq!(d[0].file, "typo.cedar");
    assert_eq!(d[0].policy.as_deref(), Some("typo"));
    assert!(d[0].message.contains("querry"), "{}", d[0].message);
    assert!(e.to_string().contains("typo.cedar: policy `typo`"), "{e}");
}

#[test]
fn argument_of_another_tool_is_refused() {
    let e = refused(&[(
        "wrong-tool.cedar",
        r#"permit (principal, action == Ema::Action::"http_fetch", resource)
           when { context.input.amount_cents < 10 };"#,
    )]);
    let d = e.diagnostics();
    assert_eq!(d.len(), 1, "{e}");
    // No @id: the id is the file and the policy's index in it.
    assert_eq!(d[0].policy.as_deref(), Some("wrong-tool.cedar:0"));
    assert!(d[0].message.contains("amount_cents"), "{}", d[0].message);
}

#[test]
fn wrong_type_is_refused() {
    let e = refused(&[(
        "types.cedar",
        r#"@id("string-amount") permit (principal, action == Ema::Action::"pay_invoice", resource)
           when { context.input.amount_cents like "1*" };
           @id("long-query") permit (principal, action == Ema::Action::"sql_query", resource)
           when { context.input.query > 3 };"#,
    )]);
    let mut ids: Vec<_> = e
        .diagnostics()
        .iter()
        .map(|d| d.policy.clone().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids,
        vec!["long-query".to_owned(), "string-amount".to_owned()],
        "{e}"
    );
    for d in e.diagnostics() {
        assert!(d.message.to_lowercase().contains("type"), "{}", d.message);
    }
}

#[test]
fn unknown_principal_attribute_and_unguarded_optional_attribute_are_refused() {
    let e = refused(&[(
        "attrs.cedar",
        r#"@id("no-such") permit (principal, action, resource) when { principal.department == "x" };
           @id("unguarded") permit (principal, action, resource) when { principal.project == "apollo" };"#,
    )]);
    let ids: Vec<_> = e
        .diagnostics()
        .iter()
        .map(|d| d.policy.clone().unwrap())
        .collect();
    assert!(ids.contains(&"no-such".to_owned()), "{e}");
    assert!(ids.contains(&"unguarded".to_owned()), "{e}");
}

#[test]
fn unknown_action_is_refused() {
    let e = refused(&[(
        "action.cedar",
        r#"@id("ghost") permit (principal, action == Ema::Action::"drop_database", resource);"#,
    )]);
    assert_eq!(e.diagnostics()[0].policy.as_deref(), Some("ghost"));
}

#[test]
fn parse_errors_duplicates_and_templates_are_refused() {
    let e = refused(&[(
        "broken.cedar",
        "permit (principal, action, resource) when {",
    )]);
    assert_eq!(e.diagnostics()[0].file, "broken.cedar");
    assert_eq!(e.diagnostics()[0].policy, None);

    let e = refused(&[("a.cedar", GOOD), ("b.cedar", GOOD)]);
    let d = &e.diagnostics()[0];
    assert_eq!(
        (d.file.as_str(), d.policy.as_deref()),
        ("b.cedar", Some("good"))
    );
    assert!(d.message.contains("a.cedar"), "{}", d.message);

    let e = refused(&[(
        "t.cedar",
        "permit (principal == ?principal, action, resource);",
    )]);
    assert!(e.diagnostics()[0].message.contains("templates"), "{e}");
}

#[test]
fn empty_sets_are_refused() {
    assert!(matches!(
        refused(&[("empty.cedar", "// nothing")]),
        PolicyLoadError::NoPolicies(_)
    ));
    let dir = TempDir::new("empty");
    dir.write("README.md", "not a policy");
    let schema = ema_authz::CedarSchema::new(&tools(), &mapping()).unwrap();
    assert!(matches!(
        CedarEngine::from_dir(schema, &dir.0),
        Err(PolicyLoadError::NoPolicies(_))
    ));
}

#[test]
fn policies_of_another_schema_are_refused_by_the_engine() {
    let other = schema();
    let policies = CedarPolicies::from_sources(&other, [("good.cedar", GOOD)]).unwrap();
    assert!(matches!(
        CedarEngine::new(schema(), policies),
        Err(PolicyLoadError::SchemaMismatch)
    ));
    let same = schema();
    let policies = CedarPolicies::from_sources(&same, [("good.cedar", GOOD)]).unwrap();
    CedarEngine::new(same, policies).unwrap();
}
