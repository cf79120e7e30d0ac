//! Hop 0: protected-resource metadata (CL-1, D-9) and authorization-server metadata (CL-2,
//! MD-5, CL-3).

use ema_id_jag::ScopeSet;
use ema_jwks::{FetchResponse, HttpFetcher};
use ema_metadata::{
    AuthorizationServerMetadata, ProtectedResourceMetadata, authorization_server_metadata_urls,
    find_challenge, protected_resource_metadata_urls,
};
use url::Url;

use crate::error::DiscoveryError;

/// What discovery found out about one MCP server.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DiscoveredServer {
    /// The MCP server URL the client uses.
    pub server_url: Url,
    /// Where the protected-resource metadata came from.
    pub resource_metadata_url: Url,
    /// The validated protected-resource metadata (CL-1, D-9).
    pub resource: ProtectedResourceMetadata,
    /// The validated metadata of the authorization server chosen (CL-2, MD-5).
    pub authorization_server: AuthorizationServerMetadata,
    /// The `scope` of the server's `401` challenge, if any.
    pub challenged_scope: Option<ScopeSet>,
}

impl DiscoveredServer {
    /// The resource identifier to ask tokens for: the PRM `resource`, verbatim (CL-4, CL-6).
    pub fn resource_id(&self) -> &str {
        &self.resource.resource
    }

    /// Whether the authorization server offers the ID-JAG profile (CL-3), so EMA applies.
    pub fn supports_id_jag(&self) -> bool {
        self.authorization_server.supports_id_jag()
    }

    /// The authorization server's issuer, verbatim from its validated metadata (CL-4).
    pub fn issuer(&self) -> &str {
        &self.authorization_server.issuer
    }

    /// The scopes to ask for first (MCP scope selection): the challenge's `scope`, else the
    /// PRM `scopes_supported`, else none.
    pub fn initial_scope(&self) -> ScopeSet {
        if let Some(scope) = &self.challenged_scope {
            return scope.clone();
        }
        let mut set = ScopeSet::new();
        for scope in self.resource.scopes_supported.iter().flatten() {
            if !scope.is_empty() && !scope.contains(' ') {
                set.insert(scope.as_str());
            }
        }
        set
    }
}

/// A JSON-RPC `ping` without credentials: the request whose `401` names the metadata.
const PROBE_BODY: &[u8] = br#"{"jsonrpc":"2.0","id":"ema-discovery","method":"ping"}"#;

/// Runs discovery for `server_url`.
///
/// 1. An unauthenticated request; a `401` Bearer challenge's `resource_metadata` names the PRM
///    (CL-1); without one, the CL-1 well-known fallbacks (path-inserted, then root).
/// 2. The PRM is validated against `server_url` (D-9) and the URL rule (MD-8).
/// 3. For the first authorization server listed that `preferred` accepts (else the first one),
///    the CL-2 metadata locations in order; the first document found must name exactly that
///    issuer (MD-5) and pass the URL rule.
/// 4. Unless `assume_profile`, the server must support the ID-JAG profile (CL-3), with the
///    `grant_types_supported` fallback when it lists no profiles.
pub(crate) async fn discover(
    fetcher: &HttpFetcher,
    server_url: &Url,
    preferred: impl Fn(&str) -> bool,
    assume_profile: bool,
) -> Result<DiscoveredServer, DiscoveryError> {
    let server_url = fetcher
        .check_url("server_url", server_url.as_str())
        .map_err(DiscoveryError::ServerUrl)?;
    let probe = fetcher
        .post_json_unauthenticated(&server_url, PROBE_BODY.to_vec())
        .await
        .map_err(DiscoveryError::Probe)?;
    let (named, challenged_scope) = read_challenge(&probe)?;

    // CL-1: the challenge's URL first, then the well-known fallbacks.
    let mut candidates = Vec::new();
    if let Some(named) = named {
        let url = fetcher
            .check_url("resource_metadata", &named)
            .map_err(|source| DiscoveryError::MetadataUrl { url: named, source })?;
        candidates.push(url);
    }
    candidates.extend(protected_resource_metadata_urls(&server_url));
    let (resource_metadata_url, body) =
        first_found(fetcher, &candidates).await?.ok_or_else(|| {
            DiscoveryError::ResourceMetadataNotFound {
                tried: candidates.iter().map(|u| u.as_str().to_owned()).collect(),
            }
        })?;
    let resource = ProtectedResourceMetadata::from_json(&body)
        .and_then(|prm| {
            // CL-1, D-9: `resource` covers the URL used; MD-8 URLs.
            prm.validate(&server_url, fetcher.policy().url_policy())?;
            Ok(prm)
        })
        .map_err(|source| DiscoveryError::ResourceMetadata {
            url: resource_metadata_url.as_str().to_owned(),
            source,
        })?;

    let issuer = resource
        .authorization_servers
        .iter()
        .find(|s| preferred(s))
        .or_else(|| resource.authorization_servers.first())
        .cloned()
        .unwrap_or_default();
    let authorization_server = discover_authorization_server(fetcher, &issuer).await?;
    // CL-3: EMA only where the server takes ID-JAGs (or the administrator forces it).
    if !assume_profile && !authorization_server.supports_id_jag() {
        return Err(DiscoveryError::ProfileNotSupported { issuer });
    }
    Ok(DiscoveredServer {
        server_url,
        resource_metadata_url,
        resource,
        authorization_server,
        challenged_scope,
    })
}

