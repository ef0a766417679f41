//! Event payloads for the buses that carry events as bytes (NATS, Redis): a task's
//! consecutive events of one publish travel as one JSON array (one stored message, one
//! delivery to each reader) while that fits the bus's payload limit, one by one otherwise,
//! and an event over the limit on its own is published [truncated](TaskEvent::truncate)
//! (readers take its content from the task store).

use bindu_schemas::bus::TaskEvent;
use bytes::Bytes;

use super::BusError;

/// One (first event, payload) per message: per task and run of consecutive events.
pub(crate) fn event_payloads(
    events: &[TaskEvent],
    limit: usize,
) -> Result<Vec<(&TaskEvent, Bytes)>, BusError> {
    let mut out = Vec::with_capacity(events.len());
    for run in events.chunk_by(|a, b| a.task_id() == b.task_id()) {
        if let [one] = run {
            out.push((one, event_payload(one, limit)?));
            continue;
        }
        let payload = serde_json::to_vec(run).map_err(|e| BusError::Other(Box::new(e)))?;
        if payload.len() <= limit {
            out.push((&run[0], payload.into()));
        } else {
            for e in run {
                out.push((e, event_payload(e, limit)?));
            }
        }
    }
    Ok(out)
}

/// The payload of one event, truncated when the whole would exceed `limit`.
pub(crate) fn event_payload(e: &TaskEvent, limit: usize) -> Result<Bytes, BusError> {
    let payload = serde_json::to_vec(e).map_err(|e| BusError::Other(Box::new(e)))?;
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
