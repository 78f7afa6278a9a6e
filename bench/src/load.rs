//! The load generator: N clients, each on its own kept-alive connection, sending
//! requests back to back; latencies recorded per request and reported as percentiles.
//!
//! Every benchmark drives its clients through [`run`]: `tokenize` and `pay` as much as
//! the ceilings they are compared with ([`crate::ceiling`]), so a ratio between two runs
//! measures the requests, not two load loops.

use anyhow::Context;
use paysys_vault_client::{ClientTls, VaultConnection};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where to send load, with whose certificate.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub merchant_id: String,
    pub backend: String,
}

/// Throughput and latency of one run.
#[derive(Debug)]
pub struct Report {
    pub ops: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Sorted latencies in microseconds.
    latencies_us: Vec<u32>,
}

impl Report {
    /// A report from unsorted latencies in microseconds.
    pub fn new(mut latencies_us: Vec<u32>, errors: u64, elapsed: Duration) -> Report {
        latencies_us.sort_unstable();
        Report { ops: latencies_us.len() as u64, errors, elapsed, latencies_us }
    }

    /// Successful requests per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`th latency percentile, in milliseconds.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * (self.latencies_us.len() as f64 - 1.0)).round() as usize;
        f64::from(self.latencies_us[rank.min(self.latencies_us.len() - 1)]) / 1000.0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  ops={} errors={} ops/s={:.0}  latency ms: p50={:.2} p90={:.2} p99={:.2} p99.9={:.2} max={:.2}",
            self.ops,
            self.errors,
            self.ops_per_sec(),
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.percentile(99.9),
            self.percentile(100.0),
        )
    }
}

/// A benchmark's report beside its service's ceiling, both taken in the same run.
#[derive(Debug)]
pub struct Ratio<'a> {
    pub run: &'a Report,
    pub ceiling: &'a Report,
}

impl fmt::Display for Ratio<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (run, ceiling) = (self.run, self.ceiling);
        let ratio = if ceiling.ops == 0 { 0.0 } else { run.ops_per_sec() / ceiling.ops_per_sec() };
        write!(
            f,
            "  ratio to ceiling: ops/s {ratio:.3}  latency ms (run / ceiling): p50 {:.2}/{:.2} p90 {:.2}/{:.2} \
             p99 {:.2}/{:.2}",
            run.percentile(50.0),
            ceiling.percentile(50.0),
            run.percentile(90.0),
            ceiling.percentile(90.0),
            run.percentile(99.0),
            ceiling.percentile(99.0),
        )
    }
}

/// How one request went.
#[derive(Debug)]
pub enum Outcome {
    /// Answered as the benchmark expects: its latency counts.
    Done,
    /// Answered otherwise (the reason is reported once per client); the client goes on.
    Failed(String),
    /// The connection is unusable: the client stops (reconnecting is not measured).
    Broken(String),
}

/// One client of a benchmark: a connection of its own and the request it repeats.
pub trait Client: Send + 'static {
    /// Send the next request and wait for its answer.
    fn request(&mut self) -> impl Future<Output = Outcome> + Send;
}

/// Run `clients`, each sending requests back to back, for `warmup + duration`,
/// measuring only `duration`.
pub async fn run<C: Client>(clients: Vec<C>, warmup: Duration, duration: Duration) -> anyhow::Result<Report> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(clients.len());
    for mut client in clients {
        let (measuring, stop) = (measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut first_error: Option<String> = None;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let outcome = client.request().await;
                let took = started.elapsed();
                let measured = measuring.load(Ordering::Relaxed);
                match outcome {
                    Outcome::Done if measured => latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX)),
                    Outcome::Done => {}
                    Outcome::Failed(why) => {
                        errors += u64::from(measured);
                        first_error.get_or_insert(why);
                    }
                    Outcome::Broken(why) => {
                        errors += u64::from(measured);
                        first_error.get_or_insert(why);
                        break;
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e, first_error) = task.await?;
        latencies_us.extend(l);
        errors += e;
        if let Some(error) = first_error {
            eprintln!("paysys-bench: a client saw: {error}");
        }
    }
    Ok(Report::new(latencies_us, errors, elapsed))
}

/// `concurrency` kept-alive connections to the vault at `url`.
pub async fn vault_connections(tls: &ClientTls, url: &str, concurrency: usize) -> anyhow::Result<Vec<VaultConnection>> {
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(tls.connect(url).await.context("connecting to the vault")?);
    }
    Ok(connections)
}

