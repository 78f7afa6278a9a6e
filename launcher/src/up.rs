//! `paysys up`: the whole stack on one machine, in development mode.
//!
//! 1. the dev PKI in `DIR/pki` ([`init_dev_pki`]: created once, then reused);
//! 2. `DIR/policy.toml`, the reviewed dev policy, unless one is there already;
//! 3. `paysys-vault init` with a dev root key file (`DIR/vault-root.key`); a vault that
//!    is already initialized is reused;
//! 4. `paysys-vault serve`, unsealed from that file, as a child process from its own
//!    binary, checking client certificates against the dev CRL (`--client-crl
//!    DIR/pki/crl.pem`, which `paysys pki revoke NAME` extends) and appending signed audit
//!    checkpoints to `DIR/vault-audit-checkpoints.jsonl`; its logs are forwarded with a
//!    `[vault]` prefix;
//! 5. the card intake (`paysys-intake`, default `https://127.0.0.1:8444`), trusting the
//!    gateway's grant key (`DIR/grant-keys/g1.pub`, made once with its private half
//!    `g1.pk8`) and tokenizing at the vault as `spiffe://paysys/intake`; then the
//!    gateway, signing grants with `g1.pk8` and framing the intake's card form;
//! 6. `DIR/stack.json` once every service is listening;
//! 7. in the foreground until Ctrl-C, SIGTERM or SIGHUP, or until a service dies; then
//!    the services are stopped with SIGTERM and `stack.json` is removed.
//!
//! Binaries are looked up next to the `paysys` executable, or in `PAYSYS_BIN_DIR`.

use crate::files::{self, PUBLIC};
use crate::grant_keys::init_dev_grant_key;
use crate::pki::{self, init_dev_pki, DEFAULT_MERCHANT_ID};
use crate::services::{ServiceCommand, ServiceProcess};
use crate::stack::{DevMerchant, GatewayService, IntakeService, SandboxService, Stack, VaultService};
use anyhow::{bail, ensure, Context};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The vault's binary.
pub const VAULT_BINARY: &str = "paysys-vault";
/// The sandbox card network's binary.
pub const SANDBOX_BINARY: &str = "paysys-sandbox";
/// The gateway's binary.
pub const GATEWAY_BINARY: &str = "paysys-gateway";
/// The card intake's binary.
pub const INTAKE_BINARY: &str = "paysys-intake";
/// Port of the card intake unless told otherwise.
pub const DEFAULT_INTAKE_PORT: u16 = 8444;
/// Port of the sandbox (acquirer) unless told otherwise; the dev policy's destinations
/// name it too.
pub const DEFAULT_SANDBOX_PORT: u16 = 9443;
/// Port of the gateway's merchant API unless told otherwise.
pub const DEFAULT_GATEWAY_PORT: u16 = 8080;
/// The gateway's key for sealing merchant secrets, in the stack's directory.
pub const GATEWAY_SECRET_KEY_FILE: &str = "gateway-secret.key";
/// The dev merchant's gateway credentials, in the stack's directory (DEV ONLY).
pub const DEV_MERCHANT_FILE: &str = "dev-merchant.json";
/// The relay destinations of the dev policy, all served by the sandbox.
const SANDBOX_DESTINATIONS: &[&str] = &["sandbox_acquirer", "sandbox_ds"];
/// Directory of the stack unless told otherwise, relative to the working directory.
pub const DEFAULT_DIR: &str = ".paysys";
/// Port of the vault's mTLS API unless told otherwise.
pub const DEFAULT_VAULT_PORT: u16 = 8443;
/// The dev root key file, in the stack's directory.
pub const DEV_ROOT_KEY_FILE: &str = "vault-root.key";
/// The vault's signed audit checkpoints (one JSON line each), in the stack's directory.
pub const AUDIT_CHECKPOINT_FILE: &str = "vault-audit-checkpoints.jsonl";
/// The policy file, in the stack's directory.
pub const POLICY_FILE: &str = "policy.toml";
/// Exit code of `paysys-vault init` when the key store already exists.
const VAULT_EXIT_ALREADY_INITIALIZED: i32 = 3;

/// What `paysys up` starts, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpOptions {
    /// The stack's directory: PKI, policy, database, root key, `stack.json`.
    pub dir: PathBuf,
    /// The merchant whose client certificate is issued.
    pub merchant_id: String,
    /// Port of the vault's mTLS API on 127.0.0.1; 0 picks a free one.
    pub vault_port: u16,
    /// The vault's database; `None` is `sqlite:DIR/vault.db`.
    pub vault_database_url: Option<String>,
    /// Port of the sandbox on 127.0.0.1; 0 picks a free one.
    pub sandbox_port: u16,
    /// Port of the gateway on 127.0.0.1; 0 picks a free one.
    pub gateway_port: u16,
    /// Port of the card intake on 127.0.0.1; 0 picks a free one.
    pub intake_port: u16,
    /// The gateway's database; `None` is `sqlite:DIR/gateway.db`.
    pub gateway_database_url: Option<String>,
    /// Where the service binaries are; `None` is next to the running executable.
    pub bin_dir: Option<PathBuf>,
    /// A webhook endpoint to register for the dev merchant ([`crate::dev_webhook`]).
    pub webhook_url: Option<String>,
}

