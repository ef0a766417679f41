//! Hardening against forged credentials and failing dependencies (issue 14 items 3, 6, 9,
//! 11), through a real server on a loopback port: webhook signatures no result can produce,
//! Hydra's answers checked and cached the right way, secrets kept out of errors and agent
//! processes, the TLS key's permissions, and (T2, `t2-redis`) a Redis that hangs or restarts.

use crate::process;
use crate::support;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bindu_schemas::signing::{signing_payload, Form};
use serde_json::{json, Value};
use support::hydra::{fake_hydra, now, Hydra};
use support::{within, TestServer};

fn temp_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()))
}

fn headers(pairs: &[(&'static str, String)]) -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, v.parse().unwrap());
    }
    h
}

// ---- Item 3: webhook signatures -----------------------------------------------------------

/// The attack: send the webhook's signing bytes as message text to the echo agent, take the
/// signature the result carries, and present it as a webhook signature. It is a genuine
/// signature of the agent's identity key, and `verify_notification` with the webhook key the
/// agent publishes refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_signature_never_verifies_as_a_webhook() {
    let dir = temp_dir("bindu-webhook-forgery");
    let server = TestServer::echo_with(&[
        ("identity.dir", dir.to_str().unwrap()),
        ("push.enabled", "true"),
        ("push.destinations", "loopback"),
    ])
    .await;
    let (hook, posted) = receiver().await;
    let (status, _, card) = server.get("/.well-known/agent-card.json").await;
    assert_eq!(status, 200);
    let card: Value = serde_json::from_str(&card).unwrap();
    let ext = &card["capabilities"]["extensions"][0];
    let did = ext["uri"].as_str().unwrap().to_string();
    let identity_key = ext["params"]["publicKeyBase58"]
        .as_str()
        .unwrap()
        .to_string();
    let webhook_key = ext["params"]["webhookPublicKeyBase58"]
        .as_str()
        .expect("the card publishes the webhook key")
        .to_string();
    assert_ne!(identity_key, webhook_key);

    // The notification the attacker wants to pass off as the agent's.
    let forged = json!({
        "kind": "status-update", "taskId": "victim", "contextId": "c",
        "status": {"state": "completed", "timestamp": "2026-11-28T00:00:00Z"},
        "final": true, "eventId": "victim:9", "sequence": 9,
        "timestamp": "2026-11-28T00:00:00Z",
    })
    .to_string();
    let ts = bindu::engine::time::unix_now();
    let signing_text = signing_payload(&forged, &did, ts, Form::Python);
    let task = server
        .rpc_ok(
            "message/send",
            json!({"message": support::user_message(&signing_text),
                   "configuration": {"pushNotificationConfig": {"url": hook}}}),
        )
        .await;
    let part = &task["artifacts"][0]["parts"][0];
    assert_eq!(part["text"], json!(signing_text), "echoed as is");
    // A text shaped like a signing envelope (of a webhook or a request) is never signed.
    assert_eq!(
        part["metadata"]["did.message.signature"],
        Value::Null,
        "no signature over an envelope: {part}"
    );
    let skew = Duration::from_secs(300);
    // Were it signed with the identity key (as results are), it still would not pass for a
    // webhook: the webhook key is another key.
    let (key, _) = bindu::engine::identity::load_or_create(&dir, false).unwrap();
    let identity = bindu::engine::identity::Identity::new(key, "a", "b");
    let h = headers(&[
        ("x-did", did.clone()),
        ("x-did-timestamp", ts.to_string()),
        (
            "x-did-signature",
            identity.sign_base58(signing_text.as_bytes()),
        ),
    ]);
    assert_eq!(
        bindu::verify_notification(&h, forged.as_bytes(), &did, &identity_key, skew),
        Ok(())
    );
    assert_eq!(
        bindu::verify_notification(&h, forged.as_bytes(), &did, &webhook_key, skew),
        Err(bindu::NotificationVerifyError::BadSignature)
    );
    // Ordinary results are signed with the identity key.
    let plain = server
        .rpc_ok(
            "message/send",
            json!({"message": support::user_message("an ordinary reply")}),
        )
        .await;
    let plain = &plain["artifacts"][0]["parts"][0];
    let sig = plain["metadata"]["did.message.signature"]
        .as_str()
        .expect("results are signed");
    assert!(bindu::engine::identity::verify_base58(
        &identity_key,
        b"an ordinary reply",
        sig
    ));

    // The agent's real notifications (of this very task) verify with the webhook key only.
    let real = within("a real notification", async {
        loop {
            if let Some(first) = posted.lock().unwrap().first().cloned() {
                return first;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        bindu::verify_notification(&real.0, &real.1, &did, &webhook_key, skew),
        Ok(())
    );
    assert_eq!(
        bindu::verify_notification(&real.0, &real.1, &did, &identity_key, skew),
        Err(bindu::NotificationVerifyError::BadSignature)
    );

    // The DID document publishes the webhook key as a verification method of its own.
    let (status, _, doc) = server
        .get(&format!("/did/resolve?did={}", urlencode(&did)))
        .await;
    assert_eq!(status, 200, "{doc}");
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let method = &doc["assertionMethod"][0];
    assert_eq!(method["id"], json!(format!("{did}#webhook")));
    assert_eq!(method["type"], "Ed25519VerificationKey2020");
    assert_eq!(method["publicKeyBase58"], json!(webhook_key));
    assert_eq!(
        doc["authentication"][0]["publicKeyBase58"],
        json!(identity_key)
    );
    let _ = std::fs::remove_dir_all(dir);
}

type Posted = Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, axum::body::Bytes)>>>;

/// A webhook receiver on a loopback port recording every request.
async fn receiver() -> (String, Posted) {
    let posted: Posted = Arc::default();
    let p = posted.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let p = p.clone();
                async move {
                    p.lock().unwrap().push((headers, body));
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), posted)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- Item 9: Hydra introspection --------------------------------------------------------

struct AuthEnv {
    hydra: Arc<Hydra>,
    hydra_addr: std::net::SocketAddr,
    server: TestServer,
    _dir: PathBuf,
}

async fn auth_env(extra: &[(&str, &str)]) -> AuthEnv {
    let (hydra, addr) = fake_hydra().await;
    auth_env_with(hydra, addr, extra).await
}

async fn auth_env_with(
    hydra: Arc<Hydra>,
    addr: std::net::SocketAddr,
    extra: &[(&str, &str)],
) -> AuthEnv {
    let dir = temp_dir("bindu-hardening-auth");
    let server =
        support::start_authenticated(addr, &dir, extra, Arc::new(bindu::EchoHandler::default()))
            .await;
    AuthEnv {
        hydra,
        hydra_addr: addr,
        server,
        _dir: dir,
    }
}

fn send_body(text: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
           "params": {"message": {"role": "user", "kind": "message",
                      "messageId": uuid::Uuid::new_v4().to_string(),
                      "parts": [{"kind": "text", "text": text}]}}})
    .to_string()
}

