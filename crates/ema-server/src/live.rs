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
//!   body being streamed (an SSE stream, GET or POST) ends;
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
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

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

#[derive(Debug)]
struct LiveRequest {
    token: TokenRef,
    revoked: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct SubjectLive {
    requests: HashMap<u64, LiveRequest>,
    /// Session id → the latest token seen using it.
    sessions: HashMap<String, TokenRef>,
}

impl SubjectLive {
    fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.sessions.is_empty()
    }
}

/// How many registrations apart the registry drops the entries of subjects with nothing live.
const SWEEP_EVERY: u64 = 4096;

/// Issuer → subject → live entries.
type Subjects = HashMap<String, HashMap<String, SubjectLive>>;

/// The registry of live requests and sessions (RV-18), one per [`crate::BearerAuth`] with a
/// revocation mirror.
pub(crate) struct LiveRegistry {
    subjects: Mutex<Subjects>,
    next: AtomicU64,
    closer: Option<Arc<dyn SessionCloser>>,
}

impl fmt::Debug for LiveRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveRegistry")
            .field("subjects", &self.lock().len())
            .field("session_closer", &self.closer.is_some())
            .finish()
    }
}

impl LiveRegistry {
    pub(crate) fn new(closer: Option<Arc<dyn SessionCloser>>) -> Self {
        Self {
            subjects: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            closer,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subjects> {
        // Every update leaves the maps consistent, so a poisoned lock is safe to reuse.
        self.subjects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a request let through with `principal`'s token, in MCP session `session` if
    /// it names one; the entry lives as long as the returned guard.
    pub(crate) fn register(
        self: &Arc<Self>,
        principal: &Principal,
        session: Option<&str>,
        now: UnixTime,
    ) -> (LiveGuard, RevocationSignal) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(false);
        let token = TokenRef(principal.clone());
        let mut subjects = self.lock();
        if id.is_multiple_of(SWEEP_EVERY) {
            for by_subject in subjects.values_mut() {
                by_subject.retain(|_, entry| !entry.is_empty());
            }
            subjects.retain(|_, by_subject| !by_subject.is_empty());
        }
        with_subject(&mut subjects, principal, |entry| {
            // Sessions last only as long as a token that may still use them.
            if !entry.sessions.is_empty() {
                entry.sessions.retain(|_, t| t.exp() > now.as_secs());
            }
            if let Some(session) = session {
                match entry.sessions.get_mut(session) {
                    Some(latest) => *latest = token.clone(),
                    None => {
                        entry.sessions.insert(session.to_owned(), token.clone());
                    }
                }
            }
            entry
                .requests
                .insert(id, LiveRequest { token, revoked: tx });
        });
        let guard = LiveGuard {
            registry: Arc::clone(self),
            principal: principal.clone(),
            id,
        };
        (guard, RevocationSignal(rx))
    }

    /// Remembers that `principal`'s subject uses MCP session `session` (the session id a
    /// response assigned).
    pub(crate) fn add_session(&self, principal: &Principal, session: &str) {
        with_subject(&mut self.lock(), principal, |entry| {
            entry
                .sessions
                .insert(session.to_owned(), TokenRef(principal.clone()));
        });
    }

    /// Forgets MCP session `session` (the client ended it).
    pub(crate) fn forget_session(&self, principal: &Principal, session: &str) {
        let claims = principal.claims();
        let mut subjects = self.lock();
        if let Some(entry) = subjects
            .get_mut(claims.iss.as_str())
            .and_then(|m| m.get_mut(claims.sub.as_str()))
        {
            entry.sessions.remove(session);
        }
    }

    /// Fires the signal of every live request of (`issuer`, `subject`) whose token the mirror
    /// now revokes, and drops (returning them) its sessions last used with a revoked token.
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
        for request in entry.requests.values() {
            if revoked(&request.token) {
                request.revoked.send_replace(true);
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
        let mut closed = Vec::new();
        {
            let mut subjects = self.lock();
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
                    if let Some(entry) = subjects
                        .get_mut(issuer.as_str())
                        .and_then(|m| m.get_mut(subject.as_str()))
                    {
                        Self::revoke(mirror, issuer, subject, entry, &mut closed);
                    }
                }
                // One token: only the subjects that hold it (a scan of this issuer's live
                // entries, which are few next to the requests they serve).
                LedgerChange::TokenDenied { issuer, jti, .. } => {
                    if let Some(by_subject) = subjects.get_mut(issuer.as_str()) {
                        for (subject, entry) in by_subject.iter_mut() {
                            let holds = entry
                                .requests
                                .values()
                                .any(|r| r.token.jti() == jti.as_str())
                                || entry.sessions.values().any(|t| t.jti() == jti.as_str());
                            if holds {
                                Self::revoke(mirror, issuer, subject, entry, &mut closed);
                            }
                        }
                    }
                }
                // Enabling never revives anything; IdP-space entries concern the AS.
                _ => {}
            }
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
    id: u64,
}

impl fmt::Debug for LiveGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveGuard").field("id", &self.id).finish()
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let claims = self.principal.claims();
        let mut subjects = self.registry.lock();
        let Some(by_subject) = subjects.get_mut(claims.iss.as_str()) else {
            return;
        };
        // The emptied entry stays for the subject's next request; `register` sweeps empty
        // entries now and then.
        if let Some(entry) = by_subject.get_mut(claims.sub.as_str()) {
            entry.requests.remove(&self.id);
        }
    }
}

/// A response body that ends when its request's token is revoked (RV-18: open GET and POST SSE
/// streams close), and keeps the request registered while it streams.
pub(crate) struct RevocableBody {
    inner: Body,
    revoked: Pin<Box<dyn Future<Output = ()> + Send>>,
    ended: bool,
    _guard: LiveGuard,
}

impl RevocableBody {
    pub(crate) fn new(inner: Body, signal: &RevocationSignal, guard: LiveGuard) -> Self {
        Self {
            inner,
            revoked: Box::pin(signal.revoked()),
            ended: false,
            _guard: guard,
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
        if self.ended {
            return Poll::Ready(None);
        }
        if self.revoked.as_mut().poll(cx).is_ready() {
            self.ended = true;
            tracing::debug!("response stream ended: token revoked");
            return Poll::Ready(None);
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Polls `work` until it completes, or until `signal` fires (`None`; `work` is dropped, so a
/// handler running inside it stops).
pub(crate) async fn unless_revoked<F: Future>(
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
