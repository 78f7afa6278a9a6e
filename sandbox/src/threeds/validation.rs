//! Reading and checking the messages the DS and ACS receive: the PReq and the AReq
//! (refused with an EMV `Erro`: `101` not an AReq / not JSON, `201` a required element
//! missing, `203` an element malformed), the CReq and the 3DS Method data (refused with
//! a plain message for the 400 page).
//!
//! Missing elements are reported before malformed ones, every offending field by name
//! in `errorDetail` — never a value: the card number is one of them.

use super::messages::{Erro, ErrorCode, SUPPORTED_VERSIONS};
use crate::cards::CardNumber;
use crate::ids::is_uuid;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// Longest URL accepted (EMV's limit for `threeDSServerURL` and `notificationURL`).
const MAX_URL_LEN: usize = 2048;
/// Longest free-text element accepted (names, references, headers).
const MAX_TEXT_LEN: usize = 2048;

/// A valid AReq: what the DS and ACS keep of it. The card number stays in its secret
/// wrapper; the browser fields are checked and dropped.
#[derive(Debug)]
pub struct AuthenticationRequest {
    pub message_version: String,
    pub three_ds_server_trans_id: String,
    pub three_ds_server_url: String,
    pub card: CardNumber,
    /// `cardExpiryDate` as (month 1–12, two-digit year).
    pub card_expiry: (u32, u32),
    /// `purchaseAmount` in minor units.
    pub purchase_amount: i64,
    /// ISO 4217 numeric code.
    pub purchase_currency: String,
    pub purchase_exponent: u32,
    pub merchant_name: String,
    pub notification_url: String,
}

/// A valid PReq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparationRequest {
    pub message_version: String,
    pub three_ds_server_trans_id: String,
}

/// A valid CReq (browser-based, final challenge window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRequest {
    pub three_ds_server_trans_id: String,
    pub acs_trans_id: String,
    pub message_version: String,
}

/// The decoded `threeDSMethodData` of a 3DS Method call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodData {
    pub three_ds_server_trans_id: String,
    pub notification_url: String,
}

/// Collects the missing and malformed elements of one message.
struct Fields {
    map: Map<String, Value>,
    missing: Vec<&'static str>,
    invalid: Vec<&'static str>,
}

impl Fields {
    fn new(map: Map<String, Value>) -> Fields {
        Fields { map, missing: Vec::new(), invalid: Vec::new() }
    }

    /// A required string element passing `check`; empty text when missing or malformed.
    fn text(&mut self, name: &'static str, check: impl Fn(&str) -> bool) -> String {
        self.optional_text(name, check).unwrap_or_else(|| {
            if !self.invalid.contains(&name) {
                self.missing.push(name);
            }
            String::new()
        })
    }

    /// An optional string element: `None` when absent or null (or malformed, which is
    /// recorded).
    fn optional_text(&mut self, name: &'static str, check: impl Fn(&str) -> bool) -> Option<String> {
        match self.map.remove(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if check(&s) => Some(s),
            Some(_) => {
                self.invalid.push(name);
                None
            }
        }
    }

    /// A required element that EMV sends as a string of digits; a JSON number is
    /// accepted as well (browser screen sizes and the like are often sent as numbers).
    fn digits(&mut self, name: &'static str, check: impl Fn(&str) -> bool) -> String {
        if let Some(Value::Number(n)) = self.map.get(name) {
            let text = n.to_string();
            self.map.insert(name.to_owned(), Value::String(text));
        }
        self.text(name, check)
    }

    fn flag(&mut self, name: &'static str, required: bool) -> Option<bool> {
        match self.map.remove(name) {
            None | Some(Value::Null) => {
                if required {
                    self.missing.push(name);
                }
                None
            }
            Some(Value::Bool(b)) => Some(b),
            Some(_) => {
                self.invalid.push(name);
                None
            }
        }
    }

