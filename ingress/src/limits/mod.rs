//! Back-pressure and per-caller limits on the messages that start work (`message/send`,
//! `message/stream`), configured in one table (`[limits]`, `LIMITS__*`). A refusal is HTTP
//! 429 with `Retry-After` and the JSON-RPC error -32029 ([`Refusal`]), answered at once: a
//! request never waits for the queue to drain or a bucket to refill.
//!
//! Checked in order, after authentication and params and before payment (a refused message
//! costs the caller nothing and claims no payment):
//!
//! 1. **The work queue** ([`QueueGauge`]): while more than `queue_limit` commands wait for
//!    a worker, new messages are refused. The depth is the bus's ([`Bus::queue_depth`]),
//!    refreshed in the background at most every [`DEPTH_MAX_AGE`], so a request only reads
//!    an atomic.
//! 2. **The caller's rate**: a token bucket per caller (its DID or OAuth client id;
//!    anonymous callers share one bucket of their own), `rate` messages per second with
//!    bursts of `burst`.
//! 3. **The caller's open tasks** (in [`crate::rpc`], once the task id is known): runs
//!    accepted and not ended yet (queued or running). The replica that accepted a run
//!    watches the agent's events for its end ([`Limits::watcher`]); when its event stream
//!    lags it asks the task store which of its runs ended. A run whose end it never sees
//!    (that replica stopped) stops counting after `open_task_ttl`.
//!
//! With `REDIS_URL` the buckets and the open-task sets live in Redis and every replica
//! shares them (one Lua script per check: refill and take, or prune, count and add, in one
//! atomic step; Redis's clock, so replicas' clocks do not matter). While Redis does not
//! answer, each replica falls back to its own buckets and sets ([`local`]); that is logged
//! once per outage and counted (`bindu_limits_fallbacks_total`).

mod local;
mod shared;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bindu_engine::config::{check, fields, within, Invalid, Section};
use bindu_engine::store::{Access, StoreError};
use bindu_engine::{Bus, TaskStore};
use bindu_schemas::jsonrpc::{code, JsonRpcError};
use futures::StreamExt;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::auth::shared::RedisState;

bindu_engine::section! {
    /// `[limits]`: back-pressure and per-caller limits on `message/send` and
    /// `message/stream` (0 turns a limit off).
    pub struct LimitsConfig in "limits" {
        /// Commands waiting for a worker above which new messages are refused.
        pub queue_limit: u64 = 0, env "LIMITS__QUEUE_LIMIT";
        /// Messages per second one authenticated caller may send.
        pub rate: f64 = 0.0, env "LIMITS__RATE";
        /// Messages one authenticated caller may send at once (0: the rate, rounded up).
        pub burst: u32 = 0, env "LIMITS__BURST";
        /// Runs (queued or running) one authenticated caller may have at once.
        pub max_open_tasks: u32 = 0, env "LIMITS__MAX_OPEN_TASKS";
        /// `rate` of the anonymous callers (auth off), who share one bucket.
        pub anonymous_rate: f64 = 0.0, env "LIMITS__ANONYMOUS_RATE";
        pub anonymous_burst: u32 = 0, env "LIMITS__ANONYMOUS_BURST";
        pub anonymous_max_open_tasks: u32 = 0, env "LIMITS__ANONYMOUS_MAX_OPEN_TASKS";
        /// `Retry-After` of refusals for the queue or open tasks.
        #[serde(with = "fields::secs")]
        pub retry_after: Duration = Duration::from_secs(1),
            env "LIMITS__RETRY_AFTER" as "retry_after_secs";
        /// An open run whose end was never seen stops counting after this long.
        #[serde(with = "fields::secs")]
        pub open_task_ttl: Duration = Duration::from_secs(3600),
            env "LIMITS__OPEN_TASK_TTL" as "open_task_ttl_secs";
    }
}

impl Section for LimitsConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        for (rate, field) in [(self.rate, "rate"), (self.anonymous_rate, "anonymous_rate")] {
            check(
                rate.is_finite() && (0.0..=1_000_000.0).contains(&rate),
                field,
                "must be a number of messages per second between 0 (no limit) and 1000000",
            )?;
        }
        within(self.burst, 0, 1_000_000, "burst")?;
        within(self.anonymous_burst, 0, 1_000_000, "anonymous_burst")?;
        within(self.retry_after.as_secs(), 1, 3600, "retry_after_secs")?;
        within(
            self.open_task_ttl.as_secs(),
            10,
            30 * 86_400,
            "open_task_ttl_secs",
        )
    }
}

