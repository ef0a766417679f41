//! The final report: a human table on stdout and the same numbers as JSON (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::options::Scenario;
use crate::run::Ctx;
use crate::stats::{Ends, Recorder};

/// Percentiles of one latency histogram, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    /// Request due → answer (streams: first event). Open loop: from the scheduled time.
    /// Refused and failed requests count until the failure was seen; open loop, requests that
    /// fell due but were never sent count until the window ended (a lower bound).
    pub response: Latency,
    /// Task accepted → seen ending (stream events, or tasks/get polls every
    /// `poll_interval_ms` for non-blocking sends).
    pub accepted_to_completed: Latency,
    /// Request due → its outcome known: the task seen ending (any state), an error seen, or
    /// (lower bounds) never sent by the window's end, or not seen ending by the run's end.
    /// Every request is in it once (with `poll_every` > 1, unfollowed non-blocking sends are
    /// not), so a stalled server or a failing one cannot hide behind the requests it answered.
    pub due_to_completed: Latency,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Errors {
    pub total: u64,
    /// By JSON-RPC error code.
    pub jsonrpc: BTreeMap<String, u64>,
    /// By HTTP status (non-2xx answers).
    pub http: BTreeMap<String, u64>,
    /// No HTTP answer: connect, timeout, truncated streams...
    pub transport: BTreeMap<String, u64>,
    /// Answers that were not JSON-RPC.
    pub malformed: u64,
    /// HTTP 429 answers (back-pressure, caller limits): not counted in `total`; each
    /// session waited out the answer's `Retry-After`.
    pub too_many_requests: u64,
}

/// sse-soak results.
#[derive(Debug, Clone, Serialize)]
pub struct Soak {
    pub streams_requested: u64,
    pub streams_opened: u64,
    /// Streams the server ended before the hold was over.
    pub closed_early: u64,
    pub server_pid: Option<u32>,
    pub rss_before_kib: Option<u64>,
    /// With every stream open, after a 2 s settle.
    pub rss_open_kib: Option<u64>,
    /// At the end of the hold.
    pub rss_end_kib: Option<u64>,
    /// (rss_open - rss_before) / streams_opened.
    pub bytes_per_stream: Option<u64>,
    pub open_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    /// The A2A version and binding (`v03`, `v10`, `v10-rest`).
    pub wire: crate::rpc::Wire,
    pub url: String,
    /// `closed` (fixed concurrency) or `open` (fixed rate).
    pub mode: &'static str,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub signed: bool,
    pub authenticated: bool,
    pub payload_bytes: Option<usize>,
    pub window_secs: f64,
    pub drain_secs: f64,
    /// First-level requests issued.
    pub sent: u64,
    /// Accepted within the window, and during the drain.
    pub accepted: u64,
    pub accepted_after_window: u64,
    /// Tasks seen ending in state `completed` (no other state) within the window, and
    /// during the drain. Counted as seen: with `poll_every` > 1 non-blocking sends are
    /// followed one in N, so these include only the followed ones.
    pub completed: u64,
    pub completed_after_window: u64,
    /// Of `completed` and `completed_after_window`: seen by the sampled `tasks/get` poller
    /// (the part `completed_per_sec` scales by `poll_every`).
    pub completed_by_poll: u64,
    pub completed_by_poll_after_window: u64,
    /// Tasks completed, window and drain: completions seen directly (blocking answers,
    /// stream events, resubscribes) once, plus those seen by polls × `poll_every`.
    /// An estimate when `estimated` names it.
    pub completed_total: u64,
    pub accepted_per_sec: f64,
    /// Completed within the window per second: completions seen directly once, those seen by
    /// the sampled polls × `poll_every`. An estimate when `estimated` names it.
    pub completed_per_sec: f64,
    /// The fields above that are estimated from a sample (`--poll-every` > 1 and completions
    /// seen by polls); empty when every number was counted.
    pub estimated: Vec<&'static str>,
    /// 1 when every accepted task was followed to its end; N when one in N was.
    pub poll_every: u64,
    pub poll_interval_ms: f64,
    /// Accepted tasks the poller did not follow because of `poll_every` (not seen ending,
    /// not lost).
    pub not_sampled: u64,
    /// Accepted tasks not followed because the poll queue was full (lost).
    pub not_followed: u64,
    /// Followed tasks still not seen ending when the drain ended.
    pub unfinished: u64,
    /// Accepted tasks whose end was never seen, other than those skipped by sampling:
    /// unfinished, abandoned at the drain deadline, or given up after an error.
    pub lost: u64,
    /// Open loop: requests that fell due but were never sent (the client or server could
    /// not keep up with the schedule). They are in the latencies, up to the window's end.
    pub due_not_sent: u64,
    /// resubscribe: tasks already finished when the stream was asked for.
    pub finished_before_resubscribe: u64,
    pub latency: Latencies,
    /// Tasks seen ending, by state (window and drain; every state listed, zeros included).
    pub states: Ends,
    pub errors: Errors,
    pub soak: Option<Soak>,
}

