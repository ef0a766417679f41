//! The behaviour every [`PaymentStore`] backend must show. Backends call [`run_all`] from
//! their tests with a factory for fresh, empty stores (enable the `testing` feature).

use std::future::Future;

use bindu_schemas::x402::{PaymentCommand, PaymentRequirements, SettleResponse};
use bindu_schemas::{Artifact, Message, Part};
use serde_json::json;

use super::{Finish, KeptChunk, KeptResult, PaymentState, PaymentStore};
use crate::store::StoreError;

/// A verified payment with nonce `0x<n repeated>`.
pub fn payment(n: char) -> PaymentCommand {
    let nonce = format!("0x{}", n.to_string().repeat(64));
    PaymentCommand {
        payload: json!({"x402Version": 2, "payload": {"authorization": {"nonce": nonce}}}),
        requirements: PaymentRequirements {
            scheme: "exact".into(),
            network: "eip155:84532".into(),
            amount: "10000".into(),
            asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            max_timeout_seconds: 600,
            extra: None,
        },
        payer: "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266".into(),
        nonce,
        valid_before: 4_000_000_000,
    }
}

pub fn receipt(success: bool) -> SettleResponse {
    SettleResponse {
        success,
        error_reason: (!success).then(|| "insufficient_funds".into()),
        payer: Some("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266".into()),
        transaction: if success {
            "0xab".into()
        } else {
            String::new()
        },
        network: "eip155:84532".into(),
        amount: Some("10000".into()),
    }
}

pub async fn run_all<S, F, Fut>(make: F)
where
    S: PaymentStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    payments_are_kept_once_per_task_and_nonce(&make().await).await;
    attempts_are_counted_and_a_settled_payment_is_never_begun_again(&make().await).await;
    orphans_are_claimed_once_with_their_kept_result(&make().await).await;
    stale_settlements_are_claimed_once_their_lease_ran_out(&make().await).await;
    an_unpaid_payment_is_never_begun(&make().await).await;
}

/// A payment recorded `unpaid` (never to be settled) is returned as it is by
/// `begin_settle`: a late delivery of its command must not settle it.
pub async fn an_unpaid_payment_is_never_begun(store: &dyn PaymentStore) {
    let p = payment('c');
    store.record("u1", &p).await.expect("record");
    store
        .finish("u1", &p.nonce, Finish::unpaid("UNDELIVERED"))
        .await
        .expect("finish");
    let begun = store.begin_settle("u1", &p).await.expect("begin");
    assert_eq!(
        (begun.state, begun.attempts, begun.error.as_deref()),
        (PaymentState::Unpaid, 0, Some("UNDELIVERED"))
    );
}

/// A payment left `settling` (its settler died) is claimed once its lease ran out, oldest
/// first, by one claimer (its lease renewed, its attempts unchanged); a fresh one is not.
pub async fn stale_settlements_are_claimed_once_their_lease_ran_out(store: &dyn PaymentStore) {
    use std::time::Duration;
    let (old, fresh) = (payment('a'), payment('b'));
    store.begin_settle("s1", &old).await.expect("begin");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    store.begin_settle("s2", &fresh).await.expect("begin");
    let lease = Duration::from_millis(1000);
    let stale = store.claim_stale(lease, 10).await.expect("claim");
    assert_eq!(stale.len(), 1, "only the one past its lease");
    assert_eq!(
        (stale[0].task_id.as_str(), stale[0].state, stale[0].attempts),
        ("s1", PaymentState::Settling, 1)
    );
    assert!(
        store
            .claim_stale(lease, 10)
            .await
            .expect("claim")
            .is_empty(),
        "its lease was renewed"
    );
    // Settled or orphaned payments are not stale, whatever their age.
    store
        .finish("s1", &old.nonce, Finish::settled(receipt(true)))
        .await
        .expect("finish");
    assert!(store
        .claim_stale(Duration::ZERO, 10)
        .await
        .expect("claim")
        .iter()
        .all(|r| r.task_id == "s2"));
}

