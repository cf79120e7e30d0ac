//! `Principal::from_claims` and the principal mapping as configuration.

use ema_authz::Principal;
use ema_authz::cedar::{AttributeType, ClaimsError, PrincipalMapping};
use serde_json::json;

fn claims(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    value.as_object().unwrap().clone()
}

fn mapping() -> PrincipalMapping {
    // As it would come from the `[principal]` table of a TOML file (same serde shape).
    serde_json::from_value(json!({
        "trust_level_claim": "trust",
        "attributes": [
            {"claim": "project", "attribute": "project", "type": "string"},
            {"claim": "clearance", "attribute": "clearance", "type": "long"},
            {"claim": "contractor", "attribute": "contractor", "type": "bool"},
            {"claim": "regions", "attribute": "regions", "type": "string_set"}
        ]
    }))
    .unwrap()
}

#[test]
fn every_standard_claim_is_read() {
    let c = claims(json!({
        "iss": "https://as.example", "sub": "alice", "client_id": "agent-7",
        "tenant": "acme", "scope": "tools.read  tools.call", "groups": ["analysts", "ops"],
        "roles": "ap_clerk", "acr": "urn:mfa", "amr": ["pwd", "otp"], "auth_time": 1_700_000_000,
        "jti": "at-1", "id_jag": {"iss": "https://idp.example", "jti": "jag-1", "sub": "a"},
        "act": {"sub": "agent-7", "act": {"sub": "planner", "act": {"sub": "root"}}},
        "trust": 3, "project": "apollo", "clearance": 2, "contractor": false,
        "regions": ["eu", "us"], "unmapped": "ignored"
    }));
    let p = Principal::from_claims(&c, &mapping()).unwrap();
    assert_eq!(
        (p.issuer.as_str(), p.subject.as_str(), p.client_id.as_str()),
        ("https://as.example", "alice", "agent-7")
    );
    assert_eq!(p.tenant.as_deref(), Some("acme"));
    assert_eq!(
        p.scopes.iter().map(String::as_str).collect::<Vec<_>>(),
        ["tools.call", "tools.read"]
    );
    assert_eq!(p.groups.len(), 2);
    assert!(p.roles.contains("ap_clerk"));
    assert_eq!(p.acr.as_deref(), Some("urn:mfa"));
    assert_eq!(p.amr.len(), 2);
    assert_eq!(p.auth_time, Some(1_700_000_000));
    assert_eq!(p.token_jti.as_deref(), Some("at-1"));
    assert_eq!(p.idp_issuer.as_deref(), Some("https://idp.example"));
    assert_eq!(p.idp_jti.as_deref(), Some("jag-1"));
    assert_eq!(p.delegation_depth, 3);
    assert_eq!(p.trust_level, Some(3));
    assert_eq!(p.attributes["project"], json!("apollo"));
    assert_eq!(p.attributes["clearance"], json!(2));
    assert_eq!(p.attributes["contractor"], json!(false));
    assert_eq!(p.attributes["regions"], json!(["eu", "us"]));
    assert!(!p.attributes.contains_key("unmapped"));
}

#[test]
fn minimal_claims_and_absent_optional_claims() {
    let p = Principal::from_claims(
        &claims(json!({"iss": "i", "sub": "s", "client_id": "c"})),
        &mapping(),
    )
    .unwrap();
    assert_eq!(p.delegation_depth, 0);
    assert!(p.scopes.is_empty() && p.attributes.is_empty() && p.trust_level.is_none());
}

#[test]
fn missing_and_mistyped_claims_are_errors() {
    let base = json!({"iss": "i", "sub": "s", "client_id": "c"});
    for missing in ["iss", "sub", "client_id"] {
        let mut c = claims(base.clone());
        c.remove(missing);
        assert_eq!(
            Principal::from_claims(&c, &mapping()).unwrap_err(),
            ClaimsError::Missing {
                claim: missing.to_owned()
            }
        );
    }
    for (claim, value) in [
        ("sub", json!(5)),
        ("groups", json!([1, 2])),
        ("auth_time", json!(-1)),
        ("auth_time", json!("yesterday")),
        ("act", json!("agent")),
        ("id_jag", json!("jag")),
        ("trust", json!(1.5)),
        ("project", json!(["apollo"])),
        ("clearance", json!("high")),
        ("contractor", json!("no")),
        ("regions", json!({"eu": true})),
    ] {
        let mut c = claims(base.clone());
        c.insert(claim.to_owned(), value.clone());
        let err = Principal::from_claims(&c, &mapping()).unwrap_err();
        assert!(
            matches!(err, ClaimsError::WrongType { .. }),
            "{claim}={value}: {err}"
        );
    }
}

#[test]
fn mapping_configuration_is_checked() {
    assert_eq!(
        mapping().attribute_type("regions"),
        Some(AttributeType::StringSet)
    );
    assert!(
        serde_json::from_value::<PrincipalMapping>(
            json!({"attributes": [{"claim": "a", "attribute": "a", "type": "float"}]})
        )
        .is_err()
    );
    assert!(serde_json::from_value::<PrincipalMapping>(json!({"atributes": []})).is_err());
    let tools = crate::support::tools();
    for bad in ["not an ident", "groups", "1st"] {
        let m = PrincipalMapping::new().with_attribute(ema_authz::cedar::ClaimAttribute::new(
            "c",
            bad,
            AttributeType::String,
        ));
        let err = ema_authz::CedarSchema::new(&tools, &m).unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }
    let twice = PrincipalMapping::new()
        .with_attribute(ema_authz::cedar::ClaimAttribute::new(
            "a",
            "x",
            AttributeType::String,
        ))
        .with_attribute(ema_authz::cedar::ClaimAttribute::new(
            "b",
            "x",
            AttributeType::Long,
        ));
    assert!(ema_authz::CedarSchema::new(&tools, &twice).is_err());
    ema_authz::CedarSchema::new(&tools, &mapping()).unwrap();
}

#[test]
fn claims_drive_a_decision() {
    use ema_authz::PolicyEngine;
    let engine = crate::support::engine();
    let c = claims(json!({"iss": "i", "sub": "ada", "client_id": "c", "project": "apollo"}));
    let p = Principal::from_claims(&c, &crate::support::mapping()).unwrap();
    let d = engine.decide(
        &p,
        &crate::support::call(
            "write_file",
            json!({"path": "/projects/apollo/a", "content": ""}),
        ),
        &Default::default(),
    );
    assert!(d.is_allowed(), "{d:?}");
}
