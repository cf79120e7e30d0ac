//! Live requests, streams and MCP sessions per subject, ended when the revocation mirror learns
//! that their token is revoked (RV-18).
//!
//! With [`BearerAuthBuilder::revocation_mirror`](crate::BearerAuthBuilder::revocation_mirror)
//! the bearer layer registers every request it lets through under the token's (issuer,
//! subject), with the token's `iat` and `jti`, for as long as its response is being produced
//! and streamed, and remembers which MCP session (`Mcp-Session-Id`) each subject's tokens used.
//! The registry listens to the mirror ([`MirrorListener`]): on a change for a subject it
//! re-checks that subject's live entries against the mirror, and for each revoked one
//!
//! - fires the request's [`RevocationSignal`]: a response not produced yet is dropped (the
//!   handler's future with it) and answered 401 `invalid_token` "token revoked"; a response
//!   body being streamed (an SSE stream, GET or POST) ends, a POST's after an answer to each
//!   of its JSON-RPC requests not answered yet (the error [`ACCESS_REVOKED_CODE`]), so that no
//!   client waits for an answer that will not come;
//! - closes the MCP session through the [`SessionCloser`] given to
//!   [`BearerAuthBuilder::session_closer`](crate::BearerAuthBuilder::session_closer) (with rmcp:
//!   `ema_server::rmcp::close_sessions`), so the session is forgotten and its next request gets
//!   the normal unknown-session answer.
//!
//! Handlers that run work beyond their request's future (rmcp runs each tool call on a task
//! of its own) take the [`RevocationSignal`] from the request's extensions and stop when it
//! fires; `ema_server::rmcp::Guarded` does that for every tool call it wraps.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use axum::body::Body;
use axum::body::Bytes;
use ema_grant::revocation::{LedgerChange, LedgerMirror, MirrorListener, RevocationScope};
use ema_jose::UnixTime;
use tokio::sync::watch;

use crate::Principal;

/// Closes an MCP session by its id (`Mcp-Session-Id`) when the subject it serves is revoked
/// (RV-18). Called from the thread that synced the revocation mirror: it must not block (start
/// the closing on a task). With rmcp, `ema_server::rmcp::close_sessions` implements it over the
/// service's session manager.
pub trait SessionCloser: Send + Sync {
    /// Closes the session `session_id`: its streams end and its running requests stop.
    fn close_session(&self, session_id: &str);
}

/// Fires when the token a request was let through with is revoked (RV-18): the bearer layer
/// puts one into the extensions of every request it hands on while a revocation mirror is
/// configured. Handlers that run work beyond the request's own future race it against that
/// work (see [`revoked`](Self::revoked)).
#[derive(Clone)]
pub struct RevocationSignal(watch::Receiver<bool>);

impl fmt::Debug for RevocationSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationSignal")
            .field("revoked", &self.is_revoked())
            .finish()
    }
}

