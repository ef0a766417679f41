//! Settings that choose among a few behaviours, as enums read from their names
//! (case-insensitive) and written back as them.

/// Declares a settings enum: `kind! { /// doc  pub enum BusKind("backend") { Memory = "memory", Nats = "nats" | "jetstream" } }`.
/// The enum reads its names case-insensitively (aliases after `|`), prints the first one,
/// and (de)serializes as that text. `what` names the setting in errors.
#[macro_export]
macro_rules! kind {
    ($(#[$meta:meta])* pub enum $name:ident ($what:literal) {
        $($(#[$vmeta:meta])* $variant:ident = $text:literal $(| $alias:literal)*),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The name settings use.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let v = s.trim().to_ascii_lowercase();
                $(if v == $text $(|| v == $alias)* {
                    return Ok($name::$variant);
                })+
                Err(format!(
                    "unknown {} {:?}; supported: {}",
                    $what,
                    s.trim(),
                    [$($text),+].join(", ")
                ))
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(k: $name) -> String {
                k.as_str().to_string()
            }
        }
    };
}

kind! {
    /// What a client certificate means for JSON-RPC requests (`MTLS__MODE`).
    pub enum MtlsMode("mode") {
        /// Certificate and Bearer token are both required; the certificate's DID must equal
        /// the token's client id (and `X-DID` for signed requests).
        Hybrid = "hybrid",
        /// The certificate alone identifies the caller: no token, no DID request signature.
        Mtls = "mtls",
        /// HTTPS only: client certificates are not used.
        Off = "off",
    }
}

/// Which kinds of webhook address the dispatcher may contact (`PUSH__DESTINATIONS`: a comma
/// list of `public`, `private`, `loopback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PushDestinations {
    pub public: bool,
    pub private: bool,
    pub loopback: bool,
}

impl TryFrom<String> for PushDestinations {
    type Error = String;
    fn try_from(v: String) -> Result<Self, String> {
        let mut d = PushDestinations::default();
        for item in super::fields::comma_list::split(&v) {
            match item.to_ascii_lowercase().as_str() {
                "public" => d.public = true,
                "private" => d.private = true,
                "loopback" => d.loopback = true,
                other => {
                    return Err(format!(
                        "unknown destination class {other:?}; use public, private, loopback"
                    ))
                }
            }
        }
        if d == PushDestinations::default() {
            return Err("name at least one of public, private, loopback".into());
        }
        Ok(d)
    }
}

impl From<PushDestinations> for String {
    fn from(d: PushDestinations) -> String {
        let names = [
            (d.public, "public"),
            (d.private, "private"),
            (d.loopback, "loopback"),
        ];
        names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(",")
    }
}
