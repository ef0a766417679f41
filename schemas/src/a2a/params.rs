//! Params (and Bindu extension results) of every JSON-RPC method.

use serde::{Deserialize, Serialize};

use super::message::validate_id;
use super::{Message, Metadata, Task, Validate};

fn validate_history_length(v: Option<i64>) -> Result<(), String> {
    match v {
        Some(n) if n < 0 => Err(format!("`historyLength` must be 0 or more, got {n}")),
        _ => Ok(()),
    }
}

/// Converts a validated `historyLength` to the trim length.
pub fn history_length(v: Option<i64>) -> Option<u32> {
    v.map(|n| n.clamp(0, u32::MAX as i64) as u32)
}

/// `message/send` and `message/stream`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageSendParams {
    pub message: Message,
    pub configuration: Option<MessageSendConfiguration>,
    pub metadata: Option<Metadata>,
}

impl Validate for MessageSendParams {
    fn validate(&self) -> Result<(), String> {
        self.message.validate()?;
        if let Some(m) = &self.metadata {
            super::message::check_nul_map("metadata", m)?;
        }
        if let Some(c) = &self.configuration {
            validate_history_length(c.history_length)?;
            if let Some(p) = &c.push_notification_config {
                p.validate()?;
            }
        }
        Ok(())
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSendConfiguration {
    #[serde(alias = "accepted_output_modes")]
    pub accepted_output_modes: Option<Vec<String>>,
    #[serde(alias = "history_length")]
    pub history_length: Option<i64>,
    #[serde(alias = "push_notification_config")]
    pub push_notification_config: Option<PushNotificationConfig>,
    pub blocking: Option<bool>,
}

/// `tasks/cancel`, `tasks/resubscribe`, `tasks/pushNotificationConfig/list`.
/// `id` is the task id; Bindu's `taskId` / `task_id` are accepted too.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskIdParams {
    #[serde(alias = "taskId", alias = "task_id")]
    pub id: String,
    pub metadata: Option<Metadata>,
}

impl Validate for TaskIdParams {
    fn validate(&self) -> Result<(), String> {
        validate_id("id", &self.id)
    }
}

/// `tasks/get`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskQueryParams {
    #[serde(alias = "taskId", alias = "task_id")]
    pub id: String,
    #[serde(alias = "history_length")]
    pub history_length: Option<i64>,
    pub metadata: Option<Metadata>,
}

impl Validate for TaskQueryParams {
    fn validate(&self) -> Result<(), String> {
        validate_id("id", &self.id)?;
        validate_history_length(self.history_length)
    }
}

/// `tasks/pushNotificationConfig/get`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetTaskPushNotificationConfigParams {
    #[serde(alias = "taskId", alias = "task_id")]
    pub id: String,
    #[serde(alias = "push_notification_config_id")]
    pub push_notification_config_id: Option<String>,
    pub metadata: Option<Metadata>,
}

impl Validate for GetTaskPushNotificationConfigParams {
    fn validate(&self) -> Result<(), String> {
        validate_id("id", &self.id)
    }
}

/// `tasks/pushNotificationConfig/delete`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteTaskPushNotificationConfigParams {
    #[serde(alias = "taskId", alias = "task_id")]
    pub id: String,
    #[serde(alias = "push_notification_config_id")]
    pub push_notification_config_id: String,
    pub metadata: Option<Metadata>,
}

impl Validate for DeleteTaskPushNotificationConfigParams {
    fn validate(&self) -> Result<(), String> {
        validate_id("id", &self.id)?;
        validate_id(
            "pushNotificationConfigId",
            &self.push_notification_config_id,
        )
    }
}

/// Where and how to deliver push notifications for a task.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushNotificationConfig {
    pub url: String,
    pub id: Option<String>,
    pub token: Option<String>,
    pub authentication: Option<PushNotificationAuthenticationInfo>,
    /// Bindu, stored with the config: the A2A version of the request that configured it,
    /// whose payload shape its webhook receives (absent: 0.3; see
    /// [`PushNotificationConfig::wants_v10`]). The ingress sets it from the call and
    /// leaves it out of its answers; what a request says here is ignored.
    #[serde(rename = "a2aVersion")]
    pub a2a_version: Option<String>,
}

impl PushNotificationConfig {
    /// `a2a_version` of a config a 1.0 request made.
    pub const V10: &'static str = "1.0";

    /// Whether its webhook receives A2A 1.0 payloads (`StreamResponse`s) rather than 0.3's
    /// events.
    pub fn wants_v10(&self) -> bool {
        self.a2a_version.as_deref() == Some(Self::V10)
    }
}

impl Validate for PushNotificationConfig {
    fn validate(&self) -> Result<(), String> {
        if let Ok(v) = serde_json::to_value(self) {
            super::message::check_nul_value("pushNotificationConfig", &v)?;
        }
        let url = self.url.trim();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                "`pushNotificationConfig.url` must be an http:// or https:// URL".to_string()
            })?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() {
            return Err("`pushNotificationConfig.url` has no host".into());
        }
        if url.len() > 2048 {
            return Err("`pushNotificationConfig.url` is longer than 2048 bytes".into());
        }
        if let Some(id) = &self.id {
            validate_id("pushNotificationConfig.id", id)?;
        }
        Ok(())
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushNotificationAuthenticationInfo {
    pub schemes: Vec<String>,
    pub credentials: Option<String>,
}

