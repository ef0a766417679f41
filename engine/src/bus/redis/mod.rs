//! Redis Streams bus (Redis 6.2 or later; written against Redis 7).
//!
//! Every key of an agent starts with `bindu:{<agent>}:` (one hash tag: one cluster slot).
//!
//! - Commands: the stream `…:commands`, read by the consumer group `workers` (every worker
//!   process's streams are consumers of it) with `XREADGROUP` and explicit `XACK` (the
//!   acked entry is deleted with `XDEL`, so the stream holds only commands not yet done).
//!   A command whose consumer stays silent for the ack wait (a dead or stuck worker;
//!   running handlers reset the clock with in-progress acks, an `XCLAIM … JUSTID`) is
//!   reclaimed by another consumer (`XPENDING … IDLE` then `XCLAIM`, which only one
//!   consumer wins). A nack sets the entry's idle time so that it is reclaimed after the
//!   delay (at most the ack wait). After `max_deliver` deliveries the command is reported
//!   [exhausted](Bus::exhausted_commands) to one worker (claimed by the consumer
//!   `dead-letters`), which fails the task and moves it to `…:deadletter`.
//! - Events: each message (one event, or a task's consecutive events of one publish) goes
//!   to the task's stream `…:task:<task>` (expiring `event_retention` after its last event:
//!   replays, Last-Event-ID) and to the agent's stream `…:events` (trimmed with
//!   `MINID ~` to `event_retention`): live readers of a process share one reader of it
//!   that hands each event to the subscribers of its task ([`super::router`]); durable
//!   consumers are consumer groups on it. Push-config notices go to `…:events` only.
//! - Cancel: the stream `…:cancel` (capped with `MAXLEN ~`), tailed by every worker.
//!
//! What survives a Redis restart is what Redis persisted: with `appendonly yes` and
//! `appendfsync always` every acknowledged publish; with `everysec` up to a second of them;
//! with RDB snapshots only, everything since the last snapshot may be lost.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bindu_schemas::bus::{TaskCommand, TaskEvent};
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::*;

mod commands;
mod events;
mod wire;

#[derive(Debug, Clone)]
pub struct RedisBusOptions {
    pub url: String,
    /// The agent's namespace (every key derives from it).
    pub agent: String,
    /// How long task events stay replayable (and readable by a durable consumer).
    pub event_retention: Duration,
    /// A command's consumer silent this long (no ack, no in-progress) loses it to another.
    pub ack_wait: Duration,
    /// Deliveries of one command before it is dead-lettered.
    pub max_deliver: u64,
    /// Commands one read takes at once (at most; a worker holds what it read).
    pub prefetch: usize,
    /// Longest one command to Redis may take before it fails (blocking reads excepted).
    pub command_timeout: Duration,
}

impl RedisBusOptions {
    pub fn new(url: impl Into<String>, agent: impl Into<String>) -> Self {
        RedisBusOptions {
            url: url.into(),
            agent: agent.into(),
            event_retention: Duration::from_secs(24 * 3600),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            prefetch: 16,
            command_timeout: Duration::from_secs(5),
        }
    }
}

/// How long a blocking read waits for entries before it asks again.
const BLOCK: Duration = Duration::from_millis(1000);
/// The consumer group of the workers on the commands stream.
const GROUP: &str = "workers";
/// The consumer that holds commands reported exhausted until they are dead-lettered.
const DEAD: &str = "dead-letters";

/// A Redis error as text: its kind and details (fred's errors name no URL or credential).
/// Sends `pipeline` and checks every reply (an error: "`what` not stored"), then records
/// the publish time.
async fn stored(
    pipeline: fred::clients::Pipeline<Client>,
    what: &str,
    started: std::time::Instant,
) -> Result<(), BusError> {
    for r in pipeline.try_all::<Value>().await {
        r.map_err(|e| BusError::Unavailable(format!("{what} not stored: {}", e.details())))?;
    }
    super::published(started);
    Ok(())
}

/// `XADD key [MINID ~ <min_id>] * <fields>`'s arguments.
fn xadd_args(key: &str, min_id: Option<u64>, fields: Vec<(String, Value)>) -> Vec<Value> {
    let mut args: Vec<Value> = vec![key.into()];
    if let Some(min) = min_id {
        args.extend(["MINID".into(), "~".into(), min.to_string().into()]);
    }
    args.push("*".into());
    for (k, v) in fields {
        args.push(k.into());
        args.push(v);
    }
    args
}

fn describe(e: &fred::error::Error) -> BusError {
    BusError::Unavailable(format!("Redis: {:?}: {}", e.kind(), e.details()))
}

