//! The IdP's success path: the token-exchange response (TX-9, TX-10), the ID-JAG it issues
//! (JAG-1..JAG-8, D-16), the decisions that shape it (TX-6, TX-11, TX-12, TX-13, D-3, D-10,
//! D-15), and the whole chain ID token → token exchange → jwt-bearer → resource server.

use std::collections::{BTreeSet, HashSet};

use ema_grant::{ID_JAG_TOKEN_TYPE, LEGACY_TOKEN_TYPE};
use ema_id_jag::{ClientId, ValidationContext};
use serde_json::{Value, json};

use crate::support::*;

fn members(reply: &Reply) -> BTreeSet<String> {
    reply.body.as_object().unwrap().keys().cloned().collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn tx_response_and_id_jag_content() {
    // TX-10, TX-9 (no `scope`: granted equals requested), JAG-1..JAG-8, D-16.
    let fx = Fx::new();
    let reply = fx.ok(&Req::exchange(
        &fx.id_token(json!({"acr": "urn:acme:acr:mfa"})),
    ));
    assert_eq!(
        members(&reply),
        set(&[
            "access_token",
            "expires_in",
            "issued_token_type",
            "token_type"
        ]),
        "TX-10: no refresh_token; TX-9: no scope when unchanged"
    );
    assert_eq!(reply.str("issued_token_type"), ID_JAG_TOKEN_TYPE);
    assert_eq!(reply.str("token_type"), "N_A");
    assert_eq!(reply.body["expires_in"], 300);

    let jag = reply.str("access_token");
    let (header, claims) = peek(jag);
    // JAG-1: a signed JWS typed oauth-id-jag+jwt.
    assert_eq!(
        header,
        json!({"typ": "oauth-id-jag+jwt", "alg": "ES256", "kid": "idp-k1"})
    );
    // JAG-2: the required claims.
    for claim in ["iss", "sub", "aud", "client_id", "jti", "exp", "iat"] {
        assert!(claims.get(claim).is_some(), "JAG-2: {claim}");
    }
    assert_eq!(claims["iss"], IDP);
    assert_eq!(claims["sub"], USER, "JAG-5: the IdP's subject");
    assert_eq!(claims["aud"], json!(AS), "JAG-3: a single string");
    assert_eq!(
        claims["client_id"], CLIENT,
        "JAG-4: the client's id at the AS"
    );
    assert_eq!(
        claims["resource"],
        json!(TASKS),
        "JAG-6: the MCP server's resource id"
    );
    assert_eq!(
        claims["scope"], "tasks.read",
        "TX-9: granted scope written in"
    );
    assert_eq!(claims["iat"], json!(NOW.as_secs()));
    assert_eq!(
        claims["exp"],
        json!(NOW.as_secs() + 300),
        "JAG-7 / D-16: 300 s"
    );
    assert_eq!(claims["auth_time"], at(-60));
    assert_eq!(claims["acr"], "urn:acme:acr:mfa");
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    assert_eq!(claims["groups"], json!(["eng"]));
    // JAG-8: no PII the relationship does not need; nothing from the SSO session leaks.
    for absent in ["email", "nonce", "azp", "cnf", "tenant", "act"] {
        assert!(claims.get(absent).is_none(), "JAG-8: {absent}");
    }
    // The authorization server accepts it as is.
    let client = ClientId::new(CLIENT);
    let valid = pollster::block_on(fx.as_default.validator().validate(
        jag,
        &ValidationContext::new(&client),
        NOW,
    ))
    .expect("the issued ID-JAG validates at its audience");
    assert_eq!(valid.resource, TASKS);
    assert_eq!(valid.subject.id, USER_LOCAL);

    // JAG-5: the tenant of a multi-tenant IdP travels with the subject.
    let reply = fx.ok(&Req::exchange(&fx.id_token(json!({"tenant": "acme"}))));
    assert_eq!(peek(reply.str("access_token")).1["tenant"], "acme");
}

#[test]
fn tx9_scope_in_the_response_when_it_differs() {
    let fx = Fx::new();
    // Narrowed by policy: the reader asked for more than it may have.
    let reply = fx
        .ok(&Req::exchange(&fx.id_token(json!({"sub": READER})))
            .set("scope", "tasks.read tasks.write"));
    assert_eq!(reply.str("scope"), "tasks.read");
    assert_eq!(peek(reply.str("access_token")).1["scope"], "tasks.read");
    // No scope requested: whatever is granted differs from the request.
    let reply = fx.ok(&Req::exchange(&fx.id_token(json!({}))).remove("scope"));
    assert_eq!(
        reply.str("scope"),
        "notes.read notes.write tasks.read tasks.write vault.read"
    );
    // Requested in another order: the same set, so no `scope`.
    let reply =
        fx.ok(&Req::exchange(&fx.id_token(json!({}))).set("scope", "tasks.write tasks.read"));
    assert!(reply.body.get("scope").is_none());
}

#[test]
fn tx6_alias_is_resolved_to_the_issuer() {
    let fx = Fx::new();
    let reply = fx.ok(&Req::exchange(&fx.id_token(json!({}))).set("audience", AS_ALIAS));
    assert_eq!(peek(reply.str("access_token")).1["aud"], json!(AS));
    fx.ok(&Req::bearer(reply.str("access_token")));
}

#[test]
fn d15_exchange_without_resource() {
    let fx = Fx::new();
    let exchange = || {
        let reply = fx.ok(&Req::exchange(&fx.id_token(json!({}))).remove("resource"));
        let jag = reply.str("access_token").to_owned();
        assert!(
            peek(&jag).1.get("resource").is_none(),
            "D-15: no resource claim"
        );
        jag
    };
    // D-4(b) at the AS: the request names the resource...
    let reply = fx.ok(&Req::bearer(&exchange()));
    assert_eq!(reply.str("resource"), TASKS);
    // ...or the AS governs only one...
    fx.ok(&Req::bearer(&exchange()).remove("resource").to(To::AsSingle));
    // ...or it cannot choose.
    let reply = fx.send(&Req::bearer(&exchange()).remove("resource"));
    assert_eq!((reply.status, reply.error()), (400, "invalid_grant"));
}

#[test]
fn d10_legacy_token_type_only_behind_the_flag() {
    let fx = Fx::new();
    let legacy =
        Req::exchange(&fx.id_token(json!({}))).set("requested_token_type", LEGACY_TOKEN_TYPE);
    let refused = fx.send(&legacy);
    assert_eq!((refused.status, refused.error()), (400, "invalid_request"));
    let reply = fx.ok(&legacy.clone().to(To::IdpLegacy));
    assert_eq!(reply.str("issued_token_type"), LEGACY_TOKEN_TYPE);
    // No legacy `typ`: the token is an ordinary ID-JAG and redeems as one.
    assert_eq!(peek(reply.str("access_token")).0["typ"], "oauth-id-jag+jwt");
    fx.ok(&Req::bearer(reply.str("access_token")));
    // The flag does not change the current type.
    let reply = fx.ok(&Req::exchange(&fx.id_token(json!({}))).to(To::IdpLegacy));
    assert_eq!(reply.str("issued_token_type"), ID_JAG_TOKEN_TYPE);
}

#[test]
fn jag7_every_issue_has_a_fresh_jti_and_300_seconds() {
    let fx = Fx::new();
    let mut seen = HashSet::new();
    for _ in 0..50 {
        let reply = fx.ok(&Req::exchange(&fx.id_token(json!({}))));
        let (_, claims) = peek(reply.str("access_token"));
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            300
        );
        assert!(
            seen.insert(claims["jti"].as_str().unwrap().to_owned()),
            "JAG-7: unique jti"
        );
    }
}

