//! Pure data shared by every bindu crate. No I/O, no async runtime.
//!
//! - [`a2a`]: the A2A v0.3.0 object model (messages, parts, tasks, events, agent card,
//!   method params), camelCase on the wire, Bindu's snake_case names accepted on input.
//! - [`a2a10`]: the A2A 1.0 wire form and its lossless conversion to and from [`a2a`].
//! - [`jsonrpc`]: the JSON-RPC 2.0 envelope, the request validation pipeline
//!   (-32700 → -32600 → -32601 → -32602) and every error code we emit.
//! - [`bus`]: the public bus contract: task commands and task events with per-task
//!   sequence numbers, and the subject names other services can subscribe to.
//! - [`signing`]: the canonical bytes of a DID-signed request (Bindu's scheme).
//! - [`x402`]: the x402 v2 payment objects (402 body, payment payload, facilitator answers).

pub mod a2a;
pub mod a2a10;
pub mod bus;
pub mod jsonrpc;
pub mod signing;
pub mod x402;

pub use a2a::*;