impl UpOptions {
    /// The defaults, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        UpOptions {
            dir: dir.into(),
            merchant_id: DEFAULT_MERCHANT_ID.to_owned(),
            vault_port: DEFAULT_VAULT_PORT,
            vault_database_url: None,
            sandbox_port: DEFAULT_SANDBOX_PORT,
            gateway_port: DEFAULT_GATEWAY_PORT,
            intake_port: DEFAULT_INTAKE_PORT,
            gateway_database_url: None,
            bin_dir: None,
            webhook_url: None,
        }
    }
}

/// The warning printed before anything starts.
pub fn dev_banner(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "\
==========================================================================
  PaySys DEV MODE: NOT FOR PRODUCTION
  * dev PKI: a throwaway CA whose private key is on disk ({dir}/pki/ca.key)
  * dev unseal: the vault's root key is on disk ({dir}/{DEV_ROOT_KEY_FILE});
    anyone who can read it can decrypt every card stored in this vault
  * dev policy: {dir}/{POLICY_FILE}
  Use test cards only. Production vaults are unsealed by custodians.
=========================================================================="
    )
}

/// A started stack. Dropping it kills the services; [`stop`](Self::stop) stops them
/// cleanly.
#[derive(Debug)]
pub struct RunningStack {
    stack: Stack,
    stack_file: PathBuf,
    vault: ServiceProcess,
    sandbox: ServiceProcess,
    intake: ServiceProcess,
    gateway: ServiceProcess,
}

impl RunningStack {
    /// What was started (as written to `stack.json`).
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// The `stack.json` written for this stack.
    pub fn stack_file(&self) -> &Path {
        &self.stack_file
    }

    /// Wait until a service exits by itself; its label and status.
    pub async fn wait_for_exit(&mut self) -> (&'static str, std::io::Result<ExitStatus>) {
        tokio::select! {
            status = self.vault.wait() => ("vault", status),
            status = self.sandbox.wait() => ("sandbox", status),
            status = self.gateway.wait() => ("gateway", status),
            status = self.intake.wait() => ("intake", status),
        }
    }

    /// Remove `stack.json` (it describes a running stack), then stop every service
    /// with SIGTERM: gateway, intake, vault, sandbox.
    pub async fn stop(self) -> anyhow::Result<()> {
        match std::fs::remove_file(&self.stack_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("paysys: could not remove {}: {e}", self.stack_file.display()),
        }
        // Callers first: the gateway and the intake, then the vault that relays to the sandbox.
        for service in [self.gateway, self.intake, self.vault, self.sandbox] {
            let label = service.label().to_owned();
            let status = service.stop().await.with_context(|| format!("stopping the {label}"))?;
            eprintln!("paysys: {label} stopped ({status})");
        }
        Ok(())
    }
}

/// `paysys up` until a signal: start the stack, print where everything is, wait, stop.
/// Returns an error if start-up fails or a service dies on its own.
pub async fn run(options: UpOptions) -> anyhow::Result<()> {
    // Before any child exists: from here a signal stops the children instead of
    // killing us and orphaning them.
    let mut signals = StopSignals::listen()?;
    let dir = std::path::absolute(&options.dir).with_context(|| format!("resolving {}", options.dir.display()))?;
    eprintln!("{}", dev_banner(&dir));

    if options.bin_dir.is_none() {
        build_services_under_cargo().await?;
    }
    let mut running = tokio::select! {
        started = start_stack(&options) => started?,
        signal = signals.recv() => {
            // Dropping the start-up kills any service already spawned.
            eprintln!("paysys: {signal} during start-up; stopped");
            return Ok(());
        }
    };
    if let Some(url) = &options.webhook_url {
        crate::dev_webhook::register(running.stack(), url).await?;
    }
    print_summary(running.stack(), running.stack_file());

    let outcome = tokio::select! {
        signal = signals.recv() => {
            eprintln!("paysys: {signal}: stopping the stack");
            Ok(())
        }
        (label, status) = running.wait_for_exit() => match status {
            Ok(status) => Err(anyhow::anyhow!("{label} exited unexpectedly ({status}); see its [{label}] log lines")),
            Err(e) => Err(anyhow::anyhow!("lost track of {label}: {e}")),
        },
    };
    running.stop().await?;
    outcome
}

