//! The `paysys-intake` command and its configuration (flags or environment).

use crate::rate_limit::{AddressLimit, AddressRateLimiter};
use crate::vault::VaultTokens;
use crate::Intake;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use paysys_server::logging::init_logging;
use paysys_server::shutdown::shutdown_signal;
use paysys_server::tls_files::{install_crypto_provider, read_certificates, read_private_key};
use paysys_server::TransportFlags;
use paysys_vault_client::{ClientTls, HttpVersion};
use paysys_widget::grant::{parse_key_arg, GrantVerifier};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "paysys-intake",
    version,
    about = "The PaySys card intake: the public TLS entry where a browser hands a card, under a gateway grant, to the vault"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the card frame and `POST /v1/cards` over TLS.
    Serve(Box<ServeArgs>),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, env = "PAYSYS_INTAKE_LISTEN", default_value = "127.0.0.1:8444")]
    listen: SocketAddr,
    /// The intake's TLS certificate (PEM chain). TLS is not optional: browsers post
    /// card numbers here.
    #[arg(long, env = "PAYSYS_INTAKE_TLS_CERT")]
    tls_cert: PathBuf,
    #[arg(long, env = "PAYSYS_INTAKE_TLS_KEY")]
    tls_key: PathBuf,
    /// The origin browsers reach the intake at, e.g. `https://pay.example` or
    /// `https://127.0.0.1:8444`: cards are accepted only with this `Origin`. Default:
    /// `https://` and the bound address.
    #[arg(long, env = "PAYSYS_INTAKE_PUBLIC_URL")]
    public_url: Option<String>,
    /// The vault's internal API, `https://host:port`.
    #[arg(long, env = "PAYSYS_INTAKE_VAULT_URL")]
    vault_url: String,
    /// CA that issued the vault's certificate.
    #[arg(long, env = "PAYSYS_INTAKE_VAULT_CA")]
    vault_ca: PathBuf,
    /// The intake's client certificate for the vault (principal spiffe://paysys/intake).
    #[arg(long, env = "PAYSYS_INTAKE_CLIENT_CERT")]
    client_cert: PathBuf,
    #[arg(long, env = "PAYSYS_INTAKE_CLIENT_KEY")]
    client_key: PathBuf,
    /// A gateway grant key to trust: `KID=PATH`, the file holding the Ed25519 public key
    /// as 64 hex digits. Repeatable: during a rotation both keys are given.
    #[arg(long = "grant-public-key", value_name = "KID=PATH", value_parser = parse_key_arg, required = true)]
    grant_public_keys: Vec<(String, PathBuf)>,
    /// Largest request body accepted (a card is a few hundred bytes).
    #[arg(long, default_value_t = 8 * 1024)]
    max_body_bytes: usize,
    /// Cards one client address (IPv6: one /64) may post at once after a quiet spell.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    address_limit_burst: u32,
    /// Cards one client address may post per minute, sustained.
    #[arg(long, default_value_t = 6.0)]
    address_limit_per_minute: f64,
    #[command(flatten)]
    transport: TransportFlags,
}

pub fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => {
            init_logging();
            block_on(serve(*args))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paysys-intake: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?.block_on(f)
}

/// Browsers only: our certificate, no client certificates, HTTP/2 and HTTP/1.1 by ALPN.
fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    install_crypto_provider();
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(read_certificates(cert)?, read_private_key(key)?)
        .context("loading the intake's server certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The web origin of `url` (`https://host[:port]`, no path), as browsers send it in
/// `Origin`.
fn public_origin(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim_end_matches('/');
    let origin = paysys_widget::origin::parse_origin(trimmed)
        .with_context(|| format!("--public-url {url:?} must be a web origin such as https://pay.example"))?;
    anyhow::ensure!(origin.starts_with("https://"), "--public-url must be https: browsers post card numbers to it");
    Ok(origin.to_owned())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let tls = server_config(&args.tls_cert, &args.tls_key)?;
    let mut grants = GrantVerifier::new();
    for (kid, path) in &args.grant_public_keys {
        grants.add_file(kid, path).with_context(|| format!("--grant-public-key {kid}={}", path.display()))?;
    }
    anyhow::ensure!(
        args.address_limit_per_minute.is_finite() && args.address_limit_per_minute >= 0.0,
        "--address-limit-per-minute must be a number of cards, 0 or more"
    );
    let vault_tls = ClientTls::new(&args.vault_ca, Some((&args.client_cert, &args.client_key)), HttpVersion::Http1)
        .context("loading the vault client credentials")?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let public_origin = public_origin(args.public_url.as_deref().unwrap_or(&format!("https://{addr}")))?;
    let intake = Arc::new(Intake {
        public_origin: public_origin.clone(),
        grants,
        vault: VaultTokens::new(vault_tls, &args.vault_url),
        address_limit: AddressRateLimiter::new(AddressLimit {
            per_second: args.address_limit_per_minute / 60.0,
            burst: args.address_limit_burst,
        }),
    });
    let kids: Vec<&str> = intake.grants.kids().collect();
    tracing::info!(%addr, public_origin, vault = %args.vault_url, grant_keys = ?kids, "serving");
    // The launcher and the tests wait for exactly this line.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "paysys-intake listening on https://{addr}").context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    drop(stdout);
    crate::run(listener, tls, intake, args.max_body_bytes, args.transport.limits(), shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_public_url_must_be_an_https_origin() {
        assert_eq!(public_origin("https://127.0.0.1:8444").unwrap(), "https://127.0.0.1:8444");
        assert_eq!(public_origin("https://pay.example/").unwrap(), "https://pay.example");
        for bad in ["http://127.0.0.1:8444", "https://pay.example/v1", "pay.example", "https://pay.example:443"] {
            assert!(public_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grant_keys_are_required_and_parsed_as_kid_and_path() {
        let base = [
            "paysys-intake",
            "serve",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--vault-url",
            "https://127.0.0.1:8443",
            "--vault-ca",
            "ca",
            "--client-cert",
            "i",
            "--client-key",
            "ik",
        ];
        assert!(Cli::try_parse_from(base).is_err(), "no grant key");
        let mut args = base.to_vec();
        args.extend(["--grant-public-key", "g1=/k/g1.pub", "--grant-public-key", "g2=/k/g2.pub"]);
        let Command::Serve(serve) = Cli::try_parse_from(args).unwrap().command;
        assert_eq!(serve.grant_public_keys[1], ("g2".to_owned(), PathBuf::from("/k/g2.pub")));
        assert_eq!(serve.max_body_bytes, 8192);
        let mut args = base.to_vec();
        args.extend(["--grant-public-key", "g 1=/k"]);
        assert!(Cli::try_parse_from(args).is_err(), "a bad key id");
    }
}
