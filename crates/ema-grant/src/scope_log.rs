//! The scopes of one token request, for the server's log.

use ema_id_jag::ScopeSet;

/// The scopes a token request asked for and the scopes it was granted, as an `http` response
/// extension for the server's log (never sent). Scope names only: they are not secrets, and
/// logging both at each server shows which hop narrowed a request (the IdP under TX-9, the
/// authorization server under D-5, D-20, D-21).
///
/// [`JwtBearerGrant::handle`](crate::JwtBearerGrant::handle) attaches one to every response
/// whose form could be read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ScopeLog {
    /// The request's `scope` parameter, when present and well-formed.
    pub requested: Option<ScopeSet>,
    /// The scopes granted, when a token was issued with any.
    pub granted: Option<ScopeSet>,
}

impl ScopeLog {
    /// A record of `requested` and `granted`.
    pub fn new(requested: Option<ScopeSet>, granted: Option<ScopeSet>) -> Self {
        Self { requested, granted }
    }
}
