//! A stand-in OpenTelemetry collector on loopback: `POST /v1/traces` with an OTLP
//! HTTP/protobuf `ExportTraceServiceRequest`, decoded with `opentelemetry-proto` and kept.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// One received span.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub name: String,
    /// Lowercase hex, as in a `traceparent`.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
}

impl Span {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The collector: its URL and what it received.
#[derive(Clone)]
pub struct Collector {
    /// `http://127.0.0.1:<port>` (no path: Bindu adds `/v1/traces`).
    pub url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    /// Headers of the export requests.
    pub headers: Arc<Mutex<Vec<HeaderMap>>>,
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn pairs(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

impl Collector {
    /// Starts it on a free port of 127.0.0.1.
    pub async fn start() -> Collector {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let headers: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
        let (s, h) = (spans.clone(), headers.clone());
        let route = axum::routing::post(move |req_headers: HeaderMap, body: Bytes| {
            let (s, h) = (s.clone(), h.clone());
            async move {
                let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                    return (StatusCode::BAD_REQUEST, Vec::new());
                };
                h.lock().unwrap().push(req_headers);
                let mut out = s.lock().unwrap();
                for rs in req.resource_spans {
                    let resource = rs
                        .resource
                        .map(|r| pairs(&r.attributes))
                        .unwrap_or_default();
                    let service = resource
                        .iter()
                        .find(|(k, _)| k == "service.name")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for span in ss.spans {
                            out.push(Span {
                                service: service.clone(),
                                name: span.name,
                                trace_id: hex::encode(span.trace_id),
                                span_id: hex::encode(span.span_id),
                                parent_span_id: hex::encode(span.parent_span_id),
                                attributes: pairs(&span.attributes),
                            });
                        }
                    }
                }
                (
                    StatusCode::OK,
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        });
        let app = axum::Router::new().route("/v1/traces", route);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Collector {
            url: format!("http://{addr}"),
            spans,
            headers,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of `trace_id`, once `done` holds for them; panics after `within`.
    pub async fn wait_for(
        &self,
        trace_id: &str,
        within: Duration,
        done: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        let deadline = Instant::now() + within;
        loop {
            let spans: Vec<Span> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            if done(&spans) {
                return spans;
            }
            if Instant::now() >= deadline {
                let others: Vec<(String, String, String)> = self
                    .spans()
                    .into_iter()
                    .filter(|s| s.trace_id != trace_id)
                    .map(|s| (s.service, s.name, s.trace_id))
                    .collect();
                panic!("trace {trace_id} incomplete after {within:?}: {spans:#?}\nother spans: {others:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
