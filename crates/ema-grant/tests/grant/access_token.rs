//! The authorization server's success path in full: the token response (AS-14, AS-15), the
//! access token as the MCP server decodes it (AS-11, RFC 9068), and the decisions that shape
//! a successful answer (D-4, D-5, D-6, D-11, D-12, D-14, D-17, D-19, D-20, D-21); and the
//! access-token claims and header rules of the resource server (D-23, D-25, D-26).

use std::collections::BTreeSet;

use ema_grant::{AccessTokenClaims, AccessTokenError, AccessTokenValidator};
use ema_id_jag::{Issuer, Resource, ScopeSet};
use ema_jose::{
    Algorithm, ClaimError, HeaderError, JwkSet, NumericDateError, SigningKey, StaticKeySource,
    random_id,
};
use serde_json::{Value, json};

use crate::support::*;

/// The access token of a 200 reply, validated as the resource server for `resource` would.
fn decode(fx: &Fx, reply: &Reply, resource: &str) -> AccessTokenClaims {
    pollster::block_on(
        fx.at_validator(resource)
            .validate(reply.str("access_token"), NOW),
    )
    .expect("access token validates at its resource")
}

fn members(reply: &Reply) -> BTreeSet<String> {
    reply.body.as_object().unwrap().keys().cloned().collect()
}

fn scope_of(c: &AccessTokenClaims) -> Option<String> {
    c.scope.as_ref().map(ScopeSet::to_string)
}

#[test]
fn jwt_bearer_success_response_and_access_token() {
    // AS-1, AS-11, AS-13, AS-14, AS-15, AS-16, SEC-9, D-14 (sub wins over email), RFC 9068.
    let fx = Fx::new();
    let jag = fx.jag(json!({"email": EMAIL, "acr": "urn:acme:acr:mfa"}));
    let (_, jag_claims) = peek(&jag);
    let reply = fx.ok(&Req::bearer(&jag));

    let expected: BTreeSet<String> = [
        "access_token",
        "expires_in",
        "resource",
        "scope",
        "token_type",
    ]
    .map(String::from)
    .into();
    assert_eq!(
        members(&reply),
        expected,
        "AS-15: no refresh_token, nothing extra"
    );
    assert_eq!(reply.str("token_type"), "Bearer");
    // RV-24, D-40: five minutes by default.
    assert_eq!(reply.body["expires_in"], 300);
    assert_eq!(reply.str("scope"), "tasks.read tasks.write");
    assert_eq!(reply.str("resource"), TASKS);
    assert_eq!(reply.headers["pragma"], "no-cache");

    let (header, raw) = peek(reply.str("access_token"));
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], "as-k1");
    assert_eq!(
        raw["aud"], TASKS,
        "AS-11: aud is the one selected resource, as a string"
    );

    let c = decode(&fx, &reply, TASKS);
    assert_eq!(c.iss, AS);
    assert_eq!(c.aud, TASKS);
    assert_eq!(
        c.sub, USER_LOCAL,
        "AS-16 / D-14: the sub mapping, not the email one"
    );
    assert_eq!(c.client_id, CLIENT);
    assert_eq!(scope_of(&c).as_deref(), Some("tasks.read tasks.write"));
    assert_eq!(c.iat, NOW);
    assert_eq!(c.exp, NOW.plus(300)); // RV-24, D-40
    assert!(c.jti.as_str().len() >= 16);
    assert_ne!(c.jti.as_str(), jag_claims["jti"].as_str().unwrap());
    assert_eq!(c.groups, ["eng"]);
    assert_eq!(c.roles, ["member"]);
    assert_eq!(c.acr.as_deref(), Some("urn:acme:acr:mfa"));
    assert_eq!(
        c.amr.as_deref(),
        Some(&["pwd".to_owned(), "otp".to_owned()][..])
    );
    assert_eq!(c.auth_time, Some(NOW.minus(600)));
    assert_eq!(c.cnf_jkt, None);
    let origin = c.origin.expect("id_jag origin");
    assert_eq!(origin.iss, IDP);
    assert_eq!(origin.jti.as_str(), jag_claims["jti"].as_str().unwrap());
    assert_eq!(origin.sub, USER);
}

