//! SAML 2.0 subject assertions at the IdP's token exchange (TX-3, TX-4, SEC-1, D-1): the
//! positive control through to an access token, each defect with its OAuth error and HTTP
//! status, the bearer `Recipient` and single use, and the type refused while no validator is
//! configured.

use std::sync::Arc;

use ema_grant::BuildError;
use ema_grant::{
    ID_JAG_TOKEN_TYPE, InMemoryReplayStore, ReplayError, ReplayKey, ReplayKind, ReplayStore, Seen,
};
use ema_jose::{Algorithm, SigningKey, UnixTime};
use ema_saml::{
    AssertionTemplate, AttributeNames, SamlAssertionSigner, SamlAssertionValidator, SamlConfigError,
};
use serde_json::json;

use crate::support::*;

/// The SP entity id the IdP knows [`IDP_CLIENT`] by.
const SP: &str = "https://desk.acme.example/sp";
/// The SP entity id of [`IDP_UNMAPPED`].
const OTHER_SP: &str = "https://other.acme.example/sp";
/// The IdP's SAML entity id.
const ENTITY: &str = "https://idp.acme.example/saml";

struct Saml {
    fx: Fx,
    key: Arc<SigningKey>,
    /// Built typed (no erasure), beside the erased fixtures of the other modules.
    grant:
        ema_grant::TokenExchangeGrant<ema_jose::StaticKeySource, TestPolicy, InMemoryReplayStore>,
}

/// An in-memory store that cannot record SAML assertions (everything else works).
struct NoSamlStore(InMemoryReplayStore);

impl ReplayStore for NoSamlStore {
    fn check_and_insert(
        &self,
        key: ReplayKey<'_>,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> impl Future<Output = Result<Seen, ReplayError>> + Send {
        std::future::ready(if key.kind == ReplayKind::SamlAssertion {
            Err(ReplayError::Unavailable {
                reason: "down".into(),
            })
        } else {
            self.0.insert_now(key, expires_at, now)
        })
    }
}

impl Saml {
    fn new() -> Self {
        let fx = Fx::new();
        let key = Arc::new(SigningKey::generate(Algorithm::RS256, None).unwrap());
        let validator = SamlAssertionValidator::new(ENTITY)
            .with_key(key.verifying_key().clone())
            .with_audience(SP, IDP_CLIENT)
            .with_audience(OTHER_SP, IDP_UNMAPPED)
            // TX-4 (RFC 7522 §3): the bearer confirmation names this token endpoint.
            .with_recipient(IDP_TOKEN_ENDPOINT)
            .with_attribute_names(AttributeNames::new().with_email("mail"));
        let grant = fx
            .token_exchange_builder(fx.idp_key_source(), InMemoryReplayStore::new(1_000))
            .saml_assertions(validator)
            .build_typed()
            .unwrap();
        Self { fx, key, grant }
    }

    fn template(&self) -> AssertionTemplate {
        AssertionTemplate::new(USER, SP, NOW)
            .with_recipient(IDP_TOKEN_ENDPOINT)
            .with_authn_instant(NOW.minus(60))
            .with_authn_context_class_ref("urn:acme:acr:mfa")
            .with_attribute("mail", [EMAIL])
    }

    fn token(&self, t: &AssertionTemplate) -> String {
        SamlAssertionSigner::new(ENTITY, self.key.clone())
            .sign_base64url(t)
            .unwrap()
    }

    fn request(&self, token: &str) -> Req {
        Req::exchange(token).set("subject_token_type", SAML2_TOKEN_TYPE)
    }

    fn send_at(&self, req: &Req, now: UnixTime) -> Reply {
        let reply = Reply::check(pollster::block_on(self.grant.handle(&req.build(), now)));
        reply.assert_no_leak(&req.sensitive());
        reply
    }

    fn send(&self, req: &Req) -> Reply {
        self.send_at(req, NOW)
    }
}

fn assert_error(reply: &Reply, status: u16, error: &str) {
    assert_eq!(
        (reply.status, reply.error()),
        (status, error),
        "{}",
        reply.raw
    );
}

