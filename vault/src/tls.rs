//! mTLS for the vault's internal API: every client must present a certificate issued
//! by the PaySys CA with the clientAuth usage, or the handshake fails. The identity in
//! the certificate (URI SAN, e.g. `spiffe://paysys/gateway`) becomes the request's
//! [`Principal`].

use anyhow::Context;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The authenticated caller: the identity from its client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

impl Principal {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Install ring as rustls's process-wide crypto provider (PaySys builds rustls with
/// ring only). Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(crate) fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading certificate {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificate {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

pub(crate) fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("reading key {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("parsing key {}", path.display()))?
        .with_context(|| format!("no private key in {}", path.display()))
}

/// The server configuration: our certificate, client certificates required and
/// verified against `client_ca`, HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    install_crypto_provider();
    let mut roots = RootCertStore::empty();
    for ca in read_certs(client_ca)? {
        roots.add(ca).context("adding the client CA")?;
    }
    // `build()` refuses an empty root store; anonymous clients are never allowed.
    let verifier =
        WebPkiClientVerifier::builder(Arc::new(roots)).build().context("building the client certificate verifier")?;
    let mut config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(cert)?, read_key(key)?)
        .context("loading the vault's server certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The principal named by a verified client certificate: its first URI SAN, else its
/// first DNS SAN, else its subject common name.
pub fn principal_from_cert(cert: &CertificateDer<'_>) -> Option<Principal> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        let names = &san.value.general_names;
        if let Some(uri) = names.iter().find_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        }) {
            return Some(Principal(uri.to_owned()));
        }
        if let Some(dns) = names.iter().find_map(|n| match n {
            GeneralName::DNSName(d) => Some(*d),
            _ => None,
        }) {
            return Some(Principal(dns.to_owned()));
        }
    }
    let common_name = parsed.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    common_name.map(Principal)
}
