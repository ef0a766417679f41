//! The handler contract.
//!
//! A handler receives the task's conversation and returns a [`HandlerOutput`]:
//!
//! | output | task ends |
//! |---|---|
//! | `Text`, `Parts`, `Data` | `completed`, with one artifact named `result` |
//! | `Streamed` (chunks already sent through the [`Emitter`]) | `completed`; the streamed parts join the history as one agent message |
//! | `InputRequired(prompt)` / `AuthRequired(prompt)` | paused; a follow-up message resumes it |
//! | `Rejected(reason)` | `rejected` |
//! | `Err(error)` | `failed`, with the error's message |
//!
//! Text or data shaped like `{"state":"input-required","prompt":"…"}` (Bindu's structured
//! response) counts as the matching pause.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bindu_engine::store::{artifact_event, status_event, ArtifactChunk};
use bindu_engine::time::now_rfc3339;
use bindu_schemas::bus::TaskEvent;
use bindu_schemas::{Artifact, Message, Metadata, Part, Task, TaskState, TaskStatus};
use tokio_util::sync::CancellationToken;

/// What a handler gets for one run.
pub struct HandlerInput {
    pub task_id: String,
    pub context_id: String,
    /// The task's messages, oldest first (user messages and earlier agent replies).
    pub history: Vec<Message>,
    /// Tasks named by `referenceTaskIds` in the history, with their history and artifacts.
    pub references: Vec<Task>,
    /// Earlier tasks of the same context, oldest first, with their history and artifacts:
    /// the newest `worker.history_sessions` of them (empty when that is 0, the default).
    pub context_history: Vec<Task>,
    /// The authenticated caller, `None` when auth is off.
    pub caller: Option<String>,
    /// The skill the conversation targets (see [`skill_of`]): named by the client's
    /// `message.metadata.skillId`, or the best match of the negotiation its
    /// `metadata.negotiationId` names. The ingress checked it against the agent's skills.
    pub skill: Option<String>,
    /// Fires when the task is canceled or the worker shuts down; the run is aborted if it
    /// has not returned [`crate::pool::CANCEL_GRACE`] later.
    pub cancel: CancellationToken,
    /// Streams artifact chunks and interim status messages while the handler runs.
    pub emitter: Emitter,
}

/// The metadata key that names a message's skill (written by the ingress).
pub const SKILL_ID: &str = "skillId";

/// The skill of a conversation: the `skillId` of the newest user message that names one (a
/// follow-up that names none keeps the task's skill).
pub fn skill_of(history: &[Message]) -> Option<String> {
    history
        .iter()
        .rev()
        .filter(|m| m.role == bindu_schemas::Role::User)
        .find_map(|m| m.metadata.as_ref()?.get(SKILL_ID)?.as_str())
        .map(str::to_string)
}

impl HandlerInput {
    /// The newest user message, if any.
    pub fn last_user_message(&self) -> Option<&Message> {
        self.history
            .iter()
            .rev()
            .find(|m| m.role == bindu_schemas::Role::User)
    }
}

/// What a handler returns.
#[derive(Debug, Clone, PartialEq)]
pub enum HandlerOutput {
    Text(String),
    Parts(Vec<Part>),
    Data(Metadata),
    /// Every artifact was already sent through the [`Emitter`].
    Streamed,
    InputRequired(String),
    AuthRequired(String),
    Rejected(String),
}

impl HandlerOutput {
    /// Recognises Bindu's structured `{"state": "input-required" | "auth-required", "prompt"}`.
    pub fn normalize(self) -> HandlerOutput {
        let structured = |map: &Metadata| -> Option<HandlerOutput> {
            let state = map.get("state")?.as_str()?;
            let prompt = map
                .get("prompt")
                .and_then(|p| p.as_str())
                .unwrap_or_default()
                .to_string();
            match state {
                "input-required" => Some(HandlerOutput::InputRequired(prompt)),
                "auth-required" => Some(HandlerOutput::AuthRequired(prompt)),
                _ => None,
            }
        };
        match self {
            HandlerOutput::Text(text) => {
                let trimmed = text.trim();
                if trimmed.starts_with('{') && trimmed.contains("\"state\"") {
                    if let Ok(map) = serde_json::from_str::<Metadata>(trimmed) {
                        if let Some(out) = structured(&map) {
                            return out;
                        }
                    }
                }
                HandlerOutput::Text(text)
            }
            HandlerOutput::Data(map) => structured(&map).unwrap_or(HandlerOutput::Data(map)),
            other => other,
        }
    }
}

