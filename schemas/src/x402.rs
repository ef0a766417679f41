//! x402 v2 wire objects (the payment protocol of priced agents), camelCase as the spec and
//! facilitators write them. Unknown fields are kept (`rest`) so a payload is handed to the
//! facilitator exactly as the client signed it.
//!
//! | object | where |
//! |---|---|
//! | [`PaymentRequired`] | the HTTP 402 body and the `PAYMENT-REQUIRED` header (base64) |
//! | [`PaymentRequirements`] | one `accepts[]` entry: a way to pay |
//! | [`PaymentPayload`] | `PAYMENT-SIGNATURE` / `X-PAYMENT` header (base64) |
//! | [`VerifyResponse`], [`SettleResponse`], [`SupportedResponse`] | the facilitator's answers |
//! | [`PaymentCommand`] | a verified payment riding on a task's command |
//!
//! Task metadata keys (the a2a-x402 extension's names, in Bindu's `task.metadata`):
//! [`meta`].

use serde::{Deserialize, Serialize};

use crate::a2a::Metadata;

/// The version this engine speaks.
pub const X402_VERSION: u64 = 2;

/// The a2a-x402 extension URI (v0.1, what Bindu and the x402 A2A transport use).
pub const EXTENSION_URI: &str = "https://github.com/google-a2a/a2a-x402/v0.1";

/// Task metadata keys.
pub mod meta {
    /// `payment-required | payment-submitted | payment-verified | payment-completed |
    /// payment-failed | payment-orphaned`.
    pub const STATUS: &str = "x402.payment.status";
    pub const REQUIRED: &str = "x402.payment.required";
    pub const PAYLOAD: &str = "x402.payment.payload";
    /// Settlement responses, append-only.
    pub const RECEIPTS: &str = "x402.payment.receipts";
    /// A short upper-case code (`SETTLEMENT_FAILED`, `EXPIRED_PAYMENT`…).
    pub const ERROR: &str = "x402.payment.error";
    /// Reconciliation fields of a payment whose settlement outcome is unknown (Bindu's).
    pub const NONCE: &str = "x402_nonce";
    pub const AUTHORIZATION: &str = "x402_authorization";
    pub const NETWORK: &str = "x402_network";
    /// A key clients must never set: Bindu reads a verified payment from it.
    pub const RESERVED_CONTEXT: &str = "_payment_context";

    pub const PAYMENT_REQUIRED: &str = "payment-required";
    pub const SUBMITTED: &str = "payment-submitted";
    pub const VERIFIED: &str = "payment-verified";
    pub const COMPLETED: &str = "payment-completed";
    pub const FAILED: &str = "payment-failed";
    pub const ORPHANED: &str = "payment-orphaned";
}

/// One way to pay (`accepts[]`). For the EVM `exact` scheme `extra` is the token's EIP-712
/// domain `{name, version}`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    pub scheme: String,
    /// CAIP-2, e.g. `eip155:84532`.
    pub network: String,
    /// Atomic units, decimal.
    pub amount: String,
    /// The token contract.
    pub asset: String,
    pub pay_to: String,
    pub max_timeout_seconds: u64,
    pub extra: Option<Metadata>,
}

/// What the resource is (the spec's `resource`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    pub url: String,
    pub description: Option<String>,
    pub mime_type: Option<String>,
}

/// The 402 answer.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    pub x402_version: u64,
    pub error: String,
    pub resource: Option<ResourceInfo>,
    pub accepts: Vec<PaymentRequirements>,
    /// Bindu's addition: who is asking to be paid.
    pub agent: Option<AgentInfo>,
}

/// Bindu's `agent` object of a 402 body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub name: String,
    pub description: String,
    /// The agent card's URL.
    pub agent_card: String,
    pub did: String,
}

/// The facilitator's `/verify` answer.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    pub is_valid: bool,
    pub invalid_reason: Option<String>,
    pub invalid_message: Option<String>,
    pub payer: Option<String>,
}

/// The facilitator's `/settle` answer; also the `PAYMENT-RESPONSE` header (base64) and a
/// receipt in task metadata.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    pub success: bool,
    pub error_reason: Option<String>,
    pub payer: Option<String>,
    /// The transaction hash; `""` on failure.
    #[serde(default)]
    pub transaction: String,
    pub network: String,
    pub amount: Option<String>,
}

/// One kind a facilitator supports.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    pub x402_version: u64,
    pub scheme: String,
    pub network: String,
    pub extra: Option<Metadata>,
}

/// The facilitator's `/supported` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedResponse {
    pub kinds: Vec<SupportedKind>,
    #[serde(default)]
    pub extensions: Vec<serde_json::Value>,
    #[serde(default)]
    pub signers: Metadata,
}

/// The body of `POST /verify` and `POST /settle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FacilitatorRequest {
    pub x402_version: u64,
    /// The client's payload, exactly as decoded.
    pub payment_payload: serde_json::Value,
    pub payment_requirements: PaymentRequirements,
}

/// A payment verified at the edge, travelling with the task's command to the worker that
/// settles it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCommand {
    /// The client's payload, exactly as decoded.
    pub payload: serde_json::Value,
    /// The requirement it matched (ours, not the client's echo).
    pub requirements: PaymentRequirements,
    /// `authorization.from`.
    pub payer: String,
    /// `authorization.nonce` (0x + 64 hex digits, lower case).
    pub nonce: String,
    /// `authorization.validBefore`, unix seconds: settlement must happen before it.
    pub valid_before: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn settle_responses_read_as_the_spec_writes_them() {
        let ok: SettleResponse = serde_json::from_str(
            r#"{"success":true,"transaction":"0x12","network":"eip155:84532","payer":"0x85"}"#,
        )
        .unwrap();
        assert!(ok.success);
        let failed: SettleResponse = serde_json::from_str(r#"{"success":false,"errorReason":"insufficient_funds","transaction":"","network":"eip155:84532"}"#).unwrap();
        assert_eq!(failed.error_reason.as_deref(), Some("insufficient_funds"));
        let r = PaymentRequirements {
            scheme: "exact".into(),
            network: "eip155:84532".into(),
            amount: "10000".into(),
            asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            max_timeout_seconds: 60,
            extra: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["payTo"], "0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
        assert_eq!(v["maxTimeoutSeconds"], 60);
    }
}
