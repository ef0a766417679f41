//! The body of `POST /agent/negotiation`, read field by field so a refusal names its field
//! (snake_case as Bindu sends it; the camelCase spellings are accepted too). Unknown fields
//! are ignored.
//!
//! | field | |
//! |---|---|
//! | `task_summary` | required text, at most 10,000 characters |
//! | `task_details` | text, at most 10,000 characters |
//! | `input_mime_types`, `output_mime_types` | lists of MIME types (at most 32) |
//! | `max_latency_ms` | a whole number above 0 |
//! | `max_cost_amount` | a number, or a text such as `"0.05"` / `"$0.05"`; zero or more |
//! | `required_tools`, `forbidden_tools` | lists of tool names (at most 64) |
//! | `min_score` | 0 to 1 (default 0) |
//! | `weights` | `{skill_match, io_compatibility, performance, load, cost}`, each zero or more; those left out keep the agent's defaults |

use serde_json::{Map, Value};

use super::score::{Task, Weights};
use crate::skills::record::is_mime;

/// Longest `task_summary` and `task_details`, in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;
const MAX_TYPES: usize = 32;
const MAX_TOOLS: usize = 64;

/// A refused field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> Refusal {
    Refusal {
        field: field.into(),
        message: message.into(),
    }
}

/// The value of `name` (or its camelCase spelling); `null` counts as absent.
fn field<'a>(body: &'a Map<String, Value>, name: &str, camel: &str) -> Option<&'a Value> {
    body.get(name)
        .or_else(|| body.get(camel))
        .filter(|v| !v.is_null())
}

fn text(v: &Value, name: &str) -> Result<String, Refusal> {
    let s = v.as_str().ok_or_else(|| refuse(name, "must be a text"))?;
    let n = s.chars().count();
    if n > MAX_TEXT_CHARS {
        return Err(refuse(
            name,
            format!("has {n} characters; at most {MAX_TEXT_CHARS} are accepted"),
        ));
    }
    Ok(s.to_string())
}

fn list(v: &Value, name: &str, max: usize) -> Result<Vec<String>, Refusal> {
    let items = v
        .as_array()
        .ok_or_else(|| refuse(name, "must be a list of texts"))?;
    if items.len() > max {
        return Err(refuse(
            name,
            format!("has {} entries; at most {max} are accepted", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.as_str().map(str::trim) {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err(refuse(format!("{name}[{i}]"), "must be a non-empty text")),
        })
        .collect()
}

fn mime_list(v: &Value, name: &str) -> Result<Vec<String>, Refusal> {
    let types = list(v, name, MAX_TYPES)?;
    types
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            // Parameters (`; charset=utf-8`) say nothing about what a skill handles.
            let essence = t
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if is_mime(&essence) {
                Ok(essence)
            } else {
                Err(refuse(
                    format!("{name}[{i}]"),
                    format!("{t:?} is not a MIME type such as text/plain or image/*"),
                ))
            }
        })
        .collect()
}

fn number(v: &Value, name: &str) -> Result<f64, Refusal> {
    v.as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| refuse(name, "must be a number"))
}

/// An amount: a number or a decimal text, optionally with a leading `$`.
fn amount(v: &Value, name: &str) -> Result<f64, Refusal> {
    let x = match v {
        Value::String(s) => {
            let t = s.trim();
            let t = t.strip_prefix('$').unwrap_or(t).trim();
            t.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| {
                    refuse(
                        name,
                        format!("{s:?} is not an amount such as \"0.05\" or \"$0.05\""),
                    )
                })?
        }
        _ => number(v, name)?,
    };
    if x < 0.0 {
        return Err(refuse(name, "must be zero or more"));
    }
    Ok(x)
}

/// Reads a request body (JSON) into a [`Task`]; `defaults` are the agent's weights.
pub fn parse(body: &[u8], defaults: Weights) -> Result<Task, Refusal> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| refuse("body", format!("not valid JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(refuse("body", "must be a JSON object"));
    };
    let summary = match field(&body, "task_summary", "taskSummary") {
        None => return Err(refuse("task_summary", "is required")),
        Some(v) => text(v, "task_summary")?,
    };
    if summary.trim().is_empty() {
        return Err(refuse("task_summary", "must not be empty"));
    }
    let details = field(&body, "task_details", "taskDetails")
        .map(|v| text(v, "task_details"))
        .transpose()?;
    let input_types = field(&body, "input_mime_types", "inputMimeTypes")
        .map(|v| mime_list(v, "input_mime_types"))
        .transpose()?
        .unwrap_or_default();
    let output_types = field(&body, "output_mime_types", "outputMimeTypes")
        .map(|v| mime_list(v, "output_mime_types"))
        .transpose()?
        .unwrap_or_default();
    let max_latency_ms = match field(&body, "max_latency_ms", "maxLatencyMs") {
        None => None,
        Some(v) => Some(v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            refuse(
                "max_latency_ms",
                "must be a whole number of milliseconds above 0",
            )
        })?),
    };
    let max_cost = field(&body, "max_cost_amount", "maxCostAmount")
        .map(|v| amount(v, "max_cost_amount"))
        .transpose()?;
    let required_tools = field(&body, "required_tools", "requiredTools")
        .map(|v| list(v, "required_tools", MAX_TOOLS))
        .transpose()?
        .unwrap_or_default();
    let forbidden_tools = field(&body, "forbidden_tools", "forbiddenTools")
        .map(|v| list(v, "forbidden_tools", MAX_TOOLS))
        .transpose()?
        .unwrap_or_default();
    let min_score = match field(&body, "min_score", "minScore") {
        None => 0.0,
        Some(v) => {
            let x = number(v, "min_score")?;
            if !(0.0..=1.0).contains(&x) {
                return Err(refuse("min_score", "must be between 0 and 1"));
            }
            x
        }
    };
    let weights = match field(&body, "weights", "weights") {
        None => defaults,
        Some(v) => weights(v, defaults)?,
    };
    Ok(Task {
        summary,
        details,
        input_types,
        output_types,
        max_latency_ms,
        max_cost,
        required_tools,
        forbidden_tools,
        min_score,
        weights,
    })
}

