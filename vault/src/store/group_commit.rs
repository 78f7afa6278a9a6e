//! Backend-independent parts of a group commit: turning a batch of units into a few
//! multi-row statements, and chaining the batch's audit records onto the head.

use super::{
    AuditEvent, AuditRecord, AuditSigner, CardRecord, CardWrite, CvcRecord, SpentGrant, StoreError, WriteUnit,
};

/// A run of a batch's writes that can be applied as set operations without changing
/// the outcome: all of its inserts came before all of its deletes in the batch.
///
/// Inserts commute with each other (cards are inserted before CVCs so a CVC's card
/// exists), and deletes commute with each other, but an insert and a delete of the same
/// token do not; so a new segment starts whenever an insert follows a delete. Spent
/// grants touch no card row and commute with everything; they are written first, so a
/// replayed grant fails its batch before any card is written.
#[derive(Debug, Default)]
pub(super) struct Segment<'a> {
    pub grants: Vec<&'a SpentGrant>,
    pub cards: Vec<&'a CardRecord>,
    pub cvcs: Vec<&'a CvcRecord>,
    /// Tokens whose card and CVC rows are deleted.
    pub deletes: Vec<&'a str>,
}

/// Split the writes of `units` into segments, in batch order.
pub(super) fn segments(units: &[WriteUnit]) -> Vec<Segment<'_>> {
    let mut out: Vec<Segment<'_>> = Vec::new();
    let mut current = Segment::default();
    for write in units.iter().flat_map(|u| &u.writes) {
        match write {
            CardWrite::InsertCard(card) => {
                if !current.deletes.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                current.cards.push(card);
            }
            CardWrite::InsertCvc(cvc) => {
                if !current.deletes.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                current.cvcs.push(cvc);
            }
            CardWrite::DeleteCard { token } => current.deletes.push(token),
            CardWrite::SpendGrant(grant) => current.grants.push(grant),
        }
    }
    let empty = current.grants.is_empty() && current.cards.is_empty() && current.cvcs.is_empty();
    if !(empty && current.deletes.is_empty()) {
        out.push(current);
    }
    out
}

/// The audit records of `events`, chained after the head (`head_seq`, `head_mac`).
pub(super) fn chain_records<'a>(
    head_seq: i64,
    head_mac: Vec<u8>,
    events: impl Iterator<Item = &'a AuditEvent>,
    signer: &dyn AuditSigner,
) -> Vec<AuditRecord> {
    let mut prev_mac = head_mac;
    let mut records = Vec::with_capacity(events.size_hint().0);
    for (seq, event) in (head_seq + 1..).zip(events) {
        let mut record = AuditRecord { seq, event: event.clone(), prev_mac, mac: Vec::new() };
        record.mac = signer.chain_mac(&record);
        prev_mac = record.mac.clone();
        records.push(record);
    }
    records
}

/// Map a database error from a write: unique violations become `Conflict` so callers
/// can tell a token collision from an outage.
pub(super) fn write_error(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
        other => StoreError::Database(other),
    }
}

/// Row counts of the multi-row statements a batch is cut into (SQLite): few distinct
/// statement shapes, so each is built once and its prepared statement reused.
pub(super) const CHUNK_LENGTHS: [usize; 5] = [256, 64, 16, 4, 1];

/// The chunk lengths, from [`CHUNK_LENGTHS`], of a batch of `n` rows.
pub(super) fn chunk_lengths(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let size = CHUNK_LENGTHS.into_iter().find(|s| *s <= n)?;
        n -= size;
        Some(size)
    })
}

/// Split `items` into consecutive slices of [`chunk_lengths`].
pub(super) fn chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    chunk_lengths(items.len()).map(move |len| {
        let (head, tail) = rest.split_at(len);
        rest = tail;
        head
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_everything_in_order() {
        let items: Vec<usize> = (0..343).collect();
        let lens: Vec<usize> = chunks(&items).map(<[usize]>::len).collect();
        assert_eq!(lens, vec![256, 64, 16, 4, 1, 1, 1]);
        let joined: Vec<usize> = chunks(&items).flatten().copied().collect();
        assert_eq!(joined, items);
        assert_eq!(chunks::<u8>(&[]).count(), 0);
    }

    #[test]
    fn an_insert_after_a_delete_starts_a_new_segment() {
        let card = |token: &str| CardRecord {
            token: token.into(),
            merchant_id: "m".into(),
            fingerprint: "f".into(),
            brand: "visa".into(),
            bin: "424242".into(),
            last4: "4242".into(),
            exp_month: 12,
            exp_year: 2030,
            dek_version: 1,
            ciphertext: vec![1],
            created_at: 0,
            expires_at: None,
            checkout_id: None,
        };
        let audit = AuditEvent {
            at: 0,
            request_id: "r".into(),
            principal: "p".into(),
            operation: "o".into(),
            merchant_id: None,
            token: None,
            decision: "allow".into(),
            outcome: "ok".into(),
            key_version: None,
        };
        let unit = |writes| WriteUnit { writes, audit: audit.clone() };
        let units = vec![
            unit(vec![CardWrite::InsertCard(card("a"))]),
            unit(vec![CardWrite::DeleteCard { token: "a".into() }]),
            unit(vec![CardWrite::DeleteCard { token: "b".into() }]),
            unit(vec![CardWrite::InsertCard(card("a"))]),
        ];
        let plan = segments(&units);
        assert_eq!(plan.len(), 2);
        assert_eq!((plan[0].cards.len(), plan[0].deletes.clone()), (1, vec!["a", "b"]));
        assert_eq!((plan[1].cards.len(), plan[1].deletes.len()), (1, 0));
    }
}
