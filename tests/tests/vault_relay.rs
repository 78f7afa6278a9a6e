//! The vault relay end to end: a real vault relays to a real sandbox over TLS verified
//! against the PaySys CA; the gateway never sends or receives a card number.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_tests::{backends, scratch_dir, Backend, SandboxOptions, TestPki, TestSandbox, TestVault, VaultOptions};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A sandbox and a vault relaying to it. `sandbox` adjusts the sandbox's options,
/// `vault_args` are added to the vault's.
async fn stack_with(
    backend: &Backend,
    sandbox: impl FnOnce(&TestPki, &mut SandboxOptions),
    vault_args: impl FnOnce(&TestPki) -> Vec<String>,
    policy: Option<&str>,
) -> (TestVault, TestSandbox) {
    let dir = scratch_dir(&format!("relay-{}", backend.name()));
    let pki = TestPki::generate(&dir);
    let mut sandbox_options = SandboxOptions::new(&pki);
    sandbox(&pki, &mut sandbox_options);
    let sandbox = TestSandbox::start(&dir, &sandbox_options).await;
    let mut extra_args = sandbox.relay_args(&pki.ca_cert);
    extra_args.extend(vault_args(&pki));
    let policy = policy.map(|text| {
        let path = dir.join("policy.toml");
        std::fs::write(&path, text).unwrap();
        path
    });
    let options = VaultOptions { extra_args, policy, ..VaultOptions::default() };
    let vault = TestVault::start_prepared(backend, dir, pki, options).await;
    (vault, sandbox)
}

async fn stack(backend: &Backend) -> (TestVault, TestSandbox) {
    stack_with(backend, |_, _| {}, |_| Vec::new(), None).await
}

