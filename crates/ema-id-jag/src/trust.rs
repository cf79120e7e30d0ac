//! Trusted issuers (SEC-3, SEC-4, D-14) and governed resources with their scopes (D-4, D-5,
//! D-20, D-21).

use std::collections::{BTreeSet, HashMap};

use ema_jose::AlgorithmSet;

use crate::ids::{Issuer, Resource, ScopeSet};

/// An IdP whose ID-JAGs this authorization server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustedIssuer {
    /// The issuer identifier, matched exactly against `iss` (D-12).
    pub issuer: Issuer,
    /// Algorithms accepted from this issuer (SEC-4); default ES256, RS256, PS256, EdDSA (D-26);
    /// ES384, ES512, RS384, RS512, PS384 and PS512 are opt-in.
    pub algorithms: AlgorithmSet,
    /// For a multi-tenant issuer: the tenant every ID-JAG must name (D-14).
    pub tenant: Option<String>,
    /// SAML issuers whose `sub_id` values this issuer may assert (SEC-12). Empty: `sub_id` is
    /// never used for subject resolution.
    pub sub_id_issuers: Vec<String>,
}

impl TrustedIssuer {
    /// Trust `issuer` with the default algorithms and no tenant restriction.
    pub fn new(issuer: impl Into<Issuer>) -> Self {
        Self {
            issuer: issuer.into(),
            algorithms: AlgorithmSet::DEFAULT,
            tenant: None,
            sub_id_issuers: Vec::new(),
        }
    }

    /// Restricts the algorithms.
    #[must_use]
    pub fn with_algorithms(mut self, algorithms: AlgorithmSet) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// Requires a tenant (D-14).
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }
}

/// The issuers an authorization server trusts, by exact issuer identifier.
#[derive(Debug, Clone, Default)]
pub struct TrustRegistry {
    issuers: HashMap<String, TrustedIssuer>,
}

impl TrustRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an issuer.
    #[must_use]
    pub fn with(mut self, issuer: TrustedIssuer) -> Self {
        self.issuers
            .insert(issuer.issuer.as_str().to_owned(), issuer);
        self
    }

    /// Looks up `iss` exactly (D-12).
    pub fn get(&self, iss: &str) -> Option<&TrustedIssuer> {
        self.issuers.get(iss)
    }

    /// Whether no issuer is trusted (every ID-JAG would be refused).
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }
}

/// What to do with a scope inside an ID-JAG that the resource does not define (D-21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnknownScopes {
    /// Refuse the ID-JAG with `invalid_grant` (the default).
    #[default]
    Reject,
    /// Drop the scope. Never widens access.
    Drop,
}

/// OpenID Connect scopes that leak from SSO into ID-JAGs; dropped silently (D-21).
pub const OIDC_SCOPES: [&str; 6] = [
    "openid",
    "profile",
    "email",
    "address",
    "phone",
    "offline_access",
];

/// A protected resource (an MCP server) this authorization server issues tokens for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceConfig {
    /// The resource identifier, matched exactly (D-12); becomes the access token's `aud`.
    pub id: Resource,
    /// Every scope the resource defines.
    pub scopes: BTreeSet<String>,
    /// Granted when an ID-JAG has no `scope` and the request names none (D-20).
    pub default_scopes: ScopeSet,
    /// Policy for undefined scopes in an ID-JAG (D-21).
    pub unknown_scopes: UnknownScopes,
    /// Whether only DPoP-bound tokens may be issued for this resource (AS-18).
    pub require_dpop: bool,
}

