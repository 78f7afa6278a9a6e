//! Persistence for the vault, behind one trait. SQL lives only in this module; handlers
//! never write SQL. The statements both databases run are written once
//! (`portable.rs`); the backends (`sqlite.rs`, `postgres.rs`) keep only what truly
//! differs: locking, batch writes, the expiry sweep.
//!
//! Times are Unix milliseconds (`i64`) so both backends store them the same way.
//! Nothing here ever holds a plaintext card number or CVC: card data arrives already
//! sealed by a DEK (`ciphertext`), with only the non-sensitive metadata in clear.

mod group_commit;
mod portable;
mod postgres;
mod rows;
mod sqlite;

use async_trait::async_trait;
use std::sync::Arc;

/// Errors from the store. The message never contains card data (there is none here
/// in plaintext) but may contain SQL error text, so it is logged, not sent to clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL is neither `sqlite:` nor `postgres://`/`postgresql://`.
    #[error("unsupported database URL scheme (expected sqlite: or postgres://)")]
    UnsupportedUrl,
    /// `insert_initial_keys` found keys already present: the vault is initialized.
    #[error("the key store is already initialized")]
    AlreadyInitialized,
    /// A unique constraint was violated (for example a token collision).
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    /// A unit spends a checkout grant ([`CardWrite::SpendGrant`]) whose nonce is spent
    /// already: told apart from [`StoreError::Conflict`] so that a token collision is
    /// drawn again and a replayed grant is refused.
    #[error("the checkout grant was already used")]
    GrantUsed,
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Kind of a stored (wrapped) key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Key-encryption key, wrapped by the root key.
    Kek,
    /// Data-encryption key, wrapped by a KEK.
    Dek,
}

impl KeyKind {
    /// Stable text form stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Kek => "kek",
            KeyKind::Dek => "dek",
        }
    }
}

/// How a stored key row was written (the `keys.format` column, migration 0003).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// Written before key format 2: `kcv` is AES of a zero block under the key, and a
    /// KEK is wrapped directly under the root key. Read, then migrated at unseal.
    V1,
    /// `kcv` is truncated HMAC-SHA256; a KEK is wrapped under the key derived from the root.
    V2,
}

impl KeyFormat {
    /// The integer stored in `keys.format`.
    pub fn as_i64(self) -> i64 {
        match self {
            KeyFormat::V1 => 1,
            KeyFormat::V2 => 2,
        }
    }
}

/// A wrapped key as stored. `wrapped` is only ever ciphertext produced by `paysys-keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kind: KeyKind,
    /// Version, unique per kind, starting at 1.
    pub version: i64,
    /// Version of the key that wrapped this one (KEK version for a DEK; 0 = root key for a KEK).
    pub wrapped_by: i64,
    /// Wrapped key bytes (nonce || ciphertext || tag).
    pub wrapped: Vec<u8>,
    /// Key check value, hex, identifies the key without revealing it.
    pub kcv: String,
    /// `active`, `decrypt_only`, `retired` or `destroyed`.
    pub state: String,
    pub created_at: i64,
    /// How `kcv` was computed and (for a KEK) what `wrapped` is sealed under.
    pub format: KeyFormat,
}

/// One tokenized card. `ciphertext` is the sealed card payload (PAN, holder name);
/// everything else is metadata that may be shown to any allowed caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRecord {
    pub token: String,
    pub merchant_id: String,
    /// HMAC fingerprint of the PAN scoped to the merchant, hex.
    pub fingerprint: String,
    pub brand: String,
    pub bin: String,
    pub last4: String,
    pub exp_month: i32,
    pub exp_year: i32,
    pub dek_version: i64,
    pub ciphertext: Vec<u8>,
    pub created_at: i64,
    /// When the token stops existing (Unix ms), `None` for never. From that instant the
    /// token reads as not found; the sweeper then deletes the row.
    pub expires_at: Option<i64>,
    /// The checkout the token is bound to (migration 0006): set for a token minted with a
    /// gateway's one-time grant, which the gateway pays only on that checkout.
    pub checkout_id: Option<String>,
}

impl CardRecord {
    /// Does the token still exist at `now`?
    pub fn is_live_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// A card the sweeper deleted because its token expired: what its audit record names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredCard {
    pub token: String,
    pub merchant_id: String,
    pub dek_version: i64,
    pub expires_at: i64,
}

/// Builds the audit event of one swept card (the store calls it inside the transaction
/// that deletes the card, so each deletion and its record commit together).
pub type ExpiryAudit = dyn Fn(&ExpiredCard) -> AuditEvent + Send + Sync;

