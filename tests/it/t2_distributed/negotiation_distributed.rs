//! T2/T3: negotiation on a separate `bindu ingress` reads the load from JetStream: commands
//! waiting for a worker count in `queue_depth` (no task table is read), and the depth falls
//! back to 0 once a `bindu worker` has run them.

use std::time::Duration;

use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::store::postgres::test_db::TestDb;
use serde_json::{json, Value};

use crate::process::{self, Agent};
use crate::skills::example_skills;
use crate::support::{self, patient_client};

const AGENT: &str = "negotiating-agent";

async fn negotiate(c: &reqwest::Client, base: &str) -> Value {
    let resp = c
        .post(format!("{base}/agent/negotiation"))
        .json(&json!({"task_summary": "Why is the sky blue? Explain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

/// Polls negotiation (bounded) until `queue_depth` is `want`; the answer.
async fn depth_becomes(c: &reqwest::Client, base: &str, want: u64) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        last = negotiate(c, base).await;
        if last["queue_depth"] == want {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("queue_depth never became {want}; last answer {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiation_reads_the_queue_depth_from_jetstream() {
    let nats = NatsServer::start();
    let db = TestDb::new().await;
    let skills = example_skills();
    let env = [
        ("BINDU_SKILLS", skills.as_str()),
        ("NEGOTIATION__ENABLED", "true"),
    ];
    let ingress = Agent::start(process::distributed(
        "ingress",
        AGENT,
        &db.url,
        &nats.url(),
        &env,
    ));
    let base = format!("http://{}", ingress.addr);
    let c = patient_client();
    let idle = depth_becomes(&c, &base, 0).await;
    assert_eq!(idle["subscores"]["load"], 1.0);

    // No worker yet: five commands wait on the work queue.
    for i in 0..5 {
        let sent = support::post_rpc(
            &c,
            &ingress.url(),
            json!(i),
            "message/send",
            json!({"message": {"role": "user", "messageId": uuid::Uuid::new_v4().to_string(),
                               "parts": [{"kind": "text", "text": format!("job {i}")}]},
                   "configuration": {"blocking": false}}),
        )
        .await;
        assert_eq!(sent["result"]["status"]["state"], "submitted", "{sent}");
    }
    let busy = depth_becomes(&c, &base, 5).await;
    assert_eq!(busy["subscores"]["load"], 0.1667, "1 / (1 + 5): {busy}");

    let worker = Agent::start(process::distributed(
        "worker",
        AGENT,
        &db.url,
        &nats.url(),
        &env,
    ));
    let drained = depth_becomes(&c, &base, 0).await;
    assert_eq!(drained["subscores"]["load"], 1.0);
    worker.kill();
    ingress.kill();
}