impl From<String> for HandlerOutput {
    fn from(s: String) -> Self {
        HandlerOutput::Text(s)
    }
}

impl From<&str> for HandlerOutput {
    fn from(s: &str) -> Self {
        HandlerOutput::Text(s.to_string())
    }
}

/// Why a handler failed; its message becomes the failed task's status message.
pub struct HandlerError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl<E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError(e.into())
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl std::fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HandlerError({self})")
    }
}

/// An agent. Implemented for async closures through [`handler_fn`].
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, input: HandlerInput) -> Result<HandlerOutput, HandlerError>;
}

/// Wraps `async fn(HandlerInput) -> Result<impl Into<HandlerOutput>, HandlerError>`.
pub fn handler_fn<F, Fut, O>(f: F) -> impl Handler
where
    F: Fn(HandlerInput) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<O, HandlerError>> + Send + 'static,
    O: Into<HandlerOutput>,
{
    struct FnHandler<F>(F);
    #[async_trait]
    impl<F, Fut, O> Handler for FnHandler<F>
    where
        F: Fn(HandlerInput) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<O, HandlerError>> + Send + 'static,
        O: Into<HandlerOutput>,
    {
        async fn handle(&self, input: HandlerInput) -> Result<HandlerOutput, HandlerError> {
            (self.0)(input).await.map(Into::into)
        }
    }
    FnHandler(f)
}

/// Streams a running task's output. Each chunk or status is announced on the bus as an
/// event before the call returns (numbered after the run's `working` event); the chunks are
/// recorded in the store with the run's outcome, in one write.
#[derive(Clone)]
pub struct Emitter {
    pub(crate) task_id: String,
    pub(crate) context_id: String,
    pub(crate) ledger: bindu_engine::TaskLedger,
    pub(crate) identity: Option<Arc<bindu_engine::identity::Identity>>,
    pub(crate) budget: OutputBudget,
    /// Every part streamed so far, in order: the agent's reply in the task's history once
    /// the run completes with [`HandlerOutput::Streamed`].
    pub(crate) transcript: Arc<std::sync::Mutex<Vec<Part>>>,
    /// What the run announced so far (held across numbering and publishing, so events of
    /// concurrent calls keep their order).
    pub(crate) run: Arc<tokio::sync::Mutex<RunLog>>,
    /// A paid run that settles after the handler: chunks are kept back (not announced)
    /// until the payment settled, and dropped if it does not.
    pub(crate) withhold: bool,
}

/// The events a run announced before its outcome is recorded.
#[derive(Debug, Default)]
pub(crate) struct RunLog {
    /// Sequence number of the last event announced.
    pub(crate) last_seq: u64,
    /// Sequence numbers used (the `working` status, interim statuses, chunks).
    pub(crate) announced: u64,
    /// The chunks among them, to be recorded with the outcome.
    pub(crate) streamed: Vec<ArtifactChunk>,
    /// Events numbered but not announced yet (the run's `working`, held back briefly so a
    /// fast run announces it in one bus message with its outcome); announced ahead of the
    /// next event.
    pub(crate) held: Vec<TaskEvent>,
    /// Chunks of a paid run kept back until its payment settled (not numbered yet).
    pub(crate) withheld: Vec<ArtifactChunk>,
}

impl RunLog {
    /// The held events followed by `event`, to announce now.
    pub(crate) fn release_with(&mut self, event: TaskEvent) -> Vec<TaskEvent> {
        let mut events = std::mem::take(&mut self.held);
        events.push(event);
        events
    }
}

