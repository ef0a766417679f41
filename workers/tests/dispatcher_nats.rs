//! T2: the webhook dispatcher on a real nats-server (spawned on a free port). A dispatcher
//! is killed mid-stream (its task aborted: no further acks, requests cut off) and a new one,
//! on a connection of its own, takes over the same durable consumer: every event of every
//! task arrives, the first arrival of each event in sequence order, and every duplicate is
//! byte-for-byte the same notification with the same eventId.
//!
//! Run with `cargo test -p bindu-workers --features t2-nats --test dispatcher_nats`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::conformance::status_event;
use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::bus::{NatsBus, NatsOptions};
use bindu_engine::store::{DeadLetterStore, MemoryDeadLetters, MemoryStore, SubmitRequest};
use bindu_engine::{Bus, TaskStore};
use bindu_schemas::TaskState;
use support::*;

async fn connect(server: &NatsServer) -> Arc<dyn Bus> {
    let options = NatsOptions::new(server.url(), "push-restart");
    Arc::new(NatsBus::connect(options).await.expect("connect"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_mid_stream_is_resumed_without_loss_or_reordering() {
    let server = NatsServer::start();
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::default());
    let dead: Arc<dyn DeadLetterStore> = Arc::new(MemoryDeadLetters::default());
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(5));

    let bus_a = connect(&server).await;
    let first = start_dispatcher(store.clone(), bus_a.clone(), dead.clone(), options()).await;

    let tasks: Vec<String> = (0..6).map(|i| format!("restart-{i}")).collect();
    const N: u64 = 30;
    let mut first_events = Vec::new();
    for t in &tasks {
        let submitted = store
            .submit(SubmitRequest {
                owner: None,
                task_id: t.clone(),
                context_id: None,
                message: bindu_engine::store::conformance::user_message("hi"),
                push_config: Some(config(&receiver.url, None)),
            })
            .await
            .expect("submit");
        first_events.push(submitted.event);
    }
    let publisher = connect(&server).await;
    publisher
        .publish_events(first_events)
        .await
        .expect("publish");
    for seq in 2..=N {
        let batch = tasks
            .iter()
            .map(|t| status_event(t, seq, TaskState::Working))
            .collect();
        publisher.publish_events(batch).await.expect("publish");
    }
    let total = tasks.len() * N as usize;

    // Kill the first dispatcher a third of the way through.
    receiver
        .wait_until("a third of the notifications", |g| g.len() >= total / 3)
        .await;
    first.task.abort();
    let _ = first.task.await;
    let delivered_by_first = receiver.got().len();
    assert!(
        delivered_by_first < total,
        "the first dispatcher finished before it was killed"
    );

    let bus_b = connect(&server).await;
    let second = start_dispatcher(store.clone(), bus_b, dead.clone(), options()).await;
    let got = receiver
        .wait_until("every event of every task", |g| {
            let ids: HashSet<String> = g.iter().map(|r| r.event_id()).collect();
            ids.len() >= total
        })
        .await;

    let mut first_seen: HashMap<String, &Received> = HashMap::new();
    let mut duplicates = 0;
    for t in &tasks {
        let mut order = Vec::new();
        for r in got.iter().filter(|r| &r.task_id() == t) {
            match first_seen.get(&r.event_id()) {
                Some(earlier) => {
                    duplicates += 1;
                    assert_eq!(earlier.body, r.body, "a duplicate is the same notification");
                }
                None => {
                    first_seen.insert(r.event_id(), r);
                    order.push(r.seq());
                }
            }
        }
        assert_eq!(
            order,
            (1..=N).collect::<Vec<_>>(),
            "task {t}: nothing lost or reordered"
        );
    }
    eprintln!(
        "{} notifications before the kill, {} after; {duplicates} duplicate(s)",
        delivered_by_first,
        got.len() - delivered_by_first
    );
    assert!(dead.list(10, false).await.unwrap().is_empty());
    second.stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), second.task).await;
}
