//! Posting one notification to one webhook.
//!
//! One attempt ([`Sender::attempt`]): check the URL (http/https only; an IP literal against
//! the destination policy, a host name through the guarded resolver), wait for a slot of the
//! destination's concurrency cap, POST with a per-request timeout, never follow a redirect,
//! read at most [`MAX_RESPONSE_BYTES`] of the answer. Then:
//! - 2xx: delivered.
//! - 408, 429, 5xx, timeouts, connection errors: to retry, after [`Sender::retry_delay`]
//!   (exponential back-off with full jitter; a `Retry-After` header, seconds or HTTP date,
//!   is honoured up to 10 minutes).
//! - any other answer (3xx, 4xx such as 410) and refused destinations: final.
//!
//! A [`Destination`] (scheme, host and port) has its own slots, so a slow one only ever
//! occupies its own; it also counts its notifications that hold task events on the bus and
//! those parked, and knows whether it is failing (its latest answer asked for a retry). The
//! webhook queues ([`super::queue`]) decide with these when to park. [`Sender::deliver`]
//! posts with retries in place (replays of dead letters).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bindu_engine::config::PushDestinations;
use bindu_engine::identity::Identity;
use bindu_engine::retry::RetryPolicy;
use dashmap::DashMap;
use tokio::sync::{watch, Semaphore};
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
    /// Notifications of one destination that may hold their task events unacknowledged on
    /// the bus (waiting for their turn or being delivered); its further ones are parked.
    pub max_pending_per_destination: usize,
    /// Parked notifications of one destination retried by the dispatcher; past it, a
    /// notification to park becomes a dead letter at once.
    pub max_parked_per_destination: usize,
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
            max_parked_per_destination: 10_000,
            sign: true,
        }
    }
}

/// Where one notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The push config's id, or `global`.
    pub config_id: String,
    pub url: String,
    pub token: Option<String>,
    /// The config was made over A2A 1.0: its notifications are 1.0 `StreamResponse`s
    /// ([`notification::body_v10`]), not 0.3 events.
    pub v10: bool,
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

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    Ok,
    /// Not to be retried; the metrics outcome and why.
    Final(&'static str, String),
    /// To retry: why, and the receiver's `Retry-After` (uncapped).
    Retry(String, Option<Duration>),
}

/// One destination (`scheme://host:port`): its slots, its notifications, its health.
pub(crate) struct Destination {
    pub origin: String,
    slots: Semaphore,
    /// Notifications holding their task events unacknowledged on the bus.
    unacked: AtomicUsize,
    /// Notifications parked, waiting for their turn or a retry.
    parked: AtomicUsize,
    /// Whether its latest answer asked for a retry (a failure), until one does not.
    failing: watch::Sender<bool>,
}

impl Destination {
    pub fn unacked(&self) -> usize {
        self.unacked.load(Ordering::SeqCst)
    }

    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::SeqCst)
    }

    fn counter(&self, parked: bool) -> &AtomicUsize {
        if parked {
            &self.parked
        } else {
            &self.unacked
        }
    }

    pub fn is_failing(&self) -> bool {
        *self.failing.borrow()
    }

    /// Changes of [`Destination::is_failing`].
    pub fn watch_failing(&self) -> watch::Receiver<bool> {
        self.failing.subscribe()
    }

    /// Notes what an attempt says about the destination's health: a failure to retry makes
    /// it failing; any answer that is not one (a 2xx or a final 4xx) makes it healthy.
    fn answered(&self, attempt: &Attempt) {
        let failing = match attempt {
            Attempt::Retry(..) => true,
            Attempt::Ok | Attempt::Final("rejected", _) => false,
            Attempt::Final(..) => return,
        };
        self.failing
            .send_if_modified(|f| std::mem::replace(f, failing) != failing);
    }
}

/// A handle on a [`Destination`]; the last one dropped removes it from the sender's map.
#[derive(Clone)]
pub(crate) struct DestinationRef {
    map: Arc<DashMap<String, Arc<Destination>>>,
    inner: Arc<Destination>,
}

impl std::ops::Deref for DestinationRef {
    type Target = Destination;
    fn deref(&self) -> &Destination {
        &self.inner
    }
}

impl Drop for DestinationRef {
    fn drop(&mut self) {
        // The map's reference and this one: nobody else uses the destination.
        self.map
            .remove_if(&self.inner.origin, |_, d| Arc::strong_count(d) <= 2);
    }
}

