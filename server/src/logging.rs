//! Where a service's log goes: `tracing` events to stderr, filtered by `PAYSYS_LOG`
//! (`tracing_subscriber`'s `EnvFilter` syntax, `info` when unset or invalid), with
//! colours only on a terminal.
//!
//! Shared because the services run side by side under `paysys up`, which forwards their
//! stderr line by line: one format and one switch for all of them. Stdout stays free
//! for the one "listening on" line launchers wait for.

/// The environment variable that filters the log, e.g. `PAYSYS_LOG=debug` or
/// `PAYSYS_LOG=info,paysys_vault=debug`.
pub const LOG_FILTER_VAR: &str = "PAYSYS_LOG";

/// Send `tracing` events to stderr. Does nothing when a subscriber is already set
/// (a test harness's, say).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_FILTER_VAR)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}
