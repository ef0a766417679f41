//! Commands in batches: one JetStream message carries the commands of many concurrent
//! accepts, so the work queue costs one publish, one acknowledgement from the server, one
//! delivery and one ack per batch instead of per task.
//!
//! - **Publishing** ([`Batcher`]): every `publish_commands` call hands its commands to one
//!   task per bus. It publishes what has gathered as one message, keeping at most
//!   [`IN_FLIGHT`] batches unacknowledged by the server: under light load a command leaves
//!   at once, alone; under heavy load the commands arriving while earlier batches are in
//!   flight go together (up to `NATS__COMMAND_BATCH` commands and the server's payload
//!   limit). A caller hears back once the server stored the message holding its command. A
//!   batch of one is an ordinary command message (its `Nats-Msg-Id` is the command's); a
//!   batch of more carries [`BATCH_HEADER`] and a JSON array of [`Entry`]s, each command with
//!   its trace context, and a `Nats-Msg-Id` derived from every command in it. The same
//!   command twice in one batch is published once.
//! - **Consuming** ([`parts`]): a batch becomes one [`Delivery`] per command, all sharing the
//!   message's acknowledgement ([`Part`]): the message is acked once every command in it is
//!   acked, or handed back (nacked, with the longest delay asked) once every command is
//!   settled and any was nacked. A part dropped without either (a worker that stopped before
//!   running it) counts as handed back at once. A redelivered batch is delivered whole: the
//!   pool reads each redelivered task back and skips those that already ended.
//!
//! Workers must understand batches before any ingress publishes them: when upgrading from a
//! version without batches, roll the workers first (or set `NATS__COMMAND_BATCH=1` until
//! every worker runs this version). An older worker terminates a batch message as invalid.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::Acker as JsAcker};
use async_nats::HeaderMap;
use async_trait::async_trait;
use bindu_schemas::bus::{TaskCommand, TraceContext};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, Notify, Semaphore};

use super::wire;
use crate::bus::{Acker, BusError, Delivery};

/// The header marking a message that carries a batch (its value: how many commands).
pub(super) const BATCH_HEADER: &str = "Bindu-Commands";

/// Batches published and not yet acknowledged by the server, at most.
const IN_FLIGHT: usize = 4;

/// Room kept in a message for the array's punctuation and the per-entry keys.
const ENTRY_OVERHEAD: usize = 16;

/// How often a batch's in-progress ack is sent at most (its parts' heartbeats share it).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// One command of a batch message.
#[derive(Deserialize)]
pub(super) struct Entry {
    /// The command.
    c: TaskCommand,
    /// Its `traceparent`.
    #[serde(default)]
    t: Option<String>,
    /// Its `tracestate`.
    #[serde(default)]
    s: Option<String>,
}

/// A command waiting to be published.
pub(super) struct Pending {
    /// Its duplicate-detection id (task, message, version).
    pub id: String,
    /// The command as JSON.
    pub json: Vec<u8>,
    pub trace: Option<TraceContext>,
    pub done: oneshot::Sender<Result<(), String>>,
}

/// The commands and messages this process published (for the queue depth estimate).
#[derive(Default)]
pub(super) struct Published {
    commands: AtomicU64,
    messages: AtomicU64,
}

impl Published {
    /// Commands per message published from here, 1 before any.
    pub fn per_message(&self) -> f64 {
        let messages = self.messages.load(Ordering::Relaxed);
        if messages == 0 {
            return 1.0;
        }
        self.commands.load(Ordering::Relaxed) as f64 / messages as f64
    }
}

/// Commands waiting for the batching task. One call's commands are queued in one step, so
/// they travel together (up to the batch's limits).
#[derive(Default)]
struct Queue {
    waiting: Mutex<Waiting>,
    wake: Notify,
}

#[derive(Default)]
struct Waiting {
    pending: VecDeque<Pending>,
    /// The batcher was dropped: the task ends once the queue is empty.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next command, waiting for one; `None` once closed and empty.
    async fn next(&self) -> Option<Pending> {
        loop {
            {
                let mut waiting = self.lock();
                if let Some(p) = waiting.pending.pop_front() {
                    return Some(p);
                }
                if waiting.closed {
                    return None;
                }
            }
            // `notify_one` keeps a permit when nobody waits: no wake-up is lost.
            self.wake.notified().await;
        }
    }

