//! T2: a priced agent on Postgres whose payment cannot be recorded with its task (the
//! database refuses the row): the paid message is refused with -32603 saying so, nothing
//! is settled, and the payment's nonce is given back, so the same payment pays once the
//! database takes it again.

use bindu_engine::store::postgres::test_db::TestDb;
use serde_json::json;

use crate::payments::Priced;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_that_cannot_be_recorded_is_refused_and_its_nonce_given_back() {
    let db = TestDb::new().await;
    let p = Priced::configured(
        &[
            ("storage.type", "postgres"),
            ("storage.database_url", db.url.as_str()),
        ],
        |c| c.agent.execution_cost = vec![bindu::PriceOption::usdc("$0.01")],
        std::sync::Arc::new(bindu::EchoHandler::default()),
    )
    .await;
    // The database refuses every new payment row (the agent migrated it at start-up).
    let pool = db.store("refusing").await.pool_handle().clone();
    for sql in [
        "CREATE FUNCTION bindu_test_refuse() RETURNS trigger AS $$ \
         BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER bindu_test_refuse BEFORE INSERT ON bindu_payments \
         FOR EACH ROW EXECUTE FUNCTION bindu_test_refuse()",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let payment = p.pay();
    let (status, _, body) = p.send_paid("payment-signature", payment.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["error"]["code"], -32603, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("payment could not be recorded"),
        "{message}"
    );
    assert!(
        !message.contains("refused by the test"),
        "no database text: {message}"
    );
    assert_eq!(p.fac.settles.load(std::sync::atomic::Ordering::SeqCst), 0);
    let tasks = p.srv.rpc_ok("tasks/list", json!({})).await;
    assert_eq!(tasks["tasks"], json!([]), "no task was accepted");

    // The database takes payments again: the same payment is not a replay, and pays.
    sqlx::query("DROP TRIGGER bindu_test_refuse ON bindu_payments")
        .execute(&pool)
        .await
        .unwrap();
    let (status, headers, body) = p.send_paid("payment-signature", payment).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["status"]["state"], "completed", "{body}");
    assert!(headers.get("payment-response").is_some());
    assert_eq!(p.fac.settled_count(), 1);
}
