//! Fuzz target bodies for the parsers of ema-rs, one pure function per target.
//!
//! # One body, two drivers
//!
//! Each function here takes arbitrary bytes, feeds them to a public parser of `ema-jose`, and
//! checks what it can about the result. It returns normally for every input; a panic is a
//! finding, either a bug in `ema-jose` or an invariant asserted here on purpose. The same body is
//! driven two ways:
//!
//! - by libFuzzer: `fuzz/fuzz_targets/<target>.rs` is a one-line `fuzz_target!` calling the
//!   function of the same name (`cargo +nightly fuzz run <target>`, nightly only);
//! - by `tests/replay.rs` on stable: every file of `fuzz/corpus/<target>/` (the committed seeds
//!   and a few entries the fuzzer found) and of `fuzz/regressions/<target>/` (inputs that once
//!   crashed) is fed to the function in `cargo test`, so CI checks the whole corpus on every
//!   change without a nightly toolchain.
//!
//! Keeping the bodies in a library rather than in the fuzz targets is what makes the second
//! driver possible: the fuzz crate lives outside the workspace and needs nightly, this crate
//! does not.
//!
//! # Targets
//!
//! | target | parser | invariants |
//! |---|---|---|
//! | [`jws_compact`] | [`UnverifiedJws::parse`](ema_jose::UnverifiedJws::parse), [`UnverifiedJwt::parse`](ema_jose::UnverifiedJwt::parse) | the typed header agrees with the header JSON; the JWT parse is the JWS parse plus a claims object; policies and claim checks never contradict themselves |
//! | [`json_claims`] | the claims reader of [`UnverifiedJwt::parse`](ema_jose::UnverifiedJwt::parse) against [`parse_json_object`](ema_jose::parse_json_object) | both accept with the same object, member by member, or both refuse with the same error |
//! | [`jwk_set`] | [`JwkSet::parse`](ema_jose::JwkSet::parse), [`VerifyingKey::from_jwk_json`](ema_jose::VerifyingKey::from_jwk_json) | every accepted key has a 43-character thumbprint, a public JWK without private members that re-parses to the same key, and verifies only the algorithms it accepts |
//! | [`jws_verify`] | parse, [`HeaderPolicy`](ema_jose::HeaderPolicy) for ID-JAG, verification with [`FIXED_ES256_JWK`], claim checks at [`FIXED_NOW`] | a verified token is ES256 with an ID-JAG `typ`; every claim check returns |
//! | [`jwt_oracle`] | the [`jws_verify`] path (compact tokens with the fixed ES256 key, or header and claims the body signs with the fixed Ed25519 key), then `jsonwebtoken::decode` with the same key, issuer, audience | a token ema-jose accepts is accepted by `jsonwebtoken` with the same claims (ema-jose stricter, never looser) |
//! | [`grant_form`] | [`Form::parse`](ema_grant::Form::parse) | unique names, values retrievable, re-encoding round-trips, scopes round-trip |
//! | [`id_jag_claims`] | [`IdJagClaims::from_claims`](ema_id_jag::IdJagClaims::from_claims) | accepted claims round-trip through `to_object` |
//! | [`as_metadata`] | RFC 8414 / RFC 9728 documents, `WWW-Authenticate` | accepted documents and challenges round-trip |
//! | [`saml_assertion`] | [`SamlAssertionValidator::validate`](ema_saml::SamlAssertionValidator::validate) with [`fixed_saml_validator`] at [`FIXED_NOW`], and the base64url form | an accepted assertion names the fixed issuer, SP and client, has a `NameID`, converts to agreeing claims, and is refused for another client |
//! | [`uri_rules`] | [`normalize_htu`](ema_grant::dpop::normalize_htu), [`redirect_uri_matches`](ema_grant::redirect::redirect_uri_matches) | a normalized `htu` is `http(s)`, ASCII, without query, fragment or userinfo, and a fixed point; redirect matching is reflexive and symmetric, and differing URIs match only as loopback redirects of one host |
//! | [`cedar_request`] | the Cedar engine of ema-authz with the example tools and policies of `examples/config/policies/`: arbitrary arguments (and token claims) to Cedar requests and entities, then a decision | malformed arguments are denied by no policy; well-formed ones get the decision of the policies restated in Rust; an allowed call's tool is visible (`may_call`) |
//!
//! The seeds of `jws_compact`, `jwk_set`, `jws_verify`, `jwt_oracle` (signing mode) and `saml_assertion` are written by the ignored test
//! `generate_seeds` (`tests/replay/seeds.rs`); `fuzz/corpus/README.md` says where each kind of
//! seed comes from.

mod cedar;
mod compact;
mod grant;
mod json;
mod keys;
mod oracle;
mod saml;
mod uri;
mod verify;

pub use cedar::{CEDAR_TOOLS, cedar_mapping, cedar_request};
pub use compact::jws_compact;
pub use grant::{as_metadata, grant_form, id_jag_claims};
pub use json::json_claims;
pub use keys::jwk_set;
pub use oracle::{
    FIXED_ED25519_JWK, ORACLE_SEPARATOR, ORACLE_SIGN_MODE, jwt_oracle, jwt_oracle_token,
};
pub use saml::{
    FIXED_SAML_CLIENT, FIXED_SAML_ISSUER, FIXED_SAML_RECIPIENT, FIXED_SAML_SP,
    fixed_saml_validator, saml_assertion,
};
pub use uri::uri_rules;
pub use verify::{
    FIXED_AUDIENCE, FIXED_ES256_JWK, FIXED_ISSUER, FIXED_NOW, fixed_verifying_key, jws_verify,
};
