//! A lean HTTP/1.1 client: each simulated client owns one keep-alive connection (hyper's
//! connection API, no pool lookups, no per-request allocation beyond the body), like `wrk`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::sse::{SseDecoder, SseFrames};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::rpc::{Bodies, Wire};
use crate::target::Target;

/// What a task id must not carry unencoded in a path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a request got no HTTP answer. Counted by [`Transport::kind`].
#[derive(Debug)]
pub enum Transport {
    Connect(std::io::Error),
    Http(hyper::Error),
    Timeout,
    /// The response or stream ended before the expected answer.
    Truncated,
}

impl Transport {
    /// A short, stable name for error counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Connect(_) => "connect",
            Transport::Http(_) => "http",
            Transport::Timeout => "timeout",
            Transport::Truncated => "truncated",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Connect(e) => write!(f, "connect: {e}"),
            Transport::Http(e) => write!(f, "http: {e}"),
            Transport::Timeout => f.write_str("timed out"),
            Transport::Truncated => f.write_str("the answer ended early"),
        }
    }
}

/// How requests are built: target, credentials and optional DID signer (shared by all
/// connections).
pub struct RequestFactory {
    pub target: Target,
    host: HeaderValue,
    bearer: Option<HeaderValue>,
    signer: Option<bindu_client::Client>,
    wire: Wire,
}

impl RequestFactory {
    pub fn new(
        target: Target,
        token: Option<&str>,
        signer: Option<bindu_client::Client>,
    ) -> anyhow::Result<RequestFactory> {
        let host = HeaderValue::from_str(&target.authority)
            .map_err(|_| anyhow::anyhow!("the URL's host cannot be a Host header"))?;
        let bearer = token
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
            .transpose()
            .map_err(|_| anyhow::anyhow!("the token cannot be sent in a header"))?;
        Ok(RequestFactory {
            target,
            host,
            bearer,
            signer,
            wire: Wire::V03,
        })
    }

    /// Requests in `wire`'s form: the `A2A-Version` header, and for HTTP+JSON the routes
    /// under the URL's path instead of `POST` to it.
    pub fn with_wire(mut self, wire: Wire) -> RequestFactory {
        self.wire = wire;
        self
    }

    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// Reads `GetTask` of `task_id` (`n`: the JSON-RPC id): a `POST` of the JSON-RPC call,
    /// or over HTTP+JSON `GET …/tasks/{id}?historyLength=0`.
    pub fn get_task(&self, bodies: &Bodies, n: u64, task_id: &str) -> Request<Full<Bytes>> {
        if self.wire != Wire::V10Rest {
            return self.post(bodies.get(n, task_id), false);
        }
        // One path segment: everything but unreserved characters percent-encoded.
        let id = percent_encoding::utf8_percent_encode(task_id, SEGMENT);
        let path = format!("{}/tasks/{id}?historyLength=0", self.rest_base());
        self.request(hyper::Method::GET, &path, String::new(), false)
    }

    /// The HTTP+JSON base path: the URL's path without its trailing `/`.
    fn rest_base(&self) -> &str {
        self.target.path.trim_end_matches('/')
    }

    pub fn signs(&self) -> bool {
        self.signer.is_some()
    }

    /// A POST of `body` to the target, signed when a signer is configured. Over HTTP+JSON
    /// (`body` a `SendMessageRequest`) it goes to `…/message:stream` when `sse`, else to
    /// `…/message:send`.
    pub fn post(&self, body: String, sse: bool) -> Request<Full<Bytes>> {
        if self.wire == Wire::V10Rest {
            let route = if sse {
                "/message:stream"
            } else {
                "/message:send"
            };
            let path = format!("{}{route}", self.rest_base());
            return self.request(hyper::Method::POST, &path, body, sse);
        }
        self.request(hyper::Method::POST, &self.target.path, body, sse)
    }

    /// `method` of `body` (a `POST` declared JSON) to `path`.
    fn request(
        &self,
        method: hyper::Method,
        path: &str,
        body: String,
        sse: bool,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(Bytes::new()));
        let post = method == hyper::Method::POST;
        let verb = method.clone();
        *req.method_mut() = method;
        *req.uri_mut() = path
            .parse()
            .unwrap_or_else(|_| hyper::Uri::from_static("/"));
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        if post {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(v) = self.wire.version_header() {
            h.insert(
                hyper::header::HeaderName::from_static("a2a-version"),
                HeaderValue::from_static(v),
            );
        }
        if sse {
            h.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        }
        if let Some(b) = &self.bearer {
            h.insert(AUTHORIZATION, b.clone());
        }
        if let Some(signer) = &self.signer {
            // HTTP+JSON: a bodiless `GET` signs its request line, not the empty body.
            let headers = if self.wire == Wire::V10Rest {
                signer.http_json_signature_headers(verb.as_str(), path, &body)
            } else {
                signer.signature_headers(&body)
            };
            for (name, value) in headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    h.insert(name, v);
                }
            }
        }
        *req.body_mut() = Full::new(Bytes::from(body));
        req
    }
}

