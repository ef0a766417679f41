//! Who is calling: what the auth layers ([`crate::auth`], [`crate::tls`]) put into a
//! request's extensions for the JSON-RPC handlers ([`crate::rpc`]) to read.

/// The authenticated caller of a request (a DID or OAuth client id), put into request
/// extensions by the auth layer. Absent when auth is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// The caller's granted scopes, present when per-method permissions are enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedScopes(pub Vec<String>);
