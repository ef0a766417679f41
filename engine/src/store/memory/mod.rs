//! In-process task store: the embedded default. Sharded maps, no global lock on the hot
//! path. Bounded: once more than `max_tasks` tasks are stored, the oldest terminal tasks are
//! evicted, then (when no terminal task is left) the oldest paused ones (`input-required`,
//! `auth-required`); a context goes with its last task. Queued and running tasks are never
//! evicted: the bus's queue capacity and the workers' concurrency bound them.
//!
//! - this file: the maps, submits, updates, reads, push configs and feedback;
//! - [`evict`]: which tasks make room when the store is over its bound, and the removal of a
//!   task (with its context, when it was the last) from every map and index;
//! - [`listing`]: newest-first pages of tasks and contexts, bounded in the ids they examine.

mod evict;
mod listing;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bindu_schemas::bus::TaskEvent;
use bindu_schemas::{
    ContextSummary, PushNotificationConfig, Task, TaskKind, TaskState, TaskStatus,
};
use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::{Ref, RefMut};
use dashmap::DashMap;
use parking_lot::Mutex;

use super::*;
use crate::time::now_rfc3339;
use evict::TaskIndex;
pub use listing::MAX_SCAN;

/// Default bound on stored tasks.
pub const DEFAULT_MAX_TASKS: usize = 1_000_000;

struct TaskEntry {
    task: Task,
    owner: Option<String>,
    version: u64,
    order: u64,
    push: Vec<PushNotificationConfig>,
    feedback: Vec<Feedback>,
    updated: std::time::SystemTime,
}

struct ContextEntry {
    owner: Option<String>,
    /// Creation order → task id.
    tasks: BTreeMap<u64, String>,
    order: u64,
    created_at: String,
    updated_at: String,
}

pub struct MemoryStore {
    tasks: DashMap<String, TaskEntry>,
    contexts: DashMap<String, ContextEntry>,
    /// Lock order: a task's or context's map entry may be held while taking this lock,
    /// never the other way round.
    task_index: Mutex<TaskIndex>,
    /// Creation order → context id, for newest-first listing.
    context_order: Mutex<BTreeMap<u64, String>>,
    next_order: AtomicU64,
    by_state: [AtomicU64; 9],
    max_tasks: usize,
    /// Ids examined by listings so far (what bounds a listing's work).
    scanned: AtomicU64,
    /// Idempotent sends: claimed (owner, `messageId`) keys → the first's task.
    claims: DashMap<[u8; 32], Claim>,
    /// Claims held when the next sweep of expired ones runs.
    claims_sweep_at: AtomicU64,
}

/// A message claimed for idempotent sends ([`SubmitRequest::dedupe`]).
struct Claim {
    task_id: String,
    expires: std::time::Instant,
}

/// Claims held before the first sweep of expired ones.
const CLAIMS_SWEEP_MIN: u64 = 1024;

fn state_index(s: TaskState) -> usize {
    TaskState::ALL.iter().position(|x| *x == s).unwrap_or(8)
}

fn task_status_event(task: &Task, seq: u64, timestamp: &str) -> TaskEvent {
    status_event(&task.id, &task.context_id, &task.status, seq, timestamp)
}

impl MemoryStore {
    pub fn new(max_tasks: usize) -> Self {
        MemoryStore {
            tasks: DashMap::new(),
            contexts: DashMap::new(),
            task_index: Mutex::new(TaskIndex::default()),
            context_order: Mutex::new(BTreeMap::new()),
            next_order: AtomicU64::new(1),
            by_state: Default::default(),
            max_tasks: max_tasks.max(1),
            scanned: AtomicU64::new(0),
            claims: DashMap::new(),
            claims_sweep_at: AtomicU64::new(CLAIMS_SWEEP_MIN),
        }
    }

    /// Number of stored contexts.
    pub fn context_count(&self) -> usize {
        self.contexts.len()
    }