/// Tokenize `pan` for m_1 as the merchant, with optional CVC and holder name.
async fn tokenize(vault: &TestVault, pan: &str, cvc: Option<&str>, holder: Option<&str>) -> String {
    let mut body = json!({"merchant_id": "m_1", "pan": pan, "exp_month": 12, "exp_year": 2031});
    if let Some(cvc) = cvc {
        body["cvc"] = json!(cvc);
    }
    if let Some(holder) = holder {
        body["cardholder_name"] = json!(holder);
    }
    let r = vault.call(&vault.pki.merchant, "POST", "/v1/tokens", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["token"].as_str().unwrap().to_owned()
}

/// The values of the vault's `sandbox_acquirer.authorize` template, as the gateway sends them.
fn authorization(reference: &str, amount: i64) -> Value {
    json!({"reference": reference, "amount": amount, "currency": "UZS", "capture": false})
}

fn relay_request(token: &str, values: Value) -> Value {
    json!({"token": token, "merchant_id": "m_1", "template": "sandbox_acquirer.authorize", "values": values})
}

async fn relay(vault: &TestVault, request: Value) -> paysys_vault_client::VaultResponse {
    vault.call(&vault.pki.gateway, "POST", "/v1/relay", Some(request)).await
}

/// The vault's relay audit records.
async fn relay_records(vault: &TestVault) -> Vec<Value> {
    let r = vault.call(&vault.pki.alice, "GET", "/v1/audit/records?limit=5000", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["records"].as_array().unwrap().iter().filter(|r| r["operation"] == "relay").cloned().collect()
}

/// The relay records once there are `n` of them: a relay's outcome is recorded by a task
/// of its own after the answer has gone back, so it may land a moment later.
async fn settled_relay_records(vault: &TestVault, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = relay_records(vault).await;
        if records.len() >= n || Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Outcomes sorted, for comparing what was recorded regardless of commit order.
fn sorted_outcomes(records: &[Value]) -> Vec<String> {
    let mut outcomes: Vec<String> = records.iter().map(|r| r["outcome"].as_str().unwrap().to_owned()).collect();
    outcomes.sort();
    outcomes
}

async fn stored_cvcs(vault: &TestVault) -> i64 {
    let r = vault.call(&vault.pki.alice, "GET", "/v1/sys/status", None).await;
    r.body["counts"]["cvcs"].as_i64().unwrap()
}

#[tokio::test]
async fn gateway_relays_an_authorization_and_the_cvc_is_used_once() {
    for backend in backends() {
        let (vault, sandbox) = stack(&backend).await;
        let token = tokenize(&vault, "4242424242424242", Some("737"), Some("A HOLDER")).await;
        assert_eq!(stored_cvcs(&vault).await, 1);

        let r = relay(&vault, relay_request(&token, authorization("tx_1", 150_000))).await;
        assert_eq!(r.status, 200, "{}: {}", backend.name(), r.body);
        assert_eq!(r.body["status"], 200, "{}", r.body);
        assert!(r.body["content_type"].as_str().unwrap().starts_with("application/json"), "{}", r.body);
        let answer = &r.body["body"];
        assert_eq!(answer["approved"], true, "{answer}");
        assert_eq!(answer["amount"], 150_000);
        assert_eq!(answer["card"]["masked_number"], "424242******4242");
        let raw = String::from_utf8_lossy(&r.raw);
        assert!(!raw.contains("4242424242424242"), "PAN in the relay answer: {raw}");
        assert!(!raw.contains("\"737\""), "CVC in the relay answer: {raw}");
        // The CVC went with the relay's audit record.
        assert_eq!(stored_cvcs(&vault).await, 0, "{}", backend.name());

        // A second relay of the same token sends no CVC: the sandbox accepts a missing
        // one (recurring payments have none), and the answer is the same approval.
        let r = relay(&vault, relay_request(&token, authorization("tx_2", 1_000))).await;
        assert_eq!((r.status, &r.body["body"]["approved"]), (200, &json!(true)), "{}", r.body);

        // Two audit records per relay: `sending` before anything left, then the outcome.
        let records = settled_relay_records(&vault, 4).await;
        let sending = "sending template=sandbox_acquirer.authorize";
        let ok = "ok template=sandbox_acquirer.authorize upstream_status=200";
        assert_eq!(records[0]["outcome"], sending, "the first record of all is a `sending`");
        assert_eq!(sorted_outcomes(&records), [ok, ok, sending, sending], "{}", backend.name());
        for record in &records {
            assert_eq!(record["principal"], "spiffe://paysys/gateway");
            assert_eq!(record["token"], token.as_str());
            assert_eq!(record["merchant_id"], "m_1");
            assert_eq!(record["decision"], "allow");
        }
        let verify = vault.call(&vault.pki.alice, "GET", "/v1/audit/verify", None).await;
        assert_eq!(verify.body["ok"], true, "{}", verify.body);
        // No card data in the vault's log.
        let log = vault.log_text();
        assert!(!log.contains("4242424242424242") && !log.contains("737\""), "card data in the vault log");
        sandbox.stop().await;
        vault.finish().await;
    }
}

#[tokio::test]
async fn a_hostile_cardholder_name_arrives_as_one_string() {
    let (vault, sandbox) = stack(&Backend::Sqlite).await;
    let hostile = r#"X"}, "amount": 1, "capture": true, "y": {"z": ""#;
    let token = tokenize(&vault, "4242424242424242", None, Some(hostile)).await;
    let r = relay(&vault, relay_request(&token, authorization("tx_inj", 777_000))).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!(200)), "{}", r.body);
    let answer = &r.body["body"];
    assert_eq!((answer["approved"].clone(), answer["amount"].clone()), (json!(true), json!(777_000)), "{answer}");
    assert_eq!(answer["status"], "authorized", "capture must not have been injected: {answer}");
    sandbox.stop().await;
    vault.finish().await;
}

#[tokio::test]
async fn every_refusal_has_its_code_and_is_audited() {
    let (vault, sandbox) = stack(&Backend::Sqlite).await;
    let token = tokenize(&vault, "4242424242424242", Some("123"), None).await;
    let base = relay_request(&token, authorization("tx_r", 100));
    let with = |changes: &[(&str, Value)]| {
        let mut request = base.clone();
        for (key, value) in changes {
            request[*key] = value.clone();
        }
        request
    };
    let with_value = |name: &str, value: Value| {
        let mut request = base.clone();
        request["values"][name] = value;
        request
    };
    let without_value = |name: &str| {
        let mut request = base.clone();
        request["values"].as_object_mut().unwrap().remove(name);
        request
    };
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        // The first relay API: the caller wrote the request. Refused as such.
        ("a caller's body", with(&[("body", json!({"pan": "{{card.number}}"}))]), 403, "relay_template_not_allowed"),
        ("a caller's path", with(&[("path", json!("/acquirer/v1/authorizations"))]), 403, "relay_template_not_allowed"),
        ("a caller's method", with(&[("method", json!("POST"))]), 403, "relay_template_not_allowed"),
        (
            "a caller's destination",
            with(&[("destination", json!("sandbox_acquirer"))]),
            403,
            "relay_template_not_allowed",
        ),
        (
            "a caller's headers",
            with(&[("headers", json!({"x": "{{card.number}}"}))]),
            403,
            "relay_template_not_allowed",
        ),
        ("a caller's URL", with(&[("url", json!("https://evil.example"))]), 403, "relay_template_not_allowed"),
        ("unknown template", with(&[("template", json!("sandbox_acquirer.refund"))]), 404, "relay_template_unknown"),
        ("no operation", with(&[("template", json!("sandbox_acquirer"))]), 404, "relay_template_unknown"),
        (
            "path-like name",
            with(&[("template", json!("sandbox_acquirer.authorize/../x"))]),
            404,
            "relay_template_unknown",
        ),
        (
            "unknown destination",
            with(&[("template", json!("nowhere.authorize"))]),
            403,
            "relay_destination_not_allowed",
        ),
        ("missing value", without_value("amount"), 422, "relay_value_invalid"),
        ("amount as text", with_value("amount", json!("100")), 422, "relay_value_invalid"),
        ("amount zero", with_value("amount", json!(0)), 422, "relay_value_invalid"),
        ("amount too large", with_value("amount", json!(1_000_000_000_000_i64)), 422, "relay_value_invalid"),
        ("lower-case currency", with_value("currency", json!("uzs")), 422, "relay_value_invalid"),
        ("reference with a quote", with_value("reference", json!("tx\",\"x")), 422, "relay_value_invalid"),
        ("a value the template lacks", with_value("description", json!("hello")), 422, "relay_value_invalid"),
        ("placeholder in a value", with_value("reference", json!("{{card.number}}")), 422, "relay_card_data_in_value"),
        ("card number in a value", with_value("reference", json!("4111111111111111")), 422, "relay_card_data_in_value"),
        ("a card location", with_value("card.number", json!("x")), 422, "relay_card_data_in_value"),
        ("a card field name", with_value("cvc", json!("123")), 422, "relay_card_data_in_value"),
        ("unknown token", with(&[("token", json!("tok_0000000000000000000000"))]), 404, "token_not_found"),
        ("another merchant's token", with(&[("merchant_id", json!("m_2"))]), 404, "token_not_found"),
        ("unknown field", with(&[("extra", json!(1))]), 400, "invalid_request"),
    ];
    for (what, request, status, code) in &cases {
        let r = relay(&vault, request.clone()).await;
        assert_eq!((r.status, r.error_code()), (*status, Some(*code)), "{what}: {}", r.body);
        let raw = String::from_utf8_lossy(&r.raw);
        assert!(!raw.contains("4111111111111111") && !raw.contains("{{"), "{what} echoed: {raw}");
    }
    // A merchant (dev policy: no relay) and a stranger are forbidden outright.
    for who in [&vault.pki.merchant, &vault.pki.stranger, &vault.pki.alice] {
        let r = vault.call(who, "POST", "/v1/relay", Some(base.clone())).await;
        assert_eq!((r.status, r.error_code()), (403, Some("forbidden")), "{}", who.principal);
    }
    // Nothing was sent: the CVC is still there, and the sandbox saw no authorization.
    assert_eq!(stored_cvcs(&vault).await, 1);
    let ledger = sandbox.call(&vault.pki.ca_cert, None, "GET", "/acquirer/v1/ledger", None).await;
    assert_eq!(ledger.body["entries"], json!([]), "{}", ledger.body);
    // Every refusal is in the audit log with its code, attempts at card data as denials.
    let records = relay_records(&vault).await;
    assert_eq!(records.len(), cases.len() + 3);
    for (record, (what, _, _, code)) in records.iter().zip(&cases) {
        assert!(record["outcome"].as_str().unwrap().starts_with(code), "{what}: {record}");
        let deny = ["relay_template_not_allowed", "relay_template_unknown", "relay_card_data_in_value"];
        if deny.contains(code) || *code == "relay_destination_not_allowed" {
            assert_eq!(record["decision"], "deny", "{what}: {record}");
        }
    }
    assert!(
        records
            .iter()
            .any(|r| r["outcome"] == "relay_destination_not_allowed template=nowhere.authorize"
                && r["decision"] == "deny")
    );
    let audit = serde_json::to_string(&records).unwrap();
    assert!(!audit.contains("4111111111111111"), "card data in the audit log");
    sandbox.stop().await;
    vault.finish().await;
}

