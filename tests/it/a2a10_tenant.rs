//! The proto's tenants (`server.tenant`, `BINDU_TENANT`): the card's 1.0 interfaces name
//! the tenant, the HTTP+JSON routes are served under `<base>/<tenant>/` too, and a 1.0
//! request (JSON-RPC params, HTTP+JSON path, query or body) naming another tenant, or any
//! on an agent without one, is refused with invalid params (-32602, 400 `INVALID_PARAMS`).

use reqwest::Method;
use serde_json::{json, Value};

use crate::a2a10_rest::{call, get, message10, post, reason};
use crate::support::{error_code, TestServer};

fn send(tenant: Option<&str>) -> Value {
    let mut body = json!({"message": message10("hi", json!({}))});
    if let Some(t) = tenant {
        body["tenant"] = json!(t);
    }
    body
}

#[tokio::test]
async fn every_route_family_is_served_under_the_tenant() {
    let s = TestServer::echo_with(&[("server.tenant", "acme")]).await;
    // Send, get, list, cancel, push configs and the extended card under `/v1/acme`.
    let (status, sent) = post(&s, "/v1/acme/message:send", send(None)).await;
    assert_eq!(status, 200, "{sent}");
    let id = sent["task"]["id"].as_str().unwrap().to_string();
    let ctx = sent["task"]["contextId"].as_str().unwrap().to_string();
    let (status, got) = get(&s, &format!("/v1/acme/tasks/{id}?historyLength=1")).await;
    assert_eq!(
        (status, got["id"].as_str()),
        (200, Some(id.as_str())),
        "{got}"
    );
    let (status, page) = get(&s, &format!("/v1/acme/tasks?contextId={ctx}")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["totalSize"], 1, "{page}");
    assert_eq!(page["tasks"][0]["id"], id.as_str());
    // The task is finished: the cancel reached the method, which refused it.
    let (status, body) = post(&s, &format!("/v1/acme/tasks/{id}:cancel"), json!({})).await;
    assert_eq!((status, reason(409, &body)), (409, "TASK_NOT_CANCELABLE"));
    let configs = format!("/v1/acme/tasks/{id}/pushNotificationConfigs");
    let (status, listed) = get(&s, &configs).await;
    assert_eq!((status, &listed["configs"]), (200, &json!([])), "{listed}");
    let (status, config) = post(&s, &configs, json!({"url": "https://hooks.example/a"})).await;
    assert_eq!(status, 200, "{config}");
    let one = format!("{configs}/{}", config["id"].as_str().unwrap());
    let (status, got) = get(&s, &one).await;
    assert_eq!((status, &got), (200, &config));
    let (status, _, deleted) = call(&s, Method::DELETE, &one, None, &[]).await;
    assert_eq!((status, &deleted), (200, &json!({})));
    // No extended card here: the same answer as without the tenant.
    for path in ["/v1/acme/extendedAgentCard", "/v1/extendedAgentCard"] {
        let (status, body) = get(&s, path).await;
        assert_eq!(
            (status, reason(400, &body)),
            (400, "EXTENDED_AGENT_CARD_NOT_CONFIGURED"),
            "{path}"
        );
    }
    // A stream too, and the routes without the tenant stay served.
    let (status, _, _) = call(
        &s,
        Method::POST,
        "/v1/acme/message:stream",
        Some(&send(Some("acme")).to_string()),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, got) = get(&s, &format!("/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "{got}");
    // Named by their template in the metrics, as without the tenant.
    let (_, _, metrics) = s.get("/metrics").await;
    assert!(metrics.contains(r#"endpoint="/tasks/{task}/pushNotificationConfigs""#));
    assert!(!metrics.contains(r#"endpoint="unmatched""#), "{metrics}");

    // The card's 1.0 interfaces name the tenant; 0.3 has none.
    let (_, _, card) = s.get("/.well-known/agent-card.json").await;
    let card: Value = serde_json::from_str(&card).unwrap();
    for interface in card["supportedInterfaces"].as_array().unwrap() {
        let expected = (interface["protocolVersion"] == "1.0").then_some("acme");
        assert_eq!(interface["tenant"].as_str(), expected, "{interface}");
    }
    crate::a2a10::check_v10_card(&card, &s.url());
}

#[tokio::test]
async fn another_tenant_is_refused_in_paths_queries_bodies_and_params() {
    let s = TestServer::echo_with(&[("server.tenant", "acme")]).await;
    let (_, sent) = post(&s, "/v1/message:send", send(Some("acme"))).await;
    let id = sent["task"]["id"].as_str().unwrap().to_string();
    // The right tenant, or none (empty is none), is served.
    for body in [send(Some("")), send(None)] {
        let (status, got) = post(&s, "/v1/acme/message:send", body).await;
        assert_eq!(status, 200, "{got}");
    }
    let (status, _) = get(&s, &format!("/v1/tasks/{id}?tenant=acme")).await;
    assert_eq!(status, 200);
    // Another tenant: in the path, the query or the body.
    for path in [
        format!("/v1/other/tasks/{id}"),
        "/v1/other/tasks".to_string(),
        "/v1/other/extendedAgentCard".to_string(),
        format!("/v1/tasks/{id}?tenant=other"),
        format!("/v1/acme/tasks/{id}?tenant=other"),
        "/v1/tasks?tenant=other".to_string(),
        "/v1/extendedAgentCard?tenant=other".to_string(),
        format!("/v1/tasks/{id}/pushNotificationConfigs?tenant=other"),
    ] {
        let (status, body) = get(&s, &path).await;
        assert_eq!(
            (status, reason(400, &body)),
            (400, "INVALID_PARAMS"),
            "{path}: {body}"
        );
    }
    for (path, body) in [
        ("/v1/message:send", send(Some("other"))),
        ("/v1/acme/message:send", send(Some("other"))),
        ("/v1/other/message:send", send(None)),
    ] {
        let (status, answer) = post(&s, path, body).await;
        assert_eq!(
            (status, reason(400, &answer)),
            (400, "INVALID_PARAMS"),
            "{path}: {answer}"
        );
    }
    let (status, body) = post(
        &s,
        &format!("/v1/tasks/{id}:cancel"),
        json!({"tenant": "other"}),
    )
    .await;
    assert_eq!((status, reason(400, &body)), (400, "INVALID_PARAMS"));

    // JSON-RPC 1.0: the params' `tenant`.
    let ok = s.rpc10("SendMessage", send(Some("acme"))).await;
    assert!(ok["result"]["task"]["id"].is_string(), "{ok}");
    for (method, params) in [
        ("SendMessage", send(Some("other"))),
        ("GetTask", json!({"id": id, "tenant": "other"})),
        ("ListTasks", json!({"tenant": "other"})),
        ("CancelTask", json!({"id": id, "tenant": "other"})),
        (
            "ListTaskPushNotificationConfigs",
            json!({"taskId": id, "tenant": "other"}),
        ),
        ("GetExtendedAgentCard", json!({"tenant": "other"})),
    ] {
        let answer = s.rpc10(method, params).await;
        assert_eq!(error_code(&answer), -32602, "{method}: {answer}");
    }
    let got = s
        .rpc10("GetTask", json!({"id": id, "tenant": "acme"}))
        .await;
    assert_eq!(got["result"]["id"], id.as_str(), "{got}");
}

#[tokio::test]
async fn without_a_tenant_any_named_tenant_is_refused_and_task_paths_stay_tasks() {
    let s = TestServer::echo().await;
    let (status, sent) = post(&s, "/v1/message:send", send(Some(""))).await;
    assert_eq!(status, 200, "{sent}");
    let id = sent["task"]["id"].as_str().unwrap().to_string();
    for path in [
        "/v1/acme/tasks".to_string(),
        format!("/v1/acme/tasks/{id}"),
        format!("/v1/tasks/{id}?tenant=acme"),
    ] {
        let (status, body) = get(&s, &path).await;
        assert_eq!(
            (status, reason(400, &body)),
            (400, "INVALID_PARAMS"),
            "{path}: {body}"
        );
    }
    let (status, body) = post(&s, "/v1/message:send", send(Some("acme"))).await;
    assert_eq!(
        (status, reason(400, &body)),
        (400, "INVALID_PARAMS"),
        "{body}"
    );
    let (status, body) = post(&s, "/v1/acme/message:send", send(None)).await;
    assert_eq!(
        (status, reason(400, &body)),
        (400, "INVALID_PARAMS"),
        "{body}"
    );
    let answer = s
        .rpc10("GetTask", json!({"id": id, "tenant": "acme"}))
        .await;
    assert_eq!(error_code(&answer), -32602, "{answer}");
    // `<base>/tasks/tasks` is GetTask of the task "tasks", as ever (none here).
    for path in ["/v1/tasks/tasks", "/v1/tasks/tasks/pushNotificationConfigs"] {
        let (status, body) = get(&s, path).await;
        assert_eq!(
            (status, reason(404, &body)),
            (404, "TASK_NOT_FOUND"),
            "{path}: {body}"
        );
    }
    // An unknown path under the base is still no route.
    let (status, body) = get(&s, "/v1/acme/nothing").await;
    assert_eq!((status, reason(404, &body)), (404, "METHOD_NOT_FOUND"));
    // The card names no tenant.
    let (_, _, card) = s.get("/.well-known/agent-card.json").await;
    assert!(!card.contains("\"tenant\""), "{card}");
}

#[test]
fn a_tenant_is_one_plain_path_segment_and_not_tasks() {
    for bad in ["tasks", "a/b", "a:b", ".hidden", "a b", "%41"] {
        let config = bindu::Config::from_settings(&[("server.tenant", bad)]);
        assert!(
            config.is_err_and(|e| e.to_string().contains("tenant")),
            "{bad}"
        );
    }
    for good in ["acme", "team-1.eu_x~"] {
        assert!(bindu::Config::from_settings(&[("server.tenant", good)]).is_ok());
    }
    // Blank is unset.
    assert!(bindu::Config::from_settings(&[("server.tenant", " ")]).is_ok());
}
