//! `paysys-bench`: drive real PaySys processes over real mTLS and print ops/s and
//! latency percentiles. A program, not a test: numbers go in issue notes.
//!
//! ```text
//! paysys-bench tokenize --database-url sqlite:/tmp/bench/vault.db --concurrency 64 --duration 10
//! paysys-bench tokenize --database-url postgres://postgres@127.0.0.1:5432/bench --concurrency 64
//! paysys-bench tokenize --stack .paysys/stack.json --concurrency 16
//! paysys-bench reencrypt --database-url sqlite:/tmp/bench/vault.db --cards 1000000
//! paysys-bench pay --stack .paysys/stack.json --concurrency 64
//! paysys-bench pay --concurrency 64                       # private stack, SQLite
//! paysys-bench pay --vault-database-url postgres://…/v --gateway-database-url postgres://…/g
//! paysys-bench ceiling --database-url sqlite:/tmp/bench/vault.db --concurrency 64
//! paysys-bench ceiling --service gateway --stack .paysys/stack.json --concurrency 64
//! paysys-bench tokenize --database-url sqlite:/tmp/bench/vault.db --concurrency 64 --with-ceiling
//! paysys-bench pay --concurrency 64 --with-ceiling
//! paysys-bench checkout --concurrency 64                  # intake vs direct, private vault + intake
//! paysys-bench pay --concurrency 64 --with-webhooks        # off, on, off, on: one stack
//! ```
//! Without `--stack`, `tokenize` starts its own vault (the `paysys-vault` binary next to
//! this one) on a fresh dev PKI with the given database, and `pay` its own `paysys up`
//! stack (vault, sandbox, gateway on free ports) in a temporary directory.
//!
//! Absolute figures on a shared machine move by a third from hour to hour; a ratio taken
//! in one run does not. `ceiling` is the cheapest request a service answers over the
//! same transport, and `--with-ceiling` runs it against the same vault (or gateway)
//! right before the real benchmark and prints the ratio of the two.

#![allow(clippy::print_stdout)]

mod ceiling;
mod checkout;
mod load;
mod pay;
mod reencrypt;
mod webhooks;

use anyhow::Context;
use ceiling::Service;
use clap::{Parser, Subcommand};
use load::{Ratio, Report, Target};
use paysys::stack::Stack;
use paysys_vault_client::{ClientTls, HttpVersion};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "paysys-bench", about = "PaySys benchmarks over real mTLS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// `POST /v1/tokens` with fresh random Visa numbers (reuse: false).
    Tokenize(TokenizeArgs),
    /// The cheapest request a service answers over the benchmark's transport: vault
    /// `GET /v1/sys/health` over mTLS, gateway `GET /health`.
    Ceiling(CeilingArgs),
    /// Fill a private vault, rotate the DEK (two officers), report re-encryption records/s
    /// and tokenize ops/s while the job runs.
    Reencrypt(reencrypt::ReencryptArgs),
    /// End-to-end `payment.create` (auto capture) through the gateway, the vault relay
    /// and the sandbox, with tokens tokenized first.
    Pay(PayArgs),
    /// Card intake through one-time grants (the payment widget's card frame to the
    /// intake to the vault), side by side with direct vault tokenization, on a private
    /// vault and intake.
    Checkout(checkout::CheckoutArgs),
}

/// How hard and how long a benchmark drives its service.
#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// Concurrent clients, each with its own keep-alive connection.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Measured seconds (after warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
}

impl LoadArgs {
    /// Drive `clients` for this warm-up and duration.
    async fn run<C: load::Client>(&self, clients: Vec<C>) -> anyhow::Result<Report> {
        load::run(clients, Duration::from_secs(self.warmup), Duration::from_secs(self.duration)).await
    }
}

