//! The work queue on Redis: publishing, consuming with reclaims, acks, queue depth and dead
//! letters (see the module documentation above).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::wire::{self, Entry};
use super::*;

/// A consumer's read state: its connection, entries read and not handed out yet (with
/// their attempt and when they were read), and when it last looked for commands to reclaim.
pub(super) struct Reader {
    client: Client,
    consumer: String,
    buffer: VecDeque<(Entry, u64, Instant)>,
    last_reclaim: Option<Instant>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How often consumers look for commands to reclaim: a few times per ack wait.
fn reclaim_every(ack_wait: Duration) -> Duration {
    (ack_wait / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Resets the idle time of a pending command to `ARGV[4]` ms, only while the consumer
/// `ARGV[2]` holds it (a command another consumer reclaimed stays theirs): 1 if it did.
const TOUCH: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #p == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
return 1
";

impl Core {
    pub(super) async fn publish_commands_now(
        &self,
        commands: Vec<TaskCommand>,
    ) -> Result<(), BusError> {
        if commands.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let pipeline = self.client.pipeline();
        for c in &commands {
            let payload = serde_json::to_vec(c).map_err(|e| BusError::Other(Box::new(e)))?;
            let trace = c.trace.clone().or_else(crate::trace::current);
            let args = xadd_args(
                &self.keys.commands(),
                None,
                wire::fields(vec![(wire::DATA, payload.into())], trace.as_ref()),
            );
            let _: () = pipeline
                .custom(cmd("XADD"), args)
                .await
                .map_err(|e| describe(&e))?;
        }
        stored(pipeline, "command", started).await
    }

    /// Waiting: entries in the stream that no consumer holds (acked entries are deleted);
    /// running: the group's pending entries. One round trip.
    pub(super) async fn read_depth(&self) -> Result<QueueDepth, BusError> {
        let key = self.keys.commands();
        let pipeline = self.client.pipeline();
        let _: () = pipeline
            .custom(cmd("XLEN"), vec![Value::from(key.as_str())])
            .await
            .map_err(|e| describe(&e))?;
        let _: () = pipeline
            .custom(
                cmd("XPENDING"),
                vec![Value::from(key.as_str()), GROUP.into()],
            )
            .await
            .map_err(|e| describe(&e))?;
        let mut replies = pipeline.try_all::<Value>().await.into_iter();
        let len = match replies.next() {
            Some(Ok(v)) => v.as_u64().unwrap_or(0),
            Some(Err(e)) => return Err(describe(&e)),
            None => 0,
        };
        let pending = match replies.next() {
            Some(Ok(Value::Array(summary))) => summary.first().and_then(Value::as_u64).unwrap_or(0),
            Some(Err(e)) if e.details().contains("NOGROUP") => 0,
            Some(Err(e)) => return Err(describe(&e)),
            _ => 0,
        };
        Ok(QueueDepth {
            waiting: len.saturating_sub(pending),
            running: pending,
        })
    }

    /// A new consumer of the workers' group, named for this process, with a connection of
    /// its own.
    pub(super) async fn reader(&self) -> Result<Reader, BusError> {
        Ok(Reader {
            client: self.blocking_client().await?,
            consumer: format!(
                "{}-{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            buffer: VecDeque::new(),
            last_reclaim: None,
        })
    }

    /// The next command `reader` holds; an entry held longer than half the ack wait is left
    /// for a reclaim (another consumer may have it by now), an unreadable one dropped.
    pub(super) fn next_buffered(self: &Arc<Self>, reader: &mut Reader) -> Option<Delivery> {
        while let Some((entry, attempt, read_at)) = reader.buffer.pop_front() {
            if read_at.elapsed() > self.options.ack_wait / 2 {
                continue;
            }
            let command = entry
                .get(wire::DATA)
                .map(|d| serde_json::from_slice::<TaskCommand>(d));
            match command {
                Some(Ok(mut command)) => {
                    command.trace = entry.trace();
                    return Some(Delivery {
                        command,
                        attempt,
                        acker: Box::new(CommandAcker {
                            core: self.clone(),
                            consumer: reader.consumer.clone(),
                            id: entry.id,
                        }),
                    });
                }
                _ => {
                    tracing::warn!(id = %entry.id, "dropping a command that is not valid JSON");
                    let core = self.clone();
                    tokio::spawn(async move { core.ack_command(&entry.id).await });
                }
            }
        }
        None
    }

    /// Reads more commands into `reader`: reclaimed ones when a reclaim is due and finds
    /// some, else new ones (waiting a little for them).
    pub(super) async fn fill(&self, reader: &mut Reader) -> Result<(), BusError> {
        let every = reclaim_every(self.options.ack_wait);
        if !matches!(reader.last_reclaim, Some(t) if t.elapsed() < every) {
            reader.last_reclaim = Some(Instant::now());
            self.reclaim(reader).await?;
            if !reader.buffer.is_empty() {
                return Ok(());
            }
        }
        let block = every.min(BLOCK);
        let reply = reader
            .client
            .custom::<Value, Value>(
                CustomCommand::new_static("XREADGROUP", ClusterHash::FirstKey, true),
                vec![
                    "GROUP".into(),
                    GROUP.into(),
                    reader.consumer.as_str().into(),
                    "COUNT".into(),
                    (self.options.prefetch.max(1) as i64).into(),
                    "BLOCK".into(),
                    (millis(block) as i64).into(),
                    "STREAMS".into(),
                    self.keys.commands().into(),
                    ">".into(),
                ],
            )
            .await
            .map_err(|e| describe(&e))?;
        let now = Instant::now();
        reader
            .buffer
            .extend(wire::read_reply(reply).into_iter().map(|e| (e, 1, now)));
        Ok(())
    }

    /// Pending commands idle for the ack wait: (id, consumer, deliveries).
    async fn idle_commands(&self) -> Result<Vec<(String, String, u64)>, BusError> {
        let rows = self
            .run(
                "XPENDING",
                vec![
                    self.keys.commands().into(),
                    GROUP.into(),
                    "IDLE".into(),
                    (millis(self.options.ack_wait) as i64).into(),
                    "-".into(),
                    "+".into(),
                    512.into(),
                ],
            )
            .await?;
        Ok(wire::pending_rows(rows)
            .into_iter()
            .map(|(id, consumer, _, count)| (id, consumer, count))
            .collect())
    }

    /// `XCLAIM`s `ids` for `consumer` if they are still idle for the ack wait (whoever
    /// claims them first wins); the entries it got.
    async fn claim(&self, consumer: &str, ids: Vec<String>) -> Result<Vec<Entry>, BusError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut args: Vec<Value> = vec![
            self.keys.commands().into(),
            GROUP.into(),
            consumer.into(),
            (millis(self.options.ack_wait) as i64).into(),
        ];
        args.extend(ids.into_iter().map(Value::from));
        Ok(wire::entries(self.run("XCLAIM", args).await?))
    }

    /// Takes over commands whose consumer stayed silent for the ack wait (and that have
    /// deliveries left).
    async fn reclaim(&self, reader: &mut Reader) -> Result<(), BusError> {
        let idle = self.idle_commands().await?;
        // At most a read's worth: what this consumer takes it hands out soon.
        let idle: Vec<(String, u64)> = idle
            .into_iter()
            .filter(|(_, consumer, count)| *count < self.options.max_deliver && consumer != DEAD)
            .take(self.options.prefetch.max(1))
            .map(|(id, _, count)| (id, count))
            .collect();
        let ids = idle.iter().map(|(id, _)| id.clone()).collect();
        let counts: HashMap<String, u64> = idle.into_iter().collect();
        // Oldest first, as XPENDING lists them.
        let claimed = self.claim(&reader.consumer, ids).await?;
        let now = Instant::now();
        for entry in claimed.into_iter().filter(|e| e.fields.is_some()) {
            let attempt = counts.get(&entry.id).copied().unwrap_or(1) + 1;
            reader.buffer.push_back((entry, attempt, now));
        }
        Ok(())
    }

    /// Commands that used up their deliveries, claimed for the `dead-letters` consumer
    /// (so one process reports each).
    pub(super) async fn claim_exhausted(&self) -> Result<Vec<Exhausted>, BusError> {
        let idle = self.idle_commands().await?;
        let counts: HashMap<String, u64> = idle
            .into_iter()
            .filter(|(_, _, count)| *count >= self.options.max_deliver)
            .map(|(id, _, count)| (id, count))
            .collect();
        let claimed = self.claim(DEAD, counts.keys().cloned().collect()).await?;
        let mut out = Vec::new();
        for entry in claimed {
            let command = entry
                .get(wire::DATA)
                .and_then(|d| serde_json::from_slice::<TaskCommand>(d).ok());
            let Some(command) = command else {
                self.ack_command(&entry.id).await?;
                continue;
            };
            let position = self.next_position.fetch_add(1, Ordering::Relaxed);
            let deliveries = counts.get(&entry.id).copied().unwrap_or(0);
            self.exhausted.insert(position, entry.id);
            out.push(Exhausted {
                command,
                deliveries,
                position,
            });
        }
        Ok(out)
    }

    pub(super) async fn move_to_dead_letters(&self, exhausted: &Exhausted) -> Result<(), BusError> {
        let id = self
            .exhausted
            .get(&exhausted.position)
            .map(|e| e.value().clone())
            .ok_or_else(|| {
                BusError::Unavailable(format!(
                    "exhausted command {} was not reported by this process",
                    exhausted.position
                ))
            })?;
        let payload =
            serde_json::to_vec(&exhausted.command).map_err(|e| BusError::Other(Box::new(e)))?;
        self.run(
            "XADD",
            vec![
                self.keys.dead_letters().into(),
                "MAXLEN".into(),
                "~".into(),
                100_000.into(),
                "*".into(),
                wire::DATA.into(),
                Value::Bytes(payload.into()),
            ],
        )
        .await?;
        self.ack_command(&id).await?;
        self.exhausted.remove(&exhausted.position);
        Ok(())
    }

    /// Deletes a command's entry and acknowledges it (deleted first: a lost ack leaves a
    /// pending id without an entry, which the next reclaim drops).
    pub(super) async fn ack_command(&self, id: &str) -> Result<(), BusError> {
        let key = self.keys.commands();
        let pipeline = self.client.pipeline();
        let _: () = pipeline
            .custom(cmd("XDEL"), vec![Value::from(key.as_str()), id.into()])
            .await
            .map_err(|e| describe(&e))?;
        let _: () = pipeline
            .custom(
                cmd("XACK"),
                vec![Value::from(key.as_str()), GROUP.into(), id.into()],
            )
            .await
            .map_err(|e| describe(&e))?;
        for r in pipeline.try_all::<Value>().await {
            r.map_err(|e| describe(&e))?;
        }
        Ok(())
    }

    /// Sets the idle time of a command `consumer` still holds; an error if it lost it.
    async fn touch(&self, consumer: &str, id: &str, idle: Duration) -> Result<(), BusError> {
        let touched = self
            .run(
                "EVAL",
                vec![
                    TOUCH.into(),
                    1.into(),
                    self.keys.commands().into(),
                    GROUP.into(),
                    consumer.into(),
                    id.into(),
                    (millis(idle) as i64).into(),
                ],
            )
            .await?;
        if touched.as_u64() == Some(1) {
            Ok(())
        } else {
            Err(BusError::Unavailable(format!(
                "command {id} is no longer held by this worker (its ack wait passed; another worker took it)"
            )))
        }
    }
}

struct CommandAcker {
    core: Arc<Core>,
    consumer: String,
    id: String,
}

#[async_trait]
impl Acker for CommandAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.core.ack_command(&self.id).await
    }
    /// Redelivered once `delay` has passed (at most the ack wait): the entry's idle time
    /// is set so that a reclaim takes it then.
    async fn nack(&self, delay: Duration) -> Result<(), BusError> {
        let idle = self.core.options.ack_wait.saturating_sub(delay);
        self.core.touch(&self.consumer, &self.id, idle).await
    }
    async fn in_progress(&self) -> Result<(), BusError> {
        self.core
            .touch(&self.consumer, &self.id, Duration::ZERO)
            .await
    }
}

/// A stream of deliveries from `reader`; ends when `closed` fires.
pub(super) fn command_stream(
    core: Arc<Core>,
    reader: Reader,
    closed: CancellationToken,
) -> CommandStream {
    futures::stream::unfold((reader, core), move |(mut reader, core)| {
        let closed = closed.clone();
        async move {
            loop {
                if closed.is_cancelled() {
                    let _ = reader.client.quit().await;
                    return None;
                }
                if let Some(d) = core.next_buffered(&mut reader) {
                    return Some((Ok(d), (reader, core)));
                }
                if let Err(e) = core.fill(&mut reader).await {
                    if no_group(&e) {
                        // Redis lost the group (a restart without persistence): recreate it.
                        let _ = create_group(&core.client, &core.keys.commands(), GROUP, "0").await;
                        continue;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return Some((Err(e), (reader, core)));
                }
            }
        }
    })
    .boxed()
}

/// Exhausted commands, looked for a few times per ack wait; ends when `closed` fires.
pub(super) fn exhausted_stream(core: Arc<Core>, closed: CancellationToken) -> ExhaustedStream {
    let every = reclaim_every(core.options.ack_wait);
    futures::stream::unfold(
        (core, VecDeque::<Exhausted>::new()),
        move |(core, mut found)| {
            let closed = closed.clone();
            async move {
                loop {
                    if let Some(ex) = found.pop_front() {
                        return Some((ex, (core, found)));
                    }
                    tokio::select! {
                        _ = closed.cancelled() => return None,
                        _ = tokio::time::sleep(every) => {}
                    }
                    match core.claim_exhausted().await {
                        Ok(list) => found.extend(list),
                        Err(e) => {
                            tracing::debug!(error = %e, "could not look for exhausted commands")
                        }
                    }
                }
            }
        },
    )
    .boxed()
}
