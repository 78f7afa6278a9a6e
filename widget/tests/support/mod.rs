//! What the page tests share: every page the widget renders, in every language and
//! state, and a small HTML tag reader (enough for markup the widget itself writes, with
//! double-quoted attributes; anything it cannot read fails the test rather than passing
//! unseen).

#![allow(dead_code, reason = "each test file uses part of it")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a failed check is a failed test"
)]

use paysys_widget::pages::{
    checkout_page, checkout_page_after_decline, frame_page, outcome_page, CheckoutView, FrameView, Lang, Outcome,
    OutcomeView, Page,
};

pub const INTAKE: &str = "https://127.0.0.1:8444";

/// A name for the page and the page, for every page kind × language × state.
pub fn every_page() -> Vec<(String, Page)> {
    let ancestors = ["https://shop.example".to_owned()];
    let mut pages = Vec::new();
    for lang in Lang::ALL {
        for (label, description, frame_ancestors) in
            [("plain", None, &[][..]), ("described-framable", Some("Order #42 <b>"), &ancestors[..])]
        {
            let view = CheckoutView {
                checkout_id: "chk_0123456789abcdefghijklmn",
                merchant_name: "Shop & Co",
                amount_minor: 15_000_000,
                currency: "UZS",
                exponent: 2,
                description,
                lang,
                intake_origin: INTAKE,
                asset_base: "/widget/",
                frame_ancestors,
            };
            pages.push((format!("checkout {label} {}", lang.as_str()), checkout_page(&view)));
            pages.push((
                format!("checkout after decline {label} {}", lang.as_str()),
                checkout_page_after_decline(&view, "51"),
            ));
        }
        for outcome in [
            Outcome::Success,
            Outcome::Declined { code: "05".into() },
            Outcome::Expired,
            Outcome::Cancelled,
            Outcome::Processing,
        ] {
            for continue_url in [None, Some("https://shop.example/return?status=ok&sig=abc")] {
                let view = OutcomeView {
                    merchant_name: "Shop & Co",
                    amount_minor: 15_000_000,
                    currency: "UZS",
                    exponent: 2,
                    lang,
                    outcome: outcome.clone(),
                    continue_url,
                    asset_base: "/widget/",
                };
                pages.push((
                    format!("outcome {} {} continue={}", outcome.name(), lang.as_str(), continue_url.is_some()),
                    outcome_page(&view),
                ));
            }
        }
        let frame = FrameView { parent_origin: "https://gateway.example", lang, asset_base: "/v1/" };
        pages.push((format!("frame {}", lang.as_str()), frame_page(&frame)));
    }
    pages
}

/// One start tag.
#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    pub attrs: Vec<(String, Option<String>)>,
    /// Text up to the matching end tag, for `script` and `style`.
    pub content: Option<String>,
}

impl Tag {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }

    pub fn has(&self, name: &str) -> bool {
        self.attrs.iter().any(|(n, _)| n == name)
    }
}

/// Every start tag in `html`, in order.
pub fn tags(html: &str) -> Vec<Tag> {
    let bytes = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(offset) = html[i..].find('<') {
        i += offset + 1;
        if html[i..].starts_with('/') || html[i..].starts_with('!') {
            i += html[i..].find('>').expect("unclosed markup") + 1;
            continue;
        }
        let name_len = html[i..].find(|c: char| !c.is_ascii_alphanumeric()).expect("tag name runs to the end");
        assert!(name_len > 0, "a '<' that starts no tag at byte {i}: {}", &html[i.saturating_sub(20)..i + 20]);
        let name = html[i..i + name_len].to_ascii_lowercase();
        i += name_len;
        let mut attrs = Vec::new();
        loop {
            while bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if bytes[i] == b'>' {
                i += 1;
                break;
            }
            let attr_len = html[i..].find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '>').unwrap();
            assert!(attr_len > 0, "unreadable attribute in <{name}> at byte {i}");
            let attr = html[i..i + attr_len].to_ascii_lowercase();
            i += attr_len;
            if bytes[i] == b'=' {
                i += 1;
                assert_eq!(bytes[i], b'"', "<{name} {attr}=…> is not double-quoted");
                let end = html[i + 1..].find('"').expect("unclosed attribute value");
                attrs.push((attr, Some(unescape(&html[i + 1..i + 1 + end]))));
                i += end + 2;
            } else {
                attrs.push((attr, None));
            }
        }
        let content = if name == "script" || name == "style" {
            let close = format!("</{name}>");
            let end = html[i..].find(&close).expect("unclosed script or style");
            Some(html[i..i + end].to_owned())
        } else {
            None
        };
        out.push(Tag { name, attrs, content });
    }
    out
}

pub fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The CSP's directives: name → source list.
pub fn csp_directives(csp: &str) -> Vec<(String, Vec<String>)> {
    csp.split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            let mut words = d.split_whitespace().map(str::to_owned);
            let name = words.next().unwrap();
            (name, words.collect())
        })
        .collect()
}

pub fn directive(csp: &str, name: &str) -> Vec<String> {
    let all = csp_directives(csp);
    let matching: Vec<_> = all.iter().filter(|(n, _)| n == name).collect();
    assert_eq!(matching.len(), 1, "{name} appears {} times in {csp}", matching.len());
    matching[0].1.clone()
}