#[test]
fn access_tokens_are_unique_and_audience_restricted() {
    // AS-11, SEC-6: a token for TASKS is refused by NOTES; every token has its own jti.
    let fx = Fx::new();
    let first = fx.ok(&Req::bearer(&fx.jag(json!({}))));
    let second = fx.ok(&Req::bearer(&fx.jag(json!({}))));
    assert_ne!(
        decode(&fx, &first, TASKS).jti,
        decode(&fx, &second, TASKS).jti
    );
    let at_notes = pollster::block_on(
        fx.at_validator(NOTES)
            .validate(first.str("access_token"), NOW),
    );
    assert_eq!(at_notes.unwrap_err(), AccessTokenError::WrongAudience);
}

#[test]
fn resource_server_refuses_other_token_kinds_and_key_references() {
    // SEC-5, D-18 on the MCP server side: an ID-JAG is not an access token; an access token
    // with `x5u` is invalid even though its signature verifies; `x5t` is ignored.
    let fx = Fx::new();
    let validator = fx.at_validator(TASKS);
    let jag = fx.jag(json!({"aud": TASKS}));
    assert!(matches!(
        pollster::block_on(validator.validate(&jag, NOW)),
        Err(AccessTokenError::Header(HeaderError::WrongType { .. }))
    ));
    let reply = fx.ok(&Req::bearer(&fx.jag(json!({}))));
    let (_, claims) = peek(reply.str("access_token"));
    let as_key = fx.keys.as_ring.active();
    let sign = |extra: Value| {
        as_key
            .sign_with_header(
                obj(merge(json!({"typ": "at+jwt"}), extra)),
                claims.to_string().as_bytes(),
            )
            .unwrap()
    };
    for (member, value) in [
        ("x5u", json!("https://attacker.example/c.pem")),
        ("jku", json!("https://attacker.example/jwks")),
        ("x5c", json!(["MIIB"])),
        (
            "jwk",
            Value::Object(as_key.verifying_key().public_jwk().clone()),
        ),
    ] {
        let token = sign(json!({ member: value }));
        assert!(
            matches!(
                pollster::block_on(validator.validate(&token, NOW)),
                Err(AccessTokenError::Header(HeaderError::KeyReference { .. }))
            ),
            "{member}"
        );
    }
    let token = sign(json!({"x5t": "abc", "x5t#S256": "abc"}));
    assert!(pollster::block_on(validator.validate(&token, NOW)).is_ok());
}

