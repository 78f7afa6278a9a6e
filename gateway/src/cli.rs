//! The `paysys-gateway` commands and their configuration (flags or environment).

use crate::acquirer::SandboxAcquirer;
use crate::checkout::{CardTestingLimits, WidgetConfig};
use crate::https::HttpsPool;
use crate::ids;
use crate::payments::{now_ms, Gateway, GatewayConfig};
use crate::secrets::{MerchantSecret, SecretKey};
use crate::server::App;
use crate::store::{MerchantRecord, Store, WidgetSettings};
use crate::three_ds::directory::Directory;
use crate::three_ds::{AutoSettings, ThreeDsConfig};
use crate::vault::VaultRelay;
use crate::{auth, tls};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use paysys_server::logging::init_logging;
use paysys_server::shutdown::shutdown_signal;
use paysys_vault_client::{ClientTls, HttpVersion};
use paysys_widget::grant::GrantSigner;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "paysys-gateway", version, about = "The PaySys payment gateway (Host-to-Host JSON-RPC API)")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the JSON-RPC API.
    Serve(Box<ServeArgs>),
    /// Manage merchants.
    Merchant {
        #[command(subcommand)]
        command: MerchantCommand,
    },
    /// Write a fresh secret key file (64 hex characters, mode 0600); merchant secrets
    /// are sealed under it.
    SecretKey {
        /// File to create (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// The payment widget's grant key (Ed25519, PKCS#8 DER): make one, or print its
    /// public key for the intake's `--grant-public-key`.
    GrantKey {
        #[command(subcommand)]
        command: GrantKeyCommand,
    },
    /// Print the Auth header for a request body (a signing helper for trying the API).
    Sign {
        #[arg(long, env = "PAYSYS_SERVICE_ID")]
        service_id: String,
        /// The merchant's secret (better given through the environment).
        #[arg(long, env = "PAYSYS_SECRET", hide_env_values = true)]
        secret: String,
        /// The exact request body that will be sent.
        #[arg(long)]
        body: String,
    },
}

