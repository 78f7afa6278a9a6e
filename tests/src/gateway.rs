//! The gateway as a real process next to a [`TestVault`] relaying to a [`TestSandbox`],
//! and a JSON-RPC client that signs its requests with the merchant's secret.

use crate::{
    bin_path, scratch_dir, Backend, SandboxOptions, TestDatabase, TestPki, TestSandbox, TestVault, VaultOptions,
    GATEWAY_BIN,
};
use paysys_test_support::process::spawn_listening;
use paysys_test_support::rpc::RpcClient;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokio::process::{Child, Command};

/// A sandbox (slow card answering after `auth_delay_ms`) and a vault relaying
/// `sandbox_acquirer` to it over TLS verified against the test PKI's CA — the way
/// `paysys up` wires them (`--relay-ca`, `--destination-url`).
pub async fn start_vault_and_sandbox(backend: &Backend, auth_delay_ms: u64) -> (TestVault, TestSandbox) {
    let dir = scratch_dir(&format!("gateway-{}", backend.name()));
    let pki = TestPki::generate(&dir);
    // On SQLite the sandbox keeps a file, as under `paysys up`, so its authorizations take
    // the group-commit path; otherwise its in-memory database (the sqlx path).
    let database_url = match backend {
        Backend::Sqlite => Some(format!("sqlite:{}", dir.join("sandbox.db").display())),
        Backend::Postgres(_) => None,
    };
    let sandbox_options = SandboxOptions { auth_delay_ms, database_url, ..SandboxOptions::new(&pki) };
    let sandbox = TestSandbox::start(&dir, &sandbox_options).await;
    let options = VaultOptions { extra_args: sandbox.relay_args(&pki.ca_cert), ..VaultOptions::default() };
    let vault = TestVault::start_prepared(backend, dir, pki, options).await;
    (vault, sandbox)
}

/// How to start the gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// The vault merchant id the gateway merchant is created with.
    pub merchant_id: String,
    pub acquirer_timeout_ms: u64,
    pub worker_interval_ms: u64,
    /// More `serve` flags (the 3-D Secure timings, say).
    pub extra_args: Vec<String>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            merchant_id: "m_1".into(),
            acquirer_timeout_ms: 5_000,
            worker_interval_ms: 200,
            extra_args: Vec::new(),
        }
    }
}

/// A running `paysys-gateway serve` (plain HTTP on loopback) with one merchant; it
/// dereferences to that merchant's signed JSON-RPC client (`gateway.ok(…)`,
/// `gateway.url`, `gateway.secret`).
#[derive(Debug)]
pub struct TestGateway {
    /// The merchant's client for this process.
    pub rpc: RpcClient,
    pub merchant_id: String,
    pub db: TestDatabase,
    pub dir: PathBuf,
    pub log_file: PathBuf,
    options: GatewayOptions,
    child: Child,
}

/// `paysys-gateway serve` on `db` with `key_file`, next to `vault` and `sandbox`.
async fn spawn_serve(
    vault: &TestVault,
    sandbox: &TestSandbox,
    db: &TestDatabase,
    key_file: &Path,
    options: &GatewayOptions,
    log_file: &Path,
) -> (Child, String) {
    let mut cmd = Command::new(bin_path(GATEWAY_BIN));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db.url])
        .arg("--secret-key-file")
        .arg(key_file)
        .args(["--vault-url", &vault.url])
        .arg("--vault-ca")
        .arg(&vault.pki.ca_cert)
        .arg("--vault-cert")
        .arg(&vault.pki.gateway.cert)
        .arg("--vault-key")
        .arg(&vault.pki.gateway.key)
        .args(["--acquirer-url", &sandbox.url])
        .arg("--acquirer-ca")
        .arg(&vault.pki.ca_cert)
        .args(["--acquirer-timeout-ms", &options.acquirer_timeout_ms.to_string()])
        .args(["--worker-interval-ms", &options.worker_interval_ms.to_string()])
        .args(&options.extra_args)
        .env("PAYSYS_LOG", "debug");
    spawn_listening(cmd, "paysys-gateway listening on ", log_file).await
}

impl TestGateway {
    pub async fn start(vault: &TestVault, sandbox: &TestSandbox, backend: &Backend, options: GatewayOptions) -> Self {
        let dir = vault.dir.join(format!("gateway-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = TestDatabase::create(backend, &dir).await;
        let key_file = dir.join("secret.key");
        let gateway = bin_path(GATEWAY_BIN);
        let out = Command::new(&gateway).arg("secret-key").arg("--out").arg(&key_file).output().await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = Command::new(&gateway)
            .args(["merchant", "create", "--json", "--name", "Test shop", "--database-url", &db.url])
            .args(["--merchant-id", &options.merchant_id])
            .arg("--secret-key-file")
            .arg(&key_file)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let created: Value = serde_json::from_slice(&out.stdout).unwrap();
        let log_file = dir.join("gateway.log");
        let (child, url) = spawn_serve(vault, sandbox, &db, &key_file, &options, &log_file).await;
        TestGateway {
            rpc: RpcClient::new(&url, created["service_id"].as_str().unwrap(), created["secret"].as_str().unwrap()),
            merchant_id: created["merchant_id"].as_str().unwrap().to_owned(),
            db,
            dir,
            log_file,
            options,
            child,
        }
    }

    /// A second `serve` process on this gateway's database and secret key: a replica
    /// with its own log file, serving the same merchant.
    pub async fn start_replica(&self, vault: &TestVault, sandbox: &TestSandbox) -> TestGateway {
        let log_file = self.dir.join(format!("gateway-replica-{:08x}.log", rand::random::<u32>()));
        let key_file = self.dir.join("secret.key");
        let (child, url) = spawn_serve(vault, sandbox, &self.db, &key_file, &self.options, &log_file).await;
        TestGateway {
            rpc: RpcClient { url, ..self.rpc.clone() },
            merchant_id: self.merchant_id.clone(),
            // Dropping a PostgreSQL database is the first process's job.
            db: self.db.shared(),
            dir: self.dir.clone(),
            log_file,
            options: self.options.clone(),
            child,
        }
    }

    /// SIGKILL the process (no shutdown of any kind: whatever it had not committed is
    /// lost) and start `serve` again on the same database, key and flags; the client
    /// follows it to its new port.
    pub async fn kill_and_restart(&mut self, vault: &TestVault, sandbox: &TestSandbox) {
        self.child.kill().await.unwrap();
        let key_file = self.dir.join("secret.key");
        let (child, url) = spawn_serve(vault, sandbox, &self.db, &key_file, &self.options, &self.log_file).await;
        self.child = child;
        self.rpc.url = url;
    }

    /// Run `paysys-gateway merchant ARGS…` on this gateway's database; its stdout.
    pub async fn merchant_command(&self, args: &[&str]) -> String {
        let out = Command::new(bin_path(GATEWAY_BIN))
            .arg("merchant")
            .args(args)
            .args(["--database-url", &self.db.url])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "merchant {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Every byte the gateway's database holds: the SQLite files, or every PostgreSQL
    /// row as text ([`paysys_test_support::dump`]).
    pub async fn database_bytes(&self) -> Vec<u8> {
        paysys_test_support::dump::database_dump(&self.db.url).await
    }

    /// Stop the process and drop a PostgreSQL database.
    pub async fn finish(mut self) {
        let _ = self.child.kill().await;
        self.db.drop_database().await;
    }
}

impl std::ops::Deref for TestGateway {
    type Target = RpcClient;

    fn deref(&self) -> &RpcClient {
        &self.rpc
    }
}
