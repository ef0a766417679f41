//! The `bindu` binary as a user runs it: configuration errors, `bindu config`, and
//! `bindu serve` answering requests and stopping cleanly on SIGTERM.

use crate::process;

use process::{bindu, exits_2, rpc, run_bindu, Agent};

#[test]
fn invalid_values_name_the_key_and_exit_2() {
    let err = exits_2(&[("BINDU_PORT", "not-a-port")], &["config"]);
    assert!(err.contains("BINDU_PORT"), "{err}");

    assert!(exits_2(&[], &["serve", "--port", "99999"]).contains("--port"));

    assert!(exits_2(&[("STORAGE_TYPE", "cassandra")], &["serve"]).contains("STORAGE_TYPE"));

    // Bindu's production setting is accepted, and needs its server's URL.
    let err = exits_2(&[("SCHEDULER_TYPE", "redis")], &["serve"]);
    assert!(
        err.contains("SCHEDULER_TYPE=redis needs REDIS_URL"),
        "{err}"
    );

    exits_2(&[], &["config", "--config", "/nonexistent/bindu.toml"]);
}

#[test]
fn config_prints_effective_values_with_sources() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bindu.toml");
    std::fs::write(
        &file,
        "[agent]\nname = \"from-file\"\n[server]\nport = 4100\n",
    )
    .unwrap();
    let out = bindu()
        .env("BINDU_CONFIG", &file)
        .env("BINDU_PORT", "4200")
        .args(["config", "--host", "127.0.0.2"])
        .output()
        .unwrap();
    process::assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("agent.name = \"from-file\""), "{text}");
    assert!(
        text.contains("server.port = \"4200\"    # BINDU_PORT, environment variable BINDU_PORT"),
        "{text}"
    );
    assert!(
        text.contains("server.host = \"127.0.0.2\"    # BINDU_HOST, flag --host"),
        "{text}"
    );
}

#[test]
fn readme_lists_every_config_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for key in bindu::config::keys() {
        let row = format!("| `{}` | `{}` |", key.env, key.key);
        assert!(
            readme.contains(&row),
            "README's configuration table lacks {}",
            key.env
        );
    }
}

#[test]
fn readme_rows_are_keys_the_code_knows_with_their_defaults() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let keys = bindu::config::keys();
    // `key = "value"    # VARIABLE, default`, as `bindu config` prints the defaults.
    let rendered = bindu::Config::defaults().render();
    let default_of = |key: &str| {
        rendered
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .and_then(|rest| rest.split("    #").next())
            .map(|v| v.trim_matches('"').to_string())
    };
    let table = readme
        .split("| environment | TOML key | default | meaning |")
        .nth(1)
        .expect("the README has a configuration table");
    let mut rows = 0;
    for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line
            .split(" | ")
            .map(|c| c.trim_matches(['|', ' ']))
            .collect();
        let (env, key, default) = (
            cells[0].trim_matches('`'),
            cells[1].trim_matches('`'),
            cells[2],
        );
        let known = keys.iter().find(|k| k.key == key);
        assert!(
            known.is_some(),
            "README row {key} is not a key the code knows"
        );
        assert_eq!(known.unwrap().env, env, "{key}'s variable");
        let code = default_of(key).unwrap();
        let documented = if default == "(unset)" {
            String::new()
        } else {
            default.trim_matches('`').to_string()
        };
        assert_eq!(documented, code, "{key}'s default in the README");
        rows += 1;
    }
    assert_eq!(rows, keys.len(), "one README row per key");
}

#[test]
fn serve_answers_and_stops_on_sigterm() {
    let mut cmd = bindu();
    cmd.args(["serve", "--port", "0", "--log-level", "warn"]);
    let agent = Agent::start(cmd);
    assert!(agent.addr.starts_with("127.0.0.1:"), "{}", agent.addr);
    let body = rpc(
        &agent.url(),
        "message/send",
        serde_json::json!({"message": {"role": "user", "messageId": "m", "parts": [{"kind": "text", "text": "ping"}]}}),
    );
    assert_eq!(body["result"]["status"]["state"], "completed");
    assert_eq!(body["result"]["artifacts"][0]["parts"][0]["text"], "ping");

    // `bindu call`: a bare text becomes a user message; errors exit 1.
    let out = run_bindu(&[], &["call", &agent.url(), "message/send", "pong"]);
    process::assert_success(&out);
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["result"]["artifacts"][0]["parts"][0]["text"], "pong");
    let out = run_bindu(&[], &["call", &agent.url(), "message/stream", "streamed"]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["result"]["kind"], "task");
    assert_eq!(lines.last().unwrap()["result"]["final"], true);
    let out = run_bindu(
        &[],
        &["call", &agent.url(), "tasks/get", r#"{"id":"missing"}"#],
    );
    assert_eq!(out.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], -32001);
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn did_show_is_stable_and_did_new_rotates() {
    let dir = std::env::temp_dir().join(format!("bindu-cli-did-{}", std::process::id()));
    let show = |cmd: &str| {
        let out = bindu()
            .env("BINDU_KEY_DIR", &dir)
            .env("BINDU_AGENT_AUTHOR", "ops@example.com")
            .args(["did", cmd])
            .output()
            .unwrap();
        process::assert_success(&out);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let did = text
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("did:")
            .trim()
            .to_string();
        (did, text)
    };
    let (first, text) = show("show");
    assert!(
        first.starts_with("did:bindu:ops_at_example_com:bindu-echo:"),
        "{text}"
    );
    assert!(text.contains("new key pair"));
    let (second, text) = show("show");
    assert_eq!(first, second, "the key is reused");
    assert!(text.contains("existing key pair"));
    let (rotated, _) = show("new");
    assert_ne!(rotated, first);
    std::fs::remove_dir_all(dir).ok();
}
