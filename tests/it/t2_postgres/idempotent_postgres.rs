//! T2: idempotent sends across two ingresses sharing one Postgres database: a message resent
//! to the other replica gets the first one's task, and resends racing on both make one task.

use std::sync::Arc;

use bindu_engine::store::postgres::test_db::TestDb;
use serde_json::json;

use crate::support::{self, state, task_id, user_message, TestServer};

async fn replica(db: &TestDb, namespace: &str) -> TestServer {
    TestServer::echo_with(&[
        ("storage.type", "postgres"),
        ("storage.database_url", db.url.as_str()),
        ("storage.namespace", namespace),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_resent_to_another_replica_gets_the_first_task() {
    let db = TestDb::new().await;
    let namespace = format!("dedupe-{}", uuid::Uuid::new_v4().simple());
    let a = Arc::new(replica(&db, &namespace).await);
    let b = Arc::new(replica(&db, &namespace).await);
    let message = user_message("once");
    let first = a.send(message.clone()).await;
    assert_eq!(state(&first), "completed");
    let again = b.send(message.clone()).await;
    assert_eq!(task_id(&again), task_id(&first), "{again}");
    assert_eq!(state(&again), "completed");
    assert_eq!(again["artifacts"], first["artifacts"]);

    // Resends racing on both replicas: one task.
    let message = user_message("raced");
    let mut joins = Vec::new();
    for i in 0..8 {
        let srv = if i % 2 == 0 { a.clone() } else { b.clone() };
        let message = message.clone();
        joins.push(tokio::spawn(
            async move { srv.send_nonblocking(message).await },
        ));
    }
    let mut ids = Vec::new();
    for j in joins {
        ids.push(task_id(&support::within("a resend", j).await.unwrap()));
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let tasks = a.rpc_ok("tasks/list", json!({})).await;
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 2, "{tasks}");
}
