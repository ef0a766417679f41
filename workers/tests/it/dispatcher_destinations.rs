//! T1: one slow webhook destination never delays another's notifications (issue 14 item
//! 12). Memory backends, receivers on loopback ports only; the same on a real nats-server,
//! with several webhooks per task and the bus's window, is in `t2_nats::dispatcher_isolation`.

use crate::support;

use std::time::Duration;

use bindu_workers::WorkerOptions;
use support::*;

/// A silent receiver (it takes the request and never answers) with many tasks, and a
/// healthy receiver on the same host (another port) with one task: the healthy one's
/// notifications all arrive while no attempt to the silent one has timed out yet. The silent
/// destination holds at most its share: `max_pending_per_destination` notifications on the
/// bus, `max_parked_per_destination` parked, and the rest become dead letters at once.
///
/// Before destinations were kept apart, both shared the host's slots and the silent
/// destination's events filled the dispatcher's in-flight budget, so the healthy task's
/// events were not even read from the bus for minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_receiver_does_not_delay_a_healthy_one() {
    let MemoryAgent {
        store,
        bus,
        dead,
        stop,
    } = memory_agent(busy_pool_options());

    let silent = Receiver::with(|_, _| Reply::Hang).await;
    let healthy = Receiver::start().await;
    let mut options = options();
    // A small in-flight budget and small shares: the same mechanism as the defaults (10,000
    // events, 100 on the bus and 10,000 parked per destination), at test scale.
    options.max_in_flight = 16;
    options.delivery.per_host_concurrency = 2;
    options.delivery.max_pending_per_destination = 4;
    options.delivery.max_parked_per_destination = 8;
    options.delivery.timeout = Duration::from_secs(20);
    let d = start_dispatcher(store.clone(), bus.clone(), dead.clone(), options).await;

    submit_many(&store, &bus, "t-silent", 30, &silent.url).await;
    // Let the silent destination's events take the dispatcher's budget first.
    silent
        .wait_until("the silent receiver's first requests", |g| !g.is_empty())
        .await;
    submit(&store, &bus, "t-healthy", vec![config(&healthy.url, None)]).await;
    let got = healthy
        .wait_until("the healthy task's final notification", |g| {
            g.iter().any(|r| r.json["final"] == true)
        })
        .await;
    assert_eq!(
        timeouts(&d.metrics),
        0,
        "the healthy receiver waited behind the silent one"
    );
    assert_in_order(&got, "t-healthy");
    // The silent destination's backlog was bounded: what did not fit its share became a
    // dead letter at once.
    let overflowed = outcomes(&d.metrics, "overflow");
    assert!(overflowed > 0, "no overflow recorded");
    let given_up = dead
        .list(1000, true)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| !l.retrying)
        .count() as u64;
    assert_eq!(
        given_up, overflowed,
        "every overflowed notification is a dead letter"
    );
    assert!(
        d.metrics.notifications_parked.get() <= 8,
        "parked past the share"
    );
    d.stop.cancel();
    stop.cancel();
}

/// A busy destination that answers is never cut short: what it cannot take at once is
/// parked (its events acked) and delivered in order, each letter marked delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_healthy_destination_has_its_backlog_parked_and_delivered() {
    let MemoryAgent {
        store,
        bus,
        dead,
        stop,
    } = memory_agent(WorkerOptions::default());
    let slow = Receiver::start().await;
    slow.set_delay(Duration::from_millis(50));
    let mut options = options();
    options.delivery.per_host_concurrency = 1;
    options.delivery.max_pending_per_destination = 2;
    let d = start_dispatcher(store.clone(), bus.clone(), dead.clone(), options).await;
    submit_many(&store, &bus, "t-busy", 10, &slow.url).await;
    let got = slow
        .wait_until("every task's final notification", |g| {
            g.iter().filter(|r| r.json["final"] == true).count() == 10
        })
        .await;
    for i in 0..10 {
        assert_in_order(&got, &format!("t-busy-{i}"));
    }
    assert_eq!(outcomes(&d.metrics, "overflow"), 0);
    assert!(d.metrics.parked.get() > 0, "nothing was parked");
    wait_until_none_pending(dead.as_ref()).await;
    d.stop.cancel();
    stop.cancel();
}
