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
        Params::of_served(req, version, None)
    }

    /// [`Params::of`] on an agent that is A2A 1.0 tenant `tenant` (`server.tenant`): a 1.0
    /// request naming another tenant (or any, when `None`) is refused ([`wrong_tenant`]).
    pub fn of_served(
        req: &Request<'_>,
        version: Version,
        tenant: Option<&str>,
    ) -> Result<Params, JsonRpcError> {
        if version == Version::V10 {
            return Params::of_v10(req, tenant);
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

    fn of_v10(req: &Request<'_>, tenant: Option<&str>) -> Result<Params, JsonRpcError> {
        /// Reads 1.0 params `W`, checks their tenant and converts them to the internal `P`.
        fn read<W, P>(req: &Request<'_>, tenant: Option<&str>) -> Result<P, JsonRpcError>
        where
            W: serde::de::DeserializeOwned + TryInto<P> + a2a10::Tenanted,
            <W as TryInto<P>>::Error: std::fmt::Display,
            P: Validate,
        {
            let wire: W = wire(req)?;
            check_tenant(wire.tenant(), tenant)?;
            let params: P = wire.try_into().map_err(JsonRpcError::invalid_params)?;
            params.validate().map_err(JsonRpcError::invalid_params)?;
            Ok(params)
        }
        /// The 1.0 params object as `W`.
        fn wire<W: serde::de::DeserializeOwned>(req: &Request<'_>) -> Result<W, JsonRpcError> {
            let raw = req.params.map_or("{}", |p| p.get());
            if !raw.trim_start().starts_with('{') {
                return Err(JsonRpcError::invalid_params("`params` must be an object"));
            }
            serde_json::from_str(raw).map_err(JsonRpcError::invalid_params)
        }
        Ok(match req.method {
            Method::MessageSend => {
                Params::MessageSend(read::<a2a10::SendMessageRequest, _>(req, tenant)?)
            }
            Method::MessageStream => {
                Params::MessageStream(read::<a2a10::SendMessageRequest, _>(req, tenant)?)
            }
            Method::TasksGet => Params::TasksGet(read::<a2a10::GetTaskRequest, _>(req, tenant)?),
            Method::TasksCancel => {
                Params::TasksCancel(read::<a2a10::TaskIdRequest, _>(req, tenant)?)
            }
            Method::TasksResubscribe => {
                Params::TasksResubscribe(read::<a2a10::TaskIdRequest, _>(req, tenant)?)
            }
            Method::TasksList => {
                Params::TasksList(read::<a2a10::ListTasksRequest, _>(req, tenant)?)
            }
            Method::GetAuthenticatedExtendedCard => {
                let wire: a2a10::GetExtendedAgentCardRequest = wire(req)?;
                check_tenant(a2a10::Tenanted::tenant(&wire), tenant)?;
                Params::GetAuthenticatedExtendedCard
            }
            Method::PushConfigSet => {
                Params::PushConfigSet(read::<a2a10::TaskPushNotificationConfig, _>(req, tenant)?)
            }
            Method::PushConfigGet => {
                Params::PushConfigGet(read::<a2a10::PushConfigRequest, _>(req, tenant)?)
            }
            Method::PushConfigList => {
                Params::PushConfigList(read::<a2a10::TaskIdRequest, _>(req, tenant)?)
            }
            Method::PushConfigDelete => {
                Params::PushConfigDelete(read::<a2a10::PushConfigRequest, _>(req, tenant)?)
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

/// Refuses a 1.0 request naming a tenant other than `served` (an empty or absent one names
/// none, and is served).
pub(crate) fn check_tenant(given: Option<&str>, served: Option<&str>) -> Result<(), JsonRpcError> {
    match given {
        Some(given) if Some(given) != served => Err(wrong_tenant(given, served)),
        _ => Ok(()),
    }
}

/// A request for tenant `given`, which this agent is not: invalid params (-32602, HTTP+JSON
/// 400 `INVALID_PARAMS`). The specification has no error of its own for it, and an agent is
/// one tenant, so another tenant is a value of the request's `tenant` this agent does not
/// take; not "task not found", which would hide the mistake.
pub(crate) fn wrong_tenant(given: &str, served: Option<&str>) -> JsonRpcError {
    let given: String = given.chars().take(64).collect();
    JsonRpcError::invalid_params(match served {
        Some(served) => format!(
            "this agent is tenant {served:?}, not {given:?}: send `tenant` {served:?} (or none), and use `/{served}/…` or no tenant in HTTP+JSON paths"
        ),
        None => format!(
            "this agent serves no tenants: send no `tenant` (got {given:?}), and no tenant in HTTP+JSON paths"
        ),
    })
}
