//! Ports and domain logic shared by ingress and workers.
//!
//! - [`state`]: the task state machine (which transitions are legal).
//! - [`store`]: the [`store::TaskStore`] port (tasks, contexts, push configs, feedback) and
//!   its backends (`memory`); [`store::conformance`] is the suite every backend must pass.
//! - [`bus`]: the [`bus::Bus`] port (task work queue, task events, cancel signals) and its
//!   backends (`memory`); [`bus::conformance`] likewise.
//! - [`ledger`]: the task ledger, the one owner of "persist, then announce" (accept,
//!   transition, cancel, announce) that ingress and workers both go through.
//! - [`config`]: the layering of configuration (defaults < TOML < environment < CLI flags,
//!   through figment): sections, their keys and variables, typed fields, errors naming the
//!   key and its source.
//! - [`metrics`]: the store's and the bus's Prometheus metrics (one set per process).
//! - [`cpu`]: CPU-heavy work kept from stalling the async runtime's other tasks.
//! - [`time`]: timestamps as the wire wants them, and unix seconds.
//! - [`retry`]: back-off with jitter, cancellable, and `Retry-After`.
//! - [`sse`]: reading server-sent event streams (bounded), for every client in the workspace.
//! - [`x402`]: payments: pricing, local verification of a payment, the facilitator port.
//! - [`trace`]: W3C trace context across processes (bus messages, outgoing HTTP calls).

pub mod bus;
pub mod config;
pub mod cpu;
pub mod identity;
pub mod ledger;
pub mod metrics;
pub mod redact;
pub mod retry;
pub mod sse;
pub mod state;
pub mod store;
pub mod time;
pub mod trace;
pub mod x402;

pub use bus::{Bus, BusError};
pub use ledger::TaskLedger;
pub use store::{StoreError, TaskStore};
