//! The webhook dispatcher: its own durable consumer of task events, delivering push
//! notifications in order per task and webhook, DID-signed, with retries, dead letters and
//! an SSRF guard. A slow receiver never slows the workers (publishing never waits for this
//! consumer), other tasks' receivers, or the task's other webhooks.
//!
//! - [`policy`]: which addresses may be contacted (`PUSH__DESTINATIONS`).
//! - [`notification`]: the body, the signature headers, and [`notification::verify`] for
//!   receivers.
//! - [`delivery`]: one attempt to post one notification ([`Sender`]), and the state of each
//!   destination (scheme, host and port): its slots, its backlog, its health.
//! - [`lane`]: one task's events, in sequence order, handed to its webhooks' queues.
//! - [`queue`]: one webhook's notifications of one task, in order; parking.
//! - [`replay`]: posting dead letters again (`bindu webhooks replay`).
//! - [`metrics`]: Prometheus metrics.
//!
//! Tasks without webhooks cost no store read: on a bus that orders push-config notices
//! with events (NATS), a task whose first event (`seq` 1) is not flagged `pushConfigured`
//! (the send carried no config) and came without a notice has no push config, and its events
//! are acked at once until a notice says otherwise (every event published after
//! `tasks/pushNotificationConfig/set` answered comes after its notice). Tasks first seen
//! later in their life (after a restart, say) are looked up. The flag rides on the event
//! itself, so a restart between a notice and the event it precedes cannot lose a config.
//!
//! Semantics: at least once. A webhook's notification n+1 of a task is posted only after
//! notification n was delivered or given up; a task's webhooks, and tasks, proceed
//! independently, capped per destination. The bus is only the quick path: an event is acked
//! once each of its notifications is delivered, given up (a dead letter), or **parked**
//! (recorded in the dead-letter store as still retrying, see [`queue`]), so no receiver holds
//! the bus's window of unacknowledged events or the dispatcher's in-flight budget for longer
//! than about one attempt timeout. Parked notifications are retried from memory and given
//! back by the store when the dispatcher starts again. A restarted dispatcher resumes after
//! the last acked event; events delivered again then carry the same `eventId`
//! (`<taskId>:<sequence>`).

pub mod delivery;
mod lane;
pub mod metrics;
pub mod notification;
pub mod policy;
mod queue;
pub mod replay;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::{BusError, Consumed, EventDelivery};
use bindu_engine::retry::RetryPolicy;
use bindu_engine::store::{DeadLetter, DeadLetterStore, StoreError};
use bindu_engine::{Bus, TaskStore};
use futures::StreamExt;
use lane::{LaneInput, LaneState};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use delivery::{DeliveryOptions, Outcome, Sender, Target};
pub use metrics::DispatcherMetrics;
pub use notification::{verify, VerifyError};

/// The agent-wide webhook (`WEBHOOK_URL`, `WEBHOOK_TOKEN`).
#[derive(Debug, Clone)]
pub struct GlobalWebhook {
    pub url: String,
    pub token: Option<String>,
}

/// Config id recorded for deliveries to the global webhook.
pub const GLOBAL_CONFIG_ID: &str = "global";

