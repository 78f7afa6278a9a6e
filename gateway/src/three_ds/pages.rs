//! The 3DS Server's browser pages: the challenge link (posts the CReq to the ACS), the
//! 3DS Method page (posts the method data to the ACS's method URL, for a hidden iframe
//! on the merchant's checkout), and the result page shown when a payment has no
//! `return_url`. Small, self-contained, no external resources; every interpolated value
//! is escaped; each response carries a script nonce for its one auto-submit script and a
//! `form-action` limited to the one origin the page posts to.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// HTML-escape text for element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;\
color:#1f2933}h1{font-size:1.25rem}p{line-height:1.5}button{font-size:1rem;padding:.5rem 1rem}";

fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    matches!(parsed.scheme(), "https" | "http").then(|| parsed.origin().ascii_serialization())
}

/// A page with a form that posts `fields` to `action` by itself (and by a button when
/// scripts are off). `None` when `action` is not an http(s) URL.
pub fn auto_post(title: &str, message: &str, action: &str, fields: &[(&str, &str)]) -> Option<Response> {
    let origin = origin_of(action)?;
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let inputs: String = fields
        .iter()
        .map(|(name, value)| format!(r#"<input type="hidden" name="{}" value="{}">"#, escape(name), escape(value)))
        .collect();
    let body = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>
<body><h1>{title}</h1><p>{message}</p>
<form id="next" method="post" action="{action}">{inputs}<noscript><button type="submit">Continue</button></noscript></form>
<script nonce="{nonce}">document.getElementById("next").submit();</script></body></html>"#,
        title = escape(title),
        message = escape(message),
        action = escape(action),
    );
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; form-action {origin}; \
         frame-ancestors *; base-uri 'none'"
    );
    Some(html(StatusCode::OK, body, &csp))
}

/// A page that only says something (a finished or unknown authentication).
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>
<body><h1 id="title">{title}</h1><p id="message">{text}</p></body></html>"#,
        title = escape(title),
        text = escape(text),
    );
    html(status, body, "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'")
}

fn html(status: StatusCode, body: String, csp: &str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn auto_post_only_to_web_urls_and_only_there() {
        assert!(auto_post("t", "m", "javascript:alert(1)", &[]).is_none());
        let page = auto_post("t", "m", "https://acs.example:9443/acs/v2/challenge", &[("creq", "a\"b")]).unwrap();
        let csp = page.headers().get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap().to_owned();
        assert!(csp.contains("form-action https://acs.example:9443;"), "{csp}");
        assert_eq!(page.headers().get(header::CACHE_CONTROL).unwrap(), "no-store");
    }
}
