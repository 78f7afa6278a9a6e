//! Start a service process and wait until it listens.
//!
//! Every PaySys service binds the address it is given (`127.0.0.1:0` in tests) and
//! prints one line on stdout, `paysys-<service> listening on <url>`, once it accepts
//! connections; a test reads that line to learn the port.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a service may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Spawn `cmd` with its stderr appended to `log_file`, wait for its first stdout line,
/// which must start with `prefix` (`"paysys-vault listening on "`), and return the
/// child (killed when dropped) and the rest of the line (the URL). Panics with the log
/// when the process exits or stays silent instead.
pub async fn spawn_listening(mut cmd: Command, prefix: &str, log_file: &Path) -> (Child, String) {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_file).unwrap();
    cmd.stdout(Stdio::piped()).stderr(Stdio::from(log)).kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let url = listening_url(&mut stdout, prefix, || std::fs::read_to_string(log_file).unwrap_or_default()).await;
    (child, url)
}

/// Read the first line of a starting process's `stdout` and return what follows
/// `prefix` on it. Panics, with `log()` in the message, when the line does not come
/// within [`START_TIMEOUT`] or is not the listening line. For processes whose stderr a
/// test captures itself; [`spawn_listening`] does the whole start.
pub async fn listening_url<R, L>(stdout: &mut R, prefix: &str, log: L) -> String
where
    R: AsyncBufRead + Unpin,
    L: FnOnce() -> String,
{
    let mut line = String::new();
    let read = tokio::time::timeout(START_TIMEOUT, stdout.read_line(&mut line)).await;
    let Ok(Ok(read)) = read else {
        panic!("the process did not start within {START_TIMEOUT:?}; log:\n{}", log());
    };
    if read == 0 {
        panic!("the process exited before listening; log:\n{}", log());
    }
    match line.trim_end().strip_prefix(prefix) {
        Some(url) => url.to_owned(),
        None => panic!("unexpected first line {line:?}; log:\n{}", log()),
    }
}
