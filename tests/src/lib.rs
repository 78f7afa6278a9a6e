//! Harness for the end-to-end tests: a fresh PKI per test, the real `paysys-vault`
//! binary on a free loopback port, real mTLS clients, and a database per test (a SQLite
//! file, or a fresh PostgreSQL database when `PAYSYS_TEST_POSTGRES_URL` is set).
//!
//! # Layout
//!
//! * [`TestPki`] — CA, vault server certificate, and client identities (gateway, two
//!   officers, two merchants) plus the bad ones the TLS tests need.
//! * [`Backend`] / [`backends`] — SQLite always, PostgreSQL when configured.
//! * [`TestVault`] — a running vault process with its log captured to a file.
//! * [`gateway`] — the gateway process next to a [`TestVault`] and a [`TestSandbox`];
//!   it dereferences to its merchant's signed JSON-RPC client.
//! * [`intake`] — the card intake process next to a [`TestVault`], with a grant key pair
//!   whose signing half the test holds, and an HTTPS client that sets `Origin`.
//! * [`TestSandbox`] — a running sandbox card network (the relay's destination), the
//!   real sandbox code built as this package's `paysys-e2e-sandbox` binary.
//!
//! The vault, sandbox and gateway run as this package's own `paysys-e2e-*` binaries
//! (each exactly the service's `main`): cargo builds a package's binaries before its
//! integration tests, so a stale binary is never tested.
//!
//! What every test crate needs, not only this one (the PostgreSQL database per test,
//! waiting for a process's listening line, the signed JSON-RPC client, the test cards,
//! database dumps) lives in `paysys-test-support` (`tests/support`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;
pub mod gateway;
pub mod intake;

use paysys::pki::{CertificateAuthority, IssueRequest};
use paysys_test_support::postgres::PostgresDatabase;
use paysys_test_support::process::spawn_listening;
use paysys_vault_client::{ClientTls, HttpVersion, VaultConnection, VaultResponse};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A unique scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    paysys_test_support::scratch_dir(&format!("e2e-{tag}"))
}

/// The vault binary the tests run: `paysys-vault`'s `main` built by this package, so it
/// is never older than the code under test.
pub const VAULT_BIN: &str = "paysys-e2e-vault";
/// The sandbox binary the tests run (`paysys-sandbox`'s `main`, built by this package).
pub const SANDBOX_BIN: &str = "paysys-e2e-sandbox";
/// The gateway binary the tests run (`paysys-gateway`'s `main`, built by this package).
pub const GATEWAY_BIN: &str = "paysys-e2e-gateway";
/// The card intake binary the tests run (`paysys-intake`'s `main`, built by this package).
pub const INTAKE_BIN: &str = "paysys-e2e-intake";

/// Where the workspace's binaries are: `PAYSYS_BIN_DIR`, else next to the test binary's
/// `deps/` directory (cargo builds the workspace binaries before running tests).
pub fn bin_path(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("PAYSYS_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} not found; run the tests with `cargo test --workspace` (which builds it) or set PAYSYS_BIN_DIR",
        path.display()
    );
    path
}

/// A client identity: certificate and key files, and the principal inside.
#[derive(Debug, Clone)]
pub struct Identity {
    pub principal: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A fresh PKI for one test.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub gateway: Identity,
    pub alice: Identity,
    pub bob: Identity,
    /// A third officer, for unseals that need three custodians.
    pub carol: Identity,
    /// Merchant `m_1`.
    pub merchant: Identity,
    /// Merchant `m_2`.
    pub other_merchant: Identity,
    /// A PaySys principal the default policy does not know.
    pub stranger: Identity,
    /// A client certificate from another CA.
    pub foreign: Identity,
    /// An expired client certificate from the right CA.
    pub expired: Identity,
    /// A certificate from the right CA without the clientAuth usage.
    pub no_client_auth: Identity,
    /// The sandbox's server certificate (localhost / 127.0.0.1) from the PaySys CA.
    pub sandbox_server: Identity,
    /// A server certificate for localhost / 127.0.0.1 from another CA.
    pub foreign_server: Identity,
    /// The vault's client certificate for relay destinations that want mTLS.
    pub relay_client: Identity,
    /// The card intake's client certificate (`spiffe://paysys/intake`).
    pub intake: Identity,
    /// The card intake's server certificate (localhost / 127.0.0.1) from the PaySys CA.
    pub intake_server: Identity,
    /// The CA's CRL (`crl.pem`, empty at first): every test vault runs with
    /// `--client-crl` on it; [`TestPki::revoke`] extends it.
    pub crl: PathBuf,
}

