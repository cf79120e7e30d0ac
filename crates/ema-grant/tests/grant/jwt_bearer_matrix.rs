//! The authorization server's negative matrix: every row is one defect in an otherwise good
//! jwt-bearer request, the exact status and `error` it must produce, and (the same builder
//! with `bad = false`) a positive control that must succeed on the same fixture.

use ema_grant::InMemoryReplayStore;
use ema_jose::{Algorithm, JwkSet, SigningKey, StaticKeySource, random_id};
use serde_json::{Value, json};

use crate::support::*;

fn pick<T>(bad: bool, defect: T, fine: T) -> T {
    if bad { defect } else { fine }
}

/// A request carrying a good ID-JAG with `overrides`.
fn with(fx: &Fx, overrides: Value) -> Req {
    Req::bearer(&fx.jag(overrides))
}

/// A request whose ID-JAG header is `header` merged into the default.
fn with_header(fx: &Fx, header: Value) -> Req {
    Req::bearer(&fx.jag_h(header, json!({})))
}

/// An ID-JAG of the multi-tenant issuer (tenant `acme`) with `overrides`.
fn multi_jag(fx: &Fx, overrides: Value) -> String {
    fx.jag_signed(
        &fx.keys.multi,
        json!({}),
        merge(
            json!({"iss": MULTI, "sub": MULTI_USER, "tenant": "acme"}),
            overrides,
        ),
    )
}

/// A `private_key_jwt` request of [`PK_CLIENT`] with a fresh ID-JAG for it.
fn pk_req(fx: &Fx, assertion: &str) -> Req {
    Req::bearer(&fx.jag(json!({"client_id": PK_CLIENT}))).client_assertion(assertion)
}

/// A request bound to the `dpop` key (`cnf.jkt`) carrying a proof by `proof_key`, if any.
fn bound(fx: &Fx, proof_key: Option<&SigningKey>) -> Req {
    let jkt = fx.keys.dpop.verifying_key().thumbprint().to_owned();
    let req = with(fx, json!({"cnf": {"jkt": jkt}}));
    match proof_key {
        Some(k) => req.dpop(&fx.dpop_proof(k, TOKEN_ENDPOINT, json!({}))),
        None => req,
    }
}

/// A request with a DPoP proof whose claims get `overrides` and header `header`.
fn proof(fx: &Fx, header: Value, overrides: Value) -> Req {
    with(fx, json!({})).dpop(&dpop_proof_h(
        &fx.keys.dpop,
        header,
        TOKEN_ENDPOINT,
        overrides,
    ))
}

/// The claims of a good ID-JAG as raw JSON, for hand-built tokens.
fn claims_json(fx: &Fx) -> String {
    fx.jag_claims().to_string()
}

const X5T: &str = "NjVBRjY5MDlCMUIwNzU4RTA2QzZFMDQ4QzQ2MDAyQjVDNjk1RTM2Qg";

