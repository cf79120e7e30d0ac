//! The [`RevocationLedger`] on Redis (feature `redis`, RV-14): watermarks, disabled flags and
//! token denials shared by every authorization-server instance, and a change feed on a Redis
//! Stream that resource servers tail into their [`LedgerMirror`] (RV-15, RV-16).
//!
//! Layout, under a prefix (default `ema`) in a hash tag, with `{digest}` the hex SHA-256 of
//! [`subject_digest`] or [`token_digest`] so that keys have a fixed size:
//!
//! | Key | Value | Expiry |
//! |---|---|---|
//! | `{prefix}:rv:w:{digest}` | the [`LedgerChange::Watermark`] in force, JSON | the watermark plus the retention |
//! | `{prefix}:rv:d:{digest}` | the [`LedgerChange::Disabled`], JSON | none: until `enable` |
//! | `{prefix}:rv:j:{digest}` | the [`LedgerChange::TokenDenied`], JSON | the token's `exp` |
//! | `{prefix}:rv:log` | stream of every change (field `c`, JSON) | capped: trimmed from the front |
//! | `{prefix}:rv:trimmed` | the last stream id trimmed away | none |
//!
//! `{prefix}` stands for the prefix in braces (`{ema}:rv:log`; a prefix that holds a hash tag
//! of its own is used as it is): on Redis Cluster every key of the ledger then hashes to one
//! slot, which the scripts below (a record, the stream and the trim mark) need, and the
//! snapshot's `SCAN` runs on the node that holds that slot. See
//! [`redis_store`](crate::redis_store#keys-and-redis-cluster).
//!
//! Each write is one Lua script that changes the key and appends to the stream atomically; the
//! watermark script only ever raises the watermark (RV-28). A mirror's cursor is a stream id:
//! [`changes_since`](RevocationLedger::changes_since) is an `XREAD BLOCK` from it on a
//! connection of its own, and answers [`LedgerError::CursorExpired`] when the stream no longer
//! holds every entry after the cursor (trimmed past it, or reset), so that the mirror reloads a
//! snapshot instead of missing a change. [`tail_mirror`] keeps a mirror current: tail, plus a
//! snapshot resync every 15 s by default.
//!
//! Redis without persistence forgets the ledger when it restarts; run it with AOF (or RDB
//! snapshots) where revocations must survive a Redis restart.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::{Script, Value};
use ema_jose::UnixTime;

use crate::redis_store::{
    DEFAULT_PREFIX, DEFAULT_TIMEOUT, RedisConnection, RedisSetupError, bounded, check_prefix,
    cluster, connect_cluster_lazy, connect_lazy, hex, key_base, manager,
};
use crate::revocation::{
    Cursor, DEFAULT_RETENTION, LedgerChange, LedgerChanges, LedgerError, LedgerMirror,
    LedgerSnapshot, LedgerVerdict, RevocationKind, RevocationLedger, RevocationReason,
    RevocationScope, subject_digest, token_digest,
};

/// How long one `XREAD BLOCK` waits for a first change by default: 2 s.
pub const DEFAULT_BLOCK: Duration = Duration::from_secs(2);

/// How often [`tail_mirror`] reloads a full snapshot by default: 15 s (RV-16).
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(15);

/// The default cap of the change stream, in entries.
pub const DEFAULT_STREAM_CAP: usize = 100_000;

/// The cursor of an empty stream.
const START: &str = "0-0";

/// Appends a change to the stream and trims the stream from the front once it holds more
/// than the cap plus a tenth, recording the last id trimmed so that a mirror can tell that it
/// missed entries. KEYS: (record), stream, trim mark. ARGV (from `base`): change JSON, cap.
const LOG: &str = r"
local function log(base)
  local stream, mark = KEYS[2], KEYS[3]
  redis.call('XADD', stream, '*', 'c', ARGV[base])
  local cap = tonumber(ARGV[base + 1])
  local n = redis.call('XLEN', stream)
  if n > cap + math.max(math.floor(cap / 10), 1) then
    local k = n - cap
    local r = redis.call('XRANGE', stream, '-', '+', 'COUNT', k + 1)
    redis.call('SET', mark, r[k][1])
    redis.call('XTRIM', stream, 'MINID', r[k + 1][1])
  end
