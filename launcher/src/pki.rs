//! A development PKI made with rcgen: one CA; server certificates for `localhost` /
//! `127.0.0.1`; client certificates whose URI SAN is the caller's principal
//! (`spiffe://paysys/gateway`), which is what the vault's policy matches on.
//!
//! Negative tests need certificates the vault must refuse; [`IssueRequest`] makes them
//! explicitly — [`expired`](IssueRequest::expired),
//! [`without_client_auth`](IssueRequest::without_client_auth) — and a second
//! [`CertificateAuthority::generate`] gives a certificate from another CA:
//!
//! ```
//! use paysys::pki::{CertificateAuthority, IssueRequest};
//!
//! let ca = CertificateAuthority::generate("PaySys Test CA")?;
//! let gateway = ca.issue(&IssueRequest::client("spiffe://paysys/gateway"))?;
//! let stale = ca.issue(&IssueRequest::client("spiffe://paysys/gateway").expired())?;
//! let wrong_usage = ca.issue(&IssueRequest::client("spiffe://paysys/gateway").without_client_auth())?;
//! let stranger = CertificateAuthority::generate("Someone Else's CA")?
//!     .issue(&IssueRequest::client("spiffe://paysys/gateway"))?;
//! assert!(gateway.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
//! assert_eq!(format!("{:?}", gateway.key()), "PrivateKeyPem([REDACTED])");
//! # let _ = (stale, wrong_usage, stranger);
//! # Ok::<(), paysys::pki::PkiError>(())
//! ```
//!
//! [`init_dev_pki`] writes the certificate files of the dev stack once and reuses them
//! on every later run, so clients configured with them keep working.

use crate::files::{self, PRIVATE, PUBLIC};
use anyhow::Context;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Ia5String, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Principal of the gateway's client certificate.
pub const GATEWAY_PRINCIPAL: &str = "spiffe://paysys/gateway";
/// The security officers (key custodians) of the dev stack; dual control needs two.
pub const DEV_OFFICERS: [&str; 2] = ["alice", "bob"];
/// Merchant of the dev stack unless told otherwise.
pub const DEFAULT_MERCHANT_ID: &str = "m_dev";
/// Subject common name of the CA that [`init_dev_pki`] creates.
pub const DEV_CA_NAME: &str = "PaySys Dev CA (not for production)";

/// How long issued certificates are valid; a dev stack is re-created long before.
const LEAF_VALIDITY: Duration = Duration::days(365);
const CA_VALIDITY: Duration = Duration::days(3650);
/// Certificates start slightly in the past so that a peer whose clock is a little
/// behind still accepts them.
const BACKDATE: Duration = Duration::minutes(5);
/// Longest common name X.509 allows (`ub-common-name`).
const MAX_COMMON_NAME: usize = 64;

/// Principal of officer `name`'s client certificate.
pub fn officer_principal(name: &str) -> String {
    format!("spiffe://paysys/officer/{name}")
}

/// Principal of merchant `id`'s client certificate; the policy reads the last path
/// segment as the merchant id.
pub fn merchant_principal(id: &str) -> String {
    format!("spiffe://paysys/merchant/{id}")
}

/// Why a certificate could not be made or a CA could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen could not generate a key or sign a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(rcgen::Error),
    /// The principal cannot be a URI SAN: it is not ASCII, or has no `scheme://`.
    #[error("invalid principal {principal:?}: {reason}")]
    InvalidPrincipal {
        /// The principal as given.
        principal: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CA certificate or key PEM could not be parsed.
    #[error("cannot load the CA: {0}")]
    LoadCa(rcgen::Error),
    /// The CA key is not the key of the CA certificate (its key identifier differs).
    #[error("the CA key does not belong to the CA certificate")]
    CaKeyMismatch,
    /// A certificate or key file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A certificate or key file could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A private key in PEM (PKCS#8). Read it with [`expose_secret`](Self::expose_secret);
/// `Debug` prints `[REDACTED]`; it is not `Clone`, and its buffer is overwritten when
/// dropped.
pub struct PrivateKeyPem(String);

impl PrivateKeyPem {
    /// Wrap a PEM private key, e.g. read from a file.
    pub fn new(pem: String) -> Self {
        PrivateKeyPem(pem)
    }

    /// The PEM text: for writing it to a file or handing it to a TLS library.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem([REDACTED])")
    }
}

