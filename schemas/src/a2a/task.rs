use serde::{Deserialize, Serialize};

use super::{Message, Metadata, Part};

/// The nine A2A task states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    Submitted,
    Working,
    InputRequired,
    AuthRequired,
    Completed,
    Canceled,
    Failed,
    Rejected,
    Unknown,
}

impl TaskState {
    pub const ALL: [TaskState; 9] = [
        TaskState::Submitted,
        TaskState::Working,
        TaskState::InputRequired,
        TaskState::AuthRequired,
        TaskState::Completed,
        TaskState::Canceled,
        TaskState::Failed,
        TaskState::Rejected,
        TaskState::Unknown,
    ];

    /// Completed, canceled, failed and rejected tasks can never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Canceled | TaskState::Failed | TaskState::Rejected
        )
    }

    /// Input-required and auth-required: paused until the client sends a follow-up.
    pub fn is_interrupted(self) -> bool {
        matches!(self, TaskState::InputRequired | TaskState::AuthRequired)
    }

    /// A stream or a blocking send ends when the task reaches such a state.
    pub fn is_final(self) -> bool {
        self.is_terminal() || self.is_interrupted()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Submitted => "submitted",
            TaskState::Working => "working",
            TaskState::InputRequired => "input-required",
            TaskState::AuthRequired => "auth-required",
            TaskState::Completed => "completed",
            TaskState::Canceled => "canceled",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    pub message: Option<Message>,
    /// ISO 8601 / RFC 3339 time of the transition.
    pub timestamp: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    #[default]
    Task,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    #[serde(alias = "context_id")]
    pub context_id: String,
    pub status: TaskStatus,
    #[serde(default)]
    pub kind: TaskKind,
    pub history: Option<Vec<Message>>,
    pub artifacts: Option<Vec<Artifact>>,
    pub metadata: Option<Metadata>,
}

impl Task {
    /// Keep only the `n` most recent history messages; `0` drops the field (A2A v1.0 rule).
    pub fn trim_history(&mut self, n: Option<u32>) {
        let Some(n) = n else { return };
        if n == 0 {
            self.history = None;
            return;
        }
        if let Some(history) = &mut self.history {
            let n = n as usize;
            if history.len() > n {
                history.drain(..history.len() - n);
            }
        }
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    #[serde(alias = "artifact_id")]
    pub artifact_id: String,
    pub parts: Vec<Part>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: Option<Metadata>,
    pub extensions: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum StatusUpdateKind {
    #[default]
    #[serde(rename = "status-update")]
    StatusUpdate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ArtifactUpdateKind {
    #[default]
    #[serde(rename = "artifact-update")]
    ArtifactUpdate,
}

/// A task moved to a new state. `final` is true when the state is terminal or interrupted.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatusUpdateEvent {
    #[serde(alias = "task_id")]
    pub task_id: String,
    #[serde(alias = "context_id")]
    pub context_id: String,
    #[serde(default)]
    pub kind: StatusUpdateKind,
    pub status: TaskStatus,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub metadata: Option<Metadata>,
}

/// An artifact or a chunk of one. `append:true` extends the parts of the artifact with the
/// same id; `lastChunk:true` marks the end of that artifact.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskArtifactUpdateEvent {
    #[serde(alias = "task_id")]
    pub task_id: String,
    #[serde(alias = "context_id")]
    pub context_id: String,
    #[serde(default)]
    pub kind: ArtifactUpdateKind,
    pub artifact: Artifact,
    pub append: Option<bool>,
    #[serde(alias = "last_chunk")]
    pub last_chunk: Option<bool>,
    pub metadata: Option<Metadata>,
}

/// The `result` of one SSE event (`SendStreamingMessageSuccessResponse.result`), and of
/// `message/send` (Task or Message). Each variant carries its own `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StreamResult {
    Task(Task),
    Message(Message),
    StatusUpdate(TaskStatusUpdateEvent),
    ArtifactUpdate(TaskArtifactUpdateEvent),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_serialize_kebab_case() {
        assert_eq!(
            serde_json::to_string(&TaskState::InputRequired).unwrap(),
            "\"input-required\""
        );
        for s in TaskState::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }

    #[test]
    fn trim_history_keeps_most_recent() {
        let msg = |id: &str| Message::agent(id.into(), vec![Part::text(id)]);
        let mut task = Task {
            id: "t".into(),
            context_id: "c".into(),
            status: TaskStatus {
                state: TaskState::Completed,
                message: None,
                timestamp: None,
            },
            kind: TaskKind::Task,
            history: Some(vec![msg("a"), msg("b"), msg("c")]),
            artifacts: None,
            metadata: None,
        };
        task.trim_history(Some(2));
        let ids: Vec<_> = task
            .history
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.message_id.as_str())
            .collect();
        assert_eq!(ids, ["b", "c"]);
        task.trim_history(Some(0));
        assert!(task.history.is_none());
        let json = serde_json::to_value(&task).unwrap();
        assert_eq!(json["kind"], "task");
        assert!(json.get("history").is_none());
    }
}
