//! `paysys-bench reencrypt`: fill a private vault with cards, rotate the DEK under dual
//! control (two dev officers), and report the re-encryption job's rate (records/s) and
//! the tokenize rate while the job runs (the vault must keep serving).
//!
//! First numbers (release build, 100,000 cards, 16 clients, serve defaults: batch 500,
//! pause 10 ms; a 2-core machine shared with other builds, so a floor, not a ceiling):
//!
//! | backend | re-encryption | tokenize while it runs |
//! |---|---|---|
//! | SQLite | 9,289 records/s | 1,175 ops/s (p99 55 ms) |
//! | PostgreSQL | 9,558 records/s | 1,501 ops/s (p99 80 ms) |
//!
//! At that rate 1,000,000 cards take about 2 minutes; `--reencrypt-pause-ms` trades job
//! speed for tokenize latency.

use crate::load::{self, PrivateVault};
use anyhow::Context;
use paysys_vault_client::{ClientTls, HttpVersion};
use std::time::{Duration, Instant};

/// Options of the benchmark.
#[derive(Debug, clap::Args)]
pub struct ReencryptArgs {
    /// Start a private vault on this database (`sqlite:PATH` or `postgres://…`).
    #[arg(long)]
    database_url: String,
    /// Cards stored before the rotation.
    #[arg(long, default_value_t = 100_000)]
    cards: u64,
    /// Concurrent clients while filling and while measuring tokenize.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds of tokenize load measured while the job runs.
    #[arg(long, default_value_t = 10)]
    tokenize_seconds: u64,
}

pub async fn run(args: ReencryptArgs) -> anyhow::Result<()> {
    let vault = PrivateVault::start(&args.database_url).await.context("starting a private vault")?;
    let target = vault.target();
    let pki = vault.pki();
    let merchant = ClientTls::new(&target.ca, Some((&target.cert, &target.key)), HttpVersion::Http1)?;
    let officer = |name: &str| -> anyhow::Result<ClientTls> {
        let files = pki.officers.get(name).with_context(|| format!("no officer {name} in the dev PKI"))?;
        Ok(ClientTls::new(&target.ca, Some((&files.cert, &files.key)), HttpVersion::Http1)?)
    };
    let (alice, bob) = (officer("alice")?, officer("bob")?);

    let started = Instant::now();
    let per_client = args.cards.div_ceil(args.concurrency.max(1) as u64);
    let mut fillers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let mut conn = merchant.connect(&target.url).await?;
        let merchant_id = target.merchant_id.clone();
        fillers.push(tokio::spawn(async move {
            for _ in 0..per_client {
                let body = serde_json::json!({
                    "merchant_id": merchant_id, "pan": load::random_visa(), "exp_month": 12, "exp_year": 2030,
                });
                let r = conn.call("POST", "/v1/tokens", Some(&body)).await?;
                anyhow::ensure!(r.status == 201, "tokenize answered {}: {}", r.status, r.body);
            }
            Ok(())
        }));
    }
    for filler in fillers {
        filler.await??;
    }
    let stored = per_client * args.concurrency.max(1) as u64;
    println!("filled {stored} cards in {:.1}s", started.elapsed().as_secs_f64());

    let r = alice
        .connect(&target.url)
        .await?
        .call("POST", "/v1/keys/requests", Some(&serde_json::json!({"action": "rotate_dek"})))
        .await?;
    anyhow::ensure!(r.status == 202, "rotate_dek request answered {}: {}", r.status, r.body);
    let id = r.body["id"].as_str().context("no request id")?.to_owned();
    let r = bob.connect(&target.url).await?.call("POST", &format!("/v1/keys/requests/{id}/approve"), None).await?;
    anyhow::ensure!(r.status == 200, "approval answered {}: {}", r.status, r.body);

    let connections = load::vault_connections(&merchant, &target.url, args.concurrency).await?;
    let tokenizers =
        connections.into_iter().map(|conn| load::Tokenizer { conn, merchant_id: target.merchant_id.clone() }).collect();
    let report = load::run(tokenizers, Duration::ZERO, Duration::from_secs(args.tokenize_seconds)).await?;
    println!("tokenize while re-encrypting  backend={} concurrency={}", target.backend, args.concurrency);
    println!("{report}");

    let mut conn = alice.connect(&target.url).await?;
    loop {
        let r = conn.call("GET", "/v1/keys/jobs", None).await?;
        let job = r.body["jobs"][0].clone();
        match job["state"].as_str() {
            Some("running") => tokio::time::sleep(Duration::from_millis(500)).await,
            Some("done") => {
                println!(
                    "reencrypt  backend={} records={} rate={:.0} records/s (batch and pause: serve defaults)",
                    target.backend,
                    job["done"],
                    job["records_per_second"].as_f64().unwrap_or(0.0)
                );
                return Ok(());
            }
            _ => anyhow::bail!("the job did not finish: {job}"),
        }
    }
}