impl Drop for PrivateKeyPem {
    fn drop(&mut self) {
        // Best effort without `zeroize`: the launcher writes these keys to disk anyway,
        // but no copy should outlive its use in memory. `black_box` keeps the writes.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
    }
}

/// A certificate and its private key, as issued by a [`CertificateAuthority`].
#[derive(Debug)]
pub struct IssuedCertificate {
    cert_pem: String,
    key: PrivateKeyPem,
}

impl IssuedCertificate {
    /// The certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key (PEM, PKCS#8, ECDSA P-256).
    pub fn key(&self) -> &PrivateKeyPem {
        &self.key
    }

    /// Write the certificate (mode 0644) and the key (mode 0600), replacing existing
    /// files.
    pub fn write(&self, cert: &Path, key: &Path) -> Result<(), PkiError> {
        // Key first: a certificate on disk always has its key next to it.
        write_file(key, self.key.expose_secret(), PRIVATE)?;
        write_file(cert, &self.cert_pem, PUBLIC)
    }
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    files::write_atomically(path, contents.as_bytes(), mode)
        .map_err(|source| PkiError::Write { path: path.to_owned(), source })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Server,
    Client { principal: String },
}

/// What to issue: a server certificate ([`server`](Self::server)) or a client
/// certificate for a principal ([`client`](Self::client)), valid for a year — or one
/// of the broken variants that negative tests need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    role: Role,
    expired: bool,
    client_auth: bool,
}

impl IssueRequest {
    /// A server certificate: SAN DNS `localhost` and IP `127.0.0.1`, EKU serverAuth.
    pub fn server() -> Self {
        IssueRequest { role: Role::Server, expired: false, client_auth: false }
    }

    /// A client certificate for `principal` (its URI SAN, e.g.
    /// `spiffe://paysys/gateway`), EKU clientAuth.
    pub fn client(principal: impl Into<String>) -> Self {
        IssueRequest { role: Role::Client { principal: principal.into() }, expired: false, client_auth: true }
    }

    /// FOR NEGATIVE TESTS: valid from 30 days ago until yesterday.
    pub fn expired(mut self) -> Self {
        self.expired = true;
        self
    }

    /// FOR NEGATIVE TESTS: a client certificate with EKU serverAuth only, which a
    /// server verifying clients must refuse. No effect on a server certificate.
    pub fn without_client_auth(mut self) -> Self {
        self.client_auth = false;
        self
    }

    fn params(&self, now: OffsetDateTime, ca_not_after: OffsetDateTime) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let mut name = DistinguishedName::new();
        match &self.role {
            Role::Server => {
                name.push(DnType::CommonName, "localhost");
                params.subject_alt_names =
                    vec![SanType::DnsName(ia5("localhost")?), SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            Role::Client { principal } => {
                if !principal.contains("://") {
                    return Err(PkiError::InvalidPrincipal {
                        principal: principal.clone(),
                        reason: "a principal is a URI such as spiffe://paysys/gateway",
                    });
                }
                if principal.len() <= MAX_COMMON_NAME {
                    name.push(DnType::CommonName, principal.as_str());
                }
                let uri = Ia5String::try_from(principal.as_str()).map_err(|_| PkiError::InvalidPrincipal {
                    principal: principal.clone(),
                    reason: "a URI SAN must be ASCII",
                })?;
                params.subject_alt_names = vec![SanType::URI(uri)];
                params.extended_key_usages = if self.client_auth {
                    vec![ExtendedKeyUsagePurpose::ClientAuth]
                } else {
                    vec![ExtendedKeyUsagePurpose::ServerAuth]
                };
            }
        }
        params.distinguished_name = name;
        if self.expired {
            params.not_before = now - Duration::days(30);
            params.not_after = now - Duration::days(1);
        } else {
            params.not_before = now - BACKDATE;
            // Never outlive the CA: a chain is only as valid as its shortest link.
            params.not_after = (now + LEAF_VALIDITY).min(ca_not_after);
        }
        Ok(params)
    }
}

fn ia5(s: &str) -> Result<Ia5String, PkiError> {
    Ia5String::try_from(s).map_err(PkiError::Generate)
}

/// 16 random bytes, positive and without a leading zero byte (DER wants minimal
/// integers; RFC 5280 wants positive serials of at most 20 bytes).
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn new_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(PkiError::Generate)
}

