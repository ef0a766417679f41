//! The behaviour every [`Bus`] backend must show. Backends call [`run_all`] from their tests
//! with a factory for fresh buses (enable the `testing` feature).

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use bindu_schemas::bus::{CommandOp, EventBody, TaskCommand, TaskEvent};
use bindu_schemas::{StatusUpdateKind, TaskState, TaskStatus, TaskStatusUpdateEvent};
use futures::StreamExt;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

pub fn command(task_id: &str) -> TaskCommand {
    TaskCommand {
        op: CommandOp::Run,
        task_id: task_id.into(),
        context_id: "ctx".into(),
        message_id: "m".into(),
        caller: None,
        issued_at: crate::time::now_rfc3339(),
        version: 1,
        history: None,
        payment: None,
        trace: None,
    }
}

/// The command ingress queues for a task it just recorded (the conversation carried).
pub fn command_for(submitted: &crate::store::Submitted) -> TaskCommand {
    TaskCommand {
        op: CommandOp::Run,
        task_id: submitted.task.id.clone(),
        context_id: submitted.task.context_id.clone(),
        message_id: "m".into(),
        caller: None,
        issued_at: crate::time::now_rfc3339(),
        version: submitted.version,
        history: submitted.task.history.clone(),
        payment: None,
        trace: None,
    }
}

pub fn status_event(task_id: &str, seq: u64, state: TaskState) -> TaskEvent {
    TaskEvent::new(
        seq,
        crate::time::now_rfc3339(),
        EventBody::Status(TaskStatusUpdateEvent {
            task_id: task_id.into(),
            context_id: "ctx".into(),
            kind: StatusUpdateKind::StatusUpdate,
            status: TaskStatus {
                state,
                message: None,
                timestamp: None,
            },
            is_final: state.is_final(),
            metadata: None,
        }),
    )
}

