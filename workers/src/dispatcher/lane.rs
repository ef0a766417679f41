//! One task's delivery lane: its events in sequence order, one at a time.
//!
//! An event at or below the last finished sequence number is a duplicate (a redelivery):
//! acked at once. Copies of an event still waiting are merged (all acked together). When the
//! next event in line is missing (two publishers raced), the lane waits up to `gap_wait` for
//! it, then goes on with what it has (counted in `bindu_push_sequence_gaps`); a jump past
//! the numbers a run may use (a cancel recorded beside a running handler) is not a gap.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::retry::RetryPolicy;
use bindu_engine::store::{Access, DeadLetter, StoreError};
use tokio::sync::mpsc;

use super::delivery::{Outcome, Target};
use super::{notification, Held, Shared, GLOBAL_CONFIG_ID};

/// Waits between attempts while the store is unavailable; only shutdown ends them.
const STORE_BACKOFF: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(100),
    max_delay: Duration::from_secs(10),
    deadline: Duration::MAX,
};

struct Lane {
    shared: Arc<Shared>,
    task_id: String,
    /// The webhooks read for the events that were waiting at the time (the highest of
    /// their sequence numbers): those events need not read them again.
    targets: Option<(Vec<Target>, u64)>,
    done: Option<u64>,
    pending: BTreeMap<u64, Vec<Held>>,
    outstanding: Arc<AtomicUsize>,
    last_done: Arc<AtomicU64>,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    task_id: String,
    mut rx: mpsc::UnboundedReceiver<Held>,
    start_after: Option<u64>,
    outstanding: Arc<AtomicUsize>,
    last_done: Arc<AtomicU64>,
) {
    let mut lane = Lane {
        shared: shared.clone(),
        task_id,
        targets: None,
        done: start_after,
        pending: BTreeMap::new(),
        outstanding,
        last_done,
    };
    let stop = shared.stop.clone();
    loop {
        if lane.pending.is_empty() {
            let next = tokio::select! {
                h = rx.recv() => h,
                _ = stop.cancelled() => return,
            };
            match next {
                Some(h) => lane.accept(h).await,
                None => return,
            }
        }
        while let Ok(h) = rx.try_recv() {
            lane.accept(h).await;
        }
        if !lane.next_is_ready() {
            let deadline = tokio::time::Instant::now() + shared.options.gap_wait;
            while !lane.next_is_ready() {
                tokio::select! {
                    h = rx.recv() => match h {
                        Some(h) => lane.accept(h).await,
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

    async fn accept(&mut self, held: Held) {
        let seq = held.delivery.event.seq;
        if self.done.is_some_and(|d| seq <= d) {
            if let Err(e) = held.delivery.acker.ack().await {
                tracing::warn!(task_id = %self.task_id, seq, error = %e, "could not ack a duplicate event");
            }
            self.outstanding.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        self.pending.entry(seq).or_default().push(held);
    }

    /// Delivers one event to every webhook of the task; false when interrupted by shutdown.
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
        if !targets.is_empty() {
            let body = notification::body(&event);
            let sender = &self.shared.sender;
            let stop = &self.shared.stop;
            let outcomes =
                futures::future::join_all(targets.iter().map(|t| sender.deliver(t, &body, stop)))
                    .await;
            for (target, outcome) in targets.iter().zip(outcomes) {
                match outcome {
                    Outcome::Delivered { attempts } => {
                        self.shared.metrics.outcome("delivered");
                        tracing::debug!(task_id = %self.task_id, seq, url = %target.url, attempts, "notification delivered");
                    }
                    Outcome::GaveUp {
                        attempts,
                        kind,
                        error,
                    } => {
                        self.shared.metrics.outcome(kind);
                        tracing::warn!(task_id = %self.task_id, seq, url = %target.url, attempts, %error, "notification given up; recording a dead letter");
                        let letter = DeadLetter {
                            id: format!("{}:{}", event.event_id(), target.config_id),
                            task_id: self.task_id.clone(),
                            event_id: event.event_id(),
                            seq,
                            config_id: target.config_id.clone(),
                            url: target.url.clone(),
                            body: body.clone(),
                            attempts,
                            last_error: error,
                            created_at: String::new(),
                            replayed_at: None,
                        };
                        if !self.record(letter).await {
                            return false;
                        }
                    }
                    Outcome::Interrupted => return false,
                }
            }
        }
        for held in &copies {
            if let Err(e) = held.delivery.acker.ack().await {
                // Delivered again after a restart: a duplicate with the same eventId.
                tracing::warn!(task_id = %self.task_id, seq, error = %e, "could not ack a handled event");
            }
        }
        self.done = Some(seq);
        self.last_done.store(seq, Ordering::SeqCst);
        self.outstanding.fetch_sub(copies.len(), Ordering::SeqCst);
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
                .map(|g| Target {
                    config_id: GLOBAL_CONFIG_ID.into(),
                    url: g.url.clone(),
                    token: g.token.clone(),
                })
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

    /// Stores a dead letter, retrying while the store is unavailable; false on shutdown.
    async fn record(&self, letter: DeadLetter) -> bool {
        let warn = |e: &StoreError, _| tracing::warn!(task_id = %self.task_id, error = %e, "cannot record a dead letter; retrying");
        let added = STORE_BACKOFF
            .run_cancellable(
                || self.shared.dead_letters.add(letter.clone()),
                warn,
                &self.shared.stop,
            )
            .await;
        if matches!(added, Some(Ok(()))) {
            self.shared.metrics.dead_letters.inc();
        }
        added.is_some()
    }
}
