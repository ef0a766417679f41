//! The `command` handler through the HTTP API: a Python test agent (written to a temporary
//! directory) speaking the JSON-lines protocol, and the example agents under
//! `examples/command/`.

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Behaviour picked by the user's text: see each branch.
const TEST_AGENT: &str = r#"
import json, os, queue, sys, threading, time

lines = queue.Queue()
def reader():
    for line in sys.stdin:
        if line.strip():
            lines.put(json.loads(line))
    lines.put(None)
threading.Thread(target=reader, daemon=True).start()

def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()

def wait_cancel(seconds):
    try:
        msg = lines.get(timeout=seconds)
    except queue.Empty:
        return False
    return msg is not None and msg.get("type") == "cancel"

marker_dir = sys.argv[1]
while True:
    task = lines.get()
    if task is None:
        break
    if task.get("type") != "task":
        continue
    text = task["text"]
    if text == "crash":
        print("fatal: something broke", file=sys.stderr, flush=True)
        sys.exit(3)
    elif text == "garbage":
        print("this is not json", flush=True)
    elif text == "pid":
        send({"type": "result", "text": str(os.getpid())})
    elif text == "skill":
        send({"type": "result", "text": "skill: %s" % task.get("skillId")})
    elif text == "stream":
        send({"type": "status", "text": "thinking"})
        for piece in ["a", "b", "c"]:
            send({"type": "chunk", "text": piece})
            time.sleep(0.02)
        send({"type": "result"})
    elif text == "weather" or (task["history"] and task["history"][0]["parts"][0].get("text") == "weather"):
        users = [m for m in task["history"] if m["role"] == "user"]
        if len(users) == 1:
            send({"type": "input-required", "prompt": "Which city?"})
        else:
            send({"type": "result", "text": "Sunny in %s (%d messages)" % (text, len(task["history"]))})
    elif text == "refs":
        ref = task["references"][0]
        send({"type": "result", "data": {"count": len(task["references"]), "first": ref["artifacts"][0]["parts"][0]["text"]}})
    elif text == "files":
        send({"type": "result", "parts": [
            {"kind": "file", "file": {"bytes": "aGVsbG8=", "name": "hello.txt", "mimeType": "text/plain"}},
            {"kind": "file", "file": {"uri": "https://files.example/report.pdf", "mimeType": "application/pdf"}},
        ]})
    elif text == "slow":
        send({"type": "status", "text": "working slowly"})
        if wait_cancel(30):
            open(os.path.join(marker_dir, task["taskId"]), "w").write("canceled")
            send({"type": "error", "message": "stopped on request"})
        else:
            send({"type": "result", "text": "slow result"})
    elif text == "stubborn":
        send({"type": "status", "text": "not listening"})
        time.sleep(30)
        send({"type": "result", "text": "too late"})
    elif text == "big":
        send({"type": "chunk", "text": "x" * 5000})
        send({"type": "result"})
    elif text == "reject":
        send({"type": "rejected", "reason": "not my job"})
    elif text == "error":
        send({"type": "error", "message": "the tool failed"})
    else:
        send({"type": "result", "text": "echo: " + text})
"#;

struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = std::env::temp_dir().join(unique("bindu-command-agent"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("agent.py"), TEST_AGENT).unwrap();
        Fixture { dir }
    }

    fn command(&self) -> String {
        format!(
            "python3 '{}' '{}'",
            self.dir.join("agent.py").display(),
            self.dir.display()
        )
    }

    fn marker(&self, task_id: &str) -> PathBuf {
        self.dir.join(task_id)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// A server running `command` with `processes` agent processes and `extra` settings.
async fn agent(command: &str, processes: &str, extra: &[(&str, &str)]) -> TestServer {
    let mut settings: Vec<(&str, &str)> = vec![
        ("worker.handler", "command"),
        ("worker.command", command),
        ("worker.command_processes", processes),
    ];
    settings.extend_from_slice(extra);
    let config = bindu::Config::from_settings(&settings).unwrap();
    let handler = bindu::builtin_handler(&config).unwrap();
    TestServer::start(&settings, handler).await
}

/// The pid of the agent process that runs the next task.
async fn pid_of(srv: &TestServer) -> String {
    first_text(&srv.send(user_message("pid")).await["artifacts"][0]).to_string()
}

/// `text` makes `srv`'s one agent process fail its task with a reason naming each of `why`;
/// the next task completes in a new process.
async fn fails_and_is_replaced(srv: &TestServer, text: &str, why: &[&str]) {
    let first_pid = pid_of(srv).await;
    let failed = srv.send(user_message(text)).await;
    assert_eq!(state(&failed), "failed", "{failed}");
    let reason = first_text(&failed["status"]["message"]);
    for w in why {
        assert!(reason.contains(w), "{reason}");
    }
    let done = srv.send(user_message("pid")).await;
    assert_eq!(state(&done), "completed", "{done}");
    assert_ne!(
        first_text(&done["artifacts"][0]),
        first_pid,
        "a new process"
    );
}

/// One agent process with the setting `limit`: the task `over` fails naming `why`, and the
/// next one, `within`, is echoed.
async fn fails_then_echoes(limit: (&str, &str), over: &str, why: &str, within: &str) {
    let fx = Fixture::new();
    let srv = agent(&fx.command(), "1", &[limit]).await;
    let failed = srv.send(user_message(over)).await;
    assert_failed_with(&failed, why);
    let done = srv.send(user_message(within)).await;
    assert_eq!(first_text(&done["artifacts"][0]), format!("echo: {within}"));
}

fn texts(artifact: &Value) -> Vec<String> {
    artifact["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_and_status_lines_stream_over_sse_in_order() {
    let fx = Fixture::new();
    let srv = agent(&fx.command(), "1", &[]).await;
    let events = srv.stream_message(json!(7), user_message("stream")).await;
    let summary: Vec<String> = events
        .iter()
        .map(|e| {
            let r = &e["result"];
            match r["kind"].as_str().unwrap() {
                "artifact-update" => format!(
                    "chunk:{}:{}:{}",
                    texts(&r["artifact"]).join(""),
                    r["append"],
                    r["lastChunk"]
                ),
                "status-update" => match r["status"]["message"].get("parts") {
                    Some(_) => format!("status:{}", first_text(&r["status"]["message"])),
                    None => format!("state:{}", r["status"]["state"].as_str().unwrap()),
                },
                other => other.to_string(),
            }
        })
        .collect();
    assert_eq!(
        summary,
        [
            "task",
            "state:working",
            "status:thinking",
            "chunk:a:false:false",
            "chunk:b:true:false",
            "chunk:c:true:false",
            "chunk::true:true",
            "state:completed",
        ],
        "{events:#?}"
    );
    let task = srv.get_task(&task_id(&events[0]["result"])).await;
    assert_eq!(state(&task), "completed");
    let artifacts = task["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{task}");
    assert_eq!(texts(&artifacts[0]).join(""), "abc");
    let history = task["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["role"], "agent", "{task}");
    assert_eq!(first_text(history.last().unwrap()), "abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_required_conversation_resumes_with_the_same_task() {
    let fx = Fixture::new();
    let srv = agent(&fx.command(), "2", &[]).await;
    let paused = srv.send(user_message("weather")).await;
    assert_eq!(state(&paused), "input-required", "{paused}");
    assert_eq!(first_text(&paused["status"]["message"]), "Which city?");
    let tid = task_id(&paused);
    let done = srv
        .send(user_message_with("Paris", json!({"taskId": tid})))
        .await;
    assert_eq!(state(&done), "completed", "{done}");
    assert_eq!(
        first_text(&done["artifacts"][0]),
        "Sunny in Paris (3 messages)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referenced_tasks_reach_the_process_and_data_results_become_data_parts() {
    let fx = Fixture::new();
    let srv = agent(&fx.command(), "2", &[]).await;
    let first = srv.send(user_message("base facts")).await;
    assert_eq!(first_text(&first["artifacts"][0]), "echo: base facts");
    let second = srv
        .send(user_message_with(
            "refs",
            json!({"referenceTaskIds": [task_id(&first)]}),
        ))
        .await;
    assert_eq!(state(&second), "completed", "{second}");
    assert_eq!(
        second["artifacts"][0]["parts"][0],
        json!({"kind": "data", "data": {"count": 1, "first": "echo: base facts"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_parts_inline_and_by_uri_reach_the_artifact() {
    let fx = Fixture::new();
    let srv = agent(&fx.command(), "1", &[]).await;
    let done = srv.send(user_message("files")).await;
    assert_eq!(state(&done), "completed", "{done}");
    let parts = &done["artifacts"][0]["parts"];
    assert_eq!(
        parts[0],
        json!({"kind": "file", "file": {"bytes": "aGVsbG8=", "name": "hello.txt", "mimeType": "text/plain"}})
    );
    assert_eq!(
        parts[1],
        json!({"kind": "file", "file": {"uri": "https://files.example/report.pdf", "mimeType": "application/pdf"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_error_lines_end_the_task_and_keep_the_process() {
    let fx = Fixture::new();
    let srv = agent(&fx.command(), "1", &[]).await;
    let before = pid_of(&srv).await;
    let rejected = srv.send(user_message("reject")).await;
    assert_eq!(state(&rejected), "rejected");
    assert_eq!(first_text(&rejected["status"]["message"]), "not my job");
    let failed = srv.send(user_message("error")).await;
    assert_failed_with(&failed, "the tool failed");
    let after = pid_of(&srv).await;
    assert_eq!(before, after, "the same process served every task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_process_fails_only_its_task_and_is_replaced() {
    let fx = Fixture::new();
    let srv = agent(&fx.command(), "1", &[]).await;
    fails_and_is_replaced(&srv, "crash", &["exit status: 3", "fatal: something broke"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_printing_invalid_json_fails_its_task_and_is_replaced() {
    let fx = Fixture::new();
    let srv = agent(&fx.command(), "1", &[]).await;
    fails_and_is_replaced(
        &srv,
        "garbage",
        &["not a protocol message", "this is not json"],
    )
    .await;
    assert_eq!(
        first_text(&srv.send(user_message("still here")).await["artifacts"][0]),
        "echo: still here"
    );
}

/// Waits until `task` shows the status text `text` (the process is working on it).
/// Starts `text` as a stream and reads it until the agent's interim status `status` (an
/// event: the store records the run with its outcome). Returns the task id and the stream.
async fn start_until_status(srv: &TestServer, text: &str, status: &str) -> (String, SseReader) {
    let mut reader = srv
        .open_stream(
            json!("s"),
            "message/stream",
            json!({"message": user_message(text)}),
        )
        .await;
    let first = reader.next_event().await.expect("the task");
    let tid = task_id(&first["result"]);
    within(&format!("status {status:?}"), async {
        loop {
            let e = reader.next_event().await.expect("the stream ended early");
            if e["result"]["status"]["message"]["parts"][0]["text"] == status {
                return;
            }
        }
    })
    .await;
    (tid, reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_process_which_keeps_serving() {
    let fx = Fixture::new();
    let srv = agent(&fx.command(), "1", &[]).await;
    let pid = pid_of(&srv).await;
    let (tid, _stream) = start_until_status(&srv, "slow", "working slowly").await;
    let canceled = srv.rpc_ok("tasks/cancel", json!({"id": tid})).await;
    assert_eq!(state(&canceled), "canceled");
    within("the process to see the cancel line", async {
        while !fx.marker(&tid).exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let later = srv.get_task(&tid).await;
    assert_eq!(state(&later), "canceled", "{later}");
    let again = pid_of(&srv).await;
    assert_eq!(again, pid, "a process that stopped on request is reused");
}

fn alive(pid: &str) -> bool {
    // A killed child stays a zombie until reaped; count only live states.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_ignoring_cancel_is_killed_and_replaced() {
    let fx = Fixture::new();
    let srv = agent(&fx.command(), "1", &[]).await;
    let pid = pid_of(&srv).await;
    let (tid, _stream) = start_until_status(&srv, "stubborn", "not listening").await;
    let canceled = srv.rpc_ok("tasks/cancel", json!({"id": tid})).await;
    assert_eq!(state(&canceled), "canceled");
    let next = srv.send(user_message("pid")).await;
    assert_eq!(state(&next), "completed", "{next}");
    assert_ne!(first_text(&next["artifacts"][0]), pid, "a new process");
    within("the stubborn process to die", async {
        while alive(&pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_timeout_fails_a_run_that_takes_too_long() {
    fails_then_echoes(
        ("worker.task_timeout", "1s"),
        "stubborn",
        "task timeout",
        "quick",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_over_the_limit_fails_the_task() {
    fails_then_echoes(
        ("worker.max_output_bytes", "2048"),
        "big",
        "2048 bytes",
        "small",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_is_refused_at_start_up() {
    let config = bindu::Config::from_settings(&[
        ("worker.handler", "command"),
        ("worker.command", "no-such-program-bindu --flag"),
    ])
    .unwrap();
    let err = bindu::builtin_handler(&config).err().unwrap().to_string();
    assert!(err.contains("no-such-program-bindu"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_learns_the_skill_of_the_task() {
    let fx = Fixture::new();
    let skills = crate::skills::example_skills();
    let srv = agent(&fx.command(), "1", &[("agent.skills", &skills)]).await;
    let named = srv
        .send(user_message_with(
            "skill",
            json!({"metadata": {"skillId": "question-answering-v1"}}),
        ))
        .await;
    assert_eq!(state(&named), "completed", "{named}");
    assert_eq!(
        first_text(&named["artifacts"][0]),
        "skill: question-answering-v1"
    );
    let none = srv.send(user_message("skill")).await;
    assert_eq!(first_text(&none["artifacts"][0]), "skill: None");
}

fn example(path: &str) -> String {
    format!("{}/examples/command/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_agent_streams_and_asks() {
    let srv = agent(&format!("python3 '{}'", example("agent.py")), "2", &[]).await;
    let paused = srv.send(user_message(" ")).await;
    assert_eq!(state(&paused), "input-required", "{paused}");
    assert_eq!(
        first_text(&paused["status"]["message"]),
        "Whom should I greet?"
    );
    let done = srv
        .send(user_message_with(
            "Ann",
            json!({"taskId": task_id(&paused)}),
        ))
        .await;
    assert_eq!(state(&done), "completed", "{done}");
    assert_eq!(
        texts(&done["artifacts"][0]).join(""),
        "Hello, Ann! Nice to meet you."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_example_agent_answers() {
    if std::process::Command::new("jq")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("the shell example needs jq on PATH");
    }
    let srv = agent(&format!("sh '{}'", example("agent.sh")), "1", &[]).await;
    let done = srv.send(user_message("hello there")).await;
    assert_eq!(state(&done), "completed", "{done}");
    assert_eq!(first_text(&done["artifacts"][0]), "HELLO THERE");
}
