//! T2/T3: webhook dead letters in Postgres, listed and replayed by the `bindu` binary
//! (`bindu webhooks dead-letters`, `bindu webhooks replay`) against a loopback receiver.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use bindu_engine::store::postgres::test_db::TestDb;
use bindu_engine::store::{
    DeadLetter, DeadLetterStore, PostgresDeadLetters, PostgresStore, SubmitRequest, TaskStore,
};
use bindu_schemas::PushNotificationConfig;

const AGENT: &str = "push-pg-agent";

type Recorded = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn receiver() -> (String, Recorded) {
    let recorded: Recorded = Arc::default();
    let r = recorded.clone();
    let url = support::serve_hook(axum::routing::post(
        move |headers: HeaderMap, body: Bytes| {
            let r = r.clone();
            async move {
                r.lock().unwrap().push((headers, body));
                axum::http::StatusCode::OK
            }
        },
    ))
    .await;
    (url, recorded)
}

fn letter(id: &str, url: &str) -> DeadLetter {
    DeadLetter {
        id: id.into(),
        task_id: "t-pg".into(),
        event_id: "t-pg:1".into(),
        seq: 1,
        config_id: "cfg-1".into(),
        url: url.into(),
        body: r#"{"kind":"status-update","taskId":"t-pg","eventId":"t-pg:1","sequence":1}"#.into(),
        attempts: 8,
        last_error: "HTTP 503".into(),
        created_at: String::new(),
        replayed_at: None,
        retrying: false,
    }
}

fn bindu(db: &TestDb, keys: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_bindu"))
        .args(args)
        .env("STORAGE_TYPE", "postgres")
        .env("DATABASE_URL", &db.url)
        .env("STORAGE__NAMESPACE", AGENT)
        .env("BINDU_KEY_DIR", keys)
        .env("PUSH__DESTINATIONS", "loopback")
        .env("PUSH__MAX_ATTEMPTS", "2")
        .env("PUSH__RETRY_BASE_MS", "10")
        .env("LOGGING__DEFAULT_LEVEL", "warn")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_kept_in_postgres_and_replayed_from_the_command_line() {
    let db = Arc::new(TestDb::new().await);
    let store = db.store(AGENT).await;
    let (url, recorded) = receiver().await;
    store
        .submit(
            SubmitRequest::new("t-pg", bindu_engine::store::conformance::user_message("hi"))
                .with_push_config(PushNotificationConfig {
                    url: url.clone(),
                    id: Some("cfg-1".into()),
                    token: Some("pg-token".into()),
                    authentication: None,
                    a2a_version: None,
                }),
        )
        .await
        .unwrap();
    let letters = PostgresDeadLetters::new(
        PostgresStore::pool(&db.options(AGENT)).await.unwrap(),
        AGENT,
    );
    letters.add(letter("t-pg:1:cfg-1", &url)).await.unwrap();
    // The same notification given up again (a redelivery) is recorded once.
    letters.add(letter("t-pg:1:cfg-1", &url)).await.unwrap();
    // Another agent's dead letters are not ours.
    PostgresDeadLetters::new(
        PostgresStore::pool(&db.options("someone-else"))
            .await
            .unwrap(),
        "someone-else",
    )
    .add(letter("theirs", &url))
    .await
    .unwrap();
    assert_eq!(letters.pending().await.unwrap(), 1);
    let got = letters.get("t-pg:1:cfg-1").await.unwrap().unwrap();
    assert_eq!(got.attempts, 8);
    assert!(got.created_at.ends_with('Z'), "{}", got.created_at);

    let keys = std::env::temp_dir().join(format!("bindu-push-keys-{}", uuid::Uuid::new_v4()));
    let (db2, keys2) = (db.clone(), keys.clone());
    let (listed, replayed, again) = tokio::task::spawn_blocking(move || {
        (
            bindu(&db2, &keys2, &["webhooks", "dead-letters", "--json"]),
            bindu(&db2, &keys2, &["webhooks", "replay", "t-pg:1:cfg-1"]),
            bindu(&db2, &keys2, &["webhooks", "replay", "t-pg:1:cfg-1"]),
        )
    })
    .await
    .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "only this agent's dead letters");
    assert_eq!(lines[0]["id"], "t-pg:1:cfg-1");
    assert_eq!(lines[0]["lastError"], "HTTP 503");

    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let posts = recorded.lock().unwrap().clone();
    assert_eq!(posts.len(), 1);
    let (headers, body) = &posts[0];
    assert_eq!(
        body.as_ref(),
        letter("x", "y").body.as_bytes(),
        "the stored body"
    );
    assert_eq!(headers["authorization"], "Bearer pg-token");
    let (key, _) = bindu_engine::identity::load_or_create(&keys, false).unwrap();
    let id = bindu_engine::identity::Identity::new(key, "", "x");
    let did = headers["x-did"].to_str().unwrap();
    assert_eq!(did, id.did_key());
    bindu::verify_notification(
        headers,
        body,
        did,
        &id.webhook_public_key_base58(),
        Duration::from_secs(60),
    )
    .expect("signed with the agent's webhook key");
    assert_eq!(letters.pending().await.unwrap(), 0);
    assert!(letters
        .get("t-pg:1:cfg-1")
        .await
        .unwrap()
        .unwrap()
        .replayed_at
        .is_some());

    assert_eq!(
        again.status.code(),
        Some(1),
        "a replayed dead letter is not sent twice"
    );
    assert_eq!(recorded.lock().unwrap().len(), 1);
    std::fs::remove_dir_all(&keys).ok();
}
