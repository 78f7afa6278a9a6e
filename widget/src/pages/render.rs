//! Pages as HTML with their Content-Security-Policy.
//!
//! Every page is built the same way ([`page`]): its scripts and styles are named by
//! inventory name only, so a page cannot load anything the inventory does not hold;
//! each is loaded from `{asset_base}{name}` with `integrity` (SRI) and
//! `crossorigin="anonymous"`, and the CSP allows exactly those scripts by hash. The
//! markup has no inline script, no `style` attribute and no event-handler attribute —
//! the tests in `widget/tests/` check every page for that.
//!
//! Everything that comes from outside (merchant name, description, origins, URLs) is
//! HTML-escaped; origins that go into the CSP are checked with [`parse_origin`] first,
//! so nothing can add a directive to the policy.

use super::assets::{asset, Asset};
use super::text::{decline_message, Lang, Texts};
use crate::origin::parse_origin;

/// A page and the Content-Security-Policy to serve it with.
#[derive(Debug, Clone)]
pub struct Page {
    pub html: String,
    pub csp: String,
}

impl Page {
    /// Every header to serve the page with (besides the status): its type, its CSP, no
    /// caching (a checkout page is a bearer link and its state changes), no referrer
    /// (the URL is the bearer link), `nosniff`, a Permissions-Policy that turns off what
    /// a payment page never needs, and `X-Frame-Options: DENY` when the CSP lets nothing
    /// frame the page (for browsers older than `frame-ancestors`).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("Content-Type", "text/html; charset=utf-8".to_owned()),
            ("Content-Security-Policy", self.csp.clone()),
            ("Cache-Control", "no-store".to_owned()),
            ("Referrer-Policy", "no-referrer".to_owned()),
            ("X-Content-Type-Options", "nosniff".to_owned()),
            ("Permissions-Policy", PERMISSIONS_POLICY.to_owned()),
        ];
        if self.csp.split(';').any(|d| d.trim() == "frame-ancestors 'none'") {
            headers.push(("X-Frame-Options", "DENY".to_owned()));
        }
        headers
    }
}

/// Features a checkout page or card frame never uses.
const PERMISSIONS_POLICY: &str =
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=(), display-capture=()";

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

impl Outcome {
    /// The screen's name in `data-outcome` and its class (`outcome-{name}`).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Declined { .. } => "declined",
            Outcome::Expired => "expired",
            Outcome::Cancelled => "cancelled",
            Outcome::Processing => "processing",
        }
    }
}

#[derive(Debug)]
pub struct OutcomeView<'a> {
    pub merchant_name: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub exponent: u32,
    pub lang: Lang,
    pub outcome: Outcome,
    /// Where the buyer's button goes: the merchant's signed return or cancel URL ("return
    /// to the shop"), or for [`Outcome::Declined`] the checkout page ("try another card").
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

/// How often the processing screen reloads itself (seconds). It has no script; a
/// `<meta http-equiv="refresh">` is what lets it poll.
pub const PROCESSING_REFRESH_SECS: u32 = 5;

/// The hosted checkout page: the merchant, the amount and the description first, then
/// the card frame (placed by `checkout.js`) and one pay button that carries the amount.
pub fn checkout_page(view: &CheckoutView) -> Page {
    checkout_page_with_notice(view, None)
}

/// The checkout page with a decline shown above a fresh card form: where the buyer
/// lands after a 3-D Secure challenge that ended in a decline
/// (`GET /checkout/{id}/return`), so the next card can be tried on the same checkout.
pub fn checkout_page_after_decline(view: &CheckoutView, decline_code: &str) -> Page {
    checkout_page_with_notice(view, Some(decline_message(decline_code, view.lang)))
}