/// The bytes of output one run may still produce (`worker.max_output_bytes`), shared by
/// the emitter and the final result.
#[derive(Clone, Debug)]
pub(crate) struct OutputBudget {
    used: Arc<AtomicUsize>,
    pub(crate) limit: usize,
}

impl OutputBudget {
    pub(crate) fn new(limit: usize) -> Self {
        OutputBudget {
            used: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Counts `bytes` more; an error once the run's total passes the limit.
    pub(crate) fn spend(&self, bytes: usize) -> Result<(), OutputTooLarge> {
        let total = self
            .used
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes);
        if total > self.limit {
            return Err(OutputTooLarge { limit: self.limit });
        }
        Ok(())
    }
}

/// A run produced more than `worker.max_output_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("the output is larger than the limit of {limit} bytes (worker.max_output_bytes / BINDU_MAX_OUTPUT_BYTES)")]
pub struct OutputTooLarge {
    pub limit: usize,
}

/// The size a part counts for against the output limit: its text, its encoded file bytes
/// or URI, or its JSON data.
pub(crate) fn part_size(part: &Part) -> usize {
    match part {
        Part::Text(t) => t.text.len(),
        Part::File(f) => {
            f.file.bytes.as_ref().map_or(0, String::len)
                + f.file.uri.as_ref().map_or(0, String::len)
        }
        Part::Data(d) => serde_json::to_vec(&d.data).map_or(usize::MAX, |v| v.len()),
    }
}

impl Emitter {
    /// Starts a new streamed artifact (one artifact id, chunks appended in order).
    pub fn stream(&self, name: impl Into<String>) -> ArtifactStream {
        ArtifactStream {
            emitter: self.clone(),
            artifact_id: uuid::Uuid::new_v4().to_string(),
            name: name.into(),
            sent: 0,
        }
    }

    /// Sends one chunk of an artifact. The first chunk of an artifact has `append: false`;
    /// later ones `append: true`; the last one `last_chunk: true`.
    pub async fn artifact_chunk(
        &self,
        mut artifact: Artifact,
        append: bool,
        last_chunk: bool,
    ) -> Result<(), HandlerError> {
        check_parts(&artifact.parts)?;
        self.budget
            .spend(artifact.parts.iter().map(part_size).sum())?;
        let parts = artifact.parts.clone();
        if let Some(identity) = &self.identity {
            crate::pool::sign_parts(&mut artifact.parts, identity);
        }
        let chunk = ArtifactChunk {
            artifact,
            append,
            last_chunk,
        };
        if self.withhold {
            self.run.lock().await.withheld.push(chunk);
        } else {
            let mut run = self.run.lock().await;
            let seq = run.last_seq + 1;
            let event =
                artifact_event(&self.task_id, &self.context_id, &chunk, seq, &now_rfc3339());
            self.ledger.announce(run.release_with(event)).await;
            run.last_seq = seq;
            run.announced += 1;
            run.streamed.push(chunk);
        }
        self.transcript
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(parts);
        Ok(())
    }

