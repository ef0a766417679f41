//! Task events on Redis: publishing, the shared live reader, replays and durable consumers
//! (see the module documentation above).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use bindu_schemas::bus::PushConfigsChanged;

use super::wire::{self, Entry};
use super::*;

/// A connection that quits when dropped (a blocking read holds its connection; dropping
/// the reader closes it).
pub(super) struct Conn(pub(super) Client);

impl Drop for Conn {
    fn drop(&mut self) {
        let client = self.0.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

/// How long a durable consumer's read waits for new events (nacked events wait for it).
const DURABLE_BLOCK: Duration = Duration::from_millis(200);
/// How often a durable consumer adopts events other readers of its name left pending.
const ADOPT_EVERY: Duration = Duration::from_secs(2);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Core {
    /// `XADD …:events MINID ~ <retention ago> * fields`.
    fn events_xadd(&self, fields: Vec<(String, Value)>) -> Vec<Value> {
        let cutoff = now_ms().saturating_sub(self.options.event_retention.as_millis() as u64);
        xadd_args(&self.keys.events(), Some(cutoff), fields)
    }

    pub(super) async fn append_events(&self, events: &[TaskEvent]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let retention = (self.options.event_retention.as_millis() as i64).max(1);
        let pipeline = self.client.pipeline();
        for (task_id, payload, trace) in wire::event_messages(events)? {
            let task_key = self.keys.task(&task_id);
            let args = xadd_args(
                &task_key,
                None,
                wire::fields(vec![(wire::DATA, payload.clone())], trace.as_ref()),
            );
            let _: () = pipeline
                .custom(cmd("XADD"), args)
                .await
                .map_err(|e| describe(&e))?;
            let _: () = pipeline
                .custom(
                    cmd("PEXPIRE"),
                    vec![Value::from(task_key.as_str()), retention.into()],
                )
                .await
                .map_err(|e| describe(&e))?;
            let fields = wire::fields(
                vec![
                    (wire::TASK, task_id.into_bytes().into()),
                    (wire::DATA, payload),
                ],
                trace.as_ref(),
            );
            let _: () = pipeline
                .custom(cmd("XADD"), self.events_xadd(fields))
                .await
                .map_err(|e| describe(&e))?;
        }
        stored(pipeline, "event", started).await
    }

    pub(super) async fn notice(&self, task_id: &str) -> Result<(), BusError> {
        let payload = serde_json::to_vec(&PushConfigsChanged {
            task_id: task_id.to_string(),
        })
        .map_err(|e| BusError::Other(Box::new(e)))?;
        let fields = wire::fields(
            vec![
                (wire::TASK, task_id.to_string().into_bytes().into()),
                (wire::KIND, wire::NOTICE.as_bytes().to_vec().into()),
                (wire::DATA, payload.into()),
            ],
            None,
        );
        self.run("XADD", self.events_xadd(fields)).await.map(|_| ())
    }

    /// The id of a stream's last entry (`0-0` when it has none).
    async fn last_id(&self, key: &str) -> Result<String, BusError> {
        let reply = self
            .run(
                "XREVRANGE",
                vec![key.into(), "+".into(), "-".into(), "COUNT".into(), 1.into()],
            )
            .await?;
        Ok(wire::entries(reply)
            .pop()
            .map(|e| e.id)
            .unwrap_or_else(|| "0-0".into()))
    }

    /// Entries appended to `key` from now on, read on a connection of their own; through
    /// Redis outages (retrying) until `closed` fires or the stream is dropped.
    pub(super) async fn tail(
        self: &Arc<Self>,
        key: String,
        closed: CancellationToken,
    ) -> Result<BoxStream<'static, Entry>, BusError> {
        let after = self.last_id(&key).await?;
        let conn = Conn(self.blocking_client().await?);
        let state = (conn, after, VecDeque::<Entry>::new());
        Ok(futures::stream::unfold(state, move |(conn, mut after, mut ready)| {
            let (key, closed) = (key.clone(), closed.clone());
            async move {
                loop {
                    if let Some(e) = ready.pop_front() {
                        return Some((e, (conn, after, ready)));
                    }
                    if closed.is_cancelled() {
                        return None;
                    }
                    let reply = conn
                        .0
                        .custom::<Value, Value>(
                            CustomCommand::new_static("XREAD", ClusterHash::FirstKey, true),
                            vec![
                                "COUNT".into(),
                                512.into(),
                                "BLOCK".into(),
                                (BLOCK.as_millis() as i64).into(),
                                "STREAMS".into(),
                                key.as_str().into(),
                                after.as_str().into(),
                            ],
                        )
                        .await;
                    match reply {
                        Ok(v) => {
                            ready.extend(wire::read_reply(v));
                            if let Some(last) = ready.back() {
                                after = last.id.clone();
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, %key, "reading a bus stream failed; retrying");
                            tokio::select! {
                                _ = closed.cancelled() => return None,
                                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                            }
                        }
                    }
                }
            }
        })
        .boxed())
    }

    /// A task's stored events above `after_seq`, oldest first, and the last seq among them.
    async fn history(
        &self,
        task_id: &str,
        after_seq: u64,
    ) -> Result<(Vec<Arc<TaskEvent>>, u64), BusError> {
        let reply = self
            .run(
                "XRANGE",
                vec![self.keys.task(task_id).into(), "-".into(), "+".into()],
            )
            .await?;
        let events: Vec<Arc<TaskEvent>> = wire::entries(reply)
            .iter()
            .flat_map(wire::decode_events)
            .filter(|e| e.seq > after_seq)
            .collect();
        let last = events.iter().map(|e| e.seq).max().unwrap_or(after_seq);
        Ok((events, last))
    }
}

impl RedisBus {
    /// Starts the process's reader of `…:events` (once): it hands each event to the live
    /// subscribers of its task and of every task.
    pub(super) async fn ensure_tail(&self) -> Result<(), BusError> {
        self.tail
            .get_or_try_init(|| async {
                let mut entries = self
                    .core
                    .tail(self.core.keys.events(), self.closed.clone())
                    .await?;
                let router = self.router.clone();
                let all = self.all.clone();
                tokio::spawn(async move {
                    while let Some(entry) = entries.next().await {
                        if entry.get(wire::KIND).is_some() {
                            continue;
                        }
                        let Some(task_id) = entry.text(wire::TASK) else {
                            continue;
                        };
                        let watched = router.watched(&task_id);
                        if !watched && all.receiver_count() == 0 {
                            continue;
                        }
                        for event in wire::decode_events(&entry) {
                            if watched {
                                router.send(&task_id, &event);
                            }
                            let _ = all.send(event);
                        }
                    }
                });
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Entries of `key` from now on (a stream of its own, e.g. cancel signals).
    pub(super) async fn tail_stream(
        &self,
        key: String,
    ) -> Result<BoxStream<'static, Entry>, BusError> {
        self.core.tail(key, self.closed.clone()).await
    }

    /// The task's stored events above `after_seq`, then live ones (subscribed first, so
    /// nothing falls between; live events already replayed are skipped).
    pub(super) async fn replay(
        &self,
        task_id: &str,
        after_seq: u64,
    ) -> Result<EventStream, BusError> {
        self.ensure_tail().await?;
        let live = self.router.subscribe(task_id);
        let (stored, last) = self.core.history(task_id, after_seq).await?;
        let live = live.filter(move |e| {
            let keep = match e {
                Ok(e) => e.seq > last,
                Err(_) => true,
            };
            futures::future::ready(keep)
        });
        Ok(futures::stream::iter(stored.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }

    pub(super) async fn durable_events(
        &self,
        durable_name: &str,
    ) -> Result<DurableEventStream, BusError> {
        let group = if durable_name.is_empty() {
            "events".to_string()
        } else {
            durable_name.to_string()
        };
        let key = self.core.keys.events();
        // The first opening starts at the events published from then on.
        create_group(&self.core.client, &key, &group, "$").await?;
        let generation = {
            let mut g = self.openings.entry(group.clone()).or_insert(0);
            *g += 1;
            *g
        };
        let (nacks, nacked) = tokio::sync::mpsc::unbounded_channel();
        let mut reader = Durable {
            core: self.core.clone(),
            conn: Conn(self.core.blocking_client().await?),
            consumer: format!("reader-{}", uuid::Uuid::new_v4().simple()),
            group,
            key,
            history: Some("0".into()),
            ready: VecDeque::new(),
            nacks,
            nacked,
            last_adopt: Instant::now(),
            generation,
            openings: self.openings.clone(),
            closed: self.closed.clone(),
        };
        // Events other readers of this name left unacknowledged become this reader's, so
        // its history pass delivers them again, in order.
        reader.adopt().await?;
        Ok(futures::stream::unfold(reader, |mut reader| async move {
            reader.next().await.map(|item| (item, reader))
        })
        .boxed())
    }
}

/// One opening of a durable consumer: a consumer of its own in the group named after it.
struct Durable {
    core: Arc<Core>,
    conn: Conn,
    consumer: String,
    group: String,
    key: String,
    /// Reading this consumer's pending entries after this id (first pass), else `None`:
    /// reading new ones.
    history: Option<String>,
    ready: VecDeque<Result<Consumed, BusError>>,
    nacks: tokio::sync::mpsc::UnboundedSender<(String, u64)>,
    nacked: tokio::sync::mpsc::UnboundedReceiver<(String, u64)>,
    last_adopt: Instant,
    generation: u64,
    openings: Arc<dashmap::DashMap<String, u64>>,
    closed: CancellationToken,
}

impl Durable {
    async fn next(&mut self) -> Option<Result<Consumed, BusError>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            let current = self.openings.get(&self.group).map(|g| *g);
            if self.closed.is_cancelled() || current != Some(self.generation) {
                return None;
            }
            if let Err(e) = self.read().await {
                if no_group(&e) {
                    // Redis lost the group: start again at new events.
                    let _ = create_group(&self.core.client, &self.key, &self.group, "$").await;
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Some(Err(e));
            }
        }
    }

    async fn read(&mut self) -> Result<(), BusError> {
        while let Ok((id, attempt)) = self.nacked.try_recv() {
            let reply = self
                .core
                .run(
                    "XRANGE",
                    vec![
                        self.key.as_str().into(),
                        id.as_str().into(),
                        id.as_str().into(),
                    ],
                )
                .await?;
            for entry in wire::entries(reply) {
                self.deliver(entry, attempt).await?;
            }
        }
        if self.history.is_none() && self.last_adopt.elapsed() >= ADOPT_EVERY {
            self.last_adopt = Instant::now();
            for (entry, attempt) in self.adopt().await? {
                self.deliver(entry, attempt).await?;
            }
        }
        let (id, block) = match &self.history {
            Some(after) => (after.clone(), None),
            None => (">".to_string(), Some(DURABLE_BLOCK)),
        };
        let mut args: Vec<Value> = vec![
            "GROUP".into(),
            self.group.as_str().into(),
            self.consumer.as_str().into(),
            "COUNT".into(),
            512.into(),
        ];
        if let Some(block) = block {
            args.push("BLOCK".into());
            args.push((block.as_millis() as i64).into());
        }
        args.extend([
            "STREAMS".into(),
            self.key.as_str().into(),
            id.as_str().into(),
        ]);
        let reply = self
            .conn
            .0
            .custom::<Value, Value>(
                CustomCommand::new_static("XREADGROUP", ClusterHash::FirstKey, block.is_some()),
                args,
            )
            .await
            .map_err(|e| describe(&e))?;
        let entries = wire::read_reply(reply);
        if self.history.is_some() {
            match entries.last() {
                Some(last) => self.history = Some(last.id.clone()),
                None => self.history = None,
            }
        }
        let attempt = if self.history.is_some() { 2 } else { 1 };
        let mut lost = 0;
        for entry in entries {
            if entry.fields.is_none() {
                // Trimmed (retention) before this consumer read it.
                lost += 1;
                self.ack(&entry.id).await?;
                continue;
            }
            self.deliver(entry, attempt).await?;
        }
        if lost > 0 {
            self.ready.push_front(Err(BusError::Lagged(lost)));
        }
        Ok(())
    }

    /// Claims what other consumers of the group hold (earlier readers of this name) and
    /// deletes those consumers once they hold nothing: the entries claimed, with their
    /// next attempt.
    async fn adopt(&mut self) -> Result<Vec<(Entry, u64)>, BusError> {
        let reply = self
            .core
            .run(
                "XINFO",
                vec![
                    "CONSUMERS".into(),
                    self.key.as_str().into(),
                    self.group.as_str().into(),
                ],
            )
            .await?;
        let mut claimed = Vec::new();
        for consumer in reply.into_array() {
            let info: HashMap<String, Value> = match consumer {
                Value::Array(kv) => kv
                    .chunks(2)
                    .filter_map(|p| Some((p[0].as_string()?, p.get(1)?.clone())))
                    .collect(),
                Value::Map(m) => m
                    .inner()
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v)))
                    .collect(),
                _ => continue,
            };
            let Some(name) = info.get("name").and_then(Value::as_string) else {
                continue;
            };
            if name == self.consumer {
                continue;
            }
            let pending = info.get("pending").and_then(Value::as_u64).unwrap_or(0);
            if pending > 0 {
                let rows = self
                    .core
                    .run(
                        "XPENDING",
                        vec![
                            self.key.as_str().into(),
                            self.group.as_str().into(),
                            "-".into(),
                            "+".into(),
                            (pending.min(10_000) as i64).into(),
                            name.as_str().into(),
                        ],
                    )
                    .await?;
                let rows = wire::pending_rows(rows);
                let counts: HashMap<String, u64> =
                    rows.iter().map(|(id, _, _, n)| (id.clone(), *n)).collect();
                let mut args: Vec<Value> = vec![
                    self.key.as_str().into(),
                    self.group.as_str().into(),
                    self.consumer.as_str().into(),
                    0.into(),
                ];
                args.extend(rows.into_iter().map(|(id, ..)| Value::from(id)));
                if args.len() > 4 {
                    let entries = wire::entries(self.core.run("XCLAIM", args).await?);
                    claimed.extend(entries.into_iter().map(|e| {
                        let attempt = counts.get(&e.id).copied().unwrap_or(1) + 1;
                        (e, attempt)
                    }));
                }
            } else {
                let _ = self
                    .core
                    .run(
                        "XGROUP",
                        vec![
                            "DELCONSUMER".into(),
                            self.key.as_str().into(),
                            self.group.as_str().into(),
                            name.as_str().into(),
                        ],
                    )
                    .await;
            }
        }
        claimed.retain(|(e, _)| e.fields.is_some());
        claimed.sort_by_key(|a| stream_id(&a.0.id));
        Ok(claimed)
    }

