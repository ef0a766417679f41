//! T2/T3: `bindu dispatcher` as a process of its own beside `bindu ingress` and
//! `bindu worker` (Postgres + a private nats-server). Tasks carry inline push configs for a
//! loopback receiver; the dispatcher is SIGKILLed mid-stream and started again: every event
//! of every task arrives, first arrivals in sequence order, duplicates identical. The
//! dispatcher's metrics are served on PUSH__METRICS_ADDR.

use crate::process;
use crate::support::{self, patient_client};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::store::postgres::test_db::TestDb;
use process::Agent;
use serde_json::{json, Value};

const AGENT: &str = "push-dist-agent";

fn command(
    role: &str,
    db: &TestDb,
    nats: &NatsServer,
    extra: &[(&str, &str)],
) -> std::process::Command {
    let keys = std::env::temp_dir().join(format!("bindu-keys-{AGENT}"));
    let keys = keys.to_string_lossy();
    let mut env = vec![("BINDU_KEY_DIR", keys.as_ref())];
    env.extend_from_slice(extra);
    process::distributed(role, AGENT, &db.url, &nats.url(), &env)
}

type Recorded = Arc<Mutex<Vec<Bytes>>>;

/// A receiver that takes 30 ms per notification.
async fn receiver() -> (String, Recorded) {
    let recorded: Recorded = Arc::default();
    let r = recorded.clone();
    let url = support::serve_hook(axum::routing::post(move |body: Bytes| {
        let r = r.clone();
        async move {
            r.lock().unwrap().push(body);
            tokio::time::sleep(Duration::from_millis(30)).await;
            axum::http::StatusCode::OK
        }
    }))
    .await;
    (url, recorded)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_dispatcher_process_is_replaced_without_loss_or_reordering() {
    let nats = NatsServer::start();
    let db = TestDb::new().await;
    let (hook, recorded) = receiver().await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let push = [
        ("PUSH__DESTINATIONS", "loopback"),
        ("PUSH__PER_HOST_CONCURRENCY", "2"),
        ("PUSH__RETRY_BASE_MS", "10"),
        ("PUSH__METRICS_ADDR", metrics_addr.as_str()),
    ];

    // The dispatcher comes first, so its consumer exists before the first event.
    let dispatcher = Agent::start(command("dispatcher", &db, &nats, &push));
    let ingress = Agent::start(command("ingress", &db, &nats, &[("PUSH__ENABLED", "true")]));
    let worker = Agent::start(command("worker", &db, &nats, &[]));
    let url = ingress.url();
    let client = patient_client();

    let card: Value = support::get_json(
        &client,
        format!("http://{}/.well-known/agent-card.json", ingress.addr),
    )
    .await;
    assert_eq!(card["capabilities"]["pushNotifications"], true);

    let tasks = 30;
    let mut ids = Vec::new();
    for i in 0..tasks {
        let resp: Value = client
            .post(&url)
            .json(
                &json!({"jsonrpc": "2.0", "id": i, "method": "message/send", "params": {
                "message": {"role": "user", "messageId": uuid::Uuid::new_v4().to_string(),
                            "parts": [{"kind": "text", "text": format!("task {i}")}]},
                "configuration": {"blocking": false,
                                  "pushNotificationConfig": {"url": hook, "token": "dist"}}}}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(resp["result"]["id"].as_str().unwrap().to_string());
    }
    // Echo tasks: submitted, working, artifact, completed.
    let total = tasks * 4;
    let wait = |n: usize, what: &'static str| {
        let recorded = recorded.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let unique: HashSet<String> = recorded
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|b| serde_json::from_slice::<Value>(b).unwrap()["eventId"].to_string())
                    .collect();
                if unique.len() >= n {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: only {} of {n}",
                    unique.len()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait(total / 4, "notifications before the kill").await;
    dispatcher.kill();
    let before = recorded.lock().unwrap().len();
    assert!(
        before < total,
        "the dispatcher finished before it was killed"
    );
    let dispatcher = Agent::start(command("dispatcher", &db, &nats, &push));
    wait(total, "every notification after the restart").await;

    let got: Vec<Value> = recorded
        .lock()
        .unwrap()
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    let mut first: HashMap<String, &Value> = HashMap::new();
    for id in &ids {
        let mut order = Vec::new();
        for v in got.iter().filter(|v| v["taskId"] == id.as_str()) {
            let event_id = v["eventId"].as_str().unwrap().to_string();
            match first.get(&event_id) {
                Some(earlier) => assert_eq!(*earlier, v, "a duplicate is the same notification"),
                None => {
                    first.insert(event_id, v);
                    order.push(v["sequence"].as_u64().unwrap());
                }
            }
        }
        assert_eq!(order, [1, 2, 3, 4], "task {id}");
    }
    eprintln!(
        "{before} notifications before the kill, {} in all",
        got.len()
    );

    let metrics = client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("bindu_push_deliveries_total{outcome=\"delivered\"}"),
        "{metrics}"
    );
    assert_eq!(dispatcher.stop(), Some(0));
    ingress.kill();
    worker.kill();
}

/// A config set with `tasks/pushNotificationConfig/set` while the task runs (the echo takes
/// 1.5 s) is notified of the task's later events; tasks without a config get nothing, and
/// the dispatcher passes their events over without reading Postgres
/// (`bindu_push_events_skipped_total`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_set_on_a_running_task_is_notified_and_tasks_without_one_are_skipped() {
    let nats = NatsServer::start();
    let db = TestDb::new().await;
    let (hook, recorded) = receiver().await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let push = [
        ("PUSH__DESTINATIONS", "loopback"),
        ("PUSH__METRICS_ADDR", metrics_addr.as_str()),
    ];
    let dispatcher = Agent::start(command("dispatcher", &db, &nats, &push));
    let ingress = Agent::start(command("ingress", &db, &nats, &[("PUSH__ENABLED", "true")]));
    let worker = Agent::start(command(
        "worker",
        &db,
        &nats,
        &[("BINDU_ECHO_DELAY_MS", "1500")],
    ));
    let url = ingress.url();
    let client = patient_client();
    let send = |i: usize| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let resp: Value = client
                .post(&url)
                .json(
                    &json!({"jsonrpc": "2.0", "id": i, "method": "message/send", "params": {
                    "message": {"role": "user", "messageId": uuid::Uuid::new_v4().to_string(),
                                "parts": [{"kind": "text", "text": format!("task {i}")}]},
                    "configuration": {"blocking": false}}}),
                )
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            resp["result"]["id"].as_str().unwrap().to_string()
        }
    };
    for i in 0..5 {
        send(i).await;
    }
    let late = send(99).await;
    let set: Value = client
        .post(&url)
        .json(
            &json!({"jsonrpc": "2.0", "id": "set", "method": "tasks/pushNotificationConfig/set",
            "params": {"taskId": late, "pushNotificationConfig": {"url": hook, "token": "late"}}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(set["result"]["taskId"], late.as_str(), "{set}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got: Vec<Value> = recorded
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        if got.iter().any(|v| v["final"] == true) {
            break got;
        }
        assert!(Instant::now() < deadline, "no final notification: {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        got.iter().all(|v| v["taskId"] == late.as_str()),
        "only the task with a config is notified: {got:?}"
    );
    let last = got.last().unwrap();
    assert_eq!(last["status"]["state"], "completed", "{last}");

    // Five plain echo tasks of four events each were passed over, and the late task's
    // events before its config.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = client
            .get(format!("http://{metrics_addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let skipped = metrics
            .lines()
            .find_map(|l| l.strip_prefix("bindu_push_events_skipped_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if skipped >= 20.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "skipped only {skipped}: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dispatcher.stop(), Some(0));
    ingress.kill();
    worker.kill();
}
