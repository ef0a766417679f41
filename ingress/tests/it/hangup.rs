//! A client that hangs up while its message is being recorded does not leave a task that
//! no worker will run: the command is still queued.

use crate::support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::MemoryBus;
use bindu_engine::store::Access;
use bindu_engine::{Bus, TaskStore};
use futures::StreamExt;
use serde_json::json;
use support::Flaky;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_up_during_submit_still_queues_the_task() {
    let store = Arc::new(Flaky::new());
    store.submit_delay_ms.store(300, Ordering::SeqCst);
    let bus = Arc::new(MemoryBus::default());
    let mut commands = bus.consume_commands().await.unwrap();
    let shutdown = CancellationToken::new();
    let (addr, server) = support::serve(store.clone(), bus.clone(), &shutdown).await;

    // The client gives up long before the store has recorded the message.
    let client = support::client_within(Duration::from_millis(50));
    let sent = client
        .post(format!("http://{addr}/"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {
            "message": {"role": "user", "messageId": "m", "taskId": "hung-up", "parts": [{"kind": "text", "text": "x"}]},
            "configuration": {"blocking": false}}}))
        .send()
        .await;
    assert!(sent.is_err(), "the client timed out");

    let delivery = tokio::time::timeout(Duration::from_secs(10), commands.next())
        .await
        .expect("the command is queued although the client left")
        .expect("stream open")
        .expect("delivery");
    assert_eq!(delivery.command.task_id, "hung-up");
    assert!(store.get("hung-up", Access::Internal).await.is_ok());
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
