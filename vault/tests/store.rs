//! The store suite: every behaviour is written once and run on SQLite (always, in a
//! fresh temporary file) and on PostgreSQL (in a fresh database) when
//! `PAYSYS_TEST_POSTGRES_URL` names a server; without it the PostgreSQL cases say they
//! were skipped and pass.

// The bodies below are plain async functions instantiated by `store_tests!`, which
// clippy's allow-unwrap-in-tests does not see as tests; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use paysys_test_support::postgres::PostgresDatabase;
use paysys_vault::store::{
    self, AuditEvent, AuditRecord, AuditSigner, CardRecord, CardWrite, Counts, CvcRecord, DekUsage, ExpiredCard,
    KeyChange, KeyFormat, KeyKind, KeyRequest, ReencryptBatch, RequestDecision, SpentGrant, Store, StoreError,
    StoredKey, WriteUnit,
};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------
// Fixtures: a fresh database per test, on either backend.

/// A fresh, empty database for one test, removed by [`TestDb::cleanup`].
#[derive(Debug)]
enum TestDb {
    Sqlite { dir: PathBuf, url: String },
    Postgres(PostgresDatabase),
}

impl TestDb {
    fn sqlite() -> TestDb {
        let dir = paysys_test_support::scratch_dir("store");
        let url = format!("sqlite:{}", dir.join("vault.db").display());
        TestDb::Sqlite { dir, url }
    }

    /// `None` when no PostgreSQL server is configured.
    async fn postgres() -> Option<TestDb> {
        Some(TestDb::Postgres(PostgresDatabase::create("paysys_store").await?))
    }

