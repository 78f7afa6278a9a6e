//! Policy decisions over real mTLS, and the tamper-evident audit chain.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_tests::{backends, bin_path, Backend, Identity, TestVault, VaultOptions, VAULT_BIN};
use serde_json::json;

/// One request exercising `operation` for merchant m_1 (creating what it needs first).
async fn attempt(vault: &TestVault, who: &Identity, operation: &str) -> (u16, Option<String>) {
    let r = match operation {
        "tokens.create" => {
            vault
                .call(
                    who,
                    "POST",
                    "/v1/tokens",
                    Some(json!({"merchant_id": "m_1", "pan": "4242424242424242", "exp_month": 12, "exp_year": 2031})),
                )
                .await
        }
        "tokens.read" => {
            let token = vault.tokenize("4242424242424242").await;
            vault.call(who, "GET", &format!("/v1/tokens/{token}"), None).await
        }
        "tokens.delete" => {
            let token = vault.tokenize("4242424242424242").await;
            vault.call(who, "DELETE", &format!("/v1/tokens/{token}"), None).await
        }
        "tokens.remove_for_merchant" => {
            let token = vault.tokenize("4242424242424242").await;
            let body = json!({"merchant_id": "m_1"});
            vault.call(who, "POST", &format!("/v1/tokens/{token}/remove"), Some(body)).await
        }
        "keys.status" => vault.call(who, "GET", "/v1/sys/status", None).await,
        "audit.read" => vault.call(who, "GET", "/v1/audit/verify", None).await,
        "sys.seal" => {
            let r = vault.call(who, "POST", "/v1/sys/seal", None).await;
            if r.status == 200 {
                let key = std::fs::read_to_string(&vault.root_key_file).unwrap();
                let u = vault.call(&vault.pki.alice, "POST", "/v1/sys/unseal", Some(json!({"key": key.trim()}))).await;
                assert_eq!(u.status, 200, "{}", u.body);
            }
            r
        }
        // Allowed for the gateway, it gets past the policy to the relay itself (this
        // vault has no relay CA, so the destination is unreachable) — never `forbidden`.
        "relay" => {
            let token = vault.tokenize("4242424242424242").await;
            let body = json!({
                "token": token, "merchant_id": "m_1", "template": "sandbox_acquirer.authorize",
                "values": {"reference": "tx_policy", "amount": 100, "currency": "UZS", "capture": false},
            });
            vault.call(who, "POST", "/v1/relay", Some(body)).await
        }
        // Key requests: with the dev policy's dual control an allowed request is pending
        // (202) until a second officer approves; nothing changes here.
        "keys.rotate" => vault.call(who, "POST", "/v1/keys/requests", Some(json!({"action": "rotate_kek"}))).await,
        "keys.retire" => {
            vault
                .call(who, "POST", "/v1/keys/requests", Some(json!({"action": "retire", "kind": "dek", "version": 1})))
                .await
        }
        "keys.destroy" => {
            vault
                .call(who, "POST", "/v1/keys/requests", Some(json!({"action": "destroy", "kind": "dek", "version": 1})))
                .await
        }
        // Bob requests, the principal under test approves.
        "keys.approve" => {
            let r =
                vault.call(&vault.pki.bob, "POST", "/v1/keys/requests", Some(json!({"action": "rotate_kek"}))).await;
            let id = r.body["id"].as_str().unwrap().to_owned();
            vault.call(who, "POST", &format!("/v1/keys/requests/{id}/approve"), None).await
        }
        other => unreachable!("{other}"),
    };
    (r.status, r.error_code().map(str::to_owned))
}

