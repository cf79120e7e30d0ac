//! What happened to the scopes of one acquisition, hop by hop: the diagnostics of a refused
//! step-up (CL-10). Scope names only: they are not secrets (SEC-10 covers tokens and secrets).

use std::fmt;

use ema_id_jag::ScopeSet;

use crate::error::Hop;

/// The scopes of one access-token acquisition along the hops: what the client asked for, what
/// the IdP granted in the ID-JAG, what the authorization server granted, and what the MCP
/// server requires. [`ScopeReport::narrowed_by`] names the hop that dropped a requested scope.
///
/// ```
/// use ema_client::{Hop, ScopeReport};
/// use ema_id_jag::ScopeSet;
///
/// let scopes = |s| ScopeSet::parse(s).unwrap();
/// let report = ScopeReport::new(scopes("tasks.read tasks.write"))
///     .with_granted_by_idp(Some(scopes("tasks.read")));
/// assert_eq!(report.narrowed_by(), Some(Hop::TokenExchange));
/// assert_eq!(
///     report.to_string(),
///     "requested `tasks.read tasks.write`; the IdP granted `tasks.read` in the ID-JAG; \
///      the IdP narrowed the request (withheld `tasks.write`)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ScopeReport {
    /// The scopes asked for at the token exchange (and at the authorization server).
    pub requested: ScopeSet,
    /// The scopes the IdP granted: the ID-JAG's `scope` claim (read unverified, for diagnostics
    /// only), else the token-exchange response's `scope` (TX-9); `None` when neither names any
    /// (D-20: the authorization server's policy decides).
    pub granted_by_idp: Option<ScopeSet>,
    /// The scopes in the access token; `None` when the authorization server refused or did not
    /// say.
    pub granted_by_as: Option<ScopeSet>,
    /// The scopes the MCP server's last `insufficient_scope` challenge required.
    pub required: Option<ScopeSet>,
}

impl ScopeReport {
    /// A report of a request for `requested`.
    pub fn new(requested: ScopeSet) -> Self {
        Self {
            requested,
            ..Self::default()
        }
    }

    /// Sets what the IdP granted.
    #[must_use]
    pub fn with_granted_by_idp(mut self, granted: Option<ScopeSet>) -> Self {
        self.granted_by_idp = granted;
        self
    }

    /// Sets what the authorization server granted.
    #[must_use]
    pub fn with_granted_by_as(mut self, granted: Option<ScopeSet>) -> Self {
        self.granted_by_as = granted;
        self
    }

    /// Sets what the MCP server requires.
    #[must_use]
    pub fn with_required(mut self, required: Option<ScopeSet>) -> Self {
        self.required = required;
        self
    }

    /// The requested scopes the IdP did not grant (empty when it granted all, or did not say).
    pub fn withheld_by_idp(&self) -> ScopeSet {
        missing(&self.requested, self.granted_by_idp.as_ref())
    }

    /// The requested scopes the authorization server did not grant although the IdP did.
    pub fn withheld_by_authorization_server(&self) -> ScopeSet {
        let mut withheld = missing(&self.requested, self.granted_by_as.as_ref());
        withheld.retain(|s| self.granted_by_idp.as_ref().is_none_or(|g| g.contains(s)));
        withheld
    }

    /// The required scopes that were never asked for (the client's own scope selection).
    pub fn never_requested(&self) -> ScopeSet {
        let mut absent = self.required.clone().unwrap_or_default();
        absent.retain(|s| !self.requested.contains(s));
        absent
    }

    /// The hop that narrowed the request: the IdP ([`Hop::TokenExchange`], TX-9) when its
    /// ID-JAG lacks a requested scope, else the authorization server ([`Hop::JwtBearer`]) when
    /// its token lacks one; `None` when neither is known to have narrowed it.
    pub fn narrowed_by(&self) -> Option<Hop> {
        if !self.withheld_by_idp().is_empty() {
            Some(Hop::TokenExchange)
        } else if !self.withheld_by_authorization_server().is_empty() {
            Some(Hop::JwtBearer)
        } else {
            None
        }
    }
}

