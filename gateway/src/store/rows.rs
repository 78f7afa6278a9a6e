//! The row boundary: column lists, statements shared by both backends, the binding of
//! each record ([`Bind`]: an sqlx query or a group-commit unit's [`Args`]) and the
//! parsing of each row back into its record.

use super::records::{
    AttemptOutcome, AttemptRecord, AuthenticationRecord, CaptureRecord, CaptureStatus, CheckoutRecord, CheckoutStatus,
    CustomerCard, LedgerKind, LedgerRow, PaymentRecord, RefundRecord, RefundStatus,
};
use super::StoreError;
use crate::payments::CaptureMethod;
use crate::state::{AfterExpired, PaymentStatus};
use crate::three_ds::ThreeDsMode;
use paysys_db::{Args, Bind, StoreRow};

/// The ledger columns a transition writes (`seq` is the database's).
pub(super) const LEDGER_INSERT_COLUMNS: &str =
    "transaction_id, at, kind, from_status, to_status, amount, currency, refund_id";

/// `INSERT INTO ledger … VALUES (…), (…)` for `n` rows of eight columns.
pub(super) fn ledger_insert_sql(n: usize) -> String {
    let mut sql = format!("INSERT INTO ledger ({LEDGER_INSERT_COLUMNS}) VALUES ");
    for row in 0..n {
        let b = row * 8;
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8
        ));
    }
    sql
}

/// Insert a payment unless its `(merchant_id, partner_trans_id)` is taken.
pub(super) fn insert_payment_sql() -> String {
    format!(
        "INSERT INTO payments ({PAYMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30) \
         ON CONFLICT (merchant_id, partner_trans_id) DO NOTHING"
    )
}

pub(super) const PAYMENT_COLUMNS: &str =
    "transaction_id, merchant_id, partner_trans_id, request_digest, card_token, amount, \
     currency, capture_method, hold_ttl_sec, after_expired, description, client_ip, return_url, status, \
     captured_amount, refunded_amount, acquirer_ref, auth_code, rrn, masked_card, decline_code, error_code, \
     hold_expires_at, first_response, lease_until, needs_sync, three_ds, three_ds_expires_at, created_at, updated_at";

pub(super) const AUTHENTICATION_COLUMNS: &str =
    "three_ds_server_trans_id, merchant_id, card_token, transaction_id, method_url, \
     method_completed_at, message_version, ds_trans_id, acs_trans_id, acs_url, challenge_id, trans_status, \
     created_at, updated_at";

pub(super) const REFUND_COLUMNS: &str =
    "refund_id, transaction_id, merchant_id, partner_refund_id, request_digest, amount, \
     currency, status, rrn, error_code, first_response, created_at, updated_at";

pub(super) const CAPTURE_COLUMNS: &str = "merchant_id, partner_capture_id, transaction_id, request_digest, status, \
     first_response, created_at, updated_at";

pub(super) const LEDGER_COLUMNS: &str =
    "seq, transaction_id, at, kind, from_status, to_status, amount, currency, refund_id";

pub(super) const UPDATE_PAYMENT: &str = "UPDATE payments SET status = $1, captured_amount = $2, refunded_amount = $3, \
     acquirer_ref = $4, auth_code = $5, rrn = $6, masked_card = $7, decline_code = $8, error_code = $9, \
     hold_expires_at = $10, first_response = $11, lease_until = $12, needs_sync = $13, three_ds = $14, \
     three_ds_expires_at = $15, updated_at = $16 WHERE transaction_id = $17";

pub(super) const UPDATE_AUTHENTICATION: &str = "UPDATE authentications SET message_version = $1, ds_trans_id = $2, \
     acs_trans_id = $3, acs_url = $4, challenge_id = $5, trans_status = $6, updated_at = $7 \
     WHERE three_ds_server_trans_id = $8";

pub(super) const UPDATE_REFUND: &str =
    "UPDATE refunds SET status = $1, rrn = $2, error_code = $3, first_response = $4, \
     updated_at = $5 WHERE refund_id = $6";

