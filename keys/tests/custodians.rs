//! The custodian ceremony as the vault drives it: split the root key M-of-N, hand each
//! share out as text, read shares back, and rebuild the root key only from a right set.

use paysys_keys::{CustodianShare, KeyError, RootKey, ShareError};

fn share_error<T>(result: Result<T, KeyError>) -> Option<ShareError> {
    match result {
        Err(KeyError::Share(detail)) => Some(detail),
        _ => None,
    }
}

/// What a custodian hands back: the text, read again.
fn retyped(share: &CustodianShare) -> Result<CustodianShare, KeyError> {
    CustodianShare::parse(&share.to_text())
}

fn retyped_all(shares: &[CustodianShare], indices: &[usize]) -> Result<Vec<CustodianShare>, KeyError> {
    indices.iter().map(|&i| retyped(&shares[i])).collect()
}

/// Proves the rebuilt key is the original by using it: a KEK wrapped under the original
/// unwraps under the rebuilt one.
fn assert_same_key(original: &RootKey, rebuilt: &RootKey) -> Result<(), KeyError> {
    assert_eq!(rebuilt.kcv(), original.kcv());
    let kek = paysys_keys::Kek::generate(1)?;
    let wrapped = original.wrap_kek(&kek)?;
    assert_eq!(rebuilt.unwrap_kek(1, &wrapped)?.kcv(), kek.kcv());
    Ok(())
}