/// Polls the queue depth (bounded) until `ok` holds; the last depth read.
async fn depth_until(bus: &impl Bus, what: &str, ok: impl Fn(QueueDepth) -> bool) -> QueueDepth {
    let mut last = QueueDepth::default();
    for _ in 0..200 {
        last = bus.queue_depth().await.expect("queue depth");
        if ok(last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("queue depth never became {what}; last {last:?}");
}

/// Commands count as waiting until a worker takes them, then as running until acked.
async fn queue_depth_counts_waiting_and_running_commands(bus: &impl Bus) {
    assert_eq!(
        bus.queue_depth().await.expect("queue depth"),
        QueueDepth::default()
    );
    bus.publish_commands(vec![command("d1"), command("d2"), command("d3")])
        .await
        .expect("publish");
    depth_until(bus, "3 waiting", |d| {
        d == QueueDepth {
            waiting: 3,
            running: 0,
        }
    })
    .await;
    let mut commands = bus.consume_commands().await.expect("consume");
    let mut held = Vec::new();
    for _ in 0..3 {
        let d = tokio::time::timeout(WAIT, commands.next())
            .await
            .expect("a command within the time limit")
            .expect("stream open")
            .expect("no error");
        held.push(d);
    }
    depth_until(bus, "3 running", |d| {
        d == QueueDepth {
            waiting: 0,
            running: 3,
        }
    })
    .await;
    held.pop().expect("held").acker.ack().await.expect("ack");
    held.pop().expect("held").acker.ack().await.expect("ack");
    // The one still held is running. A backend that carried the three in one message (NATS
    // batches) counts them running until the last is acked: 1 or 3, never 0.
    depth_until(bus, "1 running (3 when batched)", |d| {
        d.waiting == 0 && (d.running == 1 || d.running == 3)
    })
    .await;
    held.pop().expect("held").acker.ack().await.expect("ack");
    depth_until(bus, "0 running", |d| d.running == 0).await;
}

async fn next(stream: &mut EventStream) -> Arc<TaskEvent> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("event within the time limit")
        .expect("stream open")
        .expect("no error")
}

pub async fn run_all<B, F, Fut>(make: F)
where
    B: Bus,
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
{
    commands_go_to_exactly_one_consumer(&make().await).await;
    queue_depth_counts_waiting_and_running_commands(&make().await).await;
    task_events_reach_task_subscribers_in_order(&make().await).await;
    all_events_subscription(&make().await).await;
    cancel_signals_reach_listeners(&make().await).await;
    durable_consumers_get_every_event_in_order(&make().await).await;
    durable_consumers_resume_after_their_last_ack(&make().await).await;
    events_published_together_arrive_in_order_and_come_again_together(&make().await).await;
    a_nacked_event_comes_again_after_later_ones_are_acked(&make().await).await;
    acks_made_just_before_a_reader_stops_hold_when_it_reopens(&make().await).await;
    publishing_never_waits_for_a_durable_consumer(&make().await).await;
    closing_intake_ends_command_streams(&make().await).await;
    push_notices_reach_durable_consumers_in_order_and_nobody_else(&make().await).await;
    trace_contexts_travel_with_commands_and_events(&make().await).await;
}

/// With tracing on, a command and the events (alone or published together) reach their
/// consumers with the trace context they were published with (NATS: in the message headers).
pub async fn trace_contexts_travel_with_commands_and_events(bus: &dyn Bus) {
    crate::trace::enable();
    let trace = |span: &str| bindu_schemas::bus::TraceContext {
        traceparent: format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{span}-01"),
        tracestate: Some("vendor=1".into()),
    };
    let mut durable = bus.consume_events("traced").await.expect("consume events");
    let mut c = command("traced");
    c.trace = Some(trace("00f067aa0ba902b7"));
    bus.publish_commands(vec![c]).await.expect("publish");
    let mut commands = bus.consume_commands().await.expect("consume");
    let d = tokio::time::timeout(WAIT, commands.next())
        .await
        .expect("a command within the time limit")
        .expect("stream open")
        .expect("no error");
    assert_eq!(d.command.trace, Some(trace("00f067aa0ba902b7")));
    d.acker.ack().await.expect("ack");

    let mut one = status_event("traced", 1, TaskState::Submitted);
    one.trace = Some(trace("1111111111111111"));
    bus.publish_events(vec![one]).await.expect("publish");
    let together: Vec<TaskEvent> = [TaskState::Working, TaskState::Completed]
        .into_iter()
        .enumerate()
        .map(|(i, state)| {
            let mut e = status_event("traced", 2 + i as u64, state);
            e.trace = Some(trace("2222222222222222"));
            e
        })
        .collect();
    bus.publish_events(together).await.expect("publish");
    for (seq, span) in [
        (1, "1111111111111111"),
        (2, "2222222222222222"),
        (3, "2222222222222222"),
    ] {
        let item = tokio::time::timeout(WAIT, durable.next())
            .await
            .expect("an event within the time limit")
            .expect("stream open")
            .expect("no error");
        let Consumed::Event(e) = item else {
            panic!("an event, not a notice");
        };
        assert_eq!(e.event.seq, seq);
        assert_eq!(e.event.trace, Some(trace(span)), "event {seq}");
        e.acker.ack().await.expect("ack");
    }
}

/// Shutdown: after `close_intake`, command streams end (an in-process queue once what it
/// holds is taken), so workers finish what they have and stop.
pub async fn closing_intake_ends_command_streams(bus: &dyn Bus) {
    bus.ready().await.expect("ready");
    let mut consumer = bus.consume_commands().await.expect("consumer");
    bus.publish_commands(vec![command("before-close")])
        .await
        .expect("publish");
    let d = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("delivery within the time limit")
        .expect("stream open")
        .expect("delivery");
    assert_eq!(d.command.task_id, "before-close");
    d.acker.ack().await.expect("ack");
    bus.close_intake().await;
    let end = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("the stream ends within the time limit");
    assert!(end.is_none(), "no command after close_intake");
}

async fn next_delivery(stream: &mut DurableEventStream) -> EventDelivery {
    let item = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("event within the time limit")
        .expect("stream open");
    match item {
        Ok(Consumed::Event(d)) => d,
        Ok(Consumed::PushConfigsChanged(n)) => panic!("unexpected push notice for {}", n.task_id),
        Err(e) => panic!("durable consumer failed: {e}"),
    }
}

/// Reads deliveries until none arrives for `quiet`.
async fn drain(stream: &mut DurableEventStream, quiet: Duration) -> Vec<EventDelivery> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(Consumed::Event(d)))) = tokio::time::timeout(quiet, stream.next()).await {
        out.push(d);
        if out.len() > 10_000 {
            break;
        }
    }
    out
}

