//! A section: one TOML table of the configuration, declared once with [`section!`](crate::section):
//! each field with its default and its environment variable, so no default or key is written
//! twice.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Invalid;

/// One field of a section and its environment variable.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The field's name in its TOML table, e.g. `port`.
    pub field: &'static str,
    /// Its environment variable, e.g. `BINDU_PORT`.
    pub env: &'static str,
    /// Redacted by `bindu config`.
    pub secret: bool,
}

/// A TOML table's name and keys ([`section!`](crate::section) writes it).
pub trait Table {
    /// The table's name, e.g. `server`.
    const NAME: &'static str;
    /// Every scalar field with its environment variable, in the README's order.
    const KEYS: &'static [Key];
}

/// One TOML table of the configuration.
pub trait Section: Table + Default + Serialize + DeserializeOwned {
    /// Checks (and normalises) the values; an error names the field.
    fn check(&mut self) -> Result<(), Invalid> {
        Ok(())
    }
}

/// Declares a configuration section: a serde struct (unknown keys refused, missing ones at
/// their default), its `Default`, and its [`Table`] of keys. Each field is written once:
///
/// ```ignore
/// bindu_engine::section! {
///     /// `[server]`: where and how the HTTP server listens.
///     pub struct ServerConfig in "server" {
///         pub port: u16 = 3773, env "BINDU_PORT";
///         #[serde(with = "fields::secs")]
///         pub shutdown_timeout: Duration = Duration::from_secs(30),
///             env "BINDU_SHUTDOWN_TIMEOUT" as "shutdown_timeout_secs";
///         pub api_key: Option<SecretString> = None, secret "OPENAI_API_KEY";
///         pub skills: Vec<AgentSkill> = Vec::new();
///     }
/// }
/// ```
///
/// `env` names the field's environment variable, `secret` one whose value `bindu config`
/// never shows; `as` its TOML key when that differs from the field's name. A field without
/// either (a table array such as `skills`) is set from files only.
#[macro_export]
macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident in $table:literal {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident: $ty:ty = $default:expr
                $(, $kind:ident $env:literal $(as $key:literal)?)?;
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                $($(#[serde(rename = $key)])?)?
                pub $field: $ty,
            )+
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    $($field: $default,)+
                }
            }
        }

        impl $crate::config::Table for $name {
            const NAME: &'static str = $table;
            const KEYS: &'static [$crate::config::Key] = &[
                $($($crate::config::Key {
                    field: $crate::__section_key!($field $($key)?),
                    env: $env,
                    secret: $crate::__section_secret!($kind),
                },)?)+
            ];
        }
    };
}

/// The TOML key of a section field: its name, or the name given with `as`.
#[doc(hidden)]
#[macro_export]
macro_rules! __section_key {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident $key:literal) => {
        $key
    };
}

/// Whether a section field's value is secret: `env` or `secret`.
#[doc(hidden)]
#[macro_export]
macro_rules! __section_secret {
    (env) => {
        false
    };
    (secret) => {
        true
    };
}