fn checkout_page_with_notice(view: &CheckoutView, notice: Option<&str>) -> Page {
    let t = view.lang.texts();
    let money = format_money(view.amount_minor, view.exponent, view.currency, view.lang);
    let intake = parse_origin(view.intake_origin);
    let script_texts = serde_json::to_string(&CheckoutScriptTexts::new(view.lang)).unwrap_or_else(|_| "{}".to_owned());
    let description = view
        .description
        .filter(|d| !d.trim().is_empty())
        .map(|d| format!("<p class=\"description\" id=\"description\">{}</p>", escape(d)))
        .unwrap_or_default();
    let (notice_hidden, notice_text) = match notice {
        Some(text) => ("", escape(text)),
        None => (" hidden", String::new()),
    };
    let pay_label = t.checkout.pay.replace("{amount}", &money);
    let body = format!(
        "<main class=\"checkout\" id=\"checkout\" data-state=\"loading\" data-checkout-id=\"{id}\" \
         data-intake-origin=\"{intake}\" data-lang=\"{lang}\" data-texts=\"{texts}\">\
         {header}<noscript><p class=\"notice error\">{needs_javascript}</p></noscript>\
         <section class=\"summary\" aria-label=\"{amount_label}\">\
         <p class=\"amount\" id=\"amount\">{money_html}</p>{description}</section>\
         <section class=\"card-panel\" id=\"card-panel\" aria-labelledby=\"card-panel-title\">\
         <h2 class=\"panel-title\" id=\"card-panel-title\">{card_details}</h2>\
         <p class=\"notice error\" id=\"notice\" role=\"alert\"{notice_hidden}>{notice_text}</p>\
         <div class=\"card-frame\" id=\"card-frame\" aria-busy=\"true\"><p class=\"frame-loading\">{loading}</p></div>\
         <button class=\"pay\" id=\"pay\" type=\"button\" disabled data-label=\"{pay_label}\">\
         <span class=\"pay-label\">{pay_label}</span></button>\
         <button class=\"secondary\" id=\"again\" type=\"button\" hidden>{try_again}</button>\
         <p class=\"secure-note\">{secure_note}</p></section>\
         <section class=\"outcome outcome-declined\" id=\"declined\" data-outcome=\"declined\" hidden \
         aria-labelledby=\"declined-title\">\
         <div class=\"outcome-icon\" aria-hidden=\"true\"></div>\
         <h2 id=\"declined-title\">{declined_title}</h2>\
         <p class=\"error decline-message\" id=\"decline-message\" role=\"alert\"></p>\
         <p class=\"attempts-left\" id=\"attempts-left\"></p>\
         <button class=\"pay\" id=\"retry\" type=\"button\">{try_another}</button></section>\
         <section class=\"outcome outcome-processing\" id=\"processing\" data-outcome=\"processing\" hidden \
         role=\"status\" aria-labelledby=\"processing-title\">\
         <div class=\"outcome-icon\" aria-hidden=\"true\"></div>\
         <h2 id=\"processing-title\">{processing_title}</h2><p>{processing}</p></section>\
         {footer}</main>",
        id = escape(view.checkout_id),
        intake = escape(intake.unwrap_or("")),
        lang = view.lang.as_str(),
        texts = escape(&script_texts),
        header = header(view.merchant_name, view.lang, true),
        amount_label = escape(t.page.amount),
        needs_javascript = escape(t.page.needs_javascript),
        money_html = money_html(view.amount_minor, view.exponent, view.currency, view.lang),
        card_details = escape(t.checkout.card_details),
        loading = escape(t.checkout.loading_form),
        pay_label = escape(&pay_label),
        secure_note = escape(t.checkout.secure_note),
        declined_title = escape(t.checkout.declined_title),
        try_another = escape(t.checkout.try_another_card),
        try_again = escape(t.checkout.try_again),
        processing_title = escape(t.checkout.processing_title),
        processing = escape(t.checkout.processing),
        footer = footer(t),
    );
    let ancestors = source_list(view.frame_ancestors.iter().map(String::as_str));
    page(PageParts {
        lang: view.lang,
        title: view.merchant_name,
        body_class: "checkout-body",
        body: &body,
        asset_base: view.asset_base,
        styles: &["checkout.css"],
        scripts: &["checkout.js"],
        frame_src: &source_list(intake),
        frame_ancestors: &ancestors,
        connect_src: "'self'",
        refresh_secs: None,
    })
}

