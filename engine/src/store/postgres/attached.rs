//! Rows attached to a task: push notification configs and feedback. Each write locks the
//! task row first, so ownership is checked and the per-task limits hold under concurrency.

use bindu_schemas::{Metadata, PushNotificationConfig};
use sqlx::types::Json;

use super::PostgresStore;
use crate::store::{Access, Feedback, StoreError, TaskStore, MAX_PUSH_CONFIGS_PER_TASK};

/// A feedback row: text, rating, metadata, creation time.
type FeedbackRow = (String, Option<i16>, Option<Json<Metadata>>, String);

impl PostgresStore {
    pub(super) async fn store_push_config(
        &self,
        task_id: &str,
        access: Access<'_>,
        config: PushNotificationConfig,
    ) -> Result<PushNotificationConfig, StoreError> {
        let config_id = config
            .id
            .clone()
            .ok_or_else(|| StoreError::Invalid("a push notification config needs an id".into()))?;
        let agent = self.agent;
        let value = serde_json::to_value(&config).map_err(|e| StoreError::Other(Box::new(e)))?;
        let outcome: Result<(), StoreError> = self
            .read(|| {
                let value = value.clone();
                let config_id = config_id.clone();
                async move {
                    let mut tx = self.pool.begin().await?;
                    if let Err(e) = lock_task(&mut tx, agent, task_id, access).await? {
                        return Ok(Err(e));
                    }
                    let others: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM bindu_push_configs WHERE agent_id = $1 AND task_id = $2 AND config_id <> $3",
                    )
                    .bind(agent)
                    .bind(task_id)
                    .bind(&config_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if others >= MAX_PUSH_CONFIGS_PER_TASK as i64 {
                        return Ok(Err(StoreError::Invalid(format!(
                            "a task can hold at most {MAX_PUSH_CONFIGS_PER_TASK} push notification configs"
                        ))));
                    }
                    sqlx::query(
                        "INSERT INTO bindu_push_configs (agent_id, task_id, config_id, config) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (agent_id, task_id, config_id) DO UPDATE SET config = EXCLUDED.config",
                    )
                    .bind(agent)
                    .bind(task_id)
                    .bind(&config_id)
                    .bind(Json(value))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(Ok(()))
                }
            })
            .await?;
        outcome.map(|()| config)
    }

    pub(super) async fn remove_push_config(
        &self,
        task_id: &str,
        access: Access<'_>,
        config_id: &str,
    ) -> Result<bool, StoreError> {
        let agent = self.agent;
        let outcome: Result<bool, StoreError> = self
            .read(|| async move {
                let mut tx = self.pool.begin().await?;
                if let Err(e) = lock_task(&mut tx, agent, task_id, access).await? {
                    return Ok(Err(e));
                }
                let n = sqlx::query("DELETE FROM bindu_push_configs WHERE agent_id = $1 AND task_id = $2 AND config_id = $3")
                    .bind(agent)
                    .bind(task_id)
                    .bind(config_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(Ok(n > 0))
            })
            .await?;
        outcome
    }

    pub(super) async fn insert_feedback(
        &self,
        task_id: &str,
        access: Access<'_>,
        feedback: Feedback,
    ) -> Result<(), StoreError> {
        let agent = self.agent;
        let feedback = &feedback;
        let outcome: Result<(), StoreError> = self
            .read(|| async move {
                let mut tx = self.pool.begin().await?;
                if let Err(e) = lock_task(&mut tx, agent, task_id, access).await? {
                    return Ok(Err(e));
                }
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM bindu_task_feedback WHERE agent_id = $1 AND task_id = $2")
                    .bind(agent)
                    .bind(task_id)
                    .fetch_one(&mut *tx)
                    .await?;
                if n >= 100 {
                    return Ok(Err(StoreError::Invalid(format!("task {task_id} already has 100 feedback entries"))));
                }
                sqlx::query(
                    "INSERT INTO bindu_task_feedback (agent_id, task_id, feedback, rating, metadata) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(agent)
                .bind(task_id)
                .bind(&feedback.feedback)
                .bind(feedback.rating.map(i16::from))
                .bind(feedback.metadata.clone().map(Json))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Ok(()))
            })
            .await?;
        outcome
    }

    pub(super) async fn feedback_of(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<Feedback>, StoreError> {
        // Ownership first: someone else's task answers like a missing one.
        self.get(task_id, access).await?;
        let agent = self.agent;
        let sql = format!(
            "SELECT feedback, rating, metadata, to_char(created_at AT TIME ZONE 'UTC', {}) AS created_at \
             FROM bindu_task_feedback WHERE agent_id = $1 AND task_id = $2 ORDER BY id",
            "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'"
        );
        let rows: Vec<FeedbackRow> = self
            .read(|| {
                sqlx::query_as(&sql)
                    .bind(agent)
                    .bind(task_id)
                    .fetch_all(&self.pool)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(feedback, rating, metadata, created_at)| Feedback {
                feedback,
                rating: rating.and_then(|r| u8::try_from(r).ok()),
                metadata: metadata.map(|Json(m)| m),
                created_at,
            })
            .collect())
    }
}

/// Locks a task row and checks the caller may touch it. The outer `Result` is the
/// database's, the inner one the caller's answer.
async fn lock_task(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    agent: i32,
    task_id: &str,
    access: Access<'_>,
) -> Result<Result<(), StoreError>, sqlx::Error> {
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT owner FROM bindu_tasks WHERE agent_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(agent)
    .bind(task_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match owner {
        Some(o) if access.permits((!o.is_empty()).then_some(o.as_str())) => Ok(()),
        _ => Err(StoreError::NotFound(task_id.to_string())),
    })
}
