//! What one simulated client does for one request, per scenario, and the `tasks/get`
//! poller that follows non-blocking sends to completion.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::Bytes;

use crate::http::{Session, SseReader, Transport};
use crate::options::Scenario;
use crate::rpc::{self, Seen};
use crate::run::{Ctx, Pending};
use crate::stats::{Observed, Recorder};

/// `mixed`: scenarios in proportion to their weights, taken in a fixed rotation.
#[derive(Debug, Clone)]
pub struct Mix {
    rotation: Vec<Scenario>,
}

impl Mix {
    /// `send=5,send-blocking=2,stream=2,resubscribe=1`.
    pub fn parse(spec: &str) -> anyhow::Result<Mix> {
        let mut rotation = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = item
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--mix: {item:?} is not name=weight"))?;
            let scenario = match name.trim() {
                "send" => Scenario::Send,
                "send-blocking" => Scenario::SendBlocking,
                "stream" => Scenario::Stream,
                "resubscribe" => Scenario::Resubscribe,
                other => anyhow::bail!(
                    "--mix: unknown scenario {other:?} (send, send-blocking, stream, resubscribe)"
                ),
            };
            let weight: usize = weight
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--mix: weight of {name} is not a whole number"))?;
            if weight > 1000 {
                anyhow::bail!("--mix: weights above 1000 are not useful");
            }
            rotation.extend(std::iter::repeat_n(scenario, weight));
        }
        if rotation.is_empty() {
            anyhow::bail!("--mix: no scenario has a positive weight");
        }
        // Interleave so a short run still sees every kind.
        let mut interleaved = Vec::with_capacity(rotation.len());
        let mut groups: Vec<Vec<Scenario>> = Vec::new();
        for s in rotation {
            match groups.iter_mut().find(|g| g[0] == s) {
                Some(g) => g.push(s),
                None => groups.push(vec![s]),
            }
        }
        while groups.iter().any(|g| !g.is_empty()) {
            for g in groups.iter_mut() {
                if let Some(s) = g.pop() {
                    interleaved.push(s);
                }
            }
        }
        Ok(Mix {
            rotation: interleaved,
        })
    }

    pub fn pick(&self, n: u64) -> Scenario {
        self.rotation[(n % self.rotation.len() as u64) as usize]
    }
}

/// Records a refused or unreadable answer: counted once, by JSON-RPC code and/or HTTP status.
/// An HTTP 429 (back-pressure, or the caller over its limits) is counted apart, not as a
/// failure: the server answered as it should under that load (the session waits out its
/// `Retry-After` before its next request).
fn refused(ctx: &Ctx, rec: &mut Recorder, status: u16, answer: Option<&rpc::Answer>) {
    if status == 429 {
        rec.too_many_requests();
        return;
    }
    let code = answer.and_then(|a| a.error.as_ref()).map(|e| e.code);
    let http = !(200..300).contains(&status);
    match (code, http) {
        (Some(c), true) => {
            rec.rpc_error(&ctx.live, c);
            *rec.http_errors.entry(status).or_default() += 1;
        }
        (Some(c), false) => rec.rpc_error(&ctx.live, c),
        (None, true) => rec.http_error(&ctx.live, status),
        (None, false) => rec.malformed(&ctx.live),
    }
}

/// One first-level request of `scenario` (`mixed` picks one), due at `due`.
pub async fn one(ctx: &Ctx, s: &mut Session, rec: &mut Recorder, scenario: Scenario, due: Instant) {
    ctx.live.sent.fetch_add(1, Relaxed);
    let scenario = match (scenario, &ctx.mix) {
        (Scenario::Mixed, Some(mix)) => mix.pick(ctx.mix_seq.fetch_add(1, Relaxed)),
        (s, _) => s,
    };
    match scenario {
        Scenario::Send => {
            let _ = send(ctx, s, rec, due, false, false).await;
        }
        Scenario::SendBlocking => {
            let _ = send(ctx, s, rec, due, true, false).await;
        }
        Scenario::Stream => stream(ctx, s, rec, due).await,
        Scenario::Resubscribe => {
            if let Some((task_id, accepted)) = send(ctx, s, rec, due, false, true).await {
                resubscribe(ctx, s, rec, due, accepted, &task_id).await;
            }
        }
        Scenario::Mixed | Scenario::SseSoak => {}
    }
}

