//! AES-256-GCM sealing with a fresh random nonce, and the AAD encoding that binds every
//! ciphertext to what it is (purpose), which key versions made it, and where it belongs.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, Zeroizing};

use crate::material::KeyMaterial;
use crate::KeyError;

/// 96-bit GCM nonce, the only size GCM handles without hashing the IV.
pub(crate) const NONCE_LEN: usize = 12;
/// Full 128-bit GCM tag; truncated tags weaken forgery resistance.
pub(crate) const TAG_LEN: usize = 16;

/// AAD purpose labels. Versioned (`v1`) so a future format can never be confused with this one.
/// Key format 1: a KEK wrapped directly under the root key. Only unwrapped now, to migrate.
pub(crate) const PURPOSE_KEK_WRAP_LEGACY: &[u8] = b"paysys/v1/kek";
/// Key format 2: a KEK wrapped under the KEK-wrapping key derived from the root key.
pub(crate) const PURPOSE_KEK_WRAP: &[u8] = b"paysys/v2/kek";
pub(crate) const PURPOSE_DEK_WRAP: &[u8] = b"paysys/v1/dek";
pub(crate) const PURPOSE_DATA: &[u8] = b"paysys/v1/data";

/// A nonce that has never been used with the key it is about to be used with.
///
/// Not `Clone` or `Copy` and consumed by [`seal_with_nonce`], so one value cannot be passed
/// to two seals (the ring `Nonce` idea): nonce reuse under GCM leaks the XOR of
/// plaintexts and the authentication key.
pub(crate) struct Nonce([u8; NONCE_LEN]);

impl Nonce {
    /// 96 random bits. With random nonces a key must not seal more than 2^32 messages
    /// (NIST SP 800-38D §8.3); [`crate::Dek::encryptions`] lets the vault watch that.
    pub(crate) fn random() -> Result<Self, KeyError> {
        let mut bytes = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| KeyError::Random)?;
        Ok(Nonce(bytes))
    }

    /// Known-answer tests only: the vectors fix the nonce.
    #[cfg(test)]
    pub(crate) fn assume_unique_for_key(bytes: [u8; NONCE_LEN]) -> Self {
        Nonce(bytes)
    }
}

/// Builds associated data: `len(purpose) || purpose || version_1 .. version_n || (len(item) || item)*`,
/// lengths as u64 big-endian, versions as u32 big-endian.
///
/// Unambiguous because the purpose is length-prefixed, the number of versions is fixed by
/// the purpose, and every context item carries its own length: `["ab", "c"]` and
/// `["a", "bc"]` encode differently, so a ciphertext bound to (token, merchant) cannot be
/// opened with a context that merely concatenates to the same bytes.
pub(crate) fn associated_data(purpose: &[u8], versions: &[u32], context: &[&[u8]]) -> Vec<u8> {
    let capacity = 8 + purpose.len() + 4 * versions.len() + context.iter().map(|c| 8 + c.len()).sum::<usize>();
    let mut aad = Vec::with_capacity(capacity);
    push_length_prefixed(&mut aad, purpose);
    for version in versions {
        aad.extend_from_slice(&version.to_be_bytes());
    }
    for item in context {
        push_length_prefixed(&mut aad, item);
    }
    aad
}

/// `u64 BE length || bytes`. u64 so the encoding is infallible for any slice
/// (usize is at most 64 bits on every target Rust supports).
pub(crate) fn length_prefix(bytes: &[u8]) -> [u8; 8] {
    (bytes.len() as u64).to_be_bytes()
}

fn push_length_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&length_prefix(bytes));
    out.extend_from_slice(bytes);
}

/// Seals under a fresh random nonce. Output: `nonce(12) || ciphertext || tag(16)`.
pub(crate) fn seal(key: &KeyMaterial, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
    seal_with_nonce(key, Nonce::random()?, aad, plaintext)
}

/// The one AES-GCM encryption path; [`seal`] and the known-answer tests both come through here.
pub(crate) fn seal_with_nonce(
    key: &KeyMaterial,
    nonce: Nonce,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, KeyError> {
    // Built per call rather than cached, so the key's expanded forms live only for the
    // call; with the `zeroize` features of aes, ghash and polyval (keys/Cargo.toml) the AES
    // key schedule and the GHASH key are wiped when the cipher drops.
    let cipher = Aes256Gcm::new(key.expose_secret().into());
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce.0);
    out.extend_from_slice(plaintext);
    match cipher.encrypt_in_place_detached((&nonce.0).into(), aad, &mut out[NONCE_LEN..]) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(out)
        }
        Err(_) => {
            // Only reachable for inputs beyond GCM's length limit; the buffer still
            // holds plaintext, so wipe it before it is freed.
            out.zeroize();
            Err(KeyError::Crypto)
        }
    }
}