impl LimitsConfig {
    /// Whether any limit is on.
    pub fn any(&self) -> bool {
        self.queue_limit > 0 || self.callers().limited() || self.anonymous().limited()
    }

    fn callers(&self) -> Class {
        Class::new(self.rate, self.burst, self.max_open_tasks)
    }

    fn anonymous(&self) -> Class {
        Class::new(
            self.anonymous_rate,
            self.anonymous_burst,
            self.anonymous_max_open_tasks,
        )
    }
}

/// The limits of one kind of caller.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Class {
    /// Tokens per second; 0: no rate limit.
    rate: f64,
    burst: u32,
    /// 0: no limit.
    max_open: u32,
}

impl Class {
    fn new(rate: f64, burst: u32, max_open: u32) -> Class {
        // A bucket holds at least one token, else nothing could ever pass.
        let burst = if burst == 0 {
            rate.ceil().clamp(1.0, u32::MAX as f64) as u32
        } else {
            burst
        };
        Class {
            rate,
            burst,
            max_open,
        }
    }

    fn limited(&self) -> bool {
        self.rate > 0.0 || self.max_open > 0
    }
}

/// Why a message was refused; its [`Refusal::error`] is what the caller reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// More than `limit` commands wait for a worker.
    QueueFull { limit: u64, retry_after: Duration },
    /// The caller's bucket is empty; a token is back after `retry_after`.
    Rate { retry_after: Duration },
    /// The caller has `max` runs open.
    OpenTasks { max: u32, retry_after: Duration },
    /// The bus itself refused the command: its queue is full.
    BusFull { retry_after: Duration },
}

impl Refusal {
    /// Whole seconds for `Retry-After` (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let d = match self {
            Refusal::QueueFull { retry_after, .. }
            | Refusal::Rate { retry_after }
            | Refusal::OpenTasks { retry_after, .. }
            | Refusal::BusFull { retry_after } => *retry_after,
        };
        d.as_secs_f64().ceil().max(1.0) as u64
    }

    /// The label of `bindu_limits_refused_total`, and `data.reason` of the error.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::QueueFull { .. } | Refusal::BusFull { .. } => "queue",
            Refusal::Rate { .. } => "rate",
            Refusal::OpenTasks { .. } => "open_tasks",
        }
    }

    /// The JSON-RPC error: -32029, what was over its limit and when to retry
    /// (`data.retryAfter`, seconds, as the `Retry-After` header).
    pub fn error(&self) -> JsonRpcError {
        let secs = self.retry_after_secs();
        let what = match self {
            Refusal::QueueFull { limit, .. } => format!(
                "the agent is busy: more than {limit} tasks wait for a worker (limits.queue_limit / LIMITS__QUEUE_LIMIT)"
            ),
            Refusal::BusFull { .. } => {
                "the agent is busy: its work queue is full (scheduler.queue_capacity / SCHEDULER__QUEUE_CAPACITY)".to_string()
            }
            Refusal::Rate { .. } => {
                "this caller sends messages faster than its rate (limits.rate / LIMITS__RATE; LIMITS__ANONYMOUS_RATE for callers without credentials)"
                    .to_string()
            }
            Refusal::OpenTasks { max, .. } => format!(
                "this caller already has {max} tasks queued or running (limits.max_open_tasks / LIMITS__MAX_OPEN_TASKS; LIMITS__ANONYMOUS_MAX_OPEN_TASKS for callers without credentials)"
            ),
        };
        // The bus refuses after the message was recorded: its task is recorded failed.
        let recorded = match self {
            Refusal::BusFull { .. } => "the message's task was recorded failed",
            _ => "nothing was recorded",
        };
        JsonRpcError::new(
            code::TOO_MANY_REQUESTS,
            format!("Too many requests: {what}; {recorded}, retry after {secs} s"),
        )
        .with_data(json!({"reason": self.reason(), "retryAfter": secs}))
    }
}

/// After missed events, the open-task watcher checks its counted runs in the store at most
/// this often ...
const RECONCILE_EVERY: Duration = Duration::from_secs(5);
/// ... and at most this many of them each time.
const RECONCILE_MAX: usize = 10_000;

/// Longest the queue depth a refusal reads may be out of date.
pub const DEPTH_MAX_AGE: Duration = Duration::from_millis(250);

/// The work queue's depth as last read, refreshed in the background when older than
/// [`DEPTH_MAX_AGE`]: reading it never waits for the bus.
pub struct QueueGauge {
    waiting: AtomicU64,
    /// Nanoseconds since `epoch` of the last refresh's start; `u64::MAX`: never.
    refreshed: AtomicU64,
    refreshing: Arc<AtomicBool>,
    known: AtomicBool,
    epoch: Instant,
}

