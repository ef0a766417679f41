//! The assessment itself: pure, no I/O, prepared once per agent ([`Scorer::new`]) so one
//! answer costs a tokenisation of the task and a few set lookups per skill.
//!
//! Order (first refusal wins): no skills → input types → output types → required tools →
//! forbidden tools → (skills scored) → cost → latency → threshold.
//!
//! | subscore | how |
//! |---|---|
//! | `skill_match` | the best skill's match: keyword overlap (task words shared with the skill's keywords, tags, name and capability names, over the smaller of the two sets), blended with embedding similarity when available, plus the boosts of the specialisations the task names; a skill whose anti-pattern the task contains is ruled out |
//! | `io_compatibility` | of the requested input and output types, the share the best skill handles (1 without constraints) |
//! | `performance` | the best skill's `avg_processing_time_ms` (else the default) against `max_latency_ms` (else the default): 1 at zero, 0.5 at the limit, 0 at twice it |
//! | `load` | 1 / (1 + queue depth): commands waiting plus tasks running |
//! | `cost` | the price of the best skill (its own `execution_cost`, the cheapest option, else the agent's): 1 when free; 1 − price / budget × 0.5 within a budget; 0.5 with a price and no budget |
//!
//! The score is the weighted sum (weights normalised). Accepted when it reaches `min_score`
//! and some skill matches.

use std::collections::HashSet;

use serde::Serialize;

use crate::skills::{LoadedSkill, Skill};

/// Words too common to say anything about a task.
const STOP_WORDS: &[&str] = &[
    "an", "and", "any", "are", "as", "at", "be", "but", "by", "can", "could", "do", "does", "for",
    "from", "get", "has", "have", "how", "if", "in", "into", "is", "it", "its", "me", "my", "need",
    "of", "on", "or", "our", "please", "so", "some", "than", "that", "the", "their", "them",
    "then", "there", "these", "this", "to", "us", "want", "was", "we", "were", "will", "with",
    "would", "you", "your",
];

/// Longest word counted.
const MAX_WORD_CHARS: usize = 100;

/// Why an assessment refuses (Bindu's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    NoSkillsAdvertised,
    InputMimeUnsupported,
    OutputMimeUnsupported,
    RequiredToolMissing,
    ForbiddenToolPresent,
    CostExceedsBudget,
    LatencyExceedsConstraint,
    ScoreBelowThreshold,
}

/// The weights of the subscores, as given (normalised when used).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Weights {
    pub skill_match: f64,
    pub io_compatibility: f64,
    pub performance: f64,
    pub load: f64,
    pub cost: f64,
}

impl Default for Weights {
    /// Bindu's: 0.55, 0.20, 0.15, 0.05, 0.05.
    fn default() -> Self {
        Weights {
            skill_match: 0.55,
            io_compatibility: 0.20,
            performance: 0.15,
            load: 0.05,
            cost: 0.05,
        }
    }
}

impl Weights {
    /// Scaled to sum to 1; all zero means equal weights.
    pub fn normalized(&self) -> Weights {
        let total =
            self.skill_match + self.io_compatibility + self.performance + self.load + self.cost;
        if total <= 0.0 || !total.is_finite() {
            return Weights {
                skill_match: 0.2,
                io_compatibility: 0.2,
                performance: 0.2,
                load: 0.2,
                cost: 0.2,
            };
        }
        Weights {
            skill_match: self.skill_match / total,
            io_compatibility: self.io_compatibility / total,
            performance: self.performance / total,
            load: self.load / total,
            cost: self.cost / total,
        }
    }
}

/// What the caller asks about (validated by `request`).
#[derive(Debug, Clone, Default)]
pub struct Task {
    pub summary: String,
    pub details: Option<String>,
    /// Lowercase MIME types, without parameters.
    pub input_types: Vec<String>,
    pub output_types: Vec<String>,
    pub max_latency_ms: Option<u64>,
    pub max_cost: Option<f64>,
    pub required_tools: Vec<String>,
    pub forbidden_tools: Vec<String>,
    pub min_score: f64,
    pub weights: Weights,
}

