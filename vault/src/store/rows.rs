//! Column lists and row decoding shared by both backends: the two schemas have the same
//! columns in the same order, only the SQL types differ.

use super::{
    AuditEvent, AuditRecord, CardRecord, CvcRecord, ExpiredCard, KeyFormat, KeyKind, KeyRequest, ReencryptJob,
    StoredKey,
};
use sqlx::{ColumnIndex, Decode, Row, Type};

// The column lists are macros, not `const`s, so that the statements naming them are
// put together by `concat!` at compile time: no statement is formatted per call.

/// The columns of a `keys` row, in [`key_from_row`]'s order.
macro_rules! key_columns {
    () => {
        "kind, version, wrapped_by, wrapped, kcv, state, created_at, format"
    };
}

/// The columns of a `cards` row, in [`card_from_row`]'s order.
macro_rules! card_columns {
    () => {
        "token, merchant_id, fingerprint, brand, bin, last4, exp_month, exp_year, dek_version, ciphertext, \
         created_at, expires_at, checkout_id"
    };
}

/// The columns of a `spent_grants` row, as written.
macro_rules! grant_columns {
    () => {
        "nonce, merchant_id, checkout_id, expires_at"
    };
}

/// The columns of a `cvcs` row, in [`cvc_from_row`]'s order.
macro_rules! cvc_columns {
    () => {
        "token, dek_version, ciphertext, expires_at"
    };
}

/// The columns of an `audit_log` row, in [`audit_from_row`]'s order.
macro_rules! audit_columns {
    () => {
        "seq, at, request_id, principal, operation, merchant_id, token, decision, outcome, key_version, prev_mac, mac"
    };
}

/// The columns of a `key_requests` row, in [`request_from_row`]'s order.
macro_rules! request_columns {
    () => {
        "id, action, kind, version, force, requested_by, requested_at, expires_at, state, approved_by, decided_at, \
         result"
    };
}

/// The columns of a `reencrypt_jobs` row, in [`job_from_row`]'s order.
macro_rules! job_columns {
    () => {
        "id, from_version, to_version, state, total, done, cursor, created_at, updated_at, finished_at, error"
    };
}

pub(super) use {audit_columns, card_columns, cvc_columns, grant_columns, job_columns, key_columns, request_columns};

/// Decode column `i` of `row`.
fn col<'r, R, T>(row: &'r R, i: usize) -> Result<T, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(i)
}

fn key_kind(text: &str) -> Result<KeyKind, sqlx::Error> {
    match text {
        "kek" => Ok(KeyKind::Kek),
        "dek" => Ok(KeyKind::Dek),
        other => Err(sqlx::Error::ColumnDecode {
            index: "kind".to_owned(),
            source: format!("unknown key kind {other:?}").into(),
        }),
    }
}

fn key_format(value: i64) -> Result<KeyFormat, sqlx::Error> {
    match value {
        1 => Ok(KeyFormat::V1),
        2 => Ok(KeyFormat::V2),
        other => Err(sqlx::Error::ColumnDecode {
            index: "format".to_owned(),
            source: format!("unknown key format {other}").into(),
        }),
    }
}

/// A `keys` row selected with [`key_columns!`].
pub(super) fn key_from_row<'r, R>(row: &'r R) -> Result<StoredKey, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(StoredKey {
        kind: key_kind(&col::<R, String>(row, 0)?)?,
        version: col(row, 1)?,
        wrapped_by: col(row, 2)?,
        wrapped: col(row, 3)?,
        kcv: col(row, 4)?,
        state: col(row, 5)?,
        created_at: col(row, 6)?,
        format: key_format(col(row, 7)?)?,
    })
}

/// A `cards` row selected with [`card_columns!`].
pub(super) fn card_from_row<'r, R>(row: &'r R) -> Result<CardRecord, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(CardRecord {
        token: col(row, 0)?,
        merchant_id: col(row, 1)?,
        fingerprint: col(row, 2)?,
        brand: col(row, 3)?,
        bin: col(row, 4)?,
        last4: col(row, 5)?,
        exp_month: col(row, 6)?,
        exp_year: col(row, 7)?,
        dek_version: col(row, 8)?,
        ciphertext: col(row, 9)?,
        created_at: col(row, 10)?,
        expires_at: col(row, 11)?,
        checkout_id: col(row, 12)?,
    })
}

/// A `cvcs` row selected with [`cvc_columns!`].
pub(super) fn cvc_from_row<'r, R>(row: &'r R) -> Result<CvcRecord, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(CvcRecord { token: col(row, 0)?, dek_version: col(row, 1)?, ciphertext: col(row, 2)?, expires_at: col(row, 3)? })
}

/// An `audit_log` row selected with [`audit_columns!`].
pub(super) fn audit_from_row<'r, R>(row: &'r R) -> Result<AuditRecord, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(AuditRecord {
        seq: col(row, 0)?,
        event: AuditEvent {
            at: col(row, 1)?,
            request_id: col(row, 2)?,
            principal: col(row, 3)?,
            operation: col(row, 4)?,
            merchant_id: col(row, 5)?,
            token: col(row, 6)?,
            decision: col(row, 7)?,
            outcome: col(row, 8)?,
            key_version: col(row, 9)?,
        },
        prev_mac: col(row, 10)?,
        mac: col(row, 11)?,
    })
}

/// A `key_requests` row selected with [`request_columns!`].
pub(super) fn request_from_row<'r, R>(row: &'r R) -> Result<KeyRequest, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(KeyRequest {
        id: col(row, 0)?,
        action: col(row, 1)?,
        kind: col(row, 2)?,
        version: col(row, 3)?,
        force: col(row, 4)?,
        requested_by: col(row, 5)?,
        requested_at: col(row, 6)?,
        expires_at: col(row, 7)?,
        state: col(row, 8)?,
        approved_by: col(row, 9)?,
        decided_at: col(row, 10)?,
        result: col(row, 11)?,
    })
}

/// A `reencrypt_jobs` row selected with [`job_columns!`].
pub(super) fn job_from_row<'r, R>(row: &'r R) -> Result<ReencryptJob, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ReencryptJob {
        id: col(row, 0)?,
        from_version: col(row, 1)?,
        to_version: col(row, 2)?,
        state: col(row, 3)?,
        total: col(row, 4)?,
        done: col(row, 5)?,
        cursor: col(row, 6)?,
        created_at: col(row, 7)?,
        updated_at: col(row, 8)?,
        finished_at: col(row, 9)?,
        error: col(row, 10)?,
    })
}

/// The columns of a swept card, as both backends select them: `token, merchant_id,
/// dek_version, expires_at`.
pub(super) type ExpiredRow = (String, String, i64, i64);

/// The [`ExpiredCard`] of an [`ExpiredRow`].
pub(super) fn expired_card((token, merchant_id, dek_version, expires_at): ExpiredRow) -> ExpiredCard {
    ExpiredCard { token, merchant_id, dek_version, expires_at }
}