#[test]
fn every_three_of_five_subset_rebuilds_the_root_key() {
    let root = RootKey::generate().unwrap();
    let shares = root.split(3, 5).unwrap();
    assert_eq!(shares.len(), 5);
    assert_eq!(shares.iter().map(CustodianShare::index).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    let mut subsets = 0;
    for a in 0..5 {
        for b in a + 1..5 {
            for c in b + 1..5 {
                let set = retyped_all(&shares, &[a, b, c]).unwrap();
                assert_same_key(&root, &RootKey::combine(&set, &root.kcv()).unwrap()).unwrap();
                // Order does not matter.
                let reversed = retyped_all(&shares, &[c, b, a]).unwrap();
                assert_eq!(RootKey::combine(&reversed, &root.kcv()).unwrap().kcv(), root.kcv());
                subsets += 1;
            }
        }
    }
    assert_eq!(subsets, 10);
    // More than the threshold works too.
    assert_same_key(&root, &RootKey::combine(&shares[..4], &root.kcv()).unwrap()).unwrap();
    assert_same_key(&root, &RootKey::combine(&shares, &root.kcv()).unwrap()).unwrap();
}

#[test]
fn fewer_than_threshold_shares_are_insufficient() {
    let root = RootKey::generate().unwrap();
    let shares = root.split(3, 5).unwrap();
    for a in 0..5 {
        for b in a + 1..5 {
            let set = retyped_all(&shares, &[a, b]).unwrap();
            assert_eq!(share_error(RootKey::combine(&set, &root.kcv())), Some(ShareError::Insufficient));
        }
        let single = retyped_all(&shares, &[a]).unwrap();
        assert_eq!(share_error(RootKey::combine(&single, &root.kcv())), Some(ShareError::Insufficient));
    }
    assert_eq!(share_error(RootKey::combine(&[], &root.kcv())), Some(ShareError::Insufficient));
}

/// The vault's unseal loop: call `combine` after each share; `Insufficient` is progress.
#[test]
fn shares_one_at_a_time_report_progress_then_unseal() {
    let root = RootKey::generate().unwrap();
    let expected = root.kcv();
    let texts: Vec<_> = root.split(3, 5).unwrap().iter().map(|s| s.to_text()).collect();
    drop(root);
    let mut collected = Vec::new();
    for (step, text) in [&texts[4], &texts[0], &texts[2]].into_iter().enumerate() {
        let share = CustodianShare::parse(text).unwrap();
        assert_eq!(share.threshold(), 3);
        assert_eq!(share.vault_kcv(), expected);
        collected.push(share);
        let result = RootKey::combine(&collected, &expected);
        if step < 2 {
            assert_eq!(share_error(result), Some(ShareError::Insufficient), "after {} of 3", step + 1);
        } else {
            assert_eq!(result.unwrap().kcv(), expected);
        }
    }
}

#[test]
fn bit_flipped_share_text_fails_its_checksum() {
    let root = RootKey::generate().unwrap();
    let shares = root.split(2, 3).unwrap();
    let text = shares[0].to_text();
    let value_start = text.rfind('-').unwrap() - 64;
    // Flip the low bit of every character of the value, one at a time.
    for position in value_start..value_start + 64 {
        let mut bytes = text.as_bytes().to_vec();
        let digit = u8::from_str_radix(std::str::from_utf8(&bytes[position..=position]).unwrap(), 16).unwrap();
        bytes[position] = format!("{:x}", digit ^ 1).as_bytes()[0];
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(share_error(CustodianShare::parse(&tampered)), Some(ShareError::Checksum), "position {position}");
    }
    // A typo in the threshold, index, split id, KCV or checksum itself is caught too.
    let fields: Vec<&str> = text.split('-').collect();
    for (field, replacement) in [(1, "000000"), (2, "00000000"), (3, "m3"), (4, "x3"), (6, "00000000")] {
        let mut changed = fields.clone();
        if changed[field] == replacement {
            continue;
        }
        changed[field] = replacement;
        let tampered = changed.join("-");
        assert_eq!(share_error(CustodianShare::parse(&tampered)), Some(ShareError::Checksum), "field {field}");
    }
}

#[test]
fn malformed_share_text_is_rejected_without_echoing_it() {
    let root = RootKey::generate().unwrap();
    let text = root.split(2, 2).unwrap()[1].to_text();
    let value = text.split('-').nth(5).unwrap().to_owned();
    let cases = [
        String::new(),
        "pss2".to_owned(),
        text.replacen("pss2", "pss3", 1),
        text.replacen("-m2-", "-m1-", 1),
        text.replacen("-m2-", "-2-", 1),
        text.replacen("-x2-", "-x0-", 1),
        text.replacen("-x2-", "-x256-", 1),
        text.replacen(&value, &value[..62], 1),
        text.replacen(&value, &format!("{}zz", &value[..62]), 1),
        format!("{}-00", *text),
        text.replace('-', "_"),
    ];
    for case in &cases {
        let error = CustodianShare::parse(case).err();
        assert_eq!(error, Some(KeyError::Share(ShareError::Malformed)), "{case}");
        assert_eq!(error.map(|e| e.to_string()).unwrap(), "custodian share rejected: share text is malformed");
    }
}

#[test]
fn text_form_round_trips_and_reads_leniently() {
    let root = RootKey::generate().unwrap();
    let shares = root.split(2, 3).unwrap();
    for share in &shares {
        let text = share.to_text();
        let fields: Vec<&str> = text.split('-').collect();
        assert_eq!(fields.len(), 7, "{}", share.index());
        assert_eq!(fields[0], "pss2");
        assert_eq!(fields[1], root.kcv().to_hex());
        assert_eq!(fields[2].len(), 8);
        assert_eq!(fields[3], "m2");
        assert_eq!(fields[4], format!("x{}", share.index()));
        assert_eq!(fields[5].len(), 64);
        assert_eq!(fields[6].len(), 8);
        assert!(text.bytes().all(|b| b == b'-' || b.is_ascii_digit() || b.is_ascii_lowercase()));

        let parsed = CustodianShare::parse(&text).unwrap();
        assert_eq!(*parsed.to_text(), *text);
        assert_eq!(parsed.index(), share.index());
        assert_eq!(parsed.threshold(), 2);
        assert_eq!(parsed.vault_kcv(), root.kcv());
        assert_eq!(parsed.check_value(), share.check_value());

        // Upper case and surrounding whitespace, as retyped from paper.
        let shouted = format!("  {}\n", text.to_uppercase());
        assert_eq!(*CustodianShare::parse(&shouted).unwrap().to_text(), *text);
    }
    // All shares of one split share the split id; each has its own value and check value.
    let split_ids: Vec<String> = shares.iter().map(|s| s.to_text().split('-').nth(2).unwrap().to_owned()).collect();
    assert!(split_ids.iter().all(|id| *id == split_ids[0]));
    assert_ne!(shares[0].to_text().split('-').nth(5), shares[1].to_text().split('-').nth(5));
}

#[test]
fn repeated_share_is_a_duplicate() {
    let root = RootKey::generate().unwrap();
    let shares = root.split(3, 5).unwrap();
    // The same custodian twice, even with enough shares overall.
    let set = retyped_all(&shares, &[0, 2, 0]).unwrap();
    assert_eq!(share_error(RootKey::combine(&set, &root.kcv())), Some(ShareError::Duplicate));
    let set = retyped_all(&shares, &[0, 1, 2, 1]).unwrap();
    assert_eq!(share_error(RootKey::combine(&set, &root.kcv())), Some(ShareError::Duplicate));
}

#[test]
fn share_of_another_vault_is_foreign() {
    let ours = RootKey::generate().unwrap();
    let theirs = RootKey::generate().unwrap();
    let our_shares = ours.split(2, 3).unwrap();
    let their_shares = theirs.split(2, 3).unwrap();
    let set = vec![retyped(&our_shares[0]).unwrap(), retyped(&their_shares[1]).unwrap()];
    assert_eq!(share_error(RootKey::combine(&set, &ours.kcv())), Some(ShareError::ForeignVault));
    // Even alone, before the threshold is reached, a foreign share is named as such.
    let set = vec![retyped(&their_shares[0]).unwrap()];
    assert_eq!(share_error(RootKey::combine(&set, &ours.kcv())), Some(ShareError::ForeignVault));
    // A complete set of the other vault's shares does not unseal this vault.
    assert_eq!(share_error(RootKey::combine(&their_shares, &ours.kcv())), Some(ShareError::ForeignVault));
}

#[test]
fn shares_of_two_ceremonies_for_the_same_key_do_not_mix() {
    let root = RootKey::generate().unwrap();
    let first = root.split(2, 3).unwrap();
    let second = root.split(2, 3).unwrap();
    let set = vec![retyped(&first[0]).unwrap(), retyped(&second[1]).unwrap()];
    assert_eq!(share_error(RootKey::combine(&set, &root.kcv())), Some(ShareError::MixedSplits));
    // Each ceremony on its own works.
    assert_eq!(RootKey::combine(&first[1..], &root.kcv()).unwrap().kcv(), root.kcv());
    assert_eq!(RootKey::combine(&second[..2], &root.kcv()).unwrap().kcv(), root.kcv());
}

#[test]
fn split_refuses_thresholds_below_two_or_above_the_share_count() {
    let root = RootKey::generate().unwrap();
    for (threshold, shares) in [(0, 0), (0, 3), (1, 1), (1, 5), (3, 2), (255, 254)] {
        assert_eq!(
            share_error(root.split(threshold, shares)),
            Some(ShareError::InvalidThreshold),
            "{threshold} of {shares}"
        );
    }
    assert_eq!(paysys_keys::MIN_CUSTODIAN_THRESHOLD, 2);
    assert_eq!(root.split(2, 2).unwrap().len(), 2);
    let all = root.split(2, 255).unwrap();
    assert_eq!(all.last().map(CustodianShare::index), Some(255));
    assert_eq!(RootKey::combine(&all[250..252], &root.kcv()).unwrap().kcv(), root.kcv());
}

#[test]
fn shares_are_full_length_and_independent_of_the_key_bytes() {
    let root = RootKey::generate().unwrap();
    let key_hex = root.to_dev_key_hex();
    for share in root.split(2, 5).unwrap() {
        let text = share.to_text();
        let value = text.split('-').nth(5).unwrap();
        assert_eq!(value.len(), 64, "32 bytes, never half a key");
        assert_ne!(value, key_hex.as_str());
        for window in key_hex.as_bytes().chunks(8) {
            assert!(!value.contains(std::str::from_utf8(window).unwrap()));
        }
    }
}

#[test]
fn debug_shows_index_and_check_value_only() {
    let root = RootKey::generate().unwrap();
    let shares = root.split(2, 3).unwrap();
    for share in &shares {
        let debug = format!("{share:?}|{share:#?}");
        assert!(debug.contains(&share.check_value().to_hex()), "{debug}");
        assert!(debug.contains(&format!("index: {}", share.index())), "{debug}");
        let text = share.to_text();
        let value = text.split('-').nth(5).unwrap();
        for window in value.as_bytes().chunks(8) {
            let window = std::str::from_utf8(window).unwrap();
            assert!(!debug.to_lowercase().contains(window), "{debug} contains share bytes");
        }
        let first_byte = u8::from_str_radix(&value[..2], 16).unwrap();
        let second_byte = u8::from_str_radix(&value[2..4], 16).unwrap();
        assert!(!debug.contains(&format!("[{first_byte}, {second_byte}")), "{debug}");
        assert!(!debug.contains(text.split('-').nth(6).unwrap()), "no checksum either: {debug}");
    }
    assert_eq!(
        format!("{:?}", shares[0]),
        format!("CustodianShare {{ index: 1, check_value: \"{}\", .. }}", shares[0].check_value())
    );
}

#[test]
fn error_messages_are_fixed_and_distinct() {
    let errors = [
        ShareError::InvalidThreshold,
        ShareError::Malformed,
        ShareError::Checksum,
        ShareError::Duplicate,
        ShareError::ForeignVault,
        ShareError::MixedSplits,
        ShareError::Insufficient,
        ShareError::KcvMismatch,
    ];
    let messages: std::collections::HashSet<String> = errors.iter().map(|e| KeyError::from(*e).to_string()).collect();
    assert_eq!(messages.len(), errors.len());
    for message in &messages {
        assert!(message.starts_with("custodian share rejected: "), "{message}");
        // Fixed text: the only digit anywhere is the minimum threshold.
        let digits: String = message.chars().filter(char::is_ascii_digit).collect();
        assert!(digits.is_empty() || digits == "2", "{message}");
    }
}

#[test]
fn shares_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CustodianShare>();
    assert_send_sync::<ShareError>();
}