impl AuthEnv {
    /// POSTs a send with `token` and `extra` headers; status and JSON body.
    async fn post(
        &self,
        token: &str,
        extra: &[(&'static str, String)],
        body: String,
    ) -> (u16, Value) {
        let mut req = self
            .server
            .client
            .post(self.server.url())
            .header("content-type", "application/json")
            .bearer_auth(token)
            .body(body);
        for (k, v) in extra {
            req = req.header(*k, v.as_str());
        }
        let resp = within("POST / with a token", req.send()).await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn status(&self, token: &str) -> (u16, Option<i64>) {
        let (status, body) = self.post(token, &[], send_body("hi")).await;
        (status, body["error"]["code"].as_i64())
    }

    fn introspections(&self) -> usize {
        self.hydra.introspections.load(Ordering::SeqCst)
    }
}

fn answer(client: &str, extra: Value) -> Value {
    let mut a = json!({"active": true, "client_id": client, "sub": client,
                       "exp": now() + 3600, "iat": now(), "scope": "", "token_type": "Bearer"});
    for (k, v) in extra.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

/// Refresh tokens, tokens not yet valid and (with `HYDRA__AUDIENCE`) tokens for another
/// audience are refused with 401 / -32010; access tokens for this audience pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_access_tokens_for_this_audience_and_already_valid_pass() {
    let env = auth_env(&[("hydra.audience", "agent-x")]).await;
    let h = &env.hydra;
    h.answer(
        "access",
        answer(
            "svc",
            json!({"token_use": "access_token", "aud": ["agent-x"]}),
        ),
    );
    h.answer("single-aud", answer("svc", json!({"aud": "agent-x"})));
    h.answer(
        "refresh",
        answer(
            "svc",
            json!({"token_use": "refresh_token", "aud": ["agent-x"]}),
        ),
    );
    h.answer("other-aud", answer("svc", json!({"aud": ["agent-y"]})));
    h.answer("no-aud", answer("svc", json!({})));
    h.answer(
        "later",
        answer("svc", json!({"aud": ["agent-x"], "nbf": now() + 3600})),
    );
    h.answer(
        "skewed",
        answer("svc", json!({"aud": ["agent-x"], "nbf": now() + 5})),
    );
    for ok in ["access", "single-aud", "skewed"] {
        assert_eq!(env.status(ok).await, (200, None), "{ok}");
    }
    for refused in ["refresh", "other-aud", "no-aud", "later"] {
        assert_eq!(env.status(refused).await, (401, Some(-32010)), "{refused}");
    }
    // Without an audience setting, `aud` is not required; refresh tokens stay refused.
    let open = auth_env_with(env.hydra.clone(), env.hydra_addr, &[]).await;
    assert_eq!(open.status("no-aud").await, (200, None));
    assert_eq!(open.status("refresh").await, (401, Some(-32010)));
}

/// An inactive token is introspected once while it is remembered as inactive, and
/// concurrent requests with one new token share one introspection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_tokens_are_remembered_and_concurrent_lookups_are_shared() {
    let env = auth_env(&[("hydra.negative_cache_ttl_secs", "60")]).await;
    let before = env.introspections();
    for _ in 0..5 {
        assert_eq!(env.status("unknown").await, (401, Some(-32010)));
    }
    assert_eq!(env.introspections() - before, 1, "inactive: remembered");

    // One slow introspection, twenty requests waiting for it.
    env.hydra.delay_ms.store(500, Ordering::SeqCst);
    env.hydra.answer(
        "burst",
        answer("svc-burst", json!({"token_use": "access_token"})),
    );
    let before = env.introspections();
    let results = futures::future::join_all((0..20).map(|_| env.status("burst"))).await;
    assert!(results.iter().all(|r| *r == (200, None)), "{results:?}");
    assert_eq!(env.introspections() - before, 1, "one shared lookup");

    // Sensitive tokens are never kept, but concurrent requests still share a lookup.
    let env = auth_env(&[("hydra.sensitive_scopes", "admin")]).await;
    env.hydra.delay_ms.store(300, Ordering::SeqCst);
    env.hydra
        .answer("admin", answer("svc-admin", json!({"scope": "admin"})));
    let before = env.introspections();
    let results = futures::future::join_all((0..10).map(|_| env.status("admin"))).await;
    assert!(results.iter().all(|r| *r == (200, None)), "{results:?}");
    assert_eq!(env.introspections() - before, 1, "shared while in flight");
    assert_eq!(env.status("admin").await, (200, None));
    assert_eq!(env.introspections() - before, 2, "and not kept afterwards");
}

// ---- Item 11: secrets ---------------------------------------------------------------------

/// A NATS URL's credentials never appear in the error of a failed connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_credentials_stay_out_of_connect_errors() {
    // A loopback port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for url in [
        format!("nats://bob:hunter2-secret@127.0.0.1:{port}"),
        format!("nats://hunter2-secret@127.0.0.1:{port}"),
    ] {
        let err = support::echo_refused(
            &[
                ("server.host", "127.0.0.1"),
                ("server.port", "0"),
                ("scheduler.type", "nats"),
                ("nats.url", url.as_str()),
            ],
            "no NATS there",
        )
        .await;
        for shown in [format!("{err:#}"), format!("{err:?}")] {
            assert!(!shown.contains("hunter2-secret"), "{shown}");
            assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
        }
    }
}