/// Start the stack described by `options` and write its `stack.json`: the sandbox,
/// then the vault (relaying to the sandbox), the intake (tokenizing at the vault), then
/// the gateway (calling the vault and the sandbox, framing the intake).
pub async fn start_stack(options: &UpOptions) -> anyhow::Result<RunningStack> {
    pki::validate_merchant_id(&options.merchant_id)?;
    let vault_binary = find_binary(options.bin_dir.as_deref(), VAULT_BINARY)?;
    let sandbox_binary = find_binary(options.bin_dir.as_deref(), SANDBOX_BINARY)?;
    let gateway_binary = find_binary(options.bin_dir.as_deref(), GATEWAY_BINARY)?;
    let intake_binary = find_binary(options.bin_dir.as_deref(), INTAKE_BINARY)?;
    let dir = std::path::absolute(&options.dir).with_context(|| format!("resolving {}", options.dir.display()))?;
    files::create_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stack_file = Stack::path_in(&dir);
    warn_about_previous_stack(&stack_file);

    let pki = init_dev_pki(&dir, &options.merchant_id).context("creating the dev PKI")?;
    let grant_key = init_dev_grant_key(&dir).context("creating the gateway's grant key")?;

    let sandbox_database_url = format!("sqlite:{}", dir.join("sandbox.db").display());
    let sandbox = service("sandbox", &sandbox_binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", options.sandbox_port)])
        .args(["--database-url", &sandbox_database_url])
        .args(["--tls-cert".as_ref(), pki.sandbox_server.cert.as_os_str()])
        .args(["--tls-key".as_ref(), pki.sandbox_server.key.as_os_str()])
        .spawn()
        .await
        .context("starting the sandbox")?;
    // The sandbox's certificate names `localhost`; the relay checks it against the host.
    let sandbox_url = sandbox.url().replace("://127.0.0.1:", "://localhost:");

    let database_url = options.vault_database_url.clone().unwrap_or_else(|| default_database_url(&dir));
    let vault =
        start_dev_vault(&vault_binary, &dir, &pki, &database_url, options.vault_port, Some(&sandbox_url)).await?;

    // The intake's origin is what browsers post cards from; with a fixed port it is
    // known before it starts, with port 0 it is the address it reports.
    let mut intake = service("intake", &intake_binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", options.intake_port)])
        .args(["--tls-cert".as_ref(), pki.intake_server.cert.as_os_str()])
        .args(["--tls-key".as_ref(), pki.intake_server.key.as_os_str()])
        .args(["--vault-url", vault.url()])
        .args(["--vault-ca".as_ref(), pki.ca_cert.as_os_str()])
        .args(["--client-cert".as_ref(), pki.intake.cert.as_os_str()])
        .args(["--client-key".as_ref(), pki.intake.key.as_os_str()])
        .args(["--grant-public-key".to_owned(), grant_key.verifying_arg()]);
    if options.intake_port != 0 {
        intake = intake.args(["--public-url".to_owned(), format!("https://127.0.0.1:{}", options.intake_port)]);
    }
    let intake = intake.spawn().await.context("starting the intake")?;

    let gateway_database_url = options.gateway_database_url.clone().unwrap_or_else(|| gateway_database_url(&dir));
    let secret_key_file = dir.join(GATEWAY_SECRET_KEY_FILE);
    if !secret_key_file.exists() {
        run_to_end(
            &gateway_binary,
            "gateway secret-key",
            ["secret-key".as_ref(), "--out".as_ref(), secret_key_file.as_os_str()],
        )
        .await?;
    }
    let merchant =
        dev_merchant(&gateway_binary, &dir, &gateway_database_url, &secret_key_file, &pki.merchant.id).await?;
    let mut gateway = service("gateway", &gateway_binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", options.gateway_port)])
        .args(["--database-url", &gateway_database_url])
        // Webhooks to a receiver on loopback (`--webhook-url`), dev only.
        .args(["--dev", "--webhooks-allow-loopback-http"])
        .args(["--secret-key-file".as_ref(), secret_key_file.as_os_str()])
        .args(["--vault-url", vault.url()])
        .args(["--vault-ca".as_ref(), pki.ca_cert.as_os_str()])
        .args(["--vault-cert".as_ref(), pki.gateway.cert.as_os_str()])
        .args(["--vault-key".as_ref(), pki.gateway.key.as_os_str()])
        .args(["--acquirer-url", &sandbox_url])
        .args(["--acquirer-ca".as_ref(), pki.ca_cert.as_os_str()])
        .args(["--intake-url", intake.url()])
        .args(["--grant-key".to_owned(), grant_key.signing_arg()]);
    // The hosted checkout page's origin (grants name it); with port 0 the gateway
    // takes the address it binds.
    if options.gateway_port != 0 {
        gateway = gateway.args(["--public-url".to_owned(), format!("http://127.0.0.1:{}", options.gateway_port)]);
    }
    let gateway = gateway.spawn().await.context("starting the gateway")?;

    let stack = Stack {
        dev: true,
        vault: VaultService {
            url: vault.url().to_owned(),
            database_url,
            policy: dir.join(POLICY_FILE),
            dev_root_key_file: dir.join(DEV_ROOT_KEY_FILE),
            audit_checkpoint_file: dir.join(AUDIT_CHECKPOINT_FILE),
            pid: vault.pid(),
        },
        sandbox: SandboxService { url: sandbox_url, database_url: sandbox_database_url, pid: sandbox.pid() },
        gateway: GatewayService {
            url: gateway.url().to_owned(),
            rpc_url: format!("{}/rpc", gateway.url()),
            database_url: gateway_database_url,
            pid: gateway.pid(),
            merchant,
        },
        intake: IntakeService { url: intake.url().to_owned(), pid: intake.pid() },
        pki,
        dir,
    };
    stack.write(&stack_file)?;
    Ok(RunningStack { stack, stack_file, vault, sandbox, intake, gateway })
}

/// A dev vault in `dir` (whose dev PKI exists): the dev policy unless `DIR/policy.toml`
/// is there, `paysys-vault init` with the dev root key file, then `serve` unsealed from
/// it on `127.0.0.1:port`, relaying to `sandbox_url` when given. Used by `paysys up`
/// and by benchmarks that need a vault alone.
pub async fn start_dev_vault(
    binary: &Path,
    dir: &Path,
    pki: &pki::DevPki,
    database_url: &str,
    port: u16,
    sandbox_url: Option<&str>,
) -> anyhow::Result<ServiceProcess> {
    let policy = write_default_policy(dir)?;
    let root_key_file = dir.join(DEV_ROOT_KEY_FILE);
    init_vault(binary, database_url, &root_key_file).await?;
    let mut vault = service("vault", binary)
        .args(["serve", "--database-url", database_url])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--tls-cert".as_ref(), pki.vault_server.cert.as_os_str()])
        .args(["--tls-key".as_ref(), pki.vault_server.key.as_os_str()])
        .args(["--client-ca".as_ref(), pki.ca_cert.as_os_str()])
        .args(["--policy".as_ref(), policy.as_os_str()])
        .args(["--dev".as_ref(), "--dev-root-key-file".as_ref(), root_key_file.as_os_str()])
        .args(["--audit-checkpoint-file".as_ref(), dir.join(AUDIT_CHECKPOINT_FILE).as_os_str()]);
    // A `DevPki` read from an older stack.json has no CRL.
    if !pki.crl.as_os_str().is_empty() {
        vault = vault.args(["--client-crl".as_ref(), pki.crl.as_os_str()]);
    }
    if let Some(sandbox_url) = sandbox_url {
        vault = vault.args(["--relay-ca".as_ref(), pki.ca_cert.as_os_str()]);
        for name in SANDBOX_DESTINATIONS {
            vault = vault.args(["--destination-url".to_owned(), format!("{name}={sandbox_url}")]);
        }
    }
    vault.spawn().await.context("starting the vault")
}

/// A service of the stack: in its own process group (a Ctrl-C reaches only us, and we
/// stop the services in order), without colour codes when our stderr is not a terminal.
fn service(label: &str, binary: &Path) -> ServiceCommand {
    let command = ServiceCommand::new(label, binary).own_process_group();
    if std::io::stderr().is_terminal() {
        command
    } else {
        // Its log lines pass through us; colour codes only belong on a terminal.
        command.env("NO_COLOR", "1")
    }
}

/// `sqlite:DIR/gateway.db`.
pub fn gateway_database_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("gateway.db").display())
}

/// The dev merchant's gateway credentials: read from `DIR/dev-merchant.json`, or created
/// with `paysys-gateway merchant create` (for the vault merchant id of the dev PKI) and
/// written there, mode 0600. A SQLite gateway database that is gone takes the file with it.
async fn dev_merchant(
    binary: &Path,
    dir: &Path,
    database_url: &str,
    secret_key_file: &Path,
    merchant_id: &str,
) -> anyhow::Result<DevMerchant> {
    let file = dir.join(DEV_MERCHANT_FILE);
    let database_gone = database_url.strip_prefix("sqlite:").is_some_and(|path| !Path::new(path).exists());
    if !database_gone {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Ok(merchant) = serde_json::from_str::<DevMerchant>(&text) {
                if merchant.merchant_id == merchant_id {
                    return Ok(merchant);
                }
            }
        }
    }
    let output = run_to_end(
        binary,
        "gateway merchant create",
        [
            "merchant".as_ref(),
            "create".as_ref(),
            "--json".as_ref(),
            "--name".as_ref(),
            "Dev merchant".as_ref(),
            "--merchant-id".as_ref(),
            merchant_id.as_ref(),
            "--database-url".as_ref(),
            database_url.as_ref(),
            "--secret-key-file".as_ref(),
            secret_key_file.as_os_str(),
        ],
    )
    .await?;
    let merchant: DevMerchant = serde_json::from_slice(&output)
        .context("paysys-gateway merchant create printed something other than its JSON")?;
    let mut json = serde_json::to_string_pretty(&merchant)?;
    json.push('\n');
    files::write_atomically(&file, json.as_bytes(), files::PRIVATE)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(merchant)
}

