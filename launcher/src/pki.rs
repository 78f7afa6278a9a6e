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
//! on every later run, so clients configured with them keep working; with them an empty
//! CRL (`crl.pem`), which [`revoke_certificate`] extends: each revocation re-issues it,
//! signed by the CA, with the next CRL number.

use crate::files::{self, PRIVATE, PUBLIC};
use anyhow::Context;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, Ia5String, IsCa, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Principal of the gateway's client certificate.
pub const GATEWAY_PRINCIPAL: &str = "spiffe://paysys/gateway";
/// Principal of the card intake's client certificate (the vault lets it create
/// checkout-bound tokens and nothing else).
pub const INTAKE_PRINCIPAL: &str = "spiffe://paysys/intake";
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
/// How long a CRL says it is current (its next update); `paysys up` re-issues an
/// overdue one, `paysys pki revoke` issues a fresh one.
pub const CRL_VALIDITY: Duration = Duration::days(30);
/// The CRL of a PKI directory: services take it with `--client-crl`.
pub const CRL_FILE: &str = "crl.pem";
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
    /// A CRL (or a certificate to revoke) could not be parsed, or is not this CA's.
    #[error("{0}")]
    Crl(String),
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
    Client {
        principal: String,
    },
    /// Exactly these names, unchecked (negative tests).
    Crafted {
        uris: Vec<String>,
        dns_names: Vec<String>,
        common_name: Option<String>,
    },
}

/// What to issue: a server certificate ([`server`](Self::server)) or a client
/// certificate for a principal ([`client`](Self::client)), valid for a year — or one
/// of the broken variants that negative tests need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    role: Role,
    expired: bool,
    client_auth: bool,
    extended_key_usage: bool,
}

impl IssueRequest {
    /// A server certificate: SAN DNS `localhost` and IP `127.0.0.1`, EKU serverAuth.
    pub fn server() -> Self {
        IssueRequest { role: Role::Server, expired: false, client_auth: false, extended_key_usage: true }
    }

    /// A client certificate for `principal` (its URI SAN, e.g.
    /// `spiffe://paysys/gateway`), EKU clientAuth.
    pub fn client(principal: impl Into<String>) -> Self {
        IssueRequest {
            role: Role::Client { principal: principal.into() },
            expired: false,
            client_auth: true,
            extended_key_usage: true,
        }
    }

    /// FOR NEGATIVE TESTS: a clientAuth certificate with exactly these URI SANs, DNS
    /// SANs and subject common name, none of them checked — two URIs, a URI that is not
    /// a PaySys principal, DNS names only, a common name only.
    pub fn client_with_names(uris: &[&str], dns_names: &[&str], common_name: Option<&str>) -> Self {
        let owned = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect();
        IssueRequest {
            role: Role::Crafted {
                uris: owned(uris),
                dns_names: owned(dns_names),
                common_name: common_name.map(str::to_owned),
            },
            expired: false,
            client_auth: true,
            extended_key_usage: true,
        }
    }