/// `message/send`. A non-blocking send that is accepted but not finished is handed to the
/// poller (`send`) or returned to the caller (`resubscribe`, which follows it itself).
async fn send(
    ctx: &Ctx,
    s: &mut Session,
    rec: &mut Recorder,
    due: Instant,
    blocking: bool,
    follow_itself: bool,
) -> Option<(String, Instant)> {
    let n = ctx.next_id();
    let req = ctx
        .factory
        .post(ctx.bodies.message(n, Some(blocking)), false);
    let answer = s.call(req).await;
    let at = Instant::now();
    ctx.sync(rec);
    let (status, body) = match answer {
        Ok(a) => a,
        Err(t) => {
            rec.transport_error(&ctx.live, t.kind());
            rec.gave_up(due, at, true);
            return None;
        }
    };
    let parsed = rpc::parse_as(ctx.factory.wire(), &body);
    let seen = match parsed.as_ref().and_then(|a| a.result.as_ref()) {
        Some(item) if (200..300).contains(&status) => item.seen(),
        _ => {
            refused(ctx, rec, status, parsed.as_ref());
            rec.gave_up(due, at, true);
            return None;
        }
    };
    match seen {
        Seen::Done { state } => {
            rec.accepted(&ctx.live, due, at);
            rec.finished(&ctx.live, &state, Observed::Directly, due, None, at);
            None
        }
        Seen::Running { task_id } => {
            rec.accepted(&ctx.live, due, at);
            if follow_itself {
                return Some((task_id, at));
            }
            ctx.track(Pending {
                task_id,
                due,
                accepted: at,
                next_poll: at + ctx.opts.poll_interval,
                polls: 0,
            });
            None
        }
        Seen::Other => {
            rec.malformed(&ctx.live);
            rec.gave_up(due, at, true);
            None
        }
    }
}

/// Reads a stream to its final event. `accepted` is `None` for `message/stream` (the first
/// event accepts the task).
async fn follow(
    ctx: &Ctx,
    s: &mut Session,
    rec: &mut Recorder,
    due: Instant,
    mut accepted: Option<Instant>,
    mut reader: SseReader,
) {
    if accepted.is_some() {
        ctx.live.pending.fetch_add(1, Relaxed);
    }
    let outcome = loop {
        let before_answer = accepted.is_none();
        let next = tokio::select! {
            r = reader.next_data() => r,
            _ = ctx.hard_stop.cancelled() => Err(Transport::Timeout),
        };
        let at = Instant::now();
        ctx.sync(rec);
        match next {
            Ok(Some(data)) => {
                let Some(answer) = rpc::parse_as(ctx.factory.wire(), &data) else {
                    rec.malformed(&ctx.live);
                    rec.gave_up(due, at, before_answer);
                    break false;
                };
                if answer.error.is_some() {
                    refused(ctx, rec, 200, Some(&answer));
                    rec.gave_up(due, at, before_answer);
                    break false;
                }
                let seen = answer.result.as_ref().map(|i| i.seen());
                if accepted.is_none() {
                    rec.accepted(&ctx.live, due, at);
                    ctx.live.pending.fetch_add(1, Relaxed);
                    accepted = Some(at);
                }
                if let Some(Seen::Done { state }) = seen {
                    rec.finished(&ctx.live, &state, Observed::Directly, due, accepted, at);
                    break true;
                }
            }
            Ok(None) => {
                rec.transport_error(&ctx.live, "stream ended before the final event");
                rec.gave_up(due, at, before_answer);
                break false;
            }
            Err(t) => {
                let kind = if ctx.hard_stop.is_cancelled() {
                    "abandoned at the drain deadline"
                } else {
                    t.kind()
                };
                rec.transport_error(&ctx.live, kind);
                rec.gave_up(due, at, before_answer);
                break false;
            }
        }
    };
    if accepted.is_some() {
        ctx.live.pending.fetch_sub(1, Relaxed);
    }
    // The server closes the stream after the final event: read to its end so the
    // connection can be reused; anything else means the connection is not reusable.
    if !outcome || !matches!(reader.next_data().await, Ok(None)) {
        s.reset();
    }
}

