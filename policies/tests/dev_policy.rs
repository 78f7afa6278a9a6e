//! The default policy (`dev.toml`, `DEV_POLICY`) and the decisions made from it.

// A test crate: a failed unwrap or panic is a failed test (as clippy.toml allows inside
// #[test] functions; this extends it to the helpers here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_policies::{CardField, Decision, DenyReason, Operation, Policy, Scope, DEV_POLICY};

const GATEWAY: &str = "spiffe://paysys/gateway";
const INTAKE: &str = "spiffe://paysys/intake";
const ALICE: &str = "spiffe://paysys/officer/alice";
const BOB: &str = "spiffe://paysys/officer/bob";
const M_123: &str = "spiffe://paysys/merchant/m_123";

fn dev() -> Policy {
    Policy::from_toml(DEV_POLICY).unwrap_or_else(|e| panic!("dev policy refused: {e}"))
}

/// principal, its own merchant id (if a merchant), every operation → allowed?
type Row = (&'static str, Option<&'static str>, [(Operation, bool); 12]);

/// The literal table the default policy must produce; a change to `dev.toml` that
/// changes who may do what has to change this table too, in the same review.
#[test]
fn permission_matrix_of_the_dev_policy() {
    use Operation::*;
    const Y: bool = true;
    const N: bool = false;
    #[rustfmt::skip]
    let expected: [Row; 4] = [
        //                  tokens.*                                          relay        keys.*                                                                                   audit          sys
        (GATEWAY, None,          [(TokensCreate, N), (TokensRead, Y), (TokensDelete, N), (TokensRemoveForMerchant, Y), (Relay, Y), (KeysStatus, N), (KeysRotate, N), (KeysApprove, N), (KeysRetire, N), (KeysDestroy, N), (AuditRead, N), (SysSeal, N)]),
        (INTAKE,  None,          [(TokensCreate, Y), (TokensRead, N), (TokensDelete, N), (TokensRemoveForMerchant, N), (Relay, N), (KeysStatus, N), (KeysRotate, N), (KeysApprove, N), (KeysRetire, N), (KeysDestroy, N), (AuditRead, N), (SysSeal, N)]),
        (ALICE,   None,          [(TokensCreate, N), (TokensRead, N), (TokensDelete, N), (TokensRemoveForMerchant, N), (Relay, N), (KeysStatus, Y), (KeysRotate, Y), (KeysApprove, Y), (KeysRetire, Y), (KeysDestroy, Y), (AuditRead, Y), (SysSeal, Y)]),
        (M_123,   Some("m_123"), [(TokensCreate, Y), (TokensRead, Y), (TokensDelete, Y), (TokensRemoveForMerchant, N), (Relay, N), (KeysStatus, N), (KeysRotate, N), (KeysApprove, N), (KeysRetire, N), (KeysDestroy, N), (AuditRead, N), (SysSeal, N)]),
    ];
    let policy = dev();
    for (principal, own_merchant, row) in expected {
        // Each row covers every operation, in order.
        assert_eq!(row.map(|(op, _)| op), Operation::ALL);
        for (op, allowed) in row {
            // Token operations are asked about the principal's own merchant (or any one,
            // for the gateway); the others about no merchant.
            let merchant = if op.is_merchant_bound() { Some(own_merchant.unwrap_or("m_123")) } else { None };
            let decision = policy.decide(principal, op, merchant);
            let expected = if allowed { Decision::Allow } else { Decision::Deny(DenyReason::NoRule) };
            assert_eq!(decision, expected, "{principal} {op}");
            assert_eq!(policy.allows_operation(principal, op), allowed, "{principal} {op}");
        }
    }
}

#[test]
fn matrix_lists_principals_as_written_in_file_order() {
    let policy = dev();
    assert_eq!(
        policy.principals(),
        [
            "spiffe://paysys/gateway",
            "spiffe://paysys/intake",
            "spiffe://paysys/officer/*",
            "spiffe://paysys/merchant/*"
        ]
    );
    let matrix = policy.permission_matrix();
    let rows: Vec<_> = matrix.rows().iter().map(|r| (r.principal.as_str(), r.role.as_str(), r.scope)).collect();
    assert_eq!(
        rows,
        [
            ("spiffe://paysys/gateway", "gateway", Some(Scope::Any)),
            ("spiffe://paysys/intake", "intake", Some(Scope::Any)),
            ("spiffe://paysys/officer/*", "officer", None),
            ("spiffe://paysys/merchant/*", "pci_merchant", Some(Scope::Own)),
        ]
    );
    assert_eq!(matrix.allows("spiffe://paysys/merchant/*", Operation::TokensCreate), Some(true));
    assert_eq!(matrix.allows("spiffe://paysys/gateway", Operation::TokensCreate), Some(false));
    assert_eq!(matrix.allows(M_123, Operation::TokensCreate), None, "matrix is by principal as written");
}

