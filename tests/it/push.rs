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

/// Push notifications on, to loopback receivers, retried after 10 ms.
const LOOPBACK_PUSH: &[(&str, &str)] = &[
    ("push.enabled", "true"),
    ("push.destinations", "loopback"),
    ("push.retry_base_ms", "10"),
];

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
    let server = TestServer::echo_with(LOOPBACK_PUSH).await;
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

/// The bodies `recorded` got once one is the task's last (`last` says which), checking each
/// is signed with the agent's webhook key: bounded by [`within`].
async fn all_until(
    recorded: &Recorded,
    server: &TestServer,
    last: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let got = within("the final notification", async {
        loop {
            let got = recorded.0.lock().unwrap().clone();
            if got
                .iter()
                .any(|(_, b)| serde_json::from_slice::<Value>(b).is_ok_and(|v| last(&v)))
            {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let card = card(server).await;
    let did_ext = &card["capabilities"]["extensions"][0];
    let did = did_ext["uri"].as_str().unwrap();
    let key = did_ext["params"]["webhookPublicKeyBase58"]
        .as_str()
        .unwrap();
    got.iter()
        .map(|(headers, body)| {
            bindu::verify_notification(headers, body, did, key, Duration::from_secs(60))
                .expect("signed with the key the card advertises");
            serde_json::from_slice(body).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_webhook_gets_the_payloads_of_the_version_that_configured_it() {
    let (inline10, got_inline10) = receiver().await;
    let (rest10, got_rest10) = receiver().await;
    let (old03, got_old03) = receiver().await;
    let (gate, h) = Gate::new();
    let server = TestServer::start(LOOPBACK_PUSH, h).await;
    // A 1.0 send with its config inline, then one config made over HTTP+JSON (1.0) and one
    // over 0.3, all on the same task while it runs.
    let sent = server
        .rpc10(
            "SendMessage",
            json!({
                "message": {"role": "ROLE_USER", "messageId": unique("m"), "parts": [{"text": "notify"}]},
                "configuration": {"returnImmediately": true,
                                  "taskPushNotificationConfig": {"url": inline10, "token": "t10"}},
            }),
        )
        .await;
    let task_id = sent["result"]["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(gate.started().await, task_id);
    let resp = within(
        "POST pushNotificationConfigs",
        server
            .client
            .post(server.endpoint(&format!("/v1/tasks/{task_id}/pushNotificationConfigs")))
            .header("content-type", "application/json")
            .body(json!({"url": rest10}).to_string())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    server
        .rpc_ok(
            "tasks/pushNotificationConfig/set",
            json!({"taskId": task_id, "pushNotificationConfig": {"url": old03}}),
        )
        .await;
    // The version is the store's record: no answer shows it.
    let listed = server
        .rpc_ok("tasks/pushNotificationConfig/list", json!({"id": task_id}))
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    assert!(!listed.to_string().contains("a2aVersion"), "{listed}");
    let listed = server
        .rpc10(
            "ListTaskPushNotificationConfigs",
            json!({"taskId": task_id}),
        )
        .await;
    assert!(!listed.to_string().contains("a2aVersion"), "{listed}");
    gate.release(1);

    // 1.0: bare `StreamResponse`s, ending with the completed status.
    let done10 = |v: &Value| v["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED";
    for got in [&got_inline10, &got_rest10] {
        let bodies = all_until(got, &server, done10).await;
        for b in &bodies {
            let object = b.as_object().unwrap();
            assert_eq!(object.len(), 1, "one StreamResponse member: {b}");
            let (kind, event) = object.iter().next().unwrap();
            assert!(
                ["statusUpdate", "artifactUpdate"].contains(&kind.as_str()),
                "{b}"
            );
            assert_eq!(event["taskId"], task_id.as_str(), "{b}");
            assert!(
                event.get("kind").is_none() && event.get("final").is_none(),
                "{b}"
            );
        }
        let text: String = bodies
            .iter()
            .filter_map(|b| b["artifactUpdate"]["artifact"]["parts"][0]["text"].as_str())
            .collect();
        assert_eq!(text, "released", "the gated handler's answer: {bodies:?}");
    }
    // 0.3, on the same task: the events as before, with their ids and sequence numbers.
    let bodies = all_until(&got_old03, &server, |v| v["final"] == true).await;
    for b in &bodies {
        assert!(
            ["status-update", "artifact-update"].contains(&b["kind"].as_str().unwrap()),
            "{b}"
        );
        assert_eq!(b["taskId"], task_id.as_str());
        assert!(b["eventId"].is_string() && b["sequence"].is_u64(), "{b}");
    }
    assert_eq!(bodies.last().unwrap()["status"]["state"], "completed");
}
