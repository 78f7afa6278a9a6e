//! Custodian shares of the root key (split knowledge, PCI DSS 3.6.1.2 / 3.7.6): what each
//! custodian is handed at `init`, types back at `unseal`, and the checks that decide
//! whether a set of shares may become the root key.
//!
//! The arithmetic is in `shamir.rs`; this module adds what makes a bare Shamir point safe
//! to hand to a person: which vault and which ceremony it belongs to, how many are needed,
//! a checksum against typos, and a KCV check so a wrong share never becomes a wrong key.

use std::fmt::{self, Write as _};

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::derived::{hmac_sha256, hmac_sha256_verify};
use crate::material::{KeyMaterial, KEY_LEN};
use crate::{shamir, Kcv, KeyError, ShareError};

/// Domain separation for share commitments (see [`CustodianShare::commitment_hex`]).
const COMMITMENT_DOMAIN: &[u8] = b"paysys/v1/custodian-share-commitment";
/// Length of a commitment: a full HMAC-SHA256 tag, so an altered share never matches by chance.
const COMMITMENT_LEN: usize = 32;
/// How many `threshold`-sized subsets [`combine_leaving_out_wrong`] tries before giving up.
/// Enough for any realistic ceremony (5 of 9 with one extra share is 9 subsets; all of
/// C(12, 6) is 924); it bounds the work a pile of wrong shares can cause.
const MAX_SUBSETS: usize = 10_000;
const SPLIT_ID_LEN: usize = 4;
const CHECKSUM_LEN: usize = 4;
/// Longest text form: `pss2-` + 6 + `-` + 8 + `-m255-x255-` + 64 + `-` + 8.
const TEXT_MAX_LEN: usize = 5 + 6 + 1 + 2 * SPLIT_ID_LEN + 11 + 2 * KEY_LEN + 1 + 2 * CHECKSUM_LEN;

/// The text form's version. It also fixes the KCV construction the share's check values
/// use, since a custodian compares them with what was printed at `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShareFormat {
    /// `pss1`: made before key format 2. Its root KCV and check value are the legacy
    /// AES-of-a-zero-block KCV ([`Kcv::legacy_of`]); still read so those vaults unseal.
    Pss1,
    /// `pss2`: KCVs are HMAC-SHA256 based ([`Kcv::of`]). What `split` makes now.
    Pss2,
}

impl ShareFormat {
    fn prefix(self) -> &'static str {
        match self {
            ShareFormat::Pss1 => "pss1",
            ShareFormat::Pss2 => "pss2",
        }
    }

    fn from_prefix(prefix: &str) -> Option<ShareFormat> {
        [ShareFormat::Pss1, ShareFormat::Pss2].into_iter().find(|f| prefix.eq_ignore_ascii_case(f.prefix()))
    }

    /// Domain separation for the checksum, so it cannot be confused with any other hash of
    /// the same bytes, nor a `pss1` share relabelled `pss2` pass it.
    fn checksum_domain(self) -> &'static [u8] {
        match self {
            ShareFormat::Pss1 => b"paysys/v1/custodian-share-checksum",
            ShareFormat::Pss2 => b"paysys/v2/custodian-share-checksum",
        }
    }

    fn kcv(self, key: &KeyMaterial) -> Kcv {
        match self {
            ShareFormat::Pss1 => Kcv::legacy_of(key),
            ShareFormat::Pss2 => Kcv::of(key),
        }
    }
}

/// The smallest threshold [`RootKey::split`](crate::RootKey::split) accepts. With a
/// threshold of 1 the polynomial is constant and every share *is* the root key, which
/// defeats split knowledge.
pub const MIN_CUSTODIAN_THRESHOLD: u8 = 2;