fn missing(requested: &ScopeSet, granted: Option<&ScopeSet>) -> ScopeSet {
    let mut missing = ScopeSet::new();
    if let Some(granted) = granted {
        for scope in requested.iter().filter(|s| !granted.contains(s)) {
            missing.insert(scope);
        }
    }
    missing
}

/// `` `a b` ``, or `(none)` for the empty set.
struct Shown<'a>(&'a ScopeSet);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(none)")
        } else {
            write!(f, "`{}`", self.0)
        }
    }
}

impl fmt::Display for ScopeReport {
    /// One sentence, e.g. "requested `tasks.read tasks.write`; the IdP granted `tasks.read`
    /// in the ID-JAG; the MCP server requires `tasks.write`; the IdP narrowed the request
    /// (withheld `tasks.write`)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "requested {}", Shown(&self.requested))?;
        match &self.granted_by_idp {
            Some(granted) => write!(f, "; the IdP granted {} in the ID-JAG", Shown(granted))?,
            None => f.write_str("; the ID-JAG names no scope")?,
        }
        if let Some(granted) = &self.granted_by_as {
            write!(f, "; the authorization server granted {}", Shown(granted))?;
        }
        if let Some(required) = &self.required {
            write!(f, "; the MCP server requires {}", Shown(required))?;
        }
        match self.narrowed_by() {
            Some(Hop::TokenExchange) => write!(
                f,
                "; the IdP narrowed the request (withheld {})",
                Shown(&self.withheld_by_idp())
            ),
            Some(_) => write!(
                f,
                "; the authorization server narrowed the request (withheld {})",
                Shown(&self.withheld_by_authorization_server())
            ),
            None if !self.never_requested().is_empty() => write!(
                f,
                "; {} was never requested",
                Shown(&self.never_requested())
            ),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn cl10_the_narrowing_hop_is_named() {
        let idp = ScopeReport::new(scopes("tasks.read tasks.write"))
            .with_granted_by_idp(Some(scopes("tasks.read")))
            .with_required(Some(scopes("tasks.write")));
        assert_eq!(idp.narrowed_by(), Some(Hop::TokenExchange));
        assert_eq!(
            idp.to_string(),
            "requested `tasks.read tasks.write`; the IdP granted `tasks.read` in the ID-JAG; \
             the MCP server requires `tasks.write`; the IdP narrowed the request (withheld \
             `tasks.write`)"
        );
        // The IdP granted everything, the token lacks a scope: the authorization server.
        let authorization_server = ScopeReport::new(scopes("tasks.read tasks.write"))
            .with_granted_by_as(Some(scopes("tasks.read")));
        assert_eq!(authorization_server.narrowed_by(), Some(Hop::JwtBearer));
        assert!(
            authorization_server
                .to_string()
                .ends_with("the ID-JAG names no scope; the authorization server granted `tasks.read`; the authorization server narrowed the request (withheld `tasks.write`)"),
            "{authorization_server}"
        );
        // Nobody narrowed; the server wants a scope never asked for.
        let none = ScopeReport::new(scopes("tasks.read"))
            .with_granted_by_idp(Some(scopes("tasks.read")))
            .with_granted_by_as(Some(scopes("tasks.read")))
            .with_required(Some(scopes("tasks.admin")));
        assert_eq!(none.narrowed_by(), None);
        assert!(
            none.to_string()
                .ends_with("`tasks.admin` was never requested"),
            "{none}"
        );
        let empty = ScopeReport::new(ScopeSet::new()).with_granted_by_idp(Some(ScopeSet::new()));
        assert_eq!(
            empty.to_string(),
            "requested (none); the IdP granted (none) in the ID-JAG"
        );
    }
}
