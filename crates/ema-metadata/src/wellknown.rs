//! Well-known metadata URLs: path insertion (RFC 8414 §3.1, RFC 9728 §3.1) and the discovery
//! orders of CL-1 and CL-2.

use url::Url;

fn origin_with_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    url.set_path(path);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// The path of `url` without a trailing slash; empty for the root.
fn trimmed_path(url: &Url) -> &str {
    url.path().trim_end_matches('/')
}

/// The RFC 9728 metadata URL of a protected resource: `/.well-known/oauth-protected-resource`
/// inserted before the resource's path. This is where an MCP server serves it (MD-6).
pub fn protected_resource_metadata_url(resource: &Url) -> Url {
    origin_with_path(
        resource,
        &format!(
            "/.well-known/oauth-protected-resource{}",
            trimmed_path(resource)
        ),
    )
}

/// Where a client looks for protected-resource metadata when the challenge names none (CL-1):
/// the path-inserted URL, then the root.
pub fn protected_resource_metadata_urls(resource: &Url) -> Vec<Url> {
    let mut urls = vec![protected_resource_metadata_url(resource)];
    if !trimmed_path(resource).is_empty() {
        urls.push(origin_with_path(
            resource,
            "/.well-known/oauth-protected-resource",
        ));
    }
    urls
}

/// The RFC 8414 metadata URL of an issuer (path insertion).
pub fn authorization_server_metadata_url(issuer: &Url) -> Url {
    origin_with_path(
        issuer,
        &format!(
            "/.well-known/oauth-authorization-server{}",
            trimmed_path(issuer)
        ),
    )
}

/// The discovery order for authorization-server metadata (CL-2): OAuth path-insert, OpenID
/// Connect path-insert, OpenID Connect path-append; for an issuer without a path, OAuth then
/// OpenID Connect at the root.
pub fn authorization_server_metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = trimmed_path(issuer);
    let mut urls = vec![
        authorization_server_metadata_url(issuer),
        origin_with_path(issuer, &format!("/.well-known/openid-configuration{path}")),
    ];
    if !path.is_empty() {
        urls.push(origin_with_path(
            issuer,
            &format!("{path}/.well-known/openid-configuration"),
        ));
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn strings(v: Vec<Url>) -> Vec<String> {
        v.into_iter().map(String::from).collect()
    }

    #[test]
    fn cl2_discovery_order() {
        assert_eq!(
            strings(authorization_server_metadata_urls(&u(
                "https://auth.example/tenant1"
            ))),
            [
                "https://auth.example/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example/.well-known/openid-configuration/tenant1",
                "https://auth.example/tenant1/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            strings(authorization_server_metadata_urls(&u(
                "https://auth.example"
            ))),
            [
                "https://auth.example/.well-known/oauth-authorization-server",
                "https://auth.example/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn cl1_and_md6_protected_resource_urls() {
        assert_eq!(
            protected_resource_metadata_url(&u("https://mcp.tasks.example/mcp?x=1")).as_str(),
            "https://mcp.tasks.example/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            strings(protected_resource_metadata_urls(&u(
                "https://mcp.tasks.example/mcp/"
            ))),
            [
                "https://mcp.tasks.example/.well-known/oauth-protected-resource/mcp",
                "https://mcp.tasks.example/.well-known/oauth-protected-resource",
            ]
        );
        assert_eq!(
            strings(protected_resource_metadata_urls(&u(
                "http://127.0.0.1:3000"
            ))),
            ["http://127.0.0.1:3000/.well-known/oauth-protected-resource"]
        );
    }
}
