use serde::{Deserialize, Serialize};

use super::{Metadata, Validate};

/// Who sent a message. A2A only knows `user` and `agent`; anything else is invalid params.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Agent,
}

/// The constant `kind` of a message. Optional on input (Bindu clients omit it), always emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    #[default]
    Message,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
    #[serde(alias = "message_id")]
    pub message_id: String,
    #[serde(default)]
    pub kind: MessageKind,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "task_id")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "context_id")]
    pub context_id: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "reference_task_ids"
    )]
    pub reference_task_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

impl Message {
    /// A message from the agent with the given parts and a fresh id supplied by the caller.
    pub fn agent(message_id: String, parts: Vec<Part>) -> Self {
        Message {
            role: Role::Agent,
            parts,
            message_id,
            kind: MessageKind::Message,
            task_id: None,
            context_id: None,
            reference_task_ids: None,
            extensions: None,
            metadata: None,
        }
    }

    /// All text parts joined by newlines (what most handlers want to read).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            if let Part::Text(t) = part {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&t.text);
            }
        }
        out
    }
}

/// Longest id we accept from a client (task, context and message ids).
pub const MAX_ID_LEN: usize = 256;

pub(crate) fn validate_id(field: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("`{field}` must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("`{field}` is longer than {MAX_ID_LEN} bytes"));
    }
    if id.chars().any(|c| c.is_control()) {
        return Err(format!("`{field}` contains control characters"));
    }
    Ok(())
}

impl Validate for Message {
    fn validate(&self) -> Result<(), String> {
        validate_id("message.messageId", &self.message_id)?;
        if let Some(id) = &self.task_id {
            validate_id("message.taskId", id)?;
        }
        if let Some(id) = &self.context_id {
            validate_id("message.contextId", id)?;
        }
        if let Some(ids) = &self.reference_task_ids {
            for id in ids {
                validate_id("message.referenceTaskIds[]", id)?;
            }
        }
        if self.parts.is_empty() {
            return Err("`message.parts` must contain at least one part".into());
        }
        for (i, part) in self.parts.iter().enumerate() {
            part.validate()
                .map_err(|e| format!("message.parts[{i}]: {e}"))?;
        }
        Ok(())
    }
}

/// A piece of content, discriminated by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Part {
    Text(TextPart),
    File(FilePart),
    Data(DataPart),
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Part::Text(TextPart {
            text: text.into(),
            metadata: None,
        })
    }

    pub fn data(data: Metadata) -> Self {
        Part::Data(DataPart {
            data,
            metadata: None,
        })
    }

    pub fn metadata_mut(&mut self) -> &mut Option<Metadata> {
        match self {
            Part::Text(p) => &mut p.metadata,
            Part::File(p) => &mut p.metadata,
            Part::Data(p) => &mut p.metadata,
        }
    }
}

impl Validate for Part {
    fn validate(&self) -> Result<(), String> {
        match self {
            Part::File(f) => f.file.validate(),
            Part::Text(_) | Part::Data(_) => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPart {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilePart {
    pub file: FileContent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// `FileWithBytes | FileWithUri`: exactly one of `bytes` (base64) and `uri` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "mime_type")]
    pub mime_type: Option<String>,
}

impl Validate for FileContent {
    fn validate(&self) -> Result<(), String> {
        match (&self.bytes, &self.uri) {
            (Some(_), Some(_)) => Err("`file` must have either `bytes` or `uri`, not both".into()),
            (None, None) => Err("`file` must have `bytes` (base64) or `uri`".into()),
            _ => Ok(()),
        }
    }
}

/// Structured data; `data` must be a JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataPart {
    pub data: Metadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}
