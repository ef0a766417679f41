//! In-process task store: the embedded default. Sharded maps, no global lock on the hot
//! path. Bounded: once more than `max_tasks` tasks are stored, the oldest terminal tasks are
//! evicted, then (when no terminal task is left) the oldest paused ones (`input-required`,
//! `auth-required`); a context goes with its last task. Queued and running tasks are never
//! evicted: the bus's queue capacity and the workers' concurrency bound them.
//!
//! Listing walks an ordered index a chunk at a time (the lock is held only to copy one
//! chunk of ids, never all of them) and examines at most [`MAX_SCAN`] ids per call; a page
//! that reaches that bound ends early with a cursor to the rest.

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

/// Most ids one `tasks/list` or `contexts/list` call examines in the memory store; a page
/// that reaches it (a caller whose tasks are sparse among many others') ends early, with a
/// cursor to the rest.
pub const MAX_SCAN: usize = 10_000;

/// Ids copied out of an index per lock hold while listing.
const SCAN_CHUNK: usize = 128;

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

/// Where a task stands for eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Queued or running: never evicted.
    Active,
    /// Waiting for the caller (`input-required`, `auth-required`): evicted after terminal ones.
    Paused,
    /// Evicted first.
    Terminal,
}

fn standing(s: TaskState) -> Standing {
    if s.is_terminal() {
        Standing::Terminal
    } else if s.is_interrupted() {
        Standing::Paused
    } else {
        Standing::Active
    }
}

/// The tasks in creation order: all of them (listing) and the evictable ones.
#[derive(Default)]
struct TaskIndex {
    all: BTreeMap<u64, String>,
    terminal: BTreeMap<u64, String>,
    paused: BTreeMap<u64, String>,
}

impl TaskIndex {
    fn evictable(&mut self, s: Standing) -> Option<&mut BTreeMap<u64, String>> {
        match s {
            Standing::Active => None,
            Standing::Paused => Some(&mut self.paused),
            Standing::Terminal => Some(&mut self.terminal),
        }
    }
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
}

fn state_index(s: TaskState) -> usize {
    TaskState::ALL.iter().position(|x| *x == s).unwrap_or(8)
}

fn task_status_event(task: &Task, seq: u64, timestamp: &str) -> TaskEvent {
    status_event(&task.id, &task.context_id, &task.status, seq, timestamp)
}

fn parse_cursor(cursor: Option<&str>) -> Result<u64, StoreError> {
    match cursor {
        None => Ok(u64::MAX),
        Some(c) => c.parse::<u64>().map_err(|_| {
            StoreError::Invalid(format!("`cursor` {c:?} is not a cursor this server issued"))
        }),
    }
}

