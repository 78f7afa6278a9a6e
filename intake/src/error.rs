//! The one error type of the intake and the one place it becomes a response:
//! `{"error": {"code", "message"}}` with a stable code and a fixed message. Nothing a
//! client sent is ever echoed (parser messages have their digit runs cut, see
//! [`REDACT_DIGIT_RUNS_FROM`]); detail for operators goes to the log, never card data.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use paysys_server::json_body::JsonBodyRejection;
use paysys_widget::grant::GrantError;

/// Runs of this many digits (spaces and dashes between them included) are cut from JSON
/// parser messages: a CVC is three digits, so even it never reaches an answer. Line and
/// column numbers of three digits are cut too; the message stays useful without them.
pub const REDACT_DIGIT_RUNS_FROM: usize = 3;

/// Why the vault refused a card, as the intake passes it on: the vault's own stable code
/// for the refusals a buyer can do something about. Anything else the vault says is an
/// [`IntakeError::VaultRefused`] (configuration or a fault, not the buyer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VaultRefusal {
    /// `pan_invalid_characters`, `pan_invalid_length`, `pan_luhn_failed`,
    /// `pan_unsupported_brand`, `exp_month_invalid`, `exp_year_invalid`, `card_expired`,
    /// `cvc_invalid`, `cardholder_name_invalid` (422).
    Card(&'static str),
    /// `grant_used` (409): the grant's nonce is spent; a replay, or a second submit.
    GrantUsed,
    /// `grant_expired` (401): it expired between the intake's check and the vault's.
    GrantExpired,
    /// `rate_limited` (429).
    RateLimited,
}

/// The card refusals the vault may answer, with the message the buyer's frame shows
/// (the vault's own fixed texts).
const CARD_REFUSALS: &[(&str, &str)] = &[
    ("pan_invalid_characters", "the card number may contain only digits, spaces and dashes"),
    ("pan_invalid_length", "the card number must have 12 to 19 digits"),
    ("pan_luhn_failed", "the card number fails the Luhn check"),
    ("pan_unsupported_brand", "the card brand is not supported"),
    ("exp_month_invalid", "exp_month must be between 1 and 12"),
    ("exp_year_invalid", "exp_year must be a four-digit year"),
    ("card_expired", "the card has expired"),
    ("cvc_invalid", "the CVC must be 3 digits (4 for American Express)"),
    ("cardholder_name_invalid", "cardholder_name must be 1 to 64 printable characters without digits runs"),
];

impl VaultRefusal {
    /// The refusal the vault's error `code` names, if it is one the intake passes on.
    pub fn from_code(code: &str) -> Option<VaultRefusal> {
        match code {
            "grant_used" => Some(VaultRefusal::GrantUsed),
            "grant_expired" => Some(VaultRefusal::GrantExpired),
            "rate_limited" => Some(VaultRefusal::RateLimited),
            _ => CARD_REFUSALS.iter().find(|(c, _)| *c == code).map(|(c, _)| VaultRefusal::Card(c)),
        }
    }
}

