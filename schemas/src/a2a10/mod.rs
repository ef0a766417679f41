//! The A2A 1.0 wire form (`../shared/spec/a2a-v1.0.proto`, proto3 JSON: lowerCamelCase
//! fields, `TASK_STATE_*` / `ROLE_*` enum names, parts as a flat oneof) and its lossless
//! conversion to and from the internal object model, which is 0.3-shaped ([`crate::a2a`]).
//! Conversion happens at the edge only: the bus contract, the store and the handlers never
//! see a 1.0 type.
//!
//! - `model`: `Part`, `Message`, `Artifact`, `Task`, the streamed events,
//!   [`StreamResponse`], [`SendMessageResponse`], [`TaskPushNotificationConfig`] (its
//!   module header is the conversion table).
//! - `requests`: each method's params and results.
//! - [`enums`]: the `TASK_STATE_*` and `ROLE_*` spellings.
//! - [`methods`]: the 1.0 JSON-RPC method names.

pub mod enums;
mod model;
mod requests;

pub use model::*;
pub use requests::*;

/// The 1.0 JSON-RPC method names, and the internal method each one runs.
pub mod methods {
    use crate::jsonrpc::Method;

    /// The internal method of a 1.0 method name. Bindu's extensions (`tasks/feedback`,
    /// `contexts/list`, `contexts/clear`) keep their names under 1.0.
    pub fn from_name(name: &str) -> Option<Method> {
        Some(match name {
            "SendMessage" => Method::MessageSend,
            "SendStreamingMessage" => Method::MessageStream,
            "GetTask" => Method::TasksGet,
            "ListTasks" => Method::TasksList,
            "CancelTask" => Method::TasksCancel,
            "SubscribeToTask" => Method::TasksResubscribe,
            "CreateTaskPushNotificationConfig" => Method::PushConfigSet,
            "GetTaskPushNotificationConfig" => Method::PushConfigGet,
            // The proto's name, and the prose specification's.
            "ListTaskPushNotificationConfigs" | "ListTaskPushNotificationConfig" => {
                Method::PushConfigList
            }
            "DeleteTaskPushNotificationConfig" => Method::PushConfigDelete,
            "GetExtendedAgentCard" => Method::GetAuthenticatedExtendedCard,
            "tasks/feedback" => Method::TasksFeedback,
            "contexts/list" => Method::ContextsList,
            "contexts/clear" => Method::ContextsClear,
            _ => return None,
        })
    }

    /// The 1.0 name of an internal method.
    pub fn name(method: Method) -> &'static str {
        match method {
            Method::MessageSend => "SendMessage",
            Method::MessageStream => "SendStreamingMessage",
            Method::TasksGet => "GetTask",
            Method::TasksList => "ListTasks",
            Method::TasksCancel => "CancelTask",
            Method::TasksResubscribe => "SubscribeToTask",
            Method::PushConfigSet => "CreateTaskPushNotificationConfig",
            Method::PushConfigGet => "GetTaskPushNotificationConfig",
            Method::PushConfigList => "ListTaskPushNotificationConfigs",
            Method::PushConfigDelete => "DeleteTaskPushNotificationConfig",
            Method::GetAuthenticatedExtendedCard => "GetExtendedAgentCard",
            other => other.as_str(),
        }
    }
}

#[cfg(test)]
mod tests;
