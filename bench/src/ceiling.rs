//! `paysys-bench ceiling`: the cheapest request each service answers, over the same
//! transport and through the same load generator ([`crate::load::run`]) as its real
//! benchmark — the vault's `GET /v1/sys/health` over mTLS with the merchant's client
//! certificate, the gateway's `GET /health` over its plain HTTP/1.1. What a service can
//! serve at all on this machine right now; `tokenize --with-ceiling` and
//! `pay --with-ceiling` run it against the same service just before the real benchmark
//! and print the ratio, which moves far less from hour to hour than either figure.

use crate::load::{Client, Outcome};
use crate::pay::RpcClient;
use paysys_vault_client::VaultConnection;

/// Which service's ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// `GET /v1/sys/health` over mTLS (the `tokenize` transport).
    Vault,
    /// `GET /health` over plain HTTP/1.1 (the `pay` transport).
    Gateway,
}

/// A vault ceiling client: `GET /v1/sys/health` on its own mTLS connection.
pub struct VaultHealth(pub VaultConnection);

impl Client for VaultHealth {
    async fn request(&mut self) -> Outcome {
        match self.0.call("GET", "/v1/sys/health", None).await {
            Ok(r) if r.status == 200 => Outcome::Done,
            Ok(r) => Outcome::Failed(format!("vault health answered {}", r.status)),
            Err(e) => Outcome::Broken(e.to_string()),
        }
    }
}

/// A gateway ceiling client: `GET /health` on its own HTTP/1.1 connection.
pub struct GatewayHealth(pub RpcClient);

impl Client for GatewayHealth {
    async fn request(&mut self) -> Outcome {
        match self.0.get("/health").await {
            Ok(200) => Outcome::Done,
            Ok(status) => Outcome::Failed(format!("gateway health answered {status}")),
            Err(e) => Outcome::Broken(e.to_string()),
        }
    }
}
