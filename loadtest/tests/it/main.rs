//! The load generator's integration tests, one binary with a module per topic sharing
//! `support` (an in-process server and a bounded `bindu-loadtest` run against it).

#![allow(clippy::unwrap_used)]

mod support;

mod honest;
mod inprocess;