/// A certificate authority that signs with its key in memory. `Debug` shows only
/// the certificate's validity, never the key.
pub struct CertificateAuthority {
    /// What rcgen signs with: the CA's subject, key identifier and validity. For a CA
    /// loaded from PEM this is a re-signed copy; [`cert_pem`](Self::cert_pem) is the
    /// original.
    issuer: rcgen::Certificate,
    key: KeyPair,
    cert_pem: String,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // rcgen's KeyPair derives Debug over its private key bytes: never print it.
        let params = self.issuer.params();
        f.debug_struct("CertificateAuthority")
            .field("not_after", &params.not_after)
            .field("key", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A fresh CA named `common_name`: ECDSA P-256, valid for ten years, allowed to
    /// sign end-entity certificates only (path length 0).
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let key = new_key()?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        let issuer = params.self_signed(&key).map_err(PkiError::Generate)?;
        let cert_pem = issuer.pem();
        Ok(CertificateAuthority { issuer, key, cert_pem })
    }

    /// A CA kept on disk: its certificate and its key (PEM). Certificates it issues
    /// chain to `cert_pem` exactly as before.
    pub fn from_pem(cert_pem: &str, key_pem: &PrivateKeyPem) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem.expose_secret()).map_err(PkiError::LoadCa)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem).map_err(PkiError::LoadCa)?;
        // `params` carries the certificate's subject key identifier; our key must
        // derive the same one, or everything issued would fail to verify.
        let derived = CertificateParams::default().self_signed(&key).map_err(PkiError::LoadCa)?;
        let issuer = params.self_signed(&key).map_err(PkiError::LoadCa)?;
        if issuer.key_identifier() != derived.key_identifier() {
            return Err(PkiError::CaKeyMismatch);
        }
        Ok(CertificateAuthority { issuer, key, cert_pem: cert_pem.to_owned() })
    }

    /// A CA kept in files (as [`write`](Self::write) leaves them), e.g. the dev CA:
    /// `DevPki::ca_cert` and `DevPki::ca_key()`.
    pub fn read_files(cert: &Path, key: &Path) -> Result<Self, PkiError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| PkiError::Read { path: path.to_owned(), source })
        };
        let cert_pem = read(cert)?;
        let key_pem = PrivateKeyPem(read(key)?);
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// The CA certificate (PEM): what servers and clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key (PEM), to keep it for issuing later.
    pub fn key_pem(&self) -> PrivateKeyPem {
        PrivateKeyPem(self.key.serialize_pem())
    }

    /// Write the CA certificate (mode 0644) and key (mode 0600), replacing existing
    /// files.
    pub fn write(&self, cert: &Path, key: &Path) -> Result<(), PkiError> {
        write_file(key, self.key_pem().expose_secret(), PRIVATE)?;
        write_file(cert, &self.cert_pem, PUBLIC)
    }

    /// Issue a certificate with a fresh ECDSA P-256 key.
    pub fn issue(&self, request: &IssueRequest) -> Result<IssuedCertificate, PkiError> {
        let params = request.params(OffsetDateTime::now_utc(), self.issuer.params().not_after)?;
        let key = new_key()?;
        let cert = params.signed_by(&key, &self.issuer, &self.key).map_err(PkiError::Generate)?;
        Ok(IssuedCertificate { cert_pem: cert.pem(), key: PrivateKeyPem(key.serialize_pem()) })
    }
}

/// A server certificate and key on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCertFiles {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, mode 0600).
    pub key: PathBuf,
}