impl TestPki {
    pub fn generate(dir: &Path) -> TestPki {
        let ca = CertificateAuthority::generate("PaySys Test CA").unwrap();
        let ca_cert = dir.join("ca.pem");
        ca.write(&ca_cert, &dir.join("ca.key")).unwrap();
        let issue = |ca: &CertificateAuthority, name: &str, request: IssueRequest, principal: &str| {
            let cert = dir.join(format!("{name}.pem"));
            let key = dir.join(format!("{name}.key"));
            ca.issue(&request).unwrap().write(&cert, &key).unwrap();
            Identity { principal: principal.to_owned(), cert, key }
        };
        let server = issue(&ca, "vault", IssueRequest::server(), "");
        let client = |name: &str, principal: &str| issue(&ca, name, IssueRequest::client(principal), principal);
        let other_ca = CertificateAuthority::generate("Not PaySys").unwrap();
        TestPki {
            dir: dir.to_owned(),
            ca_cert,
            server_cert: server.cert,
            server_key: server.key,
            gateway: client("gateway", "spiffe://paysys/gateway"),
            alice: client("alice", "spiffe://paysys/officer/alice"),
            bob: client("bob", "spiffe://paysys/officer/bob"),
            carol: client("carol", "spiffe://paysys/officer/carol"),
            merchant: client("merchant-m_1", "spiffe://paysys/merchant/m_1"),
            other_merchant: client("merchant-m_2", "spiffe://paysys/merchant/m_2"),
            stranger: client("stranger", "spiffe://paysys/stranger/someone"),
            foreign: issue(
                &other_ca,
                "foreign",
                IssueRequest::client("spiffe://paysys/merchant/m_1"),
                "spiffe://paysys/merchant/m_1",
            ),
            expired: issue(
                &ca,
                "expired",
                IssueRequest::client("spiffe://paysys/merchant/m_1").expired(),
                "spiffe://paysys/merchant/m_1",
            ),
            no_client_auth: issue(
                &ca,
                "no-client-auth",
                IssueRequest::client("spiffe://paysys/merchant/m_1").without_client_auth(),
                "spiffe://paysys/merchant/m_1",
            ),
            sandbox_server: issue(&ca, "sandbox", IssueRequest::server(), ""),
            foreign_server: issue(&other_ca, "foreign-server", IssueRequest::server(), ""),
            relay_client: client("relay-client", "spiffe://paysys/vault"),
            intake: client("intake", "spiffe://paysys/intake"),
            intake_server: issue(&ca, "intake-server", IssueRequest::server(), ""),
            crl: {
                let crl = dir.join(paysys::pki::CRL_FILE);
                std::fs::write(&crl, ca.issue_crl(1, &[]).unwrap()).unwrap();
                crl
            },
        }
    }

    /// `paysys pki revoke NAME` on this PKI (`gateway`, `merchant-m_1`, `relay-client`,
    /// …): the certificate's serial goes onto [`TestPki::crl`], re-issued with the next
    /// CRL number.
    pub fn revoke(&self, name: &str) -> paysys::pki::Revocation {
        paysys::pki::revoke_certificate(&self.dir, name).unwrap()
    }

    /// The CA, to issue certificates a test crafts itself.
    pub fn ca(&self) -> CertificateAuthority {
        CertificateAuthority::read_files(&self.ca_cert, &self.dir.join("ca.key")).unwrap()
    }
}

