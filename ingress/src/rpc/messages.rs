//! `message/send` and `message/stream`.
//!
//! Both subscribe to the task's events *before* recording the message, so nothing the
//! worker does can be missed; events with a sequence number at or below the recorded
//! submission belong to an earlier run and are skipped.
//!
//! Accepting a task is one store write (the task row, durable before the id is returned)
//! and one command on the bus that carries the conversation, so no worker reads it back.
//! A blocking send builds its answer from the task's events (the final one carries the
//! agent's reply); it reads the store only when an event was truncated or missed, or when
//! the wait outlives `blocking_wait`.

use std::time::Duration;
use tracing::Instrument;

use bindu_engine::bus::{BusError, EventStream};
use bindu_engine::ledger::AcceptError;
use bindu_engine::store::{merge_artifact, Access, ArtifactChunk, StoreError, SubmitRequest};
use bindu_schemas::bus::{CommandOp, EventBody, TaskCommand, TaskEvent};
use bindu_schemas::jsonrpc::JsonRpcError;
use bindu_schemas::x402::{self, PaymentCommand};
use bindu_schemas::{history_length, Message, MessageSendParams, Part, Task, TaskState};
use futures::StreamExt;

use super::reply::{ok, Answer, Call, Reply};
use crate::error::{bus_error, store_error};
use crate::payments::Gate;
use crate::state::Ingress;

pub(crate) async fn send(
    app: &Ingress,
    id: &Call,
    params: MessageSendParams,
    caller: Option<String>,
    stream: bool,
    gate: Gate,
) -> Result<Reply, JsonRpcError> {
    // A payment verified for this request (its nonce claimed now) is given back when its
    // task is not accepted: nothing will settle it, and the client may send it again.
    let claimed = match &gate {
        Gate::Paid(p) => Some((**p).clone()),
        _ => None,
    };
    let mut accepted = false;
    let result = submit(app, id, params, caller, stream, gate, &mut accepted).await;
    if let (Err(e), Some(p), false, Some(gate)) =
        (&result, &claimed, accepted, app.inner.payments.get())
    {
        tracing::info!(code = e.code, "a paid message was not accepted");
        gate.release(p).await;
    }
    result
}

