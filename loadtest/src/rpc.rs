//! The A2A JSON-RPC requests the generator sends and the few answer fields it reads.

use serde::Deserialize;

/// Builds request bodies with fresh ids: every message gets its own `messageId` and
/// `contextId` (`lt-<run>-<n>`), so no two requests touch the same task or context.
pub struct Bodies {
    run: String,
    text: String,
}

impl Bodies {
    /// `payload_bytes`: size of the text part (default "hello").
    pub fn new(run: String, payload_bytes: Option<usize>) -> Bodies {
        let text = match payload_bytes {
            Some(n) => "x".repeat(n),
            None => "hello".to_string(),
        };
        Bodies { run, text }
    }

    /// `message/send` (`blocking` set explicitly) or `message/stream` (`blocking: None`).
    pub fn message(&self, n: u64, blocking: Option<bool>) -> String {
        let method = if blocking.is_some() {
            "message/send"
        } else {
            "message/stream"
        };
        let config = match blocking {
            Some(b) => format!(r#","configuration":{{"blocking":{b},"historyLength":0}}"#),
            None => r#","configuration":{"historyLength":0}"#.to_string(),
        };
        format!(
            r#"{{"jsonrpc":"2.0","id":{n},"method":"{method}","params":{{"message":{{"kind":"message","role":"user","messageId":"lt-{run}-{n}","contextId":"ltc-{run}-{n}","parts":[{{"kind":"text","text":"{text}"}}]}}{config}}}}}"#,
            run = self.run,
            text = self.text,
        )
    }

    /// `tasks/get` without history.
    pub fn get(&self, n: u64, task_id: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":{n},"method":"tasks/get","params":{{"id":{},"historyLength":0}}}}"#,
            json_string(task_id)
        )
    }

    /// `tasks/resubscribe`.
    pub fn resubscribe(&self, n: u64, task_id: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":{n},"method":"tasks/resubscribe","params":{{"id":{}}}}}"#,
            json_string(task_id)
        )
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A JSON-RPC answer, reduced to what the generator needs.
#[derive(Debug, Deserialize)]
pub struct Answer {
    pub result: Option<Item>,
    pub error: Option<RpcError>,
}

#[derive(Debug, Deserialize)]
pub struct RpcError {
    pub code: i64,
}

/// A Task, a status or artifact update, or a Message (all optional fields).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub kind: Option<String>,
    pub id: Option<String>,
    pub task_id: Option<String>,
    pub status: Option<Status>,
    #[serde(rename = "final")]
    pub is_final: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct Status {
    pub state: String,
}

/// How far a task got, as seen in one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Accepted, not finished (`submitted`, `working`, ...).
    Running { task_id: String },
    /// Finished or paused: terminal states and `input-required` / `auth-required` (counted
    /// by state's name; only `completed` is a completion).
    Done { state: String },
    /// An event that says nothing about the state (artifact chunks).
    Other,
}

impl Item {
    /// What this answer says about its task.
    pub fn seen(&self) -> Seen {
        if self.kind.as_deref() == Some("message") {
            // Agents may answer with a direct message: the exchange is over.
            return Seen::Done {
                state: "message".into(),
            };
        }
        let Some(status) = &self.status else {
            return Seen::Other;
        };
        let task_id = match self.kind.as_deref() {
            Some("task") => self.id.clone(),
            _ => self.task_id.clone(),
        };
        if is_done(&status.state) || self.is_final == Some(true) {
            Seen::Done {
                state: status.state.clone(),
            }
        } else {
            match task_id {
                Some(task_id) => Seen::Running { task_id },
                None => Seen::Other,
            }
        }
    }
}

/// Terminal states and the paused ones that end a stream: the generator stops following the
/// task. Only `completed` counts as completed ([`crate::stats::Ends`] counts each state).
pub fn is_done(state: &str) -> bool {
    matches!(
        state,
        "completed" | "failed" | "canceled" | "rejected" | "input-required" | "auth-required"
    )
}

/// Parses an answer body; `None` when it is not JSON-RPC.
pub fn parse(body: &[u8]) -> Option<Answer> {
    serde_json::from_slice(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_json_with_fresh_ids() {
        let b = Bodies::new("r1".into(), Some(3));
        let one: serde_json::Value =
            serde_json::from_str(&b.message(1, Some(false))).expect("json");
        let two: serde_json::Value = serde_json::from_str(&b.message(2, None)).expect("json");
        assert_eq!(one["method"], "message/send");
        assert_eq!(one["params"]["configuration"]["blocking"], false);
        assert_eq!(one["params"]["message"]["parts"][0]["text"], "xxx");
        assert_eq!(two["method"], "message/stream");
        assert_ne!(
            one["params"]["message"]["messageId"],
            two["params"]["message"]["messageId"]
        );
        assert_ne!(
            one["params"]["message"]["contextId"],
            two["params"]["message"]["contextId"]
        );
        let g: serde_json::Value = serde_json::from_str(&b.get(3, "a\"b")).expect("json");
        assert_eq!(g["params"]["id"], "a\"b");
        let r: serde_json::Value = serde_json::from_str(&b.resubscribe(4, "t")).expect("json");
        assert_eq!(r["method"], "tasks/resubscribe");
    }

    #[test]
    fn answers_say_how_far_the_task_got() {
        let a = parse(br#"{"jsonrpc":"2.0","id":1,"result":{"kind":"task","id":"t1","contextId":"c","status":{"state":"submitted"}}}"#).expect("answer");
        assert_eq!(
            a.result.expect("result").seen(),
            Seen::Running {
                task_id: "t1".into()
            }
        );
        let a = parse(br#"{"jsonrpc":"2.0","id":1,"result":{"kind":"status-update","taskId":"t1","status":{"state":"completed"},"final":true}}"#).expect("answer");
        assert_eq!(
            a.result.expect("result").seen(),
            Seen::Done {
                state: "completed".into()
            }
        );
        let a = parse(br#"{"jsonrpc":"2.0","id":1,"result":{"kind":"artifact-update","taskId":"t1","artifact":{}}}"#).expect("answer");
        assert_eq!(a.result.expect("result").seen(), Seen::Other);
        let a = parse(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"x"}}"#)
            .expect("answer");
        assert_eq!(a.error.expect("error").code, -32001);
        assert!(parse(b"<html>").is_none());
    }
}