end
";

/// Raises the watermark (max-only) and logs the change.
/// KEYS: watermark, stream, trim mark. ARGV: at, ttl seconds, change JSON, stream cap.
const RAISE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local at = tonumber(cjson.decode(cur)['at'])
  if at and at >= tonumber(ARGV[1]) then return tostring(at) end
end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2])
log(3)
return ARGV[1]
";

/// Sets a key without expiry unless present, and logs the change.
/// KEYS: flag, stream, trim mark. ARGV: change JSON, stream cap.
const DISABLE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  log(1)
  return 1
end
return 0
";

/// Deletes the flag and logs the change if there was one.
/// KEYS: flag, stream, trim mark. ARGV: change JSON, stream cap.
const ENABLE: &str = r"
if redis.call('DEL', KEYS[1]) == 1 then
  log(1)
  return 1
end
return 0
";

/// Denies a token until the later of the present and the new expiry, and logs a raise.
/// KEYS: denial, stream, trim mark. ARGV: expiry, ttl seconds, change JSON, stream cap.
const DENY: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local old = tonumber(cjson.decode(cur)['until'])
  if old and old >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2])
log(3)
return 1
";

/// The verdict of a subject's disabled flag and watermark records for a token issued at
/// `iat`.
pub(crate) fn subject_verdict(
    disabled: Option<String>,
    watermark: Option<String>,
    iat: UnixTime,
) -> Result<LedgerVerdict, LedgerError> {
    if let Some(json) = disabled {
        if let LedgerChange::Disabled { kind, .. } = decode(&json)? {
            return Ok(LedgerVerdict::Revoked(RevocationReason::Disabled { kind }));
        }
        return Err(unavailable("disabled flag holds another record"));
    }
    if let Some(json) = watermark {
        let LedgerChange::Watermark { at, kind, .. } = decode(&json)? else {
            return Err(unavailable("watermark holds another record"));
        };
        // D-38: inclusive, integer seconds.
        if iat.as_secs() <= at {
            return Ok(LedgerVerdict::Revoked(RevocationReason::Watermark {
                at: UnixTime::from_secs(at),
                kind,
            }));
        }
    }
    Ok(LedgerVerdict::Allowed)
}

pub(crate) fn unavailable(reason: impl Into<String>) -> LedgerError {
    LedgerError::Unavailable {
        reason: reason.into(),
    }
}

