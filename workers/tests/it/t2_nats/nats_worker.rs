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

use crate::support::{pool_options, spawn_pool, submit_task};

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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let task = loop {
        let t = store
            .get("long-task", Access::Internal)
            .await
            .expect("get")
            .task;
        if t.status.state.is_terminal() {
            break t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never finished: {:?}",
            t.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
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