#[test]
fn dpop_proof_binds_the_access_token() {
    // D-17, AS-17, SEC-8, DP-21: cnf.jkt + matching proof → token_type DPoP, AT cnf.jkt =
    // thumbprint.
    let fx = Fx::new();
    let jkt = fx.keys.dpop.verifying_key().thumbprint().to_owned();
    let proof = fx.dpop_proof(&fx.keys.dpop, TOKEN_ENDPOINT, json!({}));
    let reply = fx.ok(&Req::bearer(&fx.jag(json!({"cnf": {"jkt": jkt}}))).dpop(&proof));
    assert_eq!(reply.str("token_type"), "DPoP");
    let (_, raw) = peek(reply.str("access_token"));
    assert_eq!(raw["cnf"], json!({"jkt": jkt}));
    assert_eq!(
        decode(&fx, &reply, TASKS).cnf_jkt.as_deref(),
        Some(jkt.as_str())
    );

    // A proof on a request whose ID-JAG is not key-bound still binds the access token
    // (RFC 9449 §5), and AS-18's resource only issues bound tokens.
    let proof = fx.dpop_proof(&fx.keys.dpop_other, TOKEN_ENDPOINT, json!({}));
    let reply = fx.ok(&Req::bearer(&fx.jag(json!({}))).dpop(&proof));
    assert_eq!(reply.str("token_type"), "DPoP");
    assert_eq!(
        decode(&fx, &reply, TASKS).cnf_jkt.as_deref(),
        Some(fx.keys.dpop_other.verifying_key().thumbprint())
    );
    // D-27: a query in the proof's `htu` is refused; an equivalent spelling (scheme and host
    // case, default port) is accepted.
    let proof = fx.dpop_proof(
        &fx.keys.dpop,
        TOKEN_ENDPOINT,
        json!({"htu": format!("{TOKEN_ENDPOINT}?x=1")}),
    );
    let refused = fx.send(
        &Req::bearer(&fx.jag(json!({"resource": VAULT, "scope": "vault.read"})))
            .set("resource", VAULT)
            .dpop(&proof),
    );
    assert_eq!(refused.status, 400);
    assert_eq!(refused.str("error"), "invalid_dpop_proof");
    assert_eq!(TOKEN_ENDPOINT, "https://auth.tasks.example/token");
    let spelled = "HTTPS://AUTH.tasks.example:443/./token";
    let proof = fx.dpop_proof(&fx.keys.dpop, TOKEN_ENDPOINT, json!({"htu": spelled}));
    let reply = fx.ok(
        &Req::bearer(&fx.jag(json!({"resource": VAULT, "scope": "vault.read"})))
            .set("resource", VAULT)
            .dpop(&proof),
    );
    assert_eq!(reply.str("token_type"), "DPoP");
    assert_eq!(decode(&fx, &reply, VAULT).aud, VAULT);
}

#[test]
fn d5_asking_for_fewer_scopes_is_never_refused() {
    // D-5, AS-13: requested ∩ ID-JAG; the response carries the granted scope.
    let fx = Fx::new();
    let reply = fx.ok(&Req::bearer(&fx.jag(json!({}))).set("scope", "tasks.write"));
    assert_eq!(reply.str("scope"), "tasks.write");
    assert_eq!(
        scope_of(&decode(&fx, &reply, TASKS)).as_deref(),
        Some("tasks.write")
    );
}

#[test]
fn d20_id_jag_without_scope() {
    // D-20: the resource's defaults, or the requested defined scopes; an empty result issues
    // a token without `scope`.
    let fx = Fx::new();
    let reply = fx.ok(&Req::bearer(&fx.jag(json!({"scope": null}))));
    assert_eq!(reply.str("scope"), "tasks.read");
    let reply = fx.ok(&Req::bearer(&fx.jag(json!({"scope": null}))).set("scope", "tasks.write"));
    assert_eq!(reply.str("scope"), "tasks.write");

    let reply = fx.ok(
        &Req::bearer(&fx.jag(json!({"scope": null, "resource": NOTES}))).set("resource", NOTES),
    );
    assert!(reply.body.get("scope").is_none(), "{}", reply.raw);
    let c = decode(&fx, &reply, NOTES);
    assert_eq!(c.scope, None);
    let (_, raw) = peek(reply.str("access_token"));
    assert!(raw.get("scope").is_none());
}

#[test]
fn d21_oidc_scopes_dropped_and_drop_policy() {
    // D-21: OIDC scopes dropped silently; a resource configured to drop unknown scopes drops
    // them, never widening access.
    let fx = Fx::new();
    let reply = fx.ok(&Req::bearer(
        &fx.jag(json!({"scope": "openid profile tasks.read offline_access"})),
    ));
    assert_eq!(reply.str("scope"), "tasks.read");
    let reply = fx.ok(&Req::bearer(
        &fx.jag(json!({"resource": NOTES, "scope": "notes.read calendar.read tasks.write"})),
    )
    .set("resource", NOTES));
    assert_eq!(reply.str("scope"), "notes.read");
}

