//! Service child processes: start a binary, wait until it says where it listens, forward
//! its logs, stop it with SIGTERM.
//!
//! Every PaySys service prints exactly one line on stdout once it accepts connections —
//! `paysys-vault listening on https://127.0.0.1:8443` — and logs to stderr. Binding
//! port 0 and reading that line is how `paysys up`, the end-to-end tests and the
//! benchmarks get free ports without races.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use paysys::services::ServiceCommand;
//!
//! let vault = ServiceCommand::new("vault", "target/debug/paysys-vault")
//!     .args(["serve", "--listen", "127.0.0.1:0" /* , … */])
//!     .spawn()
//!     .await?;
//! println!("vault at {} (pid {})", vault.url(), vault.pid());
//! vault.stop().await?; // SIGTERM, then SIGKILL after the grace period
//! # Ok(()) }
//! ```

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// How long a service may take to print its listening line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a service may take to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// The words between the service name and its URL in the listening line.
const LISTENING_MARKER: &str = " listening on ";

/// Why a service could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The binary could not be executed (missing, not executable).
    #[error("cannot start {} ({label}): {source}", program.display())]
    Spawn {
        /// Label of the service, e.g. `vault`.
        label: String,
        /// The binary.
        program: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The service exited before printing its listening line; its stderr was
    /// forwarded with the `[label]` prefix.
    #[error("{label} exited ({status}) before it was listening; see its [{label}] log lines")]
    ExitedEarly {
        /// Label of the service.
        label: String,
        /// How it exited, or why that is unknown.
        status: String,
    },
    /// The service printed no listening line in time; it was killed.
    #[error("{label} printed no \"listening on\" line within {timeout:?}; it was killed")]
    NotReady {
        /// Label of the service.
        label: String,
        /// The time it was given.
        timeout: Duration,
    },
    /// Reading the service's stdout failed.
    #[error("reading the output of {label}: {source}")]
    Output {
        /// Label of the service.
        label: String,
        /// The I/O error.
        source: io::Error,
    },
}

/// How to start a service: binary, arguments, environment, and how long to wait.
#[derive(Debug, Clone)]
pub struct ServiceCommand {
    label: String,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    ready_timeout: Duration,
    own_process_group: bool,
}

impl ServiceCommand {
    /// Run `program`; its log lines are forwarded prefixed with `[label] `.
    pub fn new(label: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        ServiceCommand {
            label: label.into(),
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            ready_timeout: READY_TIMEOUT,
            own_process_group: false,
        }
    }

    /// Append arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set an environment variable for the child (it inherits ours otherwise).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Wait this long for the listening line instead of [`READY_TIMEOUT`].
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Put the child in a process group of its own, so that a Ctrl-C at the terminal
    /// reaches only us and we stop services in our order. For long-running launchers;
    /// tests leave it off.
    pub fn own_process_group(mut self) -> Self {
        self.own_process_group = true;
        self
    }

    /// Start the service and wait until it prints `… listening on <url>` on stdout.
    ///
    /// Its stderr is forwarded to ours and any other stdout line to our stdout, both
    /// prefixed with `[label] `. If it exits first, or stays silent past the ready
    /// timeout, it is killed and an error returned.
    pub async fn spawn(self) -> Result<ServiceProcess, ServiceError> {
        let ServiceCommand { label, program, args, envs, ready_timeout, own_process_group } = self;
        let mut command = Command::new(&program);
        command
            .args(&args)
            .envs(envs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if own_process_group {
            command.process_group(0);
        }
        let mut child =
            command.spawn().map_err(|source| ServiceError::Spawn { label: label.clone(), program, source })?;
        let pid = child.id().unwrap_or_default();
        let prefix = format!("[{label}] ");
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_lines(BufReader::new(stderr), prefix.clone(), Sink::Stderr));
        }
        let Some(stdout) = child.stdout.take() else {
            return Err(ServiceError::Output { label, source: io::Error::other("stdout was not captured") });
        };
        let mut stdout = BufReader::new(stdout);

        match tokio::time::timeout(ready_timeout, read_listening_url(&mut stdout, &prefix)).await {
            Ok(Ok(Some(url))) => {
                // Keep draining stdout: a child writing to a full pipe would block.
                tokio::spawn(forward_lines(stdout, prefix, Sink::Stdout));
                Ok(ServiceProcess { label, url, pid, child })
            }
            Ok(Ok(None)) => {
                // stdout closed: the process is exiting (or has closed it on purpose).
                let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                    Ok(Ok(status)) => status.to_string(),
                    Ok(Err(e)) => format!("status unknown: {e}"),
                    Err(_) => "closed its stdout and was killed".to_owned(),
                };
                Err(ServiceError::ExitedEarly { label, status })
            }
            Ok(Err(source)) => Err(ServiceError::Output { label, source }),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(ServiceError::NotReady { label, timeout: ready_timeout })
            }
        }
    }
}

/// Start `program` with `args` and wait for its listening line; see
/// [`ServiceCommand::spawn`]. The label is the binary's name without `paysys-`.
pub async fn spawn_service<I, S>(program: &Path, args: I) -> Result<ServiceProcess, ServiceError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let label = name.strip_prefix("paysys-").unwrap_or(&name).to_owned();
    ServiceCommand::new(label, program).args(args).spawn().await
}

/// A running service. Dropping it kills the process (SIGKILL); [`stop`](Self::stop)
/// asks it to shut down first.
#[derive(Debug)]
pub struct ServiceProcess {
    label: String,
    url: String,
    pid: u32,
    child: Child,
}

