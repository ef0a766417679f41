//! A real A2A 1.0 client against the built binary: the official Python SDK (`a2a-sdk` 1.x
//! from PyPI) drives two `bindu serve` echo agents (memory backends, loopback ports; the
//! second takes `BINDU_ECHO_DELAY_MS` per task so it can be canceled and subscribed to) over
//! JSON-RPC and over HTTP+JSON, through the SDK's own card resolver, `ClientFactory` and
//! transports (`a2a_sdk_client.py` beside this file). The script prints a JSON report; the
//! assertions are here.
//!
//! The interpreter is `BINDU_A2A_SDK_PYTHON` (`scripts/test` points it at the venv it made
//! under `~/.cache/bindu-a2a-sdk-venv`, and skips the tier when it cannot import `a2a`).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::{bindu, Agent};

/// The script beside this file.
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/t1_a2a_sdk/a2a_sdk_client.py"
);

/// The whole run, both transports: the script times out each call after 20 s.
const RUN_LIMIT: Duration = Duration::from_secs(240);

fn python() -> String {
    std::env::var("BINDU_A2A_SDK_PYTHON").unwrap_or_else(|_| {
        panic!("BINDU_A2A_SDK_PYTHON must name a python3 that can `import a2a` (a2a-sdk 1.x); scripts/test sets it")
    })
}

/// `bindu serve` of the echo agent on a free port, its key in `key_dir`.
fn echo_agent(key_dir: &std::path::Path, delay_ms: u64) -> Agent {
    let mut cmd = bindu();
    cmd.env("BINDU_KEY_DIR", key_dir)
        .env("BINDU_ECHO_DELAY_MS", delay_ms.to_string())
        .args(["serve", "--port", "0", "--log-level", "warn"]);
    Agent::start(cmd)
}

/// Runs the script against `url` and `slow_url` and returns its report, killing it when it
/// outlives [`RUN_LIMIT`].
fn run_sdk(url: &str, slow_url: &str) -> Value {
    let mut child = Command::new(python())
        .arg(SCRIPT)
        .arg(url)
        .arg(slow_url)
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the SDK client");
    // Both pipes drained on threads of their own, so a chatty child never blocks.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the SDK client ran past {RUN_LIMIT:?}; stderr:\n{}",
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.success(),
        "the SDK client failed ({status}):\n{err}\n{out}"
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{out}\n{err}"))
}

/// A step of a transport's report, failing with the SDK's error (and trace) when it raised.
fn step<'a>(report: &'a Value, transport: &str, name: &str) -> &'a Value {
    let t = &report["transports"][transport];
    assert!(t.get("error").is_none(), "{transport}: {t:#}");
    let s = &t[name];
    assert!(
        s.is_object() && s.get("error").is_none(),
        "{transport} {name}: {s:#}"
    );
    s
}

#[test]
fn the_official_python_sdk_sends_streams_gets_lists_cancels_and_subscribes() {
    let keys = tempfile::tempdir().unwrap();
    let agent = echo_agent(&keys.path().join("echo"), 0);
    // Long enough to cancel and subscribe before it finishes, short enough to wait for.
    let slow = echo_agent(&keys.path().join("slow"), 2_000);
    let base = format!("http://{}", agent.addr);
    let report = run_sdk(&base, &format!("http://{}", slow.addr));
    assert!(
        report["sdk_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{report:#}"
    );

    // The card, as the SDK resolved it: one interface per binding and version.
    let interfaces = report["card"]["interfaces"].as_array().unwrap();
    let has = |binding: &str, version: &str, url: &str| {
        interfaces
            .iter()
            .any(|i| i["binding"] == binding && i["version"] == version && i["url"] == url)
    };
    assert!(has("JSONRPC", "1.0", &format!("{base}/")), "{interfaces:?}");
    assert!(has("JSONRPC", "0.3", &format!("{base}/")), "{interfaces:?}");
    assert!(
        has("HTTP+JSON", "1.0", &format!("{base}/v1")),
        "{interfaces:?}"
    );
    assert_eq!(report["card"]["streaming"], true);

    for (transport, class, url) in [
        ("jsonrpc", "JsonRpcTransport", format!("{base}/")),
        ("http_json", "RestTransport", format!("{base}/v1")),
    ] {
        // The SDK picked the 1.0 interface of that binding (not its 0.3 compat transport).
        let t = &report["transports"][transport];
        assert_eq!(t["transport_class"], class, "{t:#}");
        assert_eq!(t["interface_url"], url.as_str(), "{t:#}");

        let sent = step(&report, transport, "send_blocking");
        assert_eq!(sent["events"], serde_json::json!(["task"]), "{sent}");
        assert_eq!(sent["state"], "TASK_STATE_COMPLETED", "{sent}");
        assert_eq!(sent["texts"], serde_json::json!(["hello sdk"]), "{sent}");
        assert_eq!(
            sent["history_roles"],
            serde_json::json!(["ROLE_USER", "ROLE_AGENT"]),
            "{sent}"
        );

        let streamed = step(&report, transport, "stream");
        let kinds = streamed["events"].as_array().unwrap();
        assert_eq!(kinds.first().unwrap(), "task", "{streamed}");
        assert_eq!(kinds.last().unwrap(), "status_update", "{streamed}");
        assert!(kinds.iter().any(|k| k == "artifact_update"), "{streamed}");
        assert_eq!(
            streamed["final_state"], "TASK_STATE_COMPLETED",
            "{streamed}"
        );
        assert_eq!(
            streamed["texts"],
            serde_json::json!(["stream sdk"]),
            "{streamed}"
        );
        assert_eq!(
            streamed["task_ids"].as_array().unwrap().len(),
            1,
            "{streamed}"
        );

        let got = step(&report, transport, "get_task");
        assert_eq!(got["task_id"], sent["task_id"], "{got}");
        assert_eq!(got["state"], "TASK_STATE_COMPLETED", "{got}");
        assert_eq!(got["texts"], serde_json::json!(["hello sdk"]), "{got}");
        assert_eq!(got["history_len"], 1, "historyLength=1: {got}");

        // Filtered by the sent task's context and by state: exactly that task.
        let listed = step(&report, transport, "list_tasks");
        assert_eq!(
            listed["ids"],
            serde_json::json!([sent["task_id"]]),
            "{listed}"
        );
        assert_eq!(
            listed["states"],
            serde_json::json!(["TASK_STATE_COMPLETED"])
        );
        assert_eq!(listed["page_size"], 10, "{listed}");
        assert_eq!(listed["total_size"], 1, "{listed}");
        assert_eq!(listed["next_page_token"], "", "{listed}");

        let canceled = step(&report, transport, "cancel");
        assert_eq!(
            canceled["submitted_state"], "TASK_STATE_SUBMITTED",
            "{canceled}"
        );
        assert_eq!(
            canceled["canceled_state"], "TASK_STATE_CANCELED",
            "{canceled}"
        );
        assert_eq!(canceled["state_after"], "TASK_STATE_CANCELED", "{canceled}");

        // Subscribed while the slow agent works: the task first, then its events to the end.
        let sub = step(&report, transport, "subscribe");
        let kinds = sub["events"].as_array().unwrap();
        assert_eq!(kinds.first().unwrap(), "task", "{sub}");
        assert_eq!(sub["final_state"], "TASK_STATE_COMPLETED", "{sub}");
        assert!(
            sub["first"]["task"]["id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{sub}"
        );
    }
    assert_eq!(agent.stop(), Some(0));
    assert_eq!(slow.stop(), Some(0));
}
