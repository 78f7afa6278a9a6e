//! Key lifecycle end to end (issue 4): the custodian ceremony, rotation under dual
//! control with two officer certificates, re-encryption surviving SIGKILL, and the
//! refusals that keep a key version alive while records depend on it. Real processes,
//! real mTLS, SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_tests::{
    altered_share, backends, init_with_shares, Backend, Identity, TestDatabase, TestVault, VaultOptions,
};
use rand::Rng;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Distinct Luhn-valid Visa numbers: `4000 00` + 9 digits of `n` + check digit.
fn visa(n: u64) -> String {
    let body = format!("400000{n:09}");
    let digits: Vec<u32> = body.chars().map(|c| c.to_digit(10).unwrap()).collect();
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut d = *d;
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    format!("{body}{}", (10 - sum % 10) % 10)
}

async fn tokenize_many(vault: &TestVault, n: u64) -> Vec<String> {
    let mut conn = vault.connect(&vault.pki.merchant).await;
    let mut tokens = Vec::new();
    for i in 0..n {
        let mut body = json!({"merchant_id": "m_1", "pan": visa(i + 1), "exp_month": 12, "exp_year": 2031});
        // Every third card also leaves a CVC, which re-encryption must move too.
        if i % 3 == 0 {
            body["cvc"] = json!("123");
        }
        let r = conn.call("POST", "/v1/tokens", Some(&body)).await.unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        tokens.push(r.body["token"].as_str().unwrap().to_owned());
    }
    tokens
}

async fn unseal_with(vault: &TestVault, who: &Identity, share: &str) -> (u16, Value) {
    let r = vault.call(who, "POST", "/v1/sys/unseal", Some(json!({ "share": share }))).await;
    (r.status, r.body)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

async fn key_row(vault: &TestVault, kind: &str, version: i64) -> Value {
    let r = vault.call(&vault.pki.alice, "GET", "/v1/keys", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == kind && k["version"] == version)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} v{version} in {}", r.body))
}

/// Request as `requester`, approve as `approver`; the approval's body.
async fn request_and_approve(vault: &TestVault, requester: &Identity, approver: &Identity, body: Value) -> Value {
    let r = vault.call(requester, "POST", "/v1/keys/requests", Some(body.clone())).await;
    assert_eq!(r.status, 202, "{body}: {}", r.body);
    assert_eq!(r.body["state"], "pending");
    let id = r.body["id"].as_str().unwrap().to_owned();
    let a = vault.call(approver, "POST", &format!("/v1/keys/requests/{id}/approve"), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["state"], "executed");
    a.body
}

