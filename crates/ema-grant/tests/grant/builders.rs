//! The grant builders (issue 10, decision 4): a configuration that could never issue a token is
//! refused at `build()` with a typed [`BuildError`], each refusal beside the same builder
//! completed (positive control); the defaults (`{issuer}/token`, public-client registries) hold;
//! and the erased and typed grants answer alike.

use std::sync::Arc;

use ema_grant::{
    AccessTokenIssuer, BuildError, ClientCredential, ClientRegistry, GroupPolicy,
    InMemoryReplayStore, JwtBearerGrant, JwtBearerGrantBuilder, RegisteredClient, TargetServer,
    TokenExchangeGrant, TokenExchangeGrantBuilder,
};
use ema_id_jag::{
    Directory, IdJagIssuer, IdJagValidator, Issuer, ResourceConfig, TrustedIssuer,
    ValidatorBuildError,
};
use ema_jose::StaticKeySource;
use serde_json::json;

use crate::support::*;

fn as_start(fx: &Fx) -> JwtBearerGrantBuilder<StaticKeySource, Directory> {
    JwtBearerGrant::builder(
        AccessTokenIssuer::new(Issuer::new(AS), fx.keys.as_ring.clone()),
        fx.as_key_source(),
        directory(),
    )
}

fn as_complete(fx: &Fx) -> JwtBearerGrantBuilder<StaticKeySource, Directory> {
    as_start(fx)
        .trust(TrustedIssuer::new(IDP))
        .resource(ResourceConfig::new(TASKS, ["tasks.read", "tasks.write"]))
        .client(RegisteredClient::new(
            CLIENT,
            ClientCredential::secret(SECRET),
        ))
}

#[test]
fn jwt_bearer_builder_refuses_what_could_never_issue_a_token() {
    let fx = Fx::new();
    let secret = || RegisteredClient::new(CLIENT, ClientCredential::secret(SECRET));
    let rows: Vec<(&str, Result<JwtBearerGrant, BuildError>, BuildError)> = vec![
        (
            "no trusted issuer",
            as_start(&fx)
                .resource(ResourceConfig::new(TASKS, ["tasks.read"]))
                .client(secret())
                .build(),
            BuildError::Validator(ValidatorBuildError::NoTrustedIssuers),
        ),
        (
            "no resource",
            as_start(&fx)
                .trust(TrustedIssuer::new(IDP))
                .client(secret())
                .build(),
            BuildError::Validator(ValidatorBuildError::NoResources),
        ),
        (
            "no client",
            as_start(&fx)
                .trust(TrustedIssuer::new(IDP))
                .resource(ResourceConfig::new(TASKS, ["tasks.read"]))
                .build(),
            BuildError::NoClients,
        ),
        (
            "registry audiences without the issuer",
            as_complete(&fx)
                .client_registry(ClientRegistry::new([TOKEN_ENDPOINT]))
                .build(),
            BuildError::ClientAudience { issuer: AS.into() },
        ),
    ];
    for (name, result, expected) in rows {
        assert_eq!(result.err(), Some(expected), "{name}");
    }
    // Positive controls: complete, a registry naming the issuer, and a registry without
    // clients that accepts public ones (D-11).
    assert!(as_complete(&fx).build().is_ok());
    assert!(
        as_complete(&fx)
            .client_registry(ClientRegistry::new([AS]))
            .build()
            .is_ok()
    );
    assert!(
        as_start(&fx)
            .trust(TrustedIssuer::new(IDP))
            .resource(ResourceConfig::new(TASKS, ["tasks.read"]))
            .client_registry(ClientRegistry::new([AS]).allow_public(true))
            .build_typed()
            .is_ok()
    );
}

#[test]
fn id_jag_validator_builder_refuses_an_empty_trust_or_resource_registry() {
    let fx = Fx::new();
    let start = || IdJagValidator::builder(AS, fx.as_key_source(), directory());
    let none = start().resource(ResourceConfig::new(TASKS, ["tasks.read"]));
    assert_eq!(
        none.build().err(),
        Some(ValidatorBuildError::NoTrustedIssuers)
    );
    let none = start().trust(TrustedIssuer::new(IDP));
    assert_eq!(none.build().err(), Some(ValidatorBuildError::NoResources));
    let ok = start()
        .trust(TrustedIssuer::new(IDP))
        .resource(ResourceConfig::new(TASKS, ["tasks.read"]));
    let validator: IdJagValidator = ok.build().unwrap();
    assert_eq!(validator.issuer(), &Issuer::new(AS));
}

