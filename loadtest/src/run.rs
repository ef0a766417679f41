//! A run: the load window (closed or open loop), the drain, the progress line and the
//! assembled report.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::http::{Factory, RequestFactory, Session};
use crate::options::{Options, Scenario};
use crate::report::Report;
use crate::rpc::Bodies;
use crate::scenario::{self, Mix};
use crate::stats::{Live, Recorder};

/// Most accepted tasks waiting to be polled; beyond it new ones are not followed (counted).
const MAX_PENDING: usize = 2_000_000;

/// An accepted task the poller follows.
pub struct Pending {
    pub task_id: String,
    pub due: Instant,
    pub accepted: Instant,
    pub next_poll: Instant,
    /// Polls so far: the interval doubles with each, up to 20 × `--poll-interval`, so slow
    /// tasks do not turn the poller into the load.
    pub polls: u32,
}

impl Pending {
    /// When to poll next after a poll at `at` found the task still running.
    pub fn backoff(&mut self, at: Instant, interval: std::time::Duration) {
        self.polls = self.polls.saturating_add(1);
        let factor = 1u32 << self.polls.min(5);
        self.next_poll = at + (interval * factor).min(interval * 20);
    }
}

/// State shared by every client of a run.
pub struct Ctx {
    pub opts: Options,
    pub factory: Factory,
    pub bodies: Bodies,
    pub live: Live,
    pub mix: Option<Mix>,
    pub mix_seq: AtomicU64,
    next: AtomicU64,
    issued: AtomicU64,
    accepted_seq: AtomicU64,
    /// Accepted tasks the poller skipped: `--poll-every N` follows one in N.
    pub not_sampled: AtomicU64,
    /// Accepted tasks not followed because the poll queue was full ([`MAX_PENDING`]).
    pub not_followed: AtomicU64,
    /// The load window is over: issue nothing new.
    pub stop: CancellationToken,
    /// The drain deadline passed: abandon what is still open.
    pub hard_stop: CancellationToken,
    window_end: OnceLock<Instant>,
    load_done: AtomicBool,
    pub pending_queue: Mutex<VecDeque<Pending>>,
    pub pending_ready: tokio::sync::Notify,
}

impl Ctx {
    pub fn new(opts: Options, factory: Factory) -> anyhow::Result<Ctx> {
        let run = format!("{:016x}", rand::random::<u64>());
        let mix = match opts.scenario {
            Scenario::Mixed => Some(Mix::parse(&opts.mix)?),
            _ => None,
        };
        Ok(Ctx {
            bodies: Bodies::new(run, opts.payload_bytes).with_wire(opts.wire()),
            opts,
            factory,
            live: Live::default(),
            mix,
            mix_seq: AtomicU64::new(0),
            next: AtomicU64::new(1),
            issued: AtomicU64::new(0),
            accepted_seq: AtomicU64::new(0),
            not_sampled: AtomicU64::new(0),
            not_followed: AtomicU64::new(0),
            stop: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            window_end: OnceLock::new(),
            load_done: AtomicBool::new(false),
            pending_queue: Mutex::new(VecDeque::new()),
            pending_ready: tokio::sync::Notify::new(),
        })
    }

    /// A fresh JSON-RPC id (also names the message and context).
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Relaxed)
    }

    /// Tells `rec` when the window ended, once it has.
    pub fn sync(&self, rec: &mut Recorder) {
        rec.set_window_end(self.window_end.get().copied());
    }

    /// Takes the right to issue one more first-level request (`--requests`).
    pub fn take_ticket(&self) -> bool {
        match self.opts.requests {
            Some(max) => self.issued.fetch_add(1, Relaxed) < max,
            None => true,
        }
    }

    /// When the load window ended (now, if it has not).
    pub fn window_end(&self) -> Instant {
        self.window_end.get().copied().unwrap_or_else(Instant::now)
    }

    pub fn load_done(&self) -> bool {
        self.load_done.load(Relaxed)
    }

    /// Hands an accepted task to the poller (every `--poll-every`th one).
    pub fn track(&self, p: Pending) {
        let seq = self.accepted_seq.fetch_add(1, Relaxed);
        if !seq.is_multiple_of(self.opts.poll_every) {
            self.not_sampled.fetch_add(1, Relaxed);
            return;
        }
        let mut q = self.pending_queue.lock();
        if q.len() >= MAX_PENDING {
            self.not_followed.fetch_add(1, Relaxed);
            return;
        }
        q.push_back(p);
        drop(q);
        self.live.pending.fetch_add(1, Relaxed);
        self.pending_ready.notify_one();
    }
}