    /// FOR NEGATIVE TESTS: no extended key usage extension at all. Path validation
    /// (webpki) accepts such a certificate for client authentication; the vault's
    /// admission requires the clientAuth usage explicitly.
    pub fn without_extended_key_usage(mut self) -> Self {
        self.extended_key_usage = false;
        self
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
            Role::Crafted { uris, dns_names, common_name } => {
                if let Some(common_name) = common_name {
                    name.push(DnType::CommonName, common_name.as_str());
                }
                for uri in uris {
                    params.subject_alt_names.push(SanType::URI(ia5(uri)?));
                }
                for dns in dns_names {
                    params.subject_alt_names.push(SanType::DnsName(ia5(dns)?));
                }
                params.extended_key_usages = if self.client_auth {
                    vec![ExtendedKeyUsagePurpose::ClientAuth]
                } else {
                    vec![ExtendedKeyUsagePurpose::ServerAuth]
                };
            }
        }
        if !self.extended_key_usage {
            params.extended_key_usages.clear();
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

    /// A CRL (PEM) signed by this CA: number `number`, listing `revoked`, current from
    /// now until [`CRL_VALIDITY`] from now.
    pub fn issue_crl(&self, number: u64, revoked: &[RevokedSerial]) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - BACKDATE,
            next_update: now + CRL_VALIDITY,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|entry| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&entry.serial),
                    revocation_time: entry.revoked_at,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: self.issuer.params().key_identifier_method.clone(),
        };
        let crl = params.signed_by(&self.issuer, &self.key).map_err(PkiError::Generate)?;
        crl.pem().map_err(PkiError::Generate)
    }

    /// What a CRL issued by this CA says; refused if it is not signed by this CA.
    pub fn read_crl(&self, crl_pem: &str) -> Result<CrlContents, PkiError> {
        let bad = |reason: &str| PkiError::Crl(format!("the CRL {reason}"));
        let (_, pem) = x509_parser::pem::parse_x509_pem(crl_pem.as_bytes()).map_err(|_| bad("is not PEM"))?;
        let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).map_err(|_| bad("is malformed"))?;
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes())
            .map_err(|_| PkiError::Crl("the CA certificate is not PEM".into()))?;
        let ca = ca_pem.parse_x509().map_err(|_| PkiError::Crl("the CA certificate is malformed".into()))?;
        if crl.issuer() != ca.subject() || crl.verify_signature(ca.public_key()).is_err() {
            return Err(bad("is not signed by this CA"));
        }
        let number = match crl.crl_number().map(|n| n.to_u64_digits()) {
            Some(digits) if digits.len() <= 1 => digits.first().copied().unwrap_or(0),
            _ => return Err(bad("has no CRL number, or one beyond 64 bits")),
        };
        let revoked = crl
            .iter_revoked_certificates()
            .map(|entry| RevokedSerial {
                serial: entry.raw_serial().to_vec(),
                revoked_at: entry.revocation_date.to_datetime(),
            })
            .collect();
        let next_update = crl.next_update().map(|time| time.to_datetime());
        Ok(CrlContents { number, revoked, next_update })
    }

    /// The serial number of `cert_pem`, a certificate this CA issued; refused if another
    /// CA issued it, or if it is a CA certificate.
    pub fn serial_of(&self, cert_pem: &str) -> Result<Vec<u8>, PkiError> {
        let bad = |reason: &str| PkiError::Crl(format!("the certificate {reason}"));
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|_| bad("is not PEM"))?;
        let cert = pem.parse_x509().map_err(|_| bad("is malformed"))?;
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes())
            .map_err(|_| PkiError::Crl("the CA certificate is not PEM".into()))?;
        let ca = ca_pem.parse_x509().map_err(|_| PkiError::Crl("the CA certificate is malformed".into()))?;
        if cert.is_ca() {
            return Err(bad("is a CA certificate: revoking it is re-creating the PKI"));
        }
        if cert.issuer() != ca.subject() || cert.verify_signature(Some(ca.public_key())).is_err() {
            return Err(bad("was not issued by this CA"));
        }
        Ok(cert.raw_serial().to_vec())
    }
}

/// One entry of a CRL: a revoked certificate's serial number and when it was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    /// The serial number (big-endian bytes, as in the certificate).
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
}

/// What a CRL says ([`CertificateAuthority::read_crl`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlContents {
    /// The CRL number: each CRL the CA issues has a higher one.
    pub number: u64,
    /// The revoked certificates.
    pub revoked: Vec<RevokedSerial>,
    /// When the next CRL is due.
    pub next_update: Option<OffsetDateTime>,
}

/// What [`revoke_certificate`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    /// The certificate revoked (`NAME.pem` in the PKI directory).
    pub certificate: PathBuf,
    /// Its serial number, hex.
    pub serial: String,
    /// False when it was already on the CRL (the CRL is re-issued all the same).
    pub newly_revoked: bool,
    /// The CRL file written.
    pub crl: PathBuf,
    /// The new CRL's number.
    pub crl_number: u64,
    /// Certificates on the new CRL.
    pub revoked_count: usize,
}

