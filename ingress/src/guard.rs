//! What a web page must not be able to do to an agent it can reach (a local one, with auth
//! off): checked on `/` before authentication, refusals answered through [`EdgeError`].
//!
//! - **`Host`** (HTTP 421): a DNS-rebinding page talks to the agent under its own host name,
//!   so only names the agent answers for pass: `localhost`, any IP address literal (a
//!   rebinding page can never make a browser send one), the deployment URL's host, the bound
//!   host name and `server.allowed_hosts` (`*` admits every host). A request without `Host`
//!   (HTTP/1.0 tools; browsers always send one) passes.
//! - **`Content-Type`** (HTTP 415, `POST` only): a page can send `text/plain`, a form, or a
//!   body without a type (a `Blob`) to any origin without a CORS preflight; JSON types
//!   (`application/json` with any parameters, `application/json-rpc`, `application/*+json`)
//!   need one, which this server never grants.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::Response;

use crate::body::refuse;
use crate::error::EdgeError;

/// The host names JSON-RPC requests are answered for (besides `localhost` and IP literals).
#[derive(Debug, Clone)]
pub enum AllowedHosts {
    /// `*`: every host.
    Any,
    Only {
        /// Exact names, lowercase, without port or trailing dot.
        names: Arc<HashSet<String>>,
        /// `*.example.com` entries: the suffixes (`.example.com`).
        suffixes: Arc<Vec<String>>,
    },
}

impl AllowedHosts {
    /// From a list of names: `example.com`, `example.com:443`, `https://example.com/`,
    /// `*.example.com` or `*`.
    pub fn new<S: AsRef<str>>(entries: &[S]) -> AllowedHosts {
        let mut names = HashSet::new();
        let mut suffixes = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry == "*" {
                return AllowedHosts::Any;
            }
            let Some(name) = host_of(entry) else {
                continue;
            };
            match name.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') => suffixes.push(suffix.to_string()),
                _ => {
                    names.insert(name);
                }
            }
        }
        AllowedHosts::Only {
            names: Arc::new(names),
            suffixes: Arc::new(suffixes),
        }
    }

    /// Whether a request whose `Host` names `host` (port allowed) is answered.
    pub fn allows(&self, host: &str) -> bool {
        let (names, suffixes) = match self {
            AllowedHosts::Any => return true,
            AllowedHosts::Only { names, suffixes } => (names, suffixes),
        };
        let Some(name) = host_of(host) else {
            return false;
        };
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        name == "localhost"
            || literal.parse::<IpAddr>().is_ok()
            || names.contains(&name)
            || suffixes.iter().any(|s| name.ends_with(s.as_str()))
    }
}

/// The lowercase host name of `Host`-like text (`name[:port]`, `[v6]:port`, a URL), without
/// its port and trailing dot; `None` when it is not one.
fn host_of(text: &str) -> Option<String> {
    let text = text.trim();
    let authority = match text.split_once("://") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or(rest),
        None => text,
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = if authority.starts_with('[') {
        // `[v6]` or `[v6]:port`: the brackets stay (that is how `Host` carries it).
        &authority[..=authority.find(']')?]
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            Some(_) => return None,
            None => authority,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some(host)
}

/// Whether `Content-Type` names JSON (`application/json` with any parameters,
/// `application/json-rpc`, `application/jsonrequest` or `application/*+json`).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.strip_prefix("application/") {
        Some(sub) => {
            matches!(sub, "json" | "json-rpc" | "jsonrequest")
                || (sub.ends_with("+json") && sub.len() > "+json".len())
        }
        None => false,
    }
}

fn host_header(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    match headers.get(header::HOST) {
        Some(v) => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        None => uri.authority().map(|a| a.to_string()),
    }
}

/// The middleware of `/`: the `Host` check, then (for `POST`) the content type.
pub(crate) async fn layer(State(hosts): State<AllowedHosts>, req: Request, next: Next) -> Response {
    if let Some(host) = host_header(req.headers(), req.uri()) {
        if !hosts.allows(&host) {
            tracing::info!(host = %host.escape_debug(), "request for a host this agent does not answer for refused");
            return refuse(req, EdgeError::HostNotAllowed { host }).await;
        }
    }
    if req.method() == Method::POST {
        let content_type = req.headers().get(header::CONTENT_TYPE);
        if !content_type.is_some_and(|v| v.to_str().is_ok_and(is_json)) {
            let content_type =
                content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            return refuse(req, EdgeError::UnsupportedMediaType { content_type }).await;
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_pass_and_browser_simple_ones_do_not() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            "application/json-rpc",
            "application/vnd.a2a+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for refused in [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/+json",
            "text/json",
            "",
        ] {
            assert!(!is_json(refused), "{refused}");
        }
    }

    #[test]
    fn loopback_names_and_ip_literals_pass_by_default_and_other_names_do_not() {
        let hosts = AllowedHosts::new::<&str>(&[]);
        for ok in [
            "localhost",
            "localhost:3773",
            "LOCALHOST.:3773",
            "127.0.0.1",
            "127.0.0.1:3773",
            "[::1]",
            "[::1]:3773",
            "10.1.2.3:80",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:3773",
            "localhost.evil.example",
            "127.0.0.1.nip.io:3773",
            "",
            "a b",
            "host:port",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
    }

    #[test]
    fn configured_names_urls_and_wildcards_are_allowed() {
        let hosts = AllowedHosts::new(&[
            "https://Agent.Example.com/a2a",
            "api.example.org:8443",
            "*.internal.example",
        ]);
        assert!(hosts.allows("agent.example.com"));
        assert!(hosts.allows("agent.example.com:443"));
        assert!(hosts.allows("api.example.org"));
        assert!(hosts.allows("a.b.internal.example:3773"));
        assert!(!hosts.allows("internal.example"));
        assert!(!hosts.allows("example.com"));
        let any = AllowedHosts::new(&["x", "*"]);
        assert!(any.allows("anything.example"));
    }
}