/// On a bus that orders push-config notices: a durable consumer reads a notice between the
/// events published before and after it; live subscribers, the all-events subscription and
/// replays see only the events. Elsewhere the notice is a no-op.
pub async fn push_notices_reach_durable_consumers_in_order_and_nobody_else(bus: &dyn Bus) {
    let mut consumer = bus.consume_events("notices").await.expect("consume");
    let mut live = bus.subscribe_task("n-1").await.expect("subscribe");
    let mut all = bus.subscribe_all().await.expect("subscribe all");
    bus.publish_events(vec![status_event("n-1", 1, TaskState::Submitted)])
        .await
        .expect("publish");
    bus.push_configs_changed("n-1").await.expect("notice");
    bus.publish_events(vec![status_event("n-1", 2, TaskState::Working)])
        .await
        .expect("publish");
    let mut read = Vec::new();
    for _ in 0..if bus.orders_push_notices() { 3 } else { 2 } {
        let item = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("in time")
            .expect("stream open")
            .expect("no error");
        read.push(match item {
            Consumed::Event(d) => {
                d.acker.ack().await.expect("ack");
                format!("event {}", d.event.seq)
            }
            Consumed::PushConfigsChanged(n) => {
                n.acker.ack().await.expect("ack");
                format!("notice {}", n.task_id)
            }
        });
    }
    let expected: &[&str] = if bus.orders_push_notices() {
        &["event 1", "notice n-1", "event 2"]
    } else {
        &["event 1", "event 2"]
    };
    assert_eq!(read, expected);
    for s in [&mut live, &mut all] {
        assert_eq!([next(s).await.seq, next(s).await.seq], [1, 2]);
    }
    if bus.keeps_history() {
        let mut replay = bus.replay_task("n-1", 0).await.expect("replay");
        assert_eq!(
            [next(&mut replay).await.seq, next(&mut replay).await.seq],
            [1, 2]
        );
    }
}

pub async fn durable_consumers_get_every_event_in_order(bus: &dyn Bus) {
    let mut consumer = bus.consume_events("dispatcher").await.expect("consume");
    let mut expected = Vec::new();
    for seq in 1..=5 {
        let batch: Vec<TaskEvent> = ["a", "b", "c"]
            .iter()
            .map(|t| status_event(t, seq, TaskState::Working))
            .collect();
        expected.extend(batch.iter().map(|e| e.event_id()));
        bus.publish_events(batch).await.expect("publish");
    }
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(d.attempt, 1);
        got.push(d.event.event_id());
        d.acker.ack().await.expect("ack");
    }
    assert_eq!(got, expected, "publish order");
}

pub async fn durable_consumers_resume_after_their_last_ack(bus: &dyn Bus) {
    let mut first = bus.consume_events("resume").await.expect("consume");
    // One publish each: events published together may share one acknowledgement (below).
    for s in 1..=6 {
        bus.publish_events(vec![status_event("r", s, TaskState::Working)])
            .await
            .expect("publish");
    }
    // Ack 1 and 2; take 3 and 4 without acking (a crash mid-delivery); never read 5 and 6.
    for want in 1..=4 {
        let d = next_delivery(&mut first).await;
        assert_eq!(d.event.seq, want);
        if want <= 2 {
            d.acker.ack().await.expect("ack");
        }
    }
    drop(first);
    let mut second = bus.consume_events("resume").await.expect("reopen");
    let again: Vec<u64> = drain(&mut second, Duration::from_secs(2))
        .await
        .iter()
        .map(|d| d.event.seq)
        .collect();
    assert_eq!(again, [3, 4, 5, 6], "unacked events come again, in order");
    // A consumer under another name is independent and starts at new events.
    let mut other = bus.consume_events("other").await.expect("consume");
    bus.publish_events(vec![status_event("r", 7, TaskState::Completed)])
        .await
        .expect("publish");
    assert_eq!(next_delivery(&mut other).await.event.seq, 7);
}

