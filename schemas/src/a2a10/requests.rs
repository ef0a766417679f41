//! The params and results of the 1.0 methods, and their conversion to and from the
//! internal (0.3) params, which every binding's handlers take.
//!
//! | 1.0 | internal (0.3) |
//! |---|---|
//! | `SendMessageRequest`, `configuration.returnImmediately` | `MessageSendParams`, `configuration.blocking` = not `returnImmediately` |
//! | `configuration.taskPushNotificationConfig` | `configuration.pushNotificationConfig` |
//! | `GetTaskRequest` | `TaskQueryParams` |
//! | `ListTasksRequest` `pageToken` / `pageSize`, `includeArtifacts` (default false) | `ListTasksParams` `cursor` / `limit`, `includeArtifacts` |
//! | `CancelTaskRequest`, `SubscribeToTaskRequest`, `ListTaskPushNotificationConfigsRequest` | `TaskIdParams` |
//! | `GetTaskPushNotificationConfigRequest` / `Delete…` (`taskId`, `id`) | `GetTaskPushNotificationConfigParams` / `Delete…` (`id`, `pushNotificationConfigId`) |
//!
//! `tenant` is read by [`Tenanted`] and checked by the server against the one tenant it is
//! (`server.tenant`) before the conversion, which drops it.

use serde::{Deserialize, Serialize};

use super::enums;
use super::model::{ConvertError, Message, Task, TaskPushNotificationConfig};
use crate::{Metadata, TaskState};

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageConfiguration {
    #[serde(alias = "accepted_output_modes")]
    pub accepted_output_modes: Option<Vec<String>>,
    #[serde(alias = "task_push_notification_config")]
    pub task_push_notification_config: Option<TaskPushNotificationConfig>,
    #[serde(alias = "history_length")]
    pub history_length: Option<i64>,
    #[serde(alias = "return_immediately")]
    pub return_immediately: Option<bool>,
}

/// A 1.0 request's `tenant` (empty counts as absent).
pub trait Tenanted {
    fn tenant(&self) -> Option<&str>;
}

macro_rules! tenanted {
    ($($t:ty),*) => {$(
        impl Tenanted for $t {
            fn tenant(&self) -> Option<&str> {
                self.tenant.as_deref().filter(|t| !t.is_empty())
            }
        }
    )*};
}

tenanted!(
    SendMessageRequest,
    GetTaskRequest,
    TaskIdRequest,
    PushConfigRequest,
    ListTasksRequest,
    TaskPushNotificationConfig,
    GetExtendedAgentCardRequest
);

/// `GetExtendedAgentCardRequest`: only its tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GetExtendedAgentCardRequest {
    pub tenant: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendMessageRequest {
    pub tenant: Option<String>,
    pub message: Message,
    pub configuration: Option<SendMessageConfiguration>,
    pub metadata: Option<Metadata>,
}

impl TryFrom<SendMessageRequest> for crate::MessageSendParams {
    type Error = ConvertError;

    fn try_from(r: SendMessageRequest) -> Result<Self, ConvertError> {
        Ok(crate::MessageSendParams {
            message: r.message.try_into()?,
            configuration: r.configuration.map(|c| crate::MessageSendConfiguration {
                accepted_output_modes: c.accepted_output_modes,
                history_length: c.history_length,
                push_notification_config: c
                    .task_push_notification_config
                    .map(TaskPushNotificationConfig::into_config),
                blocking: c.return_immediately.map(|r| !r),
            }),
            metadata: r.metadata,
        })
    }
}

impl From<crate::MessageSendParams> for SendMessageRequest {
    fn from(p: crate::MessageSendParams) -> Self {
        SendMessageRequest {
            tenant: None,
            message: p.message.into(),
            configuration: p.configuration.map(|c| SendMessageConfiguration {
                accepted_output_modes: c.accepted_output_modes,
                task_push_notification_config: c
                    .push_notification_config
                    .map(|p| TaskPushNotificationConfig::of(String::new(), p)),
                history_length: c.history_length,
                return_immediately: c.blocking.map(|b| !b),
            }),
            metadata: p.metadata,
        }
    }
}

/// `GetTask`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetTaskRequest {
    pub tenant: Option<String>,
    pub id: String,
    #[serde(alias = "history_length")]
    pub history_length: Option<i64>,
}

impl From<GetTaskRequest> for crate::TaskQueryParams {
    fn from(r: GetTaskRequest) -> Self {
        crate::TaskQueryParams {
            id: r.id,
            history_length: r.history_length,
            metadata: None,
        }
    }
}

impl From<crate::TaskQueryParams> for GetTaskRequest {
    fn from(p: crate::TaskQueryParams) -> Self {
        GetTaskRequest {
            tenant: None,
            id: p.id,
            history_length: p.history_length,
        }
    }
}

