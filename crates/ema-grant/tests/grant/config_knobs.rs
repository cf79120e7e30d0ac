//! The time and algorithm knobs an operator sets (D-7, D-26): clock leeway at every verifier
//! (ID-JAGs at the authorization server, client assertions, ID tokens at the IdP, access
//! tokens) capped at 60 s, algorithm allow-lists, and lifetimes that saturate instead of
//! overflowing. Each refusal has its positive control.

use std::sync::Arc;
use std::time::Duration;

use ema_grant::{
    AccessTokenIssuer, BuildError, ClientCredential, ClientRegistry, InMemoryReplayStore,
    JwtBearerGrant, MAX_ACCESS_TOKEN_LIFETIME, RegisteredClient,
};
use ema_id_jag::{
    ClientId, IdJagIssuer, Issuer, MAX_LIFETIME_SECS, Resource, ResourceConfig, TrustedIssuer,
};
use ema_jose::{Algorithm, AlgorithmSet, JwkSet, TimeOptions, UnixTime};
use serde_json::json;

use crate::support::*;

/// An authorization server trusting the IdP, with [`CLIENT`] (secret) and [`PK_CLIENT`]
/// (`private_key_jwt`), the ID-JAG leeway `jag_leeway` and the client-assertion leeway
/// `client_leeway` (defaults when `None`).
fn as_with(
    fx: &Fx,
    jag_leeway: Option<Duration>,
    client_leeway: Option<Duration>,
) -> JwtBearerGrant {
    let pk = JwkSet::from_keys([fx.keys.client.verifying_key().clone()]);
    let mut clients = ClientRegistry::new([AS, TOKEN_ENDPOINT])
        .with(RegisteredClient::new(
            CLIENT,
            ClientCredential::secret(SECRET),
        ))
        .with(RegisteredClient::new(
            PK_CLIENT,
            ClientCredential::PrivateKeyJwt { keys: Arc::new(pk) },
        ));
    if let Some(leeway) = client_leeway {
        clients = clients.with_leeway(leeway);
    }
    let mut builder = JwtBearerGrant::builder(
        AccessTokenIssuer::new(Issuer::new(AS), fx.keys.as_ring.clone()),
        fx.as_key_source(),
        directory(),
    )
    .trust(TrustedIssuer::new(IDP))
    .resource(ResourceConfig::new(TASKS, ["tasks.read", "tasks.write"]))
    .client_registry(clients)
    .token_endpoint(TOKEN_ENDPOINT)
    .replay_store(InMemoryReplayStore::new(100));
    if let Some(leeway) = jag_leeway {
        builder = builder.leeway(leeway);
    }
    builder.build().unwrap()
}

fn send_as(grant: &JwtBearerGrant, req: &Req) -> Reply {
    Reply::check(pollster::block_on(grant.handle(&req.build(), NOW)))
}

fn send_idp(grant: &TxGrantLike, req: &Req) -> Reply {
    Reply::check(pollster::block_on(grant.handle(&req.build(), NOW)))
}

type TxGrantLike =
    ema_grant::TokenExchangeGrant<ema_jose::StaticKeySource, TestPolicy, InMemoryReplayStore>;

const HUGE: Duration = Duration::from_secs(u64::MAX);

#[test]
fn d7_id_jag_leeway_at_the_authorization_server() {
    let fx = Fx::new();
    // Expired 45 s and 90 s ago (lifetime 300 s).
    let late = |secs: i64| fx.jag(json!({"iat": at(-300 - secs), "exp": at(-secs)}));
    let default = as_with(&fx, None, None);
    let reply = send_as(&default, &Req::bearer(&late(45)));
    assert_eq!((reply.status, reply.error()), (400, "invalid_grant"));
    // Positive control: 60 s of leeway accepts it.
    let wide = as_with(&fx, Some(Duration::from_secs(60)), None);
    assert_eq!(send_as(&wide, &Req::bearer(&late(45))).status, 200);
    // More than 60 s is clamped to 60 s (D-7), and u64::MAX seconds do not overflow.
    let capped = as_with(&fx, Some(HUGE), None);
    let reply = send_as(&capped, &Req::bearer(&late(90)));
    assert_eq!((reply.status, reply.error()), (400, "invalid_grant"));
    assert_eq!(send_as(&capped, &Req::bearer(&late(45))).status, 200);
}

#[test]
fn d7_client_assertion_leeway() {
    let fx = Fx::new();
    let request = |secs: i64| {
        let assertion = fx.client_assertion(json!({"iat": at(-60 - secs), "exp": at(-secs)}));
        Req::bearer(&fx.jag(json!({"client_id": PK_CLIENT}))).client_assertion(&assertion)
    };
    let reply = send_as(&as_with(&fx, None, None), &request(45));
    assert_eq!((reply.status, reply.error()), (401, "invalid_client"));
    assert_eq!(
        send_as(
            &as_with(&fx, None, Some(Duration::from_secs(60))),
            &request(45)
        )
        .status,
        200
    );
    let capped = as_with(&fx, None, Some(HUGE));
    assert_eq!(send_as(&capped, &request(90)).status, 401);
    assert_eq!(send_as(&capped, &request(45)).status, 200);
}

