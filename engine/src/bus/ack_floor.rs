//! Acknowledgements of a durable NATS event consumer, sent cumulatively.
//!
//! The consumer runs with `AckPolicy::All`: acking the message at stream sequence `n` acks
//! every earlier one. Its reader (the webhook dispatcher) handles events in any order, so
//! the [`AckFloor`] tracks the messages delivered and not yet handled, and acks only its
//! floor (the newest message with every message before it handled), at most once per
//! [`FLUSH_EVERY`]: a few acks a second instead of one per event. A message nacked stays
//! below the floor until its redelivery is handled, so a cumulative ack never covers it.
//! What a crash loses is at most the last interval's acks: those events come again (at
//! least once, as the port promises).
//!
//! The events one message carries share its acknowledgement ([`PartAcker`]): the message
//! counts as handled once all of them are.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, message::Acker as JsAcker};
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{Acker, BusError};

/// Longest a handled event waits for its cumulative ack.
pub(super) const FLUSH_EVERY: Duration = Duration::from_millis(20);

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// Whether a flush waits for the server to confirm its ack. The last flush of a reader
/// does: the server applies acks apart from the requests of the same connection, so a
/// reader reopening the consumer right after (it reads the ack floor, see `nats::durable`)
/// could otherwise read the floor from before that ack and deliver those events again.
#[derive(Clone, Copy)]
enum Confirm {
    No,
    Yes,
}

/// The messages of one consumer delivered and not yet acked.
pub(super) struct AckFloor {
    state: Mutex<FloorState>,
    wake: tokio::sync::Notify,
}

#[derive(Default)]
struct FloorState {
    /// Stream sequence → (handled, the message's acker), for messages above the acked floor.
    open: BTreeMap<u64, (bool, Arc<JsAcker>)>,
    /// The newest message with everything up to it handled, not acked yet.
    floor: Option<Arc<JsAcker>>,
    /// The last floor acked without waiting for the server: a reader's last flush confirms
    /// it when nothing newer is left to ack.
    unconfirmed: Option<Arc<JsAcker>>,
}

impl AckFloor {
    /// A tracker and its flusher; the flusher acks what is left and stops once `stop` fires.
    pub(super) fn start(stop: CancellationToken) -> (Arc<AckFloor>, tokio::task::JoinHandle<()>) {
        let floor = Arc::new(AckFloor {
            state: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        });
        let flusher = floor.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = flusher.wake.notified() => {}
                    _ = stop.cancelled() => {
                        flusher.flush(Confirm::Yes).await;
                        return;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(FLUSH_EVERY) => {}
                    _ = stop.cancelled() => {}
                }
                let last = stop.is_cancelled();
                flusher
                    .flush(if last { Confirm::Yes } else { Confirm::No })
                    .await;
                if last {
                    return;
                }
            }
        });
        (floor, task)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FloorState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a delivered message (again, for a redelivery) as not handled.
    pub(super) fn delivered(&self, stream_seq: u64, acker: JsAcker) -> Arc<JsAcker> {
        let acker = Arc::new(acker);
        self.lock().open.insert(stream_seq, (false, acker.clone()));
        acker
    }

    /// The delivery `acker` came with is handled: the floor moves past its message once
    /// everything before it is. (A stale delivery's report, after the message came again,
    /// changes nothing.)
    pub(super) fn handled(&self, stream_seq: u64, acker: &Arc<JsAcker>) {
        let mut state = self.lock();
        match state.open.get_mut(&stream_seq) {
            Some(entry) if Arc::ptr_eq(&entry.1, acker) => entry.0 = true,
            _ => return,
        }
        let mut moved = false;
        while let Some(entry) = state.open.first_entry() {
            if !entry.get().0 {
                break;
            }
            let (_, acker) = entry.remove();
            state.floor = Some(acker);
            moved = true;
        }
        drop(state);
        if moved {
            self.wake.notify_one();
        }
    }

    async fn flush(&self, confirm: Confirm) {
        let floor = {
            let mut state = self.lock();
            match confirm {
                Confirm::No => state.floor.take(),
                // Acking a message again is harmless; its answer says every ack before it
                // has been applied.
                Confirm::Yes => state.floor.take().or_else(|| state.unconfirmed.take()),
            }
        };
        if let Some(acker) = floor {
            let acked = match confirm {
                Confirm::No => acker.ack().await,
                Confirm::Yes => acker.double_ack().await,
            };
            if acked.is_ok() && matches!(confirm, Confirm::No) {
                self.lock().unconfirmed = Some(acker);
            }
            if let Err(e) = acked {
                tracing::debug!(error = %e, "could not ack the event consumer's floor; its events may come again");
            }
        }
    }
}

/// One message's acknowledgement through the consumer's [`AckFloor`], shared by the events
/// it carried.
pub(super) struct MessageAck {
    floor: Arc<AckFloor>,
    stream_seq: u64,
    acker: Arc<JsAcker>,
    /// Events of the message not acked yet.
    pending: AtomicUsize,
}

impl MessageAck {
    pub(super) fn new(
        floor: Arc<AckFloor>,
        stream_seq: u64,
        acker: JsAcker,
        events: usize,
    ) -> Arc<Self> {
        let acker = floor.delivered(stream_seq, acker);
        Arc::new(MessageAck {
            floor,
            stream_seq,
            acker,
            pending: AtomicUsize::new(events),
        })
    }

    /// Handled without being read (an unreadable message).
    pub(super) fn skip(&self) {
        self.floor.handled(self.stream_seq, &self.acker);
    }
}

/// Acks one event of a message: the message is handled with its last event; a nack or a
/// progress report concerns the whole message (its events come again: at least once).
pub(super) struct PartAcker(pub(super) Arc<MessageAck>);

#[async_trait]
impl Acker for PartAcker {
    async fn ack(&self) -> Result<(), BusError> {
        let last = self
            .0
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            == Ok(1);
        if last {
            self.0.floor.handled(self.0.stream_seq, &self.0.acker);
        }
        Ok(())
    }
    async fn nack(&self, delay: Duration) -> Result<(), BusError> {
        self.0
            .acker
            .ack_with(jetstream::AckKind::Nak(Some(delay)))
            .await
            .map_err(unavailable)
    }
    async fn in_progress(&self) -> Result<(), BusError> {
        self.0
            .acker
            .ack_with(jetstream::AckKind::Progress)
            .await
            .map_err(unavailable)
    }
}
