//! Eviction: which stored tasks make room when the store is over its bound, and the
//! removal of a task (and of its context with its last task) from every map and index.

use std::collections::BTreeMap;

use bindu_schemas::TaskState;

use super::{MemoryStore, TaskEntry};

/// Where a task stands for eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    /// Queued or running: never evicted.
    Active,
    /// Waiting for the caller (`input-required`, `auth-required`): evicted after terminal ones.
    Paused,
    /// Evicted first.
    Terminal,
}

pub(super) fn standing(s: TaskState) -> Standing {
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
pub(super) struct TaskIndex {
    pub(super) all: BTreeMap<u64, String>,
    pub(super) terminal: BTreeMap<u64, String>,
    pub(super) paused: BTreeMap<u64, String>,
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

impl MemoryStore {
    /// Moves task `id` (creation order `order`) between the eviction indexes when its state
    /// changes from `from` to `to`.
    pub(super) fn reindex(&self, order: u64, id: &str, from: TaskState, to: TaskState) {
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

    /// Removes a task (when `remove_if` holds for it) from every map and index, and its
    /// context when it was the context's last task.
    pub(super) fn remove_task(
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
    pub(super) fn evict(&self) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{conformance, Access, ListQuery, SubmitRequest, Submitted, TaskStore};

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
            .list_contexts(Access::Owner(None), ListQuery::first(100))
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
            .submit(
                SubmitRequest::new("second", conformance::user_message("again"))
                    .in_context(first.task.context_id.clone()),
            )
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
            .submit(SubmitRequest::new(
                resumed.clone(),
                conformance::user_message("here you go"),
            ))
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
