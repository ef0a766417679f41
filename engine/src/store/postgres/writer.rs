//! The batch writer: group-commits submits and transitions from many callers.
//!
//! Each writer task takes whatever operations are waiting (up to `batch_max`, lingering up
//! to `batch_linger` for more) and applies them in one transaction with a few set-based
//! statements:
//!
//! - new tasks: one `INSERT` of every task row (history inline), after one upsert of their
//!   contexts (which also tells each context's owner);
//! - transitions: one `UPDATE … FROM unnest(…)` whose `WHERE` checks, per row, a bitmask of
//!   the states the update may leave (its compare-and-set and the legal transitions), so no
//!   row is locked or read first; rows it did not change are looked up afterwards to say why;
//! - follow-ups to paused tasks: locked and updated one by one (rare).
//!
//! Operations on the same task within one batch run in arrival order (in successive rounds
//! of the transaction). Each caller hears its own result only after the commit.
//!
//! Transient failures roll the batch back and retry it. A batch that fails for any other
//! reason (a value the database cannot hold, say) is split: every operation is retried alone,
//! so one bad operation never fails the others.

use std::collections::HashMap;

use bindu_schemas::bus::TaskEvent;
use bindu_schemas::{Message, Task, TaskKind, TaskState, TaskStatus};

use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::oneshot;

use super::{claims, is_transient, PostgresOptions};
use crate::retry::RetryPolicy;
use crate::store::*;
use crate::time::now_rfc3339;

// Short-lived, one per caller: boxing a submit would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Op {
    Submit {
        req: SubmitRequest,
        reply: oneshot::Sender<Result<SubmitOutcome, StoreError>>,
    },
    /// The updates of one `apply` call travel together, so one writer applies them in
    /// order (two writers could otherwise commit a task's later update first).
    Updates {
        updates: Vec<TaskUpdate>,
        reply: oneshot::Sender<Vec<Result<Applied, StoreError>>>,
    },
}

impl Op {
    /// How many operations this counts as against `batch_max`.
    fn len(&self) -> usize {
        match self {
            Op::Submit { .. } => 1,
            Op::Updates { updates, .. } => updates.len(),
        }
    }
}

// Short-lived, one per operation: boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
pub(super) enum SubmitOutcome {
    Created(Submitted),
    /// An interrupted task took a follow-up; the caller reads the full task back.
    Continued {
        task_id: String,
        version: u64,
        event: TaskEvent,
    },
}

pub(super) enum Input {
    Submit(SubmitRequest),
    Update(TaskUpdate),
}

enum Reply {
    Submit(oneshot::Sender<Result<SubmitOutcome, StoreError>>),
    /// The sender and how many consecutive inputs answer to it.
    Updates(oneshot::Sender<Vec<Result<Applied, StoreError>>>, usize),
}

#[allow(clippy::large_enum_variant)]
pub(super) enum Outcome {
    Submit(SubmitOutcome),
    Update(Applied),
}

impl Input {
    fn task_id(&self) -> &str {
        match self {
            Input::Submit(r) => &r.task_id,
            Input::Update(u) => &u.task_id,
        }
    }
}

/// The stored code of a state: its position in [`TaskState::ALL`].
pub(super) fn state_code(s: TaskState) -> i16 {
    TaskState::ALL
        .iter()
        .position(|x| *x == s)
        .map_or(8, |i| i as i16)
}

pub(super) fn state_of(code: i16) -> Result<TaskState, StoreError> {
    usize::try_from(code)
        .ok()
        .and_then(|i| TaskState::ALL.get(i).copied())
        .ok_or_else(|| StoreError::Other(format!("unknown task state code {code}").into()))
}

/// The states `update` may leave, as a bitmask of state codes.
fn allowed_mask(update: &TaskUpdate) -> i32 {
    TaskState::ALL
        .iter()
        .filter(|s| check_update(update, **s).is_ok())
        .fold(0, |m, s| m | (1 << state_code(*s)))
}

