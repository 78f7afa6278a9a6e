//! One-time card grants: the only thing that lets a browser without a client
//! certificate hand a card to the intake.
//!
//! The gateway issues one per payment attempt on a checkout, signed with its Ed25519
//! grant key ([`GrantSigner`]); the intake, which holds only the gateway's public keys
//! ([`GrantVerifier`]), accepts a card only with a grant whose signature, key id and
//! expiry check out and whose origin is the page that framed the card form. The vault
//! records each grant's nonce as used in the same transaction that stores the card, so a
//! grant is spent once across any number of intake replicas.
//!
//! # Wire form
//!
//! `v1.{kid}.{payload}.{signature}`: `kid` is the signing key's id (letters, digits, `-`,
//! `_`; at most 32), `payload` the claims ([`GrantClaims`]) as JSON in unpadded base64url,
//! `signature` the Ed25519 signature (unpadded base64url) over the ASCII bytes
//! `v1.{kid}.{payload}`. The key id is inside what is signed, so a grant cannot be moved
//! to another key. Several keys can be valid at once (rotation, replicas): the verifier
//! holds a public key per id.
//!
//! The grant travels to the card frame in the URL **fragment** (never a query string,
//! which servers and proxies log) and from the frame to the intake in a JSON body.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The wire form's version prefix.
pub const GRANT_VERSION: &str = "v1";
/// Longest a grant may live: its `expires_at` at most this many seconds after `issued_at`.
pub const MAX_GRANT_LIFETIME_SECS: i64 = 15 * 60;
/// How far in the future `issued_at` may lie by the verifier's clock (clock skew
/// between gateway and intake).
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;
/// Longest grant accepted on the wire, in bytes (claims are small; this bounds parsing).
pub const MAX_GRANT_LEN: usize = 2048;
/// Longest key id.
pub const MAX_KID_LEN: usize = 32;

/// What a grant says. Every field is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantClaims {
    /// The merchant the card is tokenized for.
    pub merchant_id: String,
    /// The checkout the token is bound to: the gateway pays that checkout with it and no
    /// other.
    pub checkout_id: String,
    /// The payment attempt on that checkout this grant was issued for.
    pub attempt_id: String,
    /// The web origin of the page allowed to frame the card form (the gateway's own for
    /// the hosted page, one of the merchant's allowed origins for an embedded form).
    pub origin: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; at most [`MAX_GRANT_LIFETIME_SECS`] after `issued_at`.
    pub expires_at: i64,
    /// 128 random bits, unpadded base64url: what the vault records as spent.
    pub nonce: String,
    /// Whether the buyer's card is to be kept for the merchant's customer (then the token
    /// gets no lifetime; otherwise a short one).
    pub save_card: bool,
}

/// Why a grant was refused. [`GrantError::code`] is the stable error code clients see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("no grant was given")]
    Missing,
    #[error("the grant is not a well-formed grant")]
    Malformed,
    #[error("the grant was signed with a key this service does not know")]
    UnknownKey,
    #[error("the grant's signature does not verify")]
    SignatureInvalid,
    #[error("the grant has expired")]
    Expired,
    #[error("a grant key could not be used: {0}")]
    Key(String),
}

impl GrantError {
    /// The stable error code: `grant_missing`, `grant_malformed`, `grant_unknown_key`,
    /// `grant_signature_invalid`, `grant_expired` (or `grant_key_invalid` for a bad key
    /// file, which is a configuration error, never a client's).
    pub fn code(&self) -> &'static str {
        match self {
            GrantError::Missing => "grant_missing",
            GrantError::Malformed => "grant_malformed",
            GrantError::UnknownKey => "grant_unknown_key",
            GrantError::SignatureInvalid => "grant_signature_invalid",
            GrantError::Expired => "grant_expired",
            GrantError::Key(_) => "grant_key_invalid",
        }
    }
}

