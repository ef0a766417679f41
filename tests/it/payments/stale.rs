//! Payments left `settling` (the worker died mid-settlement and its command never came back,
//! its command ran out of deliveries, or a reconciler died holding its claim): once
//! `X402__SETTLING_LEASE` has passed, the reconciliation asks the facilitator's `/verify`
//! whether the payment landed, and resolves it without ever settling it anew.

use std::collections::HashSet;

use bindu::engine::bus::memory::MemoryBus;
use bindu::engine::store::{MemoryPayments, MemoryStore, PaymentState, PaymentStore};
use bindu::engine::x402::{HttpFacilitator, SettleMode};
use bindu_schemas::x402::PaymentCommand;
use bindu_workers::payments::reconcile::{Reconciler, Resolution};
use bindu_workers::payments::Settlement;

use super::*;

/// A verified payment of 0.01 USDC on base-sepolia, signed by the test payer.
fn verified_payment() -> PaymentCommand {
    let config = bindu::engine::x402::X402Config {
        pay_to: Some(PAY_TO.into()),
        ..Default::default()
    };
    let requirements = bindu::engine::x402::Pricing::new(&[PriceOption::usdc("0.01")], &config)
        .unwrap()
        .unwrap()
        .accepts
        .remove(0);
    let n = nonce();
    let valid_before = now() + 300;
    let req = serde_json::to_value(&requirements).unwrap();
    PaymentCommand {
        payload: payload(&payer(), &req, valid_before, n),
        requirements,
        payer: hex0x(&bindu::engine::x402::verify::address_of(
            payer().verifying_key(),
        )),
        nonce: hex0x(&n),
        valid_before,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_left_unanswered_is_resolved_after_its_lease_without_settling_again() {
    let (url, fac) = fake_facilitator::start().await.unwrap();
    let payments = Arc::new(MemoryPayments::default());
    let settlement = Settlement {
        facilitator: Arc::new(HttpFacilitator::new(&url, Duration::from_secs(5)).unwrap()),
        mode: SettleMode::After,
        timeout: Duration::from_secs(5),
        settling_lease: Duration::from_secs(1),
        metrics: Default::default(),
        payments: payments.clone(),
    };
    let reconciler = Reconciler::new(
        settlement,
        Arc::new(MemoryStore::default()),
        Arc::new(MemoryBus::new(16)),
    );
    // Two settlements begun by workers that died before recording an answer: one landed
    // at the facilitator, one did not. Neither task delivered (they are gone).
    let (landed, lost) = (verified_payment(), verified_payment());
    payments.begin_settle("t-landed", &landed).await.unwrap();
    payments.begin_settle("t-lost", &lost).await.unwrap();
    fac.settled.lock().unwrap().insert(landed.nonce.clone());

    // Within their lease they are left alone (their workers may still answer).
    assert!(reconciler.pass().await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let done = reconciler.pass().await.unwrap();
    assert_eq!(done.len(), 2, "{done:?}");
    for r in &done {
        match r.task_id.as_str() {
            "t-landed" => assert_eq!(r.resolution, Resolution::Settled),
            "t-lost" => assert!(
                matches!(&r.resolution, Resolution::Refused(why) if why.contains("UNDELIVERED")),
                "{r:?}"
            ),
            other => panic!("unexpected task {other}"),
        }
    }
    let state = |task: &'static str, nonce: String| {
        let payments = payments.clone();
        async move { payments.get(task, &nonce).await.unwrap().unwrap() }
    };
    let settled = state("t-landed", landed.nonce.clone()).await;
    assert_eq!(settled.state, PaymentState::Settled);
    assert_eq!(settled.receipt.unwrap().amount.as_deref(), Some("10000"));
    let unpaid = state("t-lost", lost.nonce.clone()).await;
    assert_eq!(
        (unpaid.state, unpaid.error.as_deref()),
        (PaymentState::Unpaid, Some("UNDELIVERED"))
    );
    // Asked with /verify only: nothing was settled, and the lost one never will be.
    assert_eq!(fac.settles.load(Ordering::SeqCst), 0);
    assert_eq!(
        *fac.settled.lock().unwrap(),
        HashSet::from([landed.nonce.clone()])
    );
    assert!(reconciler.pass().await.unwrap().is_empty(), "resolved once");
}
