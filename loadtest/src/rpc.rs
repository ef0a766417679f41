//! The A2A requests the generator sends and the few answer fields it reads, in the wire
//! form [`Wire`] picks: 0.3 JSON-RPC, 1.0 JSON-RPC or 1.0 HTTP+JSON.

use serde::de::IgnoredAny;
use serde::Deserialize;

/// The protocol version and binding requests are sent in (`--a2a-version`, `--binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Wire {
    /// A2A 0.3 JSON-RPC (`message/send`, `kind` discriminators, lowercase states).
    #[default]
    V03,
    /// A2A 1.0 JSON-RPC (`A2A-Version: 1.0`; `SendMessage`, `SendStreamingMessage`,
    /// `GetTask`; `ROLE_*`, `TASK_STATE_*`, results wrapped in `SendMessageResponse` or
    /// `StreamResponse`).
    V10,
    /// A2A 1.0 HTTP+JSON under the URL's path (`POST …/message:send`, `…/message:stream`,
    /// `GET …/tasks/{id}`): the same objects as [`Wire::V10`] without the JSON-RPC envelope,
    /// errors as an HTTP status and a `google.rpc.Status` body.
    V10Rest,
}

impl Wire {
    /// The `A2A-Version` header value, when the version is not 0.3's default.
    pub fn version_header(self) -> Option<&'static str> {
        match self {
            Wire::V03 => None,
            Wire::V10 | Wire::V10Rest => Some("1.0"),
        }
    }

    /// A short name for reports: `0.3`, `1.0`, `1.0 http-json`.
    pub fn name(self) -> &'static str {
        match self {
            Wire::V03 => "0.3",
            Wire::V10 => "1.0",
            Wire::V10Rest => "1.0 http-json",
        }
    }
}

/// Builds request bodies with fresh ids: every message gets its own `messageId` and
/// `contextId` (`lt-<run>-<n>`), so no two requests touch the same task or context.
pub struct Bodies {
    run: String,
    text: String,
    wire: Wire,
}

impl Bodies {
    /// `payload_bytes`: size of the text part (default "hello").
    pub fn new(run: String, payload_bytes: Option<usize>) -> Bodies {
        let text = match payload_bytes {
            Some(n) => "x".repeat(n),
            None => "hello".to_string(),
        };
        Bodies {
            run,
            text,
            wire: Wire::V03,
        }
    }

    /// Bodies in `wire`'s form instead of 0.3 JSON-RPC.
    pub fn with_wire(mut self, wire: Wire) -> Bodies {
        self.wire = wire;
        self
    }