/// Bind every column of a payment insert, in [`PAYMENT_COLUMNS`] order.
pub(super) fn bind_payment<'q, B: Bind<'q>>(b: B, p: &'q PaymentRecord) -> B {
    b.text(&p.transaction_id)
        .text(&p.merchant_id)
        .text(&p.partner_trans_id)
        .text(&p.request_digest)
        .text(&p.card_token)
        .int(p.amount)
        .text(&p.currency)
        .text(p.capture_method.as_str())
        .int(p.hold_ttl_sec)
        .text(p.after_expired.as_str())
        .opt_text(p.description.as_deref())
        .opt_text(p.client_ip.as_deref())
        .opt_text(p.return_url.as_deref())
        .text(p.status.as_str())
        .int(p.captured_amount)
        .int(p.refunded_amount)
        .opt_text(p.acquirer_ref.as_deref())
        .opt_text(p.auth_code.as_deref())
        .opt_text(p.rrn.as_deref())
        .opt_text(p.masked_card.as_deref())
        .opt_text(p.decline_code.as_deref())
        .opt_int(p.error_code)
        .opt_int(p.hold_expires_at)
        .opt_text(p.first_response.as_deref())
        .int(p.lease_until)
        .int(i64::from(p.needs_sync))
        .opt_text(p.three_ds.as_deref())
        .opt_int(p.three_ds_expires_at)
        .int(p.created_at)
        .int(p.updated_at)
}

/// Bind the parameters of [`UPDATE_PAYMENT`].
pub(super) fn bind_payment_update<'q, B: Bind<'q>>(b: B, p: &'q PaymentRecord) -> B {
    b.text(p.status.as_str())
        .int(p.captured_amount)
        .int(p.refunded_amount)
        .opt_text(p.acquirer_ref.as_deref())
        .opt_text(p.auth_code.as_deref())
        .opt_text(p.rrn.as_deref())
        .opt_text(p.masked_card.as_deref())
        .opt_text(p.decline_code.as_deref())
        .opt_int(p.error_code)
        .opt_int(p.hold_expires_at)
        .opt_text(p.first_response.as_deref())
        .int(p.lease_until)
        .int(i64::from(p.needs_sync))
        .opt_text(p.three_ds.as_deref())
        .opt_int(p.three_ds_expires_at)
        .int(p.updated_at)
        .text(&p.transaction_id)
}

/// Bind every column of an authentication insert, in [`AUTHENTICATION_COLUMNS`] order.
pub(super) fn bind_authentication<'q, B: Bind<'q>>(b: B, a: &'q AuthenticationRecord) -> B {
    b.text(&a.three_ds_server_trans_id)
        .text(&a.merchant_id)
        .text(&a.card_token)
        .opt_text(a.transaction_id.as_deref())
        .opt_text(a.method_url.as_deref())
        .opt_int(a.method_completed_at)
        .opt_text(a.message_version.as_deref())
        .opt_text(a.ds_trans_id.as_deref())
        .opt_text(a.acs_trans_id.as_deref())
        .opt_text(a.acs_url.as_deref())
        .opt_text(a.challenge_id.as_deref())
        .opt_text(a.trans_status.as_deref())
        .int(a.created_at)
        .int(a.updated_at)
}

/// Bind the parameters of [`UPDATE_AUTHENTICATION`].
pub(super) fn bind_authentication_update<'q, B: Bind<'q>>(b: B, a: &'q AuthenticationRecord) -> B {
    b.opt_text(a.message_version.as_deref())
        .opt_text(a.ds_trans_id.as_deref())
        .opt_text(a.acs_trans_id.as_deref())
        .opt_text(a.acs_url.as_deref())
        .opt_text(a.challenge_id.as_deref())
        .opt_text(a.trans_status.as_deref())
        .int(a.updated_at)
        .text(&a.three_ds_server_trans_id)
}

