//! rmcp integration (feature `rmcp`): the verified [`Principal`] inside rmcp tool handlers, and
//! the tool names of an rmcp [`ToolRouter`] for [`BearerAuthBuilder::tools`].
//!
//! rmcp's Streamable HTTP server puts the HTTP request parts (`http::request::Parts`) into each
//! request's context; behind [`BearerAuth`] they carry the [`Principal`]. A tool takes it as an
//! argument, like rmcp's own extractors:
//!
//! ```
//! use ema_server::Principal;
//! use rmcp::handler::server::router::tool::ToolRouter;
//! use rmcp::{ServerHandler, tool, tool_handler, tool_router};
//!
//! #[derive(Clone)]
//! struct Notes {
//!     tool_router: ToolRouter<Self>,
//! }
//!
//! #[tool_router]
//! impl Notes {
//!     #[tool(description = "Who am I?")]
//!     fn whoami(&self, who: Principal) -> String {
//!         who.subject().to_owned()
//!     }
//! }
//!
//! #[tool_handler(router = self.tool_router)]
//! impl ServerHandler for Notes {}
//!
//! // The declared tools, for `BearerAuth::builder(..).tools(..)`.
//! assert_eq!(ema_server::rmcp::tool_names(&Notes::tool_router()), ["whoami"]);
//! ```
//!
//! A tool that runs with and without a principal uses [`principal`] on its
//! `RequestContext<RoleServer>` instead.
//!
//! [`BearerAuth`]: crate::BearerAuth
//! [`BearerAuthBuilder::tools`]: crate::BearerAuthBuilder::tools

use rmcp::handler::server::common::{AsRequestContext, FromContextPart};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};

use crate::principal::Principal;

/// The verified principal of the HTTP request an rmcp request came in, or `None` when the
/// bearer layer did not run (or the transport is not HTTP).
///
/// ```
/// use rmcp::RoleServer;
/// use rmcp::service::RequestContext;
///
/// fn greeting(ctx: &RequestContext<RoleServer>) -> String {
///     match ema_server::rmcp::principal(ctx) {
///         Some(who) => format!("hello {}", who.subject()),
///         None => "hello".to_owned(),
///     }
/// }
/// # let _ = greeting;
/// ```
pub fn principal(ctx: &RequestContext<RoleServer>) -> Option<Principal> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>())
        // A principal put on the rmcp request itself (in-process transports, tests).
        .or_else(|| ctx.extensions.get::<Principal>())
        .cloned()
}

/// The names of the tools `router` serves, for [`BearerAuthBuilder::tools`], so that tool
/// scopes are checked against the tools the server really has.
///
/// [`BearerAuthBuilder::tools`]: crate::BearerAuthBuilder::tools
pub fn tool_names<S: Send + Sync + 'static>(router: &ToolRouter<S>) -> Vec<String> {
    router
        .list_all()
        .into_iter()
        .map(|tool| tool.name.into_owned())
        .collect()
}

/// A tool argument of type [`Principal`]: the caller, or an error answering the call when the
/// bearer layer did not run (a configuration mistake; the request is never served
/// anonymously).
impl<C: AsRequestContext> FromContextPart<C> for Principal {
    fn from_context_part(context: &mut C) -> Result<Self, ErrorData> {
        principal(context.as_request_context()).ok_or_else(|| {
            tracing::warn!("an rmcp tool wants the principal but the bearer layer did not run");
            ErrorData::invalid_request(
                "no verified principal on the request: the bearer layer did not run",
                None,
            )
        })
    }
}
