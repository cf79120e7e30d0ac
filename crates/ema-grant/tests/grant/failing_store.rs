//! Fail closed: when a replay store, a key source or a subject directory cannot answer, no
//! token is issued (503 `temporarily_unavailable`, never a 200), and nothing is consumed that
//! a later, healthy attempt would need.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ema_grant::{InMemoryReplayStore, ReplayError, ReplayKey, ReplayKind, ReplayStore, Seen};
use ema_id_jag::{IdJagClaims, LocalSubject, SubjectError, SubjectResolver, TrustedIssuer};
use ema_jose::{Algorithm, KeyLookupError, KeySource, StaticKeySource, UnixTime, VerifyingKey};
use serde_json::json;

use crate::support::*;

/// A replay store that always fails with `error`.
#[derive(Debug)]
struct BrokenStore {
    error: ReplayError,
}

impl ReplayStore for BrokenStore {
    fn check_and_insert(
        &self,
        _key: ReplayKey<'_>,
        _expires_at: UnixTime,
        _now: UnixTime,
    ) -> impl Future<Output = Result<Seen, ReplayError>> + Send {
        std::future::ready(Err(self.error.clone()))
    }
}

/// A working store that fails only on its `n`-th call (1-based), recording what it was asked.
#[derive(Debug)]
struct FailsOnNth {
    inner: InMemoryReplayStore,
    n: usize,
    calls: AtomicUsize,
    kinds: Mutex<Vec<ReplayKind>>,
}

impl FailsOnNth {
    fn new(n: usize) -> Self {
        Self {
            inner: InMemoryReplayStore::new(1_000),
            n,
            calls: AtomicUsize::new(0),
            kinds: Mutex::new(Vec::new()),
        }
    }
}

impl ReplayStore for FailsOnNth {
    fn check_and_insert(
        &self,
        key: ReplayKey<'_>,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> impl Future<Output = Result<Seen, ReplayError>> + Send {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.kinds.lock().unwrap().push(key.kind);
        std::future::ready(if call == self.n {
            Err(ReplayError::Unavailable {
                reason: "connection reset".into(),
            })
        } else {
            self.inner.insert_now(key, expires_at, now)
        })
    }
}

/// A key source that can be switched off (a JWKS fetch failing with nothing cached).
#[derive(Debug)]
struct SwitchableKeys {
    inner: StaticKeySource,
    down: AtomicBool,
}