/// Events of one task published in one call reach every reader in order, one by one; a
/// durable consumer that acked only some of them gets the unacked ones again on reopening
/// (and, on a backend that stores them as one message, the acked ones of that call too),
/// never an event of another call that it acked.
pub async fn events_published_together_arrive_in_order_and_come_again_together(bus: &dyn Bus) {
    let mut consumer = bus.consume_events("together").await.expect("consume");
    let mut live = bus.subscribe_task("t").await.expect("subscribe");
    bus.publish_events(vec![status_event("t", 1, TaskState::Submitted)])
        .await
        .expect("publish");
    let run: Vec<TaskEvent> = vec![
        status_event("t", 2, TaskState::Working),
        status_event("t", 3, TaskState::Working),
        status_event("u", 1, TaskState::Submitted),
        status_event("t", 4, TaskState::Completed),
    ];
    bus.announce(run).await.expect("announce");
    for want in 1..=4 {
        assert_eq!(next(&mut live).await.seq, want, "live, in order");
    }
    let mut read = Vec::new();
    for _ in 0..5 {
        let d = next_delivery(&mut consumer).await;
        read.push((d.event.task_id().to_string(), d.event.seq));
        // Ack all but the second event of the call (t/3).
        if !(d.event.task_id() == "t" && d.event.seq == 3) {
            d.acker.ack().await.expect("ack");
        }
    }
    let ids = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(t, s)| (t.to_string(), *s)).collect()
    };
    assert_eq!(
        read,
        ids(&[("t", 1), ("t", 2), ("t", 3), ("u", 1), ("t", 4)]),
        "durable, in publish order"
    );
    drop(consumer);
    let mut again = bus.consume_events("together").await.expect("reopen");
    let again: Vec<(String, u64)> = drain(&mut again, Duration::from_secs(2))
        .await
        .iter()
        .map(|d| (d.event.task_id().to_string(), d.event.seq))
        .collect();
    // The unacked t/3 comes again; besides it, in order, at most t/2 (acked, but stored in
    // one message with t/3 by a backend that batches a task's consecutive events) and the
    // events acked after it (at least once); never t/1, acked before anything unacked.
    assert!(
        again.contains(&("t".to_string(), 3)),
        "t/3 again: {again:?}"
    );
    let allowed = ids(&[("t", 2), ("t", 3), ("u", 1), ("t", 4)]);
    let mut rest = allowed.iter();
    assert!(
        again.iter().all(|e| rest.any(|a| a == e)),
        "unacked events come again, in order, with at most their message's acked ones and later ones: {again:?}"
    );
}

/// A nacked event comes again even when later events are acked meanwhile (an ack never
/// covers an event handed back); once it is acked too, a reopened consumer gets nothing.
pub async fn a_nacked_event_comes_again_after_later_ones_are_acked(bus: &dyn Bus) {
    let mut consumer = bus.consume_events("nacks").await.expect("consume");
    for s in 1..=3 {
        bus.publish_events(vec![status_event("k", s, TaskState::Working)])
            .await
            .expect("publish");
    }
    for want in 1..=3 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!((d.event.seq, d.attempt), (want, 1));
        if want == 1 {
            d.acker
                .nack(Duration::from_millis(200))
                .await
                .expect("nack");
        } else {
            d.acker.ack().await.expect("ack");
        }
    }
    let again = next_delivery(&mut consumer).await;
    assert_eq!(
        (again.event.seq, again.attempt),
        (1, 2),
        "the nacked event, again"
    );
    again.acker.ack().await.expect("ack");
    drop(consumer);
    let mut reopened = bus.consume_events("nacks").await.expect("reopen");
    let left: Vec<u64> = drain(&mut reopened, Duration::from_secs(1))
        .await
        .iter()
        .map(|d| d.event.seq)
        .collect();
    assert!(left.is_empty(), "everything was acked: {left:?}");
}

