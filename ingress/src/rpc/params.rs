//! Each method's params, read and validated (the -32602 step of the checks in [`super`]).
//!
//! [`Params::of`] is everything `POST /` checks of a request before a method runs: with
//! [`bindu_schemas::jsonrpc::parse_request`] it is the validator the `jsonrpc` fuzz target
//! drives (`fuzz/fuzz_targets/jsonrpc.rs`).

use bindu_schemas::a2a10;
use bindu_schemas::jsonrpc::{JsonRpcError, Method, Request};
use bindu_schemas::Validate;

use crate::version::Version;
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
    ///
    /// Under 1.0 the params are read in 1.0's form and converted to the internal ones,
    /// which are then validated as 0.3's are.
    pub fn of(req: &Request<'_>, version: Version) -> Result<Params, JsonRpcError> {
        if version == Version::V10 {
            return Params::of_v10(req);
        }
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

    fn of_v10(req: &Request<'_>) -> Result<Params, JsonRpcError> {
        /// Reads 1.0 params `W` and converts them to the internal `P`.
        fn read<W, P>(req: &Request<'_>) -> Result<P, JsonRpcError>
        where
            W: serde::de::DeserializeOwned + TryInto<P>,
            <W as TryInto<P>>::Error: std::fmt::Display,
            P: Validate,
        {
            let raw = req.params.map_or("{}", |p| p.get());
            if !raw.trim_start().starts_with('{') {
                return Err(JsonRpcError::invalid_params("`params` must be an object"));
            }
            let wire: W = serde_json::from_str(raw).map_err(JsonRpcError::invalid_params)?;
            let params: P = wire.try_into().map_err(JsonRpcError::invalid_params)?;
            params.validate().map_err(JsonRpcError::invalid_params)?;
            Ok(params)
        }
        Ok(match req.method {
            Method::MessageSend => Params::MessageSend(read::<a2a10::SendMessageRequest, _>(req)?),
            Method::MessageStream => {
                Params::MessageStream(read::<a2a10::SendMessageRequest, _>(req)?)
            }
            Method::TasksGet => Params::TasksGet(read::<a2a10::GetTaskRequest, _>(req)?),
            Method::TasksCancel => Params::TasksCancel(read::<a2a10::TaskIdRequest, _>(req)?),
            Method::TasksResubscribe => {
                Params::TasksResubscribe(read::<a2a10::TaskIdRequest, _>(req)?)
            }
            Method::TasksList => Params::TasksList(read::<a2a10::ListTasksRequest, _>(req)?),
            Method::GetAuthenticatedExtendedCard => Params::GetAuthenticatedExtendedCard,
            Method::PushConfigSet => {
                Params::PushConfigSet(read::<a2a10::TaskPushNotificationConfig, _>(req)?)
            }
            Method::PushConfigGet => {
                Params::PushConfigGet(read::<a2a10::PushConfigRequest, _>(req)?)
            }
            Method::PushConfigList => Params::PushConfigList(read::<a2a10::TaskIdRequest, _>(req)?),
            Method::PushConfigDelete => {
                Params::PushConfigDelete(read::<a2a10::PushConfigRequest, _>(req)?)
            }
            // Bindu's extensions have no 1.0 form of their own.
            Method::TasksFeedback | Method::ContextsList | Method::ContextsClear => {
                Params::of(req, Version::V03)?
            }
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