/// Run a one-shot command of a service binary; its stdout on success. Its stderr is
/// forwarded with a `[what]` prefix.
async fn run_to_end<I, S>(binary: &Path, what: &str, args: I) -> anyhow::Result<Vec<u8>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = tokio::process::Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {what}"))?;
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        eprintln!("[{what}] {line}");
    }
    ensure!(output.status.success(), "{what} failed ({}); see the [{what}] lines", output.status);
    Ok(output.stdout)
}

/// The service binaries `paysys up` starts, by package.
pub const SERVICE_PACKAGES: &[&str] = &[VAULT_BINARY, SANDBOX_BINARY, GATEWAY_BINARY, INTAKE_BINARY];

/// Under `cargo run` (cargo sets `CARGO` for the program it runs), build the service
/// binaries first, with the same profile and target directory as this executable, so
/// `cargo run -p paysys -- up` works on a fresh clone and never starts a stale vault.
/// Anywhere else (an installed `paysys`), the binaries next to it are used as they are.
async fn build_services_under_cargo() -> anyhow::Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else { return Ok(()) };
    let exe = std::env::current_exe().context("locating the running executable")?;
    let Some(profile_dir) = exe.parent() else { return Ok(()) };
    let release = profile_dir.file_name().is_some_and(|name| name == "release");
    // `cargo run` may be given from anywhere (`--manifest-path`); build in our workspace.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let mut command = tokio::process::Command::new(cargo);
    command.arg("build").arg("--manifest-path").arg(Path::new(&manifest_dir).join("Cargo.toml"));
    if release {
        command.arg("--release");
    }
    for package in SERVICE_PACKAGES {
        command.args(["-p", package]);
    }
    // Same target directory as ours: the profile directory's parent.
    if let Some(target_dir) = profile_dir.parent() {
        command.env("CARGO_TARGET_DIR", target_dir);
    }
    eprintln!("paysys: building the services ({})", SERVICE_PACKAGES.join(", "));
    let status = command.stdin(Stdio::null()).status().await.context("running cargo build")?;
    ensure!(status.success(), "cargo build of the services failed ({status})");
    Ok(())
}