/// [`send`]; `accepted` is set once the task may run (its record and command exist, or
/// may: a command that could not be queued may still be delivered).
async fn submit(
    app: &Ingress,
    id: &Call,
    params: MessageSendParams,
    caller: Option<String>,
    stream: bool,
    gate: Gate,
    accepted: &mut bool,
) -> Result<Reply, JsonRpcError> {
    let inner = &app.inner;
    check_bounds(&params.message, &inner.options)?;
    let (payment, ask) = match gate {
        Gate::Free => (None, None),
        Gate::Paid(p) | Gate::Prepaid(p) => (Some(*p), None),
        Gate::Ask(required) => (None, Some(required)),
    };
    let paid = payment.is_some();
    let config = params.configuration.unwrap_or_default();
    let trim = history_length(config.history_length);
    let blocking = config.blocking.unwrap_or(true);
    let mut message = params.message;
    // Reserved: Bindu reads a verified payment from it, so a client must never set it.
    if let Some(meta) = &mut message.metadata {
        meta.remove(x402::meta::RESERVED_CONTEXT);
        // A payment in the metadata (a2a-x402) was taken at the gate; the conversation
        // keeps only that it was submitted.
        if meta.remove(x402::meta::PAYLOAD).is_some() && paid {
            meta.insert(x402::meta::STATUS.into(), x402::meta::SUBMITTED.into());
        }
    }
    name_skill(app, &mut message, caller.as_deref())?;
    let task_id = message
        .task_id
        .clone()
        // Time-ordered (UUIDv7): new rows land at the end of the primary key's index
        // instead of on a random page of it, however many tasks are stored.
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    // The payment is kept with the task before the task is accepted: a worker's settlement
    // attempts and answer are recorded against it.
    if let (Some(p), Some(gate)) = (&payment, inner.payments.get()) {
        gate.keep(&task_id, p).await.map_err(|e| {
            tracing::warn!(%task_id, error = %e, "could not record a verified payment with its task");
            JsonRpcError::internal(format!(
                "the payment could not be recorded with its task ({}); nothing was charged and the same payment may be sent again",
                match e {
                    bindu_engine::store::StoreError::Unavailable(_) => "the payment store is unavailable",
                    _ => "the payment store refused it",
                }
            ))
        })?;
    }
    let push_config = config.push_notification_config.map(|mut p| {
        p.id.get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
        p.a2a_version = super::push::payload_version(id);
        p
    });

    let mut events = if stream || blocking {
        Some(
            inner
                .bus
                .subscribe_task(&task_id)
                .await
                .map_err(bus_error)?,
        )
    } else {
        None
    };
    let request = SubmitRequest {
        owner: caller.clone(),
        task_id: task_id.clone(),
        context_id: message.context_id.take(),
        message,
        push_config,
        dedupe: None,
    }
    .deduplicated_for(inner.options.dedupe_window);
    if let Some(required) = ask {
        // Boxed: only priced agents take this path, and its future would otherwise make
        // every send's future larger.
        return Box::pin(ask_payment(
            app, id, request, *required, stream, events, trim,
        ))
        .await;
    }
    // Recording the task and queueing its command run as one detached unit: a client that
    // hangs up mid-request must not leave a recorded task that no worker will ever run.
    // In the request's span: its log lines, and while tracing is on the command carries
    // it to the worker.
    super::record_task(&task_id, request.context_id.as_deref());
    // The caller's open runs: counted before the run exists, so two messages at once
    // cannot both take the last place.
    let counted = match &inner.limits {
        Some(limits) => limits
            .open(caller.as_deref(), &task_id)
            .await
            .map_err(|refusal| {
                limits.metrics().refused(&refusal);
                refusal.error()
            })?,
        None => false,
    };
    let owner = caller.clone();
    let accept = tokio::spawn(accept(app.clone(), request, caller, payment).in_current_span());
    let outcome = accept.await;
    if counted && !matches!(outcome, Ok(Ok(_))) {
        // No run (a failed one has ended): it does not count.
        if let Some(limits) = &inner.limits {
            limits.close(&task_id).await;
        }
    }
    let submitted = match outcome {
        Ok(Ok(submitted)) => submitted,
        // Sent before (same caller and messageId, within the dedupe window): the first's
        // task answers, on whichever replica the first was accepted. Nothing was recorded.
        Ok(Err(AcceptError::Store(StoreError::Duplicate { task_id: first }))) => {
            drop(events);
            return resend(app, id, &first, owner.as_deref(), stream, blocking, trim).await;
        }
        // Not recorded: no command was queued.
        Ok(Err(AcceptError::Store(e))) => return Err(store_error(e)),
        Ok(Err(AcceptError::Bus(e))) => {
            *accepted = true;
            return Err(bus_error(e));
        }
        Err(e) => {
            *accepted = true;
            return Err(JsonRpcError::internal(format!(
                "accepting the task failed: {e}"
            )));
        }
    };
    *accepted = true;
    super::record_task(&task_id, Some(&submitted.task.context_id));
    tracing::debug!(created = submitted.created, "task accepted");

    if stream {
        let events = events
            .take()
            .ok_or_else(|| JsonRpcError::internal("no event subscription"))?;
        let mut snapshot = submitted.task;
        snapshot.trim_history(trim);
        return Ok(Reply::Stream(crate::sse::task_stream(
            app,
            id.clone(),
            snapshot,
            submitted.version,
            events,
            trim,
        )));
    }
    let mut task = match events {
        None => submitted.task,
        Some(mut events) => {
            let limit = inner.options.blocking_wait;
            match wait_final(&mut events, submitted.task, submitted.version, limit).await? {
                Some(task) => task,
                None => {
                    inner
                        .store
                        .get(&task_id, Access::Internal)
                        .await
                        .map_err(store_error)?
                        .task
                }
            }
        }
    };
    task.trim_history(trim);
    match receipt(&task).filter(|_| paid) {
        Some(settled) => match ok(id, Answer::Sent(task))? {
            Reply::Json(body) => Ok(Reply::Paid(body, settled)),
            other => Ok(other),
        },
        None => ok(id, Answer::Sent(task)),
    }
}

