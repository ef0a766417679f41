//! Authentication end to end against a fake Ory Hydra admin API on loopback (Hydra itself
//! cannot be installed here): tokens, caching, DID request signatures, replay, ownership and
//! hostile input. Every refusal has the documented status, code or reason; nothing is a 500.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bindu::engine::identity::Identity;
use bindu_schemas::signing::Form as SigForm;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use crate::support;

use support::hydra::{fake_hydra, now, Hydra};

mod rest;

struct Env {
    hydra: Arc<Hydra>,
    server: bindu::Server,
    url: String,
    base: String,
    http: reqwest::Client,
}

impl Env {
    async fn start(extra: &[(&str, &str)]) -> Env {
        let (hydra, hydra_addr) = fake_hydra().await;
        Env::start_with(hydra, hydra_addr, extra).await
    }

    async fn start_with(
        hydra: Arc<Hydra>,
        hydra_addr: std::net::SocketAddr,
        extra: &[(&str, &str)],
    ) -> Env {
        let dir =
            std::env::temp_dir().join(format!("bindu-auth-{}", uuid::Uuid::new_v4().simple()));
        let hydra_url = format!("http://{hydra_addr}");
        let mut settings = vec![
            ("server.port", "0"),
            ("auth.enabled", "true"),
            ("hydra.admin_url", &hydra_url),
            ("hydra.timeout_secs", "2"),
            ("identity.dir", dir.to_str().unwrap()),
        ];
        settings.extend_from_slice(extra);
        let config = bindu::Config::from_settings(&settings).unwrap();
        let server = bindu::start(config, Arc::new(bindu::EchoHandler::default()))
            .await
            .unwrap();
        let base = format!("http://{}", server.local_addr());
        Env {
            hydra,
            url: format!("{base}/"),
            base,
            server,
            // No pooled connections: a refused request may close its connection, and reusing
            // it would be a client-side race, not what these tests are about.
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .timeout(support::TIMEOUT)
                .build()
                .unwrap(),
        }
    }

    fn token(&self, token: &str, client: &str, exp: Value, scope: &str) {
        self.hydra.tokens.lock().unwrap().insert(
            token.into(),
            json!({"active": true, "client_id": client, "sub": client, "exp": exp, "iat": now(), "scope": scope, "token_type": "Bearer"}),
        );
    }

