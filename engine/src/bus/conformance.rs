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
    }
}

pub fn status_event(task_id: &str, seq: u64, state: TaskState) -> TaskEvent {
    TaskEvent {
        seq,
        timestamp: crate::time::now_rfc3339(),
        event: EventBody::Status(TaskStatusUpdateEvent {
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
    }
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
    task_events_reach_task_subscribers_in_order(&make().await).await;
    all_events_subscription(&make().await).await;
    cancel_signals_reach_listeners(&make().await).await;
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
