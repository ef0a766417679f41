//! Dead letters in Postgres: table `bindu_push_dead_letters`, namespaced by agent like the
//! tasks (migrated by [`crate::store::PostgresStore::migrate`]).

use sqlx::{PgPool, Row};

use async_trait::async_trait;

use super::{DeadLetter, DeadLetterStore};
use crate::store::postgres::db_error;
use crate::store::StoreError;

/// Dead letters in Postgres (`bindu_push_dead_letters`).
pub struct PostgresDeadLetters {
    pool: PgPool,
    agent: String,
}

const COLUMNS: &str = "id, task_id, event_id, seq, config_id, url, body, attempts, last_error, \
    retrying, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS created, \
    to_char(replayed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS replayed";

fn letter(row: &sqlx::postgres::PgRow) -> Result<DeadLetter, sqlx::Error> {
    Ok(DeadLetter {
        id: row.try_get("id")?,
        task_id: row.try_get("task_id")?,
        event_id: row.try_get("event_id")?,
        seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
        config_id: row.try_get("config_id")?,
        url: row.try_get("url")?,
        body: row.try_get("body")?,
        attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created")?,
        replayed_at: row.try_get("replayed")?,
        retrying: row.try_get("retrying")?,
    })
}

impl PostgresDeadLetters {
    /// Uses `pool` (migrated by [`crate::store::PostgresStore::migrate`]) for the rows
    /// of `agent`.
    pub fn new(pool: PgPool, agent: impl Into<String>) -> Self {
        PostgresDeadLetters {
            pool,
            agent: agent.into(),
        }
    }

    /// The agent's letters that `rest` (conditions, then the order) selects, at most `limit`.
    async fn select(&self, rest: &str, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM bindu_push_dead_letters WHERE agent = $1 {rest} LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(&self.agent)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(letter)
            .collect::<Result<_, _>>()
            .map_err(db_error)
    }

    /// Records how a replay or the dispatcher's own retries ended: delivered (replayed), or
    /// not, with the attempts it took (`add`ed to the stored ones, or replacing them) and the
    /// last error. Either way the letter is no longer retried by the dispatcher.
    async fn settle(
        &self,
        id: &str,
        outcome: Result<(), (u32, String)>,
        add: bool,
    ) -> Result<(), StoreError> {
        let query = match &outcome {
            Ok(()) => sqlx::query(
                "UPDATE bindu_push_dead_letters SET replayed_at = now(), retrying = false \
                 WHERE agent = $1 AND id = $2",
            ),
            Err(_) if add => sqlx::query(
                "UPDATE bindu_push_dead_letters SET attempts = attempts + $3, last_error = $4, \
                 retrying = false WHERE agent = $1 AND id = $2",
            ),
            Err(_) => sqlx::query(
                "UPDATE bindu_push_dead_letters SET attempts = $3, last_error = $4, \
                 retrying = false WHERE agent = $1 AND id = $2",
            ),
        }
        .bind(&self.agent)
        .bind(id);
        let query = match outcome {
            Ok(()) => query,
            Err((attempts, error)) => query
                .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
                .bind(error),
        };
        let done = query.execute(&self.pool).await.map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(())
    }
}

#[async_trait]
impl DeadLetterStore for PostgresDeadLetters {
    async fn add(&self, d: DeadLetter) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO bindu_push_dead_letters \
             (agent, id, task_id, event_id, seq, config_id, url, body, attempts, last_error, \
              retrying) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (agent, id) DO NOTHING",
        )
        .bind(&self.agent)
        .bind(&d.id)
        .bind(&d.task_id)
        .bind(&d.event_id)
        .bind(i64::try_from(d.seq).unwrap_or(i64::MAX))
        .bind(&d.config_id)
        .bind(&d.url)
        .bind(&d.body)
        .bind(i32::try_from(d.attempts).unwrap_or(i32::MAX))
        .bind(&d.last_error)
        .bind(d.retrying)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn list(&self, limit: u32, pending_only: bool) -> Result<Vec<DeadLetter>, StoreError> {
        let filter = if pending_only {
            "AND replayed_at IS NULL"
        } else {
            ""
        };
        self.select(&format!("{filter} ORDER BY seq_no DESC"), limit)
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM bindu_push_dead_letters WHERE agent = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(&self.agent)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(letter).transpose().map_err(db_error)
    }

    async fn record_replay(
        &self,
        id: &str,
        outcome: Result<(), (u32, String)>,
    ) -> Result<(), StoreError> {
        self.settle(id, outcome, true).await
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM bindu_push_dead_letters WHERE agent = $1 AND replayed_at IS NULL",
        )
        .bind(&self.agent)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn retrying(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        self.select("AND retrying ORDER BY seq_no", limit).await
    }

    async fn finish_retry(
        &self,
        id: &str,
        outcome: Result<(), (u32, String)>,
    ) -> Result<(), StoreError> {
        self.settle(id, outcome, false).await
    }
}
