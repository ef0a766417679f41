//! NATS JetStream bus.
//!
//! - Commands: a work-queue stream on `bindu.<agent>.tasks.commands`, consumed by one durable
//!   pull consumer (`workers`) shared by every worker process, with explicit acks, an ack
//!   wait (extended by in-progress acks while a handler runs) and a delivery limit. Publishes
//!   carry `Nats-Msg-Id` so a repeated publish within the duplicate window is dropped.
//! - Events: a limits stream on `bindu.<agent>.tasks.events.<task>` kept for the retention
//!   age. Live readers of one task share one wildcard subscription per process
//!   (`bindu.<agent>.tasks.events.>`, opened with the first reader) that hands each event to
//!   the in-process subscribers of its task ([`super::router`]); events nobody here watches
//!   are dropped without being decoded. Replays use an ordered consumer filtered on the
//!   task's subject. An event over the server's payload limit is published truncated.
//! - Push-config notices: `bindu.<agent>.tasks.events.<task>.push` in the events stream, so
//!   a durable event consumer reads them in order with the events (live readers and
//!   replays never see them).
//! - Durable event consumers (the webhook dispatcher): a durable pull consumer on the events
//!   stream with explicit acks. Opening one reads its ack floor, then recreates it to start
//!   right after the floor, so a restarted reader gets every unacknowledged event again in
//!   stream order at once (not interleaved with redeliveries after the ack wait).
//! - Cancel: core NATS on `bindu.<agent>.tasks.cancel`.
//! - Exhausted commands: JetStream's max-deliveries advisory, read by one worker (queue
//!   group), which fails the task and moves the command to `bindu.<agent>.tasks.deadletter`
//!   (a stream of its own).
//!
//! Streams and the consumer are created or updated at start-up; concurrent starts are fine.
//! Written for nats-server 2.9 (no multi-filter consumers, no per-message fsync).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use bindu_schemas::bus::{subjects, PushConfigsChanged, TaskCommand, TaskEvent};
use futures::StreamExt;

use super::ack_floor::{AckFloor, MessageAck, PartAcker};
use super::*;
use crate::retry::RetryPolicy;
use tokio_util::sync::CancellationToken;

mod batch;
mod durable;
mod wire;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsStorage {
    File,
    Memory,
}

#[derive(Debug, Clone)]
pub struct NatsOptions {
    pub url: String,
    /// The agent's namespace (subjects and stream names derive from it).
    pub agent: String,
    pub replicas: usize,
    pub storage: NatsStorage,
    /// How long task events stay replayable.
    pub event_max_age: Duration,
    /// Redelivery deadline of a command without an ack or in-progress ack.
    pub ack_wait: Duration,
    /// Deliveries of one command before it is dead-lettered.
    pub max_deliver: i64,
    /// Wait (retrying) for the server at start-up instead of failing.
    pub wait_for_server: bool,
    /// Commands a worker may hold unacknowledged (prefetch bound).
    pub prefetch: usize,
    /// Redelivery deadline of an event held by a durable event consumer (webhook retries
    /// can take minutes; a redelivered event is recognised by its sequence number).
    pub event_ack_wait: Duration,
    /// Messages a durable event consumer may have delivered and not acknowledged. Acks are
    /// cumulative, so every message after the oldest unacknowledged one counts: past this,
    /// the server delivers nothing more until that one is acked.
    pub event_max_ack_pending: i64,
    /// Most commands one work-queue message carries ([`batch`]); 1 publishes each command
    /// on its own.
    pub command_batch: usize,
}

impl NatsOptions {
    pub fn new(url: impl Into<String>, agent: impl Into<String>) -> Self {
        NatsOptions {
            url: url.into(),
            agent: agent.into(),
            replicas: 1,
            storage: NatsStorage::File,
            event_max_age: Duration::from_secs(24 * 3600),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            wait_for_server: false,
            prefetch: 256,
            event_ack_wait: Duration::from_secs(600),
            event_max_ack_pending: 100_000,
            command_batch: 64,
        }
    }
}

