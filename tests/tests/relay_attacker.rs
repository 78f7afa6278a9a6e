//! The relay, attacked by a compromised gateway: the attacker holds the gateway's own
//! client certificate (relay for any merchant, token metadata) and wants a card number
//! back. Every way the review of the first relay found — a card placeholder in the
//! acquirer's echoed `reference`, in the AReq's `merchantName` (stored by the DS, shown
//! by the ACS), a `description`, the path, headers — and the others below are refused
//! with a stable code and audited; the normal authorization and AReq still work; and
//! afterwards no card number is readable with the gateway's certificate through any
//! endpoint of the sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// A frictionless 3-D Secure card (the DS answers `Y` at once) and a plain one, each with
// its number written the ways an echo could show it (`written_forms`).
use paysys_test_support::cards::{FRICTIONLESS, VISA};
use paysys_tests::{backends, scratch_dir, SandboxOptions, TestPki, TestSandbox, TestVault, VaultOptions};
use serde_json::{json, Value};

fn written_forms(pan: &str) -> Vec<String> {
    let grouped: Vec<&str> = (0..pan.len()).step_by(4).map(|i| &pan[i..(i + 4).min(pan.len())]).collect();
    vec![pan.to_owned(), grouped.join(" "), grouped.join("-")]
}

fn authorize(token: &str, values: Value) -> Value {
    json!({"token": token, "merchant_id": "m_1", "template": "sandbox_acquirer.authorize", "values": values})
}

fn authorization_values(reference: &str) -> Value {
    json!({"reference": reference, "amount": 1_000, "currency": "UZS", "capture": false})
}

/// The values of `sandbox_ds.areq` as the gateway's 3DS Server sends them.
fn areq_values(three_ds_server_trans_id: &str) -> Value {
    json!({
        "message_version": "2.2.0", "three_ds_server_trans_id": three_ds_server_trans_id,
        "three_ds_server_ref_number": "PAYSYS-3DSS-0001", "three_ds_server_url": "http://127.0.0.1:9/3ds/rreq",
        "three_ds_requestor_id": "PAYSYS-m_1", "merchant_name": "Test Shop", "three_ds_requestor_url": "http://127.0.0.1:9",
        "three_ds_comp_ind": "U", "purchase_amount": "1000", "purchase_currency": "860", "purchase_exponent": "2",
        "purchase_date": "20261203101010", "acquirer_bin": "400551", "mcc": "5999", "merchant_country_code": "860",
        "notification_url": "http://127.0.0.1:9/3ds/notify", "browser_accept_header": "text/html",
        "browser_java_enabled": false, "browser_javascript_enabled": true, "browser_language": "en",
        "browser_color_depth": "24", "browser_screen_height": "768", "browser_screen_width": "1024",
        "browser_tz": "0", "browser_user_agent": "attacker",
    })
}

fn areq(token: &str, values: Value) -> Value {
    json!({"token": token, "merchant_id": "m_1", "template": "sandbox_ds.areq", "values": values})
}