/// A payment is kept once per task and nonce (a retried accept changes nothing); a
/// task's payments are listed newest first; lists filter by state.
pub async fn payments_are_kept_once_per_task_and_nonce(store: &dyn PaymentStore) {
    let (a, b) = (payment('a'), payment('b'));
    store.record("t1", &a).await.expect("record");
    store
        .record("t1", &a)
        .await
        .expect("a retried record succeeds");
    store.record("t1", &b).await.expect("record");
    store
        .record("t2", &a)
        .await
        .expect("same nonce, other task");
    let got = store.get("t1", &a.nonce).await.expect("get").expect("kept");
    assert_eq!(got.state, PaymentState::Verified);
    assert_eq!(got.payment, a);
    assert_eq!(got.attempts, 0);
    assert!(!got.created_at.is_empty(), "the store stamps created_at");
    let nonces: Vec<String> = store
        .for_task("t1")
        .await
        .expect("for_task")
        .into_iter()
        .map(|r| r.nonce)
        .collect();
    assert_eq!(nonces, [b.nonce.clone(), a.nonce.clone()], "newest first");
    assert!(store.get("t3", &a.nonce).await.expect("get").is_none());
    assert_eq!(store.list(None, 10).await.expect("list").len(), 3);
    assert_eq!(store.list(None, 2).await.expect("list").len(), 2, "limited");
    assert!(store
        .list(Some(PaymentState::Settled), 10)
        .await
        .expect("list")
        .is_empty());
    assert!(matches!(
        store.finish("t9", &a.nonce, Finish::unpaid("X")).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Every `begin_settle` counts an attempt (a payment its command carried but that was not
/// kept yet is kept first); once settled, the receipt stays and it is never begun again.
pub async fn attempts_are_counted_and_a_settled_payment_is_never_begun_again(
    store: &dyn PaymentStore,
) {
    let p = payment('c');
    let first = store.begin_settle("t", &p).await.expect("begin");
    assert_eq!((first.state, first.attempts), (PaymentState::Settling, 1));
    store
        .finish("t", &p.nonce, Finish::orphaned("timed out".into(), None))
        .await
        .expect("finish");
    let second = store.begin_settle("t", &p).await.expect("begin again");
    assert_eq!((second.state, second.attempts), (PaymentState::Settling, 2));
    assert_eq!(second.error.as_deref(), Some("timed out"));
    store
        .finish("t", &p.nonce, Finish::settled(receipt(true)))
        .await
        .expect("finish");
    let third = store
        .begin_settle("t", &p)
        .await
        .expect("begin a settled one");
    assert_eq!((third.state, third.attempts), (PaymentState::Settled, 2));
    assert_eq!(third.receipt, Some(receipt(true)));
    assert_eq!(third.error, None);
    let settled = store
        .list(Some(PaymentState::Settled), 10)
        .await
        .expect("list");
    assert_eq!(settled.len(), 1);
    // A refusal keeps its answer.
    let q = payment('d');
    store.begin_settle("u", &q).await.expect("begin");
    store
        .finish("u", &q.nonce, Finish::refused(receipt(false)))
        .await
        .expect("finish");
    let refused = store.get("u", &q.nonce).await.expect("get").expect("kept");
    assert_eq!(refused.state, PaymentState::Refused);
    assert_eq!(refused.receipt, Some(receipt(false)));
}

/// Orphans are claimed oldest first, each by one claimer (it comes back `settling`, its
/// attempt counted), with the result kept for the payer; a claimed one is not claimed again
/// until it is orphaned again.
pub async fn orphans_are_claimed_once_with_their_kept_result(store: &dyn PaymentStore) {
    let kept = KeptResult {
        artifacts: vec![KeptChunk {
            artifact: Artifact {
                artifact_id: "a1".into(),
                name: Some("result".into()),
                description: None,
                parts: vec![Part::text("paid work")],
                metadata: None,
                extensions: None,
            },
            append: false,
            last_chunk: true,
        }],
        history: vec![Message::agent("m1".into(), vec![Part::text("paid work")])],
        message: None,
    };
    for (task, n) in [("o1", 'e'), ("o2", 'f'), ("o3", '1')] {
        let p = payment(n);
        store.begin_settle(task, &p).await.expect("begin");
        let k = (task != "o3").then(|| kept.clone());
        store
            .finish(task, &p.nonce, Finish::orphaned("HTTP 500".into(), k))
            .await
            .expect("finish");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        store
            .list(Some(PaymentState::Orphaned), 10)
            .await
            .expect("list")
            .len(),
        3
    );
    let first = store.claim_orphans(2).await.expect("claim");
    let tasks: Vec<&str> = first.iter().map(|r| r.task_id.as_str()).collect();
    assert_eq!(tasks, ["o1", "o2"], "oldest first, limited");
    assert!(first
        .iter()
        .all(|r| r.state == PaymentState::Settling && r.attempts == 2));
    assert_eq!(first[0].kept, Some(kept.clone()), "the result is kept");
    let rest = store.claim_orphans(10).await.expect("claim");
    assert_eq!(rest.len(), 1, "claimed ones are not claimed again");
    assert_eq!(rest[0].kept, None);
    assert!(store.claim_orphans(10).await.expect("claim").is_empty());
    // Settled: the kept result is dropped (it was released to the task).
    let p = payment('e');
    store
        .finish("o1", &p.nonce, Finish::settled(receipt(true)))
        .await
        .expect("finish");
    let done = store.get("o1", &p.nonce).await.expect("get").expect("kept");
    assert_eq!(done.kept, None);
}
