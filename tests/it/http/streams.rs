//! `message/stream`, and a client that disconnects.

use super::*;

// ---- 9. message/stream ----------------------------------------------------------------

pub(crate) fn assert_stream_envelopes(events: &[Value], id: &Value) {
    assert!(!events.is_empty());
    for e in events {
        assert_eq!(e["jsonrpc"], "2.0", "{e}");
        assert_eq!(&e["id"], id, "{e}");
        assert!(e.get("result").is_some() && e.get("error").is_none(), "{e}");
    }
    let finals: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["result"]["final"] == true)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        finals,
        [events.len() - 1],
        "exactly one final event, the last"
    );
}

/// `message/stream` of a user message `text` with request id `id`, read to its end; every
/// event a result echoing `id`, the last one (only) final.
async fn stream_checked(srv: &TestServer, id: Value, text: &str) -> Vec<Value> {
    let events = srv.stream_message(id.clone(), user_message(text)).await;
    assert_stream_envelopes(&events, &id);
    events
}

pub(crate) fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let r = &e["result"];
            let kind = r["kind"].as_str().unwrap_or("?");
            match kind {
                "task" | "status-update" => format!("{kind}:{}", state(r)),
                other => other.to_string(),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_stream_sends_the_task_then_updates_until_final() {
    let srv = TestServer::echo().await;
    let id = json!("stream-req-1");
    let reader = srv
        .open_stream(
            id.clone(),
            "message/stream",
            json!({"message": user_message("stream me")}),
        )
        .await;
    assert!(reader.content_type.starts_with("text/event-stream"));
    let events = reader.read_all().await;
    assert_stream_envelopes(&events, &id);
    assert_eq!(
        kinds(&events),
        [
            "task:submitted",
            "status-update:working",
            "artifact-update",
            "status-update:completed"
        ],
        "{events:#?}"
    );
    let task = &events[0]["result"];
    let tid = task_id(task);
    for e in &events[1..] {
        assert_eq!(e["result"]["taskId"], json!(tid), "{e}");
        assert_eq!(e["result"]["contextId"], task["contextId"], "{e}");
    }
    assert_eq!(first_text(&events[2]["result"]["artifact"]), "stream me");
    let done = srv.get_task(&tid).await;
    assert_eq!(state(&done), "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_artifact_chunks_arrive_in_order_and_merge_into_one_artifact() {
    let h = handler(|input: HandlerInput| async move {
        for (i, text) in ["a", "b", "c"].into_iter().enumerate() {
            let artifact = Artifact {
                artifact_id: "story".into(),
                parts: vec![Part::text(text)],
                name: Some("story".into()),
                description: None,
                metadata: None,
                extensions: None,
            };
            input
                .emitter
                .artifact_chunk(artifact, i > 0, i == 2)
                .await?;
        }
        Ok(HandlerOutput::Streamed)
    });
    let srv = TestServer::with_handler(h).await;
    let events = stream_checked(&srv, json!(99), "tell me").await;
    assert_eq!(
        kinds(&events),
        [
            "task:submitted",
            "status-update:working",
            "artifact-update",
            "artifact-update",
            "artifact-update",
            "status-update:completed"
        ],
        "{events:#?}"
    );
    assert_eq!(
        chunks(&events[2..5]),
        [
            ("a".to_string(), json!(false), json!(false)),
            ("b".to_string(), json!(true), json!(false)),
            ("c".to_string(), json!(true), json!(true)),
        ]
    );
    let task = srv.get_task(&task_id(&events[0]["result"])).await;
    let artifacts = task["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{task}");
    assert_eq!(artifacts[0]["artifactId"], "story");
    let texts: Vec<&str> = artifacts[0]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_for_an_input_required_task_ends_with_that_state() {
    let h = handler(|_input: HandlerInput| async move {
        Ok(HandlerOutput::InputRequired("Which city?".into()))
    });
    let srv = TestServer::with_handler(h).await;
    let events = stream_checked(&srv, json!("ir"), "weather").await;
    assert_eq!(
        kinds(&events),
        [
            "task:submitted",
            "status-update:working",
            "status-update:input-required"
        ]
    );
    let last = &events[events.len() - 1]["result"];
    assert_eq!(last["final"], true);
    assert_eq!(first_text(&last["status"]["message"]), "Which city?");
}

// ---- 10. client disconnect ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_does_not_cancel_the_task() {
    // The handler runs until the test releases it, so the drop happens mid-run by
    // construction; it notes a cancel if one reaches it.
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let canceled = Arc::new(AtomicBool::new(false));
    let h = {
        let (release, canceled) = (release.clone(), canceled.clone());
        handler(move |input: HandlerInput| {
            let (release, canceled) = (release.clone(), canceled.clone());
            async move {
                tokio::select! {
                    permit = release.acquire() => drop(permit),
                    _ = input.cancel.cancelled() => {
                        canceled.store(true, Ordering::SeqCst);
                        return Err("canceled".into());
                    }
                }
                let text = crate::support::user_text(&input);
                Ok(HandlerOutput::Text(format!("done: {text}")))
            }
        })
    };
    let srv = TestServer::with_handler(h).await;
    let mut reader = srv
        .open_stream(
            json!(1),
            "message/stream",
            json!({"message": user_message("walk away")}),
        )
        .await;
    let first = reader.next_event().await.unwrap();
    assert_eq!(first["result"]["kind"], "task");
    let tid = task_id(&first["result"]);
    assert_eq!(
        server_connections(srv.addr.port()),
        1,
        "the stream's connection"
    );
    drop(reader);
    // The server noticed: it closed its side of the stream's connection (bounded wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server_connections(srv.addr.port()) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never closed the dropped stream's connection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(state(&srv.get_task(&tid).await), "submitted");
    release.add_permits(1);
    let done = srv.wait_for_state(&tid, "completed").await;
    assert_eq!(first_text(&done["artifacts"][0]), "done: walk away");
    assert!(!canceled.load(Ordering::SeqCst), "the handler was canceled");
}

/// Open TCP connections whose server side is local port `port` on 127.0.0.1 (established,
/// or closed by the peer and not yet by the server), from `/proc/net/tcp`.
fn server_connections(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().unwrap();
            // 01 ESTABLISHED, 08 CLOSE_WAIT.
            u16::from_str_radix(local_port, 16).unwrap() == port
                && (fields[3] == "01" || fields[3] == "08")
        })
        .count()
}