    fn count(&self, s: TaskState, delta: i64) {
        let c = &self.by_state[state_index(s)];
        if delta >= 0 {
            c.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            c.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// Task `task_id` when `access` may see it; someone else's answers like a missing one.
    fn owned(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Ref<'_, String, TaskEntry>, StoreError> {
        self.tasks
            .get(task_id)
            .filter(|e| access.permits(e.owner.as_deref()))
            .ok_or_else(|| StoreError::NotFound(task_id.to_string()))
    }

    /// [`Self::owned`], to change.
    fn owned_mut(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<RefMut<'_, String, TaskEntry>, StoreError> {
        self.tasks
            .get_mut(task_id)
            .filter(|e| access.permits(e.owner.as_deref()))
            .ok_or_else(|| StoreError::NotFound(task_id.to_string()))
    }

    fn touch_context(&self, context_id: &str, now: &str) {
        if let Some(mut ctx) = self.contexts.get_mut(context_id) {
            ctx.updated_at = now.to_string();
        }
    }

    fn apply_one(&self, update: TaskUpdate) -> Result<Applied, StoreError> {
        let mut entry = self
            .tasks
            .get_mut(&update.task_id)
            .ok_or_else(|| StoreError::NotFound(update.task_id.clone()))?;
        let e = &mut *entry;
        let from = e.task.status.state;
        let now = now_rfc3339();
        let plan = plan_update(&update, from, e.version, &e.task.context_id, &now)?;
        for chunk in update.streamed.iter().chain(&update.artifacts) {
            merge_artifact(&mut e.task, chunk);
        }
        if !update.history.is_empty() {
            e.task
                .history
                .get_or_insert_with(Vec::new)
                .extend(update.history);
        }
        if let Some(meta) = update.metadata {
            e.task
                .metadata
                .get_or_insert_with(Default::default)
                .extend(meta);
        }
        e.updated = std::time::SystemTime::now();
        e.version = plan.version;
        if let Some(status) = plan.status {
            let to = status.state;
            e.task.status = status;
            if from != to {
                self.count(from, -1);
                self.count(to, 1);
                self.reindex(e.order, &e.task.id, from, to);
            }
        }
        Ok(Applied {
            state: e.task.status.state,
            version: e.version,
            events: plan.events,
            push_configs: !e.push.is_empty(),
        })
    }
}

impl MemoryStore {
    /// Records a user message (see [`TaskStore::submit`]), without claiming it.
    fn submit_message(&self, req: SubmitRequest) -> Result<Submitted, StoreError> {
        let now = now_rfc3339();
        let mut message = req.message;
        match self.tasks.entry(req.task_id.clone()) {
            Entry::Occupied(mut occ) => {
                let e = occ.get_mut();
                if e.owner != req.owner {
                    return Err(StoreError::NotFound(req.task_id));
                }
                let state = e.task.status.state;
                if state.is_terminal() {
                    return Err(StoreError::Immutable {
                        task_id: req.task_id,
                        state,
                    });
                }
                if !state.is_interrupted() {
                    return Err(StoreError::Busy {
                        task_id: req.task_id,
                        state,
                    });
                }
                if let Some(c) = &req.context_id {
                    if *c != e.task.context_id {
                        return Err(StoreError::Invalid(format!(
                            "task {} belongs to context {}, not {c}",
                            req.task_id, e.task.context_id
                        )));
                    }
                }
                if let Some(p) = req.push_config {
                    upsert_push(&mut e.push, p)?;
                }
                message.task_id = Some(e.task.id.clone());
                message.context_id = Some(e.task.context_id.clone());
                e.task.history.get_or_insert_with(Vec::new).push(message);
                e.task.status = TaskStatus {
                    state: TaskState::Submitted,
                    message: None,
                    timestamp: Some(now.clone()),
                };
                e.version += 1;
                e.updated = std::time::SystemTime::now();
                self.count(state, -1);
                self.count(TaskState::Submitted, 1);
                self.reindex(e.order, &e.task.id, state, TaskState::Submitted);
                let event = task_status_event(&e.task, e.version, &now);
                let out = Submitted {
                    task: e.task.clone(),
                    version: e.version,
                    event,
                    created: false,
                };
                drop(occ);
                self.touch_context(&out.task.context_id, &now);
                Ok(out)
            }
            Entry::Vacant(vac) => {
                let context_id = req
                    .context_id
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let order = self.next_order.fetch_add(1, Ordering::Relaxed);
                let mut new_context = false;
                match self.contexts.entry(context_id.clone()) {
                    Entry::Occupied(mut ctx) => {
                        if ctx.get().owner != req.owner {
                            return Err(StoreError::ContextNotFound(context_id));
                        }
                        let ctx = ctx.get_mut();
                        ctx.tasks.insert(order, req.task_id.clone());
                        ctx.updated_at.clone_from(&now);
                    }
                    Entry::Vacant(ctx) => {
                        ctx.insert(ContextEntry {
                            owner: req.owner.clone(),
                            tasks: BTreeMap::from([(order, req.task_id.clone())]),
                            order,
                            created_at: now.clone(),
                            updated_at: now.clone(),
                        });
                        new_context = true;
                    }
                }
                let mut push = Vec::new();
                if let Some(p) = req.push_config {
                    upsert_push(&mut push, p)?;
                }
                message.task_id = Some(req.task_id.clone());
                message.context_id = Some(context_id.clone());
                let task = Task {
                    id: req.task_id.clone(),
                    context_id,
                    status: TaskStatus {
                        state: TaskState::Submitted,
                        message: None,
                        timestamp: Some(now.clone()),
                    },
                    kind: TaskKind::Task,
                    history: Some(vec![message]),
                    artifacts: None,
                    metadata: None,
                };
                let event = task_status_event(&task, 1, &now);
                vac.insert(TaskEntry {
                    task: task.clone(),
                    owner: req.owner,
                    version: 1,
                    order,
                    push,
                    feedback: Vec::new(),
                    updated: std::time::SystemTime::now(),
                });
                self.count(TaskState::Submitted, 1);
                self.task_index.lock().all.insert(order, req.task_id);
                if new_context {
                    self.context_order
                        .lock()
                        .insert(order, task.context_id.clone());
                }
                self.evict();
                Ok(Submitted {
                    task,
                    version: 1,
                    event,
                    created: true,
                })
            }
        }
    }

    /// Forgets expired claims, once their number doubled since the last sweep: each claim
    /// is examined a bounded number of times on average.
    fn sweep_claims(&self, now: std::time::Instant) {
        let len = self.claims.len() as u64;
        let next = self.claims_sweep_at.load(Ordering::Relaxed);
        if len < next
            || self
                .claims_sweep_at
                .compare_exchange(next, u64::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.claims.retain(|_, c| c.expires > now);
        let left = self.claims.len() as u64;
        self.claims_sweep_at
            .store((left * 2).max(CLAIMS_SWEEP_MIN), Ordering::Release);
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_TASKS)
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn submit(&self, req: SubmitRequest) -> Result<Submitted, StoreError> {
        let (Some(key), Some(window)) = (req.dedupe_key(), req.dedupe) else {
            return self.submit_message(req);
        };
        let now = std::time::Instant::now();
        self.sweep_claims(now);
        // The claim's shard stays locked while the message is recorded (no await in
        // between): a retry racing the first waits for it, then finds its task.
        match self.claims.entry(key) {
            Entry::Occupied(claim) if claim.get().expires > now => Err(StoreError::Duplicate {
                task_id: claim.get().task_id.clone(),
            }),
            Entry::Occupied(mut expired) => {
                let task_id = req.task_id.clone();
                let out = self.submit_message(req)?;
                expired.insert(Claim {
                    task_id,
                    expires: now + window,
                });
                Ok(out)
            }
            Entry::Vacant(vacant) => {
                let task_id = req.task_id.clone();
                let out = self.submit_message(req)?;
                vacant.insert(Claim {
                    task_id,
                    expires: now + window,
                });
                Ok(out)
            }
        }
    }

    async fn release_claim(&self, key: [u8; 32], task_id: &str) -> Result<(), StoreError> {
        self.claims.remove_if(&key, |_, c| c.task_id == task_id);
        Ok(())
    }

    async fn apply(&self, updates: Vec<TaskUpdate>) -> Vec<Result<Applied, StoreError>> {
        updates.into_iter().map(|u| self.apply_one(u)).collect()
    }

    async fn get(&self, task_id: &str, access: Access<'_>) -> Result<TaskSnapshot, StoreError> {
        let e = self.owned(task_id, access)?;
        Ok(TaskSnapshot {
            task: e.task.clone(),
            version: e.version,
            owner: e.owner.clone(),
        })
    }

    async fn list_tasks(
        &self,
        access: Access<'_>,
        listing: TaskListing,
    ) -> Result<Page<Task>, StoreError> {
        self.list_tasks_page(access, &listing)
    }

    async fn count_tasks(
        &self,
        access: Access<'_>,
        listing: &TaskListing,
    ) -> Result<u64, StoreError> {
        Ok(self.count_matching(access, listing))
    }

    async fn list_contexts(
        &self,
        access: Access<'_>,
        query: ListQuery,
    ) -> Result<Page<ContextSummary>, StoreError> {
        self.list_contexts_page(access, query)
    }

    async fn clear_context(
        &self,
        context_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<(String, TaskState)>, StoreError> {
        let removed = self
            .contexts
            .remove_if(context_id, |_, c| access.permits(c.owner.as_deref()));
        let Some((_, ctx)) = removed else {
            return Err(StoreError::ContextNotFound(context_id.to_string()));
        };
        self.context_order.lock().remove(&ctx.order);
        let mut out = Vec::with_capacity(ctx.tasks.len());
        for id in ctx.tasks.into_values() {
            if let Some(entry) = self.remove_task(&id, |_| true) {
                out.push((id, entry.task.status.state));
            }
        }
        Ok(out)
    }

    async fn set_push_config(
        &self,
        task_id: &str,
        access: Access<'_>,
        config: PushNotificationConfig,
    ) -> Result<PushNotificationConfig, StoreError> {
        let mut e = self.owned_mut(task_id, access)?;
        upsert_push(&mut e.push, config.clone())?;
        Ok(config)
    }

    async fn list_push_configs(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<PushNotificationConfig>, StoreError> {
        Ok(self.owned(task_id, access)?.push.clone())
    }

    async fn delete_push_config(
        &self,
        task_id: &str,
        access: Access<'_>,
        config_id: &str,
    ) -> Result<bool, StoreError> {
        let mut e = self.owned_mut(task_id, access)?;
        let before = e.push.len();
        e.push.retain(|p| p.id.as_deref() != Some(config_id));
        Ok(e.push.len() != before)
    }

    async fn add_feedback(
        &self,
        task_id: &str,
        access: Access<'_>,
        feedback: Feedback,
    ) -> Result<(), StoreError> {
        let mut e = self.owned_mut(task_id, access)?;
        if e.feedback.len() >= 100 {
            return Err(StoreError::Invalid(format!(
                "task {task_id} already has 100 feedback entries"
            )));
        }
        e.feedback.push(feedback);
        Ok(())
    }

    async fn feedback(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<Feedback>, StoreError> {
        Ok(self.owned(task_id, access)?.feedback.clone())
    }

    async fn purge(
        &self,
        older_than: std::time::Duration,
        dry_run: bool,
    ) -> Result<u64, StoreError> {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(std::time::UNIX_EPOCH);
        let doomed: Vec<String> = self
            .tasks
            .iter()
            .filter(|e| e.task.status.state.is_terminal() && e.updated <= cutoff)
            .map(|e| e.key().clone())
            .collect();
        if dry_run {
            return Ok(doomed.len() as u64);
        }
        let mut n = 0;
        for id in doomed {
            if self.remove_task(&id, |_| true).is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn count_by_state(&self) -> Result<Vec<(TaskState, u64)>, StoreError> {
        Ok(TaskState::ALL
            .iter()
            .map(|s| (*s, self.by_state[state_index(*s)].load(Ordering::Relaxed)))
            .collect())
    }
}

fn upsert_push(
    list: &mut Vec<PushNotificationConfig>,
    config: PushNotificationConfig,
) -> Result<(), StoreError> {
    if let Some(existing) = list.iter_mut().find(|p| p.id == config.id) {
        *existing = config;
        return Ok(());
    }
    if list.len() >= MAX_PUSH_CONFIGS_PER_TASK {
        return Err(StoreError::Invalid(format!(
            "a task can hold at most {MAX_PUSH_CONFIGS_PER_TASK} push notification configs"
        )));
    }
    list.push(config);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run_all(|| async { MemoryStore::default() }).await;
    }
}
