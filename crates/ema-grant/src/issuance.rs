//! What a token endpoint issued, for the server's audit trail.
//!
//! Each successful response of the two grants carries one of these as an `http` response
//! extension (never sent): the IdP's token exchange an [`IdJagIssuance`], the authorization
//! server's jwt-bearer grant an [`IdJagRedemption`]. A server appends them to its audit trail
//! without parsing the token it just signed. Identifiers only, never a token.

use ema_id_jag::{ClientId, Issuer, JwtId, Resource, ScopeSet, Subject};

use crate::access_token::IdJagOrigin;

/// An ID-JAG the IdP issued by token exchange: its identifying claims.
///
/// Attached by [`TokenExchangeResponse::to_response`](crate::TokenExchangeResponse::to_response)
/// (and so by [`TokenExchangeGrant::handle`](crate::TokenExchangeGrant::handle)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdJagIssuance {
    /// `iss`: the IdP.
    pub issuer: Issuer,
    /// `sub`: the user at the IdP.
    pub subject: Subject,
    /// `aud`: the authorization server the ID-JAG is for.
    pub audience: Issuer,
    /// `client_id`: the client's id at that authorization server (JAG-4).
    pub client_id: ClientId,
    /// `resource`: the MCP servers it is for (empty when none was requested, D-15).
    pub resources: Vec<Resource>,
    /// `scope`: the scopes granted.
    pub scope: Option<ScopeSet>,
    /// `jti`: with `issuer`, the key that links the IdP's trail to the authorization server's.
    pub jti: JwtId,
}

/// An ID-JAG the authorization server redeemed for an access token.
///
/// Attached by [`AccessTokenResponse::to_response`](crate::AccessTokenResponse::to_response)
/// (and so by [`JwtBearerGrant::handle`](crate::JwtBearerGrant::handle)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdJagRedemption {
    /// The ID-JAG: the IdP's `iss`, its `jti` and `sub`.
    pub id_jag: IdJagOrigin,
    /// The client that redeemed it.
    pub client_id: ClientId,
    /// The access token's `sub` (the local subject the ID-JAG's `sub` resolved to).
    pub subject: String,
    /// The access token's audience: the MCP server.
    pub resource: Resource,
    /// The access token's scopes.
    pub scope: Option<ScopeSet>,
    /// The access token's `jti`: the MCP server's trail names the same value.
    pub access_token_jti: JwtId,
    /// The grant redeemed: [`JWT_BEARER`](crate::JWT_BEARER) (the ID-JAG), or
    /// [`AUTHORIZATION_CODE_GRANT`](crate::AUTHORIZATION_CODE_GRANT), where
    /// [`IdJagRedemption::id_jag`] names the IdP sign-in the code came from instead: the IdP,
    /// the ID token's `jti` (else its `sid`, else the sign-in's `nonce`) and the user's `sub`
    /// at the IdP.
    pub grant_type: &'static str,
}
