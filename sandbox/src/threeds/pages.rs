//! The ACS's HTML pages: small, self-contained (no external resource), every
//! interpolated value escaped with [`escape_html`], never cached.
//!
//! Content-Security-Policy: `default-src 'none'`; the one inline `<style>` and the one
//! inline `<script>` of a page carry a fresh random nonce each response (no
//! `'unsafe-inline'`); the scripts are constants, nothing is interpolated into them.
//! `form-action` names exactly where the page's form goes: `'self'` for the challenge
//! form; for the auto-posting pages (method and CRes) the notification URL's origin and
//! the web schemes, since the 3DS Server redirects those posts on to the merchant.
//! No `frame-ancestors`: the 3DS Server shows the challenge and runs the method in an
//! iframe of its own page, whatever its origin.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Escape text for HTML element content and double- or single-quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `scheme://host[:port]` of an absolute URL, for `form-action`; `None` if it has none.
pub fn origin_of(url: &str) -> Option<String> {
    let uri: hyper::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?.as_str();
    // Userinfo never belongs in a CSP source; refuse URLs with it.
    if authority.contains('@') || !matches!(scheme, "http" | "https") {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;padding:1.5rem;color:#1a1a1a;background:#fff}\
main{max-width:26rem;margin:auto}h1{font-size:1.2rem}dl{display:grid;grid-template-columns:auto 1fr;gap:.3rem 1rem}\
dt{color:#555}dd{margin:0}input{font-size:1.2rem;padding:.4rem;width:10rem;letter-spacing:.2rem}\
button{font-size:1rem;padding:.5rem 1rem;margin:.8rem .5rem 0 0}.hint{background:#fff6d5;padding:.5rem}";

/// Submits the page's form `f` once the page has loaded.
const AUTO_SUBMIT_SCRIPT: &str = "document.getElementById('f').submit();";

/// Reads the device data a 3DS Method collects, shows it, then submits the form. The
/// sandbox does not fingerprint: the data stays in the page.
const METHOD_SCRIPT: &str = "var d=document.getElementById('device');\
d.textContent=screen.width+'x'+screen.height+', UTC'+(-new Date().getTimezoneOffset()/60)+', '+navigator.language;\
document.getElementById('f').submit();";

/// A page: status, title, body (already escaped HTML), optional script, and where its
/// form may post.
struct Page {
    status: StatusCode,
    title: &'static str,
    body: String,
    script: Option<&'static str>,
    form_action: Option<String>,
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let nonce = crate::ids::new_nonce();
        let script = self.script.map_or_else(String::new, |s| format!("<script nonce=\"{nonce}\">{s}</script>"));
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>{title}</title><style nonce=\"{nonce}\">{STYLE}</style></head>\
             <body><main>{body}</main>{script}</body></html>",
            title = escape_html(self.title),
            body = self.body,
        );
        let form_action = self.form_action.unwrap_or_else(|| "'none'".to_owned());
        let csp = format!(
            "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
             form-action {form_action}; base-uri 'none'"
        );
        let mut response = (self.status, html).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        match HeaderValue::from_str(&csp) {
            Ok(value) => {
                headers.insert(header::CONTENT_SECURITY_POLICY, value);
            }
            Err(_) => {
                // Only a URL the validation let through could make this happen; fall
                // back to forbidding forms altogether rather than serving without a CSP.
                headers.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("default-src 'none'; form-action 'none'; base-uri 'none'"),
                );
            }
        }
        response
    }
}

fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape_html(name), escape_html(value))
}

/// A page whose script posts `fields` to `action` at once (a button under `<noscript>`).
fn auto_post(
    title: &'static str,
    message: &str,
    action: &str,
    fields: &[(&str, &str)],
    script: &'static str,
) -> Response {
    let Some(origin) = origin_of(action) else {
        return error_page("the notification URL is not usable");
    };
    let inputs: String = fields.iter().map(|(n, v)| hidden(n, v)).collect();
    let body = format!(
        "<h1>{title}</h1><p>{message}</p><p id=\"device\"></p>\
         <form id=\"f\" method=\"post\" action=\"{action}\">{inputs}\
         <noscript><button type=\"submit\">Continue</button></noscript></form>",
        title = escape_html(title),
        message = escape_html(message),
        action = escape_html(action),
    );
    // The 3DS Server answers these posts by sending the browser on (to the merchant's
    // return page), and Chromium applies `form-action` to every redirect of a form
    // navigation: name the target's origin and allow the web schemes it may redirect to.
    let form_action = format!("{origin} https: http:");
    Page { status: StatusCode::OK, title, body, script: Some(script), form_action: Some(form_action) }.into_response()
}

/// The 3DS Method page: collects device data, then posts `threeDSMethodData` to the
/// 3DS Server's `threeDSMethodNotificationURL`.
pub fn method_page(notification_url: &str, method_data: &str) -> Response {
    auto_post(
        "3-D Secure method",
        "Checking your device…",
        notification_url,
        &[("threeDSMethodData", method_data)],
        METHOD_SCRIPT,
    )
}

/// The final page of a challenge: posts the CRes (and the session data) to the AReq's
/// `notificationURL`.
pub fn cres_page(notification_url: &str, cres: &str, session_data: Option<&str>) -> Response {
    let mut fields = vec![("cres", cres)];
    if let Some(data) = session_data {
        fields.push(("threeDSSessionData", data));
    }
    auto_post("3-D Secure", "Returning to the merchant…", notification_url, &fields, AUTO_SUBMIT_SCRIPT)
}

