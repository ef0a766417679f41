//! Posting one notification to one webhook, with retries.
//!
//! One attempt: check the URL (http/https only; an IP literal against the destination
//! policy, a host name through the guarded resolver), wait for a slot of the destination's
//! concurrency cap, POST with a per-request timeout, never follow a redirect, read at most
//! [`MAX_RESPONSE_BYTES`] of the answer. Then:
//! - 2xx: delivered.
//! - 408, 429, 5xx, timeouts, connection errors: retried with exponential back-off and full
//!   jitter (a `Retry-After` header, seconds or HTTP date, is honoured up to 10 minutes).
//! - any other answer (3xx, 4xx such as 410) and refused destinations: final.
//!
//! Destinations (scheme, host and port) are kept apart, so a slow one only ever occupies its
//! own slots: each has its own concurrency cap, and a **failing** destination (one with a
//! delivery waiting to retry) holds at most `max_pending_per_destination` deliveries; past
//! that, its further notifications become dead letters at once (outcome `overflow`, replayable
//! with `bindu webhooks replay`) instead of holding the dispatcher's in-flight events, which
//! every other destination needs. A healthy destination is never cut short, however busy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bindu_engine::config::PushDestinations;
use bindu_engine::identity::Identity;
use bindu_engine::retry::RetryPolicy;
use dashmap::DashMap;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::metrics::DispatcherMetrics;
use super::notification::{self, HEADER_TOKEN};
use super::policy::{refusal_in, GuardedResolver, Policy};

/// Most bytes of a webhook's answer that are read.
pub const MAX_RESPONSE_BYTES: usize = 4096;
/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    pub destinations: PushDestinations,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub timeout: Duration,
    /// Requests in flight to one destination (scheme, host and port).
    pub per_host_concurrency: usize,
    /// Deliveries a failing destination may hold (waiting for a slot, in an attempt or
    /// waiting to retry) before its further notifications become dead letters at once.
    pub max_pending_per_destination: usize,
    /// Sign notifications with the agent's DID key.
    pub sign: bool,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            destinations: PushDestinations {
                public: true,
                ..Default::default()
            },
            max_attempts: 8,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            per_host_concurrency: 8,
            max_pending_per_destination: 100,
            sign: true,
        }
    }
}

/// Where one notification goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The push config's id, or `global`.
    pub config_id: String,
    pub url: String,
    pub token: Option<String>,
}

/// How delivering one notification to one target ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        attempts: u32,
    },
    /// Given up: `kind` is the metrics outcome (`rejected`, `refused`, `exhausted`).
    GaveUp {
        attempts: u32,
        kind: &'static str,
        error: String,
    },
    /// Shutdown interrupted the delivery; it is neither done nor given up.
    Interrupted,
}

enum Attempt {
    Ok,
    Final(&'static str, String),
    Retry(String, Option<Duration>),
    /// The destination is failing and holds its share of deliveries already.
    Overflow(String),
}

/// One destination's slots and backlog.
struct Destination {
    slots: Semaphore,
    /// Deliveries under way: waiting for a slot, in an attempt, or waiting to retry.
    pending: AtomicUsize,
    /// Of those, the ones that failed an attempt and wait to retry.
    retrying: AtomicUsize,
}

impl Destination {
    /// Failing (a delivery waits to retry) and holding at least `max` deliveries.
    fn overflowing(&self, max: usize) -> bool {
        self.retrying.load(Ordering::SeqCst) > 0 && self.pending.load(Ordering::SeqCst) >= max
    }
}

/// Counts one delivery in a destination's `pending` (or `retrying`) while alive.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Counted(n)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How often a delivery waiting for a slot looks whether its destination overflowed.
const OVERFLOW_CHECK: Duration = Duration::from_millis(200);

/// Posts notifications. Cheap to clone.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Policy,
    options: Arc<DeliveryOptions>,
    identity: Option<Arc<Identity>>,
    /// By `scheme://host:port`; an entry leaves when its last delivery ends.
    destinations: Arc<DashMap<String, Arc<Destination>>>,
    metrics: DispatcherMetrics,
}

