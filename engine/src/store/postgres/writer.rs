//! The batch writer: one task that group-commits submits and transitions.
//!
//! It takes whatever operations are waiting (up to `batch_max`, lingering up to
//! `batch_linger` for more), and applies them in one transaction: lock the rows of every
//! task involved (sorted, so concurrent writers in other processes cannot deadlock), check
//! each operation's compare-and-set in arrival order against the locked state, then write
//! all changes with a handful of set-based statements and commit. Each caller hears its own
//! result only after the commit. Transient failures roll the whole batch back and retry it.

use std::collections::HashMap;
use std::sync::Arc;

use bindu_schemas::bus::TaskEvent;
use bindu_schemas::{Metadata, Task, TaskKind, TaskState, TaskStatus};
use serde_json::{json, Value};
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use tokio::sync::oneshot;

use super::{is_transient, PostgresOptions};
use crate::retry::RetryPolicy;
use crate::state::can_transition;
use crate::store::*;
use crate::time::now_rfc3339;

pub(super) enum Op {
    Submit {
        req: SubmitRequest,
        reply: oneshot::Sender<Result<SubmitOutcome, StoreError>>,
    },
    Update {
        update: TaskUpdate,
        reply: oneshot::Sender<Result<Applied, StoreError>>,
    },
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

enum Input {
    Submit(SubmitRequest),
    Update(TaskUpdate),
}

enum Reply {
    Submit(oneshot::Sender<Result<SubmitOutcome, StoreError>>),
    Update(oneshot::Sender<Result<Applied, StoreError>>),
}

#[allow(clippy::large_enum_variant)]
enum Outcome {
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

fn error_for_all(e: &sqlx::Error) -> StoreError {
    if is_transient(e) {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Other(e.to_string().into())
    }
}

pub(super) async fn run(
    rx: async_channel::Receiver<Op>,
    pool: PgPool,
    agent: Arc<str>,
    options: PostgresOptions,
) {
    let policy = RetryPolicy {
        deadline: options.timeout,
        ..RetryPolicy::default()
    };
    // Fresh statistics keep the planner on the primary key while tables grow from empty
    // (autovacuum analyzes at most once a minute); refreshed at start and each time this
    // writer's own inserts double.
    spawn_analyze(pool.clone());
    let mut created: u64 = 0;
    let mut next_analyze: u64 = 1024;
    while let Ok(first) = rx.recv().await {
        let mut ops = vec![first];
        let linger_until = tokio::time::Instant::now() + options.batch_linger;
        while ops.len() < options.batch_max {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) if options.batch_linger.is_zero() => break,
                Err(_) => match tokio::time::timeout_at(linger_until, rx.recv()).await {
                    Ok(Ok(op)) => ops.push(op),
                    _ => break,
                },
            }
        }
        let (inputs, replies): (Vec<Input>, Vec<Reply>) = ops
            .into_iter()
            .map(|op| match op {
                Op::Submit { req, reply } => (Input::Submit(req), Reply::Submit(reply)),
                Op::Update { update, reply } => (Input::Update(update), Reply::Update(reply)),
            })
            .unzip();
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(
            options.timeout,
            policy.run(|| commit(&pool, &agent, &inputs), is_transient),
        )
        .await;
        tracing::debug!(
            ops = inputs.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "task store batch committed"
        );
        match result {
            Ok(Ok(outcomes)) => {
                created += outcomes
                    .iter()
                    .filter(|o| matches!(o, Ok(Outcome::Submit(SubmitOutcome::Created(_)))))
                    .count() as u64;
                if created >= next_analyze {
                    next_analyze = created.saturating_mul(2);
                    spawn_analyze(pool.clone());
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    match (reply, outcome) {
                        (Reply::Submit(tx), Ok(Outcome::Submit(o))) => drop(tx.send(Ok(o))),
                        (Reply::Update(tx), Ok(Outcome::Update(a))) => drop(tx.send(Ok(a))),
                        (Reply::Submit(tx), Err(e)) => drop(tx.send(Err(e))),
                        (Reply::Update(tx), Err(e)) => drop(tx.send(Err(e))),
                        (Reply::Submit(tx), Ok(_)) => {
                            drop(tx.send(Err(StoreError::Other("mismatched batch outcome".into()))))
                        }
                        (Reply::Update(tx), Ok(_)) => {
                            drop(tx.send(Err(StoreError::Other("mismatched batch outcome".into()))))
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, ops = replies.len(), "task store batch failed");
                for reply in replies {
                    match reply {
                        Reply::Submit(tx) => drop(tx.send(Err(error_for_all(&e)))),
                        Reply::Update(tx) => drop(tx.send(Err(error_for_all(&e)))),
                    }
                }
            }
            Err(_) => {
                tracing::warn!(ops = replies.len(), "task store batch timed out");
                let err = || {
                    StoreError::Unavailable(format!(
                        "Postgres did not commit within {:?}",
                        options.timeout
                    ))
                };
                for reply in replies {
                    match reply {
                        Reply::Submit(tx) => drop(tx.send(Err(err()))),
                        Reply::Update(tx) => drop(tx.send(Err(err()))),
                    }
                }
            }
        }
    }
}

fn spawn_analyze(pool: PgPool) {
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match sqlx::query(
            "ANALYZE bindu_tasks, bindu_contexts, bindu_task_messages, bindu_task_artifacts",
        )
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

/// A task row as the batch changes it.
struct Work {
    context_id: String,
    owner: String,
    status: TaskStatus,
    version: u64,
    history_count: i32,
    existed: bool,
    dirty: bool,
    metadata: Option<Metadata>,
}

async fn commit(
    pool: &PgPool,
    agent: &str,
    inputs: &[Input],
) -> Result<Vec<Result<Outcome, StoreError>>, sqlx::Error> {
    let now = now_rfc3339();
    let mut tx = pool.begin().await?;

    let mut ids: Vec<&str> = inputs.iter().map(Input::task_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = sqlx::query(
        "SELECT id, context_id, owner, status, version, history_count FROM bindu_tasks \
         WHERE agent = $1 AND id = ANY($2) ORDER BY id FOR UPDATE",
    )
    .bind(agent)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut tasks: HashMap<String, Work> = HashMap::with_capacity(inputs.len());
    for row in rows {
        let Json(status): Json<TaskStatus> = row.try_get("status")?;
        let version: i64 = row.try_get("version")?;
        tasks.insert(
            row.try_get("id")?,
            Work {
                context_id: row.try_get("context_id")?,
                owner: row.try_get("owner")?,
                status,
                version: u64::try_from(version).unwrap_or(0),
                history_count: row.try_get("history_count")?,
                existed: true,
                dirty: false,
                metadata: None,
            },
        );
    }

    // Contexts of the tasks this batch may create: insert (or touch) them, learn owners.
    let mut new_contexts: Vec<Option<String>> = Vec::with_capacity(inputs.len());
    let mut context_rows: Vec<Value> = Vec::new();
    let mut seen_contexts = std::collections::HashSet::new();
    for input in inputs {
        match input {
            Input::Submit(req) if !tasks.contains_key(&req.task_id) => {
                let ctx = req
                    .context_id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                if seen_contexts.insert(ctx.clone()) {
                    context_rows
                        .push(json!({"id": ctx, "owner": req.owner.clone().unwrap_or_default()}));
                }
                new_contexts.push(Some(ctx));
            }
            _ => new_contexts.push(None),
        }
    }
    let mut context_owner: HashMap<String, String> = HashMap::new();
    if !context_rows.is_empty() {
        context_rows.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let rows = sqlx::query(
            "INSERT INTO bindu_contexts (agent, id, owner) \
             SELECT $1, x.id, x.owner FROM jsonb_to_recordset($2) AS x(id text, owner text) \
             ON CONFLICT (agent, id) DO UPDATE SET updated_at = now() RETURNING id, owner",
        )
        .bind(agent)
        .bind(Json(Value::Array(context_rows)))
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            context_owner.insert(row.try_get("id")?, row.try_get("owner")?);
        }
    }

    let mut created: Vec<String> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut artifacts: Vec<Value> = Vec::new();
    let mut results = Vec::with_capacity(inputs.len());
    for (input, new_context) in inputs.iter().zip(new_contexts) {
        let outcome = match input {
            Input::Submit(req) => submit(
                req,
                new_context,
                &mut tasks,
                &context_owner,
                &mut created,
                &mut messages,
                &now,
            )
            .map(Outcome::Submit),
            Input::Update(update) => {
                apply(update, &mut tasks, &mut messages, &mut artifacts, &now).map(Outcome::Update)
            }
        };
        results.push(outcome);
    }

    let row = |id: &str, w: &Work| {
        json!({
            "id": id, "context_id": w.context_id, "owner": w.owner,
            "state": w.status.state.as_str(), "status": w.status,
            "version": w.version, "history_count": w.history_count, "metadata": w.metadata,
        })
    };
    let inserts: Vec<Value> = created
        .iter()
        .filter_map(|id| tasks.get(id).map(|w| row(id, w)))
        .collect();
    let mut updated_ids: Vec<&str> = Vec::new();
    let updates: Vec<Value> = tasks
        .iter()
        .filter(|(_, w)| w.existed && w.dirty)
        .map(|(id, w)| {
            updated_ids.push(id);
            row(id, w)
        })
        .collect();
    if !inserts.is_empty() {
        sqlx::query(
            "INSERT INTO bindu_tasks (agent, id, context_id, owner, state, status, version, history_count, metadata) \
             SELECT $1, x.id, x.context_id, x.owner, x.state, x.status, x.version, x.history_count, x.metadata \
             FROM jsonb_to_recordset($2) AS x(id text, context_id text, owner text, state text, status jsonb, \
                                               version bigint, history_count int, metadata jsonb)",
        )
        .bind(agent)
        .bind(Json(Value::Array(inserts)))
        .execute(&mut *tx)
        .await?;
    }
    if !updates.is_empty() {
        sqlx::query(
            "UPDATE bindu_tasks t SET state = x.state, status = x.status, version = x.version, \
                 history_count = x.history_count, updated_at = now(), \
                 metadata = CASE WHEN x.metadata IS NULL THEN t.metadata \
                                 ELSE COALESCE(t.metadata, '{}'::jsonb) || x.metadata END \
             FROM jsonb_to_recordset($2) AS x(id text, state text, status jsonb, version bigint, \
                                               history_count int, metadata jsonb) \
             WHERE t.agent = $1 AND t.id = ANY($3) AND t.id = x.id",
        )
        .bind(agent)
        .bind(Json(Value::Array(updates)))
        // `id = ANY` lets the planner use the primary key whatever it guesses about the
        // JSON rows (without it, a stale estimate picks a scan of all the agent's tasks).
        .bind(&updated_ids)
        .execute(&mut *tx)
        .await?;
    }
    if !messages.is_empty() {
        sqlx::query(
            "INSERT INTO bindu_task_messages (agent, task_id, ordinal, message) \
             SELECT $1, x.task_id, x.ordinal, x.message \
             FROM jsonb_to_recordset($2) AS x(task_id text, ordinal int, message jsonb)",
        )
        .bind(agent)
        .bind(Json(Value::Array(messages)))
        .execute(&mut *tx)
        .await?;
    }
    if !artifacts.is_empty() {
        sqlx::query(
            "INSERT INTO bindu_task_artifacts (agent, task_id, seq, append, last_chunk, artifact) \
             SELECT $1, x.task_id, x.seq, x.append, x.last_chunk, x.artifact \
             FROM jsonb_to_recordset($2) AS x(task_id text, seq bigint, append boolean, last_chunk boolean, artifact jsonb)",
        )
        .bind(agent)
        .bind(Json(Value::Array(artifacts)))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(results)
}

fn submit(
    req: &SubmitRequest,
    new_context: Option<String>,
    tasks: &mut HashMap<String, Work>,
    context_owner: &HashMap<String, String>,
    created: &mut Vec<String>,
    messages: &mut Vec<Value>,
    now: &str,
) -> Result<SubmitOutcome, StoreError> {
    let owner = req.owner.clone().unwrap_or_default();
    let mut message = req.message.clone();
    if let Some(w) = tasks.get_mut(&req.task_id) {
        if w.owner != owner {
            return Err(StoreError::NotFound(req.task_id.clone()));
        }
        let state = w.status.state;
        if state.is_terminal() {
            return Err(StoreError::Immutable {
                task_id: req.task_id.clone(),
                state,
            });
        }
        if !state.is_interrupted() {
            return Err(StoreError::Busy {
                task_id: req.task_id.clone(),
                state,
            });
        }
        if let Some(c) = &req.context_id {
            if *c != w.context_id {
                return Err(StoreError::Invalid(format!(
                    "task {} belongs to context {}, not {c}",
                    req.task_id, w.context_id
                )));
            }
        }
        message.task_id = Some(req.task_id.clone());
        message.context_id = Some(w.context_id.clone());
        messages
            .push(json!({"task_id": req.task_id, "ordinal": w.history_count, "message": message}));
        w.history_count += 1;
        w.status = TaskStatus {
            state: TaskState::Submitted,
            message: None,
            timestamp: Some(now.to_string()),
        };
        w.version += 1;
        w.dirty = true;
        let event = status_event(&req.task_id, &w.context_id, &w.status, w.version, now);
        return Ok(SubmitOutcome::Continued {
            task_id: req.task_id.clone(),
            version: w.version,
            event,
        });
    }
    let Some(context_id) = new_context else {
        return Err(StoreError::Other("no context chosen for a new task".into()));
    };
    if context_owner.get(&context_id) != Some(&owner) {
        return Err(StoreError::ContextNotFound(context_id));
    }
    message.task_id = Some(req.task_id.clone());
    message.context_id = Some(context_id.clone());
    messages.push(json!({"task_id": req.task_id, "ordinal": 0, "message": message}));
    let status = TaskStatus {
        state: TaskState::Submitted,
        message: None,
        timestamp: Some(now.to_string()),
    };
    let event = status_event(&req.task_id, &context_id, &status, 1, now);
    let task = Task {
        id: req.task_id.clone(),
        context_id: context_id.clone(),
        status: status.clone(),
        kind: TaskKind::Task,
        history: Some(vec![message]),
        artifacts: None,
        metadata: None,
    };
    tasks.insert(
        req.task_id.clone(),
        Work {
            context_id,
            owner,
            status,
            version: 1,
            history_count: 1,
            existed: false,
            dirty: true,
            metadata: None,
        },
    );
    created.push(req.task_id.clone());
    Ok(SubmitOutcome::Created(Submitted {
        task,
        version: 1,
        event,
        created: true,
    }))
}

fn apply(
    update: &TaskUpdate,
    tasks: &mut HashMap<String, Work>,
    messages: &mut Vec<Value>,
    artifacts: &mut Vec<Value>,
    now: &str,
) -> Result<Applied, StoreError> {
    let Some(w) = tasks.get_mut(&update.task_id) else {
        return Err(StoreError::NotFound(update.task_id.clone()));
    };
    let from = w.status.state;
    if !update.expect.matches(from) {
        return Err(StoreError::Conflict {
            task_id: update.task_id.clone(),
            state: from,
        });
    }
    match &update.status {
        Some((to, _)) if !can_transition(from, *to) => {
            return Err(StoreError::IllegalTransition {
                task_id: update.task_id.clone(),
                from,
                to: *to,
            });
        }
        None if from.is_terminal() => {
            return Err(StoreError::Conflict {
                task_id: update.task_id.clone(),
                state: from,
            });
        }
        _ => {}
    }
    let mut events = Vec::with_capacity(update.artifacts.len() + 1);
    for chunk in &update.artifacts {
        w.version += 1;
        artifacts.push(json!({
            "task_id": update.task_id, "seq": w.version, "append": chunk.append,
            "last_chunk": chunk.last_chunk, "artifact": chunk.artifact,
        }));
        events.push(artifact_event(
            &update.task_id,
            &w.context_id,
            chunk,
            w.version,
            now,
        ));
    }
    for m in &update.history {
        messages.push(json!({"task_id": update.task_id, "ordinal": w.history_count, "message": m}));
        w.history_count += 1;
    }
    if let Some(meta) = &update.metadata {
        w.metadata
            .get_or_insert_with(Default::default)
            .extend(meta.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some((to, message)) = &update.status {
        w.status = TaskStatus {
            state: *to,
            message: message.clone(),
            timestamp: Some(now.to_string()),
        };
        w.version += 1;
        events.push(status_event(
            &update.task_id,
            &w.context_id,
            &w.status,
            w.version,
            now,
        ));
    }
    w.dirty = true;
    Ok(Applied {
        state: w.status.state,
        version: w.version,
        events,
    })
}
