//! One skill as it is written (a `skill.yaml`, the front matter of a `SKILL.md`, an inline
//! TOML table or a builder call): [`Skill`], read by [`Skill::from_value`], which names the
//! field and the problem of anything it refuses.
//!
//! Required: `name`, `description`. Defaults: `id` = the name, `tags` = [],
//! `input_modes` / `output_modes` = `["text/plain"]`. Everything else is optional; the
//! free-form parts (`capabilities_detail`, `requirements`, `documentation`, the complexity
//! indicators) are kept as written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use bindu_engine::x402::PriceOption;

/// The MIME type a skill takes and gives when it names none.
pub const DEFAULT_MODE: &str = "text/plain";

/// Every key a skill may have, as written (snake_case) and in the other spellings accepted.
const KNOWN_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "version",
    "author",
    "tags",
    "input_modes",
    "inputModes",
    "output_modes",
    "outputModes",
    "examples",
    "capabilities_detail",
    "capabilitiesDetail",
    "requirements",
    "performance",
    "allowed_tools",
    "allowedTools",
    "allowed-tools",
    "documentation",
    "assessment",
    "execution_cost",
];

/// A skill: what the agent can do, for the card, `/agent/skills` and negotiation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skill {
    /// Defaults to the name (Bindu's ids carry a version suffix, e.g. `pdf-processing-v1`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub name: String,
    pub description: String,
    /// A version such as `1.0.0` (a YAML number such as `1.0` is read as its text).
    #[serde(
        default,
        deserialize_with = "text_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// MIME types the skill takes; `text/plain` when absent.
    #[serde(default, alias = "inputModes", skip_serializing_if = "Option::is_none")]
    pub input_modes: Option<Vec<String>>,
    /// MIME types the skill gives; `text/plain` when absent.
    #[serde(
        default,
        alias = "outputModes",
        skip_serializing_if = "Option::is_none"
    )]
    pub output_modes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// Capability name → free-form details (its names count as keywords in negotiation).
    #[serde(
        default,
        alias = "capabilitiesDetail",
        skip_serializing_if = "Option::is_none"
    )]
    pub capabilities_detail: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<Performance>,
    /// Tools the skill may use (negotiation's `required_tools` / `forbidden_tools`).
    #[serde(
        default,
        alias = "allowedTools",
        alias = "allowed-tools",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allowed_tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessment: Option<Assessment>,
    /// The skill's own price (x402), in the shape of `agent.execution_cost`: it replaces the
    /// agent's price for messages that target the skill (`message.metadata.skillId`); `[]`
    /// makes the skill free on a priced agent. Absent: the agent's price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_cost: Option<Vec<PriceOption>>,
}

/// What the skill costs in time and resources. Other keys are kept as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Performance {
    /// Typical time of one task: negotiation's latency estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_processing_time_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size_mb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_requests: Option<u64>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// How negotiation recognises a task for this skill.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// Words that mark a task for this skill (besides its name, tags and capabilities).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// Domains the skill is especially good at: a task naming one gets the boost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specializations: Vec<Specialization>,
    /// Phrases that rule the skill out for a task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anti_patterns: Vec<String>,
    /// Level → phrases (`simple`, `medium`, `complex`), kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complexity_indicators: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Specialization {
    pub domain: String,
    /// Added to the skill's match score (0 to 1).
    #[serde(default)]
    pub confidence_boost: f64,
}

/// What is wrong with a skill: the field (dotted path, when one is to blame) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    fn field(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field `{field}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Keys a skill does not know, top level only.
pub fn unknown_keys(value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) => map
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

impl Skill {
    /// A skill with its required fields; the rest at their defaults.
    pub fn new(id: &str, name: &str, description: &str) -> Skill {
        Skill {
            id: id.into(),
            name: name.into(),
            description: description.into(),
            version: None,
            author: None,
            tags: Vec::new(),
            input_modes: None,
            output_modes: None,
            examples: Vec::new(),
            capabilities_detail: None,
            requirements: None,
            performance: None,
            allowed_tools: Vec::new(),
            documentation: None,
            assessment: None,
            execution_cost: None,
        }
    }

