//! In-process HTTP integration tests: each test starts its own server on a free port of
//! 127.0.0.1 and talks to it over real HTTP.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bindu::schemas::jsonrpc::code;
use bindu::schemas::{Artifact, Part};
use bindu::{HandlerInput, HandlerOutput};
use serde_json::{json, Value};
use support::*;

const PARSE_ERROR: i64 = code::PARSE_ERROR as i64;
const INVALID_REQUEST: i64 = code::INVALID_REQUEST as i64;
const METHOD_NOT_FOUND: i64 = code::METHOD_NOT_FOUND as i64;
const INVALID_PARAMS: i64 = code::INVALID_PARAMS as i64;
const TASK_NOT_FOUND: i64 = code::TASK_NOT_FOUND as i64;
const TASK_NOT_CANCELABLE: i64 = code::TASK_NOT_CANCELABLE as i64;
const UNSUPPORTED_OPERATION: i64 = code::UNSUPPORTED_OPERATION as i64;
const EXTENDED_CARD_NOT_CONFIGURED: i64 = code::EXTENDED_CARD_NOT_CONFIGURED as i64;
const TASK_IMMUTABLE: i64 = code::TASK_IMMUTABLE as i64;
const CONTEXT_NOT_FOUND: i64 = code::CONTEXT_NOT_FOUND as i64;

fn state(task: &Value) -> &str {
    task["status"]["state"].as_str().unwrap_or_default()
}

fn task_id(task: &Value) -> String {
    task["id"].as_str().unwrap().to_string()
}

/// Posts `body` and asserts HTTP 200, the error `code` and the echoed `id`.
async fn expect_error(srv: &TestServer, body: &str, code: i64, id: Value) {
    let (status, resp) = srv.raw_post(body).await;
    assert_eq!(status, 200, "HTTP status for {body}: {resp}");
    assert_eq!(resp["jsonrpc"], "2.0", "{body}: {resp}");
    assert_eq!(error_code(&resp), code, "code for {body}: {resp}");
    assert_eq!(resp["id"], id, "id for {body}: {resp}");
    assert!(resp.get("result").is_none(), "{body}: {resp}");
}

fn send_body(id: Value, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "message/send", "params": params}).to_string()
}

