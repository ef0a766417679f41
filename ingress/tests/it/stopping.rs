//! An ingress that starts stopping while a `message/stream` request is being accepted still
//! sends the stream's first event (the task, with its id) before it closes the stream: with
//! that id the client resubscribes on another replica. Without it the client cannot know the
//! task its message created (the restart drill, `scripts/drill`, saw such a stream).

use crate::support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::MemoryBus;
use serde_json::json;
use support::Flaky;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_accepted_during_shutdown_still_names_its_task() {
    let store = Arc::new(Flaky::new());
    store.submit_delay_ms.store(400, Ordering::SeqCst);
    let bus = Arc::new(MemoryBus::default());
    let shutdown = CancellationToken::new();
    let (addr, server) = support::serve(store.clone(), bus.clone(), &shutdown).await;

    let client = support::client_within(Duration::from_secs(20));
    let request = client
        .post(format!("http://{addr}/"))
        .header("accept", "text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "message/stream", "params": {
            "message": {"role": "user", "messageId": "m-stopping", "taskId": "accepted-while-stopping",
                        "parts": [{"kind": "text", "text": "x"}]}}}))
        .send();
    let stopper = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // While the store is still recording the message.
            tokio::time::sleep(Duration::from_millis(150)).await;
            shutdown.cancel();
        })
    };
    let body = request
        .await
        .expect("the request in flight is answered")
        .text()
        .await
        .expect("the stream ends");
    stopper.await.unwrap();
    let first = body
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or_else(|| panic!("the stream sent no event: {body:?}"));
    let event: serde_json::Value = serde_json::from_str(first.trim()).unwrap();
    assert_eq!(event["id"], 7, "{event}");
    assert_eq!(event["result"]["id"], "accepted-while-stopping", "{event}");
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}
