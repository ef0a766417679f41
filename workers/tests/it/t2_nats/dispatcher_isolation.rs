//! T2: webhook destinations never wait for each other (issue 14 item 12), through the real
//! dispatcher on a real nats-server (spawned on a free port), receivers on loopback ports.
//!
//! "Promptly" is never a timing goal here: a silent receiver's attempt timeout is long
//! ([`SILENT_TIMEOUT`]), and each test checks that the healthy notifications all arrived
//! while no attempt to a silent receiver had timed out yet.
//!
//! Run with `cargo test -p bindu-workers --features t2-nats --test it t2_nats::dispatcher_isolation`.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::conformance::status_event;
use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::bus::{NatsBus, NatsOptions};
use bindu_engine::store::{DeadLetterStore, MemoryDeadLetters, MemoryStore};
use bindu_engine::{Bus, TaskStore};
use bindu_schemas::TaskState;
use support::*;

/// How long one attempt to a silent receiver waits for its answer: longer than any test
/// here takes when destinations are kept apart.
const SILENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Events of each task: `submitted`, working updates, `completed`.
const EVENTS: u64 = 6;

/// A nats-server of its own, the memory task store and dead letters, and a connection.
struct Rig {
    server: NatsServer,
    agent: &'static str,
    /// The bus's window of unacknowledged events (its consumer is the dispatcher's).
    window: Option<i64>,
    store: Arc<dyn TaskStore>,
    dead: Arc<dyn DeadLetterStore>,
    bus: Arc<dyn Bus>,
}

impl Rig {
    /// With the bus's window of unacknowledged events at `window` (default: 100,000).
    async fn start(agent: &'static str, window: Option<i64>) -> Rig {
        let server = NatsServer::start();
        let bus = Self::connect(&server, agent, window).await;
        Rig {
            server,
            agent,
            window,
            store: Arc::new(MemoryStore::default()),
            dead: Arc::new(MemoryDeadLetters::default()),
            bus,
        }
    }

    async fn connect(server: &NatsServer, agent: &str, window: Option<i64>) -> Arc<dyn Bus> {
        let mut options = NatsOptions::new(server.url(), agent);
        if let Some(n) = window {
            options.event_max_ack_pending = n;
        }
        Arc::new(NatsBus::connect(options).await.expect("connect"))
    }

    /// A dispatcher on a connection of its own.
    async fn dispatcher(&self, options: bindu_workers::DispatcherOptions) -> Running {
        let bus = Self::connect(&self.server, self.agent, self.window).await;
        start_dispatcher(self.store.clone(), bus, self.dead.clone(), options).await
    }

    /// Records task `task_id` with `configs` and publishes its `EVENTS` events, the last
    /// one `completed`.
    async fn run_task(&self, task_id: &str, configs: Vec<bindu_schemas::PushNotificationConfig>) {
        submit(&self.store, &self.bus, task_id, configs).await;
        for seq in 2..=EVENTS {
            let state = if seq == EVENTS {
                TaskState::Completed
            } else {
                TaskState::Working
            };
            self.bus
                .publish_events(vec![status_event(task_id, seq, state)])
                .await
                .expect("publish");
        }
    }
}

/// What `healthy` got once every event reached it.
async fn every_event_at(healthy: &Receiver) -> Vec<Received> {
    healthy
        .wait_until("every event at the healthy webhook", |g| {
            g.len() as u64 >= EVENTS
        })
        .await
}

fn all_events() -> Vec<u64> {
    (1..=EVENTS).collect()
}

/// A task with a silent webhook and a healthy one: the healthy one gets every event while
/// the silent one still holds the first (before, each event went to the task's webhooks in
/// turn, so the healthy webhook waited out every attempt to the silent one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_webhook_never_holds_up_another_webhook_of_the_same_task() {
    let rig = Rig::start("iso-task", None).await;
    let silent = Receiver::with(|_, _| Reply::Hang).await;
    let healthy = Receiver::start().await;
    let mut o = options();
    o.delivery.timeout = SILENT_TIMEOUT;
    let d = rig.dispatcher(o).await;

    rig.run_task(
        "t-both",
        vec![config(&silent.url, None), config(&healthy.url, None)],
    )
    .await;
    let got = every_event_at(&healthy).await;
    assert_eq!(seqs_of(&got, "t-both"), all_events(), "in order, each once");
    assert_eq!(
        timeouts(&d.metrics),
        0,
        "the healthy webhook waited for an attempt to the silent one"
    );
    assert_eq!(
        seqs_of(&silent.got(), "t-both"),
        [1],
        "the silent webhook still holds the first event; the later ones wait in order"
    );
    d.stop.cancel();
}

/// A task with a failing webhook (503, then 200 once it recovers) and a healthy one: the
/// healthy one gets every event at once, the failing one every event too, in order, once
/// it recovers; nothing is given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_recovers_in_order_while_the_tasks_other_webhook_goes_on() {
    let rig = Rig::start("iso-flaky", None).await;
    // Down (503) until the test brings it up; it never runs out of attempts meanwhile.
    let flaky = Receiver::with(|_, _| Reply::Status(503)).await;
    let healthy = Receiver::start().await;
    let mut o = options();
    o.delivery.max_attempts = 100;
    let d = rig.dispatcher(o).await;

    rig.run_task(
        "t-flaky",
        vec![config(&flaky.url, None), config(&healthy.url, None)],
    )
    .await;
    let got = every_event_at(&healthy).await;
    assert_eq!(seqs_of(&got, "t-flaky"), all_events());
    assert!(
        seqs_of(&flaky.got(), "t-flaky").iter().all(|&s| s == 1),
        "nothing after event 1 went to the failing webhook before event 1 was delivered"
    );
    // Up again: each later event fails once more, then goes through.
    flaky.set_behaviour(|_, nth| {
        if nth == 1 {
            Reply::Status(503)
        } else {
            Reply::Status(200)
        }
    });
    let got = flaky
        .wait_until("every event at the recovered webhook", |g| {
            g.iter()
                .any(|r| r.seq() == EVENTS && r.json["final"] == true)
                && g.iter().filter(|r| r.seq() == EVENTS).count() == 2
        })
        .await;
    let mut firsts = seqs_of(&got, "t-flaky");
    firsts.dedup();
    assert_eq!(
        firsts,
        all_events(),
        "each event retried until accepted, in order"
    );
    eventually("every notification counted as delivered", || {
        outcomes(&d.metrics, "delivered") == 2 * EVENTS
    })
    .await;
    assert_eq!(outcomes(&d.metrics, "exhausted"), 0);
    wait_until_none_pending(rig.dead.as_ref()).await;
    d.stop.cancel();
}

