//! A write that commits but reports a timeout (the task store answered too late) must not
//! strand its task or its waiters: the worker's retry finds the outcome already recorded,
//! announces it, and acks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::{Bus, MemoryBus};
use bindu_engine::store::flaky::Flaky;
use bindu_engine::store::*;
use bindu_schemas::TaskState;
use tokio_util::sync::CancellationToken;

use crate::support::{done_handler, pool_options, spawn_pool, submit_task};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_that_committed_late_is_recognised_and_announced() {
    // The first write is the worker's outcome (`working` is only announced).
    let store = Arc::new(Flaky::new());
    store.late_applies.store(1, Ordering::SeqCst);
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new(16));
    let stop = CancellationToken::new();
    let running = spawn_pool(
        store.clone(),
        bus.clone(),
        done_handler(),
        pool_options(2),
        &stop,
    );
    let submitted = submit_task(store.as_ref(), "late-start", "hello").await;
    let mut events = bus.subscribe_task("late-start").await.unwrap();
    bus.publish_commands(vec![bindu_engine::bus::conformance::command_for(
        &submitted,
    )])
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
    // The final event comes from the late-commit path: the retry found the outcome stored
    // and announced it as stored (truncated: read the task from the store).
    let last = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            use futures::StreamExt;
            let e = events.next().await.unwrap().unwrap();
            if e.is_final() {
                break e;
            }
        }
    })
    .await
    .expect("a final event");
    stop.cancel();
    let _ = running.await;
    assert_eq!(state, TaskState::Completed, "the task was left behind");
    assert_eq!(
        store.late_applies.load(Ordering::SeqCst),
        0,
        "the late commit happened"
    );
    // The ambiguous path ran: the outcome's write (recorded, answered as a timeout), then
    // the retry that found it already recorded, and nothing else.
    assert_eq!(
        store.applies.load(Ordering::SeqCst),
        2,
        "one late-committed write and one retry"
    );
    // Recorded once: one artifact and one agent reply, not two.
    let task = store
        .get("late-start", Access::Internal)
        .await
        .unwrap()
        .task;
    assert_eq!(task.artifacts.as_ref().map(Vec::len), Some(1), "{task:?}");
    assert_eq!(task.history.as_ref().map(Vec::len), Some(2), "{task:?}");
    assert!(
        last.truncated,
        "the final event came from the late-commit path"
    );
    assert_eq!(last.state(), Some(TaskState::Completed));
}
