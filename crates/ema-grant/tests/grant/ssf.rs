//! The SSF push receiver's matrix (RV-4..RV-10, RV-13, D-37): every refusal with its RFC 8935
//! code and, beside it, the positive control that differs in that one respect.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ema_grant::revocation::{
    Cursor, LedgerChange, LedgerChanges, LedgerError, LedgerSnapshot, LedgerVerdict, MemoryLedger,
    RevocationKind, RevocationLedger, RevocationReason, RevocationScope,
};
use ema_grant::ssf::{
    SECEVENT_CONTENT_TYPE, SECEVENT_TYP, SetOutcome, SetReceipt, SsfError, SsfReceiver,
    SubjectMatching, TransmitterTrust, event_type,
};
use ema_grant::ssf_health::{ChannelHealth, StreamStatus, VerificationMatch, VerificationPolicy};
use ema_grant::ssf_poll::{PollError, SsfPoller};
use ema_grant::{InMemoryReplayStore, Revoker};
use ema_jose::{Algorithm, AlgorithmSet, JwkSet, SigningKey, UnixTime, base64url};
use serde_json::{Value, json};

use crate::support::{AS, IDP, NOW, USER, USER_LOCAL};

const AUD: &str = "https://auth.tasks.example/ssf/events";
const AUTH: &str = "Bearer ssf-0f3a9c";
const OTHER_IDP: &str = "https://idp.other.example";
const OTHER_AUTH: &str = "Bearer ssf-other-77";

/// A ledger that can be switched off (RV-14) over a memory ledger.
#[derive(Debug, Default)]
struct Switch {
    inner: MemoryLedger,
    down: AtomicBool,
}

impl Switch {
    /// Runs `f` only while the ledger is up (a memory ledger writes when the call is made).
    fn gate<T: Send, F: Future<Output = Result<T, LedgerError>> + Send>(
        &self,
        f: impl FnOnce() -> F,
    ) -> impl Future<Output = Result<T, LedgerError>> + Send {
        let up = (!self.down.load(Ordering::SeqCst)).then(f);
        async move {
            match up {
                Some(f) => f.await,
                None => Err(LedgerError::Unavailable {
                    reason: "connection refused".into(),
                }),
            }
        }
    }
}

impl RevocationLedger for Switch {
    fn revoke_subject(
        &self,
        scope: &RevocationScope,
        subject: &str,
        at: UnixTime,
        kind: RevocationKind,
        now: UnixTime,
    ) -> impl Future<Output = Result<UnixTime, LedgerError>> + Send {
        self.gate(move || self.inner.revoke_subject(scope, subject, at, kind, now))
    }
    fn disable(
        &self,
        scope: &RevocationScope,
        subject: &str,
        kind: RevocationKind,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        self.gate(move || self.inner.disable(scope, subject, kind, now))
    }
    fn enable(
        &self,
        scope: &RevocationScope,
        subject: &str,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        self.gate(move || self.inner.enable(scope, subject, now))
    }
    fn deny_token(
        &self,
        issuer: &str,
        jti: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        self.gate(move || self.inner.deny_token(issuer, jti, until, now))
    }
    fn check_id_jag(
        &self,
        idp_issuer: &str,
        tenant: Option<&str>,
        idp_subject: &str,
        iat: UnixTime,
    ) -> impl Future<Output = Result<LedgerVerdict, LedgerError>> + Send {
        self.gate(move || {
            self.inner
                .check_id_jag(idp_issuer, tenant, idp_subject, iat)
        })
    }
    fn snapshot(&self) -> impl Future<Output = Result<LedgerSnapshot, LedgerError>> + Send {
        self.gate(move || self.inner.snapshot())
    }
    fn changes_since(
        &self,
        cursor: &Cursor,
    ) -> impl Future<Output = Result<LedgerChanges, LedgerError>> + Send {
        self.gate(move || self.inner.changes_since(cursor))
    }
}

struct Fx {
    key: SigningKey,
    other_key: SigningKey,
    ledger: Arc<Switch>,
    revoker: Revoker,
    replay: Arc<InMemoryReplayStore>,
    receiver: SsfReceiver,
}

fn jwks(key: &SigningKey) -> JwkSet {
    JwkSet::from_keys([key.verifying_key().clone()])
}

impl Fx {
    fn new() -> Self {
        Self::with(|t| t)
    }

    fn with(tune: impl FnOnce(TransmitterTrust) -> TransmitterTrust) -> Self {
        let key = SigningKey::generate(Algorithm::ES256, Some("set-1".into())).unwrap();
        // Same kid, another key: a forged signature under a known kid.
        let other_key = SigningKey::generate(Algorithm::ES256, Some("set-1".into())).unwrap();
        let ledger = Arc::new(Switch::default());
        let revoker = Revoker::new(ledger.clone(), AS);
        revoker.record_mapping(&RevocationScope::idp(IDP, None), USER, USER_LOCAL);
        let replay = Arc::new(InMemoryReplayStore::new(1000));
        let other = SigningKey::generate(Algorithm::ES256, Some("o-1".into())).unwrap();
        let receiver = SsfReceiver::new(revoker.clone(), replay.clone())
            .transmitter(tune(TransmitterTrust::new(IDP, jwks(&key), AUTH, AUD)))
            .transmitter(TransmitterTrust::new(
                OTHER_IDP,
                jwks(&other),
                OTHER_AUTH,
                AUD,
            ));
        Self {
            key,
            other_key,
            ledger,
            revoker,
            replay,
            receiver,
        }
    }