/// `message/stream`.
async fn stream(ctx: &Ctx, s: &mut Session, rec: &mut Recorder, due: Instant) {
    let n = ctx.next_id();
    let req = ctx.factory.post(ctx.bodies.message(n, None), true);
    if let Some(reader) = open_stream(ctx, s, rec, due, req).await {
        follow(ctx, s, rec, due, None, reader).await;
    }
}

/// Sends a streaming request: the reader when the answer is an event stream; otherwise the
/// refusal is recorded.
async fn open_stream(
    ctx: &Ctx,
    s: &mut Session,
    rec: &mut Recorder,
    due: Instant,
    req: hyper::Request<http_body_util::Full<Bytes>>,
) -> Option<SseReader> {
    let resp = match s.send(req).await {
        Ok(r) => r,
        Err(t) => {
            ctx.sync(rec);
            rec.transport_error(&ctx.live, t.kind());
            rec.gave_up(due, Instant::now(), true);
            return None;
        }
    };
    let status = resp.status().as_u16();
    let is_sse = bindu_engine::sse::is_event_stream(resp.headers());
    if status == 200 && is_sse {
        return Some(SseReader::new(resp.into_body(), s.timeout()));
    }
    use http_body_util::BodyExt;
    let body = tokio::time::timeout(s.timeout(), resp.into_body().collect()).await;
    ctx.sync(rec);
    match body {
        Ok(Ok(b)) => {
            let bytes = b.to_bytes();
            refused(
                ctx,
                rec,
                status,
                rpc::parse_as(ctx.factory.wire(), &bytes).as_ref(),
            );
        }
        Ok(Err(_)) | Err(_) => {
            s.reset();
            rec.transport_error(&ctx.live, "http");
        }
    }
    rec.gave_up(due, Instant::now(), true);
    None
}

/// `tasks/resubscribe` on an accepted task, to its final event. A task that finished before
/// the stream opened is refused by the server (A2A: -32004, as the stream's one event); it is
/// then read with `tasks/get`.
async fn resubscribe(
    ctx: &Ctx,
    s: &mut Session,
    rec: &mut Recorder,
    due: Instant,
    accepted: Instant,
    task_id: &str,
) {
    let n = ctx.next_id();
    let req = ctx.factory.post(ctx.bodies.resubscribe(n, task_id), true);
    let resp = match s.send(req).await {
        Ok(r) => r,
        Err(t) => {
            ctx.sync(rec);
            rec.transport_error(&ctx.live, t.kind());
            rec.gave_up(due, Instant::now(), false);
            return;
        }
    };
    let status = resp.status().as_u16();
    let is_sse = bindu_engine::sse::is_event_stream(resp.headers());
    let body = if status == 200 && is_sse {
        let mut reader = SseReader::new(resp.into_body(), s.timeout());
        // A refusal comes as the stream's one event (a JSON-RPC error); anything else is
        // the task, and the stream is followed from it.
        match reader.next_data().await {
            Ok(Some(data))
                if rpc::parse_as(ctx.factory.wire(), &data).is_some_and(|a| a.error.is_some()) =>
            {
                if !matches!(reader.next_data().await, Ok(None)) {
                    s.reset();
                }
                bytes::Bytes::from(data)
            }
            Ok(Some(data)) => {
                reader.unread(data);
                return follow(ctx, s, rec, due, Some(accepted), reader).await;
            }
            other => {
                s.reset();
                ctx.sync(rec);
                let kind = match &other {
                    Err(t) => t.kind(),
                    _ => "stream ended before the final event",
                };
                rec.transport_error(&ctx.live, kind);
                rec.gave_up(due, Instant::now(), false);
                return;
            }
        }
    } else {
        use http_body_util::BodyExt;
        match tokio::time::timeout(s.timeout(), resp.into_body().collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            _ => {
                s.reset();
                ctx.sync(rec);
                rec.transport_error(&ctx.live, "http");
                rec.gave_up(due, Instant::now(), false);
                return;
            }
        }
    };
    let answer = rpc::parse_as(ctx.factory.wire(), &body);
    if answer.as_ref().is_some_and(|a| a.error.is_some()) {
        // Finished already? Then the refusal is the protocol's answer, not an error.
        let n = ctx.next_id();
        let got = s.call(ctx.factory.get_task(&ctx.bodies, n, task_id)).await;
        let at = Instant::now();
        ctx.sync(rec);
        if let Ok((200, b)) = &got {
            if let Some(Seen::Done { state }) = rpc::parse_as(ctx.factory.wire(), b)
                .and_then(|a| a.result)
                .map(|item| item.seen())
            {
                rec.finished_before_resubscribe += 1;
                rec.finished(
                    &ctx.live,
                    &state,
                    Observed::Directly,
                    due,
                    Some(accepted),
                    at,
                );
                return;
            }
        }
    }
    ctx.sync(rec);
    refused(ctx, rec, status, answer.as_ref());
    rec.gave_up(due, Instant::now(), false);
}

