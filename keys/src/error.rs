//! The crate's one error type, with the custodian-share detail nested inside it.

/// Why a key operation failed.
///
/// Like ring's `Unspecified`, [`KeyError::Crypto`] deliberately says nothing about *which*
/// check failed (bad tag, wrong length, wrong context, wrong key version): an attacker who
/// can tell those apart learns something about the key or the plaintext. Display texts are
/// fixed strings, safe to log; they never contain key material, plaintext or ciphertext.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A seal, open, wrap or unwrap failed. Covers a wrong key, a wrong key version, a
    /// wrong context, tampered or truncated input, and an unwrapped key of the wrong size.
    #[error("cryptographic operation failed")]
    Crypto,
    /// The operating system's random number generator failed; no key or nonce was made.
    #[error("system random number generator failed")]
    Random,
    /// Key material handed in from outside (the dev root key file) is not 64 hex
    /// characters. Which character was wrong is not reported, so the key never reaches a log.
    #[error("key encoding is invalid (expected 64 hex characters)")]
    InvalidKeyEncoding,
    /// Splitting the root key into custodian shares, reading a share, or rebuilding the
    /// root key from shares failed; the detail says which check, never which bytes.
    #[error("custodian share rejected: {0}")]
    Share(#[from] ShareError),
}

/// Why a custodian share, or a set of them, was refused.
///
/// Unlike [`KeyError::Crypto`], these say which check failed: the officer at the console has
/// to know whether to retype a share, fetch another custodian, or stop because a share
/// belongs to another vault. Display texts are fixed strings; no share byte, index or
/// check value is ever part of one, so they are safe to log and to return to a client.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// [`RootKey::split`](crate::RootKey::split) was asked for a threshold below 2 or above
    /// the number of shares. With a threshold of 1 every share would be the root key itself.
    #[error("threshold must be at least 2 and at most the number of shares")]
    InvalidThreshold,
    /// The share text is not `pss1-<kcv>-<split>-m<M>-x<index>-<64 hex>-<8 hex>`: wrong
    /// prefix, wrong number of fields, a non-hex character, or an index or threshold out of range.
    #[error("share text is malformed")]
    Malformed,
    /// The share text is well formed but its checksum does not match: a typo, or a change.
    #[error("share checksum does not match (mistyped or altered share)")]
    Checksum,
    /// Two shares with the same index were given; each custodian's share counts once.
    #[error("the same share was given twice")]
    Duplicate,
    /// The share was made for a root key with a different KCV: another vault's share.
    #[error("share belongs to another vault")]
    ForeignVault,
    /// The shares come from different splits of this vault's root key (an earlier ceremony),
    /// or disagree about the threshold; they cannot be combined with each other.
    #[error("shares come from different splits")]
    MixedSplits,
    /// Fewer shares than the threshold recorded in them (or none at all). Every other check
    /// has passed when this is returned, so it doubles as "so far so good, need more".
    #[error("not enough shares to rebuild the root key")]
    Insufficient,
    /// The shares passed every check but the rebuilt key's KCV is not the expected one: at
    /// least one share is wrong. The rebuilt key was wiped, never returned.
    #[error("rebuilt root key does not match the expected KCV")]
    KcvMismatch,
}