    /// The next command if one is queued.
    fn try_next(&self) -> Option<Pending> {
        self.lock().pending.pop_front()
    }
}

/// Hands commands to the bus's batching task.
pub(super) struct Batcher {
    queue: Arc<Queue>,
    pub published: Arc<Published>,
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.wake.notify_one();
    }
}

impl Batcher {
    /// Starts the batching task; it ends when the batcher is dropped.
    pub fn start(
        js: jetstream::Context,
        subject: String,
        max_commands: usize,
        max_bytes: usize,
    ) -> Self {
        let queue = Arc::new(Queue::default());
        let published = Arc::new(Published::default());
        tokio::spawn(run(
            queue.clone(),
            js,
            subject,
            max_commands.max(1),
            max_bytes,
            published.clone(),
        ));
        Batcher { queue, published }
    }

    /// Queues the commands of one call for the next batches, together.
    pub fn send(&self, pending: Vec<Pending>) {
        self.queue.lock().pending.extend(pending);
        self.queue.wake.notify_one();
    }
}

/// One command of a batch and everyone waiting for it.
struct Member {
    id: String,
    json: Vec<u8>,
    trace: Option<TraceContext>,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
}

async fn run(
    queue: Arc<Queue>,
    js: jetstream::Context,
    subject: String,
    max_commands: usize,
    max_bytes: usize,
    published: Arc<Published>,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match queue.next().await {
                Some(p) => p,
                None => break,
            },
        };
        // Waiting here for a batch in flight is what lets the next one gather.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let mut members: Vec<Member> = Vec::new();
        let mut bytes = 2;
        let mut next = Some(first);
        while let Some(p) = next.take() {
            if let Some(m) = members.iter_mut().find(|m| m.id == p.id) {
                m.waiters.push(p.done);
            } else {
                let size = entry_size(&p);
                if !members.is_empty() && bytes + size > max_bytes {
                    carried = Some(p);
                    break;
                }
                bytes += size;
                members.push(Member {
                    id: p.id,
                    json: p.json,
                    trace: p.trace,
                    waiters: vec![p.done],
                });
            }
            if members.len() < max_commands {
                next = queue.try_next();
            }
        }
        published
            .commands
            .fetch_add(members.len() as u64, Ordering::Relaxed);
        published.messages.fetch_add(1, Ordering::Relaxed);
        crate::metrics::engine()
            .bus_command_batch
            .observe(members.len() as f64);
        let (headers, payload) = message(&members);
        let waiters: Vec<_> = members.into_iter().flat_map(|m| m.waiters).collect();
        match js
            .publish_with_headers(subject.clone(), headers, payload.into())
            .await
        {
            Ok(ack) => {
                tokio::spawn(async move {
                    let result = ack
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("command not stored: {e}"));
                    drop(permit);
                    for w in waiters {
                        let _ = w.send(result.clone());
                    }
                });
            }
            Err(e) => {
                drop(permit);
                let error = e.to_string();
                for w in waiters {
                    let _ = w.send(Err(error.clone()));
                }
            }
        }
    }
}

/// The bytes `p` adds to a batch message.
fn entry_size(p: &Pending) -> usize {
    p.json.len()
        + ENTRY_OVERHEAD
        + p.trace.as_ref().map_or(0, |t| {
            t.traceparent.len() + t.tracestate.as_ref().map_or(0, |s| s.len()) + 16
        })
}

/// The message carrying `members`: an ordinary command message for one, a batch for more.
fn message(members: &[Member]) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    if let [one] = members {
        headers.insert("Nats-Msg-Id", one.id.as_str());
        if let Some(trace) = &one.trace {
            wire::add_trace(&mut headers, trace);
        }
        return (headers, one.json.clone());
    }
    let mut digest = Sha256::new();
    let mut payload = Vec::with_capacity(members.iter().map(|m| m.json.len() + 8).sum());
    payload.push(b'[');
    for (i, m) in members.iter().enumerate() {
        digest.update(m.id.as_bytes());
        digest.update([0]);
        if i > 0 {
            payload.push(b',');
        }
        payload.extend_from_slice(b"{\"c\":");
        payload.extend_from_slice(&m.json);
        if let Some(trace) = &m.trace {
            payload.extend_from_slice(b",\"t\":");
            // Strings of JSON, escaped by serde_json.
            let _ = serde_json::to_writer(&mut payload, &trace.traceparent);
            if let Some(state) = &trace.tracestate {
                payload.extend_from_slice(b",\"s\":");
                let _ = serde_json::to_writer(&mut payload, state);
            }
        }
        payload.push(b'}');
    }
    payload.push(b']');
    headers.insert(BATCH_HEADER, members.len().to_string().as_str());
    let id = format!("batch:{}", hex::encode(&digest.finalize()[..16]));
    headers.insert("Nats-Msg-Id", id.as_str());
    (headers, payload)
}