/// Reads the `resource_metadata` and `scope` of a `401` Bearer challenge.
fn read_challenge(
    probe: &FetchResponse,
) -> Result<(Option<String>, Option<ScopeSet>), DiscoveryError> {
    if probe.status != 401 {
        return Ok((None, None));
    }
    let Some(header) = probe.www_authenticate() else {
        return Ok((None, None));
    };
    let Some(challenge) = find_challenge(&header, "Bearer").map_err(DiscoveryError::Challenge)?
    else {
        return Ok((None, None));
    };
    let named = challenge.get("resource_metadata").map(str::to_owned);
    let scope = challenge
        .get("scope")
        .and_then(|s| ScopeSet::parse(s).ok())
        .filter(|s| !s.is_empty());
    Ok((named, scope))
}

/// CL-2 with MD-5: the first metadata document found for `issuer`, validated.
pub(crate) async fn discover_authorization_server(
    fetcher: &HttpFetcher,
    issuer: &str,
) -> Result<AuthorizationServerMetadata, DiscoveryError> {
    let issuer_url = fetcher
        .check_url("authorization_servers", issuer)
        .map_err(|source| DiscoveryError::MetadataUrl {
            url: issuer.to_owned(),
            source,
        })?;
    let candidates = authorization_server_metadata_urls(&issuer_url);
    let (url, body) = first_found(fetcher, &candidates).await?.ok_or_else(|| {
        DiscoveryError::AuthorizationServerNotFound {
            issuer: issuer.to_owned(),
            tried: candidates.iter().map(|u| u.as_str().to_owned()).collect(),
        }
    })?;
    AuthorizationServerMetadata::from_json(&body)
        .and_then(|metadata| {
            // MD-5: the issuer is exactly the one the URL was built from; MD-8 URLs.
            metadata.validate(issuer, fetcher.policy().url_policy())?;
            Ok(metadata)
        })
        .map_err(|source| DiscoveryError::AuthorizationServer {
            url: url.as_str().to_owned(),
            source,
        })
}

/// The first candidate answering `200`; `404`-like answers move on, transport failures stop.
async fn first_found(
    fetcher: &HttpFetcher,
    candidates: &[Url],
) -> Result<Option<(Url, Vec<u8>)>, DiscoveryError> {
    for url in candidates {
        let response = fetcher
            .get(url)
            .await
            .map_err(|source| DiscoveryError::Fetch {
                url: url.as_str().to_owned(),
                source,
            })?;
        if response.status == 200 {
            return Ok(Some((url.clone(), response.body)));
        }
    }
    Ok(None)
}