#[test]
fn matrix_display_is_an_aligned_table() {
    let text = dev().permission_matrix().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(lines[0].starts_with("principal"), "{text}");
    assert!(lines[0].contains("keys.rotate*") && lines[0].contains("keys.approve "), "{text}");
    assert!(lines[5].starts_with("* needs approval"), "{text}");
    // Cells sit under their headers.
    let relay_at = lines[0].find("relay").unwrap_or_default();
    assert_eq!(&lines[1][relay_at..relay_at + 3], "yes", "gateway relays\n{text}");
    assert_eq!(&lines[3][relay_at..relay_at + 1], "-", "officers do not relay\n{text}");
    let seal_at = lines[0].find("sys.seal").unwrap_or_default();
    assert_eq!(&lines[3][seal_at..], "yes", "{text}");
    // The intake's tokens.create is marked as checkout-bound.
    let create_at = lines[0].find("tokens.create").unwrap_or_default();
    assert_eq!(&lines[2][create_at..create_at + 8], "checkout", "{text}");
    assert_eq!(&lines[4][create_at..create_at + 3], "yes", "merchants create plain tokens\n{text}");
}

/// Only the intake creates tokens for any merchant, and only checkout-bound ones (each
/// spends a one-time grant the gateway issued for that merchant's checkout).
#[test]
fn default_policy_never_pairs_any_scope_with_tokens_create() {
    let matrix = dev().permission_matrix();
    for row in matrix.rows() {
        if row.scope == Some(Scope::Any) {
            assert!(
                !row.allows(Operation::TokensCreate) || row.checkout_tokens_only,
                "{} may create unbound tokens for any merchant",
                row.principal
            );
            assert!(!row.allows(Operation::TokensDelete), "{} may delete tokens of any merchant", row.principal);
        }
    }
}

#[test]
fn merchant_scope() {
    let policy = dev();
    assert_eq!(policy.decide(M_123, Operation::TokensCreate, Some("m_123")), Decision::Allow);
    assert_eq!(policy.decide(M_123, Operation::TokensRead, Some("m_123")), Decision::Allow);
    assert_eq!(policy.decide(M_123, Operation::TokensDelete, Some("m_123")), Decision::Allow);
    for op in [Operation::TokensCreate, Operation::TokensRead, Operation::TokensDelete] {
        assert_eq!(policy.decide(M_123, op, Some("m_456")), Decision::Deny(DenyReason::MerchantScope), "{op}");
        // A merchant that forgot to say which merchant fails closed.
        assert_eq!(policy.decide(M_123, op, None), Decision::Deny(DenyReason::MerchantScope), "{op}");
        // Prefixes and case do not make another merchant one's own.
        assert_eq!(policy.decide(M_123, op, Some("m_1234")), Decision::Deny(DenyReason::MerchantScope));
        assert_eq!(policy.decide(M_123, op, Some("M_123")), Decision::Deny(DenyReason::MerchantScope));
    }
    // A merchant may not relay, even for itself.
    assert_eq!(policy.decide(M_123, Operation::Relay, Some("m_123")), Decision::Deny(DenyReason::NoRule));

    // The gateway acts for any merchant, but only with what it was granted.
    for merchant in ["m_123", "m_456"] {
        assert_eq!(policy.decide(GATEWAY, Operation::TokensRead, Some(merchant)), Decision::Allow);
        assert_eq!(policy.decide(GATEWAY, Operation::Relay, Some(merchant)), Decision::Allow);
        assert_eq!(policy.decide(GATEWAY, Operation::TokensCreate, Some(merchant)), Decision::Deny(DenyReason::NoRule));
        assert_eq!(policy.decide(GATEWAY, Operation::TokensDelete, Some(merchant)), Decision::Deny(DenyReason::NoRule));
        // card.remove's narrow operation; the vault checks the token is `merchant`'s.
        assert_eq!(policy.decide(GATEWAY, Operation::TokensRemoveForMerchant, Some(merchant)), Decision::Allow);
    }
    // A merchant deletes its own tokens with tokens.delete; the narrow one is the gateway's.
    assert_eq!(
        policy.decide(M_123, Operation::TokensRemoveForMerchant, Some("m_123")),
        Decision::Deny(DenyReason::NoRule)
    );
}

