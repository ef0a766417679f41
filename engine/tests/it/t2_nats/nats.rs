//! T2: the NATS JetStream bus against a real `nats-server` spawned on a free port with a
//! temporary store (`NATS_SERVER_BIN` or the Debian path).
//!
//! Run with `cargo test -p bindu-engine --features t2-nats --test it t2_nats::`.

use std::time::Duration;

use bindu_engine::bus::conformance::{self, command, status_event};
use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::bus::{Bus, BusError, NatsBus, NatsOptions};
use bindu_schemas::TaskState;
use futures::StreamExt;

fn options(server: &NatsServer, agent: &str) -> NatsOptions {
    let mut o = NatsOptions::new(server.url(), agent);
    o.ack_wait = Duration::from_secs(1);
    o.max_deliver = 2;
    o
}

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let server = NatsServer::start();
    let server = &server;
    conformance::run_all(|| async move {
        NatsBus::connect(options(
            server,
            &format!("agent-{}", uuid::Uuid::new_v4().simple()),
        ))
        .await
        .expect("connect")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_are_idempotent() {
    let server = NatsServer::start();
    let mut handles = Vec::new();
    for _ in 0..4 {
        let o = options(&server, "shared-agent");
        handles.push(tokio::spawn(async move {
            NatsBus::connect(o).await.map(|_| ())
        }));
    }
    for h in handles {
        h.await.expect("join").expect("every start succeeds");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_replayed_from_any_position() {
    let server = NatsServer::start();
    let bus = NatsBus::connect(options(&server, "replay"))
        .await
        .expect("connect");
    bus.publish_events(vec![
        status_event("t", 1, TaskState::Submitted),
        status_event("t", 2, TaskState::Working),
        status_event("other", 1, TaskState::Submitted),
        status_event("t", 3, TaskState::Completed),
    ])
    .await
    .expect("publish");
    // Another process (a second connection) replays what it never saw live.
    let reader = NatsBus::connect(options(&server, "replay"))
        .await
        .expect("connect");
    assert!(reader.keeps_history());
    let mut replay = reader.replay_task("t", 1).await.expect("replay");
    let mut seqs = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(WAIT, replay.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("ok");
        assert_eq!(e.task_id(), "t");
        seqs.push(e.seq);
    }
    assert_eq!(seqs, [2, 3]);
    // ... then live events continue on the same stream.
    bus.publish_events(vec![status_event("t", 4, TaskState::Completed)])
        .await
        .expect("publish");
    let e = tokio::time::timeout(WAIT, replay.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("ok");
    assert_eq!(e.seq, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_commands_are_redelivered_then_dead_lettered() {
    let server = NatsServer::start();
    let bus = NatsBus::connect(options(&server, "dlq"))
        .await
        .expect("connect");
    let mut exhausted = bus.exhausted_commands().await.expect("advisories");
    bus.publish_commands(vec![command("doomed")])
        .await
        .expect("publish");
    let mut consumer = bus.consume_commands().await.expect("consume");
    // Two deliveries (max_deliver = 2), never acked: the worker "crashed" each time.
    for attempt in 1..=2u64 {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("delivery in time")
            .expect("open")
            .expect("ok");
        assert_eq!(d.command.task_id, "doomed");
        assert_eq!(d.attempt, attempt);
    }
    let gone = tokio::time::timeout(WAIT, exhausted.next())
        .await
        .expect("advisory in time")
        .expect("open");
    assert_eq!(gone.command.task_id, "doomed");
    assert_eq!(gone.deliveries, 2);
    bus.dead_letter(&gone).await.expect("dead letter");
    // Nothing is delivered again.
    let again = tokio::time::timeout(Duration::from_secs(3), consumer.next()).await;
    assert!(again.is_err(), "a dead-lettered command is not redelivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_command_publishes_are_dropped() {
    let server = NatsServer::start();
    let bus = NatsBus::connect(options(&server, "dedup"))
        .await
        .expect("connect");
    let c = command("once");
    bus.publish_commands(vec![c.clone(), c.clone()])
        .await
        .expect("publish");
    bus.publish_commands(vec![c]).await.expect("publish again");
    let mut consumer = bus.consume_commands().await.expect("consume");
    let d = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("ok");
    d.acker.ack().await.expect("ack");
    let more = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await;
    assert!(more.is_err(), "the same task/message id is queued once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_clear_error() {
    let mut o = NatsOptions::new("nats://127.0.0.1:1", "x");
    o.wait_for_server = false;
    let err = match NatsBus::connect(o).await {
        Err(e) => e,
        Ok(_) => panic!("nothing listens on port 1"),
    };
    // Unavailable (retryable, a 503 at the ingress), naming the URL.
    assert!(
        matches!(&err, BusError::Unavailable(m)
            if m.starts_with("cannot connect to NATS at nats://127.0.0.1:1")),
        "{err:?}"
    );
}