/// Locks the tasks follow-up messages go to (`$1` agent, `$2` task ids), in id order.
pub const LOCK_FOLLOWUPS: &str = "SELECT id, context_id, owner, state, version FROM bindu_tasks \
     WHERE agent_id = $1 AND id = ANY($2) ORDER BY id FOR UPDATE";

/// One compare-and-set UPDATE for a batch of transitions: each row changes only when its
/// current state is in the operation's mask.
pub const APPLY_UPDATES: &str = "UPDATE bindu_tasks t SET \
           state = CASE WHEN x.state < 0 THEN t.state ELSE x.state END, \
           status = CASE WHEN x.state < 0 THEN t.status ELSE x.status END, \
           version = t.version + x.width, \
           history = CASE WHEN x.history = '[]'::jsonb THEN t.history ELSE t.history || x.history END, \
           chunks = CASE WHEN x.chunks = '[]'::jsonb THEN t.chunks ELSE t.chunks || x.chunks END, \
           metadata = CASE WHEN jsonb_typeof(x.metadata) = 'object' \
                           THEN COALESCE(t.metadata, '{}'::jsonb) || x.metadata ELSE t.metadata END, \
           updated_at = now() \
         FROM unnest($3::text[], $4::int4[], $5::int2[], $6::jsonb[], $7::int8[], $8::jsonb[], \
                     $9::jsonb[], $10::jsonb[]) \
              AS x(id, mask, state, status, width, history, chunks, metadata) \
         WHERE t.agent_id = $1 AND t.id = ANY($2) AND t.id = x.id \
           AND (x.mask & (1 << t.state)) <> 0 \
         RETURNING t.id, t.version, t.context_id, t.state, \
           EXISTS (SELECT 1 FROM bindu_push_configs p \
                   WHERE p.agent_id = t.agent_id AND p.task_id = t.id) AS pushes";

/// The current states of the tasks a batch's UPDATE left alone.
pub const CURRENT_STATES: &str =
    "SELECT id, state FROM bindu_tasks WHERE agent_id = $1 AND id = ANY($2)";

/// Transient errors, plus a unique violation: a task inserted by a concurrent batch is
/// found by the retry's lookup.
fn retryable(e: &sqlx::Error) -> bool {
    is_transient(e)
        || matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

fn refused(e: &sqlx::Error) -> StoreError {
    let reason = match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    };
    StoreError::Invalid(format!("the task store cannot hold this: {reason}"))
}

/// When the tables' statistics are refreshed: fresh statistics keep the planner on the
/// primary key while tables grow from empty (autovacuum analyzes at most once a minute), so
/// they are refreshed at start and each time the tasks this store created double. Shared by
/// the store's writers (each counting only its own inserts, an uneven split of the work
/// could leave every writer short of its next refresh).
pub(super) struct AnalyzeSchedule {
    created: std::sync::atomic::AtomicU64,
    next: std::sync::atomic::AtomicU64,
}

impl AnalyzeSchedule {
    pub(super) fn new() -> Self {
        AnalyzeSchedule {
            created: std::sync::atomic::AtomicU64::new(0),
            next: std::sync::atomic::AtomicU64::new(1024),
        }
    }

    /// Counts `n` new tasks; true when a refresh is due (once per doubling).
    fn count(&self, n: u64) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        if n == 0 {
            return false;
        }
        let total = self.created.fetch_add(n, SeqCst) + n;
        let next = self.next.load(SeqCst);
        total >= next
            && self
                .next
                .compare_exchange(next, total.saturating_mul(2), SeqCst, SeqCst)
                .is_ok()
    }
}

