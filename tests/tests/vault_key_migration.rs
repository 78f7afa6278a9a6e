//! Key format 2 end to end (issue 11): vaults written by the binary before it (checked-in
//! fixtures, `tests/fixtures/legacy-v1/`) unseal with the custodian shares or dev key file
//! they were made with, migrate (KEKs re-wrapped under the derived wrapping key, KCVs
//! recomputed, in one audited transaction), and every card still opens; and `serve --dev`
//! is refused on a vault initialized with custodian shares, before anything is written.
//! Real processes, real mTLS, SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_tests::{
    altered_share, backends, bin_path, database_from_fixture, fixture_path, init_with_shares, scratch_dir, Backend,
    TestDatabase, TestPki, TestVault, VaultOptions, VAULT_BIN,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// (kind, version) → (wrapped, kcv) as stored, read straight from the database.
type KeyRows = BTreeMap<(String, i64), (Vec<u8>, String)>;

async fn key_rows(db: &TestDatabase) -> KeyRows {
    use sqlx::Connection;
    const SQL: &str = "SELECT kind, version, wrapped, kcv FROM keys";
    let rows: Vec<(String, i64, Vec<u8>, String)> = if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
    };
    rows.into_iter().map(|(kind, version, wrapped, kcv)| ((kind, version), (wrapped, kcv))).collect()
}

/// What `serve` could have changed: applied migrations, `vault_meta`, key rows, audit length.
async fn snapshot(db: &TestDatabase) -> String {
    use sqlx::Connection;
    let queries = [
        "SELECT CAST(version AS TEXT) FROM _sqlx_migrations ORDER BY version",
        "SELECT name || '=' || value FROM vault_meta ORDER BY name",
        "SELECT kind || CAST(version AS TEXT) || kcv || state FROM keys ORDER BY kind, version",
        "SELECT CAST(COUNT(*) AS TEXT) FROM audit_log",
        "SELECT CAST(COUNT(*) AS TEXT) FROM cards",
    ];
    let mut out = Vec::new();
    for sql in queries {
        let rows: Vec<(String,)> = if db.url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
        } else {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
        };
        out.push(rows.into_iter().map(|(r,)| r).collect::<Vec<_>>().join(","));
    }
    out.join("\n")
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_path(name)).unwrap()).unwrap()
}

async fn unseal(vault: &TestVault, who: &paysys_tests::Identity, share: &str) -> (u16, Value) {
    let r = vault.call(who, "POST", "/v1/sys/unseal", Some(json!({ "share": share }))).await;
    (r.status, r.body)
}