    /// The valid SET's claims, `patch` merged in (`null` removes a claim).
    fn claims(&self, patch: Value) -> Value {
        let mut claims = json!({
            "iss": IDP,
            "aud": AUD,
            "jti": "set-0001",
            "iat": NOW.as_secs() - 5,
            "txn": "inc-4411",
            "sub_id": {"format": "iss_sub", "iss": IDP, "sub": USER},
            "events": {event_type::SESSION_REVOKED: {"event_timestamp": NOW.as_secs() - 10}},
        });
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    fn set(&self, patch: Value) -> String {
        self.key
            .sign_jwt(Some(SECEVENT_TYP), &self.claims(patch))
            .unwrap()
    }

    fn push_at(&self, set: &str, auth: Option<&str>, now: UnixTime) -> Reply {
        let mut req = http::Request::post(AUD).header("content-type", SECEVENT_CONTENT_TYPE);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let req = req.body(set.as_bytes().to_vec()).unwrap();
        Reply::of(pollster::block_on(self.receiver.handle(&req, now)))
    }

    fn push(&self, set: &str) -> Reply {
        self.push_at(set, Some(AUTH), NOW)
    }

    fn idp_verdict(&self, iat: UnixTime) -> LedgerVerdict {
        pollster::block_on(self.revoker.check_id_jag(IDP, None, USER, iat)).unwrap()
    }

    fn untouched(&self) -> bool {
        let snap = pollster::block_on(self.revoker.ledger().snapshot()).unwrap();
        !format!("{snap:?}").contains(USER)
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    body: Value,
    receipt: Option<SetReceipt>,
}

impl Reply {
    fn of(resp: http::Response<Vec<u8>>) -> Self {
        let body = if resp.body().is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(resp.body()).unwrap()
        };
        // RFC 8935 §2.4: the error body never echoes the SET.
        assert!(!body.to_string().contains("eyJ"), "{body}");
        Self {
            status: resp.status().as_u16(),
            receipt: resp.extensions().get::<SetReceipt>().cloned(),
            body,
        }
    }

    fn err(&self) -> &str {
        self.body["err"].as_str().unwrap_or("")
    }

    fn outcome(&self) -> SetOutcome {
        self.receipt.clone().unwrap().outcome.unwrap()
    }

    fn accepted(&self) -> SetOutcome {
        assert_eq!(self.status, 202, "{self:?}");
        assert_eq!(self.body, Value::Null);
        self.outcome()
    }

    fn refused(&self, code: &str) {
        assert_eq!((self.status, self.err()), (400, code), "{self:?}");
    }
}

fn header_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        base64url::encode(header.to_string().as_bytes()),
        base64url::encode(claims.to_string().as_bytes()),
        base64url::encode(signature)
    )
}

// RV-4, D-37: transmitter authentication first: 401 with nothing parsed or written, whatever
// the body; the right value for the valid SET is the control.
#[test]
fn rv4_d37_transmitter_authentication_before_parsing() {
    let fx = Fx::new();
    let set = fx.set(json!({}));
    for (auth, body) in [
        (None, set.as_str()),
        (Some("Bearer ssf-0f3a9d"), set.as_str()),
        (Some("bearer ssf-0f3a9c"), set.as_str()),
        (Some("Bearer ssf-0f3a9c "), set.as_str()),
        (Some("Bearer nope"), "not even a token"),
    ] {
        let r = fx.push_at(body, auth, NOW);
        assert_eq!(r.status, 401, "{auth:?}");
        assert!(r.body.get("err").is_none(), "{}", r.body);
        assert!(r.receipt.is_none(), "nothing parsed: no receipt");
    }
    assert!(fx.untouched());
    // Another transmitter's credentials authenticate it, not this issuer (RV-6 invalid_issuer).
    fx.push_at(&set, Some(OTHER_AUTH), NOW)
        .refused("invalid_issuer");
    assert!(fx.untouched());
    let ok = fx.push(&set);
    assert!(matches!(ok.accepted(), SetOutcome::Applied(_)));
    assert!(matches!(
        fx.idp_verdict(NOW.minus(10)),
        LedgerVerdict::Revoked(_)
    ));
}

// RV-4: POST of application/secevent+jwt only (parameters allowed).
#[test]
fn rv4_media_type_and_method() {
    let fx = Fx::new();
    let set = fx.set(json!({}));
    for ct in ["application/jwt", "application/json", "text/plain"] {
        let req = http::Request::post(AUD)
            .header("authorization", AUTH)
            .header("content-type", ct)
            .body(set.clone().into_bytes())
            .unwrap();
        Reply::of(pollster::block_on(fx.receiver.handle(&req, NOW))).refused("invalid_request");
    }
    let get = http::Request::get(AUD)
        .header("authorization", AUTH)
        .header("content-type", SECEVENT_CONTENT_TYPE)
        .body(set.clone().into_bytes())
        .unwrap();
    Reply::of(pollster::block_on(fx.receiver.handle(&get, NOW))).refused("invalid_request");
    assert!(fx.untouched());
    let req = http::Request::post(AUD)
        .header("authorization", AUTH)
        .header("content-type", "Application/SecEvent+JWT; charset=utf-8")
        .body(set.into_bytes())
        .unwrap();
    Reply::of(pollster::block_on(fx.receiver.handle(&req, NOW))).accepted();
}

// RV-5, RV-6: the JWS and its header: unparsable and wrong `typ` -> invalid_request; `none`,
// HMAC, an algorithm off the list, an unknown kid -> invalid_key; a bad signature ->
// authentication_failed. `typ` with the `application/` prefix is the same `typ` (D-8).
#[test]
fn rv5_rv6_header_key_and_signature() {
    let fx = Fx::new();
    let claims = fx.claims(json!({}));
    let payload = serde_json::to_vec(&claims).unwrap();
    let signed = |header: Value| {
        fx.key
            .sign_with_header(header.as_object().unwrap().clone(), &payload)
            .unwrap()
    };
    for bad in ["", "a.b", "a.b.c", "not a jwt at all", "e30.e30.e30.e30"] {
        fx.push(bad).refused("invalid_request");
    }
    fx.push(&signed(json!({}))).refused("invalid_request"); // typ missing
    fx.push(&signed(json!({"typ": "JWT"})))
        .refused("invalid_request");
    fx.push(&signed(json!({"typ": "secevent+jwt", "crit": ["exp"]})))
        .refused("invalid_request");
    fx.push(&signed(
        json!({"typ": "secevent+jwt", "jku": "https://evil.example/jwks"}),
    ))
    .refused("invalid_request");
    fx.push(&header_token(
        &json!({"alg": "none", "typ": SECEVENT_TYP}),
        &claims,
        b"",
    ))
    .refused("invalid_request"); // an empty signature does not even parse
    fx.push(&header_token(
        &json!({"alg": "none", "typ": SECEVENT_TYP, "kid": "set-1"}),
        &claims,
        b"x",
    ))
    .refused("invalid_key");
    fx.push(&header_token(
        &json!({"alg": "HS256", "typ": SECEVENT_TYP, "kid": "set-1"}),
        &claims,
        b"0123456789abcdef0123456789abcdef",
    ))
    .refused("invalid_key");
    let es384 = SigningKey::generate(Algorithm::ES384, Some("set-1".into())).unwrap();
    fx.push(&es384.sign_jwt(Some(SECEVENT_TYP), &claims).unwrap())
        .refused("invalid_key");
    let stranger = SigningKey::generate(Algorithm::ES256, Some("set-9".into())).unwrap();
    fx.push(&stranger.sign_jwt(Some(SECEVENT_TYP), &claims).unwrap())
        .refused("invalid_key");
    fx.push(&fx.other_key.sign_jwt(Some(SECEVENT_TYP), &claims).unwrap())
        .refused("authentication_failed");
    // A flipped signature byte in the middle of the signature.
    let good = fx.set(json!({}));
    let cut = good.len() - 20;
    let flipped = if good.as_bytes()[cut] == b'A' {
        "B"
    } else {
        "A"
    };
    let tampered = format!("{}{flipped}{}", &good[..cut], &good[cut + 1..]);
    fx.push(&tampered).refused("authentication_failed");
    assert!(fx.untouched());
    // Controls: the valid header, and `typ` in its long form.
    fx.push(&signed(json!({"typ": "application/secevent+jwt"})))
        .accepted();
    assert!(matches!(
        fx.idp_verdict(NOW.minus(10)),
        LedgerVerdict::Revoked(_)
    ));
}

