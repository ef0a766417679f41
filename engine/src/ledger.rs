//! The task ledger: the one place that records a task's transitions and then announces
//! them, for every caller (the ingress accepting and canceling, workers recording runs and
//! giving up on exhausted commands).
//!
//! - [`TaskLedger::accept`]: records the message, announces `submitted` (flagged when the
//!   message came with a push config), queues the
//!   command; a command that cannot be queued fails the task (recorded and announced) so no
//!   accepted task waits for a worker that will never come.
//! - [`TaskLedger::hold`]: records the message and a transition made before any run (a
//!   task paused for its payment), announces both, queues nothing.
//! - [`TaskLedger::transition`]: a compare-and-set, retried while the store is unavailable
//!   (up to a deadline), with a write that committed after its timeout recognised on retry
//!   (its outcome is announced as stored); then its events, retried while the bus is down.
//! - [`TaskLedger::cancel`]: records `canceled` beside a run that may be in flight,
//!   announces it and signals the worker.
//! - [`TaskLedger::announce`]: events of a run that are recorded with its outcome
//!   (`working`, interim statuses, streamed chunks), published without waiting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bindu_schemas::bus::{TaskCommand, TaskEvent};
use bindu_schemas::{Message, Part, TaskState};
use tracing::Instrument;

use crate::bus::{Bus, BusError};
use crate::retry::RetryPolicy;
use crate::store::{
    status_event, Access, Applied, Expect, StoreError, SubmitRequest, Submitted, TaskStore,
    TaskUpdate,
};

/// Why [`TaskLedger::accept`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The store refused or could not record the message.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The message is recorded but its command could not be queued (the task was failed).
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// How long [`TaskLedger::transition`] retries an unavailable store.
#[derive(Debug, Clone, Copy)]
pub enum Patience {
    /// One attempt (a caller that answers a client now).
    Once,
    /// Retry transient failures with back-off until the deadline.
    Until(Duration),
}

#[derive(Clone)]
pub struct TaskLedger {
    store: Arc<dyn TaskStore>,
    bus: Arc<dyn Bus>,
}

impl TaskLedger {
    pub fn new(store: Arc<dyn TaskStore>, bus: Arc<dyn Bus>) -> Self {
        TaskLedger { store, bus }
    }