/// TX-3 positive control: a SAML assertion for the client's SP is exchanged for an ID-JAG
/// carrying the same subject and authentication context, and that ID-JAG gets an access token
/// at the authorization server as one from an ID token would.
#[test]
fn tx3_saml_assertion_is_exchanged_for_an_id_jag() {
    let s = Saml::new();
    let reply = s.send(&s.request(&s.token(&s.template())));
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert_eq!(reply.str("issued_token_type"), ID_JAG_TOKEN_TYPE);
    let jag = reply.str("access_token").to_owned();
    let (_, claims) = peek(&jag);
    assert_eq!(claims["iss"], IDP);
    assert_eq!(claims["sub"], USER, "sub is the SAML NameID");
    assert_eq!(claims["client_id"], CLIENT);
    assert_eq!(claims["auth_time"], json!(NOW.as_secs() - 60));
    assert_eq!(claims["acr"], "urn:acme:acr:mfa");
    assert_eq!(claims["scope"], "tasks.read");

    // Padding in the base64url subject token is tolerated.
    let padded = {
        use base64::Engine as _;
        let xml = SamlAssertionSigner::new(ENTITY, s.key.clone())
            .sign(&s.template())
            .unwrap();
        base64::engine::general_purpose::URL_SAFE.encode(xml)
    };
    assert_eq!(s.send(&s.request(&padded)).status, 200);

    // The rest of the flow is unchanged: the ID-JAG is redeemed at the AS.
    let at = s.fx.ok(&Req::bearer(&jag));
    assert_eq!(at.str("token_type"), "Bearer");
}

/// TX-4 / D-1: an assertion whose audience (SP entity id) maps to another client is
/// `invalid_grant`, both ways round.
#[test]
fn tx4_d1_saml_audience_of_another_client() {
    let s = Saml::new();
    // Issued for IDP_CLIENT's SP, presented by IDP_UNMAPPED.
    let reply = s.send(
        &s.request(&s.token(&s.template()))
            .basic(IDP_UNMAPPED, IDP_UNMAPPED_SECRET),
    );
    assert_error(&reply, 400, "invalid_grant");
    assert_eq!(
        reply.description(),
        "subject token was not issued to this client"
    );
    // Issued for IDP_UNMAPPED's SP, presented by IDP_CLIENT.
    let other = s.template().with_audiences([OTHER_SP]);
    assert_error(&s.send(&s.request(&s.token(&other))), 400, "invalid_grant");
    // An SP entity id mapped to nobody.
    let nobody = s.template().with_audiences(["https://nobody.example/sp"]);
    assert_error(&s.send(&s.request(&s.token(&nobody))), 400, "invalid_grant");
}

/// TX-4 / D-1 / D-12: an assertion from another issuer is `invalid_grant`.
#[test]
fn tx4_d1_saml_wrong_issuer() {
    let s = Saml::new();
    for issuer in [
        "https://evil.example/saml",
        "https://idp.acme.example/saml/",
        IDP,
    ] {
        let token = SamlAssertionSigner::new(issuer, s.key.clone())
            .sign_base64url(&s.template())
            .unwrap();
        let reply = s.send(&s.request(&token));
        assert_error(&reply, 400, "invalid_grant");
        assert_eq!(
            reply.description(),
            "subject token was not issued by this IdP"
        );
    }
}

/// TX-4 / D-1: an expired (or not yet valid) assertion is `invalid_grant`.
#[test]
fn tx4_d1_saml_expired() {
    let s = Saml::new();
    let token = s.token(&s.template());
    let reply = s.send_at(&s.request(&token), NOW.plus(300 + 30));
    assert_error(&reply, 400, "invalid_grant");
    assert_eq!(reply.description(), "subject token expired");
    // Positive control at the last second of the leeway.
    assert_eq!(s.send_at(&s.request(&token), NOW.plus(329)).status, 200);
    let future = s.send_at(&s.request(&token), NOW.minus(120));
    assert_error(&future, 400, "invalid_grant");
}