/// A database backend for one test.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// Admin URL of a PostgreSQL server; each test creates its own database there.
    Postgres(String),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// SQLite always; PostgreSQL too when `PAYSYS_TEST_POSTGRES_URL` is set (CI sets it).
pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    match paysys_test_support::postgres::admin_url() {
        Some(url) => all.push(Backend::Postgres(url)),
        None => eprintln!("PAYSYS_TEST_POSTGRES_URL not set: PostgreSQL variants skipped"),
    }
    all
}

/// A database created for one test.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub url: String,
    /// The PostgreSQL database to drop at the end; `None` for SQLite (a file in the
    /// test's directory) and for a second handle on a database another one drops.
    postgres: Option<PostgresDatabase>,
}

impl TestDatabase {
    pub async fn create(backend: &Backend, dir: &Path) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                TestDatabase { url: format!("sqlite:{}", dir.join("vault.db").display()), postgres: None }
            }
            Backend::Postgres(admin_url) => {
                let database = PostgresDatabase::create_on(admin_url, "paysys_e2e").await;
                TestDatabase { url: database.url.clone(), postgres: Some(database) }
            }
        }
    }

    /// Another handle on the same database that does not drop it (for a replica).
    pub fn shared(&self) -> TestDatabase {
        TestDatabase { url: self.url.clone(), postgres: None }
    }

    /// Drop a PostgreSQL test database (best effort).
    pub async fn drop_database(&self) {
        if let Some(database) = &self.postgres {
            database.drop_database().await;
        }
    }
}

/// How to start the vault.
#[derive(Debug, Clone)]
pub struct VaultOptions {
    /// Unseal at start from the dev root key file (`--dev --dev-root-key-file`).
    pub dev_unseal: bool,
    /// A policy file to pass with `--policy` (else the built-in dev policy).
    pub policy: Option<PathBuf>,
    pub extra_args: Vec<String>,
    /// Initialize with custodian shares (`--shares N --threshold M`) instead of a dev
    /// root key file; the vault then starts sealed (set `dev_unseal: false`).
    pub custodians: Option<(u8, u8)>,
}

impl Default for VaultOptions {
    fn default() -> Self {
        VaultOptions { dev_unseal: true, policy: None, extra_args: Vec::new(), custodians: None }
    }
}

/// What `paysys-vault init --shares N --threshold M` printed.
#[derive(Debug, Clone, Default)]
pub struct Ceremony {
    /// The custodian shares' text, in index order.
    pub shares: Vec<String>,
    /// Each share's check value, as printed beside it.
    pub check_values: Vec<String>,
    pub root_kcv: String,
    /// Everything `init` wrote to stdout.
    pub stdout: String,
}

