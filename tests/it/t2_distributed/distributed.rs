//! T2/T3 distributed mode: the built binaries as separate processes on a private bus server
//! (nats-server, and redis-server with the `t2-redis` feature) and a fresh Postgres
//! database. One or two ingresses, two workers; a worker is SIGKILLed mid-run; cancel and
//! resubscribe cross process boundaries; the bus server restarts. Each test runs on every
//! bus.

use crate::support::{self, patient_client, result_kinds};

use crate::process;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bindu_engine::bus::nats_server::NatsServer;
#[cfg(feature = "t2-redis")]
use bindu_engine::bus::redis_server::RedisServer;
use bindu_engine::store::postgres::test_db::TestDb;
use bindu_engine::store::{Access, ListQuery, TaskStore};
use bindu_schemas::TaskState;
use process::{bindu, Agent};
use serde_json::{json, Value};

const AGENT: &str = "dist-agent";

/// A private server of the bus under test.
enum Server {
    Nats(NatsServer),
    #[cfg(feature = "t2-redis")]
    Redis(RedisServer),
}

#[derive(Clone, Copy)]
enum Kind {
    Nats,
    #[cfg(feature = "t2-redis")]
    Redis,
}

impl Server {
    fn start(kind: Kind) -> Server {
        match kind {
            Kind::Nats => Server::Nats(NatsServer::start()),
            #[cfg(feature = "t2-redis")]
            Kind::Redis => Server::Redis(RedisServer::start()),
        }
    }

    /// The variables that select this bus, with a 2 s ack wait.
    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Server::Nats(s) => vec![
                ("SCHEDULER_TYPE", "nats".into()),
                ("NATS_URL", s.url()),
                ("NATS__ACK_WAIT", "2".into()),
            ],
            #[cfg(feature = "t2-redis")]
            Server::Redis(s) => vec![
                ("SCHEDULER_TYPE", "redis".into()),
                ("REDIS_URL", s.url()),
                ("REDIS_BUS__ACK_WAIT", "2".into()),
            ],
        }
    }

    fn stop(&mut self) {
        match self {
            Server::Nats(s) => s.stop(),
            #[cfg(feature = "t2-redis")]
            Server::Redis(s) => s.stop(),
        }
    }

    fn restart(&mut self) {
        match self {
            Server::Nats(s) => s.restart(),
            #[cfg(feature = "t2-redis")]
            Server::Redis(s) => s.restart(),
        }
    }
}

/// `#[tokio::test]`s named `<test>_on_nats` (and `<test>_on_redis` with `t2-redis`), each
/// running the async fn `<test>(Kind)` on its bus.
macro_rules! on_every_bus {
    ($($test:ident),+ $(,)?) => {
        mod on_nats {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(super::Kind::Nats).await
            })+
        }
        #[cfg(feature = "t2-redis")]
        mod on_redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(super::Kind::Redis).await
            })+
        }
    };
}

on_every_bus!(
    tasks_survive_a_killed_worker_and_cross_process_boundaries,
    processes_ride_out_a_bus_restart,
    oversized_results_and_unstorable_input_never_fail_other_callers,
);

fn command(
    role: &str,
    db: &TestDb,
    server: &Server,
    extra: &[(&str, &str)],
) -> std::process::Command {
    let bus = server.env();
    let bus: Vec<(&str, &str)> = bus.iter().map(|(k, v)| (*k, v.as_str())).collect();
    process::distributed_on(role, AGENT, &db.url, &bus, extra)
}

async fn rpc(c: &reqwest::Client, url: &str, method: &str, params: Value) -> Value {
    support::post_rpc(c, url, json!("d"), method, params).await
}

fn send_params(text: &str, blocking: bool) -> Value {
    json!({"message": {"role": "user", "messageId": uuid::Uuid::new_v4().to_string(),
                       "parts": [{"kind": "text", "text": text}]},
           "configuration": {"blocking": blocking}})
}

/// Reads an SSE body until it ends, returning each `data:` JSON.
async fn sse(resp: reqwest::Response) -> Vec<Value> {
    support::sse_json(resp, Duration::from_secs(60)).await
}

/// `tasks/resubscribe` (JSON-RPC id `id`) to task `sid` at `url`, with `Last-Event-ID` if
/// any; every event until the stream ends.
async fn resubscribe(
    c: &reqwest::Client,
    url: &str,
    id: u64,
    sid: &str,
    last_event_id: Option<&str>,
) -> Vec<Value> {
    let mut req = c.post(url);
    if let Some(last) = last_event_id {
        req = req.header("Last-Event-ID", last);
    }
    let resp = req
        .json(&json!({"jsonrpc": "2.0", "id": id, "method": "tasks/resubscribe", "params": {"id": sid}}))
        .send()
        .await
        .unwrap();
    sse(resp).await
}

