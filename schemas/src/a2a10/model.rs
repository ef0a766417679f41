//! The 1.0 object model (`Part`, `Message`, `Artifact`, `Task`, the streamed events and
//! their wrappers) and its lossless conversion to and from the internal, 0.3-shaped one.
//!
//! | 1.0 | internal (0.3) |
//! |---|---|
//! | `Part.text` | `TextPart` |
//! | `Part.raw` (base64) / `Part.url`, with `filename`, `mediaType` | `FilePart` `file.bytes` / `file.uri`, `name`, `mimeType` |
//! | `Part.data` (an object) | `DataPart.data` |
//! | `Part.data` (any other JSON value) | `DataPart.data = {"value": …}`, marked in the part's metadata ([`DATA_NOT_OBJECT`]) |
//! | `filename` / `mediaType` of a text or data part | the part's metadata, [`PART_FILENAME`] / [`PART_MEDIA_TYPE`] |
//! | `TASK_STATE_*`, `ROLE_*` | `TaskState`, `Role` (`TASK_STATE_UNSPECIFIED` is `unknown`) |
//! | `TaskStatusUpdateEvent` (no `final`) | `final` = the state ends a run (terminal or interrupted) |
//! | `AuthenticationInfo.scheme` | `schemes: [scheme]` (a 0.3 config's first scheme) |
//!
//! Absent and empty stay distinct both ways (lists and objects are `Option`s), so a 1.0
//! message read back over 1.0 is the message that was sent.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::enums;
use crate::{
    ArtifactUpdateKind, DataPart, FileContent, FilePart, Metadata, Role, StatusUpdateKind,
    TaskKind, TaskState, TextPart,
};

/// Part-metadata key holding a 1.0 text or data part's `mediaType` in the 0.3 form.
pub const PART_MEDIA_TYPE: &str = "a2a.v1.mediaType";
/// Part-metadata key holding a 1.0 text or data part's `filename` in the 0.3 form.
pub const PART_FILENAME: &str = "a2a.v1.filename";
/// Part-metadata key (`true`) marking a 0.3 data part that wraps a 1.0 `data` value that
/// is not an object as `{"value": …}`.
pub const DATA_NOT_OBJECT: &str = "a2a.v1.dataNotObject";

/// A 1.0 request or object that has no 0.3 form (→ invalid params).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError(pub String);

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConvertError {}

/// A piece of content: exactly one of `text`, `raw`, `url`, `data`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    pub text: Option<String>,
    /// Base64 bytes.
    pub raw: Option<String>,
    pub url: Option<String>,
    pub data: Option<Value>,
    pub metadata: Option<Metadata>,
    pub filename: Option<String>,
    #[serde(alias = "media_type")]
    pub media_type: Option<String>,
}

/// Moves `filename` / `mediaType` into `metadata` (the 0.3 form of a text or data part).
fn stash(
    metadata: Option<Metadata>,
    filename: Option<String>,
    media_type: Option<String>,
) -> Option<Metadata> {
    if filename.is_none() && media_type.is_none() {
        return metadata;
    }
    let mut m = metadata.unwrap_or_default();
    if let Some(f) = filename {
        m.insert(PART_FILENAME.into(), Value::String(f));
    }
    if let Some(t) = media_type {
        m.insert(PART_MEDIA_TYPE.into(), Value::String(t));
    }
    Some(m)
}