#[derive(Debug, Subcommand)]
enum GrantKeyCommand {
    /// Write a new grant key (PKCS#8 DER, mode 0600; refuses to overwrite) and print its
    /// public key (64 hex digits).
    New {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print `KID <public key hex>` of the key file.
    Public {
        /// `KID=PATH`.
        #[arg(value_name = "KID=PATH", value_parser = parse_grant_key_arg)]
        key: (String, PathBuf),
    },
}

fn parse_grant_key_arg(arg: &str) -> Result<(String, PathBuf), String> {
    paysys_widget::grant::parse_key_arg(arg)
}

/// A merchant's payment-widget settings.
#[derive(Debug, Args)]
struct WidgetArgs {
    /// An origin (`https://shop.example`) whose pages may embed the card form and call
    /// the checkout endpoints; repeatable; added to the merchant's list.
    #[arg(long, value_name = "ORIGIN")]
    allowed_origin: Vec<String>,
    /// Empty the list of allowed origins (before adding any given).
    #[arg(long)]
    clear_allowed_origins: bool,
    /// The hosted checkout page may be framed by the allowed origins: `true` or `false`
    /// (given alone: `true`). Default at creation: not framable.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    allow_checkout_framing: Option<bool>,
    /// The card-testing switch: `on` (default at creation) or `off`.
    #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
    card_testing_guard: Option<String>,
}

impl WidgetArgs {
    /// `settings` with the flags given applied.
    fn apply(&self, mut settings: WidgetSettings) -> anyhow::Result<WidgetSettings> {
        if self.clear_allowed_origins {
            settings.allowed_origins.clear();
        }
        for origin in &self.allowed_origin {
            anyhow::ensure!(
                paysys_widget::origin::parse_origin(origin).is_some(),
                "--allowed-origin {origin:?} is not an origin (scheme://host[:port], lower case, no path)"
            );
            if !settings.allowed_origins.contains(origin) {
                settings.allowed_origins.push(origin.clone());
            }
        }
        if let Some(framing) = self.allow_checkout_framing {
            settings.allow_checkout_framing = framing;
        }
        if let Some(guard) = &self.card_testing_guard {
            settings.card_testing_guard = guard == "on";
        }
        Ok(settings)
    }
}

#[derive(Debug, Subcommand)]
enum MerchantCommand {
    /// Create a merchant; prints its service_id and secret once, and its settings.
    Create(MerchantCreateArgs),
    /// Change a merchant's name or 3-D Secure `auto` settings; prints its settings.
    /// Serving gateways pick the change up within 30 s.
    Update(MerchantUpdateArgs),
    /// Print a merchant's settings (never its secret).
    Show(MerchantShowArgs),
}

/// What `three_ds: auto` does for one merchant.
#[derive(Debug, Args)]
struct ThreeDsAutoArgs {
    /// The DS failures that `three_ds: auto` pays through without 3-D Secure: `none`, or
    /// a comma list of `not_enrolled`, `ds_unavailable`, `ds_timeout`, `trans_status_u`.
    /// Default at creation: `not_enrolled,ds_unavailable`.
    #[arg(long, value_name = "LIST")]
    three_ds_auto_proceed_on: Option<String>,
    /// `three_ds: auto` authenticates payments from this amount up in this currency
    /// (minor units), e.g. `USD=5000`; repeatable or comma-separated. Replaces the
    /// merchant's whole list; `none` clears it. Currencies not named take the gateway's
    /// `--three-ds-auto-min-amount`.
    #[arg(long, value_name = "CUR=AMOUNT")]
    three_ds_auto_min_amount: Vec<String>,
}

impl ThreeDsAutoArgs {
    /// `settings` with the flags given applied.
    fn apply(&self, mut settings: AutoSettings) -> anyhow::Result<AutoSettings> {
        if let Some(list) = &self.three_ds_auto_proceed_on {
            settings.proceed_on = AutoSettings::parse_proceed_on(list)?;
        }
        if !self.three_ds_auto_min_amount.is_empty() {
            settings.min_amounts = if self.three_ds_auto_min_amount.iter().all(|e| e.trim() == "none") {
                Default::default()
            } else {
                AutoSettings::parse_min_amounts(&self.three_ds_auto_min_amount)?
            };
        }
        Ok(settings)
    }
}

#[derive(Debug, Args)]
struct MerchantCreateArgs {
    #[arg(long, env = "PAYSYS_GATEWAY_DATABASE_URL", default_value = "sqlite:paysys-gateway.db")]
    database_url: String,
    #[arg(long, env = "PAYSYS_GATEWAY_SECRET_KEY_FILE")]
    secret_key_file: PathBuf,
    /// Display name.
    #[arg(long, default_value = "merchant")]
    name: String,
    /// The merchant's id at the vault (tokens belong to it); a fresh `m_…` by default.
    #[arg(long)]
    merchant_id: Option<String>,
    #[command(flatten)]
    three_ds_auto: ThreeDsAutoArgs,
    #[command(flatten)]
    widget: WidgetArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct MerchantUpdateArgs {
    #[arg(long, env = "PAYSYS_GATEWAY_DATABASE_URL", default_value = "sqlite:paysys-gateway.db")]
    database_url: String,
    /// The merchant to change.
    #[arg(long)]
    merchant_id: String,
    /// A new display name.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    three_ds_auto: ThreeDsAutoArgs,
    #[command(flatten)]
    widget: WidgetArgs,
    /// Re-open the merchant's checkouts after the card-testing switch tripped.
    #[arg(long)]
    card_testing_reset: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct MerchantShowArgs {
    #[arg(long, env = "PAYSYS_GATEWAY_DATABASE_URL", default_value = "sqlite:paysys-gateway.db")]
    database_url: String,
    #[arg(long)]
    merchant_id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, env = "PAYSYS_GATEWAY_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// `sqlite:PATH` (default), `sqlite::memory:`, or `postgres://…`.
    #[arg(long, env = "PAYSYS_GATEWAY_DATABASE_URL", default_value = "sqlite:paysys-gateway.db")]
    database_url: String,
    /// 64 hex characters; merchant secrets are sealed under it.
    #[arg(long, env = "PAYSYS_GATEWAY_SECRET_KEY_FILE")]
    secret_key_file: PathBuf,
    /// The vault's internal API, `https://host:port`.
    #[arg(long, env = "PAYSYS_GATEWAY_VAULT_URL")]
    vault_url: String,
    /// CA that issued the vault's certificate.
    #[arg(long, env = "PAYSYS_GATEWAY_VAULT_CA")]
    vault_ca: PathBuf,
    /// The gateway's client certificate for the vault (principal spiffe://paysys/gateway).
    #[arg(long, env = "PAYSYS_GATEWAY_VAULT_CERT")]
    vault_cert: PathBuf,
    #[arg(long, env = "PAYSYS_GATEWAY_VAULT_KEY")]
    vault_key: PathBuf,
    /// The acquirer, `https://host:port` (capture, void, refund, inquiry).
    #[arg(long, env = "PAYSYS_GATEWAY_ACQUIRER_URL")]
    acquirer_url: String,
    /// CA that issued the acquirer's certificate.
    #[arg(long, env = "PAYSYS_GATEWAY_ACQUIRER_CA")]
    acquirer_ca: PathBuf,
    /// Client certificate for an acquirer that requires mTLS (with --acquirer-key).
    #[arg(long, env = "PAYSYS_GATEWAY_ACQUIRER_CERT", requires = "acquirer_key")]
    acquirer_cert: Option<PathBuf>,
    #[arg(long, env = "PAYSYS_GATEWAY_ACQUIRER_KEY", requires = "acquirer_cert")]
    acquirer_key: Option<PathBuf>,
    /// Serve HTTPS with this certificate (with --tls-key). Without: plain HTTP, allowed
    /// only on a loopback address.
    #[arg(long, env = "PAYSYS_GATEWAY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, env = "PAYSYS_GATEWAY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long an authorization (through the relay) and acquirer calls may take before
    /// the outcome is treated as unknown.
    #[arg(long, env = "PAYSYS_GATEWAY_ACQUIRER_TIMEOUT_MS", default_value_t = 30_000)]
    acquirer_timeout_ms: u64,
    /// How often the workers (hold expiry, resolution) run.
    #[arg(long, env = "PAYSYS_GATEWAY_WORKER_INTERVAL_MS", default_value_t = 1_000)]
    worker_interval_ms: u64,
    /// Largest request body accepted.
    #[arg(long, default_value_t = 64 * 1024)]
    max_body_bytes: usize,
    #[command(flatten)]
    transport: paysys_server::TransportFlags,
    #[command(flatten)]
    webhooks: crate::webhooks::WebhookFlags,
    /// The gateway's URL as browsers and the 3-D Secure ACS reach it (challenge links,
    /// CRes and RReq endpoints); default: the listen address.
    #[arg(long, env = "PAYSYS_GATEWAY_PUBLIC_URL")]
    public_url: Option<String>,
    /// The 3-D Secure directory server, `https://host:port` (PReq, results); default: the
    /// acquirer's URL. The AReq itself goes through the vault relay.
    #[arg(long, env = "PAYSYS_GATEWAY_DS_URL")]
    ds_url: Option<String>,
    /// How long the AReq may take before the authentication counts as timed out.
    #[arg(long, env = "PAYSYS_GATEWAY_3DS_TIMEOUT_MS", default_value_t = 10_000)]
    three_ds_timeout_ms: u64,
    /// How long a cardholder has for a 3-D Secure challenge.
    #[arg(long, env = "PAYSYS_GATEWAY_3DS_CHALLENGE_TTL_SEC", default_value_t = 600)]
    three_ds_challenge_ttl_sec: u64,
    /// The 3DS Method's budget (EMV: 10 seconds).
    #[arg(long, env = "PAYSYS_GATEWAY_3DS_METHOD_BUDGET_MS", default_value_t = 10_000)]
    three_ds_method_budget_ms: u64,
    /// `three_ds: auto` authenticates payments from this amount up in this currency
    /// (minor units), e.g. `USD=5000`; repeatable or comma-separated. The default for
    /// merchants whose own setting does not name the currency; a currency named nowhere
    /// is authenticated at every amount.
    #[arg(long, env = "PAYSYS_GATEWAY_3DS_AUTO_MIN_AMOUNT", value_name = "CUR=AMOUNT")]
    three_ds_auto_min_amount: Vec<String>,
    /// The card intake's origin (the payment widget's card frame), e.g.
    /// `https://127.0.0.1:8444`. Without it (or without --grant-key) the checkout
    /// methods answer `widget_unavailable`.
    #[arg(long, env = "PAYSYS_GATEWAY_INTAKE_URL")]
    intake_url: Option<String>,
    /// The grant signing key, `KID=PATH` (Ed25519 PKCS#8 DER, from `grant-key new`);
    /// repeatable: the last one given signs (keep the older ones' public keys at the
    /// intake until their grants have run out).
    #[arg(long, env = "PAYSYS_GATEWAY_GRANT_KEY", value_name = "KID=PATH", value_parser = parse_grant_key_arg)]
    grant_key: Vec<(String, PathBuf)>,
}

/// Run a parsed command line; the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Sign { service_id, secret, body } => {
            println!("{}", auth::sign(&service_id, &MerchantSecret::from_text(&secret), now_ms(), body.as_bytes()));
            Ok(())
        }
        Command::SecretKey { out } => write_secret_key(&out),
        Command::GrantKey { command: GrantKeyCommand::New { out } } => write_grant_key(&out),
        Command::GrantKey { command: GrantKeyCommand::Public { key: (kid, path) } } => {
            GrantSigner::from_pkcs8_file(&kid, &path)
                .map(|signer| println!("{kid} {}", signer.public_key_hex()))
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
        Command::Merchant { command: MerchantCommand::Create(args) } => block_on(create_merchant(args)),
        Command::Merchant { command: MerchantCommand::Update(args) } => block_on(update_merchant(args)),
        Command::Merchant { command: MerchantCommand::Show(args) } => block_on(show_merchant(args)),
        Command::Serve(args) => {
            init_logging();
            block_on(serve(*args))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paysys-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?.block_on(f)
}

fn write_secret_key(out: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).with_context(|| format!("creating {}", out.display()))?;
    let key = SecretKey::generate_hex();
    writeln!(file, "{}", key.as_str()).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

fn write_grant_key(out: &Path) -> anyhow::Result<()> {
    let der = zeroize::Zeroizing::new(GrantSigner::generate_pkcs8().map_err(|e| anyhow::anyhow!("{e}"))?);
    let signer = GrantSigner::from_pkcs8("new", &der).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).with_context(|| format!("creating {}", out.display()))?;
    file.write_all(&der).with_context(|| format!("writing {}", out.display()))?;
    println!("{}", signer.public_key_hex());
    Ok(())
}

async fn create_merchant(args: MerchantCreateArgs) -> anyhow::Result<()> {
    let key = SecretKey::from_file(&args.secret_key_file)?;
    let merchant_id = args.merchant_id.unwrap_or_else(ids::new_merchant_id);
    anyhow::ensure!(ids::merchant_id_valid(&merchant_id), "merchant id must be 1-64 characters of A-Za-z0-9_-");
    let three_ds_auto = args.three_ds_auto.apply(AutoSettings::default())?;
    let store = Store::open(&args.database_url).await.context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    let service_id = ids::new_service_id();
    let secret = MerchantSecret::generate();
    let record = MerchantRecord {
        merchant_id,
        service_id: service_id.clone(),
        name: args.name.clone(),
        secret_sealed: key.seal(&service_id, &secret)?,
        created_at: now_ms(),
        three_ds_auto,
        widget: args.widget.apply(WidgetSettings::default())?,
    };
    store.insert_merchant(&record).await.context("storing the merchant (is the merchant id taken?)")?;
    print_merchant(&record, Some(&secret), args.json);
    Ok(())
}

async fn update_merchant(args: MerchantUpdateArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.database_url).await.context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    let mut record =
        store.merchant(&args.merchant_id).await?.with_context(|| format!("no merchant {:?}", args.merchant_id))?;
    if let Some(name) = args.name {
        record.name = name;
    }
    record.three_ds_auto = args.three_ds_auto.apply(record.three_ds_auto)?;
    record.widget = args.widget.apply(record.widget)?;
    if args.card_testing_reset {
        record.widget.card_testing_tripped_at = None;
    }
    anyhow::ensure!(store.update_merchant(&record).await?, "no merchant {:?}", args.merchant_id);
    print_merchant(&record, None, args.json);
    Ok(())
}

async fn show_merchant(args: MerchantShowArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.database_url).await.context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    let record =
        store.merchant(&args.merchant_id).await?.with_context(|| format!("no merchant {:?}", args.merchant_id))?;
    print_merchant(&record, None, args.json);
    Ok(())
}

