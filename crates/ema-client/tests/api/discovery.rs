//! Hop 0: PRM from the challenge with CL-1 fallbacks and D-9; AS metadata in the CL-2 order with
//! MD-5; the CL-3 profile check.

use ema_client::{DiscoveryError, EmaError, FetchError, Hop};
use ema_metadata::MetadataError;
use serde_json::json;

use crate::support::World;

#[tokio::test]
async fn cl1_prm_from_the_challenge_resource_metadata() {
    // The PRM lives at a custom path only the challenge names.
    let world = World::start(|k| {
        k.prm_path = "/custom/metadata/location.json".into();
        k.challenge_scope = Some("tasks.read".into());
    })
    .await;
    let found = world.client().discover(&world.server_url()).await.unwrap();
    assert_eq!(
        found.resource_metadata_url.as_str(),
        format!("{}/custom/metadata/location.json", world.mcp)
    );
    assert_eq!(found.resource_id(), world.resource);
    assert_eq!(found.issuer(), world.issuer);
    // MCP scope selection: the challenge's scope first.
    assert_eq!(found.initial_scope().to_string(), "tasks.read");
    // The probe carried no credentials at all: a bare JSON-RPC ping to the server URL.
    let log = world.log.lock().unwrap();
    assert!(log.mcp.iter().all(|r| r.authorization().is_none()));
    let probe = &log.mcp[0];
    assert_eq!(probe.uri, "/mcp");
    assert!(probe.body.contains("\"ping\""));
    assert!(!probe.contains("Bearer"));
}

#[tokio::test]
async fn cl1_fallbacks_path_inserted_then_root() {
    // No `resource_metadata` in the challenge: the path-inserted well-known URL.
    let world = World::start(|k| k.challenge_names_prm = false).await;
    let found = world.client().discover(&world.server_url()).await.unwrap();
    assert_eq!(
        found.resource_metadata_url.as_str(),
        format!("{}/.well-known/oauth-protected-resource/mcp", world.mcp)
    );
    // Without scope in the challenge, the PRM's scopes_supported.
    assert_eq!(found.initial_scope().to_string(), "tasks.read tasks.write");

    // Only at the root.
    let world = World::start(|k| {
        k.challenge_names_prm = false;
        k.prm_path = "/.well-known/oauth-protected-resource".into();
    })
    .await;
    let found = world.client().discover(&world.server_url()).await.unwrap();
    assert_eq!(
        found.resource_metadata_url.as_str(),
        format!("{}/.well-known/oauth-protected-resource", world.mcp)
    );
    assert_eq!(
        world.hits("mcp GET"),
        2,
        "path-inserted first, then the root"
    );

    // Nowhere.
    let world = World::start(|k| {
        k.challenge_names_prm = false;
        k.prm_path = "/nowhere".into();
    })
    .await;
    let err = world
        .client()
        .discover(&world.server_url())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DiscoveryError::ResourceMetadataNotFound { ref tried } if tried.len() == 2)
    );
}

#[tokio::test]
async fn d9_prm_for_another_resource_is_refused() {
    let world = World::start(|k| {
        k.prm = Some(json!({
            "resource": "http://127.0.0.1:1/elsewhere",
            "authorization_servers": ["http://127.0.0.1:1"],
        }));
    })
    .await;
    let err = world
        .client()
        .discover(&world.server_url())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DiscoveryError::ResourceMetadata {
                source: MetadataError::ResourceMismatch { .. },
                ..
            }
        ),
        "{err:?}"
    );
    // Nothing was asked of any authorization server.
    assert_eq!(world.hits("as "), 0);
}

#[tokio::test]
async fn md5_issuer_mismatch_is_refused() {
    let world = World::start(|_| {}).await;
    world.knobs(|k| {
        k.as_metadata = Some(json!({
            "issuer": format!("{}/", world.issuer),
            "token_endpoint": format!("{}/token", world.issuer),
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
        }));
    });
    let client = world.client();
    let err = client.discover(&world.server_url()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            DiscoveryError::AuthorizationServer {
                source: MetadataError::IssuerMismatch { .. },
                ..
            }
        ),
        "{err:?}"
    );
    // And through the one-call API, the error names the hop.
    let err = client
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap_err();
    assert_eq!(err.hop(), Hop::Discovery);
    assert_eq!(
        world.hits("idp "),
        0,
        "no token exchange after a failed discovery"
    );
}

