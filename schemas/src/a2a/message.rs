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
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
    #[serde(alias = "message_id")]
    pub message_id: String,
    #[serde(default)]
    pub kind: MessageKind,
    #[serde(alias = "task_id")]
    pub task_id: Option<String>,
    #[serde(alias = "context_id")]
    pub context_id: Option<String>,
    #[serde(alias = "reference_task_ids")]
    pub reference_task_ids: Option<Vec<String>>,
    pub extensions: Option<Vec<String>>,
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

/// A NUL character (`\u0000`) anywhere in `text`: the durable task store (Postgres JSONB)
/// cannot hold one, so requests carrying one are refused up front, in every deployment mode.
pub(crate) fn check_nul(field: &str, text: &str) -> Result<(), String> {
    if text.contains('\0') {
        return Err(format!(
            "`{field}` contains a NUL character (\\u0000), which tasks cannot store"
        ));
    }
    Ok(())
}

/// [`check_nul`] on every key and string of a JSON value.
pub(crate) fn check_nul_value(field: &str, value: &serde_json::Value) -> Result<(), String> {
    match value {
        serde_json::Value::String(s) => check_nul(field, s),
        serde_json::Value::Array(items) => items.iter().try_for_each(|v| check_nul_value(field, v)),
        serde_json::Value::Object(map) => check_nul_map(field, map),
        _ => Ok(()),
    }
}

pub(crate) fn check_nul_map(field: &str, map: &Metadata) -> Result<(), String> {
    for (k, v) in map {
        check_nul(field, k)?;
        check_nul_value(field, v)?;
    }
    Ok(())
}

impl Validate for Message {
    fn validate(&self) -> Result<(), String> {
        validate_id("message.messageId", &self.message_id)?;
        if let Some(m) = &self.metadata {
            check_nul_map("message.metadata", m)?;
        }
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
        let metadata = match self {
            Part::File(f) => {
                f.file.validate()?;
                for s in [&f.file.bytes, &f.file.uri, &f.file.name, &f.file.mime_type]
                    .into_iter()
                    .flatten()
                {
                    check_nul("file", s)?;
                }
                &f.metadata
            }
            Part::Text(t) => {
                check_nul("text", &t.text)?;
                &t.metadata
            }
            Part::Data(d) => {
                check_nul_map("data", &d.data)?;
                &d.metadata
            }
        };
        match metadata {
            Some(m) => check_nul_map("metadata", m),
            None => Ok(()),
        }
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPart {
    pub text: String,
    pub metadata: Option<Metadata>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilePart {
    pub file: FileContent,
    pub metadata: Option<Metadata>,
}

/// `FileWithBytes | FileWithUri`: exactly one of `bytes` (base64) and `uri` is set.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileContent {
    pub bytes: Option<String>,
    pub uri: Option<String>,
    pub name: Option<String>,
    #[serde(alias = "mime_type")]
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
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataPart {
    pub data: Metadata,
    pub metadata: Option<Metadata>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(part: Part) -> Message {
        Message {
            parts: vec![part],
            ..Message::agent("m".into(), vec![])
        }
    }

    #[test]
    fn a_nul_character_anywhere_in_a_message_is_refused_by_name() {
        let err = message(Part::text("a\0b")).validate().unwrap_err();
        assert!(err.contains("parts[0]") && err.contains("NUL"), "{err}");
        let mut data = Metadata::new();
        data.insert("k".into(), serde_json::json!(["ok", {"deep": "x\u{0}"}]));
        let err = message(Part::data(data)).validate().unwrap_err();
        assert!(err.contains("data") && err.contains("NUL"), "{err}");
        let mut m = message(Part::text("fine"));
        let mut meta = Metadata::new();
        meta.insert("bad\0key".into(), serde_json::json!(1));
        m.metadata = Some(meta);
        assert!(m.validate().unwrap_err().contains("message.metadata"));
        assert!(message(Part::text("no nul here \\u0000 (escaped text)"))
            .validate()
            .is_ok());
    }
}