/// Records the message of an unpaid call (`X402__FLOW=a2a`) as a task paused in
/// `input-required`, its status message carrying `x402.payment.required`: nothing runs
/// until a follow-up pays. A stream gets the paused task and ends.
async fn ask_payment(
    app: &Ingress,
    id: &Call,
    request: SubmitRequest,
    required: x402::PaymentRequired,
    stream: bool,
    events: Option<EventStream>,
    trim: Option<u32>,
) -> Result<Reply, JsonRpcError> {
    use bindu_engine::store::{Expect, TaskUpdate};
    let inner = &app.inner;
    let task_id = request.task_id.clone();
    let mut status = bindu_schemas::Metadata::new();
    status.insert(
        x402::meta::STATUS.into(),
        x402::meta::PAYMENT_REQUIRED.into(),
    );
    let mut prompt = status.clone();
    prompt.insert(
        x402::meta::REQUIRED.into(),
        serde_json::to_value(&required).map_err(|e| JsonRpcError::internal(e.to_string()))?,
    );
    let mut msg = Message::agent(
        uuid::Uuid::new_v4().to_string(),
        vec![Part::text(required.error.clone())],
    );
    msg.metadata = Some(prompt);
    // Recorded and announced by the ledger like every transition: streams and webhooks
    // see the task submitted and paused.
    let pause = |_: &bindu_engine::store::Submitted| {
        let mut update = TaskUpdate::new(&task_id, Expect::State(TaskState::Submitted))
            .history(msg.clone())
            .status(TaskState::InputRequired, Some(msg));
        update.metadata = Some(status);
        update
    };
    let owner = request.owner.clone();
    let (_, applied) = match inner.ledger.hold(request, pause).await {
        Ok(held) => held,
        // Sent before: the first's task answers (see [`resend`]).
        Err(StoreError::Duplicate { task_id: first }) => {
            drop(events);
            return resend(app, id, &first, owner.as_deref(), stream, false, trim).await;
        }
        Err(e) => return Err(store_error(e)),
    };
    let mut task = inner
        .store
        .get(&task_id, Access::Internal)
        .await
        .map_err(store_error)?
        .task;
    task.trim_history(trim);
    tracing::info!(%task_id, "unpaid call: task paused for its payment (a2a-x402)");
    match (stream, events) {
        (true, Some(events)) => Ok(Reply::Stream(crate::sse::task_stream(
            app,
            id.clone(),
            task,
            applied.version,
            events,
            trim,
        ))),
        _ => ok(id, Answer::Sent(task)),
    }
}

/// A message its caller sent before (the same `messageId` within the dedupe window; the
/// store refused to record it again): answered from the first's task `first`, as the first
/// was or will be. A blocking send waits for that task's run to end (or answers with it as
/// it is when it has ended or paused); a stream replays it from its current state to its
/// end; a non-blocking send gets it as stored. Never a second task or a second run.
async fn resend(
    app: &Ingress,
    id: &Call,
    first: &str,
    caller: Option<&str>,
    stream: bool,
    blocking: bool,
    trim: Option<u32>,
) -> Result<Reply, JsonRpcError> {
    let inner = &app.inner;
    super::record_task(first, None);
    tracing::info!(task_id = %first, "message sent again within the dedupe window: answered with its first task");
    // Subscribe first, then read: nothing between the snapshot and the events is missed.
    let mut events = if stream || blocking {
        Some(inner.bus.subscribe_task(first).await.map_err(bus_error)?)
    } else {
        None
    };
    let snap = inner
        .store
        .get(first, Access::Owner(caller))
        .await
        .map_err(store_error)?;
    let state = snap.task.status.state;
    // Its run has ended, or paused for input: no event is coming for this message.
    let settled = state.is_terminal() || state.is_interrupted();
    if stream {
        let events = match events.take() {
            Some(events) if !settled => events,
            _ => futures::stream::empty().boxed(),
        };
        let mut task = snap.task;
        task.trim_history(trim);
        return Ok(Reply::Stream(crate::sse::task_stream(
            app,
            id.clone(),
            task,
            snap.version,
            events,
            trim,
        )));
    }
    let mut task = match events {
        Some(mut events) if !settled => {
            let limit = inner.options.blocking_wait;
            match wait_final(&mut events, snap.task, snap.version, limit).await? {
                Some(task) => task,
                None => {
                    inner
                        .store
                        .get(first, Access::Owner(caller))
                        .await
                        .map_err(store_error)?
                        .task
                }
            }
        }
        _ => snap.task,
    };
    task.trim_history(trim);
    ok(id, Answer::Sent(task))
}

/// The newest settlement receipt of a task whose payment settled, as the
/// `PAYMENT-RESPONSE` header carries it (base64 JSON).
fn receipt(task: &Task) -> Option<String> {
    use bindu_schemas::x402::meta;
    let metadata = task.metadata.as_ref()?;
    if metadata.get(meta::STATUS)?.as_str()? != meta::COMPLETED {
        return None;
    }
    let last = metadata.get(meta::RECEIPTS)?.as_array()?.last()?;
    let json = serde_json::to_vec(last).ok()?;
    Some(bindu_engine::x402::encode_header(&json))
}