/// `dir/name`, where `dir` is `bin_dir`, else the running executable's directory —
/// or its parent when that is cargo's `deps` (a test binary's).
pub fn find_binary(bin_dir: Option<&Path>, name: &str) -> anyhow::Result<PathBuf> {
    let dir = match bin_dir {
        Some(dir) => dir.to_owned(),
        None => {
            let exe = std::env::current_exe().context("locating the running executable")?;
            let dir = exe.parent().context("the running executable has no directory")?;
            match (dir.file_name(), dir.parent()) {
                (Some(deps), Some(parent)) if deps == "deps" => parent.to_owned(),
                _ => dir.to_owned(),
            }
        }
    };
    let path = dir.join(name);
    ensure!(
        path.is_file(),
        "{name} not found in {}: build it (cargo build -p {name}) or set PAYSYS_BIN_DIR to the directory that holds it",
        dir.display()
    );
    Ok(path)
}

/// `sqlite:DIR/vault.db`.
pub fn default_database_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("vault.db").display())
}

/// `DIR/policy.toml`: written with the reviewed dev policy if absent; an existing file
/// (perhaps edited) is used as it is, and the vault validates it at start.
fn write_default_policy(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join(POLICY_FILE);
    if !path.exists() {
        files::write_atomically(&path, paysys_policies::DEV_POLICY.as_bytes(), PUBLIC)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}

/// A `stack.json` left behind means the last `up` did not stop cleanly; its vault may
/// still hold the port and the database.
fn warn_about_previous_stack(stack_file: &Path) {
    if let Ok(previous) = Stack::read(stack_file) {
        eprintln!(
            "paysys: warning: {} is left from a run that did not stop cleanly; if its vault (pid {}) is still \
             running, stop it first",
            stack_file.display(),
            previous.vault.pid
        );
    }
}

/// `paysys-vault init` in dev mode. Already initialized (exit code 3) is fine as long as
/// the root key file that unseals it is still here.
async fn init_vault(binary: &Path, database_url: &str, root_key_file: &Path) -> anyhow::Result<()> {
    let output = tokio::process::Command::new(binary)
        .args(["init", "--database-url", database_url])
        .arg("--dev-root-key-file")
        .arg(root_key_file)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {} init", binary.display()))?;
    for text in [&output.stdout, &output.stderr] {
        for line in String::from_utf8_lossy(text).lines() {
            eprintln!("[vault init] {line}");
        }
    }
    match output.status.code() {
        Some(0) => Ok(()),
        Some(VAULT_EXIT_ALREADY_INITIALIZED) if root_key_file.is_file() => Ok(()),
        Some(VAULT_EXIT_ALREADY_INITIALIZED) => bail!(
            "the vault database {database_url} is already initialized, but its dev root key file {} is missing, \
             so it cannot be unsealed: restore the file, or use a fresh database (--vault-database-url)",
            root_key_file.display()
        ),
        _ if root_key_file.exists() => bail!(
            "paysys-vault init failed ({}); see the [vault init] lines. {} exists from an earlier vault: if that \
             vault's database is gone, remove the key file too",
            output.status,
            root_key_file.display()
        ),
        _ => bail!("paysys-vault init failed ({}); see the [vault init] lines", output.status),
    }
}

fn print_summary(stack: &Stack, stack_file: &Path) {
    println!("PaySys dev stack is up.");
    println!(
        "  gateway   {}  (pid {}, database {})",
        stack.gateway.rpc_url, stack.gateway.pid, stack.gateway.database_url
    );
    println!("  vault     {}  (pid {}, database {})", stack.vault.url, stack.vault.pid, stack.vault.database_url);
    println!("  sandbox   {}  (pid {}, test cards: sandbox/README.md)", stack.sandbox.url, stack.sandbox.pid);
    println!("  intake    {}  (pid {}, the card frame; dev CA certificate)", stack.intake.url, stack.intake.pid);
    println!("  CA        {}", stack.pki.ca_cert.display());
    println!(
        "  merchant  {}  (vault certificate {}; gateway service_id {}, secret in stack.json)",
        stack.pki.merchant.id,
        stack.pki.merchant.cert.display(),
        stack.gateway.merchant.service_id
    );
    println!("  stack     {}  (URLs, pids and certificate paths for scripts)", stack_file.display());
    println!("Try a payment: `paysys checkout --amount 150000 --currency UZS` prints a checkout URL to open.");
    println!("Press Ctrl-C to stop.");
}

/// The signals that stop the stack: Ctrl-C, SIGTERM (service managers, `kill`) and
/// SIGHUP (the terminal went away; our services are in their own process group and
/// would not get it).
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    fn listen() -> anyhow::Result<Self> {
        let listen = |kind| signal(kind).context("installing signal handlers");
        Ok(StopSignals {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "Ctrl-C",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_dir::TempDir;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in for `paysys-vault` that keeps the CLI contract: `init` writes the key
    /// file or exits 3; `serve` records its arguments, prints the listening line, waits.
    const FAKE_VAULT: &str = r#"#!/bin/sh
here=$(dirname "$0")
cmd=$1; shift
case "$cmd" in
init)
    while [ $# -gt 0 ]; do
        case "$1" in --dev-root-key-file) key=$2; shift ;; esac
        shift
    done
    if [ -e "$key" ] || [ -e "$here/db-initialized" ]; then
        echo "paysys-vault: already initialized" >&2
        exit 3
    fi
    echo 00 > "$key"
    touch "$here/db-initialized"
    echo "initialized"
    ;;
serve)
    printf '%s\n' "$@" > "$here/serve-args"
    [ -e "$here/serve-fails" ] && { echo "cannot bind" >&2; exit 1; }
    echo "paysys-vault listening on https://127.0.0.1:4321"
    exec sleep 60
    ;;
esac
"#;

    /// Stand-ins for the sandbox and the gateway: the listening line, and for the
    /// gateway the one-shot `secret-key` and `merchant create --json` commands.
    const FAKE_SANDBOX: &str = r#"#!/bin/sh
echo "paysys-sandbox listening on https://127.0.0.1:4322"
exec sleep 60
"#;
    const FAKE_GATEWAY: &str = r#"#!/bin/sh
here=$(dirname "$0")
case "$1" in
secret-key) echo 00 > "$3" ;;
merchant) echo x >> "$here/merchants-created"
    echo '{"merchant_id":"m_dev","service_id":"svc_1","secret":"sec_1","name":"Dev merchant"}' ;;
