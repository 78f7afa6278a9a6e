//! The card intake for the end-to-end tests: the real `paysys-intake` process next to a
//! [`TestVault`], over real TLS, with a fresh gateway grant key pair. The test holds the
//! signing half ([`TestIntake::signer`]) and mints grants as the gateway would; the
//! intake trusts the public half.
//!
//! The intake runs in a working directory of its own ([`TestIntake::work_dir`]), empty
//! at start, so a test can check that it wrote nothing to disk; its log goes elsewhere.

use crate::{bin_path, Identity, TestVault, INTAKE_BIN};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use paysys_test_support::process::spawn_listening;
use paysys_widget::grant::{random_nonce, GrantClaims, GrantSigner};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::process::{Child, Command};

/// The key id of the test's grant key.
pub const GRANT_KID: &str = "g1";
/// The merchant grants are issued for: the vault tests' merchant `m_1`.
pub const MERCHANT_ID: &str = "m_1";
/// The page origin grants name unless a test says otherwise (the gateway's, for the
/// hosted page).
pub const PAGE_ORIGIN: &str = "http://127.0.0.1:8080";

/// How to start the intake.
#[derive(Debug, Clone)]
pub struct IntakeOptions {
    /// `--address-limit-burst`: high by default, so only the test about it meets it.
    pub address_limit_burst: u32,
    /// `--address-limit-per-minute`.
    pub address_limit_per_minute: f64,
    /// Further flags.
    pub extra_args: Vec<String>,
}

impl Default for IntakeOptions {
    fn default() -> Self {
        IntakeOptions { address_limit_burst: 1000, address_limit_per_minute: 6000.0, extra_args: Vec::new() }
    }
}

/// An answer from the intake.
#[derive(Debug, Clone)]
pub struct IntakeResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub text: String,
}

impl IntakeResponse {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null)
    }

    /// The stable error code of an error answer, or `""`.
    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_owned()
    }

    /// A header's value, or `""`.
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    }
}

/// A running `paysys-intake serve`.
#[derive(Debug)]
pub struct TestIntake {
    /// `https://127.0.0.1:PORT`, also its public origin.
    pub url: String,
    /// The gateway's grant key, as the gateway would hold it.
    pub signer: GrantSigner,
    /// The process's working directory (empty at start).
    pub work_dir: PathBuf,
    pub log_file: PathBuf,
    tls: Arc<rustls::ClientConfig>,
    child: Child,
}

impl TestIntake {
    /// Start the intake in front of `vault` (its PKI, the intake's client certificate),
    /// with a fresh grant key pair.
    pub async fn start(vault: &TestVault, options: IntakeOptions) -> TestIntake {
        TestIntake::start_as(vault, &vault.pki.intake, options).await
    }

    /// [`TestIntake::start`] presenting `identity` to the vault.
    pub async fn start_as(vault: &TestVault, identity: &Identity, options: IntakeOptions) -> TestIntake {
        let der = GrantSigner::generate_pkcs8().unwrap();
        let signer = GrantSigner::from_pkcs8(GRANT_KID, &der).unwrap();
        let tag = rand::random::<u32>();
        let public_key = vault.dir.join(format!("grant-{tag:08x}.pub"));
        std::fs::write(&public_key, format!("{}\n", signer.public_key_hex())).unwrap();
        let work_dir = vault.dir.join(format!("intake-{tag:08x}"));
        std::fs::create_dir_all(&work_dir).unwrap();
        let log_file = vault.dir.join(format!("intake-{tag:08x}.log"));
        let pki = &vault.pki;
        let mut cmd = Command::new(bin_path(INTAKE_BIN));
        cmd.current_dir(&work_dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--vault-url", &vault.url])
            .arg("--tls-cert")
            .arg(&pki.intake_server.cert)
            .arg("--tls-key")
            .arg(&pki.intake_server.key)
            .arg("--vault-ca")
            .arg(&pki.ca_cert)
            .arg("--client-cert")
            .arg(&identity.cert)
            .arg("--client-key")
            .arg(&identity.key)
            .arg("--grant-public-key")
            .arg(format!("{GRANT_KID}={}", public_key.display()))
            .args(["--address-limit-burst", &options.address_limit_burst.to_string()])
            .args(["--address-limit-per-minute", &options.address_limit_per_minute.to_string()])
            .args(&options.extra_args)
            // Everything it logs, so a test sees any card data that slipped through.
            .env("PAYSYS_LOG", "trace");
        let (child, url) = spawn_listening(cmd, "paysys-intake listening on ", &log_file).await;
        TestIntake { url, signer, work_dir, log_file, tls: client_config(&pki.ca_cert), child }
    }

    /// Claims of a fresh, valid grant for checkout `checkout_id` of merchant `m_1`,
    /// framed by [`PAGE_ORIGIN`], valid for ten minutes from now.
    pub fn claims(&self, checkout_id: &str) -> GrantClaims {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        GrantClaims {
            merchant_id: MERCHANT_ID.to_owned(),
            checkout_id: checkout_id.to_owned(),
            attempt_id: format!("att_{:08x}", rand::random::<u32>()),
            origin: PAGE_ORIGIN.to_owned(),
            issued_at: now,
            expires_at: now + 600,
            nonce: random_nonce().unwrap(),
            save_card: false,
        }
    }

    /// `claims` signed with the test's grant key.
    pub fn grant(&self, claims: &GrantClaims) -> String {
        self.signer.sign(claims)
    }

    /// The body the card frame posts, for `pan` under `grant`, framed by [`PAGE_ORIGIN`].
    pub fn card_body(grant: &str, pan: &str) -> serde_json::Value {
        serde_json::json!({
            "grant": grant, "ancestor_origin": PAGE_ORIGIN, "number": pan,
            "exp_month": 12, "exp_year": 2031, "cvc": "123",
        })
    }

    /// `POST /v1/cards` with `body` as the frame sends it (`Origin` = the intake's).
    pub async fn post_card(&self, body: &serde_json::Value) -> IntakeResponse {
        let origin = self.url.clone();
        self.request("POST", "/v1/cards", &[("origin", &origin)], Some(body.to_string().into_bytes())).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> IntakeResponse {
        self.request("GET", path, &[], None).await
    }

    /// One request on a fresh HTTP/1.1 TLS connection, with `headers`.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> IntakeResponse {
        let hostport = self.url.strip_prefix("https://").unwrap();
        let tcp = tokio::net::TcpStream::connect(hostport).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(connection);
        let mut request = hyper::Request::builder().method(method).uri(path).header("host", hostport);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default()))).unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        IntakeResponse { status, headers, text: String::from_utf8_lossy(&bytes).into_owned() }
    }

    /// Everything the intake wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// The files in the intake's working directory (it should write none).
    pub fn files_written(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![self.work_dir.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path.clone());
                }
                found.push(path);
            }
        }
        found
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Trust only the test CA; HTTP/1.1.
fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::fs::read(ca).unwrap().as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
