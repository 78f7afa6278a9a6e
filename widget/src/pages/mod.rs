//! The browser side of the widget: the checkout page (served by the gateway), the card
//! frame (served by the intake), the outcome screens, and every script and style they
//! load, embedded in the binary from `widget/assets/`.
//!
//! Every script and style is an [`Asset`] in one [`inventory`] (PCI DSS 6.4.3: each
//! script on a payment page is listed, authorised and its integrity assured): pages load
//! them from `{asset_base}{name}` with Subresource Integrity, and each page's
//! Content-Security-Policy allows scripts and styles by those same hashes and nothing
//! else — no inline script, no third-party origin.

mod assets;
mod render;
mod text;

pub use assets::{asset, inventory, Asset};
pub use render::{checkout_page, frame_page, outcome_page, CheckoutView, FrameView, Outcome, OutcomeView, Page};
pub use text::{decline_message, Lang};