/// One keep-alive connection, re-opened after a failure.
pub struct Session {
    addr: SocketAddr,
    timeout: Duration,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
    /// After an HTTP 429: no request before its `Retry-After` passed.
    not_before: Option<tokio::time::Instant>,
}

/// Longest `Retry-After` honoured (a larger one is waited this long).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl Session {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Session {
        Session {
            addr,
            timeout,
            sender: None,
            not_before: None,
        }
    }

    /// Notes an answer's `Retry-After` (whole seconds, or an HTTP date) when it is a 429.
    fn honour_retry_after(&mut self, resp: &Response<Incoming>) {
        if resp.status().as_u16() != 429 {
            return;
        }
        let wait = resp
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let v = v.trim();
                v.parse::<u64>().ok().map(Duration::from_secs).or_else(|| {
                    httpdate::parse_http_date(v)
                        .ok()
                        .and_then(|at| at.duration_since(std::time::SystemTime::now()).ok())
                })
            })
            .unwrap_or(Duration::from_secs(1))
            .min(MAX_RETRY_AFTER);
        self.not_before = Some(tokio::time::Instant::now() + wait);
    }

    async fn connect(&mut self) -> Result<&mut http1::SendRequest<Full<Bytes>>, Transport> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = None;
            let stream = tokio::time::timeout(self.timeout, TcpStream::connect(self.addr))
                .await
                .map_err(|_| Transport::Timeout)?
                .map_err(Transport::Connect)?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(Transport::Http)?;
            tokio::spawn(async move {
                // Errors surface on the sender side as failed requests.
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        // Just set when it was missing.
        self.sender.as_mut().ok_or(Transport::Truncated)
    }

    /// Sends `req` and waits for the response head. A failure closes the connection (the
    /// next request opens a new one).
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, Transport> {
        if let Some(at) = self.not_before.take() {
            tokio::time::sleep_until(at).await;
        }
        let timeout = self.timeout;
        let result = tokio::time::timeout(timeout, async {
            let sender = self.connect().await?;
            sender.ready().await.map_err(Transport::Http)?;
            sender.send_request(req).await.map_err(Transport::Http)
        })
        .await
        .unwrap_or(Err(Transport::Timeout));
        match &result {
            Ok(resp) => self.honour_retry_after(resp),
            Err(_) => self.sender = None,
        }
        result
    }

    /// Sends `req` and reads the whole body.
    pub async fn call(&mut self, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), Transport> {
        let resp = self.send(req).await?;
        let status = resp.status().as_u16();
        match tokio::time::timeout(self.timeout, resp.into_body().collect()).await {
            Ok(Ok(b)) => Ok((status, b.to_bytes())),
            Ok(Err(e)) => {
                self.sender = None;
                Err(Transport::Http(e))
            }
            Err(_) => {
                self.sender = None;
                Err(Transport::Timeout)
            }
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Drops the connection (after a stream that was abandoned half-way).
    pub fn reset(&mut self) {
        self.sender = None;
    }
}

/// Largest event a stream may send (the server's biggest artifact chunk is far smaller).
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Reads `data:` payloads from an SSE response body.
pub struct SseReader {
    body: Incoming,
    frames: SseFrames,
    timeout: Duration,
    /// An event's data read ahead and put back ([`SseReader::unread`]).
    unread: Option<Vec<u8>>,
}

impl SseReader {
    pub fn new(body: Incoming, timeout: Duration) -> SseReader {
        SseReader {
            body,
            frames: SseFrames::new(SseDecoder::new(MAX_EVENT_BYTES)),
            timeout,
            unread: None,
        }
    }

    /// Puts `data` back: the next [`SseReader::next_data`] returns it again.
    pub fn unread(&mut self, data: Vec<u8>) {
        self.unread = Some(data);
    }

    /// The next event's data (its `data:` lines joined); `Ok(None)` at the end of the stream.
    /// Comments (keep-alives) and events without data are skipped; an event longer than
    /// 16 MiB, or not UTF-8, ends the stream as truncated.
    pub async fn next_data(&mut self) -> Result<Option<Vec<u8>>, Transport> {
        if let Some(data) = self.unread.take() {
            return Ok(Some(data));
        }
        loop {
            match self.frames.next_event() {
                Ok(Some(data)) => return Ok(Some(data.into_bytes())),
                Ok(None) => {}
                Err(_) => return Err(Transport::Truncated),
            }
            match tokio::time::timeout(self.timeout, self.body.frame()).await {
                Err(_) => return Err(Transport::Timeout),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(Transport::Http(e)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.frames.push(&data);
                    }
                }
            }
        }
    }

    /// Waits for the next body frame without a timeout (holding a soak stream open); `false`
    /// when the stream ended.
    pub async fn idle(&mut self) -> bool {
        match self.body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    // Only keep-alives are expected; keep memory flat.
                    if self.frames.buffered() < 64 * 1024 {
                        self.frames.push(&data);
                    }
                }
                true
            }
            _ => false,
        }
    }
}

/// Shared by every session of one run.
pub type Factory = Arc<RequestFactory>;
