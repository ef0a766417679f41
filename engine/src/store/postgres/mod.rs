//! Postgres task store (sqlx, no compile-time query checking).
//!
//! - Every row carries the agent's small integer id (`agent_id`, from `bindu_agents`, where
//!   the agent's DID is registered once), so many agents share one database; every query
//!   filters on it. Callers own their tasks and contexts (`owner`, '' when auth
//!   is off); another caller's rows answer like missing ones.
//! - Writes go through [`writer`] tasks that group-commit submits and transitions from
//!   many concurrent tasks in one transaction (bounded batch size and linger,
//!   `synchronous_commit = on`); a caller hears back only after its batch committed.
//!   Every transition is a compare-and-set checked in the `UPDATE` itself.
//! - A task is one row: its history and artifact chunks are JSONB arrays in it (appended,
//!   chunks merged on read). A one-turn task is written twice: at accept and at its outcome.
//! - Migrations are embedded and applied at start-up under sqlx's advisory lock.
//! - Transient errors (connection lost, server restarting, serialization failures) are
//!   retried with back-off and jitter until the operation timeout; then the caller gets
//!   [`StoreError::Unavailable`].

mod options;
mod push_reader;
mod read;
#[cfg(any(test, feature = "testing"))]
pub mod test_db;
mod writer;

/// The text of the statements the store runs on its hot paths (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod queries;

use std::time::Duration;

use async_trait::async_trait;
use bindu_schemas::Metadata;
use bindu_schemas::{ContextSummary, PushNotificationConfig, Task, TaskState};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{Executor, PgPool, Row};
use tokio::sync::oneshot;

use super::*;
use crate::retry::RetryPolicy;
pub use options::PostgresOptions;

/// `url` with its password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Whether a database error may go away by itself (retry) or not.
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08")
                || matches!(
                    &*c,
                    "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
                )
        }),
        _ => false,
    }
}

pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    if is_transient(&e) || matches!(e, sqlx::Error::PoolClosed) {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Other(Box::new(e))
    }
}

/// A push config lookup: the task id, and where its owner and configs go.
type PushLookup = (
    String,
    oneshot::Sender<Result<(Option<String>, Vec<PushNotificationConfig>), StoreError>>,
);

/// The last count of stored tasks by state, for metrics.
#[derive(Default)]
struct CountCache {
    counts: Option<Vec<(TaskState, u64)>>,
    /// When the last count (or failed attempt) ended.
    at: Option<std::time::Instant>,
    refreshing: bool,
}

pub struct PostgresStore {
    pool: PgPool,
    counts: std::sync::Arc<parking_lot::Mutex<CountCache>>,
    /// Task rows read by listings so far (what bounds a listing's work).
    list_rows: std::sync::atomic::AtomicU64,
    agent: i32,
    push_reader: async_channel::Sender<PushLookup>,
    writer: async_channel::Sender<writer::Op>,
    options: PostgresOptions,
}