#[tokio::test]
async fn a_compromised_gateway_cannot_get_a_card_number_back() {
    for backend in backends() {
        let dir = scratch_dir(&format!("relay-attacker-{}", backend.name()));
        let pki = TestPki::generate(&dir);
        let sandbox = TestSandbox::start(&dir, &SandboxOptions::new(&pki)).await;
        let options = VaultOptions { extra_args: sandbox.relay_args(&pki.ca_cert), ..VaultOptions::default() };
        let vault = TestVault::start_prepared(&backend, dir, pki, options).await;
        let mut tokens = Vec::new();
        for pan in [VISA, FRICTIONLESS] {
            let body = json!({"merchant_id": "m_1", "pan": pan, "exp_month": 12, "exp_year": 2031, "cvc": "737",
                              "cardholder_name": "A HOLDER"});
            let r = vault.call(&vault.pki.merchant, "POST", "/v1/tokens", Some(body)).await;
            assert_eq!(r.status, 201, "{}", r.body);
            tokens.push(r.body["token"].as_str().unwrap().to_owned());
        }
        let (visa, frictionless) = (&tokens[0], &tokens[1]);
        let gateway = &vault.pki.gateway;

        let mut attacks: Vec<(&str, Value, &str)> = Vec::new();
        // The review's finding: the acquirer stores and echoes `reference`.
        let mut first_api = authorize(visa, json!({}));
        first_api["destination"] = json!("sandbox_acquirer");
        first_api["method"] = json!("POST");
        first_api["path"] = json!("/acquirer/v1/authorizations");
        first_api["body"] = json!({"merchant_id": "m_1", "reference": "{{card.number}}", "amount": 1000,
                                   "currency": "UZS", "card": {"number": "{{card.number}}"}});
        attacks.push(("a caller-written body echoing the PAN in reference", first_api, "relay_template_not_allowed"));
        let mut values = authorization_values("x");
        values["reference"] = json!("{{card.number}}");
        attacks.push(("PAN placeholder as the reference value", authorize(visa, values), "relay_card_data_in_value"));
        let mut values = authorization_values("x");
        values["reference"] = json!("{{card.cvc}}");
        attacks.push(("CVC placeholder as the reference value", authorize(visa, values), "relay_card_data_in_value"));
        // The AReq's merchantName: the DS stores it and the ACS page shows it.
        let mut values = areq_values("c0ffee00-aaaa-bbbb-cccc-ddddeeeeffff");
        values["merchant_name"] = json!("{{card.number}}");
        attacks.push((
            "PAN placeholder as the AReq merchant name",
            areq(frictionless, values),
            "relay_card_data_in_value",
        ));
        let mut values = areq_values("c0ffee00-aaaa-bbbb-cccc-ddddeeeeffff");
        values["browser_user_agent"] = json!("{{card.expiry_yymm}} {{card.number}}");
        attacks.push(("placeholders in free text", areq(frictionless, values), "relay_card_data_in_value"));
        // A description the template does not have, with or without a placeholder.
        let mut values = authorization_values("x");
        values["description"] = json!("{{card.number}}");
        attacks.push(("a description holding a placeholder", authorize(visa, values), "relay_card_data_in_value"));
        let mut values = authorization_values("x");
        values["description"] = json!("order 1");
        attacks.push(("a description the template lacks", authorize(visa, values), "relay_value_invalid"));
        // The path and headers: no longer the caller's to choose.
        let mut with_path = authorize(visa, authorization_values("x"));
        with_path["path"] = json!("/acquirer/v1/authorizations?reference={{card.number}}");
        attacks.push(("a path carrying a placeholder", with_path, "relay_template_not_allowed"));
        let mut with_headers = authorize(visa, authorization_values("x"));
        with_headers["headers"] = json!({"x-reference": "{{card.number}}"});
        attacks.push(("headers carrying a placeholder", with_headers, "relay_template_not_allowed"));
        // Values aimed at card locations.
        let mut values = authorization_values("x");
        values["card.number"] = json!("4111111111111111");
        attacks.push(("a value for the card number's location", authorize(visa, values), "relay_card_data_in_value"));
        let mut values = authorization_values("x");
        values["holder"] = json!("{{card.number}}");
        attacks.push(("a value named for the holder's location", authorize(visa, values), "relay_card_data_in_value"));
        // The AReq template at the acquirer, the acquirer's at the DS: no such templates.
        attacks.push((
            "an AReq sent to the acquirer",
            json!({"token": visa, "merchant_id": "m_1", "template": "sandbox_acquirer.areq", "values": {}}),
            "relay_template_unknown",
        ));
        // Structure injection through a value: refused by its type.
        let mut values = authorization_values("x");
        values["reference"] = json!("tx\", \"reference\": \"x");
        attacks.push(("JSON structure in a value", authorize(visa, values), "relay_value_invalid"));
        // A card number the attacker knows, to confirm a guess through an echo.
        let mut values = authorization_values("x");
        values["reference"] = json!("4242-4242-4242-4242");
        attacks.push(("a card number in an id", authorize(visa, values), "relay_card_data_in_value"));
        let mut values = areq_values("c0ffee00-aaaa-bbbb-cccc-ddddeeeeffff");
        values["merchant_name"] = json!("4242 4242 4242 4242");
        attacks.push(("a grouped card number in text", areq(frictionless, values), "relay_card_data_in_value"));

        for (what, request, code) in &attacks {
            let r = vault.call(gateway, "POST", "/v1/relay", Some(request.clone())).await;
            assert_eq!(r.error_code(), Some(*code), "{}: {what}: {}", backend.name(), r.body);
            let raw = String::from_utf8_lossy(&r.raw);
            for pan in [VISA, FRICTIONLESS] {
                assert!(!raw.contains(pan), "{what}: PAN in the answer");
            }
        }
        // Each attempt is audited, the card-data ones as denials; nothing was sent.
        let audit = vault.call(&vault.pki.alice, "GET", "/v1/audit/records?limit=5000", None).await;
        let relays: Vec<&Value> =
            audit.body["records"].as_array().unwrap().iter().filter(|r| r["operation"] == "relay").collect();
        assert_eq!(relays.len(), attacks.len(), "{}", backend.name());
        for (record, (what, _, code)) in relays.iter().zip(&attacks) {
            assert!(record["outcome"].as_str().unwrap().starts_with(code), "{what}: {record}");
            if *code != "relay_value_invalid" {
                assert_eq!(record["decision"], "deny", "{what}: {record}");
            }
        }
        let ledger = sandbox.call(&vault.pki.ca_cert, Some(gateway), "GET", "/acquirer/v1/ledger", None).await;
        assert_eq!(ledger.body["entries"], json!([]), "an attack reached the acquirer: {}", ledger.body);

        // The normal authorization and AReq still work.
        let r =
            vault.call(gateway, "POST", "/v1/relay", Some(authorize(visa, authorization_values("tx_normal")))).await;
        assert_eq!((r.status, &r.body["body"]["approved"]), (200, &json!(true)), "{}", r.body);
        let acquirer_ref = r.body["body"]["acquirer_ref"].as_str().unwrap().to_owned();
        let trans_id = "c0ffee00-aaaa-bbbb-cccc-ddddeeee0001";
        let r = vault.call(gateway, "POST", "/v1/relay", Some(areq(frictionless, areq_values(trans_id)))).await;
        assert_eq!((r.status, &r.body["status"]), (200, &json!(200)), "{}", r.body);
        assert_eq!(r.body["body"]["messageType"], "ARes", "{}", r.body);
        assert_eq!(r.body["body"]["transStatus"], "Y", "{}", r.body);

        // Now read everything the sandbox shows, with the gateway's certificate: no card
        // number anywhere, written any way.
        let reads = [
            ("GET", "/acquirer/v1/ledger".to_owned(), None),
            ("GET", "/acquirer/v1/ledger?reference=tx_normal".to_owned(), None),
            ("GET", format!("/acquirer/v1/authorizations/{acquirer_ref}"), None),
            ("GET", "/acquirer/v1/inquiry?reference=tx_normal".to_owned(), None),
            ("GET", format!("/3ds/v2/results/{trans_id}"), None),
            ("GET", "/3ds/v2/results/c0ffee00-aaaa-bbbb-cccc-ddddeeeeffff".to_owned(), None),
        ];
        for (method, path, body) in reads {
            let r = sandbox.call(&vault.pki.ca_cert, Some(gateway), method, &path, body).await;
            let raw = String::from_utf8_lossy(&r.raw).into_owned();
            assert!(r.status < 500, "{path}: {raw}");
            for pan in [VISA, FRICTIONLESS] {
                for form in written_forms(pan) {
                    assert!(!raw.contains(&form), "{}: {path} shows a card number: {raw}", backend.name());
                }
            }
        }
        assert!(!vault.log_text().contains(VISA) && !vault.log_text().contains(FRICTIONLESS), "PAN in the vault log");
        sandbox.stop().await;
        vault.finish().await;
    }
}