#[test]
fn d4_resource_selection() {
    let fx = Fx::new();
    // (a)+(c): claim [TASKS, NOTES], request NOTES → the token is for NOTES only.
    let reply = fx.ok(&Req::bearer(
        &fx.jag(json!({"resource": [TASKS, NOTES], "scope": "notes.write"})),
    )
    .set("resource", NOTES));
    assert_eq!(reply.str("resource"), NOTES);
    assert_eq!(decode(&fx, &reply, NOTES).aud, NOTES);
    // (a): a claim of one value without a request parameter.
    let reply = fx.ok(&Req::bearer(&fx.jag(json!({}))).remove("resource"));
    assert_eq!(reply.str("resource"), TASKS);
    // (b): no claim; the request names a registered resource.
    let reply = fx.ok(
        &Req::bearer(&fx.jag(json!({"resource": null, "scope": "notes.read"})))
            .set("resource", NOTES),
    );
    assert_eq!(decode(&fx, &reply, NOTES).aud, NOTES);
    // (b): no claim, no request, exactly one registered resource.
    let reply = fx.ok(&Req::bearer(&fx.jag(json!({"resource": null})))
        .remove("resource")
        .to(To::AsSingle));
    assert_eq!(reply.str("resource"), TASKS);
}

#[test]
fn d14_subject_resolution() {
    let fx = Fx::new();
    // Email linking for a subject without a `sub` mapping.
    let reply = fx.ok(&Req::bearer(
        &fx.jag(json!({"sub": "00uNoMapping", "email": LINKED_EMAIL})),
    ));
    assert_eq!(decode(&fx, &reply, TASKS).sub, "u-42");
    // The multi-tenant issuer: (iss, tenant, sub).
    let jag = fx.jag_signed(
        &fx.keys.multi,
        json!({}),
        json!({"iss": MULTI, "sub": MULTI_USER, "tenant": "acme"}),
    );
    let reply = fx.ok(&Req::bearer(&jag));
    let c = decode(&fx, &reply, TASKS);
    assert_eq!(c.sub, "u-m1");
    assert_eq!(c.tenant.as_deref(), Some("acme"));
    assert_eq!(c.origin.unwrap().iss, MULTI);
}

#[test]
fn d12_jti_exact_and_as7_replay_scoped_by_issuer() {
    let fx = Fx::new();
    for jti in ["jti-Case-1", "JTI-CASE-1", "jti-Case-1 ", "jti-Case-1/"] {
        fx.ok(&Req::bearer(&fx.jag(json!({"jti": jti}))));
    }
    let multi = |jti: &str| {
        fx.jag_signed(
            &fx.keys.multi,
            json!({}),
            json!({"iss": MULTI, "sub": MULTI_USER, "tenant": "acme", "jti": jti}),
        )
    };
    fx.ok(&Req::bearer(&multi("jti-Case-1")));
    let again = fx.send(&Req::bearer(&multi("jti-Case-1")));
    assert_eq!((again.status, again.error()), (400, "invalid_grant"));
}

#[test]
fn d6_failed_attempts_do_not_burn_the_jti() {
    // D-6: the jti is recorded only when a token is issued; the replay error says plainly that
    // the ID-JAG was used and a new one is needed.
    let fx = Fx::new();
    let jag = fx.jag(json!({"scope": "tasks.read"}));
    let failures = [
        // step 14: a scope the ID-JAG does not grant.
        (
            Req::bearer(&jag).set("scope", "tasks.read tasks.write"),
            "invalid_scope",
        ),
        // step 12: a resource the ID-JAG does not name.
        (Req::bearer(&jag).set("resource", NOTES), "invalid_target"),
        // step 11: a broken DPoP proof.
        (
            Req::bearer(&jag).dpop("not-a-proof-at-all"),
            "invalid_dpop_proof",
        ),
        // step 10: another client.
        (
            Req::bearer(&jag).client_assertion(&fx.client_assertion(json!({}))),
            "invalid_grant",
        ),
        // step 2: a wrong secret.
        (
            Req::bearer(&jag).basic(CLIENT, "wrong-secret"),
            "invalid_client",
        ),
    ];
    for (req, error) in failures {
        assert_eq!(fx.send(&req).error(), error);
    }
    let ok = fx.ok(&Req::bearer(&jag).set("scope", "tasks.read"));
    assert_eq!(ok.str("scope"), "tasks.read");
    let replay = fx.send(&Req::bearer(&jag));
    assert_eq!((replay.status, replay.error()), (400, "invalid_grant"));
    let text = replay.description();
    assert!(
        text.contains("already used") && text.contains("new one"),
        "{text}"
    );
    assert!(text.contains("ID-JAG") && text.contains("IdP"), "{text}");
}

