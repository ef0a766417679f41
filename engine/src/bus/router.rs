//! In-process fan-out of task events: one broadcast channel per watched task, created on
//! demand (only tasks somebody watches cost anything) and removed with its last subscriber.
//! The memory bus feeds it directly; the NATS bus feeds it from one wildcard subscription
//! per process, so a stream or a blocking send never costs a subscription on the server.

use std::sync::Arc;

use bindu_schemas::bus::TaskEvent;
use dashmap::DashMap;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::{BusError, EventStream};

/// Events buffered per task subscriber before it counts as lagging. A lagging reader
/// resynchronises from a task snapshot (see `Bus::subscribe_task`), so this bounds memory,
/// not correctness: every open stream holds one such channel, allocated whole (16 slots
/// ≈ 0.6 KiB; 64 took 2.5 KiB of the 16 KiB budget of an open SSE stream).
pub(crate) const TASK_BUFFER: usize = 16;

type Channels = DashMap<String, broadcast::Sender<Arc<TaskEvent>>>;

#[derive(Clone, Default)]
pub(crate) struct TaskRouter {
    tasks: Arc<Channels>,
}

impl TaskRouter {
    /// Live events sent under `key` from now on.
    pub(crate) fn subscribe(&self, key: &str) -> EventStream {
        let rx = self
            .tasks
            .entry(key.to_string())
            .or_insert_with(|| broadcast::channel(TASK_BUFFER).0)
            .subscribe();
        let guard = Unsubscribe {
            tasks: self.tasks.clone(),
            key: key.to_string(),
        };
        event_stream(rx, Some(guard))
    }

    /// Whether anyone watches `key`.
    #[cfg_attr(not(any(feature = "nats", feature = "redis")), allow(dead_code))]
    pub(crate) fn watched(&self, key: &str) -> bool {
        self.tasks.contains_key(key)
    }

    /// Hands `event` to the subscribers of `key`, if any.
    pub(crate) fn send(&self, key: &str, event: &Arc<TaskEvent>) {
        if let Some(tx) = self.tasks.get(key) {
            // No receiver left is fine: the subscriber went away.
            let _ = tx.send(event.clone());
        }
    }
}

/// Removes a task's channel when its last subscriber goes away.
struct Unsubscribe {
    tasks: Arc<Channels>,
    key: String,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        // Runs after the subscription's receiver was dropped (field order below).
        self.tasks
            .remove_if(&self.key, |_, tx| tx.receiver_count() == 0);
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

/// A stream over a broadcast receiver (Lagged reported as [`BusError::Lagged`]).
pub(crate) fn broadcast_stream(rx: broadcast::Receiver<Arc<TaskEvent>>) -> EventStream {
    event_stream(rx, None)
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
