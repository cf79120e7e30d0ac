#![doc = include_str!("../README.md")]

mod authorizer;
mod authorizer_impl;
#[cfg(feature = "cedar")]
pub mod cedar;
pub mod inspect;
mod model;
pub mod pin;
pub mod session;

pub use authorizer::{BoxFuture, Inspection, PolicyEngine, ResultInspector, ToolCallAuthorizer};
pub use authorizer_impl::{Authorizer, AuthorizerBuilder};
#[cfg(feature = "cedar")]
pub use cedar::{CedarEngine, CedarPolicies, CedarSchema, PrincipalMapping};
pub use inspect::{SecretDetector, SecretKind};
pub use model::{
    Decision, Effect, Principal, SessionContext, SessionId, ToolAnnotations, ToolCall,
    ToolDefinition,
};
pub use pin::{ChangeKind, PinResponse, ToolChange, ToolPin, ToolPins};
pub use session::{Clock, SessionError, SessionTracker, SystemClock};
