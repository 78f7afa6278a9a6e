//! EMV 3-D Secure 2.2 messages as the sandbox sends them (PRes, ARes, Erro, CRes, RReq)
//! and reads them (PReq, AReq, CReq, RRes: see [`super::validation`]), the transaction
//! status and error codes, and base64url (RFC 4648 §5, unpadded) for the browser legs.
//!
//! Field names are EMV's, spelled out with `rename` (serde's camelCase would write
//! `threeDsServerTransId`).

use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::Serialize;

/// The versions the DS and ACS speak (`messageVersion`).
pub const SUPPORTED_VERSIONS: [&str; 2] = ["2.1.0", "2.2.0"];
/// `acsReferenceNumber` of every ARes.
pub const ACS_REFERENCE_NUMBER: &str = "PAYSYS-SANDBOX-ACS";
/// `dsReferenceNumber` of every ARes.
pub const DS_REFERENCE_NUMBER: &str = "PAYSYS-SANDBOX-DS";
/// `serialNum` of the PRes: the card ranges never change, so neither does it.
pub const CARD_RANGES_SERIAL: &str = "paysys-sandbox-ranges-v1";
/// The one challenge code the sandbox ACS accepts.
pub const CHALLENGE_CODE: &str = "123456";

/// `transStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransStatus {
    /// `Y`: authenticated.
    Authenticated,
    /// `A`: attempts processing performed.
    Attempted,
    /// `C`: challenge required.
    Challenge,
    /// `N`: not authenticated.
    NotAuthenticated,
    /// `R`: rejected by the issuer.
    Rejected,
    /// `U`: authentication could not be performed.
    Unavailable,
}

impl TransStatus {
    const ALL: [TransStatus; 6] = [
        TransStatus::Authenticated,
        TransStatus::Attempted,
        TransStatus::Challenge,
        TransStatus::NotAuthenticated,
        TransStatus::Rejected,
        TransStatus::Unavailable,
    ];

    /// The one-letter code on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TransStatus::Authenticated => "Y",
            TransStatus::Attempted => "A",
            TransStatus::Challenge => "C",
            TransStatus::NotAuthenticated => "N",
            TransStatus::Rejected => "R",
            TransStatus::Unavailable => "U",
        }
    }

    /// The status stored as text.
    pub fn parse(text: &str) -> Option<TransStatus> {
        TransStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// `Y` and `A` carry an ECI and an authentication value.
    pub fn carries_authentication_value(self) -> bool {
        matches!(self, TransStatus::Authenticated | TransStatus::Attempted)
    }
}

/// `transStatusReason` values the sandbox uses.
pub mod reason {
    /// Card authentication failed (a wrong challenge code; the `N` test card).
    pub const AUTHENTICATION_FAILED: &str = "01";
    /// Expired card.
    pub const EXPIRED_CARD: &str = "05";
    /// No card record (the `U` test card).
    pub const NO_CARD_RECORD: &str = "08";
    /// Suspected fraud (the `R` test card).
    pub const SUSPECTED_FRAUD: &str = "11";
    /// Transaction timed out at the ACS (the slow card; a challenge not finished in time).
    pub const TIMED_OUT_AT_ACS: &str = "14";
}

/// `challengeCancel` values the sandbox uses.
pub mod challenge_cancel {
    /// The cardholder pressed cancel.
    pub const CARDHOLDER_CANCELLED: &str = "01";
    /// The challenge was not completed in time (`--challenge-ttl-ms`).
    pub const TIMED_OUT: &str = "05";
}

/// EMV error codes of an `Erro` message (`errorCode`) the DS sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `101`: the message is not JSON, not an object, or not the expected message type.
    MessageNotRecognised,
    /// `201`: a required element is missing.
    RequiredElementMissing,
    /// `203`: an element has the wrong format or value.
    InvalidFormat,
    /// `305`: the card number is not in an enrolled card range.
    CardNotEnrolled,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MessageNotRecognised => "101",
            ErrorCode::RequiredElementMissing => "201",
            ErrorCode::InvalidFormat => "203",
            ErrorCode::CardNotEnrolled => "305",
        }
    }

    /// `errorDescription`.
    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::MessageNotRecognised => "Message not recognised",
            ErrorCode::RequiredElementMissing => {
                "A message element required as defined in the specification is missing"
            }
            ErrorCode::InvalidFormat => "Format of one or more elements is invalid according to the specification",
            ErrorCode::CardNotEnrolled => "Cardholder account number is not in a range belonging to an enrolled issuer",
        }
    }
}