fn idp_start(fx: &Fx) -> TokenExchangeGrantBuilder<StaticKeySource, GroupPolicy> {
    TokenExchangeGrant::builder(
        IdJagIssuer::new(Issuer::new(IDP), fx.keys.idp.clone()),
        fx.idp_key_source(),
        GroupPolicy::new(),
    )
}

#[test]
fn token_exchange_builder_refuses_what_could_never_issue_an_id_jag() {
    let fx = Fx::new();
    let secret = || RegisteredClient::new(IDP_CLIENT, ClientCredential::secret(IDP_SECRET));
    let target = || TargetServer::new(AS, [TASKS]).with_client(IDP_CLIENT, CLIENT);
    let rows: Vec<(&str, Result<TokenExchangeGrant, BuildError>, BuildError)> = vec![
        (
            "no target",
            idp_start(&fx).client(secret()).build(),
            BuildError::NoTargets,
        ),
        (
            "no client",
            idp_start(&fx).target(target()).build(),
            BuildError::NoClients,
        ),
        (
            "registry audiences without the issuer",
            idp_start(&fx)
                .target(target())
                .client_registry(ClientRegistry::new([IDP_TOKEN_ENDPOINT]))
                .client(secret())
                .build(),
            BuildError::ClientAudience { issuer: IDP.into() },
        ),
    ];
    for (name, result, expected) in rows {
        assert_eq!(result.err(), Some(expected), "{name}");
    }
    assert!(
        idp_start(&fx)
            .target(target())
            .client(secret())
            .build()
            .is_ok()
    );
    // The refusals read as sentences.
    assert_eq!(
        BuildError::from(ValidatorBuildError::NoResources).to_string(),
        "no resource is configured"
    );
    assert_eq!(
        BuildError::ClientAudience { issuer: IDP.into() }.to_string(),
        format!("the client registry's audiences do not include the issuer `{IDP}`")
    );
}

/// The default token endpoint is `{issuer}/token`: a DPoP proof for it is accepted (AS-17,
/// RFC 9449 `htu`), one for another URL is not.
#[test]
fn as17_default_token_endpoint_is_the_issuer_s_token_path() {
    let fx = Fx::new();
    assert_eq!(TOKEN_ENDPOINT, format!("{AS}/token"));
    let grant = as_complete(&fx).build().unwrap();
    let send = |htu: &str| {
        let jag = fx.jag(json!({}));
        let proof = fx.dpop_proof(&fx.keys.dpop, htu, json!({}));
        Reply::check(pollster::block_on(
            grant.handle(&Req::bearer(&jag).dpop(&proof).build(), NOW),
        ))
    };
    let wrong = send("https://auth.tasks.example/oauth2/token");
    assert_eq!((wrong.status, wrong.error()), (400, "invalid_dpop_proof"));
    assert_eq!(send(TOKEN_ENDPOINT).status, 200);
}

/// The erased grant (the bare name) and the typed one answer the same requests alike,
/// replays included (SEC-1), and a store shared behind an `Arc` is one store.
#[test]
fn sec1_erased_and_typed_grants_agree() {
    let fx = Fx::new();
    let store = Arc::new(InMemoryReplayStore::new(100));
    let erased: JwtBearerGrant = as_complete(&fx)
        .replay_store(Arc::clone(&store))
        .build()
        .unwrap();
    let typed = as_complete(&fx)
        .replay_store(Arc::clone(&store))
        .build_typed()
        .unwrap();
    let jag = fx.jag(json!({}));
    let first = Reply::check(pollster::block_on(
        typed.handle(&Req::bearer(&jag).build(), NOW),
    ));
    assert_eq!(first.status, 200);
    // The same ID-JAG at the erased grant sharing the store: a replay.
    let again = Reply::check(pollster::block_on(
        erased.handle(&Req::bearer(&jag).build(), NOW),
    ));
    assert_eq!((again.status, again.error()), (400, "invalid_grant"));
    // A fresh one is accepted by the erased grant.
    let fresh = Reply::check(pollster::block_on(
        erased.handle(&Req::bearer(&fx.jag(json!({}))).build(), NOW),
    ));
    assert_eq!(fresh.status, 200);
    assert!(!store.is_empty());
}