/// A JSON-lines agent (the `command` handler's protocol) whose task runs until it is
/// canceled: it appends each cancel line it receives to the file named by its argument.
const CANCEL_RECORDING_AGENT: &str = r#"
marker="$1"
while IFS= read -r line; do
  case "$line" in
    *'"type":"task"'*)
      echo '{"type":"status","text":"running until canceled"}'
      if IFS= read -r -t 30 next; then
        case "$next" in
          *'"type":"cancel"'*) printf '%s\n' "$next" >> "$marker" ;;
        esac
        echo '{"type":"error","message":"canceled"}'
      else
        echo '{"type":"result","text":"never canceled"}'
      fi ;;
  esac
done
"#;

/// Deliveries made by the workers' JetStream consumer and commands in the stream: the
/// consumer numbers every delivery, redeliveries included, and the stream every command
/// (one subject, no filter), so the first exceeds the second exactly when a command was
/// delivered again.
async fn command_deliveries(nats: &NatsServer) -> (u64, u64) {
    use futures::TryStreamExt;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let names: Vec<String> = js.stream_names().try_collect().await.unwrap();
    let name = names
        .iter()
        .find(|n| n.ends_with("_COMMANDS"))
        .unwrap_or_else(|| panic!("a commands stream: {names:?}"));
    let mut stream = js.get_stream(name).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let consumer = stream.consumer_info("workers").await.unwrap();
    (consumer.delivered.consumer_sequence, last)
}

/// Whether a command was delivered again after the victim died: on NATS the consumer
/// counts deliveries beyond the stream's commands; on Redis the survivor counts the
/// redeliveries it took (`bindu_worker_redeliveries_total` on its /metrics).
async fn some_command_was_redelivered(server: &Server, survivor: &Agent) -> bool {
    match server {
        Server::Nats(nats) => {
            let _ = survivor;
            let (deliveries, messages) = command_deliveries(nats).await;
            deliveries > messages
        }
        #[cfg(feature = "t2-redis")]
        Server::Redis(_) => {
            let metrics = reqwest::get(format!("http://{}/metrics", survivor.addr))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            metrics
                .lines()
                .find_map(|l| l.strip_prefix("bindu_worker_redeliveries_total "))
                .and_then(|n| n.trim().parse::<f64>().ok())
                .is_some_and(|n| n > 0.0)
        }
    }
}

