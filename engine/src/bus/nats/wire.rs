//! The events' wire format: one JSON object, or a JSON array for consecutive events of one
//! task published together; events over the server's payload limit go truncated. The trace
//! context of the publisher (its first event's, else the current span's) rides in the
//! `traceparent`/`tracestate` headers of commands and events.

use std::sync::Arc;

use async_nats::HeaderMap;
use bindu_schemas::bus::{subjects, TaskEvent, TraceContext};

use super::NatsBus;
use crate::bus::BusError;

impl NatsBus {
    /// The events of one message: a JSON object (one event) or an array (consecutive events
    /// of one task, published together), each with the message's trace context. Unreadable
    /// messages yield none (logged).
    pub(super) fn decode_events(
        payload: &[u8],
        headers: Option<&HeaderMap>,
    ) -> Vec<Arc<TaskEvent>> {
        let trace = headers.and_then(read_trace);
        let batch = payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
        let decoded = if batch {
            serde_json::from_slice::<Vec<TaskEvent>>(payload)
        } else {
            serde_json::from_slice::<TaskEvent>(payload).map(|e| vec![e])
        };
        let decoded = decoded.map(|events| {
            events
                .into_iter()
                .map(|mut e| {
                    e.trace = trace.clone();
                    Arc::new(e)
                })
                .collect()
        });
        decoded.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring a task event message that is not valid JSON");
            Vec::new()
        })
    }

    /// One message per task and run of consecutive events ([`payloads`](crate::bus::payloads)),
    /// each with the trace headers of its first event (none while tracing is off).
    pub(super) fn event_messages(
        &self,
        events: &[TaskEvent],
    ) -> Result<Vec<(String, bytes::Bytes, Option<HeaderMap>)>, BusError> {
        let current = crate::trace::current();
        Ok(
            crate::bus::payloads::event_payloads(events, self.payload_limit())?
                .into_iter()
                .map(|(first, payload)| {
                    (
                        subjects::events(&self.options.agent, first.task_id()),
                        payload,
                        first.trace.as_ref().or(current.as_ref()).map(trace_headers),
                    )
                })
                .collect(),
        )
    }

    /// The largest payload an event message may have: the server's limit, less room for
    /// the subject and headers it counts against it.
    pub(super) fn payload_limit(&self) -> usize {
        self.client.server_info().max_payload.saturating_sub(1024)
    }
}

/// The headers carrying `trace`.
pub(super) fn trace_headers(trace: &TraceContext) -> HeaderMap {
    let mut headers = HeaderMap::new();
    add_trace(&mut headers, trace);
    headers
}

/// Adds `trace`'s headers to `headers`.
pub(super) fn add_trace(headers: &mut HeaderMap, trace: &TraceContext) {
    headers.insert(crate::trace::TRACEPARENT, trace.traceparent.as_str());
    if let Some(state) = &trace.tracestate {
        headers.insert(crate::trace::TRACESTATE, state.as_str());
    }
}

/// The trace context a message's headers carry, if tracing is on here.
pub(super) fn read_trace(headers: &HeaderMap) -> Option<TraceContext> {
    if !crate::trace::enabled() {
        return None;
    }
    crate::trace::context_from(|name| headers.get(name).map(|v| v.as_str().to_string()))
}
