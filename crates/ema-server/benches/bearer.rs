//! The bearer layer's cost on a warm token cache, without sockets or HTTP parsing: one MCP
//! `tools/call` body POSTed through `protect` (token validated once, then served from the cache,
//! tool scopes configured so the body is inspected) against the same route with the principal
//! inserted by `axum::Extension`, as the reference server without authentication does; and the
//! same call under the reference server's per-method scope rules; and the warm-cache call behind
//! the tool-call guard (`ToolCallGuardLayer`) with an authorizer that allows everything, so that
//! the guard's own cost (reading the arguments, converting the principal, asking the authorizer,
//! logging the decision) shows against the unguarded route; and the warm-cache call with the
//! revocation check on (RV-15: a mirror of 10,000 revoked subjects and 10,000 denied tokens). All go through
//! `tower::ServiceExt::oneshot` on a current-thread runtime. See docs/benchmarks.md.
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::hint::black_box;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use ema_grant::revocation::{LedgerMirror, MemoryLedger, RevocationKind, RevocationScope};
use ema_grant::{AccessTokenIssuer, AccessTokenValidator};
use ema_id_jag::{ClientId, Issuer, Resource, ScopeSet};
use ema_jose::{Algorithm, FixedClock, KeyRing, SigningKey, StaticKeySource, UnixTime};
use ema_server::authz::{
    BoxFuture, Decision, Principal as AuthzPrincipal, SessionId, ToolCall, ToolCallAuthorizer,
    ToolDefinition,
};
use ema_server::{BearerAuth, NO_SCOPES, Principal, ToolCallGuardLayer, protect};
use tower::ServiceExt as _;

const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
const AS: &str = "https://auth.tasks.example";
const RESOURCE: &str = "https://mcp.tasks.example/mcp";
const CALL: &str =
    r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;

/// Allows every call at once: what is measured is the guard, not a policy engine.
struct AllowAll;

impl ToolCallAuthorizer for AllowAll {
    fn authorize<'a>(&'a self, _: &'a AuthzPrincipal, _: &'a ToolCall) -> BoxFuture<'a, Decision> {
        Box::pin(async { Decision::allow(vec!["all".into()], Vec::new()) })
    }

    fn visible_tools<'a>(
        &'a self,
        _: &'a AuthzPrincipal,
        _: Option<&'a SessionId>,
        tools: &'a [ToolDefinition],
    ) -> BoxFuture<'a, Vec<bool>> {
        Box::pin(async move { vec![true; tools.len()] })
    }
}

fn handler() -> Router {
    Router::new().route(
        "/mcp",
        post(|who: Principal, body: axum::body::Bytes| async move {
            black_box((who.subject().len(), body.len()));
            "ok"
        }),
    )
}

fn bench(c: &mut Criterion) {
    let keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ));
    let issuer = AccessTokenIssuer::new(Issuer::new(AS), keys.clone());
    let mut claims = issuer
        .claims(
            "u-17".into(),
            Resource::new(RESOURCE),
            ClientId::new("tc_5f2a91"),
            NOW,
        )
        .unwrap();
    claims.scope = Some(ScopeSet::parse("tasks.read").unwrap());
    claims.groups = vec!["eng".into()];
    let token = issuer.sign(&claims).unwrap();
    let auth = BearerAuth::builder(RESOURCE, AS)
        .jwks(keys.jwks())
        .clock(Arc::new(FixedClock(NOW)))
        .require_scopes(["tasks.read"])
        .tools(["whoami", "add_task"])
        .tool_scopes("add_task", ["tasks.write"])
        .build()
        .unwrap();
    let protected = protect(handler(), auth.clone());
    // The same layer with the revocation check on (RV-15): a mirror holding 10,000 revoked
    // subjects and 10,000 denied tokens, none of them this one.
    let ledger = MemoryLedger::new();
    let local = RevocationScope::local(AS);
    for i in 0..10_000 {
        let subject = format!("gone-{i}");
        ledger.revoke_subject_now(&local, &subject, NOW, RevocationKind::Admin, NOW);
        ledger.deny_token_now(AS, &format!("jti-{i}"), NOW.plus(300), NOW);
    }
    let mirror = Arc::new(LedgerMirror::new());
    pollster::block_on(mirror.sync(&ledger, NOW)).unwrap();
    let revocation = protect(
        handler(),
        BearerAuth::builder(RESOURCE, AS)
            .jwks(keys.jwks())
            .clock(Arc::new(FixedClock(NOW)))
            .require_scopes(["tasks.read"])
            .tools(["whoami", "add_task"])
            .tool_scopes("add_task", ["tasks.write"])
            .revocation_mirror(mirror)
            .build()
            .unwrap(),
    );
    let guard = ToolCallGuardLayer::new(RESOURCE, Arc::new(AllowAll));
    let guarded = protect(handler().layer(guard), auth);
    // The reference MCP server's rules: scopes per JSON-RPC method with a default, and per tool.
    let by_method = BearerAuth::builder(RESOURCE, AS)
        .jwks(keys.jwks())
        .clock(Arc::new(FixedClock(NOW)))
        .default_method_scopes(["tasks.read"])
        .method_scopes("initialize", NO_SCOPES)
        .method_scopes("ping", NO_SCOPES)
        .method_scopes("tools/list", ["tasks.read"])
        .tools(["whoami", "add_task", "complete_task"])
        .tool_scopes("add_task", ["tasks.write"])
        .tool_scopes("complete_task", ["tasks.write"])
        .build()
        .unwrap();
    let by_method = protect(handler(), by_method);
    let validator = AccessTokenValidator::new(
        Issuer::new(AS),
        Resource::new(RESOURCE),
        StaticKeySource::new().with_issuer(AS, keys.jwks()),
    );
    let principal = Principal::new(pollster::block_on(validator.validate(&token, NOW)).unwrap());
    let open = handler().layer(axum::Extension(principal));
    let authorization = format!("Bearer {token}");
    let request = |auth: Option<&str>| {
        let mut req = http::Request::post("/mcp").header("content-type", "application/json");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        req.body(Body::from(CALL)).unwrap()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Warm the cache, and check both answer 200.
    for (router, auth) in [
        (&protected, Some(authorization.as_str())),
        (&revocation, Some(authorization.as_str())),
        (&guarded, Some(authorization.as_str())),
        (&by_method, Some(authorization.as_str())),
        (&open, None),
    ] {
        let status = rt
            .block_on(router.clone().oneshot(request(auth)))
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let mut group = c.benchmark_group("bearer_layer");
    group.bench_function("tools_call_auth_off", |b| {
        b.iter(|| rt.block_on(open.clone().oneshot(request(None))).unwrap());
    });
    group.bench_function("tools_call_bearer_cached", |b| {
        b.iter(|| {
            rt.block_on(protected.clone().oneshot(request(Some(&authorization))))
                .unwrap()
        });
    });
    group.bench_function("tools_call_bearer_cached_revocation_check", |b| {
        b.iter(|| {
            rt.block_on(revocation.clone().oneshot(request(Some(&authorization))))
                .unwrap()
        });
    });
    group.bench_function("tools_call_bearer_cached_guarded", |b| {
        b.iter(|| {
            rt.block_on(guarded.clone().oneshot(request(Some(&authorization))))
                .unwrap()
        });
    });
    group.bench_function("tools_call_bearer_cached_method_scopes", |b| {
        b.iter(|| {
            rt.block_on(by_method.clone().oneshot(request(Some(&authorization))))
                .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
