//! What the Redis bus stores: stream entries with a few fields, and the replies of the
//! stream commands read into [`Entry`]s.
//!
//! Fields: `d` the payload (a command, an event as a JSON object, or consecutive events of
//! one task as a JSON array), `t` the task id (events and notices), `k` = `n` on a
//! push-config notice, and the publisher's trace context in `traceparent`/`tracestate`.

use std::sync::Arc;

use bindu_schemas::bus::{TaskEvent, TraceContext};
use bytes::Bytes;
use fred::types::Value;

use crate::bus::BusError;

pub(super) const DATA: &str = "d";
pub(super) const TASK: &str = "t";
pub(super) const KIND: &str = "k";
/// `KIND` of a push-config notice.
pub(super) const NOTICE: &str = "n";

/// One stream entry: its id and fields (`None` fields: an id whose entry was deleted).
#[derive(Debug)]
pub(super) struct Entry {
    pub id: String,
    pub fields: Option<Vec<(String, Bytes)>>,
}

impl Entry {
    pub(super) fn get(&self, name: &str) -> Option<&Bytes> {
        self.fields
            .as_ref()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub(super) fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_string)
    }

    /// The trace context the entry carries, if tracing is on here.
    pub(super) fn trace(&self) -> Option<TraceContext> {
        if !crate::trace::enabled() {
            return None;
        }
        crate::trace::context_from(|name| self.text(name))
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_bytes()
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(str::to_string)
}

/// Entries of an `XRANGE`, `XCLAIM` or one stream's part of an `XREAD` reply.
pub(super) fn entries(v: Value) -> Vec<Entry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut parts) = item else {
                return None;
            };
            if parts.is_empty() {
                return None;
            }
            let fields = if parts.len() > 1 { parts.pop() } else { None };
            let id = text(&parts[0])?;
            let fields = match fields {
                Some(Value::Array(kv)) => Some(
                    kv.chunks(2)
                        .filter_map(|p| match p {
                            [k, v] => Some((text(k)?, v.as_bytes().map(Bytes::copy_from_slice)?)),
                            _ => None,
                        })
                        .collect(),
                ),
                Some(Value::Map(map)) => Some(
                    map.inner()
                        .into_iter()
                        .filter_map(|(k, v)| {
                            Some((
                                k.as_str()?.to_string(),
                                v.as_bytes().map(Bytes::copy_from_slice)?,
                            ))
                        })
                        .collect(),
                ),
                _ => None,
            };
            Some(Entry { id, fields })
        })
        .collect()
}

/// The entries of an `XREAD`/`XREADGROUP` reply on one stream (none on a timeout).
pub(super) fn read_reply(v: Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => {
                    entries(pair.pop().unwrap_or(Value::Null))
                }
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(map) => map.inner().into_values().flat_map(entries).collect(),
        _ => Vec::new(),
    }
}

/// `XPENDING key group IDLE ms - + count` rows: id, consumer, idle ms, deliveries.
pub(super) fn pending_rows(v: Value) -> Vec<(String, String, u64, u64)> {
    let Value::Array(rows) = v else {
        return Vec::new();
    };
    rows.into_iter()
        .filter_map(|row| {
            let Value::Array(r) = row else { return None };
            match r.as_slice() {
                [id, consumer, idle, count] => {
                    Some((text(id)?, text(consumer)?, idle.as_u64()?, count.as_u64()?))
                }
                _ => None,
            }
        })
        .collect()
}

/// The events of an entry: a JSON object (one event) or an array (consecutive events of one
/// task, published together), each with the entry's trace context. Unreadable entries yield
/// none (logged).
pub(super) fn decode_events(entry: &Entry) -> Vec<Arc<TaskEvent>> {
    let Some(payload) = entry.get(DATA) else {
        return Vec::new();
    };
    let trace = entry.trace();
    let batch = payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let decoded = if batch {
        serde_json::from_slice::<Vec<TaskEvent>>(payload)
    } else {
        serde_json::from_slice::<TaskEvent>(payload).map(|e| vec![e])
    };
    match decoded {
        Ok(events) => events
            .into_iter()
            .map(|mut e| {
                e.trace = trace.clone();
                Arc::new(e)
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, id = %entry.id, "ignoring a task event entry that is not valid JSON");
            Vec::new()
        }
    }
}

/// The fields of an entry: `pairs` then the trace context, if any.
pub(super) fn fields(
    pairs: Vec<(&'static str, Bytes)>,
    trace: Option<&TraceContext>,
) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::Bytes(v)))
        .collect();
    if let Some(t) = trace {
        out.push((
            crate::trace::TRACEPARENT.to_string(),
            Value::from(t.traceparent.as_str()),
        ));
        if let Some(state) = &t.tracestate {
            out.push((
                crate::trace::TRACESTATE.to_string(),
                Value::from(state.as_str()),
            ));
        }
    }
    out
}

/// Largest event payload the bus stores whole; a bigger event goes
/// [truncated](TaskEvent::truncate) (its content is in the task store). Redis keeps streams
/// in memory, so this stays at NATS's default limit.
pub(super) const PAYLOAD_LIMIT: usize = 1024 * 1024 - 1024;

/// One (task id, payload, trace) per task and run of consecutive events
/// ([`payloads`](crate::bus::payloads), within [`PAYLOAD_LIMIT`]).
pub(super) fn event_messages(
    events: &[TaskEvent],
) -> Result<Vec<(String, Bytes, Option<TraceContext>)>, BusError> {
    let current = crate::trace::current();
    Ok(crate::bus::payloads::event_payloads(events, PAYLOAD_LIMIT)?
        .into_iter()
        .map(|(first, payload)| {
            (
                first.task_id().to_string(),
                payload,
                first.trace.clone().or_else(|| current.clone()),
            )
        })
        .collect())
}
