//! The TLS material a service loads at start: rustls's crypto provider, and its
//! certificate chain and private key from PEM files.
//!
//! Shared because the vault, the gateway, the sandbox and the vault client each did
//! this themselves: one place decides that PaySys runs rustls on ring only, and one
//! place words what is wrong with a certificate or key file.

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// Install ring as rustls's process-wide crypto provider (PaySys builds rustls with
/// ring only). Safe to call more than once: the first call wins, later ones do nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why a certificate or key file could not be loaded. The `Display` names the file; the
/// I/O or PEM error is the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFileError {
    /// The file could not be read.
    #[error("reading {what} {}", path.display())]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("parsing {what} {}", path.display())]
    Parse {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        source: std::io::Error,
    },
    /// The file holds no `CERTIFICATE` block.
    #[error("no certificate in {}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no private key block (PKCS #8, PKCS #1 or SEC1).
    #[error("no private key in {}", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
}

/// Every certificate in the PEM file at `path` (a chain: the end entity first), at
/// least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let pem = read(path, "certificate")?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsFileError::Parse { what: "certificate", path: path.to_owned(), source })?;
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

/// The first private key in the PEM file at `path`.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let pem = zeroize::Zeroizing::new(read(path, "key")?);
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsFileError::Parse { what: "key", path: path.to_owned(), source })?
        .ok_or_else(|| TlsFileError::NoPrivateKey { path: path.to_owned() })
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read { what, path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("paysys-tls-files-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// The error with its sources, as `anyhow`'s `{:#}` prints it.
    fn chain(e: &TlsFileError) -> String {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    }

    #[test]
    fn a_generated_certificate_and_key_load() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        let cert_path = temp_file("cert.pem", &cert.pem());
        let key_path = temp_file("key.pem", &key.serialize_pem());
        assert_eq!(read_certificates(&cert_path).unwrap().len(), 1);
        assert!(matches!(read_private_key(&key_path).unwrap(), PrivateKeyDer::Pkcs8(_)));
        // Each file holds only what it should.
        assert!(matches!(read_certificates(&key_path), Err(TlsFileError::NoCertificate { .. })));
        assert!(matches!(read_private_key(&cert_path), Err(TlsFileError::NoPrivateKey { .. })));
        let _ = std::fs::remove_file(cert_path);
        let _ = std::fs::remove_file(key_path);
    }

    #[test]
    fn errors_name_the_file_and_what_was_wrong() {
        let missing = Path::new("/nonexistent/paysys/cert.pem");
        let e = read_certificates(missing).unwrap_err();
        assert!(chain(&e).starts_with("reading certificate /nonexistent/paysys/cert.pem: "), "{}", chain(&e));
        let e = read_private_key(missing).unwrap_err();
        assert_eq!(e.to_string(), "reading key /nonexistent/paysys/cert.pem");
        let broken = temp_file("broken.pem", "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n");
        let e = read_certificates(&broken).unwrap_err();
        assert_eq!(e.to_string(), format!("parsing certificate {}", broken.display()));
        let _ = std::fs::remove_file(broken);
    }
}