impl KeySource for SwitchableKeys {
    fn resolve(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> impl Future<Output = Result<Arc<VerifyingKey>, KeyLookupError>> + Send {
        std::future::ready(if self.down.load(Ordering::SeqCst) {
            Err(KeyLookupError::Unavailable {
                reason: "JWKS fetch timed out".into(),
            })
        } else {
            self.inner.resolve_now(issuer, kid, alg)
        })
    }
}

/// A subject directory that can be switched off.
#[derive(Debug)]
struct SwitchableDirectory {
    down: AtomicBool,
}

impl SubjectResolver for SwitchableDirectory {
    fn resolve(
        &self,
        claims: &IdJagClaims,
        _issuer: &TrustedIssuer,
    ) -> impl Future<Output = Result<LocalSubject, SubjectError>> + Send {
        std::future::ready(if self.down.load(Ordering::SeqCst) {
            Err(SubjectError::Unavailable {
                reason: "LDAP unreachable".into(),
            })
        } else {
            Ok(LocalSubject::new(format!("jit-{}", claims.sub)))
        })
    }
}

fn assert_unavailable(reply: &Reply) {
    assert_eq!(
        (reply.status, reply.error()),
        (503, "temporarily_unavailable"),
        "{}",
        reply.raw
    );
}

fn send<G>(grant: &G, req: &Req) -> Reply
where
    G: Handle,
{
    let reply = Reply::check(grant.handle_at_now(&req.build()));
    reply.assert_no_leak(&req.sensitive());
    reply
}

/// Both grants, called the same way.
trait Handle {
    fn handle_at_now(&self, req: &http::Request<Vec<u8>>) -> http::Response<Vec<u8>>;
}

impl<K: KeySource, S: SubjectResolver, R: ReplayStore> Handle
    for ema_grant::JwtBearerGrant<K, S, R>
{
    fn handle_at_now(&self, req: &http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
        pollster::block_on(self.handle(req, NOW))
    }
}

impl<K: KeySource, P: ema_grant::AdminPolicy, R: ReplayStore> Handle
    for ema_grant::TokenExchangeGrant<K, P, R>
{
    fn handle_at_now(&self, req: &http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
        pollster::block_on(self.handle(req, NOW))
    }
}

#[test]
fn an_always_failing_replay_store_never_lets_a_token_out() {
    let fx = Fx::new();
    for error in [
        ReplayError::Unavailable {
            reason: "down".into(),
        },
        ReplayError::Full,
    ] {
        let grant = fx.jwt_bearer(fx.as_key_source(), directory(), BrokenStore { error });
        // Basic: the store is first consulted for the ID-JAG's jti (step 15).
        assert_unavailable(&send(&grant, &Req::bearer(&fx.jag(json!({})))));
        // private_key_jwt: the client assertion's jti (step 2).
        let pk = Req::bearer(&fx.jag(json!({"client_id": PK_CLIENT})))
            .client_assertion(&fx.client_assertion(json!({})));
        assert_unavailable(&send(&grant, &pk));
        // DPoP: the proof's jti.
        let dpop = Req::bearer(&fx.jag(json!({}))).dpop(&fx.dpop_proof(
            &fx.keys.dpop,
            TOKEN_ENDPOINT,
            json!({}),
        ));
        assert_unavailable(&send(&grant, &dpop));
        // A request that is bad anyway is refused for its own reason, never issued.
        let bad = send(&grant, &Req::bearer(&fx.jag(json!({"aud": OTHER_AS}))));
        assert_eq!(bad.error(), "invalid_grant");
    }
}

#[test]
fn a_store_failing_on_the_nth_call_fails_closed_and_burns_nothing() {
    let fx = Fx::new();
    // One request consults the store three times: client assertion, DPoP proof, ID-JAG.
    let request = |jag: &str| {
        Req::bearer(jag)
            .client_assertion(&fx.client_assertion(json!({})))
            .dpop(&fx.dpop_proof(&fx.keys.dpop, TOKEN_ENDPOINT, json!({})))
    };
    for n in 1..=3 {
        let store = Arc::new(FailsOnNth::new(n));
        let grant = fx.jwt_bearer(fx.as_key_source(), directory(), Arc::clone(&store));
        let jag = fx.jag(json!({"client_id": PK_CLIENT}));
        assert_unavailable(&send(&grant, &request(&jag)));
        // The ID-JAG was not consumed: a retry with fresh credentials succeeds, once.
        let retry = send(&grant, &request(&jag));
        assert_eq!(retry.status, 200, "n = {n}: {}", retry.raw);
        let replay = send(&grant, &request(&jag));
        assert_eq!(
            (replay.status, replay.error()),
            (400, "invalid_grant"),
            "n = {n}"
        );
        // The failing call was the last one of the first request; the retry and the replay
        // made all three each.
        let kinds = store.kinds.lock().unwrap().clone();
        assert_eq!(kinds.len(), n + 6, "n = {n}: {kinds:?}");
        assert_eq!(kinds.get(n..n + 3), Some(&ALL_THREE[..]), "n = {n}");
    }
    // n = 4: the first request is untouched, and shows the order of the store calls.
    let store = Arc::new(FailsOnNth::new(4));
    let grant = fx.jwt_bearer(fx.as_key_source(), directory(), Arc::clone(&store));
    assert_eq!(
        send(&grant, &request(&fx.jag(json!({"client_id": PK_CLIENT})))).status,
        200
    );
    assert_eq!(*store.kinds.lock().unwrap(), ALL_THREE);
}

/// Client authentication, then the DPoP proof, then the ID-JAG (validation order steps 2, 11, 15 in `docs/requirements.md`).
const ALL_THREE: [ReplayKind; 3] = [
    ReplayKind::ClientAssertion,
    ReplayKind::DpopProof,
    ReplayKind::IdJag,
];

#[test]
fn token_exchange_with_a_failing_store() {
    let fx = Fx::new();
    let grant = fx.token_exchange(
        fx.idp_key_source(),
        BrokenStore {
            error: ReplayError::Unavailable {
                reason: "down".into(),
            },
        },
    );
    // The IdP needs its store only for client assertions and DPoP proofs; a secret client
    // without DPoP never touches it.
    assert_eq!(
        send(&grant, &Req::exchange(&fx.id_token(json!({})))).status,
        200
    );
    let dpop = Req::exchange(&fx.id_token(json!({}))).dpop(&fx.dpop_proof(
        &fx.keys.dpop,
        IDP_TOKEN_ENDPOINT,
        json!({}),
    ));
    assert_unavailable(&send(&grant, &dpop));
    let pk = Req::exchange(&fx.id_token(json!({"aud": IDP_PK_CLIENT}))).client_assertion(
        &fx.client_assertion(json!({"iss": IDP_PK_CLIENT, "sub": IDP_PK_CLIENT, "aud": IDP})),
    );
    assert_unavailable(&send(&grant, &pk));
}

#[test]
fn unavailable_issuer_keys_give_503_and_burn_nothing() {
    let fx = Fx::new();
    let keys = Arc::new(SwitchableKeys {
        inner: fx.as_key_source(),
        down: AtomicBool::new(true),
    });
    let grant = fx.jwt_bearer(
        Arc::clone(&keys),
        directory(),
        InMemoryReplayStore::new(100),
    );
    let jag = fx.jag(json!({}));
    assert_unavailable(&send(&grant, &Req::bearer(&jag)));
    keys.down.store(false, Ordering::SeqCst);
    assert_eq!(send(&grant, &Req::bearer(&jag)).status, 200);

    // The IdP: its own keys for ID tokens.
    let idp_keys = Arc::new(SwitchableKeys {
        inner: fx.idp_key_source(),
        down: AtomicBool::new(true),
    });
    let tx = fx.token_exchange(Arc::clone(&idp_keys), InMemoryReplayStore::new(100));
    let req = Req::exchange(&fx.id_token(json!({})));
    assert_unavailable(&send(&tx, &req));
    idp_keys.down.store(false, Ordering::SeqCst);
    assert_eq!(send(&tx, &req).status, 200);
}

#[test]
fn unavailable_subject_directory_gives_503_and_burns_nothing() {
    let fx = Fx::new();
    let subjects = Arc::new(SwitchableDirectory {
        down: AtomicBool::new(true),
    });
    let grant = fx.jwt_bearer(
        fx.as_key_source(),
        Arc::clone(&subjects),
        InMemoryReplayStore::new(100),
    );
    let jag = fx.jag(json!({}));
    assert_unavailable(&send(&grant, &Req::bearer(&jag)));
    subjects.down.store(false, Ordering::SeqCst);
    let reply = send(&grant, &Req::bearer(&jag));
    assert_eq!(reply.status, 200, "{}", reply.raw);
}