/// The default policy, as a table: principal × operation → allowed.
const MATRIX: &[(&str, &[(&str, bool)])] = &[
    (
        "gateway",
        &[
            ("tokens.create", false),
            ("tokens.read", true),
            ("tokens.delete", false),
            ("tokens.remove_for_merchant", true),
            ("keys.status", false),
            ("audit.read", false),
            ("sys.seal", false),
            ("relay", true),
            ("keys.rotate", false),
            ("keys.approve", false),
            ("keys.retire", false),
            ("keys.destroy", false),
        ],
    ),
    (
        "alice",
        &[
            ("tokens.create", false),
            ("tokens.read", false),
            ("tokens.delete", false),
            ("tokens.remove_for_merchant", false),
            ("keys.status", true),
            ("audit.read", true),
            ("sys.seal", true),
            ("relay", false),
            ("keys.rotate", true),
            ("keys.approve", true),
            ("keys.retire", true),
            ("keys.destroy", true),
        ],
    ),
    (
        "merchant",
        &[
            ("tokens.create", true),
            ("tokens.read", true),
            ("tokens.delete", true),
            ("tokens.remove_for_merchant", false),
            ("keys.status", false),
            ("audit.read", false),
            ("sys.seal", false),
            ("relay", false),
            ("keys.rotate", false),
            ("keys.approve", false),
            ("keys.retire", false),
            ("keys.destroy", false),
        ],
    ),
    (
        "stranger",
        &[
            ("tokens.create", false),
            ("tokens.read", false),
            ("tokens.delete", false),
            ("tokens.remove_for_merchant", false),
            ("keys.status", false),
            ("audit.read", false),
            ("sys.seal", false),
            ("relay", false),
            ("keys.rotate", false),
            ("keys.approve", false),
            ("keys.retire", false),
            ("keys.destroy", false),
        ],
    ),
];

#[tokio::test]
async fn default_policy_matrix_over_mtls() {
    let vault = TestVault::start(&Backend::Sqlite).await;
    for (name, row) in MATRIX {
        let who = match *name {
            "gateway" => &vault.pki.gateway,
            "alice" => &vault.pki.alice,
            "merchant" => &vault.pki.merchant,
            _ => &vault.pki.stranger,
        };
        for (operation, allowed) in row.iter() {
            let (status, code) = attempt(&vault, who, operation).await;
            // Allowed operations that get past the policy to a refusal of their own: the
            // relay has no destination CA here, and the active DEK cannot be retired or
            // destroyed — both proving the request was not `forbidden`.
            let past_policy = match *operation {
                "relay" => Some((502, "relay_unreachable")),
                "keys.retire" | "keys.destroy" => Some((409, "version_active")),
                _ => None,
            };
            if let (true, Some((want_status, want_code))) = (*allowed, past_policy) {
                assert_eq!((status, code.as_deref()), (want_status, Some(want_code)), "{name} {operation}");
            } else if *allowed {
                assert!(status < 300, "{name} {operation}: {status} {code:?}");
            } else {
                assert_eq!((status, code.as_deref()), (403, Some("forbidden")), "{name} {operation}");
            }
        }
    }
    // Every one of those requests, allowed or denied, is in the audit log.
    let records = vault.call(&vault.pki.alice, "GET", "/v1/audit/records?limit=5000", None).await;
    let records = records.body["records"].as_array().unwrap().clone();
    let denied = records.iter().filter(|r| r["decision"] == "deny").count();
    assert!(denied >= 14, "denied records: {denied}");
    assert!(records
        .iter()
        .any(|r| r["principal"] == "spiffe://paysys/stranger/someone" && r["outcome"] == "forbidden"));
    vault.finish().await;
}

#[tokio::test]
async fn merchants_see_only_their_own_tokens() {
    let vault = TestVault::start(&Backend::Sqlite).await;
    let token = vault.tokenize("5555555555554444").await;
    let other = &vault.pki.other_merchant;
    for method in ["GET", "DELETE"] {
        let r = vault.call(other, method, &format!("/v1/tokens/{token}"), None).await;
        assert_eq!((r.status, r.error_code()), (404, Some("token_not_found")), "{method}");
    }
    // …exactly like a token that does not exist.
    let r = vault.call(other, "GET", "/v1/tokens/tok_0000000000000000000000", None).await;
    assert_eq!((r.status, r.error_code()), (404, Some("token_not_found")));
    // Tokenizing for another merchant is forbidden; the gateway reads any merchant's token.
    let r = vault
        .call(
            other,
            "POST",
            "/v1/tokens",
            Some(json!({"merchant_id": "m_1", "pan": "4242424242424242", "exp_month": 12, "exp_year": 2031})),
        )
        .await;
    assert_eq!((r.status, r.error_code()), (403, Some("forbidden")));
    let r = vault.call(&vault.pki.gateway, "GET", &format!("/v1/tokens/{token}"), None).await;
    assert_eq!(r.status, 200);
    // The token still works for its owner.
    assert_eq!(vault.call(&vault.pki.merchant, "GET", &format!("/v1/tokens/{token}"), None).await.status, 200);
    vault.finish().await;
}

