//! EMV 3-D Secure 2.2 messages as the 3DS Server builds and reads them: the AReq (a
//! relay template: the card number and expiry are placeholders the vault fills in), the
//! ARes and the DS's results, the browser's CReq and CRes (base64url JSON), the RReq and
//! its RRes, and the 3DS Method data.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The protocol version the gateway speaks.
pub const MESSAGE_VERSION: &str = "2.2.0";
/// The gateway's 3DS Server reference number (issued by EMVCo in production).
pub const SERVER_REF_NUMBER: &str = "PAYSYS-3DSS-0001";
/// The acquirer's BIN and the merchant category and country the AReq carries.
pub const ACQUIRER_BIN: &str = "400551";
pub const DEFAULT_MCC: &str = "5999";
/// Uzbekistan (ISO 3166-1 numeric).
pub const MERCHANT_COUNTRY: &str = "860";

/// The cardholder's browser as the merchant's checkout saw it (EMV browser fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserInfo {
    pub accept_header: String,
    pub user_agent: String,
    pub language: String,
    pub color_depth: u8,
    pub screen_height: u32,
    pub screen_width: u32,
    /// Minutes from UTC as JavaScript's `getTimezoneOffset()` gives them.
    pub tz_offset_min: i32,
    #[serde(default)]
    pub java_enabled: bool,
    #[serde(default = "yes")]
    pub javascript_enabled: bool,
}

fn yes() -> bool {
    true
}

impl BrowserInfo {
    /// What the AReq says when the merchant gave no browser data.
    pub fn unknown() -> BrowserInfo {
        BrowserInfo {
            accept_header: "text/html".into(),
            user_agent: "unknown".into(),
            language: "en".into(),
            color_depth: 24,
            screen_height: 768,
            screen_width: 1024,
            tz_offset_min: 0,
            java_enabled: false,
            javascript_enabled: true,
        }
    }

    /// Field limits from EMV 3DS 2.2 (Table A.1).
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.accept_header.is_empty() || self.accept_header.len() > 2048 {
            return Err("browser.accept_header must be 1-2048 characters");
        }
        if self.user_agent.is_empty() || self.user_agent.len() > 2048 {
            return Err("browser.user_agent must be 1-2048 characters");
        }
        if self.language.is_empty() || self.language.len() > 8 {
            return Err("browser.language must be 1-8 characters (an IETF BCP 47 tag)");
        }
        if ![1, 4, 8, 15, 16, 24, 32, 48].contains(&self.color_depth) {
            return Err("browser.color_depth must be one of 1, 4, 8, 15, 16, 24, 32, 48");
        }
        if self.screen_height == 0
            || self.screen_height > 999_999
            || self.screen_width == 0
            || self.screen_width > 999_999
        {
            return Err("browser.screen_height and screen_width must be 1-999999");
        }
        if !(-840..=720).contains(&self.tz_offset_min) {
            return Err("browser.tz_offset_min must be -840 to 720");
        }
        if [&self.accept_header, &self.user_agent, &self.language].iter().any(|s| s.chars().any(char::is_control)) {
            return Err("browser fields must be printable");
        }
        Ok(())
    }
}

/// What the AReq needs besides the card.
#[derive(Debug, Clone)]
pub struct AReqParams<'a> {
    pub three_ds_server_trans_id: &'a str,
    pub comp_ind: &'a str,
    pub amount: i64,
    pub currency_numeric: &'a str,
    pub exponent: u8,
    pub purchase_date: String,
    pub merchant_id: &'a str,
    pub merchant_name: &'a str,
    pub public_url: &'a str,
    pub client_ip: Option<&'a str>,
    pub browser: &'a BrowserInfo,
}

