//! In-process bus: a bounded MPMC work queue, per-task broadcast channels created on demand
//! (only tasks somebody watches cost anything), one agent-wide broadcast, one cancel
//! broadcast, and one bounded log per durable event consumer ([`super::durable_log`]).
//! Commands live only as long as the process (at-most-once across restarts); use the NATS
//! backend for durable delivery.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bindu_schemas::bus::{TaskCommand, TaskEvent};
use dashmap::DashMap;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::*;

/// Events buffered per task subscriber before it counts as lagging. A lagging reader
/// resynchronises from a task snapshot (see `Bus::subscribe_task`), so this bounds memory,
/// not correctness: every open stream holds one such channel, allocated whole (16 slots
/// ≈ 0.6 KiB; 64 took 2.5 KiB of the 16 KiB budget of an open SSE stream).
const TASK_BUFFER: usize = 16;
const ALL_BUFFER: usize = 8192;

pub struct MemoryBus {
    commands_tx: async_channel::Sender<TaskCommand>,
    commands_rx: async_channel::Receiver<TaskCommand>,
    tasks: Arc<DashMap<String, broadcast::Sender<Arc<TaskEvent>>>>,
    all: broadcast::Sender<Arc<TaskEvent>>,
    cancels: broadcast::Sender<String>,
    durable: super::durable_log::DurableLogs,
}

impl MemoryBus {
    /// `queue_capacity` bounds the commands waiting for a worker.
    pub fn new(queue_capacity: usize) -> Self {
        let (commands_tx, commands_rx) = async_channel::bounded(queue_capacity.max(1));
        MemoryBus {
            commands_tx,
            commands_rx,
            tasks: Arc::new(DashMap::new()),
            all: broadcast::channel(ALL_BUFFER).0,
            cancels: broadcast::channel(1024).0,
            durable: super::durable_log::DurableLogs::new(super::durable_log::DEFAULT_CAPACITY),
        }
    }

    /// Bounds each durable consumer's log to `capacity` events (the oldest are dropped, and
    /// counted as lag when unread).
    pub fn with_durable_capacity(mut self, capacity: usize) -> Self {
        self.durable = super::durable_log::DurableLogs::new(capacity);
        self
    }

    /// Commands waiting for a worker.
    pub fn queued(&self) -> usize {
        self.commands_tx.len()
    }

    /// Closes the work queue: consumers end once it is drained.
    pub fn close(&self) {
        self.commands_tx.close();
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new(65_536)
    }
}

struct NoopAcker;

#[async_trait]
impl Acker for NoopAcker {
    async fn ack(&self) -> Result<(), BusError> {
        Ok(())
    }
    async fn nack(&self, _delay: Duration) -> Result<(), BusError> {
        // In-process commands are not redelivered; the worker records the failure instead.
        Ok(())
    }
    async fn in_progress(&self) -> Result<(), BusError> {
        Ok(())
    }
}

/// Removes a task's channel when its last subscriber goes away.
struct Unsubscribe {
    tasks: Arc<DashMap<String, broadcast::Sender<Arc<TaskEvent>>>>,
    task_id: String,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        // Runs after the subscription's receiver was dropped (field order below).
        self.tasks
            .remove_if(&self.task_id, |_, tx| tx.receiver_count() == 0);
    }
}

/// A stream of broadcast events; fields drop in order, so the receiver goes before the guard.
struct Subscription {
    inner: BroadcastStream<Arc<TaskEvent>>,
    _guard: Option<Unsubscribe>,
}

impl futures::Stream for Subscription {
    type Item = Result<Arc<TaskEvent>, BusError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx).map(|item| {
            item.map(|r| r.map_err(|BroadcastStreamRecvError::Lagged(n)| BusError::Lagged(n)))
        })
    }
}

fn event_stream(
    rx: broadcast::Receiver<Arc<TaskEvent>>,
    guard: Option<Unsubscribe>,
) -> EventStream {
    Subscription {
        inner: BroadcastStream::new(rx),
        _guard: guard,
    }
    .boxed()
}