/// A sealed CVC waiting for its single use; deleted when used or when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CvcRecord {
    pub token: String,
    pub dek_version: i64,
    pub ciphertext: Vec<u8>,
    pub expires_at: i64,
}

/// A checkout grant spent by the token it minted (migration 0006). The nonce is the key:
/// a second token with the same grant is refused. Kept until an hour after the grant
/// expired (see [`crate::retention`]), after which the grant itself is refused as expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpentGrant {
    /// The grant's nonce: 22 characters of unpadded base64url.
    pub nonce: String,
    pub merchant_id: String,
    pub checkout_id: String,
    /// When the grant expires (Unix ms).
    pub expires_at: i64,
}

/// What the vault wants to say about one request in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: i64,
    pub request_id: String,
    pub principal: String,
    pub operation: String,
    pub merchant_id: Option<String>,
    pub token: Option<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// Stable outcome code: `ok` or an error code such as `token_not_found`.
    pub outcome: String,
    pub key_version: Option<i64>,
}

/// A record of the audit chain as stored: the event, its position, and the MACs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the chain, 1, 2, 3, … without gaps.
    pub seq: i64,
    pub event: AuditEvent,
    /// MAC of the previous record (32 zero bytes for the first record).
    pub prev_mac: Vec<u8>,
    /// MAC over this record's content and `prev_mac`.
    pub mac: Vec<u8>,
}

/// A signed checkpoint as the database remembers it (migration 0004). Not the security
/// control (the signed line outside the database is): it lets `audit verify --checkpoint`
/// tell a truncated log from a restored older database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// The chain head the checkpoint signed: its `seq`…
    pub seq: i64,
    /// …and the MAC of the record at that `seq`.
    pub head_mac: Vec<u8>,
    /// When it was signed (Unix ms).
    pub at: i64,
    /// The signing key's id (`ed25519:…`).
    pub key_id: String,
}

/// Computes the chain MAC of a record. Implemented by the vault's audit module with
/// the audit key from `paysys-keys`; the store calls it inside the write transaction,
/// after it has locked the chain head, so the chain stays linear under concurrency.
pub trait AuditSigner: Send + Sync {
    /// MAC over `record.seq`, `record.event` and `record.prev_mac` (`record.mac` is ignored).
    fn chain_mac(&self, record: &AuditRecord) -> Vec<u8>;
}

/// A change to card data, committed together with its audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardWrite {
    InsertCard(CardRecord),
    /// Store the CVC of a token, replacing any earlier one of the same token.
    InsertCvc(CvcRecord),
    /// Delete the card row and any CVC of this token (crypto-shred: the ciphertext is gone).
    DeleteCard {
        token: String,
    },
    /// Record a checkout grant as spent. Fails the unit with [`StoreError::GrantUsed`]
    /// if its nonce is spent already (by an earlier commit, or by another unit of the
    /// same batch), so the card written with it is not stored either.
    SpendGrant(SpentGrant),
}

/// One request's writes plus the audit event that describes it: both land in the same
/// transaction or neither does (fail closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteUnit {
    pub writes: Vec<CardWrite>,
    pub audit: AuditEvent,
}

/// Row counts for `GET /v1/sys/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub cards: i64,
    pub cvcs: i64,
    pub audit_records: i64,
    /// Number of cards per DEK version.
    pub cards_by_dek: Vec<(i64, i64)>,
}

/// A rotate / retire / destroy request under dual control, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequest {
    /// `kreq_` + 32 hex characters, random.
    pub id: String,
    /// `rotate_kek`, `rotate_dek`, `retire` or `destroy`.
    pub action: String,
    /// `kek` or `dek` for `retire`/`destroy`; `None` for rotations.
    pub kind: Option<String>,
    pub version: Option<i64>,
    /// `destroy` even though records still depend on the version (crypto-shredding them).
    pub force: bool,
    pub requested_by: String,
    pub requested_at: i64,
    pub expires_at: i64,
    /// `pending`, `executed` or `expired`.
    pub state: String,
    pub approved_by: Option<String>,
    pub decided_at: Option<i64>,
    /// What executing it did (e.g. `dek v3 active; job 2`), or why it expired.
    pub result: Option<String>,
}

/// A change to a pending request, applied only if it is still `pending` (so two approvals
/// racing each other execute the request once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestDecision {
    pub id: String,
    /// `executed` or `expired`.
    pub state: String,
    pub approved_by: Option<String>,
    pub decided_at: i64,
    pub result: Option<String>,
}

