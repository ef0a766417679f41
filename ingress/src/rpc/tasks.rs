//! `tasks/get`, `tasks/cancel`, `tasks/resubscribe`, `tasks/list`, `tasks/feedback` and
//! `agent/getAuthenticatedExtendedCard`.

use bindu_engine::ledger::AcceptError;
use bindu_engine::store::{
    Access, Feedback, ListQuery, ListShape, StoreError, TaskFilter, TaskListing,
};
use bindu_schemas::jsonrpc::JsonRpcError;
use bindu_schemas::{
    history_length, page_size, ListTasksParams, ListTasksResult, TaskFeedbackParams,
    TaskFeedbackResult, TaskIdParams, TaskQueryParams,
};
use tracing::Instrument;

use super::reply::{json, ok, Answer, Call, Reply};
use crate::error::{bus_error, store_error};
use crate::state::Ingress;
use crate::version::Version;

pub(crate) async fn get(
    app: &Ingress,
    id: &Call,
    params: TaskQueryParams,
    caller: Option<String>,
) -> Result<Reply, JsonRpcError> {
    let mut task = app
        .inner
        .store
        .get(&params.id, Access::Owner(caller.as_deref()))
        .await
        .map_err(store_error)?
        .task;
    task.trim_history(history_length(params.history_length));
    ok(id, Answer::Task(task))
}

pub(crate) async fn cancel(
    app: &Ingress,
    id: &Call,
    params: TaskIdParams,
    caller: Option<String>,
) -> Result<Reply, JsonRpcError> {
    let inner = &app.inner;
    let access = Access::Owner(caller.as_deref());
    let snapshot = inner
        .store
        .get(&params.id, access)
        .await
        .map_err(store_error)?;
    let state = snapshot.task.status.state;
    if state.is_terminal() {
        return Err(JsonRpcError::task_not_cancelable(
            &params.id,
            state.as_str(),
        ));
    }
    // Detached, so a client hanging up cannot leave a canceled task whose handler runs on.
    let work = tokio::spawn(
        cancel_now(app.clone(), params.id.clone())
            .instrument(bindu_engine::trace::span(tracing::Span::current)),
    );
    work.await
        .map_err(|e| JsonRpcError::internal(format!("canceling the task failed: {e}")))??;
    tracing::info!(task_id = %params.id, "task canceled");
    let task = inner
        .store
        .get(&params.id, access)
        .await
        .map_err(store_error)?
        .task;
    ok(id, Answer::Task(task))
}

/// Records `canceled` (compare-and-set), announces it and interrupts the handler.
async fn cancel_now(app: Ingress, task_id: String) -> Result<(), JsonRpcError> {
    match app.inner.ledger.cancel(&task_id).await {
        Ok(_) => Ok(()),
        Err(AcceptError::Store(
            StoreError::Conflict { state, .. } | StoreError::IllegalTransition { from: state, .. },
        )) => Err(JsonRpcError::task_not_cancelable(&task_id, state.as_str())),
        Err(AcceptError::Store(e)) => Err(store_error(e)),
        Err(AcceptError::Bus(e)) => Err(bus_error(e)),
    }
}

pub(crate) async fn resubscribe(
    app: &Ingress,
    id: &Call,
    params: TaskIdParams,
    caller: Option<String>,
    last_event_id: Option<u64>,
) -> Result<Reply, JsonRpcError> {
    let inner = &app.inner;
    // With Last-Event-ID and a bus that keeps history, replay exactly what the client
    // missed (from any replica); otherwise: the current snapshot, then live events.
    let resume = last_event_id.filter(|_| inner.bus.keeps_history());
    // Subscribe first, then read the snapshot: events after it are never missed.
    let events = match resume {
        Some(after) => inner.bus.replay_task(&params.id, after).await,
        None => inner.bus.subscribe_task(&params.id).await,
    }
    .map_err(bus_error)?;
    let snapshot = inner
        .store
        .get(&params.id, Access::Owner(caller.as_deref()))
        .await
        .map_err(store_error)?;
    let state = snapshot.task.status.state;
    let missed_something = resume.is_some_and(|after| after < snapshot.version);
    if state.is_terminal() && !missed_something {
        return Err(JsonRpcError::unsupported_operation(format!(
            "task {} is already {state}; read its final state with tasks/get",
            params.id
        )));
    }
    Ok(Reply::Stream(match resume {
        // A client that saw an event has seen the task's first one (a stream opens with the
        // task): the bus holds everything after it. Last-Event-ID 0 means nothing was seen,
        // and a new task's `submitted` goes on the bus only when a webhook needs it, so such a
        // client gets the snapshot first, then what follows it, as without the header.
        Some(after) if after > 0 => {
            crate::sse::resume_stream(app, id.clone(), params.id, None, after, events, None)
        }
        _ => crate::sse::task_stream(
            app,
            id.clone(),
            snapshot.task,
            snapshot.version,
            events,
            None,
        ),
    }))
}

pub(crate) async fn list(
    app: &Ingress,
    id: &Call,
    params: ListTasksParams,
    caller: Option<String>,
) -> Result<Reply, JsonRpcError> {
    // Trimmed where the store reads (Postgres: in the query), and bounded in size.
    let shape = ListShape {
        history: history_length(params.history_length).map(|n| n as usize),
        artifacts: params.include_artifacts.unwrap_or(true),
        max_bytes: Some(app.inner.options.max_list_bytes),
    };
    let size = page_size(params.limit);
    let filter = TaskFilter {
        state: params.status,
        status_after: params.status_after(),
    };
    let query = ListQuery {
        context_id: params.context_id,
        ..ListQuery::first(size).after(params.cursor)
    };
    let listing = TaskListing::from(query).filtered(filter).shaped(shape);
    let store = &app.inner.store;
    let access = Access::Owner(caller.as_deref());
    // Only 1.0 answers a total (`totalSize`, required there), so only 1.0 pays for the
    // count; it runs beside the page.
    let (page, total) = match id.version {
        Version::V03 => (store.list_tasks(access, listing).await, None),
        Version::V10 => {
            let (page, total) = tokio::join!(
                store.list_tasks(access, listing.clone()),
                store.count_tasks(access, &listing)
            );
            (page, Some(total.map_err(store_error)?))
        }
    };
    let page = page.map_err(store_error)?;
    ok(
        id,
        Answer::Tasks(
            ListTasksResult {
                tasks: page.items,
                next_cursor: page.next_cursor,
            },
            size,
            total,
        ),
    )
}

pub(crate) async fn feedback(
    app: &Ingress,
    id: &Call,
    params: TaskFeedbackParams,
    caller: Option<String>,
) -> Result<Reply, JsonRpcError> {
    app.inner
        .store
        .add_feedback(
            &params.task_id,
            Access::Owner(caller.as_deref()),
            Feedback {
                feedback: params.feedback,
                // Validated to 1..=5.
                rating: params.rating.map(|r| r as u8),
                metadata: params.metadata,
                created_at: bindu_engine::time::now_rfc3339(),
            },
        )
        .await
        .map_err(store_error)?;
    ok(
        id,
        json(&TaskFeedbackResult {
            message: "Feedback submitted successfully".into(),
            task_id: params.task_id,
        })?,
    )
}

pub(crate) fn extended_card(app: &Ingress, id: &Call) -> Result<Reply, JsonRpcError> {
    match &app.inner.extended_card {
        Some(card) => ok(id, json(card)?),
        None => Err(JsonRpcError::extended_card_not_configured()),
    }
}
