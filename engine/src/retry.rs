//! Retry with exponential back-off and full jitter, for transient failures only, and the
//! `Retry-After` header a server may send with a 429 or 503.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First delay before jitter.
    pub base: Duration,
    /// Largest delay before jitter.
    pub max_delay: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based): a random duration in
    /// `[0, min(max_delay, base * 2^(attempt-1))]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
    }

    /// Runs `op` until it succeeds, fails with a non-transient error, or the deadline passes.
    pub async fn run<T, E, F, Fut>(&self, op: F, is_transient: impl Fn(&E) -> bool) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let never = std::future::pending::<std::convert::Infallible>();
        match self.retry(op, is_transient, |_, _| {}, never).await {
            Ok(result) => result,
            Err(never) => match never {},
        }
    }

    /// Like [`RetryPolicy::run`], but every error is transient, `on_retry` sees each failure
    /// (with its 1-based number) before the wait, and `cancel` ends a wait at once: `None`
    /// then. An attempt already running is not interrupted.
    pub async fn run_cancellable<T, E, F, Fut>(
        &self,
        op: F,
        on_retry: impl FnMut(&E, u32),
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Option<Result<T, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.retry(op, |_| true, on_retry, cancel.cancelled())
            .await
            .ok()
    }

    /// The loop behind both: `Err` with `stop`'s output when it fires during a wait.
    async fn retry<T, E, F, Fut, S>(
        &self,
        mut op: F,
        is_transient: impl Fn(&E) -> bool,
        mut on_retry: impl FnMut(&E, u32),
        stop: S,
    ) -> Result<Result<T, E>, S::Output>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        S: Future,
    {
        let start = tokio::time::Instant::now();
        let mut attempt = 0;
        tokio::pin!(stop);
        loop {
            match op().await {
                Ok(v) => return Ok(Ok(v)),
                Err(e) if is_transient(&e) => {
                    attempt += 1;
                    let delay = self.delay(attempt);
                    if start.elapsed() + delay > self.deadline {
                        return Ok(Err(e));
                    }
                    on_retry(&e, attempt);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        stopped = &mut stop => return Err(stopped),
                    }
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }
}

/// A `Retry-After` value (RFC 9110): delay-seconds or an HTTP date; a date in the past
/// means now. `None` when it is neither.
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy {
            base: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            deadline: Duration::from_secs(1),
        };
        for attempt in 1..30 {
            let d = p.delay(attempt);
            let cap = Duration::from_millis(10 * (1u64 << (attempt - 1).min(16)))
                .min(Duration::from_millis(100));
            assert!(d <= cap, "attempt {attempt}: {d:?} > {cap:?}");
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_only() {
        let p = RetryPolicy {
            base: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            deadline: Duration::from_secs(5),
        };
        let calls = AtomicU32::new(0);
        let r: Result<u32, &str> = p
            .run(
                || async {
                    if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                        Err("transient")
                    } else {
                        Ok(7)
                    }
                },
                |e| *e == "transient",
            )
            .await;
        assert_eq!(r, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        let calls = AtomicU32::new(0);
        let r: Result<u32, &str> = p
            .run(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("fatal")
                },
                |e| *e == "transient",
            )
            .await;
        assert_eq!(r, Err("fatal"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a past date: now"
        );
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let d = retry_after(&soon).expect("a date");
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(retry_after("soon"), None);
        assert_eq!(retry_after("-1"), None);
    }

    #[tokio::test]
    async fn a_cancelled_wait_ends_the_retries() {
        let p = RetryPolicy {
            base: Duration::from_secs(60),
            max_delay: Duration::from_secs(60),
            deadline: Duration::MAX,
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        let calls = AtomicU32::new(0);
        let seen = AtomicU32::new(0);
        let run = p.run_cancellable(
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>("down")
            },
            |_, n| seen.store(n, Ordering::SeqCst),
            &cancel,
        );
        let canceller = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        };
        let (r, ()) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(run, canceller)
        })
        .await
        .expect("the cancel ends the wait");
        assert_eq!(r, None);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(seen.load(Ordering::SeqCst), 1);

        let fast = RetryPolicy {
            base: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            deadline: Duration::MAX,
        };
        let calls = AtomicU32::new(0);
        let r = fast
            .run_cancellable(
                || async {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0..=2 => Err("down"),
                        _ => Ok(5),
                    }
                },
                |_, _| {},
                &cancel_never(),
            )
            .await;
        assert_eq!(r, Some(Ok(5)));
    }

    fn cancel_never() -> tokio_util::sync::CancellationToken {
        tokio_util::sync::CancellationToken::new()
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline() {
        let p = RetryPolicy {
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(10),
            deadline: Duration::from_millis(50),
        };
        let r: Result<(), &str> = p.run(|| async { Err("transient") }, |_| true).await;
        assert_eq!(r, Err("transient"));
    }
}