    /// `message/send` (`blocking` set explicitly) or `message/stream` (`blocking: None`); in
    /// 1.0, `SendMessage` (`returnImmediately` = not blocking) or `SendStreamingMessage`
    /// (for HTTP+JSON, the bare `SendMessageRequest`).
    pub fn message(&self, n: u64, blocking: Option<bool>) -> String {
        if self.wire != Wire::V03 {
            return self.message10(n, blocking);
        }
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

    fn message10(&self, n: u64, blocking: Option<bool>) -> String {
        let (method, config) = match blocking {
            Some(b) => (
                "SendMessage",
                format!(r#"{{"returnImmediately":{},"historyLength":0}}"#, !b),
            ),
            None => ("SendStreamingMessage", r#"{"historyLength":0}"#.to_string()),
        };
        let params = format!(
            r#"{{"message":{{"role":"ROLE_USER","messageId":"lt-{run}-{n}","contextId":"ltc-{run}-{n}","parts":[{{"text":"{text}"}}]}},"configuration":{config}}}"#,
            run = self.run,
            text = self.text,
        );
        match self.wire {
            Wire::V10Rest => params,
            _ => format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"{method}","params":{params}}}"#),
        }
    }

    /// `tasks/get` (1.0: `GetTask`) without history. HTTP+JSON sends no body (the id and
    /// `historyLength` are in the URL: [`crate::http::RequestFactory::get_task`]).
    pub fn get(&self, n: u64, task_id: &str) -> String {
        match self.wire {
            Wire::V03 => {}
            Wire::V10 => {
                return format!(
                    r#"{{"jsonrpc":"2.0","id":{n},"method":"GetTask","params":{{"id":{},"historyLength":0}}}}"#,
                    json_string(task_id)
                )
            }
            Wire::V10Rest => return String::new(),
        }
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

/// A JSON-RPC error; over HTTP+JSON, the `google.rpc.Status` (its `code` is the HTTP status).
#[derive(Debug, Deserialize)]
pub struct RpcError {
    pub code: i64,
}

/// A Task, a status or artifact update, or a Message (all optional fields); in 1.0 also the
/// `SendMessageResponse` / `StreamResponse` wrapper around one of them (the answers carry
/// no `kind`: the wrapper's field says what is inside), and over HTTP+JSON an error body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub kind: Option<String>,
    pub id: Option<String>,
    pub task_id: Option<String>,
    pub status: Option<Status>,
    #[serde(rename = "final")]
    pub is_final: Option<bool>,
    /// 1.0 wrappers.
    task: Option<Box<Item>>,
    status_update: Option<Box<Item>>,
    artifact_update: Option<IgnoredAny>,
    message: Option<IgnoredAny>,
    /// An HTTP+JSON error body (`{"error": {"code", "status", "message", …}}`).
    error: Option<RpcError>,
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
        // 1.0: the wrapper's field names the event.
        if let Some(task) = &self.task {
            return task.seen_as(true);
        }
        if let Some(update) = &self.status_update {
            return update.seen_as(false);
        }
        if self.artifact_update.is_some() {
            return Seen::Other;
        }
        if self.message.is_some() {
            return Seen::Done {
                state: "message".into(),
            };
        }
        // 0.3 says what it is in `kind`; a bare 1.0 Task (`GetTask`) has an `id` and no
        // `taskId`.
        self.seen_as(self.kind.as_deref() == Some("task") || self.task_id.is_none())
    }

    fn seen_as(&self, is_task: bool) -> Seen {
        if self.kind.as_deref() == Some("message") {
            // Agents may answer with a direct message: the exchange is over.
            return Seen::Done {
                state: "message".into(),
            };
        }
        let Some(status) = &self.status else {
            return Seen::Other;
        };
        let task_id = if is_task {
            self.id.clone()
        } else {
            self.task_id.clone()
        };
        let state = state_name(&status.state);
        if is_done(&state) || self.is_final == Some(true) {
            Seen::Done {
                state: state.into_owned(),
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

/// A state by its 0.3 name, so reports count both versions alike: 1.0's
/// `TASK_STATE_INPUT_REQUIRED` is `input-required`.
fn state_name(state: &str) -> std::borrow::Cow<'_, str> {
    match state.strip_prefix("TASK_STATE_") {
        Some(rest) => rest.to_ascii_lowercase().replace('_', "-").into(),
        None => state.into(),
    }
}

/// Parses an answer body; `None` when it is not JSON-RPC.
pub fn parse(body: &[u8]) -> Option<Answer> {
    serde_json::from_slice(body).ok()
}

/// Parses an answer body of `wire`: a JSON-RPC envelope, or over HTTP+JSON the bare object
/// (an error body becomes the answer's error); `None` when it is neither.
pub fn parse_as(wire: Wire, body: &[u8]) -> Option<Answer> {
    if wire != Wire::V10Rest {
        return parse(body);
    }
    let mut item: Item = serde_json::from_slice(body).ok()?;
    Some(match item.error.take() {
        Some(error) => Answer {
            result: None,
            error: Some(error),
        },
        None => Answer {
            result: Some(item),
            error: None,
        },
    })
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
    fn bodies_in_1_0_use_its_methods_and_shapes() {
        let b = Bodies::new("r1".into(), None).with_wire(Wire::V10);
        let send: serde_json::Value =
            serde_json::from_str(&b.message(1, Some(true))).expect("json");
        assert_eq!(send["method"], "SendMessage");
        assert_eq!(send["params"]["configuration"]["returnImmediately"], false);
        assert_eq!(send["params"]["message"]["role"], "ROLE_USER");
        assert_eq!(send["params"]["message"]["parts"][0]["text"], "hello");
        assert!(send["params"]["message"]["parts"][0].get("kind").is_none());
        let send: serde_json::Value =
            serde_json::from_str(&b.message(2, Some(false))).expect("json");
        assert_eq!(send["params"]["configuration"]["returnImmediately"], true);
        let stream: serde_json::Value = serde_json::from_str(&b.message(3, None)).expect("json");
        assert_eq!(stream["method"], "SendStreamingMessage");
        let get: serde_json::Value = serde_json::from_str(&b.get(4, "t")).expect("json");
        assert_eq!(get["method"], "GetTask");
        assert_eq!(get["params"]["id"], "t");

        // HTTP+JSON: the bare SendMessageRequest; GetTask has no body.
        let b = Bodies::new("r1".into(), None).with_wire(Wire::V10Rest);
        let send: serde_json::Value =
            serde_json::from_str(&b.message(5, Some(true))).expect("json");
        assert!(send.get("jsonrpc").is_none());
        assert_eq!(send["message"]["role"], "ROLE_USER");
        assert_eq!(send["configuration"]["returnImmediately"], false);
        assert_eq!(b.get(6, "t"), "");
    }

    #[test]
    fn answers_in_1_0_say_how_far_the_task_got() {
        let done = |state: &str| Seen::Done {
            state: state.into(),
        };
        let running = Seen::Running {
            task_id: "t1".into(),
        };
        // SendMessage: a SendMessageResponse holding the task.
        let a = parse_as(Wire::V10, br#"{"jsonrpc":"2.0","id":1,"result":{"task":{"id":"t1","contextId":"c","status":{"state":"TASK_STATE_SUBMITTED"}}}}"#).expect("answer");
        assert_eq!(a.result.expect("result").seen(), running);
        let a = parse_as(Wire::V10, br#"{"jsonrpc":"2.0","id":1,"result":{"task":{"id":"t1","status":{"state":"TASK_STATE_COMPLETED"},"artifacts":[]}}}"#).expect("answer");
        assert_eq!(a.result.expect("result").seen(), done("completed"));
        let a = parse_as(Wire::V10, br#"{"jsonrpc":"2.0","id":1,"result":{"message":{"messageId":"m","role":"ROLE_AGENT","parts":[]}}}"#).expect("answer");
        assert_eq!(a.result.expect("result").seen(), done("message"));
        // GetTask: the bare task.
        let a = parse_as(Wire::V10, br#"{"jsonrpc":"2.0","id":1,"result":{"id":"t1","contextId":"c","status":{"state":"TASK_STATE_WORKING"}}}"#).expect("answer");
        assert_eq!(a.result.expect("result").seen(), running);
        // StreamResponse events: no `final` in 1.0, the state says it.
        let a = parse_as(Wire::V10, br#"{"jsonrpc":"2.0","id":1,"result":{"statusUpdate":{"taskId":"t1","contextId":"c","status":{"state":"TASK_STATE_WORKING"}}}}"#).expect("answer");
        assert_eq!(a.result.expect("result").seen(), running);
        let a = parse_as(Wire::V10, br#"{"jsonrpc":"2.0","id":1,"result":{"statusUpdate":{"taskId":"t1","status":{"state":"TASK_STATE_INPUT_REQUIRED"}}}}"#).expect("answer");
        assert_eq!(a.result.expect("result").seen(), done("input-required"));
        let a = parse_as(Wire::V10, br#"{"jsonrpc":"2.0","id":1,"result":{"artifactUpdate":{"taskId":"t1","artifact":{"artifactId":"a","parts":[]}}}}"#).expect("answer");
        assert_eq!(a.result.expect("result").seen(), Seen::Other);
        let a = parse_as(
            Wire::V10,
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"x"}}"#,
        )
        .expect("answer");
        assert_eq!(a.error.expect("error").code, -32001);

        // HTTP+JSON: the same objects bare, errors as google.rpc.Status.
        let a = parse_as(
            Wire::V10Rest,
            br#"{"task":{"id":"t1","status":{"state":"TASK_STATE_FAILED"}}}"#,
        )
        .expect("answer");
        assert_eq!(a.result.expect("result").seen(), done("failed"));
        let a = parse_as(
            Wire::V10Rest,
            br#"{"statusUpdate":{"taskId":"t1","status":{"state":"TASK_STATE_COMPLETED"}}}"#,
        )
        .expect("answer");
        assert_eq!(a.result.expect("result").seen(), done("completed"));
        let a = parse_as(
            Wire::V10Rest,
            br#"{"id":"t1","status":{"state":"TASK_STATE_SUBMITTED"}}"#,
        )
        .expect("answer");
        assert_eq!(a.result.expect("result").seen(), running);
        let a = parse_as(
            Wire::V10Rest,
            br#"{"error":{"code":404,"status":"NOT_FOUND","message":"no task","details":[]}}"#,
        )
        .expect("answer");
        assert!(a.result.is_none());
        assert_eq!(a.error.expect("error").code, 404);
        assert!(parse_as(Wire::V10Rest, b"<html>").is_none());
        assert_eq!(state_name("TASK_STATE_AUTH_REQUIRED"), "auth-required");
        assert_eq!(state_name("completed"), "completed");
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
