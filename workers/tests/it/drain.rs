//! A worker stopping with a handler still running, on the memory bus: its queue dies with
//! the process, so at the drain deadline the task is recorded interrupted (a clear end)
//! rather than handed back to a queue nobody will read. On NATS the command is handed back
//! instead (`t2_nats::nats_worker`).

use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::{Bus, MemoryBus};
use bindu_engine::store::{Access, MemoryStore, TaskStore};
use bindu_schemas::TaskState;
use bindu_workers::handler::handler_fn;
use bindu_workers::{HandlerError, HandlerInput, HandlerOutput, WorkerOptions};
use tokio_util::sync::CancellationToken;

use crate::support::{pool_options, spawn_pool, submit_task};

/// A memory-backed pool (drain `drain`) whose handler outlives the test, already running
/// task `task_id`.
async fn pool_running_one_task(
    task_id: &str,
    drain: Duration,
) -> (
    Arc<dyn Bus>,
    Arc<dyn TaskStore>,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), bindu_engine::bus::BusError>>,
) {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::default());
    let started = Arc::new(tokio::sync::Notify::new());
    let notify = started.clone();
    let handler = handler_fn(move |_input: HandlerInput| {
        let notify = notify.clone();
        async move {
            notify.notify_one();
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, HandlerError>(HandlerOutput::Text("never".into()))
        }
    });
    let stop = CancellationToken::new();
    let options = WorkerOptions {
        drain_timeout: drain,
        ..pool_options(2)
    };
    let pool = spawn_pool(store.clone(), bus.clone(), handler, options, &stop);
    let submitted = submit_task(store.as_ref(), task_id, "run until stopped").await;
    bus.publish_commands(vec![bindu_engine::bus::conformance::command_for(
        &submitted,
    )])
    .await
    .expect("publish");
    tokio::time::timeout(Duration::from_secs(20), started.notified())
        .await
        .expect("the handler starts");
    (bus, store, stop, pool)
}

/// The task's state once the pool has stopped.
async fn stopped(
    store: &dyn TaskStore,
    task_id: &str,
    pool: tokio::task::JoinHandle<Result<(), bindu_engine::bus::BusError>>,
) -> bindu_schemas::Task {
    tokio::time::timeout(Duration::from_secs(20), pool)
        .await
        .expect("the pool stops in time")
        .expect("join")
        .expect("pool");
    store
        .get(task_id, Access::Internal)
        .await
        .expect("get")
        .task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_drain_deadline_the_memory_bus_records_the_task_interrupted() {
    let (_bus, store, stop, pool) =
        pool_running_one_task("interrupted", Duration::from_millis(300)).await;
    stop.cancel();
    let task = stopped(store.as_ref(), "interrupted", pool).await;
    assert_eq!(task.status.state, TaskState::Failed, "{:?}", task.status);
    let text = task.status.message.map(|m| m.text()).unwrap_or_default();
    assert!(text.contains("interrupted"), "{text}");
}

/// Under a supervisor the intake closes first ([`Bus::close_intake`]) and the pool drains for
/// up to its drain timeout (the shutdown deadline); the supervisor's deadline (`shutdown`
/// cancelled) still ends the drain early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_intake_drains_until_the_shutdown_token_fires() {
    // Far longer than the test: only `stop` can end this drain in time.
    let (bus, store, stop, pool) = pool_running_one_task("drained", Duration::from_secs(120)).await;
    bus.close_intake().await;
    // Draining: the pool waits for its handler.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pool.is_finished(),
        "the pool drains while its handler runs"
    );
    stop.cancel();
    let task = stopped(store.as_ref(), "drained", pool).await;
    assert_eq!(task.status.state, TaskState::Failed, "{:?}", task.status);
}