impl Sender {
    pub fn new(
        options: DeliveryOptions,
        identity: Option<Arc<Identity>>,
        metrics: DispatcherMetrics,
    ) -> Result<Self, reqwest::Error> {
        let policy = Policy(options.destinations);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect on our behalf to addresses we never checked.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("bindu/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Sender {
            client,
            policy,
            options: Arc::new(options),
            identity,
            destinations: Arc::new(DashMap::new()),
            metrics,
        })
    }

    pub fn options(&self) -> &DeliveryOptions {
        &self.options
    }

    /// Delivers `body` to `target`, retrying transient failures, until it is delivered,
    /// given up, or `stop` fires.
    pub async fn deliver(&self, target: &Target, body: &str, stop: &CancellationToken) -> Outcome {
        let backoff = RetryPolicy {
            base: self.options.retry_base,
            max_delay: self.options.retry_max,
            deadline: Duration::MAX,
        };
        let max = self.options.max_attempts.max(1);
        let destination = self.destination(&target.url);
        let outcome = match &destination {
            Some((origin, d)) => {
                self.deliver_to(target, body, stop, origin, d, max, &backoff)
                    .await
            }
            // Not a URL with a host: the attempt refuses it.
            None => match self.attempt(target, body, None).await {
                Attempt::Ok => Outcome::Delivered { attempts: 1 },
                Attempt::Final(kind, error) => Outcome::GaveUp {
                    attempts: 1,
                    kind,
                    error,
                },
                Attempt::Retry(error, _) | Attempt::Overflow(error) => Outcome::GaveUp {
                    attempts: 1,
                    kind: "refused",
                    error,
                },
            },
        };
        if let Some((origin, d)) = destination {
            drop(d);
            self.destinations
                .remove_if(&origin, |_, d| Arc::strong_count(d) == 1);
        }
        outcome
    }

    /// [`Sender::deliver`] to a destination, counted in its backlog.
    #[allow(clippy::too_many_arguments)]
    async fn deliver_to(
        &self,
        target: &Target,
        body: &str,
        stop: &CancellationToken,
        origin: &str,
        destination: &Destination,
        max: u32,
        backoff: &RetryPolicy,
    ) -> Outcome {
        let cap = self.options.max_pending_per_destination.max(1);
        let overflow = |attempts| {
            let n = destination.pending.load(Ordering::SeqCst);
            Outcome::GaveUp {
                attempts,
                kind: "overflow",
                error: format!(
                    "{origin} is failing and already holds {n} notifications \
                     (PUSH__MAX_PENDING_PER_DESTINATION={cap}); not attempted"
                ),
            }
        };
        if destination.overflowing(cap) {
            return overflow(0);
        }
        let _pending = Counted::new(&destination.pending);
        let mut retrying = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = tokio::select! {
                r = self.attempt(target, body, Some(destination)) => r,
                _ = stop.cancelled() => return Outcome::Interrupted,
            };
            let (error, retry_after) = match result {
                Attempt::Ok => return Outcome::Delivered { attempts: attempt },
                Attempt::Final(kind, error) => {
                    return Outcome::GaveUp {
                        attempts: attempt,
                        kind,
                        error,
                    }
                }
                Attempt::Overflow(_) => return overflow(attempt - 1),
                Attempt::Retry(error, retry_after) => (error, retry_after),
            };
            if retrying.is_none() {
                retrying = Some(Counted::new(&destination.retrying));
            }
            if attempt >= max {
                return Outcome::GaveUp {
                    attempts: attempt,
                    kind: "exhausted",
                    error,
                };
            }
            let delay = retry_after
                .map(|d| d.min(MAX_RETRY_AFTER))
                .unwrap_or_else(|| backoff.delay(attempt));
            tracing::debug!(url = %target.url, attempt, ?delay, %error, "webhook attempt failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return Outcome::Interrupted,
            }
        }
    }

    /// `url`'s destination (`scheme://host:port`) and its state; `None` without a host.
    fn destination(&self, url: &str) -> Option<(String, Arc<Destination>)> {
        let url = reqwest::Url::parse(url).ok()?;
        let host = url.host_str()?.to_ascii_lowercase();
        let origin = format!(
            "{}://{host}:{}",
            url.scheme(),
            url.port_or_known_default().unwrap_or(0)
        );
        let d = self
            .destinations
            .entry(origin.clone())
            .or_insert_with(|| {
                Arc::new(Destination {
                    slots: Semaphore::new(self.options.per_host_concurrency.max(1)),
                    pending: AtomicUsize::new(0),
                    retrying: AtomicUsize::new(0),
                })
            })
            .clone();
        Some((origin, d))
    }

    async fn attempt(
        &self,
        target: &Target,
        body: &str,
        destination: Option<&Destination>,
    ) -> Attempt {
        let url = match reqwest::Url::parse(&target.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            Ok(u) => {
                self.metrics.attempt("refused", 0.0);
                return Attempt::Final(
                    "refused",
                    format!("scheme {} is not allowed (http or https only)", u.scheme()),
                );
            }
            Err(e) => {
                self.metrics.attempt("refused", 0.0);
                return Attempt::Final("refused", format!("not a valid URL: {e}"));
            }
        };
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            self.metrics.attempt("refused", 0.0);
            return Attempt::Final("refused", "the URL has no host".into());
        };
        // IP literals never reach the resolver: check them here. (The URL parser has
        // already turned decimal, octal and hex IPv4 forms into dotted quads.)
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<std::net::IpAddr>() {
            if let Err(r) = self.policy.check(literal, ip) {
                self.metrics.attempt("refused", 0.0);
                return Attempt::Final("refused", r.to_string());
            }
        }
        let Some(destination) = destination else {
            return Attempt::Final("refused", "the URL has no host".into());
        };
        // Wait for a slot of this destination; give up waiting once it overflows.
        let cap = self.options.max_pending_per_destination.max(1);
        let _slot = loop {
            tokio::select! {
                slot = destination.slots.acquire() => match slot {
                    Ok(slot) => break slot,
                    Err(_) => return Attempt::Retry("destination slots closed".into(), None),
                },
                _ = tokio::time::sleep(OVERFLOW_CHECK) => {
                    if destination.overflowing(cap) {
                        return Attempt::Overflow(host);
                    }
                }
            }
        };
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(token) = &target.token {
            request = request
                .bearer_auth(token)
                .header(HEADER_TOKEN, token.as_str());
        }
        if self.options.sign {
            if let Some(identity) = &self.identity {
                let now = bindu_engine::time::unix_now();
                for (name, value) in notification::sign(identity, body, now) {
                    request = request.header(name, value);
                }
            }
        }
        let started = Instant::now();
        let result = request.body(body.to_string()).send().await;
        let (outcome, label) = match result {
            Ok(response) => {
                let status = response.status();
                let retry_after = retry_after(response.headers());
                drain(response).await;
                classify_status(status, retry_after)
            }
            Err(e) => classify_error(&e),
        };
        self.metrics.attempt(label, started.elapsed().as_secs_f64());
        outcome
    }
}

