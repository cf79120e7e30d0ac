//! The revocation matrix at the authorization server: RV-11 (ID-JAG watermark and disabled
//! subject, before the replay commit), RV-12 (local watermark at processing time), RV-14
//! (ledger down: no token), RV-20 (RFC 7009), RV-28 (enable leaves old tokens dead), D-38
//! (inclusive at the second). Each refusal has its positive control.

use std::future::Future;

use ema_grant::revocation::{
    Cursor, LedgerChanges, LedgerError, LedgerMirror, LedgerSnapshot, LedgerVerdict, MemoryLedger,
    MirrorVerdict, RevocationKind, RevocationLedger, RevocationScope,
};
use ema_grant::{Revoke, RevokeAction, Revoker, TokenRevocation};
use ema_jose::UnixTime;
use serde_json::json;

use crate::support::*;

fn revoker() -> Revoker {
    Revoker::new(MemoryLedger::new(), AS)
}

fn redeem(grant: &AsGrant, jag: &str) -> Reply {
    Reply::check(pollster::block_on(
        grant.handle(&Req::bearer(jag).build(), NOW),
    ))
}

fn idp_cmd(at: UnixTime, action: RevokeAction) -> Revoke {
    Revoke {
        scope: RevocationScope::idp(IDP, None),
        subject: USER.into(),
        at,
        action,
    }
}

fn secs(delta: i64) -> UnixTime {
    UnixTime::from_secs(NOW.as_secs().checked_add_signed(delta).unwrap())
}

// RV-11, D-38: an ID-JAG issued in the watermark's second is refused; one issued a second
// later is redeemed.
#[test]
fn rv11_d38_watermark_is_inclusive_at_the_second_boundary() {
    let fx = Fx::new();
    let r = revoker();
    let grant = fx.as_grant_with_revoker(r.clone());
    let revoke = RevokeAction::Revoke(RevocationKind::SessionRevoked);
    pollster::block_on(r.apply(&idp_cmd(secs(-10), revoke), NOW)).unwrap();
    let at_mark = redeem(&grant, &fx.jag(json!({"iat": at(-10)})));
    assert_eq!((at_mark.status, at_mark.error()), (400, "invalid_grant"));
    assert!(at_mark.raw.contains("revoked"), "{}", at_mark.raw);
    let before = redeem(&grant, &fx.jag(json!({"iat": at(-11)})));
    assert_eq!((before.status, before.error()), (400, "invalid_grant"));
    let after = redeem(&grant, &fx.jag(json!({"iat": at(-9)})));
    assert_eq!(after.status, 200, "{}", after.raw);
    // Another user of the same IdP is untouched.
    let other = redeem(&grant, &fx.jag(json!({"iat": at(-10), "sub": READER})));
    assert_eq!(other.status, 200, "{}", other.raw);
}

// RV-11: the refusal comes before the replay commit, so the `jti` is not burnt; RV-28: after
// account-enabled the same (post-watermark) ID-JAG redeems once, and a replay is still caught.
#[test]
fn rv11_revoked_id_jag_does_not_burn_its_jti() {
    let fx = Fx::new();
    let r = revoker();
    let grant = fx.as_grant_with_revoker(r.clone());
    let jag = fx.jag(json!({}));
    // Disabled with a watermark older than the ID-JAG: refused for the flag alone.
    let disable = RevokeAction::Disable(RevocationKind::AccountDisabled);
    pollster::block_on(r.apply(&idp_cmd(secs(-100), disable), secs(-100))).unwrap();
    let refused = redeem(&grant, &jag);
    assert_eq!((refused.status, refused.error()), (400, "invalid_grant"));
    pollster::block_on(r.apply(&idp_cmd(NOW, RevokeAction::Enable), NOW)).unwrap();
    let ok = redeem(&grant, &jag);
    assert_eq!(
        ok.status, 200,
        "the jti was burnt by the refusal: {}",
        ok.raw
    );
    let replay = redeem(&grant, &jag);
    assert_eq!((replay.status, replay.error()), (400, "invalid_grant"));
    // RV-28: an ID-JAG from before the watermark stays dead after enabling.
    let old = redeem(&grant, &fx.jag(json!({"iat": at(-100)})));
    assert_eq!((old.status, old.error()), (400, "invalid_grant"));
}

