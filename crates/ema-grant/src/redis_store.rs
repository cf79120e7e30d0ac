//! Shared state on Redis (feature `redis`): the [`RedisReplayStore`], so that single-use
//! identifiers stay single-use across every authorization-server instance that shares one
//! Redis (SEC-1, AS-7, D-6).
//!
//! Every store talks to Redis through a [`RedisConnection`]: on one Redis server, the `redis`
//! crate's multiplexed [`ConnectionManager`] ([`connect_lazy`]); on Redis Cluster, its
//! [`ClusterConnection`] ([`connect_cluster_lazy`]), which follows the cluster's slot map.
//! Both are one multiplexed connection (per node), cheap to clone, re-established in the
//! background after a failure. Each command is bounded by a timeout (default
//! [`DEFAULT_TIMEOUT`]); past it, or with Redis unreachable, the store answers
//! [`ReplayError::Unavailable`] and the token endpoint fails closed with 503
//! `temporarily_unavailable`. Nothing needs a restart when Redis comes back.
//!
//! # Keys and Redis Cluster
//!
//! Every key starts with the configured prefix in a hash tag, `{ema}:` by default (a prefix
//! that already holds a hash tag, such as `{tasks}:as`, is used as it is). Redis Cluster
//! places a key by its hash tag alone, so every key of one prefix lives in one slot: a Lua
//! script of the revocation ledger or of the fused redemption may touch several of them, and
//! the change stream is one key that `XREAD` reads from its tail. The same layout serves a
//! single server, where the braces are just characters. (Before cluster support the keys were
//! `ema:...` without braces; every key is short-lived or rewritten by the next change, so
//! nothing needs migrating, but watermarks and disabled flags written under the old names
//! are not read: revoke again after upgrading.)

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, Value};
use ema_jose::UnixTime;

use crate::replay::{ReplayError, ReplayKey, ReplayStore, Seen};

/// The default bound on one Redis command, connection included: 250 ms.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// The default key prefix: every key this crate writes starts with `ema:`.
pub const DEFAULT_PREFIX: &str = "ema";

/// The longest key prefix accepted, in bytes.
pub const MAX_PREFIX_LEN: usize = 64;

/// Why a Redis-backed store could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    /// The URL is not a Redis URL the client understands (`redis://`, `rediss://`,
    /// `redis+unix://`, `unix://`).
    #[error("invalid Redis URL: {reason}")]
    InvalidUrl {
        /// What the client said.
        reason: String,
    },
    /// The key prefix is empty, longer than [`MAX_PREFIX_LEN`] bytes, holds a character
    /// other than ASCII letters, digits, `-`, `_`, `.`, `:` and `{}`, or holds braces that do
    /// not open with a Redis Cluster hash tag (a `{` followed by a non-empty tag and `}`).
    #[error(
        "invalid Redis key prefix {prefix:?}: 1 to 64 of A-Z a-z 0-9 - _ . : {{ }}, braces only as a hash tag {{tag}}"
    )]
    InvalidPrefix {
        /// The prefix given.
        prefix: String,
    },
    /// Called outside a Tokio runtime: the connection's background tasks need one.
    #[error("a Redis connection must be opened inside a Tokio runtime")]
    NoRuntime,
}

/// Opens a [`ConnectionManager`] for `url` without connecting yet: the first command connects,
/// so a server may start while Redis is still down (its requests fail closed until Redis
/// answers). Reconnection attempts back off up to one second and each is bounded by
/// `timeout`.
///
/// # Errors
///
/// [`RedisSetupError::InvalidUrl`] when `url` is not a Redis URL;
/// [`RedisSetupError::NoRuntime`] outside a Tokio runtime.
pub fn connect_lazy(url: &str, timeout: Duration) -> Result<ConnectionManager, RedisSetupError> {
    manager(url, timeout, Some(timeout))
}

