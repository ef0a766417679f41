//! Helpers for the in-process HTTP tests: a server on a free port of 127.0.0.1, JSON-RPC and
//! raw POST helpers, a small SSE reader and message builders. Every network wait is bounded
//! by [`TIMEOUT`].

#![allow(dead_code)]

pub mod embeddings;
pub mod hydra;
pub mod metrics_table;
pub mod otlp;
pub mod redis_proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bindu::engine::sse::{SseDecoder, SseFrames};
use bindu::Config;
use bindu::{Handler, HandlerError, HandlerInput, HandlerOutput};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

/// Upper bound on every wait in these tests.
pub const TIMEOUT: Duration = Duration::from_secs(10);

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A process-unique id with a readable prefix.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `{"role":"user","parts":[{"kind":"text","text":..}],"messageId":..,"kind":"message"}`.
pub fn user_message(text: &str) -> Value {
    json!({
        "role": "user",
        "parts": [{"kind": "text", "text": text}],
        "messageId": unique("msg"),
        "kind": "message",
    })
}

/// A user message with extra top-level fields merged in (`taskId`, `contextId`, ...).
pub fn user_message_with(text: &str, extra: Value) -> Value {
    let mut m = user_message(text);
    let (Value::Object(map), Value::Object(extra)) = (&mut m, extra) else {
        panic!("user_message_with needs a JSON object");
    };
    map.extend(extra);
    m
}

/// Runs `fut`, failing the test when it takes longer than [`TIMEOUT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {TIMEOUT:?}: {what}"),
    }
}

/// Waits (polling, bounded by [`TIMEOUT`]) until `cond` holds; fails the test naming `what`.
pub async fn until(what: &str, cond: impl Fn() -> bool) {
    within(what, async {
        for _ in 0..1000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("gave up waiting for {what}");
    })
    .await
}

/// Wraps an async closure as a shareable handler.
pub fn handler<F, Fut>(f: F) -> Arc<dyn Handler>
where
    F: Fn(HandlerInput) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<HandlerOutput, HandlerError>> + Send + 'static,
{
    Arc::new(bindu::handler_fn(f))
}

/// The text of the last user message a handler got ("" when there is none).
pub fn user_text(input: &HandlerInput) -> String {
    input
        .last_user_message()
        .map(|m| m.text())
        .unwrap_or_default()
}

/// The text of the first part of a JSON message or artifact.
pub fn first_text(v: &Value) -> &str {
    v["parts"][0]["text"].as_str().unwrap_or_else(|| {
        panic!("no text in the first part of {v}");
    })
}

/// A JSON task's state (`""` when it has none).
pub fn state(task: &Value) -> &str {
    task["status"]["state"].as_str().unwrap_or_default()
}

/// A JSON task's id.
pub fn task_id(task: &Value) -> String {
    task["id"].as_str().unwrap().to_string()
}

/// Asserts that `task` failed with a status message that contains `why`.
pub fn assert_failed_with(task: &Value, why: &str) {
    assert_eq!(state(task), "failed", "{task}");
    assert!(
        first_text(&task["status"]["message"]).contains(why),
        "{task}"
    );
}

/// The JSON-RPC error code of a response (panics on a success response).
pub fn error_code(resp: &Value) -> i64 {
    resp["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error response, got {resp}"))
}

/// A handler that reports each start and then waits until the test releases it.
pub struct Gate {
    started: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    release: Arc<Semaphore>,
}

impl Gate {
    /// The gate and its handler; a released run completes with the text `released`.
    pub fn new() -> (Arc<Gate>, Arc<dyn Handler>) {
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        let release = Arc::new(Semaphore::new(0));
        let gate = Arc::new(Gate {
            started: tokio::sync::Mutex::new(rx),
            release: release.clone(),
        });
        let h = handler(move |input: HandlerInput| {
            let tx = tx.clone();
            let release = release.clone();
            async move {
                let _ = tx.send(input.task_id.clone());
                match tokio::time::timeout(TIMEOUT, release.acquire()).await {
                    Ok(Ok(permit)) => permit.forget(),
                    _ => return Err("the gate was never released".into()),
                }
                Ok(HandlerOutput::Text("released".into()))
            }
        });
        (gate, h)
    }