/// Twenty tasks, each with its own silent receiver, and three tasks with healthy ones,
/// read from the bus after them: the healthy ones get every event while no attempt to a
/// silent receiver has ended. The dispatcher's in-flight budget is small here (the same
/// mechanism as the default of 10,000 events, at test scale): before, the silent tasks'
/// events filled it, and the healthy tasks' events were not even read until silent
/// attempts had run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_silent_destinations_do_not_delay_the_healthy_ones() {
    let rig = Rig::start("iso-many", None).await;
    let mut o = options();
    o.delivery.timeout = SILENT_TIMEOUT;
    o.max_in_flight = 64;
    o.delivery.per_host_concurrency = 2;
    o.delivery.max_pending_per_destination = 2;
    let d = rig.dispatcher(o).await;

    // The silent tasks come first on the bus: their events are read first.
    let mut silent = Vec::new();
    for i in 0..20 {
        let r = Receiver::with(|_, _| Reply::Hang).await;
        rig.run_task(&format!("t-silent-{i}"), vec![config(&r.url, None)])
            .await;
        silent.push(r);
    }
    let mut healthy = Vec::new();
    for i in 0..3 {
        let r = Receiver::start().await;
        rig.run_task(&format!("t-healthy-{i}"), vec![config(&r.url, None)])
            .await;
        healthy.push(r);
    }
    for (i, r) in healthy.iter().enumerate() {
        let got = r
            .wait_until("every event of a healthy task", |g| {
                g.len() as u64 >= EVENTS
            })
            .await;
        assert_eq!(seqs_of(&got, &format!("t-healthy-{i}")), all_events());
    }
    assert_eq!(
        timeouts(&d.metrics),
        0,
        "the healthy receivers waited for attempts to the silent ones"
    );
    // The silent destinations did not starve each other either: each has its first request.
    for r in &silent {
        r.wait_until("a silent receiver's first request", |g| !g.is_empty())
            .await;
    }
    d.stop.cancel();
}

/// The bus's window of unacknowledged events is shared by every destination: NATS delivers
/// nothing more to the dispatcher once that many events follow the oldest unacknowledged
/// one (acks are cumulative). A receiver answering 503 with `Retry-After: 600` must not
/// keep its event unacknowledged through the wait: here the window is 32 events, and 40
/// tasks without webhooks and one with a healthy webhook follow the failing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_does_not_hold_the_bus_window_for_everyone() {
    let rig = Rig::start("iso-window", Some(32)).await;
    let failing =
        Receiver::with(|_, _| Reply::With(503, vec![("retry-after", "600".into())])).await;
    let healthy = Receiver::start().await;
    let d = rig.dispatcher(options()).await;

    rig.run_task("t-failing", vec![config(&failing.url, None)])
        .await;
    failing
        .wait_until("the failing receiver's first answer", |g| !g.is_empty())
        .await;
    for i in 0..40 {
        rig.run_task(&format!("t-plain-{i}"), vec![]).await;
    }
    rig.run_task("t-healthy", vec![config(&healthy.url, None)])
        .await;
    let got = healthy
        .wait_until("every event of the healthy task", |g| {
            g.len() as u64 >= EVENTS
        })
        .await;
    assert_eq!(seqs_of(&got, "t-healthy"), all_events());
    assert_eq!(
        failing.got().len(),
        1,
        "the failing receiver's retry is ten minutes away"
    );
    d.stop.cancel();
}

/// Parked notifications outlive the dispatcher: a receiver answering 503 with
/// `Retry-After: 600` has its notifications parked and their events acked; the dispatcher
/// stops; the receiver recovers; the next dispatcher (a connection of its own, the same
/// stores) delivers every parked notification, in order, and marks its letter delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_notifications_are_resumed_in_order_by_the_next_dispatcher() {
    let receiver =
        Receiver::with(|_, _| Reply::With(503, vec![("retry-after", "600".into())])).await;
    let rig = Rig::start("iso-resume", None).await;
    let first = rig.dispatcher(options()).await;
    rig.run_task("t-parked", vec![config(&receiver.url, None)])
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while (rig.dead.retrying(100).await.unwrap().len() as u64) < EVENTS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "every notification parked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receiver.got().len(), 1, "only event 1 was attempted");
    first.stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), first.task).await;

    receiver.set_behaviour(|_, _| Reply::Status(200));
    let second = rig.dispatcher(options()).await;
    let got = receiver
        .wait_until("every parked notification", |g| {
            g.iter().any(|r| r.seq() == EVENTS)
        })
        .await;
    let mut firsts = seqs_of(&got[1..], "t-parked");
    firsts.dedup();
    assert_eq!(firsts, all_events(), "resumed in order");
    wait_until_none_pending(rig.dead.as_ref()).await;
    assert!(rig.dead.retrying(100).await.unwrap().is_empty());
    second.stop.cancel();
}
