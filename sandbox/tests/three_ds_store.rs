//! The 3-D Secure part of the store, on SQLite (in memory) and — when
//! `PAYSYS_TEST_POSTGRES_URL` names a server — on a fresh PostgreSQL database: AReq
//! idempotency, one winner among concurrent ends of a challenge, the method flag, and a
//! CAVV that approves exactly one of many concurrent authorizations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_sandbox::issuer::{DeclineCode, ThreeDsClaim};
use paysys_sandbox::store::{
    AuthorizeOutcome, ChallengeResult, NewAuthorization, Store, ThreeDsInsert, ThreeDsTransaction,
};
use paysys_test_support::postgres::PostgresDatabase;
use std::sync::Arc;

const CAVV: &str = "AAABBBCCCDDDEEEFFFGGGHHHIII=";

fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn authentication(status: &str, card_key: &str) -> ThreeDsTransaction {
    let challenge = status == "C";
    ThreeDsTransaction {
        three_ds_server_trans_id: uuid(),
        ds_trans_id: uuid(),
        acs_trans_id: uuid(),
        message_version: "2.2.0".into(),
        card_key: card_key.into(),
        masked_pan: "400000******3220".into(),
        purchase_amount: 1_000,
        purchase_currency: "860".into(),
        purchase_exponent: 2,
        merchant_name: "shop".into(),
        three_ds_server_url: "http://127.0.0.1:1/rreq".into(),
        notification_url: "http://127.0.0.1:1/cres".into(),
        ares: "{}".into(),
        ares_trans_status: status.into(),
        trans_status: status.into(),
        trans_status_reason: None,
        eci: (!challenge).then(|| "05".into()),
        authentication_value: (!challenge).then(|| CAVV.into()),
        challenge_cancel: None,
        cavv_used: false,
        challenge_nonce: None,
        challenge_expires_at: challenge.then_some(i64::MAX),
        method_completed: false,
        created_at: 1,
        updated_at: 1,
    }
}

fn authorization(reference: &str, card_key: &str, claim: &ThreeDsTransaction) -> NewAuthorization {
    NewAuthorization {
        acquirer_ref: format!("acq_{reference}"),
        reference: reference.into(),
        merchant_id: "m".into(),
        masked_pan: "400000******3220".into(),
        balance_key: card_key.into(),
        currency: "UZS".into(),
        amount: 1_000,
        capture: false,
        request_digest: format!("digest-{reference}"),
        decline: None,
        initial_balance: 1_000_000,
        auth_code: "A1B2C3".into(),
        rrn: "000000000000".into(),
        now: 2,
        three_ds: Some(ThreeDsClaim {
            ds_trans_id: claim.ds_trans_id.clone(),
            authentication_value: CAVV.into(),
            currency_numeric: Some("860"),
        }),
    }
}

async fn exercise(store: Arc<Store>) {
    // Idempotent on threeDSServerTransID.
    let first = authentication("Y", "card-1");
    assert!(matches!(store.insert_three_ds(&first).await.unwrap(), ThreeDsInsert::Created(_)));
    let again = ThreeDsTransaction { ds_trans_id: uuid(), acs_trans_id: uuid(), ..first.clone() };
    match store.insert_three_ds(&again).await.unwrap() {
        ThreeDsInsert::Existing(stored) => assert_eq!(stored, first),
        other => panic!("{other:?}"),
    }

    // The method flag, before and after the AReq.
    let before = authentication("Y", "card-1");
    store.record_method_run(&before.three_ds_server_trans_id, 1).await.unwrap();
    store.insert_three_ds(&before).await.unwrap();
    assert!(store.three_ds_by_server_id(&before.three_ds_server_trans_id).await.unwrap().unwrap().method_completed);
    assert!(!store.three_ds_by_server_id(&first.three_ds_server_trans_id).await.unwrap().unwrap().method_completed);
    store.record_method_run(&first.three_ds_server_trans_id, 3).await.unwrap();
    assert!(store.three_ds_by_server_id(&first.three_ds_server_trans_id).await.unwrap().unwrap().method_completed);

    // Eight concurrent ends of one challenge: exactly one wins; the nonce must match.
    let open = authentication("C", "card-2");
    store.insert_three_ds(&open).await.unwrap();
    assert!(store.set_challenge_nonce(&open.acs_trans_id, "nonce-1", 2).await.unwrap());
    let result = |status: &str| ChallengeResult {
        trans_status: status.into(),
        trans_status_reason: None,
        eci: None,
        authentication_value: None,
        challenge_cancel: None,
    };
    assert!(store.end_challenge(&open.acs_trans_id, Some("stale"), &result("N"), 3).await.unwrap().is_none());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let acs = open.acs_trans_id.clone();
        tasks.push(tokio::spawn(async move {
            let status = if i % 2 == 0 { "Y" } else { "N" };
            store.end_challenge(&acs, Some("nonce-1"), &result(status), 4).await.unwrap()
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let stored = store.three_ds_by_acs_id(&open.acs_trans_id).await.unwrap().unwrap();
    assert_eq!(stored.trans_status, winners[0].trans_status);
    assert!(stored.is_final() && stored.challenge_nonce.is_none());
    assert!(!store.set_challenge_nonce(&open.acs_trans_id, "nonce-2", 5).await.unwrap());

    // Expired challenges are listed; ended ones are not.
    let due = authentication("C", "card-2");
    let due = ThreeDsTransaction { challenge_expires_at: Some(10), ..due };
    store.insert_three_ds(&due).await.unwrap();
    let listed = store.expired_challenges(11, 100).await.unwrap();
    assert!(listed.contains(&due.acs_trans_id) && !listed.contains(&open.acs_trans_id), "{listed:?}");
    assert!(!store.expired_challenges(9, 100).await.unwrap().contains(&due.acs_trans_id));

    // One CAVV, eight concurrent authorizations with different references: one approval.
    let issued = authentication("Y", "card-3");
    store.insert_three_ds(&issued).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let new = authorization(&format!("tx_{}_{i}", rand::random::<u32>()), "card-3", &issued);
        tasks.push(tokio::spawn(async move { store.authorize(&new).await.unwrap() }));
    }
    let mut approved = 0;
    for task in tasks {
        match task.await.unwrap() {
            AuthorizeOutcome::Created(auth) if auth.approved() => approved += 1,
            AuthorizeOutcome::Created(auth) => {
                assert_eq!(auth.decline_code, Some(DeclineCode::ThreeDsAuthenticationInvalid));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(approved, 1);
    assert!(store.three_ds_by_server_id(&issued.three_ds_server_trans_id).await.unwrap().unwrap().cavv_used);

    // A declined authorization (another card) does not spend the CAVV.
    let spare = authentication("Y", "card-4");
    store.insert_three_ds(&spare).await.unwrap();
    let wrong_card = authorization(&format!("tx_{}", rand::random::<u32>()), "card-5", &spare);
    match store.authorize(&wrong_card).await.unwrap() {
        AuthorizeOutcome::Created(auth) => {
            assert_eq!(auth.decline_code, Some(DeclineCode::ThreeDsAuthenticationInvalid))
        }
        other => panic!("{other:?}"),
    }
    assert!(!store.three_ds_by_server_id(&spare.three_ds_server_trans_id).await.unwrap().unwrap().cavv_used);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_ds_store_on_sqlite() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    exercise(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_ds_store_on_postgres() {
    let Some(db) = PostgresDatabase::create("paysys_sandbox_3ds").await else {
        eprintln!("PAYSYS_TEST_POSTGRES_URL not set: skipping");
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    exercise(Arc::new(store)).await;
    db.drop_database().await;
}