pub(crate) fn rows() -> Vec<Row> {
    vec![
        // ---- (1) request shape: AS-1, AS-20 -------------------------------------------------
        row(
            "AS-1 AS-20",
            "GET instead of POST",
            400,
            "invalid_request",
            |fx, bad| with(fx, json!({})).method(pick(bad, "GET", "POST")),
        ),
        row(
            "AS-1 AS-20",
            "PUT instead of POST",
            400,
            "invalid_request",
            |fx, bad| with(fx, json!({})).method(pick(bad, "PUT", "POST")),
        ),
        row(
            "AS-1 AS-20",
            "Content-Type application/json",
            400,
            "invalid_request",
            |fx, bad| {
                with(fx, json!({})).content_type(Some(pick(
                    bad,
                    "application/json",
                    "application/x-www-form-urlencoded; charset=UTF-8",
                )))
            },
        ),
        row(
            "AS-1 AS-20",
            "no Content-Type",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.content_type(None) } else { r }
            },
        ),
        row(
            "AS-1 AS-20",
            "Content-Type multipart/form-data",
            400,
            "invalid_request",
            |fx, bad| {
                with(fx, json!({})).content_type(Some(pick(
                    bad,
                    "multipart/form-data; boundary=x",
                    "application/x-www-form-urlencoded",
                )))
            },
        ),
        row(
            "AS-1",
            "repeated assertion",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.add("assertion", &fx.jag(json!({})))
                } else {
                    r
                }
            },
        ),
        row(
            "AS-1",
            "repeated grant_type (same value)",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.add("grant_type", ema_grant::JWT_BEARER)
                } else {
                    r
                }
            },
        ),
        row(
            "AS-1",
            "repeated resource",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.add("resource", TASKS) } else { r }
            },
        ),
        row(
            "AS-1",
            "repeated scope",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({})).set("scope", "tasks.read");
                if bad {
                    r.add("scope", "tasks.write")
                } else {
                    r
                }
            },
        ),
        row(
            "AS-1",
            "repeated client_id",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({})).set("client_id", CLIENT);
                if bad { r.add("client_id", CLIENT) } else { r }
            },
        ),
        row(
            "AS-1",
            "repeated parameter, one occurrence empty",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.add("assertion", "") } else { r }
            },
        ),
        row(
            "AS-1",
            "missing grant_type",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.remove("grant_type") } else { r }
            },
        ),
        row(
            "AS-1",
            "empty grant_type",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.set("grant_type", "") } else { r }
            },
        ),
        row(
            "AS-1",
            "token-exchange grant_type at the AS",
            400,
            "unsupported_grant_type",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.set("grant_type", ema_grant::TOKEN_EXCHANGE)
                } else {
                    r
                }
            },
        ),
        row(
            "AS-1",
            "authorization_code grant_type",
            400,
            "unsupported_grant_type",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.set("grant_type", "authorization_code")
                } else {
                    r
                }
            },
        ),
        row(
            "AS-1",
            "jwt-dpop grant_type (not implemented)",
            400,
            "unsupported_grant_type",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.set("grant_type", "urn:ietf:params:oauth:grant-type:jwt-dpop")
                } else {
                    r
                }
            },
        ),
        row(
            "AS-1 D-12",
            "grant_type upper-case",
            400,
            "unsupported_grant_type",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.set("grant_type", &ema_grant::JWT_BEARER.to_uppercase())
                } else {
                    r
                }
            },
        ),
        row(
            "AS-1",
            "missing assertion",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.remove("assertion") } else { r }
            },
        ),
        row(
            "AS-1",
            "empty assertion",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.set("assertion", "") } else { r }
            },
        ),
        row(
            "AS-20",
            "body is not valid form encoding",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    let body = format!("{}&note=%zz", r.body());
                    r.raw_body(&body)
                } else {
                    r
                }
            },
        ),
        row(
            "AS-1",
            "repeated Authorization header",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.header("authorization", &basic(CLIENT, SECRET))
                } else {
                    r
                }
            },
        ),
        row(
            "SEC-10",
            "assertion only in the URL query, not the body",
            400,
            "invalid_request",
            |fx, bad| {
                let jag = fx.jag(json!({}));
                if bad {
                    Req::bearer(&jag)
                        .remove("assertion")
                        .uri(&format!("/token?assertion={jag}"))
                } else {
                    Req::bearer(&jag)
                }
            },
        ),
        // ---- (2) client authentication: AS-9, AS-20, D-11 -------------------------------------
        row(
            "AS-9 AS-20 D-11",
            "no client authentication",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.no_auth() } else { r }
            },
        ),
        row(
            "AS-9 D-11",
            "confidential client sends client_id only",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.no_auth().set("client_id", CLIENT)
                } else {
                    r
                }
            },
        ),
        row(
            "AS-9 AS-20",
            "wrong Basic secret",
            401,
            "invalid_client",
            |fx, bad| with(fx, json!({})).basic(CLIENT, pick(bad, "s3cr3T", SECRET)),
        ),
        row(
            "AS-9 AS-20",
            "empty Basic secret",
            401,
            "invalid_client",
            |fx, bad| with(fx, json!({})).basic(CLIENT, pick(bad, "", SECRET)),
        ),
        row(
            "AS-9 AS-20",
            "unknown client",
            401,
            "invalid_client",
            |fx, bad| with(fx, json!({})).basic(pick(bad, "tc_unknown_00", CLIENT), SECRET),
        ),
        row(
            "AS-9 D-12",
            "client id upper-case in Basic",
            401,
            "invalid_client",
            |fx, bad| with(fx, json!({})).basic(pick(bad, "TC_5F2A91", CLIENT), SECRET),
        ),
        row(
            "AS-9 D-12",
            "client id with trailing slash in Basic",
            401,
            "invalid_client",
            |fx, bad| with(fx, json!({})).basic(pick(bad, "tc_5f2a91/", CLIENT), SECRET),
        ),
        row(
            "AS-9",
            "wrong client_secret_post",
            401,
            "invalid_client",
            |fx, bad| {
                with(fx, json!({"client_id": POST_CLIENT}))
                    .post_secret(POST_CLIENT, pick(bad, "s3cr3t-nope", POST_SECRET))
            },
        ),
        row(
            "AS-9",
            "client_secret_post without client_id",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({"client_id": POST_CLIENT}))
                    .post_secret(POST_CLIENT, POST_SECRET);
                if bad { r.remove("client_id") } else { r }
            },
        ),
        row(
            "AS-9 D-24",
            "client_secret_basic client sends its secret in the body",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.post_secret(CLIENT, SECRET)
                } else {
                    r
                }
            },
        ),
        row(
            "AS-9 D-24",
            "client_secret_post client uses HTTP Basic",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({"client_id": POST_CLIENT}));
                if bad {
                    r.basic(POST_CLIENT, POST_SECRET)
                } else {
                    r.post_secret(POST_CLIENT, POST_SECRET)
                }
            },
        ),
        row(
            "AS-9",
            "a secret for a private_key_jwt client",
            401,
            "invalid_client",
            |fx, bad| {
                let r = Req::bearer(&fx.jag(json!({"client_id": PK_CLIENT})));
                if bad {
                    r.basic(PK_CLIENT, SECRET)
                } else {
                    r.client_assertion(&fx.client_assertion(json!({})))
                }
            },
        ),
        row(
            "AS-9",
            "a client assertion for a secret client",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.client_assertion(&fx.client_assertion(json!({"iss": CLIENT, "sub": CLIENT})))
                } else {
                    r
                }
            },
        ),
        row(
            "AS-1 AS-9",
            "Basic and client_secret_post together",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.set("client_id", CLIENT).set("client_secret", SECRET)
                } else {
                    r
                }
            },
        ),
        row(
            "AS-1 AS-9",
            "Basic and client_assertion together",
            400,
            "invalid_request",
            |fx, bad| {
                let r = pk_req(fx, &fx.client_assertion(json!({})));
                if bad {
                    r.authorization(&basic(CLIENT, SECRET))
                } else {
                    r
                }
            },
        ),
        row(
            "AS-1 AS-9",
            "client_secret_post and client_assertion together",
            400,
            "invalid_request",
            |fx, bad| {
                let r = pk_req(fx, &fx.client_assertion(json!({})));
                if bad {
                    r.set("client_secret", SECRET)
                } else {
                    r
                }
            },
        ),
        row(
            "AS-9",
            "body client_id differs from the Basic client",
            400,
            "invalid_request",
            |fx, bad| with(fx, json!({})).set("client_id", pick(bad, PK_CLIENT, CLIENT)),
        ),
        row(
            "AS-9 AS-20 D-24",
            "Basic header that is not base64",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.authorization("Basic !!not*base64!!")
                } else {
                    r
                }
            },
        ),
        row(
            "AS-9 AS-20 D-24",
            "Basic credentials without a colon",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.authorization(&basic_raw(&format!("{CLIENT}{SECRET}")))
                } else {
                    r
                }
            },
        ),
        row(
            "AS-9 AS-20 D-11 D-24",
            "Basic credentials that are not form-urldecodable",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.authorization(&basic_raw(&format!("{CLIENT}%zz:{SECRET}")))
                } else {
                    r
                }
            },
        ),
        row(
            "AS-9 AS-20 D-24",
            "Basic credentials with an empty client id",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.authorization(&basic_raw(&format!(":{SECRET}")))
                } else {
                    r
                }
            },
        ),
        row(
            "AS-9 AS-20",
            // RFC 6749 §5.2: an unsupported authentication method is `invalid_client`.
            "Authorization scheme other than Basic",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.authorization("Bearer some-access-token-value")
                } else {
                    r
                }
            },
        ),
        row(
            "AS-9",
            "client not allowed the jwt-bearer grant",
            400,
            "unauthorized_client",
            |fx, bad| {
                let client = pick(bad, CODE_CLIENT, CLIENT);
                Req::bearer(&fx.jag(json!({"client_id": client})))
                    .basic(client, pick(bad, CODE_SECRET, SECRET))
            },
        ),
        row(
            "AS-9 SEC-1",
            "client_assertion replayed",
            401,
            "invalid_client",
            |fx, bad| {
                let assertion = fx.client_assertion(json!({}));
                if bad {
                    fx.ok(&pk_req(fx, &assertion));
                    pk_req(fx, &assertion)
                } else {
                    pk_req(fx, &assertion)
                }
            },
        ),
        row(
            "AS-9",
            "client_assertion signed by another key",
            401,
            "invalid_client",
            |fx, bad| {
                let key = pick(bad, &fx.keys.stranger, &fx.keys.client);
                pk_req(fx, &fx.client_assertion_signed(key, json!({}), json!({})))
            },
        ),
        row(
            "AS-9 D-12",
            "client_assertion aud with trailing slash",
            401,
            "invalid_client",
            |fx, bad| {
                // The control uses the issuer identifier: both it and the endpoint URL are accepted.
                let aud = pick(bad, "https://auth.tasks.example/", AS);
                pk_req(fx, &fx.client_assertion(json!({"aud": aud})))
            },
        ),
        row(
            "AS-9",
            "client_assertion aud is the IdP",
            401,
            "invalid_client",
            |fx, bad| {
                let aud = pick(bad, IDP_TOKEN_ENDPOINT, TOKEN_ENDPOINT);
                pk_req(fx, &fx.client_assertion(json!({"aud": aud})))
            },
        ),
        row(
            "AS-9 SEC-2",
            "client_assertion expired",
            401,
            "invalid_client",
            |fx, bad| {
                let exp = pick(bad, at(-31), at(-29));
                pk_req(
                    fx,
                    &fx.client_assertion(json!({"iat": at(-100), "exp": exp})),
                )
            },
        ),
        row(
            "AS-9",
            "client_assertion without exp",
            401,
            "invalid_client",
            |fx, bad| {
                let exp = pick(bad, Value::Null, at(60));
                pk_req(fx, &fx.client_assertion(json!({"exp": exp})))
            },
        ),
        row(
            "AS-9",
            "client_assertion without jti",
            401,
            "invalid_client",
            |fx, bad| {
                let jti = pick(bad, Value::Null, json!(random_id().unwrap()));
                pk_req(fx, &fx.client_assertion(json!({"jti": jti})))
            },
        ),
        row(
            "AS-9",
            "client_assertion sub differs from iss",
            401,
            "invalid_client",
            |fx, bad| {
                let sub = pick(bad, CLIENT, PK_CLIENT);
                pk_req(fx, &fx.client_assertion(json!({"sub": sub})))
            },
        ),
        row(
            "AS-9",
            "wrong client_assertion_type",
            400,
            "invalid_request",
            |fx, bad| {
                let r = pk_req(fx, &fx.client_assertion(json!({})));
                if bad {
                    r.set(
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
                    )
                } else {
                    r
                }
            },
        ),
        row(
            "AS-9",
            "client_assertion is not a JWT",
            401,
            "invalid_client",
            |fx, bad| {
                let assertion = fx.client_assertion(json!({}));
                pk_req(fx, pick(bad, "not-a-client-assertion", assertion.as_str()))
            },
        ),
        row(
            "AS-9 D-18",
            "client_assertion header jwk (x5t is fine)",
            401,
            "invalid_client",
            |fx, bad| {
                let jwk = Value::Object(fx.keys.client.verifying_key().public_jwk().clone());
                let header = pick(
                    bad,
                    json!({"jwk": jwk}),
                    json!({"x5t": X5T, "x5t#S256": X5T}),
                );
                pk_req(fx, &fx.client_assertion_h(header, json!({})))
            },
        ),
        row(
            "AS-9 D-18",
            "client_assertion header jku",
            401,
            "invalid_client",
            |fx, bad| {
                let header = pick(
                    bad,
                    json!({"jku": "https://attacker.example/jwks"}),
                    json!({"x5t": X5T}),
                );
                pk_req(fx, &fx.client_assertion_h(header, json!({})))
            },
        ),
        row(
            "AS-9 D-18",
            "client_assertion header x5u",
            401,
            "invalid_client",
            |fx, bad| {
                let header = pick(
                    bad,
                    json!({"x5u": "https://attacker.example/cert.pem"}),
                    json!({"x5t": X5T}),
                );
                pk_req(fx, &fx.client_assertion_h(header, json!({})))
            },
        ),
        row(
            "AS-9 D-18",
            "client_assertion header x5c",
            401,
            "invalid_client",
            |fx, bad| {
                let header = pick(
                    bad,
                    json!({"x5c": ["MIIBszCCAVmgAwIBAgIUQ"]}),
                    json!({"x5t": X5T}),
                );
                pk_req(fx, &fx.client_assertion_h(header, json!({})))
            },
        ),
        row(
            "AS-9 SEC-5",
            "client_assertion typ oauth-id-jag+jwt",
            401,
            "invalid_client",
            |fx, bad| {
                let typ = pick(bad, json!("oauth-id-jag+jwt"), json!("JWT"));
                pk_req(fx, &fx.client_assertion_h(json!({"typ": typ}), json!({})))
            },
        ),
        row(
            "AS-9 SEC-5",
            "client_assertion typ at+jwt",
            401,
            "invalid_client",
            |fx, bad| {
                let typ = pick(bad, json!("at+jwt"), Value::Null);
                pk_req(fx, &fx.client_assertion_h(json!({"typ": typ}), json!({})))
            },
        ),
        row(
            "AS-9 SEC-5",
            "client_assertion typ dpop+jwt",
            401,
            "invalid_client",
            |fx, bad| {
                let typ = pick(bad, "dpop+jwt", "client-authentication+jwt");
                pk_req(fx, &fx.client_assertion_h(json!({"typ": typ}), json!({})))
            },
        ),
        row(
            "D-11",
            "Basic client id not form-urlencoded",
            401,
            "invalid_client",
            |fx, bad| {
                let r = Req::bearer(&fx.jag(json!({"client_id": D11_CLIENT})));
                if bad {
                    r.authorization(&basic_raw(&format!(
                        "{D11_CLIENT}:{}",
                        ema_grant::form::encode_component(D11_SECRET)
                    )))
                } else {
                    r.basic(D11_CLIENT, D11_SECRET)
                }
            },
        ),
        row(
            "D-11",
            "Basic secret not form-urlencoded",
            401,
            "invalid_client",
            |fx, bad| {
                let r = Req::bearer(&fx.jag(json!({"client_id": D11_CLIENT})));
                if bad {
                    r.authorization(&basic_raw(&format!(
                        "{}:{D11_SECRET}",
                        ema_grant::form::encode_component(D11_CLIENT)
                    )))
                } else {
                    r.basic(D11_CLIENT, D11_SECRET)
                }
            },
        ),
        row(
            "D-11 AS-9",
            "public CIMD client where public clients are off",
            401,
            "invalid_client",
            |fx, bad| {
                Req::bearer(&fx.jag(json!({"client_id": CIMD_CLIENT})))
                    .no_auth()
                    .set("client_id", CIMD_CLIENT)
                    .to(pick(bad, To::As, To::AsPublic))
            },
        ),
        row(
            "D-11",
            "public client id that is not https",
            401,
            "invalid_client",
            |fx, bad| {
                let id = pick(bad, "http://app.example/client.json", CIMD_CLIENT);
                Req::bearer(&fx.jag(json!({"client_id": id})))
                    .no_auth()
                    .set("client_id", id)
                    .to(To::AsPublic)
            },
        ),
        row(
            "D-11 AS-8",
            "public client: ID-JAG client_id is another CIMD URL",
            400,
            "invalid_grant",
            |fx, bad| {
                let claim = pick(bad, "https://app.example/other.json", CIMD_CLIENT);
                Req::bearer(&fx.jag(json!({"client_id": claim})))
                    .no_auth()
                    .set("client_id", CIMD_CLIENT)
                    .to(To::AsPublic)
            },
        ),
        row(
            "D-11 AS-9",
            "registered public client where public clients are off",
            401,
            "invalid_client",
            |fx, bad| {
                Req::bearer(&fx.jag(json!({"client_id": PUBLIC_CLIENT})))
                    .no_auth()
                    .set("client_id", PUBLIC_CLIENT)
                    .to(pick(bad, To::As, To::AsPublic))
            },
        ),
        row(
            "D-11",
            "registered secret client without its secret, public clients on",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({})).to(To::AsPublic);
                if bad {
                    r.no_auth().set("client_id", CLIENT)
                } else {
                    r
                }
            },
        ),
        // ---- DPoP: AS-17, AS-18, SEC-8, D-17 ----------------------------------------------------
        // In the DPoP digest's terms (the ids this matrix's coverage check does not list): DP-17
        // (bound ID-JAG, no proof), DP-18 (proof by another key), DP-20 (the resource requires
        // DPoP), DP-16 (every `invalid_dpop_proof` row: htu, htm, iat window, jti, two headers),
        // DP-40 (the strict reader: not a JWT, typ, jku, no or private jwk), DP-24 (replayed).
        row(
            "AS-17 SEC-8 D-17",
            "cnf.jkt and no DPoP proof",
            400,
            "invalid_grant",
            |fx, bad| bound(fx, pick(bad, None, Some(&fx.keys.dpop))),
        ),
        row(
            "AS-17 SEC-8 D-17",
            "cnf.jkt and a proof by another key",
            400,
            "invalid_grant",
            |fx, bad| bound(fx, Some(pick(bad, &fx.keys.dpop_other, &fx.keys.dpop))),
        ),
        row(
            "AS-18",
            "resource requires DPoP, no proof",
            400,
            "invalid_grant",
            |fx, bad| {
                let r = with(fx, json!({"resource": VAULT, "scope": "vault.read"}))
                    .set("resource", VAULT);
                if bad {
                    r
                } else {
                    r.dpop(&fx.dpop_proof(&fx.keys.dpop, TOKEN_ENDPOINT, json!({})))
                }
            },
        ),
        row(
            "AS-17",
            "DPoP header is not a JWT",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let good = fx.dpop_proof(&fx.keys.dpop, TOKEN_ENDPOINT, json!({}));
                with(fx, json!({})).dpop(pick(bad, "not-a-dpop-proof", good.as_str()))
            },
        ),
        row(
            "AS-17",
            "DPoP htu is the IdP's token endpoint",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let htu = pick(bad, IDP_TOKEN_ENDPOINT, TOKEN_ENDPOINT);
                with(fx, json!({})).dpop(&fx.dpop_proof(&fx.keys.dpop, htu, json!({})))
            },
        ),
        row(
            "AS-17",
            "DPoP htm GET",
            400,
            "invalid_dpop_proof",
            |fx, bad| proof(fx, json!({}), json!({"htm": pick(bad, "GET", "POST")})),
        ),
        row(
            "AS-17",
            "DPoP proof iat too old (D-28: token endpoints accept at most 120 s)",
            400,
            "invalid_dpop_proof",
            |fx, bad| proof(fx, json!({}), json!({"iat": pick(bad, at(-121), at(-120))})),
        ),
        row(
            "AS-17",
            "DPoP proof iat in the future",
            400,
            "invalid_dpop_proof",
            |fx, bad| proof(fx, json!({}), json!({"iat": pick(bad, at(31), at(30))})),
        ),
        row(
            "AS-17",
            "DPoP proof without jti",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let jti = pick(bad, Value::Null, json!(random_id().unwrap()));
                proof(fx, json!({}), json!({"jti": jti}))
            },
        ),
        row(
            "AS-17",
            "DPoP proof without a jwk header",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let header = pick(bad, json!({"jwk": null}), json!({}));
                proof(fx, header, json!({}))
            },
        ),
        row(
            "AS-17 SEC-5",
            "DPoP proof typ JWT",
            400,
            "invalid_dpop_proof",
            |fx, bad| proof(fx, json!({"typ": pick(bad, "JWT", "dpop+jwt")}), json!({})),
        ),
        row(
            "AS-17 D-18",
            "DPoP proof with a jku header too",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let header = pick(
                    bad,
                    json!({"jku": "https://attacker.example/jwks"}),
                    json!({}),
                );
                proof(fx, header, json!({}))
            },
        ),
        row(
            "AS-17",
            "DPoP jwk carries a private member",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let mut jwk = fx.keys.dpop.verifying_key().public_jwk().clone();
                if bad {
                    jwk.insert(
                        "d".into(),
                        json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                    );
                }
                proof(fx, json!({"jwk": Value::Object(jwk)}), json!({}))
            },
        ),
        row(
            "AS-17",
            "DPoP proof signed by another key than its jwk",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let signer = pick(bad, &fx.keys.dpop_other, &fx.keys.dpop);
                let jwk = Value::Object(fx.keys.dpop.verifying_key().public_jwk().clone());
                with(fx, json!({})).dpop(&dpop_proof_h(
                    signer,
                    json!({"jwk": jwk}),
                    TOKEN_ENDPOINT,
                    json!({}),
                ))
            },
        ),
        row(
            "AS-17 SEC-1",
            "DPoP proof replayed",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let p = fx.dpop_proof(&fx.keys.dpop, TOKEN_ENDPOINT, json!({}));
                if bad {
                    fx.ok(&with(fx, json!({})).dpop(&p));
                }
                with(fx, json!({})).dpop(&p)
            },
        ),
        row(
            "AS-17",
            "two DPoP headers (RFC 9449 §4.3 check 1)",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let r = proof(fx, json!({}), json!({}));
                if bad {
                    r.header(
                        "dpop",
                        &fx.dpop_proof(&fx.keys.dpop, TOKEN_ENDPOINT, json!({})),
                    )
                } else {
                    r
                }
            },
        ),
        // ---- (3) parse and (4) header: AS-2, AS-3, AS-4, AS-19, SEC-4, SEC-5, D-8, D-18 --------
        row(
            "AS-19",
            "a five-segment JWE as the assertion",
            400,
            "invalid_grant",
            |fx, bad| {
                let b64 = ema_jose::base64url::encode;
                let jwe = format!(
                "{}.{}.{}.{}.{}",
                b64(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM","cty":"JWT","typ":"oauth-id-jag+jwt"}"#),
                b64(&[7u8; 256]),
                b64(&[1u8; 12]),
                b64(claims_json(fx).as_bytes()),
                b64(&[2u8; 16]),
            );
                Req::bearer(&pick(bad, jwe, fx.jag(json!({}))))
            },
        ),
        row(
            "AS-2",
            "assertion is not a JWT",
            400,
            "invalid_grant",
            |fx, bad| {
                Req::bearer(&pick(
                    bad,
                    "this-is-not-a-jwt".to_owned(),
                    fx.jag(json!({})),
                ))
            },
        ),
        row(
            "AS-2",
            "assertion has two segments",
            400,
            "invalid_grant",
            |fx, bad| {
                let jag = fx.jag(json!({}));
                let two = jag.rsplit_once('.').unwrap().0.to_owned();
                Req::bearer(&pick(bad, two, jag))
            },
        ),
        row(
            "AS-2",
            "padded base64url segment",
            400,
            "invalid_grant",
            |fx, bad| {
                let jag = fx.jag(json!({}));
                let (head, rest) = jag.split_once('.').unwrap();
                Req::bearer(&pick(bad, format!("{head}==.{rest}"), jag.clone()))
            },
        ),
        row(
            "AS-4 SEC-4",
            "alg none, empty signature",
            400,
            "invalid_grant",
            |fx, bad| {
                let t = compact(
                    &json!({"alg": "none", "typ": "oauth-id-jag+jwt"}),
                    claims_json(fx).as_bytes(),
                    None,
                );
                let unsecured = format!("{}.", t.rsplit_once('.').unwrap().0);
                Req::bearer(&pick(bad, unsecured, fx.jag(json!({}))))
            },
        ),
        row(
            "AS-4 SEC-4",
            "alg none with a signature",
            400,
            "invalid_grant",
            |fx, bad| {
                let t = compact(
                    &json!({"alg": "none", "typ": "oauth-id-jag+jwt", "kid": "idp-k1"}),
                    claims_json(fx).as_bytes(),
                    None,
                );
                Req::bearer(&pick(bad, t, fx.jag(json!({}))))
            },
        ),
        row(
            "AS-4 SEC-4",
            "alg HS256 (key confusion)",
            400,
            "invalid_grant",
            |fx, bad| {
                let t = compact(
                    &json!({"alg": "HS256", "typ": "oauth-id-jag+jwt", "kid": "idp-k1"}),
                    claims_json(fx).as_bytes(),
                    None,
                );
                Req::bearer(&pick(bad, t, fx.jag(json!({}))))
            },
        ),
        row(
            "AS-4 SEC-4",
            "alg es256 (wrong case)",
            400,
            "invalid_grant",
            |fx, bad| {
                let header = json!({"alg": pick(bad, "es256", "ES256"), "typ": "oauth-id-jag+jwt", "kid": "idp-k1"});
                Req::bearer(&compact(
                    &header,
                    claims_json(fx).as_bytes(),
                    Some(&fx.idp_key()),
                ))
            },
        ),
        row(
            "AS-4 SEC-4",
            "ES512, not on the allow-list",
            400,
            "invalid_grant",
            |fx, bad| {
                let idp = fx.idp_key();
                let key = pick(bad, &fx.keys.es512, &*idp);
                Req::bearer(&fx.jag_signed(key, json!({}), json!({})))
            },
        ),
        row(
            "AS-4 SEC-4",
            "ES384, not accepted from this issuer",
            400,
            "invalid_grant",
            |fx, bad| {
                let idp = fx.idp_key();
                let key = pick(bad, &fx.keys.es384, &*idp);
                Req::bearer(&fx.jag_signed(key, json!({}), json!({})))
            },
        ),
        row(
            "AS-4 SEC-4",
            "header alg ES384 over an ES256 signature of the IdP key",
            400,
            "invalid_grant",
            |fx, bad| {
                let header = json!({"alg": pick(bad, "ES384", "ES256"), "typ": "oauth-id-jag+jwt", "kid": "idp-k1"});
                Req::bearer(&compact(
                    &header,
                    claims_json(fx).as_bytes(),
                    Some(&fx.idp_key()),
                ))
            },
        ),
        row(
            "AS-3 D-8",
            "typ missing",
            400,
            "invalid_grant",
            |fx, bad| with_header(fx, pick(bad, json!({"typ": null}), json!({}))),
        ),
        row(
            "AS-3 D-8 SEC-5",
            "typ JWT",
            400,
            "invalid_grant",
            |fx, bad| with_header(fx, json!({"typ": pick(bad, "JWT", "oauth-id-jag+jwt")})),
        ),
        row(
            "AS-3 SEC-5",
            "typ at+jwt",
            400,
            "invalid_grant",
            |fx, bad| with_header(fx, json!({"typ": pick(bad, "at+jwt", "oauth-id-jag+jwt")})),
        ),
        row(
            "AS-3 SEC-5",
            "typ dpop+jwt",
            400,
            "invalid_grant",
            |fx, bad| {
                with_header(
                    fx,
                    json!({"typ": pick(bad, "dpop+jwt", "oauth-id-jag+jwt")}),
                )
            },
        ),
        row(
            "AS-3 D-8",
            "typ with a trailing space (control: case and application/ prefix)",
            400,
            "invalid_grant",
            |fx, bad| {
                with_header(
                    fx,
                    json!({"typ": pick(bad, "oauth-id-jag+jwt ", "Application/OAuth-ID-JAG+JWT")}),
                )
            },
        ),
        row(
            "AS-3 D-8",
            "typ with a doubled application/ prefix",
            400,
            "invalid_grant",
            |fx, bad| {
                with_header(
                    fx,
                    json!({"typ": pick(bad, "application/application/oauth-id-jag+jwt", "application/oauth-id-jag+jwt")}),
                )
            },
        ),
        row(
            "AS-3 D-8 D-10",
            "pre-draft typ oauth-mtag+jwt",
            400,
            "invalid_grant",
            |fx, bad| {
                with_header(
                    fx,
                    json!({"typ": pick(bad, "oauth-mtag+jwt", "oauth-id-jag+jwt")}),
                )
            },
        ),
        row(
            "AS-3 D-8 D-10",
            "pre-draft typ oauth-itag+jwt",
            400,
            "invalid_grant",
            |fx, bad| {
                with_header(
                    fx,
                    json!({"typ": pick(bad, "oauth-itag+jwt", "oauth-id-jag+jwt")}),
                )
            },
        ),
        row(
            "AS-3 D-8 D-10",
            "pre-draft typ authorization-grant+jwt",
            400,
            "invalid_grant",
            |fx, bad| {
                with_header(
                    fx,
                    json!({"typ": pick(bad, "authorization-grant+jwt", "oauth-id-jag+jwt")}),
                )
            },
        ),
        row(
            "AS-3",
            "typ is not a string",
            400,
            "invalid_grant",
            |fx, bad| {
                with_header(
                    fx,
                    json!({"typ": pick(bad, json!(["oauth-id-jag+jwt"]), json!("oauth-id-jag+jwt"))}),
                )
            },
        ),
        row("AS-4", "crit header", 400, "invalid_grant", |fx, bad| {
            with_header(fx, pick(bad, json!({"crit": ["exp"]}), json!({})))
        }),
        row("AS-4", "b64 header", 400, "invalid_grant", |fx, bad| {
            with_header(fx, pick(bad, json!({"b64": false}), json!({})))
        }),
        row("AS-4", "zip header", 400, "invalid_grant", |fx, bad| {
            with_header(fx, pick(bad, json!({"zip": "DEF"}), json!({})))
        }),
        row(
            "D-18 SEC-3",
            "ID-JAG header jku (control: x5t, x5t#S256)",
            400,
            "invalid_grant",
            |fx, bad| {
                with_header(
                    fx,
                    pick(
                        bad,
                        json!({"jku": "https://attacker.example/jwks"}),
                        json!({"x5t": X5T, "x5t#S256": X5T}),
                    ),
                )
            },
        ),
        row(
            "D-18 SEC-3",
            "ID-JAG header x5u",
            400,
            "invalid_grant",
            |fx, bad| {
                with_header(
                    fx,
                    pick(
                        bad,
                        json!({"x5u": "https://attacker.example/c.pem"}),
                        json!({"x5t": X5T}),
                    ),
                )
            },
        ),
        row(
            "D-18 SEC-3",
            "ID-JAG header jwk (the IdP's own key)",
            400,
            "invalid_grant",
            |fx, bad| {
                let jwk = Value::Object(fx.idp_key().verifying_key().public_jwk().clone());
                with_header(fx, pick(bad, json!({"jwk": jwk}), json!({"x5t#S256": X5T})))
            },
        ),
        row(
            "D-18 SEC-3",
            "ID-JAG header x5c",
            400,
            "invalid_grant",
            |fx, bad| {
                with_header(
                    fx,
                    pick(
                        bad,
                        json!({"x5c": ["MIIBszCCAVmgAwIBAgIUQ"]}),
                        json!({"x5t": X5T}),
                    ),
                )
            },
        ),
        row(
            "AS-2",
            "claims with a duplicated member",
            400,
            "invalid_grant",
            |fx, bad| {
                let header = json!({"alg": "ES256", "typ": "oauth-id-jag+jwt", "kid": "idp-k1"});
                let claims = claims_json(fx);
                let payload = if bad {
                    format!(r#"{{"sub":"someone-else",{}"#, &claims[1..])
                } else {
                    claims
                };
                Req::bearer(&compact(&header, payload.as_bytes(), Some(&fx.idp_key())))
            },
        ),
        row(
            "AS-4",
            "payload swapped after signing",
            400,
            "invalid_grant",
            |fx, bad| {
                let a = fx.jag(json!({}));
                let b = fx.jag(json!({"sub": READER}));
                let parts: Vec<&str> = a.split('.').collect();
                let forged = format!("{}.{}.{}", parts[0], b.split('.').nth(1).unwrap(), parts[2]);
                Req::bearer(&pick(bad, forged, a.clone()))
            },
        ),
        row(
            "AS-4",
            "signature altered",
            400,
            "invalid_grant",
            |fx, bad| {
                let a = fx.jag(json!({}));
                let (input, sig) = a.rsplit_once('.').unwrap();
                let mut raw = ema_jose::base64url::decode(sig.as_bytes()).unwrap();
                raw[5] ^= 1;
                let forged = format!("{input}.{}", ema_jose::base64url::encode(&raw));
                Req::bearer(&pick(bad, forged, a.clone()))
            },
        ),
        row(
            "SEC-5",
            "an ID token as the assertion",
            400,
            "invalid_grant",
            |fx, bad| {
                let id_token = fx.id_token(json!({"aud": AS}));
                Req::bearer(&pick(bad, id_token, fx.jag(json!({}))))
            },
        ),
        row(
            "SEC-5 SEC-11",
            "an access token of this AS as the assertion",
            400,
            "invalid_grant",
            |fx, bad| {
                if bad {
                    let at = fx.ok(&with(fx, json!({}))).str("access_token").to_owned();
                    Req::bearer(&at)
                } else {
                    with(fx, json!({}))
                }
            },
        ),
        row(
            "SEC-5",
            "ID-JAG claims under the client-assertion typ",
            400,
            "invalid_grant",
            |fx, bad| {
                // The same claims; only the `typ` slot differs (RFC 8725 §3.11).
                with_header(
                    fx,
                    json!({"typ": pick(bad, "client-authentication+jwt", "oauth-id-jag+jwt")}),
                )
            },
        ),
        // ---- (5) issuer and (6) keys: AS-2, AS-4, SEC-3, SEC-12, D-12, D-19 --------------------
        row(
            "AS-2 SEC-3",
            "untrusted iss",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"iss": pick(bad, "https://idp.evil.example", IDP)}),
                )
            },
        ),
        row(
            "AS-2 D-12",
            "iss with trailing slash",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"iss": pick(bad, "https://idp.acme.example/", IDP)}),
                )
            },
        ),
        row(
            "AS-2 D-12",
            "iss upper-case host",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"iss": pick(bad, "https://IDP.acme.example", IDP)}),
                )
            },
        ),
        row(
            "AS-2 D-12",
            "iss with http scheme",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"iss": pick(bad, "http://idp.acme.example", IDP)}),
                )
            },
        ),
        row(
            "AS-2 JAG-2",
            "iss missing",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"iss": pick(bad, Value::Null, json!(IDP))})),
        ),
        row(
            "AS-2",
            "iss not a string",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"iss": pick(bad, json!([IDP]), json!(IDP))})),
        ),
        row(
            "AS-4 SEC-3",
            "unknown kid",
            400,
            "invalid_grant",
            |fx, bad| {
                let unknown =
                    SigningKey::generate(Algorithm::ES256, Some("idp-k9".into())).unwrap();
                let idp = fx.idp_key();
                let key = pick(bad, &unknown, &*idp);
                Req::bearer(&fx.jag_signed(key, json!({}), json!({})))
            },
        ),
        row(
            "AS-4 SEC-3",
            "untrusted key under the IdP's kid",
            400,
            "invalid_grant",
            |fx, bad| {
                let idp = fx.idp_key();
                let key = pick(bad, &fx.keys.stranger, &*idp);
                Req::bearer(&fx.jag_signed(key, json!({}), json!({})))
            },
        ),
        row(
            "SEC-3",
            "no kid: the issuer's single key decides, not the signer",
            400,
            "invalid_grant",
            |fx, bad| {
                let header = json!({"alg": "ES256", "typ": "oauth-id-jag+jwt"});
                let idp = fx.idp_key();
                let key = pick(bad, &fx.keys.stranger, &*idp);
                Req::bearer(&compact(&header, claims_json(fx).as_bytes(), Some(key)))
            },
        ),
        row(
            "SEC-3",
            "iss of the multi-tenant issuer, signed by the IdP's key",
            400,
            "invalid_grant",
            |fx, bad| {
                let jag = if bad {
                    fx.jag(json!({"iss": MULTI, "sub": MULTI_USER, "tenant": "acme"}))
                } else {
                    multi_jag(fx, json!({}))
                };
                Req::bearer(&jag)
            },
        ),
        row(
            "D-19 SEC-3",
            "kid of a JWKS entry set aside (use: enc)",
            400,
            "invalid_grant",
            |fx, bad| {
                let idp = fx.idp_key();
                let key = pick(bad, &fx.keys.idp_enc, &*idp);
                Req::bearer(&fx.jag_signed(key, json!({}), json!({})))
            },
        ),
        row(
            "D-19",
            "kid of a JWKS entry set aside (oct)",
            400,
            "invalid_grant",
            |fx, bad| {
                let header = json!({"alg": "ES256", "typ": "oauth-id-jag+jwt", "kid": pick(bad, "idp-hmac", "idp-k1")});
                Req::bearer(&compact(
                    &header,
                    claims_json(fx).as_bytes(),
                    Some(&fx.idp_key()),
                ))
            },
        ),
        row(
            "SEC-12",
            "sub_id naming the trusted IdP cannot make an untrusted iss trusted",
            400,
            "invalid_grant",
            |fx, bad| {
                let sub_id = json!({"format": "saml-nameid", "issuer": IDP, "nameid": "ana"});
                with(
                    fx,
                    json!({"iss": pick(bad, "https://idp.evil.example", IDP), "sub_id": sub_id}),
                )
            },
        ),
        row(
            "SEC-12 AS-16",
            "sub_id never resolves an unknown sub",
            400,
            "invalid_grant",
            |fx, bad| {
                let sub_id = json!({"format": "saml-nameid", "issuer": IDP, "nameid": USER});
                with(
                    fx,
                    json!({"sub": pick(bad, "00uUnmapped1", USER), "sub_id": sub_id}),
                )
            },
        ),
        // ---- (7) claims: AS-2, JAG-2, D-7, D-13 -------------------------------------------------
        row(
            "AS-2 JAG-2",
            "sub missing",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"sub": pick(bad, Value::Null, json!(USER))})),
        ),
        row(
            "AS-5 JAG-2",
            "aud missing",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"aud": pick(bad, Value::Null, json!(AS))})),
        ),
        row(
            "AS-8 JAG-2",
            "client_id missing",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"client_id": pick(bad, Value::Null, json!(CLIENT))}),
                )
            },
        ),
        row(
            "AS-7 JAG-2",
            "jti missing",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"jti": pick(bad, Value::Null, json!(random_id().unwrap()))}),
                )
            },
        ),
        row(
            "AS-6 JAG-2",
            "exp missing",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"exp": pick(bad, Value::Null, at(290))})),
        ),
        row(
            "AS-6 JAG-2",
            "iat missing",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"iat": pick(bad, Value::Null, at(-10))})),
        ),
        row("D-7", "exp as a string", 400, "invalid_grant", |fx, bad| {
            let exp = pick(bad, json!(at(290).to_string()), at(290));
            with(fx, json!({"exp": exp}))
        }),
        row("D-7", "iat as a string", 400, "invalid_grant", |fx, bad| {
            let iat = pick(bad, json!(at(-10).to_string()), at(-10));
            with(fx, json!({"iat": iat}))
        }),
        row("D-7", "nbf as a string", 400, "invalid_grant", |fx, bad| {
            let nbf = pick(bad, json!(at(-10).to_string()), at(-10));
            with(fx, json!({"nbf": nbf}))
        }),
        row(
            "D-13",
            "scope as an array",
            400,
            "invalid_grant",
            |fx, bad| {
                let scope = pick(
                    bad,
                    json!(["tasks.read", "tasks.write"]),
                    json!("tasks.read tasks.write"),
                );
                with(fx, json!({"scope": scope}))
            },
        ),
        row(
            "D-13",
            "scope with a doubled space",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"scope": pick(bad, "tasks.read  tasks.write", "tasks.read tasks.write")}),
                )
            },
        ),
        row(
            "D-13 AS-5 JAG-3",
            "aud array of two (control: array of one)",
            400,
            "invalid_grant",
            |fx, bad| {
                let aud = pick(bad, json!([AS, OTHER_AS]), json!([AS]));
                with(fx, json!({"aud": aud}))
            },
        ),
        row(
            "D-13 AS-5",
            "aud empty array",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"aud": pick(bad, json!([]), json!(AS))})),
        ),
        row(
            "AS-5",
            "aud is an object",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"aud": pick(bad, json!({"iss": AS}), json!(AS))})),
        ),
        row(
            "JAG-2",
            "client_id not a string",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"client_id": pick(bad, json!(42), json!(CLIENT))}),
                )
            },
        ),
        row(
            "JAG-2",
            "sub not a string",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"sub": pick(bad, json!({"id": USER}), json!(USER))}),
                )
            },
        ),
        row(
            "JAG-2",
            "jti not a string",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"jti": pick(bad, json!(12345), json!(random_id().unwrap()))}),
                )
            },
        ),
        row(
            "AS-10 JAG-6",
            "resource is an empty array",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"resource": pick(bad, json!([]), json!([TASKS]))}),
                )
            },
        ),
        row(
            "AS-10 JAG-6",
            "resource is a number",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"resource": pick(bad, json!(7), json!(TASKS))})),
        ),
        row(
            "AS-17",
            "cnf with a method other than jkt",
            400,
            "invalid_grant",
            |fx, bad| {
                let r = if bad {
                    with(fx, json!({"cnf": {"x5t#S256": X5T}}))
                } else {
                    bound(fx, None)
                };
                r.dpop(&fx.dpop_proof(&fx.keys.dpop, TOKEN_ENDPOINT, json!({})))
            },
        ),
        // ---- (8) audience: AS-5, SEC-6, SEC-11, D-12 ---------------------------------------------
        row(
            "AS-5 SEC-11",
            "aud is another authorization server",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"aud": pick(bad, OTHER_AS, AS)})),
        ),
        row(
            "AS-5 D-12",
            "aud is the token endpoint URL",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"aud": pick(bad, TOKEN_ENDPOINT, AS)})),
        ),
        row(
            "AS-5 D-12",
            "aud with trailing slash",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"aud": pick(bad, "https://auth.tasks.example/", AS)}),
                )
            },
        ),
        row(
            "AS-5 D-12",
            "aud upper-case",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"aud": pick(bad, "https://AUTH.TASKS.EXAMPLE", AS)}),
                )
            },
        ),
        row(
            "AS-5 SEC-6",
            "aud is the resource",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"aud": pick(bad, TASKS, AS)})),
        ),
        row(
            "AS-5 SEC-11",
            "aud is the IdP itself",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"aud": pick(bad, IDP, AS)})),
        ),
        // ---- (9) time: AS-6, SEC-2, D-7 ----------------------------------------------------------
        row(
            "AS-6 SEC-2 D-7",
            "expired 30 s ago (leeway 30 s; control 29 s)",
            400,
            "invalid_grant",
            |fx, bad| {
                let (iat, exp) = pick(bad, (at(-330), at(-30)), (at(-329), at(-29)));
                with(fx, json!({"iat": iat, "exp": exp}))
            },
        ),
        row(
            "AS-6 SEC-2 D-7",
            "iat 31 s in the future (control 30 s)",
            400,
            "invalid_grant",
            |fx, bad| {
                let (iat, exp) = pick(bad, (at(31), at(331)), (at(30), at(330)));
                with(fx, json!({"iat": iat, "exp": exp}))
            },
        ),
        row(
            "AS-6 SEC-2 D-7",
            "nbf 31 s in the future (control 30 s)",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"nbf": pick(bad, at(31), at(30))})),
        ),
        row(
            "SEC-2",
            "exp equal to iat",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"iat": at(0), "exp": pick(bad, at(0), at(1))})),
        ),
        row(
            "SEC-2",
            "exp before iat",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"iat": at(0), "exp": pick(bad, at(-1), at(300))})),
        ),
        row(
            "AS-6 D-7",
            "lifetime 3601 s (control 3600 s)",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"iat": at(-10), "exp": pick(bad, at(3591), at(3590))}),
                )
            },
        ),
        row(
            "AS-6 D-7",
            "exp far in the future",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"exp": pick(bad, json!(253_402_300_799_u64), at(290))}),
                )
            },
        ),
        // ---- (10) client binding: AS-8, SEC-7, D-12, JAG-4 ---------------------------------------
        row(
            "AS-8 SEC-7",
            "client_id is another registered client",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"client_id": pick(bad, PK_CLIENT, CLIENT)})),
        ),
        row(
            "AS-8 D-12",
            "client_id upper-case",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"client_id": pick(bad, "TC_5F2A91", CLIENT)})),
        ),
        row(
            "AS-8 D-12",
            "client_id with trailing slash",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"client_id": pick(bad, "tc_5f2a91/", CLIENT)})),
        ),
        row(
            "AS-8 JAG-4",
            "client_id is the IdP-side client id",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"client_id": pick(bad, IDP_CLIENT, CLIENT)})),
        ),
        // ---- (12) resource: AS-10, SEC-6, D-4, D-12 ---------------------------------------------
        row(
            "AS-10 SEC-6 D-4",
            "(a) resource claim not governed here",
            400,
            "invalid_grant",
            |fx, bad| {
                with(fx, json!({"resource": pick(bad, OTHER_RESOURCE, TASKS)})).remove("resource")
            },
        ),
        row(
            "AS-10 D-4",
            "(a) claim array with one ungoverned value",
            400,
            "invalid_grant",
            |fx, bad| {
                let res = pick(bad, json!([TASKS, OTHER_RESOURCE]), json!([TASKS, NOTES]));
                with(fx, json!({"resource": res}))
            },
        ),
        row(
            "AS-10 D-4 D-12",
            "(a) claim resource with trailing slash",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"resource": pick(bad, "https://mcp.tasks.example/mcp/", TASKS)}),
                )
                .remove("resource")
            },
        ),
        row(
            "AS-10 D-4 D-12",
            "(a) claim resource upper-case host",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"resource": pick(bad, "https://MCP.tasks.example/mcp", TASKS)}),
                )
                .remove("resource")
            },
        ),
        row(
            "D-4",
            "(c) request resource is not a claim value",
            400,
            "invalid_target",
            |fx, bad| with(fx, json!({})).set("resource", pick(bad, NOTES, TASKS)),
        ),
        row(
            "D-4 D-12",
            "(c) request resource with trailing slash",
            400,
            "invalid_target",
            |fx, bad| {
                with(fx, json!({})).set(
                    "resource",
                    pick(bad, "https://mcp.tasks.example/mcp/", TASKS),
                )
            },
        ),
        row(
            "D-4",
            "(b) no claim, request resource not governed",
            400,
            "invalid_target",
            |fx, bad| {
                with(fx, json!({"resource": null}))
                    .set("resource", pick(bad, OTHER_RESOURCE, TASKS))
            },
        ),
        row(
            "D-4",
            "(b) no claim, no request, several resources (control: one)",
            400,
            "invalid_grant",
            |fx, bad| {
                with(fx, json!({"resource": null}))
                    .remove("resource")
                    .to(pick(bad, To::As, To::AsSingle))
            },
        ),
        row(
            "D-4",
            "claim names two resources, request chooses none",
            400,
            "invalid_target",
            |fx, bad| {
                let r = with(fx, json!({"resource": [TASKS, NOTES]}));
                if bad { r.remove("resource") } else { r }
            },
        ),
        // ---- (13) tenant and subject: AS-16, D-14 -----------------------------------------------
        row(
            "AS-16 D-14",
            "unknown subject, no JIT",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"sub": pick(bad, "00uUnknown01", USER)})),
        ),
        row(
            "AS-16 D-12",
            "sub upper-case",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"sub": pick(bad, "00U8K2LQ91", USER)})),
        ),
        row(
            "D-14",
            "unknown subject, email not linked (control: linked email)",
            400,
            "invalid_grant",
            |fx, bad| {
                let email = pick(bad, "nobody@acme.example", LINKED_EMAIL);
                with(fx, json!({"sub": "00uUnknown02", "email": email}))
            },
        ),
        row(
            "D-14",
            "multi-tenant issuer, other tenant",
            400,
            "invalid_grant",
            |fx, bad| {
                Req::bearer(&multi_jag(
                    fx,
                    json!({"tenant": pick(bad, "contoso", "acme")}),
                ))
            },
        ),
        row(
            "D-14",
            "multi-tenant issuer, tenant missing",
            400,
            "invalid_grant",
            |fx, bad| {
                let tenant = pick(bad, Value::Null, json!("acme"));
                Req::bearer(&multi_jag(fx, json!({"tenant": tenant})))
            },
        ),
        row(
            "D-14 D-12",
            "multi-tenant issuer, tenant upper-case",
            400,
            "invalid_grant",
            |fx, bad| Req::bearer(&multi_jag(fx, json!({"tenant": pick(bad, "ACME", "acme")}))),
        ),
        // ---- (14) scope: AS-12, AS-13, D-5, D-20, D-21 ------------------------------------------
        row(
            "AS-13 D-5",
            "requested scope beyond the ID-JAG",
            400,
            "invalid_scope",
            |fx, bad| {
                with(fx, json!({"scope": "tasks.read"}))
                    .set("scope", pick(bad, "tasks.read tasks.write", "tasks.read"))
            },
        ),
        row(
            "D-5",
            "malformed scope parameter",
            400,
            "invalid_scope",
            |fx, bad| {
                with(fx, json!({})).set(
                    "scope",
                    pick(bad, "tasks.read  tasks.write", "tasks.read tasks.write"),
                )
            },
        ),
        row(
            "D-5 D-12",
            "requested scope upper-case",
            400,
            "invalid_scope",
            |fx, bad| with(fx, json!({})).set("scope", pick(bad, "TASKS.READ", "tasks.read")),
        ),
        row(
            "AS-12 D-21",
            "undefined non-OIDC scope in the ID-JAG (control: OIDC scopes dropped)",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"scope": pick(bad, "tasks.read calendar.read", "openid tasks.read offline_access")}),
                )
            },
        ),
        row(
            "D-5 D-21",
            "only OIDC scopes in the ID-JAG",
            400,
            "invalid_scope",
            |fx, bad| {
                with(
                    fx,
                    json!({"scope": pick(bad, "openid profile email", "openid tasks.read")}),
                )
            },
        ),
        row(
            "D-5",
            "empty scope claim",
            400,
            "invalid_scope",
            |fx, bad| with(fx, json!({"scope": pick(bad, "", "tasks.read")})),
        ),
        row(
            "D-20",
            "no scope claim, requested scope the resource does not define",
            400,
            "invalid_scope",
            |fx, bad| {
                with(fx, json!({"scope": null}))
                    .set("scope", pick(bad, "tasks.admin", "tasks.write"))
            },
        ),
        row(
            "D-21 D-5",
            "requesting a scope the resource policy dropped",
            400,
            "invalid_scope",
            |fx, bad| {
                with(
                    fx,
                    json!({"resource": NOTES, "scope": "notes.read calendar.read"}),
                )
                .set("resource", NOTES)
                .set("scope", pick(bad, "calendar.read", "notes.read"))
            },
        ),
        // ---- (15) replay: SEC-1, AS-7, D-6 -------------------------------------------------------
        row(
            "SEC-1 AS-7 D-6",
            "second redemption of one ID-JAG",
            400,
            "invalid_grant",
            |fx, bad| {
                let jag = fx.jag(json!({}));
                if bad {
                    fx.ok(&Req::bearer(&jag));
                }
                Req::bearer(&jag)
            },
        ),
        row(
            "SEC-1 D-6",
            "second redemption with other request parameters",
            400,
            "invalid_grant",
            |fx, bad| {
                let jag = fx.jag(json!({}));
                if bad {
                    fx.ok(&Req::bearer(&jag));
                }
                Req::bearer(&jag)
                    .set("scope", "tasks.read")
                    .set("client_id", CLIENT)
            },
        ),
        row(
            "SEC-1 AS-7",
            "same jti, new signature and claims",
            400,
            "invalid_grant",
            |fx, bad| {
                let jti = random_id().unwrap();
                if bad {
                    fx.ok(&with(fx, json!({"jti": jti})));
                }
                with(fx, json!({"jti": jti, "scope": "tasks.read"}))
            },
        ),
        // ---- (16) issue 9: no nested content (D-23) ---------------------------------------------
        row(
            "AS-3 D-23",
            "ID-JAG header cty JWT (control: no cty)",
            400,
            "invalid_grant",
            |fx, bad| with_header(fx, pick(bad, json!({"cty": "JWT"}), json!({}))),
        ),
        row(
            "AS-3 D-23",
            "ID-JAG header cty jwt",
            400,
            "invalid_grant",
            |fx, bad| with_header(fx, pick(bad, json!({"cty": "jwt"}), json!({}))),
        ),
        row(
            "AS-3 D-23",
            "ID-JAG header cty application/json",
            400,
            "invalid_grant",
            |fx, bad| with_header(fx, pick(bad, json!({"cty": "application/json"}), json!({}))),
        ),
        row(
            "AS-3 D-23",
            "ID-JAG header cty empty string",
            400,
            "invalid_grant",
            |fx, bad| with_header(fx, pick(bad, json!({"cty": ""}), json!({}))),
        ),
        row(
            "AS-3 D-23",
            "ID-JAG header cty not a string",
            400,
            "invalid_grant",
            |fx, bad| with_header(fx, pick(bad, json!({"cty": 1}), json!({}))),
        ),
        row(
            "AS-9 D-23",
            "client_assertion header cty JWT",
            401,
            "invalid_client",
            |fx, bad| {
                let header = pick(bad, json!({"cty": "JWT"}), json!({}));
                pk_req(fx, &fx.client_assertion_h(header, json!({})))
            },
        ),
        row(
            "AS-17 D-23",
            "DPoP proof header cty JWT",
            400,
            "invalid_dpop_proof",
            |fx, bad| proof(fx, pick(bad, json!({"cty": "JWT"}), json!({})), json!({})),
        ),
    ]
}

