//! The root crate's integration tests, one binary with a module per topic. Every module
//! shares `support` (in-process servers, JSON-RPC and SSE helpers), `process` (the built
//! `bindu` binary as a child process) and `fake_openai`.
//!
//! Tests that need a server or tool beyond loopback live in a module named after their tier's
//! feature (`t1_scripts`, `t1_a2a_sdk`, `t2_postgres`, `t2_distributed`), compiled only with it; the tier's
//! step in `scripts/test` enables the feature and runs just that module
//! (`cargo test --features t2-postgres --test it t2_postgres::`).

#![allow(clippy::unwrap_used)]

mod fake_openai;
mod process;
mod support;

mod a2a10;
mod a2a10_rest;
mod a2a10_tenant;
mod auth;
mod cli;
mod deploy;
mod handlers;
mod handlers_cli;
mod handlers_openai;
mod hardening_deps;
mod hardening_edge;
mod http;
mod idempotent;
mod identity;
mod limits;
mod mtls;
mod negotiation;
mod observability;
mod payments;
mod private_card;
mod push;
mod skills;
mod spec;
mod traces;

/// T1: the command handler with real Python and shell (jq) agents.
#[cfg(feature = "t1-scripts")]
mod t1_scripts {
    mod handlers_command;
}

/// T1: the official A2A Python SDK (a2a-sdk 1.x) against the built binary.
#[cfg(feature = "t1-a2a-sdk")]
mod t1_a2a_sdk {
    mod sdk_client;
}

/// T2: the binary and the webhook dead letters against a real Postgres.
#[cfg(feature = "t2-postgres")]
mod t2_postgres {
    mod idempotent_postgres;
    mod payments_postgres;
    mod postgres_e2e;
    mod push_postgres;
}

/// T2/T3: ingress and workers as separate processes on Postgres and NATS.
#[cfg(all(feature = "t2-postgres", feature = "t2-nats"))]
mod t2_distributed {
    mod distributed;
    mod handlers_distributed;
    mod negotiation_distributed;
    mod observability_distributed;
    mod payments_distributed;
    mod push_distributed;
    mod traces_distributed;
}