impl GlobalWebhook {
    /// Where its notifications go.
    pub fn target(&self) -> Target {
        Target {
            config_id: GLOBAL_CONFIG_ID.into(),
            url: self.url.clone(),
            token: self.token.clone(),
            // `WEBHOOK_URL` predates 1.0: it keeps 0.3's payloads.
            v10: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    /// Name of the durable event consumer.
    pub consumer: String,
    /// Events held (queued or being delivered) before the dispatcher stops taking more.
    pub max_in_flight: usize,
    /// Receives the notifications of tasks without a push config of their own.
    pub global: Option<GlobalWebhook>,
    /// How long a task's lane waits for a missing earlier event before going on.
    pub gap_wait: Duration,
    /// Finished tasks whose last sequence number is remembered (to drop late duplicates).
    pub remember_tasks: usize,
    pub delivery: DeliveryOptions,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        DispatcherOptions {
            consumer: "webhooks".into(),
            max_in_flight: 10_000,
            global: None,
            gap_wait: Duration::from_secs(2),
            remember_tasks: 100_000,
            delivery: DeliveryOptions::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    #[error("task bus: {0}")]
    Bus(#[from] BusError),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What every lane shares.
pub(crate) struct Shared {
    pub store: Arc<dyn TaskStore>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub sender: Sender,
    pub options: DispatcherOptions,
    pub metrics: DispatcherMetrics,
    pub stop: CancellationToken,
}

/// Waits between attempts while the store is unavailable; only shutdown ends them.
pub(crate) const STORE_BACKOFF: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(100),
    max_delay: Duration::from_secs(10),
    deadline: Duration::MAX,
};

impl Shared {
    /// Stores a dead letter (given up, or parked), retrying while the store is
    /// unavailable; false on shutdown.
    pub async fn record(&self, task_id: &str, letter: DeadLetter) -> bool {
        let warn = |e: &StoreError, _| tracing::warn!(%task_id, error = %e, "cannot record a dead letter; retrying");
        STORE_BACKOFF
            .run_cancellable(|| self.dead_letters.add(letter.clone()), warn, &self.stop)
            .await
            .is_some()
    }

    /// Records how a parked notification ended, retrying while the store is unavailable;
    /// false on shutdown. A letter the store no longer has (a bounded memory store) is
    /// nothing to record.
    pub async fn finish(
        &self,
        task_id: &str,
        id: &str,
        outcome: Result<(), (u32, String)>,
    ) -> bool {
        let warn = |e: &StoreError, _| tracing::warn!(%task_id, error = %e, "cannot record how a parked notification ended; retrying");
        let finish = || async {
            match self.dead_letters.finish_retry(id, outcome.clone()).await {
                Err(StoreError::NotFound(_)) => Ok(()),
                r => r,
            }
        };
        STORE_BACKOFF
            .run_cancellable(finish, warn, &self.stop)
            .await
            .is_some()
    }
}

/// One event on its way through a lane; dropping it releases its in-flight slot.
pub(crate) struct Held {
    pub delivery: EventDelivery,
    _slot: tokio::sync::OwnedSemaphorePermit,
    held: DispatcherMetrics,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.held.events_held.dec();
    }
}

/// A running lane, as the dispatcher's loop sees it.
struct LaneHandle {
    tx: mpsc::UnboundedSender<LaneInput>,
    state: Arc<LaneState>,
}

/// Parked notifications given back to a starting dispatcher at most; more wait in the store
/// for the next start (and can be replayed meanwhile).
const RESUME_MAX: u32 = 100_000;

pub struct Dispatcher {
    bus: Arc<dyn Bus>,
    shared: Arc<Shared>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn TaskStore>,
        bus: Arc<dyn Bus>,
        dead_letters: Arc<dyn DeadLetterStore>,
        identity: Option<Arc<bindu_engine::identity::Identity>>,
        options: DispatcherOptions,
        metrics: DispatcherMetrics,
    ) -> Result<Self, DispatcherError> {
        let sender = Sender::new(options.delivery.clone(), identity, metrics.clone())?;
        Ok(Dispatcher {
            bus,
            shared: Arc::new(Shared {
                store,
                dead_letters,
                sender,
                options,
                metrics,
                stop: CancellationToken::new(),
            }),
        })
    }

    /// Opens the durable consumer (so nothing published from now on is missed), then
    /// returns the loop to run.
    pub async fn start(
        self,
        shutdown: CancellationToken,
    ) -> Result<impl std::future::Future<Output = Result<(), DispatcherError>>, DispatcherError>
    {
        let events = self
            .bus
            .consume_events(&self.shared.options.consumer)
            .await?;
        tracing::info!(consumer = %self.shared.options.consumer, "webhook dispatcher consuming task events");
        Ok(run(self.shared, self.bus, events, shutdown))
    }
}

/// Consecutive consumer errors after which the consumer is opened again.
const REOPEN_AFTER_ERRORS: u32 = 10;

async fn run(
    shared: Arc<Shared>,
    bus: Arc<dyn Bus>,
    mut events: bindu_engine::bus::DurableEventStream,
    shutdown: CancellationToken,
) -> Result<(), DispatcherError> {
    let mut errors = 0u32;
    let slots = Arc::new(Semaphore::new(shared.options.max_in_flight.max(1)));
    let mut lanes: HashMap<String, LaneHandle> = HashMap::new();
    let mut recent: HashMap<String, u64> = HashMap::new();
    let mut recent_order: VecDeque<String> = VecDeque::new();
    let mut running = JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_millis(500));
    // Without an agent-wide webhook, tasks without push configs of their own need nothing.
    let skip_unconfigured = shared.options.global.is_none() && bus.orders_push_notices();
    let mut configs = KnownConfigs::new(shared.options.remember_tasks);
    resume(&shared, &mut lanes, &recent, &mut running).await;
    let result = loop {
        // Take an event only with a free slot: a full dispatcher stops reading the bus.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break Ok(()),
            },
            _ = shutdown.cancelled() => break Ok(()),
        };
        let delivery = tokio::select! {
            d = events.next() => d,
            _ = sweep.tick() => {
                drop(slot);
                retire_idle(&mut lanes, &mut recent, &mut recent_order, shared.options.remember_tasks);
                while running.try_join_next().is_some() {}
                continue;
            }
            _ = shutdown.cancelled() => break Ok(()),
        };
        let delivery = match delivery {
            Some(Ok(Consumed::Event(d))) => {
                errors = 0;
                d
            }
            Some(Ok(Consumed::PushConfigsChanged(notice))) => {
                errors = 0;
                drop(slot);
                configs.notified(&notice.task_id);
                if let Err(e) = notice.acker.ack().await {
                    tracing::warn!(task_id = %notice.task_id, error = %e, "could not ack a push-config notice");
                }
                continue;
            }
            Some(Err(BusError::Lagged(n))) => {
                tracing::error!(missed = n, "the dispatcher fell behind the bus and missed events; their notifications are lost");
                shared.metrics.gaps.inc_by(n);
                continue;
            }
            Some(Err(e)) => {
                // Transient (a NATS reconnect, missed heartbeats): back off, and after
                // repeated failures open the consumer again (it resumes after its ack floor;
                // events the lanes already finished come again and are dropped as duplicates).
                errors += 1;
                tracing::warn!(error = %e, errors, "task event consumer failed");
                let pause = Duration::from_millis(100 * u64::from(errors.min(50)));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => break Ok(()),
                }
                if errors >= REOPEN_AFTER_ERRORS {
                    match bus.consume_events(&shared.options.consumer).await {
                        Ok(fresh) => {
                            tracing::info!("reopened the task event consumer");
                            events = fresh;
                            errors = 0;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot reopen the task event consumer yet")
                        }
                    }
                }
                continue;
            }
            // Another dispatcher took the consumer over, or the bus closed.
            None => break Ok(()),
        };
        let task_id = delivery.event.task_id().to_string();
        if skip_unconfigured
            && !lanes.contains_key(&task_id)
            && configs.unconfigured(&delivery.event)
        {
            drop(slot);
            shared.metrics.skipped.inc();
            if let Err(e) = delivery.acker.ack().await {
                tracing::warn!(%task_id, error = %e, "could not ack a task event");
            }
            continue;
        }
        shared.metrics.events_held.inc();
        let held = Held {
            delivery,
            _slot: slot,
            held: shared.metrics.clone(),
        };
        let lane = lane_for(&shared, &mut lanes, &recent, &mut running, &task_id);
        // Counted before sending: a lane seen idle by the sweep has nothing in flight.
        lane.state.outstanding.fetch_add(1, Ordering::SeqCst);
        if lane.tx.send(LaneInput::Event(held)).is_err() {
            // The lane ended (shutdown); the event stays unacked and comes again later.
            lane.state.outstanding.fetch_sub(1, Ordering::SeqCst);
        }
    };
    // Stop: lanes finish the attempt in progress or are interrupted; unacked events are
    // delivered again by the next dispatcher.
    shared.stop.cancel();
    drop(lanes);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while running.join_next().await.is_some() {}
    })
    .await;
    running.abort_all();
    tracing::info!("webhook dispatcher stopped");
    result
}

