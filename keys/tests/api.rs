//! The public API as the vault uses it: round trips, tampering, context binding, versions,
//! and what `Debug`/`Display` may show.

use paysys_keys::{
    AuditKey, CheckpointSigningKey, CheckpointVerifyingKey, Dek, FingerprintKey, Kcv, Kek, KeyError, RootKey,
};

const CRYPTO_MESSAGE: &str = "cryptographic operation failed";

fn assert_crypto_error<T>(result: Result<T, KeyError>, what: &str) {
    let error = result.err();
    assert_eq!(error, Some(KeyError::Crypto), "{what}");
    assert_eq!(
        error.map(|e| e.to_string()).as_deref(),
        Some(CRYPTO_MESSAGE),
        "{what}: Display must be the fixed message"
    );
}

fn hierarchy() -> Result<(RootKey, Kek, Dek), KeyError> {
    Ok((RootKey::generate()?, Kek::generate(3)?, Dek::generate(7)?))
}

const TOKEN: &[u8] = b"tok_4f9a2c";
const MERCHANT: &[u8] = b"merchant_1";

#[test]
fn all_key_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RootKey>();
    assert_send_sync::<Kek>();
    assert_send_sync::<Dek>();
    assert_send_sync::<FingerprintKey>();
    assert_send_sync::<AuditKey>();
    assert_send_sync::<CheckpointSigningKey>();
    assert_send_sync::<CheckpointVerifyingKey>();
    assert_send_sync::<Kcv>();
    assert_send_sync::<KeyError>();
}

#[test]
fn root_kek_dek_wrap_unwrap_round_trip() {
    let (root, kek, dek) = hierarchy().unwrap();
    let wrapped_kek = root.wrap_kek(&kek).unwrap();
    assert_eq!(wrapped_kek.len(), 12 + 32 + 16);
    let kek2 = root.unwrap_kek(3, &wrapped_kek).unwrap();
    assert_eq!(kek2.version(), 3);
    assert_eq!(kek2.kcv(), kek.kcv());

    let wrapped_dek = kek2.wrap_dek(&dek).unwrap();
    let dek2 = kek.unwrap_dek(7, &wrapped_dek).unwrap();
    assert_eq!(dek2.version(), 7);
    assert_eq!(dek2.kcv(), dek.kcv());

    // The unwrapped DEK opens what the original sealed, and vice versa.
    let sealed = dek.seal(b"4242424242424242", &[TOKEN, MERCHANT]).unwrap();
    assert_eq!(&**dek2.open(&sealed, &[TOKEN, MERCHANT]).unwrap(), b"4242424242424242");
    let sealed2 = dek2.seal(b"123", &[TOKEN]).unwrap();
    assert_eq!(&**dek.open(&sealed2, &[TOKEN]).unwrap(), b"123");
}

#[test]
fn dek_seal_open_round_trip_and_format() {
    let dek = Dek::generate(1).unwrap();
    for plaintext in [&b""[..], b"x", b"4111111111111111|12/30|Jane Doe", &[0u8; 1000]] {
        let sealed = dek.seal(plaintext, &[TOKEN, MERCHANT]).unwrap();
        assert_eq!(sealed.len(), 12 + plaintext.len() + 16);
        assert_eq!(&**dek.open(&sealed, &[TOKEN, MERCHANT]).unwrap(), plaintext);
    }
    // Empty context is a context too.
    let sealed = dek.seal(b"data", &[]).unwrap();
    assert_eq!(&**dek.open(&sealed, &[]).unwrap(), b"data");
    assert_crypto_error(dek.open(&sealed, &[b""]), "empty context vs one empty item");
}

#[test]
fn two_seals_of_the_same_plaintext_differ() {
    let dek = Dek::generate(1).unwrap();
    let a = dek.seal(b"4242424242424242", &[TOKEN, MERCHANT]).unwrap();
    let b = dek.seal(b"4242424242424242", &[TOKEN, MERCHANT]).unwrap();
    assert_ne!(a, b);
    assert_ne!(a[..12], b[..12], "nonces must differ");
}

#[test]
fn encryptions_counts_seals_not_opens() {
    let dek = Dek::generate(1).unwrap();
    assert_eq!(dek.encryptions(), 0);
    let sealed = dek.seal(b"a", &[]).unwrap();
    dek.seal(b"b", &[]).unwrap();
    dek.open(&sealed, &[]).unwrap();
    assert_eq!(dek.encryptions(), 2);
    const { assert!(paysys_keys::RANDOM_NONCE_SEAL_LIMIT == 1 << 32) };
}

