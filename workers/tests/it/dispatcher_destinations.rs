//! T1: one slow webhook destination never delays another's notifications (issue 14 item
//! 12). Memory backends, receivers on loopback ports only.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bindu_engine::bus::MemoryBus;
use bindu_engine::store::{DeadLetterStore, MemoryDeadLetters, MemoryStore};
use bindu_engine::{Bus, TaskStore};
use bindu_workers::handler::handler_fn;
use bindu_workers::{HandlerError, HandlerInput, HandlerOutput, WorkerOptions, WorkerPool};
use support::*;
use tokio_util::sync::CancellationToken;

/// A silent receiver (it takes the request and never answers) with many tasks, and a
/// healthy receiver on the same host (another port) with one task: the healthy one's
/// notifications arrive promptly, while the silent one's overflow into dead letters.
///
/// Before destinations were kept apart, both shared the host's slots and the silent
/// destination's events filled the dispatcher's in-flight budget, so the healthy task's
/// events were not even read from the bus for minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_receiver_does_not_delay_a_healthy_one() {
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::default());
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    let dead: Arc<dyn DeadLetterStore> = Arc::new(MemoryDeadLetters::default());
    let stop = CancellationToken::new();
    let handler = handler_fn(|_: HandlerInput| async move {
        Ok::<_, HandlerError>(HandlerOutput::Text("ok".into()))
    });
    let pool = WorkerPool::new(
        store.clone(),
        bus.clone(),
        Arc::new(handler),
        WorkerOptions {
            concurrency: 16,
            drain_timeout: Duration::from_secs(1),
            heartbeat: Duration::from_secs(1),
            ..WorkerOptions::default()
        },
    );
    tokio::spawn(pool.run(stop.clone()));

    let silent = Receiver::with(|_, _| Reply::Hang).await;
    let healthy = Receiver::start().await;
    let mut options = options();
    // A small in-flight budget and short timeouts: the same mechanism as the defaults
    // (10,000 events, 10 s per attempt), at test scale.
    options.max_in_flight = 16;
    options.delivery.per_host_concurrency = 2;
    options.delivery.max_pending_per_destination = 4;
    options.delivery.timeout = Duration::from_secs(1);
    options.delivery.max_attempts = 4;
    let d = start_dispatcher(store.clone(), bus.clone(), dead.clone(), options).await;

    for i in 0..30 {
        submit(
            &store,
            &bus,
            &format!("t-silent-{i}"),
            vec![config(&silent.url, None)],
        )
        .await;
    }
    // Let the silent destination's events take the dispatcher's budget first.
    silent
        .wait_until("the silent receiver's first requests", |g| !g.is_empty())
        .await;
    let sent = Instant::now();
    submit(&store, &bus, "t-healthy", vec![config(&healthy.url, None)]).await;
    let got = healthy
        .wait_until("the healthy task's final notification", |g| {
            g.iter().any(|r| r.json["final"] == true)
        })
        .await;
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "the healthy receiver waited {took:?} behind the silent one"
    );
    let seqs = seqs_of(&got, "t-healthy");
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "in order"
    );
    // The silent destination's backlog was bounded: the rest became dead letters.
    let overflowed = outcomes(&d.metrics, "overflow");
    assert!(overflowed > 0, "no overflow recorded");
    assert!(
        dead.pending().await.unwrap() >= overflowed,
        "every overflowed notification is a dead letter"
    );
    d.stop.cancel();
    stop.cancel();
}

/// A healthy destination is never cut short, however many notifications wait for it:
/// overflow only applies to a failing destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_healthy_destination_never_overflows() {
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::default());
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    let dead: Arc<dyn DeadLetterStore> = Arc::new(MemoryDeadLetters::default());
    let stop = CancellationToken::new();
    let handler = handler_fn(|_: HandlerInput| async move {
        Ok::<_, HandlerError>(HandlerOutput::Text("ok".into()))
    });
    let pool = WorkerPool::new(
        store.clone(),
        bus.clone(),
        Arc::new(handler),
        WorkerOptions::default(),
    );
    tokio::spawn(pool.run(stop.clone()));
    let slow = Receiver::start().await;
    slow.set_delay(Duration::from_millis(50));
    let mut options = options();
    options.delivery.per_host_concurrency = 1;
    options.delivery.max_pending_per_destination = 2;
    let d = start_dispatcher(store.clone(), bus.clone(), dead.clone(), options).await;
    for i in 0..10 {
        submit(
            &store,
            &bus,
            &format!("t-busy-{i}"),
            vec![config(&slow.url, None)],
        )
        .await;
    }
    slow.wait_until("every task's final notification", |g| {
        g.iter().filter(|r| r.json["final"] == true).count() == 10
    })
    .await;
    assert_eq!(outcomes(&d.metrics, "overflow"), 0);
    assert_eq!(dead.pending().await.unwrap(), 0);
    d.stop.cancel();
    stop.cancel();
}
