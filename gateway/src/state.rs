//! The payment state machine (see "States" in `gateway/README.md`), as pure functions:
//!
//! ```text
//! created → requires_3ds → authorizing → authorized (hold) → partially_captured | captured
//!                          authorizing → captured (auto capture) | processing (no answer in time)
//!                          processing  → authorized | captured | failed   (by status inquiry)
//! authorized → voided | expired ;  partially_captured → captured (final capture, void, expiry)
//! any step before a hold → failed
//! ```
//!
//! Every transition the gateway makes goes through [`check_transition`] and is written
//! as a ledger row with its amount. The planning functions decide captures, voids,
//! refunds and expiries from a payment's amounts without I/O, so they are tested here.

use std::fmt;

/// Where a payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    Created,
    Requires3ds,
    Authorizing,
    /// The acquirer did not answer in time: resolved by status inquiry, never by
    /// authorizing again.
    Processing,
    /// Funds held on the card.
    Authorized,
    PartiallyCaptured,
    Captured,
    Voided,
    /// The hold expired and was released (`after_expired = void`).
    Expired,
    Failed,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 10] = [
        PaymentStatus::Created,
        PaymentStatus::Requires3ds,
        PaymentStatus::Authorizing,
        PaymentStatus::Processing,
        PaymentStatus::Authorized,
        PaymentStatus::PartiallyCaptured,
        PaymentStatus::Captured,
        PaymentStatus::Voided,
        PaymentStatus::Expired,
        PaymentStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Created => "created",
            PaymentStatus::Requires3ds => "requires_3ds",
            PaymentStatus::Authorizing => "authorizing",
            PaymentStatus::Processing => "processing",
            PaymentStatus::Authorized => "authorized",
            PaymentStatus::PartiallyCaptured => "partially_captured",
            PaymentStatus::Captured => "captured",
            PaymentStatus::Voided => "voided",
            PaymentStatus::Expired => "expired",
            PaymentStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<PaymentStatus> {
        PaymentStatus::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Funds are held on the card (something is still capturable).
    pub fn holds_funds(self) -> bool {
        matches!(self, PaymentStatus::Authorized | PaymentStatus::PartiallyCaptured)
    }

    /// The payment is open and its card must stay in the vault: it is on its way to an
    /// authorization (or a 3-D Secure AReq), its outcome is unknown (`processing` may
    /// turn out a hold), or it holds funds that can still be captured. Once it is
    /// captured, voided, expired or failed it needs the card no more: captures, voids
    /// and refunds go to the acquirer by its reference.
    pub fn needs_card(self) -> bool {
        use PaymentStatus::*;
        match self {
            Created | Requires3ds | Authorizing | Processing | Authorized | PartiallyCaptured => true,
            Captured | Voided | Expired | Failed => false,
        }
    }

    /// Whether the machine allows `self → to`. A partial capture may repeat
    /// (`partially_captured → partially_captured`); nothing else moves to itself.
    pub fn can_become(self, to: PaymentStatus) -> bool {
        use PaymentStatus::*;
        matches!(
            (self, to),
            (Created, Requires3ds | Authorizing | Failed)
                | (Requires3ds, Authorizing | Failed | Expired)
                | (Authorizing, Authorized | Captured | Processing | Failed)
                | (Processing, Authorized | Captured | Failed)
                | (Authorized, PartiallyCaptured | Captured | Voided | Expired)
                | (PartiallyCaptured, PartiallyCaptured | Captured)
        )
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transition the machine does not allow (JSON-RPC −31008).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a payment cannot go from {from} to {to}")]
pub struct IllegalTransition {
    pub from: PaymentStatus,
    pub to: PaymentStatus,
}

/// `Ok` when `from → to` is allowed.
pub fn check_transition(from: PaymentStatus, to: PaymentStatus) -> Result<(), IllegalTransition> {
    if from.can_become(to) {
        Ok(())
    } else {
        Err(IllegalTransition { from, to })
    }
}

/// A payment's money: authorized, captured, refunded (minor units).
/// Invariant: `0 ≤ refunded ≤ captured ≤ amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amounts {
    pub amount: i64,
    pub captured: i64,
    pub refunded: i64,
}

impl Amounts {
    /// What a capture may still take while funds are held.
    pub fn capturable(&self, status: PaymentStatus) -> i64 {
        if status.holds_funds() {
            self.amount - self.captured
        } else {
            0
        }
    }

    /// What may still be refunded.
    pub fn refundable(&self) -> i64 {
        self.captured - self.refunded
    }
}

/// Why an operation on a payment is refused. Each maps to one JSON-RPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OperationRefused {
    /// −31008: the payment is not in a state that allows it.
    #[error("not allowed in status {0}")]
    WrongState(PaymentStatus),
    /// −31007: a void after a capture (refund instead).
    #[error("a captured payment cannot be voided; refund it")]
    NotCancellable,
    /// −31031: more than is still held.
    #[error("capture exceeds the capturable amount {capturable}")]
    OverCapture { capturable: i64 },
    /// −31032: more than captured minus refunded (and refunds in flight).
    #[error("refund exceeds the refundable amount {refundable}")]
    OverRefund { refundable: i64 },
    /// −31033: the hold's time is up.
    #[error("the hold has expired")]
    HoldExpired,
}

/// A capture the acquirer is to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapturePlan {
    pub amount: i64,
    /// Close the authorization (releasing any rest).
    pub close: bool,
    pub to: PaymentStatus,
    /// Released at the issuer by this capture (the uncaptured rest of a closing capture).
    pub released: i64,
}