// RV-5: the allow-list admits RS256 (>= 2048 bits), PS256 and EdDSA besides ES256; a
// transmitter may be narrowed to fewer.
#[test]
fn rv5_allowed_algorithms() {
    for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::EdDSA] {
        let key = SigningKey::generate(alg, Some("set-1".into())).unwrap();
        let fx = Fx::new();
        let receiver = SsfReceiver::new(fx.revoker.clone(), InMemoryReplayStore::new(10))
            .transmitter(TransmitterTrust::new(IDP, jwks(&key), AUTH, AUD));
        let set = key
            .sign_jwt(Some(SECEVENT_TYP), &fx.claims(json!({})))
            .unwrap();
        let req = |r: &SsfReceiver| {
            let req = http::Request::post(AUD)
                .header("authorization", AUTH)
                .header("content-type", SECEVENT_CONTENT_TYPE)
                .body(set.clone().into_bytes())
                .unwrap();
            Reply::of(pollster::block_on(r.handle(&req, NOW)))
        };
        req(&receiver).accepted();
        let narrow = SsfReceiver::new(fx.revoker.clone(), InMemoryReplayStore::new(10))
            .transmitter(
                TransmitterTrust::new(IDP, jwks(&key), AUTH, AUD)
                    .with_algorithms(AlgorithmSet::of(&[Algorithm::ES256])),
            );
        req(&narrow).refused("invalid_key");
    }
}

// RV-5, RV-6: the claims. `iss` of another transmitter -> invalid_issuer; `aud` not ours ->
// invalid_audience (an array naming us is fine); `sub`/`exp` present, `iat`/`jti`/`events`/
// `sub_id` missing, zero or two events -> invalid_request.
#[test]
fn rv5_rv6_claims() {
    let fx = Fx::new();
    let rows: &[(Value, &str)] = &[
        (json!({"iss": OTHER_IDP}), "invalid_issuer"),
        (json!({"iss": null}), "invalid_issuer"),
        (
            json!({"iss": "https://idp.acme.example/"}),
            "invalid_issuer",
        ),
        (
            json!({"aud": "https://auth.tasks.example"}),
            "invalid_audience",
        ),
        (
            json!({"aud": ["https://other.example"]}),
            "invalid_audience",
        ),
        (json!({"aud": null}), "invalid_audience"),
        (json!({"sub": USER}), "invalid_request"),
        (json!({"exp": NOW.as_secs() + 60}), "invalid_request"),
        (json!({"iat": null}), "invalid_request"),
        (json!({"iat": "1767225600"}), "invalid_request"),
        (json!({"jti": null}), "invalid_request"),
        (json!({"jti": ""}), "invalid_request"),
        (json!({"events": null}), "invalid_request"),
        (json!({"events": {}}), "invalid_request"),
        (json!({"events": []}), "invalid_request"),
        (
            json!({"events": {
                event_type::SESSION_REVOKED: {},
                event_type::ACCOUNT_DISABLED: {},
            }}),
            "invalid_request",
        ),
        (
            json!({"events": {event_type::SESSION_REVOKED: "x"}}),
            "invalid_request",
        ),
        (json!({"sub_id": null}), "invalid_request"),
        (
            json!({"sub_id": {"format": "iss_sub", "iss": IDP}}),
            "invalid_request",
        ),
        (
            json!({"sub_id": {"iss": IDP, "sub": USER}}),
            "invalid_request",
        ),
        (json!({"sub_id": "00u8k2Lq91"}), "invalid_request"),
        (
            json!({"events": {event_type::SESSION_REVOKED: {"event_timestamp": "soon"}}}),
            "invalid_request",
        ),
    ];
    for (i, (patch, code)) in rows.iter().enumerate() {
        let mut patch = patch.clone();
        patch["jti"] = patch
            .get("jti")
            .cloned()
            .unwrap_or(json!(format!("row-{i}")));
        let r = fx.push(&fx.set(patch.clone()));
        assert_eq!((r.status, r.err()), (400, *code), "{patch}: {r:?}");
    }
    assert!(fx.untouched());
    // Controls: an audience array naming us; the valid SET.
    fx.push(&fx.set(json!({"aud": ["https://other.example", AUD], "jti": "ok-1"})))
        .accepted();
    fx.push(&fx.set(json!({"jti": "ok-2"}))).accepted();
}

// RV-7: a transmitter affects only the issuers and the tenant of its trust entry.
#[test]
fn rv7_cross_tenant_guard() {
    let fx = Fx::with(|t| t.with_tenant("acme"));
    let complex = |tenant: &str| {
        json!({"format": "complex",
            "user": {"format": "iss_sub", "iss": IDP, "sub": USER},
            "tenant": {"format": "opaque", "id": tenant}})
    };
    let rows = [
        json!({"format": "iss_sub", "iss": OTHER_IDP, "sub": USER}),
        json!({"format": "complex", "user": {"format": "iss_sub", "iss": OTHER_IDP, "sub": USER}}),
        complex("globex"),
    ];
    for (i, sub_id) in rows.into_iter().enumerate() {
        let r = fx.push(&fx.set(json!({"sub_id": sub_id, "jti": format!("x-{i}")})));
        r.refused("access_denied");
    }
    assert!(fx.untouched());
    // Controls: the entry's tenant, named or implied; watermarks under (IdP, tenant).
    fx.push(&fx.set(json!({"sub_id": complex("acme"), "jti": "ok-1"})))
        .accepted();
    let v = pollster::block_on(
        fx.revoker
            .check_id_jag(IDP, Some("acme"), USER, NOW.minus(10)),
    )
    .unwrap();
    assert!(matches!(v, LedgerVerdict::Revoked(_)));
    fx.push(&fx.set(json!({"jti": "ok-2"}))).accepted();

    // Without a tenant in the entry, a SET naming one is outside its authority.
    let plain = Fx::new();
    plain
        .push(&plain.set(json!({"sub_id": complex("acme")})))
        .refused("access_denied");
    assert!(plain.untouched());
    // An entry covering a second issuer.
    let two = Fx::with(|t| t.with_subject_issuers([IDP.to_owned(), OTHER_IDP.to_owned()]));
    two.push(&two.set(json!({"sub_id": {"format": "iss_sub", "iss": OTHER_IDP, "sub": USER}})))
        .accepted();
    let v = pollster::block_on(
        two.revoker
            .check_id_jag(OTHER_IDP, None, USER, NOW.minus(10)),
    )
    .unwrap();
    assert!(matches!(v, LedgerVerdict::Revoked(_)));
}