impl ServiceProcess {
    /// Its label, e.g. `vault`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The URL from its listening line, e.g. `https://127.0.0.1:43117`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Wait until it exits by itself (cancel-safe: usable in `select!`).
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Stop it: SIGTERM, then SIGKILL if it is still running after [`STOP_GRACE`].
    pub async fn stop(self) -> io::Result<ExitStatus> {
        self.stop_within(STOP_GRACE).await
    }

    /// Stop it: SIGTERM, then SIGKILL if it is still running after `grace`.
    pub async fn stop_within(mut self, grace: Duration) -> io::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        // Not reaped yet, so the pid is still this child's (it cannot have been reused).
        if let Err(e) = send_sigterm(self.pid).await {
            eprintln!("paysys: could not send SIGTERM to {} (pid {}): {e}; killing it", self.label, self.pid);
            self.child.start_kill()?;
            return self.child.wait().await;
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                eprintln!(
                    "paysys: {} (pid {}) still running {grace:?} after SIGTERM; killing it",
                    self.label, self.pid
                );
                self.child.start_kill()?;
                self.child.wait().await
            }
        }
    }
}

/// SIGTERM through the `kill` program: the workspace forbids `unsafe`, so no libc.
async fn send_sigterm(pid: u32) -> io::Result<()> {
    let pid = pid.to_string();
    let status = match Command::new("/bin/kill").args(["-TERM", &pid]).status().await {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Command::new("kill").args(["-TERM", &pid]).status().await?,
        other => other?,
    };
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("kill -TERM {pid} {status}")))
    }
}

/// The URL of a listening line such as `paysys-vault listening on https://127.0.0.1:8443`.
pub fn parse_listening_line(line: &str) -> Option<&str> {
    let (_, url) = line.split_once(LISTENING_MARKER)?;
    let url = url.trim();
    (url.starts_with("https://") || url.starts_with("http://")).then_some(url)
}

/// Read stdout until the listening line (its URL) or end of file (`None`); other lines
/// are forwarded.
async fn read_listening_url<R: AsyncRead + Unpin>(
    stdout: &mut BufReader<R>,
    prefix: &str,
) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if stdout.read_until(b'\n', &mut buf).await? == 0 {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        match parse_listening_line(line) {
            Some(url) => return Ok(Some(url.to_owned())),
            None => println!("{prefix}{line}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Sink {
    Stdout,
    Stderr,
}

/// Copy lines to our stdout or stderr with `prefix` until end of file. Bytes that are
/// not UTF-8 are replaced rather than ending the copy, which would block the child.
async fn forward_lines<R: AsyncRead + Unpin>(mut reader: BufReader<R>, prefix: String, sink: Sink) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                match sink {
                    Sink::Stdout => println!("{prefix}{line}"),
                    Sink::Stderr => eprintln!("{prefix}{line}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn sh(script: &str) -> ServiceCommand {
        ServiceCommand::new("fake", "/bin/sh").args(["-c", script])
    }

    #[test]
    fn listening_lines_are_recognized() {
        assert_eq!(
            parse_listening_line("paysys-vault listening on https://127.0.0.1:8443"),
            Some("https://127.0.0.1:8443")
        );
        assert_eq!(
            parse_listening_line("paysys-gateway listening on http://127.0.0.1:80 \r"),
            Some("http://127.0.0.1:80")
        );
        assert_eq!(parse_listening_line("listening on https://127.0.0.1:1"), None, "no service name");
        assert_eq!(parse_listening_line("paysys-vault listening on 127.0.0.1:8443"), None, "not a URL");
        assert_eq!(parse_listening_line("initialized"), None);
    }

    #[tokio::test]
    async fn spawn_waits_for_the_listening_line_and_stop_sends_sigterm() {
        let service =
            sh("echo starting; echo 'fake listening on https://127.0.0.1:4321'; exec sleep 30").spawn().await.unwrap();
        assert_eq!(service.url(), "https://127.0.0.1:4321");
        assert_eq!(service.label(), "fake");
        assert!(service.pid() > 0);
        let status = service.stop_within(Duration::from_secs(5)).await.unwrap();
        assert_eq!(status.signal(), Some(15), "{status}");
    }

    #[tokio::test]
    async fn a_service_ignoring_sigterm_is_killed_after_the_grace_period() {
        let service = sh("trap '' TERM; echo 'fake listening on https://127.0.0.1:1'; while :; do sleep 1; done")
            .spawn()
            .await
            .unwrap();
        let status = service.stop_within(Duration::from_millis(300)).await.unwrap();
        assert_eq!(status.signal(), Some(9), "{status}");
    }

    #[tokio::test]
    async fn a_service_that_exits_before_listening_is_an_error() {
        let err = sh("echo 'no database' >&2; exit 7").spawn().await.unwrap_err();
        match err {
            ServiceError::ExitedEarly { label, status } => {
                assert_eq!(label, "fake");
                assert!(status.contains('7'), "{status}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_silent_service_times_out() {
        let err = sh("exec sleep 30").ready_timeout(Duration::from_millis(200)).spawn().await.unwrap_err();
        assert!(matches!(err, ServiceError::NotReady { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_missing_binary_names_itself() {
        let err = spawn_service(Path::new("/nonexistent/paysys-vault"), ["serve"]).await.unwrap_err();
        match &err {
            ServiceError::Spawn { label, .. } => assert_eq!(label, "vault"),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("/nonexistent/paysys-vault"), "{err}");
    }

    #[tokio::test]
    async fn the_environment_reaches_the_child() {
        let service = sh("echo \"fake listening on https://127.0.0.1:$FAKE_PORT\"; exec sleep 30")
            .env("FAKE_PORT", "5555")
            .spawn()
            .await
            .unwrap();
        assert_eq!(service.url(), "https://127.0.0.1:5555");
        drop(service); // kill on drop: must not hang or leak
    }
}
