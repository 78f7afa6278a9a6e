//! Webhooks: endpoints, the outbox of deliveries (written with the payment change that
//! causes them, see `payments.rs` `save_payment`), the workers' claims and every
//! attempt.

use super::rows::shift_placeholders;
use super::{Store, StoreError};
use crate::webhooks::{EventType, OutboxEvent};
use paysys_db::{in_transaction, on_pool, on_reader, Args, Backend, Bind, StoreRow};

/// An endpoint of a merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpointRecord {
    pub endpoint_id: String,
    pub merchant_id: String,
    pub url: String,
    /// The events it receives; `None`: every event.
    pub events: Option<Vec<EventType>>,
    pub description: Option<String>,
    /// Hex of nonce ‖ AES-256-GCM ciphertext of the `whsec_` secret (bound to the
    /// endpoint id, see `secrets.rs` `seal_labeled`).
    pub secret_sealed: String,
    /// During a rotation: the previous secret, signing too until `previous_secret_expires_at`.
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    pub status: EndpointStatus,
    /// Why it is disabled: `by_partner`, or `failing` (the gateway gave up on it).
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed.
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Whether an endpoint receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointStatus {
    Enabled,
    Disabled,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::Enabled => "enabled",
            EndpointStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<EndpointStatus> {
        [EndpointStatus::Enabled, EndpointStatus::Disabled].into_iter().find(|e| e.as_str() == s)
    }
}

