//! The gateway as a real process next to a [`TestVault`] relaying to a [`TestSandbox`],
//! and a JSON-RPC client that signs its requests with the merchant's secret.

use crate::{
    bin_path, scratch_dir, Backend, SandboxOptions, TestDatabase, TestPki, TestSandbox, TestVault, VaultOptions,
    GATEWAY_BIN,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use paysys_gateway::secrets::MerchantSecret;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Start `cmd`, wait for its `<prefix>` stdout line, return the child and the URL.
async fn spawn_listening(mut cmd: Command, prefix: &str, log_file: &PathBuf) -> (Child, String) {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_file).unwrap();
    cmd.stdout(Stdio::piped()).stderr(Stdio::from(log)).kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the process did not start within 30 s")
        .unwrap()
        .unwrap_or_else(|| {
            panic!("exited before listening; log:\n{}", std::fs::read_to_string(log_file).unwrap_or_default())
        });
    let url = line.strip_prefix(prefix).unwrap_or_else(|| panic!("unexpected line {line:?}")).to_owned();
    (child, url)
}

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

/// A running `paysys-gateway serve` (plain HTTP on loopback) with one merchant.
#[derive(Debug)]
pub struct TestGateway {
    pub url: String,
    pub service_id: String,
    pub secret: String,
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
    log_file: &PathBuf,
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
            url,
            service_id: created["service_id"].as_str().unwrap().to_owned(),
            secret: created["secret"].as_str().unwrap().to_owned(),
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
            url,
            service_id: self.service_id.clone(),
            secret: self.secret.clone(),
            merchant_id: self.merchant_id.clone(),
            // Dropping a PostgreSQL database is the first process's job.
            db: TestDatabase { url: self.db.url.clone(), admin: None },
            dir: self.dir.clone(),
            log_file,
            options: self.options.clone(),
            child,
        }
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

    /// The Auth header for `body` at `ts` (Unix ms).
    pub fn sign_at(&self, body: &[u8], ts: i64) -> String {
        paysys_gateway::auth::sign(&self.service_id, &MerchantSecret::from_text(&self.secret), ts, body)
    }

    pub fn sign(&self, body: &[u8]) -> String {
        self.sign_at(body, paysys_gateway::payments::now_ms())
    }

    /// POST raw `body` to /rpc with `auth` as the Auth header (if any).
    pub async fn post(&self, body: &[u8], auth: Option<String>) -> (u16, Value) {
        let addr = self.url.strip_prefix("http://").unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let mut req = hyper::Request::post("/rpc").header("host", addr).header("content-type", "application/json");
        if let Some(auth) = auth {
            req = req.header("auth", auth);
        }
        let response = sender.send_request(req.body(Full::new(Bytes::from(body.to_vec()))).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, value)
    }

    /// Any request to the gateway without the Auth header (the browser and ACS facing
    /// endpoints): status, `Location` header, body text.
    pub async fn request(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String, String) {
        let addr = self.url.strip_prefix("http://").unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body.to_vec())))
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        let status = response.status().as_u16();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, location, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A signed single call; the whole response object.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.call_with_id(method, params, 1).await
    }

    /// A signed single call with its own request `id`: requests sent at the same moment
    /// must differ in something, or the gateway's replay guard takes them for one.
    pub async fn call_with_id(&self, method: &str, params: Value, id: u64) -> Value {
        let body =
            serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).unwrap();
        let (status, v) = self.post(&body, Some(self.sign(&body))).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// The result of a call that must succeed.
    pub async fn ok(&self, method: &str, params: Value) -> Value {
        let v = self.call(method, params).await;
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    /// The error object of a call that must fail.
    pub async fn err(&self, method: &str, params: Value) -> Value {
        let v = self.call(method, params).await;
        assert!(v.get("error").is_some(), "{method}: expected an error, got {v}");
        v["error"].clone()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Every byte of the gateway's SQLite database files (empty on PostgreSQL).
    pub fn database_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        if let Some(path) = self.db.url.strip_prefix("sqlite:") {
            for suffix in ["", "-wal", "-shm"] {
                bytes.extend(std::fs::read(format!("{path}{suffix}")).unwrap_or_default());
            }
        }
        bytes
    }

    /// Stop the process and drop a PostgreSQL database.
    pub async fn finish(mut self) {
        let _ = self.child.kill().await;
        self.db.drop_database().await;
    }
}
