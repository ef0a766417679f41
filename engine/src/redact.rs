//! Credentials out of messages: server URLs (NATS, Redis, Postgres) may carry a user and
//! password or a token in their userinfo, and errors quoting them must not.

/// `urls` (one URL or a comma list, as `NATS_URL` allows) with every userinfo (`user:pass@`,
/// `token@`) replaced by `***@`.
pub fn url_credentials(urls: &str) -> String {
    urls.split(',')
        .map(|url| match userinfo(url) {
            Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
            None => url.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `text` (an error message, say) with every userinfo of `urls` replaced by `***`.
pub fn credentials_in(text: &str, urls: &str) -> String {
    let mut out = text.to_string();
    for url in urls.split(',') {
        if let Some((start, end)) = userinfo(url) {
            let secret = &url[start..end];
            if !secret.is_empty() {
                out = out.replace(secret, "***");
            }
            // A password may also appear on its own (percent-decoded or not).
            if let Some((_, password)) = secret.split_once(':') {
                if password.len() >= 3 {
                    out = out.replace(password, "***");
                }
            }
        }
    }
    out
}

/// The byte range of `url`'s userinfo (between `://` and the last `@` before the path).
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let at = url[start..authority_end].rfind('@')? + start;
    Some((start, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_never_survives() {
        assert_eq!(
            url_credentials("nats://bob:s3cret@127.0.0.1:4222"),
            "nats://***@127.0.0.1:4222"
        );
        assert_eq!(
            url_credentials("nats://tok3n@a:4222,nats://u:p@b:4222,nats://c:4222"),
            "nats://***@a:4222,nats://***@b:4222,nats://c:4222"
        );
        assert_eq!(url_credentials("nats://h:4222/x@y"), "nats://h:4222/x@y");
        assert_eq!(url_credentials("not a url"), "not a url");
        assert_eq!(
            credentials_in(
                "failed: nats://bob:s3cret@h:1 said s3cret",
                "nats://bob:s3cret@h:1"
            ),
            "failed: nats://***@h:1 said ***"
        );
    }
}
