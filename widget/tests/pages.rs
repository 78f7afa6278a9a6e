//! Every page the widget renders, checked as PCI DSS 6.4.3 wants it: each script and
//! stylesheet is an inventory asset loaded with a matching integrity value, the CSP
//! allows exactly those scripts by hash, and nothing runs or styles inline.

mod support;

use paysys_widget::pages::{
    asset, checkout_page, frame_page, integrity_of, outcome_page, CheckoutView, FrameView, Lang, Outcome, OutcomeView,
};
use std::collections::BTreeSet;
use support::{directive, every_page, tags, INTAKE};

fn asset_base_of(name: &str) -> &'static str {
    if name.starts_with("frame") {
        "/v1/"
    } else {
        "/widget/"
    }
}

#[test]
fn every_script_and_stylesheet_is_an_inventory_asset_with_matching_integrity() {
    for (name, page) in every_page() {
        let base = asset_base_of(&name);
        let mut scripts = 0;
        for tag in tags(&page.html) {
            let src = match (tag.name.as_str(), tag.attr("rel")) {
                ("script", _) => tag.attr("src").unwrap_or_else(|| panic!("{name}: a <script> without src")),
                ("link", Some(rel)) if rel.split_whitespace().any(|r| r.eq_ignore_ascii_case("stylesheet")) => {
                    tag.attr("href").unwrap_or_else(|| panic!("{name}: a stylesheet without href"))
                }
                ("link", _) => panic!("{name}: a <link> that is not a stylesheet: {tag:?}"),
                _ => continue,
            };
            let file = src.strip_prefix(base).unwrap_or_else(|| panic!("{name}: {src} is not under {base}"));
            let a = asset(file).unwrap_or_else(|| panic!("{name}: {src} is not in the inventory"));
            assert_eq!(tag.attr("integrity"), Some(integrity_of(a.body).as_str()), "{name}: {src} integrity");
            assert_eq!(a.integrity, integrity_of(a.body));
            assert_eq!(tag.attr("crossorigin"), Some("anonymous"), "{name}: {src} crossorigin");
            if tag.name == "script" {
                assert!(a.content_type.starts_with("text/javascript"), "{name}: {src} is not a script");
                assert_eq!(tag.content.as_deref(), Some(""), "{name}: a script with src and a body");
                scripts += 1;
            } else {
                assert!(a.content_type.starts_with("text/css"), "{name}: {src} is not a style");
            }
        }
        let expected = if name.starts_with("outcome") { 0 } else { 1 };
        assert_eq!(scripts, expected, "{name}: scripts on the page");
    }
}

#[test]
fn the_csp_lists_exactly_the_page_assets_hashes() {
    for (name, page) in every_page() {
        let all = tags(&page.html);
        let integrity = |tag_name: &str| -> BTreeSet<String> {
            all.iter()
                .filter(|t| t.name == tag_name)
                .map(|t| format!("'{}'", t.attr("integrity").unwrap()))
                .collect::<BTreeSet<_>>()
        };
        let hashes =
            |list: Vec<String>| -> BTreeSet<String> { list.into_iter().filter(|s| s.starts_with("'sha")).collect() };
        let script_src = directive(&page.csp, "script-src");
        let style_src = directive(&page.csp, "style-src");
        let scripts = integrity("script");
        if scripts.is_empty() {
            assert_eq!(script_src, ["'none'"], "{name}");
        } else {
            // Hashes and nothing else: no host, no 'self', no keyword.
            assert_eq!(script_src.iter().cloned().collect::<BTreeSet<_>>(), scripts, "{name}: script-src");
        }
        assert_eq!(hashes(style_src.clone()), integrity("link"), "{name}: style-src hashes");
        // External stylesheets are not matched by hash (CSP 3), so their origin is allowed; nothing more.
        assert_eq!(style_src.iter().filter(|s| !s.starts_with("'sha")).collect::<Vec<_>>(), ["'self'"], "{name}");
        for (directive_name, sources) in support::csp_directives(&page.csp) {
            for s in sources {
                assert!(
                    !matches!(
                        s.as_str(),
                        "'unsafe-inline'" | "'unsafe-eval'" | "'unsafe-hashes'" | "*" | "data:" | "https:" | "http:"
                    ),
                    "{name}: {directive_name} allows {s}"
                );
            }
        }
        assert_eq!(directive(&page.csp, "default-src"), ["'none'"], "{name}");
        assert_eq!(directive(&page.csp, "base-uri"), ["'none'"], "{name}");
        assert_eq!(directive(&page.csp, "form-action"), ["'none'"], "{name}");
        assert_eq!(directive(&page.csp, "require-trusted-types-for"), ["'script'"], "{name}");
    }
}