/// A client certificate and key on disk, and the principal they authenticate as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCertFiles {
    /// The certificate's URI SAN.
    pub principal: String,
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, mode 0600).
    pub key: PathBuf,
}

/// A merchant's client certificate and key on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantCertFiles {
    /// The merchant id (the last segment of the principal).
    pub id: String,
    /// `spiffe://paysys/merchant/<id>`.
    pub principal: String,
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, mode 0600).
    pub key: PathBuf,
}

/// The dev stack's certificate files (absolute paths), as they appear under `pki` in
/// `stack.json`. All are issued by the CA in [`ca_cert`](Self::ca_cert).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevPki {
    /// The CA certificate every service and client trusts.
    pub ca_cert: PathBuf,
    /// The vault's server certificate.
    pub vault_server: ServerCertFiles,
    /// The gateway's client certificate ([`GATEWAY_PRINCIPAL`]).
    pub gateway: ClientCertFiles,
    /// Officers' client certificates by name ([`DEV_OFFICERS`]).
    pub officers: BTreeMap<String, ClientCertFiles>,
    /// The dev merchant's client certificate.
    pub merchant: MerchantCertFiles,
    /// The sandbox's server certificate.
    pub sandbox_server: ServerCertFiles,
}

impl DevPki {
    /// The CA's private key, next to [`ca_cert`](Self::ca_cert). Deliberately not in
    /// `stack.json`: nothing but the launcher needs it.
    pub fn ca_key(&self) -> PathBuf {
        self.ca_cert.with_file_name("ca.key")
    }
}

/// Check that `id` can be a merchant id: one principal path segment (letters, digits,
/// `-_.~`, as the policy requires) and a safe file name.
pub fn validate_merchant_id(id: &str) -> anyhow::Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~');
    anyhow::ensure!(
        !id.is_empty() && id.len() <= 64 && id.chars().all(allowed) && id != "." && id != "..",
        "invalid merchant id {id:?}: use 1 to 64 letters, digits, '-', '_', '.' or '~'"
    );
    Ok(())
}

/// The CA of [`init_dev_pki`], loaded from disk only once something must be issued.
struct LazyCa<'a> {
    cert: &'a Path,
    key: &'a Path,
    ca: Option<CertificateAuthority>,
}

impl LazyCa<'_> {
    fn get(&mut self) -> anyhow::Result<&CertificateAuthority> {
        let ca = match self.ca.take() {
            Some(ca) => ca,
            None => self.load()?,
        };
        Ok(self.ca.insert(ca))
    }

    fn load(&self) -> anyhow::Result<CertificateAuthority> {
        // The CA key is needed only when a certificate is missing.
        CertificateAuthority::read_files(self.cert, self.key)
            .with_context(|| format!("loading the dev CA to issue missing certificates from {}", self.cert.display()))
    }
}

