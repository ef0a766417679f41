//! What a priced agent asks for: the `[x402]` section, the price options of
//! `agent.execution_cost` and the networks they name, turned into `accepts[]` entries.
//!
//! | network (friendly name) | CAIP-2 | USDC contract | EIP-712 domain name |
//! |---|---|---|---|
//! | `base` (`base-mainnet`) | `eip155:8453` | `0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913` | `USD Coin` |
//! | `base-sepolia` | `eip155:84532` | `0x036CbD53842c5426634e7929541eC2318f3dCF7e` | `USDC` |
//! | `ethereum` (`ethereum-mainnet`) | `eip155:1` | `0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48` | `USD Coin` |
//! | `ethereum-sepolia` | `eip155:11155111` | `0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238` | `USDC` |
//! | `skale-europa` | `eip155:1187947933` | `0x85889c8c714505E0c94b30fcfcF64fE3Ac8FCb20` | `Bridged USDC (SKALE Bridge)` |
//!
//! Every domain has version `2` and 6 decimals. `X402__EXTRA_NETWORKS` adds networks (a
//! JSON object, see [`X402Config::extra_networks`]). A network may also be named by its
//! CAIP-2 id.

use std::time::Duration;

use bindu_schemas::x402::PaymentRequirements;
use serde::{Deserialize, Serialize};

use crate::config::{check, fields, http_url, none_if_blank, within, Invalid, Section};

crate::kind! {
    /// When a paid task's payment is settled (`X402__SETTLE`).
    pub enum SettleMode("settle mode") {
        /// After the handler succeeded, before its result is released (fair: no charge for
        /// failed work). A run is bounded by the authorization's expiry.
        After = "after",
        /// Before the handler runs (Bindu's order): the caller is charged even if the
        /// handler then fails; for work that may outlive the authorization.
        Before = "before",
    }
}

crate::kind! {
    /// What an unpaid call of a protected method gets (`X402__FLOW`). Either way a payment
    /// is taken from the `PAYMENT-SIGNATURE` / `X-PAYMENT` header or from the message's
    /// `x402.payment.payload` metadata (the a2a-x402 extension).
    pub enum PaymentFlow("payment flow") {
        /// HTTP 402 with the requirements (x402's HTTP transport; Bindu's behaviour).
        Http = "http",
        /// A task paused in `input-required` whose status message carries
        /// `x402.payment.required` (the a2a-x402 standalone flow); a follow-up message on
        /// it carrying `x402.payment.payload` pays and runs it.
        A2a = "a2a",
    }
}

crate::section! {
    /// `[x402]`: how a priced agent is paid. Prices themselves are `agent.execution_cost`.
    pub struct X402Config in "x402" {
        /// The facilitator that verifies and settles payments.
        pub facilitator_url: String = "https://x402.org/facilitator".into(),
            env "X402__FACILITATOR_URL";
        /// Methods that need a payment: `message/send`, `message/stream` or both.
        #[serde(with = "fields::comma_list")]
        pub protected_methods: Vec<String> = vec!["message/send".into(), "message/stream".into()],
            env "X402__PROTECTED_METHODS";
        /// `maxTimeoutSeconds` of every requirement: how long a signed authorization lasts.
        pub max_timeout_seconds: u64 = 600, env "X402__MAX_TIMEOUT_SECONDS";
        /// The address paid when a price option names none (`X402_PAY_TO`).
        pub pay_to: Option<String> = None, env "X402_PAY_TO";
        /// The network of a price option that names none.
        pub default_network: String = "base-sepolia".into(), env "X402__DEFAULT_NETWORK";
        /// More networks, as JSON: `{"<name>": {"chain_id": 1187947933, "asset": "0x…",
        /// "name": "<EIP-712 domain name>", "version": "2", "decimals": 6}}`.
        pub extra_networks: Option<String> = None, env "X402__EXTRA_NETWORKS";
        pub settle: SettleMode = SettleMode::After, env "X402__SETTLE";
        pub flow: PaymentFlow = PaymentFlow::Http, env "X402__FLOW";
        /// Longest one facilitator request may take.
        #[serde(with = "fields::secs")]
        pub facilitator_timeout: Duration = Duration::from_secs(10),
            env "X402__FACILITATOR_TIMEOUT" as "facilitator_timeout_secs";
        /// How often orphaned payments (no usable settlement answer) are asked about again;
        /// `None` (`0`): not by itself (`bindu payments reconcile` still does).
        #[serde(with = "fields::limit")]
        pub reconcile_interval: Option<Duration> = Some(Duration::from_secs(60)),
            env "X402__RECONCILE_INTERVAL";
        /// How long a settlement may stay unanswered (`settling`) before the reconciliation
        /// takes it over (its worker died, or its command ran out of deliveries): it then
        /// asks the facilitator's `/verify` whether the payment landed, and never settles
        /// it anew. Longer than `facilitator_timeout_secs` plus the time to record an answer.
        #[serde(with = "fields::secs")]
        pub settling_lease: Duration = Duration::from_secs(300),
            env "X402__SETTLING_LEASE" as "settling_lease_secs";
    }
}

