//! Steps the T2 bus suites share: the next item of a stream in time, and a stream that stays
//! quiet.

use std::fmt::Debug;
use std::time::Duration;

use futures::{Stream, StreamExt};

/// How long a test waits for what must come.
pub const WAIT: Duration = Duration::from_secs(15);

/// The next item of `stream` within [`WAIT`]; panics with `what` if none comes in time,
/// and if the stream ended or the item is an error.
pub async fn next_ok<S, T, E>(stream: &mut S, what: &str) -> T
where
    S: Stream<Item = Result<T, E>> + Unpin,
    E: Debug,
{
    next_open(stream, what).await.expect("ok")
}

/// The next item of `stream` within [`WAIT`]; panics with `what` if none comes in time, and
/// if the stream ended.
pub async fn next_open<S: Stream + Unpin>(stream: &mut S, what: &str) -> S::Item {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect(what)
        .expect("open")
}

/// Whether `stream` yields nothing (and does not end) for `quiet`.
pub async fn stays_quiet<S: Stream + Unpin>(stream: &mut S, quiet: Duration) -> bool {
    tokio::time::timeout(quiet, stream.next()).await.is_err()
}

/// Takes the next exhausted command of `exhausted` (panicking with `what` if none comes in
/// time), checks it is `task_id`'s after `deliveries` deliveries, and dead-letters it.
pub async fn dead_letter_next(
    bus: &dyn bindu_engine::bus::Bus,
    exhausted: &mut bindu_engine::bus::ExhaustedStream,
    what: &str,
    task_id: &str,
    deliveries: u64,
) {
    let gone = next_open(exhausted, what).await;
    assert_eq!(gone.command.task_id, task_id);
    assert_eq!(gone.deliveries, deliveries);
    bus.dead_letter(&gone).await.expect("dead letter");
}