/// A policy where merchants may relay their own tokens.
const MERCHANTS_RELAY: &str = r#"
[roles.merchant]
principals = ["spiffe://paysys/merchant/*"]
operations = ["tokens.create", "tokens.read", "relay"]
scope = "own"
destinations = ["sandbox_acquirer"]

[roles.officer]
principals = ["spiffe://paysys/officer/*"]
operations = ["keys.status", "audit.read"]

[destinations.sandbox_acquirer]
url = "https://localhost:9443"
path_prefix = "/acquirer/"
fields = ["number", "exp_month", "exp_year", "cvc", "holder"]

[destinations.sandbox_acquirer.templates.authorize]
method = "POST"
path = "/acquirer/v1/authorizations"
body = """{"merchant_id": "{{token.merchant_id}}", "reference": "{{reference}}", "amount": "{{amount}}",
  "currency": "{{currency}}", "capture": "{{capture}}",
  "card": {"number": "{{card.number}}", "exp_month": "{{card.exp_month}}", "exp_year": "{{card.exp_year}}"}}"""
values.reference = { type = "id", max_len = 64 }
values.amount = { type = "integer", min = 1, max = 1000000 }
values.currency = { type = "currency" }
values.capture = { type = "bool" }

[destinations.sandbox_ds]
url = "https://localhost:9443"
path_prefix = "/3ds/"
fields = ["number"]