/// A re-encryption job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReencryptJob {
    pub id: i64,
    pub from_version: i64,
    pub to_version: i64,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Records under `from_version` when the job started (cards and CVCs).
    pub total: i64,
    /// Records moved so far.
    pub done: i64,
    /// Last card token moved ("" before the first batch).
    pub cursor: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
}

/// One batch of a re-encryption job: new ciphertexts for records still under
/// `from_version`, and the job's new cursor — written in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReencryptBatch {
    pub job_id: i64,
    pub from_version: i64,
    pub to_version: i64,
    /// (token, ciphertext under `to_version`). A card changed meanwhile (deleted, or moved
    /// by another replica) is skipped: the update matches on `from_version`.
    pub cards: Vec<(String, Vec<u8>)>,
    /// (token, ciphertext under `to_version`) of CVCs.
    pub cvcs: Vec<(String, Vec<u8>)>,
    pub cursor: String,
    pub now: i64,
}

/// A change to the key store, applied atomically with its audit record: new or updated
/// wrapped keys, a request created or decided, a job started, moved on or finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChange {
    pub insert_keys: Vec<StoredKey>,
    /// Replace `wrapped`, `wrapped_by` and `state` of these (kind, version) rows.
    pub update_keys: Vec<StoredKey>,
    /// Move these (kind, version) rows from key format 1 to the `wrapped`, `kcv` and
    /// `format` given. Fails the whole change with [`StoreError::Conflict`] if a row is no
    /// longer in format 1 (another replica migrated it first).
    pub migrate_keys: Vec<StoredKey>,
    /// Insert or replace these `vault_meta` entries.
    pub set_meta: Vec<(String, String)>,
    pub insert_request: Option<KeyRequest>,
    /// Fails the whole change with [`StoreError::Conflict`] if the request is not pending.
    pub decide_request: Option<RequestDecision>,
    /// Start a job: (from_version, to_version, total, now).
    pub start_job: Option<(i64, i64, i64, i64)>,
    pub reencrypt: Option<ReencryptBatch>,
    /// Finish a running job: (job id, `done` or `failed`, error, now).
    pub finish_job: Option<(i64, String, Option<String>, i64)>,
}

/// Records under one DEK version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DekUsage {
    pub version: i64,
    pub cards: i64,
    pub cvcs: i64,
}

