//! In-process task store: the embedded default. Sharded maps, no global lock on the hot
//! path. Bounded: once more than `max_tasks` tasks are stored, the oldest terminal tasks are
//! evicted (non-terminal tasks are never evicted).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bindu_schemas::bus::TaskEvent;
use bindu_schemas::{
    ContextSummary, PushNotificationConfig, Task, TaskKind, TaskState, TaskStatus,
};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use parking_lot::Mutex;

use super::*;
use crate::time::now_rfc3339;

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
    task_ids: Vec<String>,
    order: u64,
    created_at: String,
    updated_at: String,
}

pub struct MemoryStore {
    tasks: DashMap<String, TaskEntry>,
    contexts: DashMap<String, ContextEntry>,
    /// Creation order → task id, for newest-first listing and eviction.
    task_order: Mutex<BTreeMap<u64, String>>,
    context_order: Mutex<BTreeMap<u64, String>>,
    next_order: AtomicU64,
    by_state: [AtomicU64; 9],
    max_tasks: usize,
}

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
            task_order: Mutex::new(BTreeMap::new()),
            context_order: Mutex::new(BTreeMap::new()),
            next_order: AtomicU64::new(1),
            by_state: Default::default(),
            max_tasks: max_tasks.max(1),
        }
    }

    fn count(&self, s: TaskState, delta: i64) {
        let c = &self.by_state[state_index(s)];
        if delta >= 0 {
            c.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            c.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    fn remove_task(&self, task_id: &str) -> Option<TaskEntry> {
        let (_, entry) = self.tasks.remove(task_id)?;
        self.count(entry.task.status.state, -1);
        self.task_order.lock().remove(&entry.order);
        Some(entry)
    }

    /// Evicts up to two of the oldest terminal tasks when over the bound.
    fn evict(&self) {
        if self.tasks.len() <= self.max_tasks {
            return;
        }
        let candidates: Vec<String> = self.task_order.lock().values().take(64).cloned().collect();
        let mut evicted = 0;
        for id in candidates {
            if evicted == 2 {
                break;
            }
            let terminal = self
                .tasks
                .get(&id)
                .is_some_and(|e| e.task.status.state.is_terminal());
            if terminal {
                if let Some(entry) = self.remove_task(&id) {
                    if let Some(mut ctx) = self.contexts.get_mut(&entry.task.context_id) {
                        ctx.task_ids.retain(|t| t != &id);
                    }
                    evicted += 1;
                }
            }
        }
    }

    fn touch_context(&self, context_id: &str, task_id: Option<&str>, now: &str) {
        if let Some(mut ctx) = self.contexts.get_mut(context_id) {
            ctx.updated_at = now.to_string();
            if let Some(t) = task_id {
                ctx.task_ids.push(t.to_string());
            }
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
            }
        }
        Ok(Applied {
            state: e.task.status.state,
            version: e.version,
            events: plan.events,
            push_configs: !e.push.is_empty(),
        })
    }

    fn page<T>(
        order: &Mutex<BTreeMap<u64, String>>,
        cursor: Option<&str>,
        limit: u32,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Result<Page<T>, StoreError> {
        let before = match cursor {
            None => u64::MAX,
            Some(c) => c.parse::<u64>().map_err(|_| {
                StoreError::Invalid(format!("`cursor` {c:?} is not a cursor this server issued"))
            })?,
        };
        let ids: Vec<(u64, String)> = {
            let order = order.lock();
            order
                .range(..before)
                .rev()
                .map(|(k, v)| (*k, v.clone()))
                .collect()
        };
        let mut items = Vec::new();
        let mut last = None;
        for (k, id) in ids {
            if let Some(item) = pick(&id) {
                if items.len() == limit as usize {
                    // Another matching item exists: there is a next page.
                    return Ok(Page {
                        items,
                        next_cursor: last.map(|k: u64| k.to_string()),
                    });
                }
                items.push(item);
                last = Some(k);
            }
        }
        Ok(Page {
            items,
            next_cursor: None,
        })
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
                let event = task_status_event(&e.task, e.version, &now);
                let out = Submitted {
                    task: e.task.clone(),
                    version: e.version,
                    event,
                    created: false,
                };
                drop(occ);
                self.touch_context(&out.task.context_id, None, &now);
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
                        ctx.task_ids.push(req.task_id.clone());
                        ctx.updated_at.clone_from(&now);
                    }
                    Entry::Vacant(ctx) => {
                        ctx.insert(ContextEntry {
                            owner: req.owner.clone(),
                            task_ids: vec![req.task_id.clone()],
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
                self.task_order.lock().insert(order, req.task_id);
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

    async fn apply(&self, updates: Vec<TaskUpdate>) -> Vec<Result<Applied, StoreError>> {
        updates.into_iter().map(|u| self.apply_one(u)).collect()
    }

    async fn get(&self, task_id: &str, access: Access<'_>) -> Result<TaskSnapshot, StoreError> {
        match self.tasks.get(task_id) {
            Some(e) if access.permits(e.owner.as_deref()) => Ok(TaskSnapshot {
                task: e.task.clone(),
                version: e.version,
                owner: e.owner.clone(),
            }),
            _ => Err(StoreError::NotFound(task_id.to_string())),
        }
    }

    async fn list_tasks(
        &self,
        access: Access<'_>,
        query: ListQuery,
    ) -> Result<Page<Task>, StoreError> {
        Self::page(
            &self.task_order,
            query.cursor.as_deref(),
            query.limit,
            |id| {
                let e = self.tasks.get(id)?;
                if !access.permits(e.owner.as_deref()) {
                    return None;
                }
                if let Some(c) = &query.context_id {
                    if *c != e.task.context_id {
                        return None;
                    }
                }
                Some(e.task.clone())
            },
        )
    }

    async fn list_contexts(
        &self,
        access: Access<'_>,
        query: ListQuery,
    ) -> Result<Page<ContextSummary>, StoreError> {
        Self::page(
            &self.context_order,
            query.cursor.as_deref(),
            query.limit,
            |id| {
                let c = self.contexts.get(id)?;
                if !access.permits(c.owner.as_deref()) {
                    return None;
                }
                Some(ContextSummary {
                    context_id: id.to_string(),
                    task_count: c.task_ids.len() as u64,
                    task_ids: c.task_ids.clone(),
                    created_at: c.created_at.clone(),
                    updated_at: c.updated_at.clone(),
                })
            },
        )
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
        let mut out = Vec::with_capacity(ctx.task_ids.len());
        for id in ctx.task_ids {
            if let Some(entry) = self.remove_task(&id) {
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
        let mut e = self
            .tasks
            .get_mut(task_id)
            .filter(|e| access.permits(e.owner.as_deref()))
            .ok_or_else(|| StoreError::NotFound(task_id.to_string()))?;
        upsert_push(&mut e.push, config.clone())?;
        Ok(config)
    }

    async fn list_push_configs(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<PushNotificationConfig>, StoreError> {
        self.tasks
            .get(task_id)
            .filter(|e| access.permits(e.owner.as_deref()))
            .map(|e| e.push.clone())
            .ok_or_else(|| StoreError::NotFound(task_id.to_string()))
    }

    async fn delete_push_config(
        &self,
        task_id: &str,
        access: Access<'_>,
        config_id: &str,
    ) -> Result<bool, StoreError> {
        let mut e = self
            .tasks
            .get_mut(task_id)
            .filter(|e| access.permits(e.owner.as_deref()))
            .ok_or_else(|| StoreError::NotFound(task_id.to_string()))?;
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
        let mut e = self
            .tasks
            .get_mut(task_id)
            .filter(|e| access.permits(e.owner.as_deref()))
            .ok_or_else(|| StoreError::NotFound(task_id.to_string()))?;
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
        self.tasks
            .get(task_id)
            .filter(|e| access.permits(e.owner.as_deref()))
            .map(|e| e.feedback.clone())
            .ok_or_else(|| StoreError::NotFound(task_id.to_string()))
    }

    async fn purge(
        &self,
        older_than: std::time::Duration,
        dry_run: bool,
    ) -> Result<u64, StoreError> {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(std::time::UNIX_EPOCH);
        let doomed: Vec<(String, String)> = self
            .tasks
            .iter()
            .filter(|e| e.task.status.state.is_terminal() && e.updated <= cutoff)
            .map(|e| (e.key().clone(), e.task.context_id.clone()))
            .collect();
        if dry_run {
            return Ok(doomed.len() as u64);
        }
        let mut n = 0;
        for (id, context_id) in doomed {
            if self.remove_task(&id).is_some() {
                n += 1;
            }
            let empty = match self.contexts.get_mut(&context_id) {
                Some(mut ctx) => {
                    ctx.task_ids.retain(|t| *t != id);
                    ctx.task_ids.is_empty()
                }
                None => false,
            };
            if empty {
                if let Some((_, ctx)) = self
                    .contexts
                    .remove_if(&context_id, |_, c| c.task_ids.is_empty())
                {
                    self.context_order.lock().remove(&ctx.order);
                }
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

    #[tokio::test]
    async fn evicts_oldest_terminal_tasks_beyond_the_bound() {
        let store = MemoryStore::new(3);
        let mut ids = Vec::new();
        for _ in 0..3 {
            let s = conformance::submit_new(&store, None).await;
            ids.push(s.task.id.clone());
        }
        // Finish the first task only.
        conformance::run_to(&store, &ids[0], TaskState::Completed).await;
        let s = conformance::submit_new(&store, None).await;
        assert!(
            store.get(&ids[0], Access::Internal).await.is_err(),
            "oldest terminal task evicted"
        );
        for id in ids[1..].iter().chain([&s.task.id]) {
            assert!(
                store.get(id, Access::Internal).await.is_ok(),
                "non-terminal tasks are kept"
            );
        }
    }
}
