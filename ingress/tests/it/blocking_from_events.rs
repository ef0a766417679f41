//! A blocking `message/send` is answered from the task's events (the final one carries the
//! reply), without reading the task back from the store; an event the bus had to truncate
//! makes the ingress read the store instead, and the answer is the same.

use crate::support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bindu_engine::bus::{Bus, MemoryBus};
use bindu_engine::store::conformance::chunk;
use bindu_engine::store::{Expect, TaskStore, TaskUpdate};
use bindu_schemas::{Message, Part, TaskState};
use futures::StreamExt;
use serde_json::{json, Value};
use support::Flaky;
use tokio_util::sync::CancellationToken;

/// Stands in for a worker: takes one command, records the run's outcome and publishes its
/// events (the final one truncated when `truncate`).
async fn run_one(store: Arc<Flaky>, bus: Arc<MemoryBus>, truncate: bool) {
    let mut commands = bus.consume_commands().await.unwrap();
    let d = commands.next().await.unwrap().unwrap();
    let reply = Message::agent("reply".into(), vec![Part::text("the answer")]);
    let update = TaskUpdate::new(&d.command.task_id, Expect::Active)
        .artifact(chunk("a", "the answer", false, true))
        .history(reply)
        .status(TaskState::Completed, None)
        .after_run(1, Vec::new());
    let mut events = store.apply(vec![update]).await.remove(0).unwrap().events;
    if truncate {
        let last = events.pop().unwrap();
        events.push(last.truncate());
    }
    bus.publish_events(events).await.unwrap();
    d.acker.ack().await.unwrap();
}

async fn send(truncate: bool) -> (Value, usize) {
    let store = Arc::new(Flaky::new());
    let bus = Arc::new(MemoryBus::default());
    let shutdown = CancellationToken::new();
    let (addr, _server) = support::serve(store.clone(), bus.clone(), &shutdown).await;
    let worker = tokio::spawn(run_one(store.clone(), bus, truncate));
    let client = support::client_within(std::time::Duration::from_secs(10));
    let answer: Value = client
        .post(format!("http://{addr}/"))
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {
            "message": {"role": "user", "kind": "message", "messageId": "m-1",
                        "parts": [{"kind": "text", "text": "question"}]}}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    worker.await.unwrap();
    shutdown.cancel();
    (answer, store.gets.load(Ordering::SeqCst))
}

fn assert_whole(answer: &Value) {
    let task = &answer["result"];
    assert_eq!(task["status"]["state"], "completed", "{answer}");
    assert_eq!(
        task["artifacts"][0]["parts"][0]["text"], "the answer",
        "{answer}"
    );
    let history = task["history"].as_array().expect("history");
    assert_eq!(history.len(), 2, "{answer}");
    assert_eq!(history[1]["parts"][0]["text"], "the answer", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_answer_is_built_from_the_events() {
    let (answer, reads) = send(false).await;
    assert_whole(&answer);
    assert_eq!(reads, 0, "the task was not read back from the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_event_makes_the_ingress_read_the_store() {
    let (answer, reads) = send(true).await;
    assert_whole(&answer);
    assert!(reads >= 1, "the store was read for the truncated event");
}