pub(super) fn cmd(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

/// The keys of one agent.
#[derive(Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    fn new(agent: &str) -> Self {
        Keys {
            prefix: format!("bindu:{{{}}}:", bindu_schemas::bus::subjects::token(agent)),
        }
    }
    pub(super) fn commands(&self) -> String {
        format!("{}commands", self.prefix)
    }
    pub(super) fn events(&self) -> String {
        format!("{}events", self.prefix)
    }
    pub(super) fn task(&self, task_id: &str) -> String {
        format!("{}task:{task_id}", self.prefix)
    }
    pub(super) fn cancel(&self) -> String {
        format!("{}cancel", self.prefix)
    }
    pub(super) fn dead_letters(&self) -> String {
        format!("{}deadletter", self.prefix)
    }
}

/// What the bus's background readers share with it.
pub(super) struct Core {
    client: Client,
    config: Config,
    options: RedisBusOptions,
    keys: Keys,
    /// Exhausted commands handed out, by position, until dead-lettered.
    exhausted: dashmap::DashMap<u64, String>,
    next_position: std::sync::atomic::AtomicU64,
}

pub struct RedisBus {
    core: Arc<Core>,
    router: super::router::TaskRouter,
    /// Every event read by the shared reader of `…:events`, for `subscribe_all`.
    all: tokio::sync::broadcast::Sender<Arc<TaskEvent>>,
    /// The shared reader of `…:events`, started with the first live reader.
    tail: tokio::sync::OnceCell<()>,
    intake: CancellationToken,
    /// Ends the bus's background readers when it is dropped.
    closed: CancellationToken,
    /// Each durable consumer's current opening (a newer one ends the older streams).
    openings: Arc<dashmap::DashMap<String, u64>>,
    depth: tokio::sync::Mutex<Option<(std::time::Instant, QueueDepth)>>,
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.closed.cancel();
        let client = self.core.client.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

/// How old a queue depth may be before it is read again from the server.
const DEPTH_MAX_AGE: Duration = Duration::from_millis(250);

impl RedisBus {
    /// Connects, and creates the workers' consumer group.
    pub async fn connect(options: RedisBusOptions) -> Result<Self, BusError> {
        let config = Config::from_url(&options.url).map_err(|e| {
            BusError::Unavailable(format!("REDIS_URL is not a Redis URL: {:?}", e.kind()))
        })?;
        let client = Core::client(&config, options.command_timeout).await?;
        let (all, _) = tokio::sync::broadcast::channel(4096);
        let bus = RedisBus {
            core: Arc::new(Core {
                client,
                config,
                keys: Keys::new(&options.agent),
                options,
                exhausted: Default::default(),
                next_position: std::sync::atomic::AtomicU64::new(1),
            }),
            router: Default::default(),
            all,
            tail: tokio::sync::OnceCell::new(),
            intake: CancellationToken::new(),
            closed: CancellationToken::new(),
            openings: Default::default(),
            depth: tokio::sync::Mutex::new(None),
        };
        create_group(&bus.core.client, &bus.core.keys.commands(), GROUP, "0").await?;
        Ok(bus)
    }

    /// Deletes every key of this bus's agent (tests: each uses an agent of its own).
    #[cfg(any(test, feature = "testing"))]
    pub async fn purge(&self) -> Result<(), BusError> {
        self.core.purge().await
    }
}

impl Core {
    /// A connected client whose commands fail after `timeout`; it reconnects forever
    /// (100 ms, doubling, at most 2 s apart).
    async fn client(config: &Config, timeout: Duration) -> Result<Client, BusError> {
        let client = Builder::from_config(config.clone())
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(5);
            })
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2000, 2))
            .build()
            .map_err(|e| describe(&e))?;
        match tokio::time::timeout(Duration::from_secs(10), client.init()).await {
            Ok(Ok(_)) => Ok(client),
            Ok(Err(e)) => {
                let _ = client.quit().await;
                Err(BusError::Unavailable(format!(
                    "cannot connect to Redis: {:?}: {}",
                    e.kind(),
                    e.details()
                )))
            }
            Err(_) => {
                let _ = client.quit().await;
                Err(BusError::Unavailable(
                    "cannot connect to Redis: no answer within 10 s".into(),
                ))
            }
        }
    }

    /// A connection of its own, for blocking reads (they hold their connection).
    pub(super) async fn blocking_client(&self) -> Result<Client, BusError> {
        Self::client(&self.config, BLOCK + self.options.command_timeout).await
    }

    /// Runs one command on the shared connection.
    pub(super) async fn run(
        &self,
        name: &'static str,
        args: Vec<Value>,
    ) -> Result<Value, BusError> {
        self.client
            .custom::<Value, Value>(cmd(name), args)
            .await
            .map_err(|e| describe(&e))
    }

    /// Deletes every key of this bus's agent (tests: each uses an agent of its own).
    #[cfg(any(test, feature = "testing"))]
    pub(super) async fn purge(&self) -> Result<(), BusError> {
        let mut cursor = "0".to_string();
        let pattern = format!("{}*", self.keys.prefix);
        for _ in 0..10_000 {
            let reply = self
                .run(
                    "SCAN",
                    vec![
                        cursor.clone().into(),
                        "MATCH".into(),
                        pattern.clone().into(),
                        "COUNT".into(),
                        1000.into(),
                    ],
                )
                .await?;
            let Value::Array(mut parts) = reply else {
                break;
            };
            let keys = parts.pop().map(Value::into_array).unwrap_or_default();
            cursor = parts
                .pop()
                .and_then(|c| c.as_string())
                .unwrap_or_else(|| "0".into());
            if !keys.is_empty() {
                self.run("DEL", keys).await?;
            }
            if cursor == "0" {
                break;
            }
        }
        Ok(())
    }
}

