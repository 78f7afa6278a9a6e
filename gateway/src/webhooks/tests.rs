//! Which change makes which event, and the event's id and body.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::payments::{ledger_row, CaptureMethod};
use crate::state::AfterExpired;

fn payment(status: PaymentStatus) -> PaymentRecord {
    PaymentRecord {
        transaction_id: "tx_1".into(),
        merchant_id: "m_1".into(),
        partner_trans_id: "order-1".into(),
        request_digest: "d".into(),
        card_token: "tok_1".into(),
        amount: 1000,
        currency: "USD".into(),
        capture_method: CaptureMethod::Manual,
        hold_ttl_sec: 60,
        after_expired: AfterExpired::Void,
        description: None,
        client_ip: None,
        return_url: None,
        status,
        captured_amount: 0,
        refunded_amount: 0,
        acquirer_ref: None,
        auth_code: None,
        rrn: None,
        masked_card: Some("424242******4242".into()),
        decline_code: None,
        error_code: None,
        hold_expires_at: None,
        first_response: None,
        lease_until: 0,
        needs_sync: false,
        three_ds: None,
        three_ds_expires_at: None,
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_001_000,
    }
}

fn row(p: &PaymentRecord, kind: LedgerKind, from: PaymentStatus, to: PaymentStatus) -> LedgerRow {
    ledger_row(p, kind, from, to, p.amount, p.updated_at)
}

