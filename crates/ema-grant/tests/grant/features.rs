//! The `saml` feature at the token exchange (TX-3): without it, or without a configured SAML
//! validator, a SAML 2.0 subject token type is refused exactly like any other unsupported
//! subject token type.

use ema_grant::ID_TOKEN_TYPE;
use serde_json::json;

use crate::support::*;

/// TX-3: the SAML 2.0 type, with no validator (always the case without the `saml` feature),
/// gets the same status, `error` and `error_description` as the other unsupported types; the
/// ID token type is the positive control.
#[test]
fn tx3_saml2_without_validator_is_refused_like_any_unsupported_type() {
    let fx = Fx::new();
    let exchange = |token_type: &str| {
        fx.send(&Req::exchange(&fx.id_token(json!({}))).set("subject_token_type", token_type))
    };
    assert_eq!(exchange(ID_TOKEN_TYPE).status, 200);
    let saml = exchange(SAML2_TOKEN_TYPE);
    assert_eq!(
        (saml.status, saml.error(), saml.description()),
        (
            400,
            "invalid_request",
            "subject_token_type is not supported"
        )
    );
    for other in [
        REFRESH_TOKEN_TYPE,
        "urn:ietf:params:oauth:token-type:access_token",
        "urn:example:token-type:unheard-of",
    ] {
        let reply = exchange(other);
        assert_eq!(
            (reply.status, reply.error(), reply.description()),
            (saml.status, saml.error(), saml.description()),
            "{other}"
        );
    }
    assert!(!fx.idp.accepts_saml_assertions());
}

/// TX-3: the constant the crate exports is the RFC 8693 SAML 2.0 token type, with or without
/// the feature (a client building a request names it either way).
#[test]
fn tx3_saml2_token_type_is_exported_without_the_feature() {
    assert_eq!(ema_grant::SAML2_TOKEN_TYPE, SAML2_TOKEN_TYPE);
}