/// A stream id `ms-seq`, compared numerically.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The (field, value) pairs of a reply that is a map (RESP3) or a flat array (RESP2).
fn pairs(value: &Value) -> Vec<(String, &Value)> {
    match value {
        Value::Map(entries) => entries
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v)))
            .collect(),
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| match pair {
                [k, v] => Some((text(k)?, v)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn decode(json: &str) -> Result<LedgerChange, LedgerError> {
    serde_json::from_str(json).map_err(|e| unavailable(format!("corrupt ledger record: {e}")))
}

/// The [`RevocationLedger`] on Redis (RV-14): see the [module documentation](self) for the
/// layout. Every command is bounded by a timeout (default 250 ms); Redis unreachable or slow
/// gives [`LedgerError::Unavailable`] (503 at the token endpoint and the SSF receiver).
///
/// On one Redis server or a Redis Cluster ([`open_cluster`](Self::open_cluster)). Clones share
/// both connections: the command connection (which may be shared with a
/// [`RedisReplayStore`](crate::RedisReplayStore)) and the tail connection that
/// `XREAD BLOCK` occupies. Requires a Tokio runtime with the time driver.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use ema_grant::revocation::{LedgerMirror, RevocationKind, RevocationLedger, RevocationScope};
/// use ema_grant::redis_ledger::{RedisLedger, tail_mirror, DEFAULT_RESYNC};
/// use ema_jose::UnixTime;
///
/// let ledger = RedisLedger::open("redis://127.0.0.1:6379/")?.with_prefix("tasks")?;
/// // At the authorization server: revoke.
/// let local = RevocationScope::local("https://auth.tasks.example");
/// let now = UnixTime::now();
/// ledger.revoke_subject(&local, "u-17", now, RevocationKind::Admin, now).await?;
/// // At each resource server: a mirror kept current in the background.
/// let mirror = Arc::new(LedgerMirror::new());
/// tokio::spawn(tail_mirror(ledger.clone(), mirror.clone(), DEFAULT_RESYNC, UnixTime::now));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisLedger {
    conn: RedisConnection,
    tail: RedisConnection,
    prefix: Arc<str>,
    base: Arc<str>,
    timeout: Duration,
    block: Duration,
    retention: u64,
    stream_cap: usize,
    scripts: Arc<[Script; 4]>,
}

impl RedisLedger {
    /// A ledger over two lazily connected [`ConnectionManager`](::redis::aio::ConnectionManager)s for `url` (commands, and the
    /// stream tail), prefix `ema`, timeout 250 ms.
    ///
    /// # Errors
    ///
    /// [`RedisSetupError::InvalidUrl`] when `url` is not a Redis URL;
    /// [`RedisSetupError::NoRuntime`] outside a Tokio runtime.
    pub fn open(url: &str) -> Result<Self, RedisSetupError> {
        let conn = connect_lazy(url, DEFAULT_TIMEOUT)?;
        // No response timeout on the tail: each XREAD is bounded by the block time plus the
        // command timeout, whatever `with_block` sets.
        let tail = manager(url, DEFAULT_TIMEOUT, None)?;
        Ok(Self::new(conn, tail))
    }

    /// A ledger on the Redis Cluster that `urls` (some of its nodes) belong to, over two lazily
    /// connected [`ClusterConnection`](::redis::cluster_async::ClusterConnection)s (commands,
    /// and the stream tail; see [`connect_cluster_lazy`]), prefix `ema`, timeout 250 ms.
    ///
    /// # Errors
    ///
    /// [`RedisSetupError::InvalidUrl`] when `urls` is empty or one is not a Redis URL;
    /// [`RedisSetupError::NoRuntime`] outside a Tokio runtime.
    pub fn open_cluster<I, S>(urls: I) -> Result<Self, RedisSetupError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        let conn = connect_cluster_lazy(&urls, DEFAULT_TIMEOUT)?;
        let tail = cluster(&urls, DEFAULT_TIMEOUT, None)?;
        Ok(Self::new(conn, tail))
    }

    /// A ledger over existing connections ([`ConnectionManager`](::redis::aio::ConnectionManager),
    /// [`ClusterConnection`](::redis::cluster_async::ClusterConnection) or [`RedisConnection`]):
    /// `conn` for commands (shareable), `tail` for the blocking stream reads (not shared with
    /// anything latency-sensitive: a blocked read holds its connection).
    pub fn new(conn: impl Into<RedisConnection>, tail: impl Into<RedisConnection>) -> Self {
        Self {
            conn: conn.into(),
            tail: tail.into(),
            prefix: Arc::from(DEFAULT_PREFIX),
            base: key_base(DEFAULT_PREFIX),
            timeout: DEFAULT_TIMEOUT,
            block: DEFAULT_BLOCK,
            retention: DEFAULT_RETENTION,
            stream_cap: DEFAULT_STREAM_CAP,
            scripts: Arc::new(
                [RAISE, DISABLE, ENABLE, DENY].map(|body| Script::new(&format!("{LOG}{body}"))),
            ),
        }
    }

    /// Puts every key under `prefix` (default `ema`).
    ///
    /// # Errors
    ///
    /// [`RedisSetupError::InvalidPrefix`] for an empty, long or unusual prefix.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, RedisSetupError> {
        check_prefix(prefix)?;
        self.prefix = Arc::from(prefix);
        self.base = key_base(prefix);
        Ok(self)
    }

    /// Bounds each command (default 250 ms).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long one `changes_since` waits for a first change (default [`DEFAULT_BLOCK`]).
    pub fn with_block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Keeps watermarks `secs` after the watermark instant (default [`DEFAULT_RETENTION`]).
    pub fn with_retention(mut self, secs: u64) -> Self {
        self.retention = secs.max(1);
        self
    }

    /// Caps the change stream at about `entries` (default [`DEFAULT_STREAM_CAP`]); a mirror
    /// further behind reloads a snapshot.
    pub fn with_stream_cap(mut self, entries: usize) -> Self {
        self.stream_cap = entries.max(1);
        self
    }

    /// The command connection, to share with a [`RedisReplayStore`](crate::RedisReplayStore)
    /// (see [`RedisRedeemer`](crate::redis_redemption::RedisRedeemer)).
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    /// The bound on one command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The keys of an IdP subject's disabled flag and watermark, in that order.
    pub(crate) fn id_jag_subject_keys(
        &self,
        idp_issuer: &str,
        tenant: Option<&str>,
        idp_subject: &str,
    ) -> (String, String) {
        let digest = subject_digest(&RevocationScope::idp(idp_issuer, tenant), idp_subject);
        (self.key("d", &digest), self.key("w", &digest))
    }

    /// The change stream's key: `{prefix}:rv:log`, the prefix in a hash tag.
    pub fn stream_key(&self) -> String {
        format!("{}:rv:log", self.base)
    }

    /// The key prefix, as configured.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key holding the last stream id trimmed away.
    fn trim_key(&self) -> String {
        format!("{}:rv:trimmed", self.base)
    }

    fn key(&self, kind: &str, digest: &[u8; 32]) -> String {
        format!("{}:rv:{kind}:{}", self.base, hex(digest))
    }

    fn json(change: &LedgerChange) -> Result<String, LedgerError> {
        serde_json::to_string(change).map_err(|e| unavailable(format!("encode: {e}")))
    }

    async fn script<T: ::redis::FromRedisValue>(
        &self,
        index: usize,
        record: &str,
        args: &[String],
    ) -> Result<T, LedgerError> {
        let script = self
            .scripts
            .get(index)
            .ok_or_else(|| unavailable("no such script"))?;
        let mut invocation = script.prepare_invoke();
        invocation
            .key(record)
            .key(self.stream_key())
            .key(self.trim_key());
        for a in args {
            invocation.arg(a);
        }
        let mut conn = self.conn.clone();
        bounded(
            self.timeout,
            "ledger write",
            invocation.invoke_async(&mut conn),
        )
        .await
        .map_err(unavailable)
    }

    async fn do_revoke(
        &self,
        scope: &RevocationScope,
        subject: &str,
        at: UnixTime,
        kind: RevocationKind,
        now: UnixTime,
    ) -> Result<UnixTime, LedgerError> {
        let key = self.key("w", &subject_digest(scope, subject));
        let at_secs = at.as_secs();
        let change = Self::json(&LedgerChange::Watermark {
            scope: scope.clone(),
            subject: subject.to_owned(),
            at: at_secs,
            kind,
        })?;
        let ttl = at_secs
            .saturating_add(self.retention)
            .saturating_sub(now.as_secs())
            .max(1);
        let args = [
            at_secs.to_string(),
            ttl.to_string(),
            change,
            self.stream_cap.to_string(),
        ];
        let in_force: String = self.script(0, &key, &args).await?;
        in_force
            .parse()
            .map(UnixTime::from_secs)
            .map_err(|_| unavailable(format!("watermark script answered {in_force:?}")))
    }

    async fn do_flag(
        &self,
        script: usize,
        scope: &RevocationScope,
        change: LedgerChange,
        subject: &str,
    ) -> Result<(), LedgerError> {
        let key = self.key("d", &subject_digest(scope, subject));
        let args = [Self::json(&change)?, self.stream_cap.to_string()];
        let _: i64 = self.script(script, &key, &args).await?;
        Ok(())
    }

    async fn do_deny(
        &self,
        issuer: &str,
        jti: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<(), LedgerError> {
        let until_secs = until.as_secs();
        if until_secs <= now.as_secs() {
            // Already expired: nothing to deny.
            return Ok(());
        }
        let key = self.key("j", &token_digest(issuer, jti));
        let change = Self::json(&LedgerChange::TokenDenied {
            issuer: issuer.to_owned(),
            jti: jti.to_owned(),
            until: until_secs,
        })?;
        let args = [
            until_secs.to_string(),
            (until_secs - now.as_secs()).to_string(),
            change,
            self.stream_cap.to_string(),
        ];
        let _: i64 = self.script(3, &key, &args).await?;
        Ok(())
    }

    async fn do_check(
        &self,
        idp_issuer: &str,
        tenant: Option<&str>,
        idp_subject: &str,
        iat: UnixTime,
    ) -> Result<LedgerVerdict, LedgerError> {
        let digest = subject_digest(&RevocationScope::idp(idp_issuer, tenant), idp_subject);
        let mut cmd = ::redis::cmd("MGET");
        cmd.arg(self.key("d", &digest)).arg(self.key("w", &digest));
        let mut conn = self.conn.clone();
        let (disabled, watermark): (Option<String>, Option<String>) =
            bounded(self.timeout, "ledger check", cmd.query_async(&mut conn))
                .await
                .map_err(unavailable)?;
        subject_verdict(disabled, watermark, iat)
    }

    /// [`RevocationLedger::check_access_token`]: one `MGET` of the token's denial and the
    /// local subject's disabled flag and watermark.
    async fn do_check_token(
        &self,
        issuer: &str,
        subject: &str,
        iat: UnixTime,
        jti: &str,
        now: UnixTime,
    ) -> Result<LedgerVerdict, LedgerError> {
        let digest = subject_digest(&RevocationScope::local(issuer), subject);
        let mut cmd = ::redis::cmd("MGET");
        cmd.arg(self.key("j", &token_digest(issuer, jti)))
            .arg(self.key("d", &digest))
            .arg(self.key("w", &digest));
        let mut conn = self.conn.clone();
        let (denied, disabled, watermark): (Option<String>, Option<String>, Option<String>) =
            bounded(self.timeout, "ledger check", cmd.query_async(&mut conn))
                .await
                .map_err(unavailable)?;
        if let Some(json) = denied {
            let LedgerChange::TokenDenied { until, .. } = decode(&json)? else {
                return Err(unavailable("token denial holds another record"));
            };
            if until > now.as_secs() {
                return Ok(LedgerVerdict::Revoked(RevocationReason::TokenDenied));
            }
        }
        subject_verdict(disabled, watermark, iat)
    }

    /// The stream's `last-generated-id` (`None`: no stream) and the last id trimmed away
    /// (`0-0`: none).
    async fn stream_info(
        &self,
        conn: &mut RedisConnection,
    ) -> Result<(Option<(u64, u64)>, (u64, u64)), LedgerError> {
        let mut get = ::redis::cmd("GET");
        get.arg(self.trim_key());
        let trimmed: Option<String> = bounded(self.timeout, "GET", get.query_async(conn))
            .await
            .map_err(unavailable)?;
        let trimmed = match trimmed {
            Some(id) => parse_id(&id).ok_or_else(|| unavailable("corrupt trim mark"))?,
            None => (0, 0),
        };
        let mut exists = ::redis::cmd("EXISTS");
        exists.arg(self.stream_key());
        let n: i64 = bounded(self.timeout, "EXISTS", exists.query_async(conn))
            .await
            .map_err(unavailable)?;
        if n == 0 {
            return Ok((None, trimmed));
        }
        let mut info = ::redis::cmd("XINFO");
        info.arg("STREAM").arg(self.stream_key());
        let value: Value = bounded(self.timeout, "XINFO STREAM", info.query_async(conn))
            .await
            .map_err(unavailable)?;
        let last = pairs(&value)
            .into_iter()
            .find(|(k, _)| k == "last-generated-id")
            .and_then(|(_, v)| text(v))
            .and_then(|s| parse_id(&s))
            .ok_or_else(|| unavailable("XINFO: no last id"))?;
        Ok((Some(last), trimmed))
    }

    async fn do_snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
        let mut conn = self.conn.clone();
        // The cursor first: changes made during the scan are replayed by the tail (applying a
        // change twice is harmless; the mirror's watermarks are max-only).
        let cursor = match self.stream_info(&mut conn).await? {
            (Some((ms, seq)), _) => format!("{ms}-{seq}"),
            (None, _) => START.to_owned(),
        };
        let mut changes = Vec::new();
        let stream = self.stream_key();
        for kind in ["w", "d", "j"] {
            let pattern = format!("{}:rv:{kind}:*", self.base);
            let mut scan_cursor: u64 = 0;
            loop {
                let mut cmd = ::redis::cmd("SCAN");
                cmd.arg(scan_cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                // On a cluster, on the node that holds the ledger's slot.
                let (next, keys): (u64, Vec<String>) =
                    bounded(self.timeout, "SCAN", conn.query_at(&stream, &cmd))
                        .await
                        .map_err(unavailable)?;
                if !keys.is_empty() {
                    let mut get = ::redis::cmd("MGET");
                    get.arg(&keys);
                    let values: Vec<Option<String>> =
                        bounded(self.timeout, "MGET", get.query_async(&mut conn))
                            .await
                            .map_err(unavailable)?;
                    for json in values.into_iter().flatten() {
                        changes.push(decode(&json)?);
                    }
                }
                if next == 0 {
                    break;
                }
                scan_cursor = next;
            }
        }
        Ok(LedgerSnapshot {
            cursor: Cursor::new(cursor),
            changes,
        })
    }

    async fn do_changes_since(&self, cursor: &Cursor) -> Result<LedgerChanges, LedgerError> {
        let after = parse_id(cursor.as_str()).ok_or(LedgerError::CursorExpired)?;
        let mut tail = self.tail.clone();
        let mut read = ::redis::cmd("XREAD");
        read.arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(
                u64::try_from(self.block.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .arg("STREAMS")
            .arg(self.stream_key())
            .arg(cursor.as_str());
        let reply: Value = bounded(
            self.timeout + self.block,
            "XREAD",
            read.query_async(&mut tail),
        )
        .await
        .map_err(unavailable)?;
        let mut changes = Vec::new();
        let mut last = cursor.as_str().to_owned();
        // [[stream, [[id, [field, value, ...]], ...]]] (RESP2) or {stream: [...]} (RESP3).
        let streams: Vec<&Value> = match &reply {
            Value::Nil => Vec::new(),
            Value::Array(items) => items
                .iter()
                .filter_map(|s| match s {
                    Value::Array(pair) => pair.get(1),
                    _ => None,
                })
                .collect(),
            Value::Map(entries) => entries.iter().map(|(_, v)| v).collect(),
            other => return Err(unavailable(format!("XREAD answered {other:?}"))),
        };
        for entries in streams {
            let Value::Array(entries) = entries else {
                return Err(unavailable("XREAD: entries are not an array"));
            };
            for entry in entries {
                let Value::Array(parts) = entry else {
                    return Err(unavailable("XREAD: entry is not an array"));
                };
                let (Some(id), Some(fields)) = (parts.first().and_then(text), parts.get(1)) else {
                    return Err(unavailable("XREAD: malformed entry"));
                };
                let json = pairs(fields)
                    .into_iter()
                    .find(|(k, _)| k == "c")
                    .and_then(|(_, v)| text(v))
                    .ok_or_else(|| unavailable("XREAD: entry without a change"))?;
                changes.push(decode(&json)?);
                last = id;
            }
        }
        // Gap-free or nothing: every entry after the cursor must still be in the stream, and
        // the stream must not have been reset behind it.
        let mut conn = self.conn.clone();
        let complete = match self.stream_info(&mut conn).await? {
            (None, _) => after == (0, 0),
            (Some(last_generated), trimmed) => trimmed <= after && last_generated >= after,
        };
        if !complete {
            return Err(LedgerError::CursorExpired);
        }
        Ok(LedgerChanges {
            cursor: Cursor::new(last),
            changes,
        })
    }
}

impl fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLedger")
            .field("connection", &self.conn)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("block", &self.block)
            .field("retention", &self.retention)
            .field("stream_cap", &self.stream_cap)
            .finish_non_exhaustive()
    }
}