/// One custodian's share of the root key: a point on a random polynomial over GF(2^8)
/// whose value at zero is the root key, evaluated byte by byte, so the share is as long as
/// the key (32 bytes) and any `threshold` of them rebuild it while fewer reveal nothing.
///
/// Besides the point it records the root key's KCV (which vault), a random split id (which
/// ceremony) and the threshold, so [`RootKey::combine`](crate::RootKey::combine) can tell a
/// foreign, mixed or insufficient set apart from a wrong share.
///
/// # Text form
///
/// What the custodian is shown once and types back, e.g.
///
/// ```text
/// pss2-39110f-7f3a91c2-m3-x2-<64 hex characters>-5b0e9d41
///      │      │        │  │  │                    └ checksum: SHA-256 of all fields, 4 bytes
///      │      │        │  │  └ the share value (y), 32 bytes
///      │      │        │  └ index (x), 1..=255
///      │      │        └ threshold M: shares needed
///      │      └ split id, random per ceremony
///      └ KCV of the root key (public: it is in status output too)
/// ```
///
/// Hex is read in either case and surrounding whitespace is ignored. `pss1` shares (made
/// before key format 2) have the same fields, with the root KCV and the check value in
/// the legacy construction; they are still read so those vaults unseal.
///
/// # Handling
///
/// Not `Clone`; the value is wiped on drop; `Debug` prints only the index and the check
/// value:
///
/// ```compile_fail,E0277
/// fn needs_clone<T: Clone>() {}
/// needs_clone::<paysys_keys::CustodianShare>();
/// ```
pub struct CustodianShare {
    /// `pss1` or `pss2`: which KCV construction `vault_kcv` and `check_value` use.
    format: ShareFormat,
    /// KCV of the root key this share was split from.
    vault_kcv: Kcv,
    /// Random per call to `split`; all shares of one ceremony carry the same id.
    split_id: [u8; SPLIT_ID_LEN],
    /// Shares needed to rebuild the key; 2..=255.
    threshold: u8,
    /// The x coordinate; 1..=255, never 0 (the point at 0 is the key itself).
    index: u8,
    /// The y coordinates, one per key byte.
    value: KeyMaterial,
    /// KCV of `value`, computed once.
    check_value: Kcv,
}

impl CustodianShare {
    fn new(
        format: ShareFormat,
        vault_kcv: Kcv,
        split_id: [u8; SPLIT_ID_LEN],
        threshold: u8,
        index: u8,
        value: KeyMaterial,
    ) -> Self {
        let check_value = format.kcv(&value);
        CustodianShare { format, vault_kcv, split_id, threshold, index, value, check_value }
    }

    /// Reads a share's text form (see the type's docs). A wrong prefix, field count,
    /// character or range is [`ShareError::Malformed`]; a well-formed share whose checksum
    /// does not match is [`ShareError::Checksum`]. Neither says where the text was wrong.
    pub fn parse(text: &str) -> Result<CustodianShare, KeyError> {
        let fields: Vec<&str> = text.trim().split('-').collect();
        let [prefix, vault_kcv, split_id, threshold, index, value, checksum] = fields.as_slice() else {
            return Err(ShareError::Malformed.into());
        };
        let Some(format) = ShareFormat::from_prefix(prefix) else {
            return Err(ShareError::Malformed.into());
        };
        let mut kcv_bytes = [0u8; 3];
        hex::decode_to_slice(vault_kcv, &mut kcv_bytes).map_err(|_| ShareError::Malformed)?;
        let mut split = [0u8; SPLIT_ID_LEN];
        hex::decode_to_slice(split_id, &mut split).map_err(|_| ShareError::Malformed)?;
        let threshold = labelled_number(threshold, 'm').filter(|&m| m >= MIN_CUSTODIAN_THRESHOLD);
        let index = labelled_number(index, 'x').filter(|&x| x != 0);
        let (Some(threshold), Some(index)) = (threshold, index) else {
            return Err(ShareError::Malformed.into());
        };
        let mut y = KeyMaterial::zeroed();
        hex::decode_to_slice(value, y.expose_secret_mut()).map_err(|_| ShareError::Malformed)?;
        let mut claimed = [0u8; CHECKSUM_LEN];
        hex::decode_to_slice(checksum, &mut claimed).map_err(|_| ShareError::Malformed)?;

        let share = CustodianShare::new(format, Kcv::from_bytes(kcv_bytes), split, threshold, index, y);
        if !bool::from(share.checksum().ct_eq(&claimed)) {
            return Err(ShareError::Checksum.into());
        }
        Ok(share)
    }