/// `XGROUP CREATE key group start MKSTREAM`, fine when the group exists.
pub(super) async fn create_group(
    client: &Client,
    key: &str,
    group: &str,
    start: &str,
) -> Result<(), BusError> {
    let created = client
        .custom::<Value, Value>(
            cmd("XGROUP"),
            vec![
                "CREATE".into(),
                key.into(),
                group.into(),
                start.into(),
                "MKSTREAM".into(),
            ],
        )
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.details().contains("BUSYGROUP") => Ok(()),
        Err(e) => Err(describe(&e)),
    }
}

/// Whether an error says the consumer group (or its stream) is gone: Redis restarted
/// without persistence, or the keys were deleted.
pub(super) fn no_group(e: &BusError) -> bool {
    matches!(e, BusError::Unavailable(m) if m.contains("NOGROUP"))
}

#[async_trait]
impl Bus for RedisBus {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ready(&self) -> Result<(), BusError> {
        self.core.run("PING", Vec::new()).await.map(|_| ())
    }

    async fn publish_commands(&self, commands: Vec<TaskCommand>) -> Result<(), BusError> {
        self.core.publish_commands_now(commands).await
    }

    async fn queue_depth(&self) -> Result<QueueDepth, BusError> {
        let mut last = self.depth.lock().await;
        if let Some((at, depth)) = *last {
            if at.elapsed() < DEPTH_MAX_AGE {
                return Ok(depth);
            }
        }
        let depth = self.core.read_depth().await?;
        *last = Some((std::time::Instant::now(), depth));
        Ok(depth)
    }

    async fn consume_commands(&self) -> Result<CommandStream, BusError> {
        let reader = self.core.reader().await?;
        Ok(
            commands::command_stream(self.core.clone(), reader, self.closed.clone())
                .take_until(self.intake.clone().cancelled_owned())
                .boxed(),
        )
    }

    async fn close_intake(&self) {
        self.intake.cancel();
    }

    async fn publish_events(&self, events: Vec<TaskEvent>) -> Result<(), BusError> {
        self.core.append_events(&events).await
    }

    async fn subscribe_task(&self, task_id: &str) -> Result<EventStream, BusError> {
        self.ensure_tail().await?;
        Ok(self.router.subscribe(task_id))
    }

    async fn subscribe_all(&self) -> Result<EventStream, BusError> {
        let rx = self.all.subscribe();
        self.ensure_tail().await?;
        Ok(super::router::broadcast_stream(rx))
    }

    async fn consume_events(&self, durable_name: &str) -> Result<DurableEventStream, BusError> {
        self.durable_events(durable_name).await
    }

    async fn push_configs_changed(&self, task_id: &str) -> Result<(), BusError> {
        self.core.notice(task_id).await
    }

    fn orders_push_notices(&self) -> bool {
        true
    }

    async fn signal_cancel(&self, task_id: &str) -> Result<(), BusError> {
        self.core
            .run(
                "XADD",
                vec![
                    self.core.keys.cancel().into(),
                    "MAXLEN".into(),
                    "~".into(),
                    10_000.into(),
                    "*".into(),
                    wire::TASK.into(),
                    task_id.into(),
                ],
            )
            .await
            .map(|_| ())
    }

    async fn cancel_signals(&self) -> Result<CancelStream, BusError> {
        let entries = self.tail_stream(self.core.keys.cancel()).await?;
        Ok(entries
            .filter_map(|e| async move { e.text(wire::TASK) })
            .boxed())
    }

    fn keeps_history(&self) -> bool {
        true
    }

    fn commands_outlive_process(&self) -> bool {
        true
    }

    async fn replay_task(&self, task_id: &str, after_seq: u64) -> Result<EventStream, BusError> {
        self.replay(task_id, after_seq).await
    }

    async fn exhausted_commands(&self) -> Result<ExhaustedStream, BusError> {
        Ok(commands::exhausted_stream(
            self.core.clone(),
            self.closed.clone(),
        ))
    }

    async fn dead_letter(&self, exhausted: &Exhausted) -> Result<(), BusError> {
        self.core.move_to_dead_letters(exhausted).await
    }
}