    /// Reads and checks a skill from its parsed text (YAML, TOML or JSON as a JSON value);
    /// the defaults are filled in.
    pub fn from_value(value: Value) -> Result<Skill, Problem> {
        if !value.is_object() {
            return Err(Problem {
                field: None,
                message: format!(
                    "a skill is a mapping of fields (name, description, …), not {}",
                    kind_of(&value)
                ),
            });
        }
        let mut skill: Skill = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            Problem {
                // `.` is the path of the skill itself (a missing field is named in the message).
                field: (path != ".").then_some(path),
                message,
            }
        })?;
        skill.check()?;
        Ok(skill)
    }

    /// Checks the values and fills in the defaults.
    pub fn check(&mut self) -> Result<(), Problem> {
        self.name = self.name.trim().to_string();
        if self.name.is_empty() {
            return Err(Problem::field("name", "must not be empty"));
        }
        self.description = self.description.trim().to_string();
        if self.description.is_empty() {
            return Err(Problem::field("description", "must not be empty"));
        }
        self.id = self.id.trim().to_string();
        if self.id.is_empty() {
            self.id = self.name.clone();
        }
        if self.id.chars().count() > 256 || self.id.chars().any(char::is_control) {
            return Err(Problem::field(
                "id",
                "must be at most 256 characters, without control characters",
            ));
        }
        for text in [&mut self.version, &mut self.author] {
            *text = text
                .take()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty());
        }
        no_blanks("tags", &mut self.tags)?;
        no_blanks("examples", &mut self.examples)?;
        no_blanks("allowed_tools", &mut self.allowed_tools)?;
        for (field, modes) in [
            ("input_modes", &mut self.input_modes),
            ("output_modes", &mut self.output_modes),
        ] {
            let list = modes.get_or_insert_with(|| vec![DEFAULT_MODE.to_string()]);
            if list.is_empty() {
                return Err(Problem::field(
                    field,
                    "list at least one MIME type, or leave the field out (text/plain)",
                ));
            }
            for (i, mode) in list.iter_mut().enumerate() {
                *mode = mode.trim().to_ascii_lowercase();
                if !is_mime(mode) {
                    return Err(Problem::field(
                        format!("{field}[{i}]"),
                        format!("{mode:?} is not a MIME type such as text/plain or image/*"),
                    ));
                }
            }
        }
        if let Some(p) = &self.performance {
            if let Some(mb) = p.max_file_size_mb {
                if !(mb.is_finite() && mb >= 0.0) {
                    return Err(Problem::field(
                        "performance.max_file_size_mb",
                        "must be a number of megabytes, zero or more",
                    ));
                }
            }
            if p.concurrent_requests == Some(0) {
                return Err(Problem::field(
                    "performance.concurrent_requests",
                    "must be at least 1",
                ));
            }
        }
        if let Some(a) = &mut self.assessment {
            no_blanks("assessment.keywords", &mut a.keywords)?;
            no_blanks("assessment.anti_patterns", &mut a.anti_patterns)?;
            for (i, s) in a.specializations.iter_mut().enumerate() {
                s.domain = s.domain.trim().to_string();
                if s.domain.is_empty() {
                    return Err(Problem::field(
                        format!("assessment.specializations[{i}].domain"),
                        "must not be empty",
                    ));
                }
                if !(s.confidence_boost.is_finite() && (0.0..=1.0).contains(&s.confidence_boost)) {
                    return Err(Problem::field(
                        format!("assessment.specializations[{i}].confidence_boost"),
                        "must be between 0 and 1",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The MIME types the skill takes (after [`Skill::check`]).
    pub fn inputs(&self) -> &[String] {
        self.input_modes.as_deref().unwrap_or_default()
    }

    /// The MIME types the skill gives (after [`Skill::check`]).
    pub fn outputs(&self) -> &[String] {
        self.output_modes.as_deref().unwrap_or_default()
    }

    /// The skill as the A2A card lists it.
    pub fn card_entry(&self) -> bindu_schemas::AgentSkill {
        bindu_schemas::AgentSkill {
            id: self.id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            tags: self.tags.clone(),
            examples: (!self.examples.is_empty()).then(|| self.examples.clone()),
            input_modes: Some(self.inputs().to_vec()),
            output_modes: Some(self.outputs().to_vec()),
            security: None,
        }
    }

    // Builder-style setters for the library API.

    pub fn tags(mut self, tags: &[&str]) -> Skill {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    pub fn examples(mut self, examples: &[&str]) -> Skill {
        self.examples = examples.iter().map(|t| t.to_string()).collect();
        self
    }

    pub fn version(mut self, version: &str) -> Skill {
        self.version = Some(version.into());
        self
    }

    pub fn input_modes(mut self, modes: &[&str]) -> Skill {
        self.input_modes = Some(modes.iter().map(|t| t.to_string()).collect());
        self
    }

    pub fn output_modes(mut self, modes: &[&str]) -> Skill {
        self.output_modes = Some(modes.iter().map(|t| t.to_string()).collect());
        self
    }

    pub fn allowed_tools(mut self, tools: &[&str]) -> Skill {
        self.allowed_tools = tools.iter().map(|t| t.to_string()).collect();
        self
    }

    /// The skill's own price (x402): these options instead of the agent's for messages
    /// that target it; an empty list makes it free (see [`Skill::free`]).
    pub fn execution_cost(mut self, options: Vec<PriceOption>) -> Skill {
        self.execution_cost = Some(options);
        self
    }

    /// Free, even on a priced agent.
    pub fn free(self) -> Skill {
        self.execution_cost(Vec::new())
    }

    /// The typical time of one task, in milliseconds (negotiation's latency estimate).
    pub fn avg_processing_time_ms(mut self, ms: u64) -> Skill {
        self.performance
            .get_or_insert_with(Performance::default)
            .avg_processing_time_ms = Some(ms);
        self
    }

    /// Words that mark a task for this skill in negotiation.
    pub fn keywords(mut self, keywords: &[&str]) -> Skill {
        self.assessment
            .get_or_insert_with(Assessment::default)
            .keywords = keywords.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Phrases that rule the skill out in negotiation.
    pub fn anti_patterns(mut self, phrases: &[&str]) -> Skill {
        self.assessment
            .get_or_insert_with(Assessment::default)
            .anti_patterns = phrases.iter().map(|t| t.to_string()).collect();
        self
    }

    /// A domain the skill is especially good at, and the boost a task naming it gets.
    pub fn specialization(mut self, domain: &str, confidence_boost: f64) -> Skill {
        self.assessment
            .get_or_insert_with(Assessment::default)
            .specializations
            .push(Specialization {
                domain: domain.into(),
                confidence_boost,
            });
        self
    }
}

/// A text, or a number read as its text.
fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrNumber {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(match Option::<TextOrNumber>::deserialize(d)? {
        None => None,
        Some(TextOrNumber::Text(t)) => Some(t),
        Some(TextOrNumber::Number(n)) => Some(n.to_string()),
    })
}

fn no_blanks(field: &str, items: &mut [String]) -> Result<(), Problem> {
    for (i, item) in items.iter_mut().enumerate() {
        *item = item.trim().to_string();
        if item.is_empty() {
            return Err(Problem::field(format!("{field}[{i}]"), "must not be empty"));
        }
    }
    Ok(())
}

/// `type/subtype` (either may be `*`), without parameters or spaces.
pub fn is_mime(text: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+*".contains(c))
    };
    match text.split_once('/') {
        Some((ty, sub)) => token(ty) && token(sub) && !sub.contains('/'),
        None => false,
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_filled_in() {
        let s = Skill::from_value(json!({"name": "pdf", "description": " Reads PDFs \n"})).unwrap();
        assert_eq!(s.id, "pdf");
        assert_eq!(s.description, "Reads PDFs");
        assert_eq!(s.inputs(), ["text/plain"]);
        assert_eq!(s.outputs(), ["text/plain"]);
        assert!(s.tags.is_empty());
    }

    #[test]
    fn problems_name_their_field() {
        let cases = [
            (json!({"description": "d"}), None, "missing field `name`"),
            (
                json!({"name": " ", "description": "d"}),
                Some("name"),
                "empty",
            ),
            (
                json!({"name": "n", "description": "d", "tags": "pdf"}),
                Some("tags"),
                "invalid type",
            ),
            (
                json!({"name": "n", "description": "d", "performance": {"avg_processing_time_ms": "fast"}}),
                Some("performance.avg_processing_time_ms"),
                "invalid type",
            ),
            (
                json!({"name": "n", "description": "d", "input_modes": ["pdf"]}),
                Some("input_modes[0]"),
                "MIME",
            ),
            (
                json!({"name": "n", "description": "d", "output_modes": []}),
                Some("output_modes"),
                "at least one",
            ),
            (
                json!({"name": "n", "description": "d", "assessment": {"specializations": [{"domain": "x", "confidence_boost": 3}]}}),
                Some("assessment.specializations[0].confidence_boost"),
                "between 0 and 1",
            ),
            (json!(["n"]), None, "mapping"),
        ];
        for (value, field, message) in cases {
            let p = Skill::from_value(value.clone()).unwrap_err();
            assert_eq!(p.field.as_deref(), field, "{value}: {p}");
            assert!(p.message.contains(message), "{value}: {p}");
        }
    }

    #[test]
    fn spellings_of_bindu_and_a2a_are_read() {
        let s = Skill::from_value(json!({
            "name": "n", "description": "d", "inputModes": ["Application/PDF"],
            "allowed-tools": ["Read"], "capabilitiesDetail": {"ocr": {"supported": true}}
        }))
        .unwrap();
        assert_eq!(s.inputs(), ["application/pdf"]);
        assert_eq!(s.allowed_tools, ["Read"]);
        assert!(s.capabilities_detail.unwrap().contains_key("ocr"));
        assert_eq!(
            unknown_keys(&json!({"name": "n", "licence": "MIT", "inputModes": []})),
            ["licence"]
        );
    }

    #[test]
    fn a_checked_skill_reads_back_as_itself() {
        let s = Skill::new("s-v1", "S", "does s")
            .tags(&["a"])
            .avg_processing_time_ms(200)
            .specialization("science", 0.2);
        let mut checked = s.clone();
        checked.check().unwrap();
        let again = Skill::from_value(serde_json::to_value(&checked).unwrap()).unwrap();
        assert_eq!(again, checked);
    }

    #[test]
    fn mime_types() {
        for ok in [
            "text/plain",
            "image/*",
            "*/*",
            "application/vnd.ms-excel+xml",
        ] {
            assert!(is_mime(ok), "{ok}");
        }
        for bad in [
            "pdf",
            "text/",
            "/plain",
            "text/plain; charset=utf-8",
            "a/b/c",
            "",
        ] {
            assert!(!is_mime(bad), "{bad}");
        }
    }
}
