//! The webhook dispatcher: its own durable consumer of task events, delivering push
//! notifications in order per task, DID-signed, with retries, dead letters and an SSRF
//! guard. A slow receiver never slows the workers (publishing never waits for this
//! consumer) or other tasks' receivers (each task has its own delivery lane).
//!
//! - [`policy`]: which addresses may be contacted (`PUSH__DESTINATIONS`).
//! - [`notification`]: the body, the signature headers, and [`notification::verify`] for
//!   receivers.
//! - [`delivery`]: one notification to one webhook, with retries ([`Sender`]).
//! - [`lane`]: one task's events, in sequence order.
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
//! Semantics: at least once. A task's event n+1 is posted only after event n was delivered
//! to, or given up on by, every webhook of the task; tasks proceed in parallel, capped per
//! host. An event is acked on the bus only once it is done, so a restarted dispatcher
//! resumes after the last acked event; events delivered again then carry the same `eventId`
//! (`<taskId>:<sequence>`).

pub mod delivery;
mod lane;
pub mod metrics;
pub mod notification;
pub mod policy;
pub mod replay;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::{BusError, Consumed, EventDelivery};
use bindu_engine::store::DeadLetterStore;
use bindu_engine::{Bus, TaskStore};
use futures::StreamExt;
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
    tx: mpsc::UnboundedSender<Held>,
    /// Events sent and not yet released by the lane.
    outstanding: Arc<AtomicUsize>,
    /// Last sequence number the lane finished (0: none yet).
    last_done: Arc<AtomicU64>,
}

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
        let lane = lanes.entry(task_id.clone()).or_insert_with(|| {
            let start_after = recent.get(&task_id).copied();
            let (tx, rx) = mpsc::unbounded_channel();
            let outstanding = Arc::new(AtomicUsize::new(0));
            let last_done = Arc::new(AtomicU64::new(start_after.unwrap_or(0)));
            running.spawn(lane::run(
                shared.clone(),
                task_id.clone(),
                rx,
                start_after,
                outstanding.clone(),
                last_done.clone(),
            ));
            LaneHandle {
                tx,
                outstanding,
                last_done,
            }
        });
        // Counted before sending: a lane seen idle by the sweep has nothing in flight.
        lane.outstanding.fetch_add(1, Ordering::SeqCst);
        if lane.tx.send(held).is_err() {
            // The lane ended (shutdown); the event stays unacked and comes again later.
            lane.outstanding.fetch_sub(1, Ordering::SeqCst);
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

/// Ends the lanes with nothing in flight, remembering where each task got to.
fn retire_idle(
    lanes: &mut HashMap<String, LaneHandle>,
    recent: &mut HashMap<String, u64>,
    order: &mut VecDeque<String>,
    remember: usize,
) {
    lanes.retain(|task_id, lane| {
        if lane.outstanding.load(Ordering::SeqCst) > 0 {
            return true;
        }
        let last = lane.last_done.load(Ordering::SeqCst);
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
