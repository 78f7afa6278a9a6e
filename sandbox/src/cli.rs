//! The `paysys-sandbox` commands and their configuration (flags or environment).

use crate::api::Network;
use crate::cards::{CardBehavior, ThreeDsBehavior, TEST_CARDS};
use crate::store::Store;
use crate::threeds::{ThreeDs, ThreeDsConfig};
use crate::tls;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use paysys_server::logging::init_logging;
use paysys_server::shutdown::shutdown_signal;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "paysys-sandbox",
    version,
    about = "The PaySys sandbox card network: acquirer, issuer with test cards, 3-D Secure DS and ACS"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the acquirer, issuer, 3-D Secure DS and ACS over HTTPS.
    Serve(Box<ServeArgs>),
    /// Print the test-card table.
    Cards,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, env = "PAYSYS_SANDBOX_LISTEN", default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
    /// Server certificate (PEM).
    #[arg(long, env = "PAYSYS_SANDBOX_TLS_CERT")]
    tls_cert: PathBuf,
    /// Server private key (PEM).
    #[arg(long, env = "PAYSYS_SANDBOX_TLS_KEY")]
    tls_key: PathBuf,
    /// Require client certificates issued by this CA (mTLS). Without it, plain TLS.
    #[arg(long, env = "PAYSYS_SANDBOX_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// CRL(s) of the client CA (PEM, needs --client-ca): revoked client certificates
    /// fail the handshake. Reloaded on change (checked every 2 s) and on SIGHUP.
    #[arg(long, env = "PAYSYS_SANDBOX_CLIENT_CRL", requires = "client_ca")]
    client_crl: Option<PathBuf>,
    #[command(flatten)]
    transport: paysys_server::TransportFlags,
    /// `sqlite::memory:` (state lost on exit), `sqlite:PATH`, or `postgres://…`.
    #[arg(long, env = "PAYSYS_SANDBOX_DATABASE_URL", default_value = "sqlite::memory:")]
    database_url: String,
    /// How long the slow test card (4000000000000259) delays its authorization answer,
    /// and the slow-ACS card (4000000000003063) its ARes; longer than the gateway waits.
    #[arg(long, env = "PAYSYS_SANDBOX_AUTH_DELAY_MS", default_value_t = 35_000)]
    auth_delay_ms: u64,
    /// The sandbox's externally reachable base URL, used in `acsURL` and
    /// `threeDSMethodURL`. Default `https://localhost:{bound port}`.
    #[arg(long, env = "PAYSYS_SANDBOX_PUBLIC_URL")]
    public_url: Option<String>,
    /// An ACS challenge not completed in this time ends N, reason 14.
    #[arg(long, env = "PAYSYS_SANDBOX_CHALLENGE_TTL_MS", default_value_t = 600_000)]
    challenge_ttl_ms: u64,
    /// CA bundle (PEM) for https:// threeDSServerURLs the RReq goes to (http:// needs none).
    #[arg(long, env = "PAYSYS_SANDBOX_RREQ_CA")]
    rreq_ca: Option<PathBuf>,
    /// Largest request body accepted.
    #[arg(long, default_value_t = 16 * 1024)]
    max_body_bytes: usize,
}

/// Run a parsed command line; the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Cards => {
            print_cards();
            ExitCode::SUCCESS
        }
        Command::Serve(args) => {
            init_logging();
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("paysys-sandbox: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("paysys-sandbox: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (tls, client_certificates) =
        tls::server_config(&args.tls_cert, &args.tls_key, args.client_ca.as_deref(), args.client_crl.as_deref())?;
    if let Some(verifier) = &client_certificates {
        tokio::spawn(verifier.clone().watch_crl(paysys_server::client_auth::CRL_POLL_INTERVAL));
    }
    let options = paysys_server::ServeOptions { limits: args.transport.limits(), client_certificates };
    let store = Store::open(&args.database_url).await.context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    let network = Arc::new(Network { store, auth_delay: Duration::from_millis(args.auth_delay_ms) });
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let mut three_ds_config = ThreeDsConfig::for_port(addr.port());
    if let Some(url) = args.public_url {
        three_ds_config.public_url = url;
    }
    three_ds_config.challenge_ttl = Duration::from_millis(args.challenge_ttl_ms);
    three_ds_config.rreq_ca = args.rreq_ca;
    let three_ds = ThreeDs::new(network, &three_ds_config)?;
    tracing::info!(
        %addr,
        mtls = args.client_ca.is_some(),
        auth_delay_ms = args.auth_delay_ms,
        public_url = %three_ds.public_url,
        challenge_ttl_ms = args.challenge_ttl_ms,
        "serving"
    );
    // The launcher waits for exactly this line.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "paysys-sandbox listening on https://{addr}").context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    drop(stdout);
    crate::run_with(listener, tls, three_ds, args.max_body_bytes, options, shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

fn print_cards() {
    println!("{:<20} {:<11} {:<22} issuer outcome", "card", "brand", "3-D Secure");
    for card in TEST_CARDS {
        let enrolled = crate::threeds::outcome::is_enrolled(&crate::cards::CardNumber::new(card.number));
        let three_ds = match card.three_ds {
            _ if !enrolled => "not enrolled",
            ThreeDsBehavior::Frictionless => "Y",
            ThreeDsBehavior::Attempted => "A",
            ThreeDsBehavior::Challenge => "C (code 123456)",
            ThreeDsBehavior::NotAuthenticated => "N 01",
            ThreeDsBehavior::Rejected => "R 11",
            ThreeDsBehavior::Unavailable => "U 08",
            ThreeDsBehavior::AcsTimeout => "U 14 after the delay",
        };
        let outcome = match card.behavior {
            CardBehavior::Approve { balance } if balance == crate::cards::LARGE_BALANCE => {
                "approved; large balance".to_owned()
            }
            CardBehavior::Approve { balance } => format!("approved up to a balance of {balance} minor units"),
            CardBehavior::Decline(code) => format!("declined {} ({})", code.as_str(), code.reason()),
            CardBehavior::ApproveAfterDelay => "approved, answered only after --auth-delay-ms".to_owned(),
        };
        println!("{:<20} {:<11} {three_ds:<22} {outcome}", card.number, card.brand);
    }
}