/// Reads and drops at most [`MAX_RESPONSE_BYTES`] of the answer.
async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while read < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            _ => break,
        }
    }
}

fn classify_status(
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
) -> (Attempt, &'static str) {
    let code = status.as_u16();
    match code {
        200..=299 => (Attempt::Ok, "2xx"),
        408 => (Attempt::Retry(format!("HTTP {code}"), None), "408"),
        429 => (Attempt::Retry(format!("HTTP {code}"), retry_after), "429"),
        500..=599 => (Attempt::Retry(format!("HTTP {code}"), retry_after), "5xx"),
        300..=399 => (
            Attempt::Final(
                "rejected",
                format!("HTTP {code}: redirects are not followed"),
            ),
            "3xx",
        ),
        _ => (Attempt::Final("rejected", format!("HTTP {code}")), "4xx"),
    }
}

fn classify_error(e: &reqwest::Error) -> (Attempt, &'static str) {
    if let Some(refused) = refusal_in(e) {
        return (Attempt::Final("refused", refused.to_string()), "refused");
    }
    if e.is_timeout() {
        return (Attempt::Retry("timeout".into(), None), "timeout");
    }
    if e.is_connect() {
        return (
            Attempt::Retry(format!("connection failed: {}", chain(e)), None),
            "connect",
        );
    }
    (
        Attempt::Retry(format!("request failed: {}", chain(e)), None),
        "error",
    )
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// A response's `Retry-After` (delay-seconds or an HTTP date), uncapped.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    bindu_engine::retry::retry_after(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let kind =
            |code: u16| match classify_status(reqwest::StatusCode::from_u16(code).unwrap(), None).0
            {
                Attempt::Ok => "ok",
                Attempt::Final(..) => "final",
                Attempt::Retry(..) => "retry",
                Attempt::Overflow(_) => "overflow",
            };
        assert_eq!(kind(200), "ok");
        assert_eq!(kind(204), "ok");
        for c in [408, 429, 500, 502, 503, 504] {
            assert_eq!(kind(c), "retry", "{c}");
        }
        for c in [301, 302, 307, 400, 401, 403, 404, 410, 422] {
            assert_eq!(kind(c), "final", "{c}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a past date: now");
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