impl RevocationLedger for RedisLedger {
    fn revoke_subject(
        &self,
        scope: &RevocationScope,
        subject: &str,
        at: UnixTime,
        kind: RevocationKind,
        now: UnixTime,
    ) -> impl Future<Output = Result<UnixTime, LedgerError>> + Send {
        self.do_revoke(scope, subject, at, kind, now)
    }

    fn disable(
        &self,
        scope: &RevocationScope,
        subject: &str,
        kind: RevocationKind,
        _now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        let change = LedgerChange::Disabled {
            scope: scope.clone(),
            subject: subject.to_owned(),
            kind,
        };
        self.do_flag(1, scope, change, subject)
    }

    fn enable(
        &self,
        scope: &RevocationScope,
        subject: &str,
        _now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        let change = LedgerChange::Enabled {
            scope: scope.clone(),
            subject: subject.to_owned(),
        };
        self.do_flag(2, scope, change, subject)
    }

    fn deny_token(
        &self,
        issuer: &str,
        jti: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        self.do_deny(issuer, jti, until, now)
    }

    fn check_id_jag(
        &self,
        idp_issuer: &str,
        tenant: Option<&str>,
        idp_subject: &str,
        iat: UnixTime,
    ) -> impl Future<Output = Result<LedgerVerdict, LedgerError>> + Send {
        self.do_check(idp_issuer, tenant, idp_subject, iat)
    }

