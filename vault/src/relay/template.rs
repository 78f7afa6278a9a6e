//! Filling a policy's relay template (`paysys_policies::RelayTemplate`): the body is
//! serialized from the template's JSON tree, and each placeholder string is replaced by
//! a whole JSON value while it is written — card data where the policy put a
//! `{{card.…}}`, the token's merchant for `{{token.merchant_id}}`, the caller's checked
//! value for `{{name}}`. Nothing is spliced into text, so no value (a cardholder name
//! full of quotes included) can change the structure of the request, and the caller
//! decides nothing about where card data goes.

use super::buffer::ZeroizingWriter;
use paysys_policies::{CardField, CardPlaceholder, CheckedValues, RelayTemplate, Slot};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;
use zeroize::Zeroizing;

/// The card data a template may receive, decrypted for one relay and zeroized after.
pub struct CardData {
    pub number: Zeroizing<String>,
    pub exp_month: i32,
    pub exp_year: i32,
    /// `None` when never given, expired, already used by an earlier relay, or not asked
    /// for by the template.
    pub cvc: Option<Zeroizing<String>>,
    pub holder: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for CardData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardData([REDACTED])")
    }
}

/// What fills a template: the card, its merchant, the caller's checked values.
struct Fill<'a> {
    card: &'a CardData,
    merchant_id: &'a str,
    values: &'a CheckedValues,
}

/// One node of the template tree as it is serialized.
struct Filled<'a> {
    value: &'a Value,
    fill: &'a Fill<'a>,
}

impl Fill<'_> {
    /// Is this object member an optional value the caller left out (so the member is too)?
    fn left_out(&self, value: &Value) -> bool {
        match value.as_str().and_then(RelayTemplate::slot) {
            Some(Slot::Value(name)) => self.values.get(name).is_none(),
            _ => false,
        }
    }
}