/// Opens a [`ClusterConnection`] to the Redis Cluster that `urls` (some of its nodes, each a
/// `redis://` or `rediss://` URL) belong to, without connecting yet: the first command reads
/// the slot map from the first node that answers, and the connection follows the map as it
/// changes (`MOVED`, failover). Like [`connect_lazy`], a server may start while the cluster is
/// down; each connection attempt is bounded by `timeout` and so is each command.
///
/// # Errors
///
/// [`RedisSetupError::InvalidUrl`] when `urls` is empty or one is not a Redis URL;
/// [`RedisSetupError::NoRuntime`] outside a Tokio runtime.
pub fn connect_cluster_lazy<I, S>(
    urls: I,
    timeout: Duration,
) -> Result<ClusterConnection, RedisSetupError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    cluster(urls, timeout, Some(timeout))
}

/// [`connect_cluster_lazy`] with the per-command response timeout of its own (`None`: none,
/// for the blocking stream tail).
pub(crate) fn cluster<I, S>(
    urls: I,
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
) -> Result<ClusterConnection, RedisSetupError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(RedisSetupError::NoRuntime);
    }
    let invalid = |e: ::redis::RedisError| RedisSetupError::InvalidUrl {
        reason: e.to_string(),
    };
    let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
    if urls.is_empty() {
        return Err(RedisSetupError::InvalidUrl {
            reason: "no Redis Cluster node given".into(),
        });
    }
    let mut builder = ClusterClient::builder(urls.iter().map(String::as_str))
        .connection_timeout(connect_timeout)
        .retries(2)
        .min_retry_wait(10)
        .max_retry_wait(1000);
    let mut config = ClusterConfig::new().set_connection_timeout(connect_timeout);
    if let Some(t) = response_timeout {
        builder = builder.response_timeout(t);
        config = config.set_response_timeout(t);
    }
    let client = builder.build().map_err(invalid)?;
    Ok(client.get_pending_async_connection_with_config(config))
}

/// A connection to Redis: one server or a Redis Cluster. Every store and the revocation
/// ledger of this crate run on one; clones share it. It is a
/// [`ConnectionLike`], so it runs any `redis` command or script; on a
/// cluster, a command goes to the node that holds its keys' slot.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use ema_grant::RedisReplayStore;
/// use ema_grant::redis_store::{RedisConnection, connect_cluster_lazy, connect_lazy};
///
/// let one: RedisConnection = connect_lazy("redis://127.0.0.1:6379/", Duration::from_millis(250))?.into();
/// let nodes = ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000", "redis://10.0.0.3:7000"];
/// let cluster: RedisConnection = connect_cluster_lazy(nodes, Duration::from_millis(250))?.into();
/// let store = RedisReplayStore::new(cluster).with_prefix("tasks-as")?;
/// # let _ = (one, store); Ok(()) }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum RedisConnection {
    /// One Redis server (or a proxy that looks like one).
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// Whether this is a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Runs a keyless command (`SCAN`) on the node that holds `key`'s slot: on one server,
    /// that server.
    pub(crate) async fn query_at<T: FromRedisValue>(
        &mut self,
        key: &str,
        cmd: &Cmd,
    ) -> ::redis::RedisResult<T> {
        match self {
            Self::Single(conn) => cmd.query_async(conn).await,
            Self::Cluster(conn) => {
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_key(key, SlotAddr::Master),
                ));
                let value = conn.route_command(cmd.clone(), route).await?;
                Ok(::redis::from_redis_value(value)?)
            }
        }
    }
}

impl From<ConnectionManager> for RedisConnection {
    fn from(conn: ConnectionManager) -> Self {
        Self::Single(conn)
    }
}

impl From<ClusterConnection> for RedisConnection {
    fn from(conn: ClusterConnection) -> Self {
        Self::Cluster(conn)
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConnection::Single",
            Self::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// [`connect_lazy`] with the per-command response timeout of its own (`None`: none, for a
/// connection that blocks in `XREAD BLOCK`; the caller bounds each call).
pub(crate) fn manager(
    url: &str,
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
) -> Result<ConnectionManager, RedisSetupError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(RedisSetupError::NoRuntime);
    }
    let invalid = |e: ::redis::RedisError| RedisSetupError::InvalidUrl {
        reason: e.to_string(),
    };
    let client = ::redis::Client::open(url).map_err(invalid)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(response_timeout)
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client, config).map_err(invalid)
}