// RV-9: iss_sub and complex `user` match; `email` only through the entry's table; `opaque`
// and unknown formats match nothing: 202, no effect, and the receipt says so (the audit
// record), with nothing that tells a prober whether the subject exists.
#[test]
fn rv9_subject_matching() {
    let fx = Fx::new();
    let email = json!({"format": "email", "email": "ana@acme.example"});
    for (i, sub_id) in [
        email.clone(),
        json!({"format": "opaque", "id": "00u8k2Lq91"}),
        json!({"format": "phone_number", "phone_number": "+15551234"}),
        json!({"format": "complex", "device": {"format": "opaque", "id": "d1"}}),
    ]
    .into_iter()
    .enumerate()
    {
        let r = fx.push(&fx.set(json!({"sub_id": sub_id, "jti": format!("n-{i}")})));
        assert_eq!(r.accepted(), SetOutcome::NoMatch);
    }
    assert!(fx.untouched());
    // Control: a complex subject with an iss_sub user.
    let complex = json!({"format": "complex",
        "user": {"format": "iss_sub", "iss": IDP, "sub": USER},
        "session": {"format": "opaque", "id": "s-1"}});
    let r = fx.push(&fx.set(json!({"sub_id": complex, "jti": "c-1"})));
    assert!(matches!(r.accepted(), SetOutcome::Applied(_)));
    assert_eq!(r.receipt.unwrap().subject.as_deref(), Some(USER));

    // Email through the entry's table of verified unique addresses (case-insensitive).
    let by_email = Fx::with(|t| {
        t.with_matching(SubjectMatching::IssSubOrEmail(BTreeMap::from([(
            "Ana@Acme.example".to_owned(),
            USER.to_owned(),
        )])))
    });
    let r = by_email.push(&by_email.set(json!({"sub_id": email})));
    assert!(matches!(r.accepted(), SetOutcome::Applied(_)));
    assert!(matches!(
        by_email.idp_verdict(NOW.minus(10)),
        LedgerVerdict::Revoked(_)
    ));
    let r = by_email.push(&by_email.set(json!({
        "sub_id": {"format": "email", "email": "eve@acme.example"}, "jti": "e-2"})));
    assert_eq!(r.accepted(), SetOutcome::NoMatch);
}

fn event(kind: &str, payload: Value) -> Value {
    json!({"events": {kind: payload}})
}

// RV-10, RV-12, RV-28: the default event policy, one Revoke each; unknown types are accepted
// with no action.
#[test]
fn rv10_event_policy() {
    let ts = NOW.as_secs() - 10;
    let disabled =
        |v: LedgerVerdict| matches!(v, LedgerVerdict::Revoked(RevocationReason::Disabled { .. }));
    // Watermark only: session-revoked (CAEP and the RISC alias), credential-change
    // revoke/delete and password update, credential-compromise, token-claims-change,
    // identifier-recycled (RV-10, REVOCATION 2.5).
    for (kind, payload) in [
        (event_type::SESSION_REVOKED, json!({"event_timestamp": ts})),
        (
            event_type::RISC_SESSIONS_REVOKED,
            json!({"event_timestamp": ts}),
        ),
        (
            event_type::CREDENTIAL_CHANGE,
            json!({"credential_type": "fido2-roaming", "change_type": "revoke", "event_timestamp": ts}),
        ),
        (
            event_type::CREDENTIAL_CHANGE,
            json!({"credential_type": "x509", "change_type": "delete", "event_timestamp": ts}),
        ),
        (
            event_type::CREDENTIAL_CHANGE,
            json!({"credential_type": "password", "change_type": "update", "event_timestamp": ts}),
        ),
        (
            event_type::CREDENTIAL_COMPROMISE,
            json!({"event_timestamp": ts}),
        ),
        (
            event_type::ACCOUNT_CREDENTIAL_CHANGE_REQUIRED,
            json!({"event_timestamp": ts}),
        ),
        (
            event_type::TOKEN_CLAIMS_CHANGE,
            json!({"event_timestamp": ts, "claims": {"role": "ro-admin"}}),
        ),
        (
            event_type::IDENTIFIER_RECYCLED,
            json!({"event_timestamp": ts}),
        ),
    ] {
        let fx = Fx::new();
        let r = fx.push(&fx.set(event(kind, payload.clone())));
        let SetOutcome::Applied(changes) = r.accepted() else {
            panic!("{kind} {payload}: {r:?}")
        };
        // The IdP subject at the event time, the local subject at processing time (RV-12).
        assert!(changes.contains(&LedgerChange::Watermark {
            scope: RevocationScope::idp(IDP, None),
            subject: USER.into(),
            at: ts,
            kind: match kind {
                event_type::SESSION_REVOKED | event_type::RISC_SESSIONS_REVOKED => {
                    RevocationKind::SessionRevoked
                }
                event_type::CREDENTIAL_CHANGE => RevocationKind::CredentialChange,
                event_type::TOKEN_CLAIMS_CHANGE => RevocationKind::TokenClaimsChange,
                event_type::IDENTIFIER_RECYCLED => RevocationKind::IdentifierRecycled,
                _ => RevocationKind::CredentialCompromise,
            },
        }));
        assert!(changes.iter().any(|c| matches!(c, LedgerChange::Watermark {
                scope: RevocationScope::Local { .. }, subject, at, .. }
                if subject == USER_LOCAL && *at == NOW.as_secs())));
        assert!(
            !changes
                .iter()
                .any(|c| matches!(c, LedgerChange::Disabled { .. }))
        );
        assert!(matches!(
            fx.idp_verdict(UnixTime::from_secs(ts)),
            LedgerVerdict::Revoked(_)
        ));
        assert_eq!(
            fx.idp_verdict(UnixTime::from_secs(ts + 1)),
            LedgerVerdict::Allowed
        );
        // identifier-recycled also drops the IdP → local mapping (its local subject's
        // watermark is written first, above); every other event keeps it.
        let mapped = fx
            .revoker
            .local_subjects(&RevocationScope::idp(IDP, None), USER);
        if kind == event_type::IDENTIFIER_RECYCLED {
            assert!(mapped.is_empty(), "{mapped:?}");
        } else {
            assert_eq!(mapped, vec![USER_LOCAL.to_owned()], "{kind}");
        }
    }
    // Disabling: account-disabled and account-purged; then account-enabled clears the flag
    // only (RV-28).
    for kind in [event_type::ACCOUNT_DISABLED, event_type::ACCOUNT_PURGED] {
        let fx = Fx::new();
        fx.push(&fx.set(event(kind, json!({"event_timestamp": ts}))))
            .accepted();
        assert!(disabled(fx.idp_verdict(NOW.plus(100))));
        let r = fx.push(&fx.set(json!({
            "jti": "enable-1",
            "events": {event_type::ACCOUNT_ENABLED: {"event_timestamp": ts + 5}}})));
        let SetOutcome::Applied(changes) = r.accepted() else {
            panic!("{r:?}")
        };
        assert!(
            changes
                .iter()
                .all(|c| matches!(c, LedgerChange::Enabled { .. }))
        );
        assert_eq!(fx.idp_verdict(NOW.plus(100)), LedgerVerdict::Allowed);
        assert!(matches!(
            fx.idp_verdict(UnixTime::from_secs(ts)),
            LedgerVerdict::Revoked(_)
        ));
    }
    // No action: unknown types, a new credential, a non-password update; the receipt names
    // the type for the log.
    for (kind, payload) in [
        (
            "https://schemas.openid.net/secevent/caep/event-type/assurance-level-change",
            json!({}),
        ),
        (
            "https://example.com/event-type/weather",
            json!({"rain": true}),
        ),
        (
            event_type::CREDENTIAL_CHANGE,
            json!({"credential_type": "fido2-platform", "change_type": "create"}),
        ),
        (
            event_type::CREDENTIAL_CHANGE,
            json!({"credential_type": "phone-voice", "change_type": "update"}),
        ),
    ] {
        let fx = Fx::new();
        let r = fx.push(&fx.set(event(kind, payload)));
        assert_eq!(r.accepted(), SetOutcome::Ignored);
        assert_eq!(r.receipt.unwrap().event_type.as_deref(), Some(kind));
        assert!(fx.untouched());
    }
    // A credential-change without a known change_type is malformed.
    let fx = Fx::new();
    fx.push(&fx.set(event(
        event_type::CREDENTIAL_CHANGE,
        json!({"credential_type": "password"}),
    )))
    .refused("invalid_request");
    fx.push(&fx.set(event(
        event_type::CREDENTIAL_CHANGE,
        json!({"credential_type": "password", "change_type": "shred"}),
    )))
    .refused("invalid_request");
    assert!(fx.untouched());
}