/// Bind the parameters of [`UPDATE_REFUND`].
pub(super) fn bind_refund_update<'q, B: Bind<'q>>(b: B, r: &'q RefundRecord) -> B {
    b.text(r.status.as_str())
        .opt_text(r.rrn.as_deref())
        .opt_int(r.error_code)
        .opt_text(r.first_response.as_deref())
        .int(r.updated_at)
        .text(&r.refund_id)
}

/// Bind one ledger row, in [`LEDGER_INSERT_COLUMNS`] order.
pub(super) fn bind_ledger<'q, B: Bind<'q>>(b: B, row: &'q LedgerRow) -> B {
    b.text(&row.transaction_id)
        .int(row.at)
        .text(row.kind.as_str())
        .text(&row.from_status)
        .text(&row.to_status)
        .int(row.amount)
        .text(&row.currency)
        .opt_text(row.refund_id.as_deref())
}

/// Bind every column of a refund insert, in [`REFUND_COLUMNS`] order.
pub(super) fn bind_refund<'q, B: Bind<'q>>(b: B, r: &'q RefundRecord) -> B {
    b.text(&r.refund_id)
        .text(&r.transaction_id)
        .text(&r.merchant_id)
        .text(&r.partner_refund_id)
        .text(&r.request_digest)
        .int(r.amount)
        .text(&r.currency)
        .text(r.status.as_str())
        .opt_text(r.rrn.as_deref())
        .opt_int(r.error_code)
        .opt_text(r.first_response.as_deref())
        .int(r.created_at)
        .int(r.updated_at)
}

/// `sql` with every placeholder `$n` renumbered `$(n + offset)`, to follow another
/// statement's parameters in one combined statement.
pub(super) fn shift_placeholders(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '$' {
            let mut n = 0usize;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n * 10 + d as usize;
                chars.next();
            }
            out.push_str(&(n + offset).to_string());
        }
    }
    out
}

/// PostgreSQL: the payment insert and its ledger rows (parameters after the payment's
/// 30) as one statement; it returns 1 when the payment was inserted, 0 when its key was
/// taken (then no ledger row is written either).
pub(super) fn postgres_insert_payment_sql(ledger_rows: usize) -> String {
    let insert = insert_payment_sql();
    if ledger_rows == 0 {
        return format!("WITH p AS ({insert} RETURNING 1) SELECT count(*) FROM p");
    }
    let values = shift_placeholders(&ledger_insert_sql(ledger_rows), 30);
    let values = values.split_once("VALUES ").map_or("", |(_, v)| v);
    format!(
        "WITH p AS ({insert} RETURNING 1), \
         l AS (INSERT INTO ledger ({LEDGER_INSERT_COLUMNS}) SELECT * FROM (VALUES {values}) \
         AS v ({LEDGER_INSERT_COLUMNS}) WHERE EXISTS (SELECT 1 FROM p)) \
         SELECT count(*) FROM p"
    )
}

/// PostgreSQL: the payment update (17 parameters), its ledger rows and a refund's
/// update as one statement.
pub(super) fn postgres_save_payment_sql(ledger_rows: usize, refund: bool) -> String {
    let mut parts = vec![format!("u AS ({UPDATE_PAYMENT})")];
    let mut next = 17;
    if ledger_rows > 0 {
        parts.push(format!("l AS ({})", shift_placeholders(&ledger_insert_sql(ledger_rows), next)));
        next += 8 * ledger_rows;
    }
    if refund {
        parts.push(format!("r AS ({})", shift_placeholders(UPDATE_REFUND, next)));
    }
    format!("WITH {} SELECT 1", parts.join(", "))
}

/// The multi-row ledger insert of `rows` for the group committer (`None`: no rows).
pub(super) fn ledger_args(rows: &[LedgerRow]) -> Option<(String, Args)> {
    if rows.is_empty() {
        return None;
    }
    let args = rows.iter().fold(Args::default(), bind_ledger);
    Some((ledger_insert_sql(rows.len()), args))
}

