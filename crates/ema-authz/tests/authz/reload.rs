//! Reload swaps the policy set atomically and keeps the last good set when the new one is
//! refused.

use std::sync::Arc;

use ema_authz::cedar::{CedarEngine, PolicyLoadError};
use ema_authz::{Effect, PolicyEngine};
use serde_json::json;

use crate::support::{TempDir, call, schema, session, user};

const SECRETS_OPS: &str = r#"@id("secrets") @reason("ops reads secrets")
permit (principal, action == Ema::Action::"read_secret", resource)
when { principal.groups.contains("ops") };"#;

const SECRETS_SALES: &str = r#"@id("secrets") @reason("sales reads secrets")
permit (principal, action == Ema::Action::"read_secret", resource)
when { principal.groups.contains("sales") };"#;

const INVALID: &str = r#"@id("secrets")
permit (principal, action == Ema::Action::"read_secret", resource)
when { context.input.nmae == "db" };"#;

fn effect(engine: &CedarEngine, group: &str) -> Effect {
    engine
        .decide(
            &user("u").with_groups([group]),
            &call("read_secret", json!({"name": "db"})),
            &session(),
        )
        .effect
}

#[test]
fn reload_swaps_and_keeps_the_last_good_set() {
    let dir = TempDir::new("reload");
    dir.write("secrets.cedar", SECRETS_OPS);
    let engine = CedarEngine::from_dir(schema(), &dir.0).unwrap();
    assert_eq!(effect(&engine, "ops"), Effect::Allow);
    assert_eq!(effect(&engine, "sales"), Effect::Deny);

    // A set that does not validate is refused, with why; the old set still decides.
    let before = engine.policies();
    dir.write("secrets.cedar", INVALID);
    let err = engine.reload().unwrap_err();
    assert!(matches!(err, PolicyLoadError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("nmae"), "{err}");
    assert!(Arc::ptr_eq(&before, &engine.policies()));
    assert_eq!(effect(&engine, "ops"), Effect::Allow);

    // An emptied directory is refused too.
    std::fs::remove_file(dir.0.join("secrets.cedar")).unwrap();
    assert!(matches!(
        engine.reload(),
        Err(PolicyLoadError::NoPolicies(_))
    ));
    assert_eq!(effect(&engine, "ops"), Effect::Allow);

    // A good set replaces it.
    dir.write("secrets.cedar", SECRETS_SALES);
    assert_eq!(engine.reload().unwrap().policies, 1);
    assert_eq!(effect(&engine, "ops"), Effect::Deny);
    assert_eq!(effect(&engine, "sales"), Effect::Allow);
    // A decision taken with the old snapshot is unaffected by the swap.
    assert_eq!(before.reason_of("secrets"), Some("ops reads secrets"));
    assert_eq!(
        engine.policies().reason_of("secrets"),
        Some("sales reads secrets")
    );
}

#[test]
fn polling_reloads_only_on_change_and_reports_a_refusal_once() {
    let dir = TempDir::new("poll");
    dir.write("secrets.cedar", SECRETS_OPS);
    let engine = CedarEngine::from_dir(schema(), &dir.0).unwrap();
    assert!(engine.reload_if_changed().is_none());

    dir.write("secrets.cedar", INVALID);
    assert!(engine.reload_if_changed().unwrap().is_err());
    assert!(
        engine.reload_if_changed().is_none(),
        "the same refused files are reported once"
    );
    assert_eq!(effect(&engine, "ops"), Effect::Allow);

    dir.write("secrets.cedar", SECRETS_SALES);
    assert_eq!(engine.reload_if_changed().unwrap().unwrap().policies, 1);
    assert_eq!(effect(&engine, "sales"), Effect::Allow);
    assert!(engine.reload_if_changed().is_none());

    // A new file is a change.
    dir.write(
        "more.cedar",
        SECRETS_OPS.replace("\"secrets\"", "\"more\"").as_str(),
    );
    assert_eq!(engine.reload_if_changed().unwrap().unwrap().policies, 2);
    assert_eq!(effect(&engine, "ops"), Effect::Allow);
}

#[test]
fn replace_sources_and_engines_without_a_directory() {
    let schema = schema();
    let policies =
        ema_authz::CedarPolicies::from_sources(&schema, [("s.cedar", SECRETS_OPS)]).unwrap();
    let engine = CedarEngine::new(schema, policies).unwrap();
    assert!(matches!(engine.reload(), Err(PolicyLoadError::NoSource)));
    assert!(engine.replace_sources([("s.cedar", INVALID)]).is_err());
    assert_eq!(effect(&engine, "ops"), Effect::Allow);
    engine
        .replace_sources([("s.cedar", SECRETS_SALES)])
        .unwrap();
    assert_eq!(effect(&engine, "sales"), Effect::Allow);
}

#[test]
fn readers_keep_deciding_during_reloads() {
    let dir = TempDir::new("concurrent");
    dir.write("secrets.cedar", SECRETS_OPS);
    let engine = Arc::new(CedarEngine::from_dir(schema(), &dir.0).unwrap());
    let reader = {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || {
            // Every decision sees one whole set: ops xor sales, never both, never neither.
            for _ in 0..200 {
                let ops = effect(&engine, "ops") == Effect::Allow;
                let policies = engine.policies();
                let reason = policies.reason_of("secrets").unwrap();
                assert!(reason == "ops reads secrets" || reason == "sales reads secrets");
                let _ = ops;
            }
        })
    };
    for i in 0..50 {
        let text = if i % 2 == 0 {
            SECRETS_SALES
        } else {
            SECRETS_OPS
        };
        engine.replace_sources([("secrets.cedar", text)]).unwrap();
    }
    reader.join().unwrap();
}
