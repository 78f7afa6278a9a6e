//! mTLS for the vault's internal API: every client must present a certificate issued
//! by the PaySys CA, not revoked by the CRL (`--client-crl`, reloaded while the vault
//! runs), or the handshake fails. The certificate must then name exactly one principal
//! — one `spiffe://paysys/...` URI SAN, with the clientAuth usage — or the connection
//! is closed before any request is read ([`principal_from_cert`]). The principal
//! becomes the request's [`Principal`].

use anyhow::Context;
use paysys_server::tls_files::{install_crypto_provider, read_certificates, read_private_key};
use paysys_server::ReloadableCrlVerifier;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;

/// What every principal starts with: a SPIFFE ID in the PaySys trust domain.
pub const PRINCIPAL_PREFIX: &str = "spiffe://paysys/";

/// The authenticated caller: the identity from its client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

impl Principal {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The vault's server TLS: the configuration the accept loop hands to rustls, and the
/// client-certificate verifier inside it, which [`crate::server::run`] keeps watching the
/// CRL file with and asks again about open connections when the CRL changes.
#[derive(Debug, Clone)]
pub struct VaultTls {
    /// Our certificate, client certificates required, HTTP/2 and HTTP/1.1 by ALPN.
    pub config: Arc<ServerConfig>,
    /// The client CA and CRL check inside `config`.
    pub client_certificates: Arc<ReloadableCrlVerifier>,
}

/// The server configuration: our certificate, client certificates required and
/// verified against `client_ca` and, when given, the CRL in `client_crl`; HTTP/2 and
/// HTTP/1.1 by ALPN.
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path, client_crl: Option<&Path>) -> anyhow::Result<VaultTls> {
    install_crypto_provider();
    // Refuses a CA file without certificates: anonymous clients are never allowed.
    let verifier = ReloadableCrlVerifier::new(client_ca, client_crl).context("loading the client CA and CRL")?;
    let config = paysys_server::client_auth::mtls_server_config(
        verifier.clone(),
        read_certificates(cert)?,
        read_private_key(key)?,
    )
    .context("loading the vault's server certificate")?;
    Ok(VaultTls { config, client_certificates: verifier })
}

/// Why a verified client certificate names no principal. The connection is closed
/// before any request is read; the reason goes to the log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrincipalRefusal {
    /// The certificate could not be parsed (or carries an extension twice).
    #[error("the certificate cannot be parsed")]
    Unparsable,
    /// No extended key usage extension, or one without clientAuth.
    #[error("the certificate lacks the clientAuth extended key usage")]
    NoClientAuthUsage,
    /// No URI SAN (DNS names and the common name are never principals).
    #[error("the certificate has no URI SAN")]
    NoUri,
    /// More than one URI SAN: which one would be the principal is ambiguous.
    #[error("the certificate has more than one URI SAN")]
    SeveralUris,
    /// The URI SAN is not `spiffe://paysys/` followed by plain path segments.
    #[error("the URI SAN is not a spiffe://paysys/ identity")]
    NotAPaysysIdentity,
}

/// The principal named by a verified client certificate: its one URI SAN, which must be
/// `spiffe://paysys/` followed by one or more segments of `[A-Za-z0-9._~-]` (not `.`
/// or `..`), in a certificate with the clientAuth extended key usage. There is no
/// fallback to a DNS SAN or the common name: a certificate for a host, or one whose
/// identity is ambiguous, is not a principal.
pub fn principal_from_cert(cert: &CertificateDer<'_>) -> Result<Principal, PrincipalRefusal> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| PrincipalRefusal::Unparsable)?;
    // rustls already refused an EKU without clientAuth; this also refuses none at all.
    match parsed.extended_key_usage() {
        Ok(Some(usage)) if usage.value.client_auth => {}
        Ok(_) => return Err(PrincipalRefusal::NoClientAuthUsage),
        Err(_) => return Err(PrincipalRefusal::Unparsable),
    }
    let names = match parsed.subject_alternative_name() {
        Ok(Some(san)) => &san.value.general_names,
        Ok(None) => return Err(PrincipalRefusal::NoUri),
        Err(_) => return Err(PrincipalRefusal::Unparsable),
    };
    let mut uris = names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let uri = uris.next().ok_or(PrincipalRefusal::NoUri)?;
    if uris.next().is_some() {
        return Err(PrincipalRefusal::SeveralUris);
    }
    let path = uri.strip_prefix(PRINCIPAL_PREFIX).ok_or(PrincipalRefusal::NotAPaysysIdentity)?;
    let plain_segment = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
    };
    if !path.split('/').all(plain_segment) {
        return Err(PrincipalRefusal::NotAPaysysIdentity);
    }
    Ok(Principal(uri.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use paysys::pki::{CertificateAuthority, IssueRequest};

    fn principal_of(request: &IssueRequest) -> Result<Principal, PrincipalRefusal> {
        let ca = CertificateAuthority::generate("Test CA").unwrap();
        let issued = ca.issue(request).unwrap();
        let der = rustls_pemfile::certs(&mut issued.cert_pem().as_bytes()).next().unwrap().unwrap();
        principal_from_cert(&der)
    }

    #[test]
    fn one_paysys_uri_with_client_auth_is_the_principal() {
        for principal in ["spiffe://paysys/gateway", "spiffe://paysys/merchant/m_1", "spiffe://paysys/officer/a.b-c~d"]
        {
            assert_eq!(principal_of(&IssueRequest::client(principal)), Ok(Principal(principal.to_owned())));
        }
    }

    #[test]
    fn anything_else_names_no_principal() {
        let crafted = IssueRequest::client_with_names;
        let cases = [
            ("two URI SANs", crafted(&["spiffe://paysys/gateway", "spiffe://paysys/officer/alice"], &[], None)),
            ("a PaySys and another URI", crafted(&["spiffe://paysys/gateway", "https://paysys.example/"], &[], None)),
            ("DNS SAN only", crafted(&[], &["gateway.paysys.internal"], Some("spiffe://paysys/gateway"))),
            ("common name only", crafted(&[], &[], Some("spiffe://paysys/gateway"))),
            ("another trust domain", IssueRequest::client("spiffe://elsewhere/gateway")),
            ("a prefix of ours", IssueRequest::client("spiffe://paysys.evil/gateway")),
            ("not spiffe", IssueRequest::client("https://paysys/gateway")),
            ("no path", IssueRequest::client("spiffe://paysys/")),
            ("an empty segment", IssueRequest::client("spiffe://paysys/merchant//m_1")),
            ("a dot segment", IssueRequest::client("spiffe://paysys/merchant/../gateway")),
            ("a query", IssueRequest::client("spiffe://paysys/gateway?x=1")),
            ("no EKU", IssueRequest::client("spiffe://paysys/gateway").without_extended_key_usage()),
            ("serverAuth only", IssueRequest::client("spiffe://paysys/gateway").without_client_auth()),
        ];
        for (what, request) in cases {
            let refusal = principal_of(&request).unwrap_err();
            let expected = match what {
                "two URI SANs" | "a PaySys and another URI" => PrincipalRefusal::SeveralUris,
                "DNS SAN only" | "common name only" => PrincipalRefusal::NoUri,
                "no EKU" | "serverAuth only" => PrincipalRefusal::NoClientAuthUsage,
                _ => PrincipalRefusal::NotAPaysysIdentity,
            };
            assert_eq!(refusal, expected, "{what}");
        }
    }
}
