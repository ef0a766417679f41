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
    // A GET has no body: its signature is over the empty body.
    let mut signed = alice.headers("", now(), SigForm::Python);
    signed.push(bearer("alice"));
    let (status, _, body) = env
        .rest(Method::GET, &format!("/v1/tasks/{id}"), &signed, None)
        .await;
    assert_eq!(status, 200, "{body}");
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