/// A ledger that cannot answer.
#[derive(Debug)]
struct Down;

fn down<T>() -> std::future::Ready<Result<T, LedgerError>> {
    std::future::ready(Err(LedgerError::Unavailable {
        reason: "connection refused".into(),
    }))
}

impl RevocationLedger for Down {
    fn revoke_subject(
        &self,
        _: &RevocationScope,
        _: &str,
        _: UnixTime,
        _: RevocationKind,
        _: UnixTime,
    ) -> impl Future<Output = Result<UnixTime, LedgerError>> + Send {
        down()
    }
    fn disable(
        &self,
        _: &RevocationScope,
        _: &str,
        _: RevocationKind,
        _: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        down()
    }
    fn enable(
        &self,
        _: &RevocationScope,
        _: &str,
        _: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        down()
    }
    fn deny_token(
        &self,
        _: &str,
        _: &str,
        _: UnixTime,
        _: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        down()
    }
    fn check_id_jag(
        &self,
        _: &str,
        _: Option<&str>,
        _: &str,
        _: UnixTime,
    ) -> impl Future<Output = Result<LedgerVerdict, LedgerError>> + Send {
        down()
    }
    fn snapshot(&self) -> impl Future<Output = Result<LedgerSnapshot, LedgerError>> + Send {
        down()
    }
    fn changes_since(
        &self,
        _: &Cursor,
    ) -> impl Future<Output = Result<LedgerChanges, LedgerError>> + Send {
        down()
    }
}

// RV-14: ledger unreachable -> 503 temporarily_unavailable, no token, jti not burnt.
#[test]
fn rv14_ledger_down_issues_no_token_and_burns_nothing() {
    let fx = Fx::new();
    let jag = fx.jag(json!({}));
    let broken = fx.as_grant_with_revoker(Revoker::new(Down, AS));
    let reply = redeem(&broken, &jag);
    assert_eq!(
        (reply.status, reply.error()),
        (503, "temporarily_unavailable"),
        "{}",
        reply.raw
    );
    // Positive control: the same ID-JAG at a healthy AS (same fixture keys) redeems.
    let healthy = fx.as_grant_with_revoker(revoker());
    assert_eq!(redeem(&healthy, &jag).status, 200);
}

// RV-12: revoking the IdP subject writes the watermark of the local subject its tokens were
// issued to, at the AS processing time; the resource-server mirror then refuses the token
// (RV-15) while a token issued after it passes.
#[test]
fn rv12_idp_revocation_reaches_the_access_tokens() {
    let fx = Fx::new();
    let r = revoker();
    let grant = fx.as_grant_with_revoker(r.clone());
    let issued = redeem(&grant, &fx.jag(json!({})));
    assert_eq!(issued.status, 200, "{}", issued.raw);
    let token = issued.body["access_token"].as_str().unwrap().to_owned();
    let claims = pollster::block_on(fx.at_validator(TASKS).validate(&token, NOW)).unwrap();
    let mirror = LedgerMirror::new();
    pollster::block_on(mirror.sync(r.ledger(), NOW)).unwrap();
    let check =
        |now| mirror.check_access_token(AS, &claims.sub, claims.iat, claims.jti.as_str(), now);
    assert_eq!(check(NOW), MirrorVerdict::Allowed);
    // The IdP event is older than the token (minted seconds before, redeemed after): the
    // local watermark uses the AS clock, so the token still dies.
    let revoke = RevokeAction::Revoke(RevocationKind::SessionRevoked);
    let changes = pollster::block_on(r.apply(&idp_cmd(secs(-30), revoke), NOW)).unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    pollster::block_on(mirror.sync(r.ledger(), NOW)).unwrap();
    assert!(matches!(check(NOW), MirrorVerdict::Revoked(_)));
    // A fresh login after the event gets a token the mirror accepts.
    let later = UnixTime::from_secs(NOW.as_secs() + 1);
    assert_eq!(
        mirror.check_access_token(AS, &claims.sub, later, "other-jti", later),
        MirrorVerdict::Allowed
    );
}

