//! The tamper-evident audit chain: each record carries an HMAC (audit key) over its
//! content and the previous record's MAC, so an edited, deleted, inserted or reordered
//! record breaks the chain at a point `audit verify` can name.

use crate::api::rfc3339;
use crate::store::{AuditEvent, AuditRecord, AuditSigner, Store, StoreError};
use paysys_keys::AuditKey;
use serde_json::{json, Value};

/// Signs records with the vault's audit key.
#[derive(Debug)]
pub struct ChainSigner<'a>(pub &'a AuditKey);

impl AuditSigner for ChainSigner<'_> {
    fn chain_mac(&self, record: &AuditRecord) -> Vec<u8> {
        self.0.mac(&canonical_bytes(record)).to_vec()
    }
}

/// Unambiguous encoding of everything the MAC covers: a version tag, then each field
/// length-prefixed (an absent optional field is distinct from an empty one).
pub fn canonical_bytes(record: &AuditRecord) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, field: Option<&[u8]>) {
        match field {
            None => out.push(0),
            Some(bytes) => {
                out.push(1);
                out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
    let AuditEvent { at, request_id, principal, operation, merchant_id, token, decision, outcome, key_version } =
        &record.event;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"paysys/audit/v1");
    put(&mut out, Some(&record.seq.to_be_bytes()));
    put(&mut out, Some(&at.to_be_bytes()));
    put(&mut out, Some(request_id.as_bytes()));
    put(&mut out, Some(principal.as_bytes()));
    put(&mut out, Some(operation.as_bytes()));
    put(&mut out, merchant_id.as_deref().map(str::as_bytes));
    put(&mut out, token.as_deref().map(str::as_bytes));
    put(&mut out, Some(decision.as_bytes()));
    put(&mut out, Some(outcome.as_bytes()));
    let kv = key_version.map(i64::to_be_bytes);
    put(&mut out, kv.as_ref().map(|b| &b[..]));
    put(&mut out, Some(&record.prev_mac));
    out
}

/// Where and how the chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainBreak {
    /// The sequence number of the first record that does not verify (or that is
    /// missing, for a gap or a truncated tail).
    pub seq: i64,
    /// `mac_mismatch` (record edited, inserted or moved), `prev_mac_mismatch` (the
    /// record before it was deleted or replaced), `seq_gap` (records deleted), or
    /// `head_mismatch` (records deleted from the end).
    pub reason: &'static str,
}

/// Result of verifying the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainReport {
    pub ok: bool,
    pub records: i64,
    /// The chain head's `seq` as stored (what checkpoints are compared with).
    pub head_seq: i64,
    pub first_break: Option<ChainBreak>,
}

/// Incremental verifier: feed records in `seq` order, then [`ChainVerifier::finish`]
/// with the stored chain head.
#[derive(Debug)]
pub struct ChainVerifier<'a> {
    key: &'a AuditKey,
    expected_seq: i64,
    prev_mac: Vec<u8>,
    records: i64,
    first_break: Option<ChainBreak>,
}

impl<'a> ChainVerifier<'a> {
    pub fn new(key: &'a AuditKey) -> Self {
        ChainVerifier { key, expected_seq: 1, prev_mac: vec![0; 32], records: 0, first_break: None }
    }

    /// Check the next record. After the first break the rest is only counted.
    pub fn push(&mut self, record: &AuditRecord) {
        self.records += 1;
        if self.first_break.is_some() {
            return;
        }
        let found = if record.seq != self.expected_seq {
            Some(ChainBreak { seq: self.expected_seq, reason: "seq_gap" })
        } else if !self.key.verify(&canonical_bytes(record), &record.mac) {
            Some(ChainBreak { seq: record.seq, reason: "mac_mismatch" })
        } else if record.prev_mac != self.prev_mac {
            Some(ChainBreak { seq: record.seq, reason: "prev_mac_mismatch" })
        } else {
            None
        };
        self.first_break = found;
        self.expected_seq = record.seq + 1;
        self.prev_mac.clone_from(&record.mac);
    }

    /// Finish against the chain head (`seq`, `mac` of the last record as stored).
    pub fn finish(mut self, head_seq: i64, head_mac: &[u8]) -> ChainReport {
        if self.first_break.is_none() && (head_seq != self.expected_seq - 1 || head_mac != self.prev_mac.as_slice()) {
            self.first_break = Some(ChainBreak { seq: self.expected_seq, reason: "head_mismatch" });
        }
        ChainReport { ok: self.first_break.is_none(), records: self.records, head_seq, first_break: self.first_break }
    }
}

/// Records read per database round trip while verifying.
const VERIFY_PAGE: i64 = 5_000;

/// Verify the whole chain up to the current head.
pub async fn verify_chain(store: &dyn Store, key: &AuditKey) -> Result<ChainReport, StoreError> {
    let (head_seq, head_mac) = store.audit_head().await?;
    let mut verifier = ChainVerifier::new(key);
    let mut after = 0;
    loop {
        let page = store.audit_records(after, VERIFY_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in page.iter().filter(|r| r.seq <= head_seq) {
            verifier.push(record);
        }
        if after >= head_seq {
            break;
        }
    }
    Ok(verifier.finish(head_seq, &head_mac))
}

/// One record as exported for a SIEM (JSON lines). MACs in hex so a SIEM can re-check
/// the chain's continuity.
pub fn record_json(r: &AuditRecord) -> Value {
    json!({
        "seq": r.seq,
        "at": rfc3339(r.event.at),
        "request_id": r.event.request_id,
        "principal": r.event.principal,
        "operation": r.event.operation,
        "merchant_id": r.event.merchant_id,
        "token": r.event.token,
        "decision": r.event.decision,
        "outcome": r.event.outcome,
        "key_version": r.event.key_version,
        "prev_mac": hex::encode(&r.prev_mac),
        "mac": hex::encode(&r.mac),
    })
}
