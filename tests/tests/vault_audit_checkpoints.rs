//! Signed audit checkpoints end to end (issue 11): the vault signs its chain head into a
//! file outside the database; `audit verify --checkpoint` then finds what the HMAC chain
//! alone cannot — a tail cut off with the head moved back, an older copy of the database
//! restored — and refuses edited or forged checkpoint lines. Real processes, real mTLS,
//! the database tampered with directly as someone with write access to it would.
//! SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_tests::{backends, bin_path, Backend, TestVault, VaultOptions, VAULT_BIN};
use paysys_vault::checkpoint::{Checkpoint, CheckpointReason};
use paysys_vault::keyring::Keyring;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Serve flags: checkpoints to `DIR/checkpoints.jsonl`, every `interval_secs`.
fn checkpoint_options(dir: &Path, interval_secs: u64) -> VaultOptions {
    VaultOptions {
        extra_args: vec![
            "--audit-checkpoint-file".into(),
            dir.join("checkpoints.jsonl").display().to_string(),
            "--audit-checkpoint-interval-secs".into(),
            interval_secs.to_string(),
        ],
        ..VaultOptions::default()
    }
}

async fn start(backend: &Backend, interval_secs: u64) -> (TestVault, VaultOptions, PathBuf) {
    let dir = paysys_tests::scratch_dir(&format!("checkpoints-{}", backend.name()));
    let pki = paysys_tests::TestPki::generate(&dir);
    let options = checkpoint_options(&dir, interval_secs);
    let vault = TestVault::start_prepared(backend, dir.clone(), pki, options.clone()).await;
    (vault, options, dir.join("checkpoints.jsonl"))
}

fn file_lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// `paysys-vault audit checkpoint` as officer alice: the printed line, parsed.
async fn checkpoint_now(vault: &TestVault) -> Value {
    let (ok, stdout, stderr) = vault.officer_cli(&vault.pki.alice, &["audit", "checkpoint"], None).await;
    assert!(ok, "audit checkpoint failed: {stderr}");
    serde_json::from_str(stdout.trim()).unwrap()
}

