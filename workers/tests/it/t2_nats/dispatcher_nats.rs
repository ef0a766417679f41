//! T2: the webhook dispatcher on a real nats-server (spawned on a free port). A dispatcher
//! is killed mid-stream (its task aborted: no further acks, requests cut off) and a new one,
//! on a connection of its own, takes over the same durable consumer: every event of every
//! task arrives, the first arrival of each event in sequence order, and every duplicate is
//! byte-for-byte the same notification with the same eventId.
//!
//! Run with `cargo test -p bindu-workers --features t2-nats --test it t2_nats::dispatcher_nats`.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::conformance::status_event;
use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::bus::{NatsBus, NatsOptions};
use bindu_engine::store::flaky::Flaky;
use bindu_engine::store::{Access, DeadLetterStore, MemoryDeadLetters, MemoryStore, SubmitRequest};
use bindu_engine::{Bus, TaskStore};
use bindu_schemas::TaskState;
use support::*;

async fn connect(server: &NatsServer) -> Arc<dyn Bus> {
    connect_as(server, "push-restart").await
}

async fn connect_as(server: &NatsServer, agent: &str) -> Arc<dyn Bus> {
    let options = NatsOptions::new(server.url(), agent);
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
                dedupe: None,
            })
            .await
            .expect("submit");
        first_events.push(submitted.event);
    }
    let publisher = connect(&server).await;
    // As the ingress does for a send with a push config: its `submitted` event says so.
    for e in &mut first_events {
        e.push_configured = true;
    }
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
    // Notifications parked while the receiver was behind were delivered (by the first
    // dispatcher, or by the second after resuming them); none was given up.
    wait_until_none_pending(dead.as_ref()).await;
    assert!(dead
        .list(1000, false)
        .await
        .unwrap()
        .iter()
        .all(|l| l.replayed_at.is_some()));
    second.stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), second.task).await;
}

/// The dispatcher learns from the bus which tasks have webhooks: tasks accepted without a
/// push config cost it no store read (their events are acked at once), a task accepted with
/// one gets every event, and a config set on a running task is notified for every event
/// published after the set call answered (not the one before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_without_webhooks_cost_no_store_read_and_a_config_set_later_counts_from_then() {
    let server = NatsServer::start();
    let flaky = Arc::new(Flaky::new());
    let store: Arc<dyn TaskStore> = flaky.clone();
    let dead: Arc<dyn DeadLetterStore> = Arc::new(MemoryDeadLetters::default());
    let receiver = Receiver::start().await;
    let bus = connect_as(&server, "push-skip").await;
    let running = start_dispatcher(store.clone(), bus.clone(), dead, options()).await;
    let run = |task: &'static str, seqs: std::ops::RangeInclusive<u64>| {
        let bus = bus.clone();
        async move {
            for seq in seqs {
                let state = if seq == 4 {
                    TaskState::Completed
                } else {
                    TaskState::Working
                };
                bus.publish_events(vec![status_event(task, seq, state)])
                    .await
                    .expect("publish");
            }
        }
    };

    const PLAIN: usize = 40;
    let plain: Vec<&'static str> = (0..PLAIN)
        .map(|i| &*Box::leak(format!("plain-{i}").into_boxed_str()))
        .collect();
    for &t in &plain {
        submit(&store, &bus, t, vec![]).await;
        run(t, 2..=4).await;
    }
    submit(&store, &bus, "inline", vec![config(&receiver.url, None)]).await;
    run("inline", 2..=4).await;
    submit(&store, &bus, "late", vec![]).await;
    run("late", 2..=2).await;
    store
        .set_push_config("late", Access::Internal, config(&receiver.url, None))
        .await
        .expect("set");
    bus.push_configs_changed("late").await.expect("notice");
    run("late", 3..=4).await;

    let got = receiver
        .wait_until("inline 1-4 and late 3-4", |g| {
            seqs_of(g, "inline").len() >= 4 && seqs_of(g, "late").len() >= 2
        })
        .await;
    assert_eq!(seqs_of(&got, "inline"), [1, 2, 3, 4]);
    assert_eq!(
        seqs_of(&got, "late"),
        [3, 4],
        "events before the set are not notified"
    );
    assert!(
        got.iter().all(|r| !r.task_id().starts_with("plain-")),
        "tasks without webhooks get no notification"
    );
    // Every event of the plain tasks, and the two of `late` before its config, were passed
    // over; only the tasks with webhooks were looked up.
    let skipped = running.metrics.skipped.get();
    assert_eq!(skipped, PLAIN as u64 * 4 + 2);
    let reads = flaky
        .push_config_reads
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=6).contains(&reads),
        "push configs read {reads} times for 2 tasks with webhooks"
    );
    running.stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), running.task).await;
}
