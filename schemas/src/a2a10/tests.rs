//! Golden round trips: each 1.0 object, read from its 1.0 JSON, becomes the expected 0.3
//! JSON, and that read back gives the 1.0 JSON it came from, byte for byte as a value.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::*;

fn golden<W10, W03>(v10: Value, v03: Value)
where
    W10: DeserializeOwned + Serialize + TryInto<W03>,
    <W10 as TryInto<W03>>::Error: std::fmt::Debug,
    W03: DeserializeOwned + Serialize + Into<W10>,
{
    let one: W10 = serde_json::from_value(v10.clone()).expect("reads the 1.0 JSON");
    let old: W03 = one.try_into().expect("converts to 0.3");
    let old_json = serde_json::to_value(&old).unwrap();
    assert_eq!(old_json, v03, "the 0.3 form");
    let again: W03 = serde_json::from_value(old_json).expect("reads the 0.3 JSON");
    let back: W10 = again.into();
    assert_eq!(serde_json::to_value(&back).unwrap(), v10, "back to 1.0");
}

fn message10() -> Value {
    json!({"messageId": "m1", "contextId": "c1", "taskId": "t1", "role": "ROLE_USER",
           "parts": [{"text": "hi", "mediaType": "text/markdown", "metadata": {"k": 1}}],
           "metadata": {"x": "y"}, "extensions": ["urn:e"], "referenceTaskIds": ["t0"]})
}

fn message03() -> Value {
    json!({"role": "user", "messageId": "m1", "contextId": "c1", "taskId": "t1", "kind": "message",
           "parts": [{"kind": "text", "text": "hi",
                      "metadata": {"k": 1, PART_MEDIA_TYPE: "text/markdown"}}],
           "metadata": {"x": "y"}, "extensions": ["urn:e"], "referenceTaskIds": ["t0"]})
}

fn artifact10() -> Value {
    json!({"artifactId": "a1", "name": "out", "description": "d",
           "parts": [{"data": {"n": 1}}, {"data": [1, 2]}, {"data": "s", "filename": "f.json"}],
           "metadata": {"m": true}, "extensions": ["urn:e"]})
}

fn artifact03() -> Value {
    json!({"artifactId": "a1", "name": "out", "description": "d",
           "parts": [{"kind": "data", "data": {"n": 1}},
                     {"kind": "data", "data": {"value": [1, 2]}, "metadata": {DATA_NOT_OBJECT: true}},
                     {"kind": "data", "data": {"value": "s"},
                      "metadata": {DATA_NOT_OBJECT: true, PART_FILENAME: "f.json"}}],
           "metadata": {"m": true}, "extensions": ["urn:e"]})
}

fn status10() -> Value {
    json!({"state": "TASK_STATE_INPUT_REQUIRED", "timestamp": "2026-12-07T05:00:00.000Z",
           "message": {"messageId": "m2", "role": "ROLE_AGENT", "parts": [{"text": "more?"}]}})
}

fn status03() -> Value {
    json!({"state": "input-required", "timestamp": "2026-12-07T05:00:00.000Z",
           "message": {"role": "agent", "messageId": "m2", "kind": "message",
                       "parts": [{"kind": "text", "text": "more?"}]}})
}

fn task10() -> Value {
    json!({"id": "t1", "contextId": "c1", "status": status10(), "artifacts": [artifact10()],
           "history": [message10()], "metadata": {"a": 1}})
}

fn task03() -> Value {
    json!({"id": "t1", "contextId": "c1", "status": status03(), "kind": "task",
           "artifacts": [artifact03()], "history": [message03()], "metadata": {"a": 1}})
}

#[test]
fn parts_of_every_kind_round_trip() {
    golden::<Part, crate::Part>(
        json!({"raw": "aGk=", "filename": "a.bin", "mediaType": "application/octet-stream"}),
        json!({"kind": "file", "file": {"bytes": "aGk=", "name": "a.bin", "mimeType": "application/octet-stream"}}),
    );
    golden::<Part, crate::Part>(
        json!({"url": "https://x/y.png", "mediaType": "image/png", "metadata": {}}),
        json!({"kind": "file", "file": {"uri": "https://x/y.png", "mimeType": "image/png"}, "metadata": {}}),
    );
    golden::<Part, crate::Part>(
        json!({"text": "plain"}),
        json!({"kind": "text", "text": "plain"}),
    );
}

#[test]
fn a_part_needs_exactly_one_content() {
    for bad in [
        json!({}),
        json!({"text": "a", "url": "https://x"}),
        json!({"metadata": {}}),
    ] {
        let p: Part = serde_json::from_value(bad.clone()).unwrap();
        assert!(crate::Part::try_from(p).is_err(), "{bad}");
    }
}

