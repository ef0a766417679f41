//! A2A 1.0 beside 0.3 on `POST /`: version negotiation, the 1.0 methods and wire shapes,
//! each version's error codes, and one task model read and driven from both versions.

use serde_json::{json, Value};

use crate::support::{self, error_code, unique, within, Gate, TestServer};

/// A 1.0 user message: `ROLE_USER`, flat parts.
fn message10(text: &str) -> Value {
    json!({"role": "ROLE_USER", "messageId": unique("m10"), "parts": [{"text": text}]})
}

fn message10_with(text: &str, extra: Value) -> Value {
    let mut m = message10(text);
    m.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    m
}

/// POSTs `body` to `/` with `A2A-Version: version` (none when `None`): the status, the
/// `A2A-Version` answered and the body.
async fn post_as(s: &TestServer, version: Option<&str>, body: Value) -> (u16, String, Value) {
    let mut req = s
        .client
        .post(s.url())
        .header("content-type", "application/json");
    if let Some(v) = version {
        req = req.header("a2a-version", v);
    }
    let resp = within("POST /", req.body(body.to_string()).send())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let served = resp
        .headers()
        .get("a2a-version")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, served, resp.json().await.unwrap())
}

/// Checks `card` has what a 1.0 `AgentCard` requires (`../shared/spec/a2a-v1.0.proto`,
/// `REQUIRED` fields), and a JSON-RPC interface at `url` for each protocol version.
pub fn check_v10_card(card: &Value, url: &str) {
    let text = |v: &Value, field: &str| {
        assert!(
            v[field].as_str().is_some_and(|s| !s.is_empty()),
            "`{field}` in {v}"
        );
    };
    let texts = |v: &Value, field: &str| {
        let list = v[field]
            .as_array()
            .unwrap_or_else(|| panic!("`{field}` in {v}"));
        assert!(list.iter().all(Value::is_string), "`{field}` in {v}");
    };
    for field in ["name", "description", "version"] {
        text(card, field);
    }
    assert!(card["capabilities"].is_object(), "{card}");
    texts(card, "defaultInputModes");
    texts(card, "defaultOutputModes");
    for skill in card["skills"].as_array().unwrap() {
        for field in ["id", "name", "description"] {
            text(skill, field);
        }
        texts(skill, "tags");
    }
    let interfaces = card["supportedInterfaces"].as_array().unwrap();
    for i in interfaces {
        for field in ["url", "protocolBinding", "protocolVersion"] {
            text(i, field);
        }
    }
    for version in ["1.0", "0.3"] {
        assert!(
            interfaces.iter().any(|i| i["protocolVersion"] == version
                && i["protocolBinding"] == "JSONRPC"
                && i["url"] == url),
            "a JSON-RPC {version} interface at {url}: {card}"
        );
    }
}

fn no_0_3_kinds(v: &Value) {
    let text = v.to_string();
    assert!(
        !text.contains("\"kind\""),
        "1.0 objects have no `kind`: {text}"
    );
}