/// Shares printed by `paysys-vault init --shares 3 --threshold 2` before key format 2
/// (tests/fixtures/legacy-v1/custodian-vault.sqlite.json): root KCV and check values in
/// the legacy AES-of-a-zero-block form. They must still parse and rebuild that vault's key.
const LEGACY_ROOT_KCV: &str = "d255db";
const LEGACY_SHARES: [(&str, &str); 3] = [
    ("pss1-d255db-4fc4274a-m2-x1-fd35f721f6680189d931c19f6bc9a8917681d64dd9a71f1a68e5d28ec7732cb6-40e45ae1", "845f6f"),
    ("pss1-d255db-4fc4274a-m2-x2-5b951d459212f0bef377559edd090f168ac7a1036bdd5152964c251fe06a6a74-f7f0d77e", "47bcc5"),
    ("pss1-d255db-4fc4274a-m2-x3-39f5b29047cd565a1cbcd06846499b6bde0c8c3905026b6a352b8199fd94a1c3-740254bc", "664bf2"),
];

#[test]
fn legacy_pss1_shares_still_rebuild_their_root_key() {
    let legacy_kcv = paysys_keys::Kcv::from_hex(LEGACY_ROOT_KCV).unwrap();
    let parse = |i: usize| CustodianShare::parse(LEGACY_SHARES[i].0).unwrap();
    for (i, (_, check_value)) in LEGACY_SHARES.iter().enumerate() {
        let share = parse(i);
        assert!(share.carries_legacy_kcv());
        // The same check value the custodian was shown at init.
        assert_eq!(share.check_value().to_hex(), *check_value);
        assert_eq!(share.vault_kcv(), legacy_kcv);
    }
    let mut kcvs = Vec::new();
    for pair in [[0, 1], [0, 2], [1, 2]] {
        let set = [parse(pair[0]), parse(pair[1])];
        let root = RootKey::combine(&set, &legacy_kcv).unwrap();
        kcvs.push(root.kcv());
        // Checked against the current-form KCV they do not belong to this vault.
        assert_eq!(share_error(RootKey::combine(&set, &root.kcv())), Some(ShareError::ForeignVault));
    }
    assert!(kcvs.iter().all(|k| *k == kcvs[0]), "every pair rebuilds the same key");
    assert_ne!(kcvs[0], legacy_kcv, "the current KCV is another construction");
}