/// What the agent knows of its state when it answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions {
    /// Commands waiting plus tasks running.
    pub queue_depth: u64,
    /// The agent's price per task; `None`: free.
    pub price: Option<f64>,
}

/// One skill's match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkillMatch {
    pub skill_id: String,
    pub skill_name: String,
    pub score: f64,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Subscores {
    pub skill_match: f64,
    pub io_compatibility: f64,
    pub performance: f64,
    pub load: f64,
    pub cost: f64,
}

/// The answer (snake_case on the wire, as Bindu's).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub accepted: bool,
    pub score: f64,
    pub confidence: f64,
    pub rejection_reason: Option<Rejection>,
    pub skill_matches: Vec<SkillMatch>,
    pub matched_tags: Vec<String>,
    pub matched_capabilities: Vec<String>,
    pub latency_estimate_ms: Option<u64>,
    pub queue_depth: Option<u64>,
    /// Empty when a hard rule refused before scoring.
    #[serde(serialize_with = "subscores_or_empty")]
    pub subscores: Option<Subscores>,
    /// Pass it as `message.metadata.negotiationId` to run the task with the best skill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negotiation_id: Option<String>,
}

fn subscores_or_empty<S: serde::Serializer>(
    v: &Option<Subscores>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => v.serialize(s),
        None => serde_json::Map::new().serialize(s),
    }
}

impl Assessment {
    fn refused(reason: Rejection, confidence: f64, queue_depth: u64) -> Assessment {
        Assessment {
            accepted: false,
            score: 0.0,
            confidence,
            rejection_reason: Some(reason),
            skill_matches: Vec::new(),
            matched_tags: Vec::new(),
            matched_capabilities: Vec::new(),
            latency_estimate_ms: None,
            queue_depth: Some(queue_depth),
            subscores: None,
            negotiation_id: None,
        }
    }

    /// The best skill's id, when the task was accepted.
    pub fn best_skill(&self) -> Option<&str> {
        self.accepted
            .then(|| self.skill_matches.first().map(|m| m.skill_id.as_str()))
            .flatten()
    }
}

/// The cheapest of price options (in tokens), as negotiation compares it with a budget;
/// `None`: free (no option). Amounts were checked at start-up, so each reads as a number.
pub fn cheapest(options: &[bindu_engine::x402::PriceOption]) -> Option<f64> {
    options
        .iter()
        .filter_map(|o| {
            o.amount
                .trim()
                .trim_start_matches('$')
                .trim()
                .parse::<f64>()
                .ok()
        })
        .reduce(f64::min)
}

/// A skill prepared for matching.
#[derive(Debug)]
struct Prepared {
    id: String,
    name: String,
    keywords: HashSet<String>,
    /// Each tag with its words.
    tags: Vec<(String, Vec<String>)>,
    capabilities: Vec<(String, Vec<String>)>,
    anti_patterns: Vec<String>,
    /// Domain, its words, boost.
    specializations: Vec<(String, Vec<String>, f64)>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    tools: HashSet<String>,
    latency_ms: Option<u64>,
    /// The skill's own price per task (the cheapest of its options; `Some(None)`: free),
    /// `None`: the agent's.
    price: Option<Option<f64>>,
}

