//! Web origins as the widget compares them: `scheme://host[:port]` exactly as a browser
//! serialises it (RFC 6454), nothing more. Grants name one, merchants allow a list of
//! them, and the frame's `frame-ancestors` and `postMessage` target use one.

/// `text` if it is a serialised web origin (`https://shop.example`,
/// `http://127.0.0.1:8080`): http or https, a host, a port only when not the scheme's
/// default, no user, path, query or fragment, lower case. `None` otherwise — the caller
/// never gets a normalised variant of what was written, so what is compared is what was
/// configured.
pub fn parse_origin(text: &str) -> Option<&str> {
    if text.len() > 255 || text.ends_with('/') {
        return None;
    }
    let url = url::Url::parse(text).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    (origin == text).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn only_serialised_origins_are_origins() {
        for good in
            ["https://shop.example", "http://127.0.0.1:8080", "https://localhost:8444", "https://xn--80ak6aa92e.com"]
        {
            assert_eq!(parse_origin(good), Some(good), "{good}");
        }
        for bad in [
            "",
            "shop.example",
            "https://shop.example/",
            "https://shop.example/pay",
            "https://shop.example?x=1",
            "https://shop.example#x",
            "https://user@shop.example",
            "https://Shop.example",
            "https://shop.example:443",
            "ftp://shop.example",
            "javascript:alert(1)",
            "null",
            "data:text/html,x",
        ] {
            assert_eq!(parse_origin(bad), None, "{bad}");
        }
    }
}
