//! The engine's integration tests, one binary with a module per topic.
//!
//! Suites that need a server live in a module named after their tier's feature
//! (`t2_postgres`, `t2_nats`, `t2_redis`), compiled only with it; the tier's step in `scripts/test` runs
//! just that module
//! (`cargo test -p bindu-engine --features t2-postgres --test it t2_postgres::`).

#![allow(clippy::unwrap_used)]

/// Steps the T2 bus suites share.
#[cfg(any(feature = "t2-nats", feature = "t2-redis"))]
mod support;
mod vectors;
mod x402_vectors;

/// T2: the Postgres task store against a real server.
#[cfg(feature = "t2-postgres")]
mod t2_postgres {
    mod postgres;
    mod postgres_bounds;
}

/// T2: the NATS JetStream bus against a spawned `nats-server`.
#[cfg(feature = "t2-nats")]
mod t2_nats {
    mod nats;
}

/// T2: the Redis Streams bus against a real Redis (`BINDU_TEST_REDIS_URL`, else the local one).
#[cfg(feature = "t2-redis")]
mod t2_redis {
    mod redis;
}