impl Prepared {
    fn new(skill: &Skill) -> Prepared {
        let mut keywords = HashSet::new();
        let assessment = skill.assessment.clone().unwrap_or_default();
        for k in &assessment.keywords {
            keywords.extend(words(k));
        }
        let tags: Vec<(String, Vec<String>)> =
            skill.tags.iter().map(|t| (t.clone(), words(t))).collect();
        for (_, w) in &tags {
            keywords.extend(w.iter().cloned());
        }
        keywords.extend(words(&skill.name));
        let capabilities: Vec<(String, Vec<String>)> = skill
            .capabilities_detail
            .iter()
            .flat_map(|m| m.keys())
            .map(|c| (c.clone(), words(c)))
            .collect();
        for (_, w) in &capabilities {
            keywords.extend(w.iter().cloned());
        }
        Prepared {
            id: skill.id.clone(),
            name: skill.name.clone(),
            keywords,
            tags,
            capabilities,
            anti_patterns: assessment
                .anti_patterns
                .iter()
                .map(|p| p.to_lowercase())
                .collect(),
            specializations: assessment
                .specializations
                .iter()
                .map(|s| (s.domain.clone(), words(&s.domain), s.confidence_boost))
                .filter(|(_, w, _)| !w.is_empty())
                .collect(),
            inputs: skill.inputs().to_vec(),
            outputs: skill.outputs().to_vec(),
            tools: skill
                .allowed_tools
                .iter()
                .map(|t| t.to_lowercase())
                .collect(),
            latency_ms: skill
                .performance
                .as_ref()
                .and_then(|p| p.avg_processing_time_ms),
            price: skill
                .execution_cost
                .as_ref()
                .map(|options| cheapest(options)),
        }
    }

    fn accepts_any(&self, wanted: &[String]) -> bool {
        wanted
            .iter()
            .any(|w| self.inputs.iter().any(|m| mime_matches(m, w)))
    }

    fn gives_any(&self, wanted: &[String]) -> bool {
        wanted
            .iter()
            .any(|w| self.outputs.iter().any(|m| mime_matches(m, w)))
    }

    /// The share of `wanted` this skill handles on one side.
    fn share(modes: &[String], wanted: &[String]) -> f64 {
        let handled = wanted
            .iter()
            .filter(|w| modes.iter().any(|m| mime_matches(m, w)))
            .count();
        handled as f64 / wanted.len() as f64
    }

    fn io_share(&self, task: &Task) -> f64 {
        match (task.input_types.is_empty(), task.output_types.is_empty()) {
            (true, true) => 1.0,
            (false, true) => Self::share(&self.inputs, &task.input_types),
            (true, false) => Self::share(&self.outputs, &task.output_types),
            (false, false) => {
                (Self::share(&self.inputs, &task.input_types)
                    + Self::share(&self.outputs, &task.output_types))
                    / 2.0
            }
        }
    }
}

/// Whether a skill's mode handles a requested type (`*` on either side matches).
fn mime_matches(mode: &str, wanted: &str) -> bool {
    if mode == wanted || mode == "*/*" || wanted == "*/*" {
        return true;
    }
    match (mode.split_once('/'), wanted.split_once('/')) {
        (Some((mt, ms)), Some((wt, ws))) => mt == wt && (ms == "*" || ws == "*"),
        _ => false,
    }
}

/// The lowercase words of `text` (letters and digits of any script), 2 to 100 characters,
/// without stop words.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| {
            let n = w.chars().count();
            (2..=MAX_WORD_CHARS).contains(&n)
        })
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .collect()
}

