//! T2/T3: a user-built worker (`Agent::builder().worker()`, a Rust closure) serving a
//! separate `bindu ingress` process over a private nats-server and a fresh Postgres
//! database: streamed chunks reach the ingress's SSE clients, and an input-required task
//! resumes across processes.

use crate::support;

use crate::process;

use std::time::Duration;

use bindu::schemas::Part;
use bindu::{handler_fn, Agent, HandlerError, HandlerInput, HandlerOutput};
use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::store::postgres::test_db::TestDb;
use process::bindu;
use serde_json::{json, Value};

const AGENT: &str = "handlers-dist";

async fn streamer(input: HandlerInput) -> Result<HandlerOutput, HandlerError> {
    let text = crate::support::user_text(&input);
    if text == "ask" {
        return Ok(HandlerOutput::InputRequired("Which city?".into()));
    }
    let mut s = input.emitter.stream("words");
    for w in text.split_inclusive(' ') {
        s.send(vec![Part::text(w)]).await?;
    }
    s.finish(vec![]).await?;
    Ok(HandlerOutput::Streamed)
}

async fn rpc(c: &reqwest::Client, url: &str, method: &str, params: Value) -> Value {
    support::post_rpc(c, url, json!(1), method, params).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_worker_serves_a_separate_ingress() {
    let nats = NatsServer::start();
    let db = TestDb::new().await;
    let key_dir = std::env::temp_dir().join(format!("bindu-hd-{}", uuid::Uuid::new_v4()));
    let shared = [
        ("STORAGE_TYPE", "storage.type", "postgres".to_string()),
        ("DATABASE_URL", "storage.database_url", db.url.clone()),
        ("SCHEDULER_TYPE", "scheduler.type", "nats".to_string()),
        ("NATS_URL", "nats.url", nats.url()),
        ("STORAGE__NAMESPACE", "storage.namespace", AGENT.to_string()),
        ("BINDU_AGENT_NAME", "agent.name", AGENT.to_string()),
        (
            "BINDU_KEY_DIR",
            "identity.dir",
            key_dir.display().to_string(),
        ),
    ];

    let mut cmd = bindu();
    for (env, _, v) in &shared {
        cmd.env(env, v);
    }
    cmd.args(["ingress", "--port", "0", "--log-level", "warn"]);
    let ingress = process::Agent::start(cmd);

    let mut settings: Vec<(&str, &str)> = shared.iter().map(|(_, k, v)| (*k, v.as_ref())).collect();
    // Its probes on a free port: tests run side by side.
    settings.push(("worker.metrics_addr", "127.0.0.1:0"));
    let config = bindu::Config::from_settings(&settings).unwrap();
    let worker = tokio::time::timeout(
        Duration::from_secs(60),
        Agent::builder()
            .config(config)
            .handler(handler_fn(streamer))
            .worker(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(worker.http_addr().is_none(), "a worker serves no JSON-RPC");
    let probes = worker.probe_addr().expect("a worker serves its probes");
    let live = support::patient_client()
        .get(format!("http://{probes}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    let c = support::patient_client();
    let url = ingress.url();
    let resp = c
        .post(&url)
        .header("accept", "text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "message/stream",
                      "params": {"message": {"role": "user", "messageId": uuid::Uuid::new_v4().to_string(),
                                             "parts": [{"kind": "text", "text": "across the bus"}]}}}))
        .send()
        .await
        .unwrap();
    let events = support::sse_json(resp, Duration::from_secs(60)).await;
    let chunks: Vec<String> = events
        .iter()
        .filter(|e| e["result"]["kind"] == "artifact-update")
        .map(|e| {
            e["result"]["artifact"]["parts"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(chunks, ["across ", "the ", "bus", ""], "{events:#?}");
    let last = &events.last().unwrap()["result"];
    assert_eq!(last["status"]["state"], "completed", "{events:#?}");

    let paused = rpc(
        &c,
        &url,
        "message/send",
        json!({"message": {"role": "user", "messageId": "m-ask", "parts": [{"kind": "text", "text": "ask"}]}}),
    )
    .await;
    assert_eq!(
        paused["result"]["status"]["state"], "input-required",
        "{paused}"
    );
    let tid = paused["result"]["id"].as_str().unwrap().to_string();
    let done = rpc(
        &c,
        &url,
        "message/send",
        json!({"message": {"role": "user", "messageId": "m-city", "taskId": tid,
                           "parts": [{"kind": "text", "text": "Paris it is"}]}}),
    )
    .await;
    assert_eq!(done["result"]["status"]["state"], "completed", "{done}");
    // ask, the prompt, the answer, and the streamed reply as one agent message.
    let history = done["result"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 4, "{done}");
    assert_eq!(history[3]["role"], "agent");
    assert_eq!(history[3]["parts"][0]["text"], "Paris it is");

    worker.shutdown();
    tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ingress.stop(), Some(0));
    std::fs::remove_dir_all(key_dir).ok();
}
