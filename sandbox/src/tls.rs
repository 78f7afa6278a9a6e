//! Server TLS: rustls with the ring provider only. With a client CA, every client must
//! present a certificate from it, not revoked by the CRL if one is given (mTLS,
//! [`ReloadableCrlVerifier`]); without, plain server TLS — the sandbox is a stand-in for
//! an outside network, which authenticates its acquiring clients in its own way.

use anyhow::Context;
use paysys_server::tls_files::{install_crypto_provider, read_certificates, read_private_key};
use paysys_server::ReloadableCrlVerifier;
use rustls::ServerConfig;
use std::path::Path;
use std::sync::Arc;

/// Our certificate and key; client certificates from `client_ca` required when given,
/// checked against the CRL in `client_crl` when given too (the verifier is returned so
/// the caller can watch the CRL and hand it to the accept loop). HTTP/2 and HTTP/1.1 by
/// ALPN.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    client_crl: Option<&Path>,
) -> anyhow::Result<(Arc<ServerConfig>, Option<Arc<ReloadableCrlVerifier>>)> {
    install_crypto_provider();
    let Some(ca) = client_ca else {
        anyhow::ensure!(client_crl.is_none(), "a client CRL needs a client CA (--client-ca)");
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(read_certificates(cert)?, read_private_key(key)?)
            .context("loading the sandbox's server certificate")?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        return Ok((Arc::new(config), None));
    };
    let verifier = ReloadableCrlVerifier::new(ca, client_crl).context("loading the client CA and CRL")?;
    let config = paysys_server::client_auth::mtls_server_config(
        verifier.clone(),
        read_certificates(cert)?,
        read_private_key(key)?,
    )
    .context("loading the sandbox's server certificate")?;
    Ok((config, Some(verifier)))
}
