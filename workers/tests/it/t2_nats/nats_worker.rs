//! T2: the worker pool on the NATS bus. A handler that runs several times longer than the
//! bus's redelivery deadline keeps its command with in-progress acks: it runs exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::bus::{Bus, NatsBus, NatsOptions};
use bindu_engine::store::{Access, MemoryStore, TaskStore};
use bindu_schemas::TaskState;
use bindu_workers::handler::handler_fn;
use bindu_workers::{HandlerError, HandlerInput, HandlerOutput, WorkerOptions};
use tokio_util::sync::CancellationToken;

use crate::support::{pool_options, spawn_pool, submit_task, task_once};

/// Task `task_id` once it has ended (at most 30 s).
async fn terminal(store: &dyn TaskStore, task_id: &str) -> bindu_schemas::Task {
    task_once(store, task_id, Duration::from_secs(30), |s| s.is_terminal()).await
}

/// Runs one 3.5 s task on a bus with a 1 s redelivery deadline and 3 deliveries at most.
/// Returns the final task state, its status text and how often the handler ran.
async fn run_long_task(heartbeat: Duration) -> (TaskState, String, usize) {
    let server = NatsServer::start();
    let mut options = NatsOptions::new(server.url(), "heartbeat");
    options.ack_wait = Duration::from_secs(1);
    options.max_deliver = 3;
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(options).await.expect("connect"));
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let handler = handler_fn(move |_input: HandlerInput| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(3500)).await;
            Ok::<_, HandlerError>(HandlerOutput::Text("slow but sure".into()))
        }
    });
    let stop = CancellationToken::new();
    let options = WorkerOptions {
        heartbeat,
        ..pool_options(4)
    };
    let running = spawn_pool(store.clone(), bus.clone(), handler, options, &stop);
    let submitted = submit_task(store.as_ref(), "long-task", "take your time").await;
    bus.publish_commands(vec![bindu_engine::bus::conformance::command_for(
        &submitted,
    )])
    .await
    .expect("publish");
    let task = terminal(store.as_ref(), "long-task").await;
    // Well past several redelivery deadlines.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    running.await.expect("join").expect("pool");
    let text = task.status.message.map(|m| m.text()).unwrap_or_default();
    (task.status.state, text, runs.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_handlers_are_not_redelivered_while_running() {
    let (state, _, runs) = run_long_task(Duration::from_millis(300)).await;
    assert_eq!(state, TaskState::Completed);
    assert_eq!(runs, 1, "the command was redelivered while its handler ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_never_finishes_is_dead_lettered_and_its_task_failed() {
    // Heartbeats slower than the deadline: every delivery times out, as if each worker hung.
    let (state, reason, runs) = run_long_task(Duration::from_secs(60)).await;
    assert_eq!(state, TaskState::Failed);
    assert!(
        reason.contains("gave up after 3 delivery attempts"),
        "{reason}"
    );
    assert_eq!(runs, 3);
}

/// A rolling restart on NATS: a worker told to stop while its handlers still run waits for
/// its drain deadline, then hands their commands back instead of failing the tasks; the next
/// worker runs them to completion. With the memory bus (whose queue dies with the process)
/// the task is recorded interrupted instead (`drain::at_the_drain_deadline_the_memory_bus_records_the_task_interrupted`).
///
/// `honours_cancel`: the first runs give up with an error when their cancel token fires (as
/// the echo handler does) instead of ignoring it until aborted. Such an error races the pool
/// noticing the token; with several tasks at least one run used to lose that race and fail
/// its task ("Task failed: canceled"), which the restart drill (`scripts/drill`) found.
async fn hand_back_case(honours_cancel: bool, tasks: usize) {
    let server = NatsServer::start();
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(NatsOptions::new(server.url(), "handback"))
            .await
            .expect("connect"),
    );
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    // The first `tasks` runs outlive the drain deadline; the later ones finish at once.
    let handler = move || {
        let counter = counter.clone();
        handler_fn(move |input: HandlerInput| {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < tasks {
                    if honours_cancel {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                            _ = input.cancel.cancelled() => return Err::<HandlerOutput, HandlerError>("canceled".into()),
                        }
                    } else {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                }
                Ok::<_, HandlerError>(HandlerOutput::Text("done by the next worker".into()))
            }
        })
    };
    let first_stop = CancellationToken::new();
    let options = WorkerOptions {
        drain_timeout: Duration::from_millis(300),
        ..pool_options(tasks.max(2))
    };
    let first = spawn_pool(
        store.clone(),
        bus.clone(),
        handler(),
        options.clone(),
        &first_stop,
    );
    let ids: Vec<String> = (0..tasks).map(|i| format!("handed-back-{i}")).collect();
    for id in &ids {
        let submitted = submit_task(store.as_ref(), id, "survive a restart").await;
        bus.publish_commands(vec![bindu_engine::bus::conformance::command_for(
            &submitted,
        )])
        .await
        .expect("publish");
    }
    let started = tokio::time::Instant::now() + Duration::from_secs(20);
    while runs.load(Ordering::SeqCst) < tasks {
        assert!(
            tokio::time::Instant::now() < started,
            "the handlers never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first_stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .expect("the first worker stops after its drain deadline")
        .expect("join")
        .expect("pool");
    for id in &ids {
        let between = store.get(id, Access::Internal).await.expect("get").task;
        assert!(
            !between.status.state.is_terminal(),
            "the stopping worker must not end {id}: {:?}",
            between.status
        );
    }

    let second_stop = CancellationToken::new();
    let second = spawn_pool(store.clone(), bus.clone(), handler(), options, &second_stop);
    for id in &ids {
        let task = terminal(store.as_ref(), id).await;
        assert_eq!(
            task.status.state,
            TaskState::Completed,
            "{id}: {:?}",
            task.status
        );
    }
    second_stop.cancel();
    second.await.expect("join").expect("pool");
    assert_eq!(runs.load(Ordering::SeqCst), 2 * tasks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_hands_a_running_command_back_to_the_next_one() {
    hand_back_case(false, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_that_give_up_on_cancel_are_handed_back_too() {
    hand_back_case(true, 8).await;
}
