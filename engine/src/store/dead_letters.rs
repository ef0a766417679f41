//! Dead letters of the webhook dispatcher: deliveries it gave up on, kept durably so an
//! operator can see them (`bindu webhooks dead-letters`) and post them again
//! (`bindu webhooks replay`).
//!
//! Backends: [`MemoryDeadLetters`] (one process) and, with the `postgres` feature,
//! [`PostgresDeadLetters`] (table `bindu_push_dead_letters`, namespaced like the tasks).

use std::collections::VecDeque;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::StoreError;

/// One delivery given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub task_id: String,
    /// `<taskId>:<seq>`, as sent in the notification.
    pub event_id: String,
    pub seq: u64,
    /// The push config's id, or `global` for the agent-wide webhook.
    pub config_id: String,
    pub url: String,
    /// The exact JSON body that was posted.
    pub body: String,
    pub attempts: u32,
    /// Why delivery stopped (`HTTP 410`, `timeout`, `destination refused: …`).
    pub last_error: String,
    /// RFC 3339; set by the store.
    pub created_at: String,
    /// RFC 3339 time of a successful replay.
    pub replayed_at: Option<String>,
}

#[async_trait]
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Records a dead letter; a second one with the same id is ignored (a redelivered event
    /// given up again).
    async fn add(&self, letter: DeadLetter) -> Result<(), StoreError>;

    /// Newest first; with `pending_only`, only those not replayed yet.
    async fn list(&self, limit: u32, pending_only: bool) -> Result<Vec<DeadLetter>, StoreError>;

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, StoreError>;

    /// Records a successful replay (`replayed`) or a failed one (the new error and the
    /// attempts it took).
    async fn record_replay(
        &self,
        id: &str,
        outcome: Result<(), (u32, String)>,
    ) -> Result<(), StoreError>;

    /// Dead letters not replayed yet.
    async fn pending(&self) -> Result<u64, StoreError>;
}

/// In-process dead letters, bounded (the oldest go first).
pub struct MemoryDeadLetters {
    letters: Mutex<VecDeque<DeadLetter>>,
    max: usize,
}

impl MemoryDeadLetters {
    pub fn new(max: usize) -> Self {
        MemoryDeadLetters {
            letters: Mutex::new(VecDeque::new()),
            max: max.max(1),
        }
    }
}

impl Default for MemoryDeadLetters {
    fn default() -> Self {
        Self::new(100_000)
    }
}

#[async_trait]
impl DeadLetterStore for MemoryDeadLetters {
    async fn add(&self, mut letter: DeadLetter) -> Result<(), StoreError> {
        letter.created_at = crate::time::now_rfc3339();
        let mut l = self.letters.lock();
        if l.iter().any(|d| d.id == letter.id) {
            return Ok(());
        }
        l.push_back(letter);
        while l.len() > self.max {
            l.pop_front();
        }
        Ok(())
    }

    async fn list(&self, limit: u32, pending_only: bool) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(self
            .letters
            .lock()
            .iter()
            .rev()
            .filter(|d| !pending_only || d.replayed_at.is_none())
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        Ok(self.letters.lock().iter().find(|d| d.id == id).cloned())
    }

    async fn record_replay(
        &self,
        id: &str,
        outcome: Result<(), (u32, String)>,
    ) -> Result<(), StoreError> {
        let mut l = self.letters.lock();
        let d = l
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        match outcome {
            Ok(()) => d.replayed_at = Some(crate::time::now_rfc3339()),
            Err((attempts, error)) => {
                d.attempts = d.attempts.saturating_add(attempts);
                d.last_error = error;
            }
        }
        Ok(())
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        Ok(self
            .letters
            .lock()
            .iter()
            .filter(|d| d.replayed_at.is_none())
            .count() as u64)
    }
}

#[cfg(feature = "postgres")]
pub use pg::PostgresDeadLetters;

#[cfg(feature = "postgres")]
mod pg {
    use sqlx::{PgPool, Row};

    use super::*;
    use crate::store::postgres::db_error;

    /// Dead letters in Postgres (`bindu_push_dead_letters`).
    pub struct PostgresDeadLetters {
        pool: PgPool,
        agent: String,
    }

    const COLUMNS: &str =
        "id, task_id, event_id, seq, config_id, url, body, attempts, last_error, \
        to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS created, \
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
    }

    #[async_trait]
    impl DeadLetterStore for PostgresDeadLetters {
        async fn add(&self, d: DeadLetter) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO bindu_push_dead_letters \
                 (agent, id, task_id, event_id, seq, config_id, url, body, attempts, last_error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (agent, id) DO NOTHING",
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
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
            Ok(())
        }

        async fn list(
            &self,
            limit: u32,
            pending_only: bool,
        ) -> Result<Vec<DeadLetter>, StoreError> {
            let sql = format!(
                "SELECT {COLUMNS} FROM bindu_push_dead_letters WHERE agent = $1 {} \
                 ORDER BY seq_no DESC LIMIT $2",
                if pending_only {
                    "AND replayed_at IS NULL"
                } else {
                    ""
                }
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

        async fn get(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
            let sql = format!(
                "SELECT {COLUMNS} FROM bindu_push_dead_letters WHERE agent = $1 AND id = $2"
            );
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
            let done = match outcome {
                Ok(()) => sqlx::query(
                    "UPDATE bindu_push_dead_letters SET replayed_at = now() WHERE agent = $1 AND id = $2",
                )
                .bind(&self.agent)
                .bind(id)
                .execute(&self.pool)
                .await,
                Err((attempts, error)) => sqlx::query(
                    "UPDATE bindu_push_dead_letters SET attempts = attempts + $3, last_error = $4 \
                     WHERE agent = $1 AND id = $2",
                )
                .bind(&self.agent)
                .bind(id)
                .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
                .bind(error)
                .execute(&self.pool)
                .await,
            }
            .map_err(db_error)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(id.to_string()));
            }
            Ok(())
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn letter(id: &str) -> DeadLetter {
        DeadLetter {
            id: id.into(),
            task_id: "t".into(),
            event_id: "t:1".into(),
            seq: 1,
            config_id: "c".into(),
            url: "http://127.0.0.1:9/hook".into(),
            body: "{}".into(),
            attempts: 3,
            last_error: "HTTP 500".into(),
            created_at: String::new(),
            replayed_at: None,
        }
    }

    #[tokio::test]
    async fn memory_dead_letters_list_newest_first_and_record_replays() {
        let s = MemoryDeadLetters::new(2);
        for id in ["a", "b", "c"] {
            s.add(letter(id)).await.unwrap();
        }
        let ids: Vec<String> = s
            .list(10, false)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, ["c", "b"], "bounded, newest first");
        s.record_replay("b", Err((2, "HTTP 503".into())))
            .await
            .unwrap();
        let b = s.get("b").await.unwrap().unwrap();
        assert_eq!((b.attempts, b.last_error.as_str()), (5, "HTTP 503"));
        s.record_replay("b", Ok(())).await.unwrap();
        assert_eq!(s.pending().await.unwrap(), 1);
        assert_eq!(s.list(10, true).await.unwrap().len(), 1);
        assert!(matches!(
            s.record_replay("zz", Ok(())).await,
            Err(StoreError::NotFound(_))
        ));
    }
}
