//! The browser side of the widget: the checkout page (served by the gateway), the card
//! frame (served by the intake), the outcome screens, and every script and style they
//! load, embedded in the binary from `widget/assets/`.
//!
//! Every script and style is an [`Asset`] in one [`inventory`] (PCI DSS 6.4.3: each
//! script on a payment page is listed, authorised and its integrity assured): pages load
//! them from `{asset_base}{name}` with Subresource Integrity, and each page's
//! Content-Security-Policy allows scripts by those same hashes and nothing else — no
//! inline script, no third-party origin. `docs/widget-scripts.md` is the inventory as
//! people read it ([`inventory_markdown`]); a test keeps it equal to the code.
//!
//! # Layout
//!
//! * `assets` — the inventory: name, content type, body, SRI hash and purpose of each
//!   file in `widget/assets/`.
//! * `render` — the pages as HTML and their CSP.
//! * `text` — [`Lang`] and every text in Uzbek, Russian and English, including the
//!   decline messages.
//!
//! The scripts' DOM contract (ids, data attributes, `postMessage` messages) is written
//! at the top of each script.

mod assets;
mod render;
mod text;

pub use assets::{asset, integrity_of, inventory, inventory_markdown, Asset};
pub use render::{
    checkout_page, checkout_page_after_decline, escape, format_amount, format_money, frame_page, outcome_page,
    CheckoutView, FrameView, Outcome, OutcomeView, Page, PROCESSING_REFRESH_SECS,
};
pub use text::{decline_message, DeclineReason, Lang, Texts};