    /// The elements in error: missing ones first (`201`), then malformed ones (`203`).
    fn verdict(&self) -> Option<(ErrorCode, String)> {
        if !self.missing.is_empty() {
            Some((ErrorCode::RequiredElementMissing, self.missing.join(",")))
        } else if !self.invalid.is_empty() {
            Some((ErrorCode::InvalidFormat, self.invalid.join(",")))
        } else {
            None
        }
    }
}

/// The body as a JSON object of the expected `messageType`, or `101`.
fn message_object(body: &[u8], message_type: &str) -> Result<Map<String, Value>, Box<Erro>> {
    let not_recognised = |detail: &str| Box::new(Erro::from_ds(ErrorCode::MessageNotRecognised, detail));
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err(not_recognised("the message is not a JSON object"));
    };
    match map.get("messageType") {
        Some(Value::String(t)) if t == message_type => Ok(map),
        _ => Err(not_recognised("messageType")),
    }
}

/// The `Erro` for `code`, echoing the transaction id and version only when well formed.
fn erro(code: ErrorCode, detail: String, trans_id: Option<&str>, version: Option<&str>) -> Box<Erro> {
    let mut erro = Erro::from_ds(code, detail);
    erro.three_ds_server_trans_id = trans_id.filter(|id| is_uuid(id)).map(str::to_owned);
    if let Some(v) = version.filter(|v| SUPPORTED_VERSIONS.contains(v)) {
        v.clone_into(&mut erro.message_version);
    }
    Box::new(erro)
}

fn is_version(v: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&v)
}

fn is_text(v: &str) -> bool {
    !v.trim().is_empty() && v.len() <= MAX_TEXT_LEN && !v.chars().any(char::is_control)
}

fn is_digits(v: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    lengths.contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit())
}

/// An absolute `http://` or `https://` URL with a host.
pub fn is_http_url(v: &str) -> bool {
    if v.len() > MAX_URL_LEN || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    match v.parse::<hyper::Uri>() {
        Ok(uri) => matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some_and(|h| !h.is_empty()),
        Err(_) => false,
    }
}

/// `YYMM` with a month 01–12: (month, year).
fn parse_expiry(v: &str) -> Option<(u32, u32)> {
    if !is_digits(v, 4..=4) {
        return None;
    }
    let year: u32 = v.get(0..2)?.parse().ok()?;
    let month: u32 = v.get(2..4)?.parse().ok()?;
    (1..=12).contains(&month).then_some((month, year))
}

/// `YYYYMMDDHHMMSS`, a real date and time.
fn is_purchase_date(v: &str) -> bool {
    if !is_digits(v, 14..=14) {
        return false;
    }
    let format = time::macros::format_description!("[year][month][day][hour][minute][second]");
    time::PrimitiveDateTime::parse(v, &format).is_ok()
}

fn is_ip(v: &str) -> bool {
    v.parse::<std::net::IpAddr>().is_ok()
}

/// `browserTZ`: minutes from UTC, optionally negative.
fn is_tz(v: &str) -> bool {
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    is_digits(digits, 1..=5)
}

