//! The events' wire format: one JSON object, or a JSON array for consecutive events of one
//! task published together; events over the server's payload limit go truncated.

use std::sync::Arc;

use bindu_schemas::bus::{subjects, TaskEvent};

use super::NatsBus;
use crate::bus::BusError;

impl NatsBus {
    /// The events of one message: a JSON object (one event) or an array (consecutive events
    /// of one task, published together). Unreadable messages yield none (logged).
    pub(super) fn decode_events(payload: &[u8]) -> Vec<Arc<TaskEvent>> {
        let batch = payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
        let decoded = if batch {
            serde_json::from_slice::<Vec<TaskEvent>>(payload)
                .map(|events| events.into_iter().map(Arc::new).collect())
        } else {
            serde_json::from_slice::<TaskEvent>(payload).map(|e| vec![Arc::new(e)])
        };
        decoded.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring a task event message that is not valid JSON");
            Vec::new()
        })
    }

    /// One message per task and run of consecutive events: the run's events travel as one
    /// JSON array (one stored message, one delivery to each reader) while that fits the
    /// server's payload limit, one by one (each [truncated](TaskEvent::truncate) if need be)
    /// otherwise.
    pub(super) fn event_messages(
        &self,
        events: &[TaskEvent],
    ) -> Result<Vec<(String, bytes::Bytes)>, BusError> {
        let limit = self.payload_limit();
        let mut out = Vec::with_capacity(events.len());
        let mut rest = events;
        while let Some(first) = rest.first() {
            let task_id = first.task_id();
            let n = rest
                .iter()
                .position(|e| e.task_id() != task_id)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(n);
            rest = tail;
            let subject = subjects::events(&self.options.agent, task_id);
            if let [one] = run {
                out.push((subject, self.event_payload(one)?));
                continue;
            }
            let payload = serde_json::to_vec(run).map_err(|e| BusError::Other(Box::new(e)))?;
            if payload.len() <= limit {
                out.push((subject, payload.into()));
            } else {
                for e in run {
                    out.push((subject.clone(), self.event_payload(e)?));
                }
            }
        }
        Ok(out)
    }

    /// The largest payload an event message may have: the server's limit, less room for
    /// the subject and headers it counts against it.
    pub(super) fn payload_limit(&self) -> usize {
        self.client.server_info().max_payload.saturating_sub(1024)
    }

    /// The payload of an event, truncated when the whole would exceed the server's limit.
    pub(super) fn event_payload(&self, e: &TaskEvent) -> Result<bytes::Bytes, BusError> {
        let payload = serde_json::to_vec(e).map_err(|e| BusError::Other(Box::new(e)))?;
        let limit = self.payload_limit();
        if payload.len() <= limit {
            return Ok(payload.into());
        }
        tracing::info!(
            task_id = e.task_id(),
            seq = e.seq,
            bytes = payload.len(),
            limit,
            "task event over the bus's payload limit; publishing it truncated"
        );
        serde_json::to_vec(&e.truncate())
            .map(Into::into)
            .map_err(|e| BusError::Other(Box::new(e)))
    }
}