/// Up to `n` entries of `order` below `before`, newest first.
fn chunk_below(order: &BTreeMap<u64, String>, before: u64, n: usize) -> Vec<(u64, String)> {
    order
        .range(..before)
        .rev()
        .take(n)
        .map(|(k, v)| (*k, v.clone()))
        .collect()
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
        }
    }

    /// Ids the listings of this store have examined so far.
    pub fn ids_examined(&self) -> u64 {
        self.scanned.load(Ordering::Relaxed)
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

    /// Moves task `id` (creation order `order`) between the eviction indexes when its state
    /// changes from `from` to `to`.
    fn reindex(&self, order: u64, id: &str, from: TaskState, to: TaskState) {
        let (from, to) = (standing(from), standing(to));
        if from == to {
            return;
        }
        let mut index = self.task_index.lock();
        if let Some(old) = index.evictable(from) {
            old.remove(&order);
        }
        if let Some(new) = index.evictable(to) {
            new.insert(order, id.to_string());
        }
    }

    /// Removes a task (when `keep_if` holds for it) from every map and index, and its
    /// context when it was the context's last task.
    fn remove_task(
        &self,
        task_id: &str,
        remove_if: impl Fn(&TaskEntry) -> bool,
    ) -> Option<TaskEntry> {
        let (_, entry) = self.tasks.remove_if(task_id, |_, e| remove_if(e))?;
        self.count(entry.task.status.state, -1);
        {
            let mut index = self.task_index.lock();
            index.all.remove(&entry.order);
            index.terminal.remove(&entry.order);
            index.paused.remove(&entry.order);
        }
        let context_id = &entry.task.context_id;
        let empty = match self.contexts.get_mut(context_id) {
            Some(mut ctx) => {
                ctx.tasks.remove(&entry.order);
                ctx.tasks.is_empty()
            }
            None => false,
        };
        if empty {
            // Checked again under the entry's lock: a submit may have added a task since.
            if let Some((_, ctx)) = self
                .contexts
                .remove_if(context_id, |_, c| c.tasks.is_empty())
            {
                self.context_order.lock().remove(&ctx.order);
            }
        }
        Some(entry)
    }

    /// Evicts up to two tasks while over the bound: the oldest terminal ones, then the oldest
    /// paused ones. Each is found in O(log n), however many tasks it passes over.
    fn evict(&self) {
        let mut evicted = 0;
        // A victim popped from the paused index may have been resumed since: a few tries.
        for _ in 0..4 {
            if evicted == 2 || self.tasks.len() <= self.max_tasks {
                return;
            }
            let victim = {
                let mut index = self.task_index.lock();
                index
                    .terminal
                    .pop_first()
                    .or_else(|| index.paused.pop_first())
            };
            let Some((_, id)) = victim else {
                // Only queued and running tasks left.
                return;
            };
            if self
                .remove_task(&id, |e| standing(e.task.status.state) != Standing::Active)
                .is_some()
            {
                evicted += 1;
            }
        }
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

    /// One page, newest first: walks `chunk(before, n)` (up to `n` entries below `before`,
    /// newest first) and keeps what `pick` returns (an item and its size) while the page has
    /// room; examines at most [`MAX_SCAN`] entries.
    fn page<T>(
        &self,
        mut chunk: impl FnMut(u64, usize) -> Vec<(u64, String)>,
        cursor: Option<&str>,
        limit: u32,
        shape: &ListShape,
        mut pick: impl FnMut(&str) -> Option<(T, usize)>,
    ) -> Result<Page<T>, StoreError> {
        let mut before = parse_cursor(cursor)?;
        let limit = limit.max(1) as usize;
        let mut items = Vec::new();
        let mut total = 0usize;
        let mut last = None;
        let mut examined = 0;
        while examined < MAX_SCAN {
            let ids = chunk(before, SCAN_CHUNK.min(MAX_SCAN - examined));
            if ids.is_empty() {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            examined += ids.len();
            self.scanned.fetch_add(ids.len() as u64, Ordering::Relaxed);
            for (k, id) in ids {
                let Some((item, size)) = pick(&id) else {
                    before = k;
                    continue;
                };
                if !page_has_room(items.len(), total, size, limit, shape) {
                    // Another matching item exists: there is a next page.
                    return Ok(Page {
                        items,
                        next_cursor: last.map(|k: u64| k.to_string()),
                    });
                }
                items.push(item);
                total = total.saturating_add(size);
                last = Some(k);
                before = k;
            }
        }
        // Scan budget spent: the rest is behind the last id examined.
        Ok(Page {
            items,
            next_cursor: Some(before.to_string()),
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

    async fn list_tasks_shaped(
        &self,
        access: Access<'_>,
        query: ListQuery,
        shape: ListShape,
    ) -> Result<Page<Task>, StoreError> {
        let context = query.context_id.as_deref();
        // A context's own index when filtering on one: its tasks only are examined.
        let chunk = |before: u64, n: usize| match context {
            Some(c) => self
                .contexts
                .get(c)
                .map(|ctx| chunk_below(&ctx.tasks, before, n))
                .unwrap_or_default(),
            None => chunk_below(&self.task_index.lock().all, before, n),
        };
        self.page(chunk, query.cursor.as_deref(), query.limit, &shape, |id| {
            let e = self.tasks.get(id)?;
            if !access.permits(e.owner.as_deref()) {
                return None;
            }
            if context.is_some_and(|c| c != e.task.context_id) {
                return None;
            }
            let task = shape.apply(&e.task);
            drop(e);
            let size = if shape.max_bytes.is_some() {
                json_size(&task)
            } else {
                0
            };
            Some((task, size))
        })
    }

    async fn list_contexts(
        &self,
        access: Access<'_>,
        query: ListQuery,
    ) -> Result<Page<ContextSummary>, StoreError> {
        self.page(
            |before, n| chunk_below(&self.context_order.lock(), before, n),
            query.cursor.as_deref(),
            query.limit,
            &ListShape::FULL,
            |id| {
                let c = self.contexts.get(id)?;
                if !access.permits(c.owner.as_deref()) {
                    return None;
                }
                let summary = ContextSummary {
                    context_id: id.to_string(),
                    task_count: c.tasks.len() as u64,
                    task_ids: c.tasks.values().cloned().collect(),
                    created_at: c.created_at.clone(),
                    updated_at: c.updated_at.clone(),
                };
                Some((summary, 0))
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

    async fn pause(store: &MemoryStore) -> String {
        let s = conformance::submit_new(store, None).await;
        conformance::run_to(store, &s.task.id, TaskState::InputRequired).await;
        s.task.id
    }

    async fn finish(store: &MemoryStore, owner: Option<&str>) -> Submitted {
        let s = conformance::submit_new(store, owner).await;
        conformance::run_to(store, &s.task.id, TaskState::Completed).await;
        s
    }

    async fn stored(store: &MemoryStore) -> u64 {
        store
            .count_by_state()
            .await
            .expect("counts")
            .iter()
            .map(|(_, n)| n)
            .sum()
    }

    #[tokio::test]
    async fn a_context_goes_with_its_last_evicted_task() {
        let store = MemoryStore::new(2);
        let first = finish(&store, None).await;
        for _ in 0..20 {
            finish(&store, None).await;
        }
        assert!(store.get(&first.task.id, Access::Internal).await.is_err());
        assert_eq!(store.tasks.len(), 2);
        assert_eq!(
            store.context_count(),
            2,
            "one context per stored task, no more"
        );
        let listed = store
            .list_contexts(
                Access::Owner(None),
                ListQuery {
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .expect("contexts");
        assert_eq!(listed.items.len(), 2);
        assert!(listed
            .items
            .iter()
            .all(|c| c.context_id != first.task.context_id));
        assert_eq!(store.context_order.lock().len(), 2);
    }

    #[tokio::test]
    async fn a_context_keeps_living_while_it_has_tasks() {
        let store = MemoryStore::new(1);
        let first = finish(&store, None).await;
        // A second task in the same context evicts the first; the context stays.
        let second = store
            .submit(SubmitRequest {
                owner: None,
                task_id: "second".into(),
                context_id: Some(first.task.context_id.clone()),
                message: conformance::user_message("again"),
                push_config: None,
            })
            .await
            .expect("submit");
        assert!(store.get(&first.task.id, Access::Internal).await.is_err());
        assert_eq!(store.context_count(), 1);
        let ctx = store
            .contexts
            .get(&second.task.context_id)
            .expect("context");
        assert_eq!(ctx.tasks.values().collect::<Vec<_>>(), ["second"]);
    }

    #[tokio::test]
    async fn eviction_passes_over_paused_tasks_to_terminal_ones() {
        let store = MemoryStore::new(100);
        // More paused tasks at the head of the order than eviction used to look at.
        let mut paused = Vec::new();
        for _ in 0..80 {
            paused.push(pause(&store).await);
        }
        for _ in 0..300 {
            finish(&store, None).await;
        }
        assert!(stored(&store).await <= 101, "{}", stored(&store).await);
        for id in &paused {
            assert!(
                store.get(id, Access::Internal).await.is_ok(),
                "terminal tasks go before paused ones"
            );
        }
    }

    #[tokio::test]
    async fn paused_tasks_count_against_the_bound() {
        let store = MemoryStore::new(10);
        let mut ids = Vec::new();
        for _ in 0..40 {
            ids.push(pause(&store).await);
        }
        assert!(stored(&store).await <= 11, "{}", stored(&store).await);
        assert!(
            store.get(&ids[0], Access::Internal).await.is_err(),
            "oldest paused task evicted"
        );
        assert!(store.get(&ids[39], Access::Internal).await.is_ok());
        assert_eq!(store.context_count(), store.tasks.len());
        // Running tasks are never evicted: the store may pass its bound with them.
        let running: Vec<_> = {
            let mut v = Vec::new();
            for _ in 0..20 {
                let s = conformance::submit_new(&store, None).await;
                conformance::run_to(&store, &s.task.id, TaskState::Working).await;
                v.push(s.task.id);
            }
            v
        };
        for id in &running {
            assert!(store.get(id, Access::Internal).await.is_ok());
        }
        assert_eq!(
            store.task_index.lock().paused.len(),
            0,
            "every paused task made room"
        );
    }

    #[tokio::test]
    async fn a_resumed_task_is_no_longer_evictable_as_paused() {
        let store = MemoryStore::new(2);
        let resumed = pause(&store).await;
        store
            .submit(SubmitRequest {
                owner: None,
                task_id: resumed.clone(),
                context_id: None,
                message: conformance::user_message("here you go"),
                push_config: None,
            })
            .await
            .expect("resume");
        for _ in 0..5 {
            pause(&store).await;
        }
        assert!(
            store.get(&resumed, Access::Internal).await.is_ok(),
            "a queued task is never evicted"
        );
    }

    #[tokio::test]
    async fn listing_examines_a_page_not_the_store() {
        let store = MemoryStore::default();
        for _ in 0..5000 {
            conformance::submit_new(&store, None).await;
        }
        let before = store.ids_examined();
        let page = store
            .list_tasks(
                Access::Owner(None),
                ListQuery {
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(page.items.len(), 10);
        let examined = store.ids_examined() - before;
        assert!(examined <= SCAN_CHUNK as u64, "examined {examined} ids");

        // Filtered on a context: only that context's tasks are examined.
        let s = conformance::submit_new(&store, None).await;
        let before = store.ids_examined();
        let page = store
            .list_tasks(
                Access::Owner(None),
                ListQuery {
                    limit: 10,
                    context_id: Some(s.task.context_id.clone()),
                    cursor: None,
                },
            )
            .await
            .expect("list");
        assert_eq!(page.items.len(), 1);
        assert_eq!(store.ids_examined() - before, 1);
    }

    #[tokio::test]
    async fn a_sparse_listing_ends_early_with_a_cursor() {
        let store = MemoryStore::default();
        let mine = conformance::submit_new(&store, Some("me")).await;
        for _ in 0..(MAX_SCAN + 500) {
            conformance::submit_new(&store, Some("someone else")).await;
        }
        let query = |cursor| ListQuery {
            limit: 10,
            cursor,
            context_id: None,
        };
        let first = store
            .list_tasks(Access::Owner(Some("me")), query(None))
            .await
            .expect("list");
        assert!(first.items.is_empty(), "my task is beyond the scan bound");
        let examined = store.ids_examined();
        assert_eq!(examined, MAX_SCAN as u64);
        let second = store
            .list_tasks(Access::Owner(Some("me")), query(first.next_cursor))
            .await
            .expect("list");
        assert_eq!(second.items.len(), 1);
        assert_eq!(second.items[0].id, mine.task.id);
        assert!(second.next_cursor.is_none());
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
