#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use bindu_engine::config::PushDestinations;
use secrecy::SecretString;

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn debug_output_redacts_secrets() {
    let mut c = Config::defaults();
    c.storage.database_url = Some(SecretString::from("postgres://u:hunter2@127.0.0.1/db"));
    c.cache.redis_url = Some(SecretString::from("redis://:s3cret@127.0.0.1:6379"));
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[test]
fn defaults_are_valid() {
    let c = Config::defaults();
    assert_eq!(c.server.host, "127.0.0.1");
    assert_eq!(c.server.port, 3773);
    assert_eq!(c.server.max_body_bytes, 10 * 1024 * 1024);
    assert_eq!(c.worker.handler, HandlerKind::Echo);
    assert_eq!(c.agent.skills.len(), 1);
    c.validate().unwrap();
    Config::load(None, &env(&[]), &[]).unwrap();
}

#[test]
fn layers_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bindu.toml");
    std::fs::write(
        &file,
        "[server]\nport = 4000\nhost = \"0.0.0.0\"\n[agent]\nname = \"file-agent\"\n[[agent.skills]]\nid = \"s1\"\nname = \"S1\"\ndescription = \"d\"\ntags = [\"x\"]\n",
    )
    .unwrap();
    let c = Config::load(
        Some(&file),
        &env(&[("BINDU_PORT", "5000"), ("BINDU_AGENT_NAME", "env-agent")]),
        &[("server.port", "6000".into(), "--port")],
    )
    .unwrap();
    assert_eq!(c.server.host, "0.0.0.0", "file beats default");
    assert_eq!(c.agent.name, "env-agent", "env beats file");
    assert_eq!(c.server.port, 6000, "flag beats env");
    let skills = c.skills().unwrap();
    assert_eq!(skills.public()[0].skill.id, "s1");
    let rendered = c.render();
    assert!(
        rendered.contains("server.port = \"6000\"    # BINDU_PORT, flag --port"),
        "{rendered}"
    );
}