pub(super) async fn run(
    rx: async_channel::Receiver<Op>,
    pool: PgPool,
    agent: i32,
    options: PostgresOptions,
    analyze: std::sync::Arc<AnalyzeSchedule>,
) {
    let policy = RetryPolicy {
        deadline: options.timeout,
        ..RetryPolicy::default()
    };
    while let Ok(first) = rx.recv().await {
        let mut size = first.len();
        let mut ops = vec![first];
        let linger_until = tokio::time::Instant::now() + options.batch_linger;
        while size < options.batch_max {
            let op = match rx.try_recv() {
                Ok(op) => op,
                Err(_) if options.batch_linger.is_zero() => break,
                Err(_) => match tokio::time::timeout_at(linger_until, rx.recv()).await {
                    Ok(Ok(op)) => op,
                    _ => break,
                },
            };
            size += op.len();
            ops.push(op);
        }
        let mut inputs: Vec<Input> = Vec::with_capacity(size);
        let mut replies: Vec<Reply> = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Submit { req, reply } => {
                    inputs.push(Input::Submit(req));
                    replies.push(Reply::Submit(reply));
                }
                Op::Updates { updates, reply } => {
                    replies.push(Reply::Updates(reply, updates.len()));
                    inputs.extend(updates.into_iter().map(Input::Update));
                }
            }
        }
        let started = std::time::Instant::now();
        let outcomes = commit_batch(&pool, agent, &inputs, &policy, &options).await;
        crate::metrics::engine().store_batch(inputs.len(), started.elapsed());
        tracing::debug!(
            ops = inputs.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "task store batch committed"
        );
        let created = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(Outcome::Submit(SubmitOutcome::Created(_)))))
            .count() as u64;
        if analyze.count(created) {
            spawn_analyze(pool.clone());
        }
        let mismatch = || StoreError::Other("mismatched batch outcome".into());
        let mut outcomes = outcomes.into_iter();
        for reply in replies {
            match reply {
                Reply::Submit(tx) => drop(tx.send(match outcomes.next() {
                    Some(Ok(Outcome::Submit(o))) => Ok(o),
                    Some(Err(e)) => Err(e),
                    _ => Err(mismatch()),
                })),
                Reply::Updates(tx, n) => {
                    let mine = outcomes
                        .by_ref()
                        .take(n)
                        .map(|o| match o {
                            Ok(Outcome::Update(a)) => Ok(a),
                            Err(e) => Err(e),
                            Ok(_) => Err(mismatch()),
                        })
                        .collect();
                    drop(tx.send(mine));
                }
            }
        }
    }
}

/// Commits a batch, retrying transient failures; a batch that fails otherwise is split so
/// that only the operations that cannot be stored fail.
async fn commit_batch(
    pool: &PgPool,
    agent: i32,
    inputs: &[Input],
    policy: &RetryPolicy,
    options: &PostgresOptions,
) -> Vec<Result<Outcome, StoreError>> {
    let attempt = tokio::time::timeout(
        options.timeout,
        policy.run(|| commit(pool, agent, inputs), retryable),
    )
    .await;
    match attempt {
        Ok(Ok(outcomes)) => outcomes,
        Ok(Err(e)) if !is_transient(&e) && inputs.len() > 1 => {
            tracing::warn!(error = %e, ops = inputs.len(), "task store batch refused; retrying its operations one by one");
            let mut out = Vec::with_capacity(inputs.len());
            for input in inputs {
                let one = std::slice::from_ref(input);
                let r = tokio::time::timeout(
                    options.timeout,
                    policy.run(|| commit(pool, agent, one), retryable),
                )
                .await;
                out.push(match r {
                    Ok(Ok(mut v)) => v.pop().unwrap_or_else(|| {
                        Err(StoreError::Other("no outcome for an operation".into()))
                    }),
                    Ok(Err(e)) if is_transient(&e) => Err(StoreError::Unavailable(e.to_string())),
                    Ok(Err(e)) => Err(refused(&e)),
                    Err(_) => Err(timed_out(options)),
                });
            }
            out
        }
        Ok(Err(e)) => {
            if is_transient(&e) {
                tracing::warn!(error = %e, ops = inputs.len(), "task store batch failed");
            }
            let err = || {
                if is_transient(&e) {
                    StoreError::Unavailable(e.to_string())
                } else {
                    refused(&e)
                }
            };
            inputs.iter().map(|_| Err(err())).collect()
        }
        Err(_) => {
            tracing::warn!(ops = inputs.len(), "task store batch timed out");
            inputs.iter().map(|_| Err(timed_out(options))).collect()
        }
    }
}