/// TX-4 / D-1: a bad signature, an unsigned or tampered assertion, or garbage is
/// `invalid_grant`.
#[test]
fn tx4_d1_saml_bad_signature() {
    let s = Saml::new();
    let stranger = Arc::new(SigningKey::generate(Algorithm::RS256, None).unwrap());
    let forged = SamlAssertionSigner::new(ENTITY, stranger)
        .sign_base64url(&s.template())
        .unwrap();
    let reply = s.send(&s.request(&forged));
    assert_error(&reply, 400, "invalid_grant");
    assert_eq!(reply.description(), "subject token signature is invalid");

    let xml = SamlAssertionSigner::new(ENTITY, s.key.clone())
        .sign(&s.template())
        .unwrap();
    let tampered = ema_jose::base64url::encode(xml.replace(USER, "00uAdm1n00").as_bytes());
    assert_error(&s.send(&s.request(&tampered)), 400, "invalid_grant");

    for garbage in [
        "not base64url!".to_owned(),
        ema_jose::base64url::encode(b"<not-xml"),
        ema_jose::base64url::encode(
            b"<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><x>&e;</x>",
        ),
        s.fx.id_token(json!({})),
    ] {
        let reply = s.send(&s.request(&garbage));
        assert_error(&reply, 400, "invalid_grant");
        assert_eq!(
            reply.description(),
            "subject token is not an acceptable SAML assertion"
        );
    }
    // An assertion under the ID token type is not an ID token.
    let as_id_token = Req::exchange(&s.token(&s.template()));
    assert_error(&s.send(&as_id_token), 400, "invalid_grant");
}

/// TX-3: without a configured validator the SAML type stays `invalid_request`.
#[test]
fn tx3_saml_not_enabled_is_invalid_request() {
    let s = Saml::new();
    let req = s.request(&s.token(&s.template()));
    let reply = s.fx.send(&req);
    assert_error(&reply, 400, "invalid_request");
    assert_eq!(reply.description(), "subject_token_type is not supported");
    // The same request where it is enabled succeeds.
    assert_eq!(s.send(&req).status, 200);
    assert!(!s.fx.idp.accepts_saml_assertions());
    assert!(s.grant.accepts_saml_assertions());
}

/// TX-4 / D-1 (RFC 7522 §3): an assertion whose bearer confirmation names another recipient,
/// or none, is `invalid_grant`; the positive control names this token endpoint.
#[test]
fn tx4_d1_saml_recipient_must_be_this_token_endpoint() {
    let s = Saml::new();
    for other in [
        "https://desk.acme.example/acs",
        "https://idp.acme.example/oauth2/token/",
        "https://as.tasks.example/token",
    ] {
        let reply = s.send(&s.request(&s.token(&s.template().with_recipient(other))));
        assert_error(&reply, 400, "invalid_grant");
        assert_eq!(
            reply.description(),
            "subject token is not for this token endpoint"
        );
    }
    let mut missing = s.template();
    missing.recipient = None;
    let reply = s.send(&s.request(&s.token(&missing)));
    assert_error(&reply, 400, "invalid_grant");
    assert_eq!(
        reply.description(),
        "subject token is not for this token endpoint"
    );
    // Positive control.
    assert_eq!(s.send(&s.request(&s.token(&s.template()))).status, 200);
}