fn types(events: &[OutboxEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

#[test]
fn transitions_make_their_events_with_the_payment_as_data() {
    use PaymentStatus::*;
    let cases = [
        (LedgerKind::Authorized, Authorizing, Authorized, "payment.authorized"),
        (LedgerKind::Capture, Authorizing, Captured, "payment.captured"),
        (LedgerKind::Void, Authorized, Voided, "payment.voided"),
        (LedgerKind::ExpireRelease, Authorized, Expired, "payment.expired"),
        (LedgerKind::Expire3ds, Requires3ds, Expired, "payment.expired"),
        (LedgerKind::ExpireCapture, Authorized, Captured, "payment.captured"),
        (LedgerKind::Failed, Authorizing, Failed, "payment.failed"),
        (LedgerKind::Sync, Processing, Authorized, "payment.authorized"),
    ];
    for (kind, from, to, expected) in cases {
        let p = payment(to);
        let events = payment_events(&p, &[row(&p, kind, from, to)], None);
        assert_eq!(types(&events), [expected], "{kind:?} {from} → {to}");
        let body: Value = serde_json::from_str(&events[0].body).unwrap();
        assert_eq!(body["type"], expected);
        assert_eq!(body["data"], payment_view(&p));
        assert_eq!(body["timestamp"], rfc3339(p.updated_at));
        assert!(events[0].event_id.starts_with("msg_") && events[0].event_id.len() == 36);
        // The same change saved again is the same event.
        assert_eq!(payment_events(&p, &[row(&p, kind, from, to)], None)[0].event_id, events[0].event_id);
    }
}

#[test]
fn steps_without_news_make_no_event() {
    use PaymentStatus::*;
    let p = payment(Authorizing);
    let rows = [
        row(&p, LedgerKind::Created, Created, Created),
        row(&p, LedgerKind::Authorizing, Created, Authorizing),
        row(&p, LedgerKind::Requires3ds, Created, Requires3ds),
        row(&p, LedgerKind::Processing, Authorizing, Processing),
    ];
    assert!(payment_events(&p, &rows, None).is_empty());
    // Waiting for 3-D Secure before any challenge link: nothing for the partner to do.
    assert!(payment_events(&payment(Requires3ds), &[], None).is_empty());
}

#[test]
fn each_capture_step_is_its_own_event() {
    use PaymentStatus::*;
    let mut p = payment(PartiallyCaptured);
    p.captured_amount = 300;
    let first = payment_events(&p, &[row(&p, LedgerKind::Capture, Authorized, PartiallyCaptured)], None);
    p.captured_amount = 600;
    let second = payment_events(&p, &[row(&p, LedgerKind::Capture, PartiallyCaptured, PartiallyCaptured)], None);
    p.status = Captured;
    let last = payment_events(&p, &[row(&p, LedgerKind::Release, PartiallyCaptured, Captured)], None);
    let ids = [&first[0].event_id, &second[0].event_id, &last[0].event_id];
    assert_eq!(types(&first), ["payment.captured"]);
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
}

#[test]
fn refunds_carry_the_refund() {
    let mut p = payment(PaymentStatus::Captured);
    p.captured_amount = 1000;
    p.refunded_amount = 400;
    let mut refund = RefundRecord {
        refund_id: "rf_1".into(),
        transaction_id: "tx_1".into(),
        merchant_id: "m_1".into(),
        partner_refund_id: "r-1".into(),
        request_digest: "d".into(),
        amount: 400,
        currency: "USD".into(),
        status: RefundStatus::Succeeded,
        rrn: None,
        error_code: None,
        first_response: None,
        created_at: 1,
        updated_at: 2,
    };
    let mut r = row(&p, LedgerKind::Refund, PaymentStatus::Captured, PaymentStatus::Captured);
    r.refund_id = Some("rf_1".into());
    let events = payment_events(&p, &[r], Some(&refund));
    assert_eq!(types(&events), ["payment.refunded"]);
    let body: Value = serde_json::from_str(&events[0].body).unwrap();
    assert_eq!(body["data"]["refunded_amount"], 400);
    assert_eq!(body["data"]["refund"]["refund_id"], "rf_1");

    refund.status = RefundStatus::Failed;
    let events = payment_events(&p, &[], Some(&refund));
    assert_eq!(types(&events), ["refund.failed"]);
    assert_eq!(events[0].object_id, "rf_1");
    let body: Value = serde_json::from_str(&events[0].body).unwrap();
    assert_eq!(body["data"], refund_view(&refund));
    refund.status = RefundStatus::Processing;
    assert!(payment_events(&p, &[], Some(&refund)).is_empty());
}

#[test]
fn a_challenge_link_is_payment_requires_3ds_once() {
    let mut p = payment(PaymentStatus::Requires3ds);
    p.three_ds = Some(r#"{"challenge":true,"challenge_url":"https://gw/3ds/challenge/abc"}"#.into());
    let events = payment_events(&p, &[], None);
    assert_eq!(types(&events), ["payment.requires_3ds"]);
    let body: Value = serde_json::from_str(&events[0].body).unwrap();
    assert_eq!(body["data"]["next_action"]["url"], "https://gw/3ds/challenge/abc");
    p.updated_at += 5;
    assert_eq!(payment_events(&p, &[], None)[0].event_id, events[0].event_id, "saved again: the same event");
}

#[test]
fn retry_schedule_spans_about_three_days_with_jitter() {
    let s = RetrySchedule::default();
    let total: Duration = s.0.iter().sum();
    assert!(total > Duration::from_secs(66 * 3600) && total < Duration::from_secs(76 * 3600), "{total:?}");
    assert_eq!(s.max_attempts(), 12);
    assert!(s.next_delay(0).is_none());
    for _ in 0..50 {
        let d = s.next_delay(1).unwrap();
        assert!(d >= Duration::from_secs(4) && d <= Duration::from_secs(6), "{d:?}");
    }
    assert!(s.next_delay(11).is_some() && s.next_delay(12).is_none());
    assert_eq!(RetrySchedule::parse("100ms, 2s,1m,1h").unwrap().0[3], Duration::from_secs(3600));
    assert!(RetrySchedule::parse("5x").is_err() && RetrySchedule::parse("").is_err());
}

#[test]
fn the_loopback_flag_needs_dev() {
    let flags = WebhookFlags {
        dev: false,
        webhooks_allow_loopback_http: true,
        webhooks_retry_schedule: None,
        webhooks_timeout_ms: 10_000,
        webhooks_disable_after_hours: 120,
    };
    assert!(flags.config().unwrap_err().contains("--dev"));
    let config = WebhookFlags { dev: true, ..flags }.config().unwrap();
    assert!(config.policy.allow_loopback);
    assert_eq!(config.timeout, Duration::from_secs(10));
    assert!(config.lease > config.timeout);
}