impl QueueGauge {
    fn new() -> Arc<QueueGauge> {
        Arc::new(QueueGauge {
            waiting: AtomicU64::new(0),
            refreshed: AtomicU64::new(u64::MAX),
            refreshing: Arc::new(AtomicBool::new(false)),
            known: AtomicBool::new(false),
            epoch: Instant::now(),
        })
    }

    /// Commands waiting, as last read (`None` before the first reading); starts a
    /// refresh when the reading is old.
    fn waiting(self: &Arc<Self>, bus: &Arc<dyn Bus>) -> Option<u64> {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let last = self.refreshed.load(Ordering::Relaxed);
        let stale = last == u64::MAX || now.saturating_sub(last) > DEPTH_MAX_AGE.as_nanos() as u64;
        if stale && !self.refreshing.swap(true, Ordering::AcqRel) {
            self.refreshed.store(now, Ordering::Relaxed);
            let gauge = self.clone();
            let bus = bus.clone();
            tokio::spawn(async move {
                // Bounded: a bus that does not answer leaves the last reading in place.
                if let Ok(Ok(depth)) =
                    tokio::time::timeout(Duration::from_secs(2), bus.queue_depth()).await
                {
                    gauge.waiting.store(depth.waiting, Ordering::Relaxed);
                    gauge.known.store(true, Ordering::Release);
                }
                gauge.refreshing.store(false, Ordering::Release);
            });
        }
        self.known
            .load(Ordering::Acquire)
            .then(|| self.waiting.load(Ordering::Relaxed))
    }
}

pub const LIMITS_REFUSED: &str = "bindu_limits_refused";
pub const LIMITS_FALLBACKS: &str = "bindu_limits_fallbacks";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The limits' metrics.
#[derive(Clone, Default)]
pub struct LimitMetrics {
    refused: Family<ReasonLabels, Counter>,
    fallbacks: Counter,
}

impl LimitMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            LIMITS_REFUSED,
            "Messages refused with HTTP 429 by reason: queue (work queue over its limit or full), rate, open_tasks",
            self.refused.clone(),
        );
        registry.register(
            LIMITS_FALLBACKS,
            "Limit checks made with this replica's own buckets because Redis did not answer",
            self.fallbacks.clone(),
        );
    }

    pub(crate) fn refused(&self, refusal: &Refusal) {
        self.refused
            .get_or_create(&ReasonLabels {
                reason: refusal.reason(),
            })
            .inc();
    }
}

/// The key of a caller's bucket and set: its id, or the anonymous callers' shared one.
fn key(caller: Option<&str>) -> String {
    match caller {
        Some(c) => format!("c:{c}"),
        None => "anonymous".to_string(),
    }
}

/// The limits of one ingress ([`crate::Ingress::with_limits`]).
pub struct Limits {
    queue_limit: u64,
    retry_after: Duration,
    open_ttl: Duration,
    callers: Class,
    anonymous: Class,
    local: local::Local,
    shared: Option<Arc<RedisState>>,
    /// Whether the last shared check fell back (logged once per outage).
    falling_back: AtomicBool,
    gauge: Arc<QueueGauge>,
    /// Runs this replica counted open, and the key they count under: released when their
    /// run ends (or after `open_ttl`).
    tracked: moka::sync::Cache<String, String>,
    metrics: LimitMetrics,
    /// Whether [`Limits::watcher`] runs (open-task limits only count what it can release).
    watching: Mutex<bool>,
}

impl Limits {
    /// The limits of `config`; `shared`: Redis, for buckets and sets every replica shares.
    pub fn new(config: &LimitsConfig, shared: Option<Arc<RedisState>>) -> Limits {
        Limits {
            queue_limit: config.queue_limit,
            retry_after: config.retry_after,
            open_ttl: config.open_task_ttl,
            callers: config.callers(),
            anonymous: config.anonymous(),
            local: local::Local::new(config.open_task_ttl),
            shared,
            falling_back: AtomicBool::new(false),
            gauge: QueueGauge::new(),
            tracked: moka::sync::Cache::builder()
                .time_to_live(config.open_task_ttl)
                .build(),
            metrics: LimitMetrics::default(),
            watching: Mutex::new(false),
        }
    }

    pub fn metrics(&self) -> &LimitMetrics {
        &self.metrics
    }

    fn class(&self, caller: Option<&str>) -> Class {
        if caller.is_some() {
            self.callers
        } else {
            self.anonymous
        }
    }