#[test]
fn tx11_step_up_carries_max_age_and_acr_values() {
    let fx = Fx::new();
    let reply = fx.send(&Req::exchange(
        &fx.id_token(json!({"sub": MFA_USER, "amr": ["pwd"]})),
    ));
    assert_eq!(
        (reply.status, reply.error()),
        (400, "insufficient_user_authentication")
    );
    assert_eq!(reply.body["max_age"], 300);
    assert_eq!(reply.body["acr_values"], "urn:acme:acr:mfa");
}

#[test]
fn tx12_actor_token_is_accepted_and_not_acted_on() {
    let fx = Fx::new();
    let reply = fx.ok(&Req::exchange(&fx.id_token(json!({})))
        .set("actor_token", "actor-token-opaque-value")
        .set(
            "actor_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ));
    assert!(peek(reply.str("access_token")).1.get("act").is_none());
}

#[test]
fn d3_id_token_audience_forms() {
    let fx = Fx::new();
    fx.ok(&Req::exchange(&fx.id_token(json!({"aud": [IDP_CLIENT]}))));
    fx.ok(&Req::exchange(
        &fx.id_token(json!({"aud": [IDP_CLIENT], "azp": IDP_CLIENT})),
    ));
    fx.ok(&Req::exchange(&fx.id_token(
        json!({"aud": ["calendar-app", IDP_CLIENT], "azp": IDP_CLIENT}),
    )));
    // typ absent is an ID token too.
    fx.ok(&Req::exchange(
        &fx.id_token_h(json!({"typ": null}), json!({})),
    ));
}

/// ID token → token exchange (with `extra` request changes) → jwt-bearer → resource server.
fn chain(fx: &Fx, tx: Req, bearer: impl Fn(&str) -> Req, resource: &str) -> Value {
    let jag = fx.ok(&tx).str("access_token").to_owned();
    let reply = fx.ok(&bearer(&jag));
    let c = pollster::block_on(
        fx.at_validator(resource)
            .validate(reply.str("access_token"), NOW),
    )
    .expect("the chain ends in a valid access token");
    let (_, jag_claims) = peek(&jag);
    assert_eq!(
        c.origin.as_ref().unwrap().jti.as_str(),
        jag_claims["jti"].as_str().unwrap()
    );
    json!({
        "token_type": reply.str("token_type"), "scope": reply.body["scope"], "sub": c.sub,
        "aud": c.aud.as_str(), "client_id": c.client_id.as_str(), "cnf": c.cnf_jkt,
    })
}

#[test]
fn full_chain_id_token_to_access_token() {
    let fx = Fx::new();
    let out = chain(
        &fx,
        Req::exchange(&fx.id_token(json!({}))),
        Req::bearer,
        TASKS,
    );
    assert_eq!(
        out,
        json!({"token_type": "Bearer", "scope": "tasks.read", "sub": USER_LOCAL, "aud": TASKS,
               "client_id": CLIENT, "cnf": null})
    );
    // Another resource, private_key_jwt on both sides (IdP client → its AS-side id, JAG-4).
    let tx = Req::exchange(&fx.id_token(json!({"aud": IDP_PK_CLIENT})))
        .client_assertion(&fx.client_assertion(
            json!({"iss": IDP_PK_CLIENT, "sub": IDP_PK_CLIENT, "aud": IDP_TOKEN_ENDPOINT}),
        ))
        .set("resource", NOTES)
        .set("scope", "notes.read notes.write");
    let out = chain(
        &fx,
        tx,
        |jag| {
            Req::bearer(jag)
                .set("resource", NOTES)
                .client_assertion(&fx.client_assertion(json!({})))
        },
        NOTES,
    );
    assert_eq!(out["client_id"], PK_CLIENT);
    assert_eq!(out["scope"], "notes.read notes.write");
}

#[test]
fn full_chain_with_dpop() {
    // TX-13, DP-13: a DPoP proof at the IdP binds the ID-JAG to the proof key's RFC 7638
    // thumbprint; AS-17 / D-17 / DP-21 at the AS (the access token keeps the same `cnf.jkt`).
    let fx = Fx::new();
    let jkt = fx.keys.dpop.verifying_key().thumbprint().to_owned();
    let tx = || {
        Req::exchange(&fx.id_token(json!({}))).dpop(&fx.dpop_proof(
            &fx.keys.dpop,
            IDP_TOKEN_ENDPOINT,
            json!({}),
        ))
    };
    let jag = fx.ok(&tx()).str("access_token").to_owned();
    assert_eq!(
        peek(&jag).1["cnf"],
        json!({"jkt": jkt}),
        "TX-13: cnf.jkt of the proof key"
    );
    let out = chain(
        &fx,
        tx(),
        |jag| Req::bearer(jag).dpop(&fx.dpop_proof(&fx.keys.dpop, TOKEN_ENDPOINT, json!({}))),
        TASKS,
    );
    assert_eq!(out["token_type"], "DPoP");
    assert_eq!(out["cnf"], json!(jkt));
    // The bound ID-JAG without a proof, or with another key's proof, is refused (D-17).
    for req in [
        Req::bearer(&jag),
        Req::bearer(&jag).dpop(&fx.dpop_proof(&fx.keys.dpop_other, TOKEN_ENDPOINT, json!({}))),
    ] {
        let reply = fx.send(&req);
        assert_eq!((reply.status, reply.error()), (400, "invalid_grant"));
    }
    fx.ok(&Req::bearer(&jag).dpop(&fx.dpop_proof(&fx.keys.dpop, TOKEN_ENDPOINT, json!({}))));
}
