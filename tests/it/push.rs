//! T1: push notifications through the whole agent (`bindu::start`): the card's capability
//! flag, a webhook given inline in `message/send` receiving every event of the task, signed
//! with the DID the card advertises, and the dispatcher's metrics on `/metrics`. Receivers are
//! loopback axum servers; destinations are limited to loopback.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{json, Value};
use support::*;

/// Requests a receiver got: headers and raw body.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<(HeaderMap, Bytes)>>);

async fn receiver() -> (String, Arc<Recorded>) {
    slow_receiver(Duration::ZERO).await
}

/// A receiver that answers after `delay`, recording each request as it answers.
async fn slow_receiver(delay: Duration) -> (String, Arc<Recorded>) {
    let recorded = Arc::new(Recorded::default());
    let r = recorded.clone();
    let url = support::serve_hook(axum::routing::post(
        move |headers: HeaderMap, body: Bytes| {
            let r = r.clone();
            async move {
                tokio::time::sleep(delay).await;
                r.0.lock().unwrap().push((headers, body));
                axum::http::StatusCode::NO_CONTENT
            }
        },
    ))
    .await;
    (url, recorded)
}

async fn card(server: &TestServer) -> Value {
    let (status, _, body) = server.get("/.well-known/agent-card.json").await;
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_advertises_push_notifications_only_when_they_are_delivered() {
    let off = TestServer::echo().await;
    assert_eq!(card(&off).await["capabilities"]["pushNotifications"], false);
    let on = TestServer::echo_with(&[("push.enabled", "true")]).await;
    assert_eq!(card(&on).await["capabilities"]["pushNotifications"], true);
    let global = TestServer::echo_with(&[("webhook.url", "http://127.0.0.1:9/hook")]).await;
    assert_eq!(
        card(&global).await["capabilities"]["pushNotifications"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_push_config_gets_every_event_signed_by_the_agent() {
    let (url, recorded) = receiver().await;
    let server = TestServer::echo_with(&[
        ("push.enabled", "true"),
        ("push.destinations", "loopback"),
        ("push.retry_base_ms", "10"),
    ])
    .await;
    let task = server
        .rpc_ok(
            "message/send",
            json!({
                "message": user_message("notify me"),
                "configuration": {"pushNotificationConfig": {"url": url, "token": "tok-1"}},
            }),
        )
        .await;
    assert_eq!(task["status"]["state"], "completed");
    let task_id = task["id"].as_str().unwrap().to_string();
    // The config given inline was stored with the task.
    let configs = server
        .rpc_ok("tasks/pushNotificationConfig/list", json!({"id": task_id}))
        .await;
    assert_eq!(configs[0]["pushNotificationConfig"]["url"], url);

    let got = within("the final notification", async {
        loop {
            let got = recorded.0.lock().unwrap().clone();
            let done = got
                .iter()
                .any(|(_, b)| serde_json::from_slice::<Value>(b).is_ok_and(|v| v["final"] == true));
            if done {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let card = card(&server).await;
    let did_ext = &card["capabilities"]["extensions"][0];
    let did = did_ext["uri"].as_str().unwrap();
    let key = did_ext["params"]["webhookPublicKeyBase58"]
        .as_str()
        .unwrap();
    let mut states = Vec::new();
    for (i, (headers, body)) in got.iter().enumerate() {
        bindu::verify_notification(headers, body, did, key, Duration::from_secs(60))
            .expect("signed with the key the card advertises");
        assert_eq!(headers["authorization"], "Bearer tok-1");
        assert_eq!(headers["x-a2a-notification-token"], "tok-1");
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["taskId"], task_id);
        assert_eq!(v["sequence"], i as u64 + 1, "in order, from 1");
        assert_eq!(v["eventId"], format!("{task_id}:{}", i + 1));
        states.push(
            v["status"]["state"]
                .as_str()
                .unwrap_or(v["kind"].as_str().unwrap())
                .to_string(),
        );
    }
    assert_eq!(
        states,
        ["submitted", "working", "artifact-update", "completed"]
    );
    within("the delivered count on /metrics", async {
        loop {
            let (_, _, metrics) = server.get("/metrics").await;
            if metrics.contains("bindu_push_deliveries_total{outcome=\"delivered\"} 4") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_dispatcher_deliver_what_the_finished_tasks_announced() {
    let (url, recorded) = slow_receiver(Duration::from_millis(150)).await;
    let mut server =
        TestServer::echo_with(&[("push.enabled", "true"), ("push.destinations", "loopback")]).await;
    let task = server
        .rpc_ok(
            "message/send",
            json!({
                "message": user_message("last words"),
                "configuration": {"pushNotificationConfig": {"url": url}},
            }),
        )
        .await;
    assert_eq!(task["status"]["state"], "completed");
    // The task is done but its four notifications take 600 ms to deliver.
    let server = server.take_server();
    server.shutdown();
    within("the shutdown", server.wait()).await.unwrap();
    let sequences: Vec<u64> = recorded
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| {
            serde_json::from_slice::<Value>(b).unwrap()["sequence"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4]);
}
