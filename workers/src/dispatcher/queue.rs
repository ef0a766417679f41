//! One webhook's queue of one task's notifications: delivered one at a time, in sequence
//! order, whatever the task's other webhooks do.
//!
//! A notification holds its share of the task event on the bus (unacknowledged) only while
//! it is quick. The queue's waiting notifications are **parked** (each recorded as a
//! `retrying` dead letter, then its share of the event released, so neither the bus's window
//! nor the dispatcher's in-flight budget waits for them) when:
//! - an attempt fails and must be retried: the back-off never holds the bus;
//! - the oldest of them has waited one attempt timeout (`PUSH__TIMEOUT`) undelivered;
//! - the destination is failing (its latest answer asked for a retry), or holds more than
//!   `max_pending_per_destination` notifications on the bus;
//! - a new one comes while the queue's first notification waits to retry.
//!
//! Parking always takes every unacknowledged notification of the queue, so a queue is
//! parked notifications, then unacknowledged ones, in sequence order. That order survives a
//! crash: the parked ones come back from the store before the bus delivers the others again.
//!
//! Parked notifications stay in the queue and are posted from memory when their turn comes
//! (at once, unless they wait to retry); delivered or given up, their letter says so. A
//! destination keeps at most `max_parked_per_destination` parked: a notification to park
//! past that becomes a dead letter at once (outcome `overflow`, for `bindu webhooks
//! replay`).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bindu_engine::store::DeadLetter;
use futures::future::OptionFuture;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::delivery::{Attempt, Counted, DestinationRef, Target};
use super::lane::Ticket;
use super::Shared;
use tracing::Instrument;

/// One notification: one event for one webhook.
pub(crate) struct Item {
    pub seq: u64,
    pub event_id: String,
    pub body: Arc<str>,
    pub target: Target,
    /// While the notification holds its share of the event on the bus.
    pub ticket: Option<Arc<Ticket>>,
    /// Recorded as a `retrying` dead letter.
    pub parked: bool,
    /// The trace of the event's publisher (a worker's run): its POSTs continue it.
    pub trace: Option<bindu_schemas::bus::TraceContext>,
    /// Attempts made so far, and the last one's error.
    pub attempts: u32,
    pub error: Option<String>,
    /// Counted in its destination (set by the queue).
    counted: Option<Counted>,
    /// When an unacknowledged notification is parked if it is not delivered yet.
    deadline: Instant,
    /// A parked notification that failed waits until then.
    retry_at: Option<Instant>,
}

impl Item {
    /// A notification of the event with `ticket`, to `target`.
    pub fn new(
        seq: u64,
        event_id: String,
        body: Arc<str>,
        target: Target,
        ticket: Arc<Ticket>,
    ) -> Self {
        Item {
            seq,
            event_id,
            body,
            target,
            ticket: Some(ticket),
            parked: false,
            trace: None,
            attempts: 0,
            error: None,
            counted: None,
            deadline: Instant::now(),
            retry_at: None,
        }
    }

    /// A notification parked by an earlier run of the dispatcher.
    pub fn resumed(letter: DeadLetter, target: Target) -> Self {
        Item {
            seq: letter.seq,
            event_id: letter.event_id,
            body: letter.body.into(),
            target,
            ticket: None,
            parked: true,
            trace: None,
            attempts: letter.attempts,
            error: Some(letter.last_error),
            counted: None,
            deadline: Instant::now(),
            retry_at: None,
        }
    }

    fn letter_id(&self) -> String {
        format!("{}:{}", self.event_id, self.target.config_id)
    }
}

/// How the lane reaches a running queue.
pub(crate) struct QueueHandle {
    pub tx: mpsc::UnboundedSender<Item>,
    /// Items sent and not finished yet; the lane drops the handle of an idle queue.
    pub len: Arc<AtomicUsize>,
}

