//! Known-answer vectors for the primitives as this crate calls them, round trips, and
//! tamper tests.

use crate::aead::{self, build_aad};
use crate::derived::{derive, hmac_sign, hmac_verify};
use crate::material::KeyMaterial;
use crate::{Dek, Kek, KeyError, RootKey};
use ring::hkdf;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn key(s: &str) -> KeyMaterial {
    KeyMaterial::from_bytes(&h(s)).unwrap()
}

// --- AES-256-GCM: McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13–16
// (the AES-256 cases of the GCM specification NIST references).

struct GcmCase {
    key: &'static str,
    iv: &'static str,
    pt: &'static str,
    aad: &'static str,
    ct_tag: &'static str,
}

const GCM_CASES: &[GcmCase] = &[
    GcmCase {
        key: "0000000000000000000000000000000000000000000000000000000000000000",
        iv: "000000000000000000000000",
        pt: "",
        aad: "",
        ct_tag: "530f8afbc74536b9a963b4f1c4cb738b",
    },
    GcmCase {
        key: "0000000000000000000000000000000000000000000000000000000000000000",
        iv: "000000000000000000000000",
        pt: "00000000000000000000000000000000",
        aad: "",
        ct_tag: "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919",
    },
    GcmCase {
        key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        iv: "cafebabefacedbaddecaf888",
        pt: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        aad: "",
        ct_tag: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015adb094dac5d93471bdec1a502270e3cc6c",
    },
    GcmCase {
        key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        iv: "cafebabefacedbaddecaf888",
        pt: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        ct_tag: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f66276fc6ece0f4e1768cddf8853bb2d551b",
    },
];

#[test]
fn aes_256_gcm_known_answers() {
    for (i, case) in GCM_CASES.iter().enumerate() {
        let k = key(case.key);
        let iv: [u8; 12] = h(case.iv).try_into().unwrap();
        let sealed = aead::seal_with_nonce(&k, &iv, &h(case.aad), &h(case.pt)).unwrap();
        assert_eq!(hex::encode(&sealed[12..]), case.ct_tag, "case {}", 13 + i);
        assert_eq!(&sealed[..12], &iv);
        let opened = aead::open(&k, &h(case.aad), &sealed).unwrap();
        assert_eq!(hex::encode(&*opened), case.pt, "case {}", 13 + i);
    }
}

// --- HMAC-SHA256: RFC 4231 test cases 1–4, 6, 7 (case 5 is a truncated MAC).

#[test]
fn hmac_sha256_rfc4231() {
    let aa131 = "aa".repeat(131);
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        ("0b".repeat(20), b"Hi There".to_vec(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (
            hex::encode("Jefe"),
            b"what do ya want for nothing?".to_vec(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        ("aa".repeat(20), h(&"dd".repeat(50)), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        (
            "0102030405060708090a0b0c0d0e0f10111213141516171819".into(),
            h(&"cd".repeat(50)),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
        (
            aa131.clone(),
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            aa131,
            b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (k, data, expected) in cases {
        // The crate keeps 32-byte keys; RFC keys of other lengths go through ring directly,
        // which is the same `hmac::sign` call `hmac_sign` makes.
        let k = h(&k);
        let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k), &data);
        assert_eq!(hex::encode(tag.as_ref()), expected);
    }
    // And through the crate's own path with a 32-byte key (checked against ring above).
    let k = key(&"0b".repeat(32));
    let ours = hmac_sign(&k, b"Hi There");
    let theirs = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &h(&"0b".repeat(32))), b"Hi There");
    assert_eq!(&ours[..], theirs.as_ref());
    assert!(hmac_verify(&k, b"Hi There", &ours));
    assert!(!hmac_verify(&k, b"Hi there", &ours));
}

// --- HKDF-SHA256: RFC 5869 test cases 1–3.

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

#[test]
fn hkdf_sha256_rfc5869() {
    let cases = [
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "000102030405060708090a0b0c",
            "f0f1f2f3f4f5f6f7f8f9",
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
            "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
            "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
        ),
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "",
            "",
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ];
    for (ikm, salt, info, okm) in cases {
        let expected = h(okm);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &h(salt)).extract(&h(ikm));
        let info = h(info);
        let info_parts = [info.as_slice()];
        let mut out = vec![0u8; expected.len()];
        prk.expand(&info_parts, Len(expected.len())).unwrap().fill(&mut out).unwrap();
        assert_eq!(out, expected);
    }
    // The crate's derive() is the same extract/expand with its fixed salt and a label.
    let root = key(&"0b".repeat(32));
    let a = derive(&root, b"paysys/v1/audit").unwrap();
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"paysys/v1/hkdf-salt").extract(&h(&"0b".repeat(32)));
    let mut out = [0u8; 32];
    prk.expand(&[b"paysys/v1/audit".as_slice()], Len(32)).unwrap().fill(&mut out).unwrap();
    assert_eq!(a.bytes(), &out);
}