impl PostgresStore {
    /// Connects, applies migrations and starts the batch writer.
    pub async fn connect(options: PostgresOptions) -> Result<Self, StoreError> {
        let pool = Self::pool(&options).await?;
        Self::migrate(&pool).await?;
        let agent: i32 = sqlx::query_scalar(
            "INSERT INTO bindu_agents (name) VALUES ($1) \
             ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        )
        .bind(&options.agent)
        .fetch_one(&pool)
        .await
        .map_err(db_error)?;
        // Writers have connections of their own: they never queue behind readers. Several
        // writers commit batches in parallel (row locks are taken in sorted order, so they
        // cannot deadlock each other; Postgres would report and the batch retry anyway).
        let writers = options.writers.max(1);
        let writer_pool = Self::pool(&PostgresOptions {
            pool_size: u32::try_from(writers).unwrap_or(u32::MAX).saturating_add(1),
            ..options.clone()
        })
        .await?;
        let (tx, rx) = async_channel::bounded(options.batch_max * 4);
        let analyze = std::sync::Arc::new(writer::AnalyzeSchedule::new());
        writer::spawn_analyze(writer_pool.clone());
        for _ in 0..writers {
            tokio::spawn(writer::run(
                rx.clone(),
                writer_pool.clone(),
                agent,
                options.clone(),
                analyze.clone(),
            ));
        }
        let (push_tx, push_rx) = async_channel::bounded(4096);
        tokio::spawn(push_reader::run(
            push_rx,
            pool.clone(),
            agent,
            options.timeout,
        ));
        Ok(PostgresStore {
            counts: Default::default(),
            list_rows: Default::default(),
            push_reader: push_tx,
            pool,
            agent,
            writer: tx,
            options,
        })
    }

    /// A connection pool with `synchronous_commit = on` on every connection.
    pub async fn pool(options: &PostgresOptions) -> Result<PgPool, StoreError> {
        let connect: PgConnectOptions = options.url.parse().map_err(|e| {
            StoreError::Invalid(format!(
                "DATABASE_URL {} is not a Postgres URL: {e}",
                redact_url(&options.url)
            ))
        })?;
        PgPoolOptions::new()
            .max_connections(options.pool_size.max(2))
            .acquire_timeout(options.timeout)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET synchronous_commit = on").await?;
                    Ok(())
                })
            })
            .connect_with(connect)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot connect to Postgres at {}: {e}",
                    redact_url(&options.url)
                ))
            })
    }

    /// Applies the embedded migrations (safe to run from several processes at once).
    pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations")
            .run(pool)
            .await
            .map_err(|e| StoreError::Other(Box::new(e)))
    }

    /// Task rows the listings of this store have read so far.
    pub fn list_rows_read(&self) -> u64 {
        self.list_rows.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn pool_handle(&self) -> &PgPool {
        &self.pool
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            deadline: self.options.timeout,
            ..RetryPolicy::default()
        }
    }

    /// Runs a read with retries, bounded by the operation timeout.
    async fn read<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let policy = self.policy();
        let work = policy.run(op, is_transient);
        match tokio::time::timeout(self.options.timeout, work).await {
            Ok(r) => r.map_err(db_error),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer from Postgres within {:?}",
                self.options.timeout
            ))),
        }
    }

    async fn send<T>(
        &self,
        op: writer::Op,
        rx: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.writer
            .send(op)
            .await
            .map_err(|_| StoreError::Unavailable("the batch writer stopped".into()))?;
        // The writer answers every operation (it bounds its own retries by the timeout).
        match tokio::time::timeout(self.options.timeout * 2, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(StoreError::Unavailable("the batch writer stopped".into())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "the write was not confirmed within {:?}",
                self.options.timeout * 2
            ))),
        }
    }

    fn owner_filter<'a>(access: Access<'a>) -> Option<&'a str> {
        match access {
            Access::Internal => None,
            Access::Owner(o) => Some(o.unwrap_or("")),
        }
    }
}