#[tokio::test]
async fn the_version_comes_from_the_header_or_the_query_and_answers_name_it() {
    let s = TestServer::echo().await;
    let send03 = json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                        "params": {"message": support::user_message("hi")}});
    let (status, served, body) = post_as(&s, None, send03.clone()).await;
    assert_eq!((status, served.as_str()), (200, "0.3"), "{body}");
    assert_eq!(body["result"]["status"]["state"], "completed");
    let (_, served, body) = post_as(&s, Some(""), send03.clone()).await;
    assert_eq!(served, "0.3", "an empty version is 0.3: {body}");
    assert_eq!(body["result"]["kind"], "task");

    let send10 = json!({"jsonrpc": "2.0", "id": "a", "method": "SendMessage",
                        "params": {"message": message10("hi")}});
    let (status, served, body) = post_as(&s, Some("1.0"), send10.clone()).await;
    assert_eq!((status, served.as_str()), (200, "1.0"), "{body}");
    let task = &body["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{body}");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "hi");
    assert_eq!(task["history"][0]["role"], "ROLE_USER");
    no_0_3_kinds(&body);

    // The query parameter, when there is no header.
    let resp = within(
        "POST /?A2A-Version=1.0",
        s.client
            .post(s.endpoint("/?A2A-Version=1.0"))
            .header("content-type", "application/json")
            .body(send10.to_string())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.headers()["a2a-version"], "1.0");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["result"]["task"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );

    // Unsupported versions: -32009 with the id echoed, whatever the method.
    for bad in ["2.0", "1.0.1", "0.2", "1"] {
        let (status, served, body) = post_as(&s, Some(bad), send10.clone()).await;
        assert_eq!(status, 200, "{bad}: {body}");
        assert_eq!(served, "1.0", "{bad}");
        assert_eq!(error_code(&body), -32009, "{bad}: {body}");
        assert_eq!(body["id"], "a");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("0.3 and 1.0"));
    }
    // Each version's method names are its own, and the refusal says which to use.
    let (_, _, body) = post_as(&s, None, send10).await;
    assert_eq!(error_code(&body), -32601);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("A2A-Version: 1.0"),
        "{body}"
    );
    let (_, _, body) = post_as(&s, Some("1.0"), send03).await;
    assert_eq!(error_code(&body), -32601);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("0.3 method"),
        "{body}"
    );
}