    /// A new store instance (its own pools) on this database, migrated.
    async fn open(&self) -> Arc<dyn Store> {
        let url = match self {
            TestDb::Sqlite { url, .. } => url,
            TestDb::Postgres(database) => &database.url,
        };
        let store = store::open(url).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Best effort: a failed test leaves its database behind for inspection.
    async fn cleanup(self) {
        match self {
            TestDb::Sqlite { dir, .. } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            TestDb::Postgres(database) => database.drop_database().await,
        }
    }
}

/// Instantiate each test body for both backends: `sqlite::NAME` and `postgres::NAME`.
macro_rules! store_tests {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::TestDb::sqlite();
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::TestDb::postgres().await else {
                        eprintln!("skipped: PAYSYS_TEST_POSTGRES_URL is not set");
                        return;
                    };
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

store_tests! {
    migrating_twice_is_harmless,
    initial_keys_are_stored_once,
    committed_cards_and_cvcs_can_be_found,
    fingerprint_lookup_returns_the_merchants_oldest_card,
    a_cvc_is_taken_once,
    replicas_taking_one_cvc_together_get_it_once,
    finding_a_cvc_does_not_consume_it,
    an_expired_cvc_is_not_returned,
    sweep_deletes_only_expired_cvcs,
    delete_removes_card_and_cvc,
    writes_apply_in_batch_order,
    a_batch_with_a_duplicate_token_fails_as_a_whole,
    audit_chain_stays_linear_under_concurrent_commits,
    audit_records_are_paged,
    counts_group_cards_by_dek,
    vault_meta_is_stored_with_the_initial_keys,
    a_request_is_decided_once,
    a_reencryption_batch_moves_records_and_cursor_together,
    seal_counts_add_up,
    an_expired_token_is_not_found,
    reuse_skips_tokens_that_expire_sooner_than_asked,
    expired_cards_are_deleted_in_audited_batches,
    replicas_sweeping_together_delete_each_card_once,
    format_1_keys_migrate_once_with_their_meta,
    a_grant_mints_one_card,
    a_batch_spending_one_grant_twice_fails_as_a_whole,
    a_token_collision_is_not_a_spent_grant,
    replicas_spending_one_grant_together_store_one_card,
    spent_grants_are_swept_after_their_expiry,
    #[ignore = "benchmark: prints commit throughput, asserts nothing about speed"]
    commit_throughput,
}

// ---------------------------------------------------------------------------------
// Records.

/// A deterministic stand-in for the audit key: enough to detect a record chained to
/// the wrong predecessor or edited after signing.
#[derive(Debug)]
struct TestSigner;

impl AuditSigner for TestSigner {
    fn chain_mac(&self, record: &AuditRecord) -> Vec<u8> {
        (0u8..4)
            .flat_map(|lane| {
                let mut h = DefaultHasher::new();
                (lane, record.seq, &record.prev_mac, format!("{:?}", record.event)).hash(&mut h);
                h.finish().to_be_bytes()
            })
            .collect()
    }
}

fn card(token: &str, merchant_id: &str, fingerprint: &str, created_at: i64) -> CardRecord {
    CardRecord {
        token: token.to_owned(),
        merchant_id: merchant_id.to_owned(),
        fingerprint: fingerprint.to_owned(),
        brand: "visa".to_owned(),
        bin: "424242".to_owned(),
        last4: "4242".to_owned(),
        exp_month: 12,
        exp_year: 2031,
        dek_version: 1,
        ciphertext: format!("sealed:{token}").into_bytes(),
        created_at,
        expires_at: None,
        checkout_id: None,
    }
}

fn expiring_card(token: &str, merchant_id: &str, fingerprint: &str, expires_at: i64) -> CardRecord {
    CardRecord { expires_at: Some(expires_at), ..card(token, merchant_id, fingerprint, 1) }
}

/// The audit event the sweeper writes for `card` (the vault's own is in `retention.rs`).
fn expiry_event(card: &ExpiredCard) -> AuditEvent {
    AuditEvent {
        at: 1_700_000_000_000,
        request_id: "sweep_test".to_owned(),
        principal: "local:paysys-vault-sweeper".to_owned(),
        operation: "tokens.expire".to_owned(),
        merchant_id: Some(card.merchant_id.clone()),
        token: Some(card.token.clone()),
        decision: "allow".to_owned(),
        outcome: "ok".to_owned(),
        key_version: Some(card.dek_version),
    }
}

fn cvc(token: &str, expires_at: i64) -> CvcRecord {
    CvcRecord {
        token: token.to_owned(),
        dek_version: 1,
        ciphertext: format!("sealed-cvc:{token}").into_bytes(),
        expires_at,
    }
}

fn event(operation: &str, token: Option<&str>) -> AuditEvent {
    AuditEvent {
        at: 1_700_000_000_000,
        request_id: format!("req-{operation}-{}", token.unwrap_or("-")),
        principal: "spiffe://paysys/gateway".to_owned(),
        operation: operation.to_owned(),
        merchant_id: token.map(|_| "m1".to_owned()),
        token: token.map(str::to_owned),
        decision: "allow".to_owned(),
        outcome: "ok".to_owned(),
        key_version: token.map(|_| 1),
    }
}

fn unit(writes: Vec<CardWrite>) -> WriteUnit {
    let token = writes.iter().find_map(|w| match w {
        CardWrite::InsertCard(c) => Some(c.token.as_str()),
        CardWrite::InsertCvc(c) => Some(c.token.as_str()),
        CardWrite::DeleteCard { token } => Some(token.as_str()),
        CardWrite::SpendGrant(_) => None,
    });
    WriteUnit { audit: event("tokenize", token), writes }
}

fn tokenize(token: &str) -> WriteUnit {
    unit(vec![CardWrite::InsertCard(card(token, "m1", &format!("fp-{token}"), 1))])
}

/// The whole audit log, checked: seqs 1, 2, 3, … without gaps, the first record after
/// 32 zero bytes, each `prev_mac` the previous `mac`, each `mac` correct.
async fn verified_chain(store: &dyn Store) -> Vec<AuditRecord> {
    let mut all: Vec<AuditRecord> = Vec::new();
    loop {
        let page = store.audit_records(all.last().map_or(0, |r| r.seq), 100).await.unwrap();
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    let mut prev = vec![0u8; 32];
    for (i, record) in all.iter().enumerate() {
        assert_eq!(record.seq, i as i64 + 1, "sequence numbers must be contiguous");
        assert_eq!(record.prev_mac, prev, "record {} must chain to its predecessor", record.seq);
        assert_eq!(record.mac, TestSigner.chain_mac(record), "record {} has a wrong mac", record.seq);
        prev = record.mac.clone();
    }
    all
}

// ---------------------------------------------------------------------------------
// Behaviour, written once for both backends.

async fn migrating_twice_is_harmless(db: &TestDb) {
    let store = db.open().await;
    store.migrate().await.unwrap();
    db.open().await.migrate().await.unwrap();
    store.commit(&[tokenize("tok_a")], &TestSigner).await.unwrap();
    store.migrate().await.unwrap();
    assert!(store.find_card("tok_a").await.unwrap().is_some());
    assert_eq!(verified_chain(&*store).await.len(), 1);
}

async fn initial_keys_are_stored_once(db: &TestDb) {
    let store = db.open().await;
    assert!(store.load_keys().await.unwrap().is_empty());
    let key = |kind, version, wrapped_by| StoredKey {
        kind,
        version,
        wrapped_by,
        wrapped: vec![kind as u8, version as u8, 0xAA, 0x00, 0xFF],
        kcv: format!("kcv-{}-{version}", kind.as_str()),
        state: "active".to_owned(),
        created_at: 1_700_000_000_000 + version,
        format: if version == 2 { KeyFormat::V1 } else { KeyFormat::V2 },
    };
    let keys = vec![key(KeyKind::Kek, 1, 0), key(KeyKind::Dek, 1, 1), key(KeyKind::Dek, 2, 1)];
    store.insert_initial_keys(&keys, &event("keys.init", None), &TestSigner).await.unwrap();

    let mut expected = keys.clone();
    expected.sort_by(|a, b| (a.kind.as_str(), a.version).cmp(&(b.kind.as_str(), b.version)));
    assert_eq!(store.load_keys().await.unwrap(), expected);
    let chain = verified_chain(&*store).await;
    assert_eq!(chain.len(), 1);
    assert_eq!(chain[0].event, event("keys.init", None));

    let again = store.insert_initial_keys(&[key(KeyKind::Kek, 9, 0)], &event("keys.init", None), &TestSigner).await;
    assert!(matches!(again, Err(StoreError::AlreadyInitialized)), "{again:?}");
    assert_eq!(store.load_keys().await.unwrap(), expected);
    assert_eq!(verified_chain(&*store).await.len(), 1, "a refused init leaves no audit record");
}

async fn committed_cards_and_cvcs_can_be_found(db: &TestDb) {
    let store = db.open().await;
    let a = card("tok_a", "m1", "fp1", 10);
    let b = card("tok_b", "m2", "fp2", 11);
    store
        .commit(
            &[
                unit(vec![CardWrite::InsertCard(a.clone()), CardWrite::InsertCvc(cvc("tok_a", i64::MAX))]),
                unit(vec![CardWrite::InsertCard(b.clone())]),
            ],
            &TestSigner,
        )
        .await
        .unwrap();
    assert_eq!(store.find_card("tok_a").await.unwrap(), Some(a));
    assert_eq!(store.find_card("tok_b").await.unwrap(), Some(b));
    assert_eq!(store.find_card("tok_nope").await.unwrap(), None);
    let chain = verified_chain(&*store).await;
    assert_eq!(chain.len(), 2, "one audit record per unit");
    assert_eq!(chain[0].event.token.as_deref(), Some("tok_a"));
    assert_eq!(chain[1].event.token.as_deref(), Some("tok_b"));
    assert_eq!(store.take_cvc("tok_a", 0).await.unwrap(), Some(cvc("tok_a", i64::MAX)));

    // An empty batch is a no-op.
    store.commit(&[], &TestSigner).await.unwrap();
    assert_eq!(verified_chain(&*store).await.len(), 2);
}

async fn fingerprint_lookup_returns_the_merchants_oldest_card(db: &TestDb) {
    let store = db.open().await;
    let cards = [
        card("tok_other_merchant", "m2", "fp", 50),
        card("tok_second", "m1", "fp", 200),
        card("tok_first", "m1", "fp", 100),
        card("tok_third", "m1", "fp", 300),
        card("tok_different_card", "m1", "fp-x", 10),
    ];
    let units: Vec<WriteUnit> = cards.iter().map(|c| unit(vec![CardWrite::InsertCard(c.clone())])).collect();
    store.commit(&units, &TestSigner).await.unwrap();

    let found = store.find_card_by_fingerprint("m1", "fp", 0, None).await.unwrap();
    assert_eq!(found.map(|c| c.token), Some("tok_first".to_owned()));
    let found = store.find_card_by_fingerprint("m2", "fp", 0, None).await.unwrap();
    assert_eq!(found.map(|c| c.token), Some("tok_other_merchant".to_owned()));
    assert_eq!(store.find_card_by_fingerprint("m3", "fp", 0, None).await.unwrap(), None);
    assert_eq!(store.find_card_by_fingerprint("m1", "fp-none", 0, None).await.unwrap(), None);
}

async fn a_cvc_is_taken_once(db: &TestDb) {
    let store = db.open().await;
    let now = 1_700_000_000_000;
    store
        .commit(
            &[unit(vec![
                CardWrite::InsertCard(card("tok_a", "m1", "fp", now)),
                CardWrite::InsertCvc(cvc("tok_a", now + 60_000)),
            ])],
            &TestSigner,
        )
        .await
        .unwrap();
    assert_eq!(store.take_cvc("tok_a", now).await.unwrap(), Some(cvc("tok_a", now + 60_000)));
    assert_eq!(store.take_cvc("tok_a", now).await.unwrap(), None);
    assert_eq!(store.take_cvc("tok_unknown", now).await.unwrap(), None);
    assert!(store.find_card("tok_a").await.unwrap().is_some(), "taking the CVC keeps the card");
}

/// The relay claims a CVC with `take_cvc` before it sends: of many relays of one token
/// racing in several processes on one database, exactly one may get it.
async fn replicas_taking_one_cvc_together_get_it_once(db: &TestDb) {
    let stores = [db.open().await, db.open().await, db.open().await];
    for round in 0..5 {
        let token = format!("tok_race{round}");
        let writes =
            vec![CardWrite::InsertCard(card(&token, "m1", "fp", 1)), CardWrite::InsertCvc(cvc(&token, i64::MAX))];
        stores[0].commit(&[unit(writes)], &TestSigner).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..12 {
            let store = stores[t % 3].clone();
            let token = token.clone();
            tasks.spawn(async move { store.take_cvc(&token, 0).await.unwrap().is_some() });
        }
        let mut winners = 0;
        while let Some(won) = tasks.join_next().await {
            winners += usize::from(won.unwrap());
        }
        assert_eq!(winners, 1, "round {round}: the CVC was handed out {winners} times");
    }
}

async fn finding_a_cvc_does_not_consume_it(db: &TestDb) {
    let store = db.open().await;
    let now = 1_700_000_000_000;
    store
        .commit(
            &[unit(vec![
                CardWrite::InsertCard(card("tok_a", "m1", "fp", now)),
                CardWrite::InsertCvc(cvc("tok_a", now + 60_000)),
            ])],
            &TestSigner,
        )
        .await
        .unwrap();
    // Reading does not consume; an expired one is not returned.
    assert_eq!(store.find_cvc("tok_a", now).await.unwrap(), Some(cvc("tok_a", now + 60_000)));
    assert_eq!(store.find_cvc("tok_a", now).await.unwrap(), Some(cvc("tok_a", now + 60_000)));
    assert_eq!(store.find_cvc("tok_a", now + 60_000).await.unwrap(), None);
    assert_eq!(store.counts().await.unwrap().cvcs, 1);
}

async fn an_expired_cvc_is_not_returned(db: &TestDb) {
    let store = db.open().await;
    store
        .commit(
            &[unit(vec![
                CardWrite::InsertCard(card("tok_a", "m1", "fp", 0)),
                CardWrite::InsertCvc(cvc("tok_a", 1_000)),
            ])],
            &TestSigner,
        )
        .await
        .unwrap();
    // `expires_at` is the first instant at which the CVC is no longer usable.
    assert_eq!(store.take_cvc("tok_a", 1_000).await.unwrap(), None);
    assert_eq!(store.take_cvc("tok_a", 999).await.unwrap(), None, "an expired CVC stays gone");
}

async fn sweep_deletes_only_expired_cvcs(db: &TestDb) {
    let store = db.open().await;
    let units: Vec<WriteUnit> = [("tok_1", 1_000), ("tok_2", 2_000), ("tok_3", 3_000)]
        .into_iter()
        .map(|(token, expires_at)| {
            unit(vec![CardWrite::InsertCard(card(token, "m1", token, 0)), CardWrite::InsertCvc(cvc(token, expires_at))])
        })
        .collect();
    store.commit(&units, &TestSigner).await.unwrap();

    assert_eq!(store.sweep_expired_cvcs(999).await.unwrap(), 0);
    assert_eq!(store.sweep_expired_cvcs(2_000).await.unwrap(), 2);
    assert_eq!(store.sweep_expired_cvcs(2_000).await.unwrap(), 0);
    assert_eq!(store.counts().await.unwrap().cvcs, 1);
    assert_eq!(store.take_cvc("tok_3", 2_500).await.unwrap(), Some(cvc("tok_3", 3_000)));
    assert_eq!(store.counts().await.unwrap().cards, 3, "sweeping never touches cards");
}

async fn delete_removes_card_and_cvc(db: &TestDb) {
    let store = db.open().await;
    store
        .commit(
            &[
                unit(vec![
                    CardWrite::InsertCard(card("tok_a", "m1", "fp", 0)),
                    CardWrite::InsertCvc(cvc("tok_a", i64::MAX)),
                ]),
                tokenize("tok_keep"),
            ],
            &TestSigner,
        )
        .await
        .unwrap();
    store.commit(&[unit(vec![CardWrite::DeleteCard { token: "tok_a".to_owned() }])], &TestSigner).await.unwrap();

    assert_eq!(store.find_card("tok_a").await.unwrap(), None);
    assert_eq!(store.find_card_by_fingerprint("m1", "fp", 0, None).await.unwrap(), None);
    assert_eq!(store.take_cvc("tok_a", 0).await.unwrap(), None);
    assert!(store.find_card("tok_keep").await.unwrap().is_some());
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.cards, counts.cvcs, counts.audit_records), (1, 0, 3));
}

async fn writes_apply_in_batch_order(db: &TestDb) {
    let store = db.open().await;
    let first = card("tok_a", "m1", "fp-old", 1);
    let second = card("tok_a", "m1", "fp-new", 2);
    store
        .commit(
            &[
                unit(vec![CardWrite::InsertCard(first), CardWrite::InsertCvc(cvc("tok_a", 5))]),
                unit(vec![CardWrite::DeleteCard { token: "tok_a".to_owned() }]),
                unit(vec![CardWrite::InsertCard(second.clone())]),
            ],
            &TestSigner,
        )
        .await
        .unwrap();
    assert_eq!(store.find_card("tok_a").await.unwrap(), Some(second));
    assert_eq!(store.take_cvc("tok_a", 0).await.unwrap(), None, "the CVC went with the deleted card");
    assert_eq!(verified_chain(&*store).await.len(), 3);
}

async fn a_batch_with_a_duplicate_token_fails_as_a_whole(db: &TestDb) {
    let store = db.open().await;
    store.commit(&[tokenize("tok_taken")], &TestSigner).await.unwrap();
    let before = verified_chain(&*store).await;

    // Collides with a committed card.
    let batch = [
        unit(vec![
            CardWrite::InsertCard(card("tok_new", "m1", "fp", 0)),
            CardWrite::InsertCvc(cvc("tok_new", i64::MAX)),
        ]),
        tokenize("tok_taken"),
    ];
    let result = store.commit(&batch, &TestSigner).await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    // Collides within the batch.
    let result = store.commit(&[tokenize("tok_twice"), tokenize("tok_twice")], &TestSigner).await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    // A CVC whose card does not exist is refused (foreign key).
    let result = store.commit(&[unit(vec![CardWrite::InsertCvc(cvc("tok_new2", 1))])], &TestSigner).await;
    assert!(result.is_err(), "a CVC without its card is refused: {result:?}");

    for token in ["tok_new", "tok_twice", "tok_new2"] {
        assert_eq!(store.find_card(token).await.unwrap(), None, "{token} must not persist");
    }
    assert_eq!(store.take_cvc("tok_new", 0).await.unwrap(), None);
    assert_eq!(verified_chain(&*store).await, before, "a failed batch leaves the chain unchanged");

    // The chain continues from where it was.
    store.commit(&[tokenize("tok_after")], &TestSigner).await.unwrap();
    assert_eq!(verified_chain(&*store).await.len(), before.len() + 1);
}

async fn audit_chain_stays_linear_under_concurrent_commits(db: &TestDb) {
    const TASKS: usize = 32;
    const COMMITS: usize = 20;
    // Two instances with their own pools stand for two vault replicas.
    let stores = [db.open().await, db.open().await];
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = stores[t % 2].clone();
        tasks.spawn(async move {
            for c in 0..COMMITS {
                store.commit(&[tokenize(&format!("tok_{t}_{c}"))], &TestSigner).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let chain = verified_chain(&*stores[0]).await;
    assert_eq!(chain.len(), TASKS * COMMITS);
    assert_eq!(chain.last().map(|r| r.seq), Some((TASKS * COMMITS) as i64));
    assert_eq!(stores[1].counts().await.unwrap().cards, (TASKS * COMMITS) as i64);
}

async fn audit_records_are_paged(db: &TestDb) {
    let store = db.open().await;
    let units: Vec<WriteUnit> = (0..25).map(|i| tokenize(&format!("tok_{i:02}"))).collect();
    store.commit(&units, &TestSigner).await.unwrap();

    let seqs = |records: Vec<AuditRecord>| records.into_iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(seqs(store.audit_records(0, 10).await.unwrap()), (1..=10).collect::<Vec<_>>());
    assert_eq!(seqs(store.audit_records(10, 10).await.unwrap()), (11..=20).collect::<Vec<_>>());
    assert_eq!(seqs(store.audit_records(20, 10).await.unwrap()), (21..=25).collect::<Vec<_>>());
    assert!(store.audit_records(25, 10).await.unwrap().is_empty());
    assert!(store.audit_records(0, 0).await.unwrap().is_empty());
    let page = store.audit_records(4, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].event, units[4].audit);
}

async fn counts_group_cards_by_dek(db: &TestDb) {
    let store = db.open().await;
    assert_eq!(store.counts().await.unwrap(), Counts::default());
    let mut units = Vec::new();
    for (i, dek) in [2, 1, 2, 1, 1].into_iter().enumerate() {
        let mut c = card(&format!("tok_{i}"), "m1", &format!("fp{i}"), 0);
        c.dek_version = dek;
        units.push(unit(vec![CardWrite::InsertCard(c)]));
    }
    units.push(unit(vec![CardWrite::InsertCvc(cvc("tok_0", i64::MAX))]));
    store.commit(&units, &TestSigner).await.unwrap();
    let counts = store.counts().await.unwrap();
    assert_eq!(counts, Counts { cards: 5, cvcs: 1, audit_records: 6, cards_by_dek: vec![(1, 3), (2, 2)] });
}

/// Not a test: prints sequential commit throughput for a few batch sizes
/// (`cargo test -p paysys-vault --test store --release -- --ignored --nocapture commit_throughput`).
async fn commit_throughput(db: &TestDb) {
    let store = db.open().await;
    let backend = match db {
        TestDb::Sqlite { .. } => "sqlite",
        TestDb::Postgres { .. } => "postgres",
    };
    let mut next = 0u64;
    for (batch, total) in [(1, 3_000), (16, 20_000), (64, 40_000), (256, 80_000)] {
        let batches: Vec<Vec<WriteUnit>> = (0..total / batch)
            .map(|_| {
                (0..batch)
                    .map(|_| {
                        next += 1;
                        let token = format!("tok_{next:022}");
                        let mut c = card(&token, "m1", &format!("{next:064x}"), next as i64);
                        c.ciphertext = vec![7u8; 60];
                        unit(vec![CardWrite::InsertCard(c)])
                    })
                    .collect()
            })
            .collect();
        let started = Instant::now();
        for units in &batches {
            store.commit(units, &TestSigner).await.unwrap();
        }
        let elapsed = started.elapsed().max(Duration::from_micros(1));
        println!(
            "{backend}: batch {batch:>3}: {total} units in {elapsed:.2?} = {:.0} units/s, {:.0} commits/s",
            total as f64 / elapsed.as_secs_f64(),
            (total / batch) as f64 / elapsed.as_secs_f64()
        );
    }
}

// ---------------------------------------------------------------------------------
// Key lifecycle.

fn stored_key(kind: KeyKind, version: i64, wrapped_by: i64, state: &str) -> StoredKey {
    StoredKey {
        kind,
        version,
        wrapped_by,
        wrapped: vec![version as u8; 40],
        kcv: format!("{}{version}", kind.as_str()),
        state: state.to_owned(),
        created_at: 1,
        format: KeyFormat::V2,
    }
}

async fn initialized(db: &TestDb) -> Arc<dyn Store> {
    let store = db.open().await;
    let keys = [stored_key(KeyKind::Kek, 1, 0, "active"), stored_key(KeyKind::Dek, 1, 1, "active")];
    let meta = [("root_kcv".to_owned(), "abcdef".to_owned()), ("unseal_threshold".to_owned(), "3".to_owned())];
    store.initialize(&keys, &meta, &event("sys.init", None), &TestSigner).await.unwrap();
    store
}

async fn vault_meta_is_stored_with_the_initial_keys(db: &TestDb) {
    let store = initialized(db).await;
    assert_eq!(
        store.meta().await.unwrap(),
        vec![("root_kcv".to_owned(), "abcdef".to_owned()), ("unseal_threshold".to_owned(), "3".to_owned())]
    );
    let again = store
        .initialize(&[], &[("root_kcv".to_owned(), "000000".to_owned())], &event("sys.init", None), &TestSigner)
        .await;
    assert!(matches!(again, Err(StoreError::AlreadyInitialized)), "{again:?}");
    assert_eq!(store.meta().await.unwrap().len(), 2);
}

async fn a_request_is_decided_once(db: &TestDb) {
    let store = initialized(db).await;
    let request = KeyRequest {
        id: "kreq_1".into(),
        action: "rotate_kek".into(),
        kind: None,
        version: None,
        force: false,
        requested_by: "alice".into(),
        requested_at: 10,
        expires_at: 20,
        state: "pending".into(),
        approved_by: None,
        decided_at: None,
        result: None,
    };
    let create = KeyChange { insert_request: Some(request.clone()), ..KeyChange::default() };
    store.apply_key_change(&create, &event("keys.rotate", None), &TestSigner).await.unwrap();
    assert_eq!(store.key_request("kreq_1").await.unwrap(), Some(request.clone()));
    let decide = |by: &str| KeyChange {
        insert_keys: vec![stored_key(KeyKind::Kek, 2, 0, "active")],
        update_keys: vec![stored_key(KeyKind::Kek, 1, 0, "decrypt_only")],
        decide_request: Some(RequestDecision {
            id: "kreq_1".into(),
            state: "executed".into(),
            approved_by: Some(by.into()),
            decided_at: 15,
            result: Some("done".into()),
        }),
        ..KeyChange::default()
    };
    store.apply_key_change(&decide("bob"), &event("keys.approve", None), &TestSigner).await.unwrap();
    // A second approval (say, on another replica) changes nothing, not even the audit log.
    let second = store.apply_key_change(&decide("carol"), &event("keys.approve", None), &TestSigner).await;
    assert!(matches!(second, Err(StoreError::Conflict(_))), "{second:?}");
    let decided = store.key_request("kreq_1").await.unwrap().unwrap();
    assert_eq!((decided.state.as_str(), decided.approved_by.as_deref()), ("executed", Some("bob")));
    let keys = store.load_keys().await.unwrap();
    assert_eq!(keys.iter().filter(|k| k.kind == KeyKind::Kek).count(), 2);
    assert_eq!(verified_chain(&*store).await.len(), 3);
    assert_eq!(store.key_requests(10).await.unwrap().len(), 1);
}

async fn a_reencryption_batch_moves_records_and_cursor_together(db: &TestDb) {
    let store = initialized(db).await;
    let mut writes: Vec<CardWrite> = ["tok_a", "tok_b", "tok_c"]
        .iter()
        .map(|t| CardWrite::InsertCard(card(t, "m1", &format!("fp-{t}"), 1)))
        .collect();
    writes.push(CardWrite::InsertCvc(cvc("tok_b", i64::MAX)));
    store.commit(&[unit(writes)], &TestSigner).await.unwrap();
    let start = KeyChange {
        insert_keys: vec![stored_key(KeyKind::Dek, 2, 1, "active")],
        start_job: Some((1, 2, 4, 100)),
        ..KeyChange::default()
    };
    store.apply_key_change(&start, &event("keys.rotate", None), &TestSigner).await.unwrap();
    let job = store.reencrypt_jobs().await.unwrap().remove(0);
    assert_eq!((job.state.as_str(), job.total, job.done, job.cursor.as_str()), ("running", 4, 0, ""));

    let page = store.cards_for_reencrypt(1, "", 2).await.unwrap();
    assert_eq!(page.iter().map(|c| c.token.as_str()).collect::<Vec<_>>(), vec!["tok_a", "tok_b"]);
    let batch = |cards: Vec<(String, Vec<u8>)>, cvcs: Vec<(String, Vec<u8>)>, cursor: &str| KeyChange {
        reencrypt: Some(ReencryptBatch {
            job_id: job.id,
            from_version: 1,
            to_version: 2,
            cards,
            cvcs,
            cursor: cursor.into(),
            now: 200,
        }),
        ..KeyChange::default()
    };
    let moved = vec![("tok_a".to_owned(), b"v2-a".to_vec()), ("tok_b".to_owned(), b"v2-b".to_vec())];
    store
        .apply_key_change(&batch(moved.clone(), vec![], "tok_b"), &event("keys.reencrypt", None), &TestSigner)
        .await
        .unwrap();
    // The same batch again (a replica racing) moves nothing: rows are matched on the old version.
    store.apply_key_change(&batch(moved, vec![], "tok_b"), &event("keys.reencrypt", None), &TestSigner).await.unwrap();
    let job_now = store.reencrypt_jobs().await.unwrap().remove(0);
    assert_eq!((job_now.done, job_now.cursor.as_str()), (2, "tok_b"));
    assert_eq!(store.find_card("tok_a").await.unwrap().unwrap().ciphertext, b"v2-a");
    assert_eq!(store.find_card("tok_a").await.unwrap().unwrap().dek_version, 2);
    assert_eq!(store.cards_for_reencrypt(1, "tok_b", 10).await.unwrap().len(), 1);

    let cvcs = store.cvcs_for_reencrypt(1, 10).await.unwrap();
    assert_eq!(cvcs.len(), 1);
    assert_eq!((cvcs[0].0.token.as_str(), cvcs[0].1.as_str()), ("tok_b", "m1"));
    let rest = batch(vec![("tok_c".into(), b"v2-c".to_vec())], vec![("tok_b".into(), b"v2-cvc".to_vec())], "tok_c");
    store.apply_key_change(&rest, &event("keys.reencrypt", None), &TestSigner).await.unwrap();
    let usage = store.dek_usage().await.unwrap();
    assert_eq!(usage, vec![DekUsage { version: 2, cards: 3, cvcs: 1 }]);

    let finish = KeyChange { finish_job: Some((job.id, "done".into(), None, 300)), ..KeyChange::default() };
    store.apply_key_change(&finish, &event("keys.reencrypt", None), &TestSigner).await.unwrap();
    let done = store.reencrypt_jobs().await.unwrap().remove(0);
    assert_eq!((done.state.as_str(), done.done, done.finished_at), ("done", 4, Some(300)));
    // A finished job takes no more batches.
    let late = store.apply_key_change(&batch(vec![], vec![], ""), &event("keys.reencrypt", None), &TestSigner).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    verified_chain(&*store).await;
}

async fn seal_counts_add_up(db: &TestDb) {
    let store = initialized(db).await;
    store.add_seals(&[(1, 5)]).await.unwrap();
    store.add_seals(&[(1, 7), (9, 1)]).await.unwrap();
    assert_eq!(store.seal_counts().await.unwrap(), vec![(1, 12)]);
}

// ---------------------------------------------------------------------------------
// Token expiry and the sweeper.

async fn an_expired_token_is_not_found(db: &TestDb) {
    let store = db.open().await;
    let expiring = expiring_card("tok_expiring", "m1", "fp", 1_000);
    store
        .commit(&[unit(vec![CardWrite::InsertCard(expiring.clone())]), tokenize("tok_forever")], &TestSigner)
        .await
        .unwrap();

    assert_eq!(store.find_card_at("tok_expiring", 999).await.unwrap(), Some(expiring));
    // Expired at the instant itself, whether or not the sweeper has run.
    assert_eq!(store.find_card_at("tok_expiring", 1_000).await.unwrap(), None);
    assert_eq!(store.find_card("tok_expiring").await.unwrap(), None, "the wall clock is long past 1 s after 1970");
    assert!(store.find_card_at("tok_forever", i64::MAX).await.unwrap().is_some());
    assert_eq!(store.counts().await.unwrap().cards, 2, "not found is not deleted: the sweeper deletes");
}

async fn reuse_skips_tokens_that_expire_sooner_than_asked(db: &TestDb) {
    let store = db.open().await;
    // The oldest matching card is reused: tok_short is older.
    let cards = [
        CardRecord { created_at: 1, ..expiring_card("tok_short", "m1", "fp", 5_000) },
        CardRecord { created_at: 2, ..expiring_card("tok_long", "m1", "fp", 9_000) },
    ];
    let units: Vec<WriteUnit> = cards.iter().map(|c| unit(vec![CardWrite::InsertCard(c.clone())])).collect();
    store.commit(&units, &TestSigner).await.unwrap();
    let reused = |now, lives_until| {
        let store = store.clone();
        async move { store.find_card_by_fingerprint("m1", "fp", now, lives_until).await.unwrap().map(|c| c.token) }
    };
    assert_eq!(reused(0, Some(4_000)).await.as_deref(), Some("tok_short"));
    assert_eq!(reused(0, Some(6_000)).await.as_deref(), Some("tok_long"), "tok_short would die too soon");
    assert_eq!(reused(0, Some(10_000)).await, None);
    // Asked to live forever: no expiring token will do.
    assert_eq!(reused(0, None).await, None);
    // An expired token is never handed out again.
    assert_eq!(reused(6_000, Some(6_000)).await.as_deref(), Some("tok_long"));
    assert_eq!(reused(9_000, Some(1)).await, None);
    store.commit(&[tokenize("tok_forever")], &TestSigner).await.unwrap();
    let forever = store.find_card_by_fingerprint("m1", "fp-tok_forever", 0, None).await.unwrap();
    assert_eq!(forever.map(|c| c.token).as_deref(), Some("tok_forever"));
}

async fn expired_cards_are_deleted_in_audited_batches(db: &TestDb) {
    let store = db.open().await;
    let mut writes: Vec<WriteUnit> = (0..5)
        .map(|i| {
            let token = format!("tok_exp{i}");
            unit(vec![
                CardWrite::InsertCard(expiring_card(&token, "m1", "fp", 1_000 + i)),
                CardWrite::InsertCvc(cvc(&token, i64::MAX)),
            ])
        })
        .collect();
    writes.push(unit(vec![CardWrite::InsertCard(expiring_card("tok_later", "m2", "fp", 50_000))]));
    writes.push(tokenize("tok_forever"));
    store.commit(&writes, &TestSigner).await.unwrap();
    let before = verified_chain(&*store).await.len();

    let first = store.delete_expired_cards(2_000, 3, &expiry_event, &TestSigner).await.unwrap();
    let tokens: Vec<&str> = first.iter().map(|c| c.token.as_str()).collect();
    assert_eq!(tokens, ["tok_exp0", "tok_exp1", "tok_exp2"], "oldest expiry first, at most the batch");
    assert_eq!((first[0].merchant_id.as_str(), first[0].dek_version, first[0].expires_at), ("m1", 1, 1_000));
    let second = store.delete_expired_cards(2_000, 3, &expiry_event, &TestSigner).await.unwrap();
    assert_eq!(second.len(), 2, "a short batch: nothing else has expired");
    assert!(store.delete_expired_cards(2_000, 3, &expiry_event, &TestSigner).await.unwrap().is_empty());

    // Crypto-shred: the rows are gone, CVCs with them, the rest untouched.
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.cards, counts.cvcs), (2, 0));
    assert!(store.find_card_at("tok_later", 2_000).await.unwrap().is_some());
    assert!(store.find_card_at("tok_forever", 2_000).await.unwrap().is_some());
    for i in 0..5 {
        assert_eq!(store.take_cvc(&format!("tok_exp{i}"), 0).await.unwrap(), None);
    }
    // One audit record per card, chained like every other record.
    let chain = verified_chain(&*store).await;
    let swept: Vec<&AuditEvent> = chain[before..].iter().map(|r| &r.event).collect();
    assert_eq!(swept.len(), 5);
    assert!(swept.iter().all(|e| e.operation == "tokens.expire" && e.merchant_id.as_deref() == Some("m1")));
    let named: Vec<&str> = swept.iter().filter_map(|e| e.token.as_deref()).collect();
    assert_eq!(named, ["tok_exp0", "tok_exp1", "tok_exp2", "tok_exp3", "tok_exp4"]);
}

async fn replicas_sweeping_together_delete_each_card_once(db: &TestDb) {
    const CARDS: usize = 400;
    let stores = [db.open().await, db.open().await, db.open().await];
    let units: Vec<WriteUnit> = (0..CARDS)
        .map(|i| {
            let token = format!("tok_many{i:04}");
            unit(vec![CardWrite::InsertCard(expiring_card(&token, "m1", "fp", 1_000 + (i as i64 % 7)))])
        })
        .collect();
    stores[0].commit(&units, &TestSigner).await.unwrap();
    let before = verified_chain(&*stores[0]).await.len();

    // Three "replicas", two sweepers each, racing over the same expired cards.
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..6 {
        let store = stores[t % 3].clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.delete_expired_cards(5_000, 16, &expiry_event, &TestSigner).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|c| c.token));
            }
        });
    }
    let mut deleted = Vec::new();
    while let Some(done) = tasks.join_next().await {
        deleted.extend(done.unwrap());
    }
    deleted.sort();
    let before_dedup = deleted.len();
    deleted.dedup();
    assert_eq!(before_dedup, deleted.len(), "a card was reported deleted by two sweepers");
    assert_eq!(deleted.len(), CARDS);
    assert_eq!(stores[1].counts().await.unwrap().cards, 0);
    // Exactly one audit record per card, and the chain is still linear.
    let chain = verified_chain(&*stores[2]).await;
    assert_eq!(chain.len() - before, CARDS);
}