#[test]
fn d11_every_client_authentication_method() {
    // AS-9, D-11: Basic (form-urlencoded), client_secret_post, private_key_jwt (issuer or
    // token endpoint as aud, typ absent/JWT/client-authentication+jwt), and public CIMD clients
    // where enabled.
    let fx = Fx::new();
    let jag_for = |client: &str| fx.jag(json!({"client_id": client}));
    let cases = [
        Req::bearer(&jag_for(CLIENT)),
        Req::bearer(&jag_for(POST_CLIENT)).post_secret(POST_CLIENT, POST_SECRET),
        Req::bearer(&jag_for(D11_CLIENT)).basic(D11_CLIENT, D11_SECRET),
        Req::bearer(&jag_for(PK_CLIENT)).client_assertion(&fx.client_assertion(json!({}))),
        Req::bearer(&jag_for(PK_CLIENT)).client_assertion(&fx.client_assertion(json!({"aud": AS}))),
        Req::bearer(&jag_for(PK_CLIENT)).client_assertion(
            &fx.client_assertion_h(json!({"typ": null}), json!({"aud": [AS, "x"]})),
        ),
        Req::bearer(&jag_for(PK_CLIENT))
            .client_assertion(&fx.client_assertion_h(json!({"typ": "JWT"}), json!({"iat": null})))
            .set("client_id", PK_CLIENT),
        Req::bearer(&jag_for(CIMD_CLIENT))
            .no_auth()
            .set("client_id", CIMD_CLIENT)
            .to(To::AsPublic),
    ];
    for req in cases {
        let reply = fx.ok(&req);
        let id = req.param("client_id").map(str::to_owned);
        let c = decode(&fx, &reply, TASKS);
        if let Some(id) = id {
            assert_eq!(c.client_id, id.as_str());
        }
        assert_eq!(
            c.client_id,
            peek(req.param("assertion").unwrap()).1["client_id"]
                .as_str()
                .unwrap()
        );
    }
}

#[test]
fn d19_unusable_jwks_entries_are_set_aside_not_fatal() {
    let fx = Fx::new();
    let keys = fx.as_key_source();
    let good = keys.resolve_now(IDP, Some("idp-k1"), ema_jose::Algorithm::ES256);
    assert!(good.is_ok());
    for kid in ["idp-enc-1", "idp-hmac", "idp-k256k"] {
        assert!(matches!(
            keys.resolve_now(IDP, Some(kid), ema_jose::Algorithm::ES256),
            Err(ema_jose::KeyLookupError::Unusable { .. })
        ));
    }
    fx.ok(&Req::bearer(&fx.jag(json!({"jti": random_id().unwrap()}))));
}

/// The claims of a real access token for [`TASKS`], and a signer of look-alikes: the AS's own
/// key signs `overrides` merged into those claims, with `header` merged into `{"typ": "at+jwt"}`.
fn at_forger(fx: &Fx) -> impl Fn(Value, Value) -> String + '_ {
    let reply = fx.ok(&Req::bearer(&fx.jag(json!({}))));
    let (_, claims) = peek(reply.str("access_token"));
    let key = fx.keys.as_ring.active();
    move |header: Value, overrides: Value| {
        let claims = merge(claims.clone(), overrides);
        key.sign_with_header(
            obj(merge(json!({"typ": "at+jwt"}), header)),
            claims.to_string().as_bytes(),
        )
        .unwrap()
    }
}