#[test]
fn d7_id_token_leeway_at_the_idp() {
    let fx = Fx::new();
    let late =
        |secs: i64| Req::exchange(&fx.id_token(json!({"iat": at(-600 - secs), "exp": at(-secs)})));
    let idp = || fx.token_exchange_builder(fx.idp_key_source(), InMemoryReplayStore::new(100));
    let reply = send_idp(&idp().build_typed().unwrap(), &late(45));
    assert_eq!((reply.status, reply.error()), (400, "invalid_grant"));
    let wide = idp()
        .id_token_leeway(Duration::from_secs(60))
        .build_typed()
        .unwrap();
    assert_eq!(send_idp(&wide, &late(45)).status, 200);
    let capped = idp().id_token_leeway(HUGE).build_typed().unwrap();
    assert_eq!(send_idp(&capped, &late(90)).status, 400);
    assert_eq!(send_idp(&capped, &late(45)).status, 200);
}

#[test]
fn d26_id_token_algorithms_at_the_idp() {
    let fx = Fx::new();
    let idp = || fx.token_exchange_builder(fx.idp_key_source(), InMemoryReplayStore::new(100));
    // The IdP signs ES256; an allow-list without it refuses its ID tokens.
    let eddsa_only = idp()
        .id_token_algorithms(AlgorithmSet::of(&[Algorithm::EdDSA]))
        .build_typed()
        .unwrap();
    let reply = send_idp(&eddsa_only, &Req::exchange(&fx.id_token(json!({}))));
    assert_eq!((reply.status, reply.error()), (400, "invalid_grant"));
    // An empty allow-list could accept no ID token at all: refused at build.
    assert_eq!(
        idp()
            .id_token_algorithms(AlgorithmSet::of(&[]))
            .build_typed()
            .err(),
        Some(BuildError::NoIdTokenAlgorithms)
    );
    let es256 = idp()
        .id_token_algorithms(AlgorithmSet::of(&[Algorithm::ES256]))
        .build_typed()
        .unwrap();
    assert_eq!(
        send_idp(&es256, &Req::exchange(&fx.id_token(json!({})))).status,
        200
    );
}

#[test]
fn d26_access_token_validator_defaults_and_knob() {
    let fx = Fx::new();
    let v = fx.at_validator(TASKS);
    assert_eq!(v.algorithms(), AlgorithmSet::DEFAULT);
    assert_eq!(v.leeway(), Duration::from_secs(30), "D-7 default");
    let v = v.with_algorithms(AlgorithmSet::of(&[Algorithm::EdDSA]));
    assert_eq!(v.algorithms(), AlgorithmSet::of(&[Algorithm::EdDSA]));
    assert_eq!(v.with_leeway(HUGE).leeway(), TimeOptions::MAX_LEEWAY);
}

#[test]
fn d7_lifetimes_saturate_and_are_capped() {
    let fx = Fx::new();
    // UnixTime arithmetic saturates.
    assert_eq!(
        UnixTime::from_secs(u64::MAX).plus(u64::MAX),
        UnixTime::from_secs(u64::MAX)
    );
    assert_eq!(
        UnixTime::from_secs(1).minus(u64::MAX),
        UnixTime::from_secs(0)
    );
    // Access tokens: u64::MAX is capped at a day, and the token still validates.
    let issuer = AccessTokenIssuer::new(Issuer::new(AS), fx.keys.as_ring.clone());
    assert_eq!(issuer.clone().with_lifetime(0).lifetime(), 1);
    let issuer = issuer.with_lifetime(u64::MAX);
    assert_eq!(issuer.lifetime(), MAX_ACCESS_TOKEN_LIFETIME);
    let claims = issuer
        .claims(
            "u-17".into(),
            Resource::new(TASKS),
            ClientId::new(CLIENT),
            NOW,
        )
        .expect("claims");
    assert_eq!(claims.exp, NOW.plus(MAX_ACCESS_TOKEN_LIFETIME));
    let token = issuer.sign(&claims).expect("sign");
    assert!(pollster::block_on(fx.at_validator(TASKS).validate(&token, NOW)).is_ok());
    // Even from the last representable instant, minting does not overflow.
    let late = issuer
        .claims(
            "u-17".into(),
            Resource::new(TASKS),
            ClientId::new(CLIENT),
            UnixTime::from_secs(u64::MAX),
        )
        .expect("claims");
    assert_eq!(late.exp, UnixTime::from_secs(u64::MAX));
    // ID-JAGs: capped at the D-7 maximum the authorization server accepts.
    let jags = IdJagIssuer::new(Issuer::new(IDP), fx.keys.idp.clone());
    assert_eq!(jags.lifetime(), 300, "D-16");
    assert_eq!(jags.clone().with_lifetime(0).lifetime(), 1);
    assert_eq!(jags.with_lifetime(u64::MAX).lifetime(), MAX_LIFETIME_SECS);
}