/// Key format 1 → 2: rows move only while still in format 1, with `vault_meta` in the same
/// transaction; a second migration (another replica) conflicts and changes nothing.
async fn format_1_keys_migrate_once_with_their_meta(db: &TestDb) {
    let store = db.open().await;
    let legacy = |kind, version, wrapped_by| StoredKey {
        format: KeyFormat::V1,
        ..stored_key(kind, version, wrapped_by, "active")
    };
    let keys = [legacy(KeyKind::Kek, 1, 0), legacy(KeyKind::Dek, 1, 1)];
    let meta = [("root_kcv_legacy".to_owned(), "abcdef".to_owned())];
    store.initialize(&keys, &meta, &event("sys.init", None), &TestSigner).await.unwrap();
    assert!(store.load_keys().await.unwrap().iter().all(|k| k.format == KeyFormat::V1));

    let migrated = |k: &StoredKey| StoredKey {
        wrapped: vec![0x42; 60],
        kcv: format!("new{}", k.version),
        format: KeyFormat::V2,
        ..k.clone()
    };
    let change = KeyChange {
        migrate_keys: keys.iter().map(migrated).collect(),
        set_meta: vec![("root_kcv".to_owned(), "123456".to_owned())],
        ..KeyChange::default()
    };
    store.apply_key_change(&change, &event("keys.migrate", None), &TestSigner).await.unwrap();
    let after = store.load_keys().await.unwrap();
    assert!(after.iter().all(|k| k.format == KeyFormat::V2 && k.wrapped == vec![0x42; 60]), "{after:?}");
    assert_eq!(after.iter().map(|k| k.kcv.as_str()).collect::<Vec<_>>(), ["new1", "new1"]);
    assert_eq!(
        store.meta().await.unwrap(),
        vec![("root_kcv".to_owned(), "123456".to_owned()), ("root_kcv_legacy".to_owned(), "abcdef".to_owned())]
    );

    // The same migration again: nothing in format 1 is left, so it conflicts as a whole.
    let again = KeyChange {
        migrate_keys: vec![StoredKey { wrapped: vec![0x43; 60], ..migrated(&keys[0]) }],
        set_meta: vec![("root_kcv".to_owned(), "999999".to_owned())],
        ..KeyChange::default()
    };
    let second = store.apply_key_change(&again, &event("keys.migrate", None), &TestSigner).await;
    assert!(matches!(second, Err(StoreError::Conflict(_))), "{second:?}");
    assert_eq!(store.load_keys().await.unwrap(), after);
    assert_eq!(store.meta().await.unwrap()[0], ("root_kcv".to_owned(), "123456".to_owned()));
    let audit = verified_chain(&*store).await;
    assert_eq!(audit.len(), 2, "the refused change left no audit record");
}

