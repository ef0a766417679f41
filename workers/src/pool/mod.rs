//! The worker pool.
//!
//! For each command: take the conversation from the command (a redelivery, a command
//! without it, or a task a cancel signal named reads the task from the store instead, and a
//! task that already ended stops there), announce `working` (an event, numbered after the
//! command's `version`), run the handler (its streamed chunks and interim statuses are
//! announced as they come), then record the whole run in one compare-and-set write through
//! the [`TaskLedger`] (so a canceled task stays canceled), publish the outcome's events, and
//! ack. A result the store refuses fails the task with the reason; a store that stays
//! unavailable hands the command back. At most `concurrency` handlers run at once; the pool
//! takes no new command while it is full (back-pressure on the queue).
//!
//! Limits per run: `task_timeout` (the cancel token fires, then the run is aborted after
//! [`CANCEL_GRACE`] and the task fails), `max_output_bytes` (chunks, status messages and the
//! result together; past it the emitter refuses and the result fails the task). A panic
//! fails the task; the pool keeps serving.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::{BusError, Delivery};
use bindu_engine::identity::Identity;
use bindu_schemas::bus::TaskEvent;

use bindu_engine::ledger::Patience;
use bindu_engine::store::{
    status_event, Access, ArtifactChunk, Expect, ListQuery, StoreError, TaskUpdate,
};
use bindu_engine::{Bus, TaskLedger, TaskStore};
use bindu_schemas::{Artifact, Message, Part, TaskState, TaskStatus};
use dashmap::DashMap;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::handler::{
    check_parts, part_size, Emitter, Handler, HandlerInput, HandlerOutput, OutputBudget, RunLog,
};
use crate::payments::{self, Settlement};
use bindu_engine::x402::SettleMode;

mod metrics;
mod outcome;
mod paid;
mod recent;
mod signing;

pub use metrics::WorkerMetrics;
use recent::RecentIds;

use outcome::*;
pub use signing::sign_parts;
pub(crate) use signing::sign_update;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Handlers running at once.
    pub concurrency: usize,
    /// After shutdown is signalled, how long running handlers may take to finish before they
    /// are interrupted and their tasks marked failed.
    pub drain_timeout: Duration,
    /// How often a running handler's command is marked in progress (keep it well under the
    /// bus's redelivery deadline).
    pub heartbeat: Duration,
    /// Longest one handler run may take before it is interrupted and its task failed.
    pub task_timeout: Option<Duration>,
    /// Most bytes of output (artifact parts, chunks, status messages) of one run.
    pub max_output_bytes: usize,
    /// Earlier tasks of the same context handed to the handler (`HandlerInput::context_history`).
    pub history_sessions: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 256,
            drain_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            task_timeout: Some(Duration::from_secs(600)),
            max_output_bytes: 10 * 1024 * 1024,
            history_sessions: 0,
        }
    }
}

pub struct WorkerPool {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn TaskStore>,
    bus: Arc<dyn Bus>,
    handler: Arc<dyn Handler>,
    options: WorkerOptions,
    /// Records every transition and announces it (persist, then announce).
    ledger: TaskLedger,
    running: DashMap<String, CancellationToken>,
    /// Set when the drain deadline passed on a bus whose commands outlive this process:
    /// handlers interrupted from then on hand their commands back instead of failing.
    handing_back: std::sync::atomic::AtomicBool,
    /// Tasks a cancel signal named while no handler here ran them (recent ones, bounded):
    /// a command for one is checked against the store before it runs.
    canceled: std::sync::Mutex<RecentIds>,
    identity: Option<Arc<Identity>>,
    /// Settles the payments of paid tasks (x402).
    settlement: Option<Settlement>,
    metrics: WorkerMetrics,
}

/// How long a worker keeps retrying a write while the task store is unavailable.
pub const RECORD_DEADLINE: Duration = Duration::from_secs(120);

/// How long a handler may keep running after its cancel token fired before it is aborted.
pub const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// How long a run's `working` event waits to be announced with the run's next event (its
/// outcome, for a fast handler): one bus message instead of two. A handler that streams
/// releases it with its first chunk or status.
pub const WORKING_HOLD: Duration = Duration::from_millis(5);

/// Most referenced tasks loaded for one run.
const MAX_REFERENCES: usize = 32;

