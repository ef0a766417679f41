//! Every accepted task ends (terminal or paused) or is handed back to the bus: a store that
//! refuses a write, refuses every write for a while, or is down never strands a task in
//! `submitted` or `working`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bindu_schemas::{Part, TaskState};

use crate::support::{self, submit_task, FlakyPool};

type Run = FlakyPool;

fn start() -> Run {
    FlakyPool::start(4)
}

/// Records a task the way ingress does and queues its command (`down` first, if asked).
async fn accept_then(run: &Run, task_id: &str, down: bool) {
    let submitted = submit_task(run.store.as_ref(), task_id, "hello").await;
    run.store.down.store(down, Ordering::SeqCst);
    run.queue(&submitted).await;
}

async fn accept(run: &Run, task_id: &str) {
    accept_then(run, task_id, false).await;
}

/// Polls (bounded) until the task is terminal or paused; returns the task.
async fn settled(run: &Run, task_id: &str) -> bindu_schemas::Task {
    support::settled(run.store.as_ref(), task_id, Duration::from_secs(20)).await
}

/// Lets the store refuse its next `refusals` writes, then accepts `task_id`; the task once
/// it settled.
async fn refused_then_settled(run: &Run, refusals: usize, task_id: &str) -> bindu_schemas::Task {
    run.store.refuse_applies.store(refusals, Ordering::SeqCst);
    accept(run, task_id).await;
    settled(run, task_id).await
}

fn status_text(t: &bindu_schemas::Task) -> String {
    t.status
        .message
        .as_ref()
        .and_then(|m| match m.parts.first() {
            Some(Part::Text(t)) => Some(t.text.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

async fn stop(run: Run) {
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_store_refuses_fails_the_task_with_the_reason() {
    let run = start();
    let t = refused_then_settled(&run, 1, "refused-once").await;
    assert_eq!(t.status.state, TaskState::Failed);
    assert!(
        status_text(&t).contains("could not be stored"),
        "the reason is given: {}",
        status_text(&t)
    );
    assert_eq!(run.store.refuse_applies.load(Ordering::SeqCst), 0);
    stop(run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_even_the_failure_hands_the_command_back_until_it_ends() {
    let run = start();
    // The outcome and the failure record are both refused: the command goes back to the
    // bus (memory bus nack), the second delivery runs it again and records it.
    let t = refused_then_settled(&run, 2, "refused-twice").await;
    assert_eq!(t.status.state, TaskState::Completed);
    assert!(
        run.store.applies.load(Ordering::SeqCst) >= 3,
        "the run was recorded only after the command came back"
    );
    stop(run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_every_write_ends_the_task_after_the_last_delivery() {
    let run = start();
    // Every delivery is refused twice (outcome, failure); after the bus's last delivery the
    // exhausted command fails the task with a reason.
    let refusals = 2 * bindu_engine::bus::memory::MAX_DELIVER as usize;
    let t = refused_then_settled(&run, refusals, "always-refused").await;
    assert_eq!(t.status.state, TaskState::Failed);
    assert!(
        status_text(&t).contains("delivery attempts"),
        "failed by the dead-letter path: {}",
        status_text(&t)
    );
    stop(run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_during_the_run_is_ridden_out() {
    let run = start();
    // Accepted with the store up; it goes down before the worker records the outcome.
    accept_then(&run, "outage", true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = run.store.applies.load(Ordering::SeqCst);
    run.store.down.store(false, Ordering::SeqCst);
    let t = settled(&run, "outage").await;
    assert_eq!(t.status.state, TaskState::Completed);
    assert!(during >= 1, "the outcome was attempted during the outage");
    stop(run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_delivery_runs_without_reading_the_task_back() {
    let run = start();
    accept(&run, "no-reads").await;
    // Wait for the outcome's write, then count the reads made until then (the polling
    // below reads too).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if run.store.applies.load(Ordering::SeqCst) >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        run.store.gets.load(Ordering::SeqCst),
        0,
        "the command carried the conversation: the worker read nothing"
    );
    let t = settled(&run, "no-reads").await;
    assert_eq!(t.status.state, TaskState::Completed);
    stop(run).await;
}
