//! Layered configuration: defaults < TOML file < environment < CLI flags, through figment.
//!
//! - A *section* is one TOML table (`[server]`, `[storage]`…): a serde struct owned by the
//!   crate that reads it, declared with [`section!`](crate::section) so each field is written
//!   once with its default and its environment variable, Bindu's flat name where Bindu has
//!   one (`BINDU_PORT`, `STORAGE_TYPE`, `AUTH__ENABLED`). [`Section::check`] validates it.
//! - [`Layers`] stacks the sources and extracts the typed configuration. Every value
//!   remembers where it came from, so an error names its key and its source (file, variable
//!   or flag), and `bindu config` prints the source beside each value.
//! - [`fields`]: how text becomes typed values (durations with `humantime`, comma lists,
//!   secrets with `secrecy`, command lines with `shell-words`); [`kinds`]: the settings
//!   that choose among a few behaviours, as enums.

use std::collections::BTreeMap;
use std::path::Path;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub mod fields;
pub mod kinds;
mod section;

pub use fields::{format_duration, parse_duration};
pub use kinds::{MtlsMode, PushDestinations};
pub use section::{Key, Section, Table};

/// A value that deserialized but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field of the section, e.g. `port`.
    pub field: &'static str,
    pub message: String,
}

/// `Err(Invalid)` for `field` unless `ok`.
pub fn check(ok: bool, field: &'static str, message: &str) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err(Invalid {
            field,
            message: message.to_string(),
        })
    }
}

/// `n` within `lo..=hi`, else an error naming the range.
pub fn within<T: PartialOrd + std::fmt::Display>(
    n: T,
    lo: T,
    hi: T,
    field: &'static str,
) -> Result<(), Invalid> {
    check(
        lo <= n && n <= hi,
        field,
        &format!("must be between {lo} and {hi}"),
    )
}

/// `n` at least `lo`, else an error naming the bound.
pub fn at_least<T: PartialOrd + std::fmt::Display>(
    n: T,
    lo: T,
    field: &'static str,
) -> Result<(), Invalid> {
    check(n >= lo, field, &format!("must be at least {lo}"))
}

/// An empty or blank text is no value.
pub fn none_if_blank<T: AsRef<str> + From<String>>(v: &mut Option<T>) {
    if let Some(s) = v {
        let trimmed = s.as_ref().trim();
        *v = (!trimmed.is_empty()).then(|| T::from(trimmed.to_string()));
    }
}

/// A URL whose scheme is one of `schemes`, if set; blank is unset.
pub fn url_with(
    v: &mut Option<String>,
    schemes: &[&str],
    field: &'static str,
) -> Result<(), Invalid> {
    none_if_blank(v);
    match v {
        Some(u) if !schemes.iter().any(|s| u.starts_with(&format!("{s}://"))) => {
            let names: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
            Err(Invalid {
                field,
                message: format!(
                    "expected a URL starting with {}, got {u:?}",
                    names.join(" or ")
                ),
            })
        }
        _ => Ok(()),
    }
}

/// An http(s) URL without its trailing slash, if set.
pub fn http_url(v: &mut Option<String>, field: &'static str) -> Result<(), Invalid> {
    url_with(v, &["http", "https"], field)?;
    if let Some(u) = v {
        *u = u.trim_end_matches('/').to_string();
    }
    Ok(())
}

/// A configuration key with its full dotted name.
#[derive(Debug, Clone)]
pub struct FullKey {
    /// e.g. `server.port`.
    pub key: String,
    pub env: &'static str,
    pub secret: bool,
}

impl FullKey {
    /// `server.port / BINDU_PORT`, as errors name a key.
    pub fn named(&self) -> String {
        format!("{} / {}", self.key, self.env)
    }
}

/// The keys of section `S`.
pub fn keys_of<S: Section>() -> impl Iterator<Item = FullKey> {
    S::KEYS.iter().map(|k| FullKey {
        key: format!("{}.{}", S::NAME, k.field),
        env: k.env,
        secret: k.secret,
    })
}

/// A setting that could not be used. Exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: `{key}` (from {source_desc}): {message}")]
pub struct ConfigError {
    pub key: String,
    pub source_desc: String,
    pub message: String,
}

/// How layers read the environment: the process's (`std::env::var`) or, in tests, a map.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where a value came from, as `bindu config` and errors say it.
pub const DEFAULT_SOURCE: &str = "default";

/// One layer of values: every key it sets, all from the same source.
struct Layer {
    data: Dict,
    name: String,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

/// The sources of a configuration, lowest first.
pub struct Layers {
    figment: Figment,
    keys: Vec<FullKey>,
}

fn describe(meta: &Metadata) -> String {
    match &meta.source {
        Some(figment::Source::File(path)) => format!("file {}", path.display()),
        _ => meta.name.to_string(),
    }
}

impl Layers {
    /// No values yet: every key has its section's default. `keys` are the known keys.
    pub fn new(keys: Vec<FullKey>) -> Self {
        Layers {
            figment: Figment::new(),
            keys,
        }
    }

