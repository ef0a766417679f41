//! Trace context across processes (W3C `traceparent`/`tracestate`).
//!
//! One trace follows a task from the ingress request to the webhook POST: the ingress
//! continues an incoming `traceparent`, the command and the events carry the context of the
//! span that published them ([`TraceContext`], in NATS message headers or in process), the
//! worker's run and the dispatcher's delivery continue it, and outgoing HTTP calls send it on.
//!
//! Nothing here costs anything while tracing is off: every function checks one flag
//! ([`enabled`]), set by [`enable`] once the process installed an OpenTelemetry layer.
//!
//! - [`current`]: the context of the current span, to publish with a command or event.
//! - [`span`]: a span that exists only while tracing is on.
//! - [`follow`], [`follow_headers`]: a span continues a received context.
//! - [`headers`]: `traceparent` (and `tracestate`) for an outgoing request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use bindu_schemas::bus::TraceContext;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The header (and NATS header) names of a trace context.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Turns propagation on: the process's subscriber exports spans to OpenTelemetry.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are exported (and contexts propagated) in this process.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `make()`'s span while tracing is on, else a disabled span (nothing recorded, nothing
/// allocated).
#[inline]
pub fn span(make: impl FnOnce() -> Span) -> Span {
    if enabled() {
        make()
    } else {
        Span::none()
    }
}

/// The context of the current span, if tracing is on and it has a valid one.
pub fn current() -> Option<TraceContext> {
    if !enabled() {
        return None;
    }
    let cx = Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::with_capacity(2);
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    Some(TraceContext {
        traceparent: carrier.remove(TRACEPARENT)?,
        // A caller's `tracestate` goes on only while it is short (W3C asks for at least 512
        // characters): it rides in bus messages with a size limit.
        tracestate: carrier
            .remove(TRACESTATE)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE),
    })
}

/// The longest `tracestate` propagated.
pub const MAX_TRACESTATE: usize = 512;

/// Makes `span` a child of the span `context` names (a command's or event's). A context that
/// does not parse leaves `span` where it is.
pub fn follow(span: &Span, context: Option<&TraceContext>) {
    let Some(context) = context.filter(|_| enabled()) else {
        return;
    };
    follow_with(span, |name| match name {
        TRACEPARENT => Some(context.traceparent.as_str()),
        TRACESTATE => context.tracestate.as_deref(),
        _ => None,
    });
}

/// Makes `span` continue the trace of an incoming request's `traceparent` header, if it has
/// a valid one.
pub fn follow_headers(span: &Span, headers: &http::HeaderMap) {
    if !enabled() || !headers.contains_key(TRACEPARENT) {
        return;
    }
    follow_with(span, |name| headers.get(name).and_then(|v| v.to_str().ok()));
}

/// A received context from `get` (header lookup), when valid.
pub fn context_from(get: impl Fn(&str) -> Option<String>) -> Option<TraceContext> {
    let traceparent = get(TRACEPARENT)?;
    Some(TraceContext {
        traceparent,
        tracestate: get(TRACESTATE).filter(|s| !s.is_empty()),
    })
}

fn follow_with<'a>(span: &Span, get: impl Fn(&str) -> Option<&'a str>) {
    let mut carrier: HashMap<String, String> = HashMap::with_capacity(2);
    for name in [TRACEPARENT, TRACESTATE] {
        if let Some(v) = get(name) {
            carrier.insert(name.to_string(), v.to_string());
        }
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        // Fails only for a span the OpenTelemetry layer does not record.
        let _ = span.set_parent(cx);
    }
}

/// The headers that carry the current span's context on an outgoing request (none while
/// tracing is off).
pub fn headers() -> Vec<(&'static str, String)> {
    let Some(context) = current() else {
        return Vec::new();
    };
    let mut out = vec![(TRACEPARENT, context.traceparent)];
    if let Some(state) = context.tracestate {
        out.push((TRACESTATE, state));
    }
    out
}
