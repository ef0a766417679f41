//! HTTP ingress: everything a client talks to. It validates and dispatches JSON-RPC,
//! records new tasks, publishes their commands and answers from the task store and the
//! task-event bus. It never runs handlers.
//!
//! - [`app`]: the [`Ingress`] state, the router and [`serve`].
//! - [`auth`]: Bearer tokens (Hydra introspection), DID request signatures, replay guard.
//! - [`rpc`]: `POST /`: body limit, envelope validation, one module per method family.
//! - `server`: the HTTP/1.1 connection loop behind [`serve`] and [`tls::serve_tls`].
//! - [`sse`]: task event streams (`message/stream`, `tasks/resubscribe`).
//! - [`error`]: the one place internal errors become JSON-RPC errors.
//! - [`options`]: the `[server]`, `[agent]`, `[auth]`, `[hydra]`, `[cache]` and `[mtls]`
//!   configuration sections.
//! - [`card`]: the agent card; [`did`]: `/did/resolve`.
//! - [`health`], [`metrics`]: `/health`, `/healthz`, `/metrics`.

pub mod app;
pub mod auth;
pub mod card;
pub mod did;
pub mod error;
pub mod health;
pub mod metrics;
pub mod options;
pub mod rpc;
mod server;
pub mod sse;
pub mod tls;

pub use app::{serve, Caller, GrantedScopes, Ingress, IngressOptions};
