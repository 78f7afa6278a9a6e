//! Server TLS for the merchant API: rustls with the ring provider, HTTP/2 and HTTP/1.1
//! by ALPN. Merchants authenticate with the Auth header, not client certificates.

use anyhow::Context;
use paysys_server::tls_files::{install_crypto_provider, read_certificates, read_private_key};
use rustls::ServerConfig;
use std::path::Path;
use std::sync::Arc;

/// Our certificate and key.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    install_crypto_provider();
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(read_certificates(cert)?, read_private_key(key)?)
        .context("loading the gateway's server certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