/// Builds the DID signer from `--key-dir` / `--did`.
pub fn signer(opts: &Options) -> anyhow::Result<Option<bindu_client::Client>> {
    let Some(dir) = &opts.key_dir else {
        return Ok(None);
    };
    let identity = crate::caller_identity(dir)?;
    let did = opts.did.clone().unwrap_or_else(|| identity.did_key());
    Ok(Some(
        bindu_client::Client::new(opts.url.clone())?.with_signer(Arc::new(identity), did),
    ))
}

/// Runs the load described by `opts` and returns the report (also printed as progress on
/// stderr unless `--quiet`).
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    opts.validate()?;
    let target = crate::target::resolve(&opts.url, opts.allow_remote).await?;
    let signer = signer(&opts)?;
    let factory = Arc::new(
        RequestFactory::new(target, opts.token.as_deref(), signer)?.with_wire(opts.wire()),
    );
    let ctx = Arc::new(Ctx::new(opts, factory)?);
    if ctx.opts.scenario == Scenario::SseSoak {
        return crate::soak::run(ctx).await;
    }
    let started = Instant::now();
    let progress = (!ctx.opts.quiet).then(|| tokio::spawn(progress(ctx.clone(), started)));

    let mut pollers = JoinSet::new();
    // Blocking sends need them only when a server answers before the task finished.
    if matches!(
        ctx.opts.scenario,
        Scenario::Send | Scenario::SendBlocking | Scenario::Mixed
    ) {
        let n = ctx
            .opts
            .poll_connections
            .unwrap_or(ctx.opts.concurrency / 4)
            .max(1);
        for _ in 0..n {
            let ctx = ctx.clone();
            let s = Session::new(ctx.factory.target.addr, ctx.opts.timeout);
            pollers.spawn(async move { scenario::poller(&ctx, s).await });
        }
    }

    let mut clients = JoinSet::new();
    let mut dispatcher = None;
    match ctx.opts.rate {
        None => {
            for _ in 0..ctx.opts.concurrency {
                let ctx = ctx.clone();
                clients.spawn(async move {
                    let mut s = Session::new(ctx.factory.target.addr, ctx.opts.timeout);
                    let mut rec = Recorder::default();
                    while !ctx.stop.is_cancelled() && ctx.take_ticket() {
                        let due = Instant::now();
                        scenario::one(&ctx, &mut s, &mut rec, ctx.opts.scenario, due).await;
                    }
                    rec
                });
            }
        }
        Some(rate) => {
            let (tx, rx) = async_channel::bounded::<Instant>(ctx.opts.concurrency * 4);
            for _ in 0..ctx.opts.concurrency {
                let ctx = ctx.clone();
                let rx = rx.clone();
                clients.spawn(async move {
                    let mut s = Session::new(ctx.factory.target.addr, ctx.opts.timeout);
                    let mut rec = Recorder::default();
                    while let Ok(due) = rx.recv().await {
                        if ctx.stop.is_cancelled() {
                            // Queued for a free connection when the window ended.
                            rec.never_sent(due, Duration::ZERO, 1, ctx.window_end());
                            continue;
                        }
                        scenario::one(&ctx, &mut s, &mut rec, ctx.opts.scenario, due).await;
                    }
                    rec
                });
            }
            let ctx = ctx.clone();
            dispatcher = Some(tokio::spawn(async move {
                let mut rec = Recorder::default();
                let period = Duration::from_secs_f64(1.0 / rate);
                let start = Instant::now();
                let mut i: u64 = 0;
                loop {
                    if ctx.stop.is_cancelled() || !ctx.take_ticket() {
                        break;
                    }
                    let due = start + period.mul_f64(i as f64);
                    if due > Instant::now() {
                        tokio::select! {
                            _ = tokio::time::sleep_until(due.into()) => {}
                            _ = ctx.stop.cancelled() => break,
                        }
                    }
                    tokio::select! {
                        r = tx.send(due) => if r.is_err() { break },
                        _ = ctx.stop.cancelled() => break,
                    }
                    i += 1;
                }
                // Requests that fell due while the schedule was blocked on busy clients: each
                // waited at least from its due time to the window's end.
                if let Some(&end) = ctx.window_end.get() {
                    let should = (end.saturating_duration_since(start).as_secs_f64() * rate) as u64;
                    let should = ctx.opts.requests.map_or(should, |m| should.min(m));
                    let first = start + period.mul_f64(i as f64);
                    rec.never_sent(first, period, should.saturating_sub(i), end);
                }
                tx.close();
                rec
            }));
        }
    }

    // The load window: until the duration passes or every request has been answered.
    let window = ctx.opts.window();
    let mut recorders = Vec::new();
    let deadline = window.map(|w| tokio::time::Instant::from(started + w));
    loop {
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, clients.join_next()).await.ok(),
                None => Some(clients.join_next().await),
            }
        };
        match next.await {
            Some(Some(Ok(rec))) => recorders.push(rec),
            Some(Some(Err(e))) => anyhow::bail!("a client task failed: {e}"),
            Some(None) | None => break,
        }
    }
    let window_end = Instant::now();
    let _ = ctx.window_end.set(window_end);
    ctx.stop.cancel();
    // Drain: in-flight requests and streams finish, pollers follow what was accepted.
    let drain_deadline = window_end + ctx.opts.drain;
    let hard = ctx.hard_stop.clone();
    let hard_timer = tokio::spawn(async move {
        tokio::time::sleep_until(drain_deadline.into()).await;
        hard.cancel();
    });
    if let Some(d) = dispatcher {
        match d.await {
            Ok(rec) => recorders.push(rec),
            Err(e) => anyhow::bail!("the open-loop schedule failed: {e}"),
        }
    }
    while let Some(r) = clients.join_next().await {
        match r {
            Ok(rec) => recorders.push(rec),
            Err(e) => anyhow::bail!("a client task failed: {e}"),
        }
    }
    ctx.load_done.store(true, Relaxed);
    ctx.pending_ready.notify_waiters();
    while let Some(r) = pollers.join_next().await {
        match r {
            Ok(rec) => recorders.push(rec),
            Err(e) => anyhow::bail!("a poller task failed: {e}"),
        }
    }
    hard_timer.abort();
    let finished = Instant::now();
    if let Some(p) = progress {
        p.abort();
    }
    let mut all = Recorder::default();
    for r in recorders {
        all.merge(r);
    }
    // Followed tasks never seen ending: their wait lasted at least until now.
    let left: Vec<Pending> = ctx.pending_queue.lock().drain(..).collect();
    for p in &left {
        all.not_ended(p.due, finished);
    }
    Ok(Report::build(
        &ctx,
        all,
        crate::report::Timing {
            window: window_end - started,
            drain: finished.saturating_duration_since(window_end),
        },
        left.len() as u64,
        None,
    ))
}