// ---------------------------------------------------------------------------------
// Checkout grants (the payment widget): one grant mints one card.

fn grant(nonce: &str, expires_at: i64) -> SpentGrant {
    SpentGrant { nonce: nonce.to_owned(), merchant_id: "m1".to_owned(), checkout_id: "chk_1".to_owned(), expires_at }
}

fn bound_card(token: &str) -> CardRecord {
    CardRecord { checkout_id: Some("chk_1".to_owned()), ..card(token, "m1", &format!("fp-{token}"), 1) }
}

/// A checkout-bound tokenization: the grant spent with the card and its CVC.
fn spend(nonce: &str, token: &str) -> WriteUnit {
    unit(vec![
        CardWrite::SpendGrant(grant(nonce, 5_000)),
        CardWrite::InsertCard(bound_card(token)),
        CardWrite::InsertCvc(cvc(token, i64::MAX)),
    ])
}

async fn a_grant_mints_one_card(db: &TestDb) {
    let store = db.open().await;
    assert!(!store.grant_spent("nonce_a").await.unwrap());
    store.commit(&[spend("nonce_a", "tok_a")], &TestSigner).await.unwrap();
    assert!(store.grant_spent("nonce_a").await.unwrap());
    assert!(!store.grant_spent("nonce_b").await.unwrap());
    let found = store.find_card("tok_a").await.unwrap().unwrap();
    assert_eq!(found.checkout_id.as_deref(), Some("chk_1"));
    assert_eq!(found, bound_card("tok_a"));
    store.commit(&[tokenize("tok_plain")], &TestSigner).await.unwrap();
    assert_eq!(store.find_card("tok_plain").await.unwrap().unwrap().checkout_id, None);

    let result = store.commit(&[spend("nonce_a", "tok_b")], &TestSigner).await;
    assert!(matches!(result, Err(StoreError::GrantUsed)), "{result:?}");
    assert_eq!(store.find_card("tok_b").await.unwrap(), None, "no card for a spent grant");
    assert_eq!(store.take_cvc("tok_b", 0).await.unwrap(), None);
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.cards, counts.cvcs), (2, 1));
    assert_eq!(verified_chain(&*store).await.len(), 2, "the refused unit left no audit record");
}