#[tokio::test]
async fn cl2_discovery_order_reaches_openid_configuration() {
    let world = World::start(|k| {
        k.as_metadata_paths = vec!["/.well-known/openid-configuration".into()];
    })
    .await;
    let found = world.client().discover(&world.server_url()).await.unwrap();
    assert_eq!(found.issuer(), world.issuer);
    let log = world.log.lock().unwrap();
    let as_gets: Vec<&str> = log
        .hits
        .iter()
        .filter(|h| h.starts_with("as GET"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        as_gets,
        [
            "as GET /.well-known/oauth-authorization-server",
            "as GET /.well-known/openid-configuration",
        ]
    );
}

#[tokio::test]
async fn cl3_profile_check_with_grant_types_fallback() {
    let world = World::start(|_| {}).await;
    let metadata = |extra: serde_json::Value| {
        let mut doc = json!({
            "issuer": world.issuer,
            "token_endpoint": format!("{}/token", world.issuer),
        });
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        doc
    };
    let client = world.client();
    // Profiles listed without the ID-JAG profile: refused.
    world.knobs(|k| {
        k.as_metadata = Some(metadata(json!({
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
            "authorization_grant_profiles_supported": ["urn:example:other-profile"],
        })));
    });
    assert_eq!(
        client.discover(&world.server_url()).await.unwrap_err(),
        DiscoveryError::ProfileNotSupported {
            issuer: world.issuer.clone()
        }
    );
    // No profile list and no jwt-bearer grant: refused.
    world.knobs(|k| {
        k.as_metadata = Some(metadata(
            json!({"grant_types_supported": ["authorization_code"]}),
        ));
    });
    assert!(matches!(
        client.discover(&world.server_url()).await.unwrap_err(),
        DiscoveryError::ProfileNotSupported { .. }
    ));
    // ...unless an administrator forces EMA.
    let forced = ema_client::EmaClient::builder(world.idp_config())
        .fetch_policy(ema_client::FetchPolicy::insecure_loopback_development())
        .assume_profile_supported(true)
        .build()
        .unwrap();
    assert!(forced.discover(&world.server_url()).await.is_ok());
    // No profile list but jwt-bearer among the grant types (the conformance suite's mock): ok.
    world.knobs(|k| {
        k.as_metadata = Some(metadata(json!({
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
        })));
    });
    assert!(client.discover(&world.server_url()).await.is_ok());
}

#[tokio::test]
async fn oversized_metadata_is_refused_at_the_cap() {
    let world = World::start(|k| k.as_metadata_padding = 300 * 1024).await;
    let err = world
        .client()
        .discover(&world.server_url())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            DiscoveryError::Fetch {
                source: FetchError::TooLarge { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let err = EmaError::from(err);
    assert_eq!(err.hop(), Hop::Discovery);
}

#[tokio::test]
async fn md8_metadata_pointing_to_plain_http_elsewhere_is_refused() {
    let world = World::start(|_| {}).await;
    world.knobs(|k| {
        k.as_metadata = Some(json!({
            "issuer": world.issuer,
            "token_endpoint": "http://as.example/token",
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
        }));
    });
    let err = world
        .client()
        .discover(&world.server_url())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            DiscoveryError::AuthorizationServer {
                source: MetadataError::Url(_),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn cl13_the_authorization_server_with_credentials_is_chosen() {
    // The PRM lists a server the client has no registration at first; the client picks the
    // one it holds credentials for and never contacts the other.
    let world = World::start(|_| {}).await;
    world.knobs(|k| {
        k.prm = Some(json!({
            "resource": world.resource,
            "authorization_servers": ["http://127.0.0.1:1", world.issuer],
        }));
    });
    let found = world.client().discover(&world.server_url()).await.unwrap();
    assert_eq!(found.issuer(), world.issuer);
}
