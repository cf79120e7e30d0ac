//! The Cedar policy engine: [`CedarSchema`] (the tools' own schemas as Cedar actions, with the
//! principal and session context), [`CedarPolicies`] (a validated policy set from `*.cedar`
//! files), and [`CedarEngine`] (a [`PolicyEngine`](crate::PolicyEngine) that reloads
//! atomically). The crate documentation describes the names policies use.

mod engine;
mod guard;
mod policies;
mod principal;
mod schema;

pub use engine::{CedarEngine, NO_PERMIT, ReloadSummary};
pub use policies::{
    CedarPolicies, ID_ANNOTATION, PolicyDiagnostic, PolicyLoadError, REASON_ANNOTATION,
};
pub use principal::{AttributeType, ClaimAttribute, ClaimsError, PrincipalMapping};
pub use schema::{CedarSchema, NAMESPACE, SchemaError};