fn timed_out(options: &PostgresOptions) -> StoreError {
    StoreError::Unavailable(format!(
        "Postgres did not commit within {:?}",
        options.timeout
    ))
}

pub(super) fn spawn_analyze(pool: PgPool) {
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match sqlx::query("ANALYZE bindu_tasks, bindu_contexts")
            .execute(&pool)
            .await
        {
            Ok(_) => tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "task tables analyzed"
            ),
            // Not the owner of the tables, say: autovacuum still analyzes them.
            Err(e) => tracing::debug!(error = %e, "could not analyze the task tables"),
        }
    });
}

async fn commit(
    pool: &PgPool,
    agent: i32,
    inputs: &[Input],
) -> Result<Vec<Result<Outcome, StoreError>>, sqlx::Error> {
    let now = now_rfc3339();
    // Round of each input: how many earlier inputs of the batch touch the same task.
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(inputs.len());
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let n = seen.entry(input.task_id()).or_insert(0);
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push(i);
        *n += 1;
    }
    let mut results: Vec<Option<Result<Outcome, StoreError>>> =
        (0..inputs.len()).map(|_| None).collect();
    if rounds.len() == 1 && inputs.iter().all(|i| matches!(i, Input::Update(_))) {
        // Transitions of distinct tasks only (the workers' outcomes): one statement, atomic
        // by itself, without a transaction's extra round trips.
        let mut conn = pool.acquire().await?;
        update_round(&mut conn, agent, inputs, &rounds[0], &mut results, &now).await?;
    } else {
        let mut tx = pool.begin().await?;
        for round in rounds {
            run_round(&mut tx, agent, inputs, &round, &mut results, &now).await?;
        }
        tx.commit().await?;
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::Other("operation not applied".into()))))
        .collect())
}

/// One round: every task appears at most once.
async fn run_round(
    conn: &mut PgConnection,
    agent: i32,
    inputs: &[Input],
    round: &[usize],
    results: &mut [Option<Result<Outcome, StoreError>>],
    now: &str,
) -> Result<(), sqlx::Error> {
    let submits: Vec<usize> = round
        .iter()
        .copied()
        .filter(|i| matches!(inputs[*i], Input::Submit(_)))
        .collect();
    let updates: Vec<usize> = round
        .iter()
        .copied()
        .filter(|i| matches!(inputs[*i], Input::Update(_)))
        .collect();
    if !submits.is_empty() {
        claims::submit_round(conn, agent, inputs, &submits, results, now).await?;
    }
    if !updates.is_empty() {
        update_round(conn, agent, inputs, &updates, results, now).await?;
    }
    Ok(())
}

/// An artifact chunk as stored in a task row's `chunks` array.
#[derive(serde::Serialize)]
struct ChunkRow<'a> {
    artifact: &'a bindu_schemas::Artifact,
    append: bool,
    #[serde(rename = "lastChunk")]
    last_chunk: bool,
}

struct Existing {
    context_id: String,
    owner: String,
    state: TaskState,
    version: u64,
}