/// Revoke certificate `name` (the file `NAME.pem` in `pki_dir`, e.g. `gateway`,
/// `merchant-m_dev`, `officer-alice`) of the CA in `pki_dir` (`ca.pem`, `ca.key`):
/// its serial number is added to `pki_dir/crl.pem`, which is re-issued with the next
/// CRL number and a fresh next-update date. Services started with `--client-crl` on that
/// file refuse the certificate within seconds, without a restart.
pub fn revoke_certificate(pki_dir: &Path, name: &str) -> anyhow::Result<Revocation> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~');
    anyhow::ensure!(
        !name.is_empty() && name.chars().all(allowed) && !name.starts_with('.') && name != "ca",
        "invalid certificate name {name:?}: give the name of a certificate file in {} without `.pem` \
         (e.g. gateway, merchant-m_dev, officer-alice)",
        pki_dir.display()
    );
    let certificate = pki_dir.join(format!("{name}.pem"));
    let cert_pem = std::fs::read_to_string(&certificate)
        .with_context(|| format!("reading the certificate to revoke, {}", certificate.display()))?;
    let ca = CertificateAuthority::read_files(&pki_dir.join("ca.pem"), &pki_dir.join("ca.key"))
        .with_context(|| format!("loading the CA of {}", pki_dir.display()))?;
    let serial = ca.serial_of(&cert_pem).with_context(|| certificate.display().to_string())?;
    let crl = pki_dir.join(CRL_FILE);
    let mut contents = read_crl_file(&ca, &crl)?;
    let newly_revoked = !contents.revoked.iter().any(|entry| entry.serial == serial);
    if newly_revoked {
        contents.revoked.push(RevokedSerial { serial: serial.clone(), revoked_at: OffsetDateTime::now_utc() });
    }
    let crl_number = contents.number + 1;
    write_file(&crl, &ca.issue_crl(crl_number, &contents.revoked)?, PUBLIC)?;
    Ok(Revocation {
        certificate,
        serial: hex::encode(serial),
        newly_revoked,
        crl,
        crl_number,
        revoked_count: contents.revoked.len(),
    })
}

