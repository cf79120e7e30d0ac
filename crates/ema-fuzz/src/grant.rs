//! Targets for the token-endpoint parsers: the strict form body, the ID-JAG claim set, and the
//! metadata and `WWW-Authenticate` parsers a client feeds with server responses.

use ema_grant::Form;
use ema_id_jag::{IdJagClaims, ScopeSet};
use ema_jose::Claims;

/// `grant_form`: [`Form::parse`] with the token endpoint's cap. Invariants: names are unique;
/// every non-empty value is retrievable by its name; re-encoding the decoded pairs and parsing
/// again gives the same form; a `scope` that parses re-serialises to a string that parses to
/// the same set.
pub fn grant_form(data: &[u8]) {
    let Ok(form) = Form::parse(data, ema_grant::form::DEFAULT_MAX_BODY) else {
        return;
    };
    let pairs: Vec<(&str, &str)> = form.iter().collect();
    for (i, (name, value)) in pairs.iter().enumerate() {
        assert!(
            pairs.iter().skip(i + 1).all(|(other, _)| other != name),
            "duplicate name survived parsing"
        );
        if !value.is_empty() {
            assert_eq!(form.get(name), Some(*value));
        }
    }
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(n, v)| {
            format!(
                "{}={}",
                ema_grant::form::encode_component(n),
                ema_grant::form::encode_component(v)
            )
        })
        .collect();
    let again = Form::parse(encoded.join("&").as_bytes(), usize::MAX);
    assert_eq!(again.as_ref().ok(), Some(&form), "re-encoded form differs");
    if let Some(Ok(scope)) = form.get("scope").map(ScopeSet::parse) {
        assert_eq!(ScopeSet::parse(&scope.to_string()).ok(), Some(scope));
    }
}

/// `id_jag_claims`: a strict JSON object read as ID-JAG claims. Invariant: a claim set that is
/// accepted survives `to_object` → `from_claims` unchanged.
pub fn id_jag_claims(data: &[u8]) {
    let Ok(map) = ema_jose::parse_json_object(data, 16) else {
        return;
    };
    let Ok(claims) = IdJagClaims::from_claims(&Claims::from_object(map)) else {
        return;
    };
    let again = IdJagClaims::from_claims(&Claims::from_object(claims.to_object()));
    assert_eq!(
        again.as_ref().ok(),
        Some(&claims),
        "claims do not round-trip"
    );
}

/// `as_metadata`: authorization-server and protected-resource metadata parsing and validation,
/// and `WWW-Authenticate` parsing. Invariants: an accepted document re-parses from its own JSON
/// to an equal document; every parsed challenge re-parses from its own rendering.
pub fn as_metadata(data: &[u8]) {
    use ema_metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata, UrlPolicy};
    if let Ok(m) = AuthorizationServerMetadata::from_json(data) {
        let again = AuthorizationServerMetadata::from_json(m.to_json().to_string().as_bytes());
        assert_eq!(
            again.as_ref().ok(),
            Some(&m),
            "AS metadata does not round-trip"
        );
        let _ = m.validate(&m.issuer, &UrlPolicy::https_only());
        let _ = m.supports_id_jag();
    }
    if let Ok(p) = ProtectedResourceMetadata::from_json(data) {
        let again = ProtectedResourceMetadata::from_json(p.to_json().to_string().as_bytes());
        assert_eq!(again.as_ref().ok(), Some(&p), "PRM does not round-trip");
        if let Ok(url) = url::Url::parse(&p.resource) {
            let _ = p.validate(&url, &UrlPolicy::insecure_allow_loopback_http());
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(challenges) = ema_metadata::parse_challenges(text)
    {
        for c in challenges {
            let rendered = c.to_string();
            let again = ema_metadata::parse_challenges(&rendered);
            assert!(
                again.is_ok(),
                "rendered challenge does not parse: {rendered:?}"
            );
        }
    }
}