#[test]
fn wildcard_matches_exactly_one_plain_segment() {
    let policy = dev();
    for not_a_merchant in [
        "spiffe://paysys/merchant/",
        "spiffe://paysys/merchant",
        "spiffe://paysys/merchant/m_123/extra",
        "spiffe://paysys/merchant/..",
        "spiffe://paysys/merchant/m%2F123",
        "spiffe://paysys/merchant/m 123",
        "SPIFFE://paysys/merchant/m_123",
        "spiffe://paysys/merchants/m_123",
    ] {
        assert_eq!(
            policy.decide(not_a_merchant, Operation::TokensRead, Some("m_123")),
            Decision::Deny(DenyReason::NoRule),
            "{not_a_merchant:?}"
        );
        assert_eq!(policy.role_of(not_a_merchant), None, "{not_a_merchant:?}");
    }
    assert_eq!(policy.role_of("spiffe://paysys/merchant/m-9.x~y"), Some("pci_merchant"));
}

#[test]
fn unknown_principal_is_denied_everything() {
    let policy = dev();
    for principal in ["spiffe://paysys/admin", "spiffe://evil/gateway", "spiffe://paysys/gateway/x", "", "*"] {
        for op in Operation::ALL {
            assert_eq!(policy.decide(principal, op, None), Decision::Deny(DenyReason::NoRule), "{principal:?} {op}");
            assert_eq!(policy.decide(principal, op, Some("m_123")), Decision::Deny(DenyReason::NoRule));
            assert!(!policy.allows_operation(principal, op));
        }
        assert!(policy.relay_destination(principal, "sandbox_acquirer").is_none());
    }
}