    async fn ack(&self, id: &str) -> Result<(), BusError> {
        self.core
            .run(
                "XACK",
                vec![
                    self.key.as_str().into(),
                    self.group.as_str().into(),
                    id.into(),
                ],
            )
            .await
            .map(|_| ())
    }

    /// Queues what one entry carries: a notice, or its events sharing one acknowledgement.
    async fn deliver(&mut self, entry: Entry, attempt: u64) -> Result<(), BusError> {
        let notice = entry
            .get(wire::KIND)
            .is_some_and(|k| &k[..] == wire::NOTICE.as_bytes());
        let events = if notice {
            Vec::new()
        } else {
            wire::decode_events(&entry)
        };
        let parts = if notice { 1 } else { events.len() };
        if parts == 0 {
            tracing::warn!(id = %entry.id, "dropping an unreadable entry of the events stream");
            return self.ack(&entry.id).await;
        }
        let shared = Arc::new(EntryAck {
            core: self.core.clone(),
            key: self.key.clone(),
            group: self.group.clone(),
            id: entry.id.clone(),
            attempt,
            pending: AtomicUsize::new(parts),
            nacked: AtomicBool::new(false),
            nacks: self.nacks.clone(),
        });
        if notice {
            let task_id = entry.text(wire::TASK).unwrap_or_default();
            self.ready
                .push_back(Ok(Consumed::PushConfigsChanged(PushNotice {
                    task_id,
                    acker: Box::new(PartAck(shared)),
                })));
            return Ok(());
        }
        for event in events {
            self.ready.push_back(Ok(Consumed::Event(EventDelivery {
                event,
                attempt,
                acker: Box::new(PartAck(shared.clone())),
            })));
        }
        Ok(())
    }
}

/// A stream id's (milliseconds, sequence), for ordering.
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// The acknowledgement of one entry of the events stream, shared by the events it carries.
struct EntryAck {
    core: Arc<Core>,
    key: String,
    group: String,
    id: String,
    attempt: u64,
    /// Events of the entry not acked yet.
    pending: AtomicUsize,
    /// Handed back already (the whole entry comes again once).
    nacked: AtomicBool,
    nacks: tokio::sync::mpsc::UnboundedSender<(String, u64)>,
}

/// Acks one part of an entry: the entry is acked with its last part; a nack hands the
/// whole entry back (its events come again: at least once).
struct PartAck(Arc<EntryAck>);

#[async_trait]
impl Acker for PartAck {
    async fn ack(&self) -> Result<(), BusError> {
        let last = self
            .0
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            == Ok(1);
        if !last {
            return Ok(());
        }
        self.0
            .core
            .run(
                "XACK",
                vec![
                    self.0.key.as_str().into(),
                    self.0.group.as_str().into(),
                    self.0.id.as_str().into(),
                ],
            )
            .await
            .map(|_| ())
    }
    async fn nack(&self, delay: Duration) -> Result<(), BusError> {
        if self.0.nacked.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let nacks = self.0.nacks.clone();
        let again = (self.0.id.clone(), self.0.attempt + 1);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // The reader may be gone: its entries stay pending and come with the next one.
            let _ = nacks.send(again);
        });
        Ok(())
    }
    async fn in_progress(&self) -> Result<(), BusError> {
        // Entries of a durable consumer are never taken back while its reader lives.
        Ok(())
    }
}