#[test]
fn new_shares_are_pss2_and_carry_the_current_kcv() {
    let root = RootKey::generate().unwrap();
    let shares = root.split(2, 3).unwrap();
    for share in &shares {
        assert!(share.to_text().starts_with(&format!("pss2-{}-", root.kcv())));
        assert!(!share.carries_legacy_kcv());
        assert_eq!(share.vault_kcv(), root.kcv());
    }
    // A pss2 share relabelled pss1 (or the reverse) fails its checksum: the version is covered.
    let text = shares[0].to_text().replacen("pss2", "pss1", 1);
    assert_eq!(share_error(CustodianShare::parse(&text)), Some(ShareError::Checksum));
    let text = LEGACY_SHARES[0].0.replacen("pss1", "pss2", 1);
    assert_eq!(share_error(CustodianShare::parse(&text)), Some(ShareError::Checksum));
    // pss1 and pss2 shares never combine with each other.
    let mixed = [retyped(&shares[0]).unwrap(), CustodianShare::parse(LEGACY_SHARES[1].0).unwrap()];
    assert!(share_error(RootKey::combine(&mixed, &root.kcv())).is_some());
}

#[test]
fn commitments_recognise_exactly_their_share() {
    let root = RootKey::generate().unwrap();
    let shares = root.split(2, 3).unwrap();
    let commitments: Vec<String> = shares.iter().map(CustodianShare::commitment_hex).collect();
    assert!(commitments.iter().all(|c| c.len() == 64));
    for (i, share) in shares.iter().enumerate() {
        let typed = retyped(share).unwrap();
        for (j, commitment) in commitments.iter().enumerate() {
            assert_eq!(typed.matches_commitment(commitment), i == j, "share {i} vs commitment {j}");
        }
        assert!(typed.matches_commitment(&commitment_upper(&commitments[i])));
        assert!(!typed.matches_commitment(""));
        assert!(!typed.matches_commitment(&commitments[i][..62]));
    }
    // Another ceremony's share with the same index does not match.
    let again = root.split(2, 3).unwrap();
    assert!(!again[0].matches_commitment(&commitments[0]));
}

fn commitment_upper(hex: &str) -> String {
    hex.to_uppercase()
}