/// The vault's persistence. Implemented for SQLite and PostgreSQL; the same test suite
/// runs against both.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Apply this backend's migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// All wrapped keys, ordered by kind then version.
    async fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Store the first key set of a new vault, with its audit event, atomically.
    /// Fails with `AlreadyInitialized` if any key exists.
    async fn insert_initial_keys(
        &self,
        keys: &[StoredKey],
        audit: &AuditEvent,
        signer: &dyn AuditSigner,
    ) -> Result<(), StoreError>;

    /// The card of `token` if the token exists at `now`: a token past its `expires_at`
    /// is not found, whether or not the sweeper has deleted its row yet.
    async fn find_card_at(&self, token: &str, now: i64) -> Result<Option<CardRecord>, StoreError>;
    /// [`Store::find_card_at`] the current time: what every request reads a token with.
    async fn find_card(&self, token: &str) -> Result<Option<CardRecord>, StoreError> {
        self.find_card_at(token, crate::api::now_ms()).await
    }
    /// The oldest card of `merchant_id` with this fingerprint that exists at `now` and
    /// lives at least until `lives_until` (`None`: a card that never expires), for
    /// `reuse: true` — a token that expires sooner than the caller asked is not reused.
    async fn find_card_by_fingerprint(
        &self,
        merchant_id: &str,
        fingerprint: &str,
        now: i64,
        lives_until: Option<i64>,
    ) -> Result<Option<CardRecord>, StoreError>;
    /// Delete up to `limit` cards whose token expired at `now` (oldest expiry first),
    /// with their CVCs, and append one audit record per card built by `audit`, all in
    /// one transaction. Cards another transaction holds (a replica sweeping at the same
    /// time, a re-encryption batch) are skipped, not waited for. Returns the cards
    /// deleted; fewer than `limit` means none were left.
    async fn delete_expired_cards(
        &self,
        now: i64,
        limit: i64,
        audit: &ExpiryAudit,
        signer: &dyn AuditSigner,
    ) -> Result<Vec<ExpiredCard>, StoreError>;
    /// Delete and return the CVC of `token` if it has not expired at `now` (single use).
    async fn take_cvc(&self, token: &str, now: i64) -> Result<Option<CvcRecord>, StoreError>;
    /// The CVC of `token` if it has not expired at `now`, without deleting it. The relay
    /// looks with this first, so a token without a CVC costs it no write, then claims the
    /// CVC with [`take_cvc`](Store::take_cvc).
    async fn find_cvc(&self, token: &str, now: i64) -> Result<Option<CvcRecord>, StoreError>;
    /// Delete CVCs whose `expires_at <= now`; returns how many were deleted.
    async fn sweep_expired_cvcs(&self, now: i64) -> Result<u64, StoreError>;
    /// Has a token been minted with the grant of this nonce (and its row not swept yet)?
    /// A read before the write, so a replayed grant costs no commit; the write itself
    /// ([`CardWrite::SpendGrant`]) is what makes a grant single-use.
    async fn grant_spent(&self, nonce: &str) -> Result<bool, StoreError>;
    /// Delete spent grants whose `expires_at <= before`; returns how many were deleted.
    async fn sweep_spent_grants(&self, before: i64) -> Result<u64, StoreError>;

    /// Commit several units in **one** transaction (group commit): lock the audit chain
    /// head, apply each unit's writes, append each unit's audit record chained with
    /// `signer`, commit. If any write fails the whole batch is rolled back and the error
    /// returned; the caller may retry units one by one to isolate the failing one.
    async fn commit(&self, units: &[WriteUnit], signer: &dyn AuditSigner) -> Result<(), StoreError>;

    /// Audit records with `seq > after_seq`, ascending, at most `limit`.
    async fn audit_records(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>, StoreError>;

    /// The chain head as stored: (`seq`, `mac`) of the last record (0 and 32 zero bytes
    /// when the log is empty). Every record up to `seq` exists once the head says so.
    async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError>;

    async fn counts(&self) -> Result<Counts, StoreError>;

    /// Remember a checkpoint the vault has signed; recording the same (`seq`, `head_mac`)
    /// again (another replica, a retry) changes nothing.
    async fn record_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<(), StoreError>;

    /// Remembered checkpoints with `seq > after_seq`, ascending by `seq`, at most `limit`.
    async fn recorded_checkpoints(&self, after_seq: i64, limit: i64) -> Result<Vec<CheckpointRow>, StoreError>;

    /// Like [`Store::insert_initial_keys`], also storing the vault's public facts
    /// (`vault_meta`: root KCV, unseal mode and threshold) in the same transaction.
    async fn initialize(
        &self,
        keys: &[StoredKey],
        meta: &[(String, String)],
        audit: &AuditEvent,
        signer: &dyn AuditSigner,
    ) -> Result<(), StoreError>;

    /// Every `vault_meta` entry.
    async fn meta(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Apply a key-store change and append its audit record, in one transaction.
    async fn apply_key_change(
        &self,
        change: &KeyChange,
        audit: &AuditEvent,
        signer: &dyn AuditSigner,
    ) -> Result<(), StoreError>;

    async fn key_request(&self, id: &str) -> Result<Option<KeyRequest>, StoreError>;
    /// The newest requests first, at most `limit`.
    async fn key_requests(&self, limit: i64) -> Result<Vec<KeyRequest>, StoreError>;
    /// Every re-encryption job, newest first.
    async fn reencrypt_jobs(&self) -> Result<Vec<ReencryptJob>, StoreError>;
    /// Cards under DEK `version` with a token after `after_token`, in token order.
    async fn cards_for_reencrypt(
        &self,
        version: i64,
        after_token: &str,
        limit: i64,
    ) -> Result<Vec<CardRecord>, StoreError>;
    /// CVCs under DEK `version` with their card's merchant (part of the CVC's AAD).
    async fn cvcs_for_reencrypt(&self, version: i64, limit: i64) -> Result<Vec<(CvcRecord, String)>, StoreError>;
    /// Cards and CVCs per DEK version.
    async fn dek_usage(&self) -> Result<Vec<DekUsage>, StoreError>;
    /// Add seal counts to DEKs: (version, seals done since the last call).
    async fn add_seals(&self, deltas: &[(i64, i64)]) -> Result<(), StoreError>;
    /// Seals recorded per DEK version.
    async fn seal_counts(&self) -> Result<Vec<(i64, i64)>, StoreError>;
}

/// Open the store named by `url`: `sqlite:PATH` (created if missing, WAL) or
/// `postgres://…`. Does not migrate; call [`Store::migrate`].
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(portable::SqlStore::open(url).await?))
}