#[test]
fn no_page_has_inline_script_style_or_handlers() {
    for (name, page) in every_page() {
        let lower = page.html.to_ascii_lowercase();
        assert!(!lower.contains("javascript:"), "{name}: a javascript: URL");
        for tag in tags(&page.html) {
            assert_ne!(tag.name, "style", "{name}: an inline <style>");
            if tag.name == "script" {
                assert!(tag.has("src"), "{name}: an inline <script>");
            }
            for (attr, _) in &tag.attrs {
                assert!(!attr.starts_with("on"), "{name}: an event handler attribute {attr} on <{}>", tag.name);
                assert_ne!(attr, "style", "{name}: a style attribute on <{}>", tag.name);
            }
        }
    }
}

#[test]
fn the_tag_reader_sees_what_the_tests_forbid() {
    // The checks above are only as good as the reader: show it catches each fault.
    let bad = r#"<p onclick="x()">a</p><div style="color:red"></div><script>alert(1)</script><style>p{}</style>"#;
    let found = tags(bad);
    assert!(found[0].has("onclick"));
    assert!(found[1].has("style"));
    assert_eq!(found[2].name, "script");
    assert!(!found[2].has("src"));
    assert_eq!(found[2].content.as_deref(), Some("alert(1)"));
    assert_eq!(found[3].name, "style");
}

fn checkout_view<'a>(merchant: &'a str, description: Option<&'a str>, ancestors: &'a [String]) -> CheckoutView<'a> {
    CheckoutView {
        checkout_id: "chk_0123456789abcdefghijklmn",
        merchant_name: merchant,
        amount_minor: 15_000_000,
        currency: "UZS",
        exponent: 2,
        description,
        lang: Lang::En,
        intake_origin: INTAKE,
        asset_base: "/widget/",
        frame_ancestors: ancestors,
    }
}

