//! `paysys up`: the whole stack on one machine, in development mode.
//!
//! 1. the dev PKI in `DIR/pki` ([`init_dev_pki`]: created once, then reused);
//! 2. `DIR/policy.toml`, the reviewed dev policy, unless one is there already;
//! 3. `paysys-vault init` with a dev root key file (`DIR/vault-root.key`); a vault that
//!    is already initialized is reused;
//! 4. `paysys-vault serve`, unsealed from that file, as a child process from its own
//!    binary; its logs are forwarded with a `[vault]` prefix;
//! 5. `DIR/stack.json` once every service is listening;
//! 6. in the foreground until Ctrl-C, SIGTERM or SIGHUP, or until a service dies; then
//!    the services are stopped with SIGTERM and `stack.json` is removed.
//!
//! Binaries are looked up next to the `paysys` executable, or in `PAYSYS_BIN_DIR`.

use crate::files::{self, PUBLIC};
use crate::pki::{self, init_dev_pki, DEFAULT_MERCHANT_ID};
use crate::services::{ServiceCommand, ServiceProcess};
use crate::stack::{Stack, VaultService};
use anyhow::{bail, ensure, Context};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The vault's binary.
pub const VAULT_BINARY: &str = "paysys-vault";
/// Directory of the stack unless told otherwise, relative to the working directory.
pub const DEFAULT_DIR: &str = ".paysys";
/// Port of the vault's mTLS API unless told otherwise.
pub const DEFAULT_VAULT_PORT: u16 = 8443;
/// The dev root key file, in the stack's directory.
pub const DEV_ROOT_KEY_FILE: &str = "vault-root.key";
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
    /// Where the service binaries are; `None` is next to the running executable.
    pub bin_dir: Option<PathBuf>,
}

impl UpOptions {
    /// The defaults, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        UpOptions {
            dir: dir.into(),
            merchant_id: DEFAULT_MERCHANT_ID.to_owned(),
            vault_port: DEFAULT_VAULT_PORT,
            vault_database_url: None,
            bin_dir: None,
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
        ("vault", self.vault.wait().await)
    }

    /// Remove `stack.json` (it describes a running stack), then stop every service
    /// with SIGTERM.
    pub async fn stop(self) -> anyhow::Result<()> {
        match std::fs::remove_file(&self.stack_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("paysys: could not remove {}: {e}", self.stack_file.display()),
        }
        let status = self.vault.stop().await.context("stopping the vault")?;
        eprintln!("paysys: vault stopped ({status})");
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

/// Start the stack described by `options` and write its `stack.json`.
pub async fn start_stack(options: &UpOptions) -> anyhow::Result<RunningStack> {
    pki::validate_merchant_id(&options.merchant_id)?;
    let vault_binary = find_binary(options.bin_dir.as_deref(), VAULT_BINARY)?;
    let dir = std::path::absolute(&options.dir).with_context(|| format!("resolving {}", options.dir.display()))?;
    files::create_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stack_file = Stack::path_in(&dir);
    warn_about_previous_stack(&stack_file);

    let pki = init_dev_pki(&dir, &options.merchant_id).context("creating the dev PKI")?;
    let policy = write_default_policy(&dir)?;
    let database_url = options.vault_database_url.clone().unwrap_or_else(|| default_database_url(&dir));
    let root_key_file = dir.join(DEV_ROOT_KEY_FILE);
    init_vault(&vault_binary, &database_url, &root_key_file).await?;

    let listen = format!("127.0.0.1:{}", options.vault_port);
    let mut vault = ServiceCommand::new("vault", &vault_binary);
    if !std::io::stderr().is_terminal() {
        // Its log lines pass through us; colour codes only belong on a terminal.
        vault = vault.env("NO_COLOR", "1");
    }
    let vault = vault
        .args(["serve", "--database-url", &database_url, "--listen", &listen])
        .args(["--tls-cert".as_ref(), pki.vault_server.cert.as_os_str()])
        .args(["--tls-key".as_ref(), pki.vault_server.key.as_os_str()])
        .args(["--client-ca".as_ref(), pki.ca_cert.as_os_str()])
        .args(["--policy".as_ref(), policy.as_os_str()])
        .args(["--dev".as_ref(), "--dev-root-key-file".as_ref(), root_key_file.as_os_str()])
        .own_process_group()
        .spawn()
        .await
        .context("starting the vault")?;

    let stack = Stack {
        dev: true,
        dir,
        vault: VaultService {
            url: vault.url().to_owned(),
            database_url,
            policy,
            dev_root_key_file: root_key_file,
            pid: vault.pid(),
        },
        pki,
    };
    stack.write(&stack_file)?;
    Ok(RunningStack { stack, stack_file, vault })
}

/// The service binaries `paysys up` starts, by package.
pub const SERVICE_PACKAGES: &[&str] = &[VAULT_BINARY];

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
    println!("  vault     {}  (pid {}, database {})", stack.vault.url, stack.vault.pid, stack.vault.database_url);
    println!("  CA        {}", stack.pki.ca_cert.display());
    println!("  merchant  {}  ({})", stack.pki.merchant.id, stack.pki.merchant.cert.display());
    println!("  stack     {}  (URLs, pids and certificate paths for scripts)", stack_file.display());
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

    fn fake_bin_dir(tmp: &TempDir) -> PathBuf {
        let bin = tmp.0.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let vault = bin.join(VAULT_BINARY);
        std::fs::write(&vault, FAKE_VAULT).unwrap();
        std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    }

    fn options(tmp: &TempDir, bin: &Path) -> UpOptions {
        UpOptions { vault_port: 0, bin_dir: Some(bin.to_owned()), ..UpOptions::new(tmp.0.join("stack")) }
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
        assert!(args.contains(&"--dev"));

        let stack_file = running.stack_file().to_owned();
        running.stop().await.unwrap();
        assert!(!stack_file.exists(), "stack.json describes a running stack only");

        // Again on the same directory: the vault and the PKI are reused.
        let ca = std::fs::read(&stack.pki.ca_cert).unwrap();
        let again = start_stack(&options(&tmp, &bin)).await.unwrap();
        assert_eq!(std::fs::read(&again.stack().pki.ca_cert).unwrap(), ca);
        assert_eq!(again.stack().vault.database_url, stack.vault.database_url);
        again.stop().await.unwrap();
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