/// The methods that run the handler, the only ones a price can apply to.
pub const PRICEABLE_METHODS: &[&str] = &["message/send", "message/stream"];

impl Section for X402Config {
    fn check(&mut self) -> Result<(), Invalid> {
        let mut url = Some(self.facilitator_url.clone());
        http_url(&mut url, "facilitator_url")?;
        self.facilitator_url = url.ok_or(Invalid {
            field: "facilitator_url",
            message: "must not be empty".into(),
        })?;
        for m in &self.protected_methods {
            check(
                PRICEABLE_METHODS.contains(&m.as_str()),
                "protected_methods",
                &format!(
                    "{m:?} cannot be priced: only message/send and message/stream run the handler"
                ),
            )?;
        }
        within(self.max_timeout_seconds, 10, 86_400, "max_timeout_seconds")?;
        none_if_blank(&mut self.pay_to);
        if let Some(a) = &self.pay_to {
            parse_address(a).map_err(|e| Invalid {
                field: "pay_to",
                message: e,
            })?;
        }
        self.default_network = self.default_network.trim().to_ascii_lowercase();
        none_if_blank(&mut self.extra_networks);
        let networks = self.networks().map_err(|e| Invalid {
            field: "extra_networks",
            message: e,
        })?;
        check(
            find_network(&networks, &self.default_network).is_some(),
            "default_network",
            &format!(
                "unknown network {:?}; known: {}",
                self.default_network,
                names(&networks)
            ),
        )?;
        within(
            self.facilitator_timeout.as_secs(),
            1,
            300,
            "facilitator_timeout_secs",
        )?;
        within(
            self.settling_lease.as_secs(),
            1,
            86_400,
            "settling_lease_secs",
        )
    }
}

/// One way to pay for a task (`[[agent.execution_cost]]`, Bindu's `execution_cost`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOption {
    /// `"0.01"` or `"$0.01"`, in tokens (not atomic units).
    pub amount: String,
    /// Only `USDC` (the default).
    #[serde(default = "usdc")]
    pub token: String,
    /// A network's friendly name or CAIP-2 id; default `x402.default_network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The address paid; default `x402.pay_to` (`X402_PAY_TO`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_to_address: Option<String>,
}

fn usdc() -> String {
    "USDC".into()
}

impl PriceOption {
    /// `amount` USDC on the default network, paid to `X402_PAY_TO`.
    pub fn usdc(amount: &str) -> PriceOption {
        PriceOption {
            amount: amount.into(),
            token: usdc(),
            network: None,
            pay_to_address: None,
        }
    }

    pub fn on(mut self, network: &str) -> PriceOption {
        self.network = Some(network.into());
        self
    }

    pub fn pay_to(mut self, address: &str) -> PriceOption {
        self.pay_to_address = Some(address.into());
        self
    }
}

/// A network payments can be made on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Its friendly name (`base-sepolia`).
    #[serde(skip)]
    pub name: String,
    pub chain_id: u64,
    /// The USDC contract (checksummed, as published).
    pub asset: String,
    /// The token's EIP-712 domain name and version.
    pub name_in_domain: String,
    pub version: String,
    pub decimals: u32,
}