#[test]
fn kcv_of_the_zero_key_is_the_x9_24_value() {
    assert_eq!(crate::Kcv::of(&key(&"00".repeat(32))).to_hex(), "dc95c0");
}

// --- Hierarchy round trips.

#[test]
fn root_wraps_kek_wraps_dek_seals_data() {
    let root = RootKey::generate().unwrap();
    let kek = Kek::generate(3).unwrap();
    let dek = Dek::generate(7).unwrap();
    let wrapped_kek = root.wrap_kek(&kek).unwrap();
    let wrapped_dek = kek.wrap_dek(&dek).unwrap();
    let kek2 = root.unwrap_kek(3, &wrapped_kek).unwrap();
    let dek2 = kek2.unwrap_dek(7, &wrapped_dek).unwrap();
    assert_eq!(kek2.kcv(), kek.kcv());
    assert_eq!(dek2.kcv(), dek.kcv());
    let sealed = dek.seal(b"4242424242424242", &[b"tok_a", b"m_1"]).unwrap();
    assert_eq!(&*dek2.open(&sealed, &[b"tok_a", b"m_1"]).unwrap(), b"4242424242424242");
    assert_eq!(dek.encryptions(), 1);
}

#[test]
fn dev_key_hex_round_trips_and_rejects_garbage() {
    let root = RootKey::generate().unwrap();
    let again = RootKey::from_dev_key_hex(&format!("  {}\n", &*root.to_dev_key_hex())).unwrap();
    assert_eq!(again.kcv(), root.kcv());
    assert_eq!(RootKey::from_dev_key_hex("abcd").unwrap_err(), KeyError::InvalidKeyEncoding);
    assert_eq!(RootKey::from_dev_key_hex(&"zz".repeat(32)).unwrap_err(), KeyError::InvalidKeyEncoding);
}

#[test]
fn two_seals_of_the_same_plaintext_differ() {
    let dek = Dek::generate(1).unwrap();
    let a = dek.seal(b"same", &[b"t"]).unwrap();
    let b = dek.seal(b"same", &[b"t"]).unwrap();
    assert_ne!(a, b);
    assert_ne!(a[..12], b[..12]);
}

#[test]
fn fingerprints_are_stable_and_scoped() {
    let root = RootKey::generate().unwrap();
    let fp = root.derive_fingerprint_key().unwrap();
    let again = RootKey::from_dev_key_hex(&root.to_dev_key_hex()).unwrap().derive_fingerprint_key().unwrap();
    let a = fp.fingerprint(b"m_1", b"4242424242424242");
    assert_eq!(a.len(), 64);
    assert_eq!(a, again.fingerprint(b"m_1", b"4242424242424242"));
    assert_ne!(a, fp.fingerprint(b"m_2", b"4242424242424242"));
    assert_ne!(a, fp.fingerprint(b"m_1", b"5555555555554444"));
    // The scope is length-prefixed: moving a digit between scope and data changes the MAC.
    assert_ne!(fp.fingerprint(b"m_14", b"242"), fp.fingerprint(b"m_1", b"4242"));
}

#[test]
fn purpose_keys_are_separate() {
    let root = RootKey::generate().unwrap();
    let audit = root.derive_audit_key().unwrap();
    let grant = root.derive_grant_key().unwrap();
    let tag = audit.mac(b"record");
    assert!(audit.verify(b"record", &tag));
    assert!(!grant.verify(b"record", &tag));
    assert!(!audit.verify(b"record2", &tag));
    assert!(!audit.verify(b"record", &tag[..31]));
}