// RV-13, D-38: an event_timestamp more than 60 s ahead is invalid_request and changes
// nothing; at +60 s it is clamped to now. Without event_timestamp the SET `iat` is the time.
#[test]
fn rv13_future_event_timestamp() {
    let fx = Fx::new();
    let at = |s: u64| event(event_type::SESSION_REVOKED, json!({"event_timestamp": s}));
    let mut r = at(NOW.as_secs() + 61);
    r["jti"] = json!("f-1");
    fx.push(&fx.set(r)).refused("invalid_request");
    assert!(fx.untouched());
    // A refused SET is not remembered: the corrected redelivery of that jti is processed.
    let mut ok = at(NOW.as_secs() + 60);
    ok["jti"] = json!("f-1");
    let SetOutcome::Applied(changes) = fx.push(&fx.set(ok)).accepted() else {
        panic!()
    };
    assert!(matches!(changes[0], LedgerChange::Watermark { at, .. } if at == NOW.as_secs()));
    assert_eq!(fx.idp_verdict(NOW.plus(1)), LedgerVerdict::Allowed);
    // `iat` stands in for a missing event_timestamp.
    let fx = Fx::new();
    fx.push(&fx.set(event(event_type::SESSION_REVOKED, json!({}))))
        .accepted();
    assert!(matches!(
        fx.idp_verdict(NOW.minus(5)),
        LedgerVerdict::Revoked(_)
    ));
    assert_eq!(fx.idp_verdict(NOW.minus(4)), LedgerVerdict::Allowed);
}

// RV-8: a redelivery of (iss, jti) is 202 with no second effect, also later (the local
// watermark stays at the first processing time) and at another receiver sharing the store;
// the same jti from another issuer is another SET.
#[test]
fn rv8_deduplication() {
    let fx = Fx::new();
    let set = fx.set(json!({}));
    assert!(matches!(fx.push(&set).accepted(), SetOutcome::Applied(_)));
    let later = fx.push_at(&set, Some(AUTH), NOW.plus(600));
    assert_eq!(later.accepted(), SetOutcome::Duplicate);
    // A second instance over the same store.
    let twin = SsfReceiver::new(fx.revoker.clone(), fx.replay.clone())
        .transmitter(TransmitterTrust::new(IDP, jwks(&fx.key), AUTH, AUD));
    let req = http::Request::post(AUD)
        .header("authorization", AUTH)
        .header("content-type", SECEVENT_CONTENT_TYPE)
        .body(set.clone().into_bytes())
        .unwrap();
    assert_eq!(
        Reply::of(pollster::block_on(twin.handle(&req, NOW.plus(700)))).accepted(),
        SetOutcome::Duplicate
    );
    let snap = format!(
        "{:?}",
        pollster::block_on(fx.revoker.ledger().snapshot()).unwrap()
    );
    assert!(!snap.contains(&(NOW.as_secs() + 600).to_string()), "{snap}");
    // Still remembered just before seven days; a new jti is a new SET (control).
    let week = NOW.plus(7 * 24 * 3600 - 1);
    assert_eq!(
        fx.push_at(&set, Some(AUTH), week).accepted(),
        SetOutcome::Duplicate
    );
    let fresh = fx.set(json!({"jti": "set-0002"}));
    assert!(matches!(fx.push(&fresh).accepted(), SetOutcome::Applied(_)));
}

// RV-14, RV-4: ledger down -> 503 (the transmitter retries) and the SET is not remembered, so
// the retry applies it once the ledger is back; 202 only after the write.
#[test]
fn rv14_ledger_down_is_503_and_the_retry_applies() {
    let fx = Fx::new();
    let set = fx.set(json!({}));
    fx.ledger.down.store(true, Ordering::SeqCst);
    let r = fx.push(&set);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(matches!(
        r.receipt.as_ref().unwrap().outcome,
        Err(SsfError::Ledger(_))
    ));
    fx.ledger.down.store(false, Ordering::SeqCst);
    assert!(fx.untouched());
    assert!(matches!(fx.push(&set).accepted(), SetOutcome::Applied(_)));
    assert!(matches!(
        fx.idp_verdict(NOW.minus(10)),
        LedgerVerdict::Revoked(_)
    ));
    assert_eq!(fx.push(&set).accepted(), SetOutcome::Duplicate);
}

