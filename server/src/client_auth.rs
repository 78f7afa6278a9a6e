//! Client certificates checked against the client CA *and* a certificate revocation list
//! that can change while the service runs.
//!
//! [`ReloadableCrlVerifier`] is a rustls client-certificate verifier that delegates to a
//! `WebPkiClientVerifier` built from the client CA and the CRL file, and swaps that inner
//! verifier when the file changes: [`ReloadableCrlVerifier::watch_crl`] polls the file's
//! metadata every [`CRL_POLL_INTERVAL`] and reloads at once on `SIGHUP`. New handshakes
//! see the new CRL; [`crate::serve_with`] also re-checks the certificate of every open
//! connection when the CRL changes and closes the ones now revoked.
//!
//! A CRL is installed only when every CRL in the file parses, is signed by one of the
//! client CAs, and does not go back in CRL number; otherwise the error is logged and
//! the previous CRL stays (at start-up the service refuses to start instead). With a
//! CRL configured, a client certificate whose issuer has no CRL in the file is refused
//! (unknown revocation status fails closed), so the file must hold a CRL from every
//! client CA.
//!
//! TLS session resumption would skip all of this (a resumed session carries the
//! certificate verified the first time), so [`mtls_server_config`] turns it off.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, VerifierBuilderError, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};
use x509_parser::num_bigint::BigUint;

/// How often [`ReloadableCrlVerifier::watch_crl`] looks at the CRL file's metadata.
pub const CRL_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Why the client CA or a CRL could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientAuthError {
    /// The file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("decoding the PEM in {}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        source: std::io::Error,
    },
    /// The client CA file holds no certificate.
    #[error("no certificate in the client CA file {}", path.display())]
    NoClientCa {
        /// The file.
        path: PathBuf,
    },
    /// A client CA certificate cannot be a trust anchor.
    #[error("the client CA is not a usable trust anchor: {0}")]
    BadClientCa(rustls::Error),
    /// The CRL file holds no `X509 CRL` block.
    #[error("no CRL in {}", path.display())]
    NoCrl {
        /// The file.
        path: PathBuf,
    },
    /// A CRL is not valid DER.
    #[error("a CRL is malformed: {0}")]
    MalformedCrl(String),
    /// A CRL's issuer is none of the client CAs.
    #[error("a CRL is not issued by any client CA")]
    CrlFromUnknownIssuer,
    /// A CRL's signature does not verify with its issuer's key.
    #[error("a CRL's signature does not verify with the client CA's key")]
    CrlSignatureInvalid,
    /// A CRL carries no CRL number, so a rollback could not be detected.
    #[error("a CRL has no CRL number")]
    CrlNumberMissing,
    /// A CRL's number is lower than the one already loaded from the same CA: an older
    /// list, which would un-revoke certificates.
    #[error("CRL number {offered} is lower than the loaded {current}: refusing an older CRL")]
    CrlRollback {
        /// The number of the CRL in use.
        current: BigUint,
        /// The number of the CRL offered.
        offered: BigUint,
    },
    /// rustls refused to build the verifier.
    #[error("building the client certificate verifier: {0}")]
    Verifier(VerifierBuilderError),
}

/// What a load installed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlSummary {
    /// CRLs in the file.
    pub crls: usize,
    /// Revoked serial numbers over all of them.
    pub revoked: usize,
    /// The highest CRL number among them.
    pub number: BigUint,
    /// The earliest `nextUpdate` among them (RFC 3339), if any.
    pub next_update: Option<String>,
    /// Whether that `nextUpdate` has passed: the CRL is still used (the service does
    /// not lock every client out), but the operator should issue a fresh one.
    pub overdue: bool,
}

/// A CRL checked against the client CAs.
struct VerifiedCrl {
    der: CertificateRevocationListDer<'static>,
    issuer: Vec<u8>,
    number: BigUint,
    revoked: usize,
    next_update: Option<x509_parser::time::ASN1Time>,
}