async fn a_batch_spending_one_grant_twice_fails_as_a_whole(db: &TestDb) {
    let store = db.open().await;
    // Twins in one batch (the group committer gathers concurrent requests).
    let twins = [spend("nonce_t", "tok_1"), tokenize("tok_other"), spend("nonce_t", "tok_2")];
    let result = store.commit(&twins, &TestSigner).await;
    assert!(matches!(result, Err(StoreError::GrantUsed)), "{result:?}");
    assert_eq!(store.counts().await.unwrap().cards, 0, "the whole batch rolled back");
    assert!(verified_chain(&*store).await.is_empty());

    // One by one, as the committer retries a failed batch: the first twin wins.
    let mut outcomes = Vec::new();
    for twin in &twins {
        outcomes.push(store.commit(std::slice::from_ref(twin), &TestSigner).await);
    }
    assert!(outcomes[0].is_ok() && outcomes[1].is_ok(), "{outcomes:?}");
    assert!(matches!(outcomes[2], Err(StoreError::GrantUsed)), "{outcomes:?}");
    assert!(store.find_card("tok_1").await.unwrap().is_some());
    assert_eq!(store.find_card("tok_2").await.unwrap(), None);
}

async fn a_token_collision_is_not_a_spent_grant(db: &TestDb) {
    let store = db.open().await;
    store.commit(&[tokenize("tok_taken")], &TestSigner).await.unwrap();
    // The token collides: a conflict the handler draws again for, and the grant stays
    // unspent (rolled back with the card).
    let result = store.commit(&[spend("nonce_c", "tok_taken")], &TestSigner).await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    store.commit(&[spend("nonce_c", "tok_fresh")], &TestSigner).await.unwrap();
    assert_eq!(store.find_card("tok_fresh").await.unwrap().unwrap().checkout_id.as_deref(), Some("chk_1"));
    // A spent grant with a colliding token: the grant is what the caller hears about.
    let result = store.commit(&[spend("nonce_c", "tok_taken")], &TestSigner).await;
    assert!(matches!(result, Err(StoreError::GrantUsed)), "{result:?}");
}