#[test]
fn jwt_bearer_negative_matrix() {
    run_matrix("jwt-bearer", &rows());
}

/// D-22 at the token endpoint: an ID-JAG without `kid` is refused with `invalid_grant` when the
/// issuer's key set holds two usable keys, of any type, even though only the IdP's key could
/// verify ES256. Controls: the same two-key issuer accepts the ID-JAG with its `kid`, and the
/// same kid-less ID-JAG passes where the issuer has a single usable key (the fixture's IdP JWKS:
/// one good key beside three entries set aside, D-19).
#[test]
fn d22_kid_less_id_jag_from_a_several_key_issuer_is_invalid_grant() {
    let fx = Fx::new();
    let idp = fx.idp_key();
    let header = json!({"alg": "ES256", "typ": "oauth-id-jag+jwt"});
    let others = [
        ("two EC keys", Algorithm::ES256, "idp-k2"),
        ("EC and RSA", Algorithm::RS256, "idp-rsa"),
        ("EC and OKP", Algorithm::EdDSA, "idp-ed"),
    ];
    for (what, alg, kid) in others {
        let other = SigningKey::generate(alg, Some(kid.into())).unwrap();
        let keys = StaticKeySource::new().with_issuer(
            IDP,
            JwkSet::from_keys([idp.verifying_key().clone(), other.verifying_key().clone()]),
        );
        let grant = fx.jwt_bearer(keys, directory(), InMemoryReplayStore::new(100));
        let send = |req: &Req| {
            let reply = Reply::check(pollster::block_on(grant.handle(&req.build(), NOW)));
            reply.assert_no_leak(&req.sensitive());
            reply
        };

        let kid_less = compact(&header, claims_json(&fx).as_bytes(), Some(&idp));
        let refused = send(&Req::bearer(&kid_less));
        assert_eq!(
            (refused.status, refused.error()),
            (400, "invalid_grant"),
            "{what}: {}",
            refused.raw
        );
        // Control: the same issuer keys, an ID-JAG with `kid`.
        let with_kid = send(&Req::bearer(&fx.jag(json!({}))));
        assert_eq!(with_kid.status, 200, "{what}: {}", with_kid.raw);
        // Control: the same kid-less ID-JAG at an AS whose IdP has one usable key (the refusal
        // above burned nothing, D-6).
        fx.ok(&Req::bearer(&kid_less));
    }
}