    pub fn store(&self) -> &Arc<dyn TaskStore> {
        &self.store
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Records a user message, announces it and queues the command `command` builds from
    /// what was recorded. The task is durable and its command stored before this returns.
    pub async fn accept(
        &self,
        request: SubmitRequest,
        command: impl FnOnce(&Submitted) -> TaskCommand,
    ) -> Result<Submitted, AcceptError> {
        let push_config = request.push_config.is_some();
        let claim = request.dedupe_key();
        let submitted = self
            .store
            .submit(request)
            .instrument(crate::trace::span(|| {
                tracing::info_span!("store", otel.name = "store.submit")
            }))
            .await?;
        let command = command(&submitted);
        let task_id = submitted.task.id.clone();
        // `submitted` is an announcement (its record is the row just written), published in
        // order before the command; it says whether the message came with a push config, so
        // a webhook dispatcher knows from the event itself. A new task without one is not
        // announced: nobody needs it (this process answers from the record; other readers
        // read the task before its events), and its first event on the bus is then its first
        // run's outcome, which says whether the task has push configs by then
        // ([`TaskEvent::opens_task`]).
        if push_config || !submitted.created {
            let mut announced = submitted.event.clone();
            announced.push_configured = push_config;
            if let Err(e) = self.bus.announce(vec![announced]).await {
                tracing::warn!(%task_id, error = %e, "could not publish the submitted event");
            }
        }
        let queued = self.bus.publish_commands(vec![command]).await;
        if let Err(e) = queued {
            // Nothing will run this task: record that instead of leaving it queued forever.
            let reason = agent_text("Task failed: it could not be queued for a worker");
            let update = TaskUpdate::new(&task_id, Expect::State(TaskState::Submitted))
                .history(reason.clone())
                .status(TaskState::Failed, Some(reason));
            if let Err(e) = self.transition(update, Patience::Once).await {
                tracing::warn!(%task_id, error = %e, "could not fail a task whose command was not queued");
            }
            // Its sender is told to retry: the same message must then make a new task, not
            // find this failed one.
            if let Some(key) = claim {
                if let Err(e) = self.store.release_claim(key, &task_id).await {
                    tracing::warn!(%task_id, error = %e, "could not release the claim of a message that was not queued");
                }
            }
            return Err(AcceptError::Bus(e));
        }
        Ok(submitted)
    }

    /// Records a user message and the transition `update` makes of it before any run (a
    /// task that waits, e.g. paused in `input-required` for its payment), then announces
    /// both in order, as [`TaskLedger::accept`] would announce the message: `submitted`
    /// when the message came with a push config (flagged so) or follows up a task, else the
    /// transition opens the task on the bus. No command is queued.
    pub async fn hold(
        &self,
        request: SubmitRequest,
        update: impl FnOnce(&Submitted) -> TaskUpdate,
    ) -> Result<(Submitted, Applied), StoreError> {
        let push_config = request.push_config.is_some();
        let submitted = self.store.submit(request).await?;
        let update = update(&submitted);
        let announced = (push_config || !submitted.created).then(|| {
            let mut e = submitted.event.clone();
            e.push_configured = push_config;
            e
        });
        let opens_task = announced.is_none();
        let applied = self
            .transition_after(
                update,
                Patience::Once,
                announced.into_iter().collect(),
                opens_task,
            )
            .await?;
        Ok((submitted, applied))
    }

    /// Records `canceled` and interrupts the handler wherever it runs. `Conflict` or
    /// `IllegalTransition`: the task is already final.
    pub async fn cancel(&self, task_id: &str) -> Result<Applied, AcceptError> {
        // A worker may be running the task and announcing events it has not recorded yet.
        let update = TaskUpdate::new(task_id, Expect::NotTerminal)
            .status(TaskState::Canceled, None)
            .beside_run();
        let applied = self.transition(update, Patience::Once).await?;
        // Its late writes fail the compare-and-set, so the task stays canceled either way.
        self.bus.signal_cancel(task_id).await?;
        Ok(applied)
    }

    /// Records a compare-and-set update, then announces its events.
    pub async fn transition(
        &self,
        update: TaskUpdate,
        patience: Patience,
    ) -> Result<Applied, StoreError> {
        self.transition_after(update, patience, Vec::new(), false)
            .await
    }

    /// [`TaskLedger::transition`], publishing `held` (events of the run numbered before the
    /// update's, not announced yet: a fast run's `working`) together with the update's own
    /// events, in one bus message where the backend batches. `held` is dropped when the
    /// update is not recorded. With `opens_task` (the outcome of a new task's first run,
    /// whose `submitted` was not announced), the first event published is marked
    /// [`TaskEvent::opens_task`] and says whether the task had push configs when the
    /// outcome was recorded.
    pub async fn transition_after(
        &self,
        update: TaskUpdate,
        patience: Patience,
        held: Vec<TaskEvent>,
        opens_task: bool,
    ) -> Result<Applied, StoreError> {
        let task_id = update.task_id.clone();
        let doubt = AtomicBool::new(false);
        let attempt = || async {
            let r = self
                .store
                .apply(vec![update.clone()])
                .await
                .pop()
                .unwrap_or_else(|| {
                    Err(StoreError::Unavailable(
                        "no result from the task store".into(),
                    ))
                });
            if matches!(r, Err(StoreError::Unavailable(_))) {
                doubt.store(true, Ordering::Relaxed);
            }
            r
        };
        // While tracing is on: the write's time in the store (batched with others: a group
        // commit), retries included.
        let span = crate::trace::span(
            || tracing::info_span!("store", otel.name = "store.transition", task_id = %task_id),
        );
        let result = async {
            match patience {
                Patience::Once => attempt().await,
                Patience::Until(deadline) => {
                    RetryPolicy {
                        base: Duration::from_millis(100),
                        max_delay: Duration::from_secs(5),
                        deadline,
                    }
                    .run(attempt, |e| matches!(e, StoreError::Unavailable(_)))
                    .await
                }
            }
        }
        .instrument(span)
        .await;
        match result {
            Ok(applied) => {
                let mut events = held;
                events.extend(applied.events.iter().cloned());
                if opens_task {
                    if let Some(first) = events.first_mut() {
                        first.opens_task = true;
                        first.push_configured = applied.push_configs;
                    }
                }
                match patience {
                    // A caller answering a client now does not wait for the bus: the
                    // transition is durable, its events follow in the background.
                    Patience::Once => {
                        // Published in the background: with this caller's trace context.
                        if crate::trace::enabled() {
                            let trace = crate::trace::current();
                            for e in events.iter_mut().filter(|e| e.trace.is_none()) {
                                e.trace = trace.clone();
                            }
                        }
                        let ledger = self.clone();
                        tokio::spawn(async move { ledger.publish(events).await });
                    }
                    Patience::Until(_) => self.publish(events).await,
                }
                Ok(applied)
            }
            // An attempt that timed out did commit: announce what the store holds (that
            // attempt's events were never handed back), marked for readers to take the
            // task from the store.
            Err(StoreError::Conflict { state, .. })
                if doubt.load(Ordering::Relaxed) && state.is_final() =>
            {
                tracing::info!(%task_id, %state, "an earlier attempt of this write did commit");
                let snap = self.store.get(&task_id, Access::Internal).await?;
                let mut event = status_event(
                    &task_id,
                    &snap.task.context_id,
                    &snap.task.status,
                    snap.version,
                    &crate::time::now_rfc3339(),
                );
                event.truncated = true;
                let mut events = held;
                events.push(event.clone());
                self.publish(events).await;
                Ok(Applied {
                    state: snap.task.status.state,
                    version: snap.version,
                    events: vec![event],
                    push_configs: false,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Publishes events of a run that are recorded later, with its outcome.
    pub async fn announce(&self, events: Vec<TaskEvent>) {
        if let Err(e) = self.bus.announce(events).await {
            tracing::warn!(error = %e, "could not announce task events");
        }
    }

    /// Publishes recorded events, retrying a bus outage for a while (waiting readers fall
    /// back to the store after their deadline if the events never arrive).
    async fn publish(&self, events: Vec<TaskEvent>) {
        if events.is_empty() {
            return;
        }
        let policy = RetryPolicy {
            base: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
        };
        if let Err(e) = policy
            .run(
                || self.bus.publish_events(events.clone()),
                |e| !matches!(e, BusError::Closed),
            )
            .await
        {
            tracing::warn!(error = %e, "could not publish task events");
        }
    }
}

fn agent_text(text: &str) -> Message {
    Message::agent(uuid::Uuid::new_v4().to_string(), vec![Part::text(text)])
}
