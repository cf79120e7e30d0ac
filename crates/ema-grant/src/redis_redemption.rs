//! The [`IdJagRedeemer`] on Redis (feature `redis`): the revocation check of
//! [`RedisLedger`] (RV-11, RV-14) and the replay commit of [`RedisReplayStore`] (SEC-1) in one
//! Lua script, so that a jwt-bearer redemption costs one Redis round trip instead of two.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::Script;
use ema_jose::UnixTime;

use crate::redemption::{IdJagRedeemer, RedeemFuture, Redeemed, RedemptionCheck};
use crate::redis_ledger::{RedisLedger, subject_verdict, unavailable};
use crate::redis_store::{RedisReplayStore, bounded};
use crate::revocation::{LedgerError, LedgerVerdict};

/// Reads the IdP subject's disabled flag and watermark and, only when neither revokes an
/// ID-JAG issued at `iat` (D-38: revoked when `iat <= at`, integer seconds), records the
/// replay key with `SET NX PX`. Anything it cannot read as a watermark holds the `SET` back;
/// the caller decides from the records returned (the same decoding as `check_id_jag`).
/// KEYS: disabled flag, watermark, replay key. ARGV: iat seconds, replay TTL in ms.
/// Returns {status, disabled record, watermark record}; status `first`, `again` or `held`.
const REDEEM: &str = r"
local d = redis.call('GET', KEYS[1])
local w = redis.call('GET', KEYS[2])
if d then return {'held', d, w} end
if w then
  local ok, rec = pcall(cjson.decode, w)
  local at = nil
  if ok and type(rec) == 'table' and type(rec['at']) == 'number' then at = rec['at'] end
  if at == nil or tonumber(ARGV[1]) <= at then return {'held', d, w} end
end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then
  return {'first', d, w}
end
return {'again', d, w}
";

/// The [`IdJagRedeemer`] on Redis: one atomic Lua script per redemption that reads the IdP
/// subject's disabled flag and watermark (the keys of [`RedisLedger`]) and, only if neither
/// revokes the ID-JAG, sets its replay key (the key of [`RedisReplayStore`], same TTL). The
/// answers are those of the ledger's
/// [`check_id_jag`](crate::RevocationLedger::check_id_jag) followed by the store's
/// [`check_and_insert`](crate::ReplayStore::check_and_insert), in one round trip.
///
/// The ledger and the store must live on the same Redis. On one server their prefixes may
/// differ; on Redis Cluster the script's keys must hash to one slot, so give both the same
/// prefix (or prefixes with the same hash tag, such as `{tasks}:ledger` and `{tasks}:replay`). The script runs on
/// the ledger's command connection, bounded by the longer of the two timeouts; Redis
/// unreachable, failing or slow gives [`LedgerError::Unavailable`] (503
/// `temporarily_unavailable`, no token). A timed-out call may still have recorded the `jti`,
/// as with the store alone.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use ema_grant::redis_redemption::RedisRedeemer;
/// use ema_grant::{RedisLedger, RedisReplayStore};
///
/// let ledger = RedisLedger::open("redis://127.0.0.1:6379/")?.with_prefix("tasks-as")?;
/// // The replay store on the ledger's connection, under the same prefix.
/// let store = RedisReplayStore::new(ledger.connection().clone()).with_prefix("tasks-as")?;
/// let redeemer = Arc::new(RedisRedeemer::new(ledger.clone(), store.clone()));
/// // JwtBearerGrant::builder(..).revocation_ledger(ledger).replay_store(store)
/// //     .redeemer(redeemer)
/// # let _ = redeemer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisRedeemer {
    ledger: RedisLedger,
    store: RedisReplayStore,
    timeout: Duration,
    script: Arc<Script>,
}

impl RedisRedeemer {
    /// A redeemer over `ledger`'s subject keys and `store`'s replay keys, run on `ledger`'s
    /// command connection.
    pub fn new(ledger: RedisLedger, store: RedisReplayStore) -> Self {
        let timeout = ledger.timeout().max(store.timeout());
        Self {
            ledger,
            store,
            timeout,
            script: Arc::new(Script::new(REDEEM)),
        }
    }

    async fn run(
        &self,
        check: RedemptionCheck<'_>,
        now: UnixTime,
    ) -> Result<Redeemed, LedgerError> {
        let (disabled_key, watermark_key) =
            self.ledger
                .id_jag_subject_keys(check.idp_issuer, check.tenant, check.idp_subject);
        // The TTL of `RedisReplayStore::check_and_insert`.
        let ttl_ms = check
            .expires_at
            .as_secs()
            .saturating_sub(now.as_secs())
            .max(1)
            .saturating_mul(1000);
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(disabled_key)
            .key(watermark_key)
            .key(self.store.redis_key(check.replay))
            .arg(check.iat.as_secs())
            .arg(ttl_ms);
        let mut conn = self.ledger.connection().clone();
        let (status, disabled, watermark): (String, Option<String>, Option<String>) = bounded(
            self.timeout,
            "ID-JAG redemption",
            invocation.invoke_async(&mut conn),
        )
        .await
        .map_err(unavailable)?;
        // The verdict exactly as `check_id_jag` decodes the records (a corrupt record is an
        // error); the script only decided whether to consume the `jti`.
        match (
            subject_verdict(disabled, watermark, check.iat)?,
            status.as_str(),
        ) {
            (LedgerVerdict::Revoked(reason), _) => Ok(Redeemed::Revoked(reason)),
            (LedgerVerdict::Allowed, "first") => Ok(Redeemed::First),
            (LedgerVerdict::Allowed, "again") => Ok(Redeemed::Again),
            (LedgerVerdict::Allowed, other) => Err(unavailable(format!(
                "ID-JAG redemption: the script answered {other:?} for a subject not revoked"
            ))),
        }
    }
}

impl fmt::Debug for RedisRedeemer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRedeemer")
            .field("ledger", &self.ledger)
            .field("store", &self.store)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl IdJagRedeemer for RedisRedeemer {
    fn redeem<'a>(&'a self, check: RedemptionCheck<'a>, now: UnixTime) -> RedeemFuture<'a> {
        Box::pin(self.run(check, now))
    }
}