struct Queue {
    shared: Arc<Shared>,
    task_id: String,
    destination: Option<DestinationRef>,
    /// Unacknowledged items first, then parked ones (see the module header).
    items: VecDeque<Item>,
    /// The head's attempt under way.
    posting: Option<Posting>,
    len: Arc<AtomicUsize>,
    /// The lane's count of items in all its queues.
    lane_items: Arc<AtomicUsize>,
}

type Posting = Pin<Box<dyn Future<Output = Attempt> + Send>>;

const BEHIND: &str = "waiting behind a notification of this webhook that waits to retry";

/// Starts the queue of `task_id`'s notifications to the webhook at `url` on `running` (the
/// lane's: a lane that ends takes its queues with it).
pub(crate) fn spawn(
    shared: Arc<Shared>,
    task_id: String,
    url: &str,
    lane_items: Arc<AtomicUsize>,
    running: &mut tokio::task::JoinSet<()>,
) -> QueueHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let len = Arc::new(AtomicUsize::new(0));
    let queue = Queue {
        destination: shared.sender.destination(url),
        shared,
        task_id,
        items: VecDeque::new(),
        posting: None,
        len: len.clone(),
        lane_items,
    };
    running.spawn(queue.run(rx));
    QueueHandle { tx, len }
}

impl Queue {
    /// Until the lane drops the queue (once it is empty) or shutdown. Returns early only on
    /// shutdown: unacknowledged events then come again, parked ones are in the store.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Item>) {
        let stop = self.shared.stop.clone();
        let mut failing: Option<watch::Receiver<bool>> =
            self.destination.as_ref().map(|d| d.watch_failing());
        let mut open = true;
        loop {
            while let Ok(item) = rx.try_recv() {
                if !self.admit(item).await {
                    return;
                }
            }
            if !self.park_due().await {
                return;
            }
            if self.items.is_empty() {
                if !open {
                    return;
                }
                let item = tokio::select! {
                    item = rx.recv() => item,
                    _ = stop.cancelled() => return,
                };
                match item {
                    Some(item) => {
                        if !self.admit(item).await {
                            return;
                        }
                        continue;
                    }
                    None => return,
                }
            }
            let now = Instant::now();
            if self.posting.is_none() && self.head_ready(now) {
                self.posting = self.post_head();
            }
            let wake = self.next_wake(self.posting.is_none());
            tokio::select! {
                item = rx.recv(), if open => match item {
                    Some(item) => {
                        if !self.admit(item).await {
                            return;
                        }
                    }
                    None => open = false,
                },
                Some(result) = OptionFuture::from(self.posting.as_mut()) => {
                    self.posting = None;
                    if !self.finish_head(result).await {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(wake.unwrap_or(now)), if wake.is_some() => {}
                Some(changed) = OptionFuture::from(failing.as_mut().map(|f| f.changed())) => {
                    if changed.is_err() {
                        // The destination is gone (it cannot be while this queue holds it).
                        failing = None;
                    }
                }
                _ = stop.cancelled() => return,
            }
        }
    }

    /// The first unacknowledged item, or the end: the items before it are parked.
    fn first_unacked(&self) -> usize {
        self.items
            .iter()
            .position(|i| !i.parked)
            .unwrap_or(self.items.len())
    }

    fn head_ready(&self, now: Instant) -> bool {
        self.items
            .front()
            .is_some_and(|h| h.retry_at.is_none_or(|t| now >= t))
    }

    /// When something is due: the first unacknowledged item's deadline, or the head's
    /// retry when it is not being posted.
    fn next_wake(&self, idle: bool) -> Option<Instant> {
        let deadline = self.items.get(self.first_unacked()).map(|i| i.deadline);
        let retry = if idle {
            self.items.front().and_then(|h| h.retry_at)
        } else {
            None
        };
        match (deadline, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Why the unacknowledged items must be parked now, if they must.
    fn park_reason(&self) -> Option<&'static str> {
        let now = Instant::now();
        let first = self.items.get(self.first_unacked())?;
        let max = self
            .shared
            .options
            .delivery
            .max_pending_per_destination
            .max(1);
        match &self.destination {
            Some(d) if d.is_failing() => Some("its destination is failing"),
            Some(d) if d.unacked() > max => Some(
                "its destination holds PUSH__MAX_PENDING_PER_DESTINATION notifications on the bus",
            ),
            _ if self
                .items
                .front()
                .is_some_and(|h| h.retry_at.is_some_and(|t| t > now)) =>
            {
                Some(BEHIND)
            }
            _ if now >= first.deadline => {
                Some("it waited one attempt timeout (PUSH__TIMEOUT) without being delivered")
            }
            _ => None,
        }
    }

    /// Takes a notification from the lane, and parks the queue's unacknowledged ones if
    /// they must be. False on shutdown.
    async fn admit(&mut self, mut item: Item) -> bool {
        // The queue is in sequence order: only a number not past the last can be a copy.
        let maybe_copy = self.items.back().is_some_and(|last| item.seq <= last.seq);
        if maybe_copy && self.items.iter().any(|i| i.seq == item.seq) {
            // The same event again (resumed from the store, then delivered again by the
            // bus): the copy waiting here stands for both.
            self.finished(item).await;
            return true;
        }
        item.deadline = Instant::now() + self.shared.options.delivery.timeout;
        if let Some(d) = &self.destination {
            item.counted = Some(if item.parked {
                d.count_parked(self.shared.metrics.notifications_parked.clone())
            } else {
                d.count_unacked()
            });
        }
        self.items.push_back(item);
        self.park_due().await
    }

    /// Parks the unacknowledged items if they must be (see the module header). False on
    /// shutdown.
    async fn park_due(&mut self) -> bool {
        match self.park_reason() {
            Some(reason) => self.park_from(self.first_unacked(), reason).await,
            None => true,
        }
    }

    /// Parks every unacknowledged item from `from` on, for `reason` (records it, then
    /// releases its share of the event). Past the destination's parked cap, an item becomes a
    /// dead letter instead. False on shutdown.
    async fn park_from(&mut self, from: usize, reason: &str) -> bool {
        let cap = self
            .shared
            .options
            .delivery
            .max_parked_per_destination
            .max(1);
        let mut at = from;
        while at < self.items.len() && !self.items[at].parked {
            // Its parked slot is taken before the letter is written, so another queue
            // parking meanwhile cannot take the destination past its cap.
            let slot = self
                .destination
                .as_ref()
                .map(|d| d.try_count_parked(cap, self.shared.metrics.notifications_parked.clone()));
            let overflow = match &slot {
                Some(None) => self.destination.as_ref(),
                _ => None,
            };
            let item = &self.items[at];
            let error = match overflow {
                Some(d) => format!(
                    "{} holds {} parked notifications (PUSH__MAX_PARKED_PER_DESTINATION={cap}); \
                     not retried, replay it with bindu webhooks replay{}",
                    d.origin,
                    d.parked(),
                    item.error
                        .as_deref()
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                ),
                None => item
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("parked: {reason}")),
            };
            let letter = letter(&self.task_id, item, error, overflow.is_none());
            if !self.shared.record(&self.task_id, letter).await {
                return false;
            }
            if overflow.is_some() {
                tracing::warn!(task_id = %self.task_id, seq = item.seq, url = %bindu_engine::redact::url_credentials(&item.target.url), "webhook destination holds its share of parked notifications; recording a dead letter");
                self.shared.metrics.outcome("overflow");
                self.shared.metrics.dead_letters.inc();
                if at == 0 {
                    // Its attempt, if one is under way, ends with it.
                    self.posting = None;
                }
                if let Some(item) = self.items.remove(at) {
                    self.finished(item).await;
                }
                continue;
            }
            tracing::debug!(task_id = %self.task_id, seq = item.seq, url = %bindu_engine::redact::url_credentials(&item.target.url), reason, "notification parked");
            self.shared.metrics.parked.inc();
            let item = &mut self.items[at];
            item.parked = true;
            item.counted = slot.flatten();
            if let Some(ticket) = item.ticket.take() {
                ticket.release().await;
            }
            at += 1;
        }
        true
    }

    /// Posts the head (one attempt).
    fn post_head(&self) -> Option<Posting> {
        let head = self.items.front()?;
        let sender = self.shared.sender.clone();
        let target = head.target.clone();
        let body = head.body.clone();
        let destination = self.destination.clone();
        // While tracing is on, each POST is a span of the trace of the run that published
        // the event, and carries it in `traceparent`.
        let span = bindu_engine::trace::span(|| {
            tracing::info_span!(
                "webhook",
                otel.name = "webhook.post",
                otel.kind = "client",
                task_id = %self.task_id,
                seq = head.seq,
            )
        });
        bindu_engine::trace::follow(&span, head.trace.as_ref());
        Some(Box::pin(
            async move { sender.attempt(&target, &body, destination.as_deref()).await }
                .instrument(span),
        ))
    }

    /// Handles the head's attempt: delivered or given up (it leaves the queue), or to retry
    /// (parked, with everything after it, until its retry time). False on shutdown.
    async fn finish_head(&mut self, result: Attempt) -> bool {
        let max = self.shared.options.delivery.max_attempts.max(1);
        let Some(head) = self.items.front_mut() else {
            return true;
        };
        head.attempts += 1;
        let (kind, error) = match result {
            Attempt::Ok => {
                self.shared.metrics.outcome("delivered");
                tracing::debug!(task_id = %self.task_id, seq = head.seq, url = %bindu_engine::redact::url_credentials(&head.target.url), attempts = head.attempts, "notification delivered");
                if head.parked {
                    let id = head.letter_id();
                    if !self.shared.finish(&self.task_id, &id, Ok(())).await {
                        return false;
                    }
                }
                return self.pop().await;
            }
            Attempt::Final(kind, error) => (kind, error),
            Attempt::Retry(error, _) if head.attempts >= max => ("exhausted", error),
            Attempt::Retry(error, retry_after) => {
                let delay = self.shared.sender.retry_delay(head.attempts, retry_after);
                tracing::debug!(task_id = %self.task_id, seq = head.seq, url = %bindu_engine::redact::url_credentials(&head.target.url), attempt = head.attempts, ?delay, %error, "webhook attempt failed; retrying");
                head.retry_at = Some(Instant::now() + delay);
                head.error = Some(error);
                return self.park_from(self.first_unacked(), BEHIND).await;
            }
        };
        self.shared.metrics.outcome(kind);
        tracing::warn!(task_id = %self.task_id, seq = head.seq, url = %bindu_engine::redact::url_credentials(&head.target.url), attempts = head.attempts, %error, "notification given up; recording a dead letter");
        let recorded = if head.parked {
            let (id, attempts) = (head.letter_id(), head.attempts);
            self.shared
                .finish(&self.task_id, &id, Err((attempts, error)))
                .await
        } else {
            let letter = letter(&self.task_id, head, error, false);
            self.shared.record(&self.task_id, letter).await
        };
        if !recorded {
            return false;
        }
        self.shared.metrics.dead_letters.inc();
        self.pop().await
    }

    async fn pop(&mut self) -> bool {
        if let Some(item) = self.items.pop_front() {
            self.finished(item).await;
        }
        true
    }

    /// An item leaves the queue: its share of the event (if it still holds one) is done.
    async fn finished(&mut self, mut item: Item) {
        if let Some(ticket) = item.ticket.take() {
            ticket.release().await;
        }
        drop(item);
        self.len.fetch_sub(1, Ordering::SeqCst);
        self.lane_items.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The dead letter of `item`: given up, or parked (`retrying`).
fn letter(task_id: &str, item: &Item, last_error: String, retrying: bool) -> DeadLetter {
    DeadLetter {
        id: item.letter_id(),
        task_id: task_id.to_string(),
        event_id: item.event_id.clone(),
        seq: item.seq,
        config_id: item.target.config_id.clone(),
        url: item.target.url.clone(),
        body: item.body.to_string(),
        attempts: item.attempts,
        last_error,
        created_at: String::new(),
        replayed_at: None,
        retrying,
    }
}
