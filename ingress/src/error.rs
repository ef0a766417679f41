//! The one place where internal errors become JSON-RPC errors. Clients get a precise code
//! and a useful sentence; logs get the cause.

use bindu_engine::{BusError, StoreError};
use bindu_schemas::jsonrpc::{code, JsonRpcError};

pub fn store_error(e: StoreError) -> JsonRpcError {
    match e {
        StoreError::NotFound(id) => JsonRpcError::task_not_found(&id),
        StoreError::ContextNotFound(id) => JsonRpcError::context_not_found(&id),
        StoreError::Immutable { task_id, state } => {
            JsonRpcError::task_immutable(&task_id, state.as_str())
        }
        StoreError::Busy { task_id, state } => JsonRpcError::invalid_params(format!(
            "task {task_id} is {state}; send a follow-up only after it asks for input, \
             or start a new task in the same context"
        )),
        StoreError::Invalid(msg) => JsonRpcError::invalid_params(msg),
        StoreError::Conflict { task_id, state } => JsonRpcError::new(
            code::INTERNAL_ERROR,
            format!("task {task_id} changed concurrently (now {state}); retry"),
        ),
        StoreError::IllegalTransition { task_id, from, to } => {
            tracing::error!(%task_id, %from, %to, "illegal transition attempted by ingress");
            JsonRpcError::internal("the task cannot make that transition")
        }
        StoreError::Unavailable(cause) => {
            tracing::warn!(%cause, "task store unavailable");
            JsonRpcError::internal("the task store is unavailable; retry shortly")
        }
        StoreError::Other(cause) => {
            tracing::error!(error = %cause, "task store failure");
            JsonRpcError::internal("the task store failed; see the server log")
        }
    }
}

pub fn bus_error(e: BusError) -> JsonRpcError {
    tracing::warn!(error = %e, "bus failure");
    JsonRpcError::internal("the task bus is unavailable; retry shortly")
}
