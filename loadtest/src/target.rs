//! The target URL: parsed, checked against the loopback rule and resolved once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The resolved socket address every connection uses.
    pub addr: SocketAddr,
    /// `host[:port]` for the Host header.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
}

/// Parses `url` (`http://host[:port][/path]`). A host that is not a loopback address (an IP
/// in 127.0.0.0/8 or ::1, or `localhost`) is refused without being resolved or contacted,
/// unless `allow_remote`.
pub async fn resolve(url: &str, allow_remote: bool) -> anyhow::Result<Target> {
    let rest = match url.strip_prefix("http://") {
        Some(r) => r,
        None if url.starts_with("https://") => anyhow::bail!(
            "{url}: https is not supported; load-test the plain-HTTP listener behind the TLS terminator"
        ),
        None => anyhow::bail!("{url}: not an http:// URL"),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        anyhow::bail!("{url}: expected http://host[:port]/path (no user info)");
    }
    let (host, port) = split_host_port(authority)
        .ok_or_else(|| anyhow::anyhow!("{url}: cannot read host and port from {authority:?}"))?;
    let refuse = |what: &str| {
        anyhow::anyhow!(
            "refusing to load-test {what}: it is not a loopback address (127.0.0.0/8, ::1, localhost); pass --allow-remote to target a machine you run"
        )
    };
    let addr = if let Ok(ip) = host.parse::<IpAddr>() {
        if !ip.is_loopback() && !allow_remote {
            return Err(refuse(&ip.to_string()));
        }
        SocketAddr::new(ip, port)
    } else if host.eq_ignore_ascii_case("localhost") {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else if !allow_remote {
        return Err(refuse(host));
    } else {
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| anyhow::anyhow!("{url}: cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{url}: {host} has no address"))?
    };
    Ok(Target {
        url: url.to_string(),
        addr,
        authority: authority.to_string(),
        path,
    })
}

fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let port = match &rest[end + 1..] {
            "" => 80,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, p.parse().ok()?)),
        Some(_) => None,
        None => Some((authority, 80)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_targets_resolve_without_lookups() {
        let t = resolve("http://127.0.0.1:3773/", false).await.expect("ok");
        assert_eq!(t.addr, "127.0.0.1:3773".parse().expect("addr"));
        assert_eq!(t.path, "/");
        let t = resolve("http://127.9.9.9:1/rpc?x=1", false)
            .await
            .expect("ok");
        assert_eq!(t.path, "/rpc?x=1");
        let t = resolve("http://[::1]:8080", false).await.expect("ok");
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(t.path, "/");
        let t = resolve("http://localhost:9/", false).await.expect("ok");
        assert!(t.addr.ip().is_loopback());
    }

    #[tokio::test]
    async fn non_loopback_targets_are_refused_unless_allowed() {
        for url in [
            "http://10.1.2.3:3773/",
            "http://192.168.0.1/",
            "http://[2001:db8::1]:80/",
            "http://0.0.0.0:3773/",
            "http://agent.example.com/",
        ] {
            let e = resolve(url, false).await.expect_err(url).to_string();
            assert!(e.contains("--allow-remote"), "{url}: {e}");
        }
        // Allowed literal addresses are taken as they are (nothing is contacted here).
        let t = resolve("http://10.1.2.3:3773/", true)
            .await
            .expect("allowed");
        assert_eq!(t.addr.port(), 3773);
    }

    #[tokio::test]
    async fn malformed_urls_are_refused() {
        for url in [
            "https://127.0.0.1/",
            "127.0.0.1:3773",
            "http://",
            "http://u:p@127.0.0.1/",
            "http://127.0.0.1:notaport/",
        ] {
            assert!(resolve(url, false).await.is_err(), "{url}");
        }
    }
}