/// The messages of a round (after [`claims::submit_round`] claimed them): new tasks, then
/// follow-ups.
pub(super) async fn record_round(
    conn: &mut PgConnection,
    agent: i32,
    reqs: &[(usize, &SubmitRequest)],
    results: &mut [Option<Result<Outcome, StoreError>>],
    now: &str,
) -> Result<(), sqlx::Error> {
    if reqs.is_empty() {
        return Ok(());
    }
    // New tasks first: an insert that finds the id taken leaves the row alone, and that
    // submit is a follow-up (below). One statement for the common case, no lookup.
    let status = TaskStatus {
        state: TaskState::Submitted,
        message: None,
        timestamp: Some(now.to_string()),
    };
    let mut candidates: Vec<(usize, &SubmitRequest, String, Message)> =
        Vec::with_capacity(reqs.len());
    for (i, req) in reqs {
        let ctx = req
            .context_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut message = req.message.clone();
        message.task_id = Some(req.task_id.clone());
        message.context_id = Some(ctx.clone());
        candidates.push((*i, req, ctx, message));
    }
    let ids: Vec<&str> = candidates.iter().map(|c| c.1.task_id.as_str()).collect();
    let ctxs: Vec<&str> = candidates.iter().map(|c| c.2.as_str()).collect();
    let owners: Vec<&str> = candidates
        .iter()
        .map(|c| c.1.owner.as_deref().unwrap_or(""))
        .collect();
    let histories: Vec<Json<[&Message; 1]>> = candidates.iter().map(|c| Json([&c.3])).collect();
    let rows = sqlx::query(
        "INSERT INTO bindu_tasks (agent_id, id, context_id, owner, state, status, version, history) \
         SELECT $1, x.id, x.context_id, x.owner, 0, $5, 1, x.history \
         FROM unnest($2::text[], $3::text[], $4::text[], $6::jsonb[]) AS x(id, context_id, owner, history) \
         ON CONFLICT (agent_id, id) DO NOTHING RETURNING id",
    )
    .bind(agent)
    .bind(&ids)
    .bind(&ctxs)
    .bind(&owners)
    .bind(Json(&status))
    .bind(&histories)
    .fetch_all(&mut *conn)
    .await?;
    let mut inserted: std::collections::HashSet<String> =
        std::collections::HashSet::with_capacity(rows.len());
    for row in rows {
        inserted.insert(row.try_get("id")?);
    }

    // Their contexts: created, or touched and their owner learnt.
    let mut contexts: Vec<(&str, &str)> = candidates
        .iter()
        .filter(|c| inserted.contains(&c.1.task_id))
        .map(|c| (c.2.as_str(), c.1.owner.as_deref().unwrap_or("")))
        .collect();
    contexts.sort_unstable();
    contexts.dedup_by(|a, b| a.0 == b.0);
    let mut context_owner: HashMap<String, String> = HashMap::with_capacity(contexts.len());
    if !contexts.is_empty() {
        let (ctx_ids, ctx_owners): (Vec<&str>, Vec<&str>) = contexts.into_iter().unzip();
        let rows = sqlx::query(
            "INSERT INTO bindu_contexts (agent_id, id, owner) \
             SELECT $1, x.id, x.owner FROM unnest($2::text[], $3::text[]) AS x(id, owner) \
             ON CONFLICT (agent_id, id) DO UPDATE SET updated_at = now() RETURNING id, owner",
        )
        .bind(agent)
        .bind(&ctx_ids)
        .bind(&ctx_owners)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            context_owner.insert(row.try_get("id")?, row.try_get("owner")?);
        }
    }

    // Someone else's context: the task is taken back out.
    let mut refused: Vec<&str> = Vec::new();
    let mut followups: Vec<(usize, &SubmitRequest)> = Vec::new();
    for (i, req, ctx, message) in &candidates {
        if !inserted.contains(&req.task_id) {
            followups.push((*i, req));
            continue;
        }
        let owner = req.owner.as_deref().unwrap_or("");
        if context_owner.get(ctx).map(String::as_str) != Some(owner) {
            refused.push(&req.task_id);
            results[*i] = Some(Err(StoreError::ContextNotFound(ctx.clone())));
            continue;
        }
        let event = status_event(&req.task_id, ctx, &status, 1, now);
        results[*i] = Some(Ok(Outcome::Submit(SubmitOutcome::Created(Submitted {
            task: Task {
                id: req.task_id.clone(),
                context_id: ctx.clone(),
                status: status.clone(),
                kind: TaskKind::Task,
                history: Some(vec![message.clone()]),
                artifacts: None,
                metadata: None,
            },
            version: 1,
            event,
            created: true,
        }))));
    }
    if !refused.is_empty() {
        sqlx::query("DELETE FROM bindu_tasks WHERE agent_id = $1 AND id = ANY($2)")
            .bind(agent)
            .bind(&refused)
            .execute(&mut *conn)
            .await?;
    }
    if followups.is_empty() {
        return Ok(());
    }

    // Follow-ups to existing tasks: locked and checked one by one (rare).
    let mut ids: Vec<&str> = followups.iter().map(|(_, r)| r.task_id.as_str()).collect();
    ids.sort_unstable();
    let rows = sqlx::query(LOCK_FOLLOWUPS)
        .bind(agent)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut existing: HashMap<String, Existing> = HashMap::with_capacity(rows.len());
    for row in rows {
        let state = state_of(row.try_get("state")?).unwrap_or(TaskState::Unknown);
        let version: i64 = row.try_get("version")?;
        existing.insert(
            row.try_get("id")?,
            Existing {
                context_id: row.try_get("context_id")?,
                owner: row.try_get("owner")?,
                state,
                version: u64::try_from(version).unwrap_or(0),
            },
        );
    }
    for (i, req) in followups {
        results[i] = Some(match existing.get(&req.task_id) {
            Some(e) => follow_up(conn, agent, req, e, now).await?,
            // Deleted between the insert and the lookup (contexts/clear): retry.
            None => Err(StoreError::Unavailable(format!(
                "task {} changed during the write; retry",
                req.task_id
            ))),
        });
    }
    Ok(())
}

