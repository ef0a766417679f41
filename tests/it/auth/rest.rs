//! The A2A 1.0 HTTP+JSON routes behind the same authentication and DID signatures as
//! JSON-RPC.

use super::*;

/// The `reason` of an HTTP+JSON (`google.rpc.Status`) error body.
fn rest_reason(body: &Value) -> &str {
    body["error"]["details"][0]["reason"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_routes_are_authenticated_and_signed_like_json_rpc() {
    use reqwest::Method;
    let env = Env::start(&[("auth.require_permissions", "true")]).await;
    let send =
        json!({"message": {"role": "ROLE_USER", "messageId": "m-rest", "parts": [{"text": "hi"}]}})
            .to_string();
    // No token, a bad one: 401 with the challenge, in the binding's error form.
    let (status, challenge, body) = env
        .rest(Method::POST, "/v1/message:send", &[], Some(&send))
        .await;
    assert_eq!(
        (status, challenge.as_deref()),
        (401, Some("Bearer")),
        "{body}"
    );
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED", "{body}");
    assert_eq!(rest_reason(&body), "AUTHENTICATION_REQUIRED");
    for path in ["/v1/tasks", "/v1/tasks/x", "/v1/extendedAgentCard"] {
        let (status, _, body) = env.rest(Method::GET, path, &[], None).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let (status, _, body) = env
        .rest(Method::GET, "/v1/tasks", &[bearer("unknown")], None)
        .await;
    assert_eq!((status, rest_reason(&body)), (401, "INVALID_TOKEN"));
    // Scopes: a read-only token reads but cannot send (403).
    env.token("reader", "svc-r", json!(now() + 3600), "agent:read");
    let (status, _, body) = env
        .rest(Method::GET, "/v1/tasks", &[bearer("reader")], None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = env
        .rest(
            Method::POST,
            "/v1/message:send",
            &[bearer("reader")],
            Some(&send),
        )
        .await;
    assert_eq!(
        (status, rest_reason(&body)),
        (403, "INSUFFICIENT_PERMISSIONS"),
        "{body}"
    );

    // A DID client signs the body as sent.
    let did = "did:bindu:alice_at_example_com:caller:0001";
    let alice = signer(3, did);
    env.token("alice", did, json!(now() + 3600), "agent:read agent:write");
    env.hydra
        .keys
        .lock()
        .unwrap()
        .insert(did.into(), alice.id.public_key_base58());
    let (status, _, body) = env
        .rest(
            Method::POST,
            "/v1/message:send",
            &[bearer("alice")],
            Some(&send),
        )
        .await;
    assert_eq!(status, 403, "unsigned: {body}");
    assert_eq!(rest_reason(&body), "MISSING_SIGNATURE_HEADERS", "{body}");
    let mut signed = alice.headers(&send, now(), SigForm::Python);
    signed.push(bearer("alice"));
    let other = send.replace("hi", "ho");
    let (status, _, body) = env
        .rest(Method::POST, "/v1/message:send", &signed, Some(&other))
        .await;
    assert_eq!(
        (status, rest_reason(&body)),
        (403, "INVALID_SIGNATURE"),
        "{body}"
    );
    let mut signed = alice.headers(&send, now(), SigForm::Python);
    signed.push(bearer("alice"));
    let (status, _, body) = env
        .rest(Method::POST, "/v1/message:send", &signed, Some(&send))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["task"]["status"]["state"], "TASK_STATE_COMPLETED");
    let id = body["task"]["id"].as_str().unwrap().to_string();
    // A request without a body signs its request line: method, path and query as sent.
    let target = format!("/v1/tasks/{id}?historyLength=1");
    let line = |method: &str| bindu_schemas::signing::request_line(method, &target);
    let ts = now();
    let mut signed = alice.headers(&line("GET"), ts, SigForm::Python);
    signed.push(bearer("alice"));
    env.token(
        "other",
        "svc-o",
        json!(now() + 3600),
        "agent:read agent:write",
    );
    let (status, _, created) = env
        .rest(
            Method::POST,
            "/v1/message:send",
            &[bearer("other")],
            Some(&send),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    // That signature, on any other request: refused, and never counted as seen.
    for (method, path) in [
        (Method::GET, format!("/v1/tasks/{id}")),
        (Method::GET, format!("/v1/tasks/{id}?historyLength=2")),
        (Method::GET, format!("/v1/tasks/{id}?historyLength=1&x=")),
        (Method::GET, "/v1/tasks?historyLength=1".to_string()),
        (
            Method::GET,
            format!(
                "/v1/tasks/{}?historyLength=1",
                created["task"]["id"].as_str().unwrap()
            ),
        ),
        (Method::POST, format!("/v1/tasks/{id}:cancel")),
    ] {
        // A bodiless POST is declared JSON (the content-type guard comes first).
        let empty = (method == Method::POST).then_some("");
        let (status, _, body) = env.rest(method.clone(), &path, &signed, empty).await;
        assert_eq!(
            (status, rest_reason(&body)),
            (403, "INVALID_SIGNATURE"),
            "{method} {path}: {body}"
        );
    }
    // The empty body's signature (the old rule) is refused.
    let mut empty = alice.headers("", ts, SigForm::Python);
    empty.push(bearer("alice"));
    let (status, _, body) = env.rest(Method::GET, &target, &empty, None).await;
    assert_eq!(
        (status, rest_reason(&body)),
        (403, "INVALID_SIGNATURE"),
        "{body}"
    );
    // The request it was made for passes.
    let (status, _, body) = env.rest(Method::GET, &target, &signed, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["history"].as_array().map(Vec::len), Some(1), "{body}");
    // A bodiless `POST …:cancel` signs its line too (the task is finished: 409, past the
    // signature check), and so does a `DELETE`.
    let cancel = format!("/v1/tasks/{id}:cancel");
    let mut signed = alice.headers(
        &bindu_schemas::signing::request_line("POST", &cancel),
        now(),
        SigForm::Python,
    );
    signed.push(bearer("alice"));
    let (status, _, body) = env.rest(Method::POST, &cancel, &signed, Some("")).await;
    assert_eq!(
        (status, rest_reason(&body)),
        (409, "TASK_NOT_CANCELABLE"),
        "{body}"
    );
    // `GET` and `DELETE` of one path: a signature for one is refused on the other.
    let config = format!("/v1/tasks/{id}/pushNotificationConfigs/nope");
    let line = |method: &str| bindu_schemas::signing::request_line(method, &config);
    let ts = now();
    let mut get_signed = alice.headers(&line("GET"), ts, SigForm::Python);
    get_signed.push(bearer("alice"));
    let (status, _, body) = env.rest(Method::DELETE, &config, &get_signed, None).await;
    assert_eq!(
        (status, rest_reason(&body)),
        (403, "INVALID_SIGNATURE"),
        "{body}"
    );
    let mut delete_signed = alice.headers(&line("DELETE"), ts, SigForm::Python);
    delete_signed.push(bearer("alice"));
    let (status, _, body) = env.rest(Method::GET, &config, &delete_signed, None).await;
    assert_eq!(
        (status, rest_reason(&body)),
        (403, "INVALID_SIGNATURE"),
        "{body}"
    );
    // Each passes the signature check on its own request (to the method, which answers).
    for (method, signed) in [(Method::GET, &get_signed), (Method::DELETE, &delete_signed)] {
        let (status, _, body) = env.rest(method.clone(), &config, signed, None).await;
        assert_ne!(status, 403, "{method}: {body}");
        assert!(status < 500, "{method}: {body}");
    }
    // Ownership: another caller's task answers like a missing one.
    let (status, _, body) = env
        .rest(
            Method::GET,
            &format!("/v1/tasks/{id}"),
            &[bearer("reader")],
            None,
        )
        .await;
    assert_eq!(
        (status, rest_reason(&body)),
        (404, "TASK_NOT_FOUND"),
        "{body}"
    );
    env.server.shutdown();
}