/// The names (tags, capabilities) one of whose words the task has: a reason
/// (`"<label>: a, b"`) and, once each, in `all`.
fn note_matches(
    named: &[(String, Vec<String>)],
    task_words: &HashSet<String>,
    label: &str,
    reasons: &mut Vec<String>,
    all: &mut Vec<String>,
) {
    let hits: Vec<&str> = named
        .iter()
        .filter(|(_, words)| words.iter().any(|w| task_words.contains(w)))
        .map(|(name, _)| name.as_str())
        .collect();
    if hits.is_empty() {
        return;
    }
    reasons.push(format!("{label}: {}", hits.join(", ")));
    for hit in hits {
        if !all.iter().any(|a| a == hit) {
            all.push(hit.to_string());
        }
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The agent's skills, prepared for assessments.
#[derive(Debug)]
pub struct Scorer {
    skills: Vec<Prepared>,
    default_latency_ms: u64,
    /// How embedding similarity and keyword overlap blend when both are known.
    embedding_weight: f64,
    keyword_weight: f64,
}

impl Scorer {
    pub fn new<'a>(
        skills: impl IntoIterator<Item = &'a LoadedSkill>,
        default_latency_ms: u64,
        embedding_weight: f64,
        keyword_weight: f64,
    ) -> Scorer {
        let total = embedding_weight + keyword_weight;
        let (embedding_weight, keyword_weight) = if total > 0.0 {
            (embedding_weight / total, keyword_weight / total)
        } else {
            (0.5, 0.5)
        };
        Scorer {
            skills: skills
                .into_iter()
                .map(|s| Prepared::new(&s.skill))
                .collect(),
            default_latency_ms: default_latency_ms.max(1),
            embedding_weight,
            keyword_weight,
        }
    }

    /// How many skills there are (the order of `similarities` in [`Scorer::assess`]).
    pub fn len(&self) -> usize {
        self.skills.len()
    }

    pub fn is_empty(&self) -> bool {
        self.skills.is_empty()
    }

    /// Assesses `task`. `similarities`, when given, holds each skill's embedding similarity
    /// to the task (cosine, in the order the skills were given).
    pub fn assess(
        &self,
        task: &Task,
        conditions: Conditions,
        similarities: Option<&[f64]>,
    ) -> Assessment {
        let depth = conditions.queue_depth;
        if self.skills.is_empty() {
            return Assessment::refused(Rejection::NoSkillsAdvertised, 1.0, depth);
        }
        let takes_input =
            |s: &Prepared| task.input_types.is_empty() || s.accepts_any(&task.input_types);
        if !self.skills.iter().any(takes_input) {
            return Assessment::refused(Rejection::InputMimeUnsupported, 1.0, depth);
        }
        let eligible: Vec<usize> = (0..self.skills.len())
            .filter(|&i| {
                let s = &self.skills[i];
                takes_input(s) && (task.output_types.is_empty() || s.gives_any(&task.output_types))
            })
            .collect();
        if eligible.is_empty() {
            return Assessment::refused(Rejection::OutputMimeUnsupported, 1.0, depth);
        }
        if task.required_tools.iter().any(|t| {
            let t = t.to_lowercase();
            !self.skills.iter().any(|s| s.tools.contains(&t))
        }) {
            return Assessment::refused(Rejection::RequiredToolMissing, 1.0, depth);
        }
        if task.forbidden_tools.iter().any(|t| {
            let t = t.to_lowercase();
            self.skills.iter().any(|s| s.tools.contains(&t))
        }) {
            return Assessment::refused(Rejection::ForbiddenToolPresent, 1.0, depth);
        }

        // Skills, best first.
        let mut text = task.summary.to_lowercase();
        if let Some(d) = &task.details {
            text.push(' ');
            text.push_str(&d.to_lowercase());
        }
        let task_words: HashSet<String> = words(&text).into_iter().collect();
        let mut matches: Vec<(usize, SkillMatch)> = Vec::new();
        let mut matched_tags: Vec<String> = Vec::new();
        let mut matched_capabilities: Vec<String> = Vec::new();
        for &i in &eligible {
            let s = &self.skills[i];
            if s.anti_patterns.iter().any(|p| text.contains(p.as_str())) {
                continue;
            }
            let shared: Vec<&String> = s
                .keywords
                .iter()
                .filter(|k| task_words.contains(*k))
                .collect();
            let smaller = task_words.len().min(s.keywords.len());
            let keyword_score = if smaller == 0 {
                0.0
            } else {
                shared.len() as f64 / smaller as f64
            };
            let mut reasons = Vec::new();
            let similarity = similarities
                .and_then(|v| v.get(i))
                .copied()
                .filter(|x| *x > 0.0);
            let mut score = match similarity {
                Some(sim) => {
                    reasons.push(format!("semantic similarity: {sim:.2}"));
                    self.embedding_weight * sim.min(1.0) + self.keyword_weight * keyword_score
                }
                None => keyword_score,
            };
            if !shared.is_empty() {
                let mut shown: Vec<&str> = shared.iter().map(|s| s.as_str()).collect();
                shown.sort_unstable();
                shown.truncate(10);
                reasons.push(format!("keywords: {}", shown.join(", ")));
            }
            for (domain, domain_words, boost) in &s.specializations {
                if domain_words.iter().all(|w| task_words.contains(w)) {
                    score += boost;
                    reasons.push(format!("specialization: {domain} (+{boost})"));
                }
            }
            note_matches(
                &s.tags,
                &task_words,
                "tags",
                &mut reasons,
                &mut matched_tags,
            );
            note_matches(
                &s.capabilities,
                &task_words,
                "capabilities",
                &mut reasons,
                &mut matched_capabilities,
            );
            let score = round4(score.min(1.0));
            if score > 0.0 {
                matches.push((
                    i,
                    SkillMatch {
                        skill_id: s.id.clone(),
                        skill_name: s.name.clone(),
                        score,
                        reasons,
                    },
                ));
            }
        }
        // Best first; equal scores keep the skills' order.
        matches.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
        let best = matches.first().map(|(i, _)| &self.skills[*i]);
        let skill_match = matches.first().map_or(0.0, |(_, m)| m.score);

        let io = match best {
            Some(s) => s.io_share(task),
            None => eligible
                .iter()
                .map(|&i| self.skills[i].io_share(task))
                .fold(0.0, f64::max),
        };

        let price = best.and_then(|s| s.price).unwrap_or(conditions.price);
        let cost = match (price, task.max_cost) {
            (None, _) => 1.0,
            (Some(_), None) => 0.5,
            (Some(price), Some(budget)) if price > budget => {
                return Assessment::refused(Rejection::CostExceedsBudget, 0.9, depth)
            }
            (Some(_), Some(budget)) if budget <= 0.0 => 1.0,
            (Some(price), Some(budget)) => 1.0 - price / budget * 0.5,
        };

        let latency = best
            .and_then(|s| s.latency_ms)
            .unwrap_or(self.default_latency_ms);
        if let Some(max) = task.max_latency_ms {
            if latency > max.saturating_mul(2) {
                let mut refused =
                    Assessment::refused(Rejection::LatencyExceedsConstraint, 0.9, depth);
                refused.latency_estimate_ms = Some(latency);
                return refused;
            }
        }
        let baseline = task
            .max_latency_ms
            .unwrap_or(self.default_latency_ms)
            .max(1) as f64;
        let ratio = latency as f64 / baseline;
        let performance = if ratio <= 1.0 {
            1.0 - 0.5 * ratio
        } else {
            (0.5 * (2.0 - ratio)).max(0.0)
        };

        let load = 1.0 / (1.0 + depth as f64);

        let w = task.weights.normalized();
        let subscores = Subscores {
            skill_match: round4(skill_match),
            io_compatibility: round4(io),
            performance: round4(performance),
            load: round4(load),
            cost: round4(cost),
        };
        let score = round4(
            w.skill_match * skill_match
                + w.io_compatibility * io
                + w.performance * performance
                + w.load * load
                + w.cost * cost,
        );
        let mut confidence: f64 = 0.5;
        if skill_match > 0.3 {
            confidence += 0.2;
        } else if skill_match > 0.0 {
            confidence += 0.1;
        }
        if !task.input_types.is_empty() || !task.output_types.is_empty() {
            confidence += 0.1;
        }
        if task.max_latency_ms.is_some() {
            confidence += 0.1;
        }
        // The queue depth is always known (live from the bus).
        confidence += 0.1;
        let accepted = score >= task.min_score && skill_match > 0.0;
        Assessment {
            accepted,
            score,
            confidence: round4(confidence.min(1.0)),
            rejection_reason: (!accepted).then_some(Rejection::ScoreBelowThreshold),
            skill_matches: matches.into_iter().map(|(_, m)| m).collect(),
            matched_tags,
            matched_capabilities,
            latency_estimate_ms: Some(latency),
            queue_depth: Some(depth),
            subscores: Some(subscores),
            negotiation_id: None,
        }
    }
}

#[cfg(test)]
mod tests;
