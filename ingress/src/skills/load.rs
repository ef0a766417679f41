//! Where skills come from ([`SkillSource`]): a directory holding `skill.yaml` (or
//! `skill.yml`) and/or `SKILL.md` with YAML front matter, one of those files named directly,
//! or a skill written inline (a TOML table, a builder call). [`load`] reads one; its
//! [`SkillError`] names the file (or the inline entry), the field and the problem.
//!
//! A directory with both files takes its record from `skill.yaml` and the body of
//! `SKILL.md` as the skill's Markdown. The file the record came from is the skill's
//! documentation (`GET /agent/skills/{id}/documentation`). Keys a file has that a skill does
//! not know are logged and kept in the full record; an inline skill refuses them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::record::{unknown_keys, Problem, Skill};

/// Largest skill file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Where one skill is declared.
#[derive(Debug, Clone, PartialEq)]
pub enum SkillSource {
    /// A skill directory, or a `skill.yaml` / `SKILL.md` file.
    Path(PathBuf),
    /// Written in the configuration or the code.
    Inline(Box<Skill>),
}

/// The media type of a skill's documentation file.
pub const YAML: &str = "application/yaml";
pub const MARKDOWN: &str = "text/markdown; charset=utf-8";

/// The file a skill was read from, served raw.
#[derive(Debug, Clone)]
pub struct Documentation {
    pub text: String,
    pub media_type: &'static str,
}

/// A skill read and checked, with what its files added.
#[derive(Debug, Clone)]
pub struct LoadedSkill {
    pub skill: Skill,
    /// Where it was declared (a file, or `agent.skills[2]`), for messages.
    pub origin: String,
    pub documentation: Option<Documentation>,
    /// The body of its `SKILL.md`.
    pub markdown: Option<String>,
    /// Keys of its file that a skill does not know, as written.
    pub extra: serde_json::Map<String, Value>,
}

/// Why a skill could not be read: where, which field, what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{origin}: {problem}")]
pub struct SkillError {
    /// `skill file <path>`, or `agent.skills[<n>]` for an inline skill.
    pub origin: String,
    pub problem: Problem,
}

impl SkillError {
    fn new(origin: &str, field: Option<String>, message: impl Into<String>) -> SkillError {
        SkillError {
            origin: origin.to_string(),
            problem: Problem {
                field,
                message: message.into(),
            },
        }
    }
}

/// Reads the skill `source` declares; `key` and `index` name an inline one in messages.
pub fn load(source: &SkillSource, key: &str, index: usize) -> Result<LoadedSkill, SkillError> {
    match source {
        SkillSource::Inline(declared) => {
            let origin = format!("{key}[{index}] (inline skill {:?})", declared.name);
            let mut skill = (**declared).clone();
            let checked = skill.check().map(|()| skill);
            loaded(origin, checked, None, None, Default::default())
        }
        SkillSource::Path(path) => load_path(path),
    }
}

fn load_path(path: &Path) -> Result<LoadedSkill, SkillError> {
    let shown = format!("skill path {}", path.display());
    let meta = std::fs::metadata(path)
        .map_err(|e| SkillError::new(&shown, None, format!("cannot be read: {e}")))?;
    let (record, markdown_file) = if meta.is_dir() {
        let yaml = ["skill.yaml", "skill.yml"]
            .iter()
            .map(|f| path.join(f))
            .find(|p| p.is_file());
        let md = path.join("SKILL.md");
        let md = md.is_file().then_some(md);
        match (yaml, md) {
            (Some(yaml), md) => (yaml, md),
            (None, Some(md)) => (md, None),
            (None, None) => {
                return Err(SkillError::new(
                    &shown,
                    None,
                    "the directory holds neither skill.yaml nor SKILL.md",
                ))
            }
        }
    } else {
        (path.to_path_buf(), None)
    };
    let origin = format!("skill file {}", record.display());
    let text = read(&record, &origin)?;
    let is_markdown = match record.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("md") || e.eq_ignore_ascii_case("markdown") => true,
        Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => false,
        _ => {
            return Err(SkillError::new(
                &origin,
                None,
                "name a skill directory, a skill.yaml or a SKILL.md",
            ))
        }
    };
    let (value, markdown) = if is_markdown {
        let (front, body) = front_matter(&text).ok_or_else(|| {
            SkillError::new(
                &origin,
                None,
                "a SKILL.md begins with YAML front matter between two `---` lines",
            )
        })?;
        (yaml_value(front, &origin, 1)?, Some(body.to_string()))
    } else {
        let markdown = match &markdown_file {
            Some(md) => {
                let md_origin = format!("skill file {}", md.display());
                let md_text = read(md, &md_origin)?;
                Some(front_matter(&md_text).map_or(md_text.clone(), |(_, body)| body.to_string()))
            }
            None => None,
        };
        (yaml_value(&text, &origin, 0)?, markdown)
    };
    let unknown = unknown_keys(&value);
    let mut extra = serde_json::Map::new();
    if let Value::Object(map) = &value {
        for key in &unknown {
            tracing::warn!(file = %record.display(), key = %key, "a skill file has a key skills do not know; it is kept in the skill's record but means nothing to the engine");
            if let Some(v) = map.get(key) {
                extra.insert(key.clone(), v.clone());
            }
        }
    }
    let documentation = Documentation {
        text,
        media_type: if is_markdown { MARKDOWN } else { YAML },
    };
    loaded(
        origin,
        Skill::from_value(value),
        Some(documentation),
        markdown,
        extra,
    )
}

