//! The `saml_assertion` target: [`SamlAssertionValidator`] on raw bytes (TX-3, TX-4).

use std::sync::OnceLock;

use ema_saml::{AttributeNames, SamlAssertionValidator};

use crate::verify::{FIXED_NOW, fixed_verifying_key};

/// The SAML entity id the `saml_assertion` validator expects.
pub const FIXED_SAML_ISSUER: &str = "https://idp.acme.example/saml";
/// The SP entity id the `saml_assertion` validator maps to [`FIXED_SAML_CLIENT`].
pub const FIXED_SAML_SP: &str = "https://desk.acme.example/sp";
/// The authenticated client of the `saml_assertion` target.
pub const FIXED_SAML_CLIENT: &str = "desk-idp-01";
/// The bearer confirmation `Recipient` the `saml_assertion` validator expects (the IdP's token
/// endpoint, TX-4).
pub const FIXED_SAML_RECIPIENT: &str = "https://idp.acme.example/token";

/// The validator of the `saml_assertion` target: [`FIXED_SAML_ISSUER`], the key of
/// [`FIXED_ES256_JWK`](crate::FIXED_ES256_JWK), [`FIXED_SAML_SP`] → [`FIXED_SAML_CLIENT`],
/// recipient [`FIXED_SAML_RECIPIENT`].
pub fn fixed_saml_validator() -> &'static SamlAssertionValidator {
    static VALIDATOR: OnceLock<SamlAssertionValidator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        SamlAssertionValidator::new(FIXED_SAML_ISSUER)
            .with_key(fixed_verifying_key().clone())
            .with_audience(FIXED_SAML_SP, FIXED_SAML_CLIENT)
            .with_recipient(FIXED_SAML_RECIPIENT)
            .with_attribute_names(
                AttributeNames::new()
                    .with_email("email")
                    .with_groups("groups"),
            )
    })
}

/// Validates `data` as an XML assertion and, when it is text, as a base64url subject token, at
/// [`FIXED_NOW`]. An accepted assertion must name the fixed issuer and client, have a non-empty
/// `NameID`, and convert to claims whose `sub`, `iss` and `aud` agree with it.
pub fn saml_assertion(data: &[u8]) {
    let validator = fixed_saml_validator();
    if let Ok(identity) = validator.validate(data, FIXED_SAML_CLIENT, FIXED_NOW) {
        assert_eq!(identity.issuer, FIXED_SAML_ISSUER);
        assert_eq!(identity.client_id, FIXED_SAML_CLIENT);
        assert_eq!(identity.audience, FIXED_SAML_SP);
        assert!(!identity.name_id.value.is_empty());
        let claims = identity.to_claims();
        assert_eq!(
            claims.required_string("sub").ok(),
            Some(identity.name_id.value.as_str())
        );
        assert_eq!(claims.required_string("iss").ok(), Some(FIXED_SAML_ISSUER));
        assert_eq!(claims.required_string("aud").ok(), Some(FIXED_SAML_CLIENT));
        // Another client never gets the same assertion through.
        assert!(
            validator
                .validate(data, "another-client", FIXED_NOW)
                .is_err()
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = validator.validate_base64url(text, FIXED_SAML_CLIENT, FIXED_NOW);
    }
}
