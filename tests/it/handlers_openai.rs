//! The `openai` handler through the HTTP API, against a fake OpenAI-compatible server on
//! 127.0.0.1 that streams like the real one (`fake_openai`).

use crate::fake_openai;
use crate::support;

use std::time::Duration;

use fake_openai::{FakeOpenAi, Reply};
use serde_json::json;
use support::*;

/// An agent whose handler is the fake model; `extra` settings on top.
async fn agent(fake: &FakeOpenAi, extra: &[(&str, &str)]) -> TestServer {
    let base = fake.base_url();
    let mut settings: Vec<(&str, &str)> = vec![
        ("worker.handler", "openai"),
        ("openai.base_url", &base),
        ("openai.model", "fake-model"),
        ("openai.timeout_secs", "2"),
    ];
    settings.extend_from_slice(extra);
    let config = bindu::Config::from_settings(&settings).unwrap();
    let handler = bindu::builtin_handler(&config).unwrap();
    TestServer::start(&settings, handler).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_stream_as_artifact_chunks_and_merge_into_one_artifact() {
    let fake = FakeOpenAi::start().await;
    fake.script(vec![Reply::stream(&["Hel", "lo", " world"])]);
    let srv = agent(
        &fake,
        &[
            ("openai.api_key", "sk-test-key"),
            ("openai.system_prompt", "You are terse."),
        ],
    )
    .await;
    let events = srv.stream_message(json!(1), user_message("greet me")).await;
    assert_eq!(
        result_kinds(&events),
        [
            "task",
            "status-update",
            "artifact-update",
            "artifact-update",
            "artifact-update",
            "artifact-update",
            "status-update"
        ],
        "{events:#?}"
    );
    assert_eq!(
        chunks(&events[2..6]),
        [
            ("Hel".to_string(), json!(false), json!(false)),
            ("lo".to_string(), json!(true), json!(false)),
            (" world".to_string(), json!(true), json!(false)),
            (String::new(), json!(true), json!(true)),
        ]
    );
    let last = &events[6]["result"];
    assert_eq!(last["status"]["state"], "completed");
    assert_eq!(last["final"], true);

    let task = srv.get_task(&task_id(&events[0]["result"])).await;
    let artifacts = task["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{task}");
    assert_eq!(all_text(&artifacts[0]), "Hello world");
    // The streamed reply also joins the history, as one agent message.
    let history = task["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{task}");
    assert_eq!(history[1]["role"], "agent");
    assert_eq!(history[1]["parts"].as_array().unwrap().len(), 1);
    assert_eq!(first_text(&history[1]), "Hello world");

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req["model"], "fake-model");
    assert_eq!(req["stream"], true);
    assert_eq!(
        req["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "greet me"},
        ])
    );
    assert_eq!(
        fake.auth_headers(),
        [Some("Bearer sk-test-key".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_and_a_503_are_retried_honouring_retry_after() {
    let fake = FakeOpenAi::start().await;
    fake.script(vec![
        Reply::Status {
            code: 429,
            retry_after: Some(1),
            message: "slow down".into(),
        },
        Reply::Status {
            code: 503,
            retry_after: None,
            message: "overloaded".into(),
        },
        Reply::stream(&["third time lucky"]),
    ]);
    let srv = agent(&fake, &[]).await;
    let done = srv.send(user_message("hi")).await;
    assert_eq!(state(&done), "completed", "{done}");
    assert_eq!(all_text(&done["artifacts"][0]), "third time lucky");
    assert_eq!(fake.requests().len(), 3);
    // The retry after the 429 came no sooner than its `Retry-After: 1` allowed (less a
    // little for clock granularity).
    let at = fake.arrivals();
    let waited = at[1] - at[0];
    assert!(
        waited >= Duration::from_millis(950),
        "retried {waited:?} after a 429 with Retry-After: 1"
    );
    // No key configured: no Authorization header.
    assert_eq!(fake.auth_headers(), [None, None, None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_after_max_retries_and_client_errors_are_not_retried() {
    let fake = FakeOpenAi::start().await;
    let busy = Reply::Status {
        code: 500,
        retry_after: None,
        message: "internal".into(),
    };
    fake.script(vec![busy.clone(), busy.clone(), busy]);
    let srv = agent(&fake, &[("openai.max_retries", "2")]).await;
    let failed = srv.send(user_message("hi")).await;
    assert_eq!(state(&failed), "failed", "{failed}");
    let reason = first_text(&failed["status"]["message"]);
    assert!(reason.contains("HTTP 500"), "{reason}");
    assert!(reason.contains("internal"), "{reason}");
    assert!(reason.contains("gave up after 3 attempts"), "{reason}");
    assert_eq!(fake.requests().len(), 3);

    fake.script(vec![Reply::Status {
        code: 400,
        retry_after: None,
        message: "model not found".into(),
    }]);
    let failed = srv.send(user_message("hi again")).await;
    assert_failed_with(&failed, "model not found");
    assert_eq!(fake.requests().len(), 4, "a 400 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_reaches_sse_clients_chunk_by_chunk() {
    let fake = FakeOpenAi::start().await;
    // The fake sends each token after the first only when the test says so: every chunk
    // must reach the SSE client while the model is still holding back the rest.
    fake.script(vec![Reply::Gated {
        deltas: vec!["one".into(), " two".into(), " three".into()],
    }]);
    let srv = agent(&fake, &[]).await;
    let mut reader = srv
        .open_stream(
            json!("slow"),
            "message/stream",
            json!({"message": user_message("count")}),
        )
        .await;
    let tid = task_id(&reader.next_event().await.unwrap()["result"]);
    let mut seen = Vec::new();
    loop {
        let e = reader.next_event().await.expect("the stream ended early");
        let r = &e["result"];
        match r["kind"].as_str().unwrap() {
            "artifact-update" => {
                seen.push(all_text(&r["artifact"]));
                if seen.len() <= 3 {
                    // Chunks are events first: the run (and its chunks) is recorded with its
                    // outcome, so the store still has the task as accepted.
                    let task = srv.get_task(&tid).await;
                    assert_eq!(state(&task), "submitted", "{task}");
                    assert!(task["artifacts"].is_null(), "{task}");
                    fake.release(1);
                }
            }
            "status-update" if r["final"] == true => {
                assert_eq!(r["status"]["state"], "completed");
                break;
            }
            _ => {}
        }
        assert!(seen.len() < 100, "runaway stream");
    }
    assert_eq!(seen, ["one", " two", " three", ""]);
    let task = srv.get_task(&tid).await;
    assert_eq!(state(&task), "completed", "{task}");
    assert_eq!(
        all_text(&task["artifacts"][0]),
        "one two three",
        "the outcome recorded every streamed chunk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_stops_the_model_request() {
    let fake = FakeOpenAi::start().await;
    fake.script(vec![Reply::Stream {
        deltas: (0..200).map(|i| format!("{i} ")).collect(),
        delay: Duration::from_millis(50),
    }]);
    let srv = agent(&fake, &[]).await;
    let mut reader = srv
        .open_stream(
            json!(1),
            "message/stream",
            json!({"message": user_message("a long story")}),
        )
        .await;
    let tid = task_id(&reader.next_event().await.unwrap()["result"]);
    // Wait for the first token to be relayed.
    loop {
        let e = reader.next_event().await.unwrap();
        if e["result"]["kind"] == "artifact-update" {
            break;
        }
    }
    let canceled = srv.rpc_ok("tasks/cancel", json!({"id": tid})).await;
    assert_eq!(state(&canceled), "canceled");
    within("the model request to be dropped", async {
        while fake.abandoned_streams() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let later = srv.get_task(&tid).await;
    assert_eq!(state(&later), "canceled", "{later}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_fails_the_task_after_the_timeout() {
    let fake = FakeOpenAi::start().await;
    fake.script(vec![Reply::Stall {
        deltas: vec!["I was saying".into()],
    }]);
    let srv = agent(&fake, &[("openai.timeout_secs", "1")]).await;
    let failed = srv.send(user_message("hello?")).await;
    assert_failed_with(&failed, "stalled");
    // What streamed before the stall stays visible.
    assert_eq!(all_text(&failed["artifacts"][0]), "I was saying");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_stream_true_still_works() {
    let fake = FakeOpenAi::start().await;
    fake.script(vec![Reply::Whole("all at once".into())]);
    let srv = agent(&fake, &[]).await;
    let done = srv.send(user_message("hi")).await;
    assert_eq!(state(&done), "completed", "{done}");
    assert_eq!(all_text(&done["artifacts"][0]), "all at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_sees_earlier_tasks_of_the_context_and_referenced_tasks() {
    let fake = FakeOpenAi::start().await;
    let srv = agent(&fake, &[("worker.history_sessions", "5")]).await;
    let first = srv.send(user_message("My name is Ann.")).await;
    assert_eq!(all_text(&first["artifacts"][0]), "Echo: My name is Ann.");
    let second = srv
        .send(user_message_with(
            "What is my name?",
            json!({"contextId": first["contextId"]}),
        ))
        .await;
    assert_eq!(state(&second), "completed");
    let requests = fake.requests();
    assert_eq!(
        requests[1]["messages"],
        json!([
            {"role": "user", "content": "My name is Ann."},
            {"role": "assistant", "content": "Echo: My name is Ann."},
            {"role": "user", "content": "What is my name?"},
        ])
    );

    // Another context: nothing of the first, but a referenced task's result.
    let third = srv
        .send(user_message_with(
            "Summarise it",
            json!({"referenceTaskIds": [task_id(&first)]}),
        ))
        .await;
    assert_eq!(state(&third), "completed");
    let msgs = fake.requests()[2]["messages"].as_array().unwrap().clone();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[0]["role"], "system");
    assert!(msgs[0]["content"]
        .as_str()
        .unwrap()
        .contains("Echo: My name is Ann."));
    assert_eq!(msgs[1]["content"], "Summarise it");
}
