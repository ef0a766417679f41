//! The worker pool's Prometheus metrics: handler slots (utilization = busy / total), runs
//! by outcome and their duration, redeliveries and dead letters. The label handles are
//! created once, so recording is a few atomic operations.

use std::future::Future;
use std::time::Instant;

use bindu_schemas::TaskState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub const SLOTS: &str = "bindu_worker_slots";
pub const SLOTS_BUSY: &str = "bindu_worker_slots_busy";
pub const RUNS: &str = "bindu_worker_runs";
pub const TASK_DURATION: &str = "bindu_task_duration_seconds";
pub const REDELIVERIES: &str = "bindu_worker_redeliveries";
pub const DEAD_LETTERS: &str = "bindu_worker_dead_letters";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

type Durations = Family<StateLabels, Histogram, fn() -> Histogram>;

/// Cheap to clone: every field is a shared handle.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// Handlers the pool may run at once (`BINDU_WORKER_CONCURRENCY`).
    pub slots: Gauge,
    /// Handler slots in use: commands taken and not finished.
    pub busy: Gauge,
    runs: Family<StateLabels, Counter>,
    durations: Durations,
    /// Commands delivered again (their earlier delivery was not acknowledged in time).
    pub redeliveries: Counter,
    /// Commands that used up their deliveries: their task failed, the command dead-lettered.
    pub dead_letters: Counter,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        fn histogram() -> Histogram {
            Histogram::new(exponential_buckets(0.001, 2.0, 20))
        }
        WorkerMetrics {
            slots: Gauge::default(),
            busy: Gauge::default(),
            runs: Family::default(),
            durations: Family::new_with_constructor(histogram),
            redeliveries: Counter::default(),
            dead_letters: Counter::default(),
        }
    }
}

/// A handler slot in use; freed when dropped.
pub(super) struct Busy(Gauge);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.dec();
    }
}

tokio::task_local! {
    /// When the current command's run began (for the run's duration).
    static STARTED: Instant;
}

/// Runs `run` (one command) with its start time (now) known to [`WorkerMetrics::finished`].
/// Not an `async fn`: that would keep `run` twice in its state, as its argument and inside
/// the scope it awaits (a run's future is several KiB, moved whole into each task).
pub(super) fn timed<F: Future>(run: F) -> impl Future<Output = F::Output> {
    STARTED.scope(Instant::now(), run)
}

impl WorkerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            SLOTS,
            "Handler slots of the worker pool (BINDU_WORKER_CONCURRENCY)",
            self.slots.clone(),
        );
        registry.register(
            SLOTS_BUSY,
            "Handler slots in use (utilization: busy / slots)",
            self.busy.clone(),
        );
        registry.register(
            RUNS,
            "Handler runs recorded, by the state they left the task in",
            self.runs.clone(),
        );
        registry.register(
            TASK_DURATION,
            "Time from taking a command to recording its run's outcome, by that state",
            self.durations.clone(),
        );
        registry.register(
            REDELIVERIES,
            "Commands delivered again because an earlier delivery was not acknowledged in time",
            self.redeliveries.clone(),
        );
        registry.register(
            DEAD_LETTERS,
            "Commands that used up their deliveries (NATS__MAX_DELIVER): task failed, command dead-lettered",
            self.dead_letters.clone(),
        );
    }

    /// A command taken from the bus (its `attempt`th delivery); holds a slot until dropped.
    pub(super) fn taken(&self, attempt: u64) -> Busy {
        if attempt > 1 {
            self.redeliveries.inc();
        }
        self.busy.inc();
        Busy(self.busy.clone())
    }

    /// A run's outcome was recorded in `state`.
    pub(super) fn finished(&self, state: TaskState) {
        let labels = StateLabels {
            state: state.as_str(),
        };
        self.runs.get_or_create(&labels).inc();
        if let Ok(took) = STARTED.try_with(Instant::elapsed) {
            self.durations
                .get_or_create(&labels)
                .observe(took.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timing_a_run_keeps_one_copy_of_it() {
        // A run's future is several KiB and is moved whole into its task: the timing wrapper
        // must hold it once, not once as an argument and again in what it awaits.
        let run = async {
            let buf = [7u8; 4096];
            tokio::task::yield_now().await;
            buf.iter().map(|b| u32::from(*b)).sum::<u32>()
        };
        let alone = std::mem::size_of_val(&run);
        let timed = timed(run);
        assert!(
            std::mem::size_of_val(&timed) < alone + 256,
            "{} bytes around a {alone}-byte run",
            std::mem::size_of_val(&timed)
        );
        assert_eq!(timed.await, 7 * 4096);
    }
}
