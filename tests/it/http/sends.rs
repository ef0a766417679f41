//! `message/send`: blocking, non-blocking, follow-ups and immutability, handler outcomes, referenceTaskIds.

use super::*;

// ---- 4. message/send blocking ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_send_returns_the_completed_task() {
    let srv = TestServer::echo().await;
    let msg = user_message("hello bindu");
    let msg_id = msg["messageId"].clone();
    let task = srv.send(msg).await;
    assert_eq!(task["kind"], "task");
    assert_eq!(state(&task), "completed", "{task}");
    let tid = task_id(&task);
    let cid = task["contextId"].as_str().unwrap();
    assert!(!tid.is_empty() && !cid.is_empty(), "server-generated ids");
    assert_ne!(tid, cid);

    let artifacts = task["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{task}");
    assert_eq!(first_text(&artifacts[0]), "hello bindu");

    let history = task["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{task}");
    assert_eq!(history[0]["role"], "user");
    assert_eq!(history[0]["messageId"], msg_id);
    assert_eq!(first_text(&history[0]), "hello bindu");
    assert_eq!(history[1]["role"], "agent");
    assert_eq!(first_text(&history[1]), "hello bindu");
    assert_ne!(history[1]["messageId"], msg_id);

    // A second task gets different ids.
    let other = srv.send(user_message("again")).await;
    assert_ne!(other["id"], task["id"]);
    assert_ne!(other["contextId"], task["contextId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_length_trims_the_returned_history() {
    let srv = TestServer::echo().await;
    let one = srv
        .rpc_ok(
            "message/send",
            json!({"message": user_message("h1"), "configuration": {"historyLength": 1}}),
        )
        .await;
    let h = one["history"].as_array().unwrap();
    assert_eq!(h.len(), 1, "{one}");
    assert_eq!(h[0]["role"], "agent", "the most recent message is kept");

    let zero = srv
        .rpc_ok(
            "message/send",
            json!({"message": user_message("h0"), "configuration": {"historyLength": 0}}),
        )
        .await;
    assert_eq!(state(&zero), "completed");
    assert!(zero.get("history").is_none(), "{zero}");

    // The store keeps everything; only the reply was trimmed.
    let full = srv.get_task(&task_id(&zero)).await;
    assert_eq!(full["history"].as_array().unwrap().len(), 2, "{full}");
    let trimmed = srv
        .rpc_ok(
            "tasks/get",
            json!({"id": task_id(&zero), "historyLength": 0}),
        )
        .await;
    assert!(trimmed.get("history").is_none(), "{trimmed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_task_and_context_ids_are_honoured() {
    let srv = TestServer::echo().await;
    let tid = unique("client-task");
    let cid = unique("client-ctx");
    let task = srv
        .send(user_message_with(
            "mine",
            json!({"taskId": tid, "contextId": cid}),
        ))
        .await;
    assert_eq!(task["id"], json!(tid), "{task}");
    assert_eq!(task["contextId"], json!(cid), "{task}");
    assert_eq!(state(&task), "completed");

    // A second, new task in the same context.
    let second = srv
        .send(user_message_with("also mine", json!({"contextId": cid})))
        .await;
    assert_eq!(second["contextId"], json!(cid));
    assert_ne!(second["id"], json!(tid));

    let contexts = srv.rpc_ok("contexts/list", json!({})).await;
    let ctx = contexts["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["contextId"] == json!(cid))
        .unwrap_or_else(|| panic!("context {cid} not listed: {contexts}"))
        .clone();
    assert_eq!(ctx["taskCount"], 2, "{ctx}");
    let ids: Vec<&Value> = ctx["taskIds"].as_array().unwrap().iter().collect();
    assert!(ids.contains(&&json!(tid)), "{ctx}");
    assert!(ids.contains(&&second["id"]), "{ctx}");

    // tasks/list can filter on the context.
    let list = srv.rpc_ok("tasks/list", json!({"contextId": cid})).await;
    assert_eq!(list["tasks"].as_array().unwrap().len(), 2, "{list}");
}

// ---- 5. non-blocking ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_blocking_send_returns_at_once_and_completes_later() {
    let (gate, h) = Gate::new();
    let srv = TestServer::with_handler(h).await;
    let task = srv.send_nonblocking(user_message("later")).await;
    assert!(["submitted", "working"].contains(&state(&task)), "{task}");
    let tid = task_id(&task);
    assert_eq!(gate.started().await, tid);
    // Still running while the gate is closed: `working` is announced as an event, and the
    // store records the run with its outcome, so a read still finds the task as accepted.
    let running = srv.get_task(&tid).await;
    assert_eq!(state(&running), "submitted", "{running}");
    gate.release(1);
    let done = srv.wait_for_state(&tid, "completed").await;
    assert_eq!(first_text(&done["artifacts"][0]), "released");
}

// ---- 6. follow-ups and immutability ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_resumes_an_input_required_task_then_it_is_immutable() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let h = handler(move |input: HandlerInput| {
        let counter = counter.clone();
        async move {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                return Ok(HandlerOutput::InputRequired("Which city?".into()));
            }
            let city = crate::support::user_text(&input);
            Ok(HandlerOutput::Text(format!(
                "Sunny in {city} ({} messages)",
                input.history.len()
            )))
        }
    });
    let srv = TestServer::with_handler(h).await;

    let first_msg = user_message("What's the weather?");
    let first_id = first_msg["messageId"].clone();
    let paused = srv.send(first_msg).await;
    assert_eq!(state(&paused), "input-required", "{paused}");
    assert_eq!(first_text(&paused["status"]["message"]), "Which city?");
    assert_eq!(paused["status"]["message"]["role"], "agent");
    assert!(paused.get("artifacts").is_none(), "{paused}");
    let tid = task_id(&paused);
    let cid = paused["contextId"].clone();

    let follow = user_message_with("Paris", json!({"taskId": tid}));
    let follow_id = follow["messageId"].clone();
    let done = srv.send(follow).await;
    assert_eq!(done["id"], json!(tid));
    assert_eq!(done["contextId"], cid);
    assert_eq!(state(&done), "completed", "{done}");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        first_text(&done["artifacts"][0]),
        "Sunny in Paris (3 messages)"
    );
    let history = done["history"].as_array().unwrap();
    let summary: Vec<(&str, &str)> = history
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), first_text(m)))
        .collect();
    assert_eq!(
        summary,
        [
            ("user", "What's the weather?"),
            ("agent", "Which city?"),
            ("user", "Paris"),
            ("agent", "Sunny in Paris (3 messages)"),
        ],
        "{done}"
    );
    assert_eq!(history[0]["messageId"], first_id);
    assert_eq!(history[2]["messageId"], follow_id);

    // The task is completed: no more messages.
    let code = srv.follow_up_err(&tid, "one more").await;
    assert_eq!(code, TASK_IMMUTABLE);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "no third run");
    let after = srv.get_task(&tid).await;
    assert_eq!(after["history"].as_array().unwrap().len(), 4, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_for_a_running_task_is_invalid_params() {
    let (gate, h) = Gate::new();
    let srv = TestServer::with_handler(h).await;
    let tid = unique("busy");
    srv.send_nonblocking(user_message_with("work", json!({"taskId": tid})))
        .await;
    assert_eq!(gate.started().await, tid);
    let code = srv.follow_up_err(&tid, "interrupt").await;
    assert_eq!(code, INVALID_PARAMS);
    gate.release(1);
    let done = srv.wait_for_state(&tid, "completed").await;
    assert_eq!(
        done["history"].as_array().unwrap().len(),
        2,
        "the refused message was not recorded: {done}"
    );
}

// ---- 7. handler outcomes --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_rejections_and_panics_end_the_task() {
    let h = handler(|input: HandlerInput| async move {
        let text = crate::support::user_text(&input);
        match text.as_str() {
            "fail" => Err("boom: upstream model unavailable".into()),
            "reject" => Ok(HandlerOutput::Rejected("not my job".into())),
            "panic" => panic!("handler panicked on purpose"),
            _ => Ok(HandlerOutput::Text(format!("ok: {text}"))),
        }
    });
    let srv = TestServer::with_handler(h).await;

    let failed = srv.send(user_message("fail")).await;
    assert_eq!(state(&failed), "failed", "{failed}");
    let reason = first_text(&failed["status"]["message"]);
    assert!(
        reason.contains("boom: upstream model unavailable"),
        "{failed}"
    );
    assert!(failed.get("artifacts").is_none(), "{failed}");

    let rejected = srv.send(user_message("reject")).await;
    assert_eq!(state(&rejected), "rejected", "{rejected}");
    assert!(first_text(&rejected["status"]["message"]).contains("not my job"));

    let panicked = srv.send(user_message("panic")).await;
    assert_eq!(state(&panicked), "failed", "{panicked}");

    // The server is still serving, and the worker pool still runs handlers.
    let fine = srv.send(user_message("fine")).await;
    assert_eq!(state(&fine), "completed");
    assert_eq!(first_text(&fine["artifacts"][0]), "ok: fine");
    // Terminal failures are immutable too.
    let code = srv
        .rpc_err(
            "message/send",
            json!({"message": user_message_with("retry", json!({"taskId": task_id(&failed)}))}),
        )
        .await;
    assert_eq!(code, TASK_IMMUTABLE);
}

// ---- 8. referenceTaskIds --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referenced_tasks_reach_the_handler() {
    let h = handler(|input: HandlerInput| async move {
        let first = input.references.first();
        Ok(HandlerOutput::Text(format!(
            "{}|{}|{}",
            input.references.len(),
            first.map(|t| t.id.clone()).unwrap_or_default(),
            first
                .and_then(|t| t.artifacts.as_ref())
                .map_or(0, |a| a.len()),
        )))
    });
    let srv = TestServer::with_handler(h).await;
    let first = srv.send(user_message("base")).await;
    assert_eq!(first_text(&first["artifacts"][0]), "0||0");
    let first_id = task_id(&first);

    let second = srv
        .send(user_message_with(
            "build on it",
            json!({"contextId": first["contextId"], "referenceTaskIds": [first_id, "no-such-task"]}),
        ))
        .await;
    assert_eq!(state(&second), "completed");
    assert_eq!(
        first_text(&second["artifacts"][0]),
        format!("1|{first_id}|1"),
        "{second}"
    );
}