/// An intake error: status + stable code + fixed message.
#[derive(Debug)]
#[non_exhaustive]
pub enum IntakeError {
    /// The body is not JSON (syntax or truncated). The message has digit runs cut.
    InvalidJson(String),
    /// JSON of the wrong shape: wrong type, missing or unknown field.
    InvalidRequest(String),
    /// The body is over `--max-body-bytes`.
    BodyTooLarge,
    /// `POST /v1/cards` without an `Origin` header equal to the intake's own origin:
    /// only the card frame the intake served may post cards.
    OriginForbidden,
    /// The grant is missing, malformed, signed by an unknown key, forged or expired.
    Grant(GrantError),
    /// The page that framed the card form is not the origin the grant names.
    GrantOriginMismatch,
    /// This client address has posted too many cards recently.
    RateLimited,
    /// The card number fails the intake's own check (characters, length, Luhn) before
    /// anything is sent to the vault; the code is the vault's for the same failure.
    CardNumber(&'static str),
    /// The vault refused the card for a reason the buyer can act on.
    Vault(VaultRefusal),
    /// The vault refused for another reason (policy, sealed, …): not the buyer's fault.
    /// The vault's code goes to the log.
    VaultRefused(String),
    /// The vault could not be reached, or its answer was not seen.
    VaultUnavailable,
    /// `GET /v1/frame` with an `origin` that is not a serialised web origin.
    FrameOriginInvalid,
    /// `GET /v1/frame` with a `lang` other than `uz`, `ru`, `en`.
    FrameLangInvalid,
    /// No route for this path.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
}

impl IntakeError {
    /// HTTP status and stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            IntakeError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            IntakeError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            IntakeError::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            IntakeError::OriginForbidden => (StatusCode::FORBIDDEN, "origin_forbidden"),
            IntakeError::Grant(e) => (StatusCode::UNAUTHORIZED, e.code()),
            IntakeError::GrantOriginMismatch => (StatusCode::FORBIDDEN, "grant_origin_mismatch"),
            IntakeError::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            IntakeError::CardNumber(code) => (StatusCode::UNPROCESSABLE_ENTITY, code),
            IntakeError::Vault(VaultRefusal::Card(code)) => (StatusCode::UNPROCESSABLE_ENTITY, code),
            IntakeError::Vault(VaultRefusal::GrantUsed) => (StatusCode::CONFLICT, "grant_used"),
            IntakeError::Vault(VaultRefusal::GrantExpired) => (StatusCode::UNAUTHORIZED, "grant_expired"),
            IntakeError::Vault(VaultRefusal::RateLimited) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            IntakeError::VaultRefused(_) => (StatusCode::BAD_GATEWAY, "vault_refused"),
            IntakeError::VaultUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "vault_unavailable"),
            IntakeError::FrameOriginInvalid => (StatusCode::BAD_REQUEST, "origin_invalid"),
            IntakeError::FrameLangInvalid => (StatusCode::BAD_REQUEST, "lang_invalid"),
            IntakeError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            IntakeError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }

    /// The stable code alone.
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    fn client_message(&self) -> String {
        let fixed = match self {
            IntakeError::InvalidJson(m) | IntakeError::InvalidRequest(m) => return m.clone(),
            IntakeError::BodyTooLarge => "the request body is too large",
            IntakeError::OriginForbidden => "cards are accepted only from the card form this service serves",
            IntakeError::Grant(GrantError::Missing) => "no grant was given",
            IntakeError::Grant(GrantError::Malformed) => "the grant is not a well-formed grant",
            IntakeError::Grant(GrantError::UnknownKey) => "the grant was signed with a key this service does not know",
            IntakeError::Grant(GrantError::SignatureInvalid) => "the grant's signature does not verify",
            IntakeError::Grant(GrantError::Expired) => "the grant has expired; start the payment again",
            IntakeError::Grant(GrantError::Key(_)) => "the grant could not be checked",
            IntakeError::GrantOriginMismatch => "the card form is framed by a page the grant does not name",
            IntakeError::RateLimited | IntakeError::Vault(VaultRefusal::RateLimited) => {
                "too many cards from this address; try again later"
            }
            IntakeError::CardNumber(code) | IntakeError::Vault(VaultRefusal::Card(code)) => {
                CARD_REFUSALS.iter().find(|(c, _)| c == code).map(|(_, m)| *m).unwrap_or("the card was refused")
            }
            IntakeError::Vault(VaultRefusal::GrantUsed) => "this grant was used already; start the payment again",
            IntakeError::Vault(VaultRefusal::GrantExpired) => "the grant has expired; start the payment again",
            IntakeError::VaultRefused(_) => "the card could not be stored; try again later",
            IntakeError::VaultUnavailable => "the card could not be stored now; try again later",
            IntakeError::FrameOriginInvalid => "origin must be a web origin such as https://shop.example",
            IntakeError::FrameLangInvalid => "lang must be uz, ru or en",
            IntakeError::NotFound => "no such endpoint",
            IntakeError::MethodNotAllowed => "method not allowed on this endpoint",
        };
        fixed.to_owned()
    }
}

impl IntoResponse for IntakeError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            IntakeError::VaultRefused(vault_code) => tracing::warn!(%vault_code, "the vault refused a card"),
            IntakeError::VaultUnavailable => tracing::warn!("the vault is unavailable"),
            _ => tracing::debug!(code, "request refused"),
        }
        let body = serde_json::json!({ "error": { "code": code, "message": self.client_message() } });
        (status, Json(body)).into_response()
    }
}

impl JsonBodyRejection for IntakeError {
    const REDACT_DIGIT_RUNS_FROM: usize = REDACT_DIGIT_RUNS_FROM;

    fn body_too_large() -> Self {
        IntakeError::BodyTooLarge
    }

    fn invalid_request(message: String) -> Self {
        IntakeError::InvalidRequest(message)
    }

    fn invalid_json(message: String) -> Self {
        IntakeError::InvalidJson(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_codes_the_buyer_can_act_on_pass_through_and_others_do_not() {
        assert_eq!(VaultRefusal::from_code("pan_luhn_failed"), Some(VaultRefusal::Card("pan_luhn_failed")));
        assert_eq!(VaultRefusal::from_code("grant_used"), Some(VaultRefusal::GrantUsed));
        for other in ["forbidden", "vault_sealed", "checkout_binding_required", "invalid_request", ""] {
            assert_eq!(VaultRefusal::from_code(other), None, "{other}");
        }
        let (status, code) = IntakeError::Vault(VaultRefusal::GrantUsed).status_and_code();
        assert_eq!((status.as_u16(), code), (409, "grant_used"));
        let (status, code) = IntakeError::VaultRefused("forbidden".into()).status_and_code();
        assert_eq!((status.as_u16(), code), (502, "vault_refused"));
    }

    #[test]
    fn every_card_refusal_has_its_fixed_message() {
        for (code, message) in CARD_REFUSALS {
            assert_eq!(IntakeError::CardNumber(code).client_message(), *message);
        }
        assert!(!IntakeError::VaultRefused("forbidden".into()).client_message().contains("forbidden"));
    }
}
