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

/// Whether `client_id` is a client ID metadata document URL: the one rule for both endpoints of
/// the code flow (the authorization endpoint, which fetches the document, and the token
/// endpoint, which takes such a client as public, [`ClientRegistry::authenticate`]).
///
/// The form the MCP spec gives them: an `https` URL with a path (not just `/`) and no fragment.
/// For development the CIMD and MCP rules also allow `http` on a loopback host (`127.0.0.0/8`,
/// `[::1]`, `localhost`), with a path; `http` anywhere else is not a client id. Whether such a
/// URL is actually fetched is still the fetcher's policy (its URL rule and address filter).
///
/// ```
/// use ema_grant::cimd::is_metadata_document_url;
///
/// assert!(is_metadata_document_url("https://app.example/oauth/client.json"));
/// assert!(is_metadata_document_url("http://127.0.0.1:8085/client.json"));
/// assert!(!is_metadata_document_url("http://app.example/client.json"));
/// assert!(!is_metadata_document_url("https://app.example/"));
/// ```
///
/// [`ClientRegistry::authenticate`]: crate::ClientRegistry::authenticate
pub fn is_metadata_document_url(client_id: &str) -> bool {
    if client_id.contains('#') {
        return false;
    }
    let (rest, https) = match (
        client_id.strip_prefix("https://"),
        client_id.strip_prefix("http://"),
    ) {
        (Some(rest), _) => (rest, true),
        (None, Some(rest)) => (rest, false),
        (None, None) => return false,
    };
    let Some(slash) = rest.find('/') else {
        return false;
    };
    let (authority, path) = rest.split_at(slash);
    if authority.is_empty() || path.len() < 2 || authority.contains('@') {
        return false;
    }
    https || is_loopback_authority(authority)
}

/// `127.0.0.0/8`, `[::1]` or `localhost`, with an optional port.
fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, rest)) if rest.is_empty() || rest.starts_with(':') => {
                return host == "::1" && port_ok(rest);
            }
            _ => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => {
                if !port_ok(&format!(":{port}")) {
                    return false;
                }
                host
            }
            None => authority,
        }
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Empty, or `:` and 1 to 5 digits.
fn port_ok(rest: &str) -> bool {
    rest.is_empty()
        || rest
            .strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
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
        // Development: http on loopback, with a path (the MCP and CIMD rules).
        for id in [
            "http://127.0.0.1/c.json",
            "http://127.0.0.1:8085/oauth/client.json",
            "http://127.9.0.1:1/c",
            "http://[::1]:8085/c.json",
            "http://localhost:3000/c.json",
        ] {
            assert!(is_metadata_document_url(id), "{id}");
        }
        for id in [
            "tc_5f2a91",
            "http://app.example/c.json",
            "http://10.0.0.1/c.json",
            "http://127.0.0.1.evil.example/c.json",
            "http://127.0.0.1:80x/c.json",
            "http://[::2]/c.json",
            "http://127.0.0.1/",
            "http://user@127.0.0.1/c.json",
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
