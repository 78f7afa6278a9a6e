//! The delivery worker: claims due deliveries (a lease each; on PostgreSQL `FOR UPDATE
//! SKIP LOCKED`, so replicas never claim the same row; on SQLite one writer at a time),
//! screens the endpoint's URL again against a fresh resolution, signs with the current
//! secret(s), sends, and records the attempt with the delivery's next state in one
//! transaction. A failed attempt is retried on the [`super::RetrySchedule`]; an endpoint
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
use crate::store::{DeliveryStatus, EndpointHealth, EndpointStatus, WebhookAttemptRecord, WebhookDeliveryRecord};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Deliveries claimed per round; a full round is followed at once by the next.
const BATCH: i64 = 64;

/// Deliver due webhooks every `interval` until `shutdown`.
pub async fn run(gateway: Arc<Gateway>, interval: Duration, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        while deliver_due(&gateway).await >= BATCH {}
    }
}

/// One round: claim up to [`BATCH`] due deliveries and send them concurrently; how
/// many were claimed.
pub async fn deliver_due(gateway: &Arc<Gateway>) -> i64 {
    let now = now_ms();
    match gateway.store.webhooks_due(now).await {
        Ok(true) => {}
        Ok(false) => return 0,
        Err(e) => {
            tracing::error!(error = %e, "looking for due webhook deliveries failed");
            return 0;
        }
    }
    let lease = i64::try_from(gateway.webhooks.config.lease.as_millis()).unwrap_or(60_000);
    let claimed = match gateway.store.claim_webhook_deliveries(now, now + lease, BATCH).await {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::error!(error = %e, "claiming webhook deliveries failed");
            return 0;
        }
    };
    let count = i64::try_from(claimed.len()).unwrap_or(0);
    let mut tasks = tokio::task::JoinSet::new();
    for d in claimed {
        let gateway = gateway.clone();
        tasks.spawn(async move { deliver(&gateway, d).await });
    }
    while tasks.join_next().await.is_some() {}
    count
}

/// Attempt one claimed delivery and record the outcome.
async fn deliver(gateway: &Gateway, mut d: WebhookDeliveryRecord) {
    let webhooks = &gateway.webhooks;
    let endpoint = match gateway.store.webhook_endpoint(&d.endpoint_id).await {
        Ok(Some(e)) if e.status == EndpointStatus::Enabled => e,
        // Deleted or disabled since the claim: the lease runs out, nothing is sent.
        Ok(_) => return,
        Err(e) => {
            tracing::error!(error = %e, "reading a webhook endpoint failed");
            return;
        }
    };
    let now = now_ms();
    let outcome = match current_secrets(gateway, &endpoint.endpoint_id, &endpoint.secret_sealed, &endpoint, now) {
        None => AttemptOutcome::not_attempted("secret_unreadable"),
        Some(secrets) => {
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
                    let timestamp = now / 1000;
                    let refs: Vec<&WebhookSecret> = secrets.iter().collect();
                    let message = SignedMessage {
                        webhook_id: d.event_id.clone(),
                        timestamp,
                        signature: signature_header(&refs, &d.event_id, timestamp, d.body.as_bytes()),
                        body: bytes::Bytes::from(d.body.clone()),
                    };
                    delivery::send(&checked, &message, &webhooks.tls, webhooks.config.timeout).await
                }
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
    tracing::info!(
        event_id = %d.event_id, endpoint_id = %d.endpoint_id, event_type = %d.event_type, attempt = d.attempts,
        status_code = ?outcome.status_code, error = ?outcome.error, latency_ms = outcome.latency_ms,
        "webhook attempt"
    );
    match gateway.store.record_webhook_attempt(&d, &attempt, health).await {
        Ok(true) => tracing::warn!(endpoint_id = %d.endpoint_id, "webhook endpoint disabled: failing for too long"),
        Ok(false) => {}
        Err(e) => tracing::error!(event_id = %d.event_id, error = %e, "recording a webhook attempt failed"),
    }
}

/// The secrets that sign now: the current one, and the previous one while its overlap
/// after a rotation lasts. `None` when the current one does not open.
fn current_secrets(
    gateway: &Gateway,
    endpoint_id: &str,
    sealed: &str,
    endpoint: &crate::store::WebhookEndpointRecord,
    now: i64,
) -> Option<Vec<WebhookSecret>> {
    let key = &gateway.webhooks.key;
    let mut secrets = vec![open_secret(key, endpoint_id, sealed)?];
    if let (Some(previous), Some(until)) = (&endpoint.previous_secret_sealed, endpoint.previous_secret_expires_at) {
        if until > now {
            if let Ok(text) = key.open_labeled(SECRET_LABEL, endpoint_id, previous) {
                if let Ok(secret) = WebhookSecret::from_text(&text) {
                    secrets.push(secret);
                }
            }
        }
    }
    Some(secrets)
}
