//! T2/T3: `bindu dispatcher` as a process of its own beside `bindu ingress` and
//! `bindu worker` (Postgres + a private nats-server). Tasks carry inline push configs for a
//! loopback receiver; the dispatcher is SIGKILLed mid-stream and started again: every event
//! of every task arrives, first arrivals in sequence order, duplicates identical. The
//! dispatcher's metrics are served on PUSH__METRICS_ADDR.

use crate::process;
use crate::support::{self, get_text, metric, patient_client, post_rpc, send_params};

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

/// A webhook dispatcher with `push` settings (first, so its consumer exists before the first
/// event), then an ingress with push notifications on.
fn front(db: &TestDb, nats: &NatsServer, push: &[(&str, &str)]) -> (Agent, Agent) {
    let dispatcher = Agent::start(command("dispatcher", db, nats, push));
    let ingress = Agent::start(command("ingress", db, nats, &[("PUSH__ENABLED", "true")]));
    (dispatcher, ingress)
}

type Recorded = Arc<Mutex<Vec<Bytes>>>;

/// The JSON bodies recorded so far.
fn bodies(recorded: &Recorded) -> Vec<Value> {
    recorded
        .lock()
        .unwrap()
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect()
}

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

/// A private nats-server, a fresh database and a webhook [`receiver`] (its URL and what it
/// recorded).
async fn servers() -> (NatsServer, TestDb, String, Recorded) {
    let nats = NatsServer::start();
    let db = TestDb::new().await;
    let (hook, recorded) = receiver().await;
    (nats, db, hook, recorded)
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
    let (nats, db, hook, recorded) = servers().await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let push = [
        ("PUSH__DESTINATIONS", "loopback"),
        ("PUSH__PER_HOST_CONCURRENCY", "2"),
        ("PUSH__RETRY_BASE_MS", "10"),
        ("PUSH__METRICS_ADDR", metrics_addr.as_str()),
    ];

    // The dispatcher comes first, so its consumer exists before the first event.
    let (dispatcher, ingress) = front(&db, &nats, &push);
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
        let configuration =
            json!({"blocking": false, "pushNotificationConfig": {"url": hook, "token": "dist"}});
        let params = send_params(&format!("task {i}"), configuration);
        let resp = post_rpc(&client, &url, json!(i), "message/send", params).await;
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

    let got = bodies(&recorded);
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

    let metrics = get_text(&client, format!("http://{metrics_addr}/metrics")).await;
    assert!(
        metrics.contains("bindu_push_deliveries_total{outcome=\"delivered\"}"),
        "{metrics}"
    );
    assert_eq!(dispatcher.stop(), Some(0));
    ingress.kill();
    worker.kill();
}

/// Sends a non-blocking message; returns the task id.
async fn send_plain(client: &reqwest::Client, url: &str, i: usize) -> String {
    let params = send_params(&format!("task {i}"), json!({"blocking": false}));
    let resp = post_rpc(client, url, json!(i), "message/send", params).await;
    resp["result"]["id"].as_str().unwrap().to_string()
}

/// Sets a push config for `task_id` to `hook`.
async fn set_config(client: &reqwest::Client, url: &str, task_id: &str, hook: &str) {
    let set = post_rpc(
        client,
        url,
        json!("set"),
        "tasks/pushNotificationConfig/set",
        json!({"taskId": task_id, "pushNotificationConfig": {"url": hook, "token": "t"}}),
    )
    .await;
    assert_eq!(set["result"]["taskId"], task_id, "{set}");
}

/// The notifications recorded once one of them is final (bounded: 30 s).
async fn until_final(recorded: &Recorded) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = bodies(recorded);
        if got.iter().any(|v| v["final"] == true) {
            return got;
        }
        assert!(Instant::now() < deadline, "no final notification: {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `bindu_push_events_skipped_total` once it reaches `at_least` (bounded: 15 s).
async fn skipped_reaches(client: &reqwest::Client, metrics_addr: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = get_text(client, format!("http://{metrics_addr}/metrics")).await;
        let skipped = metric(&metrics, "bindu_push_events_skipped_total");
        if skipped >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "skipped only {skipped}: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Tasks without a config get nothing, and the dispatcher passes their events over without
/// reading Postgres (`bindu_push_events_skipped_total`: a fast run's events come in one
/// message opening the task on the bus); a config set with
/// `tasks/pushNotificationConfig/set` while the task runs (the echo takes 1.5 s on the
/// second worker) is notified of the task's later events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_set_on_a_running_task_is_notified_and_tasks_without_one_are_skipped() {
    let (nats, db, hook, recorded) = servers().await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let push = [
        ("PUSH__DESTINATIONS", "loopback"),
        ("PUSH__METRICS_ADDR", metrics_addr.as_str()),
    ];
    let (dispatcher, ingress) = front(&db, &nats, &push);
    let fast = Agent::start(command("worker", &db, &nats, &[]));
    let url = ingress.url();
    let client = patient_client();
    for i in 0..5 {
        send_plain(&client, &url, i).await;
    }
    // Five plain echo tasks of three events each (working, artifact, completed).
    skipped_reaches(&client, &metrics_addr, 15.0).await;
    fast.kill();

    let slow = Agent::start(command(
        "worker",
        &db,
        &nats,
        &[("BINDU_ECHO_DELAY_MS", "1500")],
    ));
    let late = send_plain(&client, &url, 99).await;
    set_config(&client, &url, &late, &hook).await;
    let got = until_final(&recorded).await;
    assert!(
        got.iter().all(|v| v["taskId"] == late.as_str()),
        "only the task with a config is notified: {got:?}"
    );
    let last = got.last().unwrap();
    assert_eq!(last["status"]["state"], "completed", "{last}");
    assert_eq!(dispatcher.stop(), Some(0));
    ingress.kill();
    slow.kill();
}

/// A config set while the task is still queued, and a dispatcher killed after it took the
/// notice but before the task ran: the task's first events on the bus (its run's outcome)
/// say it has a config, so the restarted dispatcher, which never sees the notice again,
/// still notifies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_set_while_queued_survives_a_dispatcher_restart() {
    let (nats, db, hook, recorded) = servers().await;
    let push = [("PUSH__DESTINATIONS", "loopback")];
    let (dispatcher, ingress) = front(&db, &nats, &push);
    let url = ingress.url();
    let client = patient_client();
    // No worker yet: the task waits in the queue.
    let queued = send_plain(&client, &url, 1).await;
    set_config(&client, &url, &queued, &hook).await;
    // Time for the dispatcher to take the notice and ack it (acks go out every 20 ms).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    dispatcher.kill();
    let worker = Agent::start(command("worker", &db, &nats, &[]));
    // The run's outcome is on the bus before the dispatcher comes back.
    support::rpc_wait_for_state(&client, &url, &queued, "completed", Duration::from_secs(20)).await;
    let dispatcher = Agent::start(command("dispatcher", &db, &nats, &push));
    let got = until_final(&recorded).await;
    assert!(
        got.iter().all(|v| v["taskId"] == queued.as_str()),
        "{got:?}"
    );
    assert_eq!(got.last().unwrap()["status"]["state"], "completed");
    assert_eq!(dispatcher.stop(), Some(0));
    ingress.kill();
    worker.kill();
}