    /// The retry hint of refusals made for the bus's own full queue.
    pub fn bus_full(&self) -> Refusal {
        Refusal::BusFull {
            retry_after: self.retry_after,
        }
    }

    /// Checks the work queue and takes a token of `caller`'s bucket (steps 1 and 2).
    pub async fn admit(&self, bus: &Arc<dyn Bus>, caller: Option<&str>) -> Result<(), Refusal> {
        if self.queue_limit > 0 {
            if let Some(waiting) = self.gauge.waiting(bus) {
                if waiting > self.queue_limit {
                    return Err(Refusal::QueueFull {
                        limit: self.queue_limit,
                        retry_after: self.retry_after,
                    });
                }
            }
        }
        let class = self.class(caller);
        if class.rate <= 0.0 {
            return Ok(());
        }
        let key = key(caller);
        let wait = match &self.shared {
            // Boxed: a Redis round trip's future is ~10 KiB, and every request's future would
            // otherwise reserve room for it whether or not limits are shared.
            Some(redis) => match Box::pin(shared::take(redis, &key, class.rate, class.burst)).await
            {
                Ok(wait) => {
                    self.shared_answered();
                    wait
                }
                Err(why) => {
                    self.fell_back(&why);
                    self.local.take(&key, class.rate, class.burst)
                }
            },
            None => self.local.take(&key, class.rate, class.burst),
        };
        match wait {
            None => Ok(()),
            Some(retry_after) => Err(Refusal::Rate { retry_after }),
        }
    }

    /// Counts `task_id`'s run open for `caller` unless the caller's limit is reached (step
    /// 3); true when this counted a new run. A new run counted for a message that is then
    /// not accepted is handed back with [`Limits::close`].
    pub async fn open(&self, caller: Option<&str>, task_id: &str) -> Result<bool, Refusal> {
        let class = self.class(caller);
        if class.max_open == 0 || !*self.watching.lock() {
            return Ok(false);
        }
        let key = key(caller);
        let counted = match &self.shared {
            Some(redis) => {
                // Boxed, as in `admit`.
                match Box::pin(shared::open(
                    redis,
                    &key,
                    task_id,
                    class.max_open,
                    self.open_ttl,
                ))
                .await
                {
                    Ok(counted) => {
                        self.shared_answered();
                        counted
                    }
                    Err(why) => {
                        self.fell_back(&why);
                        self.local.open(&key, task_id, class.max_open)
                    }
                }
            }
            None => self.local.open(&key, task_id, class.max_open),
        };
        if !counted {
            return Err(Refusal::OpenTasks {
                max: class.max_open,
                retry_after: self.retry_after,
            });
        }
        // A follow-up on a run already counted is no new run: handing it back (when the
        // follow-up is refused) must not release the run that goes on.
        let fresh = !self.tracked.contains_key(task_id);
        self.tracked.insert(task_id.to_string(), key);
        Ok(fresh)
    }

    /// `task_id`'s run ended (or was never accepted): it no longer counts.
    pub async fn close(&self, task_id: &str) {
        let Some(key) = self.tracked.remove(task_id) else {
            return;
        };
        self.local.close(&key, task_id);
        if let Some(redis) = &self.shared {
            // Not counted by Redis any more when it is down: the entry expires there.
            // Boxed, as in `admit`.
            if let Err(why) = Box::pin(shared::close(redis, &key, task_id)).await {
                tracing::debug!(error = %why, "could not release an open task in Redis; it expires there");
            }
        }
    }