async fn wait_for_jobs_done(vault: &TestVault, within: Duration) -> Value {
    let start = Instant::now();
    loop {
        let r = vault.call(&vault.pki.alice, "GET", "/v1/keys/jobs", None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let jobs = r.body["jobs"].as_array().unwrap().clone();
        if !jobs.is_empty() && jobs.iter().all(|j| j["state"] != "running") {
            return r.body;
        }
        assert!(start.elapsed() < within, "re-encryption did not finish: {}", r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_all_readable(vault: &TestVault, tokens: &[String], dek_version: i64) {
    let r = vault.call(&vault.pki.alice, "POST", "/v1/keys/verify-records", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["ok"], true, "{}", r.body);
    assert_eq!(r.body["failed"], 0, "{}", r.body);
    assert_eq!(r.body["opened"], tokens.len(), "{}", r.body);
    let by_version = r.body["by_dek_version"].as_object().unwrap();
    assert_eq!(by_version.keys().collect::<Vec<_>>(), vec![&dek_version.to_string()], "{}", r.body);
    let mut conn = vault.connect(&vault.pki.merchant).await;
    for token in tokens {
        let m = conn.call("GET", &format!("/v1/tokens/{token}"), None).await.unwrap();
        assert_eq!(m.status, 200, "{token}: {}", m.body);
    }
}

async fn custodian_ceremony(backend: Backend) {
    let options = VaultOptions {
        dev_unseal: false,
        custodians: Some((5, 3)),
        extra_args: vec!["--unseal-timeout-secs".into(), "4".into()],
        ..VaultOptions::default()
    };
    let vault = TestVault::start_with(&backend, options).await;
    let ceremony = vault.ceremony.clone().unwrap();
    assert_eq!(ceremony.shares.len(), 5);
    assert!(ceremony.shares.iter().all(|s| s.starts_with(&format!("pss2-{}-", ceremony.root_kcv))));
    let (alice, bob, carol) = (&vault.pki.alice, &vault.pki.bob, &vault.pki.carol);

    // Sealed: data operations answer vault_sealed.
    let r = vault
        .call(
            &vault.pki.merchant,
            "POST",
            "/v1/tokens",
            Some(json!({"merchant_id": "m_1", "pan": visa(1), "exp_month": 12, "exp_year": 2031})),
        )
        .await;
    assert_eq!((r.status, r.error_code()), (503, Some("vault_sealed")));
    let s = vault.call(alice, "GET", "/v1/sys/seal-status", None).await;
    assert_eq!(
        (s.body["sealed"].clone(), s.body["progress"].clone(), s.body["threshold"].clone()),
        (json!(true), json!(0), json!(3))
    );
    assert_eq!(s.body["root_kcv"], ceremony.root_kcv.as_str());

    // The dev-key unseal is refused on a vault not started with --dev.
    let r = vault.call(alice, "POST", "/v1/sys/unseal", Some(json!({"key": "00".repeat(32)}))).await;
    assert_eq!((r.status, r.error_code()), (403, Some("dev_mode_required")));

    // A mistyped share (one value character changed) fails its checksum.
    let mut tampered = ceremony.shares[0].clone().into_bytes();
    let at = tampered.len() - 20;
    tampered[at] = if tampered[at] == b'a' { b'b' } else { b'a' };
    let (status, body) = unseal_with(&vault, alice, std::str::from_utf8(&tampered).unwrap()).await;
    assert_eq!((status, code(&body)), (400, "share_invalid"), "{body}");
    let (status, body) = unseal_with(&vault, alice, "not a share").await;
    assert_eq!((status, code(&body)), (400, "share_invalid"), "{body}");

    // A share of another vault.
    let other_dir = paysys_tests::scratch_dir("foreign-vault");
    let other_db = TestDatabase::create(&Backend::Sqlite, &other_dir).await;
    let other = init_with_shares(&other_db.url, 3, 2).await;
    let (status, body) = unseal_with(&vault, alice, &other.shares[0]).await;
    assert_eq!((status, code(&body)), (400, "share_foreign"), "{body}");

    // One of three, then the same share again: refused, progress kept.
    let (status, body) = unseal_with(&vault, alice, &ceremony.shares[0]).await;
    assert_eq!((status, body["progress"].clone(), body["threshold"].clone()), (200, json!(1), json!(3)), "{body}");
    assert_eq!(body["share_check_value"], ceremony.check_values[0].as_str());
    let (status, body) = unseal_with(&vault, bob, &ceremony.shares[0]).await;
    assert_eq!((status, code(&body)), (409, "share_duplicate"), "{body}");
    // The attacker holding one officer certificate and two custodians' shares: the second
    // share from the same certificate is refused, and the first one stays.
    let (status, body) = unseal_with(&vault, alice, &ceremony.shares[1]).await;
    assert_eq!((status, code(&body)), (409, "custodian_already_submitted"), "{body}");
    // A custodian handing in an altered share (valid checksum, wrong value): refused on its
    // own, against the commitment recorded at init; nobody's progress is lost.
    let (status, body) = unseal_with(&vault, bob, &altered_share(&ceremony.shares[3])).await;
    assert_eq!((status, code(&body)), (400, "share_altered"), "{body}");
    let s = vault.call(alice, "GET", "/v1/sys/seal-status", None).await;
    assert_eq!(s.body["progress"], 1, "{}", s.body);
    // M − 1 shares: still sealed.
    let (status, body) = unseal_with(&vault, bob, &ceremony.shares[3]).await;
    assert_eq!((status, body["sealed"].clone(), body["progress"].clone()), (200, json!(true), json!(2)), "{body}");
    let r = vault.call(&vault.pki.merchant, "GET", "/v1/tokens/tok_aaaaaaaaaaaaaaaaaaaaaa", None).await;
    assert_eq!(r.error_code(), Some("vault_sealed"));

    // The third share through the officer CLI, read from stdin (never argv); alice's
    // certificate has given one already, so the CLI reports the refusal.
    let (ok, stdout, stderr) = vault.officer_cli(alice, &["operator", "unseal"], Some(&ceremony.shares[4])).await;
    assert!(!ok && stderr.contains("custodian_already_submitted"), "{stdout}{stderr}");
    let (ok, stdout, stderr) = vault.officer_cli(carol, &["operator", "unseal"], Some(&ceremony.shares[4])).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("vault unsealed"), "{stdout}");
    assert!(!stdout.contains(&ceremony.shares[4]) && !stderr.contains(&ceremony.shares[4]));
    let token = vault.tokenize(&visa(7)).await;
    let (ok, stdout, _) = vault.officer_cli(bob, &["operator", "status"], None).await;
    assert!(ok && stdout.contains("sealed: false"), "{stdout}");

    // Seal: every key dropped at once; data operations stop.
    let (ok, stdout, stderr) = vault.officer_cli(bob, &["operator", "seal"], None).await;
    assert!(ok, "{stdout}{stderr}");
    let r = vault.call(&vault.pki.merchant, "GET", &format!("/v1/tokens/{token}"), None).await;
    assert_eq!((r.status, r.error_code()), (503, Some("vault_sealed")));

    // Any other 3 of the 5 unseal again.
    for (who, share) in [alice, bob, carol].into_iter().zip(&ceremony.shares[1..4]) {
        let (status, body) = unseal_with(&vault, who, share).await;
        assert_eq!(status, 200, "{body}");
    }
    let r = vault.call(&vault.pki.merchant, "GET", &format!("/v1/tokens/{token}"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Unseal progress times out and resets.
    let (ok, _, _) = vault.officer_cli(alice, &["operator", "seal"], None).await;
    assert!(ok);
    let (status, body) = unseal_with(&vault, alice, &ceremony.shares[0]).await;
    assert_eq!((status, body["progress"].clone()), (200, json!(1)));
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let s = vault.call(alice, "GET", "/v1/sys/seal-status", None).await;
    assert_eq!(s.body["progress"], 0, "{}", s.body);
    for (who, share) in [alice, bob, carol].into_iter().zip(&ceremony.shares[2..5]) {
        assert_eq!(unseal_with(&vault, who, share).await.0, 200);
    }

    // Neither a share nor its value is in the vault's log.
    let log = vault.log_text();
    assert!(log.contains("vault unsealed"));
    for share in ceremony.shares.iter().chain(&other.shares) {
        let value = share.split('-').nth(5).unwrap();
        assert!(!log.contains(value), "the log contains a share value");
        assert!(!log.to_lowercase().contains(&value.to_lowercase()[..16]));
    }
    // The audit chain names each custodian who gave a share.
    let records = vault.call(alice, "GET", "/v1/audit/records?after_seq=0&limit=1000", None).await;
    let unseals: Vec<&Value> = records.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operation"] == "sys.unseal" && r["decision"] == "allow")
        .collect();
    assert_eq!(unseals.len(), 9, "{}", records.body);
    // And every share refused while sealed, written at the next unseal, with who gave it.
    let refused: Vec<(&str, &str)> = records.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operation"] == "sys.unseal" && r["decision"] == "deny")
        .map(|r| (r["principal"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refused,
        [
            (alice.principal.as_str(), "share_invalid"),
            (alice.principal.as_str(), "share_invalid"),
            (alice.principal.as_str(), "share_foreign"),
            (bob.principal.as_str(), "share_duplicate"),
            (alice.principal.as_str(), "custodian_already_submitted"),
            (bob.principal.as_str(), "share_altered"),
            (alice.principal.as_str(), "custodian_already_submitted"),
        ],
        "{}",
        records.body
    );
    let verify = vault.call(alice, "GET", "/v1/audit/verify", None).await;
    assert_eq!(verify.body["ok"], true, "{}", verify.body);
    vault.finish().await;
    let _ = std::fs::remove_dir_all(other_dir);
}

#[tokio::test]
async fn custodian_ceremony_m_of_n() {
    for backend in backends() {
        custodian_ceremony(backend).await;
    }
}

async fn rotation_with_two_officers(backend: Backend) {
    let mut vault = TestVault::start(&backend).await;
    let (alice, bob) = (vault.pki.alice.clone(), vault.pki.bob.clone());
    let tokens = tokenize_many(&vault, 12).await;

    // rotate_kek: alice requests, alice may not approve, bob does.
    let r = vault.call(&alice, "POST", "/v1/keys/requests", Some(json!({"action": "rotate_kek"}))).await;
    assert_eq!((r.status, r.body["state"].clone()), (202, json!("pending")), "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let same = vault.call(&alice, "POST", &format!("/v1/keys/requests/{id}/approve"), None).await;
    assert_eq!((same.status, same.error_code()), (403, Some("approval_by_requester")), "{}", same.body);
    // A merchant cannot approve either.
    let merchant = vault.call(&vault.pki.merchant, "POST", &format!("/v1/keys/requests/{id}/approve"), None).await;
    assert_eq!(merchant.error_code(), Some("forbidden"));
    let ok = vault.call(&bob, "POST", &format!("/v1/keys/requests/{id}/approve"), None).await;
    assert_eq!((ok.status, ok.body["state"].clone()), (200, json!("executed")), "{}", ok.body);
    assert_eq!(ok.body["approved_by"], bob.principal.as_str());
    let again = vault.call(&bob, "POST", &format!("/v1/keys/requests/{id}/approve"), None).await;
    assert_eq!(again.error_code(), Some("request_not_pending"));
    assert_eq!(key_row(&vault, "kek", 2).await["state"], "active");
    assert_eq!(key_row(&vault, "kek", 1).await["state"], "decrypt_only");
    assert_eq!(key_row(&vault, "kek", 1).await["records"], 0);
    let dek1 = key_row(&vault, "dek", 1).await;
    assert_eq!((dek1["wrapped_by"].clone(), dek1["state"].clone()), (json!(2), json!("active")));
    assert_all_readable(&vault, &tokens, 1).await;

    // The old KEK can go; after a restart the vault unseals with KEK 2 alone.
    request_and_approve(&vault, &alice, &bob, json!({"action": "retire", "kind": "kek", "version": 1})).await;
    assert_eq!(key_row(&vault, "kek", 1).await["state"], "retired");
    vault.kill().await;
    vault.spawn(&VaultOptions::default()).await;
    assert_all_readable(&vault, &tokens, 1).await;

    // rotate_dek with the CLI: alice requests, bob approves; records move to DEK 2.
    let (ok, stdout, stderr) = vault.officer_cli(&alice, &["keys", "rotate", "dek"], None).await;
    assert!(ok, "{stdout}{stderr}");
    let id = stdout.split_whitespace().find(|w| w.starts_with("kreq_")).unwrap().to_owned();
    let (ok, stdout, stderr) = vault.officer_cli(&alice, &["keys", "approve", &id], None).await;
    assert!(!ok && stderr.contains("approval_by_requester"), "{stdout}{stderr}");
    let (ok, stdout, stderr) = vault.officer_cli(&bob, &["keys", "approve", &id], None).await;
    assert!(ok, "{stdout}{stderr}");
    let (ok, stdout, stderr) = vault.officer_cli(&bob, &["keys", "jobs", "--watch"], None).await;
    assert!(ok && stdout.contains("done"), "{stdout}{stderr}");
    wait_for_jobs_done(&vault, Duration::from_secs(60)).await;
    assert_all_readable(&vault, &tokens, 2).await;
    assert_eq!(key_row(&vault, "dek", 1).await["records"], 0);
    let fresh = vault.tokenize(&visa(999)).await;
    let m = vault.call(&vault.pki.merchant, "GET", &format!("/v1/tokens/{fresh}"), None).await;
    assert_eq!(m.status, 200);
    assert!(key_row(&vault, "dek", 2).await["records"].as_u64().unwrap() > tokens.len() as u64);
    // Retire DEK 1 (nothing left under it), then destroy it.
    request_and_approve(&vault, &alice, &bob, json!({"action": "retire", "version": 1})).await;
    request_and_approve(&vault, &bob, &alice, json!({"action": "destroy", "version": 1})).await;
    assert_eq!(key_row(&vault, "dek", 1).await["state"], "destroyed");
    let (ok, stdout, stderr) = vault.officer_cli(&alice, &["keys", "status"], None).await;
    assert!(ok && stdout.contains("destroyed") && stdout.contains("retired"), "{stdout}{stderr}");
    let verify = vault.call(&alice, "GET", "/v1/audit/verify", None).await;
    assert_eq!(verify.body["ok"], true, "{}", verify.body);
    let records = vault.call(&alice, "GET", "/v1/audit/records?after_seq=0&limit=5000", None).await;
    let ops: Vec<(String, String)> = records.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["token"].as_str().is_some_and(|t| t == id))
        .map(|r| (r["operation"].as_str().unwrap().to_owned(), r["outcome"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        ops,
        vec![
            ("keys.rotate".to_owned(), "pending".to_owned()),
            ("keys.approve".to_owned(), "approval_by_requester".to_owned()),
            ("keys.approve".to_owned(), "executed".to_owned()),
        ]
    );
    vault.finish().await;
}

#[tokio::test]
async fn rotation_needs_a_second_officer() {
    for backend in backends() {
        rotation_with_two_officers(backend).await;
    }
}

async fn refusals(backend: Backend) {
    // One record per batch and a long pause: the job stays in the middle.
    let options = VaultOptions {
        extra_args: [
            "--reencrypt-batch",
            "1",
            "--reencrypt-pause-ms",
            "600000",
            "--key-request-ttl-secs",
            "1",
            "--dek-cryptoperiod-days",
            "0",
        ]
        .map(String::from)
        .to_vec(),
        ..VaultOptions::default()
    };
    let vault = TestVault::start_with(&backend, options).await;
    let (alice, bob) = (vault.pki.alice.clone(), vault.pki.bob.clone());
    tokenize_many(&vault, 4).await;
    let active = vault.call(&alice, "POST", "/v1/keys/requests", Some(json!({"action": "retire", "version": 1}))).await;
    assert_eq!(active.error_code(), Some("version_active"), "{}", active.body);
    request_and_approve(&vault, &alice, &bob, json!({"action": "rotate_dek"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let row = key_row(&vault, "dek", 1).await;
    assert_eq!(row["state"], "decrypt_only");
    assert!(row["records"].as_i64().unwrap() > 0, "{row}");
    assert_eq!(row["past_due"], false, "a decrypt-only key is not due");
    assert_eq!(key_row(&vault, "dek", 2).await["past_due"], true);

    for body in [json!({"action": "retire", "version": 1}), json!({"action": "destroy", "version": 1})] {
        let r = vault.call(&alice, "POST", "/v1/keys/requests", Some(body.clone())).await;
        assert_eq!((r.status, r.error_code()), (409, Some("version_in_use")), "{body}: {}", r.body);
    }
    let r = vault
        .call(&alice, "POST", "/v1/keys/requests", Some(json!({"action": "retire", "kind": "kek", "version": 1})))
        .await;
    assert_eq!(r.error_code(), Some("version_active"));
    let r = vault.call(&alice, "POST", "/v1/keys/requests", Some(json!({"action": "rotate_dek"}))).await;
    assert_eq!(r.error_code(), Some("reencryption_running"));
    let r = vault.call(&alice, "POST", "/v1/keys/requests", Some(json!({"action": "retire", "version": 9}))).await;
    assert_eq!(r.error_code(), Some("version_not_found"));
    // A forced destroy is possible only as a request for a second officer…
    let forced = vault
        .call(&alice, "POST", "/v1/keys/requests", Some(json!({"action": "destroy", "version": 1, "force": true})))
        .await;
    assert_eq!(forced.status, 202, "{}", forced.body);
    // …and this one expires before anyone approves it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let id = forced.body["id"].as_str().unwrap();
    let late = vault.call(&bob, "POST", &format!("/v1/keys/requests/{id}/approve"), None).await;
    assert_eq!((late.status, late.error_code()), (409, Some("request_expired")), "{}", late.body);
    let listed = vault.call(&bob, "GET", &format!("/v1/keys/requests/{id}"), None).await;
    assert_eq!(listed.body["state"], "expired");
    assert_eq!(key_row(&vault, "dek", 1).await["state"], "decrypt_only");
    let (ok, stdout, _) = vault.officer_cli(&alice, &["keys", "status"], None).await;
    assert!(ok && stdout.contains("PAST DUE"), "{stdout}");
    vault.finish().await;
}

#[tokio::test]
async fn retire_and_destroy_refused_while_records_depend() {
    for backend in backends() {
        refusals(backend).await;
    }
}

async fn reencryption_killed(backend: Backend) {
    let options = VaultOptions {
        extra_args: ["--reencrypt-batch", "3", "--reencrypt-pause-ms", "40"].map(String::from).to_vec(),
        ..VaultOptions::default()
    };
    let mut vault = TestVault::start_with(&backend, options.clone()).await;
    let (alice, bob) = (vault.pki.alice.clone(), vault.pki.bob.clone());
    let tokens = tokenize_many(&vault, 90).await;
    request_and_approve(&vault, &alice, &bob, json!({"action": "rotate_dek"})).await;
    let mut killed_mid_job = 0;
    let mut last_done = 0;
    for _ in 0..4 {
        let wait = rand::thread_rng().gen_range(50..400);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        vault.kill().await;
        vault.spawn(&options).await;
        let jobs = vault.call(&alice, "GET", "/v1/keys/jobs", None).await;
        let job = &jobs.body["jobs"][0];
        let done = job["done"].as_i64().unwrap();
        assert!(done >= last_done, "progress went back: {}", jobs.body);
        last_done = done;
        if job["state"] == "running" {
            killed_mid_job += 1;
        }
    }
    assert!(killed_mid_job >= 1, "every kill came after the job had finished");
    let jobs = wait_for_jobs_done(&vault, Duration::from_secs(120)).await;
    let job = &jobs["jobs"][0];
    assert_eq!(job["state"], "done", "{jobs}");
    assert_eq!(job["remaining"], 0, "{jobs}");
    assert!(job["done"].as_i64().unwrap() >= job["total"].as_i64().unwrap(), "{jobs}");
    assert_eq!(key_row(&vault, "dek", 1).await["records"], 0);
    assert_all_readable(&vault, &tokens, 2).await;
    let verify = vault.call(&alice, "GET", "/v1/audit/verify", None).await;
    assert_eq!(verify.body["ok"], true, "{}", verify.body);
    vault.finish().await;
}

#[tokio::test]
async fn reencryption_survives_sigkill() {
    for backend in backends() {
        // Several runs, each killed at random points.
        for _ in 0..2 {
            reencryption_killed(backend.clone()).await;
        }
    }
}

async fn single_control(backend: Backend) {
    // Only retirement needs a second officer in this policy: rotations and destruction
    // execute at once — except a forced destroy, which always needs one.
    let dir = paysys_tests::scratch_dir("single-control");
    let policy = dir.join("policy.toml");
    let text = paysys_policies::DEV_POLICY
        .replace(r#"operations = ["keys.rotate", "keys.retire", "keys.destroy"]"#, r#"operations = ["keys.retire"]"#);
    assert_ne!(text, paysys_policies::DEV_POLICY);
    std::fs::write(&policy, text).unwrap();
    let options = VaultOptions {
        policy: Some(policy),
        extra_args: ["--reencrypt-batch", "1", "--reencrypt-pause-ms", "600000"].map(String::from).to_vec(),
        ..VaultOptions::default()
    };
    let vault = TestVault::start_with(&backend, options).await;
    let alice = vault.pki.alice.clone();
    tokenize_many(&vault, 3).await;
    let r = vault.call(&alice, "POST", "/v1/keys/requests", Some(json!({"action": "rotate_kek"}))).await;
    assert_eq!((r.status, r.body["state"].clone()), (200, json!("executed")), "{}", r.body);
    assert_eq!(r.body["approved_by"], Value::Null);
    assert_eq!(key_row(&vault, "kek", 2).await["state"], "active");
    let r = vault.call(&alice, "POST", "/v1/keys/requests", Some(json!({"action": "rotate_dek"}))).await;
    assert_eq!((r.status, r.body["state"].clone()), (200, json!("executed")), "{}", r.body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = vault
        .call(&alice, "POST", "/v1/keys/requests", Some(json!({"action": "destroy", "version": 1, "force": true})))
        .await;
    assert_eq!((r.status, r.error_code()), (409, Some("force_requires_approval")), "{}", r.body);
    let r = vault
        .call(&alice, "POST", "/v1/keys/requests", Some(json!({"action": "retire", "kind": "kek", "version": 1})))
        .await;
    assert_eq!((r.status, r.body["state"].clone()), (202, json!("pending")), "{}", r.body);
    vault.finish().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn operations_without_dual_control_execute_at_once() {
    for backend in backends() {
        single_control(backend).await;
    }
}