/// A new message for an existing task (locked by the caller's lookup).
async fn follow_up(
    conn: &mut PgConnection,
    agent: i32,
    req: &SubmitRequest,
    e: &Existing,
    now: &str,
) -> Result<Result<Outcome, StoreError>, sqlx::Error> {
    let owner = req.owner.as_deref().unwrap_or("");
    if e.owner != owner {
        return Ok(Err(StoreError::NotFound(req.task_id.clone())));
    }
    if e.state.is_terminal() {
        return Ok(Err(StoreError::Immutable {
            task_id: req.task_id.clone(),
            state: e.state,
        }));
    }
    if !e.state.is_interrupted() {
        return Ok(Err(StoreError::Busy {
            task_id: req.task_id.clone(),
            state: e.state,
        }));
    }
    if let Some(c) = &req.context_id {
        if *c != e.context_id {
            return Ok(Err(StoreError::Invalid(format!(
                "task {} belongs to context {}, not {c}",
                req.task_id, e.context_id
            ))));
        }
    }
    let mut message = req.message.clone();
    message.task_id = Some(req.task_id.clone());
    message.context_id = Some(e.context_id.clone());
    let status = TaskStatus {
        state: TaskState::Submitted,
        message: None,
        timestamp: Some(now.to_string()),
    };
    let version = e.version + 1;
    sqlx::query(
        "UPDATE bindu_tasks SET state = 0, status = $3, version = $4, history = history || $5, \
         updated_at = now() WHERE agent_id = $1 AND id = $2",
    )
    .bind(agent)
    .bind(&req.task_id)
    .bind(Json(&status))
    .bind(i64::try_from(version).unwrap_or(i64::MAX))
    .bind(Json([&message]))
    .execute(&mut *conn)
    .await?;
    let event = status_event(&req.task_id, &e.context_id, &status, version, now);
    Ok(Ok(Outcome::Submit(SubmitOutcome::Continued {
        task_id: req.task_id.clone(),
        version,
        event,
    })))
}

