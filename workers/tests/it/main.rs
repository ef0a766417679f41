//! The workers crate's integration tests, one binary with a module per topic sharing
//! `support` (webhook receivers, worker and dispatcher set-up).
//!
//! Tests that need a `nats-server` live in `t2_nats`, compiled only with the `t2-nats`
//! feature; its step in `scripts/test` runs just that module
//! (`cargo test -p bindu-workers --features t2-nats --test it t2_nats::`).

#![allow(clippy::unwrap_used)]

mod support;

mod ambiguous_writes;
mod dispatcher;
mod dispatcher_destinations;
mod drain;
mod paid_dead_letters;
mod stuck_tasks;
mod working_event;

/// T2: the worker pool and the webhook dispatcher on a spawned `nats-server`.
#[cfg(feature = "t2-nats")]
mod t2_nats {
    mod dispatcher_isolation;
    mod dispatcher_nats;
    mod nats_worker;
}
