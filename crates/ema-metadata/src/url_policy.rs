//! Which URLs a client may fetch or trust: `https` only (MD-8), with a named opt-in for
//! loopback `http` during development.

use url::{Host, Url};

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a valid absolute URL.
    #[error("`{field}` is not a valid URL")]
    Invalid {
        /// The metadata member or parameter.
        field: &'static str,
    },
    /// Not `https` (and not an allowed loopback `http` URL) (MD-8, SEC-10).
    #[error("`{field}` is not an https URL")]
    NotHttps {
        /// The metadata member or parameter.
        field: &'static str,
    },
    /// Carries user info, or a fragment.
    #[error("`{field}` carries user info or a fragment")]
    Forbidden {
        /// The metadata member or parameter.
        field: &'static str,
    },
}

/// The rule for URLs taken from metadata and challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UrlPolicy {
    allow_loopback_http: bool,
}

impl UrlPolicy {
    /// `https` only (MD-8). The default.
    pub const fn https_only() -> Self {
        Self {
            allow_loopback_http: false,
        }
    }

    /// Also accepts `http` URLs whose host is a loopback address or `localhost`. For local
    /// development and tests only: never for production deployments.
    pub const fn insecure_allow_loopback_http() -> Self {
        Self {
            allow_loopback_http: true,
        }
    }

    /// Whether loopback `http` is allowed.
    pub const fn allows_loopback_http(&self) -> bool {
        self.allow_loopback_http
    }

    /// Parses `value` and checks it against the policy.
    pub fn check(&self, field: &'static str, value: &str) -> Result<Url, UrlError> {
        let url = Url::parse(value).map_err(|_| UrlError::Invalid { field })?;
        self.check_url(field, &url)?;
        Ok(url)
    }

    /// Checks a parsed URL against the policy.
    pub fn check_url(&self, field: &'static str, url: &Url) -> Result<(), UrlError> {
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err(UrlError::Forbidden { field });
        }
        match url.scheme() {
            "https" if url.host().is_some() => Ok(()),
            "http" if self.allow_loopback_http && is_loopback(url) => Ok(()),
            _ => Err(UrlError::NotHttps { field }),
        }
    }
}

/// Whether the URL's host is `localhost` or a loopback IP address.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md8_https_only_unless_loopback_opt_in() {
        let strict = UrlPolicy::https_only();
        let dev = UrlPolicy::insecure_allow_loopback_http();
        assert!(strict.check("x", "https://as.example/token").is_ok());
        assert_eq!(
            strict.check("x", "http://as.example/token"),
            Err(UrlError::NotHttps { field: "x" })
        );
        assert_eq!(
            strict.check("x", "http://127.0.0.1:8080/token"),
            Err(UrlError::NotHttps { field: "x" })
        );
        assert!(dev.check("x", "http://127.0.0.1:8080/token").is_ok());
        assert!(dev.check("x", "http://[::1]:8080/token").is_ok());
        assert!(dev.check("x", "http://localhost:8080/token").is_ok());
        assert_eq!(
            dev.check("x", "http://10.0.0.1/token"),
            Err(UrlError::NotHttps { field: "x" })
        );
        assert_eq!(
            dev.check("x", "http://localhost.evil.example/"),
            Err(UrlError::NotHttps { field: "x" })
        );
        assert_eq!(
            strict.check("x", "https://u:p@as.example/"),
            Err(UrlError::Forbidden { field: "x" })
        );
        assert_eq!(
            strict.check("x", "https://as.example/#f"),
            Err(UrlError::Forbidden { field: "x" })
        );
        assert_eq!(
            strict.check("x", "not a url"),
            Err(UrlError::Invalid { field: "x" })
        );
        assert_eq!(
            strict.check("x", "file:///etc/passwd"),
            Err(UrlError::NotHttps { field: "x" })
        );
    }
}