/// `tasks/pushNotificationConfig/set` params and the result of set/get/list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskPushNotificationConfig {
    #[serde(alias = "task_id", alias = "id")]
    pub task_id: String,
    #[serde(alias = "push_notification_config")]
    pub push_notification_config: PushNotificationConfig,
}

impl Validate for TaskPushNotificationConfig {
    fn validate(&self) -> Result<(), String> {
        validate_id("taskId", &self.task_id)?;
        self.push_notification_config.validate()
    }
}

// ---- Bindu extensions -------------------------------------------------------------------

/// Largest page `tasks/list` and `contexts/list` return.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Page size when `limit` is absent.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// `tasks/list` (Bindu extension): newest first, cursor pagination, owner-filtered.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksParams {
    pub cursor: Option<String>,
    #[serde(alias = "length")]
    pub limit: Option<i64>,
    #[serde(alias = "context_id")]
    pub context_id: Option<String>,
    #[serde(alias = "history_length")]
    pub history_length: Option<i64>,
    /// Include each task's artifacts (default true: Bindu's `tasks/list` returns whole tasks;
    /// `false`, A2A v1.0 `ListTasks`'s default, keeps pages small).
    #[serde(alias = "include_artifacts")]
    pub include_artifacts: Option<bool>,
    /// Only tasks in this state (A2A v1.0 `ListTasks.status`), filtered by the store.
    pub status: Option<super::TaskState>,
    /// Only tasks whose status changed at or after this RFC 3339 time (A2A v1.0
    /// `statusTimestampAfter`), filtered by the store like `status`.
    #[serde(alias = "status_timestamp_after")]
    pub status_timestamp_after: Option<String>,
    pub metadata: Option<Metadata>,
}

impl ListTasksParams {
    /// The `statusTimestampAfter` filter's time, when it is set (validated as RFC 3339).
    pub fn status_after(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.status_timestamp_after
            .as_deref()
            .and_then(rfc3339)
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

fn rfc3339(t: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(t).ok()
}

fn validate_limit(limit: Option<i64>) -> Result<(), String> {
    match limit {
        Some(n) if n < 1 || n > MAX_PAGE_SIZE as i64 => Err(format!(
            "`limit` (A2A 1.0: `pageSize`) must be between 1 and {MAX_PAGE_SIZE}, got {n}"
        )),
        _ => Ok(()),
    }
}

/// The page size to use for a validated `limit`.
pub fn page_size(limit: Option<i64>) -> u32 {
    limit.map_or(DEFAULT_PAGE_SIZE, |n| {
        n.clamp(1, MAX_PAGE_SIZE as i64) as u32
    })
}

impl Validate for ListTasksParams {
    fn validate(&self) -> Result<(), String> {
        validate_limit(self.limit)?;
        if let Some(t) = &self.status_timestamp_after {
            if rfc3339(t).is_none() {
                return Err(format!(
                    "`statusTimestampAfter` must be an RFC 3339 time such as 2026-01-01T00:00:00Z, got {t:?}"
                ));
            }
        }
        validate_history_length(self.history_length)?;
        if let Some(c) = &self.context_id {
            validate_id("contextId", c)?;
        }
        Ok(())
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksResult {
    pub tasks: Vec<Task>,
    /// Pass as `cursor` to get the next page; absent on the last page. A page may hold fewer
    /// than `limit` tasks (its size bound) and still have a next one.
    pub next_cursor: Option<String>,
}

/// `tasks/feedback` (Bindu extension).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskFeedbackParams {
    #[serde(alias = "task_id", alias = "id")]
    pub task_id: String,
    pub feedback: String,
    pub rating: Option<i64>,
    pub metadata: Option<Metadata>,
}

/// Longest feedback text accepted.
pub const MAX_FEEDBACK_LEN: usize = 64 * 1024;

impl Validate for TaskFeedbackParams {
    fn validate(&self) -> Result<(), String> {
        validate_id("taskId", &self.task_id)?;
        if self.feedback.trim().is_empty() {
            return Err("`feedback` must not be empty".into());
        }
        if self.feedback.len() > MAX_FEEDBACK_LEN {
            return Err(format!(
                "`feedback` is longer than {MAX_FEEDBACK_LEN} bytes"
            ));
        }
        match self.rating {
            Some(r) if !(1..=5).contains(&r) => {
                Err(format!("`rating` must be an integer from 1 to 5, got {r}"))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskFeedbackResult {
    pub message: String,
    pub task_id: String,
}

/// `contexts/list` (Bindu extension).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListContextsParams {
    pub cursor: Option<String>,
    #[serde(alias = "length")]
    pub limit: Option<i64>,
    pub metadata: Option<Metadata>,
}

impl Validate for ListContextsParams {
    fn validate(&self) -> Result<(), String> {
        validate_limit(self.limit)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextSummary {
    pub context_id: String,
    pub task_count: u64,
    pub task_ids: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListContextsResult {
    pub contexts: Vec<ContextSummary>,
    pub next_cursor: Option<String>,
}

/// `contexts/clear` (Bindu extension): deletes a context and all its tasks.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClearContextParams {
    #[serde(alias = "context_id", alias = "id")]
    pub context_id: String,
    pub metadata: Option<Metadata>,
}

impl Validate for ClearContextParams {
    fn validate(&self) -> Result<(), String> {
        validate_id("contextId", &self.context_id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClearContextResult {
    pub message: String,
    pub context_id: String,
    pub deleted_tasks: u64,
}
