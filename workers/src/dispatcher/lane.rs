//! One task's lane: its events in sequence order, each handed to the queue of every
//! webhook of the task ([`super::queue`]), which deliver independently.
//!
//! An event at or below the last one handed out is a duplicate (a redelivery): acked with
//! the original, or at once once that is done. Copies of an event still waiting are merged.
//! When the next event in line is missing (two publishers raced), the lane waits up to
//! `gap_wait` for it, then goes on with what it has (counted in `bindu_push_sequence_gaps`);
//! a jump past the numbers a run may use (a cancel recorded beside a running handler) is not
//! a gap.
//!
//! An event is acked on the bus once each of its notifications is delivered, given up (a
//! dead letter) or parked ([`Ticket`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bindu_engine::store::{Access, DeadLetter, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::delivery::Target;
use super::queue::{self, Item, QueueHandle};
use super::{notification, GlobalWebhook, Held, Shared, GLOBAL_CONFIG_ID, STORE_BACKOFF};

/// What the dispatcher's loop sends a lane.
pub(crate) enum LaneInput {
    Event(Held),
    /// Notifications of the task an earlier run parked (oldest first).
    Resume(Vec<DeadLetter>),
}

/// What a lane and the dispatcher's loop share.
#[derive(Default)]
pub(crate) struct LaneState {
    /// Inputs sent and not yet released by the lane (an event until it is acked).
    pub outstanding: AtomicUsize,
    /// Last sequence number handed out (0: none yet).
    pub last_done: AtomicU64,
    /// Notifications in the lane's webhook queues.
    pub queued: Arc<AtomicUsize>,
}

/// One event's acknowledgement, shared by its notifications: the event (and every copy of
/// it that came meanwhile) is acked once each of them is done with it.
pub(crate) struct Ticket {
    task_id: String,
    seq: u64,
    /// `None` once acked.
    copies: Mutex<Option<Vec<Held>>>,
    parts: AtomicUsize,
    lane: Arc<LaneState>,
}

impl Ticket {
    fn copies(&self) -> std::sync::MutexGuard<'_, Option<Vec<Held>>> {
        self.copies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One notification is done with the event; the last one acks it.
    pub async fn release(&self) {
        if self.parts.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let copies = self.copies().take().unwrap_or_default();
        for held in &copies {
            if let Err(e) = held.delivery.acker.ack().await {
                // Delivered again after a restart: a duplicate with the same eventId.
                tracing::warn!(task_id = %self.task_id, seq = self.seq, error = %e, "could not ack a handled event");
            }
        }
        self.lane
            .outstanding
            .fetch_sub(copies.len(), Ordering::SeqCst);
    }

    /// Adds a copy of the event that came again, to be acked with it; hands it back when
    /// the event is acked already.
    fn attach(&self, held: Held) -> Option<Held> {
        match self.copies().as_mut() {
            Some(copies) => {
                copies.push(held);
                None
            }
            None => Some(held),
        }
    }

    fn acked(&self) -> bool {
        self.copies().is_none()
    }
}

struct Lane {
    shared: Arc<Shared>,
    task_id: String,
    /// The webhooks read for the events that were waiting at the time (the highest of
    /// their sequence numbers): those events need not read them again.
    targets: Option<(Vec<Target>, u64)>,
    done: Option<u64>,
    pending: BTreeMap<u64, Vec<Held>>,
    /// Events handed out, until acked.
    tickets: BTreeMap<u64, Arc<Ticket>>,
    /// By (config id, URL).
    queues: HashMap<(String, String), QueueHandle>,
    /// The last sequence number resumed from the store, by webhook queue.
    resumed: HashMap<(String, String), u64>,
    /// The queues' tasks: they end with the lane.
    running: JoinSet<()>,
    state: Arc<LaneState>,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    task_id: String,
    mut rx: mpsc::UnboundedReceiver<LaneInput>,
    start_after: Option<u64>,
    state: Arc<LaneState>,
) {
    let mut lane = Lane {
        shared: shared.clone(),
        task_id,
        targets: None,
        done: start_after,
        pending: BTreeMap::new(),
        tickets: BTreeMap::new(),
        queues: HashMap::new(),
        resumed: HashMap::new(),
        running: JoinSet::new(),
        state,
    };
    let stop = shared.stop.clone();
    loop {
        if lane.pending.is_empty() {
            let next = tokio::select! {
                h = rx.recv() => h,
                _ = stop.cancelled() => return,
            };
            match next {
                Some(input) => {
                    if !lane.accept(input).await {
                        return;
                    }
                }
                None => return,
            }
        }
        while let Ok(input) = rx.try_recv() {
            if !lane.accept(input).await {
                return;
            }
        }
        if !lane.next_is_ready() {
            let deadline = tokio::time::Instant::now() + shared.options.gap_wait;
            while !lane.next_is_ready() {
                tokio::select! {
                    h = rx.recv() => match h {
                        Some(input) => if !lane.accept(input).await { return },
                        None => return,
                    },
                    _ = tokio::time::sleep_until(deadline) => {
                        if let (Some(done), Some(next)) = (lane.done, lane.pending.keys().next()) {
                            tracing::warn!(task_id = %lane.task_id, after = done, next, "task events missing; delivering the later ones");
                        }
                        shared.metrics.gaps.inc();
                        break;
                    }
                    _ = stop.cancelled() => return,
                }
            }
        }
        let Some((seq, copies)) = lane.pending.pop_first() else {
            continue;
        };
        if !lane.handle(seq, copies).await {
            return;
        }
    }
}