/// Read and check an AReq.
pub fn parse_areq(body: &[u8]) -> Result<AuthenticationRequest, Box<Erro>> {
    let mut map = message_object(body, "AReq")?;
    // The card number leaves the JSON value at once, into its zeroizing wrapper.
    let card = match map.remove("acctNumber") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Ok(CardNumber::new(&Zeroizing::new(s)))),
        Some(_) => Some(Err(())),
    };
    let mut f = Fields::new(map);
    let message_version = f.text("messageVersion", is_version);
    let trans_id = f.text("threeDSServerTransID", is_uuid);
    f.text("threeDSServerRefNumber", is_text);
    let three_ds_server_url = f.text("threeDSServerURL", is_http_url);
    f.text("threeDSRequestorID", is_text);
    f.text("threeDSRequestorName", is_text);
    f.text("threeDSRequestorURL", is_http_url);
    f.text("threeDSCompInd", |v| matches!(v, "Y" | "N" | "U"));
    f.text("deviceChannel", |v| v == "02");
    f.text("messageCategory", |v| v == "01");
    match &card {
        None => f.missing.push("acctNumber"),
        Some(Ok(c)) if c.is_valid() => {}
        Some(_) => f.invalid.push("acctNumber"),
    }
    let expiry = f.text("cardExpiryDate", |v| parse_expiry(v).is_some());
    let amount = f.text("purchaseAmount", |v| is_digits(v, 1..=12));
    let purchase_currency = f.text("purchaseCurrency", |v| is_digits(v, 3..=3));
    let exponent = f.text("purchaseExponent", |v| is_digits(v, 1..=1));
    f.text("purchaseDate", is_purchase_date);
    f.text("acquirerBIN", is_text);
    f.text("acquirerMerchantID", is_text);
    let merchant_name = f.text("merchantName", is_text);
    f.text("mcc", |v| is_digits(v, 4..=4));
    f.text("merchantCountryCode", |v| is_digits(v, 3..=3));
    let notification_url = f.text("notificationURL", is_http_url);
    f.text("browserAcceptHeader", is_text);
    f.optional_text("browserIP", is_ip);
    f.flag("browserJavaEnabled", true);
    f.flag("browserJavascriptEnabled", false);
    f.text("browserLanguage", |v| is_text(v) && v.len() <= 35);
    f.digits("browserColorDepth", |v| is_digits(v, 1..=2));
    f.digits("browserScreenHeight", |v| is_digits(v, 1..=6));
    f.digits("browserScreenWidth", |v| is_digits(v, 1..=6));
    f.digits("browserTZ", is_tz);
    f.text("browserUserAgent", is_text);
    if let Some((code, detail)) = f.verdict() {
        return Err(erro(code, detail, Some(&trans_id), Some(&message_version)));
    }
    let (Some(Ok(card)), Some(card_expiry), Ok(purchase_amount), Ok(purchase_exponent)) =
        (card, parse_expiry(&expiry), amount.parse::<i64>(), exponent.parse::<u32>())
    else {
        // Unreachable after the checks above; refuse rather than guess.
        return Err(erro(ErrorCode::InvalidFormat, "acctNumber".into(), Some(&trans_id), Some(&message_version)));
    };
    Ok(AuthenticationRequest {
        message_version,
        three_ds_server_trans_id: trans_id,
        three_ds_server_url,
        card,
        card_expiry,
        purchase_amount,
        purchase_currency,
        purchase_exponent,
        merchant_name,
        notification_url,
    })
}

/// Read and check a PReq.
pub fn parse_preq(body: &[u8]) -> Result<PreparationRequest, Box<Erro>> {
    let mut f = Fields::new(message_object(body, "PReq")?);
    let message_version = f.text("messageVersion", is_version);
    let trans_id = f.text("threeDSServerTransID", is_uuid);
    f.text("threeDSServerRefNumber", is_text);
    if let Some((code, detail)) = f.verdict() {
        return Err(erro(code, detail, Some(&trans_id), Some(&message_version)));
    }
    Ok(PreparationRequest { message_version, three_ds_server_trans_id: trans_id })
}