/// Run `paysys-vault init` with custodian shares on `database_url`.
pub async fn init_with_shares(database_url: &str, shares: u8, threshold: u8) -> Ceremony {
    let out = Command::new(bin_path(VAULT_BIN))
        .args(["init", "--database-url", database_url])
        .args(["--shares", &shares.to_string(), "--threshold", &threshold.to_string()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut ceremony = Ceremony { stdout: stdout.clone(), ..Ceremony::default() };
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("initialized: root key KCV ") {
            ceremony.root_kcv = rest.split(',').next().unwrap().to_owned();
        }
        if line.starts_with("share ") {
            let (head, share) = line.rsplit_once(": ").unwrap();
            ceremony.shares.push(share.to_owned());
            let check = head.split("check value ").nth(1).unwrap().trim_end_matches(')');
            ceremony.check_values.push(check.to_owned());
        }
    }
    assert_eq!(ceremony.shares.len(), usize::from(shares), "{stdout}");
    ceremony
}

/// A custodian share's text with one byte of its value changed and its checksum
/// recomputed: a share that reads as valid but is not the one handed out at `init`.
pub fn altered_share(text: &str) -> String {
    let mut fields: Vec<String> = text.split('-').map(str::to_owned).collect();
    let mut value = hex_decode(&fields[5]);
    value[0] ^= 0x5a;
    fields[5] = hex_encode(&value);
    let domain: &[u8] =
        if fields[0] == "pss1" { b"paysys/v1/custodian-share-checksum" } else { b"paysys/v2/custodian-share-checksum" };
    let number = |f: &str| f[1..].parse::<u8>().unwrap();
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(domain);
    context.update(&hex_decode(&fields[1]));
    context.update(&hex_decode(&fields[2]));
    context.update(&[number(&fields[3]), number(&fields[4])]);
    context.update(&value);
    fields[6] = hex_encode(&context.finish().as_ref()[..4]);
    fields.join("-")
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The checked-in fixtures (`tests/fixtures/…`).
pub fn fixture_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(relative)
}

/// A fresh database for `backend` holding the SQL dump `tests/fixtures/<name>.<backend>.sql`
/// (a vault written by an older binary).
pub async fn database_from_fixture(backend: &Backend, dir: &Path, name: &str) -> TestDatabase {
    use sqlx::Connection;
    let db = TestDatabase::create(backend, dir).await;
    let dump = std::fs::read_to_string(fixture_path(&format!("{name}.{}.sql", backend.name()))).unwrap();
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&format!("{}?mode=rwc", db.url)).await.unwrap();
            sqlx::raw_sql(&dump).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        Backend::Postgres(_) => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::raw_sql(&dump).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    }
    db
}

/// A running `paysys-vault serve` process.
#[derive(Debug)]
pub struct TestVault {
    pub url: String,
    pub dir: PathBuf,
    pub pki: TestPki,
    pub db: TestDatabase,
    pub root_key_file: PathBuf,
    pub log_file: PathBuf,
    /// The custodian ceremony, when initialized with shares.
    pub ceremony: Option<Ceremony>,
    /// Serve processes (more than one when a test runs replicas on one database).
    children: Vec<Child>,
}

impl TestVault {
    /// A fresh PKI, database and initialized, dev-unsealed vault.
    pub async fn start(backend: &Backend) -> TestVault {
        TestVault::start_with(backend, VaultOptions::default()).await
    }

    pub async fn start_with(backend: &Backend, options: VaultOptions) -> TestVault {
        let dir = scratch_dir(backend.name());
        let pki = TestPki::generate(&dir);
        TestVault::start_prepared(backend, dir, pki, options).await
    }

    /// A vault in `dir` with an already generated `pki` (for tests that start other
    /// processes with the same PKI first, such as a relay destination).
    pub async fn start_prepared(backend: &Backend, dir: PathBuf, pki: TestPki, options: VaultOptions) -> TestVault {
        let db = TestDatabase::create(backend, &dir).await;
        let root_key_file = dir.join("root.key");
        TestVault::init_and_serve(db, dir, pki, options, root_key_file, true).await
    }

    /// Serve `db` as it is, without `init` (a database made elsewhere, e.g. from a
    /// fixture); `root_key_file` is used when `options.dev_unseal` is set.
    pub async fn serve_existing(
        db: TestDatabase,
        dir: PathBuf,
        pki: TestPki,
        options: VaultOptions,
        root_key_file: PathBuf,
    ) -> TestVault {
        TestVault::init_and_serve(db, dir, pki, options, root_key_file, false).await
    }

    async fn init_and_serve(
        db: TestDatabase,
        dir: PathBuf,
        pki: TestPki,
        options: VaultOptions,
        root_key_file: PathBuf,
        init: bool,
    ) -> TestVault {
        let ceremony = match options.custodians {
            _ if !init => None,
            Some((shares, threshold)) => Some(init_with_shares(&db.url, shares, threshold).await),
            None => {
                let init = Command::new(bin_path(VAULT_BIN))
                    .args(["init", "--database-url", &db.url, "--dev-root-key-file"])
                    .arg(&root_key_file)
                    .output()
                    .await
                    .unwrap();
                assert!(init.status.success(), "init failed: {}", String::from_utf8_lossy(&init.stderr));
                None
            }
        };
        let mut vault = TestVault {
            ceremony,
            url: String::new(),
            dir: dir.clone(),
            pki,
            db,
            root_key_file,
            log_file: dir.join("vault.log"),
            children: Vec::new(),
        };
        vault.spawn(&options).await;
        vault
    }