    /// Waits for the next handler run to start; returns its task id.
    pub async fn started(&self) -> String {
        within("a gated handler to start", async {
            self.started.lock().await.recv().await
        })
        .await
        .unwrap()
    }

    /// Lets `n` waiting (or future) runs finish.
    pub fn release(&self, n: usize) {
        self.release.add_permits(n);
    }
}

/// A running server plus a client for it.
pub struct TestServer {
    server: Option<bindu::Server>,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    next_id: AtomicU64,
}

impl TestServer {
    /// Echo handler, default settings.
    pub async fn echo() -> TestServer {
        Self::start(&[], Arc::new(bindu::EchoHandler::default())).await
    }

    /// The echo handler with `settings` (see [`TestServer::start`]).
    pub async fn echo_with(settings: &[(&str, &str)]) -> TestServer {
        Self::start(settings, Arc::new(bindu::EchoHandler::default())).await
    }

    pub async fn with_handler(h: Arc<dyn Handler>) -> TestServer {
        Self::start(&[], h).await
    }

    /// Starts a server on a free port of 127.0.0.1 with `settings` (config key, value).
    pub async fn start(settings: &[(&str, &str)], h: Arc<dyn Handler>) -> TestServer {
        Self::start_config(settings, |_| {}, h).await
    }

    /// [`TestServer::start`], with `change` applied to the configuration (settings that are
    /// not scalars, such as `agent.execution_cost`).
    pub async fn start_config(
        settings: &[(&str, &str)],
        change: impl FnOnce(&mut Config),
        h: Arc<dyn Handler>,
    ) -> TestServer {
        let mut all = vec![("server.host", "127.0.0.1"), ("server.port", "0")];
        all.extend_from_slice(settings);
        let mut config = Config::from_settings(&all).unwrap_or_else(|e| panic!("{all:?}: {e}"));
        change(&mut config);
        let server = within("the server to start", bindu::start(config, h))
            .await
            .unwrap();
        let addr = server.local_addr();
        assert!(addr.ip().is_loopback(), "tests only talk to 127.0.0.1");
        TestServer {
            server: Some(server),
            addr,
            client: client(),
            next_id: AtomicU64::new(1),
        }
    }

