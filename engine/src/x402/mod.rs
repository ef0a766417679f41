//! x402 payments: priced agents are paid per task in USDC, through a facilitator, and never
//! charge for work they did not deliver.
//!
//! - [`pricing`]: the `[x402]` configuration section, the price options
//!   (`agent.execution_cost`), the networks (friendly name → CAIP-2, token, EIP-712 domain)
//!   and the `accepts[]` entries they make.
//! - [`verify`]: what is checked locally before any network call: the payment header
//!   decoded, its version, the requirement it matches, the EIP-712 digest of its
//!   `TransferWithAuthorization`, the signer recovered (secp256k1), recipient, value and
//!   validity window. Pure functions.
//! - [`facilitator`]: the [`facilitator::Facilitator`] port (`/verify`, `/settle`,
//!   `/supported`) and its HTTP client.

pub mod facilitator;
pub mod pricing;
pub mod verify;

pub use facilitator::{
    already_used, verified_used, Facilitator, FacilitatorError, HttpFacilitator,
};
pub use pricing::{Network, PaymentFlow, PriceOption, Pricing, SettleMode, X402Config};
pub use verify::{Rejection, Verified};

/// Base64 (standard alphabet, padding optional) of `bytes`, as x402 headers carry JSON.
pub fn encode_header(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
