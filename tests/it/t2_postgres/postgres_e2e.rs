//! T2/T3: the `bindu` binary on a real Postgres: migrations, tasks surviving a restart of
//! the agent, and `bindu tasks purge` from another process.

use crate::process;
use crate::support;

use std::time::{Duration, Instant};

use bindu_engine::store::postgres::test_db::{OutageProxy, TestDb};
use process::{bindu, rpc, Agent};
use serde_json::{json, Value};

fn with_db(cmd: &mut std::process::Command, db: &TestDb) {
    cmd.env("STORAGE_TYPE", "postgres")
        .env("DATABASE_URL", &db.url)
        .env("BINDU_AGENT_NAME", "e2e-agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_survive_restarts_and_can_be_purged() {
    let db = TestDb::new().await;
    let db = std::sync::Arc::new(db);
    let db2 = db.clone();
    // The binary is driven from a blocking thread (it uses blocking helpers).
    tokio::task::spawn_blocking(move || scenario(&db2))
        .await
        .unwrap();
    drop(db);
}

fn scenario(db: &TestDb) {
    // `bindu migrate` is idempotent.
    for _ in 0..2 {
        let mut cmd = bindu();
        with_db(&mut cmd, db);
        let out = cmd.arg("migrate").output().unwrap();
        process::assert_success(&out);
        assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    }

    let mut cmd = bindu();
    with_db(&mut cmd, db);
    cmd.args(["serve", "--port", "0", "--log-level", "warn"]);
    let agent = Agent::start(cmd);
    let done = rpc(
        &agent.url(),
        "message/send",
        json!({"message": {"role": "user", "messageId": "m1", "contextId": "ctx-e2e", "parts": [{"kind": "text", "text": "persist me"}]}}),
    );
    assert_eq!(done["result"]["status"]["state"], "completed", "{done}");
    let task_id = done["result"]["id"].as_str().unwrap().to_string();
    assert_eq!(agent.stop(), Some(0));

    // A new process reads the same task back.
    let mut cmd = bindu();
    with_db(&mut cmd, db);
    cmd.args(["serve", "--port", "0", "--log-level", "warn"]);
    let agent = Agent::start(cmd);
    let got = rpc(&agent.url(), "tasks/get", json!({"id": task_id}));
    assert_eq!(got["result"], done["result"], "identical after a restart");
    let health = rpc(&agent.url(), "contexts/list", json!({}));
    assert_eq!(health["result"]["contexts"][0]["contextId"], "ctx-e2e");

    // Purge from another process: a dry run by default, then for real.
    let purge = |yes: bool| {
        let mut cmd = bindu();
        with_db(&mut cmd, db);
        cmd.args(["tasks", "purge", "--older-than", "0s"]);
        if yes {
            cmd.arg("--yes");
        }
        let out = cmd.output().unwrap();
        process::assert_success(&out);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let dry = purge(false);
    assert!(dry.starts_with("1 terminal task(s)"), "{dry}");
    assert_eq!(
        rpc(&agent.url(), "tasks/get", json!({"id": task_id}))["result"]["id"],
        json!(task_id)
    );
    let real = purge(true);
    assert!(real.starts_with("deleted 1 terminal task(s)"), "{real}");
    let gone = rpc(&agent.url(), "tasks/get", json!({"id": task_id}));
    assert_eq!(gone["error"]["code"], -32001, "{gone}");
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn an_unreachable_database_stops_start_up_with_a_clear_error() {
    let mut cmd = bindu();
    cmd.env("STORAGE_TYPE", "postgres")
        .env("DATABASE_URL", "postgres://bindu:hunter2@127.0.0.1:1/bindu")
        .env("STORAGE__TIMEOUT", "2")
        .args(["serve", "--port", "0"]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to Postgres at postgres://bindu:***@127.0.0.1:1/bindu"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

/// The ingress on a real Postgres that goes away (a TCP proxy in front of it cuts every
/// connection and refuses new ones, like a database restart): `/healthz` turns 503 with the
/// store not ready, JSON-RPC calls are answered -32603 (HTTP 200) within the store's timeout
/// instead of hanging, and everything works again once the database is back, with the task
/// accepted before the outage intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_reports_a_postgres_outage_and_recovers() {
    let db = TestDb::new().await;
    let proxy = OutageProxy::start(&db.url).await;
    let srv = support::TestServer::echo_with(&[
        ("storage.type", "postgres"),
        ("storage.database_url", &proxy.url),
        ("storage.timeout_secs", "2"),
        ("agent.name", "outage-agent"),
    ])
    .await;
    let health = || async {
        let (status, _, body) = srv.get("/healthz").await;
        (status, serde_json::from_str::<Value>(&body).unwrap())
    };
    let (status, body) = health().await;
    assert_eq!((status, &body["ready"]), (200, &json!(true)), "{body}");
    let before = srv
        .rpc_send(support::user_message("before the outage"))
        .await;
    assert_eq!(before["result"]["status"]["state"], "completed", "{before}");
    let before_id = before["result"]["id"].as_str().unwrap().to_string();

    proxy.go_down();
    let refused = proxy.refused();
    let (status, body) = health().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["runtime"]["storage_ready"], false, "{body}");
    for (method, params) in [
        (
            "message/send",
            json!({"message": support::user_message("during the outage")}),
        ),
        ("tasks/get", json!({"id": before_id})),
        ("tasks/list", json!({})),
    ] {
        let started = Instant::now();
        let r = srv.rpc(method, params).await;
        assert_eq!(r["error"]["code"], -32603, "{method}: {r}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{method}: answered within the store timeout, took {:?}",
            started.elapsed()
        );
    }
    // The answers came from the store trying the database, not from a shortcut.
    assert!(proxy.refused() > refused, "no attempt reached the database");

    proxy.come_back();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = health().await;
        if status == 200 {
            assert_eq!(body["runtime"]["storage_ready"], true, "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = srv.rpc("tasks/get", json!({"id": before_id})).await;
    assert_eq!(got["result"]["status"]["state"], "completed", "{got}");
    let after = srv
        .rpc_send(support::user_message("after the outage"))
        .await;
    assert_eq!(after["result"]["status"]["state"], "completed", "{after}");
}