#[test]
fn messages_artifacts_statuses_and_tasks_round_trip() {
    golden::<Message, crate::Message>(message10(), message03());
    golden::<Artifact, crate::Artifact>(artifact10(), artifact03());
    golden::<TaskStatus, crate::TaskStatus>(status10(), status03());
    golden::<Task, crate::Task>(task10(), task03());
}

#[test]
fn every_state_has_a_1_0_name_and_back() {
    for state in crate::TaskState::ALL {
        let v10 = json!({"state": enums::task_state::name(state)});
        let v03 = json!({"state": state.as_str()});
        golden::<TaskStatus, crate::TaskStatus>(v10, v03);
    }
    // Numbers and 0.3 names are read too; ROLE_UNSPECIFIED is not a sender.
    let s: TaskStatus = serde_json::from_value(json!({"state": 3})).unwrap();
    assert_eq!(s.state, crate::TaskState::Completed);
    let s: TaskStatus = serde_json::from_value(json!({"state": "working"})).unwrap();
    assert_eq!(s.state, crate::TaskState::Working);
    assert!(serde_json::from_value::<TaskStatus>(json!({"state": "TASK_STATE_NOPE"})).is_err());
    let m = json!({"messageId": "m", "role": "ROLE_UNSPECIFIED", "parts": []});
    assert!(serde_json::from_value::<Message>(m).is_err());
}

#[test]
fn streamed_events_round_trip_in_their_wrapper() {
    let status = json!({"statusUpdate": {"taskId": "t1", "contextId": "c1",
                        "status": {"state": "TASK_STATE_COMPLETED"}, "metadata": {"z": 0}}});
    let status03 = json!({"taskId": "t1", "contextId": "c1", "kind": "status-update",
                          "status": {"state": "completed"}, "final": true, "metadata": {"z": 0}});
    golden::<StreamResponse, crate::StreamResult>(status, status03);
    let working = json!({"statusUpdate": {"taskId": "t1", "contextId": "c1",
                         "status": {"state": "TASK_STATE_WORKING"}}});
    let working03 = json!({"taskId": "t1", "contextId": "c1", "kind": "status-update",
                           "status": {"state": "working"}, "final": false});
    golden::<StreamResponse, crate::StreamResult>(working, working03);
    let chunk = json!({"artifactUpdate": {"taskId": "t1", "contextId": "c1",
                       "artifact": artifact10(), "append": true, "lastChunk": false}});
    let chunk03 = json!({"taskId": "t1", "contextId": "c1", "kind": "artifact-update",
                         "artifact": artifact03(), "append": true, "lastChunk": false});
    golden::<StreamResponse, crate::StreamResult>(chunk, chunk03);
    golden::<StreamResponse, crate::StreamResult>(json!({"task": task10()}), task03());
    golden::<StreamResponse, crate::StreamResult>(json!({"message": message10()}), message03());
}

#[test]
fn push_configs_round_trip_flat_and_nested() {
    golden::<TaskPushNotificationConfig, crate::TaskPushNotificationConfig>(
        json!({"id": "p1", "taskId": "t1", "url": "https://hook/x", "token": "tok",
               "authentication": {"scheme": "Bearer", "credentials": "c"}}),
        json!({"taskId": "t1", "pushNotificationConfig": {"url": "https://hook/x", "id": "p1",
               "token": "tok", "authentication": {"schemes": ["Bearer"], "credentials": "c"}}}),
    );
}

#[test]
fn method_params_round_trip() {
    golden::<SendMessageRequest, crate::MessageSendParams>(
        json!({"message": message10(), "metadata": {"q": 1},
               "configuration": {"acceptedOutputModes": ["text/plain"], "historyLength": 2,
                                 "returnImmediately": true,
                                 "taskPushNotificationConfig": {"taskId": "", "url": "https://hook/y", "token": "t"}}}),
        json!({"message": message03(), "metadata": {"q": 1},
               "configuration": {"acceptedOutputModes": ["text/plain"], "historyLength": 2,
                                 "blocking": false,
                                 "pushNotificationConfig": {"url": "https://hook/y", "token": "t"}}}),
    );
    golden::<GetTaskRequest, crate::TaskQueryParams>(
        json!({"id": "t1", "historyLength": 0}),
        json!({"id": "t1", "historyLength": 0}),
    );
    golden::<TaskIdRequest, crate::TaskIdParams>(
        json!({"id": "t1", "metadata": {"why": "done"}}),
        json!({"id": "t1", "metadata": {"why": "done"}}),
    );
    golden::<PushConfigRequest, crate::DeleteTaskPushNotificationConfigParams>(
        json!({"taskId": "t1", "id": "p1"}),
        json!({"id": "t1", "pushNotificationConfigId": "p1"}),
    );
    // Get reads the same request: the config id becomes the 0.3 one.
    let r: PushConfigRequest = serde_json::from_value(json!({"taskId": "t1", "id": "p1"})).unwrap();
    let get = crate::GetTaskPushNotificationConfigParams::from(r);
    assert_eq!(
        (get.id.as_str(), get.push_notification_config_id.as_deref()),
        ("t1", Some("p1"))
    );
}