/// A key id: 1 to [`MAX_KID_LEN`] of letters, digits, `-` and `_`.
pub fn kid_valid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parse a `KID=PATH` command-line argument (`--grant-key`, `--grant-public-key`).
pub fn parse_key_arg(arg: &str) -> Result<(String, PathBuf), String> {
    let (kid, path) = arg.split_once('=').ok_or_else(|| format!("expected KID=PATH, got {arg:?}"))?;
    if !kid_valid(kid) {
        return Err(format!("key id {kid:?}: use 1 to {MAX_KID_LEN} letters, digits, '-' or '_'"));
    }
    if path.is_empty() {
        return Err("the key file path is empty".to_owned());
    }
    Ok((kid.to_owned(), PathBuf::from(path)))
}

/// 128 random bits, unpadded base64url: a grant nonce (and good for other one-time ids).
/// Fails only where the OS has no random generator at all.
pub fn random_nonce() -> Result<String, GrantError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).map_err(|_| GrantError::Key("the system random generator failed".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The gateway's grant key: an Ed25519 key pair and its id.
pub struct GrantSigner {
    kid: String,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for GrantSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantSigner").field("kid", &self.kid).field("public_key", &self.public_key_hex()).finish()
    }
}

impl GrantSigner {
    /// A new key pair as a PKCS#8 v2 document (DER), to be written to a key file.
    pub fn generate_pkcs8() -> Result<Vec<u8>, GrantError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| GrantError::Key("the system random generator failed".into()))?;
        Ok(document.as_ref().to_vec())
    }

    /// The key `kid` from a PKCS#8 document (DER).
    pub fn from_pkcs8(kid: &str, der: &[u8]) -> Result<GrantSigner, GrantError> {
        if !kid_valid(kid) {
            return Err(GrantError::Key(format!("key id {kid:?} is not valid")));
        }
        let pair =
            Ed25519KeyPair::from_pkcs8(der).map_err(|e| GrantError::Key(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(GrantSigner { kid: kid.to_owned(), pair })
    }

    /// The key `kid` from a PKCS#8 (DER) file.
    pub fn from_pkcs8_file(kid: &str, path: &Path) -> Result<GrantSigner, GrantError> {
        let der = std::fs::read(path).map_err(|e| GrantError::Key(format!("{}: {e}", path.display())))?;
        GrantSigner::from_pkcs8(kid, &der)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key, 64 lower-case hex digits: what a verifier's key file holds.
    pub fn public_key_hex(&self) -> String {
        self.pair.public_key().as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The wire form of `claims`, signed.
    pub fn sign(&self, claims: &GrantClaims) -> String {
        // Serialising a struct of strings, integers and a bool cannot fail.
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("{GRANT_VERSION}.{}.{}", self.kid, URL_SAFE_NO_PAD.encode(json));
        let signature = self.pair.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// The public grant keys a verifier trusts, by key id.
#[derive(Debug, Clone, Default)]
pub struct GrantVerifier {
    keys: BTreeMap<String, Vec<u8>>,
}

impl GrantVerifier {
    pub fn new() -> GrantVerifier {
        GrantVerifier::default()
    }

    /// Trust `public_key` (32 bytes of Ed25519 public key) under `kid`.
    pub fn add(&mut self, kid: &str, public_key: &[u8]) -> Result<(), GrantError> {
        if !kid_valid(kid) {
            return Err(GrantError::Key(format!("key id {kid:?} is not valid")));
        }
        if public_key.len() != 32 {
            return Err(GrantError::Key(format!("key {kid}: an Ed25519 public key is 32 bytes")));
        }
        if self.keys.insert(kid.to_owned(), public_key.to_vec()).is_some() {
            return Err(GrantError::Key(format!("key id {kid} is given twice")));
        }
        Ok(())
    }

    /// Trust the public key in `hex` (64 hex digits, surrounding white space ignored).
    pub fn add_hex(&mut self, kid: &str, hex: &str) -> Result<(), GrantError> {
        let bytes = hex::decode(hex.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| GrantError::Key(format!("key {kid}: expected 64 hex digits")))?;
        self.add(kid, &bytes)
    }

    /// Trust the public key in the file at `path` (64 hex digits).
    pub fn add_file(&mut self, kid: &str, path: &Path) -> Result<(), GrantError> {
        let text = std::fs::read_to_string(path).map_err(|e| GrantError::Key(format!("{}: {e}", path.display())))?;
        self.add_hex(kid, &text)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids trusted, in order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Check `grant` at `now` (unix seconds): the signature under the key it names, the
    /// claims' shape, and the expiry. Whether the nonce is unspent is the vault's to say;
    /// whether the origin is the framing page's is the caller's.
    pub fn verify(&self, grant: &str, now: i64) -> Result<GrantClaims, GrantError> {
        if grant.is_empty() {
            return Err(GrantError::Missing);
        }
        if grant.len() > MAX_GRANT_LEN || !grant.is_ascii() {
            return Err(GrantError::Malformed);
        }
        let (signed, signature) = grant.rsplit_once('.').ok_or(GrantError::Malformed)?;
        let mut parts = signed.splitn(3, '.');
        let (Some(version), Some(kid), Some(payload)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(GrantError::Malformed);
        };
        if version != GRANT_VERSION || !kid_valid(kid) || payload.contains('.') {
            return Err(GrantError::Malformed);
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| GrantError::Malformed)?;
        let key = self.keys.get(kid).ok_or(GrantError::UnknownKey)?;
        UnparsedPublicKey::new(&ED25519, key)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| GrantError::SignatureInvalid)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| GrantError::Malformed)?;
        let claims: GrantClaims = serde_json::from_slice(&json).map_err(|_| GrantError::Malformed)?;
        claims_well_formed(&claims)?;
        if claims.issued_at > now + MAX_CLOCK_SKEW_SECS {
            return Err(GrantError::Malformed);
        }
        if now >= claims.expires_at {
            return Err(GrantError::Expired);
        }
        Ok(claims)
    }
}

/// What every grant must satisfy whoever signed it: ids of plain characters, an origin,
/// a lifetime of at most [`MAX_GRANT_LIFETIME_SECS`], a nonce of 128 bits.
fn claims_well_formed(c: &GrantClaims) -> Result<(), GrantError> {
    let id_ok = |s: &str| {
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let lifetime = c.expires_at.saturating_sub(c.issued_at);
    let nonce_ok = URL_SAFE_NO_PAD.decode(&c.nonce).map(|n| n.len() == 16).unwrap_or(false);
    let ok = id_ok(&c.merchant_id)
        && id_ok(&c.checkout_id)
        && id_ok(&c.attempt_id)
        && crate::origin::parse_origin(&c.origin).is_some()
        && (1..=MAX_GRANT_LIFETIME_SECS).contains(&lifetime)
        && nonce_ok;
    if ok {
        Ok(())
    } else {
        Err(GrantError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn signer(kid: &str) -> GrantSigner {
        let der = GrantSigner::generate_pkcs8().expect("generate");
        GrantSigner::from_pkcs8(kid, &der).expect("load")
    }

    fn claims() -> GrantClaims {
        GrantClaims {
            merchant_id: "m_dev".into(),
            checkout_id: "chk_abc".into(),
            attempt_id: "att_1".into(),
            origin: "http://127.0.0.1:8080".into(),
            issued_at: NOW,
            expires_at: NOW + 600,
            nonce: random_nonce().expect("nonce"),
            save_card: false,
        }
    }

    fn verifier_for(signers: &[&GrantSigner]) -> GrantVerifier {
        let mut v = GrantVerifier::new();
        for s in signers {
            v.add_hex(s.kid(), &s.public_key_hex()).expect("add");
        }
        v
    }

    #[test]
    fn a_signed_grant_verifies_and_says_what_was_signed() {
        let s = signer("g1");
        let c = claims();
        let grant = s.sign(&c);
        assert!(grant.starts_with("v1.g1."));
        assert_eq!(verifier_for(&[&s]).verify(&grant, NOW + 1), Ok(c));
    }

    #[test]
    fn two_keys_verify_side_by_side_during_a_rotation() {
        let (old, new) = (signer("g1"), signer("g2"));
        let v = verifier_for(&[&old, &new]);
        assert!(v.verify(&old.sign(&claims()), NOW).is_ok());
        assert!(v.verify(&new.sign(&claims()), NOW).is_ok());
        assert_eq!(v.kids().collect::<Vec<_>>(), ["g1", "g2"]);
    }

    #[test]
    fn tampered_payload_or_signature_is_refused() {
        let s = signer("g1");
        let v = verifier_for(&[&s]);
        let grant = s.sign(&claims());
        let (signed, sig) = grant.rsplit_once('.').expect("dot");
        let (head, _) = signed.rsplit_once('.').expect("dot");
        // Another merchant in the payload, the signature kept.
        let mut other = claims();
        other.merchant_id = "m_other".into();
        let forged = format!("{head}.{}.{sig}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).expect("json")));
        assert_eq!(v.verify(&forged, NOW), Err(GrantError::SignatureInvalid));
        // One signature bit flipped.
        let mut raw = URL_SAFE_NO_PAD.decode(sig).expect("b64");
        raw[0] ^= 1;
        let flipped = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(raw));
        assert_eq!(v.verify(&flipped, NOW), Err(GrantError::SignatureInvalid));
    }

    #[test]
    fn a_grant_moved_to_another_key_id_is_refused() {
        let (g1, g2) = (signer("g1"), signer("g2"));
        let v = verifier_for(&[&g1, &g2]);
        let moved = g1.sign(&claims()).replacen("v1.g1.", "v1.g2.", 1);
        assert_eq!(v.verify(&moved, NOW), Err(GrantError::SignatureInvalid));
    }

    #[test]
    fn unknown_key_expired_and_malformed_grants_get_their_codes() {
        let s = signer("g1");
        let stranger = signer("g9");
        let v = verifier_for(&[&s]);
        assert_eq!(v.verify(&stranger.sign(&claims()), NOW).map_err(|e| e.code()), Err("grant_unknown_key"));
        // A key with the same id but other material: the signature does not verify.
        let impostor = signer("g1");
        assert_eq!(v.verify(&impostor.sign(&claims()), NOW), Err(GrantError::SignatureInvalid));
        let grant = s.sign(&claims());
        assert_eq!(v.verify(&grant, NOW + 600).map_err(|e| e.code()), Err("grant_expired"));
        assert_eq!(v.verify("", NOW).map_err(|e| e.code()), Err("grant_missing"));
        for bad in ["v1", "v1.g1", "v1.g1.x", "v2.g1.e30.AA", "v1.g 1.e30.AA", &"v1.g1.".repeat(500)] {
            assert_eq!(v.verify(bad, NOW).map_err(|e| e.code()), Err("grant_malformed"), "{bad}");
        }
    }

    #[test]
    fn claims_out_of_bounds_are_malformed_even_when_signed() {
        let s = signer("g1");
        let v = verifier_for(&[&s]);
        let cases: Vec<fn(&mut GrantClaims)> = vec![
            |c| c.expires_at = c.issued_at + MAX_GRANT_LIFETIME_SECS + 1,
            |c| c.expires_at = c.issued_at,
            |c| c.origin = "https://shop.example/path".into(),
            |c| c.nonce = "short".into(),
            |c| c.checkout_id = "chk abc".into(),
            |c| {
                c.issued_at = NOW + MAX_CLOCK_SKEW_SECS + 10;
                c.expires_at = c.issued_at + 60;
            },
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut c = claims();
            change(&mut c);
            assert_eq!(v.verify(&s.sign(&c), NOW), Err(GrantError::Malformed), "case {i}");
        }
    }

    #[test]
    fn nonces_are_128_random_bits() {
        let (a, b) = (random_nonce().expect("nonce"), random_nonce().expect("nonce"));
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).expect("b64").len(), 16);
    }

    #[test]
    fn key_arguments_and_bad_keys_are_refused_clearly() {
        assert_eq!(parse_key_arg("g1=/tmp/k"), Ok(("g1".to_owned(), PathBuf::from("/tmp/k"))));
        assert!(parse_key_arg("g1").is_err());
        assert!(parse_key_arg("g 1=/tmp/k").is_err());
        assert!(parse_key_arg("g1=").is_err());
        assert!(GrantSigner::from_pkcs8("g1", b"not a key").is_err());
        let mut v = GrantVerifier::new();
        assert!(v.add_hex("g1", "abcd").is_err());
        let s = signer("g1");
        v.add_hex("g1", &format!("{}\n", s.public_key_hex())).expect("trailing newline is fine");
        assert!(v.add_hex("g1", &s.public_key_hex()).is_err(), "a key id given twice");
        // The Debug form names the key id and public key, never the private key.
        assert!(format!("{s:?}").contains(&s.public_key_hex()));
    }
}