#[derive(Debug, clap::Args)]
struct PayArgs {
    /// Use a running stack described by this stack.json (from `paysys up`).
    #[arg(long, conflicts_with_all = ["vault_database_url", "gateway_database_url"])]
    stack: Option<PathBuf>,
    /// The private stack's vault database (default: SQLite in its directory).
    #[arg(long)]
    vault_database_url: Option<String>,
    /// The private stack's gateway database (default: SQLite in its directory).
    #[arg(long)]
    gateway_database_url: Option<String>,
    #[command(flatten)]
    load: LoadArgs,
    /// Tokens per test card (four approving cards) in the pool paid with.
    #[arg(long, default_value_t = 16)]
    tokens_per_card: usize,
    /// `payment.create`'s `three_ds`: `auto` (the API's default: international cards
    /// get a frictionless AReq through the vault relay first), `force` or `skip`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "force", "skip"])]
    three_ds: String,
    /// First run the gateway's ceiling (`GET /health`) against the same gateway, then
    /// print the ratio.
    #[arg(long)]
    with_ceiling: bool,
    /// Pay on the same stack in alternating rounds: without webhooks, then with an
    /// endpoint (a receiver on loopback) taking every payment event, `--rounds` times;
    /// print each round, the ratios and the outbox left after each round with webhooks.
    #[arg(long)]
    with_webhooks: bool,
    /// Rounds of (off, on) with `--with-webhooks`; the first "off" is the main run.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

#[derive(Debug, clap::Args)]
struct TokenizeArgs {
    /// Use a running stack described by this stack.json (from `paysys up`).
    #[arg(long, conflicts_with = "database_url")]
    stack: Option<PathBuf>,
    /// Start a private vault on this database (`sqlite:PATH` or `postgres://…`).
    #[arg(long)]
    database_url: Option<String>,
    #[command(flatten)]
    load: LoadArgs,
    /// Speak HTTP/2 (one connection per client) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// First run the vault's ceiling (`GET /v1/sys/health`) against the same vault over
    /// the same transport, then print the ratio.
    #[arg(long)]
    with_ceiling: bool,
}

#[derive(Debug, clap::Args)]
struct CeilingArgs {
    /// The service whose ceiling is measured.
    #[arg(long, value_enum, default_value_t = Service::Vault)]
    service: Service,
    /// Use a running stack described by this stack.json (from `paysys up`).
    #[arg(long, conflicts_with = "database_url")]
    stack: Option<PathBuf>,
    /// Vault: start a private vault on this database; gateway: the private stack's
    /// vault and gateway run on SQLite in its directory, so this is refused.
    #[arg(long)]
    database_url: Option<String>,
    #[command(flatten)]
    load: LoadArgs,
    /// Vault: speak HTTP/2 (one connection per client) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Tokenize(args) => tokenize(args).await,
            Command::Ceiling(args) => ceiling(args).await,
            Command::Reencrypt(args) => reencrypt::run(args).await,
            Command::Pay(args) => pay(args).await,
            Command::Checkout(args) => checkout::run(args).await,
        }
    })
}

/// The vault to load: the one of `--stack`, or a private one on `--database-url`
/// (kept alive by the second value).
async fn vault_target(
    stack: Option<&PathBuf>,
    database_url: Option<&String>,
) -> anyhow::Result<(Target, Option<load::PrivateVault>)> {
    match (stack, database_url) {
        (Some(stack), _) => Ok((Target::from_stack(stack)?, None)),
        (None, Some(url)) => {
            let vault = load::PrivateVault::start(url).await.context("starting a private vault")?;
            Ok((vault.target().clone(), Some(vault)))
        }
        (None, None) => anyhow::bail!("give --stack or --database-url"),
    }
}

/// The vault's ceiling: `GET /v1/sys/health` over mTLS with the merchant's certificate.
async fn vault_ceiling(tls: &ClientTls, target: &Target, load: &LoadArgs, http: &str) -> anyhow::Result<Report> {
    let connections = load::vault_connections(tls, &target.url, load.concurrency).await?;
    let report = load.run(connections.into_iter().map(ceiling::VaultHealth).collect()).await?;
    println!(
        "ceiling  service=vault request=\"GET /v1/sys/health\" backend={} http={http} concurrency={} duration={}s",
        target.backend, load.concurrency, load.duration
    );
    println!("{report}");
    Ok(report)
}

/// The gateway's ceiling: `GET /health` over the plain HTTP/1.1 `pay` speaks.
async fn gateway_ceiling(stack: &Stack, load: &LoadArgs) -> anyhow::Result<Report> {
    let mut clients = Vec::with_capacity(load.concurrency);
    for _ in 0..load.concurrency {
        clients.push(ceiling::GatewayHealth(pay::RpcClient::connect(stack).await?));
    }
    let report = load.run(clients).await?;
    println!(
        "ceiling  service=gateway request=\"GET /health\" http=1.1 concurrency={} duration={}s",
        load.concurrency, load.duration
    );
    println!("{report}");
    Ok(report)
}

fn http_version(http2: bool) -> (HttpVersion, &'static str) {
    if http2 {
        (HttpVersion::Http2, "2")
    } else {
        (HttpVersion::Http1, "1.1")
    }
}

async fn tokenize(args: TokenizeArgs) -> anyhow::Result<()> {
    let (target, _private) = vault_target(args.stack.as_ref(), args.database_url.as_ref()).await?;
    let (version, http) = http_version(args.http2);
    let tls = ClientTls::new(&target.ca, Some((&target.cert, &target.key)), version)?;
    let ceiling = if args.with_ceiling { Some(vault_ceiling(&tls, &target, &args.load, http).await?) } else { None };
    let connections = load::vault_connections(&tls, &target.url, args.load.concurrency).await?;
    let clients =
        connections.into_iter().map(|conn| load::Tokenizer { conn, merchant_id: target.merchant_id.clone() }).collect();
    let report = args.load.run(clients).await?;
    println!(
        "tokenize  backend={} http={http} concurrency={} duration={}s",
        target.backend, args.load.concurrency, args.load.duration
    );
    println!("{report}");
    if let Some(ceiling) = &ceiling {
        println!("{}", Ratio { run: &report, ceiling });
    }
    Ok(())
}

