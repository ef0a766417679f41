//! A2A 1.0's HTTP+JSON binding (`server.rest_base_path`, default `/v1`): each route, its
//! errors as HTTP statuses with `google.rpc.Status` bodies, streams of bare
//! `StreamResponse`s, and one task model shared with JSON-RPC 0.3 and 1.0.
//! (Authentication and payments on these routes: `auth.rs`, `payments/mod.rs`.)

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{self, read_sse, unique, within, Gate, TestServer};

/// A 1.0 user message: `ROLE_USER`, flat parts.
pub(crate) fn message10(text: &str, extra: Value) -> Value {
    let mut m = json!({"role": "ROLE_USER", "messageId": unique("m"), "parts": [{"text": text}]});
    m.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    m
}

/// An HTTP+JSON request: status, `A2A-Version` answered, and the body as JSON (text when it
/// is not JSON).
pub(crate) async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String, Value) {
    let mut req = s.client.request(method.clone(), s.endpoint(path));
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = within(&format!("{method} {path}"), req.send())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let version = resp
        .headers()
        .get("a2a-version")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = within("the body", resp.text()).await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, version, body)
}

pub(crate) async fn get(s: &TestServer, path: &str) -> (u16, Value) {
    let (status, version, body) = call(s, Method::GET, path, None, &[]).await;
    assert_eq!(version, "1.0", "GET {path}");
    (status, body)
}

pub(crate) async fn post(s: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let (status, version, body) = call(s, Method::POST, path, Some(&body.to_string()), &[]).await;
    assert_eq!(version, "1.0", "POST {path}");
    (status, body)
}

