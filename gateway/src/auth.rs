//! The PaySys API authentication header:
//!
//! ```text
//! Auth: {service_id}-{hex HMAC-SHA256(secret, ts + "." + raw_body)}-{ts}
//! ```
//!
//! `ts` is Unix milliseconds and must be within ±300 s of the gateway's clock. The MAC
//! covers the exact bytes of the body, so a captured header replayed with another body
//! fails. MACs are checked with `ring::hmac::verify` (constant time), never `==`.

use crate::secrets::MerchantSecret;
use ring::hmac;

/// How far the request's timestamp may be from the gateway's clock.
pub const WINDOW_MS: i64 = 300_000;

/// Why a request is not authenticated. All become JSON-RPC −32504; the reason goes to
/// the log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("no Auth header")]
    Missing,
    #[error("the Auth header is not service_id-hexmac-timestamp")]
    Malformed,
    #[error("the timestamp is outside the allowed window")]
    Stale,
    #[error("unknown service id")]
    UnknownService,
    #[error("the signature does not match")]
    BadSignature,
}

/// A parsed header, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub service_id: String,
    mac: Vec<u8>,
    pub timestamp_ms: i64,
}

impl AuthHeader {
    /// Parse `service_id-hexmac-ts`. The MAC and timestamp are the last two fields, so a
    /// service id would even survive a `-` of its own.
    pub fn parse(value: &str) -> Result<AuthHeader, AuthError> {
        let (rest, ts) = value.rsplit_once('-').ok_or(AuthError::Malformed)?;
        let (service_id, mac_hex) = rest.rsplit_once('-').ok_or(AuthError::Malformed)?;
        if service_id.is_empty() || service_id.len() > 64 || mac_hex.len() != 64 || ts.is_empty() || ts.len() > 16 {
            return Err(AuthError::Malformed);
        }
        if !ts.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::Malformed);
        }
        let timestamp_ms = ts.parse::<i64>().map_err(|_| AuthError::Malformed)?;
        let mac = hex::decode(mac_hex).map_err(|_| AuthError::Malformed)?;
        Ok(AuthHeader { service_id: service_id.to_owned(), mac, timestamp_ms })
    }

    /// Is the timestamp within the window around `now_ms`?
    pub fn check_fresh(&self, now_ms: i64) -> Result<(), AuthError> {
        if (now_ms - self.timestamp_ms).abs() > WINDOW_MS {
            return Err(AuthError::Stale);
        }
        Ok(())
    }

    /// Verify the MAC over `ts "." body` under `secret`, in constant time.
    pub fn verify(&self, secret: &MerchantSecret, body: &[u8]) -> Result<(), AuthError> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret().as_bytes());
        hmac::verify(&key, &signed_bytes(self.timestamp_ms, body), &self.mac).map_err(|_| AuthError::BadSignature)
    }
}

fn signed_bytes(timestamp_ms: i64, body: &[u8]) -> Vec<u8> {
    let ts = timestamp_ms.to_string();
    let mut message = Vec::with_capacity(ts.len() + 1 + body.len());
    message.extend_from_slice(ts.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    message
}

/// The header value a client sends (used by `paysys-gateway rpc` and the tests).
pub fn sign(service_id: &str, secret: &MerchantSecret, timestamp_ms: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret().as_bytes());
    let tag = hmac::sign(&key, &signed_bytes(timestamp_ms, body));
    format!("{service_id}-{}-{timestamp_ms}", hex::encode(tag.as_ref()))
}

/// The signature on the browser's return to a merchant's `return_url` after 3-D Secure:
/// hex HMAC-SHA256(secret, `ts "." transaction_id "." status`) — the Auth header's MAC
/// over `transaction_id "." status`, so merchants check it with the code they sign with.
pub fn return_signature(secret: &MerchantSecret, transaction_id: &str, status: &str, timestamp_ms: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret().as_bytes());
    let body = format!("{transaction_id}.{status}");
    hex::encode(hmac::sign(&key, &signed_bytes(timestamp_ms, body.as_bytes())).as_ref())
}

/// How long after its header's timestamp a replayed request is still remembered: the
/// window, plus a margin for replicas whose clocks differ a little.
pub const REPLAY_MEMORY_MS: i64 = WINDOW_MS + 60_000;

