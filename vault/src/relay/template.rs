//! Relay body templates. A placeholder is a JSON **string value** exactly equal to
//! `{{card.number}}`, `{{card.exp_month}}`, `{{card.exp_year}}`, `{{card.cvc}}`,
//! `{{card.holder}}` or `{{card.expiry_yymm}}` (the expiry as one `"YYMM"` string, as
//! EMV messages such as the 3-D Secure AReq carry it; it needs both expiry fields in the
//! destination's policy); it is replaced by a whole JSON value while the tree is
//! serialized, so no card data (a cardholder name full of quotes included) can change
//! the structure of the request. Anything placeholder-like elsewhere — inside a longer
//! string, in an object key, an unknown field — refuses the template.

use paysys_policies::CardField;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeSet;
use zeroize::Zeroizing;

/// Why a template was refused. Fixed messages: nothing of the template is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// `{{…}}` inside a longer string or in an object key.
    #[error("a placeholder must be a whole JSON string value, not part of a string or a key")]
    Embedded,
    /// `{{…}}` naming something other than the card fields.
    #[error("unknown placeholder: use {{{{card.number}}}}, {{{{card.exp_month}}}}, {{{{card.exp_year}}}}, {{{{card.expiry_yymm}}}}, {{{{card.cvc}}}} or {{{{card.holder}}}}")]
    UnknownPlaceholder,
}

/// The card data a template may receive, decrypted for one relay and zeroized after.
pub struct CardData {
    pub number: Zeroizing<String>,
    pub exp_month: i32,
    pub exp_year: i32,
    /// `None` when never given, expired or already used by an earlier relay.
    pub cvc: Option<Zeroizing<String>>,
    pub holder: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for CardData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardData([REDACTED])")
    }
}

/// A placeholder: one card field, or the expiry in EMV's `YYMM` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    Field(CardField),
    ExpiryYymm,
}

impl Placeholder {
    fn parse(name: &str) -> Option<Placeholder> {
        match name {
            "expiry_yymm" => Some(Placeholder::ExpiryYymm),
            other => CardField::parse(other).map(Placeholder::Field),
        }
    }

    /// The policy fields this placeholder discloses.
    fn fields(self) -> &'static [CardField] {
        match self {
            Placeholder::Field(CardField::Number) => &[CardField::Number],
            Placeholder::Field(CardField::ExpMonth) => &[CardField::ExpMonth],
            Placeholder::Field(CardField::ExpYear) => &[CardField::ExpYear],
            Placeholder::Field(CardField::Cvc) => &[CardField::Cvc],
            Placeholder::Field(CardField::Holder) => &[CardField::Holder],
            Placeholder::ExpiryYymm => &[CardField::ExpMonth, CardField::ExpYear],
        }
    }
}

/// What a string value is to the template.
fn classify(text: &str) -> Result<Option<Placeholder>, TemplateError> {
    if let Some(inner) = text.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) {
        return inner
            .strip_prefix("card.")
            .and_then(Placeholder::parse)
            .map(Some)
            .ok_or(TemplateError::UnknownPlaceholder);
    }
    if text.contains("{{") {
        return Err(TemplateError::Embedded);
    }
    Ok(None)
}