// RV-29 support: the receipt carries issuer, jti, event type, subject and outcome for every
// answer after authentication, refusals included.
#[test]
fn rv29_receipt_for_every_authenticated_answer() {
    let fx = Fx::new();
    let r = fx.push(&fx.set(json!({"aud": "https://elsewhere.example"})));
    let receipt = r.receipt.unwrap();
    assert_eq!(receipt.transmitter, IDP);
    assert_eq!(receipt.outcome_name(), "refused:invalid_audience");
    let r = fx.push(&fx.set(json!({})));
    let receipt = r.receipt.unwrap();
    assert_eq!(
        (
            receipt.jti.as_deref(),
            receipt.event_type.as_deref(),
            receipt.subject.as_deref(),
            receipt.outcome_name().as_str()
        ),
        (
            Some("set-0001"),
            Some(event_type::SESSION_REVOKED),
            Some(USER),
            "accepted:applied"
        )
    );
}

impl Fx {
    fn gtr_at(&self, auth: Option<&str>, content_type: &str, body: &str) -> Reply {
        let mut req = http::Request::post(format!("{AS}/global-token-revocation"))
            .header("content-type", content_type);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let req = req.body(body.as_bytes().to_vec()).unwrap();
        Reply::of(pollster::block_on(self.receiver.handle_gtr(&req, NOW)))
    }

    fn gtr(&self, sub_id: Value) -> Reply {
        self.gtr_at(
            Some(AUTH),
            "application/json",
            &json!({"sub_id": sub_id}).to_string(),
        )
    }
}

// RV-21: Global Token Revocation: 204 once the watermarks are written (IdP subject at now,
// mapped local subjects at now); 400 bad body or subject; 401 wrong credentials (nothing
// written); 403 outside the caller's authority (RV-7); 404 an unknown email; 422 a format
// this AS cannot map; 503 ledger down. Each refusal beside its control.
#[test]
fn rv21_global_token_revocation() {
    let iss_sub = json!({"format": "iss_sub", "iss": IDP, "sub": USER});
    let fx = Fx::with(|t| {
        t.with_matching(SubjectMatching::IssSubOrEmail(BTreeMap::from([(
            "ana@acme.example".to_owned(),
            USER.to_owned(),
        )])))
    });
    let body = json!({"sub_id": iss_sub}).to_string();
    for auth in [None, Some("Bearer nope")] {
        let r = fx.gtr_at(auth, "application/json", &body);
        assert_eq!(r.status, 401, "{r:?}");
        assert!(r.receipt.is_none());
    }
    for (ct, body) in [
        ("text/plain", body.as_str()),
        ("application/json", "{"),
        ("application/json", "{}"),
        (
            "application/json",
            r#"{"sub_id": {"format": "iss_sub", "iss": "x"}}"#,
        ),
    ] {
        let r = fx.gtr_at(Some(AUTH), ct, body);
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
    }
    let r = fx.gtr(json!({"format": "iss_sub", "iss": OTHER_IDP, "sub": USER}));
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (403, Some("access_denied"))
    );
    let r = fx.gtr(json!({"format": "email", "email": "eve@acme.example"}));
    assert_eq!(r.status, 404);
    let r = fx.gtr(json!({"format": "opaque", "id": "x"}));
    assert_eq!(r.status, 422);
    assert!(fx.untouched());
    fx.ledger.down.store(true, Ordering::SeqCst);
    assert_eq!(fx.gtr(iss_sub.clone()).status, 503);
    fx.ledger.down.store(false, Ordering::SeqCst);
    assert!(fx.untouched());
    // Controls: iss_sub and a known email revoke; everything issued up to now is dead.
    let r = fx.gtr(iss_sub);
    assert_eq!((r.status, &r.body), (204, &Value::Null));
    let SetOutcome::Applied(changes) = r.outcome() else {
        panic!("{r:?}")
    };
    assert!(changes.iter().any(|c| matches!(c, LedgerChange::Watermark {
        scope: RevocationScope::Local { .. }, subject, at, .. } if subject == USER_LOCAL && *at == NOW.as_secs())));
    assert!(matches!(fx.idp_verdict(NOW), LedgerVerdict::Revoked(_)));
    assert_eq!(fx.idp_verdict(NOW.plus(1)), LedgerVerdict::Allowed);
    let r = fx.gtr(json!({"format": "email", "email": "ana@acme.example"}));
    assert_eq!(r.status, 204);
    // Without an email table, email subjects cannot be mapped at all.
    let plain = Fx::new();
    assert_eq!(
        plain
            .gtr(json!({"format": "email", "email": "ana@acme.example"}))
            .status,
        422
    );
}

// RV-26, RV-24: an SSF verification event (opaque stream subject) is accepted with no ledger
// effect; it verifies the channel only when its `state` answers the receiver's own outstanding
// request (unsolicited, wrong state and a refused SET do not), and then the IdP the
// transmitter speaks for has a verified channel for 15 minutes.
#[test]
fn rv26_verification_events_are_recorded() {
    let fx = Fx::with(|t| t.with_verification(VerificationPolicy::default()));
    assert_eq!(fx.receiver.last_verification(IDP), None);
    let verification = |jti: &str, aud: &str, state: &str| {
        fx.set(json!({
            "jti": jti,
            "aud": aud,
            "sub_id": {"format": "opaque", "id": "stream-1"},
            "events": {event_type::VERIFICATION: {"state": state}},
        }))
    };
    // Unsolicited: accepted, no effect.
    let r = fx.push(&verification("v-u", AUD, "VGhpcyBpcyBhbiBlY2hv"));
    assert_eq!(
        r.accepted(),
        SetOutcome::VerificationUnmatched {
            state: Some("VGhpcyBpcyBhbiBlY2hv".into())
        }
    );
    assert_eq!(fx.receiver.revoker().channel_verified_at(IDP), None);
    // The receiver asks (the tick gives the state), for the verifying transmitter only.
    let tick = fx.receiver.health().tick(NOW);
    assert_eq!(tick.requests.len(), 1, "{tick:?}");
    assert_eq!(tick.requests[0].transmitter, IDP);
    let state = tick.requests[0].state.clone();
    fx.push(&verification("v-0", "https://elsewhere.example", &state))
        .refused("invalid_audience");
    let r = fx.push_at(
        &verification("v-w", AUD, "wrong-state"),
        Some(AUTH),
        NOW.plus(20),
    );
    assert!(matches!(
        r.accepted(),
        SetOutcome::VerificationUnmatched { .. }
    ));
    assert_eq!(fx.receiver.last_verification(IDP), None);
    assert_eq!(fx.receiver.revoker().channel_verified_at(IDP), None);
    let r = fx.push_at(&verification("v-1", AUD, &state), Some(AUTH), NOW.plus(30));
    assert_eq!(r.accepted(), SetOutcome::Verified { state: Some(state) });
    assert_eq!(r.receipt.unwrap().outcome_name(), "accepted:verified");
    assert!(fx.untouched());
    assert_eq!(fx.receiver.last_verification(IDP), Some(NOW.plus(30)));
    assert_eq!(fx.receiver.last_verification(OTHER_IDP), None);
    // RV-24: the IdP the transmitter speaks for now has a verified channel (the grant sharing
    // this revoker may issue longer access tokens for its users for 15 minutes).
    assert_eq!(
        fx.receiver.revoker().channel_verified_at(IDP),
        Some(NOW.plus(30))
    );
    assert!(fx.receiver.revoker().channel_verified(IDP, NOW.plus(930)));
    assert!(!fx.receiver.revoker().channel_verified(IDP, NOW.plus(931)));
}