/// A checked skill with what its declaration added, or its problem with where it is.
fn loaded(
    origin: String,
    skill: Result<Skill, Problem>,
    documentation: Option<Documentation>,
    markdown: Option<String>,
    extra: serde_json::Map<String, Value>,
) -> Result<LoadedSkill, SkillError> {
    match skill {
        Ok(skill) => Ok(LoadedSkill {
            skill,
            origin,
            documentation,
            markdown,
            extra,
        }),
        Err(problem) => Err(SkillError { origin, problem }),
    }
}

fn read(path: &Path, origin: &str) -> Result<String, SkillError> {
    let len = std::fs::metadata(path)
        .map_err(|e| SkillError::new(origin, None, format!("cannot be read: {e}")))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(SkillError::new(
            origin,
            None,
            format!("is {len} bytes; a skill file may have at most {MAX_FILE_BYTES}"),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| SkillError::new(origin, None, format!("cannot be read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        SkillError::new(
            origin,
            None,
            format!("is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// YAML text as a JSON value; a syntax error names its line (`first_line`: how many lines
/// come before the text in its file).
fn yaml_value(text: &str, origin: &str, first_line: usize) -> Result<Value, SkillError> {
    serde_yaml_ng::from_str::<Value>(text).map_err(|e| {
        let message = match e.location() {
            Some(at) => format!(
                "not valid YAML at line {}, column {}: {}",
                at.line() + first_line,
                at.column(),
                strip_location(&e.to_string())
            ),
            None => format!("not valid YAML: {e}"),
        };
        SkillError::new(origin, None, message)
    })
}

/// An error message without its trailing ` at line L column C`.
fn strip_location(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |at| &message[..at])
}

/// The front matter and the body of a Markdown text that begins with `---`.
fn front_matter(text: &str) -> Option<(&str, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end_matches(['\n', '\r']) == "---" {
            return Some((&rest[..offset], &rest[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

/// `#[serde(with = "…")]` for a list of sources: in TOML a list whose entries are paths or
/// tables; from a variable or flag a comma-separated list of paths.
pub mod sources {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[SkillSource], s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Entry<'a> {
            Path(&'a Path),
            Inline(&'a Skill),
        }
        let entries: Vec<Entry<'_>> = v
            .iter()
            .map(|e| match e {
                SkillSource::Path(p) => Entry::Path(p),
                SkillSource::Inline(s) => Entry::Inline(s),
            })
            .collect();
        entries.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SkillSource>, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(list) => Ok(list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| SkillSource::Path(PathBuf::from(p)))
                .collect()),
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(p) if !p.trim().is_empty() => {
                        Ok(SkillSource::Path(PathBuf::from(p.trim())))
                    }
                    Value::Object(_) => {
                        if let Some(key) = unknown_keys(&item).first() {
                            return Err(D::Error::custom(format!(
                                "skill {i}: unknown key `{key}` (see the skill fields in the README)"
                            )));
                        }
                        Skill::from_value(item)
                            .map(|s| SkillSource::Inline(Box::new(s)))
                            .map_err(|p| D::Error::custom(format!("skill {i}: {p}")))
                    }
                    _ => Err(D::Error::custom(format!(
                        "skill {i}: expected a skill directory (a path) or a table with name and description"
                    ))),
                })
                .collect(),
            _ => Err(D::Error::custom(
                "expected a list of skill directories (paths) or skill tables",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn front_matter_splits_at_the_second_rule() {
        let (front, body) = front_matter("---\nname: a\n---\n# A\ntext\n").unwrap();
        assert_eq!(front, "name: a\n");
        assert_eq!(body, "# A\ntext\n");
        let (front, body) = front_matter("\u{feff}---\r\nname: a\r\n---\r\nbody").unwrap();
        assert_eq!(front, "name: a\r\n");
        assert_eq!(body, "body");
        assert!(front_matter("# no front matter\n").is_none());
        assert!(front_matter("---\nname: a\n").is_none(), "unclosed");
    }

    #[test]
    fn yaml_errors_say_where() {
        let e = yaml_value("name: a\n  bad: [", "skill file x", 1).unwrap_err();
        // Line 2 of the text is line 3 of its file; the location is said once.
        assert!(e.problem.message.contains("at line 3, column"), "{e}");
        assert_eq!(e.problem.message.matches(" at line ").count(), 1, "{e}");
    }
}
