//! Route paths: derived from configured URLs, and the endpoint paths an operator chooses.

use std::fmt;

use url::Url;

/// The path of a URL string, `/` when it does not parse.
pub(crate) fn url_path(url: &str) -> String {
    Url::parse(url).map_or_else(|_| "/".to_owned(), |u| u.path().to_owned())
}

/// The path of a URL derived from `base` by `derive` (e.g. a well-known URL of an issuer).
pub(crate) fn path_of(base: &str, derive: fn(&Url) -> Url) -> String {
    Url::parse(base).map_or_else(|_| "/".to_owned(), |u| derive(&u).path().to_owned())
}

/// Why an endpoint path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointPathError {
    /// The path is not a plain absolute path.
    #[error("the {endpoint} path `{path}` {reason}")]
    Invalid {
        /// Which endpoint (`token`, `jwks`, `authorize`).
        endpoint: &'static str,
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two endpoints share a path.
    #[error("the {first} and {second} endpoints share the path `{path}`; give each its own")]
    Shared {
        /// One endpoint.
        first: &'static str,
        /// The other.
        second: &'static str,
        /// The shared path.
        path: String,
    },
}

/// The paths of a server's endpoints below its issuer URL: where the IdP's or authorization
/// server's router mounts them and what its metadata publishes (`token_endpoint`, `jwks_uri`,
/// `authorization_endpoint`), e.g. `/oauth2/v1/token` behind a proxy. Metadata stays at its
/// well-known path.
///
/// Each path starts with `/`, holds only letters, digits and `/ - . _ ~`, has no empty, `.` or
/// `..` segment (so it reaches the router exactly as published), does not start with
/// `/.well-known/`, and differs from the other two.
///
/// ```
/// use ema_server::EndpointPaths;
///
/// let paths = EndpointPaths::new("/oauth2/v1/token", "/oauth2/v1/keys", "/oauth2/v1/authorize")?;
/// assert_eq!(paths.url("https://idp.acme.example/", paths.token()), "https://idp.acme.example/oauth2/v1/token");
/// assert!(EndpointPaths::new("/token", "/token", "/authorize").is_err());
/// assert!(EndpointPaths::new("token", "/jwks", "/authorize").is_err());
/// # Ok::<(), ema_server::EndpointPathError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPaths {
    token: String,
    jwks: String,
    authorize: Option<String>,
}

impl Default for EndpointPaths {
    /// `/token`, `/jwks` and `/authorize`.
    fn default() -> Self {
        Self {
            token: "/token".into(),
            jwks: "/jwks".into(),
            authorize: Some("/authorize".into()),
        }
    }
}

impl EndpointPaths {
    /// Checked paths for an IdP's token endpoint, JWKS and authorization endpoint.
    pub fn new(
        token: impl Into<String>,
        jwks: impl Into<String>,
        authorize: impl Into<String>,
    ) -> Result<Self, EndpointPathError> {
        Self::checked(token.into(), jwks.into(), Some(authorize.into()))
    }

    /// Checked paths for an authorization server's token endpoint and JWKS (it has no
    /// authorization endpoint on the EMA path, CL-8).
    pub fn without_authorize(
        token: impl Into<String>,
        jwks: impl Into<String>,
    ) -> Result<Self, EndpointPathError> {
        Self::checked(token.into(), jwks.into(), None)
    }

    fn checked(
        token: String,
        jwks: String,
        authorize: Option<String>,
    ) -> Result<Self, EndpointPathError> {
        let paths = Self {
            token,
            jwks,
            authorize,
        };
        let mut named = vec![
            ("token", paths.token.as_str()),
            ("jwks", paths.jwks.as_str()),
        ];
        if let Some(authorize) = &paths.authorize {
            named.push(("authorize", authorize.as_str()));
        }
        for &(endpoint, path) in &named {
            check_path(endpoint, path)?;
        }
        for (i, (first, a)) in named.iter().enumerate() {
            if let Some((second, _)) = named.iter().skip(i + 1).find(|(_, b)| a == b) {
                return Err(EndpointPathError::Shared {
                    first,
                    second,
                    path: (*a).to_owned(),
                });
            }
        }
        Ok(paths)
    }

    /// The token endpoint's path.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The JWKS path.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The authorization endpoint's path, if there is one.
    pub fn authorize(&self) -> Option<&str> {
        self.authorize.as_deref()
    }

    /// The URL of `path` below `issuer` (a trailing `/` of the issuer is dropped).
    pub fn url(&self, issuer: &str, path: &str) -> String {
        format!("{}{path}", issuer.trim_end_matches('/'))
    }
}

fn check_path(endpoint: &'static str, path: &str) -> Result<(), EndpointPathError> {
    let invalid = |reason| EndpointPathError::Invalid {
        endpoint,
        path: path.to_owned(),
        reason,
    };
    if !path.starts_with('/') {
        return Err(invalid("must start with `/`"));
    }
    if path.contains(['?', '#']) {
        return Err(invalid("must not have a query or fragment"));
    }
    if !path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '.' | '_' | '~'))
    {
        return Err(invalid(
            "may hold only letters, digits and `/ - . _ ~` (no spaces, `%`, `{` or `*`)",
        ));
    }
    if path.len() > 1
        && path
            .split('/')
            .skip(1)
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(invalid(
            "must not have an empty, `.` or `..` segment (no `//`, no trailing `/`)",
        ));
    }
    if path.starts_with("/.well-known/") || path == "/.well-known" {
        return Err(invalid(
            "must not be under `/.well-known/` (the metadata lives there)",
        ));
    }
    Ok(())
}

impl fmt::Display for EndpointPaths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token {}, jwks {}", self.token, self.jwks)?;
        if let Some(authorize) = &self.authorize {
            write!(f, ", authorize {authorize}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_paths_pass_and_bad_ones_say_why() {
        assert!(EndpointPaths::new("/oauth2/v1/token", "/oauth2/v1/keys", "/login").is_ok());
        assert_eq!(
            EndpointPaths::new("/token", "/jwks", "/authorize"),
            Ok(EndpointPaths::default())
        );
        for (bad, why) in [
            ("token", "start with `/`"),
            ("/token?x=1", "query or fragment"),
            ("/token#f", "query or fragment"),
            ("/to ken", "only letters"),
            ("/{id}", "only letters"),
            ("/a%20b", "only letters"),
            ("/a//b", "segment"),
            ("/token/", "segment"),
            ("/a/../b", "segment"),
            ("/.well-known/token", "well-known"),
        ] {
            let err = EndpointPaths::new(bad, "/jwks", "/authorize").unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
            assert!(err.to_string().contains("token path"), "{bad}: {err}");
        }
        let err = EndpointPaths::new("/t", "/j", "/t").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the token and authorize endpoints share the path `/t`; give each its own"
        );
        let err = EndpointPaths::without_authorize("/k", "/k").unwrap_err();
        assert!(err.to_string().contains("token and jwks"), "{err}");
        // Without an authorization endpoint, `/authorize` is free for the token endpoint.
        let paths = EndpointPaths::without_authorize("/authorize", "/jwks").unwrap();
        assert_eq!((paths.token(), paths.authorize()), ("/authorize", None));
    }
}