impl Network {
    /// `eip155:<chain id>`.
    pub fn caip2(&self) -> String {
        format!("eip155:{}", self.chain_id)
    }
}

/// The built-in networks: (names, chain id, USDC contract, EIP-712 name).
const BUILT_IN: &[(&[&str], u64, &str, &str)] = &[
    (
        &["base", "base-mainnet"],
        8453,
        "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        "USD Coin",
    ),
    (
        &["base-sepolia"],
        84532,
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "USDC",
    ),
    (
        &["ethereum", "ethereum-mainnet"],
        1,
        "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
        "USD Coin",
    ),
    (
        &["ethereum-sepolia"],
        11155111,
        "0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238",
        "USDC",
    ),
    (
        &["skale-europa"],
        1187947933,
        "0x85889c8c714505E0c94b30fcfcF64fE3Ac8FCb20",
        "Bridged USDC (SKALE Bridge)",
    ),
];

/// An `X402__EXTRA_NETWORKS` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtraNetwork {
    chain_id: u64,
    asset: String,
    name: String,
    #[serde(default = "two")]
    version: String,
    #[serde(default = "six")]
    decimals: u32,
}

fn two() -> String {
    "2".into()
}

fn six() -> u32 {
    6
}

impl X402Config {
    /// The built-in networks and `extra_networks` (which may replace a built-in one).
    pub fn networks(&self) -> Result<Vec<Network>, String> {
        let mut out: Vec<Network> = Vec::new();
        for (names, chain_id, asset, domain) in BUILT_IN {
            for name in *names {
                out.push(Network {
                    name: name.to_string(),
                    chain_id: *chain_id,
                    asset: asset.to_string(),
                    name_in_domain: domain.to_string(),
                    version: "2".into(),
                    decimals: 6,
                });
            }
        }
        let Some(json) = &self.extra_networks else {
            return Ok(out);
        };
        let extra: std::collections::BTreeMap<String, ExtraNetwork> = serde_json::from_str(json)
            .map_err(|e| {
                format!("expected a JSON object {{\"<name>\": {{\"chain_id\": …, \"asset\": \"0x…\", \"name\": \"…\", \"version\": \"2\", \"decimals\": 6}}}}: {e}")
            })?;
        for (name, n) in extra {
            parse_address(&n.asset).map_err(|e| format!("network {name:?}: asset: {e}"))?;
            if n.decimals > 30 {
                return Err(format!("network {name:?}: decimals must be at most 30"));
            }
            let name = name.trim().to_ascii_lowercase();
            out.retain(|k| k.name != name);
            out.push(Network {
                name,
                chain_id: n.chain_id,
                asset: n.asset,
                name_in_domain: n.name,
                version: n.version,
                decimals: n.decimals,
            });
        }
        Ok(out)
    }
}

fn names(networks: &[Network]) -> String {
    networks
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The network `name` names: a friendly name (case-insensitive) or a CAIP-2 id.
pub fn find_network<'a>(networks: &'a [Network], name: &str) -> Option<&'a Network> {
    let name = name.trim().to_ascii_lowercase();
    networks
        .iter()
        .find(|n| n.name == name)
        .or_else(|| networks.iter().find(|n| n.caip2() == name))
}

/// `0x` and 40 hex digits (any case) as 20 bytes.
pub fn parse_address(text: &str) -> Result<[u8; 20], String> {
    let hex_part = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .ok_or_else(|| format!("{text:?} is not an address (0x and 40 hex digits)"))?;
    let mut out = [0u8; 20];
    if hex_part.len() != 40 || hex::decode_to_slice(hex_part, &mut out).is_err() {
        return Err(format!("{text:?} is not an address (0x and 40 hex digits)"));
    }
    Ok(out)
}