fn revocation_request(token: &str) -> Req {
    Req::bearer("x")
        .remove("grant_type")
        .remove("assertion")
        .remove("resource")
        .set("token", token)
}

fn revoke_at(grant: &AsGrant, req: &Req) -> (Reply, Option<TokenRevocation>) {
    let response = pollster::block_on(grant.handle_revocation(&req.build(), NOW));
    let outcome = response.extensions().get::<TokenRevocation>().cloned();
    (Reply::check(response), outcome)
}

// RV-20: RFC 7009 at the AS. The calling client's own live token is denied (and the mirror
// refuses it); unknown, foreign and other clients' tokens get 200 with no effect;
// `token_type_hint` is only a hint; an unauthenticated client gets 401.
#[test]
fn rv20_rfc7009_revocation_of_own_access_tokens() {
    let fx = Fx::new();
    let r = revoker();
    let grant = fx.as_grant_with_revoker(r.clone());
    let token = redeem(&grant, &fx.jag(json!({}))).body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let claims = pollster::block_on(fx.at_validator(TASKS).validate(&token, NOW)).unwrap();
    let mirror = LedgerMirror::new();
    let mirror_says = || {
        pollster::block_on(mirror.sync(r.ledger(), NOW)).unwrap();
        mirror.check_access_token(AS, &claims.sub, claims.iat, claims.jti.as_str(), NOW)
    };
    assert_eq!(mirror_says(), MirrorVerdict::Allowed);

    // No client authentication: 401, nothing revoked.
    let (anon, _) = revoke_at(&grant, &revocation_request(&token).no_auth());
    assert_eq!(anon.status, 401);
    // Another client: 200, nothing revoked.
    let (other, outcome) = revoke_at(
        &grant,
        &revocation_request(&token)
            .no_auth()
            .post_secret(POST_CLIENT, POST_SECRET),
    );
    assert_eq!(other.status, 200, "{}", other.raw);
    assert!(matches!(outcome, Some(TokenRevocation::Ignored { .. })));
    // Unknown token and a token of another issuer (an ID-JAG): 200, nothing revoked.
    for junk in ["not-a-token", fx.jag(json!({})).as_str()] {
        let (reply, outcome) = revoke_at(&grant, &revocation_request(junk));
        assert_eq!(reply.status, 200, "{}", reply.raw);
        assert!(matches!(outcome, Some(TokenRevocation::Ignored { .. })));
    }
    assert_eq!(mirror_says(), MirrorVerdict::Allowed);
    // Missing token: invalid_request.
    let (missing, _) = revoke_at(&grant, &revocation_request("x").remove("token"));
    assert_eq!((missing.status, missing.error()), (400, "invalid_request"));

    // The owning client, with a wrong hint (ignored): revoked.
    let (ok, outcome) = revoke_at(
        &grant,
        &revocation_request(&token).set("token_type_hint", "refresh_token"),
    );
    assert_eq!(ok.status, 200, "{}", ok.raw);
    assert!(matches!(outcome, Some(TokenRevocation::Revoked { .. })));
    assert_eq!(
        mirror_says(),
        MirrorVerdict::Revoked(ema_grant::RevocationReason::TokenDenied)
    );
    // Revoking again is idempotent.
    let (again, _) = revoke_at(&grant, &revocation_request(&token));
    assert_eq!(again.status, 200);
}

// RV-20 / RV-14: without a revoker the endpoint fails closed rather than claim success.
#[test]
fn rv20_without_a_ledger_the_endpoint_answers_503() {
    let fx = Fx::new();
    let token = redeem(&fx.as_default, &fx.jag(json!({}))).body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (reply, _) = revoke_at(&fx.as_default, &revocation_request(&token));
    assert_eq!(
        (reply.status, reply.error()),
        (503, "temporarily_unavailable")
    );
}

// RV-1: the IdP re-checks the user's status at every exchange: a disabled user's still-valid
// ID token gets `invalid_grant` (not `access_denied`); an active user of the same groups gets
// an ID-JAG.
#[test]
fn rv1_disabled_user_gets_invalid_grant_at_the_exchange() {
    let fx = Fx::new();
    let disabled = fx.send(&Req::exchange(&fx.id_token(json!({"sub": DISABLED_USER}))));
    assert_eq!(
        (disabled.status, disabled.error()),
        (400, "invalid_grant"),
        "{}",
        disabled.raw
    );
    let active = fx.send(&Req::exchange(&fx.id_token(json!({}))));
    assert_eq!(active.status, 200, "{}", active.raw);
}

