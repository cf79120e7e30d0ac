//! Runtime authorization of MCP tool calls (work in progress: the crate README replaces this
//! page when the engine lands).

mod authorizer;
pub mod inspect;
mod model;
pub mod session;

pub use authorizer::{BoxFuture, Inspection, PolicyEngine, ResultInspector, ToolCallAuthorizer};
pub use inspect::{SecretDetector, SecretKind};
pub use model::{
    Decision, Effect, Principal, SessionContext, SessionId, ToolAnnotations, ToolCall,
    ToolDefinition,
};
pub use session::{Clock, SessionError, SessionTracker, SystemClock};