    /// Subscribes to the agent's events and returns the task that releases the runs this
    /// replica counted open when they end, until `stop`. Without it open tasks are not
    /// limited (nothing would release them): the composition root spawns it when a limit on
    /// open tasks is configured; `None` when none is (or the bus refused the subscription).
    pub async fn watcher(
        self: Arc<Self>,
        bus: &Arc<dyn Bus>,
        store: Arc<dyn TaskStore>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        if self.callers.max_open == 0 && self.anonymous.max_open == 0 {
            return None;
        }
        let mut events = match bus.subscribe_all().await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch task events: open tasks per caller are not limited");
                return None;
            }
        };
        *self.watching.lock() = true;
        Some(async move {
            let mut reconciled: Option<Instant> = None;
            loop {
                let next = tokio::select! {
                    next = events.next() => next,
                    _ = stop.cancelled() => break,
                };
                match next {
                    Some(Ok(e)) if e.is_final() => self.close(e.task_id()).await,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        // Ends may have been missed: the store says which runs ended, at
                        // most once per RECONCILE_EVERY (ends missed in between count until
                        // the next one, or `open_task_ttl`).
                        if reconciled.is_none_or(|at| at.elapsed() >= RECONCILE_EVERY) {
                            reconciled = Some(Instant::now());
                            let released = self.reconcile(store.as_ref()).await;
                            tracing::warn!(error = %e, released, "the open-task watcher missed task events; the runs it counted were checked in the task store");
                        }
                    }
                    None => {
                        tracing::warn!("the agent's event stream ended: open tasks per caller are no longer limited on this replica");
                        break;
                    }
                }
            }
            *self.watching.lock() = false;
        })
    }

    /// Releases the counted runs the store says have ended (or are gone), reading at most
    /// [`RECONCILE_MAX`] of them; how many were released.
    async fn reconcile(&self, store: &dyn TaskStore) -> usize {
        let ids: Vec<Arc<String>> = self
            .tracked
            .iter()
            .map(|(id, _)| id)
            .take(RECONCILE_MAX)
            .collect();
        let mut released = 0;
        for id in ids {
            let ended = match store.get(&id, Access::Internal).await {
                Ok(snap) => {
                    let state = snap.task.status.state;
                    state.is_terminal() || state.is_interrupted()
                }
                Err(StoreError::NotFound(_)) => true,
                Err(_) => false,
            };
            if ended {
                self.close(&id).await;
                released += 1;
            }
        }
        released
    }

    fn shared_answered(&self) {
        if self.falling_back.swap(false, Ordering::Relaxed) {
            tracing::info!(
                "Redis answers again; per-caller limits are shared by the replicas again"
            );
        }
    }

    fn fell_back(&self, why: &str) {
        self.metrics.fallbacks.inc();
        if !self.falling_back.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %why, "Redis did not answer a limit check; until it does, each replica limits callers with its own buckets");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_its_reason_and_a_whole_retry_after() {
        let r = Refusal::Rate {
            retry_after: Duration::from_millis(1200),
        };
        assert_eq!(r.retry_after_secs(), 2);
        let e = r.error();
        assert_eq!(e.code, code::TOO_MANY_REQUESTS);
        assert_eq!(e.data.as_ref().unwrap()["reason"], "rate");
        assert_eq!(e.data.as_ref().unwrap()["retryAfter"], 2);
        let r = Refusal::Rate {
            retry_after: Duration::from_millis(1),
        };
        assert_eq!(r.retry_after_secs(), 1, "never Retry-After: 0");
    }

    #[tokio::test]
    async fn after_missed_events_the_store_says_which_runs_ended() {
        use bindu_engine::store::conformance::{run_to, submit_new};
        use bindu_schemas::TaskState;
        let config = LimitsConfig {
            max_open_tasks: 2,
            ..LimitsConfig::default()
        };
        let limits = Limits::new(&config, None);
        *limits.watching.lock() = true;
        let store = bindu_engine::store::MemoryStore::default();
        let ended = submit_new(&store, Some("c")).await.task.id;
        let running = submit_new(&store, Some("c")).await.task.id;
        assert_eq!(limits.open(Some("c"), &ended).await, Ok(true));
        assert_eq!(limits.open(Some("c"), &running).await, Ok(true));
        assert!(limits.open(Some("c"), "third").await.is_err());
        // The end of `ended` was never seen (a lagging event stream).
        run_to(&store, &ended, TaskState::Completed).await;
        assert_eq!(limits.reconcile(&store).await, 1);
        assert_eq!(limits.open(Some("c"), "third").await, Ok(true));
    }

    #[test]
    fn the_limits_add_little_to_every_requests_future() {
        // Every request awaits `admit`, and every send `open` and `close`: a Redis round
        // trip inlined in them made each request's future ~10 KiB larger (moved whole into
        // its task, and past the allocator's small sizes), limits shared or not.
        let limits = Limits::new(&LimitsConfig::default(), None);
        let bus: Arc<dyn Bus> = Arc::new(bindu_engine::bus::MemoryBus::default());
        assert!(std::mem::size_of_val(&limits.admit(&bus, None)) < 1024);
        assert!(std::mem::size_of_val(&limits.open(None, "t")) < 1024);
        assert!(std::mem::size_of_val(&limits.close("t")) < 1024);
    }

    #[test]
    fn a_bucket_holds_at_least_one_token() {
        assert_eq!(Class::new(0.2, 0, 0).burst, 1);
        assert_eq!(Class::new(5.5, 0, 0).burst, 6);
        assert_eq!(Class::new(5.0, 20, 0).burst, 20);
    }
}