impl RevocationSignal {
    /// Whether the token has been revoked.
    pub fn is_revoked(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the token is revoked; pending forever while it is not (also after the
    /// request is over and the layer has forgotten it).
    pub fn revoked(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            if rx.wait_for(|revoked| *revoked).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The token behind a live request or session (its verified claims, shared: no copy).
#[derive(Debug, Clone)]
struct TokenRef(Principal);

impl TokenRef {
    fn iat(&self) -> UnixTime {
        self.0.claims().iat
    }

    fn jti(&self) -> &str {
        self.0.claims().jti.as_str()
    }

    fn exp(&self) -> u64 {
        self.0.claims().exp.as_secs()
    }
}

/// How one request being served learns of its token's revocation inside the layer: the
/// handler's future and then the response body are polled by one task (the connection's), so
/// one waker slot suffices, registered without a lock. (Handlers' own tasks wait on the
/// token's shared [`RevocationSignal`] instead.)
#[derive(Debug, Default)]
pub(crate) struct RequestWake {
    revoked: AtomicBool,
    waker: AtomicWaker,
}

impl RequestWake {
    fn fire(&self) {
        self.revoked.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Whether the token is revoked, after arranging for `cx` to be woken when it is.
    fn poll_revoked(&self, cx: &Context<'_>) -> bool {
        if self.is_revoked() {
            return true;
        }
        self.waker.register(cx.waker());
        // A revocation between the first look and the registration woke nobody: look again.
        self.is_revoked()
    }
}

/// One token's live requests: the requests being served, and the signal they share (one
/// channel per token, made when the token is first seen, not one per request).
#[derive(Debug)]
struct LiveToken {
    token: TokenRef,
    /// Requests of this token being served now (each one's wake-up).
    requests: Vec<Arc<RequestWake>>,
    /// Whether a request registered since the shard's last sweep.
    used: bool,
    revoked: watch::Sender<bool>,
}

impl LiveToken {
    fn new(token: TokenRef) -> Self {
        Self {
            token,
            requests: Vec::new(),
            used: false,
            revoked: watch::Sender::new(false),
        }
    }
}

#[derive(Debug, Default)]
struct SubjectLive {
    /// Token id (`jti`) → the token's live requests.
    tokens: HashMap<String, LiveToken>,
    /// Session id → the latest token seen using it.
    sessions: HashMap<String, TokenRef>,
}

impl SubjectLive {
    fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.sessions.is_empty()
    }
}

/// How many registrations in one shard apart the shard drops the entries of tokens idle since
/// its previous sweep and of subjects with nothing live.
const SWEEP_EVERY: u64 = 4096;

/// How many independently locked parts the registry is split into, by (issuer, subject).
const SHARDS: usize = 16;

/// Issuer → subject → live entries.
type Subjects = HashMap<String, HashMap<String, SubjectLive>>;

/// One part of the registry: the subjects whose (issuer, subject) hash falls into it.
#[derive(Debug, Default)]
struct Shard {
    subjects: Subjects,
    registrations: u64,
}

impl Shard {
    /// Drops what nothing needs any more: tokens without live requests that were not used
    /// since the previous sweep or have expired, sessions whose latest token has expired,
    /// and subjects left with nothing.
    fn sweep(&mut self, now: u64) {
        for by_subject in self.subjects.values_mut() {
            for entry in by_subject.values_mut() {
                entry.tokens.retain(|_, live| {
                    let keep = !live.requests.is_empty() || (live.used && live.token.exp() > now);
                    live.used = false;
                    keep
                });
                entry.sessions.retain(|_, t| t.exp() > now);
            }
            by_subject.retain(|_, entry| !entry.is_empty());
        }
        self.subjects.retain(|_, by_subject| !by_subject.is_empty());
    }
}

/// The registry of live requests and sessions (RV-18), one per [`crate::BearerAuth`] with a
/// revocation mirror.
///
/// Split into [`SHARDS`] parts locked separately, so that requests of different subjects do
/// not contend. A token's requests share one signal: registering a request of a token already
/// live (the common case: a client reuses its token) allocates nothing.
pub(crate) struct LiveRegistry {
    shards: [Mutex<Shard>; SHARDS],
    hasher: RandomState,
    /// How many mirror changes this registry has started to act on: a request that saw the
    /// same count before its mirror check and after its registration cannot have been missed
    /// by a change (see [`LiveRegistry::changes`]).
    changes: AtomicU64,
    closer: Option<Arc<dyn SessionCloser>>,
}

impl fmt::Debug for LiveRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subjects: usize = self
            .shards
            .iter()
            .map(|shard| {
                lock(shard)
                    .subjects
                    .values()
                    .map(HashMap::len)
                    .sum::<usize>()
            })
            .sum();
        f.debug_struct("LiveRegistry")
            .field("subjects", &subjects)
            .field("session_closer", &self.closer.is_some())
            .finish()
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // Every update leaves the maps consistent, so a poisoned lock is safe to reuse.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LiveRegistry {
    pub(crate) fn new(closer: Option<Arc<dyn SessionCloser>>) -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            hasher: RandomState::new(),
            changes: AtomicU64::new(0),
            closer,
        }
    }

    /// The shard of (`issuer`, `subject`).
    fn shard_of(&self, issuer: &str, subject: &str) -> usize {
        let hash = self.hasher.hash_one((issuer, subject));
        // The remainder is below `SHARDS`, which fits any `usize`.
        usize::try_from(hash % SHARDS as u64).unwrap_or(0)
    }

    fn shard(&self, index: usize) -> std::sync::MutexGuard<'_, Shard> {
        // `index` comes from `shard_of`; the first shard stands in for an impossible one.
        lock(self.shards.get(index).unwrap_or(&self.shards[0]))
    }

