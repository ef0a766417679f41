//! A write that commits but reports a timeout (the task store answered too late) must not
//! strand its task: the worker's retry finds the task already moved and carries on.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bindu_engine::bus::{Bus, MemoryBus};
use bindu_engine::store::conformance::user_message;
use bindu_engine::store::*;
use bindu_schemas::bus::{CommandOp, TaskCommand};
use bindu_schemas::{ContextSummary, PushNotificationConfig, Task, TaskState};
use bindu_workers::handler::handler_fn;
use bindu_workers::{HandlerError, HandlerInput, HandlerOutput, WorkerOptions, WorkerPool};
use tokio_util::sync::CancellationToken;

/// A memory store whose first `late` writes land but answer "unavailable", like a batch
/// whose COMMIT went through after the caller's deadline.
struct LateStore {
    inner: MemoryStore,
    late: AtomicUsize,
}

#[async_trait]
impl TaskStore for LateStore {
    fn backend(&self) -> &'static str {
        "late"
    }
    async fn ready(&self) -> Result<(), StoreError> {
        self.inner.ready().await
    }
    async fn submit(&self, req: SubmitRequest) -> Result<Submitted, StoreError> {
        self.inner.submit(req).await
    }
    async fn apply(&self, updates: Vec<TaskUpdate>) -> Vec<Result<Applied, StoreError>> {
        let results = self.inner.apply(updates).await;
        if self
            .late
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
        self.inner.get(task_id, access).await
    }
    async fn list_tasks(
        &self,
        access: Access<'_>,
        query: ListQuery,
    ) -> Result<Page<Task>, StoreError> {
        self.inner.list_tasks(access, query).await
    }
    async fn list_contexts(
        &self,
        access: Access<'_>,
        query: ListQuery,
    ) -> Result<Page<ContextSummary>, StoreError> {
        self.inner.list_contexts(access, query).await
    }
    async fn clear_context(
        &self,
        context_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<(String, TaskState)>, StoreError> {
        self.inner.clear_context(context_id, access).await
    }
    async fn set_push_config(
        &self,
        task_id: &str,
        access: Access<'_>,
        config: PushNotificationConfig,
    ) -> Result<PushNotificationConfig, StoreError> {
        self.inner.set_push_config(task_id, access, config).await
    }
    async fn list_push_configs(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<PushNotificationConfig>, StoreError> {
        self.inner.list_push_configs(task_id, access).await
    }
    async fn delete_push_config(
        &self,
        task_id: &str,
        access: Access<'_>,
        config_id: &str,
    ) -> Result<bool, StoreError> {
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
        self.inner.add_feedback(task_id, access, feedback).await
    }
    async fn feedback(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<Feedback>, StoreError> {
        self.inner.feedback(task_id, access).await
    }
    async fn count_by_state(&self) -> Result<Vec<(TaskState, u64)>, StoreError> {
        self.inner.count_by_state().await
    }
    async fn purge(&self, older_than: Duration, dry_run: bool) -> Result<u64, StoreError> {
        self.inner.purge(older_than, dry_run).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_committed_late_still_runs_the_task() {
    // The first write is the worker's `submitted → working`.
    let store = Arc::new(LateStore {
        inner: MemoryStore::default(),
        late: AtomicUsize::new(1),
    });
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new(16));
    let handler = handler_fn(|_input: HandlerInput| async move {
        Ok::<_, HandlerError>(HandlerOutput::Text("done".into()))
    });
    let stop = CancellationToken::new();
    let pool = WorkerPool::new(
        store.clone(),
        bus.clone(),
        Arc::new(handler),
        WorkerOptions {
            concurrency: 2,
            drain_timeout: Duration::from_secs(5),
            ..WorkerOptions::default()
        },
    );
    let running = tokio::spawn(pool.run(stop.clone()));
    let submitted = store
        .submit(SubmitRequest {
            owner: None,
            task_id: "late-start".into(),
            context_id: None,
            message: user_message("hello"),
            push_config: None,
        })
        .await
        .unwrap();
    bus.publish_commands(vec![TaskCommand {
        op: CommandOp::Run,
        task_id: "late-start".into(),
        context_id: submitted.task.context_id.clone(),
        message_id: "m".into(),
        caller: None,
        issued_at: bindu_engine::time::now_rfc3339(),
    }])
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let state = loop {
        let t = store
            .get("late-start", Access::Internal)
            .await
            .unwrap()
            .task;
        if t.status.state.is_terminal() || tokio::time::Instant::now() > deadline {
            break t.status.state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    let _ = running.await;
    assert_eq!(state, TaskState::Completed, "the task was left behind");
}