/// `task_id`'s lane, started if needed (after `recent`'s last sequence number, if any).
fn lane_for<'a>(
    shared: &Arc<Shared>,
    lanes: &'a mut HashMap<String, LaneHandle>,
    recent: &HashMap<String, u64>,
    running: &mut JoinSet<()>,
    task_id: &str,
) -> &'a LaneHandle {
    lanes.entry(task_id.to_string()).or_insert_with(|| {
        let start_after = recent.get(task_id).copied();
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(LaneState::default());
        state
            .last_done
            .store(start_after.unwrap_or(0), Ordering::SeqCst);
        running.spawn(lane::run(
            shared.clone(),
            task_id.to_string(),
            rx,
            start_after,
            state.clone(),
        ));
        LaneHandle { tx, state }
    })
}

/// Gives the notifications an earlier run parked back to their tasks' lanes, oldest first,
/// before any event is read (so later notifications of the same webhook queue behind them).
async fn resume(
    shared: &Arc<Shared>,
    lanes: &mut HashMap<String, LaneHandle>,
    recent: &HashMap<String, u64>,
    running: &mut JoinSet<()>,
) {
    let warn = |e: &StoreError, _| tracing::warn!(error = %e, "cannot read parked notifications; retrying");
    let Some(Ok(letters)) = STORE_BACKOFF
        .run_cancellable(
            || shared.dead_letters.retrying(RESUME_MAX),
            warn,
            &shared.stop,
        )
        .await
    else {
        return;
    };
    if letters.is_empty() {
        return;
    }
    if letters.len() >= RESUME_MAX as usize {
        tracing::warn!(limit = RESUME_MAX, "more parked notifications than a start resumes; the rest wait for the next start (or bindu webhooks replay)");
    }
    tracing::info!(
        notifications = letters.len(),
        "resuming parked webhook notifications"
    );
    let mut by_task: Vec<(String, Vec<DeadLetter>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for letter in letters {
        let at = *index.entry(letter.task_id.clone()).or_insert_with(|| {
            by_task.push((letter.task_id.clone(), Vec::new()));
            by_task.len() - 1
        });
        by_task[at].1.push(letter);
    }
    for (task_id, letters) in by_task {
        let lane = lane_for(shared, lanes, recent, running, &task_id);
        lane.state.outstanding.fetch_add(1, Ordering::SeqCst);
        if lane.tx.send(LaneInput::Resume(letters)).is_err() {
            lane.state.outstanding.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// What the dispatcher knows of tasks' push configs from the order of the bus: a task whose
/// first event on the bus (its `submitted`, `seq` 1, or the outcome of its first run,
/// [`opens_task`](bindu_schemas::bus::TaskEvent::opens_task)) came unflagged, without a
/// push-config notice before it, has none until a notice comes. Bounded: a task forgotten is
/// looked up in the store when its next event comes.
struct KnownConfigs {
    /// Task id → whether a notice came (true) or the task started without one (false).
    tasks: HashMap<String, bool>,
    order: VecDeque<String>,
    limit: usize,
}

impl KnownConfigs {
    fn new(limit: usize) -> Self {
        KnownConfigs {
            tasks: HashMap::new(),
            order: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    fn remember(&mut self, task_id: &str, notified: bool) {
        if self.tasks.insert(task_id.to_string(), notified).is_none() {
            self.order.push_back(task_id.to_string());
        }
        while self.tasks.len() > self.limit {
            match self.order.pop_front() {
                Some(old) => {
                    self.tasks.remove(&old);
                }
                None => break,
            }
        }
        // Ids of tasks that ended stay in `order` until compacted (amortised O(1)).
        if self.order.len() > 2 * self.tasks.len() + 1024 {
            let tasks = &self.tasks;
            self.order.retain(|id| tasks.contains_key(id));
        }
    }

    fn notified(&mut self, task_id: &str) {
        self.remember(task_id, true);
    }

    /// Whether `event`'s task is known to have no push config (its event needs nothing).
    fn unconfigured(&mut self, event: &bindu_schemas::bus::TaskEvent) -> bool {
        let task_id = event.task_id();
        if event.push_configured {
            // A message with a push config (a new task, or a follow-up).
            self.remember(task_id, true);
            return false;
        }
        let opens = event.seq == 1 || event.opens_task;
        let unconfigured = match self.tasks.get(task_id) {
            Some(notified) => !notified,
            None => opens,
        };
        if unconfigured {
            if event.is_final() {
                // Ended or paused: a later turn is looked up (or notified) afresh.
                self.tasks.remove(task_id);
            } else if opens {
                self.remember(task_id, false);
            }
        }
        unconfigured
    }
}

/// Ends the lanes with nothing in flight or queued, remembering where each task got to.
fn retire_idle(
    lanes: &mut HashMap<String, LaneHandle>,
    recent: &mut HashMap<String, u64>,
    order: &mut VecDeque<String>,
    remember: usize,
) {
    lanes.retain(|task_id, lane| {
        if lane.state.outstanding.load(Ordering::SeqCst) > 0
            || lane.state.queued.load(Ordering::SeqCst) > 0
        {
            return true;
        }
        let last = lane.state.last_done.load(Ordering::SeqCst);
        if last > 0 && recent.insert(task_id.clone(), last).is_none() {
            order.push_back(task_id.clone());
        }
        false
    });
    while recent.len() > remember {
        match order.pop_front() {
            Some(old) => {
                recent.remove(&old);
            }
            None => break,
        }
    }
}
