//! A test double around the real memory store: outages, slow submits and writes that land
//! but report a timeout, on demand (test support, feature `testing`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use async_trait::async_trait;
use bindu_schemas::{ContextSummary, PushNotificationConfig, Task, TaskState};

/// The memory store, except that every call fails with `Unavailable` while `down` is set.
pub struct Flaky {
    pub inner: MemoryStore,
    pub down: AtomicBool,
    /// Milliseconds every submit waits before it is recorded.
    pub submit_delay_ms: AtomicU64,
    /// The next this-many `apply` calls are recorded but answer `Unavailable`, like a batch
    /// whose COMMIT went through after the caller's deadline.
    pub late_applies: AtomicUsize,
    /// The next this-many `apply` calls change nothing and answer a non-transient error,
    /// like a batch the database refused (a value it cannot hold).
    pub refuse_applies: AtomicUsize,
    /// `apply` calls made so far (attempts, whatever they answered).
    pub applies: AtomicUsize,
    /// `get` calls made so far.
    pub gets: AtomicUsize,
    /// `list_push_configs` calls made so far.
    pub push_config_reads: AtomicUsize,
}

impl Default for Flaky {
    fn default() -> Self {
        Flaky::new()
    }
}

impl Flaky {
    pub fn new() -> Flaky {
        Flaky {
            inner: MemoryStore::default(),
            down: AtomicBool::new(false),
            submit_delay_ms: AtomicU64::new(0),
            late_applies: AtomicUsize::new(0),
            refuse_applies: AtomicUsize::new(0),
            applies: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
            push_config_reads: AtomicUsize::new(0),
        }
    }
}

impl Flaky {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl TaskStore for Flaky {
    fn backend(&self) -> &'static str {
        "flaky"
    }
    async fn ready(&self) -> Result<(), StoreError> {
        self.check()
    }
    async fn submit(&self, req: SubmitRequest) -> Result<Submitted, StoreError> {
        self.check()?;
        let delay = self.submit_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.inner.submit(req).await
    }
    async fn release_claim(&self, key: [u8; 32], task_id: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.release_claim(key, task_id).await
    }
    async fn apply(&self, updates: Vec<TaskUpdate>) -> Vec<Result<Applied, StoreError>> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        if self
            .refuse_applies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return updates
                .iter()
                .map(|_| {
                    Err(StoreError::Invalid(
                        "the task store cannot hold this: unsupported Unicode escape sequence"
                            .into(),
                    ))
                })
                .collect();
        }
        if self.check().is_err() {
            return updates
                .iter()
                .map(|_| Err(StoreError::Unavailable("down".into())))
                .collect();
        }
        let results = self.inner.apply(updates).await;
        if self
            .late_applies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return results
                .into_iter()
                .map(|_| {
                    Err(StoreError::Unavailable(
                        "commit not confirmed in time".into(),
                    ))
                })
                .collect();
        }
        results
    }
    async fn get(&self, task_id: &str, access: Access<'_>) -> Result<TaskSnapshot, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.get(task_id, access).await
    }
    async fn list_tasks(
        &self,
        access: Access<'_>,
        listing: TaskListing,
    ) -> Result<Page<Task>, StoreError> {
        self.check()?;
        self.inner.list_tasks(access, listing).await
    }
    async fn count_tasks(
        &self,
        access: Access<'_>,
        listing: &TaskListing,
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.count_tasks(access, listing).await
    }
    async fn list_contexts(
        &self,
        access: Access<'_>,
        query: ListQuery,
    ) -> Result<Page<ContextSummary>, StoreError> {
        self.check()?;
        self.inner.list_contexts(access, query).await
    }
    async fn clear_context(
        &self,
        context_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<(String, TaskState)>, StoreError> {
        self.check()?;
        self.inner.clear_context(context_id, access).await
    }
    async fn set_push_config(
        &self,
        task_id: &str,
        access: Access<'_>,
        config: PushNotificationConfig,
    ) -> Result<PushNotificationConfig, StoreError> {
        self.check()?;
        self.inner.set_push_config(task_id, access, config).await
    }
    async fn list_push_configs(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<PushNotificationConfig>, StoreError> {
        self.push_config_reads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.list_push_configs(task_id, access).await
    }
    async fn delete_push_config(
        &self,
        task_id: &str,
        access: Access<'_>,
        config_id: &str,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner
            .delete_push_config(task_id, access, config_id)
            .await
    }
    async fn add_feedback(
        &self,
        task_id: &str,
        access: Access<'_>,
        feedback: Feedback,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.add_feedback(task_id, access, feedback).await
    }
    async fn feedback(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<Feedback>, StoreError> {
        self.check()?;
        self.inner.feedback(task_id, access).await
    }
    async fn purge(
        &self,
        older_than: std::time::Duration,
        dry_run: bool,
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.purge(older_than, dry_run).await
    }
    async fn count_by_state(&self) -> Result<Vec<(TaskState, u64)>, StoreError> {
        self.check()?;
        self.inner.count_by_state().await
    }
}