    /// Every key of `values` (a whole configuration, e.g. a builder's) from `source`.
    pub fn values(mut self, values: &impl Serialize, source: &str) -> Result<Self, ConfigError> {
        let data = Value::serialize(values)
            .ok()
            .and_then(|v| v.into_dict())
            .ok_or_else(|| ConfigError {
                key: "(all)".into(),
                source_desc: source.into(),
                message: "the configuration could not be represented".into(),
            })?;
        self.figment = self.figment.merge(Layer {
            data,
            name: source.into(),
        });
        Ok(self)
    }

    /// A TOML file; it must exist and parse.
    pub fn file(mut self, path: &Path) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            key: "--config".into(),
            source_desc: format!("file {}", path.display()),
            message,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read the file: {e}")))?;
        text.parse::<toml::Table>()
            .map_err(|e| err(format!("not valid TOML: {e}")))?;
        self.figment = self.figment.merge(Toml::file_exact(path));
        Ok(self)
    }

    /// The environment variable of every known key that `lookup` has.
    pub fn env(mut self, lookup: EnvLookup<'_>) -> Self {
        for k in &self.keys {
            if let Some(v) = lookup(k.env) {
                self.figment = self.figment.merge(Layer {
                    data: figment::util::nest(&k.key, Value::from(v))
                        .into_dict()
                        .unwrap_or_default(),
                    name: format!("environment variable {}", k.env),
                });
            }
        }
        self
    }

    /// Flags: (dotted key, value, flag name).
    pub fn flags(mut self, flags: &[(&str, String, &str)]) -> Self {
        for (key, value, flag) in flags {
            self.figment = self.figment.merge(Layer {
                data: figment::util::nest(key, Value::from(value.clone()))
                    .into_dict()
                    .unwrap_or_default(),
                name: format!("flag {flag}"),
            });
        }
        self
    }

    /// Where `key`'s value came from.
    pub fn source(&self, key: &str) -> String {
        self.figment
            .find_metadata(key)
            .map(describe)
            .unwrap_or_else(|| DEFAULT_SOURCE.to_string())
    }

    /// The file `key`'s value came from, when it came from a file (relative paths in it are
    /// relative to that file).
    pub fn file_of(&self, key: &str) -> Option<std::path::PathBuf> {
        match &self.figment.find_metadata(key)?.source {
            Some(figment::Source::File(path)) => Some(path.clone()),
            _ => None,
        }
    }

    /// The source of every key that does not have its default.
    pub fn sources(&self) -> BTreeMap<String, String> {
        self.keys
            .iter()
            .filter_map(|k| {
                self.figment
                    .find_metadata(&k.key)
                    .map(|m| (k.key.clone(), describe(m)))
            })
            .collect()
    }

    /// How errors name `key`: with its variable when it is a known key.
    pub fn name_of(&self, key: &str) -> String {
        match self.keys.iter().find(|k| k.key == key) {
            Some(k) => k.named(),
            None => key.to_string(),
        }
    }

    /// `message` about `key`, with the key's source.
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: self.name_of(key),
            source_desc: self.source(key),
            message: message.into(),
        }
    }

    /// The typed configuration. Text from variables and flags is read as numbers or booleans
    /// where the field wants one.
    pub fn extract<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.figment.extract_lossy().map_err(|e| {
            let key = e.path.join(".");
            let message = match &e.kind {
                figment::error::Kind::UnknownField(..) => {
                    "unknown key (see the configuration table in the README)".to_string()
                }
                kind => kind.to_string(),
            };
            ConfigError {
                key: if key.is_empty() {
                    "--config".into()
                } else {
                    self.name_of(&key)
                },
                source_desc: e
                    .metadata
                    .as_ref()
                    .map(describe)
                    .unwrap_or_else(|| self.source(&key)),
                message,
            }
        })
    }
}

/// `values` as `bindu config` prints them: one `key = "value"    # VARIABLE, source` line per
/// key, secrets redacted.
pub fn render(
    values: &impl Serialize,
    keys: &[FullKey],
    sources: &BTreeMap<String, String>,
) -> String {
    let tree = Value::serialize(values).unwrap_or(Value::from(Dict::new()));
    let mut out = String::new();
    for k in keys {
        let value = tree.find_ref(&k.key).map(text).unwrap_or_default();
        let shown = if k.secret && !value.is_empty() {
            "<redacted>".to_string()
        } else {
            value
        };
        let source = sources.get(&k.key).map_or(DEFAULT_SOURCE, String::as_str);
        out.push_str(&format!(
            "{} = {}    # {}, {}\n",
            k.key,
            toml::Value::String(shown),
            k.env,
            source
        ));
    }
    out
}

/// A value as the text a variable would hold.
fn text(v: &Value) -> String {
    match v {
        Value::String(_, s) => s.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => match (n.to_u128(), n.to_i128(), n.to_f64()) {
            (Some(u), _, _) => u.to_string(),
            (_, Some(i), _) => i.to_string(),
            (_, _, Some(f)) => f.to_string(),
            _ => String::new(),
        },
        Value::Empty(..) => String::new(),
        Value::Array(_, items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        Value::Dict(..) => String::new(),
    }
}