/// The CRL in `path`, or an empty list numbered 0 if there is none yet.
fn read_crl_file(ca: &CertificateAuthority, path: &Path) -> anyhow::Result<CrlContents> {
    match std::fs::read_to_string(path) {
        Ok(pem) => Ok(ca.read_crl(&pem).with_context(|| path.display().to_string())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(CrlContents { number: 0, revoked: Vec::new(), next_update: None })
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
}

/// A server certificate and key on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCertFiles {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, mode 0600).
    pub key: PathBuf,
}

/// A client certificate and key on disk, and the principal they authenticate as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The card intake's client certificate for the vault ([`INTAKE_PRINCIPAL`]).
    /// Empty paths in a `stack.json` written before the intake existed.
    #[serde(default)]
    pub intake: ClientCertFiles,
    /// The card intake's server certificate (browsers connect to it; localhost and
    /// 127.0.0.1, like every dev server certificate).
    #[serde(default)]
    pub intake_server: ServerCertFiles,
    /// The CA's certificate revocation list (`crl.pem`), given to the vault with
    /// `--client-crl`; `paysys pki revoke NAME` adds to it.
    #[serde(default)]
    pub crl: PathBuf,
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

/// Whether the CRL at `path` is missing, or past its next update (so a vault would warn
/// about it): then [`init_dev_pki`] issues it again with the same entries.
fn crl_needs_issuing(path: &Path) -> anyhow::Result<bool> {
    let pem = match std::fs::read_to_string(path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    };
    // Only the date is read here; the CRL is verified against the CA before reuse.
    let next_update = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .ok()
        .and_then(|(_, pem)| x509_parser::parse_x509_crl(&pem.contents).ok().and_then(|(_, crl)| crl.next_update()));
    Ok(next_update.is_none_or(|time| time.to_datetime() <= OffsetDateTime::now_utc()))
}

/// Create the dev PKI under `dir/pki/`, or reuse it.
///
/// If `dir/pki/ca.pem` does not exist, a new CA is made and every certificate is issued
/// (replacing any older files, which would chain to a CA that is gone). Otherwise
/// every existing certificate/key pair is reused as it is, and only a missing one (say,
/// `merchant-<id>` for a new merchant id) is issued from the CA on disk — so clients
/// configured with the old files keep working.
///
/// Files: `ca.pem` + `ca.key`; server certificates `vault.pem`, `sandbox.pem`,
/// `intake-server.pem`; client certificates `gateway.pem`, `intake.pem`,
/// `officer-alice.pem`, `officer-bob.pem`, `merchant-<id>.pem`; each with its `.key` (mode 0600); the CA's CRL `crl.pem`
/// (empty at first; re-issued when past its next update). The directory is 0700.
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
    let (cert, key) = ensure("intake", IssueRequest::client(INTAKE_PRINCIPAL))?;
    let intake = ClientCertFiles { principal: INTAKE_PRINCIPAL.to_owned(), cert, key };
    let (cert, key) = ensure("intake-server", IssueRequest::server())?;
    let intake_server = ServerCertFiles { cert, key };
    let mut officers = BTreeMap::new();
    for officer in DEV_OFFICERS {
        let principal = officer_principal(officer);
        let (cert, key) = ensure(&format!("officer-{officer}"), IssueRequest::client(principal.clone()))?;
        officers.insert(officer.to_owned(), ClientCertFiles { principal, cert, key });
    }
    let principal = merchant_principal(merchant_id);
    let (cert, key) = ensure(&format!("merchant-{merchant_id}"), IssueRequest::client(principal.clone()))?;
    let merchant = MerchantCertFiles { id: merchant_id.to_owned(), principal, cert, key };

    let crl = pki_dir.join(CRL_FILE);
    if fresh || crl_needs_issuing(&crl)? {
        let ca = ca.get()?;
        let previous = if fresh {
            CrlContents { number: 0, revoked: Vec::new(), next_update: None }
        } else {
            read_crl_file(ca, &crl)?
        };
        write_file(&crl, &ca.issue_crl(previous.number + 1, &previous.revoked)?, PUBLIC)?;
    }

    Ok(DevPki { ca_cert, vault_server, gateway, officers, merchant, sandbox_server, intake, intake_server, crl })
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
        let mut keys = vec![
            pki.ca_key(),
            pki.vault_server.key.clone(),
            pki.sandbox_server.key.clone(),
            pki.intake_server.key.clone(),
        ];
        for server in [&pki.vault_server, &pki.sandbox_server, &pki.intake_server] {
            let pem = pem(&read(&server.cert));
            let cert = pem.parse_x509().unwrap();
            assert!(cert.extended_key_usage().unwrap().unwrap().value.server_auth);
            assert!(is_signed_by(&cert, &ca));
        }
        let mut clients = vec![&pki.gateway, &pki.intake];
        clients.extend(pki.officers.values());
        for client in clients {
            assert_eq!(principal_of(&client.cert), [client.principal.as_str()]);
            keys.push(client.key.clone());
        }
        assert_eq!(pki.gateway.principal, "spiffe://paysys/gateway");
        assert_eq!(pki.intake.principal, "spiffe://paysys/intake");
        assert_eq!(pki.intake.cert, pki_dir.join("intake.pem"));
        assert_eq!(pki.intake_server.cert, pki_dir.join("intake-server.pem"));
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

        // An empty CRL, signed by the CA, number 1, current for CRL_VALIDITY.
        assert_eq!(pki.crl, pki_dir.join("crl.pem"));
        assert_eq!(mode(&pki.crl), 0o644);
        let ca = CertificateAuthority::read_files(&pki.ca_cert, &pki.ca_key()).unwrap();
        let crl = ca.read_crl(&read(&pki.crl)).unwrap();
        assert_eq!((crl.number, crl.revoked.len()), (1, 0));
        assert!(crl.next_update.unwrap() > OffsetDateTime::now_utc() + CRL_VALIDITY - Duration::hours(1));
    }

    #[test]
    fn revoking_adds_the_serial_to_a_crl_signed_by_the_ca_with_the_next_number() {
        let tmp = TempDir::new("pki-revoke");
        let pki = init_dev_pki(&tmp.0, "m_dev").unwrap();
        let pki_dir = tmp.0.join("pki");
        let ca = CertificateAuthority::read_files(&pki.ca_cert, &pki.ca_key()).unwrap();
        let gateway_serial = ca.serial_of(&read(&pki.gateway.cert)).unwrap();
        let merchant_serial = ca.serial_of(&read(&pki.merchant.cert)).unwrap();

        let first = revoke_certificate(&pki_dir, "gateway").unwrap();
        assert_eq!((first.crl_number, first.revoked_count, first.newly_revoked), (2, 1, true));
        assert_eq!(first.serial, hex::encode(&gateway_serial));
        assert_eq!(first.crl, pki.crl);
        let second = revoke_certificate(&pki_dir, "merchant-m_dev").unwrap();
        assert_eq!((second.crl_number, second.revoked_count), (3, 2));
        let again = revoke_certificate(&pki_dir, "gateway").unwrap();
        assert_eq!((again.crl_number, again.revoked_count, again.newly_revoked), (4, 2, false));

        let crl = ca.read_crl(&read(&pki.crl)).unwrap();
        assert_eq!(crl.number, 4);
        let serials: Vec<_> = crl.revoked.iter().map(|entry| entry.serial.clone()).collect();
        assert_eq!(serials, [gateway_serial, merchant_serial]);
        // A later `paysys up` keeps the CRL as it is.
        init_dev_pki(&tmp.0, "m_dev").unwrap();
        assert_eq!(ca.read_crl(&read(&pki.crl)).unwrap().number, 4);
    }

    #[test]
    fn revoking_refuses_what_is_not_one_of_the_cas_leaf_certificates() {
        let tmp = TempDir::new("pki-revoke-bad");
        let pki = init_dev_pki(&tmp.0, "m_dev").unwrap();
        let pki_dir = tmp.0.join("pki");
        let stranger = CertificateAuthority::generate("Someone Else").unwrap();
        stranger
            .issue(&IssueRequest::client("spiffe://paysys/gateway"))
            .unwrap()
            .write(&pki_dir.join("foreign.pem"), &pki_dir.join("foreign.key"))
            .unwrap();
        for name in ["", "ca", "../gateway", "pki/gateway", ".hidden", "missing", "foreign"] {
            assert!(revoke_certificate(&pki_dir, name).is_err(), "{name:?}");
        }
        // A CRL that is not the CA's is not extended (nor silently replaced).
        std::fs::write(&pki.crl, stranger.issue_crl(7, &[]).unwrap()).unwrap();
        let refused = revoke_certificate(&pki_dir, "gateway").unwrap_err();
        assert!(format!("{refused:#}").contains("not signed by this CA"), "{refused:#}");
    }

    #[test]
    fn an_overdue_crl_is_reissued_with_its_entries() {
        let tmp = TempDir::new("pki-crl-overdue");
        let pki = init_dev_pki(&tmp.0, "m_dev").unwrap();
        revoke_certificate(&tmp.0.join("pki"), "officer-bob").unwrap();
        let ca = CertificateAuthority::read_files(&pki.ca_cert, &pki.ca_key()).unwrap();
        let current = ca.read_crl(&read(&pki.crl)).unwrap();
        // A CRL whose next update has passed, as a long-lived dev directory would have.
        let stale = CertificateRevocationListParams {
            this_update: OffsetDateTime::now_utc() - Duration::days(60),
            next_update: OffsetDateTime::now_utc() - Duration::days(30),
            crl_number: SerialNumber::from(current.number),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: ca.issuer.params().key_identifier_method.clone(),
        };
        let stale = stale.signed_by(&ca.issuer, &ca.key).unwrap().pem().unwrap();
        std::fs::write(&pki.crl, &stale).unwrap();
        assert!(crl_needs_issuing(&pki.crl).unwrap());
        init_dev_pki(&tmp.0, "m_dev").unwrap();
        let reissued = ca.read_crl(&read(&pki.crl)).unwrap();
        assert_eq!(reissued.number, current.number + 1);
        assert!(reissued.next_update.unwrap() > OffsetDateTime::now_utc());
    }

    #[test]
    fn crafted_client_certificates_carry_exactly_the_names_asked_for() {
        let ca = CertificateAuthority::generate("Test CA").unwrap();
        let two = ca
            .issue(&IssueRequest::client_with_names(
                &["spiffe://paysys/gateway", "spiffe://paysys/merchant/m_1"],
                &[],
                None,
            ))
            .unwrap();
        let pem_two = pem(two.cert_pem());
        assert_eq!(uris(&pem_two.parse_x509().unwrap()), ["spiffe://paysys/gateway", "spiffe://paysys/merchant/m_1"]);

        let dns = ca.issue(&IssueRequest::client_with_names(&[], &["gateway.paysys"], None)).unwrap();
        let pem_dns = pem(dns.cert_pem());
        let cert = pem_dns.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names, [GeneralName::DNSName("gateway.paysys")]);

        let cn = ca.issue(&IssueRequest::client_with_names(&[], &[], Some("spiffe://paysys/gateway"))).unwrap();
        let pem_cn = pem(cn.cert_pem());
        let cert = pem_cn.parse_x509().unwrap();
        assert!(cert.subject_alternative_name().unwrap().is_none());
        assert!(cert.extended_key_usage().unwrap().unwrap().value.client_auth);

        let no_eku = ca.issue(&IssueRequest::client("spiffe://paysys/gateway").without_extended_key_usage()).unwrap();
        let pem_no_eku = pem(no_eku.cert_pem());
        assert!(pem_no_eku.parse_x509().unwrap().extended_key_usage().unwrap().is_none());
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