/// A price in tokens (`"0.01"`, `"$0.01"`, `"5"`) in atomic units of a token with
/// `decimals` decimals, exactly (no floating point). Zero, negative, more decimal places
/// than the token has, or anything else than digits and one point are refused.
pub fn parse_amount(text: &str, decimals: u32) -> Result<u128, String> {
    let t = text.trim();
    let t = t.strip_prefix('$').unwrap_or(t).trim();
    let bad = || format!("{text:?} is not an amount such as \"0.01\" or \"$0.01\"");
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if (whole.is_empty() && frac.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let frac_trimmed = frac.trim_end_matches('0');
    if frac_trimmed.len() > decimals as usize {
        return Err(format!(
            "{text:?} has more decimal places than the token's {decimals}"
        ));
    }
    let scale = 10u128
        .checked_pow(decimals)
        .ok_or_else(|| "too many decimals".to_string())?;
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let mut frac_units: u128 = 0;
    for (i, d) in frac_trimmed.bytes().enumerate() {
        let digit = u128::from(d - b'0');
        frac_units += digit * 10u128.pow(decimals - 1 - i as u32);
    }
    let total = whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(frac_units))
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if total == 0 {
        return Err(format!("{text:?} is zero: leave the price out instead"));
    }
    Ok(total)
}

/// The price of this agent: the `accepts[]` entries, in the order of the options.
#[derive(Debug, Clone, PartialEq)]
pub struct Pricing {
    pub accepts: Vec<PaymentRequirements>,
}