/// The card fields `template` asks for, or why it is refused.
pub fn placeholders(template: &Value) -> Result<BTreeSet<CardField>, TemplateError> {
    fn walk(value: &Value, found: &mut BTreeSet<CardField>) -> Result<(), TemplateError> {
        match value {
            Value::String(text) => {
                if let Some(placeholder) = classify(text)? {
                    found.extend(placeholder.fields());
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, found)?;
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    if key.contains("{{") {
                        return Err(TemplateError::Embedded);
                    }
                    walk(item, found)?;
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
        Ok(())
    }
    let mut found = BTreeSet::new();
    walk(template, &mut found)?;
    Ok(found)
}

/// The template with its placeholders replaced, as it is serialized.
struct Filled<'a> {
    value: &'a Value,
    card: &'a CardData,
}

impl Serialize for Filled<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let card = self.card;
        match self.value {
            Value::String(text) => match classify(text) {
                Ok(Some(Placeholder::Field(CardField::Number))) => serializer.serialize_str(&card.number),
                Ok(Some(Placeholder::Field(CardField::ExpMonth))) => serializer.serialize_i32(card.exp_month),
                Ok(Some(Placeholder::Field(CardField::ExpYear))) => serializer.serialize_i32(card.exp_year),
                Ok(Some(Placeholder::ExpiryYymm)) => {
                    let yymm = format!("{:02}{:02}", card.exp_year.rem_euclid(100), card.exp_month.clamp(0, 99));
                    serializer.serialize_str(&yymm)
                }
                Ok(Some(Placeholder::Field(CardField::Cvc))) => match &card.cvc {
                    Some(cvc) => serializer.serialize_str(cvc),
                    None => serializer.serialize_none(),
                },
                Ok(Some(Placeholder::Field(CardField::Holder))) => match &card.holder {
                    Some(holder) => serializer.serialize_str(holder),
                    None => serializer.serialize_none(),
                },
                // `placeholders` refused these before any card was opened.
                Ok(None) | Err(_) => serializer.serialize_str(text),
            },
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Filled { value: item, card })?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (key, item) in map {
                    out.serialize_entry(key, &Filled { value: item, card })?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// Serialize `template` with the card data in place of its placeholders. Call
/// [`placeholders`] first: it refuses the templates this would not fill.
pub fn fill(template: &Value, card: &CardData) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    // Sized up front so the buffer holding card data is not reallocated (which would
    // leave unzeroized copies behind).
    let estimate = serde_json::to_vec(template)?.len() + 256;
    let mut out = Zeroizing::new(Vec::with_capacity(estimate));
    serde_json::to_writer(&mut *out, &Filled { value: template, card })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn card(holder: Option<&str>, cvc: Option<&str>) -> CardData {
        CardData {
            number: Zeroizing::new("4242424242424242".into()),
            exp_month: 7,
            exp_year: 2031,
            cvc: cvc.map(|c| Zeroizing::new(c.to_owned())),
            holder: holder.map(|h| Zeroizing::new(h.to_owned())),
        }
    }

    #[test]
    fn placeholders_are_whole_values_anywhere_in_the_tree() {
        let template = json!({
            "card": {"number": "{{card.number}}", "exp_month": "{{card.exp_month}}", "exp_year": "{{card.exp_year}}"},
            "list": [{"cvc": "{{card.cvc}}"}, "{{card.holder}}", 1, null, true],
            "note": "plain",
        });
        let fields = placeholders(&template).unwrap();
        assert_eq!(fields, CardField::ALL.into_iter().collect());
        let bytes = fill(&template, &card(Some("A B"), Some("123"))).unwrap();
        let sent: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            sent,
            json!({
                "card": {"number": "4242424242424242", "exp_month": 7, "exp_year": 2031},
                "list": [{"cvc": "123"}, "A B", 1, null, true],
                "note": "plain",
            })
        );
    }

    #[test]
    fn the_emv_expiry_is_one_yymm_string_needing_both_expiry_fields() {
        let template = json!({"acctNumber": "{{card.number}}", "cardExpiryDate": "{{card.expiry_yymm}}"});
        let fields = placeholders(&template).unwrap();
        assert_eq!(fields, [CardField::Number, CardField::ExpMonth, CardField::ExpYear].into_iter().collect());
        let sent: Value = serde_json::from_slice(&fill(&template, &card(None, None)).unwrap()).unwrap();
        assert_eq!(sent, json!({"acctNumber": "4242424242424242", "cardExpiryDate": "3107"}));
        let embedded = json!({"d": "20{{card.expiry_yymm}}"});
        assert_eq!(placeholders(&embedded), Err(TemplateError::Embedded));
    }

    #[test]
    fn missing_cvc_and_holder_become_null() {
        let template = json!({"cvc": "{{card.cvc}}", "holder": "{{card.holder}}"});
        let sent: Value = serde_json::from_slice(&fill(&template, &card(None, None)).unwrap()).unwrap();
        assert_eq!(sent, json!({"cvc": null, "holder": null}));
    }

    #[test]
    fn a_hostile_holder_name_stays_one_string() {
        let hostile = r#"X"}, "amount": 1, "y": {"z": "#;
        let template = json!({"amount": 100, "holder": "{{card.holder}}"});
        let sent: Value = serde_json::from_slice(&fill(&template, &card(Some(hostile), None)).unwrap()).unwrap();
        assert_eq!(sent, json!({"amount": 100, "holder": hostile}));
    }

    #[test]
    fn embedded_unknown_and_key_placeholders_are_refused() {
        for template in [
            json!({"n": "pan={{card.number}}"}),
            json!({"n": "{{card.number}} "}),
            json!({"{{card.number}}": 1}),
            json!([["x{{card.cvc}}"]]),
        ] {
            assert_eq!(placeholders(&template), Err(TemplateError::Embedded), "{template}");
        }
        for template in [json!({"n": "{{card.pan}}"}), json!({"n": "{{ card.number }}"}), json!("{{number}}")] {
            assert_eq!(placeholders(&template), Err(TemplateError::UnknownPlaceholder), "{template}");
        }
        assert_eq!(placeholders(&json!({"a": "}} {"})).map(|f| f.len()), Ok(0));
    }
}