/// Refuses a message whose parts or `referenceTaskIds` pass their limits (each part is
/// stored, run, signed and sent on; each reference is a store read when the task runs).
fn check_bounds(message: &Message, options: &crate::IngressOptions) -> Result<(), JsonRpcError> {
    let parts = message.parts.len();
    if parts > options.max_parts {
        return Err(JsonRpcError::invalid_params(format!(
            "`message.parts` has {parts} parts; at most {} are accepted (server.max_parts / BINDU_MAX_PARTS)",
            options.max_parts
        )));
    }
    let references = message.reference_task_ids.as_ref().map_or(0, Vec::len);
    if references > options.max_reference_task_ids {
        return Err(JsonRpcError::invalid_params(format!(
            "`message.referenceTaskIds` has {references} ids; at most {} are accepted (server.max_reference_task_ids / BINDU_MAX_REFERENCE_TASK_IDS)",
            options.max_reference_task_ids
        )));
    }
    Ok(())
}

/// The metadata key naming the skill a message targets; the handler learns it.
pub const SKILL_ID: &str = "skillId";

/// A text in `metadata` under `key` or its snake_case spelling, if any.
fn metadata_text<'a>(
    metadata: &'a bindu_schemas::Metadata,
    key: &str,
    snake: &str,
) -> Result<Option<&'a str>, JsonRpcError> {
    match metadata.get(key).or_else(|| metadata.get(snake)) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(JsonRpcError::invalid_params(format!(
            "`message.metadata.{key}` must be a text"
        ))),
    }
}

/// Checks the skill a message names and records it as `metadata.skillId` (see
/// [`resolve_skill`]).
fn name_skill(
    app: &Ingress,
    message: &mut Message,
    caller: Option<&str>,
) -> Result<(), JsonRpcError> {
    let Some(skill) = resolve_skill(app, message, caller)? else {
        return Ok(());
    };
    if let Some(metadata) = message.metadata.as_mut() {
        metadata.insert(SKILL_ID.into(), serde_json::Value::String(skill));
    }
    Ok(())
}

/// The skill a message names: the one named (`skillId` / `skill_id`: a public skill, or a
/// private one the caller may see; else -32030), or the best match of the negotiation
/// named (`negotiationId` / `negotiation_id`: an id this agent issued and that has not
/// expired; else -32602).
fn resolve_skill(
    app: &Ingress,
    message: &Message,
    caller: Option<&str>,
) -> Result<Option<String>, JsonRpcError> {
    let Some(metadata) = message.metadata.as_ref() else {
        return Ok(None);
    };
    let named = metadata_text(metadata, SKILL_ID, "skill_id")?.map(str::to_string);
    let negotiated = match metadata_text(metadata, "negotiationId", "negotiation_id")? {
        None => None,
        Some(id) => {
            let Some(negotiator) = &app.inner.negotiator else {
                return Err(JsonRpcError::invalid_params(
                    "`message.metadata.negotiationId`: this agent does not negotiate (negotiation.enabled / NEGOTIATION__ENABLED)",
                ));
            };
            Some(negotiator.skill_of(id).map_err(|e| {
                JsonRpcError::invalid_params(format!(
                    "`message.metadata.negotiationId` cannot be used: {e}"
                ))
            })?)
        }
    };
    let skill = match (named, negotiated) {
        (None, None) => return Ok(None),
        (Some(a), Some(b)) if a != b => {
            return Err(JsonRpcError::invalid_params(format!(
                "`message.metadata.skillId` ({a:?}) is not the skill of its negotiationId ({b:?}); send one of them"
            )))
        }
        (Some(s), _) | (None, Some(s)) => s,
    };
    if app.inner.skills.visible_to(&skill, caller).is_none() {
        return Err(JsonRpcError::new(
            bindu_schemas::jsonrpc::code::SKILL_NOT_FOUND,
            format!("`message.metadata.skillId`: no skill has the id {skill:?}; GET /agent/skills lists them"),
        ));
    }
    Ok(Some(skill))
}

/// The skill whose price a message pays (see [`crate::payments::prices`]): the one it
/// names, else, for a follow-up on a task of the caller's, the skill of that task's
/// conversation (the newest user message that names one, as the handler sees it). A skill
/// that cannot be used, or a task that cannot be read, is none (the agent's price; the
/// message is then refused or run as it would be without prices).
pub(crate) async fn priced_skill(
    app: &Ingress,
    message: &Message,
    caller: Option<&str>,
) -> Option<String> {
    match resolve_skill(app, message, caller) {
        Ok(Some(skill)) => return Some(skill),
        Ok(None) => {}
        Err(_) => return None,
    }
    let task_id = message.task_id.as_deref()?;
    let snap = app
        .inner
        .store
        .get(task_id, Access::Owner(caller))
        .await
        .ok()?;
    snap.task
        .history
        .as_deref()
        .unwrap_or_default()
        .iter()
        .rev()
        .filter(|m| m.role == bindu_schemas::Role::User)
        .find_map(|m| m.metadata.as_ref()?.get(SKILL_ID)?.as_str())
        .map(str::to_string)
}

