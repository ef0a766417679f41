//! CPU-heavy work on an async runtime: signing hundreds of parts or parsing megabytes of
//! JSON must not stall the other tasks of the worker thread it runs on.

/// Runs `f`; when `heavy` and the runtime has several worker threads, through
/// [`tokio::task::block_in_place`], so the thread's other tasks move to another thread while
/// `f` runs. On a current-thread runtime (and outside any runtime) `f` just runs: there is no
/// other thread to hand the tasks to.
pub fn heavy<R>(heavy: bool, f: impl FnOnce() -> R) -> R {
    if heavy {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                return tokio::task::block_in_place(f);
            }
        }
    }
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn heavy_work_runs_on_a_multi_thread_runtime() {
        assert_eq!(heavy(true, || 2 + 2), 4);
    }

    #[tokio::test]
    async fn heavy_work_runs_inline_on_a_current_thread_runtime() {
        assert_eq!(heavy(true, || 2 + 2), 4);
        assert_eq!(heavy(false, || 1), 1);
    }
}