async fn keys_view(vault: &TestVault) -> Value {
    let r = vault.call(&vault.pki.alice, "GET", "/v1/keys", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn audit_records(vault: &TestVault) -> Vec<Value> {
    let r = vault.call(&vault.pki.alice, "GET", "/v1/audit/records?after_seq=0&limit=5000", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["records"].as_array().unwrap().clone()
}

/// Every card of the fixture opens inside the vault, its metadata is served, and the
/// fingerprint key is unchanged (the same card with `reuse` finds its old token).
async fn assert_fixture_cards_open(vault: &TestVault, cards: &[Value], dek_version: i64) {
    let r = vault.call(&vault.pki.alice, "POST", "/v1/keys/verify-records", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["ok"].clone(), r.body["opened"].clone()), (json!(true), json!(cards.len())), "{}", r.body);
    assert_eq!(r.body["by_dek_version"][dek_version.to_string()]["opened"], cards.len(), "{}", r.body);
    let mut conn = vault.connect(&vault.pki.merchant).await;
    for card in cards {
        let (token, pan) = (card["token"].as_str().unwrap(), card["pan"].as_str().unwrap());
        let m = conn.call("GET", &format!("/v1/tokens/{token}"), None).await.unwrap();
        assert_eq!(m.status, 200, "{token}: {}", m.body);
        assert_eq!(m.body["last4"], &pan[pan.len() - 4..]);
        let again = json!({"merchant_id": "m_1", "pan": pan, "exp_month": 12, "exp_year": 2031, "reuse": true});
        let r = conn.call("POST", "/v1/tokens", Some(&again)).await.unwrap();
        assert_eq!((r.status, r.body["reused"].clone(), r.body["token"].clone()), (200, json!(true), json!(token)));
    }
}

async fn legacy_custodian_vault(backend: Backend) {
    let dir = scratch_dir("legacy-custodians");
    let pki = TestPki::generate(&dir);
    let db = database_from_fixture(&backend, &dir, "legacy-v1/custodian-vault").await;
    let fixture = fixture_json(&format!("legacy-v1/custodian-vault.{}.json", backend.name()));
    let shares: Vec<&str> = fixture["shares"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let legacy_root_kcv = fixture["root_kcv"].as_str().unwrap();
    let cards = fixture["cards"].as_array().unwrap().clone();
    let before = key_rows(&db).await;
    assert!(shares.iter().all(|s| s.starts_with(&format!("pss1-{legacy_root_kcv}-"))));

    let options = VaultOptions { dev_unseal: false, ..VaultOptions::default() };
    let root_key_file = dir.join("unused.key");
    let mut vault = TestVault::serve_existing(db.clone(), dir, pki, options.clone(), root_key_file).await;
    let (alice, bob, carol) = (vault.pki.alice.clone(), vault.pki.bob.clone(), vault.pki.carol.clone());

    // Sealed, and the legacy root KCV is what the pss1 shares are checked against.
    let s = vault.call(&alice, "GET", "/v1/sys/seal-status", None).await;
    assert_eq!(
        (s.body["sealed"].clone(), s.body["root_kcv"].clone(), s.body["root_kcv_legacy"].clone()),
        (json!(true), Value::Null, json!(legacy_root_kcv)),
        "{}",
        s.body
    );
    let (status, body) = unseal(&vault, &alice, shares[0]).await;
    assert_eq!((status, body["progress"].clone()), (200, json!(1)), "{body}");
    // The check value the custodian was shown at init, in its legacy form.
    assert_eq!(body["share_check_value"], fixture["check_values"][0]);
    let (status, body) = unseal(&vault, &bob, shares[1]).await;
    assert_eq!((status, body["sealed"].clone()), (200, json!(false)), "{body}");

    // Migrated: every row with material in format 2, KEKs re-wrapped, KCVs recomputed.
    let view = keys_view(&vault).await;
    let root_kcv = view["root_kcv"].as_str().unwrap().to_owned();
    assert_ne!(root_kcv, legacy_root_kcv);
    assert_eq!(view["root_kcv_legacy"], legacy_root_kcv);
    let after = key_rows(&db).await;
    assert_eq!(after.len(), before.len());
    for row in view["keys"].as_array().unwrap() {
        let key = (row["kind"].as_str().unwrap().to_owned(), row["version"].as_i64().unwrap());
        assert_eq!(row["format"], 2, "{row}");
        let (old_wrapped, old_kcv) = &before[&key];
        let (new_wrapped, new_kcv) = &after[&key];
        assert_eq!(row["kcv"], new_kcv.as_str());
        assert_ne!(new_kcv, old_kcv, "{key:?}: the KCV is recomputed");
        if key.0 == "kek" {
            assert_ne!(new_wrapped, old_wrapped, "{key:?}: re-wrapped under the derived key");
        } else {
            assert_eq!(new_wrapped, old_wrapped, "{key:?}: a DEK stays wrapped by its KEK");
        }
    }
    // The retired KEK 1 was migrated too: no ciphertext under the bare root key is left.
    assert_eq!(
        view["keys"].as_array().unwrap().iter().find(|k| k["kind"] == "kek" && k["version"] == 1).unwrap()["state"],
        "retired"
    );
    assert_fixture_cards_open(&vault, &cards, 2).await;

    // One audited migration, chained onto the old binary's records.
    let records = audit_records(&vault).await;
    let migrations: Vec<&Value> = records.iter().filter(|r| r["operation"] == "keys.migrate").collect();
    assert_eq!(migrations.len(), 1, "{records:?}");
    assert_eq!(migrations[0]["outcome"], "ok");
    let verify = vault.call(&alice, "GET", "/v1/audit/verify", None).await;
    assert_eq!(verify.body["ok"], true, "{}", verify.body);

    // Restart: the migrated vault unseals with the same pss1 shares (another pair), and
    // nothing is migrated twice.
    vault.kill().await;
    vault.spawn(&options).await;
    let s = vault.call(&alice, "GET", "/v1/sys/seal-status", None).await;
    assert_eq!(
        (s.body["root_kcv"].clone(), s.body["root_kcv_legacy"].clone()),
        (json!(root_kcv), json!(legacy_root_kcv))
    );
    assert_eq!(unseal(&vault, &carol, shares[2]).await.0, 200);
    // A custodian hands in an altered pss1 share: this vault recorded no commitments, so it
    // shows only as two shares that do not rebuild the key. Nobody's progress is lost...
    let (status, body) = unseal(&vault, &bob, &altered_share(shares[1])).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!("unseal_failed")), "{body}");
    let s = vault.call(&alice, "GET", "/v1/sys/seal-status", None).await;
    assert_eq!((s.body["sealed"].clone(), s.body["progress"].clone()), (json!(true), json!(2)), "{}", s.body);
    // ...and one more share lets the vault leave the wrong one out.
    let (status, body) = unseal(&vault, &alice, shares[0]).await;
    assert_eq!((status, body["sealed"].clone()), (200, json!(false)), "{body}");
    assert_eq!(key_rows(&db).await, after, "nothing re-migrated");
    assert_fixture_cards_open(&vault, &cards, 2).await;
    let records = audit_records(&vault).await;
    assert_eq!(records.iter().filter(|r| r["operation"] == "keys.migrate").count(), 1);
    let unseal_records: Vec<(&str, &str, &str)> = records
        .iter()
        .filter(|r| r["operation"] == "sys.unseal")
        .map(|r| (r["principal"].as_str().unwrap(), r["decision"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    let (a, b, c) = (alice.principal.as_str(), bob.principal.as_str(), carol.principal.as_str());
    assert_eq!(
        unseal_records[unseal_records.len() - 4..],
        [(c, "allow", "ok"), (a, "allow", "ok"), (b, "deny", "unseal_failed"), (b, "deny", "share_altered")],
        "{unseal_records:?}"
    );

    // Key changes carry on in format 2: rotate the KEK under dual control.
    let r = vault.call(&alice, "POST", "/v1/keys/requests", Some(json!({"action": "rotate_kek"}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let a = vault.call(&bob, "POST", &format!("/v1/keys/requests/{id}/approve"), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let view = keys_view(&vault).await;
    let kek3 =
        view["keys"].as_array().unwrap().iter().find(|k| k["kind"] == "kek" && k["version"] == 3).unwrap().clone();
    assert_eq!((kek3["state"].clone(), kek3["format"].clone()), (json!("active"), json!(2)));
    assert_fixture_cards_open(&vault, &cards, 2).await;
    let verify = vault.call(&alice, "GET", "/v1/audit/verify", None).await;
    assert_eq!(verify.body["ok"], true, "{}", verify.body);
    vault.finish().await;
}

#[tokio::test]
async fn a_vault_from_the_previous_binary_unseals_migrates_and_its_cards_open() {
    for backend in backends() {
        legacy_custodian_vault(backend).await;
    }
}

/// The dev-mode fixture, unsealed at start from its key file: migrated before serving.
#[tokio::test]
async fn a_dev_vault_from_the_previous_binary_migrates_at_start() {
    let backend = Backend::Sqlite;
    let dir = scratch_dir("legacy-dev");
    let pki = TestPki::generate(&dir);
    let db = database_from_fixture(&backend, &dir, "legacy-v1/dev-vault").await;
    let root_key_file = dir.join("root.key");
    std::fs::copy(fixture_path("legacy-v1/dev-vault.root.key"), &root_key_file).unwrap();
    let before = key_rows(&db).await;
    let vault = TestVault::serve_existing(db.clone(), dir, pki, VaultOptions::default(), root_key_file).await;
    let view = keys_view(&vault).await;
    assert!(view["keys"].as_array().unwrap().iter().all(|k| k["format"] == 2), "{view}");
    assert!(view["root_kcv"].is_string() && view["root_kcv_legacy"].is_string(), "{view}");
    let after = key_rows(&db).await;
    assert_ne!(after[&("kek".to_owned(), 1)], before[&("kek".to_owned(), 1)]);
    let cards = fixture_json("legacy-v1/dev-vault.json")["cards"].as_array().unwrap().clone();
    assert_fixture_cards_open(&vault, &cards, 1).await;
    assert!(vault.log_text().contains("migrated the key store to key format 2"));
    let records = audit_records(&vault).await;
    assert_eq!(records.iter().filter(|r| r["operation"] == "keys.migrate").count(), 1);
    vault.finish().await;
}

/// `paysys-vault serve …` that is expected to exit: (exit code, stderr).
async fn serve_to_exit(db: &TestDatabase, pki: &TestPki, extra: &[&str]) -> (Option<i32>, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(bin_path(VAULT_BIN))
            .args(["serve", "--database-url", &db.url, "--listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(&pki.server_cert)
            .arg("--tls-key")
            .arg(&pki.server_key)
            .arg("--client-ca")
            .arg(&pki.ca_cert)
            .args(extra)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("serve did not exit")
    .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

const EXIT_DEV_REFUSED: i32 = 4;

async fn dev_refused(backend: Backend) {
    // A vault initialized with custodian shares by this binary.
    let dir = scratch_dir("dev-refused");
    let pki = TestPki::generate(&dir);
    let db = TestDatabase::create(&backend, &dir).await;
    let ceremony = init_with_shares(&db.url, 3, 2).await;
    let before = snapshot(&db).await;
    let key_file = dir.join("someone.key");
    std::fs::write(&key_file, "00".repeat(32)).unwrap();
    let key_file = key_file.to_str().unwrap();
    for extra in [vec!["--dev"], vec!["--dev", "--dev-root-key-file", key_file]] {
        let (code, stderr) = serve_to_exit(&db, &pki, &extra).await;
        assert_eq!(code, Some(EXIT_DEV_REFUSED), "{extra:?}: {stderr}");
        assert!(stderr.contains("refusing --dev") && stderr.contains("custodian shares"), "{stderr}");
        assert_eq!(snapshot(&db).await, before, "{extra:?}: nothing changed");
    }
    // Without --dev it serves, sealed, for its custodians.
    let options = VaultOptions { dev_unseal: false, ..VaultOptions::default() };
    let vault = TestVault::serve_existing(db, dir.clone(), pki.clone(), options, dir.join("unused.key")).await;
    let s = vault.call(&vault.pki.alice, "GET", "/v1/sys/seal-status", None).await;
    assert_eq!((s.body["sealed"].clone(), s.body["dev"].clone()), (json!(true), json!(false)));
    assert_eq!(unseal(&vault, &vault.pki.alice, &ceremony.shares[0]).await.0, 200);
    vault.finish().await;

    // A vault of the previous binary: refused before migration 0003 is even applied.
    let dir = scratch_dir("dev-refused-legacy");
    let pki = TestPki::generate(&dir);
    let db = database_from_fixture(&backend, &dir, "legacy-v1/custodian-vault").await;
    let before = snapshot(&db).await;
    let (code, stderr) = serve_to_exit(&db, &pki, &["--dev"]).await;
    assert_eq!(code, Some(EXIT_DEV_REFUSED), "{stderr}");
    assert_eq!(snapshot(&db).await, before);
    assert!(before.starts_with("1,2\n"), "still at migration 2: {before}");
    db.drop_database().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn serve_dev_is_refused_on_a_custodian_vault_and_changes_nothing() {
    for backend in backends() {
        dev_refused(backend).await;
    }
}

/// The reverse is no hole: a dev-initialized vault served without `--dev` stays sealed
/// (no shares exist; the key unseal answers `dev_mode_required`), and says why at start.
#[tokio::test]
async fn a_dev_vault_without_dev_stays_sealed_and_says_why() {
    let dir = scratch_dir("dev-without-dev");
    let pki = TestPki::generate(&dir);
    let db = database_from_fixture(&Backend::Sqlite, &dir, "legacy-v1/dev-vault").await;
    let options = VaultOptions { dev_unseal: false, ..VaultOptions::default() };
    let vault = TestVault::serve_existing(db, dir.clone(), pki, options, dir.join("unused.key")).await;
    let key = std::fs::read_to_string(fixture_path("legacy-v1/dev-vault.root.key")).unwrap();
    let r = vault.call(&vault.pki.alice, "POST", "/v1/sys/unseal", Some(json!({"key": key.trim()}))).await;
    assert_eq!((r.status, r.error_code()), (403, Some("dev_mode_required")));
    let s = vault.call(&vault.pki.alice, "GET", "/v1/sys/seal-status", None).await;
    assert_eq!(s.body["sealed"], true);
    assert!(vault.log_text().contains("initialized in dev mode"), "{}", vault.log_text());
    vault.finish().await;
}
