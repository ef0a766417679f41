//! What a run measures: live counters (for the progress line) and per-client recorders
//! (HDR histograms, error counts) merged at the end, so the hot path shares nothing but a
//! few atomic counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Counters every client bumps; read once a second by the progress line.
#[derive(Default)]
pub struct Live {
    /// First-level requests issued.
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    /// Tasks seen ending in state `completed`.
    pub completed: AtomicU64,
    /// Tasks seen ending in any other state (`failed`, `canceled`, `input-required`, ...).
    pub ended_otherwise: AtomicU64,
    pub errors: AtomicU64,
    /// Accepted tasks whose completion is still being waited for (polls and streams).
    pub pending: AtomicI64,
    /// sse-soak: streams open now.
    pub open_streams: AtomicI64,
}

/// How tasks ended, one count per A2A state (the JSON report's `states`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Ends {
    pub completed: u64,
    pub failed: u64,
    pub canceled: u64,
    pub rejected: u64,
    pub input_required: u64,
    pub auth_required: u64,
    /// Answered with a Message instead of a Task.
    pub message: u64,
    /// A final event in a state that does not end a task, or a state this tool does not know.
    pub unknown: u64,
}

impl Ends {
    /// Counts one task that ended in `state`.
    pub fn add(&mut self, state: &str) {
        let n = match state {
            "completed" => &mut self.completed,
            "failed" => &mut self.failed,
            "canceled" => &mut self.canceled,
            "rejected" => &mut self.rejected,
            "input-required" => &mut self.input_required,
            "auth-required" => &mut self.auth_required,
            "message" => &mut self.message,
            _ => &mut self.unknown,
        };
        *n += 1;
    }

    /// Every state with its count, in a fixed order (`completed` first).
    pub fn counts(&self) -> [(&'static str, u64); 8] {
        [
            ("completed", self.completed),
            ("failed", self.failed),
            ("canceled", self.canceled),
            ("rejected", self.rejected),
            ("input-required", self.input_required),
            ("auth-required", self.auth_required),
            ("message", self.message),
            ("unknown", self.unknown),
        ]
    }

    /// Tasks seen ending, in any state.
    pub fn total(&self) -> u64 {
        self.counts().iter().map(|(_, n)| n).sum()
    }

    /// Tasks seen ending in a state other than `completed`.
    pub fn not_completed(&self) -> u64 {
        self.total() - self.completed
    }

    pub fn merge(&mut self, o: &Ends) {
        self.completed += o.completed;
        self.failed += o.failed;
        self.canceled += o.canceled;
        self.rejected += o.rejected;
        self.input_required += o.input_required;
        self.auth_required += o.auth_required;
        self.message += o.message;
        self.unknown += o.unknown;
    }
}

/// How a task's end was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// In the answer or the stream that carries the task: every such task is seen.
    Directly,
    /// By the `tasks/get` poller, which follows one accepted task in `--poll-every`.
    ByPoll,
}

/// Microseconds, 1 µs to 1 h, 3 significant digits.
fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(h) => h,
        // The bounds above are constants that hdrhistogram accepts.
        Err(e) => unreachable!("histogram bounds: {e}"),
    }
}

/// Most distinct values one span of never-sent requests is recorded as (each with its count).
const UNSENT_STEPS: u64 = 100_000;

/// One client's measurements.
pub struct Recorder {
    /// When the load window ended (`None` while it runs): events after it count as drain.
    window_end: Option<Instant>,
    /// Request due (open loop: scheduled; closed loop: sent) → HTTP answer (for streams: the
    /// first event), errors included (until they were seen) and, in open loop, requests never
    /// sent (until the window ended).
    pub response: Histogram<u64>,
    /// Accepted (answer naming the task) → seen finished.
    pub accepted_to_completed: Histogram<u64>,
    /// Request due → the request's outcome known: the task seen ending (in any state), an
    /// error seen, or (lower bounds) never sent by the window's end or not ended by the run's.
    /// The end-to-end latency a user waits.
    pub due_to_completed: Histogram<u64>,
    pub accepted_in_window: u64,
    pub accepted_after: u64,
    /// Tasks seen ending `completed` (state `completed` only).
    pub completed_in_window: u64,
    pub completed_after: u64,
    /// Of those, seen by the sampled `tasks/get` poller ([`Observed::ByPoll`]).
    pub polled_completed_in_window: u64,
    pub polled_completed_after: u64,
    /// Tasks seen ending, by state (window and drain).
    pub ends: Ends,
    /// Open loop: requests that fell due but were never sent.
    pub never_sent: u64,
    pub rpc_errors: BTreeMap<i64, u64>,
    pub http_errors: BTreeMap<u16, u64>,
    pub transport_errors: BTreeMap<String, u64>,
    /// Answers that were neither JSON-RPC nor an SSE stream of it.
    pub malformed: u64,
    /// Requests the server refused with HTTP 429 (back-pressure or the caller's limits):
    /// counted apart from failures; the session waited out each `Retry-After`.
    pub too_many_requests: u64,
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
            polled_completed_in_window: 0,
            polled_completed_after: 0,
            ends: Ends::default(),
            never_sent: 0,
            rpc_errors: BTreeMap::new(),
            http_errors: BTreeMap::new(),
            transport_errors: BTreeMap::new(),
            malformed: 0,
            too_many_requests: 0,
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

