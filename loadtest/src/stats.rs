//! What a run measures: live counters (for the progress line) and per-client recorders
//! (HDR histograms, error counts) merged at the end, so the hot path shares nothing but a
//! few atomic counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Counters every client bumps; read once a second by the progress line.
#[derive(Default)]
pub struct Live {
    /// First-level requests issued.
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub completed: AtomicU64,
    pub errors: AtomicU64,
    /// Accepted tasks whose completion is still being waited for (polls and streams).
    pub pending: AtomicI64,
    /// sse-soak: streams open now.
    pub open_streams: AtomicI64,
}

/// Microseconds, 1 µs to 1 h, 3 significant digits.
fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(h) => h,
        // The bounds above are constants that hdrhistogram accepts.
        Err(e) => unreachable!("histogram bounds: {e}"),
    }
}

/// One client's measurements.
pub struct Recorder {
    /// When the load window ended (`None` while it runs): events after it count as drain.
    window_end: Option<Instant>,
    /// Request due (open loop: scheduled; closed loop: sent) → HTTP answer (for streams: the
    /// first event).
    pub response: Histogram<u64>,
    /// Accepted (answer naming the task) → seen finished.
    pub accepted_to_completed: Histogram<u64>,
    /// Request due → seen finished: the end-to-end latency a user waits.
    pub due_to_completed: Histogram<u64>,
    pub accepted_in_window: u64,
    pub accepted_after: u64,
    pub completed_in_window: u64,
    pub completed_after: u64,
    /// Finished tasks by state (`completed`, `failed`, `input-required`, ...).
    pub states: BTreeMap<String, u64>,
    pub rpc_errors: BTreeMap<i64, u64>,
    pub http_errors: BTreeMap<u16, u64>,
    pub transport_errors: BTreeMap<String, u64>,
    /// Answers that were neither JSON-RPC nor an SSE stream of it.
    pub malformed: u64,
    /// Failed requests (each once, whichever maps above it is counted in).
    errors: u64,
    /// resubscribe: the task had finished before the stream opened (read with tasks/get).
    pub finished_before_resubscribe: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            window_end: None,
            response: histogram(),
            accepted_to_completed: histogram(),
            due_to_completed: histogram(),
            accepted_in_window: 0,
            accepted_after: 0,
            completed_in_window: 0,
            completed_after: 0,
            states: BTreeMap::new(),
            rpc_errors: BTreeMap::new(),
            http_errors: BTreeMap::new(),
            transport_errors: BTreeMap::new(),
            malformed: 0,
            errors: 0,
            finished_before_resubscribe: 0,
        }
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().clamp(1, u64::MAX as u128) as u64
}

impl Recorder {
    pub fn set_window_end(&mut self, end: Option<Instant>) {
        self.window_end = end;
    }

    fn in_window(&self, at: Instant) -> bool {
        self.window_end.is_none_or(|end| at <= end)
    }

    /// An answer naming an accepted task.
    pub fn accepted(&mut self, live: &Live, due: Instant, at: Instant) {
        self.response.saturating_record(micros(at - due));
        if self.in_window(at) {
            self.accepted_in_window += 1;
        } else {
            self.accepted_after += 1;
        }
        live.accepted.fetch_add(1, Relaxed);
    }

    /// A task seen finished (`state`). `accepted` is `None` when acceptance was not seen
    /// apart from completion (a blocking answer): then only request → completed is recorded.
    pub fn finished(
        &mut self,
        live: &Live,
        state: &str,
        due: Instant,
        accepted: Option<Instant>,
        at: Instant,
    ) {
        if let Some(accepted) = accepted {
            self.accepted_to_completed
                .saturating_record(micros(at - accepted));
        }
        self.due_to_completed.saturating_record(micros(at - due));
        if self.in_window(at) {
            self.completed_in_window += 1;
        } else {
            self.completed_after += 1;
        }
        *self.states.entry(state.to_string()).or_default() += 1;
        live.completed.fetch_add(1, Relaxed);
    }

    pub fn rpc_error(&mut self, live: &Live, code: i64) {
        *self.rpc_errors.entry(code).or_default() += 1;
        self.errors += 1;
        live.errors.fetch_add(1, Relaxed);
    }

    pub fn http_error(&mut self, live: &Live, status: u16) {
        *self.http_errors.entry(status).or_default() += 1;
        self.errors += 1;
        live.errors.fetch_add(1, Relaxed);
    }

    pub fn transport_error(&mut self, live: &Live, kind: &str) {
        *self.transport_errors.entry(kind.to_string()).or_default() += 1;
        self.errors += 1;
        live.errors.fetch_add(1, Relaxed);
    }

    pub fn malformed(&mut self, live: &Live) {
        self.malformed += 1;
        self.errors += 1;
        live.errors.fetch_add(1, Relaxed);
    }

    pub fn merge(&mut self, other: Recorder) {
        let _ = self.response.add(&other.response);
        let _ = self.accepted_to_completed.add(&other.accepted_to_completed);
        let _ = self.due_to_completed.add(&other.due_to_completed);
        self.accepted_in_window += other.accepted_in_window;
        self.accepted_after += other.accepted_after;
        self.completed_in_window += other.completed_in_window;
        self.completed_after += other.completed_after;
        for (k, v) in other.states {
            *self.states.entry(k).or_default() += v;
        }
        for (k, v) in other.rpc_errors {
            *self.rpc_errors.entry(k).or_default() += v;
        }
        for (k, v) in other.http_errors {
            *self.http_errors.entry(k).or_default() += v;
        }
        for (k, v) in other.transport_errors {
            *self.transport_errors.entry(k).or_default() += v;
        }
        self.malformed += other.malformed;
        self.errors += other.errors;
        self.finished_before_resubscribe += other.finished_before_resubscribe;
    }

    /// Failed requests; one with both a JSON-RPC code and an HTTP status counts once.
    pub fn error_count(&self) -> u64 {
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_split_at_the_window_end_and_merge() {
        let live = Live::default();
        let t0 = Instant::now();
        let mut a = Recorder::default();
        a.accepted(&live, t0, t0 + Duration::from_millis(2));
        a.finished(
            &live,
            "completed",
            t0,
            Some(t0 + Duration::from_millis(2)),
            t0 + Duration::from_millis(5),
        );
        let mut b = Recorder::default();
        b.set_window_end(Some(t0 + Duration::from_millis(1)));
        b.accepted(&live, t0, t0 + Duration::from_millis(2));
        b.rpc_error(&live, -32603);
        b.http_error(&live, 503);
        a.merge(b);
        assert_eq!(a.accepted_in_window, 1);
        assert_eq!(a.accepted_after, 1);
        assert_eq!(a.completed_in_window, 1);
        assert_eq!(a.states["completed"], 1);
        assert_eq!(a.error_count(), 2);
        assert_eq!(a.response.len(), 2);
        assert_eq!(a.accepted_to_completed.max() / 100, 30); // 3 ms, 3 significant digits
        assert_eq!(live.accepted.load(Relaxed), 2);
        assert_eq!(live.errors.load(Relaxed), 2);
    }
}
