//! HTTP ingress: everything a client talks to. It validates and dispatches JSON-RPC,
//! records new tasks, publishes their commands and answers from the task store and the
//! task-event bus. It never runs handlers.
//!
//! Modules depend on one another as a tree: `router` → handlers → `state` → leaves.
//!
//! - [`router`]: routes → handlers, and [`serve`].
//! - [`state`]: the [`Ingress`] state every handler shares, and [`IngressOptions`].
//! - [`rpc`]: `POST /`: envelope validation, one module per method family.
//! - [`rest`]: A2A 1.0's HTTP+JSON binding: routes that run the same methods as [`rpc`].
//! - [`auth`]: Bearer tokens (Hydra introspection), DID request signatures, replay guard.
//! - [`payments`]: x402: the 402 answer, local checks, the nonce guard, `/verify`.
//! - [`tls`]: HTTPS, mutual TLS and the client certificate as the caller.
//! - [`error`]: the one place refusals become HTTP answers ([`error::EdgeError`]) and
//!   internal errors become JSON-RPC errors.
//! - [`version`]: A2A 0.3 and 1.0 on one endpoint: negotiation, each version's codes.
//! - [`limits`]: back-pressure and per-caller limits on messages (`[limits]`): HTTP 429.
//! - [`guard`]: the `Host` allow-list and the JSON content type (what a web page cannot do).
//! - `body`: reading request bodies within a limit, draining refused ones.
//! - [`caller`]: who is calling ([`Caller`], [`GrantedScopes`]), set by the auth layers.
//! - [`server`]: the HTTP/1.1 connection loop behind [`serve`] and [`tls::serve_tls`], and
//!   the [`ConnectionLimits`] it enforces (slow and idle clients).
//! - [`sse`]: task event streams (`message/stream`, `tasks/resubscribe`).
//! - [`options`]: the `[server]`, `[agent]`, `[auth]`, `[hydra]`, `[cache]` and `[mtls]`
//!   configuration sections.
//! - [`card`]: the agent card; [`did`]: `/did/resolve`.
//! - [`skills`]: skills from files and configuration, `/agent/skills…`, the private card.
//! - [`negotiation`]: `POST /agent/negotiation` and the `[negotiation]` section.
//! - [`probes`]: `/health` (liveness) and `/healthz` (readiness) of every process kind;
//!   [`health`], [`metrics`]: the ingress's probes and `/metrics`.

pub mod auth;
mod body;
pub mod caller;
pub mod card;
pub mod did;
pub mod error;
pub mod guard;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod negotiation;
pub mod options;
pub mod payments;
pub mod probes;
pub mod rest;
pub mod router;
pub mod rpc;
pub mod server;
pub mod skills;
pub mod sse;
pub mod state;
pub mod tls;
pub mod version;

pub use caller::{Caller, GrantedScopes};
pub use router::{serve, serve_with};
pub use server::ConnectionLimits;
pub use state::{Ingress, IngressOptions};
