//! `paysys-bench checkout`: card intake through one-time grants, side by side with direct
//! vault tokenization, in one run against one private vault.
//!
//! The direct run is `tokenize` (a merchant's mTLS `POST /v1/tokens`). The intake run is
//! what a buyer's card frame does: each request carries a fresh grant signed with the
//! stack's grant key (as the gateway would sign it), the card goes over TLS to the intake
//! with the frame's `Origin`, and the intake checks the grant and tokenizes at the vault,
//! bound to a checkout, spending the grant's nonce in the vault's commit. The ratio of
//! the two is the cost of the public entry (issue 13's target: at least 0.6 at 64
//! clients).

use crate::load::{self, Client, Outcome, PrivateVault, Report};
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use paysys_vault_client::{ClientTls, HttpVersion};
use paysys_widget::grant::{random_nonce, GrantClaims, GrantSigner};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The page origin the grants name (the gateway's, for the hosted page).
const PAGE_ORIGIN: &str = "http://127.0.0.1:8080";

#[derive(Debug, clap::Args)]
pub struct CheckoutArgs {
    /// The private vault's database (default: SQLite in the run's directory).
    #[arg(long)]
    database_url: Option<String>,
    #[command(flatten)]
    load: crate::LoadArgs,
}

/// One card frame: a kept-alive TLS connection to the intake, posting a fresh card under
/// a fresh grant each time.
struct FrameClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    intake_origin: String,
    signer: Arc<GrantSigner>,
    merchant_id: String,
}

impl FrameClient {
    async fn connect(
        config: Arc<rustls::ClientConfig>,
        intake_url: &str,
        signer: Arc<GrantSigner>,
        merchant_id: &str,
    ) -> anyhow::Result<FrameClient> {
        let hostport = intake_url.strip_prefix("https://").context("the intake's URL is https://")?;
        let tcp = tokio::net::TcpStream::connect(hostport).await.context("connecting to the intake")?;
        let _ = tcp.set_nodelay(true);
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1")?;
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(FrameClient { sender, intake_origin: intake_url.to_owned(), signer, merchant_id: merchant_id.to_owned() })
    }

    fn grant(&self) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default();
        let id = || format!("{:016x}", rand::random::<u64>());
        let claims = GrantClaims {
            merchant_id: self.merchant_id.clone(),
            checkout_id: format!("chk_{}", id()),
            attempt_id: format!("att_{}", id()),
            origin: PAGE_ORIGIN.to_owned(),
            issued_at: now,
            expires_at: now + 600,
            nonce: random_nonce().unwrap_or_default(),
            save_card: false,
        };
        self.signer.sign(&claims)
    }
}

impl Client for FrameClient {
    async fn request(&mut self) -> Outcome {
        let body = serde_json::json!({
            "grant": self.grant(), "ancestor_origin": PAGE_ORIGIN, "number": load::random_visa(),
            "exp_month": 12, "exp_year": 2030, "cvc": "123",
        });
        let request = hyper::Request::post("/v1/cards")
            .header("host", self.intake_origin.trim_start_matches("https://"))
            .header("origin", &self.intake_origin)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())));
        let Ok(request) = request else { return Outcome::Broken("building the request".into()) };
        if let Err(e) = self.sender.ready().await {
            return Outcome::Broken(e.to_string());
        }
        match self.sender.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                if status == 201 {
                    Outcome::Done
                } else {
                    Outcome::Failed(format!("intake answered {status} {}", String::from_utf8_lossy(&bytes)))
                }
            }
            Err(e) => Outcome::Broken(e.to_string()),
        }
    }
}

/// Trust only `ca`, HTTP/1.1, as a browser would reach the intake.
fn browser_tls(ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::fs::read(ca)?.as_slice()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub async fn run(args: CheckoutArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("paysys-bench-checkout-{}", std::process::id()));
    let database_url = args.database_url.clone().unwrap_or_else(|| format!("sqlite:{}/vault.db", dir.display()));
    let vault = PrivateVault::start_in(&dir, &database_url).await.context("starting a private vault")?;
    let pki = vault.pki().clone();
    let grant_key = paysys::grant_keys::init_dev_grant_key(&dir)?;
    let bin_dir = std::env::var_os("PAYSYS_BIN_DIR").map(std::path::PathBuf::from);
    let binary = paysys::up::find_binary(bin_dir.as_deref(), paysys::up::INTAKE_BINARY)?;
    // The address limit is for buyers; one benchmark machine is every client here.
    let intake = paysys::services::ServiceCommand::new("intake", binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--vault-url", &vault.target().url])
        .args(["--tls-cert".as_ref(), pki.intake_server.cert.as_os_str()])
        .args(["--tls-key".as_ref(), pki.intake_server.key.as_os_str()])
        .args(["--vault-ca".as_ref(), pki.ca_cert.as_os_str()])
        .args(["--client-cert".as_ref(), pki.intake.cert.as_os_str()])
        .args(["--client-key".as_ref(), pki.intake.key.as_os_str()])
        .args(["--grant-public-key".to_owned(), grant_key.verifying_arg()])
        .args(["--address-limit-burst", "4000000000", "--address-limit-per-minute", "1e12"])
        .spawn()
        .await
        .context("starting the intake")?;
    let signer = Arc::new(
        GrantSigner::from_pkcs8_file(&grant_key.kid, &grant_key.private_key).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let target = vault.target().clone();

    let tls = ClientTls::new(&target.ca, Some((&target.cert, &target.key)), HttpVersion::Http1)?;
    let connections = load::vault_connections(&tls, &target.url, args.load.concurrency).await?;
    let clients =
        connections.into_iter().map(|conn| load::Tokenizer { conn, merchant_id: target.merchant_id.clone() }).collect();
    let direct = args.load.run(clients).await?;
    let header = |what: &str| {
        format!(
            "{what}  backend={} http=1.1 concurrency={} duration={}s",
            target.backend, args.load.concurrency, args.load.duration
        )
    };
    println!("{}", header("tokenize (direct, merchant mTLS)"));
    println!("{direct}");

    let config = browser_tls(&pki.ca_cert)?;
    let mut frames = Vec::with_capacity(args.load.concurrency);
    for _ in 0..args.load.concurrency {
        frames.push(FrameClient::connect(config.clone(), intake.url(), signer.clone(), &target.merchant_id).await?);
    }
    let through_intake: Report = args.load.run(frames).await?;
    println!("{}", header("checkout (intake, one-time grants)"));
    println!("{through_intake}");
    let ratio = if direct.ops == 0 { 0.0 } else { through_intake.ops_per_sec() / direct.ops_per_sec() };
    println!("  intake / direct: ops/s {ratio:.3} (issue 13's target: >= 0.6 at 64 clients)");
    intake.stop().await.context("stopping the intake")?;
    Ok(())
}