/// The values of the vault's AReq template (`sandbox_ds.areq`): everything but the card
/// number and expiry, which the vault places, and the merchant id, which it takes from
/// the token.
pub fn areq_values(p: &AReqParams<'_>) -> Map<String, Value> {
    let mut values = Map::new();
    let mut put = |name: &str, value: Value| {
        values.insert(name.to_owned(), value);
    };
    put("message_version", json!(MESSAGE_VERSION));
    put("three_ds_server_trans_id", json!(p.three_ds_server_trans_id));
    put("three_ds_server_ref_number", json!(SERVER_REF_NUMBER));
    put("three_ds_server_url", json!(format!("{}/3ds/rreq", p.public_url)));
    put("three_ds_requestor_id", json!(format!("PAYSYS-{}", p.merchant_id)));
    put("merchant_name", json!(p.merchant_name));
    put("three_ds_requestor_url", json!(p.public_url));
    put("three_ds_comp_ind", json!(p.comp_ind));
    put("purchase_amount", json!(p.amount.to_string()));
    put("purchase_currency", json!(p.currency_numeric));
    put("purchase_exponent", json!(p.exponent.to_string()));
    put("purchase_date", json!(p.purchase_date));
    put("acquirer_bin", json!(ACQUIRER_BIN));
    put("mcc", json!(DEFAULT_MCC));
    put("merchant_country_code", json!(MERCHANT_COUNTRY));
    put("notification_url", json!(format!("{}/3ds/notify", p.public_url)));
    put("browser_accept_header", json!(p.browser.accept_header));
    put("browser_java_enabled", json!(p.browser.java_enabled));
    put("browser_javascript_enabled", json!(p.browser.javascript_enabled));
    put("browser_language", json!(p.browser.language));
    put("browser_color_depth", json!(p.browser.color_depth.to_string()));
    put("browser_screen_height", json!(p.browser.screen_height.to_string()));
    put("browser_screen_width", json!(p.browser.screen_width.to_string()));
    put("browser_tz", json!(p.browser.tz_offset_min.to_string()));
    put("browser_user_agent", json!(p.browser.user_agent));
    if let Some(ip) = p.client_ip {
        put("browser_ip", json!(ip));
    }
    values
}

/// `purchaseDate`: UTC `YYYYMMDDHHMMSS`.
pub fn purchase_date(now_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(now_ms / 1000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}{:02}{:02}{:02}{:02}{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// An authentication result, from an ARes or the DS's results (the RReq's content).
/// `Debug` leaves the authentication value out.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct AuthenticationResult {
    pub message_version: String,
    pub ds_trans_id: String,
    pub acs_trans_id: String,
    pub trans_status: String,
    pub trans_status_reason: Option<String>,
    pub eci: Option<String>,
    pub authentication_value: Option<String>,
    pub acs_url: Option<String>,
    pub challenge_cancel: Option<String>,
    /// The DS's results say whether the authentication is over (`false` while the
    /// cardholder's challenge is open). An ARes is always "final" for its step.
    pub final_result: bool,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 2048).map(str::to_owned)
}

impl std::fmt::Debug for AuthenticationResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticationResult")
            .field("ds_trans_id", &self.ds_trans_id)
            .field("acs_trans_id", &self.acs_trans_id)
            .field("trans_status", &self.trans_status)
            .field("trans_status_reason", &self.trans_status_reason)
            .field("eci", &self.eci)
            .field("final_result", &self.final_result)
            .finish_non_exhaustive()
    }
}

const TRANS_STATUSES: [&str; 6] = ["Y", "A", "N", "U", "R", "C"];

impl AuthenticationResult {
    /// Read an ARes for `three_ds_server_trans_id`; `None` when it is not one (an Erro
    /// message, another transaction, a status outside the protocol).
    pub fn from_ares(v: &Value, three_ds_server_trans_id: &str) -> Option<AuthenticationResult> {
        if v.get("messageType").and_then(Value::as_str) != Some("ARes") {
            return None;
        }
        Self::read(v, three_ds_server_trans_id, true)
    }

    /// Read the DS's results of `three_ds_server_trans_id`.
    pub fn from_results(v: &Value, three_ds_server_trans_id: &str) -> Option<AuthenticationResult> {
        let final_result = v.get("final").and_then(Value::as_bool)?;
        Self::read(v, three_ds_server_trans_id, final_result)
    }

    fn read(v: &Value, three_ds_server_trans_id: &str, final_result: bool) -> Option<AuthenticationResult> {
        if text(v, "threeDSServerTransID").as_deref() != Some(three_ds_server_trans_id) {
            return None;
        }
        let trans_status = text(v, "transStatus").filter(|s| TRANS_STATUSES.contains(&s.as_str()))?;
        let result = AuthenticationResult {
            message_version: text(v, "messageVersion").unwrap_or_else(|| MESSAGE_VERSION.to_owned()),
            ds_trans_id: text(v, "dsTransID")?,
            acs_trans_id: text(v, "acsTransID")?,
            trans_status,
            trans_status_reason: text(v, "transStatusReason"),
            eci: text(v, "eci"),
            authentication_value: text(v, "authenticationValue"),
            acs_url: text(v, "acsURL"),
            challenge_cancel: text(v, "challengeCancel"),
            final_result,
        };
        // Y and A carry the proof the issuer checks; C carries where to challenge.
        let complete = match result.trans_status.as_str() {
            "Y" | "A" => result.eci.is_some() && result.authentication_value.is_some(),
            "C" => !final_result || result.acs_url.is_some(),
            _ => true,
        };
        complete.then_some(result)
    }

    /// The authentication value as `payment.check` shows it: its last four characters.
    pub fn masked_value(value: &str) -> String {
        let tail: String = value.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
        format!("****{tail}")
    }
}