/// One event for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDeliveryRecord {
    /// The `webhook-id`.
    pub event_id: String,
    pub endpoint_id: String,
    pub merchant_id: String,
    pub event_type: EventType,
    pub object_id: String,
    pub body: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_until: i64,
    pub delivered_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Due at `next_attempt_at`.
    Pending,
    Delivered,
    /// Every retry failed (a resend starts it again).
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Failed]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttemptRecord {
    pub event_id: String,
    pub endpoint_id: String,
    /// 1 for the first.
    pub attempt: i64,
    pub at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// `webhook.list`'s filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub merchant_id: String,
    pub event_type: Option<EventType>,
    pub status: Option<DeliveryStatus>,
    pub endpoint_id: Option<String>,
    pub object_id: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// A delivery due at `$1`: pending, its time come, not leased, to an enabled endpoint.
const DUE: &str = "status = 'pending' AND next_attempt_at <= $1 AND lease_until <= $1 AND endpoint_id IN \
     (SELECT endpoint_id FROM webhook_endpoints WHERE status = 'enabled')";

/// Lease one delivery (`$2`, `$3`) until `$1` if it is still due at `$4`.
const LEASE_IF_DUE: &str = "UPDATE webhook_deliveries SET lease_until = $1 WHERE event_id = $2 AND endpoint_id = $3 \
     AND status = 'pending' AND next_attempt_at <= $4 AND lease_until <= $4 AND endpoint_id IN \
     (SELECT endpoint_id FROM webhook_endpoints WHERE status = 'enabled')";

const ENDPOINT_COLUMNS: &str = "endpoint_id, merchant_id, url, events, description, secret_sealed, \
     previous_secret_sealed, previous_secret_expires_at, status, disabled_reason, failing_since, created_at, updated_at";

const DELIVERY_COLUMNS: &str = "event_id, endpoint_id, merchant_id, event_type, object_id, body, status, attempts, \
     next_attempt_at, lease_until, delivered_at, created_at, updated_at";

const ATTEMPT_COLUMNS: &str = "event_id, endpoint_id, attempt, at, status_code, latency_ms, error, response_excerpt";

/// Fan one outbox event out to every enabled endpoint of its merchant that takes its
/// type: nothing is written when there is none. An event already there (the same
/// change saved again) is left alone. Seven parameters ([`bind_outbox`]).
pub(crate) const OUTBOX_INSERT: &str = "INSERT INTO webhook_deliveries (event_id, endpoint_id, merchant_id, \
     event_type, object_id, body, status, attempts, next_attempt_at, lease_until, created_at, updated_at) \
     SELECT $1, endpoint_id, merchant_id, $2, $3, $4, 'pending', 0, $5, 0, $5, $5 FROM webhook_endpoints \
     WHERE merchant_id = $6 AND status = 'enabled' AND (events = '*' OR events LIKE $7) \
     ON CONFLICT (event_id, endpoint_id) DO NOTHING";

/// Bind [`OUTBOX_INSERT`]'s parameters; `like` is [`events_like`] of the event's type.
pub(crate) fn bind_outbox<'q, B: Bind<'q>>(b: B, e: &'q OutboxEvent, like: &'q str) -> B {
    b.text(&e.event_id)
        .text(e.event_type.as_str())
        .text(&e.object_id)
        .text(&e.body)
        .int(e.created_at)
        .text(&e.merchant_id)
        .text(like)
}

/// The `LIKE` pattern matching an `events` column that holds `t`.
pub(crate) fn events_like(t: EventType) -> String {
    format!("%,{},%", t.as_str())
}

/// PostgreSQL: `save` (a `WITH … SELECT 1` statement with `params` parameters) with the
/// fan-out of each of `events` as more data-modifying CTEs, still one statement.
pub(super) fn postgres_with_outbox(save: &str, params: usize, events: usize) -> String {
    let Some(head) = save.strip_suffix(" SELECT 1") else {
        return save.to_owned();
    };
    let mut sql = head.to_owned();
    for i in 0..events {
        sql.push_str(&format!(", w{i} AS ({})", shift_placeholders(OUTBOX_INSERT, params + 7 * i)));
    }
    sql.push_str(" SELECT 1");
    sql
}

fn events_column(events: &Option<Vec<EventType>>) -> String {
    match events {
        None => "*".to_owned(),
        Some(list) => format!(",{},", list.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(",")),
    }
}

fn parse_events_column(text: &str) -> Result<Option<Vec<EventType>>, StoreError> {
    if text == "*" {
        return Ok(None);
    }
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| EventType::parse(s).ok_or_else(|| StoreError::Corrupt(format!("webhook event {s:?}"))))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn endpoint_from_row(row: &impl StoreRow) -> Result<WebhookEndpointRecord, StoreError> {
    Ok(WebhookEndpointRecord {
        endpoint_id: row.text("endpoint_id")?,
        merchant_id: row.text("merchant_id")?,
        url: row.text("url")?,
        events: parse_events_column(&row.text("events")?)?,
        description: row.opt_text("description")?,
        secret_sealed: row.text("secret_sealed")?,
        previous_secret_sealed: row.opt_text("previous_secret_sealed")?,
        previous_secret_expires_at: row.opt_int("previous_secret_expires_at")?,
        status: row.parsed("status", EndpointStatus::parse)?,
        disabled_reason: row.opt_text("disabled_reason")?,
        failing_since: row.opt_int("failing_since")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

fn delivery_from_row(row: &impl StoreRow) -> Result<WebhookDeliveryRecord, StoreError> {
    Ok(WebhookDeliveryRecord {
        event_id: row.text("event_id")?,
        endpoint_id: row.text("endpoint_id")?,
        merchant_id: row.text("merchant_id")?,
        event_type: row.parsed("event_type", EventType::parse)?,
        object_id: row.text("object_id")?,
        body: row.text("body")?,
        status: row.parsed("status", DeliveryStatus::parse)?,
        attempts: row.int("attempts")?,
        next_attempt_at: row.int("next_attempt_at")?,
        lease_until: row.int("lease_until")?,
        delivered_at: row.opt_int("delivered_at")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

fn attempt_from_row(row: &impl StoreRow) -> Result<WebhookAttemptRecord, StoreError> {
    Ok(WebhookAttemptRecord {
        event_id: row.text("event_id")?,
        endpoint_id: row.text("endpoint_id")?,
        attempt: row.int("attempt")?,
        at: row.int("at")?,
        status_code: row.opt_int("status_code")?,
        latency_ms: row.int("latency_ms")?,
        error: row.opt_text("error")?,
        response_excerpt: row.opt_text("response_excerpt")?,
    })
}

/// What an attempt did to its endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointHealth {
    /// Delivered: the endpoint is healthy again.
    Succeeded,
    /// Failed; the endpoint is disabled if it has been failing since before `cutoff`.
    Failed { cutoff: i64 },
}

fn insert_attempt_sql() -> String {
    format!("INSERT INTO webhook_attempts ({ATTEMPT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
}

fn bind_attempt<'q, B: Bind<'q>>(b: B, a: &'q WebhookAttemptRecord) -> B {
    b.text(&a.event_id)
        .text(&a.endpoint_id)
        .int(a.attempt)
        .int(a.at)
        .opt_int(a.status_code)
        .int(a.latency_ms)
        .opt_text(a.error.as_deref())
        .opt_text(a.response_excerpt.as_deref())
}

const UPDATE_DELIVERY_STATE: &str = "UPDATE webhook_deliveries SET status = $1, attempts = $2, \
     next_attempt_at = $3, lease_until = 0, delivered_at = $4, updated_at = $5 WHERE event_id = $6 AND endpoint_id = $7";

fn bind_delivery_state<'q, B: Bind<'q>>(b: B, d: &'q WebhookDeliveryRecord) -> B {
    b.text(d.status.as_str())
        .int(d.attempts)
        .int(d.next_attempt_at)
        .opt_int(d.delivered_at)
        .int(d.updated_at)
        .text(&d.event_id)
        .text(&d.endpoint_id)
}

/// What a batch of attempts does to one endpoint: its last attempt decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HealthUpdate {
    /// Healthy again.
    Succeeded,
    /// Failing since `at` (unless since earlier); disabled if failing since before
    /// `cutoff`.
    Failed { at: i64, cutoff: i64 },
}

/// One statement of a [`HealthUpdate`]: its integer parameters after the endpoint id.
#[derive(Debug, Clone)]
struct HealthStep {
    endpoint_id: String,
    ints: Vec<i64>,
}

impl HealthStep {
    fn bind_to<'q, B: Bind<'q>>(&'q self, b: B) -> B {
        self.ints.iter().fold(b.text(&self.endpoint_id), |b, v| b.int(*v))
    }
}

const CLEAR_FAILING: &str =
    "UPDATE webhook_endpoints SET failing_since = NULL WHERE endpoint_id = $1 AND failing_since IS NOT NULL";
const MARK_FAILING: &str =
    "UPDATE webhook_endpoints SET failing_since = $2 WHERE endpoint_id = $1 AND failing_since IS NULL";
const DISABLE_FAILING: &str = "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = 'failing', \
     updated_at = $2 WHERE endpoint_id = $1 AND status = 'enabled' AND failing_since <= $3";

impl HealthUpdate {
    fn may_disable(self) -> bool {
        matches!(self, HealthUpdate::Failed { .. })
    }

    /// The statements, in order; the last one's changed rows tell a disabling.
    fn steps(self, endpoint_id: &str) -> Vec<(&'static str, HealthStep)> {
        let step = |ints: Vec<i64>| HealthStep { endpoint_id: endpoint_id.to_owned(), ints };
        match self {
            HealthUpdate::Succeeded => vec![(CLEAR_FAILING, step(vec![]))],
            HealthUpdate::Failed { at, cutoff } => {
                vec![(MARK_FAILING, step(vec![at])), (DISABLE_FAILING, step(vec![at, cutoff]))]
            }
        }
    }

    /// [`HealthUpdate::steps`] as the group committer's arguments.
    fn statements(self, endpoint_id: &str) -> (Vec<&'static str>, Vec<Args>) {
        self.steps(endpoint_id).into_iter().map(|(sql, step)| (sql, step.bind_to(Args::default()))).unzip()
    }
}

/// Each endpoint's health after a batch: its last attempt (by time) decides.
fn endpoint_health(
    attempts: &[(WebhookDeliveryRecord, WebhookAttemptRecord, EndpointHealth)],
) -> Vec<(String, HealthUpdate)> {
    let mut last: Vec<(String, i64, HealthUpdate)> = Vec::new();
    for (d, a, health) in attempts {
        let update = match health {
            EndpointHealth::Succeeded => HealthUpdate::Succeeded,
            EndpointHealth::Failed { cutoff } => HealthUpdate::Failed { at: a.at, cutoff: *cutoff },
        };
        match last.iter_mut().find(|(id, _, _)| *id == d.endpoint_id) {
            Some(entry) if a.at >= entry.1 => *entry = (d.endpoint_id.clone(), a.at, update),
            Some(_) => {}
            None => last.push((d.endpoint_id.clone(), a.at, update)),
        }
    }
    last.into_iter().map(|(id, _, update)| (id, update)).collect()
}

impl Store {
    pub async fn insert_webhook_endpoint(&self, e: &WebhookEndpointRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13)"
        );
        let events = events_column(&e.events);
        on_pool!(&self.backend, |pool| {
            sqlx::query(&sql)
                .bind(&e.endpoint_id)
                .bind(&e.merchant_id)
                .bind(&e.url)
                .bind(&events)
                .bind(&e.description)
                .bind(&e.secret_sealed)
                .bind(&e.previous_secret_sealed)
                .bind(e.previous_secret_expires_at)
                .bind(e.status.as_str())
                .bind(&e.disabled_reason)
                .bind(e.failing_since)
                .bind(e.created_at)
                .bind(e.updated_at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// A merchant's endpoints, oldest first.
    pub async fn webhook_endpoints(&self, merchant_id: &str) -> Result<Vec<WebhookEndpointRecord>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE merchant_id = $1 ORDER BY created_at, endpoint_id"
        );
        on_reader!(&self.backend, |pool| {
            let rows = sqlx::query(&sql).bind(merchant_id).fetch_all(pool).await?;
            rows.iter().map(endpoint_from_row).collect()
        })
    }

    /// One endpoint (of any merchant: the callers check the owner).
    pub async fn webhook_endpoint(&self, endpoint_id: &str) -> Result<Option<WebhookEndpointRecord>, StoreError> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE endpoint_id = $1");
        on_reader!(&self.backend, |pool| {
            sqlx::query(&sql).bind(endpoint_id).fetch_optional(pool).await?.map(|r| endpoint_from_row(&r)).transpose()
        })
    }

    /// Write an endpoint's changeable fields; `false` when it is gone.
    pub async fn update_webhook_endpoint(&self, e: &WebhookEndpointRecord) -> Result<bool, StoreError> {
        let events = events_column(&e.events);
        on_pool!(&self.backend, |pool| {
            let done = sqlx::query(
                "UPDATE webhook_endpoints SET url = $1, events = $2, description = $3, secret_sealed = $4, \
                 previous_secret_sealed = $5, previous_secret_expires_at = $6, status = $7, disabled_reason = $8, \
                 failing_since = $9, updated_at = $10 WHERE endpoint_id = $11 AND merchant_id = $12",
            )
            .bind(&e.url)
            .bind(&events)
            .bind(&e.description)
            .bind(&e.secret_sealed)
            .bind(&e.previous_secret_sealed)
            .bind(e.previous_secret_expires_at)
            .bind(e.status.as_str())
            .bind(&e.disabled_reason)
            .bind(e.failing_since)
            .bind(e.updated_at)
            .bind(&e.endpoint_id)
            .bind(&e.merchant_id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Delete an endpoint with its deliveries and their attempts; `false` when it was
    /// not the merchant's.
    pub async fn delete_webhook_endpoint(&self, merchant_id: &str, endpoint_id: &str) -> Result<bool, StoreError> {
        in_transaction!(&self.backend, |tx, _lock| {
            let done = sqlx::query("DELETE FROM webhook_endpoints WHERE endpoint_id = $1 AND merchant_id = $2")
                .bind(endpoint_id)
                .bind(merchant_id)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM webhook_attempts WHERE endpoint_id = $1")
                .bind(endpoint_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1")
                .bind(endpoint_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// A merchant's deliveries, newest first.
    pub async fn webhook_deliveries(&self, f: &DeliveryFilter) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE merchant_id = $1 \
             AND ($2 IS NULL OR event_type = $2) AND ($3 IS NULL OR status = $3) \
             AND ($4 IS NULL OR endpoint_id = $4) AND ($5 IS NULL OR object_id = $5) \
             ORDER BY created_at DESC, event_id, endpoint_id LIMIT $6 OFFSET $7"
        );
        on_reader!(&self.backend, |pool| {
            let rows = sqlx::query(&sql)
                .bind(&f.merchant_id)
                .bind(f.event_type.map(EventType::as_str))
                .bind(f.status.map(DeliveryStatus::as_str))
                .bind(f.endpoint_id.as_deref())
                .bind(f.object_id.as_deref())
                .bind(f.limit)
                .bind(f.offset)
                .fetch_all(pool)
                .await?;
            rows.iter().map(delivery_from_row).collect()
        })
    }

    /// The attempts of one delivery, oldest first.
    pub async fn webhook_attempts(
        &self,
        event_id: &str,
        endpoint_id: &str,
    ) -> Result<Vec<WebhookAttemptRecord>, StoreError> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE event_id = $1 AND endpoint_id = $2 ORDER BY attempt"
        );
        on_reader!(&self.backend, |pool| {
            let rows = sqlx::query(&sql).bind(event_id).bind(endpoint_id).fetch_all(pool).await?;
            rows.iter().map(attempt_from_row).collect()
        })
    }

    /// Make a merchant's delivery of `event_id` (to one endpoint, or to all) due now
    /// again, whatever its status; the number of deliveries.
    pub async fn resend_webhook(
        &self,
        merchant_id: &str,
        event_id: &str,
        endpoint_id: Option<&str>,
        now: i64,
    ) -> Result<u64, StoreError> {
        on_pool!(&self.backend, |pool| {
            let done = sqlx::query(
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, updated_at = $1 \
                 WHERE merchant_id = $2 AND event_id = $3 AND ($4 IS NULL OR endpoint_id = $4)",
            )
            .bind(now)
            .bind(merchant_id)
            .bind(event_id)
            .bind(endpoint_id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Whether any delivery is due at `now` (a read: an idle worker takes no write lock).
    pub async fn webhooks_due(&self, now: i64) -> Result<bool, StoreError> {
        on_reader!(&self.backend, |pool| {
            let sql =
                format!("SELECT count(*) AS n FROM (SELECT 1 FROM webhook_deliveries WHERE {DUE} LIMIT 1) AS due");
            let row = sqlx::query(&sql).bind(now).fetch_one(pool).await?;
            Ok(row.int("n")? > 0)
        })
    }

    /// Claim up to `limit` due deliveries of enabled endpoints until `until`. On
    /// PostgreSQL rows another replica is claiming are skipped (`FOR UPDATE SKIP
    /// LOCKED`); the lease keeps them from every other worker until it runs out.
    ///
    /// On SQLite (one process) the due rows are read without the write lock and the
    /// leases taken in one unit of the group committer, committed with the payments'
    /// writes: a transaction of its own would hold the write lock, and every payment
    /// behind it, across four round trips to sqlx's writer thread. Each lease is taken
    /// only if the row is still due, so a row leased or changed since the read is left
    /// out.
    pub async fn claim_webhook_deliveries(
        &self,
        now: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(sqlite) => {
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {DUE} ORDER BY next_attempt_at LIMIT $2"
                );
                let rows = sqlx::query(&sql).bind(now).bind(limit).fetch_all(&sqlite.db.reader).await?;
                let due = rows.iter().map(delivery_from_row).collect::<Result<Vec<_>, _>>()?;
                if due.is_empty() {
                    return Ok(due);
                }
                let keys: Vec<(String, String)> =
                    due.iter().map(|d| (d.event_id.clone(), d.endpoint_id.clone())).collect();
                let taken = sqlite
                    .group
                    .write(move |conn| -> Result<Vec<bool>, StoreError> {
                        keys.into_iter()
                            .map(|(event_id, endpoint_id)| {
                                let args = Args::default().bind(until).bind(event_id).bind(endpoint_id).bind(now);
                                Ok(args.execute(conn, LEASE_IF_DUE)? == 1)
                            })
                            .collect()
                    })
                    .await?;
                Ok(due
                    .into_iter()
                    .zip(taken)
                    .filter(|(_, taken)| *taken)
                    .map(|(mut d, _)| {
                        d.lease_until = until;
                        d
                    })
                    .collect())
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {DUE} \
                     ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED"
                );
                let rows = sqlx::query(&sql).bind(now).bind(limit).fetch_all(&mut *tx).await?;
                let mut claimed = rows.iter().map(delivery_from_row).collect::<Result<Vec<_>, _>>()?;
                if claimed.is_empty() {
                    return Ok(claimed);
                }
                // One statement for the whole claim.
                let keys: Vec<String> =
                    (0..claimed.len()).map(|i| format!("(${}, ${})", 2 * i + 2, 2 * i + 3)).collect();
                let sql = format!(
                    "UPDATE webhook_deliveries SET lease_until = $1 WHERE (event_id, endpoint_id) IN (VALUES {})",
                    keys.join(", ")
                );
                let query =
                    claimed.iter().fold(sqlx::query(&sql).bind(until), |q, d| q.bind(&d.event_id).bind(&d.endpoint_id));
                query.execute(&mut *tx).await?;
                tx.commit().await?;
                for d in &mut claimed {
                    d.lease_until = until;
                }
                Ok(claimed)
            }
        }
    }

    /// Record finished attempts with each delivery's new state (its lease given back)
    /// and their endpoints' health, in one transaction: on SQLite a unit of the group
    /// committer (committed with the payments' writes), on PostgreSQL one transaction.
    /// The endpoints disabled now (failing since before their `cutoff`).
    pub async fn record_webhook_attempts(
        &self,
        attempts: &[(WebhookDeliveryRecord, WebhookAttemptRecord, EndpointHealth)],
    ) -> Result<Vec<String>, StoreError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let health = endpoint_health(attempts);
        match &self.backend {
            Backend::Sqlite(sqlite) => {
                let rows: Vec<(Args, Args)> = attempts
                    .iter()
                    .map(|(d, a, _)| (bind_attempt(Args::default(), a), bind_delivery_state(Args::default(), d)))
                    .collect();
                let health: Vec<(String, HealthUpdate)> = health;
                sqlite
                    .group
                    .write(move |conn| -> Result<Vec<String>, StoreError> {
                        for (attempt, delivery) in rows {
                            attempt.execute(conn, &insert_attempt_sql())?;
                            delivery.execute(conn, UPDATE_DELIVERY_STATE)?;
                        }
                        let mut disabled = Vec::new();
                        for (endpoint_id, update) in health {
                            let (sql, args) = update.statements(&endpoint_id);
                            let mut changed = 0;
                            for (sql, args) in sql.into_iter().zip(args) {
                                changed = args.execute(conn, sql)?;
                            }
                            if update.may_disable() && changed == 1 {
                                disabled.push(endpoint_id);
                            }
                        }
                        Ok(disabled)
                    })
                    .await
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for (d, a, _) in attempts {
                    bind_attempt(sqlx::query(&insert_attempt_sql()), a).execute(&mut *tx).await?;
                    bind_delivery_state(sqlx::query(UPDATE_DELIVERY_STATE), d).execute(&mut *tx).await?;
                }
                let mut disabled = Vec::new();
                for (endpoint_id, update) in &health {
                    let mut changed = 0;
                    for (sql, step) in update.steps(endpoint_id) {
                        changed = step.bind_to(sqlx::query(sql)).execute(&mut *tx).await?.rows_affected();
                    }
                    if update.may_disable() && changed == 1 {
                        disabled.push(endpoint_id.clone());
                    }
                }
                tx.commit().await?;
                Ok(disabled)
            }
        }
    }

    /// Deliveries waiting to be sent (the outbox's size), of every merchant.
    pub async fn pending_webhook_count(&self) -> Result<i64, StoreError> {
        on_reader!(&self.backend, |pool| {
            let row = sqlx::query("SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending'")
                .fetch_one(pool)
                .await?;
            Ok(row.int("n")?)
        })
    }
}
