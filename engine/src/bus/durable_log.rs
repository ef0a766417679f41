//! The memory bus's durable event consumers: one bounded log per consumer name.
//!
//! Publishing appends to every log and never waits: when a log is full its oldest entry is
//! dropped (an entry the reader never saw counts as lag, reported once on its stream).
//! Acked entries at the front are released; reopening a consumer delivers every entry from
//! the oldest unacknowledged one on, in publish order, skipping those acked since.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bindu_schemas::bus::TaskEvent;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{Acker, BusError, Consumed, DurableEventStream, EventDelivery};

/// Entries one consumer's log holds (acked entries behind an unacked one included).
pub const DEFAULT_CAPACITY: usize = 262_144;

struct Entry {
    event: Arc<TaskEvent>,
    acked: bool,
    deliveries: u64,
}

struct State {
    /// Position of `entries[0]`.
    base: u64,
    entries: VecDeque<Entry>,
    /// Next position handed to the reader.
    next: u64,
    /// Nacked positions to hand out again, oldest first.
    redeliver: BTreeSet<u64>,
    /// Entries dropped before the reader saw them, not yet reported.
    lagged: u64,
    /// Bumped by every opening; older streams end.
    generation: u64,
}

pub(crate) struct Log {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
}

impl Log {
    fn new(capacity: usize) -> Self {
        Log {
            state: Mutex::new(State {
                base: 0,
                entries: VecDeque::new(),
                next: 0,
                redeliver: BTreeSet::new(),
                lagged: 0,
                generation: 0,
            }),
            notify: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn push(&self, events: &[Arc<TaskEvent>]) {
        {
            let mut s = self.state.lock();
            for event in events {
                s.entries.push_back(Entry {
                    event: event.clone(),
                    acked: false,
                    deliveries: 0,
                });
                if s.entries.len() > self.capacity {
                    s.entries.pop_front();
                    s.base += 1;
                    if s.next < s.base {
                        s.lagged += 1;
                        s.next = s.base;
                    }
                }
            }
        }
        self.notify.notify_one();
    }

    fn ack(&self, pos: u64) {
        let mut s = self.state.lock();
        if pos < s.base {
            return;
        }
        let i = (pos - s.base) as usize;
        if let Some(e) = s.entries.get_mut(i) {
            e.acked = true;
        }
        while s.entries.front().is_some_and(|e| e.acked) {
            s.entries.pop_front();
            s.base += 1;
        }
        s.next = s.next.max(s.base);
    }

    fn redeliver(&self, pos: u64) {
        {
            let mut s = self.state.lock();
            let unacked = pos >= s.base
                && s.entries
                    .get((pos - s.base) as usize)
                    .is_some_and(|e| !e.acked);
            if unacked {
                s.redeliver.insert(pos);
            }
        }
        self.notify.notify_one();
    }

    /// The next delivery of generation `gen`.
    fn take(&self, gen: u64) -> Taken {
        let mut s = self.state.lock();
        if s.generation != gen {
            return Taken::Replaced;
        }
        if s.lagged > 0 {
            let n = std::mem::take(&mut s.lagged);
            return Taken::Lagged(n);
        }
        while let Some(pos) = s.redeliver.pop_first() {
            if pos < s.base {
                continue;
            }
            let base = s.base;
            if let Some(e) = s.entries.get_mut((pos - base) as usize) {
                if !e.acked {
                    e.deliveries += 1;
                    return Taken::Event(pos, e.event.clone(), e.deliveries);
                }
            }
        }
        while s.next < s.base + s.entries.len() as u64 {
            let pos = s.next;
            s.next += 1;
            let base = s.base;
            let e = &mut s.entries[(pos - base) as usize];
            if !e.acked {
                e.deliveries += 1;
                return Taken::Event(pos, e.event.clone(), e.deliveries);
            }
        }
        Taken::Nothing
    }
}

enum Taken {
    /// A newer opening replaced this reader.
    Replaced,
    /// Unread entries were dropped.
    Lagged(u64),
    /// Position, event, delivery count.
    Event(u64, Arc<TaskEvent>, u64),
    /// Nothing to read yet.
    Nothing,
}

struct LogAcker {
    log: Arc<Log>,
    pos: u64,
}

#[async_trait]
impl Acker for LogAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.log.ack(self.pos);
        Ok(())
    }
    async fn nack(&self, delay: Duration) -> Result<(), BusError> {
        let log = self.log.clone();
        let pos = self.pos;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            log.redeliver(pos);
        });
        Ok(())
    }
    async fn in_progress(&self) -> Result<(), BusError> {
        // In-process entries never time out.
        Ok(())
    }
}

/// Every durable consumer of one memory bus.
pub(crate) struct DurableLogs {
    logs: Mutex<HashMap<String, Arc<Log>>>,
    capacity: usize,
}

impl DurableLogs {
    pub fn new(capacity: usize) -> Self {
        DurableLogs {
            logs: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub fn publish(&self, events: &[Arc<TaskEvent>]) {
        let logs: Vec<Arc<Log>> = self.logs.lock().values().cloned().collect();
        for log in logs {
            log.push(events);
        }
    }

    pub fn open(&self, name: &str) -> DurableEventStream {
        let log = self
            .logs
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Log::new(self.capacity)))
            .clone();
        let gen = {
            let mut s = log.state.lock();
            s.generation += 1;
            s.next = s.base;
            s.redeliver.clear();
            s.generation
        };
        // Wake a previous reader so it sees it was replaced.
        log.notify.notify_waiters();
        futures::stream::unfold(log, move |log| async move {
            loop {
                let taken = {
                    let notified = log.notify.notified();
                    tokio::pin!(notified);
                    // Registered before looking, so no wake-up between the two is missed.
                    notified.as_mut().enable();
                    match log.take(gen) {
                        Taken::Nothing => {
                            notified.await;
                            Taken::Nothing
                        }
                        other => other,
                    }
                };
                match taken {
                    Taken::Nothing => continue,
                    Taken::Replaced => return None,
                    Taken::Lagged(n) => return Some((Err(BusError::Lagged(n)), log)),
                    Taken::Event(pos, event, attempt) => {
                        let acker = Box::new(LogAcker {
                            log: log.clone(),
                            pos,
                        });
                        return Some((
                            Ok(Consumed::Event(EventDelivery {
                                event,
                                attempt,
                                acker,
                            })),
                            log,
                        ));
                    }
                }
            }
        })
        .boxed()
    }
}