#[test]
fn tampered_dek_ciphertexts_fail_with_crypto() {
    let dek = Dek::generate(1).unwrap();
    let plaintext = b"4242424242424242";
    let sealed = dek.seal(plaintext, &[TOKEN, MERCHANT]).unwrap();
    let len = sealed.len();
    for (what, index) in [
        ("nonce", 0),
        ("nonce end", 11),
        ("ciphertext", 12),
        ("ciphertext end", len - 17),
        ("tag", len - 16),
        ("tag end", len - 1),
    ] {
        for bit in [0x01, 0x80] {
            let mut bad = sealed.clone();
            bad[index] ^= bit;
            assert_crypto_error(dek.open(&bad, &[TOKEN, MERCHANT]), what);
        }
    }
    // Appended or removed bytes.
    let mut longer = sealed.clone();
    longer.push(0);
    assert_crypto_error(dek.open(&longer, &[TOKEN, MERCHANT]), "appended byte");
    assert_crypto_error(dek.open(&sealed[..len - 1], &[TOKEN, MERCHANT]), "dropped byte");
    // The untouched original still opens.
    assert_eq!(&**dek.open(&sealed, &[TOKEN, MERCHANT]).unwrap(), plaintext);
}

#[test]
fn context_binds_the_ciphertext_to_its_row() {
    let dek = Dek::generate(1).unwrap();
    let sealed = dek.seal(b"4242424242424242", &[TOKEN, MERCHANT]).unwrap();
    let cases: [(&str, &[&[u8]]); 7] = [
        ("moved to another token's row", &[b"tok_other", MERCHANT]),
        ("another merchant", &[TOKEN, b"merchant_2"]),
        ("flipped bit in context", &[b"tok_4f9a2d", MERCHANT]),
        ("context items swapped", &[MERCHANT, TOKEN]),
        ("same bytes, different split", &[b"tok_4f9a2cmerchant", b"_1"]),
        ("missing item", &[TOKEN]),
        ("extra item (e.g. a CVC label)", &[TOKEN, MERCHANT, b"cvc"]),
    ];
    for (what, context) in cases {
        assert_crypto_error(dek.open(&sealed, context), what);
    }
}

#[test]
fn dek_of_another_version_cannot_open() {
    let dek = Dek::generate(1).unwrap();
    let sealed = dek.seal(b"pan", &[TOKEN]).unwrap();
    // Another key altogether.
    assert_crypto_error(Dek::generate(2).unwrap().open(&sealed, &[TOKEN]), "other DEK");
    // A wrapped DEK cannot be relabelled as another version, so the only way to hold the same
    // bytes under another version is from inside the crate; `hierarchy.rs` tests that case.
    let kek = Kek::generate(1).unwrap();
    let wrapped = kek.wrap_dek(&dek).unwrap();
    assert!(kek.unwrap_dek(1, &wrapped).unwrap().open(&sealed, &[TOKEN]).is_ok());
    assert_crypto_error(kek.unwrap_dek(2, &wrapped), "relabelled DEK version");
}

#[test]
fn wrapped_dek_fails_under_wrong_version_or_wrong_kek() {
    let kek = Kek::generate(5).unwrap();
    let dek = Dek::generate(9).unwrap();
    let wrapped = kek.wrap_dek(&dek).unwrap();
    assert_crypto_error(kek.unwrap_dek(8, &wrapped), "wrong DEK version");
    assert_crypto_error(Kek::generate(5).unwrap().unwrap_dek(9, &wrapped), "wrong KEK, same version");

    // Same KEK bytes but labelled as another KEK version: the KEK version is in the AAD too.
    let root = RootKey::generate().unwrap();
    let wrapped_kek = root.wrap_kek(&kek).unwrap();
    assert_crypto_error(root.unwrap_kek(6, &wrapped_kek), "wrong KEK version");

    for index in [0, 12, wrapped.len() - 1] {
        let mut bad = wrapped.clone();
        bad[index] ^= 1;
        assert_crypto_error(kek.unwrap_dek(9, &bad), "tampered wrapped DEK");
    }
    assert!(kek.unwrap_dek(9, &wrapped).is_ok());
}

#[test]
fn wrapped_kek_fails_under_wrong_root_or_version() {
    let root = RootKey::generate().unwrap();
    let kek = Kek::generate(2).unwrap();
    let wrapped = root.wrap_kek(&kek).unwrap();
    assert_crypto_error(RootKey::generate().unwrap().unwrap_kek(2, &wrapped), "wrong root");
    assert_crypto_error(root.unwrap_kek(1, &wrapped), "wrong KEK version");
    let mut bad = wrapped.clone();
    bad[20] ^= 0x10;
    assert_crypto_error(root.unwrap_kek(2, &bad), "tampered wrapped KEK");
}