impl Lane {
    /// Whether the first waiting event directly follows the last finished one (or nothing
    /// is known of the task yet).
    fn next_is_ready(&self) -> bool {
        match (self.done, self.pending.keys().next()) {
            (_, None) => true,
            (None, Some(_)) => true,
            // A transition recorded beside a run (a cancel) skips ahead on purpose.
            (Some(done), Some(&next)) => {
                next <= done + 1 || next > done + bindu_engine::store::RUN_SEQ_RESERVE / 2
            }
        }
    }

    /// False on shutdown.
    async fn accept(&mut self, input: LaneInput) -> bool {
        let held = match input {
            LaneInput::Event(held) => held,
            LaneInput::Resume(letters) => {
                let resumed = self.resume(letters).await;
                self.state.outstanding.fetch_sub(1, Ordering::SeqCst);
                return resumed;
            }
        };
        let seq = held.delivery.event.seq;
        if self.done.is_some_and(|d| seq <= d) {
            let held = match self.tickets.get(&seq) {
                Some(ticket) => match ticket.attach(held) {
                    None => return true,
                    Some(held) => held,
                },
                None => held,
            };
            if let Err(e) = held.delivery.acker.ack().await {
                tracing::warn!(task_id = %self.task_id, seq, error = %e, "could not ack a duplicate event");
            }
            self.state.outstanding.fetch_sub(1, Ordering::SeqCst);
            return true;
        }
        self.pending.entry(seq).or_default().push(held);
        true
    }

    /// Hands one event to the queue of every webhook of the task; false when interrupted
    /// by shutdown.
    async fn handle(&mut self, seq: u64, copies: Vec<Held>) -> bool {
        let Some(first) = copies.first() else {
            return true;
        };
        let event = first.delivery.event.clone();
        if let Ok(at) = chrono::DateTime::parse_from_rfc3339(&event.timestamp) {
            let lag = chrono::Utc::now() - at.with_timezone(&chrono::Utc);
            self.shared
                .metrics
                .queue_lag
                .set(lag.to_std().unwrap_or(Duration::ZERO).as_secs_f64());
        }
        // Events already waiting when the webhooks were read share that reading (as if read
        // back to back); a later event reads them again, so a config set meanwhile counts.
        let targets = match &self.targets {
            Some((t, upto)) if seq <= *upto => t.clone(),
            _ => {
                let upto = self
                    .pending
                    .keys()
                    .next_back()
                    .copied()
                    .unwrap_or(seq)
                    .max(seq);
                let Some(t) = self.targets().await else {
                    return false;
                };
                self.targets = Some((t.clone(), upto));
                t
            }
        };
        let ticket = Arc::new(Ticket {
            task_id: self.task_id.clone(),
            seq,
            copies: Mutex::new(Some(copies)),
            parts: AtomicUsize::new(targets.len().max(1)),
            lane: self.state.clone(),
        });
        self.done = Some(seq);
        self.state.last_done.store(seq, Ordering::SeqCst);
        if targets.is_empty() {
            ticket.release().await;
            return true;
        }
        // Each webhook gets the payload of the version that configured it; each shape is
        // built once, and only when a webhook wants it.
        let (mut v03, mut v10): (Option<Arc<str>>, Option<Arc<str>>) = (None, None);
        let mut had = 0;
        for target in targets {
            let body = if target.v10 {
                v10.get_or_insert_with(|| notification::body_v10(&event).into())
            } else {
                v03.get_or_insert_with(|| notification::body(&event).into())
            }
            .clone();
            let mut item = Item::new(seq, event.event_id(), body, target, ticket.clone());
            item.trace = event.trace.clone();
            if !self.enqueue(item) {
                had += 1;
            }
        }
        for _ in 0..had {
            ticket.release().await;
        }
        self.tickets.insert(seq, ticket);
        while let Some(entry) = self.tickets.first_entry() {
            if !entry.get().acked() {
                break;
            }
            entry.remove();
        }
        true
    }

