//! The `paysys-vault` commands and their configuration (flags or environment).

use crate::api::{now_ms, Vault};
use crate::checkpoint::{verify_checkpoints, AuditEvidence, CheckpointReport, CheckpointSink, StoreEvidence};
use crate::committer::Committer;
use crate::keyring::{KeyState, Keyring};
use crate::lifecycle::{self, meta, Lifecycle, LifecycleConfig, ShareChecks};
use crate::rate_limit::{MerchantRateLimiter, RateLimit};
use crate::relay::{RelayClient, RelayConfig};
use crate::retention::SweepConfig;
use crate::server::{self, BackgroundSchedule};
use crate::store::{self, AuditEvent, StoreError};
use crate::{audit::ChainSigner, tls};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use paysys_keys::{CheckpointVerifyingKey, RootKey};
use paysys_policies::Policy;
use paysys_server::logging::init_logging;
use paysys_server::shutdown::shutdown_signal;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit code of `init` when the key store already exists (scripts treat it as "fine").
pub const EXIT_ALREADY_INITIALIZED: u8 = 3;

/// Longest a CVC may wait for its single use (PCI DSS 3.3.1: not after authorization).
const MAX_CVC_TTL_SECS: u64 = 600;

#[derive(Debug, Parser)]
#[command(name = "paysys-vault", version, about = "The PaySys card vault (PCI scope)")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the key store: root key, first KEK and DEK (only wrapped keys are stored).
    Init(InitArgs),
    /// Serve the internal API over mTLS.
    // Boxed: by far the largest variant (clippy::large_enum_variant).
    Serve(Box<ServeArgs>),
    /// Policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Custodian operations on a running vault over mTLS: unseal, seal, status.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Key lifecycle on a running vault over mTLS (officer certificate).
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// How an officer's client reaches the vault: its URL and the officer's mTLS identity.
#[derive(Debug, Args)]
pub(crate) struct OfficerArgs {
    /// The vault's URL, e.g. `https://127.0.0.1:8443`.
    #[arg(long, env = "PAYSYS_VAULT_URL")]
    pub(crate) vault_url: String,
    /// PaySys CA certificate (to verify the vault).
    #[arg(long, env = "PAYSYS_CA_CERT")]
    pub(crate) ca: PathBuf,
    /// Officer client certificate.
    #[arg(long, env = "PAYSYS_CLIENT_CERT")]
    pub(crate) cert: PathBuf,
    /// Officer client key.
    #[arg(long, env = "PAYSYS_CLIENT_KEY")]
    pub(crate) key: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum OperatorCommand {
    /// Submit one custodian share (read from the terminal without echo, or from stdin).
    Unseal(OfficerArgs),
    /// Seal the vault: every key is dropped from memory at once.
    Seal(OfficerArgs),
    /// Sealed or not, unseal progress and threshold.
    Status(OfficerArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Every key version: KCV, state, age vs cryptoperiod, records, seals vs the AES-GCM limit.
    Status {
        #[command(flatten)]
        officer: OfficerArgs,
        /// Print the vault's JSON as is.
        #[arg(long)]
        json: bool,
    },
    /// Request a new KEK (DEKs are re-wrapped) or a new DEK (records are re-encrypted).
    Rotate {
        /// `kek` or `dek`.
        #[arg(value_parser = ["kek", "dek"])]
        kind: String,
        #[command(flatten)]
        officer: OfficerArgs,
    },
    /// Approve another officer's pending request; it executes at once.
    Approve {
        /// The request id (`kreq_…`).
        id: String,
        #[command(flatten)]
        officer: OfficerArgs,
    },
    /// Request retirement of a version nothing depends on any more.
    Retire {
        version: i64,
        /// `dek` (default) or `kek`.
        #[arg(long, default_value = "dek", value_parser = ["kek", "dek"])]
        kind: String,
        #[command(flatten)]
        officer: OfficerArgs,
    },
    /// Request destruction of a version's wrapped material (crypto-shredding).
    Destroy {
        version: i64,
        /// `dek` (default) or `kek`.
        #[arg(long, default_value = "dek", value_parser = ["kek", "dek"])]
        kind: String,
        /// Destroy even though records depend on it (they become unrecoverable); needs approval.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        officer: OfficerArgs,
    },
    /// Key requests and their states.
    Requests(OfficerArgs),
    /// Re-encryption jobs; `--watch` shows a progress bar with count, rate and ETA.
    Jobs {
        #[command(flatten)]
        officer: OfficerArgs,
        #[arg(long)]
        watch: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a policy file and print the effective permission matrix.
    Check {
        /// The policy file (TOML).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify the HMAC chain: OK, or the first broken link; with `--checkpoint`, also
    /// compare signed checkpoints with the database (truncation, rollback, forged lines).
    Verify {
        #[command(flatten)]
        source: AuditSource,
        /// A checkpoint file (`--audit-checkpoint-file` of `serve`, or lines saved from
        /// `audit checkpoint`); repeatable.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// The vault's checkpoint public key (64 hex, from `GET /v1/sys/status`), if you
        /// keep it yourself; else it is taken from the vault's status (or derived from the
        /// dev root key file).
        #[arg(long, requires = "checkpoints")]
        public_key: Option<String>,
    },
    /// Sign the audit chain head now: the vault appends the checkpoint to its checkpoint
    /// file and it is printed as one JSON line (officer API over mTLS).
    Checkpoint(OfficerArgs),
    /// Write audit records as JSON lines (for a SIEM).
    Export {
        #[command(flatten)]
        source: AuditSource,
        /// Only records at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
    },
}

/// Where the audit log is read from: the officer API over mTLS (production), or the
/// database directly with the dev root key file (development only).
#[derive(Debug, Args)]
pub(crate) struct AuditSource {
    /// The vault's URL, e.g. `https://127.0.0.1:8443` (officer API).
    #[arg(long, env = "PAYSYS_VAULT_URL", conflicts_with = "database_url")]
    vault_url: Option<String>,
    /// PaySys CA certificate (to verify the vault).
    #[arg(long, env = "PAYSYS_CA_CERT", requires = "vault_url")]
    ca: Option<PathBuf>,
    /// Officer client certificate.
    #[arg(long, env = "PAYSYS_CLIENT_CERT", requires = "vault_url")]
    cert: Option<PathBuf>,
    /// Officer client key.
    #[arg(long, env = "PAYSYS_CLIENT_KEY", requires = "vault_url")]
    key: Option<PathBuf>,
    /// DEVELOPMENT ONLY: read the database directly…
    #[arg(long, requires = "dev_root_key_file")]
    database_url: Option<String>,
    /// …deriving the audit key from the dev root key file.
    #[arg(long)]
    dev_root_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct InitArgs {
    /// `sqlite:PATH` (default backend) or `postgres://…`.
    #[arg(long, env = "PAYSYS_VAULT_DATABASE_URL")]
    database_url: String,
    /// Split the root key into this many custodian shares (N)…
    #[arg(long, requires = "threshold", conflicts_with = "dev_root_key_file")]
    shares: Option<u8>,
    /// …any this many of which (M, at least 2) unseal the vault.
    #[arg(long, requires = "shares")]
    threshold: Option<u8>,
    /// DEVELOPMENT ONLY: write the root key to this file (mode 0600) instead of shares.
    #[arg(long, env = "PAYSYS_VAULT_DEV_ROOT_KEY_FILE")]
    dev_root_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[arg(long, env = "PAYSYS_VAULT_DATABASE_URL")]
    database_url: String,
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, env = "PAYSYS_VAULT_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    #[arg(long, env = "PAYSYS_VAULT_TLS_CERT")]
    tls_cert: PathBuf,
    #[arg(long, env = "PAYSYS_VAULT_TLS_KEY")]
    tls_key: PathBuf,
    /// CA whose client certificates are accepted (the PaySys CA).
    #[arg(long, env = "PAYSYS_VAULT_CLIENT_CA")]
    client_ca: PathBuf,
    /// CRL(s) of the client CA (PEM): revoked client certificates fail the handshake,
    /// and open connections using them are closed. Reloaded when the file changes
    /// (checked every 2 s) and on SIGHUP; a CRL that does not load keeps the previous
    /// one. Must load at start.
    #[arg(long, env = "PAYSYS_VAULT_CLIENT_CRL")]
    client_crl: Option<PathBuf>,
    #[command(flatten)]
    transport: paysys_server::TransportFlags,
    /// Policy file (TOML). Required unless `--dev`, which uses the built-in dev policy.
    #[arg(long, env = "PAYSYS_VAULT_POLICY")]
    policy: Option<PathBuf>,
    /// Development mode: allows the dev root key file. Never in production.
    #[arg(long)]
    dev: bool,
    /// DEVELOPMENT ONLY (needs `--dev`): unseal at start from this root key file.
    #[arg(long, env = "PAYSYS_VAULT_DEV_ROOT_KEY_FILE")]
    dev_root_key_file: Option<PathBuf>,
    /// How long a CVC is kept for its single use, at most 600 seconds.
    #[arg(long, default_value_t = MAX_CVC_TTL_SECS)]
    cvc_ttl_secs: u64,
    /// How often expired CVCs are swept (and spent checkout grants an hour past their
    /// expiry).
    #[arg(long, default_value_t = 30)]
    cvc_sweep_secs: u64,
    /// How often cards whose token expired (`ttl_sec`) are deleted. They read as not
    /// found from the moment they expire; this is how long their ciphertext may linger.
    #[arg(long, default_value_t = 60)]
    token_sweep_secs: u64,
    /// Cards deleted per sweep transaction (one audit record each).
    #[arg(long, default_value_t = 500)]
    token_sweep_batch: u32,
    /// `tokens.remove_for_merchant` (the gateway's card.remove): sustained removals per
    /// second per merchant, per vault process.
    #[arg(long, default_value_t = 2.0)]
    removal_rate_per_sec: f64,
    /// `tokens.remove_for_merchant`: removals a merchant may make at once after a quiet spell.
    #[arg(long, default_value_t = 100)]
    removal_burst: u32,
    /// Largest request body accepted.
    #[arg(long, default_value_t = 16 * 1024)]
    max_body_bytes: usize,
    /// PEM bundle of the CA(s) relay destinations' certificates must chain to (the only
    /// trust anchors of the relay). Without it every relay answers `relay_unreachable`.
    #[arg(long, env = "PAYSYS_VAULT_RELAY_CA")]
    relay_ca: Option<PathBuf>,
    /// Client certificate the relay presents to destinations (with --relay-client-key).
    #[arg(long, env = "PAYSYS_VAULT_RELAY_CLIENT_CERT", requires = "relay_client_key")]
    relay_client_cert: Option<PathBuf>,
    /// Key of --relay-client-cert.
    #[arg(long, env = "PAYSYS_VAULT_RELAY_CLIENT_KEY", requires = "relay_client_cert")]
    relay_client_key: Option<PathBuf>,
    /// Longest a relay waits for its destination; a request's `timeout_ms` is capped to
    /// it, and it is the default.
    #[arg(long, default_value_t = 30_000)]
    relay_timeout_max_ms: u64,
    /// Largest response body accepted from a relay destination.
    #[arg(long, default_value_t = 1024 * 1024)]
    relay_max_response_bytes: usize,
    /// Send relay destination NAME to URL (`https://host:port`) instead of the policy's
    /// URL; repeatable. Paths and fields stay as the policy says. For launchers that
    /// start the sandbox on a port chosen at run time.
    #[arg(long = "destination-url", value_name = "NAME=URL", value_parser = parse_destination_url)]
    destination_urls: Vec<(String, String)>,
    /// Custodian shares given longer ago than this are discarded (unseal starts over).
    #[arg(long, default_value_t = 600)]
    unseal_timeout_secs: u64,
    /// KEK cryptoperiod: `GET /v1/keys` flags older KEKs as past due.
    #[arg(long, default_value_t = 365)]
    kek_cryptoperiod_days: u32,
    /// DEK cryptoperiod: `GET /v1/keys` flags older DEKs as past due.
    #[arg(long, default_value_t = 90)]
    dek_cryptoperiod_days: u32,
    /// How long a key request waits for a second officer's approval.
    #[arg(long, default_value_t = 24 * 3600)]
    key_request_ttl_secs: u64,
    /// Records re-encrypted per batch (one transaction each).
    #[arg(long, default_value_t = 500)]
    reencrypt_batch: u32,
    /// Pause between re-encryption batches, so tokenization keeps its throughput.
    #[arg(long, default_value_t = 10)]
    reencrypt_pause_ms: u64,
    /// How often the keyring is checked against the store (key changes by other replicas).
    #[arg(long, default_value_t = 2)]
    key_sync_secs: u64,
    /// Append a signed checkpoint of the audit chain head to this file (one JSON line each,
    /// opened with O_APPEND; ship it to a SIEM): every `--audit-checkpoint-interval-secs`
    /// when the head has moved, on `audit checkpoint`, and at shutdown. Without it only
    /// on-demand checkpoints exist.
    #[arg(long, env = "PAYSYS_VAULT_AUDIT_CHECKPOINT_FILE")]
    audit_checkpoint_file: Option<PathBuf>,
    /// How often the chain head is checkpointed (only when it has moved).
    #[arg(long, default_value_t = 60)]
    audit_checkpoint_interval_secs: u64,
}

fn parse_destination_url(text: &str) -> Result<(String, String), String> {
    let (name, url) = text.split_once('=').ok_or_else(|| "expected NAME=URL".to_owned())?;
    if name.is_empty() || url.is_empty() {
        return Err("expected NAME=URL".to_owned());
    }
    Ok((name.to_owned(), url.to_owned()))
}

/// Run a parsed command line; the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paysys-vault: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Init(args) => init(args).await,
            Command::Serve(args) => serve(*args).await.map(|()| ExitCode::SUCCESS),
            Command::Policy(PolicyCommand::Check { file }) => policy_check(&file),
            Command::Audit(AuditCommand::Verify { source, checkpoints, public_key }) => {
                audit_verify(source, checkpoints, public_key).await
            }
            Command::Audit(AuditCommand::Checkpoint(officer)) => crate::officer_cli::audit_checkpoint(officer).await,
            Command::Audit(AuditCommand::Export { source, since }) => audit_export(source, since).await,
            Command::Operator(command) => crate::officer_cli::operator(command).await,
            Command::Keys(command) => crate::officer_cli::keys(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("paysys-vault: {e:#}");
            if e.downcast_ref::<DevRefused>().is_some() {
                return ExitCode::from(EXIT_DEV_REFUSED);
            }
            ExitCode::FAILURE
        }
    }
}

const DEV_BANNER: &str = "\
*****************************************************************
*  DEVELOPMENT MODE: the vault's root key is in a file on disk.  *
*  Anyone who can read that file can decrypt every card.         *
*  Never use --dev or a dev root key file in production.         *
*****************************************************************";

async fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let custodians = match (args.shares, args.threshold, &args.dev_root_key_file) {
        (Some(n), Some(m), None) => Some((n, m)),
        (None, None, Some(_)) => None,
        _ => anyhow::bail!("give --shares N --threshold M (custodians), or --dev-root-key-file (development only)"),
    };
    let store = store::open(&args.database_url).await.context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    if !store.load_keys().await?.is_empty() {
        eprintln!("paysys-vault: already initialized");
        return Ok(ExitCode::from(EXIT_ALREADY_INITIALIZED));
    }
    let (root, stored) = Keyring::generate(now_ms()).context("generating keys")?;
    // Split before anything is stored: an impossible M/N fails here and leaves no vault behind.
    let shares = match custodians {
        Some((n, m)) => Some(root.split(m, n).context("--threshold must be at least 2 and at most --shares")?),
        None => None,
    };
    if let Some(path) = &args.dev_root_key_file {
        write_dev_key_file(path, &root)?;
    }
    let remove_key_file = || {
        if let Some(path) = &args.dev_root_key_file {
            let _ = std::fs::remove_file(path);
        }
    };
    let mut meta = vec![(meta::ROOT_KCV.to_owned(), root.kcv().to_hex())];
    match (custodians, &shares) {
        (Some((n, m)), Some(shares)) => {
            meta.push((meta::UNSEAL_MODE.to_owned(), meta::MODE_CUSTODIANS.to_owned()));
            meta.push((meta::UNSEAL_THRESHOLD.to_owned(), m.to_string()));
            meta.push((meta::UNSEAL_SHARES.to_owned(), n.to_string()));
            meta.push((meta::SHARE_COMMITMENTS.to_owned(), ShareChecks::commitments_entry(shares)));
        }
        _ => meta.push((meta::UNSEAL_MODE.to_owned(), meta::MODE_DEV.to_owned())),
    }
    let audit_key = root.derive_audit_key().context("deriving the audit key")?;
    let event = AuditEvent {
        at: now_ms(),
        request_id: "init".into(),
        principal: "local:paysys-vault-init".into(),
        operation: "sys.init".into(),
        merchant_id: None,
        token: None,
        decision: "allow".into(),
        outcome: "ok".into(),
        key_version: Some(1),
    };
    match store.initialize(&stored, &meta, &event, &ChainSigner(&audit_key)).await {
        Ok(()) => {}
        Err(StoreError::AlreadyInitialized) => {
            // Another init won the race; our key file or shares open nothing.
            remove_key_file();
            eprintln!("paysys-vault: already initialized");
            return Ok(ExitCode::from(EXIT_ALREADY_INITIALIZED));
        }
        Err(e) => {
            remove_key_file();
            return Err(e).context("storing the wrapped keys");
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "initialized: root key KCV {}, KEK v1 KCV {}, DEK v1 KCV {}",
        root.kcv(),
        stored[0].kcv,
        stored[1].kcv
    )?;
    match (&shares, &args.dev_root_key_file) {
        (Some(shares), _) => {
            let need = shares.first().map(|s| s.threshold()).unwrap_or_default();
            writeln!(out, "custodian shares: any {need} of these {} unseal the vault.", shares.len())?;
            writeln!(out, "Each share is shown only this once: hand each to its own custodian, keep none.")?;
            for share in shares {
                let text = share.to_text();
                writeln!(
                    out,
                    "share {} of {} (check value {}): {}",
                    share.index(),
                    shares.len(),
                    share.check_value(),
                    text.as_str()
                )?;
            }
        }
        (None, Some(path)) => {
            eprintln!("{DEV_BANNER}");
            writeln!(out, "dev root key written to {}", path.display())?;
        }
        (None, None) => {}
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn write_dev_key_file(path: &Path, root: &RootKey) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the dev root key file {} (it must not exist yet)", path.display()))?;
    let hex = root.to_dev_key_hex();
    file.write_all(hex.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

fn load_policy(args: &ServeArgs) -> anyhow::Result<Policy> {
    let mut policy = load_policy_file(args)?;
    for (name, url) in &args.destination_urls {
        policy =
            policy.with_destination_url(name, url).map_err(|e| anyhow::anyhow!("--destination-url {name}: {e}"))?;
        tracing::info!(destination = %name, %url, "relay destination address overridden");
    }
    Ok(policy)
}

fn relay_client(args: &ServeArgs) -> anyhow::Result<Option<RelayClient>> {
    let Some(ca) = &args.relay_ca else {
        tracing::info!("no --relay-ca: the relay is disabled");
        return Ok(None);
    };
    anyhow::ensure!(args.relay_timeout_max_ms > 0, "--relay-timeout-max-ms must be at least 1");
    let config = RelayConfig {
        ca: ca.clone(),
        client_identity: args.relay_client_cert.clone().zip(args.relay_client_key.clone()),
        timeout_max: Duration::from_millis(args.relay_timeout_max_ms),
        max_response_bytes: args.relay_max_response_bytes,
    };
    Ok(Some(RelayClient::new(&config).context("setting up the relay client")?))
}

fn load_policy_file(args: &ServeArgs) -> anyhow::Result<Policy> {
    match &args.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading policy {}", path.display()))?;
            Policy::from_toml(&text).map_err(|e| anyhow::anyhow!("policy {}: {e}", path.display()))
        }
        None if args.dev => {
            Policy::from_toml(paysys_policies::DEV_POLICY).map_err(|e| anyhow::anyhow!("built-in dev policy: {e}"))
        }
        None => anyhow::bail!("a policy file is required (--policy); only --dev has a built-in policy"),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.dev_root_key_file.is_none() || args.dev,
        "--dev-root-key-file is refused without --dev: production vaults are unsealed by custodians"
    );
    anyhow::ensure!(args.cvc_ttl_secs <= MAX_CVC_TTL_SECS, "--cvc-ttl-secs may be at most {MAX_CVC_TTL_SECS}");
    anyhow::ensure!(
        args.removal_rate_per_sec.is_finite() && args.removal_rate_per_sec >= 0.0,
        "--removal-rate-per-sec must be a number of at least 0"
    );
    let policy = load_policy(&args)?;
    let relay = relay_client(&args)?;
    let tls = tls::server_config(&args.tls_cert, &args.tls_key, &args.client_ca, args.client_crl.as_deref())?;
    let vault = open_vault(&args, policy, relay).await?;
    server::spawn_background_tasks(&vault, &background_schedule(&args));

    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // The one line on stdout: launchers and tests wait for it.
    println!("paysys-vault listening on https://{addr}");
    std::io::stdout().flush()?;
    server::run(listener, tls, vault, args.max_body_bytes, args.transport.limits(), shutdown_signal()).await?;
    tracing::info!("shut down");
    Ok(())
}

/// The vault `serve` runs: the database opened (after the unseal-mode check) and
/// migrated, unsealed at once from the dev root key file if one is given, the
/// checkpoint file opened, the committer started.
async fn open_vault(args: &ServeArgs, policy: Policy, relay: Option<RelayClient>) -> anyhow::Result<Arc<Vault>> {
    let store = store::open(&args.database_url).await.context("opening the database")?;
    // Before anything is written (migrations included): the mode the vault was
    // initialized in decides whether this command line may serve it.
    check_unseal_mode(store.as_ref(), args).await?;
    store.migrate().await.context("migrating the database")?;

    let keys = Arc::new(KeyState::default());
    if let Some(path) = &args.dev_root_key_file {
        eprintln!("{DEV_BANNER}");
        let hex = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        );
        let root = RootKey::from_dev_key_hex(&hex).context("the dev root key file is malformed")?;
        let keyring = Keyring::unseal(root, &store.load_keys().await?).context("unsealing with the dev root key")?;
        keys.install(keyring);
        tracing::warn!("vault unsealed from the dev root key file");
    } else {
        tracing::info!("vault started sealed");
    }

    let checkpoints = Arc::new(
        CheckpointSink::open(args.audit_checkpoint_file.as_deref())
            .with_context(|| format!("opening the audit checkpoint file {:?}", args.audit_checkpoint_file))?,
    );
    let committer = Committer::start(store.clone(), keys.clone());
    let vault = Arc::new(Vault {
        store,
        keys,
        committer,
        policy: Arc::new(policy),
        cvc_ttl_ms: i64::try_from(args.cvc_ttl_secs * 1000).unwrap_or(600_000),
        relay,
        lifecycle: Arc::new(Lifecycle::new(lifecycle_config(args))),
        removal_limit: MerchantRateLimiter::new(RateLimit {
            per_second: args.removal_rate_per_sec,
            burst: args.removal_burst,
        }),
        checkpoints,
    });
    if !vault.keys.is_sealed() {
        // Unsealed from the dev key file: a vault initialized before key format 2 moves to it now.
        if let Err(e) = lifecycle::migrate_key_format(&vault).await {
            tracing::error!(code = e.code(), "key format migration failed; the vault serves with format-1 keys");
        }
    }
    Ok(vault)
}

fn background_schedule(args: &ServeArgs) -> BackgroundSchedule {
    BackgroundSchedule {
        cvc_sweep: Duration::from_secs(args.cvc_sweep_secs.max(1)),
        token_sweep: SweepConfig {
            interval: Duration::from_secs(args.token_sweep_secs.max(1)),
            batch: i64::from(args.token_sweep_batch.max(1)),
        },
        key_sync: Duration::from_secs(args.key_sync_secs.max(1)),
        audit_checkpoint: Duration::from_secs(args.audit_checkpoint_interval_secs.max(1)),
    }
}

/// Exit code of `serve` when `--dev` meets a vault initialized with custodian shares.
pub const EXIT_DEV_REFUSED: u8 = 4;

/// Refuses `--dev` on a vault initialized with custodian shares. `--dev` turns on the
/// `{"key": hex}` unseal, which skips the M-of-N ceremony, and (without `--policy`) the
/// built-in dev policy: one flag would make a production vault a development one.
///
/// The reverse, a dev-initialized vault served without `--dev`, is not a hole: it has no
/// shares and the key unseal answers `dev_mode_required`, so it only stays sealed. It is
/// served, with a warning that says so.
///
/// Reads `vault_meta` before any migration runs, so a refusal changes nothing. A
/// database without it (new, or from before the table existed) has nothing to protect yet.
async fn check_unseal_mode(store: &dyn store::Store, args: &ServeArgs) -> anyhow::Result<()> {
    let Ok(entries) = store.meta().await else { return Ok(()) };
    let mode = entries.iter().find(|(name, _)| name == meta::UNSEAL_MODE).map(|(_, value)| value.as_str());
    match mode {
        Some(meta::MODE_CUSTODIANS) if args.dev => Err(DevRefused.into()),
        Some(meta::MODE_DEV) if !args.dev => {
            tracing::warn!(
                "this vault was initialized in dev mode (root key in a file): without --dev it cannot be unsealed"
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `serve --dev` on a vault initialized with custodian shares.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing --dev: this vault was initialized with custodian shares; serve it without --dev (and with --policy), \
     and unseal it with its custodians' shares. Nothing was changed."
)]
pub struct DevRefused;

fn lifecycle_config(args: &ServeArgs) -> LifecycleConfig {
    LifecycleConfig {
        dev: args.dev,
        unseal_timeout: Duration::from_secs(args.unseal_timeout_secs.max(1)),
        kek_cryptoperiod_days: args.kek_cryptoperiod_days,
        dek_cryptoperiod_days: args.dek_cryptoperiod_days,
        request_ttl_ms: i64::try_from(args.key_request_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        reencrypt_batch: i64::from(args.reencrypt_batch.max(1)),
        reencrypt_pause: Duration::from_millis(args.reencrypt_pause_ms),
    }
}

fn policy_check(file: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match Policy::from_toml(&text) {
        Ok(policy) => {
            println!("{}: OK", file.display());
            println!();
            println!("{}", policy.permission_matrix());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            Ok(ExitCode::from(2))
        }
    }
}

/// An officer connection to the vault's API.
async fn officer_connection(source: &AuditSource) -> anyhow::Result<paysys_vault_client::VaultConnection> {
    let (Some(url), Some(ca), Some(cert), Some(key)) = (&source.vault_url, &source.ca, &source.cert, &source.key)
    else {
        anyhow::bail!("give --vault-url with --ca, --cert and --key (or, in development, --database-url with --dev-root-key-file)");
    };
    let tls = paysys_vault_client::ClientTls::new(ca, Some((cert, key)), paysys_vault_client::HttpVersion::Http1)?;
    Ok(tls.connect(url).await?)
}

/// Open the database and read the dev root key file (the audit and checkpoint keys are
/// derived from it).
async fn offline_audit(source: &AuditSource) -> anyhow::Result<Option<(Arc<dyn store::Store>, RootKey)>> {
    let (Some(url), Some(key_file)) = (&source.database_url, &source.dev_root_key_file) else {
        return Ok(None);
    };
    let hex = zeroize::Zeroizing::new(
        std::fs::read_to_string(key_file).with_context(|| format!("reading {}", key_file.display()))?,
    );
    let root = RootKey::from_dev_key_hex(&hex).context("the dev root key file is malformed")?;
    let store = store::open(url).await.context("opening the database")?;
    Ok(Some((store, root)))
}

/// Every line of the checkpoint files, named `FILE:LINE`.
fn read_checkpoint_lines(files: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    let mut lines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for (n, line) in text.lines().enumerate() {
            lines.push((format!("{}:{}", file.display(), n + 1), line.to_owned()));
        }
    }
    Ok(lines)
}

/// [`AuditEvidence`] over the officer API (`GET /v1/audit/records`, `GET /v1/audit/checkpoints`).
struct ApiEvidence(paysys_vault_client::VaultConnection);

impl std::fmt::Debug for ApiEvidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiEvidence")
    }
}

impl ApiEvidence {
    /// `(seq, hex field)` of each element of `list` in the answer to `GET path`.
    async fn seq_and_mac(&mut self, path: &str, list: &str, field: &str) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
        let response = self.0.call("GET", path, None).await?;
        anyhow::ensure!(response.status == 200, "the vault answered {}: {}", response.status, response.body);
        let mut out = Vec::new();
        for item in response.body[list].as_array().into_iter().flatten() {
            let seq = item["seq"].as_i64().context("a row without seq")?;
            let mac = hex::decode(item[field].as_str().unwrap_or_default()).context("a MAC that is not hex")?;
            out.push((seq, mac));
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl AuditEvidence for ApiEvidence {
    async fn record_macs(&mut self, after_seq: i64, limit: i64) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
        self.seq_and_mac(&format!("/v1/audit/records?after_seq={after_seq}&limit={limit}"), "records", "mac").await
    }

    async fn remembered_checkpoints(&mut self, after_seq: i64, limit: i64) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
        let path = format!("/v1/audit/checkpoints?after_seq={after_seq}&limit={limit}");
        self.seq_and_mac(&path, "checkpoints", "head_mac").await
    }
}

fn parse_public_key(text: &str) -> anyhow::Result<CheckpointVerifyingKey> {
    CheckpointVerifyingKey::from_hex(text).map_err(|_| anyhow::anyhow!("--public-key must be 64 hex characters"))
}

async fn audit_verify(
    source: AuditSource,
    checkpoint_files: Vec<PathBuf>,
    public_key: Option<String>,
) -> anyhow::Result<ExitCode> {
    let pinned = public_key.as_deref().map(parse_public_key).transpose()?;
    let lines = read_checkpoint_lines(&checkpoint_files)?;
    let (report, checkpoints) = if let Some((store, root)) = offline_audit(&source).await? {
        let chain = crate::audit::verify_chain(store.as_ref(), &root.derive_audit_key()?).await?;
        let checkpoints = if checkpoint_files.is_empty() {
            None
        } else {
            let derived = root.derive_checkpoint_key()?.verifying_key().clone();
            if let Some(pinned) = &pinned {
                anyhow::ensure!(
                    pinned == &derived,
                    "--public-key is not this vault's checkpoint key (the root key gives {})",
                    derived.key_id()
                );
            }
            let mut evidence = StoreEvidence(store.as_ref());
            Some(verify_checkpoints(&lines, &derived, chain.head_seq, &mut evidence).await?)
        };
        (serde_json::to_value(chain)?, checkpoints)
    } else {
        let mut conn = officer_connection(&source).await?;
        let response = conn.call("GET", "/v1/audit/verify", None).await?;
        anyhow::ensure!(response.status == 200, "the vault answered {}: {}", response.status, response.body);
        let chain = response.body;
        let checkpoints = if checkpoint_files.is_empty() {
            None
        } else {
            let trusted = match pinned {
                Some(key) => key,
                None => {
                    let status = conn.call("GET", "/v1/sys/status", None).await?;
                    anyhow::ensure!(
                        status.status == 200,
                        "reading the vault's checkpoint key from /v1/sys/status failed ({}): give --public-key",
                        status.status
                    );
                    parse_public_key(status.body["audit_checkpoint_key"]["public_key"].as_str().unwrap_or_default())
                        .context("the vault's status has no checkpoint key")?
                }
            };
            let head_seq = chain["head_seq"].as_i64().context("the vault's verify report has no head_seq")?;
            let mut evidence = ApiEvidence(conn);
            Some(verify_checkpoints(&lines, &trusted, head_seq, &mut evidence).await?)
        };
        (chain, checkpoints)
    };
    let ok = report.get("ok").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let records = report.get("records").cloned().unwrap_or_default();
    if ok {
        println!("audit chain OK: {records} records");
    } else {
        println!("audit chain BROKEN after verifying {records} records: first break {}", report["first_break"]);
    }
    let findings = checkpoints.as_ref().map_or(0, print_checkpoint_report);
    Ok(if ok && findings == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Most refused lines printed one by one; the rest are counted.
const MAX_PRINTED_FINDINGS: usize = 20;

/// Print the checkpoint comparison; the number of findings.
fn print_checkpoint_report(report: &CheckpointReport) -> usize {
    let newest = match &report.newest_matched {
        Some((seq, at)) => format!("; newest matching: seq {seq}, signed {at}"),
        None => String::new(),
    };
    println!(
        "checkpoints: {} lines, {} signed by this vault, {} match the database{newest}",
        report.lines, report.valid, report.matched
    );
    if report.findings.is_empty() {
        if report.valid == 0 {
            println!("checkpoints: none to compare (no valid line)");
        } else {
            println!("checkpoints OK");
        }
    }
    for finding in report.findings.iter().take(MAX_PRINTED_FINDINGS) {
        println!("FINDING {} at {}: {}", finding.code, finding.at_line, finding.message);
    }
    if report.findings.len() > MAX_PRINTED_FINDINGS {
        println!("… and {} more findings", report.findings.len() - MAX_PRINTED_FINDINGS);
    }
    report.findings.len()
}

async fn audit_export(source: AuditSource, since: Option<String>) -> anyhow::Result<ExitCode> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if let Some((store, _root)) = offline_audit(&source).await? {
        let since_ms = match &since {
            Some(t) => parse_rfc3339_ms(t)?,
            None => i64::MIN,
        };
        let mut after = 0;
        loop {
            let page = store.audit_records(after, 5_000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in page.iter().filter(|r| r.event.at >= since_ms) {
                writeln!(out, "{}", crate::audit::record_json(r))?;
            }
        }
    } else {
        if let Some(t) = &since {
            parse_rfc3339_ms(t)?;
        }
        let mut conn = officer_connection(&source).await?;
        let mut after = 0i64;
        loop {
            let mut path = format!("/v1/audit/records?after_seq={after}&limit=5000");
            if let Some(t) = &since {
                path.push_str("&since=");
                path.push_str(&t.replace('+', "%2B").replace(':', "%3A"));
            }
            let response = conn.call("GET", &path, None).await?;
            anyhow::ensure!(response.status == 200, "the vault answered {}: {}", response.status, response.body);
            for r in response.body["records"].as_array().into_iter().flatten() {
                writeln!(out, "{r}")?;
            }
            match response.body["next_after_seq"].as_i64() {
                Some(next) => after = next,
                None => break,
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn parse_rfc3339_ms(text: &str) -> anyhow::Result<i64> {
    paysys_server::clock::parse_rfc3339_ms(text)
        .with_context(|| format!("--since {text}: expected an RFC 3339 time such as 2026-11-28T00:00:00Z"))
}