[destinations.sandbox_ds.templates.lookup]
method = "POST"
path = "/3ds/v2/areq"
body = """{"acctNumber": "{{card.number}}"}"""
"#;

#[tokio::test]
async fn a_merchant_scoped_principal_relays_only_its_own_tokens() {
    let (vault, sandbox) = stack_with(&Backend::Sqlite, |_, _| {}, |_| Vec::new(), Some(MERCHANTS_RELAY)).await;
    let token = tokenize(&vault, "4242424242424242", None, None).await;
    let request = relay_request(&token, authorization("tx_own", 100));
    let r = vault.call(&vault.pki.merchant, "POST", "/v1/relay", Some(request.clone())).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!(200)), "{}", r.body);
    // m_2 naming m_1's token, with either merchant id: as if it did not exist.
    let r = vault.call(&vault.pki.other_merchant, "POST", "/v1/relay", Some(request.clone())).await;
    assert_eq!((r.status, r.error_code()), (404, Some("token_not_found")), "{}", r.body);
    let mut as_m2 = request;
    as_m2["merchant_id"] = json!("m_2");
    let r = vault.call(&vault.pki.other_merchant, "POST", "/v1/relay", Some(as_m2)).await;
    assert_eq!((r.status, r.error_code()), (404, Some("token_not_found")), "{}", r.body);
    // A destination the policy defines but does not give this role.
    let mut to_ds = relay_request(&token, json!({}));
    to_ds["template"] = json!("sandbox_ds.lookup");
    let r = vault.call(&vault.pki.merchant, "POST", "/v1/relay", Some(to_ds)).await;
    assert_eq!((r.status, r.error_code()), (403, Some("relay_destination_not_allowed")), "{}", r.body);
    sandbox.stop().await;
    vault.finish().await;
}