#[test]
fn exact_principal_beats_wildcard() {
    let policy = Policy::from_toml(
        r#"
        [roles.merchants]
        principals = ["spiffe://paysys/merchant/*"]
        operations = ["tokens.create", "tokens.read", "tokens.delete"]
        scope = "own"

        # A merchant under investigation: may still read, nothing else.
        [roles.frozen]
        principals = ["spiffe://paysys/merchant/m_666"]
        operations = ["tokens.read"]
        scope = "own"

        # A more specific pattern beats a shorter one.
        [roles.everyone]
        principals = ["spiffe://paysys/*"]
        operations = ["keys.status"]

        [roles.auditors]
        principals = ["spiffe://paysys/auditor/*"]
        operations = ["audit.read"]
        "#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let frozen = "spiffe://paysys/merchant/m_666";
    assert_eq!(policy.role_of(frozen), Some("frozen"));
    assert_eq!(policy.decide(frozen, Operation::TokensRead, Some("m_666")), Decision::Allow);
    assert_eq!(policy.decide(frozen, Operation::TokensCreate, Some("m_666")), Decision::Deny(DenyReason::NoRule));
    assert_eq!(policy.decide(frozen, Operation::TokensDelete, Some("m_666")), Decision::Deny(DenyReason::NoRule));
    // Roles are not combined: the exact one replaces the wildcard entirely.
    assert_eq!(policy.role_of(M_123), Some("merchants"));
    assert_eq!(policy.decide(M_123, Operation::TokensCreate, Some("m_123")), Decision::Allow);

    assert_eq!(policy.role_of("spiffe://paysys/auditor/eve"), Some("auditors"));
    assert_eq!(
        policy.decide("spiffe://paysys/auditor/eve", Operation::KeysStatus, None),
        Decision::Deny(DenyReason::NoRule)
    );
    assert_eq!(policy.decide("spiffe://paysys/gateway", Operation::KeysStatus, None), Decision::Allow);
    assert_eq!(policy.role_of("spiffe://paysys/gateway"), Some("everyone"));
}

#[test]
fn needs_approval_follows_dual_control() {
    let policy = dev();
    for op in Operation::ALL {
        let expected = matches!(op, Operation::KeysRotate | Operation::KeysRetire | Operation::KeysDestroy);
        assert_eq!(policy.needs_approval(op), expected, "{op}");
    }
    let none = Policy::from_toml(
        "[roles.officer]\nprincipals = [\"spiffe://paysys/officer/*\"]\noperations = [\"keys.rotate\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(Operation::ALL.iter().all(|op| !none.needs_approval(*op)));
}

#[test]
fn approver_must_be_a_different_officer() {
    let policy = dev();
    assert!(policy.may_approve(BOB, ALICE));
    assert!(!policy.may_approve(ALICE, ALICE));
    assert!(!policy.may_approve(GATEWAY, ALICE));
    assert!(!policy.may_approve(M_123, ALICE));
}

#[test]
fn relay_destinations_per_file() {
    let policy = dev();
    let acquirer = policy.relay_destination(GATEWAY, "sandbox_acquirer").unwrap_or_else(|| panic!("no acquirer"));
    assert_eq!(acquirer.name, "sandbox_acquirer");
    assert_eq!(acquirer.url, "https://localhost:9443");
    assert_eq!(acquirer.path_prefix, "/acquirer/");
    assert_eq!(acquirer.fields, CardField::ALL);

    let ds = policy.relay_destination(GATEWAY, "sandbox_ds").unwrap_or_else(|| panic!("no ds"));
    assert_eq!(ds.path_prefix, "/3ds/");
    assert_eq!(ds.fields, [CardField::Number, CardField::ExpMonth, CardField::ExpYear]);
    assert!(!ds.permits_field(CardField::Cvc), "the directory server never gets the CVC");
    assert!(!ds.permits_field(CardField::Holder));

    assert!(policy.relay_destination(GATEWAY, "elsewhere").is_none());
    assert!(policy.relay_destination(M_123, "sandbox_acquirer").is_none());
    assert!(policy.relay_destination(ALICE, "sandbox_acquirer").is_none());
    assert_eq!(policy.destinations().count(), 2);
}

#[test]
fn templates_fix_where_card_data_goes() {
    use paysys_policies::{TemplateMethod, TemplateRefusal};
    let policy = dev();
    let authorize = policy.relay_template(GATEWAY, "sandbox_acquirer.authorize").unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((authorize.method, authorize.path.as_str()), (TemplateMethod::Post, "/acquirer/v1/authorizations"));
    assert_eq!(authorize.card_fields.len(), 5, "the acquirer gets the whole card");
    let areq = policy.relay_template(GATEWAY, "sandbox_ds.areq").unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!areq.card_fields.contains(&CardField::Cvc), "an AReq never carries the CVC");
    assert!(policy.relay_template(GATEWAY, "sandbox_acquirer.authorize_3ds").is_ok());
    assert_eq!(policy.relay_template(GATEWAY, "sandbox_acquirer.refund").err(), Some(TemplateRefusal::Unknown));
    assert_eq!(policy.relay_template(GATEWAY, "sandbox_acquirer").err(), Some(TemplateRefusal::Unknown));
    assert_eq!(
        policy.relay_template(GATEWAY, "elsewhere.authorize").err(),
        Some(TemplateRefusal::DestinationNotAllowed)
    );
    // A merchant may not relay at all, and learns nothing of which templates exist.
    assert_eq!(
        policy.relay_template(M_123, "sandbox_acquirer.authorize").err(),
        Some(TemplateRefusal::DestinationNotAllowed)
    );
    assert_eq!(
        policy.relay_template(M_123, "sandbox_acquirer.nope").err(),
        Some(TemplateRefusal::DestinationNotAllowed)
    );
}

#[test]
fn launcher_can_move_destinations() {
    let policy = dev()
        .with_destination_url("sandbox_acquirer", "https://127.0.0.1:40123")
        .and_then(|p| p.with_destination_url("sandbox_ds", "https://127.0.0.1:40124"))
        .unwrap_or_else(|e| panic!("{e}"));
    let acquirer = policy.relay_destination(GATEWAY, "sandbox_acquirer").unwrap_or_else(|| panic!("no acquirer"));
    assert_eq!(acquirer.url, "https://127.0.0.1:40123");
    assert_eq!(acquirer.path_prefix, "/acquirer/", "only the address moves");
    let ds = policy.relay_destination(GATEWAY, "sandbox_ds").unwrap_or_else(|| panic!("no ds"));
    assert_eq!(ds.url, "https://127.0.0.1:40124");
}

#[test]
fn the_intake_creates_only_checkout_bound_tokens_and_nothing_else() {
    let policy = dev();
    assert!(policy.checkout_tokens_only(INTAKE));
    assert_eq!(policy.role_of(INTAKE), Some("intake"));
    // For any merchant: the grant names it, not the certificate.
    for merchant in ["m_123", "m_456"] {
        assert_eq!(policy.decide(INTAKE, Operation::TokensCreate, Some(merchant)), Decision::Allow);
        for op in [Operation::TokensRead, Operation::TokensDelete, Operation::TokensRemoveForMerchant, Operation::Relay]
        {
            assert_eq!(policy.decide(INTAKE, op, Some(merchant)), Decision::Deny(DenyReason::NoRule), "{op}");
        }
    }
    assert!(policy.relay_destination(INTAKE, "sandbox_acquirer").is_none());
    // Nobody else is bound to checkouts; a certificate under the intake's name is not
    // the intake.
    for principal in [GATEWAY, ALICE, M_123, "spiffe://paysys/intake/x", "spiffe://paysys/intake2"] {
        assert!(!policy.checkout_tokens_only(principal), "{principal}");
    }
}
