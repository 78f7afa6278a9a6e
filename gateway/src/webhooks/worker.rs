//! The delivery worker: claims due deliveries (a lease each; on PostgreSQL `FOR UPDATE
//! SKIP LOCKED`, so replicas never claim the same row; on SQLite one writer at a time),
//! screens the endpoint's URL again against a fresh resolution, signs with the current
//! secret(s), sends (each delivery on its own task, at most [`MAX_IN_FLIGHT`] at once),
//! and records finished attempts with the deliveries' next states, as many per
//! transaction as have finished. A failed attempt is retried on the [`super::RetrySchedule`]; an endpoint
//! whose every attempt has failed for [`super::WebhookConfig::disable_after`] is
//! disabled (the account shows why).
//!
//! At least once: a worker that dies after sending but before recording leaves the
//! lease to run out and the delivery is sent again with the same `webhook-id`.

use super::delivery::{self, AttemptOutcome, SignedMessage};
use super::destination;
use super::endpoints::{open_secret, SECRET_LABEL};
use super::signing::{signature_header, WebhookSecret};
use crate::payments::{now_ms, Gateway};
use crate::store::{
    DeliveryStatus, EndpointHealth, EndpointStatus, WebhookAttemptRecord, WebhookDeliveryRecord, WebhookEndpointRecord,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Deliveries claimed at once.
const BATCH: i64 = 64;
/// Deliveries in flight at once per process (each holds its lease while it runs).
const MAX_IN_FLIGHT: usize = 256;
/// Attempts recorded in one transaction at most.
const MAX_RECORDED_AT_ONCE: usize = 256;

/// One finished attempt: the delivery's next state, the attempt, the endpoint's health.
type Attempted = (WebhookDeliveryRecord, WebhookAttemptRecord, EndpointHealth);

/// Deliver due webhooks every `interval` until `shutdown`. Claims run while there is
/// room in flight and due work; each delivery runs on its own, so a slow endpoint (up
/// to its 10 s deadline) holds up no other; finished attempts are recorded by one
/// recorder, as many per transaction as have finished.
pub async fn run(gateway: Arc<Gateway>, interval: Duration, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let (finished, attempts) = tokio::sync::mpsc::unbounded_channel::<Attempted>();
    let recorder = tokio::spawn(record_finished(gateway.clone(), attempts));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        loop {
            let room = in_flight.available_permits().min(usize::try_from(BATCH).unwrap_or(64));
            if room == 0 {
                break;
            }
            let round = claim_round(&gateway, i64::try_from(room).unwrap_or(BATCH)).await;
            let claimed = round.len();
            for (d, destination) in round {
                let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
                let (gateway, finished) = (gateway.clone(), finished.clone());
                tokio::spawn(async move {
                    let _ = finished.send(attempt(&gateway, d, &destination).await);
                    drop(permit);
                });
            }
            if claimed < room {
                break;
            }
        }
    }
    // The recorder ends once every delivery in flight has sent its result.
    drop(finished);
    let deadline = gateway.webhooks.config.timeout + Duration::from_secs(5);
    let _ = tokio::time::timeout(deadline, recorder).await;
}

/// Record finished attempts as they come, all that are waiting in one transaction.
async fn record_finished(gateway: Arc<Gateway>, mut attempts: tokio::sync::mpsc::UnboundedReceiver<Attempted>) {
    while let Some(first) = attempts.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_RECORDED_AT_ONCE {
            match attempts.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        record(&gateway, &batch).await;
    }
}

async fn record(gateway: &Gateway, batch: &[Attempted]) {
    match gateway.store.record_webhook_attempts(batch).await {
        Ok(disabled) => {
            for endpoint_id in disabled {
                tracing::warn!(%endpoint_id, "webhook endpoint disabled: failing for too long");
            }
        }
        // The leases run out and the deliveries are tried again: at least once.
        Err(e) => tracing::error!(error = %e, "recording webhook attempts failed"),
    }
}

/// Claim up to `limit` due deliveries, each with its endpoint (read, and its secrets
/// opened, once per claim). Deliveries whose endpoint is gone or disabled since are
/// left to their lease.
async fn claim_round(gateway: &Arc<Gateway>, limit: i64) -> Vec<(WebhookDeliveryRecord, Arc<Destination>)> {
    let now = now_ms();
    match gateway.store.webhooks_due(now).await {
        Ok(true) => {}
        Ok(false) => return Vec::new(),
        Err(e) => {
            tracing::error!(error = %e, "looking for due webhook deliveries failed");
            return Vec::new();
        }
    }
    let lease = i64::try_from(gateway.webhooks.config.lease.as_millis()).unwrap_or(60_000);
    let claimed = match gateway.store.claim_webhook_deliveries(now, now + lease, limit).await {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::error!(error = %e, "claiming webhook deliveries failed");
            return Vec::new();
        }
    };
    let mut endpoints: HashMap<String, Option<Arc<Destination>>> = HashMap::new();
    for d in &claimed {
        if !endpoints.contains_key(&d.endpoint_id) {
            let destination = destination_of(gateway, &d.endpoint_id, now).await;
            endpoints.insert(d.endpoint_id.clone(), destination);
        }
    }
    claimed
        .into_iter()
        .filter_map(|d| {
            let destination = endpoints.get(&d.endpoint_id).cloned().flatten()?;
            Some((d, destination))
        })
        .collect()
}

