//! Where webhooks may go (SSRF guard).
//!
//! Every address a webhook URL names or resolves to is classified before any connection is
//! made: `loopback`, `private` (RFC 1918, CGNAT, IPv6 unique-local) or `public`; link-local
//! (cloud metadata at 169.254.169.254 included), unspecified, multicast, broadcast,
//! documentation and other reserved ranges are always refused. IPv4 addresses embedded in
//! IPv6 (mapped, NAT64, 6to4) are classified as the IPv4 address they carry.
//!
//! Host names are resolved by [`GuardedResolver`], which the HTTP client uses for every
//! connection: it returns only addresses it checked (all of them must pass), so the
//! connection goes to exactly what was checked and a second, different DNS answer
//! (rebinding) cannot slip in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bindu_engine::config::PushDestinations;

/// What kind of network an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Private,
    Loopback,
    /// Never contacted; the reason names the range.
    Forbidden(&'static str),
}

impl std::fmt::Display for AddressClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressClass::Public => f.write_str("public"),
            AddressClass::Private => f.write_str("private"),
            AddressClass::Loopback => f.write_str("loopback"),
            AddressClass::Forbidden(why) => f.write_str(why),
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (127, _, _) => AddressClass::Loopback,
        (0, _, _) => AddressClass::Forbidden("unspecified"),
        (169, 254, _) => AddressClass::Forbidden("link-local"),
        (10, _, _) | (192, 168, _) => AddressClass::Private,
        (172, b, _) if (16..32).contains(&b) => AddressClass::Private,
        (100, b, _) if (64..128).contains(&b) => AddressClass::Private,
        (192, 0, 0) => AddressClass::Forbidden("reserved"),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressClass::Forbidden("documentation"),
        (198, 18..=19, _) => AddressClass::Forbidden("reserved"),
        (224..=239, _, _) => AddressClass::Forbidden("multicast"),
        (240..=255, _, _) => AddressClass::Forbidden("reserved"),
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    if ip.is_unspecified() {
        return AddressClass::Forbidden("unspecified");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s[0] {
        // NAT64 well-known prefix 64:ff9b::/96.
        0x0064 if s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] => classify_v4(embedded(s[6], s[7])),
        // 6to4 2002::/16 carries an IPv4 address in bits 16..48.
        0x2002 => classify_v4(embedded(s[1], s[2])),
        0x2001 if s[1] == 0x0db8 => AddressClass::Forbidden("documentation"),
        x if x & 0xffc0 == 0xfe80 => AddressClass::Forbidden("link-local"),
        x if x & 0xffc0 == 0xfec0 => AddressClass::Forbidden("site-local"),
        x if x & 0xfe00 == 0xfc00 => AddressClass::Private,
        x if x & 0xff00 == 0xff00 => AddressClass::Forbidden("multicast"),
        // The rest of ::/8 (IPv4-compatible and other reserved forms).
        0 => AddressClass::Forbidden("reserved"),
        _ => AddressClass::Public,
    }
}

pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// An address the policy does not allow.
#[derive(Debug, Clone, thiserror::Error)]
#[error("destination refused: {host} is {ip} ({class}), not allowed by PUSH__DESTINATIONS")]
pub struct Refused {
    pub host: String,
    pub ip: IpAddr,
    pub class: AddressClass,
}

/// The destination policy (`PUSH__DESTINATIONS`).
#[derive(Debug, Clone, Copy)]
pub struct Policy(pub PushDestinations);

impl Policy {
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        let class = classify(ip);
        let allowed = match class {
            AddressClass::Public => self.0.public,
            AddressClass::Private => self.0.private,
            AddressClass::Loopback => self.0.loopback,
            AddressClass::Forbidden(_) => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(Refused {
                host: host.to_string(),
                ip,
                class,
            })
        }
    }
}

/// The HTTP client's resolver: resolves, then refuses unless every address passes.
pub struct GuardedResolver {
    pub policy: Policy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            for a in &addrs {
                policy.check(&host, a.ip())?;
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The policy refusal somewhere in an error's chain of causes, if any.
pub fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_classified() {
        for (addr, class) in [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.9.9.9", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::Private),
            ("fd00::1", AddressClass::Private),
            ("169.254.169.254", AddressClass::Forbidden("link-local")),
            ("fe80::1", AddressClass::Forbidden("link-local")),
            ("0.0.0.0", AddressClass::Forbidden("unspecified")),
            ("::", AddressClass::Forbidden("unspecified")),
            ("224.0.0.1", AddressClass::Forbidden("multicast")),
            ("255.255.255.255", AddressClass::Forbidden("reserved")),
            ("ff02::1", AddressClass::Forbidden("multicast")),
            (
                "::ffff:169.254.169.254",
                AddressClass::Forbidden("link-local"),
            ),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:10.0.0.1", AddressClass::Private),
            ("64:ff9b::a9fe:a9fe", AddressClass::Forbidden("link-local")),
            ("2002:a9fe:a9fe::1", AddressClass::Forbidden("link-local")),
            ("::127.0.0.1", AddressClass::Forbidden("reserved")),
            ("8.8.8.8", AddressClass::Public),
            ("172.32.0.1", AddressClass::Public),
            ("2606:4700::1111", AddressClass::Public),
        ] {
            assert_eq!(classify(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn the_policy_allows_only_the_named_classes() {
        let loopback_only = Policy(PushDestinations {
            loopback: true,
            ..Default::default()
        });
        assert!(loopback_only.check("h", ip("127.0.0.1")).is_ok());
        assert!(loopback_only.check("h", ip("10.0.0.1")).is_err());
        assert!(loopback_only.check("h", ip("8.8.8.8")).is_err());
        let everything = Policy(PushDestinations {
            public: true,
            private: true,
            loopback: true,
        });
        assert!(everything.check("h", ip("10.0.0.1")).is_ok());
        let e = everything.check("meta", ip("169.254.169.254")).unwrap_err();
        assert_eq!(e.class, AddressClass::Forbidden("link-local"));
    }
}
