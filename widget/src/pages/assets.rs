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
}

const FILES: &[(&str, &str, &str, &str)] = &[
    (
        "checkout.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/checkout.js"),
        "the hosted checkout page: frames the card form, asks for grants, pays, shows outcomes",
    ),
    (
        "checkout.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/checkout.css"),
        "the hosted checkout page's and outcome screens' style",
    ),
    (
        "paysys.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/paysys.js"),
        "the embeddable form for partners' own pages (PaySys.mount)",
    ),
    (
        "frame.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/frame.js"),
        "the card frame: card fields, checks before sending, posts the card to the intake",
    ),
    ("frame.css", "text/css; charset=utf-8", include_str!("../../assets/frame.css"), "the card frame's style"),
];

/// Every script and style the widget serves.
pub fn inventory() -> &'static [Asset] {
    static INVENTORY: OnceLock<Vec<Asset>> = OnceLock::new();
    INVENTORY.get_or_init(|| {
        FILES
            .iter()
            .map(|&(name, content_type, body, purpose)| Asset {
                name,
                content_type,
                body,
                integrity: integrity_of(body),
                purpose,
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