    /// Sends `item` to its webhook's queue (started if needed); queues left idle end. False
    /// when the webhook had this event already: it was parked by an earlier run (resumed
    /// before the bus delivered the event again). A webhook's parked notifications come
    /// before those it still held on the bus, so every event up to the last one resumed is
    /// such a copy.
    fn enqueue(&mut self, item: Item) -> bool {
        self.queues.retain(|_, q| q.len.load(Ordering::SeqCst) > 0);
        while self.running.try_join_next().is_some() {}
        let key = (item.target.config_id.clone(), item.target.url.clone());
        if item.ticket.is_some() && self.resumed.get(&key).is_some_and(|&s| item.seq <= s) {
            return false;
        }
        if item.ticket.is_none() {
            let last = self.resumed.entry(key.clone()).or_default();
            *last = (*last).max(item.seq);
        }
        let queue = self.queues.entry(key).or_insert_with(|| {
            queue::spawn(
                self.shared.clone(),
                self.task_id.clone(),
                &item.target.url,
                self.state.queued.clone(),
                &mut self.running,
            )
        });
        queue.len.fetch_add(1, Ordering::SeqCst);
        self.state.queued.fetch_add(1, Ordering::SeqCst);
        if let Err(mpsc::error::SendError(item)) = queue.tx.send(item) {
            // The queue ended (shutdown): the event stays unacked and comes again later.
            queue.len.fetch_sub(1, Ordering::SeqCst);
            self.state.queued.fetch_sub(1, Ordering::SeqCst);
            drop(item);
        }
        true
    }

    /// Queues the notifications an earlier run parked, to the webhooks as configured now
    /// (as a replay would); a letter whose webhook is gone is given up. False on shutdown.
    async fn resume(&mut self, letters: Vec<DeadLetter>) -> bool {
        let Some(targets) = self.targets().await else {
            return false;
        };
        let global = self
            .shared
            .options
            .global
            .as_ref()
            .map(GlobalWebhook::target);
        for letter in letters {
            let target = if letter.config_id == GLOBAL_CONFIG_ID {
                global.as_ref()
            } else {
                targets.iter().find(|t| t.config_id == letter.config_id)
            };
            match target {
                Some(target) => {
                    self.enqueue(Item::resumed(letter, target.clone()));
                }
                None => {
                    let error = format!(
                        "webhook {} of task {} is no longer configured",
                        letter.config_id, letter.task_id
                    );
                    let outcome = Err((letter.attempts, error));
                    if !self.shared.finish(&self.task_id, &letter.id, outcome).await {
                        return false;
                    }
                    self.shared.metrics.dead_letters.inc();
                }
            }
        }
        true
    }

    /// The task's webhooks: its push configs, else the global webhook. Retries while the
    /// store is unavailable; `None` when shutdown interrupts.
    async fn targets(&self) -> Option<Vec<Target>> {
        let global = || {
            self.shared
                .options
                .global
                .iter()
                .map(GlobalWebhook::target)
                .collect::<Vec<_>>()
        };
        let read = || async {
            match self
                .shared
                .store
                .list_push_configs(&self.task_id, Access::Internal)
                .await
            {
                Ok(configs) if !configs.is_empty() => Ok(configs
                    .into_iter()
                    .map(|c| Target {
                        v10: c.wants_v10(),
                        config_id: c.id.unwrap_or_default(),
                        url: c.url,
                        token: c.token,
                    })
                    .collect()),
                Ok(_) | Err(StoreError::NotFound(_)) => Ok(global()),
                Err(e) => Err(e),
            }
        };
        let warn = |e: &StoreError, _| tracing::warn!(task_id = %self.task_id, error = %e, "cannot read push configs; retrying");
        // The deadline is unbounded: only shutdown ends the retries.
        STORE_BACKOFF
            .run_cancellable(read, warn, &self.shared.stop)
            .await
            .and_then(Result::ok)
    }
}
