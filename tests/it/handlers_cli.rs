//! The built `bindu` binary with the built-in handlers chosen by environment variables, as a
//! user deploys it: `BINDU_HANDLER=command` running the shell example agent, and the
//! start-up checks of `BINDU_HANDLER=command|openai`.

use crate::process;

use process::{bindu, exits_2, rpc, run_bindu, Agent};

fn example(path: &str) -> String {
    format!("{}/examples/command/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn serve_runs_a_command_agent_named_by_the_environment() {
    let key_dir = std::env::temp_dir().join(format!("bindu-handlers-cli-{}", std::process::id()));
    let mut cmd = bindu();
    cmd.env("BINDU_HANDLER", "command")
        .env(
            "BINDU_HANDLER_COMMAND",
            format!("sh '{}'", example("agent.sh")),
        )
        .env("BINDU_HANDLER_PROCESSES", "2")
        .env("BINDU_KEY_DIR", &key_dir)
        .args(["serve", "--port", "0", "--log-level", "warn"]);
    let agent = Agent::start(cmd);
    let body = rpc(
        &agent.url(),
        "message/send",
        serde_json::json!({"message": {"role": "user", "messageId": "m1", "parts": [{"kind": "text", "text": "ping"}]}}),
    );
    assert_eq!(body["result"]["status"]["state"], "completed", "{body}");
    assert_eq!(body["result"]["artifacts"][0]["parts"][0]["text"], "PING");
    assert_eq!(agent.stop(), Some(0));
    std::fs::remove_dir_all(key_dir).ok();
}

#[test]
fn handler_settings_are_checked_at_start_up() {
    let err = exits_2(&[("BINDU_HANDLER", "command")], &["serve"]);
    assert!(err.contains("BINDU_HANDLER_COMMAND"), "{err}");

    let err = exits_2(
        &[
            ("BINDU_HANDLER", "openai"),
            ("OPENAI_API_KEY", "sk-never-printed"),
        ],
        &["serve"],
    );
    assert!(err.contains("BINDU_HANDLER_MODEL"), "{err}");
    assert!(!err.contains("sk-never-printed"), "{err}");

    let out = run_bindu(
        &[
            ("BINDU_HANDLER", "openai"),
            ("BINDU_HANDLER_MODEL", "m"),
            ("OPENAI_API_KEY", "sk-never-printed"),
        ],
        &["config"],
    );
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("openai.api_key = \"<redacted>\""), "{shown}");
    assert!(!shown.contains("sk-never-printed"), "{shown}");
}