/// The EMV `Erro` message. `error_detail` names fields, never their values: an AReq's
/// fields include the card number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Erro {
    #[serde(rename = "messageType")]
    pub message_type: &'static str,
    #[serde(rename = "messageVersion")]
    pub message_version: String,
    #[serde(rename = "errorCode")]
    pub error_code: &'static str,
    #[serde(rename = "errorComponent")]
    pub error_component: &'static str,
    #[serde(rename = "errorDescription")]
    pub error_description: &'static str,
    #[serde(rename = "errorDetail")]
    pub error_detail: String,
    /// Echoed only when the request had a well-formed UUID there.
    #[serde(rename = "threeDSServerTransID", skip_serializing_if = "Option::is_none")]
    pub three_ds_server_trans_id: Option<String>,
}

impl Erro {
    /// An `Erro` from the directory server (`errorComponent` `D`).
    pub fn from_ds(code: ErrorCode, detail: impl Into<String>) -> Erro {
        Erro {
            message_type: "Erro",
            message_version: "2.2.0".to_owned(),
            error_code: code.as_str(),
            error_component: "D",
            error_description: code.description(),
            error_detail: detail.into(),
            three_ds_server_trans_id: None,
        }
    }

    pub fn code(&self) -> &'static str {
        self.error_code
    }
}

/// One card range of a PRes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardRange {
    #[serde(rename = "startRange")]
    pub start_range: String,
    #[serde(rename = "endRange")]
    pub end_range: String,
    #[serde(rename = "actionInd")]
    pub action_ind: &'static str,
    #[serde(rename = "acsStartProtocolVersion")]
    pub acs_start_protocol_version: &'static str,
    #[serde(rename = "acsEndProtocolVersion")]
    pub acs_end_protocol_version: &'static str,
    #[serde(rename = "dsStartProtocolVersion")]
    pub ds_start_protocol_version: &'static str,
    #[serde(rename = "dsEndProtocolVersion")]
    pub ds_end_protocol_version: &'static str,
    #[serde(rename = "threeDSMethodURL")]
    pub three_ds_method_url: String,
}

/// The PRes: the enrolled card ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PRes {
    #[serde(rename = "messageType")]
    pub message_type: &'static str,
    #[serde(rename = "messageVersion")]
    pub message_version: String,
    #[serde(rename = "threeDSServerTransID")]
    pub three_ds_server_trans_id: String,
    #[serde(rename = "dsTransID")]
    pub ds_trans_id: String,
    #[serde(rename = "serialNum")]
    pub serial_num: &'static str,
    #[serde(rename = "cardRangeData")]
    pub card_range_data: Vec<CardRange>,
}

/// The ARes. Stored as sent, so that a repeated AReq gets exactly this again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ARes {
    #[serde(rename = "messageType")]
    pub message_type: &'static str,
    #[serde(rename = "messageVersion")]
    pub message_version: String,
    #[serde(rename = "threeDSServerTransID")]
    pub three_ds_server_trans_id: String,
    #[serde(rename = "dsTransID")]
    pub ds_trans_id: String,
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: String,
    #[serde(rename = "acsReferenceNumber")]
    pub acs_reference_number: &'static str,
    #[serde(rename = "dsReferenceNumber")]
    pub ds_reference_number: &'static str,
    #[serde(rename = "transStatus")]
    pub trans_status: &'static str,
    #[serde(rename = "transStatusReason", skip_serializing_if = "Option::is_none")]
    pub trans_status_reason: Option<&'static str>,
    #[serde(rename = "eci", skip_serializing_if = "Option::is_none")]
    pub eci: Option<&'static str>,
    #[serde(rename = "authenticationValue", skip_serializing_if = "Option::is_none")]
    pub authentication_value: Option<String>,
    #[serde(rename = "acsURL", skip_serializing_if = "Option::is_none")]
    pub acs_url: Option<String>,
    #[serde(rename = "acsChallengeMandated", skip_serializing_if = "Option::is_none")]
    pub acs_challenge_mandated: Option<&'static str>,
    #[serde(rename = "authenticationType", skip_serializing_if = "Option::is_none")]
    pub authentication_type: Option<&'static str>,
}