/// A checkout's end screen: success, decline, expiry, cancellation or processing, each
/// with its own icon, colour and wording, and a button back to the merchant. No script.
pub fn outcome_page(view: &OutcomeView) -> Page {
    let t = view.lang.texts();
    let o = &t.outcome;
    let (title, text) = match &view.outcome {
        Outcome::Success => (o.success_title, o.success),
        Outcome::Declined { code } => (o.declined_title, decline_message(code, view.lang)),
        Outcome::Expired => (o.expired_title, o.expired),
        Outcome::Cancelled => (o.cancelled_title, o.cancelled),
        Outcome::Processing => (o.processing_title, o.processing),
    };
    // After a decline the button leads back to the checkout for another card (the
    // gateway's `/return` passes the checkout's own URL); elsewhere back to the shop.
    let label = match view.outcome {
        Outcome::Declined { .. } => t.checkout.try_another_card,
        _ => o.continue_to_shop,
    };
    let button = view
        .continue_url
        .filter(|u| is_web_url(u))
        .map(|u| format!("<a class=\"button\" id=\"continue\" href=\"{}\">{}</a>", escape(u), escape(label)))
        .unwrap_or_default();
    let role = match view.outcome {
        Outcome::Declined { .. } | Outcome::Expired | Outcome::Cancelled => "alert",
        Outcome::Success | Outcome::Processing => "status",
    };
    let name = view.outcome.name();
    let body = format!(
        "<main class=\"checkout\" id=\"checkout\" data-state=\"{name}\">{header}\
         <section class=\"outcome outcome-{name}\" data-outcome=\"{name}\" aria-labelledby=\"outcome-title\">\
         <div class=\"outcome-icon\" aria-hidden=\"true\"></div>\
         <h1 id=\"outcome-title\">{title}</h1>\
         <p class=\"outcome-text\" role=\"{role}\">{text}</p>\
         <p class=\"amount outcome-amount\"><span class=\"label\">{amount_label}</span> {money}</p>\
         {button}</section>{footer}</main>",
        header = header(view.merchant_name, view.lang, false),
        title = escape(title),
        text = escape(text),
        amount_label = escape(t.page.amount),
        money = money_html(view.amount_minor, view.exponent, view.currency, view.lang),
        footer = footer(t),
    );
    page(PageParts {
        lang: view.lang,
        title: view.merchant_name,
        body_class: "checkout-body",
        body: &body,
        asset_base: view.asset_base,
        styles: &["checkout.css"],
        scripts: &[],
        frame_src: "'none'",
        frame_ancestors: "'none'",
        connect_src: "'none'",
        refresh_secs: matches!(view.outcome, Outcome::Processing).then_some(PROCESSING_REFRESH_SECS),
    })
}

/// The card frame: number, expiry, CVC and the optional cardholder name, with a label
/// and an error slot per field. `frame.js` does the rest.
pub fn frame_page(view: &FrameView) -> Page {
    let t = view.lang.texts();
    let f = &t.frame;
    let parent = parse_origin(view.parent_origin);
    let script_texts = serde_json::to_string(f).unwrap_or_else(|_| "{}".to_owned());
    let field = |id: &str, name: &str, label: &str, attrs: &str| {
        format!(
            "<div class=\"field field-{id}\" data-field=\"{id}\"><label for=\"{id}\">{label}</label>\
             <input id=\"{id}\" name=\"{name}\" type=\"text\" {attrs} spellcheck=\"false\" \
             aria-describedby=\"{id}-error\" aria-invalid=\"false\">\
             <p class=\"error\" id=\"{id}-error\" role=\"alert\" hidden></p></div>",
            label = escape(label),
        )
    };
    let number = format!(
        "<div class=\"field field-number\" data-field=\"number\"><label for=\"number\">{label}</label>\
         <div class=\"number-wrap\"><input id=\"number\" name=\"cardnumber\" type=\"text\" autocomplete=\"cc-number\" \
         inputmode=\"numeric\" autocorrect=\"off\" autocapitalize=\"off\" spellcheck=\"false\" \
         placeholder=\"1234 1234 1234 1234\" required aria-describedby=\"number-error brand\" aria-invalid=\"false\">\
         <span class=\"brand\" id=\"brand\" data-brand=\"\" aria-live=\"polite\"></span></div>\
         <p class=\"error\" id=\"number-error\" role=\"alert\" hidden></p></div>",
        label = escape(f.number)
    );
    let body = format!(
        "<form class=\"card-form\" id=\"card\" data-state=\"loading\" data-parent-origin=\"{parent}\" \
         data-lang=\"{lang}\" data-texts=\"{texts}\" novalidate autocomplete=\"on\">\
         {number}<div class=\"row\">{exp}{cvc}</div>{holder}\
         <p class=\"error form-error\" id=\"form-error\" role=\"alert\" hidden></p>\
         <p class=\"accepted\" id=\"accepted\" role=\"status\" hidden></p></form>",
        parent = escape(parent.unwrap_or("")),
        lang = view.lang.as_str(),
        texts = escape(&script_texts),
        exp = field(
            "exp",
            "exp-date",
            f.expiry,
            &format!(
                "autocomplete=\"cc-exp\" inputmode=\"numeric\" autocorrect=\"off\" maxlength=\"7\" \
                 placeholder=\"{}\" required",
                escape(f.expiry_placeholder)
            ),
        ),
        cvc = field(
            "cvc",
            "cvc",
            f.cvc,
            "autocomplete=\"cc-csc\" inputmode=\"numeric\" autocorrect=\"off\" maxlength=\"4\" placeholder=\"123\" required",
        ),
        holder = field("holder", "ccname", f.holder, "autocomplete=\"cc-name\" autocapitalize=\"characters\" maxlength=\"64\""),
    );
    page(PageParts {
        lang: view.lang,
        title: t.page.card_form_title,
        body_class: "frame-body",
        body: &body,
        asset_base: view.asset_base,
        styles: &["frame.css"],
        scripts: &["frame.js"],
        frame_src: "'none'",
        frame_ancestors: &source_list(parent),
        connect_src: "'self'",
        refresh_secs: None,
    })
}

