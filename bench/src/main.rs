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
//! ```
//! Without `--stack`, `tokenize` starts its own vault (the `paysys-vault` binary next to
//! this one) on a fresh dev PKI with the given database, and `pay` its own `paysys up`
//! stack (vault, sandbox, gateway on free ports) in a temporary directory.

#![allow(clippy::print_stdout)]

mod load;
mod pay;
mod reencrypt;

use anyhow::Context;
use clap::{Parser, Subcommand};
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
    /// Fill a private vault, rotate the DEK (two officers), report re-encryption records/s
    /// and tokenize ops/s while the job runs.
    Reencrypt(reencrypt::ReencryptArgs),
    /// End-to-end `payment.create` (auto capture) through the gateway, the vault relay
    /// and the sandbox, with tokens tokenized first.
    Pay(PayArgs),
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
    /// Concurrent clients, each with its own keep-alive HTTP/1.1 connection.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Measured seconds (after warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Tokens per test card (four approving cards) in the pool paid with.
    #[arg(long, default_value_t = 16)]
    tokens_per_card: usize,
    /// `payment.create`'s `three_ds`: `auto` (the API's default: international cards
    /// get a frictionless AReq through the vault relay first), `force` or `skip`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "force", "skip"])]
    three_ds: String,
}

#[derive(Debug, clap::Args)]
struct TokenizeArgs {
    /// Use a running stack described by this stack.json (from `paysys up`).
    #[arg(long, conflicts_with = "database_url")]
    stack: Option<PathBuf>,
    /// Start a private vault on this database (`sqlite:PATH` or `postgres://…`).
    #[arg(long)]
    database_url: Option<String>,
    /// Concurrent clients, each with its own keep-alive mTLS connection.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Measured seconds (after warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Speak HTTP/2 (one connection per client) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Tokenize(args) => tokenize(args).await,
            Command::Reencrypt(args) => reencrypt::run(args).await,
            Command::Pay(args) => pay(args).await,
        }
    })
}

async fn tokenize(args: TokenizeArgs) -> anyhow::Result<()> {
    let (target, _private) = match (&args.stack, &args.database_url) {
        (Some(stack), _) => (load::Target::from_stack(stack)?, None),
        (None, Some(url)) => {
            let vault = load::PrivateVault::start(url).await.context("starting a private vault")?;
            (vault.target().clone(), Some(vault))
        }
        (None, None) => anyhow::bail!("give --stack or --database-url"),
    };
    let version = if args.http2 { HttpVersion::Http2 } else { HttpVersion::Http1 };
    let tls = ClientTls::new(&target.ca, Some((&target.cert, &target.key)), version)?;
    let report = load::run(
        &tls,
        &target.url,
        &target.merchant_id,
        args.concurrency,
        Duration::from_secs(args.warmup),
        Duration::from_secs(args.duration),
    )
    .await?;
    println!(
        "tokenize  backend={} http={} concurrency={} duration={}s",
        target.backend,
        if args.http2 { "2" } else { "1.1" },
        args.concurrency,
        args.duration
    );
    println!("{report}");
    Ok(())
}

async fn pay(args: PayArgs) -> anyhow::Result<()> {
    let (stack, private) = match &args.stack {
        Some(path) => (paysys::stack::Stack::read(path)?, None),
        None => {
            let dir = std::env::temp_dir().join(format!("paysys-bench-pay-{}", std::process::id()));
            let options = paysys::up::UpOptions {
                merchant_id: "m_bench".into(),
                vault_port: 0,
                sandbox_port: 0,
                gateway_port: 0,
                vault_database_url: args.vault_database_url.clone(),
                gateway_database_url: args.gateway_database_url.clone(),
                bin_dir: std::env::var_os("PAYSYS_BIN_DIR").map(PathBuf::from),
                ..paysys::up::UpOptions::new(&dir)
            };
            let running = paysys::up::start_stack(&options).await.context("starting a private stack")?;
            (running.stack().clone(), Some((running, dir)))
        }
    };
    let result = async {
        let tokens = pay::token_pool(&stack, args.tokens_per_card).await?;
        pay::run(
            &stack,
            &tokens,
            args.concurrency,
            Duration::from_secs(args.warmup),
            Duration::from_secs(args.duration),
            &args.three_ds,
        )
        .await
    }
    .await;
    if let Some((running, dir)) = private {
        running.stop().await?;
        let _ = std::fs::remove_dir_all(dir);
    }
    let report = result?;
    let backend = |url: &str| if url.starts_with("postgres") { "postgresql" } else { "sqlite" };
    println!(
        "pay  vault={} gateway={} sandbox=sqlite concurrency={} duration={}s",
        backend(&stack.vault.database_url),
        backend(&stack.gateway.database_url),
        args.concurrency,
        args.duration
    );
    println!("{report}");
    Ok(())
}
