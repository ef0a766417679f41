//! `message/send` and `message/stream`.
//!
//! Both subscribe to the task's events *before* recording the message, so nothing the
//! worker does can be missed; events with a sequence number at or below the recorded
//! submission belong to an earlier run and are skipped.

use bindu_engine::bus::{BusError, EventStream};
use bindu_engine::store::{Access, Expect, SubmitRequest, TaskUpdate};
use bindu_schemas::bus::{CommandOp, TaskCommand};
use bindu_schemas::jsonrpc::{JsonRpcError, RequestId};
use bindu_schemas::{history_length, Message, MessageSendParams, Part, TaskState};
use futures::StreamExt;

use super::{ok, Reply};
use crate::app::Ingress;
use crate::error::{bus_error, store_error};

pub(crate) async fn send(
    app: &Ingress,
    id: &RequestId,
    params: MessageSendParams,
    caller: Option<String>,
    stream: bool,
) -> Result<Reply, JsonRpcError> {
    let inner = &app.inner;
    let config = params.configuration.unwrap_or_default();
    let trim = history_length(config.history_length);
    let blocking = config.blocking.unwrap_or(true);
    let mut message = params.message;
    let task_id = message
        .task_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let push_config = config.push_notification_config.map(|mut p| {
        p.id.get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
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
    };
    // Recording the task and queueing its command run as one detached unit: a client that
    // hangs up mid-request must not leave a recorded task that no worker will ever run.
    let accept = tokio::spawn(accept(app.clone(), request, caller));
    let submitted = accept
        .await
        .map_err(|e| JsonRpcError::internal(format!("accepting the task failed: {e}")))??;
    tracing::debug!(%task_id, created = submitted.created, "task accepted");

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
            wait_final(app, &task_id, &mut events, submitted.version).await?;
            inner
                .store
                .get(&task_id, Access::Internal)
                .await
                .map_err(store_error)?
                .task
        }
    };
    task.trim_history(trim);
    ok(id, &task)
}

/// Records the message, announces it and queues the command that runs it.
async fn accept(
    app: Ingress,
    request: SubmitRequest,
    caller: Option<String>,
) -> Result<bindu_engine::store::Submitted, JsonRpcError> {
    let inner = &app.inner;
    let task_id = request.task_id.clone();
    let message_id = request.message.message_id.clone();
    let submitted = inner.store.submit(request).await.map_err(store_error)?;
    if let Err(e) = inner
        .bus
        .publish_events(vec![submitted.event.clone()])
        .await
    {
        tracing::warn!(%task_id, error = %e, "could not publish the submitted event");
    }
    let command = TaskCommand {
        op: CommandOp::Run,
        task_id: task_id.clone(),
        context_id: submitted.task.context_id.clone(),
        message_id,
        caller,
        issued_at: bindu_engine::time::now_rfc3339(),
    };
    if let Err(e) = inner.bus.publish_commands(vec![command]).await {
        // Nothing will run this task: record that instead of leaving it queued forever.
        let reason = Message::agent(
            uuid::Uuid::new_v4().to_string(),
            vec![Part::text(
                "Task failed: it could not be queued for a worker",
            )],
        );
        let update = TaskUpdate::new(&task_id, Expect::State(TaskState::Submitted))
            .history(reason.clone())
            .status(TaskState::Failed, Some(reason));
        if let Some(Ok(applied)) = inner.store.apply(vec![update]).await.pop() {
            let _ = inner.bus.publish_events(applied.events).await;
        }
        return Err(bus_error(e));
    }
    Ok(submitted)
}

/// Waits for the event that ends this run (terminal or interrupted state).
async fn wait_final(
    app: &Ingress,
    task_id: &str,
    events: &mut EventStream,
    after: u64,
) -> Result<(), JsonRpcError> {
    let inner = &app.inner;
    loop {
        // During shutdown the wait goes on: workers finish queued tasks before the process
        // exits, within the shutdown deadline.
        match events.next().await {
            Some(Ok(e)) if e.seq > after && e.is_final() => return Ok(()),
            Some(Ok(_)) => {}
            Some(Err(BusError::Lagged(_))) => {
                let snap = inner
                    .store
                    .get(task_id, Access::Internal)
                    .await
                    .map_err(store_error)?;
                if snap.version > after && snap.task.status.state.is_final() {
                    return Ok(());
                }
            }
            Some(Err(e)) => return Err(bus_error(e)),
            None => return Err(bus_error(BusError::Closed)),
        }
    }
}