#[test]
fn list_tasks_reads_its_filters_and_1_0_defaults() {
    golden::<ListTasksRequest, crate::ListTasksParams>(
        json!({"contextId": "c1", "status": "TASK_STATE_WORKING", "pageSize": 10,
               "pageToken": "abc", "historyLength": 1, "includeArtifacts": true,
               "statusTimestampAfter": "2026-01-01T00:00:00Z"}),
        json!({"contextId": "c1", "status": "working", "limit": 10, "cursor": "abc",
               "historyLength": 1, "includeArtifacts": true,
               "statusTimestampAfter": "2026-01-01T00:00:00Z"}),
    );
    let r: ListTasksRequest = serde_json::from_value(json!({
        "status": "TASK_STATE_WORKING", "statusTimestampAfter": "2026-01-01T00:00:00Z"}))
    .unwrap();
    let params = crate::ListTasksParams::from(r);
    assert_eq!(
        params.include_artifacts,
        Some(false),
        "1.0 leaves artifacts out by default"
    );
    assert_eq!(params.status, Some(crate::TaskState::Working));
    assert_eq!(
        params.status_after().map(|t| t.to_rfc3339()),
        Some("2026-01-01T00:00:00+00:00".to_string())
    );
    let defaults: ListTasksRequest = serde_json::from_value(json!({
        "pageToken": "", "pageSize": 0, "status": "TASK_STATE_UNSPECIFIED"}))
    .unwrap();
    let params = crate::ListTasksParams::from(defaults);
    assert!(params.status.is_none() && params.status_after().is_none());
    assert!(params.cursor.is_none() && params.limit.is_none());
}

#[test]
fn a_task_list_always_says_its_total() {
    let task: Task = serde_json::from_value(task10()).unwrap();
    let page = ListTasksResponse {
        tasks: vec![task],
        next_page_token: "7".into(),
        page_size: 1,
        total_size: 3,
    };
    let wire = serde_json::to_value(&page).unwrap();
    assert_eq!(
        wire,
        json!({"tasks": [task10()], "nextPageToken": "7", "pageSize": 1, "totalSize": 3})
    );
    assert_eq!(
        serde_json::from_value::<ListTasksResponse>(wire).unwrap(),
        page
    );
    // Required in the proto: an empty listing says 0, it does not leave it out.
    let empty = ListTasksResponse {
        tasks: vec![],
        next_page_token: String::new(),
        page_size: 50,
        total_size: 0,
    };
    assert_eq!(serde_json::to_value(&empty).unwrap()["totalSize"], 0);
}

/// `tenant` is read from every 1.0 request (empty is none) before the conversion drops it.
#[test]
fn every_request_says_its_tenant() {
    fn tenant_of<W: DeserializeOwned + Tenanted>(v: Value) -> Option<String> {
        serde_json::from_value::<W>(v)
            .unwrap()
            .tenant()
            .map(str::to_string)
    }
    let t = |v: Value| {
        let mut v = v;
        v["tenant"] = json!("acme");
        v
    };
    assert_eq!(
        tenant_of::<SendMessageRequest>(t(json!({"message": message10()}))).as_deref(),
        Some("acme")
    );
    assert_eq!(
        tenant_of::<GetTaskRequest>(t(json!({"id": "x"}))).as_deref(),
        Some("acme")
    );
    assert_eq!(
        tenant_of::<TaskIdRequest>(t(json!({"id": "x"}))).as_deref(),
        Some("acme")
    );
    assert_eq!(
        tenant_of::<ListTasksRequest>(t(json!({}))).as_deref(),
        Some("acme")
    );
    assert_eq!(
        tenant_of::<PushConfigRequest>(t(json!({"taskId": "x", "id": "c"}))).as_deref(),
        Some("acme")
    );
    assert_eq!(
        tenant_of::<TaskPushNotificationConfig>(t(json!({"taskId": "x", "url": "http://h/"})))
            .as_deref(),
        Some("acme")
    );
    assert_eq!(
        tenant_of::<GetExtendedAgentCardRequest>(t(json!({}))).as_deref(),
        Some("acme")
    );
    assert_eq!(
        tenant_of::<GetTaskRequest>(json!({"id": "x", "tenant": ""})),
        None
    );
    assert_eq!(tenant_of::<GetTaskRequest>(json!({"id": "x"})), None);
}

#[test]
fn every_method_has_a_1_0_name_that_maps_back() {
    for m in crate::jsonrpc::Method::ALL {
        assert_eq!(methods::from_name(methods::name(*m)), Some(*m), "{m:?}");
    }
    assert_eq!(
        methods::from_name("message/send"),
        None,
        "0.3 names are 0.3's"
    );
}