    /// How many mirror changes the registry has started to act on. The count goes up before
    /// a change's live entries are looked at, under the shards' locks; so a request that
    /// reads the same count before its mirror check and after its registration was either
    /// refused by the check or is in the registry for every change applied since: it needs
    /// no second check.
    pub(crate) fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// Registers a request let through with `principal`'s token, in MCP session `session` if
    /// it names one; the entry lives as long as the returned guard.
    pub(crate) fn register(
        self: &Arc<Self>,
        principal: &Principal,
        session: Option<&str>,
        now: UnixTime,
    ) -> (LiveGuard, RevocationSignal) {
        let claims = principal.claims();
        let wake = Arc::new(RequestWake::default());
        let index = self.shard_of(claims.iss.as_str(), claims.sub.as_str());
        let mut shard = self.shard(index);
        shard.registrations = shard.registrations.wrapping_add(1);
        if shard.registrations.is_multiple_of(SWEEP_EVERY) {
            shard.sweep(now.as_secs());
        }
        let signal = with_subject(&mut shard.subjects, principal, |entry| {
            // Sessions last only as long as a token that may still use them: the shard's
            // sweep drops the expired ones (not every request: a subject may hold many).
            if let Some(session) = session {
                match entry.sessions.get_mut(session) {
                    // The common case: the session's latest token again.
                    Some(latest) if latest.jti() == claims.jti.as_str() => {}
                    Some(latest) => *latest = TokenRef(principal.clone()),
                    None => {
                        entry
                            .sessions
                            .insert(session.to_owned(), TokenRef(principal.clone()));
                    }
                }
            }
            let live = match entry.tokens.get_mut(claims.jti.as_str()) {
                Some(live) => live,
                None => entry
                    .tokens
                    .entry(claims.jti.as_str().to_owned())
                    .or_insert_with(|| LiveToken::new(TokenRef(principal.clone()))),
            };
            // A token fired earlier and let through again (the mirror no longer revokes it)
            // gets a fresh signal; the requests that saw the revocation keep theirs.
            if *live.revoked.borrow() {
                live.revoked = watch::Sender::new(false);
            }
            live.requests.push(Arc::clone(&wake));
            live.used = true;
            RevocationSignal(live.revoked.subscribe())
        });
        drop(shard);
        let guard = LiveGuard {
            registry: Arc::clone(self),
            principal: principal.clone(),
            shard: index,
            wake,
        };
        (guard, signal)
    }

    /// Remembers that `principal`'s subject uses MCP session `session` (the session id a
    /// response assigned).
    pub(crate) fn add_session(&self, principal: &Principal, session: &str) {
        let claims = principal.claims();
        let mut shard = self.shard(self.shard_of(claims.iss.as_str(), claims.sub.as_str()));
        with_subject(&mut shard.subjects, principal, |entry| {
            entry
                .sessions
                .insert(session.to_owned(), TokenRef(principal.clone()));
        });
    }

    /// Forgets MCP session `session` (the client ended it).
    pub(crate) fn forget_session(&self, principal: &Principal, session: &str) {
        let claims = principal.claims();
        let mut shard = self.shard(self.shard_of(claims.iss.as_str(), claims.sub.as_str()));
        if let Some(entry) = shard
            .subjects
            .get_mut(claims.iss.as_str())
            .and_then(|m| m.get_mut(claims.sub.as_str()))
        {
            entry.sessions.remove(session);
        }
    }

