//! The dev stack's gateway grant key: the Ed25519 key the gateway signs one-time card
//! grants with (`DIR/grant-keys/g1.pk8`, PKCS#8 DER, mode 0600), and its public half
//! (`g1.pub`, 64 hex digits) that the intake verifies them with. Created once, then
//! reused, so grants issued before a restart still verify after it.

use crate::files::{self, PRIVATE, PUBLIC};
use anyhow::Context;
use paysys_widget::grant::GrantSigner;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The dev grant key's id.
pub const DEV_GRANT_KID: &str = "g1";
/// Directory of the grant keys, in the stack's directory.
pub const GRANT_KEY_DIR: &str = "grant-keys";

/// A grant key pair on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantKeyFiles {
    /// Key id (`--grant-key KID=…`, `--grant-public-key KID=…`).
    pub kid: String,
    /// PKCS#8 DER, mode 0600: the gateway's `--grant-key`.
    pub private_key: PathBuf,
    /// 64 hex digits: the intake's `--grant-public-key`.
    pub public_key: PathBuf,
}

impl GrantKeyFiles {
    /// `KID=PATH` of the private key, as the gateway takes it.
    pub fn signing_arg(&self) -> String {
        format!("{}={}", self.kid, self.private_key.display())
    }

    /// `KID=PATH` of the public key, as the intake takes it.
    pub fn verifying_arg(&self) -> String {
        format!("{}={}", self.kid, self.public_key.display())
    }
}

/// `DIR/grant-keys/g1.pk8` and `g1.pub`: made if the private key is missing, the public
/// key (re)written from it otherwise, so the two always match.
pub fn init_dev_grant_key(dir: &Path) -> anyhow::Result<GrantKeyFiles> {
    let key_dir = dir.join(GRANT_KEY_DIR);
    files::create_private_dir(&key_dir).with_context(|| format!("creating {}", key_dir.display()))?;
    let private_key = key_dir.join(format!("{DEV_GRANT_KID}.pk8"));
    let public_key = key_dir.join(format!("{DEV_GRANT_KID}.pub"));
    if !private_key.exists() {
        let der = GrantSigner::generate_pkcs8().map_err(|e| anyhow::anyhow!("generating the grant key: {e}"))?;
        files::write_atomically(&private_key, &der, PRIVATE)
            .with_context(|| format!("writing {}", private_key.display()))?;
    }
    let signer = GrantSigner::from_pkcs8_file(DEV_GRANT_KID, &private_key)
        .map_err(|e| anyhow::anyhow!("reading the grant key {}: {e}", private_key.display()))?;
    let hex = format!("{}\n", signer.public_key_hex());
    if std::fs::read_to_string(&public_key).ok().as_deref() != Some(hex.as_str()) {
        files::write_atomically(&public_key, hex.as_bytes(), PUBLIC)
            .with_context(|| format!("writing {}", public_key.display()))?;
    }
    Ok(GrantKeyFiles { kid: DEV_GRANT_KID.to_owned(), private_key, public_key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_dir::TempDir;
    use paysys_widget::grant::{random_nonce, GrantClaims, GrantVerifier};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_grant_key_is_made_once_and_its_public_half_verifies_its_grants() {
        let tmp = TempDir::new("grant-key");
        let first = init_dev_grant_key(&tmp.0).unwrap();
        assert_eq!(first.private_key, tmp.0.join("grant-keys/g1.pk8"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&first.private_key), 0o600);
        assert_eq!(mode(&tmp.0.join("grant-keys")), 0o700);
        let der = std::fs::read(&first.private_key).unwrap();
        let again = init_dev_grant_key(&tmp.0).unwrap();
        assert_eq!(again, first);
        assert_eq!(std::fs::read(&again.private_key).unwrap(), der, "kept, not replaced");
        assert_eq!(first.signing_arg(), format!("g1={}", first.private_key.display()));

        let signer = GrantSigner::from_pkcs8_file("g1", &first.private_key).unwrap();
        let mut verifier = GrantVerifier::new();
        verifier.add_file("g1", &first.public_key).unwrap();
        let claims = GrantClaims {
            merchant_id: "m_dev".into(),
            checkout_id: "chk_1".into(),
            attempt_id: "att_1".into(),
            origin: "http://127.0.0.1:8080".into(),
            issued_at: 1_800_000_000,
            expires_at: 1_800_000_600,
            nonce: random_nonce().unwrap(),
            save_card: false,
        };
        assert_eq!(verifier.verify(&signer.sign(&claims), 1_800_000_001).unwrap(), claims);
    }
}