/// `text` with every character a JetStream stream or consumer name cannot hold (they allow
/// fewer than subjects) replaced by `_`.
fn name_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn stream_name(agent: &str, what: &str) -> String {
    format!("BINDU_{}_{what}", name_safe(&subjects::token(agent)))
}

const CONSUMER: &str = "workers";

/// A JetStream consumer name from a free-form durable name.
fn consumer_name(durable: &str) -> String {
    let name = name_safe(durable);
    if name.is_empty() {
        "events".into()
    } else {
        name
    }
}

/// Start-up keeps retrying stream and consumer creation for up to 30 s.
fn setup_policy() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(50),
        max_delay: Duration::from_secs(2),
        deadline: Duration::from_secs(30),
    }
}

pub struct NatsBus {
    client: async_nats::Client,
    /// In-process readers of single tasks, keyed by the task's subject token.
    router: super::router::TaskRouter,
    /// The wildcard subscription feeding `router`, opened with the first reader.
    fanout: tokio::sync::OnceCell<()>,
    js: jetstream::Context,
    options: NatsOptions,
    commands_subject: String,
    commands_stream: String,
    events_stream: String,
    /// Cancelled by [`Bus::close_intake`]: command streams end.
    intake: tokio_util::sync::CancellationToken,
    /// The ack flusher of each durable event consumer opened here, by name: a reopening
    /// waits for the previous one's last flush before it reads the consumer's ack floor.
    flushers: std::sync::Mutex<std::collections::HashMap<String, tokio::task::JoinHandle<()>>>,
    /// The last queue depth read and when (held across the request: one read at a time).
    depth: tokio::sync::Mutex<Option<(std::time::Instant, QueueDepth)>>,
    /// Gathers commands into batch messages (absent with `command_batch` 1).
    batcher: Option<batch::Batcher>,
}