    /// Fires the signal of every live token of (`issuer`, `subject`) that the mirror now
    /// revokes, and drops (returning them) its sessions last used with a revoked token.
    fn revoke(
        mirror: &LedgerMirror,
        issuer: &str,
        subject: &str,
        entry: &mut SubjectLive,
        closed: &mut Vec<String>,
    ) {
        let revoked = |t: &TokenRef| {
            mirror
                .revocation(issuer, subject, t.iat(), t.jti())
                .is_some()
        };
        for live in entry.tokens.values() {
            if !*live.revoked.borrow() && revoked(&live.token) {
                live.revoked.send_replace(true);
                for request in &live.requests {
                    request.fire();
                }
            }
        }
        entry.sessions.retain(|session, token| {
            let dead = revoked(token);
            if dead {
                closed.push(session.clone());
            }
            !dead
        });
    }
}

impl MirrorListener for LiveRegistry {
    fn changed(&self, mirror: &LedgerMirror, change: &LedgerChange) {
        // Counted before any shard is looked at (see `changes`).
        self.changes.fetch_add(1, Ordering::SeqCst);
        let mut closed = Vec::new();
        match change {
            LedgerChange::Watermark {
                scope: RevocationScope::Local { issuer },
                subject,
                ..
            }
            | LedgerChange::Disabled {
                scope: RevocationScope::Local { issuer },
                subject,
                ..
            } => {
                let mut shard = self.shard(self.shard_of(issuer, subject));
                if let Some(entry) = shard
                    .subjects
                    .get_mut(issuer.as_str())
                    .and_then(|m| m.get_mut(subject.as_str()))
                {
                    Self::revoke(mirror, issuer, subject, entry, &mut closed);
                }
            }
            // One token: only the subjects that hold it (a look-up per live subject of this
            // issuer, which are few next to the requests they serve).
            LedgerChange::TokenDenied { issuer, jti, .. } => {
                for shard in &self.shards {
                    let mut shard = lock(shard);
                    if let Some(by_subject) = shard.subjects.get_mut(issuer.as_str()) {
                        for (subject, entry) in by_subject.iter_mut() {
                            let holds = entry.tokens.contains_key(jti.as_str())
                                || entry.sessions.values().any(|t| t.jti() == jti.as_str());
                            if holds {
                                Self::revoke(mirror, issuer, subject, entry, &mut closed);
                            }
                        }
                    }
                }
            }
            // Enabling never revives anything; IdP-space entries concern the AS.
            _ => {}
        }
        if closed.is_empty() {
            return;
        }
        tracing::info!(sessions = closed.len(), "closing revoked MCP sessions");
        if let Some(closer) = &self.closer {
            for session in &closed {
                closer.close_session(session);
            }
        }
    }
}

/// Runs `f` on the entry of `principal`'s subject, made if needed (allocating only then).
fn with_subject<R>(
    subjects: &mut Subjects,
    principal: &Principal,
    f: impl FnOnce(&mut SubjectLive) -> R,
) -> R {
    let claims = principal.claims();
    if let Some(entry) = subjects
        .get_mut(claims.iss.as_str())
        .and_then(|m| m.get_mut(claims.sub.as_str()))
    {
        return f(entry);
    }
    f(subjects
        .entry(claims.iss.as_str().to_owned())
        .or_default()
        .entry(claims.sub.clone())
        .or_default())
}

/// Keeps a request registered; deregisters it when dropped (the response is over).
pub(crate) struct LiveGuard {
    registry: Arc<LiveRegistry>,
    principal: Principal,
    shard: usize,
    wake: Arc<RequestWake>,
}

impl LiveGuard {
    /// This request's wake-up on revocation.
    pub(crate) fn wake(&self) -> &RequestWake {
        &self.wake
    }
}

impl fmt::Debug for LiveGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveGuard")
            .field("jti", &self.principal.claims().jti.as_str())
            .finish()
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let claims = self.principal.claims();
        let mut shard = self.registry.shard(self.shard);
        // The token's entry stays (idle) for its next request; sweeps drop idle ones.
        if let Some(live) = shard
            .subjects
            .get_mut(claims.iss.as_str())
            .and_then(|m| m.get_mut(claims.sub.as_str()))
            .and_then(|entry| entry.tokens.get_mut(claims.jti.as_str()))
            && let Some(at) = live
                .requests
                .iter()
                .position(|r| Arc::ptr_eq(r, &self.wake))
        {
            live.requests.swap_remove(at);
        }
    }
}