#[test]
fn merchant_name_and_description_are_escaped() {
    let hostile = "<script>alert(1)</script>\" onmouseover=\"alert(2)' &amp;";
    let page = checkout_page(&checkout_view(hostile, Some(hostile), &[]));
    assert!(!page.html.contains("<script>alert"), "raw markup from the merchant");
    assert!(!page.html.contains("\" onmouseover"), "an attribute broken out of");
    assert!(page
        .html
        .contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot; onmouseover=&quot;alert(2)&#39; &amp;amp;"));
    assert_eq!(tags(&page.html).iter().filter(|t| t.name == "script").count(), 1);
    for (attr, _) in tags(&page.html).iter().flat_map(|t| t.attrs.iter()) {
        assert!(!attr.starts_with("on"), "{attr}");
    }
    let outcome = outcome_page(&OutcomeView {
        merchant_name: hostile,
        amount_minor: 1,
        currency: "<b>",
        exponent: 2,
        lang: Lang::Ru,
        outcome: Outcome::Success,
        continue_url: Some("https://shop.example/r?a=1&b=\"><script>x</script>"),
        asset_base: "/widget/",
    });
    assert!(!outcome.html.contains("<script>"));
    assert!(!outcome.html.contains("<b>"));
    let link = tags(&outcome.html).into_iter().find(|t| t.attr("id") == Some("continue")).unwrap();
    assert_eq!(link.attr("href"), Some("https://shop.example/r?a=1&b=\"><script>x</script>"));
}

#[test]
fn a_continue_url_that_is_not_a_web_url_gets_no_button() {
    for url in ["javascript:alert(1)", "data:text/html,x", "not a url", "//shop.example"] {
        let page = outcome_page(&OutcomeView {
            merchant_name: "Shop",
            amount_minor: 100,
            currency: "UZS",
            exponent: 2,
            lang: Lang::En,
            outcome: Outcome::Cancelled,
            continue_url: Some(url),
            asset_base: "/widget/",
        });
        assert!(!page.html.contains("id=\"continue\""), "{url}");
    }
}

#[test]
fn framing_is_none_unless_allowed_and_only_valid_origins_reach_the_csp() {
    let page = checkout_page(&checkout_view("Shop", None, &[]));
    assert_eq!(directive(&page.csp, "frame-ancestors"), ["'none'"]);
    assert_eq!(directive(&page.csp, "frame-src"), [INTAKE]);
    assert_eq!(directive(&page.csp, "connect-src"), ["'self'"]);

    let ancestors = vec![
        "https://shop.example".to_owned(),
        "https://evil.example; script-src *".to_owned(),
        "https://other.example:8443".to_owned(),
        "*".to_owned(),
    ];
    let page = checkout_page(&checkout_view("Shop", None, &ancestors));
    assert_eq!(directive(&page.csp, "frame-ancestors"), ["https://shop.example", "https://other.example:8443"]);
    assert!(!page.csp.contains("evil"));

    let mut bad_intake = checkout_view("Shop", None, &[]);
    bad_intake.intake_origin = "https://intake.example; script-src *";
    let page = checkout_page(&bad_intake);
    assert_eq!(directive(&page.csp, "frame-src"), ["'none'"]);
    assert!(!page.html.contains("intake.example"));

    let frame = frame_page(&FrameView { parent_origin: "https://shop.example", lang: Lang::Uz, asset_base: "/v1/" });
    assert_eq!(directive(&frame.csp, "frame-ancestors"), ["https://shop.example"]);
    assert_eq!(directive(&frame.csp, "connect-src"), ["'self'"]);
    assert_eq!(directive(&frame.csp, "frame-src"), ["'none'"]);
    for bad in ["*", "https://shop.example/", "https://a.example https://b.example", "null", ""] {
        let frame = frame_page(&FrameView { parent_origin: bad, lang: Lang::En, asset_base: "/v1/" });
        assert_eq!(directive(&frame.csp, "frame-ancestors"), ["'none'"], "{bad}");
        let form = tags(&frame.html).into_iter().find(|t| t.attr("id") == Some("card")).unwrap();
        assert_eq!(form.attr("data-parent-origin"), Some(""), "{bad}");
    }
}

#[test]
fn the_card_frame_has_labelled_autofillable_fields_with_error_slots() {
    for lang in Lang::ALL {
        let page = frame_page(&FrameView { parent_origin: "https://gateway.example", lang, asset_base: "/v1/" });
        let all = tags(&page.html);
        let by_id = |id: &str| all.iter().find(|t| t.attr("id") == Some(id)).unwrap_or_else(|| panic!("#{id}"));
        for (id, autocomplete, numeric) in [
            ("number", "cc-number", true),
            ("exp", "cc-exp", true),
            ("cvc", "cc-csc", true),
            ("holder", "cc-name", false),
        ] {
            let input = by_id(id);
            assert_eq!(input.name, "input");
            assert_eq!(input.attr("autocomplete"), Some(autocomplete), "{id}");
            assert_eq!(input.attr("inputmode") == Some("numeric"), numeric, "{id}");
            assert_eq!(input.attr("aria-invalid"), Some("false"), "{id}");
            let described = input.attr("aria-describedby").unwrap();
            assert!(described.split_whitespace().any(|d| d == format!("{id}-error")), "{id}");
            for d in described.split_whitespace() {
                by_id(d);
            }
            let error = by_id(&format!("{id}-error"));
            assert_eq!(error.attr("role"), Some("alert"));
            assert!(error.attr("class").unwrap().split_whitespace().any(|c| c == "error"));
            assert!(all.iter().any(|t| t.name == "label" && t.attr("for") == Some(id)), "label for {id}");
            assert_eq!(input.has("required"), id != "holder", "{id}");
        }
        let form = by_id("card");
        assert_eq!(form.attr("data-parent-origin"), Some("https://gateway.example"));
        assert_eq!(form.attr("data-lang"), Some(lang.as_str()));
        let texts: serde_json::Value = serde_json::from_str(form.attr("data-texts").unwrap()).unwrap();
        assert_eq!(texts["number_invalid"], lang.texts().frame.number_invalid);
        assert_eq!(tags(&page.html)[0].attr("lang"), Some(lang.as_str()));
    }
}

#[test]
fn the_checkout_page_shows_merchant_amount_description_and_one_pay_button_with_the_amount() {
    let ancestors: Vec<String> = Vec::new();
    for lang in Lang::ALL {
        let mut view = checkout_view("Bozor Market", Some("Order 42"), &ancestors);
        view.lang = lang;
        let page = checkout_page(&view);
        let html = &page.html;
        let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("{needle} in {}", lang.as_str()));
        let money = paysys_widget::pages::format_money(15_000_000, 2, "UZS", lang);
        // Merchant, amount and description come before the card form and the button.
        assert!(at("Bozor Market") < at("id=\"card-frame\""));
        assert!(at("id=\"amount\"") < at("id=\"card-frame\""));
        assert!(at("Order 42") < at("id=\"card-frame\""));
        assert!(at("id=\"card-frame\"") < at("id=\"pay\""));
        let all = tags(html);
        let pay: Vec<_> = all.iter().filter(|t| t.name == "button" && t.attr("class") == Some("pay")).collect();
        assert_eq!(pay.len(), 2, "pay and retry");
        let button = all.iter().find(|t| t.attr("id") == Some("pay")).unwrap();
        assert!(button.attr("data-label").unwrap().contains(&money), "{}", button.attr("data-label").unwrap());
        assert!(button.has("disabled"), "pay waits for the card form");
        assert!(html.contains(&paysys_widget::pages::escape(&lang.texts().checkout.pay.replace("{amount}", &money))));
        // The language switch: a link per language, the current one marked.
        let links: Vec<_> = all.iter().filter(|t| t.name == "a" && t.has("hreflang")).collect();
        assert_eq!(links.len(), 3);
        for link in &links {
            let code = link.attr("hreflang").unwrap();
            assert_eq!(link.attr("href"), Some(format!("?lang={code}").as_str()));
            assert_eq!(link.has("aria-current"), code == lang.as_str());
        }
        let main = all.iter().find(|t| t.attr("id") == Some("checkout")).unwrap();
        assert_eq!(main.attr("data-intake-origin"), Some(INTAKE));
        assert_eq!(main.attr("data-checkout-id"), Some("chk_0123456789abcdefghijklmn"));
        let texts: serde_json::Value = serde_json::from_str(main.attr("data-texts").unwrap()).unwrap();
        assert_eq!(texts["decline"]["51"], paysys_widget::pages::decline_message("51", lang));
        assert_eq!(texts["decline_default"], paysys_widget::pages::decline_message("zz", lang));
        assert_eq!(texts["paying"], lang.texts().checkout.paying);
        for id in ["notice", "declined", "decline-message", "retry", "again", "processing", "merchant-name"] {
            assert!(all.iter().any(|t| t.attr("id") == Some(id)), "#{id}");
        }
    }
}