fn weights(v: &Value, defaults: Weights) -> Result<Weights, Refusal> {
    let Value::Object(map) = v else {
        return Err(refuse("weights", "must be an object of weights"));
    };
    let mut w = defaults;
    for (key, value) in map {
        let slot = match key.as_str() {
            "skill_match" | "skillMatch" => &mut w.skill_match,
            "io_compatibility" | "ioCompatibility" => &mut w.io_compatibility,
            "performance" => &mut w.performance,
            "load" => &mut w.load,
            "cost" => &mut w.cost,
            _ => {
                return Err(refuse(
                    format!("weights.{key}"),
                    "unknown weight; the weights are skill_match, io_compatibility, performance, load and cost",
                ))
            }
        };
        let name = format!("weights.{key}");
        let x = number(value, &name)?;
        if x < 0.0 {
            return Err(refuse(name, "must be zero or more"));
        }
        *slot = x;
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn field_of(body: Value) -> String {
        parse(body.to_string().as_bytes(), Weights::default())
            .unwrap_err()
            .field
    }

    #[test]
    fn a_full_request_reads() {
        let t = parse(
            json!({
                "task_summary": "Extract tables", "task_details": "from invoices",
                "input_mime_types": ["application/pdf; charset=binary"], "outputMimeTypes": ["Text/Plain"],
                "max_latency_ms": 5000, "max_cost_amount": "$0.05",
                "required_tools": ["Read"], "forbidden_tools": ["Execute"], "min_score": 0.4,
                "weights": {"skill_match": 1, "cost": 0}, "extra": true
            })
            .to_string()
            .as_bytes(),
            Weights::default(),
        )
        .unwrap();
        assert_eq!(t.input_types, ["application/pdf"]);
        assert_eq!(t.output_types, ["text/plain"]);
        assert_eq!(t.max_cost, Some(0.05));
        assert_eq!(t.weights.skill_match, 1.0);
        assert_eq!(t.weights.cost, 0.0);
        assert_eq!(t.weights.io_compatibility, 0.20, "left out: the default");
    }

    #[test]
    fn refusals_name_their_field() {
        assert_eq!(field_of(json!({})), "task_summary");
        assert_eq!(field_of(json!({"task_summary": " "})), "task_summary");
        assert_eq!(field_of(json!({"task_summary": 3})), "task_summary");
        assert_eq!(
            field_of(json!({"task_summary": "x".repeat(MAX_TEXT_CHARS + 1)})),
            "task_summary"
        );
        assert_eq!(
            field_of(json!({"task_summary": "x", "task_details": ["a"]})),
            "task_details"
        );
        assert_eq!(
            field_of(json!({"task_summary": "x", "input_mime_types": ["pdf"]})),
            "input_mime_types[0]"
        );
        assert_eq!(
            field_of(json!({"task_summary": "x", "output_mime_types": "text/plain"})),
            "output_mime_types"
        );
        assert_eq!(
            field_of(json!({"task_summary": "x", "max_latency_ms": -5})),
            "max_latency_ms"
        );
        assert_eq!(
            field_of(json!({"task_summary": "x", "max_cost_amount": "cheap"})),
            "max_cost_amount"
        );
        assert_eq!(
            field_of(json!({"task_summary": "x", "max_cost_amount": -1})),
            "max_cost_amount"
        );
        assert_eq!(
            field_of(json!({"task_summary": "x", "required_tools": [""]})),
            "required_tools[0]"
        );
        assert_eq!(
            field_of(json!({"task_summary": "x", "min_score": 1.5})),
            "min_score"
        );
        assert_eq!(
            field_of(json!({"task_summary": "x", "weights": {"speed": 1}})),
            "weights.speed"
        );
        assert_eq!(
            field_of(json!({"task_summary": "x", "weights": {"load": -1}})),
            "weights.load"
        );
        assert_eq!(field_of(json!(["task_summary"])), "body");
        assert_eq!(
            parse(b"{not json", Weights::default()).unwrap_err().field,
            "body"
        );
    }
}
