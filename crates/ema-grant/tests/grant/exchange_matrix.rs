//! The IdP's negative matrix (token exchange, RFC 8693 as profiled by JAG §4.3): one defect
//! per row, the exact status and `error`, and the same builder without the defect as the
//! positive control.

use ema_grant::{ID_JAG_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_BEARER, LEGACY_TOKEN_TYPE};
use serde_json::{Value, json};

use crate::support::*;

fn pick<T>(bad: bool, defect: T, fine: T) -> T {
    if bad { defect } else { fine }
}

/// A request exchanging a good ID token with `overrides`.
fn with(fx: &Fx, overrides: Value) -> Req {
    Req::exchange(&fx.id_token(overrides))
}

/// A request exchanging an ID token whose header is `header` merged into `{"typ": "JWT"}`.
fn with_header(fx: &Fx, header: Value) -> Req {
    Req::exchange(&fx.id_token_h(header, json!({})))
}

/// A `private_key_jwt` request of [`IDP_PK_CLIENT`] with a good ID token issued to it.
fn pk_req(fx: &Fx, assertion: &str) -> Req {
    with(fx, json!({"aud": IDP_PK_CLIENT})).client_assertion(assertion)
}

/// A client assertion of [`IDP_PK_CLIENT`] for the IdP.
fn idp_assertion(fx: &Fx, header: Value, overrides: Value) -> String {
    fx.client_assertion_h(
        header,
        merge(
            json!({"iss": IDP_PK_CLIENT, "sub": IDP_PK_CLIENT, "aud": IDP_TOKEN_ENDPOINT}),
            overrides,
        ),
    )
}

/// The ID token claims as raw JSON, for hand-built tokens.
fn id_token_json(fx: &Fx) -> String {
    fx.id_token_claims().to_string()
}

const X5T: &str = "NjVBRjY5MDlCMUIwNzU4RTA2QzZFMDQ4QzQ2MDAyQjVDNjk1RTM2Qg";