/// SEC-1 / TX-4: a SAML assertion is single-use: the second exchange of the same assertion
/// (same `Issuer` and `ID`) within its lifetime is `invalid_grant`, saying it was already
/// used; another assertion still goes through.
#[test]
fn sec1_saml_assertion_replay_is_refused() {
    let s = Saml::new();
    let token = s.token(&s.template());
    assert_eq!(s.send(&s.request(&token)).status, 200);
    let again = s.send_at(&s.request(&token), NOW.plus(10));
    assert_error(&again, 400, "invalid_grant");
    assert_eq!(
        again.description(),
        "this SAML assertion was already used; obtain a new one from the IdP"
    );
    // Still recorded at the last second the assertion itself is acceptable (NotOnOrAfter plus
    // the 30 s leeway).
    let last = s.send_at(&s.request(&token), NOW.plus(300 + 29));
    assert_eq!(
        last.description(),
        "this SAML assertion was already used; obtain a new one from the IdP"
    );
    // The same `ID` re-signed (another encoding of the same assertion) is the same assertion.
    let same_id = s.token(&s.template().with_id("_fixed-id"));
    assert_eq!(s.send(&s.request(&same_id)).status, 200);
    let resigned = s.token(&s.template().with_id("_fixed-id").with_attribute("x", ["y"]));
    assert_error(&s.send(&s.request(&resigned)), 400, "invalid_grant");
    // Positive control: a fresh assertion is exchanged.
    assert_eq!(s.send(&s.request(&s.token(&s.template()))).status, 200);
}

/// SEC-1 / D-6 for SAML: an assertion is consumed only when an ID-JAG is issued; a request
/// refused after the assertion was validated (unknown audience, policy) does not burn it.
#[test]
fn sec1_refused_exchange_does_not_consume_the_saml_assertion() {
    let s = Saml::new();
    let token = s.token(&s.template());
    let unknown = s.request(&token).set("audience", "https://unknown.example");
    assert_error(&s.send(&unknown), 400, "invalid_target");
    assert_eq!(s.send(&s.request(&token)).status, 200);
    assert_error(&s.send(&s.request(&token)), 400, "invalid_grant");
}

/// SEC-1: when the replay store cannot record the assertion, the exchange fails closed with
/// `temporarily_unavailable` (503) rather than issue an ID-JAG for a possibly replayed one;
/// the positive control is the same assertion with a working store.
#[test]
fn sec1_saml_replay_store_unavailable_fails_closed() {
    let s = Saml::new();
    let validator = SamlAssertionValidator::new(ENTITY)
        .with_key(s.key.verifying_key().clone())
        .with_audience(SP, IDP_CLIENT)
        .with_recipient(IDP_TOKEN_ENDPOINT);
    let broken =
        s.fx.token_exchange_builder(
            s.fx.idp_key_source(),
            NoSamlStore(InMemoryReplayStore::new(100)),
        )
        .saml_assertions(validator)
        .build_typed()
        .unwrap();
    let req = s.request(&s.token(&s.template()));
    let reply = Reply::check(pollster::block_on(broken.handle(&req.build(), NOW)));
    assert_error(&reply, 503, "temporarily_unavailable");
    assert_eq!(s.send(&req).status, 200);
}

/// TX-3, TX-4: a SAML validator that could accept no assertion (no key, no SP audience, no
/// `Recipient`) is refused when the IdP is built, not at every exchange; the positive control
/// is the complete validator of [`Saml::new`], which builds and accepts an assertion.
#[test]
fn tx3_incomplete_saml_validator_is_refused_at_build() {
    let s = Saml::new();
    let key = s.key.verifying_key().clone();
    let rows = [
        (
            SamlAssertionValidator::new(ENTITY)
                .with_audience(SP, IDP_CLIENT)
                .with_recipient(IDP_TOKEN_ENDPOINT),
            SamlConfigError::NoKeys,
        ),
        (
            SamlAssertionValidator::new(ENTITY)
                .with_key(key.clone())
                .with_recipient(IDP_TOKEN_ENDPOINT),
            SamlConfigError::NoAudiences,
        ),
        (
            SamlAssertionValidator::new(ENTITY)
                .with_key(key.clone())
                .with_audience(SP, IDP_CLIENT),
            SamlConfigError::NoRecipient,
        ),
    ];
    for (validator, missing) in rows {
        let built =
            s.fx.token_exchange_builder(s.fx.idp_key_source(), InMemoryReplayStore::new(100))
                .saml_assertions(validator)
                .build_typed();
        assert_eq!(built.err(), Some(BuildError::Saml(missing)));
    }
    let reply = s.send(&s.request(&s.token(&s.template())));
    assert_eq!(reply.status, 200, "{}", reply.raw);
}