/// A client-certificate verifier over the client CA and a reloadable CRL (see the
/// module documentation).
pub struct ReloadableCrlVerifier {
    roots: Arc<RootCertStore>,
    /// The CA certificates themselves: CRL signatures are checked with their keys.
    client_cas: Vec<CertificateDer<'static>>,
    root_hints: Vec<DistinguishedName>,
    crl_path: Option<PathBuf>,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
    /// The CRL number in use per issuer (raw subject DER); also serializes reloads.
    numbers: Mutex<HashMap<Vec<u8>, BigUint>>,
    /// Bumped on every successful reload, so open connections re-check themselves.
    generation: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for ReloadableCrlVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableCrlVerifier")
            .field("client_cas", &self.client_cas.len())
            .field("crl_path", &self.crl_path)
            .field("generation", &*self.generation.borrow())
            .finish_non_exhaustive()
    }
}

impl ReloadableCrlVerifier {
    /// Trust client certificates issued by a CA in `client_ca` (PEM) and, when `crl` is
    /// given, not revoked by the CRL(s) in that file, which must load now.
    pub fn new(client_ca: &Path, crl: Option<&Path>) -> Result<Arc<Self>, ClientAuthError> {
        let client_cas = read_pem(client_ca, |reader| rustls_pemfile::certs(reader).collect())?;
        if client_cas.is_empty() {
            return Err(ClientAuthError::NoClientCa { path: client_ca.to_owned() });
        }
        let mut roots = RootCertStore::empty();
        for ca in &client_cas {
            roots.add(ca.clone()).map_err(ClientAuthError::BadClientCa)?;
        }
        let roots = Arc::new(roots);
        let root_hints = roots.subjects();
        let mut numbers = HashMap::new();
        let inner = match crl {
            None => build_verifier(&roots, Vec::new())?,
            Some(path) => {
                let crls = load_crls(path, &client_cas, &numbers)?;
                numbers = crls.iter().map(|crl| (crl.issuer.clone(), crl.number.clone())).collect();
                log_installed(path, &summarize(&crls));
                build_verifier(&roots, crls.into_iter().map(|crl| crl.der).collect())?
            }
        };
        Ok(Arc::new(ReloadableCrlVerifier {
            roots,
            client_cas,
            root_hints,
            crl_path: crl.map(Path::to_owned),
            current: RwLock::new(inner),
            numbers: Mutex::new(numbers),
            generation: tokio::sync::watch::Sender::new(0),
        }))
    }

    /// Read the CRL file again and install it, or keep the CRL in use and say why not.
    /// Without a CRL file there is nothing to reload.
    pub fn reload(&self) -> Result<Option<CrlSummary>, ClientAuthError> {
        let Some(path) = &self.crl_path else { return Ok(None) };
        let mut numbers = self.numbers.lock().unwrap_or_else(PoisonError::into_inner);
        let crls = load_crls(path, &self.client_cas, &numbers)?;
        let summary = summarize(&crls);
        let new_numbers = crls.iter().map(|crl| (crl.issuer.clone(), crl.number.clone())).collect();
        let inner = build_verifier(&self.roots, crls.into_iter().map(|crl| crl.der).collect())?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = inner;
        *numbers = new_numbers;
        self.generation.send_modify(|generation| *generation += 1);
        log_installed(path, &summary);
        Ok(Some(summary))
    }

    /// Notified after every successful [`reload`](Self::reload).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Whether `chain` (end entity first) still verifies now, under the CRL in use.
    pub fn still_trusted(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Some((end_entity, intermediates)) = chain.split_first() else { return false };
        self.inner().verify_client_cert(end_entity, intermediates, UnixTime::now()).is_ok()
    }