pub(crate) fn rows() -> Vec<Row> {
    vec![
        // ---- request shape: TX-1, TX-15 -----------------------------------------------------------
        row(
            "TX-15",
            "GET instead of POST",
            400,
            "invalid_request",
            |fx, bad| with(fx, json!({})).method(pick(bad, "GET", "POST")),
        ),
        row(
            "TX-15",
            "Content-Type application/json",
            400,
            "invalid_request",
            |fx, bad| {
                with(fx, json!({})).content_type(Some(pick(
                    bad,
                    "application/json",
                    "application/x-www-form-urlencoded",
                )))
            },
        ),
        row(
            "TX-1",
            "repeated subject_token",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.add("subject_token", &fx.id_token(json!({})))
                } else {
                    r
                }
            },
        ),
        row(
            "TX-1",
            "repeated resource",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.add("resource", NOTES) } else { r }
            },
        ),
        row(
            "TX-1",
            "repeated requested_token_type",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.add("requested_token_type", ID_JAG_TOKEN_TYPE)
                } else {
                    r
                }
            },
        ),
        row(
            "TX-1",
            "missing grant_type",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.remove("grant_type") } else { r }
            },
        ),
        row(
            "TX-1",
            "jwt-bearer grant_type at the IdP",
            400,
            "unsupported_grant_type",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.set("grant_type", JWT_BEARER)
                } else {
                    r
                }
            },
        ),
        row(
            "TX-1",
            "missing requested_token_type",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.remove("requested_token_type")
                } else {
                    r
                }
            },
        ),
        row(
            "TX-1",
            "requested_token_type access_token",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.set(
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:access_token",
                    )
                } else {
                    r
                }
            },
        ),
        row(
            "TX-1 D-12",
            "requested_token_type upper-case",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.set("requested_token_type", &ID_JAG_TOKEN_TYPE.to_uppercase())
                } else {
                    r
                }
            },
        ),
        row(
            "D-10",
            "legacy requested_token_type without the flag (control: with it)",
            400,
            "invalid_request",
            |fx, bad| {
                with(fx, json!({}))
                    .set("requested_token_type", LEGACY_TOKEN_TYPE)
                    .to(pick(bad, To::Idp, To::IdpLegacy))
            },
        ),
        row(
            "TX-1",
            "missing audience",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.remove("audience") } else { r }
            },
        ),
        row(
            "TX-1",
            "missing subject_token",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.remove("subject_token") } else { r }
            },
        ),
        row(
            "TX-1",
            "missing subject_token_type",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.remove("subject_token_type")
                } else {
                    r
                }
            },
        ),
        row(
            "TX-3",
            "SAML2 subject token type (not enabled on this IdP)",
            400,
            "invalid_request",
            |fx, bad| {
                with(fx, json!({})).set(
                    "subject_token_type",
                    pick(bad, SAML2_TOKEN_TYPE, ID_TOKEN_TYPE),
                )
            },
        ),
        row(
            "TX-3 TX-5",
            "refresh-token subject (not implemented)",
            400,
            "invalid_request",
            |fx, bad| {
                with(fx, json!({})).set(
                    "subject_token_type",
                    pick(bad, REFRESH_TOKEN_TYPE, ID_TOKEN_TYPE),
                )
            },
        ),
        row(
            "TX-3 SEC-5",
            "subject_token_type access_token",
            400,
            "invalid_request",
            |fx, bad| {
                let t = pick(
                    bad,
                    "urn:ietf:params:oauth:token-type:access_token",
                    ID_TOKEN_TYPE,
                );
                with(fx, json!({})).set("subject_token_type", t)
            },
        ),
        row(
            "TX-12",
            "actor_token without actor_token_type",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({})).set("actor_token", "actor-token-opaque-value");
                if bad {
                    r
                } else {
                    r.set("actor_token_type", ID_TOKEN_TYPE)
                }
            },
        ),
        row(
            "TX-12",
            "actor_token_type without actor_token",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({})).set("actor_token_type", ID_TOKEN_TYPE);
                if bad {
                    r
                } else {
                    r.set("actor_token", "actor-token-opaque-value")
                }
            },
        ),
        // ---- client authentication: TX-2, SEC-7 ----------------------------------------------------
        row(
            "TX-2 SEC-7",
            "no client authentication",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.no_auth() } else { r }
            },
        ),
        row(
            "TX-2",
            "client_id only, no secret",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.no_auth().set("client_id", IDP_CLIENT)
                } else {
                    r
                }
            },
        ),
        row("TX-2", "wrong secret", 401, "invalid_client", |fx, bad| {
            with(fx, json!({})).basic(IDP_CLIENT, pick(bad, "idp-s3cr3t-00", IDP_SECRET))
        }),
        row(
            "TX-2",
            "unknown client",
            401,
            "invalid_client",
            |fx, bad| with(fx, json!({})).basic(pick(bad, "desk-idp-99", IDP_CLIENT), IDP_SECRET),
        ),
        row(
            "TX-2",
            "the AS-side credentials at the IdP",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.basic(CLIENT, SECRET) } else { r }
            },
        ),
        row(
            "TX-2",
            "wrong client_secret_post",
            401,
            "invalid_client",
            |fx, bad| {
                with(fx, json!({"aud": IDP_POST_CLIENT}))
                    .post_secret(IDP_POST_CLIENT, pick(bad, "idp-nope-000", IDP_POST_SECRET))
            },
        ),
        row(
            "TX-2 D-24",
            "client_secret_basic client sends its secret in the body",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.post_secret(IDP_CLIENT, IDP_SECRET)
                } else {
                    r
                }
            },
        ),
        row(
            "TX-2 D-24",
            "client_secret_post client uses HTTP Basic",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({"aud": IDP_POST_CLIENT}));
                if bad {
                    r.basic(IDP_POST_CLIENT, IDP_POST_SECRET)
                } else {
                    r.post_secret(IDP_POST_CLIENT, IDP_POST_SECRET)
                }
            },
        ),
        row(
            "TX-2 D-24",
            "a secret for a private_key_jwt client",
            401,
            "invalid_client",
            |fx, bad| {
                if bad {
                    with(fx, json!({"aud": IDP_PK_CLIENT})).basic(IDP_PK_CLIENT, IDP_SECRET)
                } else {
                    pk_req(fx, &idp_assertion(fx, json!({}), json!({})))
                }
            },
        ),
        row(
            "TX-2 D-24",
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
            "TX-2 D-24",
            "Basic credentials without a colon",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.authorization(&basic_raw(&format!("{IDP_CLIENT}{IDP_SECRET}")))
                } else {
                    r
                }
            },
        ),
        row(
            "TX-2 D-11 D-24",
            "Basic credentials that are not form-urldecodable",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.authorization(&basic_raw(&format!("{IDP_CLIENT}:%G0{IDP_SECRET}")))
                } else {
                    r
                }
            },
        ),
        row(
            "TX-2 D-24",
            "Basic credentials with an empty client id",
            401,
            "invalid_client",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.authorization(&basic_raw(&format!(":{IDP_SECRET}")))
                } else {
                    r
                }
            },
        ),
        row(
            "TX-2 SEC-7",
            "registered public client sends client_id only",
            401,
            "invalid_client",
            |fx, bad| {
                let client = pick(bad, IDP_PUBLIC, IDP_CLIENT);
                let r = with(fx, json!({"aud": client}));
                if bad {
                    r.no_auth().set("client_id", client)
                } else {
                    r
                }
            },
        ),
        row(
            "TX-2 SEC-7",
            "public client where the IdP registry accepts public clients",
            401,
            "invalid_client",
            |fx, bad| {
                let client = pick(bad, IDP_PUBLIC, IDP_CLIENT);
                let r = with(fx, json!({"aud": client})).to(To::IdpPublic);
                if bad {
                    r.no_auth().set("client_id", client)
                } else {
                    r
                }
            },
        ),
        row(
            "TX-2 SEC-7",
            "CIMD client where the IdP registry accepts public clients",
            401,
            "invalid_client",
            |fx, bad| {
                let client = pick(bad, CIMD_CLIENT, IDP_CLIENT);
                let r = with(fx, json!({"aud": client})).to(To::IdpPublic);
                if bad {
                    r.no_auth().set("client_id", client)
                } else {
                    r
                }
            },
        ),
        row(
            "TX-2",
            "Basic and client_secret_post together",
            400,
            "invalid_request",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad {
                    r.set("client_id", IDP_CLIENT)
                        .set("client_secret", IDP_SECRET)
                } else {
                    r
                }
            },
        ),
        row(
            "TX-2",
            "client not allowed token exchange",
            400,
            "unauthorized_client",
            |fx, bad| {
                let client = pick(bad, IDP_NO_TX, IDP_CLIENT);
                with(fx, json!({"aud": client}))
                    .basic(client, pick(bad, IDP_NO_TX_SECRET, IDP_SECRET))
            },
        ),
        row(
            "TX-2 SEC-1",
            "client assertion replayed",
            401,
            "invalid_client",
            |fx, bad| {
                let assertion = idp_assertion(fx, json!({}), json!({}));
                if bad {
                    fx.ok(&pk_req(fx, &assertion));
                }
                pk_req(fx, &assertion)
            },
        ),
        row(
            "TX-2 D-18",
            "client assertion header jwk",
            401,
            "invalid_client",
            |fx, bad| {
                let jwk = Value::Object(fx.keys.client.verifying_key().public_jwk().clone());
                let header = pick(bad, json!({"jwk": jwk}), json!({"x5t": X5T}));
                pk_req(fx, &idp_assertion(fx, header, json!({})))
            },
        ),
        row(
            "TX-2",
            "client assertion audience is the AS",
            401,
            "invalid_client",
            |fx, bad| {
                let aud = pick(bad, TOKEN_ENDPOINT, IDP);
                pk_req(fx, &idp_assertion(fx, json!({}), json!({"aud": aud})))
            },
        ),
        // ---- subject token: TX-4, D-1, D-3, D-18, TX-14, SEC-4, SEC-5 -----------------------------
        row(
            "TX-4 D-1 SEC-2",
            "ID token expired",
            400,
            "invalid_grant",
            |fx, bad| {
                let exp = pick(bad, at(-30), at(-29));
                with(fx, json!({"iat": at(-3600), "exp": exp}))
            },
        ),
        row(
            "TX-4 D-1 SEC-2",
            "ID token issued in the future",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"iat": pick(bad, at(31), at(30))})),
        ),
        row(
            "TX-4 D-1",
            "ID token lifetime above a day",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"iat": at(-60), "exp": pick(bad, at(86_341), at(86_340))}),
                )
            },
        ),
        row(
            "TX-4 D-1 D-7",
            "ID token exp as a string",
            400,
            "invalid_grant",
            |fx, bad| {
                with(
                    fx,
                    json!({"exp": pick(bad, json!(at(3540).to_string()), at(3540))}),
                )
            },
        ),
        row(
            "TX-4 D-1 AS-4",
            "ID token signed by an untrusted key under the IdP's kid",
            400,
            "invalid_grant",
            |fx, bad| {
                let t = if bad {
                    let header = json!({"typ": "JWT"});
                    fx.keys
                        .stranger
                        .sign_with_header(obj(header), id_token_json(fx).as_bytes())
                        .unwrap()
                } else {
                    fx.id_token(json!({}))
                };
                Req::exchange(&t)
            },
        ),
        row(
            "TX-4 D-1",
            "ID token signature altered",
            400,
            "invalid_grant",
            |fx, bad| {
                let t = fx.id_token(json!({}));
                let (input, sig) = t.rsplit_once('.').unwrap();
                let mut raw = ema_jose::base64url::decode(sig.as_bytes()).unwrap();
                raw[3] ^= 0x80;
                let forged = format!("{input}.{}", ema_jose::base64url::encode(&raw));
                Req::exchange(&pick(bad, forged, t.clone()))
            },
        ),
        row(
            "TX-4 D-1",
            "ID token from another issuer",
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
            "TX-4 D-1 D-12",
            "ID token iss with trailing slash",
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
            "TX-4 D-1",
            "ID token issued to another client",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"aud": pick(bad, "desk-idp-99", IDP_CLIENT)})),
        ),
        row(
            "TX-4 D-1 D-12",
            "ID token aud upper-case",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"aud": pick(bad, "DESK-IDP-01", IDP_CLIENT)})),
        ),
        row(
            "TX-4 D-3",
            "aud array with the client but no azp",
            400,
            "invalid_grant",
            |fx, bad| {
                let azp = pick(bad, Value::Null, json!(IDP_CLIENT));
                with(fx, json!({"aud": [IDP_CLIENT, "calendar-app"], "azp": azp}))
            },
        ),
        row(
            "TX-4 D-3",
            "aud array, azp names another client",
            400,
            "invalid_grant",
            |fx, bad| {
                let azp = pick(bad, "calendar-app", IDP_CLIENT);
                with(fx, json!({"aud": [IDP_CLIENT, "calendar-app"], "azp": azp}))
            },
        ),
        row(
            "TX-4 D-3",
            "aud array without the client, azp is the client",
            400,
            "invalid_grant",
            |fx, bad| {
                let aud = pick(
                    bad,
                    json!(["calendar-app", "mail-app"]),
                    json!(["calendar-app", IDP_CLIENT]),
                );
                with(fx, json!({"aud": aud, "azp": IDP_CLIENT}))
            },
        ),
        row(
            "TX-4 D-1",
            "ID token without sub",
            400,
            "invalid_grant",
            |fx, bad| with(fx, json!({"sub": pick(bad, Value::Null, json!(USER))})),
        ),
        row(
            "TX-4 D-1",
            "subject token is not a JWT",
            400,
            "invalid_grant",
            |fx, bad| {
                let t = fx.id_token(json!({}));
                Req::exchange(pick(bad, "not-a-subject-token", t.as_str()))
            },
        ),
        row(
            "TX-4 SEC-4",
            "ID token alg none",
            400,
            "invalid_grant",
            |fx, bad| {
                let t = compact(
                    &json!({"alg": "none", "typ": "JWT", "kid": "idp-k1"}),
                    id_token_json(fx).as_bytes(),
                    None,
                );
                Req::exchange(&pick(bad, t, fx.id_token(json!({}))))
            },
        ),
        row(
            "TX-4 SEC-4",
            "ID token alg HS256",
            400,
            "invalid_grant",
            |fx, bad| {
                let t = compact(
                    &json!({"alg": "HS256", "typ": "JWT", "kid": "idp-k1"}),
                    id_token_json(fx).as_bytes(),
                    None,
                );
                Req::exchange(&pick(bad, t, fx.id_token(json!({}))))
            },
        ),
        row(
            "D-18",
            "ID token header jku (control: x5t)",
            400,
            "invalid_grant",
            |fx, bad| {
                with_header(
                    fx,
                    pick(
                        bad,
                        json!({"jku": "https://attacker.example/jwks"}),
                        json!({"x5t": X5T}),
                    ),
                )
            },
        ),
        row(
            "D-18",
            "ID token header x5u",
            400,
            "invalid_grant",
            |fx, bad| {
                with_header(
                    fx,
                    pick(
                        bad,
                        json!({"x5u": "https://attacker.example/c.pem"}),
                        json!({"x5t#S256": X5T}),
                    ),
                )
            },
        ),
        row(
            "D-18",
            "ID token header jwk",
            400,
            "invalid_grant",
            |fx, bad| {
                let jwk = Value::Object(fx.idp_key().verifying_key().public_jwk().clone());
                with_header(fx, pick(bad, json!({"jwk": jwk}), json!({"x5t": X5T})))
            },
        ),
        row(
            "D-18",
            "ID token header x5c",
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
            "SEC-5",
            "ID token typ at+jwt (control: typ absent)",
            400,
            "invalid_grant",
            |fx, bad| with_header(fx, json!({"typ": pick(bad, json!("at+jwt"), Value::Null)})),
        ),
        row(
            "TX-14 SEC-5 SEC-11",
            "ID token claims under the ID-JAG typ",
            400,
            "invalid_grant",
            |fx, bad| with_header(fx, json!({"typ": pick(bad, "oauth-id-jag+jwt", "JWT")})),
        ),
        row(
            "TX-14 SEC-5 SEC-11",
            "an ID-JAG this IdP issued, as the subject token",
            400,
            "invalid_grant",
            |fx, bad| {
                if bad {
                    let jag = fx.ok(&with(fx, json!({}))).str("access_token").to_owned();
                    Req::exchange(&jag)
                } else {
                    with(fx, json!({}))
                }
            },
        ),
        // ---- audience, resource, policy: TX-6, TX-7, TX-8, TX-9, TX-11, D-2, D-12, JAG-4 ---------
        row(
            "TX-6 D-2",
            "unknown audience (control: a configured alias)",
            400,
            "invalid_target",
            |fx, bad| {
                with(fx, json!({})).set(
                    "audience",
                    pick(bad, "https://auth.unknown.example", AS_ALIAS),
                )
            },
        ),
        row(
            "TX-6 D-2 D-12",
            "audience with trailing slash",
            400,
            "invalid_target",
            |fx, bad| {
                with(fx, json!({})).set("audience", pick(bad, "https://auth.tasks.example/", AS))
            },
        ),
        row(
            "TX-6 D-2 D-12",
            "audience upper-case",
            400,
            "invalid_target",
            |fx, bad| {
                with(fx, json!({})).set("audience", pick(bad, "HTTPS://AUTH.TASKS.EXAMPLE", AS))
            },
        ),
        row(
            "TX-6 D-2 D-12",
            "audience is the AS token endpoint",
            400,
            "invalid_target",
            |fx, bad| with(fx, json!({})).set("audience", pick(bad, TOKEN_ENDPOINT, AS)),
        ),
        row(
            "D-2",
            "two audience values",
            400,
            "invalid_target",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.add("audience", OTHER_AS) } else { r }
            },
        ),
        row(
            "D-2",
            "the same audience twice",
            400,
            "invalid_target",
            |fx, bad| {
                let r = with(fx, json!({}));
                if bad { r.add("audience", AS) } else { r }
            },
        ),
        row(
            "TX-7 D-2 SEC-6",
            "resource governed by another audience",
            400,
            "invalid_target",
            |fx, bad| with(fx, json!({})).set("resource", pick(bad, OTHER_RESOURCE, TASKS)),
        ),
        row(
            "TX-7 D-12",
            "resource with trailing slash",
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
            "TX-7",
            "unknown resource",
            400,
            "invalid_target",
            |fx, bad| {
                with(fx, json!({})).set(
                    "resource",
                    pick(bad, "https://mcp.unknown.example/mcp", NOTES),
                )
            },
        ),
        row(
            "TX-8 D-2",
            "user assigned to no group",
            400,
            "access_denied",
            |fx, bad| with(fx, json!({"sub": pick(bad, NO_GROUP, USER)})),
        ),
        row(
            "TX-8 D-2",
            "user unknown to the policy",
            400,
            "access_denied",
            |fx, bad| with(fx, json!({"sub": pick(bad, "00uStrang3r", USER)})),
        ),
        row(
            "TX-8 D-2",
            "reader asks for a resource outside its assignment",
            400,
            "access_denied",
            |fx, bad| with(fx, json!({"sub": READER})).set("resource", pick(bad, NOTES, TASKS)),
        ),
        row(
            "TX-8",
            "reader asks for an AS it is not assigned to",
            400,
            "access_denied",
            |fx, bad| {
                with(fx, json!({"sub": pick(bad, READER, USER)}))
                    .set("audience", OTHER_AS)
                    .set("resource", OTHER_RESOURCE)
                    .set("scope", "other.read")
            },
        ),
        row(
            "TX-8 JAG-4",
            "client without a client-id mapping at the AS",
            400,
            "access_denied",
            |fx, bad| {
                let client = pick(bad, IDP_UNMAPPED, IDP_CLIENT);
                with(fx, json!({"aud": client}))
                    .basic(client, pick(bad, IDP_UNMAPPED_SECRET, IDP_SECRET))
            },
        ),
        row(
            "D-2 TX-9",
            "no requested scope is allowed",
            400,
            "invalid_scope",
            |fx, bad| {
                with(fx, json!({"sub": READER}))
                    .set("scope", pick(bad, "tasks.write", "tasks.read"))
            },
        ),
        row("D-2", "malformed scope", 400, "invalid_scope", |fx, bad| {
            with(fx, json!({})).set(
                "scope",
                pick(bad, "tasks.read\ttasks.write", "tasks.read tasks.write"),
            )
        }),
        row(
            "TX-11",
            "step-up required (MFA missing)",
            400,
            "insufficient_user_authentication",
            |fx, bad| {
                let amr = pick(bad, json!(["pwd"]), json!(["pwd", "otp"]));
                with(fx, json!({"sub": MFA_USER, "amr": amr}))
            },
        ),
        // ---- DPoP: TX-13 ---------------------------------------------------------------------------
        // DP-12: a proof at the IdP token endpoint is validated per RFC 9449 §4.3 (htu, htm, one
        // header, single use); any failure is `invalid_dpop_proof`.
        row(
            "TX-13",
            "DPoP header is not a JWT",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let p = fx.dpop_proof(&fx.keys.dpop, IDP_TOKEN_ENDPOINT, json!({}));
                with(fx, json!({})).dpop(pick(bad, "not-a-dpop-proof", p.as_str()))
            },
        ),
        row(
            "TX-13",
            "DPoP htu is the AS token endpoint",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let htu = pick(bad, TOKEN_ENDPOINT, IDP_TOKEN_ENDPOINT);
                with(fx, json!({})).dpop(&fx.dpop_proof(&fx.keys.dpop, htu, json!({})))
            },
        ),
        row(
            "TX-13",
            "DPoP htm GET",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let htm = pick(bad, "GET", "POST");
                with(fx, json!({})).dpop(&fx.dpop_proof(
                    &fx.keys.dpop,
                    IDP_TOKEN_ENDPOINT,
                    json!({"htm": htm}),
                ))
            },
        ),
        row(
            "TX-13",
            "two DPoP headers (RFC 9449 §4.3 check 1)",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let r = with(fx, json!({})).dpop(&fx.dpop_proof(
                    &fx.keys.dpop,
                    IDP_TOKEN_ENDPOINT,
                    json!({}),
                ));
                if bad {
                    r.header(
                        "dpop",
                        &fx.dpop_proof(&fx.keys.dpop, IDP_TOKEN_ENDPOINT, json!({})),
                    )
                } else {
                    r
                }
            },
        ),
        row(
            "TX-13 SEC-1",
            "DPoP proof replayed",
            400,
            "invalid_dpop_proof",
            |fx, bad| {
                let p = fx.dpop_proof(&fx.keys.dpop, IDP_TOKEN_ENDPOINT, json!({}));
                if bad {
                    fx.ok(&with(fx, json!({})).dpop(&p));
                }
                with(fx, json!({})).dpop(&p)
            },
        ),
        // ---- issue 9: no nested content (D-23), kid-less ID tokens (D-22) ------------------------
        row(
            "D-1 D-23",
            "ID token header cty JWT (control: no cty)",
            400,
            "invalid_grant",
            |fx, bad| with_header(fx, pick(bad, json!({"cty": "JWT"}), json!({}))),
        ),
        row(
            "D-1 D-23",
            "ID token header cty application/json",
            400,
            "invalid_grant",
            |fx, bad| with_header(fx, pick(bad, json!({"cty": "application/json"}), json!({}))),
        ),
        row(
            "D-1 D-23",
            "ID token header cty empty string",
            400,
            "invalid_grant",
            |fx, bad| with_header(fx, pick(bad, json!({"cty": ""}), json!({}))),
        ),
        row(
            "TX-2 D-23",
            "client assertion header cty JWT",
            401,
            "invalid_client",
            |fx, bad| {
                let header = pick(bad, json!({"cty": "JWT"}), json!({}));
                pk_req(fx, &idp_assertion(fx, header, json!({})))
            },
        ),
        row(
            "D-1 D-22 SEC-3",
            "kid-less ID token (control: the IdP's single key verifies it)",
            400,
            "invalid_grant",
            |fx, bad| {
                // The IdP publishes one key, so a kid-less ID token signed by it verifies; signed
                // by another key it is refused (the single key decides, not the signer).
                let header = json!({"alg": "ES256", "typ": "JWT"});
                let idp = fx.idp_key();
                let key = pick(bad, &fx.keys.stranger, &*idp);
                Req::exchange(&compact(&header, id_token_json(fx).as_bytes(), Some(key)))
            },
        ),
    ]
}