    /// Start (or restart) the serve process with `options`; waits for its listening line.
    pub async fn spawn(&mut self, options: &VaultOptions) {
        let mut cmd = Command::new(bin_path(VAULT_BIN));
        cmd.args(["serve", "--database-url", &self.db.url, "--listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(&self.pki.server_cert)
            .arg("--tls-key")
            .arg(&self.pki.server_key)
            .arg("--client-ca")
            .arg(&self.pki.ca_cert)
            .arg("--client-crl")
            .arg(&self.pki.crl)
            .args(&options.extra_args)
            .env("PAYSYS_LOG", "debug");
        if options.dev_unseal {
            cmd.arg("--dev").arg("--dev-root-key-file").arg(&self.root_key_file);
        }
        match &options.policy {
            Some(p) => {
                cmd.arg("--policy").arg(p);
            }
            None if !options.dev_unseal => {
                // The built-in policy needs --dev; a sealed test vault uses it from a file.
                let p = self.dir.join("dev-policy.toml");
                std::fs::write(&p, paysys_policies::DEV_POLICY).unwrap();
                cmd.arg("--policy").arg(p);
            }
            None => {}
        }
        let (child, url) = spawn_listening(cmd, "paysys-vault listening on ", &self.log_file).await;
        self.url = url;
        self.children.push(child);
    }

    /// Officer CLI arguments (`--vault-url --ca --cert --key`) for `who`.
    pub fn officer_args(&self, who: &Identity) -> Vec<std::ffi::OsString> {
        vec![
            "--vault-url".into(),
            self.url.clone().into(),
            "--ca".into(),
            self.pki.ca_cert.clone().into(),
            "--cert".into(),
            who.cert.clone().into(),
            "--key".into(),
            who.key.clone().into(),
        ]
    }

    /// Run `paysys-vault <args…> <officer args of who>` with `stdin`; (success, stdout, stderr).
    pub async fn officer_cli(&self, who: &Identity, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        use tokio::io::AsyncWriteExt;
        let mut child = Command::new(bin_path(VAULT_BIN))
            .args(args)
            .args(self.officer_args(who))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.unwrap();
            input.write_all(b"\n").await.unwrap();
        }
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The newest serve process's pid (for signals: `kill -HUP` reloads the CRL).
    pub fn pid(&self) -> u32 {
        self.children.last().and_then(Child::id).expect("a running vault")
    }

    /// Send `signal` (`HUP`, `TERM`, …) to the newest serve process.
    pub async fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]).status().await.unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Stop every serve process (SIGKILL; [`TestVault::terminate`] stops cleanly).
    pub async fn kill(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM the newest serve process and wait; returns whether it exited successfully.
    pub async fn terminate(&mut self) -> bool {
        let Some(mut child) = self.children.pop() else { return false };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        matches!(tokio::time::timeout(Duration::from_secs(10), child.wait()).await, Ok(Ok(s)) if s.success())
    }

    /// Everything the vault wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    pub fn tls(&self, who: &Identity) -> ClientTls {
        ClientTls::new(&self.pki.ca_cert, Some((&who.cert, &who.key)), HttpVersion::Http1).unwrap()
    }

    /// A kept-alive HTTP/1.1 mTLS connection as `who`.
    pub async fn connect(&self, who: &Identity) -> VaultConnection {
        self.tls(who).connect(&self.url).await.unwrap()
    }