#[test]
fn blobs_cannot_change_role() {
    // A stored wrapped KEK, wrapped DEK and data ciphertext are not interchangeable. (That the
    // purpose label alone separates them, even under equal key bytes, is checked on the AAD
    // encoding in `aead.rs`.)
    let (root, kek, dek) = hierarchy().unwrap();
    let wrapped_kek = root.wrap_kek(&kek).unwrap();
    let wrapped_dek = kek.wrap_dek(&dek).unwrap();
    assert_crypto_error(kek.unwrap_dek(7, &wrapped_kek), "KEK blob as DEK blob");
    assert_crypto_error(root.unwrap_kek(3, &wrapped_dek), "DEK blob as KEK blob");
    assert_crypto_error(dek.open(&wrapped_dek, &[]), "DEK blob as data");
}

#[test]
fn truncated_input_fails_with_crypto() {
    let (root, kek, dek) = hierarchy().unwrap();
    let sealed = dek.seal(b"", &[TOKEN]).unwrap();
    assert_eq!(sealed.len(), 28);
    assert!(dek.open(&sealed, &[TOKEN]).is_ok());
    for len in 0..28 {
        let short = &sealed[..len];
        assert_crypto_error(dek.open(short, &[TOKEN]), "short sealed data");
        assert_crypto_error(kek.unwrap_dek(7, short), "short wrapped DEK");
        assert_crypto_error(root.unwrap_kek(3, short), "short wrapped KEK");
    }
}

#[test]
fn dev_key_hex_round_trip() {
    let root = RootKey::generate().unwrap();
    let hex = root.to_dev_key_hex();
    assert_eq!(hex.len(), 64);
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    let again = RootKey::from_dev_key_hex(&format!("  {}\n", &*hex)).unwrap();
    assert_eq!(again.kcv(), root.kcv());
    // The same root derives the same keys and unwraps the same KEKs.
    let kek = Kek::generate(1).unwrap();
    let wrapped = root.wrap_kek(&kek).unwrap();
    assert_eq!(again.unwrap_kek(1, &wrapped).unwrap().kcv(), kek.kcv());
    assert_eq!(
        again.derive_fingerprint_key().unwrap().fingerprint(b"m", b"4242"),
        root.derive_fingerprint_key().unwrap().fingerprint(b"m", b"4242")
    );
    // Uppercase hex is accepted.
    assert_eq!(RootKey::from_dev_key_hex(&hex.to_uppercase()).unwrap().kcv(), root.kcv());
}

#[test]
fn dev_key_hex_rejects_bad_input_without_echoing_it() {
    let good = "00".repeat(32);
    let bad_char = format!("{}zz", &good[..62]);
    for input in ["", "00", &good[..63], &format!("{good}00"), &bad_char, &format!("0x{}", &good[..62])] {
        let err = RootKey::from_dev_key_hex(input).unwrap_err();
        assert_eq!(err, KeyError::InvalidKeyEncoding, "{input:?}");
        let message = err.to_string();
        assert!(!message.contains("zz") && !message.contains("0000"), "{message}");
    }
}

/// HMAC-SHA256(0^32, "paysys/v1/kcv") = 39110f22…, computed with Python's `hmac` and
/// `openssl dgst -mac HMAC`; not dc95c0, the AES-256 zero-block KCV that is GCM's H.
#[test]
fn kcv_of_known_key() {
    let root = RootKey::from_dev_key_hex(&"00".repeat(32)).unwrap();
    assert_eq!(root.kcv().to_hex(), "39110f");
    assert_eq!(root.kcv().to_string(), "39110f");
    assert_eq!(Kcv::from_hex("39110f"), Some(root.kcv()));
}

