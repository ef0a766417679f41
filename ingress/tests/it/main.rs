//! The ingress crate's integration tests, one binary with a module per topic.

#![allow(clippy::unwrap_used)]

mod support;

mod blocking_from_events;
mod hangup;
mod stopping;
mod unavailable;
