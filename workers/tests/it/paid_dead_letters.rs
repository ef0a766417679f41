//! A paid command that runs out of deliveries never charges for the work it did not
//! deliver: its payment, verified and never settled, is recorded `unpaid` (`UNDELIVERED`)
//! and its task fails saying so.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::conformance::command_for;
use bindu_engine::bus::MemoryBus;
use bindu_engine::store::flaky::Flaky;
use bindu_engine::store::payments::conformance::payment;
use bindu_engine::store::{MemoryPayments, PaymentState, PaymentStore};
use bindu_engine::x402::{HttpFacilitator, SettleMode};
use bindu_engine::Bus;
use bindu_schemas::TaskState;
use bindu_workers::payments::Settlement;
use bindu_workers::WorkerPool;
use tokio_util::sync::CancellationToken;

use crate::support::{done_handler, pool_options, settled, submit_task};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_command_that_runs_out_of_deliveries_is_not_charged() {
    let store = Arc::new(Flaky::new());
    let bus = Arc::new(MemoryBus::new(16));
    let payments = Arc::new(MemoryPayments::default());
    // No facilitator answers here: nothing may be settled anyway.
    let settlement = Settlement {
        facilitator: Arc::new(
            HttpFacilitator::new("http://127.0.0.1:9", Duration::from_secs(1)).unwrap(),
        ),
        mode: SettleMode::After,
        timeout: Duration::from_secs(1),
        settling_lease: Duration::from_secs(300),
        metrics: Default::default(),
        payments: payments.clone(),
    };
    let stop = CancellationToken::new();
    let pool = WorkerPool::new(
        store.clone(),
        bus.clone(),
        Arc::new(done_handler()),
        pool_options(2),
    )
    .with_payments(settlement);
    let running = tokio::spawn(pool.run(stop.clone()));

    let task_id = "paid-undelivered";
    let submitted = submit_task(store.as_ref(), task_id, "paid work").await;
    let p = payment('d');
    payments.record(task_id, &p).await.unwrap();
    let mut command = command_for(&submitted);
    // The worker reads the conversation from the store, which is down for every delivery.
    command.history = None;
    command.payment = Some(p.clone());
    store.down.store(true, Ordering::SeqCst);
    bus.publish_commands(vec![command]).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = payments.get(task_id, &p.nonce).await.unwrap().unwrap();
        if r.state == PaymentState::Unpaid {
            assert_eq!(r.error.as_deref(), Some("UNDELIVERED"));
            assert_eq!(r.attempts, 0, "never settled");
            break;
        }
        assert_eq!(r.state, PaymentState::Verified, "{r:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the payment of the exhausted command is still {}",
            r.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The store back, the task fails saying nothing was charged.
    store.down.store(false, Ordering::SeqCst);
    let task = settled(store.as_ref(), task_id, Duration::from_secs(30)).await;
    assert_eq!(task.status.state, TaskState::Failed);
    let meta = task.metadata.unwrap_or_default();
    assert_eq!(meta["x402.payment.status"], "payment-failed", "{meta:?}");
    assert_eq!(meta["x402.payment.error"], "UNDELIVERED");
    stop.cancel();
    let _ = running.await;
}