/// Create the dev PKI under `dir/pki/`, or reuse it.
///
/// If `dir/pki/ca.pem` does not exist, a new CA is made and every certificate is issued
/// (replacing any older files, which would chain to a CA that is gone). Otherwise
/// every existing certificate/key pair is reused as it is, and only a missing one (say,
/// `merchant-<id>` for a new merchant id) is issued from the CA on disk — so clients
/// configured with the old files keep working.
///
/// Files: `ca.pem` + `ca.key`; server certificates `vault.pem`, `sandbox.pem`; client
/// certificates `gateway.pem`, `officer-alice.pem`, `officer-bob.pem`,
/// `merchant-<id>.pem`; each with its `.key` (mode 0600). The directory is 0700.
pub fn init_dev_pki(dir: &Path, merchant_id: &str) -> anyhow::Result<DevPki> {
    validate_merchant_id(merchant_id)?;
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let pki_dir = dir.join("pki");
    files::create_private_dir(&pki_dir).with_context(|| format!("creating {}", pki_dir.display()))?;

    let ca_cert = pki_dir.join("ca.pem");
    let ca_key = pki_dir.join("ca.key");
    let fresh = !ca_cert.exists();
    let mut ca = LazyCa { cert: &ca_cert, key: &ca_key, ca: None };
    if fresh {
        let new_ca = CertificateAuthority::generate(DEV_CA_NAME)?;
        new_ca.write(&ca_cert, &ca_key)?;
        ca.ca = Some(new_ca);
    }

    let mut ensure = |name: &str, request: IssueRequest| -> anyhow::Result<(PathBuf, PathBuf)> {
        let cert = pki_dir.join(format!("{name}.pem"));
        let key = pki_dir.join(format!("{name}.key"));
        if fresh || !(cert.exists() && key.exists()) {
            ca.get()?.issue(&request)?.write(&cert, &key)?;
        }
        Ok((cert, key))
    };

    let (cert, key) = ensure("vault", IssueRequest::server())?;
    let vault_server = ServerCertFiles { cert, key };
    let (cert, key) = ensure("sandbox", IssueRequest::server())?;
    let sandbox_server = ServerCertFiles { cert, key };
    let (cert, key) = ensure("gateway", IssueRequest::client(GATEWAY_PRINCIPAL))?;
    let gateway = ClientCertFiles { principal: GATEWAY_PRINCIPAL.to_owned(), cert, key };
    let mut officers = BTreeMap::new();
    for officer in DEV_OFFICERS {
        let principal = officer_principal(officer);
        let (cert, key) = ensure(&format!("officer-{officer}"), IssueRequest::client(principal.clone()))?;
        officers.insert(officer.to_owned(), ClientCertFiles { principal, cert, key });
    }
    let principal = merchant_principal(merchant_id);
    let (cert, key) = ensure(&format!("merchant-{merchant_id}"), IssueRequest::client(principal.clone()))?;
    let merchant = MerchantCertFiles { id: merchant_id.to_owned(), principal, cert, key };

    Ok(DevPki { ca_cert, vault_server, gateway, officers, merchant, sandbox_server })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_dir::TempDir;
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::GeneralName;
    use x509_parser::pem::Pem;

    fn pem(text: &str) -> Pem {
        let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes()).unwrap();
        pem
    }

    fn uris(cert: &X509Certificate<'_>) -> Vec<String> {
        let san = cert.subject_alternative_name().unwrap().unwrap();
        san.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(u.to_string()),
                _ => None,
            })
            .collect()
    }

    fn is_signed_by(cert: &X509Certificate<'_>, ca_pem: &str) -> bool {
        let ca_pem = pem(ca_pem);
        let ca = ca_pem.parse_x509().unwrap();
        cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
    }

    #[test]
    fn server_certificate_names_localhost_and_serves_only() {
        let ca = CertificateAuthority::generate("Test CA").unwrap();
        let issued = ca.issue(&IssueRequest::server()).unwrap();
        let pem = pem(issued.cert_pem());
        let cert = pem.parse_x509().unwrap();

        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(san.value.general_names.contains(&GeneralName::DNSName("localhost")));
        assert!(san.value.general_names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        assert!(!cert.is_ca());
        assert!(cert.validity().is_valid());
        assert!(is_signed_by(&cert, ca.cert_pem()));
        assert!(issued.key().expose_secret().starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn client_certificate_carries_the_principal_and_client_auth() {
        let ca = CertificateAuthority::generate("Test CA").unwrap();
        let issued = ca.issue(&IssueRequest::client("spiffe://paysys/gateway")).unwrap();
        let pem = pem(issued.cert_pem());
        let cert = pem.parse_x509().unwrap();

        assert_eq!(uris(&cert), ["spiffe://paysys/gateway"]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(cert.validity().is_valid());
        let remaining = cert.validity().time_to_expiration().unwrap();
        assert!(remaining > Duration::days(364) && remaining <= LEAF_VALIDITY);
        assert!(is_signed_by(&cert, ca.cert_pem()));
    }

    #[test]
    fn ca_certificate_is_a_constrained_ca() {
        let ca = CertificateAuthority::generate("Test CA").unwrap();
        let pem = pem(ca.cert_pem());
        let cert = pem.parse_x509().unwrap();
        assert!(cert.is_ca());
        let constraints = cert.basic_constraints().unwrap().unwrap().value;
        assert_eq!(constraints.path_len_constraint, Some(0));
        assert!(cert.key_usage().unwrap().unwrap().value.key_cert_sign());
        assert_eq!(cert.subject().iter_common_name().next().unwrap().as_str().unwrap(), "Test CA");
    }

    #[test]
    fn expired_certificate_ended_in_the_past() {
        let ca = CertificateAuthority::generate("Test CA").unwrap();
        let issued = ca.issue(&IssueRequest::client("spiffe://paysys/gateway").expired()).unwrap();
        let pem = pem(issued.cert_pem());
        let cert = pem.parse_x509().unwrap();
        assert!(!cert.validity().is_valid());
        assert!(cert.validity().not_after.timestamp() < OffsetDateTime::now_utc().unix_timestamp());
        // Everything else is right, so a refusal can only be about the dates.
        assert_eq!(uris(&cert), ["spiffe://paysys/gateway"]);
        assert!(cert.extended_key_usage().unwrap().unwrap().value.client_auth);
        assert!(is_signed_by(&cert, ca.cert_pem()));
    }

    #[test]
    fn certificate_without_client_auth_only_serves() {
        let ca = CertificateAuthority::generate("Test CA").unwrap();
        let issued = ca.issue(&IssueRequest::client("spiffe://paysys/gateway").without_client_auth()).unwrap();
        let pem = pem(issued.cert_pem());
        let cert = pem.parse_x509().unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        assert_eq!(uris(&cert), ["spiffe://paysys/gateway"]);
        assert!(cert.validity().is_valid());
        assert!(is_signed_by(&cert, ca.cert_pem()));
    }

    #[test]
    fn certificate_from_another_ca_does_not_chain_to_ours() {
        let ours = CertificateAuthority::generate("PaySys Test CA").unwrap();
        let theirs = CertificateAuthority::generate("Other CA").unwrap();
        let issued = theirs.issue(&IssueRequest::client("spiffe://paysys/gateway")).unwrap();
        let pem = pem(issued.cert_pem());
        let cert = pem.parse_x509().unwrap();
        assert!(is_signed_by(&cert, theirs.cert_pem()));
        assert!(!is_signed_by(&cert, ours.cert_pem()));
    }

    #[test]
    fn principals_must_be_ascii_uris() {
        let ca = CertificateAuthority::generate("Test CA").unwrap();
        assert!(matches!(ca.issue(&IssueRequest::client("gateway")), Err(PkiError::InvalidPrincipal { .. })));
        assert!(matches!(
            ca.issue(&IssueRequest::client("spiffe://paysys/merchant/é")),
            Err(PkiError::InvalidPrincipal { .. })
        ));
    }

    #[test]
    fn keys_never_show_in_debug() {
        let ca = CertificateAuthority::generate("Test CA").unwrap();
        let issued = ca.issue(&IssueRequest::server()).unwrap();
        assert_eq!(format!("{:?}", issued.key()), "PrivateKeyPem([REDACTED])");
        assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
        let ca_debug = format!("{ca:?}");
        assert!(ca_debug.contains("[REDACTED]") && !ca_debug.contains("PRIVATE KEY"), "{ca_debug}");
    }

    #[test]
    fn a_reloaded_ca_issues_certificates_that_chain_to_the_original() {
        let ca = CertificateAuthority::generate("Test CA").unwrap();
        let reloaded = CertificateAuthority::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(reloaded.cert_pem(), ca.cert_pem());
        let issued = reloaded.issue(&IssueRequest::client("spiffe://paysys/officer/alice")).unwrap();
        let pem = pem(issued.cert_pem());
        assert!(is_signed_by(&pem.parse_x509().unwrap(), ca.cert_pem()));
    }

    #[test]
    fn a_ca_refuses_a_key_that_is_not_its_own() {
        let ca = CertificateAuthority::generate("Test CA").unwrap();
        let other = CertificateAuthority::generate("Test CA").unwrap();
        assert!(matches!(
            CertificateAuthority::from_pem(ca.cert_pem(), &other.key_pem()),
            Err(PkiError::CaKeyMismatch)
        ));
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    fn principal_of(cert_file: &Path) -> Vec<String> {
        let pem = pem(&read(cert_file));
        let cert = pem.parse_x509().unwrap();
        uris(&cert)
    }

    #[test]
    fn init_dev_pki_writes_every_certificate_with_private_keys() {
        let tmp = TempDir::new("pki");
        let pki = init_dev_pki(&tmp.0, "m_dev").unwrap();
        let pki_dir = tmp.0.join("pki");
        assert_eq!(mode(&pki_dir), 0o700);
        assert_eq!(pki.ca_cert, pki_dir.join("ca.pem"));
        assert_eq!(mode(&pki.ca_key()), 0o600);

        let ca = read(&pki.ca_cert);
        let mut keys = vec![pki.ca_key(), pki.vault_server.key.clone(), pki.sandbox_server.key.clone()];
        for server in [&pki.vault_server, &pki.sandbox_server] {
            let pem = pem(&read(&server.cert));
            let cert = pem.parse_x509().unwrap();
            assert!(cert.extended_key_usage().unwrap().unwrap().value.server_auth);
            assert!(is_signed_by(&cert, &ca));
        }
        let mut clients = vec![&pki.gateway];
        clients.extend(pki.officers.values());
        for client in clients {
            assert_eq!(principal_of(&client.cert), [client.principal.as_str()]);
            keys.push(client.key.clone());
        }
        assert_eq!(pki.gateway.principal, "spiffe://paysys/gateway");
        assert_eq!(pki.officers.keys().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(pki.officers["bob"].principal, "spiffe://paysys/officer/bob");
        assert_eq!(pki.merchant.id, "m_dev");
        assert_eq!(pki.merchant.cert, pki_dir.join("merchant-m_dev.pem"));
        assert_eq!(principal_of(&pki.merchant.cert), ["spiffe://paysys/merchant/m_dev"]);
        keys.push(pki.merchant.key.clone());

        for key in keys {
            assert!(key.is_absolute());
            assert_eq!(mode(&key), 0o600, "{}", key.display());
        }
        assert_eq!(mode(&pki.ca_cert), 0o644);
    }

    #[test]
    fn init_dev_pki_reuses_what_exists_and_issues_what_is_missing() {
        let tmp = TempDir::new("pki-reuse");
        let first = init_dev_pki(&tmp.0, "m_dev").unwrap();
        let ca = read(&first.ca_cert);
        let gateway = read(&first.gateway.cert);

        let second = init_dev_pki(&tmp.0, "m_dev").unwrap();
        assert_eq!(second, first);
        assert_eq!(read(&second.ca_cert), ca);
        assert_eq!(read(&second.gateway.cert), gateway);

        // A lost certificate and a new merchant are issued by the same CA.
        std::fs::remove_file(&first.officers["alice"].cert).unwrap();
        let third = init_dev_pki(&tmp.0, "m_other").unwrap();
        assert_eq!(read(&third.ca_cert), ca);
        assert_eq!(read(&third.gateway.cert), gateway);
        for cert in [&third.officers["alice"].cert, &third.merchant.cert] {
            let pem = pem(&read(cert));
            assert!(is_signed_by(&pem.parse_x509().unwrap(), &ca));
        }
        assert_eq!(principal_of(&third.merchant.cert), ["spiffe://paysys/merchant/m_other"]);
        assert_eq!(mode(&third.merchant.key), 0o600);
        assert!(first.merchant.cert.exists(), "the old merchant's files stay");
    }

    #[test]
    fn init_dev_pki_refuses_merchant_ids_that_are_not_one_segment() {
        let tmp = TempDir::new("pki-bad-id");
        for id in ["", "a/b", "..", "m 1", "m_é"] {
            assert!(init_dev_pki(&tmp.0, id).is_err(), "{id:?}");
        }
        assert!(!tmp.0.join("pki").exists());
    }
}
