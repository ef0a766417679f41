//! The deployment files under `deploy/` (images cannot be pulled here, so they are not run):
//! each parses, every variable they give a bindu process is a key the binary knows, the
//! values load as a configuration, and every bindu container runs a real subcommand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// Every YAML document of a file.
fn documents(path: &str) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            <Value as serde::Deserialize>::deserialize(d)
                .unwrap_or_else(|e| panic!("deploy/{path} is not valid YAML: {e}"))
        })
        .collect()
}

/// Variables a bindu process reads besides its configuration keys.
const OTHER_VARIABLES: &[&str] = &["RUST_LOG", "BINDU_CONFIG"];

const SUBCOMMANDS: &[&str] = &["serve", "ingress", "worker", "dispatcher", "migrate"];

/// Asserts every variable is known and the whole set loads as a configuration.
fn check_environment(place: &str, env: &BTreeMap<String, String>) {
    let known: Vec<&str> = bindu::config::keys().iter().map(|k| k.env).collect();
    for name in env.keys() {
        assert!(
            known.contains(&name.as_str()) || OTHER_VARIABLES.contains(&name.as_str()),
            "{place} sets {name}, which bindu does not read"
        );
    }
    if let Err(e) = bindu::Config::load(None, &|k| env.get(k).cloned(), &[]) {
        panic!("{place}: its settings do not load: {e}");
    }
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        other => serde_yaml_ng::to_string(other).unwrap().trim().to_string(),
                    };
                    (k.as_str().expect("a variable name").to_string(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn env_file(path: &str) -> BTreeMap<String, String> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("deploy/{path}: `{l}` is not NAME=value"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn compose_services_set_only_known_variables_and_run_real_subcommands() {
    let docs = documents("compose/compose.yaml");
    let services = docs[0]["services"]
        .as_mapping()
        .expect("compose.yaml has services");
    let shared = env_file("compose/bindu.env");
    let mut bindu_services = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap();
        let image = service["image"].as_str().unwrap_or("");
        if !image.starts_with("bindu") {
            continue;
        }
        bindu_services += 1;
        let command = service["command"][0].as_str().expect("a command");
        assert!(
            SUBCOMMANDS.contains(&command),
            "service {name} runs `bindu {command}`"
        );
        let mut env = BTreeMap::new();
        if let Some(files) = service["env_file"].as_sequence() {
            for f in files {
                assert_eq!(f.as_str(), Some("bindu.env"), "service {name}");
                env.extend(shared.clone());
            }
        }
        env.extend(string_map(&service["environment"]));
        check_environment(&format!("compose service {name}"), &env);
    }
    // migrate, two ingresses, workers, the dispatcher.
    assert_eq!(bindu_services, 5);
    let nginx = read("compose/nginx.conf");
    for upstream in ["ingress-1:3773", "ingress-2:3773"] {
        assert!(nginx.contains(upstream), "nginx.conf proxies to {upstream}");
        assert!(services.contains_key(upstream.split(':').next().unwrap()));
    }
    assert!(nginx.contains("proxy_buffering off"), "SSE needs it");
}

#[test]
fn kubernetes_manifests_set_only_known_variables_and_probe_the_documented_paths() {
    let mut config = BTreeMap::new();
    for doc in documents("k8s/config.yaml")
        .into_iter()
        .chain(documents("k8s/examples/secret.yaml"))
    {
        let data = if doc["kind"] == "ConfigMap" {
            &doc["data"]
        } else {
            &doc["stringData"]
        };
        config.extend(string_map(data));
    }
    check_environment("k8s config.yaml + examples/secret.yaml", &config);
    let mut deployments = 0;
    for file in ["k8s/ingress.yaml", "k8s/worker.yaml", "k8s/dispatcher.yaml"] {
        for doc in documents(file) {
            assert!(
                doc["apiVersion"].is_string() && doc["kind"].is_string(),
                "{file}"
            );
            if doc["kind"] != "Deployment" {
                continue;
            }
            deployments += 1;
            let pod = &doc["spec"]["template"]["spec"];
            let grace = pod["terminationGracePeriodSeconds"]
                .as_u64()
                .expect("grace");
            let drain: u64 = config["BINDU_SHUTDOWN_TIMEOUT"].parse().unwrap();
            assert!(
                grace > drain,
                "{file}: the grace period outlasts the drain deadline"
            );
            let container = &pod["containers"][0];
            let command = container["args"][0].as_str().expect("args");
            assert!(
                SUBCOMMANDS.contains(&command),
                "{file} runs `bindu {command}`"
            );
            let mut env = config.clone();
            for var in container["env"].as_sequence().into_iter().flatten() {
                env.insert(
                    var["name"].as_str().unwrap().to_string(),
                    var["value"].as_str().unwrap().to_string(),
                );
            }
            check_environment(file, &env);
            assert_eq!(
                container["livenessProbe"]["httpGet"]["path"], "/health",
                "{file}: liveness"
            );
            assert_eq!(
                container["readinessProbe"]["httpGet"]["path"], "/healthz",
                "{file}: readiness"
            );
            // The probes' port is one the container declares.
            let port = container["readinessProbe"]["httpGet"]["port"].clone();
            assert!(
                container["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == port),
                "{file}: probe port {port:?}"
            );
        }
    }
    assert_eq!(deployments, 3);
}

#[test]
fn the_dockerfile_builds_the_binary_and_runs_it_unprivileged() {
    let text = read("docker/Dockerfile");
    assert!(text.contains("cargo build --release --locked -p bindu"));
    assert!(text.contains("USER 10001"), "runs as a non-root user");
    let env: BTreeMap<String, String> = text
        .lines()
        .skip_while(|l| !l.starts_with("ENV "))
        .take_while(|l| l.starts_with("ENV ") || l.starts_with("    "))
        .flat_map(|l| l.trim_start_matches("ENV ").split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_end_matches('\\').to_string()))
        .collect();
    assert!(env.contains_key("BINDU_HOST"), "{env:?}");
    check_environment("Dockerfile", &env);
}