/// The texts `checkout.js` shows, with the decline message for every known code.
#[derive(serde::Serialize)]
struct CheckoutScriptTexts {
    #[serde(flatten)]
    checkout: &'static super::text::CheckoutTexts,
    decline: std::collections::BTreeMap<&'static str, &'static str>,
    decline_default: &'static str,
}

impl CheckoutScriptTexts {
    fn new(lang: Lang) -> CheckoutScriptTexts {
        let t = lang.texts();
        let decline = super::text::DeclineReason::ALL
            .iter()
            .flat_map(|reason| reason.codes().iter().map(move |code| (*code, reason.message(lang))))
            .collect();
        CheckoutScriptTexts { checkout: &t.checkout, decline, decline_default: t.decline.refused }
    }
}

/// The merchant's name, and (on the checkout page) the language switch.
fn header(merchant_name: &str, lang: Lang, language_switch: bool) -> String {
    let t = lang.texts();
    let switch = if language_switch {
        let links: String = Lang::ALL
            .iter()
            .map(|&l| {
                let current = if l == lang { " aria-current=\"page\"" } else { "" };
                format!(
                    "<a href=\"?lang={code}\" hreflang=\"{code}\" lang=\"{code}\" data-lang=\"{code}\"{current}>{name}</a>",
                    code = l.as_str(),
                    name = escape(l.endonym()),
                )
            })
            .collect();
        format!("<nav class=\"langs\" aria-label=\"{}\">{links}</nav>", escape(t.page.language))
    } else {
        String::new()
    };
    format!(
        "<header class=\"top\"><div class=\"merchant\"><span class=\"label\">{}</span>\
         <span class=\"merchant-name\" id=\"merchant-name\">{}</span></div>{switch}</header>",
        escape(t.page.payment_to),
        escape(merchant_name),
    )
}

fn footer(t: &Texts) -> String {
    format!(
        "<footer class=\"secured\"><span class=\"lock\" aria-hidden=\"true\"></span>{}</footer>",
        escape(t.page.secured_by)
    )
}

/// The amount with its currency, the two in their own elements for styling.
fn money_html(amount_minor: i64, exponent: u32, currency: &str, lang: Lang) -> String {
    format!(
        "<span class=\"value\">{}</span>\u{a0}<span class=\"currency\">{}</span>",
        escape(&format_amount(amount_minor, exponent, lang)),
        escape(currency)
    )
}

/// What one page is made of.
struct PageParts<'a> {
    lang: Lang,
    title: &'a str,
    body_class: &'a str,
    body: &'a str,
    asset_base: &'a str,
    /// Inventory names only: a page can load nothing else.
    styles: &'a [&'a str],
    scripts: &'a [&'a str],
    /// CSP source lists, already checked.
    frame_src: &'a str,
    frame_ancestors: &'a str,
    connect_src: &'a str,
    refresh_secs: Option<u32>,
}

