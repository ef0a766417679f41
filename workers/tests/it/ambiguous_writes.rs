//! A write that commits but reports a timeout (the task store answered too late) must not
//! strand its task or its waiters: the worker's retry finds the outcome already recorded,
//! announces it, and acks.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bindu_engine::bus::Bus;
use bindu_engine::store::*;
use bindu_schemas::TaskState;

use crate::support::{submit_task, FlakyPool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_that_committed_late_is_recognised_and_announced() {
    // The first write is the worker's outcome (`working` is only announced).
    let run = FlakyPool::start(2);
    let store = run.store.clone();
    store.late_applies.store(1, Ordering::SeqCst);
    let submitted = submit_task(store.as_ref(), "late-start", "hello").await;
    let mut events = run.bus.subscribe_task("late-start").await.unwrap();
    run.queue(&submitted).await;
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
    run.stop().await;
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
