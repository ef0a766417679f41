//! A JSON-RPC client for A2A agents that can authenticate (Bearer token) and sign requests
//! with a DID (Bindu's scheme: `X-DID`, `X-DID-Timestamp`, `X-DID-Signature`). The `bindu`
//! CLI and the load generator share it (re-exported as `bindu::client`); it needs none of
//! the server's backends.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bindu_engine::identity::Identity;
use bindu_engine::sse::{SseDecoder, SseFrames};
use bindu_schemas::signing::{signing_payload, Form};
use serde_json::{json, Value};
use tracing::Instrument;

/// Largest streamed event accepted (an artifact chunk may be large, never unbounded).
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

pub struct Client {
    url: String,
    http: reqwest::Client,
    token: Option<String>,
    signer: Option<(Arc<Identity>, String)>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Client {
    /// A client for the agent whose JSON-RPC endpoint is `url`.
    pub fn new(url: impl Into<String>) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            url: url.into(),
            http,
            token: None,
            signer: None,
            next_id: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// HTTPS settings: `ca_pem` replaces the built-in web roots (a private CA), and
    /// `identity_pem` (certificate chain and PKCS#8 private key, PEM) is presented as the
    /// client certificate for mutual TLS.
    pub fn with_tls(
        mut self,
        ca_pem: Option<&[u8]>,
        identity_pem: Option<&[u8]>,
    ) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(300));
        if let Some(ca) = ca_pem {
            builder = builder.tls_built_in_root_certs(false);
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .context("reading the CA bundle (PEM certificates expected)")?;
            if certs.is_empty() {
                anyhow::bail!("the CA bundle holds no PEM certificate");
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(identity) = identity_pem {
            // The error would quote nothing secret, but keep it generic anyway.
            let identity = reqwest::Identity::from_pem(identity).map_err(|_| {
                anyhow::anyhow!(
                    "the client certificate PEM must hold a certificate and its PKCS#8 private key"
                )
            })?;
            builder = builder.identity(identity);
        }
        self.http = builder.build().context("building the HTTPS client")?;
        Ok(self)
    }

    /// Sends `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Signs every request as `did` with `identity`'s key.
    pub fn with_signer(mut self, identity: Arc<Identity>, did: impl Into<String>) -> Self {
        self.signer = Some((identity, did.into()));
        self
    }

    /// The headers that sign an A2A 1.0 HTTP+JSON request now: `method` to `target` (its
    /// path and query exactly as sent, percent-encoding and all) with `body`. A request
    /// with a body signs the body; one without signs `"<METHOD> <target>"`
    /// ([`bindu_schemas::signing::request_line`]), so its signature is good for that request
    /// only.
    pub fn http_json_signature_headers(
        &self,
        method: &str,
        target: &str,
        body: &str,
    ) -> Vec<(&'static str, String)> {
        if body.is_empty() && self.signer.is_some() {
            self.signature_headers(&bindu_schemas::signing::request_line(method, target))
        } else {
            self.signature_headers(body)
        }
    }

    /// The headers that sign `body` now (JSON-RPC: the body as sent).
    pub fn signature_headers(&self, body: &str) -> Vec<(&'static str, String)> {
        let Some((identity, did)) = &self.signer else {
            return Vec::new();
        };
        let ts = bindu_engine::time::unix_now();
        let sig = identity.sign_base58(signing_payload(body, did, ts, Form::Python).as_bytes());
        vec![
            ("x-did", did.clone()),
            ("x-did-timestamp", ts.to_string()),
            ("x-did-signature", sig),
        ]
    }

    async fn send(&self, method: &str, params: Value) -> anyhow::Result<reqwest::Response> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in self.signature_headers(&body) {
            req = req.header(k, v);
        }
        // While tracing is on: a client span, and its context in `traceparent`, so the
        // agent's trace continues the caller's.
        let span = bindu_engine::trace::span(|| {
            tracing::info_span!(
                "a2a",
                otel.name = method,
                otel.kind = "client",
                rpc.system = "jsonrpc",
                rpc.method = method,
            )
        });
        for (k, v) in span.in_scope(bindu_engine::trace::headers) {
            req = req.header(k, v);
        }
        req.body(body)
            .send()
            .instrument(span)
            .await
            .with_context(|| format!("POST {}", self.url))
    }

    /// One call; returns the whole JSON-RPC response (result or error) and the HTTP status.
    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<(u16, Value)> {
        let resp = self.send(method, params).await?;
        let status = resp.status().as_u16();
        let body = resp.text().await.context("reading the response")?;
        let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        Ok((status, value))
    }

    /// A streaming call (`message/stream`, `tasks/resubscribe`): each event's JSON, in order,
    /// passed to `on_event` as it arrives.
    pub async fn stream(
        &self,
        method: &str,
        params: Value,
        mut on_event: impl FnMut(Value),
    ) -> anyhow::Result<u16> {
        use futures::StreamExt;
        let resp = self.send(method, params).await?;
        let status = resp.status().as_u16();
        let is_sse = bindu_engine::sse::is_event_stream(resp.headers());
        if !is_sse {
            // A plain JSON error instead of a stream.
            let body = resp.text().await.context("reading the response")?;
            if body.trim_start().starts_with('{') {
                on_event(serde_json::from_str(&body).unwrap_or(Value::Null));
            }
            return Ok(status);
        }
        let mut frames = SseFrames::new(SseDecoder::new(MAX_EVENT_BYTES));
        let mut body = resp.bytes_stream();
        while !frames.ended() {
            match body.next().await {
                Some(chunk) => frames.push(&chunk.context("reading the stream")?),
                None => frames.end(),
            }
            while let Some(data) = frames.next_event().context("reading the stream")? {
                on_event(serde_json::from_str(&data).unwrap_or(Value::String(data)));
            }
        }
        Ok(status)
    }
}
