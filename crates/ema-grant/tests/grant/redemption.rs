//! The jwt-bearer grant's optional `IdJagRedeemer` (RV-11 + SEC-1 in one call): when set, it
//! alone decides revoked / first / again for the ID-JAG (the revoker's ledger and the replay
//! store are not asked about the ID-JAG), it gets the ID-JAG's facts, its answers map like the
//! two-step path's (`invalid_grant`, 503 on failure), and the revoker still records the
//! subject mapping (RV-12). The Redis redeemer's parity with the two steps is in
//! `redis_redemption`.

use std::sync::{Arc, Mutex};

use ema_grant::redemption::RedeemFuture;
use ema_grant::revocation::{LedgerError, MemoryLedger, RevocationKind, RevocationReason};
use ema_grant::{
    IdJagRedeemer, InMemoryReplayStore, Redeemed, RedemptionCheck, ReplayKey, ReplayKind,
    ReplayStore, RevocationScope, Revoke, RevokeAction, Revoker, Seen,
};
use ema_jose::UnixTime;
use serde_json::json;

use crate::support::*;

/// What the scripted redeemer saw: (iss, tenant, sub, iat, replay kind, jti, expires_at).
type Seen7 = (String, Option<String>, String, u64, ReplayKind, String, u64);

/// Answers what it is told and records each check.
#[derive(Debug)]
struct Scripted {
    answer: Mutex<Result<Redeemed, LedgerError>>,
    calls: Mutex<Vec<Seen7>>,
}

impl Scripted {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            answer: Mutex::new(Ok(Redeemed::First)),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn answer(&self, answer: Result<Redeemed, LedgerError>) {
        *self.answer.lock().unwrap() = answer;
    }
}

impl IdJagRedeemer for Scripted {
    fn redeem<'a>(&'a self, check: RedemptionCheck<'a>, _now: UnixTime) -> RedeemFuture<'a> {
        self.calls.lock().unwrap().push((
            check.idp_issuer.to_owned(),
            check.tenant.map(str::to_owned),
            check.idp_subject.to_owned(),
            check.iat.as_secs(),
            check.replay.kind,
            check.replay.jti.to_owned(),
            check.expires_at.as_secs(),
        ));
        let answer = self.answer.lock().unwrap().clone();
        Box::pin(async move { answer })
    }
}

fn redeem(grant: &AsGrant, jag: &str) -> Reply {
    Reply::check(pollster::block_on(
        grant.handle(&Req::bearer(jag).build(), NOW),
    ))
}

fn secs(delta: i64) -> u64 {
    NOW.as_secs().checked_add_signed(delta).unwrap()
}

#[test]
fn rv11_sec1_a_redeemer_replaces_the_ledger_check_and_the_replay_commit() {
    let fx = Fx::new();
    // The revoker's ledger disables the user: without a redeemer that is a refusal (the
    // control), with one only the redeemer's answer counts.
    let revoker = Revoker::new(MemoryLedger::new(), AS);
    let disable = Revoke {
        scope: RevocationScope::idp(IDP, None),
        subject: USER.into(),
        at: UnixTime::from_secs(secs(-100)),
        action: RevokeAction::Disable(RevocationKind::AccountDisabled),
    };
    pollster::block_on(revoker.apply(&disable, NOW)).unwrap();
    let store = Arc::new(InMemoryReplayStore::new(100));
    let two_step = fx.as_grant_redeeming(revoker.clone(), Arc::clone(&store), None);
    let refused = redeem(&two_step, &fx.jag(json!({})));
    assert_eq!((refused.status, refused.error()), (400, "invalid_grant"));
    assert!(refused.description().contains("revoked"), "{}", refused.raw);

    let scripted = Scripted::new();
    let fused = fx.as_grant_redeeming(
        revoker.clone(),
        Arc::clone(&store),
        Some(scripted.clone() as Arc<dyn IdJagRedeemer>),
    );
    let jti = "jag-redeemer-1";
    let jag = fx.jag(json!({"jti": jti, "iat": at(-10), "exp": at(290)}));
    let ok = redeem(&fused, &jag);
    assert_eq!(ok.status, 200, "{}", ok.raw);
    assert_eq!(
        scripted.calls.lock().unwrap().as_slice(),
        &[(
            IDP.to_owned(),
            None,
            USER.to_owned(),
            secs(-10),
            ReplayKind::IdJag,
            jti.to_owned(),
            // `exp` plus the maximum leeway, as the replay store gets it.
            secs(290 + 60),
        )]
    );
    // The replay store was not asked about the ID-JAG: its `jti` is still unrecorded there.
    let key = ReplayKey {
        kind: ReplayKind::IdJag,
        issuer: IDP,
        jti,
    };
    assert_eq!(
        pollster::block_on(store.check_and_insert(key, UnixTime::from_secs(secs(400)), NOW)),
        Ok(Seen::First)
    );
    // RV-12: the revoker still learns the mapping.
    assert_eq!(
        revoker.local_subjects(&RevocationScope::idp(IDP, None), USER),
        vec![USER_LOCAL.to_owned()]
    );

    // Each answer maps like the two-step path's.
    let rows: [(Result<Redeemed, LedgerError>, u16, &str, &str); 4] = [
        (Ok(Redeemed::First), 200, "", ""),
        (Ok(Redeemed::Again), 400, "invalid_grant", "already used"),
        (
            Ok(Redeemed::Revoked(RevocationReason::Disabled {
                kind: RevocationKind::AccountDisabled,
            })),
            400,
            "invalid_grant",
            "revoked at the IdP",
        ),
        (
            Err(LedgerError::Unavailable {
                reason: "connection refused".into(),
            }),
            503,
            "temporarily_unavailable",
            "",
        ),
    ];
    for (answer, status, error, description) in rows {
        scripted.answer(answer.clone());
        let reply = redeem(&fused, &fx.jag(json!({})));
        assert_eq!((reply.status, reply.error()), (status, error), "{answer:?}");
        assert!(reply.description().contains(description), "{}", reply.raw);
        assert_eq!(
            reply.body.get("access_token").is_some(),
            status == 200,
            "{answer:?}: {}",
            reply.raw
        );
    }
}