    /// `http://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn endpoint(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn server(&self) -> &bindu::Server {
        self.server.as_ref().unwrap()
    }

    /// Takes the server out (for shutdown tests).
    pub fn take_server(&mut self) -> bindu::Server {
        self.server.take().unwrap()
    }

    /// POSTs a JSON-RPC request (numeric id) and returns the response body. Asserts HTTP 200
    /// and that the id is echoed.
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        self.rpc_with(&[], method, params).await
    }

    /// [`TestServer::rpc`] in A2A 1.0 (`A2A-Version: 1.0`).
    pub async fn rpc10(&self, method: &str, params: Value) -> Value {
        self.rpc_with(&[("a2a-version", "1.0")], method, params)
            .await
    }

    /// [`TestServer::rpc`] with extra request headers.
    pub async fn rpc_with(&self, headers: &[(&str, &str)], method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (status, resp) = self.raw_post_with(headers, &body.to_string()).await;
        assert_eq!(status, 200, "{method}: HTTP status; body {resp}");
        assert_eq!(resp["jsonrpc"], "2.0", "{method}: {resp}");
        assert_eq!(resp["id"], json!(id), "{method}: id echo; {resp}");
        resp
    }

    /// Like [`TestServer::rpc`] and asserts success; returns `result`.
    pub async fn rpc_ok(&self, method: &str, params: Value) -> Value {
        let resp = self.rpc(method, params).await;
        assert!(
            resp.get("error").is_none() && resp.get("result").is_some(),
            "{method}: expected a result, got {resp}"
        );
        resp["result"].clone()
    }

    /// Like [`TestServer::rpc`] and asserts an error; returns its code.
    pub async fn rpc_err(&self, method: &str, params: Value) -> i64 {
        let resp = self.rpc(method, params).await;
        assert!(
            resp.get("result").is_none(),
            "{method}: expected an error, got {resp}"
        );
        error_code(&resp)
    }

    /// POSTs `body` as is to `/`; returns the HTTP status and the parsed JSON body.
    pub async fn raw_post(&self, body: &str) -> (u16, Value) {
        self.raw_post_with(&[], body).await
    }

    /// [`TestServer::raw_post`] with extra request headers.
    pub async fn raw_post_with(&self, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
        let mut request = self
            .client
            .post(self.url())
            .header("content-type", "application/json");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let resp = within("POST /", request.body(body.to_string()).send())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = within("reading a response body", resp.text())
            .await
            .unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {text:?}"));
        (status, value)
    }

    /// GET `path`; returns status, content type and body.
    pub async fn get(&self, path: &str) -> (u16, String, String) {
        let resp = within(
            &format!("GET {path}"),
            self.client.get(self.endpoint(path)).send(),
        )
        .await
        .unwrap();
        let status = resp.status().as_u16();
        let ct = content_type(&resp);
        let text = within("reading a response body", resp.text())
            .await
            .unwrap();
        (status, ct, text)
    }

    /// GET `path`, answered with a JSON body; returns the status and the body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, ct, body) = self.get(path).await;
        assert!(ct.starts_with("application/json"), "GET {path}: {ct}");
        let value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body:?}"));
        (status, value)
    }

    /// Opens an SSE response for `method` (`message/stream` or `tasks/resubscribe`) with the
    /// given request id. Asserts HTTP 200 and an event-stream content type.
    pub async fn open_stream(&self, id: Value, method: &str, params: Value) -> SseReader {
        self.open_stream_with(&[], id, method, params).await
    }

    /// [`TestServer::open_stream`] in A2A 1.0 (`A2A-Version: 1.0`).
    pub async fn open_stream10(&self, id: Value, method: &str, params: Value) -> SseReader {
        self.open_stream_with(&[("a2a-version", "1.0")], id, method, params)
            .await
    }

    /// [`TestServer::open_stream`] with extra request headers.
    pub async fn open_stream_with(
        &self,
        headers: &[(&str, &str)],
        id: Value,
        method: &str,
        params: Value,
    ) -> SseReader {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut request = self
            .client
            .post(self.url())
            .header("content-type", "application/json")
            .header("accept", "text/event-stream");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let resp = within(
            &format!("opening {method}"),
            request.body(body.to_string()).send(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{method}: HTTP status");
        let content_type = content_type(&resp);
        assert!(
            content_type.starts_with("text/event-stream"),
            "{method}: content type {content_type:?}"
        );
        SseReader {
            resp,
            frames: SseFrames::new(SseDecoder::new(SSE_MAX_BYTES).lenient()),
            content_type,
        }
    }

    /// `message/stream` for `message`, read to its end.
    pub async fn stream_message(&self, id: Value, message: Value) -> Vec<Value> {
        self.open_stream(id, "message/stream", json!({ "message": message }))
            .await
            .read_all()
            .await
    }

    /// `message/send` of `message`; the whole JSON-RPC response, result or error.
    pub async fn rpc_send(&self, message: Value) -> Value {
        self.rpc("message/send", json!({ "message": message }))
            .await
    }

    /// Blocking `message/send`; returns the task.
    pub async fn send(&self, message: Value) -> Value {
        self.rpc_ok("message/send", json!({ "message": message }))
            .await
    }

    /// Non-blocking `message/send`; returns the task as accepted.
    pub async fn send_nonblocking(&self, message: Value) -> Value {
        self.rpc_ok(
            "message/send",
            json!({"message": message, "configuration": {"blocking": false}}),
        )
        .await
    }

    /// A follow-up `text` to task `task_id` that must be refused; returns the error code.
    pub async fn follow_up_err(&self, task_id: &str, text: &str) -> i64 {
        let message = user_message_with(text, json!({ "taskId": task_id }));
        self.rpc_err("message/send", json!({ "message": message }))
            .await
    }

    pub async fn get_task(&self, task_id: &str) -> Value {
        self.rpc_ok("tasks/get", json!({ "id": task_id })).await
    }

    /// Polls `tasks/get` (bounded) until the task is in `state`; returns it.
    pub async fn wait_for_state(&self, task_id: &str, state: &str) -> Value {
        within(&format!("task {task_id} to become {state}"), async {
            let mut last = Value::Null;
            for _ in 0..1000 {
                last = self.get_task(task_id).await;
                if last["status"]["state"] == state {
                    return last;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("task never became {state}; last seen {last}");
        })
        .await
    }
}

/// A response's content type (`""` when it has none).
pub fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The `result.kind` of each event of a stream.
pub fn result_kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["result"]["kind"].as_str().unwrap())
        .collect()
}

/// The artifact chunks of stream events: each one's text, `append` and `lastChunk`.
pub fn chunks(events: &[Value]) -> Vec<(String, Value, Value)> {
    events
        .iter()
        .map(|e| {
            let r = &e["result"];
            (
                all_text(&r["artifact"]),
                r["append"].clone(),
                r["lastChunk"].clone(),
            )
        })
        .collect()
}

/// The text of all the text parts of a JSON message or artifact, joined.
pub fn all_text(v: &Value) -> String {
    v["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap_or_default())
        .collect()
}

/// A reqwest client for 127.0.0.1: no proxy, bounded by [`TIMEOUT`].
pub fn client() -> reqwest::Client {
    client_within(TIMEOUT)
}

/// A reqwest client for 127.0.0.1 bounded by 30 s: for servers that are separate processes
/// or slow to answer; a server that never answers still fails the test.
pub fn patient_client() -> reqwest::Client {
    client_within(Duration::from_secs(30))
}

fn client_within(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

/// Reads an SSE body until it ends (failing after `limit`), returning each `data:` JSON.
pub async fn sse_json(resp: reqwest::Response, limit: Duration) -> Vec<Value> {
    let body = tokio::time::timeout(limit, resp.text())
        .await
        .unwrap()
        .unwrap();
    bindu::engine::sse::events(&body, usize::MAX)
        .unwrap()
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// Starts `h` with authentication against the Hydra at `hydra` (a 2 s timeout), its keys in
/// `dir`, and the `extra` settings.
pub async fn start_authenticated(
    hydra: SocketAddr,
    dir: &std::path::Path,
    extra: &[(&str, &str)],
    h: Arc<dyn Handler>,
) -> TestServer {
    let url = format!("http://{hydra}");
    let mut settings = vec![
        ("auth.enabled", "true"),
        ("hydra.admin_url", url.as_str()),
        ("hydra.timeout_secs", "2"),
        ("identity.dir", dir.to_str().unwrap()),
    ];
    settings.extend_from_slice(extra);
    TestServer::start(&settings, h).await
}

/// Starts the echo agent with the configuration `settings` make (config key, value).
pub async fn start_echo(settings: &[(&str, &str)]) -> bindu::Server {
    let config = Config::from_settings(settings).unwrap();
    bindu::start(config, Arc::new(bindu::EchoHandler::default()))
        .await
        .unwrap()
}

/// The error that stops the echo agent's start with `settings`, within [`TIMEOUT`];
/// `why` says why it must not start.
pub async fn echo_refused(settings: &[(&str, &str)], why: &str) -> bindu::Error {
    let config = Config::from_settings(settings).unwrap();
    within(
        why,
        bindu::start(config, Arc::new(bindu::EchoHandler::default())),
    )
    .await
    .err()
    .expect(why)
}

/// A user message as a plain A2A client writes it: a random `messageId`, one text part, no
/// `kind`.
pub fn plain_message(text: &str) -> Value {
    json!({"role": "user", "messageId": uuid::Uuid::new_v4().to_string(),
           "parts": [{"kind": "text", "text": text}]})
}

/// `message/send` params: the [`plain_message`] `text` with `configuration`.
pub fn send_params(text: &str, configuration: Value) -> Value {
    json!({"message": plain_message(text), "configuration": configuration})
}

/// GETs `url` with `c` and returns the body as text.
pub async fn get_text(c: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

/// The value of the label-less sample `name` in the Prometheus exposition `text` (0 when it
/// is not there).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Asserts that `resp` is a `status` whose JSON body is the error `code`; the body.
pub async fn assert_error(resp: reqwest::Response, status: u16, code: i64) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], code);
    body
}

/// GETs `url` with `c` and returns the parsed JSON body.
pub async fn get_json(c: &reqwest::Client, url: impl reqwest::IntoUrl) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// POSTs the JSON-RPC request `{"id": id, "method": method, "params": params}` to `url` and
/// returns the parsed response.
pub async fn post_rpc(
    c: &reqwest::Client,
    url: &str,
    id: Value,
    method: &str,
    params: Value,
) -> Value {
    c.post(url)
        .json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `tasks/get` of `task_id` at `url` (bounded by `within`) until the task is in
/// `state`; the task.
pub async fn rpc_wait_for_state(
    c: &reqwest::Client,
    url: &str,
    task_id: &str,
    state: &str,
    within: Duration,
) -> Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let t = post_rpc(c, url, json!("g"), "tasks/get", json!({ "id": task_id })).await;
        if t["result"]["status"]["state"] == state {
            return t["result"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task {task_id} never became {state}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `data:` events from an SSE response.
pub struct SseReader {
    resp: reqwest::Response,
    frames: SseFrames,
    pub content_type: String,
}

/// Largest SSE line or event the tests accept.
pub const SSE_MAX_BYTES: usize = 16 * 1024 * 1024;

impl SseReader {
    /// The next event's parsed `data:` JSON; `None` once the server closed the stream.
    pub async fn next_event(&mut self) -> Option<Value> {
        within("the next SSE event", self.next_inner()).await
    }

    async fn next_inner(&mut self) -> Option<Value> {
        for _ in 0..100_000 {
            if let Some(json) = self.frames.next_event().unwrap() {
                return Some(
                    serde_json::from_str(&json)
                        .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {json:?}")),
                );
            }
            match self.resp.chunk().await.unwrap() {
                Some(bytes) => self.frames.push(&bytes),
                None => {
                    // Lenient framing returns what an unfinished event held.
                    let cut = self.frames.finish().unwrap();
                    assert!(cut.is_none(), "the stream ended inside an event: {cut:?}");
                    return None;
                }
            }
        }
        panic!("too many SSE chunks without an event");
    }

    /// Every remaining event until the server closes the stream.
    pub async fn read_all(mut self) -> Vec<Value> {
        within("the SSE stream to close", async {
            let mut events = Vec::new();
            while let Some(e) = self.next_event().await {
                events.push(e);
                assert!(events.len() < 1000, "runaway stream");
            }
            events
        })
        .await
    }
}

/// Reads a whole SSE response (a `message/stream` or `tasks/resubscribe` reply).
pub async fn read_sse(resp: reqwest::Response) -> Vec<Value> {
    SseReader {
        resp,
        frames: SseFrames::new(SseDecoder::new(SSE_MAX_BYTES).lenient()),
        content_type: String::new(),
    }
    .read_all()
    .await
}

/// Serves `app` on a free port of 127.0.0.1 until the returned token is cancelled (a fake
/// of an external service).
pub async fn serve_fake(app: axum::Router) -> (SocketAddr, tokio_util::sync::CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
            .ok();
    });
    (addr, stop)
}

/// Serves `route` at `/hook` on a free port of 127.0.0.1 (a webhook receiver) and returns
/// its URL.
pub async fn serve_hook(route: axum::routing::MethodRouter) -> String {
    let app = axum::Router::new().route("/hook", route);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/hook")
}
