//! `contexts/list` and `contexts/clear` (Bindu extensions).

use bindu_engine::store::{Access, ListQuery};
use bindu_schemas::jsonrpc::JsonRpcError;
use bindu_schemas::{
    page_size, ClearContextParams, ClearContextResult, ListContextsParams, ListContextsResult,
};

use super::reply::{json, ok, Call, Reply};
use crate::error::store_error;
use crate::state::Ingress;

pub(crate) async fn list(
    app: &Ingress,
    id: &Call,
    params: ListContextsParams,
    caller: Option<String>,
) -> Result<Reply, JsonRpcError> {
    let page = app
        .inner
        .store
        .list_contexts(
            Access::Owner(caller.as_deref()),
            ListQuery::first(page_size(params.limit)).after(params.cursor),
        )
        .await
        .map_err(store_error)?;
    ok(
        id,
        json(&ListContextsResult {
            contexts: page.items,
            next_cursor: page.next_cursor,
        })?,
    )
}

pub(crate) async fn clear(
    app: &Ingress,
    id: &Call,
    params: ClearContextParams,
    caller: Option<String>,
) -> Result<Reply, JsonRpcError> {
    let inner = &app.inner;
    let deleted = inner
        .store
        .clear_context(&params.context_id, Access::Owner(caller.as_deref()))
        .await
        .map_err(store_error)?;
    // Stop handlers still working on the deleted tasks.
    for (task_id, state) in &deleted {
        if !state.is_terminal() {
            if let Err(e) = inner.bus.signal_cancel(task_id).await {
                tracing::warn!(%task_id, error = %e, "could not signal cancel for a cleared task");
            }
        }
    }
    tracing::info!(context_id = %params.context_id, tasks = deleted.len(), "context cleared");
    ok(
        id,
        json(&ClearContextResult {
            message: format!(
                "Context {} and its {} task(s) were deleted",
                params.context_id,
                deleted.len()
            ),
            context_id: params.context_id,
            deleted_tasks: deleted.len() as u64,
        })?,
    )
}