#[test]
fn fingerprints_are_stable_and_scoped() {
    let root = RootKey::generate().unwrap();
    let key = root.derive_fingerprint_key().unwrap();
    let a = key.fingerprint(MERCHANT, b"4242424242424242");
    assert_eq!(a.len(), 64);
    assert!(a.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    assert_eq!(a, key.fingerprint(MERCHANT, b"4242424242424242"));
    assert_eq!(a, root.derive_fingerprint_key().unwrap().fingerprint(MERCHANT, b"4242424242424242"));
    assert_ne!(a, key.fingerprint(b"merchant_2", b"4242424242424242"), "scope must matter");
    assert_ne!(a, key.fingerprint(MERCHANT, b"4242424242424241"), "data must matter");
    // Length-prefixed: moving bytes between scope and data changes the fingerprint.
    assert_ne!(key.fingerprint(b"ab", b"c"), key.fingerprint(b"a", b"bc"));
    // Another root gives unrelated fingerprints.
    assert_ne!(
        a,
        RootKey::generate().unwrap().derive_fingerprint_key().unwrap().fingerprint(MERCHANT, b"4242424242424242")
    );
}

#[test]
fn audit_macs_verify_and_are_deterministic() {
    let root = RootKey::generate().unwrap();
    let audit = root.derive_audit_key().unwrap();
    let tag = audit.mac(b"record 1");
    assert!(audit.verify(b"record 1", &tag));
    assert!(!audit.verify(b"record 2", &tag));
    assert!(!audit.verify(b"record 1", &tag[..31]));
    assert!(!audit.verify(b"record 1", &[]));
    let mut bad = tag;
    bad[0] ^= 1;
    assert!(!audit.verify(b"record 1", &bad));
    // Deterministic across derivations (offline audit verification relies on it).
    assert_eq!(root.derive_audit_key().unwrap().mac(b"record 1"), tag);
}

#[test]
fn debug_never_prints_key_bytes() {
    let root = RootKey::generate().unwrap();
    let root_hex = root.to_dev_key_hex().to_string();
    let kek = Kek::generate(4).unwrap();
    let dek = Dek::generate(11).unwrap();
    // Only the root's bytes are reachable from outside; the unit tests in `hierarchy.rs`
    // check every key type against its actual bytes.
    let root_debug = format!("{root:?}");
    assert!(!root_debug.contains(&root_hex), "{root_debug}");
    assert!(!root_debug.to_lowercase().contains(&root_hex[..16]), "{root_debug}");
    assert_eq!(root_debug, format!("RootKey {{ kcv: \"{}\", .. }}", root.kcv()));
    let root_pretty = format!("{root:#?}");
    assert!(!root_pretty.contains(&root_hex[..16]));

    assert_eq!(format!("{kek:?}"), format!("Kek {{ version: 4, kcv: \"{}\", .. }}", kek.kcv()));
    assert_eq!(format!("{dek:?}"), format!("Dek {{ version: 11, kcv: \"{}\", encryptions: 0, .. }}", dek.kcv()));

    let fingerprint = root.derive_fingerprint_key().unwrap();
    let audit = root.derive_audit_key().unwrap();
    for (name, debug, kcv) in [
        ("FingerprintKey", format!("{fingerprint:?}"), fingerprint.kcv()),
        ("AuditKey", format!("{audit:?}"), audit.kcv()),
    ] {
        assert_eq!(debug, format!("{name} {{ kcv: \"{kcv}\", .. }}"));
        assert!(!debug.contains(&root_hex[..16]));
    }
}

#[test]
fn error_display_is_fixed_and_detail_free() {
    assert_eq!(KeyError::Crypto.to_string(), CRYPTO_MESSAGE);
    assert_eq!(KeyError::Random.to_string(), "system random number generator failed");
    assert!(KeyError::InvalidKeyEncoding.to_string().contains("64 hex characters"));
    // Usable as a boxed std error (anyhow / thiserror `#[from]`).
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(KeyError::Crypto);
    assert_eq!(boxed.to_string(), CRYPTO_MESSAGE);
}

/// A checkpoint signed under one root key verifies with that vault's public key only, the
/// same after every unseal (the key is derived, not stored), and not after any change.
#[test]
fn checkpoint_signatures_round_trip_under_the_vaults_public_key_only() {
    let root = RootKey::generate().unwrap();
    let again = RootKey::from_dev_key_hex(&root.to_dev_key_hex()).unwrap();
    let other = RootKey::generate().unwrap();
    let key = root.derive_checkpoint_key().unwrap();
    let public = key.verifying_key().clone();
    assert_eq!(again.derive_checkpoint_key().unwrap().verifying_key(), &public, "same root, same key");
    assert_ne!(other.derive_checkpoint_key().unwrap().verifying_key(), &public);

    let message = b"paysys/audit-checkpoint/v1 seq=42";
    let signature = key.sign(message).unwrap();
    assert_eq!(signature.len(), 64);
    assert!(public.verify(message, &signature));
    assert!(!public.verify(b"paysys/audit-checkpoint/v1 seq=43", &signature), "edited message");
    let forged = other.derive_checkpoint_key().unwrap().sign(message).unwrap();
    assert!(!public.verify(message, &forged), "another vault's signature");
    // Not an HMAC: the audit key's MAC of the message is no signature.
    assert!(!public.verify(message, &[root.derive_audit_key().unwrap().mac(message), [0; 32]].concat()));
    let debug = format!("{key:?}");
    assert!(debug.starts_with("CheckpointSigningKey") && debug.contains(&public.key_id()), "{debug}");
}
