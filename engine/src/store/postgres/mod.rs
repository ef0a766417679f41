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
//!
//! What lives where: this file connects and holds the reads and writes of a task itself;
//! [`writer`] commits them in batches ([`claims`]: idempotent sends); [`read`] has the read statements and row decoding,
//! [`listing`] the pages of `tasks/list` and `contexts/list`; [`attached`] the push configs
//! and feedback of a task, [`push_reader`] the batched push config lookups; [`delete`] clears
//! contexts and purges old tasks; [`counts`] keeps the task counts `/metrics` shows.

mod attached;
mod claims;
mod counts;
mod delete;
mod listing;
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
use bindu_schemas::{ContextSummary, PushNotificationConfig, Task, TaskState};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};
use tokio::sync::oneshot;

use super::*;
use crate::retry::RetryPolicy;
use counts::{count_states, CountCache};
pub use options::PostgresOptions;
use push_reader::PushLookup;

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

pub struct PostgresStore {
    pool: PgPool,
    counts: std::sync::Arc<parking_lot::Mutex<CountCache>>,
    /// Task rows read by listings so far (what bounds a listing's work).
    list_rows: std::sync::atomic::AtomicU64,
    agent: i32,
    push_reader: async_channel::Sender<PushLookup>,
    writer: async_channel::Sender<writer::Op>,
    options: PostgresOptions,
    /// Background sweeps (expired message claims) run while this lives.
    _alive: std::sync::Arc<()>,
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
        let alive = std::sync::Arc::new(());
        tokio::spawn(delete::sweep_claims(
            pool.clone(),
            agent,
            std::sync::Arc::downgrade(&alive),
        ));
        Ok(PostgresStore {
            _alive: alive,
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

    /// Deletes this agent's expired message claims now (in bounded batches, as the
    /// background sweep does every minute); the number deleted.
    pub async fn delete_expired_claims(&self) -> Result<u64, StoreError> {
        delete::delete_expired_claims(&self.pool, self.agent)
            .await
            .map_err(db_error)
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

    async fn release_claim(&self, key: [u8; 32], task_id: &str) -> Result<(), StoreError> {
        let agent = self.agent;
        self.read(|| async move {
            sqlx::query(
                "DELETE FROM bindu_message_claims WHERE agent_id = $1 AND key = $2 AND task_id = $3",
            )
            .bind(agent)
            .bind(&key[..])
            .bind(task_id)
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

    async fn list_tasks(
        &self,
        access: Access<'_>,
        listing: TaskListing,
    ) -> Result<Page<Task>, StoreError> {
        self.list_tasks_page(access, &listing).await
    }

    async fn count_tasks(
        &self,
        access: Access<'_>,
        listing: &TaskListing,
    ) -> Result<u64, StoreError> {
        self.count_listed(access, listing).await
    }

    async fn list_contexts(
        &self,
        access: Access<'_>,
        query: ListQuery,
    ) -> Result<Page<ContextSummary>, StoreError> {
        self.list_contexts_page(access, query).await
    }

    async fn clear_context(
        &self,
        context_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<(String, TaskState)>, StoreError> {
        self.delete_context(context_id, access).await
    }

    async fn set_push_config(
        &self,
        task_id: &str,
        access: Access<'_>,
        config: PushNotificationConfig,
    ) -> Result<PushNotificationConfig, StoreError> {
        self.store_push_config(task_id, access, config).await
    }

    async fn list_push_configs(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<PushNotificationConfig>, StoreError> {
        self.push_configs_of(task_id, access).await
    }

    async fn delete_push_config(
        &self,
        task_id: &str,
        access: Access<'_>,
        config_id: &str,
    ) -> Result<bool, StoreError> {
        self.remove_push_config(task_id, access, config_id).await
    }

    async fn add_feedback(
        &self,
        task_id: &str,
        access: Access<'_>,
        feedback: Feedback,
    ) -> Result<(), StoreError> {
        self.insert_feedback(task_id, access, feedback).await
    }

    async fn feedback(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<Feedback>, StoreError> {
        self.feedback_of(task_id, access).await
    }

    async fn count_by_state(&self) -> Result<Vec<(TaskState, u64)>, StoreError> {
        self.read(|| count_states(&self.pool, self.agent)).await
    }

    async fn task_counts(&self) -> Option<Vec<(TaskState, u64)>> {
        self.cached_counts()
    }

    async fn purge(&self, older_than: Duration, dry_run: bool) -> Result<u64, StoreError> {
        self.purge_terminal(older_than, dry_run).await
    }
}
