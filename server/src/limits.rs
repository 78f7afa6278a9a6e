//! How long a client may take and how many may be connected at once: the defaults, and
//! the `serve` flags that change them ([`TransportFlags`], flattened into each service's
//! command line).

use std::time::Duration;

/// How long a client has to send a complete request head (request line and headers).
///
/// hyper starts this clock when the connection begins waiting for a request: right
/// after the TLS handshake, and again after each response. So on HTTP/1.1 it is also
/// the keep-alive idle limit, and a slow-loris client (one header byte at a time, or
/// none) is closed when it runs out, whatever it trickles.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one request may take from its head being read to its response: a slow
/// body upload or a stuck handler is answered `503 request_timeout`. Longer than
/// anything a service waits for on purpose (the vault's relay at most 30 s by default,
/// the sandbox's slow test card 35 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connection may stay open with no request in flight before the server
/// closes it (HTTP/2: GOAWAY, then close). HTTP/1.1 connections meet the shorter
/// [`HEADER_READ_TIMEOUT`] first.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections served at once per listener. Over it, the accept loop stops accepting:
/// new connections wait in the kernel's listen backlog until one closes (see
/// [`TransportLimits::max_connections`]). Keep it below the process's file-descriptor
/// limit (`ulimit -n`) less what the service needs for its database and its own
/// outgoing connections.
pub const MAX_CONNECTIONS: usize = 1024;

/// HTTP/2: how often an idle connection is pinged, and how long the ping may go
/// unanswered before the connection is dropped as dead.
pub const HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// See [`HTTP2_KEEP_ALIVE_INTERVAL`].
pub const HTTP2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The limits one listener enforces. [`Default`] is the constants of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLimits {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`MAX_CONNECTIONS`]. Over the cap new connections *wait* rather than being
    /// accepted and closed: a waiting connection costs no file descriptor and no TLS
    /// handshake, a legitimate client is served late instead of refused, and the
    /// handshake, header and idle timeouts guarantee that slots come free. Once the
    /// kernel's backlog is full too, the kernel refuses new connections itself.
    pub max_connections: usize,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// The transport-limit flags every service's `serve` takes (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct TransportFlags {
    /// Seconds a client has to send a complete request head; on HTTP/1.1 also the
    /// keep-alive idle limit.
    #[arg(long, default_value_t = HEADER_READ_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_secs: u64,
    /// Seconds one request may take before it is answered `503 request_timeout`.
    #[arg(long, default_value_t = REQUEST_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight (HTTP/2; HTTP/1.1
    /// meets the header-read timeout first).
    #[arg(long, default_value_t = IDLE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, default_value_t = MAX_CONNECTIONS, value_parser = parse_max_connections)]
    pub max_connections: usize,
}

fn parse_max_connections(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number of connections, at least 1".to_owned()),
    }
}

impl TransportFlags {
    /// The limits these flags describe.
    pub fn limits(&self) -> TransportLimits {
        TransportLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max_connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        transport: TransportFlags,
    }

    #[test]
    fn the_flags_default_to_the_documented_constants() {
        let cli = Cli::try_parse_from(["serve"]).unwrap();
        assert_eq!(cli.transport.limits(), TransportLimits::default());
    }

    #[test]
    fn zero_limits_are_refused() {
        for flag in ["--header-read-timeout-secs", "--request-timeout-secs", "--idle-timeout-secs", "--max-connections"]
        {
            assert!(Cli::try_parse_from(["serve", flag, "0"]).is_err(), "{flag} 0");
        }
        let cli = Cli::try_parse_from(["serve", "--header-read-timeout-secs", "2", "--max-connections", "7"]).unwrap();
        assert_eq!(cli.transport.limits().header_read_timeout, Duration::from_secs(2));
        assert_eq!(cli.transport.limits().max_connections, 7);
    }
}
