//! The JSON-lines protocol between the engine and an agent process.
//!
//! One JSON object per line, UTF-8, `\n`-terminated. The engine writes to the process's
//! stdin; the process answers on stdout (its stderr is for logs: the engine keeps its tail
//! and quotes it when a task fails).
//!
//! Engine → process:
//!
//! ```json
//! {"type":"task","taskId":"…","contextId":"…","caller":null,"skillId":"pdf-processing-v1",
//!  "text":"the last user message's text","message":{…},"history":[…],"references":[…],
//!  "contextHistory":[…]}
//! {"type":"cancel","taskId":"…"}
//! ```
//!
//! `skillId` is the skill the conversation targets (`null` when the client named none, see
//! [`crate::handler::skill_of`]). `message` and the entries of `history` are A2A messages; `references` (tasks named by
//! `referenceTaskIds`) and `contextHistory` (earlier tasks of the context) are A2A tasks.
//!
//! Process → engine, any number of:
//!
//! ```json
//! {"type":"status","text":"Searching…"}
//! {"type":"chunk","text":"Hel"}                 (or "parts":[…] — A2A parts)
//! ```
//!
//! then exactly one final line:
//!
//! ```json
//! {"type":"result","text":"…"}                  (or "parts":[…], or "data":{…}, or nothing after chunks)
//! {"type":"input-required","prompt":"Which city?"}
//! {"type":"auth-required","prompt":"Log in first"}
//! {"type":"rejected","reason":"…"}
//! {"type":"error","message":"…"}
//! ```
//!
//! After its final line the process waits for the next task line. A `cancel` line asks it to
//! stop the current task and answer with any final line; without an answer it is killed.

use bindu_schemas::{Message, Metadata, Part, Task};
use serde::{Deserialize, Serialize};

/// A task handed to the process.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskLine<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub task_id: &'a str,
    pub context_id: &'a str,
    pub caller: Option<&'a str>,
    /// The skill the conversation targets, if the client named one.
    pub skill_id: Option<&'a str>,
    /// The text of the newest user message (empty when it has no text part).
    pub text: String,
    pub message: Option<&'a Message>,
    pub history: &'a [Message],
    pub references: &'a [Task],
    pub context_history: &'a [Task],
}

/// Asks the process to stop the current task.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelLine<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub task_id: &'a str,
}

/// One line the process printed.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Reply {
    Status {
        text: String,
    },
    Chunk {
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        parts: Option<Vec<Part>>,
    },
    Result {
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        parts: Option<Vec<Part>>,
        #[serde(default)]
        data: Option<Metadata>,
    },
    InputRequired {
        prompt: String,
    },
    AuthRequired {
        prompt: String,
    },
    Rejected {
        #[serde(default)]
        reason: String,
    },
    Error {
        message: String,
    },
}

impl Reply {
    /// Parses one stdout line; the error says what is wrong with it.
    pub fn parse(line: &str) -> Result<Reply, String> {
        // serde reads a tagged enum from an array too (`["result"]`, `["status","hi"]`): the
        // protocol's lines are objects, nothing else.
        if !line.trim_start().starts_with('{') {
            return Err("a protocol line is a JSON object".to_string());
        }
        serde_json::from_str(line).map_err(|e| e.to_string())
    }

    /// Whether this line ends the task.
    pub fn is_final(&self) -> bool {
        !matches!(self, Reply::Status { .. } | Reply::Chunk { .. })
    }
}

/// The parts a `chunk` or `result` line carries: `parts`, else `text`, else nothing.
pub fn parts_of(text: Option<String>, parts: Option<Vec<Part>>) -> Vec<Part> {
    match (parts, text) {
        (Some(p), _) => p,
        (None, Some(t)) => vec![Part::text(t)],
        (None, None) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        assert_eq!(
            Reply::parse(r#"{"type":"chunk","text":"a"}"#).unwrap(),
            Reply::Chunk {
                text: Some("a".into()),
                parts: None
            }
        );
        assert_eq!(
            Reply::parse(r#"{"type":"input-required","prompt":"Which city?"}"#).unwrap(),
            Reply::InputRequired {
                prompt: "Which city?".into()
            }
        );
        let r = Reply::parse(
            r#"{"type":"result","parts":[{"kind":"file","file":{"uri":"https://x/y.png","mimeType":"image/png"}}]}"#,
        )
        .unwrap();
        assert!(r.is_final());
        assert!(!Reply::parse(r#"{"type":"status","text":"…"}"#)
            .unwrap()
            .is_final());
        assert!(Reply::parse("hello").is_err());
        assert!(Reply::parse(r#"{"type":"shout"}"#).is_err());
        assert!(
            Reply::parse(r#"{"type":"error"}"#).is_err(),
            "error needs a message"
        );
        assert_eq!(
            Reply::parse(" \t{\"type\":\"rejected\"}").unwrap(),
            Reply::Rejected {
                reason: String::new()
            }
        );
    }

    #[test]
    fn only_objects_are_protocol_lines() {
        // Found by the `command_lines` fuzz target: serde takes a tagged enum from an array,
        // so `["result"]` ended a task with an empty result.
        for line in [
            r#"["result"]"#,
            r#" [ "result" ]"#,
            r#"["status","Searching"]"#,
            r#"["error","boom"]"#,
            "\"result\"",
            "null",
        ] {
            assert!(Reply::parse(line).is_err(), "{line}");
        }
    }
}