#[async_trait]
impl TaskStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.read(|| async {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map(|_| ())
        })
        .await
    }

    async fn submit(&self, req: SubmitRequest) -> Result<Submitted, StoreError> {
        let (tx, rx) = oneshot::channel();
        let mut push = req.push_config.clone();
        let owner = req.owner.clone();
        // A follow-up to an existing task: store its inline config first, so a refusal
        // (too many configs) leaves the task as it was. A task moved back to `submitted`
        // without its command queued would never run.
        if let Some(config) = &push {
            match self
                .set_push_config(
                    &req.task_id,
                    Access::Owner(owner.as_deref()),
                    config.clone(),
                )
                .await
            {
                Ok(_) => push = None,
                // A new task (or someone else's, which the submit refuses): stored below.
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let task_id = req.task_id.clone();
        let outcome = self.send(writer::Op::Submit { req, reply: tx }, rx).await?;
        let submitted = match outcome {
            writer::SubmitOutcome::Created(s) => s,
            writer::SubmitOutcome::Continued {
                task_id,
                version,
                event,
            } => {
                let mut snap = self.get(&task_id, Access::Internal).await?;
                // Later writes may already have landed; report the submission itself.
                snap.task.status = match &event.event {
                    bindu_schemas::bus::EventBody::Status(s) => s.status.clone(),
                    _ => snap.task.status,
                };
                Submitted {
                    task: snap.task,
                    version,
                    event,
                    created: false,
                }
            }
        };
        if let Some(config) = push {
            if let Err(e) = self
                .set_push_config(&task_id, Access::Owner(owner.as_deref()), config)
                .await
            {
                // The task exists but will not be queued: end it visibly instead of leaving
                // it `submitted` for good.
                let message = bindu_schemas::Message::agent(
                    uuid::Uuid::new_v4().to_string(),
                    vec![bindu_schemas::Part::text(format!(
                        "Task failed: its push notification config could not be stored ({e})"
                    ))],
                );
                let _ = self
                    .apply(vec![TaskUpdate::new(
                        &task_id,
                        Expect::State(TaskState::Submitted),
                    )
                    .status(TaskState::Failed, Some(message))])
                    .await;
                return Err(e);
            }
        }
        Ok(submitted)
    }

    async fn apply(&self, updates: Vec<TaskUpdate>) -> Vec<Result<Applied, StoreError>> {
        let n = updates.len();
        if n == 0 {
            return Vec::new();
        }
        let fail = |e: fn() -> StoreError| (0..n).map(|_| Err(e())).collect();
        let (tx, rx) = oneshot::channel();
        if self
            .writer
            .send(writer::Op::Updates { updates, reply: tx })
            .await
            .is_err()
        {
            return fail(|| StoreError::Unavailable("the batch writer stopped".into()));
        }
        match tokio::time::timeout(self.options.timeout * 2, rx).await {
            Ok(Ok(r)) if r.len() == n => r,
            Ok(Ok(_)) => fail(|| StoreError::Other("mismatched batch outcome".into())),
            Ok(Err(_)) => fail(|| StoreError::Unavailable("the batch writer stopped".into())),
            Err(_) => {
                fail(|| StoreError::Unavailable("the write was not confirmed in time".into()))
            }
        }
    }

    async fn get(&self, task_id: &str, access: Access<'_>) -> Result<TaskSnapshot, StoreError> {
        let sql = read::task_by_id();
        let row = self
            .read(|| {
                sqlx::query(&sql)
                    .bind(self.agent)
                    .bind(task_id)
                    .fetch_optional(&self.pool)
            })
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(task_id.to_string()));
        };
        let snap = read::snapshot(&row)?;
        if !access.permits(snap.owner.as_deref()) {
            return Err(StoreError::NotFound(task_id.to_string()));
        }
        Ok(snap)
    }

    async fn list_tasks_shaped(
        &self,
        access: Access<'_>,
        query: ListQuery,
        shape: ListShape,
    ) -> Result<Page<Task>, StoreError> {
        let mut before = read::parse_cursor(query.cursor.as_deref())?;
        let owner = Self::owner_filter(access);
        let (slice, keep) = match shape.history {
            None => (read::HistorySlice::All, 0),
            Some(0) => (read::HistorySlice::None, 0),
            Some(n) => (
                read::HistorySlice::Newest,
                i32::try_from(n).unwrap_or(i32::MAX),
            ),
        };
        let sql = read::task_page(
            owner.is_some(),
            query.context_id.is_some(),
            slice,
            shape.artifacts,
        );
        let limit = query.limit.max(1) as usize;
        // Without a size bound, one query for the page (and one row more: is there a next
        // page?). With one, rows are read in growing batches sized by what the page has
        // room for, so a page of large tasks reads about the bound, not `limit` tasks.
        let mut batch = if shape.max_bytes.is_some() {
            8.min(limit + 1)
        } else {
            limit + 1
        };
        let mut items = Vec::new();
        let mut total = 0usize;
        let mut last: Option<i64> = None;
        loop {
            let want = batch.min(limit + 1 - items.len());
            let rows = self
                .read(|| {
                    let mut q = sqlx::query(&sql)
                        .bind(self.agent)
                        .bind(before)
                        .bind(want as i64);
                    if slice == read::HistorySlice::Newest {
                        q = q.bind(keep);
                    }
                    if let Some(o) = owner {
                        q = q.bind(o);
                    }
                    if let Some(c) = &query.context_id {
                        q = q.bind(c);
                    }
                    q.fetch_all(&self.pool)
                })
                .await?;
            self.list_rows
                .fetch_add(rows.len() as u64, std::sync::atomic::Ordering::Relaxed);
            for row in &rows {
                let mut task = read::snapshot(row)?.task;
                if slice == read::HistorySlice::None {
                    task.history = None;
                }
                let size = if shape.max_bytes.is_some() {
                    json_size(&task)
                } else {
                    0
                };
                if !page_has_room(items.len(), total, size, limit, &shape) {
                    return Ok(Page {
                        items,
                        next_cursor: last.map(|s| s.to_string()),
                    });
                }
                items.push(task);
                total = total.saturating_add(size);
                let seq: i64 = row.try_get("seq_no").map_err(db_error)?;
                last = Some(seq);
                before = seq;
            }
            if rows.len() < want {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            // The next batch: what the remaining room holds at the average size so far,
            // at most twice this one.
            let room = shape
                .max_bytes
                .map_or(usize::MAX, |max| max.saturating_sub(total));
            let average = (total / items.len().max(1)).max(1);
            batch = (room / average).clamp(1, batch.saturating_mul(2).min(256));
        }
    }

    async fn list_contexts(
        &self,
        access: Access<'_>,
        query: ListQuery,
    ) -> Result<Page<ContextSummary>, StoreError> {
        let before = read::parse_cursor(query.cursor.as_deref())?;
        let owner = Self::owner_filter(access);
        let sql = read::context_page(owner.is_some());
        let limit = i64::from(query.limit) + 1;
        let rows = self
            .read(|| {
                let mut q = sqlx::query(&sql).bind(self.agent).bind(before);
                if let Some(o) = owner {
                    q = q.bind(o);
                }
                q.bind(limit).fetch_all(&self.pool)
            })
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut next_cursor = None;
        for (i, row) in rows.iter().enumerate() {
            if i == query.limit as usize {
                next_cursor = Some(read::cursor_of(&rows[i - 1])?);
                break;
            }
            items.push(read::context_summary(row)?);
        }
        Ok(Page { items, next_cursor })
    }

    async fn clear_context(
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

    async fn set_push_config(
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

    async fn list_push_configs(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<PushNotificationConfig>, StoreError> {
        // Coalesced with the lookups waiting at the same time (the webhook dispatcher asks
        // for every event of every task): one query for all of them.
        let (tx, rx) = oneshot::channel();
        self.push_reader
            .send((task_id.to_string(), tx))
            .await
            .map_err(|_| StoreError::Unavailable("the push config reader stopped".into()))?;
        let (owner, configs) = match tokio::time::timeout(self.options.timeout * 2, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {
                return Err(StoreError::Unavailable(
                    "the push config reader stopped".into(),
                ))
            }
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "no answer from Postgres within {:?}",
                    self.options.timeout * 2
                )))
            }
        };
        if !access.permits(owner.as_deref()) {
            return Err(StoreError::NotFound(task_id.to_string()));
        }
        Ok(configs)
    }

    async fn delete_push_config(
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

    async fn add_feedback(
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

    async fn feedback(
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
        let rows: Vec<(String, Option<i16>, Option<Json<Metadata>>, String)> = self
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

    async fn count_by_state(&self) -> Result<Vec<(TaskState, u64)>, StoreError> {
        self.read(|| count_states(&self.pool, self.agent)).await
    }

    /// The last count, never counted on the caller's path: when it is older than
    /// `count_interval` (and no count is running), one is started in the background, so a
    /// scrape costs the same whatever the table holds and counts run at most once per
    /// interval. `None` until the first count ends.
    async fn task_counts(&self) -> Option<Vec<(TaskState, u64)>> {
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

    async fn purge(&self, older_than: Duration, dry_run: bool) -> Result<u64, StoreError> {
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
            let n: i64 = self
                .read(|| {
                    sqlx::query_scalar(&sql)
                        .bind(agent)
                        .bind(&terminal)
                        .bind(secs)
                        .fetch_one(&self.pool)
                })
                .await?;
            return Ok(u64::try_from(n).unwrap_or(0));
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
            let n: i64 = self
                .read(|| {
                    sqlx::query_scalar(&sql)
                        .bind(agent)
                        .bind(&terminal)
                        .bind(secs)
                        .fetch_one(&self.pool)
                })
                .await?;
            let n = u64::try_from(n).unwrap_or(0);
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
}

/// Stored tasks of `agent` by state (every state listed, 0 when none): a scan of the
/// agent's rows.
async fn count_states(pool: &PgPool, agent: i32) -> Result<Vec<(TaskState, u64)>, sqlx::Error> {
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
