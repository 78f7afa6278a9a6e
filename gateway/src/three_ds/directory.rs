//! The directory server, as the 3DS Server reaches it directly (no card data): the
//! card ranges of its PRes (which BINs are enrolled and where their ACS's 3DS Method
//! is), kept for an hour, and the results of an authentication (what the RReq
//! announces, read back over verified TLS so that a forged RReq or CRes changes nothing).

use super::messages::{self, AuthenticationResult};
use crate::https::{CallError, HttpsPool};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long card ranges are kept before the PReq is sent again.
const RANGES_TTL: Duration = Duration::from_secs(3600);
/// After a failed PReq, how long before it is tried again.
const RANGES_RETRY: Duration = Duration::from_secs(10);
/// Deadline of the PReq and of a results read.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One PRes card range, by the six-digit BINs it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRange {
    pub start_bin: String,
    pub end_bin: String,
    pub method_url: Option<String>,
}

/// What the ranges say about a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrollment {
    /// In a range; the ACS's 3DS Method URL when the range has one.
    Enrolled {
        method_url: Option<String>,
    },
    NotEnrolled,
    /// The DS could not be asked: try the AReq, it will say.
    Unknown,
}

/// The DS's results of one authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Results {
    Found(AuthenticationResult),
    NotFound,
    Unavailable(String),
}

#[derive(Debug, Default)]
struct RangeCache {
    ranges: Option<Vec<CardRange>>,
    fetched: Option<Instant>,
}

/// The DS client.
#[derive(Debug)]
pub struct Directory {
    pool: HttpsPool,
    cache: Mutex<RangeCache>,
}

impl Directory {
    pub fn new(pool: HttpsPool) -> Directory {
        Directory { pool, cache: Mutex::new(RangeCache::default()) }
    }

    /// Whether cards of `bin` (first six digits) are enrolled.
    pub async fn enrollment(&self, bin: &str) -> Enrollment {
        let mut cache = self.cache.lock().await;
        let fresh = match (&cache.ranges, cache.fetched) {
            (Some(_), Some(at)) => at.elapsed() < RANGES_TTL,
            (None, Some(at)) => at.elapsed() < RANGES_RETRY,
            _ => false,
        };
        if !fresh {
            match self.fetch_ranges().await {
                Ok(ranges) => cache.ranges = Some(ranges),
                Err(e) => tracing::warn!(error = %e, "PReq failed; card ranges unknown"),
            }
            cache.fetched = Some(Instant::now());
        }
        match &cache.ranges {
            None => Enrollment::Unknown,
            Some(ranges) => ranges
                .iter()
                .find(|r| r.start_bin.as_str() <= bin && bin <= r.end_bin.as_str())
                .map_or(Enrollment::NotEnrolled, |r| Enrollment::Enrolled { method_url: r.method_url.clone() }),
        }
    }

    async fn fetch_ranges(&self) -> Result<Vec<CardRange>, String> {
        let preq = json!({
            "messageType": "PReq",
            "messageVersion": messages::MESSAGE_VERSION,
            "threeDSServerTransID": messages::new_trans_id(),
            "threeDSServerRefNumber": messages::SERVER_REF_NUMBER,
        });
        let response =
            self.pool.call("POST", "/3ds/v2/preq", Some(&preq), CALL_TIMEOUT, true).await.map_err(|e| e.to_string())?;
        if response.status != 200 || response.body.get("messageType").and_then(Value::as_str) != Some("PRes") {
            return Err(format!("the DS answered the PReq with {}", response.status));
        }
        let ranges = response.body.get("cardRangeData").and_then(Value::as_array).ok_or("PRes without ranges")?;
        Ok(ranges.iter().filter_map(card_range).collect())
    }

    /// The DS's results of `three_ds_server_trans_id`.
    pub async fn results(&self, three_ds_server_trans_id: &str) -> Results {
        if !three_ds_server_trans_id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Results::NotFound;
        }
        let path = format!("/3ds/v2/results/{three_ds_server_trans_id}");
        match self.pool.call("GET", &path, None, CALL_TIMEOUT, true).await {
            Err(CallError::NotSent(e) | CallError::Uncertain(e)) => Results::Unavailable(e),
            Ok(r) if r.status == 404 => Results::NotFound,
            Ok(r) if r.status == 200 => match AuthenticationResult::from_results(&r.body, three_ds_server_trans_id) {
                Some(result) => Results::Found(result),
                None => Results::Unavailable("results of unexpected shape".into()),
            },
            Ok(r) => Results::Unavailable(format!("the DS answered {}", r.status)),
        }
    }
}

/// A PRes range (`startRange`/`endRange` PAN-length numbers) by its first six digits.
fn card_range(v: &Value) -> Option<CardRange> {
    let bin = |key: &str| -> Option<String> {
        let s = v.get(key)?.as_str()?;
        (s.len() >= 6 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s[..6].to_owned())
    };
    if v.get("actionInd").and_then(Value::as_str).is_some_and(|a| a == "D") {
        return None;
    }
    Some(CardRange {
        start_bin: bin("startRange")?,
        end_bin: bin("endRange")?,
        method_url: v.get("threeDSMethodURL").and_then(Value::as_str).filter(|u| !u.is_empty()).map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_by_bin() {
        let r = card_range(&json!({"startRange": "4000000000000000", "endRange": "4999999999999999",
            "actionInd": "A", "threeDSMethodURL": "https://acs/method"}))
        .unwrap();
        assert_eq!((r.start_bin.as_str(), r.end_bin.as_str()), ("400000", "499999"));
        assert_eq!(r.method_url.as_deref(), Some("https://acs/method"));
        assert!(card_range(&json!({"startRange": "40x0", "endRange": "4999999999999999"})).is_none());
        assert!(card_range(&json!({"startRange": "4000000000000000", "endRange": "4999999999999999",
            "actionInd": "D"}))
        .is_none());
    }
}