impl WorkerPool {
    pub fn new(
        store: Arc<dyn TaskStore>,
        bus: Arc<dyn Bus>,
        handler: Arc<dyn Handler>,
        options: WorkerOptions,
    ) -> Self {
        WorkerPool {
            inner: Arc::new(Inner {
                ledger: TaskLedger::new(store.clone(), bus.clone()),
                store,
                bus,
                handler,
                options,
                running: DashMap::new(),
                handing_back: std::sync::atomic::AtomicBool::new(false),
                canceled: Default::default(),
                identity: None,
                settlement: None,
                metrics: WorkerMetrics::default(),
            }),
        }
    }

    /// Signs every text part the agent produces with this identity
    /// (`metadata["did.message.signature"]`).
    pub fn with_identity(mut self, identity: Arc<Identity>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.identity = Some(identity);
        }
        self
    }

    /// Settles the payments that paid tasks' commands carry (x402). Without it, a paid
    /// command's task fails unpaid rather than deliver unpaid work.
    pub fn with_payments(mut self, settlement: Settlement) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.settlement = Some(settlement);
        }
        self
    }

    /// The pool's metrics (slots, runs, redeliveries), for a `/metrics` registry.
    pub fn metrics(&self) -> WorkerMetrics {
        self.inner.metrics.clone()
    }

    /// Runs until `shutdown` fires, then drains in-flight tasks.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        let inner = self.inner;
        let concurrency = inner.options.concurrency.max(1);
        let mut commands = inner.bus.consume_commands().await?;
        let mut cancels = inner.bus.cancel_signals().await?;
        let listener = {
            let inner = inner.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let task_id = tokio::select! {
                        id = cancels.next() => match id { Some(id) => id, None => break },
                        _ = shutdown.cancelled() => break,
                    };
                    if let Some(token) = inner.running.get(&task_id) {
                        tracing::info!(task_id = %task_id, "cancel signal: interrupting the handler");
                        token.cancel();
                    } else {
                        inner
                            .canceled
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(task_id);
                    }
                }
            })
        };
        let dead_letters = {
            let inner = inner.clone();
            let mut exhausted = inner.bus.exhausted_commands().await?;
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let ex = tokio::select! {
                        e = exhausted.next() => match e { Some(e) => e, None => break },
                        _ = shutdown.cancelled() => break,
                    };
                    inner.give_up(ex).await;
                }
            })
        };
        let permits = Arc::new(Semaphore::new(concurrency));
        inner.metrics.slots.set(concurrency as i64);
        tracing::info!(concurrency, "worker pool started");
        // Whether the pool was told to stop (`shutdown`) rather than finding its intake
        // closed ([`Bus::close_intake`]); in the second case `shutdown` still ends the drain
        // early (the supervisor's deadline).
        let mut told_to_stop = false;
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.cancelled() => { told_to_stop = true; break }
            };
            let delivery = tokio::select! {
                d = commands.next() => d,
                _ = shutdown.cancelled() => { told_to_stop = true; break }
            };
            match delivery {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "could not take a command from the bus; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Some(Ok(d)) => {
                    let busy = inner.metrics.taken(d.attempt);
                    let inner = inner.clone();
                    let span = tracing::info_span!(
                        "task",
                        task_id = %d.command.task_id,
                        context_id = %d.command.context_id,
                        caller = d.command.caller.as_deref().unwrap_or("-"),
                        otel.name = tracing::field::Empty,
                        otel.kind = tracing::field::Empty,
                    );
                    if bindu_engine::trace::enabled() {
                        // The run continues the trace of the request that queued it.
                        span.record("otel.name", "worker.run");
                        span.record("otel.kind", "consumer");
                        bindu_engine::trace::follow(&span, d.command.trace.as_ref());
                    }
                    tokio::spawn(
                        async move {
                            inner.process(d).await;
                            drop((busy, permit));
                        }
                        .instrument(span),
                    );
                }
            }
        }
        drop(commands);
        // Drain: wait for running handlers, then interrupt whatever is left.
        let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
        // True once every running handler has finished.
        let drained = async {
            let all_done = async { permits.acquire_many(all).await.is_ok() };
            if told_to_stop {
                all_done.await
            } else {
                tokio::select! {
                    done = all_done => done,
                    _ = shutdown.cancelled() => false,
                }
            }
        };
        if !tokio::time::timeout(inner.options.drain_timeout, drained)
            .await
            .unwrap_or(false)
        {
            // On a durable queue another worker can run them again: their commands are
            // handed back (a rolling restart loses nothing). Elsewhere the queue dies with
            // this process, so they are recorded as interrupted.
            let hand_back = inner.bus.commands_outlive_process();
            inner
                .handing_back
                .store(hand_back, std::sync::atomic::Ordering::SeqCst);
            tracing::warn!(
                running = inner.running.len(),
                hand_back,
                "drain deadline passed; interrupting running handlers{}",
                if hand_back {
                    " and handing their commands back to the bus"
                } else {
                    ""
                }
            );
            for entry in inner.running.iter() {
                entry.value().cancel();
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), permits.acquire_many(all)).await;
        }
        listener.abort();
        dead_letters.abort();
        tracing::info!("worker pool stopped");
        Ok(())
    }
}