#[tokio::test]
async fn tasks_are_sent_got_listed_and_canceled_in_1_0_shapes() {
    let s = TestServer::echo().await;
    let ctx = unique("ctx");
    let sent = s
        .rpc10(
            "SendMessage",
            json!({"message": message10_with("one", json!({"contextId": ctx}))}),
        )
        .await;
    let task = &sent["result"]["task"];
    let id = task["id"].as_str().unwrap().to_string();
    assert_eq!(task["contextId"], ctx.as_str());
    // A second task in the context, answered at once (`returnImmediately`).
    let quick = s
        .rpc10(
            "SendMessage",
            json!({"message": message10_with("two", json!({"contextId": ctx})),
                   "configuration": {"returnImmediately": true, "historyLength": 0}}),
        )
        .await;
    let state = quick["result"]["task"]["status"]["state"].as_str().unwrap();
    assert!(state.starts_with("TASK_STATE_"), "{quick}");
    assert!(
        quick["result"]["task"].get("history").is_none(),
        "historyLength 0: {quick}"
    );
    let second = quick["result"]["task"]["id"].as_str().unwrap().to_string();
    s.wait_for_state(&second, "completed").await;

    let got = s
        .rpc10("GetTask", json!({"id": id, "historyLength": 1}))
        .await;
    assert_eq!(got["result"]["id"], id.as_str());
    assert_eq!(got["result"]["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(
        got["result"]["history"].as_array().unwrap().len(),
        1,
        "{got}"
    );
    no_0_3_kinds(&got);

    // Listing: the context's tasks, newest first, without artifacts unless asked.
    let page = s
        .rpc10("ListTasks", json!({"contextId": ctx, "pageSize": 1}))
        .await;
    let result = &page["result"];
    assert_eq!(result["pageSize"], 1);
    assert_eq!(result["totalSize"], 2, "the context's two tasks: {page}");
    assert_eq!(result["tasks"].as_array().unwrap().len(), 1, "{page}");
    assert!(result["tasks"][0].get("artifacts").is_none(), "{page}");
    let token = result["nextPageToken"].as_str().unwrap();
    assert!(!token.is_empty(), "a second page: {page}");
    let next = s
        .rpc10(
            "ListTasks",
            json!({"contextId": ctx, "pageSize": 1, "pageToken": token, "includeArtifacts": true}),
        )
        .await;
    let both: Vec<&str> = [&page, &next]
        .iter()
        .map(|p| p["result"]["tasks"][0]["id"].as_str().unwrap())
        .collect();
    assert_eq!(both, [second.as_str(), id.as_str()]);
    assert!(next["result"]["tasks"][0]["artifacts"].is_array(), "{next}");
    assert_eq!(
        next["result"]["totalSize"], 2,
        "the same on every page: {next}"
    );
    let filtered = s
        .rpc10(
            "ListTasks",
            json!({"contextId": ctx, "status": "TASK_STATE_WORKING"}),
        )
        .await;
    assert_eq!(filtered["result"]["tasks"], json!([]), "{filtered}");
    assert_eq!(filtered["result"]["totalSize"], 0, "{filtered}");
    // 0.3's `tasks/list` does not count: its answer is as before.
    let old = s.rpc_ok("tasks/list", json!({"contextId": ctx})).await;
    assert_eq!(old["tasks"].as_array().unwrap().len(), 2, "{old}");
    assert!(old.get("totalSize").is_none(), "{old}");
    assert_eq!(
        filtered["result"]["nextPageToken"], "",
        "the last page: {filtered}"
    );
    let bad = s
        .rpc10("ListTasks", json!({"status": "TASK_STATE_NOPE"}))
        .await;
    assert_eq!(error_code(&bad), -32602);

    // Errors in 1.0's codes: a finished task cannot be canceled (-32002) or continued
    // (1.0: -32004 UnsupportedOperationError; 0.3: Bindu's -32008).
    assert_eq!(
        error_code(&s.rpc10("CancelTask", json!({"id": id})).await),
        -32002
    );
    let follow = json!({"message": message10_with("more", json!({"taskId": id}))});
    assert_eq!(error_code(&s.rpc10("SendMessage", follow).await), -32004);
    assert_eq!(s.follow_up_err(&id, "more").await, -32008);
    assert_eq!(
        error_code(&s.rpc10("GetTask", json!({"id": "nope"})).await),
        -32001
    );
    let unspecified = json!({"message": {"role": "ROLE_UNSPECIFIED", "messageId": "m", "parts": [{"text": "x"}]}});
    assert_eq!(
        error_code(&s.rpc10("SendMessage", unspecified).await),
        -32602
    );
    let two_contents = json!({"message": {"role": "ROLE_USER", "messageId": "m", "parts": [{"text": "x", "url": "https://x"}]}});
    assert_eq!(
        error_code(&s.rpc10("SendMessage", two_contents).await),
        -32602
    );
}

#[tokio::test]
async fn a_1_0_stream_wraps_each_event_and_ends_with_the_final_state() {
    let s = TestServer::echo().await;
    let events = s
        .open_stream10(
            json!(7),
            "SendStreamingMessage",
            json!({"message": message10("stream me")}),
        )
        .await
        .read_all()
        .await;
    assert!(events.len() >= 2, "{events:?}");
    for e in &events {
        assert_eq!(e["id"], 7);
        no_0_3_kinds(e);
    }
    assert!(
        events[0]["result"]["task"]["id"].is_string(),
        "{:?}",
        events[0]
    );
    let last = &events.last().unwrap()["result"];
    assert_eq!(
        last["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{last}"
    );
    assert!(
        last["statusUpdate"].get("final").is_none(),
        "1.0 has no `final`"
    );
    let text: String = events
        .iter()
        .filter_map(|e| e["result"]["artifactUpdate"]["artifact"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "stream me");
    // A refused stream is one error event in 1.0's codes.
    let events = s
        .open_stream10(json!(8), "SubscribeToTask", json!({"id": "missing"}))
        .await
        .read_all()
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(error_code(&events[0]), -32001);
}

#[tokio::test]
async fn a_task_created_over_1_0_is_streamed_and_canceled_over_0_3() {
    let (gate, h) = Gate::new();
    let s = TestServer::with_handler(h).await;
    let sent = s
        .rpc10(
            "SendMessage",
            json!({"message": message10("slow"), "configuration": {"returnImmediately": true}}),
        )
        .await;
    let id = sent["result"]["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(gate.started().await, id);
    let got = s.get_task(&id).await;
    assert_eq!(got["kind"], "task");
    assert_eq!(
        got["history"][0]["parts"][0],
        json!({"kind": "text", "text": "slow"})
    );
    let mut stream = s
        .open_stream(json!(1), "tasks/resubscribe", json!({"id": id}))
        .await;
    let first = stream.next_event().await.unwrap();
    assert_eq!(first["result"]["kind"], "task", "{first}");
    let canceled = s.rpc_ok("tasks/cancel", json!({"id": id})).await;
    assert_eq!(canceled["status"]["state"], "canceled");
    let rest = stream.read_all().await;
    assert_eq!(
        rest.last().unwrap()["result"]["status"]["state"],
        "canceled",
        "{rest:?}"
    );
    let got = s.rpc10("GetTask", json!({"id": id})).await;
    assert_eq!(got["result"]["status"]["state"], "TASK_STATE_CANCELED");
    gate.release(1);
}

#[tokio::test]
async fn a_task_created_over_0_3_is_subscribed_and_canceled_over_1_0() {
    let (gate, h) = Gate::new();
    let s = TestServer::with_handler(h).await;
    let task = s.send_nonblocking(support::user_message("slow")).await;
    let id = support::task_id(&task);
    assert_eq!(gate.started().await, id);
    let got = s.rpc10("GetTask", json!({"id": id})).await;
    assert_eq!(
        got["result"]["history"][0]["parts"][0],
        json!({"text": "slow"}),
        "{got}"
    );
    let mut stream = s
        .open_stream10(json!("sub"), "SubscribeToTask", json!({"id": id}))
        .await;
    let first = stream.next_event().await.unwrap();
    assert_eq!(first["result"]["task"]["id"], id.as_str(), "{first}");
    let canceled = s.rpc10("CancelTask", json!({"id": id})).await;
    assert_eq!(
        canceled["result"]["status"]["state"], "TASK_STATE_CANCELED",
        "{canceled}"
    );
    let rest = stream.read_all().await;
    let last = &rest.last().unwrap()["result"];
    assert_eq!(
        last["statusUpdate"]["status"]["state"], "TASK_STATE_CANCELED",
        "{rest:?}"
    );
    assert_eq!(s.get_task(&id).await["status"]["state"], "canceled");
    gate.release(1);
}

#[tokio::test]
async fn push_configs_are_created_read_listed_and_deleted_in_1_0_shapes() {
    let s = TestServer::echo().await;
    let task = s.send(support::user_message("hi")).await;
    let id = support::task_id(&task);
    let created = s
        .rpc10(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": id, "url": "https://hooks.example/a", "token": "t",
                   "authentication": {"scheme": "Bearer"}}),
        )
        .await;
    let config = &created["result"];
    assert_eq!(config["taskId"], id.as_str(), "{created}");
    assert_eq!(config["url"], "https://hooks.example/a");
    assert_eq!(config["authentication"]["scheme"], "Bearer");
    let config_id = config["id"].as_str().unwrap().to_string();
    let got = s
        .rpc10(
            "GetTaskPushNotificationConfig",
            json!({"taskId": id, "id": config_id}),
        )
        .await;
    assert_eq!(got["result"], *config);
    // The same config, as 0.3 sees it.
    let old = s
        .rpc_ok("tasks/pushNotificationConfig/list", json!({"id": id}))
        .await;
    assert_eq!(
        old[0]["pushNotificationConfig"]["authentication"]["schemes"],
        json!(["Bearer"])
    );
    let listed = s
        .rpc10("ListTaskPushNotificationConfigs", json!({"taskId": id}))
        .await;
    assert_eq!(listed["result"]["configs"], json!([config]), "{listed}");
    let deleted = s
        .rpc10(
            "DeleteTaskPushNotificationConfig",
            json!({"taskId": id, "id": config_id}),
        )
        .await;
    assert_eq!(deleted["result"], json!({}), "{deleted}");
    let listed = s
        .rpc10("ListTaskPushNotificationConfigs", json!({"taskId": id}))
        .await;
    assert_eq!(listed["result"]["configs"], json!([]));
    let bad_url = json!({"taskId": id, "url": "ftp://x"});
    assert_eq!(
        error_code(&s.rpc10("CreateTaskPushNotificationConfig", bad_url).await),
        -32602
    );
    // No extended card configured on this agent.
    let card = s.rpc10("GetExtendedAgentCard", json!({})).await;
    assert_eq!(error_code(&card), -32007, "{card}");
}
