//! Serving the vault: [`run`] serves the API on a bound listener until shutdown;
//! [`spawn_background_tasks`] starts what a serving vault does on its own (sweeps, key
//! sync, re-encryption, audit checkpoints). `cli::serve` loads the configuration, builds
//! the [`Vault`], starts the background tasks, binds, announces the address and calls
//! [`run`]; a test can do the same in-process.
//!
//! The accept loop is the shared one ([`paysys_server`]): TLS is mandatory, rustls has
//! verified the client certificate against the client CA and the CRL, and a connection
//! whose certificate names no principal is closed before any request is read (the
//! reason is logged). Each request carries the connection's [`crate::tls::Principal`].

use crate::api::{self, Vault};
use crate::checkpoint::{run_periodic_checkpoints, CheckpointReason};
use crate::lifecycle;
use crate::retention::{self, SweepConfig};
use crate::tls::{principal_from_cert, VaultTls};
use axum::Router;
use paysys_server::client_auth::CRL_POLL_INTERVAL;
use paysys_server::{ServeOptions, TransportLimits};
use rustls::ServerConfig;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often the background tasks run (the `serve` flags of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundSchedule {
    /// Between sweeps of expired CVCs (`--cvc-sweep-secs`).
    pub cvc_sweep: Duration,
    /// Sweeps of cards whose token expired (`--token-sweep-secs`, `--token-sweep-batch`).
    pub token_sweep: SweepConfig,
    /// Between checks of the keyring against the store, for key changes made by other
    /// replicas (`--key-sync-secs`).
    pub key_sync: Duration,
    /// Between signed checkpoints of the audit chain head, taken only when it moved and
    /// only with a checkpoint file (`--audit-checkpoint-interval-secs`).
    pub audit_checkpoint: Duration,
}

/// Start the vault's background work on the runtime; each task runs until the process
/// ends. Call once, before serving: the tasks wait for the vault to be unsealed where
/// they need keys, and resume a re-encryption job a killed process left running.
pub fn spawn_background_tasks(vault: &Arc<Vault>, schedule: &BackgroundSchedule) {
    match vault.checkpoints.path() {
        Some(path) => {
            let every_secs = schedule.audit_checkpoint.as_secs();
            tracing::info!(file = %path.display(), every_secs, "audit checkpoints on");
            tokio::spawn(run_periodic_checkpoints(
                vault.store.clone(),
                vault.keys.clone(),
                vault.checkpoints.clone(),
                schedule.audit_checkpoint,
            ));
        }
        None => {
            tracing::warn!("no --audit-checkpoint-file: the audit log's head is not checkpointed outside the database")
        }
    }
    tokio::spawn(retention::run_cvc_sweeper(vault.store.clone(), schedule.cvc_sweep));
    tokio::spawn(retention::run_token_sweeper(vault.clone(), schedule.token_sweep));
    tokio::spawn(lifecycle::run_key_sync(vault.clone(), schedule.key_sync));
    tokio::spawn(lifecycle::run_reencryption(vault.clone()));
}

/// Serve the vault's API on a bound `listener` over mTLS until `shutdown` completes:
/// request bodies up to `max_body_bytes`, connections under `limits`, the CRL file (if
/// any) watched meanwhile. Once the loop has stopped, the records appended since the
/// last checkpoint get a last one (with a checkpoint file and an unsealed vault).
pub async fn run(
    listener: TcpListener,
    tls: VaultTls,
    vault: Arc<Vault>,
    max_body_bytes: usize,
    limits: TransportLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving the vault API over mTLS");
    let options = ServeOptions { limits, client_certificates: Some(tls.client_certificates.clone()) };
    let app = api::router(vault.clone(), max_body_bytes);
    tokio::select! {
        served = serve_mtls(listener, tls.config, app, options, shutdown) => served?,
        () = tls.client_certificates.watch_crl(CRL_POLL_INTERVAL) => {}
    }
    if let (true, Some(keyring)) = (vault.checkpoints.has_file(), vault.keys.get()) {
        if let Err(e) = vault.checkpoints.emit(vault.store.as_ref(), &keyring, CheckpointReason::Shutdown, true).await {
            tracing::error!(error = %e, "shutdown audit checkpoint failed");
        }
    }
    Ok(())
}

/// Serve `app` on `listener` over mTLS until `shutdown` completes, each connection
/// admitted only when its client certificate names a principal.
pub async fn serve_mtls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let admit = |cert: Option<&rustls_pki_types::CertificateDer<'_>>| match principal_from_cert(cert?) {
        Ok(principal) => Some(principal),
        Err(refusal) => {
            tracing::info!(reason = %refusal, "client certificate names no principal");
            None
        }
    };
    paysys_server::serve_with(listener, Some(tls), app, admit, options, shutdown).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::checkpoint::CheckpointSink;
    use crate::committer::Committer;
    use crate::keyring::KeyState;
    use crate::lifecycle::{Lifecycle, LifecycleConfig};
    use crate::rate_limit::{MerchantRateLimiter, RateLimit};
    use paysys::pki::{CertificateAuthority, IssueRequest};
    use paysys_policies::Policy;
    use paysys_vault_client::{ClientTls, HttpVersion};

    #[tokio::test]
    async fn run_serves_the_api_in_process_over_mtls_until_shutdown() {
        let dir = std::env::temp_dir().join(format!("paysys-vault-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = CertificateAuthority::generate("Test CA").unwrap();
        ca.write(&dir.join("ca.pem"), &dir.join("ca.key")).unwrap();
        ca.issue(&IssueRequest::server()).unwrap().write(&dir.join("vault.pem"), &dir.join("vault.key")).unwrap();
        let client = ca.issue(&IssueRequest::client("spiffe://paysys/gateway")).unwrap();
        client.write(&dir.join("gateway.pem"), &dir.join("gateway.key")).unwrap();

        let tls = crate::tls::server_config(&dir.join("vault.pem"), &dir.join("vault.key"), &dir.join("ca.pem"), None)
            .unwrap();
        let store = crate::store::open(&format!("sqlite:{}", dir.join("vault.db").display())).await.unwrap();
        store.migrate().await.unwrap();
        let keys = Arc::new(KeyState::default());
        let vault = Arc::new(Vault {
            committer: Committer::start(store.clone(), keys.clone()),
            store,
            keys,
            policy: Arc::new(Policy::from_toml(paysys_policies::DEV_POLICY).unwrap()),
            cvc_ttl_ms: 600_000,
            relay: None,
            lifecycle: Arc::new(Lifecycle::new(LifecycleConfig::default())),
            removal_limit: MerchantRateLimiter::new(RateLimit { per_second: 1.0, burst: 1 }),
            checkpoints: Arc::new(CheckpointSink::open(None).unwrap()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(run(listener, tls, vault, 16 * 1024, TransportLimits::default(), async {
            let _ = stopped.await;
        }));

        let client_tls = ClientTls::new(
            &dir.join("ca.pem"),
            Some((&dir.join("gateway.pem"), &dir.join("gateway.key"))),
            HttpVersion::Http1,
        )
        .unwrap();
        let mut connection = client_tls.connect(&url).await.unwrap();
        let health = connection.call("GET", "/v1/sys/health", None).await.unwrap();
        assert_eq!(health.status, 200);
        assert_eq!(health.body, serde_json::json!({ "status": "ok", "sealed": true }));

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), served).await.unwrap().unwrap().unwrap();
        assert!(client_tls.connect(&url).await.is_err(), "the listener is closed once run returns");
        let _ = std::fs::remove_dir_all(dir);
    }
}