/// The hash tag Redis Cluster places `key` by: the bytes between the first `{` and the first
/// `}` after it, when not empty.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let rest = key.get(open + 1..)?;
    let close = rest.find('}')?;
    rest.get(..close).filter(|tag| !tag.is_empty())
}

/// The start of every key under `prefix`: `{prefix}`, or the prefix itself when it holds a
/// hash tag, so that all of them hash to one Redis Cluster slot. `prefix` has passed
/// [`check_prefix`].
pub(crate) fn key_base(prefix: &str) -> Arc<str> {
    if prefix.contains('{') {
        Arc::from(prefix)
    } else {
        Arc::from(format!("{{{prefix}}}"))
    }
}

pub(crate) fn check_prefix(prefix: &str) -> Result<(), RedisSetupError> {
    let braces = prefix.contains(['{', '}']);
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:{}".contains(&b))
        && (!braces || hash_tag(prefix).is_some());
    if ok {
        Ok(())
    } else {
        Err(RedisSetupError::InvalidPrefix {
            prefix: prefix.to_owned(),
        })
    }
}

/// Runs one Redis command under `timeout`, mapping every failure to a reason string.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = ::redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: no answer within {} ms",
            timeout.as_millis()
        )),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A [`ReplayStore`] on Redis, shared by every instance that points at the same Redis and
/// prefix (SEC-1, AS-7).
///
/// Each check is one atomic `SET {prefix}:rp:{digest} 1 NX PX {ttl}` (the prefix in a hash
/// tag, see [the module documentation](self#keys-and-redis-cluster)): the key is the hex
/// SHA-256 [`ReplayKey::digest`] of (kind, issuer, `jti`), so keys have a fixed size whatever
/// the token carries; the TTL is the time left until `expires_at` (which the grants already
/// extend by their clock leeway), at least one second, counted by Redis itself so that the
/// instances' clocks do not matter. Redis unreachable, failing or slower than the timeout
/// (default [`DEFAULT_TIMEOUT`]) gives [`ReplayError::Unavailable`]: the token endpoint
/// answers 503 `temporarily_unavailable` and issues nothing. A check that timed out may still
/// have reached Redis and recorded the key: that identifier is then spent although no token
/// was issued for it (a timeout cannot tell), and the client fetches a new one.
///
/// On one Redis server or a Redis Cluster ([`open_cluster`](Self::open_cluster)), with the
/// same answers. Clones share the connection. Requires a Tokio runtime with the time driver.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use ema_grant::{DynReplayStore, RedisReplayStore};
///
/// let store = RedisReplayStore::open("redis://127.0.0.1:6379/")?
///     .with_prefix("tasks-as")?
///     .with_timeout(Duration::from_millis(100));
/// // One store for the jwt-bearer grant, client assertions and DPoP proofs:
/// let shared = DynReplayStore::new(store);
/// # let _ = shared; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisReplayStore {
    conn: RedisConnection,
    prefix: Arc<str>,
    base: Arc<str>,
    timeout: Duration,
}

impl RedisReplayStore {
    /// A store over a lazily connected [`ConnectionManager`] for `url` (see [`connect_lazy`]),
    /// with the prefix [`DEFAULT_PREFIX`] and the timeout [`DEFAULT_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// [`RedisSetupError::InvalidUrl`] when `url` is not a Redis URL;
    /// [`RedisSetupError::NoRuntime`] outside a Tokio runtime.
    pub fn open(url: &str) -> Result<Self, RedisSetupError> {
        Ok(Self::new(connect_lazy(url, DEFAULT_TIMEOUT)?))
    }