/// `CancelTask`, `SubscribeToTask` (no `metadata`) and `ListTaskPushNotificationConfigs`
/// (`taskId`, `pageSize`, `pageToken`: one page holds every config of a task).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskIdRequest {
    pub tenant: Option<String>,
    #[serde(alias = "taskId", alias = "task_id")]
    pub id: String,
    pub metadata: Option<Metadata>,
    #[serde(alias = "page_size")]
    pub page_size: Option<i64>,
    #[serde(alias = "page_token")]
    pub page_token: Option<String>,
}

impl From<TaskIdRequest> for crate::TaskIdParams {
    fn from(r: TaskIdRequest) -> Self {
        crate::TaskIdParams {
            id: r.id,
            metadata: r.metadata,
        }
    }
}

impl From<crate::TaskIdParams> for TaskIdRequest {
    fn from(p: crate::TaskIdParams) -> Self {
        TaskIdRequest {
            tenant: None,
            id: p.id,
            metadata: p.metadata,
            page_size: None,
            page_token: None,
        }
    }
}

/// `GetTaskPushNotificationConfig` and `DeleteTaskPushNotificationConfig`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushConfigRequest {
    pub tenant: Option<String>,
    #[serde(alias = "task_id")]
    pub task_id: String,
    pub id: String,
}

impl From<PushConfigRequest> for crate::GetTaskPushNotificationConfigParams {
    fn from(r: PushConfigRequest) -> Self {
        crate::GetTaskPushNotificationConfigParams {
            id: r.task_id,
            push_notification_config_id: Some(r.id),
            metadata: None,
        }
    }
}

impl From<PushConfigRequest> for crate::DeleteTaskPushNotificationConfigParams {
    fn from(r: PushConfigRequest) -> Self {
        crate::DeleteTaskPushNotificationConfigParams {
            id: r.task_id,
            push_notification_config_id: r.id,
            metadata: None,
        }
    }
}

impl From<crate::DeleteTaskPushNotificationConfigParams> for PushConfigRequest {
    fn from(p: crate::DeleteTaskPushNotificationConfigParams) -> Self {
        PushConfigRequest {
            tenant: None,
            task_id: p.id,
            id: p.push_notification_config_id,
        }
    }
}

/// `ListTasks`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksRequest {
    pub tenant: Option<String>,
    #[serde(alias = "context_id")]
    pub context_id: Option<String>,
    #[serde(default, with = "enums::task_state::option")]
    pub status: Option<TaskState>,
    #[serde(alias = "page_size")]
    pub page_size: Option<i64>,
    #[serde(alias = "page_token")]
    pub page_token: Option<String>,
    #[serde(alias = "history_length")]
    pub history_length: Option<i64>,
    #[serde(alias = "status_timestamp_after")]
    pub status_timestamp_after: Option<String>,
    #[serde(alias = "include_artifacts")]
    pub include_artifacts: Option<bool>,
}

impl From<ListTasksRequest> for crate::ListTasksParams {
    /// An empty `pageToken`, `contextId` or `statusTimestampAfter`, a zero `pageSize` and
    /// `TASK_STATE_UNSPECIFIED` are proto3 defaults: not set. `includeArtifacts` is false
    /// unless set (0.3's `tasks/list` includes them).
    fn from(r: ListTasksRequest) -> Self {
        crate::ListTasksParams {
            cursor: r.page_token.filter(|t| !t.is_empty()),
            limit: r.page_size.filter(|n| *n != 0),
            context_id: r.context_id.filter(|c| !c.is_empty()),
            history_length: r.history_length,
            include_artifacts: Some(r.include_artifacts.unwrap_or(false)),
            status: r.status.filter(|s| *s != TaskState::Unknown),
            status_timestamp_after: r.status_timestamp_after.filter(|t| !t.is_empty()),
            metadata: None,
        }
    }
}

impl From<crate::ListTasksParams> for ListTasksRequest {
    fn from(p: crate::ListTasksParams) -> Self {
        ListTasksRequest {
            tenant: None,
            context_id: p.context_id,
            status: p.status,
            page_size: p.limit,
            page_token: p.cursor,
            history_length: p.history_length,
            status_timestamp_after: p.status_timestamp_after,
            include_artifacts: p.include_artifacts,
        }
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksResponse {
    pub tasks: Vec<Task>,
    /// Empty on the last page.
    #[serde(default)]
    pub next_page_token: String,
    #[serde(default)]
    pub page_size: i64,
    /// How many tasks all the listing's pages hold (an `int32` on the wire).
    #[serde(default)]
    pub total_size: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskPushNotificationConfigsResponse {
    pub configs: Vec<TaskPushNotificationConfig>,
    #[serde(default)]
    pub next_page_token: String,
}