impl ResourceConfig {
    /// A resource defining `scopes`, with no default scopes.
    pub fn new<S: Into<String>>(
        id: impl Into<Resource>,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            id: id.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            default_scopes: ScopeSet::new(),
            unknown_scopes: UnknownScopes::Reject,
            require_dpop: false,
        }
    }

    /// Sets the default scopes (D-20).
    #[must_use]
    pub fn with_default_scopes(mut self, scopes: ScopeSet) -> Self {
        self.default_scopes = scopes;
        self
    }

    /// Sets the policy for undefined scopes (D-21).
    #[must_use]
    pub fn with_unknown_scopes(mut self, policy: UnknownScopes) -> Self {
        self.unknown_scopes = policy;
        self
    }

    /// Requires DPoP-bound tokens (AS-18).
    #[must_use]
    pub fn with_require_dpop(mut self, require: bool) -> Self {
        self.require_dpop = require;
        self
    }

    /// Computes the scopes to grant (D-5, D-20, D-21). `None` means a token without `scope`.
    pub fn grant_scopes(
        &self,
        id_jag_scope: Option<&ScopeSet>,
        requested: Option<&ScopeSet>,
    ) -> Result<Option<ScopeSet>, GrantScopeError> {
        let Some(id_jag_scope) = id_jag_scope else {
            // D-20: no `scope` claim: the resource's own policy decides.
            let granted = match requested {
                Some(req) => {
                    if let Some(undefined) = req.iter().find(|s| !self.scopes.contains(*s)) {
                        return Err(GrantScopeError::UndefinedRequested {
                            scope: undefined.to_owned(),
                        });
                    }
                    req.clone()
                }
                None => self.default_scopes.clone(),
            };
            return Ok((!granted.is_empty()).then_some(granted));
        };
        // D-21: OIDC scopes are dropped; other undefined scopes are refused or dropped.
        let mut offered = ScopeSet::new();
        for scope in id_jag_scope.iter() {
            if self.scopes.contains(scope) {
                offered.insert(scope);
            } else if OIDC_SCOPES.contains(&scope) || self.unknown_scopes == UnknownScopes::Drop {
                continue;
            } else {
                // AS-12 / D-21: scope-namespace collision is refused by default.
                return Err(GrantScopeError::UndefinedInIdJag {
                    scope: scope.to_owned(),
                });
            }
        }
        // D-5 / AS-13: requested scopes must all be in the ID-JAG; asking fewer is fine.
        let granted = match requested {
            Some(req) => {
                let mut missing = req.clone();
                missing.retain(|s| !offered.contains(s));
                if !missing.is_empty() {
                    return Err(GrantScopeError::NotInIdJag {
                        scope: missing.to_string(),
                        carried: offered,
                    });
                }
                req.clone()
            }
            None => offered,
        };
        // D-5: an empty result is `invalid_scope` when the ID-JAG carried `scope`.
        if granted.is_empty() {
            return Err(GrantScopeError::Empty);
        }
        Ok(Some(granted))
    }
}

/// Why no scopes could be granted (D-5, D-20, D-21).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantScopeError {
    /// The ID-JAG carries a scope the resource does not define (D-21 → `invalid_grant`).
    #[error("ID-JAG scope `{scope}` is not defined by the resource")]
    UndefinedInIdJag {
        /// The scope.
        scope: String,
    },
    /// The request asks for scopes the ID-JAG does not grant (D-5 → `invalid_scope`): the IdP
    /// narrowed the request, or the client asks the authorization server for more than it asked
    /// the IdP for.
    #[error("requested scope `{scope}` is not granted by the ID-JAG (it carries `{carried}`)")]
    NotInIdJag {
        /// Every requested scope the ID-JAG does not carry, space-separated (sorted).
        scope: String,
        /// The ID-JAG's scopes that the resource defines (after D-21), scope names only.
        carried: ScopeSet,
    },
    /// The request asks for a scope the resource does not define (D-20 → `invalid_scope`).
    #[error("requested scope `{scope}` is not defined by the resource")]
    UndefinedRequested {
        /// The scope.
        scope: String,
    },
    /// Nothing is left to grant (D-5 → `invalid_scope`).
    #[error("no scope left to grant")]
    Empty,
}