async fn replicas_spending_one_grant_together_store_one_card(db: &TestDb) {
    const TRIES: usize = 8;
    // Two instances with their own pools stand for two vault replicas.
    let stores = [db.open().await, db.open().await];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TRIES {
        let store = stores[i % 2].clone();
        tasks.spawn(async move { store.commit(&[spend("nonce_r", &format!("tok_{i}"))], &TestSigner).await });
    }
    let mut stored = 0;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(()) => stored += 1,
            Err(e) => assert!(matches!(e, StoreError::GrantUsed), "{e:?}"),
        }
    }
    assert_eq!(stored, 1);
    assert_eq!(stores[0].counts().await.unwrap().cards, 1);
    assert_eq!(verified_chain(&*stores[1]).await.len(), 1);
}

async fn spent_grants_are_swept_after_their_expiry(db: &TestDb) {
    let store = db.open().await;
    let units = [
        unit(vec![CardWrite::SpendGrant(grant("nonce_1", 1_000)), CardWrite::InsertCard(bound_card("tok_1"))]),
        unit(vec![CardWrite::SpendGrant(grant("nonce_2", 2_000)), CardWrite::InsertCard(bound_card("tok_2"))]),
        unit(vec![CardWrite::SpendGrant(grant("nonce_3", 3_000)), CardWrite::InsertCard(bound_card("tok_3"))]),
    ];
    store.commit(&units, &TestSigner).await.unwrap();
    assert_eq!(store.sweep_spent_grants(999).await.unwrap(), 0);
    assert_eq!(store.sweep_spent_grants(2_000).await.unwrap(), 2);
    assert_eq!(store.sweep_spent_grants(2_000).await.unwrap(), 0);
    assert!(!store.grant_spent("nonce_2").await.unwrap());
    assert!(store.grant_spent("nonce_3").await.unwrap());
    assert_eq!(store.counts().await.unwrap().cards, 3, "sweeping grants never touches cards");
    // The swept nonce is free again (the vault refuses its expired grant before that);
    // the one still kept is not.
    let again = unit(vec![CardWrite::SpendGrant(grant("nonce_1", 9_000)), CardWrite::InsertCard(bound_card("tok_4"))]);
    store.commit(&[again], &TestSigner).await.unwrap();
    let replay = unit(vec![CardWrite::SpendGrant(grant("nonce_3", 9_000)), CardWrite::InsertCard(bound_card("tok_5"))]);
    assert!(matches!(store.commit(&[replay], &TestSigner).await, Err(StoreError::GrantUsed)));
    // The vault's sweeper keeps a grant an hour past its expiry.
    assert_eq!(paysys_vault::retention::sweep_spent_grants(&*store, 3_000 + 3_600_000 - 1).await.unwrap(), 0);
    assert_eq!(paysys_vault::retention::sweep_spent_grants(&*store, 3_000 + 3_600_000).await.unwrap(), 1);
}