#[tokio::test]
async fn the_slow_card_times_out_within_the_cap() {
    let (vault, sandbox) = stack_with(
        &Backend::Sqlite,
        |_, o| o.auth_delay_ms = 10_000,
        |_| vec!["--relay-timeout-max-ms".into(), "1500".into()],
        None,
    )
    .await;
    let token = tokenize(&vault, "4000000000000259", Some("123"), None).await;
    let mut request = relay_request(&token, authorization("tx_slow", 100));
    request["timeout_ms"] = json!(300);
    let started = Instant::now();
    let r = relay(&vault, request.clone()).await;
    assert_eq!((r.status, r.error_code()), (504, Some("relay_timeout")), "{}", r.body);
    assert!(started.elapsed() < Duration::from_millis(1_400), "{:?}", started.elapsed());
    // Asking for more than the cap gets the cap.
    request["timeout_ms"] = json!(600_000);
    request["values"]["reference"] = json!("tx_slow_2");
    let started = Instant::now();
    let r = relay(&vault, request).await;
    assert_eq!((r.status, r.error_code()), (504, Some("relay_timeout")), "{}", r.body);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1_400) && waited < Duration::from_millis(5_000), "{waited:?}");
    // The CVC went with the first attempt, and both attempts are audited: sent, timed out.
    assert_eq!(stored_cvcs(&vault).await, 0);
    let outcomes = sorted_outcomes(&settled_relay_records(&vault, 4).await);
    let timeout = "relay_timeout template=sandbox_acquirer.authorize";
    let sending = "sending template=sandbox_acquirer.authorize";
    assert_eq!(outcomes, [timeout, timeout, sending, sending]);
    sandbox.stop().await;
    vault.finish().await;
}

#[tokio::test]
async fn a_destination_with_a_foreign_certificate_is_unreachable() {
    let (vault, sandbox) =
        stack_with(&Backend::Sqlite, |pki, o| o.server = pki.foreign_server.clone(), |_| Vec::new(), None).await;
    let token = tokenize(&vault, "4242424242424242", None, None).await;
    let r = relay(&vault, relay_request(&token, authorization("tx_foreign", 100))).await;
    assert_eq!((r.status, r.error_code()), (502, Some("relay_unreachable")), "{}", r.body);
    assert!(vault.log_text().contains("UnknownIssuer") || vault.log_text().contains("invalid peer certificate"));
    sandbox.stop().await;
    vault.finish().await;
}

#[tokio::test]
async fn a_destination_requiring_mtls_gets_the_relay_client_certificate() {
    let client_cert = |pki: &TestPki| {
        vec![
            "--relay-client-cert".into(),
            pki.relay_client.cert.display().to_string(),
            "--relay-client-key".into(),
            pki.relay_client.key.display().to_string(),
        ]
    };
    let (vault, sandbox) =
        stack_with(&Backend::Sqlite, |pki, o| o.client_ca = Some(pki.ca_cert.clone()), client_cert, None).await;
    let token = tokenize(&vault, "4242424242424242", None, None).await;
    let r = relay(&vault, relay_request(&token, authorization("tx_mtls", 100))).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!(200)), "{}", r.body);
    sandbox.stop().await;
    vault.finish().await;

    // Without a client certificate the same sandbox refuses the handshake.
    let (vault, sandbox) =
        stack_with(&Backend::Sqlite, |pki, o| o.client_ca = Some(pki.ca_cert.clone()), |_| Vec::new(), None).await;
    let token = tokenize(&vault, "4242424242424242", None, None).await;
    let r = relay(&vault, relay_request(&token, authorization("tx_mtls", 100))).await;
    assert_eq!((r.status, r.error_code()), (502, Some("relay_unreachable")), "{}", r.body);
    sandbox.stop().await;
    vault.finish().await;
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let (vault, sandbox) =
        stack_with(&Backend::Sqlite, |_, _| {}, |_| vec!["--relay-max-response-bytes".into(), "64".into()], None).await;
    let token = tokenize(&vault, "4242424242424242", None, None).await;
    let r = relay(&vault, relay_request(&token, authorization("tx_big", 100))).await;
    assert_eq!((r.status, r.error_code()), (502, Some("relay_response_too_large")), "{}", r.body);
    sandbox.stop().await;
    vault.finish().await;
}

