//! In-process payments: bounded (the oldest records that need nothing more leave first).

use std::collections::VecDeque;

use async_trait::async_trait;
use bindu_schemas::x402::PaymentCommand;
use parking_lot::Mutex;

use super::{Finish, PaymentRecord, PaymentState, PaymentStore};
use crate::store::StoreError;

/// In-process payments, oldest first, bounded.
pub struct MemoryPayments {
    records: Mutex<VecDeque<PaymentRecord>>,
    max: usize,
}

impl MemoryPayments {
    pub fn new(max: usize) -> Self {
        MemoryPayments {
            records: Mutex::new(VecDeque::new()),
            max: max.max(1),
        }
    }
}

impl Default for MemoryPayments {
    fn default() -> Self {
        Self::new(100_000)
    }
}

fn find<'a>(
    records: &'a mut VecDeque<PaymentRecord>,
    task_id: &str,
    nonce: &str,
) -> Option<&'a mut PaymentRecord> {
    records
        .iter_mut()
        .find(|r| r.task_id == task_id && r.nonce == nonce)
}

impl MemoryPayments {
    fn push(&self, records: &mut VecDeque<PaymentRecord>, mut record: PaymentRecord) {
        let now = crate::time::now_rfc3339();
        record.created_at = now.clone();
        record.updated_at = now;
        records.push_back(record);
        // Over the bound, the oldest settled-for-good records go first; a payment still to
        // be settled or reconciled is never forgotten for room.
        while records.len() > self.max {
            let Some(i) = records.iter().position(|r| {
                matches!(
                    r.state,
                    PaymentState::Settled | PaymentState::Refused | PaymentState::Unpaid
                )
            }) else {
                break;
            };
            records.remove(i);
        }
    }
}

#[async_trait]
impl PaymentStore for MemoryPayments {
    async fn record(&self, task_id: &str, payment: &PaymentCommand) -> Result<(), StoreError> {
        let mut records = self.records.lock();
        if find(&mut records, task_id, &payment.nonce).is_none() {
            self.push(&mut records, PaymentRecord::verified(task_id, payment));
        }
        Ok(())
    }

    async fn get(&self, task_id: &str, nonce: &str) -> Result<Option<PaymentRecord>, StoreError> {
        Ok(find(&mut self.records.lock(), task_id, nonce).map(|r| r.clone()))
    }

    async fn for_task(&self, task_id: &str) -> Result<Vec<PaymentRecord>, StoreError> {
        Ok(self
            .records
            .lock()
            .iter()
            .rev()
            .filter(|r| r.task_id == task_id)
            .cloned()
            .collect())
    }

    async fn begin_settle(
        &self,
        task_id: &str,
        payment: &PaymentCommand,
    ) -> Result<PaymentRecord, StoreError> {
        let mut records = self.records.lock();
        if find(&mut records, task_id, &payment.nonce).is_none() {
            self.push(&mut records, PaymentRecord::verified(task_id, payment));
        }
        let r = find(&mut records, task_id, &payment.nonce)
            .ok_or_else(|| StoreError::NotFound(task_id.to_string()))?;
        if !matches!(r.state, PaymentState::Settled | PaymentState::Unpaid) {
            r.state = PaymentState::Settling;
            r.attempts += 1;
            r.updated_at = crate::time::now_rfc3339();
        }
        Ok(r.clone())
    }

    async fn finish(&self, task_id: &str, nonce: &str, finish: Finish) -> Result<(), StoreError> {
        let mut records = self.records.lock();
        let r = find(&mut records, task_id, nonce)
            .ok_or_else(|| StoreError::NotFound(task_id.to_string()))?;
        r.state = finish.state;
        if finish.receipt.is_some() {
            r.receipt = finish.receipt;
        }
        r.error = finish.error;
        r.kept = finish.kept;
        r.updated_at = crate::time::now_rfc3339();
        Ok(())
    }

    async fn claim_orphans(&self, limit: u32) -> Result<Vec<PaymentRecord>, StoreError> {
        let mut records = self.records.lock();
        let now = crate::time::now_rfc3339();
        let mut orphans: Vec<&mut PaymentRecord> = records
            .iter_mut()
            .filter(|r| r.state == PaymentState::Orphaned)
            .collect();
        orphans.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
        Ok(orphans
            .into_iter()
            .take(limit as usize)
            .map(|r| {
                r.state = PaymentState::Settling;
                r.attempts += 1;
                r.updated_at = now.clone();
                r.clone()
            })
            .collect())
    }

    async fn claim_stale(
        &self,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let mut records = self.records.lock();
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let before = chrono::Utc::now()
            .checked_sub_signed(lease)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let now = crate::time::now_rfc3339();
        let mut stale: Vec<&mut PaymentRecord> = records
            .iter_mut()
            .filter(|r| r.state == PaymentState::Settling && r.updated_at < before)
            .collect();
        stale.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
        Ok(stale
            .into_iter()
            .take(limit as usize)
            .map(|r| {
                r.updated_at = now.clone();
                r.clone()
            })
            .collect())
    }

    async fn list(
        &self,
        state: Option<PaymentState>,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        Ok(self
            .records
            .lock()
            .iter()
            .rev()
            .filter(|r| state.is_none_or(|s| r.state == s))
            .take(limit as usize)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run_all(|| async { super::MemoryPayments::default() }).await;
    }
}