/// JSON object decoded from a base64url form field, or why not.
fn decode_form_json(field: &str, encoded: &str) -> Result<Map<String, Value>, String> {
    let bytes = super::messages::base64url_decode(encoded.trim()).map_err(|e| format!("{field} is {e}"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(format!("{field} is not a base64url-encoded JSON object")),
    }
}

fn string_field(map: &Map<String, Value>, name: &str, check: impl Fn(&str) -> bool) -> Result<String, String> {
    match map.get(name) {
        Some(Value::String(s)) if check(s) => Ok(s.clone()),
        Some(_) => Err(format!("{name} is malformed")),
        None => Err(format!("{name} is missing")),
    }
}

/// Decode the `creq` form field.
pub fn parse_creq(encoded: &str) -> Result<ChallengeRequest, String> {
    let map = decode_form_json("creq", encoded)?;
    string_field(&map, "messageType", |v| v == "CReq")?;
    Ok(ChallengeRequest {
        three_ds_server_trans_id: string_field(&map, "threeDSServerTransID", is_uuid)?,
        acs_trans_id: string_field(&map, "acsTransID", is_uuid)?,
        message_version: string_field(&map, "messageVersion", is_version)?,
    })
}

/// Decode the `threeDSMethodData` form field.
pub fn parse_method_data(encoded: &str) -> Result<MethodData, String> {
    let map = decode_form_json("threeDSMethodData", encoded)?;
    Ok(MethodData {
        three_ds_server_trans_id: string_field(&map, "threeDSServerTransID", is_uuid)?,
        notification_url: string_field(&map, "threeDSMethodNotificationURL", is_http_url)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn areq() -> Value {
        json!({
            "messageType": "AReq", "messageVersion": "2.2.0",
            "threeDSServerTransID": ID, "threeDSServerRefNumber": "PAYSYS-3DS-SERVER",
            "threeDSServerURL": "http://127.0.0.1:8080/3ds/rreq",
            "threeDSRequestorID": "m_dev", "threeDSRequestorName": "Dev shop",
            "threeDSRequestorURL": "https://shop.example", "threeDSCompInd": "Y",
            "deviceChannel": "02", "messageCategory": "01",
            "acctNumber": "4000000000003014", "cardExpiryDate": "3012",
            "purchaseAmount": "150000", "purchaseCurrency": "860", "purchaseExponent": "2",
            "purchaseDate": "20300115103000", "acquirerBIN": "400000", "acquirerMerchantID": "m_dev",
            "merchantName": "Dev shop", "mcc": "5411", "merchantCountryCode": "860",
            "notificationURL": "http://127.0.0.1:8080/3ds/cres",
            "browserAcceptHeader": "text/html", "browserIP": "192.0.2.1",
            "browserJavaEnabled": false, "browserJavascriptEnabled": true,
            "browserLanguage": "en-US", "browserColorDepth": "24",
            "browserScreenHeight": "1080", "browserScreenWidth": 1920, "browserTZ": "-300",
            "browserUserAgent": "Mozilla/5.0", "someFutureField": {"x": 1}
        })
    }

    fn check(message: Value) -> Result<AuthenticationRequest, Box<Erro>> {
        parse_areq(&serde_json::to_vec(&message).unwrap())
    }

    fn refused(message: Value) -> Box<Erro> {
        let erro = check(message).unwrap_err();
        let text = serde_json::to_string(&erro).unwrap();
        assert!(!text.contains("4000000000003014"), "{text}");
        erro
    }

    #[test]
    fn a_complete_areq_is_accepted() {
        let a = check(areq()).unwrap();
        assert_eq!(a.three_ds_server_trans_id, ID);
        assert_eq!(a.card.masked(), "400000******3014");
        assert_eq!(a.card_expiry, (12, 30));
        assert_eq!((a.purchase_amount, a.purchase_currency.as_str(), a.purchase_exponent), (150_000, "860", 2));
        let mut optional_absent = areq();
        optional_absent.as_object_mut().unwrap().remove("browserIP");
        optional_absent.as_object_mut().unwrap().remove("browserJavascriptEnabled");
        assert!(check(optional_absent).is_ok());
    }

    #[test]
    fn not_an_areq_is_101() {
        for body in [&b"not json"[..], b"[1,2]", b"\"AReq\""] {
            assert_eq!(parse_areq(body).unwrap_err().code(), "101");
        }
        let mut m = areq();
        m["messageType"] = json!("PReq");
        assert_eq!(refused(m).code(), "101");
        let mut m = areq();
        m.as_object_mut().unwrap().remove("messageType");
        assert_eq!(refused(m).code(), "101");
    }

    #[test]
    fn missing_elements_are_201_and_named() {
        let mut m = areq();
        m.as_object_mut().unwrap().remove("acctNumber");
        m.as_object_mut().unwrap().remove("notificationURL");
        m["purchaseAmount"] = Value::Null;
        let erro = refused(m);
        assert_eq!(erro.code(), "201");
        assert_eq!(erro.error_detail, "acctNumber,purchaseAmount,notificationURL");
        assert_eq!(erro.three_ds_server_trans_id.as_deref(), Some(ID));
        // Missing wins over malformed.
        let mut m = areq();
        m.as_object_mut().unwrap().remove("mcc");
        m["cardExpiryDate"] = json!("12/30");
        let erro = refused(m);
        assert_eq!((erro.code(), erro.error_detail.as_str()), ("201", "mcc"));
    }

    #[test]
    fn malformed_elements_are_203_and_named() {
        let cases: &[(&str, Value)] = &[
            ("acctNumber", json!("4000000000003015")),
            ("acctNumber", json!(4000000000003014u64)),
            ("acctNumber", json!("40000000003")),
            ("cardExpiryDate", json!("3013")),
            ("cardExpiryDate", json!("12/30")),
            ("messageVersion", json!("2.3.0")),
            ("threeDSServerTransID", json!("not-a-uuid")),
            ("threeDSServerURL", json!("ftp://example.com/x")),
            ("notificationURL", json!("/relative")),
            ("threeDSCompInd", json!("X")),
            ("deviceChannel", json!("01")),
            ("messageCategory", json!("02")),
            ("purchaseAmount", json!("1234567890123")),
            ("purchaseAmount", json!("12.5")),
            ("purchaseCurrency", json!("UZS")),
            ("purchaseExponent", json!("10")),
            ("purchaseDate", json!("20301315103000")),
            ("mcc", json!("541")),
            ("merchantCountryCode", json!("UZ")),
            ("merchantName", json!("  ")),
            ("browserIP", json!("300.1.1.1")),
            ("browserJavaEnabled", json!("false")),
            ("browserJavascriptEnabled", json!(1)),
            ("browserTZ", json!("UTC")),
            ("browserScreenWidth", json!("wide")),
        ];
        for (field, value) in cases {
            let mut m = areq();
            m[*field] = value.clone();
            let erro = refused(m);
            assert_eq!((erro.code(), erro.error_detail.as_str()), ("203", *field), "{field} = {value}");
        }
        // A malformed transaction id is not echoed.
        let mut m = areq();
        m["threeDSServerTransID"] = json!("4000000000003014");
        assert_eq!(refused(m).three_ds_server_trans_id, None);
    }

    #[test]
    fn preq_creq_and_method_data() {
        let preq = json!({"messageType": "PReq", "messageVersion": "2.2.0", "threeDSServerTransID": ID,
            "threeDSServerRefNumber": "x"});
        assert_eq!(parse_preq(preq.to_string().as_bytes()).unwrap().three_ds_server_trans_id, ID);
        let erro = parse_preq(br#"{"messageType":"PReq","messageVersion":"2.2.0"}"#).unwrap_err();
        assert_eq!((erro.code(), erro.error_detail.as_str()), ("201", "threeDSServerTransID,threeDSServerRefNumber"));
        assert_eq!(parse_preq(b"{}").unwrap_err().code(), "101");

        let encode = |v: Value| super::super::messages::base64url_encode(v.to_string().as_bytes());
        let creq = encode(json!({"threeDSServerTransID": ID, "acsTransID": ID, "messageType": "CReq",
            "messageVersion": "2.2.0", "challengeWindowSize": "05"}));
        assert_eq!(parse_creq(&creq).unwrap().acs_trans_id, ID);
        assert!(parse_creq("%%%").unwrap_err().contains("creq is not base64url"));
        assert!(parse_creq(&encode(json!({"messageType": "CRes"}))).unwrap_err().contains("messageType"));
        assert!(parse_creq(&encode(json!([1]))).unwrap_err().contains("JSON object"));
        let method =
            encode(json!({"threeDSServerTransID": ID, "threeDSMethodNotificationURL": "http://127.0.0.1:1/m"}));
        assert_eq!(parse_method_data(&method).unwrap().notification_url, "http://127.0.0.1:1/m");
        let bad = encode(json!({"threeDSServerTransID": ID, "threeDSMethodNotificationURL": "javascript:alert(1)"}));
        assert!(parse_method_data(&bad).unwrap_err().contains("threeDSMethodNotificationURL"));
    }
}
