//! Relay templates: the requests the vault may send with card data, written in the
//! policy, never by the caller.
//!
//! A template belongs to a destination and is named `destination.operation`
//! (`sandbox_acquirer.authorize`). It fixes the method, the path and the JSON body. In
//! the body, a JSON **string value** that is exactly a placeholder is replaced by a whole
//! JSON value when the vault fills it:
//!
//! * `{{card.number}}`, `{{card.exp_month}}`, `{{card.exp_year}}`, `{{card.expiry_yymm}}`,
//!   `{{card.cvc}}`, `{{card.holder}}`: the token's card data, at the places the policy
//!   chose. Each must be a field the destination may receive.
//! * `{{token.merchant_id}}`: the merchant that owns the token, as the vault checked it.
//! * `{{NAME}}`: a value the caller supplies by name, checked against its declared
//!   [`ValueKind`] before any card is opened.
//!
//! Because the caller only ever supplies typed values for named slots, it cannot choose
//! where a card number goes: a relay whose template the caller writes is a card read-back
//! oracle (put `{{card.number}}` in a field the destination echoes, read it back there).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::operation::CardField;

/// The HTTP method a template sends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateMethod {
    /// `GET`: no body.
    Get,
    /// `POST` with the template's JSON body.
    Post,
}

impl TemplateMethod {
    /// `GET` or `POST`.
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateMethod::Get => "GET",
            TemplateMethod::Post => "POST",
        }
    }
}

/// A placeholder for card data, at a location the policy fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardPlaceholder {
    /// One card field as it is stored (number and names as strings, expiry as integers).
    Field(CardField),
    /// The expiry as one `"YYMM"` string, as EMV messages (the 3-D Secure AReq) carry it.
    ExpiryYymm,
}

impl CardPlaceholder {
    fn parse(name: &str) -> Option<CardPlaceholder> {
        match name {
            "expiry_yymm" => Some(CardPlaceholder::ExpiryYymm),
            other => CardField::parse(other).map(CardPlaceholder::Field),
        }
    }

    /// The policy fields this placeholder discloses.
    pub fn fields(self) -> &'static [CardField] {
        match self {
            CardPlaceholder::Field(CardField::Number) => &[CardField::Number],
            CardPlaceholder::Field(CardField::ExpMonth) => &[CardField::ExpMonth],
            CardPlaceholder::Field(CardField::ExpYear) => &[CardField::ExpYear],
            CardPlaceholder::Field(CardField::Cvc) => &[CardField::Cvc],
            CardPlaceholder::Field(CardField::Holder) => &[CardField::Holder],
            CardPlaceholder::ExpiryYymm => &[CardField::ExpMonth, CardField::ExpYear],
        }
    }
}

/// What a string in a template body stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot<'a> {
    /// Card data.
    Card(CardPlaceholder),
    /// The merchant that owns the token.
    TokenMerchant,
    /// The caller's value of this name.
    Value(&'a str),
}

/// What a string in a template body is: a placeholder, plain text, or a mistake.
pub(crate) fn classify(text: &str) -> Result<Option<Slot<'_>>, &'static str> {
    let Some(inner) = text.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) else {
        if text.contains("{{") || text.contains("}}") {
            return Err("a placeholder must be a whole JSON string value, not part of a string");
        }
        return Ok(None);
    };
    if let Some(card) = inner.strip_prefix("card.") {
        return CardPlaceholder::parse(card)
            .map(|p| Some(Slot::Card(p)))
            .ok_or("unknown card placeholder (card.number, card.exp_month, card.exp_year, card.expiry_yymm, card.cvc, card.holder)");
    }
    if inner == "token.merchant_id" {
        return Ok(Some(Slot::TokenMerchant));
    }
    if value_name_valid(inner) {
        return Ok(Some(Slot::Value(inner)));
    }
    Err("unknown placeholder: `{{card.…}}`, `{{token.merchant_id}}` or `{{name}}` of a declared value")
}