/// The `reason` of a `google.rpc.Status` error body, after checking its shape.
pub(crate) fn reason(status: u16, body: &Value) -> &str {
    let error = &body["error"];
    assert_eq!(error["code"], status, "{body}");
    assert!(error["status"].as_str().is_some(), "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(error["details"][0]["domain"], "a2a-protocol.org", "{body}");
    assert_eq!(
        error["details"][0]["@type"],
        "type.googleapis.com/google.rpc.ErrorInfo"
    );
    error["details"][0]["reason"].as_str().unwrap()
}

fn no_envelope(v: &Value) {
    assert!(
        v.get("jsonrpc").is_none() && v.get("result").is_none(),
        "HTTP+JSON answers are bare objects: {v}"
    );
}

#[tokio::test]
async fn messages_are_sent_tasks_got_listed_and_canceled_over_http_json() {
    let s = TestServer::echo().await;
    let ctx = unique("ctx");
    let (status, sent) = post(
        &s,
        "/v1/message:send",
        json!({"message": message10("one", json!({"contextId": ctx}))}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    no_envelope(&sent);
    let task = &sent["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{sent}");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "one");
    let id = task["id"].as_str().unwrap().to_string();
    let (status, quick) = post(
        &s,
        "/v1/message:send",
        json!({"message": message10("two", json!({"contextId": ctx})),
               "configuration": {"returnImmediately": true}}),
    )
    .await;
    assert_eq!(status, 200, "{quick}");
    let second = quick["task"]["id"].as_str().unwrap().to_string();
    s.wait_for_state(&second, "completed").await;

    let (status, got) = get(&s, &format!("/v1/tasks/{id}?historyLength=1")).await;
    assert_eq!(status, 200, "{got}");
    no_envelope(&got);
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(got["history"].as_array().unwrap().len(), 1, "{got}");

    // Listing with filters and a page token in the query.
    let (status, page) = get(&s, &format!("/v1/tasks?contextId={ctx}&pageSize=1")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["pageSize"], 1);
    assert_eq!(page["totalSize"], 2, "the context's two tasks: {page}");
    assert_eq!(page["tasks"].as_array().unwrap().len(), 1, "{page}");
    assert!(page["tasks"][0].get("artifacts").is_none(), "{page}");
    let token = page["nextPageToken"].as_str().unwrap();
    assert!(!token.is_empty(), "{page}");
    let (_, next) = get(
        &s,
        &format!(
            "/v1/tasks?contextId={ctx}&pageSize=1&includeArtifacts=true&pageToken={}",
            percent(token)
        ),
    )
    .await;
    let both: Vec<&str> = [&page, &next]
        .iter()
        .map(|p| p["tasks"][0]["id"].as_str().unwrap())
        .collect();
    assert_eq!(both, [second.as_str(), id.as_str()]);
    assert!(next["tasks"][0]["artifacts"].is_array(), "{next}");
    assert_eq!(next["totalSize"], 2, "the same on every page: {next}");
    let (_, working) = get(
        &s,
        &format!("/v1/tasks?contextId={ctx}&status=TASK_STATE_WORKING"),
    )
    .await;
    assert_eq!(working["tasks"], json!([]), "{working}");
    assert_eq!(working["totalSize"], 0, "{working}");
    let (_, completed) = get(
        &s,
        &format!("/v1/tasks?contextId={ctx}&status=TASK_STATE_COMPLETED&pageSize=1"),
    )
    .await;
    assert_eq!(completed["totalSize"], 2, "{completed}");
    assert_eq!(
        completed["tasks"].as_array().unwrap().len(),
        1,
        "a full page: {completed}"
    );

    // A finished task cannot be canceled (409) or continued (400, unsupported operation).
    let (status, body) = post(&s, &format!("/v1/tasks/{id}:cancel"), json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(reason(409, &body), "TASK_NOT_CANCELABLE");
    let (status, body) = post(
        &s,
        "/v1/message:send",
        json!({"message": message10("more", json!({"taskId": id}))}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(reason(400, &body), "UNSUPPORTED_OPERATION");
}

/// `text` percent-encoded for a query or path.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn bad_requests_get_their_http_status_and_a_json_error() {
    let s = TestServer::echo().await;
    // Not JSON, not an object, not a valid message.
    for (body, status, why) in [
        ("{not json", 400, "INVALID_REQUEST"),
        ("[1, 2]", 400, "INVALID_REQUEST"),
        (
            r#"{"message": {"role": "ROLE_BOGUS", "messageId": "m", "parts": [{"text": "x"}]}}"#,
            400,
            "INVALID_PARAMS",
        ),
        (
            r#"{"message": {"role": "ROLE_USER", "messageId": "m", "parts": [{"text": "x", "url": "https://x"}]}}"#,
            400,
            "INVALID_PARAMS",
        ),
    ] {
        let (got, version, resp) =
            call(&s, Method::POST, "/v1/message:send", Some(body), &[]).await;
        assert_eq!((got, version.as_str()), (status, "1.0"), "{body}: {resp}");
        assert_eq!(reason(status, &resp), why, "{body}: {resp}");
    }
    // Unknown tasks and push configs: 404.
    for path in ["/v1/tasks/nope", "/v1/tasks/nope/pushNotificationConfigs"] {
        let (status, body) = get(&s, path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(reason(404, &body), "TASK_NOT_FOUND", "{path}");
    }
    let (status, body) = post(&s, "/v1/tasks/nope:cancel", json!({})).await;
    assert_eq!((status, reason(404, &body)), (404, "TASK_NOT_FOUND"));
    // A method a route does not take: 405 with `Allow` and a JSON body.
    for (method, path, allow) in [
        (Method::GET, "/v1/message:send", "POST"),
        (Method::DELETE, "/v1/tasks", "GET"),
        (Method::POST, "/v1/tasks/some-id", "GET"),
        (Method::GET, "/v1/tasks/some-id:cancel", "POST"),
        (
            Method::PUT,
            "/v1/tasks/some-id/pushNotificationConfigs/c",
            "GET",
        ),
    ] {
        let resp = within(
            "a wrong method",
            s.client
                .request(method.clone(), s.endpoint(path))
                .header("content-type", "application/json")
                .body("{}")
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        let allowed = resp.headers()["allow"].to_str().unwrap().to_string();
        assert!(allowed.contains(allow), "{method} {path}: {allowed}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], 405, "{method} {path}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(allow));
    }
    // Unknown verbs and paths under the base: 404 in the binding's form.
    for path in ["/v1/tasks/some-id:frobnicate", "/v1/nothing-here"] {
        let (status, body) = get(&s, path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(reason(404, &body), "METHOD_NOT_FOUND", "{path}");
    }
    // Query parameters: unknown, mistyped, repeated.
    for query in [
        "pageSize=ten",
        "includeArtifacts=yes",
        "contextid=x",
        "pageSize=1&pageSize=2",
        "status=TASK_STATE_NOPE",
    ] {
        let (status, body) = get(&s, &format!("/v1/tasks?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(reason(400, &body), "INVALID_PARAMS", "{query}");
    }
    // A body naming another task than the path.
    let (status, body) = post(
        &s,
        "/v1/tasks/a/pushNotificationConfigs",
        json!({"taskId": "b", "url": "https://hooks.example/x"}),
    )
    .await;
    assert_eq!(
        (status, reason(400, &body)),
        (400, "INVALID_PARAMS"),
        "{body}"
    );
    // Versions: 1.0 or none is served; 0.3 and others are not.
    for (asked, status) in [("1.0", 404), ("", 404), ("0.3", 400), ("2.0", 400)] {
        let (got, version, body) = call(
            &s,
            Method::GET,
            "/v1/tasks/x",
            None,
            &[("a2a-version", asked)],
        )
        .await;
        assert_eq!(
            (got, version.as_str()),
            (status, "1.0"),
            "{asked:?}: {body}"
        );
        if status == 400 {
            assert_eq!(reason(400, &body), "VERSION_NOT_SUPPORTED", "{body}");
        }
    }
    // A POST that is not declared JSON is refused before anything runs (as on `/`).
    let resp = within(
        "a text/plain POST",
        s.client
            .post(s.endpoint("/v1/message:send"))
            .header("content-type", "text/plain")
            .body("{}")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(reason(415, &body), "INVALID_REQUEST", "{body}");
    // No extended card on this agent.
    let (status, body) = get(&s, "/v1/extendedAgentCard").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(reason(400, &body), "EXTENDED_AGENT_CARD_NOT_CONFIGURED");
}

#[tokio::test]
async fn task_ids_with_odd_characters_are_one_percent_encoded_segment() {
    let s = TestServer::echo().await;
    // An id the client chose, with a colon, a slash and a space.
    let odd = "job:1/a b";
    let (status, sent) = post(
        &s,
        "/v1/message:send",
        json!({"message": message10("odd", json!({}))}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    // The id is unknown (ids are the agent's), and so named whole in the 404: the colon
    // and the slash did not split it.
    let (status, body) = get(&s, &format!("/v1/tasks/{}", percent(odd))).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(reason(404, &body), "TASK_NOT_FOUND");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(odd),
        "{body}"
    );
    let (status, body) = post(&s, &format!("/v1/tasks/{}:cancel", percent(odd)), json!({})).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(odd));
    // Sent raw, the colon starts a verb this route does not have.
    let (status, body) = get(&s, "/v1/tasks/job:1").await;
    assert_eq!((status, reason(404, &body)), (404, "METHOD_NOT_FOUND"));
    let (status, body) = get(&s, "/v1/tasks/:cancel").await;
    assert_eq!(status, 405, "GET on a cancel: {body}");
    let (status, body) = post(&s, "/v1/tasks/:cancel", json!({})).await;
    assert_eq!(
        (status, reason(400, &body)),
        (400, "INVALID_PARAMS"),
        "{body}"
    );
    // A real id percent-encoded in full still names its task.
    let id = sent["task"]["id"].as_str().unwrap();
    let (status, got) = get(
        &s,
        &format!("/v1/tasks/{}", percent(id).replace('-', "%2D")),
    )
    .await;
    assert_eq!((status, got["id"].as_str()), (200, Some(id)), "{got}");
}

#[tokio::test]
async fn a_stream_over_http_json_sends_bare_events_and_ends_with_the_final_state() {
    let s = TestServer::echo().await;
    let resp = within(
        "POST /v1/message:stream",
        s.client
            .post(s.endpoint("/v1/message:stream"))
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .body(json!({"message": message10("stream me", json!({}))}).to_string())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(support::content_type(&resp).starts_with("text/event-stream"));
    let events = read_sse(resp).await;
    assert!(events.len() >= 2, "{events:?}");
    events.iter().for_each(no_envelope);
    assert!(events[0]["task"]["id"].is_string(), "{:?}", events[0]);
    let last = events.last().unwrap();
    assert_eq!(
        last["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{last}"
    );
    let text: String = events
        .iter()
        .filter_map(|e| e["artifactUpdate"]["artifact"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "stream me");
    // A refused stream is an HTTP error, not a stream.
    let (status, _, body) = call(
        &s,
        Method::POST,
        "/v1/message:stream",
        Some(r#"{"message": {"role": "ROLE_USER", "parts": []}}"#),
        &[],
    )
    .await;
    assert_eq!(
        (status, reason(400, &body)),
        (400, "INVALID_PARAMS"),
        "{body}"
    );
    let (status, body) = get(&s, "/v1/tasks/missing:subscribe").await;
    assert_eq!((status, reason(404, &body)), (404, "TASK_NOT_FOUND"));
}

#[tokio::test]
async fn a_task_created_over_http_json_is_read_and_canceled_over_0_3() {
    let (gate, h) = Gate::new();
    let s = TestServer::with_handler(h).await;
    let (status, sent) = post(
        &s,
        "/v1/message:send",
        json!({"message": message10("slow", json!({})), "configuration": {"returnImmediately": true}}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let id = sent["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(gate.started().await, id);
    // Subscribed over HTTP+JSON (`GET …:subscribe`, as the proto has it) …
    let resp = within(
        "GET :subscribe",
        s.client
            .get(s.endpoint(&format!("/v1/tasks/{id}:subscribe")))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // … read and canceled over 0.3 JSON-RPC.
    let got = s.get_task(&id).await;
    assert_eq!(got["kind"], "task");
    assert_eq!(
        got["history"][0]["parts"][0],
        json!({"kind": "text", "text": "slow"})
    );
    let canceled = s.rpc_ok("tasks/cancel", json!({"id": id})).await;
    assert_eq!(canceled["status"]["state"], "canceled");
    let events = read_sse(resp).await;
    assert_eq!(events[0]["task"]["id"], id.as_str(), "{events:?}");
    assert_eq!(
        events.last().unwrap()["statusUpdate"]["status"]["state"],
        "TASK_STATE_CANCELED",
        "{events:?}"
    );
    let (_, got) = get(&s, &format!("/v1/tasks/{id}")).await;
    assert_eq!(got["status"]["state"], "TASK_STATE_CANCELED");
    gate.release(1);
}

#[tokio::test]
async fn a_task_created_over_0_3_is_subscribed_and_canceled_over_http_json() {
    let (gate, h) = Gate::new();
    let s = TestServer::with_handler(h).await;
    let task = s.send_nonblocking(support::user_message("slow")).await;
    let id = support::task_id(&task);
    assert_eq!(gate.started().await, id);
    // `POST …:subscribe` (the prose specification's verb) is served too.
    let resp = within(
        "POST :subscribe",
        s.client
            .post(s.endpoint(&format!("/v1/tasks/{id}:subscribe")))
            .header("content-type", "application/json")
            .body("{}")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, canceled) = post(&s, &format!("/v1/tasks/{id}:cancel"), json!({})).await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"]["state"], "TASK_STATE_CANCELED");
    let events = read_sse(resp).await;
    assert_eq!(
        events.last().unwrap()["statusUpdate"]["status"]["state"],
        "TASK_STATE_CANCELED",
        "{events:?}"
    );
    assert_eq!(s.get_task(&id).await["status"]["state"], "canceled");
    // And read over 1.0 JSON-RPC the same.
    let got = s.rpc10("GetTask", json!({"id": id})).await;
    assert_eq!(got["result"]["status"]["state"], "TASK_STATE_CANCELED");
    gate.release(1);
}

#[tokio::test]
async fn push_configs_are_created_read_listed_and_deleted_over_http_json() {
    let s = TestServer::echo().await;
    let task = s.send(support::user_message("hi")).await;
    let id = support::task_id(&task);
    let configs = format!("/v1/tasks/{id}/pushNotificationConfigs");
    let (status, config) = post(
        &s,
        &configs,
        json!({"url": "https://hooks.example/a", "token": "t", "authentication": {"scheme": "Bearer"}}),
    )
    .await;
    assert_eq!(status, 200, "{config}");
    no_envelope(&config);
    assert_eq!(config["taskId"], id.as_str(), "{config}");
    assert_eq!(config["url"], "https://hooks.example/a");
    let config_id = config["id"].as_str().unwrap().to_string();
    let (status, got) = get(&s, &format!("{configs}/{config_id}")).await;
    assert_eq!((status, &got), (200, &config));
    let (_, listed) = get(&s, &configs).await;
    assert_eq!(listed["configs"], json!([config]), "{listed}");
    // The same config, as 0.3 sees it.
    let old = s
        .rpc_ok("tasks/pushNotificationConfig/list", json!({"id": id}))
        .await;
    assert_eq!(
        old[0]["pushNotificationConfig"]["url"],
        "https://hooks.example/a"
    );
    let (status, _, deleted) = call(
        &s,
        Method::DELETE,
        &format!("{configs}/{config_id}"),
        None,
        &[],
    )
    .await;
    assert_eq!((status, &deleted), (200, &json!({})));
    let (_, listed) = get(&s, &configs).await;
    assert_eq!(listed["configs"], json!([]));
    let (status, body) = post(&s, &configs, json!({"url": "ftp://x"})).await;
    assert_eq!((status, reason(400, &body)), (400, "INVALID_PARAMS"));
}

#[tokio::test]
async fn the_base_path_is_configurable_and_the_card_names_the_interface() {
    let s = TestServer::echo_with(&[("server.rest_base_path", "/a2a/rest/")]).await;
    let (status, sent) = post(
        &s,
        "/a2a/rest/message:send",
        json!({"message": message10("here", json!({}))}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let (status, _, _) = call(&s, Method::POST, "/v1/message:send", Some("{}"), &[]).await;
    assert_eq!(status, 404, "the default base is not served then");
    let (_, _, card) = s.get("/.well-known/agent-card.json").await;
    let card: Value = serde_json::from_str(&card).unwrap();
    let rest: Vec<&Value> = card["supportedInterfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["protocolBinding"] == "HTTP+JSON")
        .collect();
    assert_eq!(rest.len(), 1, "{card}");
    assert_eq!(rest[0]["protocolVersion"], "1.0");
    assert_eq!(rest[0]["url"], s.endpoint("/a2a/rest"));
    crate::a2a10::check_v10_card(&card, &s.url());

    // At the root, the proto's paths exactly.
    let root = TestServer::echo_with(&[("server.rest_base_path", "")]).await;
    let (status, sent) = post(
        &root,
        "/message:send",
        json!({"message": message10("root", json!({}))}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let id = sent["task"]["id"].as_str().unwrap();
    let (status, _) = get(&root, &format!("/tasks/{id}")).await;
    assert_eq!(status, 200);
    // JSON-RPC at `/` is unchanged beside it.
    assert_eq!(root.get_task(id).await["status"]["state"], "completed");
    // HTTP+JSON requests are counted under their route template.
    let (_, _, metrics) = root.get("/metrics").await;
    assert!(metrics.contains(r#"endpoint="/message:send""#), "{metrics}");
    assert!(metrics.contains(r#"endpoint="/tasks/{task}""#));

    let bad = bindu::Config::from_settings(&[("server.rest_base_path", "/v1/{x}")]);
    assert!(bad.is_err_and(|e| e.to_string().contains("rest_base_path")));
}

/// The official Python SDK (a2a-sdk 1.x) subscribes with a bare `POST …:subscribe`: no body,
/// so no `Content-Type`. It is served as the proto's `GET`; a `POST` that has a body but no
/// JSON type, and an untyped `POST …:cancel`, are still refused by the content-type guard.
#[tokio::test]
async fn a_bodiless_post_subscribe_is_served_and_untyped_bodies_are_still_refused() {
    let (gate, h) = Gate::new();
    let s = TestServer::with_handler(h).await;
    let task = s.send_nonblocking(support::user_message("slow")).await;
    let id = support::task_id(&task);
    assert_eq!(gate.started().await, id);
    let path = format!("/v1/tasks/{id}:subscribe");
    let resp = within(
        "bare POST :subscribe",
        s.client.post(s.endpoint(&path)).send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["a2a-version"], "1.0");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    for (what, req) in [
        ("untyped body", s.client.post(s.endpoint(&path)).body("{}")),
        (
            "text/plain",
            s.client
                .post(s.endpoint(&path))
                .header("content-type", "text/plain"),
        ),
        (
            "bare cancel",
            s.client.post(s.endpoint(&format!("/v1/tasks/{id}:cancel"))),
        ),
    ] {
        let refused = within(what, req.send()).await.unwrap();
        assert_eq!(refused.status().as_u16(), 415, "{what}");
        let body: Value = within(what, refused.json()).await.unwrap();
        assert_eq!(reason(415, &body), "INVALID_REQUEST", "{what}: {body}");
    }
    gate.release(1);
    let events = read_sse(resp).await;
    assert_eq!(
        events.last().unwrap()["statusUpdate"]["status"]["state"],
        "TASK_STATE_COMPLETED",
        "{events:?}"
    );
}

/// Back-pressure and idempotent sends on the HTTP+JSON binding: a message over the caller's
/// rate is HTTP 429 with `Retry-After` and a status body; a resent message gets its first
/// task.
#[tokio::test]
async fn limits_and_resends_answer_the_same_over_http_json() {
    let s = TestServer::echo_with(&[
        ("limits.anonymous_rate", "0.0167"),
        ("limits.anonymous_burst", "2"),
    ])
    .await;
    let message = message10("once", json!({}));
    let (status, first) = post(&s, "/v1/message:send", json!({"message": message})).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = post(&s, "/v1/message:send", json!({"message": message})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["task"]["id"], first["task"]["id"], "the first task");
    let (status, version, refused) = call(
        &s,
        Method::POST,
        "/v1/message:send",
        Some(&json!({"message": message10("three", json!({}))}).to_string()),
        &[],
    )
    .await;
    assert_eq!((status, version.as_str()), (429, "1.0"), "{refused}");
    assert_eq!(reason(status, &refused), "TOO_MANY_REQUESTS");
    assert_eq!(refused["error"]["status"], "RESOURCE_EXHAUSTED");
    let resp = s
        .client
        .post(s.endpoint("/v1/message:send"))
        .header("content-type", "application/json")
        .body(json!({"message": message10("four", json!({}))}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let secs: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=61).contains(&secs), "{secs}");
}
