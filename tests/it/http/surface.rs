//! The HTTP surface (card, health, metrics) and graceful shutdown.

use super::*;

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
    let srv =
        TestServer::echo_with(&[("server.deployment_url", "https://agent.example.com")]).await;
    let (status, _, body) = srv.get("/.well-known/agent-card.json").await;
    assert_eq!(status, 200);
    let card: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(card["url"], "https://agent.example.com/");
    assert_eq!(srv.server().base_url(), "https://agent.example.com");
}

/// `/health` is liveness (200, with the report), `/healthz` readiness (200 while ready),
/// as Bindu documents them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints() {
    let srv = TestServer::echo().await;
    let (status, h) = srv.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        (&h["live"], &h["ready"]),
        (&json!(true), &json!(true)),
        "{h}"
    );
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["role"], "serve", "{h}");
    assert!(h["version"].as_str().is_some_and(|v| !v.is_empty()), "{h}");
    assert!(h["uptime_seconds"].is_u64(), "{h}");
    assert_eq!(h["runtime"]["storage_backend"], "memory", "{h}");
    assert_eq!(h["runtime"]["bus_backend"], "memory", "{h}");
    assert_eq!(h["runtime"]["storage_ready"], true, "{h}");
    assert_eq!(h["runtime"]["bus_ready"], true, "{h}");
    assert!(
        h["application"]["agent_did"]
            .as_str()
            .is_some_and(|d| d.starts_with("did:")),
        "{h}"
    );
    assert!(h["application"]["name"].is_string(), "{h}");

    let (status, r) = srv.get_json("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(r["ready"], true, "{r}");
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
    let (status, v) = srv.get_json("/no/such/path").await;
    assert_eq!(status, 404);
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