/// A value name: `[a-z][a-z0-9_]{0,63}`. No dots, so it can never be read as `card.…`.
pub(crate) fn value_name_valid(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The type of a caller-supplied value. Every string kind but `digits`, `enum`,
/// `currency` and `ip` is free text to the screen: refused when it holds a Luhn-valid
/// card-length digit run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind {
    /// A JSON integer in `min..=max`; sent as a JSON number.
    Integer { min: i64, max: i64 },
    /// A string of `min_len..=max_len` ASCII digits (an amount or date as EMV writes
    /// them); numeric, so not screened.
    Digits { min_len: usize, max_len: usize },
    /// Printable text of at most `max_len` characters, no control characters.
    Text { max_len: usize },
    /// An identifier of at most `max_len` characters of `[A-Za-z0-9._:-]`.
    Id { max_len: usize },
    /// One of these strings exactly.
    Enum(Vec<String>),
    /// `true` or `false`.
    Bool,
    /// Three upper-case letters (ISO 4217 alphabetic).
    Currency,
    /// An `https://` or `http://` URL of at most `max_len` characters, no spaces, quotes or
    /// angle brackets.
    Url { max_len: usize },
    /// An IPv4 or IPv6 address.
    Ip,
    /// Standard base64 (`[A-Za-z0-9+/]` with `=` padding) of at most `max_len` characters.
    Base64 { max_len: usize },
}

impl ValueKind {
    /// The name as written in policy files.
    pub fn name(&self) -> &'static str {
        match self {
            ValueKind::Integer { .. } => "integer",
            ValueKind::Digits { .. } => "digits",
            ValueKind::Text { .. } => "text",
            ValueKind::Id { .. } => "id",
            ValueKind::Enum(_) => "enum",
            ValueKind::Bool => "bool",
            ValueKind::Currency => "currency",
            ValueKind::Url { .. } => "url",
            ValueKind::Ip => "ip",
            ValueKind::Base64 { .. } => "base64",
        }
    }

    /// Is this kind screened for card numbers?
    fn is_free_text(&self) -> bool {
        matches!(self, ValueKind::Text { .. } | ValueKind::Id { .. } | ValueKind::Url { .. } | ValueKind::Base64 { .. })
    }

    /// Does `value` have this kind? The error says what was expected, never the value.
    fn check(&self, value: &Value) -> Result<(), String> {
        let ok = match (self, value) {
            (ValueKind::Integer { min, max }, Value::Number(n)) => {
                n.as_i64().is_some_and(|v| (*min..=*max).contains(&v))
            }
            (ValueKind::Bool, Value::Bool(_)) => true,
            (ValueKind::Digits { min_len, max_len }, Value::String(s)) => {
                (*min_len..=*max_len).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
            }
            (ValueKind::Text { max_len }, Value::String(s)) => {
                !s.is_empty() && s.chars().count() <= *max_len && !s.chars().any(char::is_control)
            }
            (ValueKind::Id { max_len }, Value::String(s)) => {
                !s.is_empty()
                    && s.len() <= *max_len
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
            }
            (ValueKind::Enum(values), Value::String(s)) => values.iter().any(|v| v == s),
            (ValueKind::Currency, Value::String(s)) => s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()),
            (ValueKind::Url { max_len }, Value::String(s)) => {
                s.len() <= *max_len
                    && (s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"))).is_some_and(|r| !r.is_empty())
                    && s.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'<' | b'>' | b'\\' | b'`'))
            }
            (ValueKind::Ip, Value::String(s)) => s.len() <= 45 && s.parse::<std::net::IpAddr>().is_ok(),
            (ValueKind::Base64 { max_len }, Value::String(s)) => {
                let body = s.trim_end_matches('=');
                !s.is_empty()
                    && s.len() <= *max_len
                    && s.len() - body.len() <= 2
                    && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
            }
            _ => false,
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            ValueKind::Integer { min, max } => format!("an integer from {min} to {max}"),
            ValueKind::Digits { min_len, max_len } if min_len == max_len => format!("a string of {min_len} digits"),
            ValueKind::Digits { min_len, max_len } => format!("a string of {min_len} to {max_len} digits"),
            ValueKind::Text { max_len } => format!("text of 1 to {max_len} printable characters"),
            ValueKind::Id { max_len } => format!("1 to {max_len} of [A-Za-z0-9._:-]"),
            ValueKind::Enum(values) => format!("one of {}", values.join(", ")),
            ValueKind::Bool => "true or false".into(),
            ValueKind::Currency => "three upper-case letters (ISO 4217)".into(),
            ValueKind::Url { max_len } => format!("an http(s) URL of at most {max_len} characters"),
            ValueKind::Ip => "an IPv4 or IPv6 address".into(),
            ValueKind::Base64 { max_len } => format!("base64 of at most {max_len} characters"),
        })
    }
}

