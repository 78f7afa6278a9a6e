//! The script and style inventory.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::sync::OnceLock;

/// One script or style the widget's pages load.
#[derive(Debug)]
pub struct Asset {
    /// File name, also its URL's last segment.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
    /// `sha384-…`: the Subresource Integrity value, and the CSP hash source.
    pub integrity: String,
    /// What it is for (the inventory's justification).
    pub purpose: &'static str,
    /// Which service serves it, at which path.
    pub served_at: &'static str,
    /// The pages that load it.
    pub loaded_by: &'static str,
}

impl Asset {
    /// Every header to serve the asset with: its type, `nosniff`, and
    /// `Cache-Control: no-cache` (the browser may keep it but asks again: after a deploy a
    /// page names the new hash, and a stale copy would fail its integrity check). CORS
    /// (`Access-Control-Allow-Origin: *`, `Cross-Origin-Resource-Policy: cross-origin`)
    /// because a `crossorigin="anonymous"` load with SRI needs it — partners load
    /// `paysys.js` from their own origin. The files are public and carry no credentials.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Content-Type", self.content_type.to_owned()),
            ("Cache-Control", "no-cache".to_owned()),
            ("X-Content-Type-Options", "nosniff".to_owned()),
            ("Access-Control-Allow-Origin", "*".to_owned()),
            ("Cross-Origin-Resource-Policy", "cross-origin".to_owned()),
        ]
    }
}

/// One row of the inventory as written here; the hash is computed at start.
struct File {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    purpose: &'static str,
    served_at: &'static str,
    loaded_by: &'static str,
}

const SCRIPT: &str = "text/javascript; charset=utf-8";
const STYLE: &str = "text/css; charset=utf-8";

const FILES: &[File] = &[
    File {
        name: "checkout.js",
        content_type: SCRIPT,
        body: include_str!("../../assets/checkout.js"),
        purpose: "The hosted checkout page's behaviour: asks the gateway for a payment attempt, frames the intake's \
                  card form, pays with the token the frame hands over (with the browser data 3-D Secure needs), \
                  shows the waiting state and declines, follows the redirect. Never sees card data.",
        served_at: "gateway `/widget/checkout.js`",
        loaded_by: "the checkout page (`GET /checkout/{id}`)",
    },
    File {
        name: "checkout.css",
        content_type: STYLE,
        body: include_str!("../../assets/checkout.css"),
        purpose: "The look of the checkout page and the outcome screens.",
        served_at: "gateway `/widget/checkout.css`",
        loaded_by: "the checkout page, the outcome screens",
    },
    File {
        name: "paysys.js",
        content_type: SCRIPT,
        body: include_str!("../../assets/paysys.js"),
        purpose: "`PaySys.mount`: the embeddable form for partners' own pages. Creates an attempt with the \
                  checkout's client secret, frames the intake's card form, relays submit, pays with the token, \
                  emits events. Never sees card data.",
        served_at: "gateway `/widget/paysys.js`",
        loaded_by: "partners' pages (cross-origin, with the `integrity` given here)",
    },
    File {
        name: "frame.js",
        content_type: SCRIPT,
        body: include_str!("../../assets/frame.js"),
        purpose: "The card frame: formats and checks the card fields (brand, Luhn, expiry, CVC), posts the card \
                  with the grant to the intake, hands the token to the page by `postMessage` to the grant's \
                  origin only. The only script that touches card data; it never logs or stores it.",
        served_at: "intake `/v1/frame.js`",
        loaded_by: "the card frame (`GET /v1/frame`)",
    },
    File {
        name: "frame.css",
        content_type: STYLE,
        body: include_str!("../../assets/frame.css"),
        purpose: "The look of the card frame.",
        served_at: "intake `/v1/frame.css`",
        loaded_by: "the card frame",
    },
];