pub(super) fn payment_from_row(row: &impl StoreRow) -> Result<PaymentRecord, StoreError> {
    Ok(PaymentRecord {
        transaction_id: row.text("transaction_id")?,
        merchant_id: row.text("merchant_id")?,
        partner_trans_id: row.text("partner_trans_id")?,
        request_digest: row.text("request_digest")?,
        card_token: row.text("card_token")?,
        amount: row.int("amount")?,
        currency: row.text("currency")?,
        capture_method: row.parsed("capture_method", CaptureMethod::parse)?,
        hold_ttl_sec: row.int("hold_ttl_sec")?,
        after_expired: row.parsed("after_expired", AfterExpired::parse)?,
        description: row.opt_text("description")?,
        client_ip: row.opt_text("client_ip")?,
        return_url: row.opt_text("return_url")?,
        status: row.parsed("status", PaymentStatus::parse)?,
        captured_amount: row.int("captured_amount")?,
        refunded_amount: row.int("refunded_amount")?,
        acquirer_ref: row.opt_text("acquirer_ref")?,
        auth_code: row.opt_text("auth_code")?,
        rrn: row.opt_text("rrn")?,
        masked_card: row.opt_text("masked_card")?,
        decline_code: row.opt_text("decline_code")?,
        error_code: row.opt_int("error_code")?,
        hold_expires_at: row.opt_int("hold_expires_at")?,
        first_response: row.opt_text("first_response")?,
        lease_until: row.int("lease_until")?,
        needs_sync: row.int("needs_sync")? != 0,
        three_ds: row.opt_text("three_ds")?,
        three_ds_expires_at: row.opt_int("three_ds_expires_at")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(super) fn authentication_from_row(row: &impl StoreRow) -> Result<AuthenticationRecord, StoreError> {
    Ok(AuthenticationRecord {
        three_ds_server_trans_id: row.text("three_ds_server_trans_id")?,
        merchant_id: row.text("merchant_id")?,
        card_token: row.text("card_token")?,
        transaction_id: row.opt_text("transaction_id")?,
        method_url: row.opt_text("method_url")?,
        method_completed_at: row.opt_int("method_completed_at")?,
        message_version: row.opt_text("message_version")?,
        ds_trans_id: row.opt_text("ds_trans_id")?,
        acs_trans_id: row.opt_text("acs_trans_id")?,
        acs_url: row.opt_text("acs_url")?,
        challenge_id: row.opt_text("challenge_id")?,
        trans_status: row.opt_text("trans_status")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(super) fn refund_from_row(row: &impl StoreRow) -> Result<RefundRecord, StoreError> {
    Ok(RefundRecord {
        refund_id: row.text("refund_id")?,
        transaction_id: row.text("transaction_id")?,
        merchant_id: row.text("merchant_id")?,
        partner_refund_id: row.text("partner_refund_id")?,
        request_digest: row.text("request_digest")?,
        amount: row.int("amount")?,
        currency: row.text("currency")?,
        status: row.parsed("status", RefundStatus::parse)?,
        rrn: row.opt_text("rrn")?,
        error_code: row.opt_int("error_code")?,
        first_response: row.opt_text("first_response")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(super) fn capture_from_row(row: &impl StoreRow) -> Result<CaptureRecord, StoreError> {
    Ok(CaptureRecord {
        merchant_id: row.text("merchant_id")?,
        partner_capture_id: row.text("partner_capture_id")?,
        transaction_id: row.text("transaction_id")?,
        request_digest: row.text("request_digest")?,
        status: row.parsed("status", CaptureStatus::parse)?,
        first_response: row.opt_text("first_response")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(super) fn ledger_from_row(row: &impl StoreRow) -> Result<LedgerRow, StoreError> {
    Ok(LedgerRow {
        seq: row.int("seq")?,
        transaction_id: row.text("transaction_id")?,
        at: row.int("at")?,
        kind: row.parsed("kind", LedgerKind::parse)?,
        from_status: row.text("from_status")?,
        to_status: row.text("to_status")?,
        amount: row.int("amount")?,
        currency: row.text("currency")?,
        refund_id: row.opt_text("refund_id")?,
    })
}

pub(super) const CHECKOUT_COLUMNS: &str = "checkout_id, merchant_id, partner_trans_id, request_digest, amount, \
     currency, description, return_url, cancel_url, capture_method, hold_ttl_sec, after_expired, three_ds, language, \
     expires_at, customer_id, save_card, status, client_secret_hash, transaction_id, attempts, created_at, updated_at";

pub(super) const ATTEMPT_COLUMNS: &str = "attempt_id, checkout_id, merchant_id, number, nonce, origin, client_ip, \
     created_at, expires_at, used_at, transaction_id, outcome, finished_at, fingerprint";

pub(super) const CUSTOMER_CARD_COLUMNS: &str =
    "merchant_id, customer_id, token, fingerprint, brand, bin, last4, exp_month, exp_year, created_at";

/// Bind every column of a checkout insert, in [`CHECKOUT_COLUMNS`] order.
pub(super) fn bind_checkout<'q, B: Bind<'q>>(b: B, c: &'q CheckoutRecord) -> B {
    b.text(&c.checkout_id)
        .text(&c.merchant_id)
        .text(&c.partner_trans_id)
        .text(&c.request_digest)
        .int(c.amount)
        .text(&c.currency)
        .opt_text(c.description.as_deref())
        .text(&c.return_url)
        .opt_text(c.cancel_url.as_deref())
        .text(c.capture_method.as_str())
        .int(c.hold_ttl_sec)
        .text(c.after_expired.as_str())
        .text(c.three_ds.as_str())
        .text(&c.language)
        .int(c.expires_at)
        .opt_text(c.customer_id.as_deref())
        .int(i64::from(c.save_card))
        .text(c.status.as_str())
        .text(&c.client_secret_hash)
        .opt_text(c.transaction_id.as_deref())
        .int(c.attempts)
        .int(c.created_at)
        .int(c.updated_at)
}

pub(super) fn checkout_from_row(row: &impl StoreRow) -> Result<CheckoutRecord, StoreError> {
    Ok(CheckoutRecord {
        checkout_id: row.text("checkout_id")?,
        merchant_id: row.text("merchant_id")?,
        partner_trans_id: row.text("partner_trans_id")?,
        request_digest: row.text("request_digest")?,
        amount: row.int("amount")?,
        currency: row.text("currency")?,
        description: row.opt_text("description")?,
        return_url: row.text("return_url")?,
        cancel_url: row.opt_text("cancel_url")?,
        capture_method: row.parsed("capture_method", CaptureMethod::parse)?,
        hold_ttl_sec: row.int("hold_ttl_sec")?,
        after_expired: row.parsed("after_expired", AfterExpired::parse)?,
        three_ds: row.parsed("three_ds", ThreeDsMode::parse)?,
        language: row.text("language")?,
        expires_at: row.int("expires_at")?,
        customer_id: row.opt_text("customer_id")?,
        save_card: row.int("save_card")? != 0,
        status: row.parsed("status", CheckoutStatus::parse)?,
        client_secret_hash: row.text("client_secret_hash")?,
        transaction_id: row.opt_text("transaction_id")?,
        attempts: row.int("attempts")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

/// Bind every column of an attempt insert, in [`ATTEMPT_COLUMNS`] order.
pub(super) fn bind_attempt<'q, B: Bind<'q>>(b: B, a: &'q AttemptRecord) -> B {
    b.text(&a.attempt_id)
        .text(&a.checkout_id)
        .text(&a.merchant_id)
        .int(a.number)
        .text(&a.nonce)
        .text(&a.origin)
        .opt_text(a.client_ip.as_deref())
        .int(a.created_at)
        .int(a.expires_at)
        .opt_int(a.used_at)
        .opt_text(a.transaction_id.as_deref())
        .opt_text(a.outcome.map(AttemptOutcome::as_str))
        .opt_int(a.finished_at)
        .opt_text(a.fingerprint.as_deref())
}

pub(super) fn attempt_from_row(row: &impl StoreRow) -> Result<AttemptRecord, StoreError> {
    let outcome = row.opt_text("outcome")?;
    Ok(AttemptRecord {
        attempt_id: row.text("attempt_id")?,
        checkout_id: row.text("checkout_id")?,
        merchant_id: row.text("merchant_id")?,
        number: row.int("number")?,
        nonce: row.text("nonce")?,
        origin: row.text("origin")?,
        client_ip: row.opt_text("client_ip")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        used_at: row.opt_int("used_at")?,
        transaction_id: row.opt_text("transaction_id")?,
        outcome: outcome
            .map(|o| AttemptOutcome::parse(&o).ok_or_else(|| StoreError::Corrupt(format!("attempt outcome {o:?}"))))
            .transpose()?,
        finished_at: row.opt_int("finished_at")?,
        fingerprint: row.opt_text("fingerprint")?,
    })
}

/// Bind every column of a saved card, in [`CUSTOMER_CARD_COLUMNS`] order.
pub(super) fn bind_customer_card<'q, B: Bind<'q>>(b: B, c: &'q CustomerCard) -> B {
    b.text(&c.merchant_id)
        .text(&c.customer_id)
        .text(&c.token)
        .text(&c.fingerprint)
        .text(&c.brand)
        .text(&c.bin)
        .text(&c.last4)
        .int(c.exp_month)
        .int(c.exp_year)
        .int(c.created_at)
}

pub(super) fn customer_card_from_row(row: &impl StoreRow) -> Result<CustomerCard, StoreError> {
    Ok(CustomerCard {
        merchant_id: row.text("merchant_id")?,
        customer_id: row.text("customer_id")?,
        token: row.text("token")?,
        fingerprint: row.text("fingerprint")?,
        brand: row.text("brand")?,
        bin: row.text("bin")?,
        last4: row.text("last4")?,
        exp_month: row.int("exp_month")?,
        exp_year: row.int("exp_year")?,
        created_at: row.int("created_at")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_stored_value_this_code_never_writes_is_corrupt_not_a_default() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        let row = sqlx::query("SELECT 'manual' AS capture_method, 'later' AS after_expired, 'expire' AS kind")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(row.parsed("capture_method", CaptureMethod::parse).unwrap(), CaptureMethod::Manual);
        let after_expired = row.parsed("after_expired", AfterExpired::parse);
        assert!(
            matches!(after_expired, Err(StoreError::Corrupt(ref m)) if m.contains("after_expired")),
            "{after_expired:?}"
        );
        assert!(matches!(row.parsed("kind", LedgerKind::parse), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn ledger_kinds_read_back_as_written() {
        for kind in LedgerKind::ALL {
            assert_eq!(LedgerKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn placeholders_shift_past_the_first_statement() {
        assert_eq!(shift_placeholders("a = $1, b = $12 WHERE c = $3", 17), "a = $18, b = $29 WHERE c = $20");
        assert_eq!(shift_placeholders("no placeholders", 5), "no placeholders");
    }

    #[test]
    fn the_postgres_statements_number_their_parameters_in_binding_order() {
        let insert = postgres_insert_payment_sql(2);
        assert!(insert.contains("$30)") && insert.contains("($31, $32,") && insert.ends_with("SELECT count(*) FROM p"));
        assert!(insert.contains("$46)") && !insert.contains("$47"), "{insert}");
        let save = postgres_save_payment_sql(1, true);
        assert!(save.contains("transaction_id = $17") && save.contains("($18, $19,"), "{save}");
        assert!(save.contains("refund_id = $31") && !save.contains("$32"), "{save}");
    }
}