/// A value a template takes from the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueSpec {
    /// Its type.
    pub kind: ValueKind,
    /// May the caller leave it out? Then the object member holding it is left out of the
    /// body (an optional value is always a whole object member).
    pub optional: bool,
}

/// A request the vault may relay, fixed by the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayTemplate {
    /// `destination.operation`.
    pub name: String,
    /// The destination it is sent to.
    pub destination: String,
    /// Its method.
    pub method: TemplateMethod,
    /// The path at the destination: under its `path_prefix`, plain segments only.
    pub path: String,
    /// The body with placeholders (`None` for `GET`).
    pub body: Option<Value>,
    /// The values the caller supplies, by name.
    pub values: BTreeMap<String, ValueSpec>,
    /// The card fields the body discloses.
    pub card_fields: BTreeSet<CardField>,
}

/// Why a caller's values were refused. Messages name the value and what was expected,
/// never what was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A value the template declares, not optional, was not sent.
    #[error("value `{0}` is missing")]
    Missing(String),
    /// A value the template does not declare.
    #[error("the template takes no value `{0}`")]
    Unknown(String),
    /// A value of the wrong type or out of range.
    #[error("value `{name}` must be {expected}")]
    Invalid {
        /// The value's name.
        name: String,
        /// What the template expects.
        expected: String,
    },
    /// A value aimed at a card location (`card.…`, `token.…`): card data is placed by the
    /// vault only.
    #[error("value `{0}` names a card location; card data is placed by the vault's template only")]
    CardLocation(String),
    /// A value holding a placeholder (`{{…}}`) or a card number.
    #[error("value `{0}` holds a placeholder or a card number")]
    CardData(String),
}

impl ValueError {
    /// Is this an attempt at card data (a card location, a placeholder or a card number
    /// in a value) rather than a malformed value?
    pub fn is_card_data(&self) -> bool {
        matches!(self, ValueError::CardLocation(_) | ValueError::CardData(_))
    }
}

/// Values checked against a template: each present value has its declared kind.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedValues(Map<String, Value>);

impl CheckedValues {
    /// The value named `name`; `None` for an optional value the caller left out.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Every value the caller sent, by name.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

fn holds_card_data(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("{{") || s.contains("}}") || paysys_cardnum::contains_card_number(s),
        _ => false,
    }
}

impl RelayTemplate {
    /// What a string in this template's (validated) body stands for; `None` for plain text.
    pub fn slot(text: &str) -> Option<Slot<'_>> {
        classify(text).ok().flatten()
    }

    /// Check the caller's values. Card-data attempts are reported before type errors, so a
    /// placeholder smuggled into a value of the wrong type is still named as what it is.
    pub fn check_values(&self, values: &Map<String, Value>) -> Result<CheckedValues, ValueError> {
        for (name, value) in values {
            if name.contains('.') || name.contains("{{") || CardField::parse(name).is_some() {
                return Err(ValueError::CardLocation(display_name(name)));
            }
            if value.as_str().is_some_and(|s| s.contains("{{") || s.contains("}}")) {
                return Err(ValueError::CardData(display_name(name)));
            }
        }
        for (name, value) in values {
            let spec = self.values.get(name).ok_or_else(|| ValueError::Unknown(display_name(name)))?;
            if spec.kind.is_free_text() && holds_card_data(value) {
                return Err(ValueError::CardData(name.clone()));
            }
            spec.kind.check(value).map_err(|expected| ValueError::Invalid { name: name.clone(), expected })?;
        }
        if let Some((name, _)) = self.values.iter().find(|(name, spec)| !spec.optional && !values.contains_key(*name)) {
            return Err(ValueError::Missing(name.clone()));
        }
        Ok(CheckedValues(values.clone()))
    }
}

/// A caller's value name fit for an error message: names are short identifiers, anything
/// else is not repeated back.
fn display_name(name: &str) -> String {
    let plain = name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !paysys_cardnum::contains_card_number(name);
    if plain {
        name.to_owned()
    } else {
        "?".to_owned()
    }
}