/// Plan `payment.capture`: `requested` (all that is held when `None`), closing the
/// authorization when `final_capture` or when nothing would be left.
pub fn plan_capture(
    status: PaymentStatus,
    amounts: Amounts,
    hold_expires_at: Option<i64>,
    now: i64,
    requested: Option<i64>,
    final_capture: bool,
) -> Result<CapturePlan, OperationRefused> {
    if !status.holds_funds() {
        return Err(OperationRefused::WrongState(status));
    }
    if hold_expires_at.is_some_and(|at| now >= at) {
        return Err(OperationRefused::HoldExpired);
    }
    let capturable = amounts.capturable(status);
    let amount = requested.unwrap_or(capturable);
    if amount < 1 || amount > capturable {
        return Err(OperationRefused::OverCapture { capturable });
    }
    let rest = capturable - amount;
    let close = final_capture || rest == 0;
    let to = if close { PaymentStatus::Captured } else { PaymentStatus::PartiallyCaptured };
    check_transition(status, to).map_err(|e| OperationRefused::WrongState(e.from))?;
    Ok(CapturePlan { amount, close, to, released: if close { rest } else { 0 } })
}

/// A void: what it releases and where the payment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoidPlan {
    pub released: i64,
    /// `voided`, or `captured` when part was captured before (the rest is released).
    pub to: PaymentStatus,
}

/// Plan `payment.void`.
pub fn plan_void(status: PaymentStatus, amounts: Amounts) -> Result<VoidPlan, OperationRefused> {
    match status {
        PaymentStatus::Authorized => Ok(VoidPlan { released: amounts.amount, to: PaymentStatus::Voided }),
        PaymentStatus::PartiallyCaptured => {
            Ok(VoidPlan { released: amounts.amount - amounts.captured, to: PaymentStatus::Captured })
        }
        PaymentStatus::Captured => Err(OperationRefused::NotCancellable),
        other => Err(OperationRefused::WrongState(other)),
    }
}

/// Check a refund of `requested` while `pending` is already being refunded.
pub fn plan_refund(
    status: PaymentStatus,
    amounts: Amounts,
    pending: i64,
    requested: i64,
) -> Result<(), OperationRefused> {
    if !matches!(status, PaymentStatus::Captured | PaymentStatus::PartiallyCaptured) {
        return Err(OperationRefused::WrongState(status));
    }
    let refundable = (amounts.refundable() - pending).max(0);
    if requested < 1 || requested > refundable {
        return Err(OperationRefused::OverRefund { refundable });
    }
    Ok(())
}

/// What a hold's expiry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExpired {
    /// Capture what is still held.
    Capture,
    /// Release what is still held.
    Void,
}

impl AfterExpired {
    pub fn as_str(self) -> &'static str {
        match self {
            AfterExpired::Capture => "capture",
            AfterExpired::Void => "void",
        }
    }

    pub fn parse(s: &str) -> Option<AfterExpired> {
        match s {
            "capture" => Some(AfterExpired::Capture),
            "void" => Some(AfterExpired::Void),
            _ => None,
        }
    }
}

/// What the expiry worker does to a hold whose time is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryPlan {
    /// Capture the rest (closing) → `captured`.
    Capture { amount: i64 },
    /// Release the rest → `expired` (nothing captured) or `captured` (partly captured).
    Release { released: i64, to: PaymentStatus },
}