/// Every script and style the widget serves.
pub fn inventory() -> &'static [Asset] {
    static INVENTORY: OnceLock<Vec<Asset>> = OnceLock::new();
    INVENTORY.get_or_init(|| {
        FILES
            .iter()
            .map(|f| Asset {
                name: f.name,
                content_type: f.content_type,
                body: f.body,
                integrity: integrity_of(f.body),
                purpose: f.purpose,
                served_at: f.served_at,
                loaded_by: f.loaded_by,
            })
            .collect()
    })
}

/// The asset called `name`, if the inventory has one.
pub fn asset(name: &str) -> Option<&'static Asset> {
    inventory().iter().find(|a| a.name == name)
}

/// `sha384-` and the base64 SHA-384 of `body`.
pub fn integrity_of(body: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA384, body.as_bytes());
    format!("sha384-{}", STANDARD.encode(digest.as_ref()))
}

/// The inventory as Markdown: `docs/widget-scripts.md` is exactly this (a test checks;
/// `PAYSYS_WRITE_DOCS=1 cargo test -p paysys-widget --test inventory` rewrites it).
pub fn inventory_markdown() -> String {
    let mut out = String::from(INVENTORY_INTRO);
    out.push_str("\n| file | type | served at | loaded by | purpose |\n|---|---|---|---|---|\n");
    for a in inventory() {
        let kind = if a.content_type.starts_with("text/css") { "style" } else { "script" };
        out.push_str(&format!("| `{}` | {kind} | {} | {} | {} |\n", a.name, a.served_at, a.loaded_by, a.purpose));
    }
    out.push_str("\n## Integrity (SHA-384, as in `integrity` and the CSP)\n\n");
    for a in inventory() {
        out.push_str(&format!("* `{}`: `{}`\n", a.name, a.integrity));
    }
    out.push_str(INVENTORY_CHECKS);
    out
}

const INVENTORY_INTRO: &str = "\
# Widget scripts and styles: the inventory (PCI DSS 6.4.3, 11.6.1)

<!-- Generated from widget/src/pages/assets.rs by `PAYSYS_WRITE_DOCS=1 cargo test -p paysys-widget --test inventory`; \
a test fails when this file and the code differ. -->

Every script and style that the checkout page, the outcome screens and the card frame
load is listed here, with why it is there. There is nothing else: no third-party script,
no inline script or style, no analytics. The files live in `widget/assets/` and are
compiled into the binaries (`include_str!`), so what is served is what was reviewed.
";

const INVENTORY_CHECKS: &str = "
## How integrity is assured

* **Subresource Integrity.** Every `<script>` and `<link rel=\"stylesheet\">` carries
  `integrity=\"sha384-…\"` and `crossorigin=\"anonymous\"`; the browser refuses a file
  whose bytes differ. Partners embedding `paysys.js` put the same value on their tag.
* **CSP by hash.** Each page's `Content-Security-Policy` has `script-src` with exactly
  the hashes of the scripts it loads and nothing else (no `'unsafe-inline'`, no host).
  Stylesheets: CSP hashes do not apply to external stylesheets, so `style-src` is
  `'self'` plus the listed hashes, and SRI pins the file; the pages have no inline
  style and no `style` attribute. `default-src 'none'`, `base-uri 'none'`,
  `form-action 'none'`, `require-trusted-types-for 'script'`; `frame-ancestors` is
  `'none'` for the checkout page unless the merchant allows framing, and exactly the
  grant's origin for the card frame.
* **Tests** (`widget/tests/`, run in CI): every script and stylesheet in every rendered
  page is an inventory asset whose `integrity` matches its body; the CSP lists exactly
  those hashes; no page has an inline script, an inline style, a `style` attribute or an
  event-handler attribute; a file in `widget/assets/` that is not in the inventory fails
  the build's tests; this document equals the generated one.
* **Changing a script** changes its hash: the pages and the CSP follow automatically,
  this document must be regenerated (the test says so), and partners embedding
  `paysys.js` need the new `integrity` value.
";
