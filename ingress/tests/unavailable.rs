//! A task store that goes down: `/health` turns 503 and requests get a clear -32603 (HTTP
//! 200), never a hang or an HTTP 500.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bindu_engine::bus::MemoryBus;
use bindu_engine::store::*;
use bindu_engine::Config;
use bindu_ingress::card::{build_card, CardCapabilities};
use bindu_ingress::{Ingress, IngressOptions};
use bindu_schemas::{ContextSummary, PushNotificationConfig, Task, TaskState};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The memory store, except that every call fails with `Unavailable` while `down` is set.
struct Flaky {
    inner: MemoryStore,
    down: AtomicBool,
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
        self.inner.submit(req).await
    }
    async fn apply(&self, updates: Vec<TaskUpdate>) -> Vec<Result<Applied, StoreError>> {
        if self.check().is_err() {
            return updates
                .iter()
                .map(|_| Err(StoreError::Unavailable("down".into())))
                .collect();
        }
        self.inner.apply(updates).await
    }
    async fn get(&self, task_id: &str, access: Access<'_>) -> Result<TaskSnapshot, StoreError> {
        self.check()?;
        self.inner.get(task_id, access).await
    }
    async fn list_tasks(
        &self,
        access: Access<'_>,
        query: ListQuery,
    ) -> Result<Page<Task>, StoreError> {
        self.check()?;
        self.inner.list_tasks(access, query).await
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

#[tokio::test]
async fn a_store_outage_is_reported_not_hung() {
    let store = Arc::new(Flaky {
        inner: MemoryStore::default(),
        down: AtomicBool::new(false),
    });
    let bus = Arc::new(MemoryBus::default());
    let shutdown = CancellationToken::new();
    let config = Config::defaults();
    let card = build_card(
        &config.agent,
        "http://127.0.0.1:1",
        CardCapabilities::default(),
    );
    let ingress = Ingress::new(
        store.clone(),
        bus,
        card,
        None,
        IngressOptions::default(),
        shutdown.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(bindu_ingress::serve(
        listener,
        ingress.router(),
        shutdown.clone(),
    ));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let health = |c: reqwest::Client| async move {
        let r = c.get(format!("http://{addr}/health")).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };

    let (status, body) = health(client.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);

    store.down.store(true, Ordering::SeqCst);
    let (status, body) = health(client.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["runtime"]["storage_ready"], false);
    assert_eq!(body["runtime"]["bus_ready"], true);

    for (method, params) in [
        (
            "message/send",
            json!({"message": {"role": "user", "messageId": "m", "parts": [{"kind": "text", "text": "x"}]}}),
        ),
        ("tasks/get", json!({"id": "t"})),
        ("tasks/list", json!({})),
    ] {
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client
                .post(format!("http://{addr}/"))
                .json(&json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": params}))
                .send(),
        )
        .await
        .expect("an answer, not a hang")
        .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], -32603, "{method}: {v}");
        assert_eq!(v["id"], 9);
    }

    store.down.store(false, Ordering::SeqCst);
    assert_eq!(health(client).await.0, 200);
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