/// Why no resource could be selected (D-4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// A `resource` claim value is not governed here (AS-10, D-4a → `invalid_grant`).
    #[error("ID-JAG resource `{resource}` is not governed by this authorization server")]
    NotGoverned {
        /// The resource.
        resource: String,
    },
    /// The request's `resource` is not one of the claim's (D-4c → `invalid_target`).
    #[error("requested resource is not in the ID-JAG")]
    NotInIdJag,
    /// The request's `resource` is not governed here (→ `invalid_target`).
    #[error("requested resource is not governed by this authorization server")]
    UnknownRequested,
    /// The claim names several resources and the request does not choose one
    /// (→ `invalid_target`).
    #[error("the ID-JAG names several resources; the request must choose one")]
    Ambiguous,
    /// No claim, no request parameter, and not exactly one registered resource
    /// (D-4b → `invalid_grant`).
    #[error("no resource could be selected")]
    NoneSelected,
}

/// The resources an authorization server governs.
#[derive(Debug, Clone, Default)]
pub struct ResourceRegistry {
    resources: HashMap<String, ResourceConfig>,
}

impl ResourceRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a resource.
    #[must_use]
    pub fn with(mut self, resource: ResourceConfig) -> Self {
        self.resources
            .insert(resource.id.as_str().to_owned(), resource);
        self
    }

    /// Looks up a resource exactly (D-12).
    pub fn get(&self, id: &str) -> Option<&ResourceConfig> {
        self.resources.get(id)
    }

    /// Every registered resource.
    pub fn iter(&self) -> impl Iterator<Item = &ResourceConfig> {
        self.resources.values()
    }

    /// Whether no resource is governed (no access token could be issued).
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Selects the resource the access token is for (D-4):
    /// (a) every `resource` claim value must be governed here (AS-10);
    /// (b) without a claim, the request's `resource` if governed, else the sole registered
    /// resource;
    /// (c) with both, the request's value must be one of the claim's.
    pub fn select(
        &self,
        claim: Option<&[Resource]>,
        requested: Option<&str>,
    ) -> Result<&ResourceConfig, ResourceError> {
        match claim {
            Some(values) => {
                // D-4(a) / AS-10 / SEC-6.
                let mut governed = Vec::with_capacity(values.len());
                for value in values {
                    let config =
                        self.get(value.as_str())
                            .ok_or_else(|| ResourceError::NotGoverned {
                                resource: value.as_str().to_owned(),
                            })?;
                    governed.push(config);
                }
                match (requested, governed.as_slice()) {
                    // D-4(c): the request must name one of the claim's values.
                    (Some(req), _) => governed
                        .iter()
                        .find(|c| c.id == req)
                        .copied()
                        .ok_or(ResourceError::NotInIdJag),
                    (None, [only]) => Ok(only),
                    (None, _) => Err(ResourceError::Ambiguous),
                }
            }
            // D-4(b).
            None => match requested {
                Some(req) => self.get(req).ok_or(ResourceError::UnknownRequested),
                None => {
                    let mut all = self.resources.values();
                    match (all.next(), all.next()) {
                        (Some(only), None) => Ok(only),
                        _ => Err(ResourceError::NoneSelected),
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    fn tasks() -> ResourceConfig {
        ResourceConfig::new(
            "https://mcp.tasks.example/mcp",
            ["tasks.read", "tasks.write"],
        )
        .with_default_scopes(scopes("tasks.read"))
    }

    #[test]
    fn d5_scope_rules() {
        let r = tasks();
        let jag = scopes("tasks.read tasks.write");
        assert_eq!(r.grant_scopes(Some(&jag), None), Ok(Some(jag.clone())));
        // Asking for fewer is never refused.
        assert_eq!(
            r.grant_scopes(Some(&jag), Some(&scopes("tasks.read"))),
            Ok(Some(scopes("tasks.read")))
        );
        // Asking for more is invalid_scope.
        assert_eq!(
            r.grant_scopes(
                Some(&scopes("tasks.read")),
                Some(&scopes("tasks.read tasks.write"))
            ),
            Err(GrantScopeError::NotInIdJag {
                scope: "tasks.write".into(),
                carried: scopes("tasks.read"),
            })
        );
        // Every missing scope is named, with what the ID-JAG carries (for the diagnostics).
        assert_eq!(
            r.grant_scopes(
                Some(&scopes("openid")),
                Some(&scopes("tasks.read tasks.write"))
            ),
            Err(GrantScopeError::NotInIdJag {
                scope: "tasks.read tasks.write".into(),
                carried: ScopeSet::new(),
            })
        );
        // Only OIDC scopes: empty result is invalid_scope.
        assert_eq!(
            r.grant_scopes(Some(&scopes("openid profile")), None),
            Err(GrantScopeError::Empty)
        );
        assert_eq!(
            r.grant_scopes(Some(&scopes("")), None),
            Err(GrantScopeError::Empty)
        );
    }

    #[test]
    fn d20_no_scope_claim() {
        let r = tasks();
        assert_eq!(r.grant_scopes(None, None), Ok(Some(scopes("tasks.read"))));
        assert_eq!(
            r.grant_scopes(None, Some(&scopes("tasks.write"))),
            Ok(Some(scopes("tasks.write")))
        );
        assert_eq!(
            r.grant_scopes(None, Some(&scopes("admin"))),
            Err(GrantScopeError::UndefinedRequested {
                scope: "admin".into()
            })
        );
        let bare = ResourceConfig::new("r", ["a"]);
        assert_eq!(bare.grant_scopes(None, None), Ok(None));
    }

    #[test]
    fn d21_unknown_scopes_in_the_id_jag() {
        let r = tasks();
        assert_eq!(
            r.grant_scopes(Some(&scopes("openid tasks.read offline_access")), None),
            Ok(Some(scopes("tasks.read")))
        );
        assert_eq!(
            r.grant_scopes(Some(&scopes("tasks.read calendar.read")), None),
            Err(GrantScopeError::UndefinedInIdJag {
                scope: "calendar.read".into()
            })
        );
        let lax = tasks().with_unknown_scopes(UnknownScopes::Drop);
        assert_eq!(
            lax.grant_scopes(Some(&scopes("tasks.read calendar.read")), None),
            Ok(Some(scopes("tasks.read")))
        );
        // Dropping never widens: a dropped scope cannot be requested.
        assert_eq!(
            lax.grant_scopes(
                Some(&scopes("tasks.read calendar.read")),
                Some(&scopes("calendar.read"))
            ),
            Err(GrantScopeError::NotInIdJag {
                scope: "calendar.read".into(),
                carried: scopes("tasks.read"),
            })
        );
    }

    #[test]
    fn d4_resource_selection() {
        let a = Resource::new("https://a.example/mcp");
        let b = Resource::new("https://b.example/mcp");
        let reg = ResourceRegistry::new()
            .with(ResourceConfig::new(a.clone(), ["x"]))
            .with(ResourceConfig::new(b.clone(), ["x"]));
        let one = [a.clone()];
        let both = [a.clone(), b.clone()];
        let stranger = [Resource::new("https://c.example/mcp")];
        assert_eq!(reg.select(Some(&one), None).unwrap().id, a);
        assert_eq!(reg.select(Some(&both), Some(b.as_str())).unwrap().id, b);
        assert_eq!(
            reg.select(Some(&both), None).unwrap_err(),
            ResourceError::Ambiguous
        );
        assert_eq!(
            reg.select(Some(&one), Some(b.as_str())).unwrap_err(),
            ResourceError::NotInIdJag
        );
        assert!(matches!(
            reg.select(Some(&stranger), None),
            Err(ResourceError::NotGoverned { .. })
        ));
        assert_eq!(reg.select(None, Some(b.as_str())).unwrap().id, b);
        assert_eq!(
            reg.select(None, Some("https://c.example/mcp")).unwrap_err(),
            ResourceError::UnknownRequested
        );
        assert_eq!(
            reg.select(None, None).unwrap_err(),
            ResourceError::NoneSelected
        );
        let single = ResourceRegistry::new().with(ResourceConfig::new(a.clone(), ["x"]));
        assert_eq!(single.select(None, None).unwrap().id, a);
        // D-12: no trailing-slash folding.
        assert!(matches!(
            single.select(Some(&[Resource::new("https://a.example/mcp/")]), None),
            Err(ResourceError::NotGoverned { .. })
        ));
    }
}
