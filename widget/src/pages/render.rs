//! Pages as HTML with their Content-Security-Policy.

use super::assets::{asset, Asset};
use super::text::{decline_message, Lang};

/// A page and the Content-Security-Policy to serve it with.
#[derive(Debug, Clone)]
pub struct Page {
    pub html: String,
    pub csp: String,
}

/// What the checkout page shows.
#[derive(Debug)]
pub struct CheckoutView<'a> {
    pub checkout_id: &'a str,
    pub merchant_name: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    /// The currency's minor-unit exponent (ISO 4217).
    pub exponent: u32,
    pub description: Option<&'a str>,
    pub lang: Lang,
    /// The intake's origin: the card frame's source.
    pub intake_origin: &'a str,
    /// Where the page's scripts and styles are served, e.g. `/widget/`.
    pub asset_base: &'a str,
    /// Origins allowed to frame the page; empty: none.
    pub frame_ancestors: &'a [String],
}

/// The end of a checkout, as its screen shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Declined { code: String },
    Expired,
    Cancelled,
    Processing,
}

#[derive(Debug)]
pub struct OutcomeView<'a> {
    pub merchant_name: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub exponent: u32,
    pub lang: Lang,
    pub outcome: Outcome,
    /// Where the buyer's "continue" button goes (the merchant's signed return or cancel URL).
    pub continue_url: Option<&'a str>,
    pub asset_base: &'a str,
}

/// What the card frame needs.
#[derive(Debug)]
pub struct FrameView<'a> {
    /// The only origin that may frame it (from the frame URL's `origin`).
    pub parent_origin: &'a str,
    pub lang: Lang,
    /// Where the frame's script and style are served, e.g. `/v1/`.
    pub asset_base: &'a str,
}

pub fn checkout_page(view: &CheckoutView) -> Page {
    let amount = format_amount(view.amount_minor, view.exponent);
    let description =
        view.description.map(|d| format!("<p class=\"description\">{}</p>", escape(d))).unwrap_or_default();
    let body = format!(
        "<main data-checkout-id=\"{id}\" data-intake-origin=\"{intake}\" data-lang=\"{lang}\">\
         <h1>{merchant}</h1><p class=\"amount\">{amount} {currency}</p>{description}\
         <div id=\"card-frame\"></div><button id=\"pay\" type=\"button\">{amount} {currency}</button></main>",
        id = escape(view.checkout_id),
        intake = escape(view.intake_origin),
        lang = view.lang.as_str(),
        merchant = escape(view.merchant_name),
        currency = escape(view.currency),
    );
    let ancestors = if view.frame_ancestors.is_empty() { "'none'".to_owned() } else { view.frame_ancestors.join(" ") };
    page(
        view.lang,
        view.merchant_name,
        &body,
        view.asset_base,
        &["checkout.css"],
        &["checkout.js"],
        view.intake_origin,
        &ancestors,
        "'self'",
    )
}

pub fn outcome_page(view: &OutcomeView) -> Page {
    let text = match &view.outcome {
        Outcome::Success => "Payment complete.",
        Outcome::Declined { code } => decline_message(code, view.lang),
        Outcome::Expired => "This payment page has expired.",
        Outcome::Cancelled => "This payment was cancelled.",
        Outcome::Processing => "Your payment is being processed.",
    };
    let button = view
        .continue_url
        .map(|u| format!("<a class=\"button\" href=\"{}\">Continue</a>", escape(u)))
        .unwrap_or_default();
    let body = format!(
        "<main><h1>{}</h1><p class=\"amount\">{} {}</p><p class=\"outcome\">{}</p>{button}</main>",
        escape(view.merchant_name),
        format_amount(view.amount_minor, view.exponent),
        escape(view.currency),
        escape(text)
    );
    page(view.lang, view.merchant_name, &body, view.asset_base, &["checkout.css"], &[], "'none'", "'none'", "'none'")
}

pub fn frame_page(view: &FrameView) -> Page {
    let body = format!(
        "<form id=\"card\" data-parent-origin=\"{}\" data-lang=\"{}\" novalidate>\
         <label for=\"number\">Card number</label><input id=\"number\" autocomplete=\"cc-number\" inputmode=\"numeric\">\
         <label for=\"exp\">Expiry</label><input id=\"exp\" autocomplete=\"cc-exp\" inputmode=\"numeric\">\
         <label for=\"cvc\">CVC</label><input id=\"cvc\" autocomplete=\"cc-csc\" inputmode=\"numeric\"></form>",
        escape(view.parent_origin),
        view.lang.as_str()
    );
    page(
        view.lang,
        "Card",
        &body,
        view.asset_base,
        &["frame.css"],
        &["frame.js"],
        "'none'",
        view.parent_origin,
        "'self'",
    )
}

#[allow(clippy::too_many_arguments)]
fn page(
    lang: Lang,
    title: &str,
    body: &str,
    asset_base: &str,
    styles: &[&str],
    scripts: &[&str],
    frame_src: &str,
    frame_ancestors: &str,
    connect_src: &str,
) -> Page {
    let styles: Vec<&Asset> = styles.iter().filter_map(|n| asset(n)).collect();
    let scripts: Vec<&Asset> = scripts.iter().filter_map(|n| asset(n)).collect();
    let links: String = styles
        .iter()
        .map(|a| {
            format!(
                "<link rel=\"stylesheet\" href=\"{asset_base}{}\" integrity=\"{}\" crossorigin=\"anonymous\">",
                a.name, a.integrity
            )
        })
        .collect();
    let tags: String = scripts
        .iter()
        .map(|a| {
            format!(
                "<script src=\"{asset_base}{}\" integrity=\"{}\" crossorigin=\"anonymous\" defer></script>",
                a.name, a.integrity
            )
        })
        .collect();
    let hashes = |list: &[&Asset]| {
        if list.is_empty() {
            "'none'".to_owned()
        } else {
            list.iter().map(|a| format!("'{}'", a.integrity)).collect::<Vec<_>>().join(" ")
        }
    };
    let html = format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title>{links}{tags}</head>\
         <body>{body}</body></html>",
        lang.as_str(),
        escape(title)
    );
    let csp = format!(
        "default-src 'none'; script-src {}; style-src {}; img-src 'self' data:; connect-src {connect_src}; \
         frame-src {frame_src}; frame-ancestors {frame_ancestors}; form-action 'none'; base-uri 'none'",
        hashes(&scripts),
        hashes(&styles)
    );
    Page { html, csp }
}

/// `amount_minor` in major units with `exponent` decimals, thousands apart by spaces.
pub fn format_amount(amount_minor: i64, exponent: u32) -> String {
    let divisor = 10i64.pow(exponent);
    let (major, minor) = (amount_minor / divisor, amount_minor % divisor);
    let digits = major.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push('\u{a0}');
        }
        grouped.push(c);
    }
    if exponent == 0 {
        grouped
    } else {
        format!("{grouped}.{:0width$}", minor, width = exponent as usize)
    }
}

/// HTML text and attribute escaping.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
