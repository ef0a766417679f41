//! Each method's params, read and validated (the -32602 step of the checks in [`super`]).
//!
//! [`Params::of`] is everything `POST /` checks of a request before a method runs: with
//! [`bindu_schemas::jsonrpc::parse_request`] it is the validator the `jsonrpc` fuzz target
//! drives (`fuzz/fuzz_targets/jsonrpc.rs`).

use bindu_schemas::jsonrpc::{JsonRpcError, Method, Request};
use bindu_schemas::{
    ClearContextParams, DeleteTaskPushNotificationConfigParams,
    GetTaskPushNotificationConfigParams, ListContextsParams, ListTasksParams, MessageSendParams,
    TaskFeedbackParams, TaskIdParams, TaskPushNotificationConfig, TaskQueryParams,
};

/// A request's params, typed by its method.
#[derive(Debug)]
pub enum Params {
    MessageSend(MessageSendParams),
    MessageStream(MessageSendParams),
    TasksGet(TaskQueryParams),
    TasksCancel(TaskIdParams),
    TasksResubscribe(TaskIdParams),
    TasksList(ListTasksParams),
    TasksFeedback(TaskFeedbackParams),
    GetAuthenticatedExtendedCard,
    PushConfigSet(TaskPushNotificationConfig),
    PushConfigGet(GetTaskPushNotificationConfigParams),
    PushConfigList(TaskIdParams),
    PushConfigDelete(DeleteTaskPushNotificationConfigParams),
    ContextsList(ListContextsParams),
    ContextsClear(ClearContextParams),
}

impl Params {
    /// Reads and validates `req`'s params for its method (→ -32602 on any failure).
    /// `tasks/list` and `contexts/list` take absent params as the defaults; the extended
    /// card takes none (any given are ignored).
    pub fn of(req: &Request<'_>) -> Result<Params, JsonRpcError> {
        Ok(match req.method {
            Method::MessageSend => Params::MessageSend(req.params()?),
            Method::MessageStream => Params::MessageStream(req.params()?),
            Method::TasksGet => Params::TasksGet(req.params()?),
            Method::TasksCancel => Params::TasksCancel(req.params()?),
            Method::TasksResubscribe => Params::TasksResubscribe(req.params()?),
            Method::TasksList => Params::TasksList(req.params_or_default()?),
            Method::TasksFeedback => Params::TasksFeedback(req.params()?),
            Method::GetAuthenticatedExtendedCard => Params::GetAuthenticatedExtendedCard,
            Method::PushConfigSet => Params::PushConfigSet(req.params()?),
            Method::PushConfigGet => Params::PushConfigGet(req.params()?),
            Method::PushConfigList => Params::PushConfigList(req.params()?),
            Method::PushConfigDelete => Params::PushConfigDelete(req.params()?),
            Method::ContextsList => Params::ContextsList(req.params_or_default()?),
            Method::ContextsClear => Params::ContextsClear(req.params()?),
        })
    }

    /// The method these params are for.
    pub fn method(&self) -> Method {
        match self {
            Params::MessageSend(_) => Method::MessageSend,
            Params::MessageStream(_) => Method::MessageStream,
            Params::TasksGet(_) => Method::TasksGet,
            Params::TasksCancel(_) => Method::TasksCancel,
            Params::TasksResubscribe(_) => Method::TasksResubscribe,
            Params::TasksList(_) => Method::TasksList,
            Params::TasksFeedback(_) => Method::TasksFeedback,
            Params::GetAuthenticatedExtendedCard => Method::GetAuthenticatedExtendedCard,
            Params::PushConfigSet(_) => Method::PushConfigSet,
            Params::PushConfigGet(_) => Method::PushConfigGet,
            Params::PushConfigList(_) => Method::PushConfigList,
            Params::PushConfigDelete(_) => Method::PushConfigDelete,
            Params::ContextsList(_) => Method::ContextsList,
            Params::ContextsClear(_) => Method::ContextsClear,
        }
    }
}