/// A random 16-digit Visa number with a valid Luhn check digit, so every request
/// tokenizes a distinct card.
pub fn random_visa() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut digits: Vec<u8> = vec![b'4'];
    digits.extend((0..14).map(|_| rng.gen_range(b'0'..=b'9')));
    // Every byte is a digit, so there is always a check digit.
    digits.push(b'0' + paysys_cardnum::luhn_check_digit(&digits).unwrap_or(0));
    String::from_utf8_lossy(&digits).into_owned()
}

/// A `tokenize` client: `POST /v1/tokens` with a fresh random card each time.
pub struct Tokenizer {
    pub conn: VaultConnection,
    pub merchant_id: String,
}

impl Client for Tokenizer {
    async fn request(&mut self) -> Outcome {
        let body = serde_json::json!({
            "merchant_id": self.merchant_id,
            "pan": random_visa(),
            "exp_month": 12,
            "exp_year": 2030,
            "format": "opaque",
            "reuse": false,
        });
        match self.conn.call("POST", "/v1/tokens", Some(&body)).await {
            Ok(r) if r.status == 201 => Outcome::Done,
            Ok(r) => Outcome::Failed(format!("tokenize answered {} {}", r.status, r.error_code().unwrap_or("-"))),
            Err(e) => Outcome::Broken(e.to_string()),
        }
    }
}

impl Target {
    /// Read the vault URL and the dev merchant's credentials from a stack.json.
    pub fn from_stack(path: &Path) -> anyhow::Result<Target> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let stack: paysys::stack::Stack = serde_json::from_str(&text)?;
        Ok(Target::of(&stack))
    }

    fn of(stack: &paysys::stack::Stack) -> Target {
        Target {
            url: stack.vault.url.clone(),
            ca: stack.pki.ca_cert.clone(),
            cert: stack.pki.merchant.cert.clone(),
            key: stack.pki.merchant.key.clone(),
            merchant_id: stack.pki.merchant.id.clone(),
            backend: backend_of(&stack.vault.database_url),
        }
    }
}

fn backend_of(url: &str) -> String {
    if url.starts_with("postgres") {
        "postgresql".into()
    } else {
        "sqlite".into()
    }
}

/// A vault of the benchmark's own: `paysys up`'s dev vault (dev PKI, dev policy, dev
/// unseal) in a fresh directory, on the given database and a free port. The vault is
/// killed and the directory removed when this is dropped.
pub struct PrivateVault {
    _vault: paysys::services::ServiceProcess,
    target: Target,
    pki: paysys::pki::DevPki,
    dir: PathBuf,
}

impl PrivateVault {
    /// Start `paysys-vault` (found next to this binary, or in `PAYSYS_BIN_DIR`).
    pub async fn start(database_url: &str) -> anyhow::Result<PrivateVault> {
        let dir = std::env::temp_dir().join(format!("paysys-bench-{}", std::process::id()));
        PrivateVault::start_in(&dir, database_url).await
    }

    /// [`PrivateVault::start`] in `dir` (removed when this is dropped).
    pub async fn start_in(dir: &Path, database_url: &str) -> anyhow::Result<PrivateVault> {
        let dir = dir.to_owned();
        let bin_dir = std::env::var_os("PAYSYS_BIN_DIR").map(PathBuf::from);
        let binary = paysys::up::find_binary(bin_dir.as_deref(), paysys::up::VAULT_BINARY)?;
        let pki = paysys::pki::init_dev_pki(&dir, "m_bench")?;
        let vault = paysys::up::start_dev_vault(&binary, &dir, &pki, database_url, 0, None).await?;
        let target = Target {
            url: vault.url().to_owned(),
            ca: pki.ca_cert.clone(),
            cert: pki.merchant.cert.clone(),
            key: pki.merchant.key.clone(),
            merchant_id: pki.merchant.id.clone(),
            backend: backend_of(database_url),
        };
        // (pki moves into the struct below; the target holds its own copies.)
        Ok(PrivateVault { _vault: vault, target, pki, dir })
    }

    /// The dev PKI of this vault (officers' certificates, too).
    pub fn pki(&self) -> &paysys::pki::DevPki {
        &self.pki
    }

    /// Where to send load: the vault, with the bench merchant's certificate.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

impl Drop for PrivateVault {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