serve) printf '%s\n' "$@" > "$here/gateway-serve-args"
    echo "paysys-gateway listening on http://127.0.0.1:4323"
    exec sleep 60 ;;
esac
"#;

    /// A stand-in for the intake: records its arguments, prints the listening line.
    const FAKE_INTAKE: &str = r#"#!/bin/sh
here=$(dirname "$0")
printf '%s\n' "$@" > "$here/intake-serve-args"
echo "paysys-intake listening on https://127.0.0.1:4324"
exec sleep 60
"#;

    fn fake_bin_dir(tmp: &TempDir) -> PathBuf {
        let bin = tmp.0.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for (name, script) in [
            (VAULT_BINARY, FAKE_VAULT),
            (SANDBOX_BINARY, FAKE_SANDBOX),
            (GATEWAY_BINARY, FAKE_GATEWAY),
            (INTAKE_BINARY, FAKE_INTAKE),
        ] {
            let path = bin.join(name);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        bin
    }

    fn options(tmp: &TempDir, bin: &Path) -> UpOptions {
        UpOptions {
            vault_port: 0,
            sandbox_port: 0,
            gateway_port: 0,
            intake_port: 0,
            bin_dir: Some(bin.to_owned()),
            ..UpOptions::new(tmp.0.join("stack"))
        }
    }

    #[tokio::test]
    async fn start_stack_runs_the_vault_and_writes_stack_json() {
        let tmp = TempDir::new("up");
        let bin = fake_bin_dir(&tmp);
        let running = start_stack(&options(&tmp, &bin)).await.unwrap();
        let dir = tmp.0.join("stack");
        let stack = running.stack().clone();

        assert_eq!(Stack::read_from_dir(&dir).unwrap(), stack);
        assert!(stack.dev);
        assert_eq!(stack.dir, dir);
        assert_eq!(stack.vault.url, "https://127.0.0.1:4321");
        assert_eq!(stack.vault.database_url, format!("sqlite:{}/vault.db", dir.display()));
        assert_eq!(stack.vault.dev_root_key_file, dir.join("vault-root.key"));
        assert_eq!(std::fs::read_to_string(&stack.vault.policy).unwrap(), paysys_policies::DEV_POLICY);
        assert_eq!(stack.pki.merchant.id, "m_dev");

        let args = std::fs::read_to_string(bin.join("serve-args")).unwrap();
        let args: Vec<&str> = args.lines().collect();
        let flag = |name: &str| args[args.iter().position(|a| *a == name).unwrap() + 1];
        assert_eq!(flag("--listen"), "127.0.0.1:0");
        assert_eq!(flag("--database-url"), stack.vault.database_url);
        assert_eq!(Path::new(flag("--tls-cert")), stack.pki.vault_server.cert);
        assert_eq!(Path::new(flag("--tls-key")), stack.pki.vault_server.key);
        assert_eq!(Path::new(flag("--client-ca")), stack.pki.ca_cert);
        assert_eq!(Path::new(flag("--policy")), stack.vault.policy);
        assert_eq!(Path::new(flag("--dev-root-key-file")), stack.vault.dev_root_key_file);
        assert_eq!(Path::new(flag("--audit-checkpoint-file")), stack.vault.audit_checkpoint_file);
        assert_eq!(stack.vault.audit_checkpoint_file, dir.join("vault-audit-checkpoints.jsonl"));
        assert!(args.contains(&"--dev"));
        assert_eq!(Path::new(flag("--relay-ca")), stack.pki.ca_cert);
        let destinations: Vec<&str> = args.windows(2).filter(|w| w[0] == "--destination-url").map(|w| w[1]).collect();
        assert_eq!(
            destinations,
            ["sandbox_acquirer=https://localhost:4322", "sandbox_ds=https://localhost:4322"],
            "the relay reaches the sandbox by the name in its certificate"
        );

        // The gateway calls the vault with the gateway's client certificate and the
        // sandbox directly; the dev merchant is created once and kept.
        assert_eq!(stack.sandbox.url, "https://localhost:4322");
        assert_eq!(stack.gateway.rpc_url, "http://127.0.0.1:4323/rpc");
        assert_eq!(stack.gateway.merchant.service_id, "svc_1");
        let args = std::fs::read_to_string(bin.join("gateway-serve-args")).unwrap();
        let args: Vec<&str> = args.lines().collect();
        let flag = |name: &str| args[args.iter().position(|a| *a == name).unwrap() + 1];
        assert_eq!(flag("--vault-url"), stack.vault.url);
        assert!(args.contains(&"--dev") && args.contains(&"--webhooks-allow-loopback-http"));
        assert_eq!(Path::new(flag("--vault-cert")), stack.pki.gateway.cert);
        assert_eq!(flag("--acquirer-url"), stack.sandbox.url);
        assert_eq!(flag("--database-url"), stack.gateway.database_url);
        // It signs grants with the stack's grant key and frames the intake's card form;
        // with port 0 its public URL is the address it binds (no flag).
        assert_eq!(flag("--intake-url"), "https://127.0.0.1:4324");
        assert_eq!(flag("--grant-key"), format!("g1={}", dir.join("grant-keys/g1.pk8").display()));
        assert!(!args.contains(&"--public-url"));

        // The intake trusts that key's public half and tokenizes as spiffe://paysys/intake.
        assert_eq!(stack.intake.url, "https://127.0.0.1:4324");
        let args = std::fs::read_to_string(bin.join("intake-serve-args")).unwrap();
        let args: Vec<&str> = args.lines().collect();
        let flag = |name: &str| args[args.iter().position(|a| *a == name).unwrap() + 1];
        assert_eq!(flag("--listen"), "127.0.0.1:0");
        assert_eq!(flag("--vault-url"), stack.vault.url);
        assert_eq!(Path::new(flag("--vault-ca")), stack.pki.ca_cert);
        assert_eq!(Path::new(flag("--client-cert")), stack.pki.intake.cert);
        assert_eq!(Path::new(flag("--client-key")), stack.pki.intake.key);
        assert_eq!(Path::new(flag("--tls-cert")), stack.pki.intake_server.cert);
        assert_eq!(flag("--grant-public-key"), format!("g1={}", dir.join("grant-keys/g1.pub").display()));
        assert!(!args.contains(&"--public-url"), "port 0: the intake reports its own origin");
        let public_key = std::fs::read_to_string(dir.join("grant-keys/g1.pub")).unwrap();
        assert_eq!(public_key.trim().len(), 64);

        let stack_file = running.stack_file().to_owned();
        running.stop().await.unwrap();
        assert!(!stack_file.exists(), "stack.json describes a running stack only");

        // Again on the same directory: the vault and the PKI are reused.
        let ca = std::fs::read(&stack.pki.ca_cert).unwrap();
        let grant_key = std::fs::read(dir.join("grant-keys/g1.pk8")).unwrap();
        let again = start_stack(&options(&tmp, &bin)).await.unwrap();
        assert_eq!(std::fs::read(&again.stack().pki.ca_cert).unwrap(), ca);
        assert_eq!(std::fs::read(dir.join("grant-keys/g1.pk8")).unwrap(), grant_key, "the grant key is kept");
        assert_eq!(again.stack().vault.database_url, stack.vault.database_url);
        again.stop().await.unwrap();
        // (The fake gateway keeps no database file, so "gone" is simulated by the file
        // check: with a SQLite database that exists the merchant is reused.)
        std::fs::write(dir.join("gateway.db"), "").unwrap();
        let third = start_stack(&options(&tmp, &bin)).await.unwrap();
        assert_eq!(third.stack().gateway.merchant, stack.gateway.merchant);
        third.stop().await.unwrap();
        let created = std::fs::read_to_string(bin.join("merchants-created")).unwrap();
        assert_eq!(created.lines().count(), 2, "created on the first start and after the database was gone");
    }

    #[tokio::test]
    async fn fixed_ports_give_the_gateway_and_the_intake_their_public_urls() {
        let tmp = TempDir::new("up-ports");
        let bin = fake_bin_dir(&tmp);
        let options = UpOptions { gateway_port: 18080, intake_port: 18444, ..options(&tmp, &bin) };
        let running = start_stack(&options).await.unwrap();
        let flag_of = |file: &str, name: &str| {
            let args = std::fs::read_to_string(bin.join(file)).unwrap();
            let args: Vec<String> = args.lines().map(str::to_owned).collect();
            args[args.iter().position(|a| a == name).unwrap() + 1].clone()
        };
        assert_eq!(flag_of("gateway-serve-args", "--public-url"), "http://127.0.0.1:18080");
        assert_eq!(flag_of("intake-serve-args", "--public-url"), "https://127.0.0.1:18444");
        assert_eq!(flag_of("intake-serve-args", "--listen"), "127.0.0.1:18444");
        running.stop().await.unwrap();
    }

    #[tokio::test]
    async fn an_initialized_vault_without_its_root_key_is_refused() {
        let tmp = TempDir::new("up-nokey");
        let bin = fake_bin_dir(&tmp);
        std::fs::write(bin.join("db-initialized"), "").unwrap();
        let options = UpOptions { vault_database_url: Some("postgres://db/shared".into()), ..options(&tmp, &bin) };
        let err = start_stack(&options).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("already initialized") && message.contains("vault-root.key"), "{message}");
        assert!(!bin.join("serve-args").exists(), "the vault must not be started");
    }

    #[tokio::test]
    async fn a_vault_that_fails_to_start_is_reported_and_no_stack_json_written() {
        let tmp = TempDir::new("up-fails");
        let bin = fake_bin_dir(&tmp);
        std::fs::write(bin.join("serve-fails"), "").unwrap();
        let err = start_stack(&options(&tmp, &bin)).await.unwrap_err();
        assert!(format!("{err:#}").contains("vault exited"), "{err:#}");
        assert!(!tmp.0.join("stack").join("stack.json").exists());
    }

    #[tokio::test]
    async fn a_missing_vault_binary_says_how_to_fix_it() {
        let tmp = TempDir::new("up-nobin");
        let err = start_stack(&options(&tmp, &tmp.0)).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("paysys-vault not found") && message.contains("PAYSYS_BIN_DIR"), "{message}");
    }

    #[test]
    fn the_banner_says_dev_mode_and_where_the_keys_are() {
        let banner = dev_banner(Path::new("/abs/.paysys"));
        assert!(banner.contains("DEV MODE") && banner.contains("NOT FOR PRODUCTION"));
        assert!(banner.contains("/abs/.paysys/vault-root.key") && banner.contains("/abs/.paysys/pki/ca.key"));
    }
}
