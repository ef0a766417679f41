//! What the server puts on the wire validates against the A2A v0.3.0 JSON Schema
//! (`../shared/spec/a2a-v0.3.0.schema.json`, or `$BINDU_SHARED_DIR/spec/...`).

use crate::support::{self, patient_client};

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

/// The vendored copy of the schema (see `schemas/spec/SOURCE.md`).
const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schemas/spec/a2a-v0.3.0.schema.json"
);

/// The team's shared copy, when this checkout sits beside `shared/` (or `$BINDU_SHARED_DIR`).
fn shared_schema() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BINDU_SHARED_DIR") {
        return Some(PathBuf::from(dir).join("spec/a2a-v0.3.0.schema.json"));
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/spec/a2a-v0.3.0.schema.json"))
        .find(|p| p.is_file())
}

#[test]
fn the_vendored_schema_is_the_shared_one() {
    let vendored = std::fs::read(SCHEMA).unwrap();
    if let Some(shared) = shared_schema() {
        let shared = std::fs::read(&shared).unwrap_or_else(|e| panic!("{}: {e}", shared.display()));
        assert!(
            vendored == shared,
            "schemas/spec/ differs from the shared spec: re-copy it"
        );
    }
    // Upstream blob 7e0da25e…: the same size as the tagged file.
    assert_eq!(vendored.len(), 103_940);
}

struct Spec {
    definitions: Value,
}

impl Spec {
    fn load() -> Spec {
        let text = std::fs::read_to_string(SCHEMA).unwrap();
        let schema: Value = serde_json::from_str(&text).unwrap();
        Spec {
            definitions: schema["definitions"].clone(),
        }
    }

    fn check(&self, definition: &str, instance: &Value) {
        assert!(
            self.definitions.get(definition).is_some(),
            "no definition {definition}"
        );
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$ref": format!("#/definitions/{definition}"),
            "definitions": self.definitions,
        });
        let validator = jsonschema::draft7::new(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{definition} does not validate: {errors:#?}\ninstance: {instance:#}"
        );
    }
}

impl Spec {
    fn rejects(&self, definition: &str, instance: &mut Value) {
        let schema =
            json!({"$ref": format!("#/definitions/{definition}"), "definitions": self.definitions});
        let validator = jsonschema::draft7::new(&schema).unwrap();
        assert!(
            !validator.is_valid(instance),
            "{definition} should reject {instance}"
        );
    }
}

fn card_without_name() -> Value {
    json!({"protocolVersion": "0.3.0", "description": "d", "url": "http://127.0.0.1/", "version": "1",
           "capabilities": {}, "defaultInputModes": [], "defaultOutputModes": [], "skills": []})
}

async fn rpc(url: &str, method: &str, params: Value) -> Value {
    support::post_rpc(&patient_client(), url, json!("req-1"), method, params).await
}

fn message(text: &str) -> Value {
    json!({"role": "user", "kind": "message", "messageId": uuid_like(),
           "parts": [{"kind": "text", "text": text},
                     {"kind": "data", "data": {"n": 1}},
                     {"kind": "file", "file": {"uri": "https://example.com/a.pdf", "mimeType": "application/pdf"}}]})
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "msg-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[tokio::test]
async fn server_output_matches_the_a2a_schema() {
    let spec = Spec::load();
    let server = support::start_echo(&[("server.port", "0")]).await;
    let base = format!("http://{}", server.local_addr());
    let url = format!("{base}/");

    // The validator is live: a card without a name, a task with a bad state are refused.
    let mut nameless = card_without_name();
    spec.rejects("AgentCard", &mut nameless);
    spec.rejects(
        "Task",
        &mut json!({"id": "t", "contextId": "c", "kind": "task", "status": {"state": "sleeping"}}),
    );

    let card: Value = reqwest::get(format!("{base}/.well-known/agent-card.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    spec.check("AgentCard", &card);
    // The same card is a 1.0 card: 1.0 clients find their interface in it.
    crate::a2a10::check_v10_card(&card, &url);

    let sent = rpc(&url, "message/send", json!({"message": message("hello")})).await;
    spec.check("SendMessageSuccessResponse", &sent);
    let task_id = sent["result"]["id"].as_str().unwrap().to_string();

    let got = rpc(
        &url,
        "tasks/get",
        json!({"id": task_id, "historyLength": 1}),
    )
    .await;
    spec.check("GetTaskSuccessResponse", &got);

    let set = rpc(
        &url,
        "tasks/pushNotificationConfig/set",
        json!({"taskId": task_id, "pushNotificationConfig": {"url": "https://example.com/webhook", "token": "t"}}),
    )
    .await;
    spec.check("SetTaskPushNotificationConfigSuccessResponse", &set);
    let config_id = set["result"]["pushNotificationConfig"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let one = json!({"id": task_id, "pushNotificationConfigId": config_id});
    for (method, params, definition) in [
        (
            "get",
            one.clone(),
            "GetTaskPushNotificationConfigSuccessResponse",
        ),
        (
            "list",
            json!({"id": task_id}),
            "ListTaskPushNotificationConfigSuccessResponse",
        ),
        (
            "delete",
            one,
            "DeleteTaskPushNotificationConfigSuccessResponse",
        ),
    ] {
        let answer = rpc(
            &url,
            &format!("tasks/pushNotificationConfig/{method}"),
            params,
        )
        .await;
        spec.check(definition, &answer);
    }

    for (method, params, definition) in [
        (
            "tasks/get",
            json!({"id": "missing"}),
            "JSONRPCErrorResponse",
        ),
        (
            "tasks/cancel",
            json!({"id": task_id}),
            "JSONRPCErrorResponse",
        ),
        ("nope/nope", json!({}), "JSONRPCErrorResponse"),
    ] {
        spec.check(definition, &rpc(&url, method, params).await);
    }
    let parse_error: Value = patient_client()
        .post(&url)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    spec.check("JSONRPCErrorResponse", &parse_error);

    // A non-blocking send that is then canceled... or already done: either way a Task.
    let pending = rpc(
        &url,
        "message/send",
        json!({"message": message("later"), "configuration": {"blocking": false}}),
    )
    .await;
    spec.check("SendMessageSuccessResponse", &pending);

    let resp = patient_client()
        .post(&url)
        .json(&json!({"jsonrpc": "2.0", "id": 42, "method": "message/stream", "params": {"message": message("stream")}}))
        .send()
        .await
        .unwrap();
    let events = support::sse_json(resp, std::time::Duration::from_secs(10)).await;
    assert!(
        events.len() >= 4,
        "task, working, artifact, completed: {events:#?}"
    );
    for e in &events {
        spec.check("SendStreamingMessageSuccessResponse", e);
    }
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn a_card_with_skills_from_files_matches_the_a2a_schema() {
    let spec = Spec::load();
    let skills = crate::skills::example_skills();
    let config =
        bindu::Config::from_settings(&[("server.port", "0"), ("agent.skills", &skills)]).unwrap();
    let server = bindu::start(config, Arc::new(bindu::EchoHandler::default()))
        .await
        .unwrap();
    let card: Value = support::get_json(
        &patient_client(),
        format!("http://{}/.well-known/agent-card.json", server.local_addr()),
    )
    .await;
    assert_eq!(card["skills"].as_array().unwrap().len(), 3);
    spec.check("AgentCard", &card);
    for skill in card["skills"].as_array().unwrap() {
        spec.check("AgentSkill", skill);
    }
    server.shutdown();
    server.wait().await.unwrap();
}
