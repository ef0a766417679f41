//! How the Postgres store reaches and uses its database.

use std::time::Duration;

/// How to reach and use the database.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// The namespace of this agent's rows (its DID).
    pub agent: String,
    pub pool_size: u32,
    /// Most operations committed in one transaction.
    pub batch_max: usize,
    /// How long the writer waits for more operations before committing a batch that is not
    /// full (zero: commit what has arrived while the previous batch was committing).
    pub batch_linger: Duration,
    /// Longest any store operation may take, retries included.
    pub timeout: Duration,
    /// Batches committed in parallel.
    pub writers: usize,
    /// Metrics: stored tasks are counted (one `GROUP BY state` over the agent's rows) at
    /// most once per this interval, in the background; scrapes read the last count.
    pub count_interval: Duration,
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>, agent: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            agent: agent.into(),
            pool_size: 8,
            batch_max: 512,
            batch_linger: Duration::from_millis(1),
            timeout: Duration::from_secs(5),
            writers: 1,
            count_interval: Duration::from_secs(60),
        }
    }
}