enum Outcome {
    Finished(Result<HandlerOutput, crate::HandlerError>),
    Panicked,
    Interrupted,
    /// Interrupted because this worker stops: the command goes back to the bus.
    HandedBack,
    TimedOut(Duration),
    /// A paid run interrupted before its payment authorization could no longer be settled.
    PaymentExpiring,
}

impl Inner {
    /// A command ran out of deliveries: fail its task with a reason, then dead-letter it.
    async fn give_up(&self, ex: bindu_engine::bus::Exhausted) {
        let task_id = ex.command.task_id.clone();
        let reason = format!(
            "Task failed: gave up after {} delivery attempts (the handler crashed or timed out each time)",
            ex.deliveries
        );
        let msg = agent_message(vec![Part::text(reason)]);
        let mut update = TaskUpdate::new(&task_id, Expect::NotTerminal)
            .history(msg.clone())
            .status(TaskState::Failed, Some(msg))
            .beside_run();
        if let (Some(p), Some(settlement)) = (&ex.command.payment, &self.settlement) {
            update.metadata = settlement.undelivered(&task_id, p).await;
        }
        match self.record(update, Vec::new()).await {
            Ok(_) => {
                tracing::warn!(%task_id, deliveries = ex.deliveries, "task failed after its last delivery")
            }
            Err(e) => {
                tracing::info!(%task_id, error = %e, "exhausted command for a task that is already settled")
            }
        }
        self.metrics.dead_letters.inc();
        if let Err(e) = self.bus.dead_letter(&ex).await {
            tracing::warn!(%task_id, error = %e, "could not dead-letter the command");
        }
    }

    /// Records an update through the ledger, riding out a store outage (transient errors
    /// are retried with back-off for up to [`RECORD_DEADLINE`]): an accepted task must not
    /// be left behind. A write that committed after its timeout is recognised there.
    async fn record(
        &self,
        update: TaskUpdate,
        held: Vec<TaskEvent>,
    ) -> Result<TaskState, StoreError> {
        // The outcome of a new task's first run, published with the run's `working` (its
        // `submitted` came before it on the bus only if it had a push config then).
        let opens_task = held.first().is_some_and(|e| e.seq == 2);
        self.ledger
            .transition_after(update, Patience::Until(RECORD_DEADLINE), held, opens_task)
            .await
            .map(|applied| applied.state)
    }

    async fn process(&self, d: Delivery) {
        let task_id = d.command.task_id.clone();
        // Registered before the run starts, so no cancel signal can fall between.
        let token = CancellationToken::new();
        self.running.insert(task_id.clone(), token.clone());
        let outcome = metrics::timed(self.run(&d, token)).await;
        self.running.remove(&task_id);
        if outcome.is_some() {
            let _ = d.acker.ack().await;
        }
    }

