//! Stored tasks by state, for `/metrics`: counted in the background at most once per
//! `count_interval`, never on a scrape's path.

use bindu_schemas::TaskState;
use sqlx::{PgPool, Row};

use super::{writer, PostgresStore};

impl PostgresStore {
    /// The last count, never counted on the caller's path: when it is older than
    /// `count_interval` (and no count is running), one is started in the background, so a
    /// scrape costs the same whatever the table holds and counts run at most once per
    /// interval. `None` until the first count ends.
    pub(super) fn cached_counts(&self) -> Option<Vec<(TaskState, u64)>> {
        let interval = self.options.count_interval;
        let (counts, refresh) = {
            let mut cache = self.counts.lock();
            let stale = cache.at.is_none_or(|at| at.elapsed() >= interval);
            let refresh = stale && !cache.refreshing;
            cache.refreshing |= refresh;
            (cache.counts.clone(), refresh)
        };
        if refresh {
            let (pool, agent, cache) = (self.pool.clone(), self.agent, self.counts.clone());
            let timeout = self.options.timeout;
            tokio::spawn(async move {
                let counted = tokio::time::timeout(timeout, count_states(&pool, agent)).await;
                let mut cache = cache.lock();
                cache.refreshing = false;
                // A failed count waits for the interval too: a struggling database is not
                // asked again on every scrape.
                cache.at = Some(std::time::Instant::now());
                match counted {
                    Ok(Ok(counts)) => cache.counts = Some(counts),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "counting stored tasks for metrics failed")
                    }
                    Err(_) => {
                        tracing::warn!(?timeout, "counting stored tasks for metrics took too long")
                    }
                }
            });
        }
        counts
    }
}

/// The last count of stored tasks by state, for metrics.
#[derive(Default)]
pub(super) struct CountCache {
    counts: Option<Vec<(TaskState, u64)>>,
    /// When the last count (or failed attempt) ended.
    at: Option<std::time::Instant>,
    refreshing: bool,
}

/// Stored tasks of `agent` by state (every state listed, 0 when none): a scan of the
/// agent's rows.
pub(super) async fn count_states(
    pool: &PgPool,
    agent: i32,
) -> Result<Vec<(TaskState, u64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT state, count(*) AS n FROM bindu_tasks WHERE agent_id = $1 GROUP BY state",
    )
    .bind(agent)
    .fetch_all(pool)
    .await?;
    let mut out: Vec<(TaskState, u64)> = TaskState::ALL.iter().map(|s| (*s, 0)).collect();
    for row in rows {
        let code: i16 = row.try_get("state")?;
        let state = writer::state_of(code).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let n: i64 = row.try_get("n")?;
        if let Some(slot) = out.iter_mut().find(|(s, _)| *s == state) {
            slot.1 = u64::try_from(n).unwrap_or(0);
        }
    }
    Ok(out)
}