    /// A store on the Redis Cluster that `urls` (some of its nodes) belong to, over a lazily
    /// connected [`ClusterConnection`] (see [`connect_cluster_lazy`]), with the prefix
    /// [`DEFAULT_PREFIX`] and the timeout [`DEFAULT_TIMEOUT`].
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
        Ok(Self::new(connect_cluster_lazy(urls, DEFAULT_TIMEOUT)?))
    }

    /// A store over an existing connection ([`ConnectionManager`], [`ClusterConnection`] or
    /// [`RedisConnection`]), for sharing it with other Redis users.
    pub fn new(conn: impl Into<RedisConnection>) -> Self {
        Self {
            conn: conn.into(),
            prefix: Arc::from(DEFAULT_PREFIX),
            base: key_base(DEFAULT_PREFIX),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Puts every key under `prefix` (default [`DEFAULT_PREFIX`]): instances share entries
    /// exactly when they share the Redis and the prefix.
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

    /// Bounds each check (default [`DEFAULT_TIMEOUT`]); a slower answer counts as Redis
    /// being unavailable.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The connection, to share with other Redis users (the revocation ledger).
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The timeout of one check.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The Redis key of `key`: `{prefix}:rp:{hex sha-256 digest}`, the braces standing for
    /// themselves (`{ema}:rp:...`) unless the prefix holds a hash tag of its own.
    pub fn redis_key(&self, key: ReplayKey<'_>) -> String {
        format!("{}:rp:{}", self.base, hex(&key.digest()))
    }

    async fn set_nx(&self, key: String, ttl_ms: u64) -> Result<Seen, ReplayError> {
        let mut conn = self.conn.clone();
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(&key).arg(1).arg("NX").arg("PX").arg(ttl_ms);
        let reply: Option<String> = bounded(self.timeout, "SET NX", cmd.query_async(&mut conn))
            .await
            .map_err(|reason| ReplayError::Unavailable { reason })?;
        match reply.as_deref() {
            Some("OK") => Ok(Seen::First),
            None => Ok(Seen::Again),
            Some(other) => Err(ReplayError::Unavailable {
                reason: format!("SET NX: unexpected reply {other:?}"),
            }),
        }
    }
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("connection", &self.conn)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ReplayStore for RedisReplayStore {
    fn check_and_insert(
        &self,
        key: ReplayKey<'_>,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> impl Future<Output = Result<Seen, ReplayError>> + Send {
        let redis_key = self.redis_key(key);
        let ttl_ms = expires_at
            .as_secs()
            .saturating_sub(now.as_secs())
            .max(1)
            .saturating_mul(1000);
        self.set_nx(redis_key, ttl_ms)
    }

    fn forget(&self, key: ReplayKey<'_>) -> impl Future<Output = Result<(), ReplayError>> + Send {
        let redis_key = self.redis_key(key);
        async move {
            let mut conn = self.conn.clone();
            let mut cmd = ::redis::cmd("DEL");
            cmd.arg(&redis_key);
            let _: i64 = bounded(self.timeout, "DEL", cmd.query_async(&mut conn))
                .await
                .map_err(|reason| ReplayError::Unavailable { reason })?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::ReplayKind;

    #[test]
    fn prefixes() {
        for good in ["ema", "tasks-as:eu", "{as}", "a.b_c", "{t}:as", "x}{y}"] {
            assert_eq!(check_prefix(good), Ok(()), "{good}");
        }
        let long = "x".repeat(MAX_PREFIX_LEN + 1);
        for bad in [
            "",
            "a b",
            "a\r\nFLUSHALL",
            "é",
            long.as_str(),
            "{}",
            "}a",
            "a{b",
            "{}x{y}",
        ] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_key_of_a_prefix_has_the_same_hash_tag() {
        // Redis Cluster places a key by its hash tag: the prefix's, whatever follows it.
        for (prefix, tag) in [
            ("ema", "ema"),
            ("tasks-as:eu", "tasks-as:eu"),
            ("{t}:as", "t"),
            ("x}{y}", "y"),
        ] {
            let base = key_base(prefix);
            for suffix in [":rp:00ff", ":rv:log", ":rv:w:{odd}"] {
                assert_eq!(hash_tag(&format!("{base}{suffix}")), Some(tag), "{prefix}");
            }
        }
        assert_eq!(hash_tag("ema:rp:00"), None);
        assert_eq!(hash_tag("{}ema{x}"), None);
    }

    #[tokio::test]
    async fn invalid_url_is_a_typed_error() {
        assert!(matches!(
            connect_lazy("http://127.0.0.1/", DEFAULT_TIMEOUT),
            Err(RedisSetupError::InvalidUrl { .. })
        ));
        assert!(connect_lazy("redis://127.0.0.1:6379/", DEFAULT_TIMEOUT).is_ok());
    }

    #[test]
    fn outside_a_runtime_is_a_typed_error_not_a_panic() {
        assert_eq!(
            RedisReplayStore::open("redis://127.0.0.1:6379/").map(|_| ()),
            Err(RedisSetupError::NoRuntime)
        );
    }

    #[tokio::test]
    async fn keys_have_a_fixed_size_whatever_the_jti() {
        let store = RedisReplayStore::open("redis+unix:///nonexistent/redis.sock").unwrap();
        let long = "j".repeat(10_000);
        let a = store.redis_key(ReplayKey {
            kind: ReplayKind::IdJag,
            issuer: "https://idp.example",
            jti: &long,
        });
        let b = store.redis_key(ReplayKey {
            kind: ReplayKind::DpopProof,
            issuer: "https://idp.example",
            jti: "j",
        });
        assert!(a.starts_with("{ema}:rp:"), "{a}");
        assert_eq!(a.len(), "{ema}:rp:".len() + 64);
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn cluster_urls_are_checked() {
        assert!(matches!(
            connect_cluster_lazy(Vec::<String>::new(), DEFAULT_TIMEOUT),
            Err(RedisSetupError::InvalidUrl { .. })
        ));
        assert!(matches!(
            connect_cluster_lazy(["http://127.0.0.1:7000/"], DEFAULT_TIMEOUT),
            Err(RedisSetupError::InvalidUrl { .. })
        ));
        let store = RedisReplayStore::open_cluster(["redis://127.0.0.1:7000/"]).unwrap();
        assert!(store.connection().is_cluster());
        assert!(
            !RedisReplayStore::open("redis://127.0.0.1:7000/")
                .unwrap()
                .connection()
                .is_cluster()
        );
    }

    #[test]
    fn cluster_outside_a_runtime_is_a_typed_error() {
        assert_eq!(
            RedisReplayStore::open_cluster(["redis://127.0.0.1:7000/"]).map(|_| ()),
            Err(RedisSetupError::NoRuntime)
        );
    }

    #[tokio::test]
    async fn unreachable_cluster_fails_closed_within_the_timeout() {
        // A loopback port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let store = RedisReplayStore::open_cluster([format!("redis://127.0.0.1:{port}/")])
            .unwrap()
            .with_timeout(Duration::from_millis(100));
        let key = ReplayKey {
            kind: ReplayKind::IdJag,
            issuer: "https://idp.example",
            jti: "j1",
        };
        let now = UnixTime::from_secs(1_000);
        for _ in 0..2 {
            let started = std::time::Instant::now();
            let result = store.check_and_insert(key, now.plus(300), now).await;
            assert!(
                matches!(result, Err(ReplayError::Unavailable { .. })),
                "{result:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(2));
        }
    }

    #[tokio::test]
    async fn unreachable_redis_fails_closed_within_the_timeout() {
        // SEC-1: no socket at that path, so every check is `Unavailable`, never `First`.
        let store = RedisReplayStore::open("redis+unix:///nonexistent/redis.sock")
            .unwrap()
            .with_timeout(Duration::from_millis(100));
        let key = ReplayKey {
            kind: ReplayKind::IdJag,
            issuer: "https://idp.example",
            jti: "j1",
        };
        let now = UnixTime::from_secs(1_000);
        let started = std::time::Instant::now();
        let result = store.check_and_insert(key, now.plus(300), now).await;
        assert!(
            matches!(result, Err(ReplayError::Unavailable { .. })),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