/// Plan the expiry of a hold, or `None` when the payment holds nothing.
pub fn plan_expiry(status: PaymentStatus, amounts: Amounts, after: AfterExpired) -> Option<ExpiryPlan> {
    let rest = amounts.capturable(status);
    if rest == 0 {
        return None;
    }
    Some(match (after, status) {
        (AfterExpired::Capture, _) => ExpiryPlan::Capture { amount: rest },
        (AfterExpired::Void, PaymentStatus::Authorized) => {
            ExpiryPlan::Release { released: rest, to: PaymentStatus::Expired }
        }
        (AfterExpired::Void, _) => ExpiryPlan::Release { released: rest, to: PaymentStatus::Captured },
    })
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::*;
    use super::*;

    fn amounts(amount: i64, captured: i64, refunded: i64) -> Amounts {
        Amounts { amount, captured, refunded }
    }

    #[test]
    fn the_machine_allows_exactly_the_documented_transitions() {
        let allowed = [
            (Created, Requires3ds),
            (Created, Authorizing),
            (Created, Failed),
            (Requires3ds, Authorizing),
            (Requires3ds, Failed),
            (Requires3ds, Expired),
            (Authorizing, Authorized),
            (Authorizing, Captured),
            (Authorizing, Processing),
            (Authorizing, Failed),
            (Processing, Authorized),
            (Processing, Captured),
            (Processing, Failed),
            (Authorized, PartiallyCaptured),
            (Authorized, Captured),
            (Authorized, Voided),
            (Authorized, Expired),
            (PartiallyCaptured, PartiallyCaptured),
            (PartiallyCaptured, Captured),
        ];
        for from in PaymentStatus::ALL {
            for to in PaymentStatus::ALL {
                assert_eq!(from.can_become(to), allowed.contains(&(from, to)), "{from} → {to}");
            }
        }
        for terminal in [Captured, Voided, Expired, Failed] {
            assert!(PaymentStatus::ALL.iter().all(|to| !terminal.can_become(*to)), "{terminal} is final");
        }
        assert_eq!(check_transition(Voided, Captured), Err(IllegalTransition { from: Voided, to: Captured }));
        for s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn captures() {
        let a = amounts(1000, 0, 0);
        assert_eq!(
            plan_capture(Authorized, a, None, 0, None, true),
            Ok(CapturePlan { amount: 1000, close: true, to: Captured, released: 0 })
        );
        assert_eq!(
            plan_capture(Authorized, a, None, 0, Some(300), true),
            Ok(CapturePlan { amount: 300, close: true, to: Captured, released: 700 })
        );
        assert_eq!(
            plan_capture(Authorized, a, None, 0, Some(300), false),
            Ok(CapturePlan { amount: 300, close: false, to: PartiallyCaptured, released: 0 })
        );
        let partly = amounts(1000, 300, 0);
        assert_eq!(
            plan_capture(PartiallyCaptured, partly, None, 0, Some(700), false),
            Ok(CapturePlan { amount: 700, close: true, to: Captured, released: 0 })
        );
        assert_eq!(
            plan_capture(PartiallyCaptured, partly, None, 0, Some(701), false),
            Err(OperationRefused::OverCapture { capturable: 700 })
        );
        assert_eq!(
            plan_capture(Authorized, a, None, 0, Some(0), true),
            Err(OperationRefused::OverCapture { capturable: 1000 })
        );
        assert_eq!(plan_capture(Authorized, a, Some(10), 10, None, true), Err(OperationRefused::HoldExpired));
        assert!(plan_capture(Authorized, a, Some(11), 10, None, true).is_ok());
        assert_eq!(
            plan_capture(Captured, amounts(1000, 1000, 0), None, 0, None, true),
            Err(OperationRefused::WrongState(Captured))
        );
        assert_eq!(plan_capture(Voided, a, None, 0, None, true), Err(OperationRefused::WrongState(Voided)));
    }

    #[test]
    fn voids_refunds_and_expiry() {
        assert_eq!(plan_void(Authorized, amounts(500, 0, 0)), Ok(VoidPlan { released: 500, to: Voided }));
        assert_eq!(plan_void(PartiallyCaptured, amounts(500, 200, 0)), Ok(VoidPlan { released: 300, to: Captured }));
        assert_eq!(plan_void(Captured, amounts(500, 500, 0)), Err(OperationRefused::NotCancellable));
        assert_eq!(plan_void(Voided, amounts(500, 0, 0)), Err(OperationRefused::WrongState(Voided)));
        assert_eq!(plan_void(Processing, amounts(500, 0, 0)), Err(OperationRefused::WrongState(Processing)));

        assert_eq!(plan_refund(Captured, amounts(500, 500, 100), 0, 400), Ok(()));
        assert_eq!(
            plan_refund(Captured, amounts(500, 500, 100), 0, 401),
            Err(OperationRefused::OverRefund { refundable: 400 })
        );
        assert_eq!(
            plan_refund(Captured, amounts(500, 500, 100), 300, 101),
            Err(OperationRefused::OverRefund { refundable: 100 })
        );
        assert_eq!(plan_refund(Authorized, amounts(500, 0, 0), 0, 1), Err(OperationRefused::WrongState(Authorized)));

        assert_eq!(
            plan_expiry(Authorized, amounts(500, 0, 0), AfterExpired::Void),
            Some(ExpiryPlan::Release { released: 500, to: Expired })
        );
        assert_eq!(
            plan_expiry(PartiallyCaptured, amounts(500, 200, 0), AfterExpired::Void),
            Some(ExpiryPlan::Release { released: 300, to: Captured })
        );
        assert_eq!(
            plan_expiry(Authorized, amounts(500, 0, 0), AfterExpired::Capture),
            Some(ExpiryPlan::Capture { amount: 500 })
        );
        assert_eq!(plan_expiry(Captured, amounts(500, 500, 0), AfterExpired::Void), None);
    }
}
