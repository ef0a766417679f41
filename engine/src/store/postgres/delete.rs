//! Deleting tasks with their push configs and feedback: a context cleared
//! (`contexts/clear`) and old terminal tasks purged (`bindu purge`); and expired message
//! claims (idempotent sends), in bounded batches.

use std::time::Duration;

use bindu_schemas::TaskState;

use super::{writer, PostgresStore};
use crate::store::{Access, StoreError};

impl PostgresStore {
    pub(super) async fn delete_context(
        &self,
        context_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<(String, TaskState)>, StoreError> {
        let agent = self.agent;
        let deleted: Option<Vec<(String, i16)>> = self
            .read(|| async move {
                let mut tx = self.pool.begin().await?;
                let owner: Option<String> = sqlx::query_scalar(
                    "SELECT owner FROM bindu_contexts WHERE agent_id = $1 AND id = $2 FOR UPDATE",
                )
                .bind(agent)
                .bind(context_id)
                .fetch_optional(&mut *tx)
                .await?;
                match owner {
                    Some(o) if access.permits((!o.is_empty()).then_some(o.as_str())) => {}
                    _ => return Ok(None),
                }
                let rows: Vec<(String, i16)> = sqlx::query_as(
                    "WITH gone AS (DELETE FROM bindu_tasks WHERE agent_id = $1 AND context_id = $2 \
                                   RETURNING id, state), \
                          p AS (DELETE FROM bindu_push_configs c USING gone \
                                WHERE c.agent_id = $1 AND c.task_id = gone.id), \
                          f AS (DELETE FROM bindu_task_feedback b USING gone \
                                WHERE b.agent_id = $1 AND b.task_id = gone.id) \
                     SELECT id, state FROM gone",
                )
                .bind(agent)
                .bind(context_id)
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM bindu_contexts WHERE agent_id = $1 AND id = $2")
                    .bind(agent)
                    .bind(context_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(rows))
            })
            .await?;
        let Some(rows) = deleted else {
            return Err(StoreError::ContextNotFound(context_id.to_string()));
        };
        rows.into_iter()
            .map(|(id, state)| Ok((id, writer::state_of(state)?)))
            .collect()
    }

    pub(super) async fn purge_terminal(
        &self,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<u64, StoreError> {
        let agent = self.agent;
        let terminal: Vec<i16> = TaskState::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| writer::state_code(*s))
            .collect();
        let secs = older_than.as_secs_f64();
        let cutoff = "now() - make_interval(secs => $3)";
        if dry_run {
            let sql = format!(
                "SELECT count(*) FROM bindu_tasks WHERE created_at <= {cutoff} AND agent_id = $1 \
                 AND state = ANY($2) AND updated_at <= {cutoff}"
            );
            return self.count_old(&sql, &terminal, secs).await;
        }
        // In chunks, so a large purge never holds many locks or one huge transaction.
        let sql = format!(
            "WITH doomed AS (SELECT id FROM bindu_tasks WHERE created_at <= {cutoff} AND agent_id = $1 \
                               AND state = ANY($2) AND updated_at <= {cutoff} LIMIT 1000), \
                  gone AS (DELETE FROM bindu_tasks t USING doomed d WHERE t.agent_id = $1 AND t.id = d.id \
                           RETURNING t.id), \
                  p AS (DELETE FROM bindu_push_configs c USING gone \
                        WHERE c.agent_id = $1 AND c.task_id = gone.id), \
                  f AS (DELETE FROM bindu_task_feedback b USING gone \
                        WHERE b.agent_id = $1 AND b.task_id = gone.id) \
             SELECT count(*) FROM gone"
        );
        let mut total = 0u64;
        loop {
            let n = self.count_old(&sql, &terminal, secs).await?;
            total += n;
            if n < 1000 {
                break;
            }
        }
        let sql = format!(
            "DELETE FROM bindu_contexts c WHERE c.agent_id = $1 AND c.updated_at <= {} \
             AND NOT EXISTS (SELECT 1 FROM bindu_tasks t WHERE t.agent_id = c.agent_id AND t.context_id = c.id)",
            "now() - make_interval(secs => $2)"
        );
        self.read(|| sqlx::query(&sql).bind(agent).bind(secs).execute(&self.pool))
            .await?;
        Ok(total)
    }

    /// What `sql` counts of this agent's tasks in states `terminal` ($2) older than `secs` ($3).
    async fn count_old(&self, sql: &str, terminal: &[i16], secs: f64) -> Result<u64, StoreError> {
        let n: i64 = self
            .read(|| {
                sqlx::query_scalar(sql)
                    .bind(self.agent)
                    .bind(terminal)
                    .bind(secs)
                    .fetch_one(&self.pool)
            })
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// Expired message claims deleted per statement.
pub const EXPIRED_CLAIMS_BATCH: i64 = 1000;
/// Statements per sweep: a backlog larger than this many batches waits for the next sweep.
const EXPIRED_CLAIMS_BATCHES: usize = 20;
/// How often each store process sweeps.
pub const EXPIRED_CLAIMS_EVERY: Duration = Duration::from_secs(60);

/// Deletes this agent's expired message claims, at most `EXPIRED_CLAIMS_BATCH` per
/// statement and `EXPIRED_CLAIMS_BATCHES` statements (no long transaction, no long lock);
/// the number deleted.
pub async fn delete_expired_claims(pool: &sqlx::PgPool, agent: i32) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for _ in 0..EXPIRED_CLAIMS_BATCHES {
        let n = sqlx::query(
            "DELETE FROM bindu_message_claims WHERE agent_id = $1 AND key IN \
             (SELECT key FROM bindu_message_claims WHERE agent_id = $1 AND expires_at <= now() \
              LIMIT $2)",
        )
        .bind(agent)
        .bind(EXPIRED_CLAIMS_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        deleted += n;
        if n < EXPIRED_CLAIMS_BATCH as u64 {
            break;
        }
    }
    Ok(deleted)
}

/// Sweeps expired claims every [`EXPIRED_CLAIMS_EVERY`] while the store lives (`alive`).
pub(super) async fn sweep_claims(pool: sqlx::PgPool, agent: i32, alive: std::sync::Weak<()>) {
    loop {
        tokio::time::sleep(EXPIRED_CLAIMS_EVERY).await;
        if alive.upgrade().is_none() {
            return;
        }
        match delete_expired_claims(&pool, agent).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "expired message claims deleted"),
            Err(e) => tracing::debug!(error = %e, "could not delete expired message claims"),
        }
    }
}
