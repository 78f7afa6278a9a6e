//! Texts in every language, decline messages for every code, amounts per exponent.

use paysys_widget::pages::{decline_message, format_amount, format_money, DeclineReason, Lang};
use std::collections::BTreeSet;

#[test]
fn amounts_are_formatted_per_exponent_and_language() {
    assert_eq!(format_amount(15_000_000, 2, Lang::En), "150,000.00");
    assert_eq!(format_amount(15_000_000, 2, Lang::Ru), "150\u{a0}000,00");
    assert_eq!(format_amount(15_000_000, 2, Lang::Uz), "150\u{a0}000,00");
    assert_eq!(format_amount(150_000, 0, Lang::En), "150,000");
    assert_eq!(format_amount(1_234_567, 3, Lang::En), "1,234.567");
    assert_eq!(format_amount(5, 2, Lang::En), "0.05");
    assert_eq!(format_amount(5, 3, Lang::Ru), "0,005");
    assert_eq!(format_amount(0, 2, Lang::En), "0.00");
    assert_eq!(format_amount(0, 0, Lang::En), "0");
    assert_eq!(format_amount(100, 2, Lang::En), "1.00");
    assert_eq!(format_amount(99_999, 2, Lang::En), "999.99");
    assert_eq!(format_amount(100_000, 2, Lang::En), "1,000.00");
    assert_eq!(format_amount(-12_345, 2, Lang::En), "-123.45");
    assert_eq!(format_amount(i64::MAX, 2, Lang::En), "92,233,720,368,547,758.07");
    assert_eq!(format_amount(i64::MIN, 0, Lang::En), "-9,223,372,036,854,775,808");
    // An exponent beyond any currency's still gives digits, never a panic or overflow.
    assert_eq!(format_amount(1, 25, Lang::En), format!("0.{}1", "0".repeat(24)));
    assert_eq!(format_money(150_000, 2, "UZS", Lang::En), "1,500.00\u{a0}UZS");
}

#[test]
fn every_language_has_a_decline_message_for_every_reason_and_they_differ() {
    for lang in Lang::ALL {
        let messages: BTreeSet<&str> = DeclineReason::ALL.iter().map(|r| r.message(lang)).collect();
        assert_eq!(messages.len(), DeclineReason::ALL.len(), "{lang:?}: two reasons share a message");
        assert!(messages.iter().all(|m| m.trim().len() > 10), "{lang:?}");
    }
    for reason in DeclineReason::ALL {
        let across: BTreeSet<&str> = Lang::ALL.iter().map(|&l| reason.message(l)).collect();
        assert_eq!(across.len(), 3, "{reason:?} is not translated");
    }
}

#[test]
fn issuer_and_three_ds_codes_map_to_what_the_buyer_is_told() {
    let cases = [
        ("51", DeclineReason::InsufficientFunds),
        ("54", DeclineReason::CardExpired),
        ("14", DeclineReason::CardNumberUnknown),
        ("N7", DeclineReason::SecurityCodeWrong),
        ("63", DeclineReason::NotAuthenticated),
        ("not_authenticated", DeclineReason::NotAuthenticated),
        ("rejected", DeclineReason::NotAuthenticated),
        ("96", DeclineReason::IssuerUnavailable),
        ("timeout", DeclineReason::IssuerUnavailable),
        ("05", DeclineReason::Refused),
        // A stolen card is never named as such to the person holding it.
        ("43", DeclineReason::Refused),
        ("", DeclineReason::Refused),
        ("something_new", DeclineReason::Refused),
    ];
    for (code, reason) in cases {
        assert_eq!(DeclineReason::of_code(code), reason, "{code}");
        for lang in Lang::ALL {
            assert_eq!(decline_message(code, lang), reason.message(lang));
        }
    }
    assert!(!decline_message("43", Lang::En).to_lowercase().contains("stolen"));
}

/// Every text is there in every language, and each keeps the placeholders the scripts
/// fill in.
#[test]
fn every_text_exists_in_every_language_with_its_placeholders() {
    let placeholders = |s: &str| -> BTreeSet<String> {
        s.split('{').skip(1).filter_map(|p| p.split_once('}').map(|(name, _)| name.to_owned())).collect()
    };
    let sets: Vec<(Lang, serde_json::Value)> = Lang::ALL
        .iter()
        .map(|&l| {
            let t = l.texts();
            (l, serde_json::json!({ "checkout": serde_json::to_value(&t.checkout).unwrap(), "frame": serde_json::to_value(&t.frame).unwrap() }))
        })
        .collect();
    let (_, english) = &sets[2];
    for (lang, value) in &sets {
        for part in ["checkout", "frame"] {
            let theirs = value[part].as_object().unwrap();
            let ours = english[part].as_object().unwrap();
            assert_eq!(theirs.keys().collect::<Vec<_>>(), ours.keys().collect::<Vec<_>>());
            for (key, text) in theirs {
                let text = text.as_str().unwrap();
                assert!(!text.trim().is_empty(), "{lang:?} {part}.{key}");
                assert_eq!(placeholders(text), placeholders(ours[key].as_str().unwrap()), "{lang:?} {part}.{key}");
                if *lang != Lang::En && !matches!(key.as_str(), "cvc" | "frame_title") {
                    assert_ne!(text, ours[key].as_str().unwrap(), "{lang:?} {part}.{key} is untranslated");
                }
            }
        }
    }
    assert!(placeholders(Lang::Uz.texts().checkout.pay).contains("amount"));
    assert!(placeholders(Lang::Ru.texts().frame.cvc_invalid).contains("digits"));
    for lang in Lang::ALL {
        let o = &lang.texts().outcome;
        let titles: BTreeSet<&str> =
            [o.success_title, o.declined_title, o.expired_title, o.cancelled_title, o.processing_title].into();
        assert_eq!(titles.len(), 5, "{lang:?}: outcome titles must differ");
        assert_eq!(Lang::parse(lang.as_str()), Some(lang));
    }
    assert_eq!(Lang::parse("de"), None);
    assert_eq!(Lang::default(), Lang::En);
}