/// Opens `nonce(12) || ciphertext || tag(16)`. Any failure, including input too short to
/// hold a nonce and a tag, is the same [`KeyError::Crypto`].
pub(crate) fn open(key: &KeyMaterial, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    // Length-checked splits: no index arithmetic that could panic on short input.
    let (nonce, rest) = sealed.split_first_chunk::<NONCE_LEN>().ok_or(KeyError::Crypto)?;
    let (ciphertext, tag) = rest.split_last_chunk::<TAG_LEN>().ok_or(KeyError::Crypto)?;
    let cipher = Aes256Gcm::new(key.expose_secret().into());
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    cipher.decrypt_in_place_detached(nonce.into(), aad, &mut plaintext, tag.into()).map_err(|_| KeyError::Crypto)?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    //! McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", test cases 13–16
    //! (the AES-256 cases), run through the same `seal_with_nonce` / `open` the vault uses.

    use super::*;

    /// The cipher's AES key schedule wipes itself on drop (a compile-time check: this
    /// stops building if the `zeroize` feature of `aes` is lost from the graph).
    #[test]
    fn the_aes_key_schedule_is_zeroized_on_drop() {
        fn wipes_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wipes_on_drop::<aes::Aes256>();
    }

    struct Vector {
        key: &'static str,
        plaintext: &'static str,
        aad: &'static str,
        iv: &'static str,
        ciphertext: &'static str,
        tag: &'static str,
    }

    const K15: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    const P15: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                       1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    const C15: &str = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                       8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";

    const VECTORS: &[(&str, Vector)] = &[
        (
            "test case 13: empty plaintext, no AAD",
            Vector {
                key: "0000000000000000000000000000000000000000000000000000000000000000",
                plaintext: "",
                aad: "",
                iv: "000000000000000000000000",
                ciphertext: "",
                tag: "530f8afbc74536b9a963b4f1c4cb738b",
            },
        ),
        (
            "test case 14: one zero block, no AAD",
            Vector {
                key: "0000000000000000000000000000000000000000000000000000000000000000",
                plaintext: "00000000000000000000000000000000",
                aad: "",
                iv: "000000000000000000000000",
                ciphertext: "cea7403d4d606b6e074ec5d3baf39d18",
                tag: "d0d1c8a799996bf0265b98b5d48ab919",
            },
        ),
        (
            "test case 15: 64-byte plaintext, no AAD",
            Vector {
                key: K15,
                plaintext: P15,
                aad: "",
                iv: "cafebabefacedbaddecaf888",
                ciphertext: C15,
                tag: "b094dac5d93471bdec1a502270e3cc6c",
            },
        ),
        (
            "test case 16: 60-byte plaintext with AAD",
            Vector {
                key: K15,
                // First 60 bytes of P15 / C15.
                plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                            1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
                aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
                iv: "cafebabefacedbaddecaf888",
                ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                tag: "76fc6ece0f4e1768cddf8853bb2d551b",
            },
        ),
    ];

    fn key_from_hex(hex_key: &str) -> KeyMaterial {
        KeyMaterial::from_unwrapped(&hex::decode(hex_key).unwrap()).unwrap()
    }

    #[test]
    fn mcgrew_viega_aes256_gcm_vectors_seal() {
        for (name, v) in VECTORS {
            let key = key_from_hex(v.key);
            let iv: [u8; NONCE_LEN] = hex::decode(v.iv).unwrap().try_into().unwrap();
            let sealed = seal_with_nonce(
                &key,
                Nonce::assume_unique_for_key(iv),
                &hex::decode(v.aad).unwrap(),
                &hex::decode(v.plaintext).unwrap(),
            )
            .unwrap();
            let expected = format!("{}{}{}", v.iv, v.ciphertext, v.tag);
            assert_eq!(hex::encode(&sealed), expected, "{name}");
        }
    }

    #[test]
    fn mcgrew_viega_aes256_gcm_vectors_open() {
        for (name, v) in VECTORS {
            let key = key_from_hex(v.key);
            let sealed = hex::decode(format!("{}{}{}", v.iv, v.ciphertext, v.tag)).unwrap();
            let aad = hex::decode(v.aad).unwrap();
            let plaintext = open(&key, &aad, &sealed).unwrap();
            assert_eq!(hex::encode(&*plaintext), v.plaintext, "{name}");

            // The same vector with a wrong AAD must not open.
            let mut wrong_aad = aad.clone();
            wrong_aad.push(0);
            assert_eq!(open(&key, &wrong_aad, &sealed), Err(KeyError::Crypto), "{name}");
        }
    }

    #[test]
    fn associated_data_is_unambiguous() {
        let a = associated_data(PURPOSE_DATA, &[1], &[b"ab", b"c"]);
        let b = associated_data(PURPOSE_DATA, &[1], &[b"a", b"bc"]);
        let c = associated_data(PURPOSE_DATA, &[1], &[b"abc"]);
        let d = associated_data(PURPOSE_DATA, &[1], &[b"abc", b""]);
        let e = associated_data(PURPOSE_DEK_WRAP, &[1], &[b"abc"]);
        let all = [&a, &b, &c, &d, &e];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(
            hex::encode(associated_data(b"p", &[0x0102_0304], &[b"xy"])),
            "000000000000000170\
             01020304\
             00000000000000027879"
        );
    }

    #[test]
    fn open_rejects_input_shorter_than_nonce_and_tag() {
        let key = KeyMaterial::zeroed();
        for len in 0..NONCE_LEN + TAG_LEN {
            assert_eq!(open(&key, b"", &vec![0u8; len]), Err(KeyError::Crypto), "len {len}");
        }
    }
}