#[test]
fn a_checkout_after_a_decline_shows_the_decline_above_a_new_form() {
    let ancestors: Vec<String> = Vec::new();
    let mut view = checkout_view("Shop", None, &ancestors);
    view.lang = Lang::Ru;
    let page = paysys_widget::pages::checkout_page_after_decline(&view, "51");
    let notice = tags(&page.html).into_iter().find(|t| t.attr("id") == Some("notice")).unwrap();
    assert!(!notice.has("hidden"));
    assert!(page.html.contains(paysys_widget::pages::decline_message("51", Lang::Ru)));
    let plain = checkout_page(&view);
    let notice = tags(&plain.html).into_iter().find(|t| t.attr("id") == Some("notice")).unwrap();
    assert!(notice.has("hidden"));
}

#[test]
fn outcome_screens_are_distinct_and_localised() {
    let outcomes = [
        Outcome::Success,
        Outcome::Declined { code: "51".into() },
        Outcome::Expired,
        Outcome::Cancelled,
        Outcome::Processing,
    ];
    for lang in Lang::ALL {
        let mut seen = BTreeSet::new();
        for outcome in &outcomes {
            let page = outcome_page(&OutcomeView {
                merchant_name: "Shop",
                amount_minor: 150_000,
                currency: "UZS",
                exponent: 2,
                lang,
                outcome: outcome.clone(),
                continue_url: Some("https://shop.example/back"),
                asset_base: "/widget/",
            });
            let all = tags(&page.html);
            let section = all.iter().find(|t| t.attr("data-outcome").is_some()).unwrap();
            assert_eq!(section.attr("data-outcome"), Some(outcome.name()));
            assert!(section.attr("class").unwrap().split_whitespace().any(|c| c == "outcome"));
            assert!(section.attr("class").unwrap().contains(&format!("outcome-{}", outcome.name())));
            let title_start = page.html.find("id=\"outcome-title\">").unwrap() + "id=\"outcome-title\">".len();
            let title = &page.html[title_start..title_start + page.html[title_start..].find('<').unwrap()];
            assert!(seen.insert(title.to_owned()), "{title} shown twice");
            assert_eq!(all[0].attr("lang"), Some(lang.as_str()));
            assert!(page.html.contains("href=\"https://shop.example/back\""));
            let refresh = all.iter().any(|t| t.name == "meta" && t.attr("http-equiv") == Some("refresh"));
            assert_eq!(refresh, *outcome == Outcome::Processing, "only processing refreshes itself");
            assert_eq!(directive(&page.csp, "frame-ancestors"), ["'none'"]);
            assert_eq!(directive(&page.csp, "connect-src"), ["'none'"]);
        }
    }
    let declined = outcome_page(&OutcomeView {
        merchant_name: "Shop",
        amount_minor: 1,
        currency: "UZS",
        exponent: 2,
        lang: Lang::Uz,
        outcome: Outcome::Declined { code: "51".into() },
        continue_url: None,
        asset_base: "/widget/",
    });
    assert!(declined
        .html
        .contains(&paysys_widget::pages::escape(paysys_widget::pages::decline_message("51", Lang::Uz))));
    let retry = outcome_page(&OutcomeView {
        merchant_name: "Shop",
        amount_minor: 1,
        currency: "UZS",
        exponent: 2,
        lang: Lang::En,
        outcome: Outcome::Declined { code: "05".into() },
        continue_url: Some("https://gateway.example/checkout/chk_x"),
        asset_base: "/widget/",
    });
    assert!(retry.html.contains("href=\"https://gateway.example/checkout/chk_x\">Try another card</a>"));
}