/// Check a template's body against its declared values and the destination's fields.
/// Returns the card fields it discloses.
pub(crate) fn check_body(
    body: &Value,
    values: &BTreeMap<String, ValueSpec>,
    allowed: &[CardField],
) -> Result<BTreeSet<CardField>, String> {
    fn walk(
        value: &Value,
        member: bool,
        values: &BTreeMap<String, ValueSpec>,
        used: &mut BTreeSet<String>,
        fields: &mut BTreeSet<CardField>,
    ) -> Result<(), String> {
        match value {
            Value::String(text) => match classify(text)? {
                None => {}
                Some(Slot::Card(p)) => fields.extend(p.fields()),
                Some(Slot::TokenMerchant) => {}
                Some(Slot::Value(name)) => {
                    let spec = values.get(name).ok_or_else(|| format!("`{{{{{name}}}}}` is not a declared value"))?;
                    if spec.optional && !member {
                        return Err(format!("optional value `{name}` must be a whole object member"));
                    }
                    used.insert(name.to_owned());
                }
            },
            Value::Array(items) => {
                for item in items {
                    walk(item, false, values, used, fields)?;
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    if key.contains("{{") || key.contains("}}") {
                        return Err("a placeholder cannot be an object key".into());
                    }
                    walk(item, true, values, used, fields)?;
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
        Ok(())
    }
    let mut used = BTreeSet::new();
    let mut fields = BTreeSet::new();
    walk(body, false, values, &mut used, &mut fields)?;
    if let Some(unused) = values.keys().find(|name| !used.contains(*name)) {
        return Err(format!("value `{unused}` is declared but not used in the body"));
    }
    if let Some(field) = fields.iter().find(|f| !allowed.contains(f)) {
        return Err(format!("the body places card field `{}`, which the destination may not receive", field.as_str()));
    }
    Ok(fields)
}

/// Is `path` a plain path under `prefix`: segments of `[A-Za-z0-9_~-][A-Za-z0-9._~-]*`
/// only (so no `..`, `.`, `..;`, empty segments, escapes or sub-delimiters), no query?
pub fn path_plain_under(path: &str, prefix: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    path.starts_with(prefix) && rest.split('/').all(segment_plain)
}

/// One path segment as relay paths and path prefixes allow them.
pub(crate) fn segment_plain(segment: &str) -> bool {
    let mut bytes = segment.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'-'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(kind: ValueKind) -> ValueSpec {
        ValueSpec { kind, optional: false }
    }

    fn template() -> RelayTemplate {
        let values: BTreeMap<String, ValueSpec> = [
            ("reference".to_owned(), spec(ValueKind::Id { max_len: 64 })),
            ("amount".to_owned(), spec(ValueKind::Integer { min: 1, max: 999_999_999_999 })),
            ("date".to_owned(), spec(ValueKind::Digits { min_len: 14, max_len: 14 })),
            ("note".to_owned(), ValueSpec { kind: ValueKind::Text { max_len: 40 }, optional: true }),
            ("ip".to_owned(), ValueSpec { kind: ValueKind::Ip, optional: true }),
        ]
        .into_iter()
        .collect();
        let body = json!({"reference": "{{reference}}", "amount": "{{amount}}", "date": "{{date}}",
                          "note": "{{note}}", "ip": "{{ip}}", "pan": "{{card.number}}"});
        let card_fields = check_body(&body, &values, &[CardField::Number]).unwrap();
        RelayTemplate {
            name: "d.op".into(),
            destination: "d".into(),
            method: TemplateMethod::Post,
            path: "/d/op".into(),
            body: Some(body),
            values,
            card_fields,
        }
    }

    fn values(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// Valid values, with `name` set to `value`.
    fn with(name: &str, value: Value) -> Map<String, Value> {
        let mut m = values(json!({"reference": "tx_1", "amount": 5, "date": "20261203101010"}));
        m.insert(name.into(), value);
        m
    }

    #[test]
    fn typed_values_pass_and_numeric_fields_are_not_screened() {
        let t = template();
        // A 14-digit date and a 12-digit amount look like digit runs but are numeric.
        let ok = t.check_values(&values(
            json!({"reference": "tx_1", "amount": 999_999_999_999_i64, "date": "20261203101010"}),
        ));
        assert!(ok.is_ok(), "{ok:?}");
        let ok = t.check_values(&values(json!({"reference": "tx_1", "amount": 1, "date": "42424242424242",
                                                "note": "a note", "ip": "::1"})));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn wrong_types_missing_and_unknown_values_are_refused() {
        let t = template();
        for (k, v) in [
            ("amount", json!("5")),
            ("amount", json!(0)),
            ("amount", json!(1_000_000_000_000_i64)),
            ("amount", json!(1.5)),
            ("date", json!("2026120310101")),
            ("date", json!(20261203101010_i64)),
            ("reference", json!("tx 1")),
            ("reference", json!("")),
            ("note", json!("line\nbreak")),
            ("ip", json!("localhost")),
        ] {
            assert!(
                matches!(t.check_values(&with(k, v.clone())), Err(ValueError::Invalid { .. })),
                "{k} = {v} accepted"
            );
        }
        let mut missing = with("note", json!("n"));
        missing.remove("amount");
        assert_eq!(t.check_values(&missing), Err(ValueError::Missing("amount".into())));
        assert_eq!(t.check_values(&with("extra", json!(1))), Err(ValueError::Unknown("extra".into())));
    }

    #[test]
    fn card_data_in_values_is_refused_as_such() {
        let t = template();
        for (k, v) in [
            ("reference", json!("{{card.number}}")),
            ("note", json!("{{card.cvc}}")),
            ("note", json!("pan 4242 4242 4242 4242")),
            ("reference", json!("4242424242424242")),
            ("reference", json!("x-4242-4242-4242-4242")),
            ("amount", json!("{{card.number}}")),
            ("date", json!("{{card.expiry_yymm}}")),
        ] {
            let r = t.check_values(&with(k, v.clone()));
            assert!(matches!(r, Err(ValueError::CardData(_))), "{k} = {v}: {r:?}");
        }
        for k in ["card.number", "number", "cvc", "token.merchant_id", "{{card.number}}"] {
            let r = t.check_values(&with(k, json!("1")));
            assert!(matches!(r, Err(ValueError::CardLocation(_))), "{k}: {r:?}");
        }
        // A refused name that could be card data is not repeated back.
        let r = t.check_values(&with("4242424242424242", json!(1)));
        assert_eq!(r, Err(ValueError::Unknown("?".into())));
    }

    #[test]
    fn bodies_must_use_declared_values_and_allowed_fields() {
        let declared: BTreeMap<String, ValueSpec> = [("a".to_owned(), spec(ValueKind::Bool))].into_iter().collect();
        assert!(check_body(&json!({"x": "{{a}}"}), &declared, &[]).is_ok());
        assert!(check_body(&json!({"x": "{{b}}", "y": "{{a}}"}), &declared, &[]).is_err());
        assert!(check_body(&json!({"x": 1}), &declared, &[]).is_err(), "unused value");
        assert!(check_body(&json!({"x": "{{a}}", "n": "{{card.number}}"}), &declared, &[]).is_err());
        assert!(
            check_body(&json!({"x": "{{a}}", "n": "pan {{card.number}}"}), &declared, &[CardField::Number]).is_err()
        );
        assert!(check_body(&json!({"x": "{{a}}", "{{card.number}}": 1}), &declared, &[CardField::Number]).is_err());
        assert!(check_body(&json!({"x": "{{a}}", "n": "{{card.pan}}"}), &declared, &[CardField::Number]).is_err());
        let optional: BTreeMap<String, ValueSpec> =
            [("a".to_owned(), ValueSpec { kind: ValueKind::Bool, optional: true })].into_iter().collect();
        assert!(check_body(&json!({"x": ["{{a}}"]}), &optional, &[]).is_err(), "optional inside an array");
        let fields = check_body(&json!({"x": "{{a}}", "e": "{{card.expiry_yymm}}"}), &declared, &CardField::ALL);
        assert_eq!(fields, Ok([CardField::ExpMonth, CardField::ExpYear].into_iter().collect()));
    }

    #[test]
    fn plain_paths_only() {
        for ok in ["/acquirer/v1/authorizations", "/acquirer/x", "/acquirer/a.b", "/acquirer/~x"] {
            assert!(path_plain_under(ok, "/acquirer/"), "{ok}");
        }
        for bad in [
            "/acquirer/../issuer",
            "/acquirer/..;/issuer",
            "/acquirer/v1;x",
            "/acquirer/./v1",
            "/acquirer//v1",
            "/acquirer/.hidden",
            "/acquirer/%2e%2e",
            "/acquirer/v1?x=1",
            "/acquirer/v1#f",
            "/acquirer/a:b",
            "/acquirer/a@b",
            "/acquirer/",
            "/issuer/v1",
            "acquirer/v1",
        ] {
            assert!(!path_plain_under(bad, "/acquirer/"), "{bad}");
        }
    }
}
