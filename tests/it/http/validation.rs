//! JSON-RPC validation order and id echo, snake_case input, the body limit.

use super::*;

// ---- 1. validation order and id echo --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_parse_error_with_null_id() {
    let srv = TestServer::echo().await;
    expect_errors(
        &srv,
        &[
            ("{not json", PARSE_ERROR, Value::Null),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{"id":"x"}"#,
                PARSE_ERROR,
                Value::Null,
            ),
            ("", PARSE_ERROR, Value::Null),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_errors_are_invalid_request() {
    let srv = TestServer::echo().await;
    expect_errors(
        &srv,
        &[
            // Batches are not supported.
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"id":"x"}}]"#,
                INVALID_REQUEST,
                Value::Null,
            ),
            // Wrong or missing version: the id is echoed.
            (
                r#"{"jsonrpc":"1.0","id":7,"method":"tasks/get","params":{"id":"x"}}"#,
                INVALID_REQUEST,
                json!(7),
            ),
            (
                r#"{"id":"v","method":"tasks/get","params":{"id":"x"}}"#,
                INVALID_REQUEST,
                json!("v"),
            ),
            // Missing or non-string method.
            (
                r#"{"jsonrpc":"2.0","id":"m","params":{"id":"x"}}"#,
                INVALID_REQUEST,
                json!("m"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"m5","method":5}"#,
                INVALID_REQUEST,
                json!("m5"),
            ),
        ],
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
    expect_errors(
        &srv,
        &[
            (
                r#"{"jsonrpc":"2.0","id":"abc-1","method":"tasks/explode","params":{}}"#,
                METHOD_NOT_FOUND,
                json!("abc-1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":42,"method":"tasks/explode"}"#,
                METHOD_NOT_FOUND,
                json!(42),
            ),
            // No id (a notification) still gets an error reply, with id null.
            (
                r#"{"jsonrpc":"2.0","method":"tasks/explode"}"#,
                METHOD_NOT_FOUND,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"tasks/explode"}"#,
                METHOD_NOT_FOUND,
                Value::Null,
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_run_in_order_envelope_method_params() {
    let srv = TestServer::echo().await;
    expect_errors(
        &srv,
        &[
            // A bad envelope wins over an unknown method.
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"tasks/explode"}"#,
                INVALID_REQUEST,
                json!(1),
            ),
            // An unknown method wins over bad params.
            (
                r#"{"jsonrpc":"2.0","id":2,"method":"tasks/explode","params":[1]}"#,
                METHOD_NOT_FOUND,
                json!(2),
            ),
            // Bad params are checked before the method runs (the task does not exist either).
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{"id":"nope","historyLength":-1}}"#,
                INVALID_PARAMS,
                json!(3),
            ),
        ],
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
    let srv = TestServer::echo_with(&[("server.max_body_bytes", "4096")]).await;
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
    let srv = TestServer::echo_with(&[("server.max_body_bytes", "4096")]).await;
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
    let srv = TestServer::echo_with(&[("server.max_body_bytes", "4096")]).await;
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
