//! Shared pieces of the dispatcher tests: programmable loopback webhook receivers, a
//! loopback-only dispatcher, and task submission the way ingress does it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bindu_engine::bus::conformance::command_for;
use bindu_engine::bus::{BusError, MemoryBus};
use bindu_engine::config::PushDestinations;
use bindu_engine::identity::Identity;
use bindu_engine::store::conformance::user_message;
use bindu_engine::store::flaky::Flaky;
use bindu_engine::store::{DeadLetterStore, SubmitRequest, Submitted, TaskStore};
use bindu_engine::Bus;
use bindu_schemas::PushNotificationConfig;
use bindu_workers::dispatcher::{DeliveryOptions, DispatcherMetrics};
use bindu_workers::handler::handler_fn;
use bindu_workers::{
    Dispatcher, DispatcherOptions, Handler, HandlerError, HandlerInput, HandlerOutput,
    WorkerOptions, WorkerPool,
};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(30);

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub json: serde_json::Value,
}

impl Received {
    pub fn task_id(&self) -> String {
        self.json["taskId"].as_str().unwrap_or_default().to_string()
    }
    pub fn seq(&self) -> u64 {
        self.json["sequence"].as_u64().unwrap_or(0)
    }
    pub fn event_id(&self) -> String {
        self.json["eventId"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Whether `body` carries this request's signature by the test agent's ([`identity`])
    /// webhook key, within a minute's skew.
    pub fn verify(
        &self,
        body: &[u8],
    ) -> Result<(), bindu_workers::dispatcher::notification::VerifyError> {
        let id = identity();
        bindu_workers::dispatcher::notification::verify(
            &self.headers,
            body,
            &id.did,
            &id.webhook_public_key_base58(),
            Duration::from_secs(60),
        )
    }
}

/// What a receiver answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// A status with extra headers (Retry-After, Location).
    With(u16, Vec<(&'static str, String)>),
    /// Never answers (until the client gives up).
    Hang,
}

type Behaviour = dyn Fn(&Received, usize) -> Reply + Send + Sync;

struct ReceiverState {
    got: Mutex<Vec<Received>>,
    /// Requests per event id so far.
    per_event: Mutex<HashMap<String, usize>>,
    behaviour: Mutex<Arc<Behaviour>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    delay: Mutex<Duration>,
}

/// A webhook receiver on a loopback port.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let r = Received {
        headers,
        body,
        json,
    };
    let nth = {
        let mut per = state.per_event.lock();
        let n = per.entry(r.event_id()).or_default();
        *n += 1;
        *n
    };
    let reply = (state.behaviour.lock().clone())(&r, nth);
    let delay = *state.delay.lock();
    state.got.lock().push(r);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = match reply {
        Reply::Status(s) => StatusCode::from_u16(s)
            .unwrap_or(StatusCode::OK)
            .into_response(),
        Reply::With(s, headers) => {
            let mut resp = StatusCode::from_u16(s)
                .unwrap_or(StatusCode::OK)
                .into_response();
            for (k, v) in headers {
                resp.headers_mut()
                    .insert(k, v.parse().expect("header value"));
            }
            resp
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    };
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

impl Receiver {
    /// The loopback port the receiver listens on.
    pub fn port(&self) -> String {
        self.url
            .split(':')
            .nth(2)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    }

    /// A receiver answering 200 to everything.
    pub async fn start() -> Receiver {
        Self::with(|_, _| Reply::Status(200)).await
    }

    /// `behaviour(request, n)`: the answer to the `n`th request (from 1) for that event.
    pub async fn with(
        behaviour: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let state = Arc::new(ReceiverState {
            got: Mutex::new(Vec::new()),
            per_event: Mutex::new(HashMap::new()),
            behaviour: Mutex::new(Arc::new(behaviour)),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            delay: Mutex::new(Duration::ZERO),
        });
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    pub fn set_behaviour(
        &self,
        behaviour: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) {
        *self.state.behaviour.lock() = Arc::new(behaviour);
    }

    /// Every answer is held back this long.
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock() = delay;
    }

    pub fn got(&self) -> Vec<Received> {
        self.state.got.lock().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `done(requests)` holds; panics after [`WAIT`].
    /// Waits for at least `n` requests (see [`Receiver::wait_until`]).
    pub async fn wait_for(&self, what: &str, n: u64) -> Vec<Received> {
        self.wait_until(what, |g| g.len() as u64 >= n).await
    }

    pub async fn wait_until(
        &self,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; received {} request(s): {:?}",
                got.len(),
                got.iter().map(|r| r.event_id()).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until `done()` holds; panics after [`WAIT`].
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no dead letter is pending: every parked notification was delivered (and
/// none given up); panics after [`WAIT`].
pub async fn wait_until_none_pending(dead: &dyn DeadLetterStore) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while dead.pending().await.expect("pending") > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "notifications still pending: {:?}",
            dead.list(10, true).await.expect("list")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Webhook attempts that timed out so far.
pub fn timeouts(metrics: &DispatcherMetrics) -> u64 {
    metrics
        .attempts
        .get_or_create(&bindu_workers::dispatcher::metrics::ResultLabels { result: "timeout" })
        .get()
}

/// Requests of one task, in arrival order, as sequence numbers.
pub fn seqs_of(got: &[Received], task_id: &str) -> Vec<u64> {
    got.iter()
        .filter(|r| r.task_id() == task_id)
        .map(|r| r.seq())
        .collect()
}

/// Delivery settings for tests: loopback only, quick retries, short timeouts.
pub fn delivery_options() -> DeliveryOptions {
    DeliveryOptions {
        destinations: PushDestinations {
            loopback: true,
            ..Default::default()
        },
        max_attempts: 4,
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        timeout: Duration::from_secs(1),
        per_host_concurrency: 8,
        max_pending_per_destination: 100,
        max_parked_per_destination: 10_000,
        sign: true,
    }
}

pub fn identity() -> Arc<Identity> {
    Arc::new(Identity::new(
        ed25519_dalek::SigningKey::from_bytes(&[42; 32]),
        "tests@example.com",
        "push-agent",
    ))
}

/// A dispatcher running in the background; stopped with `stop`.
pub struct Running {
    pub metrics: DispatcherMetrics,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn start_dispatcher(
    store: Arc<dyn TaskStore>,
    bus: Arc<dyn Bus>,
    dead_letters: Arc<dyn DeadLetterStore>,
    options: DispatcherOptions,
) -> Running {
    let metrics = DispatcherMetrics::default();
    let stop = CancellationToken::new();
    let dispatcher = Dispatcher::new(
        store,
        bus,
        dead_letters,
        Some(identity()),
        options,
        metrics.clone(),
    )
    .expect("dispatcher");
    let run = dispatcher.start(stop.clone()).await.expect("start");
    let task = tokio::spawn(async move {
        run.await.expect("dispatcher run");
    });
    Running {
        metrics,
        stop,
        task,
    }
}

pub fn options() -> DispatcherOptions {
    DispatcherOptions {
        delivery: delivery_options(),
        gap_wait: Duration::from_millis(500),
        ..DispatcherOptions::default()
    }
}

pub fn config(url: &str, token: Option<&str>) -> PushNotificationConfig {
    PushNotificationConfig {
        url: url.to_string(),
        id: Some(uuid::Uuid::new_v4().to_string()),
        token: token.map(str::to_string),
        authentication: None,
        a2a_version: None,
    }
}

/// Records a new task with its push configs and queues it, the way ingress does: the
/// task with its configs, its `submitted` event (flagged `pushConfigured` when it has any,
/// as the ingress flags a send that carries one), then the command. Every config is stored
/// before the task can start.
pub async fn submit(
    store: &Arc<dyn TaskStore>,
    bus: &Arc<dyn Bus>,
    task_id: &str,
    configs: Vec<PushNotificationConfig>,
) {
    let any = !configs.is_empty();
    let mut configs = configs.into_iter();
    let submitted = store
        .submit(SubmitRequest {
            owner: None,
            task_id: task_id.to_string(),
            context_id: None,
            message: user_message("hello"),
            push_config: configs.next(),
            dedupe: None,
        })
        .await
        .expect("submit");
    for c in configs {
        store
            .set_push_config(task_id, bindu_engine::store::Access::Internal, c)
            .await
            .expect("set push config");
    }
    let mut event = submitted.event.clone();
    event.push_configured = any;
    bus.publish_events(vec![event])
        .await
        .expect("publish submitted");
    bus.publish_commands(vec![bindu_engine::bus::conformance::command_for(
        &submitted,
    )])
    .await
    .expect("publish command");
}

/// Records and queues `n` tasks `{prefix}-{i}` (see [`submit`]), each with one push config
/// for `url`.
pub async fn submit_many(
    store: &Arc<dyn TaskStore>,
    bus: &Arc<dyn Bus>,
    prefix: &str,
    n: usize,
    url: &str,
) {
    for i in 0..n {
        submit(
            store,
            bus,
            &format!("{prefix}-{i}"),
            vec![config(url, None)],
        )
        .await;
    }
}

/// Counter value of `bindu_push_deliveries_total{outcome}`.
pub fn outcomes(metrics: &DispatcherMetrics, outcome: &'static str) -> u64 {
    metrics
        .deliveries
        .get_or_create(&bindu_workers::dispatcher::metrics::OutcomeLabels { outcome })
        .get()
}

/// A handler that answers every task with the text "done".
pub fn done_handler() -> impl Handler {
    answers("done")
}

/// A handler that answers every task with `text`.
pub fn answers(text: &'static str) -> impl Handler {
    handler_fn(move |_input: HandlerInput| async move {
        Ok::<_, HandlerError>(HandlerOutput::Text(text.into()))
    })
}

/// A task store, a bus and a dead-letter store in memory, with a worker pool (`options`)
/// answering every task with "ok" until the token returned is cancelled.
pub fn memory_agent(options: WorkerOptions) -> MemoryAgent {
    let store: Arc<dyn TaskStore> = Arc::new(bindu_engine::store::MemoryStore::default());
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    let dead: Arc<dyn DeadLetterStore> =
        Arc::new(bindu_engine::store::MemoryDeadLetters::default());
    let stop = CancellationToken::new();
    spawn_pool(store.clone(), bus.clone(), answers("ok"), options, &stop);
    MemoryAgent {
        store,
        bus,
        dead,
        stop,
    }
}

/// What [`memory_agent`] runs on, and what stops its workers.
pub struct MemoryAgent {
    pub store: Arc<dyn TaskStore>,
    pub bus: Arc<dyn Bus>,
    pub dead: Arc<dyn DeadLetterStore>,
    pub stop: CancellationToken,
}

/// Asserts that `task_id`'s notifications in `got` came in order, numbered from 1.
pub fn assert_in_order(got: &[Received], task_id: &str) {
    let seqs = seqs_of(got, task_id);
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "in order"
    );
}

/// Worker options of a busy agent: 16 tasks at once, a 1 s drain timeout and heartbeat.
pub fn busy_pool_options() -> WorkerOptions {
    WorkerOptions {
        concurrency: 16,
        drain_timeout: Duration::from_secs(1),
        heartbeat: Duration::from_secs(1),
        ..WorkerOptions::default()
    }
}

/// Worker options with `concurrency` and a 5 s drain timeout.
pub fn pool_options(concurrency: usize) -> WorkerOptions {
    WorkerOptions {
        concurrency,
        drain_timeout: Duration::from_secs(5),
        ..WorkerOptions::default()
    }
}

/// Runs a worker pool of `handler` on `store` and `bus` in the background until `stop`.
pub fn spawn_pool(
    store: Arc<dyn TaskStore>,
    bus: Arc<dyn Bus>,
    handler: impl Handler + 'static,
    options: WorkerOptions,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), BusError>> {
    let pool = WorkerPool::new(store, bus, Arc::new(handler), options);
    tokio::spawn(pool.run(stop.clone()))
}

/// Polls `store` (bounded by `within`) until task `task_id` is terminal or paused; the task.
pub async fn settled(
    store: &dyn TaskStore,
    task_id: &str,
    within: Duration,
) -> bindu_schemas::Task {
    task_once(store, task_id, within, |s| s.is_final()).await
}

/// Polls `store` (bounded by `within`) until task `task_id`'s state is `done`; the task.
pub async fn task_once(
    store: &dyn TaskStore,
    task_id: &str,
    within: Duration,
    done: impl Fn(&bindu_schemas::TaskState) -> bool,
) -> bindu_schemas::Task {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let t = store
            .get(task_id, bindu_engine::store::Access::Internal)
            .await
            .expect("get")
            .task;
        if done(&t.status.state) {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {task_id} still {:?} after {within:?}",
            t.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Records task `task_id` with the user message `text` (no owner, context or push config).
pub async fn submit_task(store: &dyn TaskStore, task_id: &str, text: &str) -> Submitted {
    store
        .submit(SubmitRequest::new(task_id, user_message(text)))
        .await
        .expect("submit")
}

/// A worker pool of [`done_handler`] on a [`Flaky`] store and a memory bus, running until
/// [`FlakyPool::stop`].
pub struct FlakyPool {
    pub store: Arc<Flaky>,
    pub bus: Arc<MemoryBus>,
    pub stop: CancellationToken,
    pub pool: tokio::task::JoinHandle<Result<(), BusError>>,
}

impl FlakyPool {
    pub fn start(concurrency: usize) -> FlakyPool {
        let store = Arc::new(Flaky::new());
        let bus = Arc::new(MemoryBus::new(64));
        let stop = CancellationToken::new();
        let pool = spawn_pool(
            store.clone(),
            bus.clone(),
            done_handler(),
            pool_options(concurrency),
            &stop,
        );
        FlakyPool {
            store,
            bus,
            stop,
            pool,
        }
    }

    /// Queues the command of a task recorded as `submitted`, as ingress does.
    pub async fn queue(&self, submitted: &Submitted) {
        self.bus
            .publish_commands(vec![command_for(submitted)])
            .await
            .unwrap();
    }

    /// Stops the pool and waits for it.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.pool.await;
    }
}