async fn ceiling(args: CeilingArgs) -> anyhow::Result<()> {
    match args.service {
        Service::Vault => {
            let (target, _private) = vault_target(args.stack.as_ref(), args.database_url.as_ref()).await?;
            let (version, http) = http_version(args.http2);
            let tls = ClientTls::new(&target.ca, Some((&target.cert, &target.key)), version)?;
            vault_ceiling(&tls, &target, &args.load, http).await?;
        }
        Service::Gateway => {
            anyhow::ensure!(args.database_url.is_none(), "--database-url is for the vault's ceiling");
            let stack = BenchStack::open(args.stack.as_ref(), None, None).await?;
            let result = gateway_ceiling(&stack.stack, &args.load).await;
            stack.stop().await?;
            result?;
        }
    }
    Ok(())
}

/// The stack `pay` drives: the one of `--stack`, or a private `paysys up` stack (vault,
/// sandbox, gateway on free ports) in a temporary directory, stopped by [`BenchStack::stop`].
struct BenchStack {
    stack: Stack,
    private: Option<(paysys::up::RunningStack, PathBuf)>,
}

impl BenchStack {
    async fn open(
        stack: Option<&PathBuf>,
        vault_database_url: Option<&String>,
        gateway_database_url: Option<&String>,
    ) -> anyhow::Result<BenchStack> {
        if let Some(path) = stack {
            return Ok(BenchStack { stack: Stack::read(path)?, private: None });
        }
        let dir = std::env::temp_dir().join(format!("paysys-bench-pay-{}", std::process::id()));
        let options = paysys::up::UpOptions {
            merchant_id: "m_bench".into(),
            vault_port: 0,
            sandbox_port: 0,
            gateway_port: 0,
            intake_port: 0,
            vault_database_url: vault_database_url.cloned(),
            gateway_database_url: gateway_database_url.cloned(),
            bin_dir: std::env::var_os("PAYSYS_BIN_DIR").map(PathBuf::from),
            ..paysys::up::UpOptions::new(&dir)
        };
        let running = paysys::up::start_stack(&options).await.context("starting a private stack")?;
        Ok(BenchStack { stack: running.stack().clone(), private: Some((running, dir)) })
    }

    async fn stop(self) -> anyhow::Result<()> {
        if let Some((running, dir)) = self.private {
            running.stop().await?;
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }
}

async fn pay(args: PayArgs) -> anyhow::Result<()> {
    let stack =
        BenchStack::open(args.stack.as_ref(), args.vault_database_url.as_ref(), args.gateway_database_url.as_ref())
            .await?;
    let result = async {
        let tokens = pay::token_pool(&stack.stack, args.tokens_per_card).await?;
        let ceiling = if args.with_ceiling { Some(gateway_ceiling(&stack.stack, &args.load).await?) } else { None };
        let payers = pay::payers(&stack.stack, &tokens, args.load.concurrency, &args.three_ds).await?;
        let report = args.load.run(payers).await?;
        let with_webhooks = if args.with_webhooks {
            let mut rounds = webhooks::Rounds::default();
            let receiver = webhooks::Receiver::start().await?;
            let endpoint = webhooks::register(&stack.stack, &receiver).await?;
            for round in 0..args.rounds.max(1) {
                if round > 0 {
                    webhooks::set_enabled(&stack.stack, &endpoint, false).await?;
                    let payers = pay::payers(&stack.stack, &tokens, args.load.concurrency, &args.three_ds).await?;
                    rounds.off.push(args.load.run(payers).await?);
                    webhooks::set_enabled(&stack.stack, &endpoint, true).await?;
                }
                let payers = pay::payers(&stack.stack, &tokens, args.load.concurrency, &args.three_ds).await?;
                rounds.on.push(args.load.run(payers).await?);
                let backlog = webhooks::pending(&stack.stack).await?;
                let drained = webhooks::drain(&stack.stack, Duration::from_secs(60)).await?;
                rounds.outbox.push((backlog, drained));
            }
            rounds.received = receiver.received.load(std::sync::atomic::Ordering::Relaxed);
            Some(rounds)
        } else {
            None
        };
        Ok::<_, anyhow::Error>((report, ceiling, with_webhooks))
    }
    .await;
    let backend = |url: &str| if url.starts_with("postgres") { "postgresql" } else { "sqlite" };
    let (vault, gateway) = (backend(&stack.stack.vault.database_url), backend(&stack.stack.gateway.database_url));
    stack.stop().await?;
    let (report, ceiling, with_webhooks) = result?;
    println!(
        "pay  vault={vault} gateway={gateway} sandbox=sqlite three_ds={} concurrency={} duration={}s",
        args.three_ds, args.load.concurrency, args.load.duration
    );
    println!("{report}");
    if let Some(ceiling) = &ceiling {
        println!("{}", Ratio { run: &report, ceiling });
    }
    if let Some(mut rounds) = with_webhooks {
        rounds.off.insert(0, report);
        println!("{rounds}");
    }
    Ok(())
}