#[test]
fn token_exchange_negative_matrix() {
    run_matrix("token-exchange", &rows());
}

/// D-22 at the IdP: a kid-less ID token is refused with `invalid_grant` (D-1) when the IdP's key
/// set for ID tokens holds two usable keys (EC and RSA), although only one could verify ES256.
/// Controls: the same ID token with `kid` at the same IdP, and the same kid-less ID token at
/// the fixture's IdP (one key).
#[test]
fn d22_kid_less_id_token_with_two_issuer_keys_is_invalid_grant() {
    let fx = Fx::new();
    let idp = fx.idp_key();
    let rsa =
        ema_jose::SigningKey::generate(ema_jose::Algorithm::RS256, Some("idp-rsa".into())).unwrap();
    let keys = ema_jose::StaticKeySource::new().with_issuer(
        IDP,
        ema_jose::JwkSet::from_keys([idp.verifying_key().clone(), rsa.verifying_key().clone()]),
    );
    let grant = fx.token_exchange(keys, ema_grant::InMemoryReplayStore::new(100));
    let send = |req: &Req| {
        let reply = Reply::check(pollster::block_on(grant.handle(&req.build(), NOW)));
        reply.assert_no_leak(&req.sensitive());
        reply
    };
    let kid_less = compact(
        &json!({"alg": "ES256", "typ": "JWT"}),
        id_token_json(&fx).as_bytes(),
        Some(&idp),
    );
    let refused = send(&Req::exchange(&kid_less));
    assert_eq!(
        (refused.status, refused.error()),
        (400, "invalid_grant"),
        "{}",
        refused.raw
    );
    let with_kid = send(&with(&fx, json!({})));
    assert_eq!(with_kid.status, 200, "{}", with_kid.raw);
    fx.ok(&Req::exchange(&kid_less));
}

/// D-2, TX-9: the IdP's `invalid_scope` names the requested scopes none of which the policy
/// allows (scope names only, never a token); the control asks for an allowed scope and gets an
/// ID-JAG.
#[test]
fn d2_invalid_scope_description_names_the_refused_scopes() {
    let fx = Fx::new();
    let refused =
        fx.send(&with(&fx, json!({"sub": READER})).set("scope", "tasks.admin tasks.write"));
    assert_eq!(
        (refused.status, refused.error(), refused.description()),
        (
            400,
            "invalid_scope",
            "no requested scope is allowed for this user and client: tasks.admin tasks.write"
        )
    );
    let granted = fx.send(&with(&fx, json!({"sub": READER})).set("scope", "tasks.read"));
    assert_eq!(granted.status, 200, "{}", granted.raw);
}