// ---- 1. validation order and id echo --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_parse_error_with_null_id() {
    let srv = TestServer::echo().await;
    expect_error(&srv, "{not json", PARSE_ERROR, Value::Null).await;
    expect_error(
        &srv,
        r#"{"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{"id":"x"}"#,
        PARSE_ERROR,
        Value::Null,
    )
    .await;
    expect_error(&srv, "", PARSE_ERROR, Value::Null).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_errors_are_invalid_request() {
    let srv = TestServer::echo().await;
    // Batches are not supported.
    expect_error(
        &srv,
        r#"[{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"id":"x"}}]"#,
        INVALID_REQUEST,
        Value::Null,
    )
    .await;
    // Wrong or missing version: the id is echoed.
    expect_error(
        &srv,
        r#"{"jsonrpc":"1.0","id":7,"method":"tasks/get","params":{"id":"x"}}"#,
        INVALID_REQUEST,
        json!(7),
    )
    .await;
    expect_error(
        &srv,
        r#"{"id":"v","method":"tasks/get","params":{"id":"x"}}"#,
        INVALID_REQUEST,
        json!("v"),
    )
    .await;
    // Missing or non-string method.
    expect_error(
        &srv,
        r#"{"jsonrpc":"2.0","id":"m","params":{"id":"x"}}"#,
        INVALID_REQUEST,
        json!("m"),
    )
    .await;
    expect_error(
        &srv,
        r#"{"jsonrpc":"2.0","id":"m5","method":5}"#,
        INVALID_REQUEST,
        json!("m5"),
    )
    .await;
    // Ids that are neither string, number nor null.
    for bad_id in [r#"{"a":1}"#, "true", "false", "[1]"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{bad_id},"method":"tasks/get"}}"#);
        expect_error(&srv, &body, INVALID_REQUEST, Value::Null).await;
    }
    // Not an object at all.
    expect_error(&srv, "42", INVALID_REQUEST, Value::Null).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_echo_the_id() {
    let srv = TestServer::echo().await;
    expect_error(
        &srv,
        r#"{"jsonrpc":"2.0","id":"abc-1","method":"tasks/explode","params":{}}"#,
        METHOD_NOT_FOUND,
        json!("abc-1"),
    )
    .await;
    expect_error(
        &srv,
        r#"{"jsonrpc":"2.0","id":42,"method":"tasks/explode"}"#,
        METHOD_NOT_FOUND,
        json!(42),
    )
    .await;
    // No id (a notification) still gets an error reply, with id null.
    expect_error(
        &srv,
        r#"{"jsonrpc":"2.0","method":"tasks/explode"}"#,
        METHOD_NOT_FOUND,
        Value::Null,
    )
    .await;
    expect_error(
        &srv,
        r#"{"jsonrpc":"2.0","id":null,"method":"tasks/explode"}"#,
        METHOD_NOT_FOUND,
        Value::Null,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_run_in_order_envelope_method_params() {
    let srv = TestServer::echo().await;
    // A bad envelope wins over an unknown method.
    expect_error(
        &srv,
        r#"{"jsonrpc":"1.0","id":1,"method":"tasks/explode"}"#,
        INVALID_REQUEST,
        json!(1),
    )
    .await;
    // An unknown method wins over bad params.
    expect_error(
        &srv,
        r#"{"jsonrpc":"2.0","id":2,"method":"tasks/explode","params":[1]}"#,
        METHOD_NOT_FOUND,
        json!(2),
    )
    .await;
    // Bad params are checked before the method runs (the task does not exist either).
    expect_error(
        &srv,
        r#"{"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{"id":"nope","historyLength":-1}}"#,
        INVALID_PARAMS,
        json!(3),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_params_are_rejected() {
    let srv = TestServer::echo().await;
    let text_part = json!({"kind": "text", "text": "hi"});
    let msg = |parts: Value, role: &str| json!({"role": role, "parts": parts, "messageId": unique("m"), "kind": "message"});
    let cases: Vec<(&str, String)> = vec![
        (
            "missing params",
            r#"{"jsonrpc":"2.0","id":"p","method":"message/send"}"#.to_string(),
        ),
        (
            "params array",
            r#"{"jsonrpc":"2.0","id":"p","method":"message/send","params":[{"message":{}}]}"#
                .to_string(),
        ),
        ("params without message", send_body(json!("p"), json!({}))),
        (
            "part without kind",
            send_body(
                json!("p"),
                json!({"message": msg(json!([{"text": "hi"}]), "user")}),
            ),
        ),
        (
            "part with unknown kind",
            send_body(
                json!("p"),
                json!({"message": msg(json!([{"kind": "video", "text": "hi"}]), "user")}),
            ),
        ),
        (
            "empty parts",
            send_body(json!("p"), json!({"message": msg(json!([]), "user")})),
        ),
        (
            "role system",
            send_body(
                json!("p"),
                json!({"message": msg(json!([text_part.clone()]), "system")}),
            ),
        ),
        (
            "negative historyLength on message/send",
            send_body(
                json!("p"),
                json!({
                    "message": msg(json!([text_part.clone()]), "user"),
                    "configuration": {"historyLength": -1},
                }),
            ),
        ),
        (
            "file part with bytes and uri",
            send_body(
                json!("p"),
                json!({"message": msg(json!([{
                    "kind": "file",
                    "file": {"bytes": "aGk=", "uri": "https://example.com/f.txt", "name": "f.txt"},
                }]), "user")}),
            ),
        ),
        (
            "file part with neither bytes nor uri",
            send_body(
                json!("p"),
                json!({"message": msg(json!([{"kind": "file", "file": {"name": "f"}}]), "user")}),
            ),
        ),
        (
            "negative historyLength on tasks/get",
            r#"{"jsonrpc":"2.0","id":"p","method":"tasks/get","params":{"id":"t","historyLength":-3}}"#
                .to_string(),
        ),
        (
            "tasks/get without id",
            r#"{"jsonrpc":"2.0","id":"p","method":"tasks/get","params":{}}"#.to_string(),
        ),
    ];
    for (what, body) in cases {
        let (status, resp) = srv.raw_post(&body).await;
        assert_eq!(status, 200, "{what}: HTTP status");
        assert_eq!(error_code(&resp), INVALID_PARAMS, "{what}: {resp}");
        assert_eq!(resp["id"], "p", "{what}: id echo; {resp}");
    }
    // Nothing above created a task.
    let list = srv.rpc_ok("tasks/list", json!({})).await;
    assert_eq!(list["tasks"], json!([]), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_accepted_everywhere() {
    let srv = TestServer::echo().await;
    let body = json!({
        "jsonrpc": "2.0",
        "id": "x",
        "method": "message/send",
        "extraEnvelope": {"nested": [1, 2]},
        "params": {
            "extraParams": true,
            "message": {
                "role": "user",
                "parts": [{"kind": "text", "text": "extras", "extraPart": 1}],
                "messageId": unique("m"),
                "kind": "message",
                "extraMessage": "yes",
            },
            "configuration": {"blocking": true, "extraConfig": null},
            "metadata": {"anything": {"goes": 1}},
        },
    });
    let (status, resp) = srv.raw_post(&body.to_string()).await;
    assert_eq!(status, 200);
    assert!(resp.get("error").is_none(), "{resp}");
    assert_eq!(resp["id"], "x");
    let task = &resp["result"];
    assert_eq!(state(task), "completed", "{task}");
    assert_eq!(first_text(&task["artifacts"][0]), "extras");

    let id = task_id(task);
    let got = srv
        .rpc_ok(
            "tasks/get",
            json!({"id": id, "unknownField": [1], "metadata": {"k": "v"}}),
        )
        .await;
    assert_eq!(got["id"], json!(id));
}

// ---- 2. snake_case input, camelCase output --------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snake_case_input_is_accepted_and_output_is_camel_case() {
    let srv = TestServer::echo().await;
    let first = srv.send(user_message("first")).await;
    let first_id = task_id(&first);

    let tid = unique("snake-task");
    let cid = unique("snake-ctx");
    let msg = json!({
        "role": "user",
        "parts": [{"kind": "text", "text": "snake"}],
        "message_id": unique("snake-msg"),
        "task_id": tid,
        "context_id": cid,
        "reference_task_ids": [first_id],
    });
    let task = srv
        .rpc_ok(
            "message/send",
            json!({"message": msg, "configuration": {"history_length": 1}}),
        )
        .await;
    assert_eq!(task["id"], json!(tid), "{task}");
    assert_eq!(task["contextId"], json!(cid), "{task}");
    assert!(task.get("context_id").is_none(), "{task}");
    assert_eq!(state(&task), "completed");
    let history = task["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "history_length honoured: {task}");
    assert!(history[0].get("messageId").is_some(), "{task}");
    assert!(history[0].get("message_id").is_none(), "{task}");
    let artifact = &task["artifacts"][0];
    assert!(artifact.get("artifactId").is_some(), "{task}");
    assert!(artifact.get("artifact_id").is_none(), "{task}");

    // The stored user message keeps its references, in camelCase.
    let full = srv.get_task(&tid).await;
    let user = &full["history"][0];
    assert_eq!(user["referenceTaskIds"], json!([first_id]), "{full}");
    assert_eq!(user["taskId"], json!(tid));
    assert_eq!(user["contextId"], json!(cid));

    // tasks/get with history_length and task_id.
    let got = srv
        .rpc_ok("tasks/get", json!({"task_id": tid, "history_length": 1}))
        .await;
    assert_eq!(got["history"].as_array().unwrap().len(), 1, "{got}");
}

// ---- 3. body limit --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_with_413() {
    let srv = TestServer::start(
        &[("server.max_body_bytes", "4096")],
        Arc::new(bindu::EchoHandler::default()),
    )
    .await;
    // Under the limit: served.
    let small = srv.send(user_message(&"s".repeat(2000))).await;
    assert_eq!(state(&small), "completed");

    let big = send_body(
        json!(1),
        json!({"message": user_message(&"x".repeat(10 * 1024))}),
    );
    let (status, resp) = srv.raw_post(&big).await;
    assert_eq!(status, 413, "{resp}");
    assert_eq!(error_code(&resp), INVALID_REQUEST, "{resp}");
    assert_eq!(resp["id"], Value::Null, "{resp}");
}

/// POSTs a chunked body (no content-length) made of `chunks` on a fresh connection.
async fn post_chunked(
    srv: &TestServer,
    chunks: Vec<Vec<u8>>,
) -> Result<reqwest::Response, reqwest::Error> {
    let items: Vec<Result<Vec<u8>, std::io::Error>> = chunks.into_iter().map(Ok).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(items));
    // A fresh client: a connection that carried a refused body is never reused.
    within(
        "chunked POST",
        client()
            .post(srv.url())
            .header("content-type", "application/json")
            .body(body)
            .send(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_refused_with_413() {
    let srv = TestServer::start(
        &[("server.max_body_bytes", "4096")],
        Arc::new(bindu::EchoHandler::default()),
    )
    .await;
    // One 10 KB chunk, so the whole body is on the wire before the server answers.
    let resp = post_chunked(&srv, vec![vec![b' '; 10 * 1024]])
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let v: Value = within("413 body", resp.json()).await.unwrap();
    assert_eq!(error_code(&v), INVALID_REQUEST, "{v}");
    assert_eq!(v["id"], Value::Null);

    // A chunked body under the limit is read normally.
    let ok_body = send_body(json!("c"), json!({"message": user_message("chunked")}));
    let chunks: Vec<Vec<u8>> = ok_body.as_bytes().chunks(50).map(<[u8]>::to_vec).collect();
    let resp = post_chunked(&srv, chunks).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = within("body", resp.json()).await.unwrap();
    assert_eq!(state(&v["result"]), "completed", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_large_chunked_body_over_the_limit_gets_the_413_reply() {
    let srv = TestServer::start(
        &[("server.max_body_bytes", "4096")],
        Arc::new(bindu::EchoHandler::default()),
    )
    .await;
    for attempt in 0..10 {
        // 1 MiB in 64 KiB chunks: far more than the socket buffers hold.
        let resp = post_chunked(&srv, vec![vec![b' '; 64 * 1024]; 16])
            .await
            .unwrap_or_else(|e| panic!("attempt {attempt}: no HTTP reply: {e:?}"));
        assert_eq!(resp.status().as_u16(), 413, "attempt {attempt}");
        let v: Value = within("413 body", resp.json()).await.unwrap();
        assert_eq!(error_code(&v), INVALID_REQUEST, "{v}");
    }
}

// ---- 4. message/send blocking ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_send_returns_the_completed_task() {
    let srv = TestServer::echo().await;
    let msg = user_message("hello bindu");
    let msg_id = msg["messageId"].clone();
    let task = srv.send(msg).await;
    assert_eq!(task["kind"], "task");
    assert_eq!(state(&task), "completed", "{task}");
    let tid = task_id(&task);
    let cid = task["contextId"].as_str().unwrap();
    assert!(!tid.is_empty() && !cid.is_empty(), "server-generated ids");
    assert_ne!(tid, cid);

    let artifacts = task["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{task}");
    assert_eq!(first_text(&artifacts[0]), "hello bindu");

    let history = task["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{task}");
    assert_eq!(history[0]["role"], "user");
    assert_eq!(history[0]["messageId"], msg_id);
    assert_eq!(first_text(&history[0]), "hello bindu");
    assert_eq!(history[1]["role"], "agent");
    assert_eq!(first_text(&history[1]), "hello bindu");
    assert_ne!(history[1]["messageId"], msg_id);

    // A second task gets different ids.
    let other = srv.send(user_message("again")).await;
    assert_ne!(other["id"], task["id"]);
    assert_ne!(other["contextId"], task["contextId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_length_trims_the_returned_history() {
    let srv = TestServer::echo().await;
    let one = srv
        .rpc_ok(
            "message/send",
            json!({"message": user_message("h1"), "configuration": {"historyLength": 1}}),
        )
        .await;
    let h = one["history"].as_array().unwrap();
    assert_eq!(h.len(), 1, "{one}");
    assert_eq!(h[0]["role"], "agent", "the most recent message is kept");

    let zero = srv
        .rpc_ok(
            "message/send",
            json!({"message": user_message("h0"), "configuration": {"historyLength": 0}}),
        )
        .await;
    assert_eq!(state(&zero), "completed");
    assert!(zero.get("history").is_none(), "{zero}");

    // The store keeps everything; only the reply was trimmed.
    let full = srv.get_task(&task_id(&zero)).await;
    assert_eq!(full["history"].as_array().unwrap().len(), 2, "{full}");
    let trimmed = srv
        .rpc_ok(
            "tasks/get",
            json!({"id": task_id(&zero), "historyLength": 0}),
        )
        .await;
    assert!(trimmed.get("history").is_none(), "{trimmed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_task_and_context_ids_are_honoured() {
    let srv = TestServer::echo().await;
    let tid = unique("client-task");
    let cid = unique("client-ctx");
    let task = srv
        .send(user_message_with(
            "mine",
            json!({"taskId": tid, "contextId": cid}),
        ))
        .await;
    assert_eq!(task["id"], json!(tid), "{task}");
    assert_eq!(task["contextId"], json!(cid), "{task}");
    assert_eq!(state(&task), "completed");

    // A second, new task in the same context.
    let second = srv
        .send(user_message_with("also mine", json!({"contextId": cid})))
        .await;
    assert_eq!(second["contextId"], json!(cid));
    assert_ne!(second["id"], json!(tid));

    let contexts = srv.rpc_ok("contexts/list", json!({})).await;
    let ctx = contexts["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["contextId"] == json!(cid))
        .unwrap_or_else(|| panic!("context {cid} not listed: {contexts}"))
        .clone();
    assert_eq!(ctx["taskCount"], 2, "{ctx}");
    let ids: Vec<&Value> = ctx["taskIds"].as_array().unwrap().iter().collect();
    assert!(ids.contains(&&json!(tid)), "{ctx}");
    assert!(ids.contains(&&second["id"]), "{ctx}");

    // tasks/list can filter on the context.
    let list = srv.rpc_ok("tasks/list", json!({"contextId": cid})).await;
    assert_eq!(list["tasks"].as_array().unwrap().len(), 2, "{list}");
}

// ---- 5. non-blocking ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_blocking_send_returns_at_once_and_completes_later() {
    let (gate, h) = Gate::new();
    let srv = TestServer::with_handler(h).await;
    let task = srv.send_nonblocking(user_message("later")).await;
    assert!(["submitted", "working"].contains(&state(&task)), "{task}");
    let tid = task_id(&task);
    assert_eq!(gate.started().await, tid);
    // Still running while the gate is closed: `working` is announced as an event, and the
    // store records the run with its outcome, so a read still finds the task as accepted.
    let running = srv.get_task(&tid).await;
    assert_eq!(state(&running), "submitted", "{running}");
    gate.release(1);
    let done = srv.wait_for_state(&tid, "completed").await;
    assert_eq!(first_text(&done["artifacts"][0]), "released");
}

// ---- 6. follow-ups and immutability ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_resumes_an_input_required_task_then_it_is_immutable() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let h = handler(move |input: HandlerInput| {
        let counter = counter.clone();
        async move {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                return Ok(HandlerOutput::InputRequired("Which city?".into()));
            }
            let city = input
                .last_user_message()
                .map(|m| m.text())
                .unwrap_or_default();
            Ok(HandlerOutput::Text(format!(
                "Sunny in {city} ({} messages)",
                input.history.len()
            )))
        }
    });
    let srv = TestServer::with_handler(h).await;

    let first_msg = user_message("What's the weather?");
    let first_id = first_msg["messageId"].clone();
    let paused = srv.send(first_msg).await;
    assert_eq!(state(&paused), "input-required", "{paused}");
    assert_eq!(first_text(&paused["status"]["message"]), "Which city?");
    assert_eq!(paused["status"]["message"]["role"], "agent");
    assert!(paused.get("artifacts").is_none(), "{paused}");
    let tid = task_id(&paused);
    let cid = paused["contextId"].clone();

    let follow = user_message_with("Paris", json!({"taskId": tid}));
    let follow_id = follow["messageId"].clone();
    let done = srv.send(follow).await;
    assert_eq!(done["id"], json!(tid));
    assert_eq!(done["contextId"], cid);
    assert_eq!(state(&done), "completed", "{done}");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        first_text(&done["artifacts"][0]),
        "Sunny in Paris (3 messages)"
    );
    let history = done["history"].as_array().unwrap();
    let summary: Vec<(&str, &str)> = history
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), first_text(m)))
        .collect();
    assert_eq!(
        summary,
        [
            ("user", "What's the weather?"),
            ("agent", "Which city?"),
            ("user", "Paris"),
            ("agent", "Sunny in Paris (3 messages)"),
        ],
        "{done}"
    );
    assert_eq!(history[0]["messageId"], first_id);
    assert_eq!(history[2]["messageId"], follow_id);

    // The task is completed: no more messages.
    let code = srv
        .rpc_err(
            "message/send",
            json!({"message": user_message_with("one more", json!({"taskId": tid}))}),
        )
        .await;
    assert_eq!(code, TASK_IMMUTABLE);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "no third run");
    let after = srv.get_task(&tid).await;
    assert_eq!(after["history"].as_array().unwrap().len(), 4, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_for_a_running_task_is_invalid_params() {
    let (gate, h) = Gate::new();
    let srv = TestServer::with_handler(h).await;
    let tid = unique("busy");
    srv.send_nonblocking(user_message_with("work", json!({"taskId": tid})))
        .await;
    assert_eq!(gate.started().await, tid);
    let code = srv
        .rpc_err(
            "message/send",
            json!({"message": user_message_with("interrupt", json!({"taskId": tid}))}),
        )
        .await;
    assert_eq!(code, INVALID_PARAMS);
    gate.release(1);
    let done = srv.wait_for_state(&tid, "completed").await;
    assert_eq!(
        done["history"].as_array().unwrap().len(),
        2,
        "the refused message was not recorded: {done}"
    );
}

// ---- 7. handler outcomes --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_rejections_and_panics_end_the_task() {
    let h = handler(|input: HandlerInput| async move {
        let text = input
            .last_user_message()
            .map(|m| m.text())
            .unwrap_or_default();
        match text.as_str() {
            "fail" => Err("boom: upstream model unavailable".into()),
            "reject" => Ok(HandlerOutput::Rejected("not my job".into())),
            "panic" => panic!("handler panicked on purpose"),
            _ => Ok(HandlerOutput::Text(format!("ok: {text}"))),
        }
    });
    let srv = TestServer::with_handler(h).await;

    let failed = srv.send(user_message("fail")).await;
    assert_eq!(state(&failed), "failed", "{failed}");
    let reason = first_text(&failed["status"]["message"]);
    assert!(
        reason.contains("boom: upstream model unavailable"),
        "{failed}"
    );
    assert!(failed.get("artifacts").is_none(), "{failed}");

    let rejected = srv.send(user_message("reject")).await;
    assert_eq!(state(&rejected), "rejected", "{rejected}");
    assert!(first_text(&rejected["status"]["message"]).contains("not my job"));

    let panicked = srv.send(user_message("panic")).await;
    assert_eq!(state(&panicked), "failed", "{panicked}");

    // The server is still serving, and the worker pool still runs handlers.
    let fine = srv.send(user_message("fine")).await;
    assert_eq!(state(&fine), "completed");
    assert_eq!(first_text(&fine["artifacts"][0]), "ok: fine");
    // Terminal failures are immutable too.
    let code = srv
        .rpc_err(
            "message/send",
            json!({"message": user_message_with("retry", json!({"taskId": task_id(&failed)}))}),
        )
        .await;
    assert_eq!(code, TASK_IMMUTABLE);
}

// ---- 8. referenceTaskIds --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referenced_tasks_reach_the_handler() {
    let h = handler(|input: HandlerInput| async move {
        let first = input.references.first();
        Ok(HandlerOutput::Text(format!(
            "{}|{}|{}",
            input.references.len(),
            first.map(|t| t.id.clone()).unwrap_or_default(),
            first
                .and_then(|t| t.artifacts.as_ref())
                .map_or(0, |a| a.len()),
        )))
    });
    let srv = TestServer::with_handler(h).await;
    let first = srv.send(user_message("base")).await;
    assert_eq!(first_text(&first["artifacts"][0]), "0||0");
    let first_id = task_id(&first);

    let second = srv
        .send(user_message_with(
            "build on it",
            json!({"contextId": first["contextId"], "referenceTaskIds": [first_id, "no-such-task"]}),
        ))
        .await;
    assert_eq!(state(&second), "completed");
    assert_eq!(
        first_text(&second["artifacts"][0]),
        format!("1|{first_id}|1"),
        "{second}"
    );
}

// ---- 9. message/stream ----------------------------------------------------------------

fn assert_stream_envelopes(events: &[Value], id: &Value) {
    assert!(!events.is_empty());
    for e in events {
        assert_eq!(e["jsonrpc"], "2.0", "{e}");
        assert_eq!(&e["id"], id, "{e}");
        assert!(e.get("result").is_some() && e.get("error").is_none(), "{e}");
    }
    let finals: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["result"]["final"] == true)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        finals,
        [events.len() - 1],
        "exactly one final event, the last"
    );
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let r = &e["result"];
            let kind = r["kind"].as_str().unwrap_or("?");
            match kind {
                "task" | "status-update" => format!("{kind}:{}", state(r)),
                other => other.to_string(),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_stream_sends_the_task_then_updates_until_final() {
    let srv = TestServer::echo().await;
    let id = json!("stream-req-1");
    let reader = srv
        .open_stream(
            id.clone(),
            "message/stream",
            json!({"message": user_message("stream me")}),
        )
        .await;
    assert!(reader.content_type.starts_with("text/event-stream"));
    let events = reader.read_all().await;
    assert_stream_envelopes(&events, &id);
    assert_eq!(
        kinds(&events),
        [
            "task:submitted",
            "status-update:working",
            "artifact-update",
            "status-update:completed"
        ],
        "{events:#?}"
    );
    let task = &events[0]["result"];
    let tid = task_id(task);
    for e in &events[1..] {
        assert_eq!(e["result"]["taskId"], json!(tid), "{e}");
        assert_eq!(e["result"]["contextId"], task["contextId"], "{e}");
    }
    assert_eq!(first_text(&events[2]["result"]["artifact"]), "stream me");
    let done = srv.get_task(&tid).await;
    assert_eq!(state(&done), "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_artifact_chunks_arrive_in_order_and_merge_into_one_artifact() {
    let h = handler(|input: HandlerInput| async move {
        for (i, text) in ["a", "b", "c"].into_iter().enumerate() {
            let artifact = Artifact {
                artifact_id: "story".into(),
                parts: vec![Part::text(text)],
                name: Some("story".into()),
                description: None,
                metadata: None,
                extensions: None,
            };
            input
                .emitter
                .artifact_chunk(artifact, i > 0, i == 2)
                .await?;
        }
        Ok(HandlerOutput::Streamed)
    });
    let srv = TestServer::with_handler(h).await;
    let id = json!(99);
    let events = srv
        .stream_message(id.clone(), user_message("tell me"))
        .await;
    assert_stream_envelopes(&events, &id);
    assert_eq!(
        kinds(&events),
        [
            "task:submitted",
            "status-update:working",
            "artifact-update",
            "artifact-update",
            "artifact-update",
            "status-update:completed"
        ],
        "{events:#?}"
    );
    let chunks: Vec<(String, Value, Value)> = events[2..5]
        .iter()
        .map(|e| {
            let r = &e["result"];
            (
                first_text(&r["artifact"]).to_string(),
                r["append"].clone(),
                r["lastChunk"].clone(),
            )
        })
        .collect();
    assert_eq!(
        chunks,
        [
            ("a".to_string(), json!(false), json!(false)),
            ("b".to_string(), json!(true), json!(false)),
            ("c".to_string(), json!(true), json!(true)),
        ]
    );
    let task = srv.get_task(&task_id(&events[0]["result"])).await;
    let artifacts = task["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{task}");
    assert_eq!(artifacts[0]["artifactId"], "story");
    let texts: Vec<&str> = artifacts[0]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_for_an_input_required_task_ends_with_that_state() {
    let h = handler(|_input: HandlerInput| async move {
        Ok(HandlerOutput::InputRequired("Which city?".into()))
    });
    let srv = TestServer::with_handler(h).await;
    let id = json!("ir");
    let events = srv
        .stream_message(id.clone(), user_message("weather"))
        .await;
    assert_stream_envelopes(&events, &id);
    assert_eq!(
        kinds(&events),
        [
            "task:submitted",
            "status-update:working",
            "status-update:input-required"
        ]
    );
    let last = &events[events.len() - 1]["result"];
    assert_eq!(last["final"], true);
    assert_eq!(first_text(&last["status"]["message"]), "Which city?");
}

// ---- 10. client disconnect ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_does_not_cancel_the_task() {
    // The handler runs until the test releases it, so the drop happens mid-run by
    // construction; it notes a cancel if one reaches it.
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let canceled = Arc::new(AtomicBool::new(false));
    let h = {
        let (release, canceled) = (release.clone(), canceled.clone());
        handler(move |input: HandlerInput| {
            let (release, canceled) = (release.clone(), canceled.clone());
            async move {
                tokio::select! {
                    permit = release.acquire() => drop(permit),
                    _ = input.cancel.cancelled() => {
                        canceled.store(true, Ordering::SeqCst);
                        return Err("canceled".into());
                    }
                }
                let text = input
                    .last_user_message()
                    .map(|m| m.text())
                    .unwrap_or_default();
                Ok(HandlerOutput::Text(format!("done: {text}")))
            }
        })
    };
    let srv = TestServer::with_handler(h).await;
    let mut reader = srv
        .open_stream(
            json!(1),
            "message/stream",
            json!({"message": user_message("walk away")}),
        )
        .await;
    let first = reader.next_event().await.unwrap();
    assert_eq!(first["result"]["kind"], "task");
    let tid = task_id(&first["result"]);
    assert_eq!(
        server_connections(srv.addr.port()),
        1,
        "the stream's connection"
    );
    drop(reader);
    // The server noticed: it closed its side of the stream's connection (bounded wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server_connections(srv.addr.port()) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never closed the dropped stream's connection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(state(&srv.get_task(&tid).await), "submitted");
    release.add_permits(1);
    let done = srv.wait_for_state(&tid, "completed").await;
    assert_eq!(first_text(&done["artifacts"][0]), "done: walk away");
    assert!(!canceled.load(Ordering::SeqCst), "the handler was canceled");
}

/// Open TCP connections whose server side is local port `port` on 127.0.0.1 (established,
/// or closed by the peer and not yet by the server), from `/proc/net/tcp`.
fn server_connections(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().unwrap();
            // 01 ESTABLISHED, 08 CLOSE_WAIT.
            u16::from_str_radix(local_port, 16).unwrap() == port
                && (fields[3] == "01" || fields[3] == "08")
        })
        .count()
}

// ---- 11. tasks/get, tasks/cancel, tasks/resubscribe -----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tasks_are_not_found() {
    let srv = TestServer::echo().await;
    for method in ["tasks/get", "tasks/cancel", "tasks/resubscribe"] {
        let code = srv.rpc_err(method, json!({"id": "no-such-task"})).await;
        assert_eq!(code, TASK_NOT_FOUND, "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_tasks_cannot_be_canceled_or_resubscribed() {
    let srv = TestServer::echo().await;
    let task = srv.send(user_message("quick")).await;
    let tid = task_id(&task);
    assert_eq!(
        srv.rpc_err("tasks/cancel", json!({"id": tid})).await,
        TASK_NOT_CANCELABLE
    );
    assert_eq!(
        srv.rpc_err("tasks/resubscribe", json!({"id": tid})).await,
        UNSUPPORTED_OPERATION
    );
    assert_eq!(state(&srv.get_task(&tid).await), "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_running_task_interrupts_its_handler() {
    let observed = Arc::new(AtomicBool::new(false));
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let flag = observed.clone();
    let h = handler(move |input: HandlerInput| {
        let flag = flag.clone();
        let started = started_tx.clone();
        async move {
            // The pool aborts the run after a grace period, so the observer lives in its own
            // task: it sees the token whether or not the handler future is polled again.
            let token = input.cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = token.cancelled() => flag.store(true, Ordering::SeqCst),
                    _ = tokio::time::sleep(TIMEOUT) => {}
                }
            });
            let _ = started.send(input.task_id.clone());
            tokio::time::sleep(Duration::from_millis(1000)).await;
            Ok(HandlerOutput::Text("finished anyway".into()))
        }
    });
    let srv = TestServer::with_handler(h).await;
    let task = srv.send_nonblocking(user_message("long job")).await;
    let tid = task_id(&task);
    let started = within("the handler to start", started_rx.recv())
        .await
        .unwrap();
    assert_eq!(started, tid);

    let canceled = srv.rpc_ok("tasks/cancel", json!({"id": tid})).await;
    assert_eq!(canceled["id"], json!(tid));
    assert_eq!(state(&canceled), "canceled", "{canceled}");

    within("the handler to see the cancellation", async {
        for _ in 0..1000 {
            if observed.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("input.cancel never fired");
    })
    .await;

    // Past the point where the handler would have returned: still canceled, no artifact.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let later = srv.get_task(&tid).await;
    assert_eq!(state(&later), "canceled", "{later}");
    assert!(later.get("artifacts").is_none(), "{later}");
    assert_eq!(
        srv.rpc_err("tasks/cancel", json!({"id": tid})).await,
        TASK_NOT_CANCELABLE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_can_clean_up_when_canceled() {
    let cleaned = Arc::new(AtomicBool::new(false));
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let flag = cleaned.clone();
    let h = handler(move |input: HandlerInput| {
        let flag = flag.clone();
        let started = started_tx.clone();
        async move {
            let _ = started.send(input.task_id.clone());
            tokio::select! {
                // Inside the handler itself: the pool grants a grace period before aborting.
                _ = input.cancel.cancelled() => {
                    flag.store(true, Ordering::SeqCst);
                    Ok(HandlerOutput::Text("cleaned up".into()))
                }
                _ = tokio::time::sleep(TIMEOUT) => Ok(HandlerOutput::Text("too late".into())),
            }
        }
    });
    let srv = TestServer::with_handler(h).await;
    let task = srv.send_nonblocking(user_message("cleanup")).await;
    let tid = task_id(&task);
    within("the handler to start", started_rx.recv())
        .await
        .unwrap();
    let canceled = srv.rpc_ok("tasks/cancel", json!({"id": tid})).await;
    assert_eq!(state(&canceled), "canceled", "{canceled}");
    within("the handler's cancel branch", async {
        for _ in 0..1000 {
            if cleaned.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the handler's cancel branch never ran");
    })
    .await;
    // Its late result does not overwrite the cancellation.
    let later = srv.get_task(&tid).await;
    assert_eq!(state(&later), "canceled", "{later}");
    assert!(later.get("artifacts").is_none(), "{later}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_an_input_required_task() {
    let h =
        handler(
            |_input: HandlerInput| async move { Ok(HandlerOutput::InputRequired("more?".into())) },
        );
    let srv = TestServer::with_handler(h).await;
    let task = srv.send(user_message("start")).await;
    assert_eq!(state(&task), "input-required");
    let tid = task_id(&task);
    let canceled = srv.rpc_ok("tasks/cancel", json!({"id": tid})).await;
    assert_eq!(state(&canceled), "canceled");
    let code = srv
        .rpc_err(
            "message/send",
            json!({"message": user_message_with("more", json!({"taskId": tid}))}),
        )
        .await;
    assert_eq!(code, TASK_IMMUTABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribing_to_a_running_task_streams_the_rest() {
    let (gate, h) = Gate::new();
    let srv = TestServer::with_handler(h).await;
    let task = srv.send_nonblocking(user_message("watch me")).await;
    let tid = task_id(&task);
    assert_eq!(gate.started().await, tid);

    let id = json!("resub");
    let mut reader = srv
        .open_stream(id.clone(), "tasks/resubscribe", json!({"id": tid}))
        .await;
    let first = reader.next_event().await.unwrap();
    assert_eq!(first["id"], id);
    assert_eq!(first["result"]["kind"], "task", "{first}");
    assert_eq!(first["result"]["id"], json!(tid));
    // The snapshot is the task as stored (the run is recorded with its outcome).
    assert_eq!(state(&first["result"]), "submitted", "{first}");

    gate.release(1);
    let mut events = vec![first];
    events.extend(reader.read_all().await);
    assert_stream_envelopes(&events, &id);
    assert_eq!(
        kinds(&events),
        [
            "task:submitted",
            "artifact-update",
            "status-update:completed"
        ],
        "{events:#?}"
    );
    assert_eq!(first_text(&events[1]["result"]["artifact"]), "released");
}

// ---- 12. push notification configs ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_notification_configs_can_be_set_read_listed_and_deleted() {
    let srv = TestServer::echo().await;
    let tid = task_id(&srv.send(user_message("push")).await);

    let none = srv
        .rpc_ok("tasks/pushNotificationConfig/list", json!({"id": tid}))
        .await;
    assert_eq!(none, json!([]));

    let first = srv
        .rpc_ok(
            "tasks/pushNotificationConfig/set",
            json!({"taskId": tid, "pushNotificationConfig": {"url": "http://127.0.0.1:9/hook", "token": "t1"}}),
        )
        .await;
    assert_eq!(first["taskId"], json!(tid));
    let first_cfg_id = first["pushNotificationConfig"]["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("an id is assigned: {first}"))
        .to_string();
    assert_eq!(
        first["pushNotificationConfig"]["url"],
        "http://127.0.0.1:9/hook"
    );

    let second = srv
        .rpc_ok(
            "tasks/pushNotificationConfig/set",
            json!({"taskId": tid, "pushNotificationConfig": {"id": "cfg-2", "url": "https://example.com/webhook"}}),
        )
        .await;
    assert_eq!(second["pushNotificationConfig"]["id"], "cfg-2");

    let by_id = srv
        .rpc_ok(
            "tasks/pushNotificationConfig/get",
            json!({"id": tid, "pushNotificationConfigId": "cfg-2"}),
        )
        .await;
    assert_eq!(by_id["taskId"], json!(tid));
    assert_eq!(
        by_id["pushNotificationConfig"]["url"],
        "https://example.com/webhook"
    );
    let any = srv
        .rpc_ok("tasks/pushNotificationConfig/get", json!({"id": tid}))
        .await;
    assert!(
        [json!(first_cfg_id), json!("cfg-2")].contains(&any["pushNotificationConfig"]["id"]),
        "{any}"
    );

    let list = srv
        .rpc_ok("tasks/pushNotificationConfig/list", json!({"id": tid}))
        .await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let mut ids: Vec<&str> = list
        .iter()
        .map(|c| {
            assert_eq!(c["taskId"], json!(tid));
            c["pushNotificationConfig"]["id"].as_str().unwrap()
        })
        .collect();
    ids.sort_unstable();
    let mut want = vec![first_cfg_id.as_str(), "cfg-2"];
    want.sort_unstable();
    assert_eq!(ids, want);

    let deleted = srv
        .rpc_ok(
            "tasks/pushNotificationConfig/delete",
            json!({"id": tid, "pushNotificationConfigId": "cfg-2"}),
        )
        .await;
    assert_eq!(deleted, Value::Null);
    let list = srv
        .rpc_ok("tasks/pushNotificationConfig/list", json!({"id": tid}))
        .await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["pushNotificationConfig"]["id"], json!(first_cfg_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_notification_config_errors() {
    let srv = TestServer::echo().await;
    let cfg = json!({"url": "https://example.com/webhook"});
    let unknown = "no-such-task";
    assert_eq!(
        srv.rpc_err(
            "tasks/pushNotificationConfig/set",
            json!({"taskId": unknown, "pushNotificationConfig": cfg}),
        )
        .await,
        TASK_NOT_FOUND
    );
    assert_eq!(
        srv.rpc_err("tasks/pushNotificationConfig/get", json!({"id": unknown}))
            .await,
        TASK_NOT_FOUND
    );
    assert_eq!(
        srv.rpc_err("tasks/pushNotificationConfig/list", json!({"id": unknown}))
            .await,
        TASK_NOT_FOUND
    );
    assert_eq!(
        srv.rpc_err(
            "tasks/pushNotificationConfig/delete",
            json!({"id": unknown, "pushNotificationConfigId": "x"}),
        )
        .await,
        TASK_NOT_FOUND
    );

    let tid = task_id(&srv.send(user_message("push errors")).await);
    for url in ["ftp://x", "example.com/webhook", "http://"] {
        assert_eq!(
            srv.rpc_err(
                "tasks/pushNotificationConfig/set",
                json!({"taskId": tid, "pushNotificationConfig": {"url": url}}),
            )
            .await,
            INVALID_PARAMS,
            "{url}"
        );
    }
    // Also when given inline with message/send.
    let code = srv
        .rpc_err(
            "message/send",
            json!({
                "message": user_message("inline"),
                "configuration": {"pushNotificationConfig": {"url": "ftp://x"}},
            }),
        )
        .await;
    assert_eq!(code, INVALID_PARAMS);
    let list = srv
        .rpc_ok("tasks/pushNotificationConfig/list", json!({"id": tid}))
        .await;
    assert_eq!(list, json!([]));
}

// ---- 13. extended card ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extended_card_is_not_configured_by_default() {
    let srv = TestServer::echo().await;
    assert_eq!(
        srv.rpc_err("agent/getAuthenticatedExtendedCard", json!({}))
            .await,
        EXTENDED_CARD_NOT_CONFIGURED
    );
    let (status, _, body) = srv.get("/.well-known/agent-card.json").await;
    assert_eq!(status, 200);
    let card: Value = serde_json::from_str(&body).unwrap();
    assert_ne!(card["supportsAuthenticatedExtendedCard"], true, "{card}");
}

/// A temporary file removed on drop.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extended_card_comes_from_the_configured_file() {
    let file =
        TempFile(std::env::temp_dir().join(format!("{}.json", unique("bindu-extended-card"))));
    let overlay = json!({
        "description": "extended",
        "skills": [{
            "id": "secret-skill",
            "name": "Secret skill",
            "description": "Only for authenticated callers",
            "tags": ["private"],
        }],
    });
    std::fs::write(&file.0, overlay.to_string()).unwrap();
    let path = file.0.to_str().unwrap().to_string();
    let srv = TestServer::start(
        &[("agent.extended_card_file", path.as_str())],
        Arc::new(bindu::EchoHandler::default()),
    )
    .await;

    let card = srv
        .rpc_ok("agent/getAuthenticatedExtendedCard", json!({}))
        .await;
    assert_eq!(card["description"], "extended", "{card}");
    assert_eq!(card["supportsAuthenticatedExtendedCard"], true, "{card}");
    let skills = card["skills"].as_array().unwrap();
    assert_eq!(skills.len(), 1, "{card}");
    assert_eq!(skills[0]["id"], "secret-skill");
    assert_eq!(card["protocolVersion"], "0.3.0", "public fields are kept");

    let (status, _, body) = srv.get("/.well-known/agent-card.json").await;
    assert_eq!(status, 200);
    let public: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        public["supportsAuthenticatedExtendedCard"], true,
        "{public}"
    );
    assert_ne!(
        public["description"], "extended",
        "the public card is unchanged"
    );
    assert_eq!(public["url"], card["url"]);
}

// ---- 14. Bindu extensions -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_list_is_newest_first_and_paginates() {
    let srv = TestServer::echo().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(task_id(&srv.send(user_message(&format!("t{i}"))).await));
    }
    let all = srv.rpc_ok("tasks/list", json!({})).await;
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    let listed: Vec<String> = all["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(task_id)
        .collect();
    assert_eq!(listed, newest_first);
    assert!(all.get("nextCursor").is_none(), "{all}");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 10, "pagination does not end");
        let mut params = json!({"limit": 2});
        if let Some(c) = &cursor {
            params["cursor"] = json!(c);
        }
        let page = srv.rpc_ok("tasks/list", params).await;
        let tasks = page["tasks"].as_array().unwrap();
        assert!(tasks.len() <= 2, "{page}");
        seen.extend(tasks.iter().map(task_id));
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, newest_first, "every task exactly once, newest first");
    assert_eq!(pages, 3);

    assert_eq!(
        srv.rpc_err("tasks/list", json!({"limit": 0})).await,
        INVALID_PARAMS
    );
    assert_eq!(
        srv.rpc_err("tasks/list", json!({"cursor": "not-a-cursor"}))
            .await,
        INVALID_PARAMS
    );
    // historyLength applies to listed tasks.
    let trimmed = srv
        .rpc_ok("tasks/list", json!({"limit": 1, "historyLength": 0}))
        .await;
    assert!(trimmed["tasks"][0].get("history").is_none(), "{trimmed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_feedback() {
    let srv = TestServer::echo().await;
    let tid = task_id(&srv.send(user_message("rate me")).await);
    let ok = srv
        .rpc_ok(
            "tasks/feedback",
            json!({"taskId": tid, "feedback": "great", "rating": 5}),
        )
        .await;
    assert_eq!(ok["taskId"], json!(tid), "{ok}");
    for bad in [6, 0, -1] {
        assert_eq!(
            srv.rpc_err(
                "tasks/feedback",
                json!({"taskId": tid, "feedback": "meh", "rating": bad}),
            )
            .await,
            INVALID_PARAMS,
            "rating {bad}"
        );
    }
    assert_eq!(
        srv.rpc_err(
            "tasks/feedback",
            json!({"taskId": "no-such-task", "feedback": "x", "rating": 3}),
        )
        .await,
        TASK_NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_can_be_listed_and_cleared() {
    let srv = TestServer::echo().await;
    let a1 = srv.send(user_message("a1")).await;
    let ctx_a = a1["contextId"].as_str().unwrap().to_string();
    let a2 = srv
        .send(user_message_with("a2", json!({"contextId": ctx_a})))
        .await;
    let b1 = srv.send(user_message("b1")).await;
    let ctx_b = b1["contextId"].as_str().unwrap().to_string();

    let listed = srv.rpc_ok("contexts/list", json!({})).await;
    let contexts = listed["contexts"].as_array().unwrap();
    assert_eq!(contexts.len(), 2, "{listed}");
    assert_eq!(
        contexts[0]["contextId"],
        json!(ctx_b),
        "newest first: {listed}"
    );
    let a = &contexts[1];
    assert_eq!(a["contextId"], json!(ctx_a));
    assert_eq!(a["taskCount"], 2);
    assert_eq!(a["taskIds"], json!([a1["id"], a2["id"]]), "{a}");
    assert_eq!(contexts[0]["taskCount"], 1);

    let cleared = srv
        .rpc_ok("contexts/clear", json!({"contextId": ctx_a}))
        .await;
    assert_eq!(cleared["contextId"], json!(ctx_a), "{cleared}");
    assert_eq!(cleared["deletedTasks"], 2, "{cleared}");
    for t in [&a1, &a2] {
        assert_eq!(
            srv.rpc_err("tasks/get", json!({"id": t["id"]})).await,
            TASK_NOT_FOUND
        );
    }
    assert_eq!(state(&srv.get_task(&task_id(&b1)).await), "completed");
    let listed = srv.rpc_ok("contexts/list", json!({})).await;
    let ids: Vec<&Value> = listed["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["contextId"])
        .collect();
    assert_eq!(ids, [&json!(ctx_b)], "{listed}");
    let tasks = srv.rpc_ok("tasks/list", json!({})).await;
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 1, "{tasks}");

    assert_eq!(
        srv.rpc_err("contexts/clear", json!({"contextId": ctx_a}))
            .await,
        CONTEXT_NOT_FOUND
    );
    assert_eq!(
        srv.rpc_err("contexts/clear", json!({"contextId": "no-such-context"}))
            .await,
        CONTEXT_NOT_FOUND
    );
}

// ---- 15. HTTP surface -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_card_is_served_at_both_well_known_paths() {
    let srv = TestServer::echo().await;
    let (s1, ct, new_body) = srv.get("/.well-known/agent-card.json").await;
    let (s2, _, legacy_body) = srv.get("/.well-known/agent.json").await;
    assert_eq!((s1, s2), (200, 200));
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!(new_body, legacy_body);
    let card: Value = serde_json::from_str(&new_body).unwrap();
    assert_eq!(card["protocolVersion"], "0.3.0");
    assert_eq!(card["preferredTransport"], "JSONRPC");
    let url = card["url"].as_str().unwrap();
    assert_eq!(url, format!("http://127.0.0.1:{}/", srv.addr.port()));
    assert_eq!(card["capabilities"]["streaming"], true);
    assert_eq!(card["capabilities"]["pushNotifications"], false);
    assert!(!card["skills"].as_array().unwrap().is_empty(), "{card}");
    assert!(
        !card["defaultInputModes"].as_array().unwrap().is_empty(),
        "{card}"
    );
    assert!(card["name"].as_str().is_some_and(|n| !n.is_empty()));

    // GET / points at the card.
    let no_redirect = reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = within("GET /", no_redirect.get(srv.url()).send())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    assert_eq!(
        resp.headers().get("location").unwrap(),
        "/.well-known/agent-card.json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployment_url_goes_into_the_card() {
    let srv = TestServer::start(
        &[("server.deployment_url", "https://agent.example.com")],
        Arc::new(bindu::EchoHandler::default()),
    )
    .await;
    let (status, _, body) = srv.get("/.well-known/agent-card.json").await;
    assert_eq!(status, 200);
    let card: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(card["url"], "https://agent.example.com/");
    assert_eq!(srv.server().base_url(), "https://agent.example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints() {
    let srv = TestServer::echo().await;
    let (status, ct, body) = srv.get("/health").await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/json"), "{ct}");
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["ready"], true, "{h}");
    assert!(h["version"].as_str().is_some_and(|v| !v.is_empty()), "{h}");
    assert!(h["uptime_seconds"].is_u64(), "{h}");
    assert_eq!(h["runtime"]["storage_backend"], "memory", "{h}");
    assert_eq!(h["runtime"]["bus_backend"], "memory", "{h}");

    let (status, _, _) = srv.get("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_tasks() {
    let srv = TestServer::echo().await;
    srv.send(user_message("count me")).await;
    let (status, _, body) = srv.get("/metrics").await;
    assert_eq!(status, 200);
    let has_line = |pred: &dyn Fn(&str) -> bool| body.lines().any(pred);
    // One sample line's value: the text after the last space, compared exactly (a prefix
    // check of "... 1" would also accept 10 or 1.5).
    let value = |l: &str| l.rsplit(' ').next().unwrap_or("").to_string();
    assert!(
        has_line(&|l| l.starts_with("bindu_rpc_requests_total{")
            && l.contains(r#"method="message/send""#)
            && value(l) == "1"),
        "{body}"
    );
    assert!(
        has_line(&|l| l.starts_with("bindu_rpc_request_duration_seconds_bucket")),
        "{body}"
    );
    assert!(
        has_line(&|l| l == "bindu_rpc_requests_in_flight 0"),
        "{body}"
    );
    assert!(
        has_line(&|l| l == r#"bindu_tasks{state="completed"} 1"#),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_404_json() {
    let srv = TestServer::echo().await;
    let (status, ct, body) = srv.get("/no/such/path").await;
    assert_eq!(status, 404);
    assert!(ct.starts_with("application/json"), "{ct}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v.is_object(), "{v}");
}

// ---- 16. graceful shutdown ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_then_refuses_connections() {
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let h = handler(move |input: HandlerInput| {
        let started = started_tx.clone();
        async move {
            let _ = started.send(input.task_id.clone());
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(HandlerOutput::Text("finished during shutdown".into()))
        }
    });
    let mut srv = TestServer::with_handler(h).await;
    let url = srv.url();
    let client = srv.client.clone();
    let body = send_body(json!("slow"), json!({"message": user_message("slow")}));
    let in_flight = tokio::spawn(async move {
        let resp = client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.json::<Value>().await.unwrap()
    });
    within("the handler to start", started_rx.recv())
        .await
        .unwrap();

    let server = srv.take_server();
    server.shutdown();
    let resp = within("the in-flight request", in_flight).await.unwrap();
    assert_eq!(resp["id"], "slow");
    assert_eq!(state(&resp["result"]), "completed", "{resp}");
    assert_eq!(
        first_text(&resp["result"]["artifacts"][0]),
        "finished during shutdown"
    );
    within("the server to stop", server.wait()).await.unwrap();

    let refused = within(
        "connecting after shutdown",
        tokio::net::TcpStream::connect(srv.addr),
    )
    .await;
    assert!(refused.is_err(), "the listener is closed");
}
