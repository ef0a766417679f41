//! T2: the Redis Streams bus against a real Redis (`BINDU_TEST_REDIS_URL`, else
//! redis://127.0.0.1:6379). Each test uses agents of its own (their keys share a prefix) and
//! deletes their keys at the end.
//!
//! Run with `cargo test -p bindu-engine --features t2-redis --test it t2_redis::`.

use std::time::Duration;

use bindu_engine::bus::conformance::{self, command, status_event};
use bindu_engine::bus::{Bus, RedisBus, RedisBusOptions};
use bindu_schemas::TaskState;
use futures::StreamExt;

use crate::support::{dead_letter_next, next_ok, stays_quiet, WAIT};

fn url() -> String {
    std::env::var("BINDU_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn options(agent: &str) -> RedisBusOptions {
    let mut o = RedisBusOptions::new(url(), agent);
    o.ack_wait = Duration::from_secs(1);
    o.max_deliver = 2;
    o
}

/// A bus of a fresh agent, and the agent's name.
async fn bus() -> RedisBus {
    RedisBus::connect(options(&format!("test-{}", uuid::Uuid::new_v4().simple())))
        .await
        .expect("connect")
}

/// Buses made by a test, purged at its end.
#[derive(Default)]
struct Made(std::sync::Mutex<Vec<String>>);

impl Made {
    async fn bus(&self) -> RedisBus {
        let agent = format!("test-{}", uuid::Uuid::new_v4().simple());
        self.0.lock().unwrap().push(agent.clone());
        RedisBus::connect(options(&agent)).await.expect("connect")
    }

    async fn purge(&self) {
        let agents = self.0.lock().unwrap().clone();
        for agent in agents {
            let bus = RedisBus::connect(options(&agent)).await.expect("connect");
            bus.purge().await.expect("purge");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let made = Made::default();
    let made_ref = &made;
    conformance::run_all(|| async move { made_ref.bus().await }).await;
    made.purge().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_replayed_from_any_position() {
    let bus = bus().await;
    bus.publish_events(vec![
        status_event("t", 1, TaskState::Submitted),
        status_event("t", 2, TaskState::Working),
    ])
    .await
    .expect("publish");
    bus.publish_events(vec![status_event("t", 3, TaskState::Working)])
        .await
        .expect("publish");
    let mut replay = bus.replay_task("t", 1).await.expect("replay");
    for want in [2, 3] {
        let e = next_ok(&mut replay, "in time").await;
        assert_eq!(e.seq, want);
    }
    // Then live, without a gap or a repeat.
    bus.publish_events(vec![status_event("t", 4, TaskState::Completed)])
        .await
        .expect("publish");
    let e = next_ok(&mut replay, "in time").await;
    assert_eq!(e.seq, 4);
    bus.purge().await.expect("purge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_commands_are_reclaimed_then_dead_lettered() {
    let bus = bus().await;
    let mut exhausted = bus.exhausted_commands().await.expect("exhausted");
    bus.publish_commands(vec![command("doomed")])
        .await
        .expect("publish");
    // Two deliveries (max_deliver = 2) to two consumers that never ack (crashed workers).
    for attempt in 1..=2u64 {
        let mut consumer = bus.consume_commands().await.expect("consume");
        let d = next_ok(&mut consumer, "delivery in time").await;
        assert_eq!(d.command.task_id, "doomed");
        assert_eq!(d.attempt, attempt);
    }
    dead_letter_next(&bus, &mut exhausted, "exhausted in time", "doomed", 2).await;
    let mut consumer = bus.consume_commands().await.expect("consume");
    assert!(
        stays_quiet(&mut consumer, Duration::from_secs(3)).await,
        "a dead-lettered command is not redelivered"
    );
    assert_eq!(bus.queue_depth().await.expect("depth").total(), 0);
    bus.purge().await.expect("purge");
}

/// The next delivery of `consumer`, while `held` is reported in progress every 300 ms.
async fn next_keeping(
    consumer: &mut bindu_engine::bus::CommandStream,
    held: &bindu_engine::bus::Delivery,
) -> Option<Result<bindu_engine::bus::Delivery, bindu_engine::bus::BusError>> {
    let mut ticks = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            d = consumer.next() => return d,
            _ = ticks.tick() => held.acker.in_progress().await.expect("in progress"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_commands_come_again_after_the_delay_and_in_progress_keeps_them() {
    let bus = bus().await;
    bus.publish_commands(vec![command("slow"), command("retry")])
        .await
        .expect("publish");
    let mut consumer = bus.consume_commands().await.expect("consume");
    let mut slow = None;
    for _ in 0..2 {
        let d = next_ok(&mut consumer, "in time").await;
        if d.command.task_id == "retry" {
            d.acker
                .nack(Duration::from_millis(300))
                .await
                .expect("nack");
        } else {
            slow = Some(d);
        }
    }
    let slow = slow.expect("the slow command");
    // The slow one stays held past the ack wait (1 s) while in progress is reported.
    let again = tokio::time::timeout(WAIT, next_keeping(&mut consumer, &slow))
        .await
        .expect("in time")
        .expect("open")
        .expect("ok");
    assert_eq!(
        (again.command.task_id.as_str(), again.attempt),
        ("retry", 2)
    );
    again.acker.ack().await.expect("ack");
    let quiet = tokio::time::timeout(
        Duration::from_millis(2500),
        next_keeping(&mut consumer, &slow),
    )
    .await;
    assert!(quiet.is_err(), "a command in progress is not redelivered");
    slow.acker.ack().await.expect("ack");
    bus.purge().await.expect("purge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_a_clear_error_without_the_password() {
    let o = RedisBusOptions::new("redis://:s3cret@127.0.0.1:1", "nobody");
    let err = match RedisBus::connect(o).await {
        Ok(_) => panic!("no Redis listens on port 1"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot connect to Redis"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