    /// The streamed parts as one reply: adjacent text parts joined (signatures dropped;
    /// the reply is signed as a whole), files and data as they are.
    pub(crate) fn streamed_reply(&self) -> Vec<Part> {
        let parts = std::mem::take(&mut *self.transcript.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out: Vec<Part> = Vec::new();
        for part in parts {
            match (out.last_mut(), part) {
                (Some(Part::Text(prev)), Part::Text(t)) => prev.text.push_str(&t.text),
                (_, Part::Text(t)) => out.push(Part::text(t.text)),
                (_, other) => out.push(other),
            }
        }
        out.retain(|p| !matches!(p, Part::Text(t) if t.text.is_empty()));
        out
    }

    /// Publishes an interim status message (the task stays `working`). It is an event
    /// only: the task's recorded status is its outcome.
    pub async fn status(&self, text: impl Into<String>) -> Result<(), HandlerError> {
        let text = text.into();
        self.budget.spend(text.len())?;
        let mut parts = vec![Part::text(text)];
        if let Some(identity) = &self.identity {
            crate::pool::sign_parts(&mut parts, identity);
        }
        let msg = Message::agent(uuid::Uuid::new_v4().to_string(), parts);
        let now = now_rfc3339();
        let status = TaskStatus {
            state: TaskState::Working,
            message: Some(msg),
            timestamp: Some(now.clone()),
        };
        let mut run = self.run.lock().await;
        let seq = run.last_seq + 1;
        let event = status_event(&self.task_id, &self.context_id, &status, seq, &now);
        self.ledger.announce(run.release_with(event)).await;
        run.last_seq = seq;
        run.announced += 1;
        Ok(())
    }
}

/// Checks parts a handler produced: a file part carries exactly one of `bytes` (base64)
/// and `uri`.
pub(crate) fn check_parts(parts: &[Part]) -> Result<(), HandlerError> {
    for (i, part) in parts.iter().enumerate() {
        if let Part::File(f) = part {
            match (&f.file.bytes, &f.file.uri) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(format!(
                        "the handler's part {i} is a file with {} (it needs exactly one of `bytes` and `uri`)",
                        if f.file.bytes.is_some() { "both `bytes` and `uri`" } else { "neither `bytes` nor `uri`" }
                    )
                    .into())
                }
            }
        }
    }
    Ok(())
}

/// One artifact streamed in chunks: the first chunk creates it (`append: false`), later
/// ones extend it (`append: true`), [`ArtifactStream::finish`] sends the last one
/// (`lastChunk: true`). Each chunk reaches the bus before `send` returns, so SSE clients
/// see it as it is produced; `tasks/get` shows the merged artifact once the run ends.
pub struct ArtifactStream {
    emitter: Emitter,
    artifact_id: String,
    name: String,
    sent: usize,
}

impl ArtifactStream {
    fn artifact(&self, parts: Vec<Part>) -> Artifact {
        Artifact {
            artifact_id: self.artifact_id.clone(),
            parts,
            name: Some(self.name.clone()),
            description: None,
            metadata: None,
            extensions: None,
        }
    }

    /// Chunks sent so far.
    pub fn chunks(&self) -> usize {
        self.sent
    }

    /// Sends one chunk.
    pub async fn send(&mut self, parts: Vec<Part>) -> Result<(), HandlerError> {
        let append = self.sent > 0;
        self.emitter
            .artifact_chunk(self.artifact(parts), append, false)
            .await?;
        self.sent += 1;
        Ok(())
    }

    /// Sends the last chunk (`parts` may be empty) and closes the artifact.
    pub async fn finish(self, parts: Vec<Part>) -> Result<(), HandlerError> {
        let append = self.sent > 0;
        self.emitter
            .artifact_chunk(self.artifact(parts), append, true)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_prompts_are_recognised() {
        let out =
            HandlerOutput::Text(r#"{"state":"input-required","prompt":"Which city?"}"#.into())
                .normalize();
        assert_eq!(out, HandlerOutput::InputRequired("Which city?".into()));
        let mut map = Metadata::new();
        map.insert("state".into(), "auth-required".into());
        map.insert("prompt".into(), "Log in".into());
        assert_eq!(
            HandlerOutput::Data(map).normalize(),
            HandlerOutput::AuthRequired("Log in".into())
        );
        let plain = HandlerOutput::Text(r#"{"state":"completed"}"#.into());
        assert_eq!(plain.clone().normalize(), plain);
        let text = HandlerOutput::Text("just text with \"state\"".into());
        assert_eq!(text.clone().normalize(), text);
    }

    #[test]
    fn errors_keep_their_message() {
        let e: HandlerError = "model unavailable".into();
        assert_eq!(e.to_string(), "model unavailable");
        let io = std::io::Error::other("disk full");
        let e: HandlerError = io.into();
        assert_eq!(e.to_string(), "disk full");
    }
}