    /// Reload when the CRL file changes (its modification time, size or inode, checked
    /// every `poll_every`) and on `SIGHUP`; runs until the process ends. Without a CRL
    /// file it never completes and does nothing.
    pub async fn watch_crl(self: Arc<Self>, poll_every: Duration) {
        let Some(path) = self.crl_path.clone() else { return std::future::pending().await };
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; the CRL is reloaded by polling only");
                None
            }
        };
        let mut seen = file_stamp(&path);
        let mut tick = tokio::time::interval(poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let asked = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async { match hangup.as_mut() { Some(s) => s.recv().await, None => None } } => true,
            };
            let stamp = file_stamp(&path);
            if !asked && stamp == seen {
                continue;
            }
            seen = stamp;
            if let Err(e) = self.reload() {
                tracing::error!(crl = %path.display(), error = %e, "CRL not reloaded; the previous CRL stays in use");
            }
        }
    }

    fn inner(&self) -> Arc<dyn ClientCertVerifier> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl ClientCertVerifier for ReloadableCrlVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.root_hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner().supported_verify_schemes()
    }
}

/// A server configuration that requires client certificates checked by `verifier`:
/// our certificate chain and key, HTTP/2 and HTTP/1.1 by ALPN, and no session
/// resumption — a resumed session would skip the verifier, so a certificate revoked
/// after its first handshake could keep reconnecting.
pub fn mtls_server_config(
    verifier: Arc<ReloadableCrlVerifier>,
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder().with_client_cert_verifier(verifier).with_single_cert(cert_chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

fn build_verifier(
    roots: &Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, ClientAuthError> {
    // Without CRLs this is the verifier the services had before; with them, a
    // certificate whose revocation status is unknown is refused (rustls's default).
    WebPkiClientVerifier::builder(roots.clone()).with_crls(crls).build().map_err(ClientAuthError::Verifier)
}

fn read_pem<T>(
    path: &Path,
    parse: impl FnOnce(&mut &[u8]) -> Result<Vec<T>, std::io::Error>,
) -> Result<Vec<T>, ClientAuthError> {
    let bytes = std::fs::read(path).map_err(|source| ClientAuthError::Read { path: path.to_owned(), source })?;
    parse(&mut bytes.as_slice()).map_err(|source| ClientAuthError::Pem { path: path.to_owned(), source })
}

/// Every CRL in `path`, each signed by one of `client_cas` and not older (by CRL
/// number) than the one in `numbers` for its issuer.
fn load_crls(
    path: &Path,
    client_cas: &[CertificateDer<'static>],
    numbers: &HashMap<Vec<u8>, BigUint>,
) -> Result<Vec<VerifiedCrl>, ClientAuthError> {
    let ders = read_pem(path, |reader| rustls_pemfile::crls(reader).collect())?;
    if ders.is_empty() {
        return Err(ClientAuthError::NoCrl { path: path.to_owned() });
    }
    ders.into_iter().map(|der| verify_crl(der, client_cas, numbers)).collect()
}

fn verify_crl(
    der: CertificateRevocationListDer<'static>,
    client_cas: &[CertificateDer<'static>],
    numbers: &HashMap<Vec<u8>, BigUint>,
) -> Result<VerifiedCrl, ClientAuthError> {
    let (rest, crl) =
        x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| ClientAuthError::MalformedCrl(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ClientAuthError::MalformedCrl("trailing bytes after the CRL".to_owned()));
    }
    let issuer = crl.issuer().as_raw();
    let signed_by_a_client_ca = client_cas.iter().any(|ca| {
        x509_parser::parse_x509_certificate(ca.as_ref())
            .is_ok_and(|(_, ca)| ca.subject().as_raw() == issuer && crl.verify_signature(ca.public_key()).is_ok())
    });
    if !signed_by_a_client_ca {
        let issuer_known = client_cas.iter().any(|ca| {
            x509_parser::parse_x509_certificate(ca.as_ref()).is_ok_and(|(_, ca)| ca.subject().as_raw() == issuer)
        });
        return Err(if issuer_known {
            ClientAuthError::CrlSignatureInvalid
        } else {
            ClientAuthError::CrlFromUnknownIssuer
        });
    }
    let number = crl.crl_number().cloned().ok_or(ClientAuthError::CrlNumberMissing)?;
    if let Some(current) = numbers.get(issuer) {
        if &number < current {
            return Err(ClientAuthError::CrlRollback { current: current.clone(), offered: number });
        }
    }
    let revoked = crl.iter_revoked_certificates().count();
    let next_update = crl.next_update();
    let issuer = issuer.to_vec();
    Ok(VerifiedCrl { der, issuer, number, revoked, next_update })
}

fn summarize(crls: &[VerifiedCrl]) -> CrlSummary {
    let next_update = crls.iter().filter_map(|crl| crl.next_update).min_by_key(|time| time.timestamp());
    let overdue = next_update.is_some_and(|time| {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        time.timestamp() < i64::try_from(now).unwrap_or(i64::MAX)
    });
    CrlSummary {
        crls: crls.len(),
        revoked: crls.iter().map(|crl| crl.revoked).sum(),
        number: crls.iter().map(|crl| crl.number.clone()).max().unwrap_or_default(),
        next_update: next_update
            .and_then(|time| time.to_datetime().format(&time::format_description::well_known::Rfc3339).ok()),
        overdue,
    }
}

fn log_installed(path: &Path, summary: &CrlSummary) {
    let next_update = summary.next_update.as_deref().unwrap_or("none");
    if summary.overdue {
        tracing::warn!(
            crl = %path.display(), number = %summary.number, revoked = summary.revoked, next_update,
            "CRL loaded, but its next update is overdue: issue a fresh one"
        );
    } else {
        tracing::info!(crl = %path.display(), number = %summary.number, revoked = summary.revoked, next_update, "CRL loaded");
    }
}

/// What identifies a version of the file without reading it.
fn file_stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len(), metadata.ino()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
        KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
    };

    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca { cert: params.self_signed(&key).unwrap(), key }
    }

    fn client(ca: &Ca, serial: u8) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.serial_number = Some(SerialNumber::from_slice(&[serial]));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &ca.cert, &ca.key).unwrap().der().clone()
    }

    fn crl(ca: &Ca, number: u8, revoked: &[u8]) -> String {
        let now = time::OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from_slice(&[number]),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&[*serial]),
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca.cert, &ca.key)
        .unwrap()
        .pem()
        .unwrap()
    }

    /// A scratch directory with `ca.pem` and, when given, `crl.pem`.
    fn files(ca: &Ca, crl_pem: Option<&str>) -> (PathBuf, PathBuf, PathBuf) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("paysys-server-crl-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca_file, crl_file) = (dir.join("ca.pem"), dir.join("crl.pem"));
        std::fs::write(&ca_file, ca.cert.pem()).unwrap();
        if let Some(pem) = crl_pem {
            std::fs::write(&crl_file, pem).unwrap();
        }
        (dir, ca_file, crl_file)
    }

    fn accepts(verifier: &ReloadableCrlVerifier, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        verifier.verify_client_cert(cert, &[], UnixTime::now()).map(|_| ())
    }

    fn revoked(verifier: &ReloadableCrlVerifier, cert: &CertificateDer<'_>) -> bool {
        matches!(accepts(verifier, cert), Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)))
    }

    #[test]
    fn a_revoked_certificate_is_refused_and_the_others_pass() {
        let ca = ca("Test CA");
        let (good, bad) = (client(&ca, 1), client(&ca, 2));
        let (dir, ca_file, crl_file) = files(&ca, Some(&crl(&ca, 1, &[2])));
        let verifier = ReloadableCrlVerifier::new(&ca_file, Some(&crl_file)).unwrap();
        accepts(&verifier, &good).unwrap();
        assert!(revoked(&verifier, &bad));
        assert!(verifier.still_trusted(&[good]) && !verifier.still_trusted(&[bad]));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_newer_crl_is_installed_on_reload_and_announced() {
        let ca = ca("Test CA");
        let (first, second) = (client(&ca, 1), client(&ca, 2));
        let (dir, ca_file, crl_file) = files(&ca, Some(&crl(&ca, 1, &[])));
        let verifier = ReloadableCrlVerifier::new(&ca_file, Some(&crl_file)).unwrap();
        let mut reloads = verifier.subscribe();
        accepts(&verifier, &second).unwrap();

        std::fs::write(&crl_file, crl(&ca, 2, &[2])).unwrap();
        let summary = verifier.reload().unwrap().unwrap();
        assert_eq!((summary.crls, summary.revoked, summary.number, summary.overdue), (1, 1, 2u8.into(), false));
        assert!(reloads.has_changed().unwrap());
        reloads.mark_unchanged();
        assert!(revoked(&verifier, &second));
        accepts(&verifier, &first).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_crl_that_fails_to_load_keeps_the_previous_one() {
        let ca = ca("Test CA");
        // Same name as ours, another key: its CRL names our CA but is not signed by it.
        let impostor = self::ca("Test CA");
        let stranger = self::ca("Someone Else");
        let (good, bad) = (client(&ca, 1), client(&ca, 2));
        let (dir, ca_file, crl_file) = files(&ca, Some(&crl(&ca, 5, &[2])));
        let verifier = ReloadableCrlVerifier::new(&ca_file, Some(&crl_file)).unwrap();
        let reloads = verifier.subscribe();

        let attempts: [(&str, Option<String>); 6] = [
            ("garbage", Some("-----BEGIN X509 CRL-----\nnot base64 at all!\n-----END X509 CRL-----\n".into())),
            ("no CRL block", Some(String::new())),
            ("another CA's CRL", Some(crl(&stranger, 9, &[]))),
            ("a forged CRL under our CA's name", Some(crl(&impostor, 9, &[]))),
            ("an older CRL", Some(crl(&ca, 4, &[]))),
            ("no file", None),
        ];
        for (what, contents) in attempts {
            match contents {
                Some(pem) => std::fs::write(&crl_file, pem).unwrap(),
                None => std::fs::remove_file(&crl_file).unwrap(),
            }
            let refused = verifier.reload().unwrap_err();
            let expected = match what {
                "another CA's CRL" => matches!(refused, ClientAuthError::CrlFromUnknownIssuer),
                "a forged CRL under our CA's name" => matches!(refused, ClientAuthError::CrlSignatureInvalid),
                "an older CRL" => matches!(refused, ClientAuthError::CrlRollback { .. }),
                "no CRL block" => matches!(refused, ClientAuthError::NoCrl { .. }),
                "no file" => matches!(refused, ClientAuthError::Read { .. }),
                _ => matches!(refused, ClientAuthError::Pem { .. } | ClientAuthError::MalformedCrl(_)),
            };
            assert!(expected, "{what}: {refused:?}");
            // Still the CRL of number 5: the revoked certificate stays refused.
            assert!(revoked(&verifier, &bad), "{what}");
            accepts(&verifier, &good).unwrap();
        }
        assert!(!reloads.has_changed().unwrap(), "no failed load is announced");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_crl_that_does_not_load_at_start_is_an_error() {
        let ca = ca("Test CA");
        let stranger = self::ca("Someone Else");
        let (dir, ca_file, crl_file) = files(&ca, Some(&crl(&stranger, 1, &[])));
        assert!(matches!(
            ReloadableCrlVerifier::new(&ca_file, Some(&crl_file)),
            Err(ClientAuthError::CrlFromUnknownIssuer)
        ));
        std::fs::remove_file(&crl_file).unwrap();
        assert!(matches!(ReloadableCrlVerifier::new(&ca_file, Some(&crl_file)), Err(ClientAuthError::Read { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_client_of_a_ca_without_a_crl_in_the_file_is_refused() {
        // Two client CAs, a CRL from one: the other's clients have no known status.
        let (ours, theirs) = (ca("Test CA"), ca("Second CA"));
        let (dir, ca_file, crl_file) = files(&ours, Some(&crl(&ours, 1, &[])));
        std::fs::write(&ca_file, format!("{}{}", ours.cert.pem(), theirs.cert.pem())).unwrap();
        let verifier = ReloadableCrlVerifier::new(&ca_file, Some(&crl_file)).unwrap();
        accepts(&verifier, &client(&ours, 1)).unwrap();
        assert!(accepts(&verifier, &client(&theirs, 1)).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