    /// The text form to show the custodian once (see the type's docs). Wiped when dropped.
    pub fn to_text(&self) -> Zeroizing<String> {
        // Allocated at its final size, so no growing `String` leaves a stray copy behind.
        let mut out = Zeroizing::new(String::with_capacity(TEXT_MAX_LEN));
        let mut value_hex = Zeroizing::new([0u8; 2 * KEY_LEN]);
        let mut checksum_hex = [0u8; 2 * CHECKSUM_LEN];
        let encoded = hex::encode_to_slice(self.value.expose_secret(), &mut value_hex[..]).is_ok()
            && hex::encode_to_slice(self.checksum(), &mut checksum_hex).is_ok();
        if !encoded {
            // Unreachable: both buffers are exactly twice their input's length.
            return out;
        }
        // Writing to a `String` cannot fail.
        let _ = write!(
            out,
            "{}-{}-{}-m{}-x{}-",
            self.format.prefix(),
            self.vault_kcv.to_hex(),
            hex::encode(self.split_id),
            self.threshold,
            self.index
        );
        out.extend(value_hex.iter().map(|&c| char::from(c)));
        out.push('-');
        out.extend(checksum_hex.iter().map(|&c| char::from(c)));
        out
    }

    /// This share's own check value (the [`Kcv`] of the share value), shown to
    /// its custodian with the share and again when it is entered, so the custodian can
    /// confirm the vault received their share intact. Reveals nothing about the root key.
    pub fn check_value(&self) -> Kcv {
        self.check_value
    }

    /// The share's index (its x coordinate), 1..=255; each custodian's is different.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// How many shares of this split rebuild the root key.
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// KCV of the root key this share belongs to, in the share's own construction (see
    /// [`CustodianShare::carries_legacy_kcv`]).
    pub fn vault_kcv(&self) -> Kcv {
        self.vault_kcv
    }

    /// Whether this is a `pss1` share, made before key format 2: its root KCV and check
    /// value are the legacy AES-of-a-zero-block KCV, so it must be checked against the
    /// root KCV the vault recorded in that form, not against [`RootKey::kcv`](crate::RootKey::kcv).
    pub fn carries_legacy_kcv(&self) -> bool {
        self.format == ShareFormat::Pss1
    }

    /// What the vault records for this share at `init`, so that at unseal it can tell this
    /// exact share from an altered one on its own, before combining anything: 64 hex
    /// characters of HMAC-SHA256(share value, domain || split id || threshold || index).
    ///
    /// Safe to store beside the wrapped keys: it is a PRF output under a 256-bit secret
    /// (the share value, uniformly distributed on its own), so it reveals nothing about
    /// the share or the root key; a full tag, so no altered share matches it by chance.
    pub fn commitment_hex(&self) -> String {
        hex::encode(self.commitment_tag())
    }

    /// Whether `commitment_hex` (as returned by [`CustodianShare::commitment_hex`] at
    /// `init`) is this share's, compared in constant time. Malformed hex is `false`.
    pub fn matches_commitment(&self, commitment_hex: &str) -> bool {
        let mut claimed = [0u8; COMMITMENT_LEN];
        if hex::decode_to_slice(commitment_hex.trim(), &mut claimed).is_err() {
            return false;
        }
        let mut data = Vec::with_capacity(COMMITMENT_DOMAIN.len() + SPLIT_ID_LEN + 2);
        data.extend_from_slice(COMMITMENT_DOMAIN);
        data.extend_from_slice(&self.split_id);
        data.extend_from_slice(&[self.threshold, self.index]);
        hmac_sha256_verify(self.value.expose_secret(), &data, &claimed)
    }

    fn commitment_tag(&self) -> [u8; COMMITMENT_LEN] {
        hmac_sha256(self.value.expose_secret(), &[COMMITMENT_DOMAIN, &self.split_id, &[self.threshold, self.index]])
    }