/// The JSON-RPC error code of the answer the bearer layer sends, on a POST's SSE stream it cuts
/// because the token was revoked (RV-18), for each request of that POST not answered yet: a
/// client is told that its request ended instead of waiting for an answer that will not come.
/// Its message is "access revoked: the request was cancelled". (In the range JSON-RPC 2.0
/// leaves to servers; MCP names no code for it.)
pub const ACCESS_REVOKED_CODE: i32 = -32003;

/// What a POST's SSE answer owes its client when it is cut (RV-18): an answer to each JSON-RPC
/// request in the POST that the stream has not carried yet.
pub(crate) struct OwedAnswers {
    /// The POST's body (a message or a batch), read only when the stream is cut.
    request: Bytes,
    batch: bool,
    /// The stream's data frames so far: for a single request only the last (a server ends a
    /// request's stream with its answer), for a batch all of them.
    sent: Vec<Bytes>,
}

impl OwedAnswers {
    pub(crate) fn new(request: Bytes) -> Self {
        let batch = request
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'[');
        Self {
            request,
            batch,
            sent: Vec::new(),
        }
    }

    fn record(&mut self, data: &Bytes) {
        if !self.batch {
            self.sent.clear();
        }
        self.sent.push(data.clone());
    }

    /// The SSE events answering every request of the POST not answered on the stream so far
    /// (`None`: none is owed).
    fn tail(&self) -> Option<Bytes> {
        let (messages, _) = crate::rpc_peek::calls_with_arguments(&self.request);
        let crate::rpc_peek::Messages::Calls(calls) = messages else {
            return None;
        };
        let answered = answered_ids(&self.sent);
        let mut tail = String::new();
        for id in calls
            .into_iter()
            .filter(|c| c.method.is_some())
            .filter_map(|c| c.id)
            .filter(|id| !answered.contains(id))
        {
            let answer = serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": ACCESS_REVOKED_CODE,
                    "message": "access revoked: the request was cancelled",
                },
            });
            tail.push_str("event: message\ndata: ");
            tail.push_str(&answer.to_string());
            tail.push_str("\n\n");
        }
        (!tail.is_empty()).then(|| Bytes::from(tail))
    }
}

/// The ids of the JSON-RPC responses (and errors) carried by the SSE events in `frames`.
fn answered_ids(frames: &[Bytes]) -> Vec<serde_json::Value> {
    let mut ids = Vec::new();
    let text: String = frames
        .iter()
        .map(|f| String::from_utf8_lossy(f))
        .collect::<Vec<_>>()
        .concat();
    // An event is its `data:` lines joined by newlines (the SSE format); events end at a blank
    // line.
    for event in text.replace("\r\n", "\n").split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&data.join("\n")) else {
            continue;
        };
        let messages = match value {
            serde_json::Value::Array(messages) => messages,
            message => vec![message],
        };
        for mut message in messages {
            let Some(object) = message.as_object_mut() else {
                continue;
            };
            let is_response = !object.contains_key("method")
                && (object.contains_key("result") || object.contains_key("error"));
            if is_response && let Some(id) = object.remove("id") {
                ids.push(id);
            }
        }
    }
    ids
}

/// A response body that ends when its request's token is revoked (RV-18: open GET and POST SSE
/// streams close), and keeps the request registered while it streams. A POST's stream ends
/// with an error answer to each of its requests not answered yet ([`ACCESS_REVOKED_CODE`]).
pub(crate) struct RevocableBody {
    inner: Body,
    ended: bool,
    guard: LiveGuard,
    owed: Option<OwedAnswers>,
}

impl RevocableBody {
    pub(crate) fn new(inner: Body, guard: LiveGuard, owed: Option<OwedAnswers>) -> Self {
        Self {
            inner,
            ended: false,
            guard,
            owed,
        }
    }

