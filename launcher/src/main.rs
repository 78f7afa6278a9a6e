//! `paysys`: the dev launcher. Flags only; the work is in the library.

use clap::{Args, Parser, Subcommand};
use paysys::pki::DEFAULT_MERCHANT_ID;
use paysys::rpc::{CheckoutRequest, DEFAULT_RETURN_URL};
use paysys::up::{
    UpOptions, DEFAULT_DIR, DEFAULT_GATEWAY_PORT, DEFAULT_INTAKE_PORT, DEFAULT_SANDBOX_PORT, DEFAULT_VAULT_PORT,
};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "paysys", version, about = "PaySys launcher: dev PKI and the whole stack on one machine (DEV ONLY)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the dev stack (PKI, sandbox, dev-unsealed vault, gateway with a dev merchant) in the foreground until Ctrl-C.
    Up(UpArgs),
    /// The development PKI.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Call the stack's gateway as the dev merchant (signed with its secret from stack.json):
    /// `paysys rpc payment.create '{"card_token":"tok_…","amount":1000,"currency":"USD",…}'`.
    Rpc {
        /// The JSON-RPC method, e.g. `payment.create`.
        method: String,
        /// Named params as a JSON object.
        #[arg(default_value = "{}")]
        params: String,
        /// The stack's directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// Create a hosted checkout as the dev merchant (`checkout.create`) and print the URL
    /// to open in a browser: `paysys checkout --amount 150000 --currency UZS`.
    Checkout(CheckoutArgs),
}

#[derive(Debug, Args)]
struct CheckoutArgs {
    /// Amount in minor units (150000 UZS is 1 500.00 so'm).
    #[arg(long)]
    amount: i64,
    /// ISO 4217 code, e.g. UZS or USD.
    #[arg(long)]
    currency: String,
    /// What the buyer pays for, shown on the page.
    #[arg(long)]
    description: Option<String>,
    /// Where the buyer is sent afterwards, with the signed result.
    #[arg(long, default_value = DEFAULT_RETURN_URL)]
    return_url: String,
    /// The page's language: uz, ru or en.
    #[arg(long, value_parser = ["uz", "ru", "en"])]
    lang: Option<String>,
    /// Print the whole `checkout.create` result as JSON, not just the URL.
    #[arg(long)]
    json: bool,
    /// The stack's directory.
    #[arg(long, default_value = DEFAULT_DIR)]
    dir: PathBuf,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// The stack's directory: PKI, policy, database, dev root key, stack.json.
    #[arg(long, default_value = DEFAULT_DIR)]
    dir: PathBuf,
    /// Port of the vault's mTLS API on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = DEFAULT_VAULT_PORT)]
    vault_port: u16,
    /// The vault's database (default `sqlite:DIR/vault.db`), e.g. a PostgreSQL URL. Its value is
    /// never shown in help: it may hold a password.
    #[arg(long, env = "PAYSYS_VAULT_DATABASE_URL", hide_env_values = true)]
    vault_database_url: Option<String>,
    /// Port of the sandbox card network on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = DEFAULT_SANDBOX_PORT)]
    sandbox_port: u16,
    /// Port of the gateway's JSON-RPC API on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = DEFAULT_GATEWAY_PORT)]
    gateway_port: u16,
    /// Port of the card intake (the payment widget's card frame) on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = DEFAULT_INTAKE_PORT)]
    intake_port: u16,
    /// The gateway's database (default `sqlite:DIR/gateway.db`), e.g. a PostgreSQL URL.
    #[arg(long, env = "PAYSYS_GATEWAY_DATABASE_URL", hide_env_values = true)]
    gateway_database_url: Option<String>,
    /// The merchant whose client certificate is issued.
    #[arg(long, default_value = DEFAULT_MERCHANT_ID)]
    merchant_id: String,
    /// Directory of the service binaries (default: next to this executable).
    #[arg(long, env = "PAYSYS_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Register a webhook endpoint for the dev merchant, e.g. `http://127.0.0.1:9000/hooks`
    /// (loopback over http is allowed in the dev stack); its secret goes to DIR/dev-webhook.json.
    #[arg(long)]
    webhook_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create the dev PKI in DIR/pki (reused if it exists); print its files as JSON.
    Init {
        /// The stack's directory.
        dir: PathBuf,
        /// The merchant whose client certificate is issued.
        #[arg(long, default_value = DEFAULT_MERCHANT_ID)]
        merchant_id: String,
    },
    /// Revoke the dev certificate NAME (`gateway`, `merchant-m_dev`, `officer-alice`, …:
    /// DIR/pki/NAME.pem): add it to DIR/pki/crl.pem, re-issued with the next CRL number.
    /// A running vault picks the CRL up within seconds (or at once on SIGHUP).
    Revoke {
        /// The certificate's file name in DIR/pki, without `.pem`.
        name: String,
        /// The stack's directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paysys: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => {
            let options = UpOptions {
                dir: args.dir,
                merchant_id: args.merchant_id,
                vault_port: args.vault_port,
                vault_database_url: args.vault_database_url,
                sandbox_port: args.sandbox_port,
                gateway_port: args.gateway_port,
                intake_port: args.intake_port,
                gateway_database_url: args.gateway_database_url,
                bin_dir: args.bin_dir,
                webhook_url: args.webhook_url,
            };
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(paysys::up::run(options))
        }
        Command::Rpc { method, params, dir } => {
            let params: serde_json::Value =
                serde_json::from_str(&params).map_err(|e| anyhow::anyhow!("params are not JSON: {e}"))?;
            let stack = paysys::stack::Stack::read_from_dir(&dir)
                .map_err(|e| anyhow::anyhow!("{e:#}; is `paysys up` running with --dir {}?", dir.display()))?;
            let answer = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(paysys::rpc::call(&stack, &method, &params))?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
        Command::Checkout(args) => {
            let stack = paysys::stack::Stack::read_from_dir(&args.dir)
                .map_err(|e| anyhow::anyhow!("{e:#}; is `paysys up` running with --dir {}?", args.dir.display()))?;
            let request = CheckoutRequest {
                amount: args.amount,
                currency: args.currency,
                description: args.description,
                return_url: args.return_url,
                language: args.lang,
            };
            let (url, result) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(paysys::rpc::create_checkout(&stack, &request))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                println!("{url}");
                eprintln!(
                    "Open it in a browser and pay with a test card (4242 4242 4242 4242, any future expiry, any CVC).\n\
                     The card form comes from the intake at {} with the dev CA's certificate: trust {} in the browser, \
                     or open {}/health once and accept the certificate.",
                    stack.intake.url,
                    stack.pki.ca_cert.display(),
                    stack.intake.url
                );
            }
            Ok(())
        }
        Command::Pki(PkiCommand::Init { dir, merchant_id }) => {
            let pki = paysys::pki::init_dev_pki(&dir, &merchant_id)?;
            eprintln!("DEV PKI: the CA's private key is on disk ({}); not for production.", pki.ca_key().display());
            println!("{}", serde_json::to_string_pretty(&pki)?);
            Ok(())
        }
        Command::Pki(PkiCommand::Revoke { name, dir }) => {
            let revocation = paysys::pki::revoke_certificate(&dir.join("pki"), &name)?;
            eprintln!(
                "revoked {} (serial {}); {} is CRL number {} with {} revoked; services reload it within seconds, or send them SIGHUP",
                revocation.certificate.display(),
                revocation.serial,
                revocation.crl.display(),
                revocation.crl_number,
                revocation.revoked_count
            );
            println!("{}", serde_json::to_string_pretty(&revocation)?);
            Ok(())
        }
    }
}