#[async_trait]
impl Bus for MemoryBus {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ready(&self) -> Result<(), BusError> {
        if self.commands_tx.is_closed() {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }

    async fn publish_commands(&self, commands: Vec<TaskCommand>) -> Result<(), BusError> {
        for c in commands {
            self.commands_tx
                .send(c)
                .await
                .map_err(|_| BusError::Closed)?;
        }
        Ok(())
    }

    async fn consume_commands(&self) -> Result<CommandStream, BusError> {
        Ok(self
            .commands_rx
            .clone()
            .map(|command| {
                Ok(Delivery {
                    command,
                    attempt: 1,
                    acker: Box::new(NoopAcker),
                })
            })
            .boxed())
    }

    async fn publish_events(&self, events: Vec<TaskEvent>) -> Result<(), BusError> {
        let events: Vec<Arc<TaskEvent>> = events.into_iter().map(Arc::new).collect();
        self.durable.publish(&events);
        for event in events {
            if let Some(tx) = self.tasks.get(event.task_id()) {
                // No receiver left is fine: the subscriber went away.
                let _ = tx.send(event.clone());
            }
            let _ = self.all.send(event);
        }
        Ok(())
    }

    async fn subscribe_task(&self, task_id: &str) -> Result<EventStream, BusError> {
        let rx = self
            .tasks
            .entry(task_id.to_string())
            .or_insert_with(|| broadcast::channel(TASK_BUFFER).0)
            .subscribe();
        let guard = Unsubscribe {
            tasks: self.tasks.clone(),
            task_id: task_id.to_string(),
        };
        Ok(event_stream(rx, Some(guard)))
    }

    async fn subscribe_all(&self) -> Result<EventStream, BusError> {
        Ok(event_stream(self.all.subscribe(), None))
    }

    async fn consume_events(&self, durable_name: &str) -> Result<DurableEventStream, BusError> {
        Ok(self.durable.open(durable_name))
    }

    async fn signal_cancel(&self, task_id: &str) -> Result<(), BusError> {
        let _ = self.cancels.send(task_id.to_string());
        Ok(())
    }

    async fn cancel_signals(&self) -> Result<CancelStream, BusError> {
        Ok(BroadcastStream::new(self.cancels.subscribe())
            .filter_map(|r| async move { r.ok() })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run_all(|| async { MemoryBus::new(1024) }).await;
    }

    #[tokio::test]
    async fn a_durable_consumer_that_falls_behind_lags_without_blocking_publishers() {
        let bus = MemoryBus::default().with_durable_capacity(8);
        let mut events = bus.consume_events("slow").await.unwrap();
        for seq in 1..=20 {
            bus.publish_events(vec![super::super::conformance::status_event(
                "t",
                seq,
                bindu_schemas::TaskState::Working,
            )])
            .await
            .unwrap();
        }
        match events.next().await {
            Some(Err(BusError::Lagged(n))) => assert_eq!(n, 12),
            _ => panic!("expected a lag report"),
        }
        let first = events.next().await.unwrap().unwrap();
        assert_eq!(first.event.seq, 13, "the newest events are kept");
    }

    #[tokio::test]
    async fn task_channels_are_dropped_with_their_last_subscriber() {
        let bus = MemoryBus::default();
        let a = bus.subscribe_task("t").await.unwrap();
        let b = bus.subscribe_task("t").await.unwrap();
        drop(a);
        assert_eq!(bus.tasks.len(), 1);
        drop(b);
        assert_eq!(bus.tasks.len(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_applies_back_pressure() {
        let bus = MemoryBus::new(2);
        let cmd = super::super::conformance::command("t");
        bus.publish_commands(vec![cmd.clone(), cmd.clone()])
            .await
            .unwrap();
        let third =
            tokio::time::timeout(Duration::from_millis(50), bus.publish_commands(vec![cmd])).await;
        assert!(third.is_err(), "publish waits while the queue is full");
        assert_eq!(bus.queued(), 2);
    }
}