/// D-5, D-20, D-21: an `invalid_scope` refusal names the scopes (scope names are not secrets),
/// so the client can tell which hop narrowed its request: the requested scopes the ID-JAG does
/// not carry, and what it does carry. Each row has a control that succeeds.
#[test]
fn d5_invalid_scope_descriptions_name_the_scopes() {
    let fx = Fx::new();
    // (ID-JAG `scope`, requested `scope`, expected description, the control's ID-JAG `scope`
    // and request).
    let cases = [
        (
            json!("tasks.read"),
            "tasks.read tasks.write",
            "requested scope not carried by the ID-JAG: tasks.write; the ID-JAG carries: tasks.read",
            (json!("tasks.read"), "tasks.read"),
        ),
        (
            json!("openid tasks.read"),
            "tasks.notes tasks.read tasks.write",
            "requested scope not carried by the ID-JAG: tasks.notes tasks.write; the ID-JAG carries: tasks.read",
            (json!("openid tasks.read"), "tasks.read"),
        ),
        (
            json!("openid profile"),
            "tasks.read",
            "requested scope not carried by the ID-JAG: tasks.read; the ID-JAG carries: no scope of this resource",
            (json!("openid tasks.read"), "tasks.read"),
        ),
        (
            Value::Null,
            "tasks.admin tasks.read",
            "requested scope not defined by this resource: tasks.admin",
            (Value::Null, "tasks.read"),
        ),
        (
            json!("openid profile"),
            "",
            "requested scope cannot be granted",
            (json!("openid tasks.read"), ""),
        ),
    ];
    let request = |carried: &Value, scope: &str| {
        let req = with(&fx, json!({"scope": carried}));
        if scope.is_empty() {
            req
        } else {
            req.set("scope", scope)
        }
    };
    for (carried, requested, expected, (control, control_requested)) in cases {
        let refused = fx.send(&request(&carried, requested));
        assert_eq!(
            (refused.status, refused.error(), refused.description()),
            (400, "invalid_scope", expected),
            "{carried} / {requested}"
        );
        let granted = fx.send(&request(&control, control_requested));
        assert_eq!(granted.status, 200, "{}", granted.raw);
    }
}