/// Whether a message carries a batch.
pub(super) fn is_batch(headers: Option<&HeaderMap>) -> bool {
    headers.is_some_and(|h| h.get(BATCH_HEADER).is_some())
}

/// The commands of a batch message's payload, each with its trace (when tracing is on).
pub(super) fn decode(payload: &[u8]) -> Result<Vec<TaskCommand>, serde_json::Error> {
    let entries: Vec<Entry> = serde_json::from_slice(payload)?;
    let tracing = crate::trace::enabled();
    Ok(entries
        .into_iter()
        .map(|e| {
            let mut command = e.c;
            command.trace = match (tracing, e.t) {
                (true, Some(traceparent)) => Some(TraceContext {
                    traceparent,
                    tracestate: e.s,
                }),
                _ => None,
            };
            command
        })
        .collect())
}

/// The deliveries of one batch message, sharing its acknowledgement.
pub(super) fn parts(commands: Vec<TaskCommand>, attempt: u64, acker: JsAcker) -> Vec<Delivery> {
    let shared = Arc::new(Shared {
        acker,
        left: AtomicUsize::new(commands.len()),
        nack: Mutex::new(None),
        progress: Mutex::new(None),
    });
    commands
        .into_iter()
        .map(|command| Delivery {
            command,
            attempt,
            acker: Box::new(Part {
                shared: shared.clone(),
                settled: AtomicBool::new(false),
            }),
        })
        .collect()
}

/// What the parts of one batch message share.
struct Shared {
    acker: JsAcker,
    /// Parts not settled yet.
    left: AtomicUsize,
    /// The longest delay a part asked for when it was nacked, if any was.
    nack: Mutex<Option<Duration>>,
    /// When the last in-progress ack was sent.
    progress: Mutex<Option<Instant>>,
}

impl Shared {
    /// Settles one part (`nack`: handed back, after that delay); the last one acks the
    /// message, or hands it back if any part was.
    async fn settle(&self, nack: Option<Duration>) -> Result<(), BusError> {
        let handed_back = {
            let mut slot = self.nack.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(delay) = nack {
                *slot = Some(slot.map_or(delay, |d| d.max(delay)));
            }
            *slot
        };
        if self.left.fetch_sub(1, Ordering::SeqCst) != 1 {
            return Ok(());
        }
        match handed_back {
            Some(delay) => {
                self.acker
                    .ack_with(jetstream::AckKind::Nak(Some(delay)))
                    .await
            }
            None => self.acker.ack().await,
        }
        .map_err(|e| BusError::Unavailable(e.to_string()))
    }
}

/// One command of a batch message: its ack settles its share of the message.
struct Part {
    shared: Arc<Shared>,
    settled: AtomicBool,
}

impl Part {
    async fn settle(&self, nack: Option<Duration>) -> Result<(), BusError> {
        if self.settled.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.shared.settle(nack).await
    }
}

#[async_trait]
impl Acker for Part {
    async fn ack(&self) -> Result<(), BusError> {
        self.settle(None).await
    }

    async fn nack(&self, delay: Duration) -> Result<(), BusError> {
        self.settle(Some(delay)).await
    }

    async fn in_progress(&self) -> Result<(), BusError> {
        {
            let mut last = self
                .shared
                .progress
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        self.shared
            .acker
            .ack_with(jetstream::AckKind::Progress)
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        // Never run (its worker stopped first): handed back, so the message need not wait
        // for its ack deadline once the other parts are settled.
        if !self.settled.swap(true, Ordering::SeqCst) {
            let shared = self.shared.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = shared.settle(Some(Duration::ZERO)).await;
                });
            }
        }
    }
}