/// `paysys-vault audit verify` offline (dev root key file): exit code and output.
async fn verify_offline(vault: &TestVault) -> (bool, String) {
    let out = tokio::process::Command::new(bin_path(VAULT_BIN))
        .args(["audit", "verify", "--database-url", &vault.db.url, "--dev-root-key-file"])
        .arg(&vault.root_key_file)
        .output()
        .await
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run SQL against the vault's database (tampering as an attacker with DB access would).
async fn tamper(vault: &TestVault, statements: &[&str]) {
    if vault.db.url.starts_with("sqlite:") {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&vault.db.url).await.unwrap();
        for s in statements {
            sqlx::query(s).execute(&mut conn).await.unwrap();
        }
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&vault.db.url).await.unwrap();
        for s in statements {
            sqlx::query(s).execute(&mut conn).await.unwrap();
        }
    }
}

#[tokio::test]
async fn every_kind_of_tampering_is_found() {
    for backend in backends() {
        // (what was done, SQL, first broken seq, reason)
        let cases: &[(&str, &[&str], i64, &str)] = &[
            ("edited field", &["UPDATE audit_log SET principal = 'spiffe://paysys/officer/mallory' WHERE seq = 4"], 4, "mac_mismatch"),
            ("deleted record", &["DELETE FROM audit_log WHERE seq = 5"], 5, "seq_gap"),
            (
                "two records swapped",
                &[
                    "UPDATE audit_log SET seq = -1 WHERE seq = 3",
                    "UPDATE audit_log SET seq = 3 WHERE seq = 6",
                    "UPDATE audit_log SET seq = 6 WHERE seq = -1",
                ],
                3,
                "mac_mismatch",
            ),
            (
                "record inserted",
                &[
                    "UPDATE audit_log SET seq = -seq WHERE seq >= 4",
                    "UPDATE audit_log SET seq = 1 - seq WHERE seq < 0",
                    "INSERT INTO audit_log SELECT 4, at, request_id, principal, operation, merchant_id, token, decision, outcome, key_version, prev_mac, mac FROM audit_log WHERE seq = 3",
                ],
                4,
                "mac_mismatch",
            ),
            ("tail truncated", &["DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)"], 0, "head_mismatch"),
        ];
        for (what, sql, seq, reason) in cases {
            let mut vault = TestVault::start(&backend).await;
            for _ in 0..5 {
                vault.tokenize("4242424242424242").await;
            }
            let r = vault.call(&vault.pki.other_merchant, "GET", "/v1/sys/status", None).await;
            assert_eq!(r.status, 403);
            let ok = vault.call(&vault.pki.alice, "GET", "/v1/audit/verify", None).await;
            assert_eq!(ok.body["ok"], true, "{what}: {}", ok.body);
            let records = ok.body["records"].as_i64().unwrap();
            assert!(records >= 6);
            assert!(verify_offline(&vault).await.0);
            vault.kill().await;

            tamper(&vault, sql).await;
            let (passed, output) = verify_offline(&vault).await;
            assert!(!passed, "{} {what}: verify passed: {output}", backend.name());
            assert!(output.contains("BROKEN") && output.contains(reason), "{what}: {output}");
            // The verify request above appended one more record (seq records + 1), the one deleted.
            let expected_seq = if *seq == 0 { records + 1 } else { *seq };
            assert!(output.contains(&format!("\"seq\":{expected_seq}")), "{what}: {output}");

            vault.spawn(&VaultOptions::default()).await;
            // The officer API reports the same break — except where the tampering took the
            // seq the vault appends next: then the vault cannot write the verify request's
            // own audit record and, failing closed, refuses it (the offline verify above is
            // the auditor's tool for that case).
            let r = vault.call(&vault.pki.alice, "GET", "/v1/audit/verify", None).await;
            if *what == "record inserted" {
                assert_eq!((r.status, r.body["error"]["code"].as_str()), (503, Some("audit_unavailable")), "{what}");
            } else {
                assert_eq!(r.body["ok"], false, "{what}: {} {}", r.status, r.body);
                assert_eq!(r.body["first_break"]["reason"], *reason, "{what}");
            }
            vault.finish().await;
        }
    }
}