    /// A task seen ending in `state` (only `completed` counts as completed). `accepted` is
    /// `None` when acceptance was not seen apart from the end (a blocking answer): then only
    /// request → completed is recorded.
    pub fn finished(
        &mut self,
        live: &Live,
        state: &str,
        how: Observed,
        due: Instant,
        accepted: Option<Instant>,
        at: Instant,
    ) {
        if let Some(accepted) = accepted {
            self.accepted_to_completed
                .saturating_record(micros(at - accepted));
        }
        self.due_to_completed.saturating_record(micros(at - due));
        self.ends.add(state);
        if state != "completed" {
            live.ended_otherwise.fetch_add(1, Relaxed);
            return;
        }
        let polled = how == Observed::ByPoll;
        if self.in_window(at) {
            self.completed_in_window += 1;
            self.polled_completed_in_window += u64::from(polled);
        } else {
            self.completed_after += 1;
            self.polled_completed_after += u64::from(polled);
        }
        live.completed.fetch_add(1, Relaxed);
    }

    /// A request given up on at `at` after an error (counted apart, by kind): its latency is
    /// recorded up to then, as request → answer too when `before_answer` (no answer had been
    /// recorded for it yet).
    pub fn gave_up(&mut self, due: Instant, at: Instant, before_answer: bool) {
        let us = micros(at.saturating_duration_since(due));
        if before_answer {
            self.response.saturating_record(us);
        }
        self.due_to_completed.saturating_record(us);
    }

    /// An accepted task not seen ending when the run was over (`end`): a lower bound.
    pub fn not_ended(&mut self, due: Instant, end: Instant) {
        self.due_to_completed
            .saturating_record(micros(end.saturating_duration_since(due)));
    }

    /// Open loop: `count` requests due every `period` from `first` that were never sent
    /// before the window ended at `end`. Their latency, due → `end`, is a lower bound and goes
    /// into request → answer and request → completed, so a stalled server cannot hide them.
    pub fn never_sent(&mut self, first: Instant, period: Duration, count: u64, end: Instant) {
        if count == 0 {
            return;
        }
        self.never_sent += count;
        // Recorded in at most UNSENT_STEPS groups, each at its first request's latency (the
        // largest of the group, within 3 significant digits for any realistic rate).
        let group = count.div_ceil(UNSENT_STEPS);
        let mut k = 0;
        while k < count {
            let n = group.min(count - k);
            let due = first + period.mul_f64(k as f64);
            let us = micros(end.saturating_duration_since(due));
            self.response.saturating_record_n(us, n);
            self.due_to_completed.saturating_record_n(us, n);
            k += n;
        }
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

    /// An HTTP 429 answer: the server refused the request for load, not for an error.
    pub fn too_many_requests(&mut self) {
        self.too_many_requests += 1;
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
        self.polled_completed_in_window += other.polled_completed_in_window;
        self.polled_completed_after += other.polled_completed_after;
        self.ends.merge(&other.ends);
        self.never_sent += other.never_sent;
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
        self.too_many_requests += other.too_many_requests;
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
            Observed::Directly,
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
        assert_eq!(a.ends.completed, 1);
        assert_eq!(a.error_count(), 2);
        assert_eq!(a.response.len(), 2);
        assert_eq!(a.accepted_to_completed.max() / 100, 30); // 3 ms, 3 significant digits
        assert_eq!(live.accepted.load(Relaxed), 2);
        assert_eq!(live.errors.load(Relaxed), 2);
    }

    #[test]
    fn only_the_completed_state_counts_as_completed() {
        let live = Live::default();
        let t0 = Instant::now();
        let at = t0 + Duration::from_millis(1);
        let mut r = Recorder::default();
        for state in [
            "failed",
            "canceled",
            "rejected",
            "input-required",
            "auth-required",
        ] {
            r.finished(&live, state, Observed::Directly, t0, None, at);
        }
        r.finished(&live, "working", Observed::Directly, t0, None, at);
        r.finished(&live, "completed", Observed::ByPoll, t0, Some(t0), at);
        assert_eq!(r.completed_in_window, 1);
        assert_eq!(r.polled_completed_in_window, 1);
        assert_eq!(r.ends.completed, 1);
        assert_eq!(r.ends.failed, 1);
        assert_eq!(r.ends.auth_required, 1);
        assert_eq!(r.ends.unknown, 1);
        assert_eq!(r.ends.total(), 7);
        assert_eq!(r.ends.not_completed(), 6);
        assert_eq!(live.completed.load(Relaxed), 1);
        assert_eq!(live.ended_otherwise.load(Relaxed), 6);
        // Every end, whatever its state, is a request whose outcome is known.
        assert_eq!(r.due_to_completed.len(), 7);
    }

    #[test]
    fn never_sent_requests_count_in_the_latencies_until_the_window_end() {
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs(2);
        let mut r = Recorder::default();
        // 1,000 requests due every 2 ms from t0: latencies 2 s down to 2 ms.
        r.never_sent(t0, Duration::from_millis(2), 1000, end);
        r.never_sent(t0, Duration::from_millis(2), 0, end);
        assert_eq!(r.never_sent, 1000);
        assert_eq!(r.response.len(), 1000);
        assert_eq!(r.due_to_completed.len(), 1000);
        let p50 = r.due_to_completed.value_at_quantile(0.5);
        assert!((990_000..=1_010_000).contains(&p50), "{p50}");
        assert!(r.due_to_completed.max() >= 1_990_000);
        // A huge backlog is recorded in bounded steps, every request counted.
        let mut big = Recorder::default();
        big.never_sent(t0, Duration::from_nanos(100), 10_000_001, end);
        assert_eq!(big.due_to_completed.len(), 10_000_001);
        // Errors count until they were seen, as an answer only when none was recorded.
        let mut e = Recorder::default();
        e.gave_up(t0, t0 + Duration::from_millis(7), true);
        e.gave_up(t0, t0 + Duration::from_millis(9), false);
        e.not_ended(t0, end);
        assert_eq!(e.response.len(), 1);
        assert_eq!(e.due_to_completed.len(), 3);
        assert!(e.due_to_completed.max() >= 1_990_000);
    }
}