#[test]
fn d25_access_token_claims_are_typed_and_non_empty() {
    // D-25: required strings non-empty; a present claim of the wrong JSON type is an error,
    // never a default. Above all a `cnf` that cannot be read never turns a DPoP-bound token
    // into a bearer token.
    let fx = Fx::new();
    let validator = fx.at_validator(TASKS);
    let forge = at_forger(&fx);
    let validate = |overrides: Value| {
        pollster::block_on(validator.validate(&forge(json!({}), overrides), NOW))
    };

    // Controls: the token as issued, and with well-formed optional claims.
    let plain = validate(json!({})).expect("the token as issued");
    assert_eq!(plain.cnf_jkt, None);
    assert!(plain.origin.is_some());
    let full = validate(json!({
        "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
        "authorization_details": [{"type": "task_access", "actions": ["read"]}],
        "tenant": "acme", "acr": "urn:acme:acr:mfa", "groups": [], "roles": ["member"],
    }))
    .expect("well-formed optional claims");
    assert_eq!(
        full.cnf_jkt.as_deref(),
        Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
    );
    assert_eq!(full.authorization_details.map(|d| d.len()), Some(1));
    assert_eq!(full.tenant.as_deref(), Some("acme"));

    let wrong = |claim, expected| ClaimError::WrongType { claim, expected };
    let rows: Vec<(Value, ClaimError)> = vec![
        (json!({"sub": ""}), ClaimError::Empty { claim: "sub" }),
        (
            json!({"client_id": ""}),
            ClaimError::Empty { claim: "client_id" },
        ),
        (json!({"jti": ""}), ClaimError::Empty { claim: "jti" }),
        (json!({"sub": 17}), wrong("sub", "a string")),
        (
            json!({"client_id": [CLIENT]}),
            wrong("client_id", "a string"),
        ),
        (json!({"jti": {"id": "x"}}), wrong("jti", "a string")),
        (json!({"sub": null}), ClaimError::Missing { claim: "sub" }),
        (
            json!({"client_id": null}),
            ClaimError::Missing { claim: "client_id" },
        ),
        (json!({"jti": null}), ClaimError::Missing { claim: "jti" }),
        // `cnf`: never "not bound" by accident.
        (json!({"cnf": "abc"}), wrong("cnf", "an object")),
        (json!({"cnf": [{"jkt": "abc"}]}), wrong("cnf", "an object")),
        (json!({"cnf": true}), wrong("cnf", "an object")),
        (json!({"cnf": {"jkt": 1}}), wrong("cnf.jkt", "a string")),
        (
            json!({"cnf": {"jkt": ["abc"]}}),
            wrong("cnf.jkt", "a string"),
        ),
        (
            json!({"cnf": {"jkt": ""}}),
            ClaimError::Empty { claim: "cnf.jkt" },
        ),
        (json!({"cnf": {}}), ClaimError::Missing { claim: "cnf.jkt" }),
        (
            json!({"cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}),
            ClaimError::Missing { claim: "cnf.jkt" },
        ),
        // The ID-JAG origin.
        (json!({"id_jag": IDP}), wrong("id_jag", "an object")),
        (json!({"id_jag": [IDP]}), wrong("id_jag", "an object")),
        (
            json!({"id_jag": {"iss": IDP, "jti": "j-1", "sub": 7}}),
            wrong("id_jag.sub", "a string"),
        ),
        (
            json!({"id_jag": {"iss": "", "jti": "j-1", "sub": USER}}),
            ClaimError::Empty {
                claim: "id_jag.iss",
            },
        ),
        (
            json!({"id_jag": {"iss": IDP, "sub": USER}}),
            ClaimError::Missing {
                claim: "id_jag.jti",
            },
        ),
        // The rest of the known claims.
        (
            json!({"authorization_details": {"type": "task_access"}}),
            wrong("authorization_details", "an array of objects"),
        ),
        (
            json!({"authorization_details": ["task_access"]}),
            wrong("authorization_details", "an array of objects"),
        ),
        (json!({"tenant": 1}), wrong("tenant", "a string")),
        (json!({"acr": ["urn:x"]}), wrong("acr", "a string")),
        (json!({"scope": ["tasks.read"]}), wrong("scope", "a string")),
        (
            json!({"groups": "eng"}),
            wrong("groups", "an array of strings"),
        ),
        (json!({"roles": [1]}), wrong("roles", "an array of strings")),
        (json!({"amr": "pwd"}), wrong("amr", "an array of strings")),
        (
            json!({"auth_time": "1767225000"}),
            ClaimError::Date(NumericDateError::NotANumber { claim: "auth_time" }),
        ),
    ];
    for (overrides, expected) in rows {
        assert_eq!(
            validate(overrides.clone()),
            Err(AccessTokenError::Claims(expected)),
            "{overrides}"
        );
    }
    // An empty `iss` or `aud` never names this AS or this resource.
    assert_eq!(
        validate(json!({"iss": ""})),
        Err(AccessTokenError::WrongIssuer)
    );
    assert_eq!(
        validate(json!({"aud": ""})),
        Err(AccessTokenError::WrongAudience)
    );
}

#[test]
fn d23_access_token_with_cty_is_refused() {
    // D-23: an access token is never a nested JWT; any `cty` makes it invalid.
    let fx = Fx::new();
    let validator = fx.at_validator(TASKS);
    let forge = at_forger(&fx);
    let validate =
        |header: Value| pollster::block_on(validator.validate(&forge(header, json!({})), NOW));
    assert!(validate(json!({})).is_ok(), "control: no cty");
    for cty in ["JWT", "jwt", "at+jwt", "application/json", ""] {
        assert_eq!(
            validate(json!({ "cty": cty })).map(|_| ()),
            Err(AccessTokenError::Header(HeaderError::ContentType {
                found: cty.to_owned()
            })),
            "{cty}"
        );
    }
    assert!(matches!(
        validate(json!({"cty": 1})),
        Err(AccessTokenError::Malformed(_))
    ));
}

#[test]
fn d26_resource_server_default_allow_list() {
    // D-26: by default the resource server accepts ES256, RS256, PS256 and EdDSA access tokens
    // and refuses the other implemented algorithms (opt-in), whatever the AS's key set holds.
    let fx = Fx::new();
    let reply = fx.ok(&Req::bearer(&fx.jag(json!({}))));
    let (_, claims) = peek(reply.str("access_token"));
    let rsa = SigningKey::generate(Algorithm::RS256, None).unwrap();
    let rsa_der = rsa.to_pkcs8_der().unwrap();
    let signer = |alg: Algorithm| {
        let kid = Some(format!("as-{}", alg.name()));
        if alg.is_rsa() {
            SigningKey::from_pkcs8_der(alg, kid, &rsa_der).unwrap()
        } else {
            SigningKey::generate(alg, kid).unwrap()
        }
    };
    let signers: Vec<SigningKey> = Algorithm::ALL.into_iter().map(signer).collect();
    let validator = AccessTokenValidator::new(
        Issuer::new(AS),
        Resource::new(TASKS),
        StaticKeySource::new().with_issuer(
            AS,
            JwkSet::from_keys(signers.iter().map(|s| s.verifying_key().clone())),
        ),
    );
    for key in &signers {
        let alg = key.algorithm();
        let token = key
            .sign_jwt(Some("at+jwt"), &claims)
            .expect("sign with any implemented algorithm");
        let outcome = pollster::block_on(validator.validate(&token, NOW)).map(|_| ());
        let default = [
            Algorithm::ES256,
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::EdDSA,
        ];
        if default.contains(&alg) {
            assert_eq!(outcome, Ok(()), "{alg} is on the default allow-list");
        } else {
            assert_eq!(
                outcome,
                Err(AccessTokenError::Header(HeaderError::AlgorithmNotAllowed {
                    alg
                })),
                "{alg} is opt-in"
            );
        }
    }
}