/// A merchant's settings on stdout; the secret only when it was just created.
fn print_merchant(record: &MerchantRecord, secret: Option<&MerchantSecret>, json: bool) {
    let settings = &record.three_ds_auto;
    if json {
        let mut v = serde_json::json!({
            "merchant_id": record.merchant_id,
            "service_id": record.service_id,
            "name": record.name,
            "three_ds_auto": settings.to_json(),
            "allowed_origins": record.widget.allowed_origins,
            "allow_checkout_framing": record.widget.allow_checkout_framing,
            "card_testing_guard": record.widget.card_testing_guard,
            "card_testing_tripped_at": record.widget.card_testing_tripped_at,
        });
        if let (Some(secret), Some(obj)) = (secret, v.as_object_mut()) {
            obj.insert("secret".into(), secret.expose_secret().into());
        }
        println!("{v}");
        return;
    }
    println!("merchant_id: {}", record.merchant_id);
    println!("service_id:  {}", record.service_id);
    println!("name:        {}", record.name);
    let proceed_on = if settings.proceed_on.is_empty() { "none".to_owned() } else { settings.proceed_on_text() };
    println!("three_ds auto proceeds without 3-D Secure on: {proceed_on}");
    let minimums: Vec<String> = settings.min_amounts.iter().map(|(c, a)| format!("{c}={a}")).collect();
    let minimums = if minimums.is_empty() { "none (the gateway's default)".to_owned() } else { minimums.join(",") };
    println!("three_ds auto minimum amounts: {minimums}");
    let widget = &record.widget;
    let origins = if widget.allowed_origins.is_empty() { "none".to_owned() } else { widget.allowed_origins.join(" ") };
    println!("widget allowed origins: {origins}");
    println!("checkout page framable by them: {}", widget.allow_checkout_framing);
    let guard = match (widget.card_testing_guard, widget.card_testing_tripped_at) {
        (false, _) => "off".to_owned(),
        (true, None) => "on".to_owned(),
        (true, Some(at)) => {
            format!("on, TRIPPED at {} (reset with --card-testing-reset)", crate::payments::rfc3339(at))
        }
    };
    println!("card-testing guard: {guard}");
    if let Some(secret) = secret {
        println!("secret:      {}", secret.expose_secret());
        println!("(the secret is shown only now; the gateway keeps it sealed under its secret key)");
    }
}

