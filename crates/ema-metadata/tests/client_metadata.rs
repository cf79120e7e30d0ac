//! MD-7: client metadata (a registration request or a Client ID Metadata Document) that lists
//! the ID-JAG grant profile must name both grants the profile uses.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use ema_metadata::{
    ClientMetadata, ID_JAG_PROFILE, JWT_BEARER_GRANT, MetadataError, TOKEN_EXCHANGE_GRANT,
};
use serde_json::{Value, json};

fn parse(doc: &Value) -> ClientMetadata {
    ClientMetadata::from_json(doc.to_string().as_bytes()).unwrap()
}

/// MD-7, as an authorization server meets it reading a client's metadata: with the profile
/// listed, `grant_types` must hold token exchange and jwt-bearer (an absent `grant_types` is
/// `authorization_code` alone, RFC 7591 §2); without the profile nothing is required.
#[test]
fn md7_client_metadata_listing_the_profile_needs_both_grants() {
    let cid = "https://desk.example/client.json";
    let rows: Vec<(&str, Value, Result<(), MetadataError>)> = vec![
        (
            "profile with both grants",
            json!({"client_id": cid, "grant_types": [TOKEN_EXCHANGE_GRANT, JWT_BEARER_GRANT],
                   "authorization_grant_profiles_supported": [ID_JAG_PROFILE]}),
            Ok(()),
        ),
        (
            "profile beside another, with both grants and more",
            json!({"client_id": cid,
                   "grant_types": ["authorization_code", JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT],
                   "authorization_grant_profiles_supported": ["urn:example:other", ID_JAG_PROFILE]}),
            Ok(()),
        ),
        (
            "profile without token exchange",
            json!({"client_id": cid, "grant_types": [JWT_BEARER_GRANT],
                   "authorization_grant_profiles_supported": [ID_JAG_PROFILE]}),
            Err(MetadataError::ProfileGrantTypes {
                missing: TOKEN_EXCHANGE_GRANT,
            }),
        ),
        (
            "profile without jwt-bearer",
            json!({"client_id": cid, "grant_types": [TOKEN_EXCHANGE_GRANT],
                   "authorization_grant_profiles_supported": [ID_JAG_PROFILE]}),
            Err(MetadataError::ProfileGrantTypes {
                missing: JWT_BEARER_GRANT,
            }),
        ),
        (
            "profile without grant_types (authorization_code by default)",
            json!({"client_id": cid, "authorization_grant_profiles_supported": [ID_JAG_PROFILE]}),
            Err(MetadataError::ProfileGrantTypes {
                missing: TOKEN_EXCHANGE_GRANT,
            }),
        ),
        (
            "no profile: authorization_code alone is fine",
            json!({"client_id": cid, "grant_types": ["authorization_code"]}),
            Ok(()),
        ),
        (
            "another profile only",
            json!({"client_id": cid, "grant_types": ["authorization_code"],
                   "authorization_grant_profiles_supported": ["urn:example:other"]}),
            Ok(()),
        ),
    ];
    for (name, doc, expected) in rows {
        assert_eq!(parse(&doc).validate(), expected, "{name}");
    }
}

/// MD-7, as a client meets it writing its metadata: declaring the profile declares both
/// grants, the document survives the round trip with its other members, and validates.
#[test]
fn md7_client_metadata_declaring_the_profile_is_valid() {
    let mut mine = ClientMetadata::new("https://desk.example/client.json").with_id_jag_profile();
    mine.extra
        .insert("client_name".into(), json!("Acme Desk agent"));
    let read = parse(&mine.to_json());
    assert_eq!(read, mine);
    assert!(read.lists_id_jag_profile());
    assert_eq!(
        read.grant_types.as_deref(),
        Some(&[TOKEN_EXCHANGE_GRANT.to_owned(), JWT_BEARER_GRANT.to_owned()][..])
    );
    assert_eq!(read.validate(), Ok(()));
    // Declaring twice adds nothing.
    assert_eq!(mine.clone().with_id_jag_profile(), mine);
    // A bare client lists no profile.
    assert!(!ClientMetadata::new("c").lists_id_jag_profile());
}