// RV-21, Okta's Universal Logout: a transmitter configured with `with_gtr_jwt` may
// authenticate at the GTR endpoint with a bearer JWT signed by its issuer's keys and addressed
// to the endpoint; each defect is a 401 with nothing written, beside its control; the `jti` is
// single-use; a transmitter without the option cannot use a JWT at all.
#[test]
fn rv21_gtr_signed_jwt_authentication() {
    const GTR: &str = "https://as.tasks.example/global-token-revocation";
    let fx = Fx::with(|t| t.with_gtr_jwt(GTR));
    let body = json!({"sub_id": {"format": "iss_sub", "iss": IDP, "sub": USER}}).to_string();
    let assertion = |key: &SigningKey, typ: Option<&str>, patch: Value| {
        let mut claims = json!({
            "iss": IDP, "sub": IDP, "aud": GTR, "jti": "gtr-1",
            "iat": NOW.as_secs() - 5, "exp": NOW.as_secs() + 55,
        });
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        format!("Bearer {}", key.sign_jwt(typ, &claims).unwrap())
    };
    let refused = [
        (
            "wrong key under the right kid",
            assertion(&fx.other_key, None, json!({})),
        ),
        (
            "another audience",
            assertion(&fx.key, None, json!({"aud": AUD})),
        ),
        ("no aud", assertion(&fx.key, None, json!({"aud": null}))),
        (
            "expired",
            assertion(&fx.key, None, json!({"exp": NOW.as_secs() - 120})),
        ),
        ("no exp", assertion(&fx.key, None, json!({"exp": null}))),
        (
            "lifetime over an hour",
            assertion(&fx.key, None, json!({"exp": NOW.as_secs() + 7200})),
        ),
        ("no jti", assertion(&fx.key, None, json!({"jti": null}))),
        (
            "unknown issuer",
            assertion(&fx.key, None, json!({"iss": "https://stranger.example"})),
        ),
        (
            "a SET's typ",
            assertion(&fx.key, Some(SECEVENT_TYP), json!({})),
        ),
        ("not a JWT", "Bearer not.a-jwt".to_owned()),
        (
            "Basic scheme",
            format!("Basic {}", &assertion(&fx.key, None, json!({}))[7..]),
        ),
    ];
    for (why, auth) in &refused {
        let r = fx.gtr_at(Some(auth), "application/json", &body);
        assert_eq!(r.status, 401, "{why}: {r:?}");
        assert!(r.receipt.is_none(), "{why}");
        assert!(fx.untouched(), "{why}");
    }
    // Control: the good assertion revokes; the same `jti` again is refused.
    let good = assertion(&fx.key, None, json!({}));
    let r = fx.gtr_at(Some(&good), "application/json", &body);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.receipt.unwrap().transmitter, IDP);
    assert!(matches!(fx.idp_verdict(NOW), LedgerVerdict::Revoked(_)));
    let r = fx.gtr_at(Some(&good), "application/json", &body);
    assert_eq!(r.status, 401, "replayed assertion: {r:?}");
    // The static value still works beside it.
    assert_eq!(fx.gtr_at(Some(AUTH), "application/json", &body).status, 204);

    // A transmitter without `with_gtr_jwt` cannot authenticate with a JWT, even a valid one.
    let plain = Fx::new();
    let r = plain.gtr_at(
        Some(&assertion(&plain.key, None, json!({}))),
        "application/json",
        &body,
    );
    assert_eq!(r.status, 401);
    assert!(plain.untouched());
}

// RV-26: `stream-updated` pauses, disables and enables the stream; paused drops the verified
// channel at once (RV-24 fallback) and reports the health change as an alert; an unknown
// status is `invalid_request` (control: the known ones are accepted).
#[test]
fn rv26_stream_updated_events() {
    let fx = Fx::with(|t| t.with_verification(VerificationPolicy::default()));
    let updated = |jti: &str, status: &str| {
        fx.set(json!({
            "jti": jti,
            "sub_id": {"format": "opaque", "id": "stream-1"},
            "events": {event_type::STREAM_UPDATED: {"status": status}},
        }))
    };
    let state = fx.receiver.health().tick(NOW).requests[0].state.clone();
    assert_eq!(
        fx.receiver.health().verification(IDP, Some(&state), NOW),
        VerificationMatch::Matched
    );
    assert_eq!(fx.receiver.health().tick(NOW).changes.len(), 1);
    assert!(fx.receiver.revoker().channel_verified(IDP, NOW));
    fx.push(&updated("su-0", "sleeping"))
        .refused("invalid_request");
    assert!(fx.receiver.revoker().channel_verified(IDP, NOW));
    let r = fx.push(&updated("su-1", "paused"));
    let SetOutcome::StreamUpdated { status, change } = r.accepted() else {
        panic!("{r:?}")
    };
    assert_eq!(status, StreamStatus::Paused);
    let change = change.unwrap();
    assert_eq!(
        (change.from, change.to, change.is_alert()),
        (ChannelHealth::Verified, ChannelHealth::Paused, true)
    );
    assert_eq!(r.receipt.unwrap().outcome_name(), "accepted:stream_paused");
    assert!(!fx.receiver.revoker().channel_verified(IDP, NOW));
    assert!(fx.untouched());
    let r = fx.push(&updated("su-2", "enabled"));
    let SetOutcome::StreamUpdated { change, .. } = r.accepted() else {
        panic!("{r:?}")
    };
    assert_eq!(change.unwrap().to, ChannelHealth::Unverified);
    // Enabled is not verified: a new verification must answer a new request.
    assert!(!fx.receiver.revoker().channel_verified(IDP, NOW));
}