/// The command handler's process gets the allow-listed variables only: a secret in the
/// engine's environment does not reach it, a name added with `BINDU_HANDLER_ENV` does.
#[test]
fn agent_processes_get_only_allowed_variables() {
    let dir = temp_dir("bindu-agent-env");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("agent.sh");
    // Answers every line with the names of the variables it sees.
    std::fs::write(
        &script,
        "while IFS= read -r line; do\n\
         \x20 names=$(env | cut -d= -f1 | sort | tr '\\n' ' ')\n\
         \x20 printf '{\"type\":\"result\",\"text\":\"%s\"}\\n' \"$names\"\n\
         done\n",
    )
    .unwrap();
    let mut cmd = process::bindu();
    cmd.env("BINDU_HANDLER", "command")
        .env("BINDU_HANDLER_COMMAND", format!("sh {}", script.display()))
        .env("BINDU_HANDLER_ENV", "AGENT_SETTING,AGENT_PREFIX_*")
        .env("AGENT_SETTING", "visible")
        .env("AGENT_PREFIX_ONE", "visible")
        .env("ENGINE_SECRET_TOKEN", "hunter2")
        .env("AWS_SECRET_ACCESS_KEY", "hunter2")
        .env("HOME", &dir)
        .args(["serve", "--port", "0", "--log-level", "warn"]);
    cmd.current_dir(&dir);
    let agent = process::Agent::start(cmd);
    let reply = process::rpc(
        &agent.url(),
        "message/send",
        json!({"message": {"role": "user", "kind": "message", "messageId": "m-1",
                           "parts": [{"kind": "text", "text": "env?"}]}}),
    );
    let text = reply["result"]["artifacts"][0]["parts"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"));
    let names: Vec<&str> = text.split_whitespace().collect();
    for present in ["PATH", "HOME", "AGENT_SETTING", "AGENT_PREFIX_ONE"] {
        assert!(names.contains(&present), "{present} missing: {names:?}");
    }
    for absent in [
        "ENGINE_SECRET_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "BINDU_HANDLER_COMMAND",
    ] {
        assert!(!names.contains(&absent), "{absent} leaked: {names:?}");
    }
    agent.kill();
    let _ = std::fs::remove_dir_all(dir);
}

/// `tls_key.pem` is refused when other users can read it, as `private.pem` is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_key_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("bindu-tls-key-mode");
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("tls_key.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(dir.join("tls_cert.pem"), "not read").unwrap();
    let refused = bindu_ingress::tls::server_config(&bindu_ingress::tls::TlsFiles {
        cert: &dir.join("tls_cert.pem"),
        key: &key,
        client_ca: None,
        require_client_cert: false,
    });
    assert!(
        matches!(
            &refused,
            Err(bindu_ingress::tls::TlsError::KeyPermissions { mode: 0o644, .. })
        ),
        "{refused:?}"
    );
    let err = support::echo_refused(
        &[
            ("server.host", "127.0.0.1"),
            ("server.port", "0"),
            ("identity.dir", dir.to_str().unwrap()),
            ("mtls.enabled", "true"),
            ("mtls.mode", "mtls"),
        ],
        "an open TLS key must stop the start",
    )
    .await;
    assert!(
        format!("{err:#}").contains(&key.display().to_string()),
        "{err:#}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

// ---- Item 6: Redis that hangs or restarts (T2) ---------------------------------------------

#[cfg(feature = "t2-redis")]
mod redis {
    use super::*;
    use bindu::engine::identity::Identity;
    use std::time::Instant;

    use support::redis_proxy::{redis_addr, Proxy};

    struct Caller {
        id: Identity,
        did: String,
    }

    impl Caller {
        fn new(hydra: &Hydra, token: &str) -> Caller {
            let did = format!("did:bindu:redis:test:{}", uuid::Uuid::new_v4().simple());
            let id = Identity::new(ed25519_dalek::SigningKey::from_bytes(&[5; 32]), "x", "y");
            hydra.answer(token, answer(&did, json!({"token_use": "access_token"})));
            crate::support::hydra::register_key(hydra, &did, &id);
            Caller { id, did }
        }

        fn signed(&self, body: &str) -> Vec<(&'static str, String)> {
            support::hydra::did_headers(&self.id, &self.did, body, now(), Form::Python)
        }
    }

    async fn health(server: &TestServer) -> Value {
        let (_, _, body) = server.get("/health").await;
        serde_json::from_str(&body).unwrap()
    }

    async fn metric(server: &TestServer, name: &str) -> Option<f64> {
        let (_, _, text) = server.get("/metrics").await;
        text.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Polls `/health` (bounded) until the shared state is `up`.
    async fn shared_state_becomes(server: &TestServer, up: bool) -> Value {
        within("the shared state's health to change", async {
            loop {
                let h = health(server).await;
                if h["runtime"]["shared_state_ready"] == json!(up) {
                    return h;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
    }

    /// A hung Redis: signed requests and uncached-token requests answer within the command
    /// timeout (falling back to the replica's own caches), and `/health` and `/metrics` say
    /// Redis is down; once it answers again, they say so too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_redis_delays_requests_by_the_timeout_at_most() {
        let proxy = Proxy::start().await;
        let agent = format!("redis-hang-{}", uuid::Uuid::new_v4().simple());
        let env = auth_env(&[
            ("cache.redis_url", proxy.url.as_str()),
            ("cache.redis_timeout_ms", "300"),
            ("storage.namespace", agent.as_str()),
            ("hydra.sensitive_scopes", "uncached"),
        ])
        .await;
        let caller = Caller::new(&env.hydra, "signer");
        env.hydra
            .answer("uncached", answer("svc-u", json!({"scope": "uncached"})));
        let body = send_body("before");
        assert_eq!(env.post("signer", &caller.signed(&body), body).await.0, 200);
        assert_eq!(env.status("uncached").await, (200, None));
        assert_eq!(health(&env.server).await["status"], "ok");
        assert_eq!(
            metric(&env.server, "bindu_auth_shared_state_up").await,
            Some(1.0)
        );

        proxy.hang(true);
        for i in 0..3 {
            let started = Instant::now();
            let body = send_body(&format!("hung {i}"));
            let (status, resp) = env.post("signer", &caller.signed(&body), body).await;
            assert_eq!(status, 200, "{resp}");
            assert_eq!(env.status("uncached").await, (200, None));
            let took = started.elapsed();
            assert!(took < Duration::from_secs(3), "request {i} took {took:?}");
        }
        let h = shared_state_becomes(&env.server, false).await;
        assert_eq!(h["status"], "degraded");
        assert_eq!(h["ready"], true, "Redis down does not take the replica out");
        assert!(h["runtime"]["shared_state_error"].is_string(), "{h}");
        assert_eq!(
            metric(&env.server, "bindu_auth_shared_state_up").await,
            Some(0.0)
        );
        assert!(
            metric(&env.server, "bindu_auth_shared_state_errors_total")
                .await
                .unwrap()
                >= 1.0
        );

        proxy.hang(false);
        let h = shared_state_becomes(&env.server, true).await;
        assert_eq!(h["status"], "ok");
    }

    /// After a Redis restart the replica reconnects by itself and the replay guard is shared
    /// again: a signature used on one replica is refused on the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_redis_restart_the_shared_replay_guard_comes_back() {
        let proxy = Proxy::start().await;
        let agent = format!("redis-restart-{}", uuid::Uuid::new_v4().simple());
        let (hydra, addr) = fake_hydra().await;
        let a = auth_env_with(
            hydra.clone(),
            addr,
            &[
                ("cache.redis_url", proxy.url.as_str()),
                ("cache.redis_timeout_ms", "300"),
                ("cache.redis_reconnect_max_ms", "500"),
                ("storage.namespace", agent.as_str()),
            ],
        )
        .await;
        let direct = format!("redis://{}", redis_addr());
        let b = auth_env_with(
            hydra.clone(),
            addr,
            &[
                ("cache.redis_url", direct.as_str()),
                ("storage.namespace", agent.as_str()),
            ],
        )
        .await;
        let caller = Caller::new(&hydra, "dave");

        proxy.restart_begins();
        // While it is down, requests are still answered (this replica guards alone).
        let body = send_body("during");
        assert_eq!(a.post("dave", &caller.signed(&body), body).await.0, 200);
        shared_state_becomes(&a.server, false).await;
        proxy.restart_ends();
        shared_state_becomes(&a.server, true).await;

        let body = send_body("once");
        let signed = caller.signed(&body);
        assert_eq!(a.post("dave", &signed, body.clone()).await.0, 200);
        let (status, resp) = b.post("dave", &signed, body).await;
        assert_eq!(status, 403, "{resp}");
        assert_eq!(resp["details"]["reason"], "replayed");
    }
}
