//! A task store that goes down: `/healthz` (readiness) turns 503 while `/health` (liveness)
//! stays 200, and requests get a clear -32603 (HTTP 200), never a hang or an HTTP 500.

use crate::support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bindu_engine::bus::MemoryBus;
use serde_json::{json, Value};
use support::Flaky;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_store_outage_is_reported_not_hung() {
    let store = Arc::new(Flaky::new());
    let bus = Arc::new(MemoryBus::default());
    let shutdown = CancellationToken::new();
    let (addr, server) = support::serve(store.clone(), bus, &shutdown).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let health = |c: reqwest::Client, path: &'static str| async move {
        let r = c.get(format!("http://{addr}{path}")).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };

    let (status, body) = health(client.clone(), "/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(health(client.clone(), "/healthz").await.0, 200);

    store.down.store(true, Ordering::SeqCst);
    // Readiness fails; the process is still alive.
    let (status, body) = health(client.clone(), "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["runtime"]["storage_ready"], false);
    assert_eq!(body["runtime"]["bus_ready"], true);
    let (status, body) = health(client.clone(), "/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["live"], &body["ready"]),
        (&json!(true), &json!(false))
    );

    for (method, params) in [
        (
            "message/send",
            json!({"message": {"role": "user", "messageId": "m", "parts": [{"kind": "text", "text": "x"}]}}),
        ),
        ("tasks/get", json!({"id": "t"})),
        ("tasks/list", json!({})),
    ] {
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client
                .post(format!("http://{addr}/"))
                .json(&json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": params}))
                .send(),
        )
        .await
        .expect("an answer, not a hang")
        .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], -32603, "{method}: {v}");
        assert_eq!(v["id"], 9);
    }

    store.down.store(false, Ordering::SeqCst);
    assert_eq!(health(client, "/healthz").await.0, 200);
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