/// What the challenge page shows.
#[derive(Debug)]
pub struct ChallengeView<'a> {
    pub merchant_name: &'a str,
    /// Formatted amount and currency, e.g. `1500.00 UZS`.
    pub amount: &'a str,
    /// The last four digits of the card.
    pub last4: &'a str,
    pub acs_trans_id: &'a str,
    pub nonce: &'a str,
    pub session_data: Option<&'a str>,
}

/// The challenge: the purchase, the masked card, the code field, submit and cancel.
pub fn challenge_page(view: &ChallengeView<'_>) -> Response {
    let body = format!(
        "<h1>Confirm your payment</h1>\
         <dl><dt>Merchant</dt><dd id=\"merchant\">{merchant}</dd>\
         <dt>Amount</dt><dd id=\"amount\">{amount}</dd>\
         <dt>Card</dt><dd id=\"card\">•••• {last4}</dd></dl>\
         <p class=\"hint\">Sandbox: the code is 123456</p>\
         <form method=\"post\" action=\"/acs/v2/challenge/submit\">\
         <label for=\"otp\">One-time code</label><br>\
         <input id=\"otp\" name=\"otp\" inputmode=\"numeric\" autocomplete=\"one-time-code\" autofocus>\
         {acs}{session}{nonce}<br>\
         <button id=\"submit\" type=\"submit\">Submit</button>\
         <button id=\"cancel\" type=\"submit\" name=\"cancel\" value=\"1\">Cancel</button></form>",
        merchant = escape_html(view.merchant_name),
        amount = escape_html(view.amount),
        last4 = escape_html(view.last4),
        acs = hidden("acsTransID", view.acs_trans_id),
        session = hidden("threeDSSessionData", view.session_data.unwrap_or("")),
        nonce = hidden("nonce", view.nonce),
    );
    Page {
        status: StatusCode::OK,
        title: "3-D Secure challenge",
        body,
        script: None,
        form_action: Some("'self'".to_owned()),
    }
    .into_response()
}

/// A 400 page with `message` (which never holds card data).
pub fn error_page(message: &str) -> Response {
    let body = format!("<h1>This request cannot be processed</h1><p id=\"error\">{}</p>", escape_html(message));
    Page { status: StatusCode::BAD_REQUEST, title: "3-D Secure error", body, script: None, form_action: None }
        .into_response()
}

/// A 500 page: the detail is in the log only.
pub fn internal_error_page() -> Response {
    let body = "<h1>Something went wrong</h1><p>Please try again.</p>".to_owned();
    Page { status: StatusCode::INTERNAL_SERVER_ERROR, title: "3-D Secure error", body, script: None, form_action: None }
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn escaping_covers_markup_and_both_quotes() {
        assert_eq!(
            escape_html(r#"<script>alert("x&y")</script> 'q'"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt; &#39;q&#39;"
        );
        assert_eq!(escape_html("Dev shop №1"), "Dev shop №1");
        assert_eq!(escape_html(""), "");
    }

    #[test]
    fn origins() {
        assert_eq!(origin_of("http://127.0.0.1:8080/3ds/cres?x=1").as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(origin_of("https://pay.example/x").as_deref(), Some("https://pay.example"));
        assert_eq!(origin_of("https://user@pay.example/x"), None);
        assert_eq!(origin_of("/relative"), None);
        assert_eq!(origin_of("javascript:alert(1)"), None);
    }

    async fn parts(response: Response) -> (StatusCode, axum::http::HeaderMap, String) {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn challenge_page_escapes_and_locks_down() {
        let view = ChallengeView {
            merchant_name: "<b>Evil\"shop</b>",
            amount: "1500.00 UZS",
            last4: "3220",
            acs_trans_id: "a\"><script>x</script>",
            nonce: "n0nce",
            session_data: Some("'><img src=x>"),
        };
        let (status, headers, html) = parts(challenge_page(&view)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("&lt;b&gt;Evil&quot;shop&lt;/b&gt;"), "{html}");
        assert!(!html.contains("<b>Evil"), "{html}");
        assert!(!html.contains("<script>x"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("Sandbox: the code is 123456"));
        assert!(html.contains("<input id=\"otp\" name=\"otp\""));
        assert!(html.contains("<button id=\"cancel\" type=\"submit\" name=\"cancel\" value=\"1\">"));
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("form-action 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
    }

    #[tokio::test]
    async fn auto_post_pages_carry_a_nonce_and_name_the_target_origin() {
        let (status, headers, html) = parts(cres_page("http://127.0.0.1:9/n?a=1&b=2", "eyJ4Ijo", Some("s&d"))).await;
        assert_eq!(status, StatusCode::OK);
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        assert!(csp.contains("form-action http://127.0.0.1:9 https: http:;"), "{csp}");
        let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
        assert!(html.contains(&format!("<script nonce=\"{nonce}\">")), "{html}");
        assert!(html.contains("action=\"http://127.0.0.1:9/n?a=1&amp;b=2\""), "{html}");
        assert!(html.contains("name=\"cres\" value=\"eyJ4Ijo\""));
        assert!(html.contains("name=\"threeDSSessionData\" value=\"s&amp;d\""));
        assert!(html.contains("<noscript><button type=\"submit\">"));
        // A fresh nonce per response.
        let (_, again, _) = parts(cres_page("http://127.0.0.1:9/n", "x", None)).await;
        assert_ne!(again[header::CONTENT_SECURITY_POLICY].to_str().unwrap(), csp);

        let (status, _, html) = parts(method_page("javascript:alert(1)", "x")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(!html.contains("javascript:"));
        let (status, _, html) = parts(error_page("<bad>")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(html.contains("&lt;bad&gt;"));
    }
}