/// A reader that acks and stops, reopened at once (as a restarted dispatcher is), gets none
/// of what it acked again: twenty times over, one event each, stopping right after the ack
/// or a moment later, so a stop that races its last ack shows.
pub async fn acks_made_just_before_a_reader_stops_hold_when_it_reopens(bus: &dyn Bus) {
    for seq in 1..=20 {
        let mut consumer = bus.consume_events("restarts").await.expect("consume");
        let again: Vec<u64> = drain(&mut consumer, Duration::from_millis(100))
            .await
            .iter()
            .map(|d| d.event.seq)
            .collect();
        assert!(
            again.is_empty(),
            "round {seq}: acked before, delivered again: {again:?}"
        );
        bus.publish_events(vec![status_event("r", seq, TaskState::Working)])
            .await
            .expect("publish");
        let d = next_delivery(&mut consumer).await;
        assert_eq!(d.event.seq, seq);
        d.acker.ack().await.expect("ack");
        if seq % 2 == 0 {
            // Long enough for a periodic flush to go out first: the stop then has nothing
            // new to ack, only that flush to confirm.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn publishing_never_waits_for_a_durable_consumer(bus: &dyn Bus) {
    let _idle = bus.consume_events("idle").await.expect("consume");
    let publish = async {
        for chunk in 0..20u64 {
            let batch = (0..50)
                .map(|i| status_event(&format!("p{i}"), chunk + 1, TaskState::Working))
                .collect();
            bus.publish_events(batch).await.expect("publish");
        }
    };
    tokio::time::timeout(WAIT, publish)
        .await
        .expect("publishes complete while the consumer reads nothing");
}

pub async fn commands_go_to_exactly_one_consumer(bus: &dyn Bus) {
    bus.ready().await.expect("ready");
    let mut c1 = bus.consume_commands().await.expect("consumer 1");
    let mut c2 = bus.consume_commands().await.expect("consumer 2");
    let ids: Vec<String> = (0..50).map(|i| format!("task-{i}")).collect();
    bus.publish_commands(ids.iter().map(|id| command(id)).collect())
        .await
        .expect("publish");
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < ids.len() && tokio::time::Instant::now() < deadline {
        let d = tokio::select! {
            Some(d) = c1.next() => d,
            Some(d) = c2.next() => d,
            _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
        }
        .expect("delivery");
        assert!(d.attempt >= 1);
        assert!(
            seen.insert(d.command.task_id.clone()),
            "delivered twice: {}",
            d.command.task_id
        );
        d.acker.ack().await.expect("ack");
    }
    assert_eq!(seen.len(), ids.len(), "every command delivered");
}

pub async fn task_events_reach_task_subscribers_in_order(bus: &dyn Bus) {
    let mut a = bus.subscribe_task("t-1").await.expect("subscribe");
    let mut b = bus.subscribe_task("t-1").await.expect("subscribe");
    let mut other = bus.subscribe_task("t-2").await.expect("subscribe");
    bus.publish_events(vec![
        status_event("t-1", 1, TaskState::Submitted),
        status_event("t-1", 2, TaskState::Working),
        status_event("t-2", 1, TaskState::Submitted),
    ])
    .await
    .expect("publish");
    bus.publish_events(vec![status_event("t-1", 3, TaskState::Completed)])
        .await
        .expect("publish");
    for s in [&mut a, &mut b] {
        let seqs = [next(s).await.seq, next(s).await.seq, next(s).await.seq];
        assert_eq!(seqs, [1, 2, 3]);
    }
    let e = next(&mut other).await;
    assert_eq!(e.task_id(), "t-2");
}

pub async fn all_events_subscription(bus: &dyn Bus) {
    let mut all = bus.subscribe_all().await.expect("subscribe all");
    bus.publish_events(vec![
        status_event("x", 1, TaskState::Submitted),
        status_event("y", 1, TaskState::Submitted),
    ])
    .await
    .expect("publish");
    let got = [
        next(&mut all).await.task_id().to_string(),
        next(&mut all).await.task_id().to_string(),
    ];
    assert_eq!(got, ["x", "y"]);
}

pub async fn cancel_signals_reach_listeners(bus: &dyn Bus) {
    let mut signals = bus.cancel_signals().await.expect("listen");
    bus.signal_cancel("victim").await.expect("signal");
    let got = tokio::time::timeout(WAIT, signals.next())
        .await
        .expect("in time");
    assert_eq!(got.as_deref(), Some("victim"));
}