pub struct Timing {
    pub window: Duration,
    pub drain: Duration,
}

impl Report {
    pub fn build(
        ctx: &Ctx,
        rec: Recorder,
        timing: Timing,
        unfinished: u64,
        soak: Option<Soak>,
    ) -> Report {
        use std::sync::atomic::Ordering::Relaxed;
        let o = &ctx.opts;
        let secs = timing.window.as_secs_f64().max(1e-9);
        let n = o.poll_every;
        // Completions seen directly count once; those seen by the sampled poller stand for N.
        let scale = |all: u64, polled: u64| all - polled + polled * n;
        let completed_in_window = scale(rec.completed_in_window, rec.polled_completed_in_window);
        let completed_total =
            completed_in_window + scale(rec.completed_after, rec.polled_completed_after);
        let by_poll = rec.polled_completed_in_window + rec.polled_completed_after;
        let estimated = if n > 1 && by_poll > 0 {
            vec!["completed_per_sec", "completed_total"]
        } else {
            Vec::new()
        };
        let not_sampled = ctx.not_sampled.load(Relaxed);
        let accepted_all = rec.accepted_in_window + rec.accepted_after;
        let lost = if soak.is_some() {
            0
        } else {
            accepted_all.saturating_sub(not_sampled + rec.ends.total())
        };
        let errors = Errors {
            total: rec.error_count(),
            jsonrpc: rec
                .rpc_errors
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            http: rec
                .http_errors
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            transport: rec.transport_errors.clone(),
            malformed: rec.malformed,
            too_many_requests: rec.too_many_requests,
        };
        Report {
            scenario: o.scenario,
            wire: o.wire(),
            url: o.url.clone(),
            mode: if o.rate.is_some() { "open" } else { "closed" },
            concurrency: o.concurrency,
            rate: o.rate,
            signed: ctx.factory.signs(),
            authenticated: o.token.is_some(),
            payload_bytes: o.payload_bytes,
            window_secs: secs,
            drain_secs: timing.drain.as_secs_f64(),
            sent: ctx.live.sent.load(Relaxed),
            accepted: rec.accepted_in_window,
            accepted_after_window: rec.accepted_after,
            completed: rec.completed_in_window,
            completed_after_window: rec.completed_after,
            completed_by_poll: rec.polled_completed_in_window,
            completed_by_poll_after_window: rec.polled_completed_after,
            completed_total,
            accepted_per_sec: rec.accepted_in_window as f64 / secs,
            completed_per_sec: completed_in_window as f64 / secs,
            estimated,
            poll_every: n,
            poll_interval_ms: o.poll_interval.as_secs_f64() * 1000.0,
            not_sampled,
            not_followed: ctx.not_followed.load(Relaxed),
            unfinished,
            lost,
            due_not_sent: rec.never_sent,
            finished_before_resubscribe: rec.finished_before_resubscribe,
            latency: Latencies {
                response: Latency::of(&rec.response),
                accepted_to_completed: Latency::of(&rec.accepted_to_completed),
                due_to_completed: Latency::of(&rec.due_to_completed),
            },
            states: rec.ends,
            errors,
            soak,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mode = match self.rate {
            Some(r) => format!(
                "open loop, {r} req/s offered, up to {} connections",
                self.concurrency
            ),
            None => format!("closed loop, {} connections", self.concurrency),
        };
        let _ = writeln!(
            t,
            "bindu-loadtest: {} against {} (A2A {})",
            self.scenario.name(),
            self.url,
            self.wire.name()
        );
        let mode = if self.soak.is_some() {
            "streams held open".to_string()
        } else {
            mode
        };
        let _ = writeln!(
            t,
            "  {mode}; signed: {}; bearer token: {}; payload: {}",
            yes(self.signed),
            yes(self.authenticated),
            self.payload_bytes
                .map_or("5 B".to_string(), |b| format!("{b} B")),
        );
        let _ = writeln!(
            t,
            "  window {:.2} s, drain {:.2} s",
            self.window_secs, self.drain_secs
        );
        if let Some(s) = &self.soak {
            let _ = writeln!(
                t,
                "  streams: {} requested, {} opened in {:.1} s, {} closed early by the server",
                s.streams_requested, s.streams_opened, s.open_secs, s.closed_early
            );
            let kib = |v: Option<u64>| v.map_or("-".to_string(), |k| format!("{k} KiB"));
            let _ = writeln!(
                t,
                "  server RSS (pid {}): before {}, all open {}, end of hold {}",
                s.server_pid.map_or("-".into(), |p| p.to_string()),
                kib(s.rss_before_kib),
                kib(s.rss_open_kib),
                kib(s.rss_end_kib)
            );
            if let Some(b) = s.bytes_per_stream {
                let _ = writeln!(
                    t,
                    "  memory per open stream: {b} bytes ({:.1} KiB)",
                    b as f64 / 1024.0
                );
            }
        } else {
            let _ = writeln!(
                t,
                "  sent {}   accepted {} (+{} after the window)   completed {} (+{} after)",
                self.sent,
                self.accepted,
                self.accepted_after_window,
                self.completed,
                self.completed_after_window,
            );
            let _ = writeln!(
                t,
                "  accepted/s {:.0}   completed/s {:.0}{}   unfinished {}   lost {}{}",
                self.accepted_per_sec,
                self.completed_per_sec,
                if self.estimated.is_empty() {
                    ""
                } else {
                    " (estimated)"
                },
                self.unfinished,
                self.lost,
                if self.mode == "open" {
                    format!("   due but not sent {}", self.due_not_sent)
                } else {
                    String::new()
                }
            );
            let ends: Vec<String> = self
                .states
                .counts()
                .iter()
                .filter(|(name, n)| *n > 0 || *name == "completed")
                .map(|(name, n)| format!("{name} {n}"))
                .collect();
            let not_completed = self.states.not_completed();
            let _ = writeln!(
                t,
                "  tasks ended: {}{}",
                ends.join(", "),
                if not_completed > 0 {
                    format!("   ({not_completed} did not complete)")
                } else {
                    String::new()
                }
            );
            if self.poll_every > 1 {
                let _ = writeln!(
                    t,
                    "  sampled: 1 in {} non-blocking sends followed ({} not followed); completed/s \
                     counts the {} completions seen by polls × {} (an estimate), the others once",
                    self.poll_every,
                    self.not_sampled,
                    self.completed_by_poll + self.completed_by_poll_after_window,
                    self.poll_every,
                );
            }
            if self.not_followed > 0 {
                let _ = writeln!(t, "  not followed (poll queue full): {}", self.not_followed);
            }
            let _ = writeln!(
                t,
                "  {:<26} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "latency (ms)", "count", "mean", "p50", "p90", "p99", "p99.9", "max"
            );
            for (name, l) in [
                ("request → answer *", &self.latency.response),
                ("accepted → completed", &self.latency.accepted_to_completed),
                ("request → completed *", &self.latency.due_to_completed),
            ] {
                let _ = writeln!(
                    t,
                    "  {:<26} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                    name, l.count, l.mean_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
                );
            }
            let _ = writeln!(
                t,
                "  * every request: failed ones until the failure was seen, tasks ending in any \
                 state{}",
                if self.mode == "open" {
                    ", requests never sent until the window ended (a lower bound)"
                } else {
                    ""
                }
            );
        }
        let e = &self.errors;
        if e.too_many_requests > 0 {
            let _ = writeln!(
                t,
                "  refused with HTTP 429 (not errors; Retry-After honoured): {}",
                e.too_many_requests
            );
        }
        if e.total == 0 {
            let _ = writeln!(t, "  errors: none");
        } else {
            let _ = writeln!(t, "  errors: {}", e.total);
            for (k, v) in &e.jsonrpc {
                let _ = writeln!(t, "    JSON-RPC {k}: {v}");
            }
            for (k, v) in &e.http {
                let _ = writeln!(t, "    HTTP {k}: {v}");
            }
            for (k, v) in &e.transport {
                let _ = writeln!(t, "    {k}: {v}");
            }
            if e.malformed > 0 {
                let _ = writeln!(t, "    not JSON-RPC: {}", e.malformed);
            }
        }
        t
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