/// The widget's configuration from `--intake-url` and `--grant-key`.
fn widget_config(args: &ServeArgs, secret_key: &SecretKey) -> anyhow::Result<WidgetConfig> {
    let intake_origin = match &args.intake_url {
        Some(url) => {
            let origin = url.trim_end_matches('/');
            anyhow::ensure!(
                paysys_widget::origin::parse_origin(origin).is_some(),
                "--intake-url must be an origin (scheme://host[:port])"
            );
            Some(origin.to_owned())
        }
        None => None,
    };
    let signer = match args.grant_key.last() {
        Some((kid, path)) => {
            Some(GrantSigner::from_pkcs8_file(kid, path).map_err(|e| anyhow::anyhow!("--grant-key {kid}: {e}"))?)
        }
        None => None,
    };
    if intake_origin.is_none() || signer.is_none() {
        tracing::info!("no --intake-url or --grant-key: the payment widget is unavailable");
    }
    Ok(WidgetConfig {
        intake_origin,
        signer,
        secrets: Some(secret_key.checkout_secrets()),
        limits: CardTestingLimits::default(),
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    paysys_server::tls_files::install_crypto_provider();
    let server_tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        _ => {
            anyhow::ensure!(
                args.listen.ip().is_loopback(),
                "plain HTTP is allowed only on a loopback address; give --tls-cert and --tls-key"
            );
            None
        }
    };
    let secret_key = SecretKey::from_file(&args.secret_key_file)?;
    let webhook_config = args.webhooks.config().map_err(anyhow::Error::msg)?;
    let webhooks = crate::webhooks::Webhooks::new(webhook_config, SecretKey::from_file(&args.secret_key_file)?);
    let store = Store::open(&args.database_url).await.context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    let vault_tls = ClientTls::new(&args.vault_ca, Some((&args.vault_cert, &args.vault_key)), HttpVersion::Http1)
        .context("loading the vault client credentials")?;
    let acquirer_identity = args.acquirer_cert.as_deref().zip(args.acquirer_key.as_deref());
    let acquirer_tls = ClientTls::new(&args.acquirer_ca, acquirer_identity, HttpVersion::Http1)
        .context("loading the acquirer client credentials")?;
    let acquirer_timeout = Duration::from_millis(args.acquirer_timeout_ms);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let scheme = if server_tls.is_some() { "https" } else { "http" };
    let public_url = args.public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
    let public_url = public_url.trim_end_matches('/').to_owned();
    anyhow::ensure!(
        url::Url::parse(&public_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")),
        "--public-url must be an http(s) URL"
    );
    let widget = widget_config(&args, &secret_key)?;
    let ds_tls = ClientTls::new(&args.acquirer_ca, acquirer_identity, HttpVersion::Http1)
        .context("loading the DS client credentials")?;
    let ds_url = args.ds_url.clone().unwrap_or_else(|| args.acquirer_url.clone());
    let gateway = Arc::new(Gateway {
        store,
        webhooks,
        vault: Arc::new(VaultRelay::new(HttpsPool::new(vault_tls, &args.vault_url))),
        acquirer: Arc::new(SandboxAcquirer::new(HttpsPool::new(acquirer_tls, &args.acquirer_url), acquirer_timeout)),
        directory: Directory::new(HttpsPool::new(ds_tls, &ds_url)),
        config: GatewayConfig { acquirer_timeout, ..GatewayConfig::default() },
        three_ds: ThreeDsConfig {
            public_url,
            areq_timeout: Duration::from_millis(args.three_ds_timeout_ms),
            challenge_ttl: Duration::from_secs(args.three_ds_challenge_ttl_sec),
            method_budget: Duration::from_millis(args.three_ds_method_budget_ms),
            auto_min_amounts: AutoSettings::parse_min_amounts(&args.three_ds_auto_min_amount)
                .context("--three-ds-auto-min-amount")?,
            ..ThreeDsConfig::default()
        },
        token_bins: crate::vault::TokenBins::default(),
        widget,
    });
    tracing::info!(%addr, scheme, vault = %args.vault_url, acquirer = %args.acquirer_url, "serving");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn(crate::workers::run(
        gateway.clone(),
        Duration::from_millis(args.worker_interval_ms.max(10)),
        async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|stop| *stop).await;
        },
    ));
    let webhook_worker = tokio::spawn(crate::webhooks::worker::run(
        gateway.clone(),
        Duration::from_millis(args.worker_interval_ms.max(10)),
        {
            let mut rx = stop_tx.subscribe();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        },
    ));
    let app = Arc::new(App::new(gateway, secret_key));
    // The launcher waits for exactly this line.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "paysys-gateway listening on {scheme}://{addr}").context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    drop(stdout);
    let limits = args.transport.limits();
    crate::run_with(listener, server_tls, app, args.max_body_bytes, limits, shutdown_signal())
        .await
        .context("serving")?;
    let _ = stop_tx.send(true);
    let _ = workers.await;
    let _ = webhook_worker.await;
    tracing::info!("stopped");
    Ok(())
}