/// base64url JSON, as CReq, CRes and 3DS Method data travel through the browser.
pub fn encode_browser_message(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// Decode a base64url JSON browser message (padded or not); `None` when it is not one.
pub fn decode_browser_message(text: &str) -> Option<Value> {
    if text.len() > 16 * 1024 {
        return None;
    }
    let trimmed = text.trim();
    let bytes = URL_SAFE_NO_PAD.decode(trimmed.trim_end_matches('=')).or_else(|_| URL_SAFE.decode(trimmed)).ok()?;
    serde_json::from_slice(&bytes).ok().filter(Value::is_object)
}

/// The CReq the cardholder's browser posts to the ACS.
pub fn creq(three_ds_server_trans_id: &str, acs_trans_id: &str, message_version: &str) -> String {
    encode_browser_message(&json!({
        "threeDSServerTransID": three_ds_server_trans_id,
        "acsTransID": acs_trans_id,
        "messageType": "CReq",
        "messageVersion": message_version,
        "challengeWindowSize": "05",
    }))
}

/// The ids a CRes names (its transStatus is not trusted: the result is read from the DS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CresIds {
    pub three_ds_server_trans_id: String,
    pub acs_trans_id: String,
}

pub fn decode_cres(text: &str) -> Option<CresIds> {
    let v = decode_browser_message(text)?;
    if v.get("messageType").and_then(Value::as_str) != Some("CRes") {
        return None;
    }
    Some(CresIds {
        three_ds_server_trans_id: self::text(&v, "threeDSServerTransID")?,
        acs_trans_id: self::text(&v, "acsTransID")?,
    })
}

/// The 3DS Method data the gateway's method page posts to the ACS.
pub fn method_data(three_ds_server_trans_id: &str, notification_url: &str) -> String {
    encode_browser_message(&json!({
        "threeDSServerTransID": three_ds_server_trans_id,
        "threeDSMethodNotificationURL": notification_url,
    }))
}

/// The transaction a 3DS Method notification names.
pub fn decode_method_notification(text: &str) -> Option<String> {
    let v = decode_browser_message(text)?;
    self::text(&v, "threeDSServerTransID")
}

/// The ids an RReq names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RreqIds {
    pub three_ds_server_trans_id: String,
    pub ds_trans_id: String,
    pub acs_trans_id: String,
    pub message_version: String,
}

pub fn read_rreq(v: &Value) -> Option<RreqIds> {
    if v.get("messageType").and_then(Value::as_str) != Some("RReq") {
        return None;
    }
    Some(RreqIds {
        three_ds_server_trans_id: text(v, "threeDSServerTransID")?,
        ds_trans_id: text(v, "dsTransID")?,
        acs_trans_id: text(v, "acsTransID")?,
        message_version: text(v, "messageVersion").unwrap_or_else(|| MESSAGE_VERSION.to_owned()),
    })
}

/// The RRes acknowledging a processed RReq.
pub fn rres(ids: &RreqIds) -> Value {
    json!({
        "messageType": "RRes",
        "messageVersion": ids.message_version,
        "threeDSServerTransID": ids.three_ds_server_trans_id,
        "dsTransID": ids.ds_trans_id,
        "acsTransID": ids.acs_trans_id,
        "resultsStatus": "01",
    })
}

/// An EMV Erro message from the 3DS Server (`errorComponent` `S`).
pub fn erro(code: &str, description: &str, detail: &str, three_ds_server_trans_id: Option<&str>) -> Value {
    let mut v = json!({
        "messageType": "Erro",
        "messageVersion": MESSAGE_VERSION,
        "errorCode": code,
        "errorComponent": "S",
        "errorDescription": description,
        "errorDetail": detail,
    });
    if let (Some(id), Some(obj)) = (three_ds_server_trans_id, v.as_object_mut()) {
        obj.insert("threeDSServerTransID".into(), Value::from(id));
    }
    v
}

/// A new threeDSServerTransID: a UUID v4 (RFC 4122) written so that it never holds a run
/// of 12 digits, dashes between them included (the vault masks Luhn-valid digit runs,
/// written with or without separators, in relayed answers).
pub fn new_trans_id() -> String {
    loop {
        let mut b: [u8; 16] = rand::random();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        let id = format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]);
        if !paysys_cardnum::has_card_length_digit_run(&id) {
            return id;
        }
    }
}