impl AuthHeader {
    /// What identifies one signed request for the replay guard: SHA-256 over the
    /// *parsed* header (service id, timestamp as a number, MAC bytes) and the body. The
    /// header is not hashed as text because the same signature has many spellings that
    /// all verify (the MAC in upper-case hex, the timestamp with leading zeros); a replay
    /// spelled differently must still be the same request.
    pub fn replay_digest(&self, body: &[u8]) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [self.service_id.as_bytes(), self.timestamp_ms.to_string().as_bytes(), &self.mac] {
            // Length-prefixed, so no two different headers hash alike.
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx.update(body);
        hex::encode(ctx.finish().as_ref())
    }

    /// Until when the replay guard must remember this request: after that its
    /// timestamp is outside every gateway's window, so it cannot be accepted again.
    pub fn replay_expires_at(&self) -> i64 {
        self.timestamp_ms.saturating_add(REPLAY_MEMORY_MS)
    }
}

/// Verify a whole header against `secret` at `now_ms` (freshness first, then MAC).
pub fn verify_header(header: &AuthHeader, secret: &MerchantSecret, body: &[u8], now_ms: i64) -> Result<(), AuthError> {
    header.check_fresh(now_ms)?;
    header.verify(secret, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_747_224_000_000;

    fn secret() -> MerchantSecret {
        MerchantSecret::from_text("5ec2e7")
    }

    #[test]
    fn a_signed_request_verifies() {
        let body = br#"{"jsonrpc":"2.0","method":"payment.check","params":{"transaction_id":"tx_1"},"id":1}"#;
        let value = sign("svc_abc", &secret(), NOW, body);
        let header = AuthHeader::parse(&value).unwrap();
        assert_eq!(header.service_id, "svc_abc");
        assert_eq!(header.timestamp_ms, NOW);
        assert_eq!(verify_header(&header, &secret(), body, NOW + 1000), Ok(()));
    }

    #[test]
    fn known_answer() {
        // HMAC-SHA256(key "key", "1." + "{}") computed independently (Python hmac).
        let value = sign("svc", &MerchantSecret::from_text("key"), 1, b"{}");
        assert_eq!(value, "svc-1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224-1");
    }

    #[test]
    fn wrong_secret_changed_body_and_stale_time_fail() {
        let body = br#"{"a":1}"#;
        let header = AuthHeader::parse(&sign("svc_abc", &secret(), NOW, body)).unwrap();
        assert_eq!(
            verify_header(&header, &MerchantSecret::from_text("other"), body, NOW),
            Err(AuthError::BadSignature)
        );
        assert_eq!(verify_header(&header, &secret(), br#"{"a":2}"#, NOW), Err(AuthError::BadSignature));
        assert_eq!(verify_header(&header, &secret(), body, NOW + WINDOW_MS), Ok(()));
        assert_eq!(verify_header(&header, &secret(), body, NOW + WINDOW_MS + 1), Err(AuthError::Stale));
        assert_eq!(verify_header(&header, &secret(), body, NOW - WINDOW_MS - 1), Err(AuthError::Stale));
    }

    #[test]
    fn the_replay_digest_is_the_same_for_every_spelling_of_one_signature() {
        let body = br#"{"a":1}"#;
        let value = sign("svc_abc", &secret(), NOW, body);
        let header = AuthHeader::parse(&value).unwrap();
        let (rest, ts) = value.rsplit_once('-').unwrap();
        let (service, mac) = rest.rsplit_once('-').unwrap();
        for respelled in [format!("{service}-{}-{ts}", mac.to_uppercase()), format!("{service}-{mac}-000{ts}")] {
            let other = AuthHeader::parse(&respelled).unwrap();
            assert_eq!(verify_header(&other, &secret(), body, NOW), Ok(()), "it verifies: {respelled}");
            assert_eq!(other.replay_digest(body), header.replay_digest(body), "{respelled}");
        }
        assert_ne!(header.replay_digest(body), header.replay_digest(br#"{"a":2}"#));
        let later = AuthHeader::parse(&sign("svc_abc", &secret(), NOW + 1, body)).unwrap();
        assert_ne!(later.replay_digest(body), header.replay_digest(body));
        assert_eq!(header.replay_expires_at(), NOW + WINDOW_MS + 60_000);
    }

    #[test]
    fn malformed_headers() {
        for bad in
            ["", "svc", "svc-abc", "svc-zz-1", &format!("svc-{}-", "0".repeat(64)), &format!("-{}-1", "0".repeat(64))]
        {
            assert_eq!(AuthHeader::parse(bad), Err(AuthError::Malformed), "{bad:?}");
        }
        assert_eq!(AuthHeader::parse(&format!("svc-{}-12a", "0".repeat(64))), Err(AuthError::Malformed));
        assert!(AuthHeader::parse(&format!("svc-{}-12", "0".repeat(64))).is_ok());
    }
}
