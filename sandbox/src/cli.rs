//! The `paysys-sandbox` commands and their configuration (flags or environment).

use crate::api::Network;
use crate::cards::{CardBehavior, TEST_CARDS};
use crate::store::Store;
use crate::tls;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
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
    about = "The PaySys sandbox card network: acquirer and issuer with test cards"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the acquirer and issuer API over HTTPS.
    Serve(ServeArgs),
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
    /// `sqlite::memory:` (state lost on exit), `sqlite:PATH`, or `postgres://…`.
    #[arg(long, env = "PAYSYS_SANDBOX_DATABASE_URL", default_value = "sqlite::memory:")]
    database_url: String,
    /// How long the slow test card (4000000000000259) delays its authorization answer;
    /// longer than the gateway's acquirer timeout.
    #[arg(long, env = "PAYSYS_SANDBOX_AUTH_DELAY_MS", default_value_t = 35_000)]
    auth_delay_ms: u64,
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
            match runtime.block_on(serve(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("paysys-sandbox: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYSYS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let tls = tls::server_config(&args.tls_cert, &args.tls_key, args.client_ca.as_deref())?;
    let store = Store::open(&args.database_url).await.context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    let network = Arc::new(Network { store, auth_delay: Duration::from_millis(args.auth_delay_ms) });
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, mtls = args.client_ca.is_some(), auth_delay_ms = args.auth_delay_ms, "serving");
    // The launcher waits for exactly this line.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "paysys-sandbox listening on https://{addr}").context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    drop(stdout);
    crate::run(listener, tls, network, args.max_body_bytes, shutdown_signal()).await.context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

fn print_cards() {
    println!("{:<20} {:<11} outcome", "card", "brand");
    for card in TEST_CARDS {
        let outcome = match card.behavior {
            CardBehavior::Approve { balance } if balance == crate::cards::LARGE_BALANCE => {
                "approved; large balance".to_owned()
            }
            CardBehavior::Approve { balance } => format!("approved up to a balance of {balance} minor units"),
            CardBehavior::Decline(code) => format!("declined {} ({})", code.as_str(), code.reason()),
            CardBehavior::ApproveAfterDelay => "approved, answered only after --auth-delay-ms".to_owned(),
        };
        println!("{:<20} {:<11} {outcome}", card.number, card.brand);
    }
}
