//! `sse-soak`: open `--streams` `message/stream` responses, hold them all open for
//! `--duration`, and measure the server's resident memory (VmRSS of `--server-pid`) before
//! and with every stream open. The server's tasks must outlive the hold (e.g. an echo handler
//! with `BINDU_ECHO_DELAY_MS` longer than the hold); streams it ends early are counted.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::http::{Session, SseReader};
use crate::report::{Report, Soak, Timing};
use crate::rpc::{self, Seen};
use crate::run::Ctx;
use crate::stats::Recorder;

/// Streams being opened at once (keeps the accept queue and the handshake burst sane).
const OPENING_AT_ONCE: usize = 256;
/// Time for the server's memory to settle once every stream is open.
const SETTLE: Duration = Duration::from_secs(2);

/// The resident set of `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub async fn run(ctx: Arc<Ctx>) -> anyhow::Result<Report> {
    let o = &ctx.opts;
    let streams = o.streams.unwrap_or(o.concurrency);
    let hold = o.window().unwrap_or(Duration::from_secs(10));
    let pid = o.server_pid;
    if let Some(p) = pid {
        if rss_kib(p).is_none() {
            anyhow::bail!("--server-pid {p}: cannot read /proc/{p}/status (no such process?)");
        }
    }
    let started = Instant::now();
    let progress = (!o.quiet).then(|| tokio::spawn(crate::run::progress(ctx.clone(), started)));
    let rss_before = pid.and_then(rss_kib);

    let release = CancellationToken::new();
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let settled = Arc::new(AtomicU64::new(0)); // opened or failed
    let closed_early = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for _ in 0..streams {
        let ctx = ctx.clone();
        let release = release.clone();
        let opening = opening.clone();
        let settled = settled.clone();
        let closed_early = closed_early.clone();
        set.spawn(async move {
            let mut rec = Recorder::default();
            let permit = opening.acquire_owned().await;
            let due = Instant::now();
            let opened = open_one(&ctx, &mut rec, due).await;
            settled.fetch_add(1, Relaxed);
            drop(permit);
            if let Some((mut reader, _session)) = opened {
                ctx.live.open_streams.fetch_add(1, Relaxed);
                tokio::select! {
                    _ = release.cancelled() => {}
                    _ = async { while reader.idle().await {} } => {
                        closed_early.fetch_add(1, Relaxed);
                    }
                }
                ctx.live.open_streams.fetch_sub(1, Relaxed);
            }
            rec
        });
    }
    // Wait for every stream to open or fail (bounded: 60 s plus 10 ms per stream).
    let open_deadline =
        Instant::now() + Duration::from_secs(60) + Duration::from_millis(10) * streams as u32;
    while settled.load(Relaxed) < streams as u64 && Instant::now() < open_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let rss_open = pid.and_then(rss_kib);
    let opened = ctx.live.accepted.load(Relaxed);
    tokio::time::sleep(hold.saturating_sub(SETTLE)).await;
    let rss_end = pid.and_then(rss_kib);
    ctx.stop.cancel();
    let window_end = Instant::now();
    release.cancel();
    let mut all = Recorder::default();
    let join = async {
        while let Some(r) = set.join_next().await {
            if let Ok(rec) = r {
                all.merge(rec);
            }
        }
    };
    if tokio::time::timeout(o.drain.max(Duration::from_secs(5)), join)
        .await
        .is_err()
    {
        set.abort_all();
    }
    if let Some(p) = progress {
        p.abort();
    }
    let bytes_per_stream = match (rss_before, rss_open) {
        (Some(b), Some(a)) if opened > 0 => Some(a.saturating_sub(b) * 1024 / opened),
        _ => None,
    };
    let soak = Soak {
        streams_requested: streams as u64,
        streams_opened: opened,
        closed_early: closed_early.load(Relaxed),
        server_pid: pid,
        rss_before_kib: rss_before,
        rss_open_kib: rss_open,
        rss_end_kib: rss_end,
        bytes_per_stream,
        open_secs,
    };
    Ok(Report::build(
        &ctx,
        all,
        Timing {
            window: window_end - started,
            drain: window_end.elapsed(),
        },
        0,
        Some(soak),
    ))
}

/// Opens one `message/stream` and reads its first event (the accepted task).
async fn open_one(ctx: &Ctx, rec: &mut Recorder, due: Instant) -> Option<(SseReader, Session)> {
    ctx.live.sent.fetch_add(1, Relaxed);
    let mut s = Session::new(ctx.factory.target.addr, ctx.opts.timeout);
    let body = ctx.bodies.message(ctx.next_id(), None);
    let resp = match s.send(ctx.factory.post(body, true)).await {
        Ok(r) => r,
        Err(t) => {
            rec.transport_error(&ctx.live, t.kind());
            return None;
        }
    };
    let status = resp.status().as_u16();
    if status != 200 {
        rec.http_error(&ctx.live, status);
        return None;
    }
    let mut reader = SseReader::new(resp.into_body(), ctx.opts.timeout);
    match reader.next_data().await {
        Ok(Some(data)) => match rpc::parse_as(ctx.factory.wire(), &data) {
            Some(a) if a.error.is_some() => {
                rec.rpc_error(&ctx.live, a.error.map_or(0, |e| e.code));
                None
            }
            Some(a) => {
                rec.accepted(&ctx.live, due, Instant::now());
                if let Some(Seen::Done { state }) = a.result.map(|i| i.seen()) {
                    // Finished at once: it will not stay open.
                    rec.ends.add(&state);
                }
                Some((reader, s))
            }
            None => {
                rec.malformed(&ctx.live);
                None
            }
        },
        Ok(None) => {
            rec.transport_error(&ctx.live, "stream ended before the first event");
            None
        }
        Err(t) => {
            rec.transport_error(&ctx.live, t.kind());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_our_own_rss() {
        let kib = super::rss_kib(std::process::id()).expect("VmRSS of this process");
        assert!(kib > 0);
        assert!(super::rss_kib(u32::MAX).is_none());
    }
}