async fn update_round(
    conn: &mut PgConnection,
    agent: i32,
    inputs: &[Input],
    indices: &[usize],
    results: &mut [Option<Result<Outcome, StoreError>>],
    now: &str,
) -> Result<(), sqlx::Error> {
    // Sorted by task id: concurrent writers lock rows in the same order.
    let mut ups: Vec<(usize, &TaskUpdate)> = indices
        .iter()
        .filter_map(|i| match &inputs[*i] {
            Input::Update(u) => Some((*i, u)),
            Input::Submit(_) => None,
        })
        .collect();
    ups.sort_unstable_by(|a, b| a.1.task_id.cmp(&b.1.task_id));
    let n = ups.len();
    let mut ids: Vec<&str> = Vec::with_capacity(n);
    let mut masks: Vec<i32> = Vec::with_capacity(n);
    let mut states: Vec<i16> = Vec::with_capacity(n);
    let mut statuses: Vec<Json<Option<TaskStatus>>> = Vec::with_capacity(n);
    let mut widths: Vec<i64> = Vec::with_capacity(n);
    let mut histories: Vec<Json<&Vec<Message>>> = Vec::with_capacity(n);
    let mut chunks: Vec<Json<Vec<ChunkRow<'_>>>> = Vec::with_capacity(n);
    let mut metas: Vec<Json<Option<&bindu_schemas::Metadata>>> = Vec::with_capacity(n);
    for (_, u) in &ups {
        ids.push(&u.task_id);
        masks.push(allowed_mask(u));
        let status = u.status.as_ref().map(|(state, message)| TaskStatus {
            state: *state,
            message: message.clone(),
            timestamp: Some(now.to_string()),
        });
        states.push(status.as_ref().map_or(-1, |s| state_code(s.state)));
        statuses.push(Json(status));
        widths.push(i64::try_from(update_width(u)).unwrap_or(i64::MAX));
        histories.push(Json(&u.history));
        chunks.push(Json(
            u.streamed
                .iter()
                .chain(&u.artifacts)
                .map(|c| ChunkRow {
                    artifact: &c.artifact,
                    append: c.append,
                    last_chunk: c.last_chunk,
                })
                .collect(),
        ));
        metas.push(Json(u.metadata.as_ref()));
    }
    let rows = sqlx::query(APPLY_UPDATES)
        .bind(agent)
        // `id = ANY` keeps the planner on the primary key whatever it guesses about the rows.
        .bind(&ids)
        .bind(&ids)
        .bind(&masks)
        .bind(&states)
        .bind(&statuses)
        .bind(&widths)
        .bind(&histories)
        .bind(&chunks)
        .bind(&metas)
        .fetch_all(&mut *conn)
        .await?;
    let mut changed: HashMap<String, (u64, String, i16, bool)> = HashMap::with_capacity(rows.len());
    for row in rows {
        let version: i64 = row.try_get("version")?;
        changed.insert(
            row.try_get("id")?,
            (
                u64::try_from(version).unwrap_or(0),
                row.try_get("context_id")?,
                row.try_get("state")?,
                row.try_get("pushes")?,
            ),
        );
    }
    // Why the others were not changed: missing, or in a state the update does not accept.
    let missed: Vec<&str> = ups
        .iter()
        .filter(|(_, u)| !changed.contains_key(&u.task_id))
        .map(|(_, u)| u.task_id.as_str())
        .collect();
    let mut current: HashMap<String, i16> = HashMap::new();
    if !missed.is_empty() {
        let rows = sqlx::query(CURRENT_STATES)
            .bind(agent)
            .bind(&missed)
            .fetch_all(&mut *conn)
            .await?;
        for row in rows {
            current.insert(row.try_get("id")?, row.try_get("state")?);
        }
    }
    for (i, u) in ups {
        results[i] = Some(match changed.get(&u.task_id) {
            Some((version, context_id, state, pushes)) => {
                let before = version.saturating_sub(update_width(u));
                let plan = plan_events(u, before, context_id, now);
                state_of(*state).map(|state| {
                    Outcome::Update(Applied {
                        state,
                        version: *version,
                        events: plan.events,
                        push_configs: *pushes,
                    })
                })
            }
            None => match current.get(&u.task_id) {
                None => Err(StoreError::NotFound(u.task_id.clone())),
                Some(code) => match state_of(*code).and_then(|s| check_update(u, s)) {
                    Err(e) => Err(e),
                    // The mask and the check disagree: never expected.
                    Ok(()) => Err(StoreError::Other(
                        format!("task {} was not updated", u.task_id).into(),
                    )),
                },
            },
        });
    }
    Ok(())
}
