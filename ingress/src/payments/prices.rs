//! What a task costs: the agent's price (`agent.execution_cost`) and the skills' own
//! (`execution_cost` of a skill), as `accepts[]` entries.
//!
//! | the message targets (`message.metadata.skillId`, or its negotiation's skill) | it costs |
//! |---|---|
//! | a skill with its own `execution_cost` (options) | that skill's options |
//! | a skill with `execution_cost = []` | nothing (free, even on a priced agent) |
//! | a skill without `execution_cost`, no skill, or an id the caller cannot use | the agent's price (free when it has none) |
//!
//! An id the caller cannot use is then refused (-32030) once paid for, as before skills
//! had prices; its payment is not settled and its nonce is given back.

use std::collections::BTreeMap;

use bindu_engine::x402::{PriceOption, Pricing, X402Config};
use bindu_schemas::x402::PaymentRequirements;

use crate::skills::Skills;

/// The agent's price and its skills' own. Empty lists are free.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    /// `agent.execution_cost` (empty: the agent is free).
    pub agent: Vec<PaymentRequirements>,
    /// Skills with an `execution_cost` of their own (empty: free), by id.
    pub skills: BTreeMap<String, Vec<PaymentRequirements>>,
}

impl Prices {
    /// The prices `agent` (the agent's options) and each skill of `skills` make under
    /// `config`. The error names the skill and the option at fault.
    pub fn new(
        agent: &[PriceOption],
        skills: &Skills,
        config: &X402Config,
    ) -> Result<Prices, String> {
        let agent = Pricing::new(agent, config)?.map_or_else(Vec::new, |p| p.accepts);
        let mut out = Prices {
            agent,
            skills: BTreeMap::new(),
        };
        for s in skills.public().iter().chain(skills.private()) {
            let Some(options) = &s.skill.execution_cost else {
                continue;
            };
            let accepts = Pricing::new(options, config)
                .map_err(|e| format!("skill {:?} ({}): execution_cost: {e}", s.skill.id, s.origin))?
                .map_or_else(Vec::new, |p| p.accepts);
            out.skills.insert(s.skill.id.clone(), accepts);
        }
        Ok(out)
    }

    /// Whether any task may cost something (the agent or one of its skills is priced).
    pub fn priced(&self) -> bool {
        !self.agent.is_empty() || self.skills.values().any(|a| !a.is_empty())
    }

    /// What a message targeting `skill` (a skill the caller may use, or none) costs; empty:
    /// nothing.
    pub fn of(&self, skill: Option<&str>) -> &[PaymentRequirements] {
        skill
            .and_then(|s| self.skills.get(s))
            .unwrap_or(&self.agent)
    }

    /// The skills among `ids` with a price of their own, for the card's x402 extension:
    /// id → `{"accepts": [...]}` (`[]`: free).
    pub fn card_skills<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
    ) -> serde_json::Map<String, serde_json::Value> {
        ids.filter_map(|id| {
            self.skills
                .get(id)
                .map(|a| (id.to_string(), serde_json::json!({ "accepts": a })))
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::skills::{LoadedSkill, Skill};

    fn loaded(skill: Skill) -> LoadedSkill {
        let mut skill = skill;
        skill.check().unwrap();
        LoadedSkill {
            origin: format!("test {}", skill.id),
            skill,
            documentation: None,
            markdown: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn a_skill_price_replaces_the_agents_and_may_be_free() {
        let config = X402Config {
            pay_to: Some("0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into()),
            ..X402Config::default()
        };
        let skills = Skills::from_loaded(
            vec![
                loaded(Skill::new("dear", "dear", "d").execution_cost(vec![
                    PriceOption::usdc("$0.50"),
                    PriceOption::usdc("0.5").on("base"),
                ])),
                loaded(Skill::new("gift", "gift", "d").free()),
                loaded(Skill::new("plain", "plain", "d")),
            ],
            vec![],
            vec![],
        )
        .unwrap();
        let p = Prices::new(&[PriceOption::usdc("0.01")], &skills, &config).unwrap();
        assert!(p.priced());
        assert_eq!(p.of(None)[0].amount, "10000");
        assert_eq!(p.of(Some("plain"))[0].amount, "10000");
        assert_eq!(p.of(Some("unknown"))[0].amount, "10000");
        let dear = p.of(Some("dear"));
        assert_eq!(dear.len(), 2);
        assert_eq!(
            (dear[0].amount.as_str(), dear[1].network.as_str()),
            ("500000", "eip155:8453")
        );
        assert!(p.of(Some("gift")).is_empty());
        let card = p.card_skills(["dear", "gift", "plain"].into_iter());
        assert_eq!(card.len(), 2);
        assert_eq!(card["gift"]["accepts"], serde_json::json!([]));

        // A free agent with one priced skill is priced.
        let p = Prices::new(&[], &skills, &config).unwrap();
        assert!(p.priced());
        assert!(p.of(None).is_empty());

        // A bad skill price names the skill.
        let bad = Skills::from_loaded(
            vec![loaded(
                Skill::new("bad", "bad", "d").execution_cost(vec![PriceOption::usdc("0")]),
            )],
            vec![],
            vec![],
        )
        .unwrap();
        let e = Prices::new(&[], &bad, &config).unwrap_err();
        assert!(e.contains("\"bad\"") && e.contains("option 1"), "{e}");
    }
}