/// Takes `key` (a text) out of `metadata`; `removed` records that something was taken.
fn take_text(metadata: &mut Option<Metadata>, key: &str, removed: &mut bool) -> Option<String> {
    let m = metadata.as_mut()?;
    match m.get(key) {
        Some(Value::String(_)) => {
            *removed = true;
            match m.remove(key) {
                Some(Value::String(s)) => Some(s),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Metadata emptied by taking the stashed fields out of it was absent in 1.0.
fn settle(metadata: Option<Metadata>, removed: bool) -> Option<Metadata> {
    metadata.filter(|m| !(removed && m.is_empty()))
}

impl TryFrom<Part> for crate::Part {
    type Error = ConvertError;

    fn try_from(p: Part) -> Result<Self, ConvertError> {
        let set = [
            p.text.is_some(),
            p.raw.is_some(),
            p.url.is_some(),
            p.data.is_some(),
        ]
        .into_iter()
        .filter(|s| *s)
        .count();
        if set != 1 {
            return Err(ConvertError(
                "a part must have exactly one of `text`, `raw`, `url` and `data`".into(),
            ));
        }
        let Part {
            text,
            raw,
            url,
            data,
            metadata,
            filename,
            media_type,
        } = p;
        Ok(match (text, data) {
            (Some(text), _) => crate::Part::Text(TextPart {
                text,
                metadata: stash(metadata, filename, media_type),
            }),
            (_, Some(Value::Object(data))) => crate::Part::Data(DataPart {
                data,
                metadata: stash(metadata, filename, media_type),
            }),
            (_, Some(value)) => {
                let mut data = Metadata::new();
                data.insert("value".into(), value);
                let mut metadata = stash(metadata, filename, media_type).unwrap_or_default();
                metadata.insert(DATA_NOT_OBJECT.into(), Value::Bool(true));
                crate::Part::Data(DataPart {
                    data,
                    metadata: Some(metadata),
                })
            }
            (None, None) => crate::Part::File(FilePart {
                file: FileContent {
                    bytes: raw,
                    uri: url,
                    name: filename,
                    mime_type: media_type,
                },
                metadata,
            }),
        })
    }
}

impl From<crate::Part> for Part {
    fn from(p: crate::Part) -> Self {
        let empty = Part {
            text: None,
            raw: None,
            url: None,
            data: None,
            metadata: None,
            filename: None,
            media_type: None,
        };
        match p {
            crate::Part::Text(TextPart { text, mut metadata }) => {
                let mut removed = false;
                let filename = take_text(&mut metadata, PART_FILENAME, &mut removed);
                let media_type = take_text(&mut metadata, PART_MEDIA_TYPE, &mut removed);
                Part {
                    text: Some(text),
                    metadata: settle(metadata, removed),
                    filename,
                    media_type,
                    ..empty
                }
            }
            crate::Part::File(FilePart { file, metadata }) => Part {
                raw: file.bytes,
                url: file.uri,
                filename: file.name,
                media_type: file.mime_type,
                metadata,
                ..empty
            },
            crate::Part::Data(DataPart {
                mut data,
                mut metadata,
            }) => {
                let mut removed = false;
                let filename = take_text(&mut metadata, PART_FILENAME, &mut removed);
                let media_type = take_text(&mut metadata, PART_MEDIA_TYPE, &mut removed);
                let marked = metadata
                    .as_ref()
                    .and_then(|m| m.get(DATA_NOT_OBJECT))
                    .is_some_and(|v| *v == Value::Bool(true));
                let wrapped = marked && data.len() == 1 && data.contains_key("value");
                if wrapped {
                    if let Some(m) = metadata.as_mut() {
                        m.remove(DATA_NOT_OBJECT);
                    }
                }
                let value = match wrapped {
                    true => data.remove("value").unwrap_or(Value::Null),
                    false => Value::Object(data),
                };
                Part {
                    data: Some(value),
                    metadata: settle(metadata, removed || wrapped),
                    filename,
                    media_type,
                    ..empty
                }
            }
        }
    }
}

fn parts_in(parts: Vec<Part>) -> Result<Vec<crate::Part>, ConvertError> {
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            crate::Part::try_from(p).map_err(|e| ConvertError(format!("parts[{i}]: {e}")))
        })
        .collect()
}

fn parts_out(parts: Vec<crate::Part>) -> Vec<Part> {
    parts.into_iter().map(Part::from).collect()
}

/// One turn of a conversation.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    #[serde(alias = "message_id")]
    pub message_id: String,
    #[serde(alias = "context_id")]
    pub context_id: Option<String>,
    #[serde(alias = "task_id")]
    pub task_id: Option<String>,
    #[serde(with = "enums::role")]
    pub role: Role,
    #[serde(default)]
    pub parts: Vec<Part>,
    pub metadata: Option<Metadata>,
    pub extensions: Option<Vec<String>>,
    #[serde(alias = "reference_task_ids")]
    pub reference_task_ids: Option<Vec<String>>,
}

impl TryFrom<Message> for crate::Message {
    type Error = ConvertError;

    fn try_from(m: Message) -> Result<Self, ConvertError> {
        Ok(crate::Message {
            role: m.role,
            parts: parts_in(m.parts).map_err(|e| ConvertError(format!("message.{e}")))?,
            message_id: m.message_id,
            kind: Default::default(),
            task_id: m.task_id,
            context_id: m.context_id,
            reference_task_ids: m.reference_task_ids,
            extensions: m.extensions,
            metadata: m.metadata,
        })
    }
}

impl From<crate::Message> for Message {
    fn from(m: crate::Message) -> Self {
        Message {
            message_id: m.message_id,
            context_id: m.context_id,
            task_id: m.task_id,
            role: m.role,
            parts: parts_out(m.parts),
            metadata: m.metadata,
            extensions: m.extensions,
            reference_task_ids: m.reference_task_ids,
        }
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    #[serde(alias = "artifact_id")]
    pub artifact_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
    pub metadata: Option<Metadata>,
    pub extensions: Option<Vec<String>>,
}

impl TryFrom<Artifact> for crate::Artifact {
    type Error = ConvertError;

    fn try_from(a: Artifact) -> Result<Self, ConvertError> {
        Ok(crate::Artifact {
            artifact_id: a.artifact_id,
            parts: parts_in(a.parts).map_err(|e| ConvertError(format!("artifact.{e}")))?,
            name: a.name,
            description: a.description,
            metadata: a.metadata,
            extensions: a.extensions,
        })
    }
}

impl From<crate::Artifact> for Artifact {
    fn from(a: crate::Artifact) -> Self {
        Artifact {
            artifact_id: a.artifact_id,
            name: a.name,
            description: a.description,
            parts: parts_out(a.parts),
            metadata: a.metadata,
            extensions: a.extensions,
        }
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    #[serde(with = "enums::task_state")]
    pub state: TaskState,
    pub message: Option<Message>,
    /// RFC 3339, UTC.
    pub timestamp: Option<String>,
}

impl TryFrom<TaskStatus> for crate::TaskStatus {
    type Error = ConvertError;

    fn try_from(s: TaskStatus) -> Result<Self, ConvertError> {
        Ok(crate::TaskStatus {
            state: s.state,
            message: s.message.map(crate::Message::try_from).transpose()?,
            timestamp: s.timestamp,
        })
    }
}

impl From<crate::TaskStatus> for TaskStatus {
    fn from(s: crate::TaskStatus) -> Self {
        TaskStatus {
            state: s.state,
            message: s.message.map(Message::from),
            timestamp: s.timestamp,
        }
    }
}

fn list_in<A, B: TryFrom<A, Error = ConvertError>>(
    items: Option<Vec<A>>,
) -> Result<Option<Vec<B>>, ConvertError> {
    items
        .map(|v| v.into_iter().map(B::try_from).collect())
        .transpose()
}

fn list_out<A, B: From<A>>(items: Option<Vec<A>>) -> Option<Vec<B>> {
    items.map(|v| v.into_iter().map(B::from).collect())
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    #[serde(default, alias = "context_id")]
    pub context_id: String,
    pub status: TaskStatus,
    pub artifacts: Option<Vec<Artifact>>,
    pub history: Option<Vec<Message>>,
    pub metadata: Option<Metadata>,
}

impl TryFrom<Task> for crate::Task {
    type Error = ConvertError;

    fn try_from(t: Task) -> Result<Self, ConvertError> {
        Ok(crate::Task {
            id: t.id,
            context_id: t.context_id,
            status: t.status.try_into()?,
            kind: TaskKind::Task,
            history: list_in(t.history)?,
            artifacts: list_in(t.artifacts)?,
            metadata: t.metadata,
        })
    }
}

impl From<crate::Task> for Task {
    fn from(t: crate::Task) -> Self {
        Task {
            id: t.id,
            context_id: t.context_id,
            status: t.status.into(),
            artifacts: list_out(t.artifacts),
            history: list_out(t.history),
            metadata: t.metadata,
        }
    }
}

/// A task moved to a new state (1.0 has no `final`: the state says it).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatusUpdateEvent {
    #[serde(alias = "task_id")]
    pub task_id: String,
    #[serde(alias = "context_id")]
    pub context_id: String,
    pub status: TaskStatus,
    pub metadata: Option<Metadata>,
}

impl TryFrom<TaskStatusUpdateEvent> for crate::TaskStatusUpdateEvent {
    type Error = ConvertError;

    fn try_from(e: TaskStatusUpdateEvent) -> Result<Self, ConvertError> {
        let status = crate::TaskStatus::try_from(e.status)?;
        Ok(crate::TaskStatusUpdateEvent {
            task_id: e.task_id,
            context_id: e.context_id,
            kind: StatusUpdateKind::StatusUpdate,
            is_final: status.state.is_final(),
            status,
            metadata: e.metadata,
        })
    }
}

impl From<crate::TaskStatusUpdateEvent> for TaskStatusUpdateEvent {
    fn from(e: crate::TaskStatusUpdateEvent) -> Self {
        TaskStatusUpdateEvent {
            task_id: e.task_id,
            context_id: e.context_id,
            status: e.status.into(),
            metadata: e.metadata,
        }
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskArtifactUpdateEvent {
    #[serde(alias = "task_id")]
    pub task_id: String,
    #[serde(alias = "context_id")]
    pub context_id: String,
    pub artifact: Artifact,
    pub append: Option<bool>,
    #[serde(alias = "last_chunk")]
    pub last_chunk: Option<bool>,
    pub metadata: Option<Metadata>,
}

impl TryFrom<TaskArtifactUpdateEvent> for crate::TaskArtifactUpdateEvent {
    type Error = ConvertError;

    fn try_from(e: TaskArtifactUpdateEvent) -> Result<Self, ConvertError> {
        Ok(crate::TaskArtifactUpdateEvent {
            task_id: e.task_id,
            context_id: e.context_id,
            kind: ArtifactUpdateKind::ArtifactUpdate,
            artifact: e.artifact.try_into()?,
            append: e.append,
            last_chunk: e.last_chunk,
            metadata: e.metadata,
        })
    }
}

impl From<crate::TaskArtifactUpdateEvent> for TaskArtifactUpdateEvent {
    fn from(e: crate::TaskArtifactUpdateEvent) -> Self {
        TaskArtifactUpdateEvent {
            task_id: e.task_id,
            context_id: e.context_id,
            artifact: e.artifact.into(),
            append: e.append,
            last_chunk: e.last_chunk,
            metadata: e.metadata,
        }
    }
}

/// One streamed event (`SendStreamingMessage`, `SubscribeToTask`, 1.0 push notifications):
/// `{"task": …}`, `{"message": …}`, `{"statusUpdate": …}` or `{"artifactUpdate": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamResponse {
    Task(Task),
    Message(Message),
    StatusUpdate(TaskStatusUpdateEvent),
    ArtifactUpdate(TaskArtifactUpdateEvent),
}

impl TryFrom<StreamResponse> for crate::StreamResult {
    type Error = ConvertError;

    fn try_from(r: StreamResponse) -> Result<Self, ConvertError> {
        Ok(match r {
            StreamResponse::Task(t) => crate::StreamResult::Task(t.try_into()?),
            StreamResponse::Message(m) => crate::StreamResult::Message(m.try_into()?),
            StreamResponse::StatusUpdate(e) => crate::StreamResult::StatusUpdate(e.try_into()?),
            StreamResponse::ArtifactUpdate(e) => crate::StreamResult::ArtifactUpdate(e.try_into()?),
        })
    }
}

impl From<crate::StreamResult> for StreamResponse {
    fn from(r: crate::StreamResult) -> Self {
        match r {
            crate::StreamResult::Task(t) => StreamResponse::Task(t.into()),
            crate::StreamResult::Message(m) => StreamResponse::Message(m.into()),
            crate::StreamResult::StatusUpdate(e) => StreamResponse::StatusUpdate(e.into()),
            crate::StreamResult::ArtifactUpdate(e) => StreamResponse::ArtifactUpdate(e.into()),
        }
    }
}

/// The answer to `SendMessage`: `{"task": …}` or `{"message": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SendMessageResponse {
    Task(Task),
    Message(Message),
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthenticationInfo {
    pub scheme: String,
    pub credentials: Option<String>,
}

/// A push notification config, flat in 1.0 (0.3 nests it under `pushNotificationConfig`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskPushNotificationConfig {
    pub tenant: Option<String>,
    pub id: Option<String>,
    #[serde(default, alias = "task_id")]
    pub task_id: String,
    pub url: String,
    pub token: Option<String>,
    pub authentication: Option<AuthenticationInfo>,
}

impl TaskPushNotificationConfig {
    /// The 0.3 config (without its task).
    pub fn into_config(self) -> crate::PushNotificationConfig {
        crate::PushNotificationConfig {
            url: self.url,
            id: self.id,
            token: self.token,
            authentication: self.authentication.map(|a| {
                crate::PushNotificationAuthenticationInfo {
                    schemes: vec![a.scheme],
                    credentials: a.credentials,
                }
            }),
            // Set by whoever stores it, from the call's version.
            a2a_version: None,
        }
    }

    /// The 1.0 form of a 0.3 config of task `task_id`.
    pub fn of(task_id: String, c: crate::PushNotificationConfig) -> Self {
        TaskPushNotificationConfig {
            tenant: None,
            id: c.id,
            task_id,
            url: c.url,
            token: c.token,
            authentication: c.authentication.map(|a| AuthenticationInfo {
                scheme: a.schemes.into_iter().next().unwrap_or_default(),
                credentials: a.credentials,
            }),
        }
    }
}

impl From<TaskPushNotificationConfig> for crate::TaskPushNotificationConfig {
    fn from(c: TaskPushNotificationConfig) -> Self {
        crate::TaskPushNotificationConfig {
            task_id: c.task_id.clone(),
            push_notification_config: c.into_config(),
        }
    }
}

impl From<crate::TaskPushNotificationConfig> for TaskPushNotificationConfig {
    fn from(c: crate::TaskPushNotificationConfig) -> Self {
        TaskPushNotificationConfig::of(c.task_id, c.push_notification_config)
    }
}