    /// One request as `who` on a fresh connection.
    pub async fn call(
        &self,
        who: &Identity,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> VaultResponse {
        self.connect(who).await.call(method, path, body.as_ref()).await.unwrap()
    }

    /// Tokenize for merchant `m_1` as the merchant; returns the token.
    pub async fn tokenize(&self, pan: &str) -> String {
        let r = self
            .call(
                &self.pki.merchant,
                "POST",
                "/v1/tokens",
                Some(serde_json::json!({"merchant_id": "m_1", "pan": pan, "exp_month": 12, "exp_year": 2031})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    /// Stop the process and drop a PostgreSQL database. Call at the end of each test.
    pub async fn finish(mut self) {
        self.kill().await;
        self.db.drop_database().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How to start the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Server certificate and key.
    pub server: Identity,
    /// Require client certificates from this CA (`--client-ca`).
    pub client_ca: Option<PathBuf>,
    /// How late the slow card answers (`--auth-delay-ms`).
    pub auth_delay_ms: u64,
    /// `--database-url`; `None` (the default) is `sqlite::memory:`.
    pub database_url: Option<String>,
    /// Further flags (`--challenge-ttl-ms 1000`, `--public-url …`, `--rreq-ca …`).
    pub extra_args: Vec<String>,
}

impl SandboxOptions {
    /// The sandbox with its PaySys-CA server certificate, plain TLS, slow card at 5 s,
    /// in-memory state.
    pub fn new(pki: &TestPki) -> SandboxOptions {
        SandboxOptions {
            server: pki.sandbox_server.clone(),
            client_ca: None,
            auth_delay_ms: 5_000,
            database_url: None,
            extra_args: Vec::new(),
        }
    }
}

/// A running sandbox (`paysys-sandbox serve`) on a free loopback port, in-memory state
/// unless [`SandboxOptions::database_url`] says otherwise.
#[derive(Debug)]
pub struct TestSandbox {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    pub log_file: PathBuf,
    child: Child,
}

impl TestSandbox {
    pub async fn start(dir: &Path, options: &SandboxOptions) -> TestSandbox {
        use rand::Rng;
        let log_file = dir.join(format!("sandbox-{:08x}.log", rand::thread_rng().gen::<u32>()));
        let mut cmd = Command::new(bin_path(SANDBOX_BIN));
        let database_url = options.database_url.as_deref().unwrap_or("sqlite::memory:");
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--database-url", database_url])
            .arg("--tls-cert")
            .arg(&options.server.cert)
            .arg("--tls-key")
            .arg(&options.server.key)
            .arg("--auth-delay-ms")
            .arg(options.auth_delay_ms.to_string())
            .env("PAYSYS_LOG", "info");
        if let Some(ca) = &options.client_ca {
            cmd.arg("--client-ca").arg(ca);
        }
        cmd.args(&options.extra_args);
        let (child, url) = spawn_listening(cmd, "paysys-sandbox listening on ", &log_file).await;
        TestSandbox { url, log_file, child }
    }

    /// The vault flags that relay `sandbox_acquirer` and `sandbox_ds` to this sandbox,
    /// trusting `ca`.
    pub fn relay_args(&self, ca: &Path) -> Vec<String> {
        vec![
            "--relay-ca".into(),
            ca.display().to_string(),
            "--destination-url".into(),
            format!("sandbox_acquirer={}", self.url),
            "--destination-url".into(),
            format!("sandbox_ds={}", self.url),
        ]
    }

    /// A request to the sandbox directly (as the gateway does for ledger and inquiry),
    /// over plain server TLS verified against `ca`, optionally presenting `identity`.
    pub async fn call(
        &self,
        ca: &Path,
        identity: Option<&Identity>,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> VaultResponse {
        let tls =
            ClientTls::new(ca, identity.map(|i| (i.cert.as_path(), i.key.as_path())), HttpVersion::Http1).unwrap();
        tls.connect(&self.url).await.unwrap().call(method, path, body.as_ref()).await.unwrap()
    }

    /// `GET` on the sandbox's API as the gateway calls it (ledger, inquiry): the body.
    pub async fn get(&self, ca: &Path, path: &str) -> serde_json::Value {
        let r = self.call(ca, None, "GET", path, None).await;
        assert!(r.status == 200 || r.status == 404, "GET {path}: {} {}", r.status, r.body);
        r.body
    }

    /// Everything the sandbox wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