fn page(parts: PageParts) -> Page {
    let styles: Vec<&Asset> = parts.styles.iter().filter_map(|n| asset(n)).collect();
    let scripts: Vec<&Asset> = parts.scripts.iter().filter_map(|n| asset(n)).collect();
    let base = escape(parts.asset_base);
    let links: String = styles
        .iter()
        .map(|a| {
            format!(
                "<link rel=\"stylesheet\" href=\"{base}{}\" integrity=\"{}\" crossorigin=\"anonymous\">",
                a.name, a.integrity
            )
        })
        .collect();
    let tags: String = scripts
        .iter()
        .map(|a| {
            format!(
                "<script src=\"{base}{}\" integrity=\"{}\" crossorigin=\"anonymous\" defer></script>",
                a.name, a.integrity
            )
        })
        .collect();
    let refresh =
        parts.refresh_secs.map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">")).unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><meta name=\"robots\" content=\"noindex, nofollow\">\
         <meta name=\"format-detection\" content=\"telephone=no\">{refresh}\
         <title>{title}</title>{links}{tags}</head><body class=\"{body_class}\">{body}</body></html>",
        lang = parts.lang.as_str(),
        title = escape(parts.title),
        body_class = parts.body_class,
        body = parts.body,
    );
    Page { html, csp: csp(&scripts, &styles, &parts) }
}

/// The page's Content-Security-Policy.
///
/// * `script-src`: exactly the page's scripts, by their SRI hash (CSP 3 matches a hash
///   source against an external script's `integrity`: Chromium, Firefox ≥ 116,
///   Safari ≥ 15.6). Nothing else runs: no inline script, no other URL.
/// * `style-src 'self'` and the styles' hashes: CSP does not match hashes against
///   external stylesheets (w3c/webappsec-csp#430), so the stylesheet is allowed by its
///   origin and pinned by SRI on its `<link>`; its hash is listed too so the policy names
///   every inventory asset the page loads. No `'unsafe-inline'`, and the pages have no
///   `style` attributes.
/// * `require-trusted-types-for 'script'`: the scripts never write HTML from strings
///   (`textContent` only), so any such sink is refused outright.
fn csp(scripts: &[&Asset], styles: &[&Asset], parts: &PageParts) -> String {
    let hashes = |list: &[&Asset]| list.iter().map(|a| format!("'{}'", a.integrity)).collect::<Vec<_>>();
    let script_src = if scripts.is_empty() { "'none'".to_owned() } else { hashes(scripts).join(" ") };
    let style_src = std::iter::once("'self'".to_owned()).chain(hashes(styles)).collect::<Vec<_>>().join(" ");
    format!(
        "default-src 'none'; script-src {script_src}; style-src {style_src}; img-src 'self'; \
         connect-src {connect}; frame-src {frame}; frame-ancestors {ancestors}; form-action 'none'; \
         base-uri 'none'; require-trusted-types-for 'script'",
        connect = parts.connect_src,
        frame = parts.frame_src,
        ancestors = parts.frame_ancestors,
    )
}

/// A CSP source list of the origins that pass [`parse_origin`]; `'none'` if none do.
/// An origin cannot carry `;` or a space past `parse_origin`, so none can add a
/// directive.
fn source_list<'a>(origins: impl IntoIterator<Item = &'a str>) -> String {
    let list: Vec<&str> = origins.into_iter().filter_map(parse_origin).collect();
    if list.is_empty() {
        "'none'".to_owned()
    } else {
        list.join(" ")
    }
}

/// Only `http:`/`https:` URLs become links (never `javascript:` or `data:`).
fn is_web_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

/// `amount_minor` in major units with `exponent` decimals, its thousands grouped as
/// `lang` writes them: `150,000.00` (en), `150 000,00` (uz, ru). Works on the digits,
/// so no amount or exponent can overflow.
pub fn format_amount(amount_minor: i64, exponent: u32, lang: Lang) -> String {
    let exponent = exponent as usize;
    let digits = amount_minor.unsigned_abs().to_string();
    let digits = format!("{digits:0>width$}", width = exponent + 1);
    let (major, minor) = digits.split_at(digits.len() - exponent);
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 2);
    if amount_minor < 0 {
        out.push('-');
    }
    for (i, c) in major.chars().enumerate() {
        if i > 0 && (major.len() - i) % 3 == 0 {
            out.push(lang.group_separator());
        }
        out.push(c);
    }
    if !minor.is_empty() {
        out.push(lang.decimal_separator());
        out.push_str(minor);
    }
    out
}

/// The amount and its currency code, as the pay button and the screens show it:
/// `150 000,00 UZS`.
pub fn format_money(amount_minor: i64, exponent: u32, currency: &str, lang: Lang) -> String {
    format!("{}\u{a0}{currency}", format_amount(amount_minor, exponent, lang))
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
