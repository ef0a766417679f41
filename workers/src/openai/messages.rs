//! The conversation sent to the model: the system prompt, earlier tasks of the context,
//! referenced tasks' results, then the task's own history.

use bindu_schemas::{Message, Part, Role, Task};
use serde_json::{json, Value};

/// A part as text: text as is, data as JSON, a file as a short description (the model
/// cannot fetch it).
fn part_text(part: &Part) -> String {
    match part {
        Part::Text(t) => t.text.clone(),
        Part::Data(d) => serde_json::to_string(&d.data).unwrap_or_default(),
        Part::File(f) => {
            let name = f.file.name.as_deref().unwrap_or("unnamed");
            let mime = f.file.mime_type.as_deref().unwrap_or("unknown type");
            match &f.file.uri {
                Some(uri) => format!("[file {name} ({mime}) at {uri}]"),
                None => format!("[file {name} ({mime}), attached inline]"),
            }
        }
    }
}

fn parts_text(parts: &[Part]) -> String {
    parts
        .iter()
        .map(part_text)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("")
}

fn chat(role: &str, content: String) -> Value {
    json!({"role": role, "content": content})
}

fn message(m: &Message) -> Option<Value> {
    let content = parts_text(&m.parts);
    if content.is_empty() {
        return None;
    }
    let role = match m.role {
        Role::User => "user",
        Role::Agent => "assistant",
    };
    Some(chat(role, content))
}

/// The text of a task's artifacts (streamed chunks joined).
fn artifacts_text(task: &Task) -> String {
    task.artifacts
        .iter()
        .flatten()
        .map(|a| parts_text(&a.parts))
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// An earlier task as chat turns; its result is added as the assistant's turn when the
/// history does not already end with the agent's reply (streamed results live only in
/// artifacts).
fn earlier_task(task: &Task, out: &mut Vec<Value>) {
    let history = task.history.as_deref().unwrap_or_default();
    out.extend(history.iter().filter_map(message));
    let answered = history.last().is_some_and(|m| m.role == Role::Agent);
    let result = artifacts_text(task);
    if !answered && !result.is_empty() {
        out.push(chat("assistant", result));
    }
}

/// The `messages` of a chat-completions request.
pub fn conversation(
    system_prompt: Option<&str>,
    context_history: &[Task],
    references: &[Task],
    history: &[Message],
) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(p) = system_prompt {
        out.push(chat("system", p.to_string()));
    }
    for task in context_history {
        earlier_task(task, &mut out);
    }
    for task in references {
        let result = artifacts_text(task);
        let result = if result.is_empty() {
            task.history
                .as_deref()
                .unwrap_or_default()
                .iter()
                .rev()
                .find(|m| m.role == Role::Agent)
                .map(|m| parts_text(&m.parts))
                .unwrap_or_default()
        } else {
            result
        };
        if !result.is_empty() {
            out.push(chat(
                "system",
                format!("Result of referenced task {}:\n{result}", task.id),
            ));
        }
    }
    out.extend(history.iter().filter_map(message));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindu_schemas::Artifact;

    fn user(text: &str) -> Message {
        let mut m = Message::agent("m".into(), vec![Part::text(text)]);
        m.role = Role::User;
        m
    }

    fn task(id: &str, history: Vec<Message>, artifact: Option<&str>) -> Task {
        let mut t: Task = serde_json::from_value(json!({
            "id": id, "contextId": "c", "kind": "task",
            "status": {"state": "completed"},
        }))
        .unwrap();
        t.history = Some(history);
        t.artifacts = artifact.map(|a| {
            vec![Artifact {
                artifact_id: "a".into(),
                parts: vec![Part::text(a)],
                name: None,
                description: None,
                metadata: None,
                extensions: None,
            }]
        });
        t
    }

    #[test]
    fn the_conversation_has_every_source_in_order() {
        let earlier = task("t0", vec![user("Hi, I'm Ann")], Some("Hello Ann"));
        let referenced = task("t1", vec![user("Summarise")], Some("A summary"));
        let msgs = conversation(
            Some("Be brief."),
            &[earlier],
            &[referenced],
            &[user("What's my name?")],
        );
        let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "system", "user"]);
        assert_eq!(msgs[2]["content"], "Hello Ann");
        assert!(msgs[3]["content"].as_str().unwrap().contains("A summary"));
        assert_eq!(msgs[4]["content"], "What's my name?");
    }
}