#[test]
fn pages_say_no_referrer_and_fit_a_phone() {
    for (name, page) in every_page() {
        let all = tags(&page.html);
        let meta =
            |n: &str| all.iter().find(|t| t.name == "meta" && t.attr("name") == Some(n)).map(|t| t.attr("content"));
        assert_eq!(meta("referrer"), Some(Some("no-referrer")), "{name}");
        assert_eq!(meta("viewport"), Some(Some("width=device-width, initial-scale=1")), "{name}");
        assert!(page.html.starts_with("<!doctype html><html lang=\""), "{name}");
    }
}

#[test]
fn pages_and_assets_come_with_their_security_headers() {
    for (name, page) in every_page() {
        let headers = page.headers();
        let get = |n: &str| headers.iter().find(|(h, _)| *h == n).map(|(_, v)| v.as_str());
        assert_eq!(get("Content-Security-Policy"), Some(page.csp.as_str()), "{name}");
        assert_eq!(get("Cache-Control"), Some("no-store"), "{name}");
        assert_eq!(get("Referrer-Policy"), Some("no-referrer"), "{name}");
        assert_eq!(get("X-Content-Type-Options"), Some("nosniff"), "{name}");
        assert_eq!(get("Content-Type"), Some("text/html; charset=utf-8"), "{name}");
        let framable = directive(&page.csp, "frame-ancestors") != ["'none'"];
        assert_eq!(get("X-Frame-Options"), (!framable).then_some("DENY"), "{name}");
        assert!(get("Permissions-Policy").unwrap().contains("payment=()"));
    }
    for a in paysys_widget::pages::inventory() {
        let headers = a.headers();
        assert!(headers.contains(&("Content-Type", a.content_type.to_owned())));
        assert!(headers.contains(&("Access-Control-Allow-Origin", "*".to_owned())), "SRI with crossorigin needs CORS");
        assert!(headers.contains(&("X-Content-Type-Options", "nosniff".to_owned())));
    }
}