    /// First 4 bytes of SHA-256(domain || vault KCV || split id || threshold || index || value).
    /// A typo detector, not a MAC: whoever can read the share can recompute it. What
    /// stops a deliberately altered share is the KCV check in [`combine_root_key`].
    fn checksum(&self) -> [u8; CHECKSUM_LEN] {
        // The digest state sees the share value; like the crate's cipher states it lives
        // only for this call (ring does not wipe it).
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(self.format.checksum_domain());
        context.update(self.vault_kcv.as_bytes());
        context.update(&self.split_id);
        context.update(&[self.threshold, self.index]);
        context.update(self.value.expose_secret());
        let digest = context.finish();
        let mut checksum = [0u8; CHECKSUM_LEN];
        checksum.copy_from_slice(&digest.as_ref()[..CHECKSUM_LEN]);
        checksum
    }
}

impl fmt::Debug for CustodianShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustodianShare")
            .field("index", &self.index)
            .field("check_value", &self.check_value.to_hex())
            .finish_non_exhaustive()
    }
}

/// `m3` → 3: the label (either case), then 1 to 3 decimal digits, at most 255.
fn labelled_number(field: &str, label: char) -> Option<u8> {
    let mut chars = field.chars();
    let first = chars.next()?;
    if !first.eq_ignore_ascii_case(&label) {
        return None;
    }
    let digits = chars.as_str();
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u8>().ok()
}

/// Splits the root key into `shares` custodian shares, any `threshold` of which rebuild it.
pub(crate) fn split_root_key(
    root: &KeyMaterial,
    root_kcv: Kcv,
    threshold: u8,
    shares: u8,
) -> Result<Vec<CustodianShare>, KeyError> {
    if threshold < MIN_CUSTODIAN_THRESHOLD || shares < threshold {
        return Err(ShareError::InvalidThreshold.into());
    }
    let mut split_id = [0u8; SPLIT_ID_LEN];
    SystemRandom::new().fill(&mut split_id).map_err(|_| KeyError::Random)?;
    let points = shamir::split(root, threshold, shares)?;
    Ok(points
        .into_iter()
        .map(|(index, value)| CustodianShare::new(ShareFormat::Pss2, root_kcv, split_id, threshold, index, value))
        .collect())
}

/// Checks a set of shares and rebuilds the root key from them, returning it only if its
/// KCV is `expected_kcv` (computed the way the shares' format says: legacy for `pss1`).
///
/// Checks run in this order, so the first error names the most useful fix: another vault's
/// share, then a share of another ceremony, then a repeated share, then too few shares
/// (every share so far is fine), then the KCV (some share is wrong). All shares are used,
/// not just the first `threshold`, so a wrong extra share is caught rather than ignored.
///
/// The KCV is 3 bytes, so a wrong key passes it with probability 2^-24; such a key still
/// cannot unwrap anything, since every unwrap is AES-GCM authenticated.
pub(crate) fn combine_root_key(shares: &[CustodianShare], expected_kcv: &Kcv) -> Result<KeyMaterial, ShareError> {
    let Some(first) = shares.first() else {
        return Err(ShareError::Insufficient);
    };
    if shares.iter().any(|share| share.vault_kcv != *expected_kcv) {
        return Err(ShareError::ForeignVault);
    }
    if shares.iter().any(|share| {
        share.split_id != first.split_id || share.threshold != first.threshold || share.format != first.format
    }) {
        return Err(ShareError::MixedSplits);
    }
    let mut seen = [false; 256];
    for share in shares {
        if std::mem::replace(&mut seen[usize::from(share.index)], true) {
            return Err(ShareError::Duplicate);
        }
    }
    if shares.len() < usize::from(first.threshold) {
        return Err(ShareError::Insufficient);
    }
    let points: Vec<(u8, &KeyMaterial)> = shares.iter().map(|share| (share.index, &share.value)).collect();
    let key = shamir::interpolate_at_zero(&points);
    if first.format.kcv(&key) != *expected_kcv {
        // `key` is wiped as it drops here.
        return Err(ShareError::KcvMismatch);
    }
    Ok(key)
}