// RV-2: the reference IdP issues no refresh tokens (its SSO code grant answers an ID token
// only) and accepts none as a subject token: a refresh-token subject token is refused at the
// exchange whoever it names, disabled user or not, so no revoked session can be extended
// through one. Positive control: the active user's ID token in the same request gets an
// ID-JAG.
#[test]
fn rv2_refresh_token_subject_tokens_are_refused() {
    const REFRESH_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";
    let fx = Fx::new();
    for sub in [DISABLED_USER, "00uA1ic3"] {
        let token = fx.id_token(json!({"sub": sub}));
        let as_refresh =
            fx.send(&Req::exchange(&token).set("subject_token_type", REFRESH_TOKEN_TYPE));
        assert_eq!(
            (as_refresh.status, as_refresh.error()),
            (400, "invalid_request"),
            "{sub}: {}",
            as_refresh.raw
        );
        assert!(
            as_refresh
                .raw
                .contains("subject_token_type is not supported")
        );
    }
    let opaque =
        fx.send(&Req::exchange("rt-8f2c1e0b9a").set("subject_token_type", REFRESH_TOKEN_TYPE));
    assert_eq!((opaque.status, opaque.error()), (400, "invalid_request"));
    let active = fx.send(&Req::exchange(&fx.id_token(json!({}))));
    assert_eq!(active.status, 200, "{}", active.raw);
    assert!(active.body["access_token"].is_string());
}

// RV-24: a grant configured for one-hour tokens issues five-minute ones until the IdP's
// revocation channel is verified; within 15 minutes of a verification it issues the hour
// (never more); after that, five minutes again; without a revoker (no channel), five minutes.
#[test]
fn rv24_longer_tokens_only_while_the_idp_channel_is_verified() {
    let fx = Fx::new();
    let lifetime = |reply: &Reply| {
        let token = reply.str("access_token").to_owned();
        let (_, claims) = peek(&token);
        let (exp, iat) = (
            claims["exp"].as_u64().unwrap(),
            claims["iat"].as_u64().unwrap(),
        );
        let expires_in = reply.body["expires_in"].as_u64().unwrap();
        assert_eq!(
            exp - iat,
            expires_in,
            "expires_in tells the token's lifetime"
        );
        expires_in
    };
    let r = revoker();
    let grant = fx.as_grant_with_lifetime(Some(r.clone()), 3600);
    assert_eq!(lifetime(&redeem(&grant, &fx.jag(json!({})))), 300);
    r.record_channel_verified(IDP, NOW.minus(60));
    assert_eq!(lifetime(&redeem(&grant, &fx.jag(json!({})))), 3600);
    // Another IdP's channel does not count for this one.
    let other = revoker();
    other.record_channel_verified("https://other-idp.example", NOW);
    let grant_other = fx.as_grant_with_lifetime(Some(other), 3600);
    assert_eq!(lifetime(&redeem(&grant_other, &fx.jag(json!({})))), 300);
    // Never more than an hour, even when configured for a day.
    let day = fx.as_grant_with_lifetime(Some(r.clone()), 86_400);
    assert_eq!(lifetime(&redeem(&day, &fx.jag(json!({})))), 3600);
    // A verification 15 minutes and one second old no longer counts.
    let stale = revoker();
    stale.record_channel_verified(IDP, NOW.minus(901));
    let grant_stale = fx.as_grant_with_lifetime(Some(stale), 3600);
    assert_eq!(lifetime(&redeem(&grant_stale, &fx.jag(json!({})))), 300);
    let without = fx.as_grant_with_lifetime(None, 3600);
    assert_eq!(lifetime(&redeem(&without, &fx.jag(json!({})))), 300);
    // A shorter configured lifetime is kept as is.
    let short = fx.as_grant_with_lifetime(Some(r), 120);
    assert_eq!(lifetime(&redeem(&short, &fx.jag(json!({})))), 120);
}