/// `paysys-vault audit verify` offline (database + dev root key file) with `extra` flags.
async fn verify_offline(vault: &TestVault, extra: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(bin_path(VAULT_BIN))
        .args(["audit", "verify", "--database-url", &vault.db.url, "--dev-root-key-file"])
        .arg(&vault.root_key_file)
        .args(extra)
        .output()
        .await
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `paysys-vault audit verify` over the officer API as alice with `extra` flags.
async fn verify_online(vault: &TestVault, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = vault.officer_cli(&vault.pki.alice, &args, None).await;
    (ok, format!("{stdout}{stderr}"))
}

async fn tokenize(vault: &TestVault, n: usize) {
    for _ in 0..n {
        vault.tokenize("4242424242424242").await;
    }
}

/// Run SQL on the vault's database, as someone with write access to it.
async fn tamper(db_url: &str, statements: &[String]) {
    use sqlx::Connection;
    if db_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(db_url).await.unwrap();
        for s in statements {
            sqlx::query(s).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
        for s in statements {
            sqlx::query(s).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    }
}

/// Delete every audit record after `keep` and move the chain head back onto record `keep`,
/// so the shortened chain is consistent and the HMAC chain alone verifies.
async fn truncate_to(vault: &TestVault, keep: i64) {
    tamper(
        &vault.db.url,
        &[
            format!("DELETE FROM audit_log WHERE seq > {keep}"),
            format!(
                "UPDATE audit_head SET seq = {keep}, mac = (SELECT mac FROM audit_log WHERE seq = {keep}) WHERE id = 1"
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_truncated_tail_with_the_head_moved_back_is_found_only_with_checkpoints() {
    for backend in backends() {
        let (mut vault, options, file) = start(&backend, 3600).await;
        tokenize(&vault, 4).await;
        let first = checkpoint_now(&vault).await;
        tokenize(&vault, 4).await;
        let second = checkpoint_now(&vault).await;
        let signed_seq = second["seq"].as_i64().unwrap();
        assert!(signed_seq > first["seq"].as_i64().unwrap() + 4);
        // What the command printed is exactly what the vault appended to its file.
        let lines = file_lines(&file);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(serde_json::from_str::<Value>(&lines[1]).unwrap(), second);
        assert_eq!(second["reason"], "on_demand");
        let checkpoint_flag = ["--checkpoint", file.to_str().unwrap()];
        assert!(verify_offline(&vault, &checkpoint_flag).await.0);
        vault.kill().await;

        // Cut off the last records — the tokenizations and the second checkpoint's request
        // among them — and move the head back onto what is left.
        let keep = first["seq"].as_i64().unwrap() + 2;
        truncate_to(&vault, keep).await;

        // The HMAC chain alone cannot see it: this is the hole checkpoints close.
        let (passed, output) = verify_offline(&vault, &[]).await;
        assert!(passed, "{} without checkpoints: {output}", backend.name());
        assert!(output.contains(&format!("audit chain OK: {keep} records")), "{output}");

        let (passed, output) = verify_offline(&vault, &checkpoint_flag).await;
        assert!(!passed, "{}: {output}", backend.name());
        assert!(output.contains("FINDING audit_truncated"), "{output}");
        assert!(output.contains(&format!("seq {signed_seq} signed")), "{output}");
        assert!(output.contains(&format!("the chain head is at seq {keep}")), "{output}");
        assert!(!output.contains("audit_rolled_back"), "{output}");
        assert!(output.contains("newest matching: seq"), "{output}");

        // The vault carries on writing over the cut: the seq the checkpoint signed now
        // holds another record. The officer API finds it the same way.
        vault.spawn(&options).await;
        tokenize(&vault, usize::try_from(signed_seq - keep).unwrap() + 2).await;
        let (passed, output) = verify_online(&vault, &[]).await;
        assert!(passed, "{output}");
        let (passed, output) = verify_online(&vault, &checkpoint_flag).await;
        assert!(!passed, "{}: {output}", backend.name());
        assert!(output.contains("FINDING audit_truncated") && output.contains("has another MAC"), "{output}");
        vault.finish().await;
    }
}

/// Copy the vault's database aside (the vault is stopped): SQLite `VACUUM INTO` a file,
/// PostgreSQL `CREATE DATABASE … TEMPLATE`.
async fn back_up(vault: &TestVault, backup: &Path) -> String {
    match vault.db.url.strip_prefix("sqlite:") {
        Some(_) => {
            tamper(&vault.db.url, &[format!("VACUUM INTO '{}'", backup.display())]).await;
            String::new()
        }
        None => {
            let name = pg_name(&vault.db.url);
            let copy = format!("{name}_backup");
            pg_admin(&vault.db.url, &name, &[format!("CREATE DATABASE {copy} TEMPLATE {name}")]).await;
            copy
        }
    }
}

/// Put the backup back in place of the vault's database (the vault is stopped).
async fn restore(vault: &TestVault, backup: &Path, copy: &str) {
    match vault.db.url.strip_prefix("sqlite:") {
        Some(path) => {
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
            std::fs::copy(backup, path).unwrap();
        }
        None => {
            let name = pg_name(&vault.db.url);
            pg_admin(
                &vault.db.url,
                &name,
                &[
                    format!("ALTER DATABASE {name} RENAME TO {name}_newer"),
                    format!("ALTER DATABASE {copy} RENAME TO {name}"),
                    format!("DROP DATABASE {name}_newer"),
                ],
            )
            .await;
        }
    }
}

fn pg_name(url: &str) -> String {
    url.rsplit_once('/').unwrap().1.to_owned()
}

/// Run statements on the server's `postgres` database after closing every session of `name`.
async fn pg_admin(url: &str, name: &str, statements: &[String]) {
    use sqlx::Connection;
    let admin = format!("{}/postgres", url.rsplit_once('/').unwrap().0);
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    for s in statements {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(s).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn an_older_copy_of_the_database_restored_is_found_as_a_rollback() {
    for backend in backends() {
        let (mut vault, options, file) = start(&backend, 3600).await;
        tokenize(&vault, 3).await;
        let before_backup = checkpoint_now(&vault).await;
        vault.kill().await;
        let backup = vault.dir.join("backup.db");
        let copy = back_up(&vault, &backup).await;

        vault.spawn(&options).await;
        tokenize(&vault, 5).await;
        let after_backup = checkpoint_now(&vault).await;
        let checkpoint_flag = ["--checkpoint", file.to_str().unwrap()];
        assert!(verify_offline(&vault, &checkpoint_flag).await.0);
        vault.kill().await;

        restore(&vault, &backup, &copy).await;

        // The restored copy is a consistent, complete chain: verify alone is satisfied.
        let (passed, output) = verify_offline(&vault, &[]).await;
        assert!(passed, "{} without checkpoints: {output}", backend.name());

        let (passed, output) = verify_offline(&vault, &checkpoint_flag).await;
        assert!(!passed, "{}: {output}", backend.name());
        assert!(output.contains("FINDING audit_rolled_back"), "{output}");
        assert!(!output.contains("audit_truncated"), "{output}");
        assert!(output.contains(&format!("seq {} signed", after_backup["seq"])), "{output}");
        // The checkpoint taken before the backup still matches.
        assert!(output.contains(&format!("newest matching: seq {}", before_backup["seq"])), "{output}");

        // Serving the restored copy and writing past the lost seq does not hide it.
        vault.spawn(&options).await;
        tokenize(&vault, 8).await;
        let (passed, output) = verify_online(&vault, &checkpoint_flag).await;
        assert!(!passed, "{}: {output}", backend.name());
        assert!(output.contains("FINDING audit_rolled_back"), "{output}");
        vault.finish().await;
    }
}

#[tokio::test]
async fn edited_and_forged_checkpoint_lines_are_refused() {
    let (vault, _options, file) = start(&Backend::Sqlite, 3600).await;
    tokenize(&vault, 2).await;
    let genuine = checkpoint_now(&vault).await;
    let status = vault.call(&vault.pki.alice, "GET", "/v1/sys/status", None).await;
    let key = &status.body["audit_checkpoint_key"];
    assert_eq!(key["algorithm"], "Ed25519");
    assert_eq!(key["public_key"], genuine["public_key"]);
    assert_eq!(key["key_id"], genuine["key_id"]);

    // An insider who can write the file claims the chain reached seq 10_000: edited…
    let mut edited = genuine.clone();
    edited["seq"] = 10_000.into();
    // …or signed with a key of their own (a whole other vault's), claiming it as theirs…
    let (root, stored) = Keyring::generate(0).unwrap();
    let other = Keyring::unseal(root, &stored).unwrap();
    let mac = hex_bytes(genuine["head_mac"].as_str().unwrap());
    let forged = Checkpoint::sign(&other, 10_000, &mac, 1_780_000_000_000, CheckpointReason::Periodic).unwrap();
    // …or claiming the vault's key over their signature.
    let mut claimed = forged.clone();
    claimed.public_key = genuine["public_key"].as_str().unwrap().to_owned();
    claimed.key_id = genuine["key_id"].as_str().unwrap().to_owned();
    let text = [
        std::fs::read_to_string(&file).unwrap(),
        format!("{edited}\n"),
        format!("{}\n", forged.to_line()),
        format!("{}\n", claimed.to_line()),
        "not a checkpoint\n".to_owned(),
    ]
    .concat();
    let tampered = vault.dir.join("tampered.jsonl");
    std::fs::write(&tampered, text).unwrap();
    let flag = ["--checkpoint", tampered.to_str().unwrap()];
    let name = tampered.display().to_string();

    for (how, (passed, output)) in
        [("offline", verify_offline(&vault, &flag).await), ("officer API", verify_online(&vault, &flag).await)]
    {
        assert!(!passed, "{how}: {output}");
        assert!(output.contains(&format!("FINDING checkpoint_signature_invalid at {name}:2")), "{how}: {output}");
        assert!(output.contains(&format!("FINDING checkpoint_foreign_key at {name}:3")), "{how}: {output}");
        assert!(output.contains(&format!("FINDING checkpoint_signature_invalid at {name}:4")), "{how}: {output}");
        assert!(output.contains(&format!("FINDING checkpoint_malformed at {name}:5")), "{how}: {output}");
        // A refused line proves nothing: no truncation is claimed from seq 10_000.
        assert!(!output.contains("audit_truncated") && !output.contains("audit_rolled_back"), "{how}: {output}");
        assert!(output.contains("5 lines, 1 signed by this vault, 1 match the database"), "{how}: {output}");
    }

    // Pinning a key that is not the vault's: the genuine line is foreign to it.
    let other_key = forged.public_key.clone();
    let original = ["--checkpoint", file.to_str().unwrap(), "--public-key", &other_key];
    let (passed, output) = verify_online(&vault, &original).await;
    assert!(!passed && output.contains("FINDING checkpoint_foreign_key"), "{output}");
    let (passed, output) = verify_offline(&vault, &original).await;
    assert!(!passed && output.contains("not this vault's checkpoint key"), "{output}");
    // The right key, pinned, is enough on its own: no status call needed.
    let pinned = ["--checkpoint", file.to_str().unwrap(), "--public-key", genuine["public_key"].as_str().unwrap()];
    let (passed, output) = verify_online(&vault, &pinned).await;
    assert!(passed, "{output}");
    vault.finish().await;
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

#[tokio::test]
async fn a_normal_run_checkpoints_when_the_head_moves_and_verifies() {
    for backend in backends() {
        let (mut vault, _options, file) = start(&backend, 1).await;
        tokenize(&vault, 3).await;
        let periodic = wait_for_lines(&file, 1).await;
        assert_eq!(serde_json::from_str::<Value>(&periodic[0]).unwrap()["reason"], "periodic");
        // Nothing happens, nothing is signed: the head has not moved (after one more tick,
        // in case the first fell between two tokenizations).
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let settled = file_lines(&file);
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let idle = file_lines(&file);
        assert_eq!(idle.len(), settled.len(), "{idle:?}");
        tokenize(&vault, 1).await;
        wait_for_lines(&file, idle.len() + 1).await;
        assert!(vault.terminate().await, "{}", vault.log_text());

        // A clean stop signs the records since the last tick (an hour away here).
        vault.spawn(&checkpoint_options(&vault.dir, 3600)).await;
        let before = file_lines(&file).len();
        tokenize(&vault, 1).await;
        assert!(vault.terminate().await, "{}", vault.log_text());
        let all = file_lines(&file);
        assert_eq!(all.len(), before + 1, "{all:?}");
        assert_eq!(serde_json::from_str::<Value>(all.last().unwrap()).unwrap()["reason"], "shutdown");
        let seqs: Vec<i64> =
            all.iter().map(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

        let checkpoint_flag = ["--checkpoint", file.to_str().unwrap()];
        let (passed, output) = verify_offline(&vault, &checkpoint_flag).await;
        assert!(passed, "{}: {output}", backend.name());
        assert!(output.contains("checkpoints OK"), "{output}");
        assert!(output.contains(&format!("{n} signed by this vault, {n} match", n = all.len())), "{output}");
        vault.spawn(&checkpoint_options(&vault.dir, 3600)).await;
        let (passed, output) = verify_online(&vault, &checkpoint_flag).await;
        assert!(passed, "{}: {output}", backend.name());
        vault.finish().await;
    }
}

/// Wait until `file` has at least `n` lines (the periodic task runs every second).
async fn wait_for_lines(file: &Path, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let lines = file_lines(file);
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} has fewer than {n} lines: {:?}", file.display(), file_lines(file));
}

#[tokio::test]
async fn only_audit_readers_checkpoint_and_a_moved_head_is_not_signed() {
    let (mut vault, options, file) = start(&Backend::Sqlite, 3600).await;
    tokenize(&vault, 3).await;
    // The gateway and a merchant hold real certificates, but no audit.read.
    for who in [&vault.pki.gateway, &vault.pki.merchant, &vault.pki.stranger] {
        let r = vault.call(who, "POST", "/v1/audit/checkpoint", None).await;
        assert_eq!((r.status, r.error_code()), (403, Some("forbidden")), "{}", who.principal);
        let r = vault.call(who, "GET", "/v1/audit/checkpoints", None).await;
        assert_eq!((r.status, r.error_code()), (403, Some("forbidden")), "{}", who.principal);
    }
    let (ok, _, stderr) = vault.officer_cli(&vault.pki.merchant, &["audit", "checkpoint"], None).await;
    assert!(!ok && stderr.contains("forbidden"), "{stderr}");
    assert!(file_lines(&file).is_empty());

    // The checkpoint request is audited, and the database remembers the checkpoint.
    let checkpoint = checkpoint_now(&vault).await;
    let records = vault.call(&vault.pki.alice, "GET", "/v1/audit/records?limit=5000", None).await;
    let outcome = format!("ok seq={}", checkpoint["seq"]);
    assert!(
        records.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["operation"] == "audit.read" && r["outcome"] == outcome),
        "{}",
        records.body
    );
    let remembered = vault.call(&vault.pki.alice, "GET", "/v1/audit/checkpoints", None).await;
    assert_eq!(remembered.body["checkpoints"][0]["seq"], checkpoint["seq"]);
    assert_eq!(remembered.body["checkpoints"][0]["head_mac"], checkpoint["head_mac"]);

    // Someone with database access moves the head onto a record with a made-up MAC and
    // asks for a checkpoint to make it official: the vault will not sign it.
    vault.kill().await;
    tamper(&vault.db.url, &["UPDATE audit_head SET seq = seq - 2, mac = zeroblob(32) WHERE id = 1".to_owned()]).await;
    vault.spawn(&options).await;
    let r = vault.call(&vault.pki.alice, "POST", "/v1/audit/checkpoint", None).await;
    assert_eq!((r.status, r.error_code()), (409, Some("audit_chain_broken")), "{}", r.body);
    assert_eq!(file_lines(&file).len(), 1);
    vault.finish().await;
}