impl DestinationRef {
    /// Counts one notification as holding its event on the bus while the guard lives.
    pub fn count_unacked(&self) -> Counted {
        Counted::new(self.clone(), false, None)
    }

    /// Counts one parked notification (and in `gauge`) while the guard lives.
    pub fn count_parked(&self, gauge: prometheus_client::metrics::gauge::Gauge) -> Counted {
        Counted::new(self.clone(), true, Some(gauge))
    }

    /// Like [`DestinationRef::count_parked`], but only while fewer than `cap` are parked:
    /// the check and the count are one step, so queues parking at the same time never take
    /// the destination past its cap between them.
    pub fn try_count_parked(
        &self,
        cap: usize,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Option<Counted> {
        self.parked
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()?;
        gauge.inc();
        Some(Counted {
            destination: self.clone(),
            parked: true,
            gauge: Some(gauge),
        })
    }
}

/// One notification counted in its destination's unacknowledged or parked total.
pub(crate) struct Counted {
    destination: DestinationRef,
    parked: bool,
    gauge: Option<prometheus_client::metrics::gauge::Gauge>,
}

impl Counted {
    fn new(
        destination: DestinationRef,
        parked: bool,
        gauge: Option<prometheus_client::metrics::gauge::Gauge>,
    ) -> Self {
        destination.counter(parked).fetch_add(1, Ordering::SeqCst);
        if let Some(g) = &gauge {
            g.inc();
        }
        Counted {
            destination,
            parked,
            gauge,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.destination
            .counter(self.parked)
            .fetch_sub(1, Ordering::SeqCst);
        if let Some(g) = &self.gauge {
            g.dec();
        }
    }
}

/// Posts notifications. Cheap to clone.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Policy,
    options: Arc<DeliveryOptions>,
    identity: Option<Arc<Identity>>,
    /// By `scheme://host:port`; an entry leaves when its last user does.
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

    /// Delivers `body` to `target` in place, retrying transient failures, until it is
    /// delivered, given up, or `stop` fires.
    pub async fn deliver(&self, target: &Target, body: &str, stop: &CancellationToken) -> Outcome {
        let destination = self.destination(&target.url);
        let max = self.options.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = tokio::select! {
                r = self.attempt(target, body, destination.as_deref()) => r,
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
                Attempt::Retry(error, retry_after) => (error, retry_after),
            };
            if attempt >= max {
                return Outcome::GaveUp {
                    attempts: attempt,
                    kind: "exhausted",
                    error,
                };
            }
            let delay = self.retry_delay(attempt, retry_after);
            tracing::debug!(url = %bindu_engine::redact::url_credentials(&target.url), attempt, ?delay, %error, "webhook attempt failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return Outcome::Interrupted,
            }
        }
    }

    /// The wait before retrying after failed attempt number `attempt`: the receiver's
    /// `Retry-After` (at most [`MAX_RETRY_AFTER`]), else the back-off.
    pub(crate) fn retry_delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = RetryPolicy {
            base: self.options.retry_base,
            max_delay: self.options.retry_max,
            deadline: Duration::MAX,
        };
        retry_after
            .map(|d| d.min(MAX_RETRY_AFTER))
            .unwrap_or_else(|| backoff.delay(attempt))
    }

    /// `url`'s destination (`scheme://host:port`); `None` without a host.
    pub(crate) fn destination(&self, url: &str) -> Option<DestinationRef> {
        let url = reqwest::Url::parse(url).ok()?;
        let host = url.host_str()?.to_ascii_lowercase();
        let origin = format!(
            "{}://{host}:{}",
            url.scheme(),
            url.port_or_known_default().unwrap_or(0)
        );
        let inner = self
            .destinations
            .entry(origin.clone())
            .or_insert_with(|| {
                Arc::new(Destination {
                    origin,
                    slots: Semaphore::new(self.options.per_host_concurrency.max(1)),
                    unacked: AtomicUsize::new(0),
                    parked: AtomicUsize::new(0),
                    failing: watch::Sender::new(false),
                })
            })
            .clone();
        Some(DestinationRef {
            map: self.destinations.clone(),
            inner,
        })
    }

    /// One attempt to post `body` to `target`, in a slot of its `destination` (`None`: the
    /// URL has no host, and the attempt refuses it).
    pub(crate) async fn attempt(
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
        let Ok(_slot) = destination.slots.acquire().await else {
            return Attempt::Retry("destination slots closed".into(), None);
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
        for (name, value) in bindu_engine::trace::headers() {
            request = request.header(name, value);
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
        destination.answered(&outcome);
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