/// Whether the vault's masking touched a value of this answer (a `*` where the DS put
/// digits): then the answer's ids and CAVV are read again from the DS directly.
pub fn looks_masked(r: &AuthenticationResult) -> bool {
    [Some(&r.ds_trans_id), Some(&r.acs_trans_id), r.authentication_value.as_ref(), r.acs_url.as_ref()]
        .into_iter()
        .flatten()
        .any(|v| v.contains('*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(browser: &BrowserInfo) -> AReqParams<'_> {
        AReqParams {
            three_ds_server_trans_id: "8a880dc0-d2d2-4067-bcb1-b08d1690b26e",
            comp_ind: "Y",
            amount: 12_345,
            currency_numeric: "840",
            exponent: 2,
            purchase_date: purchase_date(1_700_000_000_000),
            merchant_id: "m_1",
            merchant_name: "Shop",
            public_url: "http://127.0.0.1:8080",
            client_ip: Some("203.0.113.9"),
            browser,
        }
    }

    #[test]
    fn the_areq_values_hold_no_card_field() {
        let browser = BrowserInfo::unknown();
        let values = areq_values(&params(&browser));
        assert_eq!(values["purchase_amount"], "12345");
        assert_eq!(values["purchase_currency"], "840");
        assert_eq!(values["purchase_date"], "20231114221320");
        assert_eq!(values["notification_url"], "http://127.0.0.1:8080/3ds/notify");
        assert_eq!(values["three_ds_server_url"], "http://127.0.0.1:8080/3ds/rreq");
        assert_eq!(values["browser_ip"], "203.0.113.9");
        for card in ["acct_number", "card_expiry_date", "card.number", "cvc", "number"] {
            assert!(!values.contains_key(card), "{card}");
        }
        assert!(!Value::Object(values).to_string().contains("{{"));
    }

    #[test]
    fn ares_reading_checks_the_transaction_and_the_proof() {
        let id = "8a880dc0-d2d2-4067-bcb1-b08d1690b26e";
        let y = json!({"messageType": "ARes", "threeDSServerTransID": id, "dsTransID": "d", "acsTransID": "a",
            "transStatus": "Y", "eci": "05", "authenticationValue": "AAABBBCCC"});
        let r = AuthenticationResult::from_ares(&y, id).unwrap();
        assert_eq!((r.trans_status.as_str(), r.eci.as_deref()), ("Y", Some("05")));
        assert!(AuthenticationResult::from_ares(&y, "another").is_none());
        let mut no_cavv = y.clone();
        no_cavv.as_object_mut().unwrap().remove("authenticationValue");
        assert!(AuthenticationResult::from_ares(&no_cavv, id).is_none());
        let mut odd = y.clone();
        odd["transStatus"] = json!("Q");
        assert!(AuthenticationResult::from_ares(&odd, id).is_none());
        let erro = json!({"messageType": "Erro", "threeDSServerTransID": id, "errorCode": "203"});
        assert!(AuthenticationResult::from_ares(&erro, id).is_none());
        let pending = json!({"threeDSServerTransID": id, "dsTransID": "d", "acsTransID": "a", "transStatus": "C",
            "final": false});
        assert!(!AuthenticationResult::from_results(&pending, id).unwrap().final_result);
    }

    #[test]
    fn browser_messages_round_trip_and_refuse_garbage() {
        let creq = creq("t", "a", "2.2.0");
        let v = decode_browser_message(&creq).unwrap();
        assert_eq!(v["messageType"], "CReq");
        assert_eq!(v["challengeWindowSize"], "05");
        let cres = encode_browser_message(&json!({"messageType": "CRes", "threeDSServerTransID": "t",
            "acsTransID": "a", "transStatus": "Y"}));
        assert_eq!(
            decode_cres(&cres),
            Some(CresIds { three_ds_server_trans_id: "t".into(), acs_trans_id: "a".into() })
        );
        let padded = URL_SAFE.encode(
            json!({"messageType": "CRes", "threeDSServerTransID": "t",
            "acsTransID": "a"})
            .to_string(),
        );
        assert!(decode_cres(&padded).is_some());
        assert!(decode_cres("not base64 at all!").is_none());
        assert!(decode_cres(&URL_SAFE_NO_PAD.encode("[1]")).is_none());
        assert!(decode_cres(&creq).is_none(), "a CReq is not a CRes");
    }

    #[test]
    fn trans_ids_are_uuids_without_long_digit_runs() {
        for _ in 0..2_000 {
            let id = new_trans_id();
            assert_eq!(id.len(), 36);
            assert_eq!(&id[14..15], "4");
            assert!(!paysys_cardnum::has_card_length_digit_run(&id));
        }
    }

    #[test]
    fn the_cavv_is_shown_by_its_last_four_only() {
        assert_eq!(AuthenticationResult::masked_value("AAABBBCCCDDDEEEFFF1234567890="), "****890=");
    }

    #[test]
    fn browser_info_limits() {
        let mut b = BrowserInfo::unknown();
        assert!(b.validate().is_ok());
        b.color_depth = 7;
        assert!(b.validate().is_err());
        let mut b = BrowserInfo::unknown();
        b.tz_offset_min = 900;
        assert!(b.validate().is_err());
    }
}