impl Pricing {
    /// The requirements `options` make under `config`; `None` when the agent is free (no
    /// option). The error says which option is at fault and why.
    pub fn new(options: &[PriceOption], config: &X402Config) -> Result<Option<Pricing>, String> {
        if options.is_empty() {
            return Ok(None);
        }
        let networks = config.networks()?;
        let mut accepts = Vec::with_capacity(options.len());
        for (i, o) in options.iter().enumerate() {
            let at = |e: String| format!("option {}: {e}", i + 1);
            if !o.token.trim().eq_ignore_ascii_case("USDC") {
                return Err(at(format!(
                    "token {:?} is not supported; only USDC",
                    o.token
                )));
            }
            let name = o.network.as_deref().unwrap_or(&config.default_network);
            let network = find_network(&networks, name).ok_or_else(|| {
                at(format!(
                    "unknown network {name:?}; known: {} (X402__EXTRA_NETWORKS adds more)",
                    names(&networks)
                ))
            })?;
            let amount = parse_amount(&o.amount, network.decimals).map_err(at)?;
            let pay_to = o
                .pay_to_address
                .as_deref()
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .or(config.pay_to.as_deref())
                .ok_or_else(|| at("no pay_to_address, and X402_PAY_TO is not set".into()))?;
            parse_address(pay_to).map_err(|e| at(format!("pay_to_address: {e}")))?;
            let mut extra = bindu_schemas::Metadata::new();
            extra.insert("name".into(), network.name_in_domain.clone().into());
            extra.insert("version".into(), network.version.clone().into());
            accepts.push(PaymentRequirements {
                scheme: "exact".into(),
                network: network.caip2(),
                amount: amount.to_string(),
                asset: network.asset.clone(),
                pay_to: pay_to.to_string(),
                max_timeout_seconds: config.max_timeout_seconds,
                extra: Some(extra),
            });
        }
        Ok(Some(Pricing { accepts }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn amounts_are_exact_atomic_units() {
        assert_eq!(parse_amount("0.01", 6).unwrap(), 10_000);
        assert_eq!(parse_amount("$0.01", 6).unwrap(), 10_000);
        assert_eq!(parse_amount(" $1.5 ", 6).unwrap(), 1_500_000);
        assert_eq!(parse_amount("2", 6).unwrap(), 2_000_000);
        assert_eq!(parse_amount(".000001", 6).unwrap(), 1);
        assert_eq!(parse_amount("0.100000", 6).unwrap(), 100_000);
        for bad in [
            "",
            "$",
            ".",
            "0",
            "0.0",
            "-1",
            "+1",
            "1e3",
            "0.0000001",
            "1.2.3",
            "ten",
            "1,5",
            "0x10",
        ] {
            assert!(parse_amount(bad, 6).is_err(), "{bad:?}");
        }
        assert!(parse_amount("340282366920938463463374607431768211455", 6).is_err());
    }

    #[test]
    fn networks_map_to_caip2_and_extra_ones_are_added() {
        let c = X402Config::default();
        let nets = c.networks().unwrap();
        for (name, caip) in [
            ("base", "eip155:8453"),
            ("base-mainnet", "eip155:8453"),
            ("base-sepolia", "eip155:84532"),
            ("ethereum", "eip155:1"),
            ("ethereum-sepolia", "eip155:11155111"),
            ("Base-Sepolia", "eip155:84532"),
            ("eip155:84532", "eip155:84532"),
        ] {
            assert_eq!(find_network(&nets, name).unwrap().caip2(), caip, "{name}");
        }
        assert!(find_network(&nets, "solana").is_none());
        let mut c = X402Config {
            extra_networks: Some(
                r#"{"my-chain": {"chain_id": 777, "asset": "0x1111111111111111111111111111111111111111", "name": "My USD"}}"#.into(),
            ),
            ..X402Config::default()
        };
        c.check().unwrap();
        let nets = c.networks().unwrap();
        let mine = find_network(&nets, "my-chain").unwrap();
        assert_eq!((mine.caip2().as_str(), mine.decimals), ("eip155:777", 6));
        for bad in [
            "not json",
            r#"{"x": {"chain_id": 1, "asset": "0x12", "name": "n"}}"#,
            r#"{"x": {"chain_id": 1, "asset": "0x1111111111111111111111111111111111111111"}}"#,
        ] {
            let mut c = X402Config {
                extra_networks: Some(bad.into()),
                ..X402Config::default()
            };
            assert_eq!(c.check().unwrap_err().field, "extra_networks", "{bad}");
        }
    }

    #[test]
    fn only_the_handler_methods_can_be_priced() {
        let mut c = X402Config {
            protected_methods: vec!["tasks/get".into()],
            ..X402Config::default()
        };
        assert_eq!(c.check().unwrap_err().field, "protected_methods");
        let mut c = X402Config {
            pay_to: Some("0x12".into()),
            ..X402Config::default()
        };
        assert_eq!(c.check().unwrap_err().field, "pay_to");
        let mut c = X402Config {
            default_network: "solana".into(),
            ..X402Config::default()
        };
        assert_eq!(c.check().unwrap_err().field, "default_network");
    }

    #[test]
    fn each_option_is_one_accepts_entry() {
        let config = X402Config {
            pay_to: Some("0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into()),
            ..X402Config::default()
        };
        assert_eq!(Pricing::new(&[], &config).unwrap(), None);
        let p = Pricing::new(
            &[
                PriceOption::usdc("$0.01"),
                PriceOption::usdc("0.02")
                    .on("base")
                    .pay_to("0x742d35Cc6634C0532925a3b844Bc454e4438f44e"),
            ],
            &config,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.accepts.len(), 2);
        let a = &p.accepts[0];
        assert_eq!(
            (a.network.as_str(), a.amount.as_str(), a.asset.as_str()),
            (
                "eip155:84532",
                "10000",
                "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
            )
        );
        assert_eq!(a.pay_to, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
        assert_eq!(a.extra.as_ref().unwrap()["name"], "USDC");
        let b = &p.accepts[1];
        assert_eq!(
            (b.network.as_str(), b.amount.as_str()),
            ("eip155:8453", "20000")
        );
        assert_eq!(b.extra.as_ref().unwrap()["name"], "USD Coin");
        for bad in [
            PriceOption::usdc("0.01").on("solana"),
            PriceOption {
                token: "ETH".into(),
                ..PriceOption::usdc("0.01")
            },
            PriceOption::usdc("0.0000001"),
            PriceOption::usdc("0.01").pay_to("0xServerWalletAddressHere"),
        ] {
            assert!(
                Pricing::new(std::slice::from_ref(&bad), &config).is_err(),
                "{bad:?}"
            );
        }
        let unpaid = X402Config::default();
        assert!(Pricing::new(&[PriceOption::usdc("0.01")], &unpaid)
            .unwrap_err()
            .contains("X402_PAY_TO"));
    }
}