/// Largest conversation (estimated bytes) a command carries; a larger one is read from the
/// store by the worker.
const INLINE_HISTORY_BYTES: usize = 256 * 1024;

/// A cheap upper estimate of a conversation's size on the wire.
fn conversation_bytes(history: &[Message]) -> usize {
    history
        .iter()
        .map(|m| {
            256 + m
                .parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => t.text.len() + 64,
                    Part::File(f) => {
                        f.file.bytes.as_ref().map_or(0, String::len)
                            + f.file.uri.as_ref().map_or(0, String::len)
                            + 128
                    }
                    Part::Data(d) => {
                        serde_json::to_vec(&d.data).map_or(usize::MAX / 4, |v| v.len())
                    }
                })
                .sum::<usize>()
        })
        .sum()
}

/// Records the message, announces it and queues the command that runs it (the ledger).
async fn accept(
    app: Ingress,
    request: SubmitRequest,
    caller: Option<String>,
    payment: Option<PaymentCommand>,
) -> Result<bindu_engine::store::Submitted, AcceptError> {
    let message_id = request.message.message_id.clone();
    let command = |submitted: &bindu_engine::store::Submitted| TaskCommand {
        op: CommandOp::Run,
        task_id: submitted.task.id.clone(),
        context_id: submitted.task.context_id.clone(),
        message_id,
        caller,
        issued_at: bindu_engine::time::now_rfc3339(),
        version: submitted.version,
        history: submitted
            .task
            .history
            .as_ref()
            .filter(|h| conversation_bytes(h) <= INLINE_HISTORY_BYTES)
            .cloned(),
        payment,
        // The request's span: the worker's run continues its trace.
        trace: bindu_engine::trace::current(),
    };
    app.inner.ledger.accept(request, command).await
}

/// Waits for the event that ends this run (terminal or interrupted state), applying each
/// event to `task` (the task as submitted). `None`: read the task from the store instead
/// (an event was truncated or missed, or the wait outlived `limit`).
async fn wait_final(
    events: &mut EventStream,
    mut task: Task,
    after: u64,
    limit: Duration,
) -> Result<Option<Task>, JsonRpcError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut whole = true;
    loop {
        // During shutdown the wait goes on: workers finish queued tasks before the process
        // exits, within the shutdown deadline.
        let next = match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(next) => next,
            Err(_) => {
                tracing::info!(task_id = %task.id, "no final event within the blocking wait; answering with the stored task");
                return Ok(None);
            }
        };
        match next {
            Some(Ok(e)) if e.seq <= after => {}
            Some(Ok(e)) => {
                if e.truncated {
                    whole = false;
                } else if whole {
                    apply_event(&mut task, &e);
                }
                // A paid run whose settlement has no known outcome waits (`working`) for
                // its reconciliation: the blocking answer says so instead of waiting.
                if e.is_final() || awaits_reconciliation(&e) {
                    return Ok(whole.then_some(task));
                }
            }
            // Missed events: the store has the whole task once the final one arrives.
            Some(Err(BusError::Lagged(_))) => whole = false,
            Some(Err(e)) => return Err(bus_error(e)),
            None => return Err(bus_error(BusError::Closed)),
        }
    }
}

/// Whether `e` leaves its task waiting for a payment reconciliation (`payment-orphaned`).
fn awaits_reconciliation(e: &TaskEvent) -> bool {
    use bindu_schemas::x402::meta;
    e.metadata
        .as_ref()
        .and_then(|m| m.get(meta::STATUS))
        .is_some_and(|s| s == meta::ORPHANED)
}

/// What an event changes in a task, as the store recorded it.
fn apply_event(task: &mut Task, e: &TaskEvent) {
    match &e.event {
        EventBody::Status(s) => task.status = s.status.clone(),
        EventBody::Artifact(a) => merge_artifact(
            task,
            &ArtifactChunk {
                artifact: a.artifact.clone(),
                append: a.append.unwrap_or(false),
                last_chunk: a.last_chunk.unwrap_or(false),
            },
        ),
    }
    if !e.history.is_empty() {
        task.history
            .get_or_insert_with(Vec::new)
            .extend(e.history.iter().cloned());
    }
    if let Some(meta) = &e.metadata {
        task.metadata
            .get_or_insert_with(Default::default)
            .extend(meta.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}
