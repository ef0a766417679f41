//! The library API (`Agent::builder()`) and the handler runtime's limits, through HTTP:
//! the card built from the manifest, file parts, the task timeout, the output limit and the
//! context's history.

use crate::support;

use std::time::Duration;

use bindu::agent::{skill, Capabilities};
use bindu::schemas::Part;
use bindu::{handler_fn, Agent, HandlerError, HandlerInput, HandlerOutput};
use serde_json::{json, Value};
use support::*;

async fn card(client: &reqwest::Client, addr: std::net::SocketAddr) -> Value {
    let resp = within(
        "GET the card",
        client
            .get(format!("http://{addr}/.well-known/agent-card.json"))
            .send(),
    )
    .await
    .unwrap();
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_serves_the_manifest_and_the_handler() {
    let server = within(
        "the built agent to start",
        Agent::builder()
            .name("builder-agent")
            .description("Built with Agent::builder()")
            .author("ann@example.com")
            .version("2.1.0")
            .skill(skill(
                "shout",
                "Shout",
                "Repeats what you say, louder",
                &["demo"],
            ))
            .capabilities(Capabilities {
                streaming: true,
                push_notifications: false,
            })
            .deployment_url("https://agents.example/shout")
            .host("127.0.0.1")
            .port(0)
            .handler(handler_fn(|input: HandlerInput| async move {
                let text = crate::support::user_text(&input);
                Ok::<_, HandlerError>(text.to_uppercase())
            }))
            .serve(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let client = client();
    let card = card(&client, addr).await;
    assert_eq!(card["name"], "builder-agent");
    assert_eq!(card["description"], "Built with Agent::builder()");
    assert_eq!(card["version"], "2.1.0");
    assert_eq!(card["url"], "https://agents.example/shout/");
    assert_eq!(card["provider"]["organization"], "ann@example.com");
    assert_eq!(card["skills"][0]["id"], "shout");
    assert_eq!(card["skills"].as_array().unwrap().len(), 1);
    assert_eq!(card["capabilities"]["streaming"], true);
    assert_eq!(card["capabilities"]["pushNotifications"], false);
    // The author names the agent's DID.
    let did = card["capabilities"]["extensions"][0]["uri"]
        .as_str()
        .unwrap();
    assert!(did.starts_with("did:bindu:"), "{card}");
    assert!(did.contains("builder-agent"), "{card}");

    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                      "params": {"message": user_message("quiet please")}});
    let resp: Value = client
        .post(format!("http://{addr}/"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first_text(&resp["result"]["artifacts"][0]), "QUIET PLEASE");
    server.shutdown();
    within("the server to stop", server.wait()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_reports_bad_settings_and_a_missing_handler() {
    let err = Agent::builder().name("no-handler").build().err().unwrap();
    assert!(err.to_string().contains("handler"), "{err}");
    let err = Agent::builder()
        .deployment_url("ftp://nope")
        .handler(bindu::EchoHandler::default())
        .build()
        .err()
        .unwrap();
    assert!(err.to_string().contains("server.deployment_url"), "{err}");
    // A separate worker process needs shared backends, as `bindu worker` does.
    let err = Agent::builder()
        .handler(bindu::EchoHandler::default())
        .worker()
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("STORAGE_TYPE=postgres"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_parts_inline_and_by_uri_pass_through_echo() {
    let srv = TestServer::echo().await;
    let message = json!({
        "role": "user", "kind": "message", "messageId": unique("m"),
        "parts": [
            {"kind": "file", "file": {"bytes": "aGk=", "name": "hi.txt", "mimeType": "text/plain"}},
            {"kind": "file", "file": {"uri": "https://files.example/a.png", "mimeType": "image/png"}},
        ],
    });
    let done = srv.send(message.clone()).await;
    assert_eq!(state(&done), "completed", "{done}");
    assert_eq!(done["artifacts"][0]["parts"], message["parts"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_part_without_content_fails_the_task() {
    let h = handler(|_input: HandlerInput| async move {
        let file: Part = serde_json::from_value(json!({"kind": "file", "file": {"name": "x"}}))?;
        Ok(HandlerOutput::Parts(vec![file]))
    });
    let srv = TestServer::with_handler(h).await;
    let failed = srv.send(user_message("make a file")).await;
    assert_failed_with(&failed, "neither `bytes` nor `uri`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_timeout_interrupts_a_closure_and_the_worker_keeps_serving() {
    let h = handler(|input: HandlerInput| async move {
        if input.last_user_message().map(|m| m.text()).as_deref() == Some("hang") {
            // Ignores its cancel token: the pool aborts it after the grace period.
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Ok(HandlerOutput::Text("done".into()))
    });
    let srv = TestServer::start(&[("worker.task_timeout", "1")], h).await;
    let failed = srv.send(user_message("hang")).await;
    assert_failed_with(&failed, "BINDU_TASK_TIMEOUT");
    let done = srv.send(user_message("quick")).await;
    assert_eq!(state(&done), "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_and_returned_output_count_against_the_limit() {
    let h = handler(|input: HandlerInput| async move {
        let text = crate::support::user_text(&input);
        let n: usize = text.parse().unwrap_or(0);
        if text.starts_with("stream") {
            let mut s = input.emitter.stream("out");
            for _ in 0..4 {
                s.send(vec![Part::text("y".repeat(600))]).await?;
            }
            s.finish(vec![]).await?;
            return Ok(HandlerOutput::Streamed);
        }
        Ok(HandlerOutput::Text("x".repeat(n)))
    });
    let srv = TestServer::start(&[("worker.max_output_bytes", "2000")], h).await;
    let ok = srv.send(user_message("2000")).await;
    assert_eq!(state(&ok), "completed", "the limit itself is allowed");
    let failed = srv.send(user_message("2001")).await;
    assert_failed_with(&failed, "2000 bytes");
    let failed = srv.send(user_message("stream")).await;
    assert_eq!(state(&failed), "failed", "{failed}");
    // The chunks within the limit were delivered; the one past it was not.
    assert_eq!(failed["artifacts"][0]["parts"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_history_is_bounded_and_oldest_first() {
    let h = handler(|input: HandlerInput| async move {
        let earlier: Vec<String> = input
            .context_history
            .iter()
            .map(|t| t.history.as_ref().unwrap()[0].text())
            .collect();
        Ok(HandlerOutput::Text(earlier.join(",")))
    });
    let srv = TestServer::start(&[("worker.history_sessions", "2")], h).await;
    let first = srv.send(user_message("one")).await;
    assert_eq!(first_text(&first["artifacts"][0]), "");
    let ctx = json!({"contextId": first["contextId"]});
    let second = srv.send(user_message_with("two", ctx.clone())).await;
    assert_eq!(first_text(&second["artifacts"][0]), "one");
    srv.send(user_message_with("three", ctx.clone())).await;
    let fourth = srv.send(user_message_with("four", ctx)).await;
    assert_eq!(first_text(&fourth["artifacts"][0]), "two,three");
    // Another context sees nothing of this one.
    let other = srv.send(user_message("elsewhere")).await;
    assert_eq!(first_text(&other["artifacts"][0]), "");
    assert_ne!(other["contextId"], first["contextId"]);
}