#[test]
fn handler_settings_are_checked_together() {
    let e = Config::load(None, &env(&[("BINDU_HANDLER", "command")]), &[]).unwrap_err();
    assert!(e.key.contains("BINDU_HANDLER_COMMAND"), "{e}");
    let e = Config::load(None, &env(&[("BINDU_HANDLER", "openai")]), &[]).unwrap_err();
    assert!(e.key.contains("BINDU_HANDLER_MODEL"), "{e}");
    let e = Config::load(None, &env(&[("BINDU_HANDLER", "llama")]), &[]).unwrap_err();
    assert!(e.key.contains("BINDU_HANDLER"), "{e}");
    let c = Config::load(
        None,
        &env(&[
            ("BINDU_HANDLER", "openai"),
            ("BINDU_HANDLER_MODEL", "llama3"),
            ("OPENAI_API_KEY", "sk-secret-value"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1/"),
            ("BINDU_TASK_TIMEOUT", "0"),
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(c.openai.base_url, "http://127.0.0.1:11434/v1");
    assert_eq!(c.worker.task_timeout, None);
    assert!(!c.render().contains("sk-secret-value"));
    assert!(!format!("{:?}", c.openai).contains("sk-secret-value"));
    let c = Config::load(
        None,
        &env(&[
            ("BINDU_HANDLER", "command"),
            ("BINDU_HANDLER_COMMAND", "sh agent.sh"),
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(c.worker.command, ["sh", "agent.sh"]);
    assert_eq!(c.worker.task_timeout, Some(Duration::from_secs(600)));
}

#[test]
fn bad_values_name_their_key() {
    let e = Config::load(None, &env(&[("BINDU_PORT", "seventy")]), &[]).unwrap_err();
    assert!(e.key.contains("BINDU_PORT"));
    assert!(e.source_desc.contains("BINDU_PORT"));
    let e = Config::load(None, &env(&[("STORAGE_TYPE", "mongo")]), &[]).unwrap_err();
    assert!(e.key.contains("STORAGE_TYPE"));
    let e = Config::load(None, &env(&[("LOGGING__DEFAULT_LEVEL", "loud")]), &[]).unwrap_err();
    assert!(e.key.contains("logging.default_level"));
    let e = Config::load(None, &env(&[("BINDU_DEPLOYMENT_URL", "ftp://x")]), &[]).unwrap_err();
    assert!(e.key.contains("BINDU_DEPLOYMENT_URL"));
}

#[test]
fn postgres_needs_a_url_and_secrets_are_redacted() {
    let e = Config::load(None, &env(&[("STORAGE_TYPE", "postgres")]), &[]).unwrap_err();
    assert!(e.key.contains("DATABASE_URL"), "{e}");
    let c = Config::load(
        None,
        &env(&[
            ("STORAGE_TYPE", "postgres"),
            ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1/db"),
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(c.storage.kind, StoreKind::Postgres);
    let shown = c.render();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("storage.database_url = \"<redacted>\""),
        "{shown}"
    );
    let e = Config::load(None, &env(&[("DATABASE_URL", "mysql://x")]), &[]).unwrap_err();
    assert!(e.key.contains("DATABASE_URL"));
}

#[test]
fn durations_parse() {
    let e = Config::load(None, &env(&[("STORAGE__RETENTION", "forever")]), &[]).unwrap_err();
    assert!(e.key.contains("STORAGE__RETENTION"));
}

#[test]
fn push_settings_parse_and_bad_ones_name_their_key() {
    let c = Config::load(
        None,
        &env(&[
            ("PUSH__DESTINATIONS", "loopback, private"),
            ("WEBHOOK_URL", "https://hooks.example.com/a2a/"),
            ("WEBHOOK_TOKEN", "hook-secret"),
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(
        c.push.destinations,
        PushDestinations {
            public: false,
            private: true,
            loopback: true
        }
    );
    assert_eq!(
        c.webhook.url.as_deref(),
        Some("https://hooks.example.com/a2a/"),
        "the path is kept as given"
    );
    assert!(c.push_enabled(), "a global webhook enables delivery");
    assert!(!Config::defaults().push_enabled());
    assert!(!c.render().contains("hook-secret"));
    for (var, value) in [
        ("PUSH__DESTINATIONS", "intranet"),
        ("PUSH__DESTINATIONS", ""),
        ("WEBHOOK_URL", "ftp://x"),
        ("PUSH__MAX_ATTEMPTS", "0"),
        ("PUSH__CONSUMER", "a.b"),
        ("PUSH__METRICS_ADDR", "nowhere"),
        ("BINDU_WORKER_METRICS_ADDR", "nowhere"),
    ] {
        let e = Config::load(None, &env(&[(var, value)]), &[]).unwrap_err();
        assert!(e.key.contains(var), "{var}={value}: {e}");
    }
}

#[test]
fn unknown_file_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bindu.toml");
    std::fs::write(&file, "[server]\nprot = 1\n").unwrap();
    let e = Config::load(Some(&file), &env(&[]), &[]).unwrap_err();
    assert_eq!(e.key, "server.prot");
}

#[test]
fn every_value_survives_a_second_layering() {
    let c = Config::load(
        None,
        &env(&[
            ("STORAGE_TYPE", "postgres"),
            ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1/db"),
            ("STORAGE__RETENTION", "30d"),
            ("BINDU_HANDLER", "command"),
            ("BINDU_HANDLER_COMMAND", "python3 'my agent.py'"),
            ("AUTH__ALLOWED_DIDS", "did:a, did:b"),
            ("PUSH__METRICS_ADDR", "127.0.0.1:9464"),
            ("BINDU_TASK_TIMEOUT", "0"),
        ]),
        &[],
    )
    .unwrap();
    let again = c.relayer("flag Agent::builder", None).unwrap();
    // Sources differ (every key now comes from the builder); values do not.
    let values = |r: String| -> Vec<String> {
        r.lines()
            .map(|l| l.split("    #").next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(values(c.render()), values(again.render()));
    assert_eq!(again.worker.command, ["python3", "my agent.py"]);
    assert_eq!(again.auth.allowed_dids, ["did:a", "did:b"]);
    assert_eq!(again.worker.task_timeout, None);
}

#[test]
fn prices_are_checked_with_the_x402_section_and_shown() {
    use bindu_engine::x402::PriceOption;
    let mut c = Config::load(
        None,
        &env(&[
            ("X402_PAY_TO", "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"),
            ("X402__PROTECTED_METHODS", "message/send"),
            ("X402__SETTLE", "Before"),
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(c.pricing().unwrap(), None, "free by default");
    assert_eq!(c.x402.protected_methods, ["message/send"]);
    assert_eq!(c.x402.settle, bindu_engine::x402::SettleMode::Before);
    c.agent.execution_cost = vec![PriceOption::usdc("$0.25").on("base")];
    let accepts = c.pricing().unwrap().unwrap().accepts;
    assert_eq!(
        (accepts[0].amount.as_str(), accepts[0].network.as_str()),
        ("250000", "eip155:8453")
    );
    assert!(c
        .render()
        .contains("# agent.execution_cost: $0.25 USDC on base"));
    let again = c.relayer("flag Agent::builder", None).unwrap();
    assert_eq!(again.agent.execution_cost, c.agent.execution_cost);
    c.agent.execution_cost = vec![PriceOption::usdc("0.0000001")];
    let e = c.validate().unwrap_err();
    assert_eq!(e.key, "agent.execution_cost");
    for (var, value) in [
        ("X402__PROTECTED_METHODS", "tasks/get"),
        ("X402_PAY_TO", "0xServerWalletAddressHere"),
        ("X402__SETTLE", "later"),
        ("X402__DEFAULT_NETWORK", "solana"),
        ("X402__FACILITATOR_URL", "ftp://x"),
        ("X402__MAX_TIMEOUT_SECONDS", "5"),
    ] {
        let e = Config::load(None, &env(&[(var, value)]), &[]).unwrap_err();
        assert!(e.key.contains(var), "{var}={value}: {e}");
    }
    // A TOML file prices the agent.
    let dir = std::env::temp_dir().join(format!("bindu-cfg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("paid.toml");
    std::fs::write(
        &file,
        "[[agent.execution_cost]]\namount = \"0.01\"\nnetwork = \"base-sepolia\"\npay_to_address = \"0x742d35Cc6634C0532925a3b844Bc454e4438f44e\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&file), &env(&[]), &[]).unwrap();
    assert_eq!(c.pricing().unwrap().unwrap().accepts[0].amount, "10000");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn skills_have_prices_of_their_own_in_toml() {
    let dir = temp_dir();
    let file = dir.join("skills.toml");
    std::fs::write(
        &file,
        r#"
[x402]
pay_to = "0x742d35Cc6634C0532925a3b844Bc454e4438f44e"

[[agent.execution_cost]]
amount = "0.01"

[[agent.skills]]
id = "dear"
name = "Dear"
description = "Costs more"
execution_cost = [{ amount = "$0.50", network = "base" }]

[[agent.skills]]
id = "gift"
name = "Gift"
description = "Free on a priced agent"
execution_cost = []

[[agent.skills]]
id = "plain"
name = "Plain"
description = "The agent's price"
"#,
    )
    .unwrap();
    let c = Config::load(Some(&file), &env(&[]), &[]).unwrap();
    let prices = c.prices(&c.skills().unwrap()).unwrap();
    assert_eq!(prices.of(None)[0].amount, "10000");
    assert_eq!(prices.of(Some("plain"))[0].amount, "10000");
    let dear = prices.of(Some("dear"));
    assert_eq!(
        (dear[0].amount.as_str(), dear[0].network.as_str()),
        ("500000", "eip155:8453")
    );
    assert!(prices.of(Some("gift")).is_empty());
    // A bad skill price is refused at start-up, naming the skill list and the skill.
    std::fs::write(
        &file,
        "[[agent.skills]]\nid = \"dear\"\nname = \"Dear\"\ndescription = \"d\"\nexecution_cost = [{ amount = \"ten\" }]\n",
    )
    .unwrap();
    let c = Config::load(
        Some(&file),
        &env(&[("X402_PAY_TO", "0x742d35Cc6634C0532925a3b844Bc454e4438f44e")]),
        &[],
    )
    .unwrap();
    let e = c.prices(&c.skills().unwrap()).unwrap_err();
    assert!(e.key.starts_with("agent.skills"), "{e}");
    assert!(e.message.contains("\"dear\""), "{e}");
    std::fs::remove_dir_all(dir).ok();
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bindu-cfg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn skill_paths_in_a_file_are_relative_to_it() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("skills/qa")).unwrap();
    std::fs::write(
        dir.join("skills/qa/skill.yaml"),
        "id: qa-v1\nname: question-answering\ndescription: Answers questions\n",
    )
    .unwrap();
    let file = dir.join("bindu.toml");
    std::fs::write(
        &file,
        "[agent]\nskills = [\"skills/qa\", {name = \"inline\", description = \"d\"}]\n",
    )
    .unwrap();
    // Read from another working directory all the same.
    let c = Config::load(Some(&file), &env(&[]), &[]).unwrap();
    let skills = c.skills().unwrap();
    let ids: Vec<&str> = skills
        .public()
        .iter()
        .map(|s| s.skill.id.as_str())
        .collect();
    assert_eq!(ids, ["qa-v1", "inline"]);
    assert!(c.render().contains("# agent.skills: "), "{}", c.render());
    // Layered again (a builder over a loaded file), the same files are read.
    let again = c.relayer("flag Agent::builder", None).unwrap();
    assert_eq!(again.skills().unwrap().public().len(), 2);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_bad_skill_file_names_the_file_the_field_and_the_problem() {
    let dir = temp_dir();
    std::fs::write(
        dir.join("skill.yaml"),
        "name: pdf\ndescription: Reads PDFs\nperformance:\n  avg_processing_time_ms: fast\n",
    )
    .unwrap();
    let e = Config::load(None, &env(&[("BINDU_SKILLS", dir.to_str().unwrap())]), &[]).unwrap_err();
    assert_eq!(e.key, "agent.skills / BINDU_SKILLS");
    assert!(e.source_desc.contains("BINDU_SKILLS"), "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains(&dir.join("skill.yaml").display().to_string()),
        "{shown}"
    );
    assert!(
        shown.contains("performance.avg_processing_time_ms"),
        "{shown}"
    );
    assert!(shown.contains("invalid type"), "{shown}");
    let e = Config::load(None, &env(&[("BINDU_SKILLS", "/no/such/skill")]), &[]).unwrap_err();
    assert!(e.to_string().contains("/no/such/skill"), "{e}");
    // An inline skill in the file: the entry and its field.
    let file = dir.join("bindu.toml");
    std::fs::write(&file, "[agent]\nskills = [{name = \"x\"}]\n").unwrap();
    let e = Config::load(Some(&file), &env(&[]), &[]).unwrap_err();
    assert!(e.key.starts_with("agent.skills"), "{e}");
    assert!(e.to_string().contains("description"), "{e}");
    std::fs::write(
        &file,
        "[agent]\nskills = [{name = \"x\", description = \"d\", tagz = []}]\n",
    )
    .unwrap();
    let e = Config::load(Some(&file), &env(&[]), &[]).unwrap_err();
    assert!(e.to_string().contains("tagz"), "{e}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn private_skills_need_an_access_list_and_authentication() {
    let private = "[agent]\nprivate_skills = [{id = \"p\", name = \"p\", description = \"d\"}]\n";
    let dir = temp_dir();
    let file = dir.join("bindu.toml");
    std::fs::write(&file, private).unwrap();
    let e = Config::load(Some(&file), &env(&[]), &[]).unwrap_err();
    assert!(e.key.contains("BINDU_AGENT_ALLOWED_DIDS"), "{e}");
    let e = Config::load(
        Some(&file),
        &env(&[("BINDU_AGENT_ALLOWED_DIDS", "did:a")]),
        &[],
    )
    .unwrap_err();
    assert!(e.message.contains("AUTH__ENABLED"), "{e}");
    let c = Config::load(
        Some(&file),
        &env(&[
            ("BINDU_AGENT_ALLOWED_DIDS", "did:a, did:b"),
            ("AUTH__ENABLED", "true"),
            ("HYDRA__ADMIN_URL", "http://127.0.0.1:4445"),
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(c.agent.allowed_dids, ["did:a", "did:b"]);
    assert_eq!(c.skills().unwrap().private()[0].skill.id, "p");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn negotiation_settings_name_their_key() {
    let c = Config::load(None, &env(&[("NEGOTIATION__ENABLED", "true")]), &[]).unwrap();
    assert!(c.negotiation.enabled);
    for (var, value) in [
        ("NEGOTIATION__LOAD_WEIGHT", "-1"),
        ("NEGOTIATION__ID_TTL", "0"),
        ("NEGOTIATION__EMBEDDING_URL", "ftp://x"),
        ("NEGOTIATION__EMBEDDING_TIMEOUT_MS", "1"),
    ] {
        let e = Config::load(None, &env(&[(var, value)]), &[]).unwrap_err();
        assert!(e.key.contains(var), "{var}={value}: {e}");
    }
    let c = Config::load(
        None,
        &env(&[("NEGOTIATION__EMBEDDING_API_KEY", "sk-embed-secret")]),
        &[],
    )
    .unwrap();
    assert!(!c.render().contains("sk-embed-secret"));
}

#[test]
fn workers_and_dispatchers_serve_probes_by_default_and_an_empty_address_turns_them_off() {
    let d = Config::defaults();
    assert_eq!(
        d.worker.metrics_addr,
        Some("127.0.0.1:9465".parse().unwrap())
    );
    assert_eq!(d.push.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
    let c = Config::load(
        None,
        &env(&[
            ("BINDU_WORKER_METRICS_ADDR", ""),
            ("PUSH__METRICS_ADDR", "0.0.0.0:9100"),
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(c.worker.metrics_addr, None);
    assert_eq!(c.push.metrics_addr, Some("0.0.0.0:9100".parse().unwrap()));
}