// --- Tampering: every failure is the same detail-free error.

fn assert_opaque(result: Result<impl Sized, KeyError>) {
    match result {
        Err(e) => {
            assert_eq!(e, KeyError::Crypto);
            assert_eq!(e.to_string(), "cryptographic operation failed");
        }
        Ok(_) => panic!("tampered input opened"),
    }
}

#[test]
fn tampering_with_sealed_data_fails_without_detail() {
    let dek = Dek::generate(1).unwrap();
    let ctx: [&[u8]; 2] = [b"tok_a", b"m_1"];
    let sealed = dek.seal(b"4242424242424242", &ctx).unwrap();
    let len = sealed.len();
    // A flipped bit in the nonce, the ciphertext, and the tag.
    for index in [0, 11, 12, 12 + 7, len - 16, len - 1] {
        let mut bad = sealed.clone();
        bad[index] ^= 0x01;
        assert_opaque(dek.open(&bad, &ctx));
    }
    // AAD: another token's row, another merchant, an extra item, a changed boundary.
    assert_opaque(dek.open(&sealed, &[b"tok_b", b"m_1"]));
    assert_opaque(dek.open(&sealed, &[b"tok_a", b"m_2"]));
    assert_opaque(dek.open(&sealed, &[b"tok_a", b"m_1", b"cvc"]));
    assert_opaque(dek.open(&sealed, &[b"tok_am", b"_1"]));
    // Another DEK version with the same bytes would still differ in AAD; another key fails.
    assert_opaque(Dek::generate(2).unwrap().open(&sealed, &ctx));
    // Truncated input is refused before slicing.
    assert_opaque(dek.open(&sealed[..27], &ctx));
    assert_opaque(dek.open(&[], &ctx));
}

#[test]
fn aad_binds_the_dek_version() {
    // Same key material, different version label: must not open.
    let k = key(&"11".repeat(32));
    let sealed = aead::seal(&k, &build_aad("data", &[1], &[b"t"]), b"x").unwrap();
    assert_opaque(aead::open(&k, &build_aad("data", &[2], &[b"t"]), &sealed));
    assert_opaque(aead::open(&k, &build_aad("dek", &[1], &[b"t"]), &sealed));
}

#[test]
fn unwrapping_under_the_wrong_version_or_key_fails() {
    let root = RootKey::generate().unwrap();
    let kek = Kek::generate(1).unwrap();
    let dek = Dek::generate(1).unwrap();
    let wrapped_kek = root.wrap_kek(&kek).unwrap();
    let wrapped_dek = kek.wrap_dek(&dek).unwrap();
    assert_opaque(root.unwrap_kek(2, &wrapped_kek));
    assert_opaque(RootKey::generate().unwrap().unwrap_kek(1, &wrapped_kek));
    assert_opaque(kek.unwrap_dek(2, &wrapped_dek));
    assert_opaque(Kek::generate(1).unwrap().unwrap_dek(1, &wrapped_dek));
    // A wrapped DEK is not a wrapped KEK, even under the same wrapping key bytes.
    assert_opaque(root.unwrap_kek(1, &wrapped_dek));
    let mut bad = wrapped_dek.clone();
    bad[20] ^= 0x80;
    assert_opaque(kek.unwrap_dek(1, &bad));
}

#[test]
fn debug_prints_no_key_bytes() {
    let root = RootKey::generate().unwrap();
    let hex_root = root.to_dev_key_hex();
    let text = format!("{root:?}");
    assert!(text.contains("kcv") && !text.contains(hex_root.as_str()));
    assert!(!text.contains(&hex_root[..16]));
    let kek = Kek::generate(4).unwrap();
    let t = format!("{kek:?}");
    assert!(t.contains("version: 4") && t.contains("kcv"));
    let dek = Dek::generate(5).unwrap();
    assert!(format!("{dek:?}").starts_with("Dek { version: 5, kcv: "));
    let audit = root.derive_audit_key().unwrap();
    assert!(format!("{audit:?}").starts_with("AuditKey { kcv: "));
}
