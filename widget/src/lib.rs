//! The payment widget's shared parts, linked by the gateway (which signs grants and
//! serves the checkout page around the card frame) and by the intake (which checks
//! grants and serves the card frame). Nothing here touches a card number: the card
//! fields live in the frame's script, and the frame posts them to the intake only.
//!
//! * [`grant`] — one-time card grants: what they say, how the gateway signs them and how
//!   the intake checks them.
//! * [`origin`] — a web origin (`scheme://host[:port]`), parsed strictly.
//! * [`pages`] — the checkout page, the card frame, the outcome screens, and the
//!   inventory of every script and style they load (SRI, CSP by hash).

#![forbid(unsafe_code)]

pub mod grant;
pub mod origin;
pub mod pages;