/// How old a queue depth may be before it is read again from the server.
const DEPTH_MAX_AGE: Duration = Duration::from_millis(250);

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl NatsBus {
    /// Connects and creates or updates the streams and the workers' consumer.
    pub async fn connect(options: NatsOptions) -> Result<Self, BusError> {
        let mut connect = async_nats::ConnectOptions::new()
            .name(format!("bindu:{}", options.agent))
            .connection_timeout(Duration::from_secs(5));
        if options.wait_for_server {
            connect = connect.retry_on_initial_connect();
        }
        let client = connect.connect(options.url.as_str()).await.map_err(|e| {
            // Credentials in the URL (user:password@, token@) stay out of the message.
            BusError::Unavailable(crate::redact::credentials_in(
                &format!(
                    "cannot connect to NATS at {}: {e}",
                    crate::redact::url_credentials(&options.url)
                ),
                &options.url,
            ))
        })?;
        let js = jetstream::new(client.clone());
        let storage = match options.storage {
            NatsStorage::File => stream::StorageType::File,
            NatsStorage::Memory => stream::StorageType::Memory,
        };
        let agent = options.agent.clone();
        let batcher = (options.command_batch > 1).then(|| {
            // The server's payload limit, less room for the headers.
            let max_bytes = client
                .server_info()
                .max_payload
                .saturating_sub(4096)
                .max(1024);
            batch::Batcher::start(
                js.clone(),
                subjects::commands(&agent),
                options.command_batch,
                max_bytes,
            )
        });
        let bus = NatsBus {
            batcher,
            router: super::router::TaskRouter::default(),
            fanout: tokio::sync::OnceCell::new(),
            flushers: Default::default(),
            depth: tokio::sync::Mutex::new(None),
            commands_subject: subjects::commands(&agent),
            commands_stream: stream_name(&agent, "COMMANDS"),
            events_stream: stream_name(&agent, "EVENTS"),
            intake: tokio_util::sync::CancellationToken::new(),
            client,
            js,
            options,
        };
        bus.ensure_stream(stream::Config {
            name: bus.commands_stream.clone(),
            subjects: vec![bus.commands_subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage,
            num_replicas: bus.options.replicas,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
        bus.ensure_stream(stream::Config {
            name: bus.events_stream.clone(),
            subjects: vec![subjects::all_events(&agent)],
            retention: stream::RetentionPolicy::Limits,
            max_age: bus.options.event_max_age,
            storage,
            num_replicas: bus.options.replicas,
            ..Default::default()
        })
        .await?;
        bus.ensure_stream(stream::Config {
            name: stream_name(&agent, "DEADLETTER"),
            subjects: vec![subjects::dead_letter(&agent)],
            retention: stream::RetentionPolicy::Limits,
            storage,
            num_replicas: bus.options.replicas,
            ..Default::default()
        })
        .await?;
        bus.consumer().await?;
        Ok(bus)
    }

    /// Creates the stream, or updates it when its settings changed; retried with back-off
    /// for up to 30 s. Concurrent starts: the loser of a creation race finds the stream on
    /// its next attempt.
    async fn ensure_stream(&self, config: stream::Config) -> Result<(), BusError> {
        setup_policy()
            .run(
                || async {
                    match self.js.get_stream(&config.name).await {
                        Ok(mut existing) => {
                            let current = existing.info().await.map(|i| i.config.clone());
                            let changed = current.map_or(true, |c| {
                                c.max_age != config.max_age
                                    || c.num_replicas != config.num_replicas
                                    || c.subjects != config.subjects
                            });
                            if changed {
                                self.js
                                    .update_stream(config.clone())
                                    .await
                                    .map(|_| ())
                                    .map_err(|e| e.to_string())
                            } else {
                                Ok(())
                            }
                        }
                        Err(_) => self
                            .js
                            .create_stream(config.clone())
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                    }
                },
                |_| true,
            )
            .await
            .map_err(|e| {
                BusError::Unavailable(format!("cannot create stream {}: {e}", config.name))
            })
    }

    async fn consumer(&self) -> Result<consumer::Consumer<consumer::pull::Config>, BusError> {
        let stream = self
            .js
            .get_stream(&self.commands_stream)
            .await
            .map_err(unavailable)?;
        let config = consumer::pull::Config {
            durable_name: Some(CONSUMER.into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.options.ack_wait,
            max_deliver: self.options.max_deliver,
            max_ack_pending: 100_000,
            ..Default::default()
        };
        setup_policy()
            .run(
                || stream.get_or_create_consumer(CONSUMER, config.clone()),
                |_| true,
            )
            .await
            .map_err(|e| BusError::Unavailable(format!("cannot create the workers' consumer: {e}")))
    }

    /// Opens the wildcard subscription that feeds the in-process task router (once).
    async fn ensure_fanout(&self) -> Result<(), BusError> {
        self.fanout
            .get_or_try_init(|| async {
                let mut sub = self
                    .client
                    .subscribe(subjects::all_events(&self.options.agent))
                    .await
                    .map_err(unavailable)?;
                let prefix = self.events_prefix();
                let router = self.router.clone();
                tokio::spawn(async move {
                    while let Some(m) = sub.next().await {
                        let Some(key) = m.subject.as_str().strip_prefix(prefix.as_str()) else {
                            continue;
                        };
                        if !router.watched(key) {
                            continue;
                        }
                        for event in Self::decode_events(&m.payload, m.headers.as_ref()) {
                            router.send(key, &event);
                        }
                    }
                });
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Live events of a wildcard subscription on the events stream's subjects (notices
    /// skipped).
    fn live(&self, sub: async_nats::Subscriber) -> EventStream {
        let prefix = self.events_prefix();
        sub.flat_map(move |m| {
            let notice = m
                .subject
                .as_str()
                .strip_prefix(prefix.as_str())
                .is_some_and(subjects::is_push_configs_suffix);
            let events = if notice {
                Vec::new()
            } else {
                Self::decode_events(&m.payload, m.headers.as_ref())
            };
            futures::stream::iter(events.into_iter().map(Ok))
        })
        .boxed()
    }

    /// What every subject of the events stream starts with.
    fn events_prefix(&self) -> String {
        format!(
            "bindu.{}.tasks.events.",
            subjects::token(&self.options.agent)
        )
    }
}

struct NatsAcker(async_nats::jetstream::message::Acker);

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.0.ack().await.map_err(unavailable)
    }
    async fn nack(&self, delay: Duration) -> Result<(), BusError> {
        self.0
            .ack_with(jetstream::AckKind::Nak(Some(delay)))
            .await
            .map_err(unavailable)
    }
    async fn in_progress(&self) -> Result<(), BusError> {
        self.0
            .ack_with(jetstream::AckKind::Progress)
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl Bus for NatsBus {
    fn backend(&self) -> &'static str {
        "nats"
    }

    async fn ready(&self) -> Result<(), BusError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            other => Err(BusError::Unavailable(format!("NATS connection is {other}"))),
        }
    }

    async fn publish_commands(&self, commands: Vec<TaskCommand>) -> Result<(), BusError> {
        let started = std::time::Instant::now();
        if let Some(batcher) = &self.batcher {
            let mut pending = Vec::with_capacity(commands.len());
            let mut stored = Vec::with_capacity(commands.len());
            for c in &commands {
                let (done, wait) = tokio::sync::oneshot::channel();
                pending.push(batch::Pending {
                    id: command_id(c),
                    json: serde_json::to_vec(c).map_err(|e| BusError::Other(Box::new(e)))?,
                    trace: c.trace.clone().or_else(crate::trace::current),
                    done,
                });
                stored.push(wait);
            }
            batcher.send(pending);
            for wait in stored {
                wait.await
                    .map_err(|_| BusError::Closed)?
                    .map_err(BusError::Unavailable)?;
            }
            published(started);
            return Ok(());
        }
        let mut acks = Vec::with_capacity(commands.len());
        for c in &commands {
            let payload = serde_json::to_vec(c).map_err(|e| BusError::Other(Box::new(e)))?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", command_id(c).as_str());
            if let Some(trace) = c.trace.clone().or_else(crate::trace::current) {
                wire::add_trace(&mut headers, &trace);
            }
            let ack = self
                .js
                .publish_with_headers(self.commands_subject.clone(), headers, payload.into())
                .await
                .map_err(unavailable)?;
            acks.push(ack);
        }
        // Acks stay in flight together; success only once JetStream stored every command.
        for ack in acks {
            ack.await
                .map_err(|e| BusError::Unavailable(format!("command not stored: {e}")))?;
        }
        published(started);
        Ok(())
    }

    async fn close_intake(&self) {
        self.intake.cancel();
    }

    async fn queue_depth(&self) -> Result<QueueDepth, BusError> {
        let mut last = self.depth.lock().await;
        if let Some((at, depth)) = *last {
            if at.elapsed() < DEPTH_MAX_AGE {
                return Ok(depth);
            }
        }
        // The workers' consumer: `num_pending` are commands no worker has taken,
        // `num_ack_pending` those taken and not acknowledged yet. One request.
        let stream = self
            .js
            .get_stream_no_info(&self.commands_stream)
            .await
            .map_err(unavailable)?;
        let info = stream.consumer_info(CONSUMER).await.map_err(unavailable)?;
        // The server counts messages; with batches, each stands for the commands per
        // message this process publishes (an estimate; exact without batches).
        let per_message = self
            .batcher
            .as_ref()
            .map_or(1.0, |b| b.published.per_message());
        let commands = |messages: u64| (messages as f64 * per_message).round() as u64;
        let depth = QueueDepth {
            waiting: commands(info.num_pending),
            running: commands(info.num_ack_pending as u64),
        };
        *last = Some((std::time::Instant::now(), depth));
        Ok(depth)
    }

    async fn consume_commands(&self) -> Result<CommandStream, BusError> {
        let consumer = self.consumer().await?;
        // The prefetch bound counts commands: a message may carry a batch of them.
        let per_message = self.options.command_batch.max(1);
        let messages = consumer
            .stream()
            .max_messages_per_batch(self.options.prefetch.max(1).div_ceil(per_message).max(16))
            .messages()
            .await
            .map_err(unavailable)?;
        Ok(messages
            .then(|m| async move {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => return vec![Err(unavailable(e))],
                };
                let attempt = m.info().map(|i| i.delivered.max(1) as u64).unwrap_or(1);
                let (msg, acker) = m.split();
                if batch::is_batch(msg.headers.as_ref()) {
                    return match batch::decode(&msg.payload) {
                        Ok(commands) if !commands.is_empty() => {
                            batch::parts(commands, attempt, acker).into_iter().map(Ok).collect()
                        }
                        Ok(_) => {
                            let _ = acker.ack().await;
                            Vec::new()
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "dropping a command batch that is not valid JSON");
                            let _ = acker.ack_with(jetstream::AckKind::Term).await;
                            Vec::new()
                        }
                    };
                }
                match serde_json::from_slice::<TaskCommand>(&msg.payload) {
                    Ok(mut command) => vec![Ok(Delivery {
                        command: {
                            command.trace = msg.headers.as_ref().and_then(wire::read_trace);
                            command
                        },
                        attempt,
                        acker: Box::new(NatsAcker(acker)),
                    })],
                    Err(e) => {
                        tracing::warn!(error = %e, "dropping a command that is not valid JSON");
                        let _ = acker.ack_with(jetstream::AckKind::Term).await;
                        Vec::new()
                    }
                }
            })
            .flat_map(futures::stream::iter)
            .take_until(self.intake.clone().cancelled_owned())
            .boxed())
    }

    async fn announce(&self, events: Vec<TaskEvent>) -> Result<(), BusError> {
        // A plain publish on the stream's subject: JetStream stores it all the same, without
        // an acknowledgement to wait for.
        for (subject, payload, headers) in self.event_messages(&events)? {
            match headers {
                Some(h) => self.client.publish_with_headers(subject, h, payload).await,
                None => self.client.publish(subject, payload).await,
            }
            .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn publish_events(&self, events: Vec<TaskEvent>) -> Result<(), BusError> {
        let started = std::time::Instant::now();
        let mut acks = Vec::with_capacity(events.len());
        for (subject, payload, headers) in self.event_messages(&events)? {
            acks.push(
                match headers {
                    Some(h) => self.js.publish_with_headers(subject, h, payload).await,
                    None => self.js.publish(subject, payload).await,
                }
                .map_err(unavailable)?,
            );
        }
        for ack in acks {
            ack.await
                .map_err(|e| BusError::Unavailable(format!("event not stored: {e}")))?;
        }
        published(started);
        Ok(())
    }

    async fn subscribe_task(&self, task_id: &str) -> Result<EventStream, BusError> {
        self.ensure_fanout().await?;
        Ok(self.router.subscribe(&subjects::token(task_id)))
    }

    async fn subscribe_all(&self) -> Result<EventStream, BusError> {
        let sub = self
            .client
            .subscribe(subjects::all_events(&self.options.agent))
            .await
            .map_err(unavailable)?;
        Ok(self.live(sub))
    }

    async fn consume_events(&self, durable_name: &str) -> Result<DurableEventStream, BusError> {
        self.durable_events(durable_name).await
    }

    async fn push_configs_changed(&self, task_id: &str) -> Result<(), BusError> {
        let payload = serde_json::to_vec(&PushConfigsChanged {
            task_id: task_id.to_string(),
        })
        .map_err(|e| BusError::Other(Box::new(e)))?;
        self.js
            .publish(
                subjects::push_configs(&self.options.agent, task_id),
                payload.into(),
            )
            .await
            .map_err(unavailable)?
            .await
            .map_err(|e| BusError::Unavailable(format!("push-config notice not stored: {e}")))?;
        Ok(())
    }

    fn orders_push_notices(&self) -> bool {
        true
    }

    async fn signal_cancel(&self, task_id: &str) -> Result<(), BusError> {
        self.client
            .publish(
                subjects::cancel(&self.options.agent),
                task_id.to_string().into(),
            )
            .await
            .map_err(unavailable)?;
        self.client.flush().await.map_err(unavailable)
    }

    async fn cancel_signals(&self) -> Result<CancelStream, BusError> {
        let sub = self
            .client
            .subscribe(subjects::cancel(&self.options.agent))
            .await
            .map_err(unavailable)?;
        Ok(sub
            .filter_map(|m| async move { String::from_utf8(m.payload.to_vec()).ok() })
            .boxed())
    }

    fn keeps_history(&self) -> bool {
        true
    }

    fn commands_outlive_process(&self) -> bool {
        true
    }

    async fn replay_task(&self, task_id: &str, after_seq: u64) -> Result<EventStream, BusError> {
        let stream = self
            .js
            .get_stream(&self.events_stream)
            .await
            .map_err(unavailable)?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subjects::events(&self.options.agent, task_id),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        Ok(messages
            .flat_map(move |m| {
                let events = match m {
                    Ok(m) => Self::decode_events(&m.payload, m.headers.as_ref())
                        .into_iter()
                        .filter(|e| e.seq > after_seq)
                        .map(Ok)
                        .collect(),
                    Err(e) => vec![Err(unavailable(e))],
                };
                futures::stream::iter(events)
            })
            .boxed())
    }

    async fn exhausted_commands(&self) -> Result<ExhaustedStream, BusError> {
        let advisory = format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{CONSUMER}",
            self.commands_stream
        );
        // A queue group: each advisory reaches exactly one worker process.
        let sub = self
            .client
            .queue_subscribe(advisory, "bindu-dead-letters".to_string())
            .await
            .map_err(unavailable)?;
        let js = self.js.clone();
        let stream_name = self.commands_stream.clone();
        Ok(sub
            .then(move |m| {
                let js = js.clone();
                let stream_name = stream_name.clone();
                async move {
                    let advisory: serde_json::Value = serde_json::from_slice(&m.payload).ok()?;
                    let seq = advisory.get("stream_seq")?.as_u64()?;
                    let deliveries = advisory
                        .get("deliveries")
                        .and_then(|d| d.as_u64())
                        .unwrap_or(0);
                    let stream = js.get_stream(&stream_name).await.ok()?;
                    let raw = stream.get_raw_message(seq).await.ok()?;
                    // Every command of a batch ran out with it (the pool fails only the
                    // tasks that have not ended).
                    let commands = if batch::is_batch(Some(&raw.headers)) {
                        batch::decode(&raw.payload).ok()?
                    } else {
                        vec![serde_json::from_slice::<TaskCommand>(&raw.payload).ok()?]
                    };
                    Some(
                        commands
                            .into_iter()
                            .map(|command| Exhausted {
                                command,
                                deliveries,
                                position: seq,
                            })
                            .collect::<Vec<_>>(),
                    )
                }
            })
            .flat_map(|found| futures::stream::iter(found.unwrap_or_default()))
            .boxed())
    }

    async fn dead_letter(&self, exhausted: &Exhausted) -> Result<(), BusError> {
        let payload =
            serde_json::to_vec(&exhausted.command).map_err(|e| BusError::Other(Box::new(e)))?;
        self.js
            .publish(subjects::dead_letter(&self.options.agent), payload.into())
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        let stream = self
            .js
            .get_stream(&self.commands_stream)
            .await
            .map_err(unavailable)?;
        match stream.delete_message(exhausted.position).await {
            Ok(_) => Ok(()),
            // Another command of the same batch message removed it already.
            Err(e)
                if matches!(e.kind(), stream::DeleteMessageErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND
                        || (j.error_code() == jetstream::ErrorCode::STREAM_MESSAGE_DELETE_FAILED
                            && j.to_string().contains("no message found"))) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// A command's duplicate-detection id. The task's version is part of it: a follow-up that
/// reuses an earlier message's id is a new submission (a new version) and must not fall in
/// the duplicate window; only the same submission published again does.
fn command_id(c: &TaskCommand) -> String {
    format!("{}:{}:{}", c.task_id, c.message_id, c.version)
}
