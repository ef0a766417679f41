//! Push notification configs, and the extended card.

use super::*;

// ---- 12. push notification configs ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_notification_configs_can_be_set_read_listed_and_deleted() {
    let srv = TestServer::echo().await;
    let tid = task_id(&srv.send(user_message("push")).await);

    let none = srv
        .rpc_ok("tasks/pushNotificationConfig/list", json!({"id": tid}))
        .await;
    assert_eq!(none, json!([]));

    let first = srv
        .rpc_ok(
            "tasks/pushNotificationConfig/set",
            json!({"taskId": tid, "pushNotificationConfig": {"url": "http://127.0.0.1:9/hook", "token": "t1"}}),
        )
        .await;
    assert_eq!(first["taskId"], json!(tid));
    let first_cfg_id = first["pushNotificationConfig"]["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("an id is assigned: {first}"))
        .to_string();
    assert_eq!(
        first["pushNotificationConfig"]["url"],
        "http://127.0.0.1:9/hook"
    );

    let second = srv
        .rpc_ok(
            "tasks/pushNotificationConfig/set",
            json!({"taskId": tid, "pushNotificationConfig": {"id": "cfg-2", "url": "https://example.com/webhook"}}),
        )
        .await;
    assert_eq!(second["pushNotificationConfig"]["id"], "cfg-2");

    let by_id = srv
        .rpc_ok(
            "tasks/pushNotificationConfig/get",
            json!({"id": tid, "pushNotificationConfigId": "cfg-2"}),
        )
        .await;
    assert_eq!(by_id["taskId"], json!(tid));
    assert_eq!(
        by_id["pushNotificationConfig"]["url"],
        "https://example.com/webhook"
    );
    let any = srv
        .rpc_ok("tasks/pushNotificationConfig/get", json!({"id": tid}))
        .await;
    assert!(
        [json!(first_cfg_id), json!("cfg-2")].contains(&any["pushNotificationConfig"]["id"]),
        "{any}"
    );

    let list = srv
        .rpc_ok("tasks/pushNotificationConfig/list", json!({"id": tid}))
        .await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let mut ids: Vec<&str> = list
        .iter()
        .map(|c| {
            assert_eq!(c["taskId"], json!(tid));
            c["pushNotificationConfig"]["id"].as_str().unwrap()
        })
        .collect();
    ids.sort_unstable();
    let mut want = vec![first_cfg_id.as_str(), "cfg-2"];
    want.sort_unstable();
    assert_eq!(ids, want);

    let deleted = srv
        .rpc_ok(
            "tasks/pushNotificationConfig/delete",
            json!({"id": tid, "pushNotificationConfigId": "cfg-2"}),
        )
        .await;
    assert_eq!(deleted, Value::Null);
    let list = srv
        .rpc_ok("tasks/pushNotificationConfig/list", json!({"id": tid}))
        .await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["pushNotificationConfig"]["id"], json!(first_cfg_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_notification_config_errors() {
    let srv = TestServer::echo().await;
    let cfg = json!({"url": "https://example.com/webhook"});
    let unknown = "no-such-task";
    assert_eq!(
        srv.rpc_err(
            "tasks/pushNotificationConfig/set",
            json!({"taskId": unknown, "pushNotificationConfig": cfg}),
        )
        .await,
        TASK_NOT_FOUND
    );
    assert_eq!(
        srv.rpc_err("tasks/pushNotificationConfig/get", json!({"id": unknown}))
            .await,
        TASK_NOT_FOUND
    );
    assert_eq!(
        srv.rpc_err("tasks/pushNotificationConfig/list", json!({"id": unknown}))
            .await,
        TASK_NOT_FOUND
    );
    assert_eq!(
        srv.rpc_err(
            "tasks/pushNotificationConfig/delete",
            json!({"id": unknown, "pushNotificationConfigId": "x"}),
        )
        .await,
        TASK_NOT_FOUND
    );

    let tid = task_id(&srv.send(user_message("push errors")).await);
    for url in ["ftp://x", "example.com/webhook", "http://"] {
        assert_eq!(
            srv.rpc_err(
                "tasks/pushNotificationConfig/set",
                json!({"taskId": tid, "pushNotificationConfig": {"url": url}}),
            )
            .await,
            INVALID_PARAMS,
            "{url}"
        );
    }
    // Also when given inline with message/send.
    let code = srv
        .rpc_err(
            "message/send",
            json!({
                "message": user_message("inline"),
                "configuration": {"pushNotificationConfig": {"url": "ftp://x"}},
            }),
        )
        .await;
    assert_eq!(code, INVALID_PARAMS);
    let list = srv
        .rpc_ok("tasks/pushNotificationConfig/list", json!({"id": tid}))
        .await;
    assert_eq!(list, json!([]));
}

// ---- 13. extended card ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extended_card_is_not_configured_by_default() {
    let srv = TestServer::echo().await;
    assert_eq!(
        srv.rpc_err("agent/getAuthenticatedExtendedCard", json!({}))
            .await,
        EXTENDED_CARD_NOT_CONFIGURED
    );
    let (status, _, body) = srv.get("/.well-known/agent-card.json").await;
    assert_eq!(status, 200);
    let card: Value = serde_json::from_str(&body).unwrap();
    assert_ne!(card["supportsAuthenticatedExtendedCard"], true, "{card}");
}

/// A temporary file removed on drop.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extended_card_comes_from_the_configured_file() {
    let file =
        TempFile(std::env::temp_dir().join(format!("{}.json", unique("bindu-extended-card"))));
    let overlay = json!({
        "description": "extended",
        "skills": [{
            "id": "secret-skill",
            "name": "Secret skill",
            "description": "Only for authenticated callers",
            "tags": ["private"],
        }],
    });
    std::fs::write(&file.0, overlay.to_string()).unwrap();
    let path = file.0.to_str().unwrap().to_string();
    let srv = TestServer::echo_with(&[("agent.extended_card_file", path.as_str())]).await;

    let card = srv
        .rpc_ok("agent/getAuthenticatedExtendedCard", json!({}))
        .await;
    assert_eq!(card["description"], "extended", "{card}");
    assert_eq!(card["supportsAuthenticatedExtendedCard"], true, "{card}");
    let skills = card["skills"].as_array().unwrap();
    assert_eq!(skills.len(), 1, "{card}");
    assert_eq!(skills[0]["id"], "secret-skill");
    assert_eq!(card["protocolVersion"], "0.3.0", "public fields are kept");

    let (status, _, body) = srv.get("/.well-known/agent-card.json").await;
    assert_eq!(status, 200);
    let public: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        public["supportsAuthenticatedExtendedCard"], true,
        "{public}"
    );
    assert_ne!(
        public["description"], "extended",
        "the public card is unchanged"
    );
    assert_eq!(public["url"], card["url"]);
}
