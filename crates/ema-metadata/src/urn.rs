//! Every protocol URN of MCP Enterprise-Managed Authorization, defined once.
//!
//! Grant types go in `grant_type` and in metadata's `grant_types_supported`; token types in
//! RFC 8693's `subject_token_type`, `requested_token_type` and `issued_token_type`; the
//! assertion type in RFC 7523's `client_assertion_type`; the grant profile in
//! `authorization_grant_profiles_supported`. Other crates of ema-rs re-export these under their
//! historical names (`ema_grant::TOKEN_EXCHANGE`, `ema_saml::SAML2_TOKEN_TYPE`, ...); all of
//! them are these constants.
//!
//! ```
//! use ema_metadata::urn;
//!
//! assert_eq!(urn::JWT_BEARER, "urn:ietf:params:oauth:grant-type:jwt-bearer");
//! assert!(urn::ID_JAG.starts_with(urn::TOKEN_TYPE_PREFIX));
//! assert!(urn::is_id_jag_token_type(urn::LEGACY_ID_JAG));
//! assert!(!urn::is_id_jag_token_type(urn::ACCESS_TOKEN));
//! ```

/// The common prefix of the RFC 8693 token type URNs (RFC 8693 §3).
pub const TOKEN_TYPE_PREFIX: &str = "urn:ietf:params:oauth:token-type:";

// Grant types.

/// The token-exchange grant type (RFC 8693 §2.1): the IdP hop, ID token or SAML assertion in,
/// ID-JAG out (TX-1).
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The JWT bearer authorization grant type (RFC 7523 §2.1): the authorization-server hop,
/// ID-JAG in, access token out (AS-1, MD-2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

// Token types.

/// The Identity Assertion JWT Authorization Grant token type
/// (draft-ietf-oauth-identity-assertion-authz-grant; TX-1, MD-4).
pub const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";

/// The token type of the drafts before `id-jag`, which some IdPs still return (D-10): clients
/// accept it as `issued_token_type`; an IdP issues it only when a deployment opts in.
pub const LEGACY_ID_JAG: &str = "urn:ietf:params:oauth:token-type:jwt-authorization-grant";

/// An OpenID Connect ID token as a subject token (RFC 8693 §3; TX-3).
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

/// A SAML 2.0 assertion as a subject token (RFC 8693 §3; TX-3).
pub const SAML2: &str = "urn:ietf:params:oauth:token-type:saml2";

/// An OAuth refresh token (RFC 8693 §3). TX-3 lets an IdP accept it as a subject token;
/// ema-grant refuses it (TX-5).
pub const REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";

/// An OAuth access token (RFC 8693 §3); what an authorization server issues, never an ID-JAG.
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

// Profiles and assertion types.

/// The grant profile an authorization server advertises in
/// `authorization_grant_profiles_supported` when it accepts ID-JAGs
/// (draft-ietf-oauth-identity-assertion-authz-grant; MD-1).
pub const ID_JAG_PROFILE: &str = "urn:ietf:params:oauth:grant-profile:id-jag";

/// `client_assertion_type` of `private_key_jwt` client authentication (RFC 7523 §2.2,
/// OpenID Connect Core §9; D-24).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Whether `token_type` names an ID-JAG, current ([`ID_JAG`]) or legacy ([`LEGACY_ID_JAG`]).
pub fn is_id_jag_token_type(token_type: &str) -> bool {
    token_type == ID_JAG || token_type == LEGACY_ID_JAG
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire values, spelled out: these strings are the point.
    #[test]
    fn urns_match_their_specifications() {
        for (urn, wire) in [
            (
                TOKEN_EXCHANGE,
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            (JWT_BEARER, "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            (ID_JAG, "urn:ietf:params:oauth:token-type:id-jag"),
            (
                LEGACY_ID_JAG,
                "urn:ietf:params:oauth:token-type:jwt-authorization-grant",
            ),
            (ID_TOKEN, "urn:ietf:params:oauth:token-type:id_token"),
            (SAML2, "urn:ietf:params:oauth:token-type:saml2"),
            (
                REFRESH_TOKEN,
                "urn:ietf:params:oauth:token-type:refresh_token",
            ),
            (
                ACCESS_TOKEN,
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            (ID_JAG_PROFILE, "urn:ietf:params:oauth:grant-profile:id-jag"),
            (
                CLIENT_ASSERTION_TYPE,
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
        ] {
            assert_eq!(urn, wire);
        }
        for token_type in [
            ID_JAG,
            LEGACY_ID_JAG,
            ID_TOKEN,
            SAML2,
            REFRESH_TOKEN,
            ACCESS_TOKEN,
        ] {
            assert!(token_type.starts_with(TOKEN_TYPE_PREFIX), "{token_type}");
        }
        assert!(is_id_jag_token_type(ID_JAG) && is_id_jag_token_type(LEGACY_ID_JAG));
        assert!(!is_id_jag_token_type(ID_TOKEN) && !is_id_jag_token_type("id-jag"));
    }
}