    async fn post(&self, headers: &[(&str, String)], body: String) -> (u16, Value) {
        let len = body.len();
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("no HTTP answer to a {len}-byte body: {e:?}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// POSTs `body` to `path` exactly as written (no client-side path normalization) and returns
/// the response's status code.
async fn raw_post(base: &str, path: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(support::TIMEOUT, tcp.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"))
}

fn send_body(text: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
           "params": {"message": {"role": "user", "messageId": uuid::Uuid::new_v4().to_string(), "parts": [{"kind": "text", "text": text}]}}})
    .to_string()
}

fn bearer(t: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {t}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_checked_and_cached() {
    let env = Env::start(&[("hydra.sensitive_scopes", "admin")]).await;
    // Public paths need no token.
    for path in [
        "/.well-known/agent-card.json",
        "/.well-known/agent.json",
        "/health",
        "/healthz",
        "/metrics",
    ] {
        let r = env
            .http
            .get(format!("{}{path}", env.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let card: Value = support::get_json(
        &env.http,
        format!("{}/.well-known/agent-card.json", env.base),
    )
    .await;
    assert_eq!(
        card["securitySchemes"]["bearer"]["scheme"], "Bearer",
        "the card says a token is needed"
    );
    assert_eq!(card["security"], json!([{"bearer": []}]), "{card}");
    // Path tricks do not reach the JSON-RPC route unauthenticated: no path is normalized
    // into `/`, so each is an unknown path (404), not a JSON-RPC answer. Sent raw: an HTTP
    // client would resolve the dot segments before sending.
    for path in ["//", "/health/../", "/.well-known/../", "/./", "/%2e/"] {
        let status = raw_post(&env.base, path, &send_body("x")).await;
        assert_eq!(status, 404, "{path}");
    }

    let (status, body) = env.post(&[], send_body("x")).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (401, Some(-32009)),
        "{body}"
    );
    assert_eq!(body["id"], Value::Null);
    let (status, body) = env.post(&[bearer("unknown")], send_body("x")).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (401, Some(-32010))
    );
    env.token("expired", "svc-a", json!(now() - 10), "agent:read");
    let (status, body) = env.post(&[bearer("expired")], send_body("x")).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (401, Some(-32011))
    );
    // Odd shapes: active without exp, exp as a string.
    env.hydra.tokens.lock().unwrap().insert(
        "noexp".into(),
        json!({"active": true, "client_id": "svc-a"}),
    );
    env.token("strexp", "svc-a", json!("soon"), "");
    for t in ["noexp", "strexp"] {
        let (status, body) = env.post(&[bearer(t)], send_body("x")).await;
        assert_eq!(
            (status, body["error"]["code"].as_i64()),
            (401, Some(-32010)),
            "{t}: {body}"
        );
    }
    let (status, _) = env
        .post(&[("authorization", "Basic abc".into())], send_body("x"))
        .await;
    assert_eq!(status, 401);

    // A good token works and is introspected once while cached.
    env.token(
        "good",
        "svc-a",
        json!(now() + 3600),
        "agent:read agent:write",
    );
    let before = env.hydra.introspections.load(Ordering::SeqCst);
    for _ in 0..3 {
        let (status, body) = env.post(&[bearer("good")], send_body("hello")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["status"]["state"], "completed");
    }
    assert_eq!(
        env.hydra.introspections.load(Ordering::SeqCst) - before,
        1,
        "cached"
    );
    // Sensitive scopes are never cached.
    env.token("admin", "svc-admin", json!(now() + 3600), "admin");
    let before = env.hydra.introspections.load(Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(env.post(&[bearer("admin")], send_body("x")).await.0, 200);
    }
    assert_eq!(
        env.hydra.introspections.load(Ordering::SeqCst) - before,
        2,
        "not cached"
    );

    // Hydra failing: 503 / -32603, and nothing cached from it.
    env.hydra.broken.store(true, Ordering::SeqCst);
    env.token("fresh", "svc-b", json!(now() + 3600), "");
    let (status, body) = env.post(&[bearer("fresh")], send_body("x")).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (503, Some(-32603)),
        "{body}"
    );
    env.hydra.broken.store(false, Ordering::SeqCst);
    assert_eq!(env.post(&[bearer("fresh")], send_body("x")).await.0, 200);

    // Ownership: svc-b cannot see svc-a's task; it answers like a missing one.
    let (_, mine) = env.post(&[bearer("good")], send_body("private")).await;
    let task_id = mine["result"]["id"].as_str().unwrap().to_string();
    for (method, params) in [
        ("tasks/get", json!({"id": task_id})),
        ("tasks/cancel", json!({"id": task_id})),
        ("tasks/pushNotificationConfig/list", json!({"id": task_id})),
    ] {
        let body =
            json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": params}).to_string();
        let (_, theirs) = env.post(&[bearer("fresh")], body.clone()).await;
        assert_eq!(theirs["error"]["code"], -32001, "{method}: {theirs}");
        let (_, own) = env.post(&[bearer("good")], body).await;
        match method {
            "tasks/get" => assert_eq!(own["result"]["id"], task_id.as_str(), "{own}"),
            // Found, and refused only because it already completed.
            "tasks/cancel" => assert_eq!(own["error"]["code"], -32002, "{own}"),
            _ => assert_eq!(own["result"], json!([]), "{method}: {own}"),
        }
    }
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tasks/list", "params": {}}).to_string();
    let (_, theirs) = env.post(&[bearer("fresh")], list).await;
    assert!(theirs["result"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["id"] != json!(task_id)));
    env.server.shutdown();
}

/// A hostile-input case: name, headers, body, expected refusal reason.
type Case = (String, Vec<(&'static str, String)>, String, &'static str);

struct Signer {
    id: Identity,
    did: String,
}

fn signer(seed: u8, did: &str) -> Signer {
    Signer {
        id: Identity::new(SigningKey::from_bytes(&[seed; 32]), "x", "y"),
        did: did.into(),
    }
}

impl Signer {
    fn headers(&self, body: &str, ts: i64, form: SigForm) -> Vec<(&'static str, String)> {
        crate::support::hydra::did_headers(&self.id, &self.did, body, ts, form)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn did_clients_must_sign_and_hostile_input_is_refused() {
    let env = Env::start(&[]).await;
    let did = "did:bindu:alice_at_example_com:caller:0000";
    let alice = signer(1, did);
    env.token("alice", did, json!(now() + 3600), "agent:read agent:write");
    crate::support::hydra::register_key(&env.hydra, did, &alice.id);
    let reason = |b: &Value| {
        b["details"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    // A correctly signed request (Python form), and the JavaScript form with non-ASCII text.
    let body = send_body("hëllo 😀");
    let mut h = alice.headers(&body, now(), SigForm::Python);
    h.push(bearer("alice"));
    let (status, resp) = env.post(&h, body.clone()).await;
    assert_eq!(status, 200, "{resp}");
    let body2 = send_body("hëllo again 😀");
    let mut h2 = alice.headers(&body2, now(), SigForm::Js);
    h2.push(bearer("alice"));
    assert_eq!(env.post(&h2, body2).await.0, 200);

    // The same signed request again: replayed.
    let (status, resp) = env.post(&h, body.clone()).await;
    assert_eq!((status, reason(&resp)), (403, "replayed".into()));

    let cases: Vec<Case> = {
        let b = send_body("x");
        let ok = |ts: i64| alice.headers(&b, ts, SigForm::Python);
        let mut v = Vec::new();
        v.push((
            "no signature headers".to_string(),
            vec![],
            b.clone(),
            "missing_signature_headers",
        ));
        let mut m = ok(now());
        m[0].1 = "did:bindu:mallory:x:1".into();
        v.push(("another DID".to_string(), m, b.clone(), "did_mismatch"));
        v.push((
            "body altered after signing".to_string(),
            ok(now()),
            send_body("y"),
            "invalid_signature",
        ));
        v.push((
            "too old".to_string(),
            ok(now() - 3600),
            b.clone(),
            "invalid_signature",
        ));
        v.push((
            "far future".to_string(),
            ok(now() + 3600),
            b.clone(),
            "invalid_signature",
        ));
        let mut bad = ok(now());
        bad[2].1 = "0OIl-not-base58".into();
        v.push((
            "bad base58".to_string(),
            bad,
            b.clone(),
            "invalid_signature",
        ));
        let mut short = ok(now());
        short[2].1 = bs58::encode([1u8; 10]).into_string();
        v.push((
            "wrong signature length".to_string(),
            short,
            b.clone(),
            "invalid_signature",
        ));
        for ts in ["-5", "abc", "99999999999999999999999", "+1", " 12"] {
            let mut t = ok(now());
            t[1].1 = ts.into();
            // A number outside the window is a bad signature; anything else is no timestamp.
            // (" 12" is 12: HTTP trims header whitespace.)
            v.push((
                format!("odd timestamp {ts:?}"),
                t,
                b.clone(),
                if ts == "-5" || ts == " 12" {
                    "invalid_signature"
                } else {
                    "missing_signature_headers"
                },
            ));
        }
        let mut huge = ok(now());
        huge[2].1 = "z".repeat(20_000);
        v.push((
            "oversized signature header".to_string(),
            huge,
            b.clone(),
            "missing_signature_headers",
        ));
        let mut dup = ok(now());
        dup.push(("x-did-signature", dup[2].1.clone()));
        v.push((
            "duplicate header".to_string(),
            dup,
            b.clone(),
            "missing_signature_headers",
        ));
        v
    };
    for (name, mut headers, body, want) in cases {
        headers.push(bearer("alice"));
        let (status, resp) = env.post(&headers, body).await;
        assert_eq!(
            (status, reason(&resp)),
            (403, want.to_string()),
            "{name}: {resp}"
        );
        assert_eq!(resp["details"]["did_verified"], false);
    }

    // Non-ASCII bytes in the DID headers: refused as missing, never decoded or echoed raw.
    {
        let b = send_body("x");
        let mut h = alice.headers(&b, now(), SigForm::Python);
        h.push(bearer("alice"));
        let mut req = env
            .http
            .post(&env.url)
            .header("content-type", "application/json")
            .body(b);
        for (k, v) in &h {
            if *k != "x-did" {
                req = req.header(*k, v.as_str());
            }
        }
        let odd =
            reqwest::header::HeaderValue::from_bytes(b"did:bindu:\xc3\xa9:caller:0000").unwrap();
        let resp = req.header("x-did", odd).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 403);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(reason(&v), "missing_signature_headers", "{v}");
    }

    // A DID client Hydra has no key for.
    let bob = signer(2, "did:bindu:bob:caller:1");
    env.token("bob", &bob.did, json!(now() + 3600), "");
    let b = send_body("x");
    let mut h = bob.headers(&b, now(), SigForm::Python);
    h.push(bearer("bob"));
    let (status, resp) = env.post(&h, b).await;
    assert_eq!(
        (status, reason(&resp)),
        (403, "public_key_unavailable".into())
    );

    // Bodies over 2 MiB, with or without a length.
    let big = "x".repeat(3 * 1024 * 1024);
    let mut h = alice.headers(&big, now(), SigForm::Python);
    h.push(bearer("alice"));
    // Refused on its Content-Length; the server reads and drops the body so the client can
    // see the answer, but on a busy machine the client's write occasionally still races the
    // reply (seen about once in ten runs), so a transport error is retried (bounded).
    let (status, resp) = {
        let mut answer = None;
        for _ in 0..3 {
            let mut req = env
                .http
                .post(&env.url)
                .header("content-type", "application/json")
                .body(big.clone());
            for (k, v) in &h {
                req = req.header(*k, v.as_str());
            }
            if let Ok(r) = req.send().await {
                let status = r.status().as_u16();
                answer = Some((status, r.json::<Value>().await.unwrap_or(Value::Null)));
                break;
            }
        }
        answer.expect("an answer within three attempts")
    };
    assert_eq!((status, reason(&resp)), (403, "payload_too_large".into()));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .as_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let mut req = env
        .http
        .post(&env.url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)));
    for (k, v) in &h {
        req = req.header(*k, v.as_str());
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(reason(&v), "payload_too_large");
    env.server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_dids_are_admitted() {
    let env = Env::start(&[("auth.allowed_dids", "svc-allowed")]).await;
    env.token("in", "svc-allowed", json!(now() + 3600), "");
    env.token("out", "svc-other", json!(now() + 3600), "");
    assert_eq!(env.post(&[bearer("in")], send_body("x")).await.0, 200);
    let (status, body) = env.post(&[bearer("out")], send_body("x")).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "DID not admitted");
    env.server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_hydra_is_503() {
    let dir = std::env::temp_dir().join(format!("bindu-auth-{}", uuid::Uuid::new_v4().simple()));
    let config = bindu::Config::from_settings(&[
        ("server.port", "0"),
        ("auth.enabled", "true"),
        ("hydra.admin_url", "http://127.0.0.1:1"),
        ("identity.dir", dir.to_str().unwrap()),
    ])
    .unwrap();
    let server = bindu::start(config, Arc::new(bindu::EchoHandler::default()))
        .await
        .unwrap();
    let resp = reqwest::Client::builder()
        .no_proxy()
        .timeout(support::TIMEOUT)
        .build()
        .unwrap()
        .post(format!("http://{}/", server.local_addr()))
        .header("authorization", "Bearer t")
        .header("content-type", "application/json")
        .body(send_body("x"))
        .send()
        .await
        .unwrap();
    support::assert_error(resp, 503, -32603).await;
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_method_scopes_are_enforced_when_configured() {
    let env = Env::start(&[("auth.require_permissions", "true")]).await;
    env.token(
        "reader",
        "svc-reader",
        json!(now() + 3600),
        "openid agent:read",
    );
    env.token(
        "writer",
        "svc-writer",
        json!(now() + 3600),
        "agent:read agent:write",
    );
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/list", "params": {}}).to_string();
    let (status, body) = env.post(&[bearer("reader")], list).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = env.post(&[bearer("reader")], send_body("x")).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (403, Some(-32013)),
        "{body}"
    );
    assert_eq!(body["id"], 1, "the request id is echoed");
    assert_eq!(env.post(&[bearer("writer")], send_body("x")).await.0, 200);
    // Under A2A 1.0 the same refusals carry 1.0's codes (its -32009 is another error).
    let v10 = ("a2a-version", "1.0".to_string());
    let send10 = json!({"jsonrpc": "2.0", "id": 2, "method": "SendMessage", "params": {"message":
        {"role": "ROLE_USER", "messageId": "m10", "parts": [{"text": "x"}]}}})
    .to_string();
    let (status, body) = env.post(std::slice::from_ref(&v10), send10.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (401, Some(-32041)),
        "{body}"
    );
    let (status, body) = env
        .post(&[v10.clone(), bearer("reader")], send10.clone())
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (403, Some(-32045)),
        "{body}"
    );
    let (status, body) = env.post(&[v10, bearer("writer")], send10).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["task"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );
    env.server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_client_signs_and_authenticates() {
    let env = Env::start(&[]).await;
    let did = "did:bindu:carol:client:1";
    let carol = Arc::new(Identity::new(
        SigningKey::from_bytes(&[3; 32]),
        "carol",
        "client",
    ));
    env.token("carol", did, json!(now() + 3600), "agent:read agent:write");
    crate::support::hydra::register_key(&env.hydra, did, &carol);
    let client = bindu::client::Client::new(env.url.clone())
        .unwrap()
        .with_token("carol")
        .with_signer(carol, did);
    let msg = |t: &str| json!({"message": {"role": "user", "messageId": uuid::Uuid::new_v4().to_string(), "parts": [{"kind": "text", "text": t}]}});
    let (status, body) = client
        .call("message/send", msg("signed hello"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["status"]["state"], "completed");
    let mut events = Vec::new();
    let status = client
        .stream("message/stream", msg("signed stream"), |e| events.push(e))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(events.first().unwrap()["result"]["kind"], "task");
    assert_eq!(events.last().unwrap()["result"]["final"], true);
    // Without the signer the same token is refused.
    let unsigned = bindu::client::Client::new(env.url.clone())
        .unwrap()
        .with_token("carol");
    let (status, body) = unsigned.call("message/send", msg("x")).await.unwrap();
    assert_eq!(status, 403, "{body}");
    env.server.shutdown();
}

/// Two ingress replicas sharing Redis (`BINDU_TEST_REDIS_URL`, default the local server):
/// a token is introspected once for both, and a signature used on one is refused on the other.
#[cfg(feature = "t2-redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_token_cache_and_the_replay_guard_through_redis() {
    let (redis, agent) = crate::support::redis_proxy::shared_agent("redis-test");
    let (hydra, addr) = fake_hydra().await;
    // Replicas of one agent share its namespace (normally its DID, from a shared key dir).
    let extra = [
        ("cache.redis_url", redis.as_str()),
        ("storage.namespace", agent.as_str()),
    ];
    let a = Env::start_with(hydra.clone(), addr, &extra).await;
    let b = Env::start_with(hydra.clone(), addr, &extra).await;
    a.token(
        "shared",
        "svc-shared",
        json!(now() + 3600),
        "agent:read agent:write",
    );
    assert_eq!(a.post(&[bearer("shared")], send_body("a")).await.0, 200);
    assert_eq!(b.post(&[bearer("shared")], send_body("b")).await.0, 200);
    assert_eq!(
        hydra.introspections.load(Ordering::SeqCst),
        1,
        "the second replica used Redis"
    );

    let did = "did:bindu:dave:client:1";
    let dave = signer(4, did);
    a.token("dave", did, json!(now() + 3600), "");
    crate::support::hydra::register_key(&hydra, did, &dave.id);
    let body = send_body("once");
    let mut h = dave.headers(&body, now(), SigForm::Python);
    h.push(bearer("dave"));
    assert_eq!(a.post(&h, body.clone()).await.0, 200);
    let (status, resp) = b.post(&h, body).await;
    assert_eq!(status, 403, "{resp}");
    assert_eq!(resp["details"]["reason"], "replayed");
    a.server.shutdown();
    b.server.shutdown();
}

impl Env {
    /// An HTTP+JSON request (`body` sent as JSON when given): status, `WWW-Authenticate`
    /// and the JSON body.
    async fn rest(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&'static str, String)],
        body: Option<&str>,
    ) -> (u16, Option<String>, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        (status, challenge, resp.json().await.unwrap_or(Value::Null))
    }
}
