//! Who may do what in the PaySys vault: principals from client certificates, roles,
//! merchant scopes, relay destinations and dual control. Pure: no I/O, no clock; the
//! vault reads the file and asks this crate for decisions.
//!
//! # Layout
//!
//! * [`Policy`] (`policy.rs`): a validated policy and its decisions —
//!   [`decide`](Policy::decide), [`needs_approval`](Policy::needs_approval),
//!   [`relay_destination`](Policy::relay_destination),
//!   [`checkout_tokens_only`](Policy::checkout_tokens_only).
//! * `parse.rs`: TOML → [`Policy`]. serde refuses unknown keys; every value is then
//!   checked with its span, so each [`PolicyError`] names the line.
//! * [`Operation`], [`CardField`] (`operation.rs`): the closed vocabularies.
//! * [`RelayTemplate`] (`template.rs`): the requests the vault may relay, with card
//!   placeholders at fixed places and typed values the caller supplies by name.
//! * [`PermissionMatrix`] (`matrix.rs`): principal × operation table for `policy check`.
//! * [`PolicyError`] (`error.rs`): why a file was refused.
//! * `dev.toml`: the default policy of the dev stack, also [`DEV_POLICY`].
//!
//! # A policy
//!
//! Deny by default: a client gets an operation only if the one role matching its
//! certificate's principal lists it. An exact principal beats a `prefix/*` pattern;
//! `*` stands for exactly one path segment, which scope `own` reads as the merchant id.
//!
//! ```
//! use paysys_policies::{Decision, DenyReason, Operation, Policy};
//!
//! let policy = Policy::from_toml(r#"
//!     [dual_control]
//!     operations = ["keys.rotate"]            # needs a second officer's keys.approve
//!
//!     [roles.officer]
//!     principals = ["spiffe://paysys/officer/*"]
//!     operations = ["keys.status", "keys.rotate", "keys.approve"]
//!
//!     [roles.merchant]
//!     principals = ["spiffe://paysys/merchant/*"]
//!     operations = ["tokens.create", "tokens.read"]
//!     scope = "own"                           # only its own tokens
//!
//!     [roles.gateway]
//!     principals = ["spiffe://paysys/gateway"]
//!     operations = ["tokens.read", "relay"]
//!     scope = "any"
//!     destinations = ["acquirer"]
//!
//!     [destinations.acquirer]
//!     url = "https://acquirer.example:443"
//!     path_prefix = "/authorize/"
//!     fields = ["number", "exp_month", "exp_year", "cvc"]
//!
//!     [destinations.acquirer.templates.sale]     # the one request it takes
//!     method = "POST"
//!     path = "/authorize/v1/sale"
//!     body = '{"pan": "{{card.number}}", "amount": "{{amount}}"}'
//!     values.amount = { type = "integer", min = 1, max = 100000 }
//! "#)?;
//!
//! let alice = "spiffe://paysys/officer/alice";
//! let m_123 = "spiffe://paysys/merchant/m_123";
//! assert_eq!(policy.decide(alice, Operation::KeysRotate, None), Decision::Allow);
//! assert!(policy.needs_approval(Operation::KeysRotate));
//! assert_eq!(policy.decide(m_123, Operation::TokensRead, Some("m_123")), Decision::Allow);
//! assert_eq!(
//!     policy.decide(m_123, Operation::TokensRead, Some("m_456")),
//!     Decision::Deny(DenyReason::MerchantScope)
//! );
//! assert_eq!(policy.decide(alice, Operation::TokensRead, Some("m_123")), Decision::Deny(DenyReason::NoRule));
//! assert!(policy.relay_destination("spiffe://paysys/gateway", "acquirer").is_some());
//! let sale = policy.relay_template("spiffe://paysys/gateway", "acquirer.sale").unwrap();
//! let values = serde_json::json!({"amount": 100});
//! assert!(sale.check_values(values.as_object().unwrap()).is_ok());
//! let smuggled = serde_json::json!({"amount": "{{card.number}}"});
//! assert!(sale.check_values(smuggled.as_object().unwrap()).unwrap_err().is_card_data());
//! # Ok::<(), paysys_policies::PolicyError>(())
//! ```
//!
//! The vault starts only with a policy that validates: unknown keys, unknown operations,
//! card fields or destinations, duplicate principals and empty allow-lists are refused,
//! e.g. `line 12: unknown operation `tokens.crate``.
//!
//! # Dev stack
//!
//! [`DEV_POLICY`] is `policies/dev.toml`. Its destinations point at
//! `https://localhost:9443`; a launcher that starts the sandbox elsewhere calls
//! [`Policy::with_destination_url`] for each destination instead of writing its own
//! TOML, so the reviewed roles, paths and fields are the ones that run.

#![forbid(unsafe_code)]

mod error;
mod matrix;
mod operation;
mod parse;
mod policy;
mod template;

pub use error::{PolicyError, Problem};
pub use matrix::{MatrixRow, PermissionMatrix};
pub use operation::{CardField, Operation};
pub use policy::{Decision, DenyReason, Destination, Policy, Scope, TemplateRefusal};
pub use template::{
    CardPlaceholder, CheckedValues, RelayTemplate, Slot, TemplateMethod, ValueError, ValueKind, ValueSpec,
};

/// The default policy of the dev stack (`policies/dev.toml`): the gateway reads tokens
/// and relays to the sandbox for any merchant; the card intake creates checkout-bound
/// tokens for any merchant and does nothing else; officers manage keys, audit and the
/// seal; merchants manage only their own tokens; rotate, retire and destroy need a
/// second officer.
pub const DEV_POLICY: &str = include_str!("../dev.toml");