async fn tasks_survive_a_killed_worker_and_cross_process_boundaries(kind: Kind) {
    let server = Server::start(kind);
    let db = TestDb::new().await;
    let slow = [
        ("BINDU_ECHO_DELAY_MS", "150"),
        ("BINDU_WORKER_CONCURRENCY", "32"),
    ];

    // Refuses to run as a separate process on process-local backends.
    let out = bindu().args(["worker"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("STORAGE_TYPE=memory"));

    let ingress = Agent::start(command("ingress", &db, &server, &[]));
    let ingress_b = Agent::start(command("ingress", &db, &server, &[]));
    let victim = Agent::start(command("worker", &db, &server, &slow));
    let survivor = Agent::start(command("worker", &db, &server, &slow));
    let url = ingress.url();
    let c = patient_client();

    // A few thousand tasks, 64 at a time; one worker dies a quarter of the way in.
    let total = 2000usize;
    let ids = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(total)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..64 {
        let (c, url, ids, next) = (c.clone(), url.clone(), ids.clone(), next.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    return;
                }
                let r = rpc(
                    &c,
                    &url,
                    "message/send",
                    send_params(&format!("task {i}"), false),
                )
                .await;
                let id = r["result"]["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("accepted: {r}"))
                    .to_string();
                ids.lock().await.push(id);
            }
        }));
    }
    while next.load(std::sync::atomic::Ordering::SeqCst) < total / 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.kill();
    for s in senders {
        s.await.unwrap();
    }
    let ids = ids.lock().await.clone();
    assert_eq!(ids.len(), total);

    // Every task completes exactly once: one artifact, one agent reply.
    let store = db.store(AGENT).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counts: HashMap<TaskState, u64> =
            store.count_by_state().await.unwrap().into_iter().collect();
        if counts[&TaskState::Completed] == total as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all tasks completed: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut cursor = None;
    let mut seen = 0;
    loop {
        let page = store
            .list_tasks(
                Access::Internal,
                ListQuery::first(500).after(cursor.clone()).into(),
            )
            .await
            .unwrap();
        for t in &page.items {
            assert_eq!(t.status.state, TaskState::Completed);
            assert_eq!(
                t.artifacts.as_ref().map(Vec::len),
                Some(1),
                "one artifact: {t:?}"
            );
            assert_eq!(
                t.history.as_ref().map(Vec::len),
                Some(2),
                "one reply: {t:?}"
            );
            seen += 1;
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, total);
    // The victim died with commands in hand: JetStream delivered some of them again (to the
    // survivor), and still every task completed once.
    assert!(
        some_command_was_redelivered(&server, &survivor).await,
        "no command was redelivered: the killed worker held no work"
    );

    // Cancel across processes: the ingress cancels what a worker is running, and the handler
    // in the worker process hears it (the agent script records the cancel line it gets).
    let agent_dir = std::env::temp_dir().join(format!(
        "bindu-dist-cancel-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&agent_dir).unwrap();
    let script = agent_dir.join("agent.sh");
    let marker = agent_dir.join("cancels");
    std::fs::write(&script, CANCEL_RECORDING_AGENT).unwrap();
    let handler_command = format!("bash {} {}", script.display(), marker.display());
    let canceler = Agent::start(command(
        "worker",
        &db,
        &server,
        &[
            ("BINDU_HANDLER", "command"),
            ("BINDU_HANDLER_COMMAND", &handler_command),
        ],
    ));
    survivor.stop();
    // Started as a stream, so the `working` event (announced, not stored) is seen.
    let resp = c
        .post(&url)
        .json(
            &json!({"jsonrpc": "2.0", "id": "long", "method": "message/stream",
                      "params": send_params("long", true)}),
        )
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let mut tid = String::new();
    {
        use futures::StreamExt;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !text.contains(r#""state":"working""#) {
            assert!(Instant::now() < deadline, "no working event: {text}");
            let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
            if tid.is_empty() {
                if let Some(first) = text.lines().find_map(|l| l.strip_prefix("data: ")) {
                    let v: Value = serde_json::from_str(first).unwrap();
                    tid = v["result"]["id"].as_str().unwrap().to_string();
                }
            }
        }
    }
    let canceled = rpc(&c, &url, "tasks/cancel", json!({"id": tid})).await;
    assert_eq!(
        canceled["result"]["status"]["state"], "canceled",
        "{canceled}"
    );
    // The stream ends with the cancellation, long before the handler's 3 s were up.
    let started = Instant::now();
    {
        use futures::StreamExt;
        while let Some(Ok(chunk)) = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .unwrap()
        {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(text.contains(r#""state":"canceled""#), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the stream ended at the cancel"
    );
    let later = rpc(&c, &url, "tasks/get", json!({"id": tid})).await;
    assert_eq!(later["result"]["status"]["state"], "canceled", "{later}");
    assert!(later["result"].get("artifacts").is_none(), "{later}");
    // The worker process passed the cancel on to the handler: the agent got the cancel line
    // for this task (the store would show `canceled` even if nobody told the handler).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = std::fs::read_to_string(&marker).unwrap_or_default();
        if seen.contains(r#""type":"cancel""#) && seen.contains(&tid) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the handler never got the cancel of {tid}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let long = Agent::start(command(
        "worker",
        &db,
        &server,
        &[("BINDU_ECHO_DELAY_MS", "3000")],
    ));
    canceler.stop();
    let _ = std::fs::remove_dir_all(&agent_dir);

    // A stream started on one ingress is resumed on another.
    let resp = c
        .post(&url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "message/stream", "params": send_params("streamed", true)}))
        .send()
        .await
        .unwrap();
    let mut first = resp.bytes_stream();
    use futures::StreamExt;
    let chunk = tokio::time::timeout(Duration::from_secs(10), first.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let line = String::from_utf8_lossy(&chunk).to_string();
    let task: Value =
        serde_json::from_str(line.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    let sid = task["result"]["id"].as_str().unwrap().to_string();
    drop(first);
    let events = resubscribe(&c, &ingress_b.url(), 2, &sid, None).await;
    assert_eq!(
        events[0]["result"]["kind"], "task",
        "snapshot first: {events:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["result"]["final"], true, "{events:?}");
    assert_eq!(last["result"]["status"]["state"], "completed");
    // Last-Event-ID: replay from the bus exactly what came after event 1.
    let replayed = resubscribe(&c, &ingress_b.url(), 3, &sid, Some("1")).await;
    assert_eq!(
        result_kinds(&replayed),
        ["status-update", "artifact-update", "status-update"],
        "{replayed:?}"
    );
    assert_eq!(replayed[0]["result"]["status"]["state"], "working");
    // Last-Event-ID 0: nothing seen yet, so the task first (its `submitted` event was never
    // on the bus: no webhook), then everything after it.
    let replayed = resubscribe(&c, &ingress_b.url(), 4, &sid, Some("0")).await;
    assert_eq!(replayed[0]["result"]["kind"], "task", "{replayed:?}");
    assert_eq!(replayed[0]["result"]["id"], sid.as_str(), "{replayed:?}");
    let last = replayed.last().unwrap();
    assert_eq!(
        last["result"]["status"]["state"], "completed",
        "{replayed:?}"
    );

    long.stop();
    ingress_b.stop();
    assert_eq!(ingress.stop(), Some(0));
}

async fn processes_ride_out_a_bus_restart(kind: Kind) {
    let mut server = Server::start(kind);
    let db = TestDb::new().await;
    let ingress = Agent::start(command("ingress", &db, &server, &[]));
    let worker = Agent::start(command("worker", &db, &server, &[]));
    let c = patient_client();
    let url = ingress.url();
    let before = rpc(&c, &url, "message/send", send_params("before", true)).await;
    assert_eq!(before["result"]["status"]["state"], "completed", "{before}");

    server.stop();
    // While the bus is down a send is refused with a JSON-RPC error, never a false success.
    let started = Instant::now();
    let during = rpc(&c, &url, "message/send", send_params("during", false)).await;
    assert_eq!(during["error"]["code"], -32603, "{during}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "refused at once, not after waiting out the outage"
    );
    server.restart();
    // The task it recorded was failed with the reason, not left `submitted`.
    let list = rpc(&c, &url, "tasks/list", json!({"limit": 10})).await;
    let tasks = list["result"]["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let lost = tasks
        .iter()
        .find(|t| t["history"][0]["parts"][0]["text"] == "during")
        .unwrap_or_else(|| panic!("the refused send's task is listed: {list}"));
    assert_eq!(lost["status"]["state"], "failed", "{lost}");
    assert!(
        lost["status"]["message"]["parts"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("could not be queued"),
        "{lost}"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let after = rpc(&c, &url, "message/send", send_params("after", true)).await;
        if after["result"]["status"]["state"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {after}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    worker.stop();
    ingress.stop();
}

/// Results larger than the bus carries (1 MiB on NATS and Redis) still reach blocking and streaming clients:
/// the event is published truncated and the ingress reads the task from the store. A NUL
/// character, which Postgres cannot store, is refused at validation (-32602) and never
/// fails the requests sent beside it.
async fn oversized_results_and_unstorable_input_never_fail_other_callers(kind: Kind) {
    let server = Server::start(kind);
    let db = TestDb::new().await;
    let ingress = Agent::start(command("ingress", &db, &server, &[]));
    let worker = Agent::start(command("worker", &db, &server, &[]));
    let c = patient_client();
    let url = ingress.url();

    let big = "x".repeat(1536 * 1024);
    let r = rpc(&c, &url, "message/send", send_params(&big, true)).await;
    let task = &r["result"];
    assert_eq!(
        task["status"]["state"],
        "completed",
        "{}",
        &r.to_string()[..200.min(r.to_string().len())]
    );
    let artifact_text = task["artifacts"][0]["parts"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(
        artifact_text.len() >= big.len(),
        "the whole result reached the blocking client"
    );

    let resp = c
        .post(&url)
        .json(
            &json!({"jsonrpc": "2.0", "id": "s", "method": "message/stream",
                      "params": send_params(&big, true)}),
        )
        .send()
        .await
        .unwrap();
    let events = sse(resp).await;
    let last = events.last().expect("events");
    assert_eq!(
        last["result"]["kind"], "task",
        "the result comes as the stored task"
    );
    assert_eq!(last["result"]["status"]["state"], "completed");
    let streamed = last["result"]["artifacts"][0]["parts"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(
        streamed.len() >= big.len(),
        "the whole result reached the stream"
    );

    // 49 ordinary sends and one with a NUL character, at once.
    let mut handles = Vec::new();
    for i in 0..50 {
        let (c, url) = (c.clone(), url.clone());
        handles.push(tokio::spawn(async move {
            let text = if i == 7 {
                "bad \u{0} input".to_string()
            } else {
                format!("ok {i}")
            };
            (
                i,
                rpc(&c, &url, "message/send", send_params(&text, true)).await,
            )
        }));
    }
    for h in handles {
        let (i, r) = h.await.unwrap();
        if i == 7 {
            assert_eq!(r["error"]["code"], -32602, "{r}");
            assert!(
                r["error"]["message"].as_str().unwrap_or("").contains("NUL"),
                "{r}"
            );
        } else {
            assert_eq!(r["result"]["status"]["state"], "completed", "send {i}: {r}");
        }
    }
    worker.stop();
    ingress.stop();
}