#[tokio::test]
async fn many_concurrent_relays_share_pooled_connections() {
    let (vault, sandbox) = stack(&Backend::Sqlite).await;
    let token = tokenize(&vault, "4242424242424242", None, None).await;
    let vault = std::sync::Arc::new(vault);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let vault = vault.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = vault.connect(&vault.pki.gateway).await;
            for i in 0..25 {
                let request = relay_request(&token, authorization(&format!("tx_{worker}_{i}"), 100));
                let r = conn.call("POST", "/v1/relay", Some(&request)).await.unwrap();
                assert_eq!((r.status, &r.body["body"]["approved"]), (200, &json!(true)), "{}", r.body);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Each relay: `sending`, then `ok`.
    assert_eq!(settled_relay_records(&vault, 400).await.len(), 400);
    sandbox.stop().await;
    std::sync::Arc::try_unwrap(vault).unwrap().finish().await;
}

/// A caller that hangs up while the destination is still answering cannot cut the relay
/// in half: the `sending` record and the CVC's deletion were committed before anything
/// left, and the outcome is recorded by a task the request does not own.
#[tokio::test]
async fn a_caller_that_hangs_up_mid_relay_leaves_both_records_and_no_cvc() {
    for backend in backends() {
        let (vault, sandbox) = stack_with(&backend, |_, o| o.auth_delay_ms = 1_500, |_| Vec::new(), None).await;
        let token = tokenize(&vault, "4000000000000259", Some("123"), None).await;
        assert_eq!(stored_cvcs(&vault).await, 1);
        let request = relay_request(&token, authorization("tx_hangup", 100));
        // The caller gives up after 300 ms: its connection is dropped mid-request.
        let hung_up = tokio::time::timeout(Duration::from_millis(300), relay(&vault, request)).await;
        assert!(hung_up.is_err(), "the slow card answered within 300 ms?");
        // The destination answers after 1.5 s; the vault records it on its own.
        let deadline = Instant::now() + Duration::from_secs(10);
        let outcomes = loop {
            let outcomes: Vec<String> =
                relay_records(&vault).await.iter().map(|r| r["outcome"].as_str().unwrap().to_owned()).collect();
            if outcomes.len() >= 2 || Instant::now() > deadline {
                break outcomes;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            outcomes,
            [
                "sending template=sandbox_acquirer.authorize",
                "ok template=sandbox_acquirer.authorize upstream_status=200"
            ],
            "{}",
            backend.name()
        );
        assert_eq!(stored_cvcs(&vault).await, 0, "the CVC must be gone: it left with the relay");
        // And the authorization did happen, once.
        let ledger =
            sandbox.call(&vault.pki.ca_cert, None, "GET", "/acquirer/v1/ledger?reference=tx_hangup", None).await;
        assert_eq!(ledger.body["entries"].as_array().map(Vec::len), Some(1), "{}", ledger.body);
        let verify = vault.call(&vault.pki.alice, "GET", "/v1/audit/verify", None).await;
        assert_eq!(verify.body["ok"], true, "{}", verify.body);
        sandbox.stop().await;
        vault.finish().await;
    }
}