/// Polls `tasks/get` for accepted tasks until each is seen finished, the queue is empty after
/// the load ended, or the drain deadline passes.
pub async fn poller(ctx: &Ctx, mut s: Session) -> Recorder {
    let mut rec = Recorder::default();
    loop {
        if ctx.hard_stop.is_cancelled() {
            break;
        }
        let Some(mut p) = ctx.pending_queue.lock().pop_front() else {
            if ctx.load_done() {
                break;
            }
            tokio::select! {
                _ = ctx.pending_ready.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
                _ = ctx.hard_stop.cancelled() => break,
            }
            continue;
        };
        if p.next_poll > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(p.next_poll.into()) => {}
                _ = ctx.hard_stop.cancelled() => {
                    ctx.pending_queue.lock().push_front(p);
                    break;
                }
            }
        }
        let n = ctx.next_id();
        let got = s
            .call(ctx.factory.get_task(&ctx.bodies, n, &p.task_id))
            .await;
        let at = Instant::now();
        ctx.sync(&mut rec);
        match got {
            Err(t) => {
                rec.transport_error(&ctx.live, t.kind());
                p.backoff(at, ctx.opts.poll_interval);
                ctx.pending_queue.lock().push_back(p);
            }
            Ok((status, body)) => {
                let answer = rpc::parse_as(ctx.factory.wire(), &body);
                match answer.as_ref().and_then(|a| a.result.as_ref()) {
                    Some(item) if (200..300).contains(&status) => match item.seen() {
                        Seen::Done { state } => {
                            let how = Observed::ByPoll;
                            rec.finished(&ctx.live, &state, how, p.due, Some(p.accepted), at);
                            ctx.live.pending.fetch_sub(1, Relaxed);
                        }
                        _ => {
                            p.backoff(at, ctx.opts.poll_interval);
                            ctx.pending_queue.lock().push_back(p);
                        }
                    },
                    _ => {
                        // The task can no longer be followed: count why and give up on it.
                        refused(ctx, &mut rec, status, answer.as_ref());
                        rec.gave_up(p.due, at, false);
                        ctx.live.pending.fetch_sub(1, Relaxed);
                    }
                }
            }
        }
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_rotate_in_proportion() {
        let m = Mix::parse("send=2, stream=1").expect("mix");
        let picks: Vec<Scenario> = (0..6).map(|n| m.pick(n)).collect();
        assert_eq!(picks.iter().filter(|s| **s == Scenario::Send).count(), 4);
        assert_eq!(picks.iter().filter(|s| **s == Scenario::Stream).count(), 2);
        assert_eq!(m.pick(0), Scenario::Send);
        assert_eq!(m.pick(1), Scenario::Stream);
        assert!(Mix::parse("send=0").is_err());
        assert!(Mix::parse("soak=1").is_err());
        assert!(Mix::parse("send").is_err());
        assert!(Mix::parse("send=-1").is_err());
    }
}