/// One line a second on stderr.
pub async fn progress(ctx: Arc<Ctx>, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut last_acc, mut last_done) = (0, 0);
    loop {
        tick.tick().await;
        let l = &ctx.live;
        let (acc, done) = (l.accepted.load(Relaxed), l.completed.load(Relaxed));
        let otherwise = l.ended_otherwise.load(Relaxed);
        let phase = if ctx.stop.is_cancelled() {
            " (drain)"
        } else {
            ""
        };
        if ctx.opts.scenario == Scenario::SseSoak {
            eprintln!(
                "{:>5.0}s  streams open {}  opened {}  errors {}",
                started.elapsed().as_secs_f64(),
                l.open_streams.load(Relaxed),
                acc,
                l.errors.load(Relaxed),
            );
        } else {
            eprintln!(
                "{:>5.0}s{phase}  sent {}  accepted {} ({}/s)  completed {} ({}/s)  ended otherwise {}  pending {}  errors {}",
                started.elapsed().as_secs_f64(),
                l.sent.load(Relaxed),
                acc,
                acc - last_acc,
                done,
                done - last_done,
                otherwise,
                l.pending.load(Relaxed),
                l.errors.load(Relaxed),
            );
        }
        (last_acc, last_done) = (acc, done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_back_off_to_twenty_intervals() {
        let t0 = Instant::now();
        let mut p = Pending {
            task_id: "t".into(),
            due: t0,
            accepted: t0,
            next_poll: t0,
            polls: 0,
        };
        let waits: Vec<u128> = (0..7)
            .map(|_| {
                p.backoff(t0, Duration::from_millis(5));
                (p.next_poll - t0).as_millis()
            })
            .collect();
        assert_eq!(waits, vec![10, 20, 40, 80, 100, 100, 100]);
    }
}
