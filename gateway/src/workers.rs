//! Background work: hold expiry (applying `after_expired`), expiry of 3-D Secure
//! challenges not completed in their window, resolution of payments whose
//! acquirer outcome is unknown (status inquiry; never a second authorization),
//! retries of refunds in doubt (the acquirer is idempotent on the refund reference),
//! deletion in the vault of removed cards whose last open payment has closed, and the
//! sweep of the replay guard's signed requests once they are past the Auth window, and
//! checkouts brought up to date (expired, or settled after their payment).
//!
//! Jobs are claimed in the database (`FOR UPDATE SKIP LOCKED` on PostgreSQL) with a
//! lease, so several gateway replicas share the work and a crashed one's jobs return.

use crate::payments::{now_ms, Gateway, REMOVAL_CLAIM_MS};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Jobs claimed per round.
const BATCH: i64 = 20;

/// Run the workers every `interval` until `shutdown`.
pub async fn run(gateway: Arc<Gateway>, interval: Duration, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        run_once(&gateway).await;
    }
}

/// One round of every worker (also used by the tests).
pub async fn run_once(gateway: &Gateway) {
    expire_holds(gateway).await;
    expire_authentications(gateway).await;
    resolve_unknown_outcomes(gateway).await;
    retry_refunds(gateway).await;
    delete_removed_cards(gateway).await;
    sweep_signed_requests(gateway).await;
    follow_checkouts(gateway).await;
}

/// Checkouts behind their state: expire open ones past their time; complete (saving the
/// card when asked) or reopen processing ones whose payment has settled. Each step is
/// conditional on the checkout's status, so replicas doing it side by side do it once.
async fn follow_checkouts(gateway: &Gateway) {
    let behind = match gateway.store.checkouts_to_follow(now_ms(), BATCH).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "reading checkouts to follow failed");
            return;
        }
    };
    for checkout in behind {
        let id = checkout.checkout_id.clone();
        if let Err(e) = gateway.sync_checkout(checkout).await {
            tracing::error!(checkout_id = %id, error = ?e, "following a checkout failed");
        }
    }
}

/// Forget guarded requests whose signature is past the Auth window (so the replay
/// guard's table holds only the last few minutes of requests).
async fn sweep_signed_requests(gateway: &Gateway) {
    match gateway.store.sweep_requests(now_ms()).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(swept = n, "signed requests past their window forgotten"),
        Err(e) => tracing::error!(error = %e, "sweeping signed requests failed"),
    }
}

fn lease_until(gateway: &Gateway, now: i64) -> i64 {
    now + i64::try_from(gateway.config.acquirer_timeout.as_millis()).unwrap_or(i64::MAX / 4) + 10_000
}

async fn expire_holds(gateway: &Gateway) {
    let now = now_ms();
    let claimed = match gateway.store.claim_expired_holds(now, lease_until(gateway, now), BATCH).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "claiming expired holds failed");
            return;
        }
    };
    for id in claimed {
        match gateway.store.payment(&id).await {
            Ok(Some(p)) => {
                if let Err(e) = gateway.expire_hold(p).await {
                    tracing::error!(transaction_id = %id, error = ?e, "hold expiry failed");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(transaction_id = %id, error = %e, "reading a payment failed"),
        }
    }
}

/// Payments waiting for 3-D Secure past their window: completed from the DS's results
/// when the authentication did finish (a lost RReq and CRes), else expired.
async fn expire_authentications(gateway: &Gateway) {
    let now = now_ms();
    let claimed = match gateway.store.claim_expired_authentications(now, lease_until(gateway, now), BATCH).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "claiming expired authentications failed");
            return;
        }
    };
    for id in claimed {
        match gateway.store.payment(&id).await {
            Ok(Some(p)) => {
                if let Err(e) = gateway.settle_authentication(p).await {
                    tracing::error!(transaction_id = %id, error = ?e, "3-D Secure expiry failed");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(transaction_id = %id, error = %e, "reading a payment failed"),
        }
    }
}

async fn resolve_unknown_outcomes(gateway: &Gateway) {
    let now = now_ms();
    let stale_before = now - gateway.config.stale_authorizing_ms();
    let claimed = match gateway.store.claim_unresolved(now, stale_before, lease_until(gateway, now), BATCH).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "claiming unresolved payments failed");
            return;
        }
    };
    for id in claimed {
        match gateway.store.payment(&id).await {
            Ok(Some(p)) => {
                if let Err(e) = gateway.resolve(p).await {
                    tracing::error!(transaction_id = %id, error = ?e, "resolution failed");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(transaction_id = %id, error = %e, "reading a payment failed"),
        }
    }
}

async fn retry_refunds(gateway: &Gateway) {
    let refunds = match gateway.store.processing_refunds(BATCH).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "reading refunds in doubt failed");
            return;
        }
    };
    for refund in refunds {
        let id = refund.refund_id.clone();
        if let Err(e) = gateway.retry_refund(refund).await {
            tracing::error!(refund_id = %id, error = ?e, "refund retry failed");
        }
    }
}

/// Removed cards (`card.remove`) still in the vault that no open payment needs any more:
/// deleted there now (`tokens.remove_for_merchant`); a failure is retried with back-off.
async fn delete_removed_cards(gateway: &Gateway) {
    let now = now_ms();
    let claimed = match gateway.store.claim_vault_removals(now, now + REMOVAL_CLAIM_MS, BATCH).await {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::error!(error = %e, "claiming removed cards failed");
            return;
        }
    };
    for (merchant_id, token) in claimed {
        if let Err(e) = gateway.delete_card_in_vault(&merchant_id, &token).await {
            tracing::error!(%merchant_id, card_token = %token, error = ?e, "deleting a removed card failed");
        }
    }
}
