//! Masking what a destination answers before the gateway sees it: every string (and
//! object key) has its card numbers masked to BIN + last four
//! ([`mask_card_numbers`]), an integer that could be a card number becomes its masked
//! string, and the CVC — wherever it stands alone as a run of digits in a string — is
//! replaced by `***`.

use crate::card::mask_card_numbers;
use serde_json::Value;
use zeroize::Zeroize;

/// The masked form of a whole answer body: JSON if it parses, else text.
pub fn mask_body(body: &[u8], pan: &str, cvc: Option<&str>) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => mask_value(value, pan, cvc),
        Err(_) => {
            let text = zeroize::Zeroizing::new(String::from_utf8_lossy(body).into_owned());
            Value::String(mask_text(&text, pan, cvc))
        }
    }
}

/// Mask a JSON value (see the module documentation).
pub fn mask_value(value: Value, pan: &str, cvc: Option<&str>) -> Value {
    // Each unmasked string is wiped once its masked copy exists: the parsed answer may
    // hold the card number and must not linger in freed memory.
    let masked = |mut text: String| {
        let out = mask_text(&text, pan, cvc);
        text.zeroize();
        out
    };
    match value {
        Value::String(text) => Value::String(masked(text)),
        Value::Number(n) => {
            let text = n.to_string();
            let masked = mask_card_numbers(&text, pan);
            if masked == text {
                Value::Number(n)
            } else {
                Value::String(masked)
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(|v| mask_value(v, pan, cvc)).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (masked(k), mask_value(v, pan, cvc))).collect())
        }
        other @ (Value::Null | Value::Bool(_)) => other,
    }
}

/// Mask card numbers in `text`, then replace every run of digits equal to the CVC that
/// stands alone (not part of a longer run of letters or digits) with `***`.
pub fn mask_text(text: &str, pan: &str, cvc: Option<&str>) -> String {
    let masked = mask_card_numbers(text, pan);
    match cvc.filter(|c| !c.is_empty()) {
        Some(cvc) => remove_cvc(&masked, cvc),
        None => masked,
    }
}

fn remove_cvc(text: &str, cvc: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut rest_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphanumeric() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            if text.get(start..i) == Some(cvc) {
                out.push_str(text.get(rest_start..start).unwrap_or_default());
                out.push_str("***");
                rest_start = i;
            }
        } else {
            i += 1;
        }
    }
    out.push_str(text.get(rest_start..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pans_and_the_cvc_are_masked_throughout() {
        let body = json!({
            "card": {"masked_number": "424242******4242", "echo": "4242424242424242"},
            "4242424242424242": [4242424242424242u64, "cvc 737 ok", "737", "A737B", "17370"],
            "amount": 737,
            "other": "5555 5555 5555 4444",
        });
        let masked = mask_body(body.to_string().as_bytes(), "4242424242424242", Some("737"));
        assert_eq!(
            masked,
            json!({
                "card": {"masked_number": "424242******4242", "echo": "424242******4242"},
                "424242******4242": ["424242******4242", "cvc *** ok", "***", "A737B", "17370"],
                "amount": 737,
                "other": "5555 55** **** 4444",
            })
        );
    }

    #[test]
    fn a_text_answer_is_masked_too() {
        let masked = mask_body(b"<html>card 4242424242424242 cvc 737</html>", "4242424242424242", Some("737"));
        assert_eq!(masked, json!("<html>card 424242******4242 cvc ***</html>"));
        assert_eq!(mask_body(b"", "4242424242424242", None), json!(""));
    }
}