impl Serialize for Filled<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Fill { card, merchant_id, values } = self.fill;
        match self.value {
            Value::String(text) => match RelayTemplate::slot(text) {
                None => serializer.serialize_str(text),
                Some(Slot::TokenMerchant) => serializer.serialize_str(merchant_id),
                Some(Slot::Value(name)) => values.get(name).unwrap_or(&Value::Null).serialize(serializer),
                Some(Slot::Card(placeholder)) => match placeholder {
                    CardPlaceholder::Field(CardField::Number) => serializer.serialize_str(&card.number),
                    CardPlaceholder::Field(CardField::ExpMonth) => serializer.serialize_i32(card.exp_month),
                    CardPlaceholder::Field(CardField::ExpYear) => serializer.serialize_i32(card.exp_year),
                    CardPlaceholder::ExpiryYymm => {
                        let yymm = Zeroizing::new(format!(
                            "{:02}{:02}",
                            card.exp_year.rem_euclid(100),
                            card.exp_month.clamp(0, 99)
                        ));
                        serializer.serialize_str(&yymm)
                    }
                    CardPlaceholder::Field(CardField::Cvc) => match &card.cvc {
                        Some(cvc) => serializer.serialize_str(cvc),
                        None => serializer.serialize_none(),
                    },
                    CardPlaceholder::Field(CardField::Holder) => match &card.holder {
                        Some(holder) => serializer.serialize_str(holder),
                        None => serializer.serialize_none(),
                    },
                },
            },
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Filled { value: item, fill: self.fill })?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut out = serializer.serialize_map(None)?;
                for (key, item) in map {
                    if !self.fill.left_out(item) {
                        out.serialize_entry(key, &Filled { value: item, fill: self.fill })?;
                    }
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// The first allocation of a filled body: an authorization fits, an AReq with a long
/// user agent grows once or twice.
const FIRST_CAPACITY: usize = 2048;

/// Serialize `template`'s body with the card data, the token's merchant and the caller's
/// checked values in place of its placeholders. `None` for a template without a body.
pub fn fill(
    template: &RelayTemplate,
    merchant_id: &str,
    values: &CheckedValues,
    card: &CardData,
) -> Result<Option<Zeroizing<Vec<u8>>>, serde_json::Error> {
    let Some(body) = &template.body else {
        return Ok(None);
    };
    // Written through a zeroizing writer: the body holds card data, and a buffer that
    // outgrows its first allocation must not leave that one behind unwiped.
    let mut out = Zeroizing::new(Vec::with_capacity(FIRST_CAPACITY));
    let fill = Fill { card, merchant_id, values };
    serde_json::to_writer(ZeroizingWriter(&mut out), &Filled { value: body, fill: &fill })?;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use paysys_policies::Policy;
    use serde_json::json;

    const GATEWAY: &str = "spiffe://paysys/gateway";

    fn card(holder: Option<&str>, cvc: Option<&str>) -> CardData {
        CardData {
            number: Zeroizing::new("4242424242424242".into()),
            exp_month: 7,
            exp_year: 2031,
            cvc: cvc.map(|c| Zeroizing::new(c.to_owned())),
            holder: holder.map(|h| Zeroizing::new(h.to_owned())),
        }
    }

    fn filled(name: &str, values: Value, card: &CardData) -> Value {
        let policy = Policy::from_toml(paysys_policies::DEV_POLICY).unwrap();
        let template = policy.relay_template(GATEWAY, name).unwrap();
        let values = template.check_values(values.as_object().unwrap()).unwrap();
        let bytes = fill(template, "m_1", &values, card).unwrap().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn the_authorization_gets_the_card_where_the_policy_put_it() {
        let values = json!({"reference": "tx_1", "amount": 1500, "currency": "UZS", "capture": true});
        let sent = filled("sandbox_acquirer.authorize", values, &card(Some("A B"), Some("123")));
        assert_eq!(
            sent,
            json!({
                "merchant_id": "m_1", "reference": "tx_1", "amount": 1500, "currency": "UZS", "capture": true,
                "card": {"number": "4242424242424242", "exp_month": 7, "exp_year": 2031, "cvc": "123", "holder": "A B"},
            })
        );
    }

    #[test]
    fn missing_cvc_and_holder_become_null() {
        let values = json!({"reference": "tx_1", "amount": 1500, "currency": "UZS", "capture": false});
        let sent = filled("sandbox_acquirer.authorize", values, &card(None, None));
        assert_eq!((&sent["card"]["cvc"], &sent["card"]["holder"]), (&Value::Null, &Value::Null));
    }

    #[test]
    fn the_areq_carries_the_emv_expiry_and_leaves_out_an_absent_optional_value() {
        let values = json!({
            "message_version": "2.2.0", "three_ds_server_trans_id": "a1b2c3d4-aaaa-bbbb-cccc-ddddeeeeffff",
            "three_ds_server_ref_number": "PAYSYS-3DSS-0001", "three_ds_server_url": "https://gw.example/3ds/rreq",
            "three_ds_requestor_id": "PAYSYS-m_1", "merchant_name": "Shop", "three_ds_requestor_url": "https://gw.example",
            "three_ds_comp_ind": "U", "purchase_amount": "1500", "purchase_currency": "860", "purchase_exponent": "2",
            "purchase_date": "20261203101010", "acquirer_bin": "400551", "mcc": "5999", "merchant_country_code": "860",
            "notification_url": "https://gw.example/3ds/notify", "browser_accept_header": "text/html",
            "browser_java_enabled": false, "browser_javascript_enabled": true, "browser_language": "en",
            "browser_color_depth": "24", "browser_screen_height": "768", "browser_screen_width": "1024",
            "browser_tz": "-300", "browser_user_agent": "test",
        });
        let sent = filled("sandbox_ds.areq", values.clone(), &card(None, Some("123")));
        assert_eq!(sent["acctNumber"], "4242424242424242");
        assert_eq!(sent["cardExpiryDate"], "3107");
        assert_eq!(sent["acquirerMerchantID"], "m_1");
        assert_eq!(sent["merchantName"], "Shop");
        assert!(sent.get("browserIP").is_none(), "{sent}");
        assert!(!sent.to_string().contains("123\""), "no CVC in an AReq: {sent}");
        let mut with_ip = values;
        with_ip["browser_ip"] = json!("203.0.113.7");
        assert_eq!(filled("sandbox_ds.areq", with_ip, &card(None, None))["browserIP"], "203.0.113.7");
    }

    #[test]
    fn a_hostile_holder_name_stays_one_string() {
        let hostile = r#"X"}, "amount": 1, "y": {"z": "#;
        let values = json!({"reference": "tx_1", "amount": 100, "currency": "UZS", "capture": true});
        let sent = filled("sandbox_acquirer.authorize", values, &card(Some(hostile), None));
        assert_eq!((&sent["amount"], &sent["card"]["holder"]), (&json!(100), &json!(hostile)));
    }
}
