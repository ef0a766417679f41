//! How a setting's text becomes its typed value, for `#[serde(with = "…")]`.
//!
//! Every helper reads what a TOML file, a variable or a flag may hold (a variable is always
//! text) and writes back the text a variable would hold, so a whole configuration can be
//! layered again (the library builder under the environment) and printed by `bindu config`.
//!
//! | helper | field | text |
//! |---|---|---|
//! | [`secs`], [`millis`] | `Duration` | a number of seconds / milliseconds, or `90s`, `5m` |
//! | [`duration`] | `Duration` | `30d`, `12h`, `90m`, `45s` (humantime) or seconds |
//! | [`opt_duration`] | `Option<Duration>` | the same; blank: none |
//! | [`limit`] | `Option<Duration>` | the same; `0`: no limit |
//! | [`comma_list`] | `Vec<String>` | `a, b, c` |
//! | [`command`] | `Vec<String>` | a command line, split like a shell without one |
//! | [`secret`] | `Option<SecretString>` | any text; blank: none |
//! | [`opt_parsed`] | `Option<T: FromStr>` | the value's text; blank: none |

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// A scalar as a file, a variable or a flag may write it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// The text of any scalar.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Scalar::deserialize(d)? {
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Text(s) => s,
    })
}

fn custom<E: serde::de::Error>(message: String) -> E {
    E::custom(message)
}

/// Parses `30d`, `12h`, `90m`, `45s`, `1w`, compound forms such as `1h 30m` (humantime), or a
/// plain number of seconds. Months and years are refused: their length is ambiguous.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let ambiguous = v
        .split(|c: char| !c.is_alphabetic())
        .any(|unit| matches!(unit, "y" | "year" | "years" | "M" | "month" | "months"));
    if ambiguous {
        return Err(format!(
            "months and years have no fixed length in {v:?}; use s, m, h, d or w"
        ));
    }
    humantime::parse_duration(v)
        .map_err(|e| format!("expected a duration such as 30d, 12h, 90m or 45s, got {v:?} ({e})"))
}

/// `d` in its largest whole unit (`30d`, `12h`, `90s`), as [`parse_duration`] reads it back.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return humantime::format_duration(d).to_string();
    }
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `n` units, or a duration with its unit.
fn count_or_duration(v: &str, unit: fn(u64) -> Duration) -> Result<Duration, String> {
    match v.trim().parse::<u64>() {
        Ok(n) => Ok(unit(n)),
        Err(_) => parse_duration(v),
    }
}

/// Whole seconds; a field named `…_secs`.
pub mod secs {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        count_or_duration(&text(d)?, Duration::from_secs).map_err(custom)
    }
}

/// Whole milliseconds; a field named `…_ms`.
pub mod millis {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        count_or_duration(&text(d)?, Duration::from_millis).map_err(custom)
    }
}

/// A duration with its unit (`24h`).
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse_duration(&text(d)?).map_err(custom)
    }
}

/// An optional duration; blank is none.
pub mod opt_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v = text(d)?;
        if v.trim().is_empty() {
            return Ok(None);
        }
        parse_duration(&v).map(Some).map_err(custom)
    }
}

/// A time limit; `0` is none.
pub mod limit {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_str("0"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let d = parse_duration(&text(d)?).map_err(custom)?;
        Ok((!d.is_zero()).then_some(d))
    }
}

/// Items separated by commas; blanks dropped.
pub mod comma_list {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.join(","))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(split(&text(d)?))
    }

    pub fn split(v: &str) -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// A program and its arguments: words split on spaces, single and double quotes and
/// backslashes as in a shell, but no shell (no variables, globs or pipes).
pub mod command {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&shell_words::join(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        shell_words::split(&text(d)?)
            .map_err(|e| custom(format!("not a command line: {e} (check the quotes)")))
    }
}

/// A secret: never printed (`Debug` shows `[REDACTED]`, `bindu config` `<redacted>`).
/// Serialized as its text so that layers can be stacked again; do not log a serialization.
pub mod secret {
    use super::*;
    use secrecy::{ExposeSecret, SecretString};

    pub fn serialize<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_ref().map_or("", |v| v.expose_secret()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
        let v = text(d)?;
        let v = v.trim();
        Ok((!v.is_empty()).then(|| SecretString::from(v.to_string())))
    }
}

/// Any `FromStr` value; blank is none.
pub mod opt_parsed {
    use super::*;
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let v = text(d)?;
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse()
            .map(Some)
            .map_err(|e| custom(format!("{v:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_like_a_shell_without_one() {
        let split = |v: &str| shell_words::split(v).map_err(|e| e.to_string());
        assert_eq!(
            split("python3  agent.py --name 'my agent' \"a \\\"b\\\"\" c\\ d").unwrap(),
            ["python3", "agent.py", "--name", "my agent", "a \"b\"", "c d"]
        );
        assert!(split("   ").unwrap().is_empty());
        assert_eq!(split("''").unwrap(), [""]);
        assert!(split("python3 'open").is_err());
        assert!(split("python3 \"open").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3y").is_err());
    }
}