    fn snapshot(&self) -> impl Future<Output = Result<LedgerSnapshot, LedgerError>> + Send {
        self.do_snapshot()
    }

    fn check_access_token(
        &self,
        issuer: &str,
        subject: &str,
        iat: UnixTime,
        jti: &str,
        now: UnixTime,
    ) -> impl Future<Output = Result<LedgerVerdict, LedgerError>> + Send {
        self.do_check_token(issuer, subject, iat, jti, now)
    }

    fn changes_since(
        &self,
        cursor: &Cursor,
    ) -> impl Future<Output = Result<LedgerChanges, LedgerError>> + Send {
        self.do_changes_since(cursor)
    }
}

/// Keeps `mirror` current from `ledger`, forever (spawn it; abort the task to stop): tails the
/// change stream (`XREAD BLOCK`, so a change reaches the mirror as soon as Redis has it) and
/// reloads a full snapshot every `resync` (RV-16; [`DEFAULT_RESYNC`]). After a failure (Redis
/// down, connection killed) it retries from the mirror's last cursor every 100 ms, so no change
/// is skipped; meanwhile the mirror ages and turns stale past its bound (503 at the resource
/// server, RV-16). `now` is the clock the mirror's staleness is measured with.
pub async fn tail_mirror<N: Fn() -> UnixTime + Send>(
    ledger: RedisLedger,
    mirror: Arc<LedgerMirror>,
    resync: Duration,
    now: N,
) {
    let mut last_snapshot: Option<tokio::time::Instant> = None;
    loop {
        let due = last_snapshot.is_none_or(|at| at.elapsed() >= resync);
        let result = if due {
            match ledger.snapshot().await {
                Ok(snapshot) => {
                    mirror.apply_snapshot(&snapshot, now());
                    last_snapshot = Some(tokio::time::Instant::now());
                    Ok(snapshot.changes.len())
                }
                Err(e) => Err(e),
            }
        } else {
            mirror.sync(&ledger, now()).await
        };
        if result.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_compare_numerically() {
        assert_eq!(parse_id("1700000000000-12"), Some((1_700_000_000_000, 12)));
        assert!(parse_id("9-0") < parse_id("10-0"));
        for bad in ["", "5", "a-1", "1-b", "-1"] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn pairs_reads_flat_arrays_and_maps() {
        let flat = Value::Array(vec![
            Value::BulkString(b"c".to_vec()),
            Value::BulkString(b"{}".to_vec()),
        ]);
        let map = Value::Map(vec![(
            Value::SimpleString("c".into()),
            Value::BulkString(b"{}".to_vec()),
        )]);
        for v in [flat, map] {
            let p = pairs(&v);
            assert_eq!(p.len(), 1);
            assert_eq!(p[0].0, "c");
        }
    }
}