/// The outcome of a transaction as `GET /3ds/v2/results/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Results {
    #[serde(rename = "threeDSServerTransID")]
    pub three_ds_server_trans_id: String,
    #[serde(rename = "dsTransID")]
    pub ds_trans_id: String,
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: String,
    #[serde(rename = "messageVersion")]
    pub message_version: String,
    #[serde(rename = "transStatus")]
    pub trans_status: String,
    #[serde(rename = "transStatusReason", skip_serializing_if = "Option::is_none")]
    pub trans_status_reason: Option<String>,
    #[serde(rename = "eci", skip_serializing_if = "Option::is_none")]
    pub eci: Option<String>,
    #[serde(rename = "authenticationValue", skip_serializing_if = "Option::is_none")]
    pub authentication_value: Option<String>,
    #[serde(rename = "challengeCancel", skip_serializing_if = "Option::is_none")]
    pub challenge_cancel: Option<String>,
    /// `false` only while a challenge is open (`transStatus` `C`).
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// The RReq the ACS posts to the 3DS Server when a challenge ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RReq {
    #[serde(rename = "messageType")]
    pub message_type: &'static str,
    #[serde(rename = "messageVersion")]
    pub message_version: String,
    #[serde(rename = "threeDSServerTransID")]
    pub three_ds_server_trans_id: String,
    #[serde(rename = "dsTransID")]
    pub ds_trans_id: String,
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: String,
    #[serde(rename = "messageCategory")]
    pub message_category: &'static str,
    #[serde(rename = "transStatus")]
    pub trans_status: String,
    #[serde(rename = "transStatusReason", skip_serializing_if = "Option::is_none")]
    pub trans_status_reason: Option<String>,
    #[serde(rename = "eci", skip_serializing_if = "Option::is_none")]
    pub eci: Option<String>,
    #[serde(rename = "authenticationValue", skip_serializing_if = "Option::is_none")]
    pub authentication_value: Option<String>,
    #[serde(rename = "authenticationType")]
    pub authentication_type: &'static str,
    #[serde(rename = "interactionCounter")]
    pub interaction_counter: &'static str,
    #[serde(rename = "challengeCancel", skip_serializing_if = "Option::is_none")]
    pub challenge_cancel: Option<String>,
}

/// The final CRes, posted by the browser to the AReq's `notificationURL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CRes {
    #[serde(rename = "threeDSServerTransID")]
    pub three_ds_server_trans_id: String,
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: String,
    #[serde(rename = "messageType")]
    pub message_type: &'static str,
    #[serde(rename = "messageVersion")]
    pub message_version: String,
    #[serde(rename = "transStatus")]
    pub trans_status: String,
    #[serde(rename = "challengeCompletionInd")]
    pub challenge_completion_ind: &'static str,
}

/// Why base64url text could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Base64UrlError {
    /// Empty input.
    #[error("empty")]
    Empty,
    /// A character outside the URL-safe alphabet (`+` and `/` included), or a bad length.
    #[error("not base64url: {0}")]
    Invalid(String),
}

/// Decoding accepts input with or without `=` padding (some senders pad), but only the
/// URL-safe alphabet.
const BASE64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// base64url without padding.
pub fn base64url_encode(bytes: &[u8]) -> String {
    general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode base64url (padding optional).
pub fn base64url_decode(text: &str) -> Result<Vec<u8>, Base64UrlError> {
    if text.is_empty() {
        return Err(Base64UrlError::Empty);
    }
    BASE64URL_LENIENT.decode(text).map_err(|e| Base64UrlError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_and_refuses_other_alphabets() {
        let json = br#"{"threeDSServerTransID":"x","n":"??>>"}"#;
        let text = base64url_encode(json);
        assert!(!text.contains(['=', '+', '/']), "{text}");
        assert_eq!(base64url_decode(&text).unwrap(), json);
        assert_eq!(base64url_decode("Pz8-Pg").unwrap(), b"??>>");
        assert_eq!(base64url_decode("Pz8-Pg==").unwrap(), b"??>>", "padding is tolerated");
        assert_eq!(base64url_decode(""), Err(Base64UrlError::Empty));
        assert!(matches!(base64url_decode("Pz8+Pg"), Err(Base64UrlError::Invalid(_))), "standard alphabet");
        assert!(matches!(base64url_decode("Pz8/Pg"), Err(Base64UrlError::Invalid(_))));
        assert!(matches!(base64url_decode("P"), Err(Base64UrlError::Invalid(_))), "impossible length");
        assert!(matches!(base64url_decode("Pz8 Pg"), Err(Base64UrlError::Invalid(_))));
        assert!(matches!(base64url_decode("Pz8-Pg=x"), Err(Base64UrlError::Invalid(_))));
    }

    #[test]
    fn statuses_and_codes_round_trip() {
        for s in TransStatus::ALL {
            assert_eq!(TransStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(TransStatus::parse("X"), None);
        let erro = serde_json::to_value(Erro::from_ds(ErrorCode::InvalidFormat, "acctNumber")).unwrap();
        assert_eq!(erro["messageType"], "Erro");
        assert_eq!(erro["errorCode"], "203");
        assert_eq!(erro["errorComponent"], "D");
        assert_eq!(erro["errorDetail"], "acctNumber");
        assert!(erro.get("threeDSServerTransID").is_none());
    }
}