/// One round, to its end (the tests' handle on the worker): claim up to [`BATCH`] due
/// deliveries, send them concurrently, record every attempt in one transaction; how
/// many were sent (or refused before sending).
pub async fn deliver_due(gateway: &Arc<Gateway>) -> i64 {
    let round = claim_round(gateway, BATCH).await;
    let count = i64::try_from(round.len()).unwrap_or(0);
    let mut tasks = tokio::task::JoinSet::new();
    for (d, destination) in round {
        let gateway = gateway.clone();
        tasks.spawn(async move { attempt(&gateway, d, &destination).await });
    }
    let mut results = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        if let Ok(result) = joined {
            results.push(result);
        }
    }
    record(gateway, &results).await;
    count
}

/// An enabled endpoint with the secrets that sign now.
struct Destination {
    endpoint: WebhookEndpointRecord,
    /// Empty when the current secret does not open (nothing is sent then).
    secrets: Vec<WebhookSecret>,
}

async fn destination_of(gateway: &Gateway, endpoint_id: &str, now: i64) -> Option<Arc<Destination>> {
    match gateway.store.webhook_endpoint(endpoint_id).await {
        Ok(Some(endpoint)) if endpoint.status == EndpointStatus::Enabled => {
            let secrets = current_secrets(gateway, &endpoint, now).unwrap_or_default();
            Some(Arc::new(Destination { endpoint, secrets }))
        }
        Ok(_) => None,
        Err(e) => {
            tracing::error!(error = %e, "reading a webhook endpoint failed");
            None
        }
    }
}

/// Attempt one claimed delivery: the delivery's next state, the attempt, the health.
async fn attempt(gateway: &Gateway, mut d: WebhookDeliveryRecord, destination: &Destination) -> Attempted {
    let webhooks = &gateway.webhooks;
    let endpoint = &destination.endpoint;
    let outcome = if destination.secrets.is_empty() {
        AttemptOutcome::not_attempted("secret_unreadable")
    } else {
        // Screened again now, against what the name resolves to now; the connection
        // goes to exactly the address checked.
        match destination::screen(&endpoint.url, webhooks.config.policy, webhooks.resolver.as_ref()).await {
            Err(refusal) => {
                tracing::warn!(
                    endpoint_id = %endpoint.endpoint_id, reason = refusal.reason(),
                    "webhook destination refused at delivery"
                );
                AttemptOutcome::not_attempted(&format!("destination_refused:{}", refusal.reason()))
            }
            Ok(checked) => {
                let timestamp = now_ms() / 1000;
                let refs: Vec<&WebhookSecret> = destination.secrets.iter().collect();
                let message = SignedMessage {
                    webhook_id: d.event_id.clone(),
                    timestamp,
                    signature: signature_header(&refs, &d.event_id, timestamp, d.body.as_bytes()),
                    body: bytes::Bytes::from(d.body.clone()),
                };
                delivery::send(&checked, &message, &webhooks.tls, &webhooks.connections, webhooks.config.timeout).await
            }
        }
    };
    let at = now_ms();
    d.attempts += 1;
    d.updated_at = at;
    d.lease_until = 0;
    let health = if outcome.delivered() {
        d.status = DeliveryStatus::Delivered;
        d.delivered_at = Some(at);
        EndpointHealth::Succeeded
    } else {
        match webhooks.config.schedule.next_delay(d.attempts) {
            Some(delay) => d.next_attempt_at = at + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4),
            None => d.status = DeliveryStatus::Failed,
        }
        let disable_after = i64::try_from(webhooks.config.disable_after.as_millis()).unwrap_or(i64::MAX / 4);
        EndpointHealth::Failed { cutoff: at - disable_after }
    };
    let attempt = WebhookAttemptRecord {
        event_id: d.event_id.clone(),
        endpoint_id: d.endpoint_id.clone(),
        attempt: d.attempts,
        at,
        status_code: outcome.status_code.map(i64::from),
        latency_ms: outcome.latency_ms,
        error: outcome.error.clone(),
        response_excerpt: outcome.excerpt.clone(),
    };
    // Every attempt is recorded (`webhook.list` shows it); the log keeps the failures.
    // A line per delivered event would double the log of a busy gateway.
    if d.status == DeliveryStatus::Delivered {
        tracing::debug!(
            event_id = %d.event_id, endpoint_id = %d.endpoint_id, event_type = %d.event_type, attempt = d.attempts,
            status_code = ?outcome.status_code, latency_ms = outcome.latency_ms, "webhook delivered"
        );
    } else {
        tracing::warn!(
            event_id = %d.event_id, endpoint_id = %d.endpoint_id, event_type = %d.event_type, attempt = d.attempts,
            status_code = ?outcome.status_code, error = ?outcome.error, latency_ms = outcome.latency_ms,
            "webhook attempt failed"
        );
    }
    (d, attempt, health)
}

/// The secrets that sign now: the current one, and the previous one while its overlap
/// after a rotation lasts. `None` when the current one does not open.
fn current_secrets(gateway: &Gateway, endpoint: &WebhookEndpointRecord, now: i64) -> Option<Vec<WebhookSecret>> {
    let key = &gateway.webhooks.key;
    let id = &endpoint.endpoint_id;
    let mut secrets = vec![open_secret(key, id, &endpoint.secret_sealed)?];
    if let (Some(previous), Some(until)) = (&endpoint.previous_secret_sealed, endpoint.previous_secret_expires_at) {
        if until > now {
            if let Ok(text) = key.open_labeled(SECRET_LABEL, id, previous) {
                if let Ok(secret) = WebhookSecret::from_text(&text) {
                    secrets.push(secret);
                }
            }
        }
    }
    Some(secrets)
}
