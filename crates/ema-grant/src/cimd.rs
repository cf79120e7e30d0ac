//! Client ID Metadata Documents (the MCP authorization spec's recommended registration), the
//! sans-I/O half: a client not registered here names an `https` URL as its `client_id`; the
//! server fetches that URL (through a policy-checked fetcher: SSRF rules, size and time caps, no
//! redirects) and [`client_from_document`] turns the document into a public
//! [`RegisteredClient`] for the [code flow](crate::code_flow), or says why not.

use ema_metadata::ClientMetadata;
use serde_json::Value;

use crate::client_auth::{ClientCredential, RegisteredClient};
use crate::code_flow::AUTHORIZATION_CODE_GRANT;

/// Why a client ID metadata document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CimdError {
    /// The body is not a JSON client metadata document.
    #[error("the client metadata document is not valid JSON metadata: {0}")]
    Malformed(String),
    /// The document's `client_id` is not the URL it was fetched from.
    #[error("the document's client_id is not the URL it was fetched from")]
    ClientIdMismatch,
    /// No `redirect_uris`, or not an array of strings.
    #[error("the document lists no redirect_uris")]
    NoRedirectUris,
    /// A `token_endpoint_auth_method` other than `none`: only public clients are accepted
    /// from documents here.
    #[error("token_endpoint_auth_method `{0}` is not supported for metadata-document clients")]
    AuthMethod(String),
    /// `grant_types` is present without `authorization_code`.
    #[error("the document's grant_types do not include authorization_code")]
    GrantTypes,
}

/// Whether `client_id` is a client ID metadata document URL (an `https` URL with a path), the
/// form the MCP spec gives them. (`http` on loopback is for development fetch policies only;
/// the fetcher's URL rule decides.)
pub fn is_metadata_document_url(client_id: &str) -> bool {
    let rest = client_id
        .strip_prefix("https://")
        .or_else(|| client_id.strip_prefix("http://"));
    rest.is_some_and(|r| r.find('/').is_some_and(|i| i > 0 && i + 1 < r.len()))
        && !client_id.contains('#')
}

/// Validates the document fetched from `url` and returns its client: public (`none`), with
/// the document's redirect URIs (matched exactly afterwards), restricted to the
/// authorization code grant.
///
/// ```
/// use ema_grant::cimd::{CimdError, client_from_document};
///
/// let url = "https://app.example/oauth/client.json";
/// let doc = br#"{"client_id": "https://app.example/oauth/client.json",
///     "client_name": "App", "redirect_uris": ["http://127.0.0.1:3000/callback"],
///     "token_endpoint_auth_method": "none"}"#;
/// let client = client_from_document(url, doc)?;
/// assert_eq!(client.redirect_uris, ["http://127.0.0.1:3000/callback"]);
/// let other = br#"{"client_id": "https://evil.example/c.json", "redirect_uris": ["https://evil.example/cb"]}"#;
/// assert_eq!(client_from_document(url, other).err(), Some(CimdError::ClientIdMismatch));
/// # Ok::<(), CimdError>(())
/// ```
pub fn client_from_document(url: &str, body: &[u8]) -> Result<RegisteredClient, CimdError> {
    let doc = ClientMetadata::from_json(body).map_err(|e| CimdError::Malformed(e.to_string()))?;
    if doc.client_id.as_deref() != Some(url) {
        return Err(CimdError::ClientIdMismatch);
    }
    match doc.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(other) => return Err(CimdError::AuthMethod(other.to_owned())),
    }
    if let Some(grants) = &doc.grant_types
        && !grants.iter().any(|g| g == AUTHORIZATION_CODE_GRANT)
    {
        return Err(CimdError::GrantTypes);
    }
    let redirect_uris: Vec<String> = match doc.extra.get("redirect_uris") {
        Some(Value::Array(uris)) if !uris.is_empty() => uris
            .iter()
            .map(|u| u.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or(CimdError::NoRedirectUris)?,
        _ => return Err(CimdError::NoRedirectUris),
    };
    Ok(RegisteredClient::new(url, ClientCredential::Public)
        .with_redirect_uris(redirect_uris)
        .with_grant_types([AUTHORIZATION_CODE_GRANT]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://app.example/oauth/client.json";

    #[test]
    fn document_rules() {
        let ok = br#"{"client_id":"https://app.example/oauth/client.json","redirect_uris":["https://app.example/cb"]}"#;
        assert!(client_from_document(URL, ok).is_ok());
        for (body, want) in [
            (
                &br#"{"client_id":"https://app.example/other.json","redirect_uris":["https://app.example/cb"]}"#[..],
                CimdError::ClientIdMismatch,
            ),
            (
                br#"{"client_id":"https://app.example/oauth/client.json"}"#,
                CimdError::NoRedirectUris,
            ),
            (
                br#"{"client_id":"https://app.example/oauth/client.json","redirect_uris":[]}"#,
                CimdError::NoRedirectUris,
            ),
            (
                br#"{"client_id":"https://app.example/oauth/client.json","redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#,
                CimdError::AuthMethod("client_secret_basic".into()),
            ),
            (
                br#"{"client_id":"https://app.example/oauth/client.json","redirect_uris":["https://app.example/cb"],"grant_types":["refresh_token"]}"#,
                CimdError::GrantTypes,
            ),
        ] {
            assert_eq!(client_from_document(URL, body).unwrap_err(), want);
        }
        assert!(matches!(
            client_from_document(URL, b"not json"),
            Err(CimdError::Malformed(_))
        ));
    }

    #[test]
    fn url_shape() {
        assert!(is_metadata_document_url(URL));
        for id in [
            "tc_5f2a91",
            "https://app.example",
            "https://app.example/",
            "https:///x",
            "https://app.example/c.json#f",
            "ftp://app.example/c.json",
        ] {
            assert!(!is_metadata_document_url(id), "{id}");
        }
    }
}