    /// What a run starts from: the conversation, the version it follows and the owner. From
    /// the command itself on a first delivery; from the store on a redelivery (its first
    /// worker may have died mid-run), a command without them, or a task canceled while
    /// queued. `Err(true)`: nothing to run (ack), `Err(false)`: try again later (nack).
    async fn start_from(&self, d: &Delivery) -> Result<(Vec<Message>, u64, Option<String>), bool> {
        let cmd = &d.command;
        let canceled = self
            .canceled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&cmd.task_id);
        if d.attempt == 1 && cmd.version > 0 && !canceled {
            if let Some(history) = &cmd.history {
                return Ok((history.clone(), cmd.version, cmd.caller.clone()));
            }
        }
        match self.store.get(&cmd.task_id, Access::Internal).await {
            Ok(s)
                if matches!(
                    s.task.status.state,
                    TaskState::Submitted | TaskState::Working
                ) =>
            {
                Ok((s.task.history.unwrap_or_default(), s.version, s.owner))
            }
            Ok(s) => {
                // Canceled while queued, or a duplicate of a run that already ended.
                tracing::debug!(task_id = %cmd.task_id, state = %s.task.status.state, "command skipped");
                Err(true)
            }
            Err(StoreError::NotFound(_)) => {
                tracing::info!(task_id = %cmd.task_id, "task vanished before its handler ran");
                Err(true)
            }
            Err(e) => {
                tracing::warn!(task_id = %cmd.task_id, error = %e, "could not read the task; command will be retried");
                Err(false)
            }
        }
    }

    /// Runs one command; `None` when it was handed back to the bus for a retry.
    async fn run(&self, d: &Delivery, token: CancellationToken) -> Option<()> {
        let cmd = &d.command;
        let task_id = cmd.task_id.as_str();
        let (history, version, owner) = match self.start_from(d).await {
            Ok(start) => start,
            Err(true) => return Some(()),
            Err(false) => {
                let _ = d.acker.nack(Duration::from_secs(1)).await;
                return None;
            }
        };
        let payment = cmd.payment.as_ref();
        let mode = self
            .settlement
            .as_ref()
            .map_or(SettleMode::After, |s| s.mode);
        // Settled before the run (`X402__SETTLE=before`): a payment that does not settle
        // fails the task without running the handler.
        let mut paid_before = None;
        if let (Some(p), Some(settlement), SettleMode::Before) = (payment, &self.settlement, mode) {
            let settled = match settlement.settle(task_id, p).await {
                Ok(settled) => settled,
                Err(e) => return self.retry_payment(d, task_id, e).await,
            };
            if let Err(e) = settlement.record(task_id, p, &settled, None).await {
                return self.retry_payment(d, task_id, e).await;
            }
            match settled {
                payments::Settled::Yes(r) => paid_before = Some(payments::completed(&r)),
                payments::Settled::Unknown(e) => {
                    // Not run until the payment is reconciled (see `payments::reconcile`).
                    let update = pending_payment(task_id, p, &e, 0);
                    return self.record_or_retry(d, task_id, update, Vec::new()).await;
                }
                refused => {
                    let (metadata, reason) = payments::unpaid(p, &refused);
                    let mut update = failed(task_id, format!("Task failed: {reason}"));
                    update.metadata = Some(metadata);
                    return self.record_or_retry(d, task_id, update, Vec::new()).await;
                }
            }
        }
        // `working` is announced, not written: the outcome records the whole run at once.
        // It is held for up to WORKING_HOLD: a run that ends sooner announces it in one bus
        // message with its outcome; the handler's first chunk or status releases it too.
        let now = bindu_engine::time::now_rfc3339();
        let working = TaskStatus {
            state: TaskState::Working,
            message: None,
            timestamp: Some(now.clone()),
        };
        let event = status_event(task_id, &cmd.context_id, &working, version + 1, &now);
        let run_log = Arc::new(tokio::sync::Mutex::new(RunLog {
            last_seq: version + 1,
            announced: 1,
            streamed: Vec::new(),
            held: vec![event],
            withheld: Vec::new(),
        }));
        let hold = tokio::time::sleep(WORKING_HOLD);
        tokio::pin!(hold);
        let mut holding = true;

        let mut seen = HashSet::new();
        let mut references = Vec::new();
        let mut wanted: Vec<String> = Vec::new();
        for m in &history {
            if let Some(ids) = &m.reference_task_ids {
                wanted.extend(ids.iter().cloned());
            }
        }
        for id in &wanted {
            if references.len() == MAX_REFERENCES
                || !seen.insert(id.clone())
                || id.as_str() == task_id
            {
                continue;
            }
            // Only tasks the same caller owns are visible; others are silently skipped.
            if let Ok(r) = self.store.get(id, Access::Owner(owner.as_deref())).await {
                references.push(r.task);
            }
        }

        let context_history = self
            .context_history(task_id, &cmd.context_id, owner.as_deref())
            .await;

        let budget = OutputBudget::new(self.options.max_output_bytes);
        let skill = crate::handler::skill_of(&history);
        let input = HandlerInput {
            task_id: task_id.to_string(),
            context_id: cmd.context_id.clone(),
            skill,
            history,
            references,
            context_history,
            caller: owner.clone(),
            cancel: token.clone(),
            emitter: Emitter {
                task_id: task_id.to_string(),
                context_id: cmd.context_id.clone(),
                ledger: self.ledger.clone(),
                identity: self.identity.clone(),
                budget: budget.clone(),
                transcript: Arc::default(),
                run: run_log.clone(),
                // A paid run's chunks wait for its settlement.
                withhold: payment.is_some() && mode == SettleMode::After,
            },
        };
        let emitter = input.emitter.clone();
        let handler = self.handler.clone();
        let handler_span = bindu_engine::trace::span(
            || tracing::info_span!("handler", otel.name = "handler.run", task_id = %task_id),
        );
        let mut run =
            tokio::spawn(async move { handler.handle(input).await }.instrument(handler_span));
        let mut heartbeat =
            tokio::time::interval(self.options.heartbeat.max(Duration::from_millis(100)));
        heartbeat.tick().await;
        // A paid run must end while its payment can still be settled (see `payments`).
        let pay_limit = payment
            .zip(self.settlement.as_ref())
            .and_then(|(p, s)| s.run_limit(p));
        let limit = match (self.options.task_timeout, pay_limit) {
            (Some(t), Some(p)) if p < t => Some((p, true)),
            (Some(t), _) => Some((t, false)),
            (None, Some(p)) => Some((p, true)),
            (None, None) => None,
        };
        let deadline = async {
            match limit {
                Some(limit) => {
                    tokio::time::sleep(limit.0).await;
                    limit
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let outcome = loop {
            tokio::select! {
                r = &mut run => break match r {
                    // A handler that noticed the cancel token and gave up before this loop
                    // saw the token fire: an interruption (handed back while this worker
                    // stops), not a failure of the task.
                    Ok(Err(_)) if token.is_cancelled() => {
                        if self.handing_back.load(std::sync::atomic::Ordering::SeqCst) {
                            Outcome::HandedBack
                        } else {
                            Outcome::Interrupted
                        }
                    }
                    Ok(r) => Outcome::Finished(r),
                    Err(_) => Outcome::Panicked,
                },
                _ = token.cancelled() => {
                    // Give the handler a moment to notice `input.cancel` and clean up.
                    if tokio::time::timeout(CANCEL_GRACE, &mut run).await.is_err() {
                        run.abort();
                    }
                    break if self.handing_back.load(std::sync::atomic::Ordering::SeqCst) {
                        Outcome::HandedBack
                    } else {
                        Outcome::Interrupted
                    };
                }
                (limit, payment_expiring) = &mut deadline => {
                    if payment_expiring {
                        tracing::warn!(task_id, limit_secs = limit.as_secs_f64(), "the paid run would outlive its payment authorization; interrupting it");
                    } else {
                        tracing::warn!(task_id, limit_secs = limit.as_secs_f64(), "the handler ran past the task timeout; interrupting it");
                    }
                    token.cancel();
                    if tokio::time::timeout(CANCEL_GRACE, &mut run).await.is_err() {
                        run.abort();
                    }
                    break if payment_expiring { Outcome::PaymentExpiring } else { Outcome::TimedOut(limit) };
                }
                _ = &mut hold, if holding => {
                    holding = false;
                    let mut log = run_log.lock().await;
                    let held = std::mem::take(&mut log.held);
                    if !held.is_empty() {
                        self.ledger.announce(held).await;
                    }
                }
                // Long handlers keep their command: no redelivery while still running.
                _ = heartbeat.tick() => {
                    if let Err(e) = d.acker.in_progress().await {
                        tracing::warn!(task_id, error = %e, "could not extend the command's deadline");
                    }
                }
            }
        };

        if matches!(outcome, Outcome::HandedBack) {
            // Nothing recorded: the task stays as it was (`submitted`, or `working`), and the
            // next worker runs it from its stored conversation. Chunks this run streamed were
            // announced only; the next run streams its own.
            tracing::info!(
                task_id,
                "worker stopping: the task's command is handed back to the bus"
            );
            if let Err(e) = d.acker.nack(Duration::ZERO).await {
                // Not acked either: the bus redelivers it after its ack deadline.
                tracing::warn!(task_id, error = %e, "could not hand the command back; the bus redelivers it after its ack deadline");
            }
            return None;
        }
        // No chunk or status is announced after this point (the handler has ended).
        let (announced, streamed, held, withheld) = {
            let mut log = run_log.lock().await;
            (
                log.announced,
                std::mem::take(&mut log.streamed),
                std::mem::take(&mut log.held),
                std::mem::take(&mut log.withheld),
            )
        };
        let expiring = matches!(outcome, Outcome::PaymentExpiring);
        let mut update =
            outcome_update(task_id, outcome, &budget, &emitter).after_run(announced, streamed);
        if let Some(p) = payment {
            update = match paid_before {
                Some(metadata) => {
                    update.metadata = Some(metadata);
                    update
                }
                None => match self
                    .settle_after(task_id, p, update, withheld, expiring)
                    .await
                {
                    Ok(update) => update,
                    Err(e) => return self.retry_payment(d, task_id, e).await,
                },
            };
        }
        if let Some(identity) = &self.identity {
            sign_update(&mut update, identity);
        }
        self.record_or_retry(d, task_id, update, held).await
    }

    /// Records a run's outcome; `None` when the command was handed back for a retry.
    async fn record_or_retry(
        &self,
        d: &Delivery,
        task_id: &str,
        update: TaskUpdate,
        held: Vec<TaskEvent>,
    ) -> Option<()> {
        let announced = update.announced;
        match self.record(update, held.clone()).await {
            Ok(state) => {
                self.metrics.finished(state);
                tracing::debug!(task_id, %state, "task finished")
            }
            Err(StoreError::Conflict { state, .. }) => {
                tracing::info!(task_id, %state, "task changed while its handler ran (canceled?); result dropped")
            }
            Err(StoreError::NotFound(_)) => {
                tracing::info!(
                    task_id,
                    "task deleted while its handler ran; result dropped"
                )
            }
            Err(StoreError::Unavailable(e)) => {
                // Never ack a command whose outcome is not durable: the redelivery runs the
                // task again (at least once), and after the bus's last delivery the task is
                // failed with a reason and the command dead-lettered.
                tracing::warn!(task_id, error = %e, "could not record the task's outcome; command will be retried");
                let _ = d.acker.nack(Duration::from_secs(1)).await;
                return None;
            }
            Err(e) => {
                // The store refused the result itself (a value it cannot hold, say): the task
                // fails with the reason instead of staying unfinished.
                tracing::warn!(task_id, error = %e, "the task's result could not be stored; failing the task");
                let reason = failed(
                    task_id,
                    format!("Task failed: its result could not be stored ({e})"),
                )
                .after_run(announced, Vec::new());
                match self.record(reason, held).await {
                    Ok(_) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound(_)) => {}
                    Err(e) => {
                        tracing::warn!(task_id, error = %e, "could not record the failure; command will be retried");
                        let _ = d.acker.nack(Duration::from_secs(1)).await;
                        return None;
                    }
                }
            }
        }
        Some(())
    }
}

impl Inner {
    /// The newest `history_sessions` other tasks of the context the caller owns, oldest
    /// first. A store error leaves the history out (logged): the run goes on without it.
    async fn context_history(
        &self,
        task_id: &str,
        context_id: &str,
        owner: Option<&str>,
    ) -> Vec<bindu_schemas::Task> {
        let wanted = self.options.history_sessions;
        if wanted == 0 {
            return Vec::new();
        }
        let query = ListQuery {
            cursor: None,
            // One more: the page includes the running task itself.
            limit: u32::try_from(wanted + 1).unwrap_or(u32::MAX),
            context_id: Some(context_id.to_string()),
        };
        match self
            .store
            .list_tasks(Access::Owner(owner), query.into())
            .await
        {
            Ok(page) => {
                let mut tasks: Vec<_> = page
                    .items
                    .into_iter()
                    .filter(|t| t.id != task_id)
                    .take(wanted)
                    .collect();
                tasks.reverse();
                tasks
            }
            Err(e) => {
                tracing::warn!(task_id, context_id, error = %e, "could not load the context's earlier tasks; running without them");
                Vec::new()
            }
        }
    }
}