/// Like [`combine_root_key`], but when the whole set fails the KCV check, looks for
/// `threshold` of the shares that pass it. Returns the key and the indices of the shares
/// it left out (empty when the whole set was right).
///
/// This is how one wrong share stops costing the other custodians their turn when it
/// cannot be recognised on its own (a `pss1` share, for which the vault recorded no
/// commitment): with one share more than the threshold, the subsets without it rebuild the
/// root key. Subsets are tried in lexicographic order of position, at most [`MAX_SUBSETS`]
/// of them; if none passes, `KcvMismatch`.
pub(crate) fn combine_leaving_out_wrong(
    shares: &[CustodianShare],
    expected_kcv: &Kcv,
) -> Result<(KeyMaterial, Vec<u8>), ShareError> {
    match combine_root_key(shares, expected_kcv) {
        Ok(key) => return Ok((key, Vec::new())),
        Err(ShareError::KcvMismatch) => {}
        Err(e) => return Err(e),
    }
    // Every structural check passed above, so every share has the same threshold.
    let threshold = shares.first().map(|s| usize::from(s.threshold)).ok_or(ShareError::Insufficient)?;
    let format = shares.first().map(|s| s.format).ok_or(ShareError::Insufficient)?;
    let mut positions: Vec<usize> = (0..threshold).collect();
    for _ in 0..MAX_SUBSETS {
        let points: Vec<(u8, &KeyMaterial)> =
            positions.iter().filter_map(|&p| shares.get(p)).map(|s| (s.index, &s.value)).collect();
        let key = shamir::interpolate_at_zero(&points);
        if format.kcv(&key) == *expected_kcv {
            let left_out = shares
                .iter()
                .enumerate()
                .filter(|(p, _)| !positions.contains(p))
                .map(|(_, share)| share.index)
                .collect();
            return Ok((key, left_out));
        }
        if !next_combination(&mut positions, shares.len()) {
            break;
        }
    }
    Err(ShareError::KcvMismatch)
}