    fn end(&mut self) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.ended = true;
        tracing::debug!("response stream ended: token revoked");
        match self.owed.take().and_then(|owed| owed.tail()) {
            Some(tail) => Poll::Ready(Some(Ok(http_body::Frame::data(tail)))),
            None => Poll::Ready(None),
        }
    }
}

impl http_body::Body for RevocableBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        // Looked at before every frame: nothing more is sent once the token is revoked.
        if this.guard.wake().is_revoked() {
            return this.end();
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(ready) = &frame {
            if let (Some(owed), Some(Ok(frame))) = (this.owed.as_mut(), ready)
                && let Some(data) = frame.data_ref()
            {
                owed.record(data);
            }
            return frame;
        }
        // The body waits: be woken by a revocation as well as by the next frame.
        if this.guard.wake().poll_revoked(cx) {
            return this.end();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.owed.is_some() {
            // The answers owed after a cut are not counted in the inner body's length.
            return http_body::SizeHint::default();
        }
        self.inner.size_hint()
    }
}

/// Polls `work` until it completes, or until the request's token is revoked (`None`; `work` is
/// dropped, so a handler running inside it stops).
pub(crate) async fn unless_revoked<F: Future>(work: F, wake: &RequestWake) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if wake.poll_revoked(cx) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// As [`unless_revoked`], for work on a task of its own (a handler's tool call): waits on the
/// token's shared `signal`.
#[cfg(feature = "rmcp")]
pub(crate) async fn unless_signalled<F: Future>(
    work: F,
    signal: &RevocationSignal,
) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    let mut revoked = std::pin::pin!(signal.revoked());
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if revoked.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use ema_grant::AccessTokenIssuer;
    use ema_grant::revocation::{MemoryLedger, RevocationKind};
    use ema_id_jag::{ClientId, Issuer, Resource};
    use ema_jose::{Algorithm, KeyRing, SigningKey};

    const AS: &str = "https://auth.tasks.example";
    const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

    fn token(subject: &str, iat: UnixTime) -> Principal {
        let keys = Arc::new(KeyRing::new(
            SigningKey::generate(Algorithm::ES256, None).unwrap(),
        ));
        let issuer = AccessTokenIssuer::new(Issuer::new(AS), keys);
        let claims = issuer
            .claims(
                subject.into(),
                Resource::new("https://mcp.tasks.example/mcp"),
                ClientId::new("tc_5f2a91"),
                iat,
            )
            .unwrap();
        Principal::new(claims)
    }

    /// A mirror of `ledger`, synced at `now`, telling `registry` of its changes.
    fn mirror_for(registry: &Arc<LiveRegistry>) -> (MemoryLedger, LedgerMirror) {
        let ledger = MemoryLedger::new();
        let mirror = LedgerMirror::new();
        let listener: Arc<dyn MirrorListener> = registry.clone();
        mirror.subscribe(&listener);
        pollster::block_on(mirror.sync(&ledger, NOW)).unwrap();
        (ledger, mirror)
    }

    fn live_tokens(registry: &LiveRegistry) -> usize {
        registry
            .shards
            .iter()
            .map(|shard| {
                lock(shard)
                    .subjects
                    .values()
                    .flat_map(HashMap::values)
                    .map(|entry| entry.tokens.len())
                    .sum::<usize>()
            })
            .sum()
    }

    #[test]
    fn requests_of_one_token_share_one_signal_and_a_watermark_fires_only_older_tokens() {
        let registry = Arc::new(LiveRegistry::new(None));
        let (ledger, mirror) = mirror_for(&registry);
        let old = token("u-alice", NOW);
        let (_g1, first) = registry.register(&old, Some("s-1"), NOW);
        let (_g2, second) = registry.register(&old, Some("s-1"), NOW);
        assert_eq!(
            live_tokens(&registry),
            1,
            "one entry for the token's two requests"
        );
        // Positive controls: a later token of the same subject, and another subject.
        let newer = token("u-alice", NOW.plus(10));
        let (_g3, later) = registry.register(&newer, None, NOW.plus(10));
        let bob = token("u-bob", NOW);
        let (_g4, other) = registry.register(&bob, None, NOW);
        let before = registry.changes();
        let scope = RevocationScope::local(AS);
        ledger.revoke_subject_now(&scope, "u-alice", NOW.plus(5), RevocationKind::Admin, NOW);
        pollster::block_on(mirror.sync(&ledger, NOW.plus(6))).unwrap();
        assert!(registry.changes() > before, "the change was counted");
        assert!(first.is_revoked() && second.is_revoked());
        assert!(!later.is_revoked(), "issued after the watermark");
        assert!(!other.is_revoked(), "another subject");
    }

    /// RV-18: the layer's own wait (the handler's future, then the body) sees a revocation
    /// that came before its first poll, and is woken by one that comes while it waits; the
    /// requests of another token are not.
    #[test]
    fn the_layers_wait_ends_on_a_revocation_before_or_during_it() {
        use std::task::Wake;
        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let registry = Arc::new(LiveRegistry::new(None));
        let (ledger, mirror) = mirror_for(&registry);
        let alice = token("u-alice", NOW);
        let bob = token("u-bob", NOW);
        let (early, _) = registry.register(&alice, Some("s-1"), NOW);
        let (waiting, _) = registry.register(&alice, Some("s-1"), NOW);
        let (control, _) = registry.register(&bob, None, NOW);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = std::task::Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        // A handler that never finishes, raced against the revocation.
        let mut pending = Box::pin(unless_revoked(std::future::pending::<()>(), waiting.wake()));
        assert!(pending.as_mut().poll(&mut cx).is_pending());
        let mut other = Box::pin(unless_revoked(std::future::pending::<()>(), control.wake()));
        assert!(other.as_mut().poll(&mut cx).is_pending());
        ledger.deny_token_now(AS, alice.claims().jti.as_str(), NOW.plus(3600), NOW);
        pollster::block_on(mirror.sync(&ledger, NOW.plus(1))).unwrap();
        assert!(
            flag.0.load(Ordering::SeqCst),
            "the waiting request was woken"
        );
        assert_eq!(pending.as_mut().poll(&mut cx), Poll::Ready(None));
        // Revoked before its first poll: ends at once, even if the work is ready.
        let mut late = Box::pin(unless_revoked(std::future::ready(7), early.wake()));
        assert_eq!(
            late.as_mut().poll(&mut cx),
            Poll::Ready(Some(7)),
            "finished work is kept"
        );
        let mut late = Box::pin(unless_revoked(std::future::pending::<()>(), early.wake()));
        assert_eq!(late.as_mut().poll(&mut cx), Poll::Ready(None));
        assert!(
            other.as_mut().poll(&mut cx).is_pending(),
            "bob's token is not revoked"
        );
        // Deregistration removes exactly the dropped request.
        drop(pending);
        drop(waiting);
        let shard = registry.shard(early.shard);
        let requests = &shard.subjects[AS]["u-alice"].tokens[alice.claims().jti.as_str()].requests;
        assert_eq!(requests.len(), 1);
        assert!(Arc::ptr_eq(&requests[0], &early.wake));
    }

    #[test]
    fn a_token_fired_then_let_through_again_gets_a_fresh_signal() {
        let registry = Arc::new(LiveRegistry::new(None));
        let (ledger, mirror) = mirror_for(&registry);
        let alice = token("u-alice", NOW);
        let (guard, first) = registry.register(&alice, None, NOW);
        ledger.deny_token_now(AS, alice.claims().jti.as_str(), NOW.plus(3600), NOW);
        pollster::block_on(mirror.sync(&ledger, NOW.plus(1))).unwrap();
        assert!(first.is_revoked());
        drop(guard);
        // The registry does not judge tokens (the bearer layer's mirror check does): a
        // request it is given after the firing starts unrevoked, and the first stays fired.
        let (_guard, again) = registry.register(&alice, None, NOW.plus(2));
        assert!(!again.is_revoked());
        assert!(first.is_revoked());
    }

    #[test]
    fn sweeps_drop_idle_tokens_and_keep_live_and_recently_used_ones() {
        let registry = Arc::new(LiveRegistry::new(None));
        let sweep_all = |registry: &LiveRegistry| {
            for shard in &registry.shards {
                lock(shard).sweep(NOW.as_secs());
            }
        };
        let busy = token("u-busy", NOW);
        let (_held, signal) = registry.register(&busy, None, NOW);
        let regular = token("u-regular", NOW);
        for i in 0..8 {
            drop(registry.register(&token(&format!("u-idle-{i}"), NOW), None, NOW));
        }
        drop(registry.register(&regular, None, NOW));
        assert_eq!(live_tokens(&registry), 10);
        // The first sweep keeps what was used since the previous one...
        sweep_all(&registry);
        assert_eq!(live_tokens(&registry), 10);
        // ...and the next one drops what stayed idle in between.
        drop(registry.register(&regular, None, NOW));
        sweep_all(&registry);
        assert_eq!(
            live_tokens(&registry),
            2,
            "the busy token and the regular one"
        );
        assert!(!signal.is_revoked());
        // An expired token goes at the next sweep even if it was just used.
        let expired = NOW.plus(regular.claims().exp.as_secs() - NOW.as_secs());
        drop(registry.register(&regular, None, NOW));
        for shard in &registry.shards {
            lock(shard).sweep(expired.as_secs());
        }
        assert_eq!(
            live_tokens(&registry),
            1,
            "the busy token, still being served"
        );
    }

    /// The error answers in an SSE tail, by id.
    fn owed_ids(owed: &OwedAnswers) -> Vec<serde_json::Value> {
        let Some(tail) = owed.tail() else {
            return Vec::new();
        };
        let text = std::str::from_utf8(&tail).unwrap();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|event| {
                let data = event
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap();
                let answer: serde_json::Value = serde_json::from_str(data).unwrap();
                assert_eq!(answer["error"]["code"], ACCESS_REVOKED_CODE);
                answer["id"].clone()
            })
            .collect()
    }

    fn sse(data: &str) -> Bytes {
        Bytes::from(format!("id: 0\ndata: {data}\n\n"))
    }

    // RV-18: a POST's stream cut by a revocation answers each of its requests not answered on
    // it yet, and nothing else: not notifications, not the client's own responses, not a
    // request already answered, not a body that is not JSON-RPC.
    #[test]
    fn rv18_a_cut_stream_owes_an_answer_to_each_unanswered_request() {
        let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#;
        let mut owed = OwedAnswers::new(Bytes::from(call));
        assert_eq!(owed_ids(&owed), vec![serde_json::json!(7)]);
        // A notification on the stream answers nothing; the answer does.
        owed.record(&sse(
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"error":1}}"#,
        ));
        assert_eq!(owed_ids(&owed), vec![serde_json::json!(7)]);
        owed.record(&sse(r#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#));
        assert!(owed.tail().is_none());
        // An error answer counts too, and a string id is kept as it is.
        let mut owed = OwedAnswers::new(Bytes::from(
            r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/list"}"#,
        ));
        assert_eq!(owed_ids(&owed), vec![serde_json::json!("a-1")]);
        owed.record(&sse(
            r#"{"jsonrpc":"2.0","id":"a-1","error":{"code":-32601,"message":"no"}}"#,
        ));
        assert!(owed.tail().is_none());
        // A batch: the request answered on the stream is not answered again; the notification
        // and the client's response to a server request in it are owed nothing.
        let batch = r#" [{"jsonrpc":"2.0","id":1,"method":"tools/list"},
            {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}},
            {"jsonrpc":"2.0","method":"notifications/initialized"},
            {"jsonrpc":"2.0","id":9,"result":{}}]"#;
        let mut owed = OwedAnswers::new(Bytes::from(batch));
        owed.record(&sse(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#));
        owed.record(&Bytes::from_static(b": keep-alive\n\n"));
        assert_eq!(owed_ids(&owed), vec![serde_json::json!(2)]);
        // Bodies that call nothing are owed nothing.
        for body in [
            "not json",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            "",
        ] {
            assert!(
                OwedAnswers::new(Bytes::from(body)).tail().is_none(),
                "{body}"
            );
        }
    }
}