#[tokio::test]
async fn the_chain_stays_linear_under_concurrent_writers_and_replicas() {
    for backend in backends() {
        let mut vault = TestVault::start(&backend).await;
        // On PostgreSQL a second vault process on the same database writes too.
        let replica_url = if let Backend::Postgres(_) = backend {
            let first = vault.url.clone();
            vault.spawn(&VaultOptions::default()).await;
            let second = vault.url.clone();
            vault.url = first.clone();
            Some((first, second))
        } else {
            None
        };
        let mut tasks = Vec::new();
        for i in 0..32 {
            let tls = vault.tls(&vault.pki.merchant);
            let url = match &replica_url {
                Some((_, b)) if i % 2 == 1 => b.clone(),
                Some((a, _)) => a.clone(),
                None => vault.url.clone(),
            };
            tasks.push(tokio::spawn(async move {
                let mut conn = tls.connect(&url).await.unwrap();
                for _ in 0..10 {
                    let r = conn
                        .call("POST", "/v1/tokens", Some(&json!({"merchant_id": "m_1", "pan": "4242424242424242", "exp_month": 12, "exp_year": 2031})))
                        .await
                        .unwrap();
                    assert_eq!(r.status, 201);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let r = vault.call(&vault.pki.alice, "GET", "/v1/audit/verify", None).await;
        assert_eq!(r.body["ok"], true, "{}", r.body);
        assert!(r.body["records"].as_i64().unwrap() >= 321);
        vault.finish().await;
    }
}

#[tokio::test]
async fn audit_export_writes_json_lines_since_a_time() {
    let vault = TestVault::start(&Backend::Sqlite).await;
    vault.tokenize("4242424242424242").await;
    let out = tokio::process::Command::new(bin_path(VAULT_BIN))
        .args(["audit", "export", "--vault-url", &vault.url, "--ca"])
        .arg(&vault.pki.ca_cert)
        .arg("--cert")
        .arg(&vault.pki.alice.cert)
        .arg("--key")
        .arg(&vault.pki.alice.key)
        .args(["--since", "2000-01-01T00:00:00Z"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().any(|r| r["operation"] == "tokens.create" && r["merchant_id"] == "m_1"));
    assert!(lines.windows(2).all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()));
    assert!(lines.windows(2).all(|w| w[0]["mac"] == w[1]["prev_mac"]));
    let future = tokio::process::Command::new(bin_path(VAULT_BIN))
        .args(["audit", "export", "--database-url", &vault.db.url, "--dev-root-key-file"])
        .arg(&vault.root_key_file)
        .args(["--since", "2999-01-01T00:00:00Z"])
        .output()
        .await
        .unwrap();
    assert!(future.status.success());
    assert!(future.stdout.is_empty());
    vault.finish().await;
}

#[tokio::test]
async fn a_bad_policy_file_stops_the_vault_with_the_line() {
    let dir = paysys_tests::scratch_dir("policy");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[roles.gateway]\nprincipals = [\"spiffe://paysys/gateway\"]\noperations = [\"tokens.crate\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin_path(VAULT_BIN)).args(["policy", "check"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("tokens.crate"), "{err}");

    let good = dir.join("good.toml");
    std::fs::write(&good, paysys_policies::DEV_POLICY).unwrap();
    let out = std::process::Command::new(bin_path(VAULT_BIN)).args(["policy", "check"]).arg(&good).output().unwrap();
    assert!(out.status.success());
    let matrix = String::from_utf8_lossy(&out.stdout);
    assert!(matrix.contains("spiffe://paysys/gateway") && matrix.contains("tokens.create"), "{matrix}");

    // `serve` refuses to start on the bad file, naming the line.
    let vault_dir = paysys_tests::scratch_dir("policy-serve");
    let pki = paysys_tests::TestPki::generate(&vault_dir);
    let out = std::process::Command::new(bin_path(VAULT_BIN))
        .args([
            "serve",
            "--database-url",
            &format!("sqlite:{}", vault_dir.join("v.db").display()),
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(&pki.server_cert)
        .arg("--tls-key")
        .arg(&pki.server_key)
        .arg("--client-ca")
        .arg(&pki.ca_cert)
        .arg("--policy")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"));
    assert!(out.stdout.is_empty(), "it must not start listening");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&vault_dir);
}