/// A poll answer with `sets` (jti → SET) and `moreAvailable`.
fn poll_answer(sets: &[(&str, &str)], more: bool) -> Vec<u8> {
    let sets: serde_json::Map<String, Value> = sets
        .iter()
        .map(|(jti, set)| ((*jti).to_owned(), Value::from(*set)))
        .collect();
    json!({"sets": sets, "moreAvailable": more})
        .to_string()
        .into_bytes()
}

// RV-27: the RFC 8936 poll client: the first request carries nothing; polled SETs get the
// push receiver's validation and policy (applied, refused with its RFC 8935 code in `setErrs`,
// a duplicate acknowledged again); acknowledgements and errors go with the next request only
// (then are gone); a request that failed sends them again; a SET under another `jti` name is
// refused unprocessed.
#[test]
fn rv27_poll_ack_and_set_errors() {
    let fx = Fx::new();
    let poller = SsfPoller::new(fx.receiver.clone(), IDP).max_events(5);
    let first = poller.request();
    assert_eq!(
        first,
        json!({"maxEvents": 5, "returnImmediately": false, "ack": [], "setErrs": {}})
    );
    let good = fx.set(json!({"jti": "p-1"}));
    let bad_aud = fx.set(json!({"jti": "p-2", "aud": "https://elsewhere.example"}));
    let forged = fx
        .other_key
        .sign_jwt(Some(SECEVENT_TYP), &fx.claims(json!({"jti": "p-3"})))
        .unwrap();
    let renamed = fx.set(json!({"jti": "p-4"}));
    let polled = pollster::block_on(poller.response(
        &poll_answer(
            &[
                ("p-1", &good),
                ("p-2", &bad_aud),
                ("p-3", &forged),
                ("p-4-other", &renamed),
            ],
            true,
        ),
        NOW,
    ))
    .unwrap();
    assert!(polled.more_available);
    let names: Vec<String> = polled
        .receipts
        .iter()
        .map(SetReceipt::outcome_name)
        .collect();
    assert_eq!(
        names,
        [
            "accepted:applied",
            "refused:invalid_audience",
            "refused:authentication_failed",
            "refused:invalid_request"
        ]
    );
    assert!(matches!(
        fx.idp_verdict(NOW.minus(10)),
        LedgerVerdict::Revoked(_)
    ));
    let second = poller.request();
    assert_eq!(second["ack"], json!(["p-1"]));
    let errs = second["setErrs"].as_object().unwrap();
    assert_eq!(errs.len(), 3, "{second}");
    assert_eq!(errs["p-2"]["err"], "invalid_audience");
    assert_eq!(errs["p-3"]["err"], "authentication_failed");
    assert_eq!(errs["p-4-other"]["err"], "invalid_request");
    assert!(!second.to_string().contains("eyJ"), "no SET echoed");
    // That request failed: the next one carries the same.
    poller.request_failed();
    let third = poller.request();
    assert_eq!(
        (&third["ack"], &third["setErrs"]),
        (&second["ack"], &second["setErrs"])
    );
    // Answered (the redelivered p-1 is a duplicate, acknowledged again; the renamed SET under
    // its own name is applied): only the new acknowledgements remain.
    let polled = pollster::block_on(poller.response(
        &poll_answer(&[("p-1", &good), ("p-4", &renamed)], false),
        NOW,
    ))
    .unwrap();
    assert!(!polled.more_available);
    assert_eq!(
        polled
            .receipts
            .iter()
            .map(SetReceipt::outcome_name)
            .collect::<Vec<_>>(),
        ["accepted:duplicate", "accepted:applied"]
    );
    let fourth = poller.request();
    assert_eq!(fourth["ack"], json!(["p-1", "p-4"]));
    assert_eq!(fourth["setErrs"], json!({}));
    pollster::block_on(poller.response(&poll_answer(&[], false), NOW)).unwrap();
    assert_eq!(poller.request()["ack"], json!([]));
}

// RV-27, RV-14: a polled SET the ledger cannot take is neither acknowledged nor reported, so
// the transmitter delivers it again; then it applies (control).
#[test]
fn rv27_poll_ledger_down_leaves_the_set_unacknowledged() {
    let fx = Fx::new();
    let poller = SsfPoller::new(fx.receiver.clone(), IDP).return_immediately(true);
    assert_eq!(poller.request()["returnImmediately"], true);
    let set = fx.set(json!({"jti": "p-9"}));
    fx.ledger.down.store(true, Ordering::SeqCst);
    let polled =
        pollster::block_on(poller.response(&poll_answer(&[("p-9", &set)], false), NOW)).unwrap();
    assert_eq!(polled.receipts[0].outcome_name(), "unavailable");
    let next = poller.request();
    assert_eq!((&next["ack"], &next["setErrs"]), (&json!([]), &json!({})));
    fx.ledger.down.store(false, Ordering::SeqCst);
    let polled =
        pollster::block_on(poller.response(&poll_answer(&[("p-9", &set)], false), NOW)).unwrap();
    assert_eq!(polled.receipts[0].outcome_name(), "accepted:applied");
    assert_eq!(poller.request()["ack"], json!(["p-9"]));
}

// RV-27: a response that is not RFC 8936 JSON is refused whole; a poller for a transmitter the
// receiver does not know processes nothing.
#[test]
fn rv27_malformed_poll_responses() {
    let fx = Fx::new();
    let poller = SsfPoller::new(fx.receiver.clone(), IDP);
    let set = fx.set(json!({"jti": "p-5"}));
    for (body, why) in [
        (b"not json".to_vec(), "not JSON"),
        (
            json!({"moreAvailable": false}).to_string().into_bytes(),
            "no sets",
        ),
        (
            json!({"sets": {"p-5": 7}}).to_string().into_bytes(),
            "a SET not a string",
        ),
        (
            json!({"sets": {"p-5": set}, "moreAvailable": "yes"})
                .to_string()
                .into_bytes(),
            "moreAvailable not a boolean",
        ),
    ] {
        assert!(
            matches!(
                pollster::block_on(poller.response(&body, NOW)),
                Err(PollError::Malformed(_))
            ),
            "{why}"
        );
    }
    assert!(fx.untouched());
    let stranger = SsfPoller::new(fx.receiver.clone(), "https://stranger.example");
    assert_eq!(
        pollster::block_on(stranger.response(&poll_answer(&[("p-5", &set)], false), NOW)),
        Err(PollError::UnknownTransmitter(
            "https://stranger.example".into()
        ))
    );
    // Control: the same SET in a well-formed answer applies.
    let polled =
        pollster::block_on(poller.response(&poll_answer(&[("p-5", &set)], false), NOW)).unwrap();
    assert_eq!(polled.receipts[0].outcome_name(), "accepted:applied");
}