/// Advances `positions` (strictly increasing, each below `n`) to the next combination in
/// lexicographic order; `false` after the last one.
fn next_combination(positions: &mut [usize], n: usize) -> bool {
    let k = positions.len();
    for i in (0..k).rev() {
        // positions[i] < n - k + i, written so that nothing can underflow.
        if positions[i] + k < n + i {
            positions[i] += 1;
            for j in i + 1..k {
                positions[j] = positions[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RootKey;

    /// A share that passes the checksum but carries a different value: what a custodian
    /// (or an attacker with write access to a share) could produce deliberately, since the
    /// checksum is no MAC.
    fn altered_with_valid_checksum(share: &CustodianShare) -> CustodianShare {
        let mut value = KeyMaterial::zeroed();
        value.expose_secret_mut().copy_from_slice(share.value.expose_secret());
        value.expose_secret_mut()[0] ^= 0x01;
        let altered =
            CustodianShare::new(share.format, share.vault_kcv, share.split_id, share.threshold, share.index, value);
        // Round-trip through the text form to prove the checksum really is valid.
        match CustodianShare::parse(&altered.to_text()) {
            Ok(parsed) => parsed,
            Err(e) => unreachable!("re-encoded share must parse: {e}"),
        }
    }

    #[test]
    fn checksum_valid_but_altered_share_fails_the_kcv_check() {
        let root = RootKey::generate().unwrap();
        let shares = root.split(3, 5).unwrap();
        let mut set: Vec<CustodianShare> = shares.into_iter().take(3).collect();
        set[1] = altered_with_valid_checksum(&set[1]);
        assert_eq!(
            combine_root_key(&set, &root.kcv()).err(),
            Some(ShareError::KcvMismatch),
            "an altered share must never yield a key"
        );
        assert_eq!(RootKey::combine(&set, &root.kcv()).err(), Some(KeyError::Share(ShareError::KcvMismatch)));
    }

    /// A wrong fourth share is caught even though the first three alone would be enough.
    #[test]
    fn altered_extra_share_is_not_ignored() {
        let root = RootKey::generate().unwrap();
        let mut shares = root.split(3, 5).unwrap();
        shares.truncate(4);
        shares[3] = altered_with_valid_checksum(&shares[3]);
        assert_eq!(RootKey::combine(&shares, &root.kcv()).err(), Some(KeyError::Share(ShareError::KcvMismatch)));
    }

    /// One altered share among M + 1: the whole set fails the KCV, the M good shares
    /// rebuild the key, and the altered one is named as left out, wherever it sits.
    #[test]
    fn one_wrong_share_among_threshold_plus_one_is_left_out() {
        let root = RootKey::generate().unwrap();
        for wrong in 0..4 {
            let shares = root.split(3, 5).unwrap();
            let mut set: Vec<CustodianShare> = shares.into_iter().take(4).collect();
            set[wrong] = altered_with_valid_checksum(&set[wrong]);
            assert_eq!(combine_root_key(&set, &root.kcv()).err(), Some(ShareError::KcvMismatch));
            let (key, left_out) = combine_leaving_out_wrong(&set, &root.kcv()).unwrap();
            assert_eq!(Kcv::of(&key), root.kcv());
            assert_eq!(left_out, vec![set[wrong].index]);
        }
        // All right: nothing left out.
        let shares = root.split(3, 5).unwrap();
        let (key, left_out) = combine_leaving_out_wrong(&shares, &root.kcv()).unwrap();
        assert_eq!(Kcv::of(&key), root.kcv());
        assert!(left_out.is_empty());
    }

    /// With exactly M shares, one of them wrong, no subset can be found.
    #[test]
    fn a_wrong_share_among_exactly_threshold_cannot_be_left_out() {
        let root = RootKey::generate().unwrap();
        let shares = root.split(3, 5).unwrap();
        let mut set: Vec<CustodianShare> = shares.into_iter().take(3).collect();
        set[1] = altered_with_valid_checksum(&set[1]);
        assert_eq!(combine_leaving_out_wrong(&set, &root.kcv()).err(), Some(ShareError::KcvMismatch));
        let mut few: Vec<CustodianShare> = root.split(3, 5).unwrap().into_iter().take(2).collect();
        few[0] = altered_with_valid_checksum(&few[0]);
        assert_eq!(combine_leaving_out_wrong(&few, &root.kcv()).err(), Some(ShareError::Insufficient));
    }

    /// An altered share passes its checksum but not the commitment recorded at init.
    #[test]
    fn an_altered_share_does_not_match_its_commitment() {
        let root = RootKey::generate().unwrap();
        let shares = root.split(2, 3).unwrap();
        let commitment = shares[0].commitment_hex();
        assert!(shares[0].matches_commitment(&commitment));
        assert!(!altered_with_valid_checksum(&shares[0]).matches_commitment(&commitment));
    }

    #[test]
    fn combinations_are_enumerated_in_order() {
        let mut positions = vec![0, 1];
        let mut seen = vec![positions.clone()];
        while next_combination(&mut positions, 4) {
            seen.push(positions.clone());
        }
        assert_eq!(seen, [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]);
        let mut all = vec![0, 1, 2];
        assert!(!next_combination(&mut all, 3));
        assert!(!next_combination(&mut [0, 1, 2], 2), "more positions than items: no combination, no panic");
    }

    #[test]
    fn share_with_changed_threshold_and_valid_checksum_is_mixed() {
        let root = RootKey::generate().unwrap();
        let shares = root.split(2, 3).unwrap();
        let mut value = KeyMaterial::zeroed();
        value.expose_secret_mut().copy_from_slice(shares[1].value.expose_secret());
        let relabelled =
            CustodianShare::new(shares[1].format, shares[1].vault_kcv, shares[1].split_id, 3, shares[1].index, value);
        let set = [CustodianShare::parse(&shares[0].to_text()).unwrap(), relabelled];
        assert_eq!(combine_root_key(&set, &root.kcv()).err(), Some(ShareError::MixedSplits));
    }

    #[test]
    fn labelled_numbers() {
        assert_eq!(labelled_number("m3", 'm'), Some(3));
        assert_eq!(labelled_number("X255", 'x'), Some(255));
        assert_eq!(labelled_number("x007", 'x'), Some(7));
        for bad in ["", "m", "x3", "m256", "m+3", "m-3", "m1000", "m 3", "m3 "] {
            assert_eq!(labelled_number(bad, 'm'), None, "{bad:?}");
        }
    }

    #[test]
    fn longest_text_fits_its_capacity() {
        let root = RootKey::generate().unwrap();
        let shares = root.split(255, 255).unwrap();
        let last = shares.last().unwrap();
        let text = last.to_text();
        assert_eq!(text.len(), TEXT_MAX_LEN);
        assert_eq!(text.capacity(), TEXT_MAX_LEN, "the string never grew");
    }
}
