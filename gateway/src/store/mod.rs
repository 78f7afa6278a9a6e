//! Persistence: SQLite (default, WAL) or PostgreSQL, chosen by URL. All SQL of the
//! gateway lives in this module.
//!
//! # Layout
//!
//! * `records.rs` — the records ([`PaymentRecord`], [`RefundRecord`], …).
//! * `rows.rs` — column lists, bindings, rows back into records.
//! * `webhooks.rs` — webhook endpoints, the outbox of deliveries (written by
//!   `save_payment` in its transaction), the workers' claims, attempts.
//! * `merchants.rs`, `payments.rs` (with the ledger and the workers' claims),
//!   `refunds.rs`, `captures.rs`, `authentications.rs` (3-D Secure), `requests.rs`
//!   (the replay guard), `tokens.rs` (removed tokens), `checkouts.rs` (the payment
//!   widget's checkouts and their attempts), `customers.rs` (customers' saved cards) —
//!   the operations.
//!
//! Statements are portable (`$n` placeholders, 64-bit integers), written once and run
//! on either backend by the dispatch of [`paysys_db::store`] (`in_transaction!`,
//! `on_pool!`, `on_reader!`); a record's arguments are bound by one function over
//! [`Bind`] for both.
//!
//! * **SQLite**: one writer at a time (`BEGIN IMMEDIATE` under the database's write
//!   lock); plain reads on read-only connections. A payment's insert and its update
//!   after the acquirer answered, the hot path, and the 3-D Secure authentication's
//!   writes are units of the group committer ([`paysys_db::GroupCommitter`]): one
//!   handoff each, many per commit. `sqlite::memory:` is a temporary file, so tests take
//!   this path too.
//! * **PostgreSQL**: a pool; a payment's insert and its update (with their ledger rows)
//!   are one statement each (data-modifying CTEs), one round trip; workers claim jobs
//!   with `FOR UPDATE SKIP LOCKED` so several gateway replicas share them.
//!
//! Both backends insert a payment with `ON CONFLICT (merchant_id, partner_trans_id) DO
//! NOTHING`: a duplicate idempotency key writes nothing (no ledger rows either) and is
//! answered with the row that holds the key.
//!
//! Work on one payment (capture, void, refund, expiry, resolution) is serialized by a
//! *lease*: `lease_until` is taken with one conditional `UPDATE` and given back when the
//! result is saved. A crashed holder's lease simply runs out.
mod authentications;
mod captures;
mod checkouts;
mod customers;
mod merchants;
mod payments;
mod records;
mod refunds;
mod requests;
mod rows;
mod tokens;
pub(crate) mod webhooks;

pub use checkouts::{AttemptSlot, PaymentStart};
pub use paysys_db::StoreError;
pub use records::{
    AttemptCounts, AttemptOutcome, AttemptRecord, AuthenticationRecord, CaptureRecord, CaptureStatus, CheckoutRecord,
    CheckoutStatus, CustomerCard, LedgerKind, LedgerRow, MerchantRecord, PaymentFilter, PaymentRecord, RefundRecord,
    RefundStatus, RemovedToken, RequestClaim, Slot, WidgetSettings,
};
pub use webhooks::{
    DeliveryFilter, DeliveryStatus, EndpointHealth, EndpointStatus, WebhookAttemptRecord, WebhookDeliveryRecord,
    WebhookEndpointRecord,
};

use paysys_db::{Backend, Connections};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections to PostgreSQL.
const POSTGRES_CONNECTIONS: u32 = 16;
/// Read-only connections to a SQLite file.
const SQLITE_READERS: u32 = 4;

/// The gateway's database.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

impl Store {
    /// Connect to `url` (`sqlite::memory:` — a temporary file —, `sqlite:PATH` created
    /// if missing, or `postgres://…`). Does not migrate.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let connections = Connections { sqlite_readers: SQLITE_READERS, postgres: POSTGRES_CONNECTIONS };
        Ok(Store { backend: Backend::open(url, connections).await? })
    }

    /// Apply this backend's migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.backend.migrate(&SQLITE_MIGRATOR, &POSTGRES_MIGRATOR).await
    }
}
