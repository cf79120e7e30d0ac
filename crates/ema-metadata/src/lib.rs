#![doc = include_str!("../README.md")]
//!
//! # The pieces
//!
//! - [`AuthorizationServerMetadata`] (RFC 8414) with the EMA members: the ID-JAG grant profile
//!   (MD-1, MD-2), validation of a fetched document (issuer equality MD-5, `https` MD-8), and
//!   the profile check clients use (CL-3).
//! - [`ProtectedResourceMetadata`] (RFC 9728) for MCP servers (MD-6), validated by clients
//!   against the URL they used (CL-1, D-9).
//! - [`ClientMetadata`] (RFC 7591): a client's registration or Client ID Metadata Document,
//!   checked for the grants the ID-JAG profile needs when it lists it (MD-7).
//! - Well-known URLs: path insertion and the discovery orders of CL-1 and CL-2.
//! - `WWW-Authenticate` challenges, built by servers (RS-1, RS-6) and parsed by clients,
//!   several per header.
//! - [`ErrorCode`]: the OAuth error codes of token endpoints and of `Bearer` challenges, one
//!   vocabulary for servers and clients (unknown codes are kept, [`ErrorCode::Other`]), and
//!   [`ToErrorCode`], which each crate implements for its domain errors.
//! - [`UrlPolicy`]: `https` only, with a named opt-in for loopback `http` in development.
//! - [`urn`]: every protocol URN (grant types, token types, the ID-JAG profile, the client
//!   assertion type), defined once for all of ema-rs.
//!
//! Unknown metadata members are preserved; documents are parsed strictly (no duplicate members,
//! a size cap).

mod challenge;
mod documents;
mod error_code;
mod url_policy;
pub mod urn;
mod wellknown;

pub use challenge::{Challenge, ChallengeError, find_challenge, parse_challenges};
pub use documents::{
    AuthorizationServerMetadata, ClientMetadata, ID_JAG_PROFILE, ID_JAG_TOKEN_TYPE,
    JWT_BEARER_GRANT, MAX_DOCUMENT_LEN, MetadataError, ProtectedResourceMetadata,
    TOKEN_EXCHANGE_GRANT,
};
pub use error_code::{ErrorCode, ErrorCodeError, ToErrorCode, UnknownErrorCode};
pub use url_policy::{UrlError, UrlPolicy, is_loopback};
pub use wellknown::{
    authorization_server_metadata_url, authorization_server_metadata_urls,
    protected_resource_metadata_url, protected_resource_metadata_urls,
};
